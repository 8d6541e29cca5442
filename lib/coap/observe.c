/* lib/coap/observe.c - Observe (RFC 7641) notification ordering. The observation table itself
 * lives in exchange.c with the rest of the per-peer state. */
#include "coap_int.h"

bool lw_coap_obs_fresher(uint32_t v1, uint64_t t1_ms, uint32_t v2, uint64_t t2_ms)
{
    /* RFC 7641 §3.4, with 24-bit values and a 128 s window. */
    v1 &= 0xffffff;
    v2 &= 0xffffff;
    return (v1 < v2 && v2 - v1 < (1u << 23)) || (v1 > v2 && v1 - v2 > (1u << 23)) ||
           (t2_ms > t1_ms + 128000u);
}
