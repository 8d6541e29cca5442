/* tests/bench/server_http.c - cost of the HTTP API request path without sockets: llhttp parsing,
 * routing, auth and response building for keep-alive requests fed in bulk (as a pipelining
 * client would send them). Prints "bench server_http_<case>: N ns/req" lines and appends one JSON
 * line to bench/results/server_http.json. No timing assertions. */
#include "api/api_int.h"
#include "base/clock.h"
#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static size_t out_bytes;

static void b_write(struct api_conn *c, const uint8_t *p, size_t n)
{
    (void)c;
    (void)p;
    out_bytes += n;
}
static void b_close(struct api_conn *c)
{
    (void)c;
}
static void b_pause(struct api_conn *c, bool p)
{
    (void)c;
    (void)p;
}
static const struct api_conn_ops ops = {b_write, b_close, b_pause, NULL};

/* ns per request for `reps` copies of req fed in 64 KiB reads on one connection. */
static double run(const char *req, unsigned reps)
{
    size_t len = strlen(req);
    size_t per_read = 65536 / len;
    uint8_t *buf = malloc(per_read * len);
    if (!buf)
        exit(1);
    for (size_t i = 0; i < per_read; i++)
        memcpy(buf + i * len, req, len);
    struct api_limits lim = {.max_requests = reps + 1};
    struct api_conn c;
    api_conn_init(&c, 1, &lim, &ops, NULL);
    uint64_t t0 = lw_mono_ns();
    unsigned done = 0;
    while (done < reps) {
        size_t n = LW_MIN(per_read, (size_t)(reps - done));
        api_conn_feed(&c, buf, n * len);
        done += (unsigned)n;
    }
    uint64_t t1 = lw_mono_ns();
    api_conn_deinit(&c);
    free(buf);
    return (double)(t1 - t0) / reps;
}

int main(void)
{
    static const char tok[] = "lwm2md_7_benchbenchbenchbenchbenchbench";
    api_tokens_add(7, "bench", API_ROLE_VIEWER, tok);
    const unsigned reps = 200000;
    char authreq[256];
    snprintf(authreq, sizeof(authreq),
             "GET /api/v1/devices?limit=0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n",
             tok);
    struct {
        const char *name;
        const char *req;
        double ns;
    } cases[] = {
        {"healthz", "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 0},
        {"auth_400", authreq, 0}, /* token check (salted SHA-256) + query validation + problem */
        {"notfound_401", "GET /api/v1/nothing HTTP/1.1\r\nHost: x\r\nUser-Agent: bench\r\n\r\n", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        run(cases[i].req, reps / 10); /* warm-up */
        cases[i].ns = run(cases[i].req, reps);
        printf("bench server_http_%s: %.0f ns/req\n", cases[i].name, cases[i].ns);
    }
    mkdir("bench", 0755);
    mkdir("bench/results", 0755);
    FILE *f = fopen("bench/results/server_http.json", "a");
    if (f) {
        fprintf(f, "{\"bench\":\"server_http\",\"time\":%lld", (long long)time(NULL));
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
            fprintf(f, ",\"%s_ns\":%.1f", cases[i].name, cases[i].ns);
        fprintf(f, "}\n");
        fclose(f);
    }
    return 0;
}
