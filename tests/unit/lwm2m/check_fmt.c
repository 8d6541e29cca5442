/* Unit tests for lib/lwm2m/fmt*: TLV, text/plain, opaque, CBOR single value, dispatcher, and a
 * format x type round-trip matrix. Byte vectors are from protocol.md §5. */
#include "base/err.h"
#include "base/util.h"
#include "lwm2m/fmt.h"
#include "../testutil.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Object 3 (protocol.md §6.4) plus a test object 9 with one resource per type (resource id =
 * enum value, so /9/0/2 is Integer). */
static enum lw_m2m_type test_type_of(void *ctx, const struct lw_m2m_path *p)
{
    (void)ctx;
    if (p->len < 3)
        return LW_M2M_T_NONE;
    if (p->id[0] == 9 && p->id[2] >= 1 && p->id[2] <= LW_M2M_T_CORELNK)
        return (enum lw_m2m_type)p->id[2];
    if (p->id[0] != 3)
        return LW_M2M_T_NONE;
    switch (p->id[2]) {
    case 0:
    case 1:
    case 2:
    case 3:
    case 14:
    case 15:
    case 16:
    case 17:
    case 18:
    case 19: return LW_M2M_T_STRING;
    case 6:
    case 7:
    case 8:
    case 9:
    case 10:
    case 11:
    case 20:
    case 21: return LW_M2M_T_INTEGER;
    case 13: return LW_M2M_T_TIME;
    case 22: return LW_M2M_T_OBJLNK;
    default: return LW_M2M_T_NONE;
    }
}
static const struct lw_m2m_types test_types = {test_type_of, NULL};

static const char *const dev_tlv_hex = "C800144F70656E204D6F62696C6520416C6C69616E6365"
                                       "C801164C69676874776569676874204D324D20436C69656E74"
                                       "C80209333435303030313233"
                                       "C303312E30"
                                       "8606 410001 410105"
                                       "880708 42000ED8 42011388"
                                       "8708 41007D 42010384"
                                       "C10964"
                                       "C10A0F"
                                       "830B 410000"
                                       "C40D5182428F"
                                       "C60E2B30323A3030"
                                       "C11055";

static struct lw_arena arena;
static struct lw_m2m_records recs;
static struct lw_buf obuf;

/* lw_test_hex results are kept until teardown so LeakSanitizer stays quiet. */
static uint8_t *hexbufs[256];
static size_t nhex;

static uint8_t *thex(const char *hex, size_t *len)
{
    uint8_t *p = lw_test_hex(hex, len);
    if (nhex < sizeof(hexbufs) / sizeof(hexbufs[0]))
        hexbufs[nhex++] = p;
    return p;
}

static void setup(void)
{
    lw_arena_init(&arena, 0, 1 << 24);
    memset(&recs, 0, sizeof(recs));
    lw_buf_init(&obuf, 0);
}

static void teardown(void)
{
    while (nhex)
        free(hexbufs[--nhex]);
    lw_buf_deinit(&obuf);
    lw_arena_deinit(&arena);
}

static int dec(uint16_t cf, const uint8_t *p, size_t n, struct lw_m2m_path req,
               const struct lw_m2m_types *t, size_t *off)
{
    memset(&recs, 0, sizeof(recs));
    return lw_m2m_decode(cf, LW_BYTES(p, n), &req, t, NULL, &arena, &recs, off);
}

static int dec_hex(uint16_t cf, const char *hex, struct lw_m2m_path req, size_t *off)
{
    size_t n;
    uint8_t *p = thex(hex, &n);
    return dec(cf, p, n, req, &test_types, off);
}

static int enc(uint16_t cf, struct lw_m2m_path req)
{
    lw_buf_reset(&obuf);
    return lw_m2m_encode(cf, &req, recs.v, recs.n, &obuf);
}

static void assert_out_hex(const char *hex)
{
    size_t n;
    uint8_t *p = thex(hex, &n);
    ck_assert_uint_eq(obuf.len, n);
    ck_assert_mem_eq(obuf.data, p, n);
}

static const struct lw_m2m_record *find(struct lw_m2m_path p)
{
    for (size_t k = 0; k < recs.n; k++)
        if (lw_m2m_path_eq(&recs.v[k].path, &p))
            return &recs.v[k];
    ck_abort_msg("record not found");
    return NULL;
}

static void assert_int(struct lw_m2m_path p, enum lw_m2m_type t, int64_t v)
{
    const struct lw_m2m_record *r = find(p);
    ck_assert(r->has_value);
    ck_assert_int_eq(r->value.type, t);
    ck_assert_int_eq(r->value.i, v);
}

static void assert_str(struct lw_m2m_path p, const char *s)
{
    const struct lw_m2m_record *r = find(p);
    ck_assert_int_eq(r->value.type, LW_M2M_T_STRING);
    ck_assert(lw_bytes_eq_str(r->value.bytes, s));
}

static void check_device(uint16_t obj_inst_ok)
{
    (void)obj_inst_ok;
    ck_assert_uint_eq(recs.n, 16);
    assert_str(LW_M2M_PATH3(3, 0, 0), "Open Mobile Alliance");
    assert_str(LW_M2M_PATH3(3, 0, 1), "Lightweight M2M Client");
    assert_str(LW_M2M_PATH3(3, 0, 2), "345000123");
    assert_str(LW_M2M_PATH3(3, 0, 3), "1.0");
    assert_int(LW_M2M_PATH4(3, 0, 6, 0), LW_M2M_T_INTEGER, 1);
    assert_int(LW_M2M_PATH4(3, 0, 6, 1), LW_M2M_T_INTEGER, 5);
    assert_int(LW_M2M_PATH4(3, 0, 7, 0), LW_M2M_T_INTEGER, 3800);
    assert_int(LW_M2M_PATH4(3, 0, 7, 1), LW_M2M_T_INTEGER, 5000);
    assert_int(LW_M2M_PATH4(3, 0, 8, 0), LW_M2M_T_INTEGER, 125);
    assert_int(LW_M2M_PATH4(3, 0, 8, 1), LW_M2M_T_INTEGER, 900);
    assert_int(LW_M2M_PATH3(3, 0, 9), LW_M2M_T_INTEGER, 100);
    assert_int(LW_M2M_PATH3(3, 0, 10), LW_M2M_T_INTEGER, 15);
    assert_int(LW_M2M_PATH4(3, 0, 11, 0), LW_M2M_T_INTEGER, 0);
    assert_int(LW_M2M_PATH3(3, 0, 13), LW_M2M_T_TIME, 1367491215);
    assert_str(LW_M2M_PATH3(3, 0, 14), "+02:00");
    assert_str(LW_M2M_PATH3(3, 0, 16), "U");
}

START_TEST(tlv_device_instance)
{
    size_t n, off = 99;
    uint8_t *p = thex(dev_tlv_hex, &n);
    ck_assert_uint_eq(n, 121);
    ck_assert_int_eq(dec(LW_M2M_CF_TLV, p, n, LW_M2M_PATH2(3, 0), &test_types, &off), 0);
    check_device(0);
    ck_assert_int_eq(enc(LW_M2M_CF_TLV, LW_M2M_PATH2(3, 0)), 0);
    assert_out_hex(dev_tlv_hex);
    /* legacy id decodes the same */
    ck_assert_int_eq(dec(LW_M2M_CF_TLV_OLD, p, n, LW_M2M_PATH2(3, 0), &test_types, &off), 0);
    check_device(0);
}
END_TEST

START_TEST(tlv_device_object)
{
    char hex[600];
    snprintf(hex, sizeof(hex), "080079%s", dev_tlv_hex);
    ck_assert_int_eq(dec_hex(LW_M2M_CF_TLV, hex, LW_M2M_PATH1(3), NULL), 0);
    check_device(0);
    ck_assert_int_eq(enc(LW_M2M_CF_TLV, LW_M2M_PATH1(3)), 0);
    assert_out_hex(hex);
    /* an Object Instance TLV repeating the requested instance is accepted for /3/0 */
    ck_assert_int_eq(dec_hex(LW_M2M_CF_TLV, hex, LW_M2M_PATH2(3, 0), NULL), 0);
    check_device(0);
    /* but not for another instance */
    size_t off = 99;
    ck_assert_int_eq(dec_hex(LW_M2M_CF_TLV, hex, LW_M2M_PATH2(3, 1), &off), LW_EMALFORMED);
    ck_assert_uint_eq(off, 0);
}
END_TEST

START_TEST(tlv_unknown_types_are_opaque)
{
    size_t n;
    uint8_t *p = thex(dev_tlv_hex, &n);
    ck_assert_int_eq(dec(LW_M2M_CF_TLV, p, n, LW_M2M_PATH2(3, 0), NULL, NULL), 0);
    ck_assert_uint_eq(recs.n, 16);
    const struct lw_m2m_record *r = find(LW_M2M_PATH3(3, 0, 13));
    ck_assert_int_eq(r->value.type, LW_M2M_T_OPAQUE);
    ck_assert_uint_eq(r->value.bytes.len, 4);
    /* opaque re-encodes to the same bytes */
    ck_assert_int_eq(enc(LW_M2M_CF_TLV, LW_M2M_PATH2(3, 0)), 0);
    assert_out_hex(dev_tlv_hex);
}
END_TEST

START_TEST(tlv_resource_shapes)
{
    /* Multiple Resource TLV for /3/0/6, and bare resource instances */
    ck_assert_int_eq(dec_hex(LW_M2M_CF_TLV, "8606 410001 410105", LW_M2M_PATH3(3, 0, 6), NULL), 0);
    ck_assert_uint_eq(recs.n, 2);
    assert_int(LW_M2M_PATH4(3, 0, 6, 1), LW_M2M_T_INTEGER, 5);
    ck_assert_int_eq(enc(LW_M2M_CF_TLV, LW_M2M_PATH3(3, 0, 6)), 0);
    assert_out_hex("8606 410001 410105");
    ck_assert_int_eq(dec_hex(LW_M2M_CF_TLV, "410001 410105", LW_M2M_PATH3(3, 0, 6), NULL), 0);
    ck_assert_uint_eq(recs.n, 2);
    /* single resource and single resource instance */
    ck_assert_int_eq(dec_hex(LW_M2M_CF_TLV, "C10964", LW_M2M_PATH3(3, 0, 9), NULL), 0);
    assert_int(LW_M2M_PATH3(3, 0, 9), LW_M2M_T_INTEGER, 100);
    ck_assert_int_eq(enc(LW_M2M_CF_TLV, LW_M2M_PATH3(3, 0, 9)), 0);
    assert_out_hex("C10964");
    ck_assert_int_eq(dec_hex(LW_M2M_CF_TLV, "410105", LW_M2M_PATH4(3, 0, 6, 1), NULL), 0);
    assert_int(LW_M2M_PATH4(3, 0, 6, 1), LW_M2M_T_INTEGER, 5);
    ck_assert_int_eq(enc(LW_M2M_CF_TLV, LW_M2M_PATH4(3, 0, 6, 1)), 0);
    assert_out_hex("410105");
    /* 16-bit identifier: resource 300 = 1 */
    ck_assert_int_eq(dec_hex(LW_M2M_CF_TLV, "E1012C01", LW_M2M_PATH2(9, 0), NULL), 0);
    ck_assert_uint_eq(recs.n, 1);
    ck_assert_uint_eq(recs.v[0].path.id[2], 300);
    recs.v[0].value.type = LW_M2M_T_INTEGER;
    recs.v[0].value.i = 1;
    ck_assert_int_eq(enc(LW_M2M_CF_TLV, LW_M2M_PATH2(9, 0)), 0);
    assert_out_hex("E1012C01");
    /* empty multiple resource and empty instance round-trip as path-only records */
    ck_assert_int_eq(dec_hex(LW_M2M_CF_TLV, "8006", LW_M2M_PATH2(3, 0), NULL), 0);
    ck_assert_uint_eq(recs.n, 1);
    ck_assert(!recs.v[0].has_value);
    ck_assert_uint_eq(recs.v[0].path.len, 3);
    ck_assert_int_eq(enc(LW_M2M_CF_TLV, LW_M2M_PATH2(3, 0)), 0);
    assert_out_hex("8006");
    ck_assert_int_eq(dec_hex(LW_M2M_CF_TLV, "0001 0002", LW_M2M_PATH1(3), NULL), 0);
    ck_assert_uint_eq(recs.n, 2);
    ck_assert_int_eq(enc(LW_M2M_CF_TLV, LW_M2M_PATH1(3)), 0);
    assert_out_hex("0001 0002");
    /* 16-bit and 24-bit length fields */
    uint8_t big[70000 + 6];
    big[0] = 0xD8 | 0x10; /* kind 11, 8-bit id, 24-bit length */
    big[1] = 5;
    big[2] = 0x01;
    big[3] = 0x11;
    big[4] = 0x70;
    memset(big + 5, 'x', 70000);
    ck_assert_int_eq(dec(LW_M2M_CF_TLV, big, 70005, LW_M2M_PATH2(9, 0), NULL, NULL), 0);
    ck_assert_uint_eq(recs.v[0].value.bytes.len, 70000);
    ck_assert_int_eq(enc(LW_M2M_CF_TLV, LW_M2M_PATH2(9, 0)), 0);
    ck_assert_uint_eq(obuf.len, 70005);
    ck_assert_mem_eq(obuf.data, big, 70005);
}
END_TEST

static void enc_one(uint16_t cf, struct lw_m2m_path p, struct lw_m2m_value v, const char *hex)
{
    struct lw_m2m_record r = {.path = p, .value = v, .has_value = true};
    lw_buf_reset(&obuf);
    struct lw_m2m_path req = p;
    req.len = 2;
    ck_assert_int_eq(lw_m2m_encode(cf, &req, &r, 1, &obuf), 0);
    assert_out_hex(hex);
}

START_TEST(tlv_number_widths)
{
    struct lw_m2m_path p = LW_M2M_PATH3(9, 0, 2);
    struct lw_m2m_value v = {.type = LW_M2M_T_INTEGER};
    v.i = -1;
    enc_one(LW_M2M_CF_TLV, p, v, "C102FF");
    v.i = 127;
    enc_one(LW_M2M_CF_TLV, p, v, "C1027F");
    v.i = 128;
    enc_one(LW_M2M_CF_TLV, p, v, "C2020080");
    v.i = -129;
    enc_one(LW_M2M_CF_TLV, p, v, "C202FF7F");
    v.i = 40000;
    enc_one(LW_M2M_CF_TLV, p, v, "C40200009C40");
    v.i = 1ll << 31;
    enc_one(LW_M2M_CF_TLV, p, v, "C8020800000000 80000000");
    v.type = LW_M2M_T_FLOAT;
    v.f = 1.5;
    enc_one(LW_M2M_CF_TLV, LW_M2M_PATH3(9, 0, 4), v, "C4043FC00000");
    v.f = 0.1;
    enc_one(LW_M2M_CF_TLV, LW_M2M_PATH3(9, 0, 4), v, "C804083FB999999999999A");
    /* decoders accept every width regardless of magnitude */
    ck_assert_int_eq(dec_hex(LW_M2M_CF_TLV, "C8020800000000000000FF", LW_M2M_PATH2(9, 0), NULL), 0);
    assert_int(LW_M2M_PATH3(9, 0, 2), LW_M2M_T_INTEGER, 255);
    ck_assert_int_eq(dec_hex(LW_M2M_CF_TLV, "C203FFFF", LW_M2M_PATH2(9, 0), NULL), 0);
    ck_assert_uint_eq(recs.v[0].value.u, 65535);
    ck_assert_int_eq(dec_hex(LW_M2M_CF_TLV, "C4043FC00000", LW_M2M_PATH2(9, 0), NULL), 0);
    ck_assert(recs.v[0].value.f == 1.5);
}
END_TEST

START_TEST(tlv_rejects)
{
    size_t off;
    struct {
        const char *hex;
        struct lw_m2m_path req;
        int rc;
        size_t off;
    } cases[] = {
        {"C800144F", LW_M2M_PATH2(3, 0), LW_EMALFORMED, 0},         /* value truncated */
        {"C8", LW_M2M_PATH2(3, 0), LW_EMALFORMED, 0},               /* header truncated */
        {"C10964 E8", LW_M2M_PATH2(3, 0), LW_EMALFORMED, 3},        /* 2nd header truncated */
        {"8606 410001 4101", LW_M2M_PATH2(3, 0), LW_EMALFORMED, 0}, /* outer len too long */
        {"830B 420000", LW_M2M_PATH2(3, 0), LW_EMALFORMED, 2},      /* inner len too long */
        {"830B C10000", LW_M2M_PATH2(3, 0), LW_EMALFORMED, 2},      /* resource in multi */
        {"0003 410000", LW_M2M_PATH1(3), LW_EMALFORMED, 2},         /* instance in instance */
        {"C10964", LW_M2M_PATH1(3), LW_EMALFORMED, 0},              /* skips instance level */
        {"C10A0F", LW_M2M_PATH3(3, 0, 9), LW_EMALFORMED, 0},        /* other resource */
        {"E1FFFF00", LW_M2M_PATH2(9, 0), LW_EMALFORMED, 0},         /* id 65535 */
        {"C30900 0001", LW_M2M_PATH2(3, 0), LW_ETYPE, 0},           /* 3-byte integer */
        {"C1050 2", LW_M2M_PATH2(9, 0), LW_ETYPE, 0},               /* boolean 2 */
        {"C3080102 03", LW_M2M_PATH2(9, 0), LW_ETYPE, 0},           /* 3-byte objlnk */
        {"C20400 00", LW_M2M_PATH2(9, 0), LW_ETYPE, 0},             /* 2-byte float */
        {"C201C328", LW_M2M_PATH2(9, 0), LW_ETYPE, 0},              /* invalid UTF-8 string */
        {"C10964", LW_M2M_PATH_ROOT, LW_EINVAL, 0},                 /* root request */
    };
    for (size_t k = 0; k < LW_ARRAY_SIZE(cases); k++) {
        off = 12345;
        int rc = dec_hex(LW_M2M_CF_TLV, cases[k].hex, cases[k].req, &off);
        ck_assert_msg(rc == cases[k].rc, "case %zu: rc %d", k, rc);
        if (rc == LW_EMALFORMED || rc == LW_ETYPE)
            ck_assert_msg(off == cases[k].off, "case %zu: off %zu", k, off);
    }
    /* every truncation of the /3/0 vector fails cleanly or decodes a prefix */
    size_t n;
    uint8_t *p = thex(dev_tlv_hex, &n);
    for (size_t cut = 0; cut < n; cut++) {
        int rc = dec(LW_M2M_CF_TLV, p, cut, LW_M2M_PATH2(3, 0), &test_types, &off);
        ck_assert(rc == 0 || rc == LW_EMALFORMED);
        if (rc)
            ck_assert_uint_lt(off, cut);
    }
}
END_TEST

START_TEST(text_values)
{
    struct {
        struct lw_m2m_path p;
        const char *text;
        enum lw_m2m_type t;
    } ok[] = {
        {LW_M2M_PATH3(9, 0, 1), "h\xc3\xa9llo", LW_M2M_T_STRING},
        {LW_M2M_PATH3(9, 0, 2), "-9223372036854775808", LW_M2M_T_INTEGER},
        {LW_M2M_PATH3(9, 0, 3), "18446744073709551615", LW_M2M_T_UNSIGNED},
        {LW_M2M_PATH3(9, 0, 4), "56.4", LW_M2M_T_FLOAT},
        {LW_M2M_PATH3(9, 0, 5), "1", LW_M2M_T_BOOLEAN},
        {LW_M2M_PATH3(9, 0, 6), "AQIDBAU=", LW_M2M_T_OPAQUE},
        {LW_M2M_PATH3(9, 0, 7), "1367491215", LW_M2M_T_TIME},
        {LW_M2M_PATH3(9, 0, 8), "3:0", LW_M2M_T_OBJLNK},
        {LW_M2M_PATH3(9, 0, 9), "</3/0>;ver=1.1", LW_M2M_T_CORELNK},
        {LW_M2M_PATH4(9, 0, 2, 7), "42", LW_M2M_T_INTEGER},
        {LW_M2M_PATH3(42, 0, 0), "anything", LW_M2M_T_STRING}, /* unknown type */
    };
    for (size_t k = 0; k < LW_ARRAY_SIZE(ok); k++) {
        const char *s = ok[k].text;
        ck_assert_int_eq(
            dec(LW_M2M_CF_TEXT, (const uint8_t *)s, strlen(s), ok[k].p, &test_types, NULL), 0);
        ck_assert_uint_eq(recs.n, 1);
        ck_assert_int_eq(recs.v[0].value.type, ok[k].t);
        ck_assert_int_eq(enc(LW_M2M_CF_TEXT, ok[k].p), 0);
        ck_assert_uint_eq(obuf.len, strlen(s));
        ck_assert_mem_eq(obuf.data, s, obuf.len);
    }
    ck_assert_int_eq(dec(LW_M2M_CF_TEXT, (const uint8_t *)"AQIDBAU=", 8, LW_M2M_PATH3(9, 0, 6),
                         &test_types, NULL),
                     0);
    ck_assert_mem_eq(recs.v[0].value.bytes.ptr, "\x01\x02\x03\x04\x05", 5);
    const char *bad[][2] = {
        {"2", "12a"},  {"2", "9223372036854775808"},
        {"3", "-1"},   {"4", "1e"},
        {"4", "nan"},  {"5", "2"},
        {"5", "true"}, {"6", "A"},
        {"8", "3:"},   {"8", "70000:1"},
        {"7", " 1"},   {"4", " 1.0"},
    };
    for (size_t k = 0; k < LW_ARRAY_SIZE(bad); k++) {
        struct lw_m2m_path p = LW_M2M_PATH3(9, 0, (uint16_t)atoi(bad[k][0]));
        int rc = dec(LW_M2M_CF_TEXT, (const uint8_t *)bad[k][1], strlen(bad[k][1]), p, &test_types,
                     NULL);
        ck_assert_msg(rc == LW_ETYPE, "bad %zu: %d", k, rc);
    }
    ck_assert_int_eq(
        dec(LW_M2M_CF_TEXT, (const uint8_t *)"\xff", 1, LW_M2M_PATH3(9, 0, 1), &test_types, NULL),
        LW_EMALFORMED);
    ck_assert_int_eq(
        dec(LW_M2M_CF_TEXT, (const uint8_t *)"1", 1, LW_M2M_PATH2(9, 0), &test_types, NULL),
        LW_EINVAL);
}
END_TEST

START_TEST(opaque_and_cbor_single)
{
    static const uint8_t img[] = {0, 1, 2, 0xff};
    ck_assert_int_eq(dec(LW_M2M_CF_OPAQUE, img, 4, LW_M2M_PATH3(9, 0, 6), &test_types, NULL), 0);
    ck_assert_int_eq(recs.v[0].value.type, LW_M2M_T_OPAQUE);
    ck_assert_int_eq(enc(LW_M2M_CF_OPAQUE, LW_M2M_PATH3(9, 0, 6)), 0);
    ck_assert_mem_eq(obuf.data, img, 4);
    ck_assert_int_eq(dec(LW_M2M_CF_OPAQUE, img, 4, LW_M2M_PATH3(9, 0, 2), &test_types, NULL),
                     LW_ETYPE);
    ck_assert_int_eq(dec(LW_M2M_CF_OPAQUE, img, 0, LW_M2M_PATH3(9, 0, 6), &test_types, NULL), 0);
    ck_assert_uint_eq(recs.v[0].value.bytes.len, 0);

    /* CBOR 60: time with tag 1 (Leshan), plain integer, half float, text objlnk */
    ck_assert_int_eq(dec_hex(LW_M2M_CF_CBOR, "C11A5182428F", LW_M2M_PATH3(42, 0, 0), NULL), 0);
    assert_int(LW_M2M_PATH3(42, 0, 0), LW_M2M_T_TIME, 1367491215);
    ck_assert_int_eq(enc(LW_M2M_CF_CBOR, LW_M2M_PATH3(42, 0, 0)), 0);
    assert_out_hex("C11A5182428F");
    ck_assert_int_eq(dec_hex(LW_M2M_CF_CBOR, "1A5182428F", LW_M2M_PATH3(3, 0, 13), NULL), 0);
    assert_int(LW_M2M_PATH3(3, 0, 13), LW_M2M_T_TIME, 1367491215);
    ck_assert_int_eq(dec_hex(LW_M2M_CF_CBOR, "F94100", LW_M2M_PATH3(9, 0, 4), NULL), 0);
    ck_assert(recs.v[0].value.f == 2.5);
    ck_assert_int_eq(enc(LW_M2M_CF_CBOR, LW_M2M_PATH3(9, 0, 4)), 0);
    assert_out_hex("F94100");
    ck_assert_int_eq(dec_hex(LW_M2M_CF_CBOR, "6431323A33", LW_M2M_PATH3(9, 0, 8), NULL), 0);
    ck_assert_uint_eq(recs.v[0].value.lnk.obj, 12);
    ck_assert_uint_eq(recs.v[0].value.lnk.inst, 3);
    size_t off;
    ck_assert_int_eq(dec_hex(LW_M2M_CF_CBOR, "0101", LW_M2M_PATH3(9, 0, 2), &off), LW_EMALFORMED);
    ck_assert_uint_eq(off, 1);
    ck_assert_int_eq(dec_hex(LW_M2M_CF_CBOR, "1A5182", LW_M2M_PATH3(9, 0, 2), &off), LW_EMALFORMED);
    ck_assert_int_eq(dec_hex(LW_M2M_CF_CBOR, "6474657374", LW_M2M_PATH3(9, 0, 2), &off), LW_ETYPE);
    ck_assert_int_eq(dec_hex(LW_M2M_CF_CBOR, "8101", LW_M2M_PATH3(9, 0, 2), &off), LW_EMALFORMED);
    ck_assert_int_eq(dec_hex(LW_M2M_CF_CBOR, "F93E00", LW_M2M_PATH3(9, 0, 2), &off), LW_ETYPE);
}
END_TEST

START_TEST(cf_names_and_dispatch)
{
    uint16_t cf;
    ck_assert_str_eq(lw_m2m_cf_name(11542), "tlv");
    ck_assert_str_eq(lw_m2m_cf_name(1542), "tlv");
    ck_assert_str_eq(lw_m2m_cf_name(11544), "lwm2m-cbor");
    ck_assert_ptr_null(lw_m2m_cf_name(40));
    ck_assert_int_eq(lw_m2m_cf_parse("senml-cbor", 10, &cf), 0);
    ck_assert_uint_eq(cf, 112);
    ck_assert_int_eq(lw_m2m_cf_parse("11543", 5, &cf), 0);
    ck_assert_uint_eq(cf, 11543);
    ck_assert_int_eq(lw_m2m_cf_parse("40", 2, &cf), LW_EINVAL);
    ck_assert_int_eq(lw_m2m_cf_parse("xml", 3, &cf), LW_EINVAL);
    ck_assert_int_eq(dec_hex(40, "00", LW_M2M_PATH2(3, 0), NULL), LW_ENOTSUP);
    /* size limit */
    struct lw_m2m_fmt_cfg cfg = {.max_input = 4};
    size_t off;
    uint8_t five[5] = {0};
    struct lw_m2m_path req = LW_M2M_PATH3(9, 0, 6);
    ck_assert_int_eq(
        lw_m2m_decode(LW_M2M_CF_OPAQUE, LW_BYTES(five, 5), &req, NULL, &cfg, &arena, &recs, &off),
        LW_ELIMIT);
    /* records outside the request path are refused by encoders */
    struct lw_m2m_record r = {
        .path = LW_M2M_PATH3(4, 0, 1), .value = {.type = LW_M2M_T_INTEGER}, .has_value = true};
    req = LW_M2M_PATH2(3, 0);
    ck_assert_int_eq(lw_m2m_encode(LW_M2M_CF_TLV, &req, &r, 1, &obuf), LW_EINVAL);
    /* fixed buffer overflow */
    uint8_t small[2];
    struct lw_buf fb;
    lw_buf_init_fixed(&fb, small, sizeof(small));
    r.path = LW_M2M_PATH3(3, 0, 9);
    r.value.i = 100;
    ck_assert_int_eq(lw_m2m_encode(LW_M2M_CF_TLV, &req, &r, 1, &fb), LW_ENOSPC);
}
END_TEST

/* ---- format x type round-trip matrix ---- */

static bool value_eq(const struct lw_m2m_value *a, const struct lw_m2m_value *b)
{
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case LW_M2M_T_INTEGER:
    case LW_M2M_T_TIME: return a->i == b->i;
    case LW_M2M_T_UNSIGNED: return a->u == b->u;
    case LW_M2M_T_FLOAT: return a->f == b->f && signbit(a->f) == signbit(b->f);
    case LW_M2M_T_BOOLEAN: return a->b == b->b;
    case LW_M2M_T_OBJLNK: return a->lnk.obj == b->lnk.obj && a->lnk.inst == b->lnk.inst;
    default: return lw_bytes_eq(a->bytes, b->bytes);
    }
}

#define V_I(t, x)             \
    {                         \
        .type = (t), .i = (x) \
    }
static const struct {
    enum lw_m2m_type t;
    struct lw_m2m_value v[5];
    size_t n;
} matrix_vals[] = {
    {LW_M2M_T_STRING, {{.type = LW_M2M_T_STRING}}, 1},
    {LW_M2M_T_INTEGER,
     {V_I(LW_M2M_T_INTEGER, 0), V_I(LW_M2M_T_INTEGER, -1), V_I(LW_M2M_T_INTEGER, INT64_MIN),
      V_I(LW_M2M_T_INTEGER, INT64_MAX), V_I(LW_M2M_T_INTEGER, 40000)},
     5},
    {LW_M2M_T_UNSIGNED,
     {{.type = LW_M2M_T_UNSIGNED, .u = 0},
      {.type = LW_M2M_T_UNSIGNED, .u = 255},
      {.type = LW_M2M_T_UNSIGNED, .u = 4294967296ull},
      {.type = LW_M2M_T_UNSIGNED, .u = UINT64_MAX}},
     4},
    {LW_M2M_T_FLOAT,
     {{.type = LW_M2M_T_FLOAT, .f = 69.68},
      {.type = LW_M2M_T_FLOAT, .f = -2.5},
      {.type = LW_M2M_T_FLOAT, .f = 1e300},
      {.type = LW_M2M_T_FLOAT, .f = 3.0},
      {.type = LW_M2M_T_FLOAT, .f = 5e-324}},
     5},
    {LW_M2M_T_BOOLEAN, {{.type = LW_M2M_T_BOOLEAN, .b = true}, {.type = LW_M2M_T_BOOLEAN}}, 2},
    {LW_M2M_T_OPAQUE, {{.type = LW_M2M_T_OPAQUE}}, 1},
    {LW_M2M_T_TIME, {V_I(LW_M2M_T_TIME, 1367491215), V_I(LW_M2M_T_TIME, -5)}, 2},
    {LW_M2M_T_OBJLNK,
     {{.type = LW_M2M_T_OBJLNK, .lnk = {3, 0}}, {.type = LW_M2M_T_OBJLNK, .lnk = {65535, 65535}}},
     2},
    {LW_M2M_T_CORELNK, {{.type = LW_M2M_T_CORELNK}}, 1},
};

static const char str_val[] = "h\xc3\xa9 \"q\" \\ \n\t\x01 end";
static const uint8_t opq_val[] = {0, 0xff, 0xfe, 1, 2};
static const char lnk_val[] = "</3/0>;ver=1.1,</1/0>";

static struct lw_m2m_value matrix_value(size_t row, size_t k)
{
    struct lw_m2m_value v = matrix_vals[row].v[k];
    if (v.type == LW_M2M_T_STRING)
        v.bytes = LW_BYTES(str_val, sizeof(str_val) - 1);
    else if (v.type == LW_M2M_T_OPAQUE)
        v.bytes = LW_BYTES(opq_val, sizeof(opq_val));
    else if (v.type == LW_M2M_T_CORELNK)
        v.bytes = LW_BYTES(lnk_val, sizeof(lnk_val) - 1);
    return v;
}

static bool json_fmt(uint16_t cf)
{
    return cf == LW_M2M_CF_SENML_JSON || cf == LW_M2M_CF_JSON;
}

START_TEST(roundtrip_matrix)
{
    static const uint16_t multi[] = {LW_M2M_CF_TLV, LW_M2M_CF_SENML_JSON, LW_M2M_CF_SENML_CBOR,
                                     LW_M2M_CF_JSON, LW_M2M_CF_LWM2M_CBOR};
    static const uint16_t single[] = {LW_M2M_CF_TEXT,       LW_M2M_CF_CBOR,       LW_M2M_CF_TLV,
                                      LW_M2M_CF_SENML_JSON, LW_M2M_CF_SENML_CBOR, LW_M2M_CF_JSON,
                                      LW_M2M_CF_LWM2M_CBOR};
    size_t checked = 0;
    for (size_t row = 0; row < LW_ARRAY_SIZE(matrix_vals); row++) {
        for (size_t k = 0; k < matrix_vals[row].n; k++) {
            struct lw_m2m_value v = matrix_value(row, k);
            uint16_t rid = (uint16_t)matrix_vals[row].t;
            /* JSON numbers are int64 in jansson: skip unsigned above INT64_MAX there */
            bool big_u = v.type == LW_M2M_T_UNSIGNED && v.u > INT64_MAX;
            /* (a) one record as a resource instance within an instance payload */
            struct lw_m2m_record in[2] = {
                {.path = LW_M2M_PATH4(9, 0, rid, 3), .value = v, .has_value = true},
                {.path = LW_M2M_PATH4(9, 0, rid, 4), .value = v, .has_value = true, .time = 0},
            };
            for (size_t f = 0; f < LW_ARRAY_SIZE(multi); f++) {
                if (big_u && json_fmt(multi[f]))
                    continue;
                struct lw_m2m_path req = LW_M2M_PATH2(9, 0);
                lw_buf_reset(&obuf);
                ck_assert_int_eq(lw_m2m_encode(multi[f], &req, in, 2, &obuf), 0);
                size_t off = 0;
                memset(&recs, 0, sizeof(recs));
                int rc = lw_m2m_decode(multi[f], lw_buf_bytes(&obuf), &req, &test_types, NULL,
                                       &arena, &recs, &off);
                ck_assert_msg(rc == 0, "cf %u type %d #%zu: rc %d off %zu", multi[f], v.type, k, rc,
                              off);
                ck_assert_uint_eq(recs.n, 2);
                for (size_t j = 0; j < 2; j++) {
                    ck_assert(lw_m2m_path_eq(&recs.v[j].path, &in[j].path));
                    ck_assert_msg(value_eq(&recs.v[j].value, &v), "cf %u type %d #%zu", multi[f],
                                  v.type, k);
                }
                checked++;
            }
            /* (b) one record at the request path */
            struct lw_m2m_record one = {
                .path = LW_M2M_PATH3(9, 0, rid), .value = v, .has_value = true};
            for (size_t f = 0; f < LW_ARRAY_SIZE(single); f++) {
                if (big_u && json_fmt(single[f]))
                    continue;
                lw_buf_reset(&obuf);
                ck_assert_int_eq(lw_m2m_encode(single[f], &one.path, &one, 1, &obuf), 0);
                memset(&recs, 0, sizeof(recs));
                size_t off = 0;
                int rc = lw_m2m_decode(single[f], lw_buf_bytes(&obuf), &one.path, &test_types, NULL,
                                       &arena, &recs, &off);
                ck_assert_msg(rc == 0, "single cf %u type %d #%zu: rc %d off %zu", single[f],
                              v.type, k, rc, off);
                ck_assert_uint_eq(recs.n, 1);
                ck_assert(lw_m2m_path_eq(&recs.v[0].path, &one.path));
                ck_assert_msg(value_eq(&recs.v[0].value, &v), "single cf %u type %d #%zu",
                              single[f], v.type, k);
                checked++;
            }
        }
    }
    /* opaque carries only Opaque */
    struct lw_m2m_record o = {
        .path = LW_M2M_PATH3(9, 0, 6), .value = matrix_value(5, 0), .has_value = true};
    lw_buf_reset(&obuf);
    ck_assert_int_eq(lw_m2m_encode(LW_M2M_CF_OPAQUE, &o.path, &o, 1, &obuf), 0);
    ck_assert_uint_eq(obuf.len, sizeof(opq_val));
    ck_assert_uint_gt(checked, 250);
}
END_TEST

START_TEST(roundtrip_timestamps)
{
    /* SenML and old JSON carry times; TLV and LwM2M CBOR do not */
    static const uint16_t cfs[] = {LW_M2M_CF_SENML_JSON, LW_M2M_CF_SENML_CBOR, LW_M2M_CF_JSON};
    struct lw_m2m_record in[3] = {
        {.path = LW_M2M_PATH3(3, 0, 9),
         .value = V_I(LW_M2M_T_INTEGER, 90),
         .has_value = true,
         .time = 1700000000,
         .has_time = true},
        {.path = LW_M2M_PATH3(3, 0, 9),
         .value = V_I(LW_M2M_T_INTEGER, 80),
         .has_value = true,
         .time = 1700000060.5,
         .has_time = true},
        {.path = LW_M2M_PATH3(3, 0, 9), .value = V_I(LW_M2M_T_INTEGER, 70), .has_value = true},
    };
    for (size_t f = 0; f < LW_ARRAY_SIZE(cfs); f++) {
        struct lw_m2m_path req = LW_M2M_PATH_ROOT;
        lw_buf_reset(&obuf);
        ck_assert_int_eq(lw_m2m_encode(cfs[f], &req, in, 3, &obuf), 0);
        memset(&recs, 0, sizeof(recs));
        ck_assert_int_eq(lw_m2m_decode(cfs[f], lw_buf_bytes(&obuf), &req, &test_types, NULL, &arena,
                                       &recs, NULL),
                         0);
        ck_assert_uint_eq(recs.n, 3);
        for (size_t j = 0; j < 3; j++) {
            ck_assert(value_eq(&recs.v[j].value, &in[j].value));
            ck_assert_int_eq(recs.v[j].has_time, in[j].has_time);
            ck_assert(recs.v[j].time == in[j].time);
        }
    }
}
END_TEST

START_TEST(cross_format)
{
    /* /3/0 from TLV through every multi-record format and back: same records */
    static const uint16_t cfs[] = {LW_M2M_CF_SENML_JSON, LW_M2M_CF_SENML_CBOR, LW_M2M_CF_JSON,
                                   LW_M2M_CF_LWM2M_CBOR, LW_M2M_CF_TLV};
    size_t n;
    uint8_t *p = thex(dev_tlv_hex, &n);
    struct lw_m2m_records tlv = {0};
    struct lw_m2m_path req = LW_M2M_PATH2(3, 0);
    ck_assert_int_eq(
        lw_m2m_decode(LW_M2M_CF_TLV, LW_BYTES(p, n), &req, &test_types, NULL, &arena, &tlv, NULL),
        0);
    for (size_t f = 0; f < LW_ARRAY_SIZE(cfs); f++) {
        lw_buf_reset(&obuf);
        ck_assert_int_eq(lw_m2m_encode(cfs[f], &req, tlv.v, tlv.n, &obuf), 0);
        memset(&recs, 0, sizeof(recs));
        ck_assert_int_eq(lw_m2m_decode(cfs[f], lw_buf_bytes(&obuf), &req, &test_types, NULL, &arena,
                                       &recs, NULL),
                         0);
        ck_assert_uint_eq(recs.n, tlv.n);
        for (size_t k = 0; k < recs.n; k++) {
            ck_assert(lw_m2m_path_eq(&recs.v[k].path, &tlv.v[k].path));
            ck_assert(value_eq(&recs.v[k].value, &tlv.v[k].value));
        }
        check_device(0);
    }
    /* old JSON with a record at the request path and one below it */
    struct lw_m2m_record two[2] = {
        {.path = LW_M2M_PATH3(9, 0, 4),
         .value = {.type = LW_M2M_T_FLOAT, .f = 1.5},
         .has_value = true},
        {.path = LW_M2M_PATH4(9, 0, 4, 2),
         .value = {.type = LW_M2M_T_FLOAT, .f = 2.5},
         .has_value = true},
    };
    req = LW_M2M_PATH3(9, 0, 4);
    lw_buf_reset(&obuf);
    ck_assert_int_eq(lw_m2m_encode(LW_M2M_CF_JSON, &req, two, 2, &obuf), 0);
    const char *want =
        "{\"bn\":\"/9/0/4\",\"e\":[{\"n\":\"\",\"v\":1.5},{\"n\":\"/2\",\"v\":2.5}]}";
    ck_assert_uint_eq(obuf.len, strlen(want));
    ck_assert_mem_eq(obuf.data, want, obuf.len);
}
END_TEST

Suite *suite_fmt(void);
Suite *suite_fmt(void)
{
    Suite *s = suite_create("lwm2m_fmt");
    TCase *tc = tcase_create("fmt");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, tlv_device_instance);
    tcase_add_test(tc, tlv_device_object);
    tcase_add_test(tc, tlv_unknown_types_are_opaque);
    tcase_add_test(tc, tlv_resource_shapes);
    tcase_add_test(tc, tlv_number_widths);
    tcase_add_test(tc, tlv_rejects);
    tcase_add_test(tc, text_values);
    tcase_add_test(tc, opaque_and_cbor_single);
    tcase_add_test(tc, cf_names_and_dispatch);
    tcase_add_test(tc, roundtrip_matrix);
    tcase_add_test(tc, roundtrip_timestamps);
    tcase_add_test(tc, cross_format);
    suite_add_tcase(s, tc);
    return s;
}
