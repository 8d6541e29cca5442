/* lib/dtls/dtls.c - sans-IO DTLS server over wolfSSL: context, shard, sessions, hibernation.
 *
 * I/O: every WOLFSSL object of a shard has the shard's `struct io` as its read/write context.
 * A shard handles one datagram at a time, so `io` describes the datagram being fed (in/len), the
 * session it belongs to and where records go (to/tolen). The receive callback hands wolfSSL the
 * whole datagram once and then answers WANT_READ; the send callback passes each record straight
 * to the shard's ops->send. No socket is touched.
 */
#include "dtls/dtls.h"

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/hash.h>

#include <assert.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/util.h"

#if !defined(WOLFSSL_DTLS) || !defined(WOLFSSL_DTLS13) || !defined(WOLFSSL_DTLS_CID) || \
    !defined(WOLFSSL_STATIC_PSK) || !defined(WOLFSSL_SESSION_EXPORT) || !defined(HAVE_AESCCM)
#error \
    "lib/dtls needs wolfSSL with DTLS 1.3, CID, static PSK, AES-CCM and session export (make deps)"
#endif
#if !defined(HAVE_RPK) || !defined(WOLFSSL_ALWAYS_VERIFY_CB)
#error "lib/dtls needs wolfSSL with raw public keys (--enable-rpk) and WOLFSSL_ALWAYS_VERIFY_CB"
#endif
#if DTLS_CID_MAX_SIZE < LW_DTLS_CID_MAX
#error "wolfSSL DTLS_CID_MAX_SIZE is smaller than LW_DTLS_CID_MAX"
#endif

#define PT_MAX           16384 /* largest DTLS plaintext record, RFC 6347 §4.1 */
#define SECRET_LEN       32
#define BLOB_MAGIC0      'L'
#define BLOB_MAGIC1      'D'
#define BLOB_VERSION     1
#define EXPORT_MAX       512
#define DEF_CID_LEN      6
#define DEF_MTU          1280
#define DEF_HS_MS        30000
#define DEF_MAX_HS       1024
#define DEF_HELLO_RATE   1000 /* per /24 or /56 and second: carrier NATs put many devices there */
#define MAX_TLS13_SUITES 5
#define SPKI_MAX         160 /* DER SubjectPublicKeyInfo of a P-256/P-384/P-521 key */

static_assert(5 + LW_DTLS_CID_MAX + 1 + LW_DTLS_ADDR_MAX + 1 + LW_DTLS_IDENT_MAX + 2 + EXPORT_MAX <=
                  LW_DTLS_BLOB_MAX,
              "LW_DTLS_BLOB_MAX too small for the blob layout");

enum { ST_HANDSHAKE, ST_ESTABLISHED, ST_CLOSED, ST_FAILED };

struct lw_dtls_ctx {
    WOLFSSL_CTX *wctx;
    /* DTLS 1.2-only twin for lw_dtls_wake: wolfSSL_dtls_import needs an object whose version is
     * already DTLS 1.2, and wolfDTLS_server_method() objects start at 1.3. May equal wctx. */
    WOLFSSL_CTX *wctx12;
    WOLFSSL_CERT_MANAGER *cm; /* our trust store for client certificates (NULL: none) */
    struct lw_dtls_cred_ops cred;
    void *cred_arg;
    uint8_t cid_len; /* 0: CIDs off */
    uint8_t node_id;
    uint16_t mtu;
    uint32_t hs_ms;
    uint32_t max_hs;
    uint32_t hello_rate; /* per prefix, hellos per second; 0: limit off */
    uint32_t hello_burst;
    bool v13;
    bool certs; /* server certificate loaded: client certificates required */
    bool rpk;   /* raw public keys (cfg.rpk) */
    /* TLS 1.3 suites of the configured list in preference order (for the PSK callback). */
    uint16_t suites13[MAX_TLS13_SUITES];
    size_t n13;
};

struct io {
    struct lw_dtls_sess *sess; /* NULL: the scratch object */
    const uint8_t *in;         /* unread datagram */
    size_t len;
    const uint8_t *dgram; /* whole datagram being processed (for ClientHello inspection) */
    size_t dgram_len;
    const struct sockaddr *to;
    socklen_t tolen;
};

#define N_BUCKETS 4096

struct bucket {
    uint32_t tokens; /* thousandths of a hello */
    uint64_t last;   /* ms of the last refill; 0: never used */
};

struct lw_dtls_shard {
    const struct lw_dtls_ctx *ctx;
    struct bucket *buckets; /* N_BUCKETS, NULL when the limit is off */
    uint8_t fp_key[16];
    const struct lw_dtls_shard_ops *ops;
    void *arg;
    WOLFSSL *scratch; /* answers ClientHellos statelessly; NULL until needed */
    struct io io;
    struct lw_dtls_stats st;
    uint8_t id;
    uint8_t secret[SECRET_LEN];
    uint64_t cid_ctr; /* CID tail = counter XOR cid_key: unique until it wraps */
    uint64_t cid_key;
    uint16_t pend_suite13;
    uint8_t pend_id_len;
    uint8_t pend_ident[LW_DTLS_IDENT_MAX];
    uint8_t pt[PT_MAX];
};

union addr {
    struct sockaddr sa;
    uint8_t raw[LW_DTLS_ADDR_MAX];
};

struct lw_dtls_sess {
    struct lw_dtls_shard *sh;
    WOLFSSL *ssl;
    void *user;
    uint64_t hs_deadline;
    uint64_t next_to;
    int raw_err;
    uint16_t suite13; /* TLS 1.3 suite chosen for the PSK (psk13_cb) */
    uint8_t state;
    uint8_t version;
    uint8_t auth;
    uint8_t cid_len;
    uint8_t cid[LW_DTLS_CID_MAX];
    uint8_t id_len;
    socklen_t addr_len;
    union addr addr;
    union addr moving; /* address of the record being processed when it differs */
    socklen_t moving_len;
    uint64_t ch_random; /* fingerprint of the ClientHello random that created the session */
    uint64_t last_tx;   /* when our last handshake flight went out (sent or retransmitted) */
    uint8_t ident[LW_DTLS_IDENT_MAX];
};

/* ---- small helpers ----------------------------------------------------------------------- */

static int fmt_of(struct lw_bytes b)
{
    return (b.len >= 5 && memcmp(b.ptr, "-----", 5) == 0) ? WOLFSSL_FILETYPE_PEM
                                                          : WOLFSSL_FILETYPE_ASN1;
}

static bool addr_eq(const union addr *a, socklen_t alen, const struct sockaddr *b, socklen_t blen)
{
    return alen == blen && memcmp(a->raw, b, (size_t)blen) == 0;
}

static struct lw_dtls_shard *shard_of(WOLFSSL *ssl)
{
    struct io *io = wolfSSL_GetIOReadCtx(ssl);
    return io ? lw_container_of(io, struct lw_dtls_shard, io) : NULL;
}

static void io_set(struct lw_dtls_shard *sh, struct lw_dtls_sess *sess, const uint8_t *in,
                   size_t len)
{
    sh->io.sess = sess;
    sh->io.in = in;
    sh->io.len = len;
    sh->io.dgram = in;
    sh->io.dgram_len = len;
    if (sess) {
        sh->io.to = &sess->addr.sa;
        sh->io.tolen = sess->addr_len;
    }
}

/* ---- wolfSSL I/O callbacks --------------------------------------------------------------- */

static int io_recv(WOLFSSL *ssl, char *buf, int sz, void *c)
{
    struct io *io = c;
    (void)ssl;
    if (!io || io->len == 0)
        return WOLFSSL_CBIO_ERR_WANT_READ;
    if (sz < 0 || io->len > (size_t)sz) {
        /* Larger than wolfSSL's receive buffer: a datagram is never split, drop it. */
        io->len = 0;
        return WOLFSSL_CBIO_ERR_WANT_READ;
    }
    size_t n = io->len;
    memcpy(buf, io->in, n);
    io->len = 0;
    return (int)n;
}

static int io_send(WOLFSSL *ssl, char *buf, int sz, void *c)
{
    struct io *io = c;
    (void)ssl;
    if (!io || sz < 0)
        return WOLFSSL_CBIO_ERR_GENERAL;
    struct lw_dtls_shard *sh = lw_container_of(io, struct lw_dtls_shard, io);
    if (io->to && sh->ops && sh->ops->send)
        sh->ops->send(sh->arg, io->sess, io->to, io->tolen, (const uint8_t *)buf, (size_t)sz);
    return sz;
}

/* ---- credentials ------------------------------------------------------------------------- */

static unsigned int psk_common(WOLFSSL *ssl, const char *identity, unsigned char *key,
                               unsigned int max)
{
    struct lw_dtls_shard *sh = shard_of(ssl);
    if (!sh || !identity || !sh->ctx->cred.psk_lookup)
        return 0;
    size_t idl = strnlen(identity, LW_DTLS_IDENT_MAX + 1);
    if (idl == 0 || idl > LW_DTLS_IDENT_MAX)
        return 0;
    size_t n =
        sh->ctx->cred.psk_lookup(sh->ctx->cred_arg, (const uint8_t *)identity, idl, key, max);
    if (n == 0 || n > max)
        return 0;
    /* DTLS 1.3 may check the PSK binder while the hello is still handled statelessly (no
     * session yet): keep the identity in the shard until the session exists. */
    struct lw_dtls_sess *s = sh->io.sess;
    uint8_t *dst = s ? s->ident : sh->pend_ident;
    memcpy(dst, identity, idl);
    if (s) {
        s->id_len = (uint8_t)idl;
        s->auth = LW_DTLS_AUTH_PSK;
    } else {
        sh->pend_id_len = (uint8_t)idl;
    }
    return (unsigned int)n;
}

static unsigned int psk_cb(WOLFSSL *ssl, const char *identity, unsigned char *key, unsigned int max)
{
    return psk_common(ssl, identity, key, max);
}

static const struct {
    uint16_t code;
    const char *name;
} tls13_names[] = {
    {0x1301, "TLS13-AES128-GCM-SHA256"},        {0x1302, "TLS13-AES256-GCM-SHA384"},
    {0x1303, "TLS13-CHACHA20-POLY1305-SHA256"}, {0x1304, "TLS13-AES128-CCM-SHA256"},
    {0x1305, "TLS13-AES128-CCM-8-SHA256"},
};

static const char *tls13_name(uint16_t code)
{
    for (size_t i = 0; i < LW_ARRAY_SIZE(tls13_names); i++)
        if (tls13_names[i].code == code)
            return tls13_names[i].name;
    return NULL;
}

/* Does the ClientHello in this (unfragmented) datagram offer `suite`? RFC 9147 §5.3 layout:
 * record header(13) | msg_type(1) length(3) seq(2) frag_off(3) frag_len(3) | version(2)
 * random(32) session_id<0..32> cookie<0..255> cipher_suites<2..2^16-2> ... */
static bool ch_offers(const uint8_t *d, size_t len, uint16_t suite)
{
    size_t off = 13 + 12;
    if (len < off + 35 || d[0] != 22 || d[13] != 1 || d[19] || d[20] || d[21])
        return false; /* not a record starting with the first fragment of a ClientHello */
    off += 34;
    off += 1 + (size_t)d[off]; /* session_id */
    if (off >= len)
        return false;
    off += 1 + (size_t)d[off]; /* cookie */
    if (off + 2 > len)
        return false;
    size_t n = lw_load_be16(d + off);
    off += 2;
    if (n > len - off)
        return false;
    for (size_t i = 0; i + 1 < n; i += 2)
        if (lw_load_be16(d + off + i) == suite)
            return true;
    return false;
}

/* TLS 1.3 PSK: wolfSSL tries the PSK against each common suite in turn and accepts the one whose
 * name this callback returns, so answer with the first configured TLS 1.3 suite the client
 * offered (without this only TLS_AES_128_GCM_SHA256 could carry a PSK). */
static unsigned int psk13_cb(WOLFSSL *ssl, const char *identity, unsigned char *key,
                             unsigned int max, const char **suite)
{
    struct lw_dtls_shard *sh = shard_of(ssl);
    uint16_t pick = 0;
    if (sh) {
        for (size_t i = 0; i < sh->ctx->n13 && !pick; i++) {
            if (ch_offers(sh->io.dgram, sh->io.dgram_len, sh->ctx->suites13[i]))
                pick = sh->ctx->suites13[i];
        }
        /* A later fragment of a fragmented hello: reuse the pick made on its first part. */
        uint16_t *memo = sh->io.sess ? &sh->io.sess->suite13 : &sh->pend_suite13;
        if (pick)
            *memo = pick;
        else
            pick = *memo;
    }
    *suite = tls13_name(pick ? pick : 0x1301);
    return psk_common(ssl, identity, key, max);
}

/* Raw public key of a client (RFC 7250 §3, client_certificate_type RawPublicKey negotiated):
 * wolfSSL has parsed the SubjectPublicKeyInfo and will check the CertificateVerify signature
 * with it, but a raw key proves nothing by itself, so only verify_peer (the credential store)
 * may accept it. The identity is the key's SHA-256. */
static int verify_rpk(struct lw_dtls_sess *s, struct lw_dtls_peer_info *info)
{
    const struct lw_dtls_ctx *ctx = s->sh->ctx;
    if (info->der.len > UINT32_MAX ||
        wc_Sha256Hash(info->der.ptr, (word32)info->der.len, info->spki_sha256) != 0)
        return 0;
    info->rpk = true;
    if (!ctx->cred.verify_peer || ctx->cred.verify_peer(ctx->cred_arg, info) != 0)
        return 0;
    memcpy(s->ident, info->spki_sha256, sizeof(info->spki_sha256));
    s->id_len = (uint8_t)sizeof(info->spki_sha256);
    s->auth = LW_DTLS_AUTH_RPK;
    return 1;
}

/* Client certificate check. The wolfSSL context holds no CA, so every client certificate fails
 * wolfSSL's own chain check and reaches this callback (wolfSSL calls it only on failure unless
 * built with WOLFSSL_ALWAYS_VERIFY_CB); we verify the leaf against our CertManager, read its CN,
 * ask the credential store and record the identity.
 * Certificates above the leaf (error_depth > 0) are refused: overriding wolfSSL's verdict on a
 * CA certificate would make it add that certificate to the context's shared trust store. So a
 * client must send its leaf alone, signed directly by a configured trust anchor. */
static int verify_cb(int preverify, WOLFSSL_X509_STORE_CTX *store)
{
    (void)preverify;
    if (!store || store->error_depth != 0 || store->totalCerts < 1 || !store->certs)
        return 0;
    struct io *io = store->userCtx;
    if (!io || !io->sess)
        return 0;
    struct lw_dtls_shard *sh = lw_container_of(io, struct lw_dtls_shard, io);
    struct lw_dtls_sess *s = io->sess;
    const struct lw_dtls_ctx *ctx = sh->ctx;
    const uint8_t *der = store->certs[0].buffer;
    size_t der_len = store->certs[0].length;
    struct lw_dtls_peer_info info = {.der = {der, der_len}};
    struct DecodedCert dc;
    int ok = 0;
    int tp = WOLFSSL_CERT_TYPE_UNKNOWN;

    if (!der || der_len == 0)
        return 0;
    if (ctx->rpk && wolfSSL_get_negotiated_client_cert_type(s->ssl, &tp) == WOLFSSL_SUCCESS &&
        tp == WOLFSSL_CERT_TYPE_RPK)
        return verify_rpk(s, &info);
    wc_InitDecodedCert(&dc, der, (word32)der_len, NULL);
    if (ctx->cm) {
        info.chain_ok = wolfSSL_CertManagerVerifyBuffer(ctx->cm, der, (long)der_len,
                                                        WOLFSSL_FILETYPE_ASN1) == WOLFSSL_SUCCESS;
    }
    if (wc_ParseCert(&dc, CERT_TYPE, NO_VERIFY, NULL) != 0)
        goto out;
    if (dc.subjectCN && dc.subjectCNLen > 0 && dc.subjectCNLen <= LW_DTLS_IDENT_MAX)
        info.cn = (struct lw_bytes){(const uint8_t *)dc.subjectCN, (size_t)dc.subjectCNLen};
    struct lw_bytes uri = {NULL, 0}, dns = {NULL, 0};
    for (const DNS_entry *e = dc.altNames; e && info.n_san < LW_DTLS_SAN_MAX; e = e->next) {
        if ((e->type != ASN_DNS_TYPE && e->type != ASN_URI_TYPE) || !e->name || e->len <= 0)
            continue;
        struct lw_bytes v = {(const uint8_t *)e->name, (size_t)e->len};
        info.san[info.n_san++] = (struct lw_dtls_san){(uint8_t)e->type, v};
        if (e->type == ASN_URI_TYPE && !uri.len)
            uri = v;
        if (e->type == ASN_DNS_TYPE && !dns.len)
            dns = v;
    }
    if (ctx->cred.verify_peer)
        ok = ctx->cred.verify_peer(ctx->cred_arg, &info) == 0;
    else
        ok = info.chain_ok;
    if (ok) {
        struct lw_bytes id = info.cn.len ? info.cn : uri.len ? uri : dns;
        if (id.len > LW_DTLS_IDENT_MAX)
            id.len = 0;
        if (id.len)
            memcpy(s->ident, id.ptr, id.len);
        s->id_len = (uint8_t)id.len;
        s->auth = LW_DTLS_AUTH_X509;
    }
out:
    wc_FreeDecodedCert(&dc);
    return ok;
}

/* ---- context ----------------------------------------------------------------------------- */

static int parse_suites13(struct lw_dtls_ctx *c, const char *list)
{
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, ':');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        for (size_t i = 0; i < LW_ARRAY_SIZE(tls13_names); i++) {
            if (strlen(tls13_names[i].name) == n && memcmp(tls13_names[i].name, p, n) == 0 &&
                c->n13 < MAX_TLS13_SUITES)
                c->suites13[c->n13++] = tls13_names[i].code;
        }
        p += n;
        if (*p == ':')
            p++;
    }
    return 0;
}

/* DER SubjectPublicKeyInfo of an ECC private key (PEM "EC PRIVATE KEY" / "PRIVATE KEY", or
 * DER SEC1 / PKCS#8): the server's raw public key. Returns its length, or -1. */
static int spki_of_key(struct lw_bytes key, uint8_t *out, size_t cap)
{
    uint8_t *der = NULL;
    ecc_key k;
    word32 idx = 0;
    int n = -1, len;
    bool k_init = false;

    if (key.len == 0 || key.len > (1u << 20))
        return -1;
    der = malloc(key.len);
    if (!der)
        return -1;
    if (fmt_of(key) == WOLFSSL_FILETYPE_PEM) {
        len = wc_KeyPemToDer(key.ptr, (int)key.len, der, (int)key.len, NULL);
        if (len <= 0)
            goto out;
    } else {
        memcpy(der, key.ptr, key.len);
        len = (int)key.len;
    }
    if (wc_ecc_init(&k) != 0)
        goto out;
    k_init = true;
    if (wc_EccPrivateKeyDecode(der, &idx, &k, (word32)len) != 0)
        goto out;
    n = wc_EccPublicKeyToDer(&k, out, (word32)cap, 1);
    if (n <= 0)
        n = -1;
out:
    if (k_init)
        wc_ecc_free(&k);
    explicit_bzero(der, key.len);
    free(der);
    return n;
}

/* Applies the configuration to one WOLFSSL_CTX (the main one and the DTLS 1.2 twin). */
static int setup_wctx(struct lw_dtls_ctx *c, WOLFSSL_CTX *w, const struct lw_dtls_cfg *cfg,
                      const char *ciphers)
{
    if (wolfSSL_CTX_set_cipher_list(w, ciphers) != WOLFSSL_SUCCESS)
        return LW_ECONFIG;
    wolfSSL_CTX_SetIORecv(w, io_recv);
    wolfSSL_CTX_SetIOSend(w, io_send);
    wolfSSL_CTX_set_psk_server_callback(w, psk_cb);
    wolfSSL_CTX_set_psk_server_tls13_callback(w, psk13_cb);
    if (cfg->psk_hint && wolfSSL_CTX_use_psk_identity_hint(w, cfg->psk_hint) != 1)
        return LW_ECONFIG;
    /* Sessions live in the shard (CID + hibernation), not in wolfSSL's global cache; no tickets. */
    wolfSSL_CTX_set_session_cache_mode(w, WOLFSSL_SESS_CACHE_OFF);
    wolfSSL_CTX_NoTicketTLSv12(w);
    wolfSSL_CTX_no_ticket_TLSv13(w);
    /* (EC)DHE groups: P-256 first (RFC 7252 §9.1.3.2 mandates secp256r1 for CoAP), P-384.
     * Leaving wolfSSL's default would make a DTLS 1.3 server ask constrained clients for a
     * post-quantum hybrid key share in a HelloRetryRequest (a fragmented 2 KB ClientHello). */
    int groups[] = {WOLFSSL_ECC_SECP256R1, WOLFSSL_ECC_SECP384R1};
    if (wolfSSL_CTX_set_groups(w, groups, (int)LW_ARRAY_SIZE(groups)) != WOLFSSL_SUCCESS)
        return LW_ECONFIG;
    if (cfg->rpk) {
        uint8_t spki[SPKI_MAX];
        int n = spki_of_key(cfg->key, spki, sizeof(spki));
        /* RFC 7250 §3: we can only present a raw key; clients may use either form. */
        const char srv_types[] = {WOLFSSL_CERT_TYPE_RPK};
        const char cli_types[] = {WOLFSSL_CERT_TYPE_RPK, WOLFSSL_CERT_TYPE_X509};
        if (n <= 0 || cfg->cert.len)
            return LW_ECONFIG;
        if (wolfSSL_CTX_use_certificate_buffer(w, spki, n, WOLFSSL_FILETYPE_ASN1) !=
                WOLFSSL_SUCCESS ||
            wolfSSL_CTX_set_server_cert_type(w, srv_types, (int)sizeof(srv_types)) !=
                WOLFSSL_SUCCESS ||
            wolfSSL_CTX_set_client_cert_type(w, cli_types, (int)sizeof(cli_types)) !=
                WOLFSSL_SUCCESS)
            return LW_ECONFIG;
        if (wolfSSL_CTX_use_PrivateKey_buffer(w, cfg->key.ptr, (long)cfg->key.len,
                                              fmt_of(cfg->key)) != WOLFSSL_SUCCESS)
            return LW_ECONFIG;
        c->certs = true;
        c->rpk = true;
        wolfSSL_CTX_set_verify(w, WOLFSSL_VERIFY_PEER | WOLFSSL_VERIFY_FAIL_EXCEPT_PSK, verify_cb);
    } else if (cfg->cert.len || cfg->key.len) {
        if (!cfg->cert.len || !cfg->key.len)
            return LW_ECONFIG;
        if (wolfSSL_CTX_use_certificate_chain_buffer_format(w, cfg->cert.ptr, (long)cfg->cert.len,
                                                            fmt_of(cfg->cert)) != WOLFSSL_SUCCESS)
            return LW_ECONFIG;
        if (wolfSSL_CTX_use_PrivateKey_buffer(w, cfg->key.ptr, (long)cfg->key.len,
                                              fmt_of(cfg->key)) != WOLFSSL_SUCCESS)
            return LW_ECONFIG;
        if (wolfSSL_CTX_check_private_key(w) != WOLFSSL_SUCCESS)
            return LW_ECONFIG;
        c->certs = true;
        /* Certificate suites authenticate both sides: a client certificate is mandatory, except
         * on PSK suites (FAIL_IF_NO_PEER_CERT would refuse every PSK client once a server
         * certificate is configured). */
        wolfSSL_CTX_set_verify(w, WOLFSSL_VERIFY_PEER | WOLFSSL_VERIFY_FAIL_EXCEPT_PSK, verify_cb);
    }
    return 0;
}

int lw_dtls_ctx_new(const struct lw_dtls_cfg *cfg, struct lw_dtls_ctx **out)
{
    struct lw_dtls_ctx *c = NULL;
    WOLFSSL_METHOD *m;
    int rc = LW_ECONFIG;
    unsigned v = cfg->versions ? cfg->versions : (LW_DTLS_V12 | LW_DTLS_V13);
    const char *ciphers = cfg->ciphers ? cfg->ciphers : LW_DTLS_DEFAULT_CIPHERS;

    *out = NULL;
    if (cfg->cid_len && (cfg->cid_len < 4 || cfg->cid_len > LW_DTLS_CID_MAX))
        return LW_ECONFIG;
    if ((v & ~(unsigned)(LW_DTLS_V12 | LW_DTLS_V13)) != 0)
        return LW_ECONFIG;
    if (wolfSSL_Init() != WOLFSSL_SUCCESS)
        return LW_EDTLS;
    c = calloc(1, sizeof(*c));
    if (!c) {
        rc = LW_ENOMEM;
        goto out;
    }
    c->cred = cfg->cred;
    c->cred_arg = cfg->cred_arg;
    c->cid_len = cfg->no_cid ? 0 : (cfg->cid_len ? cfg->cid_len : DEF_CID_LEN);
    c->node_id = cfg->node_id;
    c->mtu = cfg->mtu ? cfg->mtu : DEF_MTU;
    c->hs_ms = cfg->handshake_ms ? cfg->handshake_ms : DEF_HS_MS;
    c->max_hs = cfg->max_handshakes ? cfg->max_handshakes : DEF_MAX_HS;
    c->v13 = (v & LW_DTLS_V13) != 0;
    if (!cfg->no_hello_limit) {
        c->hello_rate = cfg->hello_rate ? cfg->hello_rate : DEF_HELLO_RATE;
        c->hello_burst = cfg->hello_burst ? cfg->hello_burst : 2 * c->hello_rate;
    }
    if (v == (LW_DTLS_V12 | LW_DTLS_V13))
        m = wolfDTLS_server_method(); /* highest common version, 1.2 or 1.3 */
    else if (v == LW_DTLS_V12)
        m = wolfDTLSv1_2_server_method();
    else
        m = wolfDTLSv1_3_server_method();
    c->wctx = m ? wolfSSL_CTX_new(m) : NULL;
    if (!c->wctx) {
        rc = LW_ENOMEM;
        goto out;
    }
    if (v == (LW_DTLS_V12 | LW_DTLS_V13) &&
        wolfSSL_CTX_SetMinVersion(c->wctx, WOLFSSL_DTLSV1_2) != WOLFSSL_SUCCESS)
        goto out;
    if (setup_wctx(c, c->wctx, cfg, ciphers) != 0)
        goto out;
    if (v == LW_DTLS_V12) {
        c->wctx12 = c->wctx;
    } else if (v & LW_DTLS_V12) {
        m = wolfDTLSv1_2_server_method();
        c->wctx12 = m ? wolfSSL_CTX_new(m) : NULL;
        if (!c->wctx12) {
            rc = LW_ENOMEM;
            goto out;
        }
        if (setup_wctx(c, c->wctx12, cfg, ciphers) != 0)
            goto out;
    }
    parse_suites13(c, ciphers);
    if (cfg->ca.len) {
        c->cm = wolfSSL_CertManagerNew();
        if (!c->cm) {
            rc = LW_ENOMEM;
            goto out;
        }
        if (wolfSSL_CertManagerLoadCABuffer(c->cm, cfg->ca.ptr, (long)cfg->ca.len,
                                            fmt_of(cfg->ca)) != WOLFSSL_SUCCESS)
            goto out;
    }
    *out = c;
    c = NULL;
    rc = 0;
out:
    lw_dtls_ctx_free(c);
    return rc;
}

void lw_dtls_ctx_free(struct lw_dtls_ctx *ctx)
{
    if (!ctx)
        return;
    if (ctx->cm)
        wolfSSL_CertManagerFree(ctx->cm);
    if (ctx->wctx12 && ctx->wctx12 != ctx->wctx)
        wolfSSL_CTX_free(ctx->wctx12);
    if (ctx->wctx)
        wolfSSL_CTX_free(ctx->wctx);
    free(ctx);
    wolfSSL_Cleanup();
}

/* ---- shard ------------------------------------------------------------------------------- */

/* A WOLFSSL object wired to this shard: memory I/O, cookie secrets, CID enabled, MTU. */
static WOLFSSL *new_ssl(struct lw_dtls_shard *sh, WOLFSSL_CTX *wctx)
{
    const struct lw_dtls_ctx *ctx = sh->ctx;
    WOLFSSL *ssl = wolfSSL_new(wctx);
    if (!ssl)
        return NULL;
    wolfSSL_SetIOReadCtx(ssl, &sh->io);
    wolfSSL_SetIOWriteCtx(ssl, &sh->io);
    wolfSSL_SetCertCbCtx(ssl, &sh->io);
    wolfSSL_dtls_set_using_nonblock(ssl, 1);
    if (wolfSSL_dtls_set_mtu(ssl, ctx->mtu) != WOLFSSL_SUCCESS)
        goto fail;
    if (ctx->cid_len && wolfSSL_dtls_cid_use(ssl) != WOLFSSL_SUCCESS)
        goto fail;
    return ssl;
fail:
    wolfSSL_free(ssl);
    return NULL;
}

static int set_secrets(struct lw_dtls_shard *sh, WOLFSSL *ssl)
{
    /* RFC 6347 §4.2.1 HelloVerifyRequest cookie (1.2) and RFC 9147 §5.1 HRR cookie (1.3). */
    if (wolfSSL_DTLS_SetCookieSecret(ssl, sh->secret, SECRET_LEN) != 0)
        return LW_EDTLS;
    if (sh->ctx->v13 && wolfSSL_send_hrr_cookie(ssl, sh->secret, SECRET_LEN) != WOLFSSL_SUCCESS)
        return LW_EDTLS;
    return 0;
}

static int ensure_scratch(struct lw_dtls_shard *sh)
{
    if (sh->scratch)
        return 0;
    WOLFSSL *ssl = new_ssl(sh, sh->ctx->wctx);
    if (!ssl)
        return LW_ENOMEM;
    if (set_secrets(sh, ssl) != 0) {
        wolfSSL_free(ssl);
        return LW_EDTLS;
    }
    sh->scratch = ssl;
    return 0;
}

int lw_dtls_shard_new(const struct lw_dtls_ctx *ctx, uint8_t shard_id,
                      const struct lw_dtls_shard_ops *ops, void *arg, struct lw_dtls_shard **out)
{
    struct lw_dtls_shard *sh = calloc(1, sizeof(*sh));
    int rc;
    *out = NULL;
    if (!sh)
        return LW_ENOMEM;
    sh->ctx = ctx;
    sh->ops = ops;
    sh->arg = arg;
    sh->id = shard_id;
    rc = lw_random(sh->secret, sizeof(sh->secret));
    if (rc == 0)
        rc = lw_random(&sh->cid_key, sizeof(sh->cid_key));
    if (rc == 0)
        rc = lw_random(sh->fp_key, sizeof(sh->fp_key));
    if (rc == 0 && ctx->hello_rate) {
        sh->buckets = calloc(N_BUCKETS, sizeof(*sh->buckets));
        if (!sh->buckets)
            rc = LW_ENOMEM;
    }
    if (rc == 0)
        rc = ensure_scratch(sh);
    if (rc != 0) {
        lw_dtls_shard_free(sh);
        return rc;
    }
    *out = sh;
    return 0;
}

void lw_dtls_shard_free(struct lw_dtls_shard *sh)
{
    if (!sh)
        return;
    if (sh->scratch)
        wolfSSL_free(sh->scratch);
    free(sh->buckets);
    lw_secure_zero(sh->secret, sizeof(sh->secret));
    free(sh);
}

int lw_dtls_shard_rotate_cookie(struct lw_dtls_shard *sh)
{
    int rc = lw_random(sh->secret, sizeof(sh->secret));
    if (rc == 0 && sh->scratch)
        rc = set_secrets(sh, sh->scratch);
    return rc;
}

void lw_dtls_shard_stats(const struct lw_dtls_shard *sh, struct lw_dtls_stats *out)
{
    *out = sh->st;
}

uint32_t lw_dtls_shard_room(const struct lw_dtls_shard *sh)
{
    return sh->st.in_handshake < sh->ctx->max_hs ? sh->ctx->max_hs - sh->st.in_handshake : 0;
}

/* ---- sessions ---------------------------------------------------------------------------- */

static void make_cid(struct lw_dtls_shard *sh, uint8_t *cid, size_t len)
{
    uint64_t v = (sh->cid_ctr++) ^ sh->cid_key;
    cid[0] = sh->id;
    cid[1] = sh->ctx->node_id;
    for (size_t i = len; i > 2; i--) {
        cid[i - 1] = (uint8_t)v;
        v >>= 8;
    }
}

static void emit(struct lw_dtls_sess *s, enum lw_dtls_event ev, int detail)
{
    struct lw_dtls_shard *sh = s->sh;
    if (sh->ops && sh->ops->event)
        sh->ops->event(sh->arg, s, ev, detail);
}

static void leave_handshake(struct lw_dtls_sess *s, uint8_t state)
{
    if (s->state == ST_HANDSHAKE && s->sh->st.in_handshake)
        s->sh->st.in_handshake--;
    s->state = state;
    s->next_to = UINT64_MAX;
}

static int fail(struct lw_dtls_sess *s, int err, enum lw_dtls_event ev)
{
    if (s->state == ST_HANDSHAKE)
        s->sh->st.handshakes_failed++;
    s->raw_err = err;
    leave_handshake(s, ST_FAILED);
    emit(s, ev, err);
    return ev == LW_DTLS_EV_TIMEOUT ? LW_ETIMEDOUT : LW_EDTLS;
}

static void arm_timer(struct lw_dtls_sess *s, uint64_t now)
{
    if (s->state != ST_HANDSHAKE) {
        s->next_to = UINT64_MAX;
        return;
    }
    int sec = wolfSSL_dtls_get_current_timeout(s->ssl);
    uint64_t ms = (uint64_t)(sec > 0 ? sec : 1) * 1000;
    if (wolfSSL_dtls13_use_quick_timeout(s->ssl))
        ms /= 4;
    s->next_to = LW_MIN(now + ms, s->hs_deadline);
}

static struct lw_dtls_sess *sess_alloc(struct lw_dtls_shard *sh, const struct sockaddr *from,
                                       socklen_t fromlen)
{
    struct lw_dtls_sess *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->sh = sh;
    s->addr_len = fromlen;
    memcpy(s->addr.raw, from, (size_t)fromlen);
    s->next_to = UINT64_MAX;
    sh->st.live++;
    return s;
}

void lw_dtls_sess_free(struct lw_dtls_sess *s)
{
    if (!s)
        return;
    if (s->state == ST_HANDSHAKE && s->sh->st.in_handshake)
        s->sh->st.in_handshake--;
    if (s->sh->io.sess == s)
        s->sh->io.sess = NULL;
    if (s->ssl)
        wolfSSL_free(s->ssl);
    s->sh->st.live--;
    lw_secure_zero(s, sizeof(*s));
    free(s);
}

/* Reads every record of the current datagram; delivers plaintext, handles close/alerts. */
static int read_records(struct lw_dtls_sess *s)
{
    struct lw_dtls_shard *sh = s->sh;
    for (;;) {
        int n = wolfSSL_read(s->ssl, sh->pt, (int)sizeof(sh->pt));
        if (n > 0) {
            if (s->moving_len) {
                /* The record authenticated (wolfSSL adopted the pending peer only then): RFC
                 * 9146 §6 lets the address follow the CID. */
                union addr cur;
                unsigned int cl = sizeof(cur);
                if (wolfSSL_dtls_get_peer(s->ssl, &cur, &cl) == WOLFSSL_SUCCESS &&
                    addr_eq(&s->moving, s->moving_len, &cur.sa, (socklen_t)cl)) {
                    s->addr = s->moving;
                    s->addr_len = s->moving_len;
                    sh->io.to = &s->addr.sa;
                    sh->io.tolen = s->addr_len;
                    s->moving_len = 0;
                    emit(s, LW_DTLS_EV_PEER_MOVED, 0);
                }
            }
            if (s->moving_len)
                continue; /* decrypted but not adopted (e.g. an old record): drop it */
            if (sh->ops && sh->ops->deliver)
                sh->ops->deliver(sh->arg, s, sh->pt, (size_t)n);
            if (s->state != ST_ESTABLISHED)
                return 0;
            continue;
        }
        int err = wolfSSL_get_error(s->ssl, n);
        if (err == WOLFSSL_ERROR_WANT_READ || err == WOLFSSL_ERROR_WANT_WRITE)
            return 0;
        if (err == WOLFSSL_ERROR_ZERO_RETURN) {
            /* close_notify: answer with ours and stop (RFC 5246 §7.2.1). */
            wolfSSL_shutdown(s->ssl);
            s->state = ST_CLOSED;
            emit(s, LW_DTLS_EV_CLOSED, 0);
            return 0;
        }
        return fail(s, err, LW_DTLS_EV_FAILED);
    }
}

static int drive(struct lw_dtls_sess *s, uint64_t now)
{
    if (s->state == ST_HANDSHAKE) {
        int r = wolfSSL_accept(s->ssl);
        if (r != WOLFSSL_SUCCESS) {
            int err = wolfSSL_get_error(s->ssl, r);
            if (err == WOLFSSL_ERROR_WANT_READ || err == WOLFSSL_ERROR_WANT_WRITE) {
                arm_timer(s, now);
                return 0;
            }
            return fail(s, err, LW_DTLS_EV_FAILED);
        }
        s->version = wolfSSL_version(s->ssl) == DTLS1_3_VERSION ? 13 : 12;
        /* Defence in depth: every suite we allow authenticates the client (PSK or certificate
         * through verify_cb); never hand out a session whose peer we could not name. */
        if (s->auth == LW_DTLS_AUTH_NONE)
            return fail(s, 0, LW_DTLS_EV_FAILED);
        s->sh->st.handshakes_done++;
        leave_handshake(s, ST_ESTABLISHED);
        emit(s, LW_DTLS_EV_ESTABLISHED, 0);
        if (s->state != ST_ESTABLISHED)
            return 0;
    }
    if (s->state == ST_ESTABLISHED)
        return read_records(s);
    return 0;
}

static bool looks_like_client_hello(const uint8_t *d, size_t len)
{
    /* DTLS record header(13) with type handshake(22), then msg_type client_hello(1). */
    return len >= 13 + 12 && d[0] == 22 && d[1] == 0xFE && d[13] == 1;
}

/* An epoch-0 ClientHello whose first fragment carries the random: a new handshake (RFC 6347
 * §4.2.8), as opposed to handshake records of the current association. */
static bool initial_client_hello(const uint8_t *d, size_t len)
{
    return looks_like_client_hello(d, len) && d[3] == 0 && d[4] == 0 && len >= 13 + 12 + 34 &&
           d[19] == 0 && d[20] == 0 && d[21] == 0;
}

/* Keyed fingerprint of the ClientHello random (record 13 + handshake header 12 + version 2). */
static uint64_t ch_fingerprint(const struct lw_dtls_shard *sh, const uint8_t *d, size_t len)
{
    if (!initial_client_hello(d, len))
        return 0;
    return lw_siphash(sh->fp_key, d + 27, 32);
}

/* Token bucket per source prefix (IPv4 /24, IPv6 /56) in a fixed table: bounds the stateless
 * work (cookie MACs, HelloVerifyRequests) any one network can cause, without per-peer memory.
 * Colliding prefixes share a bucket. Returns true when the hello may proceed. */
static bool hello_allowed(struct lw_dtls_shard *sh, const struct sockaddr *from, socklen_t len,
                          uint64_t now)
{
    const struct lw_dtls_ctx *ctx = sh->ctx;
    uint8_t key[9] = {0};
    if (!sh->buckets)
        return true;
    if (from->sa_family == AF_INET && (size_t)len >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)from;
        key[0] = 4;
        memcpy(key + 1, &a->sin_addr, 3);
    } else if (from->sa_family == AF_INET6 && (size_t)len >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)from;
        static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a->sin6_addr.s6_addr, v4mapped, sizeof(v4mapped)) == 0) {
            /* ::ffff:a.b.c.d on a dual-stack socket: the IPv4 /24, not one shared /56 */
            key[0] = 4;
            memcpy(key + 1, a->sin6_addr.s6_addr + 12, 3);
        } else {
            key[0] = 6;
            memcpy(key + 1, &a->sin6_addr, 7);
        }
    }
    struct bucket *b = &sh->buckets[lw_siphash(sh->fp_key, key, sizeof(key)) % N_BUCKETS];
    /* tokens are kept in thousandths so that sub-token refills are not lost */
    uint64_t cap = (uint64_t)ctx->hello_burst * 1000;
    uint64_t elapsed = now > b->last ? now - b->last : 0;
    uint64_t t = b->last == 0 ? cap : b->tokens + elapsed * ctx->hello_rate;
    b->last = now ? now : 1;
    if (t > cap)
        t = cap;
    if (t < 1000) {
        b->tokens = (uint32_t)t;
        return false;
    }
    b->tokens = (uint32_t)(t - 1000);
    return true;
}

/* True for an unfragmented-start DTLS 1.2-style ClientHello whose legacy cookie field is not
 * empty (RFC 6347 §4.2.1: the client's answer to a HelloVerifyRequest). Pure header parsing:
 * record(13) + handshake header(12) + client_version(2) + random(32), then session_id<0..32>
 * and cookie<0..2^8-1>. The cookie is not verified here. */
static bool hello_has_cookie(const uint8_t *d, size_t len)
{
    if (!looks_like_client_hello(d, len) || d[19] || d[20] || d[21] || len < 13 + 12 + 34 + 1)
        return false;
    size_t off = 13 + 12 + 34;
    size_t sid = d[off];
    off += 1 + sid;
    return sid <= 32 && off < len && d[off] != 0;
}

static int input_new(struct lw_dtls_shard *sh, const struct sockaddr *from, socklen_t fromlen,
                     const uint8_t *data, size_t len, uint64_t now, struct lw_dtls_sess **created)
{
    struct lw_dtls_sess *s;
    int rc;

    if (!looks_like_client_hello(data, len)) {
        sh->st.hello_dropped++;
        return 0;
    }
    if (sh->st.in_handshake >= sh->ctx->max_hs && hello_has_cookie(data, len)) {
        /* No budget for the session this hello would create: refuse before any wolfSSL work
         * (verifying the cookie and then throwing the scratch object away costs a wolfSSL_new).
         * The caller may keep the datagram and feed it again once lw_dtls_shard_room() > 0. */
        sh->st.budget_refused++;
        return LW_ELIMIT;
    }
    if (!hello_allowed(sh, from, fromlen, now)) {
        sh->st.hello_ratelimited++;
        return 0;
    }
    rc = ensure_scratch(sh);
    if (rc != 0)
        return rc;
    sh->pend_id_len = 0;
    sh->pend_suite13 = 0;
    io_set(sh, NULL, data, len);
    sh->io.to = from;
    sh->io.tolen = fromlen;
    /* The cookie MAC covers the peer address (wolfSSL CreateDtls12Cookie). */
    if (wolfSSL_dtls_set_peer(sh->scratch, (void *)from, (unsigned int)fromlen) != WOLFSSL_SUCCESS)
        return LW_ENOMEM;
    int r = wolfDTLS_accept_stateless(sh->scratch);
    if (r == WOLFSSL_FAILURE) {
        sh->st.hello_stateless++;
        return 0;
    }
    if (r != WOLFSSL_SUCCESS) {
        /* Garbage that got far enough to break the object: start over with a fresh one. */
        wolfSSL_free(sh->scratch);
        sh->scratch = NULL;
        sh->st.hello_dropped++;
        return 0;
    }
    if (sh->st.in_handshake >= sh->ctx->max_hs) {
        /* Valid cookie but no budget: the client retransmits later. The scratch object holds
         * this client's handshake state now, so replace it. */
        wolfSSL_free(sh->scratch);
        sh->scratch = NULL;
        sh->st.budget_refused++;
        return LW_ELIMIT;
    }
    s = sess_alloc(sh, from, fromlen);
    if (!s)
        return LW_ENOMEM;
    s->ssl = sh->scratch;
    sh->scratch = NULL;
    s->state = ST_HANDSHAKE;
    s->hs_deadline = now + sh->ctx->hs_ms;
    sh->st.in_handshake++;
    sh->st.sessions_created++;
    s->ch_random = ch_fingerprint(sh, data, len);
    s->last_tx = now;
    if (sh->pend_id_len) {
        memcpy(s->ident, sh->pend_ident, sh->pend_id_len);
        s->id_len = sh->pend_id_len;
        s->auth = LW_DTLS_AUTH_PSK;
        sh->pend_id_len = 0;
    }
    s->suite13 = sh->pend_suite13;
    /* Issue our CID only if the client offered the extension (RFC 9146 §3). */
    if (sh->ctx->cid_len && wolfSSL_dtls_cid_is_enabled(s->ssl)) {
        s->cid_len = sh->ctx->cid_len;
        make_cid(sh, s->cid, s->cid_len);
        for (int i = 0; i < 64 && sh->ops && sh->ops->cid_in_use &&
                        sh->ops->cid_in_use(sh->arg, s->cid, s->cid_len);
             i++)
            make_cid(sh, s->cid, s->cid_len);
        if (wolfSSL_dtls_cid_set(s->ssl, s->cid, s->cid_len) != WOLFSSL_SUCCESS) {
            lw_dtls_sess_free(s);
            return LW_EDTLS;
        }
    }
    *created = s;
    io_set(sh, s, NULL, 0);
    sh->io.dgram = data;
    sh->io.dgram_len = len;
    rc = drive(s, now);
    return rc;
}

int lw_dtls_input(struct lw_dtls_shard *sh, struct lw_dtls_sess *s, const struct sockaddr *from,
                  socklen_t fromlen, const uint8_t *data, size_t len, uint64_t now_ms,
                  struct lw_dtls_sess **created)
{
    int rc;
    if (created)
        *created = NULL;
    if (!from || fromlen <= 0 || (size_t)fromlen > LW_DTLS_ADDR_MAX || (!data && len))
        return LW_EINVAL;
    if (!s) {
        struct lw_dtls_sess *dummy;
        return input_new(sh, from, fromlen, data, len, now_ms, created ? created : &dummy);
    }
    if (addr_eq(&s->addr, s->addr_len, from, fromlen) && initial_client_hello(data, len)) {
        /* A hello with another random: the peer starts over (it rebooted, or gave up on this
         * handshake). RFC 6347 §4.2.8: the new handshake goes through the cookie exchange while
         * this association stays. The same random is a retransmission (fed to the session
         * while it handshakes) or a late duplicate (dropped). */
        bool same = ch_fingerprint(sh, data, len) == s->ch_random;
        if (!same) {
            struct lw_dtls_sess *dummy;
            return input_new(sh, from, fromlen, data, len, now_ms, created ? created : &dummy);
        }
        if (s->state != ST_HANDSHAKE)
            return 0;
        /* The client retransmitted the hello that created this session: our answer to it went
         * out less than one retransmission period ago (or our own timer is about to send it
         * again), so it crossed ours in flight or waits in the client's queue. Answering every
         * copy as well doubles the flights of a handshake whenever the round trip exceeds the
         * 1 s initial timer, which is what a saturated server or client sees in a registration
         * storm, and deepens the queues that delayed it. The timer (RFC 6347 §4.2.4.1, doubling)
         * still repairs a lost flight, at most one flight per period. */
        int sec = wolfSSL_dtls_get_current_timeout(s->ssl);
        uint64_t period = (uint64_t)(sec > 0 ? sec : 1) * 1000;
        if (now_ms - s->last_tx < period) {
            sh->st.hello_crossed++;
            return 0;
        }
        s->last_tx = now_ms;
    }
    if (s->state == ST_CLOSED || s->state == ST_FAILED)
        return 0;
    s->moving_len = 0;
    if (!addr_eq(&s->addr, s->addr_len, from, fromlen)) {
        /* Only an authenticated CID record may move an established session (RFC 9146 §6). */
        if (!s->cid_len || s->state != ST_ESTABLISHED)
            return LW_EINVAL;
        if (wolfSSL_dtls_set_peer(s->ssl, &s->addr.sa, (unsigned int)s->addr_len) !=
                WOLFSSL_SUCCESS ||
            wolfSSL_dtls_set_pending_peer(s->ssl, (void *)from, (unsigned int)fromlen) !=
                WOLFSSL_SUCCESS)
            return LW_ENOMEM;
        memcpy(s->moving.raw, from, (size_t)fromlen);
        s->moving_len = fromlen;
    }
    io_set(sh, s, data, len);
    rc = drive(s, now_ms);
    if (s->moving_len) {
        /* Nothing authenticated from the new address: forget it (wolfSSL does the same). */
        s->moving_len = 0;
    }
    sh->io.len = 0;
    return rc;
}

int lw_dtls_write(struct lw_dtls_sess *s, const uint8_t *data, size_t len, uint64_t now_ms)
{
    struct lw_dtls_shard *sh = s->sh;
    struct io saved = sh->io;
    int rc = 0;
    (void)now_ms;
    if (s->state == ST_HANDSHAKE)
        return LW_EAGAIN;
    if (s->state != ST_ESTABLISHED)
        return LW_ECANCELED;
    if (len > PT_MAX)
        return LW_ERANGE;
    io_set(sh, s, NULL, 0);
    int n = wolfSSL_write(s->ssl, data, (int)len);
    if (n != (int)len) {
        s->raw_err = wolfSSL_get_error(s->ssl, n);
        rc = LW_EDTLS;
    }
    sh->io = saved;
    return rc;
}

int lw_dtls_close(struct lw_dtls_sess *s)
{
    struct lw_dtls_shard *sh = s->sh;
    struct io saved = sh->io;
    int rc = 0;
    if (s->state == ST_ESTABLISHED) {
        io_set(sh, s, NULL, 0);
        int r = wolfSSL_shutdown(s->ssl);
        if (r != WOLFSSL_SUCCESS && r != WOLFSSL_SHUTDOWN_NOT_DONE) {
            s->raw_err = wolfSSL_get_error(s->ssl, r);
            rc = LW_EDTLS;
        }
        sh->io = saved;
    }
    leave_handshake(s, ST_CLOSED);
    return rc;
}

uint64_t lw_dtls_next_timeout(const struct lw_dtls_sess *s)
{
    return s->state == ST_HANDSHAKE ? s->next_to : UINT64_MAX;
}

int lw_dtls_timeout(struct lw_dtls_sess *s, uint64_t now_ms)
{
    struct lw_dtls_shard *sh = s->sh;
    if (s->state != ST_HANDSHAKE || now_ms < s->next_to)
        return 0;
    if (now_ms >= s->hs_deadline)
        return fail(s, 0, LW_DTLS_EV_TIMEOUT);
    struct io saved = sh->io;
    io_set(sh, s, NULL, 0);
    int r = wolfSSL_dtls_got_timeout(s->ssl);
    sh->io = saved;
    s->last_tx = now_ms;
    if (r != WOLFSSL_SUCCESS) {
        int err = wolfSSL_get_error(s->ssl, r);
        if (err != WOLFSSL_ERROR_WANT_READ && err != WOLFSSL_ERROR_WANT_WRITE)
            return fail(s, err, LW_DTLS_EV_TIMEOUT);
    }
    arm_timer(s, now_ms);
    return 0;
}

/* ---- accessors --------------------------------------------------------------------------- */

bool lw_dtls_sess_established(const struct lw_dtls_sess *s)
{
    return s->state == ST_ESTABLISHED;
}

struct lw_bytes lw_dtls_sess_cid(const struct lw_dtls_sess *s)
{
    return (struct lw_bytes){s->cid, s->cid_len};
}

const struct sockaddr *lw_dtls_sess_addr(const struct lw_dtls_sess *s, socklen_t *len)
{
    if (len)
        *len = s->addr_len;
    return &s->addr.sa;
}

enum lw_dtls_auth lw_dtls_sess_identity(const struct lw_dtls_sess *s, struct lw_bytes *id)
{
    if (id)
        *id = (struct lw_bytes){s->ident, s->id_len};
    return (enum lw_dtls_auth)s->auth;
}

int lw_dtls_sess_version(const struct lw_dtls_sess *s)
{
    return s->state == ST_HANDSHAKE ? 0 : s->version;
}

int lw_dtls_sess_raw_error(const struct lw_dtls_sess *s)
{
    return s->raw_err;
}

void lw_dtls_sess_set_user(struct lw_dtls_sess *s, void *user)
{
    s->user = user;
}

void *lw_dtls_sess_user(const struct lw_dtls_sess *s)
{
    return s->user;
}

/* ---- hibernation ------------------------------------------------------------------------- */

/* Blob: 'L' 'D' ver(1) auth(1) cid_len(1) cid(n) addr_len(1) addr(n) id_len(1) ident(n)
 *       export_len(2, big-endian) export(n)   (wolfSSL_dtls_export state, ~322 bytes) */

int lw_dtls_hibernate(struct lw_dtls_sess *s, struct lw_buf *out)
{
    uint8_t exp[EXPORT_MAX];
    unsigned int exp_len = sizeof(exp);
    size_t start = out->len;
    int rc;

    if (s->state != ST_ESTABLISHED)
        return LW_EAGAIN;
    if (s->version != 12)
        return LW_ENOTSUP;
    /* wolfSSL exports the peer address too and refuses to export without one. */
    if (wolfSSL_dtls_set_peer(s->ssl, &s->addr.sa, (unsigned int)s->addr_len) != WOLFSSL_SUCCESS)
        return LW_ENOMEM;
    int r = wolfSSL_dtls_export(s->ssl, exp, &exp_len);
    if (r <= 0) {
        s->raw_err = r;
        return LW_EDTLS;
    }
    exp_len = (unsigned int)r;
    lw_buf_put_u8(out, BLOB_MAGIC0);
    lw_buf_put_u8(out, BLOB_MAGIC1);
    lw_buf_put_u8(out, BLOB_VERSION);
    lw_buf_put_u8(out, s->auth);
    lw_buf_put_u8(out, s->cid_len);
    lw_buf_put(out, s->cid, s->cid_len);
    lw_buf_put_u8(out, (uint8_t)s->addr_len);
    lw_buf_put(out, s->addr.raw, (size_t)s->addr_len);
    lw_buf_put_u8(out, s->id_len);
    lw_buf_put(out, s->ident, s->id_len);
    lw_buf_put_be16(out, (uint16_t)exp_len);
    lw_buf_put(out, exp, exp_len);
    lw_secure_zero(exp, sizeof(exp));
    rc = lw_buf_status(out);
    if (rc != 0) {
        out->len = start;
        return rc;
    }
    lw_dtls_sess_free(s);
    return 0;
}

int lw_dtls_wake(struct lw_dtls_shard *sh, const uint8_t *b, size_t len, uint64_t now_ms,
                 struct lw_dtls_sess **out)
{
    struct lw_dtls_sess *s = NULL;
    size_t off = 5;
    int rc = LW_EMALFORMED;
    (void)now_ms;

    *out = NULL;
    if (len < off || b[0] != BLOB_MAGIC0 || b[1] != BLOB_MAGIC1 || b[2] != BLOB_VERSION)
        return LW_EMALFORMED;
    uint8_t auth = b[3], cid_len = b[4];
    if (cid_len > LW_DTLS_CID_MAX || len - off < (size_t)cid_len + 1)
        return LW_EMALFORMED;
    const uint8_t *cid = b + off;
    off += cid_len;
    uint8_t alen = b[off++];
    if (alen == 0 || alen > LW_DTLS_ADDR_MAX || len - off < (size_t)alen + 1)
        return LW_EMALFORMED;
    const uint8_t *addr = b + off;
    off += alen;
    uint8_t id_len = b[off++];
    if (id_len > LW_DTLS_IDENT_MAX || len - off < (size_t)id_len + 2)
        return LW_EMALFORMED;
    const uint8_t *ident = b + off;
    off += id_len;
    size_t exp_len = lw_load_be16(b + off);
    off += 2;
    if (exp_len != len - off || exp_len == 0)
        return LW_EMALFORMED;

    union addr a;
    memcpy(a.raw, addr, alen);
    s = sess_alloc(sh, &a.sa, alen);
    if (!s)
        return LW_ENOMEM;
    if (!sh->ctx->wctx12) {
        rc = LW_ENOTSUP;
        goto out;
    }
    s->ssl = new_ssl(sh, sh->ctx->wctx12);
    if (!s->ssl) {
        rc = LW_ENOMEM;
        goto out;
    }
    s->auth = auth;
    s->cid_len = cid_len;
    memcpy(s->cid, cid, cid_len);
    s->id_len = id_len;
    memcpy(s->ident, ident, id_len);
    /* The CID must be enabled and set before the import, or CID records are dropped. */
    if (cid_len && wolfSSL_dtls_cid_set(s->ssl, s->cid, cid_len) != WOLFSSL_SUCCESS) {
        rc = LW_EDTLS;
        goto out;
    }
    int r = wolfSSL_dtls_import(s->ssl, b + off, (unsigned int)exp_len);
    if (r <= 0) {
        s->raw_err = r;
        rc = LW_EMALFORMED;
        goto out;
    }
    if (wolfSSL_dtls_set_peer(s->ssl, &s->addr.sa, (unsigned int)s->addr_len) != WOLFSSL_SUCCESS) {
        rc = LW_ENOMEM;
        goto out;
    }
    s->state = ST_ESTABLISHED;
    s->version = 12;
    *out = s;
    s = NULL;
    rc = 0;
out:
    lw_dtls_sess_free(s);
    return rc;
}
