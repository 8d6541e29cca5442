/* tests/fuzz/lwm2m_fmt_senml_cbor.c - fuzz the SenML CBOR (112) content-format decoder, then
 * re-encode and decode again (see lwm2m_fmt_fuzz.h for the input layout and the checked
 * properties). */
#include "lwm2m_fmt_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_roundtrip(LW_M2M_CF_SENML_CBOR, data, size);
    return 0;
}
