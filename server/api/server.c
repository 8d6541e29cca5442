/* server/api/server.c - TCP listeners and connections of the HTTP API on the control loop:
 * accept (bounded by api.max_connections), read into api_conn_feed, ordered writes, header and
 * idle timeouts (slow clients), graceful close on shutdown, and the api start/stop entry points. */
#include "api.h"

#include "api_int.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/util.h"
#include "log.h"
#include "metrics.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

struct tconn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    struct api_conn api;
    size_t backlog; /* bytes handed to uv_write and not yet completed */
    uint64_t last_activity_ms;
    uint64_t header_start_ms;
    bool closing;
    bool api_inited;
    bool shutting; /* uv_shutdown requested */
    bool reading;
    bool write_paused;     /* reading stopped: too many response bytes queued */
    bool api_paused;       /* reading stopped: too many unanswered requests */
    WOLFSSL *ssl;          /* api.tls_cert set: TLS over this connection */
    bool tls_up;           /* handshake finished */
    const uint8_t *tls_in; /* ciphertext being consumed by the receive callback */
    size_t tls_in_len;
    int handles; /* open uv handles (tcp, timer) */
};

struct wreq {
    uv_write_t req;
    struct tconn *t;
    size_t len;
    uint8_t data[];
};

static struct {
    uv_loop_t *loop;
    uv_tcp_t listeners[LW_CFG_MAX_LISTEN];
    unsigned nlisteners;
    struct lw_list conns;
    unsigned nconns;
    unsigned max_conns;
    uint64_t next_id;
    struct api_limits lim;
    bool started, stopping;
    bool metrics_registered;
    uint64_t stop_deadline_ms;
    uint64_t refused;
    WOLFSSL_CTX *tls;
    uint64_t tls_failures;
} srv = {.conns = {&srv.conns, &srv.conns}};

static struct tconn *tconn_of(struct api_conn *c)
{
    return c->ctx;
}

struct api_conn *api_conn_lookup(uint64_t id)
{
    lw_list_foreach (it, &srv.conns) {
        struct api_conn *c = lw_container_of(it, struct api_conn, link);
        if (c->id == id)
            return c;
    }
    return NULL;
}

uint64_t api_req_cookie(const struct api_req *r)
{
    return r->conn->id << 24 | (r->seq & 0xffffff);
}

struct api_req *api_req_of_cookie(uint64_t cookie)
{
    struct api_conn *c = api_conn_lookup(cookie >> 24);
    if (!c)
        return NULL;
    struct api_req *r = api_conn_find(c, (uint32_t)(cookie & 0xffffff));
    return r && !r->done ? r : NULL;
}

void api_conn_each(void (*fn)(struct api_conn *c, void *arg), void *arg)
{
    lw_list_foreach_safe (it, &srv.conns) {
        struct api_conn *c = lw_container_of(it, struct api_conn, link);
        fn(c, arg);
    }
}

size_t api_conn_backlog(struct api_conn *c)
{
    return tconn_of(c)->backlog;
}

static void on_handle_closed(uv_handle_t *h)
{
    struct tconn *t = h->data;
    if (--t->handles > 0)
        return;
    if (t->api_inited)
        api_conn_deinit(&t->api);
    if (t->ssl)
        wolfSSL_free(t->ssl); /* not earlier: tconn_close may run inside a wolfSSL call */
    free(t);
}

static void tconn_close(struct tconn *t)
{
    if (t->closing)
        return;
    t->closing = true;
    lw_list_remove(&t->api.link);
    srv.nconns--;
    /* Callers may be deep inside the parser or a flush of this connection: its state is freed
     * only once the handles have closed; until then it is marked dead (nothing more is parsed or
     * written) and no longer found by async replies. */
    t->api.dead = true;
    if (t->api.sse)
        api_sse_detach(&t->api);
    uv_timer_stop(&t->timer);
    uv_close((uv_handle_t *)&t->timer, on_handle_closed);
    uv_close((uv_handle_t *)&t->tcp, on_handle_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    struct tconn *t = req->data;
    free(req);
    tconn_close(t);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* Reads while neither the request queue nor the response backlog is over its limit. */
static void update_reading(struct tconn *t)
{
    bool want = !t->closing && !t->shutting && !t->write_paused && !t->api_paused;
    if (want && !t->reading)
        t->reading = uv_read_start((uv_stream_t *)&t->tcp, on_alloc, on_read) == 0;
    else if (!want && t->reading) {
        uv_read_stop((uv_stream_t *)&t->tcp);
        t->reading = false;
    }
}

static void on_write(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct tconn *t = w->t;
    t->backlog -= w->len;
    t->last_activity_ms = lw_mono_ms();
    free(w);
    if (t->write_paused && t->backlog <= api_set.sse_max_backlog / 2 && !t->closing) {
        t->write_paused = false;
        update_reading(t);
    }
    if (status < 0 && !t->closing) {
        log_debug(API, "write failed: %s", uv_strerror(status));
        tconn_close(t);
    }
}

/* Queues bytes on the socket (a copy; completion in on_write). */
static void raw_write(struct tconn *t, const uint8_t *p, size_t n)
{
    if (t->closing || n == 0)
        return;
    struct wreq *w = malloc(sizeof(*w) + n);
    if (!w) {
        tconn_close(t);
        return;
    }
    memcpy(w->data, p, n);
    w->t = t;
    w->len = n;
    uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)n);
    t->backlog += n;
    int rc = uv_write(&w->req, (uv_stream_t *)&t->tcp, &b, 1, on_write);
    if (rc) {
        t->backlog -= n;
        free(w);
        tconn_close(t);
        return;
    }
    /* A client that pipelines without reading the answers must not grow memory without bound.
     * (SSE clients are disconnected instead, see sse.c.) */
    if (t->backlog > api_set.sse_max_backlog && !t->api.sse && !t->write_paused) {
        t->write_paused = true;
        update_reading(t);
    }
}

static void op_write(struct api_conn *c, const uint8_t *p, size_t n)
{
    struct tconn *t = tconn_of(c);
    if (t->closing || n == 0)
        return;
    if (!t->ssl) {
        raw_write(t, p, n);
        return;
    }
    /* The send callback never blocks, so wolfSSL_write takes everything or fails. */
    while (n && !t->closing) {
        int chunk = (int)LW_MIN(n, (size_t)16384);
        int rc = wolfSSL_write(t->ssl, p, chunk);
        if (rc <= 0) {
            tconn_close(t);
            return;
        }
        p += rc;
        n -= (size_t)rc;
    }
}

/* wolfSSL I/O callbacks: ciphertext from the current on_read buffer, out through raw_write. */
static int tls_recv(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
    (void)ssl;
    struct tconn *t = ctx;
    if (t->tls_in_len == 0)
        return WOLFSSL_CBIO_ERR_WANT_READ;
    size_t n = LW_MIN((size_t)sz, t->tls_in_len);
    memcpy(buf, t->tls_in, n);
    t->tls_in += n;
    t->tls_in_len -= n;
    return (int)n;
}

static int tls_send(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
    (void)ssl;
    struct tconn *t = ctx;
    if (t->closing)
        return WOLFSSL_CBIO_ERR_CONN_CLOSE;
    raw_write(t, (const uint8_t *)buf, (size_t)sz);
    return sz;
}

static void op_close(struct api_conn *c)
{
    struct tconn *t = tconn_of(c);
    if (t->closing || t->shutting)
        return;
    t->shutting = true;
    if (t->reading) {
        uv_read_stop((uv_stream_t *)&t->tcp);
        t->reading = false;
    }
    if (t->ssl && t->tls_up)
        wolfSSL_shutdown(t->ssl); /* close_notify; the peer's answer is not awaited */
    uv_shutdown_t *req = malloc(sizeof(*req));
    if (!req || uv_shutdown(req, (uv_stream_t *)&t->tcp, on_shutdown) != 0) {
        free(req);
        tconn_close(t);
        return;
    }
    req->data = t;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    static char slab[65536]; /* control thread only; consumed before the next read */
    (void)suggested;
    *buf = uv_buf_init(slab, sizeof(slab));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct tconn *t = s->data;
    if (nread == UV_EOF && !t->api.sse) {
        /* half-close: answer what was asked, then close */
        uv_read_stop(s);
        t->reading = false;
        t->api_paused = true;
        api_conn_shutdown(&t->api);
        return;
    }
    if (nread < 0) {
        tconn_close(t);
        return;
    }
    if (nread == 0)
        return;
    uint64_t now = lw_mono_ms();
    t->last_activity_ms = now;
    bool was_in_header = t->api.in_header;
    if (t->ssl) {
        if (!t->tls_up)
            t->header_start_ms = now; /* the handshake counts against header_timeout */
        t->tls_in = (const uint8_t *)buf->base;
        t->tls_in_len = (size_t)nread;
        if (!t->tls_up) {
            int rc = wolfSSL_accept(t->ssl);
            if (rc != WOLFSSL_SUCCESS) {
                int err = wolfSSL_get_error(t->ssl, rc);
                if (err != WOLFSSL_ERROR_WANT_READ && err != WOLFSSL_ERROR_WANT_WRITE) {
                    srv.tls_failures++;
                    log_info_rl(API, "tls handshake failed: %s",
                                wolfSSL_ERR_reason_error_string((unsigned long)err));
                    op_close(&t->api);
                }
                return;
            }
            t->tls_up = true;
        }
        static uint8_t plain[16384];
        while (!t->closing && !t->shutting && t->ssl) {
            int n = wolfSSL_read(t->ssl, plain, sizeof(plain));
            if (n <= 0) {
                int err = wolfSSL_get_error(t->ssl, n);
                if (err != WOLFSSL_ERROR_WANT_READ)
                    op_close(&t->api); /* close_notify or a TLS error */
                break;
            }
            api_conn_feed(&t->api, plain, (size_t)n);
        }
        t->tls_in_len = 0;
    } else {
        api_conn_feed(&t->api, (const uint8_t *)buf->base, (size_t)nread);
    }
    if (!t->closing && t->api.in_header && !was_in_header)
        t->header_start_ms = now;
}

static void op_pause(struct api_conn *c, bool paused)
{
    struct tconn *t = tconn_of(c);
    if (t->closing)
        return;
    t->api_paused = paused;
    update_reading(t);
}

static void op_answered(struct api_conn *c, struct api_req *r)
{
    (void)c;
    api_metrics_observe(r, lw_mono_ns() - r->start_ns);
    /* unauthenticated (401) attempts are not audited: anyone could flood the log */
    if (r->route >= 0 && api_routes[r->route].mutating && r->role != API_ROLE_NONE)
        api_audit(r, api_routes[r->route].name, r->target);
}

static const struct api_conn_ops tcp_ops = {op_write, op_close, op_pause, op_answered};

/* Slow clients: a request's headers must arrive within header_timeout; a connection with nothing
 * queued closes after idle_timeout. SSE streams and requests waiting for shards are not idle. */
static void on_tick(uv_timer_t *h)
{
    struct tconn *t = h->data;
    uint64_t now = lw_mono_ms();
    struct api_conn *c = &t->api;
    if (t->closing)
        return;
    if (srv.stopping && now >= srv.stop_deadline_ms) {
        tconn_close(t);
        return;
    }
    if ((c->in_header || (t->ssl && !t->tls_up)) &&
        now - t->header_start_ms > c->lim.header_timeout_ms) {
        log_info_rl(API, "closing a slow client: headers incomplete after %u ms",
                    c->lim.header_timeout_ms);
        op_close(c);
        return;
    }
    if (!c->sse && c->queued == 0 && !c->in_header &&
        now - t->last_activity_ms > c->lim.idle_timeout_ms)
        op_close(c);
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0 || srv.stopping)
        return;
    struct tconn *t = calloc(1, sizeof(*t));
    if (!t)
        return;
    uv_tcp_init(srv.loop, &t->tcp);
    t->tcp.data = t;
    t->handles = 1;
    if (uv_accept(server, (uv_stream_t *)&t->tcp) != 0) {
        uv_close((uv_handle_t *)&t->tcp, on_handle_closed);
        return;
    }
    if (srv.nconns >= srv.max_conns) {
        srv.refused++;
        log_warn_rl(API, "refusing a connection: api.max_connections=%u reached", srv.max_conns);
        uv_close((uv_handle_t *)&t->tcp, on_handle_closed);
        return;
    }
    uv_tcp_nodelay(&t->tcp, 1);
    uv_timer_init(srv.loop, &t->timer);
    t->timer.data = t;
    t->handles = 2;
    api_conn_init(&t->api, ++srv.next_id, &srv.lim, &tcp_ops, t);
    t->api_inited = true;
    if (srv.tls) {
        t->ssl = wolfSSL_new(srv.tls);
        if (!t->ssl) {
            uv_close((uv_handle_t *)&t->timer, on_handle_closed);
            uv_close((uv_handle_t *)&t->tcp, on_handle_closed);
            return;
        }
        wolfSSL_SetIOReadCtx(t->ssl, t);
        wolfSSL_SetIOWriteCtx(t->ssl, t);
        t->header_start_ms = lw_mono_ms();
    }
    lw_list_push_back(&srv.conns, &t->api.link);
    srv.nconns++;
    t->last_activity_ms = lw_mono_ms();
    uv_timer_start(&t->timer, on_tick, 1000, 1000);
    t->reading = uv_read_start((uv_stream_t *)&t->tcp, on_alloc, on_read) == 0;
}

static void conns_metrics(void *ctx, struct lw_buf *out)
{
    (void)ctx;
    unsigned sse_n = 0;
    lw_list_foreach (it, &srv.conns) {
        struct api_conn *c = lw_container_of(it, struct api_conn, link);
        sse_n += c->sse;
    }
    lw_buf_printf(out,
                  "# HELP lwm2md_http_connections Open HTTP API connections.\n"
                  "# TYPE lwm2md_http_connections gauge\nlwm2md_http_connections %u\n"
                  "# HELP lwm2md_sse_clients Connected event stream clients.\n"
                  "# TYPE lwm2md_sse_clients gauge\nlwm2md_sse_clients %u\n"
                  "# HELP lwm2md_http_connections_refused_total Connections refused at "
                  "api.max_connections.\n# TYPE lwm2md_http_connections_refused_total counter\n"
                  "lwm2md_http_connections_refused_total %llu\n"
                  "# HELP lwm2md_http_tls_handshake_failures_total Failed TLS handshakes.\n"
                  "# TYPE lwm2md_http_tls_handshake_failures_total counter\n"
                  "lwm2md_http_tls_handshake_failures_total %llu\n",
                  srv.nconns, sse_n, (unsigned long long)srv.refused,
                  (unsigned long long)srv.tls_failures);
}

static struct lw_metrics_writer conns_writer = {.write = conns_metrics};

static void apply(const struct lw_config *cfg)
{
    srv.lim = (struct api_limits){
        .max_header_bytes = cfg->api_max_header_size,
        .max_body_bytes = cfg->api_max_body_size,
        .max_requests = cfg->api_max_requests,
        .header_timeout_ms = cfg->api_header_timeout,
        .idle_timeout_ms = cfg->api_idle_timeout,
    };
    api_limits_fill(&srv.lim);
    srv.max_conns = cfg->api_max_connections ? cfg->api_max_connections : 1024;
    api_set.probes_public = cfg->api_probes_public;
    api_set.sse_heartbeat_ms = cfg->api_sse_heartbeat ? cfg->api_sse_heartbeat : 15000;
    api_set.sse_max_backlog = cfg->api_sse_max_backlog ? cfg->api_sse_max_backlog : 4 << 20;
}

static int listen_one(const struct lw_listen *l, uv_tcp_t *h)
{
    struct sockaddr_storage ss;
    int rc = strchr(l->host, ':') ? uv_ip6_addr(l->host, l->port, (struct sockaddr_in6 *)&ss)
                                  : uv_ip4_addr(l->host, l->port, (struct sockaddr_in *)&ss);
    if (rc)
        return rc;
    uv_tcp_init(srv.loop, h);
    rc = uv_tcp_bind(h, (const struct sockaddr *)&ss, strchr(l->host, ':') ? UV_TCP_IPV6ONLY : 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)h, 511, on_connection);
    return rc;
}

static int tls_setup(const struct lw_config *cfg)
{
    const char *cert = cfg->api_tls_cert ? cfg->api_tls_cert : "";
    const char *key = cfg->api_tls_key ? cfg->api_tls_key : "";
    if (!*cert && !*key)
        return 0;
    if (!*cert || !*key) {
        log_err(API, "api.tls_cert and api.tls_key must be set together");
        return LW_ECONFIG;
    }
    wolfSSL_Init();
    srv.tls = wolfSSL_CTX_new(wolfTLS_server_method()); /* TLS 1.2 and 1.3 (NO_OLD_TLS build) */
    if (!srv.tls)
        return LW_ENOMEM;
    if (wolfSSL_CTX_use_certificate_chain_file(srv.tls, cert) != WOLFSSL_SUCCESS) {
        log_err(API, "api.tls_cert: cannot load a PEM certificate chain from %s", cert);
        return LW_ECONFIG;
    }
    if (wolfSSL_CTX_use_PrivateKey_file(srv.tls, key, WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS ||
        wolfSSL_CTX_check_private_key(srv.tls) != WOLFSSL_SUCCESS) {
        log_err(API, "api.tls_key: cannot load a PEM private key matching the certificate from %s",
                key);
        return LW_ECONFIG;
    }
    wolfSSL_CTX_SetIORecv(srv.tls, tls_recv);
    wolfSSL_CTX_SetIOSend(srv.tls, tls_send);
    log_info(API, "http api uses tls");
    return 0;
}

int lw_api_start(uv_loop_t *loop, const struct lw_config *cfg)
{
    int rc = 0;
    srv.loop = loop;
    srv.stopping = false;
    /* A write to a connection the peer reset must fail with EPIPE, not kill the process. */
    signal(SIGPIPE, SIG_IGN);
    apply(cfg);
    api_set.sse_ring = cfg->api_sse_ring ? cfg->api_sse_ring : 10000;
    if ((rc = tls_setup(cfg)) != 0)
        goto out;
    for (unsigned i = 0; i < cfg->api_listen_n; i++) {
        const struct lw_listen *l = &cfg->api_listen[i];
        rc = listen_one(l, &srv.listeners[srv.nlisteners]);
        srv.nlisteners++; /* initialised: closed on stop even when bind failed */
        if (rc) {
            log_err(API, "cannot listen on %s%s%s:%u: %s", strchr(l->host, ':') ? "[" : "", l->host,
                    strchr(l->host, ':') ? "]" : "", l->port, uv_strerror(rc));
            rc = LW_EIO;
            goto out;
        }
        log_info(API, "http api listening: address=%s port=%u", l->host, l->port);
    }
    if ((rc = api_sse_start()) != 0 || (rc = api_tokens_start(cfg)) != 0 ||
        (rc = api_webhooks_start(cfg)) != 0)
        goto out;
    lw_metrics_register(&conns_writer);
    srv.metrics_registered = true;
    srv.started = true;
out:
    if (rc) {
        srv.started = true;
        lw_api_stop();
    }
    return rc;
}

static void close_idle(struct api_conn *c, void *arg)
{
    (void)arg;
    if (c->sse) {
        c->sse = false;
        op_close(c);
    } else {
        api_conn_shutdown(c); /* answers what is queued, then closes */
    }
}

void lw_api_stop(void)
{
    if (!srv.started)
        return;
    srv.started = false;
    srv.stopping = true;
    srv.stop_deadline_ms = lw_mono_ms() + 5000;
    for (unsigned i = 0; i < srv.nlisteners; i++)
        uv_close((uv_handle_t *)&srv.listeners[i], NULL);
    srv.nlisteners = 0;
    api_conn_each(close_idle, NULL);
    if (srv.metrics_registered)
        lw_metrics_unregister(&conns_writer);
    srv.metrics_registered = false;
    api_webhooks_stop();
    api_tokens_stop();
    api_sse_stop();
    if (srv.tls) {
        wolfSSL_CTX_free(srv.tls); /* connections still open hold their own reference */
        srv.tls = NULL;
    }
}

void lw_api_reload(const struct lw_config *cfg)
{
    apply(cfg);
}
