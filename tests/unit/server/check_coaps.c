/* Unit tests of the CoAPS pieces that run without sockets: the credential store (server/creds.c),
 * the CID-aware steering rule (udp_steer_dtls), and the registration service's security binding
 * (regsrv_input_sec: Register of the bound endpoint only, ETS int-401 for Update/De-register,
 * NoSec refused for endpoints with credentials). */
#include "base/clock.h"
#include "base/err.h"
#include "base/util.h"
#include "coap/coap.h"
#include "creds.h"
#include "dir.h"
#include "registry.h"
#include "udp.h"

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

/* ---- credential store ---- */

START_TEST(creds_store)
{
    uint8_t key[64], pin[32];
    char ep[CREDS_EP_MAX + 1];
    struct creds_spec sp = {.mode = CREDS_PSK,
                            .id = (const uint8_t *)"id-1",
                            .id_len = 4,
                            .key = (const uint8_t *)"0123456789",
                            .key_len = 10};
    ck_assert_int_eq(creds_init(), 0);
    ck_assert_int_eq(creds_put("dev-1", &sp, 100), 0);
    ck_assert_uint_eq(creds_psk_key((const uint8_t *)"id-1", 4, key, sizeof(key)), 10);
    ck_assert_mem_eq(key, "0123456789", 10);
    ck_assert_uint_eq(creds_psk_key((const uint8_t *)"id-2", 4, key, sizeof(key)), 0);
    ck_assert_uint_eq(creds_psk_key((const uint8_t *)"id-1", 4, key, 4), 0); /* no room */
    ck_assert_int_eq(
        creds_bind(CREDS_PSK, (const uint8_t *)"id-1", 4, NULL, 0, false, ep, sizeof(ep)), 0);
    ck_assert_str_eq(ep, "dev-1");
    ck_assert(creds_ep_secured("dev-1", 5));
    ck_assert(!creds_ep_secured("dev-2", 5));
    /* the identity belongs to dev-1 */
    ck_assert_int_eq(creds_put("dev-2", &sp, 100), LW_EEXIST);
    /* short key */
    sp.key_len = 4;
    ck_assert_int_eq(creds_put("dev-2", &sp, 100), LW_EINVAL);
    /* replacing dev-1's identity frees the old one */
    sp.key_len = 10;
    sp.id = (const uint8_t *)"id-9";
    ck_assert_int_eq(creds_put("dev-1", &sp, 100), 0);
    ck_assert_uint_eq(creds_psk_key((const uint8_t *)"id-1", 4, key, sizeof(key)), 0);
    ck_assert_uint_eq(creds_count(), 1);
    /* metadata never carries the key */
    json_t *j = creds_info("dev-1");
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(json_string_value(json_object_get(j, "psk_identity")), "id-9");
    char *s = json_dumps(j, 0);
    ck_assert_ptr_null(strstr(s, "0123456789"));
    free(s);
    json_decref(j);
    /* X.509: a pinned name, and a trust-store name without an entry */
    memset(pin, 0x5a, sizeof(pin));
    struct creds_spec xs = {.mode = CREDS_X509, .has_pin = true};
    memcpy(xs.pin, pin, sizeof(pin));
    ck_assert_int_eq(creds_put("cam-1", &xs, 100), 0); /* name defaults to the endpoint */
    ck_assert_int_eq(creds_bind(CREDS_X509, (const uint8_t *)"cam-1", 5, (const uint8_t *)"der", 3,
                                true, ep, sizeof(ep)),
                     LW_EPERM); /* pin mismatch even though the chain verified */
    ck_assert_int_eq(creds_bind(CREDS_X509, (const uint8_t *)"free-cn", 7, (const uint8_t *)"der",
                                3, true, ep, sizeof(ep)),
                     0);
    ck_assert_str_eq(ep, "free-cn");
    ck_assert_int_eq(creds_bind(CREDS_X509, (const uint8_t *)"free-cn", 7, (const uint8_t *)"der",
                                3, false, ep, sizeof(ep)),
                     LW_ENOENT);
    ck_assert_int_eq(creds_bind(CREDS_X509, (const uint8_t *)"bad cn", 6, (const uint8_t *)"der", 3,
                                true, ep, sizeof(ep)),
                     LW_ENOENT);
    ck_assert_int_eq(creds_del("cam-1"), 0);
    ck_assert_int_eq(creds_del("cam-1"), LW_ENOENT);
    ck_assert_int_eq(creds_del("dev-1"), 0);
    ck_assert_uint_eq(creds_count(), 0);
    creds_deinit();
}
END_TEST

/* A P-256 SubjectPublicKeyInfo made with `openssl ec -pubout -outform DER`, and its SHA-256. */
static const char spki_hex[] =
    "3059301306072a8648ce3d020106082a8648ce3d030107034200048cd448a1eac3f411af80e6a158b9b694b82dcb99"
    "58706767e9a65eb20e51c92c56c4e35d440ec83b80726b1b07318a2dc4a1055323b3186fe216ae6fdadc60d5";
static const char spki_sha_hex[] =
    "c508961c1748f62fb922b0650a972e95f51c73488b957cfb52ada8c6310d8d6e";

START_TEST(creds_rpk)
{
    uint8_t der[91], h[32], want[32];
    char ep[CREDS_EP_MAX + 1];
    ck_assert_int_eq(lw_hex_decode(der, sizeof(der), spki_hex, strlen(spki_hex)), 91);
    ck_assert_int_eq(lw_hex_decode(want, sizeof(want), spki_sha_hex, 64), 32);
    ck_assert_int_eq(creds_spki_hash(der, sizeof(der), h), 0);
    ck_assert_mem_eq(h, want, 32);
    ck_assert_int_eq(creds_spki_hash(der, sizeof(der) - 1, h), LW_EINVAL); /* truncated */
    ck_assert_int_eq(creds_spki_hash(der, 0, h), LW_EINVAL);
    uint8_t bad[91];
    memcpy(bad, der, sizeof(bad));
    bad[90] ^= 1; /* no longer a point on the curve */
    ck_assert_int_eq(creds_spki_hash(bad, sizeof(bad), h), LW_EINVAL);
    uint8_t longer[92];
    memcpy(longer, der, sizeof(der));
    longer[91] = 0;
    ck_assert_int_eq(creds_spki_hash(longer, sizeof(longer), h), LW_EINVAL); /* trailing byte */

    struct creds_spec sp = {.mode = CREDS_RPK, .has_pin = true};
    memcpy(sp.pin, want, 32);
    ck_assert_int_eq(creds_init(), 0);
    ck_assert_int_eq(creds_put("rpk-1", &sp, 100), 0);
    ck_assert_int_eq(creds_put("rpk-2", &sp, 100), LW_EEXIST); /* one key, one endpoint */
    ck_assert_int_eq(creds_bind(CREDS_RPK, want, 32, NULL, 0, false, ep, sizeof(ep)), 0);
    ck_assert_str_eq(ep, "rpk-1");
    ck_assert_int_eq(creds_bind(CREDS_RPK, bad + 59, 32, NULL, 0, false, ep, sizeof(ep)),
                     LW_ENOENT);
    /* the same bytes as an X.509 name or a PSK identity name nothing */
    ck_assert_int_eq(creds_bind(CREDS_PSK, want, 32, NULL, 0, false, ep, sizeof(ep)), LW_ENOENT);
    json_t *j = creds_info("rpk-1");
    ck_assert_str_eq(json_string_value(json_object_get(j, "mode")), "rpk");
    ck_assert_str_eq(json_string_value(json_object_get(j, "spki_sha256")), spki_sha_hex);
    json_decref(j);
    sp.has_pin = false;
    ck_assert_int_eq(creds_put("rpk-3", &sp, 100), LW_EINVAL); /* rpk needs the hash */
    ck_assert_int_eq(creds_del("rpk-1"), 0);
    ck_assert_int_eq(creds_bind(CREDS_RPK, want, 32, NULL, 0, false, ep, sizeof(ep)), LW_ENOENT);
    creds_deinit();
}
END_TEST

/* ---- steering ---- */

START_TEST(steer_by_cid)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(40001)};
    a.sin_addr.s_addr = htonl(0x7f000001);
    const struct sockaddr *sa = (const struct sockaddr *)&a;
    uint8_t r12[32] = {25, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 7, /* CID: */ 2, 0, 1, 2, 3, 4};
    uint8_t r13[16] = {0x3c, /* CID: */ 1, 0, 9, 9, 9, 9, 0, 1, 0, 4};
    uint8_t plain[16] = {22, 0xfe, 0xfd};
    for (unsigned n = 1; n <= 4; n++) {
        unsigned h = udp_steer(sa, n);
        ck_assert_uint_eq(udp_steer_dtls(r12, sizeof(r12), sa, n), n > 2 ? 2 : h);
        ck_assert_uint_eq(udp_steer_dtls(r13, sizeof(r13), sa, n), n > 1 ? 1 : h);
        ck_assert_uint_eq(udp_steer_dtls(plain, sizeof(plain), sa, n), h);
        ck_assert_uint_eq(udp_steer_dtls(r12, 12, sa, n), h); /* too short for its CID */
    }
}
END_TEST

/* ---- security binding in the registration service ---- */

static struct regsrv rs;
static struct lw_clock clk;
static uint64_t now = 1000000;
static uint8_t out[2048];
static size_t outlen;

static void h_send(void *ctx, const struct peer_addr *to, const uint8_t *d, size_t n)
{
    (void)ctx;
    (void)to;
    if (n <= sizeof(out)) {
        memcpy(out, d, n);
        outlen = n;
    }
}

static void h_event(void *ctx, struct lw_event *ev)
{
    (void)ctx;
    lw_event_free(ev);
}

static bool h_secured(void *ctx, const char *ep, size_t len)
{
    (void)ctx;
    return len == 6 && memcmp(ep, "secure", 6) == 0;
}

static const struct regsrv_ops ops = {.send = h_send, .event = h_event, .ep_secured = h_secured};

static void setup(void)
{
    char err[256];
    ck_assert_int_eq(reg_global_init(NULL, err, sizeof(err)), 0);
    lw_clock_fake_init(&clk, now, 1790000000000);
    struct regsrv_cfg cfg = {0};
    cfg.clock = &clk;
    cfg.nshards = 1;
    ck_assert_int_eq(regsrv_init(&rs, 0, &cfg, &ops, NULL, now), 0);
}

static void teardown(void)
{
    regsrv_deinit(&rs);
    reg_global_deinit();
}

/* One CON request from port `port` with security sec (NULL: NoSec); returns the response code
 * and the registration id of a 2.01 in loc. */
static uint8_t req(uint16_t port, const struct regsrv_sec *sec, uint8_t code, const char *path,
                   const char *query, char *loc)
{
    static uint16_t mid = 1;
    struct lw_coap_msg m, r;
    uint8_t buf[512];
    struct lw_buf b;
    char p[64], q[128];
    struct peer_addr a = {.family = 4, .port = port, .sock = sec ? 1 : 0};
    a.ip[0] = 127;
    a.ip[3] = 1;
    lw_coap_msg_init(&m, LW_COAP_CON, code);
    m.mid = mid++;
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
    outlen = 0;
    regsrv_input_sec(&rs, &a, sec, buf, b.len, now);
    ck_assert_uint_gt(outlen, 0);
    ck_assert_int_eq(lw_coap_parse(&r, out, outlen, NULL, NULL), 0);
    if (loc && r.code == LW_COAP_CREATED) {
        size_t pos = 0;
        const struct lw_coap_opt *o;
        while ((o = lw_coap_next_opt(&r, LW_COAP_OPT_LOCATION_PATH, &pos)))
            snprintf(loc, 32, "%.*s", (int)o->len, (const char *)lw_coap_opt_data(o));
    }
    return r.code;
}

START_TEST(binding_int401)
{
    struct regsrv_sec a = {RS_SEC_PSK, 5, "dev-a"}, b = {RS_SEC_X509, 5, "dev-b"};
    char ida[32], idn[32], path[48];
    ck_assert_uint_eq(req(1000, &a, LW_COAP_POST, "rd", "ep=dev-b", NULL), LW_COAP_FORBIDDEN);
    ck_assert_uint_eq(req(1000, &a, LW_COAP_POST, "rd", "ep=dev-a&lt=60", ida), LW_COAP_CREATED);
    ck_assert_uint_eq(req(1001, NULL, LW_COAP_POST, "rd", "ep=secure", NULL), LW_COAP_FORBIDDEN);
    ck_assert_uint_eq(req(1001, NULL, LW_COAP_POST, "rd", "ep=plain&lt=60", idn), LW_COAP_CREATED);
    snprintf(path, sizeof(path), "rd/%s", ida);
    ck_assert_uint_eq(req(1002, &b, LW_COAP_POST, path, NULL, NULL), LW_COAP_FORBIDDEN);
    ck_assert_uint_eq(req(1002, &b, LW_COAP_DELETE, path, NULL, NULL), LW_COAP_FORBIDDEN);
    ck_assert_uint_eq(req(1003, NULL, LW_COAP_POST, path, NULL, NULL), LW_COAP_FORBIDDEN);
    ck_assert_uint_eq(req(1004, &a, LW_COAP_POST, path, NULL, NULL), LW_COAP_CHANGED);
    snprintf(path, sizeof(path), "rd/%s", idn);
    ck_assert_uint_eq(req(1002, &b, LW_COAP_POST, path, NULL, NULL), LW_COAP_FORBIDDEN);
    ck_assert_uint_eq(req(1001, NULL, LW_COAP_POST, path, NULL, NULL), LW_COAP_CHANGED);
    struct dir_ref ref;
    json_t *j = NULL;
    ck_assert_int_eq(dir_lookup("dev-a", 5, &ref), 0);
    ck_assert_int_eq(regsrv_get_json(&rs, ref.id, ref.gen, &j), 0);
    ck_assert_str_eq(json_string_value(json_object_get(j, "security_mode")), "psk");
    json_decref(j);
    snprintf(path, sizeof(path), "rd/%s", ida);
    ck_assert_uint_eq(req(1004, &a, LW_COAP_DELETE, path, NULL, NULL), LW_COAP_DELETED);
    ck_assert_uint_eq(atomic_load(&rs.stats.results[RS_FORBIDDEN]), 6);
}
END_TEST

Suite *suite_coaps(void);
Suite *suite_coaps(void)
{
    Suite *s = suite_create("coaps");
    TCase *tc = tcase_create("creds_steer");
    tcase_add_test(tc, creds_store);
    tcase_add_test(tc, creds_rpk);
    tcase_add_test(tc, steer_by_cid);
    suite_add_tcase(s, tc);
    tc = tcase_create("binding");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, binding_int401);
    suite_add_tcase(s, tc);
    return s;
}
