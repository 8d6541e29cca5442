/* lib/lwm2m/fmt.c - content-format dispatcher and helpers shared by the codecs (numbers,
 * base64, objlnk, UTF-8, JSON strings). See fmt.h for the contract.
 *
 * Base64 is written here rather than taken from a library: none of the Debian libraries we
 * link (libcbor, jansson, expat) exports a codec, and SenML needs the URL-safe variant with
 * optional padding while old JSON and text need the standard one.
 */
#include "fmt_int.h"

#include "base/err.h"
#include "base/util.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEF_MAX_INPUT   (1u << 20)
#define DEF_MAX_RECORDS 10000
#define DEF_MAX_DEPTH   16
#define DEF_MAX_VALUE   (1u << 20)

/* ---- content-format ids ---- */

static const struct {
    uint16_t id;
    const char *name;
} cf_names[] = {
    {LW_M2M_CF_TEXT, "text"},
    {LW_M2M_CF_OPAQUE, "opaque"},
    {LW_M2M_CF_CBOR, "cbor"},
    {LW_M2M_CF_SENML_JSON, "senml-json"},
    {LW_M2M_CF_SENML_CBOR, "senml-cbor"},
    {LW_M2M_CF_TLV, "tlv"},
    {LW_M2M_CF_JSON, "json"},
    {LW_M2M_CF_LWM2M_CBOR, "lwm2m-cbor"},
};

static uint16_t cf_canon(uint16_t cf)
{
    switch (cf) {
    case LW_M2M_CF_TEXT_OLD: return LW_M2M_CF_TEXT;
    case LW_M2M_CF_TLV_OLD: return LW_M2M_CF_TLV;
    case LW_M2M_CF_JSON_OLD: return LW_M2M_CF_JSON;
    case LW_M2M_CF_OPAQUE_OLD: return LW_M2M_CF_OPAQUE;
    default: return cf;
    }
}

const char *lw_m2m_cf_name(uint16_t content_format)
{
    uint16_t cf = cf_canon(content_format);
    for (size_t k = 0; k < LW_ARRAY_SIZE(cf_names); k++)
        if (cf_names[k].id == cf)
            return cf_names[k].name;
    return NULL;
}

bool lw_m2m_cf_supported(uint16_t content_format)
{
    return lw_m2m_cf_name(content_format) != NULL;
}

int lw_m2m_cf_parse(const char *s, size_t len, uint16_t *out)
{
    for (size_t k = 0; k < LW_ARRAY_SIZE(cf_names); k++) {
        if (strlen(cf_names[k].name) == len && strncasecmp(s, cf_names[k].name, len) == 0) {
            *out = cf_names[k].id;
            return 0;
        }
    }
    uint64_t v;
    if (lw_parse_u64(s, len, &v) == 0 && v <= UINT16_MAX && lw_m2m_cf_supported((uint16_t)v)) {
        *out = (uint16_t)v;
        return 0;
    }
    return LW_EINVAL;
}

/* ---- decode context ---- */

int lw__m2m_fail(struct lw__m2m_dec *d, int err, size_t off)
{
    d->err_off = off;
    return err;
}

void lw__m2m_reserve(struct lw__m2m_dec *d, size_t n)
{
    struct lw_m2m_records *r = d->out;
    n = LW_MIN(n, d->cfg.max_records - d->nrec);
    if (r->cap - r->n >= n)
        return;
    struct lw_m2m_record *v = lw_arena_alloc(d->a, (r->n + n) * sizeof(*v));
    if (!v)
        return; /* not fatal: lw_m2m_records_push grows on demand and reports failure */
    if (r->n)
        memcpy(v, r->v, r->n * sizeof(*v));
    r->v = v;
    r->cap = r->n + n;
}

static void dec_init(struct lw__m2m_dec *d, const struct lw_m2m_path *req,
                     const struct lw_m2m_types *types, const struct lw_m2m_fmt_cfg *cfg,
                     struct lw_arena *a, struct lw_m2m_records *out)
{
    static const struct lw_m2m_path root = {{0, 0, 0, 0}, 0};
    memset(d, 0, sizeof(*d));
    d->req = req ? req : &root;
    d->types = types;
    if (cfg)
        d->cfg = *cfg;
    if (!d->cfg.max_input)
        d->cfg.max_input = DEF_MAX_INPUT;
    if (!d->cfg.max_records)
        d->cfg.max_records = DEF_MAX_RECORDS;
    if (!d->cfg.max_depth)
        d->cfg.max_depth = DEF_MAX_DEPTH;
    if (!d->cfg.max_value_len)
        d->cfg.max_value_len = DEF_MAX_VALUE;
    d->a = a;
    d->out = out;
}

int lw_m2m_decode(uint16_t content_format, struct lw_bytes in,
                  const struct lw_m2m_path *request_path, const struct lw_m2m_types *types,
                  const struct lw_m2m_fmt_cfg *cfg, struct lw_arena *a, struct lw_m2m_records *out,
                  size_t *err_offset)
{
    struct lw__m2m_dec d;
    int rc;
    dec_init(&d, request_path, types, cfg, a, out);
    if (!request_path || request_path->len > 4 || !a || !out || (!in.ptr && in.len)) {
        rc = LW_EINVAL;
        goto out;
    }
    if (in.len > d.cfg.max_input) {
        rc = lw__m2m_fail(&d, LW_ELIMIT, d.cfg.max_input);
        goto out;
    }
    switch (cf_canon(content_format)) {
    case LW_M2M_CF_TEXT: rc = lw__m2m_text_decode(&d, in); break;
    case LW_M2M_CF_OPAQUE: rc = lw__m2m_opaque_decode(&d, in); break;
    case LW_M2M_CF_CBOR: rc = lw__m2m_cbor1_decode(&d, in); break;
    case LW_M2M_CF_SENML_JSON: rc = lw__m2m_senml_json_decode(&d, in, false); break;
    case LW_M2M_CF_SENML_CBOR: rc = lw__m2m_senml_cbor_decode(&d, in, false); break;
    case LW_M2M_CF_TLV: rc = lw__m2m_tlv_decode(&d, in); break;
    case LW_M2M_CF_JSON: rc = lw__m2m_json_decode(&d, in); break;
    case LW_M2M_CF_LWM2M_CBOR: rc = lw__m2m_lcbor_decode(&d, in); break;
    default: rc = LW_ENOTSUP; break;
    }
out:
    if (rc && err_offset)
        *err_offset = d.err_off;
    return rc;
}

int lw_m2m_decode_paths(uint16_t content_format, struct lw_bytes in,
                        const struct lw_m2m_fmt_cfg *cfg, struct lw_arena *a,
                        struct lw_m2m_records *out, size_t *err_offset)
{
    struct lw__m2m_dec d;
    int rc;
    dec_init(&d, NULL, NULL, cfg, a, out);
    if (!a || !out || (!in.ptr && in.len)) {
        rc = LW_EINVAL;
        goto out;
    }
    if (in.len > d.cfg.max_input) {
        rc = lw__m2m_fail(&d, LW_ELIMIT, d.cfg.max_input);
        goto out;
    }
    switch (content_format) {
    case LW_M2M_CF_SENML_JSON: rc = lw__m2m_senml_json_decode(&d, in, true); break;
    case LW_M2M_CF_SENML_CBOR: rc = lw__m2m_senml_cbor_decode(&d, in, true); break;
    default: rc = LW_ENOTSUP; break;
    }
out:
    if (rc && err_offset)
        *err_offset = d.err_off;
    return rc;
}

int lw_m2m_encode(uint16_t content_format, const struct lw_m2m_path *request_path,
                  const struct lw_m2m_record *recs, size_t n, struct lw_buf *out)
{
    if (!request_path || request_path->len > 4 || (!recs && n) || !out)
        return LW_EINVAL;
    for (size_t k = 0; k < n; k++) {
        int rc = lw__m2m_check_rec(request_path, &recs[k]);
        if (rc)
            return rc;
    }
    switch (cf_canon(content_format)) {
    case LW_M2M_CF_TEXT: return lw__m2m_text_encode(request_path, recs, n, out);
    case LW_M2M_CF_OPAQUE: return lw__m2m_opaque_encode(request_path, recs, n, out);
    case LW_M2M_CF_CBOR: return lw__m2m_cbor1_encode(request_path, recs, n, out);
    case LW_M2M_CF_SENML_JSON: return lw__m2m_senml_json_encode(request_path, recs, n, out);
    case LW_M2M_CF_SENML_CBOR: return lw__m2m_senml_cbor_encode(request_path, recs, n, out);
    case LW_M2M_CF_TLV: return lw__m2m_tlv_encode(request_path, recs, n, out);
    case LW_M2M_CF_JSON: return lw__m2m_json_encode(request_path, recs, n, out);
    case LW_M2M_CF_LWM2M_CBOR: return lw__m2m_lcbor_encode(request_path, recs, n, out);
    default: return LW_ENOTSUP;
    }
}

int lw_m2m_encode_paths(uint16_t content_format, const struct lw_m2m_path *paths, size_t n,
                        struct lw_buf *out)
{
    if ((!paths && n) || !out)
        return LW_EINVAL;
    if (content_format != LW_M2M_CF_SENML_JSON && content_format != LW_M2M_CF_SENML_CBOR)
        return LW_ENOTSUP;
    bool json = content_format == LW_M2M_CF_SENML_JSON;
    if (json)
        lw_buf_put_u8(out, '[');
    else
        lw__m2m_cbor_put_array(out, n);
    for (size_t k = 0; k < n; k++) {
        char s[32];
        int len = paths[k].len <= 4 ? lw_m2m_path_format(&paths[k], s, sizeof(s)) : LW_EINVAL;
        if (len < 0)
            return LW_EINVAL;
        for (unsigned j = 0; j < paths[k].len; j++)
            if (paths[k].id[j] > LW_M2M_ID_MAX)
                return LW_EINVAL;
        if (json) {
            lw_buf_put_str(out, k ? ",{\"n\":" : "{\"n\":");
            lw__m2m_json_put_str(out, (const uint8_t *)s, (size_t)len);
            lw_buf_put_u8(out, '}');
        } else {
            lw__m2m_cbor_put_map(out, 1);
            lw__m2m_cbor_put_uint(out, 0);
            lw__m2m_cbor_put_text(out, s, (size_t)len);
        }
    }
    if (json)
        lw_buf_put_u8(out, ']');
    return lw_buf_status(out);
}

int lw__m2m_check_rec(const struct lw_m2m_path *req, const struct lw_m2m_record *r)
{
    if (r->path.len > 4 || !lw_m2m_path_within(&r->path, req))
        return LW_EINVAL;
    for (unsigned k = 0; k < r->path.len; k++)
        if (r->path.id[k] > LW_M2M_ID_MAX)
            return LW_EINVAL;
    if (r->has_value) {
        if (r->value.type == LW_M2M_T_NONE || (unsigned)r->value.type > LW_M2M_T_CORELNK)
            return LW_EINVAL;
        if ((r->value.type == LW_M2M_T_STRING || r->value.type == LW_M2M_T_OPAQUE ||
             r->value.type == LW_M2M_T_CORELNK) &&
            !r->value.bytes.ptr && r->value.bytes.len)
            return LW_EINVAL;
        if ((r->value.type == LW_M2M_T_STRING || r->value.type == LW_M2M_T_CORELNK) &&
            !lw__m2m_utf8_valid(r->value.bytes.ptr, r->value.bytes.len))
            return LW_EINVAL;
    }
    return 0;
}

/* ---- numbers ---- */

/* 2^63 and 2^64 as doubles: exact powers of two. */
#define TWO63 9223372036854775808.0
#define TWO64 18446744073709551616.0

int lw__m2m_num_to_value(const struct lw__m2m_num *n, enum lw_m2m_type model,
                         struct lw_m2m_value *v)
{
    switch (model) {
    case LW_M2M_T_INTEGER:
    case LW_M2M_T_TIME:
        v->type = model;
        if (n->kind == LW__NUM_INT)
            v->i = n->i;
        else if (n->kind == LW__NUM_UINT && n->u <= INT64_MAX)
            v->i = (int64_t)n->u;
        else if (n->kind == LW__NUM_FLOAT && n->f == floor(n->f) && n->f >= -TWO63 && n->f < TWO63)
            v->i = (int64_t)n->f;
        else
            return LW_ETYPE;
        return 0;
    case LW_M2M_T_UNSIGNED:
        v->type = model;
        if (n->kind == LW__NUM_INT && n->i >= 0)
            v->u = (uint64_t)n->i;
        else if (n->kind == LW__NUM_UINT)
            v->u = n->u;
        else if (n->kind == LW__NUM_FLOAT && n->f == floor(n->f) && n->f >= 0 && n->f < TWO64)
            v->u = (uint64_t)n->f;
        else
            return LW_ETYPE;
        return 0;
    case LW_M2M_T_FLOAT:
        v->type = model;
        v->f = n->kind == LW__NUM_INT    ? (double)n->i
               : n->kind == LW__NUM_UINT ? (double)n->u
                                         : n->f;
        return 0;
    case LW_M2M_T_NONE:
        if (n->kind == LW__NUM_INT) {
            v->type = LW_M2M_T_INTEGER;
            v->i = n->i;
        } else if (n->kind == LW__NUM_UINT && n->u <= INT64_MAX) {
            v->type = LW_M2M_T_INTEGER;
            v->i = (int64_t)n->u;
        } else if (n->kind == LW__NUM_UINT) {
            v->type = LW_M2M_T_UNSIGNED;
            v->u = n->u;
        } else {
            v->type = LW_M2M_T_FLOAT;
            v->f = n->f;
        }
        return 0;
    default: return LW_ETYPE;
    }
}

int lw__m2m_parse_double(const char *s, size_t len, double *out)
{
    char tmp[64];
    if (len == 0 || len >= sizeof(tmp))
        return LW_EMALFORMED;
    /* strtod accepts leading blanks, hex floats, "inf"/"nan": only plain decimals pass here. */
    for (size_t k = 0; k < len; k++) {
        char c = s[k];
        if (!((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '-' || c == '+'))
            return LW_EMALFORMED;
    }
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    char *end;
    double v = strtod(tmp, &end);
    if (end != tmp + len || !isfinite(v))
        return LW_EMALFORMED;
    *out = v;
    return 0;
}

/* Decimal digits of v into out (no NUL); returns their count. */
static size_t u64_dec(uint64_t v, char *out)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t k = 0; k < n; k++)
        out[k] = tmp[n - 1 - k];
    return n;
}

size_t lw__m2m_path_text(const struct lw_m2m_path *p, char out[32])
{
    size_t o = 0;
    if (p->len == 0)
        out[o++] = '/';
    for (unsigned k = 0; k < p->len && k < 4; k++) {
        unsigned v = p->id[k];
        size_t nd = v < 10 ? 1 : v < 100 ? 2 : v < 1000 ? 3 : v < 10000 ? 4 : 5;
        out[o++] = '/';
        for (size_t j = nd; j-- > 0; v /= 10) /* written from the last digit back */
            out[o + j] = (char)('0' + v % 10);
        o += nd;
    }
    out[o] = '\0';
    return o;
}

/* Exact decimal text of a finite non-integral d that is a multiple of 2^-10 with at most 15
 * significant digits, as "%.15g" prints it (such a value lies in [2^-10, 1e15), where %g uses
 * fixed notation, and its exact expansion is what %.15g yields and reads back exactly); 0 when
 * d is not such a value. Saves snprintf + strtod for the common sensor values (20.5, 0.25). */
static size_t dyadic_text(double d, char out[32])
{
    double a = fabs(d);
    if (!(a < 1e15))
        return 0;
    unsigned k = 1;
    double m = a * 2;
    while (m != floor(m)) {
        if (++k > 10)
            return 0;
        m *= 2; /* exact: scaling by 2 */
    }
    uint64_t ip = (uint64_t)a, mm = (uint64_t)m;
    static const uint32_t pow5[11] = {1,     5,     25,     125,     625,    3125,
                                      15625, 78125, 390625, 1953125, 9765625};
    uint64_t frac = (mm - (ip << k)) * pow5[k]; /* k decimal digits, the last one 5 */
    char fd[10];
    for (unsigned j = k; j-- > 0; frac /= 10)
        fd[j] = (char)('0' + frac % 10);
    size_t o = 0;
    if (d < 0)
        out[o++] = '-';
    size_t id = u64_dec(ip, out + o);
    unsigned lead = 0; /* zeros after the point that are not significant (ip == 0) */
    while (ip == 0 && lead < k && fd[lead] == '0')
        lead++;
    if ((ip ? id : 0) + k - lead > 15)
        return 0;
    o += id;
    out[o++] = '.';
    memcpy(out + o, fd, k);
    o += k;
    out[o] = '\0';
    return o;
}

size_t lw__m2m_fmt_double(double d, char out[32], bool force_point)
{
    int n = 0;
    if (!isfinite(d)) {
        n = snprintf(out, 32, "%s", isnan(d) ? "nan" : d < 0 ? "-inf" : "inf");
        return (size_t)n;
    }
    if (d == floor(d) && fabs(d) < 1e15) {
        /* what "%" PRId64 prints, without snprintf */
        int64_t i = (int64_t)d;
        if (d == 0 && signbit(d)) /* keep -0 */
            out[n++] = '-';
        if (i < 0)
            out[n++] = '-';
        n += (int)u64_dec(i < 0 ? (uint64_t)0 - (uint64_t)i : (uint64_t)i, out + n);
        out[n] = '\0';
    } else if ((n = (int)dyadic_text(d, out)) == 0) {
        /* %g drops trailing zeros, so the first precision that reads back exactly is the
         * shortest for values of up to 15 significant digits (rounding error < half an ulp). */
        for (int prec = 15; prec <= 17; prec++) {
            n = snprintf(out, 32, "%.*g", prec, d);
            if (strtod(out, NULL) == d)
                break;
        }
    }
    if (force_point && !strpbrk(out, ".eEn") && n + 2 < 32) {
        out[n++] = '.';
        out[n++] = '0';
        out[n] = '\0';
    }
    return (size_t)n;
}

static int text_number(struct lw_bytes s, enum lw_m2m_type model, struct lw_m2m_value *v)
{
    const char *p = (const char *)s.ptr;
    v->type = model;
    switch (model) {
    case LW_M2M_T_INTEGER:
    case LW_M2M_T_TIME: return lw_parse_i64(p, s.len, &v->i) ? LW_ETYPE : 0;
    case LW_M2M_T_UNSIGNED: return lw_parse_u64(p, s.len, &v->u) ? LW_ETYPE : 0;
    case LW_M2M_T_FLOAT: return lw__m2m_parse_double(p, s.len, &v->f) ? LW_ETYPE : 0;
    case LW_M2M_T_BOOLEAN:
        if (s.len == 1 && (p[0] == '0' || p[0] == '1')) {
            v->b = p[0] == '1';
            return 0;
        }
        return LW_ETYPE;
    default: return LW_ETYPE;
    }
}

int lw__m2m_text_to_value(struct lw__m2m_dec *d, struct lw_bytes s, enum lw_m2m_type model,
                          bool text_numbers, struct lw_m2m_value *v)
{
    int rc;
    switch (model) {
    case LW_M2M_T_NONE:
    case LW_M2M_T_STRING:
    case LW_M2M_T_CORELNK:
        if (!lw__m2m_utf8_valid(s.ptr, s.len))
            return LW_EMALFORMED;
        v->type = model == LW_M2M_T_NONE ? LW_M2M_T_STRING : model;
        v->bytes = s;
        return 0;
    case LW_M2M_T_OPAQUE:
        v->type = model;
        if (s.len / 4 * 3 > d->cfg.max_value_len + 3)
            return LW_ELIMIT;
        rc = lw_b64_decode(d->a, s.ptr, s.len, &v->bytes);
        return rc == LW_EMALFORMED ? LW_ETYPE : rc;
    case LW_M2M_T_OBJLNK:
        v->type = model;
        return lw__m2m_objlnk_parse(s.ptr, s.len, &v->lnk) ? LW_ETYPE : 0;
    default:
        if (!text_numbers)
            return LW_ETYPE;
        return text_number(s, model, v);
    }
}

int lw__m2m_put_text_value(struct lw_buf *b, const struct lw_m2m_value *v)
{
    char tmp[32];
    size_t n;
    switch (v->type) {
    case LW_M2M_T_STRING:
    case LW_M2M_T_CORELNK: lw_buf_put(b, v->bytes.ptr, v->bytes.len); return 0;
    case LW_M2M_T_INTEGER:
    case LW_M2M_T_TIME: lw_buf_printf(b, "%" PRId64, v->i); return 0;
    case LW_M2M_T_UNSIGNED: lw_buf_printf(b, "%" PRIu64, v->u); return 0;
    case LW_M2M_T_FLOAT:
        if (!isfinite(v->f))
            return LW_EINVAL;
        n = lw__m2m_fmt_double(v->f, tmp, false);
        lw_buf_put(b, tmp, n);
        return 0;
    case LW_M2M_T_BOOLEAN: lw_buf_put_u8(b, v->b ? '1' : '0'); return 0;
    case LW_M2M_T_OPAQUE: lw_b64_encode(b, v->bytes, false); return 0;
    case LW_M2M_T_OBJLNK: lw__m2m_objlnk_put(b, v->lnk); return 0;
    default: return LW_EINVAL;
    }
}

/* ---- text helpers ---- */

bool lw__m2m_utf8_valid(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (p[i + k] & 0x3F);
        }
        /* overlong forms, surrogates, beyond U+10FFFF */
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

int lw__m2m_objlnk_parse(const uint8_t *s, size_t n, struct lw_m2m_objlnk *out)
{
    const uint8_t *colon = n ? memchr(s, ':', n) : NULL;
    uint64_t o, i;
    if (!colon)
        return LW_EMALFORMED;
    size_t a = (size_t)(colon - s);
    if (lw_parse_u64((const char *)s, a, &o) || o > UINT16_MAX ||
        lw_parse_u64((const char *)colon + 1, n - a - 1, &i) || i > UINT16_MAX)
        return LW_EMALFORMED;
    out->obj = (uint16_t)o;
    out->inst = (uint16_t)i;
    return 0;
}

void lw__m2m_objlnk_put(struct lw_buf *b, struct lw_m2m_objlnk l)
{
    lw_buf_printf(b, "%u:%u", (unsigned)l.obj, (unsigned)l.inst);
}

void lw__m2m_json_put_str(struct lw_buf *b, const uint8_t *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    lw_buf_put_u8(b, '"');
    size_t run = 0;
    for (size_t k = 0; k < n; k++) {
        uint8_t c = s[k];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        lw_buf_put(b, s + run, k - run);
        run = k + 1;
        char esc[6] = {'\\', 0};
        size_t el = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            el = 6;
        }
        lw_buf_put(b, esc, el);
    }
    lw_buf_put(b, s + run, n - run);
    lw_buf_put_u8(b, '"');
}

/* The path grammar of lw_m2m_path_parse over s[0..len), 1 <= len <= 24. A leaf function with
 * the joining of bn and n kept out of it (fewer registers to save per call). */
__attribute__((always_inline)) static inline int name_parse(const uint8_t *s, size_t len,
                                                            struct lw_m2m_path *out)
{
    static const struct lw_m2m_path root = {{0, 0, 0, 0}, 0};
    if (s[0] != '/')
        return LW_EMALFORMED;
    *out = root; /* ids past the parsed depth stay 0 */
    if (len == 1)
        return 0;
    const uint8_t *q = s + 1, *end = s + len;
    unsigned depth = 0;
    for (;;) {
        const uint8_t *st = q;
        uint32_t v = 0; /* at most 24 digits: wraps harmlessly, rejected below by length */
        unsigned dg;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        if (end - q >= 4) {
            /* Four digits at once (ids like 3303, 5700 are common): all four bytes are in
             * '0'..'9' iff no byte has its top bit set in x, x - '0'*4 (a byte below '0'
             * borrows) or x + 0x46*4 (a byte above '9' reaches 0x80). The digits (first one in
             * the low byte) are then combined pairwise: d0*10+d1 | d2*10+d3, then *100 + . */
            uint32_t x;
            memcpy(&x, q, sizeof(x));
            uint32_t t = x - 0x30303030u;
            if (((t | (x + 0x46464646u) | x) & 0x80808080u) == 0) {
                t = (t * 10 + (t >> 8)) & 0x00FF00FFu;
                v = (t * 100 + (t >> 16)) & 0xFFFFu;
                q += 4;
            }
        }
#endif
        /* one test per character: '/' and every other non-digit end the run */
        while (q < end && (dg = (unsigned)*q - '0') <= 9) {
            v = v * 10 + dg;
            q++;
        }
        size_t nd = (size_t)(q - st);
        if (nd - 1 > 4 || depth == 4 || v > LW_M2M_ID_MAX || (nd > 1 && *st == '0'))
            return LW_EMALFORMED; /* nd - 1 > 4: no digits (wraps) or more than 5 */
        out->id[depth++] = (uint16_t)v;
        if (q == end)
            break;
        if (*q != '/' || ++q == end)
            return LW_EMALFORMED; /* not a digit, or a trailing '/' */
    }
    out->len = (uint8_t)depth;
    return 0;
}

int lw__m2m_name_to_path(const uint8_t *bn, size_t bn_len, const uint8_t *n, size_t n_len,
                         struct lw_m2m_path *out)
{
    /* Same grammar as lw_m2m_path_parse, inlined: this runs once per SenML record. The longest
     * valid path, "/65534/65534/65534/65534", has 24 characters. */
    size_t len = bn_len + n_len;
    if (len == 0 || len > 24)
        return LW_EMALFORMED;
    if (bn_len == 0)
        return name_parse(n, len, out);
    if (n_len == 0)
        return name_parse(bn, len, out);
    uint8_t buf[24];
    memcpy(buf, bn, bn_len);
    memcpy(buf + bn_len, n, n_len);
    return name_parse(buf, len, out);
}

size_t lw__m2m_json_elem_off(struct lw_bytes in, size_t k, unsigned depth)
{
    unsigned lvl = 0;
    bool str = false;
    for (size_t i = 0; i < in.len; i++) {
        uint8_t c = in.ptr[i];
        if (str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                str = false;
            continue;
        }
        if (c == '"') {
            str = true;
        } else if (c == '{' || c == '[') {
            if (c == '{' && lvl == depth && k-- == 0)
                return i;
            lvl++;
        } else if ((c == '}' || c == ']') && lvl) {
            lvl--;
        }
    }
    return 0;
}
