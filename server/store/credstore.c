/* server/store/credstore.c - durable credentials and control-loop database writes (credstore.h). */
#include "store/credstore.h"

#include "base/buf.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/list.h"
#include "base/util.h"
#include "log.h"
#include "store/migrate.h"

#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

/* ---- the job queue on one non-blocking connection ---------------------------------------------
 */

struct job {
    struct lw_list link;
    struct credstore_job j; /* values point into the copies below */
    char *copies[CREDSTORE_MAX_PARAMS];
    size_t copy_len[CREDSTORE_MAX_PARAMS];
    uint64_t deadline_ms;
    bool retried;
};

static struct {
    bool started;
    uv_loop_t *loop;
    char *url; /* owned, secret: never logged */
    PGconn *pg;
    bool connecting, ready;
    uv_poll_t *poll; /* owned; closed and freed on a new socket or at stop */
    int poll_fd;
    uv_timer_t kick, tick;
    struct lw_list queue; /* waiting jobs, in order */
    unsigned nqueued;
    struct job *inflight;
    bool flushing;
    int result_rc; /* of the job in flight so far */
    char result_why[256];
    char *val0;
} cs = {.queue = {&cs.queue, &cs.queue}};

static void pump(void);

/* Background retry of the start-up restore (see credstore_restore). */
static bool restore_pending;
static uv_timer_t restore_timer;
static void restore_retry(uv_timer_t *t);

static void on_kick(uv_timer_t *t)
{
    (void)t;
    pump();
}

static void free_job(struct job *jb)
{
    for (int i = 0; i < CREDSTORE_MAX_PARAMS; i++) {
        if (jb->copies[i]) {
            lw_secure_zero(jb->copies[i], jb->copy_len[i]);
            free(jb->copies[i]);
        }
    }
    free(jb);
}

static void complete(struct job *jb, int rc, const char *val0, const char *why)
{
    jb->j.done(jb->j.ctx, rc, rc ? NULL : val0, rc ? why : NULL);
    free_job(jb);
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

static void stop_poll(void)
{
    if (cs.poll) {
        uv_poll_stop(cs.poll);
        uv_close((uv_handle_t *)cs.poll, free_handle);
        cs.poll = NULL;
    }
}

static void quiet_notice(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

static void on_poll(uv_poll_t *h, int status, int events);

static void watch(int events)
{
    int fd = PQsocket(cs.pg);
    if (fd < 0)
        return;
    if (cs.poll && cs.poll_fd != fd)
        stop_poll();
    if (!cs.poll) {
        cs.poll = malloc(sizeof(*cs.poll));
        if (!cs.poll)
            return;
        if (uv_poll_init_socket(cs.loop, cs.poll, fd) != 0) {
            free(cs.poll);
            cs.poll = NULL;
            return;
        }
        cs.poll_fd = fd;
    }
    uv_poll_start(cs.poll, events, on_poll);
}

static void close_conn(void)
{
    stop_poll();
    PQfinish(cs.pg);
    cs.pg = NULL;
    cs.connecting = cs.ready = cs.flushing = false;
    free(cs.val0);
    cs.val0 = NULL;
}

/* Fails the job in flight and every queued one. */
static void fail_all(int rc, const char *why)
{
    struct lw_list *it;
    struct job *jb = cs.inflight;
    cs.inflight = NULL;
    if (jb)
        complete(jb, rc, NULL, why);
    while ((it = lw_list_pop_front(&cs.queue))) {
        cs.nqueued--;
        complete(lw_container_of(it, struct job, link), rc, NULL, why);
    }
}

static void one_line(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src && *src ? src : "unknown error");
    dst[strcspn(dst, "\n")] = '\0';
}

/* The connection broke (or could not be made). The job in flight, when it got no answer yet, is
 * retried once on a new connection (an idle connection the server closed meanwhile, e.g. after a
 * database restart, is only noticed when used); the rest, and a job already retried, fail. */
static void connection_lost(const char *what)
{
    char why[300];
    snprintf(why, sizeof(why), "database connection: %s", what);
    bool retry = cs.inflight && !cs.inflight->retried && cs.result_rc == 0 && !cs.val0;
    close_conn();
    if (retry) {
        cs.inflight->retried = true;
        lw_list_push_front(&cs.queue, &cs.inflight->link);
        cs.nqueued++;
        cs.inflight = NULL;
        log_info(STORE, "credential store: idle connection found closed, reconnecting: %s", what);
        uv_timer_start(&cs.kick, on_kick, 0, 0);
        return;
    }
    log_warn_rl(STORE, "credential store: %s", why);
    fail_all(LW_EDB, why);
}

static void send_next(void);

static void connect_step(void)
{
    switch (PQconnectPoll(cs.pg)) {
    case PGRES_POLLING_READING: watch(UV_READABLE); break;
    case PGRES_POLLING_WRITING: watch(UV_WRITABLE); break;
    case PGRES_POLLING_OK:
        cs.connecting = false;
        if (PQsetnonblocking(cs.pg, 1) != 0) {
            connection_lost("cannot make the connection non-blocking");
            return;
        }
        PQsetNoticeProcessor(cs.pg, quiet_notice, NULL);
        cs.ready = true;
        watch(UV_READABLE);
        send_next();
        break;
    default: {
        char why[256];
        one_line(why, sizeof(why), PQerrorMessage(cs.pg));
        connection_lost(why);
        break;
    }
    }
}

static void start_connect(void)
{
    cs.pg = PQconnectStart(cs.url);
    if (!cs.pg || PQstatus(cs.pg) == CONNECTION_BAD) {
        char why[256];
        one_line(why, sizeof(why), cs.pg ? PQerrorMessage(cs.pg) : "out of memory");
        connection_lost(why);
        return;
    }
    cs.connecting = true;
    connect_step();
}

static void flush_out(void)
{
    int r = PQflush(cs.pg);
    if (r < 0) {
        connection_lost("write failed");
        return;
    }
    cs.flushing = r == 1;
    watch(cs.flushing ? (UV_READABLE | UV_WRITABLE) : UV_READABLE);
}

/* Sends the head of the queue (its precheck first) when the connection is idle. */
static void send_next(void)
{
    struct lw_list *it;
    while (cs.ready && !cs.inflight && (it = lw_list_pop_front(&cs.queue))) {
        cs.nqueued--;
        struct job *jb = lw_container_of(it, struct job, link);
        int rc = jb->j.check ? jb->j.check(jb->j.ctx) : 0;
        if (rc) {
            complete(jb, rc, NULL, "refused before writing");
            continue;
        }
        cs.inflight = jb;
        cs.result_rc = 0;
        cs.result_why[0] = '\0';
        free(cs.val0);
        cs.val0 = NULL;
        if (!PQsendQueryParams(cs.pg, jb->j.sql, jb->j.nparams, NULL, jb->j.values, jb->j.lengths,
                               jb->j.formats, jb->j.rows ? 1 : 0)) {
            char why[256];
            one_line(why, sizeof(why), PQerrorMessage(cs.pg));
            connection_lost(why);
            return;
        }
        flush_out();
        return;
    }
}

static void consume(void)
{
    if (!PQconsumeInput(cs.pg)) {
        char why[256];
        one_line(why, sizeof(why), PQerrorMessage(cs.pg));
        connection_lost(why);
        return;
    }
    while (cs.inflight && !cs.flushing && !PQisBusy(cs.pg)) {
        PGresult *res = PQgetResult(cs.pg);
        if (!res) {
            struct job *jb = cs.inflight;
            cs.inflight = NULL;
            complete(jb, cs.result_rc, cs.val0, cs.result_why);
            free(cs.val0);
            cs.val0 = NULL;
            break;
        }
        ExecStatusType s = PQresultStatus(res);
        if (s == PGRES_TUPLES_OK && cs.inflight->j.rows && cs.result_rc == 0)
            cs.inflight->j.rows(cs.inflight->j.ctx, res);
        else if (s == PGRES_TUPLES_OK && !cs.val0 && PQntuples(res) > 0 && PQnfields(res) > 0 &&
                 !PQgetisnull(res, 0, 0))
            cs.val0 = strdup(PQgetvalue(res, 0, 0));
        if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK && cs.result_rc == 0) {
            const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
            cs.result_rc = code && strcmp(code, "23505") == 0 ? LW_EEXIST : LW_EDB;
            one_line(cs.result_why, sizeof(cs.result_why), PQresultErrorMessage(res));
        }
        PQclear(res);
    }
    if (PQstatus(cs.pg) == CONNECTION_BAD) {
        connection_lost("connection closed by the server");
        return;
    }
    if (!cs.inflight)
        send_next();
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    (void)h;
    if (!cs.pg)
        return;
    if (cs.connecting) {
        connect_step();
        return;
    }
    if (status < 0) {
        connection_lost(uv_strerror(status));
        return;
    }
    if ((events & UV_WRITABLE) && cs.flushing) {
        flush_out();
        if (!cs.pg)
            return;
    }
    if (events & UV_READABLE)
        consume();
}

static void pump(void)
{
    if (!cs.started || lw_list_empty(&cs.queue))
        return;
    if (!cs.pg)
        start_connect();
    else if (cs.ready)
        send_next();
}

/* Deadlines: a stuck job (or connect) fails everything waiting and drops the connection, so the
 * next job starts afresh. */
static void on_tick(uv_timer_t *t)
{
    (void)t;
    uint64_t now = lw_mono_ms();
    struct job *head = cs.inflight;
    if (!head && !lw_list_empty(&cs.queue))
        head = lw_container_of(cs.queue.next, struct job, link);
    if (!head || now < head->deadline_ms)
        return;
    log_warn_rl(STORE, "credential store: database did not answer within %u ms",
                CREDSTORE_TIMEOUT_MS);
    close_conn();
    fail_all(LW_ETIMEDOUT, "the database did not answer in time");
}

int credstore_start(uv_loop_t *loop, const struct lw_config *cfg)
{
    if (!cfg->db_url || !*cfg->db_url)
        return 0;
    cs.url = strdup(cfg->db_url);
    if (!cs.url)
        return LW_ENOMEM;
    cs.loop = loop;
    lw_list_init(&cs.queue);
    cs.nqueued = 0;
    uv_timer_init(loop, &cs.kick);
    uv_timer_init(loop, &cs.tick);
    uv_timer_start(&cs.tick, on_tick, 250, 250);
    uv_timer_init(loop, &restore_timer);
    cs.started = true;
    if (restore_pending)
        uv_timer_start(&restore_timer, restore_retry, 1000, 0);
    return 0;
}

void credstore_stop(void)
{
    if (!cs.started)
        return;
    cs.started = false;
    close_conn();
    fail_all(LW_EDB, "the server is stopping");
    uv_timer_stop(&cs.kick);
    uv_timer_stop(&cs.tick);
    uv_timer_stop(&restore_timer);
    uv_close((uv_handle_t *)&cs.kick, NULL);
    uv_close((uv_handle_t *)&cs.tick, NULL);
    uv_close((uv_handle_t *)&restore_timer, NULL);
    free(cs.url);
    cs.url = NULL;
}

bool credstore_enabled(void)
{
    return cs.started;
}

int credstore_submit(const struct credstore_job *job)
{
    if (!cs.started || job->nparams < 0 || job->nparams > CREDSTORE_MAX_PARAMS || !job->done)
        return LW_EINVAL;
    if (cs.nqueued >= CREDSTORE_QUEUE_MAX)
        return LW_ELIMIT;
    struct job *jb = calloc(1, sizeof(*jb));
    if (!jb)
        return LW_ENOMEM;
    jb->j = *job;
    for (int i = 0; i < job->nparams; i++) {
        if (!job->values[i])
            continue;
        size_t n = job->formats[i] ? (size_t)job->lengths[i] : strlen(job->values[i]) + 1;
        jb->copies[i] = malloc(n ? n : 1);
        if (!jb->copies[i]) {
            free_job(jb);
            return LW_ENOMEM;
        }
        memcpy(jb->copies[i], job->values[i], n);
        jb->copy_len[i] = n;
        jb->j.values[i] = jb->copies[i];
    }
    jb->deadline_ms = lw_mono_ms() + CREDSTORE_TIMEOUT_MS;
    lw_list_push_back(&cs.queue, &jb->link);
    cs.nqueued++;
    uv_timer_start(&cs.kick, on_kick, 0, 0);
    return 0;
}

/* ---- credentials rows ------------------------------------------------------------------------ */

/* Sealed record: format (1) | mode (1) | flags (1: bit 0 pin present) | key length (1) | key |
 * pin (32, when present). The identity is the row's identity column, bound as associated data. */
#define REC_FORMAT 1

const char *credstore_kind(enum creds_mode mode)
{
    switch (mode) {
    case CREDS_PSK: return "psk";
    case CREDS_RPK: return "rpk";
    case CREDS_X509: return "x509";
    default: return NULL;
    }
}

static size_t row_ad(uint8_t *ad, size_t cap, const char *ep, const char *kind, const uint8_t *id,
                     size_t id_len)
{
    const uint8_t *parts[3] = {(const uint8_t *)ep, (const uint8_t *)kind, id};
    size_t lens[3] = {strlen(ep), strlen(kind), id_len};
    return secrets_row_ad(ad, cap, "credentials", 3, parts, lens);
}

int credstore_seal(const struct secrets_ring *ring, const char *ep, const struct creds_spec *spec,
                   uint8_t *id, size_t *id_len, uint8_t *blob, size_t *blob_len)
{
    uint8_t rec[4 + CREDS_KEY_MAX + 32], ad[SECRETS_AD_MAX];
    size_t n = 0;
    int rc;
    const char *kind = credstore_kind(spec->mode);
    if (!kind || spec->key_len > CREDS_KEY_MAX || spec->id_len > CREDS_ID_MAX ||
        (spec->id_len && !spec->id) || (spec->key_len && !spec->key))
        return LW_EINVAL;
    if (!secrets_ring_current(ring))
        return LW_ENOENT;
    switch (spec->mode) {
    case CREDS_PSK:
        memcpy(id, spec->id, spec->id_len);
        *id_len = spec->id_len;
        break;
    case CREDS_RPK:
        if (!spec->has_pin)
            return LW_EINVAL;
        memcpy(id, spec->pin, 32);
        *id_len = 32;
        break;
    default:
        if (spec->id_len)
            memcpy(id, spec->id, spec->id_len);
        *id_len = spec->id ? spec->id_len : 0;
        break;
    }
    rec[n++] = REC_FORMAT;
    rec[n++] = (uint8_t)spec->mode;
    rec[n++] = spec->has_pin ? 1 : 0;
    rec[n++] = spec->mode == CREDS_PSK ? (uint8_t)spec->key_len : 0;
    if (spec->mode == CREDS_PSK) {
        memcpy(rec + n, spec->key, spec->key_len);
        n += spec->key_len;
    }
    if (spec->has_pin) {
        memcpy(rec + n, spec->pin, 32);
        n += 32;
    }
    size_t adl = row_ad(ad, sizeof(ad), ep, kind, id, *id_len);
    rc = adl ? secrets_seal(ring, ad, adl, rec, n, blob, CREDSTORE_BLOB_MAX, blob_len) : LW_EINVAL;
    lw_secure_zero(rec, sizeof(rec));
    return rc;
}

int credstore_open(const struct secrets_ring *ring, const char *ep, const char *kind,
                   const uint8_t *id, size_t id_len, const uint8_t *blob, size_t blob_len,
                   struct creds_spec *spec, uint8_t *idbuf, uint8_t *keybuf)
{
    uint8_t rec[4 + CREDS_KEY_MAX + 32 + 1], ad[SECRETS_AD_MAX];
    size_t n;
    int rc = LW_EMALFORMED;
    if (id_len > CREDS_ID_MAX)
        return LW_EMALFORMED;
    size_t adl = row_ad(ad, sizeof(ad), ep, kind, id, id_len);
    if (!adl)
        return LW_EMALFORMED;
    rc = secrets_open(ring, ad, adl, blob, blob_len, rec, sizeof(rec), &n, NULL);
    if (rc == LW_ENOSPC)
        rc = LW_EMALFORMED;
    if (rc)
        goto out;
    rc = LW_EMALFORMED;
    if (n < 4 || rec[0] != REC_FORMAT || rec[2] > 1)
        goto out;
    const char *want = credstore_kind((enum creds_mode)rec[1]);
    bool pin = rec[2] & 1;
    size_t kl = rec[3];
    if (!want || strcmp(want, kind) != 0 || kl > CREDS_KEY_MAX || n != 4 + kl + (pin ? 32 : 0))
        goto out;
    memset(spec, 0, sizeof(*spec));
    spec->mode = (enum creds_mode)rec[1];
    memcpy(keybuf, rec + 4, kl);
    spec->key = kl ? keybuf : NULL;
    spec->key_len = kl;
    spec->has_pin = pin;
    if (pin)
        memcpy(spec->pin, rec + 4 + kl, 32);
    if (id_len)
        memcpy(idbuf, id, id_len);
    spec->id = id_len ? idbuf : NULL;
    spec->id_len = id_len;
    if (spec->mode == CREDS_RPK && (!pin || id_len != 32 || memcmp(id, spec->pin, 32) != 0))
        goto out;
    rc = 0;
out:
    lw_secure_zero(rec, sizeof(rec));
    return rc;
}

/* ---- restore at start ------------------------------------------------------------------------ */

static const char restore_sql[] =
    "SELECT endpoint, kind, identity, secret, extract(epoch FROM updated_at)::bigint FROM "
    "credentials ORDER BY endpoint, kind";

/* Loads the rows of a restore_sql result (binary). With keep_newer, endpoints that already have
 * credentials in memory (changed through the API since the start) are left alone. Returns
 * LW_ENOMEM or 0; counts into *ok / *skipped. */
static int restore_rows(const PGresult *res, bool keep_newer, unsigned *ok, unsigned *skipped)
{
    const struct secrets_ring *ring = secrets_ring();
    for (int i = 0; i < PQntuples(res); i++) {
        char ep[CREDS_EP_MAX + 1], kind[8];
        uint8_t idbuf[CREDS_ID_MAX], keybuf[CREDS_KEY_MAX];
        struct creds_spec spec;
        int el = PQgetlength(res, i, 0), kl = PQgetlength(res, i, 1);
        if (PQnfields(res) != 5 || el <= 0 || el > CREDS_EP_MAX || kl <= 0 ||
            kl >= (int)sizeof(kind)) {
            log_warn(STORE, "credentials row skipped: bad endpoint or kind");
            (*skipped)++;
            continue;
        }
        memcpy(ep, PQgetvalue(res, i, 0), (size_t)el);
        ep[el] = '\0';
        memcpy(kind, PQgetvalue(res, i, 1), (size_t)kl);
        kind[kl] = '\0';
        if (keep_newer && creds_ep_secured(ep, (size_t)el))
            continue;
        int64_t at = PQgetlength(res, i, 4) == 8
                         ? (int64_t)lw_load_be64((const uint8_t *)PQgetvalue(res, i, 4))
                         : 0;
        int orc = ring ? credstore_open(ring, ep, kind, (const uint8_t *)PQgetvalue(res, i, 2),
                                        (size_t)PQgetlength(res, i, 2),
                                        (const uint8_t *)PQgetvalue(res, i, 3),
                                        (size_t)PQgetlength(res, i, 3), &spec, idbuf, keybuf)
                       : LW_ENOENT;
        if (orc == 0)
            orc = creds_put(ep, &spec, at);
        lw_secure_zero(keybuf, sizeof(keybuf));
        if (orc == 0) {
            (*ok)++;
            continue;
        }
        (*skipped)++;
        const char *why = orc == LW_ENOENT   ? "its master key is not configured"
                          : orc == LW_EPERM  ? "authentication failed (wrong key or altered row)"
                          : orc == LW_EEXIST ? "its identity belongs to another endpoint"
                          : orc == LW_ENOMEM ? "out of memory"
                                             : "malformed record";
        log_warn(STORE, "credentials not restored: endpoint=%s kind=%s: %s", ep, kind, why);
        if (orc == LW_ENOMEM)
            return LW_ENOMEM;
    }
    return 0;
}

/* The restore at start could not reach the database: retried in the background on the loop until
 * it works (devices whose credentials are in the database can authenticate from then on). */
static unsigned restore_ok, restore_skipped;

static void restore_job_rows(void *ctx, const PGresult *res)
{
    (void)ctx;
    restore_rows(res, true, &restore_ok, &restore_skipped);
}

static void restore_job_done(void *ctx, int rc, const char *val0, const char *why)
{
    (void)ctx;
    (void)val0;
    if (rc == 0) {
        restore_pending = false;
        log_notice(STORE, "credentials restored once the database answered: count=%u skipped=%u",
                   restore_ok, restore_skipped);
    } else if (cs.started) {
        log_info(STORE, "credentials still not restored, retrying in 5 s: %s",
                 why ? why : lw_strerror(rc));
        uv_timer_start(&restore_timer, restore_retry, 5000, 0);
    }
}

static void restore_retry(uv_timer_t *t)
{
    (void)t;
    restore_ok = restore_skipped = 0;
    struct credstore_job job = {
        .sql = restore_sql, .rows = restore_job_rows, .done = restore_job_done};
    if (credstore_submit(&job) != 0)
        uv_timer_start(&restore_timer, restore_retry, 5000, 0);
}

int credstore_restore(const struct lw_config *cfg)
{
    unsigned ok = 0, skipped = 0;
    int rc = 0;
    uint64_t t0 = lw_mono_ms();
    restore_pending = false;
    if (!cfg->db_url || !*cfg->db_url)
        return 0;
    if ((rc = creds_init()) != 0)
        return rc;
    /* a bounded connect: an unreachable database must not hold the start */
    const char *keys[] = {"dbname", "connect_timeout", NULL};
    const char *vals[] = {cfg->db_url, "10", NULL};
    PGconn *pg = PQconnectdbParams(keys, vals, 1);
    PGresult *res = NULL;
    if (PQstatus(pg) != CONNECTION_OK) {
        char why[256];
        one_line(why, sizeof(why), PQerrorMessage(pg));
        log_warn(STORE,
                 "credentials not restored yet (retried in the background): cannot "
                 "connect to the database: %s",
                 why);
        restore_pending = true;
        goto out;
    }
    res = PQexecParams(pg, restore_sql, 0, NULL, NULL, NULL, NULL, 1 /* binary */);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        char why[256];
        one_line(why, sizeof(why), PQresultErrorMessage(res));
        log_warn(STORE, "credentials not restored yet (retried in the background): %s", why);
        restore_pending = true;
        goto out;
    }
    rc = restore_rows(res, false, &ok, &skipped);
    log_info(STORE, "credentials restored: count=%u skipped=%u duration_ms=%llu", ok, skipped,
             (unsigned long long)(lw_mono_ms() - t0));
out:
    PQclear(res);
    PQfinish(pg);
    return rc;
}

/* ---- lwm2md rekey ---------------------------------------------------------------------------- */

/* A table whose rows carry a sealed blob: its key columns (text, in associated-data order), the
 * blob column, and whether the row also has key_id / nonce columns to keep in step. */
struct sealed_table {
    const char *table;
    const char *keys; /* SQL list of the columns forming the associated data */
    int nkeys;
    const char *blob;
    const char *where_id; /* SQL condition naming the row by $1..$nkeys */
};

static const struct sealed_table sealed_tables[] = {
    {"credentials", "endpoint, kind, identity", 3, "secret",
     "endpoint = $1 AND kind = $2 AND identity = $3"},
    {"dtls_sessions", "endpoint", 1, "state", "endpoint = $1"},
    {"webhook_subscriptions", "id::text", 1, "secret", "id = $1::bigint"},
};

static int rekey_table(PGconn *pg, const struct secrets_ring *ring, const struct sealed_table *t,
                       bool dry, unsigned *done, unsigned *bad, FILE *err)
{
    char sql[512];
    uint32_t cur = secrets_ring_current(ring);
    snprintf(sql, sizeof(sql), "SELECT %s, %s FROM %s WHERE key_id <> %u FOR UPDATE", t->keys,
             t->blob, t->table, cur);
    PGresult *res = PQexecParams(pg, sql, 0, NULL, NULL, NULL, NULL, 1);
    int rc = 0;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        fprintf(err, "lwm2md rekey: %s: %s", t->table, PQresultErrorMessage(res));
        PQclear(res);
        return LW_EDB;
    }
    snprintf(sql, sizeof(sql),
             "UPDATE %s SET %s = $%d, key_id = $%d::integer, nonce = $%d WHERE %s", t->table,
             t->blob, t->nkeys + 1, t->nkeys + 2, t->nkeys + 3, t->where_id);
    for (int i = 0; i < PQntuples(res) && rc == 0; i++) {
        const uint8_t *parts[3];
        size_t lens[3];
        uint8_t ad[SECRETS_AD_MAX], pt[65536], blob[65536 + SECRETS_OVERHEAD];
        uint8_t nonce[SECRETS_NONCE_LEN];
        size_t pl, bl;
        uint32_t kid;
        for (int k = 0; k < t->nkeys; k++) {
            parts[k] = (const uint8_t *)PQgetvalue(res, i, k);
            lens[k] = (size_t)PQgetlength(res, i, k);
        }
        size_t adl = secrets_row_ad(ad, sizeof(ad), t->table, (size_t)t->nkeys, parts, lens);
        const uint8_t *old = (const uint8_t *)PQgetvalue(res, i, t->nkeys);
        size_t oldl = (size_t)PQgetlength(res, i, t->nkeys);
        int orc =
            adl ? secrets_open(ring, ad, adl, old, oldl, pt, sizeof(pt), &pl, &kid) : LW_EMALFORMED;
        if (orc == 0)
            orc = secrets_seal(ring, ad, adl, pt, pl, blob, sizeof(blob), &bl);
        lw_secure_zero(pt, sizeof(pt));
        if (orc) {
            fprintf(err, "lwm2md rekey: %s row %.*s cannot be opened: %s\n", t->table,
                    (int)LW_MIN(lens[0], 200), (const char *)parts[0],
                    orc == LW_ENOENT ? "its key is not in the key ring"
                                     : "authentication failed or malformed");
            (*bad)++;
            continue;
        }
        if (dry) {
            (*done)++;
            continue;
        }
        char kidtxt[16];
        secrets_blob_info(blob, bl, &kid, nonce);
        snprintf(kidtxt, sizeof(kidtxt), "%u", kid);
        const char *vals[6];
        int lv[6], fm[6];
        for (int k = 0; k < t->nkeys; k++) {
            vals[k] = (const char *)parts[k];
            lv[k] = (int)lens[k];
            fm[k] = 1;
        }
        /* identity is bytea, the other key columns text: binary text params are the bytes */
        vals[t->nkeys] = (const char *)blob;
        lv[t->nkeys] = (int)bl;
        fm[t->nkeys] = 1;
        vals[t->nkeys + 1] = kidtxt;
        lv[t->nkeys + 1] = 0;
        fm[t->nkeys + 1] = 0;
        vals[t->nkeys + 2] = (const char *)nonce;
        lv[t->nkeys + 2] = SECRETS_NONCE_LEN;
        fm[t->nkeys + 2] = 1;
        /* id::text of webhook_subscriptions goes back as text */
        if (strcmp(t->table, "webhook_subscriptions") == 0)
            fm[0] = 0;
        PGresult *u = PQexecParams(pg, sql, t->nkeys + 3, NULL, vals, lv, fm, 0);
        if (PQresultStatus(u) != PGRES_COMMAND_OK) {
            fprintf(err, "lwm2md rekey: %s: %s", t->table, PQresultErrorMessage(u));
            rc = LW_EDB;
        } else {
            (*done)++;
        }
        PQclear(u);
    }
    PQclear(res);
    return rc;
}

int credstore_cli_rekey(const struct lw_config *cfg, int argc, char **argv, FILE *out, FILE *err)
{
    struct secrets_ring *ring = NULL;
    char why[512] = "";
    bool dry = false;
    int status = 1;
    PGconn *pg = NULL;
    PGresult *res = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dry-run") == 0) {
            dry = true;
        } else {
            fprintf(err, "usage: lwm2md [--config FILE] rekey [--dry-run]\n");
            return 2;
        }
    }
    if (!cfg->db_url || !*cfg->db_url) {
        fprintf(err, "lwm2md rekey: database.url is not set\n");
        return 1;
    }
    int rc = secrets_ring_from_config(cfg, &ring, why, sizeof(why));
    if (rc || !ring) {
        fprintf(err, "lwm2md rekey: %s\n",
                rc ? why : "no master key configured (security.master_key_file)");
        return 1;
    }
    pg = PQconnectdb(cfg->db_url);
    if (PQstatus(pg) != CONNECTION_OK) {
        fprintf(err, "lwm2md rekey: cannot connect to the database: %s", PQerrorMessage(pg));
        goto out;
    }
    if (cfg->db_migrate == LW_MIGRATE_AUTO &&
        (rc = lw_store_migrate(pg, cfg->db_schema_dir, NULL, why, sizeof(why))) != 0 &&
        rc != LW_ENOENT) {
        fprintf(err, "lwm2md rekey: schema migration failed: %s\n", why);
        goto out;
    }
    res = PQexec(pg, "BEGIN");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        fprintf(err, "lwm2md rekey: %s", PQerrorMessage(pg));
        goto out;
    }
    unsigned done = 0, bad = 0;
    rc = 0;
    for (size_t i = 0; i < LW_ARRAY_SIZE(sealed_tables) && rc == 0; i++) {
        unsigned d = 0, b = 0;
        rc = rekey_table(pg, ring, &sealed_tables[i], dry, &d, &b, err);
        if (rc == 0 && (d || b))
            fprintf(out, "%s: %u row(s) %s, %u unreadable\n", sealed_tables[i].table, d,
                    dry ? "to re-seal" : "re-sealed", b);
        done += d;
        bad += b;
    }
    PQclear(res);
    if (rc == 0 && !dry) {
        char detail[64];
        snprintf(detail, sizeof(detail), "{\"rows\": %u, \"key_id\": %u}", done,
                 secrets_ring_current(ring));
        const char *ap[2] = {bad ? "500" : "200", detail};
        res = PQexecParams(pg,
                           "INSERT INTO audit_log (actor, action, target, result, detail) VALUES "
                           "('cli', 'rekey', '', $1::integer, $2::jsonb)",
                           2, NULL, ap, NULL, NULL, 0);
        PQclear(res);
    }
    res = PQexec(pg, rc == 0 && !dry ? "COMMIT" : "ROLLBACK");
    if (rc == 0 && PQresultStatus(res) != PGRES_COMMAND_OK) {
        fprintf(err, "lwm2md rekey: commit failed: %s", PQerrorMessage(pg));
        rc = LW_EDB;
    }
    if (rc == 0) {
        fprintf(out, "rekey %s: %u row(s) %s under key %u, %u unreadable\n",
                dry ? "dry run" : "done", done, dry ? "would be re-sealed" : "re-sealed",
                secrets_ring_current(ring), bad);
        status = bad ? 1 : 0;
    } else {
        fprintf(err, "lwm2md rekey: nothing changed\n");
    }
out:
    PQclear(res);
    PQfinish(pg);
    secrets_ring_free(ring);
    return status;
}
