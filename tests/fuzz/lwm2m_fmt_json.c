/* tests/fuzz/lwm2m_fmt_json.c - fuzz the old LwM2M JSON (11543) content-format decoder, then
 * re-encode and decode again (see lwm2m_fmt_fuzz.h for the input layout and the checked
 * properties). */
#include "lwm2m_fmt_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_roundtrip(LW_M2M_CF_JSON, data, size);
    return 0;
}
