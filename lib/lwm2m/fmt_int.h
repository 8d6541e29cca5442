/* lib/lwm2m/fmt_int.h - internals shared by the content-format codecs (fmt*.c): the decode
 * context, value conversions, base64 / objlnk / UTF-8 / number text helpers, a CBOR pull reader
 * (own head decoder, see fmt_cbor.c) and CBOR writers built on libcbor's encoders. Not a
 * public API. Any thread; no global state.
 */
#ifndef LW_LWM2M_FMT_INT_H
#define LW_LWM2M_FMT_INT_H

#include "lwm2m/fmt.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
/* The object model's type of p (len 3/4), LW_M2M_T_NONE when unknown or no resolver. */
enum lw_m2m_type lw__m2m_type_of(const struct lw__m2m_dec *d, const struct lw_m2m_path *p);
/* Appends a record (copied); checks max_records (LW_ELIMIT), that the path lies within the
 * request path (LW_EMALFORMED) and that valued records name a resource or resource instance. */
int lw__m2m_add(struct lw__m2m_dec *d, const struct lw_m2m_record *r, size_t off);

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

/* ---- text helpers ---- */
bool lw__m2m_utf8_valid(const uint8_t *p, size_t n);
/* Lenient base64 decoding: standard or URL-safe alphabet, padding optional. Arena-owned result
 * (may be empty with a non-NULL ptr). 0, LW_EMALFORMED, LW_ENOMEM. */
int lw__m2m_b64_decode(struct lw_arena *a, const uint8_t *s, size_t n, struct lw_bytes *out);
/* url: URL-safe alphabet without padding (SenML JSON), else standard with padding. */
void lw__m2m_b64_encode(struct lw_buf *b, struct lw_bytes in, bool url);
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
/* UINT/NEG/FLOAT token to a number; false for other kinds. */
bool lw__m2m_cbor_tok_num(const struct lw__m2m_cbor_tok *t, struct lw__m2m_num *n);
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
