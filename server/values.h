/* server/values.h - LwM2M records <-> the API's flat JSON value list, the same shape for reads,
 * notifications and Send:  {"path":"/3/0/0","type":"string","value":"ACME"}.
 * Integers are JSON numbers when |v| <= 2^53 and decimal strings otherwise; opaque is base64;
 * time is RFC 3339 UTC in "value" plus "epoch" (seconds); objlnk is "o:i"; corelnk a string.
 *
 * Ownership: returned json_t are new references. Records built from JSON borrow the json_t's
 * strings and use arena memory for the rest: they live as long as both.
 * Threads: any thread; no global state.
 */
#ifndef LW_SERVER_VALUES_H
#define LW_SERVER_VALUES_H

#include "base/arena.h"
#include "lwm2m/value.h"

#include <jansson.h>
#include <stddef.h>

/* One record as a JSON object (NULL on OOM). A record without a value gets only "path". */
json_t *values_record_json(const struct lw_m2m_record *rec);
/* An array of n records. */
json_t *values_records_json(const struct lw_m2m_record *recs, size_t n);

/* Converts {"values":[...]} or a bare [...] list into records appended to out. Each entry needs
 * "path" (within `within` when given) and "value"; "type" is optional when `types` knows the
 * resource (an explicit type must agree with a known one). Returns 0, or LW_EINVAL / LW_ETYPE
 * with a human-readable reason in err (cap bytes), or LW_ENOMEM. */
int values_from_json(const json_t *j, const struct lw_m2m_path *within,
                     const struct lw_m2m_types *types, struct lw_arena *a,
                     struct lw_m2m_records *out, char *err, size_t cap);

/* RFC 3339 UTC "YYYY-MM-DDTHH:MM:SSZ" of Unix seconds t into out[32]. */
void values_rfc3339(int64_t t, char out[32]);

#endif
