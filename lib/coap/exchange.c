/* lib/coap/exchange.c - per-peer CoAP endpoint: message deduplication (RFC 7252 §4.5), CON
 * retransmission (§4.2), NSTART queueing (§4.7), piggybacked and separate responses (§5.2),
 * request/response matching (§5.3.2), observations (RFC 7641) and automatic Block1/Block2 for
 * server-originated requests (RFC 7959).
 *
 * Memory: an idle ep owns nothing. The dedup ring is allocated on the first CON/NON received,
 * grows (2, 4, ... cfg.dedup_entries entries) and is freed once every entry has expired. Each
 * request and observation is one small allocation plus copies of its template and payload.
 * Lists are short per peer (NSTART queue, a handful of observations), so they are scanned
 * linearly.
 */
#include "coap_int.h"

#include "base/err.h"
#include "base/util.h"

#include <stdlib.h>

/* ---- defaults (RFC 7252 §4.8) ------------------------------------------------------------ */

#define DEF_ACK_TIMEOUT_MS       2000u
#define DEF_ACK_RANDOM_PCT       150u
#define DEF_MAX_RETRANSMIT       4u
#define DEF_NSTART               1u
#define DEF_DEDUP_ENTRIES        16u
#define DEF_BLOCK_SZX            6u
#define DEF_EXCHANGE_LIFETIME_MS 247000u
#define DEF_NON_LIFETIME_MS      145000u
#define DEF_RESPONSE_TIMEOUT_MS  93000u
#define DEF_MAX_BODY             65536u

/* ep->in_cb value while lw_coap_ep_deinit runs. */
#define CLOSING 0xff

/* Replies up to this size are cached inside the dedup entry; longer ones get a heap copy. 32
 * fits a Register's 2.01 (4 + 8-byte token + Location-Path rd/<11 characters> = 27 bytes) as well
 * as the 2.04 of an Update or a Send, so the commonest replies cost no allocation, and keeps an
 * entry at 56 bytes: every peer that sent within EXCHANGE_LIFETIME holds a ring of these (4
 * entries after a Register, an Update and a Send), a large share of the memory per device. */
#define DEDUP_INLINE 32

enum dstate {
    D_NON = 1,  /* NON received: duplicates are dropped */
    D_PENDING,  /* CON request handed to on_request, nothing sent yet */
    D_ACKED,    /* Empty ACK sent: the response will be separate */
    D_REPLIED,  /* reply cached: duplicates get it again */
    D_SEPARATE, /* Empty ACK sent and the separate response is on its way */
};

struct dedup_ent {
    uint64_t expires; /* 0: free */
    union {
        uint8_t *ext; /* heap copy of a reply longer than DEDUP_INLINE */
        uint8_t inl[DEDUP_INLINE];
    } r; /* which one: by len */
    uint16_t mid;
    uint16_t len; /* cached reply length */
    uint8_t state;
    uint8_t tkl;
    uint8_t token[LW_COAP_MAX_TOKEN];
};

struct lw_coap__dedup {
    uint8_t cap;
    struct dedup_ent e[];
};

enum tstate { T_QUEUED = 0, T_WAIT_ACK, T_WAIT_RESP };
enum tkind { K_REQ = 0, K_PING, K_SEPRESP };

struct lw_coap__txn {
    struct lw_coap__txn *next;
    uint64_t cookie;
    uint64_t deadline;
    uint8_t *tmpl; /* K_REQ: request without payload; others: the whole datagram */
    uint8_t *body; /* K_REQ payload copy, or NULL */
    struct lw_coap_b2asm *b2;
    size_t tmpl_len, body_len;
    uint32_t id;
    uint32_t timeout_ms;
    uint32_t b1_num;  /* Block1: NUM of the block in flight */
    uint32_t b2_num;  /* Block2: NUM asked for in the request in flight (0: none) */
    uint32_t obs_seq; /* Observe value of the registration response */
    uint16_t mid;
    uint8_t state, kind, con, retries;
    uint8_t tkl;
    uint8_t token[LW_COAP_MAX_TOKEN];
    uint8_t szx;         /* block size in use */
    bool block1;         /* the body goes out in Block1 blocks */
    bool obs_reg;        /* GET/FETCH with Observe 0 */
    bool obs_ok;         /* the registration response carried Observe */
    uint8_t nflags;      /* notification continuation: flags for on_notify */
    uint32_t notify_obs; /* non-zero: fetches the rest of a Block2 notification of this obs */
};

struct lw_coap__obs {
    struct lw_coap__obs *next;
    uint64_t cookie;
    uint64_t last_time;
    uint8_t *tmpl; /* the registration request (for Block2 continuations, RFC 7959 §2.6) */
    uint8_t *body; /* its payload (FETCH), or NULL */
    size_t tmpl_len, body_len;
    uint32_t cont_id; /* continuation request in flight, or 0 */
    uint32_t id;
    uint32_t last_seq;
    uint8_t tkl;
    uint8_t token[LW_COAP_MAX_TOKEN];
};

/* ---- env --------------------------------------------------------------------------------- */

int lw_coap_env_init(struct lw_coap_env *env, const struct lw_coap_cfg *cfg,
                     const struct lw_coap_ops *ops)
{
    struct lw_coap_cfg c = {0};
    if (cfg)
        c = *cfg;
    if (!ops || !ops->send || !ops->on_request)
        return LW_EINVAL;
    if (c.block_szx > 6)
        return LW_EINVAL;
    if (!c.ack_timeout_ms)
        c.ack_timeout_ms = DEF_ACK_TIMEOUT_MS;
    /* §4.8: ACK_RANDOM_FACTOR MUST NOT be below 1.0. */
    if (c.ack_random_factor_pct < 100)
        c.ack_random_factor_pct = DEF_ACK_RANDOM_PCT;
    if (!c.max_retransmit)
        c.max_retransmit = DEF_MAX_RETRANSMIT;
    if (!c.nstart)
        c.nstart = DEF_NSTART;
    if (!c.dedup_entries)
        c.dedup_entries = DEF_DEDUP_ENTRIES;
    if (!c.block_szx)
        c.block_szx = DEF_BLOCK_SZX;
    if (!c.exchange_lifetime_ms)
        c.exchange_lifetime_ms = DEF_EXCHANGE_LIFETIME_MS;
    if (!c.non_lifetime_ms)
        c.non_lifetime_ms = DEF_NON_LIFETIME_MS;
    if (!c.response_timeout_ms)
        c.response_timeout_ms = DEF_RESPONSE_TIMEOUT_MS;
    if (!c.max_body)
        c.max_body = DEF_MAX_BODY;
    env->cfg = c;
    env->ops = ops;
    return 0;
}

static int rnd(const struct lw_coap_env *env, void *out, size_t len)
{
    if (env->cfg.random)
        return env->cfg.random(env->cfg.rctx, out, len);
    return lw_random(out, len);
}

static uint32_t rnd32(const struct lw_coap_env *env)
{
    uint32_t v = 0;
    if (rnd(env, &v, sizeof(v)) != 0)
        v = 0;
    return v;
}

static void tx(struct lw_coap_ep *ep, const uint8_t *data, size_t len)
{
    ep->env->ops->send(ep->ctx, data, len);
}

static void tx_empty(struct lw_coap_ep *ep, uint8_t type, uint16_t mid)
{
    uint8_t b[4];
    lw_coap_encode_empty(b, type, mid);
    tx(ep, b, sizeof(b));
}

void lw_coap_ep_init(struct lw_coap_ep *ep, const struct lw_coap_env *env, void *ctx)
{
    memset(ep, 0, sizeof(*ep));
    ep->env = env;
    ep->ctx = ctx;
    ep->next_id = 1;
    /* §4.4: the initial MID should be randomised. */
    ep->next_mid = (uint16_t)rnd32(env);
}

/* ---- dedup ------------------------------------------------------------------------------- */

/* Drops the cached reply (its heap copy when it has one). */
static void dd_drop_reply(struct dedup_ent *e)
{
    if (e->len > DEDUP_INLINE)
        free(e->r.ext);
    e->len = 0;
}

static void dd_free_ent(struct dedup_ent *e)
{
    dd_drop_reply(e);
    e->expires = 0;
}

static struct dedup_ent *dd_find(struct lw_coap_ep *ep, uint16_t mid, uint64_t now)
{
    if (!ep->dd)
        return NULL;
    for (size_t i = 0; i < ep->dd->cap; i++) {
        struct dedup_ent *e = &ep->dd->e[i];
        if (e->expires > now && e->mid == mid)
            return e;
    }
    return NULL;
}

/* A slot for a new entry: a free or expired one, else a bigger ring (up to the limit), else the
 * entry expiring first (bounded memory wins over perfect dedup under a flood). NULL on ENOMEM. */
static struct dedup_ent *dd_alloc(struct lw_coap_ep *ep, uint64_t now)
{
    struct lw_coap__dedup *dd = ep->dd;
    if (dd) {
        struct dedup_ent *oldest = NULL;
        for (size_t i = 0; i < dd->cap; i++) {
            struct dedup_ent *e = &dd->e[i];
            if (e->expires <= now) {
                dd_free_ent(e);
                return e;
            }
            if (!oldest || e->expires < oldest->expires)
                oldest = e;
        }
        if (dd->cap >= ep->env->cfg.dedup_entries) {
            dd_free_ent(oldest);
            return oldest;
        }
    }
    size_t old = dd ? dd->cap : 0;
    size_t cap = old ? LW_MIN(old * 2, (size_t)ep->env->cfg.dedup_entries) : 2;
    if (cap > ep->env->cfg.dedup_entries)
        cap = ep->env->cfg.dedup_entries;
    struct lw_coap__dedup *nd = realloc(dd, sizeof(*nd) + cap * sizeof(nd->e[0]));
    if (!nd)
        return NULL;
    memset(&nd->e[old], 0, (cap - old) * sizeof(nd->e[0]));
    nd->cap = (uint8_t)cap;
    ep->dd = nd;
    return &nd->e[old];
}

static struct dedup_ent *dd_add(struct lw_coap_ep *ep, const struct lw_coap_msg *m, uint8_t state,
                                uint64_t now)
{
    struct dedup_ent *e = dd_alloc(ep, now);
    if (!e)
        return NULL;
    e->mid = m->mid;
    e->state = state;
    e->tkl = m->tkl;
    memcpy(e->token, m->token, m->tkl);
    e->expires = now + (m->type == LW_COAP_CON ? ep->env->cfg.exchange_lifetime_ms
                                               : ep->env->cfg.non_lifetime_ms);
    if (e->expires == 0)
        e->expires = 1;
    return e;
}

/* Caches the reply sent for an entry (best effort: without memory the entry keeps its state and
 * a duplicate is re-processed as PENDING would be). */
static void dd_store(struct dedup_ent *e, const uint8_t *data, size_t len, uint8_t state)
{
    dd_drop_reply(e);
    if (len > DEDUP_INLINE) {
        uint8_t *copy = malloc(len);
        if (!copy)
            return;
        memcpy(copy, data, len);
        e->r.ext = copy;
    } else {
        memcpy(e->r.inl, data, len);
    }
    e->len = (uint16_t)len;
    e->state = state;
}

static void dd_replay(struct lw_coap_ep *ep, const struct dedup_ent *e)
{
    if (e->len)
        tx(ep, e->len > DEDUP_INLINE ? e->r.ext : e->r.inl, e->len);
}

/* Frees the ring once every entry has expired. */
static void dd_gc(struct lw_coap_ep *ep, uint64_t now)
{
    if (!ep->dd)
        return;
    for (size_t i = 0; i < ep->dd->cap; i++)
        if (ep->dd->e[i].expires > now)
            return;
    for (size_t i = 0; i < ep->dd->cap; i++)
        dd_free_ent(&ep->dd->e[i]);
    free(ep->dd);
    ep->dd = NULL;
}

static uint64_t dd_deadline(const struct lw_coap_ep *ep)
{
    uint64_t d = 0;
    if (!ep->dd)
        return UINT64_MAX;
    for (size_t i = 0; i < ep->dd->cap; i++)
        d = LW_MAX(d, ep->dd->e[i].expires);
    return d ? d : UINT64_MAX;
}

/* ---- transactions ------------------------------------------------------------------------ */

static void txn_free(struct lw_coap__txn *t)
{
    if (t->b2) {
        lw_coap_b2asm_deinit(t->b2);
        free(t->b2);
    }
    free(t->tmpl);
    free(t->body);
    free(t);
}

static void txn_unlink(struct lw_coap_ep *ep, struct lw_coap__txn *t)
{
    for (struct lw_coap__txn **pp = &ep->txns; *pp; pp = &(*pp)->next) {
        if (*pp == t) {
            *pp = t->next;
            break;
        }
    }
    t->next = NULL;
    if (t->kind != K_SEPRESP && t->state != T_QUEUED && ep->nactive > 0)
        ep->nactive--;
}

static void txn_append(struct lw_coap_ep *ep, struct lw_coap__txn *t)
{
    struct lw_coap__txn **pp = &ep->txns;
    while (*pp)
        pp = &(*pp)->next;
    *pp = t;
}

static uint16_t new_mid(struct lw_coap_ep *ep)
{
    return ep->next_mid++;
}

static uint32_t new_id(struct lw_coap_ep *ep)
{
    uint32_t id = ep->next_id++;
    if (ep->next_id == 0)
        ep->next_id = 1;
    return id;
}

/* Builds the datagram for t's current step into out. */
static int txn_build(const struct lw_coap__txn *t, struct lw_buf *out)
{
    if (t->kind != K_REQ) {
        lw_buf_put(out, t->tmpl, t->tmpl_len);
        if (out->len >= 4) {
            out->data[2] = (uint8_t)(t->mid >> 8);
            out->data[3] = (uint8_t)t->mid;
        }
        return lw_buf_status(out);
    }
    struct lw_coap_msg m;
    int rc = lw_coap_parse(&m, t->tmpl, t->tmpl_len, NULL, NULL);
    if (rc)
        return LW_EINTERNAL;
    m.mid = t->mid;
    m.tkl = t->tkl;
    memcpy(m.token, t->token, t->tkl);
    if (t->b2_num) {
        /* RFC 7959 §2.4 continuation: a plain GET/FETCH for block NUM (no Observe: §2.6). For
         * Block1+Block2 (§2.7) the body has already been sent: no Block1, no payload. */
        struct lw_coap_block b = {t->b2_num, false, t->szx};
        lw_coap_del_opt(&m, LW_COAP_OPT_OBSERVE);
        lw_coap_del_opt(&m, LW_COAP_OPT_BLOCK2);
        if ((rc = lw_coap_add_block(&m, LW_COAP_OPT_BLOCK2, &b)) != 0)
            return rc;
        if (t->body && m.code == LW_COAP_FETCH)
            m.payload = (struct lw_bytes){t->body, t->body_len}; /* FETCH keeps its body */
    } else if (t->block1) {
        size_t bs = lw_coap_block_size(t->szx);
        size_t off = (size_t)t->b1_num * bs;
        size_t n = off < t->body_len ? LW_MIN(bs, t->body_len - off) : 0;
        struct lw_coap_block b = {t->b1_num, off + n < t->body_len, t->szx};
        if ((rc = lw_coap_add_block(&m, LW_COAP_OPT_BLOCK1, &b)) != 0)
            return rc;
        /* RFC 7959 §4: Size1 announces the total size with the first block. */
        if (t->b1_num == 0 && t->body_len <= UINT32_MAX &&
            (rc = lw_coap_add_uint(&m, LW_COAP_OPT_SIZE1, (uint32_t)t->body_len)) != 0)
            return rc;
        m.payload = (struct lw_bytes){t->body + off, n};
    } else if (t->body) {
        m.payload = (struct lw_bytes){t->body, t->body_len};
    }
    return lw_coap_serialize(&m, out);
}

/* (Re)transmits t's current datagram. */
static int txn_send(struct lw_coap_ep *ep, struct lw_coap__txn *t)
{
    uint8_t mem[LW_COAP_MAX_DGRAM];
    struct lw_buf b;
    lw_buf_init_fixed(&b, mem, sizeof(mem));
    int rc = txn_build(t, &b);
    if (rc == 0)
        tx(ep, b.data, b.len);
    return rc;
}

/* Sends the first datagram of a (new) step: fresh MID and timers. */
static int txn_start(struct lw_coap_ep *ep, struct lw_coap__txn *t, uint64_t now)
{
    const struct lw_coap_cfg *c = &ep->env->cfg;
    t->mid = new_mid(ep);
    t->retries = 0;
    if (t->con) {
        /* §4.2: initial timeout random in [ACK_TIMEOUT, ACK_TIMEOUT * ACK_RANDOM_FACTOR]. */
        uint64_t span = (uint64_t)c->ack_timeout_ms * (c->ack_random_factor_pct - 100) / 100;
        t->timeout_ms = c->ack_timeout_ms + (uint32_t)((span * rnd32(ep->env)) >> 32);
        t->state = T_WAIT_ACK;
        t->deadline = now + t->timeout_ms;
    } else {
        t->state = T_WAIT_RESP;
        t->deadline = now + c->response_timeout_ms;
    }
    return txn_send(ep, t);
}

static void finish(struct lw_coap_ep *ep, struct lw_coap__txn *t, int result,
                   const struct lw_coap_msg *msg, uint64_t now);
static void drop_continuation(struct lw_coap_ep *ep, struct lw_coap__obs *o, uint64_t now);

/* Starts queued requests while fewer than NSTART are outstanding (§4.7). */
static void pump(struct lw_coap_ep *ep, uint64_t now)
{
    struct lw_coap__txn *t = ep->txns;
    while (t && ep->nactive < ep->env->cfg.nstart) {
        struct lw_coap__txn *next = t->next;
        if (t->state == T_QUEUED && t->kind != K_SEPRESP) {
            ep->nactive++;
            if (txn_start(ep, t, now) != 0) {
                finish(ep, t, LW_COAP_RES_ERROR, NULL, now);
                next = ep->txns; /* the list may have changed in the callback */
            }
        }
        t = next;
    }
}

/* Completes t: unlinks it, reports the result, frees it and lets the queue move on. */
static void finish(struct lw_coap_ep *ep, struct lw_coap__txn *t, int result,
                   const struct lw_coap_msg *msg, uint64_t now)
{
    txn_unlink(ep, t);
    if (t->kind != K_SEPRESP && !t->notify_obs && ep->env->ops->on_response) {
        ep->in_cb++;
        ep->env->ops->on_response(ep->ctx, ep, (struct lw_coap_handle){t->id}, t->cookie, result,
                                  msg);
        ep->in_cb--;
    }
    txn_free(t);
    pump(ep, now);
}

static struct lw_coap__txn *txn_by_mid(struct lw_coap_ep *ep, uint16_t mid)
{
    for (struct lw_coap__txn *t = ep->txns; t; t = t->next)
        if (t->state != T_QUEUED && t->mid == mid)
            return t;
    return NULL;
}

static struct lw_coap__txn *txn_by_token(struct lw_coap_ep *ep, const struct lw_coap_msg *m)
{
    for (struct lw_coap__txn *t = ep->txns; t; t = t->next)
        if (t->state != T_QUEUED && t->kind == K_REQ && t->tkl == m->tkl &&
            memcmp(t->token, m->token, m->tkl) == 0)
            return t;
    return NULL;
}

static struct lw_coap__obs *obs_by_token(struct lw_coap_ep *ep, const struct lw_coap_msg *m)
{
    for (struct lw_coap__obs *o = ep->obs; o; o = o->next)
        if (o->tkl == m->tkl && memcmp(o->token, m->token, m->tkl) == 0)
            return o;
    return NULL;
}

static bool token_in_use(struct lw_coap_ep *ep, const uint8_t *tok, uint8_t tkl)
{
    for (struct lw_coap__txn *t = ep->txns; t; t = t->next)
        if (t->kind == K_REQ && t->tkl == tkl && memcmp(t->token, tok, tkl) == 0)
            return true;
    for (struct lw_coap__obs *o = ep->obs; o; o = o->next)
        if (o->tkl == tkl && memcmp(o->token, tok, tkl) == 0)
            return true;
    return false;
}

static void obs_remove(struct lw_coap_ep *ep, struct lw_coap__obs *o)
{
    for (struct lw_coap__obs **pp = &ep->obs; *pp; pp = &(*pp)->next) {
        if (*pp == o) {
            *pp = o->next;
            break;
        }
    }
    free(o->tmpl);
    free(o->body);
    free(o);
}

static struct lw_coap__obs *obs_by_id(struct lw_coap_ep *ep, uint32_t id)
{
    for (struct lw_coap__obs *o = ep->obs; o; o = o->next)
        if (o->id == id)
            return o;
    return NULL;
}

/* Fills t->token with 8 random bytes not used by another request or observation (§5.3.1: unique
 * per peer while in use; protocol.md §1.4: 64 random bits). A collision is retried. */
static int new_token(struct lw_coap_ep *ep, struct lw_coap__txn *t)
{
    t->tkl = LW_COAP_MAX_TOKEN;
    for (int i = 0; i < 8; i++) {
        int rc = rnd(ep->env, t->token, t->tkl);
        if (rc)
            return rc;
        if (!token_in_use(ep, t->token, t->tkl))
            break;
    }
    return 0;
}

/* ---- requests from this side ------------------------------------------------------------- */

static int request_common(struct lw_coap_ep *ep, const struct lw_coap_msg *req, uint64_t cookie,
                          uint64_t now, const uint8_t *token, uint8_t tkl, struct lw_coap_handle *h)
{
    int rc = 0;
    struct lw_coap__txn *t = NULL;
    struct lw_buf tb;
    lw_buf_init(&tb, 64);
    if (ep->in_cb == CLOSING) {
        rc = LW_ECANCELED;
        goto out;
    }
    if ((req->type != LW_COAP_CON && req->type != LW_COAP_NON) || !lw_coap_is_request(req->code)) {
        rc = LW_EINVAL;
        goto out;
    }
    t = calloc(1, sizeof(*t));
    if (!t) {
        rc = LW_ENOMEM;
        goto out;
    }
    t->kind = K_REQ;
    t->con = req->type == LW_COAP_CON;
    t->cookie = cookie;
    t->szx = ep->env->cfg.block_szx;
    if (token) {
        t->tkl = tkl;
        memcpy(t->token, token, tkl);
    } else if ((rc = new_token(ep, t)) != 0) {
        goto out;
    }
    uint32_t ov;
    t->obs_reg = (req->code == LW_COAP_GET || req->code == LW_COAP_FETCH) &&
                 lw_coap_get_uint(req, LW_COAP_OPT_OBSERVE, &ov) == 0 && ov == 0;
    /* Template: the request without payload (type, code and options; MID/token set per send). */
    struct lw_coap_msg tm = *req;
    tm.payload = (struct lw_bytes){NULL, 0};
    tm.tkl = 0;
    tm.mid = 0;
    if ((rc = lw_coap_serialize(&tm, &tb)) != 0)
        goto out;
    t->tmpl_len = tb.len;
    t->tmpl = tb.data;
    tb.data = NULL;
    if (req->payload.len) {
        t->body = malloc(req->payload.len);
        if (!t->body) {
            rc = LW_ENOMEM;
            goto out;
        }
        memcpy(t->body, req->payload.ptr, req->payload.len);
        t->body_len = req->payload.len;
        /* RFC 7959: bodies larger than one block go out with Block1 (firmware push). */
        t->block1 = t->body_len > lw_coap_block_size(t->szx) && req->code != LW_COAP_FETCH;
    }
    /* Check that the first datagram fits before queueing it. */
    {
        uint8_t mem[LW_COAP_MAX_DGRAM];
        struct lw_buf b;
        lw_buf_init_fixed(&b, mem, sizeof(mem));
        if ((rc = txn_build(t, &b)) != 0)
            goto out;
    }
    t->id = new_id(ep);
    t->state = T_QUEUED;
    txn_append(ep, t);
    if (h)
        *h = (struct lw_coap_handle){t->id};
    t = NULL;
    pump(ep, now);
out:
    lw_buf_deinit(&tb);
    if (t)
        txn_free(t);
    return rc;
}

int lw_coap_ep_request(struct lw_coap_ep *ep, const struct lw_coap_msg *req, uint64_t cookie,
                       uint64_t now, struct lw_coap_handle *h)
{
    return request_common(ep, req, cookie, now, NULL, 0, h);
}

int lw_coap_ep_ping(struct lw_coap_ep *ep, uint64_t cookie, uint64_t now, struct lw_coap_handle *h)
{
    if (ep->in_cb == CLOSING)
        return LW_ECANCELED;
    struct lw_coap__txn *t = calloc(1, sizeof(*t));
    if (!t)
        return LW_ENOMEM;
    t->tmpl = malloc(4);
    if (!t->tmpl) {
        free(t);
        return LW_ENOMEM;
    }
    lw_coap_encode_empty(t->tmpl, LW_COAP_CON, 0);
    t->tmpl_len = 4;
    t->kind = K_PING;
    t->con = 1;
    t->cookie = cookie;
    t->id = new_id(ep);
    t->state = T_QUEUED;
    txn_append(ep, t);
    if (h)
        *h = (struct lw_coap_handle){t->id};
    pump(ep, now);
    return 0;
}

int lw_coap_ep_cancel(struct lw_coap_ep *ep, struct lw_coap_handle h, uint64_t now)
{
    if (h.id == 0)
        return LW_ENOENT;
    for (struct lw_coap__txn *t = ep->txns; t; t = t->next) {
        if (t->kind != K_SEPRESP && t->id == h.id) {
            finish(ep, t, LW_COAP_RES_CANCELED, NULL, now);
            return 0;
        }
    }
    struct lw_coap__obs *o = obs_by_id(ep, h.id);
    if (!o)
        return LW_ENOENT;
    drop_continuation(ep, o, now);
    obs_remove(ep, o);
    return 0;
}

bool lw_coap_ep_queued(const struct lw_coap_ep *ep, struct lw_coap_handle h)
{
    for (const struct lw_coap__txn *t = ep->txns; t && h.id; t = t->next)
        if (t->kind == K_REQ && t->id == h.id)
            return t->state == T_QUEUED;
    return false;
}

struct lw_coap__obs *lw_coap_ep_obs_detach(struct lw_coap_ep *ep, struct lw_coap_handle h,
                                           uint64_t now)
{
    struct lw_coap__obs *o = h.id ? obs_by_id(ep, h.id) : NULL;
    if (!o)
        return NULL;
    drop_continuation(ep, o, now);
    for (struct lw_coap__obs **pp = &ep->obs; *pp; pp = &(*pp)->next) {
        if (*pp == o) {
            *pp = o->next;
            break;
        }
    }
    o->next = NULL;
    return o;
}

int lw_coap_ep_obs_attach(struct lw_coap_ep *ep, struct lw_coap__obs *o, uint64_t cookie,
                          struct lw_coap_handle *h)
{
    if (token_in_use(ep, o->token, o->tkl)) {
        lw_coap_obs_free(o);
        return LW_EEXIST;
    }
    o->id = new_id(ep);
    o->cookie = cookie;
    o->cont_id = 0;
    o->next = ep->obs;
    ep->obs = o;
    h->id = o->id;
    return 0;
}

void lw_coap_obs_free(struct lw_coap__obs *o)
{
    if (!o)
        return;
    free(o->tmpl);
    free(o->body);
    free(o);
}

int lw_coap_ep_observe_cancel(struct lw_coap_ep *ep, struct lw_coap_handle obs,
                              const struct lw_coap_msg *req, uint64_t cookie, uint64_t now,
                              struct lw_coap_handle *out)
{
    struct lw_coap__obs *o = ep->obs;
    while (o && o->id != obs.id)
        o = o->next;
    if (!o || obs.id == 0)
        return LW_ENOENT;
    if (req->code != LW_COAP_GET && req->code != LW_COAP_FETCH)
        return LW_EINVAL;
    /* RFC 7641 §3.6: GET with Observe = 1, same token and options as the registration. */
    struct lw_coap_msg m = *req;
    lw_coap_del_opt(&m, LW_COAP_OPT_OBSERVE);
    int rc = lw_coap_add_uint(&m, LW_COAP_OPT_OBSERVE, 1);
    if (rc)
        return rc;
    uint8_t tok[LW_COAP_MAX_TOKEN], tkl = o->tkl;
    memcpy(tok, o->token, tkl);
    drop_continuation(ep, o, now);
    obs_remove(ep, o);
    return request_common(ep, &m, cookie, now, tok, tkl, out);
}

size_t lw_coap_ep_pending(const struct lw_coap_ep *ep)
{
    size_t n = 0;
    for (const struct lw_coap__txn *t = ep->txns; t; t = t->next)
        if (t->kind != K_SEPRESP)
            n++;
    return n;
}

size_t lw_coap_ep_observations(const struct lw_coap_ep *ep)
{
    size_t n = 0;
    for (const struct lw_coap__obs *o = ep->obs; o; o = o->next)
        n++;
    return n;
}

/* ---- responses from this side ------------------------------------------------------------ */

int lw_coap_ep_respond(struct lw_coap_ep *ep, const struct lw_coap_req_ref *ref,
                       const struct lw_coap_msg *resp, uint64_t now)
{
    if (ref->tkl > LW_COAP_MAX_TOKEN || !lw_coap_is_response(resp->code))
        return LW_EINVAL;
    struct dedup_ent *e = dd_find(ep, ref->mid, now);
    if (e && (e->tkl != ref->tkl || memcmp(e->token, ref->token, ref->tkl) != 0))
        e = NULL; /* the MID was reused for another request: do not touch that entry */
    struct lw_coap_msg m = *resp;
    m.tkl = ref->tkl;
    memcpy(m.token, ref->token, ref->tkl);
    uint8_t mem[LW_COAP_MAX_DGRAM];
    struct lw_buf b;
    lw_buf_init_fixed(&b, mem, sizeof(mem));
    bool piggy = ref->type == LW_COAP_CON && (!e || e->state == D_PENDING);
    if (piggy) {
        /* §5.2.1: piggybacked in the ACK, same MID. */
        m.type = LW_COAP_ACK;
        m.mid = ref->mid;
        int rc = lw_coap_serialize(&m, &b);
        if (rc)
            return rc;
        tx(ep, b.data, b.len);
        if (e)
            dd_store(e, b.data, b.len, D_REPLIED);
        return 0;
    }
    if (e && (e->state == D_REPLIED || e->state == D_SEPARATE))
        return LW_EEXIST;
    /* §5.2.2 separate response (CON, new MID) after our Empty ACK; §5.2.3 NON for a NON. */
    m.type = ref->type == LW_COAP_CON ? LW_COAP_CON : LW_COAP_NON;
    m.mid = m.type == LW_COAP_NON ? new_mid(ep) : 0; /* a CON gets its MID in txn_start */
    int rc = lw_coap_serialize(&m, &b);
    if (rc)
        return rc;
    if (m.type == LW_COAP_NON) {
        tx(ep, b.data, b.len);
        if (e)
            e->state = D_REPLIED; /* answered; NON duplicates are still dropped, not replayed */
        return 0;
    }
    struct lw_coap__txn *t = calloc(1, sizeof(*t));
    if (!t || !(t->tmpl = malloc(b.len))) {
        free(t);
        return LW_ENOMEM;
    }
    memcpy(t->tmpl, b.data, b.len);
    t->tmpl_len = b.len;
    t->kind = K_SEPRESP;
    t->con = 1;
    txn_append(ep, t);
    if (e)
        e->state = D_SEPARATE; /* duplicates keep getting the Empty ACK */
    /* Separate responses are not requests: they do not count against NSTART. */
    rc = txn_start(ep, t, now);
    if (rc) {
        txn_unlink(ep, t);
        txn_free(t);
    }
    return rc;
}

int lw_coap_ep_accept(struct lw_coap_ep *ep, const struct lw_coap_req_ref *ref, uint64_t now)
{
    if (ref->type != LW_COAP_CON)
        return 0;
    struct dedup_ent *e = dd_find(ep, ref->mid, now);
    if (e && (e->tkl != ref->tkl || memcmp(e->token, ref->token, ref->tkl) != 0))
        e = NULL;
    if (e && e->state != D_PENDING)
        return e->state == D_ACKED ? 0 : LW_EEXIST;
    uint8_t b[4];
    lw_coap_encode_empty(b, LW_COAP_ACK, ref->mid);
    tx(ep, b, 4);
    if (e)
        dd_store(e, b, 4, D_ACKED);
    return 0;
}

/* ---- input ------------------------------------------------------------------------------- */

/* Sends an Empty ACK or RST for a received CON and caches it against duplicates. */
static void reply_empty(struct lw_coap_ep *ep, struct dedup_ent *e, uint8_t type, uint16_t mid)
{
    uint8_t b[4];
    lw_coap_encode_empty(b, type, mid);
    tx(ep, b, 4);
    if (e)
        dd_store(e, b, 4, D_REPLIED);
}

static void deliver(struct lw_coap_ep *ep, struct lw_coap__txn *t, const struct lw_coap_msg *m,
                    uint64_t now)
{
    if (t->notify_obs) {
        /* The whole body of a Block2 notification (RFC 7959 §2.6). */
        struct lw_coap_handle h = {t->notify_obs};
        struct lw_coap__obs *o = obs_by_id(ep, t->notify_obs);
        if (o && o->cont_id == t->id)
            o->cont_id = 0;
        txn_unlink(ep, t);
        if (ep->env->ops->on_notify) {
            ep->in_cb++;
            ep->env->ops->on_notify(ep->ctx, ep, h, t->cookie, m, t->nflags);
            ep->in_cb--;
        }
        txn_free(t);
        pump(ep, now);
        return;
    }
    if (t->obs_reg && t->obs_ok && LW_COAP_CODE_CLASS(m->code) == 2) {
        struct lw_coap__obs *o = calloc(1, sizeof(*o));
        if (o) {
            o->id = t->id;
            o->cookie = t->cookie;
            o->tkl = t->tkl;
            memcpy(o->token, t->token, t->tkl);
            o->last_seq = t->obs_seq;
            o->last_time = now;
            /* The registration request moves to the observation (m never points into it). */
            o->tmpl = t->tmpl;
            o->tmpl_len = t->tmpl_len;
            o->body = t->body;
            o->body_len = t->body_len;
            t->tmpl = t->body = NULL;
            o->next = ep->obs;
            ep->obs = o;
        }
    }
    finish(ep, t, LW_COAP_RES_RESPONSE, m, now);
}

/* Sends the next step of t (new MID, same token). */
static void next_step(struct lw_coap_ep *ep, struct lw_coap__txn *t, uint64_t now)
{
    if (txn_start(ep, t, now) != 0)
        finish(ep, t, LW_COAP_RES_ERROR, NULL, now);
}

/* A response (piggybacked or separate) matched to request t. */
static void on_txn_response(struct lw_coap_ep *ep, struct lw_coap__txn *t,
                            const struct lw_coap_msg *m, uint64_t now)
{
    uint8_t cls = LW_COAP_CODE_CLASS(m->code);
    struct lw_coap_block b;
    /* Block1 upload in progress (RFC 7959 §2.3, §2.5). */
    if (t->block1 && !t->b2_num) {
        size_t bs = lw_coap_block_size(t->szx);
        size_t sent_end = ((size_t)t->b1_num + 1) * bs;
        bool more = sent_end < t->body_len;
        int brc = lw_coap_get_block(m, LW_COAP_OPT_BLOCK1, &b);
        if (m->code == LW_COAP_REQUEST_TOO_LARGE && brc == 0 && b.szx < t->szx && t->b1_num == 0) {
            /* §2.9.3: a 4.13 with a smaller SZX is a hint to retry with that size. */
            t->szx = b.szx;
            next_step(ep, t, now);
            return;
        }
        if (more && cls == 2 && brc == 0 && b.szx <= 6) {
            /* 2.31 Continue (atomic) or 2.04 with Block1 (non-atomic): next block, switching to
             * the peer's smaller size when it asked for one (§2.3, renumbering by offset). */
            if (b.szx < t->szx) {
                t->b1_num = (uint32_t)(sent_end >> (b.szx + 4));
                t->szx = b.szx;
            } else {
                t->b1_num++;
            }
            next_step(ep, t, now);
            return;
        }
    }
    /* Block2 response (RFC 7959 §2.4): reassemble, asking for the next block. */
    int brc = lw_coap_get_block(m, LW_COAP_OPT_BLOCK2, &b);
    if (brc == 0 && cls == 2 && (b.more || t->b2)) {
        if (!t->b2) {
            t->b2 = malloc(sizeof(*t->b2));
            if (!t->b2) {
                finish(ep, t, LW_COAP_RES_ERROR, m, now);
                return;
            }
            lw_coap_b2asm_init(t->b2, ep->env->cfg.max_body);
        }
        if (t->b2_num == 0 && t->obs_reg) {
            uint32_t seq = 0;
            t->obs_ok = lw_coap_get_uint(m, LW_COAP_OPT_OBSERVE, &seq) == 0;
            t->obs_seq = seq & 0xffffff;
        }
        int rc = lw_coap_b2asm_feed(t->b2, m);
        if (rc == LW_EAGAIN) {
            t->b2_num = t->b2->next_num;
            t->szx = t->b2->szx;
            next_step(ep, t, now);
            return;
        }
        if (rc != 0) {
            finish(ep, t, LW_COAP_RES_ERROR, m, now);
            return;
        }
        struct lw_coap_msg full = *m;
        lw_coap_del_opt(&full, LW_COAP_OPT_BLOCK2);
        full.payload = (struct lw_bytes){t->b2->data, t->b2->len};
        deliver(ep, t, &full, now);
        return;
    }
    if (t->obs_reg && !t->b2) {
        uint32_t seq = 0;
        t->obs_ok = lw_coap_get_uint(m, LW_COAP_OPT_OBSERVE, &seq) == 0;
        t->obs_seq = seq & 0xffffff;
    }
    deliver(ep, t, m, now);
}

/* Drops the continuation request of observation o, if any (a newer notification supersedes
 * it: only the latest state matters, RFC 7641 §3.4). */
static void drop_continuation(struct lw_coap_ep *ep, struct lw_coap__obs *o, uint64_t now)
{
    for (struct lw_coap__txn *t = ep->txns; t && o->cont_id; t = t->next) {
        if (t->kind == K_REQ && t->id == o->cont_id) {
            finish(ep, t, LW_COAP_RES_CANCELED, NULL, now); /* silent: notify_obs is set */
            break;
        }
    }
    o->cont_id = 0;
}

/* First block of a Block2 notification: fetch the rest with GET/FETCH + Block2 (RFC 7959 §2.6),
 * then report the whole body. Returns true when a continuation was started. */
static bool start_continuation(struct lw_coap_ep *ep, struct lw_coap__obs *o,
                               const struct lw_coap_msg *m, unsigned flags, uint64_t now)
{
    struct lw_coap__txn *t = NULL;
    bool started = false;
    if (!o->tmpl)
        goto out;
    t = calloc(1, sizeof(*t));
    if (!t || !(t->b2 = malloc(sizeof(*t->b2))))
        goto out;
    lw_coap_b2asm_init(t->b2, ep->env->cfg.max_body);
    if (lw_coap_b2asm_feed(t->b2, m) != LW_EAGAIN)
        goto out;
    if (!(t->tmpl = malloc(o->tmpl_len)))
        goto out;
    memcpy(t->tmpl, o->tmpl, o->tmpl_len);
    t->tmpl_len = o->tmpl_len;
    if (o->body) {
        if (!(t->body = malloc(o->body_len)))
            goto out;
        memcpy(t->body, o->body, o->body_len);
        t->body_len = o->body_len;
    }
    /* A token of its own: notifications keep arriving with the observation's token. */
    if (new_token(ep, t) != 0)
        goto out;
    drop_continuation(ep, o, now);
    t->kind = K_REQ;
    t->con = 1;
    t->szx = t->b2->szx;
    t->b2_num = t->b2->next_num;
    t->notify_obs = o->id;
    t->nflags = (uint8_t)flags;
    t->cookie = o->cookie;
    t->id = new_id(ep);
    t->state = T_QUEUED;
    o->cont_id = t->id;
    txn_append(ep, t);
    t = NULL;
    started = true;
    pump(ep, now);
out:
    if (t)
        txn_free(t);
    return started;
}

/* A notification (or late response) for observation o. */
static void on_notification(struct lw_coap_ep *ep, struct lw_coap__obs *o,
                            const struct lw_coap_msg *m, uint64_t now)
{
    uint32_t seq = 0;
    unsigned flags = 0;
    struct lw_coap_handle h = {o->id};
    uint64_t cookie = o->cookie;
    if (LW_COAP_CODE_CLASS(m->code) == 2 && lw_coap_get_uint(m, LW_COAP_OPT_OBSERVE, &seq) == 0) {
        seq &= 0xffffff;
        if (lw_coap_obs_fresher(o->last_seq, o->last_time, seq, now)) {
            flags |= LW_COAP_NOTIFY_FRESH;
            o->last_seq = seq;
            o->last_time = now;
            struct lw_coap_block b;
            if (lw_coap_get_block(m, LW_COAP_OPT_BLOCK2, &b) == 0 && b.more &&
                start_continuation(ep, o, m, flags, now))
                return;
        }
    } else {
        /* RFC 7641 §3.2: a notification without Observe (or an error) ends the observation. */
        flags = LW_COAP_NOTIFY_FRESH | LW_COAP_NOTIFY_FINAL;
        drop_continuation(ep, o, now);
        obs_remove(ep, o);
    }
    if (ep->env->ops->on_notify) {
        ep->in_cb++;
        ep->env->ops->on_notify(ep->ctx, ep, h, cookie, m, flags);
        ep->in_cb--;
    }
}

static int input_empty_or_ack(struct lw_coap_ep *ep, const struct lw_coap_msg *m, uint64_t now)
{
    if (m->type == LW_COAP_CON) {
        /* §4.3 CoAP ping: an Empty CON is answered with RST. */
        tx_empty(ep, LW_COAP_RST, m->mid);
        return 0;
    }
    struct lw_coap__txn *t = txn_by_mid(ep, m->mid);
    if (!t)
        return LW_ENOENT; /* §4.2: unmatched ACK/RST are silently ignored */
    if (m->type == LW_COAP_RST) {
        /* §4.2: RST ends the exchange (for a ping it proves the peer is alive). */
        finish(ep, t, LW_COAP_RES_RESET, NULL, now);
        return 0;
    }
    /* ACK */
    if (m->code == LW_COAP_EMPTY) {
        if (t->kind == K_SEPRESP) {
            finish(ep, t, LW_COAP_RES_RESPONSE, NULL, now);
        } else if (t->kind == K_PING) {
            finish(ep, t, LW_COAP_RES_RESET, NULL, now); /* an ACK proves liveness as well */
        } else if (t->state == T_WAIT_ACK) {
            /* §5.2.2: the response will come separately. */
            t->state = T_WAIT_RESP;
            t->deadline = now + ep->env->cfg.response_timeout_ms;
        }
        return 0;
    }
    /* Piggybacked response: MID and token must both match (§5.3.2). */
    if (t->kind != K_REQ || t->tkl != m->tkl || memcmp(t->token, m->token, m->tkl) != 0)
        return LW_ENOENT;
    on_txn_response(ep, t, m, now);
    return 0;
}

int lw_coap_ep_input(struct lw_coap_ep *ep, const uint8_t *data, size_t len, uint64_t now)
{
    struct lw_coap_msg m;
    struct lw_coap_perr err;
    int rc = lw_coap_parse(&m, data, len, NULL, &err);
    if (rc == 0)
        rc = lw_coap_check_opts(&m, &err);
    if (rc != 0) {
        if (err.action == LW_COAP_A_RST) {
            tx_empty(ep, LW_COAP_RST, m.mid);
        } else if (err.action == LW_COAP_A_BAD_OPTION) {
            /* §5.4.1: 4.02 piggybacked; cached so a retransmission gets the same answer. */
            struct dedup_ent *e = dd_find(ep, m.mid, now);
            if (e) {
                dd_replay(ep, e);
                return LW_EEXIST;
            }
            struct lw_coap_msg r;
            lw_coap_msg_init(&r, LW_COAP_ACK, LW_COAP_BAD_OPTION);
            r.mid = m.mid;
            r.tkl = m.tkl;
            memcpy(r.token, m.token, m.tkl);
            uint8_t mem[16];
            struct lw_buf b;
            lw_buf_init_fixed(&b, mem, sizeof(mem));
            if (lw_coap_serialize(&r, &b) == 0) {
                tx(ep, b.data, b.len);
                e = dd_add(ep, &m, D_REPLIED, now);
                if (e)
                    dd_store(e, b.data, b.len, D_REPLIED);
            }
        }
        return rc;
    }
    if (m.code == LW_COAP_EMPTY || m.type == LW_COAP_ACK || m.type == LW_COAP_RST)
        return input_empty_or_ack(ep, &m, now);

    /* CON or NON carrying a request or a response: deduplicate on MID (§4.5). */
    struct dedup_ent *e = dd_find(ep, m.mid, now);
    if (e) {
        if (e->state == D_PENDING) {
            /* Still being processed: acknowledge now, the response will be separate (§5.2.2). */
            struct lw_coap_req_ref ref = lw_coap_req_ref_of(&m);
            lw_coap_ep_accept(ep, &ref, now);
        } else if (m.type == LW_COAP_CON) {
            dd_replay(ep, e);
        }
        return LW_EEXIST;
    }
    bool con = m.type == LW_COAP_CON;
    if (lw_coap_is_request(m.code)) {
        e = dd_add(ep, &m, con ? D_PENDING : D_NON, now);
        ep->in_cb++;
        ep->env->ops->on_request(ep->ctx, ep, &m, now);
        ep->in_cb--;
        return 0;
    }
    /* A separate response or a notification. */
    e = dd_add(ep, &m, con ? D_REPLIED : D_NON, now);
    struct lw_coap__txn *t = txn_by_token(ep, &m);
    if (t) {
        if (con)
            reply_empty(ep, e, LW_COAP_ACK, m.mid);
        on_txn_response(ep, t, &m, now);
        return 0;
    }
    struct lw_coap__obs *o = obs_by_token(ep, &m);
    if (o) {
        if (con)
            reply_empty(ep, e, LW_COAP_ACK, m.mid);
        on_notification(ep, o, &m, now);
        return 0;
    }
    /* §5.3.2 unexpected response: RST for a CON; RFC 7641 §3.6 also rejects an unknown
     * notification (NON with Observe) with RST so the peer removes the observer. */
    if (con || lw_coap_find_opt(&m, LW_COAP_OPT_OBSERVE)) {
        if (con)
            reply_empty(ep, e, LW_COAP_RST, m.mid);
        else
            tx_empty(ep, LW_COAP_RST, m.mid);
    }
    return LW_ENOENT;
}

/* ---- time -------------------------------------------------------------------------------- */

void lw_coap_ep_timeout(struct lw_coap_ep *ep, uint64_t now)
{
    const struct lw_coap_cfg *c = &ep->env->cfg;
again:
    for (struct lw_coap__txn *t = ep->txns; t; t = t->next) {
        if (t->state == T_QUEUED || t->deadline > now)
            continue;
        if (t->state == T_WAIT_ACK && t->retries < c->max_retransmit) {
            /* §4.2: retransmit and double the timeout. */
            t->retries++;
            t->timeout_ms = t->timeout_ms > UINT32_MAX / 2 ? UINT32_MAX : t->timeout_ms * 2;
            t->deadline = now + t->timeout_ms;
            if (txn_send(ep, t) != 0) {
                finish(ep, t, LW_COAP_RES_ERROR, NULL, now);
                goto again;
            }
            continue;
        }
        finish(ep, t, LW_COAP_RES_TIMEOUT, NULL, now);
        goto again; /* the list may have changed */
    }
    dd_gc(ep, now);
}

uint64_t lw_coap_ep_next_deadline(const struct lw_coap_ep *ep)
{
    uint64_t d = dd_deadline(ep);
    for (const struct lw_coap__txn *t = ep->txns; t; t = t->next)
        if (t->state != T_QUEUED && t->deadline < d)
            d = t->deadline;
    return d;
}

void lw_coap_ep_deinit(struct lw_coap_ep *ep)
{
    if (lw_fails_assert(ep->in_cb == 0))
        return;
    /* Queued requests first so that finishing an active one does not start them. Callbacks run
     * with the ep marked closing: new requests are refused. */
    ep->in_cb = CLOSING;
    while (ep->txns) {
        struct lw_coap__txn *t = ep->txns, *q = NULL;
        for (struct lw_coap__txn *i = ep->txns; i; i = i->next)
            if (i->state == T_QUEUED)
                q = i;
        if (q)
            t = q;
        txn_unlink(ep, t);
        if (t->kind != K_SEPRESP && !t->notify_obs && ep->env->ops->on_response)
            ep->env->ops->on_response(ep->ctx, ep, (struct lw_coap_handle){t->id}, t->cookie,
                                      LW_COAP_RES_CANCELED, NULL);
        txn_free(t);
    }
    while (ep->obs)
        obs_remove(ep, ep->obs);
    if (ep->dd) {
        for (size_t i = 0; i < ep->dd->cap; i++)
            dd_free_ent(&ep->dd->e[i]);
        free(ep->dd);
        ep->dd = NULL;
    }
    ep->in_cb = 0;
}
