/* Unit tests for lib/dtls with raw public keys (RFC 7250): ECDSA P-256 keys generated at run
 * time; an in-process wolfSSL client negotiates client_certificate_type and
 * server_certificate_type RawPublicKey; the identity is the SHA-256 of the client's SPKI. */
#include "harness.h"
#include "../testutil.h"

#include "base/err.h"
#include "base/util.h"

#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/random.h>

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct keypair {
    struct h_der key;  /* SEC1 DER private key */
    struct h_der spki; /* DER SubjectPublicKeyInfo */
    uint8_t hash[32];  /* SHA-256 of spki */
};

static struct keypair srv, dev, rogue;
static uint8_t srv_pem[1024];
static size_t srv_pem_len;
static const uint8_t *allowed; /* SPKI hash verify() accepts */
static unsigned verify_calls;
static bool last_rpk;
static uint8_t seen_srv_spki[256]; /* what the client received from the server */
static size_t seen_srv_len;

static void make_keypair(struct keypair *kp)
{
    WC_RNG rng;
    ecc_key k;
    if (wc_InitRng(&rng) != 0 || wc_ecc_init(&k) != 0 || wc_ecc_make_key(&rng, 32, &k) != 0)
        abort();
    int n = wc_EccKeyToDer(&k, kp->key.d, sizeof(kp->key.d));
    int m = wc_EccPublicKeyToDer(&k, kp->spki.d, sizeof(kp->spki.d), 1);
    if (n <= 0 || m <= 0)
        abort();
    kp->key.len = (size_t)n;
    kp->spki.len = (size_t)m;
    if (wc_Sha256Hash(kp->spki.d, (word32)m, kp->hash) != 0)
        abort();
    wc_ecc_free(&k);
    wc_FreeRng(&rng);
}

static void setup(void)
{
    if (srv.key.len)
        return;
    make_keypair(&srv);
    make_keypair(&dev);
    make_keypair(&rogue);
    int n =
        wc_DerToPem(srv.key.d, (word32)srv.key.len, srv_pem, sizeof(srv_pem), ECC_PRIVATEKEY_TYPE);
    ck_assert_int_gt(n, 0);
    srv_pem_len = (size_t)n;
}

static int verify(void *arg, const struct lw_dtls_peer_info *info)
{
    uint8_t h[32];
    (void)arg;
    verify_calls++;
    last_rpk = info->rpk;
    if (!info->rpk || info->chain_ok || info->cn.len || !allowed)
        return -1;
    ck_assert_int_eq(wc_Sha256Hash(info->der.ptr, (word32)info->der.len, h), 0);
    ck_assert_mem_eq(h, info->spki_sha256, 32);
    return memcmp(info->spki_sha256, allowed, 32) == 0 ? 0 : -1;
}

static struct lw_dtls_ctx *mkctx(bool pem, bool with_verify)
{
    struct lw_dtls_cfg cfg = {0};
    struct lw_dtls_ctx *ctx = NULL;
    cfg.rpk = true;
    cfg.key =
        pem ? (struct lw_bytes){srv_pem, srv_pem_len} : (struct lw_bytes){srv.key.d, srv.key.len};
    if (with_verify)
        cfg.cred.verify_peer = verify;
    ck_assert_int_eq(lw_dtls_ctx_new(&cfg, &ctx), 0);
    return ctx;
}

/* The client accepts any server raw key and records it (the test compares it afterwards). */
static int client_verify(int preverify, WOLFSSL_X509_STORE_CTX *store)
{
    (void)preverify;
    if (store && store->totalCerts >= 1 && store->certs &&
        store->certs[0].length <= sizeof(seen_srv_spki)) {
        memcpy(seen_srv_spki, store->certs[0].buffer, store->certs[0].length);
        seen_srv_len = store->certs[0].length;
    }
    return 1;
}

static WOLFSSL_CTX *cctx_rpk(bool v13, const char *suite, const struct keypair *kp)
{
    WOLFSSL_CTX *c = h_cctx_psk(v13, suite, false);
    const char types[] = {WOLFSSL_CERT_TYPE_RPK};
    wolfSSL_CTX_set_verify(c, WOLFSSL_VERIFY_PEER, client_verify);
    if (kp && (wolfSSL_CTX_use_certificate_buffer(c, kp->spki.d, (long)kp->spki.len,
                                                  WOLFSSL_FILETYPE_ASN1) != WOLFSSL_SUCCESS ||
               wolfSSL_CTX_use_PrivateKey_buffer(c, kp->key.d, (long)kp->key.len,
                                                 WOLFSSL_FILETYPE_ASN1) != WOLFSSL_SUCCESS))
        abort();
    if (kp && wolfSSL_CTX_set_client_cert_type(c, types, 1) != WOLFSSL_SUCCESS)
        abort();
    if (wolfSSL_CTX_set_server_cert_type(c, types, 1) != WOLFSSL_SUCCESS)
        abort();
    int groups[] = {WOLFSSL_ECC_SECP256R1};
    wolfSSL_CTX_set_groups(c, groups, 1);
    return c;
}

static struct h_client *run(struct h_world *w, struct lw_dtls_ctx *ctx, WOLFSSL_CTX *cc)
{
    h_world_init(w, ctx, 2, 2);
    struct h_client *c = h_client_new(w, cc, 7100);
    h_pump(w);
    for (int i = 0; i < 40 && c->sess && lw_dtls_next_timeout(c->sess) != UINT64_MAX; i++) {
        w->now = lw_dtls_next_timeout(c->sess);
        lw_dtls_timeout(c->sess, w->now);
        h_pump(w);
    }
    return c;
}

static void rpk_ok(bool v13, const char *suite, bool pem)
{
    setup();
    struct lw_dtls_ctx *ctx = mkctx(pem, true);
    WOLFSSL_CTX *cc = cctx_rpk(v13, suite, &dev);
    struct h_world w;
    allowed = dev.hash;
    verify_calls = 0;
    last_rpk = false;
    seen_srv_len = 0;
    struct h_client *c = run(&w, ctx, cc);
    ck_assert_int_eq(c->failed, 0);
    ck_assert(c->hs_done);
    ck_assert(lw_dtls_sess_established(c->sess));
    ck_assert_int_eq(lw_dtls_sess_version(c->sess), v13 ? 13 : 12);
    ck_assert_str_eq(wolfSSL_get_cipher_name(c->ssl), suite);
    int tp = -1;
    ck_assert_int_eq(wolfSSL_get_negotiated_server_cert_type(c->ssl, &tp), WOLFSSL_SUCCESS);
    ck_assert_int_eq(tp, WOLFSSL_CERT_TYPE_RPK);
    ck_assert_int_eq(wolfSSL_get_negotiated_client_cert_type(c->ssl, &tp), WOLFSSL_SUCCESS);
    ck_assert_int_eq(tp, WOLFSSL_CERT_TYPE_RPK);
    /* the server presented the raw key derived from its private key */
    ck_assert_uint_eq(seen_srv_len, srv.spki.len);
    ck_assert_mem_eq(seen_srv_spki, srv.spki.d, srv.spki.len);
    ck_assert_uint_ge(verify_calls, 1);
    ck_assert(last_rpk);
    struct lw_bytes id;
    ck_assert_int_eq(lw_dtls_sess_identity(c->sess, &id), LW_DTLS_AUTH_RPK);
    ck_assert_uint_eq(id.len, 32);
    ck_assert_mem_eq(id.ptr, dev.hash, 32);
    ck_assert_int_eq(h_client_write(c, "</1/0>"), 6);
    h_pump(&w);
    ck_assert_mem_eq(w.last_pt, "</1/0>", 6);
    ck_assert_int_eq(lw_dtls_write(c->sess, (const uint8_t *)"2.01", 4, w.now), 0);
    h_pump(&w);
    ck_assert_mem_eq(c->rx, "2.01", 4);
    if (!v13) {
        /* raw-key sessions hibernate with their identity */
        struct lw_buf b;
        lw_buf_init(&b, 0);
        ck_assert_int_eq(lw_dtls_hibernate(c->sess, &b), 0);
        ck_assert_int_eq(lw_dtls_wake(w.sh, b.data, b.len, w.now, &c->sess), 0);
        lw_buf_deinit(&b);
        ck_assert_int_eq(lw_dtls_sess_identity(c->sess, &id), LW_DTLS_AUTH_RPK);
        ck_assert_mem_eq(id.ptr, dev.hash, 32);
        ck_assert_int_eq(h_client_write(c, "upd"), 3);
        h_pump(&w);
        ck_assert_mem_eq(w.last_pt, "upd", 3);
    }
    h_world_deinit(&w);
    wolfSSL_CTX_free(cc);
    lw_dtls_ctx_free(ctx);
}

START_TEST(test_rpk12_ccm8)
{
    rpk_ok(false, "ECDHE-ECDSA-AES128-CCM-8", false);
}
END_TEST

START_TEST(test_rpk12_gcm_pem_key)
{
    rpk_ok(false, "ECDHE-ECDSA-AES128-GCM-SHA256", true);
}
END_TEST

START_TEST(test_rpk13)
{
    rpk_ok(true, "TLS13-AES128-GCM-SHA256", false);
}
END_TEST

static void refused(bool v13, const struct keypair *kp, bool with_verify)
{
    setup();
    struct lw_dtls_ctx *ctx = mkctx(false, with_verify);
    WOLFSSL_CTX *cc =
        cctx_rpk(v13, v13 ? "TLS13-AES128-GCM-SHA256" : "ECDHE-ECDSA-AES128-CCM-8", kp);
    struct h_world w;
    allowed = dev.hash;
    struct h_client *c = run(&w, ctx, cc);
    ck_assert(!c->hs_done);
    ck_assert_int_eq(w.ev[LW_DTLS_EV_ESTABLISHED], 0);
    struct lw_dtls_stats st;
    lw_dtls_shard_stats(w.sh, &st);
    ck_assert_uint_eq(st.in_handshake, 0);
    h_world_deinit(&w);
    wolfSSL_CTX_free(cc);
    lw_dtls_ctx_free(ctx);
}

START_TEST(test_wrong_key)
{
    refused(false, &rogue, true);
    refused(true, &rogue, true);
}
END_TEST

START_TEST(test_no_verify_refuses_rpk)
{
    refused(false, &dev, false); /* a raw key has no chain: only verify_peer can accept it */
}
END_TEST

START_TEST(test_no_client_key)
{
    refused(false, NULL, true);
    refused(true, NULL, true);
}
END_TEST

START_TEST(test_bad_config)
{
    setup();
    struct lw_dtls_cfg cfg = {0};
    struct lw_dtls_ctx *ctx;
    uint8_t junk[40];
    memset(junk, 0x30, sizeof(junk));
    cfg.rpk = true;
    ck_assert_int_eq(lw_dtls_ctx_new(&cfg, &ctx), LW_ECONFIG); /* no key */
    cfg.key = (struct lw_bytes){junk, sizeof(junk)};
    ck_assert_int_eq(lw_dtls_ctx_new(&cfg, &ctx), LW_ECONFIG); /* not a key */
    cfg.key = (struct lw_bytes){srv.key.d, srv.key.len};
    cfg.cert = (struct lw_bytes){srv.spki.d, srv.spki.len};
    ck_assert_int_eq(lw_dtls_ctx_new(&cfg, &ctx), LW_ECONFIG); /* rpk and a certificate */
    cfg.cert = (struct lw_bytes){NULL, 0};
    ck_assert_int_eq(lw_dtls_ctx_new(&cfg, &ctx), 0);
    lw_dtls_ctx_free(ctx);
}
END_TEST

Suite *suite_rpk(void);
Suite *suite_rpk(void)
{
    Suite *s = suite_create("dtls_rpk");
    TCase *tc = tcase_create("rpk");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_rpk12_ccm8);
    tcase_add_test(tc, test_rpk12_gcm_pem_key);
    tcase_add_test(tc, test_rpk13);
    tcase_add_test(tc, test_wrong_key);
    tcase_add_test(tc, test_no_verify_refuses_rpk);
    tcase_add_test(tc, test_no_client_key);
    tcase_add_test(tc, test_bad_config);
    suite_add_tcase(s, tc);
    return s;
}
