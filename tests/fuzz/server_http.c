/* Fuzz target: the HTTP API request path (llhttp parsing, pipelining and limits, router, auth,
 * query decoding, JSON body decoding). The first byte picks the chunk size the rest is fed in, so
 * request boundaries fall anywhere; tight limits make the 413/431 paths reachable. Responses are
 * checked to be well-formed status lines. A token "lwm2md_1_fuzzfuzzfuzz" (admin) is accepted. */
#include "api/api_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static size_t out_bytes;
static int closes;

static void f_write(struct api_conn *c, const uint8_t *p, size_t n)
{
    (void)c;
    if (n < 12 || memcmp(p, "HTTP/1.1 ", 9) != 0) {
        /* SSE frames are the only non-status writes; they start with "id: " or ": " */
        if (!(n >= 2 && (p[0] == ':' || memcmp(p, "id", 2) == 0)))
            abort();
    }
    out_bytes += n;
}
static void f_close(struct api_conn *c)
{
    (void)c;
    closes++;
}
static void f_pause(struct api_conn *c, bool p)
{
    (void)c;
    (void)p;
}
static const struct api_conn_ops ops = {f_write, f_close, f_pause, NULL};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool init;
    if (!init) {
        init = true;
        api_tokens_add(1, "fuzz", API_ROLE_ADMIN, "lwm2md_1_fuzzfuzzfuzz");
        api_tokens_add(2, "fuzz-viewer", API_ROLE_VIEWER, "lwm2md_2_fuzzfuzzfuzz");
    }
    if (size < 1)
        return 0;
    size_t chunk = data[0] ? data[0] : size;
    data++;
    size--;
    struct api_limits lim = {.max_header_bytes = 2048, .max_body_bytes = 4096, .max_requests = 50};
    struct api_conn c;
    api_conn_init(&c, 1, &lim, &ops, NULL);
    for (size_t off = 0; off < size; off += chunk)
        api_conn_feed(&c, data + off, size - off < chunk ? size - off : chunk);
    if (c.paused)
        api_conn_resume(&c);
    api_conn_deinit(&c);

    /* JSON body decoding as the router does it for POST/PUT/PATCH. */
    struct api_req r;
    memset(&r, 0, sizeof(r));
    r.conn = &c;
    api_conn_init(&c, 2, &lim, &ops, NULL);
    r.method = HTTP_POST;
    r.url = NULL;
    snprintf(r.content_type, sizeof(r.content_type), "application/json");
    lw_buf_init(&r.body, 0);
    lw_buf_init(&r.resp, 0);
    lw_buf_put(&r.body, data, size);
    r.done = true; /* not queued: api_reply must not flush it */
    if (!api_decode_json_body(&r))
        r.json = NULL;
    json_decref(r.json);
    lw_buf_deinit(&r.body);
    lw_buf_deinit(&r.resp);
    api_conn_deinit(&c);
    return 0;
}
