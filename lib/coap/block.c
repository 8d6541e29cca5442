/* lib/coap/block.c - Block-wise transfer helpers (RFC 7959): option values, Block2 serving,
 * Block2 reassembly (client side) and atomic Block1 reception (server side). */
#include "coap_int.h"

#include "base/err.h"
#include "base/util.h"

#include <stdlib.h>

#define DEFAULT_MAX_BODY     65536u
#define EXCHANGE_LIFETIME_MS 247000u

int lw_coap_block_encode(const struct lw_coap_block *b, uint32_t *value)
{
    if (b->num >= (1u << 20) || b->szx > 7)
        return LW_ERANGE;
    *value = b->num << 4 | (uint32_t)b->more << 3 | b->szx;
    return 0;
}

int lw_coap_get_block(const struct lw_coap_msg *m, uint16_t num, struct lw_coap_block *b)
{
    const struct lw_coap_opt *o = lw_coap_find_opt(m, num);
    if (!o)
        return LW_ENOENT;
    /* §2.2: 0-3 bytes. Leading zeros are legal uint encoding, so decode then range-check. */
    uint32_t v;
    if (lw_coap_decode_uint(lw_coap_opt_data(o), o->len, &v) != 0 || v >= (1u << 24))
        return LW_EMALFORMED;
    b->num = v >> 4;
    b->more = (v >> 3) & 1;
    b->szx = v & 7;
    return 0;
}

int lw_coap_add_block(struct lw_coap_msg *m, uint16_t num, const struct lw_coap_block *b)
{
    uint32_t v;
    int rc = lw_coap_block_encode(b, &v);
    if (rc)
        return rc;
    return lw_coap_add_uint(m, num, v);
}

int lw_coap_block2_serve(const struct lw_coap_msg *req, struct lw_bytes body, struct lw_bytes etag,
                         uint8_t max_szx, struct lw_coap_msg *resp)
{
    struct lw_coap_block rb = {0, false, max_szx > 6 ? 6 : max_szx};
    bool asked = false;
    int rc = 0;
    uint32_t size2_req;
    bool want_size = lw_coap_get_uint(req, LW_COAP_OPT_SIZE2, &size2_req) == 0;
    resp->nopts = 0;
    resp->payload = (struct lw_bytes){NULL, 0};
    struct lw_coap_block qb;
    int brc = lw_coap_get_block(req, LW_COAP_OPT_BLOCK2, &qb);
    if (brc == LW_EMALFORMED || (brc == 0 && qb.szx == 7)) {
        resp->code = LW_COAP_BAD_REQUEST; /* §2.2: SZX 7 in a request MUST get 4.00 */
        goto out;
    }
    if (brc == 0) {
        asked = true;
        /* §2.4: the server uses the block size asked for, or a smaller one. A smaller size asked
         * for a later block is renumbered relative to the same byte offset. */
        if (qb.szx < rb.szx)
            rb.szx = qb.szx;
        uint64_t off = (uint64_t)qb.num << (qb.szx + 4);
        rb.num = (uint32_t)(off >> (rb.szx + 4));
    }
    size_t bs = lw_coap_block_size(rb.szx);
    uint64_t off = (uint64_t)rb.num * bs;
    if (off > body.len || (off == body.len && body.len > 0)) {
        resp->code = LW_COAP_BAD_OPTION;
        goto out;
    }
    resp->code = LW_COAP_CONTENT;
    if (etag.len > 0 && etag.len <= 8 &&
        (rc = lw_coap_add_opt(resp, LW_COAP_OPT_ETAG, etag.ptr, etag.len)) != 0)
        goto out;
    size_t n = LW_MIN(bs, body.len - (size_t)off);
    if (asked || body.len > bs) {
        rb.more = off + n < body.len;
        if ((rc = lw_coap_add_block(resp, LW_COAP_OPT_BLOCK2, &rb)) != 0)
            goto out;
        if ((rb.num == 0 || want_size) && body.len <= UINT32_MAX &&
            (rc = lw_coap_add_uint(resp, LW_COAP_OPT_SIZE2, (uint32_t)body.len)) != 0)
            goto out;
    } else if (want_size && body.len <= UINT32_MAX) {
        if ((rc = lw_coap_add_uint(resp, LW_COAP_OPT_SIZE2, (uint32_t)body.len)) != 0)
            goto out;
    }
    if (n)
        resp->payload = (struct lw_bytes){body.ptr + off, n};
out:
    return rc;
}

/* ---- Block2 reassembly ------------------------------------------------------------------- */

void lw_coap_b2asm_init(struct lw_coap_b2asm *a, size_t max)
{
    memset(a, 0, sizeof(*a));
    a->max = max ? max : DEFAULT_MAX_BODY;
}

void lw_coap_b2asm_deinit(struct lw_coap_b2asm *a)
{
    free(a->data);
    a->data = NULL;
    a->len = a->cap = 0;
}

/* Grows the buffer to hold `need` bytes (need <= a->max). */
static int b2_reserve(uint8_t **data, size_t *cap, size_t need, size_t max)
{
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap : 1024;
    while (nc < need)
        nc *= 2;
    if (nc > max)
        nc = max;
    uint8_t *d = realloc(*data, nc);
    if (!d)
        return LW_ENOMEM;
    *data = d;
    *cap = nc;
    return 0;
}

int lw_coap_b2asm_feed(struct lw_coap_b2asm *a, const struct lw_coap_msg *resp)
{
    struct lw_coap_block b;
    int rc = lw_coap_get_block(resp, LW_COAP_OPT_BLOCK2, &b);
    if (rc)
        return rc; /* LW_ENOENT or LW_EMALFORMED */
    if (b.szx == 7)
        return LW_EMALFORMED;
    struct lw_bytes etag = {NULL, 0};
    bool has_etag = lw_coap_get_bytes(resp, LW_COAP_OPT_ETAG, &etag) == 0;
    uint64_t off = (uint64_t)b.num << (b.szx + 4);
    if (a->len == 0 && b.num == 0) {
        a->has_etag = has_etag && etag.len <= 8;
        a->etag_len = a->has_etag ? (uint8_t)etag.len : 0;
        if (a->has_etag)
            memcpy(a->etag, etag.ptr, etag.len);
    } else {
        /* The block must continue exactly where the body ends (the server may have lowered the
         * size: §2.4 renumbering keeps offsets consistent). */
        if (off != a->len)
            return LW_EPROTO;
        /* §2.4: a changed ETag means the representation changed mid-transfer. */
        if (has_etag != a->has_etag ||
            (has_etag && !lw_bytes_eq(etag, LW_BYTES(a->etag, a->etag_len))))
            return LW_EPROTO;
    }
    /* §2.2: with M=1 the payload size equals the block size. */
    if (b.more && resp->payload.len != lw_coap_block_size(b.szx))
        return LW_EPROTO;
    if (resp->payload.len > a->max - a->len)
        return LW_ELIMIT;
    if ((rc = b2_reserve(&a->data, &a->cap, a->len + resp->payload.len, a->max)) != 0)
        return rc;
    if (resp->payload.len)
        memcpy(a->data + a->len, resp->payload.ptr, resp->payload.len);
    a->len += resp->payload.len;
    a->szx = b.szx;
    if (!b.more)
        return 0;
    a->next_num = b.num + 1;
    if (a->next_num >= (1u << 20))
        return LW_ELIMIT;
    return LW_EAGAIN;
}

/* ---- Atomic Block1 reception ------------------------------------------------------------- */

void lw_coap_b1rx_init(struct lw_coap_b1rx *rx, size_t max, uint8_t max_szx, uint32_t lifetime_ms)
{
    memset(rx, 0, sizeof(*rx));
    rx->max = max ? max : DEFAULT_MAX_BODY;
    rx->max_szx = max_szx > 6 ? 6 : max_szx;
    rx->lifetime_ms = lifetime_ms ? lifetime_ms : EXCHANGE_LIFETIME_MS;
    rx->cf = 0xffff;
}

void lw_coap_b1rx_deinit(struct lw_coap_b1rx *rx)
{
    free(rx->data);
    rx->data = NULL;
    rx->len = rx->cap = 0;
    rx->active = false;
}

static void b1rx_reset(struct lw_coap_b1rx *rx)
{
    rx->len = 0;
    rx->active = false;
    rx->cf = 0xffff;
}

int lw_coap_b1rx_feed(struct lw_coap_b1rx *rx, const struct lw_coap_msg *req, uint64_t now,
                      struct lw_coap_msg *resp, struct lw_bytes *body)
{
    struct lw_coap_block b;
    int rc = lw_coap_get_block(req, LW_COAP_OPT_BLOCK1, &b);
    if (rc == LW_ENOENT)
        return rc;
    resp->nopts = 0;
    resp->payload = (struct lw_bytes){NULL, 0};
    if (rx->active && now >= rx->expires)
        b1rx_reset(rx); /* §2.5: partial state may be dropped after inactivity */
    if (rc != 0 || b.szx == 7) {
        resp->code = LW_COAP_BAD_REQUEST; /* §2.2: SZX 7 MUST get 4.00 */
        rc = LW_EMALFORMED;
        goto out;
    }
    uint32_t cf = 0xffff;
    if (lw_coap_get_uint(req, LW_COAP_OPT_CONTENT_FORMAT, &cf) != 0)
        cf = 0xffff;
    uint64_t off = (uint64_t)b.num << (b.szx + 4);
    if (b.num == 0) {
        /* §2.5: a new sequence from block 0 replaces an unfinished one. */
        b1rx_reset(rx);
        uint32_t size1;
        if (lw_coap_get_uint(req, LW_COAP_OPT_SIZE1, &size1) == 0 && size1 > rx->max) {
            rc = LW_ELIMIT;
            goto too_large;
        }
        rx->active = true;
        rx->cf = (uint16_t)LW_MIN(cf, 0xffffu);
    } else if (!rx->active || off != rx->len || cf != rx->cf) {
        /* §2.9.2: missing or out-of-order block, or Content-Format changed (§2.5). */
        resp->code = LW_COAP_REQUEST_INCOMPLETE;
        b1rx_reset(rx);
        rc = LW_EPROTO;
        goto out;
    }
    /* §2.2: with M=1 the payload must fill the block. */
    if (b.more && req->payload.len != lw_coap_block_size(b.szx)) {
        resp->code = LW_COAP_BAD_REQUEST;
        b1rx_reset(rx);
        rc = LW_EMALFORMED;
        goto out;
    }
    if (req->payload.len > rx->max - rx->len) {
        rc = LW_ELIMIT;
        goto too_large;
    }
    if (b2_reserve(&rx->data, &rx->cap, rx->len + req->payload.len, rx->max) != 0) {
        resp->code = LW_COAP_INTERNAL_ERROR;
        b1rx_reset(rx);
        rc = LW_ENOMEM;
        goto out;
    }
    if (req->payload.len)
        memcpy(rx->data + rx->len, req->payload.ptr, req->payload.len);
    rx->len += req->payload.len;
    rx->expires = now + rx->lifetime_ms;
    if (b.more) {
        /* §2.5/§2.9.1: 2.31 Continue echoing Block1 with M=1; a smaller SZX tells the client to
         * switch block size (§2.3). */
        struct lw_coap_block e = {b.num, true, LW_MIN(b.szx, rx->max_szx)};
        resp->code = LW_COAP_CONTINUE;
        if (b.szx > rx->max_szx)
            e.num = (uint32_t)(off >> (e.szx + 4)); /* same offset in the smaller unit */
        lw_coap_add_block(resp, LW_COAP_OPT_BLOCK1, &e);
        rc = LW_EAGAIN;
        goto out;
    }
    *body = (struct lw_bytes){rx->data, rx->len};
    rx->active = false;
    resp->code = LW_COAP_CHANGED;
    rc = 0;
    goto out;
too_large:
    /* §2.9.3: 4.13, with Size1 giving the largest body we accept. */
    resp->code = LW_COAP_REQUEST_TOO_LARGE;
    lw_coap_add_uint(resp, LW_COAP_OPT_SIZE1, (uint32_t)LW_MIN(rx->max, UINT32_MAX));
    b1rx_reset(rx);
out:
    return rc;
}

int lw_coap_b1rx_final_opt(const struct lw_coap_msg *req, struct lw_coap_msg *resp)
{
    struct lw_coap_block b;
    int rc = lw_coap_get_block(req, LW_COAP_OPT_BLOCK1, &b);
    if (rc)
        return rc;
    b.more = false;
    return lw_coap_add_block(resp, LW_COAP_OPT_BLOCK1, &b);
}
