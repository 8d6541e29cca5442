/* Unit tests for lib/dtls with certificates (ECDHE-ECDSA, mutual authentication): a test PKI is
 * generated at run time with wolfCrypt; the device certificate's CN is its endpoint name. */
#include "harness.h"
#include "../testutil.h"

#include "base/err.h"
#include "base/util.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct h_pki pki, other;
static struct h_der srv_cert, srv_key, dev_cert, dev_key, rogue_cert, rogue_key;
static const char *want_cn;
static unsigned verify_calls;
static bool last_chain_ok;

static int verify(void *arg, const struct lw_dtls_peer_info *info)
{
    (void)arg;
    verify_calls++;
    last_chain_ok = info->chain_ok;
    if (!info->chain_ok || !want_cn)
        return -1;
    return lw_bytes_eq_str(info->cn, want_cn) ? 0 : -1;
}

static void setup(void)
{
    if (pki.ca_cert.len)
        return;
    h_pki_ca(&pki, "lwm2md test CA");
    h_pki_leaf(&pki, "lwm2md.test", &srv_cert, &srv_key);
    h_pki_leaf(&pki, "urn:dev:ecdsa-1", &dev_cert, &dev_key);
    h_pki_ca(&other, "someone else");
    h_pki_leaf(&other, "urn:dev:ecdsa-1", &rogue_cert, &rogue_key);
}

static struct lw_dtls_ctx *mkctx(bool with_verify)
{
    struct lw_dtls_cfg cfg = {0};
    struct lw_dtls_ctx *ctx = NULL;
    cfg.cert = (struct lw_bytes){srv_cert.d, srv_cert.len};
    cfg.key = (struct lw_bytes){srv_key.d, srv_key.len};
    cfg.ca = (struct lw_bytes){pki.ca_cert.d, pki.ca_cert.len};
    if (with_verify)
        cfg.cred.verify_peer = verify;
    ck_assert_int_eq(lw_dtls_ctx_new(&cfg, &ctx), 0);
    return ctx;
}

/* Runs one handshake; returns the client (world keeps ownership). */
static struct h_client *run(struct h_world *w, struct lw_dtls_ctx *ctx, WOLFSSL_CTX *cc)
{
    h_world_init(w, ctx, 3, 2);
    struct h_client *c = h_client_new(w, cc, 7000);
    h_pump(w);
    for (int i = 0; i < 40 && c->sess && lw_dtls_next_timeout(c->sess) != UINT64_MAX; i++) {
        w->now = lw_dtls_next_timeout(c->sess);
        lw_dtls_timeout(c->sess, w->now);
        h_pump(w);
    }
    return c;
}

static void mutual_ok(bool v13, const char *suite)
{
    setup();
    struct lw_dtls_ctx *ctx = mkctx(true);
    WOLFSSL_CTX *cc = h_cctx_cert(v13, suite, &pki.ca_cert, &dev_cert, &dev_key);
    struct h_world w;
    want_cn = "urn:dev:ecdsa-1";
    verify_calls = 0;
    struct h_client *c = run(&w, ctx, cc);
    ck_assert_int_eq(c->failed, 0);
    ck_assert(c->hs_done);
    ck_assert(lw_dtls_sess_established(c->sess));
    ck_assert_int_eq(lw_dtls_sess_version(c->sess), v13 ? 13 : 12);
    ck_assert_str_eq(wolfSSL_get_cipher_name(c->ssl), suite);
    ck_assert_uint_ge(verify_calls, 1);
    ck_assert(last_chain_ok);
    struct lw_bytes id;
    ck_assert_int_eq(lw_dtls_sess_identity(c->sess, &id), LW_DTLS_AUTH_X509);
    ck_assert(lw_bytes_eq_str(id, "urn:dev:ecdsa-1"));
    ck_assert_int_eq(h_client_write(c, "</1/0>"), 6);
    h_pump(&w);
    ck_assert_mem_eq(w.last_pt, "</1/0>", 6);
    ck_assert_int_eq(lw_dtls_write(c->sess, (const uint8_t *)"2.01", 4, w.now), 0);
    h_pump(&w);
    ck_assert_mem_eq(c->rx, "2.01", 4);
    if (!v13) {
        /* certificate sessions hibernate too */
        struct lw_buf b;
        lw_buf_init(&b, 0);
        ck_assert_int_eq(lw_dtls_hibernate(c->sess, &b), 0);
        ck_assert_int_eq(lw_dtls_wake(w.sh, b.data, b.len, w.now, &c->sess), 0);
        lw_buf_deinit(&b);
        ck_assert_int_eq(lw_dtls_sess_identity(c->sess, &id), LW_DTLS_AUTH_X509);
        ck_assert(lw_bytes_eq_str(id, "urn:dev:ecdsa-1"));
        ck_assert_int_eq(h_client_write(c, "upd"), 3);
        h_pump(&w);
        ck_assert_mem_eq(w.last_pt, "upd", 3);
    }
    h_world_deinit(&w);
    wolfSSL_CTX_free(cc);
    lw_dtls_ctx_free(ctx);
}

START_TEST(test_ecdsa12_ccm8)
{
    mutual_ok(false, "ECDHE-ECDSA-AES128-CCM-8");
}
END_TEST

START_TEST(test_ecdsa12_gcm)
{
    mutual_ok(false, "ECDHE-ECDSA-AES128-GCM-SHA256");
}
END_TEST

START_TEST(test_ecdsa13)
{
    mutual_ok(true, "TLS13-AES128-GCM-SHA256");
}
END_TEST

static void refused(bool v13, const struct h_der *cert, const struct h_der *key, const char *cn,
                    bool with_verify)
{
    setup();
    struct lw_dtls_ctx *ctx = mkctx(with_verify);
    WOLFSSL_CTX *cc = h_cctx_cert(v13, v13 ? "TLS13-AES128-GCM-SHA256" : "ECDHE-ECDSA-AES128-CCM-8",
                                  &pki.ca_cert, cert, key);
    struct h_world w;
    want_cn = cn;
    struct h_client *c = run(&w, ctx, cc);
    ck_assert(!c->hs_done);
    ck_assert_int_eq(w.ev[LW_DTLS_EV_ESTABLISHED], 0);
    ck_assert_uint_eq(w.ev[LW_DTLS_EV_FAILED] + w.ev[LW_DTLS_EV_TIMEOUT], c->sess ? 1 : 0);
    struct lw_dtls_stats st;
    lw_dtls_shard_stats(w.sh, &st);
    ck_assert_uint_eq(st.in_handshake, 0);
    h_world_deinit(&w);
    wolfSSL_CTX_free(cc);
    lw_dtls_ctx_free(ctx);
}

START_TEST(test_untrusted_client)
{
    refused(false, &rogue_cert, &rogue_key, "urn:dev:ecdsa-1", true);
    refused(true, &rogue_cert, &rogue_key, "urn:dev:ecdsa-1", true);
    refused(false, &rogue_cert, &rogue_key, NULL, false); /* default rule: chain must verify */
}
END_TEST

START_TEST(test_wrong_endpoint)
{
    refused(false, &dev_cert, &dev_key, "urn:dev:someone-else", true);
    refused(true, &dev_cert, &dev_key, "urn:dev:someone-else", true);
}
END_TEST

START_TEST(test_no_client_cert)
{
    struct h_der none = {.len = 0};
    refused(false, &none, &none, "urn:dev:ecdsa-1", true);
    refused(true, &none, &none, "urn:dev:ecdsa-1", true);
}
END_TEST

START_TEST(test_default_rule_accepts_chain)
{
    setup();
    struct lw_dtls_ctx *ctx = mkctx(false);
    WOLFSSL_CTX *cc =
        h_cctx_cert(false, "ECDHE-ECDSA-AES128-CCM-8", &pki.ca_cert, &dev_cert, &dev_key);
    struct h_world w;
    struct h_client *c = run(&w, ctx, cc);
    ck_assert(c->hs_done);
    struct lw_bytes id;
    ck_assert_int_eq(lw_dtls_sess_identity(c->sess, &id), LW_DTLS_AUTH_X509);
    ck_assert(lw_bytes_eq_str(id, "urn:dev:ecdsa-1"));
    h_world_deinit(&w);
    wolfSSL_CTX_free(cc);
    lw_dtls_ctx_free(ctx);
}
END_TEST

START_TEST(test_bad_server_cred)
{
    setup();
    struct lw_dtls_cfg cfg = {0};
    struct lw_dtls_ctx *ctx;
    cfg.cert = (struct lw_bytes){srv_cert.d, srv_cert.len};
    ck_assert_int_eq(lw_dtls_ctx_new(&cfg, &ctx), LW_ECONFIG); /* key missing */
    cfg.key = (struct lw_bytes){dev_key.d, dev_key.len};
    ck_assert_int_eq(lw_dtls_ctx_new(&cfg, &ctx), LW_ECONFIG); /* key does not match */
    cfg.key = (struct lw_bytes){srv_key.d, srv_key.len};
    cfg.ca = (struct lw_bytes){(const uint8_t *)"junk", 4};
    ck_assert_int_eq(lw_dtls_ctx_new(&cfg, &ctx), LW_ECONFIG);
}
END_TEST

static void load(const char *name, struct h_der *out)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/tests/unit/dtls/data/%s", lw_test_top(), name);
    size_t n = 0;
    uint8_t *d = lw_test_read_file(path, &n);
    ck_assert_msg(d != NULL, "missing %s", path);
    ck_assert_uint_le(n, sizeof(out->d));
    memcpy(out->d, d, n);
    out->len = n;
    free(d);
}

static struct lw_dtls_peer_info seen;
static char seen_names[LW_DTLS_SAN_MAX][64];
static char seen_cn[64];

static int verify_san(void *arg, const struct lw_dtls_peer_info *info)
{
    (void)arg;
    seen = *info; /* views are only valid during the call: copy the strings */
    size_t cl = LW_MIN(info->cn.len, sizeof(seen_cn) - 1);
    memcpy(seen_cn, info->cn.ptr, cl);
    seen_cn[cl] = 0;
    for (size_t i = 0; i < info->n_san; i++) {
        size_t n = LW_MIN(info->san[i].name.len, sizeof(seen_names[i]) - 1);
        memcpy(seen_names[i], info->san[i].name.ptr, n);
        seen_names[i][n] = 0;
    }
    if (!info->chain_ok)
        return -1;
    for (size_t i = 0; i < info->n_san; i++)
        if (info->san[i].type == 6 &&
            lw_bytes_eq_str(info->san[i].name, "urn:imei:490154203237518"))
            return 0;
    return -1;
}

/* A device certificate made with the openssl CLI (PEM, CA given as PEM): the URI SAN carries
 * the endpoint name; verify_peer sees CN and both SANs. */
START_TEST(test_san_pem)
{
    setup();
    struct h_der ca, cert, key;
    load("san_ca.pem", &ca);
    load("san_dev.pem", &cert);
    load("san_dev.key", &key);
    struct lw_dtls_cfg cfg = {0};
    struct lw_dtls_ctx *ctx = NULL;
    cfg.cert = (struct lw_bytes){srv_cert.d, srv_cert.len};
    cfg.key = (struct lw_bytes){srv_key.d, srv_key.len};
    cfg.ca = (struct lw_bytes){ca.d, ca.len};
    cfg.cred.verify_peer = verify_san;
    ck_assert_int_eq(lw_dtls_ctx_new(&cfg, &ctx), 0);
    WOLFSSL_CTX *cc = h_cctx_cert(false, "ECDHE-ECDSA-AES128-CCM-8", &pki.ca_cert, &cert, &key);
    struct h_world w;
    struct h_client *c = run(&w, ctx, cc);
    ck_assert(c->hs_done);
    ck_assert(seen.chain_ok);
    ck_assert_str_eq(seen_cn, "device-42");
    ck_assert_uint_eq(seen.n_san, 2);
    size_t u = seen.san[0].type == 6 ? 0 : 1; /* wolfSSL's list order is its own */
    ck_assert_uint_eq(seen.san[u].type, 6);
    ck_assert_str_eq(seen_names[u], "urn:imei:490154203237518");
    ck_assert_uint_eq(seen.san[1 - u].type, 2);
    ck_assert_str_eq(seen_names[1 - u], "dev42.example");
    struct lw_bytes id;
    ck_assert_int_eq(lw_dtls_sess_identity(c->sess, &id), LW_DTLS_AUTH_X509);
    ck_assert(lw_bytes_eq_str(id, "device-42"));
    h_world_deinit(&w);
    wolfSSL_CTX_free(cc);
    lw_dtls_ctx_free(ctx);
}
END_TEST

Suite *suite_x509(void);
Suite *suite_x509(void)
{
    Suite *s = suite_create("dtls_x509");
    TCase *tc = tcase_create("x509");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_ecdsa12_ccm8);
    tcase_add_test(tc, test_ecdsa12_gcm);
    tcase_add_test(tc, test_ecdsa13);
    tcase_add_test(tc, test_untrusted_client);
    tcase_add_test(tc, test_wrong_endpoint);
    tcase_add_test(tc, test_no_client_cert);
    tcase_add_test(tc, test_default_rule_accepts_chain);
    tcase_add_test(tc, test_bad_server_cred);
    tcase_add_test(tc, test_san_pem);
    suite_add_tcase(s, tc);
    return s;
}
