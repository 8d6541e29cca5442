/* Unit tests for lib/dtls with PSK: DTLS 1.2 CCM_8 + CID, DTLS 1.3, wrong key, unknown identity,
 * cookie flood, handshake budget, retransmission and timeout on a fake clock, close_notify,
 * hibernation round trips with address change. wolfSSL clients in-process (harness.c). */
#include "harness.h"

#include "base/err.h"
#include "base/util.h"

#include <arpa/inet.h>
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *server_key = "0123456789abcdef";

static size_t lookup(void *arg, const uint8_t *id, size_t id_len, uint8_t *key, size_t cap)
{
    (void)arg;
    /* Known identities: dev-<anything>. */
    if (id_len < 4 || memcmp(id, "dev-", 4) != 0)
        return 0;
    size_t n = strlen(server_key);
    if (n > cap)
        return 0;
    memcpy(key, server_key, n);
    return n;
}

static struct lw_dtls_ctx *mkctx(unsigned versions, uint32_t max_hs)
{
    struct lw_dtls_cfg cfg = {0};
    struct lw_dtls_ctx *ctx = NULL;
    cfg.versions = versions;
    cfg.max_handshakes = max_hs;
    cfg.no_hello_limit = true; /* the simulated devices share 127.0.0.0/24 */
    cfg.cred.psk_lookup = lookup;
    ck_assert_int_eq(lw_dtls_ctx_new(&cfg, &ctx), 0);
    return ctx;
}

static void handshake_ok(struct h_world *w, struct h_client *c)
{
    h_pump(w);
    if (getenv("DTLS_DEBUG"))
        fprintf(stderr, "hs: failed=%d done=%d sess=%p raw=%d ev=%u/%u/%u\n", c->failed, c->hs_done,
                (void *)c->sess, c->sess ? lw_dtls_sess_raw_error(c->sess) : 0,
                w->ev[LW_DTLS_EV_ESTABLISHED], w->ev[LW_DTLS_EV_FAILED], w->stateless);
    ck_assert_int_eq(c->failed, 0);
    ck_assert(c->hs_done);
    ck_assert_ptr_nonnull(c->sess);
    ck_assert(lw_dtls_sess_established(c->sess));
}

START_TEST(test_psk12_ccm8_cid)
{
    struct lw_dtls_ctx *ctx = mkctx(0, 0);
    WOLFSSL_CTX *cc = h_cctx_psk(false, "PSK-AES128-CCM-8", true);
    struct h_world w;
    h_world_init(&w, ctx, 7, 4);
    struct h_client *c = h_client_new(&w, cc, 5000);
    ck_assert_int_eq(wolfSSL_dtls_cid_use(c->ssl), WOLFSSL_SUCCESS);
    handshake_ok(&w, c);
    ck_assert_int_eq(w.ev[LW_DTLS_EV_ESTABLISHED], 1);
    ck_assert_int_eq(lw_dtls_sess_version(c->sess), 12);
    ck_assert_str_eq(wolfSSL_get_cipher_name(c->ssl), "PSK-AES128-CCM-8");
    struct lw_bytes id;
    ck_assert_int_eq(lw_dtls_sess_identity(c->sess, &id), LW_DTLS_AUTH_PSK);
    ck_assert(lw_bytes_eq_str(id, "dev-1"));
    struct lw_bytes cid = lw_dtls_sess_cid(c->sess);
    ck_assert_uint_eq(cid.len, 6);
    ck_assert_int_eq(lw_dtls_cid_shard(cid), 7);
    ck_assert_uint_eq(cid.ptr[1], 0);

    /* client -> server: a tls12_cid record whose CID the pure parser finds at offset 11 */
    ck_assert_int_eq(h_client_write(c, "hello"), 5);
    ck_assert_uint_eq(w.to_server.n, 1);
    struct h_dgram *g = &w.to_server.q[w.to_server.head];
    ck_assert_uint_eq(g->d[0], 25);
    struct lw_bytes got;
    ck_assert_int_eq(lw_dtls_cid_peek(g->d, g->len, 6, &got), 1);
    ck_assert(lw_bytes_eq(got, cid));
    const unsigned char *wc = wolfSSL_dtls_cid_parse(g->d, (unsigned)g->len, 6);
    ck_assert_ptr_eq(wc, got.ptr);
    h_pump(&w);
    ck_assert_uint_eq(w.pt_count, 1);
    ck_assert_mem_eq(w.last_pt, "hello", 5);
    /* server -> client */
    ck_assert_int_eq(lw_dtls_write(c->sess, (const uint8_t *)"world", 5, w.now), 0);
    h_pump(&w);
    ck_assert_uint_eq(c->rx_count, 1);
    ck_assert_mem_eq(c->rx, "world", 5);
    struct lw_dtls_stats st;
    lw_dtls_shard_stats(w.sh, &st);
    ck_assert_uint_eq(st.sessions_created, 1);
    ck_assert_uint_eq(st.hello_stateless, 1); /* the first hello got a HelloVerifyRequest */
    ck_assert_uint_eq(st.in_handshake, 0);
    ck_assert_uint_eq(st.live, 1);
    h_world_deinit(&w);
    wolfSSL_CTX_free(cc);
    lw_dtls_ctx_free(ctx);
}
END_TEST

/* A CID the shard says is in use (a restored session's) is skipped for the next one. */
START_TEST(test_cid_in_use_skipped)
{
    struct lw_dtls_ctx *ctx = mkctx(0, 0);
    WOLFSSL_CTX *cc = h_cctx_psk(false, "PSK-AES128-CCM-8", true);
    struct h_world w;
    h_world_init(&w, ctx, 2, 4);
    w.refuse_cids = 3;
    struct h_client *c = h_client_new(&w, cc, 5100);
    ck_assert_int_eq(wolfSSL_dtls_cid_use(c->ssl), WOLFSSL_SUCCESS);
    handshake_ok(&w, c);
    ck_assert_uint_eq(w.cid_asks, 4);
    struct lw_bytes cid = lw_dtls_sess_cid(c->sess);
    ck_assert_uint_eq(cid.len, 6);
    ck_assert_int_eq(memcmp(cid.ptr, w.refused[3], 6), 0); /* the one accepted */
    for (int i = 0; i < 3; i++) {
        ck_assert_int_ne(memcmp(cid.ptr, w.refused[i], 6), 0);
        ck_assert_uint_eq(w.refused[i][0], 2); /* still this shard's CIDs */
    }
    /* records with it reach the session */
    ck_assert_int_eq(h_client_write(c, "hi"), 2);
    h_pump(&w);
    ck_assert_uint_eq(w.pt_count, 1);
    h_world_deinit(&w);
    wolfSSL_CTX_free(cc);
    lw_dtls_ctx_free(ctx);
}
END_TEST

START_TEST(test_psk12_cbc_no_cid)
{
    struct lw_dtls_ctx *ctx = mkctx(LW_DTLS_V12, 0);
    WOLFSSL_CTX *cc = h_cctx_psk(false, "PSK-AES128-CBC-SHA256", false);
    struct h_world w;
    h_world_init(&w, ctx, 1, 4);
    struct h_client *c = h_client_new(&w, cc, 5001);
    handshake_ok(&w, c);
    ck_assert_str_eq(wolfSSL_get_cipher_name(c->ssl), "PSK-AES128-CBC-SHA256");
    ck_assert_int_eq(h_client_write(c, "x"), 1);
    ck_assert_uint_eq(w.to_server.q[w.to_server.head].d[0], 23); /* client sent no CID ext */
    h_pump(&w);
    ck_assert_uint_eq(w.pt_count, 1);
    h_world_deinit(&w);
    wolfSSL_CTX_free(cc);
    lw_dtls_ctx_free(ctx);
}
END_TEST

static void psk13_with(const char *suite)
{
    struct lw_dtls_ctx *ctx = mkctx(0, 0);
    WOLFSSL_CTX *cc = h_cctx_psk(true, suite, true);
    struct h_world w;
    h_world_init(&w, ctx, 2, 4);
    struct h_client *c = h_client_new(&w, cc, 5002);
    c->suite13 = suite;
    ck_assert_int_eq(wolfSSL_dtls_cid_use(c->ssl), WOLFSSL_SUCCESS);
    handshake_ok(&w, c);
    ck_assert_int_eq(lw_dtls_sess_version(c->sess), 13);
    ck_assert_str_eq(wolfSSL_get_cipher_name(c->ssl), suite);
    struct lw_bytes id;
    ck_assert_int_eq(lw_dtls_sess_identity(c->sess, &id), LW_DTLS_AUTH_PSK);
    ck_assert(lw_bytes_eq_str(id, "dev-1"));
    ck_assert_int_eq(h_client_write(c, "ping13"), 6);
    /* DTLS 1.3 unified header with the C bit, CID right after the first byte */
    struct h_dgram *g = &w.to_server.q[(w.to_server.head + w.to_server.n - 1) % H_QLEN];
    ck_assert_uint_eq(g->d[0] & 0xF0, 0x30);
    struct lw_bytes got;
    ck_assert_int_eq(lw_dtls_cid_peek(g->d, g->len, 6, &got), 1);
    ck_assert(lw_bytes_eq(got, lw_dtls_sess_cid(c->sess)));
    h_pump(&w);
    ck_assert_uint_eq(w.pt_count, 1);
    ck_assert_mem_eq(w.last_pt, "ping13", 6);
    ck_assert_int_eq(lw_dtls_write(c->sess, (const uint8_t *)"pong", 4, w.now), 0);
    h_pump(&w);
    ck_assert_uint_ge(c->rx_count, 1);
    ck_assert_mem_eq(c->rx, "pong", 4);
    /* NAT rebinding with a DTLS 1.3 CID */
    c->addr.sin_port = htons(45002);
    ck_assert_int_eq(h_client_write(c, "moved13"), 7);
    h_pump(&w);
    ck_assert_mem_eq(w.last_pt, "moved13", 7);
    ck_assert_uint_eq(w.ev[LW_DTLS_EV_PEER_MOVED], 1);
    socklen_t al;
    const struct sockaddr_in *a = (const struct sockaddr_in *)lw_dtls_sess_addr(c->sess, &al);
    ck_assert_uint_eq(ntohs(a->sin_port), 45002);
    unsigned rx0 = c->rx_count;
    ck_assert_int_eq(lw_dtls_write(c->sess, (const uint8_t *)"back", 4, w.now), 0);
    h_pump(&w);
    ck_assert_uint_eq(c->rx_count, rx0 + 1);
    ck_assert_mem_eq(c->rx, "back", 4);
    /* wolfSSL 5.9 cannot export DTLS 1.3: the session stays */
    struct lw_buf b;
    lw_buf_init(&b, 0);
    ck_assert_int_eq(lw_dtls_hibernate(c->sess, &b), LW_ENOTSUP);
    ck_assert(lw_dtls_sess_established(c->sess));
    lw_buf_deinit(&b);
    h_world_deinit(&w);
    wolfSSL_CTX_free(cc);
    lw_dtls_ctx_free(ctx);
}

START_TEST(test_psk13_ccm8)
{
    psk13_with("TLS13-AES128-CCM-8-SHA256");
}
END_TEST

START_TEST(test_psk13_gcm)
{
    psk13_with("TLS13-AES128-GCM-SHA256");
}
END_TEST

static void psk_fails(bool v13, const char *identity, const char *key)
{
    struct lw_dtls_ctx *ctx = mkctx(0, 0);
    WOLFSSL_CTX *cc =
        h_cctx_psk(v13, v13 ? "TLS13-AES128-CCM-8-SHA256" : "PSK-AES128-CCM-8", false);
    struct h_world w;
    h_world_init(&w, ctx, 3, 4);
    struct h_client *c = h_client_new(&w, cc, 5003);
    c->identity = identity;
    c->key = key;
    h_pump(&w);
    /* A wrong key shows as a bad Finished MAC, which DTLS drops silently (RFC 6347 §4.1.2.7):
     * the server then gives up at its handshake deadline. An unknown identity fails at once. */
    ck_assert(!c->hs_done);
    ck_assert_int_eq(w.ev[LW_DTLS_EV_ESTABLISHED], 0);
    if (!c->sess) {
        /* DTLS 1.3: the binder is checked before any session exists */
        ck_assert(v13);
        struct lw_dtls_stats st0;
        lw_dtls_shard_stats(w.sh, &st0);
        ck_assert_uint_eq(st0.live, 0);
        goto done;
    }
    int rounds = 0;
    while (lw_dtls_next_timeout(c->sess) != UINT64_MAX && rounds++ < 100) {
        w.now = lw_dtls_next_timeout(c->sess);
        lw_dtls_timeout(c->sess, w.now);
        h_pump(&w);
    }
    ck_assert(!c->hs_done);
    ck_assert_int_eq(w.ev[LW_DTLS_EV_ESTABLISHED], 0);
    ck_assert_int_eq(w.ev[LW_DTLS_EV_FAILED] + w.ev[LW_DTLS_EV_TIMEOUT], 1);
    struct lw_dtls_stats st;
    lw_dtls_shard_stats(w.sh, &st);
    ck_assert_uint_eq(st.handshakes_failed, 1);
    ck_assert_uint_eq(st.in_handshake, 0);
    ck_assert_int_eq(lw_dtls_write(c->sess, (const uint8_t *)"x", 1, w.now), LW_ECANCELED);
done:
    h_world_deinit(&w);
    wolfSSL_CTX_free(cc);
    lw_dtls_ctx_free(ctx);
}

START_TEST(test_wrong_psk)
{
    psk_fails(false, "dev-1", "fedcba9876543210");
    psk_fails(true, "dev-1", "fedcba9876543210");
}
END_TEST

START_TEST(test_unknown_identity)
{
    psk_fails(false, "intruder", "0123456789abcdef");
    psk_fails(true, "intruder", "0123456789abcdef");
}
END_TEST

/* Spoofed ClientHellos (a real first hello replayed from many addresses) allocate nothing; a
 * real handshake completes afterwards. */
static void flood(bool v13)
{
    struct lw_dtls_ctx *ctx = mkctx(0, 0);
    WOLFSSL_CTX *cc = h_cctx_psk(v13, v13 ? "TLS13-AES128-CCM-8-SHA256" : "PSK-AES128-CCM-8", true);
    struct h_world w;
    h_world_init(&w, ctx, 4, 4);
    struct h_client *c = h_client_new(&w, cc, 5004);
    h_client_step(c); /* first ClientHello */
    ck_assert_uint_eq(w.to_server.n, 1);
    struct h_dgram hello = w.to_server.q[w.to_server.head];
    enum { N = 2000 };
    for (unsigned i = 0; i < N; i++) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)(10000 + i))};
        a.sin_addr.s_addr = htonl(0x0a000000u + i);
        struct lw_dtls_sess *created = (struct lw_dtls_sess *)&a;
        ck_assert_int_eq(lw_dtls_input(w.sh, NULL, (struct sockaddr *)&a, sizeof(a), hello.d,
                                       hello.len, w.now, &created),
                         0);
        ck_assert_ptr_null(created);
        /* garbage and truncated hellos too */
        uint8_t junk[64];
        memset(junk, (int)i, sizeof(junk));
        junk[0] = 22;
        junk[1] = 0xFE;
        junk[13] = 1;
        ck_assert_int_eq(lw_dtls_input(w.sh, NULL, (struct sockaddr *)&a, sizeof(a), junk,
                                       sizeof(junk), w.now, &created),
                         0);
        ck_assert_ptr_null(created);
        ck_assert_int_eq(lw_dtls_input(w.sh, NULL, (struct sockaddr *)&a, sizeof(a), hello.d,
                                       i % hello.len, w.now, &created),
                         0);
        ck_assert_ptr_null(created);
    }
    struct lw_dtls_stats st;
    lw_dtls_shard_stats(w.sh, &st);
    ck_assert_uint_eq(st.sessions_created, 0);
    ck_assert_uint_eq(st.live, 0);
    ck_assert_uint_ge(st.hello_stateless, N);
    ck_assert_uint_ge(w.stateless, N); /* cookie requests went to the spoofed addresses */
    handshake_ok(&w, c);
    lw_dtls_shard_stats(w.sh, &st);
    ck_assert_uint_eq(st.sessions_created, 1);
    h_world_deinit(&w);
    wolfSSL_CTX_free(cc);
    lw_dtls_ctx_free(ctx);
}

START_TEST(test_cookie_flood12)
{
    flood(false);
}
END_TEST

/* Admission under overload: with the budget full, a hello with a cookie is refused before any
 * wolfSSL work, with nothing sent and nothing kept (LW_ELIMIT); a hello without a cookie still
 * gets its stateless HelloVerifyRequest. Fed again, unchanged, once lw_dtls_shard_room() says a
 * slot is free (what server/coaps.c's backlog does), the kept datagram starts the handshake and
 * the client finishes it without any retransmission of its own. */
START_TEST(test_budget_deferred_hello)
{
    struct lw_dtls_ctx *ctx = mkctx(0, 1);
    WOLFSSL_CTX *cc = h_cctx_psk(false, "PSK-AES128-CCM-8", true);
    struct h_world w;
    h_world_init(&w, ctx, 5, 4);
    struct h_client *a = h_client_new(&w, cc, 5007);
    struct h_client *b = h_client_new(&w, cc, 5008);
    struct lw_dtls_sess *cr = NULL;
    struct h_dgram d;
    ck_assert_uint_eq(lw_dtls_shard_room(w.sh), 1);
    /* a: hello -> HVR -> hello with cookie -> session, stopped before its second flight */
    h_client_step(a);
    d = w.to_server.q[w.to_server.head];
    w.to_server.head = (w.to_server.head + 1) % H_QLEN;
    w.to_server.n = 0;
    ck_assert_int_eq(lw_dtls_input(w.sh, NULL, (struct sockaddr *)&d.addr, sizeof(d.addr), d.d,
                                   d.len, w.now, &cr),
                     0);
    ck_assert_ptr_null(cr);
    h_client_step(a);
    d = w.to_server.q[w.to_server.head];
    w.to_server.head = (w.to_server.head + 1) % H_QLEN;
    w.to_server.n = 0;
    ck_assert_int_eq(lw_dtls_input(w.sh, NULL, (struct sockaddr *)&d.addr, sizeof(d.addr), d.d,
                                   d.len, w.now, &cr),
                     0);
    ck_assert_ptr_nonnull(cr);
    a->sess = cr;
    ck_assert_uint_eq(lw_dtls_shard_room(w.sh), 0);
    /* b: its first hello is still answered statelessly while the budget is full */
    h_client_step(b);
    d = w.to_server.q[w.to_server.head];
    w.to_server.head = (w.to_server.head + 1) % H_QLEN;
    w.to_server.n = 0;
    unsigned sends = w.sends;
    ck_assert_int_eq(lw_dtls_input(w.sh, NULL, (struct sockaddr *)&d.addr, sizeof(d.addr), d.d,
                                   d.len, w.now, &cr),
                     0);
    ck_assert_ptr_null(cr);
    ck_assert_uint_eq(w.sends, sends + 1);
    /* b's hello with the cookie: refused, nothing sent, nothing allocated */
    h_client_step(b);
    struct h_dgram kept = w.to_server.q[w.to_server.head];
    w.to_server.head = (w.to_server.head + 1) % H_QLEN;
    w.to_server.n = 0;
    sends = w.sends;
    ck_assert_int_eq(lw_dtls_input(w.sh, NULL, (struct sockaddr *)&kept.addr, sizeof(kept.addr),
                                   kept.d, kept.len, w.now, &cr),
                     LW_ELIMIT);
    ck_assert_ptr_null(cr);
    ck_assert_uint_eq(w.sends, sends);
    struct lw_dtls_stats st;
    lw_dtls_shard_stats(w.sh, &st);
    ck_assert_uint_eq(st.budget_refused, 1);
    ck_assert_uint_eq(st.live, 1);
    ck_assert_uint_eq(st.in_handshake, 1);
    /* a finishes: the slot frees */
    h_pump(&w);
    ck_assert(a->hs_done);
    ck_assert_uint_eq(lw_dtls_shard_room(w.sh), 1);
    /* the kept hello, fed again as it was, starts b's handshake; b never timed out */
    ck_assert_int_eq(lw_dtls_input(w.sh, NULL, (struct sockaddr *)&kept.addr, sizeof(kept.addr),
                                   kept.d, kept.len, w.now, &cr),
                     0);
    ck_assert_ptr_nonnull(cr);
    b->sess = cr;
    h_pump(&w);
    ck_assert_int_eq(b->failed, 0);
    ck_assert(b->hs_done);
    ck_assert(lw_dtls_sess_established(b->sess));
    lw_dtls_shard_stats(w.sh, &st);
    ck_assert_uint_eq(st.budget_refused, 1);
    ck_assert_uint_eq(st.handshakes_done, 2);
    h_world_deinit(&w);
    wolfSSL_CTX_free(cc);
    lw_dtls_ctx_free(ctx);
}
END_TEST

/* A retransmitted hello (same random) for a session still handshaking: ignored while our flight
 * went out less than one retransmission period ago (it crossed ours), answered after that. */
START_TEST(test_crossed_hello)
{
    struct lw_dtls_ctx *ctx = mkctx(0, 0);
    WOLFSSL_CTX *cc = h_cctx_psk(false, "PSK-AES128-CCM-8", false);
    struct h_world w;
    h_world_init(&w, ctx, 5, 4);
    struct h_client *a = h_client_new(&w, cc, 5011);
    struct lw_dtls_sess *cr = NULL;
    struct h_dgram d;
    h_client_step(a);
    d = w.to_server.q[w.to_server.head];
    w.to_server.head = (w.to_server.head + 1) % H_QLEN;
    w.to_server.n = 0;
    lw_dtls_input(w.sh, NULL, (struct sockaddr *)&d.addr, sizeof(d.addr), d.d, d.len, w.now, &cr);
    h_client_step(a);
    struct h_dgram hello = w.to_server.q[w.to_server.head];
    w.to_server.head = (w.to_server.head + 1) % H_QLEN;
    w.to_server.n = 0;
    ck_assert_int_eq(lw_dtls_input(w.sh, NULL, (struct sockaddr *)&hello.addr, sizeof(hello.addr),
                                   hello.d, hello.len, w.now, &cr),
                     0);
    ck_assert_ptr_nonnull(cr);
    a->sess = cr;
    a->in.n = 0; /* our flight is "in the client's queue": not delivered */
    unsigned sends = w.sends;
    w.now += 500;
    wolfSSL_dtls_got_timeout(a->ssl); /* the client retransmits its hello (new record number) */
    d = w.to_server.q[w.to_server.head];
    w.to_server.head = (w.to_server.head + 1) % H_QLEN;
    w.to_server.n = 0;
    ck_assert_int_eq(lw_dtls_input(w.sh, cr, (struct sockaddr *)&d.addr, sizeof(d.addr), d.d, d.len,
                                   w.now, NULL),
                     0);
    ck_assert_uint_eq(w.sends, sends); /* crossed: not answered */
    struct lw_dtls_stats st;
    lw_dtls_shard_stats(w.sh, &st);
    ck_assert_uint_eq(st.hello_crossed, 1);
    w.now += 600; /* a period (1 s) after our flight: the next copy is answered */
    wolfSSL_dtls_got_timeout(a->ssl);
    d = w.to_server.q[w.to_server.head];
    w.to_server.head = (w.to_server.head + 1) % H_QLEN;
    w.to_server.n = 0;
    ck_assert_int_eq(lw_dtls_input(w.sh, cr, (struct sockaddr *)&d.addr, sizeof(d.addr), d.d, d.len,
                                   w.now, NULL),
                     0);
    ck_assert_uint_gt(w.sends, sends);
    lw_dtls_shard_stats(w.sh, &st);
    ck_assert_uint_eq(st.hello_crossed, 1);
    h_pump(&w);
    ck_assert(a->hs_done);
    ck_assert(lw_dtls_sess_established(cr));
    h_world_deinit(&w);
    wolfSSL_CTX_free(cc);
    lw_dtls_ctx_free(ctx);
}
END_TEST

START_TEST(test_cookie_flood13)
{
    flood(true);
}
END_TEST

START_TEST(test_handshake_budget)
{
    struct lw_dtls_ctx *ctx = mkctx(0, 1);
    WOLFSSL_CTX *cc = h_cctx_psk(false, "PSK-AES128-CCM-8", false);
    struct h_world w;
    h_world_init(&w, ctx, 5, 4);
    struct h_client *a = h_client_new(&w, cc, 5005);
    struct h_client *b = h_client_new(&w, cc, 5006);
    /* a: hello, HVR, hello+cookie -> session (in handshake); stop before a finishes */
    h_client_step(a);
    struct h_dgram d = w.to_server.q[w.to_server.head];
    w.to_server.n = 0;
    struct lw_dtls_sess *cr = NULL;
    lw_dtls_input(w.sh, NULL, (struct sockaddr *)&d.addr, sizeof(d.addr), d.d, d.len, w.now, &cr);
    h_client_step(a); /* hello with cookie */
    d = w.to_server.q[w.to_server.head];
    w.to_server.head = (w.to_server.head + 1) % H_QLEN;
    w.to_server.n = 0;
    ck_assert_int_eq(lw_dtls_input(w.sh, NULL, (struct sockaddr *)&d.addr, sizeof(d.addr), d.d,
                                   d.len, w.now, &cr),
                     0);
    ck_assert_ptr_nonnull(cr);
    a->sess = cr;
    /* b gets its cookie but is refused a session while a handshakes */
    h_client_step(b);
    d = w.to_server.q[w.to_server.head];
    w.to_server.head = (w.to_server.head + 1) % H_QLEN;
    w.to_server.n = 0;
    lw_dtls_input(w.sh, NULL, (struct sockaddr *)&d.addr, sizeof(d.addr), d.d, d.len, w.now, &cr);
    ck_assert_ptr_null(cr);
    h_client_step(b);
    d = w.to_server.q[w.to_server.head];
    w.to_server.head = (w.to_server.head + 1) % H_QLEN;
    w.to_server.n = 0;
    ck_assert_int_eq(lw_dtls_input(w.sh, NULL, (struct sockaddr *)&d.addr, sizeof(d.addr), d.d,
                                   d.len, w.now, &cr),
                     LW_ELIMIT);
    ck_assert_ptr_null(cr);
    struct lw_dtls_stats st;
    lw_dtls_shard_stats(w.sh, &st);
    ck_assert_uint_eq(st.budget_refused, 1);
    ck_assert_uint_eq(st.live, 1);
    /* a finishes; b retransmits (timeout on its side) and gets through */
    h_pump(&w);
    ck_assert(a->hs_done);
    wolfSSL_dtls_got_timeout(b->ssl);
    h_pump(&w);
    ck_assert(b->hs_done);
    h_world_deinit(&w);
    wolfSSL_CTX_free(cc);
    lw_dtls_ctx_free(ctx);
}
END_TEST

START_TEST(test_retransmit_and_timeout)
{
    struct lw_dtls_ctx *ctx = mkctx(0, 0);
    WOLFSSL_CTX *cc = h_cctx_psk(false, "PSK-AES128-CCM-8", false);
    struct h_world w;
    h_world_init(&w, ctx, 6, 4);
    struct h_client *c = h_client_new(&w, cc, 5007);
    /* server flights are lost until the server retransmits */
    h_client_step(c);
    h_pump(&w); /* through HVR; client sends hello+cookie; server answers ServerHello.. */
    ck_assert_ptr_nonnull(c->sess);
    if (c->hs_done) {
        /* everything went through in one pump; nothing to lose: use a fresh client */
    }
    struct h_client *d = h_client_new(&w, cc, 5008);
    h_client_step(d);
    h_pump(&w);
    (void)d;
    /* A client that vanishes after its cookie: server retransmits, then times out. */
    struct h_client *e = h_client_new(&w, cc, 5009);
    h_client_step(e);
    struct h_dgram g = w.to_server.q[w.to_server.head];
    w.to_server.n = 0;
    struct lw_dtls_sess *cr = NULL;
    lw_dtls_input(w.sh, NULL, (struct sockaddr *)&g.addr, sizeof(g.addr), g.d, g.len, w.now, &cr);
    h_client_step(e); /* hello with cookie */
    g = w.to_server.q[w.to_server.head];
    w.to_server.head = (w.to_server.head + 1) % H_QLEN;
    w.to_server.n = 0;
    unsigned sends0 = w.sends;
    lw_dtls_input(w.sh, NULL, (struct sockaddr *)&g.addr, sizeof(g.addr), g.d, g.len, w.now, &cr);
    ck_assert_ptr_nonnull(cr);
    e->sess = cr;
    ck_assert_uint_gt(w.sends, sends0); /* ServerHello flight */
    e->in.n = 0;                        /* ... lost */
    uint64_t t = lw_dtls_next_timeout(cr);
    ck_assert_uint_gt(t, w.now);
    ck_assert_uint_le(t, w.now + 1000);
    ck_assert_int_eq(lw_dtls_timeout(cr, t - 1), 0); /* early: nothing */
    unsigned sends1 = w.sends;
    ck_assert_int_eq(lw_dtls_timeout(cr, t), 0);
    ck_assert_uint_gt(w.sends, sends1);             /* retransmitted flight */
    ck_assert_uint_gt(lw_dtls_next_timeout(cr), t); /* backoff */
    /* retransmitted flight reaches the client: handshake completes */
    w.now = t;
    h_pump(&w);
    ck_assert(e->hs_done);
    ck_assert(lw_dtls_sess_established(cr));
    ck_assert_uint_eq(lw_dtls_next_timeout(cr), UINT64_MAX);

    /* vanished client: timeouts until the handshake deadline (30 s) */
    struct h_client *f = h_client_new(&w, cc, 5010);
    h_client_step(f);
    g = w.to_server.q[w.to_server.head];
    w.to_server.n = 0;
    lw_dtls_input(w.sh, NULL, (struct sockaddr *)&g.addr, sizeof(g.addr), g.d, g.len, w.now, &cr);
    h_client_step(f);
    g = w.to_server.q[w.to_server.head];
    w.to_server.head = (w.to_server.head + 1) % H_QLEN;
    w.to_server.n = 0;
    lw_dtls_input(w.sh, NULL, (struct sockaddr *)&g.addr, sizeof(g.addr), g.d, g.len, w.now, &cr);
    ck_assert_ptr_nonnull(cr);
    f->sess = cr;
    w.drop_to_clients = true;
    int rc = 0, rounds = 0;
    while (rc == 0 && rounds++ < 100) {
        uint64_t nt = lw_dtls_next_timeout(cr);
        ck_assert_uint_ne(nt, UINT64_MAX);
        rc = lw_dtls_timeout(cr, nt);
    }
    ck_assert_int_eq(rc, LW_ETIMEDOUT);
    ck_assert_uint_eq(w.ev[LW_DTLS_EV_TIMEOUT], 1);
    ck_assert_uint_eq(lw_dtls_next_timeout(cr), UINT64_MAX);
    struct lw_dtls_stats st;
    lw_dtls_shard_stats(w.sh, &st);
    ck_assert_uint_eq(st.in_handshake, 0);
    h_world_deinit(&w);
    wolfSSL_CTX_free(cc);
    lw_dtls_ctx_free(ctx);
}
END_TEST

START_TEST(test_close_notify)
{
    struct lw_dtls_ctx *ctx = mkctx(0, 0);
    WOLFSSL_CTX *cc = h_cctx_psk(false, "PSK-AES128-CCM-8", true);
    struct h_world w;
    h_world_init(&w, ctx, 8, 4);
    struct h_client *c = h_client_new(&w, cc, 5011);
    struct h_client *d = h_client_new(&w, cc, 5012);
    handshake_ok(&w, c);
    handshake_ok(&w, d);
    /* client closes: server raises CLOSED and answers */
    wolfSSL_shutdown(c->ssl);
    h_pump(&w);
    ck_assert_uint_eq(w.ev[LW_DTLS_EV_CLOSED], 1);
    ck_assert_ptr_eq(w.last_ev_sess, c->sess);
    ck_assert_int_eq(lw_dtls_write(c->sess, (const uint8_t *)"x", 1, w.now), LW_ECANCELED);
    /* server closes: client sees close_notify */
    ck_assert_int_eq(lw_dtls_close(d->sess), 0);
    h_pump(&w);
    ck_assert(d->closed);
    h_world_deinit(&w);
    wolfSSL_CTX_free(cc);
    lw_dtls_ctx_free(ctx);
}
END_TEST

/* 1000 sessions: handshake, hibernate all, wake all, each client moves to a new port, records
 * flow both ways; CID demux finds the woken sessions. */
START_TEST(test_hibernate_1000)
{
    enum { N = 1000 };
    struct lw_dtls_ctx *ctx = mkctx(0, 0);
    WOLFSSL_CTX *cc = h_cctx_psk(false, "PSK-AES128-CCM-8", true);
    struct h_world w;
    h_world_init(&w, ctx, 9, N);
    struct lw_buf blobs[N];
    size_t max_blob = 0;
    for (unsigned i = 0; i < N; i++) {
        struct h_client *c = h_client_new(&w, cc, (uint16_t)(20000 + i));
        ck_assert_int_eq(wolfSSL_dtls_cid_use(c->ssl), WOLFSSL_SUCCESS);
        handshake_ok(&w, c);
    }
    for (unsigned i = 0; i < N; i++) {
        struct h_client *c = w.clients[i];
        lw_buf_init(&blobs[i], 0);
        ck_assert_int_eq(lw_dtls_hibernate(c->sess, &blobs[i]), 0);
        c->sess = NULL;
        max_blob = LW_MAX(max_blob, blobs[i].len);
    }
    ck_assert_uint_le(max_blob, LW_DTLS_BLOB_MAX);
    ck_assert_uint_le(max_blob, 400);
    struct lw_dtls_stats st;
    lw_dtls_shard_stats(w.sh, &st);
    ck_assert_uint_eq(st.live, 0);
    for (unsigned i = 0; i < N; i++) {
        struct h_client *c = w.clients[i];
        ck_assert_int_eq(lw_dtls_wake(w.sh, blobs[i].data, blobs[i].len, w.now, &c->sess), 0);
        lw_buf_deinit(&blobs[i]);
        struct lw_bytes id;
        ck_assert_int_eq(lw_dtls_sess_identity(c->sess, &id), LW_DTLS_AUTH_PSK);
        ck_assert(lw_bytes_eq_str(id, "dev-1"));
    }
    unsigned moved0 = w.ev[LW_DTLS_EV_PEER_MOVED];
    for (unsigned i = 0; i < N; i++) {
        struct h_client *c = w.clients[i];
        c->addr.sin_port = htons((uint16_t)(40000 + i)); /* NAT rebinding */
        char msg[32];
        snprintf(msg, sizeof(msg), "ping %u", i);
        ck_assert_int_eq(h_client_write(c, msg), (int)strlen(msg));
        unsigned pt0 = w.pt_count;
        h_pump(&w);
        ck_assert_uint_eq(w.pt_count, pt0 + 1);
        ck_assert_mem_eq(w.last_pt, msg, strlen(msg));
        socklen_t al;
        const struct sockaddr_in *a = (const struct sockaddr_in *)lw_dtls_sess_addr(c->sess, &al);
        ck_assert_uint_eq(ntohs(a->sin_port), 40000 + i);
        ck_assert_int_eq(lw_dtls_write(c->sess, (const uint8_t *)"pong", 4, w.now), 0);
        unsigned rx0 = c->rx_count;
        h_pump(&w);
        ck_assert_uint_eq(c->rx_count, rx0 + 1);
        ck_assert_mem_eq(c->rx, "pong", 4);
    }
    ck_assert_uint_eq(w.ev[LW_DTLS_EV_PEER_MOVED], moved0 + N);
    /* hibernate again after the move and wake: still fine (second round trip) */
    struct h_client *c = w.clients[0];
    struct lw_buf b;
    lw_buf_init(&b, 0);
    ck_assert_int_eq(lw_dtls_hibernate(c->sess, &b), 0);
    ck_assert_int_eq(lw_dtls_wake(w.sh, b.data, b.len, w.now, &c->sess), 0);
    lw_buf_deinit(&b);
    ck_assert_int_eq(h_client_write(c, "again"), 5);
    h_pump(&w);
    ck_assert_mem_eq(w.last_pt, "again", 5);
    h_world_deinit(&w);
    wolfSSL_CTX_free(cc);
    lw_dtls_ctx_free(ctx);
}
END_TEST

/* A spoofed CID record from a new address must not move the session. */
START_TEST(test_spoofed_move)
{
    struct lw_dtls_ctx *ctx = mkctx(0, 0);
    WOLFSSL_CTX *cc = h_cctx_psk(false, "PSK-AES128-CCM-8", true);
    struct h_world w;
    h_world_init(&w, ctx, 10, 4);
    struct h_client *c = h_client_new(&w, cc, 5013);
    ck_assert_int_eq(wolfSSL_dtls_cid_use(c->ssl), WOLFSSL_SUCCESS);
    handshake_ok(&w, c);
    ck_assert_int_eq(h_client_write(c, "real"), 4);
    struct h_dgram g = w.to_server.q[w.to_server.head];
    w.to_server.n = 0;
    g.d[g.len - 1] ^= 1; /* tampered: fails authentication */
    struct sockaddr_in evil = c->addr;
    evil.sin_port = htons(6666);
    ck_assert_int_eq(lw_dtls_input(w.sh, c->sess, (struct sockaddr *)&evil, sizeof(evil), g.d,
                                   g.len, w.now, NULL),
                     0);
    ck_assert_uint_eq(w.pt_count, 0);
    ck_assert_uint_eq(w.ev[LW_DTLS_EV_PEER_MOVED], 0);
    socklen_t al;
    const struct sockaddr_in *a = (const struct sockaddr_in *)lw_dtls_sess_addr(c->sess, &al);
    ck_assert_uint_eq(ntohs(a->sin_port), 5013);
    h_world_deinit(&w);
    wolfSSL_CTX_free(cc);
    lw_dtls_ctx_free(ctx);
}
END_TEST

START_TEST(test_cid_peek)
{
    uint8_t r12[20] = {25, 0xFE, 0xFD, 0, 1, 0, 0, 0, 0, 0, 9, 0xA, 0xB, 0xC, 0xD, 0xE, 0xF, 0, 3};
    struct lw_bytes cid;
    ck_assert_int_eq(lw_dtls_cid_peek(r12, sizeof(r12), 6, &cid), 1);
    ck_assert_ptr_eq(cid.ptr, r12 + 11);
    ck_assert_int_eq(lw_dtls_cid_shard(cid), 0xA);
    ck_assert_int_eq(lw_dtls_cid_peek(r12, 16, 6, &cid), LW_EMALFORMED);
    ck_assert_int_eq(lw_dtls_cid_peek(r12, sizeof(r12), 0, &cid), LW_EMALFORMED);
    ck_assert_int_eq(lw_dtls_cid_peek(r12, sizeof(r12), 9, &cid), LW_EMALFORMED);
    r12[0] = 23;
    ck_assert_int_eq(lw_dtls_cid_peek(r12, sizeof(r12), 6, &cid), 0);
    ck_assert_uint_eq(cid.len, 0);
    /* DTLS 1.3: 001CSLEE = 0x3C: CID, 16-bit seq, length */
    uint8_t r13[] = {0x3C, 1, 2, 3, 4, 5, 6, 0, 1, 0, 5};
    ck_assert_int_eq(lw_dtls_cid_peek(r13, sizeof(r13), 6, &cid), 1);
    ck_assert_ptr_eq(cid.ptr, r13 + 1);
    ck_assert_int_eq(lw_dtls_cid_peek(r13, 10, 6, &cid), LW_EMALFORMED);
    r13[0] = 0x2C; /* no C bit */
    ck_assert_int_eq(lw_dtls_cid_peek(r13, sizeof(r13), 6, &cid), 0);
    ck_assert_int_eq(lw_dtls_cid_peek(NULL, 0, 6, &cid), 0);
    ck_assert_int_eq(lw_dtls_cid_shard((struct lw_bytes){NULL, 0}), -1);
}
END_TEST

START_TEST(test_bad_inputs)
{
    struct lw_dtls_ctx *ctx = mkctx(0, 0);
    struct h_world w;
    h_world_init(&w, ctx, 11, 1);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(1)};
    struct lw_dtls_sess *cr;
    uint8_t x[3] = {23, 0xFE, 0xFD};
    ck_assert_int_eq(lw_dtls_input(w.sh, NULL, NULL, 0, x, 3, w.now, &cr), LW_EINVAL);
    ck_assert_int_eq(lw_dtls_input(w.sh, NULL, (struct sockaddr *)&a, 200, x, 3, w.now, &cr),
                     LW_EINVAL);
    ck_assert_int_eq(lw_dtls_input(w.sh, NULL, (struct sockaddr *)&a, sizeof(a), x, 3, w.now, &cr),
                     0);
    ck_assert_int_eq(
        lw_dtls_input(w.sh, NULL, (struct sockaddr *)&a, sizeof(a), NULL, 0, w.now, &cr), 0);
    struct lw_dtls_sess *s;
    ck_assert_int_eq(lw_dtls_wake(w.sh, x, 3, w.now, &s), LW_EMALFORMED);
    uint8_t fake[40] = {'L', 'D', 1, 0, 0, 16};
    ck_assert_int_eq(lw_dtls_wake(w.sh, fake, sizeof(fake), w.now, &s), LW_EMALFORMED);
    struct lw_dtls_cfg cfg = {.cid_len = 2};
    struct lw_dtls_ctx *bad;
    ck_assert_int_eq(lw_dtls_ctx_new(&cfg, &bad), LW_ECONFIG);
    cfg = (struct lw_dtls_cfg){.ciphers = "NO-SUCH-SUITE"};
    ck_assert_int_eq(lw_dtls_ctx_new(&cfg, &bad), LW_ECONFIG);
    lw_dtls_sess_free(NULL);
    lw_dtls_shard_free(NULL);
    lw_dtls_ctx_free(NULL);
    h_world_deinit(&w);
    lw_dtls_ctx_free(ctx);
}
END_TEST

/* The device reboots and handshakes again from the same address while its old session is still
 * established: a new session comes back in *created; a late duplicate of the hello that created
 * the old session does not. */
START_TEST(test_reboot_same_address)
{
    struct lw_dtls_ctx *ctx = mkctx(0, 0);
    WOLFSSL_CTX *cc = h_cctx_psk(false, "PSK-AES128-CCM-8", false);
    struct h_world w;
    h_world_init(&w, ctx, 12, 4);
    struct h_client *c = h_client_new(&w, cc, 5014);
    /* record the datagrams of the first handshake */
    struct h_dgram hellos[2];
    size_t nh = 0;
    for (int round = 0; round < 20 && !c->hs_done; round++) {
        h_client_step(c);
        while (w.to_server.n) {
            struct h_dgram *g = &w.to_server.q[w.to_server.head];
            if (g->d[0] == 22 && g->d[13] == 1 && nh < 2)
                hellos[nh++] = *g;
            struct lw_dtls_sess *cr = NULL;
            lw_dtls_input(w.sh, c->sess, (struct sockaddr *)&g->addr, sizeof(g->addr), g->d, g->len,
                          w.now, c->sess ? NULL : &cr);
            if (cr)
                c->sess = cr;
            w.to_server.head = (w.to_server.head + 1) % H_QLEN;
            w.to_server.n--;
        }
    }
    ck_assert(c->hs_done);
    ck_assert_uint_eq(nh, 2);
    struct lw_dtls_sess *old = c->sess;
    /* late duplicate of the hello with cookie: ignored */
    struct lw_dtls_sess *cr = NULL;
    ck_assert_int_eq(lw_dtls_input(w.sh, old, (struct sockaddr *)&hellos[1].addr,
                                   sizeof(hellos[1].addr), hellos[1].d, hellos[1].len, w.now, &cr),
                     0);
    ck_assert_ptr_null(cr);
    ck_assert(lw_dtls_sess_established(old));
    /* reboot: a fresh client object on the same port */
    wolfSSL_free(c->ssl);
    c->ssl = wolfSSL_new(cc);
    wolfSSL_SetIOReadCtx(c->ssl, c);
    wolfSSL_SetIOWriteCtx(c->ssl, c);
    wolfSSL_dtls_set_using_nonblock(c->ssl, 1);
    c->hs_done = false;
    c->in.n = 0;
    struct lw_dtls_sess *fresh = NULL;
    for (int round = 0; round < 20 && !c->hs_done; round++) {
        h_client_step(c);
        while (w.to_server.n) {
            struct h_dgram *g = &w.to_server.q[w.to_server.head];
            struct lw_dtls_sess *target = fresh ? fresh : old;
            cr = NULL;
            lw_dtls_input(w.sh, target, (struct sockaddr *)&g->addr, sizeof(g->addr), g->d, g->len,
                          w.now, &cr);
            if (cr)
                fresh = cr;
            w.to_server.head = (w.to_server.head + 1) % H_QLEN;
            w.to_server.n--;
        }
    }
    ck_assert(c->hs_done);
    ck_assert_ptr_nonnull(fresh);
    ck_assert_ptr_ne(fresh, old);
    ck_assert(lw_dtls_sess_established(fresh));
    lw_dtls_sess_free(old);
    c->sess = fresh;
    ck_assert_int_eq(h_client_write(c, "after reboot"), 12);
    h_pump(&w);
    ck_assert_mem_eq(w.last_pt, "after reboot", 12);
    h_world_deinit(&w);
    wolfSSL_CTX_free(cc);
    lw_dtls_ctx_free(ctx);
}
END_TEST

START_TEST(test_hello_rate_limit)
{
    struct lw_dtls_cfg cfg = {0};
    struct lw_dtls_ctx *ctx = NULL;
    cfg.cred.psk_lookup = lookup;
    cfg.hello_rate = 10;
    cfg.hello_burst = 20;
    ck_assert_int_eq(lw_dtls_ctx_new(&cfg, &ctx), 0);
    WOLFSSL_CTX *cc = h_cctx_psk(false, "PSK-AES128-CCM-8", false);
    struct h_world w;
    h_world_init(&w, ctx, 13, 4);
    struct h_client *c = h_client_new(&w, cc, 5015);
    h_client_step(c);
    struct h_dgram hello = w.to_server.q[w.to_server.head];
    w.to_server.n = 0;
    /* 100 hellos from one /24 at the same instant: 20 pass (burst) */
    for (unsigned i = 0; i < 100; i++) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)(1000 + i))};
        a.sin_addr.s_addr = htonl(0xc0000200u + (i & 0xff));
        struct lw_dtls_sess *cr;
        lw_dtls_input(w.sh, NULL, (struct sockaddr *)&a, sizeof(a), hello.d, hello.len, w.now, &cr);
    }
    struct lw_dtls_stats st;
    lw_dtls_shard_stats(w.sh, &st);
    ck_assert_uint_eq(st.hello_stateless, 20);
    ck_assert_uint_eq(st.hello_ratelimited, 80);
    /* another prefix is not affected */
    struct sockaddr_in b = {.sin_family = AF_INET, .sin_port = htons(1)};
    b.sin_addr.s_addr = htonl(0xc6336401u);
    struct lw_dtls_sess *cr;
    lw_dtls_input(w.sh, NULL, (struct sockaddr *)&b, sizeof(b), hello.d, hello.len, w.now, &cr);
    lw_dtls_shard_stats(w.sh, &st);
    ck_assert_uint_eq(st.hello_stateless, 21);
    /* one second later 10 more pass on the first prefix */
    w.now += 1000;
    for (unsigned i = 0; i < 30; i++) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)(3000 + i))};
        a.sin_addr.s_addr = htonl(0xc0000201u);
        lw_dtls_input(w.sh, NULL, (struct sockaddr *)&a, sizeof(a), hello.d, hello.len, w.now, &cr);
    }
    lw_dtls_shard_stats(w.sh, &st);
    ck_assert_uint_eq(st.hello_stateless, 31);
    /* IPv6: one /56 shares a bucket, the next /56 has its own */
    struct lw_dtls_stats st6;
    lw_dtls_shard_stats(w.sh, &st6);
    for (unsigned i = 0; i < 40; i++) {
        struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)i)};
        a6.sin6_addr.s6_addr[0] = 0x20;
        a6.sin6_addr.s6_addr[1] = 0x01;
        a6.sin6_addr.s6_addr[6] = (uint8_t)(i < 30 ? 0 : 1); /* byte 6: inside the /56 */
        a6.sin6_addr.s6_addr[7] = (uint8_t)i;                /* byte 7: outside it */
        a6.sin6_addr.s6_addr[15] = (uint8_t)i;
        lw_dtls_input(w.sh, NULL, (struct sockaddr *)&a6, sizeof(a6), hello.d, hello.len, w.now,
                      &cr);
    }
    struct lw_dtls_stats st7;
    lw_dtls_shard_stats(w.sh, &st7);
    ck_assert_uint_eq(st7.hello_stateless - st6.hello_stateless, 20 + 10);
    ck_assert_uint_eq(st7.hello_ratelimited - st6.hello_ratelimited, 10);
    /* IPv4-mapped IPv6 (dual-stack socket): keyed by the IPv4 /24, so two /24s do not share */
    for (unsigned i = 0; i < 40; i++) {
        struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)i)};
        a6.sin6_addr.s6_addr[10] = 0xff;
        a6.sin6_addr.s6_addr[11] = 0xff;
        a6.sin6_addr.s6_addr[12] = 198;
        a6.sin6_addr.s6_addr[13] = 51;
        a6.sin6_addr.s6_addr[14] = (uint8_t)(i & 1); /* two /24s, 20 hellos each */
        a6.sin6_addr.s6_addr[15] = (uint8_t)i;
        lw_dtls_input(w.sh, NULL, (struct sockaddr *)&a6, sizeof(a6), hello.d, hello.len, w.now,
                      &cr);
    }
    struct lw_dtls_stats st8;
    lw_dtls_shard_stats(w.sh, &st8);
    /* one shared bucket would pass at most 20 (1/4096 chance of a table collision aside) */
    ck_assert_uint_ge(st8.hello_stateless - st7.hello_stateless, 21);
    /* the real client (127.0.0.x, its own prefix) still gets through (it retransmits its
     * first hello, which the test took away) */
    wolfSSL_dtls_got_timeout(c->ssl);
    h_pump(&w);
    ck_assert(c->hs_done);
    h_world_deinit(&w);
    wolfSSL_CTX_free(cc);
    lw_dtls_ctx_free(ctx);
}
END_TEST

Suite *suite_psk(void);
Suite *suite_psk(void)
{
    Suite *s = suite_create("dtls_psk");
    TCase *tc = tcase_create("psk");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_psk12_ccm8_cid);
    tcase_add_test(tc, test_cid_in_use_skipped);
    tcase_add_test(tc, test_psk12_cbc_no_cid);
    tcase_add_test(tc, test_psk13_ccm8);
    tcase_add_test(tc, test_psk13_gcm);
    tcase_add_test(tc, test_wrong_psk);
    tcase_add_test(tc, test_unknown_identity);
    tcase_add_test(tc, test_cookie_flood12);
    tcase_add_test(tc, test_cookie_flood13);
    tcase_add_test(tc, test_handshake_budget);
    tcase_add_test(tc, test_budget_deferred_hello);
    tcase_add_test(tc, test_crossed_hello);
    tcase_add_test(tc, test_retransmit_and_timeout);
    tcase_add_test(tc, test_close_notify);
    tcase_add_test(tc, test_hibernate_1000);
    tcase_add_test(tc, test_spoofed_move);
    tcase_add_test(tc, test_cid_peek);
    tcase_add_test(tc, test_reboot_same_address);
    tcase_add_test(tc, test_hello_rate_limit);
    tcase_add_test(tc, test_bad_inputs);
    suite_add_tcase(s, tc);
    return s;
}
