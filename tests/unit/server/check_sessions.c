/* Unit tests of the saved DTLS sessions queue (server/store/sessions.c) without a database: off
 * without a master key, per-endpoint coalescing (a put replaces, a delete of an older session
 * does not undo a newer put, a delete of the queued session replaces it), input checks, and a
 * bounded stop while the database is unreachable. */
#include "base/err.h"
#include "config.h"
#include "secrets.h"
#include "store/sessions.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char keypath[64];

static void cfg_init(struct lw_config *cfg, bool with_key)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->db_url = "postgresql://lwm2md@127.0.0.1:1/none?connect_timeout=1"; /* refused at once */
    cfg->coaps_listen_n = 1;
    cfg->sec_master_key_file = with_key ? keypath : "";
    cfg->sec_old_master_key_files = "";
}

static void setup(void)
{
    snprintf(keypath, sizeof(keypath), "/tmp/lw-sess-key-XXXXXX");
    int fd = mkstemp(keypath);
    ck_assert_int_ge(fd, 0);
    static const char hex[] = "3333333333333333333333333333333333333333333333333333333333333333";
    ck_assert_int_eq(write(fd, hex, 64), 64);
    fchmod(fd, 0600);
    close(fd);
    unsetenv("CREDENTIALS_DIRECTORY");
}

static void teardown(void)
{
    unlink(keypath);
}

static struct lw_sess_save sv(const char *ep, uint8_t cid_last, uint16_t port)
{
    static uint8_t cid[6] = {0, 0, 1, 2, 3, 0};
    static uint8_t blob[300];
    struct lw_sess_save s;
    memset(&s, 0, sizeof(s));
    memset(blob, 0xb1, sizeof(blob));
    cid[5] = cid_last;
    s.ep = ep;
    s.addr.family = 4;
    s.addr.sock = 1;
    s.addr.port = port;
    s.addr.ip[0] = 127;
    s.addr.ip[3] = 1;
    s.mode = 1;
    s.cid = cid;
    s.cid_len = sizeof(cid);
    s.blob = blob;
    s.blob_len = sizeof(blob);
    s.expires_wall_ms = 4000000000000;
    return s;
}

START_TEST(off_without_master_key)
{
    struct lw_config cfg;
    cfg_init(&cfg, false);
    ck_assert_int_eq(secrets_start(&cfg), 0);
    ck_assert_int_eq(lw_sessions_start(&cfg), 0);
    ck_assert(!lw_sessions_enabled());
    struct lw_sess_save s = sv("dev", 1, 5000);
    ck_assert_int_eq(lw_sessions_put(&s), 0); /* a no-op */
    lw_sessions_stop();
    secrets_stop();
}
END_TEST

START_TEST(coalescing)
{
    struct lw_config cfg;
    struct lw_sessions_stats st;
    cfg_init(&cfg, true);
    ck_assert_int_eq(secrets_start(&cfg), 0);
    ck_assert_int_eq(lw_sessions_start(&cfg), 0);
    ck_assert(lw_sessions_enabled());
    lw__sessions_hold(true); /* the counts below must not race the writer's 100 ms tick */
    struct lw_sess_save a1 = sv("dev-a", 1, 5000);
    ck_assert_int_eq(lw_sessions_put(&a1), 0);
    struct lw_sess_save a2 = sv("dev-a", 2, 5001); /* a newer session of the same endpoint */
    ck_assert_int_eq(lw_sessions_put(&a2), 0);
    lw_sessions_get_stats(&st);
    ck_assert_uint_eq(st.puts, 2);
    ck_assert_uint_eq(st.coalesced, 1);
    ck_assert_uint_eq(st.queued, 1);
    /* the end of the older session (CID ...01) must not delete the newer one's row */
    a1 = sv("dev-a", 1, 5000);
    lw_sessions_del("dev-a", a1.cid, a1.cid_len, &a1.addr);
    lw_sessions_get_stats(&st);
    ck_assert_uint_eq(st.coalesced, 2);
    ck_assert_uint_eq(st.queued, 1);
    /* another endpoint, and a delete of an endpoint with nothing queued */
    struct lw_sess_save b = sv("dev-b", 3, 6000);
    ck_assert_int_eq(lw_sessions_put(&b), 0);
    lw_sessions_del("dev-c", NULL, 0, &b.addr);
    lw_sessions_get_stats(&st);
    ck_assert_uint_eq(st.queued, 3);
    ck_assert_uint_eq(st.dels, 2);
    /* input checks */
    struct lw_sess_save bad = sv("dev-d", 4, 7000);
    bad.blob_len = LW_SESSIONS_BLOB_MAX + 1;
    ck_assert_int_eq(lw_sessions_put(&bad), LW_EINVAL);
    bad = sv("dev-d", 4, 7000);
    bad.cid_len = LW_SESSIONS_CID_MAX + 1;
    ck_assert_int_eq(lw_sessions_put(&bad), LW_EINVAL);
    bad = sv("", 4, 7000);
    ck_assert_int_eq(lw_sessions_put(&bad), LW_EINVAL); /* no endpoint */
    /* the database is unreachable: stop gives up within its budget, nothing written */
    lw__sessions_hold(false);
    lw_sessions_stop();
    ck_assert(!lw_sessions_enabled());
    lw_sessions_get_stats(&st);
    ck_assert_uint_eq(st.written, 0);
    ck_assert(!st.connected);
    secrets_stop();
}
END_TEST

Suite *suite_sessions(void);
Suite *suite_sessions(void)
{
    Suite *s = suite_create("sessions");
    TCase *tc = tcase_create("queue");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, off_without_master_key);
    tcase_add_test(tc, coalescing);
    suite_add_tcase(s, tc);
    return s;
}
