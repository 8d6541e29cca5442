/* tests/unit/server/check_events_json.c - lw_event_json, the one serialisation of an event that
 * the SSE ring, webhooks and the store share, against json_dumps(JSON_COMPACT) of the object the
 * API used to build (the SSE stream must stay byte-identical). */
#include "api/api_int.h"
#include "events.h"

#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void same_as_jansson(struct lw_event *ev);

/* Tricky strings: quotes, backslashes, every control character, DEL, slashes, UTF-8 of 2, 3
 * and 4 bytes, and byte sequences jansson refuses (overlong, surrogate, above U+10FFFF,
 * truncated, lone continuation, 0xF5+). len -1: strlen. */
static const struct {
    const char *s;
    int len;
} tricky[] = {
    {"", -1},
    {"urn:dev:\"quoted\"", -1},
    {"back\\slash\\", -1},
    {"a/b</c>", -1},
    {"\x01\x02\x03\x04\x05\x06\x07\b\t\n\x0b\f\r\x0e\x0f\x10\x1a\x1b\x1f", -1},
    {"nul\0inside", 11},
    {"\x7f del", -1},
    {"caf\xc3\xa9", -1},
    {"\xe2\x82\xac euro \xef\xbf\xbf \xee\x80\x80", -1},
    {"emoji \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf", -1},
    {"\"\\\xc3\xa9\n\xf0\x90\x80\x80\"", -1},
    {"bad\xff", -1},
    {"overlong \xc0\x80", -1},
    {"overlong \xc1\xbf", -1},
    {"overlong \xe0\x80\xaf", -1},
    {"overlong \xf0\x80\x80\xaf", -1},
    {"surrogate \xed\xa0\x80", -1},
    {"surrogate \xed\xbf\xbf", -1},
    {"too big \xf4\x90\x80\x80", -1},
    {"\xf5\x80\x80\x80", -1},
    {"truncated \xe2\x82", -1},
    {"truncated \xf0\x9f\x98", -1},
    {"lone \x80 continuation", -1},
    {"\xc3", -1},
    {"ok then bad \xc3\xa9\xc3", -1},
};

static size_t tlen(unsigned i)
{
    return tricky[i].len < 0 ? strlen(tricky[i].s) : (size_t)tricky[i].len;
}

START_TEST(test_put_str_like_jansson)
{
    for (unsigned i = 0; i < sizeof(tricky) / sizeof(tricky[0]); i++) {
        json_t *j = json_stringn(tricky[i].s, tlen(i));
        char *want = j ? json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
        struct lw_buf b;
        lw_buf_init(&b, 0);
        lw_buf_put(&b, "x", 1);
        int rc = lw_json_put_str(&b, tricky[i].s, tlen(i));
        if (!want) {
            ck_assert_msg(rc == -1, "string %u accepted", i);
            ck_assert_uint_eq(b.len, 1); /* nothing appended */
        } else {
            ck_assert_msg(rc == 0, "string %u refused", i);
            ck_assert_uint_eq(b.len - 1, strlen(want));
            ck_assert_msg(memcmp(b.data + 1, want, b.len - 1) == 0, "string %u: %.*s vs %s", i,
                          (int)b.len - 1, (const char *)b.data + 1, want);
            /* the ASCII form, as JSON_ENSURE_ASCII writes it */
            char *ascii = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT | JSON_ENSURE_ASCII);
            struct lw_buf a;
            lw_buf_init(&a, 0);
            ck_assert_int_eq(lw_json_put_ascii(&a, (const char *)b.data + 1, b.len - 1), 0);
            ck_assert_int_eq(lw_buf_status(&a), 0);
            ck_assert_uint_eq(a.len, strlen(ascii));
            ck_assert_msg(memcmp(a.data, ascii, a.len) == 0, "ascii %u", i);
            lw_buf_deinit(&a);
            free(ascii);
        }
        ck_assert_int_eq(lw_buf_status(&b), 0);
        lw_buf_deinit(&b);
        free(want);
        json_decref(j);
    }
}
END_TEST

START_TEST(test_utc_fields_like_gmtime)
{
    const int64_t fixed[] = {0,         59,         86399,       86400,       951782400,
                             951868799, 4107542400, 4102444799,  1763784329,  253402300799,
                             68256000,  946684800,  13569465600, 253370764800};
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (unsigned i = 0; i < 20000; i++) {
        int64_t t;
        if (i < sizeof(fixed) / sizeof(fixed[0])) {
            t = fixed[i];
        } else {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            t = (int64_t)(x % 253402300800ull);
        }
        unsigned f[6];
        struct tm tm;
        time_t tt = (time_t)t;
        ck_assert(lw_utc_fields(t, f));
        ck_assert_ptr_nonnull(gmtime_r(&tt, &tm));
        ck_assert_msg(f[0] == (unsigned)tm.tm_year + 1900 && f[1] == (unsigned)tm.tm_mon + 1 &&
                          f[2] == (unsigned)tm.tm_mday && f[3] == (unsigned)tm.tm_hour &&
                          f[4] == (unsigned)tm.tm_min && f[5] == (unsigned)tm.tm_sec,
                      "t=%lld", (long long)t);
    }
    unsigned f[6];
    ck_assert(!lw_utc_fields(-1, f));
    ck_assert(!lw_utc_fields(253402300800, f));
}
END_TEST

/* A written event (lw_event_init_written, the registration events' form) against the jansson
 * event with the same data: the data writer gets a jansson object through put_str only. */
static int write_obj(const void *ctx, struct lw_buf *b)
{
    char *s = json_dumps(ctx, JSON_COMPACT);
    if (!s)
        return -1;
    lw_buf_put_str(b, s);
    free(s);
    return 0;
}

static char got_text[4096];
static size_t got_len;
static bool got_null;
static char got_data[4096];

static void capture(void *ctx, const struct lw_event *ev)
{
    (void)ctx;
    size_t len = 0, dlen = 0;
    const char *t = lw_event_json(ev, &len);
    got_null = !t;
    if (t && len < sizeof(got_text)) {
        memcpy(got_text, t, len + 1);
        got_len = len;
        const char *d = lw_event_data_json(ev, &dlen);
        ck_assert_ptr_nonnull(d);
        memcpy(got_data, d, dlen);
        got_data[dlen] = 0;
        ck_assert_ptr_eq(lw_event_json(ev, &len), t); /* cached */
    }
}

START_TEST(test_written_event_like_jansson)
{
    struct lw_event_sink sink = {.on_event = capture};
    lw_events_init(77);
    lw_events_subscribe(&sink);
    for (unsigned i = 0; i < sizeof(tricky) / sizeof(tricky[0]); i++) {
        const char *ep = tricky[i].s;
        size_t elen = tlen(i);
        json_t *data = json_pack("{s:s, s:i, s:b, s:n}", "registration_id", "a1", "lifetime_s",
                                 86400, "queue_mode", 1, "sms");
        json_t *es = json_stringn(ep, elen);
        if (es)
            json_object_set_new(data, "endpoint", es);
        /* the old path: a jansson event */
        struct lw_event *old = lw_event_new(LW_EV_REGISTERED, NULL);
        ck_assert_ptr_nonnull(old);
        memcpy(old->endpoint, ep, elen < 127 ? elen : 127);
        old->endpoint[elen < 127 ? elen : 127] = 0;
        json_decref(old->data);
        old->data = json_incref(data);
        /* the new one, delivered */
        struct lw_event ev;
        lw_event_init_written(&ev, LW_EV_REGISTERED, ep, elen, write_obj, data);
        ck_assert_str_eq(ev.endpoint, old->endpoint);
        got_null = true;
        got_len = 0;
        lw_events_deliver(&ev);
        ck_assert_ptr_null(ev.json);
        old->id = 77 + i;
        old->time_ms = ev.time_ms;
        json_t *j = api_event_json(old);
        char *want = j ? json_dumps(j, JSON_COMPACT) : NULL;
        if (!want) {
            ck_assert_msg(got_null, "endpoint %u: text where jansson has none", i);
        } else {
            ck_assert_msg(!got_null, "endpoint %u: no text", i);
            ck_assert_uint_eq(got_len, strlen(want));
            ck_assert_str_eq(got_text, want);
            char *dw = json_dumps(data, JSON_COMPACT);
            ck_assert_str_eq(got_data, dw);
            free(dw);
        }
        free(want);
        json_decref(j);
        lw_event_free(old);
        json_decref(data);
    }
    lw_events_unsubscribe(&sink);
}
END_TEST

/* Times of events: the hand-written RFC 3339 form against strftime's. */
START_TEST(test_event_times)
{
    const int64_t ms[] = {0,
                          1,
                          999,
                          1000,
                          951782400123,
                          1763784329123,
                          253402300799999,
                          253402300800000,
                          -1,
                          -1500,
                          4102444799999};
    for (unsigned i = 0; i < sizeof(ms) / sizeof(ms[0]); i++) {
        struct lw_event *ev = lw_event_new(LW_EV_UPDATED, "t");
        ck_assert_ptr_nonnull(ev);
        ev->id = 5;
        ev->time_ms = ms[i];
        same_as_jansson(ev);
        lw_event_free(ev);
    }
}
END_TEST

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
    tcase_add_test(tc, test_put_str_like_jansson);
    tcase_add_test(tc, test_utc_fields_like_gmtime);
    tcase_add_test(tc, test_written_event_like_jansson);
    tcase_add_test(tc, test_event_times);
    suite_add_tcase(s, tc);
    return s;
}
