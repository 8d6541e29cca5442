/* Unit tests of the telemetry spill record format (server/store/spill.h): CRC-32C vector,
 * encode/decode round trips of every value type and of events, torn and corrupt tails. */
#include "base/buf.h"
#include "base/err.h"
#include "lwm2m/value.h"
#include "store/spill.h"

#include <check.h>
#include <string.h>

START_TEST(crc32c_vector)
{
    /* RFC 3720 B.4 check value of CRC-32C over "123456789" */
    ck_assert_uint_eq(lw_spill_crc32c("123456789", 9), 0xE3069283u);
    ck_assert_uint_eq(lw_spill_crc32c("", 0), 0);
    ck_assert_uint_eq(lw__spill_crc32c_sw("123456789", 9), 0xE3069283u);
    /* RFC 3720 B.4: 32 zero bytes, 32 0xFF bytes, 0..31, 31..0 */
    uint8_t v[4][32];
    for (int i = 0; i < 32; i++) {
        v[0][i] = 0;
        v[1][i] = 0xFF;
        v[2][i] = (uint8_t)i;
        v[3][i] = (uint8_t)(31 - i);
    }
    const uint32_t want[4] = {0x8A9136AAu, 0x62A8AB43u, 0x46DD794Eu, 0x113FDB5Cu};
    for (int k = 0; k < 4; k++) {
        ck_assert_uint_eq(lw_spill_crc32c(v[k], 32), want[k]);
        ck_assert_uint_eq(lw__spill_crc32c_sw(v[k], 32), want[k]);
    }
    /* the fast path (8 bytes a step) and the table agree on every length and alignment */
    static uint8_t buf[300];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(i * 131 + 7);
    for (size_t off = 0; off < 8; off++)
        for (size_t n = 0; n + off <= sizeof(buf); n += 13)
            ck_assert_uint_eq(lw_spill_crc32c(buf + off, n), lw__spill_crc32c_sw(buf + off, n));
}
END_TEST

static void roundtrip(const struct lw_spill_rec *in)
{
    struct lw_buf b;
    struct lw_bytes pl;
    struct lw_spill_rec out;
    size_t off = 0;
    lw_buf_init(&b, 64);
    ck_assert_int_eq(lw_spill_encode(&b, in), 0);
    ck_assert_int_eq(lw_spill_next(b.data, b.len, &off, &pl), 1);
    ck_assert_uint_eq(off, b.len);
    ck_assert_int_eq(lw_spill_decode(pl, &out), 0);
    ck_assert_int_eq(out.kind, in->kind);
    ck_assert(lw_bytes_eq(out.ep, in->ep));
    if (in->kind == LW_SPILL_VALUE) {
        ck_assert_int_eq(out.type, in->type);
        ck_assert_int_eq(out.source, in->source);
        ck_assert_int_eq(out.at_us, in->at_us);
        ck_assert(lw_bytes_eq(out.path, in->path));
        ck_assert_int_eq(out.i, in->i);
        ck_assert_uint_eq(out.u, in->u);
        ck_assert(out.f == in->f);
        ck_assert_int_eq(out.b, in->b);
        ck_assert(lw_bytes_eq(out.bytes, in->bytes));
    } else {
        ck_assert_uint_eq(out.id, in->id);
        ck_assert_int_eq(out.time_ms, in->time_ms);
        ck_assert(lw_bytes_eq(out.evtype, in->evtype));
        ck_assert(lw_bytes_eq(out.data, in->data));
    }
    lw_buf_deinit(&b);
}

START_TEST(roundtrips)
{
    struct lw_spill_rec r = {.kind = LW_SPILL_VALUE,
                             .source = LW_SPILL_SEND,
                             .at_us = 1795316405123456,
                             .ep = LW_BYTES_LIT("meter-1"),
                             .path = LW_BYTES_LIT("/10243/0/6")};
    r.type = LW_M2M_T_FLOAT;
    r.f = -0.5;
    roundtrip(&r);
    r.f = 0;
    r.type = LW_M2M_T_INTEGER;
    r.i = INT64_MIN;
    roundtrip(&r);
    r.i = 0;
    r.type = LW_M2M_T_UNSIGNED;
    r.u = UINT64_MAX;
    roundtrip(&r);
    r.u = 0;
    r.type = LW_M2M_T_BOOLEAN;
    r.b = true;
    roundtrip(&r);
    r.b = false;
    r.type = LW_M2M_T_OPAQUE;
    r.bytes = LW_BYTES("\x00\x01\xff", 3);
    roundtrip(&r);
    r.type = LW_M2M_T_STRING;
    r.bytes = LW_BYTES_LIT("");
    roundtrip(&r);
    struct lw_spill_rec e = {.kind = LW_SPILL_EVENT,
                             .id = 42,
                             .time_ms = 1795316405123,
                             .evtype = LW_BYTES_LIT("send"),
                             .ep = LW_BYTES_LIT(""),
                             .data = LW_BYTES_LIT("{\"values\":[]}")};
    roundtrip(&e);
}
END_TEST

START_TEST(refuses_bad_input)
{
    struct lw_buf b;
    struct lw_spill_rec r = {.kind = LW_SPILL_VALUE, .type = 99, .ep = LW_BYTES_LIT("x")};
    lw_buf_init(&b, 64);
    ck_assert_int_eq(lw_spill_encode(&b, &r), LW_EINVAL);
    ck_assert_uint_eq(b.len, 0);
    r.type = LW_M2M_T_INTEGER;
    r.kind = 7;
    ck_assert_int_eq(lw_spill_encode(&b, &r), LW_EINVAL);
    lw_buf_deinit(&b);
}
END_TEST

START_TEST(torn_and_corrupt_tails)
{
    struct lw_buf b;
    struct lw_spill_rec r = {.kind = LW_SPILL_VALUE,
                             .type = LW_M2M_T_INTEGER,
                             .i = 7,
                             .ep = LW_BYTES_LIT("d"),
                             .path = LW_BYTES_LIT("/3/0/9")};
    size_t end;
    lw_buf_init(&b, 256);
    lw_buf_put(&b, LW_SPILL_MAGIC, LW_SPILL_MAGIC_LEN);
    ck_assert_int_eq(lw_spill_scan(b.data, b.len, &end), 0);
    ck_assert_uint_eq(end, b.len);
    lw_spill_encode(&b, &r);
    lw_spill_encode(&b, &r);
    size_t full = b.len;
    ck_assert_int_eq(lw_spill_scan(b.data, full, &end), 2);
    ck_assert_uint_eq(end, full);
    /* every truncation keeps the whole records before the cut */
    size_t one = LW_SPILL_MAGIC_LEN + (full - LW_SPILL_MAGIC_LEN) / 2;
    for (size_t cut = LW_SPILL_MAGIC_LEN; cut < full; cut++) {
        long n = lw_spill_scan(b.data, cut, &end);
        ck_assert_int_eq(n, cut >= one ? 1 : 0);
        ck_assert_uint_eq(end, cut >= one ? one : LW_SPILL_MAGIC_LEN);
    }
    /* a flipped payload bit ends the valid part at that record */
    b.data[full - 1] ^= 0x01;
    ck_assert_int_eq(lw_spill_scan(b.data, full, &end), 1);
    ck_assert_uint_eq(end, one);
    b.data[0] = 'X';
    ck_assert_int_eq(lw_spill_scan(b.data, full, &end), LW_EMALFORMED);
    lw_buf_deinit(&b);
}
END_TEST

Suite *suite_spill(void);
Suite *suite_spill(void)
{
    Suite *s = suite_create("spill");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, crc32c_vector);
    tcase_add_test(tc, roundtrips);
    tcase_add_test(tc, refuses_bad_input);
    tcase_add_test(tc, torn_and_corrupt_tails);
    suite_add_tcase(s, tc);
    return s;
}
