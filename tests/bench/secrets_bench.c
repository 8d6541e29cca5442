/* Benchmark of server/secrets.c: AES-256-GCM seal and open of a PSK credentials record (56 bytes
 * with a 64-byte associated data) and of a hibernated DTLS session blob (400 bytes), as the
 * credential store and the session store use them. Prints "bench <name>: <ns> ns/op" lines and
 * appends one JSON line to bench/results/secrets_bench.json. No timing assertions. */
#include "secrets.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

struct result {
    const char *name;
    double seal_ns, open_ns;
};

static volatile size_t sink;

static struct result run(const char *name, const struct secrets_ring *r, size_t len, int n)
{
    static uint8_t pt[4096], blob[4096 + SECRETS_OVERHEAD], back[4096];
    uint8_t ad[64];
    size_t bl = 0, ol = 0;
    memset(pt, 0x5a, len);
    memset(ad, 'a', sizeof(ad));
    struct result res = {name, 0, 0};
    double t0 = now_ns();
    for (int i = 0; i < n; i++) {
        if (secrets_seal(r, ad, sizeof(ad), pt, len, blob, sizeof(blob), &bl) != 0)
            abort();
        sink += blob[bl - 1];
    }
    res.seal_ns = (now_ns() - t0) / n;
    t0 = now_ns();
    for (int i = 0; i < n; i++) {
        if (secrets_open(r, ad, sizeof(ad), blob, bl, back, sizeof(back), &ol, NULL) != 0)
            abort();
        sink += back[0];
    }
    res.open_ns = (now_ns() - t0) / n;
    return res;
}

int main(void)
{
    uint8_t key[SECRETS_KEY_LEN];
    memset(key, 7, sizeof(key));
    struct secrets_ring *r = secrets_ring_new();
    if (!r || secrets_ring_add(r, key, true) != 0)
        return 1;
    int n = 200000;
    struct result res[2] = {run("secrets_credential", r, 56, n), run("secrets_session", r, 400, n)};
    for (int i = 0; i < 2; i++) {
        printf("bench %s_seal: %.1f ns/op\n", res[i].name, res[i].seal_ns);
        printf("bench %s_open: %.1f ns/op\n", res[i].name, res[i].open_ns);
    }
    mkdir("bench", 0755);
    mkdir("bench/results", 0755);
    FILE *f = fopen("bench/results/secrets_bench.json", "a");
    if (f) {
        fprintf(f, "{\"bench\":\"secrets_bench\",\"time\":%lld", (long long)time(NULL));
        for (int i = 0; i < 2; i++)
            fprintf(f, ",\"%s_seal_ns\":%.1f,\"%s_open_ns\":%.1f", res[i].name, res[i].seal_ns,
                    res[i].name, res[i].open_ns);
        fprintf(f, "}\n");
        fclose(f);
    }
    secrets_ring_free(r);
    return sink == 0 ? 1 : 0;
}
