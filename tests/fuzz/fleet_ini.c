/* Fuzz target: the lwm2m-fleet fleet file parser (user input). Fuzz targets do not link tools/,
 * so the parser's source is included here directly. Every input must end in 0 or LW_ECONFIG, and
 * a parsed file's patterns must expand without overflowing. */
#include "../../tools/fleet/fleetfile.c"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct fleet_file f;
    char err[256];
    fleet_file_init(&f);
    int rc = fleet_file_parse((const char *)data, size, &f, err, sizeof(err));
    if (rc != 0 && rc != LW_ECONFIG && rc != LW_ENOMEM)
        __builtin_trap();
    if (rc == 0) {
        for (uint32_t i = 0; i < f.ngroups; i++) {
            char ep[256], id[256];
            int n = fleet_pattern_expand(f.groups[i].endpoint, f.groups[i].count, f.groups[i].name,
                                         NULL, ep, sizeof(ep));
            if (n >= 0)
                (void)fleet_pattern_expand(f.groups[i].psk_identity, 7, f.groups[i].name, ep, id,
                                           sizeof(id));
        }
    }
    return 0;
}
