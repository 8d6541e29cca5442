/* tools/fleet/sec.c - DTLS PSK for simulated devices (lib/dtls client side).
 *
 * A device of a psk group talks to the server through one lw_dtls_client session, allocated
 * when the device first sends (so idle or NoSec devices cost nothing) and freed on power loss,
 * failure, or a rebind without Connection ID. CoAP datagrams the exchange layer emits while the
 * handshake runs wait in a one-slot buffer (the latest one wins; CoAP retransmission covers the
 * rest) and go out when the session is established. Credentials are not stored per device: the
 * PSK identity and key are expanded from the group's patterns when the handshake asks.
 * Handshake flights are retransmitted from the device's timer (dev_schedule includes the
 * session's deadline). A Register waits for the session (sec_connect), as a real client sends
 * it once DTLS is up: its CoAP retransmission timers would otherwise run out during a long
 * handshake in a storm (the Register then times out right after the handshake succeeded).
 */
#include "fleet.h"

#include "base/err.h"
#include "base/util.h"
#include "dtls/client.h"

#include <stdlib.h>
#include <string.h>

struct dev_sec {
    struct lw_dtls_client *c;
    uint64_t hs_start_us;
    bool dead;             /* failed/closed inside a callback: freed once lib/dtls returned */
    bool reg_wait;         /* a Register waits for this handshake (sec_connect) */
    uint64_t reg_start_us; /* start of the handshake a Register waited for; 0: none */
    uint16_t pend_len;
    uint8_t *pend;
};

/* [version 13][no_cid] */
static struct lw_dtls_client_ctx *ctxs[2][2];

static void sec_send_cb(void *arg, const uint8_t *data, size_t len)
{
    struct fleet_dev *d = arg;
    net_send(E, d, &E->server, data, len);
}

static void sec_deliver_cb(void *arg, const uint8_t *data, size_t len)
{
    dev_coap_input(arg, data, len);
}

static void flush_pending(struct fleet_dev *d)
{
    struct dev_sec *s = d->sec;
    if (!s->pend_len)
        return;
    uint16_t n = s->pend_len;
    s->pend_len = 0;
    if (lw_dtls_client_write(s->c, s->pend, n, E->now) != 0)
        E->st.tx_errors++;
}

static void sec_event_cb(void *arg, enum lw_dtls_event ev, int detail)
{
    struct fleet_dev *d = arg;
    struct dev_sec *s = d->sec;
    (void)detail;
    switch (ev) {
    case LW_DTLS_EV_ESTABLISHED:
        stats_op(OP_HANDSHAKE, s->hs_start_us, true, 0, 0);
        if (lw_dtls_client_has_cid(s->c))
            E->st.cid_sessions++;
        flush_pending(d);
        if (s->reg_wait) {
            s->reg_wait = false;
            s->reg_start_us = s->hs_start_us;
            dev_secure_up(d);
        }
        break;
    case LW_DTLS_EV_TIMEOUT:
        stats_op(OP_HANDSHAKE, s->hs_start_us, false, 0, R_TIMEOUT);
        s->dead = true;
        if (s->reg_wait) {
            s->reg_wait = false;
            s->reg_start_us = s->hs_start_us;
            dev_secure_failed(d, R_TIMEOUT);
        }
        break;
    case LW_DTLS_EV_FAILED:
        if (!lw_dtls_client_established(s->c))
            stats_op(OP_HANDSHAKE, s->hs_start_us, false, 0, R_DTLS);
        else
            E->st.dtls_failures++;
        s->dead = true;
        if (s->reg_wait) {
            s->reg_wait = false;
            s->reg_start_us = s->hs_start_us;
            dev_secure_failed(d, R_DTLS);
        }
        break;
    default: /* closed by the server */ s->dead = true; break;
    }
}

static size_t sec_psk_cb(void *arg, uint8_t *identity, size_t id_cap, size_t *id_len, uint8_t *key,
                         size_t key_cap)
{
    struct fleet_dev *d = arg;
    char ep[256], buf[FLEET_PATTERN_MAX + 256];
    const struct group_rt *g = &E->groups[d->group];
    uint64_t n = d->idx - g->first;
    if (dev_endpoint(d, ep, sizeof(ep)) < 0)
        return 0;
    int il = fleet_pattern_expand(g->cfg.psk_identity, n, g->cfg.name, ep, buf, sizeof(buf));
    if (il <= 0 || (size_t)il > id_cap)
        return 0;
    memcpy(identity, buf, (size_t)il);
    *id_len = (size_t)il;
    int kl = fleet_pattern_expand(g->cfg.psk_key, n, g->cfg.name, ep, buf, sizeof(buf));
    if (kl <= 0)
        return 0;
    int r = lw_hex_decode(key, key_cap, buf, (size_t)kl);
    return r > 0 ? (size_t)r : 0;
}

static const struct lw_dtls_client_ops sec_ops = {sec_send_cb, sec_deliver_cb, sec_event_cb,
                                                  sec_psk_cb};

int sec_init(struct fleet_eng *e, char *err, size_t cap)
{
    for (uint32_t i = 0; i < e->ngroups; i++) {
        const struct fleet_group *g = &e->groups[i].cfg;
        if (g->security != FLEET_SEC_PSK)
            continue;
        int v = g->dtls_version == 13;
        int nc = g->no_cid;
        if (ctxs[v][nc])
            continue;
        struct lw_dtls_client_cfg cfg = {
            .version = v ? 13 : 12,
            .no_cid = g->no_cid,
            .mtu = 1400,
            .handshake_ms = 60000,
        };
        int rc = lw_dtls_client_ctx_new(&cfg, &sec_ops, &ctxs[v][nc]);
        if (rc) {
            snprintf(err, cap, "DTLS client setup: %s", lw_strerror(rc));
            return rc;
        }
    }
    return 0;
}

void sec_deinit(void)
{
    for (int v = 0; v < 2; v++)
        for (int nc = 0; nc < 2; nc++) {
            lw_dtls_client_ctx_free(ctxs[v][nc]);
            ctxs[v][nc] = NULL;
        }
}

bool dev_secure(const struct fleet_dev *d)
{
    return dev_group(d)->security == FLEET_SEC_PSK;
}

void sec_drop(struct fleet_dev *d)
{
    struct dev_sec *s = d->sec;
    if (!s)
        return;
    if (s->c && !lw_dtls_client_established(s->c) && !s->dead)
        E->st.hs_abandoned++;
    lw_dtls_client_free(s->c);
    free(s->pend);
    free(s);
    d->sec = NULL;
}

/* Frees a session that died inside a callback (after lib/dtls returned). */
static void reap(struct fleet_dev *d)
{
    if (d->sec && d->sec->dead)
        sec_drop(d);
}

/* Starts a handshake for d (its session exists). false when it could not (counted). */
static bool start_handshake(struct fleet_dev *d)
{
    struct dev_sec *s = d->sec;
    const struct fleet_group *g = dev_group(d);
    s->hs_start_us = fleet_now_us();
    s->dead = false;
    E->st.handshakes_started++;
    int rc = lw_dtls_client_new(ctxs[g->dtls_version == 13][g->no_cid], d, E->now, &s->c);
    if (rc) {
        stats_op(OP_HANDSHAKE, s->hs_start_us, false, 0, rc == LW_ENOMEM ? R_NOMEM : R_DTLS);
        s->c = NULL;
        return false;
    }
    return true;
}

bool sec_connect(struct fleet_dev *d)
{
    struct dev_sec *s = d->sec;
    if (s && s->c && lw_dtls_client_established(s->c))
        return true;
    if (!s && !(s = d->sec = calloc(1, sizeof(*s)))) {
        E->st.tx_errors++;
        dev_secure_failed(d, R_NOMEM);
        return false;
    }
    s->reg_wait = true;
    if (!s->c && !start_handshake(d)) {
        s->reg_wait = false;
        dev_secure_failed(d, R_DTLS);
    }
    reap(d);
    return false;
}

uint64_t sec_reg_start_us(struct fleet_dev *d)
{
    struct dev_sec *s = d->sec;
    uint64_t t = s && s->reg_start_us ? s->reg_start_us : fleet_now_us();
    if (s)
        s->reg_start_us = 0;
    return t;
}

void sec_send(struct fleet_dev *d, const uint8_t *data, size_t len)
{
    struct dev_sec *s = d->sec;
    if (!s) {
        s = d->sec = calloc(1, sizeof(*s));
        if (!s) {
            E->st.tx_errors++;
            return;
        }
    }
    if (s->c && lw_dtls_client_established(s->c)) {
        int rc = lw_dtls_client_write(s->c, data, len, E->now);
        if (rc == LW_ECANCELED || rc == LW_EDTLS) {
            /* The session is gone: hold the datagram and handshake again. */
            lw_dtls_client_free(s->c);
            s->c = NULL;
        } else {
            if (rc)
                E->st.tx_errors++;
            return;
        }
    }
    if (len > LW_COAP_MAX_DGRAM)
        return;
    if (!s->pend)
        s->pend = malloc(LW_COAP_MAX_DGRAM);
    if (s->pend) {
        memcpy(s->pend, data, len);
        s->pend_len = (uint16_t)len;
    }
    if (!s->c)
        start_handshake(d);
    reap(d);
}

void sec_input(struct fleet_dev *d, const uint8_t *data, size_t len)
{
    if (!d->sec || !d->sec->c) {
        E->st.rx_rejected++; /* nothing to decrypt with (e.g. after a power cycle) */
        return;
    }
    int rc = lw_dtls_client_input(d->sec->c, data, len, E->now);
    if (rc && rc != LW_EDTLS)
        E->st.rx_rejected++;
    reap(d);
}

uint64_t sec_deadline(const struct fleet_dev *d)
{
    return d->sec && d->sec->c ? lw_dtls_client_next_timeout(d->sec->c) : UINT64_MAX;
}

void sec_timeout(struct fleet_dev *d)
{
    if (!d->sec || !d->sec->c)
        return;
    if (lw_dtls_client_next_timeout(d->sec->c) <= E->now) {
        E->st.hs_retransmissions++;
        lw_dtls_client_timeout(d->sec->c, E->now);
    }
    reap(d);
}

void sec_rebind(struct fleet_dev *d)
{
    struct dev_sec *s = d->sec;
    if (!s || !s->c)
        return;
    if (lw_dtls_client_established(s->c) && lw_dtls_client_has_cid(s->c)) {
        E->st.rebinds_cid++; /* the server finds the session by its CID: nothing to do */
        return;
    }
    /* Without CID the server cannot place records from the new address: a client that knows
     * its address changed (modem reattach) starts a new handshake at its next uplink. */
    if (lw_dtls_client_established(s->c))
        E->st.rebinds_rehandshake++;
    else
        E->st.hs_abandoned++;
    lw_dtls_client_free(s->c);
    s->c = NULL;
    s->pend_len = 0;
    if (s->reg_wait && !start_handshake(d)) { /* a Register waits: handshake from the new port */
        s->reg_wait = false;
        dev_secure_failed(d, R_DTLS);
    }
}

size_t sec_live(void)
{
    size_t n = 0;
    for (uint32_t i = 0; i < E->ndev; i++)
        n += E->devs[i].sec && E->devs[i].sec->c;
    return n;
}
