/* Unit tests of the registration interface (server/registry.c) on a fake clock: Register /
 * Update / De-register codes, parameter validation, expiry with grace, re-registration, migration
 * between shards (two services wired by an in-memory mailbox), interning and profiles, and a
 * 100 k endpoint consistency run. */
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
#include <unistd.h>

#define NSH 2

struct harness {
    struct regsrv rs[NSH];
    struct lw_clock clock;
    uint64_t now;
    /* last datagram sent by any shard */
    uint8_t out[2048];
    size_t outlen;
    unsigned nsent;
    /* in-memory mailboxes (rings) */
    unsigned fq_head, fq_tail, dq_head, dq_tail;
    /* events */
    unsigned nev[LW_EV__COUNT];
    char last_reason[32];
    char last_ep[128];
};

static struct harness H;
#define QCAP (1u << 18)
static struct regsrv_fwd *fq[QCAP];
static unsigned fq_to[QCAP];
static struct {
    unsigned shard;
    uint64_t id;
    uint32_t gen;
} dq[QCAP];
static uint16_t next_mid = 1;

static void h_send(void *ctx, const struct peer_addr *to, const uint8_t *d, size_t n)
{
    (void)ctx;
    (void)to;
    if (n <= sizeof(H.out)) {
        memcpy(H.out, d, n);
        H.outlen = n;
    }
    H.nsent++;
}

static void h_drop_remote(void *ctx, unsigned shard, uint64_t id, uint32_t gen)
{
    (void)ctx;
    ck_assert_uint_lt(H.dq_tail - H.dq_head, QCAP);
    unsigned i = H.dq_tail++ % QCAP;
    dq[i].shard = shard;
    dq[i].id = id;
    dq[i].gen = gen;
}

static void h_post_fwd(void *ctx, unsigned shard, struct regsrv_fwd *f)
{
    (void)ctx;
    ck_assert_uint_lt(H.fq_tail - H.fq_head, QCAP);
    unsigned i = H.fq_tail++ % QCAP;
    fq[i] = f;
    fq_to[i] = shard;
}

static void h_event(void *ctx, struct lw_event *ev)
{
    (void)ctx;
    H.nev[ev->type]++;
    json_t *r = json_object_get(ev->data, "reason");
    snprintf(H.last_reason, sizeof(H.last_reason), "%s", r ? json_string_value(r) : "");
    snprintf(H.last_ep, sizeof(H.last_ep), "%s", ev->endpoint);
    ck_assert_ptr_nonnull(json_object_get(ev->data, "registration_id"));
    ck_assert_ptr_nonnull(json_object_get(ev->data, "objects"));
    lw_event_free(ev);
}

static const struct regsrv_ops ops = {
    .send = h_send, .drop_remote = h_drop_remote, .post_fwd = h_post_fwd, .event = h_event};

/* Runs queued cross-shard messages until none is left. */
static void pump(void)
{
    while (H.fq_head != H.fq_tail || H.dq_head != H.dq_tail) {
        if (H.fq_head != H.fq_tail) {
            unsigned i = H.fq_head++ % QCAP;
            regsrv_fwd_run(&H.rs[fq_to[i]], fq[i], H.now);
        } else {
            unsigned i = H.dq_head++ % QCAP;
            regsrv_drop(&H.rs[dq[i].shard], dq[i].id, dq[i].gen, "replaced", NULL);
        }
    }
}

static void setup(void)
{
    memset(&H, 0, sizeof(H));
    char err[256];
    ck_assert_int_eq(reg_global_init(NULL, err, sizeof(err)), 0);
    lw_clock_fake_init(&H.clock, 1000000, 1790000000000);
    H.now = 1000000;
    struct regsrv_cfg cfg = {0};
    cfg.clock = &H.clock;
    cfg.expiry_grace_ms = 5000;
    cfg.nshards = NSH;
    for (unsigned i = 0; i < NSH; i++)
        ck_assert_int_eq(regsrv_init(&H.rs[i], i, &cfg, &ops, NULL, H.now), 0);
}

static void teardown(void)
{
    pump();
    for (unsigned i = 0; i < NSH; i++)
        regsrv_deinit(&H.rs[i]);
    ck_assert_uint_eq(dir_count(), 0);
    ck_assert_uint_le(reg_interned_count(), reg_profile_count()); /* profiles keep theirs */
    reg_global_deinit();
}

static struct peer_addr addr(uint32_t ip, uint16_t port)
{
    struct peer_addr a = {0};
    a.family = 4;
    a.port = port;
    uint32_t n = htonl(ip);
    memcpy(a.ip, &n, 4);
    return a;
}

/* Sends a CON request with the given Uri-Path ("rd" or "rd/<id>"), query string ("a=b&c") and
 * payload to shard s from a, runs the mailboxes, and returns the response code. loc gets the
 * registration id from Location-Path (if any). */
static uint8_t req(unsigned s, struct peer_addr a, uint8_t code, const char *path,
                   const char *query, const char *payload, char *loc)
{
    struct lw_coap_msg m;
    char qbuf[512], pbuf[128];
    uint8_t buf[2048];
    struct lw_buf b;
    lw_coap_msg_init(&m, LW_COAP_CON, code);
    m.mid = next_mid++;
    m.tkl = 2;
    m.token[0] = 0xab;
    m.token[1] = (uint8_t)m.mid;
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
    H.outlen = 0;
    regsrv_input(&H.rs[s], &a, buf, b.len, H.now);
    pump();
    if (!H.outlen)
        return 0;
    struct lw_coap_msg r;
    ck_assert_int_eq(lw_coap_parse(&r, H.out, H.outlen, NULL, NULL), 0);
    ck_assert_uint_eq(r.mid, m.mid);
    if (loc) {
        size_t pos = 0;
        const struct lw_coap_opt *o;
        int i = 0;
        loc[0] = '\0';
        while ((o = lw_coap_next_opt(&r, LW_COAP_OPT_LOCATION_PATH, &pos))) {
            if (i == 0)
                ck_assert(o->len == 2 && memcmp(lw_coap_opt_data(o), "rd", 2) == 0);
            else
                snprintf(loc, 32, "%.*s", (int)o->len, (const char *)lw_coap_opt_data(o));
            i++;
        }
    }
    return r.code;
}

static void advance(uint64_t ms)
{
    H.now += ms;
    lw_clock_fake_advance(&H.clock, ms);
    for (unsigned i = 0; i < NSH; i++)
        regsrv_advance(&H.rs[i], H.now);
    pump();
}

static size_t regs_total(void)
{
    size_t n = 0;
    for (unsigned i = 0; i < NSH; i++)
        n += regsrv_reg_count(&H.rs[i]);
    return n;
}

#define OBJS "</>;rt=\"oma.lwm2m\";ct=110,</1/0>,</3/0>,</5/0>"

START_TEST(register_update_deregister)
{
    char id[32], path[48];
    struct peer_addr a = addr(0x7f000001, 40000);
    ck_assert_uint_eq(req(0, a, LW_COAP_POST, "rd", "ep=dev1&lt=60&lwm2m=1.1&b=U", OBJS, id),
                      LW_COAP_CREATED);
    ck_assert_uint_eq(strlen(id), 11);
    ck_assert_uint_eq(H.nev[LW_EV_REGISTERED], 1);
    struct dir_ref ref;
    ck_assert_int_eq(dir_lookup("dev1", 4, &ref), 0);
    ck_assert_uint_eq(ref.shard, 0);
    snprintf(path, sizeof(path), "rd/%s", id);
    ck_assert_uint_eq(req(0, a, LW_COAP_POST, path, "", "", NULL), LW_COAP_CHANGED);
    ck_assert_uint_eq(req(0, a, LW_COAP_POST, path, "lt=120&b=UQ", "", NULL), LW_COAP_BAD_REQUEST);
    ck_assert_uint_eq(req(0, a, LW_COAP_POST, path, "lt=120&Q", "</1/0>,</3/0>", NULL),
                      LW_COAP_CHANGED);
    ck_assert_uint_eq(H.nev[LW_EV_UPDATED], 2);
    json_t *j = NULL;
    ck_assert_int_eq(regsrv_get_json(&H.rs[0], ref.id, ref.gen, &j), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "lifetime_s")), 120);
    ck_assert(json_is_true(json_object_get(j, "queue_mode")));
    ck_assert_str_eq(json_string_value(json_object_get(j, "address")), "127.0.0.1:40000");
    ck_assert_str_eq(json_string_value(json_object_get(j, "registered_at")),
                     "2026-09-21T14:13:20Z");
    ck_assert_str_eq(json_string_value(json_object_get(j, "binding")), "U");
    ck_assert_str_eq(json_string_value(json_object_get(j, "lwm2m_version")), "1.1");
    ck_assert_uint_eq(json_array_size(json_object_get(j, "objects")), 2);
    json_decref(j);
    ck_assert_uint_eq(req(0, a, LW_COAP_DELETE, path, "", "", NULL), LW_COAP_DELETED);
    ck_assert_str_eq(H.last_reason, "client");
    ck_assert_uint_eq(req(0, a, LW_COAP_POST, path, "", "", NULL), LW_COAP_NOT_FOUND);
    ck_assert_uint_eq(req(0, a, LW_COAP_DELETE, path, "", "", NULL), LW_COAP_NOT_FOUND);
    ck_assert_int_eq(dir_lookup("dev1", 4, &ref), LW_ENOENT);
    ck_assert_uint_eq(regs_total(), 0);
}
END_TEST

START_TEST(bad_registers)
{
    struct peer_addr a = addr(0x7f000002, 40001);
    ck_assert_uint_eq(req(0, a, LW_COAP_POST, "rd", "lt=60&lwm2m=1.1", OBJS, NULL),
                      LW_COAP_BAD_REQUEST);
    ck_assert_uint_eq(req(0, a, LW_COAP_POST, "rd", "ep=x&lt=abc&lwm2m=1.1", OBJS, NULL),
                      LW_COAP_BAD_REQUEST);
    ck_assert_uint_eq(req(0, a, LW_COAP_POST, "rd", "ep=x&lt=0&lwm2m=1.1", OBJS, NULL),
                      LW_COAP_BAD_REQUEST);
    ck_assert_uint_eq(req(0, a, LW_COAP_POST, "rd", "ep=x&lwm2m=9.9", OBJS, NULL),
                      LW_COAP_PRECONDITION_FAILED);
    ck_assert_uint_eq(req(0, a, LW_COAP_POST, "rd", "ep=x&lwm2m=1.1", "</1/0>,<3/0", NULL),
                      LW_COAP_BAD_REQUEST);
    ck_assert_uint_eq(req(0, a, LW_COAP_POST, "rd", "ep=x&lwm2m=1.1", "", NULL),
                      LW_COAP_BAD_REQUEST);
    ck_assert_uint_eq(req(0, a, LW_COAP_POST, "rd", "ep=x&ep=y&lwm2m=1.1", OBJS, NULL),
                      LW_COAP_BAD_REQUEST);
    ck_assert_uint_eq(req(0, a, LW_COAP_POST, "rd", "ep=x&lwm2m=1.1&Q=1", OBJS, NULL),
                      LW_COAP_BAD_REQUEST);
    ck_assert_uint_eq(req(0, a, LW_COAP_POST, "rd", "ep=x&lwm2m=1.0&b=UT", OBJS, NULL),
                      LW_COAP_BAD_REQUEST);
    ck_assert_uint_eq(req(0, a, LW_COAP_POST, "rd", "ep=x&lwm2m=1.1&b=UU", OBJS, NULL),
                      LW_COAP_BAD_REQUEST);
    ck_assert_uint_eq(req(0, a, LW_COAP_POST, "rd", "ep=x&lwm2m=1.1&sms=", OBJS, NULL),
                      LW_COAP_BAD_REQUEST);
    ck_assert_uint_eq(req(0, a, LW_COAP_POST, "rd", "ep=a b&lwm2m=1.1", OBJS, NULL),
                      LW_COAP_BAD_REQUEST);
    /* Device (3) is single-instance: /3/1 is an invalid list. */
    ck_assert_uint_eq(req(0, a, LW_COAP_POST, "rd", "ep=x&lwm2m=1.1", "</3/0>,</3/1>", NULL),
                      LW_COAP_BAD_REQUEST);
    ck_assert_uint_eq(req(0, a, LW_COAP_GET, "rd", "", "", NULL), LW_COAP_METHOD_NOT_ALLOWED);
    ck_assert_uint_eq(req(0, a, LW_COAP_POST, "bs", "ep=x", "", NULL), LW_COAP_NOT_FOUND);
    ck_assert_uint_eq(req(0, a, LW_COAP_POST, "rd/short", "", "", NULL), LW_COAP_NOT_FOUND);
    ck_assert_uint_eq(regs_total(), 0);
    ck_assert_uint_eq(H.nev[LW_EV_REGISTERED], 0);
    /* 1.0 binding with Q inside, lwm2m absent = 1.0 */
    ck_assert_uint_eq(req(0, a, LW_COAP_POST, "rd", "ep=x&b=UQ", OBJS, NULL), LW_COAP_CREATED);
}
END_TEST

START_TEST(expiry_with_grace)
{
    char id[32];
    struct peer_addr a = addr(0x7f000003, 40002);
    ck_assert_uint_eq(req(1, a, LW_COAP_POST, "rd", "ep=exp&lt=30&lwm2m=1.1", OBJS, id),
                      LW_COAP_CREATED);
    advance(34000);
    ck_assert_uint_eq(regs_total(), 1);
    char path[48];
    snprintf(path, sizeof(path), "rd/%s", id);
    ck_assert_uint_eq(req(1, a, LW_COAP_POST, path, "", "", NULL), LW_COAP_CHANGED);
    advance(34000); /* 30 s lifetime + 5 s grace after the Update */
    ck_assert_uint_eq(regs_total(), 1);
    advance(1500);
    ck_assert_uint_eq(regs_total(), 0);
    ck_assert_uint_eq(H.nev[LW_EV_EXPIRED], 1);
    ck_assert_str_eq(H.last_reason, "expired");
    ck_assert_uint_eq(dir_count(), 0);
    ck_assert_uint_eq(req(1, a, LW_COAP_POST, path, "", "", NULL), LW_COAP_NOT_FOUND);
    /* The peer's CoAP dedup state expires too; then nothing is left. */
    advance(300000);
    ck_assert_uint_eq(peer_count(&H.rs[1].peers), 0);
}
END_TEST

START_TEST(reregister_replaces)
{
    char id1[32], id2[32], path[48];
    struct peer_addr a = addr(0x7f000004, 40003), b = addr(0x7f000005, 40004);
    ck_assert_uint_eq(req(0, a, LW_COAP_POST, "rd", "ep=rr&lwm2m=1.1", OBJS, id1), LW_COAP_CREATED);
    ck_assert_uint_eq(req(0, a, LW_COAP_POST, "rd", "ep=rr&lwm2m=1.1", OBJS, id2), LW_COAP_CREATED);
    ck_assert_str_ne(id1, id2);
    ck_assert_uint_eq(regs_total(), 1);
    ck_assert_uint_eq(H.nev[LW_EV_DEREGISTERED], 1);
    ck_assert_str_eq(H.last_reason, "");
    snprintf(path, sizeof(path), "rd/%s", id1);
    ck_assert_uint_eq(req(0, a, LW_COAP_POST, path, "", "", NULL), LW_COAP_NOT_FOUND);
    /* Re-register from an address of the other shard: the old one is dropped there by message. */
    ck_assert_uint_eq(req(1, b, LW_COAP_POST, "rd", "ep=rr&lwm2m=1.1", OBJS, id1), LW_COAP_CREATED);
    ck_assert_uint_eq(regsrv_reg_count(&H.rs[0]), 0);
    ck_assert_uint_eq(regsrv_reg_count(&H.rs[1]), 1);
    struct dir_ref ref;
    ck_assert_int_eq(dir_lookup("rr", 2, &ref), 0);
    ck_assert_uint_eq(ref.shard, 1);
    /* Another endpoint from the same address replaces the first (one device per address). */
    ck_assert_uint_eq(req(1, b, LW_COAP_POST, "rd", "ep=other&lwm2m=1.1", OBJS, NULL),
                      LW_COAP_CREATED);
    ck_assert_uint_eq(regs_total(), 1);
    ck_assert_int_eq(dir_lookup("rr", 2, &ref), LW_ENOENT);
}
END_TEST

START_TEST(migration_between_shards)
{
    char id[32], path[48];
    struct peer_addr a = addr(0x7f000006, 40005), b = addr(0x7f000007, 40006);
    ck_assert_uint_eq(req(0, a, LW_COAP_POST, "rd", "ep=mig&lt=100&lwm2m=1.1", OBJS, id),
                      LW_COAP_CREATED);
    snprintf(path, sizeof(path), "rd/%s", id);
    /* The device's address moved; the kernel steers it to shard 1. */
    ck_assert_uint_eq(req(1, b, LW_COAP_POST, path, "lt=200", "", NULL), LW_COAP_CHANGED);
    ck_assert_uint_eq(regsrv_reg_count(&H.rs[0]), 0);
    ck_assert_uint_eq(regsrv_reg_count(&H.rs[1]), 1);
    struct dir_ref ref;
    ck_assert_int_eq(dir_lookup("mig", 3, &ref), 0);
    ck_assert_uint_eq(ref.shard, 1);
    json_t *j = NULL;
    ck_assert_int_eq(regsrv_get_json(&H.rs[1], ref.id, ref.gen, &j), 0);
    ck_assert_str_eq(json_string_value(json_object_get(j, "address")), "127.0.0.7:40006");
    ck_assert_str_eq(json_string_value(json_object_get(j, "registration_id")), id);
    json_decref(j);
    /* Further Updates are served on shard 1 directly; expiry runs there. */
    ck_assert_uint_eq(req(1, b, LW_COAP_POST, path, "", "", NULL), LW_COAP_CHANGED);
    advance(206000);
    ck_assert_uint_eq(regs_total(), 0);
    ck_assert_uint_eq(H.nev[LW_EV_EXPIRED], 1);
    /* De-register forwarded to the holder. */
    ck_assert_uint_eq(req(0, a, LW_COAP_POST, "rd", "ep=mig2&lwm2m=1.1", OBJS, id),
                      LW_COAP_CREATED);
    snprintf(path, sizeof(path), "rd/%s", id);
    ck_assert_uint_eq(req(1, b, LW_COAP_DELETE, path, "", "", NULL), LW_COAP_DELETED);
    ck_assert_uint_eq(regs_total(), 0);
    ck_assert_uint_eq(req(1, b, LW_COAP_DELETE, path, "", "", NULL), LW_COAP_NOT_FOUND);
}
END_TEST

START_TEST(interning_and_profiles)
{
    ck_assert_uint_eq(
        req(0, addr(0x0a000001, 1), LW_COAP_POST, "rd", "ep=i1&lwm2m=1.1", "</3/0>,</1/0>", NULL),
        LW_COAP_CREATED);
    ck_assert_uint_eq(
        req(0, addr(0x0a000002, 1), LW_COAP_POST, "rd", "ep=i2&lwm2m=1.1", "</1/0>,</3/0>", NULL),
        LW_COAP_CREATED);
    ck_assert_uint_eq(reg_interned_count(), 1);
    /* Unknown profile without a list: 4.00 so the client registers with its full list. */
    ck_assert_uint_eq(
        req(0, addr(0x0a000003, 1), LW_COAP_POST, "rd", "ep=p1&lwm2m=1.2&pid=meterA", "", NULL),
        LW_COAP_BAD_REQUEST);
    ck_assert_uint_eq(req(0, addr(0x0a000003, 1), LW_COAP_POST, "rd", "ep=p1&lwm2m=1.2&pid=meterA",
                          "</1/0>,</3/0>,</5/0>", NULL),
                      LW_COAP_CREATED);
    ck_assert_uint_eq(reg_profile_count(), 1);
    char id[32];
    ck_assert_uint_eq(
        req(1, addr(0x0a000004, 2), LW_COAP_POST, "rd", "ep=p2&lwm2m=1.2&pid=meterA", "", id),
        LW_COAP_CREATED);
    ck_assert_uint_eq(reg_interned_count(), 2);
    /* Partial list: the profile's objects plus object 4. */
    ck_assert_uint_eq(req(1, addr(0x0a000005, 2), LW_COAP_POST, "rd", "ep=p3&lwm2m=1.2&pid=meterA",
                          "</4/0>", NULL),
                      LW_COAP_CREATED);
    ck_assert_uint_eq(reg_interned_count(), 3);
    struct dir_ref ref;
    json_t *j = NULL;
    ck_assert_int_eq(dir_lookup("p2", 2, &ref), 0);
    ck_assert_int_eq(regsrv_get_json(&H.rs[1], ref.id, ref.gen, &j), 0);
    ck_assert_uint_eq(json_array_size(json_object_get(j, "objects")), 3);
    ck_assert_str_eq(json_string_value(json_object_get(j, "profile_id")), "meterA");
    json_decref(j);
}
END_TEST

START_TEST(list_sorted_paged)
{
    const char *names[] = {"m3", "a1", "z9", "m1", "b2"};
    for (unsigned i = 0; i < 5; i++) {
        char q[64];
        snprintf(q, sizeof(q), "ep=%s&lwm2m=1.1", names[i]);
        ck_assert_uint_eq(req(i % 2, addr(0x0b000000 + i, 5), LW_COAP_POST, "rd", q, OBJS, NULL),
                          LW_COAP_CREATED);
    }
    bool more = false;
    json_t *l = regsrv_list(&H.rs[0], NULL, "a1", 10, &more);
    ck_assert(!more);
    for (size_t i = 1; i < json_array_size(l); i++)
        ck_assert(strcmp(json_string_value(json_object_get(json_array_get(l, i - 1), "endpoint")),
                         json_string_value(json_object_get(json_array_get(l, i), "endpoint"))) < 0);
    json_decref(l);
    l = regsrv_list(&H.rs[0], NULL, NULL, 1, &more);
    ck_assert(more);
    ck_assert_uint_eq(json_array_size(l), 1);
    json_decref(l);
    /* Shard 0 holds m3, z9, b2: the first page of 2 is b2, m3. */
    l = regsrv_list(&H.rs[0], NULL, NULL, 2, &more);
    ck_assert(more);
    ck_assert_uint_eq(json_array_size(l), 2);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(l, 0), "endpoint")), "b2");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(l, 1), "endpoint")), "m3");
    json_decref(l);
    struct lw_dev_filter flt = {"z", NULL, NULL, -1};
    l = regsrv_list(&H.rs[0], &flt, NULL, 10, &more);
    ck_assert(!more);
    ck_assert_uint_eq(json_array_size(l), 1);
    json_decref(l);
}
END_TEST

/* 100 k endpoints over both shards; the directory and the shard tables agree through updates,
 * migrations, expiry and de-registration. */
START_TEST(hundred_thousand)
{
    enum { N = 100000 };
    static char ids[N][12];
    char q[64], path[48];
    for (unsigned i = 0; i < N; i++) {
        snprintf(q, sizeof(q), "ep=meter-%06u&lt=%u&lwm2m=1.1", i, i % 2 ? 600 : 1200);
        ck_assert_uint_eq(
            req(i % NSH, addr(0x0c000000 + i, 5683), LW_COAP_POST, "rd", q, OBJS, ids[i]),
            LW_COAP_CREATED);
    }
    ck_assert_uint_eq(dir_count(), N);
    ck_assert_uint_eq(regs_total(), N);
    ck_assert_uint_eq(reg_interned_count(), 1);
    /* Every fifth device updates from a new address owned by the other shard (migration). */
    for (unsigned i = 0; i < N; i += 5) {
        snprintf(path, sizeof(path), "rd/%.11s", ids[i]);
        ck_assert_uint_eq(
            req((i + 1) % NSH, addr(0x0d000000 + i, 5683), LW_COAP_POST, path, "", "", NULL),
            LW_COAP_CHANGED);
    }
    /* Every seventh de-registers. */
    unsigned dereg = 0;
    for (unsigned i = 3; i < N; i += 7, dereg++) {
        snprintf(path, sizeof(path), "rd/%.11s", ids[i]);
        ck_assert_uint_eq(
            req(i % NSH, addr(0x0c000000 + i, 5683), LW_COAP_DELETE, path, "", "", NULL),
            LW_COAP_DELETED);
    }
    ck_assert_uint_eq(dir_count(), N - dereg);
    ck_assert_uint_eq(regs_total(), N - dereg);
    /* The 600 s ones expire (odd i), the 1200 s ones stay. */
    advance(606000);
    size_t left = 0;
    for (unsigned i = 0; i < N; i++)
        if (i % 2 == 0 && (i < 3 || (i - 3) % 7 != 0))
            left++;
    ck_assert_uint_eq(regs_total(), left);
    ck_assert_uint_eq(dir_count(), left);
    for (unsigned i = 0; i < N; i += 997) {
        char ep[32];
        struct dir_ref ref;
        snprintf(ep, sizeof(ep), "meter-%06u", i);
        bool present = i % 2 == 0 && (i < 3 || (i - 3) % 7 != 0);
        ck_assert_int_eq(dir_lookup(ep, strlen(ep), &ref), present ? 0 : LW_ENOENT);
        if (present) {
            json_t *j = NULL;
            ck_assert_int_eq(regsrv_get_json(&H.rs[ref.shard], ref.id, ref.gen, &j), 0);
            json_decref(j);
        }
    }
    advance(606000);
    ck_assert_uint_eq(regs_total(), 0);
    ck_assert_uint_eq(dir_count(), 0);
}
END_TEST

/* registration.profiles_file: configured profiles resolve Registers that carry only a pid;
 * a broken file is refused with its name. */
START_TEST(configured_profiles)
{
    char path[] = "/tmp/lwprofXXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    const char *json = "{\"meterB\": \"</1/0>,</3/0>,</4/0>\"}";
    ck_assert_int_eq(write(fd, json, strlen(json)), (int)strlen(json));
    close(fd);
    struct lw_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.reg_profiles_file = path;
    char err[256];
    ck_assert_int_eq(reg_global_init(&cfg, err, sizeof(err)), 0);
    ck_assert_uint_eq(reg_profile_count(), 1);
    memset(&H, 0, sizeof(H));
    lw_clock_fake_init(&H.clock, 1000, 1790000000000);
    struct regsrv_cfg rc = {0};
    rc.clock = &H.clock;
    ck_assert_int_eq(regsrv_init(&H.rs[0], 0, &rc, &ops, NULL, 1000), 0);
    ck_assert_uint_eq(
        req(0, addr(0x0e000001, 1), LW_COAP_POST, "rd", "ep=cp&lwm2m=1.2&pid=meterB", "", NULL),
        LW_COAP_CREATED);
    regsrv_deinit(&H.rs[0]);
    reg_global_deinit();
    FILE *f = fopen(path, "w");
    fputs("{\"bad\": \"</1/0>,<3\"}", f);
    fclose(f);
    ck_assert_int_eq(reg_global_init(&cfg, err, sizeof(err)), LW_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err, path));
    unlink(path);
}
END_TEST

Suite *suite_registry(void);
Suite *suite_registry(void)
{
    Suite *s = suite_create("registry");
    TCase *tc = tcase_create("registration");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, register_update_deregister);
    tcase_add_test(tc, bad_registers);
    tcase_add_test(tc, expiry_with_grace);
    tcase_add_test(tc, reregister_replaces);
    tcase_add_test(tc, migration_between_shards);
    tcase_add_test(tc, interning_and_profiles);
    tcase_add_test(tc, list_sorted_paged);
    tcase_add_test(tc, hundred_thousand);
    suite_add_tcase(s, tc);
    TCase *tp = tcase_create("profiles");
    tcase_add_test(tp, configured_profiles);
    suite_add_tcase(s, tp);
    return s;
}
