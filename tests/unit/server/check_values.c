/* tests/unit/server/check_values.c - the API's flat JSON values (server/values.h): records to
 * JSON (integers beyond 2^53 as strings, opaque base64, time RFC 3339 + epoch, objlnk "o:i"),
 * JSON to records with type checks against a resolver, base64 round trips, and the attribute
 * query builder's validation (server/observe.h). */
#include "base/err.h"
#include "lwm2m/value.h"
#include "observe.h"
#include "values.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

static enum lw_m2m_type t_type_of(void *ctx, const struct lw_m2m_path *p)
{
    (void)ctx;
    if (p->id[0] == 3 && p->id[2] == 0)
        return LW_M2M_T_STRING;
    if (p->id[0] == 3 && p->id[2] == 9)
        return LW_M2M_T_INTEGER;
    if (p->id[0] == 3 && p->id[2] == 13)
        return LW_M2M_T_TIME;
    return LW_M2M_T_NONE;
}
static const struct lw_m2m_types types = {t_type_of, NULL};

static char *dump(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    return s;
}

START_TEST(test_record_json)
{
    struct lw_m2m_record r = {.path = LW_M2M_PATH3(3, 0, 9), .has_value = true};
    r.value.type = LW_M2M_T_INTEGER;
    r.value.i = 42;
    char *s = dump(values_record_json(&r));
    ck_assert_str_eq(s, "{\"path\":\"/3/0/9\",\"type\":\"integer\",\"value\":42}");
    free(s);
    r.value.i = (int64_t)1 << 60;
    s = dump(values_record_json(&r));
    ck_assert_str_eq(
        s, "{\"path\":\"/3/0/9\",\"type\":\"integer\",\"value\":\"1152921504606846976\"}");
    free(s);
    r.value.type = LW_M2M_T_UNSIGNED;
    r.value.u = UINT64_MAX;
    s = dump(values_record_json(&r));
    ck_assert_ptr_nonnull(strstr(s, "\"18446744073709551615\""));
    free(s);
    r.value.type = LW_M2M_T_OPAQUE;
    r.value.bytes = LW_BYTES("\x01\x02\x03\xff", 4);
    s = dump(values_record_json(&r));
    ck_assert_ptr_nonnull(strstr(s, "\"value\":\"AQID/w==\""));
    free(s);
    r.value.type = LW_M2M_T_TIME;
    r.value.i = 1700000000;
    s = dump(values_record_json(&r));
    ck_assert_ptr_nonnull(strstr(s, "\"epoch\":1700000000"));
    ck_assert_ptr_nonnull(strstr(s, "\"value\":\"2023-11-14T22:13:20Z\""));
    free(s);
    r.value.type = LW_M2M_T_OBJLNK;
    r.value.lnk = (struct lw_m2m_objlnk){3, 1};
    s = dump(values_record_json(&r));
    ck_assert_ptr_nonnull(strstr(s, "\"value\":\"3:1\""));
    free(s);
    r.has_value = false;
    s = dump(values_record_json(&r));
    ck_assert_str_eq(s, "{\"path\":\"/3/0/9\"}");
    free(s);
}
END_TEST

static int from(const char *js, struct lw_arena *a, struct lw_m2m_records *out, char *err)
{
    json_error_t je;
    json_t *j = json_loads(js, 0, &je);
    ck_assert_ptr_nonnull(j);
    struct lw_m2m_path within = LW_M2M_PATH1(3);
    memset(out, 0, sizeof(*out));
    int rc = values_from_json(j, &within, &types, a, out, err, 200);
    json_decref(j);
    return rc;
}

START_TEST(test_from_json)
{
    struct lw_arena a;
    struct lw_m2m_records r;
    char err[200] = "";
    lw_arena_init(&a, 1024, 1 << 20);
    ck_assert_int_eq(from("{\"values\":[{\"path\":\"/3/0/0\",\"value\":\"x\"},"
                          "{\"path\":\"/3/0/9\",\"value\":\"9007199254740993\"},"
                          "{\"path\":\"/3/0/13\",\"value\":\"2023-11-14T22:13:20Z\"},"
                          "{\"path\":\"/3/0/5\",\"type\":\"opaque\",\"value\":\"AQID_w\"},"
                          "{\"path\":\"/3/0/7\",\"type\":\"objlnk\",\"value\":\"3:1\"}]}",
                          &a, &r, err),
                     0);
    ck_assert_uint_eq(r.n, 5);
    ck_assert_int_eq(r.v[1].value.i, 9007199254740993LL);
    ck_assert_int_eq(r.v[2].value.type, LW_M2M_T_TIME);
    ck_assert_int_eq(r.v[2].value.i, 1700000000);
    ck_assert_uint_eq(r.v[3].value.bytes.len, 4);
    ck_assert_int_eq(r.v[3].value.bytes.ptr[3], 0xff);
    ck_assert_int_eq(r.v[4].value.lnk.inst, 1);
    /* time with an offset */
    ck_assert_int_eq(
        from("[{\"path\":\"/3/0/13\",\"value\":\"2023-11-15T00:13:20+02:00\"}]", &a, &r, err), 0);
    ck_assert_int_eq(r.v[0].value.i, 1700000000);
    /* errors */
    ck_assert_int_eq(from("{\"values\":[{\"path\":\"/3/0/9\",\"value\":1.5}]}", &a, &r, err),
                     LW_ETYPE);
    ck_assert_int_eq(from("{\"values\":[{\"path\":\"/3/0/0\",\"value\":5}]}", &a, &r, err),
                     LW_ETYPE);
    ck_assert_int_eq(
        from("{\"values\":[{\"path\":\"/3/0/0\",\"type\":\"integer\",\"value\":5}]}", &a, &r, err),
        LW_ETYPE);
    ck_assert_int_eq(from("{\"values\":[{\"path\":\"/4/0/0\",\"value\":\"x\"}]}", &a, &r, err),
                     LW_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "outside"));
    ck_assert_int_eq(from("{\"values\":[{\"path\":\"/3/0/5\",\"value\":\"x\"}]}", &a, &r, err),
                     LW_EINVAL); /* unknown type, none given */
    ck_assert_int_eq(from("{\"values\":[{\"path\":\"/3/0\",\"value\":\"x\"}]}", &a, &r, err),
                     LW_EINVAL);
    ck_assert_int_eq(from("{\"values\":[{\"path\":\"/3/0/0\"}]}", &a, &r, err), LW_EINVAL);
    ck_assert_int_eq(from("{\"values\":5}", &a, &r, err), LW_EINVAL);
    ck_assert_int_eq(
        from("[{\"path\":\"/3/0/5\",\"type\":\"opaque\",\"value\":\"@@@\"}]", &a, &r, err),
        LW_ETYPE);
    ck_assert_int_eq(
        from("[{\"path\":\"/3/0/7\",\"type\":\"objlnk\",\"value\":\"3:70000\"}]", &a, &r, err),
        LW_ETYPE);
    ck_assert_int_eq(
        from("[{\"path\":\"/3/0/13\",\"value\":\"2023-11-15 00:13:20\"}]", &a, &r, err), LW_ETYPE);
    lw_arena_deinit(&a);
}
END_TEST

static int attrq(const char *js, char *q)
{
    char err[160];
    json_t *j = json_loads(js, 0, NULL);
    ck_assert_ptr_nonnull(j);
    int rc = observe_attr_query(j, q, 256, err, sizeof(err));
    json_decref(j);
    return rc;
}

START_TEST(test_attr_query)
{
    char q[256];
    ck_assert_int_eq(attrq("{\"pmin\":1,\"pmax\":60,\"gt\":80.5,\"lt\":10,\"st\":2}", q), 0);
    ck_assert_str_eq(q, "pmin=1&pmax=60&gt=80.5&lt=10&st=2");
    ck_assert_int_eq(attrq("{\"epmin\":1,\"epmax\":2,\"edge\":true,\"con\":0,\"hqmax\":5}", q), 0);
    ck_assert_str_eq(q, "epmin=1&epmax=2&edge=1&con=0&hqmax=5");
    ck_assert_int_eq(attrq("{\"pmin\":null}", q), 0);
    ck_assert_str_eq(q, "pmin");
    ck_assert_int_eq(attrq("{\"lt\":-5,\"gt\":-1}", q), 0); /* negative thresholds are fine */
    ck_assert_int_eq(attrq("{\"pmin\":10,\"pmax\":5}", q), LW_EINVAL);
    ck_assert_int_eq(attrq("{\"epmin\":5,\"epmax\":5}", q), LW_EINVAL);
    ck_assert_int_eq(attrq("{\"gt\":10,\"lt\":8,\"st\":1}", q), LW_EINVAL);
    ck_assert_int_eq(attrq("{\"st\":-1}", q), LW_EINVAL);
    ck_assert_int_eq(attrq("{\"pmin\":-1}", q), LW_EINVAL);
    ck_assert_int_eq(attrq("{\"pmin\":1.5}", q), LW_EINVAL);
    ck_assert_int_eq(attrq("{\"edge\":2}", q), LW_EINVAL);
    ck_assert_int_eq(attrq("{\"dim\":2}", q), LW_EINVAL);
    ck_assert_int_eq(attrq("[1]", q), LW_EINVAL);
}
END_TEST

Suite *suite_values(void);
Suite *suite_values(void)
{
    Suite *s = suite_create("values");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_record_json);
    tcase_add_test(tc, test_from_json);
    tcase_add_test(tc, test_attr_query);
    suite_add_tcase(s, tc);
    return s;
}
