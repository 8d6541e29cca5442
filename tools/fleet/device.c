/* tools/fleet/device.c - a simulated LwM2M client: Register / Update / De-register / Send over the
 * lib/coap exchange layer (which does CON retransmission, deduplication and Block-wise), the
 * per-device timer, and statistics of client-originated operations.
 *
 * Latency of a request is measured from the first transmission to the final response: the
 * request's cookie carries the operation (top 8 bits) and the start time in microseconds.
 */
#include "fleet.h"

#include "base/err.h"
#include "base/util.h"
#include "lwm2m/fmt.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#define COOKIE(op, us)  (((uint64_t)(op) << 56) | ((us) & ((1ull << 56) - 1)))
#define COOKIE_OP(c)    ((enum fleet_op)((c) >> 56))
#define COOKIE_START(c) ((c) & ((1ull << 56) - 1))
#define RETRY_BASE_MS   5000u
#define RETRY_JITTER_MS 5000u

const struct fleet_group *dev_group(const struct fleet_dev *d)
{
    return &E->groups[d->group].cfg;
}

int dev_endpoint(const struct fleet_dev *d, char *out, size_t cap)
{
    const struct group_rt *g = &E->groups[d->group];
    return fleet_pattern_expand(g->cfg.endpoint, d->idx - g->first, g->cfg.name, NULL, out, cap);
}

struct dev_extra *dev_extra(struct fleet_dev *d)
{
    if (!d->x)
        d->x = calloc(1, sizeof(*d->x));
    return d->x;
}

void stats_op(enum fleet_op op, uint64_t start_us, bool ok, int code, int reason)
{
    struct op_stats *s = &E->st.op[op];
    if (ok) {
        s->ok++;
        uint64_t now = fleet_now_us();
        hist_add(&s->lat, now > start_us ? now - start_us : 0);
        if (!s->first_start_us || start_us < s->first_start_us)
            s->first_start_us = start_us;
        if (now > s->last_done_us)
            s->last_done_us = now;
        return;
    }
    s->errors++;
    if (code > 0)
        s->by_code[code & 0xff]++;
    else if (reason >= 0 && reason < R__COUNT)
        s->by_reason[reason]++;
}

/* ---- exchange-layer callbacks ------------------------------------------------------------ */

static void on_send(void *ctx, const uint8_t *data, size_t len)
{
    struct fleet_dev *d = ctx;
    /* The only CON messages a device originates are its requests (NSTART 1) and notifications
     * are NON, so a CON with the MID of the previous one is a retransmission. */
    if (len >= 4 && (data[0] >> 4 & 3) == LW_COAP_CON) {
        uint16_t mid = lw_load_be16(data + 2);
        if (d->has_sent_con && mid == d->last_con_mid)
            E->st.retransmissions++;
        d->last_con_mid = mid;
        d->has_sent_con = true;
        d->last_uplink = E->now;
    } else if (len >= 4 && (data[0] >> 4 & 3) == LW_COAP_NON && d->x) {
        /* Remember which MID carried each observation's latest notification. */
        size_t tkl = data[0] & 15u;
        for (int i = 0; i < DEV_MAX_OBS && tkl <= 8 && len >= 4 + tkl; i++) {
            struct dev_obs *o = &d->x->obs[i];
            if (o->active && o->ref.tkl == tkl && memcmp(o->ref.token, data + 4, tkl) == 0)
                o->last_mid = lw_load_be16(data + 2);
        }
    }
    if (dev_secure(d))
        sec_send(d, data, len);
    else
        net_send(E, d, &E->server, data, len);
}

static void on_fw_send(void *ctx, const uint8_t *data, size_t len)
{
    struct fw_peer *p = ctx;
    net_send(E, p->dev, &p->addr, data, len);
}

static void on_request(void *ctx, struct lw_coap_ep *ep, const struct lw_coap_msg *msg,
                       uint64_t now)
{
    (void)ep;
    model_on_request(ctx, msg, now);
}

static void fw_on_request(void *ctx, struct lw_coap_ep *ep, const struct lw_coap_msg *msg,
                          uint64_t now)
{
    (void)ctx;
    struct lw_coap_msg r;
    lw_coap_msg_init(&r, 0, LW_COAP_METHOD_NOT_ALLOWED);
    struct lw_coap_req_ref ref = lw_coap_req_ref_of(msg);
    lw_coap_ep_respond(ep, &ref, &r, now);
}

static void send_register(struct fleet_dev *d);
static void send_update(struct fleet_dev *d);
void dev_reboot(struct fleet_dev *d, uint64_t now);

static int fail_reason(int result)
{
    switch (result) {
    case LW_COAP_RES_TIMEOUT: return R_TIMEOUT;
    case LW_COAP_RES_RESET: return R_RESET;
    case LW_COAP_RES_CANCELED: return R_CANCELED;
    default: return R_BLOCKWISE;
    }
}

static void set_unregistered(struct fleet_dev *d)
{
    if (d->state == DS_REGISTERED || d->state == DS_DEREGISTERING) {
        if (E->st.registered)
            E->st.registered--;
    }
    free(d->loc);
    d->loc = NULL;
}

static void retry_later(struct fleet_dev *d)
{
    set_unregistered(d);
    d->state = DS_RETRY;
    d->next_update = E->now + RETRY_BASE_MS + fleet_rand() % RETRY_JITTER_MS;
}

static uint64_t update_period_ms(const struct fleet_dev *d)
{
    const struct fleet_group *g = dev_group(d);
    uint64_t lt = d->lifetime_s ? d->lifetime_s : g->lifetime_s;
    uint64_t u = g->update_s && g->update_s < lt ? g->update_s : lt * 9 / 10;
    return u ? u * 1000 : 1000;
}

static bool store_location(struct fleet_dev *d, const struct lw_coap_msg *m)
{
    char loc[256];
    size_t n = 0, pos = 0;
    const struct lw_coap_opt *o;
    while ((o = lw_coap_next_opt(m, LW_COAP_OPT_LOCATION_PATH, &pos)) != NULL) {
        if (n + o->len + 2 > sizeof(loc))
            return false;
        if (n)
            loc[n++] = '/';
        memcpy(loc + n, lw_coap_opt_data(o), o->len);
        n += o->len;
    }
    if (n == 0)
        return false;
    loc[n] = 0;
    free(d->loc);
    d->loc = strdup(loc);
    return d->loc != NULL;
}

static void on_response(void *ctx, struct lw_coap_ep *ep, struct lw_coap_handle h, uint64_t cookie,
                        int result, const struct lw_coap_msg *msg)
{
    (void)ep;
    (void)h;
    struct fleet_dev *d = ctx;
    enum fleet_op op = COOKIE_OP(cookie);
    uint64_t start = COOKIE_START(cookie);
    if (result == LW_COAP_RES_CANCELED)
        return; /* the device lost power or the run ended: not the server's doing */
    bool ok = result == LW_COAP_RES_RESPONSE && msg && LW_COAP_CODE_CLASS(msg->code) == 2;
    int code = result == LW_COAP_RES_RESPONSE && msg ? msg->code : 0;
    switch (op) {
    case OP_REGISTER:
        if (d->state != DS_REGISTERING)
            return; /* power-cycled meanwhile */
        if (ok && msg->code == LW_COAP_CREATED && store_location(d, msg)) {
            stats_op(op, start, true, 0, 0);
            d->state = DS_REGISTERED;
            E->st.registered++;
            if (!d->ever_registered) {
                d->ever_registered = true;
                E->st.ever_registered++;
            }
            d->next_update = E->now + update_period_ms(d);
            const struct fleet_group *g = dev_group(d);
            if (g->send_s && !E->stopping)
                d->next_send = E->now + (fleet_rand() % (g->send_s * 1000ull)) + 1;
        } else {
            stats_op(op, start, false, ok ? 0 : code, ok ? R_NO_LOCATION : fail_reason(result));
            retry_later(d);
        }
        break;
    case OP_UPDATE:
        if (d->state != DS_REGISTERED)
            return;
        if (ok) {
            stats_op(op, start, true, 0, 0);
            d->next_update = E->now + update_period_ms(d);
        } else {
            stats_op(op, start, false, code, fail_reason(result));
            /* 4.04: the server forgot us; a timeout: it may have. Register again (LwM2M
             * client behaviour). */
            set_unregistered(d);
            d->state = DS_OFF;
            send_register(d);
        }
        break;
    case OP_DEREGISTER:
        if (d->state != DS_DEREGISTERING)
            return;
        stats_op(op, start, ok, code, fail_reason(result));
        set_unregistered(d);
        d->state = DS_OFF;
        break;
    case OP_SEND: stats_op(op, start, ok, code, fail_reason(result)); break;
    case OP_FW_PULL: model_fw_pull_done(d, result, msg, E->now); break;
    default: break;
    }
}

static void fw_on_response(void *ctx, struct lw_coap_ep *ep, struct lw_coap_handle h,
                           uint64_t cookie, int result, const struct lw_coap_msg *msg)
{
    (void)ep;
    (void)h;
    (void)cookie;
    struct fw_peer *p = ctx;
    if (result != LW_COAP_RES_CANCELED)
        model_fw_pull_done(p->dev, result, msg, E->now);
}

static const struct lw_coap_ops dev_ops = {on_send, on_request, on_response, NULL};
static const struct lw_coap_ops fw_ops = {on_fw_send, fw_on_request, fw_on_response, NULL};

static int fast_random(void *rctx, void *out, size_t len)
{
    (void)rctx;
    uint8_t *p = out;
    while (len) {
        uint64_t r = fleet_rand();
        size_t n = len < 8 ? len : 8;
        memcpy(p, &r, n);
        p += n;
        len -= n;
    }
    return 0;
}

int dev_env_init(struct fleet_eng *e)
{
    struct lw_coap_cfg cfg = {0};
    cfg.random = fast_random;
    uint32_t maxfw = 65536;
    for (uint32_t i = 0; i < e->ngroups; i++)
        if (e->groups[i].cfg.fw_max_bytes > maxfw)
            maxfw = e->groups[i].cfg.fw_max_bytes;
    cfg.max_body = maxfw; /* firmware pulls reassemble Block2 bodies up to this size */
    int rc = lw_coap_env_init(&e->env, &cfg, &dev_ops);
    if (!rc)
        rc = lw_coap_env_init(&e->fw_env, &cfg, &fw_ops);
    return rc;
}

/* ---- client requests --------------------------------------------------------------------- */

/* start_us: when the operation began (0: now). */
static void request_from(struct fleet_dev *d, const struct lw_coap_msg *m, enum fleet_op op,
                         uint64_t start_us)
{
    struct lw_coap_handle h;
    int rc =
        lw_coap_ep_request(&d->ep, m, COOKIE(op, start_us ? start_us : fleet_now_us()), E->now, &h);
    if (rc) {
        stats_op(op, 0, false, 0, rc == LW_ENOMEM ? R_NOMEM : R_SEND_ERRNO);
        if (op == OP_REGISTER)
            retry_later(d);
    }
}

static void request(struct fleet_dev *d, const struct lw_coap_msg *m, enum fleet_op op)
{
    request_from(d, m, op, 0);
}

static void send_register(struct fleet_dev *d)
{
    const struct fleet_group *g = dev_group(d);
    char ep[256], q_ep[272], q_lt[24], q_ver[16], q_b[8];
    if (dev_endpoint(d, ep, sizeof(ep)) < 0) {
        retry_later(d);
        return;
    }
    d->state = DS_REGISTERING;
    /* Over DTLS the Register goes out once the session is up (dev_secure_up calls back). */
    if (dev_secure(d) && !sec_connect(d))
        return;
    uint32_t lt = d->lifetime_s ? d->lifetime_s : g->lifetime_s;
    snprintf(q_ep, sizeof(q_ep), "ep=%s", ep);
    snprintf(q_lt, sizeof(q_lt), "lt=%u", lt);
    snprintf(q_ver, sizeof(q_ver), "lwm2m=1.%u", g->lwm2m_minor);
    /* 1.0 signals queue mode inside the binding; 1.1+ with the separate Q parameter. */
    snprintf(q_b, sizeof(q_b), "b=%s", g->queue_mode && g->lwm2m_minor == 0 ? "UQ" : "U");
    uint8_t pl[1024];
    struct lw_buf b;
    lw_buf_init_fixed(&b, pl, sizeof(pl));
    model_reg_links(d, &b);
    struct lw_coap_msg m;
    lw_coap_msg_init(&m, LW_COAP_CON, LW_COAP_POST);
    lw_coap_add_str(&m, LW_COAP_OPT_URI_PATH, "rd");
    lw_coap_add_uint(&m, LW_COAP_OPT_CONTENT_FORMAT, 40);
    lw_coap_add_str(&m, LW_COAP_OPT_URI_QUERY, q_ep);
    lw_coap_add_str(&m, LW_COAP_OPT_URI_QUERY, q_lt);
    lw_coap_add_str(&m, LW_COAP_OPT_URI_QUERY, q_ver);
    lw_coap_add_str(&m, LW_COAP_OPT_URI_QUERY, q_b);
    if (g->queue_mode && g->lwm2m_minor > 0)
        lw_coap_add_str(&m, LW_COAP_OPT_URI_QUERY, "Q");
    m.payload = lw_buf_bytes(&b);
    /* its latency counts from the start of the handshake it waited for ("handshake + Register") */
    request_from(d, &m, OP_REGISTER, dev_secure(d) ? sec_reg_start_us(d) : 0);
}

void dev_secure_up(struct fleet_dev *d)
{
    if (d->state == DS_REGISTERING)
        send_register(d);
}

void dev_secure_failed(struct fleet_dev *d, enum fleet_reason why)
{
    if (d->state != DS_REGISTERING)
        return;
    stats_op(OP_REGISTER, sec_reg_start_us(d), false, 0, why);
    retry_later(d);
}

static void send_update(struct fleet_dev *d)
{
    if (!d->loc)
        return;
    struct lw_coap_msg m;
    lw_coap_msg_init(&m, LW_COAP_CON, LW_COAP_POST);
    if (lw_coap_add_uri_path(&m, d->loc) != 0) {
        retry_later(d);
        return;
    }
    char q_lt[24];
    if (d->lifetime_s) { /* changed by a Write to /1/0/1 */
        snprintf(q_lt, sizeof(q_lt), "lt=%u", d->lifetime_s);
        lw_coap_add_str(&m, LW_COAP_OPT_URI_QUERY, q_lt);
    }
    d->want_update = false;
    d->next_update = E->now + update_period_ms(d);
    request(d, &m, OP_UPDATE);
}

static void send_send(struct fleet_dev *d)
{
    const struct fleet_group *g = dev_group(d);
    uint8_t pl[1024];
    struct lw_buf b;
    lw_buf_init_fixed(&b, pl, sizeof(pl));
    d->next_send = E->now + g->send_s * 1000ull;
    if (model_send_payload(d, E->now, &b) != 0) {
        stats_op(OP_SEND, 0, false, 0, R_NOMEM);
        return;
    }
    struct lw_coap_msg m;
    lw_coap_msg_init(&m, LW_COAP_CON, LW_COAP_POST);
    lw_coap_add_str(&m, LW_COAP_OPT_URI_PATH, "dp");
    lw_coap_add_uint(&m, LW_COAP_OPT_CONTENT_FORMAT, g->send_format);
    m.payload = lw_buf_bytes(&b);
    request(d, &m, OP_SEND);
}

void dev_start(struct fleet_dev *d)
{
    if (d->state != DS_OFF)
        return;
    send_register(d);
    dev_schedule(d);
}

void dev_deregister(struct fleet_dev *d)
{
    d->next_send = 0;
    if (d->state == DS_REGISTERED && d->loc) {
        struct lw_coap_msg m;
        lw_coap_msg_init(&m, LW_COAP_CON, LW_COAP_DELETE);
        if (lw_coap_add_uri_path(&m, d->loc) == 0) {
            d->state = DS_DEREGISTERING;
            request(d, &m, OP_DEREGISTER);
        }
    } else if (d->state == DS_RETRY || d->state == DS_REBOOTING) {
        d->state = DS_OFF;
    }
    dev_schedule(d);
}

static void drop_extra(struct fleet_dev *d)
{
    if (!d->x)
        return;
    for (int i = 0; i < DEV_MAX_OBS; i++)
        if (d->x->obs[i].active && E->st.observations)
            E->st.observations--;
    if (d->x->b1_init)
        lw_coap_b1rx_deinit(&d->x->b1);
    if (d->x->fw.active)
        lw_coap_ep_deinit(&d->x->fw.ep);
    model_free_extra(d->x);
    free(d->x);
    d->x = NULL;
}

void dev_power_cycle(struct fleet_dev *d, uint64_t at)
{
    /* Power loss: every volatile state is gone, including CoAP exchanges and observations. */
    set_unregistered(d);
    d->state = DS_REBOOTING; /* before deinit: canceled exchanges must not act on the device */
    lw_coap_ep_deinit(&d->ep);
    lw_coap_ep_init(&d->ep, &E->env, d);
    drop_extra(d);
    sec_drop(d);
    if (d->fw_state != FW_UPDATING && d->fw_state != FW_DOWNLOADED)
        d->fw_state = FW_IDLE;
    d->has_sent_con = false;
    d->next_send = 0;
    d->want_update = false;
    d->state = DS_REBOOTING;
    d->next_update = at;
    dev_schedule(d);
}

void dev_rebind(struct fleet_dev *d)
{
    d->epoch ^= 1;
    E->st.rebinds++;
    if (dev_secure(d))
        sec_rebind(d);
    if (d->state == DS_REGISTERED) {
        d->want_update = true;
        dev_schedule(d);
    }
}

void dev_free(struct fleet_dev *d)
{
    lw_wheel_cancel(&E->wheel, &d->timer);
    lw_coap_ep_deinit(&d->ep);
    drop_extra(d);
    sec_drop(d);
    free(d->loc);
    d->loc = NULL;
}

void dev_input(struct fleet_dev *d, const struct sockaddr_in *src, const uint8_t *data, size_t len)
{
    const struct fleet_group *g = dev_group(d);
    if (d->state == DS_REBOOTING || (d->state == DS_OFF && !d->has_sent_con)) {
        E->st.rx_asleep++; /* powered off (rebooting) or not switched on yet */
        return;
    }
    if (g->queue_mode && E->now > d->last_uplink + g->awake_ms) {
        E->st.rx_asleep++; /* radio off: the server must wait for our next uplink */
        return;
    }
    bool from_server =
        src->sin_addr.s_addr == E->server.sin_addr.s_addr && src->sin_port == E->server.sin_port;
    if (from_server) {
        if (dev_secure(d))
            sec_input(d, data, len);
        else
            dev_coap_input(d, data, len);
    } else if (d->x && d->x->fw.active && src->sin_addr.s_addr == d->x->fw.addr.sin_addr.s_addr &&
               src->sin_port == d->x->fw.addr.sin_port) {
        if (lw_coap_ep_input(&d->x->fw.ep, data, len, E->now))
            E->st.rx_rejected++;
    } else {
        E->st.rx_unknown++;
        return;
    }
    dev_schedule(d);
}

void dev_coap_input(struct fleet_dev *d, const uint8_t *data, size_t len)
{
    if (len == 4 && (data[0] >> 4) == (1u << 2 | LW_COAP_RST) && data[1] == 0 && d->x) {
        /* The server rejected a (NON) notification: it no longer wants the observation (RFC
         * 7641 §3.6). The exchange layer keeps no state for NON notifications. */
        uint16_t mid = lw_load_be16(data + 2);
        for (int i = 0; i < DEV_MAX_OBS; i++) {
            struct dev_obs *o = &d->x->obs[i];
            if (o->active && o->seq && o->last_mid == mid) {
                o->active = false;
                if (E->st.observations)
                    E->st.observations--;
                stats_op(OP_OBSERVE_CANCEL, fleet_now_us(), true, 0, 0);
                return;
            }
        }
    }
    if (lw_coap_ep_input(&d->ep, data, len, E->now))
        E->st.rx_rejected++;
}

static void timer_cb(struct lw_timer *t)
{
    struct fleet_dev *d = lw_container_of(t, struct fleet_dev, timer);
    uint64_t now = E->now;
    if (lw_coap_ep_next_deadline(&d->ep) <= now)
        lw_coap_ep_timeout(&d->ep, now);
    if (d->sec && sec_deadline(d) <= now)
        sec_timeout(d);
    if (d->x && d->x->fw.active && lw_coap_ep_next_deadline(&d->x->fw.ep) <= now)
        lw_coap_ep_timeout(&d->x->fw.ep, now);
    switch (d->state) {
    case DS_REGISTERED:
        if (!E->stopping && (d->want_update || d->next_update <= now))
            send_update(d);
        if (d->state == DS_REGISTERED && d->next_send && d->next_send <= now && !E->stopping)
            send_send(d);
        break;
    case DS_RETRY:
    case DS_REBOOTING:
        if (d->next_update <= now && !E->stopping) {
            d->state = DS_OFF;
            send_register(d);
        }
        break;
    default: break;
    }
    if (d->x && d->x->fw_due && d->x->fw_due <= now) {
        d->x->fw_due = 0;
        model_fw_step(d, now);
    }
    if (d->x && d->x->next_obs && d->x->next_obs <= now && d->state == DS_REGISTERED)
        model_eval_obs(d, now);
    if (d->x && d->x->reboot_at && d->x->reboot_at <= now)
        dev_reboot(d, now);
    dev_schedule(d);
}

void dev_schedule(struct fleet_dev *d)
{
    if (!d->timer.cb)
        lw_timer_init(&d->timer, timer_cb);
    uint64_t t = lw_coap_ep_next_deadline(&d->ep);
    if (d->sec)
        t = LW_MIN(t, sec_deadline(d));
    if (d->x && d->x->fw.active)
        t = LW_MIN(t, lw_coap_ep_next_deadline(&d->x->fw.ep));
    if (!E->stopping) {
        if (d->state == DS_REGISTERED) {
            t = LW_MIN(t, d->want_update ? E->now : d->next_update);
            if (d->next_send)
                t = LW_MIN(t, d->next_send);
        } else if (d->state == DS_RETRY || d->state == DS_REBOOTING) {
            t = LW_MIN(t, d->next_update);
        }
    }
    if (d->x) {
        if (d->x->fw_due)
            t = LW_MIN(t, d->x->fw_due);
        if (d->x->next_obs && d->state == DS_REGISTERED)
            t = LW_MIN(t, d->x->next_obs);
        if (d->x->reboot_at)
            t = LW_MIN(t, d->x->reboot_at);
    }
    if (t == UINT64_MAX) {
        lw_wheel_cancel(&E->wheel, &d->timer);
        return;
    }
    if (!lw_timer_armed(&d->timer) || d->timer.expires != t)
        lw_wheel_arm(&E->wheel, &d->timer, t);
}

/* Used by model.c after a reboot/firmware update: come back after reboot_ms. */
void dev_reboot(struct fleet_dev *d, uint64_t now);
void dev_reboot(struct fleet_dev *d, uint64_t now)
{
    dev_power_cycle(d, now + dev_group(d)->reboot_ms);
}

/* Used by model.c: Registration Update Trigger (/1/0/8). */
void dev_trigger_update(struct fleet_dev *d);
void dev_trigger_update(struct fleet_dev *d)
{
    if (d->state == DS_REGISTERED)
        d->want_update = true;
}

/* Used by model.c: starts a firmware pull from uri's host. 0 or LW_EINVAL (unsupported URI). */
int dev_fw_fetch(struct fleet_dev *d, const char *uri, uint64_t now);
int dev_fw_fetch(struct fleet_dev *d, const char *uri, uint64_t now)
{
    struct dev_extra *x = dev_extra(d);
    if (!x)
        return LW_ENOMEM;
    /* coap://a.b.c.d[:port]/path... : the simulator only fetches over plain CoAP from IPv4
     * literals (test setups); anything else is "unsupported protocol"/"invalid URI". */
    if (strncmp(uri, "coap://", 7) != 0)
        return LW_ENOTSUP;
    const char *h = uri + 7, *slash = strchr(h, '/');
    char host[64];
    size_t hl = slash ? (size_t)(slash - h) : strlen(h);
    if (hl == 0 || hl >= sizeof(host))
        return LW_EINVAL;
    memcpy(host, h, hl);
    host[hl] = 0;
    uint16_t port = 5683;
    char *colon = strchr(host, ':');
    if (colon) {
        uint64_t p;
        *colon = 0;
        if (lw_parse_u64(colon + 1, strlen(colon + 1), &p) || p == 0 || p > 65535)
            return LW_EINVAL;
        port = (uint16_t)p;
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1)
        return LW_EINVAL;
    if ((ntohl(a.sin_addr.s_addr) >> 24) != 127 && a.sin_addr.s_addr != E->server.sin_addr.s_addr)
        return LW_EINVAL; /* never fetch from outside the test target */
    struct lw_coap_msg m;
    lw_coap_msg_init(&m, LW_COAP_CON, LW_COAP_GET);
    if (slash && slash[1] && lw_coap_add_uri_path(&m, slash) != 0)
        return LW_EINVAL;
    struct lw_coap_handle hd;
    if (a.sin_addr.s_addr == E->server.sin_addr.s_addr && a.sin_port == E->server.sin_port) {
        /* The LwM2M server is also the file server: same peer, same exchange state. */
        return lw_coap_ep_request(&d->ep, &m, COOKIE(OP_FW_PULL, fleet_now_us()), now, &hd);
    }
    if (x->fw.active)
        lw_coap_ep_deinit(&x->fw.ep);
    x->fw.addr = a;
    x->fw.dev = d;
    x->fw.active = true;
    lw_coap_ep_init(&x->fw.ep, &E->fw_env, &x->fw);
    return lw_coap_ep_request(&x->fw.ep, &m, COOKIE(OP_FW_PULL, fleet_now_us()), now, &hd);
}
