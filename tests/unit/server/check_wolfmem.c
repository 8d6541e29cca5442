/* Unit tests of wolfSSL's slab allocator (server/wolfmem.c): size classes and alignment, reuse,
 * realloc, large allocations, empty spans returned to the kernel, frees from another thread. */
#include "wolfmem.h"

#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

START_TEST(sizes_and_alignment)
{
    static const size_t sizes[] = {0,    1,    15,   16,   17,   100,   128,   129,   500,
                                   1000, 4096, 8191, 8192, 8193, 20000, 70000, 200000};
    void *p[sizeof(sizes) / sizeof(sizes[0])];
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        p[i] = wolfmem_malloc(sizes[i]);
        ck_assert_ptr_nonnull(p[i]);
        ck_assert_uint_eq((uintptr_t)p[i] % 16, 0);
        memset(p[i], (int)i + 1, sizes[i]);
    }
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        for (size_t j = 0; j < sizes[i]; j++)
            ck_assert_uint_eq(((uint8_t *)p[i])[j], i + 1);
        wolfmem_free(p[i]);
    }
    wolfmem_free(NULL);
}
END_TEST

START_TEST(reuse_and_trim)
{
    enum { N = 20000 };
    static void *p[N];
    struct wolfmem_stats st0, st1, st2, st3;
    wolfmem_trim();
    wolfmem_stats(&st0);
    for (int i = 0; i < N; i++) {
        p[i] = wolfmem_malloc(40 + (size_t)(i % 7) * 100);
        ck_assert_ptr_nonnull(p[i]);
        memset(p[i], 0xa5, 40);
    }
    wolfmem_stats(&st1);
    ck_assert_uint_gt(st1.spans, st0.spans + 50);
    ck_assert_uint_gt(st1.bytes_inuse, st0.bytes_inuse);
    for (int i = 0; i < N; i += 2) /* half: spans stay partly used */
        wolfmem_free(p[i]);
    void *again = wolfmem_malloc(40); /* a freed slot is reused before a new span */
    wolfmem_stats(&st2);
    ck_assert_uint_le(st2.spans, st1.spans);
    wolfmem_free(again);
    for (int i = 1; i < N; i += 2)
        wolfmem_free(p[i]);
    wolfmem_stats(&st2);
    ck_assert_uint_eq(st2.bytes_inuse, st0.bytes_inuse);
    ck_assert_uint_le(st2.spans, st0.spans + 4); /* all empty spans unmapped but a few kept */
    wolfmem_trim();
    wolfmem_stats(&st3);
    ck_assert_uint_le(st3.spans, st0.spans);
}
END_TEST

START_TEST(realloc_keeps_bytes)
{
    uint8_t *p = wolfmem_realloc(NULL, 10);
    ck_assert_ptr_nonnull(p);
    for (int i = 0; i < 10; i++)
        p[i] = (uint8_t)i;
    p = wolfmem_realloc(p, 12); /* same class: in place */
    p = wolfmem_realloc(p, 3000);
    for (int i = 0; i < 10; i++)
        ck_assert_uint_eq(p[i], i);
    p = wolfmem_realloc(p, 50000);
    for (int i = 0; i < 10; i++)
        ck_assert_uint_eq(p[i], i);
    p = wolfmem_realloc(p, 20);
    for (int i = 0; i < 10; i++)
        ck_assert_uint_eq(p[i], i);
    ck_assert_ptr_null(wolfmem_realloc(p, 0));
}
END_TEST

static void *other_thread_free(void *arg)
{
    void **v = arg;
    for (int i = 0; i < 1000; i++)
        wolfmem_free(v[i]);
    return NULL;
}

START_TEST(cross_thread_free)
{
    static void *v[1000];
    struct wolfmem_stats a, b;
    wolfmem_stats(&a);
    for (int i = 0; i < 1000; i++)
        v[i] = wolfmem_malloc((size_t)(i % 300) + 1);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, other_thread_free, v), 0);
    pthread_join(t, NULL);
    wolfmem_stats(&b);
    ck_assert_uint_eq(b.bytes_inuse, a.bytes_inuse);
}
END_TEST

Suite *suite_wolfmem(void);
Suite *suite_wolfmem(void)
{
    Suite *s = suite_create("wolfmem");
    TCase *tc = tcase_create("slabs");
    tcase_add_test(tc, sizes_and_alignment);
    tcase_add_test(tc, reuse_and_trim);
    tcase_add_test(tc, realloc_keeps_bytes);
    tcase_add_test(tc, cross_thread_free);
    suite_add_tcase(s, tc);
    return s;
}
