/* Unit tests of regsrv_peer_moved (server/registry.c): the peer of a DTLS session whose CID
 * record arrived from a new address moves with its registration at once (address, events,
 * downlinks), a registration already at the new address is replaced, a move that only changes
 * the listener socket posts no event, and an unknown address is refused. */
#include "base/clock.h"
#include "base/err.h"
#include "coap/coap.h"
#include "dir.h"
#include "registry.h"

#include <arpa/inet.h>
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct {
    struct regsrv rs;
    struct lw_clock clock;
    uint64_t now;
    uint8_t out[2048];
    size_t outlen;
    struct peer_addr last_to;
    unsigned nev[LW_EV__COUNT];
    char last_reason[32];
} H;
static uint16_t mid = 100;

static void h_send(void *ctx, const struct peer_addr *to, const uint8_t *d, size_t n)
{
    (void)ctx;
    H.last_to = *to;
    if (n <= sizeof(H.out)) {
        memcpy(H.out, d, n);
        H.outlen = n;
    }
}

static void h_event(void *ctx, struct lw_event *ev)
{
    (void)ctx;
    H.nev[ev->type]++;
    json_t *r = json_object_get(ev->data, "reason");
    if (ev->type == LW_EV_DEREGISTERED)
        snprintf(H.last_reason, sizeof(H.last_reason), "%s", r ? json_string_value(r) : "");
    lw_event_free(ev);
}

static const struct regsrv_ops ops = {.send = h_send, .event = h_event};

static void setup(void)
{
    char err[256];
    memset(&H, 0, sizeof(H));
    ck_assert_int_eq(reg_global_init(NULL, err, sizeof(err)), 0);
    lw_clock_fake_init(&H.clock, 1000000, 1790000000000);
    H.now = 1000000;
    struct regsrv_cfg cfg = {0};
    cfg.clock = &H.clock;
    cfg.nshards = 1;
    ck_assert_int_eq(regsrv_init(&H.rs, 0, &cfg, &ops, NULL, H.now), 0);
}

static void teardown(void)
{
    regsrv_deinit(&H.rs);
    ck_assert_uint_eq(dir_count(), 0);
    reg_global_deinit();
}

static struct peer_addr addr(uint32_t ip, uint16_t port, uint8_t sock)
{
    struct peer_addr a = {0};
    a.family = 4;
    a.sock = sock;
    a.port = port;
    uint32_t n = htonl(ip);
    memcpy(a.ip, &n, 4);
    return a;
}

/* A CON request from a with a secure identity for ep; returns the response code. */
static uint8_t req(struct peer_addr a, const char *ep, uint8_t code, const char *path,
                   const char *query, char *loc)
{
    struct lw_coap_msg m;
    char q[128], p[64];
    uint8_t buf[1024];
    struct lw_buf b;
    struct regsrv_sec sec = {RS_SEC_PSK, (uint8_t)strlen(ep), ep};
    lw_coap_msg_init(&m, LW_COAP_CON, code);
    m.mid = mid++;
    m.tkl = 1;
    m.token[0] = (uint8_t)m.mid;
    snprintf(p, sizeof(p), "%s", path);
    ck_assert_int_eq(lw_coap_add_uri_path(&m, p), 0);
    if (query) {
        snprintf(q, sizeof(q), "%s", query);
        char *save = NULL;
        for (char *t = strtok_r(q, "&", &save); t; t = strtok_r(NULL, "&", &save))
            ck_assert_int_eq(lw_coap_add_str(&m, LW_COAP_OPT_URI_QUERY, t), 0);
    }
    if (strcmp(path, "rd") == 0) {
        lw_coap_add_uint(&m, LW_COAP_OPT_CONTENT_FORMAT, 40);
        m.payload = LW_BYTES_STR("</1/0>,</3/0>");
    }
    lw_buf_init_fixed(&b, buf, sizeof(buf));
    ck_assert_int_eq(lw_coap_serialize(&m, &b), 0);
    H.outlen = 0;
    regsrv_input_sec(&H.rs, &a, &sec, buf, b.len, H.now);
    if (!H.outlen)
        return 0;
    struct lw_coap_msg r;
    ck_assert_int_eq(lw_coap_parse(&r, H.out, H.outlen, NULL, NULL), 0);
    if (loc) {
        size_t pos = 0;
        const struct lw_coap_opt *o;
        loc[0] = '\0';
        while ((o = lw_coap_next_opt(&r, LW_COAP_OPT_LOCATION_PATH, &pos)))
            snprintf(loc, 32, "%.*s", (int)o->len, (const char *)lw_coap_opt_data(o));
    }
    return r.code;
}

static const char *address_of(const char *ep, char *out, size_t cap)
{
    struct dir_ref ref;
    json_t *j = NULL;
    ck_assert_int_eq(dir_lookup(ep, strlen(ep), &ref), 0);
    ck_assert_int_eq(regsrv_get_json(&H.rs, ref.id, ref.gen, &j), 0);
    snprintf(out, cap, "%s", json_string_value(json_object_get(j, "address")));
    json_decref(j);
    return out;
}

START_TEST(moves_registration_and_exchanges)
{
    char id[32], path[48], txt[64];
    struct peer_addr a = addr(0x7f000001, 40000, 1), b = addr(0x7f000001, 40001, 1);
    ck_assert_uint_eq(req(a, "dev", LW_COAP_POST, "rd", "ep=dev&lt=60", id), LW_COAP_CREATED);
    ck_assert_uint_eq(H.rs.stats.peers, 1);
    unsigned upd = H.nev[LW_EV_UPDATED];
    ck_assert_int_eq(regsrv_peer_moved(&H.rs, &a, &b, H.now), 0);
    ck_assert_uint_eq(H.nev[LW_EV_UPDATED], upd + 1); /* the new address is announced */
    ck_assert_str_eq(address_of("dev", txt, sizeof(txt)), "127.0.0.1:40001");
    ck_assert_ptr_null(peer_find(&H.rs.peers, &a));
    struct peer *p = peer_find(&H.rs.peers, &b);
    ck_assert_ptr_nonnull(p);
    /* downlinks go to the new address */
    struct dir_ref ref;
    struct regsrv_dev dev;
    ck_assert_int_eq(dir_lookup("dev", 3, &ref), 0);
    ck_assert_int_eq(regsrv_dev_find(&H.rs, ref.id, ref.gen, &dev), 0);
    ck_assert_ptr_eq(dev.peer, p);
    ck_assert_int_eq(memcmp(&dev.peer->addr, &b, sizeof(b)), 0);
    /* the device's next Update from there needs no new peer */
    snprintf(path, sizeof(path), "rd/%s", id);
    ck_assert_uint_eq(req(b, "dev", LW_COAP_POST, path, NULL, NULL), LW_COAP_CHANGED);
    ck_assert_uint_eq(memcmp(&H.last_to, &b, sizeof(b)), 0);
    ck_assert_uint_eq(H.rs.stats.peers, 1);
    /* moving from an address nobody holds */
    ck_assert_int_eq(regsrv_peer_moved(&H.rs, &a, &b, H.now), LW_ENOENT);
}
END_TEST

START_TEST(replaces_registration_at_new_address)
{
    char id[32], txt[64];
    struct peer_addr a = addr(0x0a000001, 5000, 1), b = addr(0x0a000002, 6000, 1);
    ck_assert_uint_eq(req(a, "one", LW_COAP_POST, "rd", "ep=one&lt=60", id), LW_COAP_CREATED);
    ck_assert_uint_eq(req(b, "two", LW_COAP_POST, "rd", "ep=two&lt=60", id), LW_COAP_CREATED);
    ck_assert_uint_eq(regsrv_reg_count(&H.rs), 2);
    ck_assert_int_eq(regsrv_peer_moved(&H.rs, &a, &b, H.now), 0);
    ck_assert_uint_eq(regsrv_reg_count(&H.rs), 1);
    ck_assert_uint_eq(H.nev[LW_EV_DEREGISTERED], 1);
    ck_assert_str_eq(H.last_reason, "replaced");
    struct dir_ref ref;
    ck_assert_int_eq(dir_lookup("two", 3, &ref), LW_ENOENT);
    ck_assert_str_eq(address_of("one", txt, sizeof(txt)), "10.0.0.2:6000");
    ck_assert_uint_eq(H.rs.stats.peers, 1);
}
END_TEST

START_TEST(socket_only_move_is_quiet)
{
    char id[32];
    struct peer_addr a = addr(0x7f000001, 41000, 0), b = addr(0x7f000001, 41000, 2);
    ck_assert_uint_eq(req(a, "dev", LW_COAP_POST, "rd", "ep=dev&lt=60", id), LW_COAP_CREATED);
    unsigned upd = H.nev[LW_EV_UPDATED];
    ck_assert_int_eq(regsrv_peer_moved(&H.rs, &a, &b, H.now), 0);
    ck_assert_uint_eq(H.nev[LW_EV_UPDATED], upd);
    ck_assert_ptr_nonnull(peer_find(&H.rs.peers, &b));
    ck_assert_ptr_null(peer_find(&H.rs.peers, &a));
    /* same address: nothing to do */
    ck_assert_int_eq(regsrv_peer_moved(&H.rs, &b, &b, H.now), 0);
}
END_TEST

Suite *suite_peer_moved(void);
Suite *suite_peer_moved(void)
{
    Suite *s = suite_create("peer_moved");
    TCase *tc = tcase_create("peer_moved");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, moves_registration_and_exchanges);
    tcase_add_test(tc, replaces_registration_at_new_address);
    tcase_add_test(tc, socket_only_move_is_quiet);
    suite_add_tcase(s, tc);
    return s;
}
