/* server/store/sessions.c - hibernated DTLS sessions in PostgreSQL (see sessions.h). */
#include "store/sessions.h"

#include "base/err.h"
#include "base/hash.h"
#include "base/util.h"
#include "log.h"
#include "metrics.h"
#include "secrets.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STATE_VERSION  1
#define STATE_HDR      3 /* version, socket index, security mode */
#define BACKOFF_MIN_MS 100u
#define BACKOFF_MAX_MS 10000u
#define STOP_BUDGET_MS 5000
#define EP_MAX         255
#define SEALED_MAX     (STATE_HDR + LW_SESSIONS_BLOB_MAX + SECRETS_OVERHEAD)

/* Deletes the rows still belonging to the named sessions ($1: [{ep, cid, addr, port}]). */
static const char del_sql[] =
    "DELETE FROM dtls_sessions s USING jsonb_to_recordset($1::jsonb) AS d(ep text, cid text, "
    "addr inet, port integer) WHERE s.endpoint = d.ep AND ((d.cid IS NOT NULL AND s.cid = "
    "decode(d.cid, 'hex')) OR (d.cid IS NULL AND s.cid IS NULL AND s.address = d.addr AND "
    "s.port = d.port))";
/* A connection id is unique in the table: a row of another endpoint holding one of the new
 * CIDs is an older session (ids are reused only after a restart): it goes. */
static const char cid_sql[] =
    "DELETE FROM dtls_sessions s USING jsonb_to_recordset($1::jsonb) AS r(ep text, cid text) "
    "WHERE r.cid IS NOT NULL AND s.cid = decode(r.cid, 'hex') AND s.endpoint <> r.ep";
static const char up_sql[] =
    "INSERT INTO dtls_sessions (endpoint, cid, address, port, key_id, nonce, state, saved_at, "
    "expires_at) SELECT ep, decode(cid, 'hex'), addr, port, kid, decode(nonce, 'hex'), "
    "decode(st, 'hex'), now(), to_timestamp(exp / 1000.0) FROM jsonb_to_recordset($1::jsonb) AS "
    "r(ep text, cid text, addr inet, port integer, kid integer, nonce text, st text, exp bigint) "
    "ON CONFLICT (endpoint) DO UPDATE SET cid = EXCLUDED.cid, address = EXCLUDED.address, "
    "port = EXCLUDED.port, key_id = EXCLUDED.key_id, nonce = EXCLUDED.nonce, "
    "state = EXCLUDED.state, saved_at = EXCLUDED.saved_at, expires_at = EXCLUDED.expires_at";
/* Results in binary format: bytea columns come as their bytes (hex text cost a third of the
 * daemon's CPU at start with 20 k sessions), text as its bytes, integers big-endian. */
static const char restore_sql[] =
    "SELECT endpoint, cid, host(address), port, state, "
    "(extract(epoch FROM expires_at) * 1000)::bigint FROM dtls_sessions WHERE expires_at > now()";
static const char expired_sql[] = "DELETE FROM dtls_sessions WHERE expires_at <= now()";

/* A queued change of one endpoint's row. */
struct qent {
    bool del;
    uint8_t cid_len;
    uint8_t cid[LW_SESSIONS_CID_MAX];
    struct peer_addr addr;
    uint32_t key_id;
    uint8_t nonce[SECRETS_NONCE_LEN];
    int64_t expires;
    uint8_t *sealed; /* owned (puts) */
    size_t sealed_len;
    char ep[]; /* NUL-terminated */
};

static struct {
    bool on;
    char *url; /* owned, secret: never logged */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stopping; /* guarded by lock */
    bool held;     /* lw__sessions_hold (tests); guarded by lock */
    struct lw_hmap q;
    uint8_t hkey[16];
    struct lw_metrics_writer metrics;
    _Atomic uint64_t puts, dels, coalesced, dropped, written, deleted, batches, failed, restored,
        restore_skipped, queued;
    _Atomic bool connected;
} S;

static void cnt(_Atomic uint64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static uint64_t ep_hash(const char *ep)
{
    return lw_siphash(S.hkey, ep, strlen(ep));
}

static bool ep_eq(const void *item, const void *key)
{
    return strcmp(((const struct qent *)item)->ep, key) == 0;
}

static void qent_free(struct qent *e)
{
    if (!e)
        return;
    if (e->sealed) {
        lw_secure_zero(e->sealed, e->sealed_len);
        free(e->sealed);
    }
    free(e);
}

static bool same_session(const struct qent *a, const struct qent *b)
{
    if (a->cid_len || b->cid_len)
        return a->cid_len == b->cid_len && memcmp(a->cid, b->cid, a->cid_len) == 0;
    return memcmp(&a->addr.ip, &b->addr.ip, sizeof(a->addr.ip)) == 0 &&
           a->addr.port == b->addr.port && a->addr.family == b->addr.family;
}

/* Queues n (takes ownership) under the lock; coalescing rules in sessions.h. */
static int enqueue(struct qent *n)
{
    int rc = 0;
    uint64_t h = ep_hash(n->ep);
    pthread_mutex_lock(&S.lock);
    struct qent *e = lw_hmap_get(&S.q, h, n->ep, ep_eq);
    if (e) {
        cnt(&S.coalesced, 1);
        if (n->del && !e->del && !same_session(e, n)) {
            /* a newer session's row is queued: it overwrites the old one anyway */
            qent_free(n);
            n = NULL;
        } else {
            lw_hmap_del_item(&S.q, h, e);
            qent_free(e);
        }
    } else if (lw_hmap_count(&S.q) >= LW_SESSIONS_QUEUE_MAX) {
        cnt(&S.dropped, 1);
        rc = LW_ENOSPC;
    }
    if (n && rc == 0 && lw_hmap_put(&S.q, h, n) != 0)
        rc = LW_ENOMEM;
    atomic_store_explicit(&S.queued, lw_hmap_count(&S.q), memory_order_relaxed);
    pthread_mutex_unlock(&S.lock);
    if (rc)
        qent_free(n);
    return rc;
}

static struct qent *qent_new(const char *ep)
{
    size_t n = strlen(ep);
    if (n == 0 || n > EP_MAX)
        return NULL;
    struct qent *e = calloc(1, sizeof(*e) + n + 1);
    if (e)
        memcpy(e->ep, ep, n + 1);
    return e;
}

static size_t row_ad(uint8_t *ad, size_t cap, const char *ep)
{
    const uint8_t *parts[1] = {(const uint8_t *)ep};
    size_t lens[1] = {strlen(ep)};
    return secrets_row_ad(ad, cap, "dtls_sessions", 1, parts, lens);
}

bool lw_sessions_enabled(void)
{
    return S.on;
}

int lw_sessions_put(const struct lw_sess_save *s)
{
    uint8_t pt[STATE_HDR + LW_SESSIONS_BLOB_MAX], ad[SECRETS_AD_MAX];
    struct qent *e = NULL;
    int rc;
    if (!S.on)
        return 0;
    const struct secrets_ring *ring = secrets_ring();
    if (!ring || !s->ep || !*s->ep || strlen(s->ep) > EP_MAX || s->blob_len == 0 ||
        s->blob_len > LW_SESSIONS_BLOB_MAX || s->cid_len > LW_SESSIONS_CID_MAX)
        return LW_EINVAL;
    if (!(e = qent_new(s->ep)))
        return LW_ENOMEM;
    size_t adl = row_ad(ad, sizeof(ad), s->ep);
    pt[0] = STATE_VERSION;
    pt[1] = s->addr.sock;
    pt[2] = s->mode;
    memcpy(pt + STATE_HDR, s->blob, s->blob_len);
    e->sealed = malloc(SEALED_MAX);
    if (!e->sealed || adl == 0) {
        rc = e->sealed ? LW_EINVAL : LW_ENOMEM;
        goto out;
    }
    rc = secrets_seal(ring, ad, adl, pt, STATE_HDR + s->blob_len, e->sealed, SEALED_MAX,
                      &e->sealed_len);
    if (rc == 0)
        rc = secrets_blob_info(e->sealed, e->sealed_len, &e->key_id, e->nonce);
    if (rc)
        goto out;
    e->addr = s->addr;
    e->cid_len = (uint8_t)s->cid_len;
    if (s->cid_len)
        memcpy(e->cid, s->cid, s->cid_len);
    e->expires = s->expires_wall_ms;
    cnt(&S.puts, 1);
    rc = enqueue(e);
    e = NULL;
out:
    lw_secure_zero(pt, sizeof(pt));
    qent_free(e);
    return rc;
}

void lw_sessions_del(const char *ep, const uint8_t *cid, size_t cid_len,
                     const struct peer_addr *addr)
{
    if (!S.on || cid_len > LW_SESSIONS_CID_MAX)
        return;
    struct qent *e = qent_new(ep);
    if (!e)
        return;
    e->del = true;
    e->cid_len = (uint8_t)cid_len;
    if (cid_len)
        memcpy(e->cid, cid, cid_len);
    e->addr = *addr;
    cnt(&S.dels, 1);
    enqueue(e);
}

/* ---- writer thread ----------------------------------------------------------------------------
 */

static json_t *hex_json(const uint8_t *p, size_t n)
{
    char tmp[2 * SEALED_MAX + 1];
    if (n == 0 || 2 * n + 1 > sizeof(tmp))
        return json_null();
    lw_hex_encode(tmp, p, n);
    return json_string(tmp);
}

static json_t *addr_json(const struct peer_addr *a)
{
    char ip[INET6_ADDRSTRLEN];
    if (!inet_ntop(a->family == 4 ? AF_INET : AF_INET6, a->ip, ip, sizeof(ip)))
        return json_null();
    return json_string(ip);
}

/* Runs one statement with one text parameter; false on failure (why filled, *conn_bad set when
 * the connection is the problem). */
static bool exec1(PGconn *pg, const char *sql, const char *param, char *why, size_t cap,
                  bool *conn_bad)
{
    const char *params[1] = {param};
    PGresult *res =
        PQexecParams(pg, sql, param ? 1 : 0, NULL, param ? params : NULL, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok) {
        snprintf(why, cap, "%s", res ? PQresultErrorMessage(res) : PQerrorMessage(pg));
        why[strcspn(why, "\n")] = '\0';
        const char *code = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        *conn_bad = PQstatus(pg) != CONNECTION_OK || !code || strncmp(code, "08", 2) == 0 ||
                    strncmp(code, "57", 2) == 0 || strncmp(code, "53", 2) == 0 ||
                    strncmp(code, "40", 2) == 0;
    }
    PQclear(res);
    return ok;
}

/* Writes one batch in one transaction. 0, or LW_EAGAIN (connection problem: retry) or LW_EDB
 * (the database refused the rows). */
static int write_batch(PGconn *pg, struct qent **b, size_t n, char *why, size_t cap)
{
    json_t *dels = json_array(), *ups = json_array();
    char *pd = NULL, *pu = NULL;
    bool bad = false;
    int rc = LW_ENOMEM;
    size_t nd = 0, nu = 0;
    if (!dels || !ups)
        goto out;
    for (size_t i = 0; i < n; i++) {
        struct qent *e = b[i];
        json_t *cid = hex_json(e->cid, e->cid_len);
        if (e->del) {
            json_array_append_new(dels,
                                  json_pack("{s:s,s:o,s:o,s:i}", "ep", e->ep, "cid", cid, "addr",
                                            addr_json(&e->addr), "port", (int)e->addr.port));
            nd++;
        } else {
            json_array_append_new(ups, json_pack("{s:s,s:o,s:o,s:i,s:I,s:o,s:o,s:I}", "ep", e->ep,
                                                 "cid", cid, "addr", addr_json(&e->addr), "port",
                                                 (int)e->addr.port, "kid", (json_int_t)e->key_id,
                                                 "nonce", hex_json(e->nonce, sizeof(e->nonce)),
                                                 "st", hex_json(e->sealed, e->sealed_len), "exp",
                                                 (json_int_t)e->expires));
            nu++;
        }
    }
    pd = json_dumps(dels, JSON_COMPACT);
    pu = json_dumps(ups, JSON_COMPACT);
    if (!pd || !pu)
        goto out;
    rc = LW_EAGAIN;
    if (!exec1(pg, "BEGIN", NULL, why, cap, &bad))
        goto out;
    if ((nd && !exec1(pg, del_sql, pd, why, cap, &bad)) ||
        (nu &&
         (!exec1(pg, cid_sql, pu, why, cap, &bad) || !exec1(pg, up_sql, pu, why, cap, &bad)))) {
        bool ignore;
        char w2[64];
        if (!bad)
            exec1(pg, "ROLLBACK", NULL, w2, sizeof(w2), &ignore);
        rc = bad ? LW_EAGAIN : LW_EDB;
        goto out;
    }
    if (!exec1(pg, "COMMIT", NULL, why, cap, &bad)) {
        rc = bad ? LW_EAGAIN : LW_EDB;
        goto out;
    }
    cnt(&S.written, nu);
    cnt(&S.deleted, nd);
    cnt(&S.batches, 1);
    rc = 0;
out:
    if (pu) {
        lw_secure_zero(pu, strlen(pu)); /* sealed, but no need to leave copies around */
        free(pu);
    }
    free(pd);
    json_decref(dels);
    json_decref(ups);
    return rc;
}

/* Takes up to max queued entries (lock held). */
static size_t take(struct qent **b, size_t max)
{
    size_t n = 0, pos = 0;
    struct qent *e;
    while (n < max && (e = lw_hmap_next(&S.q, &pos)))
        b[n++] = e;
    for (size_t i = 0; i < n; i++)
        lw_hmap_del_item(&S.q, ep_hash(b[i]->ep), b[i]);
    atomic_store_explicit(&S.queued, lw_hmap_count(&S.q), memory_order_relaxed);
    return n;
}

/* Puts a batch back under newer changes (lock held). */
static void requeue(struct qent **b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t h = ep_hash(b[i]->ep);
        if (lw_hmap_get(&S.q, h, b[i]->ep, ep_eq) || lw_hmap_put(&S.q, h, b[i]) != 0)
            qent_free(b[i]);
    }
    atomic_store_explicit(&S.queued, lw_hmap_count(&S.q), memory_order_relaxed);
}

static PGconn *connect_db(void)
{
    const char *keys[] = {"dbname", "connect_timeout", NULL};
    const char *vals[] = {S.url, "3", NULL};
    PGconn *pg = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(pg) != CONNECTION_OK) {
        PQfinish(pg);
        return NULL;
    }
    return pg;
}

static void wait_ms_locked(unsigned ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&S.cond, &S.lock, &ts);
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void *writer_main(void *arg)
{
    static struct qent *b[LW_SESSIONS_BATCH_MAX];
    PGconn *pg = NULL;
    unsigned backoff = BACKOFF_MIN_MS;
    uint64_t stop_at = 0;
    char why[300];
    (void)arg;
    pthread_mutex_lock(&S.lock);
    for (;;) {
        if (S.stopping && !stop_at)
            stop_at = mono_ms() + STOP_BUDGET_MS;
        if (lw_hmap_count(&S.q) == 0 || (S.held && !S.stopping)) {
            if (S.stopping)
                break;
            wait_ms_locked(LW_SESSIONS_FLUSH_MS);
            continue;
        }
        if (stop_at && mono_ms() >= stop_at)
            break;
        size_t n = take(b, LW_ARRAY_SIZE(b));
        pthread_mutex_unlock(&S.lock);
        int rc = LW_EAGAIN;
        if (!pg && (pg = connect_db()) != NULL) {
            atomic_store_explicit(&S.connected, true, memory_order_relaxed);
            log_info(STORE, "dtls sessions: database connected");
        }
        snprintf(why, sizeof(why), "database not reachable");
        if (pg)
            rc = write_batch(pg, b, n, why, sizeof(why));
        pthread_mutex_lock(&S.lock);
        if (rc == 0 || rc == LW_EDB || rc == LW_ENOMEM) {
            if (rc) {
                cnt(&S.failed, 1);
                log_err(STORE, "dtls sessions: batch of %zu change(s) not written: %s", n,
                        rc == LW_EDB ? why : "out of memory");
            }
            for (size_t i = 0; i < n; i++)
                qent_free(b[i]);
            backoff = BACKOFF_MIN_MS;
            if (!S.stopping)
                wait_ms_locked(LW_SESSIONS_FLUSH_MS);
            continue;
        }
        /* connection problem: keep the changes, reconnect later */
        requeue(b, n);
        if (pg) {
            log_warn(STORE, "dtls sessions: database connection lost, changes queued: %s", why);
            PQfinish(pg);
            pg = NULL;
            atomic_store_explicit(&S.connected, false, memory_order_relaxed);
        }
        if (S.stopping && mono_ms() + backoff >= stop_at)
            break;
        wait_ms_locked(backoff);
        backoff = LW_MIN(backoff * 2, BACKOFF_MAX_MS);
    }
    size_t left = lw_hmap_count(&S.q);
    pthread_mutex_unlock(&S.lock);
    if (left)
        log_err(STORE, "dtls sessions: stopping with %zu change(s) not written", left);
    PQfinish(pg);
    atomic_store_explicit(&S.connected, false, memory_order_relaxed);
    return NULL;
}

/* ---- metrics ----------------------------------------------------------------------------------
 */

static void write_metrics(void *ctx, struct lw_buf *out)
{
    struct lw_sessions_stats s;
    (void)ctx;
    lw_sessions_get_stats(&s);
    lw_buf_printf(
        out,
        "# HELP lwm2md_dtls_saved_sessions_total Saved DTLS session changes, by kind.\n"
        "# TYPE lwm2md_dtls_saved_sessions_total counter\n"
        "lwm2md_dtls_saved_sessions_total{kind=\"put\"} %llu\n"
        "lwm2md_dtls_saved_sessions_total{kind=\"delete\"} %llu\n"
        "lwm2md_dtls_saved_sessions_total{kind=\"coalesced\"} %llu\n"
        "lwm2md_dtls_saved_sessions_total{kind=\"dropped\"} %llu\n"
        "lwm2md_dtls_saved_sessions_total{kind=\"written\"} %llu\n"
        "lwm2md_dtls_saved_sessions_total{kind=\"deleted\"} %llu\n"
        "lwm2md_dtls_saved_sessions_total{kind=\"failed_batch\"} %llu\n"
        "lwm2md_dtls_saved_sessions_total{kind=\"restored\"} %llu\n"
        "lwm2md_dtls_saved_sessions_total{kind=\"restore_skipped\"} %llu\n"
        "# HELP lwm2md_dtls_saved_sessions_queued Session changes waiting to be written.\n"
        "# TYPE lwm2md_dtls_saved_sessions_queued gauge\n"
        "lwm2md_dtls_saved_sessions_queued %llu\n",
        (unsigned long long)s.puts, (unsigned long long)s.dels, (unsigned long long)s.coalesced,
        (unsigned long long)s.dropped, (unsigned long long)s.written, (unsigned long long)s.deleted,
        (unsigned long long)s.failed, (unsigned long long)s.restored,
        (unsigned long long)s.restore_skipped, (unsigned long long)s.queued);
}

void lw__sessions_hold(bool hold)
{
    pthread_mutex_lock(&S.lock);
    S.held = hold;
    pthread_mutex_unlock(&S.lock);
}

void lw_sessions_get_stats(struct lw_sessions_stats *o)
{
#define LD(f) o->f = atomic_load_explicit(&S.f, memory_order_relaxed)
    LD(puts);
    LD(dels);
    LD(coalesced);
    LD(dropped);
    LD(written);
    LD(deleted);
    o->batches = atomic_load_explicit(&S.batches, memory_order_relaxed);
    LD(failed);
    LD(restored);
    LD(restore_skipped);
    LD(queued);
#undef LD
    o->connected = atomic_load_explicit(&S.connected, memory_order_relaxed);
}

/* ---- start / stop -----------------------------------------------------------------------------
 */

int lw_sessions_start(const struct lw_config *cfg)
{
    if (S.on)
        return 0;
    if (!cfg->db_url || !*cfg->db_url || cfg->coaps_listen_n == 0)
        return 0;
    if (!secrets_ring() || !secrets_ring_current(secrets_ring())) {
        log_notice(STORE, "dtls sessions are not saved across restarts: no master key "
                          "(security.master_key_file) to encrypt them with");
        return 0;
    }
    int rc = LW_ENOMEM;
    if (!(S.url = strdup(cfg->db_url)) || lw_hmap_init(&S.q, 0) != 0)
        goto fail;
    if (lw_random(S.hkey, sizeof(S.hkey)) != 0)
        memset(S.hkey, 0x5a, sizeof(S.hkey));
    pthread_mutex_init(&S.lock, NULL);
    pthread_cond_init(&S.cond, NULL);
    S.stopping = false;
    if (pthread_create(&S.thread, NULL, writer_main, NULL) != 0) {
        pthread_cond_destroy(&S.cond);
        pthread_mutex_destroy(&S.lock);
        lw_hmap_deinit(&S.q);
        goto fail;
    }
    S.metrics.write = write_metrics;
    lw_metrics_register(&S.metrics);
    S.on = true;
    return 0;
fail:
    free(S.url);
    S.url = NULL;
    return rc;
}

void lw_sessions_stop(void)
{
    if (!S.on)
        return;
    pthread_mutex_lock(&S.lock);
    S.stopping = true;
    pthread_cond_signal(&S.cond);
    size_t n = lw_hmap_count(&S.q);
    pthread_mutex_unlock(&S.lock);
    if (n)
        log_info(STORE, "dtls sessions: writing %zu saved session change(s)", n);
    pthread_join(S.thread, NULL);
    lw_metrics_unregister(&S.metrics);
    S.on = false;
    size_t pos = 0;
    struct qent *e;
    while ((e = lw_hmap_next(&S.q, &pos)))
        qent_free(e);
    lw_hmap_deinit(&S.q);
    pthread_cond_destroy(&S.cond);
    pthread_mutex_destroy(&S.lock);
    free(S.url);
    S.url = NULL;
}

/* ---- restore ----------------------------------------------------------------------------------
 */

static uint64_t be_uint(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* One row (binary format): 0 when cb took it; LW_EMALFORMED / LW_EPERM / LW_ENOENT when it was
 * skipped. */
static int restore_row(const struct secrets_ring *ring, PGresult *res,
                       int (*cb)(void *, const struct lw_sess_row *), void *arg)
{
    static uint8_t pt[SEALED_MAX];
    uint8_t ad[SECRETS_AD_MAX];
    char ip[64];
    struct lw_sess_row row;
    size_t ptl = 0;
    int rc;
    memset(&row, 0, sizeof(row));
    /* libpq ends every value with a zero byte, binary ones too */
    row.ep = PQgetvalue(res, 0, 0);
    if (PQgetisnull(res, 0, 0) || strlen(row.ep) != (size_t)PQgetlength(res, 0, 0))
        return LW_EMALFORMED;
    if (!PQgetisnull(res, 0, 1)) {
        int n = PQgetlength(res, 0, 1);
        if (n <= 0 || n > LW_SESSIONS_CID_MAX)
            return LW_EMALFORMED;
        row.cid = (const uint8_t *)PQgetvalue(res, 0, 1);
        row.cid_len = (size_t)n;
    }
    int iplen = PQgetlength(res, 0, 2);
    if (PQgetisnull(res, 0, 2) || iplen <= 0 || (size_t)iplen >= sizeof(ip))
        return LW_EMALFORMED;
    memcpy(ip, PQgetvalue(res, 0, 2), (size_t)iplen);
    ip[iplen] = '\0';
    if (inet_pton(AF_INET, ip, row.addr.ip) == 1)
        row.addr.family = 4;
    else if (inet_pton(AF_INET6, ip, row.addr.ip) == 1)
        row.addr.family = 6;
    else
        return LW_EMALFORMED;
    if (PQgetlength(res, 0, 3) != 4 || PQgetlength(res, 0, 5) != 8)
        return LW_EMALFORMED;
    row.addr.port = (uint16_t)be_uint((const uint8_t *)PQgetvalue(res, 0, 3), 4);
    int k = PQgetlength(res, 0, 4);
    const uint8_t *sealed = (const uint8_t *)PQgetvalue(res, 0, 4);
    if (PQgetisnull(res, 0, 4) || k <= 0 || k > SEALED_MAX)
        return LW_EMALFORMED;
    size_t adl = row_ad(ad, sizeof(ad), row.ep);
    if (adl == 0)
        return LW_EMALFORMED;
    rc = secrets_open(ring, ad, adl, sealed, (size_t)k, pt, sizeof(pt), &ptl, NULL);
    if (rc == 0 && (ptl <= STATE_HDR || pt[0] != STATE_VERSION))
        rc = LW_EMALFORMED;
    if (rc == 0) {
        row.addr.sock = pt[1];
        row.mode = pt[2];
        row.blob = pt + STATE_HDR;
        row.blob_len = ptl - STATE_HDR;
        row.expires_wall_ms = (int64_t)be_uint((const uint8_t *)PQgetvalue(res, 0, 5), 8);
        rc = cb(arg, &row);
    }
    lw_secure_zero(pt, sizeof(pt));
    return rc;
}

int lw_sessions_restore(const struct lw_config *cfg,
                        int (*cb)(void *arg, const struct lw_sess_row *row), void *arg)
{
    const struct secrets_ring *ring = secrets_ring();
    unsigned long restored = 0, skipped = 0;
    PGresult *res = NULL;
    PGconn *pg = NULL;
    if (!cfg->db_url || !*cfg->db_url || !ring)
        return 0;
    uint64_t t0 = mono_ms();
    pg = PQconnectdb(cfg->db_url);
    if (PQstatus(pg) != CONNECTION_OK) {
        log_warn(STORE, "dtls sessions not restored: database not reachable");
        goto out;
    }
    PQclear(PQexec(pg, expired_sql));
    if (!PQsendQueryParams(pg, restore_sql, 0, NULL, NULL, NULL, NULL, 1) ||
        !PQsetSingleRowMode(pg)) {
        log_err(STORE, "dtls sessions not restored: %s", PQerrorMessage(pg));
        goto out;
    }
    while ((res = PQgetResult(pg)) != NULL) {
        ExecStatusType s = PQresultStatus(res);
        if (s == PGRES_SINGLE_TUPLE) {
            if (restore_row(ring, res, cb, arg) == 0)
                restored++;
            else
                skipped++;
        } else if (s != PGRES_TUPLES_OK) {
            char why[300];
            snprintf(why, sizeof(why), "%s", PQresultErrorMessage(res));
            why[strcspn(why, "\n")] = '\0';
            log_err(STORE, "restore of dtls sessions stopped: %s", why);
        }
        PQclear(res);
    }
    res = NULL;
    cnt(&S.restored, restored);
    cnt(&S.restore_skipped, skipped);
    log_notice(STORE, "dtls sessions restored: restored=%lu skipped=%lu duration_ms=%llu", restored,
               skipped, (unsigned long long)(mono_ms() - t0));
out:
    PQclear(res);
    PQfinish(pg);
    return 0;
}
