#include "coaps.h"

#include "base/buf.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/hash.h"
#include "base/list.h"
#include "base/timer.h"
#include "base/util.h"
#include "creds.h"
#include "wolfmem.h"
#include "dtls/dtls.h"
#include "log.h"
#include "shard.h"
#include "store/sessions.h"

#include <assert.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CID_LEN 6 /* [shard][node][4-byte counter]; lib/dtls default */

static struct {
    struct lw_dtls_ctx *ctx;
    bool enabled;
    bool no_cid;
    uint8_t node;
    uint32_t hibernate_ms;
    uint32_t backlog_max; /* coaps.handshake_backlog */
    uint64_t max_idle_ms; /* a session idle this long has outlived any registration: dropped */
} G;

/* One DTLS peer of a shard: 128 bytes (one 144-byte malloc chunk) plus the endpoint name once
 * bound and the export blob while hibernated; tests/bench/dtls_daemon.sh measures the whole
 * per-device cost. */
struct csess {
    struct lw_timer timer; /* handshake deadline, or the idle deadline that hibernates */
    struct coaps *c;
    struct lw_dtls_sess *s; /* NULL while hibernated */
    uint8_t *blob;          /* the exported session while hibernated (owned) */
    struct csess *grave;    /* next in c->grave while waiting to be freed */
    char *ep;               /* endpoint bound to the identity (owned, NUL-terminated), or NULL */
    uint64_t last;          /* last record received or sent (ms) */
    struct peer_addr addr;  /* key of c->by_addr */
    uint16_t blob_len;
    uint8_t cid_len; /* key of c->by_cid when non-zero */
    uint8_t mode;    /* enum regsrv_secmode once bound to an endpoint, else NOSEC */
    uint8_t ep_len;
    bool dead;   /* failed, closed or timed out: freed once the current call returns */
    bool in_cid; /* present in c->by_cid */
    uint8_t cid[LW_DTLS_CID_MAX];
};
static_assert(sizeof(struct csess) <= 128, "struct csess grew past 128 bytes");

/* A ClientHello with a cookie refused for want of a handshake slot (lw_dtls_input LW_ELIMIT),
 * kept until one frees: a copy of the datagram and its source, no session, nothing sent. At most
 * one per source address (c->by_defer; a retransmission replaces the copy in place), at most
 * G.backlog_max per shard (c->backlog, oldest first). Without it the client only learns that it
 * should try again from its retransmission timer (1, 2, 4, ... s, RFC 6347 §4.2.4.1), and the
 * server idles between the waves of a storm while thousands of devices back off. */
#define DEFER_DGRAM_MAX 512 /* a PSK ClientHello with a cookie is ~150 bytes */
/* A waiting hello whose client has not retransmitted for this long is dropped: the longest
 * retransmission timer RFC 6347 §4.2.4.1 allows is 60 s, so that client has given up. */
#define DEFER_SILENT_MS 64000
struct deferred {
    struct lw_list link;
    struct peer_addr pa; /* key of c->by_defer */
    uint64_t heard;      /* last time the client sent this hello (ms) */
    union {              /* the source as received (the cookie MAC covers it), aligned */
        struct sockaddr sa;
        struct sockaddr_in6 in6;
        uint8_t raw[LW_DTLS_ADDR_MAX];
    } from;
    uint16_t len;
    uint8_t fromlen;
    uint8_t data[];
};

struct coaps {
    unsigned shard;
    struct regsrv *rs;
    const struct coaps_ops *ops;
    void *ctx;
    struct lw_dtls_shard *sh;
    struct lw_wheel wheel;
    struct lw_hmap by_addr, by_cid;
    uint8_t hkey[16];
    uint64_t now;
    uint8_t cur_sock;
    struct csess *grave;
    struct lw_list backlog; /* struct deferred, oldest first */
    struct lw_hmap by_defer;
    uint32_t n_defer;
    uint64_t last_trim;        /* when freed wolfSSL memory was last handed back to the kernel */
    uint32_t freed_since_trim; /* live sessions hibernated or freed since */
    struct coaps_stats stats;
};

/* ---- credentials callbacks (shard threads, during handshakes) ---- */

static size_t cb_psk(void *arg, const uint8_t *id, size_t id_len, uint8_t *key, size_t cap)
{
    (void)arg;
    return creds_psk_key(id, id_len, key, cap);
}

/* The name a certificate is bound by: its CN, else its first URI SAN, else its first DNS SAN
 * (the same order lib/dtls reports as the session identity). */
static struct lw_bytes cert_name(const struct lw_dtls_peer_info *info)
{
    if (info->cn.len)
        return info->cn;
    for (int want = 6; want >= 2; want -= 4)
        for (size_t i = 0; i < info->n_san; i++)
            if (info->san[i].type == want)
                return info->san[i].name;
    return LW_BYTES(NULL, 0);
}

static int cb_verify(void *arg, const struct lw_dtls_peer_info *info)
{
    char ep[CREDS_EP_MAX + 1];
    struct lw_bytes name = cert_name(info);
    (void)arg;
    if (info->rpk) /* the raw key's SHA-256 names the endpoint (PUT .../credentials, mode rpk) */
        return creds_bind(CREDS_RPK, info->spki_sha256, sizeof(info->spki_sha256), NULL, 0, false,
                          ep, sizeof(ep));
    if (!info->der.len || !name.len)
        return -1;
    return creds_bind(CREDS_X509, name.ptr, name.len, info->der.ptr, info->der.len, info->chain_ok,
                      ep, sizeof(ep));
}

/* ---- global context ---- */

static int read_file(const char *path, struct lw_bytes *out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    long n;
    int rc = LW_ECONFIG;
    if (!f) {
        snprintf(err, errlen, "cannot open %s: %m", path);
        return LW_ECONFIG;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || n > (1 << 20) ||
        fseek(f, 0, SEEK_SET) != 0) {
        snprintf(err, errlen, "cannot read %s: too large or not a file", path);
        goto out;
    }
    buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        snprintf(err, errlen, "cannot read %s", path);
        free(buf);
        buf = NULL;
        goto out;
    }
    *out = LW_BYTES(buf, (size_t)n);
    rc = 0;
out:
    fclose(f);
    return rc;
}

int coaps_global_init(const struct lw_config *cfg, char *err, size_t errlen)
{
    struct lw_bytes cert = {0}, key = {0}, ca = {0};
    struct lw_dtls_cfg dc;
    int rc = 0;
    memset(&G, 0, sizeof(G));
    if ((rc = creds_init()) != 0) { /* also without listeners: the API manages it */
        snprintf(err, errlen, "cannot create the credential store: %s", lw_strerror(rc));
        return rc;
    }
    if (cfg->coaps_listen_n == 0)
        return 0;
    if (cfg->coaps_rpk && (!cfg->coaps_key[0] || cfg->coaps_cert[0])) {
        snprintf(err, errlen, "coaps.rpk needs coaps.key and an empty coaps.cert");
        return LW_ECONFIG;
    }
    if (!cfg->coaps_rpk && (cfg->coaps_cert[0] != 0) != (cfg->coaps_key[0] != 0)) {
        snprintf(err, errlen, "coaps.cert and coaps.key must be set together");
        return LW_ECONFIG;
    }
    if (cfg->coaps_cert[0] && (rc = read_file(cfg->coaps_cert, &cert, err, errlen)) != 0)
        goto out;
    if (cfg->coaps_key[0] && (rc = read_file(cfg->coaps_key, &key, err, errlen)) != 0)
        goto out;
    if (cfg->coaps_ca[0] && (rc = read_file(cfg->coaps_ca, &ca, err, errlen)) != 0)
        goto out;
    memset(&dc, 0, sizeof(dc));
    dc.ciphers = cfg->coaps_ciphers[0] ? cfg->coaps_ciphers : NULL;
    dc.versions = cfg->coaps_versions == LW_COAPS_V12   ? LW_DTLS_V12
                  : cfg->coaps_versions == LW_COAPS_V13 ? LW_DTLS_V13
                                                        : 0;
    dc.no_cid = !cfg->coaps_cid;
    dc.cid_len = CID_LEN;
    dc.node_id = (uint8_t)cfg->node_id;
    dc.psk_hint = cfg->coaps_psk_hint[0] ? cfg->coaps_psk_hint : NULL;
    dc.cert = cert;
    dc.key = key;
    dc.ca = ca;
    dc.rpk = cfg->coaps_rpk;
    dc.handshake_ms = cfg->coaps_handshake_timeout;
    dc.max_handshakes = cfg->coaps_max_handshakes;
    dc.hello_rate = cfg->coaps_hello_rate;
    dc.no_hello_limit = cfg->coaps_hello_rate == 0;
    dc.cred.psk_lookup = cb_psk;
    dc.cred.verify_peer = cb_verify;
    rc = lw_dtls_ctx_new(&dc, &G.ctx);
    if (rc) {
        snprintf(err, errlen,
                 "cannot create the DTLS context: %s (check coaps.cert, coaps.key, "
                 "coaps.rpk, coaps.ca and coaps.ciphers)",
                 lw_strerror(rc));
        goto out;
    }
    G.enabled = true;
    /* A live session's wolfSSL state is ~9 KB, partly in allocations of 4 KB and more that
     * hibernation frees; served by mmap they go back to the kernel at once instead of leaving
     * holes between the small long-lived objects of other devices (measured with
     * tests/bench/dtls_daemon.sh: 8.8 KB -> 5.9 KB of RSS per hibernated device, handshake rate
     * unchanged). Process-wide; other allocations that large are rare. The daemon normally
     * gives wolfSSL its own allocator (wolfmem.h: 3 KB per hibernated device); this still
     * matters when that is off (LW_WOLFMEM=off, sanitizer builds). */
    mallopt(M_MMAP_THRESHOLD, 4096);
    G.no_cid = dc.no_cid;
    G.node = dc.node_id;
    G.hibernate_ms = cfg->coaps_hibernate_idle;
    G.backlog_max = cfg->coaps_handshake_backlog;
    G.max_idle_ms = (uint64_t)(cfg->reg_lifetime_max ? cfg->reg_lifetime_max : 86400) * 1000 +
                    cfg->reg_expiry_grace;
out:
    if (key.ptr) {
        explicit_bzero((void *)key.ptr, key.len);
        free((void *)key.ptr);
    }
    free((void *)cert.ptr);
    free((void *)ca.ptr);
    return rc;
}

void coaps_global_deinit(void)
{
    lw_dtls_ctx_free(G.ctx);
    G.ctx = NULL;
    G.enabled = false;
    creds_deinit();
}

bool coaps_enabled(void)
{
    return G.enabled;
}

/* ---- session tables ---- */

static uint64_t h_addr(const struct coaps *c, const struct peer_addr *a)
{
    return lw_siphash(c->hkey, a, sizeof(*a));
}

static uint64_t h_cid(const struct coaps *c, const uint8_t *cid, size_t len)
{
    return lw_siphash(c->hkey, cid, len) ^ 1;
}

static bool addr_eq(const void *item, const void *key)
{
    return memcmp(&((const struct csess *)item)->addr, key, sizeof(struct peer_addr)) == 0;
}

static bool cid_eq(const void *item, const void *key)
{
    const struct csess *cs = item;
    const struct lw_bytes *k = key;
    return cs->cid_len == k->len && memcmp(cs->cid, k->ptr, k->len) == 0;
}

static struct csess *find_addr(const struct coaps *c, const struct peer_addr *a)
{
    return lw_hmap_get(&c->by_addr, h_addr(c, a), a, addr_eq);
}

static void stat_inc(_Atomic uint64_t *v)
{
    atomic_fetch_add_explicit(v, 1, memory_order_relaxed);
}

static void stat_add(_Atomic uint64_t *v, int64_t d)
{
    atomic_fetch_add_explicit(v, (uint64_t)d, memory_order_relaxed);
}

/* Unlinks cs from the tables and its timer, and queues it for freeing (c->grave). */
static void cs_kill(struct coaps *c, struct csess *cs)
{
    if (cs->grave || c->grave == cs)
        return; /* already queued */
    lw_hmap_del_item(&c->by_addr, h_addr(c, &cs->addr), cs);
    if (cs->in_cid)
        lw_hmap_del_item(&c->by_cid, h_cid(c, cs->cid, cs->cid_len), cs);
    cs->in_cid = false;
    lw_wheel_cancel(&c->wheel, &cs->timer);
    if (!cs->s && cs->mode != RS_SEC_NOSEC) /* its saved row (sessions.h) ends with it */
        lw_sessions_del(cs->ep, cs->cid, cs->cid_len, &cs->addr);
    cs->dead = true;
    cs->grave = c->grave ? c->grave : cs; /* self-link marks the tail */
    c->grave = cs;
}

static void cs_free(struct coaps *c, struct csess *cs)
{
    if (cs->s) {
        lw_dtls_sess_set_user(cs->s, NULL);
        lw_dtls_sess_free(cs->s);
        c->freed_since_trim++;
    } else {
        stat_add(&c->stats.hibernated, -1);
    }
    free(cs->blob);
    free(cs->ep);
    stat_add(&c->stats.sessions, -1);
    free(cs);
}

static void bury(struct coaps *c)
{
    while (c->grave) {
        struct csess *cs = c->grave;
        c->grave = cs->grave == cs ? NULL : cs->grave;
        cs_free(c, cs);
    }
}

static void cs_arm(struct coaps *c, struct csess *cs)
{
    uint64_t t = UINT64_MAX;
    if (cs->dead)
        t = UINT64_MAX;
    else if (!cs->s)
        t = cs->last + G.max_idle_ms;
    else if (!lw_dtls_sess_established(cs->s))
        t = lw_dtls_next_timeout(cs->s);
    else if (G.hibernate_ms && lw_dtls_sess_version(cs->s) == 12)
        t = cs->last + LW_MIN(G.hibernate_ms, G.max_idle_ms);
    else
        t = cs->last + G.max_idle_ms;
    if (t == UINT64_MAX)
        lw_wheel_cancel(&c->wheel, &cs->timer);
    else
        lw_wheel_arm(&c->wheel, &cs->timer, t);
}

static void sync_stats(struct coaps *c)
{
    struct lw_dtls_stats ds;
    lw_dtls_shard_stats(c->sh, &ds);
    atomic_store_explicit(&c->stats.hello_stateless, ds.hello_stateless, memory_order_relaxed);
    atomic_store_explicit(&c->stats.hello_ratelimited, ds.hello_ratelimited, memory_order_relaxed);
    atomic_store_explicit(&c->stats.budget_refused, ds.budget_refused, memory_order_relaxed);
    atomic_store_explicit(&c->stats.deferred, c->n_defer, memory_order_relaxed);
    atomic_store_explicit(&c->stats.hello_crossed, ds.hello_crossed, memory_order_relaxed);
}

/* ---- hibernation ---- */

/* Queues the hibernated session of a bound cs for saving (store/sessions.h). */
static void save(struct coaps *c, struct csess *cs, const uint8_t *blob, size_t len)
{
    if (cs->mode == RS_SEC_NOSEC || !lw_sessions_enabled())
        return;
    uint64_t end = cs->last + G.max_idle_ms;
    struct lw_sess_save sv = {.ep = cs->ep,
                              .addr = cs->addr,
                              .mode = cs->mode,
                              .cid = cs->cid_len ? cs->cid : NULL,
                              .cid_len = cs->cid_len,
                              .blob = blob,
                              .blob_len = len,
                              .expires_wall_ms =
                                  lw_wall_ms() + (int64_t)(end > c->now ? end - c->now : 0)};
    int rc = lw_sessions_put(&sv);
    if (rc != 0)
        log_warn_rl(DTLS, "shard %u: hibernated session of %s not saved: %s", c->shard, cs->ep,
                    lw_strerror(rc));
}

static void hibernate(struct coaps *c, struct csess *cs)
{
    uint8_t tmp[LW_DTLS_BLOB_MAX];
    struct lw_buf b;
    lw_buf_init_fixed(&b, tmp, sizeof(tmp));
    int rc = lw_dtls_hibernate(cs->s, &b);
    if (rc != 0) {
        if (rc != LW_ENOTSUP && rc != LW_EAGAIN)
            log_warn_rl(DTLS, "shard %u: cannot hibernate a session: %s", c->shard,
                        lw_strerror(rc));
        cs->last = c->now; /* stays live; try again after another idle period */
        cs_arm(c, cs);
        return;
    }
    cs->s = NULL; /* freed by lw_dtls_hibernate */
    cs->blob = malloc(b.len);
    if (!cs->blob) {
        log_warn_rl(DTLS, "shard %u: out of memory hibernating a session", c->shard);
        lw_secure_zero(tmp, b.len);
        cs_kill(c, cs);
        stat_add(&c->stats.hibernated, 1); /* cs_free counts it back */
        return;
    }
    memcpy(cs->blob, tmp, b.len);
    save(c, cs, tmp, b.len);
    lw_secure_zero(tmp, b.len);
    cs->blob_len = (uint16_t)b.len;
    stat_inc(&c->stats.hibernations);
    stat_add(&c->stats.hibernated, 1);
    c->freed_since_trim++;
    cs_arm(c, cs);
}

/* True when the credential store still binds the session's identity to cs->ep: credentials
 * deleted or replaced while a session slept (or while the daemon was down, for a restored one)
 * must not let it talk. */
static bool still_bound(const struct csess *cs)
{
    struct lw_bytes id;
    char ep[CREDS_EP_MAX + 1];
    enum lw_dtls_auth auth = lw_dtls_sess_identity(cs->s, &id);
    enum creds_mode m = auth == LW_DTLS_AUTH_PSK    ? CREDS_PSK
                        : auth == LW_DTLS_AUTH_RPK  ? CREDS_RPK
                        : auth == LW_DTLS_AUTH_X509 ? CREDS_X509
                                                    : CREDS_NONE;
    return m != CREDS_NONE && creds_bind(m, id.ptr, id.len, NULL, 0, true, ep, sizeof(ep)) == 0 &&
           strcmp(ep, cs->ep) == 0;
}

/* Rebuilds the session of a hibernated cs. false: it could not be woken and was killed. */
static bool wake(struct coaps *c, struct csess *cs)
{
    struct lw_dtls_sess *s = NULL;
    int rc = lw_dtls_wake(c->sh, cs->blob, cs->blob_len, c->now, &s);
    if (rc != 0) {
        stat_inc(&c->stats.wake_failed);
        log_warn_rl(DTLS, "shard %u: cannot wake a hibernated session: %s", c->shard,
                    lw_strerror(rc));
        cs_kill(c, cs);
        return false;
    }
    free(cs->blob);
    cs->blob = NULL;
    cs->blob_len = 0;
    cs->s = s;
    lw_dtls_sess_set_user(s, cs);
    /* Live again: its sequence numbers move on, so the saved copy would be stale. */
    if (cs->mode != RS_SEC_NOSEC)
        lw_sessions_del(cs->ep, cs->cid, cs->cid_len, &cs->addr);
    if (cs->mode != RS_SEC_NOSEC && !still_bound(cs)) {
        stat_inc(&c->stats.unbound);
        log_info_rl(DTLS, "shard %u: woken dtls session of %s no longer bound: closing", c->shard,
                    cs->ep);
        lw_dtls_close(cs->s);
        cs_kill(c, cs);
        return false;
    }
    stat_inc(&c->stats.wakes);
    stat_add(&c->stats.hibernated, -1);
    return true;
}

static void on_cs_timer(struct lw_timer *t)
{
    struct csess *cs = lw_container_of(t, struct csess, timer);
    struct coaps *c = cs->c;
    if (cs->dead)
        return;
    if (c->now >= cs->last + G.max_idle_ms) {
        /* Idle longer than any registration lives: the device is gone (or will handshake). */
        if (cs->s && lw_dtls_sess_established(cs->s))
            lw_dtls_close(cs->s);
        cs_kill(c, cs);
        return;
    }
    if (!cs->s)
        return;
    if (!lw_dtls_sess_established(cs->s)) {
        lw_dtls_timeout(cs->s, c->now);
        if (!cs->dead)
            cs_arm(c, cs);
    } else if (G.hibernate_ms && c->now >= cs->last + G.hibernate_ms) {
        hibernate(c, cs);
    } else {
        cs_arm(c, cs);
    }
}

/* ---- lib/dtls callbacks ---- */

static void d_send(void *arg, struct lw_dtls_sess *sess, const struct sockaddr *to, socklen_t tolen,
                   const uint8_t *data, size_t len)
{
    struct coaps *c = arg;
    struct csess *cs = sess ? lw_dtls_sess_user(sess) : NULL;
    c->ops->send(c->ctx, cs ? cs->addr.sock : c->cur_sock, to, tolen, data, len);
}

static void d_deliver(void *arg, struct lw_dtls_sess *sess, const uint8_t *data, size_t len)
{
    struct coaps *c = arg;
    struct csess *cs = lw_dtls_sess_user(sess);
    if (!cs || cs->dead || cs->mode == RS_SEC_NOSEC)
        return;
    struct regsrv_sec sec = {cs->mode, cs->ep_len, cs->ep};
    cs->last = c->now;
    regsrv_input_sec(c->rs, &cs->addr, &sec, data, len, c->now);
}

static void bind_identity(struct coaps *c, struct csess *cs)
{
    struct lw_bytes id;
    enum lw_dtls_auth auth = lw_dtls_sess_identity(cs->s, &id);
    enum creds_mode m = auth == LW_DTLS_AUTH_PSK    ? CREDS_PSK
                        : auth == LW_DTLS_AUTH_RPK  ? CREDS_RPK
                        : auth == LW_DTLS_AUTH_X509 ? CREDS_X509
                                                    : CREDS_NONE;
    char ep[CREDS_EP_MAX + 1];
    int rc =
        m == CREDS_NONE ? LW_ENOENT : creds_bind(m, id.ptr, id.len, NULL, 0, true, ep, sizeof(ep));
    if (rc == 0) {
        free(cs->ep);
        if (!(cs->ep = strdup(ep)))
            rc = LW_ENOMEM;
    }
    if (rc != 0) {
        /* Credentials removed during the handshake, or an identity without an endpoint. */
        stat_inc(&c->stats.unbound);
        log_info_rl(DTLS, "shard %u: dtls identity bound to no endpoint: closing", c->shard);
        lw_dtls_close(cs->s);
        cs_kill(c, cs);
        return;
    }
    cs->ep_len = (uint8_t)strlen(cs->ep);
    cs->mode = m == CREDS_PSK ? RS_SEC_PSK : m == CREDS_RPK ? RS_SEC_RPK : RS_SEC_X509;
    struct lw_bytes cid = lw_dtls_sess_cid(cs->s);
    if (cid.len && cid.len <= LW_DTLS_CID_MAX && !cs->in_cid) {
        memcpy(cs->cid, cid.ptr, cid.len);
        cs->cid_len = (uint8_t)cid.len;
        struct csess *o = lw_hmap_get(&c->by_cid, h_cid(c, cs->cid, cs->cid_len), &cid, cid_eq);
        if (o && o != cs)
            cs_kill(c, o); /* d_cid_in_use ran out of tries: the newer session keeps the CID */
        if (lw_hmap_put(&c->by_cid, h_cid(c, cs->cid, cs->cid_len), cs) == 0)
            cs->in_cid = true;
    }
    stat_inc(&c->stats.handshakes_ok);
    log_debug(DTLS, "shard %u: dtls %d session established for endpoint %s%s", c->shard,
              lw_dtls_sess_version(cs->s), cs->ep, cs->in_cid ? " with a connection id" : "");
}

static void moved(struct coaps *c, struct csess *cs)
{
    socklen_t len;
    struct peer_addr na;
    const struct sockaddr *sa = lw_dtls_sess_addr(cs->s, &len);
    if (!sa || peer_addr_from_sa(&na, sa, cs->addr.sock) != 0)
        return;
    struct csess *other = find_addr(c, &na);
    if (other && other != cs)
        cs_kill(c, other); /* a stale session at the new address */
    struct peer_addr was = cs->addr;
    lw_hmap_del_item(&c->by_addr, h_addr(c, &cs->addr), cs);
    cs->addr = na;
    if (lw_hmap_put(&c->by_addr, h_addr(c, &cs->addr), cs) != 0) { /* cannot grow: one fewer */
        cs_kill(c, cs);
        return;
    }
    /* The registration and its CoAP exchanges follow now, not at the next Update: a Read or a
     * notification's ACK from the API side goes to where the device is. */
    regsrv_peer_moved(c->rs, &was, &na, c->now);
    stat_inc(&c->stats.peer_moved);
}

static void d_event(void *arg, struct lw_dtls_sess *sess, enum lw_dtls_event ev, int detail)
{
    struct coaps *c = arg;
    struct csess *cs = lw_dtls_sess_user(sess);
    if (!cs || cs->dead)
        return;
    switch (ev) {
    case LW_DTLS_EV_ESTABLISHED: bind_identity(c, cs); break;
    case LW_DTLS_EV_PEER_MOVED: moved(c, cs); break;
    case LW_DTLS_EV_CLOSED: cs_kill(c, cs); break;
    case LW_DTLS_EV_FAILED:
    case LW_DTLS_EV_TIMEOUT:
        if (cs->mode == RS_SEC_NOSEC) {
            stat_inc(&c->stats.handshakes_failed);
            log_info_rl(DTLS, "shard %u: dtls handshake failed: %s (wolfSSL error %d)", c->shard,
                        ev == LW_DTLS_EV_TIMEOUT ? "timed out" : "alert or bad credentials",
                        detail);
        }
        cs_kill(c, cs);
        break;
    }
}

/* Restored sessions keep their CIDs while this run's CID counter starts afresh. */
static bool d_cid_in_use(void *arg, const uint8_t *cid, size_t len)
{
    struct coaps *c = arg;
    struct lw_bytes k = LW_BYTES(cid, len);
    return lw_hmap_get(&c->by_cid, h_cid(c, cid, len), &k, cid_eq) != NULL;
}

static const struct lw_dtls_shard_ops dtls_ops = {d_send, d_deliver, d_event, d_cid_in_use};

/* ---- per shard ---- */

int coaps_new(unsigned shard_id, struct regsrv *rs, const struct coaps_ops *ops, void *ctx,
              uint64_t now, struct coaps **out)
{
    struct coaps *c = calloc(1, sizeof(*c));
    int rc = LW_ENOMEM;
    *out = NULL;
    if (!c)
        goto out;
    lw_list_init(&c->backlog);
    if (!G.ctx)
        goto out;
    c->shard = shard_id;
    c->rs = rs;
    c->ops = ops;
    c->ctx = ctx;
    c->now = now;
    lw_wheel_init(&c->wheel, now);
    if ((rc = lw_random(c->hkey, sizeof(c->hkey))) != 0)
        goto out;
    if ((rc = lw_hmap_init(&c->by_addr, 0)) != 0 || (rc = lw_hmap_init(&c->by_cid, 0)) != 0 ||
        (rc = lw_hmap_init(&c->by_defer, 0)) != 0)
        goto out;
    rc = lw_dtls_shard_new(G.ctx, (uint8_t)shard_id, &dtls_ops, c, &c->sh);
out:
    if (rc) {
        coaps_free(c);
        c = NULL;
    }
    *out = c;
    return rc;
}

/* Graceful stop: a live, established DTLS 1.2 session bound to an endpoint is exported and
 * queued for saving like a hibernating one (DTLS 1.3 cannot be exported: lost). */
static void save_live(struct coaps *c, struct csess *cs)
{
    uint8_t tmp[LW_DTLS_BLOB_MAX];
    struct lw_buf b;
    if (!cs->s || cs->dead || cs->mode == RS_SEC_NOSEC || !lw_sessions_enabled() ||
        !lw_dtls_sess_established(cs->s) || lw_dtls_sess_version(cs->s) != 12)
        return;
    lw_buf_init_fixed(&b, tmp, sizeof(tmp));
    if (lw_dtls_hibernate(cs->s, &b) != 0)
        return;
    cs->s = NULL;
    stat_add(&c->stats.hibernated, 1); /* cs_free counts it back */
    save(c, cs, tmp, b.len);
    lw_secure_zero(tmp, b.len);
}

void coaps_free(struct coaps *c)
{
    if (!c)
        return;
    size_t pos = 0;
    struct csess *cs;
    while ((cs = lw_hmap_next(&c->by_addr, &pos))) {
        save_live(c, cs);
        cs->grave = c->grave ? c->grave : cs;
        c->grave = cs;
    }
    bury(c);
    struct lw_list *n;
    while ((n = lw_list_pop_front(&c->backlog)))
        free(lw_container_of(n, struct deferred, link));
    lw_hmap_deinit(&c->by_defer);
    lw_hmap_deinit(&c->by_addr);
    lw_hmap_deinit(&c->by_cid);
    lw_dtls_shard_free(c->sh);
    free(c);
}

static struct csess *cs_new(struct coaps *c, struct lw_dtls_sess *s, const struct peer_addr *pa)
{
    struct csess *cs = calloc(1, sizeof(*cs));
    if (!cs)
        return NULL;
    cs->c = c;
    cs->s = s;
    cs->addr = *pa;
    cs->last = c->now;
    lw_timer_init(&cs->timer, on_cs_timer);
    if (lw_hmap_put(&c->by_addr, h_addr(c, pa), cs) != 0) {
        free(cs);
        return NULL;
    }
    lw_dtls_sess_set_user(s, cs);
    stat_add(&c->stats.sessions, 1);
    return cs;
}

/* ---- handshake backlog ---- */

static bool defer_eq(const void *item, const void *key)
{
    return memcmp(&((const struct deferred *)item)->pa, key, sizeof(struct peer_addr)) == 0;
}

static uint64_t h_defer(const struct coaps *c, const struct peer_addr *a)
{
    return h_addr(c, a) ^ 2;
}

static void defer_free(struct coaps *c, struct deferred *e)
{
    lw_list_remove(&e->link);
    lw_hmap_del_item(&c->by_defer, h_defer(c, &e->pa), e);
    c->n_defer--;
    free(e);
}

/* Keeps a hello refused with LW_ELIMIT until a handshake slot frees (see struct deferred). */
static void defer(struct coaps *c, const struct peer_addr *pa, const struct sockaddr *from,
                  socklen_t fromlen, const uint8_t *data, size_t len)
{
    struct deferred *old = lw_hmap_get(&c->by_defer, h_defer(c, pa), pa, defer_eq);
    if (old && old->len == len && memcmp(old->data, data, len) == 0) {
        old->heard = c->now; /* a retransmission of the hello that waits: keep its place */
        return;
    }
    if (len > DEFER_DGRAM_MAX || (size_t)fromlen > sizeof(old->from.raw) ||
        (!old && c->n_defer >= G.backlog_max)) {
        stat_inc(&c->stats.backlog_full);
        return;
    }
    struct deferred *e = malloc(sizeof(*e) + len);
    if (!e) {
        stat_inc(&c->stats.backlog_full);
        return;
    }
    e->pa = *pa;
    e->heard = c->now;
    e->len = (uint16_t)len;
    e->fromlen = (uint8_t)fromlen;
    memcpy(e->from.raw, from, (size_t)fromlen);
    memcpy(e->data, data, len);
    bool fresh = !old;
    if (old) { /* a retransmission (new record number) or a new hello: it takes the old place */
        lw_list_push_back(&old->link, &e->link); /* circular list: right before old */
        defer_free(c, old);
    } else {
        lw_list_push_back(&c->backlog, &e->link);
    }
    if (lw_hmap_put(&c->by_defer, h_defer(c, pa), e) != 0) {
        lw_list_remove(&e->link);
        free(e);
        stat_inc(&c->stats.backlog_full);
        return;
    }
    c->n_defer++;
    if (fresh)
        stat_inc(&c->stats.hello_deferred);
}

/* The hello from pa was started directly (a retransmission found a free slot): its waiting
 * copy would only make the new session send its flight again. */
static void undefer(struct coaps *c, const struct peer_addr *pa)
{
    struct deferred *e;
    if (c->n_defer && (e = lw_hmap_get(&c->by_defer, h_defer(c, pa), pa, defer_eq)))
        defer_free(c, e);
}

/* One datagram from `from` (the body of coaps_input, also used by drain). */
static void feed(struct coaps *c, uint8_t sock, const struct sockaddr *from, socklen_t fromlen,
                 const uint8_t *data, size_t len)
{
    struct peer_addr pa;
    struct csess *cs = NULL;
    struct lw_bytes cid;
    uint64_t now = c->now;
    c->cur_sock = sock;
    if (peer_addr_from_sa(&pa, from, sock) != 0)
        return;
    int k = G.no_cid ? 0 : lw_dtls_cid_peek(data, len, CID_LEN, &cid);
    if (k < 0)
        return;
    if (k == 1) {
        /* A CID record: demultiplexed by its CID (the address may have changed). A CID not in
         * the table yet may belong to a session still handshaking at this address (DTLS 1.3
         * sends its last flight with the CID). */
        if (cid.ptr[0] != (uint8_t)c->shard || cid.ptr[1] != G.node ||
            (!(cs = lw_hmap_get(&c->by_cid, h_cid(c, cid.ptr, cid.len), &cid, cid_eq)) &&
             !(cs = find_addr(c, &pa)))) {
            stat_inc(&c->stats.cid_stale);
            return;
        }
    } else {
        cs = find_addr(c, &pa);
    }
    if (cs && !cs->s && !wake(c, cs))
        cs = NULL;
    struct lw_dtls_sess *created = NULL;
    int rc = lw_dtls_input(c->sh, cs ? cs->s : NULL, from, fromlen, data, len, now, &created);
    if (created) {
        undefer(c, &pa);
        /* A new handshake from this address replaces whatever session it had. */
        struct csess *old = find_addr(c, &pa);
        if (old)
            cs_kill(c, old);
        struct csess *ncs = cs_new(c, created, &pa);
        if (!ncs) {
            lw_dtls_sess_free(created);
            log_warn_rl(DTLS, "shard %u: out of memory for a dtls session", c->shard);
        } else {
            cs_arm(c, ncs);
        }
    } else if (rc == LW_ELIMIT && G.backlog_max) {
        defer(c, &pa, from, fromlen, data, len);
    }
    if (rc == LW_EDTLS && cs && !cs->dead)
        cs_kill(c, cs);
    if (cs && !cs->dead) {
        if (cs->s && lw_dtls_sess_established(cs->s))
            cs->last = now;
        cs_arm(c, cs);
    }
}

/* Starts waiting hellos, oldest first, while handshake slots are free; drops the ones whose
 * clients went silent (DEFER_SILENT_MS; checked as they come to the front). A hello whose
 * cookie no longer verifies (secret rotated, or forged) gets the stateless answer a fresh one
 * would. */
static void drain(struct coaps *c)
{
    struct lw_list *n;
    uint32_t budget = c->n_defer; /* each waiting hello is looked at once per call */
    while (budget-- && (n = lw_list_first(&c->backlog))) {
        struct deferred *e = lw_container_of(n, struct deferred, link);
        if (c->now - e->heard >= DEFER_SILENT_MS) {
            stat_inc(&c->stats.backlog_expired);
            defer_free(c, e);
            continue;
        }
        if (lw_dtls_shard_room(c->sh) == 0)
            break;
        lw_list_remove(&e->link);
        lw_hmap_del_item(&c->by_defer, h_defer(c, &e->pa), e);
        c->n_defer--;
        feed(c, e->pa.sock, &e->from.sa, e->fromlen, e->data, e->len);
        free(e);
        bury(c);
    }
}

void coaps_input(struct coaps *c, uint8_t sock, const struct sockaddr *from, socklen_t fromlen,
                 const uint8_t *data, size_t len, uint64_t now)
{
    c->now = now;
    feed(c, sock, from, fromlen, data, len);
    bury(c);
    if (c->n_defer)
        drain(c);
    sync_stats(c);
}

int coaps_write(struct coaps *c, const struct peer_addr *to, const uint8_t *data, size_t len,
                uint64_t now)
{
    struct csess *cs = find_addr(c, to);
    if (!cs || cs->dead)
        return LW_ENOENT;
    if (!cs->s && !wake(c, cs))
        return LW_ENOENT;
    cs->last = now;
    int rc = lw_dtls_write(cs->s, data, len, now);
    if (rc == LW_EDTLS || rc == LW_ECANCELED)
        cs_kill(c, cs);
    else
        cs_arm(c, cs);
    return rc;
}

void coaps_advance(struct coaps *c, uint64_t now)
{
    c->now = now;
    lw_wheel_advance(&c->wheel, now);
    bury(c);
    if (c->n_defer)
        drain(c);
    sync_stats(c);
    /* Hibernation and closing free the wolfSSL state of a session in small chunks that glibc
     * keeps in its arenas; hand whole free pages back after a wave of them (64+, at most once a
     * second), so the resident size follows the number of live sessions. */
    if (c->freed_since_trim >= 64 && now - c->last_trim >= 1000) {
        malloc_trim(0);
        wolfmem_trim(); /* this shard's cached empty wolfSSL spans */
        c->last_trim = now;
        c->freed_since_trim = 0;
    }
}

uint64_t coaps_next_deadline(const struct coaps *c)
{
    uint64_t d = lw_wheel_next_deadline(&c->wheel);
    if (c->freed_since_trim >= 64) /* a trim is due: come back for it */
        d = LW_MIN(d, c->last_trim + 1000);
    struct lw_list *n = lw_list_first(&c->backlog);
    if (n) /* the first waiting hello expires then, unless its client retransmits */
        d = LW_MIN(d, lw_container_of(n, struct deferred, link)->heard + DEFER_SILENT_MS);
    return d;
}

const struct coaps_stats *coaps_stats(const struct coaps *c)
{
    return &c->stats;
}

/* ---- revocation ---- */

struct revoke_msg {
    struct xmsg m;
    char ep[CREDS_EP_MAX + 1];
};

static void run_revoke(struct shard *s, struct xmsg *m)
{
    struct revoke_msg *r = lw_container_of(m, struct revoke_msg, m);
    struct coaps *c = shard_coaps(s);
    size_t n = 0;
    if (c) {
        size_t pos = 0, len = strlen(r->ep);
        struct csess *cs;
        /* Kill while iterating is not allowed: collect on the grave list first. */
        while ((cs = lw_hmap_next(&c->by_addr, &pos))) {
            if (cs->dead || cs->mode == RS_SEC_NOSEC || cs->ep_len != len ||
                memcmp(cs->ep, r->ep, len) != 0)
                continue;
            if (cs->s && lw_dtls_sess_established(cs->s))
                lw_dtls_close(cs->s);
            cs->dead = true; /* unlinked below */
            n++;
        }
        for (pos = 0; n && (cs = lw_hmap_next(&c->by_addr, &pos));)
            if (cs->dead) {
                cs->dead = false;
                cs_kill(c, cs);
                pos = 0; /* the table changed: start over */
            }
        bury(c);
    }
    if (n)
        log_info(DTLS, "shard %u: %zu dtls session%s of endpoint %s closed: credentials changed",
                 shard_id(s), n, n == 1 ? "" : "s", r->ep);
    free(r);
}

void coaps_revoke(const char *ep)
{
    for (unsigned i = 0; G.enabled && i < shards_count(); i++) {
        struct revoke_msg *r = calloc(1, sizeof(*r));
        if (!r)
            return;
        r->m.run = run_revoke;
        snprintf(r->ep, sizeof(r->ep), "%s", ep);
        if (!shard_post(shard_get(i), &r->m))
            free(r);
    }
}

/* ---- restore at start ---- */

int coaps_restore_cb(void *arg, const struct lw_sess_row *row)
{
    struct sockaddr_storage ss;
    struct lw_bytes cid = LW_BYTES(row->cid, row->cid_len);
    (void)arg;
    if (!G.enabled || row->mode == RS_SEC_NOSEC || row->mode > RS_SEC_X509)
        return LW_EINVAL;
    size_t eplen = strlen(row->ep);
    if (eplen == 0 || eplen > CREDS_EP_MAX || row->blob_len > UINT16_MAX)
        return LW_EINVAL;
    socklen_t sl = peer_addr_to_sa(&row->addr, &ss);
    unsigned sh =
        row->cid_len ? (unsigned)row->cid[0] : shard_for_addr((const struct sockaddr *)&ss);
    if (row->cid_len && (row->cid_len != CID_LEN || row->cid[1] != G.node))
        return LW_EINVAL; /* issued under another layout or by another node */
    struct shard *s = shard_get(sh);
    struct coaps *c = s ? shard_coaps(s) : NULL;
    if (!c)
        return LW_EINVAL;
    (void)sl;
    if (find_addr(c, &row->addr) ||
        (row->cid_len && lw_hmap_get(&c->by_cid, h_cid(c, row->cid, row->cid_len), &cid, cid_eq)))
        return LW_EEXIST;
    struct csess *cs = calloc(1, sizeof(*cs));
    if (!cs || !(cs->blob = malloc(row->blob_len)) || !(cs->ep = strdup(row->ep))) {
        if (cs)
            free(cs->blob);
        free(cs);
        return LW_ENOMEM;
    }
    memcpy(cs->blob, row->blob, row->blob_len);
    cs->blob_len = (uint16_t)row->blob_len;
    cs->c = c;
    cs->addr = row->addr;
    cs->mode = row->mode;
    cs->ep_len = (uint8_t)eplen;
    /* the idle clock as it stood when it was saved */
    int64_t left = row->expires_wall_ms - lw_wall_ms();
    if (left <= 0 || (uint64_t)left > G.max_idle_ms)
        left = left <= 0 ? 1 : (int64_t)G.max_idle_ms;
    cs->last = c->now + (uint64_t)left - G.max_idle_ms;
    lw_timer_init(&cs->timer, on_cs_timer);
    if (lw_hmap_put(&c->by_addr, h_addr(c, &cs->addr), cs) != 0) {
        free(cs->blob);
        free(cs->ep);
        free(cs);
        return LW_ENOMEM;
    }
    if (row->cid_len) {
        memcpy(cs->cid, row->cid, row->cid_len);
        cs->cid_len = (uint8_t)row->cid_len;
        if (lw_hmap_put(&c->by_cid, h_cid(c, cs->cid, cs->cid_len), cs) == 0)
            cs->in_cid = true;
    }
    stat_add(&c->stats.sessions, 1);
    stat_add(&c->stats.hibernated, 1);
    cs_arm(c, cs);
    /* The registration restored from its table row sits at this address on the NoSec listener
     * (the table does not keep the socket): move it to the DTLS one, so that downlinks are
     * encrypted through this session. */
    struct peer_addr plain = row->addr;
    plain.sock = 0;
    struct regsrv_dev dev;
    struct peer *p = peer_find(&c->rs->peers, &plain);
    if (plain.sock != row->addr.sock && p && regsrv_peer_dev(c->rs, p, &dev) == 0 &&
        strcmp(dev.ep, row->ep) == 0)
        regsrv_peer_moved(c->rs, &plain, &row->addr, c->now);
    return 0;
}
