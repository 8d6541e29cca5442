/* server/api/router.c - the route table, authentication/authorisation, responses (JSON and
 * problem+json, RFC 9457), probes, /metrics and the device routes. */
#include "api_int.h"

#include "base/clock.h"
#include "base/err.h"
#include "base/util.h"
#include "devices.h"
#include "metrics.h"
#include "shard.h"
#include "store/store.h"
#include "store/telemetry.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct api_settings api_set = {
    .probes_public = true,
    .sse_heartbeat_ms = 15000,
    .sse_max_backlog = 4 * 1024 * 1024,
    .sse_ring = 10000,
};

#define MAX_SEGS 10

/* ---- roles ---------------------------------------------------------------------------------- */

static const char *const role_names[] = {"none", "viewer", "operator", "admin"};

const char *api_role_name(enum api_role r)
{
    return (unsigned)r < LW_ARRAY_SIZE(role_names) ? role_names[r] : "none";
}

int api_role_parse(const char *s)
{
    for (int i = 1; i < (int)LW_ARRAY_SIZE(role_names); i++)
        if (strcmp(s, role_names[i]) == 0)
            return i;
    return -1;
}

/* ---- responses ------------------------------------------------------------------------------ */

const char *api_status_text(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}

void api_reply_headers(struct api_req *r, const char *lines)
{
    snprintf(r->extra_hdr, sizeof(r->extra_hdr), "%s", lines);
}

void api_reply(struct api_req *r, int status, const char *ctype, const void *body, size_t len)
{
    struct api_conn *c = r->conn;
    if (r->done)
        return;
    if (c->closing || c->nreq >= c->lim.max_requests)
        r->keep_alive = false;
    lw_buf_reset(&r->resp);
    lw_buf_printf(&r->resp, "HTTP/1.1 %d %s\r\n", status, api_status_text(status));
    if (ctype)
        lw_buf_printf(&r->resp, "Content-Type: %s\r\n", ctype);
    lw_buf_printf(&r->resp, "Content-Length: %zu\r\nCache-Control: no-store\r\n%s%s\r\n", len,
                  r->extra_hdr, r->keep_alive ? "" : "Connection: close\r\n");
    if (r->method != HTTP_HEAD && len)
        lw_buf_put(&r->resp, body, len);
    r->status = status;
    if (lw_buf_status(&r->resp)) {
        r->keep_alive = false;
        lw_buf_reset(&r->resp);
        lw_buf_put_str(&r->resp,
                       "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: "
                       "close\r\n\r\n");
        r->status = 500;
    }
    api_req_finish(r);
}

void api_reply_json(struct api_req *r, int status, json_t *json)
{
    char *s = json ? json_dumps(json, JSON_COMPACT) : NULL;
    json_decref(json);
    if (!s) {
        api_problem(r, 500, "internal", "cannot encode the response");
        return;
    }
    api_reply(r, status, "application/json", s, strlen(s));
    free(s);
}

void api_problem(struct api_req *r, int status, const char *slug, const char *detail, ...)
{
    char d[512], type[96];
    va_list ap;
    va_start(ap, detail);
    vsnprintf(d, sizeof(d), detail, ap);
    va_end(ap);
    snprintf(type, sizeof(type), "urn:lwm2md:problem:%s", slug);
    json_t *j = json_object();
    if (j) {
        json_object_set_new(j, "type", json_string(type));
        json_object_set_new(j, "title", json_string(api_status_text(status)));
        json_object_set_new(j, "status", json_integer(status));
        /* detail may echo client input: keep it valid UTF-8 for jansson */
        json_t *ds = json_string(d);
        json_object_set_new(j, "detail", ds ? ds : json_string("(detail not valid UTF-8)"));
        if (r->url) {
            size_t plen = strcspn(r->url, "?");
            json_t *in = json_stringn(r->url, plen);
            if (in)
                json_object_set_new(j, "instance", in);
        }
    }
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (status == 401)
        api_reply_headers(r, "WWW-Authenticate: Bearer realm=\"lwm2md\"\r\n");
    if (s)
        api_reply(r, status, "application/problem+json", s, strlen(s));
    else
        api_reply(r, status, NULL, NULL, 0);
    free(s);
}

/* ---- URL helpers ---------------------------------------------------------------------------- */

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

bool api_pct_decode(char *s, size_t *len)
{
    size_t o = 0, n = *len;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '%') {
            if (i + 2 >= n)
                return false;
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0)
                return false;
            ch = (char)(hi << 4 | lo);
            i += 2;
        } else if (ch == '+') {
            ch = ' ';
        }
        if (ch == '\0')
            return false;
        s[o++] = ch;
    }
    s[o] = '\0';
    *len = o;
    return true;
}

int api_query_get(const char *query, const char *name, char *out, size_t cap)
{
    size_t nlen = strlen(name);
    const char *p = query;
    while (p && *p) {
        const char *amp = strchr(p, '&');
        size_t plen = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', plen);
        size_t klen = eq ? (size_t)(eq - p) : plen;
        if (klen == nlen && memcmp(p, name, nlen) == 0) {
            size_t vlen = eq ? plen - klen - 1 : 0;
            if (vlen >= cap)
                return -1;
            memcpy(out, eq ? eq + 1 : "", vlen);
            out[vlen] = '\0';
            return api_pct_decode(out, &vlen) ? 1 : -1;
        }
        p = amp ? amp + 1 : NULL;
    }
    return 0;
}

/* ---- probes and metrics --------------------------------------------------------------------- */

static void h_healthz(struct api_req *r, char *const *params, const char *query)
{
    (void)params;
    (void)query;
    api_reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

static void h_readyz(struct api_req *r, char *const *params, const char *query)
{
    (void)params;
    (void)query;
    bool shards = shards_ready(); /* every shard thread running with its sockets open */
    bool db = api_tokens_db_ok();
    struct lw_store_stats st;
    lw_store_get_stats(&st);
    /* The store's state is shown, not required: devices are served from memory while the
     * database is away (writes queue up). */
    json_t *j = json_pack("{s:s, s:b, s:b, s:{s:b, s:I}}", "status",
                          shards && db ? "ready" : "not ready", "shards", shards, "database", db,
                          "store", "connected", lw_store_db_ok(), "queued", (json_int_t)st.queued);
    if (lw_telemetry_running()) {
        /* shown, not required: telemetry queues in memory and spills to files meanwhile */
        struct lw_telemetry_stats ts;
        lw_telemetry_get_stats(&ts);
        json_object_set_new(j, "telemetry",
                            json_pack("{s:b, s:b, s:I, s:I}", "connected", ts.connected, "spilling",
                                      ts.spilling, "queued", (json_int_t)ts.queued, "spill_files",
                                      (json_int_t)ts.spill_files));
    }
    api_reply_json(r, shards && db ? 200 : 503, j);
}

static void h_metrics(struct api_req *r, char *const *params, const char *query)
{
    (void)params;
    (void)query;
    struct lw_buf out;
    lw_buf_init(&out, 16384);
    api_metrics_write(&out);
    uint64_t counts[LW_EV__COUNT];
    lw_events_posted(counts);
    lw_buf_printf(&out, "# HELP lwm2md_events_total Events delivered on the event bus.\n"
                        "# TYPE lwm2md_events_total counter\n");
    for (int t = 0; t < LW_EV__COUNT; t++)
        lw_buf_printf(&out, "lwm2md_events_total{type=\"%s\"} %llu\n",
                      lw_event_type_name((enum lw_event_type)t), (unsigned long long)counts[t]);
    api_webhooks_metrics(&out);
    api_sse_metrics(&out);
    api_tokens_metrics(&out);
    lw_metrics_write_all(&out);
    if (lw_buf_status(&out))
        api_problem(r, 500, "internal", "cannot render metrics");
    else
        api_reply(r, 200, "text/plain; version=0.0.4; charset=utf-8", out.data, out.len);
    lw_buf_deinit(&out);
}

/* ---- devices -------------------------------------------------------------------------------- */

static void device_error(struct api_req *r, int err)
{
    switch (err) {
    case LW_ENOENT:
        api_problem(r, 404, "device-not-found", "no device is registered as '%s'", r->target);
        break;
    case LW_ECANCELED: api_problem(r, 503, "shutting-down", "the server is stopping"); break;
    case LW_ETIMEDOUT:
        api_problem(r, 504, "shard-timeout", "a shard did not answer in time");
        break;
    case LW_EINVAL: api_problem(r, 400, "invalid-parameter", "invalid query parameters"); break;
    default: api_problem(r, 500, "internal", "device query failed: %s", lw_strerror(err)); break;
    }
}

static void on_device_done(uint64_t cookie, int err, json_t *result)
{
    struct api_req *r = api_req_of_cookie(cookie);
    if (!r)
        return; /* the client went away */
    if (err)
        device_error(r, err);
    else if (!result)
        api_problem(r, 500, "internal", "empty device answer");
    else
        api_reply_json(r, 200, json_incref(result));
}

static void on_deregister_done(uint64_t cookie, int err, json_t *result)
{
    struct api_req *r = api_req_of_cookie(cookie);
    (void)result;
    if (!r)
        return;
    if (err)
        device_error(r, err);
    else
        api_reply(r, 204, NULL, NULL, 0);
}

static void h_devices_list(struct api_req *r, char *const *params, const char *query)
{
    (void)params;
    char limit_s[16], cursor[256], prefix[256], version[8], binding[16], queue[8];
    struct lw_dev_filter f = {.queue_mode = -1};
    size_t limit = 100;
    int rc;
    if ((rc = api_query_get(query, "limit", limit_s, sizeof(limit_s))) != 0) {
        uint64_t v;
        if (rc < 0 || lw_parse_u64(limit_s, strlen(limit_s), &v) || v < 1 || v > 1000) {
            api_problem(r, 400, "invalid-parameter", "limit must be an integer from 1 to 1000");
            return;
        }
        limit = (size_t)v;
    }
    rc = api_query_get(query, "cursor", cursor, sizeof(cursor));
    if (rc < 0) {
        api_problem(r, 400, "invalid-parameter", "malformed cursor");
        return;
    }
    const char *cur = rc ? cursor : NULL;
    rc = api_query_get(query, "endpoint", prefix, sizeof(prefix));
    if (rc < 0) {
        api_problem(r, 400, "invalid-parameter", "malformed endpoint prefix");
        return;
    }
    if (rc)
        f.endpoint_prefix = prefix;
    rc = api_query_get(query, "lwm2m", version, sizeof(version));
    if (rc < 0 ||
        (rc && strcmp(version, "1.0") && strcmp(version, "1.1") && strcmp(version, "1.2"))) {
        api_problem(r, 400, "invalid-parameter", "lwm2m must be 1.0, 1.1 or 1.2");
        return;
    }
    if (rc)
        f.lwm2m_version = version;
    rc = api_query_get(query, "binding", binding, sizeof(binding));
    if (rc < 0 || (rc && strspn(binding, "UMHTSNQ") != strlen(binding))) {
        api_problem(r, 400, "invalid-parameter",
                    "binding must be a binding string such as U or UQ");
        return;
    }
    if (rc)
        f.binding = binding;
    rc = api_query_get(query, "queue", queue, sizeof(queue));
    if (rc < 0 || (rc && strcmp(queue, "true") && strcmp(queue, "false"))) {
        api_problem(r, 400, "invalid-parameter", "queue must be true or false");
        return;
    }
    if (rc)
        f.queue_mode = strcmp(queue, "true") == 0;
    rc = lw_devices_list(&f, cur, limit, on_device_done, api_req_cookie(r));
    if (rc)
        device_error(r, rc);
}

static void h_device_get(struct api_req *r, char *const *params, const char *query)
{
    (void)query;
    int rc = lw_devices_get(params[0], on_device_done, api_req_cookie(r));
    if (rc)
        device_error(r, rc);
}

static void h_device_deregister(struct api_req *r, char *const *params, const char *query)
{
    (void)query;
    int rc = lw_devices_deregister(params[0], on_deregister_done, api_req_cookie(r));
    if (rc)
        device_error(r, rc);
}

static void h_events(struct api_req *r, char *const *params, const char *query)
{
    (void)params;
    if (r->method == HTTP_HEAD) /* no stream for HEAD: the headers only */
        api_reply(r, 200, "text/event-stream", NULL, 0);
    else
        api_sse_open(r, query);
}

/* ---- route table ---------------------------------------------------------------------------- */

const struct api_route api_routes[] = {
    {HTTP_GET, "/healthz", h_healthz, API_ROLE_VIEWER, true, false, "healthz"},
    {HTTP_GET, "/readyz", h_readyz, API_ROLE_VIEWER, true, false, "readyz"},
    {HTTP_GET, "/metrics", h_metrics, API_ROLE_VIEWER, true, false, "metrics"},
    {HTTP_GET, "/api/v1/devices", h_devices_list, API_ROLE_VIEWER, false, false, "devices_list"},
    {HTTP_GET, "/api/v1/devices/{endpoint}", h_device_get, API_ROLE_VIEWER, false, false,
     "device_get"},
    {HTTP_DELETE, "/api/v1/devices/{endpoint}/registration", h_device_deregister, API_ROLE_ADMIN,
     false, true, "device_deregister"},
    {HTTP_PUT, "/api/v1/devices/{endpoint}/credentials", h_credentials_put, API_ROLE_ADMIN, false,
     true, "credentials_put"},
    {HTTP_GET, "/api/v1/devices/{endpoint}/credentials", h_credentials_get, API_ROLE_ADMIN, false,
     false, "credentials_get"},
    {HTTP_DELETE, "/api/v1/devices/{endpoint}/credentials", h_credentials_delete, API_ROLE_ADMIN,
     false, true, "credentials_delete"},
    {HTTP_GET, "/api/v1/events", h_events, API_ROLE_VIEWER, false, false, "events"},
    {HTTP_GET, "/api/v1/devices/{endpoint}/data/{o}", h_dm_read, API_ROLE_VIEWER, false, false,
     "dm_read"},
    {HTTP_GET, "/api/v1/devices/{endpoint}/discover/{o}", h_dm_discover, API_ROLE_VIEWER, false,
     false, "dm_discover"},
    {HTTP_POST, "/api/v1/devices/{endpoint}/data/{o}", h_dm_create, API_ROLE_OPERATOR, false, true,
     "dm_create"},
    {HTTP_GET, "/api/v1/devices/{endpoint}/data/{o}/{i}", h_dm_read, API_ROLE_VIEWER, false, false,
     "dm_read"},
    {HTTP_GET, "/api/v1/devices/{endpoint}/discover/{o}/{i}", h_dm_discover, API_ROLE_VIEWER, false,
     false, "dm_discover"},
    {HTTP_PUT, "/api/v1/devices/{endpoint}/data/{o}/{i}", h_dm_write, API_ROLE_OPERATOR, false,
     true, "dm_write"},
    {HTTP_PATCH, "/api/v1/devices/{endpoint}/data/{o}/{i}", h_dm_patch, API_ROLE_OPERATOR, false,
     true, "dm_patch"},
    {HTTP_DELETE, "/api/v1/devices/{endpoint}/data/{o}/{i}", h_dm_delete, API_ROLE_OPERATOR, false,
     true, "dm_delete"},
    {HTTP_GET, "/api/v1/devices/{endpoint}/data/{o}/{i}/{r}", h_dm_read, API_ROLE_VIEWER, false,
     false, "dm_read"},
    {HTTP_GET, "/api/v1/devices/{endpoint}/discover/{o}/{i}/{r}", h_dm_discover, API_ROLE_VIEWER,
     false, false, "dm_discover"},
    {HTTP_PUT, "/api/v1/devices/{endpoint}/data/{o}/{i}/{r}", h_dm_write, API_ROLE_OPERATOR, false,
     true, "dm_write"},
    {HTTP_POST, "/api/v1/devices/{endpoint}/execute/{o}/{i}/{r}", h_dm_execute, API_ROLE_OPERATOR,
     false, true, "dm_execute"},
    {HTTP_GET, "/api/v1/devices/{endpoint}/data/{o}/{i}/{r}/{ri}", h_dm_read, API_ROLE_VIEWER,
     false, false, "dm_read"},
    {HTTP_GET, "/api/v1/devices/{endpoint}/discover/{o}/{i}/{r}/{ri}", h_dm_discover,
     API_ROLE_VIEWER, false, false, "dm_discover"},
    {HTTP_PUT, "/api/v1/devices/{endpoint}/data/{o}/{i}/{r}/{ri}", h_dm_write, API_ROLE_OPERATOR,
     false, true, "dm_write"},
    {HTTP_PUT, "/api/v1/devices/{endpoint}/attributes/{o}", h_dm_attributes, API_ROLE_OPERATOR,
     false, true, "dm_attributes"},
    {HTTP_PUT, "/api/v1/devices/{endpoint}/attributes/{o}/{i}", h_dm_attributes, API_ROLE_OPERATOR,
     false, true, "dm_attributes"},
    {HTTP_PUT, "/api/v1/devices/{endpoint}/attributes/{o}/{i}/{r}", h_dm_attributes,
     API_ROLE_OPERATOR, false, true, "dm_attributes"},
    {HTTP_PUT, "/api/v1/devices/{endpoint}/attributes/{o}/{i}/{r}/{ri}", h_dm_attributes,
     API_ROLE_OPERATOR, false, true, "dm_attributes"},
    {HTTP_POST, "/api/v1/devices/{endpoint}/observations", h_observations_post, API_ROLE_OPERATOR,
     false, true, "observations_post"},
    {HTTP_GET, "/api/v1/devices/{endpoint}/observations", h_observations_list, API_ROLE_VIEWER,
     false, false, "observations_list"},
    {HTTP_DELETE, "/api/v1/devices/{endpoint}/observations/{id}", h_observation_delete,
     API_ROLE_OPERATOR, false, true, "observation_delete"},
    {HTTP_GET, "/api/v1/devices/{endpoint}/values", h_values_get, API_ROLE_VIEWER, false, false,
     "values_get"},
    {HTTP_GET, "/api/v1/devices/{endpoint}/telemetry", h_telemetry_get, API_ROLE_VIEWER, false,
     false, "telemetry_get"},
    {HTTP_POST, "/api/v1/devices/{endpoint}/composite/read", h_dm_composite_read, API_ROLE_VIEWER,
     false, false, "dm_composite_read"},
    {HTTP_POST, "/api/v1/devices/{endpoint}/composite/write", h_dm_composite_write,
     API_ROLE_OPERATOR, false, true, "dm_composite_write"},
    {HTTP_GET, "/api/v1/operations/{id}", h_operation_get, API_ROLE_VIEWER, false, false,
     "operation_get"},
    {HTTP_POST, "/api/v1/tokens", h_tokens_create, API_ROLE_ADMIN, false, true, "token_create"},
    {HTTP_GET, "/api/v1/tokens", h_tokens_list, API_ROLE_ADMIN, false, false, "tokens_list"},
    {HTTP_DELETE, "/api/v1/tokens/{id}", h_tokens_revoke, API_ROLE_ADMIN, false, true,
     "token_revoke"},
};
const size_t api_routes_n = LW_ARRAY_SIZE(api_routes);

/* Splits a path into segments in place ("/a/b" -> "a","b"); decodes each. -1 malformed. */
static int split_path(char *path, char **segs, int max)
{
    int n = 0;
    if (path[0] != '/')
        return -1;
    char *p = path + 1;
    if (!*p)
        return 0;
    for (;;) {
        char *slash = strchr(p, '/');
        if (slash)
            *slash = '\0';
        if (n == max)
            return -1;
        size_t len = strlen(p);
        if (!api_pct_decode(p, &len))
            return -1;
        segs[n++] = p;
        if (!slash)
            break;
        p = slash + 1;
    }
    return n;
}

/* 1 when route matches the segments (params filled), 0 otherwise. */
static int match(const struct api_route *rt, char **segs, int n, char **params)
{
    const char *p = rt->pattern + 1;
    int i = 0, np = 0;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (i >= n)
            return 0;
        if (p[0] == '{') {
            if (!*segs[i])
                return 0;
            params[np++] = segs[i];
        } else if (strlen(segs[i]) != len || memcmp(segs[i], p, len) != 0) {
            return 0;
        }
        i++;
        p += len + (slash ? 1 : 0);
    }
    return i == n;
}

static enum api_role authenticate(struct api_req *r, bool *present)
{
    const char *a = r->auth;
    *present = *a != '\0';
    if (!*a || r->auth_over)
        return API_ROLE_NONE;
    if (strncasecmp(a, "Bearer ", 7) != 0)
        return API_ROLE_NONE;
    a += 7;
    while (*a == ' ')
        a++;
    size_t len = strlen(a);
    while (len && a[len - 1] == ' ')
        len--;
    return api_auth_check(a, len, r->actor, sizeof(r->actor));
}

bool api_decode_json_body(struct api_req *r)
{
    if (r->method != HTTP_POST && r->method != HTTP_PUT && r->method != HTTP_PATCH)
        return true;
    if (r->body.len == 0)
        return true;
    if (strncasecmp(r->content_type, "application/json", 16) != 0) {
        api_problem(r, 415, "unsupported-media-type", "request bodies must be application/json");
        return false;
    }
    json_error_t e;
    r->json = json_loadb((const char *)r->body.data, r->body.len, JSON_REJECT_DUPLICATES, &e);
    if (!r->json) {
        api_problem(r, 400, "invalid-json", "line %d column %d: %s", e.line, e.column, e.text);
        return false;
    }
    return true;
}

void api_route(struct api_req *r)
{
    char *segs[MAX_SEGS], *params[MAX_SEGS];
    char allow[64] = "";
    size_t plen = strcspn(r->url, "?");
    char *path = strndup(r->url, plen);
    const char *query = r->url[plen] ? r->url + plen + 1 : "";
    int method = r->method == HTTP_HEAD ? HTTP_GET : r->method;
    if (!path) {
        api_problem(r, 500, "internal", "out of memory");
        return;
    }
    int n = split_path(path, segs, MAX_SEGS);
    if (n < 0) {
        if (path[0] != '/')
            api_problem(r, 400, "bad-request", "the request target must be an absolute path");
        else
            api_problem(r, 404, "not-found", "no such resource");
        goto out;
    }
    const struct api_route *found = NULL;
    bool path_known = false;
    for (size_t i = 0; i < api_routes_n; i++) {
        const struct api_route *rt = &api_routes[i];
        if (!match(rt, segs, n, params))
            continue;
        path_known = true;
        snprintf(allow + strlen(allow), sizeof(allow) - strlen(allow), "%s%s", *allow ? ", " : "",
                 llhttp_method_name((llhttp_method_t)rt->method));
        if (rt->method == method && !found) {
            found = rt;
            r->route = (int)i;
        }
    }
    if (found) { /* re-match: params point into segs of the found route */
        match(found, segs, n, params);
        if (strchr(found->pattern, '{'))
            snprintf(r->target, sizeof(r->target), "%s", params[0]);
    }
    bool open = found && found->probe && api_set.probes_public;
    if (!open) {
        bool present;
        r->role = authenticate(r, &present);
        if (r->role == API_ROLE_NONE && (found || strncmp(r->url, "/api/", 5) == 0)) {
            api_problem(r, 401, present ? "invalid-token" : "missing-token",
                        present ? "the bearer token is not valid"
                                : "an Authorization: Bearer token is required");
            goto out;
        }
    }
    if (!found) {
        if (path_known) {
            char h[96];
            snprintf(h, sizeof(h), "Allow: %s\r\n", allow);
            api_reply_headers(r, h);
            api_problem(r, 405, "method-not-allowed", "allowed methods: %s", allow);
        } else {
            api_problem(r, 404, "not-found", "no such resource");
        }
        goto out;
    }
    if (!open && r->role < found->min_role) {
        api_problem(r, 403, "forbidden", "this operation needs the %s role; the token has %s",
                    api_role_name(found->min_role), api_role_name(r->role));
        goto out;
    }
    if (!api_decode_json_body(r))
        goto out;
    found->handler(r, params, query);
out:
    free(path);
}

/* ---- request metrics ------------------------------------------------------------------------ */

static const int statuses[] = {200, 201, 204, 400, 401, 403, 404, 405, 409,
                               413, 414, 415, 429, 431, 500, 503, 504};
#define NSTATUS (LW_ARRAY_SIZE(statuses) + 1) /* + other */
static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                 0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define NBUCKETS LW_ARRAY_SIZE(buckets)
#define NROUTES  64 /* >= api_routes_n + 1 (unmatched) */

static struct {
    uint64_t count[NROUTES][NSTATUS];
    uint64_t hist[NROUTES][NBUCKETS];
    uint64_t hist_count[NROUTES];
    double hist_sum[NROUTES];
} m;

void api_metrics_observe(const struct api_req *r, uint64_t dur_ns)
{
    size_t rt = r->route >= 0 && (size_t)r->route < api_routes_n ? (size_t)r->route : api_routes_n;
    if (rt >= NROUTES)
        return;
    size_t s = LW_ARRAY_SIZE(statuses);
    for (size_t i = 0; i < LW_ARRAY_SIZE(statuses); i++)
        if (statuses[i] == r->status)
            s = i;
    m.count[rt][s]++;
    if (r->stream)
        return; /* an SSE stream's duration is not a latency */
    double sec = (double)dur_ns / 1e9;
    for (size_t b = 0; b < NBUCKETS; b++)
        if (sec <= buckets[b])
            m.hist[rt][b]++;
    m.hist_count[rt]++;
    m.hist_sum[rt] += sec;
}

void api_metrics_write(struct lw_buf *out)
{
    lw_buf_printf(out, "# HELP lwm2md_http_requests_total HTTP API requests by route and status.\n"
                       "# TYPE lwm2md_http_requests_total counter\n");
    for (size_t rt = 0; rt <= api_routes_n && rt < NROUTES; rt++) {
        const char *name = rt < api_routes_n ? api_routes[rt].name : "unmatched";
        for (size_t s = 0; s < NSTATUS; s++) {
            if (!m.count[rt][s])
                continue;
            if (s < LW_ARRAY_SIZE(statuses))
                lw_buf_printf(out, "lwm2md_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
                              name, statuses[s], (unsigned long long)m.count[rt][s]);
            else
                lw_buf_printf(out,
                              "lwm2md_http_requests_total{route=\"%s\",status=\"other\"} %llu\n",
                              name, (unsigned long long)m.count[rt][s]);
        }
    }
    lw_buf_printf(out,
                  "# HELP lwm2md_http_request_duration_seconds HTTP API request latency (parsed "
                  "to answered).\n# TYPE lwm2md_http_request_duration_seconds histogram\n");
    for (size_t rt = 0; rt <= api_routes_n && rt < NROUTES; rt++) {
        const char *name = rt < api_routes_n ? api_routes[rt].name : "unmatched";
        if (!m.hist_count[rt])
            continue;
        for (size_t b = 0; b < NBUCKETS; b++)
            lw_buf_printf(out,
                          "lwm2md_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} "
                          "%llu\n",
                          name, buckets[b], (unsigned long long)m.hist[rt][b]);
        lw_buf_printf(out,
                      "lwm2md_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n"
                      "lwm2md_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n"
                      "lwm2md_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
                      name, (unsigned long long)m.hist_count[rt], name, m.hist_sum[rt], name,
                      (unsigned long long)m.hist_count[rt]);
    }
}
