/* tests/unit/server/check_api.c - HTTP request path of the API without sockets: parsing,
 * pipelining order, limits, problem+json, auth and roles, URL decoding, webhook signatures, and
 * the route table against docs/openapi.yaml. */
#include "api/api_int.h"
#include "auth.h"
#include "base/err.h"
#include "control.h"
#include "events.h"
#include "../testutil.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct lw_buf out;
static int closed, paused;

static void t_write(struct api_conn *c, const uint8_t *p, size_t n)
{
    (void)c;
    lw_buf_put(&out, p, n);
}
static void t_close(struct api_conn *c)
{
    (void)c;
    closed++;
}
static void t_pause(struct api_conn *c, bool p)
{
    (void)c;
    paused = p;
}
static const struct api_conn_ops ops = {t_write, t_close, t_pause, NULL};

static const char *tok_admin = "abcdefghijklmnopqrstuvwxyz0123456789ABCD";

static void setup(void)
{
    lw_buf_init(&out, 0);
    closed = paused = 0;
    char path[] = "/tmp/lw-api-tokXXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, tok_admin, strlen(tok_admin)), (int)strlen(tok_admin));
    close(fd);
    chmod(path, 0600);
    char why[128];
    ck_assert_int_eq(lw_auth_load_bootstrap(path, why, sizeof(why)), 0);
    unlink(path);
}

static void teardown(void)
{
    lw_buf_deinit(&out);
    lw_auth_clear();
}

/* Feeds `req` on a fresh connection; returns the output as a NUL-terminated string. */
static const char *run(const char *req, const struct api_limits *lim)
{
    struct api_conn c;
    api_conn_init(&c, 1, lim, &ops, NULL);
    api_conn_feed(&c, (const uint8_t *)req, strlen(req));
    api_conn_deinit(&c);
    lw_buf_put_u8(&out, 0);
    return (const char *)out.data;
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

START_TEST(healthz_ok)
{
    const char *o = run("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", NULL);
    ck_assert_msg(strncmp(o, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", o);
    ck_assert_ptr_nonnull(strstr(o, "Content-Type: application/json\r\n"));
    ck_assert_ptr_nonnull(strstr(o, "{\"status\":\"ok\"}"));
    ck_assert_int_eq(closed, 0);
}
END_TEST

START_TEST(head_has_no_body)
{
    const char *o = run("HEAD /healthz HTTP/1.1\r\n\r\n", NULL);
    ck_assert_ptr_nonnull(strstr(o, "Content-Length: 15\r\n"));
    ck_assert_ptr_null(strstr(o, "{\"status\""));
}
END_TEST

START_TEST(pipelined_in_order_then_close)
{
    const char *o = run("GET /healthz HTTP/1.1\r\n\r\n"
                        "GET /nope HTTP/1.1\r\n\r\n"
                        "GET /readyz HTTP/1.1\r\nConnection: close\r\n\r\n"
                        "GET /healthz HTTP/1.1\r\n\r\n",
                        NULL);
    const char *a = strstr(o, "HTTP/1.1 200"), *b = strstr(o, "HTTP/1.1 404"),
               *c = strstr(o, "\"shards\":");
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_nonnull(c);
    ck_assert(a < b && b < c);
    ck_assert_int_eq(count(o, "HTTP/1.1 "), 3); /* nothing after Connection: close */
    ck_assert_ptr_nonnull(strstr(o, "Connection: close\r\n"));
    ck_assert_int_eq(closed, 1);
}
END_TEST

START_TEST(http10_closes)
{
    const char *o = run("GET /healthz HTTP/1.0\r\n\r\n", NULL);
    ck_assert_ptr_nonnull(strstr(o, "Connection: close"));
    ck_assert_int_eq(closed, 1);
}
END_TEST

START_TEST(max_requests_per_connection)
{
    struct api_limits lim = {.max_requests = 2};
    const char *o = run("GET /healthz HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n"
                        "GET /healthz HTTP/1.1\r\n\r\n",
                        &lim);
    ck_assert_int_eq(count(o, "HTTP/1.1 200"), 2);
    ck_assert_int_eq(count(o, "Connection: close"), 1);
    ck_assert_int_eq(closed, 1);
}
END_TEST

START_TEST(header_limit_431)
{
    struct api_limits lim = {.max_header_bytes = 100};
    char req[400];
    snprintf(req, sizeof(req), "GET /healthz HTTP/1.1\r\nX-Big: %0200d\r\n\r\n", 0);
    const char *o = run(req, &lim);
    ck_assert_msg(strncmp(o, "HTTP/1.1 431", 12) == 0, "%s", o);
    ck_assert_ptr_nonnull(strstr(o, "application/problem+json"));
    ck_assert_ptr_nonnull(strstr(o, "urn:lwm2md:problem:headers-too-large"));
    ck_assert_int_eq(closed, 1);
}
END_TEST

START_TEST(body_limit_413)
{
    struct api_limits lim = {.max_body_bytes = 10};
    const char *o =
        run("POST /api/v1/devices HTTP/1.1\r\nContent-Length: 11\r\n\r\n01234567890", &lim);
    ck_assert_msg(strncmp(o, "HTTP/1.1 413", 12) == 0, "%s", o);
    o = run(
        "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n",
        &lim);
    ck_assert_ptr_nonnull(strstr(o, "HTTP/1.1 413"));
}
END_TEST

START_TEST(malformed_400)
{
    const char *o = run("GARBAGE\r\n\r\n", NULL);
    ck_assert_msg(strncmp(o, "HTTP/1.1 400", 12) == 0, "%s", o);
    ck_assert_ptr_nonnull(strstr(o, "urn:lwm2md:problem:bad-request"));
    ck_assert_int_eq(closed, 1);
    lw_buf_reset(&out);
    o = run("GET healthz HTTP/1.1\r\n\r\n", NULL);
    ck_assert_ptr_nonnull(strstr(o, "HTTP/1.1 400"));
}
END_TEST

START_TEST(split_bytes)
{
    const char *req = "GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer abc\r\n\r\n";
    struct api_conn c;
    api_conn_init(&c, 1, NULL, &ops, NULL);
    for (size_t i = 0; req[i]; i++)
        api_conn_feed(&c, (const uint8_t *)req + i, 1);
    api_conn_deinit(&c);
    lw_buf_put_u8(&out, 0);
    ck_assert_ptr_nonnull(strstr((char *)out.data, "HTTP/1.1 200"));
}
END_TEST

START_TEST(auth_401_403)
{
    const char *o = run("GET /api/v1/devices HTTP/1.1\r\n\r\n", NULL);
    ck_assert_msg(strncmp(o, "HTTP/1.1 401", 12) == 0, "%s", o);
    ck_assert_ptr_nonnull(strstr(o, "WWW-Authenticate: Bearer"));
    ck_assert_ptr_nonnull(strstr(o, "urn:lwm2md:problem:missing-token"));
    lw_buf_reset(&out);
    o = run("GET /api/v1/devices HTTP/1.1\r\nAuthorization: Bearer nope\r\n\r\n", NULL);
    ck_assert_ptr_nonnull(strstr(o, "urn:lwm2md:problem:invalid-token"));
    lw_buf_reset(&out);
    o = run("GET /api/v1/whatever HTTP/1.1\r\n\r\n", NULL);
    ck_assert_ptr_nonnull(strstr(o, "HTTP/1.1 401")); /* no route probing without a token */

    const char *viewer = "lwm2md_9_viewersecretviewersecretviewersecret";
    ck_assert_int_eq(api_tokens_add(9, "ci-viewer", API_ROLE_VIEWER, viewer), 0);
    char req[300];
    snprintf(
        req, sizeof(req),
        "DELETE /api/v1/devices/dev1/registration HTTP/1.1\r\nAuthorization: Bearer %s\r\n\r\n",
        viewer);
    lw_buf_reset(&out);
    o = run(req, NULL);
    ck_assert_msg(strncmp(o, "HTTP/1.1 403", 12) == 0, "%s", o);
    ck_assert_ptr_nonnull(strstr(o, "urn:lwm2md:problem:forbidden"));
    /* a wrong secret for an existing id */
    lw_buf_reset(&out);
    o = run("GET /api/v1/devices HTTP/1.1\r\nAuthorization: Bearer "
            "lwm2md_9_viewersecretviewersecretviewersecreX\r\n\r\n",
            NULL);
    ck_assert_ptr_nonnull(strstr(o, "HTTP/1.1 401"));
    /* admin passes authorisation (the handler's answer depends on the registry) */
    snprintf(req, sizeof(req),
             "GET /api/v1/devices?limit=0 HTTP/1.1\r\nAuthorization: Bearer %s\r\n\r\n", tok_admin);
    lw_buf_reset(&out);
    o = run(req, NULL);
    ck_assert_ptr_null(strstr(o, "HTTP/1.1 401"));
    ck_assert_ptr_null(strstr(o, "HTTP/1.1 403"));
}
END_TEST

START_TEST(not_found_and_method)
{
    char req[300];
    snprintf(req, sizeof(req), "PUT /api/v1/events HTTP/1.1\r\nAuthorization: Bearer %s\r\n\r\n",
             tok_admin);
    const char *o = run(req, NULL);
    ck_assert_msg(strncmp(o, "HTTP/1.1 405", 12) == 0, "%s", o);
    ck_assert_ptr_nonnull(strstr(o, "Allow: GET\r\n"));
    lw_buf_reset(&out);
    o = run("GET /nothing/here HTTP/1.1\r\n\r\n", NULL);
    ck_assert_ptr_nonnull(strstr(o, "HTTP/1.1 404"));
    ck_assert_ptr_nonnull(strstr(o, "\"instance\":\"/nothing/here\""));
    lw_buf_reset(&out);
    o = run("GET /api/v1/devices/a%zz HTTP/1.1\r\n\r\n", NULL);
    ck_assert_ptr_nonnull(strstr(o, "HTTP/1.1 404"));
}
END_TEST

START_TEST(json_body_checked)
{
    char req[400];
    snprintf(req, sizeof(req),
             "POST /api/v1/devices HTTP/1.1\r\nAuthorization: Bearer %s\r\nContent-Type: "
             "text/plain\r\nContent-Length: 2\r\n\r\n{}",
             tok_admin);
    const char *o = run(req, NULL);
    ck_assert_ptr_nonnull(strstr(o, "HTTP/1.1 405")); /* no POST route there */
}
END_TEST

START_TEST(pct_and_query)
{
    char s[] = "urn%3Aimei%3A123+4";
    size_t n = strlen(s);
    ck_assert(api_pct_decode(s, &n));
    ck_assert_str_eq(s, "urn:imei:123 4");
    char bad[] = "a%2", nul[] = "a%00b";
    n = strlen(bad);
    ck_assert(!api_pct_decode(bad, &n));
    n = strlen(nul);
    ck_assert(!api_pct_decode(nul, &n));
    char v[16];
    ck_assert_int_eq(api_query_get("limit=10&endpoint=ab%2Fc", "endpoint", v, sizeof(v)), 1);
    ck_assert_str_eq(v, "ab/c");
    ck_assert_int_eq(api_query_get("limit=10", "cursor", v, sizeof(v)), 0);
    ck_assert_int_eq(api_query_get("cursor=0123456789abcdefghij", "cursor", v, sizeof(v)), -1);
    ck_assert_int_eq(api_query_get("queue", "queue", v, sizeof(v)), 1);
    ck_assert_str_eq(v, "");
}
END_TEST

START_TEST(webhook_signature_vector)
{
    char sig[64];
    const char *body = "[{\"id\":7}]";
    /* python3: base64(hmac.new(b"whsec-test", b'evt_7.1700000000.[{"id":7}]', sha256)) */
    ck_assert_int_eq(api_webhook_sign((const uint8_t *)"whsec-test", 10, "evt_7", 1700000000, body,
                                      strlen(body), sig, sizeof(sig)),
                     0);
    ck_assert_str_eq(sig, "C/drlABzSItP6zbe5paoVtISh07MOKsJtURhX1GOMYM=");
    ck_assert_int_eq(api_webhook_sign((const uint8_t *)"k", 1, "i", 1, "", 0, sig, 10), LW_ENOSPC);
}
END_TEST

START_TEST(sse_frame)
{
    struct lw_buf b;
    lw_buf_init(&b, 0);
    api_sse_format(&b, 42, "registered", "{\"a\":1}");
    lw_buf_put_u8(&b, 0);
    ck_assert_str_eq((char *)b.data, "id: 42\nevent: registered\ndata: {\"a\":1}\n\n");
    lw_buf_deinit(&b);
}
END_TEST

/* The routes the server registers and the paths/methods of docs/openapi.yaml are the same set. */
START_TEST(routes_match_openapi)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/docs/openapi.yaml", lw_test_top());
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    char line[512], cur[256] = "", doc[64][300];
    int ndoc = 0;
    bool in_paths = false;
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0] && line[0] != ' ') {
            in_paths = strcmp(line, "paths:") == 0;
            continue;
        }
        if (!in_paths)
            continue;
        if (strncmp(line, "  /", 3) == 0 && line[strlen(line) - 1] == ':') {
            snprintf(cur, sizeof(cur), "%.*s", (int)strlen(line) - 3, line + 2);
            continue;
        }
        static const char *const methods[] = {"get", "put", "post", "delete", "patch"};
        for (size_t m = 0; m < 5; m++) {
            char want[32];
            snprintf(want, sizeof(want), "    %s:", methods[m]);
            if (strcmp(line, want) == 0 && ndoc < 64) {
                char up[16];
                for (size_t i = 0; i <= strlen(methods[m]); i++)
                    up[i] = (char)(methods[m][i] >= 'a' ? methods[m][i] - 32 : methods[m][i]);
                snprintf(doc[ndoc++], sizeof(doc[0]), "%s %s", up, cur);
            }
        }
    }
    fclose(f);
    ck_assert_int_eq(ndoc, (int)api_routes_n);
    for (size_t i = 0; i < api_routes_n; i++) {
        char mine[300];
        snprintf(mine, sizeof(mine), "%s %s",
                 llhttp_method_name((llhttp_method_t)api_routes[i].method), api_routes[i].pattern);
        bool found = false;
        for (int d = 0; d < ndoc; d++)
            found |= strcmp(doc[d], mine) == 0;
        ck_assert_msg(found, "route %s is not in docs/openapi.yaml", mine);
    }
}
END_TEST

/* SSE over the real event bus: ring eviction, Last-Event-ID replay with a gap note, type and
 * endpoint filters. */
START_TEST(sse_resume_from_ring)
{
    uv_loop_t *loop = uv_default_loop();
    ck_assert_int_eq(lw_control_start(loop), 0);
    lw_events_init(1);
    api_set.sse_ring = 4;
    ck_assert_int_eq(api_sse_start(), 0);
    static const enum lw_event_type types[] = {LW_EV_REGISTERED, LW_EV_UPDATED,
                                               LW_EV_REGISTERED, LW_EV_UPDATED,
                                               LW_EV_REGISTERED, LW_EV_DEREGISTERED};
    for (int i = 0; i < 6; i++) {
        struct lw_event *ev = lw_event_new(types[i], i == 4 ? "other" : "dev1");
        ck_assert_ptr_nonnull(ev);
        json_object_set_new(ev->data, "n", json_integer(i + 1));
        lw_events_post(ev);
    }
    uv_run(loop, UV_RUN_NOWAIT); /* delivers ids 1..6; the ring keeps 3..6 */
    char req[400];
    snprintf(req, sizeof(req),
             "GET /api/v1/events?types=registered,deregistered&endpoint=dev1 HTTP/1.1\r\n"
             "Authorization: Bearer %s\r\nLast-Event-ID: 1\r\n\r\n",
             tok_admin);
    const char *o = run(req, NULL);
    ck_assert_msg(strncmp(o, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream", 48) == 0, "%s",
                  o);
    ck_assert_ptr_nonnull(strstr(o, ": events 2..2 are no longer available"));
    ck_assert_ptr_nonnull(strstr(o, "id: 3\nevent: registered\ndata: {"));
    ck_assert_ptr_nonnull(strstr(o, "id: 6\nevent: deregistered\n"));
    ck_assert_ptr_null(strstr(o, "id: 4\n")); /* updated: filtered by type */
    ck_assert_ptr_null(strstr(o, "id: 5\n")); /* endpoint "other" */
    ck_assert_ptr_nonnull(strstr(o, "\"endpoint\":\"dev1\""));
    ck_assert_int_eq(closed, 0);
    /* without Last-Event-ID: live events only */
    lw_buf_reset(&out);
    snprintf(req, sizeof(req), "GET /api/v1/events HTTP/1.1\r\nAuthorization: Bearer %s\r\n\r\n",
             tok_admin);
    o = run(req, NULL);
    ck_assert_ptr_null(strstr(o, "id: "));
    api_sse_stop();
    lw_control_stop();
    uv_run(loop, UV_RUN_DEFAULT);
}
END_TEST

Suite *suite_api(void);
Suite *suite_api(void)
{
    Suite *s = suite_create("api");
    TCase *tc = tcase_create("http");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, healthz_ok);
    tcase_add_test(tc, head_has_no_body);
    tcase_add_test(tc, pipelined_in_order_then_close);
    tcase_add_test(tc, http10_closes);
    tcase_add_test(tc, max_requests_per_connection);
    tcase_add_test(tc, header_limit_431);
    tcase_add_test(tc, body_limit_413);
    tcase_add_test(tc, malformed_400);
    tcase_add_test(tc, split_bytes);
    tcase_add_test(tc, auth_401_403);
    tcase_add_test(tc, not_found_and_method);
    tcase_add_test(tc, json_body_checked);
    tcase_add_test(tc, pct_and_query);
    tcase_add_test(tc, webhook_signature_vector);
    tcase_add_test(tc, sse_frame);
    tcase_add_test(tc, routes_match_openapi);
    tcase_add_test(tc, sse_resume_from_ring);
    suite_add_tcase(s, tc);
    return s;
}
