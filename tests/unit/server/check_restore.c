/* Unit tests of the restore of saved registrations (regsrv_restore, server/registry.c) on a fake
 * clock: a restored registration answers Updates under its old id (from its old address, a new
 * one, and through another shard), expires on time, shows its object list; one held by another
 * shard than its issuer answers there and through the issuer; expired, duplicate and malformed
 * records are refused; new Registers after the restore get free slots. */
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

#define NSH 2

static struct {
    struct regsrv rs[NSH];
    struct lw_clock clock;
    uint64_t now;
    uint8_t out[2048];
    size_t outlen;
    unsigned nev[LW_EV__COUNT];
    struct regsrv_fwd *fq[64];
    unsigned fq_to[64];
    unsigned fq_n;
} H;
static uint16_t next_mid = 1;

static void h_send(void *ctx, const struct peer_addr *to, const uint8_t *d, size_t n)
{
    (void)ctx;
    (void)to;
    if (n <= sizeof(H.out)) {
        memcpy(H.out, d, n);
        H.outlen = n;
    }
}

static void h_post_fwd(void *ctx, unsigned shard, struct regsrv_fwd *f)
{
    (void)ctx;
    ck_assert_uint_lt(H.fq_n, 64);
    H.fq[H.fq_n] = f;
    H.fq_to[H.fq_n++] = shard;
}

static void h_event(void *ctx, struct lw_event *ev)
{
    (void)ctx;
    H.nev[ev->type]++;
    lw_event_free(ev);
}

static const struct regsrv_ops ops = {.send = h_send, .post_fwd = h_post_fwd, .event = h_event};

static void pump(void)
{
    for (unsigned i = 0; i < H.fq_n; i++)
        regsrv_fwd_run(&H.rs[H.fq_to[i]], H.fq[i], H.now);
    H.fq_n = 0;
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

/* A CON request to shard s from a; returns the response code (0: none). */
static uint8_t req(unsigned s, struct peer_addr a, uint8_t code, const char *path,
                   const char *query, const char *payload, char *loc)
{
    struct lw_coap_msg m;
    char qbuf[256], pbuf[64];
    uint8_t buf[1024];
    struct lw_buf b;
    lw_coap_msg_init(&m, LW_COAP_CON, code);
    m.mid = next_mid++;
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
    H.outlen = 0;
    regsrv_input(&H.rs[s], &a, buf, b.len, H.now);
    pump();
    if (!H.outlen)
        return 0;
    struct lw_coap_msg r;
    ck_assert_int_eq(lw_coap_parse(&r, H.out, H.outlen, NULL, NULL), 0);
    if (loc) {
        size_t pos = 0;
        const struct lw_coap_opt *o;
        int i = 0;
        loc[0] = '\0';
        while ((o = lw_coap_next_opt(&r, LW_COAP_OPT_LOCATION_PATH, &pos)))
            if (i++ == 1)
                snprintf(loc, 32, "%.*s", (int)o->len, (const char *)lw_coap_opt_data(o));
    }
    return r.code;
}

static const char LINKS[] = "</1>;ver=1.1,</1/0>,</3>;ver=1.0,</3/0>,</3303>;ver=1.0,</3303/0>,"
                            "</3303/1>";

static struct regsrv_saved saved(unsigned shard, uint32_t slot, const char *ep, int64_t left_ms)
{
    struct regsrv_saved sv;
    memset(&sv, 0, sizeof(sv));
    sv.id = (uint64_t)shard << 56 | (uint64_t)slot << 32 | 0x1234u;
    sv.ep = ep;
    sv.addr = addr(0x0a000001, 40000 + (uint16_t)slot);
    sv.ver = 0x11;
    strcpy(sv.binding, "U");
    sv.lifetime_s = 300;
    sv.registered_s = 1789990000;
    sv.updated_s = 1789999000;
    sv.expires_ms = lw_clock_wall(&H.clock) + left_ms;
    sv.links = (const uint8_t *)LINKS;
    sv.links_len = strlen(LINKS);
    return sv;
}

START_TEST(restored_answers_updates)
{
    struct regsrv_saved sv = saved(0, 7, "rest-1", 200000);
    ck_assert_int_eq(regsrv_restore(&H.rs[0], &sv, H.now), 0);
    regsrv_restore_done(&H.rs[0]);
    regsrv_restore_done(&H.rs[1]);
    ck_assert_uint_eq(regsrv_reg_count(&H.rs[0]), 1);
    ck_assert_uint_eq(H.nev[LW_EV_REGISTERED], 0); /* nothing to announce or write again */
    struct dir_ref ref;
    ck_assert_int_eq(dir_lookup("rest-1", 6, &ref), 0);
    ck_assert_uint_eq(ref.id, sv.id);
    json_t *j = NULL;
    ck_assert_int_eq(regsrv_get_json(&H.rs[0], ref.id, ref.gen, &j), 0);
    ck_assert_str_eq(json_string_value(json_object_get(j, "address")), "10.0.0.1:40007");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "lifetime_s")), 300);
    ck_assert_str_eq(json_string_value(json_object_get(j, "lwm2m_version")), "1.1");
    json_t *objs = json_object_get(j, "objects");
    ck_assert_uint_eq(json_array_size(objs), 3);
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(objs, 2), "id")), 3303);
    ck_assert_uint_eq(json_array_size(json_object_get(json_array_get(objs, 2), "instances")), 2);
    json_decref(j);

    char id[12], path[32];
    regsrv_id_format(sv.id, id);
    snprintf(path, sizeof(path), "rd/%s", id);
    ck_assert_uint_eq(req(0, sv.addr, LW_COAP_POST, path, "", "", NULL), LW_COAP_CHANGED);
    ck_assert_uint_eq(req(0, addr(0x0a000002, 1234), LW_COAP_POST, path, "", "", NULL),
                      LW_COAP_CHANGED); /* NAT rebinding */
    ck_assert_uint_eq(req(1, addr(0x0a000003, 1234), LW_COAP_POST, path, "lt=600", "", NULL),
                      LW_COAP_CHANGED); /* through the other shard: migrates */
    ck_assert_uint_eq(H.nev[LW_EV_UPDATED], 3);

    /* New Registers get free slots on both shards, not the restored one. */
    char nid[32];
    for (unsigned k = 0; k < 20; k++) {
        char q[64];
        snprintf(q, sizeof(q), "ep=new-%u&lt=60", k);
        ck_assert_uint_eq(
            req(k % 2, addr(0x0b000000 + k, 5683), LW_COAP_POST, "rd", q, "</3/0>", nid),
            LW_COAP_CREATED);
        ck_assert_str_ne(nid, id);
    }
    ck_assert_uint_eq(req(1, addr(0x0a000003, 1234), LW_COAP_DELETE, path, "", "", NULL),
                      LW_COAP_DELETED);
}
END_TEST

START_TEST(restored_expires)
{
    struct regsrv_saved sv = saved(1, 3, "rest-exp", 10000);
    ck_assert_int_eq(regsrv_restore(&H.rs[1], &sv, H.now), 0);
    regsrv_restore_done(&H.rs[1]);
    H.now += 10000 + 5000 + 1;
    lw_clock_fake_advance(&H.clock, 15001);
    regsrv_advance(&H.rs[1], H.now);
    pump();
    ck_assert_uint_eq(regsrv_reg_count(&H.rs[1]), 0);
    ck_assert_uint_eq(H.nev[LW_EV_EXPIRED], 1);
}
END_TEST

START_TEST(refused_records)
{
    struct regsrv_saved sv = saved(0, 1, "rest-a", -1);
    ck_assert_int_eq(regsrv_restore(&H.rs[0], &sv, H.now), LW_ETIMEDOUT);
    sv = saved(0, 1, "rest-a", 60000);
    ck_assert_int_eq(regsrv_restore(&H.rs[0], &sv, H.now), 0);
    ck_assert_int_eq(regsrv_restore(&H.rs[0], &sv, H.now), LW_EEXIST); /* same endpoint */
    sv = saved(0, 1, "rest-b", 60000);
    ck_assert_int_eq(regsrv_restore(&H.rs[0], &sv, H.now), LW_EEXIST); /* same slot */
    sv = saved(0, 2, "rest-c", 60000);
    sv.links = (const uint8_t *)"</3/0";
    sv.links_len = 5;
    ck_assert_int_eq(regsrv_restore(&H.rs[0], &sv, H.now), LW_EINVAL);
    sv = saved(0, 2, "", 60000);
    ck_assert_int_eq(regsrv_restore(&H.rs[0], &sv, H.now), LW_EINVAL);
    sv = saved(0, 3, "rest-d", 60000);
    sv.links_len = 0;
    sv.sms = "+123456";
    sv.pid = "meter";
    ck_assert_int_eq(regsrv_restore(&H.rs[0], &sv, H.now), 0);
    regsrv_restore_done(&H.rs[0]);
    ck_assert_uint_eq(regsrv_reg_count(&H.rs[0]), 2);
    struct dir_ref ref;
    json_t *j = NULL;
    ck_assert_int_eq(dir_lookup("rest-d", 6, &ref), 0);
    ck_assert_int_eq(regsrv_get_json(&H.rs[0], ref.id, ref.gen, &j), 0);
    ck_assert_str_eq(json_string_value(json_object_get(j, "sms")), "+123456");
    ck_assert_str_eq(json_string_value(json_object_get(j, "profile_id")), "meter");
    json_decref(j);
}
END_TEST

/* Two saved registrations with one address: the newer wins, in either order. */
/* A registration held by another shard than its issuer (its device had moved to an address of
 * that shard before the restart), and one whose issuer this run does not have (fewer shards):
 * both answer Updates and Sends' lookups where their address arrives, and through the issuer. */
START_TEST(restored_on_another_shard)
{
    struct regsrv_saved sv = saved(1, 9, "rest-moved", 200000);
    ck_assert_int_eq(regsrv_restore(&H.rs[0], &sv, H.now), 0);
    ck_assert_int_eq(regsrv_restore(&H.rs[0], &sv, H.now), LW_EEXIST); /* same id */
    ck_assert_int_eq(regsrv_restore_moved(&H.rs[1], sv.id, 0), 0);
    ck_assert_int_eq(regsrv_restore_moved(&H.rs[1], sv.id, 0), LW_EEXIST);
    ck_assert_int_eq(regsrv_restore_moved(&H.rs[0], sv.id, 1), LW_EINVAL); /* not its issuer */
    struct regsrv_saved gone = saved(7, 3, "rest-gone-shard", 200000);
    gone.addr = addr(0x0a000009, 41000);
    ck_assert_int_eq(regsrv_restore(&H.rs[0], &gone, H.now), 0);
    regsrv_restore_done(&H.rs[0]);
    regsrv_restore_done(&H.rs[1]);
    ck_assert_uint_eq(regsrv_reg_count(&H.rs[0]), 2);
    ck_assert_uint_eq(regsrv_reg_count(&H.rs[1]), 0);
    struct dir_ref ref;
    ck_assert_int_eq(dir_lookup("rest-moved", 10, &ref), 0);
    ck_assert_uint_eq(ref.shard, 0);
    ck_assert_uint_eq(ref.id, sv.id);
    json_t *j = NULL;
    ck_assert_int_eq(regsrv_get_json(&H.rs[0], ref.id, ref.gen, &j), 0);
    json_decref(j);

    char id[12], path[32];
    regsrv_id_format(sv.id, id);
    snprintf(path, sizeof(path), "rd/%s", id);
    ck_assert_uint_eq(req(0, sv.addr, LW_COAP_POST, path, "", "", NULL), LW_COAP_CHANGED);
    /* at the issuer from another address: its slot sends the request on to shard 0 */
    ck_assert_uint_eq(req(1, addr(0x0a000004, 1234), LW_COAP_POST, path, "", "", NULL),
                      LW_COAP_CHANGED);
    regsrv_id_format(gone.id, id);
    snprintf(path, sizeof(path), "rd/%s", id);
    ck_assert_uint_eq(req(0, gone.addr, LW_COAP_POST, path, "lt=600", "", NULL), LW_COAP_CHANGED);
    ck_assert_uint_eq(req(0, gone.addr, LW_COAP_DELETE, path, "", "", NULL), LW_COAP_DELETED);
    ck_assert_int_ne(dir_lookup("rest-gone-shard", 15, &ref), 0);
    /* a new Register on shard 1 does not reuse the slot marked as moved */
    char nid[32];
    for (unsigned k = 0; k < 12; k++) {
        char q[64];
        snprintf(q, sizeof(q), "ep=new-%u&lt=60", k);
        ck_assert_uint_eq(req(1, addr(0x0c000000 + k, 5683), LW_COAP_POST, "rd", q, "</3/0>", nid),
                          LW_COAP_CREATED);
        uint64_t nv;
        ck_assert_int_eq(regsrv_id_parse(nid, strlen(nid), &nv), 0);
        ck_assert_uint_ne((nv >> 32) & 0xffffff, 9);
    }
}
END_TEST

START_TEST(same_address_newer_wins)
{
    struct regsrv_saved a1 = saved(0, 1, "addr-old", 60000);
    struct regsrv_saved a2 = saved(0, 2, "addr-new", 60000);
    a2.addr = a1.addr;
    a2.updated_s = a1.updated_s + 10;
    ck_assert_int_eq(regsrv_restore(&H.rs[0], &a1, H.now), 0);
    ck_assert_int_eq(regsrv_restore(&H.rs[0], &a2, H.now), 0); /* replaces addr-old */
    struct dir_ref ref;
    ck_assert_int_eq(dir_lookup("addr-old", 8, &ref), LW_ENOENT);
    ck_assert_int_eq(dir_lookup("addr-new", 8, &ref), 0);
    struct regsrv_saved b1 = saved(1, 1, "addr-old1", 60000);
    struct regsrv_saved b2 = saved(1, 2, "addr-new1", 60000);
    b2.addr = b1.addr;
    b2.updated_s = b1.updated_s + 10;
    ck_assert_int_eq(regsrv_restore(&H.rs[1], &b2, H.now), 0);
    ck_assert_int_eq(regsrv_restore(&H.rs[1], &b1, H.now), LW_EEXIST); /* older: skipped */
    ck_assert_int_eq(dir_lookup("addr-old1", 9, &ref), LW_ENOENT);
    regsrv_restore_done(&H.rs[0]);
    regsrv_restore_done(&H.rs[1]);
    ck_assert_uint_eq(regsrv_reg_count(&H.rs[0]) + regsrv_reg_count(&H.rs[1]), 2);
    char id[12], path[32];
    regsrv_id_format(a2.id, id);
    snprintf(path, sizeof(path), "rd/%s", id);
    ck_assert_uint_eq(req(0, a2.addr, LW_COAP_POST, path, "", "", NULL), LW_COAP_CHANGED);
}
END_TEST

/* A large restore as the daemon does it: directory reserved, thousands of rows sharing one saved
 * object list (more than one block of cached references), a few with another, a duplicate
 * endpoint under another slot refused without a change. Everything restored is found, and once
 * it all expired no interned list is left (the restore cache gave back every reference). */
START_TEST(many_rows_share_lists)
{
    static const char other[] = "</3/0>,</5/0>";
    enum { N0 = 2500, N1 = 300 };
    char ep[32];
    dir_reserve(N0 + N1);
    for (unsigned i = 0; i < N0 + N1; i++) {
        unsigned sh = i < N0 ? 0 : 1;
        snprintf(ep, sizeof(ep), "many-%05u", i);
        struct regsrv_saved sv = saved(sh, 10 + i, ep, 60000);
        sv.addr = addr(0x0c000000 + i, 5683);
        if (i % 100 == 7) {
            sv.links = (const uint8_t *)other;
            sv.links_len = strlen(other);
        }
        ck_assert_int_eq(regsrv_restore(&H.rs[sh], &sv, H.now), 0);
    }
    struct regsrv_saved dup = saved(0, 9000, "many-00042", 60000);
    dup.addr = addr(0x0d000001, 5683);
    ck_assert_int_eq(regsrv_restore(&H.rs[0], &dup, H.now), LW_EEXIST);
    regsrv_restore_done(&H.rs[0]);
    regsrv_restore_done(&H.rs[1]);
    ck_assert_uint_eq(regsrv_reg_count(&H.rs[0]), N0);
    ck_assert_uint_eq(regsrv_reg_count(&H.rs[1]), N1);
    ck_assert_uint_eq(dir_count(), N0 + N1);
    ck_assert_uint_eq(reg_interned_count(), 2);
    for (unsigned i = 0; i < N0 + N1; i++) {
        struct dir_ref ref;
        snprintf(ep, sizeof(ep), "many-%05u", i);
        ck_assert_int_eq(dir_lookup(ep, strlen(ep), &ref), 0);
        ck_assert_uint_eq(ref.id,
                          (uint64_t)(i < N0 ? 0 : 1) << 56 | (uint64_t)(10 + i) << 32 | 0x1234u);
    }
    json_t *j = NULL;
    struct dir_ref ref;
    ck_assert_int_eq(dir_lookup("many-00107", 10, &ref), 0);
    ck_assert_int_eq(regsrv_get_json(&H.rs[0], ref.id, ref.gen, &j), 0);
    ck_assert_uint_eq(json_array_size(json_object_get(j, "objects")), 2);
    json_decref(j);
    ck_assert_int_eq(dir_lookup("many-00108", 10, &ref), 0);
    ck_assert_int_eq(regsrv_get_json(&H.rs[0], ref.id, ref.gen, &j), 0);
    ck_assert_uint_eq(json_array_size(json_object_get(j, "objects")), 3);
    json_decref(j);

    H.now += 60000 + 5000 + 1;
    lw_clock_fake_advance(&H.clock, 65001);
    regsrv_advance(&H.rs[0], H.now);
    regsrv_advance(&H.rs[1], H.now);
    pump();
    ck_assert_uint_eq(H.nev[LW_EV_EXPIRED], N0 + N1);
    ck_assert_uint_eq(dir_count(), 0);
    ck_assert_uint_eq(reg_interned_count(), 0);
}
END_TEST

Suite *suite_restore(void);
Suite *suite_restore(void)
{
    Suite *s = suite_create("restore");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, restored_answers_updates);
    tcase_add_test(tc, restored_expires);
    tcase_add_test(tc, refused_records);
    tcase_add_test(tc, restored_on_another_shard);
    tcase_add_test(tc, same_address_newer_wins);
    tcase_add_test(tc, many_rows_share_lists);
    suite_add_tcase(s, tc);
    return s;
}
