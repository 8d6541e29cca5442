/* server/store/restore.c - restore of live registrations at start (see store.h).
 *
 * One thread and connection per shard, before the shard threads run: each streams the rows of
 * its shard's registration ids (the id's top byte names the issuing shard, and the 11-character
 * base62 text sorts like the number, so a shard's ids are one text range) with a binary COPY and
 * puts them back with regsrv_restore (safe across shards: the directory has striped locks and the
 * object list interning a mutex). The "objects" JSON of a row becomes a CoRE link list once per
 * distinct list (a fleet shares few) through a small per-thread cache. */
#include "base/buf.h"
#include "base/err.h"
#include "base/hash.h"
#include "base/util.h"
#include "dir.h"
#include "log.h"
#include "registry.h"
#include "shard.h"
#include "store/store.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LINKS_CACHE_MAX 1024u
#define RESERVE_MAX     (16u << 20) /* directory names reserved at most (~32 B of table each) */
#define NCOL            15

/* The shard's id range (text, byte order; no upper bound for the last possible shard). Times come
 * as binary timestamptz and the object list as link text (rows written before the store kept
 * object_links: the objects JSON): both far cheaper for the server than rendering JSON and
 * numeric epochs (measured: 500 k rows 13.4 s -> 3.6 s under load). */
static const char restore_sql[] =
    "COPY (SELECT endpoint, reg_id, address, port, lwm2m_version, binding, queue_mode, lifetime, "
    "sms_number, registered_at, updated_at, expires_at, "
    "CASE WHEN object_links <> '' THEN object_links ELSE objects::text END, profile_id, "
    "security_mode "
    "FROM registrations WHERE expires_at > now() AND reg_id COLLATE \"C\" >= '%s' %s%s%s) "
    "TO STDOUT (FORMAT binary)";

enum {
    C_EP,
    C_ID,
    C_ADDR,
    C_PORT,
    C_VER,
    C_B,
    C_Q,
    C_LT,
    C_SMS,
    C_REG,
    C_UPD,
    C_EXP,
    C_OBJS,
    C_PID,
    C_SEC
};

struct links {
    uint64_t hash;
    size_t jlen, llen;
    char *json; /* the objects text (key) */
    uint8_t *links;
};

/* Skipped rows are logged, the first few of each shard (a broken table must not flood the log;
 * the start-up line counts them all). */
#define SKIPS_LOGGED 5

/* A row whose registration is held by another shard than the job's (below), copied for the
 * second pass. */
struct later {
    struct regsrv_saved sv; /* its strings and links point into mem */
    unsigned holder;
    uint8_t *mem;
};

struct job {
    const char *url;
    unsigned shard, nshards;
    struct later *later; /* rows for other shards, restored after every job ended */
    size_t nlater, caplater;
    uv_thread_t thread;
    bool threaded;        /* thread runs (else the caller ran the job) */
    struct lw_hmap cache; /* struct links by hash of the JSON text */
    uint8_t key[16];
    unsigned long restored, expired, skipped;
    uint64_t cpu_ns; /* the thread's CPU time: parsing and putting rows back */
    int rc;
    char why[300];
};

int lw__store_links_json(const json_t *arr, struct lw_buf *b)
{
    size_t i;
    json_t *o;
    if (!json_is_array(arr))
        return LW_EMALFORMED;
    json_array_foreach(arr, i, o)
    {
        char tmp[64];
        json_int_t id = json_integer_value(json_object_get(o, "id"));
        const char *ver = json_string_value(json_object_get(o, "version"));
        json_t *insts = json_object_get(o, "instances");
        int n = snprintf(tmp, sizeof(tmp), "%s</%lld>", b->len ? "," : "", (long long)id);
        lw_buf_put(b, tmp, (size_t)n);
        if (ver && strlen(ver) < 16) {
            n = snprintf(tmp, sizeof(tmp), ";ver=%s", ver);
            lw_buf_put(b, tmp, (size_t)n);
        }
        size_t k;
        json_t *inst;
        json_array_foreach(insts, k, inst)
        {
            n = snprintf(tmp, sizeof(tmp), ",</%lld/%lld>", (long long)id,
                         (long long)json_integer_value(inst));
            lw_buf_put(b, tmp, (size_t)n);
        }
    }
    return lw_buf_status(b);
}

static int links_of(const char *objs_json, size_t len, struct lw_buf *b)
{
    json_error_t e;
    json_t *arr = json_loadb(objs_json, len, 0, &e);
    int rc = lw__store_links_json(arr, b);
    json_decref(arr);
    return rc;
}

struct jkey {
    const char *p;
    size_t len;
};

static bool links_eq(const void *item, const void *key)
{
    const struct links *l = item;
    const struct jkey *k = key;
    return l->jlen == k->len && memcmp(l->json, k->p, k->len) == 0;
}

static void cache_clear(struct lw_hmap *m)
{
    size_t pos = 0;
    struct links *l;
    while ((l = lw_hmap_next(m, &pos))) {
        free(l->json);
        free(l->links);
        free(l);
    }
    lw_hmap_deinit(m);
    lw_hmap_init(m, 0);
}

/* The cached link list of an objects text: 0 with *out borrowed until the next call, or
 * LW_EMALFORMED / LW_ENOMEM. */
static int cached_links(struct job *j, const char *json, size_t len, const struct links **out)
{
    struct jkey k = {json, len};
    uint64_t h = lw_siphash(j->key, json, len);
    struct links *l = lw_hmap_get(&j->cache, h, &k, links_eq);
    int rc;
    if (l) {
        *out = l;
        return 0;
    }
    if (lw_hmap_count(&j->cache) >= LINKS_CACHE_MAX)
        cache_clear(&j->cache);
    struct lw_buf b;
    lw_buf_init(&b, 256);
    if ((rc = links_of(json, len, &b)) != 0) {
        lw_buf_deinit(&b);
        return rc;
    }
    l = calloc(1, sizeof(*l));
    if (!l || !(l->json = malloc(len + 1))) {
        free(l);
        lw_buf_deinit(&b);
        return LW_ENOMEM;
    }
    memcpy(l->json, json, len);
    l->json[len] = '\0';
    l->jlen = len;
    l->hash = h;
    l->llen = b.len;
    l->links = b.data; /* the buffer's memory moves to the entry */
    if (lw_hmap_put(&j->cache, h, l) != 0) {
        free(l->json);
        free(l);
        lw_buf_deinit(&b);
        return LW_ENOMEM;
    }
    *out = l;
    return 0;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const uint8_t *p)
{
    return (uint64_t)be32(p) << 32 | be32(p + 4);
}

/* Binary timestamptz (microseconds since 2000-01-01 UTC) -> Unix milliseconds. */
static int64_t unix_ms(const uint8_t *p)
{
    int64_t us = (int64_t)be64(p);
    return us / 1000 + 946684800000LL;
}

static uint8_t sec_of(const char *s, size_t n)
{
    if (n == 3 && memcmp(s, "psk", 3) == 0)
        return RS_SEC_PSK;
    if (n == 3 && memcmp(s, "rpk", 3) == 0)
        return RS_SEC_RPK;
    if (n == 4 && memcmp(s, "x509", 4) == 0)
        return RS_SEC_X509;
    return RS_SEC_NOSEC;
}

/* "M.m" with one digit each side (what the store writes; a version above 15 cannot be kept). */
static bool version_of(const char *s, unsigned *maj, unsigned *min)
{
    unsigned v[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        const char *start = s;
        while (*s >= '0' && *s <= '9' && v[k] <= 15)
            v[k] = v[k] * 10 + (unsigned)(*s++ - '0');
        if (s == start || v[k] > 15 || *s != (k == 0 ? '.' : '\0'))
            return false;
        s++;
    }
    *maj = v[0];
    *min = v[1];
    return true;
}

struct field {
    const uint8_t *p;
    int32_t len; /* -1: NULL */
};

/* Copies a text field into a NUL-terminated buffer of cap bytes; false when NULL or too long. */
static bool text_of(const struct field *f, char *out, size_t cap)
{
    if (f->len < 0 || (size_t)f->len >= cap)
        return false;
    memcpy(out, f->p, (size_t)f->len);
    out[f->len] = '\0';
    return true;
}

#define DEFERRED 1 /* restore_tuple: kept for the second pass, counted then */

/* Keeps a copy of sv for the shard `holder` (restored after every job ended: each shard's tables
 * have one writer at a time); on the issuing shard its slot is marked as moved there. DEFERRED,
 * or LW_ETIMEDOUT / LW_EEXIST / LW_ENOMEM like regsrv_restore. */
static int defer(struct job *j, const struct regsrv_saved *sv, unsigned holder)
{
    struct regsrv *r = shard_regsrv(shard_get(j->shard));
    if (sv->expires_ms <= lw_clock_wall(r->cfg.clock))
        return LW_ETIMEDOUT;
    if (dir_id_shard(sv->id) == j->shard) {
        int rc = regsrv_restore_moved(r, sv->id, holder);
        if (rc)
            return rc;
    }
    if (j->nlater == j->caplater) {
        size_t cap = j->caplater ? 2 * j->caplater : 64;
        struct later *nl = realloc(j->later, cap * sizeof(*nl));
        if (!nl)
            return LW_ENOMEM;
        j->later = nl;
        j->caplater = cap;
    }
    size_t le = strlen(sv->ep) + 1, ls = sv->sms ? strlen(sv->sms) + 1 : 0,
           lp = sv->pid ? strlen(sv->pid) + 1 : 0;
    struct later *l = &j->later[j->nlater];
    if (!(l->mem = malloc(le + ls + lp + sv->links_len + 1)))
        return LW_ENOMEM;
    l->sv = *sv;
    l->holder = holder;
    char *m = (char *)l->mem;
    l->sv.ep = memcpy(m, sv->ep, le);
    m += le;
    l->sv.sms = sv->sms ? memcpy(m, sv->sms, ls) : NULL;
    m += ls;
    l->sv.pid = sv->pid ? memcpy(m, sv->pid, lp) : NULL;
    m += lp;
    l->sv.links = sv->links_len ? memcpy(m, sv->links, sv->links_len) : (const uint8_t *)m;
    j->nlater++;
    return DEFERRED;
}

/* One binary COPY tuple into the job's shard: 0, or the LW_E* reason it was skipped. */
static int restore_tuple(struct job *j, const struct field *f)
{
    struct regsrv_saved sv;
    char ep[DIR_MAX_NAME + 1], sms[1024], pid[1024], ver[16], sec[16];
    unsigned maj = 1, min = 0;
    memset(&sv, 0, sizeof(sv));
    if (!text_of(&f[C_EP], ep, sizeof(ep)) || f[C_ID].len < 0 ||
        regsrv_id_parse((const char *)f[C_ID].p, (size_t)f[C_ID].len, &sv.id) != 0)
        return LW_EMALFORMED;
    unsigned issuer = dir_id_shard(sv.id);
    if (issuer != j->shard && !(issuer >= j->nshards && j->shard + 1 == j->nshards))
        return LW_ERANGE;
    /* inet: family (2 = IPv4, 3 = IPv6), bits, is_cidr, address length, address */
    const struct field *a = &f[C_ADDR];
    if (a->len == 8 && a->p[0] == 2 && a->p[3] == 4) {
        sv.addr.family = 4;
        memcpy(sv.addr.ip, a->p + 4, 4);
    } else if (a->len == 20 && a->p[0] == 3 && a->p[3] == 16) {
        sv.addr.family = 6;
        memcpy(sv.addr.ip, a->p + 4, 16);
    } else {
        return LW_EMALFORMED;
    }
    if (f[C_PORT].len != 4 || f[C_Q].len != 1 || f[C_LT].len != 4 || f[C_REG].len != 8 ||
        f[C_UPD].len != 8 || f[C_EXP].len != 8)
        return LW_EMALFORMED;
    sv.addr.port = (uint16_t)be32(f[C_PORT].p);
    sv.ep = ep;
    if (!text_of(&f[C_VER], ver, sizeof(ver)) || !version_of(ver, &maj, &min))
        return LW_EMALFORMED;
    sv.ver = (uint8_t)(maj << 4 | min);
    if (f[C_B].len < 0)
        return LW_EMALFORMED;
    size_t bl = LW_MIN((size_t)f[C_B].len, sizeof(sv.binding) - 1);
    memcpy(sv.binding, f[C_B].p, bl);
    sv.binding[bl] = '\0';
    sv.queue = f[C_Q].p[0] != 0;
    sv.lifetime_s = be32(f[C_LT].p);
    if (f[C_SMS].len >= 0 && !text_of(&f[C_SMS], sms, sizeof(sms)))
        return LW_EMALFORMED;
    sv.sms = f[C_SMS].len >= 0 ? sms : NULL;
    sv.registered_s = (uint32_t)(unix_ms(f[C_REG].p) / 1000);
    sv.updated_s = (uint32_t)(unix_ms(f[C_UPD].p) / 1000);
    sv.expires_ms = unix_ms(f[C_EXP].p);
    if (f[C_PID].len >= 0 && !text_of(&f[C_PID], pid, sizeof(pid)))
        return LW_EMALFORMED;
    sv.pid = f[C_PID].len >= 0 ? pid : NULL;
    if (!text_of(&f[C_SEC], sec, sizeof(sec)))
        return LW_EMALFORMED;
    sv.sec = sec_of(sec, strlen(sec));
    if (f[C_OBJS].len < 0)
        return LW_EMALFORMED;
    if (f[C_OBJS].len > 0 && f[C_OBJS].p[0] == '[') { /* JSON */
        const struct links *l;
        int rc = cached_links(j, (const char *)f[C_OBJS].p, (size_t)f[C_OBJS].len, &l);
        if (rc != 0)
            return rc;
        sv.links = l->links;
        sv.links_len = l->llen;
    } else {
        sv.links = f[C_OBJS].p;
        sv.links_len = (size_t)f[C_OBJS].len;
    }
    struct regsrv *r = shard_regsrv(shard_get(j->shard));
    /* The shard that will receive the device's datagrams holds it: for NoSec the owner of its
     * address (udp.h), which differs from the issuer when the device moved to an address of
     * another shard before the restart; for DTLS the issuer, whose session it is (an issuer
     * this run does not have: the address owner, where its records fall back to). */
    unsigned holder = issuer;
    if (sv.sec == RS_SEC_NOSEC || issuer >= j->nshards) {
        struct sockaddr_storage ss;
        peer_addr_to_sa(&sv.addr, &ss);
        holder = shard_for_addr((const struct sockaddr *)&ss);
    }
    int rc;
    if (holder != j->shard || issuer != j->shard)
        rc = defer(j, &sv, holder);
    else
        rc = regsrv_restore(r, &sv, r->now);
    if (rc != 0 && rc != LW_ETIMEDOUT && rc != LW_ENOMEM && j->skipped < SKIPS_LOGGED)
        log_warn(STORE, "registration of %s (shard %u) not restored: %s", ep, j->shard,
                 lw_strerror(rc));
    return rc;
}

static void count(struct job *j, int r)
{
    if (r == DEFERRED)
        return;
    if (r == LW_EMALFORMED && j->skipped < SKIPS_LOGGED)
        log_warn(STORE, "a registration row of shard %u is malformed: not restored", j->shard);
    if (r == 0)
        j->restored++;
    else if (r == LW_ETIMEDOUT)
        j->expired++;
    else if (r == LW_ENOMEM)
        j->rc = LW_ENOMEM;
    else
        j->skipped++;
}

/* One CopyData message: the file header (first message only) and/or one tuple, or the trailer. */
static void copy_message(struct job *j, const uint8_t *p, size_t n, bool *header)
{
    static const uint8_t sig[11] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xff, '\r', '\n', 0};
    if (*header) {
        if (n < 19 || memcmp(p, sig, sizeof(sig)) != 0) {
            j->skipped++;
            return;
        }
        uint32_t ext = be32(p + 15);
        if (ext > n - 19)
            return;
        p += 19 + ext;
        n -= 19 + ext;
        *header = false;
        if (n == 0)
            return;
    }
    if (n < 2)
        return;
    int16_t nf = (int16_t)(p[0] << 8 | p[1]);
    if (nf == -1)
        return; /* trailer */
    if (nf != NCOL) {
        j->skipped++;
        return;
    }
    struct field f[NCOL];
    size_t off = 2;
    for (int i = 0; i < NCOL; i++) {
        if (n - off < 4) {
            j->skipped++;
            return;
        }
        int32_t len = (int32_t)be32(p + off);
        off += 4;
        if (len > 0 && (size_t)len > n - off) {
            j->skipped++;
            return;
        }
        f[i].p = p + off;
        f[i].len = len;
        if (len > 0)
            off += (size_t)len;
    }
    count(j, restore_tuple(j, f));
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void run_job(void *arg)
{
    struct job *j = arg;
    char lo[12], hi[12], sql[sizeof(restore_sql) + 64];
    bool header = true;
    uint64_t cpu0 = thread_cpu_ns();
    PGresult *res = NULL;
    PGconn *pg = PQconnectdb(j->url);
    if (PQstatus(pg) != CONNECTION_OK) {
        snprintf(j->why, sizeof(j->why), "database not reachable");
        goto out;
    }
    /* The last shard also reads the ids of shards this run does not have (fewer shards than
     * before the restart): they are held by the owners of their addresses. */
    bool last = j->shard + 1 == j->nshards;
    regsrv_id_format((uint64_t)j->shard << 56, lo);
    if (!last)
        regsrv_id_format((uint64_t)(j->shard + 1) << 56, hi);
    snprintf(sql, sizeof(sql), restore_sql, lo, !last ? "AND reg_id COLLATE \"C\" < '" : "",
             !last ? hi : "", !last ? "'" : "");
    res = PQexec(pg, sql);
    if (PQresultStatus(res) != PGRES_COPY_OUT) {
        snprintf(j->why, sizeof(j->why), "%s", PQerrorMessage(pg));
        j->why[strcspn(j->why, "\n")] = '\0';
        goto out;
    }
    PQclear(res);
    res = NULL;
    char *buf;
    int n;
    while ((n = PQgetCopyData(pg, &buf, 0)) > 0) {
        copy_message(j, (const uint8_t *)buf, (size_t)n, &header);
        PQfreemem(buf);
        if (j->rc == LW_ENOMEM)
            break;
    }
    if (n == -2) {
        snprintf(j->why, sizeof(j->why), "%s", PQerrorMessage(pg));
        j->why[strcspn(j->why, "\n")] = '\0';
    }
    while ((res = PQgetResult(pg)) != NULL) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK && !j->why[0]) {
            snprintf(j->why, sizeof(j->why), "%s", PQresultErrorMessage(res));
            j->why[strcspn(j->why, "\n")] = '\0';
        }
        PQclear(res);
    }
out:
    PQclear(res);
    PQfinish(pg);
    j->cpu_ns = thread_cpu_ns() - cpu0;
}

/* PostgreSQL's estimate of the rows in registrations (statistics, no scan): 0 when unknown. */
static size_t rows_estimate(const char *url)
{
    size_t n = 0;
    PGconn *pg = PQconnectdb(url);
    if (PQstatus(pg) == CONNECTION_OK) {
        PGresult *res = PQexec(pg, "SELECT greatest(reltuples, 0)::bigint FROM pg_class "
                                   "WHERE oid = to_regclass('registrations')");
        uint64_t v;
        const char *t = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1
                            ? PQgetvalue(res, 0, 0)
                            : "";
        if (lw_parse_u64(t, strlen(t), &v) == 0)
            n = (size_t)v;
        PQclear(res);
    }
    PQfinish(pg);
    return n;
}

int lw_store_restore(const struct lw_config *cfg, unsigned nshards)
{
    uint64_t t0 = uv_hrtime();
    unsigned long restored = 0, expired = 0, skipped = 0;
    uint64_t cpu_ns = 0;
    int rc = 0;
    if (!cfg->db_url || !*cfg->db_url || nshards == 0)
        return 0;
    struct job *jobs = calloc(nshards, sizeof(*jobs));
    if (!jobs)
        return LW_ENOMEM;
    /* The directory sized once for the rows (capped by registration.max) instead of doubling
     * its tables ~20 times while a million rows arrive. */
    size_t est = rows_estimate(cfg->db_url);
    if (cfg->reg_max && est > cfg->reg_max)
        est = cfg->reg_max;
    if (est > RESERVE_MAX) /* statistics gone wrong must not reserve gigabytes */
        est = RESERVE_MAX;
    if (est)
        dir_reserve(est);
    for (unsigned i = 0; i < nshards; i++) {
        struct job *j = &jobs[i];
        j->url = cfg->db_url;
        j->shard = i;
        j->nshards = nshards;
        lw_random(j->key, sizeof(j->key));
        lw_hmap_init(&j->cache, 0);
        j->threaded = uv_thread_create(&j->thread, run_job, j) == 0;
        if (!j->threaded)
            run_job(j); /* no thread: this one does it */
    }
    for (unsigned i = 0; i < nshards; i++)
        if (jobs[i].threaded)
            uv_thread_join(&jobs[i].thread);
    /* Second pass, one thread: the rows held by another shard than their job's. */
    for (unsigned i = 0; i < nshards; i++) {
        struct job *j = &jobs[i];
        for (size_t k = 0; k < j->nlater; k++) {
            struct later *l = &j->later[k];
            struct regsrv *r = shard_regsrv(shard_get(l->holder));
            if (j->rc != LW_ENOMEM) {
                int lr = regsrv_restore(r, &l->sv, r->now);
                if (lr != 0 && lr != LW_ETIMEDOUT && lr != LW_ENOMEM && j->skipped < SKIPS_LOGGED)
                    log_warn(STORE, "registration of %s (shard %u) not restored: %s", l->sv.ep,
                             l->holder, lw_strerror(lr));
                count(j, lr);
            }
            free(l->mem);
        }
        free(j->later);
    }
    for (unsigned i = 0; i < nshards; i++) {
        struct job *j = &jobs[i];
        restored += j->restored;
        expired += j->expired;
        skipped += j->skipped;
        cpu_ns += j->cpu_ns;
        if (j->rc == LW_ENOMEM)
            rc = LW_ENOMEM;
        if (j->why[0])
            log_warn(STORE, "registrations of shard %u not restored: %s", i, j->why);
        cache_clear(&j->cache);
        lw_hmap_deinit(&j->cache);
    }
    free(jobs);
    /* cpu_ms: the restore threads' own CPU time (rows parsed and put back), the rest of their
     * time they wait for PostgreSQL */
    log_notice(STORE,
               "registrations restored: restored=%lu expired=%lu skipped=%lu duration_ms=%llu "
               "cpu_ms=%llu",
               restored, expired, skipped, (unsigned long long)((uv_hrtime() - t0) / 1000000),
               (unsigned long long)(cpu_ns / 1000000));
    for (unsigned i = 0; i < nshards; i++)
        regsrv_restore_done(shard_regsrv(shard_get(i)));
    return rc;
}
