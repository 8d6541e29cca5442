/* Fuzz target: the per-peer exchange layer fed by an arbitrary sequence of datagrams, clock steps
 * and upper-layer actions.
 *
 * Input format, repeated until the input ends: op (1 byte), len (1 byte), len bytes of argument.
 *   op % 8 == 0: datagram from the peer
 *   op % 8 == 1: datagram from the peer, with MID (and token when TKL matches) patched to those
 *                of the last datagram we sent, so replies reach the client-side paths
 *   op % 8 == 2: advance the clock by arg (LE, up to 4 bytes) * 16 ms and run the timeout
 *   op % 8 == 3: send a request (GET, GET+Observe, big PUT, FETCH, NON GET), chosen by arg[0]
 *   op % 8 == 4: answer the oldest unanswered request (piggyback/separate/accept), by arg[0]
 *   op % 8 == 5: cancel a handle (arg[0] selects one of the handles seen)
 *   op % 8 == 6: ping
 *   op % 8 == 7: active observe cancel of the last observation handle
 * Invariants (abort on violation): everything we send parses and passes lw_coap_check_opts,
 * nothing exceeds LW_COAP_MAX_DGRAM, callbacks never report an unknown handle, and the ep frees
 * everything on deinit (checked by ASan's leak detector). The random source is deterministic. */
#include "coap/coap.h"
#include "base/err.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fz {
    struct lw_coap_env env;
    struct lw_coap_ep ep;
    uint8_t last[LW_COAP_MAX_DGRAM];
    size_t last_len;
    struct lw_coap_req_ref reqs[16];
    size_t nreqs;
    uint32_t handles[32];
    size_t nhandles;
    uint32_t last_obs;
    uint32_t rnd;
    uint64_t now;
};

static int fz_random(void *rctx, void *out, size_t len)
{
    struct fz *f = rctx;
    uint8_t *p = out;
    for (size_t i = 0; i < len; i++) {
        f->rnd = f->rnd * 1103515245u + 12345u;
        p[i] = (uint8_t)(f->rnd >> 16);
    }
    return 0;
}

static void fz_send(void *ctx, const uint8_t *d, size_t len)
{
    struct fz *f = ctx;
    struct lw_coap_msg m;
    if (len > LW_COAP_MAX_DGRAM || lw_coap_parse(&m, d, len, NULL, NULL) != 0 ||
        lw_coap_check_opts(&m, NULL) != 0)
        abort();
    memcpy(f->last, d, len);
    f->last_len = len;
}

static void fz_request(void *ctx, struct lw_coap_ep *ep, const struct lw_coap_msg *msg,
                       uint64_t now)
{
    struct fz *f = ctx;
    (void)ep;
    (void)now;
    if (f->nreqs < 16)
        f->reqs[f->nreqs++] = lw_coap_req_ref_of(msg);
}

static bool known(struct fz *f, uint32_t id)
{
    for (size_t i = 0; i < f->nhandles; i++)
        if (f->handles[i] == id)
            return true;
    return false;
}

static void fz_response(void *ctx, struct lw_coap_ep *ep, struct lw_coap_handle h, uint64_t cookie,
                        int result, const struct lw_coap_msg *msg)
{
    struct fz *f = ctx;
    (void)ep;
    if (cookie != h.id || result < 0 || result > LW_COAP_RES_ERROR)
        abort();
    if (f->nhandles < 32 && !known(f, h.id))
        abort();
    if (msg && msg->payload.len)
        (void)((volatile const uint8_t *)msg->payload.ptr)[msg->payload.len - 1];
    if (msg && result == LW_COAP_RES_RESPONSE && lw_coap_find_opt(msg, LW_COAP_OPT_OBSERVE))
        f->last_obs = h.id;
}

static void fz_notify(void *ctx, struct lw_coap_ep *ep, struct lw_coap_handle h, uint64_t cookie,
                      const struct lw_coap_msg *msg, unsigned flags)
{
    (void)ctx;
    (void)ep;
    (void)flags;
    if (cookie != h.id)
        abort();
    if (msg->payload.len)
        (void)((volatile const uint8_t *)msg->payload.ptr)[msg->payload.len - 1];
}

static const struct lw_coap_ops fz_ops = {fz_send, fz_request, fz_response, fz_notify};

static uint8_t big[5000];

static void do_request(struct fz *f, uint8_t sel)
{
    struct lw_coap_msg m;
    lw_coap_msg_init(&m, (sel & 0x80) ? LW_COAP_NON : LW_COAP_CON, LW_COAP_GET);
    lw_coap_add_uri_path(&m, "3/0/9");
    switch (sel % 4) {
    case 1: lw_coap_add_uint(&m, LW_COAP_OPT_OBSERVE, 0); break;
    case 2:
        m.code = LW_COAP_PUT;
        lw_coap_add_uint(&m, LW_COAP_OPT_CONTENT_FORMAT, 42);
        m.payload = (struct lw_bytes){big, 100 + (size_t)sel * 19};
        break;
    case 3:
        m.code = LW_COAP_FETCH;
        lw_coap_add_uint(&m, LW_COAP_OPT_OBSERVE, 0);
        m.payload = (struct lw_bytes){(const uint8_t *)"[\"/3/0\"]", 8};
        break;
    default: break;
    }
    /* The cookie is the handle id the request will get (ids are sequential). */
    uint64_t cookie = f->ep.next_id;
    struct lw_coap_handle h;
    if (lw_coap_ep_request(&f->ep, &m, cookie, f->now, &h) == 0 && f->nhandles < 32)
        f->handles[f->nhandles++] = h.id;
}

static void do_answer(struct fz *f, uint8_t sel)
{
    if (!f->nreqs)
        return;
    struct lw_coap_req_ref ref = f->reqs[0];
    memmove(f->reqs, f->reqs + 1, (f->nreqs - 1) * sizeof(f->reqs[0]));
    f->nreqs--;
    if (sel & 1)
        (void)lw_coap_ep_accept(&f->ep, &ref, f->now);
    struct lw_coap_msg r;
    lw_coap_msg_init(&r, 0, (sel & 2) ? LW_COAP_CONTENT : LW_COAP_CHANGED);
    r.payload = (struct lw_bytes){big, (size_t)(sel >> 2) * 8};
    (void)lw_coap_ep_respond(&f->ep, &ref, &r, f->now);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz *f = calloc(1, sizeof(*f));
    if (!f)
        return 0;
    struct lw_coap_cfg cfg = {.random = fz_random, .rctx = f, .dedup_entries = 4, .max_body = 8192};
    if (lw_coap_env_init(&f->env, &cfg, &fz_ops) != 0)
        abort();
    lw_coap_ep_init(&f->ep, &f->env, f);
    f->now = 1000;
    size_t pos = 0;
    while (pos + 2 <= size) {
        uint8_t op = data[pos], len = data[pos + 1];
        pos += 2;
        if (len > size - pos)
            len = (uint8_t)(size - pos);
        const uint8_t *arg = data + pos;
        pos += len;
        switch (op % 8) {
        case 0: (void)lw_coap_ep_input(&f->ep, arg, len, f->now); break;
        case 1: {
            uint8_t d[256];
            memcpy(d, arg, len);
            if (len >= 4 && f->last_len >= 4) {
                d[2] = f->last[2];
                d[3] = f->last[3];
                size_t tkl = f->last[0] & 0x0f;
                if ((d[0] & 0x0f) == tkl && len >= 4 + tkl && f->last_len >= 4 + tkl)
                    memcpy(d + 4, f->last + 4, tkl);
            }
            (void)lw_coap_ep_input(&f->ep, d, len, f->now);
            break;
        }
        case 2: {
            uint32_t step = 0;
            for (size_t i = 0; i < len && i < 4; i++)
                step |= (uint32_t)arg[i] << (8 * i);
            f->now += (uint64_t)step * 16;
            uint64_t dl = lw_coap_ep_next_deadline(&f->ep);
            if (dl < 1000)
                abort(); /* deadlines never lie before the first event */
            lw_coap_ep_timeout(&f->ep, f->now);
            break;
        }
        case 3: do_request(f, len ? arg[0] : 0); break;
        case 4: do_answer(f, len ? arg[0] : 0); break;
        case 5:
            if (f->nhandles && len)
                (void)lw_coap_ep_cancel(
                    &f->ep, (struct lw_coap_handle){f->handles[arg[0] % f->nhandles]}, f->now);
            break;
        case 6: {
            struct lw_coap_handle h;
            uint64_t cookie = f->ep.next_id;
            if (lw_coap_ep_ping(&f->ep, cookie, f->now, &h) == 0 && f->nhandles < 32)
                f->handles[f->nhandles++] = h.id;
            break;
        }
        case 7: {
            struct lw_coap_msg m;
            lw_coap_msg_init(&m, LW_COAP_CON, LW_COAP_GET);
            lw_coap_add_uri_path(&m, "3/0/9");
            struct lw_coap_handle h;
            uint64_t cookie = f->ep.next_id;
            if (f->last_obs &&
                lw_coap_ep_observe_cancel(&f->ep, (struct lw_coap_handle){f->last_obs}, &m, cookie,
                                          f->now, &h) == 0 &&
                f->nhandles < 32)
                f->handles[f->nhandles++] = h.id;
            break;
        }
        }
    }
    lw_coap_ep_deinit(&f->ep);
    free(f);
    return 0;
}
