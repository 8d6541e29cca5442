/* Fuzz target: the daemon's CoAPS receive path without sockets (server/coaps.c): CID demux,
 * address lookup, the stateless cookie exchange, session creation, handshake timers and the
 * hand-off to the registration service. One shard, one credential, a fake clock. Each input is
 * a sequence of records:
 *   byte 0: bits 0..2 source port index (8 peers), bit 3: advance the clock by byte 1 x 100 ms
 *           and run the timers (then no datagram), bit 4: IPv6 source
 *   bytes 1..2: length (little endian, 11 bits), then that many bytes: one datagram.
 * Must never crash, leak or assert. */
#include "base/err.h"
#include "coaps.h"
#include "creds.h"
#include "registry.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static struct regsrv rs;
static struct coaps *cs;
static uint64_t now = 1000000;

static void rs_send(void *ctx, const struct peer_addr *to, const uint8_t *d, size_t n)
{
    if (cs && to->sock == 1)
        coaps_write(cs, to, d, n, now);
    (void)ctx;
}

static void rs_event(void *ctx, struct lw_event *ev)
{
    (void)ctx;
    lw_event_free(ev);
}

static void raw_send(void *ctx, uint8_t sock, const struct sockaddr *to, socklen_t tolen,
                     const uint8_t *data, size_t len)
{
    (void)ctx;
    (void)sock;
    (void)to;
    (void)tolen;
    (void)data;
    (void)len;
}

static const struct regsrv_ops rops = {.send = rs_send, .event = rs_event};
static const struct coaps_ops cops = {.send = raw_send};

static void init(void)
{
    static struct lw_config cfg;
    static char empty[] = "";
    char err[256];
    cfg.coaps_listen_n = 1;
    cfg.coaps_cert = cfg.coaps_key = cfg.coaps_ca = cfg.coaps_ciphers = cfg.coaps_psk_hint = empty;
    cfg.coaps_cid = true;
    cfg.coaps_hibernate_idle = 1000;
    cfg.coaps_handshake_timeout = 5000;
    cfg.coaps_max_handshakes = 16;
    cfg.coaps_hello_rate = 0;
    cfg.reg_lifetime_max = 600;
    if (reg_global_init(NULL, err, sizeof(err)) != 0 || coaps_global_init(&cfg, err, sizeof(err)))
        abort();
    struct creds_spec sp = {.mode = CREDS_PSK,
                            .id = (const uint8_t *)"fuzz",
                            .id_len = 4,
                            .key = (const uint8_t *)"0123456789abcdef",
                            .key_len = 16};
    struct regsrv_cfg rc = {0};
    rc.nshards = 1;
    if (creds_put("fuzz-ep", &sp, 0) != 0 || regsrv_init(&rs, 0, &rc, &rops, NULL, now) != 0 ||
        coaps_new(0, &rs, &cops, NULL, now, &cs) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!cs)
        init();
    size_t off = 0;
    while (off + 3 <= size) {
        uint8_t h = data[off];
        if (h & 8) {
            now += (uint64_t)data[off + 1] * 100;
            coaps_advance(cs, now);
            regsrv_advance(&rs, now);
            off += 2;
            continue;
        }
        size_t len = ((size_t)data[off + 1] | (size_t)data[off + 2] << 8) & 0x7ff;
        off += 3;
        if (len > size - off)
            len = size - off;
        struct sockaddr_storage ss;
        socklen_t sl;
        memset(&ss, 0, sizeof(ss));
        if (h & 16) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            a->sin6_family = AF_INET6;
            a->sin6_port = htons((uint16_t)(40000 + (h & 7)));
            a->sin6_addr.s6_addr[15] = 1;
            sl = sizeof(*a);
        } else {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            a->sin_family = AF_INET;
            a->sin_port = htons((uint16_t)(40000 + (h & 7)));
            a->sin_addr.s_addr = htonl(0x7f000001);
            sl = sizeof(*a);
        }
        coaps_input(cs, 1, (const struct sockaddr *)&ss, sl, data + off, len, now);
        off += len;
    }
    /* Time always moves a little so handshakes in flight eventually time out. */
    now += 50;
    coaps_advance(cs, now);
    return 0;
}
