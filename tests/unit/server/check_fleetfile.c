/* Unit tests for lwm2m-fleet's pure pieces: the fleet file parser and patterns
 * (tools/fleet/fleetfile.c) and the latency histogram and /proc sampling (tools/fleet/report.c).
 * Unit test runners do not link tools/, so the sources are included here. */
#include "../../../tools/fleet/fleetfile.c"
#include "../../../tools/fleet/report.c"

#include <check.h>
#include <unistd.h>

static struct fleet_file ff;
static char err[256];

static int parse(const char *text)
{
    fleet_file_init(&ff);
    return fleet_file_parse(text, strlen(text), &ff, err, sizeof(err));
}

START_TEST(test_full_file)
{
    const char *text = "# comment\n"
                       "[fleet]\n"
                       "server = coap://127.0.0.1:5699\n"
                       "rate = 120/m\n"
                       "duration = 5m\n"
                       "scenario = rebind\n"
                       "sockets = 4\n"
                       "loss = 2%\n"
                       "duplicate = 0.01\n"
                       "deregister = no\n"
                       "[group meters]\n"
                       "count = 1000\n"
                       "endpoint = m-{n:6}\n"
                       "lwm2m = 1.2\n"
                       "objects = 1, 3,10243\n"
                       "lifetime = 2m\n"
                       "update_interval = 60\n"
                       "send_interval = 15s\n"
                       "format = lwm2m-cbor\n"
                       "queue_mode = yes\n"
                       "awake_time = 250ms\n"
                       "fw_success_rate = 80%\n"
                       "[group old]\n"
                       "count = 5\n"
                       "lwm2m = 1.0\n"
                       "format = tlv\n"
                       "[group meters]\n"
                       "meter_power_kw = 2.5\n";
    ck_assert_int_eq(parse(text), 0);
    ck_assert_str_eq(ff.server, "coap://127.0.0.1:5699");
    ck_assert(ff.rate > 1.99 && ff.rate < 2.01);
    ck_assert_uint_eq(ff.duration_ms, 300000);
    ck_assert_int_eq(ff.scenario, FLEET_SC_REBIND);
    ck_assert_uint_eq(ff.sockets, 4);
    ck_assert(ff.loss > 0.0199 && ff.loss < 0.0201);
    ck_assert(ff.dup > 0.0099 && ff.dup < 0.0101);
    ck_assert(!ff.deregister);
    ck_assert_uint_eq(ff.ngroups, 2); /* a repeated section continues its group */
    const struct fleet_group *g = &ff.groups[0];
    ck_assert_str_eq(g->name, "meters");
    ck_assert_uint_eq(g->count, 1000);
    ck_assert_uint_eq(g->lwm2m_minor, 2);
    ck_assert_uint_eq(g->objects, FLEET_OBJ_DEVICE | FLEET_OBJ_METER);
    ck_assert_uint_eq(g->lifetime_s, 120);
    ck_assert_uint_eq(g->update_s, 60);
    ck_assert_uint_eq(g->send_s, 15);
    ck_assert_uint_eq(g->send_format, LW_M2M_CF_LWM2M_CBOR);
    ck_assert(g->queue_mode);
    ck_assert_uint_eq(g->awake_ms, 250);
    ck_assert(g->fw_success > 0.79 && g->fw_success < 0.81);
    ck_assert(g->meter_base_kw > 2.49 && g->meter_base_kw < 2.51);
    ck_assert_str_eq(ff.groups[1].name, "old");
    ck_assert_uint_eq(ff.groups[1].send_format, LW_M2M_CF_TLV);
    /* Defaults of keys not given. */
    ck_assert_str_eq(ff.groups[1].endpoint, "fleet-{g}-{n:7}");
    ck_assert_uint_eq(ff.groups[1].lifetime_s, 300);
    /* An explicit zero is not "unset". */
    ck_assert_int_eq(parse("[fleet]\nduration = 0\n"), 0);
    ck_assert(ff.has_duration);
    ck_assert_uint_eq(ff.duration_ms, 0);
    ck_assert_int_eq(parse("[fleet]\nrate = 1\n"), 0);
    ck_assert(!ff.has_duration);
}
END_TEST

START_TEST(test_errors_name_the_line)
{
    ck_assert_int_eq(parse("[fleet]\nrate = 5/s\nbogus = 1\n"), LW_ECONFIG);
    ck_assert_str_eq(err, "line 3: unknown key \"bogus\" in [fleet]");
    ck_assert_int_eq(parse("[other]\na = b\n"), LW_ECONFIG);
    ck_assert(strstr(err, "line 2: unknown section [other]") != NULL);
    ck_assert_int_eq(parse("[group a]\nlwm2m = 2.0\n"), LW_ECONFIG);
    ck_assert(strstr(err, "line 2: lwm2m") != NULL);
    ck_assert_int_eq(parse("[group a b]\ncount = 1\n"), LW_ECONFIG);
    ck_assert_int_eq(parse("[group a]\nendpoint = x{q}\n"), LW_ECONFIG);
    ck_assert_int_eq(parse("[group a]\nobjects = 4,5\n"), LW_ECONFIG);
    ck_assert_int_eq(parse("[group a]\nobjects = 3,19\n"), 0);
    ck_assert_uint_eq(ff.groups[0].objects, FLEET_OBJ_DEVICE | FLEET_OBJ_APPDATA);
    ck_assert_int_eq(parse("[group a]\nobjects = 3,20\n"), LW_ECONFIG);
    ck_assert_int_eq(parse("[fleet\n"), LW_ECONFIG);
    ck_assert(strstr(err, "line 1") != NULL);
    ck_assert_int_eq(parse("[fleet]\nrate = 0\n"), LW_ECONFIG);
    ck_assert_int_eq(parse("[fleet]\nloss = 150%\n"), LW_ECONFIG);
    ck_assert_int_eq(fleet_file_parse("[fleet]\0", 8, &ff, err, sizeof(err)), LW_ECONFIG);
}
END_TEST

START_TEST(test_group_consistency)
{
    ck_assert_int_eq(parse("[group a]\nlifetime = 60\nupdate_interval = 60\n"), LW_ECONFIG);
    ck_assert_str_eq(err, "group a: update_interval must be shorter than lifetime");
    ck_assert_int_eq(parse("[group a]\nlwm2m = 1.0\nsend_interval = 5\n"), LW_ECONFIG);
    ck_assert_int_eq(parse("[group a]\nlwm2m = 1.0\n"), LW_ECONFIG); /* default senml-cbor */
    ck_assert_int_eq(parse("[group a]\nlwm2m = 1.0\nformat = tlv\n"), 0);
    ck_assert_int_eq(parse("[group a]\nformat = lwm2m-cbor\n"), LW_ECONFIG);
    ck_assert_int_eq(parse("[group a]\nsecurity = psk\n"), LW_ECONFIG);
    ck_assert_int_eq(parse("[group a]\nsecurity = psk\npsk_key = 00{n:6}\n"), 0);
    ck_assert_uint_eq(ff.groups[0].dtls_version, 12);
    ck_assert(!ff.groups[0].no_cid);
    ck_assert_int_eq(parse("[group a]\nsecurity = psk\npsk_key = 00{n:6}\ndtls = 1.3\ncid = no\n"),
                     0);
    ck_assert_uint_eq(ff.groups[0].dtls_version, 13);
    ck_assert(ff.groups[0].no_cid);
    ck_assert_int_eq(parse("[group a]\ndtls = 1.1\n"), LW_ECONFIG);
    ck_assert_int_eq(parse("[group a]\ncid = maybe\n"), LW_ECONFIG);
    ck_assert_int_eq(parse("[group a]\ncount = 9000000\n[group b]\ncount = 9000000\n"), LW_ECONFIG);
}
END_TEST

START_TEST(test_patterns)
{
    char out[32];
    ck_assert_int_eq(fleet_pattern_expand("m-{n:6}", 42, "g", NULL, out, sizeof(out)), 8);
    ck_assert_str_eq(out, "m-000042");
    ck_assert_int_eq(fleet_pattern_expand("{g}/{n}/{ep}", 7, "meters", "x", out, sizeof(out)), 10);
    ck_assert_str_eq(out, "meters/7/x");
    ck_assert_int_eq(fleet_pattern_expand("{{lit}}", 0, "g", NULL, out, sizeof(out)), 5);
    ck_assert_str_eq(out, "{lit}");
    ck_assert_int_eq(fleet_pattern_expand("{ep}", 0, "g", NULL, out, sizeof(out)), LW_EINVAL);
    ck_assert_int_eq(fleet_pattern_expand("{n:0}", 0, "g", NULL, out, sizeof(out)), LW_EINVAL);
    ck_assert_int_eq(fleet_pattern_expand("{n:21}", 0, "g", NULL, out, sizeof(out)), LW_EINVAL);
    ck_assert_int_eq(fleet_pattern_expand("{n", 0, "g", NULL, out, sizeof(out)), LW_EINVAL);
    ck_assert_int_eq(fleet_pattern_expand("a}", 0, "g", NULL, out, sizeof(out)), LW_EINVAL);
    ck_assert_int_eq(fleet_pattern_expand("{n:20}{n:20}", 1, "g", NULL, out, sizeof(out)),
                     LW_ENOSPC);
    ck_assert_str_eq(out, "");
}
END_TEST

START_TEST(test_value_parsers)
{
    uint64_t ms;
    double d;
    ck_assert_int_eq(fleet_parse_duration("250ms", &ms), 0);
    ck_assert_uint_eq(ms, 250);
    ck_assert_int_eq(fleet_parse_duration("1.5", &ms), 0);
    ck_assert_uint_eq(ms, 1500);
    ck_assert_int_eq(fleet_parse_duration("2h", &ms), 0);
    ck_assert_uint_eq(ms, 7200000);
    ck_assert_int_eq(fleet_parse_duration("-1s", &ms), LW_EINVAL);
    ck_assert_int_eq(fleet_parse_duration("s", &ms), LW_EINVAL);
    ck_assert_int_eq(fleet_parse_duration(" 5", &ms), LW_EINVAL);
    ck_assert_int_eq(fleet_parse_rate("500/s", &d), 0);
    ck_assert(d == 500);
    ck_assert_int_eq(fleet_parse_rate("60/m", &d), 0);
    ck_assert(d == 1);
    ck_assert_int_eq(fleet_parse_rate("nan", &d), LW_EINVAL);
    ck_assert_int_eq(fleet_parse_fraction("5%", &d), 0);
    ck_assert(d > 0.0499 && d < 0.0501);
    ck_assert_int_eq(fleet_parse_fraction("1.5", &d), LW_EINVAL);
}
END_TEST

START_TEST(test_histogram)
{
    static struct hist h;
    memset(&h, 0, sizeof(h));
    ck_assert_uint_eq(hist_quantile(&h, 0.5), 0);
    for (uint64_t i = 1; i <= 1000; i++)
        hist_add(&h, i * 1000); /* 1..1000 ms */
    uint64_t p50 = hist_quantile(&h, 0.5), p99 = hist_quantile(&h, 0.99);
    ck_assert_msg(p50 >= 500000 && p50 <= 500000 * 104 / 100, "p50 %llu", (unsigned long long)p50);
    ck_assert_msg(p99 >= 990000 && p99 <= 1000000, "p99 %llu", (unsigned long long)p99);
    ck_assert_uint_eq(hist_quantile(&h, 1.0), 1000000);
    ck_assert_uint_eq(h.max_us, 1000000);
    hist_add(&h, UINT64_MAX / 2); /* clamps into the last bucket */
    ck_assert_uint_eq(hist_quantile(&h, 1.0), UINT64_MAX / 2);
    /* Small values are exact. */
    memset(&h, 0, sizeof(h));
    hist_add(&h, 7);
    ck_assert_uint_eq(hist_quantile(&h, 0.5), 7);
}
END_TEST

START_TEST(test_proc_sample)
{
    struct proc_sample s;
    proc_sample((long)getpid(), &s);
    ck_assert(s.ok);
    ck_assert(s.rss_kb > 0);
    ck_assert(s.cpu_s >= 0);
    proc_sample(0, &s);
    ck_assert(!s.ok);
    proc_sample(0x7ffffff0, &s);
    ck_assert(!s.ok);
}
END_TEST

Suite *suite_fleetfile(void);
Suite *suite_fleetfile(void)
{
    Suite *s = suite_create("fleetfile");
    TCase *tc = tcase_create("fleet");
    tcase_add_test(tc, test_full_file);
    tcase_add_test(tc, test_errors_name_the_line);
    tcase_add_test(tc, test_group_consistency);
    tcase_add_test(tc, test_patterns);
    tcase_add_test(tc, test_value_parsers);
    tcase_add_test(tc, test_histogram);
    tcase_add_test(tc, test_proc_sample);
    suite_add_tcase(s, tc);
    return s;
}
