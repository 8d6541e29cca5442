/* tests/fuzz/lwm2m_fmt_tlv.c - fuzz the TLV (11542) content-format decoder, then re-encode and
 * decode again (see lwm2m_fmt_fuzz.h for the input layout and the checked properties). */
#include "lwm2m_fmt_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_roundtrip(LW_M2M_CF_TLV, data, size);
    return 0;
}
