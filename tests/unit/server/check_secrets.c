/* Unit tests of server/secrets.c: key file parsing and permissions, seal/open round trips, tamper
 * and wrong associated data refused, key rotation (old keys open, the current one seals), the
 * configured ring (files and systemd credentials). */
#include "base/err.h"
#include "base/util.h"
#include "config.h"
#include "secrets.h"

#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void key_of(uint8_t k[SECRETS_KEY_LEN], uint8_t seed)
{
    for (int i = 0; i < SECRETS_KEY_LEN; i++)
        k[i] = (uint8_t)(seed * 31 + i);
}

static struct secrets_ring *ring_with(uint8_t cur_seed, int old_seed)
{
    uint8_t k[SECRETS_KEY_LEN];
    struct secrets_ring *r = secrets_ring_new();
    ck_assert_ptr_nonnull(r);
    key_of(k, cur_seed);
    ck_assert_int_eq(secrets_ring_add(r, k, true), 0);
    if (old_seed >= 0) {
        key_of(k, (uint8_t)old_seed);
        ck_assert_int_eq(secrets_ring_add(r, k, false), 0);
    }
    return r;
}

START_TEST(parse_key_forms)
{
    uint8_t k[SECRETS_KEY_LEN], raw[SECRETS_KEY_LEN];
    char hex[2 * SECRETS_KEY_LEN + 8];
    key_of(raw, 7);
    raw[3] = '\n'; /* raw keys may hold any byte */
    ck_assert_int_eq(secrets_parse_key(raw, sizeof(raw), k), 0);
    ck_assert_mem_eq(k, raw, sizeof(k));
    lw_hex_encode(hex, raw, sizeof(raw));
    ck_assert_int_eq(secrets_parse_key((const uint8_t *)hex, 64, k), 0);
    ck_assert_mem_eq(k, raw, sizeof(k));
    /* blanks and a newline around the hex digits */
    char padded[80];
    snprintf(padded, sizeof(padded), "  %s\r\n", hex);
    ck_assert_int_eq(secrets_parse_key((const uint8_t *)padded, strlen(padded), k), 0);
    ck_assert_mem_eq(k, raw, sizeof(k));
    /* wrong lengths, bad digits, blanks inside */
    ck_assert_int_eq(secrets_parse_key((const uint8_t *)hex, 62, k), LW_EMALFORMED);
    ck_assert_int_eq(secrets_parse_key((const uint8_t *)hex, 0, k), LW_EMALFORMED);
    ck_assert_int_eq(secrets_parse_key(NULL, 0, k), LW_EMALFORMED);
    hex[10] = 'g';
    ck_assert_int_eq(secrets_parse_key((const uint8_t *)hex, 64, k), LW_EMALFORMED);
    lw_hex_encode(hex, raw, sizeof(raw));
    char split[80];
    snprintf(split, sizeof(split), "%.32s %s", hex, hex + 32);
    ck_assert_int_eq(secrets_parse_key((const uint8_t *)split, 65, k), LW_EMALFORMED);
    uint8_t big[33] = {0};
    ck_assert_int_eq(secrets_parse_key(big, sizeof(big), k), LW_EMALFORMED);
}
END_TEST

static char *write_tmp(const char *content, size_t len, mode_t mode)
{
    char *path = strdup("/tmp/lw-secrets-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, content, len), (ssize_t)len);
    close(fd);
    ck_assert_int_eq(chmod(path, mode), 0);
    return path;
}

START_TEST(key_file_permissions)
{
    static const char hex[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
    uint8_t k[SECRETS_KEY_LEN];
    char why[256];
    char *p = write_tmp(hex, strlen(hex), 0600);
    ck_assert_int_eq(secrets_read_key_file(p, k, why, sizeof(why)), 0);
    ck_assert_uint_eq(k[0], 0);
    ck_assert_uint_eq(k[31], 0x1f);
    ck_assert_int_eq(chmod(p, 0640), 0);
    ck_assert_int_eq(secrets_read_key_file(p, k, why, sizeof(why)), 0);
    ck_assert_int_eq(chmod(p, 0604), 0);
    ck_assert_int_eq(secrets_read_key_file(p, k, why, sizeof(why)), LW_EPERM);
    ck_assert_ptr_nonnull(strstr(why, "other users"));
    ck_assert_ptr_null(strstr(why, "0102")); /* never the content */
    ck_assert_int_eq(chmod(p, 0602), 0);
    ck_assert_int_eq(secrets_read_key_file(p, k, why, sizeof(why)), LW_EPERM);
    unlink(p);
    free(p);
    p = write_tmp("short\n", 6, 0600);
    ck_assert_int_eq(secrets_read_key_file(p, k, why, sizeof(why)), LW_EMALFORMED);
    ck_assert_int_eq(secrets_read_key_file(p, k, NULL, 0), LW_EMALFORMED);
    unlink(p);
    free(p);
    ck_assert_int_eq(secrets_read_key_file("/nonexistent/key", k, why, sizeof(why)), LW_EIO);
    ck_assert_int_eq(secrets_read_key_file("/tmp", k, why, sizeof(why)), LW_EIO);
}
END_TEST

START_TEST(seal_open_roundtrip)
{
    struct secrets_ring *r = ring_with(1, -1);
    static const uint8_t ad[] = "lwm2md:credentials\0ep1\0psk\0id1";
    uint8_t pt[300], blob[400], back[400];
    size_t bl, ol;
    uint32_t kid;
    for (size_t n = 0; n <= sizeof(pt); n += 37) {
        for (size_t i = 0; i < n; i++)
            pt[i] = (uint8_t)(i * 7);
        ck_assert_int_eq(secrets_seal(r, ad, sizeof(ad), pt, n, blob, sizeof(blob), &bl), 0);
        ck_assert_uint_eq(bl, n + SECRETS_OVERHEAD);
        ck_assert_uint_eq(blob[0], SECRETS_VERSION);
        ck_assert_int_eq(secrets_open(r, ad, sizeof(ad), blob, bl, back, sizeof(back), &ol, &kid),
                         0);
        ck_assert_uint_eq(ol, n);
        ck_assert_uint_eq(kid, secrets_ring_current(r));
        if (n)
            ck_assert_mem_eq(back, pt, n);
        /* the plaintext is not visible in the blob */
        if (n >= 16)
            ck_assert_ptr_null(memmem(blob, bl, pt, 16));
    }
    /* two seals of the same plaintext differ (random nonces) */
    uint8_t b2[400];
    size_t bl2;
    ck_assert_int_eq(secrets_seal(r, NULL, 0, pt, 32, blob, sizeof(blob), &bl), 0);
    ck_assert_int_eq(secrets_seal(r, NULL, 0, pt, 32, b2, sizeof(b2), &bl2), 0);
    ck_assert_mem_ne(blob + 5, b2 + 5, SECRETS_NONCE_LEN);
    ck_assert_int_eq(secrets_open(r, NULL, 0, b2, bl2, back, sizeof(back), &ol, NULL), 0);
    /* output too small */
    ck_assert_int_eq(secrets_seal(r, NULL, 0, pt, 32, blob, 32 + SECRETS_OVERHEAD - 1, &bl),
                     LW_ENOSPC);
    ck_assert_int_eq(secrets_open(r, NULL, 0, b2, bl2, back, 31, &ol, NULL), LW_ENOSPC);
    /* blob info */
    uint8_t nonce[SECRETS_NONCE_LEN];
    ck_assert_int_eq(secrets_blob_info(b2, bl2, &kid, nonce), 0);
    ck_assert_uint_eq(kid, secrets_ring_current(r));
    ck_assert_mem_eq(nonce, b2 + 5, sizeof(nonce));
    secrets_ring_free(r);
    secrets_ring_free(NULL);
}
END_TEST

START_TEST(tamper_refused)
{
    struct secrets_ring *r = ring_with(2, -1);
    static const uint8_t ad[] = "row";
    uint8_t pt[40], blob[100], back[100];
    size_t bl, ol;
    memset(pt, 0x5a, sizeof(pt));
    ck_assert_int_eq(secrets_seal(r, ad, 3, pt, sizeof(pt), blob, sizeof(blob), &bl), 0);
    /* every bit of the nonce, ciphertext and tag matters */
    for (size_t i = 5; i < bl; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            blob[i] ^= (uint8_t)(1u << bit);
            memset(back, 0xee, sizeof(back));
            ck_assert_int_eq(secrets_open(r, ad, 3, blob, bl, back, sizeof(back), &ol, NULL),
                             LW_EPERM);
            for (size_t j = 0; j < sizeof(pt); j++) /* nothing of the plaintext leaks */
                ck_assert_uint_ne(back[j], 0x5a);
            blob[i] ^= (uint8_t)(1u << bit);
        }
    }
    ck_assert_int_eq(secrets_open(r, ad, 3, blob, bl, back, sizeof(back), &ol, NULL), 0);
    /* version byte, key id */
    blob[0] ^= 1;
    ck_assert_int_eq(secrets_open(r, ad, 3, blob, bl, back, sizeof(back), &ol, NULL),
                     LW_EMALFORMED);
    blob[0] ^= 1;
    blob[4] ^= 1;
    ck_assert_int_eq(secrets_open(r, ad, 3, blob, bl, back, sizeof(back), &ol, NULL), LW_ENOENT);
    blob[4] ^= 1;
    /* truncated and extended */
    for (size_t n = 0; n < bl; n++) {
        int rc = secrets_open(r, ad, 3, blob, n, back, sizeof(back), &ol, NULL);
        ck_assert(rc == LW_EMALFORMED || rc == LW_EPERM);
    }
    blob[bl] = 0;
    ck_assert_int_eq(secrets_open(r, ad, 3, blob, bl + 1, back, sizeof(back), &ol, NULL), LW_EPERM);
    secrets_ring_free(r);
}
END_TEST

START_TEST(wrong_ad_refused)
{
    struct secrets_ring *r = ring_with(3, -1);
    uint8_t ad1[64], ad2[64], pt[16] = {1, 2, 3}, blob[64], back[64];
    size_t bl, ol;
    const uint8_t *p1[] = {(const uint8_t *)"ep-a", (const uint8_t *)"psk"};
    const uint8_t *p2[] = {(const uint8_t *)"ep-b", (const uint8_t *)"psk"};
    const uint8_t *p3[] = {(const uint8_t *)"ep-ap", (const uint8_t *)"sk"};
    size_t l1[] = {4, 3}, l3[] = {5, 2};
    size_t a1 = secrets_row_ad(ad1, sizeof(ad1), "credentials", 2, p1, l1);
    size_t a2 = secrets_row_ad(ad2, sizeof(ad2), "credentials", 2, p2, l1);
    ck_assert_uint_eq(a1, strlen("lwm2md:credentials") + 2 + 4 + 3);
    ck_assert_int_eq(secrets_seal(r, ad1, a1, pt, sizeof(pt), blob, sizeof(blob), &bl), 0);
    ck_assert_int_eq(secrets_open(r, ad1, a1, blob, bl, back, sizeof(back), &ol, NULL), 0);
    /* another endpoint's row */
    ck_assert_int_eq(secrets_open(r, ad2, a2, blob, bl, back, sizeof(back), &ol, NULL), LW_EPERM);
    /* the separators keep "ep-a"+"psk" apart from "ep-ap"+"sk" */
    a2 = secrets_row_ad(ad2, sizeof(ad2), "credentials", 2, p3, l3);
    ck_assert_uint_eq(a2, a1);
    ck_assert_int_eq(secrets_open(r, ad2, a2, blob, bl, back, sizeof(back), &ol, NULL), LW_EPERM);
    /* another table */
    a2 = secrets_row_ad(ad2, sizeof(ad2), "dtls_sessions", 2, p1, l1);
    ck_assert_int_eq(secrets_open(r, ad2, a2, blob, bl, back, sizeof(back), &ol, NULL), LW_EPERM);
    /* no ad at all */
    ck_assert_int_eq(secrets_open(r, NULL, 0, blob, bl, back, sizeof(back), &ol, NULL), LW_EPERM);
    /* ad too long for the buffer / the limit */
    ck_assert_uint_eq(secrets_row_ad(ad2, 10, "credentials", 2, p1, l1), 0);
    static uint8_t huge[SECRETS_AD_MAX + 1];
    ck_assert_int_eq(secrets_seal(r, huge, sizeof(huge), pt, sizeof(pt), blob, sizeof(blob), &bl),
                     LW_EINVAL);
    secrets_ring_free(r);
}
END_TEST

START_TEST(rotation)
{
    uint8_t pt[24] = "device key material 24b", blob[64], back[64], k[SECRETS_KEY_LEN];
    size_t bl, ol, bl_new;
    uint32_t kid;
    /* written under key 4 */
    struct secrets_ring *old = ring_with(4, -1);
    uint32_t id4 = secrets_ring_current(old);
    ck_assert_int_eq(secrets_seal(old, NULL, 0, pt, sizeof(pt), blob, sizeof(blob), &bl), 0);
    /* rotated: key 5 current, key 4 kept for reading */
    struct secrets_ring *rot = ring_with(5, 4);
    ck_assert_uint_ne(secrets_ring_current(rot), id4);
    ck_assert(secrets_ring_has(rot, id4));
    ck_assert_uint_eq(secrets_ring_count(rot), 2);
    ck_assert_int_eq(secrets_open(rot, NULL, 0, blob, bl, back, sizeof(back), &ol, &kid), 0);
    ck_assert_uint_eq(kid, id4);
    ck_assert_mem_eq(back, pt, sizeof(pt));
    /* re-sealed under the new key */
    uint8_t blob2[64];
    ck_assert_int_eq(secrets_seal(rot, NULL, 0, back, ol, blob2, sizeof(blob2), &bl_new), 0);
    ck_assert_int_eq(secrets_blob_info(blob2, bl_new, &kid, NULL), 0);
    ck_assert_uint_eq(kid, secrets_ring_current(rot));
    /* the old key retired: old blobs no longer open, new ones do */
    struct secrets_ring *only_new = ring_with(5, -1);
    ck_assert_int_eq(secrets_open(only_new, NULL, 0, blob, bl, back, sizeof(back), &ol, NULL),
                     LW_ENOENT);
    ck_assert_int_eq(secrets_open(only_new, NULL, 0, blob2, bl_new, back, sizeof(back), &ol, NULL),
                     0);
    /* ring rules: one current key, duplicates ignored, capacity */
    key_of(k, 9);
    ck_assert_int_eq(secrets_ring_add(only_new, k, true), LW_EEXIST);
    ck_assert_int_eq(secrets_ring_add(only_new, k, false), 0);
    ck_assert_int_eq(secrets_ring_add(only_new, k, false), 0);
    ck_assert_uint_eq(secrets_ring_count(only_new), 2);
    for (int i = 10; i < 10 + SECRETS_MAX_KEYS - 2; i++) {
        key_of(k, (uint8_t)i);
        ck_assert_int_eq(secrets_ring_add(only_new, k, false), 0);
    }
    key_of(k, 100);
    ck_assert_int_eq(secrets_ring_add(only_new, k, false), LW_ENOSPC);
    /* a ring without a current key cannot seal */
    struct secrets_ring *ro = secrets_ring_new();
    ck_assert_int_eq(secrets_ring_add(ro, k, false), 0);
    ck_assert_uint_eq(secrets_ring_current(ro), 0);
    ck_assert_int_eq(secrets_seal(ro, NULL, 0, pt, sizeof(pt), blob, sizeof(blob), &bl), LW_ENOENT);
    ck_assert_int_eq(secrets_seal(NULL, NULL, 0, pt, sizeof(pt), blob, sizeof(blob), &bl),
                     LW_ENOENT);
    ck_assert_int_eq(secrets_open(NULL, NULL, 0, blob2, bl_new, back, sizeof(back), &ol, NULL),
                     LW_ENOENT);
    secrets_ring_free(ro);
    secrets_ring_free(old);
    secrets_ring_free(rot);
    secrets_ring_free(only_new);
}
END_TEST

START_TEST(key_ids)
{
    uint8_t a[SECRETS_KEY_LEN], b[SECRETS_KEY_LEN];
    key_of(a, 1);
    key_of(b, 2);
    uint32_t ia = secrets_key_id(a), ib = secrets_key_id(b);
    ck_assert_uint_gt(ia, 0);
    ck_assert_uint_le(ia, 0x7fffffffu);
    ck_assert_uint_ne(ia, ib);
    ck_assert_uint_eq(ia, secrets_key_id(a)); /* stable */
}
END_TEST

START_TEST(ring_from_config)
{
    static const char h1[] = "1111111111111111111111111111111111111111111111111111111111111111";
    static const char h2[] = "2222222222222222222222222222222222222222222222222222222222222222";
    struct lw_config cfg;
    struct secrets_ring *r;
    char why[512], olds[300];
    memset(&cfg, 0, sizeof(cfg));
    cfg.sec_master_key_file = "";
    cfg.sec_old_master_key_files = "";
    unsetenv("CREDENTIALS_DIRECTORY");
    ck_assert_int_eq(secrets_ring_from_config(&cfg, &r, why, sizeof(why)), 0);
    ck_assert_ptr_null(r);
    char *p1 = write_tmp(h1, 64, 0600), *p2 = write_tmp(h2, 64, 0400);
    cfg.sec_master_key_file = p1;
    snprintf(olds, sizeof(olds), " %s ,", p2);
    cfg.sec_old_master_key_files = olds;
    ck_assert_int_eq(secrets_ring_from_config(&cfg, &r, why, sizeof(why)), 0);
    ck_assert_uint_eq(secrets_ring_count(r), 2);
    uint8_t k[SECRETS_KEY_LEN];
    memset(k, 0x11, sizeof(k));
    ck_assert_uint_eq(secrets_ring_current(r), secrets_key_id(k));
    secrets_ring_free(r);
    /* a world-readable old key refuses the whole ring */
    chmod(p2, 0644);
    ck_assert_int_eq(secrets_ring_from_config(&cfg, &r, why, sizeof(why)), LW_EPERM);
    ck_assert_ptr_null(r);
    chmod(p2, 0600);
    cfg.sec_master_key_file = "";
    ck_assert_int_eq(secrets_ring_from_config(&cfg, &r, why, sizeof(why)), LW_ECONFIG);
    /* systemd credentials directory */
    char dir[] = "/tmp/lw-creds-XXXXXX", path[300];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    cfg.sec_old_master_key_files = "";
    setenv("CREDENTIALS_DIRECTORY", dir, 1);
    ck_assert_int_eq(secrets_ring_from_config(&cfg, &r, why, sizeof(why)), 0);
    ck_assert_ptr_null(r); /* no lwm2md-master-key there */
    snprintf(path, sizeof(path), "%s/" SECRETS_CRED_NAME, dir);
    ck_assert_int_eq(rename(p2, path), 0);
    snprintf(path, sizeof(path), "%s/" SECRETS_CRED_NAME ".old1", dir);
    ck_assert_int_eq(rename(p1, path), 0);
    ck_assert_int_eq(secrets_ring_from_config(&cfg, &r, why, sizeof(why)), 0);
    ck_assert_uint_eq(secrets_ring_count(r), 2);
    memset(k, 0x22, sizeof(k));
    ck_assert_uint_eq(secrets_ring_current(r), secrets_key_id(k));
    secrets_ring_free(r);
    /* the daemon-wide ring */
    ck_assert_int_eq(secrets_start(&cfg), 0);
    ck_assert_ptr_nonnull(secrets_ring());
    secrets_stop();
    ck_assert_ptr_null(secrets_ring());
    unlink(path);
    snprintf(path, sizeof(path), "%s/" SECRETS_CRED_NAME, dir);
    unlink(path);
    rmdir(dir);
    unsetenv("CREDENTIALS_DIRECTORY");
    free(p1);
    free(p2);
}
END_TEST

Suite *suite_secrets(void);
Suite *suite_secrets(void)
{
    Suite *s = suite_create("secrets");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, parse_key_forms);
    tcase_add_test(tc, key_file_permissions);
    tcase_add_test(tc, seal_open_roundtrip);
    tcase_add_test(tc, tamper_refused);
    tcase_add_test(tc, wrong_ad_refused);
    tcase_add_test(tc, rotation);
    tcase_add_test(tc, key_ids);
    tcase_add_test(tc, ring_from_config);
    suite_add_tcase(s, tc);
    return s;
}
