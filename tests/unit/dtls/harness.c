/* tests/unit/dtls/harness.c - in-memory DTLS world (see harness.h). */
#include "harness.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

static bool q_push(struct h_queue *q, const struct sockaddr_in *from, const uint8_t *d, size_t n)
{
    if (q->n == H_QLEN || n > H_DGRAM)
        return false;
    struct h_dgram *g = &q->q[(q->head + q->n) % H_QLEN];
    if (from)
        g->addr = *from;
    g->len = n;
    memcpy(g->d, d, n);
    q->n++;
    return true;
}

static struct h_dgram *q_front(struct h_queue *q)
{
    return q->n ? &q->q[q->head] : NULL;
}

static void q_pop(struct h_queue *q)
{
    q->head = (q->head + 1) % H_QLEN;
    q->n--;
}

static struct h_client *find_client(struct h_world *w, const struct sockaddr *to, socklen_t len)
{
    if (len != sizeof(struct sockaddr_in))
        return NULL;
    for (size_t i = 0; i < w->n_clients; i++) {
        struct h_client *c = w->clients[i];
        if (c && memcmp(&c->addr, to, sizeof(c->addr)) == 0)
            return c;
    }
    return NULL;
}

static void ops_send(void *arg, struct lw_dtls_sess *sess, const struct sockaddr *to,
                     socklen_t tolen, const uint8_t *data, size_t len)
{
    struct h_world *w = arg;
    w->sends++;
    if (!sess)
        w->stateless++;
    if (w->drop_to_clients)
        return;
    struct h_client *c = find_client(w, to, tolen);
    if (c)
        q_push(&c->in, NULL, data, len);
}

static void ops_deliver(void *arg, struct lw_dtls_sess *sess, const uint8_t *data, size_t len)
{
    struct h_world *w = arg;
    w->pt_count++;
    w->last_pt_len = len < sizeof(w->last_pt) ? len : sizeof(w->last_pt);
    memcpy(w->last_pt, data, w->last_pt_len);
    if (w->echo)
        lw_dtls_write(sess, data, len, w->now);
}

static void ops_event(void *arg, struct lw_dtls_sess *sess, enum lw_dtls_event ev, int detail)
{
    struct h_world *w = arg;
    (void)detail;
    if ((unsigned)ev < 8)
        w->ev[ev]++;
    w->last_ev_sess = sess;
}

static bool ops_cid_in_use(void *arg, const uint8_t *cid, size_t len)
{
    struct h_world *w = arg;
    if (w->cid_asks < 8 && len <= 8)
        memcpy(w->refused[w->cid_asks], cid, len);
    w->cid_asks++;
    if (!w->refuse_cids)
        return false;
    w->refuse_cids--;
    return true;
}

const struct lw_dtls_shard_ops h_ops = {ops_send, ops_deliver, ops_event, ops_cid_in_use};

void h_world_init(struct h_world *w, struct lw_dtls_ctx *ctx, uint8_t shard_id, size_t max_clients)
{
    memset(w, 0, sizeof(*w));
    w->ctx = ctx;
    w->now = 1000000;
    w->clients = calloc(max_clients, sizeof(*w->clients));
    w->n_clients = 0;
    if (lw_dtls_shard_new(ctx, shard_id, &h_ops, w, &w->sh) != 0)
        abort();
}

void h_world_deinit(struct h_world *w)
{
    for (size_t i = 0; i < w->n_clients; i++) {
        if (w->clients[i]) {
            lw_dtls_sess_free(w->clients[i]->sess);
            h_client_free(w->clients[i]);
        }
    }
    free(w->clients);
    lw_dtls_shard_free(w->sh);
}

/* ---- clients ----------------------------------------------------------------------------- */

static int c_recv(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
    struct h_client *c = ctx;
    (void)ssl;
    struct h_dgram *g = q_front(&c->in);
    if (!g)
        return WOLFSSL_CBIO_ERR_WANT_READ;
    size_t n = g->len < (size_t)sz ? g->len : (size_t)sz;
    memcpy(buf, g->d, n);
    q_pop(&c->in);
    return (int)n;
}

static struct h_world *g_world; /* clients' send target (one world at a time) */

static int c_send(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
    struct h_client *c = ctx;
    (void)ssl;
    if (g_world)
        q_push(&g_world->to_server, &c->addr, (const uint8_t *)buf, (size_t)sz);
    return sz;
}

static unsigned int c_psk(WOLFSSL *ssl, const char *hint, char *identity, unsigned int id_max,
                          unsigned char *key, unsigned int key_max)
{
    struct h_client *c = wolfSSL_GetIOReadCtx(ssl);
    (void)hint;
    size_t il = strlen(c->identity), kl = strlen(c->key);
    if (il >= id_max || kl > key_max)
        return 0;
    memcpy(identity, c->identity, il + 1);
    memcpy(key, c->key, kl);
    return (unsigned int)kl;
}

static unsigned int c_psk13(WOLFSSL *ssl, const char *hint, char *identity, unsigned int id_max,
                            unsigned char *key, unsigned int key_max, const char **suite)
{
    struct h_client *c = wolfSSL_GetIOReadCtx(ssl);
    *suite = c->suite13 ? c->suite13 : "TLS13-AES128-CCM-8-SHA256";
    return c_psk(ssl, hint, identity, id_max, key, key_max);
}

WOLFSSL_CTX *h_cctx_psk(bool v13, const char *ciphers, bool cid)
{
    (void)cid;
    WOLFSSL_CTX *c =
        wolfSSL_CTX_new(v13 ? wolfDTLSv1_3_client_method() : wolfDTLSv1_2_client_method());
    if (!c)
        abort();
    if (ciphers && wolfSSL_CTX_set_cipher_list(c, ciphers) != WOLFSSL_SUCCESS)
        abort();
    wolfSSL_CTX_SetIORecv(c, c_recv);
    wolfSSL_CTX_SetIOSend(c, c_send);
    wolfSSL_CTX_set_psk_client_callback(c, c_psk);
    wolfSSL_CTX_set_psk_client_tls13_callback(c, c_psk13);
    wolfSSL_CTX_set_verify(c, WOLFSSL_VERIFY_NONE, NULL);
    return c;
}

struct h_client *h_client_new(struct h_world *w, WOLFSSL_CTX *cctx, uint16_t port)
{
    struct h_client *c = calloc(1, sizeof(*c));
    if (!c)
        abort();
    c->addr.sin_family = AF_INET;
    c->addr.sin_port = htons(port);
    c->addr.sin_addr.s_addr = htonl(0x7f000001 + (port >> 12));
    c->identity = "dev-1";
    c->key = "0123456789abcdef";
    c->ssl = wolfSSL_new(cctx);
    if (!c->ssl)
        abort();
    wolfSSL_SetIOReadCtx(c->ssl, c);
    wolfSSL_SetIOWriteCtx(c->ssl, c);
    wolfSSL_dtls_set_using_nonblock(c->ssl, 1);
    w->clients[w->n_clients++] = c;
    g_world = w;
    return c;
}

void h_client_free(struct h_client *c)
{
    if (!c)
        return;
    wolfSSL_free(c->ssl);
    free(c);
}

int h_client_write(struct h_client *c, const char *s)
{
    return wolfSSL_write(c->ssl, s, (int)strlen(s));
}

void h_client_step(struct h_client *c)
{
    if (c->failed || c->closed)
        return;
    if (!c->hs_done) {
        int r = wolfSSL_connect(c->ssl);
        if (r == WOLFSSL_SUCCESS) {
            c->hs_done = true;
        } else {
            int err = wolfSSL_get_error(c->ssl, r);
            if (err != WOLFSSL_ERROR_WANT_READ && err != WOLFSSL_ERROR_WANT_WRITE)
                c->failed = err ? err : -1;
            return;
        }
    }
    for (;;) {
        int n = wolfSSL_read(c->ssl, c->rx, (int)sizeof(c->rx));
        if (n > 0) {
            c->rx_len = (size_t)n;
            c->rx_count++;
            continue;
        }
        int err = wolfSSL_get_error(c->ssl, n);
        if (err == WOLFSSL_ERROR_ZERO_RETURN)
            c->closed = true;
        else if (err != WOLFSSL_ERROR_WANT_READ && err != WOLFSSL_ERROR_WANT_WRITE)
            c->failed = err;
        return;
    }
}

struct lw_dtls_sess *h_lookup(struct h_world *w, const struct h_dgram *d)
{
    struct lw_bytes cid;
    if (lw_dtls_cid_peek(d->d, d->len, LW_DTLS_CID_MAX, &cid) == 1 || true) {
        for (size_t i = 0; i < w->n_clients; i++) {
            struct h_client *c = w->clients[i];
            if (!c || !c->sess)
                continue;
            struct lw_bytes mine = lw_dtls_sess_cid(c->sess);
            struct lw_bytes got;
            if (mine.len && lw_dtls_cid_peek(d->d, d->len, mine.len, &got) == 1 &&
                lw_bytes_eq(mine, got))
                return c->sess;
        }
    }
    for (size_t i = 0; i < w->n_clients; i++) {
        struct h_client *c = w->clients[i];
        if (!c || !c->sess)
            continue;
        socklen_t al;
        const struct sockaddr *a = lw_dtls_sess_addr(c->sess, &al);
        if (al == sizeof(d->addr) && memcmp(a, &d->addr, sizeof(d->addr)) == 0)
            return c->sess;
    }
    return NULL;
}

static struct h_client *client_by_addr(struct h_world *w, const struct sockaddr_in *a)
{
    return find_client(w, (const struct sockaddr *)a, sizeof(*a));
}

unsigned h_pump(struct h_world *w)
{
    unsigned moved = 0;
    g_world = w;
    for (int round = 0; round < 64; round++) {
        unsigned before = moved;
        while (w->to_server.n) {
            struct h_dgram *g = q_front(&w->to_server);
            struct lw_dtls_sess *s = h_lookup(w, g), *created = NULL;
            w->last_type_to_server = g->d[0];
            lw_dtls_input(w->sh, s, (const struct sockaddr *)&g->addr, sizeof(g->addr), g->d,
                          g->len, w->now, &created);
            if (created) {
                struct h_client *c = client_by_addr(w, &g->addr);
                if (c)
                    c->sess = created;
                else
                    lw_dtls_sess_free(created);
            }
            q_pop(&w->to_server);
            moved++;
        }
        for (size_t i = 0; i < w->n_clients; i++) {
            struct h_client *c = w->clients[i];
            if (c && (c->in.n || !c->hs_done)) {
                moved += (unsigned)c->in.n;
                h_client_step(c);
            }
        }
        if (moved == before && w->to_server.n == 0)
            break;
    }
    return moved;
}

/* ---- PKI --------------------------------------------------------------------------------- */

#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/random.h>

static void make_cert(const char *cn, bool is_ca, ecc_key *subject, ecc_key *issuer,
                      const struct h_der *issuer_cert, WC_RNG *rng, struct h_der *out)
{
    Cert c;
    if (wc_InitCert(&c) != 0)
        abort();
    strncpy(c.subject.commonName, cn, CTC_NAME_SIZE - 1);
    strncpy(c.subject.org, "lwm2md tests", CTC_NAME_SIZE - 1);
    c.isCA = is_ca ? 1 : 0;
    c.sigType = CTC_SHA256wECDSA;
    c.daysValid = 30;
    if (issuer_cert && wc_SetIssuerBuffer(&c, issuer_cert->d, (int)issuer_cert->len) != 0)
        abort();
    int n = wc_MakeCert(&c, out->d, sizeof(out->d), NULL, subject, rng);
    if (n <= 0)
        abort();
    n = wc_SignCert(c.bodySz, c.sigType, out->d, sizeof(out->d), NULL, issuer, rng);
    if (n <= 0)
        abort();
    out->len = (size_t)n;
}

static void key_from_der(const struct h_der *der, ecc_key *k)
{
    word32 idx = 0;
    if (wc_ecc_init(k) != 0 || wc_EccPrivateKeyDecode(der->d, &idx, k, (word32)der->len) != 0)
        abort();
}

void h_pki_ca(struct h_pki *p, const char *cn)
{
    WC_RNG rng;
    ecc_key k;
    if (wc_InitRng(&rng) != 0 || wc_ecc_init(&k) != 0 || wc_ecc_make_key(&rng, 32, &k) != 0)
        abort();
    make_cert(cn, true, &k, &k, NULL, &rng, &p->ca_cert);
    int n = wc_EccKeyToDer(&k, p->ca_key.d, sizeof(p->ca_key.d));
    if (n <= 0)
        abort();
    p->ca_key.len = (size_t)n;
    wc_ecc_free(&k);
    wc_FreeRng(&rng);
}

void h_pki_leaf(const struct h_pki *p, const char *cn, struct h_der *cert, struct h_der *key)
{
    WC_RNG rng;
    ecc_key k, ca;
    if (wc_InitRng(&rng) != 0 || wc_ecc_init(&k) != 0 || wc_ecc_make_key(&rng, 32, &k) != 0)
        abort();
    key_from_der(&p->ca_key, &ca);
    make_cert(cn, false, &k, &ca, &p->ca_cert, &rng, cert);
    int n = wc_EccKeyToDer(&k, key->d, sizeof(key->d));
    if (n <= 0)
        abort();
    key->len = (size_t)n;
    wc_ecc_free(&k);
    wc_ecc_free(&ca);
    wc_FreeRng(&rng);
}

static int der_or_pem(const struct h_der *b)
{
    return b->len > 5 && memcmp(b->d, "-----", 5) == 0 ? WOLFSSL_FILETYPE_PEM
                                                       : WOLFSSL_FILETYPE_ASN1;
}

WOLFSSL_CTX *h_cctx_cert(bool v13, const char *ciphers, const struct h_der *ca,
                         const struct h_der *cert, const struct h_der *key)
{
    WOLFSSL_CTX *c = h_cctx_psk(v13, ciphers, false);
    if (wolfSSL_CTX_load_verify_buffer(c, ca->d, (long)ca->len, der_or_pem(ca)) != WOLFSSL_SUCCESS)
        abort();
    wolfSSL_CTX_set_verify(c, WOLFSSL_VERIFY_PEER, NULL);
    if (cert && cert->len) {
        if (wolfSSL_CTX_use_certificate_buffer(c, cert->d, (long)cert->len, der_or_pem(cert)) !=
                WOLFSSL_SUCCESS ||
            wolfSSL_CTX_use_PrivateKey_buffer(c, key->d, (long)key->len, der_or_pem(key)) !=
                WOLFSSL_SUCCESS)
            abort();
    }
    int groups[] = {WOLFSSL_ECC_SECP256R1};
    wolfSSL_CTX_set_groups(c, groups, 1);
    return c;
}
