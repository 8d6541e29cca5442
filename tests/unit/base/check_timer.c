/* Unit tests for the timer wheel on a fake clock, including 1 M timers. */
#include "base/base.h"

#include <check.h>
#include <stdlib.h>

struct rec {
    struct lw_timer t;
    uint64_t fired_at;
    int fired;
};
static struct lw_wheel *g_wheel;
static uint64_t g_last_fire_time;
static bool g_order_ok;

static void on_fire(struct lw_timer *t)
{
    struct rec *r = lw_container_of(t, struct rec, t);
    r->fired++;
    r->fired_at = g_wheel->now;
    if (t->expires < g_last_fire_time)
        g_order_ok = false;
    g_last_fire_time = t->expires;
}

START_TEST(test_basic)
{
    struct lw_wheel w;
    g_wheel = &w;
    lw_wheel_init(&w, 1000);
    ck_assert_uint_eq(lw_wheel_next_deadline(&w), LW_WHEEL_NEVER);
    struct rec a = {0}, b = {0}, c = {0};
    lw_timer_init(&a.t, on_fire);
    lw_timer_init(&b.t, on_fire);
    lw_timer_init(&c.t, on_fire);
    lw_wheel_arm(&w, &a.t, 1005);
    lw_wheel_arm(&w, &b.t, 1000 + 70 * 1000); /* a higher level */
    lw_wheel_arm(&w, &c.t, 999);              /* already due */
    ck_assert_uint_eq(lw_wheel_count(&w), 3);
    ck_assert_uint_eq(lw_wheel_next_deadline(&w), 1000);
    ck_assert_uint_eq(lw_wheel_advance(&w, 1000), 1);
    ck_assert_int_eq(c.fired, 1);
    ck_assert_uint_le(lw_wheel_next_deadline(&w), 1005);
    ck_assert_uint_eq(lw_wheel_advance(&w, 1004), 0);
    ck_assert_uint_eq(lw_wheel_advance(&w, 1005), 1);
    ck_assert_int_eq(a.fired, 1);
    ck_assert_uint_eq(a.fired_at, 1005);
    lw_wheel_cancel(&w, &b.t);
    lw_wheel_cancel(&w, &b.t); /* idempotent */
    ck_assert_uint_eq(lw_wheel_count(&w), 0);
    ck_assert_uint_eq(lw_wheel_advance(&w, 10000000), 0);
    ck_assert_uint_eq(lw_wheel_next_deadline(&w), LW_WHEEL_NEVER);
}
END_TEST

START_TEST(test_rearm_in_callback)
{
    static struct lw_wheel w;
    g_wheel = &w;
    lw_wheel_init(&w, 0);
    struct rec r = {0};
    lw_timer_init(&r.t, on_fire);
    lw_wheel_arm(&w, &r.t, 10);
    /* a periodic timer re-armed from outside after each firing */
    for (int i = 0; i < 100; i++) {
        lw_wheel_advance(&w, (uint64_t)(i + 1) * 10);
        ck_assert_int_eq(r.fired, i + 1);
        lw_wheel_arm(&w, &r.t, (uint64_t)(i + 2) * 10);
    }
}
END_TEST

/* One million timers with random expiries up to ~3 days, 10 % cancelled, advanced in uneven steps
 * on a fake clock: every live timer fires exactly once, never early, in expiry order, at the
 * first advance whose time reaches it. */
START_TEST(test_million_timers)
{
    enum { N = 1000000 };
    static struct lw_wheel w;
    g_wheel = &w;
    uint64_t start = 123456789;
    lw_wheel_init(&w, start);
    struct rec *recs = calloc(N, sizeof(*recs));
    ck_assert_ptr_nonnull(recs);
    srand(42);
    for (int i = 0; i < N; i++) {
        lw_timer_init(&recs[i].t, on_fire);
        uint64_t span = (i % 3 == 0)   ? 1000
                        : (i % 3 == 1) ? 3600000
                                       : 259200000; /* 1 s, 1 h, 3 d */
        uint64_t d = ((uint64_t)rand() << 16 ^ (uint64_t)rand()) % span;
        lw_wheel_arm(&w, &recs[i].t, start + d);
    }
    int cancelled = 0;
    for (int i = 0; i < N; i += 10) {
        lw_wheel_cancel(&w, &recs[i].t);
        cancelled++;
    }
    ck_assert_uint_eq(lw_wheel_count(&w), N - cancelled);
    g_last_fire_time = 0;
    g_order_ok = true;
    uint64_t now = start, fired = 0;
    while (lw_wheel_count(&w)) {
        uint64_t dl = lw_wheel_next_deadline(&w);
        ck_assert_uint_ne(dl, LW_WHEEL_NEVER);
        ck_assert_uint_ge(dl, now);
        now = dl + (uint64_t)(rand() % 50); /* a loop that wakes a little late */
        fired += lw_wheel_advance(&w, now);
    }
    ck_assert(g_order_ok);
    ck_assert_uint_eq(fired, (uint64_t)(N - cancelled));
    for (int i = 0; i < N; i++) {
        if (i % 10 == 0) {
            ck_assert_int_eq(recs[i].fired, 0);
            continue;
        }
        ck_assert_int_eq(recs[i].fired, 1);
        ck_assert_uint_ge(recs[i].fired_at, recs[i].t.expires);
        ck_assert_uint_le(recs[i].fired_at, recs[i].t.expires + 50);
    }
    free(recs);
}
END_TEST

START_TEST(test_fake_clock)
{
    struct lw_clock c;
    lw_clock_fake_init(&c, 5000, 1700000000000);
    ck_assert_uint_eq(lw_clock_mono(&c), 5000);
    lw_clock_fake_advance(&c, 250);
    ck_assert_uint_eq(lw_clock_mono(&c), 5250);
    ck_assert_int_eq(lw_clock_wall(&c), 1700000000250);
    struct lw_clock *sys = lw_clock_system();
    uint64_t a = lw_clock_mono(sys), b = lw_clock_mono(sys);
    ck_assert_uint_ge(b, a);
}
END_TEST

Suite *suite_timer(void);
Suite *suite_timer(void)
{
    Suite *s = suite_create("timer");
    TCase *tc = tcase_create("wheel");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_basic);
    tcase_add_test(tc, test_rearm_in_callback);
    tcase_add_test(tc, test_million_timers);
    tcase_add_test(tc, test_fake_clock);
    suite_add_tcase(s, tc);
    return s;
}
