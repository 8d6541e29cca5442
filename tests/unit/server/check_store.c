/* Unit tests of the write-behind store's queue (server/store/store.c) without a database: the
 * writer's connection is refused, so every change stays queued and the counters show how they
 * coalesce per endpoint (the newest state wins; a delete only applies to the registration it
 * names). The database's answers are played by lw__store_fake_round: a refused batch is split
 * until only the refused rows are dropped, a newer change wins over a retried older one, and a
 * transient failure holds the writer for its backoff. Also the objects JSON -> link list
 * conversion restore relies on. */
#include "base/buf.h"
#include "base/err.h"
#include "base/util.h"
#include "registry.h"
#include "store/store.h"

#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

static uv_loop_t loop;

static void change(enum lw_event_type type, const char *ep, uint64_t id, uint32_t lt)
{
    struct peer_addr a = {.family = 4, .port = 5683, .ip = {127, 0, 0, 1}};
    struct regsrv_change c = {.type = type,
                              .id = id,
                              .ep = ep,
                              .addr = &a,
                              .ver = 0x11,
                              .binding = "U",
                              .lifetime_s = lt,
                              .registered_s = 1790000000,
                              .updated_s = 1790000000,
                              .expires_s = 1790000000 + lt};
    lw_store_change(&c);
}

static void on_wait(uv_timer_t *t)
{
    uv_stop(t->loop);
}

/* Runs the loop long enough for a flush tick to drain the inbox. */
static void tick(void)
{
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    uv_timer_start(&t, on_wait, 3 * LW_STORE_FLUSH_MS, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
}

START_TEST(coalesces_per_endpoint)
{
    /* port 1 on loopback: refused at once, the writer keeps everything queued */
    char url[] = "postgresql://lwm2md@127.0.0.1:1/none?connect_timeout=1";
    struct lw_config cfg;
    struct lw_store_stats st;
    memset(&cfg, 0, sizeof(cfg));
    cfg.db_url = url;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    ck_assert_int_eq(lw_store_start(&loop, &cfg), 0);
    ck_assert(lw_store_enabled());
    ck_assert_int_eq(lw_store_attach(1, 0, &loop), 0);
    ck_assert_int_eq(lw_store_attach(2, 0, &loop), LW_EINVAL); /* another writer count */

    change(LW_EV_REGISTERED, "ep-a", 1, 300);
    change(LW_EV_UPDATED, "ep-a", 1, 600);     /* replaces the queued Register */
    change(LW_EV_DEREGISTERED, "ep-a", 99, 0); /* names another registration: ignored */
    change(LW_EV_REGISTERED, "ep-b", 2, 300);  /* a second endpoint */
    change(LW_EV_EXPIRED, "ep-b", 2, 0);       /* ends the queued one: a delete */
    change(LW_EV_REGISTERED, "ep-b", 3, 300);  /* a new registration replaces the delete */
    change(LW_EV_NOTIFICATION, "ep-c", 4, 0);  /* not a registration change */
    change(LW_EV_REGISTERED, "", 5, 300);      /* no endpoint */
    tick();
    lw_store_get_stats(&st);
    ck_assert_uint_eq(st.changes, 6);
    ck_assert_uint_eq(st.coalesced, 4);
    ck_assert_uint_eq(st.queued, 2);
    ck_assert_uint_eq(st.dropped, 0);
    ck_assert_uint_eq(st.upserts, 0);
    ck_assert(!st.connected);
    ck_assert(!lw_store_db_ok());

    lw_store_detach(0);
    lw_store_detach(0); /* idempotent */
    uv_run(&loop, UV_RUN_DEFAULT);
    lw_store_stop(); /* the database stays unreachable: logged, freed */
    ck_assert(!lw_store_enabled());
    ck_assert(lw_store_db_ok()); /* no database configured any more */
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

/* port 1 on loopback: refused at once, the writer stays disconnected and the tests play the
 * database with lw__store_fake_round */
static char down_url[] = "postgresql://lwm2md@127.0.0.1:1/none?connect_timeout=1";

static void down_start(void)
{
    struct lw_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.db_url = down_url;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    ck_assert_int_eq(lw_store_start(&loop, &cfg), 0);
    ck_assert_int_eq(lw_store_attach(1, 0, &loop), 0);
}

static void down_stop(void)
{
    lw_store_detach(0);
    uv_run(&loop, UV_RUN_DEFAULT);
    lw_store_stop();
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}

#define NEPS 300

/* What the fake database wrote, per endpoint "<prefix>-NNN". */
struct fakedb {
    const char *bad[4]; /* endpoints refused */
    unsigned ups[NEPS], dels[NEPS];
    uint32_t last_lt[NEPS];
    unsigned bad_seen;
};

static int ep_index(const char *ep)
{
    const char *d = strrchr(ep, '-');
    return d ? atoi(d + 1) : -1;
}

static bool fake_refuse(void *ctx, const char *ep)
{
    struct fakedb *db = ctx;
    for (size_t i = 0; i < LW_ARRAY_SIZE(db->bad) && db->bad[i]; i++)
        if (strcmp(db->bad[i], ep) == 0)
            return true;
    return false;
}

static void fake_written(void *ctx, const char *ep, uint32_t lifetime_s, bool del)
{
    struct fakedb *db = ctx;
    int i = ep_index(ep);
    ck_assert(i >= 0 && i < NEPS);
    ck_assert(!fake_refuse(ctx, ep));
    if (del) {
        db->dels[i]++;
    } else {
        db->ups[i]++;
        db->last_lt[i] = lifetime_s;
    }
}

/* Plays rounds until nothing waits; returns the rounds played. */
static unsigned settle(struct fakedb *db)
{
    struct lw__store_fake f = {.refuse = fake_refuse, .written = fake_written, .ctx = db};
    struct lw_store_stats st;
    unsigned rounds = 0;
    for (; rounds < 10000; rounds++) {
        lw__store_fake_round(0, &f);
        lw_store_get_stats(&st);
        if (st.queued == 0 && st.inflight == 0)
            break;
    }
    return rounds;
}

START_TEST(refused_rows_isolated)
{
    struct fakedb db = {.bad = {"iso-000", "iso-137", "iso-138", "iso-299"}};
    struct lw_store_stats st;
    char ep[32];
    down_start();
    for (unsigned i = 0; i < NEPS; i++) {
        snprintf(ep, sizeof(ep), "iso-%03u", i);
        change(LW_EV_REGISTERED, ep, 100 + i, 300);
    }
    ck_assert_uint_lt(settle(&db), 10000);
    lw_store_get_stats(&st);
    ck_assert_uint_eq(st.failed, 4); /* rows, not batches */
    ck_assert_uint_eq(st.upserts, NEPS - 4);
    ck_assert_uint_ge(st.splits, 8); /* at least log2(300) levels to the first bad row */
    ck_assert_uint_eq(st.queued, 0);
    for (unsigned i = 0; i < NEPS; i++) {
        bool bad = i == 0 || i == 137 || i == 138 || i == 299;
        ck_assert_uint_eq(db.ups[i], bad ? 0 : 1); /* every good row exactly once */
        ck_assert_uint_eq(db.dels[i], 0);
    }
    down_stop();
}
END_TEST

START_TEST(newer_change_wins_over_retried)
{
    struct fakedb db = {.bad = {"nw-003"}};
    struct lw__store_fake f = {.refuse = fake_refuse, .written = fake_written, .ctx = &db};
    struct lw_store_stats st;
    down_start();
    change(LW_EV_REGISTERED, "nw-000", 10, 300);
    change(LW_EV_REGISTERED, "nw-001", 11, 300);
    change(LW_EV_REGISTERED, "nw-002", 12, 300);
    change(LW_EV_REGISTERED, "nw-003", 13, 300);
    ck_assert_uint_eq(lw__store_fake_round(0, &f), 1); /* one batch, refused: split */
    lw_store_get_stats(&st);
    ck_assert_uint_eq(st.splits, 1);
    ck_assert_uint_eq(st.queued, 4); /* both halves wait */
    ck_assert_uint_eq(st.upserts + st.failed, 0);
    /* newer changes while the halves wait: an Update and a De-register */
    change(LW_EV_UPDATED, "nw-000", 10, 900);
    change(LW_EV_DEREGISTERED, "nw-001", 11, 0);
    change(LW_EV_DEREGISTERED, "nw-002", 99, 0); /* of another registration: the retried stands */
    ck_assert_uint_lt(settle(&db), 10000);
    lw_store_get_stats(&st);
    ck_assert_uint_eq(st.failed, 1);
    ck_assert_uint_eq(db.ups[0], 1); /* the Update only, never the older Register */
    ck_assert_uint_eq(db.last_lt[0], 900);
    ck_assert_uint_eq(db.ups[1], 0); /* the De-register only */
    ck_assert_uint_eq(db.dels[1], 1);
    ck_assert_uint_eq(db.ups[2], 1);
    ck_assert_uint_eq(db.dels[2], 0);
    ck_assert_uint_eq(db.last_lt[2], 300);
    ck_assert_uint_eq(db.ups[3] + db.dels[3], 0);
    ck_assert_uint_eq(st.coalesced, 3); /* a retried state met a newer change 3 times */
    down_stop();
}
END_TEST

START_TEST(transient_error_waits_for_backoff)
{
    struct fakedb db = {.bad = {NULL}};
    struct lw__store_fake tf = {.transient = true, .ctx = &db};
    struct lw__store_fake f = {.refuse = fake_refuse, .written = fake_written, .ctx = &db};
    struct lw_store_stats st;
    char ep[32];
    down_start();
    for (unsigned i = 0; i < 10; i++) {
        snprintf(ep, sizeof(ep), "tr-%03u", i);
        change(LW_EV_REGISTERED, ep, 200 + i, 300);
    }
    ck_assert_uint_eq(lw__store_fake_round(0, &tf), 1);
    uint64_t t0 = uv_hrtime();
    lw_store_get_stats(&st);
    ck_assert_uint_eq(st.transient, 1);
    ck_assert_uint_eq(st.requeued, 1);
    ck_assert_uint_eq(st.queued, 10); /* nothing lost */
    ck_assert_uint_eq(st.failed, 0);
    ck_assert_uint_eq(lw__store_fake_round(0, &f), 0); /* held: not sent again at once */
    unsigned n = 0;
    for (int i = 0; i < 200 && n == 0; i++) {
        tick();
        n = lw__store_fake_round(0, &f);
    }
    ck_assert_uint_eq(n, 1);
    ck_assert_uint_ge((uv_hrtime() - t0) / 1000000, 90); /* the backoff starts at 100 ms */
    lw_store_get_stats(&st);
    ck_assert_uint_eq(st.upserts, 10);
    for (unsigned i = 0; i < 10; i++)
        ck_assert_uint_eq(db.ups[i], 1);
    down_stop();
}
END_TEST

START_TEST(statement_refusal_not_split)
{
    struct fakedb db = {.bad = {"st-004"}};
    struct lw__store_fake f = {
        .refuse = fake_refuse, .written = fake_written, .statement = true, .ctx = &db};
    struct lw_store_stats st;
    char ep[32];
    down_start();
    for (unsigned i = 0; i < 10; i++) {
        snprintf(ep, sizeof(ep), "st-%03u", i);
        change(LW_EV_REGISTERED, ep, 300 + i, 300);
    }
    ck_assert_uint_eq(lw__store_fake_round(0, &f), 1);
    lw_store_get_stats(&st);
    ck_assert_uint_eq(st.splits, 0);
    ck_assert_uint_eq(st.failed, 10); /* every row, in rows */
    ck_assert_uint_eq(st.queued, 0);
    ck_assert_uint_eq(st.upserts, 0);
    down_stop();
}
END_TEST

/* Runs the loop for about ms milliseconds (flush ticks drain the inbox and close windows). */
static void run_ms(unsigned ms)
{
    uint64_t t0 = uv_hrtime();
    while ((uv_hrtime() - t0) / 1000000 < ms)
        tick();
}

static void burst(const char *prefix, unsigned from, unsigned n)
{
    char ep[32];
    for (unsigned i = from; i < from + n; i++) {
        snprintf(ep, sizeof(ep), "%s-%03u", prefix, i % NEPS);
        change(LW_EV_REGISTERED, ep, 400 + i, 300);
    }
}

/* A storm of about ms milliseconds: 60 changes a flush tick (~2000/s) and, when full, as many
 * full receive batches of shard 0 as start a hold. */
static void storm_ms(const char *prefix, unsigned ms, bool full)
{
    uint64_t t0 = uv_hrtime();
    for (unsigned k = 0; (uv_hrtime() - t0) / 1000000 < ms; k++) {
        burst(prefix, k * 60, full ? 1 : 60);
        for (unsigned i = 0; full && i < LW_STORE_SURGE_FULL_BATCHES; i++)
            lw_store_rx_batch(0, 20, 20);
        tick();
    }
}

START_TEST(storm_holds_writes)
{
    struct fakedb db = {.bad = {NULL}};
    struct lw_store_stats st;
    down_start();
    lw__store_tune(100, 60000); /* 100 changes/s start a hold; no time limit here */
    ck_assert(!lw__store_holding(0));
    storm_ms("sh", 2 * LW_STORE_SURGE_WINDOW_MS + 50, false);
    ck_assert(lw__store_holding(0));
    ck_assert(lw__store_holding(0)); /* the same hold */
    lw_store_get_stats(&st);
    ck_assert_uint_eq(st.deferrals, 1);
    ck_assert_uint_eq(st.queued, NEPS); /* held changes stay queued, coalescing */
    /* the storm is over: a window without changes ends the hold */
    run_ms(2 * LW_STORE_SURGE_WINDOW_MS + 20);
    ck_assert(!lw__store_holding(0));
    lw_store_get_stats(&st);
    ck_assert_uint_ge(st.deferred_ms, LW_STORE_SURGE_WINDOW_MS);
    ck_assert_uint_eq(st.deferrals, 1);
    settle(&db);
    for (unsigned i = 0; i < NEPS; i++)
        ck_assert_uint_eq(db.ups[i], 1); /* the newest state of each, once */
    down_stop();
}
END_TEST

START_TEST(storm_hold_is_bounded)
{
    struct fakedb db = {.bad = {NULL}};
    struct lw_store_stats st;
    down_start();
    lw__store_tune(100, 150);
    /* a storm longer than the longest hold: the hold ends after 150 ms and no new one begins
     * while changes keep coming and the queue never empties */
    bool held = false, released = false, again = false;
    uint64_t t0 = uv_hrtime();
    for (unsigned k = 0; (uv_hrtime() - t0) / 1000000 < 1000; k++) {
        burst("sb", k * 60, 60); /* 60 changes a tick (30 ms): ~ 2000/s */
        tick();
        bool h = lw__store_holding(0);
        held = held || h;
        if (held && !h)
            released = true;
        else if (released && h)
            again = true;
    }
    ck_assert(held);
    ck_assert(released);
    ck_assert(!again);
    lw_store_get_stats(&st);
    ck_assert_uint_eq(st.deferrals, 1);
    ck_assert_uint_ge(st.deferred_ms, 150);
    /* once everything was written, the next surge may hold again */
    settle(&db);
    storm_ms("sb", 2 * LW_STORE_SURGE_WINDOW_MS + 50, false);
    ck_assert(lw__store_holding(0));
    lw_store_get_stats(&st);
    ck_assert_uint_eq(st.deferrals, 2);
    down_stop();
}
END_TEST

START_TEST(storm_hold_on_full_receive_batches)
{
    struct lw_store_stats st;
    down_start();
    lw__store_tune(1000000, 60000); /* the rate alone never starts a hold here */
    burst("sf", 0, 5);
    for (unsigned i = 0; i < 10; i++)
        lw_store_rx_batch(0, 3, 20); /* batches with room to spare: no backlog */
    lw_store_rx_batch(7, 20, 20);    /* no such shard: ignored */
    run_ms(2 * LW_STORE_SURGE_WINDOW_MS);
    ck_assert(!lw__store_holding(0));
    /* a change a tick (~30/s, far below the rate) while the receive batches come full */
    storm_ms("sf", 2 * LW_STORE_SURGE_WINDOW_MS + 50, true);
    ck_assert(lw__store_holding(0));
    run_ms(2 * LW_STORE_SURGE_WINDOW_MS + 20); /* no more full batches: over */
    ck_assert(!lw__store_holding(0));
    lw_store_get_stats(&st);
    ck_assert_uint_eq(st.deferrals, 1);
    ck_assert_uint_ge(st.queued, 5);
    down_stop();
}
END_TEST

START_TEST(without_database)
{
    struct lw_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    ck_assert_int_eq(lw_store_start(NULL, &cfg), 0);
    ck_assert(!lw_store_enabled());
    ck_assert_int_eq(lw_store_attach(2, 0, NULL), 0);
    change(LW_EV_REGISTERED, "ep-a", 1, 300); /* nothing to do */
    ck_assert(lw_store_db_ok());
    lw_store_stop();
}
END_TEST

START_TEST(links_from_objects_json)
{
    json_t *a = json_loads("[{\"id\":1,\"version\":\"1.1\",\"instances\":[0]},"
                           "{\"id\":3303,\"version\":\"1.0\",\"instances\":[0,1]},"
                           "{\"id\":5,\"instances\":[]}]",
                           0, NULL);
    struct lw_buf b;
    lw_buf_init(&b, 0);
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(lw__store_links_json(a, &b), 0);
    lw_buf_put_u8(&b, 0);
    ck_assert_str_eq((const char *)b.data,
                     "</1>;ver=1.1,</1/0>,</3303>;ver=1.0,</3303/0>,</3303/1>,</5>");
    lw_buf_reset(&b);
    json_t *e = json_array();
    ck_assert_int_eq(lw__store_links_json(e, &b), 0);
    ck_assert_uint_eq(b.len, 0);
    json_t *o = json_object();
    ck_assert_int_eq(lw__store_links_json(o, &b), LW_EMALFORMED);
    ck_assert_int_eq(lw__store_links_json(NULL, &b), LW_EMALFORMED);
    json_decref(a);
    json_decref(e);
    json_decref(o);
    lw_buf_deinit(&b);
}
END_TEST

Suite *suite_store(void);
Suite *suite_store(void)
{
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, coalesces_per_endpoint);
    tcase_add_test(tc, without_database);
    tcase_add_test(tc, refused_rows_isolated);
    tcase_add_test(tc, newer_change_wins_over_retried);
    tcase_add_test(tc, transient_error_waits_for_backoff);
    tcase_add_test(tc, statement_refusal_not_split);
    tcase_add_test(tc, storm_holds_writes);
    tcase_add_test(tc, storm_hold_is_bounded);
    tcase_add_test(tc, storm_hold_on_full_receive_batches);
    tcase_add_test(tc, links_from_objects_json);
    suite_add_tcase(s, tc);
    return s;
}
