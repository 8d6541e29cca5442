/* Fuzz target: the registration.profiles_file parser (server/profiles.c), operator input read at
 * start. Every input must give either a set of profiles whose lists parse again as Register
 * object lists, or LW_ECONFIG / LW_ENOMEM with a "name:line: reason" message. */
#include "base/arena.h"
#include "base/err.h"
#include "lwm2m/link.h"
#include "profiles.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct reg_profiles set;
    char err[256];
    int rc = reg_profiles_parse(data, size, "f.json", &set, err, sizeof(err));
    if (rc != 0) {
        if ((rc != LW_ECONFIG && rc != LW_ENOMEM) || strncmp(err, "f.json:", 7) != 0 || set.n != 0)
            abort();
        return 0;
    }
    struct lw_arena a;
    lw_arena_init(&a, 4096, 1u << 20);
    for (size_t i = 0; i < set.n; i++) {
        struct lw_m2m_reg_links l;
        size_t off;
        size_t plen = strlen(set.v[i].pid);
        if (plen == 0 || plen > REG_PROFILE_MAX_PID || set.v[i].line == 0 ||
            lw_m2m_link_parse_reg(set.v[i].links, set.v[i].links_len, &a, NULL, &l, &off) != 0)
            abort(); /* the canonical form must parse again */
        lw_arena_reset(&a);
    }
    lw_arena_deinit(&a);
    reg_profiles_free(&set);
    return 0;
}
