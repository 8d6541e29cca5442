/* lib/lwm2m/fmt_cbor.c - CBOR plumbing for the CBOR-based formats, and the CBOR single-value
 * format (60).
 *
 * Reading uses libcbor's streaming decoder (cbor_stream_decode), which decodes one data item
 * head per call without allocating; lw__cbor_next turns that into a pull reader. Declared
 * lengths are never trusted: a definite array/map count larger than the bytes left is rejected
 * before anything is sized from it, and strings must lie inside the input (libcbor checks, and
 * so do we). Writing uses libcbor's cbor_encode_* head encoders into an lw_buf.
 */
#include "fmt_int.h"

#include "base/err.h"
#include "base/util.h"

#include <cbor.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- streaming callbacks: fill one token ---- */

struct cb_ctx {
    struct lw__cbor_tok *t;
    int start; /* 1: indefinite byte string start, 2: indefinite text string start */
};

#define TOK(c) (((struct cb_ctx *)(c))->t)

static void cb_uint(void *c, uint64_t v)
{
    TOK(c)->kind = LW__CB_UINT;
    TOK(c)->u = v;
}
static void cb_u8(void *c, uint8_t v)
{
    cb_uint(c, v);
}
static void cb_u16(void *c, uint16_t v)
{
    cb_uint(c, v);
}
static void cb_u32(void *c, uint32_t v)
{
    cb_uint(c, v);
}
static void cb_neg(void *c, uint64_t v)
{
    TOK(c)->kind = LW__CB_NEG;
    TOK(c)->u = v;
}
static void cb_n8(void *c, uint8_t v)
{
    cb_neg(c, v);
}
static void cb_n16(void *c, uint16_t v)
{
    cb_neg(c, v);
}
static void cb_n32(void *c, uint32_t v)
{
    cb_neg(c, v);
}
static void cb_bytes(void *c, cbor_data p, size_t n)
{
    TOK(c)->kind = LW__CB_BYTES;
    TOK(c)->s = (struct lw_bytes){p, n};
}
static void cb_text(void *c, cbor_data p, size_t n)
{
    TOK(c)->kind = LW__CB_TEXT;
    TOK(c)->s = (struct lw_bytes){p, n};
}
static void cb_bytes_start(void *c)
{
    TOK(c)->kind = LW__CB_BYTES;
    ((struct cb_ctx *)c)->start = 1;
}
static void cb_text_start(void *c)
{
    TOK(c)->kind = LW__CB_TEXT;
    ((struct cb_ctx *)c)->start = 2;
}
static void cb_array(void *c, size_t n)
{
    TOK(c)->kind = LW__CB_ARRAY;
    TOK(c)->u = n;
}
static void cb_iarray(void *c)
{
    TOK(c)->kind = LW__CB_ARRAY;
    TOK(c)->indef = true;
}
static void cb_map(void *c, size_t n)
{
    TOK(c)->kind = LW__CB_MAP;
    TOK(c)->u = n;
}
static void cb_imap(void *c)
{
    TOK(c)->kind = LW__CB_MAP;
    TOK(c)->indef = true;
}
static void cb_tag(void *c, uint64_t v)
{
    TOK(c)->kind = LW__CB_TAG;
    TOK(c)->u = v;
}
static void cb_f4(void *c, float v)
{
    TOK(c)->kind = LW__CB_FLOAT;
    TOK(c)->f = v;
}
static void cb_f8(void *c, double v)
{
    TOK(c)->kind = LW__CB_FLOAT;
    TOK(c)->f = v;
}
static void cb_undef(void *c)
{
    TOK(c)->kind = LW__CB_UNDEF;
}
static void cb_null(void *c)
{
    TOK(c)->kind = LW__CB_NULL;
}
static void cb_bool(void *c, bool v)
{
    TOK(c)->kind = LW__CB_BOOL;
    TOK(c)->b = v;
}
static void cb_break(void *c)
{
    TOK(c)->kind = LW__CB_BREAK;
}

static const struct cbor_callbacks cbs = {
    .uint8 = cb_u8,
    .uint16 = cb_u16,
    .uint32 = cb_u32,
    .uint64 = cb_uint,
    .negint64 = cb_neg,
    .negint32 = cb_n32,
    .negint16 = cb_n16,
    .negint8 = cb_n8,
    .byte_string_start = cb_bytes_start,
    .byte_string = cb_bytes,
    .string = cb_text,
    .string_start = cb_text_start,
    .indef_array_start = cb_iarray,
    .array_start = cb_array,
    .indef_map_start = cb_imap,
    .map_start = cb_map,
    .tag = cb_tag,
    .float2 = cb_f4,
    .float4 = cb_f4,
    .float8 = cb_f8,
    .undefined = cb_undef,
    .null = cb_null,
    .boolean = cb_bool,
    .indef_break = cb_break,
};

/* One head at r->off; sets *start for indefinite strings. */
static int raw_next(struct lw__cbor_rd *r, struct lw__cbor_tok *t, int *start)
{
    struct cb_ctx c = {t, 0};
    memset(t, 0, sizeof(*t));
    t->off = r->off;
    if (r->off >= r->len)
        return lw__m2m_fail(r->d, LW_EMALFORMED, r->off);
    struct cbor_decoder_result res = cbor_stream_decode(r->p + r->off, r->len - r->off, &cbs, &c);
    if (res.status != CBOR_DECODER_FINISHED || res.read == 0 || res.read > r->len - r->off)
        return lw__m2m_fail(r->d, LW_EMALFORMED, r->off);
    if ((t->kind == LW__CB_BYTES || t->kind == LW__CB_TEXT) && !c.start &&
        (t->s.ptr < r->p + r->off || t->s.len > (size_t)(r->p + r->len - t->s.ptr)))
        return lw__m2m_fail(r->d, LW_EMALFORMED, r->off);
    r->off += res.read;
    *start = c.start;
    return 0;
}

/* Indefinite-length string: definite chunks of the same major type until a break. Two passes
 * (measure, then copy into the arena) so the allocation is exact. */
static int join_chunks(struct lw__cbor_rd *r, struct lw__cbor_tok *t)
{
    enum lw__cbor_kind kind = t->kind;
    size_t first = r->off, total = 0;
    struct lw__cbor_tok c;
    int start, rc;
    for (;;) {
        if ((rc = raw_next(r, &c, &start)))
            return rc;
        if (c.kind == LW__CB_BREAK)
            break;
        if (c.kind != kind || start)
            return lw__m2m_fail(r->d, LW_EMALFORMED, c.off);
        total += c.s.len;
        if (total > r->d->cfg.max_value_len)
            return lw__m2m_fail(r->d, LW_ELIMIT, c.off);
    }
    size_t end = r->off;
    uint8_t *buf = lw_arena_alloc(r->d->a, total ? total : 1);
    if (!buf)
        return lw__m2m_fail(r->d, LW_ENOMEM, t->off);
    size_t w = 0;
    r->off = first;
    while (r->off < end) {
        if ((rc = raw_next(r, &c, &start)))
            return rc;
        if (c.kind == LW__CB_BREAK)
            break;
        memcpy(buf + w, c.s.ptr, c.s.len);
        w += c.s.len;
    }
    r->off = end;
    t->s = (struct lw_bytes){buf, w};
    return 0;
}

int lw__cbor_next(struct lw__cbor_rd *r, struct lw__cbor_tok *t)
{
    int start, rc;
    if ((rc = raw_next(r, t, &start)))
        return rc;
    size_t left = r->len - r->off;
    switch (t->kind) {
    case LW__CB_BYTES:
    case LW__CB_TEXT:
        if (start && (rc = join_chunks(r, t)))
            return rc;
        if (t->s.len > r->d->cfg.max_value_len)
            return lw__m2m_fail(r->d, LW_ELIMIT, t->off);
        break;
    case LW__CB_ARRAY:
        if (!t->indef && t->u > left)
            return lw__m2m_fail(r->d, LW_EMALFORMED, t->off);
        break;
    case LW__CB_MAP:
        if (!t->indef && t->u > left / 2)
            return lw__m2m_fail(r->d, LW_EMALFORMED, t->off);
        break;
    default: break;
    }
    return 0;
}

int lw__cbor_skip(struct lw__cbor_rd *r, const struct lw__cbor_tok *t, size_t depth)
{
    struct lw__cbor_tok c;
    int rc;
    if (t->kind != LW__CB_ARRAY && t->kind != LW__CB_MAP && t->kind != LW__CB_TAG)
        return t->kind == LW__CB_BREAK ? lw__m2m_fail(r->d, LW_EMALFORMED, t->off) : 0;
    if (depth >= r->d->cfg.max_depth)
        return lw__m2m_fail(r->d, LW_ELIMIT, t->off);
    if (t->kind == LW__CB_TAG) {
        if ((rc = lw__cbor_next(r, &c)))
            return rc;
        return lw__cbor_skip(r, &c, depth + 1);
    }
    uint64_t items = t->kind == LW__CB_MAP ? t->u * 2 : t->u;
    for (uint64_t k = 0; t->indef || k < items; k++) {
        if ((rc = lw__cbor_next(r, &c)))
            return rc;
        if (c.kind == LW__CB_BREAK) {
            if (!t->indef || (t->kind == LW__CB_MAP && k % 2))
                return lw__m2m_fail(r->d, LW_EMALFORMED, c.off);
            break;
        }
        if ((rc = lw__cbor_skip(r, &c, depth + 1)))
            return rc;
    }
    return 0;
}

static bool int_tok(const struct lw__cbor_tok *t)
{
    return t->kind == LW__CB_UINT || t->kind == LW__CB_NEG;
}

static double int_tok_f(const struct lw__cbor_tok *t)
{
    return t->kind == LW__CB_UINT ? (double)t->u : -1.0 - (double)t->u;
}

/* Tag 4 decimal fraction [exponent, mantissa] (RFC 8949 §3.4.4), integers only. */
static int decimal_fraction(struct lw__cbor_rd *r, struct lw__cbor_tok *t)
{
    struct lw__cbor_tok arr, e, m;
    int rc;
    if ((rc = lw__cbor_next(r, &arr)))
        return rc;
    if (arr.kind != LW__CB_ARRAY || (!arr.indef && arr.u != 2))
        return lw__m2m_fail(r->d, LW_EMALFORMED, arr.off);
    if ((rc = lw__cbor_next(r, &e)) || (rc = lw__cbor_next(r, &m)))
        return rc;
    if (!int_tok(&e) || !int_tok(&m) || e.u > 400)
        return lw__m2m_fail(r->d, LW_EMALFORMED, int_tok(&e) ? m.off : e.off);
    if (arr.indef) {
        struct lw__cbor_tok brk;
        if ((rc = lw__cbor_next(r, &brk)))
            return rc;
        if (brk.kind != LW__CB_BREAK)
            return lw__m2m_fail(r->d, LW_EMALFORMED, brk.off);
    }
    if (e.u == 0 && e.kind == LW__CB_UINT) { /* exact integer */
        *t = m;
        return 0;
    }
    double exp10 = e.kind == LW__CB_UINT ? (double)e.u : -1.0 - (double)e.u;
    double v = int_tok_f(&m) * pow(10.0, exp10);
    if (!isfinite(v))
        return lw__m2m_fail(r->d, LW_EMALFORMED, m.off);
    memset(t, 0, sizeof(*t));
    t->kind = LW__CB_FLOAT;
    t->f = v;
    t->off = m.off;
    return 0;
}

int lw__cbor_leaf(struct lw__cbor_rd *r, struct lw__cbor_tok *t, bool *time_tag)
{
    int rc;
    *time_tag = false;
    for (size_t depth = 0;; depth++) {
        if (depth > r->d->cfg.max_depth)
            return lw__m2m_fail(r->d, LW_ELIMIT, r->off);
        if ((rc = lw__cbor_next(r, t)))
            return rc;
        if (t->kind != LW__CB_TAG)
            return 0;
        if (t->u == 1)
            *time_tag = true;
        else if (t->u == 4)
            return decimal_fraction(r, t);
    }
}

bool lw__cbor_tok_num(const struct lw__cbor_tok *t, struct lw__m2m_num *n)
{
    switch (t->kind) {
    case LW__CB_UINT:
        n->kind = LW__NUM_UINT;
        n->u = t->u;
        return true;
    case LW__CB_NEG:
        if (t->u <= INT64_MAX) {
            n->kind = LW__NUM_INT;
            n->i = -1 - (int64_t)t->u;
        } else {
            n->kind = LW__NUM_FLOAT;
            n->f = -1.0 - (double)t->u;
        }
        return true;
    case LW__CB_FLOAT:
        n->kind = LW__NUM_FLOAT;
        n->f = t->f;
        return true;
    default: return false;
    }
}

int lw__cbor_tok_value(struct lw__m2m_dec *d, const struct lw__cbor_tok *t, bool time_tag,
                       enum lw_m2m_type model, struct lw_m2m_value *v, bool *present)
{
    struct lw__m2m_num num;
    *present = true;
    memset(v, 0, sizeof(*v));
    if (lw__cbor_tok_num(t, &num)) {
        if (model == LW_M2M_T_NONE && time_tag)
            model = LW_M2M_T_TIME;
        if (lw__m2m_num_to_value(&num, model, v))
            return lw__m2m_fail(d, LW_ETYPE, t->off);
        return 0;
    }
    switch (t->kind) {
    case LW__CB_NULL:
    case LW__CB_UNDEF: *present = false; return 0;
    case LW__CB_BOOL:
        if (model != LW_M2M_T_NONE && model != LW_M2M_T_BOOLEAN)
            return lw__m2m_fail(d, LW_ETYPE, t->off);
        v->type = LW_M2M_T_BOOLEAN;
        v->b = t->b;
        return 0;
    case LW__CB_BYTES:
        if (model != LW_M2M_T_NONE && model != LW_M2M_T_OPAQUE)
            return lw__m2m_fail(d, LW_ETYPE, t->off);
        v->type = LW_M2M_T_OPAQUE;
        v->bytes = t->s;
        return 0;
    case LW__CB_TEXT:
        if (model == LW_M2M_T_OBJLNK) {
            v->type = model;
            if (lw__m2m_objlnk_parse(t->s.ptr, t->s.len, &v->lnk))
                return lw__m2m_fail(d, LW_ETYPE, t->off);
            return 0;
        }
        if (model != LW_M2M_T_NONE && model != LW_M2M_T_STRING && model != LW_M2M_T_CORELNK)
            return lw__m2m_fail(d, LW_ETYPE, t->off);
        if (!lw__m2m_utf8_valid(t->s.ptr, t->s.len))
            return lw__m2m_fail(d, LW_EMALFORMED, t->off);
        v->type = model == LW_M2M_T_NONE ? LW_M2M_T_STRING : model;
        v->bytes = t->s;
        return 0;
    default: return lw__m2m_fail(d, LW_EMALFORMED, t->off);
    }
}

/* ---- writing ---- */

typedef size_t (*head_fn)(uint64_t, unsigned char *, size_t);

static void put_head(struct lw_buf *b, head_fn fn, uint64_t v)
{
    uint8_t *p = lw_buf_reserve(b, 9);
    if (p)
        lw_buf_commit(b, fn(v, p, 9));
}
static size_t h_bytes(uint64_t n, unsigned char *p, size_t c)
{
    return cbor_encode_bytestring_start((size_t)n, p, c);
}
static size_t h_text(uint64_t n, unsigned char *p, size_t c)
{
    return cbor_encode_string_start((size_t)n, p, c);
}
static size_t h_array(uint64_t n, unsigned char *p, size_t c)
{
    return cbor_encode_array_start((size_t)n, p, c);
}
static size_t h_map(uint64_t n, unsigned char *p, size_t c)
{
    return cbor_encode_map_start((size_t)n, p, c);
}

void lw__cbor_put_uint(struct lw_buf *b, uint64_t v)
{
    put_head(b, cbor_encode_uint, v);
}
void lw__cbor_put_int(struct lw_buf *b, int64_t v)
{
    if (v >= 0)
        put_head(b, cbor_encode_uint, (uint64_t)v);
    else
        put_head(b, cbor_encode_negint, (uint64_t)(-1 - v));
}
void lw__cbor_put_text(struct lw_buf *b, const void *s, size_t n)
{
    put_head(b, h_text, n);
    lw_buf_put(b, s, n);
}
void lw__cbor_put_bytes(struct lw_buf *b, const void *s, size_t n)
{
    put_head(b, h_bytes, n);
    lw_buf_put(b, s, n);
}
void lw__cbor_put_array(struct lw_buf *b, size_t n)
{
    put_head(b, h_array, n);
}
void lw__cbor_put_map(struct lw_buf *b, size_t n)
{
    put_head(b, h_map, n);
}
void lw__cbor_put_tag(struct lw_buf *b, uint64_t tag)
{
    put_head(b, cbor_encode_tag, tag);
}
void lw__cbor_put_bool(struct lw_buf *b, bool v)
{
    lw_buf_put_u8(b, v ? 0xF5 : 0xF4);
}
void lw__cbor_put_null(struct lw_buf *b)
{
    lw_buf_put_u8(b, 0xF6);
}

static double half_to_double(uint16_t h)
{
    int exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
    double v;
    if (exp == 0)
        v = ldexp(mant, -24);
    else if (exp != 31)
        v = ldexp(mant + 1024, exp - 25);
    else
        v = mant ? NAN : INFINITY;
    return (h & 0x8000) ? -v : v;
}

void lw__cbor_put_float(struct lw_buf *b, double d)
{
    uint8_t tmp[9];
    if (isnan(d)) {
        static const uint8_t qnan[3] = {0xF9, 0x7E, 0x00};
        lw_buf_put(b, qnan, sizeof(qnan));
        return;
    }
    float fs = (float)d;
    if ((double)fs != d) {
        lw_buf_put(b, tmp, cbor_encode_double(d, tmp, sizeof(tmp)));
        return;
    }
    /* libcbor's half encoder rounds; keep its output only when it reads back exactly. */
    size_t n = cbor_encode_half(fs, tmp, sizeof(tmp));
    if (n == 3) {
        double back = half_to_double((uint16_t)(tmp[1] << 8 | tmp[2]));
        if (back == d && signbit(back) == signbit(d)) {
            lw_buf_put(b, tmp, 3);
            return;
        }
    }
    lw_buf_put(b, tmp, cbor_encode_single(fs, tmp, sizeof(tmp)));
}

int lw__cbor_put_value(struct lw_buf *b, const struct lw_m2m_value *v, bool time_tag)
{
    char tmp[16];
    int n;
    switch (v->type) {
    case LW_M2M_T_STRING:
    case LW_M2M_T_CORELNK: lw__cbor_put_text(b, v->bytes.ptr, v->bytes.len); return 0;
    case LW_M2M_T_OPAQUE: lw__cbor_put_bytes(b, v->bytes.ptr, v->bytes.len); return 0;
    case LW_M2M_T_TIME:
        if (time_tag)
            lw__cbor_put_tag(b, 1);
        lw__cbor_put_int(b, v->i);
        return 0;
    case LW_M2M_T_INTEGER: lw__cbor_put_int(b, v->i); return 0;
    case LW_M2M_T_UNSIGNED: lw__cbor_put_uint(b, v->u); return 0;
    case LW_M2M_T_FLOAT: lw__cbor_put_float(b, v->f); return 0;
    case LW_M2M_T_BOOLEAN: lw__cbor_put_bool(b, v->b); return 0;
    case LW_M2M_T_OBJLNK:
        n = snprintf(tmp, sizeof(tmp), "%u:%u", (unsigned)v->lnk.obj, (unsigned)v->lnk.inst);
        lw__cbor_put_text(b, tmp, (size_t)n);
        return 0;
    default: return LW_EINVAL;
    }
}

/* ---- CBOR single value (60) ---- */

int lw__m2m_cbor1_decode(struct lw__m2m_dec *d, struct lw_bytes in)
{
    struct lw__cbor_rd r = {in.ptr, in.len, 0, d};
    struct lw__cbor_tok t;
    struct lw_m2m_record rec;
    bool time_tag;
    int rc;
    if (d->req->len < 3)
        return LW_EINVAL;
    if ((rc = lw__cbor_leaf(&r, &t, &time_tag)))
        return rc;
    if (r.off != r.len)
        return lw__m2m_fail(d, LW_EMALFORMED, r.off);
    memset(&rec, 0, sizeof(rec));
    rec.path = *d->req;
    if ((rc = lw__cbor_tok_value(d, &t, time_tag, lw__m2m_type_of(d, d->req), &rec.value,
                                 &rec.has_value)))
        return rc;
    return lw__m2m_add(d, &rec, 0);
}

int lw__m2m_cbor1_encode(const struct lw_m2m_path *req, const struct lw_m2m_record *r, size_t n,
                         struct lw_buf *out)
{
    if (n != 1 || req->len < 3 || !lw_m2m_path_eq(&r->path, req))
        return LW_EINVAL;
    if (!r->has_value)
        lw__cbor_put_null(out);
    else if (lw__cbor_put_value(out, &r->value, true))
        return LW_EINVAL;
    return lw_buf_status(out);
}
