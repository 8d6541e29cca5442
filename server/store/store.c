/* server/store/store.c - write-behind of registrations (see store.h). */
#include "store/store.h"

#include "base/err.h"
#include "base/util.h"
#include "events.h"
#include "log.h"
#include "metrics.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_MIN_MS 100u
#define BACKOFF_MAX_MS 10000u
#define STOP_BUDGET_MS 5000

/* Deletes the registrations of $1 (jsonb array of {ep, id}: a delete names the registration it
 * ends, so a late "replaced" from another shard cannot delete its successor) and upserts the rows
 * of $2 (jsonb array of objects); a batch names each endpoint once, so the two parts never touch
 * the same row. */
static const char batch_sql[] =
    "WITH del AS (DELETE FROM registrations g USING jsonb_to_recordset($1::jsonb) AS d(ep text, "
    "id text) WHERE g.endpoint = d.ep AND (d.id IS NULL OR g.reg_id = d.id)), "
    "x AS (SELECT * FROM jsonb_to_recordset($2::jsonb) AS r(ep text, id text, addr inet, "
    "port integer, ver text, b text, q boolean, lt integer, sms text, reg timestamptz, "
    "upd timestamptz, exp timestamptz, objs jsonb, pid text, sec text)) "
    "INSERT INTO registrations (endpoint, reg_id, address, port, secure, lwm2m_version, binding, "
    "queue_mode, lifetime, sms_number, registered_at, updated_at, expires_at, objects, "
    "profile_id, security_mode) "
    "SELECT ep, id, coalesce(addr, '0.0.0.0'), coalesce(port, 0), sec <> 'nosec', ver, b, q, lt, "
    "sms, reg, upd, exp, coalesce(objs, '[]'), pid, sec FROM x "
    "ON CONFLICT (endpoint) DO UPDATE SET reg_id = EXCLUDED.reg_id, address = EXCLUDED.address, "
    "port = EXCLUDED.port, secure = EXCLUDED.secure, lwm2m_version = EXCLUDED.lwm2m_version, "
    "binding = EXCLUDED.binding, queue_mode = EXCLUDED.queue_mode, lifetime = EXCLUDED.lifetime, "
    "sms_number = EXCLUDED.sms_number, registered_at = EXCLUDED.registered_at, "
    "updated_at = EXCLUDED.updated_at, expires_at = EXCLUDED.expires_at, "
    "objects = EXCLUDED.objects, profile_id = EXCLUDED.profile_id, "
    "security_mode = EXCLUDED.security_mode";

struct store {
    bool started;
    uv_loop_t *loop;
    char *url; /* owned, secret: never logged */
    PGconn *pg;
    bool connecting; /* PQconnectPoll phase */
    bool ready;      /* connected, idle or with a batch in flight */
    uv_poll_t *poll; /* owned; closed and freed on a new socket or at stop */
    int poll_fd;
    uv_timer_t flush_timer, retry_timer;
    unsigned backoff_ms;
    json_t *pending;  /* endpoint -> row object (upsert) or {"del": reg id} (delete); owned */
    json_t *inflight; /* the batch being written, same shape; NULL when none */
    bool flushing;    /* inflight sent, waiting for PQflush to finish */
    bool batch_ok;    /* every result of the batch in flight so far succeeded */
    bool batch_retry; /* it failed for a reason that is not the rows' fault: send again */
    char batch_why[300];
    struct lw_event_sink sink;
    struct lw_metrics_writer metrics;
    _Atomic uint64_t changes, coalesced, dropped, upserts, deletes, batches, failed, requeued,
        connects, queued;
    _Atomic bool connected;
};

static struct store st;

static void set_queued(void)
{
    atomic_store_explicit(&st.queued, json_object_size(st.pending), memory_order_relaxed);
}

/* ---- rows from events ------------------------------------------------------------------------ */

/* "1.2.3.4:5683" or "[::1]:5683" -> address text and port. */
static bool split_addr(const char *s, char *host, size_t hcap, long *port)
{
    const char *colon;
    const char *h = s;
    size_t hl;
    if (*s == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':')
            return false;
        h = s + 1;
        hl = (size_t)(end - h);
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return false;
        hl = (size_t)(colon - s);
    }
    if (hl == 0 || hl >= hcap)
        return false;
    memcpy(host, h, hl);
    host[hl] = '\0';
    char *end;
    *port = strtol(colon + 1, &end, 10);
    return *end == '\0' && *port >= 0 && *port <= 65535;
}

static json_t *row_of(const struct lw_event *ev)
{
    json_t *d = ev->data;
    json_t *row = json_object();
    const char *addr = json_string_value(json_object_get(d, "address"));
    char host[64];
    long port;
    if (!row)
        return NULL;
    json_object_set_new(row, "ep", json_string(ev->endpoint));
    json_object_set(row, "id", json_object_get(d, "registration_id"));
    if (addr && split_addr(addr, host, sizeof(host), &port)) {
        json_object_set_new(row, "addr", json_string(host));
        json_object_set_new(row, "port", json_integer(port));
    }
    json_object_set(row, "ver", json_object_get(d, "lwm2m_version"));
    json_object_set(row, "b", json_object_get(d, "binding"));
    json_object_set(row, "q", json_object_get(d, "queue_mode"));
    json_object_set(row, "lt", json_object_get(d, "lifetime_s"));
    json_object_set(row, "sms", json_object_get(d, "sms"));
    json_object_set(row, "reg", json_object_get(d, "registered_at"));
    json_object_set(row, "upd", json_object_get(d, "last_update"));
    json_object_set(row, "exp", json_object_get(d, "expires_at"));
    json_object_set(row, "objs", json_object_get(d, "objects"));
    json_object_set(row, "pid", json_object_get(d, "profile_id"));
    json_object_set(row, "sec", json_object_get(d, "security_mode"));
    return row;
}

static void schedule_flush(void);

static bool is_del(const json_t *v)
{
    return json_object_get(v, "del") != NULL;
}

static void on_event(void *ctx, const struct lw_event *ev)
{
    (void)ctx;
    json_t *val;
    switch (ev->type) {
    case LW_EV_REGISTERED:
    case LW_EV_UPDATED: val = row_of(ev); break;
    case LW_EV_DEREGISTERED:
    case LW_EV_EXPIRED:
        val = json_pack("{s:O}", "del", json_object_get(ev->data, "registration_id"));
        break;
    default: return;
    }
    if (!val || !ev->endpoint[0]) {
        json_decref(val);
        return;
    }
    /* Events about one endpoint come from different shards in any order: a registration that
     * replaced another may be announced before the other's end. A delete therefore only
     * applies to the registration it names. */
    json_t *cur = json_object_get(st.pending, ev->endpoint);
    json_t *del = json_object_get(val, "del");
    if (del && cur && !json_equal(del, json_object_get(cur, is_del(cur) ? "del" : "id"))) {
        atomic_fetch_add_explicit(&st.changes, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&st.coalesced, 1, memory_order_relaxed);
        json_decref(val);
        return;
    }
    atomic_fetch_add_explicit(&st.changes, 1, memory_order_relaxed);
    if (del && cur && !is_del(cur))
        /* it ends the registration queued for writing: whatever row the table still has for
         * the endpoint is older, delete it too */
        json_object_set_new(val, "del", json_null());
    if (cur) {
        atomic_fetch_add_explicit(&st.coalesced, 1, memory_order_relaxed);
    } else if (json_object_size(st.pending) >= LW_STORE_QUEUE_MAX) {
        atomic_fetch_add_explicit(&st.dropped, 1, memory_order_relaxed);
        log_warn_rl(STORE, "write-behind queue full: change dropped: endpoint=%s queued=%zu",
                    ev->endpoint, json_object_size(st.pending));
        json_decref(val);
        return;
    }
    json_object_set_new(st.pending, ev->endpoint, val);
    set_queued();
    if (json_object_size(st.pending) >= LW_STORE_BATCH_MAX)
        schedule_flush();
}

/* ---- connection --------------------------------------------------------------------------------
 */

static void try_send(void);
static void start_connect(void);

static void quiet_notice(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

static void stop_poll(void)
{
    if (st.poll) {
        uv_poll_stop(st.poll);
        uv_close((uv_handle_t *)st.poll, free_handle);
        st.poll = NULL;
    }
}

static void on_poll(uv_poll_t *h, int status, int events);

/* Watches the libpq socket for `events`; a new socket (reconnect) gets a new handle. */
static void watch(int events)
{
    int fd = PQsocket(st.pg);
    if (fd < 0)
        return;
    if (st.poll && st.poll_fd != fd)
        stop_poll();
    if (!st.poll) {
        st.poll = malloc(sizeof(*st.poll));
        if (!st.poll)
            return;
        if (uv_poll_init_socket(st.loop, st.poll, fd) != 0) {
            free(st.poll);
            st.poll = NULL;
            return;
        }
        st.poll_fd = fd;
    }
    uv_poll_start(st.poll, events, on_poll);
}

/* Puts the batch in flight back under whatever newer state was queued meanwhile. */
static void requeue_inflight(void)
{
    const char *ep;
    json_t *v;
    if (!st.inflight)
        return;
    json_object_foreach(st.inflight, ep, v)
    {
        if (!json_object_get(st.pending, ep))
            json_object_set(st.pending, ep, v);
    }
    json_decref(st.inflight);
    st.inflight = NULL;
    st.flushing = false;
    atomic_fetch_add_explicit(&st.requeued, 1, memory_order_relaxed);
    set_queued();
}

static void on_retry(uv_timer_t *t)
{
    (void)t;
    start_connect();
}

static void connection_lost(const char *why)
{
    bool was = atomic_load_explicit(&st.connected, memory_order_relaxed);
    requeue_inflight();
    stop_poll();
    PQfinish(st.pg);
    st.pg = NULL;
    st.ready = st.connecting = false;
    atomic_store_explicit(&st.connected, false, memory_order_relaxed);
    if (was)
        log_warn(STORE, "database connection lost, writes are queued: %s", why);
    else
        log_info(STORE, "database not reachable, retrying in %u ms: %s", st.backoff_ms, why);
    uv_timer_start(&st.retry_timer, on_retry, st.backoff_ms, 0);
    st.backoff_ms = LW_MIN(st.backoff_ms * 2, BACKOFF_MAX_MS);
}

static void connect_step(void)
{
    switch (PQconnectPoll(st.pg)) {
    case PGRES_POLLING_READING: watch(UV_READABLE); break;
    case PGRES_POLLING_WRITING: watch(UV_WRITABLE); break;
    case PGRES_POLLING_OK:
        st.connecting = false;
        if (PQsetnonblocking(st.pg, 1) != 0) {
            connection_lost("cannot make the connection non-blocking");
            return;
        }
        PQsetNoticeProcessor(st.pg, quiet_notice, NULL);
        st.ready = true;
        st.backoff_ms = BACKOFF_MIN_MS;
        atomic_store_explicit(&st.connected, true, memory_order_relaxed);
        atomic_fetch_add_explicit(&st.connects, 1, memory_order_relaxed);
        log_info(STORE, "database connected: write-behind of registrations, %zu queued",
                 json_object_size(st.pending));
        watch(UV_READABLE);
        try_send();
        break;
    default: {
        char why[256];
        snprintf(why, sizeof(why), "%s", PQerrorMessage(st.pg));
        why[strcspn(why, "\n")] = '\0';
        connection_lost(why);
        break;
    }
    }
}

static void start_connect(void)
{
    st.pg = PQconnectStart(st.url);
    if (!st.pg || PQstatus(st.pg) == CONNECTION_BAD) {
        connection_lost(st.pg ? "connection failed" : "out of memory");
        return;
    }
    st.connecting = true;
    connect_step();
}

/* ---- batches -----------------------------------------------------------------------------------
 */

static void batch_done(bool ok, const char *why)
{
    size_t n = json_object_size(st.inflight);
    size_t dels = 0;
    const char *ep;
    json_t *v;
    json_object_foreach(st.inflight, ep, v) dels += is_del(v);
    if (ok) {
        atomic_fetch_add_explicit(&st.batches, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&st.upserts, n - dels, memory_order_relaxed);
        atomic_fetch_add_explicit(&st.deletes, dels, memory_order_relaxed);
    } else {
        atomic_fetch_add_explicit(&st.failed, 1, memory_order_relaxed);
        log_err(STORE, "registration batch refused by the database, %zu row(s) not written: %s", n,
                why);
    }
    json_decref(st.inflight);
    st.inflight = NULL;
    st.flushing = false;
}

/* Reads what arrived; finishes the batch when its results are complete. */
static void consume(void)
{
    if (!PQconsumeInput(st.pg)) {
        char why[256];
        snprintf(why, sizeof(why), "%s", PQerrorMessage(st.pg));
        why[strcspn(why, "\n")] = '\0';
        connection_lost(why);
        return;
    }
    while (st.inflight && !st.flushing && !PQisBusy(st.pg)) {
        PGresult *res = PQgetResult(st.pg);
        if (!res) {
            /* the statement's results are complete */
            if (!st.batch_ok && st.batch_retry) {
                log_warn(STORE, "registration batch not written, queued again: %s", st.batch_why);
                requeue_inflight();
            } else {
                batch_done(st.batch_ok, st.batch_why);
            }
            break;
        }
        ExecStatusType s = PQresultStatus(res);
        if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK && st.batch_ok) {
            st.batch_ok = false;
            snprintf(st.batch_why, sizeof(st.batch_why), "%s", PQresultErrorMessage(res));
            st.batch_why[strcspn(st.batch_why, "\n")] = '\0';
            /* connection exception, resources, operator intervention, transaction rollback:
             * the rows are fine, the batch is sent again */
            const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
            st.batch_retry = code && (strncmp(code, "08", 2) == 0 || strncmp(code, "53", 2) == 0 ||
                                      strncmp(code, "57", 2) == 0 || strncmp(code, "40", 2) == 0);
        }
        PQclear(res);
        if (PQstatus(st.pg) == CONNECTION_BAD) {
            connection_lost("connection broke during a batch");
            return;
        }
    }
    if (PQstatus(st.pg) == CONNECTION_BAD) {
        connection_lost("connection closed by the server");
        return;
    }
    if (!st.inflight)
        try_send();
}

static void flush_out(void)
{
    int r = PQflush(st.pg);
    if (r < 0) {
        connection_lost("write failed");
        return;
    }
    st.flushing = r == 1;
    watch(st.flushing ? (UV_READABLE | UV_WRITABLE) : UV_READABLE);
}

/* Moves up to LW_STORE_BATCH_MAX queued endpoints into a new batch: $1 deletes, $2 upserts. */
static json_t *take_batch(char **p1, char **p2)
{
    json_t *batch = json_object();
    json_t *dels = json_array();
    json_t *rows = json_array();
    const char *ep;
    json_t *v;
    void *tmp;
    *p1 = *p2 = NULL;
    if (!batch || !dels || !rows)
        goto fail;
    json_object_foreach_safe(st.pending, tmp, ep, v)
    {
        if (json_object_size(batch) >= LW_STORE_BATCH_MAX)
            break;
        if (is_del(v))
            json_array_append_new(
                dels, json_pack("{s:s,s:O}", "ep", ep, "id", json_object_get(v, "del")));
        else
            json_array_append(rows, v);
        json_object_set(batch, ep, v);
        json_object_del(st.pending, ep);
    }
    *p1 = json_dumps(dels, JSON_COMPACT);
    *p2 = json_dumps(rows, JSON_COMPACT);
    json_decref(dels);
    json_decref(rows);
    if (!*p1 || !*p2) {
        /* out of memory: put everything back */
        json_object_foreach(batch, ep, v) json_object_set(st.pending, ep, v);
        json_decref(batch);
        free(*p1);
        free(*p2);
        *p1 = *p2 = NULL;
        return NULL;
    }
    return batch;
fail:
    json_decref(batch);
    json_decref(dels);
    json_decref(rows);
    return NULL;
}

static void try_send(void)
{
    if (!st.ready || st.inflight || json_object_size(st.pending) == 0)
        return;
    char *p1, *p2;
    json_t *batch = take_batch(&p1, &p2);
    set_queued();
    if (!batch)
        return;
    const char *params[2] = {p1, p2};
    st.inflight = batch;
    st.batch_ok = true;
    st.batch_retry = false;
    st.batch_why[0] = '\0';
    int ok = PQsendQueryParams(st.pg, batch_sql, 2, NULL, params, NULL, NULL, 0);
    free(p1);
    free(p2);
    if (!ok) {
        char why[256];
        snprintf(why, sizeof(why), "%s", PQerrorMessage(st.pg));
        why[strcspn(why, "\n")] = '\0';
        connection_lost(why);
        return;
    }
    flush_out();
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    (void)h;
    if (!st.pg)
        return;
    if (st.connecting) {
        connect_step();
        return;
    }
    if (status < 0) {
        connection_lost(uv_strerror(status));
        return;
    }
    if ((events & UV_WRITABLE) && st.flushing) {
        flush_out();
        if (!st.pg)
            return;
    }
    if (events & UV_READABLE)
        consume();
}

static void on_flush_timer(uv_timer_t *t)
{
    (void)t;
    try_send();
}

static void schedule_flush(void)
{
    try_send();
}

/* ---- metrics -----------------------------------------------------------------------------------
 */

static void write_metrics(void *ctx, struct lw_buf *out)
{
    (void)ctx;
    struct lw_store_stats s;
    char line[512];
    lw_store_get_stats(&s);
    static const struct {
        const char *name, *help;
        size_t off;
    } ctrs[] = {
        {"lwm2md_store_changes_total", "Registration changes seen by the write-behind store",
         offsetof(struct lw_store_stats, changes)},
        {"lwm2md_store_coalesced_total", "Changes that replaced a queued one for the same endpoint",
         offsetof(struct lw_store_stats, coalesced)},
        {"lwm2md_store_dropped_total", "Changes dropped because the write-behind queue was full",
         offsetof(struct lw_store_stats, dropped)},
        {"lwm2md_store_upserts_total", "Registration rows written",
         offsetof(struct lw_store_stats, upserts)},
        {"lwm2md_store_deletes_total", "Registration rows deleted",
         offsetof(struct lw_store_stats, deletes)},
        {"lwm2md_store_batches_total", "Write-behind batches committed",
         offsetof(struct lw_store_stats, batches)},
        {"lwm2md_store_batches_failed_total", "Write-behind batches refused by the database",
         offsetof(struct lw_store_stats, failed)},
        {"lwm2md_store_batches_requeued_total", "Batches re-queued after a connection loss",
         offsetof(struct lw_store_stats, requeued)},
        {"lwm2md_store_connects_total", "Successful database connections of the store",
         offsetof(struct lw_store_stats, connects)},
    };
    for (size_t i = 0; i < LW_ARRAY_SIZE(ctrs); i++) {
        uint64_t v;
        memcpy(&v, (const char *)&s + ctrs[i].off, sizeof(v));
        int n =
            snprintf(line, sizeof(line), "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", ctrs[i].name,
                     ctrs[i].help, ctrs[i].name, ctrs[i].name, (unsigned long long)v);
        lw_buf_put(out, line, (size_t)n);
    }
    int n = snprintf(line, sizeof(line),
                     "# HELP lwm2md_store_queued Endpoints with a change waiting to be written\n"
                     "# TYPE lwm2md_store_queued gauge\nlwm2md_store_queued %llu\n"
                     "# HELP lwm2md_store_connected 1 while the store's database connection is up\n"
                     "# TYPE lwm2md_store_connected gauge\nlwm2md_store_connected %d\n",
                     (unsigned long long)s.queued, s.connected ? 1 : 0);
    lw_buf_put(out, line, (size_t)n);
}

/* ---- start / stop ------------------------------------------------------------------------------
 */

int lw_store_start(uv_loop_t *loop, const struct lw_config *cfg)
{
    if (!cfg->db_url || !*cfg->db_url)
        return 0;
    memset(&st, 0, sizeof(st));
    st.loop = loop;
    st.url = strdup(cfg->db_url);
    st.pending = json_object();
    if (!st.url || !st.pending) {
        free(st.url);
        json_decref(st.pending);
        return LW_ENOMEM;
    }
    st.backoff_ms = BACKOFF_MIN_MS;
    uv_timer_init(loop, &st.flush_timer);
    uv_timer_init(loop, &st.retry_timer);
    uv_timer_start(&st.flush_timer, on_flush_timer, LW_STORE_FLUSH_MS, LW_STORE_FLUSH_MS);
    st.sink.on_event = on_event;
    lw_events_subscribe(&st.sink);
    st.metrics.write = write_metrics;
    lw_metrics_register(&st.metrics);
    st.started = true;
    start_connect();
    return 0;
}

/* Blocking write of everything queued (shutdown). */
static void drain_blocking(void)
{
    uint64_t t0 = uv_hrtime();
    if (st.pg && (st.connecting || PQstatus(st.pg) != CONNECTION_OK)) {
        PQfinish(st.pg);
        st.pg = NULL;
    }
    if (st.pg && st.inflight) {
        /* let the batch in flight finish: its outcome decides whether it is re-sent */
        PQsetnonblocking(st.pg, 0);
        while (PQflush(st.pg) == 1) {
        }
        PGresult *res;
        bool ok = true;
        while ((res = PQgetResult(st.pg)) != NULL) {
            ExecStatusType s = PQresultStatus(res);
            ok = ok && (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK);
            PQclear(res);
        }
        if (ok)
            batch_done(true, NULL);
        else
            requeue_inflight();
    }
    if (json_object_size(st.pending) == 0)
        return;
    if (!st.pg) {
        char url[4096];
        /* a short connect timeout: a database that is down must not hold the stop */
        snprintf(url, sizeof(url), "%s", st.url);
        const char *keys[] = {"dbname", "connect_timeout", NULL};
        const char *vals[] = {url, "2", NULL};
        st.pg = PQconnectdbParams(keys, vals, 1);
        if (PQstatus(st.pg) != CONNECTION_OK) {
            log_err(STORE,
                    "stopping with %zu registration change(s) not written: database not "
                    "reachable",
                    json_object_size(st.pending));
            return;
        }
    }
    PQsetnonblocking(st.pg, 0);
    while (json_object_size(st.pending) > 0 &&
           (uv_hrtime() - t0) / 1000000 < (uint64_t)STOP_BUDGET_MS) {
        char *p1, *p2;
        json_t *batch = take_batch(&p1, &p2);
        if (!batch)
            break;
        const char *params[2] = {p1, p2};
        st.inflight = batch;
        PGresult *res = PQexecParams(st.pg, batch_sql, 2, NULL, params, NULL, NULL, 0);
        free(p1);
        free(p2);
        bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        PQclear(res);
        if (!ok) {
            char why[300];
            snprintf(why, sizeof(why), "%s", PQerrorMessage(st.pg));
            why[strcspn(why, "\n")] = '\0';
            batch_done(false, why);
            break;
        }
        batch_done(true, NULL);
    }
    if (json_object_size(st.pending) > 0)
        log_err(STORE, "stopping with %zu registration change(s) not written",
                json_object_size(st.pending));
    else
        log_info(STORE, "write-behind queue flushed");
}

void lw_store_stop(void)
{
    if (!st.started)
        return;
    st.started = false;
    lw_events_unsubscribe(&st.sink);
    lw_metrics_unregister(&st.metrics);
    uv_timer_stop(&st.flush_timer);
    uv_timer_stop(&st.retry_timer);
    stop_poll();
    drain_blocking();
    PQfinish(st.pg);
    st.pg = NULL;
    atomic_store_explicit(&st.connected, false, memory_order_relaxed);
    uv_close((uv_handle_t *)&st.flush_timer, NULL);
    uv_close((uv_handle_t *)&st.retry_timer, NULL);
    json_decref(st.pending);
    json_decref(st.inflight);
    st.pending = st.inflight = NULL;
    free(st.url);
    st.url = NULL;
}

bool lw_store_db_ok(void)
{
    return !st.url || atomic_load_explicit(&st.connected, memory_order_relaxed);
}

void lw_store_get_stats(struct lw_store_stats *o)
{
#define LD(f) o->f = atomic_load_explicit(&st.f, memory_order_relaxed)
    LD(changes);
    LD(coalesced);
    LD(dropped);
    LD(upserts);
    LD(deletes);
    LD(batches);
    LD(failed);
    LD(requeued);
    LD(connects);
    LD(queued);
#undef LD
    o->connected = atomic_load_explicit(&st.connected, memory_order_relaxed);
}
