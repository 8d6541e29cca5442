/* tests/fuzz/lwm2m_fmt_senml_json.c - fuzz the SenML JSON (110) content-format decoder, then
 * re-encode and decode again (see lwm2m_fmt_fuzz.h for the input layout and the checked
 * properties). */
#include "lwm2m_fmt_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_roundtrip(LW_M2M_CF_SENML_JSON, data, size);
    return 0;
}
