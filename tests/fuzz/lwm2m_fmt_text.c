/* tests/fuzz/lwm2m_fmt_text.c - fuzz the single-value decoders: text/plain, opaque and CBOR
 * (60), picked by bits 4-5 of the first byte; then re-encode and decode again (see
 * lwm2m_fmt_fuzz.h). */
#include "lwm2m_fmt_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint16_t cfs[4] = {LW_M2M_CF_TEXT, LW_M2M_CF_OPAQUE, LW_M2M_CF_CBOR,
                                    LW_M2M_CF_CBOR};
    if (size < 1)
        return 0;
    fz_roundtrip(cfs[(data[0] >> 4) & 3], data, size);
    return 0;
}
