/* server/api/dm.c - device management routes: Read / Write / Execute / Discover / Delete /
 * Create through operation resources (ops.h), and GET /api/v1/operations/{id}.
 *
 * A call validates its input (404 unknown device, 400 bad path / body / value type, 406
 * unsupported format), creates an operation and, with ?wait=DURATION (default
 * ops_wait_default_ms, 0 = do not wait), answers 200 with the finished operation when it
 * completes in time, else 202 with Location: /api/v1/operations/{id}. Mutating routes are audited
 * by the server when answered (route table). Control thread only. */
#include "api_int.h"
#include "base/err.h"
#include "base/util.h"
#include "lwm2m/fmt.h"
#include "lwm2m/registry.h"
#include "observe.h"
#include "ops.h"
#include "registry.h"
#include "values.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WAIT_MS 300000u

/* "250ms", "5s", "2m", or bare seconds. -1 when malformed. */
static int64_t parse_duration(const char *s)
{
    char *end;
    if (!*s)
        return -1;
    double v = strtod(s, &end);
    if (end == s || v < 0)
        return -1;
    double mul = 1000;
    if (!strcmp(end, "ms"))
        mul = 1;
    else if (!strcmp(end, "s") || !*end)
        mul = 1000;
    else if (!strcmp(end, "m"))
        mul = 60000;
    else
        return -1;
    double ms = v * mul;
    return ms > 1e9 ? -1 : (int64_t)ms;
}

static void on_wait(uint64_t cookie, json_t *op, bool final)
{
    struct api_req *r = api_req_of_cookie(cookie);
    if (!r)
        return;
    if (!final) {
        char h[96];
        snprintf(h, sizeof(h), "Location: /api/v1/operations/%s\r\n",
                 json_string_value(json_object_get(op, "id")));
        api_reply_headers(r, h);
        api_reply_json(r, 202, json_incref(op));
    } else {
        api_reply_json(r, 200, json_incref(op));
    }
}

/* Joins params[first..] ("3","0","1") into a path; false after answering 400. */
static bool path_of(struct api_req *r, char *const *params, int first, int n, struct lw_m2m_path *p)
{
    char s[64] = "";
    size_t len = 0;
    for (int i = first; i < first + n; i++) {
        int w = snprintf(s + len, sizeof(s) - len, "/%s", params[i]);
        if (w < 0 || (size_t)w >= sizeof(s) - len)
            goto bad;
        len += (size_t)w;
    }
    if (n == 0)
        snprintf(s, sizeof(s), "/");
    if (lw_m2m_path_parse(s, strlen(s), p) == 0)
        return true;
bad:
    api_problem(r, 400, "invalid-path", "'%s' is not an LwM2M path (/object/instance/resource/...)",
                s);
    return false;
}

/* Common tail: format, wait, submit. */
static void submit(struct api_req *r, struct ops_spec *sp, const char *query)
{
    char buf[64];
    int64_t wait = ops_wait_default_ms();
    uint64_t id;
    sp->endpoint = r->target;
    sp->format = OPS_FORMAT_DEFAULT;
    int q = api_query_get(query, "format", buf, sizeof(buf));
    if (q < 0 || (q > 0 && (lw_m2m_cf_parse(buf, strlen(buf), &sp->format) != 0 ||
                            !lw_m2m_cf_supported(sp->format)))) {
        api_problem(r, 406, "unsupported-format",
                    "format must be one of tlv, senml-json, senml-cbor, lwm2m-cbor, json, text, "
                    "opaque, cbor");
        return;
    }
    if ((q = api_query_get(query, "wait", buf, sizeof(buf))) != 0) {
        wait = q < 0 ? -1 : parse_duration(buf);
        if (wait < 0 || wait > MAX_WAIT_MS) {
            api_problem(r, 400, "invalid-parameter", "wait must be a duration up to 5m");
            return;
        }
    }
    if ((q = api_query_get(query, "timeout", buf, sizeof(buf))) != 0) {
        int64_t t = q < 0 ? -1 : parse_duration(buf);
        if (t <= 0 || t > 3600000) {
            api_problem(r, 400, "invalid-parameter", "timeout must be a duration up to 1h");
            return;
        }
        sp->timeout_ms = (uint32_t)t;
    }
    int rc = ops_submit(sp, &id);
    switch (rc) {
    case 0: break;
    case LW_ENOENT:
        api_problem(r, 404, "device-not-found", "no device is registered as '%s'", r->target);
        return;
    case LW_ECANCELED: api_problem(r, 503, "shutting-down", "the server is stopping"); return;
    case LW_EINVAL: api_problem(r, 400, "invalid-parameter", "invalid endpoint"); return;
    default:
        api_problem(r, 500, "internal", "cannot create the operation: %s", lw_strerror(rc));
        return;
    }
    if (ops_wait(id, (uint32_t)wait, on_wait, api_req_cookie(r)) != 0)
        api_problem(r, 500, "internal", "operation %llu vanished", (unsigned long long)id);
}

/* Validates a values body against the newest object versions (the shard checks again against
 * the device's own versions). false after answering 400. */
static bool check_values(struct api_req *r, const struct lw_m2m_path *within)
{
    struct lw_arena a;
    struct lw_m2m_records recs = {0};
    char err[200] = "";
    if (!r->json) {
        api_problem(r, 400, "invalid-body", "a JSON body {\"values\":[...]} is required");
        return false;
    }
    struct lw_m2m_types t = {0};
    if (regsrv_objreg())
        t = lw_m2m_registry_types(regsrv_objreg());
    lw_arena_init(&a, 4096, 16u << 20);
    int rc = values_from_json(r->json, within, &t, &a, &recs, err, sizeof(err));
    lw_arena_deinit(&a);
    if (rc == 0 && recs.n == 0) {
        snprintf(err, sizeof(err), "\"values\" is empty");
        rc = LW_EINVAL;
    }
    if (rc) {
        api_problem(r, 400, rc == LW_ETYPE ? "invalid-value" : "invalid-body", "%s",
                    *err ? err : lw_strerror(rc));
        return false;
    }
    return true;
}

static int nparams(const struct api_req *r)
{
    /* params after the endpoint: count the segments after ".../data/" etc. from the route */
    const char *p = api_routes[r->route].pattern;
    int n = 0;
    for (; *p; p++)
        n += *p == '{';
    return n - 1;
}

void h_dm_read(struct api_req *r, char *const *params, const char *query)
{
    struct ops_spec sp = {.kind = OPS_READ};
    if (!path_of(r, params, 1, nparams(r), &sp.path))
        return;
    submit(r, &sp, query);
}

void h_dm_discover(struct api_req *r, char *const *params, const char *query)
{
    struct ops_spec sp = {.kind = OPS_DISCOVER};
    if (!path_of(r, params, 1, nparams(r), &sp.path))
        return;
    submit(r, &sp, query);
}

static void write_common(struct api_req *r, char *const *params, const char *query,
                         enum ops_kind kind)
{
    struct ops_spec sp = {.kind = kind};
    if (!path_of(r, params, 1, nparams(r), &sp.path))
        return;
    if (sp.path.len < 2 && kind != OPS_CREATE) {
        api_problem(r, 400, "invalid-path", "Write needs an object instance or resource path");
        return;
    }
    if (kind == OPS_WRITE_PARTIAL && sp.path.len < 2) {
        api_problem(r, 400, "invalid-path", "partial update needs an object instance path");
        return;
    }
    if (!check_values(r, &sp.path))
        return;
    sp.body = r->json;
    submit(r, &sp, query);
}

void h_dm_write(struct api_req *r, char *const *params, const char *query)
{
    write_common(r, params, query, OPS_WRITE);
}

void h_dm_patch(struct api_req *r, char *const *params, const char *query)
{
    write_common(r, params, query, OPS_WRITE_PARTIAL);
}

void h_dm_create(struct api_req *r, char *const *params, const char *query)
{
    write_common(r, params, query, OPS_CREATE);
}

void h_dm_delete(struct api_req *r, char *const *params, const char *query)
{
    struct ops_spec sp = {.kind = OPS_DELETE};
    if (!path_of(r, params, 1, nparams(r), &sp.path))
        return;
    if (sp.path.len != 2) {
        api_problem(r, 400, "invalid-path", "Delete needs an object instance path /o/i");
        return;
    }
    submit(r, &sp, query);
}

void h_dm_execute(struct api_req *r, char *const *params, const char *query)
{
    struct ops_spec sp = {.kind = OPS_EXECUTE};
    if (!path_of(r, params, 1, nparams(r), &sp.path))
        return;
    if (sp.path.len != 3) {
        api_problem(r, 400, "invalid-path", "Execute needs a resource path /o/i/r");
        return;
    }
    const json_t *args = r->json ? json_object_get(r->json, "arguments") : NULL;
    if (args && !json_is_string(args)) {
        api_problem(r, 400, "invalid-body", "\"arguments\" must be a string, e.g. \"0='a',1\"");
        return;
    }
    sp.args = args ? json_string_value(args) : NULL;
    submit(r, &sp, query);
}

void h_operation_get(struct api_req *r, char *const *params, const char *query)
{
    uint64_t id;
    (void)query;
    json_t *j = lw_parse_u64(params[0], strlen(params[0]), &id) == 0 ? ops_json(id) : NULL;
    if (!j) {
        api_problem(r, 404, "operation-not-found", "no operation '%s' (unknown or expired)",
                    params[0]);
        return;
    }
    api_reply_json(r, 200, j);
}

/* ---- Write-Attributes, observations, values ------------------------------------------------- */
void h_dm_attributes(struct api_req *r, char *const *params, const char *query)
{
    struct ops_spec sp = {.kind = OPS_ATTRIBUTES};
    char q[256], err[160];
    if (!path_of(r, params, 1, nparams(r), &sp.path))
        return;
    const json_t *attrs = r->json ? json_object_get(r->json, "attributes") : NULL;
    if (!attrs)
        attrs = r->json;
    if (!json_is_object(attrs) || json_object_size(attrs) == 0) {
        api_problem(r, 400, "invalid-body",
                    "a JSON object of attributes is required, e.g. {\"pmin\":10,\"pmax\":60}");
        return;
    }
    if (observe_attr_query(attrs, q, sizeof(q), err, sizeof(err)) != 0) {
        api_problem(r, 400, "invalid-attributes", "%s", err);
        return;
    }
    sp.query = q;
    submit(r, &sp, query);
}

void h_observations_post(struct api_req *r, char *const *params, const char *query)
{
    char err[200] = "";
    json_t *out = NULL;
    (void)params;
    (void)query;
    if (!json_is_object(r->json)) {
        api_problem(r, 400, "invalid-body", "a JSON body {\"paths\":[\"/3/0/13\"]} is required");
        return;
    }
    const json_t *c = json_object_get(r->json, "composite");
    int rc = observe_create(r->target, json_object_get(r->json, "paths"),
                            json_object_get(r->json, "attributes"), json_is_true(c), &out, err,
                            sizeof(err));
    switch (rc) {
    case 0: {
        char h[400];
        snprintf(h, sizeof(h), "Location: /api/v1/devices/%s/observations/%s\r\n", r->target,
                 json_string_value(json_object_get(out, "id")));
        if (strlen(h) < sizeof(r->extra_hdr)) /* else no Location: the body names the id */
            api_reply_headers(r, h);
        api_reply_json(r, 201, out);
        return;
    }
    case LW_ENOENT:
        api_problem(r, 404, "device-not-found", "no device is registered as '%s'", r->target);
        return;
    case LW_ELIMIT: api_problem(r, 409, "too-many-observations", "%s", err); return;
    case LW_EINVAL: api_problem(r, 400, "invalid-body", "%s", err); return;
    default: api_problem(r, 500, "internal", "%s", lw_strerror(rc)); return;
    }
}

void h_observations_list(struct api_req *r, char *const *params, const char *query)
{
    (void)params;
    (void)query;
    api_reply_json(r, 200, json_pack("{s:o}", "observations", observe_list(r->target)));
}

void h_observation_delete(struct api_req *r, char *const *params, const char *query)
{
    uint64_t id;
    char act[8] = "";
    int q = api_query_get(query, "active", act, sizeof(act));
    if (q < 0 || (q > 0 && strcmp(act, "true") && strcmp(act, "false"))) {
        api_problem(r, 400, "invalid-parameter", "active must be true or false");
        return;
    }
    if (lw_parse_u64(params[1], strlen(params[1]), &id) != 0 ||
        observe_delete(r->target, id, !strcmp(act, "true")) != 0) {
        api_problem(r, 404, "observation-not-found", "no observation '%s' on '%s'", params[1],
                    r->target);
        return;
    }
    api_reply(r, 204, NULL, NULL, 0);
}

void h_values_get(struct api_req *r, char *const *params, const char *query)
{
    (void)params;
    (void)query;
    api_reply_json(r, 200, observe_values(r->target));
}

/* ---- composite ------------------------------------------------------------------------------ */
/* Composite operations take SenML JSON/CBOR or LwM2M CBOR only; false after answering 406. */
static bool composite_format_ok(struct api_req *r, const char *query)
{
    char buf[32];
    uint16_t cf;
    int q = api_query_get(query, "format", buf, sizeof(buf));
    if (q == 0)
        return true;
    if (q < 0 || lw_m2m_cf_parse(buf, strlen(buf), &cf) != 0 ||
        (cf != LW_M2M_CF_SENML_JSON && cf != LW_M2M_CF_SENML_CBOR && cf != LW_M2M_CF_LWM2M_CBOR)) {
        api_problem(r, 406, "unsupported-format",
                    "composite operations use senml-json, senml-cbor or lwm2m-cbor");
        return false;
    }
    return true;
}

void h_dm_composite_read(struct api_req *r, char *const *params, const char *query)
{
    struct ops_spec sp = {.kind = OPS_READ_COMPOSITE, .path = LW_M2M_PATH_ROOT};
    const json_t *paths = r->json ? json_object_get(r->json, "paths") : NULL;
    size_t i;
    const json_t *p;
    (void)params;
    if (!json_is_array(paths) || json_array_size(paths) == 0 || json_array_size(paths) > 64) {
        api_problem(r, 400, "invalid-body", "a body {\"paths\":[\"/3/0/0\", ...]} (1..64 paths)");
        return;
    }
    json_array_foreach(paths, i, p)
    {
        struct lw_m2m_path mp;
        if (!json_is_string(p) ||
            lw_m2m_path_parse(json_string_value(p), json_string_length(p), &mp) != 0) {
            api_problem(r, 400, "invalid-path", "paths[%zu] is not an LwM2M path", i);
            return;
        }
    }
    if (!composite_format_ok(r, query))
        return;
    sp.body = r->json;
    submit(r, &sp, query);
}

void h_dm_composite_write(struct api_req *r, char *const *params, const char *query)
{
    struct ops_spec sp = {.kind = OPS_WRITE_COMPOSITE, .path = LW_M2M_PATH_ROOT};
    (void)params;
    if (!check_values(r, NULL) || !composite_format_ok(r, query))
        return;
    sp.body = r->json;
    submit(r, &sp, query);
}
