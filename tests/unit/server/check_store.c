/* Unit tests of the write-behind store's queue (server/store/store.c) without a database: the
 * writer's connection is refused, so every change stays queued and the counters show how they
 * coalesce per endpoint (the newest state wins; a delete only applies to the registration it
 * names). Also the objects JSON -> link list conversion restore relies on. */
#include "base/buf.h"
#include "base/err.h"
#include "registry.h"
#include "store/store.h"

#include <check.h>
#include <jansson.h>
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
    tcase_add_test(tc, links_from_objects_json);
    suite_add_tcase(s, tc);
    return s;
}
