/* Unit tests for lib/lwm2m/fmt*: SenML JSON/CBOR, composite path lists, old LwM2M JSON and
 * LwM2M CBOR, with the byte examples of protocol.md §4.3 and §5.4-5.6. */
#include "base/err.h"
#include "base/util.h"
#include "lwm2m/fmt.h"
#include "../testutil.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static enum lw_m2m_type st_type_of(void *ctx, const struct lw_m2m_path *p)
{
    const enum lw_m2m_type *objlnk6 = ctx;
    if (p->len < 3)
        return LW_M2M_T_NONE;
    if (p->id[0] == 3) {
        switch (p->id[2]) {
        case 0:
        case 14:
        case 16: return LW_M2M_T_STRING;
        case 9:
        case 6: return LW_M2M_T_INTEGER;
        case 13: return LW_M2M_T_TIME;
        case 22: return LW_M2M_T_OBJLNK;
        default: return LW_M2M_T_NONE;
        }
    }
    if (p->id[0] == 0 && p->id[2] == 3)
        return LW_M2M_T_OPAQUE;
    if (p->id[0] == 13 && p->id[2] == 6 && objlnk6)
        return *objlnk6;
    if (p->id[0] == 13 && p->id[2] == 1)
        return LW_M2M_T_INTEGER;
    return LW_M2M_T_NONE;
}
static const struct lw_m2m_types st_types = {st_type_of, NULL};

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

static int dec_b(uint16_t cf, const void *p, size_t n, struct lw_m2m_path req,
                 const struct lw_m2m_types *t, size_t *off)
{
    memset(&recs, 0, sizeof(recs));
    return lw_m2m_decode(cf, LW_BYTES(p, n), &req, t, NULL, &arena, &recs, off);
}

static int dec_hex(uint16_t cf, const char *hex, struct lw_m2m_path req, size_t *off)
{
    size_t n;
    uint8_t *p = thex(hex, &n);
    return dec_b(cf, p, n, req, &st_types, off);
}

static int dec_str(uint16_t cf, const char *s, struct lw_m2m_path req, size_t *off)
{
    return dec_b(cf, s, strlen(s), req, &st_types, off);
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

static void assert_out_str(const char *s)
{
    ck_assert_msg(obuf.len == strlen(s) && memcmp(obuf.data, s, obuf.len) == 0, "got %.*s",
                  (int)obuf.len, (const char *)obuf.data);
}

static void assert_rec_int(size_t k, struct lw_m2m_path p, enum lw_m2m_type t, int64_t v)
{
    ck_assert_uint_lt(k, recs.n);
    ck_assert(lw_m2m_path_eq(&recs.v[k].path, &p));
    ck_assert(recs.v[k].has_value);
    ck_assert_int_eq(recs.v[k].value.type, t);
    ck_assert_int_eq(recs.v[k].value.i, v);
}

/* ---- SenML ---- */

START_TEST(senml_cbor_two_resources)
{
    const char *hex = "82 A3 21 66 2F31332F3236 00 62 2F31 02 18 2A A2 00 62 2F32 02 15";
    ck_assert_int_eq(dec_hex(LW_M2M_CF_SENML_CBOR, hex, LW_M2M_PATH2(13, 26), NULL), 0);
    ck_assert_uint_eq(recs.n, 2);
    assert_rec_int(0, LW_M2M_PATH3(13, 26, 1), LW_M2M_T_INTEGER, 42);
    assert_rec_int(1, LW_M2M_PATH3(13, 26, 2), LW_M2M_T_INTEGER, 21);
    ck_assert_int_eq(enc(LW_M2M_CF_SENML_CBOR, LW_M2M_PATH2(13, 26)), 0);
    assert_out_hex(hex);
    /* same data in SenML JSON */
    const char *json = "[{\"bn\":\"/13/26\",\"n\":\"/1\",\"v\":42},{\"n\":\"/2\",\"v\":21}]";
    ck_assert_int_eq(dec_str(LW_M2M_CF_SENML_JSON, json, LW_M2M_PATH2(13, 26), NULL), 0);
    ck_assert_uint_eq(recs.n, 2);
    assert_rec_int(1, LW_M2M_PATH3(13, 26, 2), LW_M2M_T_INTEGER, 21);
    ck_assert_int_eq(enc(LW_M2M_CF_SENML_JSON, LW_M2M_PATH2(13, 26)), 0);
    assert_out_str(json);
    /* a request path not containing the records is refused */
    size_t off = 99;
    ck_assert_int_eq(dec_hex(LW_M2M_CF_SENML_CBOR, hex, LW_M2M_PATH2(13, 27), &off), LW_EMALFORMED);
    ck_assert_uint_eq(off, 1);
}
END_TEST

START_TEST(senml_opaque)
{
    const char *hex = "81 A2 21 66 2F302F302F33 08 43 ABCDEF";
    ck_assert_int_eq(dec_hex(LW_M2M_CF_SENML_CBOR, hex, LW_M2M_PATH3(0, 0, 3), NULL), 0);
    ck_assert_uint_eq(recs.n, 1);
    ck_assert_int_eq(recs.v[0].value.type, LW_M2M_T_OPAQUE);
    ck_assert_mem_eq(recs.v[0].value.bytes.ptr, "\xab\xcd\xef", 3);
    ck_assert_int_eq(enc(LW_M2M_CF_SENML_CBOR, LW_M2M_PATH3(0, 0, 3)), 0);
    assert_out_hex(hex);
    const char *json = "[{\"bn\":\"/0/0/3\",\"vd\":\"q83v\"}]";
    ck_assert_int_eq(dec_str(LW_M2M_CF_SENML_JSON, json, LW_M2M_PATH3(0, 0, 3), NULL), 0);
    ck_assert_mem_eq(recs.v[0].value.bytes.ptr, "\xab\xcd\xef", 3);
    ck_assert_int_eq(enc(LW_M2M_CF_SENML_JSON, LW_M2M_PATH3(0, 0, 3)), 0);
    assert_out_str(json);
    /* padded / standard-alphabet base64 is tolerated */
    ck_assert_int_eq(dec_str(LW_M2M_CF_SENML_JSON, "[{\"bn\":\"/0/0/3\",\"vd\":\"+/8=\"}]",
                             LW_M2M_PATH_ROOT, NULL),
                     0);
    ck_assert_mem_eq(recs.v[0].value.bytes.ptr, "\xfb\xff", 2);
}
END_TEST

START_TEST(senml_json_device)
{
    const char *json = "[{\"bn\":\"/3/0/\",\"n\":\"0\",\"vs\":\"Open Mobile Alliance\"},"
                       "{\"n\":\"6/0\",\"v\":1},{\"n\":\"6/1\",\"v\":5},"
                       "{\"n\":\"13\",\"v\":1367491215},{\"n\":\"14\",\"vs\":\"+02:00\"},"
                       "{\"n\":\"22/0\",\"vlo\":\"4:1\"},{\"n\":\"16\",\"vs\":\"U\"}]";
    ck_assert_int_eq(dec_str(LW_M2M_CF_SENML_JSON, json, LW_M2M_PATH2(3, 0), NULL), 0);
    ck_assert_uint_eq(recs.n, 7);
    ck_assert(lw_bytes_eq_str(recs.v[0].value.bytes, "Open Mobile Alliance"));
    assert_rec_int(2, LW_M2M_PATH4(3, 0, 6, 1), LW_M2M_T_INTEGER, 5);
    assert_rec_int(3, LW_M2M_PATH3(3, 0, 13), LW_M2M_T_TIME, 1367491215);
    ck_assert_int_eq(recs.v[5].value.type, LW_M2M_T_OBJLNK);
    ck_assert_uint_eq(recs.v[5].value.lnk.obj, 4);
    /* re-encoding uses the Anjay-style split: bn "/3/0", n "/0" */
    ck_assert_int_eq(enc(LW_M2M_CF_SENML_JSON, LW_M2M_PATH2(3, 0)), 0);
    struct lw_m2m_records first = recs;
    struct lw_buf copy;
    lw_buf_init(&copy, 0);
    lw_buf_put(&copy, obuf.data, obuf.len);
    ck_assert_int_eq(
        dec_b(LW_M2M_CF_SENML_JSON, copy.data, copy.len, LW_M2M_PATH2(3, 0), &st_types, NULL), 0);
    ck_assert_uint_eq(recs.n, first.n);
    for (size_t k = 0; k < recs.n; k++)
        ck_assert(lw_m2m_path_eq(&recs.v[k].path, &first.v[k].path));
    lw_buf_deinit(&copy);
}
END_TEST

START_TEST(senml_times_and_numbers)
{
    const char *json = "[{\"bn\":\"/3/0/\",\"bt\":1000,\"n\":\"9\",\"v\":5,\"t\":2},"
                       "{\"n\":\"9\",\"v\":7},{\"bt\":5,\"n\":\"9\",\"v\":8,\"t\":-1}]";
    ck_assert_int_eq(dec_str(LW_M2M_CF_SENML_JSON, json, LW_M2M_PATH_ROOT, NULL), 0);
    ck_assert_uint_eq(recs.n, 3);
    ck_assert(recs.v[0].has_time && recs.v[0].time == 1002);
    ck_assert(recs.v[1].has_time && recs.v[1].time == 1000);
    ck_assert(recs.v[2].has_time && recs.v[2].time == 4);
    /* CBOR: tag 4 decimal fraction time (Leshan), tag-4 value, base time */
    const char *hex = "82 A5 21 65 2F352F302F 22 19 03E8 00 61 39 02 05 06 C4 82 00 1A 6553F100"
                      " A3 00 63 312F35 02 C4 82 20 0F 06 F9 3C00";
    ck_assert_int_eq(dec_hex(LW_M2M_CF_SENML_CBOR, hex, LW_M2M_PATH_ROOT, NULL), 0);
    ck_assert_uint_eq(recs.n, 2);
    ck_assert(recs.v[0].time == 1000.0 + 1700000000.0);
    assert_rec_int(0, LW_M2M_PATH3(5, 0, 9), LW_M2M_T_INTEGER, 5);
    ck_assert(lw_m2m_path_eq(&recs.v[1].path, &LW_M2M_PATH4(5, 0, 1, 5)));
    ck_assert_int_eq(recs.v[1].value.type, LW_M2M_T_FLOAT);
    ck_assert(recs.v[1].value.f == 1.5);
    ck_assert(recs.v[1].has_time && recs.v[1].time == 1001.0);
}
END_TEST

START_TEST(senml_model_types)
{
    size_t off;
    /* numbers follow the model: Float resource gets 3.0 from "3" */
    ck_assert_int_eq(
        dec_str(LW_M2M_CF_SENML_JSON, "[{\"n\":\"/5/0/1\",\"v\":3}]", LW_M2M_PATH_ROOT, NULL), 0);
    ck_assert_int_eq(recs.v[0].value.type, LW_M2M_T_INTEGER); /* unknown type: integral */
    ck_assert_int_eq(
        dec_str(LW_M2M_CF_SENML_JSON, "[{\"n\":\"/5/0/1\",\"v\":3.25}]", LW_M2M_PATH_ROOT, NULL),
        0);
    ck_assert_int_eq(recs.v[0].value.type, LW_M2M_T_FLOAT);
    ck_assert_int_eq(
        dec_str(LW_M2M_CF_SENML_JSON, "[{\"n\":\"/3/0/9\",\"v\":3.0}]", LW_M2M_PATH_ROOT, NULL), 0);
    assert_rec_int(0, LW_M2M_PATH3(3, 0, 9), LW_M2M_T_INTEGER, 3);
    ck_assert_int_eq(dec_str(LW_M2M_CF_SENML_JSON,
                             "[{\"n\":\"/9/9/9\"},{\"n\":\"/3/0/9\",\"v\":3.5}]", LW_M2M_PATH_ROOT,
                             &off),
                     LW_ETYPE);
    ck_assert_uint_eq(off, 16); /* the second record's '{' */
    ck_assert_int_eq(
        dec_str(LW_M2M_CF_SENML_JSON, "[{\"n\":\"/3/0/0\",\"vb\":true}]", LW_M2M_PATH_ROOT, &off),
        LW_ETYPE);
    ck_assert_int_eq(dec_hex(LW_M2M_CF_SENML_CBOR, "81 A2 00 66 2F332F302F39 02 F9 3E00",
                             LW_M2M_PATH_ROOT, &off),
                     LW_ETYPE);
    ck_assert_uint_eq(off, 11);
}
END_TEST

START_TEST(senml_rejects)
{
    size_t off;
    const char *bad_json[] = {
        "{\"n\":\"/3/0/9\",\"v\":1}",                      /* not an array */
        "[{\"n\":\"/3/0/9\",\"v\":1}",                     /* truncated */
        "[{\"n\":\"/3/0/9\",\"v\":\"1\"}]",                /* v not a number */
        "[{\"n\":\"/3/0/9\",\"vs\":1}]",                   /* vs not a string */
        "[{\"n\":\"/3/0/9\",\"v\":1,\"vs\":\"x\"}]",       /* two values */
        "[{\"n\":\"/3/0/9\",\"bv\":1,\"v\":1}]",           /* base value: rejected */
        "[{\"n\":\"/3/0/9\",\"s\":1}]",                    /* sum: rejected */
        "[{\"n\":\"/3/0/9\",\"v\":1,\"x_\":1}]",           /* must-understand label */
        "[{\"n\":\"3/0/9\",\"v\":1}]",                     /* not a path */
        "[{\"n\":\"/3/0/9/1/2\",\"v\":1}]",                /* too deep */
        "[{\"n\":\"/3/0\",\"v\":1}]",                      /* value on an instance */
        "[{\"n\":\"/3/0/1\",\"vd\":\"***\"}]",             /* bad base64 */
        "[{\"n\":\"/3/0/1\",\"vlo\":\"3\"}]",              /* bad objlnk */
        "[{\"n\":\"/3/0/9\",\"v\":1,\"n\":\"/3/0/8\"}]",   /* duplicate key */
        "[1]",                                             /* not an object */
        "[{\"n\":\"/3/0/9\",\"v\":99999999999999999999}]", /* beyond int64 */
    };
    for (size_t k = 0; k < LW_ARRAY_SIZE(bad_json); k++) {
        off = 12345;
        int rc = dec_str(LW_M2M_CF_SENML_JSON, bad_json[k], LW_M2M_PATH_ROOT, &off);
        ck_assert_msg(rc == LW_EMALFORMED, "json %zu: %d", k, rc);
        ck_assert_uint_le(off, strlen(bad_json[k]));
    }
    struct {
        const char *hex;
        size_t off;
    } bad_cbor[] = {
        {"A0", 0},                                       /* not an array */
        {"81", 0},                                       /* truncated */
        {"9B FFFFFFFFFFFFFFFF", 0},                      /* absurd count, no allocation */
        {"81 BB FFFFFFFFFFFFFFFF", 1},                   /* absurd map count */
        {"81 A1 00 7B FFFFFFFFFFFFFFFF", 3},             /* absurd string length */
        {"81 A2 00 66 2F332F302F39 24 01", 10},          /* bv (-5) */
        {"81 A2 00 66 2F332F302F39 02 61 31", 11},       /* v is text */
        {"81 A2 00 66 2F332F302F39 00 61 31", 10},       /* duplicate n */
        {"81 A3 00 66 2F332F302F39 02 01 03 61 31", 12}, /* two values */
        {"81 A1 00 62 2F FF", 1},                        /* invalid name: reported at its record */
        {"81 A1 F6 01", 2},                              /* null key */
        {"81 A1 00 66 2F332F302F39 00", 10},             /* trailing byte */
        {"81 A1 1C 00", 2},                              /* reserved additional info */
        {"81 A1 00 5F 41 2F 61 33 FF", 6},               /* mixed chunk types */
    };
    for (size_t k = 0; k < LW_ARRAY_SIZE(bad_cbor); k++) {
        off = 12345;
        int rc = dec_hex(LW_M2M_CF_SENML_CBOR, bad_cbor[k].hex, LW_M2M_PATH_ROOT, &off);
        ck_assert_msg(rc == LW_EMALFORMED, "cbor %zu: %d", k, rc);
        ck_assert_msg(off == bad_cbor[k].off, "cbor %zu: off %zu", k, off);
    }
    /* limits */
    struct lw_m2m_fmt_cfg cfg = {.max_records = 1};
    struct lw_m2m_path root = LW_M2M_PATH_ROOT;
    size_t n;
    uint8_t *p = thex("82 A2 00 66 2F332F302F39 02 01 A2 00 66 2F332F302F39 02 02", &n);
    memset(&recs, 0, sizeof(recs));
    ck_assert_int_eq(
        lw_m2m_decode(LW_M2M_CF_SENML_CBOR, LW_BYTES(p, n), &root, NULL, &cfg, &arena, &recs, &off),
        LW_ELIMIT);
    const char *two = "[{\"n\":\"/3/0/9\",\"v\":1},{\"n\":\"/3/0/9\",\"v\":1}]";
    ck_assert_int_eq(lw_m2m_decode(LW_M2M_CF_SENML_JSON, LW_BYTES_STR(two), &root, NULL, &cfg,
                                   &arena, &recs, &off),
                     LW_ELIMIT);
    cfg = (struct lw_m2m_fmt_cfg){.max_value_len = 2};
    p = thex("81 A2 00 66 2F332F302F31 03 63 616263", &n);
    ck_assert_int_eq(
        lw_m2m_decode(LW_M2M_CF_SENML_CBOR, LW_BYTES(p, n), &root, NULL, &cfg, &arena, &recs, &off),
        LW_ELIMIT);
    /* deep tag nesting hits the depth limit */
    uint8_t deep[64];
    size_t w = 0;
    const uint8_t head[] = {0x81, 0xA2, 0x00, 0x66, '/', '3', '/', '0', '/', '9', 0x02};
    memcpy(deep, head, sizeof(head));
    w = sizeof(head);
    for (int k = 0; k < 40; k++)
        deep[w++] = 0xC1; /* tag 1 */
    deep[w++] = 0x01;
    memset(&recs, 0, sizeof(recs));
    ck_assert_int_eq(lw_m2m_decode(LW_M2M_CF_SENML_CBOR, LW_BYTES(deep, w), &root, NULL, NULL,
                                   &arena, &recs, &off),
                     LW_ELIMIT);
}
END_TEST

START_TEST(senml_cbor_indefinite_and_ignored)
{
    /* indefinite array and maps, chunked name, ignored unit/bver labels */
    const char *hex = "9F BF 21 7F 63 2F3133 63 2F3236 FF 00 62 2F31 01 61 43 20 0A 02 18 2A FF"
                      " BF 00 62 2F32 04 F5 FF FF";
    ck_assert_int_eq(dec_hex(LW_M2M_CF_SENML_CBOR, hex, LW_M2M_PATH_ROOT, NULL), 0);
    ck_assert_uint_eq(recs.n, 2);
    assert_rec_int(0, LW_M2M_PATH3(13, 26, 1), LW_M2M_T_INTEGER, 42);
    ck_assert_int_eq(recs.v[1].value.type, LW_M2M_T_BOOLEAN);
    ck_assert(recs.v[1].value.b);
    /* vlo text label and vs */
    hex = "82 A2 00 69 2F332F302F32322F30 63 766C6F 63 333A30 A2 00 67 2F332F302F3134 03 60";
    ck_assert_int_eq(dec_hex(LW_M2M_CF_SENML_CBOR, hex, LW_M2M_PATH_ROOT, NULL), 0);
    ck_assert_int_eq(recs.v[0].value.type, LW_M2M_T_OBJLNK);
    ck_assert_int_eq(recs.v[1].value.type, LW_M2M_T_STRING);
    ck_assert_uint_eq(recs.v[1].value.bytes.len, 0);
    ck_assert_int_eq(enc(LW_M2M_CF_SENML_CBOR, LW_M2M_PATH_ROOT), 0);
    assert_out_hex(hex);
}
END_TEST

START_TEST(composite_paths)
{
    const char *hex = "82 a1 00 66 2f 33 2f 30 2f 30 a1 00 66 2f 31 2f 30 2f 31";
    size_t n, off;
    uint8_t *p = thex(hex, &n);
    memset(&recs, 0, sizeof(recs));
    ck_assert_int_eq(
        lw_m2m_decode_paths(LW_M2M_CF_SENML_CBOR, LW_BYTES(p, n), NULL, &arena, &recs, &off), 0);
    ck_assert_uint_eq(recs.n, 2);
    ck_assert(lw_m2m_path_eq(&recs.v[1].path, &LW_M2M_PATH3(1, 0, 1)));
    ck_assert(!recs.v[0].has_value);
    struct lw_m2m_path paths[] = {LW_M2M_PATH3(3, 0, 0), LW_M2M_PATH3(1, 0, 1)};
    ck_assert_int_eq(lw_m2m_encode_paths(LW_M2M_CF_SENML_CBOR, paths, 2, &obuf), 0);
    assert_out_hex(hex);
    const char *json = "[{\"n\":\"/4/0/0\"},{\"n\":\"/3\"},{\"n\":\"/\"}]";
    memset(&recs, 0, sizeof(recs));
    ck_assert_int_eq(
        lw_m2m_decode_paths(LW_M2M_CF_SENML_JSON, LW_BYTES_STR(json), NULL, &arena, &recs, &off),
        0);
    ck_assert_uint_eq(recs.n, 3);
    ck_assert_uint_eq(recs.v[2].path.len, 0);
    struct lw_m2m_path jp[3] = {recs.v[0].path, recs.v[1].path, recs.v[2].path};
    lw_buf_reset(&obuf);
    ck_assert_int_eq(lw_m2m_encode_paths(LW_M2M_CF_SENML_JSON, jp, 3, &obuf), 0);
    assert_out_str(json);
    /* values are not allowed in a path list */
    const char *val = "[{\"n\":\"/4/0/0\",\"v\":1}]";
    ck_assert_int_eq(
        lw_m2m_decode_paths(LW_M2M_CF_SENML_JSON, LW_BYTES_STR(val), NULL, &arena, &recs, &off),
        LW_EMALFORMED);
    ck_assert_int_eq(
        lw_m2m_decode_paths(LW_M2M_CF_TLV, LW_BYTES_STR(val), NULL, &arena, &recs, &off),
        LW_ENOTSUP);
}
END_TEST

/* ---- old LwM2M JSON ---- */

START_TEST(json_device)
{
    const char *json = "{\"bn\":\"/3/0/\",\"e\":[{\"n\":\"0\",\"sv\":\"Open Mobile Alliance\"},"
                       "{\"n\":\"6/0\",\"v\":1},{\"n\":\"13\",\"v\":1367491215},"
                       "{\"n\":\"22/0\",\"ov\":\"4:1\"}]}";
    ck_assert_int_eq(dec_str(LW_M2M_CF_JSON, json, LW_M2M_PATH2(3, 0), NULL), 0);
    ck_assert_uint_eq(recs.n, 4);
    ck_assert(lw_bytes_eq_str(recs.v[0].value.bytes, "Open Mobile Alliance"));
    assert_rec_int(1, LW_M2M_PATH4(3, 0, 6, 0), LW_M2M_T_INTEGER, 1);
    assert_rec_int(2, LW_M2M_PATH3(3, 0, 13), LW_M2M_T_TIME, 1367491215);
    ck_assert_int_eq(recs.v[3].value.type, LW_M2M_T_OBJLNK);
    ck_assert_int_eq(enc(LW_M2M_CF_JSON, LW_M2M_PATH2(3, 0)), 0);
    assert_out_str(json);
    /* Leshan writes objlnk as sv; opaque is padded base64 in sv; bt + t; no bn */
    json = "{\"bt\":100,\"e\":[{\"n\":\"22/1\",\"sv\":\"5:6\",\"t\":1},"
           "{\"n\":\"/0/0/3\",\"sv\":\"q83v\"},{\"n\":\"9\",\"v\":3}]}";
    ck_assert_int_eq(dec_str(LW_M2M_CF_JSON_OLD, json, LW_M2M_PATH_ROOT, NULL), LW_EMALFORMED);
    ck_assert_int_eq(dec_str(LW_M2M_CF_JSON_OLD, json, LW_M2M_PATH2(3, 0), NULL), LW_EMALFORMED);
    json = "{\"bt\":100,\"e\":[{\"n\":\"22/1\",\"sv\":\"5:6\",\"t\":1},{\"n\":\"9\",\"v\":3}]}";
    ck_assert_int_eq(dec_str(LW_M2M_CF_JSON_OLD, json, LW_M2M_PATH2(3, 0), NULL), 0);
    ck_assert_uint_eq(recs.v[0].value.lnk.inst, 6);
    ck_assert(recs.v[0].time == 101 && recs.v[1].time == 100);
    json = "{\"e\":[{\"n\":\"/0/0/3\",\"sv\":\"q83v\"}]}";
    ck_assert_int_eq(dec_str(LW_M2M_CF_JSON, json, LW_M2M_PATH_ROOT, NULL), 0);
    ck_assert_int_eq(recs.v[0].value.type, LW_M2M_T_OPAQUE);
    ck_assert_mem_eq(recs.v[0].value.bytes.ptr, "\xab\xcd\xef", 3);
    /* a single resource: bn names it and n is empty */
    json = "{\"bn\":\"/3/0/9\",\"e\":[{\"n\":\"\",\"v\":3}]}";
    ck_assert_int_eq(dec_str(LW_M2M_CF_JSON, json, LW_M2M_PATH3(3, 0, 9), NULL), 0);
    ck_assert_int_eq(enc(LW_M2M_CF_JSON, LW_M2M_PATH3(3, 0, 9)), 0);
    assert_out_str(json);
    size_t off;
    const char *bad[] = {
        "[]",
        "{\"e\":{}}",
        "{\"bn\":1,\"e\":[]}",
        "{\"e\":[{\"n\":\"/3/0/9\",\"v\":1,\"sv\":\"1\"}]}",
        "{\"e\":[{\"n\":\"/3/0/9\",\"bv\":1}]}",
        "{\"e\":[{\"n\":\"/5/0/1\",\"ov\":\"x\"}]}",
        "{\"e\":[{\"n\":\"/3/0/9/9/9\",\"v\":1}]}",
        "{\"e\":[{\"n\":\"/3/0/9\",\"v\":1}",
    };
    for (size_t k = 0; k < LW_ARRAY_SIZE(bad); k++)
        ck_assert_msg(dec_str(LW_M2M_CF_JSON, bad[k], LW_M2M_PATH_ROOT, &off) == LW_EMALFORMED,
                      "bad %zu", k);
    ck_assert_int_eq(dec_str(LW_M2M_CF_JSON, "{\"e\":[{\"n\":\"/3/0/9\",\"sv\":\"1\"}]}",
                             LW_M2M_PATH_ROOT, &off),
                     LW_ETYPE);
    ck_assert_uint_eq(off, 6);
}
END_TEST

/* ---- LwM2M CBOR ---- */

START_TEST(lwm2m_cbor_nested)
{
    const char *a = "BF 82 0D 18 1A BF 01 18 2A 03 BF 15 FB 40516B851EB851EC 18 25 F4 FF FF FF";
    ck_assert_int_eq(dec_hex(LW_M2M_CF_LWM2M_CBOR, a, LW_M2M_PATH2(13, 26), NULL), 0);
    ck_assert_uint_eq(recs.n, 3);
    assert_rec_int(0, LW_M2M_PATH3(13, 26, 1), LW_M2M_T_INTEGER, 42);
    ck_assert(lw_m2m_path_eq(&recs.v[1].path, &LW_M2M_PATH4(13, 26, 3, 21)));
    ck_assert_int_eq(recs.v[1].value.type, LW_M2M_T_FLOAT);
    ck_assert(recs.v[1].value.f == 69.68);
    ck_assert(lw_m2m_path_eq(&recs.v[2].path, &LW_M2M_PATH4(13, 26, 3, 37)));
    ck_assert_int_eq(recs.v[2].value.type, LW_M2M_T_BOOLEAN);
    ck_assert(!recs.v[2].value.b);
    /* re-encoded with definite lengths */
    ck_assert_int_eq(enc(LW_M2M_CF_LWM2M_CBOR, LW_M2M_PATH2(13, 26)), 0);
    assert_out_hex("A1 82 0D 18 1A A2 01 18 2A 03 A2 15 FB 40516B851EB851EC 18 25 F4");
}
END_TEST

START_TEST(lwm2m_cbor_all_types)
{
    const char *b = "A1 82 0D 18 1A A7 01 01 02 20 03 F9 41 00 04 64 74 65 73 74 05 44 11 22 33 "
                    "44 06 65 31 32 3A 33 34 07 01";
    ck_assert_int_eq(dec_hex(LW_M2M_CF_LWM2M_CBOR, b, LW_M2M_PATH_ROOT, NULL), 0);
    ck_assert_uint_eq(recs.n, 7);
    assert_rec_int(0, LW_M2M_PATH3(13, 26, 1), LW_M2M_T_INTEGER, 1);
    assert_rec_int(1, LW_M2M_PATH3(13, 26, 2), LW_M2M_T_INTEGER, -1);
    ck_assert(recs.v[2].value.type == LW_M2M_T_FLOAT && recs.v[2].value.f == 2.5);
    ck_assert(lw_bytes_eq_str(recs.v[3].value.bytes, "test"));
    ck_assert_int_eq(recs.v[4].value.type, LW_M2M_T_OPAQUE);
    ck_assert_int_eq(recs.v[5].value.type, LW_M2M_T_STRING); /* no model: text */
    ck_assert_int_eq(enc(LW_M2M_CF_LWM2M_CBOR, LW_M2M_PATH_ROOT), 0);
    assert_out_hex(b);
    /* with a model saying /13/x/6 is an Objlnk */
    enum lw_m2m_type objlnk = LW_M2M_T_OBJLNK;
    struct lw_m2m_types t = {st_type_of, &objlnk};
    size_t n;
    uint8_t *p = thex(b, &n);
    ck_assert_int_eq(dec_b(LW_M2M_CF_LWM2M_CBOR, p, n, LW_M2M_PATH_ROOT, &t, NULL), 0);
    ck_assert_int_eq(recs.v[5].value.type, LW_M2M_T_OBJLNK);
    ck_assert_uint_eq(recs.v[5].value.lnk.obj, 12);
    ck_assert_uint_eq(recs.v[5].value.lnk.inst, 34);
    ck_assert_int_eq(enc(LW_M2M_CF_LWM2M_CBOR, LW_M2M_PATH_ROOT), 0);
    assert_out_hex(b);
    /* single resource (3c), composite across objects */
    ck_assert_int_eq(
        dec_hex(LW_M2M_CF_LWM2M_CBOR, "BF 83 0D 18 1A 01 18 2A FF", LW_M2M_PATH3(13, 26, 1), NULL),
        0);
    assert_rec_int(0, LW_M2M_PATH3(13, 26, 1), LW_M2M_T_INTEGER, 42);
    ck_assert_int_eq(enc(LW_M2M_CF_LWM2M_CBOR, LW_M2M_PATH3(13, 26, 1)), 0);
    assert_out_hex("A1 83 0D 18 1A 01 18 2A");
    const char *comp = "A2 0D A1 18 1A A2 01 18 2A 02 15 0E A1 18 1B A2 01 18 2B 02 16";
    ck_assert_int_eq(dec_hex(LW_M2M_CF_LWM2M_CBOR, comp, LW_M2M_PATH_ROOT, NULL), 0);
    ck_assert_uint_eq(recs.n, 4);
    assert_rec_int(3, LW_M2M_PATH3(14, 27, 2), LW_M2M_T_INTEGER, 22);
    ck_assert_int_eq(enc(LW_M2M_CF_LWM2M_CBOR, LW_M2M_PATH_ROOT), 0);
    assert_out_hex("A2 82 0D 18 1A A2 01 18 2A 02 15 82 0E 18 1B A2 01 18 2B 02 16");
    /* null leaf, indefinite byte string, tag 1 */
    ck_assert_int_eq(dec_hex(LW_M2M_CF_LWM2M_CBOR,
                             "A1 83 0D 18 1A 05 A3 00 F6 01 5F 42 0102 41 03 FF 02 C1 01",
                             LW_M2M_PATH_ROOT, NULL),
                     0);
    ck_assert_uint_eq(recs.n, 3);
    ck_assert(!recs.v[0].has_value);
    ck_assert_uint_eq(recs.v[0].path.len, 4);
    ck_assert_uint_eq(recs.v[1].value.bytes.len, 3);
    ck_assert_mem_eq(recs.v[1].value.bytes.ptr, "\x01\x02\x03", 3);
    ck_assert_int_eq(recs.v[2].value.type, LW_M2M_T_INTEGER); /* tag 1 ignored */
}
END_TEST

START_TEST(lwm2m_cbor_rejects)
{
    struct {
        const char *hex;
        int rc;
        size_t off;
    } cases[] = {
        {"80", LW_EMALFORMED, 0},                         /* not a map */
        {"A1 61 31 01", LW_EMALFORMED, 1},                /* text key */
        {"A1 80 01", LW_EMALFORMED, 1},                   /* empty path key */
        {"A1 85 01 02 03 04 05 01", LW_EMALFORMED, 6},    /* 5 ids */
        {"A1 84 01 02 03 04 A1 05 01", LW_EMALFORMED, 6}, /* map below a resource instance */
        {"A1 82 01 02 01", LW_EMALFORMED, 4},             /* leaf on an instance */
        {"A1 83 01 02 03 01 00", LW_EMALFORMED, 6},       /* trailing */
        {"A1 83 01 02 03 80", LW_EMALFORMED, 5},          /* array leaf */
        {"A1 83 01 02 19 FFFF 01", LW_EMALFORMED, 4},     /* id 65535 */
        {"A1 83 03 00 09 61 78", LW_ETYPE, 5},            /* text for an Integer */
        {"A1 83 03 00 09 F9 3E00", LW_ETYPE, 5},          /* 1.5 for an Integer */
        {"A1 83 03 00 00 7F 61 31", LW_EMALFORMED, 8},    /* unterminated chunks */
        {"BF 83 01 02 03 01", LW_EMALFORMED, 6},          /* unterminated map */
        {"A1 83 03 00 09", LW_EMALFORMED, 5},             /* missing value */
        {"A1 83 03 00 00 62 C3 28", LW_EMALFORMED, 5},    /* invalid UTF-8 */
    };
    for (size_t k = 0; k < LW_ARRAY_SIZE(cases); k++) {
        size_t off = 12345;
        int rc = dec_hex(LW_M2M_CF_LWM2M_CBOR, cases[k].hex, LW_M2M_PATH_ROOT, &off);
        ck_assert_msg(rc == cases[k].rc, "case %zu: %d", k, rc);
        ck_assert_msg(off == cases[k].off, "case %zu: off %zu", k, off);
    }
    /* encoder: duplicate paths and a record prefixing another become repeated keys */
    struct lw_m2m_record r[3] = {
        {.path = LW_M2M_PATH3(3, 0, 9), .value = {.type = LW_M2M_T_INTEGER}, .has_value = true},
        {.path = LW_M2M_PATH3(3, 0, 9), .value = {.type = LW_M2M_T_INTEGER}, .has_value = true},
        {.path = LW_M2M_PATH4(3, 0, 9, 1), .value = {.type = LW_M2M_T_INTEGER}, .has_value = true},
    };
    struct lw_m2m_path root = LW_M2M_PATH_ROOT;
    ck_assert_int_eq(lw_m2m_encode(LW_M2M_CF_LWM2M_CBOR, &root, r, 3, &obuf), 0);
    assert_out_hex("A1 82 03 00 A3 09 00 09 00 82 09 01 00");
    ck_assert_int_eq(dec_b(LW_M2M_CF_LWM2M_CBOR, obuf.data, obuf.len, root, NULL, NULL), 0);
    ck_assert_uint_eq(recs.n, 3);
    ck_assert_uint_eq(recs.v[2].path.len, 4);
    r[0].path.len = 0;
    lw_buf_reset(&obuf);
    ck_assert_int_eq(lw_m2m_encode(LW_M2M_CF_LWM2M_CBOR, &root, r, 1, &obuf), LW_EINVAL);
}
END_TEST

Suite *suite_fmt_senml(void);
Suite *suite_fmt_senml(void)
{
    Suite *s = suite_create("lwm2m_fmt_senml");
    TCase *tc = tcase_create("senml");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, senml_cbor_two_resources);
    tcase_add_test(tc, senml_opaque);
    tcase_add_test(tc, senml_json_device);
    tcase_add_test(tc, senml_times_and_numbers);
    tcase_add_test(tc, senml_model_types);
    tcase_add_test(tc, senml_rejects);
    tcase_add_test(tc, senml_cbor_indefinite_and_ignored);
    tcase_add_test(tc, composite_paths);
    tcase_add_test(tc, json_device);
    tcase_add_test(tc, lwm2m_cbor_nested);
    tcase_add_test(tc, lwm2m_cbor_all_types);
    tcase_add_test(tc, lwm2m_cbor_rejects);
    suite_add_tcase(s, tc);
    return s;
}
