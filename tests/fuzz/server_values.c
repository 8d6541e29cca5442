/* Fuzz target: the API's JSON value lists and attribute objects (server/values.h,
 * observe_attr_query): untrusted API bodies. The input is parsed as JSON and converted to
 * records against the built-in object registry (types from the model or "type"); records that
 * convert are turned back into JSON. Every outcome must be a clean result or an error code. */
#include "base/arena.h"
#include "lwm2m/registry.h"
#include "observe.h"
#include "values.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>

static struct lw_m2m_registry *reg;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t je;
    char err[200], q[256];
    struct lw_arena a;
    struct lw_m2m_records recs = {0};
    if (!reg) {
        size_t n = 0;
        const struct lw_m2m_obj_def *const *core = lw_m2m_core_objects(&n);
        reg = lw_m2m_registry_new(NULL);
        for (size_t i = 0; reg && i < n; i++)
            lw_m2m_registry_add(reg, core[i]);
    }
    json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY, &je);
    if (!j)
        return 0;
    struct lw_m2m_types t = reg ? lw_m2m_registry_types(reg) : (struct lw_m2m_types){0};
    lw_arena_init(&a, 1024, 1u << 20);
    if (values_from_json(j, NULL, &t, &a, &recs, err, sizeof(err)) == 0)
        json_decref(values_records_json(recs.v, recs.n));
    observe_attr_query(json_is_object(j) ? json_object_get(j, "attributes") : j, q, sizeof(q), err,
                       sizeof(err));
    lw_arena_deinit(&a);
    json_decref(j);
    return 0;
}
