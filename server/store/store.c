/* server/store/store.c - write-behind of registrations, one pipelined writer per shard (see
 * store.h). */
#include "store/store.h"

#include "base/buf.h"
#include "base/err.h"
#include "base/hash.h"
#include "base/util.h"
#include "dir.h"
#include "log.h"
#include "metrics.h"
#include "registry.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_MIN_MS 100u
#define BACKOFF_MAX_MS 10000u
#define STOP_BUDGET_MS 5000
#define CHUNK_RECS     128u /* records per inbox chunk */
#define SPARE_CHUNKS   8u   /* empty chunks kept per writer */
#define OBJS_CACHE_MAX 4096u
#define NCOLS          17

/* Deletes the rows of ($1 endpoint, $2 registration id) pairs; a NULL id deletes whatever row
 * the endpoint has (the delete ended the registration whose upsert was still queued, so any row
 * is older). A batch names each endpoint once, so deletes and upserts never touch one row. */
static const char del_sql[] =
    "DELETE FROM registrations g USING unnest($1::text[], $2::text[]) AS d(ep, id) "
    "WHERE g.endpoint = d.ep AND (d.id IS NULL OR g.reg_id = d.id)";

/* One row per array index; times are Unix seconds. The object lists are few and shared by many
 * rows: each distinct one is sent once per batch ($16) and rows name it by index ($13), so the
 * database parses it into jsonb once per batch rather than once per row (measured, 2 connections
 * x 100 k rows: upserts 43-54 k -> 66-108 k rows/s). */
static const char ups_sql[] =
    "INSERT INTO registrations (endpoint, reg_id, address, port, secure, lwm2m_version, binding, "
    "queue_mode, lifetime, sms_number, registered_at, updated_at, expires_at, objects, "
    "object_links, profile_id, security_mode) "
    "SELECT ep, id, coalesce(a, '0.0.0.0'), coalesce(p, 0), s <> 'nosec', v, b, q, lt, sms, "
    "to_timestamp(r), to_timestamp(u), to_timestamp(e), coalesce(($16::jsonb[])[o], '[]'), "
    "coalesce(($17::text[])[o], ''), pid, s "
    "FROM unnest($1::text[], $2::text[], $3::inet[], $4::integer[], $5::text[], $6::text[], "
    "$7::boolean[], $8::integer[], $9::text[], $10::bigint[], $11::bigint[], $12::bigint[], "
    "$13::integer[], $14::text[], $15::text[]) AS x(ep, id, a, p, v, b, q, lt, sms, r, u, e, o, "
    "pid, s) "
    "ON CONFLICT (endpoint) DO UPDATE SET reg_id = EXCLUDED.reg_id, address = EXCLUDED.address, "
    "port = EXCLUDED.port, secure = EXCLUDED.secure, lwm2m_version = EXCLUDED.lwm2m_version, "
    "binding = EXCLUDED.binding, queue_mode = EXCLUDED.queue_mode, lifetime = EXCLUDED.lifetime, "
    "sms_number = EXCLUDED.sms_number, registered_at = EXCLUDED.registered_at, "
    "updated_at = EXCLUDED.updated_at, expires_at = EXCLUDED.expires_at, "
    "objects = EXCLUDED.objects, object_links = EXCLUDED.object_links, "
    "profile_id = EXCLUDED.profile_id, "
    "security_mode = EXCLUDED.security_mode";

enum { OP_UPSERT, OP_DEL };

/* The newest state queued for one endpoint: a fixed-size record (sms and pid, rare, on the heap).
 */
struct rec {
    uint64_t hash; /* keyed hash of ep */
    uint64_t id;   /* registration id (the one a delete ends) */
    int64_t reg_s, upd_s, exp_s;
    uint32_t lifetime_s;
    uint16_t port;
    uint8_t op;     /* OP_UPSERT or OP_DEL */
    bool del_any;   /* delete: whatever row the endpoint has */
    uint8_t family; /* 0 (no address), 4 or 6 */
    uint8_t ver, sec;
    bool queue;
    uint8_t ip[16];
    char binding[8];
    char ep[DIR_MAX_NAME + 1];
    char *sms, *pid; /* owned, or NULL */
    json_t *objs;    /* one reference, or NULL */
};

struct chunk {
    struct chunk *next;
    unsigned n;
    struct rec r[CHUNK_RECS];
};

/* A batch sent and not yet answered: its records (owned) until the sync result arrives. */
/* A piece is half of a refused batch (or of a refused piece), sent again on its own to isolate the
 * rows the database refuses; pieces wait in the writer's retry list, ahead of the map. */
struct batch {
    struct batch *next;
    size_t n, ndel;
    bool ok, retry, dead; /* dead: re-queued already, its outcome is ignored */
    bool piece;
    bool whole; /* refused as a statement (SQLSTATE class 42), not for one of its rows */
    char why[256];
    struct rec *recs[];
};

struct objtxt {
    json_t *objs;      /* one reference: keeps the pointer unique while cached */
    uint64_t batch;    /* the batch that numbered it last */
    unsigned batch_ix; /* its 1-based index in that batch's list arrays */
    size_t len, llen;
    char *links; /* CoRE link format (restore reads it instead of the JSON), in txt's block */
    char txt[];
};

struct writer {
    unsigned idx;
    /* Inbox, filled by any shard thread. */
    pthread_mutex_t lock;
    struct chunk *in_head, *in_tail; /* guarded by lock */
    struct chunk *spare;             /* guarded by lock */
    unsigned nspare;                 /* guarded by lock */
    bool kick_ok;                    /* guarded by lock: kick may be signalled */
    _Atomic size_t in_n;             /* written under lock */
    size_t qmax;                     /* per-writer bound (inbox, and map) */
    /* Loop side: the writer's shard thread (the control thread before attach / after stop). */
    uv_loop_t *loop;
    bool attached;
    uv_timer_t flush_timer, retry_timer;
    uv_async_t kick;
    uv_poll_t *poll; /* owned; closed and freed on a new socket or at detach */
    int poll_fd;
    PGconn *pg;
    bool connecting; /* PQconnectPoll phase */
    bool ready;      /* connected, in pipeline mode */
    bool flushing;   /* PQflush has more to write */
    unsigned backoff_ms;
    struct lw_hmap map;              /* struct rec by hash, owned */
    size_t scan_pos;                 /* where the next batch starts looking in map */
    struct batch *bq_head, *bq_tail; /* in flight, oldest first */
    unsigned ninflight;
    struct batch *rq_head, *rq_tail;   /* pieces to send before the map, oldest first, owned */
    size_t rq_rows;                    /* records in the retry list */
    bool held;                         /* a transient error: nothing is sent until retry_timer */
    unsigned hold_ms;                  /* the delay of the current hold */
    struct lw_hmap objs_cache;         /* struct objtxt by pointer hash */
    uint64_t batch_seq;                /* numbers batches for objtxt.batch */
    unsigned batch_nobjs;              /* distinct lists in the batch being encoded */
    struct lw_buf col[NCOLS], dcol[2]; /* batch encoding, reused */
    /* Storm hold (store.h): arrivals counted per window; a hold began at defer_start. */
    uint64_t win_start; /* loop time (ms) the current arrival window began */
    size_t win_n;       /* changes drained in it */
    bool surge;         /* the last full window's rate reached g.surge_per_s */
    bool deferring;     /* a hold is in progress */
    bool defer_spent;   /* a hold ran out: no new one until the queue was empty */
    uint64_t defer_start;
    uint64_t full_seen;            /* full receive batches of all shards at the last window */
    _Atomic uint64_t full_batches; /* full receive batches of this writer's shard */
    _Atomic uint64_t changes, coalesced, dropped, upserts, deletes, batches, failed, requeued,
        splits, transient, connects, queued, inflight, deferrals, deferred_ms;
    _Atomic bool connected;
};

static struct {
    bool started;
    char *url; /* owned, secret: never logged */
    uint8_t key[16];
    unsigned n;
    struct writer *w;               /* n writers */
    _Atomic uint64_t dropped_early; /* changes before the writers exist */
    unsigned surge_per_s;           /* storm hold threshold (0: never hold) */
    unsigned defer_max_ms;          /* longest storm hold (database.write_hold; 0: none) */
    struct lw_metrics_writer metrics;
} g;

/* ---- records -----------------------------------------------------------------------------------
 */

static bool rec_eq(const void *item, const void *key)
{
    return strcmp(((const struct rec *)item)->ep, ((const struct rec *)key)->ep) == 0;
}

static void rec_release(struct rec *r)
{
    json_decref(r->objs);
    free(r->sms);
    free(r->pid);
    r->objs = NULL;
    r->sms = r->pid = NULL;
}

static void rec_free(struct rec *r)
{
    if (r) {
        rec_release(r);
        free(r);
    }
}

static void add(_Atomic uint64_t *c, uint64_t v)
{
    atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}

/* Endpoints waiting to be written: the map and the pieces of refused batches. */
static size_t pending(const struct writer *w)
{
    return lw_hmap_count(&w->map) + w->rq_rows;
}

static void set_queued(struct writer *w)
{
    if (pending(w) == 0)
        w->defer_spent = false; /* the queue was empty once: a new storm may be held */
    atomic_store_explicit(&w->queued, pending(w), memory_order_relaxed);
    atomic_store_explicit(&w->inflight, w->ninflight, memory_order_relaxed);
}

/* Applies one change from the inbox (its contents move into the map or are released). */
static void apply(struct writer *w, struct rec *nr)
{
    struct rec *cur = lw_hmap_get(&w->map, nr->hash, nr, rec_eq);
    add(&w->changes, 1);
    if (nr->op == OP_DEL && cur) {
        /* Changes of one endpoint come from different shards in any order: a registration that
         * replaced another may be announced before the other's end. A delete therefore only
         * applies to the registration it names. */
        bool names_cur = !(cur->op == OP_DEL && cur->del_any) && cur->id == nr->id;
        if (!names_cur) {
            add(&w->coalesced, 1);
            rec_release(nr);
            return;
        }
        /* it ends the registration queued for writing: whatever row the table still has for
         * the endpoint is older, delete it too */
        if (cur->op == OP_UPSERT)
            nr->del_any = true;
    }
    if (cur) {
        add(&w->coalesced, 1);
        rec_release(cur);
        *cur = *nr;
        return;
    }
    struct rec *r = NULL;
    if (lw_hmap_count(&w->map) < w->qmax && (r = malloc(sizeof(*r))) != NULL) {
        *r = *nr;
        if (lw_hmap_put(&w->map, r->hash, r) == 0)
            return;
        free(r);
        r = NULL;
    }
    add(&w->dropped, 1);
    log_warn_rl(STORE, "write-behind queue full: change dropped: endpoint=%s queued=%zu", nr->ep,
                lw_hmap_count(&w->map));
    rec_release(nr);
}

/* Moves the inbox into the map; returns the number of changes it held. */
static size_t drain(struct writer *w)
{
    size_t n = 0;
    pthread_mutex_lock(&w->lock);
    struct chunk *c = w->in_head;
    w->in_head = w->in_tail = NULL;
    atomic_store_explicit(&w->in_n, 0, memory_order_relaxed);
    pthread_mutex_unlock(&w->lock);
    if (!c)
        return 0;
    struct chunk *done = c;
    for (; c; c = c->next) {
        for (unsigned i = 0; i < c->n; i++)
            apply(w, &c->r[i]);
        n += c->n;
        c->n = 0;
    }
    pthread_mutex_lock(&w->lock);
    while (done && w->nspare < SPARE_CHUNKS) {
        struct chunk *nx = done->next;
        done->next = w->spare;
        w->spare = done;
        w->nspare++;
        done = nx;
    }
    pthread_mutex_unlock(&w->lock);
    while (done) {
        struct chunk *nx = done->next;
        free(done);
        done = nx;
    }
    set_queued(w);
    return n;
}

void lw_store_change(const struct regsrv_change *c)
{
    if (!g.started)
        return;
    if (!g.w) {
        add(&g.dropped_early, 1);
        return;
    }
    size_t eplen = strlen(c->ep);
    if (eplen == 0 || eplen > DIR_MAX_NAME)
        return;
    struct rec r;
    memset(&r, 0, sizeof(r));
    r.hash = lw_siphash(g.key, c->ep, eplen);
    memcpy(r.ep, c->ep, eplen + 1);
    r.id = c->id;
    if (c->type == LW_EV_DEREGISTERED || c->type == LW_EV_EXPIRED) {
        r.op = OP_DEL;
    } else if (c->type == LW_EV_REGISTERED || c->type == LW_EV_UPDATED) {
        r.op = OP_UPSERT;
        r.reg_s = c->registered_s;
        r.upd_s = c->updated_s;
        r.exp_s = c->expires_s;
        r.lifetime_s = c->lifetime_s;
        if (c->addr) {
            r.family = c->addr->family;
            r.port = c->addr->port;
            memcpy(r.ip, c->addr->ip, sizeof(r.ip));
        }
        r.ver = c->ver;
        r.sec = c->sec;
        r.queue = c->queue;
        const char *bd = c->binding ? c->binding : "U";
        size_t bl = strnlen(bd, sizeof(r.binding) - 1); /* r is zeroed: stays terminated */
        memcpy(r.binding, bd, bl);
        r.sms = c->sms ? strdup(c->sms) : NULL;
        r.pid = c->pid ? strdup(c->pid) : NULL;
        r.objs = c->objs ? json_incref(c->objs) : NULL;
    } else {
        return;
    }
    /* The writer from high bits: the map indexes its slots with the low ones. */
    struct writer *w = &g.w[(r.hash >> 40) % g.n];
    bool kick = false;
    pthread_mutex_lock(&w->lock);
    struct chunk *t = w->in_tail;
    size_t n = atomic_load_explicit(&w->in_n, memory_order_relaxed);
    if (n < w->qmax && (!t || t->n == CHUNK_RECS)) {
        if (w->spare) {
            t = w->spare;
            w->spare = t->next;
            w->nspare--;
        } else {
            t = malloc(sizeof(*t));
        }
        if (t) {
            t->next = NULL;
            t->n = 0;
            if (w->in_tail)
                w->in_tail->next = t;
            else
                w->in_head = t;
            w->in_tail = t;
        }
    }
    bool ok = n < w->qmax && t && t->n < CHUNK_RECS;
    if (ok) {
        t->r[t->n++] = r;
        atomic_store_explicit(&w->in_n, n + 1, memory_order_relaxed);
        kick = n + 1 == LW_STORE_BATCH_MAX && w->kick_ok;
        if (kick)
            uv_async_send(&w->kick);
    }
    pthread_mutex_unlock(&w->lock);
    if (!ok) {
        add(&w->changes, 1);
        add(&w->dropped, 1);
        log_warn_rl(STORE, "write-behind inbox full: change dropped: endpoint=%s", r.ep);
        rec_release(&r);
    }
}

/* ---- batch encoding ----------------------------------------------------------------------------
 */

/* Appends one text array element (double-quoted, backslash-escaped) or NULL, with one
 * reservation for the worst case (every byte escaped). The batches are encoded on the shard
 * threads, so the encoders below avoid stdio: snprintf cost more instructions per row than the
 * Register itself (callgrind, docs/benchmarks.md). */
static void put_elem(struct lw_buf *b, const char *s, size_t len)
{
    uint8_t *d = lw_buf_reserve(b, 2 * len + 8);
    if (!d)
        return; /* latched in b: the batch is re-queued */
    size_t k = 0;
    if (b->len > 1)
        d[k++] = ',';
    if (!s) {
        memcpy(d + k, "NULL", 4);
        lw_buf_commit(b, k + 4);
        return;
    }
    d[k++] = '"';
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '"' || s[i] == '\\')
            d[k++] = '\\';
        d[k++] = (uint8_t)s[i];
    }
    d[k++] = '"';
    lw_buf_commit(b, k);
}

/* Decimal digits of u at the end of t[0..24); returns where they start. */
static size_t fmt_u64(char t[24], uint64_t u)
{
    size_t at = 24;
    do {
        t[--at] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    return at;
}

/* "a.b.c.d" (as inet_ntop writes it) into out (16 bytes); returns its length. */
static size_t fmt_ipv4(const uint8_t ip[4], char out[16])
{
    size_t k = 0;
    for (int i = 0; i < 4; i++) {
        char t[24];
        size_t at = fmt_u64(t, ip[i]);
        if (i)
            out[k++] = '.';
        memcpy(out + k, t + at, 24 - at);
        k += 24 - at;
    }
    out[k] = '\0';
    return k;
}

static void put_str(struct lw_buf *b, const char *s)
{
    put_elem(b, s, s ? strlen(s) : 0);
}

static void put_int(struct lw_buf *b, long long v)
{
    char t[24];
    size_t at = fmt_u64(t, v < 0 ? 0 - (uint64_t)v : (uint64_t)v);
    if (v < 0)
        t[--at] = '-';
    uint8_t *d = lw_buf_reserve(b, 25 - at);
    if (!d)
        return;
    size_t k = 0;
    if (b->len > 1)
        d[k++] = ',';
    memcpy(d + k, t + at, 24 - at);
    lw_buf_commit(b, k + 24 - at);
}

static uint64_t ptr_hash(const void *p)
{
    uint64_t v = (uint64_t)(uintptr_t)p;
    v ^= v >> 33;
    v *= 0xff51afd7ed558ccdull;
    v ^= v >> 33;
    return v;
}

static bool objtxt_eq(const void *item, const void *key)
{
    return ((const struct objtxt *)item)->objs == key;
}

static void objs_cache_clear(struct writer *w)
{
    size_t pos = 0;
    struct objtxt *o;
    while ((o = lw_hmap_next(&w->objs_cache, &pos))) {
        json_decref(o->objs);
        free(o);
    }
    lw_hmap_deinit(&w->objs_cache);
    lw_hmap_init(&w->objs_cache, 0);
}

/* The JSON text of an interned object list, cached by pointer (lists are shared and immutable,
 * so a fleet has few). NULL on OOM (the row gets an empty list). */
static struct objtxt *objs_text(struct writer *w, json_t *objs)
{
    uint64_t h = ptr_hash(objs);
    struct objtxt *o = lw_hmap_get(&w->objs_cache, h, objs, objtxt_eq);
    if (o)
        return o;
    if (lw_hmap_count(&w->objs_cache) >= OBJS_CACHE_MAX)
        objs_cache_clear(w);
    char *txt = json_dumps(objs, JSON_COMPACT);
    struct lw_buf lb;
    lw_buf_init(&lb, 128);
    if (!txt || lw__store_links_json(objs, &lb) != 0) {
        free(txt);
        lw_buf_deinit(&lb);
        return NULL;
    }
    size_t len = strlen(txt);
    o = malloc(sizeof(*o) + len + 1 + lb.len + 1);
    if (o) {
        o->objs = json_incref(objs);
        o->batch = 0;
        o->len = len;
        memcpy(o->txt, txt, len + 1);
        o->links = o->txt + len + 1;
        o->llen = lb.len;
        if (lb.len)
            memcpy(o->links, lb.data, lb.len);
        o->links[lb.len] = '\0';
        if (lw_hmap_put(&w->objs_cache, h, o) != 0) {
            json_decref(o->objs);
            free(o);
            o = NULL;
        }
    }
    free(txt);
    lw_buf_deinit(&lb);
    return o;
}

static const char *sec_name(uint8_t m)
{
    switch (m) {
    case RS_SEC_PSK: return "psk";
    case RS_SEC_RPK: return "rpk";
    case RS_SEC_X509: return "x509";
    default: return "nosec";
    }
}

static void encode_row(struct writer *w, const struct rec *r)
{
    char id[12], ver[8], ip[INET6_ADDRSTRLEN];
    struct lw_buf *c = w->col;
    regsrv_id_format(r->id, id);
    put_elem(&c[0], r->ep, strlen(r->ep));
    put_elem(&c[1], id, 11);
    bool has_ip = (r->family == 4 && fmt_ipv4(r->ip, ip) > 0) ||
                  (r->family == 6 && inet_ntop(AF_INET6, r->ip, ip, sizeof(ip)));
    put_str(&c[2], has_ip ? ip : NULL);
    if (has_ip)
        put_int(&c[3], r->port);
    else
        put_elem(&c[3], NULL, 0);
    size_t vl = 0; /* "M.m", each 0..15 */
    if (r->ver >> 4 >= 10)
        ver[vl++] = '1';
    ver[vl++] = (char)('0' + (r->ver >> 4) % 10);
    ver[vl++] = '.';
    if ((r->ver & 15) >= 10)
        ver[vl++] = '1';
    ver[vl++] = (char)('0' + (r->ver & 15) % 10);
    put_elem(&c[4], ver, vl);
    put_str(&c[5], r->binding);
    put_elem(&c[6], r->queue ? "t" : "f", 1);
    put_int(&c[7], r->lifetime_s);
    put_str(&c[8], r->sms);
    put_int(&c[9], r->reg_s);
    put_int(&c[10], r->upd_s);
    put_int(&c[11], r->exp_s);
    struct objtxt *o = r->objs ? objs_text(w, r->objs) : NULL;
    if (o) {
        if (o->batch != w->batch_seq) { /* first row of this batch with this list */
            o->batch = w->batch_seq;
            o->batch_ix = ++w->batch_nobjs;
            put_elem(&c[15], o->txt, o->len);
            put_elem(&c[16], o->links, o->llen);
        }
        put_int(&c[12], o->batch_ix);
    } else {
        put_elem(&c[12], NULL, 0);
    }
    put_str(&c[13], r->pid);
    put_str(&c[14], sec_name(r->sec));
}

static void encode_del(struct writer *w, const struct rec *r)
{
    char id[12];
    regsrv_id_format(r->id, id);
    put_elem(&w->dcol[0], r->ep, strlen(r->ep));
    if (r->del_any)
        put_elem(&w->dcol[1], NULL, 0);
    else
        put_elem(&w->dcol[1], id, 11);
}

static void cols_begin(struct lw_buf *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        lw_buf_reset(&b[i]);
        lw_buf_put_u8(&b[i], '{');
    }
}

static int cols_end(struct lw_buf *b, size_t n, const char **params)
{
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        lw_buf_put_u8(&b[i], '}');
        lw_buf_put_u8(&b[i], '\0');
        if (lw_buf_status(&b[i]) != 0)
            rc = LW_ENOMEM;
        params[i] = (const char *)b[i].data;
    }
    return rc;
}

/* Moves up to LW_STORE_BATCH_MAX queued endpoints into a new batch; NULL when none or on OOM. */
static struct batch *take_batch(struct writer *w)
{
    size_t want = LW_MIN(lw_hmap_count(&w->map), (size_t)LW_STORE_BATCH_MAX);
    if (want == 0)
        return NULL;
    struct batch *b = malloc(sizeof(*b) + want * sizeof(b->recs[0]));
    if (!b)
        return NULL;
    memset(b, 0, sizeof(*b));
    b->ok = true;
    size_t pos = w->scan_pos;
    struct rec *r;
    while (b->n < want) {
        r = lw_hmap_next(&w->map, &pos);
        if (!r) {
            if (pos == 0)
                break;
            pos = 0; /* wrap around */
            continue;
        }
        b->recs[b->n++] = r;
    }
    /* Removal after the walk (the map must not change while it is walked); backward-shift
     * deletion may move later items before scan_pos: the next wrap finds them. */
    for (size_t i = 0; i < b->n; i++) {
        lw_hmap_del_item(&w->map, b->recs[i]->hash, b->recs[i]);
        b->ndel += b->recs[i]->op == OP_DEL;
    }
    w->scan_pos = pos;
    return b;
}

static void try_send(struct writer *w);
static void start_connect(struct writer *w);

/* Older record r (taken back from a batch) meets cur, queued for the same endpoint since: the
 * outcome is what apply() would have made of r followed by cur. True: r stands (cur was a delete
 * of another registration, ignored; the caller drops cur); false: cur stands (r is dropped; a
 * delete of r's registration now also deletes any older row, as r may never have been written). */
static bool older_stands(struct rec *r, struct rec *cur)
{
    if (cur->op == OP_DEL) {
        bool names_r = !(r->op == OP_DEL && r->del_any) && r->id == cur->id;
        if (!names_r)
            return true;
        if (r->op == OP_UPSERT)
            cur->del_any = true;
    }
    return false;
}

/* A new piece holding n records of recs (their ownership moves to it); NULL on OOM. */
static struct batch *piece_new(struct rec *const *recs, size_t n)
{
    struct batch *p = malloc(sizeof(*p) + n * sizeof(p->recs[0]));
    if (!p)
        return NULL;
    memset(p, 0, sizeof(*p));
    p->piece = true;
    p->n = n;
    for (size_t i = 0; i < n; i++) {
        p->recs[i] = recs[i];
        p->ndel += recs[i]->op == OP_DEL;
    }
    return p;
}

static void rq_push_front(struct writer *w, struct batch *p)
{
    p->next = w->rq_head;
    w->rq_head = p;
    if (!w->rq_tail)
        w->rq_tail = p;
    w->rq_rows += p->n;
}

/* The next batch to send: the oldest piece of a refused batch first, else up to
 * LW_STORE_BATCH_MAX endpoints of the map (only once no piece waits: a piece's records are older
 * than anything queued for their endpoints, so they must reach the connection first). A piece's
 * record whose endpoint has a newer change queued is dropped: the newer one wins. NULL when
 * nothing waits or on OOM. */
static struct batch *next_batch(struct writer *w)
{
    struct batch *p;
    while ((p = w->rq_head) != NULL) {
        w->rq_head = p->next;
        if (!w->rq_head)
            w->rq_tail = NULL;
        w->rq_rows -= p->n;
        size_t k = 0;
        p->ndel = 0;
        for (size_t i = 0; i < p->n; i++) {
            struct rec *r = p->recs[i];
            struct rec *cur = lw_hmap_get(&w->map, r->hash, r, rec_eq);
            if (cur) {
                add(&w->coalesced, 1);
                if (!older_stands(r, cur)) {
                    rec_free(r);
                    continue;
                }
                lw_hmap_del_item(&w->map, cur->hash, cur);
                rec_free(cur);
            }
            p->recs[k++] = r;
            p->ndel += r->op == OP_DEL;
        }
        p->n = k;
        p->next = NULL;
        p->ok = true;
        p->retry = p->dead = p->whole = false;
        p->why[0] = '\0';
        if (k > 0)
            return p;
        free(p);
    }
    return take_batch(w);
}

/* Takes b's records back; b keeps none. A piece goes back whole to the front of the retry list;
 * a batch of the map puts its records back under whatever newer state was queued meanwhile. */
static void requeue_batch(struct writer *w, struct batch *b)
{
    struct batch *p = b->piece && b->n > 0 ? piece_new(b->recs, b->n) : NULL;
    if (p) {
        rq_push_front(w, p);
    } else {
        for (size_t i = 0; i < b->n; i++) {
            struct rec *r = b->recs[i];
            struct rec *cur = lw_hmap_get(&w->map, r->hash, r, rec_eq);
            if (cur && older_stands(r, cur)) {
                rec_release(cur);
                *cur = *r;
                free(r);
            } else if (cur || lw_hmap_put(&w->map, r->hash, r) != 0) {
                rec_free(r);
            }
        }
    }
    b->n = b->ndel = 0;
    b->dead = true;
    add(&w->requeued, 1);
}

/* Re-queues every batch from `from` to the newest, newest first (a newer batch's state for an
 * endpoint wins over an older one's; pieces end up in their order ahead of the retry list). */
static void requeue_from(struct writer *w, struct batch *from)
{
    struct batch *list[LW_STORE_INFLIGHT_MAX + 1];
    unsigned n = 0;
    for (struct batch *b = from; b && n < LW_ARRAY_SIZE(list); b = b->next)
        if (!b->dead)
            list[n++] = b;
    while (n > 0)
        requeue_batch(w, list[--n]);
    set_queued(w);
}

static void free_batch(struct batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        rec_free(b->recs[i]);
    free(b);
}

static void free_batches(struct batch *b)
{
    while (b) {
        struct batch *nx = b->next;
        free_batch(b);
        b = nx;
    }
}

/* Appends b to the batches in flight. */
static void inflight_push(struct writer *w, struct batch *b)
{
    b->next = NULL;
    if (w->bq_tail)
        w->bq_tail->next = b;
    else
        w->bq_head = b;
    w->bq_tail = b;
    w->ninflight++;
}

static void on_resume(uv_timer_t *t)
{
    struct writer *w = t->data;
    w->held = false;
    if (!w->pg)
        start_connect(w); /* the connection went meanwhile: its retry is this timer */
    else if (w->ready)
        try_send(w);
}

/* After a transient error: nothing is sent for the current backoff, which doubles. */
static void hold(struct writer *w)
{
    w->held = true;
    w->hold_ms = w->backoff_ms;
    if (w->attached)
        uv_timer_start(&w->retry_timer, on_resume, w->hold_ms, 0);
    w->backoff_ms = LW_MIN(w->backoff_ms * 2, BACKOFF_MAX_MS);
}

/* Halves refused batch b (two rows or more) into two pieces at the front of the retry list; b
 * keeps no record. 0 or LW_ENOMEM (b unchanged). */
static int split_batch(struct writer *w, struct batch *b)
{
    size_t h = b->n / 2;
    struct batch *lo = piece_new(b->recs, h);
    struct batch *hi = lo ? piece_new(b->recs + h, b->n - h) : NULL;
    if (!hi) {
        free(lo);
        return LW_ENOMEM;
    }
    rq_push_front(w, hi);
    rq_push_front(w, lo);
    b->n = b->ndel = 0;
    return 0;
}

/* The oldest batch in flight got its sync result. A refused batch is split in halves, each sent
 * again on its own (and split again if refused) until the rows the database refuses are alone:
 * only those are dropped, each logged and counted. The batches sent after it are taken back
 * first (they may hold newer changes of its endpoints, which must not be overwritten by the
 * retried older ones). */
static void batch_finished(struct writer *w)
{
    struct batch *b = w->bq_head;
    w->bq_head = b->next;
    if (!w->bq_head)
        w->bq_tail = NULL;
    w->ninflight--;
    if (!b->dead) {
        if (b->ok) {
            add(&w->batches, 1);
            add(&w->upserts, b->n - b->ndel);
            add(&w->deletes, b->ndel);
            if (!w->held)
                w->backoff_ms = BACKOFF_MIN_MS;
        } else if (b->retry) {
            add(&w->transient, 1);
            log_warn(STORE, "registration batch not written, queued again in %u ms: %s",
                     w->backoff_ms, b->why);
            requeue_from(w, b); /* b->next is still the batch after it */
            hold(w);
        } else {
            requeue_from(w, w->bq_head);
            if (b->n == 1) {
                add(&w->failed, 1);
                log_err(STORE,
                        "registration change refused by the database, not written: endpoint=%s: "
                        "%s",
                        b->recs[0]->ep, b->why);
            } else if (b->whole) {
                /* a missing table, column or privilege refuses every row alike: halves would
                 * only multiply the same error */
                add(&w->failed, b->n);
                log_err(STORE,
                        "registration batch refused by the database, %zu row(s) not written: %s",
                        b->n, b->why);
            } else if (b->n > 1 && split_batch(w, b) == 0) {
                add(&w->splits, 1);
                if (!b->piece)
                    log_warn(STORE,
                             "registration batch refused by the database, retried in halves to "
                             "isolate the refused rows: rows=%zu: %s",
                             w->rq_rows, b->why);
            } else {
                b->next = NULL;
                requeue_from(w, b);
                hold(w);
            }
        }
    }
    free_batch(b);
    set_queued(w);
}

/* One result of the oldest batch in flight (res is cleared by the caller). */
static void batch_result(struct writer *w, PGresult *res)
{
    struct batch *b = w->bq_head;
    ExecStatusType s = PQresultStatus(res);
    if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK || !b->ok)
        return;
    b->ok = false;
    if (s == PGRES_PIPELINE_ABORTED) {
        /* an earlier statement of this batch failed and says why; or the pipeline is aborted
         * for a reason outside it: send it again */
        b->retry = true;
        snprintf(b->why, sizeof(b->why), "pipeline aborted");
        return;
    }
    snprintf(b->why, sizeof(b->why), "%s", PQresultErrorMessage(res));
    b->why[strcspn(b->why, "\n")] = '\0';
    /* connection exception, resources, operator intervention, transaction rollback: the rows
     * are fine, the batch is sent again */
    const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    b->whole = code && strncmp(code, "42", 2) == 0;
    b->retry = code && (strncmp(code, "08", 2) == 0 || strncmp(code, "53", 2) == 0 ||
                        strncmp(code, "57", 2) == 0 || strncmp(code, "40", 2) == 0);
}

unsigned lw__store_fake_round(unsigned i, const struct lw__store_fake *f)
{
    if (!g.w || i >= g.n)
        return 0;
    struct writer *w = &g.w[i];
    drain(w);
    if (w->held || w->ready)
        return 0;
    while (w->ninflight < LW_STORE_INFLIGHT_MAX) {
        struct batch *b = next_batch(w);
        if (!b)
            break;
        inflight_push(w, b);
    }
    unsigned n = 0;
    while (w->bq_head) {
        struct batch *b = w->bq_head;
        bool bad = f->transient;
        for (size_t k = 0; k < b->n && !bad && f->refuse; k++)
            bad = f->refuse(f->ctx, b->recs[k]->ep);
        if (bad && !b->dead) {
            b->ok = false;
            b->retry = f->transient;
            b->whole = f->statement;
            snprintf(b->why, sizeof(b->why), "%s",
                     f->transient ? "test: transient" : "test: refused");
        } else if (!b->dead && f->written) {
            for (size_t k = 0; k < b->n; k++)
                f->written(f->ctx, b->recs[k]->ep, b->recs[k]->lifetime_s,
                           b->recs[k]->op == OP_DEL);
        }
        batch_finished(w);
        n++;
    }
    set_queued(w);
    return n;
}

/* ---- connection --------------------------------------------------------------------------------
 */

static void on_poll(uv_poll_t *h, int status, int events);

static void quiet_notice(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

static void stop_poll(struct writer *w)
{
    if (w->poll) {
        uv_poll_stop(w->poll);
        uv_close((uv_handle_t *)w->poll, free_handle);
        w->poll = NULL;
    }
}

/* Watches the libpq socket for `events`; a new socket (reconnect) gets a new handle. */
static void watch(struct writer *w, int events)
{
    int fd = PQsocket(w->pg);
    if (fd < 0 || !w->attached)
        return;
    if (w->poll && w->poll_fd != fd)
        stop_poll(w);
    if (!w->poll) {
        w->poll = malloc(sizeof(*w->poll));
        if (!w->poll)
            return;
        if (uv_poll_init_socket(w->loop, w->poll, fd) != 0) {
            free(w->poll);
            w->poll = NULL;
            return;
        }
        w->poll->data = w;
        w->poll_fd = fd;
    }
    uv_poll_start(w->poll, events, on_poll);
}

static void on_retry(uv_timer_t *t)
{
    start_connect(t->data);
}

static void connection_lost(struct writer *w, const char *why)
{
    bool was = atomic_load_explicit(&w->connected, memory_order_relaxed);
    requeue_from(w, w->bq_head);
    while (w->bq_head) {
        struct batch *b = w->bq_head;
        w->bq_head = b->next;
        free_batch(b);
    }
    w->bq_tail = NULL;
    w->ninflight = 0;
    w->flushing = false;
    w->held = false; /* the retry timer reconnects now */
    set_queued(w);
    stop_poll(w);
    PQfinish(w->pg);
    w->pg = NULL;
    w->ready = w->connecting = false;
    atomic_store_explicit(&w->connected, false, memory_order_relaxed);
    if (was)
        log_warn(STORE, "database connection lost, writes are queued: shard=%u: %s", w->idx, why);
    else
        log_info(STORE, "database not reachable, retrying in %u ms: shard=%u: %s", w->backoff_ms,
                 w->idx, why);
    if (w->attached)
        uv_timer_start(&w->retry_timer, on_retry, w->backoff_ms, 0);
    w->backoff_ms = LW_MIN(w->backoff_ms * 2, BACKOFF_MAX_MS);
}

static void lost_pq(struct writer *w)
{
    char why[256];
    snprintf(why, sizeof(why), "%s", PQerrorMessage(w->pg));
    why[strcspn(why, "\n")] = '\0';
    connection_lost(w, why);
}

static void connect_step(struct writer *w)
{
    switch (PQconnectPoll(w->pg)) {
    case PGRES_POLLING_READING: watch(w, UV_READABLE); break;
    case PGRES_POLLING_WRITING: watch(w, UV_WRITABLE); break;
    case PGRES_POLLING_OK:
        w->connecting = false;
        if (PQsetnonblocking(w->pg, 1) != 0 || PQenterPipelineMode(w->pg) != 1) {
            connection_lost(w, "cannot make the connection non-blocking and pipelined");
            return;
        }
        PQsetNoticeProcessor(w->pg, quiet_notice, NULL);
        w->ready = true;
        w->backoff_ms = BACKOFF_MIN_MS;
        atomic_store_explicit(&w->connected, true, memory_order_relaxed);
        add(&w->connects, 1);
        log_info(STORE, "database connected: write-behind of registrations: shard=%u queued=%zu",
                 w->idx, lw_hmap_count(&w->map));
        watch(w, UV_READABLE);
        try_send(w);
        break;
    default: lost_pq(w); break;
    }
}

static void start_connect(struct writer *w)
{
    w->pg = PQconnectStart(g.url);
    if (!w->pg || PQstatus(w->pg) == CONNECTION_BAD) {
        connection_lost(w, w->pg ? "connection failed" : "out of memory");
        return;
    }
    w->connecting = true;
    connect_step(w);
}

/* Reads what arrived and finishes the batches whose results are complete. */
static void consume(struct writer *w)
{
    if (!PQconsumeInput(w->pg)) {
        lost_pq(w);
        return;
    }
    unsigned nulls = 0;
    while (w->bq_head && !PQisBusy(w->pg) && nulls < 2) {
        PGresult *res = PQgetResult(w->pg);
        if (!res) { /* the end of one statement's results */
            nulls++;
            continue;
        }
        nulls = 0;
        if (PQresultStatus(res) == PGRES_PIPELINE_SYNC)
            batch_finished(w);
        else
            batch_result(w, res);
        PQclear(res);
    }
    if (PQstatus(w->pg) == CONNECTION_BAD) {
        connection_lost(w, "connection closed by the server");
        return;
    }
    try_send(w);
}

static void flush_out(struct writer *w)
{
    int r = PQflush(w->pg);
    if (r < 0) {
        lost_pq(w);
        return;
    }
    w->flushing = r == 1;
    watch(w, w->flushing ? (UV_READABLE | UV_WRITABLE) : UV_READABLE);
}

/* Queues one batch's statements and its sync on the connection (not flushed). 0, or -1 when
 * libpq refused (the connection is lost; b is in the in-flight list). */
static int send_batch(struct writer *w, struct batch *b)
{
    const char *dp[2], *up[NCOLS];
    inflight_push(w, b);
    cols_begin(w->dcol, 2);
    cols_begin(w->col, NCOLS);
    w->batch_seq++;
    w->batch_nobjs = 0;
    for (size_t i = 0; i < b->n; i++) {
        if (b->recs[i]->op == OP_DEL)
            encode_del(w, b->recs[i]);
        else
            encode_row(w, b->recs[i]);
    }
    if (cols_end(w->dcol, 2, dp) != 0 || cols_end(w->col, NCOLS, up) != 0) {
        /* out of memory: the batch goes back to the queue, the next tick tries again */
        b->ok = false;
        b->retry = true;
        snprintf(b->why, sizeof(b->why), "out of memory");
    } else {
        if (b->ndel > 0 && !PQsendQueryParams(w->pg, del_sql, 2, NULL, dp, NULL, NULL, 0))
            return -1;
        if (b->n > b->ndel && !PQsendQueryParams(w->pg, ups_sql, NCOLS, NULL, up, NULL, NULL, 0))
            return -1;
    }
    if (!PQpipelineSync(w->pg))
        return -1;
    return 0;
}

/* Counts n changes just drained into the arrival window; when the window is complete, decides
 * whether they arrive in a surge: at least g.surge_per_s changes per second, or shards whose
 * receive batches came full (datagrams waiting in the socket) LW_STORE_SURGE_FULL_BATCHES times
 * in the window. */
static void note_arrivals(struct writer *w, size_t n)
{
    uint64_t now = uv_now(w->loop);
    w->win_n += n;
    if (now - w->win_start < LW_STORE_SURGE_WINDOW_MS)
        return;
    uint64_t full = 0;
    for (unsigned k = 0; k < g.n; k++)
        full += atomic_load_explicit(&g.w[k].full_batches, memory_order_relaxed);
    bool busy = full - w->full_seen >= LW_STORE_SURGE_FULL_BATCHES;
    w->full_seen = full;
    w->surge = g.surge_per_s > 0 && (busy || (uint64_t)w->win_n * 1000u >=
                                                 (uint64_t)g.surge_per_s * (now - w->win_start));
    w->win_start = now;
    w->win_n = 0;
}

/* True while the writer holds its writes for a storm (store.h): begins a hold when changes
 * arrive in a surge and some are queued, ends it when the surge is over, when g.defer_max_ms have
 * passed (then no new hold begins before the queue was empty once) or when half of the queue
 * bound is used. Loop thread, attached writers only. */
static bool deferring(struct writer *w)
{
    if (!w->attached || g.defer_max_ms == 0)
        return false;
    uint64_t now = uv_now(w->loop);
    size_t queued = pending(w) + atomic_load_explicit(&w->in_n, memory_order_relaxed);
    if (w->defer_spent && queued == 0)
        w->defer_spent = false;
    bool want = w->surge && !w->defer_spent && queued < w->qmax / 2;
    if (w->deferring) {
        uint64_t spent = now - w->defer_start;
        if (want && spent < g.defer_max_ms)
            return true;
        w->deferring = false;
        w->defer_spent = spent >= g.defer_max_ms;
        add(&w->deferred_ms, spent);
        return false;
    }
    if (!want || queued == 0)
        return false;
    w->deferring = true;
    w->defer_start = now;
    add(&w->deferrals, 1);
    return true;
}

static void try_send(struct writer *w)
{
    bool sent = false;
    if (!w->ready || deferring(w))
        return;
    while (w->ready && !w->flushing && !w->held && w->ninflight < LW_STORE_INFLIGHT_MAX &&
           pending(w) > 0) {
        struct batch *b = next_batch(w);
        if (!b)
            break;
        if (send_batch(w, b) != 0) {
            lost_pq(w);
            return;
        }
        sent = true;
        flush_out(w);
        if (!w->pg)
            return;
    }
    if (sent)
        set_queued(w);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct writer *w = h->data;
    if (!w->pg)
        return;
    if (w->connecting) {
        connect_step(w);
        return;
    }
    if (status < 0) {
        connection_lost(w, uv_strerror(status));
        return;
    }
    if ((events & UV_WRITABLE) && w->flushing) {
        flush_out(w);
        if (!w->pg)
            return;
    }
    if (events & UV_READABLE)
        consume(w);
    else if (!w->flushing)
        try_send(w);
}

static void on_flush_timer(uv_timer_t *t)
{
    struct writer *w = t->data;
    note_arrivals(w, drain(w));
    try_send(w);
}

static void on_kick(uv_async_t *a)
{
    struct writer *w = a->data;
    note_arrivals(w, drain(w));
    try_send(w);
}

/* ---- metrics -----------------------------------------------------------------------------------
 */

static void write_metrics(void *ctx, struct lw_buf *out)
{
    (void)ctx;
    struct lw_store_stats s;
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
        {"lwm2md_store_rows_refused_total",
         "Registration rows refused by the database (isolated, logged, not written)",
         offsetof(struct lw_store_stats, failed)},
        {"lwm2md_store_batches_failed_total",
         "Registration rows refused by the database (the former name of rows_refused_total)",
         offsetof(struct lw_store_stats, failed)},
        {"lwm2md_store_batches_split_total",
         "Refused batches or pieces split in halves to isolate the refused rows",
         offsetof(struct lw_store_stats, splits)},
        {"lwm2md_store_transient_errors_total",
         "Batches failed for a transient reason, sent again after a backoff",
         offsetof(struct lw_store_stats, transient)},
        {"lwm2md_store_batches_requeued_total",
         "Batches re-queued after a connection loss or a transient error",
         offsetof(struct lw_store_stats, requeued)},
        {"lwm2md_store_connects_total", "Successful database connections of the store",
         offsetof(struct lw_store_stats, connects)},
        {"lwm2md_store_deferrals_total",
         "Storm holds: writes held while registration changes arrived in a surge",
         offsetof(struct lw_store_stats, deferrals)},
        {"lwm2md_store_deferred_ms_total", "Milliseconds writers spent in storm holds",
         offsetof(struct lw_store_stats, deferred_ms)},
    };
    for (size_t i = 0; i < LW_ARRAY_SIZE(ctrs); i++) {
        uint64_t v;
        memcpy(&v, (const char *)&s + ctrs[i].off, sizeof(v));
        lw_buf_printf(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", ctrs[i].name, ctrs[i].help,
                      ctrs[i].name, ctrs[i].name, (unsigned long long)v);
    }
    lw_buf_printf(out,
                  "# HELP lwm2md_store_queued Endpoints with a change waiting to be written\n"
                  "# TYPE lwm2md_store_queued gauge\nlwm2md_store_queued %llu\n"
                  "# HELP lwm2md_store_connected 1 while every store connection is up\n"
                  "# TYPE lwm2md_store_connected gauge\nlwm2md_store_connected %d\n"
                  "# HELP lwm2md_store_inflight_batches Batches sent and not yet answered\n"
                  "# TYPE lwm2md_store_inflight_batches gauge\n"
                  "lwm2md_store_inflight_batches %llu\n",
                  (unsigned long long)s.queued, s.connected ? 1 : 0,
                  (unsigned long long)s.inflight);
    if (!g.w)
        return;
    lw_buf_printf(out, "# HELP lwm2md_store_shard_queued Endpoints waiting, by shard writer\n"
                       "# TYPE lwm2md_store_shard_queued gauge\n");
    for (unsigned i = 0; i < g.n; i++) {
        struct writer *w = &g.w[i];
        lw_buf_printf(out, "lwm2md_store_shard_queued{shard=\"%u\"} %llu\n", i,
                      (unsigned long long)(atomic_load(&w->queued) + atomic_load(&w->in_n)));
    }
    lw_buf_printf(out, "# HELP lwm2md_store_shard_upserts_total Rows written, by shard writer\n"
                       "# TYPE lwm2md_store_shard_upserts_total counter\n");
    for (unsigned i = 0; i < g.n; i++)
        lw_buf_printf(out, "lwm2md_store_shard_upserts_total{shard=\"%u\"} %llu\n", i,
                      (unsigned long long)atomic_load(&g.w[i].upserts));
    lw_buf_printf(
        out, "# HELP lwm2md_store_shard_connected 1 while the shard writer's connection is up\n"
             "# TYPE lwm2md_store_shard_connected gauge\n");
    for (unsigned i = 0; i < g.n; i++)
        lw_buf_printf(out, "lwm2md_store_shard_connected{shard=\"%u\"} %d\n", i,
                      atomic_load(&g.w[i].connected) ? 1 : 0);
}

/* ---- start / attach / detach / stop ------------------------------------------------------------
 */

int lw_store_start(uv_loop_t *loop, const struct lw_config *cfg)
{
    (void)loop;
    if (!cfg->db_url || !*cfg->db_url)
        return 0;
    memset(&g, 0, sizeof(g));
    g.url = strdup(cfg->db_url);
    if (!g.url)
        return LW_ENOMEM;
    lw_random(g.key, sizeof(g.key));
    g.surge_per_s = LW_STORE_SURGE_PER_S;
    g.defer_max_ms = cfg->db_write_hold;
    g.metrics.write = write_metrics;
    lw_metrics_register(&g.metrics);
    g.started = true;
    return 0;
}

int lw_store_attach(unsigned n, unsigned i, uv_loop_t *loop)
{
    if (!g.started)
        return 0;
    if (n == 0 || i >= n || (g.w && g.n != n))
        return LW_EINVAL;
    if (!g.w) {
        g.w = calloc(n, sizeof(*g.w));
        if (!g.w)
            return LW_ENOMEM;
        g.n = n;
        for (unsigned k = 0; k < n; k++) {
            struct writer *w = &g.w[k];
            w->idx = k;
            w->qmax = (LW_STORE_QUEUE_MAX + n - 1) / n;
            w->backoff_ms = BACKOFF_MIN_MS;
            pthread_mutex_init(&w->lock, NULL);
            lw_hmap_init(&w->map, 0);
            lw_hmap_init(&w->objs_cache, 0);
            for (unsigned c = 0; c < NCOLS; c++)
                lw_buf_init(&w->col[c], 0);
            lw_buf_init(&w->dcol[0], 0);
            lw_buf_init(&w->dcol[1], 0);
        }
    }
    struct writer *w = &g.w[i];
    if (w->attached)
        return LW_EINVAL;
    w->loop = loop;
    uv_timer_init(loop, &w->flush_timer);
    uv_timer_init(loop, &w->retry_timer);
    if (uv_async_init(loop, &w->kick, on_kick) != 0) {
        uv_close((uv_handle_t *)&w->flush_timer, NULL);
        uv_close((uv_handle_t *)&w->retry_timer, NULL);
        return LW_ENOMEM;
    }
    w->flush_timer.data = w->retry_timer.data = w->kick.data = w;
    w->attached = true;
    w->win_start = uv_now(loop);
    pthread_mutex_lock(&w->lock);
    w->kick_ok = true;
    pthread_mutex_unlock(&w->lock);
    uv_timer_start(&w->flush_timer, on_flush_timer, LW_STORE_FLUSH_MS, LW_STORE_FLUSH_MS);
    start_connect(w);
    return 0;
}

void lw_store_detach(unsigned i)
{
    if (!g.w || i >= g.n || !g.w[i].attached)
        return;
    struct writer *w = &g.w[i];
    pthread_mutex_lock(&w->lock);
    w->kick_ok = false;
    pthread_mutex_unlock(&w->lock);
    uv_timer_stop(&w->flush_timer);
    uv_timer_stop(&w->retry_timer);
    stop_poll(w);
    uv_close((uv_handle_t *)&w->flush_timer, NULL);
    uv_close((uv_handle_t *)&w->retry_timer, NULL);
    uv_close((uv_handle_t *)&w->kick, NULL);
    w->attached = false;
}

/* Blocking: reads results until every batch in flight is finished (or the connection fails). */
static void wait_inflight(struct writer *w)
{
    while (w->pg && w->bq_head) {
        if (PQflush(w->pg) < 0) {
            lost_pq(w);
            return;
        }
        PGresult *res = PQgetResult(w->pg);
        if (!res) {
            if (PQstatus(w->pg) == CONNECTION_BAD) {
                lost_pq(w);
                return;
            }
            continue;
        }
        if (PQresultStatus(res) == PGRES_PIPELINE_SYNC)
            batch_finished(w);
        else
            batch_result(w, res);
        PQclear(res);
    }
}

static uint64_t ms_since(uint64_t t0)
{
    return (uv_hrtime() - t0) / 1000000;
}

/* Blocking write of everything queued on w (shutdown). */
static void stop_writer(struct writer *w, uint64_t t0)
{
    drain(w);
    if (w->pg && (w->connecting || PQstatus(w->pg) != CONNECTION_OK)) {
        PQfinish(w->pg);
        w->pg = NULL;
        w->connecting = w->ready = false;
    }
    if (w->pg && w->ready) {
        /* let the batches in flight finish: their outcome decides what is sent again */
        PQsetnonblocking(w->pg, 0);
        wait_inflight(w);
    }
    if (pending(w) == 0)
        return;
    if (!w->pg) {
        /* a short connect timeout: a database that is down must not hold the stop */
        const char *keys[] = {"dbname", "connect_timeout", NULL};
        const char *vals[] = {g.url, "2", NULL};
        w->pg = PQconnectdbParams(keys, vals, 1);
        if (PQstatus(w->pg) != CONNECTION_OK || PQenterPipelineMode(w->pg) != 1) {
            log_err(STORE,
                    "stopping with %zu registration change(s) not written: database not "
                    "reachable: shard=%u",
                    pending(w), w->idx);
            return;
        }
        w->ready = true;
    }
    PQsetnonblocking(w->pg, 0);
    while (w->pg && pending(w) > 0 && ms_since(t0) < (uint64_t)STOP_BUDGET_MS) {
        if (w->held) { /* a transient error: wait (within the budget) as the loop would */
            uint64_t spent = ms_since(t0);
            if (spent + w->hold_ms >= (uint64_t)STOP_BUDGET_MS)
                break;
            uv_sleep(w->hold_ms);
            w->held = false;
        }
        struct batch *b = next_batch(w);
        if (!b)
            break;
        if (send_batch(w, b) != 0 || PQflush(w->pg) != 0) {
            lost_pq(w);
            break;
        }
        wait_inflight(w);
    }
    if (pending(w) > 0)
        log_err(STORE, "stopping with %zu registration change(s) not written: shard=%u", pending(w),
                w->idx);
}

void lw_store_stop(void)
{
    if (!g.started)
        return;
    uint64_t t0 = uv_hrtime();
    g.started = false;
    lw_metrics_unregister(&g.metrics);
    size_t left = 0;
    for (unsigned i = 0; g.w && i < g.n; i++) {
        struct writer *w = &g.w[i];
        lw_store_detach(i);
        stop_writer(w, t0);
        left += pending(w);
    }
    if (g.w && left == 0)
        log_info(STORE, "write-behind queue flushed");
    for (unsigned i = 0; g.w && i < g.n; i++) {
        struct writer *w = &g.w[i];
        PQfinish(w->pg);
        w->pg = NULL;
        atomic_store_explicit(&w->connected, false, memory_order_relaxed);
        while (w->bq_head) {
            struct batch *b = w->bq_head;
            w->bq_head = b->next;
            free_batch(b);
        }
        free_batches(w->rq_head);
        w->rq_head = w->rq_tail = NULL;
        w->rq_rows = 0;
        size_t pos = 0;
        struct rec *r;
        while ((r = lw_hmap_next(&w->map, &pos)))
            rec_free(r);
        lw_hmap_deinit(&w->map);
        objs_cache_clear(w);
        lw_hmap_deinit(&w->objs_cache);
        for (unsigned c = 0; c < NCOLS; c++)
            lw_buf_deinit(&w->col[c]);
        lw_buf_deinit(&w->dcol[0]);
        lw_buf_deinit(&w->dcol[1]);
        while (w->spare) {
            struct chunk *c = w->spare;
            w->spare = c->next;
            free(c);
        }
        pthread_mutex_destroy(&w->lock);
    }
    free(g.w);
    g.w = NULL;
    g.n = 0;
    free(g.url);
    g.url = NULL;
}

bool lw_store_enabled(void)
{
    return g.started;
}

bool lw_store_db_ok(void)
{
    if (!g.url)
        return true;
    for (unsigned i = 0; g.w && i < g.n; i++)
        if (!atomic_load_explicit(&g.w[i].connected, memory_order_relaxed))
            return false;
    return g.w != NULL;
}

void lw_store_get_stats(struct lw_store_stats *o)
{
    memset(o, 0, sizeof(*o));
    o->dropped = atomic_load_explicit(&g.dropped_early, memory_order_relaxed);
    o->connected = g.w != NULL;
    for (unsigned i = 0; g.w && i < g.n; i++) {
        struct writer *w = &g.w[i];
#define LD(f) o->f += atomic_load_explicit(&w->f, memory_order_relaxed)
        LD(changes);
        LD(coalesced);
        LD(dropped);
        LD(upserts);
        LD(deletes);
        LD(batches);
        LD(failed);
        LD(requeued);
        LD(splits);
        LD(transient);
        LD(connects);
        LD(queued);
        LD(inflight);
        LD(deferrals);
        LD(deferred_ms);
#undef LD
        o->queued += atomic_load_explicit(&w->in_n, memory_order_relaxed);
        o->connected = o->connected && atomic_load_explicit(&w->connected, memory_order_relaxed);
    }
}

void lw_store_rx_batch(unsigned i, unsigned n, unsigned cap)
{
    if (g.w && i < g.n && n >= cap)
        atomic_fetch_add_explicit(&g.w[i].full_batches, 1, memory_order_relaxed);
}

void lw__store_tune(unsigned surge_per_s, unsigned defer_max_ms)
{
    g.surge_per_s = surge_per_s;
    g.defer_max_ms = defer_max_ms;
}

bool lw__store_holding(unsigned i)
{
    return g.w && i < g.n && deferring(&g.w[i]);
}
