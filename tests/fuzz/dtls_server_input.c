/* Fuzz target: arbitrary datagrams into a lib/dtls server shard (no crash, no leak, no growth).
 *
 * Input: byte 0 = mode, then datagrams as (2-byte big-endian length, bytes). Mode % 4:
 *   0: every datagram goes to the stateless path (no session): spoofed/garbled ClientHellos;
 *   1: a real DTLS 1.2 PSK + CID session is established first (in-memory wolfSSL client), then
 *      datagrams go to it (from its own address or from others: CID address-change path);
 *   2: as 1 but the session is left mid-handshake (after the cookie exchange);
 *   3: as 1 with DTLS 1.3.
 * Timeouts are fired between datagrams on a fake clock. Sessions created from fuzz data (not
 * possible without forging a cookie, but checked) are freed. Byte 1 bit 0 also feeds each
 * datagram to lw_dtls_wake as a hibernation blob. LeakSanitizer checks that everything is freed
 * and the shard's live-session count returns to zero. */
#include "../unit/dtls/harness.c"

#include "base/err.h"
#include "base/util.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct lw_dtls_ctx *ctx;
static WOLFSSL_CTX *cc12, *cc13;
static const char *key = "0123456789abcdef";

static size_t lookup(void *arg, const uint8_t *id, size_t id_len, uint8_t *out, size_t cap)
{
    (void)arg;
    (void)id;
    if (id_len == 0 || cap < 16)
        return 0;
    memcpy(out, key, 16);
    return 16;
}

static void init(void)
{
    if (ctx)
        return;
    struct lw_dtls_cfg cfg = {0};
    cfg.cred.psk_lookup = lookup;
    cfg.max_handshakes = 4;
    if (lw_dtls_ctx_new(&cfg, &ctx) != 0)
        abort();
    cc12 = h_cctx_psk(false, "PSK-AES128-CCM-8", true);
    cc13 = h_cctx_psk(true, "TLS13-AES128-CCM-8-SHA256", true);
}

/* Drives client c up to a session created by the cookie exchange, without finishing. */
static void half_handshake(struct h_world *w, struct h_client *c)
{
    for (int i = 0; i < 2; i++) {
        h_client_step(c);
        while (w->to_server.n) {
            struct h_dgram *g = &w->to_server.q[w->to_server.head];
            struct lw_dtls_sess *cr = NULL;
            lw_dtls_input(w->sh, c->sess, (struct sockaddr *)&g->addr, sizeof(g->addr), g->d,
                          g->len, w->now, c->sess ? NULL : &cr);
            if (cr)
                c->sess = cr;
            w->to_server.head = (w->to_server.head + 1) % H_QLEN;
            w->to_server.n--;
        }
    }
    c->in.n = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    init();
    unsigned mode = data[0] % 4;
    bool wake = data[1] & 1;
    struct h_world w;
    struct lw_dtls_sess *extra[8];
    size_t n_extra = 0;
    h_world_init(&w, ctx, 1, 2);
    struct h_client *c = NULL;
    if (mode) {
        c = h_client_new(&w, mode == 3 ? cc13 : cc12, 4000);
        if (wolfSSL_dtls_cid_use(c->ssl) != WOLFSSL_SUCCESS)
            abort();
        if (mode == 2)
            half_handshake(&w, c);
        else
            h_pump(&w);
    }
    struct sockaddr_in addrs[3];
    for (int i = 0; i < 3; i++) {
        memset(&addrs[i], 0, sizeof(addrs[i]));
        addrs[i].sin_family = AF_INET;
        addrs[i].sin_port = htons((uint16_t)(4000 + 1000 * i));
        addrs[i].sin_addr.s_addr = htonl(0x7f000001);
    }
    size_t off = 2;
    unsigned i = 0;
    while (off + 2 <= size) {
        size_t len = (size_t)data[off] << 8 | data[off + 1];
        off += 2;
        if (len > size - off)
            len = size - off;
        const uint8_t *d = data + off;
        off += len;
        const struct sockaddr *from = (const struct sockaddr *)&addrs[i % 3];
        struct lw_dtls_sess *target = (c && c->sess && (i & 1) == 0) ? c->sess : NULL;
        struct lw_dtls_sess *cr = NULL;
        int rc = lw_dtls_input(w.sh, target, from, sizeof(struct sockaddr_in), d, len, w.now, &cr);
        (void)rc;
        if (cr) {
            if (n_extra < LW_ARRAY_SIZE(extra))
                extra[n_extra++] = cr;
            else
                lw_dtls_sess_free(cr);
        }
        if (wake && len) {
            struct lw_dtls_sess *s = NULL;
            if (lw_dtls_wake(w.sh, d, len, w.now, &s) == 0)
                lw_dtls_sess_free(s);
        }
        if (c && c->sess && (i % 4) == 3) {
            w.now += 1500;
            lw_dtls_timeout(c->sess, w.now);
        }
        if (c)
            c->in.n = 0;
        i++;
    }
    for (size_t k = 0; k < n_extra; k++)
        lw_dtls_sess_free(extra[k]);
    if (c) {
        lw_dtls_sess_free(c->sess);
        c->sess = NULL;
    }
    struct lw_dtls_stats st;
    lw_dtls_shard_stats(w.sh, &st);
    if (st.live != 0 || st.in_handshake != 0)
        abort();
    h_world_deinit(&w);
    return 0;
}
