/* Fuzz target: a simulated lwm2m-fleet DTLS PSK device (tools/fleet/sec.c over lib/dtls's client,
 * lib/dtls/client.h) fed datagrams from the server under test: the simulator must survive any
 * server. Fuzz targets do not link tools/, so the fleet sources are included here; net.c is
 * replaced by fakes (datagrams the device sends are counted and dropped).
 *
 * Input: a sequence of records, each a 2-byte big-endian length and that many bytes, delivered
 * from the server's address 100 ms apart to a device that has just sent its ClientHello; then
 * time runs on for 10 minutes so flights are retransmitted and the handshake times out. */
#include "../../tools/fleet/fleetfile.c"
#include "../../tools/fleet/util.c"
#include "../../tools/fleet/device.c"
#include "../../tools/fleet/model.c"
#include "../../tools/fleet/report.c"
#include "../../tools/fleet/sec.c"

#include <stdint.h>

static uint64_t sent;

uint32_t net_dev_addr(const struct fleet_eng *e, uint32_t idx)
{
    return htonl(0x7f010000u + idx / e->k);
}

void net_send(struct fleet_eng *e, const struct fleet_dev *d, const struct sockaddr_in *dst,
              const uint8_t *data, size_t len)
{
    (void)e;
    (void)d;
    (void)dst;
    (void)data;
    sent += len;
}

int net_open(struct fleet_eng *e, char *err, size_t errcap)
{
    (void)e;
    (void)err;
    (void)errcap;
    return 0;
}
void net_close(struct fleet_eng *e)
{
    (void)e;
}
void net_flush(struct fleet_eng *e)
{
    (void)e;
}
void net_poll(struct fleet_eng *e, int timeout_ms)
{
    (void)e;
    (void)timeout_ms;
}

static void setup(void)
{
    static struct fleet_eng eng;
    static struct fleet_dev dev;
    char err[128];
    E = &eng;
    E->k = 1;
    E->ndev = 1;
    E->ngroups = 1;
    E->devs = &dev;
    fleet_group_init(&E->groups[0].cfg, "fz");
    E->groups[0].cfg.count = 1;
    E->groups[0].cfg.security = FLEET_SEC_PSK;
    snprintf(E->groups[0].cfg.psk_key, FLEET_PATTERN_MAX, "a1b2c3d4e5f60718{n:16}");
    E->groups[0].count = 1;
    E->server.sin_family = AF_INET;
    E->server.sin_port = htons(5684);
    E->server.sin_addr.s_addr = htonl(0x7f000001);
    E->rng[0] = 1;
    E->rng[1] = 2;
    E->t0 = E->now = 1000;
    E->wall0 = 1.7e9;
    lw_wheel_init(&E->wheel, E->now);
    if (dev_env_init(E) != 0 || sec_init(E, err, sizeof(err)) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        setup();
        ready = true;
    }
    struct fleet_dev *d = &E->devs[0];
    memset(d, 0, sizeof(*d));
    memset(&E->st, 0, sizeof(E->st));
    lw_coap_ep_init(&d->ep, &E->env, d);
    dev_start(d); /* Register -> DTLS session -> ClientHello */
    size_t off = 0;
    while (off + 2 <= size) {
        size_t len = (size_t)data[off] << 8 | data[off + 1];
        off += 2;
        if (len > size - off)
            len = size - off;
        E->now += 100;
        lw_wheel_advance(&E->wheel, E->now);
        dev_input(d, &E->server, data + off, len);
        off += len;
    }
    for (int i = 0; i < 600; i++) {
        E->now += 1000;
        lw_wheel_advance(&E->wheel, E->now);
    }
    dev_free(d);
    return 0;
}
