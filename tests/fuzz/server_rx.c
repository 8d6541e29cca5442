/* Fuzz target: the full datagram receive path of the shards without sockets: two registration
 * services (registry.h) wired by an in-memory mailbox, on a fake clock. Each input is a
 * sequence of records:
 *   byte 0: bit 0 shard, bits 1..3 source address (8 peers), bits 4..5 kind, bits 6..7 spare
 *   kind 0: bytes 1..2 length (little endian, 11 bits), then that many bytes: one raw datagram;
 *   kind 1/2: byte 1 index of a registration id seen in an earlier 2.01 Location-Path, bytes
 *           2..3 length, then the payload of an Update (1) or a De-register (2) built here;
 *   kind 3: byte 1: advance the clock by that many seconds (times 4) and run the timers.
 * Every outcome must leave the directory, the shard tables and the intern table consistent
 * (checked after each input) and never crash, leak or assert. */
#include "base/clock.h"
#include "base/err.h"
#include "coap/coap.h"
#include "dir.h"
#include "registry.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NSH  2
#define QCAP 256
#define NIDS 8

static struct {
    struct regsrv rs[NSH];
    struct lw_clock clock;
    uint64_t now;
    struct regsrv_fwd *fq[QCAP];
    unsigned fq_to[QCAP];
    unsigned fq_head, fq_tail;
    struct {
        unsigned shard;
        uint64_t id;
        uint32_t gen;
    } dq[QCAP];
    unsigned dq_head, dq_tail;
    char ids[NIDS][16];
    unsigned nids;
    uint32_t rnd;
} F;

static int fz_random(void *ctx, void *out, size_t len)
{
    (void)ctx;
    uint8_t *p = out;
    for (size_t i = 0; i < len; i++) {
        F.rnd = F.rnd * 1103515245u + 12345u;
        p[i] = (uint8_t)(F.rnd >> 16);
    }
    return 0;
}

static void fz_send(void *ctx, const struct peer_addr *to, const uint8_t *d, size_t n)
{
    struct lw_coap_msg m;
    (void)ctx;
    (void)to;
    if (lw_coap_parse(&m, d, n, NULL, NULL) != 0 || m.code != LW_COAP_CREATED)
        return;
    size_t pos = 0;
    const struct lw_coap_opt *o, *last = NULL;
    while ((o = lw_coap_next_opt(&m, LW_COAP_OPT_LOCATION_PATH, &pos)))
        last = o;
    if (last && last->len < sizeof(F.ids[0])) {
        char *slot = F.ids[F.nids++ % NIDS];
        memcpy(slot, lw_coap_opt_data(last), last->len);
        slot[last->len] = '\0';
    }
}

static void fz_drop_remote(void *ctx, unsigned shard, uint64_t id, uint32_t gen)
{
    (void)ctx;
    if (F.dq_tail - F.dq_head >= QCAP)
        abort(); /* the harness pumps after every record: cannot fill up */
    unsigned i = F.dq_tail++ % QCAP;
    F.dq[i].shard = shard;
    F.dq[i].id = id;
    F.dq[i].gen = gen;
}

static void fz_post_fwd(void *ctx, unsigned shard, struct regsrv_fwd *f)
{
    (void)ctx;
    if (F.fq_tail - F.fq_head >= QCAP || shard >= NSH) {
        regsrv_fwd_free(f);
        return;
    }
    unsigned i = F.fq_tail++ % QCAP;
    F.fq[i] = f;
    F.fq_to[i] = shard;
}

static void fz_event(void *ctx, struct lw_event *ev)
{
    (void)ctx;
    lw_event_free(ev);
}

static const struct regsrv_ops fz_ops = {
    .send = fz_send, .drop_remote = fz_drop_remote, .post_fwd = fz_post_fwd, .event = fz_event};

static void pump(void)
{
    while (F.fq_head != F.fq_tail || F.dq_head != F.dq_tail) {
        if (F.fq_head != F.fq_tail) {
            unsigned i = F.fq_head++ % QCAP;
            regsrv_fwd_run(&F.rs[F.fq_to[i]], F.fq[i], F.now);
        } else {
            unsigned i = F.dq_head++ % QCAP;
            regsrv_drop(&F.rs[F.dq[i].shard], F.dq[i].id, F.dq[i].gen, "replaced", NULL);
        }
    }
}

static struct peer_addr fz_addr(unsigned k)
{
    struct peer_addr a = {0};
    a.family = k & 4 ? 6 : 4;
    a.port = (uint16_t)(5683 + k);
    a.ip[0] = a.family == 4 ? 127 : 0xfe;
    a.ip[3] = (uint8_t)k;
    a.ip[15] = (uint8_t)k;
    return a;
}

static void templated(unsigned shard, struct peer_addr a, uint8_t code, unsigned idx,
                      const uint8_t *payload, size_t len)
{
    struct lw_coap_msg m;
    uint8_t buf[2048];
    struct lw_buf b;
    char path[32];
    static uint16_t mid;
    snprintf(path, sizeof(path), "rd/%s", F.nids ? F.ids[idx % NIDS] : "x");
    lw_coap_msg_init(&m, LW_COAP_CON, code);
    m.mid = ++mid;
    if (lw_coap_add_uri_path(&m, path) != 0)
        return;
    if (len > 0) {
        lw_coap_add_uint(&m, LW_COAP_OPT_CONTENT_FORMAT, 40);
        m.payload = LW_BYTES(payload, len);
    }
    lw_buf_init_fixed(&b, buf, sizeof(buf));
    if (lw_coap_serialize(&m, &b) == 0)
        regsrv_input(&F.rs[shard], &a, buf, b.len, F.now);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    if (reg_global_init(NULL, err, sizeof(err)) != 0)
        abort();
    memset(&F, 0, sizeof(F));
    lw_clock_fake_init(&F.clock, 1000, 1790000000000);
    F.now = 1000;
    struct regsrv_cfg cfg = {0};
    cfg.clock = &F.clock;
    cfg.expiry_grace_ms = 2000;
    cfg.nshards = NSH;
    cfg.max_peers = 6;
    cfg.max_regs = 5;
    cfg.coap.random = fz_random;
    for (unsigned i = 0; i < NSH; i++)
        if (regsrv_init(&F.rs[i], i, &cfg, &fz_ops, NULL, F.now) != 0)
            abort();
    size_t off = 0;
    while (off < size) {
        uint8_t h = data[off++];
        unsigned shard = h & 1, kind = (h >> 4) & 3;
        struct peer_addr a = fz_addr((h >> 1) & 7);
        if (kind == 3) {
            if (off >= size)
                break;
            uint64_t ms = (uint64_t)data[off++] * 4000;
            F.now += ms;
            lw_clock_fake_advance(&F.clock, ms);
            for (unsigned i = 0; i < NSH; i++)
                regsrv_advance(&F.rs[i], F.now);
            pump();
            continue;
        }
        unsigned idx = 0;
        if (kind != 0) {
            if (off >= size)
                break;
            idx = data[off++];
        }
        if (size - off < 2)
            break;
        size_t len = (data[off] | (size_t)data[off + 1] << 8) & 0x7ff;
        off += 2;
        if (len > size - off)
            len = size - off;
        if (kind == 0) {
            /* as the shard does within a receive batch: the endpoint-name hint of the raw
             * datagram (a guess that must never be taken for a wrong name) set while it is
             * handled */
            regsrv_ep_hint(data + off, len, &F.rs[shard].ep_hint);
            regsrv_input(&F.rs[shard], &a, data + off, len, F.now);
            F.rs[shard].ep_hint = (struct regsrv_ep_hint){0};
        } else
            templated(shard, a, kind == 1 ? LW_COAP_POST : LW_COAP_DELETE, idx, data + off, len);
        off += len;
        pump();
    }
    /* Consistency: every registration is in the directory exactly once. */
    size_t held = 0;
    for (unsigned i = 0; i < NSH; i++)
        held += regsrv_reg_count(&F.rs[i]);
    if (held != dir_count())
        abort();
    for (unsigned i = 0; i < NSH; i++)
        regsrv_deinit(&F.rs[i]);
    /* nothing may be queued by deinit */
    if (dir_count() != 0 || F.fq_head != F.fq_tail || F.dq_head != F.dq_tail)
        abort();
    reg_global_deinit();
    return 0;
}
