/* tests/bench/lwm2m_registry_bench.c - object registry and link-format costs on the hot paths:
 * resource type lookup (registry and per-device resolver), Register payload parse, canonical
 * hash of the object list, and (when ../shared/objects exists) loading the whole OMA registry.
 * Prints `bench <name>: <value> <unit>` lines and appends JSON lines to
 * bench/results/lwm2m_registry_bench.json. No timing assertions.
 */
#include "lwm2m/link.h"
#include "lwm2m/registry.h"

#include "base/arena.h"
#include "base/clock.h"
#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static FILE *results;

static void report(const char *name, double value, const char *unit)
{
    printf("bench %s: %.1f %s\n", name, value, unit);
    if (results)
        fprintf(results, "{\"bench\":\"%s\",\"value\":%.3f,\"unit\":\"%s\"}\n", name, value, unit);
}

static volatile unsigned sink;

int main(void)
{
    mkdir("bench", 0755);
    mkdir("bench/results", 0755);
    results = fopen("bench/results/lwm2m_registry_bench.json", "a");

    struct lw_m2m_registry *reg = lw_m2m_registry_new(NULL);
    if (!reg)
        return 1;
    const char *top = getenv("LW_TOP");
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/../shared/objects", top && *top ? top : ".");
    struct stat st;
    if (stat(dir, &st) == 0) {
        struct lw_m2m_registry *full = lw_m2m_registry_new(NULL);
        struct lw_m2m_load_stats ls;
        char err[512];
        uint64_t t0 = lw_mono_ns();
        lw_m2m_registry_load_dir(full, dir, NULL, NULL, &ls, err, sizeof(err));
        uint64_t t1 = lw_mono_ns();
        report("lwm2m_registry_load_dir_ms", (double)(t1 - t0) / 1e6, "ms");
        report("lwm2m_registry_objects", (double)lw_m2m_registry_count(full), "defs");
        lw_m2m_registry_free(reg);
        reg = full; /* lookups below run against the full registry */
    } else {
        printf("SKIP: %s absent; registry load not measured\n", dir);
    }

    /* type lookups over a mix of core and sensor paths */
    static const struct lw_m2m_path paths[] = {
        LW_M2M_PATH3(3, 0, 0),     LW_M2M_PATH3(3, 0, 13),      LW_M2M_PATH4(3, 0, 7, 1),
        LW_M2M_PATH3(1, 0, 1),     LW_M2M_PATH3(5, 0, 3),       LW_M2M_PATH3(3303, 0, 5700),
        LW_M2M_PATH3(4, 0, 2),     LW_M2M_PATH3(3304, 1, 5700), LW_M2M_PATH3(9999, 0, 0),
        LW_M2M_PATH3(10243, 0, 1),
    };
    const size_t iters = 10 * 1000 * 1000;
    uint64_t t0 = lw_mono_ns();
    for (size_t i = 0; i < iters; i++)
        sink += lw_m2m_registry_type_of(reg, &paths[i % LW_ARRAY_SIZE(paths)]);
    uint64_t t1 = lw_mono_ns();
    report("lwm2m_registry_type_of", (double)(t1 - t0) / (double)iters, "ns/op");

    static const char payload[] = "</>;rt=\"oma.lwm2m\";ct=\"60 110 112 11542 11543\",</1>;ver=1.1,"
                                  "</1/0>,</2/0>,</2/1>,</3>;ver=1.2,</3/0>,</4/0>,</5/0>,"
                                  "</3303/0>,</3303/1>,</3304/0>,</10243/0>";
    struct lw_arena a;
    lw_arena_init(&a, 8192, 0);
    struct lw_m2m_reg_links rl;
    size_t off;
    const size_t piters = 1000 * 1000;
    t0 = lw_mono_ns();
    for (size_t i = 0; i < piters; i++) {
        lw_arena_reset(&a);
        if (lw_m2m_link_parse_reg((const uint8_t *)payload, sizeof(payload) - 1, &a, NULL, &rl,
                                  &off))
            return 1;
        sink += (unsigned)rl.nobjs;
    }
    t1 = lw_mono_ns();
    report("lwm2m_link_parse_reg", (double)(t1 - t0) / (double)piters, "ns/op");

    /* the small payload of tests/bench/registration.c, to relate to the daemon's Register cost */
    static const char small[] = "</>;rt=\"oma.lwm2m\";ct=110,</1/0>,</3/0>,</4/0>,</5/0>";
    struct lw_m2m_reg_links rs;
    t0 = lw_mono_ns();
    for (size_t i = 0; i < piters; i++) {
        lw_arena_reset(&a);
        if (lw_m2m_link_parse_reg((const uint8_t *)small, sizeof(small) - 1, &a, NULL, &rs, &off))
            return 1;
        sink += (unsigned)rs.nobjs;
    }
    t1 = lw_mono_ns();
    report("lwm2m_link_parse_reg_small", (double)(t1 - t0) / (double)piters, "ns/op");
    lw_arena_reset(&a); /* rl (the large payload again) stays valid for the hash below */
    if (lw_m2m_link_parse_reg((const uint8_t *)payload, sizeof(payload) - 1, &a, NULL, &rl, &off))
        return 1;

    static const uint8_t key[16] = {1};
    t0 = lw_mono_ns();
    for (size_t i = 0; i < piters; i++)
        sink += (unsigned)lw_m2m_link_reg_hash(&rl, key);
    t1 = lw_mono_ns();
    report("lwm2m_link_reg_hash", (double)(t1 - t0) / (double)piters, "ns/op");

    struct lw_m2m_reg_types_ctx tc = {&rl, reg};
    struct lw_m2m_types types = lw_m2m_link_reg_types(&tc);
    t0 = lw_mono_ns();
    for (size_t i = 0; i < iters; i++)
        sink += types.type_of(types.ctx, &paths[i % LW_ARRAY_SIZE(paths)]);
    t1 = lw_mono_ns();
    report("lwm2m_reg_types_type_of", (double)(t1 - t0) / (double)iters, "ns/op");

    lw_arena_deinit(&a);
    lw_m2m_registry_free(reg);
    if (results)
        fclose(results);
    return 0;
}
