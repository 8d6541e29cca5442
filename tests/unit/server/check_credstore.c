/* Unit tests of the sealed credentials record (server/store/credstore.c): PSK, RPK and X.509 round
 * trips, the row identity bound as associated data (endpoint, kind, identity), malformed records,
 * and creds_check (what creds_put would answer, without changing the store). */
#include "base/err.h"
#include "creds.h"
#include "secrets.h"
#include "store/credstore.h"

#include <check.h>
#include <string.h>

static struct secrets_ring *ring(uint8_t seed)
{
    uint8_t k[SECRETS_KEY_LEN];
    memset(k, seed, sizeof(k));
    struct secrets_ring *r = secrets_ring_new();
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(secrets_ring_add(r, k, true), 0);
    return r;
}

START_TEST(psk_roundtrip)
{
    struct secrets_ring *r = ring(1);
    struct creds_spec sp = {.mode = CREDS_PSK,
                            .id = (const uint8_t *)"dev-id",
                            .id_len = 6,
                            .key = (const uint8_t *)"0123456789abcdef",
                            .key_len = 16};
    uint8_t id[CREDS_ID_MAX], blob[CREDSTORE_BLOB_MAX], idbuf[CREDS_ID_MAX], keybuf[CREDS_KEY_MAX];
    size_t il, bl;
    struct creds_spec out;
    ck_assert_int_eq(credstore_seal(r, "ep1", &sp, id, &il, blob, &bl), 0);
    ck_assert_uint_eq(il, 6);
    ck_assert_mem_eq(id, "dev-id", 6);
    ck_assert_uint_eq(bl, 4 + 16 + SECRETS_OVERHEAD);
    ck_assert_ptr_null(memmem(blob, bl, "0123456789abcdef", 16));
    ck_assert_int_eq(credstore_open(r, "ep1", "psk", id, il, blob, bl, &out, idbuf, keybuf), 0);
    ck_assert_int_eq(out.mode, CREDS_PSK);
    ck_assert_uint_eq(out.key_len, 16);
    ck_assert_mem_eq(out.key, "0123456789abcdef", 16);
    ck_assert_uint_eq(out.id_len, 6);
    ck_assert_mem_eq(out.id, "dev-id", 6);
    ck_assert(!out.has_pin);
    /* another endpoint, kind or identity: refused */
    ck_assert_int_eq(credstore_open(r, "ep2", "psk", id, il, blob, bl, &out, idbuf, keybuf),
                     LW_EPERM);
    ck_assert_int_eq(credstore_open(r, "ep1", "x509", id, il, blob, bl, &out, idbuf, keybuf),
                     LW_EPERM);
    ck_assert_int_eq(credstore_open(r, "ep1", "psk", (const uint8_t *)"dev-iX", il, blob, bl, &out,
                                    idbuf, keybuf),
                     LW_EPERM);
    /* another key */
    struct secrets_ring *r2 = ring(2);
    ck_assert_int_eq(credstore_open(r2, "ep1", "psk", id, il, blob, bl, &out, idbuf, keybuf),
                     LW_ENOENT);
    /* truncated */
    ck_assert_int_ne(credstore_open(r, "ep1", "psk", id, il, blob, bl - 1, &out, idbuf, keybuf), 0);
    /* an oversized identity column */
    static uint8_t big[CREDS_ID_MAX + 1];
    ck_assert_int_eq(
        credstore_open(r, "ep1", "psk", big, sizeof(big), blob, bl, &out, idbuf, keybuf),
        LW_EMALFORMED);
    secrets_ring_free(r);
    secrets_ring_free(r2);
}
END_TEST

START_TEST(rpk_x509_roundtrip)
{
    struct secrets_ring *r = ring(3);
    struct creds_spec sp = {.mode = CREDS_RPK, .has_pin = true};
    uint8_t id[CREDS_ID_MAX], blob[CREDSTORE_BLOB_MAX], idbuf[CREDS_ID_MAX], keybuf[CREDS_KEY_MAX];
    size_t il, bl;
    struct creds_spec out;
    memset(sp.pin, 0xab, 32);
    ck_assert_int_eq(credstore_seal(r, "rpk-ep", &sp, id, &il, blob, &bl), 0);
    ck_assert_uint_eq(il, 32); /* the identity column is the SPKI hash */
    ck_assert_int_eq(credstore_open(r, "rpk-ep", "rpk", id, il, blob, bl, &out, idbuf, keybuf), 0);
    ck_assert_int_eq(out.mode, CREDS_RPK);
    ck_assert(out.has_pin);
    ck_assert_mem_eq(out.pin, sp.pin, 32);
    /* RPK without its hash: invalid */
    sp.has_pin = false;
    ck_assert_int_eq(credstore_seal(r, "rpk-ep", &sp, id, &il, blob, &bl), LW_EINVAL);

    /* X.509 without a name (the endpoint) and with a pinned certificate */
    struct creds_spec x = {.mode = CREDS_X509};
    ck_assert_int_eq(credstore_seal(r, "x-ep", &x, id, &il, blob, &bl), 0);
    ck_assert_uint_eq(il, 0);
    ck_assert_int_eq(credstore_open(r, "x-ep", "x509", id, il, blob, bl, &out, idbuf, keybuf), 0);
    ck_assert_ptr_null(out.id);
    ck_assert(!out.has_pin);
    x.id = (const uint8_t *)"cn-name";
    x.id_len = 7;
    x.has_pin = true;
    memset(x.pin, 0x11, 32);
    ck_assert_int_eq(credstore_seal(r, "x-ep", &x, id, &il, blob, &bl), 0);
    ck_assert_int_eq(credstore_open(r, "x-ep", "x509", id, il, blob, bl, &out, idbuf, keybuf), 0);
    ck_assert_uint_eq(out.id_len, 7);
    ck_assert_mem_eq(out.id, "cn-name", 7);
    ck_assert(out.has_pin);
    ck_assert_mem_eq(out.pin, x.pin, 32);
    /* a ring without a current key cannot seal */
    struct secrets_ring *ro = secrets_ring_new();
    ck_assert_int_eq(credstore_seal(ro, "x-ep", &x, id, &il, blob, &bl), LW_ENOENT);
    ck_assert_int_eq(
        credstore_seal(r, "x-ep", &(struct creds_spec){.mode = CREDS_NONE}, id, &il, blob, &bl),
        LW_EINVAL);
    ck_assert_str_eq(credstore_kind(CREDS_PSK), "psk");
    ck_assert_ptr_null(credstore_kind(CREDS_NONE));
    secrets_ring_free(ro);
    secrets_ring_free(r);
}
END_TEST

START_TEST(check_without_change)
{
    ck_assert_int_eq(creds_init(), 0);
    struct creds_spec a = {.mode = CREDS_PSK,
                           .id = (const uint8_t *)"shared-id",
                           .id_len = 9,
                           .key = (const uint8_t *)"keykeykeykey",
                           .key_len = 12};
    size_t before = creds_count();
    ck_assert_int_eq(creds_check("chk-a", &a), 0);
    ck_assert_uint_eq(creds_count(), before); /* nothing stored */
    ck_assert_int_eq(creds_put("chk-a", &a, 1), 0);
    ck_assert_int_eq(creds_check("chk-a", &a), 0);         /* its own identity: fine */
    ck_assert_int_eq(creds_check("chk-b", &a), LW_EEXIST); /* another endpoint's */
    a.key_len = 4;
    ck_assert_int_eq(creds_check("chk-c", &a), LW_EINVAL);
    ck_assert_int_eq(creds_del("chk-a"), 0);
}
END_TEST

Suite *suite_credstore(void);
Suite *suite_credstore(void)
{
    Suite *s = suite_create("credstore");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, psk_roundtrip);
    tcase_add_test(tc, rpk_x509_roundtrip);
    tcase_add_test(tc, check_without_change);
    suite_add_tcase(s, tc);
    return s;
}
