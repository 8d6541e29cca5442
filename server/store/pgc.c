/* server/store/pgc.c - non-blocking PostgreSQL connection with a query FIFO (see pgc.h). */
#include "store/pgc.h"

#include "base/err.h"
#include "base/list.h"
#include "base/util.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_MIN_MS 100u
#define BACKOFF_MAX_MS 10000u
#define MAX_PARAMS     8

struct pq {
    struct lw_list link;
    const char *sql;
    int n;
    char *params[MAX_PARAMS];
    bool fail_fast;
    pgc_done_fn done;
    void *ctx;
};

struct pgc {
    uv_loop_t *loop;
    char *url;
    char name[32];
    PGconn *pg;
    bool connecting, up, was_up, closing;
    uv_poll_t *poll;
    int poll_fd;
    uv_timer_t *retry;
    unsigned backoff_ms;
    struct lw_list queue; /* struct pq; the head is in flight when inflight */
    bool inflight, flushing;
    PGresult *keep; /* first failed result of the query in flight, or its last one */
    pgc_state_fn on_state;
    void *ctx;
};

static void free_handle(uv_handle_t *h)
{
    free(h);
}

static void pq_free(struct pq *q)
{
    for (int i = 0; i < q->n; i++)
        free(q->params[i]);
    free(q);
}

static void stop_poll(struct pgc *c)
{
    if (c->poll) {
        uv_poll_stop(c->poll);
        uv_close((uv_handle_t *)c->poll, free_handle);
        c->poll = NULL;
    }
}

static void on_poll(uv_poll_t *h, int status, int events);

static void watch(struct pgc *c, int events)
{
    int fd = PQsocket(c->pg);
    if (fd < 0)
        return;
    if (c->poll && c->poll_fd != fd)
        stop_poll(c);
    if (!c->poll) {
        c->poll = malloc(sizeof(*c->poll));
        if (!c->poll)
            return;
        if (uv_poll_init_socket(c->loop, c->poll, fd) != 0) {
            free(c->poll);
            c->poll = NULL;
            return;
        }
        c->poll->data = c;
        c->poll_fd = fd;
    }
    uv_poll_start(c->poll, events, on_poll);
}

static void start_connect(struct pgc *c);
static void try_send(struct pgc *c);

static void on_retry(uv_timer_t *t)
{
    start_connect(t->data);
}

/* Completes the head query with res (borrowed) or err. */
static void complete_head(struct pgc *c, const PGresult *res, const char *err)
{
    struct lw_list *it = lw_list_pop_front(&c->queue);
    struct pq *q = lw_container_of(it, struct pq, link);
    c->inflight = c->flushing = false;
    q->done(q->ctx, res, err);
    pq_free(q);
}

/* Fails the queries that must not wait for a connection (all of them when stopping). */
static void fail_waiting(struct pgc *c, const char *why, bool all)
{
    lw_list_foreach_safe (it, &c->queue) {
        struct pq *q = lw_container_of(it, struct pq, link);
        if (!all && !q->fail_fast)
            continue;
        lw_list_remove(&q->link);
        q->done(q->ctx, NULL, why);
        pq_free(q);
    }
}

static void lost(struct pgc *c, const char *why)
{
    bool was = c->up;
    stop_poll(c);
    PQfinish(c->pg);
    c->pg = NULL;
    PQclear(c->keep);
    c->keep = NULL;
    c->up = c->connecting = false;
    if (c->inflight)
        complete_head(c, NULL, why);
    if (was) {
        log_warn(STORE, "%s: database connection lost: %s", c->name, why);
        if (c->on_state)
            c->on_state(c->ctx, false);
    } else {
        log_debug(STORE, "%s: database not reachable, retrying in %u ms: %s", c->name,
                  c->backoff_ms, why);
    }
    fail_waiting(c, why, false);
    if (c->closing)
        return;
    uv_timer_start(c->retry, on_retry, c->backoff_ms, 0);
    c->backoff_ms = LW_MIN(c->backoff_ms * 2, BACKOFF_MAX_MS);
}

static void lost_pq(struct pgc *c)
{
    char why[256];
    snprintf(why, sizeof(why), "%s", c->pg ? PQerrorMessage(c->pg) : "out of memory");
    why[strcspn(why, "\n")] = '\0';
    lost(c, why[0] ? why : "connection failed");
}

static void quiet_notice(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

static void connect_step(struct pgc *c)
{
    switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_READING: watch(c, UV_READABLE); break;
    case PGRES_POLLING_WRITING: watch(c, UV_WRITABLE); break;
    case PGRES_POLLING_OK:
        c->connecting = false;
        if (PQsetnonblocking(c->pg, 1) != 0) {
            lost(c, "cannot make the connection non-blocking");
            return;
        }
        PQsetNoticeProcessor(c->pg, quiet_notice, NULL);
        c->up = true;
        c->backoff_ms = BACKOFF_MIN_MS;
        log_info(STORE, "%s: database connected", c->name);
        watch(c, UV_READABLE);
        if (c->on_state)
            c->on_state(c->ctx, true);
        if (c->pg)
            try_send(c);
        break;
    default: lost_pq(c); break;
    }
}

static void start_connect(struct pgc *c)
{
    if (c->closing)
        return;
    c->pg = PQconnectStart(c->url);
    if (!c->pg || PQstatus(c->pg) == CONNECTION_BAD) {
        lost_pq(c);
        return;
    }
    c->connecting = true;
    connect_step(c);
}

static void flush_out(struct pgc *c)
{
    int r = PQflush(c->pg);
    if (r < 0) {
        lost_pq(c);
        return;
    }
    c->flushing = r == 1;
    watch(c, c->flushing ? (UV_READABLE | UV_WRITABLE) : UV_READABLE);
}

static void try_send(struct pgc *c)
{
    if (!c->up || c->inflight || lw_list_empty(&c->queue))
        return;
    struct pq *q = lw_container_of(c->queue.next, struct pq, link);
    c->inflight = true;
    if (!PQsendQueryParams(c->pg, q->sql, q->n, NULL, (const char *const *)q->params, NULL, NULL,
                           0)) {
        lost_pq(c);
        return;
    }
    flush_out(c);
}

static void consume(struct pgc *c)
{
    if (!PQconsumeInput(c->pg)) {
        lost_pq(c);
        return;
    }
    while (c->inflight && !c->flushing && !PQisBusy(c->pg)) {
        PGresult *res = PQgetResult(c->pg);
        if (!res) {
            PGresult *k = c->keep;
            c->keep = NULL;
            complete_head(c, k, k ? NULL : "no result");
            PQclear(k);
            if (!c->pg)
                return;
            break;
        }
        ExecStatusType s = PQresultStatus(res);
        bool bad = s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK;
        bool keep_bad = c->keep && PQresultStatus(c->keep) != PGRES_COMMAND_OK &&
                        PQresultStatus(c->keep) != PGRES_TUPLES_OK;
        if (!keep_bad || (bad && !c->keep)) {
            PQclear(c->keep);
            c->keep = res;
        } else {
            PQclear(res);
        }
        if (PQstatus(c->pg) == CONNECTION_BAD) {
            lost(c, "connection broke during a query");
            return;
        }
    }
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        lost(c, "connection closed by the server");
        return;
    }
    try_send(c);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct pgc *c = h->data;
    if (!c->pg)
        return;
    if (c->connecting) {
        connect_step(c);
        return;
    }
    if (status < 0) {
        lost(c, uv_strerror(status));
        return;
    }
    if ((events & UV_WRITABLE) && c->flushing) {
        flush_out(c);
        if (!c->pg)
            return;
    }
    if (events & UV_READABLE)
        consume(c);
}

struct pgc *pgc_new(uv_loop_t *loop, const char *url, const char *name, pgc_state_fn on_state,
                    void *ctx)
{
    struct pgc *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->url = strdup(url);
    c->retry = malloc(sizeof(*c->retry));
    if (!c->url || !c->retry) {
        free(c->url);
        free(c->retry);
        free(c);
        return NULL;
    }
    c->loop = loop;
    snprintf(c->name, sizeof(c->name), "%s", name);
    lw_list_init(&c->queue);
    c->backoff_ms = BACKOFF_MIN_MS;
    c->on_state = on_state;
    c->ctx = ctx;
    uv_timer_init(loop, c->retry);
    c->retry->data = c;
    start_connect(c);
    return c;
}

void pgc_free(struct pgc *c)
{
    if (!c)
        return;
    c->closing = true;
    c->on_state = NULL;
    stop_poll(c);
    if (c->inflight)
        complete_head(c, NULL, "stopping");
    fail_waiting(c, "stopping", true);
    PQclear(c->keep);
    PQfinish(c->pg);
    uv_timer_stop(c->retry);
    uv_close((uv_handle_t *)c->retry, free_handle);
    free(c->url);
    free(c);
}

bool pgc_up(const struct pgc *c)
{
    return c && c->up;
}

size_t pgc_pending(const struct pgc *c)
{
    size_t n = 0;
    if (!c)
        return 0;
    for (const struct lw_list *it = c->queue.next; it != &c->queue; it = it->next)
        n++;
    return n;
}

int pgc_query(struct pgc *c, const char *sql, int n, char **params, bool fail_fast,
              pgc_done_fn done, void *ctx)
{
    struct pq *q = n <= MAX_PARAMS ? calloc(1, sizeof(*q)) : NULL;
    if (!q) {
        for (int i = 0; i < n; i++)
            free(params[i]);
        return LW_ENOMEM;
    }
    q->sql = sql;
    q->n = n;
    for (int i = 0; i < n; i++)
        q->params[i] = params[i];
    q->fail_fast = fail_fast;
    q->done = done;
    q->ctx = ctx;
    if (!c->up && fail_fast) {
        done(ctx, NULL, "database not connected");
        pq_free(q);
        return 0;
    }
    lw_list_push_back(&c->queue, &q->link);
    try_send(c);
    return 0;
}
