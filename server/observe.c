/* Observations as desired state and the last-known values cache (observe.h). Both live on the
 * control thread and follow the event bus: `registered` re-establishes an endpoint's
 * observations, `deregistered`/`expired` drop its cache, `notification`, `send` and finished
 * `operation` reads feed the cache. */
#include "observe.h"

#include "base/clock.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/hash.h"
#include "base/util.h"
#include "events.h"
#include "log.h"
#include "lwm2m/value.h"
#include "ops.h"
#include "store/opstore.h"
#include "values.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_OBS_PER_DEV   64
#define MAX_CACHE_PER_DEV 1024

/* Re-establishment that failed for a transient reason (timeout, 5.xx) is retried after
 * RETRY_FIRST_MS, doubling up to RETRY_MAX_MS, at most RETRY_MAX times; then it stays failed
 * until the device registers or updates again. */
#define RETRY_FIRST_MS 2000
#define RETRY_MAX_MS   60000
#define RETRY_MAX      6

struct obsv {
    struct obsv *next;
    char ep[128];
    uint64_t id;
    uint64_t op; /* the operation that (last) established it, 0 = none yet */
    char path[32];
    struct lw_m2m_path p;
    json_t *attrs; /* owned or NULL */
    json_t *body;  /* composite: {"paths":[...]} (owned), else NULL */
    char query[256];
    bool composite;
    char state[16]; /* pending, active, failed, ended */
    char error[160];
    int64_t created_ms;
    uint64_t established;
    unsigned retries;  /* consecutive transient failures */
    uint64_t retry_at; /* loop time (ms) of the next attempt, 0 = none */
};

static struct {
    bool started;
    json_t *devs;     /* endpoint -> number of observations */
    struct obsv *all; /* every observation (small: bounded per device) */
    uint64_t next_id;
    struct lw_event_sink sink;
    uv_loop_t *loop;
    uv_timer_t retry_timer;
} O;

/* O.devs counts observations per endpoint, so events about endpoints without any cost one hash
 * lookup; only endpoints that have some scan the (per-device bounded) list. */
static int dev_count(const char *ep)
{
    return (int)json_integer_value(json_object_get(O.devs, ep));
}

static void dev_add(const char *ep, int d)
{
    int n = dev_count(ep) + d;
    if (n <= 0)
        json_object_del(O.devs, ep);
    else
        json_object_set_new(O.devs, ep, json_integer(n));
}

static struct obsv *find_obs(const char *ep, uint64_t id)
{
    for (struct obsv *o = O.all; o; o = o->next)
        if (o->id == id && (!ep || !strcmp(o->ep, ep)))
            return o;
    return NULL;
}

static json_t *obs_json(const struct obsv *o)
{
    char id[24];
    snprintf(id, sizeof(id), "%llu", (unsigned long long)o->id);
    json_t *j = json_object();
    json_object_set_new(j, "id", json_string(id));
    json_object_set_new(j, "endpoint", json_string(o->ep));
    json_object_set_new(j, "paths",
                        o->body ? json_deep_copy(json_object_get(o->body, "paths"))
                                : json_pack("[s]", o->path));
    json_object_set_new(j, "composite", json_boolean(o->composite));
    json_object_set_new(j, "attributes", o->attrs ? json_incref(o->attrs) : json_object());
    json_object_set_new(j, "state", json_string(o->state));
    json_object_set_new(j, "error", o->error[0] ? json_string(o->error) : json_null());
    json_object_set_new(j, "established_count", json_integer((json_int_t)o->established));
    json_object_set_new(j, "retries", json_integer((json_int_t)o->retries));
    if (o->retry_at) {
        int64_t at = lw_wall_ms() + (int64_t)(o->retry_at - uv_now(O.loop));
        char ts[32];
        values_rfc3339(at / 1000, ts);
        json_object_set_new(j, "next_retry_at", json_string(ts));
    } else {
        json_object_set_new(j, "next_retry_at", json_null());
    }
    if (o->op) {
        snprintf(id, sizeof(id), "%llu", (unsigned long long)o->op);
        json_object_set_new(j, "operation", json_string(id));
    } else {
        json_object_set_new(j, "operation", json_null());
    }
    return j;
}

static void arm_retry(void);
static void on_retry(uv_timer_t *t);

/* Sends Write-Attributes (when the observation has attributes) and Observe. */
static int establish(struct obsv *o)
{
    const char *ep = o->ep;
    uint64_t id;
    int rc;
    size_t i;
    const json_t *jp;
    if (o->query[0] && !o->body) {
        struct ops_spec wa = {.kind = OPS_ATTRIBUTES,
                              .endpoint = ep,
                              .path = o->p,
                              .format = OPS_FORMAT_DEFAULT,
                              .query = o->query};
        if ((rc = ops_submit(&wa, &id)) != 0)
            return rc;
    }
    /* Observe-Composite: the attributes are written to each path */
    json_array_foreach(o->query[0] && o->body ? json_object_get(o->body, "paths") : NULL, i, jp)
    {
        struct ops_spec wa = {.kind = OPS_ATTRIBUTES,
                              .endpoint = ep,
                              .format = OPS_FORMAT_DEFAULT,
                              .query = o->query};
        if (lw_m2m_path_parse(json_string_value(jp), json_string_length(jp), &wa.path) == 0 &&
            wa.path.len > 0 && (rc = ops_submit(&wa, &id)) != 0)
            return rc;
    }
    struct ops_spec sp = {.kind = OPS_OBSERVE,
                          .endpoint = ep,
                          .path = o->p,
                          .format = OPS_FORMAT_DEFAULT,
                          .obs_id = o->id,
                          .body = o->body,
                          .composite = o->body != NULL};
    if ((rc = ops_submit(&sp, &id)) != 0)
        return rc;
    o->op = id;
    snprintf(o->state, sizeof(o->state), "pending");
    o->error[0] = '\0';
    return 0;
}

int observe_attr_query(const json_t *attrs, char *q, size_t qcap, char *err, size_t ecap)
{
    static const char *const uints[] = {"pmin", "pmax", "epmin", "epmax", "hqmax"};
    static const char *const nums[] = {"gt", "lt", "st"};
    static const char *const bools[] = {"edge", "con"};
    size_t n = 0;
    const char *k;
    json_t *v;
    q[0] = '\0';
    if (!attrs || json_is_null(attrs))
        return 0;
    if (!json_is_object(attrs)) {
        snprintf(err, ecap, "attributes must be an object");
        return LW_EINVAL;
    }
    json_object_foreach((json_t *)attrs, k, v)
    {
        char val[48];
        int kind = -1;
        for (size_t i = 0; i < LW_ARRAY_SIZE(uints); i++)
            if (!strcmp(k, uints[i]))
                kind = 0;
        for (size_t i = 0; i < LW_ARRAY_SIZE(nums); i++)
            if (!strcmp(k, nums[i]))
                kind = 1;
        for (size_t i = 0; i < LW_ARRAY_SIZE(bools); i++)
            if (!strcmp(k, bools[i]))
                kind = 2;
        if (kind < 0) {
            snprintf(err, ecap,
                     "unknown attribute '%s' (pmin, pmax, gt, lt, st, epmin, epmax, edge, con, "
                     "hqmax)",
                     k);
            return LW_EINVAL;
        }
        if (json_is_null(v)) {
            snprintf(val, sizeof(val), "%s", k); /* no value: remove the attribute */
        } else if (kind == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                json_integer_value(v) > 0xffffffffLL) {
                snprintf(err, ecap, "%s must be a non-negative integer (seconds)", k);
                return LW_EINVAL;
            }
            snprintf(val, sizeof(val), "%s=%lld", k, (long long)json_integer_value(v));
        } else if (kind == 1) {
            if (!json_is_number(v) || !isfinite(json_number_value(v)) ||
                (!strcmp(k, "st") && json_number_value(v) < 0)) {
                snprintf(err, ecap, "%s must be a number%s", k, strcmp(k, "st") ? "" : " >= 0");
                return LW_EINVAL;
            }
            snprintf(val, sizeof(val), "%s=%.17g", k, json_number_value(v));
        } else {
            int b =
                json_is_boolean(v) ? json_is_true(v)
                : json_is_integer(v) && (json_integer_value(v) == 0 || json_integer_value(v) == 1)
                    ? (int)json_integer_value(v)
                    : -1;
            if (b < 0) {
                snprintf(err, ecap, "%s must be 0 or 1", k);
                return LW_EINVAL;
            }
            snprintf(val, sizeof(val), "%s=%d", k, b);
        }
        int w = snprintf(q + n, qcap - n, "%s%s", n ? "&" : "", val);
        if (w < 0 || (size_t)w >= qcap - n) {
            snprintf(err, ecap, "too many attributes");
            return LW_EINVAL;
        }
        n += (size_t)w;
    }
    /* Cross-attribute rules (LwM2M 1.1 §5.1.2): pmax >= pmin, epmax > epmin, lt < gt and
     * lt + 2 * st < gt. */
    const json_t *pmin = json_object_get(attrs, "pmin"), *pmax = json_object_get(attrs, "pmax");
    if (json_is_integer(pmin) && json_is_integer(pmax) &&
        json_integer_value(pmax) < json_integer_value(pmin)) {
        snprintf(err, ecap, "pmax must not be less than pmin");
        return LW_EINVAL;
    }
    const json_t *epmin = json_object_get(attrs, "epmin"), *epmax = json_object_get(attrs, "epmax");
    if (json_is_integer(epmin) && json_is_integer(epmax) &&
        json_integer_value(epmax) <= json_integer_value(epmin)) {
        snprintf(err, ecap, "epmax must be greater than epmin");
        return LW_EINVAL;
    }
    const json_t *gt = json_object_get(attrs, "gt"), *lt = json_object_get(attrs, "lt"),
                 *st = json_object_get(attrs, "st");
    if (json_is_number(gt) && json_is_number(lt)) {
        double s = json_is_number(st) ? json_number_value(st) : 0;
        if (!(json_number_value(lt) + 2 * s < json_number_value(gt))) {
            snprintf(err, ecap, "lt + 2*st must be less than gt");
            return LW_EINVAL;
        }
    }
    return 0;
}

/* Validates and builds an observation (not linked, not established, id 0). */
static int obs_new(const char *endpoint, const json_t *paths, const json_t *attrs, bool composite,
                   struct obsv **out, char *err, size_t cap)
{
    struct lw_m2m_path p = LW_M2M_PATH_ROOT;
    const json_t *jp = json_is_array(paths) ? json_array_get(paths, 0) : paths;
    size_t i;
    if (composite) {
        if (!json_is_array(paths) || json_array_size(paths) < 1 || json_array_size(paths) > 64) {
            snprintf(err, cap, "a composite observation needs \"paths\" with 1..64 paths");
            return LW_EINVAL;
        }
        json_array_foreach(paths, i, jp)
        {
            struct lw_m2m_path x;
            if (!json_is_string(jp) ||
                lw_m2m_path_parse(json_string_value(jp), json_string_length(jp), &x) != 0) {
                snprintf(err, cap, "paths[%zu] is not an LwM2M path", i);
                return LW_EINVAL;
            }
        }
    } else if (json_is_array(paths) && json_array_size(paths) != 1) {
        snprintf(err, cap, "give exactly one path (or composite=true)");
        return LW_EINVAL;
    } else if (!json_is_string(jp) ||
               lw_m2m_path_parse(json_string_value(jp), json_string_length(jp), &p) != 0 ||
               p.len < 1) {
        snprintf(err, cap, "\"paths\" must hold an LwM2M path such as \"/3/0/13\"");
        return LW_EINVAL;
    }
    if (strlen(endpoint) >= sizeof(((struct obsv *)0)->ep))
        return LW_ENOENT;
    if (dev_count(endpoint) >= MAX_OBS_PER_DEV) {
        snprintf(err, cap, "at most %d observations per device", MAX_OBS_PER_DEV);
        return LW_ELIMIT;
    }
    struct obsv *o = calloc(1, sizeof(*o));
    if (!o)
        return LW_ENOMEM;
    int rc = observe_attr_query(attrs, o->query, sizeof(o->query), err, cap);
    if (rc) {
        free(o);
        return rc;
    }
    o->p = p;
    lw_m2m_path_format(&p, o->path, sizeof(o->path));
    o->attrs = attrs && json_is_object(attrs) ? json_deep_copy(attrs) : NULL;
    o->body = composite ? json_pack("{s:O}", "paths", paths) : NULL;
    o->composite = composite;
    o->created_ms = lw_wall_ms();
    snprintf(o->ep, sizeof(o->ep), "%s", endpoint);
    *out = o;
    return 0;
}

static void obs_free(struct obsv *o)
{
    json_decref(o->attrs);
    json_decref(o->body);
    free(o);
}

int observe_create(const char *endpoint, const json_t *paths, const json_t *attrs, bool composite,
                   json_t **out, char *err, size_t cap)
{
    struct obsv *o;
    int rc = obs_new(endpoint, paths, attrs, composite, &o, err, cap);
    if (rc)
        return rc;
    o->id = O.next_id++;
    if ((rc = establish(o)) != 0) {
        obs_free(o);
        if (rc == LW_ENOENT)
            snprintf(err, cap, "no device is registered as '%s'", endpoint);
        return rc;
    }
    o->next = O.all;
    O.all = o;
    dev_add(endpoint, 1);
    json_t *jp =
        o->body ? json_incref(json_object_get(o->body, "paths")) : json_pack("[s]", o->path);
    opstore_obs_put(o->id, o->ep, jp, o->composite, o->attrs, o->query, o->created_ms);
    json_decref(jp);
    *out = obs_json(o);
    return 0;
}

json_t *observe_list(const char *endpoint)
{
    json_t *a = json_array();
    if (dev_count(endpoint) == 0)
        return a;
    for (struct obsv *o = O.all; o; o = o->next)
        if (!strcmp(o->ep, endpoint))
            json_array_append_new(a, obs_json(o));
    return a;
}

int observe_delete(const char *endpoint, uint64_t id, bool active)
{
    struct obsv **pp = &O.all, *o;
    while ((o = *pp) && !(o->id == id && !strcmp(o->ep, endpoint)))
        pp = &o->next;
    if (!o)
        return LW_ENOENT;
    *pp = o->next;
    uint64_t opid;
    if (o->op && active && !strcmp(o->state, "active")) {
        struct ops_spec sp = {.kind = OPS_OBSERVE_CANCEL,
                              .endpoint = o->ep,
                              .path = o->p,
                              .format = OPS_FORMAT_DEFAULT,
                              .obs_id = o->id,
                              .obs_op = o->op,
                              .body = o->body,
                              .composite = o->body != NULL};
        if (ops_submit(&sp, &opid) != 0)
            ops_observe_forget(o->ep, o->op);
    } else if (o->op) {
        ops_observe_forget(o->ep, o->op);
    }
    dev_add(o->ep, -1);
    opstore_obs_del(o->id);
    json_decref(o->attrs);
    json_decref(o->body);
    free(o);
    arm_retry();
    return 0;
}

/* Arms the retry timer for the earliest pending retry. */
static void arm_retry(void)
{
    uint64_t first = 0;
    if (!O.started)
        return;
    for (struct obsv *o = O.all; o; o = o->next)
        if (o->retry_at && (!first || o->retry_at < first))
            first = o->retry_at;
    if (!first) {
        uv_timer_stop(&O.retry_timer);
        return;
    }
    uint64_t now = uv_now(O.loop);
    uv_timer_start(&O.retry_timer, on_retry, first > now ? first - now : 0, 0);
}

static void on_retry(uv_timer_t *t)
{
    (void)t;
    uint64_t now = uv_now(O.loop);
    for (struct obsv *o = O.all; o; o = o->next) {
        if (!o->retry_at || o->retry_at > now)
            continue;
        o->retry_at = 0;
        int rc = establish(o);
        if (rc) {
            snprintf(o->state, sizeof(o->state), "%s", rc == LW_ENOENT ? "pending" : "failed");
            snprintf(o->error, sizeof(o->error), "cannot establish again: %s", lw_strerror(rc));
        }
    }
    arm_retry();
}

void observe_op_done(uint64_t obs_id, uint64_t op_id, int state, uint8_t code, const char *why)
{
    struct obsv *o = find_obs(NULL, obs_id);
    if (!o || o->op != op_id)
        return;
    bool ok = state == OPS_SUCCEEDED;
    snprintf(o->state, sizeof(o->state), "%s", ok ? "active" : "failed");
    snprintf(o->error, sizeof(o->error), "%s", ok || !why ? "" : why);
    if (ok) {
        o->established++;
        o->retries = 0;
        return;
    }
    char reason[sizeof(o->error)];
    if (code)
        snprintf(reason, sizeof(reason), "the device answered %u.%02u%s%.120s",
                 LW_COAP_CODE_CLASS(code), LW_COAP_CODE_DETAIL(code), why && *why ? ": " : "",
                 why && *why ? why : "");
    else
        snprintf(reason, sizeof(reason), "%s", why && *why ? why : "failed");
    /* Transient (timeout, 5.xx): try again later, a bounded number of times. 4.04 / 4.05 and
     * other refusals are final: the reason stays visible. */
    bool transient = state == OPS_TIMEOUT || LW_COAP_CODE_CLASS(code) == 5;
    if (transient && o->retries < RETRY_MAX) {
        uint64_t delay = (uint64_t)RETRY_FIRST_MS << o->retries;
        o->retries++;
        o->retry_at = uv_now(O.loop) + LW_MIN(delay, (uint64_t)RETRY_MAX_MS);
        snprintf(o->state, sizeof(o->state), "retrying");
        snprintf(o->error, sizeof(o->error), "%.120s (attempt %u of %d)", reason, o->retries,
                 RETRY_MAX + 1);
        arm_retry();
        return;
    }
    snprintf(o->error, sizeof(o->error), "%s", reason);
}

void observe_ended(uint64_t obs_id, uint64_t op_id)
{
    (void)op_id;
    struct obsv *o = find_obs(NULL, obs_id);
    if (o)
        snprintf(o->state, sizeof(o->state), "ended");
}

/* ---- values cache ---------------------------------------------------------------------------
 * Compact on purpose: it holds a few values of every device that sent, notified or was read, so
 * at a million devices each byte per value counts. A jansson tree per value (object, hashtable,
 * a pair and a json_t + string per key) cost ~1.2 KB per value. Here a device is one allocation
 * (found through a hash map keyed by endpoint) holding its endpoint and then its values in
 * insertion order, each packed as
 *   time ms (8) | source (1) | path length (2) | text length (2) | path | text
 * where text is the record as compact JSON without "path" (reals with jansson's round-trip
 * precision), so the API's objects come back with the same keys in the same order. */

enum csrc { SRC_NOTIFY, SRC_SEND, SRC_READ };
static const char *const src_names[] = {"notify", "send", "read"};

#define CV_HDR 13

struct cdev {
    uint32_t len; /* bytes of packed values after the endpoint */
    uint16_t n;   /* values */
    uint8_t eplen;
    char data[]; /* endpoint, NUL, packed values */
};

struct cval {
    int64_t ms;
    uint8_t src;
    uint16_t plen, tlen;
    const char *path, *text;
};

static struct lw_hmap cache_map;
static uint8_t cache_key[16];

static uint64_t ep_hash(const char *ep)
{
    return lw_siphash(cache_key, ep, strlen(ep));
}

static bool cdev_eq(const void *item, const void *key)
{
    return !strcmp(((const struct cdev *)item)->data, (const char *)key);
}

static const uint8_t *cdev_vals(const struct cdev *d)
{
    return (const uint8_t *)d->data + d->eplen + 1;
}

/* Decodes the value at *off and advances it. */
static void cval_get(const uint8_t *p, size_t *off, struct cval *c)
{
    p += *off;
    memcpy(&c->ms, p, 8);
    c->src = p[8];
    memcpy(&c->plen, p + 9, 2);
    memcpy(&c->tlen, p + 11, 2);
    c->path = (const char *)p + CV_HDR;
    c->text = c->path + c->plen;
    *off += CV_HDR + (size_t)c->plen + c->tlen;
}

static void cval_put(struct lw_buf *b, const struct cval *c)
{
    uint8_t h[CV_HDR];
    memcpy(h, &c->ms, 8);
    h[8] = c->src;
    memcpy(h + 9, &c->plen, 2);
    memcpy(h + 11, &c->tlen, 2);
    lw_buf_put(b, h, sizeof(h));
    lw_buf_put(b, c->path, c->plen);
    lw_buf_put(b, c->text, c->tlen);
}

static void cache_drop(const char *ep)
{
    free(lw_hmap_del(&cache_map, ep_hash(ep), ep, cdev_eq));
}

static void cache_clear(void)
{
    size_t pos = 0;
    struct cdev *d;
    while ((d = lw_hmap_next(&cache_map, &pos)))
        free(d);
    lw_hmap_deinit(&cache_map);
    memset(&cache_map, 0, sizeof(cache_map));
}

/* The record v as compact JSON without its "path" (malloc'd, or NULL). */
static char *record_text(const json_t *v)
{
    json_t *o = json_object();
    const char *k;
    json_t *x;
    char *t = NULL;
    if (!o)
        return NULL;
    json_object_foreach((json_t *)v, k, x)
    {
        if (strcmp(k, "path") && json_object_set(o, k, x) != 0)
            goto out;
    }
    t = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17));
out:
    json_decref(o);
    return t;
}

static void cache_put(const char *ep, const json_t *values, enum csrc src, int64_t ms)
{
    size_t nv = json_array_size(values), nn = 0, eplen = strlen(ep);
    struct cval *nc = NULL;
    char **texts = NULL;
    bool *used = NULL;
    struct lw_buf b;
    lw_buf_init(&b, 0);
    if (!json_is_array(values) || nv == 0 || eplen > UINT8_MAX)
        goto out;
    nc = calloc(nv, sizeof(*nc));
    texts = calloc(nv, sizeof(*texts));
    used = calloc(nv, sizeof(*used));
    if (!nc || !texts || !used)
        goto out;
    /* The new values, a path given twice keeping its last value. */
    for (size_t i = 0; i < nv; i++) {
        const json_t *v = json_array_get(values, i), *jp = json_object_get(v, "path");
        const char *path = json_string_value(jp);
        size_t plen = json_string_length(jp);
        if (!path || plen > UINT16_MAX || strlen(path) != plen || !json_object_get(v, "value"))
            continue;
        char *t = record_text(v);
        if (!t || strlen(t) > UINT16_MAX) {
            free(t);
            continue;
        }
        size_t k = 0;
        while (k < nn && (nc[k].plen != plen || memcmp(nc[k].path, path, plen)))
            k++;
        if (k < nn)
            free(texts[k]);
        else
            nn++;
        texts[k] = t;
        nc[k] = (struct cval){.ms = ms,
                              .src = (uint8_t)src,
                              .plen = (uint16_t)plen,
                              .tlen = (uint16_t)strlen(t),
                              .path = path,
                              .text = t};
    }
    if (nn == 0)
        goto out;
    uint64_t h = ep_hash(ep);
    struct cdev *d = lw_hmap_get(&cache_map, h, ep, cdev_eq);
    size_t count = 0;
    /* Known paths keep their place with the new value; new paths are appended. */
    if (d) {
        size_t off = 0;
        for (uint16_t i = 0; i < d->n; i++) {
            struct cval c;
            cval_get(cdev_vals(d), &off, &c);
            size_t k = 0;
            while (k < nn && (nc[k].plen != c.plen || memcmp(nc[k].path, c.path, c.plen)))
                k++;
            if (k < nn)
                used[k] = true;
            cval_put(&b, k < nn ? &nc[k] : &c);
            count++;
        }
    }
    for (size_t k = 0; k < nn; k++)
        if (!used[k] && count < MAX_CACHE_PER_DEV) {
            cval_put(&b, &nc[k]);
            count++;
        }
    if (lw_buf_status(&b) || b.len > UINT32_MAX)
        goto out;
    struct cdev *nd = malloc(sizeof(*nd) + eplen + 1 + b.len);
    if (!nd)
        goto out;
    nd->len = (uint32_t)b.len;
    nd->n = (uint16_t)count;
    nd->eplen = (uint8_t)eplen;
    memcpy(nd->data, ep, eplen + 1);
    memcpy(nd->data + eplen + 1, b.data, b.len);
    /* With d taken out first the table never has to grow, so only a new endpoint can fail. */
    if (d)
        lw_hmap_del_item(&cache_map, h, d);
    if (lw_hmap_put(&cache_map, h, nd) != 0)
        free(nd);
    free(d);
out:
    for (size_t k = 0; texts && k < nn; k++)
        free(texts[k]);
    free(texts);
    free(nc);
    free(used);
    lw_buf_deinit(&b);
}

static json_t *cval_json(const struct cval *c)
{
    char ts[40];
    time_t t = (time_t)(c->ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof(ts) - n, ".%03dZ", (int)(c->ms % 1000));
    json_t *rest = json_loadb(c->text, c->tlen, 0, NULL);
    json_t *e = json_object();
    if (!rest || !e) {
        json_decref(rest);
        json_decref(e);
        return NULL;
    }
    json_object_set_new(e, "path", json_stringn(c->path, c->plen));
    json_object_update(e, rest);
    json_decref(rest);
    json_object_set_new(e, "timestamp", json_string(ts));
    json_object_set_new(e, "source", json_string(src_names[c->src]));
    return e;
}

json_t *observe_values(const char *endpoint)
{
    json_t *a = json_array();
    const struct cdev *d =
        endpoint ? lw_hmap_get(&cache_map, ep_hash(endpoint), endpoint, cdev_eq) : NULL;
    size_t off = 0;
    for (uint16_t i = 0; d && i < d->n; i++) {
        struct cval c;
        cval_get(cdev_vals(d), &off, &c);
        json_array_append_new(a, cval_json(&c));
    }
    return json_pack("{s:o}", "values", a);
}

static void on_event(void *ctx, const struct lw_event *ev)
{
    (void)ctx;
    switch (ev->type) {
    case LW_EV_UPDATED:
        /* Observations restored at start, or whose retries ran out: establish them now. */
        if (dev_count(ev->endpoint) > 0)
            for (struct obsv *o = O.all; o; o = o->next)
                if (!strcmp(o->ep, ev->endpoint) && !o->retry_at &&
                    (!o->op || (!strcmp(o->state, "failed") && o->retries >= RETRY_MAX))) {
                    o->retries = 0;
                    if (o->op)
                        ops_observe_forget(o->ep, o->op);
                    if (establish(o) != 0)
                        snprintf(o->state, sizeof(o->state), "pending");
                }
        break;
    case LW_EV_REGISTERED:
        ops_registered(ev->endpoint);
        if (dev_count(ev->endpoint) > 0)
            for (struct obsv *o = O.all; o; o = o->next)
                if (!strcmp(o->ep, ev->endpoint)) {
                    /* The device forgot its observations: establish them again (desired state). */
                    if (o->op)
                        ops_observe_forget(o->ep, o->op);
                    o->retries = 0;
                    o->retry_at = 0;
                    int rc = establish(o);
                    if (rc)
                        log_warn(M2M, "cannot re-establish observation %llu of %s: %s",
                                 (unsigned long long)o->id, o->ep, lw_strerror(rc));
                }
        break;
    case LW_EV_DEREGISTERED:
    case LW_EV_EXPIRED:
        cache_drop(ev->endpoint);
        for (struct obsv *o = O.all; dev_count(ev->endpoint) > 0 && o; o = o->next)
            if (!strcmp(o->ep, ev->endpoint))
                snprintf(o->state, sizeof(o->state), "pending");
        break;
    case LW_EV_NOTIFICATION: {
        cache_put(ev->endpoint, json_object_get(ev->data, "values"), SRC_NOTIFY, ev->time_ms);
        if (json_is_true(json_object_get(ev->data, "final"))) {
            uint64_t id;
            const char *s = json_string_value(json_object_get(ev->data, "observation"));
            if (s && lw_parse_u64(s, strlen(s), &id) == 0)
                observe_ended(id, 0);
        }
        break;
    }
    case LW_EV_SEND:
        cache_put(ev->endpoint, json_object_get(ev->data, "values"), SRC_SEND, ev->time_ms);
        break;
    case LW_EV_OPERATION: {
        const char *kind = json_string_value(json_object_get(ev->data, "kind"));
        const char *state = json_string_value(json_object_get(ev->data, "state"));
        if (kind && state && !strcmp(state, "succeeded") &&
            (!strcmp(kind, "read") || !strcmp(kind, "observe") || !strcmp(kind, "read-composite")))
            cache_put(ev->endpoint, json_object_get(json_object_get(ev->data, "result"), "values"),
                      SRC_READ, ev->time_ms);
        break;
    }
    default: break;
    }
}

void observe_seed_ids(uint64_t first)
{
    if (first > O.next_id)
        O.next_id = first;
}

void observe_restore_row(void *ctx, const json_t *row)
{
    (void)ctx;
    const char *ep = json_string_value(json_object_get(row, "endpoint"));
    const json_t *paths = json_object_get(row, "paths");
    const json_t *attrs = json_object_get(row, "attrs");
    bool composite = json_is_true(json_object_get(row, "composite"));
    uint64_t id = (uint64_t)json_integer_value(json_object_get(row, "id"));
    char err[160];
    struct obsv *o = NULL;
    int rc = LW_EINVAL;
    if (ep && id && !find_obs(NULL, id))
        rc = obs_new(ep, paths, json_is_object(attrs) ? attrs : NULL, composite, &o, err,
                     sizeof(err));
    if (rc) {
        log_warn(M2M, "restore: observation %llu of %s skipped: %s", (unsigned long long)id,
                 ep ? ep : "?", rc == LW_EINVAL ? err : lw_strerror(rc));
        return;
    }
    o->id = id;
    o->created_ms = (int64_t)json_integer_value(json_object_get(row, "created_ms"));
    snprintf(o->state, sizeof(o->state), "pending");
    o->next = O.all;
    O.all = o;
    dev_add(ep, 1);
    if (id >= O.next_id)
        O.next_id = id + 1;
}

int observe_start(uv_loop_t *loop)
{
    memset(&O, 0, sizeof(O));
    O.loop = loop;
    uv_timer_init(loop, &O.retry_timer);
    O.devs = json_object();
    if (!O.devs || lw_random(cache_key, sizeof(cache_key)) != 0)
        return LW_ENOMEM;
    O.next_id = 1;
    O.sink.on_event = on_event;
    lw_events_subscribe(&O.sink);
    O.started = true;
    return 0;
}

void observe_stop(void)
{
    if (!O.started)
        return;
    lw_events_unsubscribe(&O.sink);
    uv_timer_stop(&O.retry_timer);
    uv_close((uv_handle_t *)&O.retry_timer, NULL);
    while (O.all) {
        struct obsv *o = O.all;
        O.all = o->next;
        json_decref(o->attrs);
        json_decref(o->body);
        free(o);
    }
    cache_clear();
    json_decref(O.devs);
    O.started = false;
}
