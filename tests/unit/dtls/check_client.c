/* tests/unit/dtls/check_client.c - the sans-IO PSK client (client.h) against the lib/dtls server
 * in memory: DTLS 1.2 and 1.3 handshakes, CID, application data both ways, a wrong key, lost
 * flights retransmitted on the timer, the handshake deadline, and an address change with and
 * without CID. */
#include <check.h>
#include <netinet/in.h>
#include <string.h>

#include "base/err.h"
#include "dtls/client.h"
#include "dtls/dtls.h"

#define QLEN 16
struct dg {
    size_t len;
    uint8_t d[2048];
};
struct q {
    struct dg q[QLEN];
    size_t n;
};

struct tw {
    struct lw_dtls_ctx *sctx;
    struct lw_dtls_shard *sh;
    struct lw_dtls_sess *sess;
    struct lw_dtls_client_ctx *cctx;
    struct lw_dtls_client *c;
    struct q to_c, to_s;
    struct sockaddr_in caddr;
    uint64_t now;
    unsigned c_ev[8], s_ev[8];
    uint8_t c_rx[256];
    size_t c_rx_len;
    unsigned s_rx;
    const char *key;     /* client's key */
    bool drop_to_c;      /* lose everything the server sends */
    unsigned to_s_sends; /* datagrams the client sent */
};

static void push(struct q *q, const uint8_t *d, size_t n)
{
    if (q->n < QLEN && n <= sizeof(q->q[0].d)) {
        q->q[q->n].len = n;
        memcpy(q->q[q->n].d, d, n);
        q->n++;
    }
}

static void s_send(void *arg, struct lw_dtls_sess *sess, const struct sockaddr *to, socklen_t tl,
                   const uint8_t *data, size_t len)
{
    struct tw *w = arg;
    (void)sess;
    (void)to;
    (void)tl;
    if (!w->drop_to_c)
        push(&w->to_c, data, len);
}

static void s_deliver(void *arg, struct lw_dtls_sess *sess, const uint8_t *data, size_t len)
{
    struct tw *w = arg;
    w->s_rx++;
    lw_dtls_write(sess, data, len, w->now); /* echo */
}

static void s_event(void *arg, struct lw_dtls_sess *sess, enum lw_dtls_event ev, int detail)
{
    struct tw *w = arg;
    (void)sess;
    (void)detail;
    w->s_ev[ev & 7]++;
}

static const struct lw_dtls_shard_ops sops = {s_send, s_deliver, s_event, NULL};

static size_t s_psk(void *arg, const uint8_t *id, size_t id_len, uint8_t *key, size_t cap)
{
    (void)arg;
    if (id_len != 5 || memcmp(id, "dev-1", 5) != 0 || cap < 16)
        return 0;
    memcpy(key, "0123456789abcdef", 16);
    return 16;
}

static void c_send(void *arg, const uint8_t *data, size_t len)
{
    struct tw *w = arg;
    w->to_s_sends++;
    push(&w->to_s, data, len);
}

static void c_deliver(void *arg, const uint8_t *data, size_t len)
{
    struct tw *w = arg;
    w->c_rx_len = len < sizeof(w->c_rx) ? len : sizeof(w->c_rx);
    memcpy(w->c_rx, data, w->c_rx_len);
}

static void c_event(void *arg, enum lw_dtls_event ev, int detail)
{
    struct tw *w = arg;
    (void)detail;
    w->c_ev[ev & 7]++;
}

static size_t c_psk(void *arg, uint8_t *id, size_t id_cap, size_t *id_len, uint8_t *key,
                    size_t key_cap)
{
    struct tw *w = arg;
    size_t kl = strlen(w->key);
    if (id_cap < 5 || key_cap < kl)
        return 0;
    memcpy(id, "dev-1", 5);
    *id_len = 5;
    memcpy(key, w->key, kl);
    return kl;
}

static const struct lw_dtls_client_ops cops = {c_send, c_deliver, c_event, c_psk};

static void tw_init(struct tw *w, int version, bool cid)
{
    memset(w, 0, sizeof(*w));
    struct lw_dtls_cfg scfg = {0};
    scfg.cred.psk_lookup = s_psk;
    scfg.no_hello_limit = true;
    ck_assert_int_eq(lw_dtls_ctx_new(&scfg, &w->sctx), 0);
    ck_assert_int_eq(lw_dtls_shard_new(w->sctx, 3, &sops, w, &w->sh), 0);
    struct lw_dtls_client_cfg ccfg = {.version = version, .no_cid = !cid, .handshake_ms = 20000};
    ck_assert_int_eq(lw_dtls_client_ctx_new(&ccfg, &cops, &w->cctx), 0);
    w->caddr.sin_family = AF_INET;
    w->caddr.sin_addr.s_addr = htonl(0x7f000001);
    w->caddr.sin_port = htons(40000);
    w->now = 1000000;
    w->key = "0123456789abcdef";
}

static void tw_deinit(struct tw *w)
{
    lw_dtls_client_free(w->c);
    lw_dtls_sess_free(w->sess);
    lw_dtls_shard_free(w->sh);
    lw_dtls_ctx_free(w->sctx);
    lw_dtls_client_ctx_free(w->cctx);
}

/* Moves datagrams both ways until both queues are empty (bounded). */
static void pump(struct tw *w)
{
    for (int round = 0; round < 50 && (w->to_c.n || w->to_s.n); round++) {
        struct q s = w->to_s;
        w->to_s.n = 0;
        for (size_t i = 0; i < s.n; i++) {
            struct lw_dtls_sess *created = NULL, *use = NULL;
            struct lw_bytes cid;
            if (w->sess) {
                struct lw_bytes mine = lw_dtls_sess_cid(w->sess);
                socklen_t al;
                const struct sockaddr *a = lw_dtls_sess_addr(w->sess, &al);
                if (mine.len && lw_dtls_cid_peek(s.q[i].d, s.q[i].len, mine.len, &cid) == 1)
                    use = lw_bytes_eq(mine, cid) ? w->sess : NULL;
                else if (al == sizeof(w->caddr) && memcmp(a, &w->caddr, sizeof(w->caddr)) == 0)
                    use = w->sess;
            }
            lw_dtls_input(w->sh, use, (struct sockaddr *)&w->caddr, sizeof(w->caddr), s.q[i].d,
                          s.q[i].len, w->now, &created);
            if (created) {
                lw_dtls_sess_free(w->sess);
                w->sess = created;
            }
        }
        struct q c = w->to_c;
        w->to_c.n = 0;
        for (size_t i = 0; i < c.n && w->c; i++)
            lw_dtls_client_input(w->c, c.q[i].d, c.q[i].len, w->now);
    }
}

static void handshake(struct tw *w)
{
    ck_assert_int_eq(lw_dtls_client_new(w->cctx, w, w->now, &w->c), 0);
    ck_assert_uint_eq(w->to_s.n, 1); /* ClientHello */
    ck_assert(lw_dtls_client_next_timeout(w->c) != UINT64_MAX);
    pump(w);
}

static void check_hs_and_data(int version, bool cid)
{
    struct tw w;
    tw_init(&w, version, cid);
    handshake(&w);
    ck_assert_uint_eq(w.c_ev[LW_DTLS_EV_ESTABLISHED], 1);
    ck_assert(lw_dtls_client_established(w.c));
    ck_assert_int_eq(lw_dtls_client_version(w.c), version);
    ck_assert(lw_dtls_client_has_cid(w.c) == cid);
    ck_assert_uint_eq(lw_dtls_client_next_timeout(w.c), UINT64_MAX);
    ck_assert_uint_eq(w.s_ev[LW_DTLS_EV_ESTABLISHED], 1);
    ck_assert_int_eq(lw_dtls_client_write(w.c, (const uint8_t *)"hello", 5, w.now), 0);
    pump(&w);
    ck_assert_uint_eq(w.s_rx, 1);
    ck_assert_uint_eq(w.c_rx_len, 5);
    ck_assert_mem_eq(w.c_rx, "hello", 5);
    /* NAT rebinding: the client's source port changes. */
    w.caddr.sin_port = htons(40001);
    w.c_rx_len = 0;
    ck_assert_int_eq(lw_dtls_client_write(w.c, (const uint8_t *)"again", 5, w.now), 0);
    pump(&w);
    if (cid) {
        ck_assert_uint_eq(w.s_ev[LW_DTLS_EV_PEER_MOVED], 1);
        ck_assert_uint_eq(w.c_rx_len, 5);
    } else {
        ck_assert_uint_eq(w.s_rx, 1); /* the server cannot place the record */
        ck_assert_uint_eq(w.c_rx_len, 0);
    }
    ck_assert_int_eq(lw_dtls_client_close(w.c), 0);
    pump(&w);
    ck_assert_uint_eq(w.s_ev[LW_DTLS_EV_CLOSED], cid ? 1 : 0);
    ck_assert_int_eq(lw_dtls_client_write(w.c, (const uint8_t *)"x", 1, w.now), LW_ECANCELED);
    tw_deinit(&w);
}

START_TEST(v12_cid)
{
    check_hs_and_data(12, true);
}
END_TEST

START_TEST(v12_no_cid)
{
    check_hs_and_data(12, false);
}
END_TEST

START_TEST(v13_cid)
{
    check_hs_and_data(13, true);
}
END_TEST

START_TEST(wrong_key)
{
    struct tw w;
    tw_init(&w, 12, true);
    w.key = "fedcba9876543210";
    handshake(&w);
    ck_assert(!lw_dtls_client_established(w.c));
    ck_assert_uint_eq(w.c_ev[LW_DTLS_EV_ESTABLISHED], 0);
    /* A Finished that does not decrypt is dropped like any bad record (RFC 6347 §4.1.2.7):
     * the handshake stalls until its deadline, unless an alert ends it first. */
    int rc = 0;
    for (int i = 0; i < 100 && rc == 0 && !w.c_ev[LW_DTLS_EV_FAILED]; i++) {
        w.now = lw_dtls_client_next_timeout(w.c);
        rc = lw_dtls_client_timeout(w.c, w.now);
        pump(&w);
    }
    ck_assert_uint_eq(w.c_ev[LW_DTLS_EV_FAILED] + w.c_ev[LW_DTLS_EV_TIMEOUT], 1);
    ck_assert_uint_eq(w.s_ev[LW_DTLS_EV_ESTABLISHED], 0);
    ck_assert_int_eq(lw_dtls_client_write(w.c, (const uint8_t *)"x", 1, w.now) < 0, 1);
    tw_deinit(&w);
}
END_TEST

START_TEST(retransmit)
{
    struct tw w;
    tw_init(&w, 12, true);
    w.drop_to_c = true; /* the HelloVerifyRequest is lost */
    handshake(&w);
    ck_assert(!lw_dtls_client_established(w.c));
    unsigned sent = w.to_s_sends;
    uint64_t t = lw_dtls_client_next_timeout(w.c);
    ck_assert_int_eq(lw_dtls_client_timeout(w.c, t - 1), 0); /* early: nothing */
    ck_assert_uint_eq(w.to_s_sends, sent);
    w.now = t;
    w.drop_to_c = false;
    ck_assert_int_eq(lw_dtls_client_timeout(w.c, w.now), 0);
    ck_assert_uint_eq(w.to_s_sends, sent + 1); /* ClientHello again */
    ck_assert(lw_dtls_client_next_timeout(w.c) > t);
    pump(&w);
    ck_assert(lw_dtls_client_established(w.c));
    tw_deinit(&w);
}
END_TEST

START_TEST(deadline)
{
    struct tw w;
    tw_init(&w, 13, true);
    w.drop_to_c = true;
    handshake(&w);
    int rc = 0;
    for (int i = 0; i < 100 && rc == 0; i++) {
        w.now = lw_dtls_client_next_timeout(w.c);
        rc = lw_dtls_client_timeout(w.c, w.now);
        w.to_s.n = 0;
    }
    ck_assert_int_eq(rc, LW_ETIMEDOUT);
    ck_assert_uint_eq(w.c_ev[LW_DTLS_EV_TIMEOUT], 1);
    ck_assert_uint_eq(lw_dtls_client_next_timeout(w.c), UINT64_MAX);
    ck_assert_int_eq(lw_dtls_client_input(w.c, (const uint8_t *)"\x16", 1, w.now), LW_ECANCELED);
    tw_deinit(&w);
}
END_TEST

START_TEST(garbage)
{
    struct tw w;
    tw_init(&w, 12, true);
    handshake(&w);
    ck_assert(lw_dtls_client_established(w.c));
    static const uint8_t junk[][16] = {
        {0x17, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9, 0, 3, 1, 2, 3}, {0x19, 0xfe, 0xfd}, {0x16}};
    for (size_t i = 0; i < 3; i++)
        lw_dtls_client_input(w.c, junk[i], i == 0 ? 16 : i == 1 ? 3 : 1, w.now);
    ck_assert(lw_dtls_client_established(w.c));
    tw_deinit(&w);
}
END_TEST

START_TEST(bad_config)
{
    struct lw_dtls_client_ctx *c = NULL;
    struct lw_dtls_client_cfg cfg = {.version = 11};
    ck_assert_int_eq(lw_dtls_client_ctx_new(&cfg, &cops, &c), LW_ECONFIG);
    cfg.version = 12;
    cfg.ciphers = "NO-SUCH-SUITE";
    ck_assert_int_eq(lw_dtls_client_ctx_new(&cfg, &cops, &c), LW_ECONFIG);
    struct lw_dtls_client_ops nopsk = {c_send, c_deliver, c_event, NULL};
    cfg.ciphers = NULL;
    ck_assert_int_eq(lw_dtls_client_ctx_new(&cfg, &nopsk, &c), LW_ECONFIG);
    ck_assert_ptr_null(c);
}
END_TEST

Suite *suite_client(void);
Suite *suite_client(void)
{
    Suite *s = suite_create("dtls_client");
    TCase *tc = tcase_create("client");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, v12_cid);
    tcase_add_test(tc, v12_no_cid);
    tcase_add_test(tc, v13_cid);
    tcase_add_test(tc, wrong_key);
    tcase_add_test(tc, retransmit);
    tcase_add_test(tc, deadline);
    tcase_add_test(tc, garbage);
    tcase_add_test(tc, bad_config);
    suite_add_tcase(s, tc);
    return s;
}
