/* Unit tests for the CoAP codec: worked messages of protocol.md §1.7 and §3.3, round trips and
 * every rejection path of lw_coap_parse / lw_coap_check_opts. */
#include "coap/coap.h"
#include "base/err.h"
#include "base/util.h"
#include "../testutil.h"

#include <check.h>
#include <stdlib.h>

static struct lw_coap_msg pm;
static uint8_t *pm_data; /* pm's views point here until the next parse_hex */

static int parse_hex(const char *hex, struct lw_coap_perr *err)
{
    size_t n;
    free(pm_data);
    pm_data = lw_test_hex(hex, &n);
    return lw_coap_parse(&pm, pm_data, n, NULL, err);
}

/* Serializes m and compares with hex. */
static void ck_serializes_to(const struct lw_coap_msg *m, const char *hex)
{
    size_t n;
    uint8_t *want = lw_test_hex(hex, &n);
    uint8_t mem[2048];
    struct lw_buf b;
    lw_buf_init_fixed(&b, mem, sizeof(mem));
    ck_assert_int_eq(lw_coap_serialize(m, &b), 0);
    ck_assert_uint_eq(b.len, n);
    ck_assert_mem_eq(b.data, want, n);
    free(want);
}

static bool opt_is(const struct lw_coap_opt *o, uint16_t num, const char *s)
{
    return o->num == num && o->len == strlen(s) && memcmp(lw_coap_opt_data(o), s, o->len) == 0;
}

START_TEST(test_update_wakaama)
{
    /* protocol.md §1.7 (a) */
    ck_assert_int_eq(parse_hex("44 02 61 ED  ED 61 A0 45  B2 72 64  0A 64 66 5A 58 6C 65 72 48 "
                               "45 6C",
                               NULL),
                     0);
    ck_assert_uint_eq(pm.type, LW_COAP_CON);
    ck_assert_uint_eq(pm.code, LW_COAP_POST);
    ck_assert_uint_eq(pm.mid, 0x61ed);
    ck_assert_uint_eq(pm.tkl, 4);
    ck_assert_mem_eq(pm.token, "\xed\x61\xa0\x45", 4);
    ck_assert_uint_eq(pm.nopts, 2);
    ck_assert(opt_is(&pm.opts[0], LW_COAP_OPT_URI_PATH, "rd"));
    ck_assert(opt_is(&pm.opts[1], LW_COAP_OPT_URI_PATH, "dfZXlerHEl"));
    ck_assert_uint_eq(pm.payload.len, 0);
    ck_assert_int_eq(lw_coap_check_opts(&pm, NULL), 0);
    char path[64];
    ck_assert_int_eq(lw_coap_uri_path(&pm, path, sizeof(path)), 0);
    ck_assert_str_eq(path, "/rd/dfZXlerHEl");
    ck_assert_int_eq(lw_coap_uri_path(&pm, path, 8), LW_ENOSPC);

    ck_assert_int_eq(parse_hex("64 80 61 ED ED 61 A0 45 C0 FF 43 6C 69", NULL), 0);
    ck_assert_uint_eq(pm.type, LW_COAP_ACK);
    ck_assert_uint_eq(pm.code, LW_COAP_BAD_REQUEST);
    uint32_t cf = 99;
    ck_assert_int_eq(lw_coap_get_uint(&pm, LW_COAP_OPT_CONTENT_FORMAT, &cf), 0);
    ck_assert_uint_eq(cf, 0);
    ck_assert_uint_eq(pm.payload.len, 3);
    ck_assert_mem_eq(pm.payload.ptr, "Cli", 3);
}
END_TEST

static const char reg_payload[] = "</>;rt=\"oma.lwm2m\";ct=110,</1>;ver=1.1,</1/0>,</3/0>,</5/0>";
static const char reg_hex[] = "44 02 12 34 a1 b2 c3 d4 b2 72 64 11 28"
                              "39 65 70 3d 6e 6f 64 65 2d 31 06 6c 74 3d 33 30 30"
                              "09 6c 77 6d 32 6d 3d 31 2e 31 03 62 3d 55 ff";

START_TEST(test_register_build_and_parse)
{
    /* protocol.md §1.7 (b), built with options added out of order. */
    struct lw_coap_msg m;
    lw_coap_msg_init(&m, LW_COAP_CON, LW_COAP_POST);
    m.mid = 0x1234;
    m.tkl = 4;
    memcpy(m.token, "\xa1\xb2\xc3\xd4", 4);
    ck_assert_int_eq(lw_coap_add_str(&m, LW_COAP_OPT_URI_QUERY, "ep=node-1"), 0);
    ck_assert_int_eq(lw_coap_add_uint(&m, LW_COAP_OPT_CONTENT_FORMAT, 40), 0);
    ck_assert_int_eq(lw_coap_add_str(&m, LW_COAP_OPT_URI_QUERY, "lt=300"), 0);
    ck_assert_int_eq(lw_coap_add_uri_path(&m, "/rd"), 0);
    ck_assert_int_eq(lw_coap_add_str(&m, LW_COAP_OPT_URI_QUERY, "lwm2m=1.1"), 0);
    ck_assert_int_eq(lw_coap_add_str(&m, LW_COAP_OPT_URI_QUERY, "b=U"), 0);
    m.payload = LW_BYTES_LIT(reg_payload);
    size_t hn;
    uint8_t *hdr = lw_test_hex(reg_hex, &hn);
    uint8_t mem[512];
    struct lw_buf b;
    lw_buf_init_fixed(&b, mem, sizeof(mem));
    ck_assert_int_eq(lw_coap_serialize(&m, &b), 0);
    ck_assert_uint_eq(b.len, hn + sizeof(reg_payload) - 1);
    ck_assert_mem_eq(b.data, hdr, hn);
    ck_assert_mem_eq(b.data + hn, reg_payload, sizeof(reg_payload) - 1);

    struct lw_coap_msg p;
    ck_assert_int_eq(lw_coap_parse(&p, b.data, b.len, NULL, NULL), 0);
    ck_assert_int_eq(lw_coap_check_opts(&p, NULL), 0);
    ck_assert_uint_eq(p.nopts, 6);
    size_t pos = 0;
    const struct lw_coap_opt *o;
    const char *q[] = {"ep=node-1", "lt=300", "lwm2m=1.1", "b=U"};
    for (int i = 0; i < 4; i++) {
        o = lw_coap_next_opt(&p, LW_COAP_OPT_URI_QUERY, &pos);
        ck_assert_ptr_nonnull(o);
        ck_assert(opt_is(o, LW_COAP_OPT_URI_QUERY, q[i]));
    }
    ck_assert_ptr_null(lw_coap_next_opt(&p, LW_COAP_OPT_URI_QUERY, &pos));
    struct lw_bytes v;
    ck_assert_int_eq(lw_coap_get_bytes(&p, LW_COAP_OPT_URI_PATH, &v), 0);
    ck_assert(lw_bytes_eq_str(v, "rd"));
    ck_assert_int_eq(lw_coap_get_bytes(&p, LW_COAP_OPT_ETAG, &v), LW_ENOENT);
    ck_assert(lw_bytes_eq(p.payload, LW_BYTES_LIT(reg_payload)));
    /* Re-serializing the parsed view gives the same bytes (round trip). */
    uint8_t mem2[512];
    struct lw_buf b2;
    lw_buf_init_fixed(&b2, mem2, sizeof(mem2));
    ck_assert_int_eq(lw_coap_serialize(&p, &b2), 0);
    ck_assert_uint_eq(b2.len, b.len);
    ck_assert_mem_eq(b2.data, b.data, b.len);
    free(hdr);

    /* Register response 2.01 with Location-Path rd/5a3f. */
    struct lw_coap_msg r;
    lw_coap_msg_init(&r, LW_COAP_ACK, LW_COAP_CREATED);
    r.mid = 0x1234;
    r.tkl = 4;
    memcpy(r.token, "\xa1\xb2\xc3\xd4", 4);
    lw_coap_add_str(&r, LW_COAP_OPT_LOCATION_PATH, "rd");
    lw_coap_add_str(&r, LW_COAP_OPT_LOCATION_PATH, "5a3f");
    ck_serializes_to(&r, "64 41 12 34 a1 b2 c3 d4 82 72 64 04 35 61 33 66");
}
END_TEST

START_TEST(test_observe_messages)
{
    /* protocol.md §1.7 (c) */
    struct lw_coap_msg m;
    lw_coap_msg_init(&m, LW_COAP_CON, LW_COAP_GET);
    m.mid = 0x0101;
    m.tkl = 4;
    memcpy(m.token, "\x0b\xad\xca\xfe", 4);
    lw_coap_add_uint(&m, LW_COAP_OPT_ACCEPT, 0);
    lw_coap_add_uri_path(&m, "3/0/9");
    lw_coap_add_uint(&m, LW_COAP_OPT_OBSERVE, 0);
    ck_serializes_to(&m, "44 01 01 01 0b ad ca fe 60 51 33 01 30 01 39 60");

    ck_assert_int_eq(parse_hex("64 45 01 01 0b ad ca fe 61 0c 60 ff 39 35", NULL), 0);
    uint32_t obs;
    ck_assert_int_eq(lw_coap_get_uint(&pm, LW_COAP_OPT_OBSERVE, &obs), 0);
    ck_assert_uint_eq(obs, 12);
    ck_assert_uint_eq(pm.code, LW_COAP_CONTENT);
    ck_assert(lw_bytes_eq_str(pm.payload, "95"));

    ck_assert_int_eq(parse_hex("54 45 7a 00 0b ad ca fe 61 0d 60 ff 39 34", NULL), 0);
    ck_assert_uint_eq(pm.type, LW_COAP_NON);
    ck_assert_uint_eq(pm.mid, 0x7a00);
    ck_assert_int_eq(lw_coap_get_uint(&pm, LW_COAP_OPT_OBSERVE, &obs), 0);
    ck_assert_uint_eq(obs, 13);
}
END_TEST

START_TEST(test_firmware_block1)
{
    /* protocol.md §3.3 */
    static uint8_t fw[1024];
    for (size_t i = 0; i < sizeof(fw); i++)
        fw[i] = (uint8_t)i;
    struct lw_coap_msg m;
    lw_coap_msg_init(&m, LW_COAP_CON, LW_COAP_PUT);
    m.mid = 0x2000;
    m.tkl = 1;
    m.token[0] = 0x01;
    lw_coap_add_uri_path(&m, "/5/0/0");
    lw_coap_add_uint(&m, LW_COAP_OPT_SIZE1, 65536);
    struct lw_coap_block blk = {0, true, 6};
    ck_assert_int_eq(lw_coap_add_block(&m, LW_COAP_OPT_BLOCK1, &blk), 0);
    lw_coap_add_uint(&m, LW_COAP_OPT_CONTENT_FORMAT, 42);
    m.payload = LW_BYTES(fw, sizeof(fw));
    uint8_t mem[1200];
    struct lw_buf b;
    lw_buf_init_fixed(&b, mem, sizeof(mem));
    ck_assert_int_eq(lw_coap_serialize(&m, &b), 0);
    size_t hn;
    uint8_t *hdr =
        lw_test_hex("41 03 20 00 01 b1 35 01 30 01 30 11 2a d1 02 0e d3 14 01 00 00 ff", &hn);
    ck_assert_uint_eq(b.len, hn + 1024);
    ck_assert_mem_eq(b.data, hdr, hn);
    free(hdr);

    ck_assert_int_eq(parse_hex("61 5f 20 00 01 d1 0e 0e", NULL), 0);
    ck_assert_uint_eq(pm.code, LW_COAP_CONTINUE);
    struct lw_coap_block got;
    ck_assert_int_eq(lw_coap_get_block(&pm, LW_COAP_OPT_BLOCK1, &got), 0);
    ck_assert_uint_eq(got.num, 0);
    ck_assert(got.more);
    ck_assert_uint_eq(got.szx, 6);
    uint32_t v;
    struct lw_coap_block b63 = {63, false, 6};
    ck_assert_int_eq(lw_coap_block_encode(&b63, &v), 0);
    ck_assert_uint_eq(v, 0x03f6);
    struct lw_coap_block bad = {1u << 20, false, 6};
    ck_assert_int_eq(lw_coap_block_encode(&bad, &v), LW_ERANGE);
}
END_TEST

START_TEST(test_empty_and_ext_lengths)
{
    uint8_t e[4];
    lw_coap_encode_empty(e, LW_COAP_RST, 0xabcd);
    ck_assert_mem_eq(e, "\x70\x00\xab\xcd", 4);
    lw_coap_encode_empty(e, LW_COAP_CON, 0x0001);
    ck_assert_mem_eq(e, "\x40\x00\x00\x01", 4);
    ck_assert_int_eq(parse_hex("60 00 12 34", NULL), 0);
    ck_assert_uint_eq(pm.type, LW_COAP_ACK);
    ck_assert_uint_eq(pm.code, 0);

    /* Option numbers and lengths needing 1- and 2-byte extensions, round trip. */
    static uint8_t big[600];
    memset(big, 'x', sizeof(big));
    struct lw_coap_msg m;
    lw_coap_msg_init(&m, LW_COAP_NON, LW_COAP_CONTENT);
    m.mid = 7;
    lw_coap_add_opt(&m, 2000, "a", 1);                    /* delta 2000: 2-byte ext */
    lw_coap_add_opt(&m, LW_COAP_OPT_URI_PATH, big, 13);   /* length 13: 1-byte ext */
    lw_coap_add_opt(&m, LW_COAP_OPT_URI_QUERY, big, 268); /* length 268: 1-byte ext max */
    lw_coap_add_opt(&m, LW_COAP_OPT_PROXY_URI, big, 269); /* length 269: 2-byte ext */
    lw_coap_add_opt(&m, 65535, NULL, 0);                  /* largest number */
    lw_coap_add_opt(&m, LW_COAP_OPT_ETAG, "\xff\xff", 2); /* 0xff inside a value */
    uint8_t mem[2048];
    struct lw_buf b;
    lw_buf_init_fixed(&b, mem, sizeof(mem));
    ck_assert_int_eq(lw_coap_serialize(&m, &b), 0);
    struct lw_coap_msg p;
    ck_assert_int_eq(lw_coap_parse(&p, b.data, b.len, NULL, NULL), 0);
    ck_assert_uint_eq(p.nopts, 6);
    uint16_t nums[] = {4, 11, 15, 35, 2000, 65535};
    uint16_t lens[] = {2, 13, 268, 269, 1, 0};
    for (int i = 0; i < 6; i++) {
        ck_assert_uint_eq(p.opts[i].num, nums[i]);
        ck_assert_uint_eq(p.opts[i].len, lens[i]);
    }
    ck_assert_uint_eq(p.payload.len, 0);
    /* A fixed buffer too small: LW_ENOSPC, nothing committed. */
    lw_buf_init_fixed(&b, mem, 100);
    ck_assert_int_eq(lw_coap_serialize(&m, &b), LW_ENOSPC);
    ck_assert_uint_eq(b.len, 0);
}
END_TEST

START_TEST(test_uint_options)
{
    struct lw_coap_msg m;
    lw_coap_msg_init(&m, LW_COAP_CON, LW_COAP_GET);
    uint32_t vals[] = {0, 1, 255, 256, 65535, 65536, 0xffffff, 0x1000000, 0xffffffff};
    size_t lens[] = {0, 1, 1, 2, 2, 3, 3, 4, 4};
    for (size_t i = 0; i < LW_ARRAY_SIZE(vals); i++) {
        m.nopts = 0;
        lw_coap_add_uint(&m, LW_COAP_OPT_MAX_AGE, vals[i]);
        ck_assert_uint_eq(m.opts[0].len, lens[i]);
        uint32_t v = 1234;
        ck_assert_int_eq(lw_coap_get_uint(&m, LW_COAP_OPT_MAX_AGE, &v), 0);
        ck_assert_uint_eq(v, vals[i]);
    }
    /* Leading zeros accepted (§3.2), 5 significant bytes out of range. */
    uint32_t v;
    ck_assert_int_eq(lw_coap_decode_uint((const uint8_t *)"\x00\x00\x00\x00\x00\x01", 6, &v), 0);
    ck_assert_uint_eq(v, 1);
    ck_assert_int_eq(lw_coap_decode_uint((const uint8_t *)"\x01\x00\x00\x00\x00", 5, &v),
                     LW_ERANGE);
    ck_assert_int_eq(lw_coap_get_uint(&m, LW_COAP_OPT_ACCEPT, &v), LW_ENOENT);
    /* Deleting options. */
    lw_coap_add_uint(&m, LW_COAP_OPT_ACCEPT, 1);
    lw_coap_add_uint(&m, LW_COAP_OPT_MAX_AGE, 1);
    ck_assert_uint_eq(lw_coap_del_opt(&m, LW_COAP_OPT_MAX_AGE), 2);
    ck_assert_uint_eq(m.nopts, 1);
    ck_assert_uint_eq(m.opts[0].num, LW_COAP_OPT_ACCEPT);
    /* Option table limits. */
    for (int i = 0; i < LW_COAP_MAX_OPTS - 1; i++)
        ck_assert_int_eq(lw_coap_add_uint(&m, LW_COAP_OPT_URI_QUERY, 1), 0);
    ck_assert_int_eq(lw_coap_add_uint(&m, LW_COAP_OPT_URI_QUERY, 1), LW_ENOSPC);
    ck_assert_int_eq(lw_coap_add_opt(&m, LW_COAP_OPT_URI_QUERY, "", 0), LW_ENOSPC);
    ck_assert_int_eq(lw_coap_add_opt(&m, LW_COAP_OPT_URI_QUERY, "", 70000), LW_EINVAL);
    ck_assert_ptr_nonnull(lw_coap_opt_info(LW_COAP_OPT_BLOCK2));
    ck_assert_ptr_null(lw_coap_opt_info(13));
    /* Every registry entry is found under its own number, and nothing else is. */
    const uint16_t known[] = {1,  3,  4,  5,  6,  7,  8,  9,  11, 12,  14,
                              15, 17, 20, 23, 27, 28, 35, 39, 60, 252, 258};
    size_t found = 0;
    for (uint32_t n = 0; n <= 0xffff; n++) {
        const struct lw_coap_optinfo *oi = lw_coap_opt_info((uint16_t)n);
        if (!oi)
            continue;
        ck_assert_uint_eq(oi->num, n);
        ck_assert_uint_eq(known[found], n);
        found++;
    }
    ck_assert_uint_eq(found, LW_ARRAY_SIZE(known));
    ck_assert(lw_coap_opt_critical(LW_COAP_OPT_URI_PATH));
    ck_assert(!lw_coap_opt_critical(LW_COAP_OPT_ETAG));
    ck_assert(lw_coap_opt_unsafe(LW_COAP_OPT_OBSERVE));
    ck_assert(lw_coap_opt_nocachekey(LW_COAP_OPT_SIZE1));
    ck_assert(lw_coap_opt_nocachekey(LW_COAP_OPT_ECHO));
}
END_TEST

struct rej_case {
    const char *hex;
    uint8_t reason;
    uint8_t action;
    size_t offset;
};

START_TEST(test_parse_rejections)
{
    const struct rej_case cases[] = {
        {"", LW_COAP_R_SHORT, LW_COAP_A_DROP, 0},
        {"40 01 00", LW_COAP_R_SHORT, LW_COAP_A_DROP, 3},
        {"80 01 00 01", LW_COAP_R_VERSION, LW_COAP_A_DROP, 0}, /* version 2 */
        {"09 01 00 01", LW_COAP_R_VERSION, LW_COAP_A_DROP, 0}, /* version 0 */
        {"49 01 00 01 01 02 03 04 05 06 07 08 09", LW_COAP_R_TKL, LW_COAP_A_RST, 0},
        {"59 01 00 01", LW_COAP_R_TKL, LW_COAP_A_DROP, 0}, /* NON: drop */
        {"44 01 00 01 aa bb", LW_COAP_R_TRUNCATED, LW_COAP_A_RST, 6},
        {"40 00 00 01 ff", LW_COAP_R_EMPTY_NOT_EMPTY, LW_COAP_A_RST, 4},
        {"41 00 00 01 aa", LW_COAP_R_EMPTY_NOT_EMPTY, LW_COAP_A_RST, 4},
        {"61 00 00 01", LW_COAP_R_EMPTY_NOT_EMPTY, LW_COAP_A_DROP, 0}, /* empty ACK, TKL 1 */
        {"40 01 00 01 ff", LW_COAP_R_EMPTY_PAYLOAD, LW_COAP_A_RST, 4},
        {"50 45 00 01 b1 31 ff", LW_COAP_R_EMPTY_PAYLOAD, LW_COAP_A_DROP, 6},
        {"40 01 00 01 f1 00", LW_COAP_R_OPT_NIBBLE15, LW_COAP_A_RST, 4},
        {"40 01 00 01 1f", LW_COAP_R_OPT_NIBBLE15, LW_COAP_A_RST, 4},
        {"40 01 00 01 d0", LW_COAP_R_TRUNCATED, LW_COAP_A_RST, 4},        /* delta ext missing */
        {"40 01 00 01 e0 01", LW_COAP_R_TRUNCATED, LW_COAP_A_RST, 4},     /* 2-byte ext cut */
        {"40 01 00 01 1d", LW_COAP_R_TRUNCATED, LW_COAP_A_RST, 4},        /* len ext missing */
        {"40 01 00 01 13 61 62", LW_COAP_R_TRUNCATED, LW_COAP_A_RST, 4},  /* value cut */
        {"40 01 00 01 1e ff ff", LW_COAP_R_OPT_LENGTH, LW_COAP_A_RST, 4}, /* 65804 bytes */
        /* 65535 then another delta 1: number 65536 */
        {"40 01 00 01 e0 fe f2 10", LW_COAP_R_OPT_NUMBER, LW_COAP_A_RST, 7},
        {"60 45 00 01 f0", LW_COAP_R_OPT_NIBBLE15, LW_COAP_A_DROP, 4},
    };
    for (size_t i = 0; i < LW_ARRAY_SIZE(cases); i++) {
        struct lw_coap_perr err = {99, 0, 99, 99};
        ck_assert_msg(parse_hex(cases[i].hex, &err) == LW_EMALFORMED, "case %zu", i);
        ck_assert_msg(err.reason == cases[i].reason, "case %zu reason %u", i, err.reason);
        ck_assert_msg(err.action == cases[i].action, "case %zu action %u", i, err.action);
        ck_assert_msg(err.offset == cases[i].offset, "case %zu offset %zu", i, err.offset);
    }
    /* Too many options, with the default and with a configured lower limit. */
    uint8_t d[4 + 40];
    memcpy(d, "\x40\x01\x00\x01", 4);
    memset(d + 4, 0x00, 40); /* 40 options of number 0, length 0 */
    struct lw_coap_perr err;
    ck_assert_int_eq(lw_coap_parse(&pm, d, 4 + LW_COAP_MAX_OPTS, NULL, &err), 0);
    ck_assert_int_eq(lw_coap_parse(&pm, d, sizeof(d), NULL, &err), LW_EMALFORMED);
    ck_assert_uint_eq(err.reason, LW_COAP_R_TOO_MANY_OPTS);
    ck_assert_uint_eq(err.offset, 4 + LW_COAP_MAX_OPTS);
    struct lw_coap_parse_cfg cfg = {.max_opts = 4};
    ck_assert_int_eq(lw_coap_parse(&pm, d, 8, &cfg, &err), 0);
    ck_assert_int_eq(lw_coap_parse(&pm, d, 9, &cfg, &err), LW_EMALFORMED);
    ck_assert_uint_eq(err.offset, 8);
    for (unsigned r = LW_COAP_R_OK; r <= LW_COAP_R_OPT_LENGTH; r++)
        ck_assert_str_ne(lw_coap_reason_str(r), "unknown reason");
    ck_assert_str_eq(lw_coap_reason_str(999), "unknown reason");
    /* An option length of 65804 (nibble 14, ext 0xffff) in a datagram big enough to hold it. */
    size_t biglen = 4 + 3 + 65804;
    uint8_t *bigd = calloc(1, biglen);
    memcpy(bigd, "\x50\x45\x00\x01\x0e\xff\xff", 7);
    ck_assert_int_eq(lw_coap_parse(&pm, bigd, biglen, NULL, &err), LW_EMALFORMED);
    ck_assert_uint_eq(err.reason, LW_COAP_R_OPT_LENGTH);
    bigd[5] = 0xfe; /* 65803: still too long */
    ck_assert_int_eq(lw_coap_parse(&pm, bigd, biglen, NULL, &err), LW_EMALFORMED);
    bigd[5] = 0xfe;
    bigd[6] = 0xf2; /* 65535: fine */
    ck_assert_int_eq(lw_coap_parse(&pm, bigd, 7 + 65535, NULL, &err), 0);
    ck_assert_uint_eq(pm.opts[0].len, 65535);
    free(bigd);
    /* NULL err is allowed. */
    ck_assert_int_eq(lw_coap_parse(&pm, d, 2, NULL, NULL), LW_EMALFORMED);
}
END_TEST

START_TEST(test_option_rejections)
{
    struct lw_coap_perr err;
    /* Unknown critical option 13 in a CON request: 4.02. */
    ck_assert_int_eq(parse_hex("40 01 00 01 d0 00", NULL), 0);
    ck_assert_int_eq(lw_coap_check_opts(&pm, &err), LW_EBADOPT);
    ck_assert_uint_eq(err.reason, LW_COAP_R_BAD_CRITICAL);
    ck_assert_uint_eq(err.action, LW_COAP_A_BAD_OPTION);
    ck_assert_uint_eq(err.optnum, 13);
    /* ... in a NON request: drop; in a CON response: RST; in an ACK: drop. */
    ck_assert_int_eq(parse_hex("50 01 00 01 d0 00", NULL), 0);
    ck_assert_int_eq(lw_coap_check_opts(&pm, &err), LW_EBADOPT);
    ck_assert_uint_eq(err.action, LW_COAP_A_DROP);
    ck_assert_int_eq(parse_hex("40 45 00 01 d0 00", NULL), 0);
    ck_assert_int_eq(lw_coap_check_opts(&pm, &err), LW_EBADOPT);
    ck_assert_uint_eq(err.action, LW_COAP_A_RST);
    ck_assert_int_eq(parse_hex("60 45 00 01 d0 00", NULL), 0);
    ck_assert_int_eq(lw_coap_check_opts(&pm, &err), LW_EBADOPT);
    ck_assert_uint_eq(err.action, LW_COAP_A_DROP);
    /* Unknown elective option 2000: ignored. */
    ck_assert_int_eq(parse_hex("40 01 00 01 e0 06 c3 00", NULL), 0);
    ck_assert_int_eq(lw_coap_check_opts(&pm, &err), 0);
    /* Critical option with bad length (Accept, 3 bytes; §5.4.3). */
    ck_assert_int_eq(parse_hex("40 01 00 01 d3 04 01 02 03", NULL), 0);
    ck_assert_int_eq(lw_coap_check_opts(&pm, &err), LW_EBADOPT);
    ck_assert_uint_eq(err.optnum, LW_COAP_OPT_ACCEPT);
    /* Elective option with bad length (Content-Format, 3 bytes): ignored. */
    ck_assert_int_eq(parse_hex("40 01 00 01 c3 01 02 03", NULL), 0);
    ck_assert_int_eq(lw_coap_check_opts(&pm, &err), 0);
    /* Non-repeatable critical option repeated (Uri-Host twice; §5.4.5). */
    ck_assert_int_eq(parse_hex("40 01 00 01 31 61 01 62", NULL), 0);
    ck_assert_int_eq(lw_coap_check_opts(&pm, &err), LW_EBADOPT);
    ck_assert_uint_eq(err.optnum, LW_COAP_OPT_URI_HOST);
    /* Repeatable critical option repeated (Uri-Path): fine. */
    ck_assert_int_eq(parse_hex("40 01 00 01 b1 61 01 62", NULL), 0);
    ck_assert_int_eq(lw_coap_check_opts(&pm, &err), 0);
    /* Block1 with 4 bytes. */
    ck_assert_int_eq(parse_hex("40 03 00 01 d4 0e 00 00 00 01", NULL), 0);
    ck_assert_int_eq(lw_coap_check_opts(&pm, &err), LW_EBADOPT);
    /* Reserved classes: RST for a CON, drop otherwise. */
    ck_assert_int_eq(parse_hex("40 21 00 01", NULL), 0);
    ck_assert_int_eq(lw_coap_check_opts(&pm, &err), LW_EPROTO);
    ck_assert_uint_eq(err.reason, LW_COAP_R_RESERVED_CLASS);
    ck_assert_uint_eq(err.action, LW_COAP_A_RST);
    ck_assert_int_eq(parse_hex("50 e1 00 01", NULL), 0);
    ck_assert_int_eq(lw_coap_check_opts(&pm, &err), LW_EPROTO);
    ck_assert_uint_eq(err.action, LW_COAP_A_DROP);
    /* A request in an ACK, an Empty NON. */
    ck_assert_int_eq(parse_hex("60 01 00 01", NULL), 0);
    ck_assert_int_eq(lw_coap_check_opts(&pm, &err), LW_EPROTO);
    ck_assert_uint_eq(err.reason, LW_COAP_R_BAD_TYPE);
    ck_assert_int_eq(parse_hex("50 00 00 01", NULL), 0);
    ck_assert_int_eq(lw_coap_check_opts(&pm, &err), LW_EPROTO);
}
END_TEST

START_TEST(test_serialize_invalid)
{
    struct lw_coap_msg m;
    uint8_t mem[64];
    struct lw_buf b;
    lw_buf_init_fixed(&b, mem, sizeof(mem));
    lw_coap_msg_init(&m, LW_COAP_CON, LW_COAP_GET);
    m.tkl = 9;
    ck_assert_int_eq(lw_coap_serialize(&m, &b), LW_EINVAL);
    lw_coap_msg_init(&m, LW_COAP_CON, LW_COAP_EMPTY);
    m.tkl = 1;
    ck_assert_int_eq(lw_coap_serialize(&m, &b), LW_EINVAL);
    lw_coap_msg_init(&m, LW_COAP_CON, LW_COAP_EMPTY);
    m.payload = LW_BYTES_LIT("x");
    ck_assert_int_eq(lw_coap_serialize(&m, &b), LW_EINVAL);
    lw_coap_msg_init(&m, 4, LW_COAP_GET);
    ck_assert_int_eq(lw_coap_serialize(&m, &b), LW_EINVAL);
    ck_assert_uint_eq(b.len, 0);
    /* Growable buffer. */
    struct lw_buf g;
    lw_buf_init(&g, 0);
    lw_coap_msg_init(&m, LW_COAP_NON, LW_COAP_GET);
    m.payload = LW_BYTES_LIT("hello");
    ck_assert_int_eq(lw_coap_serialize(&m, &g), 0);
    ck_assert_uint_eq(g.len, 4 + 1 + 5);
    lw_buf_deinit(&g);
}
END_TEST

/* Deterministic pseudo-random round trips: any message we build parses back identically. */
START_TEST(test_roundtrip_random)
{
    uint32_t seed = 12345;
    static uint8_t vals[4096];
    for (size_t i = 0; i < sizeof(vals); i++)
        vals[i] = (uint8_t)(i * 7 + 3);
    for (int iter = 0; iter < 2000; iter++) {
        struct lw_coap_msg m;
        seed = seed * 1103515245 + 12345;
        lw_coap_msg_init(&m, (seed >> 8) & 3, (uint8_t)((seed >> 12) & 0xff) | 1);
        m.mid = (uint16_t)(seed >> 16);
        m.tkl = (seed >> 3) % 9;
        for (int i = 0; i < m.tkl; i++)
            m.token[i] = (uint8_t)(seed >> i);
        int n = (int)((seed >> 20) % LW_COAP_MAX_OPTS);
        for (int i = 0; i < n; i++) {
            seed = seed * 1103515245 + 12345;
            uint16_t num = (uint16_t)((seed >> 10) % (i & 1 ? 300 : 65536));
            size_t len = (seed >> 4) % (i % 5 == 0 ? 700 : 20);
            lw_coap_add_opt(&m, num, vals + (seed % 100), len);
        }
        m.payload = LW_BYTES(vals, (seed >> 7) % 50);
        uint8_t mem[32768];
        struct lw_buf b;
        lw_buf_init_fixed(&b, mem, sizeof(mem));
        ck_assert_int_eq(lw_coap_serialize(&m, &b), 0);
        struct lw_coap_msg p;
        ck_assert_int_eq(lw_coap_parse(&p, b.data, b.len, NULL, NULL), 0);
        ck_assert_uint_eq(p.type, m.type);
        ck_assert_uint_eq(p.code, m.code);
        ck_assert_uint_eq(p.mid, m.mid);
        ck_assert_uint_eq(p.tkl, m.tkl);
        ck_assert_mem_eq(p.token, m.token, m.tkl);
        ck_assert_uint_eq(p.nopts, m.nopts);
        ck_assert(lw_bytes_eq(p.payload, m.payload));
        /* Parsed options come out sorted and stable; each matches a built one. */
        for (size_t i = 1; i < p.nopts; i++)
            ck_assert_uint_le(p.opts[i - 1].num, p.opts[i].num);
        uint8_t mem2[32768];
        struct lw_buf b2;
        lw_buf_init_fixed(&b2, mem2, sizeof(mem2));
        ck_assert_int_eq(lw_coap_serialize(&p, &b2), 0);
        ck_assert_uint_eq(b2.len, b.len);
        ck_assert_mem_eq(b2.data, b.data, b.len);
    }
}
END_TEST

Suite *suite_msg(void);
Suite *suite_msg(void)
{
    Suite *s = suite_create("coap_msg");
    TCase *tc = tcase_create("codec");
    tcase_add_test(tc, test_update_wakaama);
    tcase_add_test(tc, test_register_build_and_parse);
    tcase_add_test(tc, test_observe_messages);
    tcase_add_test(tc, test_firmware_block1);
    tcase_add_test(tc, test_empty_and_ext_lengths);
    tcase_add_test(tc, test_uint_options);
    tcase_add_test(tc, test_parse_rejections);
    tcase_add_test(tc, test_option_rejections);
    tcase_add_test(tc, test_serialize_invalid);
    tcase_add_test(tc, test_roundtrip_random);
    suite_add_tcase(s, tc);
    return s;
}
