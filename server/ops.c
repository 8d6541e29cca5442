/* The operations engine (ops.h): operation resources on the control thread, request encoding
 * and response decoding on the shard that owns the device. Messages between them carry ids
 * (operation id, registration id + generation), never pointers into the other thread's state. */
#include "ops.h"

#include "base/clock.h"
#include "base/err.h"
#include "base/hash.h"
#include "base/list.h"
#include "base/timer.h"
#include "base/util.h"
#include "control.h"
#include "dir.h"
#include "events.h"
#include "log.h"
#include "metrics.h"
#include "observe.h"
#include "lwm2m/fmt.h"
#include "lwm2m/link.h"
#include "lwm2m/registry.h"
#include "registry.h"
#include "shard.h"
#include "store/opstore.h"
#include "values.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[OPS__COUNT] = {
    "read",   "discover",         "write",   "write-partial",  "execute",        "create",
    "delete", "write-attributes", "observe", "observe-cancel", "read-composite", "write-composite",
};
static const char *const state_names[] = {"queued", "sent", "succeeded", "failed", "timeout"};

const char *ops_kind_name(enum ops_kind k)
{
    return (unsigned)k < OPS__COUNT ? kind_names[k] : "unknown";
}

const char *ops_state_name(enum ops_state s)
{
    return (unsigned)s < LW_ARRAY_SIZE(state_names) ? state_names[s] : "unknown";
}

static uint8_t qkey[16]; /* set by ops_start before the shards run */
/* Queue mode settings, set by ops_start before the shards run (read-only afterwards). */
static uint32_t ops_awake_ms = 93000;
static unsigned ops_max_held = 16;

/* ?wait=0 with a database: at most this long for the shard to send or durably hold a request. */
#define OPS_ACK_WAIT_MS 3000

/* Requests waiting on one device's CoAP endpoint (NSTART = 1) before new ones fail. */
#define OPS_MAX_PENDING 64

static uint64_t hash_id(uint64_t id)
{
    return id * 0x9e3779b97f4a7c15ull ^ (id >> 29);
}

/* ------------------------------------------------------------------------------------------------
 * Messages
 */
enum { MSG_REQ, MSG_CANCEL, MSG_FORGET };

/* A request that reached a shard which no longer holds its registration follows the directory at
 * most this many times (the registration moved, or is in transit to the shard it reached). */
#define OPS_MAX_HOPS 64

/* control -> shard */
struct req_msg {
    struct xmsg m;
    int what;
    uint64_t op_id, reg_id;
    uint32_t gen;
    uint8_t kind;
    uint16_t cf;
    struct lw_m2m_path path;
    struct lw_list link; /* in a struct qdev's held list */
    json_t *body;        /* owned reference */
    char *args;          /* owned: Execute arguments or the Write-Attributes query */
    uint64_t obs_id, obs_op;
    bool composite; /* Observe / cancel of an Observe-Composite */
    uint8_t hops;   /* times it followed its registration to another shard */
    char ep[DIR_MAX_NAME + 1];
};

/* shard -> control */
struct res_msg {
    struct xmsg m;
    uint64_t op_id;
    uint8_t state;
    uint8_t code;
    uint16_t cf;
    json_t *result; /* owned */
    char error[160];
};

static void run_shard(struct shard *s, struct xmsg *m);

static void req_free(struct req_msg *q)
{
    json_decref(q->body);
    free(q->args);
    free(q);
}

/* ------------------------------------------------------------------------------------------------
 * Control thread: operation resources
 */
struct waiter {
    struct lw_timer t;
    struct waiter *next;
    struct op *op;
    ops_wait_fn fn;
    uint64_t cookie;
    bool ack_only; /* ?wait=0 with a database: only until the shard accepted it (sent, or queued
                      and durable) */
};

struct op {
    struct lw_list link; /* history, oldest first */
    struct lw_timer tmo;
    uint64_t id, reg_id;
    uint32_t gen;
    unsigned shard;
    uint8_t kind, state, code;
    uint16_t cf;
    char ep[DIR_MAX_NAME + 1];
    char path[32];
    uint64_t obs_id;
    json_t *result;
    char error[160];
    int64_t created_ms, sent_ms, done_ms;
    uint32_t timeout_ms;
    struct waiter *waiters;
    json_t *req;    /* with a database: the request, to persist it when it is held (owned) */
    bool persisted; /* a row in table operations names it (deleted once it leaves the queue) */
    bool acked;     /* the shard sent it, or held it and the row committed */
    bool durable;   /* its row committed (shown while it is held: "durable" in the JSON) */
};

/* Requests restored from the database or waiting for their device to register again. */
struct orphan {
    struct lw_list link;
    struct req_msg *q;
};

static struct {
    bool started;
    struct lw_metrics_writer metrics;
    uint64_t done[OPS__COUNT][3]; /* finished: succeeded, failed, timeout */
    uint64_t created;
    uv_loop_t *loop;
    uv_timer_t timer;
    struct lw_wheel wheel;
    struct lw_hmap map;
    struct lw_list fifo;
    size_t n;
    uint64_t next_id;
    struct ops_cfg cfg;
    struct lw_list orphans; /* struct orphan: restored requests of unregistered devices */
    struct xmsg restore_msg;
    uint64_t restored;
    uint64_t unknown; /* restored sent and not repeatable: failed at start */
} C;

static bool op_eq(const void *item, const void *key)
{
    return ((const struct op *)item)->id == *(const uint64_t *)key;
}

static struct op *op_find(uint64_t id)
{
    return C.started ? lw_hmap_get(&C.map, hash_id(id), &id, op_eq) : NULL;
}

static void kick(void);

static void on_uv_timer(uv_timer_t *t)
{
    (void)t;
    lw_wheel_advance(&C.wheel, uv_now(C.loop));
    kick();
}

static void kick(void)
{
    if (!C.started)
        return;
    uint64_t d = lw_wheel_next_deadline(&C.wheel);
    if (d == LW_WHEEL_NEVER) {
        uv_timer_stop(&C.timer);
        return;
    }
    uint64_t now = uv_now(C.loop);
    uv_timer_start(&C.timer, on_uv_timer, d > now ? d - now : 0, 0);
}

static json_t *time_or_null(int64_t ms)
{
    if (!ms)
        return json_null();
    char b[32], out[40];
    values_rfc3339(ms / 1000, b);
    /* milliseconds: "YYYY-MM-DDTHH:MM:SS.mmmZ" */
    size_t n = strlen(b);
    if (n > 0)
        b[n - 1] = '\0';
    snprintf(out, sizeof(out), "%s.%03dZ", b, (int)(ms % 1000));
    return json_string(out);
}

static json_t *op_to_json(const struct op *o)
{
    char id[24], code[8];
    snprintf(id, sizeof(id), "%llu", (unsigned long long)o->id);
    json_t *j = json_object();
    json_object_set_new(j, "id", json_string(id));
    json_object_set_new(j, "endpoint", json_string(o->ep));
    json_object_set_new(j, "kind", json_string(ops_kind_name(o->kind)));
    json_object_set_new(j, "path", json_string(o->path));
    json_object_set_new(j, "state", json_string(ops_state_name(o->state)));
    if (o->code) {
        snprintf(code, sizeof(code), "%u.%02u", LW_COAP_CODE_CLASS(o->code),
                 LW_COAP_CODE_DETAIL(o->code));
        json_object_set_new(j, "coap_code", json_string(code));
    } else {
        json_object_set_new(j, "coap_code", json_null());
    }
    const char *fmt = o->cf != OPS_FORMAT_DEFAULT ? lw_m2m_cf_name(o->cf) : NULL;
    json_object_set_new(j, "format", fmt ? json_string(fmt) : json_null());
    json_object_set_new(j, "result", o->result ? json_incref(o->result) : json_null());
    json_object_set_new(j, "error", o->error[0] ? json_string(o->error) : json_null());
    json_object_set_new(j, "created_at", time_or_null(o->created_ms));
    json_object_set_new(j, "sent_at", time_or_null(o->sent_ms));
    json_object_set_new(j, "completed_at", time_or_null(o->done_ms));
    json_object_set_new(j, "duration_ms",
                        o->done_ms ? json_integer(o->done_ms - o->created_ms) : json_null());
    if (o->state == OPS_QUEUED && o->persisted) /* held for a sleeping device, with a database */
        json_object_set_new(j, "durable", json_boolean(o->durable));
    return j;
}

static bool op_final(const struct op *o)
{
    return o->state >= OPS_SUCCEEDED;
}

static void op_free(struct op *o)
{
    lw_wheel_cancel(&C.wheel, &o->tmo);
    while (o->waiters) {
        struct waiter *w = o->waiters;
        o->waiters = w->next;
        lw_wheel_cancel(&C.wheel, &w->t);
        free(w);
    }
    json_decref(o->result);
    json_decref(o->req);
    free(o);
}

/* Drops the oldest finished operations beyond the history size. */
static void evict(void)
{
    struct lw_list *it = C.fifo.next;
    while (C.n > C.cfg.history && it != &C.fifo) {
        struct op *o = lw_container_of(it, struct op, link);
        it = it->next;
        if (!op_final(o))
            continue;
        lw_list_remove(&o->link);
        lw_hmap_del_item(&C.map, hash_id(o->id), o);
        C.n--;
        op_free(o);
    }
}

static void wake(struct op *o, bool final)
{
    json_t *j = NULL;
    while (o->waiters) {
        struct waiter *w = o->waiters;
        o->waiters = w->next;
        lw_wheel_cancel(&C.wheel, &w->t);
        if (!j)
            j = op_to_json(o);
        w->fn(w->cookie, j, final);
        free(w);
    }
    json_decref(j);
}

/* Answers the ?wait=0 waiters: the shard accepted the operation. */
static void wake_acks(struct op *o)
{
    json_t *j = NULL;
    struct waiter **pp = &o->waiters;
    o->acked = true;
    while (*pp) {
        struct waiter *w = *pp;
        if (!w->ack_only) {
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        lw_wheel_cancel(&C.wheel, &w->t);
        if (!j)
            j = op_to_json(o);
        w->fn(w->cookie, j, false);
        free(w);
    }
    json_decref(j);
}

/* The request left the queue: its row goes. */
static void unpersist(struct op *o)
{
    if (o->persisted) {
        o->persisted = false;
        opstore_op_del(o->id);
    }
    json_decref(o->req);
    o->req = NULL;
}

static void finish(struct op *o, uint8_t state, uint8_t code, json_t *result, const char *error)
{
    if (op_final(o)) {
        json_decref(result);
        return;
    }
    o->state = state;
    o->code = code;
    json_decref(o->result);
    o->result = result;
    snprintf(o->error, sizeof(o->error), "%s", error ? error : "");
    o->done_ms = lw_wall_ms();
    C.done[o->kind][state - OPS_SUCCEEDED]++;
    lw_wheel_cancel(&C.wheel, &o->tmo);
    unpersist(o);
    struct lw_event *ev = lw_event_new(LW_EV_OPERATION, o->ep);
    if (ev) {
        json_decref(ev->data);
        ev->data = op_to_json(o);
        lw_events_post(ev);
    }
    log_debug(M2M, "operation %llu %s %s %s: %s", (unsigned long long)o->id, ops_kind_name(o->kind),
              o->ep, o->path, ops_state_name(o->state));
    wake(o, true);
    if (o->kind == OPS_OBSERVE)
        observe_op_done(o->obs_id, o->id, o->state, o->code, o->error);
    evict();
    kick();
}

/* Every shard: the request may have followed its registration to another shard. */
static void post_cancel(struct op *o)
{
    for (unsigned i = 0; i < shards_count(); i++) {
        struct req_msg *q = calloc(1, sizeof(*q));
        if (!q)
            return;
        q->what = MSG_CANCEL;
        q->op_id = o->id;
        q->reg_id = o->reg_id;
        q->gen = o->gen;
        q->m.run = run_shard;
        if (!shard_post(shard_get(i), &q->m))
            req_free(q);
    }
}

static void on_op_timeout(struct lw_timer *t)
{
    struct op *o = lw_container_of(t, struct op, tmo);
    post_cancel(o);
    finish(o, OPS_TIMEOUT, 0, NULL, "the device did not answer in time");
}

static void on_wait_timeout(struct lw_timer *t)
{
    struct waiter *w = lw_container_of(t, struct waiter, t);
    struct op *o = w->op;
    struct waiter **pp = &o->waiters;
    while (*pp && *pp != w)
        pp = &(*pp)->next;
    if (*pp)
        *pp = w->next;
    json_t *j = op_to_json(o);
    w->fn(w->cookie, j, false);
    json_decref(j);
    free(w);
}

/* The row of a held operation committed (ok) or could not be written: the API answers now. */
static void on_durable(uint64_t id, bool ok)
{
    struct op *o = op_find(id);
    if (!ok)
        log_warn_rl(M2M, "operation %llu is held for its device but not durable",
                    (unsigned long long)id);
    if (o && ok)
        o->durable = true;
    if (!o || op_final(o) || o->acked)
        return;
    o->acked = true;
    if (o->state == OPS_QUEUED)
        wake(o, false);
}

/* Control thread: a shard's answer. */
static void run_result(struct shard *s, struct xmsg *m)
{
    struct res_msg *rm = lw_container_of(m, struct res_msg, m);
    (void)s;
    struct op *o = op_find(rm->op_id);
    if (!o) {
        json_decref(rm->result);
    } else if (rm->state == OPS_SENT || rm->state == OPS_QUEUED) {
        if (!op_final(o)) {
            uint64_t now = uv_now(C.loop);
            o->state = rm->state;
            if (rm->state == OPS_SENT && rm->cf != OPS_FORMAT_DEFAULT)
                o->cf = rm->cf; /* the format actually used */
            if (rm->state == OPS_SENT && !o->sent_ms)
                o->sent_ms = lw_wall_ms();
            if (rm->state == OPS_SENT) {
                /* A held operation's row stays until it finishes, marked sent: after a crash the
                 * restart must know it may have reached the device (on_op_row). */
                if (o->persisted)
                    opstore_op_sent(o->id);
                json_decref(o->req);
                o->req = NULL;
                wake_acks(o);
            }
            if (rm->state == OPS_SENT && !lw_timer_armed(&o->tmo)) {
                /* held for a sleeping device until now: the timeout runs from sending */
                lw_wheel_advance(&C.wheel, now);
                lw_wheel_arm(&C.wheel, &o->tmo, now + o->timeout_ms);
                kick();
            }
            if (rm->state == OPS_QUEUED) {
                lw_wheel_cancel(&C.wheel, &o->tmo);
                if (o->req && !o->persisted) {
                    /* held for a sleeping device: durable before the API acknowledges it */
                    o->persisted = true;
                    opstore_op_put(o->id, o->ep, ops_kind_name(o->kind), o->path,
                                   o->cf == OPS_FORMAT_DEFAULT ? -1 : o->cf, o->req, o->created_ms,
                                   on_durable, o->id);
                } else if (!o->req || o->acked) {
                    o->acked = true;
                    wake(o, false); /* a sleeping device: ?wait does not block */
                }
            }
        }
        json_decref(rm->result);
    } else {
        if (rm->cf != OPS_FORMAT_DEFAULT)
            o->cf = rm->cf;
        finish(o, rm->state, rm->code, rm->result, rm->error[0] ? rm->error : NULL);
    }
    free(rm);
}

static void write_metrics(void *ctx, struct lw_buf *out);
static int restore(const char *url);

int ops_start(uv_loop_t *loop, const struct ops_cfg *cfg)
{
    memset(&C, 0, sizeof(C));
    if (cfg)
        C.cfg = *cfg;
    if (!C.cfg.timeout_ms)
        C.cfg.timeout_ms = 60000;
    if (!C.cfg.wait_default_ms)
        C.cfg.wait_default_ms = 5000;
    if (!C.cfg.history)
        C.cfg.history = 10000;
    if (!C.cfg.awake_ms)
        C.cfg.awake_ms = 93000;
    if (!C.cfg.max_held)
        C.cfg.max_held = 16;
    ops_awake_ms = C.cfg.awake_ms;
    ops_max_held = C.cfg.max_held;
    if (lw_random(qkey, sizeof(qkey)) != 0)
        return LW_EIO;
    C.loop = loop;
    if (lw_hmap_init(&C.map, 0) != 0)
        return LW_ENOMEM;
    lw_list_init(&C.fifo);
    lw_wheel_init(&C.wheel, uv_now(loop));
    uv_timer_init(loop, &C.timer);
    lw_list_init(&C.orphans);
    C.next_id = 1;
    C.started = true;
    C.metrics.write = write_metrics;
    lw_metrics_register(&C.metrics);
    int rc = observe_start(loop);
    if (rc == 0 && C.cfg.db_url && *C.cfg.db_url)
        rc = restore(C.cfg.db_url);
    return rc;
}

static void write_metrics(void *ctx, struct lw_buf *out)
{
    (void)ctx;
    lw_buf_printf(out, "# HELP lwm2md_operations_total Device management operations finished, by "
                       "kind and final state.\n"
                       "# TYPE lwm2md_operations_total counter\n");
    for (int k = 0; k < OPS__COUNT; k++)
        for (int st = 0; st < 3; st++)
            if (C.done[k][st])
                lw_buf_printf(out, "lwm2md_operations_total{kind=\"%s\",state=\"%s\"} %llu\n",
                              kind_names[k], state_names[OPS_SUCCEEDED + st],
                              (unsigned long long)C.done[k][st]);
    lw_buf_printf(out,
                  "# HELP lwm2md_operations_created_total Operations created through the API.\n"
                  "# TYPE lwm2md_operations_created_total counter\n"
                  "lwm2md_operations_created_total %llu\n"
                  "# HELP lwm2md_operations_kept Operations held in memory (pending and history).\n"
                  "# TYPE lwm2md_operations_kept gauge\n"
                  "lwm2md_operations_kept %zu\n",
                  (unsigned long long)C.created, C.n);
    if (opstore_enabled())
        lw_buf_printf(out,
                      "# HELP lwm2md_operations_store_queued Writes of held operations and "
                      "observations waiting for PostgreSQL.\n"
                      "# TYPE lwm2md_operations_store_queued gauge\n"
                      "lwm2md_operations_store_queued %zu\n"
                      "# HELP lwm2md_operations_restored_total Held operations restored at start.\n"
                      "# TYPE lwm2md_operations_restored_total counter\n"
                      "lwm2md_operations_restored_total %llu\n"
                      "# HELP lwm2md_operations_unknown_outcome_total Held operations found sent "
                      "and unfinished at start that are not repeated (failed: outcome unknown).\n"
                      "# TYPE lwm2md_operations_unknown_outcome_total counter\n"
                      "lwm2md_operations_unknown_outcome_total %llu\n",
                      opstore_queued(), (unsigned long long)C.restored,
                      (unsigned long long)C.unknown);
}

uint32_t ops_wait_default_ms(void)
{
    return C.cfg.wait_default_ms ? C.cfg.wait_default_ms : 5000;
}

static void shard_states_free(void);

void ops_stop(void)
{
    if (!C.started)
        return;
    opstore_stop(); /* writes what is queued; held requests keep their rows for the next start */
    observe_stop();
    shard_states_free();
    struct lw_list *ol;
    while ((ol = lw_list_pop_front(&C.orphans))) {
        struct orphan *on = lw_container_of(ol, struct orphan, link);
        req_free(on->q);
        free(on);
    }
    lw_metrics_unregister(&C.metrics);
    struct lw_list *it;
    while ((it = lw_list_pop_front(&C.fifo))) {
        struct op *o = lw_container_of(it, struct op, link);
        wake(o, false);
        op_free(o);
    }
    lw_hmap_deinit(&C.map);
    uv_timer_stop(&C.timer);
    uv_close((uv_handle_t *)&C.timer, NULL);
    C.started = false;
}

/* What a held request needs to be sent after a restart (table operations, column request). */
static json_t *req_json(const struct ops_spec *sp, const char *args, uint32_t timeout_ms)
{
    char path[32];
    lw_m2m_path_format(&sp->path, path, sizeof(path));
    json_t *j = json_pack("{s:s,s:i,s:I,s:I,s:b,s:I}", "path", path, "cf", (int)sp->format,
                          "obs_id", (json_int_t)sp->obs_id, "obs_op", (json_int_t)sp->obs_op,
                          "composite", sp->composite, "timeout_ms", (json_int_t)timeout_ms);
    if (j && sp->body)
        json_object_set(j, "body", sp->body);
    if (j && args)
        json_object_set_new(j, "args", json_string(args));
    return j;
}

/* Sends a restored request to the shard that holds its device, or keeps it (false) until the
 * device registers. */
static bool post_restored(struct req_msg *q)
{
    struct dir_ref ref;
    struct op *o = op_find(q->op_id);
    if (!o || op_final(o))
        return true; /* nothing to do: dropped */
    if (dir_lookup(q->ep, strlen(q->ep), &ref) != 0 || ref.shard >= shards_count())
        return false;
    q->reg_id = o->reg_id = ref.id;
    q->gen = o->gen = ref.gen;
    o->shard = ref.shard;
    q->m.run = run_shard;
    return shard_post(shard_get(ref.shard), &q->m);
}

/* First turn of the control loop after the start (the shards run): restored requests go out. */
static void run_restored(struct shard *s, struct xmsg *m)
{
    (void)s;
    (void)m;
    size_t sent = 0, waiting = 0;
    lw_list_foreach_safe (it, &C.orphans) {
        struct orphan *on = lw_container_of(it, struct orphan, link);
        if (post_restored(on->q)) {
            lw_list_remove(&on->link);
            free(on);
            sent++;
        } else {
            waiting++;
        }
    }
    if (sent || waiting)
        log_info(M2M, "restored operations: %zu sent to their shards, %zu wait for a Register",
                 sent, waiting);
}

void ops_registered(const char *ep)
{
    if (!C.started || lw_list_empty(&C.orphans))
        return;
    lw_list_foreach_safe (it, &C.orphans) {
        struct orphan *on = lw_container_of(it, struct orphan, link);
        if (strcmp(on->q->ep, ep) == 0 && post_restored(on->q)) {
            lw_list_remove(&on->link);
            free(on);
        }
    }
}

static int kind_of(const char *name)
{
    for (int k = 0; k < OPS__COUNT; k++)
        if (!strcmp(kind_names[k], name))
            return k;
    return -1;
}

/* Whether sending a kind again has the effect of sending it once (reads, and writes of the
 * same values). A held operation that was sent before a crash and had not finished is sent again
 * when it is one of these; any other (Execute, Create, Delete, Partial Update) fails on restore
 * instead, as the device may have carried it out: running it twice could be worse (a second
 * reboot, a second instance). */
static bool kind_repeatable(int kind)
{
    switch (kind) {
    case OPS_READ:
    case OPS_DISCOVER:
    case OPS_WRITE:
    case OPS_ATTRIBUTES:
    case OPS_OBSERVE:
    case OPS_OBSERVE_CANCEL:
    case OPS_READ_COMPOSITE:
    case OPS_WRITE_COMPOSITE: return true;
    default: return false;
    }
}

/* One row of table operations: the operation again (queued, same id) and its request. */
static void on_op_row(void *ctx, const json_t *row)
{
    (void)ctx;
    const json_t *rq = json_object_get(row, "request");
    const char *ep = json_string_value(json_object_get(row, "endpoint"));
    const char *path = json_string_value(json_object_get(rq, "path"));
    const char *args = json_string_value(json_object_get(rq, "args"));
    int kind = kind_of(json_string_value(json_object_get(row, "kind")));
    uint64_t id = (uint64_t)json_integer_value(json_object_get(row, "id"));
    struct lw_m2m_path mp;
    if (!ep || strlen(ep) > DIR_MAX_NAME || !path || kind < 0 || id == 0 || op_find(id) ||
        lw_m2m_path_parse(path, strlen(path), &mp) != 0) {
        log_warn(M2M, "restore: queued operation %llu skipped: malformed row",
                 (unsigned long long)id);
        return;
    }
    struct op *o = calloc(1, sizeof(*o));
    struct req_msg *q = calloc(1, sizeof(*q));
    struct orphan *on = calloc(1, sizeof(*on));
    if (!o || !q || !on || (args && !(q->args = strdup(args))) ||
        lw_hmap_put(&C.map, hash_id(id), o) != 0) {
        free(o);
        free(on);
        if (q)
            req_free(q);
        return;
    }
    o->id = id;
    o->kind = (uint8_t)kind;
    o->state = OPS_QUEUED;
    o->cf = (uint16_t)json_integer_value(json_object_get(rq, "cf"));
    o->obs_id = (uint64_t)json_integer_value(json_object_get(rq, "obs_id"));
    o->timeout_ms = (uint32_t)json_integer_value(json_object_get(rq, "timeout_ms"));
    if (!o->timeout_ms)
        o->timeout_ms = C.cfg.timeout_ms;
    snprintf(o->ep, sizeof(o->ep), "%s", ep);
    snprintf(o->path, sizeof(o->path), "%s", path);
    o->created_ms = (int64_t)json_integer_value(json_object_get(row, "created_ms"));
    o->persisted = o->acked = o->durable = true;
    lw_timer_init(&o->tmo, on_op_timeout);
    lw_list_push_back(&C.fifo, &o->link);
    C.n++;
    bool sent = json_is_true(json_object_get(row, "sent"));
    if (sent && !kind_repeatable(kind)) {
        /* Finished here, as finish() would (no event: the loops do not run yet). */
        o->state = OPS_FAILED;
        snprintf(o->error, sizeof(o->error),
                 "the server stopped after sending it; whether the device carried it out is "
                 "unknown");
        o->done_ms = lw_wall_ms();
        C.done[o->kind][OPS_FAILED - OPS_SUCCEEDED]++;
        o->persisted = false;
        opstore_op_del(id);
        log_warn(M2M,
                 "restore: operation %llu (%s %s %s) was sent before the server stopped and "
                 "is not repeated: failed",
                 (unsigned long long)id, kind_names[kind], ep, path);
        free(on);
        req_free(q);
        if (id >= C.next_id)
            C.next_id = id + 1;
        C.unknown++;
        return;
    }
    if (sent)
        log_info(M2M,
                 "restore: operation %llu (%s %s %s) was sent before the server stopped: "
                 "it is sent again",
                 (unsigned long long)id, kind_names[kind], ep, path);
    q->what = MSG_REQ;
    snprintf(q->ep, sizeof(q->ep), "%s", ep);
    q->op_id = id;
    q->kind = (uint8_t)kind;
    q->cf = o->cf;
    q->path = mp;
    q->obs_id = o->obs_id;
    q->obs_op = (uint64_t)json_integer_value(json_object_get(rq, "obs_op"));
    q->composite = json_is_true(json_object_get(rq, "composite"));
    q->body = json_incref(json_object_get(rq, "body"));
    on->q = q;
    lw_list_push_back(&C.orphans, &on->link);
    if (id >= C.next_id)
        C.next_id = id + 1;
    C.restored++;
}

static int restore(const char *url)
{
    /* Ids stay unique across restarts without a counter in the database: they start at the
     * wall clock in microseconds (above every id of an earlier run unless it created more than
     * a million operations per second on average) and above every restored one. */
    C.next_id = (uint64_t)lw_wall_ms() * 1000;
    observe_seed_ids(C.next_id);
    if (opstore_start(C.loop, url) != 0)
        return LW_ENOMEM;
    opstore_load(url, on_op_row, observe_restore_row, NULL);
    if (C.restored)
        log_info(M2M, "restored %llu queued operation%s", (unsigned long long)C.restored,
                 C.restored == 1 ? "" : "s");
    C.restore_msg.run = run_restored;
    lw_control_post(&C.restore_msg);
    return 0;
}

int ops_submit(const struct ops_spec *sp, uint64_t *id)
{
    struct dir_ref ref;
    if (!C.started)
        return LW_ECANCELED;
    size_t eplen = strlen(sp->endpoint);
    if (eplen == 0 || eplen > DIR_MAX_NAME || (unsigned)sp->kind >= OPS__COUNT)
        return LW_EINVAL;
    if (dir_lookup(sp->endpoint, eplen, &ref) != 0)
        return LW_ENOENT;
    struct shard *s = ref.shard < shards_count() ? shard_get(ref.shard) : NULL;
    if (!s)
        return LW_ENOENT;
    struct op *o = calloc(1, sizeof(*o));
    struct req_msg *q = calloc(1, sizeof(*q));
    const char *args = sp->kind == OPS_ATTRIBUTES ? sp->query : sp->args;
    if (!o || !q || (args && !(q->args = strdup(args)))) {
        free(o);
        if (q)
            req_free(q);
        return LW_ENOMEM;
    }
    o->id = C.next_id++;
    o->reg_id = ref.id;
    o->gen = ref.gen;
    o->shard = ref.shard;
    o->kind = (uint8_t)sp->kind;
    o->state = OPS_QUEUED;
    o->cf = sp->format;
    o->obs_id = sp->obs_id;
    o->timeout_ms = sp->timeout_ms ? sp->timeout_ms : C.cfg.timeout_ms;
    memcpy(o->ep, sp->endpoint, eplen + 1);
    lw_m2m_path_format(&sp->path, o->path, sizeof(o->path));
    o->created_ms = lw_wall_ms();
    lw_timer_init(&o->tmo, on_op_timeout);
    if (opstore_enabled())
        o->req = req_json(sp, args, o->timeout_ms); /* NULL on OOM: not made durable */
    if (lw_hmap_put(&C.map, hash_id(o->id), o) != 0) {
        json_decref(o->req);
        free(o);
        req_free(q);
        return LW_ENOMEM;
    }
    lw_list_push_back(&C.fifo, &o->link);
    C.n++;
    C.created++;
    q->what = MSG_REQ;
    memcpy(q->ep, sp->endpoint, eplen + 1);
    q->op_id = o->id;
    q->reg_id = ref.id;
    q->gen = ref.gen;
    q->kind = (uint8_t)sp->kind;
    q->cf = sp->format;
    q->path = sp->path;
    q->obs_id = sp->obs_id;
    q->obs_op = sp->obs_op;
    q->composite = sp->composite;
    q->body = sp->body ? json_incref(sp->body) : NULL;
    q->m.run = run_shard;
    if (!shard_post(s, &q->m)) {
        req_free(q);
        finish(o, OPS_FAILED, 0, NULL, "the server is stopping");
    } else {
        uint64_t now = uv_now(C.loop);
        lw_wheel_advance(&C.wheel, now);
        lw_wheel_arm(&C.wheel, &o->tmo, now + o->timeout_ms);
        kick();
    }
    *id = o->id;
    evict();
    return 0;
}

json_t *ops_json(uint64_t id)
{
    struct op *o = op_find(id);
    return o ? op_to_json(o) : NULL;
}

int ops_wait(uint64_t id, uint32_t ms, ops_wait_fn fn, uint64_t cookie)
{
    struct op *o = op_find(id);
    if (!o)
        return LW_ENOENT;
    bool ack_only = false;
    if (ms == 0 && !op_final(o) && o->req && !o->acked) {
        /* With a database, 202 means durable: wait (bounded) until the shard took it. */
        ack_only = true;
        ms = OPS_ACK_WAIT_MS;
    }
    if (op_final(o) || ms == 0) {
        json_t *j = op_to_json(o);
        fn(cookie, j, op_final(o));
        json_decref(j);
        return 0;
    }
    struct waiter *w = calloc(1, sizeof(*w));
    if (!w)
        return LW_ENOMEM;
    w->ack_only = ack_only;
    w->op = o;
    w->fn = fn;
    w->cookie = cookie;
    w->next = o->waiters;
    o->waiters = w;
    lw_timer_init(&w->t, on_wait_timeout);
    uint64_t now = uv_now(C.loop);
    lw_wheel_advance(&C.wheel, now);
    lw_wheel_arm(&C.wheel, &w->t, now + ms);
    kick();
    return 0;
}

/* ------------------------------------------------------------------------------------------------
 * Shard threads
 */
struct qdev;
struct infl {
    struct lw_list dlink; /* in its device's infl list (when d is set) */
    struct qdev *d;
    struct req_msg *q; /* owned: the request, made again elsewhere if it was never transmitted */
    uint64_t op_id, reg_id, obs_id;
    uint32_t gen;
    struct lw_coap_handle h;
    uint8_t kind;
    uint16_t cf;
    struct lw_m2m_path path;
};

/* An established observation on this shard, keyed by the operation that established it (the
 * CoAP layer reports its notifications with that cookie). */
struct sobs {
    struct lw_list dlink; /* in its struct qdev's obs list */
    uint64_t op_id, obs_id, reg_id;
    uint32_t gen;
    struct lw_coap_handle h; /* on the registration's peer, when st is NULL */
    struct lw_coap__obs *st; /* owned: moved here from another peer, not attached yet */
    struct lw_m2m_path path;
    uint16_t cf;
    char ep[DIR_MAX_NAME + 1];
};

/* Per-device state on the shard that holds the registration, keyed by endpoint (so it survives
 * a new Register, which changes the registration id). Queue mode (protocol.md §4.7): requests for
 * a sleeping device wait here, in order, until its next uplink (Register, Update, Send); it then
 * counts as awake for the awake window. Established observations are listed here too, so that
 * both follow the registration when it moves to another peer or shard (NAT rebinding). */
struct qdev {
    uint64_t hash;
    uint64_t awake_until; /* monotonic ms */
    struct lw_list held;  /* struct req_msg, oldest first */
    struct lw_list obs;   /* struct sobs */
    struct lw_list infl;  /* struct infl: requests handed to the peer's CoAP endpoint, in order */
    unsigned nheld;
    bool queue; /* the device is in queue mode (keeps the entry while empty) */
    char ep[DIR_MAX_NAME + 1];
};

/* shard -> shard: a device's state follows its registration (ownership of d moves along). */
struct adopt_msg {
    struct xmsg m;
    struct qdev *d;
};

struct ops_shard {
    struct lw_hmap qdevs; /* struct qdev by endpoint */
    struct lw_hmap infl;  /* struct infl by op id */
    struct lw_hmap obs;   /* struct sobs by establishing op id */
    struct lw_arena arena;
};

static struct qdev *qdev_get(struct ops_shard *x, const char *ep, bool create);
static void sobs_free(struct ops_shard *x, struct sobs *ob, struct qdev *d);
static void qdev_gc(struct ops_shard *x, struct qdev *d);

/* Frees an in-flight record already removed from x->infl (and its request). */
static void infl_free(struct ops_shard *x, struct infl *in)
{
    struct qdev *d = in->d;
    if (d)
        lw_list_remove(&in->dlink);
    if (in->q)
        req_free(in->q);
    free(in);
    if (d)
        qdev_gc(x, d);
}

/* Per-shard state, indexed by shard id; each entry is created and used only by its shard's
 * thread (ops_stop runs after the shards joined). */
static struct ops_shard *SH[256];

/* After the shards joined (ops_stop): frees what they left. */
static void shard_states_free(void)
{
    for (size_t i = 0; i < LW_ARRAY_SIZE(SH); i++) {
        struct ops_shard *x = SH[i];
        void *it;
        size_t pos;
        if (!x)
            continue;
        pos = 0;
        while ((it = lw_hmap_next(&x->infl, &pos))) {
            struct infl *in = it;
            if (in->q)
                req_free(in->q);
            free(in);
        }
        pos = 0;
        while ((it = lw_hmap_next(&x->obs, &pos))) {
            lw_coap_obs_free(((struct sobs *)it)->st);
            free(it);
        }
        pos = 0;
        while ((it = lw_hmap_next(&x->qdevs, &pos))) {
            struct qdev *d = it;
            struct lw_list *l;
            while ((l = lw_list_pop_front(&d->held)))
                req_free(lw_container_of(l, struct req_msg, link));
            free(d);
        }
        lw_hmap_deinit(&x->infl);
        lw_hmap_deinit(&x->obs);
        lw_hmap_deinit(&x->qdevs);
        lw_arena_deinit(&x->arena);
        free(x);
        SH[i] = NULL;
    }
}

static bool infl_eq(const void *item, const void *key)
{
    return ((const struct infl *)item)->op_id == *(const uint64_t *)key;
}

static bool sobs_eq(const void *item, const void *key)
{
    return ((const struct sobs *)item)->op_id == *(const uint64_t *)key;
}

static struct ops_shard *shard_state(unsigned i, bool create)
{
    if (i >= LW_ARRAY_SIZE(SH))
        return NULL;
    if (!SH[i] && create) {
        struct ops_shard *x = calloc(1, sizeof(*x));
        if (!x || lw_hmap_init(&x->infl, 0) != 0 || lw_hmap_init(&x->obs, 0) != 0 ||
            lw_hmap_init(&x->qdevs, 0) != 0) {
            if (x) {
                lw_hmap_deinit(&x->infl);
                lw_hmap_deinit(&x->obs);
            }
            free(x);
            return NULL;
        }
        lw_arena_init(&x->arena, 4096, 4u << 20);
        SH[i] = x;
    }
    return SH[i];
}

static void post_result(uint64_t op_id, uint8_t state, uint8_t code, uint16_t cf, json_t *result,
                        const char *error)
{
    struct res_msg *rm = calloc(1, sizeof(*rm));
    if (!rm) {
        json_decref(result);
        return;
    }
    rm->op_id = op_id;
    rm->state = state;
    rm->code = code;
    rm->cf = cf;
    rm->result = result;
    if (error)
        snprintf(rm->error, sizeof(rm->error), "%s", error);
    rm->m.run = run_result;
    if (!lw_control_post(&rm->m)) {
        json_decref(rm->result);
        free(rm);
    }
}

static int cmp_rec(const void *a, const void *b)
{
    return lw_m2m_path_cmp(&((const struct lw_m2m_record *)a)->path,
                           &((const struct lw_m2m_record *)b)->path);
}

/* The content format for a request to a device of version ver (protocol.md §4.3). */
static uint16_t default_cf(uint8_t ver, const struct lw_m2m_path *p, bool write)
{
    (void)p;
    (void)write;
    if (ver <= 0x10)
        return LW_M2M_CF_TLV;
    if (ver >= 0x12)
        return LW_M2M_CF_LWM2M_CBOR;
    return LW_M2M_CF_SENML_CBOR;
}

/* Read-Composite / Observe-Composite request (protocol.md §4.3): FETCH on the root with the
 * paths of q->body as SenML names (SenML JSON when the answer is wanted in SenML JSON, else
 * SenML CBOR); the answer is a SenML / LwM2M CBOR pack of absolute paths. */
static int composite_fetch(const struct req_msg *q, const struct regsrv_dev *dev, uint16_t *cf,
                           struct lw_coap_msg *msg, struct lw_buf *pl, char *why, size_t cap)
{
    struct lw_m2m_path paths[64];
    size_t n = 0, i;
    const json_t *jp;
    int rc;
    if (dev->ver < 0x11) {
        snprintf(why, cap, "composite operations need LwM2M 1.1 or later");
        return LW_ENOTSUP;
    }
    json_array_foreach(json_object_get(q->body, "paths"), i, jp)
    {
        if (n == LW_ARRAY_SIZE(paths) ||
            lw_m2m_path_parse(json_string_value(jp), json_string_length(jp), &paths[n]) != 0)
            break;
        n++;
    }
    msg->code = LW_COAP_FETCH;
    if (*cf == OPS_FORMAT_DEFAULT)
        *cf = default_cf(dev->ver, &q->path, false);
    uint16_t pcf = *cf == LW_M2M_CF_SENML_JSON ? LW_M2M_CF_SENML_JSON : LW_M2M_CF_SENML_CBOR;
    if ((rc = lw_m2m_encode_paths(pcf, paths, n, pl)) != 0)
        return rc;
    if (!(rc = lw_coap_add_uint(msg, LW_COAP_OPT_CONTENT_FORMAT, pcf)))
        rc = lw_coap_add_uint(msg, LW_COAP_OPT_ACCEPT, *cf);
    msg->payload = lw_buf_bytes(pl);
    return rc;
}

/* Builds and sends the CoAP request of q on dev's endpoint. 0, or an error with why. */
static int send_req(struct regsrv *r, struct ops_shard *x, struct req_msg *q,
                    const struct regsrv_dev *dev, uint64_t now, char *why, size_t cap,
                    uint16_t *cf_used, bool *kept)
{
    struct lw_coap_msg msg;
    struct lw_buf pl;
    char path[32];
    struct lw_m2m_reg_links links;
    struct lw_m2m_reg_types_ctx tctx;
    struct lw_m2m_types types = {0};
    struct infl *in = NULL;
    int rc = 0;
    uint16_t cf = q->cf;
    lw_buf_init(&pl, 256);
    lw_coap_msg_init(&msg, LW_COAP_CON, LW_COAP_GET);
    lw_m2m_path_format(&q->path, path, sizeof(path));
    if (q->path.len > 0 && (rc = lw_coap_add_uri_path(&msg, path + 1)) != 0)
        goto out;
    switch (q->kind) {
    case OPS_READ:
        if (cf == OPS_FORMAT_DEFAULT)
            cf = default_cf(dev->ver, &q->path, false);
        rc = lw_coap_add_uint(&msg, LW_COAP_OPT_ACCEPT, cf);
        break;
    case OPS_DISCOVER:
        msg.code = LW_COAP_GET;
        rc = lw_coap_add_uint(&msg, LW_COAP_OPT_ACCEPT, 40);
        cf = OPS_FORMAT_DEFAULT;
        break;
    case OPS_WRITE:
    case OPS_WRITE_PARTIAL:
    case OPS_CREATE: {
        struct lw_m2m_records recs = {0};
        msg.code = q->kind == OPS_WRITE ? LW_COAP_PUT : LW_COAP_POST;
        if (cf == OPS_FORMAT_DEFAULT)
            cf = default_cf(dev->ver, &q->path, true);
        if (regsrv_dev_types(r, dev->peer, &x->arena, &links, &tctx) == 0 || tctx.registry)
            types = tctx.reg_links ? lw_m2m_link_reg_types(&tctx)
                                   : lw_m2m_registry_types(tctx.registry);
        if ((rc = values_from_json(q->body, &q->path, &types, &x->arena, &recs, why, cap)) != 0)
            goto out;
        if (recs.n > 1)
            qsort(recs.v, recs.n, sizeof(*recs.v), cmp_rec);
        if ((rc = lw_m2m_encode(cf, &q->path, recs.v, recs.n, &pl)) != 0) {
            snprintf(why, cap, "cannot encode the values as %s: %s",
                     lw_m2m_cf_name(cf) ? lw_m2m_cf_name(cf) : "?", lw_strerror(rc));
            goto out;
        }
        rc = lw_coap_add_uint(&msg, LW_COAP_OPT_CONTENT_FORMAT, cf);
        msg.payload = lw_buf_bytes(&pl);
        break;
    }
    case OPS_EXECUTE:
        msg.code = LW_COAP_POST;
        if (q->args && *q->args) {
            rc = lw_coap_add_uint(&msg, LW_COAP_OPT_CONTENT_FORMAT, LW_M2M_CF_TEXT);
            msg.payload = LW_BYTES(q->args, strlen(q->args));
        }
        cf = OPS_FORMAT_DEFAULT;
        break;
    case OPS_DELETE:
        msg.code = LW_COAP_DELETE;
        cf = OPS_FORMAT_DEFAULT;
        break;
    case OPS_READ_COMPOSITE:
        if ((rc = composite_fetch(q, dev, &cf, &msg, &pl, why, cap)) != 0)
            goto out;
        break;
    case OPS_WRITE_COMPOSITE: {
        struct lw_m2m_records recs = {0};
        if (dev->ver < 0x11) {
            snprintf(why, cap, "composite operations need LwM2M 1.1 or later");
            rc = LW_ENOTSUP;
            goto out;
        }
        msg.code = LW_COAP_IPATCH;
        if (cf == OPS_FORMAT_DEFAULT)
            cf = default_cf(dev->ver, &q->path, true);
        if (regsrv_dev_types(r, dev->peer, &x->arena, &links, &tctx) == 0 || tctx.registry)
            types = tctx.reg_links ? lw_m2m_link_reg_types(&tctx)
                                   : lw_m2m_registry_types(tctx.registry);
        if ((rc = values_from_json(q->body, NULL, &types, &x->arena, &recs, why, cap)) != 0)
            goto out;
        if (recs.n > 1)
            qsort(recs.v, recs.n, sizeof(*recs.v), cmp_rec);
        if ((rc = lw_m2m_encode(cf, &LW_M2M_PATH_ROOT, recs.v, recs.n, &pl)) != 0) {
            snprintf(why, cap, "cannot encode the values as %s: %s",
                     lw_m2m_cf_name(cf) ? lw_m2m_cf_name(cf) : "?", lw_strerror(rc));
            goto out;
        }
        rc = lw_coap_add_uint(&msg, LW_COAP_OPT_CONTENT_FORMAT, cf);
        msg.payload = lw_buf_bytes(&pl);
        break;
    }
    case OPS_ATTRIBUTES: {
        /* Write-Attributes: PUT with one Uri-Query per attribute and no payload (protocol.md
         * §4.6); the query text lives in q->args until the request is copied. */
        msg.code = LW_COAP_PUT;
        cf = OPS_FORMAT_DEFAULT;
        char *save = NULL;
        char *qs = q->args ? lw_arena_strndup(&x->arena, q->args, strlen(q->args)) : NULL;
        if (q->args && !qs) {
            rc = LW_ENOMEM;
            break;
        }
        for (char *t = qs ? strtok_r(qs, "&", &save) : NULL; t && !rc;
             t = strtok_r(NULL, "&", &save))
            rc = lw_coap_add_str(&msg, LW_COAP_OPT_URI_QUERY, t);
        break;
    }
    case OPS_OBSERVE:
        if (q->composite) { /* Observe-Composite: FETCH / with the path list and Observe 0 */
            if ((rc = composite_fetch(q, dev, &cf, &msg, &pl, why, cap)) != 0)
                goto out;
            rc = lw_coap_add_uint(&msg, LW_COAP_OPT_OBSERVE, 0);
            break;
        }
        if (cf == OPS_FORMAT_DEFAULT)
            cf = default_cf(dev->ver, &q->path, false);
        if (!(rc = lw_coap_add_uint(&msg, LW_COAP_OPT_OBSERVE, 0)))
            rc = lw_coap_add_uint(&msg, LW_COAP_OPT_ACCEPT, cf);
        break;
    case OPS_OBSERVE_CANCEL: {
        /* Active cancel (RFC 7641 §3.6): GET with Observe 1, the observation's token and URI. */
        struct sobs *ob = lw_hmap_get(&x->obs, hash_id(q->obs_op), &q->obs_op, sobs_eq);
        if (!ob || ob->st || ob->reg_id != dev->id || ob->gen != dev->gen) {
            if (ob)
                sobs_free(x, ob, qdev_get(x, ob->ep, false));
            snprintf(why, cap, "the observation is not active on the device");
            rc = LW_ENOENT;
            goto out;
        }
        cf = ob->cf;
        if (q->composite) /* the same FETCH body as the registration (RFC 8132 §2.4) */
            rc = composite_fetch(q, dev, &cf, &msg, &pl, why, cap);
        else
            rc = lw_coap_add_uint(&msg, LW_COAP_OPT_ACCEPT, cf);
        if (!rc)
            rc = lw_coap_add_uint(&msg, LW_COAP_OPT_OBSERVE, 1);
        struct lw_coap_handle oh = ob->h;
        sobs_free(x, ob, qdev_get(x, dev->ep, false));
        if (rc)
            break;
        if (!(in = calloc(1, sizeof(*in)))) {
            rc = LW_ENOMEM;
            goto out;
        }
        in->op_id = q->op_id;
        in->reg_id = dev->id;
        in->gen = dev->gen;
        in->kind = q->kind;
        in->cf = cf;
        in->path = q->path;
        if ((rc = lw_hmap_put(&x->infl, hash_id(in->op_id), in)) != 0) {
            free(in);
            goto out;
        }
        rc = lw_coap_ep_observe_cancel(&dev->peer->ep, oh, &msg, q->op_id, now, &in->h);
        if (rc) {
            lw_hmap_del_item(&x->infl, hash_id(in->op_id), in);
            free(in);
            snprintf(why, cap, "cannot send the cancel: %s", lw_strerror(rc));
            goto out;
        }
        regsrv_peer_settle(r, dev->peer, now);
        goto out;
    }
    default: rc = LW_EINVAL; break;
    }
    if (rc) {
        if (!*why)
            snprintf(why, cap, "cannot build the request: %s", lw_strerror(rc));
        goto out;
    }
    if (!(in = calloc(1, sizeof(*in)))) {
        rc = LW_ENOMEM;
        goto out;
    }
    in->op_id = q->op_id;
    in->reg_id = dev->id;
    in->obs_id = q->obs_id;
    in->gen = dev->gen;
    in->kind = q->kind;
    in->cf = cf;
    in->path = q->path;
    if ((rc = lw_hmap_put(&x->infl, hash_id(in->op_id), in)) != 0) {
        free(in);
        goto out;
    }
    if (lw_coap_ep_pending(&dev->peer->ep) >= OPS_MAX_PENDING) {
        rc = LW_ELIMIT; /* one request at a time per device: bound what waits behind it */
        snprintf(why, cap, "%d requests already wait for this device", OPS_MAX_PENDING);
    } else {
        rc = lw_coap_ep_request(&dev->peer->ep, &msg, q->op_id, now, &in->h);
    }
    if (rc) {
        lw_hmap_del_item(&x->infl, hash_id(in->op_id), in);
        free(in);
        if (!*why)
            snprintf(why, cap, "cannot send the request: %s", lw_strerror(rc));
        goto out;
    }
    /* Kept with its device until answered: if the device's address moves while the request
     * still waits behind NSTART, it is made again towards the new address. */
    struct qdev *d = qdev_get(x, dev->ep, true);
    if (d) {
        in->d = d;
        in->q = q;
        *kept = true;
        lw_list_push_back(&d->infl, &in->dlink);
    }
    regsrv_peer_settle(r, dev->peer, now);
out:
    *cf_used = cf;
    lw_buf_deinit(&pl);
    lw_arena_reset(&x->arena);
    return rc;
}

static uint64_t ep_hash(const char *ep)
{
    return lw_siphash(qkey, ep, strlen(ep));
}

static bool qdev_eq(const void *item, const void *key)
{
    return !strcmp(((const struct qdev *)item)->ep, key);
}

static struct qdev *qdev_get(struct ops_shard *x, const char *ep, bool create)
{
    uint64_t h = ep_hash(ep);
    struct qdev *d = lw_hmap_get(&x->qdevs, h, ep, qdev_eq);
    if (d || !create || strlen(ep) > DIR_MAX_NAME)
        return d;
    if (!(d = calloc(1, sizeof(*d))))
        return NULL;
    d->hash = h;
    lw_list_init(&d->held);
    lw_list_init(&d->obs);
    lw_list_init(&d->infl);
    snprintf(d->ep, sizeof(d->ep), "%s", ep);
    if (lw_hmap_put(&x->qdevs, h, d) != 0) {
        free(d);
        return NULL;
    }
    return d;
}

/* Sends q to dev now, posting SENT or FAILED; frees q. */
static void dispatch(struct regsrv *r, struct ops_shard *x, struct req_msg *q,
                     const struct regsrv_dev *dev, uint64_t now)
{
    char why[160] = "";
    uint16_t cf = OPS_FORMAT_DEFAULT;
    bool kept = false;
    uint64_t op_id = q->op_id;
    int rc = send_req(r, x, q, dev, now, why, sizeof(why), &cf, &kept);
    if (rc)
        post_result(op_id, OPS_FAILED, 0, OPS_FORMAT_DEFAULT, NULL, *why ? why : lw_strerror(rc));
    else
        post_result(op_id, OPS_SENT, 0, cf, NULL, NULL);
    if (!kept)
        req_free(q);
}

/* Frees d when it holds nothing worth keeping (no held request, no observation, not a
 * queue-mode device whose awake window it remembers). */
static void qdev_gc(struct ops_shard *x, struct qdev *d)
{
    if (d->queue || d->nheld > 0 || !lw_list_empty(&d->obs) || !lw_list_empty(&d->infl))
        return;
    lw_hmap_del_item(&x->qdevs, d->hash, d);
    free(d);
}

/* Unlinks ob from its device and the shard's map and frees it (the CoAP side is the caller's). */
static void sobs_free(struct ops_shard *x, struct sobs *ob, struct qdev *d)
{
    lw_hmap_del_item(&x->obs, hash_id(ob->op_id), ob);
    if (lw_list_linked(&ob->dlink))
        lw_list_remove(&ob->dlink);
    lw_coap_obs_free(ob->st);
    free(ob);
    if (d)
        qdev_gc(x, d);
}

/* Observations that moved here from another peer are attached to dev's peer, so its next
 * notifications (same token) are recognised. */
static void attach_moved(struct ops_shard *x, struct qdev *d, const struct regsrv_dev *dev)
{
    lw_list_foreach_safe (it, &d->obs) {
        struct sobs *ob = lw_container_of(it, struct sobs, dlink);
        if (!ob->st)
            continue;
        struct lw_coap__obs *st = ob->st;
        ob->st = NULL;
        ob->reg_id = dev->id;
        ob->gen = dev->gen;
        if (lw_coap_ep_obs_attach(&dev->peer->ep, st, ob->op_id, &ob->h) != 0) {
            log_warn_rl(M2M, "observation %llu of %s lost moving with its registration",
                        (unsigned long long)ob->obs_id, d->ep);
            sobs_free(x, ob, NULL);
        }
    }
}

/* An uplink from dev: awake for the window; held requests go out in order. */
static void device_awake(struct regsrv *r, struct ops_shard *x, const struct regsrv_dev *dev,
                         uint64_t now)
{
    struct qdev *d = qdev_get(x, dev->ep, dev->queue);
    if (!d)
        return;
    attach_moved(x, d, dev);
    if (dev->queue)
        d->awake_until = now + ops_awake_ms;
    d->queue = dev->queue;
    struct lw_list *it;
    while ((it = lw_list_pop_front(&d->held))) {
        d->nheld--;
        dispatch(r, x, lw_container_of(it, struct req_msg, link), dev, now);
    }
    qdev_gc(x, d);
}

/* Requests of d that wait behind NSTART on peer `from` (never transmitted) are cancelled there
 * and go to the front of d's held list, in order, to be made again towards the device's new
 * address; the transmitted one stays (its answer, if any, comes back to the old address). With
 * unlink_rest, the in-flight records that stay are unlinked from d (d is leaving the shard). */
static void take_unsent(struct regsrv *r, struct ops_shard *x, struct qdev *d, struct peer *from,
                        bool unlink_rest)
{
    struct lw_list taken;
    unsigned n = 0;
    lw_list_init(&taken);
    lw_list_foreach_safe (it, &d->infl) {
        struct infl *in = lw_container_of(it, struct infl, dlink);
        if (from && in->q && lw_coap_ep_queued(&from->ep, in->h)) {
            struct req_msg *q = in->q;
            struct lw_coap_handle h = in->h;
            in->q = NULL;
            lw_hmap_del_item(&x->infl, hash_id(in->op_id), in);
            lw_list_remove(&in->dlink);
            free(in);
            lw_coap_ep_cancel(&from->ep, h, r->now); /* no record: nothing is reported */
            lw_list_push_back(&taken, &q->link);
            n++;
        } else if (unlink_rest) {
            lw_list_remove(&in->dlink);
            in->d = NULL;
        }
    }
    lw_list_splice_back(&taken, &d->held); /* the unsent ones first: they are older */
    lw_list_splice_back(&d->held, &taken);
    d->nheld += n;
}

void ops_peer_moved(struct regsrv *r, const char *ep, struct peer *from, struct peer *to)
{
    struct ops_shard *x = shard_state(r->shard, false);
    struct qdev *d = x && lw_hmap_count(&x->qdevs) ? qdev_get(x, ep, false) : NULL;
    if (!d || from == to)
        return;
    lw_list_foreach_safe (it, &d->obs) {
        struct sobs *ob = lw_container_of(it, struct sobs, dlink);
        if (ob->st)
            continue; /* attached on the next uplink */
        ob->st = lw_coap_ep_obs_detach(&from->ep, ob->h, r->now);
        if (!ob->st || lw_coap_ep_obs_attach(&to->ep, ob->st, ob->op_id, &ob->h) != 0) {
            ob->st = NULL;
            sobs_free(x, ob, NULL);
            continue;
        }
        ob->st = NULL;
    }
    take_unsent(r, x, d, from, false); /* sent again by the Update's device_awake */
    qdev_gc(x, d);
}

static void run_adopt(struct shard *s, struct xmsg *m);

/* Frees d and what it carries; held requests fail with why. */
static void qdev_free_all(struct qdev *d, const char *why)
{
    struct lw_list *it;
    while ((it = lw_list_pop_front(&d->held))) {
        struct req_msg *q = lw_container_of(it, struct req_msg, link);
        post_result(q->op_id, OPS_FAILED, 0, OPS_FORMAT_DEFAULT, NULL, why);
        req_free(q);
    }
    while ((it = lw_list_pop_front(&d->obs))) {
        struct sobs *ob = lw_container_of(it, struct sobs, dlink);
        lw_coap_obs_free(ob->st);
        free(ob);
    }
    free(d);
}

void ops_handover(struct regsrv *r, const char *ep, struct peer *from, int to, bool keep_obs)
{
    struct ops_shard *x = shard_state(r->shard, false);
    struct qdev *d = x && lw_hmap_count(&x->qdevs) ? qdev_get(x, ep, false) : NULL;
    struct dir_ref ref;
    if (!d)
        return;
    if (to < 0) { /* replaced by a Register that reached another shard */
        if (dir_lookup(ep, strlen(ep), &ref) != 0 || ref.shard == r->shard)
            return;
        to = (int)ref.shard;
    }
    lw_hmap_del_item(&x->qdevs, d->hash, d);
    take_unsent(r, x, d, from, true);
    lw_list_foreach_safe (it, &d->obs) {
        struct sobs *ob = lw_container_of(it, struct sobs, dlink);
        lw_hmap_del_item(&x->obs, hash_id(ob->op_id), ob);
        if (!ob->st && from) {
            if (keep_obs)
                ob->st = lw_coap_ep_obs_detach(&from->ep, ob->h, r->now);
            else
                lw_coap_ep_cancel(&from->ep, ob->h, r->now); /* passive: the device forgot it */
        }
        if (!keep_obs || !ob->st) {
            lw_list_remove(&ob->dlink);
            lw_coap_obs_free(ob->st);
            free(ob);
        }
    }
    struct adopt_msg *am = calloc(1, sizeof(*am));
    if (!am || (unsigned)to >= shards_count()) {
        free(am);
        qdev_free_all(d, "out of memory moving the request with its device");
        return;
    }
    unsigned nobs = 0;
    lw_list_foreach (it, &d->obs)
        nobs++;
    log_info(M2M, "%s moved to shard %d: %u held request%s and %u observation%s follow it", d->ep,
             to, d->nheld, d->nheld == 1 ? "" : "s", nobs, nobs == 1 ? "" : "s");
    am->d = d;
    am->m.run = run_adopt;
    if (!shard_post(shard_get((unsigned)to), &am->m)) {
        qdev_free_all(d, "the server is stopping");
        free(am);
    }
}

/* On the shard a device's registration moved to: take over its held requests (they go first:
 * they are older than any held here) and observations; send and attach them at once when the
 * registration is already here and the device awake. */
static void run_adopt(struct shard *s, struct xmsg *m)
{
    struct adopt_msg *am = lw_container_of(m, struct adopt_msg, m);
    struct qdev *in = am->d, *d;
    struct regsrv *r = shard_regsrv(s);
    struct ops_shard *x = shard_state(shard_id(s), true);
    struct regsrv_dev dev;
    struct dir_ref ref;
    uint64_t now = lw_mono_ms();
    free(am);
    if (!x || !(d = qdev_get(x, in->ep, true))) {
        qdev_free_all(in, "out of memory moving the request with its device");
        return;
    }
    lw_list_splice_back(&in->held, &d->held); /* in's (older) first, then d's */
    lw_list_splice_back(&d->held, &in->held);
    d->nheld += in->nheld;
    d->queue = d->queue || in->queue;
    if (in->awake_until > d->awake_until)
        d->awake_until = in->awake_until;
    struct lw_list *it;
    while ((it = lw_list_pop_front(&in->obs))) {
        struct sobs *ob = lw_container_of(it, struct sobs, dlink);
        if (lw_hmap_put(&x->obs, hash_id(ob->op_id), ob) != 0) {
            lw_coap_obs_free(ob->st);
            free(ob);
            continue;
        }
        lw_list_push_back(&d->obs, &ob->dlink);
    }
    free(in);
    if (dir_lookup(d->ep, strlen(d->ep), &ref) == 0 && ref.shard == shard_id(s) &&
        regsrv_dev_find(r, ref.id, ref.gen, &dev) == 0) {
        r->now = now;
        attach_moved(x, d, &dev);
        if (!dev.queue || now < d->awake_until) {
            while ((it = lw_list_pop_front(&d->held))) {
                d->nheld--;
                dispatch(r, x, lw_container_of(it, struct req_msg, link), &dev, now);
            }
        }
        d->queue = dev.queue;
    }
    qdev_gc(x, d);
}

static void run_shard(struct shard *s, struct xmsg *m)
{
    struct req_msg *q = lw_container_of(m, struct req_msg, m);
    struct regsrv *r = shard_regsrv(s);
    struct ops_shard *x = shard_state(shard_id(s), true);
    struct regsrv_dev dev;
    char why[160] = "";
    uint64_t now = lw_mono_ms();
    if (q->what == MSG_CANCEL) {
        struct infl *in = x ? lw_hmap_del(&x->infl, hash_id(q->op_id), &q->op_id, infl_eq) : NULL;
        if (in && regsrv_dev_find(r, in->reg_id, in->gen, &dev) == 0) {
            lw_coap_ep_cancel(&dev.peer->ep, in->h, now);
            regsrv_peer_settle(r, dev.peer, now);
        }
        if (in)
            infl_free(x, in);
        goto out;
    }
    if (q->what == MSG_FORGET) {
        struct sobs *ob = x ? lw_hmap_get(&x->obs, hash_id(q->obs_op), &q->obs_op, sobs_eq) : NULL;
        if (!ob)
            goto out;
        if (!ob->st && regsrv_dev_find(r, ob->reg_id, ob->gen, &dev) == 0) {
            lw_coap_ep_cancel(&dev.peer->ep, ob->h, now);
            regsrv_peer_settle(r, dev.peer, now);
        }
        sobs_free(x, ob, qdev_get(x, ob->ep, false));
        goto out;
    }
    if (!x) {
        post_result(q->op_id, OPS_FAILED, 0, OPS_FORMAT_DEFAULT, NULL, "out of memory");
        goto out;
    }
    if (regsrv_dev_find(r, q->reg_id, q->gen, &dev) != 0) {
        /* The registration moved to another shard (NAT rebinding), is on its way here, or was
         * replaced by a new Register: the request follows the endpoint (by message, a bounded
         * number of times). */
        struct dir_ref ref;
        bool known = dir_lookup(q->ep, strlen(q->ep), &ref) == 0 && ref.shard < shards_count();
        if (known && ref.shard == shard_id(s) && regsrv_dev_find(r, ref.id, ref.gen, &dev) == 0)
            goto found;
        if (known && q->hops < OPS_MAX_HOPS) {
            q->hops++;
            q->reg_id = ref.id;
            q->gen = ref.gen;
            if (shard_post(shard_get(ref.shard), &q->m))
                return;
        }
        post_result(q->op_id, OPS_FAILED, 0, OPS_FORMAT_DEFAULT, NULL,
                    "the device is no longer registered");
        goto out;
    }
found:
    if (dev.queue) {
        struct qdev *d = qdev_get(x, dev.ep, true);
        if (!d) {
            post_result(q->op_id, OPS_FAILED, 0, OPS_FORMAT_DEFAULT, NULL, "out of memory");
            goto out;
        }
        if (now >= d->awake_until) { /* sleeping: hold until the next uplink */
            if (d->nheld >= ops_max_held) {
                snprintf(why, sizeof(why), "%u requests already wait for this sleeping device",
                         d->nheld);
                post_result(q->op_id, OPS_FAILED, 0, OPS_FORMAT_DEFAULT, NULL, why);
                goto out;
            }
            lw_list_push_back(&d->held, &q->link);
            d->nheld++;
            post_result(q->op_id, OPS_QUEUED, 0, OPS_FORMAT_DEFAULT, NULL, NULL);
            return;
        }
    }
    dispatch(r, x, q, &dev, now);
    return;
out:
    req_free(q);
}

static struct regsrv *regsrv_of_ep(struct lw_coap_ep *ep)
{
    return lw_container_of(ep->env, struct regsrv, env);
}

/* Decodes a response payload into {"values":[...]} (or {"error"} text on failure). */
static json_t *decode_values(struct regsrv *r, struct ops_shard *x, struct peer *p,
                             const struct lw_m2m_path *path, const struct lw_coap_msg *msg,
                             uint16_t *cfo)
{
    uint32_t cf = LW_M2M_CF_TEXT;
    struct lw_m2m_reg_links links;
    struct lw_m2m_reg_types_ctx tctx;
    struct lw_m2m_types types = {0};
    struct lw_m2m_records recs = {0};
    size_t off = 0;
    json_t *res = json_object();
    lw_coap_get_uint(msg, LW_COAP_OPT_CONTENT_FORMAT, &cf);
    *cfo = (uint16_t)cf;
    if (regsrv_dev_types(r, p, &x->arena, &links, &tctx) == 0 || tctx.registry)
        types =
            tctx.reg_links ? lw_m2m_link_reg_types(&tctx) : lw_m2m_registry_types(tctx.registry);
    int rc = lw_m2m_decode((uint16_t)cf, msg->payload, path, &types, NULL, &x->arena, &recs, &off);
    if (rc) {
        char e[128];
        snprintf(e, sizeof(e), "cannot decode the %s payload: %s at byte %zu",
                 lw_m2m_cf_name((uint16_t)cf) ? lw_m2m_cf_name((uint16_t)cf) : "unknown",
                 lw_strerror(rc), off);
        json_object_set_new(res, "decode_error", json_string(e));
    } else {
        json_object_set_new(res, "values", values_records_json(recs.v, recs.n));
    }
    lw_arena_reset(&x->arena);
    return res;
}

void ops_coap_response(void *ctx, struct lw_coap_ep *ep, struct lw_coap_handle h, uint64_t cookie,
                       int result, const struct lw_coap_msg *msg)
{
    struct peer *p = ctx;
    struct regsrv *r = regsrv_of_ep(ep);
    struct ops_shard *x = shard_state(r->shard, false);
    struct infl *in = x ? lw_hmap_del(&x->infl, hash_id(cookie), &cookie, infl_eq) : NULL;
    if (!in)
        return;
    uint8_t state = OPS_FAILED, code = 0;
    uint16_t cf = OPS_FORMAT_DEFAULT;
    json_t *res = NULL;
    const char *err = NULL;
    switch (result) {
    case LW_COAP_RES_RESPONSE:
        code = msg->code;
        state = LW_COAP_CODE_CLASS(code) == 2 ? OPS_SUCCEEDED : OPS_FAILED;
        if (state == OPS_FAILED) {
            if (msg->payload.len > 0)
                res = json_pack("{s:s%}", "diagnostic", (const char *)msg->payload.ptr,
                                msg->payload.len);
            break;
        }
        if ((in->kind == OPS_READ || in->kind == OPS_OBSERVE || in->kind == OPS_READ_COMPOSITE) &&
            msg->payload.len > 0)
            res = decode_values(r, x, p, &in->path, msg, &cf);
        if (in->kind == OPS_OBSERVE && !lw_coap_find_opt(msg, LW_COAP_OPT_OBSERVE)) {
            state = OPS_FAILED; /* answered without Observe: the device will not notify */
            err = "the device answered without an Observe option";
        } else if (in->kind == OPS_OBSERVE) {
            struct sobs *ob = calloc(1, sizeof(*ob));
            struct regsrv_dev dev;
            if (ob && regsrv_dev_find(r, in->reg_id, in->gen, &dev) == 0) {
                ob->op_id = in->op_id;
                ob->obs_id = in->obs_id;
                ob->reg_id = in->reg_id;
                ob->gen = in->gen;
                ob->h = h;
                ob->path = in->path;
                ob->cf = in->cf;
                snprintf(ob->ep, sizeof(ob->ep), "%s", dev.ep);
                struct qdev *d = qdev_get(x, dev.ep, true);
                if (!d || lw_hmap_put(&x->obs, hash_id(ob->op_id), ob) != 0) {
                    free(ob);
                    ob = NULL;
                } else {
                    lw_list_push_back(&d->obs, &ob->dlink);
                }
            } else {
                free(ob);
                ob = NULL;
            }
            if (!ob) {
                lw_coap_ep_cancel(ep, h, r->now);
                state = OPS_FAILED;
                err = "out of memory";
            }
        } else if (in->kind == OPS_DISCOVER) {
            res =
                json_pack("{s:s%}", "links", msg->payload.len ? (const char *)msg->payload.ptr : "",
                          msg->payload.len);
        } else if (in->kind == OPS_CREATE) {
            char loc[64] = "";
            size_t pos = 0, n = 0;
            const struct lw_coap_opt *o;
            while ((o = lw_coap_next_opt(msg, LW_COAP_OPT_LOCATION_PATH, &pos)) &&
                   n + o->len + 2 < sizeof(loc)) {
                loc[n++] = '/';
                memcpy(loc + n, lw_coap_opt_data(o), o->len);
                n += o->len;
                loc[n] = '\0';
            }
            res = json_pack("{s:s}", "location", loc);
        }
        break;
    case LW_COAP_RES_TIMEOUT:
        state = OPS_TIMEOUT;
        err = "the device did not answer (CoAP retransmissions exhausted)";
        break;
    case LW_COAP_RES_RESET: err = "the device answered with a CoAP Reset"; break;
    case LW_COAP_RES_CANCELED: err = "canceled"; break;
    default: err = "block-wise transfer failed"; break;
    }
    post_result(in->op_id, state, code, cf, res, err);
    infl_free(x, in);
}

void ops_coap_notify(void *ctx, struct lw_coap_ep *ep, struct lw_coap_handle h, uint64_t cookie,
                     const struct lw_coap_msg *msg, unsigned flags)
{
    struct peer *p = ctx;
    struct regsrv *r = regsrv_of_ep(ep);
    struct ops_shard *x = shard_state(r->shard, false);
    struct sobs *ob = x ? lw_hmap_get(&x->obs, hash_id(cookie), &cookie, sobs_eq) : NULL;
    char id[24], path[32];
    (void)h;
    if (!ob || (!(flags & LW_COAP_NOTIFY_FRESH) && !(flags & LW_COAP_NOTIFY_FINAL)))
        return;
    struct lw_event *ev = lw_event_new(LW_EV_NOTIFICATION, ob->ep);
    if (ev) {
        snprintf(id, sizeof(id), "%llu", (unsigned long long)ob->obs_id);
        lw_m2m_path_format(&ob->path, path, sizeof(path));
        json_object_set_new(ev->data, "observation", json_string(id));
        json_object_set_new(ev->data, "path", json_string(path));
        if (LW_COAP_CODE_CLASS(msg->code) == 2 && msg->payload.len > 0) {
            uint16_t cf;
            json_t *v = decode_values(r, x, p, &ob->path, msg, &cf);
            json_object_update(ev->data, v);
            json_decref(v);
            const char *n = lw_m2m_cf_name(cf);
            json_object_set_new(ev->data, "format", n ? json_string(n) : json_null());
        }
        if (flags & LW_COAP_NOTIFY_FINAL) {
            char code[8];
            snprintf(code, sizeof(code), "%u.%02u", LW_COAP_CODE_CLASS(msg->code),
                     LW_COAP_CODE_DETAIL(msg->code));
            json_object_set_new(ev->data, "final", json_true());
            json_object_set_new(ev->data, "coap_code", json_string(code));
        }
        lw_events_post(ev);
    }
    if (flags & LW_COAP_NOTIFY_FINAL)
        sobs_free(x, ob, qdev_get(x, ob->ep, false));
}

void ops_observe_forget(const char *endpoint, uint64_t obs_op)
{
    (void)endpoint;
    for (unsigned i = 0; i < shards_count(); i++) {
        struct req_msg *q = calloc(1, sizeof(*q));
        if (!q)
            return;
        q->what = MSG_FORGET;
        q->obs_op = obs_op;
        q->m.run = run_shard;
        if (!shard_post(shard_get(i), &q->m))
            req_free(q);
    }
}

void ops_uplink(struct regsrv *r, uint64_t id, uint32_t gen, bool registered)
{
    struct regsrv_dev dev;
    struct ops_shard *x = shard_state(r->shard, false);
    (void)registered;
    if (!x || regsrv_dev_find(r, id, gen, &dev) != 0)
        return;
    if (dev.queue || lw_hmap_count(&x->qdevs) > 0) /* held requests, moved observations */
        device_awake(r, x, &dev, lw_mono_ms());
}

static void reply(struct regsrv *r, struct peer *p, const struct lw_coap_msg *m, uint8_t code,
                  const char *diag)
{
    struct lw_coap_msg resp;
    struct lw_coap_req_ref ref = lw_coap_req_ref_of(m);
    lw_coap_msg_init(&resp, 0, code);
    if (diag) {
        lw_coap_add_uint(&resp, LW_COAP_OPT_CONTENT_FORMAT, LW_M2M_CF_TEXT);
        resp.payload = LW_BYTES(diag, strlen(diag));
    }
    lw_coap_ep_respond(&p->ep, &ref, &resp, r->now);
}

/* Send (protocol.md §4.5): POST /dp with SenML JSON/CBOR or LwM2M CBOR from a registered
 * device: 2.04 and a `send` event; 4.00 without a registration, for another format or an
 * undecodable payload; 4.04 when a record names an object the device did not register. */
bool ops_dev_request(struct regsrv *r, struct peer *p, const struct lw_coap_msg *m)
{
    struct regsrv_dev dev;
    struct ops_shard *x = shard_state(r->shard, true);
    uint32_t cf = 0xffffffff;
    char diag[128];
    if (m->code != LW_COAP_POST) {
        reply(r, p, m, LW_COAP_METHOD_NOT_ALLOWED, NULL);
        return true;
    }
    if (!x) {
        reply(r, p, m, LW_COAP_INTERNAL_ERROR, NULL);
        return true;
    }
    if (regsrv_peer_dev(r, p, &dev) != 0) {
        reply(r, p, m, LW_COAP_BAD_REQUEST, "no registration for this client");
        return true;
    }
    lw_coap_get_uint(m, LW_COAP_OPT_CONTENT_FORMAT, &cf);
    if (cf != LW_M2M_CF_SENML_JSON && cf != LW_M2M_CF_SENML_CBOR && cf != LW_M2M_CF_LWM2M_CBOR) {
        reply(r, p, m, LW_COAP_BAD_REQUEST, "send needs content-format 110, 112 or 11544");
        return true;
    }
    struct lw_m2m_reg_links links;
    struct lw_m2m_reg_types_ctx tctx;
    struct lw_m2m_types types = {0};
    struct lw_m2m_records recs = {0};
    size_t off = 0;
    bool have_links = regsrv_dev_types(r, p, &x->arena, &links, &tctx) == 0;
    if (have_links || tctx.registry)
        types = have_links ? lw_m2m_link_reg_types(&tctx) : lw_m2m_registry_types(tctx.registry);
    int rc = lw_m2m_decode((uint16_t)cf, m->payload, &LW_M2M_PATH_ROOT, &types, NULL, &x->arena,
                           &recs, &off);
    if (rc || recs.n == 0) {
        snprintf(diag, sizeof(diag), "undecodable payload: %s at byte %zu",
                 rc ? lw_strerror(rc) : "no records", off);
        reply(r, p, m, LW_COAP_BAD_REQUEST, diag);
        goto out;
    }
    for (size_t i = 0; have_links && i < recs.n; i++) {
        if (recs.v[i].path.len < 1 || !lw_m2m_link_reg_find(&links, recs.v[i].path.id[0])) {
            snprintf(diag, sizeof(diag), "object %u is not registered",
                     recs.v[i].path.len ? recs.v[i].path.id[0] : 0);
            reply(r, p, m, LW_COAP_NOT_FOUND, diag);
            goto out;
        }
    }
    reply(r, p, m, LW_COAP_CHANGED, NULL);
    struct lw_event *ev = lw_event_new(LW_EV_SEND, dev.ep);
    if (ev) {
        const char *n = lw_m2m_cf_name((uint16_t)cf);
        json_object_set_new(ev->data, "values", values_records_json(recs.v, recs.n));
        json_object_set_new(ev->data, "format", n ? json_string(n) : json_null());
        lw_events_post(ev);
    }
    /* any uplink proves a queue-mode device awake (protocol.md §4.7) */
    if (dev.queue)
        device_awake(r, x, &dev, lw_mono_ms());
out:
    lw_arena_reset(&x->arena);
    return true;
}
