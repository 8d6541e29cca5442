/* lib/lwm2m/fmt_cbor.c - CBOR plumbing for the CBOR-based formats, and the CBOR single-value
 * format (60).
 *
 * Reading is a small pull reader over data item heads (RFC 8949 §3), written here instead of
 * using libcbor's cbor_stream_decode for two reasons: the callback-per-item streaming API cost
 * about 3x the 2 us budget of a 20-record SenML-CBOR notification (measured with
 * tests/bench/lwm2m_fmt_bench.c), and libcbor 0.8 rejects well-formed input (tags 6-20 are
 * "reserved" there). Declared lengths are never trusted: a string must lie inside the input and
 * a definite array/map count larger than the bytes left is rejected before anything is sized
 * from it. Writing uses libcbor's cbor_encode_* head encoders into an lw_buf.
 */
#include "fmt_int.h"

#include "base/err.h"
#include "base/util.h"

#include <cbor.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* One data item head at r->off (RFC 8949 §3); *start = 1/2 for an indefinite byte/text string.
 * Floats, simple values 20-23 and break are the only major-7 items LwM2M uses; other simple
 * values are refused. Reserved additional information (28-30) and indefinite lengths on
 * integers/tags are malformed (§3.2.3). */
__attribute__((always_inline)) static inline int raw_next(struct lw__m2m_cbor_rd *r,
                                                          struct lw__m2m_cbor_tok *t, int *start)
{
    size_t off = r->off, left = r->len - r->off;
    const uint8_t *p = r->p + off;
    t->off = off;
    t->indef = false;
    *start = 0;
    if (left == 0)
        return lw__m2m_fail(r->d, LW_EMALFORMED, off);
    unsigned major = p[0] >> 5, ai = p[0] & 31;
    size_t used = 1;
    uint64_t arg = ai;
    if (ai >= 24 && ai <= 27) {
        size_t n = (size_t)1 << (ai - 24);
        if (left < 1 + n)
            return lw__m2m_fail(r->d, LW_EMALFORMED, off);
        arg = n == 1   ? p[1]
              : n == 2 ? lw_load_be16(p + 1)
              : n == 4 ? lw_load_be32(p + 1)
                       : lw_load_be64(p + 1);
        used += n;
    } else if (ai >= 28) {
        if (ai != 31 || major == 0 || major == 1 || major == 6)
            return lw__m2m_fail(r->d, LW_EMALFORMED, off);
        t->indef = true;
    }
    switch (major) {
    case 0: t->kind = LW__CB_UINT; break;
    case 1: t->kind = LW__CB_NEG; break;
    case 2:
    case 3:
        t->kind = major == 2 ? LW__CB_BYTES : LW__CB_TEXT;
        if (t->indef) {
            t->indef = false;
            *start = (int)major - 1;
            t->s = (struct lw_bytes){NULL, 0};
            break;
        }
        if (arg > left - used)
            return lw__m2m_fail(r->d, LW_EMALFORMED, off);
        t->s = (struct lw_bytes){p + used, (size_t)arg};
        used += (size_t)arg;
        break;
    case 4: t->kind = LW__CB_ARRAY; break;
    case 5: t->kind = LW__CB_MAP; break;
    case 6: t->kind = LW__CB_TAG; break;
    default:
        switch (ai) {
        case 20:
        case 21:
            t->kind = LW__CB_BOOL;
            t->b = ai == 21;
            break;
        case 22: t->kind = LW__CB_NULL; break;
        case 23: t->kind = LW__CB_UNDEF; break;
        case 25:
            t->kind = LW__CB_FLOAT;
            t->f = lw__m2m_half_to_double((uint16_t)arg);
            break;
        case 26: {
            uint32_t bits = (uint32_t)arg;
            float f;
            memcpy(&f, &bits, sizeof(f));
            t->kind = LW__CB_FLOAT;
            t->f = f;
            break;
        }
        case 27:
            t->kind = LW__CB_FLOAT;
            memcpy(&t->f, &arg, sizeof(t->f));
            break;
        case 31:
            t->kind = LW__CB_BREAK;
            t->indef = false;
            break;
        default: return lw__m2m_fail(r->d, LW_EMALFORMED, off);
        }
        arg = 0;
    }
    t->u = arg;
    r->off = off + used;
    return 0;
}

/* Indefinite-length string: definite chunks of the same major type until a break. Two passes
 * (measure, then copy into the arena) so the allocation is exact. */
static int join_chunks(struct lw__m2m_cbor_rd *r, struct lw__m2m_cbor_tok *t)
{
    enum lw__m2m_cbor_kind kind = t->kind;
    size_t first = r->off, total = 0;
    struct lw__m2m_cbor_tok c = {0};
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

int lw__m2m_cbor_next(struct lw__m2m_cbor_rd *r, struct lw__m2m_cbor_tok *t)
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

int lw__m2m_cbor_skip(struct lw__m2m_cbor_rd *r, const struct lw__m2m_cbor_tok *t, size_t depth)
{
    struct lw__m2m_cbor_tok c;
    int rc;
    if (t->kind != LW__CB_ARRAY && t->kind != LW__CB_MAP && t->kind != LW__CB_TAG)
        return t->kind == LW__CB_BREAK ? lw__m2m_fail(r->d, LW_EMALFORMED, t->off) : 0;
    if (depth >= r->d->cfg.max_depth)
        return lw__m2m_fail(r->d, LW_ELIMIT, t->off);
    if (t->kind == LW__CB_TAG) {
        if ((rc = lw__m2m_cbor_next(r, &c)))
            return rc;
        return lw__m2m_cbor_skip(r, &c, depth + 1);
    }
    uint64_t items = t->kind == LW__CB_MAP ? t->u * 2 : t->u;
    for (uint64_t k = 0; t->indef || k < items; k++) {
        if ((rc = lw__m2m_cbor_next(r, &c)))
            return rc;
        if (c.kind == LW__CB_BREAK) {
            if (!t->indef || (t->kind == LW__CB_MAP && k % 2))
                return lw__m2m_fail(r->d, LW_EMALFORMED, c.off);
            break;
        }
        if ((rc = lw__m2m_cbor_skip(r, &c, depth + 1)))
            return rc;
    }
    return 0;
}

static bool int_tok(const struct lw__m2m_cbor_tok *t)
{
    return t->kind == LW__CB_UINT || t->kind == LW__CB_NEG;
}

static double int_tok_f(const struct lw__m2m_cbor_tok *t)
{
    return t->kind == LW__CB_UINT ? (double)t->u : -1.0 - (double)t->u;
}

/* Tag 4 decimal fraction [exponent, mantissa] (RFC 8949 §3.4.4), integers only. */
static int decimal_fraction(struct lw__m2m_cbor_rd *r, struct lw__m2m_cbor_tok *t)
{
    struct lw__m2m_cbor_tok arr, e, m;
    int rc;
    if ((rc = lw__m2m_cbor_next(r, &arr)))
        return rc;
    if (arr.kind != LW__CB_ARRAY || (!arr.indef && arr.u != 2))
        return lw__m2m_fail(r->d, LW_EMALFORMED, arr.off);
    if ((rc = lw__m2m_cbor_next(r, &e)) || (rc = lw__m2m_cbor_next(r, &m)))
        return rc;
    if (!int_tok(&e) || !int_tok(&m) || e.u > 400)
        return lw__m2m_fail(r->d, LW_EMALFORMED, int_tok(&e) ? m.off : e.off);
    if (arr.indef) {
        struct lw__m2m_cbor_tok brk;
        if ((rc = lw__m2m_cbor_next(r, &brk)))
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

int lw__m2m_cbor_leaf(struct lw__m2m_cbor_rd *r, struct lw__m2m_cbor_tok *t, bool *time_tag)
{
    int rc;
    *time_tag = false;
    for (size_t depth = 0;; depth++) {
        if (depth > r->d->cfg.max_depth)
            return lw__m2m_fail(r->d, LW_ELIMIT, r->off);
        if ((rc = lw__m2m_cbor_next(r, t)))
            return rc;
        if (t->kind != LW__CB_TAG)
            return 0;
        if (t->u == 1)
            *time_tag = true;
        else if (t->u == 4)
            return decimal_fraction(r, t);
    }
}

int lw__m2m_cbor_tok_value(struct lw__m2m_dec *d, const struct lw__m2m_cbor_tok *t, bool time_tag,
                           enum lw_m2m_type model, struct lw_m2m_value *v, bool *present)
{
    struct lw__m2m_num num;
    *present = true;
    memset(v, 0, sizeof(*v));
    if (lw__m2m_cbor_tok_num(t, &num)) {
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

void lw__m2m_cbor_put_uint(struct lw_buf *b, uint64_t v)
{
    put_head(b, cbor_encode_uint, v);
}
void lw__m2m_cbor_put_int(struct lw_buf *b, int64_t v)
{
    if (v >= 0)
        put_head(b, cbor_encode_uint, (uint64_t)v);
    else
        put_head(b, cbor_encode_negint, (uint64_t)(-1 - v));
}
void lw__m2m_cbor_put_text(struct lw_buf *b, const void *s, size_t n)
{
    put_head(b, h_text, n);
    lw_buf_put(b, s, n);
}
void lw__m2m_cbor_put_bytes(struct lw_buf *b, const void *s, size_t n)
{
    put_head(b, h_bytes, n);
    lw_buf_put(b, s, n);
}
void lw__m2m_cbor_put_array(struct lw_buf *b, size_t n)
{
    put_head(b, h_array, n);
}
void lw__m2m_cbor_put_map(struct lw_buf *b, size_t n)
{
    put_head(b, h_map, n);
}
void lw__m2m_cbor_put_tag(struct lw_buf *b, uint64_t tag)
{
    put_head(b, cbor_encode_tag, tag);
}
void lw__m2m_cbor_put_bool(struct lw_buf *b, bool v)
{
    lw_buf_put_u8(b, v ? 0xF5 : 0xF4);
}
void lw__m2m_cbor_put_null(struct lw_buf *b)
{
    lw_buf_put_u8(b, 0xF6);
}

void lw__m2m_cbor_put_float(struct lw_buf *b, double d)
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
        double back = lw__m2m_half_to_double((uint16_t)(tmp[1] << 8 | tmp[2]));
        if (back == d && signbit(back) == signbit(d)) {
            lw_buf_put(b, tmp, 3);
            return;
        }
    }
    lw_buf_put(b, tmp, cbor_encode_single(fs, tmp, sizeof(tmp)));
}

int lw__m2m_cbor_put_value(struct lw_buf *b, const struct lw_m2m_value *v, bool time_tag)
{
    char tmp[16];
    int n;
    switch (v->type) {
    case LW_M2M_T_STRING:
    case LW_M2M_T_CORELNK: lw__m2m_cbor_put_text(b, v->bytes.ptr, v->bytes.len); return 0;
    case LW_M2M_T_OPAQUE: lw__m2m_cbor_put_bytes(b, v->bytes.ptr, v->bytes.len); return 0;
    case LW_M2M_T_TIME:
        if (time_tag)
            lw__m2m_cbor_put_tag(b, 1);
        lw__m2m_cbor_put_int(b, v->i);
        return 0;
    case LW_M2M_T_INTEGER: lw__m2m_cbor_put_int(b, v->i); return 0;
    case LW_M2M_T_UNSIGNED: lw__m2m_cbor_put_uint(b, v->u); return 0;
    case LW_M2M_T_FLOAT: lw__m2m_cbor_put_float(b, v->f); return 0;
    case LW_M2M_T_BOOLEAN: lw__m2m_cbor_put_bool(b, v->b); return 0;
    case LW_M2M_T_OBJLNK:
        n = snprintf(tmp, sizeof(tmp), "%u:%u", (unsigned)v->lnk.obj, (unsigned)v->lnk.inst);
        lw__m2m_cbor_put_text(b, tmp, (size_t)n);
        return 0;
    default: return LW_EINVAL;
    }
}

/* ---- CBOR single value (60) ---- */

int lw__m2m_cbor1_decode(struct lw__m2m_dec *d, struct lw_bytes in)
{
    struct lw__m2m_cbor_rd r = {in.ptr, in.len, 0, d};
    struct lw__m2m_cbor_tok t;
    struct lw_m2m_record rec;
    bool time_tag;
    int rc;
    if (d->req->len < 3)
        return LW_EINVAL;
    if ((rc = lw__m2m_cbor_leaf(&r, &t, &time_tag)))
        return rc;
    if (r.off != r.len)
        return lw__m2m_fail(d, LW_EMALFORMED, r.off);
    memset(&rec, 0, sizeof(rec));
    rec.path = *d->req;
    if ((rc = lw__m2m_cbor_tok_value(d, &t, time_tag, lw__m2m_type_of(d, d->req), &rec.value,
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
        lw__m2m_cbor_put_null(out);
    else if (lw__m2m_cbor_put_value(out, &r->value, true))
        return LW_EINVAL;
    return lw_buf_status(out);
}
