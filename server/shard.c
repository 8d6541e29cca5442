#include "shard.h"

#include "base/err.h"
#include "base/util.h"
#include "coaps.h"
#include "creds.h"
#include "log.h"
#include "metrics.h"
#include "registry.h"
#include "store/sessions.h"
#include "store/store.h"
#include "udp.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

/* Receive buffer per shard: libuv's recvmmsg path splits it into 64 KiB slots, one datagram
 * each (UV_UDP_RECVMMSG), so this reads up to 20 datagrams per system call (libuv's own limit,
 * UV__MMSG_MAXWIDTH); each such batch's responses leave with one sendmmsg. */
#define RXBUF_SLOTS 20
#define RXBUF_SIZE  (RXBUF_SLOTS * 65536)
/* Responses batched per sendmmsg; larger datagrams are sent at once. */
#define TX_BATCH 32
#define TX_MAX   LW_COAP_MAX_DGRAM

struct shard {
    unsigned id;
    uv_thread_t thread;
    uv_loop_t loop;
    uv_async_t wake;
    pthread_mutex_t lock;
    struct lw_list inbox; /* guarded by lock */
    bool closed;          /* guarded by lock: no more posts accepted */
    bool stopping;        /* shard thread only */
    _Atomic uint64_t ping_answer;
    struct xmsg ping; /* embedded, reused: at most one ping outstanding per shard */
    _Atomic bool ping_queued;
    bool started;
    const struct lw_config *cfg;
    /* Transport and registrations (owned by the shard thread once it runs). */
    struct regsrv rs;
    bool rs_inited;
    uv_udp_t udp[2 * LW_CFG_MAX_LISTEN];
    unsigned nudp;
    unsigned ncoap;      /* udp[0..ncoap-1] are CoAP (NoSec) sockets, the rest CoAPS */
    struct coaps *coaps; /* DTLS sessions (NULL without coaps.listen) */
    uv_timer_t timer;
    bool timer_inited;
    uint64_t armed; /* deadline the timer is armed for, or UINT64_MAX */
    uint8_t *rxbuf;
    /* Responses queued during a recvmmsg batch (sent by tx_flush). */
    bool batching;
    unsigned rx_n; /* datagrams of the current batch (a full one tells the store: store.h) */
    /* NoSec datagrams of the current recvmmsg batch, handled when it ends (on_recv). */
    unsigned nrxq;
    struct rx_pending {
        struct peer_addr from;
        uint64_t hash;
        const uint8_t *data;
        size_t len;
        struct regsrv_ep_hint ep; /* a Register's endpoint name, when it seems to be one */
    } rxq[RXBUF_SLOTS];
    unsigned ntx;
    struct tx_ent {
        struct sockaddr_storage to;
        socklen_t tolen;
        size_t len;
        uint8_t sock;
    } tx[TX_BATCH];
    uint8_t *txbuf;             /* TX_BATCH * TX_MAX bytes */
    _Atomic uint64_t forwarded; /* datagrams handed to the shard that owns them */
    _Atomic size_t fwd_bytes;   /* forwarded to this shard and not yet handled (fwd_limit) */
};

static struct shard *shards;
static unsigned nshards;
static _Atomic uint64_t ping_seq;
static _Atomic unsigned running;
static struct lw_metrics_writer metrics_writer;
static bool globals_inited;

bool shards_ready(void)
{
    return nshards > 0 && atomic_load(&running) == nshards;
}

struct regsrv *shard_regsrv(struct shard *s)
{
    return &s->rs;
}

struct coaps *shard_coaps(struct shard *s)
{
    return s->coaps;
}

unsigned shard_for_addr(const struct sockaddr *sa)
{
    return udp_steer(sa, nshards);
}

unsigned shards_count(void)
{
    return nshards;
}
struct shard *shard_get(unsigned i)
{
    return i < nshards ? &shards[i] : NULL;
}
unsigned shard_id(const struct shard *s)
{
    return s->id;
}

bool shard_post(struct shard *s, struct xmsg *m)
{
    pthread_mutex_lock(&s->lock);
    bool ok = !s->closed;
    if (ok)
        lw_list_push_back(&s->inbox, &m->link);
    pthread_mutex_unlock(&s->lock);
    if (ok)
        uv_async_send(&s->wake);
    return ok;
}

/* Runs every message queued for s; with close, s accepts no more posts from then on. */
static void drain_inbox(struct shard *s, bool close)
{
    struct lw_list batch;
    lw_list_init(&batch);
    pthread_mutex_lock(&s->lock);
    lw_list_splice_back(&batch, &s->inbox);
    if (close)
        s->closed = true;
    pthread_mutex_unlock(&s->lock);
    struct lw_list *it;
    while ((it = lw_list_pop_front(&batch))) {
        struct xmsg *m = lw_container_of(it, struct xmsg, link);
        m->run(s, m);
    }
}

static void on_wake(uv_async_t *h)
{
    struct shard *s = h->data;
    drain_inbox(s, false);
    if (s->stopping)
        uv_close((uv_handle_t *)&s->wake, NULL);
}

static void run_ping(struct shard *s, struct xmsg *m)
{
    (void)m;
    atomic_store(&s->ping_answer, atomic_load(&ping_seq));
    atomic_store(&s->ping_queued, false);
}

static void close_transport(struct shard *s)
{
    s->nrxq = 0; /* a batch cut short: its datagrams point into rxbuf */
    for (unsigned i = 0; i < s->nudp; i++) {
        uv_udp_recv_stop(&s->udp[i]);
        if (!uv_is_closing((uv_handle_t *)&s->udp[i]))
            uv_close((uv_handle_t *)&s->udp[i], NULL);
    }
    if (s->timer_inited && !uv_is_closing((uv_handle_t *)&s->timer)) {
        uv_timer_stop(&s->timer);
        uv_close((uv_handle_t *)&s->timer, NULL);
    }
}

static void run_stop(struct shard *s, struct xmsg *m)
{
    free(m);
    s->stopping = true;
    close_transport(s);
    lw_store_detach(s->id); /* what its writer still queues is written by lw_store_stop */
    log_debug(SHARD, "shard %u stopping", s->id);
}

/* ---- transport: datagrams in, datagrams out, one timer ---- */

static void on_timer(uv_timer_t *t);
static void tx_flush(struct shard *s);

/* Arms the loop timer for the service's next deadline when that is earlier than what is armed
 * (a later deadline needs nothing: the timer fires early and re-arms). */
static void rearm(struct shard *s, bool force)
{
    if (s->stopping || !s->timer_inited)
        return;
    uint64_t d = regsrv_next_deadline(&s->rs);
    if (s->coaps)
        d = LW_MIN(d, coaps_next_deadline(s->coaps));
    if (!force && d >= s->armed)
        return;
    s->armed = d;
    if (d == UINT64_MAX) {
        uv_timer_stop(&s->timer);
        return;
    }
    uint64_t now = uv_now(&s->loop);
    uv_timer_start(&s->timer, on_timer, d > now ? d - now : 0, 0);
}

static void on_timer(uv_timer_t *t)
{
    struct shard *s = t->data;
    s->armed = UINT64_MAX;
    regsrv_advance(&s->rs, uv_now(&s->loop));
    if (s->coaps)
        coaps_advance(s->coaps, uv_now(&s->loop));
    if (s->ntx > 0)
        tx_flush(s);
    rearm(s, true);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct shard *s = h->data;
    (void)suggested;
    *buf = uv_buf_init((char *)s->rxbuf, RXBUF_SIZE);
}

static void send_failed(struct shard *s, int err)
{
    atomic_fetch_add_explicit(&s->rs.stats.drops[RS_DROP_SEND], 1, memory_order_relaxed);
    log_warn_rl(NET, "shard %u: send failed: %s", s->id, strerror(err));
}

/* Sends the responses queued while a recvmmsg batch was processed, one sendmmsg per socket. */
static void tx_flush(struct shard *s)
{
    struct mmsghdr mh[TX_BATCH];
    struct iovec iov[TX_BATCH];
    for (unsigned sock = 0; sock < s->nudp && s->ntx > 0; sock++) {
        unsigned n = 0;
        for (unsigned i = 0; i < s->ntx; i++) {
            if (s->tx[i].sock != sock)
                continue;
            iov[n] = (struct iovec){s->txbuf + (size_t)i * TX_MAX, s->tx[i].len};
            memset(&mh[n], 0, sizeof(mh[n]));
            mh[n].msg_hdr.msg_name = &s->tx[i].to;
            mh[n].msg_hdr.msg_namelen = s->tx[i].tolen;
            mh[n].msg_hdr.msg_iov = &iov[n];
            mh[n].msg_hdr.msg_iovlen = 1;
            n++;
        }
        uv_os_fd_t fd;
        if (n == 0 || uv_fileno((uv_handle_t *)&s->udp[sock], &fd) != 0)
            continue;
        for (unsigned done = 0; done < n;) {
            int rc = sendmmsg(fd, mh + done, n - done, MSG_DONTWAIT);
            if (rc <= 0) { /* the kernel refused the next one: drop it and go on */
                send_failed(s, rc < 0 ? errno : EAGAIN);
                done++;
            } else {
                done += (unsigned)rc;
            }
        }
    }
    s->ntx = 0;
}

static socklen_t sa_len(const struct sockaddr *sa)
{
    return sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

/* Handles one datagram outside a receive batch, as received on s's socket `sock`. */
static void input_now(struct shard *s, uint8_t sock, const struct sockaddr *addr,
                      const uint8_t *data, size_t len)
{
    if (sock >= s->ncoap) {
        if (s->coaps)
            coaps_input(s->coaps, sock, addr, sa_len(addr), data, len, uv_now(&s->loop));
    } else {
        struct peer_addr pa;
        if (peer_addr_from_sa(&pa, addr, sock) == 0)
            regsrv_input_hashed(&s->rs, &pa, peer_hash(&s->rs.peers, &pa), data, len,
                                uv_now(&s->loop));
    }
    rearm(s, false);
}

/* A datagram that reached a socket of the wrong shard (udp.h: the kernel's choice while a group
 * forms, or every datagram's with server.steering = forward), copied for the shard that owns
 * its source. Every shard's socket i belongs to the same listen group and address, so the owner
 * answers from its own socket i with the same source the device wrote to. */
struct dgram_msg {
    struct xmsg m;
    struct sockaddr_storage from;
    size_t len;
    uint8_t sock;
    uint8_t data[];
};

/* Bytes of forwarded datagrams one shard may have waiting (server.udp_buffer, at least 1 MiB):
 * like a socket's receive buffer, it bounds the memory a flood can pin; beyond it they are
 * dropped and counted (drops{reason="forward_full"}). */
static size_t fwd_limit = 4u << 20;

static void run_dgram(struct shard *s, struct xmsg *m)
{
    struct dgram_msg *f = lw_container_of(m, struct dgram_msg, m);
    atomic_fetch_sub_explicit(&s->fwd_bytes, sizeof(*f) + f->len, memory_order_relaxed);
    if (!s->stopping && f->sock < s->nudp) {
        input_now(s, f->sock, (const struct sockaddr *)&f->from, f->data, f->len);
        regsrv_events_flush(&s->rs);
    }
    free(f);
}

/* The shard that owns a datagram received on s's socket `sock` (the rule of the group's
 * steering program, computed in userspace). */
static unsigned owner_of(const struct shard *s, uint8_t sock, const struct sockaddr *addr,
                         const uint8_t *data, size_t len)
{
    return sock >= s->ncoap ? udp_steer_dtls(data, len, addr, nshards) : udp_steer(addr, nshards);
}

static void forward_dgram(struct shard *s, unsigned to, uint8_t sock, const struct sockaddr *addr,
                          const uint8_t *data, size_t len)
{
    struct shard *t = &shards[to];
    size_t cost = sizeof(struct dgram_msg) + len;
    if (atomic_fetch_add_explicit(&t->fwd_bytes, cost, memory_order_relaxed) + cost > fwd_limit) {
        atomic_fetch_sub_explicit(&t->fwd_bytes, cost, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->rs.stats.drops[RS_DROP_FORWARD], 1, memory_order_relaxed);
        return;
    }
    struct dgram_msg *f = malloc(cost);
    if (f) {
        f->m.run = run_dgram;
        memcpy(&f->from, addr, sa_len(addr));
        f->len = len;
        f->sock = sock;
        memcpy(f->data, data, len);
        if (shard_post(t, &f->m)) {
            atomic_fetch_add_explicit(&s->forwarded, 1, memory_order_relaxed);
            return;
        }
        free(f); /* the owner stopped: the daemon is shutting down */
    }
    atomic_fetch_sub_explicit(&t->fwd_bytes, cost, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->rs.stats.drops[RS_DROP_NOMEM], 1, memory_order_relaxed);
}

static void on_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr,
                    unsigned flags)
{
    struct shard *s = h->data;
    struct peer_addr pa;
    /* With UV_UDP_RECVMMSG libuv reports a batch as UV_UDP_MMSG_CHUNK calls followed by one
     * (nread 0, addr NULL, UV_UDP_MMSG_FREE) call; the buffer is the shard's own, so nothing is
     * freed here. Responses produced during a batch are queued and sent with one sendmmsg. */
    s->batching = (flags & UV_UDP_MMSG_CHUNK) != 0;
    s->rs.hold_events = s->batching;
    unsigned to;
    if (nread < 0) {
        log_warn_rl(NET, "shard %u: receive failed: %s", s->id, uv_strerror((int)nread));
    } else if (addr && nshards > 1 &&
               (to = owner_of(s, (uint8_t)(h - s->udp), addr, (const uint8_t *)buf->base,
                              (size_t)nread)) != s->id) {
        s->rx_n++;
        forward_dgram(s, to, (uint8_t)(h - s->udp), addr, (const uint8_t *)buf->base,
                      (size_t)nread);
    } else if ((nread > 0 || addr != NULL) && (unsigned)(h - s->udp) >= s->ncoap) {
        s->rx_n++;
        if (s->coaps && addr)
            coaps_input(s->coaps, (uint8_t)(h - s->udp), addr, sa_len(addr),
                        (const uint8_t *)buf->base, (size_t)nread, uv_now(&s->loop));
        rearm(s, false);
    } else if (nread > 0 || addr != NULL) {
        s->rx_n++;
        if (peer_addr_from_sa(&pa, addr, (uint8_t)(h - s->udp)) == 0) {
            uint64_t hash = peer_hash(&s->rs.peers, &pa);
            if (s->batching && s->nrxq < RXBUF_SLOTS) {
                /* Handled when the batch ends; meanwhile the CPU fetches the peer table's slots
                 * for this address (a cache miss each in a large table) while it hashes the
                 * next ones. The datagram stays in rxbuf until the next recvmmsg. */
                peer_prefetch(&s->rs.peers, hash);
                struct rx_pending *q = &s->rxq[s->nrxq++];
                *q = (struct rx_pending){
                    pa, hash, (const uint8_t *)buf->base, (size_t)nread, {NULL, 0, 0}};
                regsrv_ep_hint(q->data, q->len, &q->ep);
            } else {
                regsrv_input_hashed(&s->rs, &pa, hash, (const uint8_t *)buf->base, (size_t)nread,
                                    uv_now(&s->loop));
                rearm(s, false);
            }
        }
    }
    if (!s->batching && s->nrxq > 0) {
        /* The batch ended: its datagrams in arrival order, responses and events still batched. */
        s->batching = true;
        s->rs.hold_events = true;
        for (unsigned i = 0; i < s->nrxq; i++) {
            s->rs.ep_hint = s->rxq[i].ep;
            regsrv_input_hashed(&s->rs, &s->rxq[i].from, s->rxq[i].hash, s->rxq[i].data,
                                s->rxq[i].len, uv_now(&s->loop));
        }
        s->rs.ep_hint = (struct regsrv_ep_hint){0};
        s->nrxq = 0;
        s->batching = false;
        s->rs.hold_events = false;
        rearm(s, false);
    }
    if (!s->batching && s->ntx > 0)
        tx_flush(s);
    if (!s->batching) {
        regsrv_events_flush(&s->rs);
        lw_store_rx_batch(s->id, s->rx_n, RXBUF_SLOTS);
        s->rx_n = 0;
    }
}

/* Sends one datagram on socket `sock` (queued for sendmmsg during a receive batch). */
static void raw_send(struct shard *s, uint8_t sock, const struct sockaddr *to, socklen_t tolen,
                     const uint8_t *data, size_t len)
{
    if (sock >= s->nudp || tolen > sizeof(struct sockaddr_storage))
        return;
    if (s->batching && len <= TX_MAX) {
        if (s->ntx == TX_BATCH)
            tx_flush(s);
        struct tx_ent *e = &s->tx[s->ntx];
        memcpy(s->txbuf + (size_t)s->ntx * TX_MAX, data, len);
        e->len = len;
        e->sock = sock;
        memcpy(&e->to, to, tolen);
        e->tolen = tolen;
        s->ntx++;
        return;
    }
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    int rc = uv_udp_try_send(&s->udp[sock], &b, 1, to);
    if (rc < 0)
        send_failed(s, -rc);
}

static void rs_send(void *ctx, const struct peer_addr *to, const uint8_t *data, size_t len)
{
    struct shard *s = ctx;
    if (to->sock >= s->nudp)
        return;
    if (to->sock >= s->ncoap) { /* CoAPS: encrypt for the peer's DTLS session */
        int rc = s->coaps ? coaps_write(s->coaps, to, data, len, uv_now(&s->loop)) : LW_ENOENT;
        if (rc != 0)
            log_debug(DTLS, "shard %u: cannot send over dtls: %s", s->id, lw_strerror(rc));
        return;
    }
    struct sockaddr_storage ss;
    socklen_t sl = peer_addr_to_sa(to, &ss);
    raw_send(s, to->sock, (const struct sockaddr *)&ss, sl, data, len);
}

static void coaps_raw_send(void *ctx, uint8_t sock, const struct sockaddr *to, socklen_t tolen,
                           const uint8_t *data, size_t len)
{
    raw_send(ctx, sock, to, tolen, data, len);
}

static const struct coaps_ops cs_ops = {.send = coaps_raw_send};

static bool rs_ep_secured(void *ctx, const char *ep, size_t len)
{
    (void)ctx;
    return creds_ep_secured(ep, len);
}

struct drop_msg {
    struct xmsg m;
    uint64_t id;
    uint32_t gen;
};

static void run_drop(struct shard *s, struct xmsg *m)
{
    struct drop_msg *d = lw_container_of(m, struct drop_msg, m);
    if (s->rs_inited) {
        regsrv_drop(&s->rs, d->id, d->gen, "replaced", NULL);
        rearm(s, false);
    }
    free(d);
}

/* A Register on another shard replaced (id, gen) held here: drop it by message. */
static void rs_drop_remote(void *ctx, unsigned shard, uint64_t id, uint32_t gen)
{
    struct shard *s = ctx;
    struct drop_msg *d = malloc(sizeof(*d));
    if (!d || shard >= nshards) {
        free(d);
        log_warn_rl(SHARD, "shard %u: cannot ask shard %u to drop a replaced registration", s->id,
                    shard);
        return;
    }
    d->m.run = run_drop;
    d->id = id;
    d->gen = gen;
    if (!shard_post(&shards[shard], &d->m))
        free(d);
}

static void run_fwd(struct shard *s, struct xmsg *m)
{
    struct regsrv_fwd *f = lw_container_of(m, struct regsrv_fwd, m);
    log_debug(SHARD, "shard %u: forwarded message kind=%u from shard %u", s->id, f->kind, f->from);
    if (s->rs_inited && !s->stopping) {
        regsrv_fwd_run(&s->rs, f, uv_now(&s->loop));
        rearm(s, false);
    } else {
        regsrv_fwd_free(f);
    }
}

static void rs_post_fwd(void *ctx, unsigned shard, struct regsrv_fwd *f)
{
    (void)ctx;
    f->m.run = run_fwd;
    if (shard >= nshards || !shard_post(&shards[shard], &f->m))
        regsrv_fwd_free(f);
}

/* Registration changes go straight to the write-behind store (store.h), no event bus hop. */
static void rs_persist(void *ctx, const struct regsrv_change *c)
{
    (void)ctx;
    lw_store_change(c);
}

static const struct regsrv_ops rs_ops = {.send = rs_send,
                                         .drop_remote = rs_drop_remote,
                                         .post_fwd = rs_post_fwd,
                                         .ep_secured = rs_ep_secured};
/* The same with the store: without a database no change is copied for it. */
static const struct regsrv_ops rs_ops_store = {.send = rs_send,
                                               .drop_remote = rs_drop_remote,
                                               .post_fwd = rs_post_fwd,
                                               .ep_secured = rs_ep_secured,
                                               .persist = rs_persist};

/* ---- metrics (control thread; reads relaxed atomics) ---- */

static void metric_head(struct lw_buf *out, const char *name, const char *type, const char *help)
{
    lw_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static uint64_t ld(_Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

static void write_dtls_metrics(struct lw_buf *out)
{
    static const struct {
        const char *name, *label;
        size_t off;
    } ev[] = {
        {"lwm2md_dtls_handshakes_total", "result=\"ok\"",
         offsetof(struct coaps_stats, handshakes_ok)},
        {"lwm2md_dtls_handshakes_total", "result=\"failed\"",
         offsetof(struct coaps_stats, handshakes_failed)},
        {"lwm2md_dtls_handshakes_total", "result=\"unbound\"",
         offsetof(struct coaps_stats, unbound)},
        {"lwm2md_dtls_hello_total", "result=\"stateless\"",
         offsetof(struct coaps_stats, hello_stateless)},
        {"lwm2md_dtls_hello_total", "result=\"ratelimited\"",
         offsetof(struct coaps_stats, hello_ratelimited)},
        {"lwm2md_dtls_hello_total", "result=\"budget\"",
         offsetof(struct coaps_stats, budget_refused)},
        {"lwm2md_dtls_hello_total", "result=\"deferred\"",
         offsetof(struct coaps_stats, hello_deferred)},
        {"lwm2md_dtls_hello_total", "result=\"backlog_full\"",
         offsetof(struct coaps_stats, backlog_full)},
        {"lwm2md_dtls_hello_total", "result=\"backlog_expired\"",
         offsetof(struct coaps_stats, backlog_expired)},
        {"lwm2md_dtls_hello_total", "result=\"crossed\"",
         offsetof(struct coaps_stats, hello_crossed)},
        {"lwm2md_dtls_session_events_total", "event=\"hibernated\"",
         offsetof(struct coaps_stats, hibernations)},
        {"lwm2md_dtls_session_events_total", "event=\"woken\"",
         offsetof(struct coaps_stats, wakes)},
        {"lwm2md_dtls_session_events_total", "event=\"wake_failed\"",
         offsetof(struct coaps_stats, wake_failed)},
        {"lwm2md_dtls_session_events_total", "event=\"peer_moved\"",
         offsetof(struct coaps_stats, peer_moved)},
        {"lwm2md_dtls_session_events_total", "event=\"cid_stale\"",
         offsetof(struct coaps_stats, cid_stale)},
        {"lwm2md_dtls_sessions", "state=\"live\"", offsetof(struct coaps_stats, sessions)},
        {"lwm2md_dtls_sessions", "state=\"hibernated\"", offsetof(struct coaps_stats, hibernated)},
        {"lwm2md_dtls_sessions", "state=\"hello_waiting\"", offsetof(struct coaps_stats, deferred)},
    };
    if (!coaps_enabled())
        return;
    const char *last = NULL;
    for (size_t k = 0; k < LW_ARRAY_SIZE(ev); k++) {
        if (!last || strcmp(last, ev[k].name) != 0) {
            bool gauge = strcmp(ev[k].name, "lwm2md_dtls_sessions") == 0;
            metric_head(out, ev[k].name, gauge ? "gauge" : "counter",
                        gauge ? "DTLS sessions held, by state."
                              : "DTLS handshakes, hellos and session events.");
            last = ev[k].name;
        }
        for (unsigned i = 0; i < nshards; i++) {
            if (!shards[i].coaps)
                continue;
            const struct coaps_stats *st = coaps_stats(shards[i].coaps);
            uint64_t v = ld((_Atomic uint64_t *)((const char *)st + ev[k].off));
            if (ev[k].off == offsetof(struct coaps_stats, sessions))
                v -= ld((_Atomic uint64_t *)&st->hibernated);
            lw_buf_printf(out, "%s{shard=\"%u\",%s} %llu\n", ev[k].name, i, ev[k].label,
                          (unsigned long long)v);
        }
    }
}

static void write_metrics(void *ctx, struct lw_buf *out)
{
    static const char *const drop_names[RS_DROP__COUNT] = {"malformed", "peers_full", "nomem",
                                                           "send_failed", "forward_full"};
    static const char *const res_names[RS__COUNT] = {"register_created",
                                                     "register_replaced",
                                                     "register_bad_request",
                                                     "register_unsupported_version",
                                                     "register_limit",
                                                     "update_ok",
                                                     "update_not_found",
                                                     "update_bad_request",
                                                     "deregister_ok",
                                                     "deregister_not_found",
                                                     "expired",
                                                     "other",
                                                     "forbidden"};
    (void)ctx;
    metric_head(out, "lwm2md_shard_datagrams_in_total", "counter", "Datagrams received.");
    for (unsigned i = 0; i < nshards; i++)
        lw_buf_printf(out, "lwm2md_shard_datagrams_in_total{shard=\"%u\"} %llu\n", i,
                      (unsigned long long)ld(&shards[i].rs.stats.rx));
    metric_head(out, "lwm2md_shard_datagrams_out_total", "counter", "Datagrams sent.");
    for (unsigned i = 0; i < nshards; i++)
        lw_buf_printf(out, "lwm2md_shard_datagrams_out_total{shard=\"%u\"} %llu\n", i,
                      (unsigned long long)ld(&shards[i].rs.stats.tx));
    metric_head(out, "lwm2md_shard_datagrams_forwarded_total", "counter",
                "Datagrams received for another shard and handed to it.");
    for (unsigned i = 0; i < nshards; i++)
        lw_buf_printf(out, "lwm2md_shard_datagrams_forwarded_total{shard=\"%u\"} %llu\n", i,
                      (unsigned long long)ld(&shards[i].forwarded));
    metric_head(out, "lwm2md_shard_drops_total", "counter", "Datagrams dropped, by reason.");
    for (unsigned i = 0; i < nshards; i++)
        for (unsigned k = 0; k < RS_DROP__COUNT; k++)
            lw_buf_printf(out, "lwm2md_shard_drops_total{shard=\"%u\",reason=\"%s\"} %llu\n", i,
                          drop_names[k], (unsigned long long)ld(&shards[i].rs.stats.drops[k]));
    metric_head(out, "lwm2md_registration_results_total", "counter",
                "Registration interface requests and expiries, by result.");
    for (unsigned i = 0; i < nshards; i++)
        for (unsigned k = 0; k < RS__COUNT; k++)
            lw_buf_printf(out,
                          "lwm2md_registration_results_total{shard=\"%u\",result=\"%s\"} %llu\n", i,
                          res_names[k], (unsigned long long)ld(&shards[i].rs.stats.results[k]));
    metric_head(out, "lwm2md_shard_peers", "gauge", "Peer addresses tracked.");
    for (unsigned i = 0; i < nshards; i++)
        lw_buf_printf(out, "lwm2md_shard_peers{shard=\"%u\"} %llu\n", i,
                      (unsigned long long)ld(&shards[i].rs.stats.peers));
    metric_head(out, "lwm2md_shard_registrations", "gauge", "Registrations held.");
    for (unsigned i = 0; i < nshards; i++)
        lw_buf_printf(out, "lwm2md_shard_registrations{shard=\"%u\"} %llu\n", i,
                      (unsigned long long)ld(&shards[i].rs.stats.regs));
    write_dtls_metrics(out);
    metric_head(out, "lwm2md_directory_endpoints", "gauge", "Endpoints in the directory.");
    lw_buf_printf(out, "lwm2md_directory_endpoints %zu\n", dir_count());
    metric_head(out, "lwm2md_events_coalesced_total", "counter",
                "Heartbeat updated events skipped while the control thread lagged.");
    lw_buf_printf(out, "lwm2md_events_coalesced_total %llu\n",
                  (unsigned long long)regsrv_events_coalesced());
    metric_head(out, "lwm2md_interned_object_lists", "gauge",
                "Distinct object lists shared by registrations.");
    lw_buf_printf(out, "lwm2md_interned_object_lists %zu\n", reg_interned_count());
}

static void walk_close(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void shard_main(void *arg)
{
    struct shard *s = arg;
    char name[16];
    snprintf(name, sizeof(name), "lw-shard%u", s->id);
    pthread_setname_np(pthread_self(), name);
    log_debug(SHARD, "shard %u running", s->id);
    atomic_fetch_add(&running, 1);
    rearm(s, true);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    atomic_fetch_sub(&running, 1);
    /* Posted after the loop's last wake-up (a datagram another shard forwarded, a late
     * cross-shard message): they run now, in the stopping state like those of the last wake-up,
     * and no more are accepted, so nothing posted to this shard is left unfreed. */
    drain_inbox(s, true);
    /* Everything the shard owns is closed by now; close any straggler and drain close callbacks. */
    uv_walk(&s->loop, walk_close, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    if (s->rs_inited) { /* shutdown: no events for the registrations dropped here */
        regsrv_deinit(&s->rs);
        s->rs_inited = false;
    }
    coaps_free(s->coaps);
    s->coaps = NULL;
}

/* Opens one listen group and hands its socket i to shard i (appended to its udp[]). */
static int open_group(unsigned n, const struct lw_listen *l, bool dtls)
{
    int fds[256];
    char err[256];
    const char *what = dtls ? "coaps" : "coap";
    int rc = dtls ? udp_group_open_dtls(l, n, fds, err, sizeof(err))
                  : udp_group_open(l, n, fds, err, sizeof(err));
    if (rc) {
        log_err(NET, "cannot listen for %s: %s", what, err);
        return rc;
    }
    unsigned port = udp_bound_port(fds[0]);
    for (unsigned i = 0; i < n; i++) {
        struct shard *s = &shards[i];
        uv_udp_t *u = &s->udp[s->nudp];
        rc = uv_udp_init_ex(&s->loop, u, AF_UNSPEC | UV_UDP_RECVMMSG);
        if (rc == 0) {
            s->nudp++;
            u->data = s;
            rc = uv_udp_open(u, fds[i]);
            if (rc == 0)
                fds[i] = -1; /* the handle owns it */
            if (rc == 0)
                rc = uv_udp_recv_start(u, on_alloc, on_recv);
        }
        if (rc) {
            log_err(NET, "shard %u: cannot use its %s socket: %s", i, what, uv_strerror(rc));
            for (unsigned k = i; k < n; k++)
                if (fds[k] >= 0)
                    close(fds[k]);
            return LW_EIO;
        }
    }
    log_info(NET, "%s listening on %s%s%s:%u with %u socket%s", what,
             strchr(l->host, ':') ? "[" : "", l->host, strchr(l->host, ':') ? "]" : "", port, n,
             n == 1 ? "" : "s");
    return 0;
}

/* Opens every coap.listen group, then (with DTLS configured) every coaps.listen group; socket i
 * of each goes to shard i. Before any thread. */
static int open_transport(unsigned n, const struct lw_config *cfg)
{
    int rc;
    for (unsigned l = 0; l < cfg->coap_listen_n; l++)
        if ((rc = open_group(n, &cfg->coap_listen[l], false)) != 0)
            return rc;
    for (unsigned i = 0; i < n; i++)
        shards[i].ncoap = shards[i].nudp;
    for (unsigned l = 0; coaps_enabled() && l < cfg->coaps_listen_n; l++)
        if ((rc = open_group(n, &cfg->coaps_listen[l], true)) != 0)
            return rc;
    return 0;
}

static void shard_free_one(struct shard *s)
{
    if (s->started) {
        uv_loop_close(&s->loop);
        pthread_mutex_destroy(&s->lock);
    }
}

/* Closes the handles of a shard whose thread never started and frees its state. */
static void teardown_unstarted(struct shard *s)
{
    s->stopping = true;
    close_transport(s);
    lw_store_detach(s->id);
    uv_close((uv_handle_t *)&s->wake, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    if (s->rs_inited)
        regsrv_deinit(&s->rs);
    s->rs_inited = false;
    coaps_free(s->coaps);
    s->coaps = NULL;
    free(s->rxbuf);
    s->rxbuf = NULL;
    free(s->txbuf);
    s->txbuf = NULL;
    shard_free_one(s);
    s->started = false;
}

/* Start-up failed before any thread ran. */
static void abandon_all(void)
{
    for (unsigned i = 0; i < nshards; i++)
        teardown_unstarted(&shards[i]);
    free(shards);
    shards = NULL;
    nshards = 0;
    reg_global_deinit();
    coaps_global_deinit();
    globals_inited = false;
}

int shards_start(unsigned n, const struct lw_config *cfg)
{
    char err[512];
    if (n == 0 || n > 256)
        return LW_EINVAL;
    udp_set_buffer_size(cfg->udp_buffer);
    udp_set_kernel_steering(cfg->steering == LW_STEER_KERNEL);
    fwd_limit = LW_MAX(cfg->udp_buffer, (size_t)1 << 20);
    if (reg_global_init(cfg, err, sizeof(err)) != 0) {
        log_err(M2M, "cannot start the registration interface: %s", err);
        return LW_ECONFIG;
    }
    if (coaps_global_init(cfg, err, sizeof(err)) != 0) {
        log_err(DTLS, "cannot start coaps: %s", err);
        coaps_global_deinit();
        reg_global_deinit();
        return LW_ECONFIG;
    }
    globals_inited = true;
    shards = calloc(n, sizeof(*shards));
    if (!shards) {
        coaps_global_deinit();
        reg_global_deinit();
        globals_inited = false;
        return LW_ENOMEM;
    }
    nshards = n;
    for (unsigned i = 0; i < n; i++) {
        struct shard *s = &shards[i];
        s->id = i;
        s->cfg = cfg;
        lw_list_init(&s->inbox);
        s->ping.run = run_ping;
        int rc = uv_loop_init(&s->loop);
        if (rc == 0) {
            rc = uv_async_init(&s->loop, &s->wake, on_wake);
            if (rc)
                uv_loop_close(&s->loop);
        }
        if (rc) {
            log_err(SHARD, "shard %u: cannot create its loop: %s", i, uv_strerror(rc));
            nshards = i;
            abandon_all();
            return LW_EIO;
        }
        s->wake.data = s;
        pthread_mutex_init(&s->lock, NULL);
        s->started = true;
    }
    struct regsrv_cfg rcfg;
    regsrv_cfg_from(&rcfg, cfg);
    rcfg.nshards = n;
    for (unsigned i = 0; i < n; i++) {
        struct shard *s = &shards[i];
        s->armed = UINT64_MAX;
        s->rxbuf = malloc(RXBUF_SIZE);
        s->txbuf = malloc((size_t)TX_BATCH * TX_MAX);
        int rc = s->rxbuf && s->txbuf
                     ? regsrv_init(&s->rs, i, &rcfg, lw_store_enabled() ? &rs_ops_store : &rs_ops,
                                   s, uv_now(&s->loop))
                     : LW_ENOMEM;
        if (rc == 0) {
            s->rs_inited = true;
            if (coaps_enabled())
                rc = coaps_new(i, &s->rs, &cs_ops, s, uv_now(&s->loop), &s->coaps);
        }
        if (rc == 0) {
            rc = uv_timer_init(&s->loop, &s->timer);
            s->timer_inited = rc == 0;
            s->timer.data = s;
        }
        if (rc) {
            log_err(SHARD, "shard %u: cannot start its registration service: %s", i,
                    lw_strerror(rc));
            abandon_all();
            return LW_ENOMEM;
        }
    }
    /* Live registrations from the database, before any socket opens (store.h). */
    if (lw_store_restore(cfg, n) != 0) {
        log_err(SHARD, "cannot restore the registrations: out of memory");
        abandon_all();
        return LW_ENOMEM;
    }
    /* Then their hibernated DTLS sessions, so devices need no new handshake (sessions.h). */
    if (coaps_enabled())
        lw_sessions_restore(cfg, coaps_restore_cb, NULL);
    if (open_transport(n, cfg) != 0) {
        abandon_all();
        return LW_EIO;
    }
    /* One write-behind writer per shard, on its loop (store.h). */
    for (unsigned i = 0; i < n; i++) {
        if (lw_store_attach(n, i, &shards[i].loop) != 0) {
            log_err(SHARD, "shard %u: cannot start its database writer: out of memory", i);
            abandon_all();
            return LW_ENOMEM;
        }
    }
    for (unsigned i = 0; i < n; i++) {
        struct shard *s = &shards[i];
        int rc = uv_thread_create(&s->thread, shard_main, s);
        if (rc) {
            /* Threads 0..i-1 run; the rest are torn down here, then the running ones stopped. */
            log_err(SHARD, "shard %u: cannot start its thread: %s", i, uv_strerror(rc));
            for (unsigned k = i; k < n; k++)
                teardown_unstarted(&shards[k]);
            nshards = i;
            shards_stop();
            return LW_EIO;
        }
    }
    metrics_writer.write = write_metrics;
    lw_metrics_register(&metrics_writer);
    log_info(SHARD, "%u shard%s started", n, n == 1 ? "" : "s");
    return 0;
}

void shards_stop(void)
{
    if (!shards)
        return;
    for (unsigned i = 0; i < nshards; i++) {
        struct xmsg *m = malloc(sizeof(*m));
        if (!m) /* cannot happen in practice; the shard would never stop: fail loudly */
            abort();
        m->run = run_stop;
        if (!shard_post(&shards[i], m))
            free(m);
    }
    for (unsigned i = 0; i < nshards; i++) {
        uv_thread_join(&shards[i].thread);
        pthread_mutex_lock(&shards[i].lock);
        shards[i].closed = true;
        pthread_mutex_unlock(&shards[i].lock);
        shard_free_one(&shards[i]);
        free(shards[i].rxbuf);
        free(shards[i].txbuf);
    }
    if (metrics_writer.write)
        lw_metrics_unregister(&metrics_writer);
    metrics_writer.write = NULL;
    free(shards);
    shards = NULL;
    nshards = 0;
    if (globals_inited) {
        reg_global_deinit();
        coaps_global_deinit();
    }
    globals_inited = false;
}

void shards_ping(void)
{
    atomic_fetch_add(&ping_seq, 1);
    for (unsigned i = 0; i < nshards; i++) {
        struct shard *s = &shards[i];
        bool expected = false;
        if (atomic_compare_exchange_strong(&s->ping_queued, &expected, true))
            shard_post(s, &s->ping);
    }
}

bool shards_all_answered(void)
{
    uint64_t seq = atomic_load(&ping_seq);
    for (unsigned i = 0; i < nshards; i++)
        if (atomic_load(&shards[i].ping_answer) != seq)
            return false;
    return true;
}
