/* lib/dtls/client.c - sans-IO DTLS PSK client (see client.h).
 *
 * wolfSSL does the protocol; this file wires it to memory I/O: the receive callback hands
 * wolfSSL the one datagram being fed (then WANT_READ), the send callback forwards records to
 * ops->send. Sessions carry no credentials (ops->psk is asked during the handshake).
 */
#include "dtls/client.h"

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/util.h"

#define PT_MAX     16384 /* largest DTLS plaintext record, RFC 6347 §4.1 */
#define DEF_MTU    1280
#define DEF_HS_MS  30000
#define PSK_ID_CAP 128

enum { CS_HANDSHAKE = 0, CS_ESTABLISHED, CS_CLOSED, CS_FAILED };

struct lw_dtls_client_ctx {
    WOLFSSL_CTX *wctx;
    const struct lw_dtls_client_ops *ops;
    uint16_t mtu;
    bool cid;
    bool v13;
    uint32_t hs_ms;
    /* The datagram being fed (one thread per context). */
    const uint8_t *in;
    size_t in_len;
    uint8_t pt[PT_MAX];
};

struct lw_dtls_client {
    struct lw_dtls_client_ctx *ctx;
    WOLFSSL *ssl;
    void *arg;
    uint64_t next_to;
    uint64_t hs_deadline;
    int raw_err;
    uint8_t state;
};

static int io_recv(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
    struct lw_dtls_client *c = arg;
    struct lw_dtls_client_ctx *ctx = c->ctx;
    (void)ssl;
    if (!ctx->in)
        return WOLFSSL_CBIO_ERR_WANT_READ;
    /* A datagram larger than wolfSSL's buffer is truncated: its records then fail to parse and
     * are dropped, as a real socket would do. */
    size_t n = LW_MIN(ctx->in_len, (size_t)sz);
    memcpy(buf, ctx->in, n);
    ctx->in = NULL;
    ctx->in_len = 0;
    return (int)n;
}

static int io_send(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
    struct lw_dtls_client *c = arg;
    (void)ssl;
    if (sz > 0 && c->ctx->ops->send)
        c->ctx->ops->send(c->arg, (const uint8_t *)buf, (size_t)sz);
    return sz;
}

static unsigned int psk_cb(WOLFSSL *ssl, const char *hint, char *identity, unsigned int id_max,
                           unsigned char *key, unsigned int key_max)
{
    struct lw_dtls_client *c = wolfSSL_GetIOReadCtx(ssl);
    size_t id_len = 0, klen;
    (void)hint;
    if (!c || !c->ctx->ops->psk || id_max < 2)
        return 0;
    /* wolfSSL wants a NUL-terminated identity: keep one byte for it. */
    klen = c->ctx->ops->psk(c->arg, (uint8_t *)identity, LW_MIN((size_t)id_max - 1, PSK_ID_CAP),
                            &id_len, key, key_max);
    if (klen == 0 || klen > key_max || id_len >= id_max || memchr(identity, 0, id_len))
        return 0;
    identity[id_len] = 0;
    return (unsigned int)klen;
}

static unsigned int psk13_cb(WOLFSSL *ssl, const char *hint, char *identity, unsigned int id_max,
                             unsigned char *key, unsigned int key_max, const char **suite)
{
    /* TLS13-AES128-CCM-8-SHA256 is the suite CoAP mandates (RFC 7252 §9.1.3.1 analogue for
     * DTLS 1.3 in LwM2M 1.2 Transport §5.2.9). */
    *suite = "TLS13-AES128-CCM-8-SHA256";
    return psk_cb(ssl, hint, identity, id_max, key, key_max);
}

int lw_dtls_client_ctx_new(const struct lw_dtls_client_cfg *cfg,
                           const struct lw_dtls_client_ops *ops, struct lw_dtls_client_ctx **out)
{
    struct lw_dtls_client_ctx *c = NULL;
    WOLFSSL_METHOD *m;
    int rc = LW_ECONFIG;
    int ver = cfg->version ? cfg->version : 12;
    const char *ciphers = cfg->ciphers;

    *out = NULL;
    if ((ver != 12 && ver != 13) || !ops || !ops->psk)
        return LW_ECONFIG;
    if (!ciphers)
        ciphers = ver == 13 ? "TLS13-AES128-CCM-8-SHA256" : "PSK-AES128-CCM-8";
    if (wolfSSL_Init() != WOLFSSL_SUCCESS)
        return LW_EDTLS;
    c = calloc(1, sizeof(*c));
    if (!c) {
        rc = LW_ENOMEM;
        goto out;
    }
    c->ops = ops;
    c->mtu = cfg->mtu ? cfg->mtu : DEF_MTU;
    c->hs_ms = cfg->handshake_ms ? cfg->handshake_ms : DEF_HS_MS;
    c->cid = !cfg->no_cid;
    c->v13 = ver == 13;
    m = c->v13 ? wolfDTLSv1_3_client_method() : wolfDTLSv1_2_client_method();
    c->wctx = m ? wolfSSL_CTX_new(m) : NULL;
    if (!c->wctx) {
        rc = LW_ENOMEM;
        goto out;
    }
    if (wolfSSL_CTX_set_cipher_list(c->wctx, ciphers) != WOLFSSL_SUCCESS)
        goto out;
    wolfSSL_CTX_SetIORecv(c->wctx, io_recv);
    wolfSSL_CTX_SetIOSend(c->wctx, io_send);
    wolfSSL_CTX_set_psk_client_callback(c->wctx, psk_cb);
    wolfSSL_CTX_set_psk_client_tls13_callback(c->wctx, psk13_cb);
    wolfSSL_CTX_set_verify(c->wctx, WOLFSSL_VERIFY_NONE, NULL);
    *out = c;
    c = NULL;
    rc = 0;
out:
    lw_dtls_client_ctx_free(c);
    return rc;
}

void lw_dtls_client_ctx_free(struct lw_dtls_client_ctx *ctx)
{
    if (!ctx)
        return;
    if (ctx->wctx)
        wolfSSL_CTX_free(ctx->wctx);
    free(ctx);
    wolfSSL_Cleanup();
}

static void emit(struct lw_dtls_client *c, enum lw_dtls_event ev, int detail)
{
    if (c->ctx->ops->event)
        c->ctx->ops->event(c->arg, ev, detail);
}

static int fail(struct lw_dtls_client *c, int err, enum lw_dtls_event ev)
{
    c->raw_err = err;
    c->state = CS_FAILED;
    c->next_to = UINT64_MAX;
    emit(c, ev, err);
    return ev == LW_DTLS_EV_TIMEOUT ? LW_ETIMEDOUT : LW_EDTLS;
}

static void arm_timer(struct lw_dtls_client *c, uint64_t now)
{
    if (c->state != CS_HANDSHAKE) {
        c->next_to = UINT64_MAX;
        return;
    }
    int sec = wolfSSL_dtls_get_current_timeout(c->ssl);
    uint64_t ms = (uint64_t)(sec > 0 ? sec : 1) * 1000;
    if (c->ctx->v13 && wolfSSL_dtls13_use_quick_timeout(c->ssl))
        ms /= 4;
    c->next_to = LW_MIN(now + ms, c->hs_deadline);
}

/* Drives wolfSSL_connect; 0 while in progress or done, LW_EDTLS on failure. */
static int step_handshake(struct lw_dtls_client *c)
{
    int r = wolfSSL_connect(c->ssl);
    if (r == WOLFSSL_SUCCESS) {
        c->state = CS_ESTABLISHED;
        c->next_to = UINT64_MAX;
        emit(c, LW_DTLS_EV_ESTABLISHED, 0);
        return 0;
    }
    int err = wolfSSL_get_error(c->ssl, r);
    if (err == WOLFSSL_ERROR_WANT_READ || err == WOLFSSL_ERROR_WANT_WRITE)
        return 0;
    return fail(c, err ? err : -1, LW_DTLS_EV_FAILED);
}

int lw_dtls_client_new(struct lw_dtls_client_ctx *ctx, void *arg, uint64_t now_ms,
                       struct lw_dtls_client **out)
{
    struct lw_dtls_client *c = calloc(1, sizeof(*c));
    int rc = LW_ENOMEM;

    *out = NULL;
    if (!c)
        goto out;
    c->ctx = ctx;
    c->arg = arg;
    c->next_to = UINT64_MAX;
    c->hs_deadline = now_ms + ctx->hs_ms;
    c->ssl = wolfSSL_new(ctx->wctx);
    if (!c->ssl)
        goto out;
    rc = LW_EDTLS;
    wolfSSL_SetIOReadCtx(c->ssl, c);
    wolfSSL_SetIOWriteCtx(c->ssl, c);
    wolfSSL_dtls_set_using_nonblock(c->ssl, 1);
    if (wolfSSL_dtls_set_mtu(c->ssl, ctx->mtu) != WOLFSSL_SUCCESS)
        goto out;
    /* RFC 9146 §3: an empty CID of our own still lets the server give us one. */
    if (ctx->cid && wolfSSL_dtls_cid_use(c->ssl) != WOLFSSL_SUCCESS)
        goto out;
    ctx->in = NULL;
    if (step_handshake(c) != 0)
        goto out;
    arm_timer(c, now_ms);
    *out = c;
    c = NULL;
    rc = 0;
out:
    lw_dtls_client_free(c);
    return rc;
}

void lw_dtls_client_free(struct lw_dtls_client *c)
{
    if (!c)
        return;
    if (c->ssl)
        wolfSSL_free(c->ssl);
    free(c);
}

/* Reads every record of the current datagram; delivers plaintext, handles close/alerts. */
static int read_records(struct lw_dtls_client *c)
{
    struct lw_dtls_client_ctx *ctx = c->ctx;
    for (;;) {
        int n = wolfSSL_read(c->ssl, ctx->pt, (int)sizeof(ctx->pt));
        if (n > 0) {
            if (ctx->ops->deliver)
                ctx->ops->deliver(c->arg, ctx->pt, (size_t)n);
            if (c->state != CS_ESTABLISHED)
                return 0; /* closed from the callback */
            continue;
        }
        int err = wolfSSL_get_error(c->ssl, n);
        if (err == WOLFSSL_ERROR_WANT_READ || err == WOLFSSL_ERROR_WANT_WRITE)
            return 0;
        if (err == WOLFSSL_ERROR_ZERO_RETURN) {
            c->state = CS_CLOSED;
            emit(c, LW_DTLS_EV_CLOSED, 0);
            return 0;
        }
        return fail(c, err, LW_DTLS_EV_FAILED);
    }
}

int lw_dtls_client_input(struct lw_dtls_client *c, const uint8_t *data, size_t len, uint64_t now_ms)
{
    struct lw_dtls_client_ctx *ctx = c->ctx;
    int rc = 0;
    if (c->state == CS_CLOSED || c->state == CS_FAILED)
        return LW_ECANCELED;
    if (len == 0)
        return 0;
    ctx->in = data;
    ctx->in_len = len;
    if (c->state == CS_HANDSHAKE) {
        rc = step_handshake(c);
        if (rc == 0 && c->state == CS_HANDSHAKE)
            arm_timer(c, now_ms);
    }
    /* Records that followed the last handshake message in this datagram, or a datagram that
     * arrived after the handshake. */
    if (rc == 0 && c->state == CS_ESTABLISHED)
        rc = read_records(c);
    ctx->in = NULL;
    ctx->in_len = 0;
    return rc;
}

int lw_dtls_client_write(struct lw_dtls_client *c, const uint8_t *data, size_t len, uint64_t now_ms)
{
    (void)now_ms;
    if (c->state == CS_HANDSHAKE)
        return LW_EAGAIN;
    if (c->state != CS_ESTABLISHED)
        return LW_ECANCELED;
    if (len > PT_MAX)
        return LW_ERANGE;
    c->ctx->in = NULL;
    int r = wolfSSL_write(c->ssl, data, (int)len);
    if (r == (int)len)
        return 0;
    c->raw_err = wolfSSL_get_error(c->ssl, r);
    return LW_EDTLS;
}

int lw_dtls_client_close(struct lw_dtls_client *c)
{
    if (c->state != CS_ESTABLISHED) {
        c->state = CS_CLOSED;
        return 0;
    }
    c->ctx->in = NULL;
    c->state = CS_CLOSED;
    int r = wolfSSL_shutdown(c->ssl);
    if (r == WOLFSSL_SUCCESS || r == WOLFSSL_SHUTDOWN_NOT_DONE)
        return 0;
    c->raw_err = wolfSSL_get_error(c->ssl, r);
    return LW_EDTLS;
}

uint64_t lw_dtls_client_next_timeout(const struct lw_dtls_client *c)
{
    return c->next_to;
}

int lw_dtls_client_timeout(struct lw_dtls_client *c, uint64_t now_ms)
{
    if (c->state != CS_HANDSHAKE || now_ms < c->next_to)
        return 0;
    if (now_ms >= c->hs_deadline)
        return fail(c, 0, LW_DTLS_EV_TIMEOUT);
    c->ctx->in = NULL;
    /* Retransmits the last flight and doubles the timer (RFC 6347 §4.2.4.1). */
    int r = wolfSSL_dtls_got_timeout(c->ssl);
    if (r != WOLFSSL_SUCCESS) {
        int err = wolfSSL_get_error(c->ssl, r);
        if (err != WOLFSSL_ERROR_WANT_READ && err != WOLFSSL_ERROR_WANT_WRITE)
            return fail(c, err ? err : -1, LW_DTLS_EV_FAILED);
    }
    arm_timer(c, now_ms);
    return 0;
}

bool lw_dtls_client_established(const struct lw_dtls_client *c)
{
    return c->state == CS_ESTABLISHED;
}

bool lw_dtls_client_has_cid(const struct lw_dtls_client *c)
{
    unsigned int sz = 0;
    if (c->state != CS_ESTABLISHED || !wolfSSL_dtls_cid_is_enabled(c->ssl))
        return false;
    return wolfSSL_dtls_cid_get_tx_size(c->ssl, &sz) == WOLFSSL_SUCCESS && sz > 0;
}

int lw_dtls_client_version(const struct lw_dtls_client *c)
{
    if (c->state != CS_ESTABLISHED)
        return 0;
    return wolfSSL_version(c->ssl) == DTLS1_3_VERSION ? 13 : 12;
}

int lw_dtls_client_raw_error(const struct lw_dtls_client *c)
{
    return c->raw_err;
}
