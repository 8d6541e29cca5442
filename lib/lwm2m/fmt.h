/* lib/lwm2m/fmt.h - LwM2M content formats: decode a payload into records, encode records into a
 * payload. Formats: text/plain (0), opaque (42), CBOR single value (60), SenML JSON (110),
 * SenML CBOR (112), TLV (11542, legacy 1542), old LwM2M JSON (11543, legacy 1543) and LwM2M CBOR
 * (11544), plus the SenML path lists of Read-/Observe-Composite request bodies.
 *
 * Paths. Decoded records always carry absolute paths. Formats that do not name paths (text,
 * opaque, CBOR single value, TLV) are read relative to `request_path`, the CoAP request's
 * Uri-Path: text/opaque/CBOR-60 need a resource or resource instance path and yield one record;
 * TLV for /o holds Object-Instance TLVs, for /o/i resource TLVs (an Object-Instance TLV with the
 * same id is also accepted), for /o/i/r a Resource or Multiple-Resource TLV with id r or bare
 * Resource-Instance TLVs, for /o/i/r/ri one Resource-Instance TLV. Formats that name paths
 * (SenML, old JSON, LwM2M CBOR) must stay within request_path (root "/" admits everything).
 * Names are plain LwM2M paths: a client's alternate root path prefix is not understood.
 *
 * Types. TLV, text, opaque, CBOR-60 and numbers in SenML/JSON/LwM2M CBOR do not say which LwM2M
 * type they hold; the decoder asks `types->type_of` (types may be NULL: everything unknown).
 * With an unknown type the decoder keeps a raw form: TLV and opaque give OPAQUE bytes, text gives
 * STRING, numbers give INTEGER when integral and in int64 range (UNSIGNED above it), else FLOAT,
 * CBOR text gives STRING, tag 1 gives TIME in CBOR-60 only. A value whose encoding contradicts a
 * known type (e.g. 3.5 or "abc" for an Integer resource, a 3-byte TLV integer) fails with LW_ETYPE.
 *
 * Empty containers: an empty Multiple-Resource TLV decodes to a record for /o/i/r with
 * has_value=false, an empty Object-Instance TLV to a record for /o/i with has_value=false (when
 * the TLV adds that level to the request path; otherwise it yields nothing), and the encoders
 * turn such records back into the same empty containers. SenML/LwM2M-CBOR records
 * without a value (LwM2M CBOR: null leaf) also have has_value=false.
 *
 * Times: only SenML and old JSON carry them; the other encoders drop record times.
 *
 * SenML profile (RFC 8428 as used by LwM2M): name = bn + n (concatenated, then parsed as a
 * path), time = bt + t (has_time when either is present; relative times stay relative), values
 * v / vs / vb / vd (base64url, padding optional, in JSON; byte string in CBOR) / vlo ("o:i").
 * bver, bu, u and ut are ignored. bv, bs and s are rejected (LW_EMALFORMED): they would change
 * values and the LwM2M profile does not use them; so is any label ending in '_' (RFC 8428 §4.4
 * "must understand"), and a record with more than one value field. CBOR decimal fractions
 * (tag 4) are accepted for numbers and times; other tags are skipped.
 *
 * Limits (struct lw_m2m_fmt_cfg, zero = default): input size, record count, nesting depth
 * (CBOR; jansson applies its own fixed JSON depth limit), single string/opaque size. Hitting one
 * returns LW_ELIMIT. Every decoder works in time and
 * memory linear in the input; memory comes from the arena (SenML JSON and old JSON also build a
 * jansson tree on the heap, bounded by the input size and freed before returning).
 *
 * Errors: 0, LW_EMALFORMED (bad syntax/structure; *err_offset = byte offset of the problem:
 * the offending item for TLV and CBOR, jansson's error position or the start of the offending
 * record for the JSON formats, whose parse tree has no positions),
 * LW_ETYPE (value contradicts the object model; *err_offset set), LW_ELIMIT (cfg limit; offset
 * set), LW_EINVAL (bad arguments: unsupported request path for the format, record outside the
 * request path on encode, unknown format), LW_ENOTSUP (content format not handled here),
 * LW_ENOMEM (arena refused), LW_ENOSPC (fixed output buffer too small). On error `out` may hold
 * partial records; discard them. err_offset may be NULL.
 *
 * Threads: any thread; no global state. The caller owns the arena and output buffer.
 */
#ifndef LW_LWM2M_FMT_H
#define LW_LWM2M_FMT_H

#include "lwm2m/value.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    LW_M2M_CF_TEXT = 0,
    LW_M2M_CF_OPAQUE = 42,
    LW_M2M_CF_CBOR = 60,
    LW_M2M_CF_SENML_JSON = 110,
    LW_M2M_CF_SENML_CBOR = 112,
    LW_M2M_CF_TEXT_OLD = 1541, /* pre-IANA draft codes, accepted on input */
    LW_M2M_CF_TLV_OLD = 1542,
    LW_M2M_CF_JSON_OLD = 1543,
    LW_M2M_CF_OPAQUE_OLD = 1544,
    LW_M2M_CF_TLV = 11542,
    LW_M2M_CF_JSON = 11543,
    LW_M2M_CF_LWM2M_CBOR = 11544,
};

/* Limits for decoders; a zero field means the default shown. */
struct lw_m2m_fmt_cfg {
    size_t max_input;     /* payload bytes; default 1 MiB */
    size_t max_records;   /* records per payload; default 10000 */
    size_t max_depth;     /* CBOR/JSON nesting (arrays, maps, tags); default 16 */
    size_t max_value_len; /* one string/opaque value (after base64 decoding); default 1 MiB */
};

/* Decodes `in` (borrowed) of the given content format into records appended to `out` (which
 * the caller zero-initialises or reuses). String/opaque/corelnk views point into `in` or into
 * arena memory, so the records live as long as both. `request_path` is required (see the top of
 * this file; use LW_M2M_PATH_ROOT for Send and composite responses). `types` and `cfg` may be
 * NULL. Returns 0 or an error as described above. */
int lw_m2m_decode(uint16_t content_format, struct lw_bytes in,
                  const struct lw_m2m_path *request_path, const struct lw_m2m_types *types,
                  const struct lw_m2m_fmt_cfg *cfg, struct lw_arena *a, struct lw_m2m_records *out,
                  size_t *err_offset);

/* Encodes `n` records (borrowed) relative to `request_path` and appends the payload to `out`.
 * Every record must lie within request_path and carry a value of a type the format can hold
 * (text/opaque/CBOR-60: exactly one record, at request_path itself). TLV groups consecutive
 * records of the same instance / resource, so give them in path order (lw_m2m_path_cmp); SenML
 * uses bn = request_path (omitted for the root) and n = the rest of the path; LwM2M CBOR writes
 * definite-length maps keyed by the longest shared path prefix. Numbers use the shortest exact
 * encoding (TLV integers 1/2/4/8 bytes, floats 4 or 8; CBOR half/single/double). Returns 0,
 * LW_EINVAL (bad records), LW_ENOTSUP (format), or the buffer's LW_ENOSPC / LW_ENOMEM. */
int lw_m2m_encode(uint16_t content_format, const struct lw_m2m_path *request_path,
                  const struct lw_m2m_record *recs, size_t n, struct lw_buf *out);

/* Read-/Observe-Composite path lists: SenML JSON (110) or SenML CBOR (112) records holding only
 * names, e.g. CBOR `[{0:"/3/0/0"},{0:"/1/0/1"}]`. Decoding appends one has_value=false record
 * per entry (paths of any depth, "/" allowed; times ignored); a record carrying a value is
 * LW_EMALFORMED.
 * Encoding writes one {n: path} record per path. Same errors as above. */
int lw_m2m_decode_paths(uint16_t content_format, struct lw_bytes in,
                        const struct lw_m2m_fmt_cfg *cfg, struct lw_arena *a,
                        struct lw_m2m_records *out, size_t *err_offset);
int lw_m2m_encode_paths(uint16_t content_format, const struct lw_m2m_path *paths, size_t n,
                        struct lw_buf *out);

/* "text", "opaque", "cbor", "senml-json", "senml-cbor", "tlv", "json", "lwm2m-cbor" (the legacy
 * ids map to their modern names); NULL for other ids. */
const char *lw_m2m_cf_name(uint16_t content_format);
/* Parses one of the names above, or a decimal id of a supported format; 0 or LW_EINVAL. */
int lw_m2m_cf_parse(const char *s, size_t len, uint16_t *out);
/* true when lw_m2m_decode/encode handle this content format. */
bool lw_m2m_cf_supported(uint16_t content_format);

#endif
