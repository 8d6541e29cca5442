/* server/store/opstore.c - durable queued operations and desired observations (opstore.h). */
#include "store/opstore.h"

#include "base/clock.h"
#include "base/err.h"
#include "base/list.h"
#include "base/util.h"
#include "log.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_MIN_MS 100u
#define BACKOFF_MAX_MS 10000u
#define STOP_BUDGET_MS 5000
#define MAX_PARAMS     8

enum job_kind { J_OP_PUT, J_OP_SENT, J_OP_DEL, J_OBS_PUT, J_OBS_DEL };

static const char *const job_sql[] = {
    [J_OP_PUT] = "INSERT INTO operations (id, endpoint, kind, path, format, request, created_at, "
                 "state) VALUES ($1::bigint, $2, $3, $4, $5::integer, $6::jsonb, "
                 "to_timestamp($7::double precision / 1000), 'queued') "
                 "ON CONFLICT (id) DO UPDATE SET request = EXCLUDED.request",
    [J_OP_SENT] = "UPDATE operations SET state = 'sent', attempts = attempts + 1 "
                  "WHERE id = $1::bigint",
    [J_OP_DEL] = "DELETE FROM operations WHERE id = $1::bigint",
    [J_OBS_PUT] = "INSERT INTO observations (id, endpoint, path, attributes, state, paths, "
                  "composite, attrs, created_at) VALUES ($1::bigint, $2, $3, $4, 'desired', "
                  "$5::jsonb, $6::boolean, $7::jsonb, to_timestamp($8::double precision / 1000)) "
                  "ON CONFLICT (id) DO NOTHING",
    [J_OBS_DEL] = "DELETE FROM observations WHERE id = $1::bigint",
};

struct job {
    struct lw_list link;
    enum job_kind kind;
    int n;
    char *p[MAX_PARAMS]; /* owned; NULL = SQL NULL */
    opstore_done_fn fn;
    uint64_t cookie;
};

static struct {
    bool started;
    uv_loop_t *loop;
    char *url; /* owned, secret: never logged */
    PGconn *pg;
    bool ready;
    bool inflight;   /* the head job was sent; its results are being read */
    bool flushing;   /* PQflush has more to write */
    bool job_ok;     /* every result of the job in flight succeeded so far */
    bool job_retry;  /* it failed for a reason that is not its content */
    char why[256];   /* first error of the job in flight */
    uv_poll_t *poll; /* owned; closed and freed on a new socket or at stop */
    int poll_fd;
    uv_timer_t retry_timer;
    unsigned backoff_ms;
    struct lw_list jobs; /* FIFO; the head is in flight when `inflight` */
    size_t njobs;
    bool was_connected;
} S;

static void job_free(struct job *j)
{
    for (int i = 0; i < j->n; i++)
        free(j->p[i]);
    free(j);
}

/* Completes and frees the head job. */
static void job_done(struct job *j, bool ok)
{
    lw_list_remove(&j->link);
    S.njobs--;
    if (j->fn)
        j->fn(j->cookie, ok);
    job_free(j);
}

size_t opstore_queued(void)
{
    return S.njobs;
}

bool opstore_enabled(void)
{
    return S.started;
}

/* ---- connection ---------------------------------------------------------------------------- */

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
    if (S.poll) {
        uv_poll_stop(S.poll);
        uv_close((uv_handle_t *)S.poll, free_handle);
        S.poll = NULL;
    }
}

static void on_poll(uv_poll_t *h, int status, int events);

static void watch(int events)
{
    int fd = PQsocket(S.pg);
    if (fd < 0)
        return;
    if (S.poll && S.poll_fd != fd)
        stop_poll();
    if (!S.poll) {
        if (!(S.poll = malloc(sizeof(*S.poll))))
            return;
        if (uv_poll_init_socket(S.loop, S.poll, fd) != 0) {
            free(S.poll);
            S.poll = NULL;
            return;
        }
        S.poll_fd = fd;
    }
    uv_poll_start(S.poll, events, on_poll);
}

static void on_retry(uv_timer_t *t)
{
    (void)t;
    start_connect();
}

static void connection_lost(const char *why)
{
    stop_poll();
    PQfinish(S.pg);
    S.pg = NULL;
    S.ready = S.inflight = S.flushing = false; /* the head job is sent again */
    if (S.was_connected)
        log_warn(STORE, "operations store: database connection lost, %zu write(s) wait: %s",
                 S.njobs, why);
    S.was_connected = false;
    uv_timer_start(&S.retry_timer, on_retry, S.backoff_ms, 0);
    S.backoff_ms = LW_MIN(S.backoff_ms * 2, BACKOFF_MAX_MS);
}

static void pg_error(char *out, size_t cap)
{
    snprintf(out, cap, "%s", S.pg ? PQerrorMessage(S.pg) : "no connection");
    out[strcspn(out, "\n")] = '\0';
}

static void connect_step(void)
{
    char why[256];
    switch (PQconnectPoll(S.pg)) {
    case PGRES_POLLING_READING: watch(UV_READABLE); break;
    case PGRES_POLLING_WRITING: watch(UV_WRITABLE); break;
    case PGRES_POLLING_OK:
        if (PQsetnonblocking(S.pg, 1) != 0) {
            connection_lost("cannot make the connection non-blocking");
            return;
        }
        PQsetNoticeProcessor(S.pg, quiet_notice, NULL);
        S.ready = true;
        S.was_connected = true;
        S.backoff_ms = BACKOFF_MIN_MS;
        log_info(STORE, "operations store connected: %zu write(s) queued", S.njobs);
        watch(UV_READABLE);
        try_send();
        break;
    default:
        pg_error(why, sizeof(why));
        connection_lost(why);
        break;
    }
}

static void start_connect(void)
{
    S.pg = PQconnectStart(S.url);
    if (!S.pg || PQstatus(S.pg) == CONNECTION_BAD) {
        connection_lost(S.pg ? "connection failed" : "out of memory");
        return;
    }
    connect_step();
}

/* ---- jobs ---------------------------------------------------------------------------------- */

static bool transient(const PGresult *res)
{
    const char *c = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    return c && (!strncmp(c, "08", 2) || !strncmp(c, "40", 2) || !strncmp(c, "53", 2) ||
                 !strncmp(c, "57", 2));
}

static void consume(void)
{
    char why[256];
    if (!PQconsumeInput(S.pg)) {
        pg_error(why, sizeof(why));
        connection_lost(why);
        return;
    }
    while (S.inflight && !S.flushing && !PQisBusy(S.pg)) {
        PGresult *res = PQgetResult(S.pg);
        if (!res) {
            struct job *j = lw_container_of(lw_list_first(&S.jobs), struct job, link);
            S.inflight = false;
            if (!S.job_ok && S.job_retry) {
                log_warn(STORE, "operations store: write not done, trying again: %s", S.why);
                uv_timer_start(&S.retry_timer, on_retry, S.backoff_ms, 0);
                stop_poll();
                PQfinish(S.pg);
                S.pg = NULL;
                S.ready = false;
                return;
            }
            if (!S.job_ok)
                log_err(STORE, "operations store: write refused by the database: %s", S.why);
            job_done(j, S.job_ok);
            break;
        }
        ExecStatusType st = PQresultStatus(res);
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && S.job_ok) {
            S.job_ok = false;
            S.job_retry = transient(res);
            snprintf(S.why, sizeof(S.why), "%s", PQresultErrorMessage(res));
            S.why[strcspn(S.why, "\n")] = '\0';
        }
        PQclear(res);
    }
    if (PQstatus(S.pg) == CONNECTION_BAD) {
        connection_lost("connection closed by the server");
        return;
    }
    if (!S.inflight)
        try_send();
}

static void flush_out(void)
{
    int r = PQflush(S.pg);
    if (r < 0) {
        connection_lost("write failed");
        return;
    }
    S.flushing = r == 1;
    watch(S.flushing ? (UV_READABLE | UV_WRITABLE) : UV_READABLE);
}

static void try_send(void)
{
    if (!S.ready || S.inflight || lw_list_empty(&S.jobs))
        return;
    struct job *j = lw_container_of(lw_list_first(&S.jobs), struct job, link);
    if (!PQsendQueryParams(S.pg, job_sql[j->kind], j->n, NULL, (const char *const *)j->p, NULL,
                           NULL, 0)) {
        char why[256];
        pg_error(why, sizeof(why));
        connection_lost(why);
        return;
    }
    S.inflight = true;
    S.job_ok = true;
    S.job_retry = false;
    S.why[0] = '\0';
    flush_out();
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    (void)h;
    if (!S.pg)
        return;
    if (!S.ready) {
        connect_step();
        return;
    }
    if (status < 0) {
        connection_lost(uv_strerror(status));
        return;
    }
    if ((events & UV_WRITABLE) && S.flushing) {
        flush_out();
        if (!S.pg)
            return;
    }
    if (events & UV_READABLE)
        consume();
}

/* Queues a job of kind with n parameters (copied; NULL stays NULL). */
static void enqueue(enum job_kind kind, int n, const char *const *p, opstore_done_fn fn,
                    uint64_t cookie)
{
    struct job *j = NULL;
    if (!S.started || S.njobs >= OPSTORE_QUEUE_MAX || !(j = calloc(1, sizeof(*j)))) {
        if (S.started)
            log_warn_rl(STORE, "operations store: write dropped (%zu queued)", S.njobs);
        if (fn)
            fn(cookie, false);
        return;
    }
    j->kind = kind;
    j->fn = fn;
    j->cookie = cookie;
    for (int i = 0; i < n; i++) {
        if (p[i] && !(j->p[i] = strdup(p[i]))) {
            j->n = i;
            job_free(j);
            if (fn)
                fn(cookie, false);
            return;
        }
    }
    j->n = n;
    lw_list_push_back(&S.jobs, &j->link);
    S.njobs++;
    try_send();
}

void opstore_op_put(uint64_t id, const char *ep, const char *kind, const char *path, int format,
                    const json_t *req, int64_t created_ms, opstore_done_fn fn, uint64_t cookie)
{
    char sid[24], sfmt[16], sms[24];
    char *r = json_dumps(req, JSON_COMPACT);
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)id);
    snprintf(sfmt, sizeof(sfmt), "%d", format);
    snprintf(sms, sizeof(sms), "%lld", (long long)created_ms);
    const char *p[7] = {sid, ep, kind, path, format >= 0 ? sfmt : NULL, r ? r : "{}", sms};
    enqueue(J_OP_PUT, 7, p, fn, cookie);
    free(r);
}

void opstore_op_sent(uint64_t id)
{
    char sid[24];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)id);
    const char *p[1] = {sid};
    enqueue(J_OP_SENT, 1, p, NULL, 0);
}

void opstore_op_del(uint64_t id)
{
    char sid[24];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)id);
    const char *p[1] = {sid};
    enqueue(J_OP_DEL, 1, p, NULL, 0);
}

void opstore_obs_put(uint64_t id, const char *ep, const json_t *paths, bool composite,
                     const json_t *attrs, const char *query, int64_t created_ms)
{
    char sid[24], sms[24];
    char *jp = json_dumps(paths, JSON_COMPACT);
    char *ja = attrs ? json_dumps(attrs, JSON_COMPACT) : NULL;
    const char *first = json_string_value(json_array_get(paths, 0));
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)id);
    snprintf(sms, sizeof(sms), "%lld", (long long)created_ms);
    const char *p[8] = {sid,
                        ep,
                        first ? first : "/",
                        query ? query : "",
                        jp ? jp : "[]",
                        composite ? "true" : "false",
                        ja,
                        sms};
    enqueue(J_OBS_PUT, 8, p, NULL, 0);
    free(jp);
    free(ja);
}

void opstore_obs_del(uint64_t id)
{
    char sid[24];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)id);
    const char *p[1] = {sid};
    enqueue(J_OBS_DEL, 1, p, NULL, 0);
}

int opstore_start(uv_loop_t *loop, const char *url)
{
    memset(&S, 0, sizeof(S));
    lw_list_init(&S.jobs);
    if (!url || !*url)
        return 0;
    if (!(S.url = strdup(url)))
        return LW_ENOMEM;
    S.loop = loop;
    S.backoff_ms = BACKOFF_MIN_MS;
    uv_timer_init(loop, &S.retry_timer);
    S.started = true;
    start_connect();
    return 0;
}

/* After the loop stopped: blocking writes of what is queued, within the budget. */
static void drain_blocking(void)
{
    int64_t deadline = lw_mono_ms() + STOP_BUDGET_MS;
    if (S.pg && S.inflight) {
        PQsetnonblocking(S.pg, 0);
        PQflush(S.pg);
        bool ok = true;
        PGresult *res;
        while ((res = PQgetResult(S.pg))) {
            ExecStatusType st = PQresultStatus(res);
            ok = ok && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK);
            PQclear(res);
        }
        S.inflight = false;
        if (ok)
            job_done(lw_container_of(lw_list_first(&S.jobs), struct job, link), true);
    }
    if (S.pg && PQstatus(S.pg) != CONNECTION_OK) {
        PQfinish(S.pg);
        S.pg = NULL;
    }
    if (!S.pg && !lw_list_empty(&S.jobs)) {
        S.pg = PQconnectdb(S.url);
        if (PQstatus(S.pg) != CONNECTION_OK) {
            PQfinish(S.pg);
            S.pg = NULL;
        }
    }
    if (S.pg)
        PQsetnonblocking(S.pg, 0);
    while (S.pg && !lw_list_empty(&S.jobs) && (int64_t)lw_mono_ms() < deadline) {
        struct job *j = lw_container_of(lw_list_first(&S.jobs), struct job, link);
        PGresult *res = PQexecParams(S.pg, job_sql[j->kind], j->n, NULL, (const char *const *)j->p,
                                     NULL, NULL, 0);
        ExecStatusType st = PQresultStatus(res);
        PQclear(res);
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && PQstatus(S.pg) != CONNECTION_OK)
            break;
        job_done(j, st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK);
    }
    if (S.njobs)
        log_warn(STORE, "operations store: %zu write(s) not done at stop", S.njobs);
}

void opstore_stop(void)
{
    if (!S.started)
        return;
    drain_blocking();
    struct lw_list *it;
    while ((it = lw_list_pop_front(&S.jobs))) {
        struct job *j = lw_container_of(it, struct job, link);
        if (j->fn)
            j->fn(j->cookie, false);
        job_free(j);
    }
    S.njobs = 0;
    stop_poll();
    PQfinish(S.pg);
    S.pg = NULL;
    uv_timer_stop(&S.retry_timer);
    uv_close((uv_handle_t *)&S.retry_timer, NULL);
    free(S.url);
    S.url = NULL;
    S.started = false;
}

/* ---- restore ------------------------------------------------------------------------------- */

static json_t *parse_json(const char *s)
{
    return s && *s ? json_loads(s, JSON_DECODE_ANY, NULL) : json_null();
}

int opstore_load(const char *url, void (*on_op)(void *ctx, const json_t *row),
                 void (*on_obs)(void *ctx, const json_t *row), void *ctx)
{
    int rc = 0;
    PGresult *res = NULL;
    PGconn *pg = PQconnectdb(url);
    if (PQstatus(pg) != CONNECTION_OK) {
        char why[256];
        snprintf(why, sizeof(why), "%s", PQerrorMessage(pg));
        why[strcspn(why, "\n")] = '\0';
        log_warn(STORE, "operations store: cannot restore queued operations and observations: %s",
                 why);
        rc = LW_EIO;
        goto out;
    }
    res = PQexec(pg, "SELECT id, endpoint, kind, path, format, request::text, "
                     "(extract(epoch FROM created_at) * 1000)::bigint, state = 'sent' "
                     "FROM operations ORDER BY id");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        log_warn(STORE, "operations store: cannot read queued operations: %s",
                 PQresultErrorMessage(res));
        rc = LW_EIO;
        goto out;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        json_t *row = json_pack(
            "{s:I,s:s,s:s,s:s,s:o,s:o,s:I,s:b}", "id",
            (json_int_t)strtoll(PQgetvalue(res, i, 0), 0, 10), "endpoint", PQgetvalue(res, i, 1),
            "kind", PQgetvalue(res, i, 2), "path", PQgetvalue(res, i, 3), "format",
            PQgetisnull(res, i, 4) ? json_null()
                                   : json_integer(strtol(PQgetvalue(res, i, 4), NULL, 10)),
            "request", parse_json(PQgetvalue(res, i, 5)), "created_ms",
            (json_int_t)strtoll(PQgetvalue(res, i, 6), NULL, 10), "sent",
            PQgetvalue(res, i, 7)[0] == 't');
        if (row && on_op)
            on_op(ctx, row);
        json_decref(row);
    }
    PQclear(res);
    res = PQexec(pg, "SELECT id, endpoint, paths::text, composite, attrs::text, "
                     "(extract(epoch FROM created_at) * 1000)::bigint FROM observations "
                     "WHERE state = 'desired' ORDER BY id");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        log_warn(STORE, "operations store: cannot read observations: %s",
                 PQresultErrorMessage(res));
        rc = LW_EIO;
        goto out;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        json_t *row = json_pack(
            "{s:I,s:s,s:o,s:b,s:o,s:I}", "id", (json_int_t)strtoll(PQgetvalue(res, i, 0), 0, 10),
            "endpoint", PQgetvalue(res, i, 1), "paths", parse_json(PQgetvalue(res, i, 2)),
            "composite", PQgetvalue(res, i, 3)[0] == 't', "attrs",
            PQgetisnull(res, i, 4) ? json_null() : parse_json(PQgetvalue(res, i, 4)), "created_ms",
            (json_int_t)strtoll(PQgetvalue(res, i, 5), NULL, 10));
        if (row && on_obs)
            on_obs(ctx, row);
        json_decref(row);
    }
out:
    PQclear(res);
    PQfinish(pg);
    return rc;
}
