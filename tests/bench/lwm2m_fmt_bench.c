/* tests/bench/lwm2m_fmt_bench.c - content-format codec speed: decode of the /3/0 TLV
 * (protocol.md §5.3, 121 bytes) and of a 20-record SenML-CBOR notification, plus the matching
 * encoders. Prints `bench <name>: <value> <unit>` lines and appends JSON lines to
 * bench/results/lwm2m_fmt_bench.json. Heap allocations on the measured paths are counted by
 * interposing malloc (glibc), so "allocs/op" is exact; decoders use a warmed-up arena.
 * Usage: lwm2m_fmt_bench [iterations] (default 200000 per measurement, in 10 batches).
 */
#include "base/err.h"
#include "lwm2m/fmt.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#ifndef LW_GIT_REV
#define LW_GIT_REV "unknown"
#endif

/* ---- allocation counter (glibc exports the __libc_* entry points) ---- */
#if !defined(__SANITIZE_ADDRESS__) && !defined(__clang__)
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t m);
extern void *__libc_realloc(void *p, size_t n);
static unsigned long n_allocs;
void *malloc(size_t n)
{
    n_allocs++;
    return __libc_malloc(n);
}
void *calloc(size_t n, size_t m)
{
    n_allocs++;
    return __libc_calloc(n, m);
}
void *realloc(void *p, size_t n)
{
    n_allocs++;
    return __libc_realloc(p, n);
}
#define HAVE_ALLOC_COUNT 1
#else
static unsigned long n_allocs;
#define HAVE_ALLOC_COUNT 0
#endif

static const char dev_tlv_hex[] =
    "C800144F70656E204D6F62696C6520416C6C69616E6365C801164C69676874776569676874204D324D20436C"
    "69656E74C80209333435303030313233C303312E30860641000141010588070842000ED842011388870841007D"
    "42010384C10964C10A0F830B410000C40D5182428FC60E2B30323A3030C11055";

static enum lw_m2m_type bench_type_of(void *ctx, const struct lw_m2m_path *p)
{
    (void)ctx;
    if (p->id[0] == 3303 && p->id[2] == 5700)
        return LW_M2M_T_FLOAT;
    if (p->id[0] != 3)
        return LW_M2M_T_NONE;
    switch (p->id[2]) {
    case 0:
    case 1:
    case 2:
    case 3:
    case 14:
    case 15:
    case 16: return LW_M2M_T_STRING;
    case 13: return LW_M2M_T_TIME;
    default: return LW_M2M_T_INTEGER;
    }
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static FILE *results;

static void report(const char *name, double value, const char *unit)
{
    printf("bench %s: %.1f %s\n", name, value, unit);
    if (results)
        fprintf(results,
                "{\"bench\":\"%s\",\"value\":%.1f,\"unit\":\"%s\",\"git\":\"%s\",\"time\":%ld}\n",
                name, value, unit, LW_GIT_REV, (long)time(NULL));
}

static size_t unhex(const char *h, uint8_t *out)
{
    size_t n = 0;
    for (; h[0] && h[1]; h += 2) {
        unsigned v;
        sscanf(h, "%2x", &v);
        out[n++] = (uint8_t)v;
    }
    return n;
}

struct dec_case {
    const char *name;
    uint16_t cf;
    struct lw_bytes in;
    struct lw_m2m_path req;
    size_t expect;
};

/* ns/op is the best of 10 batches (CLOCK_MONOTONIC): the fastest batch is the one least
 * disturbed by other processes on a shared machine. */
#define BATCHES 10

static int bench_decode(const struct dec_case *c, long iters)
{
    struct lw_arena a;
    struct lw_m2m_types types = {bench_type_of, NULL};
    struct lw_m2m_records r;
    char name[96];
    int rc = 0;
    double best = 1e300;
    unsigned long allocs = 0;
    long per = iters / BATCHES > 0 ? iters / BATCHES : 1;
    lw_arena_init(&a, 64 * 1024, 0);
    for (int batch = -1; batch < BATCHES; batch++) { /* batch -1: warm-up */
        n_allocs = 0;
        double t0 = now_ns();
        for (long k = 0; k < per; k++) {
            memset(&r, 0, sizeof(r));
            rc = lw_m2m_decode(c->cf, c->in, &c->req, &types, NULL, &a, &r, NULL);
            if (rc || r.n != c->expect) {
                fprintf(stderr, "bench %s: decode failed (%d, %zu records)\n", c->name, rc, r.n);
                rc = rc ? rc : LW_EINTERNAL;
                goto out;
            }
            lw_arena_reset(&a);
        }
        double ns = (now_ns() - t0) / (double)per;
        if (batch >= 0) {
            best = ns < best ? ns : best;
            allocs += n_allocs;
        }
    }
    snprintf(name, sizeof(name), "%s_decode", c->name);
    report(name, best, "ns/op");
    if (HAVE_ALLOC_COUNT) {
        snprintf(name, sizeof(name), "%s_decode_allocs", c->name);
        report(name, (double)allocs / (double)(per * BATCHES), "allocs/op");
    }
out:
    lw_arena_deinit(&a);
    return rc;
}

static int bench_encode(const char *bname, uint16_t cf, struct lw_m2m_path req,
                        const struct lw_m2m_records *r, long iters)
{
    uint8_t mem[4096];
    struct lw_buf b;
    double best = 1e300;
    unsigned long allocs = 0;
    long per = iters / BATCHES > 0 ? iters / BATCHES : 1;
    for (int batch = -1; batch < BATCHES; batch++) {
        n_allocs = 0;
        double t0 = now_ns();
        for (long k = 0; k < per; k++) {
            lw_buf_init_fixed(&b, mem, sizeof(mem));
            int rc = lw_m2m_encode(cf, &req, r->v, r->n, &b);
            if (rc) {
                fprintf(stderr, "bench %s: encode failed (%d)\n", bname, rc);
                return rc;
            }
        }
        double ns = (now_ns() - t0) / (double)per;
        if (batch >= 0) {
            best = ns < best ? ns : best;
            allocs += n_allocs;
        }
    }
    char name[96];
    snprintf(name, sizeof(name), "%s_encode", bname);
    report(name, best, "ns/op");
    if (HAVE_ALLOC_COUNT) {
        snprintf(name, sizeof(name), "%s_encode_allocs", bname);
        report(name, (double)allocs / (double)(per * BATCHES), "allocs/op");
    }
    return 0;
}

int main(int argc, char **argv)
{
    long iters = argc > 1 ? atol(argv[1]) : 200000;
    uint8_t tlv[256], senml[2048];
    size_t tlv_len = unhex(dev_tlv_hex, tlv);
    struct lw_arena a;
    struct lw_m2m_records r = {0}, notif = {0};
    struct lw_m2m_types types = {bench_type_of, NULL};
    struct lw_buf b;
    int rc = 1;

    mkdir("bench", 0755);
    mkdir("bench/results", 0755);
    results = fopen("bench/results/lwm2m_fmt_bench.json", "a");
    lw_arena_init(&a, 0, 0);

    /* A 20-record Observe-Composite style notification: 20 temperature sensors, timestamped. */
    for (uint16_t k = 0; k < 20; k++) {
        struct lw_m2m_record *x = lw_m2m_records_push(&notif, &a);
        x->path = LW_M2M_PATH3(3303, k, 5700);
        x->value.type = LW_M2M_T_FLOAT;
        x->value.f = 20.5 + k * 0.25;
        x->has_value = true;
        x->time = 1700000000 + k;
        x->has_time = true;
    }
    struct lw_m2m_path root = LW_M2M_PATH_ROOT;
    lw_buf_init_fixed(&b, senml, sizeof(senml));
    if (lw_m2m_encode(LW_M2M_CF_SENML_CBOR, &root, notif.v, notif.n, &b))
        goto out;
    size_t senml_len = b.len;

    struct dec_case cases[] = {
        {"lwm2m_fmt_tlv_3_0", LW_M2M_CF_TLV, {tlv, tlv_len}, LW_M2M_PATH2(3, 0), 16},
        {"lwm2m_fmt_senml_cbor_20", LW_M2M_CF_SENML_CBOR, {senml, senml_len}, root, 20},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++)
        if (bench_decode(&cases[k], iters))
            goto out;
    if (lw_m2m_decode(LW_M2M_CF_TLV, cases[0].in, &cases[0].req, &types, NULL, &a, &r, NULL))
        goto out;
    if (bench_encode("lwm2m_fmt_tlv_3_0", LW_M2M_CF_TLV, cases[0].req, &r, iters) ||
        bench_encode("lwm2m_fmt_senml_cbor_20", LW_M2M_CF_SENML_CBOR, root, &notif, iters) ||
        bench_encode("lwm2m_fmt_senml_json_20", LW_M2M_CF_SENML_JSON, root, &notif, iters / 4) ||
        bench_encode("lwm2m_fmt_lwm2m_cbor_20", LW_M2M_CF_LWM2M_CBOR, root, &notif, iters))
        goto out;
    printf("bench lwm2m_fmt_senml_cbor_20_size: %zu bytes\n", senml_len);
    rc = 0;
out:
    if (results)
        fclose(results);
    lw_arena_deinit(&a);
    return rc;
}
