/* Unit tests for lib/base: errors, buffers, arena, list, hash table, utilities. */
#include "base/base.h"

#include <check.h>
#include <stdlib.h>

START_TEST(test_strerror)
{
    ck_assert_str_eq(lw_strerror(LW_EMALFORMED), "malformed input");
    ck_assert_str_eq(lw_strerror(LW_ENOMEM), "Cannot allocate memory");
    ck_assert_str_eq(lw_strerror(0), "success");
    ck_assert_str_eq(lw_strerror(-99999), "unknown error");
}
END_TEST

START_TEST(test_buf_fixed_overflow)
{
    uint8_t mem[4];
    struct lw_buf b;
    lw_buf_init_fixed(&b, mem, sizeof(mem));
    lw_buf_put_be16(&b, 0x1234);
    ck_assert_int_eq(lw_buf_status(&b), 0);
    lw_buf_put_be32(&b, 0xdeadbeef); /* does not fit: dropped whole, overflow latched */
    ck_assert_int_eq(b.len, 2);
    ck_assert_int_eq(lw_buf_status(&b), LW_ENOSPC);
    lw_buf_put_u8(&b, 1); /* still refused after overflow */
    ck_assert_int_eq(b.len, 2);
    ck_assert_int_eq(mem[0], 0x12);
    ck_assert_int_eq(mem[1], 0x34);
}
END_TEST

START_TEST(test_buf_growable)
{
    struct lw_buf b;
    lw_buf_init(&b, 0);
    for (int i = 0; i < 1000; i++)
        lw_buf_printf(&b, "%d,", i);
    ck_assert_int_eq(lw_buf_status(&b), 0);
    ck_assert_int_eq(b.len, 10 * 2 + 90 * 3 + 900 * 4);
    ck_assert(memcmp(b.data, "0,1,2,", 6) == 0);
    lw_buf_put_be64(&b, 0x0102030405060708ull);
    ck_assert_uint_eq(lw_load_be64(b.data + b.len - 8), 0x0102030405060708ull);
    lw_buf_deinit(&b);
}
END_TEST

START_TEST(test_arena)
{
    struct lw_arena a;
    lw_arena_init(&a, 128, 1024);
    char *s = lw_arena_strndup(&a, "hello world", 5);
    ck_assert_str_eq(s, "hello");
    void *big = lw_arena_alloc(&a, 500); /* larger than a block: own block */
    ck_assert_ptr_nonnull(big);
    ck_assert_uint_eq((uintptr_t)big % _Alignof(max_align_t), 0);
    ck_assert_ptr_null(lw_arena_alloc(&a, 2000)); /* over the limit */
    lw_arena_reset(&a);
    ck_assert_uint_le(a.used, 512);
    /* 16-byte granules: 1024 bytes of blocks hold exactly 64 allocations, then the limit */
    for (int i = 0; i < 64; i++)
        ck_assert_ptr_nonnull(lw_arena_zalloc(&a, 8));
    ck_assert_ptr_null(lw_arena_alloc(&a, 8));
    lw_arena_deinit(&a);
}
END_TEST

struct item {
    struct lw_list link;
    int v;
};

START_TEST(test_list)
{
    struct lw_list h, other;
    lw_list_init(&h);
    lw_list_init(&other);
    struct item it[5];
    for (int i = 0; i < 5; i++) {
        it[i].v = i;
        lw_list_push_back(i < 3 ? &h : &other, &it[i].link);
    }
    lw_list_remove(&it[1].link);
    ck_assert(!lw_list_linked(&it[1].link));
    lw_list_splice_back(&h, &other);
    ck_assert(lw_list_empty(&other));
    int want[] = {0, 2, 3, 4}, n = 0;
    lw_list_foreach_safe (x, &h) {
        ck_assert_int_eq(lw_container_of(x, struct item, link)->v, want[n++]);
        lw_list_remove(x);
    }
    ck_assert_int_eq(n, 4);
    ck_assert(lw_list_empty(&h));
}
END_TEST

struct kv {
    uint64_t key;
    int val;
};
static bool kv_eq(const void *item, const void *key)
{
    return ((const struct kv *)item)->key == *(const uint64_t *)key;
}
/* A deliberately weak hash so that probe runs and wrap-around are exercised. */
static uint64_t weak(uint64_t k)
{
    return k % 37;
}

/* Past 131 072 slots (2 MiB) the slot array is mapped on its own (hash.c): growing into it,
 * lookups, upserts and deletes there, and shrinking the count back all behave the same. */
START_TEST(test_hmap_large)
{
    enum { N = 200000 };
    struct lw_hmap m;
    ck_assert_int_eq(lw_hmap_init(&m, 0), 0);
    struct kv *items = calloc(N, sizeof(*items));
    for (uint64_t k = 0; k < N; k++) {
        items[k] = (struct kv){k, (int)k};
        ck_assert_int_eq(lw_hmap_put(&m, k * 0x9e3779b97f4a7c15ull, &items[k]), 0);
    }
    ck_assert_uint_ge(lw_hmap_bytes(&m), 2u << 20);
    for (uint64_t k = 0; k < N; k += 7) {
        void *old = NULL;
        ck_assert_ptr_eq(lw_hmap_get(&m, k * 0x9e3779b97f4a7c15ull, &k, kv_eq), &items[k]);
        ck_assert_int_eq(lw_hmap_upsert(&m, k * 0x9e3779b97f4a7c15ull, &k, kv_eq, &items[k], &old),
                         0);
        ck_assert_ptr_eq(old, &items[k]);
    }
    for (uint64_t k = 0; k < N; k += 2)
        ck_assert_ptr_eq(lw_hmap_del(&m, k * 0x9e3779b97f4a7c15ull, &k, kv_eq), &items[k]);
    ck_assert_uint_eq(lw_hmap_count(&m), N / 2);
    for (uint64_t k = 0; k < N; k++)
        ck_assert((lw_hmap_get(&m, k * 0x9e3779b97f4a7c15ull, &k, kv_eq) != NULL) == (k % 2 == 1));
    lw_hmap_deinit(&m);
    /* a table sized up front past the threshold starts empty (zero-filled by the kernel) */
    ck_assert_int_eq(lw_hmap_init(&m, N), 0);
    ck_assert_uint_eq(lw_hmap_count(&m), 0);
    size_t pos = 0;
    ck_assert_ptr_null(lw_hmap_next(&m, &pos));
    lw_hmap_deinit(&m);
    free(items);
}
END_TEST

START_TEST(test_hmap_against_reference)
{
    enum { N = 20000 };
    struct lw_hmap m;
    ck_assert_int_eq(lw_hmap_init(&m, 0), 0);
    struct kv *items = calloc(N, sizeof(*items));
    bool *present = calloc(N, sizeof(bool));
    srand(7);
    for (int round = 0; round < 200000; round++) {
        uint64_t k = (uint64_t)(rand() % N);
        uint64_t h = (round & 1) ? weak(k) : k * 0x9e3779b97f4a7c15ull;
        /* each key always uses one hash function */
        h = (k & 1) ? weak(k) : k * 0x9e3779b97f4a7c15ull;
        struct kv *got = lw_hmap_get(&m, h, &k, kv_eq);
        ck_assert(present[k] == (got != NULL));
        if (present[k] && rand() % 2) {
            ck_assert_ptr_eq(lw_hmap_del(&m, h, &k, kv_eq), &items[k]);
            present[k] = false;
        } else if (!present[k]) {
            items[k] = (struct kv){k, (int)k};
            if (rand() % 2) {
                ck_assert_int_eq(lw_hmap_put(&m, h, &items[k]), 0);
            } else {
                void *old = &m;
                ck_assert_int_eq(lw_hmap_upsert(&m, h, &k, kv_eq, &items[k], &old), 0);
                ck_assert_ptr_null(old);
            }
            present[k] = true;
        } else {
            /* upsert of a present key swaps the item in place: count unchanged, old returned */
            size_t before = lw_hmap_count(&m);
            struct kv twin = items[k];
            void *old = NULL;
            ck_assert_int_eq(lw_hmap_upsert(&m, h, &k, kv_eq, &twin, &old), 0);
            ck_assert_ptr_eq(old, &items[k]);
            ck_assert_ptr_eq(lw_hmap_get(&m, h, &k, kv_eq), &twin);
            ck_assert_int_eq(lw_hmap_upsert(&m, h, &k, kv_eq, &items[k], &old), 0);
            ck_assert_ptr_eq(old, &twin);
            ck_assert_uint_eq(lw_hmap_count(&m), before);
        }
    }
    size_t count = 0, pos = 0;
    struct kv *it;
    while ((it = lw_hmap_next(&m, &pos))) {
        ck_assert(present[it->key]);
        count++;
    }
    ck_assert_uint_eq(count, lw_hmap_count(&m));
    for (uint64_t k = 0; k < N; k++)
        if (present[k]) {
            uint64_t h = (k & 1) ? weak(k) : k * 0x9e3779b97f4a7c15ull;
            ck_assert(lw_hmap_del_item(&m, h, &items[k]));
        }
    ck_assert_uint_eq(lw_hmap_count(&m), 0);
    lw_hmap_deinit(&m);
    free(items);
    free(present);
}
END_TEST

/* The compact map against the same reference model: half the keys use a hash of 16 bits, whose
 * bits 40..55 (the tag kept in a slot) are all zero, so every probe compares items, and growth
 * and backward-shift deletion must recompute homes through the callback. */
static uint64_t ref_hash(uint64_t k)
{
    uint64_t h = k * 0x9e3779b97f4a7c15ull;
    return (k & 1) ? h >> 48 : h;
}
static int cmap_hash_calls;
static uint64_t kv_item_hash(const void *item, const void *ctx)
{
    ck_assert_ptr_eq(ctx, &cmap_hash_calls);
    cmap_hash_calls++;
    return ref_hash(((const struct kv *)item)->key);
}

START_TEST(test_cmap_against_reference)
{
    enum { N = 20000 };
    struct lw_cmap m;
    ck_assert_int_eq(lw_cmap_init(&m, 0, kv_item_hash, &cmap_hash_calls), 0);
    struct kv *items = calloc(N, sizeof(*items));
    bool *present = calloc(N, sizeof(bool));
    srand(11);
    for (int round = 0; round < 200000; round++) {
        uint64_t k = (uint64_t)(rand() % N), h = ref_hash(k);
        struct kv *got = lw_cmap_get(&m, h, &k, kv_eq);
        ck_assert(present[k] == (got != NULL));
        if (got)
            ck_assert_ptr_eq(got, &items[k]);
        if (present[k] && rand() % 3 == 0) {
            ck_assert_ptr_eq(lw_cmap_del(&m, h, &k, kv_eq), &items[k]);
            present[k] = false;
        } else if (present[k] && rand() % 2) {
            ck_assert(lw_cmap_del_item(&m, h, &items[k]));
            ck_assert(!lw_cmap_del_item(&m, h, &items[k]));
            present[k] = false;
        } else if (!present[k]) {
            items[k] = (struct kv){k, (int)k};
            if (rand() % 2) {
                ck_assert_int_eq(lw_cmap_put(&m, h, &items[k]), 0);
            } else {
                void *old = &m;
                ck_assert_int_eq(lw_cmap_upsert(&m, h, &k, kv_eq, &items[k], &old), 0);
                ck_assert_ptr_null(old);
            }
            present[k] = true;
        } else {
            size_t before = lw_cmap_count(&m);
            struct kv twin = items[k];
            void *old = NULL;
            ck_assert_int_eq(lw_cmap_upsert(&m, h, &k, kv_eq, &twin, &old), 0);
            ck_assert_ptr_eq(old, &items[k]);
            ck_assert_ptr_eq(lw_cmap_get(&m, h, &k, kv_eq), &twin);
            ck_assert_int_eq(lw_cmap_upsert(&m, h, &k, kv_eq, &items[k], &old), 0);
            ck_assert_ptr_eq(old, &twin);
            ck_assert_uint_eq(lw_cmap_count(&m), before);
        }
    }
    ck_assert_int_gt(cmap_hash_calls, 0); /* growth and deletions asked for hashes */
    size_t count = 0, pos = 0;
    struct kv *it;
    while ((it = lw_cmap_next(&m, &pos))) {
        ck_assert(present[it->key]);
        count++;
    }
    ck_assert_uint_eq(count, lw_cmap_count(&m));
    ck_assert_uint_eq(lw_cmap_bytes(&m), (m.mask + 1) * 8);
    for (uint64_t k = 0; k < N; k++)
        if (present[k])
            ck_assert(lw_cmap_del_item(&m, ref_hash(k), &items[k]));
    ck_assert_uint_eq(lw_cmap_count(&m), 0);
    lw_cmap_deinit(&m);
    free(items);
    free(present);
}
END_TEST

/* Two keys whose hashes differ only outside the tag bits share a probe run and a tag: both are
 * found by their own key; an item at an address of 2^48 or above is refused, not truncated. */
START_TEST(test_cmap_tags_and_addresses)
{
    struct lw_cmap m;
    ck_assert_int_eq(lw_cmap_init(&m, 4, kv_item_hash, &cmap_hash_calls), 0);
    struct kv a = {2, 0}, b = {4, 0};
    uint64_t ka = 2, kb = 4;
    /* even keys hash by multiplication: give both the same slot tag by construction instead */
    uint64_t h = 0x00ABCD0000000003ull;
    ck_assert_int_eq(lw_cmap_put(&m, h, &a), 0);
    ck_assert_int_eq(lw_cmap_put(&m, h, &b), 0);
    ck_assert_ptr_eq(lw_cmap_get(&m, h, &ka, kv_eq), &a);
    ck_assert_ptr_eq(lw_cmap_get(&m, h, &kb, kv_eq), &b);
    uint64_t kc = 99;
    ck_assert_ptr_null(lw_cmap_get(&m, h, &kc, kv_eq));
    /* a different tag with the same home slot never reaches eq for a */
    ck_assert_ptr_null(lw_cmap_get(&m, h ^ (1ull << 41), &ka, kv_eq));
    void *high = (void *)(uintptr_t)(1ull << 48 | 0x1000);
    ck_assert_int_eq(lw_cmap_put(&m, h, high), LW_EINVAL);
    void *old = NULL;
    ck_assert_int_eq(lw_cmap_upsert(&m, 5, &kc, kv_eq, high, &old), LW_EINVAL);
    ck_assert_int_eq(lw_cmap_put(&m, h, NULL), LW_EINVAL);
    ck_assert_uint_eq(lw_cmap_count(&m), 2);
    lw_cmap_deinit(&m);
}
END_TEST

/* Past 262 144 slots (2 MiB) the slot array is mapped on its own, as lw_hmap's. */
static uint64_t big_hash(const void *item, const void *ctx)
{
    (void)ctx;
    return ((const struct kv *)item)->key * 0x9e3779b97f4a7c15ull;
}

START_TEST(test_cmap_large)
{
    enum { N = 300000 };
    struct lw_cmap m;
    ck_assert_int_eq(lw_cmap_init(&m, 0, big_hash, NULL), 0);
    struct kv *items = calloc(N, sizeof(*items));
    for (uint64_t k = 0; k < N; k++) {
        items[k] = (struct kv){k, (int)k};
        ck_assert_int_eq(lw_cmap_put(&m, big_hash(&items[k], &cmap_hash_calls), &items[k]), 0);
    }
    ck_assert_uint_ge(lw_cmap_bytes(&m), 2u << 20);
    for (uint64_t k = 0; k < N; k += 2)
        ck_assert_ptr_eq(lw_cmap_del(&m, big_hash(&items[k], NULL), &k, kv_eq), &items[k]);
    for (uint64_t k = 0; k < N; k++)
        ck_assert((lw_cmap_get(&m, big_hash(&items[k], NULL), &k, kv_eq) != NULL) == (k % 2 == 1));
    lw_cmap_deinit(&m);
    ck_assert_int_eq(lw_cmap_init(&m, N, big_hash, NULL), 0);
    size_t pos = 0;
    ck_assert_ptr_null(lw_cmap_next(&m, &pos));
    lw_cmap_deinit(&m);
    free(items);
}
END_TEST

START_TEST(test_siphash_vector)
{
    /* SipHash-2-4 paper, Appendix A: key 00..0f, message 00..0e (15 bytes) ->
     * a129ca6149be45e5 */
    uint8_t key[16], msg[15];
    for (int i = 0; i < 16; i++)
        key[i] = (uint8_t)i;
    for (int i = 0; i < 15; i++)
        msg[i] = (uint8_t)i;
    ck_assert_uint_eq(lw_siphash(key, msg, 15), 0xa129ca6149be45e5ull);
    /* empty message, from the reference implementation's vector table: 726fdb47dd0e0e31 */
    ck_assert_uint_eq(lw_siphash(key, msg, 0), 0x726fdb47dd0e0e31ull);
}
END_TEST

START_TEST(test_hex_and_parse)
{
    uint8_t out[4];
    char s[9];
    ck_assert_int_eq(lw_hex_decode(out, sizeof(out), "DeadBeef", 8), 4);
    lw_hex_encode(s, out, 4);
    ck_assert_str_eq(s, "deadbeef");
    ck_assert_int_eq(lw_hex_decode(out, sizeof(out), "abc", 3), LW_EMALFORMED);
    ck_assert_int_eq(lw_hex_decode(out, sizeof(out), "zz", 2), LW_EMALFORMED);
    ck_assert_int_eq(lw_hex_decode(out, 1, "abcd", 4), LW_ENOSPC);
    uint64_t u;
    int64_t i;
    ck_assert_int_eq(lw_parse_u64("18446744073709551615", 20, &u), 0);
    ck_assert_uint_eq(u, UINT64_MAX);
    ck_assert_int_eq(lw_parse_u64("18446744073709551616", 20, &u), LW_ERANGE);
    ck_assert_int_eq(lw_parse_u64("", 0, &u), LW_EMALFORMED);
    ck_assert_int_eq(lw_parse_u64("12a", 3, &u), LW_EMALFORMED);
    ck_assert_int_eq(lw_parse_i64("-9223372036854775808", 20, &i), 0);
    ck_assert(i == INT64_MIN);
    ck_assert_int_eq(lw_parse_i64("9223372036854775808", 19, &i), LW_ERANGE);
    ck_assert_int_eq(lw_parse_i64("-", 1, &i), LW_EMALFORMED);
    ck_assert(lw_ct_equal("abc", "abc", 3));
    ck_assert(!lw_ct_equal("abc", "abd", 3));
    uint8_t r1[16] = {0}, r2[16] = {0};
    ck_assert_int_eq(lw_random(r1, 16), 0);
    ck_assert_int_eq(lw_random(r2, 16), 0);
    ck_assert(memcmp(r1, r2, 16) != 0);
}
END_TEST

/* RFC 4648 §10 test vectors, both alphabets, and every length round trip. */
START_TEST(test_b64)
{
    static const char *const vec[][2] = {
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
    };
    struct lw_arena a;
    lw_arena_init(&a, 1024, 1 << 20);
    char enc[128];
    struct lw_bytes out;
    for (size_t i = 0; i < LW_ARRAY_SIZE(vec); i++) {
        size_t n = strlen(vec[i][0]);
        ck_assert_uint_eq(lw_b64_encode_str(enc, sizeof(enc), vec[i][0], n, false),
                          strlen(vec[i][1]));
        ck_assert_str_eq(enc, vec[i][1]);
        ck_assert_int_eq(lw_b64_decode(&a, vec[i][1], strlen(vec[i][1]), &out), 0);
        ck_assert(lw_bytes_eq(out, LW_BYTES(vec[i][0], n)));
    }
    /* URL-safe: no padding, '-' and '_' */
    const uint8_t raw[] = {0xfb, 0xff, 0xbf};
    ck_assert_uint_eq(lw_b64_encode_str(enc, sizeof(enc), raw, 3, true), 4);
    ck_assert_str_eq(enc, "-_-_");
    ck_assert_uint_eq(lw_b64_encode_str(enc, sizeof(enc), "fo", 2, true), 3);
    ck_assert_str_eq(enc, "Zm8");
    ck_assert_int_eq(lw_b64_decode(&a, "Zm8", 3, &out), 0); /* padding optional */
    ck_assert(lw_bytes_eq(out, LW_BYTES_LIT("fo")));
    struct lw_buf b;
    lw_buf_init(&b, 0);
    lw_b64_encode(&b, LW_BYTES(raw, 3), false);
    ck_assert(lw_bytes_eq(lw_buf_bytes(&b), LW_BYTES_LIT("+/+/")));
    lw_buf_deinit(&b);
    ck_assert_uint_eq(lw_b64_encode_str(enc, 4, "foo", 3, false), 0); /* needs 5 with the NUL */
    ck_assert_str_eq(enc, "");
    ck_assert_int_eq(lw_b64_decode(&a, "A", 1, &out), LW_EMALFORMED);
    ck_assert_int_eq(lw_b64_decode(&a, "AA*A", 4, &out), LW_EMALFORMED);
    ck_assert_int_eq(lw_b64_decode(&a, "Zm8=A", 5, &out), LW_EMALFORMED);
    ck_assert_int_eq(lw_b64_decode(&a, "Zm9=", 4, &out), LW_EMALFORMED); /* non-zero tail bits */
    ck_assert_int_eq(lw_b64_decode(&a, "Zg=", 3, &out), LW_EMALFORMED);  /* half padding */
    uint8_t in[64];
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (uint8_t)(i * 37 + 1);
    for (int url = 0; url < 2; url++)
        for (size_t n = 0; n <= sizeof(in); n++) {
            size_t len = lw_b64_encode_str(enc, sizeof(enc), in, n, url);
            ck_assert_uint_eq(len, lw_b64_len(n, url));
            ck_assert_int_eq(lw_b64_decode(&a, enc, len, &out), 0);
            ck_assert(lw_bytes_eq(out, LW_BYTES(in, n)));
        }
    lw_arena_deinit(&a);
}
END_TEST

START_TEST(test_fails_assert_counts)
{
    uint64_t before = lw_assert_failures();
    int x = 1;
    ck_assert(!lw_fails_assert(x == 1));
    ck_assert(lw_fails_assert(x == 2));
    ck_assert_uint_eq(lw_assert_failures(), before + 1);
}
END_TEST

Suite *suite_base(void);
Suite *suite_base(void)
{
    Suite *s = suite_create("base");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_strerror);
    tcase_add_test(tc, test_buf_fixed_overflow);
    tcase_add_test(tc, test_buf_growable);
    tcase_add_test(tc, test_arena);
    tcase_add_test(tc, test_list);
    tcase_add_test(tc, test_hmap_against_reference);
    tcase_add_test(tc, test_hmap_large);
    tcase_add_test(tc, test_cmap_against_reference);
    tcase_add_test(tc, test_cmap_tags_and_addresses);
    tcase_add_test(tc, test_cmap_large);
    tcase_add_test(tc, test_siphash_vector);
    tcase_add_test(tc, test_hex_and_parse);
    tcase_add_test(tc, test_b64);
    tcase_add_test(tc, test_fails_assert_counts);
    suite_add_tcase(s, tc);
    return s;
}
