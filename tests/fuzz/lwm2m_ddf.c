/* Fuzz target: DDF XML loader from memory (lib/lwm2m/ddf.c) with small limits, then every lookup
 * over what was loaded. A fresh registry per input keeps memory bounded. Any failure aborts. */
#include "lwm2m/registry.h"

#include "base/err.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int visit(void *ctx, const struct lw_m2m_obj_def *def)
{
    const struct lw_m2m_registry *reg = ctx;
    if (lw_m2m_registry_find(reg, def->id, &def->ver) != def)
        abort();
    for (size_t i = 0; i < def->nres; i++) {
        const struct lw_m2m_res_def *r = &def->res[i];
        if (i && def->res[i - 1].id >= r->id)
            abort();
        if (lw_m2m_obj_res(def, r->id) != r || !r->name)
            abort();
        struct lw_m2m_path p = LW_M2M_PATH4(def->id, 0, r->id, 1);
        lw_m2m_registry_type_of((void *)(uintptr_t)reg, &p);
        p.len = 3;
        lw_m2m_registry_type_of((void *)(uintptr_t)reg, &p);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lw_m2m_registry_cfg cfg = {.max_file_size = 256 * 1024,
                                      .max_resources = 512,
                                      .max_string = 256,
                                      .max_depth = 12,
                                      .max_file_objects = 8};
    struct lw_m2m_registry *reg = lw_m2m_registry_new(&cfg);
    char err[256];
    if (!reg)
        return 0;
    int rc = lw_m2m_registry_load_mem(reg, "fuzz.xml", data, size, err, sizeof(err));
    if (rc && strncmp(err, "fuzz.xml:", 9) && strncmp(err, "fuzz.xml ", 9))
        abort(); /* every refusal names the file */
    if (!rc && err[0])
        abort();
    if (lw_m2m_registry_foreach(reg, visit, reg))
        abort();
    lw_m2m_registry_free(reg);
    return 0;
}
