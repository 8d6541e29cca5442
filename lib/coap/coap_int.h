/* lib/coap/coap_int.h - cross-file internals of lib/coap (not part of the public API). */
#ifndef LW_COAP_COAP_INT_H
#define LW_COAP_COAP_INT_H

#include "coap.h"

/* Bytes needed to encode an option number delta or length in the extended format (0, 1 or 2). */
static inline size_t lw__coap_ext_len(uint32_t v)
{
    return v < 13 ? 0 : v < 269 ? 1 : 2;
}

/* Shortest big-endian encoding of v into out[4]; returns the length (0 for v == 0). */
size_t lw__coap_uint_bytes(uint32_t v, uint8_t out[4]);

/* Copies src's options (skipping option number `skip1` and `skip2`; 0 skips nothing) into dst,
 * appending. 0 or LW_ENOSPC. */
int lw__coap_copy_opts(struct lw_coap_msg *dst, const struct lw_coap_msg *src, uint16_t skip1,
                       uint16_t skip2);

#endif
