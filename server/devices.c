/* Northbound device queries (devices.h): the directory names the owning shard; the request
 * travels to it by mailbox and the answer comes back through the control mailbox. Listing
 * scatters to every shard and merges their sorted pages on the control thread. Messages carry
 * ids (cookie, gather id, registration id + generation), never pointers into another thread's
 * state; the JSON results are handed over whole. */
#include "devices.h"

#include "base/err.h"
#include "base/util.h"
#include "control.h"
#include "dir.h"
#include "registry.h"
#include "shard.h"

#include <stdlib.h>
#include <string.h>

enum dev_op { OP_GET, OP_DEREG, OP_LIST };

struct dev_msg {
    struct xmsg m;
    enum dev_op op;
    lw_dev_done_fn done;
    uint64_t cookie;
    uint64_t id;
    uint32_t gen;
    uint64_t gather; /* OP_LIST: gather id */
    int err;
    bool more;
    json_t *result;
    /* OP_LIST request */
    struct lw_dev_filter f;
    size_t limit;
    char *cursor, *prefix, *version, *binding; /* owned copies */
};

/* Pending list requests, control thread only. */
struct gather {
    struct gather *next;
    uint64_t id;
    lw_dev_done_fn done;
    uint64_t cookie;
    unsigned waiting;
    size_t limit;
    bool more;
    int err;
    json_t *all;
};
static struct gather *gathers;
static uint64_t next_gather = 1;

static void msg_free(struct dev_msg *d)
{
    json_decref(d->result);
    free(d->cursor);
    free(d->prefix);
    free(d->version);
    free(d->binding);
    free(d);
}

static int cmp_ep(const void *a, const void *b)
{
    json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    return strcmp(json_string_value(json_object_get(x, "endpoint")),
                  json_string_value(json_object_get(y, "endpoint")));
}

static void finish_gather(struct gather *g)
{
    struct gather **pp = &gathers;
    while (*pp != g)
        pp = &(*pp)->next;
    *pp = g->next;
    size_t n = json_array_size(g->all);
    json_t **v = n ? malloc(n * sizeof(*v)) : NULL;
    json_t *devices = json_array();
    json_t *res = NULL;
    for (size_t i = 0; v && i < n; i++)
        v[i] = json_array_get(g->all, i);
    if (v)
        qsort(v, n, sizeof(*v), cmp_ep);
    for (size_t i = 0; v && i < n && i < g->limit; i++)
        json_array_append(devices, v[i]);
    bool more = g->more || n > g->limit;
    json_t *next = json_null();
    if (more && json_array_size(devices) > 0)
        next = json_incref(
            json_object_get(json_array_get(devices, json_array_size(devices) - 1), "endpoint"));
    res = json_pack("{s:o,s:o}", "devices", devices, "next_cursor", next);
    g->done(g->cookie, g->err, g->err ? NULL : res);
    json_decref(res);
    json_decref(g->all);
    free(v);
    free(g);
}

/* Control thread: a shard's answer. */
static void run_reply(struct shard *s, struct xmsg *m)
{
    struct dev_msg *d = lw_container_of(m, struct dev_msg, m);
    (void)s;
    if (d->op != OP_LIST) {
        d->done(d->cookie, d->err, d->err ? NULL : d->result);
        msg_free(d);
        return;
    }
    struct gather *g = gathers;
    while (g && g->id != d->gather)
        g = g->next;
    if (g) {
        if (d->err && !g->err)
            g->err = d->err;
        if (d->result)
            json_array_extend(g->all, d->result);
        g->more |= d->more;
        if (--g->waiting == 0)
            finish_gather(g);
    }
    msg_free(d);
}

static void reply(struct dev_msg *d)
{
    d->m.run = run_reply;
    if (!lw_control_post(&d->m))
        msg_free(d); /* the control loop is gone: nobody waits any more */
}

/* Shard thread. */
static void run_query(struct shard *s, struct xmsg *m)
{
    struct dev_msg *d = lw_container_of(m, struct dev_msg, m);
    struct regsrv *r = shard_regsrv(s);
    switch (d->op) {
    case OP_GET: d->err = regsrv_get_json(r, d->id, d->gen, &d->result); break;
    case OP_DEREG: d->err = regsrv_drop(r, d->id, d->gen, "api", &d->result); break;
    case OP_LIST:
        d->result = regsrv_list(r, &d->f, d->cursor, d->limit, &d->more);
        d->err = d->result ? 0 : LW_ENOMEM;
        break;
    }
    reply(d);
}

static int one(enum dev_op op, const char *endpoint, lw_dev_done_fn done, uint64_t cookie)
{
    struct dir_ref ref;
    if (!endpoint || !done)
        return LW_EINVAL;
    struct shard *s;
    struct dev_msg *d = calloc(1, sizeof(*d));
    if (!d)
        return LW_ENOMEM;
    d->op = op;
    d->done = done;
    d->cookie = cookie;
    d->m.run = run_query;
    if (dir_lookup(endpoint, strlen(endpoint), &ref) != 0 || !(s = shard_get(ref.shard))) {
        /* Not registered: answer through the mailbox too, so done never runs re-entrantly. */
        d->err = LW_ENOENT;
        reply(d);
        return 0;
    }
    d->id = ref.id;
    d->gen = ref.gen;
    if (!shard_post(s, &d->m)) {
        msg_free(d);
        return LW_ECANCELED;
    }
    return 0;
}

int lw_devices_get(const char *endpoint, lw_dev_done_fn done, uint64_t cookie)
{
    return one(OP_GET, endpoint, done, cookie);
}

int lw_devices_deregister(const char *endpoint, lw_dev_done_fn done, uint64_t cookie)
{
    return one(OP_DEREG, endpoint, done, cookie);
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

int lw_devices_list(const struct lw_dev_filter *f, const char *cursor, size_t limit,
                    lw_dev_done_fn done, uint64_t cookie)
{
    unsigned n = shards_count();
    if (!done || limit < 1 || limit > 1000)
        return LW_EINVAL;
    if (n == 0)
        return LW_ECANCELED;
    struct gather *g = calloc(1, sizeof(*g));
    if (!g || !(g->all = json_array())) {
        free(g);
        return LW_ENOMEM;
    }
    g->id = next_gather++;
    g->done = done;
    g->cookie = cookie;
    g->limit = limit;
    g->waiting = n;
    g->next = gathers;
    gathers = g;
    for (unsigned i = 0; i < n; i++) {
        struct dev_msg *d = calloc(1, sizeof(*d));
        bool ok = d != NULL;
        if (d) {
            d->op = OP_LIST;
            d->m.run = run_query;
            d->gather = g->id;
            d->limit = limit;
            d->f.queue_mode = f ? f->queue_mode : -1;
            d->cursor = dup_or_null(cursor);
            if (f) {
                d->f.endpoint_prefix = d->prefix = dup_or_null(f->endpoint_prefix);
                d->f.lwm2m_version = d->version = dup_or_null(f->lwm2m_version);
                d->f.binding = d->binding = dup_or_null(f->binding);
            }
            ok = (!cursor || d->cursor) &&
                 (!f || ((!f->endpoint_prefix || d->prefix) && (!f->lwm2m_version || d->version) &&
                         (!f->binding || d->binding)));
            ok = ok && shard_post(shard_get(i), &d->m);
        }
        if (!ok) {
            /* This shard will not answer: count it as answered with an error. */
            if (d)
                msg_free(d);
            if (!g->err)
                g->err = LW_ECANCELED;
            if (--g->waiting == 0) {
                finish_gather(g);
                return 0;
            }
        }
    }
    return 0;
}
