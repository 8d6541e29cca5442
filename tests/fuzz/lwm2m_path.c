/* Fuzz target: LwM2M path text and type/version names (lib/lwm2m/value.c, registry.c).
 * A parsed path must format back to the same text; any failure aborts. */
#include "lwm2m/registry.h"
#include "lwm2m/value.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    struct lw_m2m_path p, q;
    char out[32];
    if (lw_m2m_path_parse(s, size, &p) == 0) {
        if (p.len > 4)
            abort();
        for (unsigned k = 0; k < p.len; k++)
            if (p.id[k] > LW_M2M_ID_MAX)
                abort();
        int n = lw_m2m_path_format(&p, out, sizeof(out));
        if (n < 0 || (size_t)n != size || memcmp(out, s, size))
            abort();
        if (lw_m2m_path_parse(out, (size_t)n, &q) || !lw_m2m_path_eq(&p, &q) ||
            lw_m2m_path_cmp(&p, &q) != 0 || !lw_m2m_path_within(&p, &q))
            abort();
    }
    enum lw_m2m_type t = lw_m2m_type_parse(s, size);
    if (t != LW_M2M_T_NONE) {
        const char *n = lw_m2m_type_api_name(t);
        if (lw_m2m_type_parse(n, strlen(n)) != t)
            abort();
    }
    struct lw_m2m_ver v;
    if (lw_m2m_ver_parse(s, size, &v) == 0) {
        int n = snprintf(out, sizeof(out), "%u.%u", v.major, v.minor);
        if (n < 0 || (size_t)n != size || memcmp(out, s, size))
            abort();
    }
    return 0;
}
