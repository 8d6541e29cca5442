/* tests/unit/server/check_events_json.c - lw_event_json, the one serialisation of an event that
 * the SSE ring, webhooks and the store share, against json_dumps(JSON_COMPACT) of the object the
 * API used to build (the SSE stream must stay byte-identical). */
#include "api/api_int.h"
#include "events.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

/* Compares the shared text with jansson's output for the same event. */
static void same_as_jansson(struct lw_event *ev)
{
    json_t *j = api_event_json(ev);
    char *want = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    size_t len = 0, dlen = 0;
    const char *got = lw_event_json(ev, &len);
    if (!want) {
        ck_assert_ptr_null(got);
        return;
    }
    ck_assert_ptr_nonnull(got);
    ck_assert_uint_eq(len, strlen(want));
    ck_assert_str_eq(got, want);
    char *dwant = json_dumps(ev->data, JSON_COMPACT);
    const char *dgot = lw_event_data_json(ev, &dlen);
    ck_assert_ptr_nonnull(dgot);
    ck_assert_uint_eq(dlen, strlen(dwant));
    ck_assert_int_eq(memcmp(dgot, dwant, dlen), 0);
    free(dwant);
    free(want);
    /* cached: the same pointer again */
    ck_assert_ptr_eq(lw_event_json(ev, &len), got);
}

START_TEST(test_shapes)
{
    struct lw_event *ev = lw_event_new(LW_EV_REGISTERED, "urn:dev:\"q\"\\x");
    ck_assert_ptr_nonnull(ev);
    ev->id = 123456789012345ull;
    ev->time_ms = 1763784329123;
    json_t *d = ev->data;
    json_object_set_new(d, "lifetime", json_integer(86400));
    json_object_set_new(d, "neg", json_integer(-9223372036854775807LL - 1));
    json_object_set_new(d, "zero", json_integer(0));
    json_object_set_new(d, "pi", json_real(3.14159));
    json_object_set_new(d, "big", json_real(1e300));
    json_object_set_new(d, "whole", json_real(2.0));
    json_object_set_new(d, "t", json_true());
    json_object_set_new(d, "f", json_false());
    json_object_set_new(d, "n", json_null());
    json_object_set_new(d, "esc", json_string("a\"b\\c/d\b\f\n\r\t\x01\x1f\x7f end"));
    json_object_set_new(d, "utf8", json_string("caf\xc3\xa9 \xf0\x9f\x98\x80"));
    json_object_set_new(d, "k\"\n\xc3\xa9y", json_string(""));
    json_object_set_new(d, "empty_o", json_object());
    json_object_set_new(d, "empty_a", json_array());
    json_t *a = json_array();
    for (int i = 0; i < 5; i++)
        json_array_append_new(a, json_pack("{s:s, s:i, s:[i,f,s]}", "path", "/3/0/1", "v", i, "x",
                                           -i, 0.5 * i, "\x02"));
    json_object_set_new(d, "objects", a);
    json_t *deep = json_array();
    json_t *cur = deep;
    for (int i = 0; i < 100; i++) { /* past the direct writer's depth: jansson writes the rest */
        json_t *n = json_array();
        json_array_append_new(cur, n);
        cur = n;
    }
    json_array_append_new(cur, json_integer(7));
    json_object_set_new(d, "deep", deep);
    same_as_jansson(ev);
    lw_event_free(ev);
}
END_TEST

START_TEST(test_plain_and_empty)
{
    struct lw_event *ev = lw_event_new(LW_EV_EXPIRED, NULL);
    ck_assert_ptr_nonnull(ev);
    ev->id = 1;
    ev->time_ms = 999;
    same_as_jansson(ev);
    lw_event_free(ev);
    ev = lw_event_new(LW_EV_UPDATED, "meter-0001");
    ev->id = 18446744073709551615ull; /* jansson prints it signed, as the API always did */
    ev->time_ms = 0;
    json_object_set_new(ev->data, "binding", json_string("UQ"));
    same_as_jansson(ev);
    lw_event_free(ev);
}
END_TEST

START_TEST(test_bad_endpoint)
{
    struct lw_event *ev = lw_event_new(LW_EV_REGISTERED, "bad\xff");
    ck_assert_ptr_nonnull(ev);
    ev->id = 2;
    same_as_jansson(ev); /* jansson refuses invalid UTF-8: no text either */
    size_t len;
    ck_assert_ptr_null(lw_event_data_json(ev, &len));
    lw_event_free(ev);
}
END_TEST

Suite *suite_events_json(void);
Suite *suite_events_json(void)
{
    Suite *s = suite_create("events_json");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_shapes);
    tcase_add_test(tc, test_plain_and_empty);
    tcase_add_test(tc, test_bad_endpoint);
    suite_add_tcase(s, tc);
    return s;
}
