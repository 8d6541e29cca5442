/* Unit tests for the per-peer exchange layer on a fake clock with a deterministic random source:
 * dedup and replay, piggybacked and separate responses, retransmission and timeouts, NSTART
 * queueing, RST handling, pings, observations (ordering, passive and active cancel) and automatic
 * Block1 / Block2 transfers. */
#include "coap/coap.h"
#include "base/err.h"
#include "base/util.h"

#include <check.h>
#include <stdlib.h>

/* ---- harness ----------------------------------------------------------------------------- */

#define MAXREC 128

struct dgram {
    uint8_t data[LW_COAP_MAX_DGRAM];
    size_t len;
};

struct rec_resp {
    uint32_t id;
    uint64_t cookie;
    int result;
    uint8_t code;
    size_t plen;
    uint8_t payload[8192];
};

struct rec_notify {
    uint32_t id;
    uint64_t cookie;
    unsigned flags;
    uint8_t code;
    char payload[32];
};

struct harness {
    struct lw_coap_env env;
    struct lw_coap_ep ep;
    struct dgram sent[MAXREC];
    int nsent;
    struct lw_coap_req_ref reqs[MAXREC];
    uint8_t req_code[MAXREC];
    int nreq;
    struct rec_resp resp[16];
    int nresp;
    struct rec_notify notes[MAXREC];
    int nnotes;
    /* behaviour of on_request: 0 = answer 2.04 piggybacked at once, 1 = do nothing */
    int mode;
    uint32_t rnd_state;
    uint8_t rnd_byte; /* when non-zero: every random byte has this value */
};

static struct harness *H;

static int fake_random(void *rctx, void *out, size_t len)
{
    struct harness *h = rctx;
    uint8_t *p = out;
    for (size_t i = 0; i < len; i++) {
        h->rnd_state = h->rnd_state * 1103515245u + 12345u;
        p[i] = h->rnd_byte ? h->rnd_byte : (uint8_t)(h->rnd_state >> 16);
    }
    return 0;
}

static void cb_send(void *ctx, const uint8_t *data, size_t len)
{
    struct harness *h = ctx;
    ck_assert_int_lt(h->nsent, MAXREC);
    ck_assert_uint_le(len, LW_COAP_MAX_DGRAM);
    memcpy(h->sent[h->nsent].data, data, len);
    h->sent[h->nsent].len = len;
    h->nsent++;
}

static void cb_request(void *ctx, struct lw_coap_ep *ep, const struct lw_coap_msg *msg,
                       uint64_t now)
{
    struct harness *h = ctx;
    ck_assert_int_lt(h->nreq, MAXREC);
    h->reqs[h->nreq] = lw_coap_req_ref_of(msg);
    h->req_code[h->nreq] = msg->code;
    h->nreq++;
    if (h->mode == 0) {
        struct lw_coap_msg r;
        lw_coap_msg_init(&r, 0, LW_COAP_CHANGED);
        ck_assert_int_eq(lw_coap_ep_respond(ep, &h->reqs[h->nreq - 1], &r, now), 0);
    }
}

static void cb_response(void *ctx, struct lw_coap_ep *ep, struct lw_coap_handle hd, uint64_t cookie,
                        int result, const struct lw_coap_msg *msg)
{
    struct harness *h = ctx;
    (void)ep;
    ck_assert_int_lt(h->nresp, 16);
    struct rec_resp *r = &h->resp[h->nresp++];
    r->id = hd.id;
    r->cookie = cookie;
    r->result = result;
    r->code = msg ? msg->code : 0;
    r->plen = msg ? msg->payload.len : 0;
    if (msg && msg->payload.len) {
        ck_assert_uint_le(msg->payload.len, sizeof(r->payload));
        memcpy(r->payload, msg->payload.ptr, msg->payload.len);
    }
}

static void cb_notify(void *ctx, struct lw_coap_ep *ep, struct lw_coap_handle hd, uint64_t cookie,
                      const struct lw_coap_msg *msg, unsigned flags)
{
    struct harness *h = ctx;
    (void)ep;
    ck_assert_int_lt(h->nnotes, MAXREC);
    struct rec_notify *n = &h->notes[h->nnotes++];
    n->id = hd.id;
    n->cookie = cookie;
    n->flags = flags;
    n->code = msg->code;
    size_t l = LW_MIN(msg->payload.len, sizeof(n->payload) - 1);
    if (l)
        memcpy(n->payload, msg->payload.ptr, l);
    n->payload[l] = 0;
}

static const struct lw_coap_ops ops = {cb_send, cb_request, cb_response, cb_notify};

static struct harness *setup(const struct lw_coap_cfg *cfg_in)
{
    struct harness *h = calloc(1, sizeof(*h));
    struct lw_coap_cfg cfg = {0};
    if (cfg_in)
        cfg = *cfg_in;
    cfg.random = fake_random;
    cfg.rctx = h;
    h->rnd_state = 42;
    ck_assert_int_eq(lw_coap_env_init(&h->env, &cfg, &ops), 0);
    lw_coap_ep_init(&h->ep, &h->env, h);
    H = h;
    return h;
}

static void teardown_h(struct harness *h)
{
    lw_coap_ep_deinit(&h->ep);
    free(h);
}

/* Feeds a message built from m (serialized). Returns lw_coap_ep_input's result. */
static int feed(struct harness *h, const struct lw_coap_msg *m, uint64_t now)
{
    uint8_t mem[8192];
    struct lw_buf b;
    lw_buf_init_fixed(&b, mem, sizeof(mem));
    ck_assert_int_eq(lw_coap_serialize(m, &b), 0);
    return lw_coap_ep_input(&h->ep, b.data, b.len, now);
}

static int feed_raw(struct harness *h, const void *d, size_t n, uint64_t now)
{
    return lw_coap_ep_input(&h->ep, d, n, now);
}

/* Parses the i-th sent datagram. */
static struct lw_coap_msg sent_msg(struct harness *h, int i)
{
    struct lw_coap_msg m;
    ck_assert_int_lt(i, h->nsent);
    ck_assert_int_eq(lw_coap_parse(&m, h->sent[i].data, h->sent[i].len, NULL, NULL), 0);
    return m;
}

static struct lw_coap_msg last_sent(struct harness *h)
{
    return sent_msg(h, h->nsent - 1);
}

static void mk(struct lw_coap_msg *m, uint8_t type, uint8_t code, uint16_t mid, const char *tok)
{
    lw_coap_msg_init(m, type, code);
    m->mid = mid;
    m->tkl = (uint8_t)strlen(tok);
    memcpy(m->token, tok, m->tkl);
}

/* A reply to sent message s (same token), piggybacked (ACK, same MID) or separate. */
static void mk_reply(struct lw_coap_msg *m, const struct lw_coap_msg *s, uint8_t type, uint8_t code,
                     uint16_t mid)
{
    lw_coap_msg_init(m, type, code);
    m->mid = type == LW_COAP_ACK ? s->mid : mid;
    m->tkl = s->tkl;
    memcpy(m->token, s->token, s->tkl);
}

/* ---- incoming requests ------------------------------------------------------------------- */

START_TEST(test_ping_and_stray)
{
    struct harness *h = setup(NULL);
    ck_assert_int_eq(feed_raw(h, "\x40\x00\x12\x34", 4, 0), 0);
    ck_assert_int_eq(h->nsent, 1);
    ck_assert_uint_eq(h->sent[0].len, 4);
    ck_assert_mem_eq(h->sent[0].data, "\x70\x00\x12\x34", 4);
    /* Stray ACK/RST: ignored. */
    ck_assert_int_eq(feed_raw(h, "\x60\x00\x00\x01", 4, 0), LW_ENOENT);
    ck_assert_int_eq(feed_raw(h, "\x70\x00\x00\x01", 4, 0), LW_ENOENT);
    /* Malformed CON: RST; malformed NON/ACK: silence. */
    ck_assert_int_eq(feed_raw(h, "\x40\x01\x00\x07\xff", 5, 0), LW_EMALFORMED);
    ck_assert_int_eq(h->nsent, 2);
    ck_assert_mem_eq(h->sent[1].data, "\x70\x00\x00\x07", 4);
    ck_assert_int_eq(feed_raw(h, "\x50\x01\x00\x08\xff", 5, 0), LW_EMALFORMED);
    ck_assert_int_eq(feed_raw(h, "\x60\x45\x00\x09\xf1", 5, 0), LW_EMALFORMED);
    ck_assert_int_eq(feed_raw(h, "\x40\x01", 2, 0), LW_EMALFORMED);
    ck_assert_int_eq(feed_raw(h, "\x80\x01\x00\x01", 4, 0), LW_EMALFORMED); /* version 2 */
    ck_assert_int_eq(h->nsent, 2);
    /* Reserved class in a CON: RST. Request in an ACK: dropped. */
    ck_assert_int_eq(feed_raw(h, "\x40\xe0\x00\x0a", 4, 0), LW_EPROTO);
    ck_assert_int_eq(h->nsent, 3);
    ck_assert_mem_eq(h->sent[2].data, "\x70\x00\x00\x0a", 4);
    ck_assert_int_eq(feed_raw(h, "\x60\x01\x00\x0b", 4, 0), LW_EPROTO);
    ck_assert_int_eq(h->nsent, 3);
    ck_assert_int_eq(h->nreq, 0);
    teardown_h(h);
}
END_TEST

START_TEST(test_bad_option_402)
{
    struct harness *h = setup(NULL);
    /* CON GET with unknown critical option 13: 4.02 piggybacked, cached for the duplicate. */
    const uint8_t d[] = {0x41, 0x01, 0x00, 0x05, 0xaa, 0xd0, 0x00};
    ck_assert_int_eq(feed_raw(h, d, sizeof(d), 0), LW_EBADOPT);
    ck_assert_int_eq(h->nsent, 1);
    struct lw_coap_msg r = sent_msg(h, 0);
    ck_assert_uint_eq(r.type, LW_COAP_ACK);
    ck_assert_uint_eq(r.code, LW_COAP_BAD_OPTION);
    ck_assert_uint_eq(r.mid, 5);
    ck_assert_uint_eq(r.tkl, 1);
    ck_assert_uint_eq(r.token[0], 0xaa);
    ck_assert_int_eq(feed_raw(h, d, sizeof(d), 1000), LW_EEXIST);
    ck_assert_int_eq(h->nsent, 2);
    ck_assert_mem_eq(h->sent[1].data, h->sent[0].data, h->sent[0].len);
    /* Same in a NON: dropped. */
    const uint8_t n[] = {0x51, 0x01, 0x00, 0x06, 0xaa, 0xd0, 0x00};
    ck_assert_int_eq(feed_raw(h, n, sizeof(n), 0), LW_EBADOPT);
    ck_assert_int_eq(h->nsent, 2);
    ck_assert_int_eq(h->nreq, 0);
    teardown_h(h);
}
END_TEST

START_TEST(test_piggyback_and_dedup)
{
    struct harness *h = setup(NULL);
    struct lw_coap_msg m;
    mk(&m, LW_COAP_CON, LW_COAP_POST, 0x61ed, "\xed\x61\xa0\x45");
    lw_coap_add_uri_path(&m, "rd/abc");
    ck_assert_int_eq(feed(h, &m, 1000), 0);
    ck_assert_int_eq(h->nreq, 1);
    ck_assert_uint_eq(h->req_code[0], LW_COAP_POST);
    ck_assert_int_eq(h->nsent, 1);
    struct lw_coap_msg r = sent_msg(h, 0);
    ck_assert_uint_eq(r.type, LW_COAP_ACK);
    ck_assert_uint_eq(r.code, LW_COAP_CHANGED);
    ck_assert_uint_eq(r.mid, 0x61ed);
    ck_assert_mem_eq(r.token, "\xed\x61\xa0\x45", 4);
    /* Duplicate: same bytes again, no second on_request. */
    ck_assert_int_eq(feed(h, &m, 3000), LW_EEXIST);
    ck_assert_int_eq(h->nreq, 1);
    ck_assert_int_eq(h->nsent, 2);
    ck_assert_uint_eq(h->sent[1].len, h->sent[0].len);
    ck_assert_mem_eq(h->sent[1].data, h->sent[0].data, h->sent[0].len);
    ck_assert_uint_eq(lw_coap_ep_next_deadline(&h->ep), 1000 + 247000);
    /* Still a duplicate just before EXCHANGE_LIFETIME, a new request after it. */
    ck_assert_int_eq(feed(h, &m, 1000 + 246999), LW_EEXIST);
    lw_coap_ep_timeout(&h->ep, 1000 + 247000);
    ck_assert_uint_eq(lw_coap_ep_next_deadline(&h->ep), UINT64_MAX); /* ring freed */
    ck_assert_int_eq(feed(h, &m, 1000 + 247000), 0);
    ck_assert_int_eq(h->nreq, 2);

    /* NON requests: deduplicated for NON_LIFETIME, never acknowledged; NON response. */
    mk(&m, LW_COAP_NON, LW_COAP_POST, 0x0200, "\x01");
    ck_assert_int_eq(feed(h, &m, 2000), 0);
    ck_assert_int_eq(h->nreq, 3);
    r = last_sent(h);
    ck_assert_uint_eq(r.type, LW_COAP_NON);
    ck_assert_uint_eq(r.code, LW_COAP_CHANGED);
    ck_assert_uint_ne(r.mid, 0x0200);
    int ns = h->nsent;
    struct lw_coap_msg again;
    lw_coap_msg_init(&again, 0, LW_COAP_CHANGED);
    ck_assert_int_eq(lw_coap_ep_respond(&h->ep, &h->reqs[2], &again, 2000), LW_EEXIST);
    ck_assert_int_eq(feed(h, &m, 2000 + 144999), LW_EEXIST);
    ck_assert_int_eq(h->nsent, ns);
    ck_assert_int_eq(feed(h, &m, 2000 + 145000), 0);
    ck_assert_int_eq(h->nreq, 4);
    teardown_h(h);
}
END_TEST

START_TEST(test_dedup_bounded)
{
    struct lw_coap_cfg cfg = {.dedup_entries = 4};
    struct harness *h = setup(&cfg);
    struct lw_coap_msg m;
    for (int i = 0; i < 100; i++) {
        mk(&m, LW_COAP_CON, LW_COAP_POST, (uint16_t)(100 + i), "t");
        ck_assert_int_eq(feed(h, &m, (uint64_t)i), 0);
    }
    ck_assert_int_eq(h->nreq, 100);
    /* Only the 4 latest are remembered: MID 199 is a duplicate, MID 100 is not. */
    mk(&m, LW_COAP_CON, LW_COAP_POST, 199, "t");
    ck_assert_int_eq(feed(h, &m, 200), LW_EEXIST);
    mk(&m, LW_COAP_CON, LW_COAP_POST, 100, "t");
    ck_assert_int_eq(feed(h, &m, 200), 0);
    ck_assert_int_eq(h->nreq, 101);
    /* A long reply (heap-cached) is replayed exactly. */
    h->mode = 1;
    mk(&m, LW_COAP_CON, LW_COAP_GET, 500, "tok");
    ck_assert_int_eq(feed(h, &m, 300), 0);
    struct lw_coap_msg r;
    lw_coap_msg_init(&r, 0, LW_COAP_CONTENT);
    static char big[900];
    memset(big, 'b', sizeof(big));
    r.payload = LW_BYTES(big, sizeof(big));
    ck_assert_int_eq(lw_coap_ep_respond(&h->ep, &h->reqs[h->nreq - 1], &r, 300), 0);
    int first = h->nsent - 1;
    ck_assert_int_eq(feed(h, &m, 400), LW_EEXIST);
    ck_assert_uint_eq(h->sent[h->nsent - 1].len, h->sent[first].len);
    ck_assert_mem_eq(h->sent[h->nsent - 1].data, h->sent[first].data, h->sent[first].len);
    /* Replies of 32 bytes (cached in the entry) and 33 (heap copy) are replayed exactly too:
     * 4 header + 3 token + marker + payload. */
    for (size_t plen = 24; plen <= 25; plen++) {
        struct lw_coap_msg q, a;
        mk(&q, LW_COAP_CON, LW_COAP_GET, (uint16_t)(600 + plen), "tok");
        ck_assert_int_eq(feed(h, &q, 300), 0);
        lw_coap_msg_init(&a, 0, LW_COAP_CONTENT);
        a.payload = LW_BYTES(big, plen);
        ck_assert_int_eq(lw_coap_ep_respond(&h->ep, &h->reqs[h->nreq - 1], &a, 300), 0);
        int sent = h->nsent - 1;
        ck_assert_uint_eq(h->sent[sent].len, 8 + plen);
        ck_assert_int_eq(feed(h, &q, 301), LW_EEXIST);
        ck_assert_uint_eq(h->sent[h->nsent - 1].len, h->sent[sent].len);
        ck_assert_mem_eq(h->sent[h->nsent - 1].data, h->sent[sent].data, h->sent[sent].len);
    }
    /* Answering twice is refused. */
    ck_assert_int_eq(lw_coap_ep_respond(&h->ep, &h->reqs[h->nreq - 1], &r, 300), LW_EEXIST);
    teardown_h(h);
}
END_TEST

START_TEST(test_separate_response)
{
    struct harness *h = setup(NULL);
    h->mode = 1; /* answer later */
    struct lw_coap_msg m;
    mk(&m, LW_COAP_CON, LW_COAP_POST, 0x0100, "\x11\x22");
    ck_assert_int_eq(feed(h, &m, 0), 0);
    ck_assert_int_eq(h->nsent, 0);
    /* Retransmission while we are still busy: Empty ACK (switch to a separate response). */
    ck_assert_int_eq(feed(h, &m, 2500), LW_EEXIST);
    ck_assert_int_eq(h->nsent, 1);
    ck_assert_mem_eq(h->sent[0].data, "\x60\x00\x01\x00", 4);
    ck_assert_int_eq(feed(h, &m, 5000), LW_EEXIST);
    ck_assert_int_eq(h->nsent, 2);
    ck_assert_mem_eq(h->sent[1].data, "\x60\x00\x01\x00", 4);
    /* The answer goes out as a CON with a new MID and the request's token. */
    struct lw_coap_msg r;
    lw_coap_msg_init(&r, 0, LW_COAP_CREATED);
    ck_assert_int_eq(lw_coap_ep_respond(&h->ep, &h->reqs[0], &r, 6000), 0);
    ck_assert_int_eq(h->nsent, 3);
    struct lw_coap_msg s = sent_msg(h, 2);
    ck_assert_uint_eq(s.type, LW_COAP_CON);
    ck_assert_uint_eq(s.code, LW_COAP_CREATED);
    ck_assert_uint_ne(s.mid, 0x0100);
    ck_assert_uint_eq(s.tkl, 2);
    ck_assert_mem_eq(s.token, "\x11\x22", 2);
    /* Never in an ACK afterwards: a retransmitted request still gets the Empty ACK. */
    ck_assert_int_eq(feed(h, &m, 6500), LW_EEXIST);
    ck_assert_mem_eq(h->sent[3].data, "\x60\x00\x01\x00", 4);
    /* The separate response is retransmitted until ACKed. */
    uint64_t dl = lw_coap_ep_next_deadline(&h->ep);
    ck_assert_uint_ge(dl, 6000 + 2000);
    ck_assert_uint_le(dl, 6000 + 3000);
    lw_coap_ep_timeout(&h->ep, dl);
    ck_assert_int_eq(h->nsent, 5);
    ck_assert_mem_eq(h->sent[4].data, h->sent[2].data, h->sent[2].len);
    ck_assert_int_eq(
        feed_raw(h, (uint8_t[]){0x60, 0, (uint8_t)(s.mid >> 8), (uint8_t)s.mid}, 4, dl + 10), 0);
    ck_assert_uint_eq(lw_coap_ep_pending(&h->ep), 0);
    lw_coap_ep_timeout(&h->ep, dl + 100000);
    ck_assert_int_eq(h->nsent, 5);
    ck_assert_int_eq(h->nresp, 0); /* separate responses do not report */

    /* lw_coap_ep_accept then respond: same pattern; NON request gets a NON response. */
    mk(&m, LW_COAP_CON, LW_COAP_POST, 0x0101, "\x33");
    ck_assert_int_eq(feed(h, &m, 200000), 0);
    ck_assert_int_eq(lw_coap_ep_accept(&h->ep, &h->reqs[1], 200000), 0);
    ck_assert_mem_eq(h->sent[h->nsent - 1].data, "\x60\x00\x01\x01", 4);
    ck_assert_int_eq(lw_coap_ep_accept(&h->ep, &h->reqs[1], 200000), 0);
    ck_assert_int_eq(lw_coap_ep_respond(&h->ep, &h->reqs[1], &r, 200001), 0);
    ck_assert_uint_eq(last_sent(h).type, LW_COAP_CON);
    ck_assert_int_eq(lw_coap_ep_respond(&h->ep, &h->reqs[1], &r, 200001), LW_EEXIST);
    /* The peer RSTs the separate response: dropped silently. */
    s = last_sent(h);
    ck_assert_int_eq(
        feed_raw(h, (uint8_t[]){0x70, 0, (uint8_t)(s.mid >> 8), (uint8_t)s.mid}, 4, 200002), 0);
    ck_assert_uint_eq(lw_coap_ep_next_deadline(&h->ep), 200000 + 247000);
    teardown_h(h);
}
END_TEST

/* ---- server-originated requests ---------------------------------------------------------- */

static struct lw_coap_handle send_get(struct harness *h, const char *path, uint64_t cookie,
                                      uint64_t now, bool observe)
{
    struct lw_coap_msg m;
    lw_coap_msg_init(&m, LW_COAP_CON, LW_COAP_GET);
    lw_coap_add_uri_path(&m, path);
    if (observe)
        lw_coap_add_uint(&m, LW_COAP_OPT_OBSERVE, 0);
    struct lw_coap_handle hd = {0};
    ck_assert_int_eq(lw_coap_ep_request(&h->ep, &m, cookie, now, &hd), 0);
    ck_assert_uint_ne(hd.id, 0);
    return hd;
}

START_TEST(test_retransmit_timeout)
{
    struct harness *h = setup(NULL);
    struct lw_coap_handle hd = send_get(h, "3/0/0", 77, 1000, false);
    ck_assert_int_eq(h->nsent, 1);
    struct lw_coap_msg s = sent_msg(h, 0);
    ck_assert_uint_eq(s.type, LW_COAP_CON);
    ck_assert_uint_eq(s.tkl, 8);
    uint64_t t0 = lw_coap_ep_next_deadline(&h->ep);
    ck_assert_uint_ge(t0, 1000 + 2000);
    ck_assert_uint_le(t0, 1000 + 3000);
    uint64_t timeout = t0 - 1000;
    uint64_t now = t0;
    /* 4 retransmissions with doubling timeouts, then a timeout result (§4.2). */
    for (int i = 1; i <= 4; i++) {
        lw_coap_ep_timeout(&h->ep, now - 1);
        ck_assert_int_eq(h->nsent, i);
        lw_coap_ep_timeout(&h->ep, now);
        ck_assert_int_eq(h->nsent, i + 1);
        ck_assert_uint_eq(h->sent[i].len, h->sent[0].len);
        ck_assert_mem_eq(h->sent[i].data, h->sent[0].data, h->sent[0].len);
        timeout *= 2;
        ck_assert_uint_eq(lw_coap_ep_next_deadline(&h->ep), now + timeout);
        now += timeout;
    }
    ck_assert_int_eq(h->nresp, 0);
    lw_coap_ep_timeout(&h->ep, now);
    ck_assert_int_eq(h->nsent, 5);
    ck_assert_int_eq(h->nresp, 1);
    ck_assert_uint_eq(h->resp[0].id, hd.id);
    ck_assert_uint_eq(h->resp[0].cookie, 77);
    ck_assert_int_eq(h->resp[0].result, LW_COAP_RES_TIMEOUT);
    ck_assert_uint_eq(lw_coap_ep_pending(&h->ep), 0);
    /* Total span with the minimal factor: 2+4+8+16+32 = 62 s. */
    ck_assert_uint_eq(now - 1000, timeout * 2 - (t0 - 1000));
    teardown_h(h);
}
END_TEST

START_TEST(test_random_factor)
{
    struct harness *h = setup(NULL);
    h->rnd_byte = 0xff; /* maximal random: timeout close to ACK_TIMEOUT * 1.5 */
    send_get(h, "1", 0, 0, false);
    uint64_t t = lw_coap_ep_next_deadline(&h->ep);
    ck_assert_uint_ge(t, 2999);
    ck_assert_uint_le(t, 3000);
    teardown_h(h);
    struct lw_coap_cfg cfg = {
        .ack_timeout_ms = 10000, .ack_random_factor_pct = 200, .max_retransmit = 1};
    h = setup(&cfg);
    h->rnd_byte = 0x80;
    send_get(h, "1", 0, 0, false);
    t = lw_coap_ep_next_deadline(&h->ep);
    ck_assert_uint_ge(t, 14990);
    ck_assert_uint_le(t, 15020);
    lw_coap_ep_timeout(&h->ep, t);
    ck_assert_int_eq(h->nsent, 2);
    lw_coap_ep_timeout(&h->ep, lw_coap_ep_next_deadline(&h->ep));
    ck_assert_int_eq(h->nresp, 1);
    ck_assert_int_eq(h->resp[0].result, LW_COAP_RES_TIMEOUT);
    teardown_h(h);
}
END_TEST

START_TEST(test_piggybacked_response_and_nstart)
{
    struct harness *h = setup(NULL);
    struct lw_coap_handle a = send_get(h, "3/0/0", 1, 0, false);
    struct lw_coap_handle b = send_get(h, "3/0/1", 2, 0, false);
    struct lw_coap_handle c = send_get(h, "3/0/2", 3, 0, false);
    /* NSTART = 1: only the first is on the wire. */
    ck_assert_int_eq(h->nsent, 1);
    ck_assert_uint_eq(lw_coap_ep_pending(&h->ep), 3);
    struct lw_coap_msg s = sent_msg(h, 0);
    /* Wrong token with the right MID: ignored (§5.3.2). */
    struct lw_coap_msg r;
    mk_reply(&r, &s, LW_COAP_ACK, LW_COAP_CONTENT, 0);
    r.token[0] ^= 1;
    ck_assert_int_eq(feed(h, &r, 100), LW_ENOENT);
    ck_assert_int_eq(h->nresp, 0);
    mk_reply(&r, &s, LW_COAP_ACK, LW_COAP_CONTENT, 0);
    r.payload = LW_BYTES_LIT("Dev");
    ck_assert_int_eq(feed(h, &r, 100), 0);
    ck_assert_int_eq(h->nresp, 1);
    ck_assert_uint_eq(h->resp[0].id, a.id);
    ck_assert_int_eq(h->resp[0].result, LW_COAP_RES_RESPONSE);
    ck_assert_uint_eq(h->resp[0].code, LW_COAP_CONTENT);
    ck_assert_uint_eq(h->resp[0].plen, 3);
    ck_assert_mem_eq(h->resp[0].payload, "Dev", 3);
    /* The next one started, with a different MID and token. */
    ck_assert_int_eq(h->nsent, 2);
    struct lw_coap_msg s2 = sent_msg(h, 1);
    ck_assert_uint_ne(s2.mid, s.mid);
    ck_assert(memcmp(s2.token, s.token, 8) != 0);
    /* A duplicate ACK for the finished one is ignored. */
    ck_assert_int_eq(feed(h, &r, 101), LW_ENOENT);
    /* RST for the second: reset result, the third starts. */
    ck_assert_int_eq(
        feed_raw(h, (uint8_t[]){0x70, 0, (uint8_t)(s2.mid >> 8), (uint8_t)s2.mid}, 4, 200), 0);
    ck_assert_int_eq(h->nresp, 2);
    ck_assert_uint_eq(h->resp[1].id, b.id);
    ck_assert_int_eq(h->resp[1].result, LW_COAP_RES_RESET);
    ck_assert_int_eq(h->nsent, 3);
    /* Cancel the third: canceled result, nothing pending. */
    ck_assert_int_eq(lw_coap_ep_cancel(&h->ep, c, 300), 0);
    ck_assert_int_eq(h->resp[2].result, LW_COAP_RES_CANCELED);
    ck_assert_int_eq(lw_coap_ep_cancel(&h->ep, c, 300), LW_ENOENT);
    ck_assert_uint_eq(lw_coap_ep_pending(&h->ep), 0);
    teardown_h(h);
}
END_TEST

START_TEST(test_nstart_config_and_queue_cancel)
{
    struct lw_coap_cfg cfg = {.nstart = 2};
    struct harness *h = setup(&cfg);
    send_get(h, "1", 1, 0, false);
    send_get(h, "2", 2, 0, false);
    struct lw_coap_handle q = send_get(h, "3", 3, 0, false);
    ck_assert_int_eq(h->nsent, 2);
    /* Canceling a queued request does not send anything. */
    ck_assert_int_eq(lw_coap_ep_cancel(&h->ep, q, 0), 0);
    ck_assert_int_eq(h->nsent, 2);
    ck_assert_int_eq(h->nresp, 1);
    /* Deinit cancels the rest. */
    lw_coap_ep_deinit(&h->ep);
    ck_assert_int_eq(h->nresp, 3);
    ck_assert_int_eq(h->resp[1].result, LW_COAP_RES_CANCELED);
    lw_coap_ep_init(&h->ep, &h->env, h);
    teardown_h(h);
}
END_TEST

START_TEST(test_separate_response_client)
{
    struct harness *h = setup(NULL);
    struct lw_coap_handle a = send_get(h, "3/0", 5, 0, false);
    struct lw_coap_msg s = sent_msg(h, 0);
    /* Empty ACK: no more retransmissions, wait for the separate response. */
    ck_assert_int_eq(
        feed_raw(h, (uint8_t[]){0x60, 0, (uint8_t)(s.mid >> 8), (uint8_t)s.mid}, 4, 100), 0);
    ck_assert_uint_eq(lw_coap_ep_next_deadline(&h->ep), 100 + 93000);
    lw_coap_ep_timeout(&h->ep, 50000);
    ck_assert_int_eq(h->nsent, 1);
    /* The CON response: we ACK it and deliver it once. */
    struct lw_coap_msg r;
    mk_reply(&r, &s, LW_COAP_CON, LW_COAP_CONTENT, 0x4242);
    r.payload = LW_BYTES_LIT("x");
    ck_assert_int_eq(feed(h, &r, 60000), 0);
    ck_assert_int_eq(h->nsent, 2);
    ck_assert_mem_eq(h->sent[1].data, "\x60\x00\x42\x42", 4);
    ck_assert_int_eq(h->nresp, 1);
    ck_assert_uint_eq(h->resp[0].id, a.id);
    ck_assert_int_eq(feed(h, &r, 61000), LW_EEXIST); /* retransmitted response: ACK again */
    ck_assert_int_eq(h->nsent, 3);
    ck_assert_mem_eq(h->sent[2].data, "\x60\x00\x42\x42", 4);
    ck_assert_int_eq(h->nresp, 1);
    /* An unexpected CON response: RST. An unexpected NON response without Observe: dropped. */
    r.mid = 0x4343;
    ck_assert_int_eq(feed(h, &r, 62000), LW_ENOENT);
    ck_assert_mem_eq(h->sent[3].data, "\x70\x00\x43\x43", 4);
    r.type = LW_COAP_NON;
    r.mid = 0x4444;
    ck_assert_int_eq(feed(h, &r, 62000), LW_ENOENT);
    ck_assert_int_eq(h->nsent, 4);

    /* Implicit ACK: a CON response before any ACK completes the request. */
    send_get(h, "3/0", 6, 70000, false);
    s = last_sent(h);
    mk_reply(&r, &s, LW_COAP_CON, LW_COAP_CONTENT, 0x4545);
    ck_assert_int_eq(feed(h, &r, 70001), 0);
    ck_assert_int_eq(h->nresp, 2);
    ck_assert_uint_eq(lw_coap_ep_pending(&h->ep), 0);

    /* Separate response never arrives: timeout after response_timeout. */
    send_get(h, "3/0", 7, 80000, false);
    s = last_sent(h);
    ck_assert_int_eq(
        feed_raw(h, (uint8_t[]){0x60, 0, (uint8_t)(s.mid >> 8), (uint8_t)s.mid}, 4, 80001), 0);
    lw_coap_ep_timeout(&h->ep, 80001 + 93000);
    ck_assert_int_eq(h->nresp, 3);
    ck_assert_int_eq(h->resp[2].result, LW_COAP_RES_TIMEOUT);

    /* NON request: NON response matched by token. */
    struct lw_coap_msg m;
    lw_coap_msg_init(&m, LW_COAP_NON, LW_COAP_GET);
    lw_coap_add_uri_path(&m, "1/0/1");
    struct lw_coap_handle hn;
    ck_assert_int_eq(lw_coap_ep_request(&h->ep, &m, 8, 200000, &hn), 0);
    s = last_sent(h);
    ck_assert_uint_eq(s.type, LW_COAP_NON);
    mk_reply(&r, &s, LW_COAP_NON, LW_COAP_CONTENT, 0x4646);
    ck_assert_int_eq(feed(h, &r, 200001), 0);
    ck_assert_int_eq(h->nresp, 4);
    ck_assert_uint_eq(h->resp[3].id, hn.id);
    teardown_h(h);
}
END_TEST

START_TEST(test_ping)
{
    struct harness *h = setup(NULL);
    struct lw_coap_handle p;
    ck_assert_int_eq(lw_coap_ep_ping(&h->ep, 9, 0, &p), 0);
    ck_assert_int_eq(h->nsent, 1);
    ck_assert_uint_eq(h->sent[0].len, 4);
    ck_assert_uint_eq(h->sent[0].data[0], 0x40);
    ck_assert_uint_eq(h->sent[0].data[1], 0x00);
    uint8_t rst[4] = {0x70, 0, h->sent[0].data[2], h->sent[0].data[3]};
    ck_assert_int_eq(feed_raw(h, rst, 4, 10), 0);
    ck_assert_int_eq(h->nresp, 1);
    ck_assert_uint_eq(h->resp[0].id, p.id);
    ck_assert_uint_eq(h->resp[0].cookie, 9);
    ck_assert_int_eq(h->resp[0].result, LW_COAP_RES_RESET);
    teardown_h(h);
}
END_TEST

START_TEST(test_request_invalid)
{
    struct harness *h = setup(NULL);
    struct lw_coap_msg m;
    lw_coap_msg_init(&m, LW_COAP_ACK, LW_COAP_GET);
    ck_assert_int_eq(lw_coap_ep_request(&h->ep, &m, 0, 0, NULL), LW_EINVAL);
    lw_coap_msg_init(&m, LW_COAP_CON, LW_COAP_CONTENT);
    ck_assert_int_eq(lw_coap_ep_request(&h->ep, &m, 0, 0, NULL), LW_EINVAL);
    /* Options too large for one datagram. */
    lw_coap_msg_init(&m, LW_COAP_CON, LW_COAP_GET);
    static char big[1000];
    memset(big, 'q', sizeof(big));
    for (int i = 0; i < 3; i++)
        lw_coap_add_opt(&m, LW_COAP_OPT_URI_QUERY, big, sizeof(big));
    ck_assert_int_eq(lw_coap_ep_request(&h->ep, &m, 0, 0, NULL), LW_ENOSPC);
    ck_assert_uint_eq(lw_coap_ep_pending(&h->ep), 0);
    /* respond with a request code */
    struct lw_coap_req_ref ref = {1, LW_COAP_CON, 0, {0}};
    lw_coap_msg_init(&m, 0, LW_COAP_GET);
    ck_assert_int_eq(lw_coap_ep_respond(&h->ep, &ref, &m, 0), LW_EINVAL);
    ck_assert_int_eq(h->nsent, 0);
    teardown_h(h);
}
END_TEST

/* ---- observe ----------------------------------------------------------------------------- */

static struct lw_coap_msg notif(const struct lw_coap_msg *s, uint8_t type, uint16_t mid,
                                uint32_t seq, const char *payload)
{
    struct lw_coap_msg n;
    mk_reply(&n, s, type, LW_COAP_CONTENT, mid);
    lw_coap_add_uint(&n, LW_COAP_OPT_OBSERVE, seq);
    n.payload = LW_BYTES_STR(payload);
    return n;
}

START_TEST(test_observe_flow)
{
    struct harness *h = setup(NULL);
    struct lw_coap_handle o = send_get(h, "3/0/9", 55, 0, true);
    struct lw_coap_msg s = sent_msg(h, 0);
    uint32_t v;
    ck_assert_int_eq(lw_coap_get_uint(&s, LW_COAP_OPT_OBSERVE, &v), 0);
    ck_assert_uint_eq(v, 0);
    /* Registration response with Observe 12. */
    struct lw_coap_msg r = notif(&s, LW_COAP_ACK, 0, 12, "95");
    r.mid = s.mid;
    ck_assert_int_eq(feed(h, &r, 100), 0);
    ck_assert_int_eq(h->nresp, 1);
    ck_assert_uint_eq(h->resp[0].id, o.id);
    ck_assert_uint_eq(lw_coap_ep_observations(&h->ep), 1);
    ck_assert_uint_eq(lw_coap_ep_pending(&h->ep), 0);
    /* NON notification 13: fresh, no ACK. */
    struct lw_coap_msg n = notif(&s, LW_COAP_NON, 0x7a00, 13, "94");
    ck_assert_int_eq(feed(h, &n, 1000), 0);
    ck_assert_int_eq(h->nnotes, 1);
    ck_assert_uint_eq(h->notes[0].id, o.id);
    ck_assert_uint_eq(h->notes[0].cookie, 55);
    ck_assert_uint_eq(h->notes[0].flags, LW_COAP_NOTIFY_FRESH);
    ck_assert_str_eq(h->notes[0].payload, "94");
    ck_assert_int_eq(h->nsent, 1);
    /* A reordered older one (12 after 13): delivered but not fresh. */
    n = notif(&s, LW_COAP_NON, 0x7a01, 12, "93");
    ck_assert_int_eq(feed(h, &n, 1100), 0);
    ck_assert_uint_eq(h->notes[1].flags, 0);
    /* CON notification 14: ACKed, fresh; its retransmission is ACKed but not re-delivered. */
    n = notif(&s, LW_COAP_CON, 0x7a02, 14, "92");
    ck_assert_int_eq(feed(h, &n, 2000), 0);
    ck_assert_int_eq(h->nsent, 2);
    ck_assert_mem_eq(h->sent[1].data, "\x60\x00\x7a\x02", 4);
    ck_assert_uint_eq(h->notes[2].flags, LW_COAP_NOTIFY_FRESH);
    ck_assert_int_eq(feed(h, &n, 4000), LW_EEXIST);
    ck_assert_int_eq(h->nsent, 3);
    ck_assert_int_eq(h->nnotes, 3);
    /* An older value more than 128 s later is fresh again (§3.4). */
    n = notif(&s, LW_COAP_NON, 0x7a03, 3, "91");
    ck_assert_int_eq(feed(h, &n, 2000 + 128001), 0);
    ck_assert_uint_eq(h->notes[3].flags, LW_COAP_NOTIFY_FRESH);
    /* 24-bit serial arithmetic: 3 -> 0x600000 -> 0xc00000 -> 5 (wrapped) are all fresher. */
    uint32_t seqs[] = {0x600000, 0xc00000, 5};
    for (int i = 0; i < 3; i++) {
        n = notif(&s, LW_COAP_NON, (uint16_t)(0x7a04 + i), seqs[i], "90");
        ck_assert_int_eq(feed(h, &n, 2000 + 128002 + (uint64_t)i), 0);
        ck_assert_uint_eq(h->notes[4 + i].flags, LW_COAP_NOTIFY_FRESH);
    }
    /* A final response without Observe ends the observation. */
    struct lw_coap_msg f;
    mk_reply(&f, &s, LW_COAP_NON, LW_COAP_NOT_FOUND, 0x7a10);
    ck_assert_int_eq(feed(h, &f, 200000), 0);
    ck_assert_uint_eq(h->notes[7].flags, LW_COAP_NOTIFY_FRESH | LW_COAP_NOTIFY_FINAL);
    ck_assert_uint_eq(h->notes[7].code, LW_COAP_NOT_FOUND);
    ck_assert_uint_eq(lw_coap_ep_observations(&h->ep), 0);
    /* Then a notification with that token: unknown, RST (passive cancel, RFC 7641 §3.6). */
    int ns = h->nsent;
    n = notif(&s, LW_COAP_NON, 0x7a07, 20, "88");
    ck_assert_int_eq(feed(h, &n, 200001), LW_ENOENT);
    ck_assert_int_eq(h->nsent, ns + 1);
    ck_assert_mem_eq(h->sent[ns].data, "\x70\x00\x7a\x07", 4);
    teardown_h(h);
}
END_TEST

/* lw_coap_ep_queued: a request behind NSTART is queued until the one before it completes. */
START_TEST(test_queued_state)
{
    struct harness *h = setup(NULL);
    struct lw_coap_handle a = send_get(h, "3/0/0", 1, 0, false);
    struct lw_coap_handle b = send_get(h, "3/0/1", 2, 0, false);
    ck_assert(!lw_coap_ep_queued(&h->ep, a)); /* transmitted */
    ck_assert(lw_coap_ep_queued(&h->ep, b));
    ck_assert(!lw_coap_ep_queued(&h->ep, (struct lw_coap_handle){0}));
    ck_assert(!lw_coap_ep_queued(&h->ep, (struct lw_coap_handle){b.id + 5}));
    ck_assert_int_eq(h->nsent, 1);
    struct lw_coap_msg s = sent_msg(h, 0), r;
    mk_reply(&r, &s, LW_COAP_ACK, LW_COAP_CONTENT, s.mid);
    ck_assert_int_eq(feed(h, &r, 10), 0);
    ck_assert(!lw_coap_ep_queued(&h->ep, b)); /* started when a completed */
    ck_assert_int_eq(h->nsent, 2);
    teardown_h(h);
}
END_TEST

/* An observation moves to another ep (the peer's address changed): same token, freshness kept,
 * notifications reach the new ep under a new handle and cookie; the old ep answers them with RST.
 */
START_TEST(test_observe_move)
{
    struct harness *h = setup(NULL);
    struct lw_coap_handle o = send_get(h, "3/0/9", 55, 0, true);
    struct lw_coap_msg s = sent_msg(h, 0);
    struct lw_coap_msg r = notif(&s, LW_COAP_ACK, 0, 12, "95");
    r.mid = s.mid;
    ck_assert_int_eq(feed(h, &r, 100), 0);
    ck_assert_uint_eq(lw_coap_ep_observations(&h->ep), 1);
    ck_assert_ptr_null(lw_coap_ep_obs_detach(&h->ep, (struct lw_coap_handle){o.id + 7}, 200));
    struct lw_coap__obs *st = lw_coap_ep_obs_detach(&h->ep, o, 200);
    ck_assert_ptr_nonnull(st);
    ck_assert_uint_eq(lw_coap_ep_observations(&h->ep), 0);
    /* The old ep no longer knows the token: RST. */
    int ns = h->nsent;
    struct lw_coap_msg n = notif(&s, LW_COAP_NON, 0x7b00, 13, "94");
    ck_assert_int_eq(feed(h, &n, 300), LW_ENOENT);
    ck_assert_int_eq(h->nsent, ns + 1);
    /* A second ep of the same harness adopts it. */
    struct lw_coap_ep ep2;
    lw_coap_ep_init(&ep2, &h->env, h);
    struct lw_coap_handle o2 = {0};
    ck_assert_int_eq(lw_coap_ep_obs_attach(&ep2, st, 77, &o2), 0);
    ck_assert_uint_ne(o2.id, 0);
    ck_assert_uint_eq(lw_coap_ep_observations(&ep2), 1);
    uint8_t mem[256];
    struct lw_buf b;
    n = notif(&s, LW_COAP_NON, 0x7b01, 14, "93");
    lw_buf_init_fixed(&b, mem, sizeof(mem));
    ck_assert_int_eq(lw_coap_serialize(&n, &b), 0);
    ck_assert_int_eq(lw_coap_ep_input(&ep2, b.data, b.len, 400), 0);
    ck_assert_int_eq(h->nnotes, 1);
    ck_assert_uint_eq(h->notes[0].id, o2.id);
    ck_assert_uint_eq(h->notes[0].cookie, 77);
    ck_assert_uint_eq(h->notes[0].flags, LW_COAP_NOTIFY_FRESH);
    /* Freshness state came along: 13 after 14 is not fresh. */
    n = notif(&s, LW_COAP_NON, 0x7b02, 13, "92");
    lw_buf_init_fixed(&b, mem, sizeof(mem));
    ck_assert_int_eq(lw_coap_serialize(&n, &b), 0);
    ck_assert_int_eq(lw_coap_ep_input(&ep2, b.data, b.len, 500), 0);
    ck_assert_uint_eq(h->notes[1].flags, 0);
    /* Detached again and freed by the holder (nothing leaks under ASan). */
    struct lw_coap__obs *st2 = lw_coap_ep_obs_detach(&ep2, o2, 600);
    ck_assert_ptr_nonnull(st2);
    ck_assert_uint_eq(lw_coap_ep_observations(&ep2), 0);
    lw_coap_obs_free(st2);
    lw_coap_obs_free(NULL);
    lw_coap_ep_deinit(&ep2);
    teardown_h(h);
}
END_TEST

START_TEST(test_observe_cancel)
{
    struct harness *h = setup(NULL);
    struct lw_coap_handle o = send_get(h, "3/0/9", 1, 0, true);
    struct lw_coap_msg s = sent_msg(h, 0);
    struct lw_coap_msg r = notif(&s, LW_COAP_ACK, 0, 5, "a");
    r.mid = s.mid;
    ck_assert_int_eq(feed(h, &r, 10), 0);
    /* A registration answered without Observe does not create an observation. */
    struct lw_coap_handle o2 = send_get(h, "3/0/13", 2, 20, true);
    struct lw_coap_msg s2 = last_sent(h);
    struct lw_coap_msg r2;
    mk_reply(&r2, &s2, LW_COAP_ACK, LW_COAP_CONTENT, 0);
    ck_assert_int_eq(feed(h, &r2, 30), 0);
    ck_assert_uint_eq(h->resp[1].id, o2.id);
    ck_assert_uint_eq(lw_coap_ep_observations(&h->ep), 1);

    /* Active cancel: GET with Observe 1 and the same token. */
    struct lw_coap_msg c;
    lw_coap_msg_init(&c, LW_COAP_CON, LW_COAP_GET);
    lw_coap_add_uri_path(&c, "3/0/9");
    lw_coap_add_uint(&c, LW_COAP_OPT_OBSERVE, 0); /* replaced by 1 */
    struct lw_coap_handle ch;
    ck_assert_int_eq(lw_coap_ep_observe_cancel(&h->ep, o, &c, 3, 40, &ch), 0);
    ck_assert_uint_ne(ch.id, o.id);
    ck_assert_uint_eq(lw_coap_ep_observations(&h->ep), 0);
    struct lw_coap_msg cs = last_sent(h);
    uint32_t v;
    ck_assert_int_eq(lw_coap_get_uint(&cs, LW_COAP_OPT_OBSERVE, &v), 0);
    ck_assert_uint_eq(v, 1);
    ck_assert_uint_eq(cs.tkl, s.tkl);
    ck_assert_mem_eq(cs.token, s.token, s.tkl);
    ck_assert_uint_eq(cs.code, LW_COAP_GET);
    ck_assert_int_eq(lw_coap_ep_observe_cancel(&h->ep, o, &c, 3, 40, &ch), LW_ENOENT);
    struct lw_coap_msg cr;
    mk_reply(&cr, &cs, LW_COAP_ACK, LW_COAP_CONTENT, 0);
    ck_assert_int_eq(feed(h, &cr, 50), 0);
    ck_assert_uint_eq(h->resp[2].id, ch.id);
    ck_assert_uint_eq(h->resp[2].cookie, 3);

    /* Passive cancel: forget, then the next CON notification gets RST. */
    struct lw_coap_handle o3 = send_get(h, "3/0/7", 4, 60, true);
    struct lw_coap_msg s3 = last_sent(h);
    r = notif(&s3, LW_COAP_ACK, 0, 1, "b");
    r.mid = s3.mid;
    ck_assert_int_eq(feed(h, &r, 70), 0);
    ck_assert_uint_eq(lw_coap_ep_observations(&h->ep), 1);
    ck_assert_int_eq(lw_coap_ep_cancel(&h->ep, o3, 80), 0);
    ck_assert_uint_eq(lw_coap_ep_observations(&h->ep), 0);
    struct lw_coap_msg n = notif(&s3, LW_COAP_CON, 0x1111, 2, "c");
    int ns = h->nsent;
    ck_assert_int_eq(feed(h, &n, 90), LW_ENOENT);
    ck_assert_mem_eq(h->sent[ns].data, "\x70\x00\x11\x11", 4);
    ck_assert_int_eq(feed(h, &n, 95), LW_EEXIST); /* the duplicate gets the same RST */
    ck_assert_mem_eq(h->sent[ns + 1].data, "\x70\x00\x11\x11", 4);
    ck_assert_int_eq(h->nnotes, 0);
    teardown_h(h);
}
END_TEST

/* ---- block-wise -------------------------------------------------------------------------- */

static uint8_t big_body[8000];

START_TEST(test_block2_read)
{
    for (size_t i = 0; i < sizeof(big_body); i++)
        big_body[i] = (uint8_t)(i ^ (i >> 8));
    struct harness *h = setup(NULL);
    struct lw_coap_handle a = send_get(h, "5/0/0", 11, 0, false);
    struct lw_bytes etag = LW_BYTES("\x0e\x0f", 2);
    const size_t total = 2600;
    for (int round = 0; round < 10 && h->nresp == 0; round++) {
        struct lw_coap_msg s = last_sent(h);
        struct lw_coap_msg r;
        /* The device serves with 512-byte blocks (smaller than our 1024): we follow. */
        ck_assert_int_eq(lw_coap_block2_serve(&s, LW_BYTES(big_body, total), etag, 5, &r), 0);
        ck_assert_uint_eq(r.code, LW_COAP_CONTENT);
        r.type = LW_COAP_ACK;
        r.mid = s.mid;
        r.tkl = s.tkl;
        memcpy(r.token, s.token, s.tkl);
        ck_assert_int_eq(feed(h, &r, (uint64_t)round * 10), 0);
    }
    ck_assert_int_eq(h->nsent, 6); /* 2600 / 512 -> 6 blocks */
    struct lw_coap_msg s5 = sent_msg(h, 5);
    struct lw_coap_block b;
    ck_assert_int_eq(lw_coap_get_block(&s5, LW_COAP_OPT_BLOCK2, &b), 0);
    ck_assert_uint_eq(b.num, 5);
    ck_assert_uint_eq(b.szx, 5);
    ck_assert_int_eq(h->nresp, 1);
    ck_assert_uint_eq(h->resp[0].id, a.id);
    ck_assert_int_eq(h->resp[0].result, LW_COAP_RES_RESPONSE);
    ck_assert_uint_eq(h->resp[0].plen, total);
    ck_assert_mem_eq(h->resp[0].payload, big_body, total);

    /* ETag change mid-transfer: error. */
    send_get(h, "5/0/0", 12, 1000, false);
    struct lw_coap_msg s = last_sent(h), r;
    lw_coap_block2_serve(&s, LW_BYTES(big_body, total), etag, 6, &r);
    r.type = LW_COAP_ACK;
    r.mid = s.mid;
    r.tkl = s.tkl;
    memcpy(r.token, s.token, s.tkl);
    ck_assert_int_eq(feed(h, &r, 1001), 0);
    s = last_sent(h);
    lw_coap_block2_serve(&s, LW_BYTES(big_body, total), LW_BYTES("\x01", 1), 6, &r);
    r.type = LW_COAP_ACK;
    r.mid = s.mid;
    r.tkl = s.tkl;
    memcpy(r.token, s.token, s.tkl);
    ck_assert_int_eq(feed(h, &r, 1002), 0);
    ck_assert_int_eq(h->nresp, 2);
    ck_assert_int_eq(h->resp[1].result, LW_COAP_RES_ERROR);
    ck_assert_uint_eq(lw_coap_ep_pending(&h->ep), 0);
    teardown_h(h);
}
END_TEST

START_TEST(test_block1_push)
{
    for (size_t i = 0; i < sizeof(big_body); i++)
        big_body[i] = (uint8_t)(i * 13);
    struct harness *h = setup(NULL);
    struct lw_coap_msg m;
    lw_coap_msg_init(&m, LW_COAP_CON, LW_COAP_PUT);
    lw_coap_add_uri_path(&m, "5/0/0");
    lw_coap_add_uint(&m, LW_COAP_OPT_CONTENT_FORMAT, 42);
    m.payload = LW_BYTES(big_body, 3000);
    struct lw_coap_handle hd;
    ck_assert_int_eq(lw_coap_ep_request(&h->ep, &m, 99, 0, &hd), 0);
    /* The device side: an atomic Block1 receiver preferring 256-byte blocks after block 1. */
    struct lw_coap_b1rx rx;
    lw_coap_b1rx_init(&rx, 0, 6, 0);
    int steps = 0;
    struct lw_bytes got = {NULL, 0};
    while (h->nresp == 0 && steps < 50) {
        struct lw_coap_msg s = last_sent(h);
        if (steps == 0) {
            uint32_t v;
            ck_assert_int_eq(lw_coap_get_uint(&s, LW_COAP_OPT_SIZE1, &v), 0);
            ck_assert_uint_eq(v, 3000);
            ck_assert_uint_eq(s.payload.len, 1024);
        }
        if (steps == 1)
            rx.max_szx = 4;
        struct lw_coap_msg r;
        int rc = lw_coap_b1rx_feed(&rx, &s, 0, &r, &got);
        ck_assert(rc == LW_EAGAIN || rc == 0);
        if (rc == 0)
            ck_assert_int_eq(lw_coap_b1rx_final_opt(&s, &r), 0);
        r.type = LW_COAP_ACK;
        r.mid = s.mid;
        r.tkl = s.tkl;
        memcpy(r.token, s.token, s.tkl);
        ck_assert_int_eq(feed(h, &r, (uint64_t)steps), 0);
        steps++;
    }
    /* 1024 + 1024 (answered with SZX 4) + 4 x 256 - 72 = 3000: 2 + 4 blocks. */
    ck_assert_int_eq(steps, 6);
    ck_assert_uint_eq(got.len, 3000);
    ck_assert_mem_eq(got.ptr, big_body, 3000);
    ck_assert_int_eq(h->nresp, 1);
    ck_assert_uint_eq(h->resp[0].id, hd.id);
    ck_assert_uint_eq(h->resp[0].code, LW_COAP_CHANGED);
    lw_coap_b1rx_deinit(&rx);

    /* 4.13 with a smaller SZX on block 0: restart with that size. */
    ck_assert_int_eq(lw_coap_ep_request(&h->ep, &m, 100, 1000, &hd), 0);
    struct lw_coap_msg s = last_sent(h), r;
    mk_reply(&r, &s, LW_COAP_ACK, LW_COAP_REQUEST_TOO_LARGE, 0);
    struct lw_coap_block b = {0, false, 3};
    lw_coap_add_block(&r, LW_COAP_OPT_BLOCK1, &b);
    ck_assert_int_eq(feed(h, &r, 1001), 0);
    s = last_sent(h);
    ck_assert_int_eq(lw_coap_get_block(&s, LW_COAP_OPT_BLOCK1, &b), 0);
    ck_assert_uint_eq(b.num, 0);
    ck_assert_uint_eq(b.szx, 3);
    ck_assert_uint_eq(s.payload.len, 128);
    /* 4.08 on the next step: delivered as the response. */
    mk_reply(&r, &s, LW_COAP_ACK, LW_COAP_REQUEST_INCOMPLETE, 0);
    ck_assert_int_eq(feed(h, &r, 1002), 0);
    ck_assert_int_eq(h->nresp, 2);
    ck_assert_uint_eq(h->resp[1].code, LW_COAP_REQUEST_INCOMPLETE);
    teardown_h(h);
}
END_TEST

/* Replies to the last datagram sent with a Block2 slice of body (piggybacked). */
static void serve_last(struct harness *h, struct lw_bytes body, struct lw_bytes etag, uint8_t szx,
                       int observe, uint64_t now)
{
    struct lw_coap_msg s = last_sent(h), r;
    ck_assert_int_eq(lw_coap_block2_serve(&s, body, etag, szx, &r), 0);
    r.type = LW_COAP_ACK;
    r.mid = s.mid;
    r.tkl = s.tkl;
    memcpy(r.token, s.token, s.tkl);
    if (observe >= 0)
        lw_coap_add_uint(&r, LW_COAP_OPT_OBSERVE, (uint32_t)observe);
    ck_assert_int_eq(feed(h, &r, now), 0);
}

START_TEST(test_observe_block2)
{
    for (size_t i = 0; i < sizeof(big_body); i++)
        big_body[i] = (uint8_t)(i * 7);
    struct harness *h = setup(NULL);
    /* Registration answered block-wise: reassembled, then the observation exists. */
    struct lw_coap_handle o = send_get(h, "3/0", 21, 0, true);
    struct lw_coap_msg reg = sent_msg(h, 0);
    struct lw_bytes etag = LW_BYTES("\x05", 1);
    serve_last(h, LW_BYTES(big_body, 600), etag, 4, 7, 1);
    struct lw_coap_msg c1 = last_sent(h);
    uint32_t v;
    ck_assert_int_eq(lw_coap_get_uint(&c1, LW_COAP_OPT_OBSERVE, &v), LW_ENOENT);
    serve_last(h, LW_BYTES(big_body, 600), etag, 4, -1, 2);
    serve_last(h, LW_BYTES(big_body, 600), etag, 4, -1, 3);
    ck_assert_int_eq(h->nresp, 1);
    ck_assert_uint_eq(h->resp[0].id, o.id);
    ck_assert_uint_eq(h->resp[0].plen, 600);
    ck_assert_mem_eq(h->resp[0].payload, big_body, 600);
    ck_assert_uint_eq(lw_coap_ep_observations(&h->ep), 1);

    /* A notification with Block2 0/M: the rest is fetched with GET + Block2 (no Observe, a
     * token of its own, RFC 7959 §2.6) and reported once, whole. */
    struct lw_coap_msg n, q;
    lw_coap_msg_init(&q, LW_COAP_CON, LW_COAP_GET); /* a request for block 0 */
    ck_assert_int_eq(
        lw_coap_block2_serve(&q, LW_BYTES(big_body + 1, 700), LW_BYTES("\x06", 1), 4, &n), 0);
    n.type = LW_COAP_NON;
    n.mid = 0x5000;
    n.tkl = reg.tkl;
    memcpy(n.token, reg.token, reg.tkl);
    lw_coap_add_uint(&n, LW_COAP_OPT_OBSERVE, 8);
    int ns = h->nsent;
    ck_assert_int_eq(feed(h, &n, 100), 0);
    ck_assert_int_eq(h->nnotes, 0);
    ck_assert_int_eq(h->nsent, ns + 1);
    struct lw_coap_msg c = last_sent(h);
    ck_assert(memcmp(c.token, reg.token, 8) != 0);
    ck_assert_int_eq(lw_coap_get_uint(&c, LW_COAP_OPT_OBSERVE, &v), LW_ENOENT);
    struct lw_coap_block b;
    ck_assert_int_eq(lw_coap_get_block(&c, LW_COAP_OPT_BLOCK2, &b), 0);
    ck_assert_uint_eq(b.num, 1);
    ck_assert_uint_eq(b.szx, 4);
    serve_last(h, LW_BYTES(big_body + 1, 700), LW_BYTES("\x06", 1), 4, -1, 101);
    ck_assert_int_eq(h->nnotes, 0);
    serve_last(h, LW_BYTES(big_body + 1, 700), LW_BYTES("\x06", 1), 4, -1, 102);
    ck_assert_int_eq(h->nnotes, 1);
    ck_assert_uint_eq(h->notes[0].id, o.id);
    ck_assert_uint_eq(h->notes[0].cookie, 21);
    ck_assert_uint_eq(h->notes[0].flags, LW_COAP_NOTIFY_FRESH);
    ck_assert_mem_eq(h->notes[0].payload, big_body + 1, 31);
    ck_assert_int_eq(h->nresp, 1); /* continuations never reach on_response */
    ck_assert_uint_eq(lw_coap_ep_pending(&h->ep), 0);

    /* A newer notification supersedes a continuation in flight. */
    n.mid = 0x5001;
    n.opts[n.nopts - 1].ib[0] = 9; /* Observe 9 */
    ck_assert_int_eq(feed(h, &n, 200), 0);
    ck_assert_uint_eq(lw_coap_ep_pending(&h->ep), 1);
    n.mid = 0x5002;
    n.opts[n.nopts - 1].ib[0] = 10;
    ck_assert_int_eq(feed(h, &n, 201), 0);
    ck_assert_uint_eq(lw_coap_ep_pending(&h->ep), 1);
    /* Passive cancel drops it as well. */
    ck_assert_int_eq(lw_coap_ep_cancel(&h->ep, o, 202), 0);
    ck_assert_uint_eq(lw_coap_ep_pending(&h->ep), 0);
    ck_assert_int_eq(h->nnotes, 1);
    ck_assert_int_eq(h->nresp, 1);
    teardown_h(h);
}
END_TEST

START_TEST(test_block1_then_block2)
{
    for (size_t i = 0; i < sizeof(big_body); i++)
        big_body[i] = (uint8_t)(i * 3);
    struct harness *h = setup(NULL);
    struct lw_coap_msg m;
    lw_coap_msg_init(&m, LW_COAP_CON, LW_COAP_POST);
    lw_coap_add_uri_path(&m, "dp");
    m.payload = LW_BYTES(big_body, 1500);
    struct lw_coap_handle hd;
    ck_assert_int_eq(lw_coap_ep_request(&h->ep, &m, 1, 0, &hd), 0);
    struct lw_coap_msg s = last_sent(h), r;
    mk_reply(&r, &s, LW_COAP_ACK, LW_COAP_CONTINUE, 0);
    struct lw_coap_block b = {0, true, 6};
    lw_coap_add_block(&r, LW_COAP_OPT_BLOCK1, &b);
    ck_assert_int_eq(feed(h, &r, 1), 0);
    s = last_sent(h);
    ck_assert_int_eq(lw_coap_get_block(&s, LW_COAP_OPT_BLOCK1, &b), 0);
    ck_assert_uint_eq(b.num, 1);
    ck_assert(!b.more);
    ck_assert_uint_eq(s.payload.len, 1500 - 1024);
    /* Final Block1 answered with Block2 0/M (RFC 7959 §2.7). */
    mk_reply(&r, &s, LW_COAP_ACK, LW_COAP_CHANGED, 0);
    b = (struct lw_coap_block){1, false, 6};
    lw_coap_add_block(&r, LW_COAP_OPT_BLOCK1, &b);
    b = (struct lw_coap_block){0, true, 4};
    lw_coap_add_block(&r, LW_COAP_OPT_BLOCK2, &b);
    r.payload = LW_BYTES(big_body + 100, 256);
    ck_assert_int_eq(feed(h, &r, 2), 0);
    /* The continuation: same method, Block2 NUM 1, no Block1, no payload. */
    s = last_sent(h);
    ck_assert_uint_eq(s.code, LW_COAP_POST);
    ck_assert_int_eq(lw_coap_get_block(&s, LW_COAP_OPT_BLOCK1, &b), LW_ENOENT);
    ck_assert_int_eq(lw_coap_get_block(&s, LW_COAP_OPT_BLOCK2, &b), 0);
    ck_assert_uint_eq(b.num, 1);
    ck_assert_uint_eq(s.payload.len, 0);
    mk_reply(&r, &s, LW_COAP_ACK, LW_COAP_CHANGED, 0);
    b = (struct lw_coap_block){1, false, 4};
    lw_coap_add_block(&r, LW_COAP_OPT_BLOCK2, &b);
    r.payload = LW_BYTES(big_body + 356, 10);
    ck_assert_int_eq(feed(h, &r, 3), 0);
    ck_assert_int_eq(h->nresp, 1);
    ck_assert_uint_eq(h->resp[0].plen, 266);
    ck_assert_mem_eq(h->resp[0].payload, big_body + 100, 266);
    teardown_h(h);
}
END_TEST

START_TEST(test_non_timeout_and_env)
{
    struct lw_coap_cfg cfg = {.response_timeout_ms = 5000};
    struct harness *h = setup(&cfg);
    struct lw_coap_msg m;
    lw_coap_msg_init(&m, LW_COAP_NON, LW_COAP_GET);
    ck_assert_int_eq(lw_coap_ep_request(&h->ep, &m, 4, 100, NULL), 0);
    ck_assert_uint_eq(lw_coap_ep_next_deadline(&h->ep), 5100);
    lw_coap_ep_timeout(&h->ep, 5099);
    ck_assert_int_eq(h->nresp, 0);
    ck_assert_int_eq(h->nsent, 1); /* NON: never retransmitted */
    lw_coap_ep_timeout(&h->ep, 5100);
    ck_assert_int_eq(h->nresp, 1);
    ck_assert_int_eq(h->resp[0].result, LW_COAP_RES_TIMEOUT);
    ck_assert_uint_eq(lw_coap_ep_next_deadline(&h->ep), UINT64_MAX);
    /* lw_coap_ep_accept on a NON request is a no-op. */
    struct lw_coap_req_ref ref = {7, LW_COAP_NON, 0, {0}};
    ck_assert_int_eq(lw_coap_ep_accept(&h->ep, &ref, 0), 0);
    ck_assert_int_eq(h->nsent, 1);
    teardown_h(h);

    struct lw_coap_env env;
    struct lw_coap_ops bad = {NULL, cb_request, NULL, NULL};
    ck_assert_int_eq(lw_coap_env_init(&env, NULL, &bad), LW_EINVAL);
    ck_assert_int_eq(lw_coap_env_init(&env, NULL, NULL), LW_EINVAL);
    struct lw_coap_cfg c7 = {.block_szx = 7};
    ck_assert_int_eq(lw_coap_env_init(&env, &c7, &ops), LW_EINVAL);
    ck_assert_int_eq(lw_coap_env_init(&env, NULL, &ops), 0);
    ck_assert_uint_eq(env.cfg.ack_timeout_ms, 2000);
    ck_assert_uint_eq(env.cfg.ack_random_factor_pct, 150);
    ck_assert_uint_eq(env.cfg.max_retransmit, 4);
    ck_assert_uint_eq(env.cfg.nstart, 1);
    ck_assert_uint_eq(env.cfg.exchange_lifetime_ms, 247000);
    ck_assert_uint_eq(env.cfg.non_lifetime_ms, 145000);
    ck_assert_uint_eq(env.cfg.block_szx, 6);
}
END_TEST

/* on_response that immediately issues the next request (re-entrancy). */
static int chain_left;
static bool chain_deinit;
static void cb_response_chain(void *ctx, struct lw_coap_ep *ep, struct lw_coap_handle hd,
                              uint64_t cookie, int result, const struct lw_coap_msg *msg)
{
    cb_response(ctx, ep, hd, cookie, result, msg);
    if (chain_left-- > 0) {
        struct lw_coap_msg m;
        lw_coap_msg_init(&m, LW_COAP_CON, LW_COAP_GET);
        ck_assert_int_eq(lw_coap_ep_request(ep, &m, cookie + 1, 0, NULL),
                         chain_deinit ? LW_ECANCELED : 0);
    }
}

START_TEST(test_reentrant_callbacks)
{
    static const struct lw_coap_ops chain_ops = {cb_send, cb_request, cb_response_chain, cb_notify};
    struct harness *h = setup(NULL);
    ck_assert_int_eq(lw_coap_env_init(&h->env, NULL, &chain_ops), 0);
    h->env.cfg.random = fake_random;
    h->env.cfg.rctx = h;
    chain_left = 3;
    send_get(h, "1", 100, 0, false);
    for (int i = 0; i < 4; i++) {
        struct lw_coap_msg s = last_sent(h);
        ck_assert_int_eq(
            feed_raw(h, (uint8_t[]){0x70, 0, (uint8_t)(s.mid >> 8), (uint8_t)s.mid}, 4, 1), 0);
    }
    ck_assert_int_eq(h->nresp, 4);
    ck_assert_uint_eq(h->resp[3].cookie, 103);
    ck_assert_uint_eq(lw_coap_ep_pending(&h->ep), 0);
    /* Deinit with requests pending: callbacks may not start new ones. */
    chain_left = 5;
    send_get(h, "1", 200, 0, false);
    send_get(h, "2", 300, 0, false);
    chain_deinit = true;
    lw_coap_ep_deinit(&h->ep);
    chain_deinit = false;
    ck_assert_int_eq(h->nresp, 6);
    ck_assert_uint_eq(lw_coap_ep_pending(&h->ep), 0);
    lw_coap_ep_init(&h->ep, &h->env, h);
    teardown_h(h);
}
END_TEST

Suite *suite_exchange(void);
Suite *suite_exchange(void)
{
    Suite *s = suite_create("coap_exchange");
    TCase *tc = tcase_create("exchange");
    tcase_add_test(tc, test_ping_and_stray);
    tcase_add_test(tc, test_bad_option_402);
    tcase_add_test(tc, test_piggyback_and_dedup);
    tcase_add_test(tc, test_dedup_bounded);
    tcase_add_test(tc, test_separate_response);
    tcase_add_test(tc, test_retransmit_timeout);
    tcase_add_test(tc, test_random_factor);
    tcase_add_test(tc, test_piggybacked_response_and_nstart);
    tcase_add_test(tc, test_nstart_config_and_queue_cancel);
    tcase_add_test(tc, test_separate_response_client);
    tcase_add_test(tc, test_ping);
    tcase_add_test(tc, test_request_invalid);
    tcase_add_test(tc, test_observe_flow);
    tcase_add_test(tc, test_observe_cancel);
    tcase_add_test(tc, test_observe_move);
    tcase_add_test(tc, test_queued_state);
    tcase_add_test(tc, test_block2_read);
    tcase_add_test(tc, test_block1_push);
    tcase_add_test(tc, test_observe_block2);
    tcase_add_test(tc, test_block1_then_block2);
    tcase_add_test(tc, test_non_timeout_and_env);
    tcase_add_test(tc, test_reentrant_callbacks);
    suite_add_tcase(s, tc);
    return s;
}
