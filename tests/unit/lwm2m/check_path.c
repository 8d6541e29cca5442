/* Unit tests for lib/lwm2m/value.c: path parsing/formatting/ordering, type names, records. */
#include "lwm2m/value.h"

#include "base/err.h"

#include <check.h>
#include <string.h>

static int parse(const char *s, struct lw_m2m_path *p)
{
    return lw_m2m_path_parse(s, strlen(s), p);
}

START_TEST(test_path_parse_valid)
{
    struct lw_m2m_path p;
    ck_assert_int_eq(parse("/", &p), 0);
    ck_assert_int_eq(p.len, 0);
    ck_assert_int_eq(parse("/3", &p), 0);
    ck_assert_int_eq(p.len, 1);
    ck_assert_int_eq(p.id[0], 3);
    ck_assert_int_eq(parse("/3/0/7/1", &p), 0);
    ck_assert_int_eq(p.len, 4);
    ck_assert_int_eq(p.id[2], 7);
    ck_assert_int_eq(p.id[3], 1);
    ck_assert_int_eq(parse("/65534/0", &p), 0);
    ck_assert_int_eq(p.id[0], 65534);
    ck_assert_int_eq(parse("/0/0/0/0", &p), 0);
}
END_TEST

START_TEST(test_path_parse_invalid)
{
    static const char *const bad[] = {
        "",   "3",     "//",  "/3/", "/3//0", "/65535", "/99999",  "/03",   "/3/0/1/2/5",
        "/a", "/3/-1", "/+3", "/3 ", " /3",   "/3/0x1", "/123456", "/3/0/", "/1.5",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct lw_m2m_path p;
        ck_assert_msg(parse(bad[i], &p) == LW_EMALFORMED, "accepted \"%s\"", bad[i]);
    }
    /* embedded NUL is not a digit */
    struct lw_m2m_path p;
    ck_assert_int_eq(lw_m2m_path_parse("/3\0", 3, &p), LW_EMALFORMED);
}
END_TEST

START_TEST(test_path_format_roundtrip)
{
    static const char *const good[] = {"/", "/0", "/3/0", "/3/0/7", "/65534/65534/65534/65534"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct lw_m2m_path p;
        char out[32];
        ck_assert_int_eq(parse(good[i], &p), 0);
        int n = lw_m2m_path_format(&p, out, sizeof(out));
        ck_assert_int_eq(n, (int)strlen(good[i]));
        ck_assert_str_eq(out, good[i]);
    }
    struct lw_m2m_path p = LW_M2M_PATH4(65534, 65534, 65534, 65534);
    char small[10];
    ck_assert_int_eq(lw_m2m_path_format(&p, small, sizeof(small)), LW_ENOSPC);
    char exact[25];
    ck_assert_int_eq(lw_m2m_path_format(&p, exact, sizeof(exact)), 24);
    struct lw_m2m_path root = LW_M2M_PATH_ROOT;
    ck_assert_int_eq(lw_m2m_path_format(&root, small, 1), LW_ENOSPC);
}
END_TEST

START_TEST(test_path_relations)
{
    struct lw_m2m_path a = LW_M2M_PATH3(3, 0, 1), b = LW_M2M_PATH2(3, 0), c = LW_M2M_PATH2(3, 1);
    struct lw_m2m_path root = LW_M2M_PATH_ROOT;
    ck_assert(lw_m2m_path_within(&a, &b));
    ck_assert(!lw_m2m_path_within(&b, &a));
    ck_assert(lw_m2m_path_within(&a, &root));
    ck_assert(!lw_m2m_path_within(&a, &c));
    ck_assert(lw_m2m_path_within(&a, &a));
    ck_assert(lw_m2m_path_eq(&a, &a));
    ck_assert(!lw_m2m_path_eq(&a, &b));
    ck_assert_int_lt(lw_m2m_path_cmp(&b, &a), 0); /* prefix first */
    ck_assert_int_gt(lw_m2m_path_cmp(&a, &b), 0);
    ck_assert_int_lt(lw_m2m_path_cmp(&a, &c), 0);
    ck_assert_int_eq(lw_m2m_path_cmp(&c, &c), 0);
    ck_assert_int_lt(lw_m2m_path_cmp(&root, &b), 0);
}
END_TEST

START_TEST(test_type_names)
{
    ck_assert_str_eq(lw_m2m_type_name(LW_M2M_T_UNSIGNED), "Unsigned Integer");
    ck_assert_str_eq(lw_m2m_type_api_name(LW_M2M_T_CORELNK), "corelnk");
    ck_assert_str_eq(lw_m2m_type_name((enum lw_m2m_type)99), "None");
    for (int t = LW_M2M_T_STRING; t <= LW_M2M_T_CORELNK; t++) {
        const char *n = lw_m2m_type_name((enum lw_m2m_type)t);
        const char *an = lw_m2m_type_api_name((enum lw_m2m_type)t);
        ck_assert_int_eq(lw_m2m_type_parse(n, strlen(n)), t);
        ck_assert_int_eq(lw_m2m_type_parse(an, strlen(an)), t);
    }
    ck_assert_int_eq(lw_m2m_type_parse("STRING", 6), LW_M2M_T_STRING);
    ck_assert_int_eq(lw_m2m_type_parse("", 0), LW_M2M_T_NONE);
    ck_assert_int_eq(lw_m2m_type_parse("Strin", 5), LW_M2M_T_NONE);
    ck_assert_int_eq(lw_m2m_type_parse("Stringg", 7), LW_M2M_T_NONE);
    ck_assert_int_eq(lw_m2m_type_parse("Unsigned Int", 12), LW_M2M_T_UNSIGNED);
    ck_assert_int_eq(lw_m2m_type_parse("Unsigned In", 11), LW_M2M_T_NONE);
}
END_TEST

START_TEST(test_records_push)
{
    struct lw_arena a;
    struct lw_m2m_records r = {0};
    lw_arena_init(&a, 0, 1 << 20);
    for (int i = 0; i < 100; i++) {
        struct lw_m2m_record *rec = lw_m2m_records_push(&r, &a);
        ck_assert_ptr_nonnull(rec);
        rec->path = LW_M2M_PATH3(3, 0, (uint16_t)i);
    }
    ck_assert_uint_eq(r.n, 100);
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(r.v[i].path.id[2], i);
    lw_arena_deinit(&a);
    /* an arena that refuses */
    lw_arena_init(&a, 64, 64);
    struct lw_m2m_records r2 = {0};
    ck_assert_ptr_null(lw_m2m_records_push(&r2, &a));
    lw_arena_deinit(&a);
}
END_TEST

Suite *suite_path(void);
Suite *suite_path(void)
{
    Suite *s = suite_create("lwm2m_path");
    TCase *tc = tcase_create("path");
    tcase_add_test(tc, test_path_parse_valid);
    tcase_add_test(tc, test_path_parse_invalid);
    tcase_add_test(tc, test_path_format_roundtrip);
    tcase_add_test(tc, test_path_relations);
    tcase_add_test(tc, test_type_names);
    tcase_add_test(tc, test_records_push);
    suite_add_tcase(s, tc);
    return s;
}
