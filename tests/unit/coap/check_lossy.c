/* Property test: two exchange endpoints (a server issuing requests, a device answering them,
 * sometimes separately) talk over a simulated link that drops, duplicates and delays datagrams,
 * on a fake clock with deterministic randomness. Every request must complete exactly once, the
 * device must process each request at most once (deduplication), and with a modest loss rate
 * nearly all requests must succeed thanks to retransmission. */
#include "coap/coap.h"
#include "base/err.h"
#include "base/util.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#define NREQ    60
#define MAXQ    4096
#define LATENCY 40

struct pkt {
    uint64_t at;
    int to; /* 0: server, 1: device */
    size_t len;
    uint8_t data[256];
};

struct sim {
    struct lw_coap_env env[2];
    struct lw_coap_ep ep[2];
    struct pkt q[MAXQ];
    size_t nq;
    uint64_t now;
    uint32_t rnd;
    int loss_pct, dup_pct;
    /* server side */
    int done[NREQ + 1]; /* completions per cookie */
    int ok;
    /* device side */
    uint8_t seen_tok[NREQ * 2][8];
    int nseen;
    struct lw_coap_req_ref pending[NREQ];
    int npending;
};

static struct sim *S;

static uint32_t sim_rand(struct sim *s)
{
    s->rnd = s->rnd * 1103515245u + 12345u;
    return s->rnd >> 8;
}

static int rnd_cb(void *rctx, void *out, size_t len)
{
    struct sim *s = rctx;
    uint8_t *p = out;
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)sim_rand(s);
    return 0;
}

static void enqueue(struct sim *s, int to, const uint8_t *d, size_t len)
{
    ck_assert_uint_le(len, sizeof(s->q[0].data));
    int copies = 1;
    if ((int)(sim_rand(s) % 100) < s->loss_pct)
        copies = 0;
    else if ((int)(sim_rand(s) % 100) < s->dup_pct)
        copies = 2;
    for (int c = 0; c < copies; c++) {
        ck_assert_uint_lt(s->nq, MAXQ);
        struct pkt *p = &s->q[s->nq++];
        p->at = s->now + LATENCY + sim_rand(s) % 200; /* reordering through jitter */
        p->to = to;
        p->len = len;
        memcpy(p->data, d, len);
    }
}

static void send_srv(void *ctx, const uint8_t *d, size_t len)
{
    enqueue(ctx, 1, d, len);
}

static void send_dev(void *ctx, const uint8_t *d, size_t len)
{
    enqueue(ctx, 0, d, len);
}

static void srv_request(void *ctx, struct lw_coap_ep *ep, const struct lw_coap_msg *m, uint64_t now)
{
    (void)ctx;
    (void)ep;
    (void)m;
    (void)now;
    ck_abort_msg("the device sends no requests");
}

static void srv_response(void *ctx, struct lw_coap_ep *ep, struct lw_coap_handle h, uint64_t cookie,
                         int result, const struct lw_coap_msg *msg)
{
    struct sim *s = ctx;
    (void)ep;
    (void)h;
    ck_assert_uint_ge(cookie, 1);
    ck_assert_uint_le(cookie, NREQ);
    s->done[cookie]++;
    if (result == LW_COAP_RES_RESPONSE) {
        ck_assert_ptr_nonnull(msg);
        ck_assert_uint_eq(msg->code, LW_COAP_CONTENT);
        /* The payload echoes the cookie carried in the request's Uri-Query. */
        char want[16];
        snprintf(want, sizeof(want), "r%u", (unsigned)cookie);
        ck_assert(lw_bytes_eq_str(msg->payload, want));
        s->ok++;
    } else {
        ck_assert_int_eq(result, LW_COAP_RES_TIMEOUT);
    }
}

static void dev_answer(struct sim *s, const struct lw_coap_req_ref *ref, const char *q)
{
    struct lw_coap_msg r;
    lw_coap_msg_init(&r, 0, LW_COAP_CONTENT);
    char body[16];
    snprintf(body, sizeof(body), "r%s", q);
    r.payload = LW_BYTES_STR(body);
    ck_assert_int_eq(lw_coap_ep_respond(&s->ep[1], ref, &r, s->now), 0);
}

static char dev_query[NREQ][8];

static void dev_request(void *ctx, struct lw_coap_ep *ep, const struct lw_coap_msg *m, uint64_t now)
{
    struct sim *s = ctx;
    (void)ep;
    (void)now;
    /* Each request is processed once: its token is new. */
    for (int i = 0; i < s->nseen; i++)
        ck_assert_msg(memcmp(s->seen_tok[i], m->token, 8) != 0, "request processed twice");
    ck_assert_int_lt(s->nseen, NREQ * 2);
    memcpy(s->seen_tok[s->nseen++], m->token, 8);
    struct lw_bytes q;
    ck_assert_int_eq(lw_coap_get_bytes(m, LW_COAP_OPT_URI_QUERY, &q), 0);
    char qs[8] = {0};
    memcpy(qs, q.ptr, LW_MIN(q.len, sizeof(qs) - 1));
    struct lw_coap_req_ref ref = lw_coap_req_ref_of(m);
    if (sim_rand(s) % 3 == 0 && s->npending < NREQ) {
        /* Answer later (separate response if the request was a CON). */
        memcpy(dev_query[s->npending], qs, sizeof(qs));
        s->pending[s->npending++] = ref;
        return;
    }
    dev_answer(s, &ref, qs);
}

static const struct lw_coap_ops srv_ops = {send_srv, srv_request, srv_response, NULL};
static const struct lw_coap_ops dev_ops = {send_dev, dev_request, NULL, NULL};

static void run(int loss, int dup, uint32_t seed, int *ok_out)
{
    struct sim *s = calloc(1, sizeof(*s));
    S = s;
    s->rnd = seed;
    s->loss_pct = loss;
    s->dup_pct = dup;
    s->now = 1000;
    struct lw_coap_cfg cfg = {.random = rnd_cb, .rctx = s};
    ck_assert_int_eq(lw_coap_env_init(&s->env[0], &cfg, &srv_ops), 0);
    ck_assert_int_eq(lw_coap_env_init(&s->env[1], &cfg, &dev_ops), 0);
    lw_coap_ep_init(&s->ep[0], &s->env[0], s);
    lw_coap_ep_init(&s->ep[1], &s->env[1], s);
    for (unsigned i = 1; i <= NREQ; i++) {
        struct lw_coap_msg m;
        lw_coap_msg_init(&m, LW_COAP_CON, LW_COAP_GET);
        char q[8];
        snprintf(q, sizeof(q), "%u", i);
        lw_coap_add_uri_path(&m, "3/0/0");
        lw_coap_add_str(&m, LW_COAP_OPT_URI_QUERY, q);
        ck_assert_int_eq(lw_coap_ep_request(&s->ep[0], &m, i, s->now, NULL), 0);
    }
    /* Event loop: deliver due packets, answer pending requests, run timers. */
    for (int step = 0; step < 200000 && lw_coap_ep_pending(&s->ep[0]) > 0; step++) {
        uint64_t next = UINT64_MAX;
        for (size_t i = 0; i < s->nq; i++)
            next = LW_MIN(next, s->q[i].at);
        next = LW_MIN(next, lw_coap_ep_next_deadline(&s->ep[0]));
        if (s->npending)
            next = LW_MIN(next, s->now + 500);
        ck_assert_uint_ne(next, UINT64_MAX);
        if (next > s->now)
            s->now = next;
        for (size_t i = 0; i < s->nq;) {
            if (s->q[i].at <= s->now) {
                struct pkt p = s->q[i];
                s->q[i] = s->q[--s->nq];
                lw_coap_ep_input(&s->ep[p.to], p.data, p.len, s->now);
            } else {
                i++;
            }
        }
        if (s->npending && sim_rand(s) % 4 == 0) {
            struct lw_coap_req_ref ref = s->pending[0];
            char q[8];
            memcpy(q, dev_query[0], sizeof(q));
            memmove(s->pending, s->pending + 1, (size_t)(s->npending - 1) * sizeof(ref));
            memmove(dev_query, dev_query + 1, (size_t)(s->npending - 1) * sizeof(dev_query[0]));
            s->npending--;
            dev_answer(s, &ref, q);
        }
        lw_coap_ep_timeout(&s->ep[0], s->now);
        lw_coap_ep_timeout(&s->ep[1], s->now);
    }
    ck_assert_uint_eq(lw_coap_ep_pending(&s->ep[0]), 0);
    for (int i = 1; i <= NREQ; i++)
        ck_assert_msg(s->done[i] == 1, "request %d completed %d times", i, s->done[i]);
    *ok_out = s->ok;
    lw_coap_ep_deinit(&s->ep[0]);
    lw_coap_ep_deinit(&s->ep[1]);
    free(s);
}

START_TEST(test_lossless)
{
    int ok;
    run(0, 0, 1, &ok);
    ck_assert_int_eq(ok, NREQ);
}
END_TEST

START_TEST(test_lossy)
{
    /* 15 % loss each way, 10 % duplication, jitter: retransmission and dedup keep almost every
     * request alive (a request is lost only if 5 transmissions or their answers all vanish). */
    for (uint32_t seed = 1; seed <= 6; seed++) {
        int ok;
        run(15, 10, seed * 7919, &ok);
        ck_assert_int_ge(ok, NREQ - 2);
    }
}
END_TEST

START_TEST(test_very_lossy)
{
    /* 60 % loss: many time out, but each request still completes exactly once. */
    int ok;
    run(60, 20, 4242, &ok);
    ck_assert_int_lt(ok, NREQ);
}
END_TEST

Suite *suite_lossy(void);
Suite *suite_lossy(void)
{
    Suite *s = suite_create("coap_lossy");
    TCase *tc = tcase_create("lossy");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_lossless);
    tcase_add_test(tc, test_lossy);
    tcase_add_test(tc, test_very_lossy);
    suite_add_tcase(s, tc);
    return s;
}
