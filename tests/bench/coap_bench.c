/* tests/bench/coap_bench.c - CoAP hot-path benchmark.
 *
 * Measures ns per operation with CLOCK_MONOTONIC, as the best of 60 rounds of 25k iterations
 * (short rounds, so that one of them runs unpreempted on a shared machine):
 *   register:  parse + option check + serialize of a ~200-byte LwM2M Register request;
 *   notify:    parse + option check + serialize of an Observe notification;
 *   notify_ep: lw_coap_ep_input of a CON notification on a peer with an observation (dedup,
 *              token lookup, freshness rule, callback, Empty ACK out): the exchange layer's whole
 *              per-notification path.
 * Allocations are counted by interposing malloc/calloc/realloc in this executable (forwarding to
 * the next definition found with dlsym(RTLD_NEXT)); the hot loops must make none.
 * Prints `bench <name>: <value> <unit>` lines and appends one JSON line to
 * bench/results/coap_bench.json. No timing assertions.
 */
#include "coap/coap.h"

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* ---- allocation counter ------------------------------------------------------------------ */

static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static unsigned long n_allocs;
static int resolving;
/* dlsym may allocate while we resolve the real functions: serve that from a static pool. */
static unsigned char boot_pool[4096];
static size_t boot_used;

static void *boot_alloc(size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (n > sizeof(boot_pool) - boot_used)
        return NULL;
    void *p = boot_pool + boot_used;
    boot_used += n;
    return p;
}

static void resolve(void)
{
    if (real_malloc || resolving)
        return;
    resolving = 1;
    real_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
    real_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
    real_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    resolving = 0;
}

void *malloc(size_t n)
{
    resolve();
    n_allocs++;
    return real_malloc ? real_malloc(n) : boot_alloc(n);
}

void *calloc(size_t a, size_t b)
{
    resolve();
    n_allocs++;
    if (!real_calloc)
        return boot_alloc(a * b); /* the static pool is zeroed */
    return real_calloc(a, b);
}

void *realloc(void *p, size_t n)
{
    resolve();
    n_allocs++;
    return real_realloc ? real_realloc(p, n) : NULL;
}

/* ---- helpers ----------------------------------------------------------------------------- */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static volatile size_t sink;

struct result {
    const char *name;
    double ns;
    double allocs;
    size_t bytes;
};

#define ROUNDS 60

/* parse + check + serialize of one datagram: ROUNDS rounds of n iterations; the best round is
 * reported (the machine is shared, so the minimum is the least noisy estimate). */
static struct result bench_codec(const char *name, const uint8_t *d, size_t len, long n)
{
    uint8_t out[LW_COAP_MAX_DGRAM];
    struct lw_coap_msg m;
    struct lw_buf b;
    double best = 1e30;
    unsigned long a0 = n_allocs;
    for (int r = 0; r < ROUNDS; r++) {
        uint64_t t0 = now_ns();
        for (long i = 0; i < n; i++) {
            if (lw_coap_parse(&m, d, len, NULL, NULL) != 0 || lw_coap_check_opts(&m, NULL) != 0)
                abort();
            lw_buf_init_fixed(&b, out, sizeof(out));
            if (lw_coap_serialize(&m, &b) != 0 || b.len != len)
                abort();
            sink += b.len;
        }
        double ns = (double)(now_ns() - t0) / (double)n;
        if (ns < best)
            best = ns;
    }
    return (struct result){name, best, (double)(n_allocs - a0) / (double)n / ROUNDS, len};
}

static size_t build(struct lw_coap_msg *m, uint8_t *out, size_t cap)
{
    struct lw_buf b;
    lw_buf_init_fixed(&b, out, cap);
    if (lw_coap_serialize(m, &b) != 0)
        abort();
    return b.len;
}

/* ---- exchange-layer notification path ----------------------------------------------------- */

static size_t sent_bytes;
static unsigned long notes;
static uint32_t rnd_state = 1;

static int bench_random(void *rctx, void *out, size_t len)
{
    (void)rctx;
    uint8_t *p = out;
    for (size_t i = 0; i < len; i++) {
        rnd_state = rnd_state * 1103515245u + 12345u;
        p[i] = (uint8_t)(rnd_state >> 16);
    }
    return 0;
}

static uint8_t last_sent[LW_COAP_MAX_DGRAM];
static size_t last_len;

static void on_send(void *ctx, const uint8_t *d, size_t len)
{
    (void)ctx;
    memcpy(last_sent, d, len);
    last_len = len;
    sent_bytes += len;
}

static void on_request(void *ctx, struct lw_coap_ep *ep, const struct lw_coap_msg *m, uint64_t now)
{
    (void)ctx;
    (void)ep;
    (void)m;
    (void)now;
}

static void on_notify(void *ctx, struct lw_coap_ep *ep, struct lw_coap_handle h, uint64_t cookie,
                      const struct lw_coap_msg *m, unsigned flags)
{
    (void)ctx;
    (void)ep;
    (void)h;
    (void)cookie;
    (void)m;
    notes += flags & LW_COAP_NOTIFY_FRESH;
}

static struct result bench_notify_ep(long n)
{
    static const struct lw_coap_ops ops = {on_send, on_request, NULL, on_notify};
    struct lw_coap_cfg cfg = {.random = bench_random};
    struct lw_coap_env env;
    struct lw_coap_ep ep;
    if (lw_coap_env_init(&env, &cfg, &ops) != 0)
        abort();
    lw_coap_ep_init(&ep, &env, NULL);
    /* Establish an observation: GET /3/0/9 Observe 0, answered with Observe 1. */
    struct lw_coap_msg m;
    lw_coap_msg_init(&m, LW_COAP_CON, LW_COAP_GET);
    lw_coap_add_uri_path(&m, "3/0/9");
    lw_coap_add_uint(&m, LW_COAP_OPT_OBSERVE, 0);
    struct lw_coap_handle h;
    if (lw_coap_ep_request(&ep, &m, 1, 0, &h) != 0)
        abort();
    struct lw_coap_msg req;
    if (lw_coap_parse(&req, last_sent, last_len, NULL, NULL) != 0)
        abort();
    struct lw_coap_msg r;
    lw_coap_msg_init(&r, LW_COAP_ACK, LW_COAP_CONTENT);
    r.mid = req.mid;
    r.tkl = req.tkl;
    memcpy(r.token, req.token, req.tkl);
    lw_coap_add_uint(&r, LW_COAP_OPT_OBSERVE, 1);
    uint8_t d[256];
    size_t len = build(&r, d, sizeof(d));
    if (lw_coap_ep_input(&ep, d, len, 1) != 0 || lw_coap_ep_observations(&ep) != 1)
        abort();
    /* CON notifications with increasing MID and sequence number, 1 ms apart. Warm up first so
     * the dedup ring has reached its final size (it grows once, then recycles entries). */
    lw_coap_msg_init(&r, LW_COAP_CON, LW_COAP_CONTENT);
    r.tkl = req.tkl;
    memcpy(r.token, req.token, req.tkl);
    lw_coap_add_uint(&r, LW_COAP_OPT_OBSERVE, 2);
    lw_coap_add_uint(&r, LW_COAP_OPT_CONTENT_FORMAT, 110);
    r.payload = LW_BYTES_LIT("[{\"bn\":\"/3/0/9\",\"v\":87}]");
    len = build(&r, d, sizeof(d));
    size_t obs_off = 4 + req.tkl + 1; /* Observe value: one byte after its option header */
    uint64_t t = 10;
    for (long i = 0; i < 64; i++, t++) {
        uint16_t mid = (uint16_t)(1000 + i);
        d[2] = (uint8_t)(mid >> 8);
        d[3] = (uint8_t)mid;
        d[obs_off] = (uint8_t)(3 + i);
        if (lw_coap_ep_input(&ep, d, len, t) != 0)
            abort();
    }
    unsigned long a0 = n_allocs;
    double best = 1e30;
    uint16_t mid = 2000;
    for (int rd = 0; rd < ROUNDS; rd++) {
        uint64_t t0 = now_ns();
        for (long i = 0; i < n; i++, t++, mid++) {
            d[2] = (uint8_t)(mid >> 8);
            d[3] = (uint8_t)mid;
            d[obs_off] = (uint8_t)(i & 0x7f);
            if (lw_coap_ep_input(&ep, d, len, t) != 0)
                abort();
        }
        double ns = (double)(now_ns() - t0) / (double)n;
        if (ns < best)
            best = ns;
    }
    struct result res = {"coap_notify_ep", best, (double)(n_allocs - a0) / (double)n / ROUNDS, len};
    lw_coap_ep_deinit(&ep);
    return res;
}

int main(void)
{
    const long n = 25000;
    /* A typical Register (~200 bytes): CON POST /rd?ep=..&lt=..&lwm2m=..&b=U, link-format. */
    struct lw_coap_msg m;
    lw_coap_msg_init(&m, LW_COAP_CON, LW_COAP_POST);
    m.mid = 0x1234;
    m.tkl = 8;
    memcpy(m.token, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
    lw_coap_add_uri_path(&m, "rd");
    lw_coap_add_uint(&m, LW_COAP_OPT_CONTENT_FORMAT, 40);
    lw_coap_add_str(&m, LW_COAP_OPT_URI_QUERY, "ep=urn:imei:490154203237518");
    lw_coap_add_str(&m, LW_COAP_OPT_URI_QUERY, "lt=86400");
    lw_coap_add_str(&m, LW_COAP_OPT_URI_QUERY, "lwm2m=1.1");
    lw_coap_add_str(&m, LW_COAP_OPT_URI_QUERY, "b=U");
    m.payload = LW_BYTES_LIT("</>;rt=\"oma.lwm2m\";ct=110,</1/0>,</3/0>,</4/0>,</5/0>,</6/0>,"
                             "</3303/0>,</3303/1>,</3442/0>,</19/0>,</19/1>,</10/0>,</20/0>");
    uint8_t reg[512];
    size_t reg_len = build(&m, reg, sizeof(reg));

    /* A notification: NON 2.05, token 8, Observe, Content-Format 110, SenML payload. */
    lw_coap_msg_init(&m, LW_COAP_NON, LW_COAP_CONTENT);
    m.mid = 0x7a00;
    m.tkl = 8;
    memcpy(m.token, "\x0b\xad\xca\xfe\x0b\xad\xca\xfe", 8);
    lw_coap_add_uint(&m, LW_COAP_OPT_OBSERVE, 4711);
    lw_coap_add_uint(&m, LW_COAP_OPT_CONTENT_FORMAT, 110);
    m.payload = LW_BYTES_LIT("[{\"bn\":\"/3303/0/\",\"n\":\"5700\",\"v\":21.5}]");
    uint8_t note[256];
    size_t note_len = build(&m, note, sizeof(note));

    struct result res[3];
    res[0] = bench_codec("coap_register", reg, reg_len, n);
    res[1] = bench_codec("coap_notify", note, note_len, n);
    res[2] = bench_notify_ep(n);
    for (int i = 0; i < 3; i++) {
        printf("bench %s: %.1f ns/op\n", res[i].name, res[i].ns);
        printf("bench %s_allocs: %.3f allocs/op\n", res[i].name, res[i].allocs);
        printf("bench %s_size: %zu bytes\n", res[i].name, res[i].bytes);
    }
    printf("bench coap_ep_idle_size: %zu bytes\n", sizeof(struct lw_coap_ep));

    mkdir("bench", 0755);
    mkdir("bench/results", 0755);
    FILE *f = fopen("bench/results/coap_bench.json", "a");
    if (f) {
        fprintf(f, "{\"bench\":\"coap_bench\",\"time\":%lld", (long long)time(NULL));
        for (int i = 0; i < 3; i++)
            fprintf(f, ",\"%s_ns\":%.1f,\"%s_allocs\":%.3f,\"%s_bytes\":%zu", res[i].name,
                    res[i].ns, res[i].name, res[i].allocs, res[i].name, res[i].bytes);
        fprintf(f, ",\"coap_ep_idle_bytes\":%zu}\n", sizeof(struct lw_coap_ep));
        fclose(f);
    }
    return sink == 0 ? 1 : 0;
}
