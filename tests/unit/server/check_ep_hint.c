/* tests/unit/server/check_ep_hint.c - regsrv_ep_hint, the shard's quick look for a Register's
 * endpoint name in a raw datagram (its directory hash is reused when the parse agrees): both
 * option-length forms, the cases that must find nothing, and no read past the datagram. */
#include "base/buf.h"
#include "coap/coap.h"
#include "dir.h"
#include "registry.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

static size_t reg_dgram(uint8_t *out, size_t cap, uint8_t code, const char *ep)
{
    struct lw_coap_msg m;
    struct lw_buf b;
    lw_coap_msg_init(&m, LW_COAP_CON, code);
    m.mid = 7;
    lw_coap_add_str(&m, LW_COAP_OPT_URI_PATH, "rd");
    char q[300];
    snprintf(q, sizeof(q), "ep=%s", ep);
    lw_coap_add_str(&m, LW_COAP_OPT_URI_QUERY, q);
    lw_coap_add_str(&m, LW_COAP_OPT_URI_QUERY, "lt=300");
    m.payload = LW_BYTES("</1/0>", 6);
    lw_buf_init_fixed(&b, out, cap);
    ck_assert_int_eq(lw_coap_serialize(&m, &b), 0);
    return b.len;
}

START_TEST(finds_short_and_long_names)
{
    ck_assert_int_eq(dir_init(), 0);
    uint8_t d[512];
    const char *names[] = {
        "a",          "meter-1",        "abcdefghi",
        "abcdefghij", "bench-00000001", "a-rather-long-endpoint-name-of-a-gas-meter-0123456789"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        size_t n = reg_dgram(d, sizeof(d), LW_COAP_POST, names[i]);
        struct regsrv_ep_hint h;
        regsrv_ep_hint(d, n, &h);
        ck_assert_ptr_nonnull(h.ep);
        ck_assert_uint_eq(h.len, strlen(names[i]));
        ck_assert_mem_eq(h.ep, names[i], h.len);
        ck_assert(h.hash == dir_hash(names[i], strlen(names[i])));
    }
    dir_deinit();
}
END_TEST

START_TEST(finds_nothing_where_there_is_nothing)
{
    ck_assert_int_eq(dir_init(), 0);
    uint8_t d[512];
    struct regsrv_ep_hint h;
    /* not a POST */
    size_t n = reg_dgram(d, sizeof(d), LW_COAP_GET, "meter-1");
    regsrv_ep_hint(d, n, &h);
    ck_assert_ptr_null(h.ep);
    /* an empty name */
    n = reg_dgram(d, sizeof(d), LW_COAP_POST, "");
    regsrv_ep_hint(d, n, &h);
    ck_assert_ptr_null(h.ep);
    /* every truncation of a Register: never a name reaching past the end */
    n = reg_dgram(d, sizeof(d), LW_COAP_POST, "meter-0123456789");
    for (size_t k = 0; k <= n; k++) {
        uint8_t *copy = malloc(k ? k : 1);
        memcpy(copy, d, k);
        regsrv_ep_hint(copy, k, &h);
        if (h.ep)
            ck_assert(h.ep + h.len <= copy + k);
        free(copy);
    }
    /* "ep=" in a payload behind a header nibble of 13 or more: no guess */
    uint8_t junk[] = {0x44, 0x02, 0, 1, 't', 'o', 'k', 'n', 0xFF, 0xEE, 'e', 'p', '=', 'x'};
    regsrv_ep_hint(junk, sizeof(junk), &h);
    ck_assert_ptr_null(h.ep);
    dir_deinit();
}
END_TEST

Suite *suite_ep_hint(void);
Suite *suite_ep_hint(void)
{
    Suite *s = suite_create("ep_hint");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, finds_short_and_long_names);
    tcase_add_test(tc, finds_nothing_where_there_is_nothing);
    suite_add_tcase(s, tc);
    return s;
}
