/* lib/base/b64.h - base64 (RFC 4648): the standard alphabet with padding (§4) or the URL-safe
 * alphabet without padding (§5). One implementation for the whole project: opaque values in
 * JSON/SenML, API tokens, webhook signatures. Any thread. */
#ifndef LW_BASE_B64_H
#define LW_BASE_B64_H

#include "arena.h"
#include "buf.h"

#include <stdbool.h>
#include <stddef.h>

/* Characters the encoding of n bytes takes (without a NUL). */
static inline size_t lw_b64_len(size_t n, bool url)
{
    return url ? n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0) : (n + 2) / 3 * 4;
}
/* Appends the encoding of in to b (url: URL-safe alphabet, no padding). */
void lw_b64_encode(struct lw_buf *b, struct lw_bytes in, bool url);
/* Writes the encoding plus a NUL into out (cap >= lw_b64_len(n, url) + 1); returns its length,
 * or 0 with out[0] = NUL when it does not fit. */
size_t lw_b64_encode_str(char *out, size_t cap, const void *in, size_t n, bool url);
/* Decodes either alphabet; padding optional (at most two '=', and then the length must be a
 * multiple of 4); unused trailing bits must be zero (canonical). The result is allocated from a
 * (owned by the arena). 0, LW_EMALFORMED or LW_ENOMEM. */
int lw_b64_decode(struct lw_arena *a, const void *s, size_t n, struct lw_bytes *out);

#endif
