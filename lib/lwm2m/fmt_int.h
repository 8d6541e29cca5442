/* lib/lwm2m/fmt_int.h - internals shared by the content-format codecs (fmt*.c): the decode
 * context, value conversions, base64 / objlnk / UTF-8 / number text helpers, a CBOR pull reader
 * (own head decoder, see fmt_cbor.c) and CBOR writers built on libcbor's encoders. Not a
 * public API. Any thread; no global state.
 */
#ifndef LW_LWM2M_FMT_INT_H
#define LW_LWM2M_FMT_INT_H

#include "lwm2m/fmt.h"

#include "base/b64.h"
#include "base/buf.h"
#include "base/err.h"

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---- decode context ---- */
struct lw__m2m_dec {
    const struct lw_m2m_path *req;
    const struct lw_m2m_types *types;
    struct lw_m2m_fmt_cfg cfg; /* defaults filled in */
    struct lw_arena *a;
    struct lw_m2m_records *out;
    size_t err_off;
    size_t nrec; /* records added by this call */
};

/* Records `off` as the error offset and returns err. */
int lw__m2m_fail(struct lw__m2m_dec *d, int err, size_t off);

/* The object model's type of p (len 3/4), LW_M2M_T_NONE when unknown or no resolver. Inline
 * (as is lw__m2m_add): both run once per decoded record. */
static inline enum lw_m2m_type lw__m2m_type_of(const struct lw__m2m_dec *d,
                                               const struct lw_m2m_path *p)
{
    if (!d->types || !d->types->type_of || p->len < 3)
        return LW_M2M_T_NONE;
    enum lw_m2m_type t = d->types->type_of(d->types->ctx, p);
    return (unsigned)t <= LW_M2M_T_CORELNK ? t : LW_M2M_T_NONE;
}

/* Appends a record (copied); checks max_records (LW_ELIMIT), that the path lies within the
 * request path (LW_EMALFORMED) and that valued records name a resource or resource instance. */
static inline int lw__m2m_add(struct lw__m2m_dec *d, const struct lw_m2m_record *r, size_t off)
{
    if (d->nrec >= d->cfg.max_records)
        return lw__m2m_fail(d, LW_ELIMIT, off);
    if (d->req->len && !lw_m2m_path_within(&r->path, d->req))
        return lw__m2m_fail(d, LW_EMALFORMED, off);
    if (r->has_value && r->path.len < 3)
        return lw__m2m_fail(d, LW_EMALFORMED, off);
    /* A slot made by lw__m2m_reserve is filled directly (the push would zero it first). */
    struct lw_m2m_records *o = d->out;
    struct lw_m2m_record *dst = o->n < o->cap ? &o->v[o->n++] : lw_m2m_records_push(o, d->a);
    if (!dst)
        return lw__m2m_fail(d, LW_ENOMEM, off);
    *dst = *r;
    d->nrec++;
    return 0;
}

/* Makes room for n more records in one arena allocation (capped by max_records); a hint. */
void lw__m2m_reserve(struct lw__m2m_dec *d, size_t n);

/* Shared by the format decoders/encoders, dispatched from fmt.c. */
int lw__m2m_tlv_decode(struct lw__m2m_dec *d, struct lw_bytes in);
int lw__m2m_tlv_encode(const struct lw_m2m_path *req, const struct lw_m2m_record *r, size_t n,
                       struct lw_buf *out);
int lw__m2m_text_decode(struct lw__m2m_dec *d, struct lw_bytes in);
int lw__m2m_text_encode(const struct lw_m2m_path *req, const struct lw_m2m_record *r, size_t n,
                        struct lw_buf *out);
int lw__m2m_opaque_decode(struct lw__m2m_dec *d, struct lw_bytes in);
int lw__m2m_opaque_encode(const struct lw_m2m_path *req, const struct lw_m2m_record *r, size_t n,
                          struct lw_buf *out);
int lw__m2m_cbor1_decode(struct lw__m2m_dec *d, struct lw_bytes in);
int lw__m2m_cbor1_encode(const struct lw_m2m_path *req, const struct lw_m2m_record *r, size_t n,
                         struct lw_buf *out);
int lw__m2m_senml_json_decode(struct lw__m2m_dec *d, struct lw_bytes in, bool paths_only);
int lw__m2m_senml_json_encode(const struct lw_m2m_path *req, const struct lw_m2m_record *r,
                              size_t n, struct lw_buf *out);
int lw__m2m_senml_cbor_decode(struct lw__m2m_dec *d, struct lw_bytes in, bool paths_only);
int lw__m2m_senml_cbor_encode(const struct lw_m2m_path *req, const struct lw_m2m_record *r,
                              size_t n, struct lw_buf *out);
int lw__m2m_json_decode(struct lw__m2m_dec *d, struct lw_bytes in);
int lw__m2m_json_encode(const struct lw_m2m_path *req, const struct lw_m2m_record *r, size_t n,
                        struct lw_buf *out);
int lw__m2m_lcbor_decode(struct lw__m2m_dec *d, struct lw_bytes in);
int lw__m2m_lcbor_encode(const struct lw_m2m_path *req, const struct lw_m2m_record *r, size_t n,
                         struct lw_buf *out);

/* ---- numbers ---- */
enum lw__m2m_num_kind { LW__NUM_INT, LW__NUM_UINT, LW__NUM_FLOAT };
struct lw__m2m_num {
    enum lw__m2m_num_kind kind;
    int64_t i;
    uint64_t u;
    double f;
};
/* Converts a number to the model type (see fmt.h "Types"); 0 or LW_ETYPE. */
int lw__m2m_num_to_value(const struct lw__m2m_num *n, enum lw_m2m_type model,
                         struct lw_m2m_value *v);
/* Converts a text value (text/plain body, old JSON "sv") to the model type: STRING/CORELNK
 * views, OPAQUE base64 (arena), OBJLNK "o:i", numbers and "0"/"1" booleans when text_numbers.
 * Unknown model: STRING. 0, LW_ETYPE (contradicts model), LW_ENOMEM, LW_ELIMIT. */
int lw__m2m_text_to_value(struct lw__m2m_dec *d, struct lw_bytes s, enum lw_m2m_type model,
                          bool text_numbers, struct lw_m2m_value *v);
/* Writes a value as text/plain would (also used for "sv"); LW_EINVAL for NONE. */
int lw__m2m_put_text_value(struct lw_buf *b, const struct lw_m2m_value *v);
/* Shortest decimal text that reads back as exactly d (C locale); returns its length. With
 * force_point an integral value gets ".0". out needs 32 bytes. */
size_t lw__m2m_fmt_double(double d, char out[32], bool force_point);
int lw__m2m_parse_double(const char *s, size_t len, double *out);
/* What lw_m2m_path_format writes for a path (len <= 4), NUL-terminated, without snprintf;
 * returns the length. */
size_t lw__m2m_path_text(const struct lw_m2m_path *p, char out[32]);

/* ---- text helpers ---- */
bool lw__m2m_utf8_valid(const uint8_t *p, size_t n);
/* "oid:iid", each 0..65535; 0 or LW_EMALFORMED. */
int lw__m2m_objlnk_parse(const uint8_t *s, size_t n, struct lw_m2m_objlnk *out);
void lw__m2m_objlnk_put(struct lw_buf *b, struct lw_m2m_objlnk l);
/* JSON string literal with quotes and escapes; s must be valid UTF-8. */
void lw__m2m_json_put_str(struct lw_buf *b, const uint8_t *s, size_t n);
/* Offset of the k-th '{' opened at nesting depth `depth` (strings skipped): locates an entry
 * for error offsets in JSON, whose parser tree has no positions. 0 when not found. */
size_t lw__m2m_json_elem_off(struct lw_bytes in, size_t k, unsigned depth);
/* Concatenates base name and name and parses the path; 0 or LW_EMALFORMED. */
int lw__m2m_name_to_path(const uint8_t *bn, size_t bn_len, const uint8_t *n, size_t n_len,
                         struct lw_m2m_path *out);
/* Validates record for encoding: within req and has a known type when has_value. */
int lw__m2m_check_rec(const struct lw_m2m_path *req, const struct lw_m2m_record *r);

/* ---- CBOR reading (one data item head per call, RFC 8949 §3) ---- */
enum lw__m2m_cbor_kind {
    LW__CB_UINT,
    LW__CB_NEG, /* value is -1 - u */
    LW__CB_BYTES,
    LW__CB_TEXT,
    LW__CB_ARRAY,
    LW__CB_MAP,
    LW__CB_TAG,
    LW__CB_FLOAT,
    LW__CB_BOOL,
    LW__CB_NULL,
    LW__CB_UNDEF,
    LW__CB_BREAK,
};
struct lw__m2m_cbor_tok {
    enum lw__m2m_cbor_kind kind;
    bool indef;        /* ARRAY/MAP of indefinite length */
    uint64_t u;        /* UINT/NEG value, ARRAY/MAP count, TAG number */
    double f;          /* FLOAT */
    bool b;            /* BOOL */
    struct lw_bytes s; /* BYTES/TEXT, whole (indefinite strings are joined in the arena) */
    size_t off;        /* offset of the item in the input */
};
struct lw__m2m_cbor_rd {
    const uint8_t *p;
    size_t len, off;
    struct lw__m2m_dec *d; /* arena, limits, error offset */
};
/* Reads the next item head; strings whole. 0 or LW_EMALFORMED/LW_ELIMIT/LW_ENOMEM (offset set). */
int lw__m2m_cbor_next(struct lw__m2m_cbor_rd *r, struct lw__m2m_cbor_tok *t);
/* Skips the remainder of the item whose head is t (nested depth up to cfg.max_depth). */
int lw__m2m_cbor_skip(struct lw__m2m_cbor_rd *r, const struct lw__m2m_cbor_tok *t, size_t depth);
/* Reads one leaf item: skips tags (remembering tag 1 in *time_tag), folds a tag-4 decimal
 * fraction into a FLOAT token. Arrays/maps come back as their head. */
int lw__m2m_cbor_leaf(struct lw__m2m_cbor_rd *r, struct lw__m2m_cbor_tok *t, bool *time_tag);
/* IEEE 754 binary16 to double (RFC 8949 Appendix D). */
static inline double lw__m2m_half_to_double(uint16_t h)
{
    int exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
    double v;
    if (exp == 0) {
        v = ldexp(mant, -24); /* subnormal */
    } else if (exp != 31) {
        uint64_t bits = (uint64_t)(exp - 15 + 1023) << 52 | (uint64_t)mant << 42;
        memcpy(&v, &bits, sizeof(v));
    } else {
        v = mant ? NAN : INFINITY;
    }
    return (h & 0x8000) ? -v : v;
}

/* lw__m2m_cbor_leaf with an inlined fast path for the heads SenML values are made of: integers,
 * definite byte/text strings within the input and cfg.max_value_len, floats and simple values
 * 20-23. Everything else (tags, indefinite lengths, arrays/maps, truncated input, limits, other
 * simple values) goes to lw__m2m_cbor_leaf, which also reports the errors, so tokens, results
 * and error offsets are exactly those of lw__m2m_cbor_leaf. The function-call chain of the
 * general reader (leaf -> next -> head) was the largest cost of SenML-CBOR decoding. */
__attribute__((always_inline)) static inline int
lw__m2m_cbor_leaf_fast(struct lw__m2m_cbor_rd *r, struct lw__m2m_cbor_tok *t, bool *time_tag)
{
    size_t off = r->off, left = r->len - off, used = 1;
    const uint8_t *p = r->p + off;
    if (left == 0)
        goto slow;
    unsigned major = p[0] >> 5, ai = p[0] & 31;
    uint64_t arg = ai;
    if (ai >= 24) {
        if (ai >= 28)
            goto slow;
        size_t n = (size_t)1 << (ai - 24);
        if (left < 1 + n)
            goto slow;
        arg = n == 1   ? p[1]
              : n == 2 ? lw_load_be16(p + 1)
              : n == 4 ? lw_load_be32(p + 1)
                       : lw_load_be64(p + 1);
        used += n;
    }
    switch (major) {
    case 0: t->kind = LW__CB_UINT; break;
    case 1: t->kind = LW__CB_NEG; break;
    case 2:
    case 3:
        if (arg > left - used || arg > r->d->cfg.max_value_len)
            goto slow;
        t->kind = major == 2 ? LW__CB_BYTES : LW__CB_TEXT;
        t->s = (struct lw_bytes){p + used, (size_t)arg};
        used += (size_t)arg;
        break;
    case 7:
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
        default: goto slow;
        }
        arg = 0;
        break;
    default: goto slow; /* arrays, maps, tags */
    }
    t->u = arg;
    t->indef = false;
    t->off = off;
    r->off = off + used;
    *time_tag = false;
    return 0;
slow:
    return lw__m2m_cbor_leaf(r, t, time_tag);
}

/* UINT/NEG/FLOAT token to a number; false for other kinds. Inline: one call per SenML value. */
static inline bool lw__m2m_cbor_tok_num(const struct lw__m2m_cbor_tok *t, struct lw__m2m_num *n)
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
/* Leaf token to a value of the model type (text objlnk/corelnk/string, bytes opaque, numbers,
 * bool; NULL gives has_value=false via *present). 0, LW_ETYPE, LW_EMALFORMED (offset set). */
int lw__m2m_cbor_tok_value(struct lw__m2m_dec *d, const struct lw__m2m_cbor_tok *t, bool time_tag,
                           enum lw_m2m_type model, struct lw_m2m_value *v, bool *present);

/* ---- CBOR writing (heads by libcbor's encoders) ---- */
void lw__m2m_cbor_put_uint(struct lw_buf *b, uint64_t v);
void lw__m2m_cbor_put_int(struct lw_buf *b, int64_t v);
void lw__m2m_cbor_put_text(struct lw_buf *b, const void *s, size_t n);
void lw__m2m_cbor_put_bytes(struct lw_buf *b, const void *s, size_t n);
void lw__m2m_cbor_put_array(struct lw_buf *b, size_t n);
void lw__m2m_cbor_put_map(struct lw_buf *b, size_t n);
void lw__m2m_cbor_put_tag(struct lw_buf *b, uint64_t tag);
void lw__m2m_cbor_put_bool(struct lw_buf *b, bool v);
void lw__m2m_cbor_put_null(struct lw_buf *b);
/* Shortest of half/single/double that holds d exactly. */
void lw__m2m_cbor_put_float(struct lw_buf *b, double d);
/* A typed value as LwM2M CBOR / CBOR-60 leaf (objlnk as text, time as integer, plus tag 1
 * first when time_tag). LW_EINVAL for NONE. */
int lw__m2m_cbor_put_value(struct lw_buf *b, const struct lw_m2m_value *v, bool time_tag);

#endif
