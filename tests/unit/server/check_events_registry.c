/* tests/unit/server/check_events_registry.c - the registration events' JSON, written directly
 * from the shard's snapshot (registry.c snap_write through lw_event_json), against the old path:
 * json_dumps(JSON_COMPACT) of the jansson event the registry still attaches as ev->data for
 * regsrv_ops.event callers. Registers, Updates, De-registers and expiries over every field the
 * data carries (versions, bindings, queue mode, sms, pid, IPv4 and IPv6 addresses, object lists
 * with versions and instances, none at all). */
#include "api/api_int.h"
#include "base/clock.h"
#include "coap/coap.h"
#include "dir.h"
#include "events.h"
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
    unsigned nev, nid;
} E;

static void e_send(void *ctx, const struct peer_addr *to, const uint8_t *d, size_t n)
{
    (void)ctx;
    (void)to;
    if (n <= sizeof(E.out)) {
        memcpy(E.out, d, n);
        E.outlen = n;
    }
}

static void e_event(void *ctx, struct lw_event *ev)
{
    (void)ctx;
    ck_assert_ptr_nonnull(ev->write_data); /* the daemon's path */
    ev->id = 1000 + E.nev++;
    ev->time_ms = 1790000000000 + 123 * E.nev;
    json_t *j = api_event_json(ev);
    char *want = json_dumps(j, JSON_COMPACT);
    ck_assert_ptr_nonnull(want);
    size_t len = 0;
    const char *got = lw_event_json(ev, &len);
    ck_assert_ptr_nonnull(got);
    ck_assert_msg(len == strlen(want) && memcmp(got, want, len) == 0, "\n got %.*s\nwant %s",
                  (int)len, got, want);
    free(want);
    json_decref(j);
    lw_event_free(ev);
}

static const struct regsrv_ops ops = {.send = e_send, .event = e_event};

static void setup(void)
{
    memset(&E, 0, sizeof(E));
    char err[256];
    ck_assert_int_eq(reg_global_init(NULL, err, sizeof(err)), 0);
    lw_clock_fake_init(&E.clock, 1000000, 1790000000000);
    E.now = 1000000;
    struct regsrv_cfg cfg = {0};
    cfg.clock = &E.clock;
    cfg.expiry_grace_ms = 5000;
    cfg.nshards = 1;
    ck_assert_int_eq(regsrv_init(&E.rs, 0, &cfg, &ops, NULL, E.now), 0);
}

static void teardown(void)
{
    regsrv_deinit(&E.rs);
    reg_global_deinit();
}

static struct peer_addr addr4(uint32_t ip, uint16_t port)
{
    struct peer_addr a = {0};
    a.family = 4;
    a.port = port;
    uint32_t n = htonl(ip);
    memcpy(a.ip, &n, 4);
    return a;
}

static struct peer_addr addr6(const char *ip, uint16_t port)
{
    struct peer_addr a = {0};
    a.family = 6;
    a.port = port;
    ck_assert_int_eq(inet_pton(AF_INET6, ip, a.ip), 1);
    return a;
}

/* A CON request (path "rd" or "rd/<id>", query "a=b&c", link-format payload); the response
 * code, loc gets the Location-Path id. */
static uint8_t req(struct peer_addr a, uint8_t code, const char *path, const char *query,
                   const char *payload, char *loc)
{
    struct lw_coap_msg m;
    char qbuf[512], pbuf[128];
    uint8_t buf[2048];
    struct lw_buf b;
    lw_coap_msg_init(&m, LW_COAP_CON, code);
    m.mid = (uint16_t)(++E.nid);
    m.tkl = 1;
    m.token[0] = (uint8_t)m.mid;
    snprintf(pbuf, sizeof(pbuf), "%s", path);
    ck_assert_int_eq(lw_coap_add_uri_path(&m, pbuf), 0);
    if (query && *query) {
        snprintf(qbuf, sizeof(qbuf), "%s", query);
        char *save = NULL;
        for (char *q = strtok_r(qbuf, "&", &save); q; q = strtok_r(NULL, "&", &save))
            ck_assert_int_eq(lw_coap_add_str(&m, LW_COAP_OPT_URI_QUERY, q), 0);
    }
    if (payload && *payload) {
        lw_coap_add_uint(&m, LW_COAP_OPT_CONTENT_FORMAT, 40);
        m.payload = LW_BYTES_STR(payload);
    }
    lw_buf_init_fixed(&b, buf, sizeof(buf));
    ck_assert_int_eq(lw_coap_serialize(&m, &b), 0);
    E.outlen = 0;
    regsrv_input(&E.rs, &a, buf, b.len, E.now);
    if (!E.outlen)
        return 0;
    struct lw_coap_msg r;
    ck_assert_int_eq(lw_coap_parse(&r, E.out, E.outlen, NULL, NULL), 0);
    if (loc) {
        size_t pos = 0;
        const struct lw_coap_opt *o;
        loc[0] = 0;
        while ((o = lw_coap_next_opt(&r, LW_COAP_OPT_LOCATION_PATH, &pos)))
            snprintf(loc, 32, "%.*s", (int)o->len, (const char *)lw_coap_opt_data(o));
    }
    return r.code;
}

static void advance(uint64_t ms)
{
    E.now += ms;
    lw_clock_fake_advance(&E.clock, ms);
    regsrv_advance(&E.rs, E.now);
}

START_TEST(test_registration_events_like_jansson)
{
    static const struct {
        const char *query, *payload;
    } regs[] = {
        {"ep=meter-0001&lt=300", "</1/0>,</3/0>,</5/0>"},
        {"ep=urn:dev:os:0023C7-000001&lt=86400&lwm2m=1.0&b=UQ",
         "</>;rt=\"oma.lwm2m\";ct=110,</1/0>,</3/0>,</5/0>"},
        {"ep=q-dev&lt=60&lwm2m=1.2&b=U&Q&sms=%2B15551234", "</1/0>,</3/0>"},
        {"ep=nolist&lwm2m=1.0&b=UQ", "</>;rt=\"oma.lwm2m\""},
        {"ep=with.pid&lwm2m=1.1&pid=meter-v2", "</1/0>,</3/0>,</4/0>,</6>"},
        {"ep=a{b}|c~d&lt=1", "</1/0>"},
    };
    char ids[6][32];
    for (unsigned i = 0; i < 6; i++) {
        struct peer_addr a = i % 2 ? addr6(i == 1 ? "2001:db8::1" : "::ffff:10.0.0.7", 5683)
                                   : addr4(0x0a000001 + i * 0x01010101, (uint16_t)(40000 + i));
        uint8_t c = req(a, LW_COAP_POST, "rd", regs[i].query, regs[i].payload, ids[i]);
        ck_assert_msg(c == LW_COAP_CREATED, "register %u: %u", i, c);
    }
    unsigned before = E.nev;
    ck_assert_uint_ge(before, 6);
    char path[48];
    /* Updates: a new lifetime, a new list, a new address, nothing at all */
    snprintf(path, sizeof(path), "rd/%s", ids[0]);
    ck_assert_uint_eq(req(addr4(0x0a000001, 40000), LW_COAP_POST, path, "lt=600", NULL, NULL),
                      LW_COAP_CHANGED);
    ck_assert_uint_eq(req(addr4(0x0a000001, 40000), LW_COAP_POST, path, NULL,
                          "</1/0>,</3/0>,</3303/0>,</3303/1>,</3303/2>", NULL),
                      LW_COAP_CHANGED);
    ck_assert_uint_eq(req(addr4(0xc0a80001, 5683), LW_COAP_POST, path, NULL, NULL, NULL),
                      LW_COAP_CHANGED);
    snprintf(path, sizeof(path), "rd/%s", ids[2]);
    ck_assert_uint_eq(req(addr4(0x0a000001 + 2 * 0x01010101, 40002), LW_COAP_POST, path,
                          "b=U&sms=%2B4912345", NULL, NULL),
                      LW_COAP_CHANGED);
    /* De-register one, then let the rest expire (the reasons) */
    snprintf(path, sizeof(path), "rd/%s", ids[4]);
    ck_assert_uint_eq(
        req(addr4(0x0a000001 + 4 * 0x01010101, 40004), LW_COAP_DELETE, path, NULL, NULL, NULL),
        LW_COAP_DELETED);
    advance(100000000);
    ck_assert_uint_ge(E.nev, before + 5 + 4);
}
END_TEST

Suite *suite_events_registry(void);
Suite *suite_events_registry(void)
{
    Suite *s = suite_create("events_registry");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_registration_events_like_jansson);
    suite_add_tcase(s, tc);
    return s;
}
