/* Unit tests for the layered configuration (server/config.c) and the log level spec parser. */
#include "base/err.h"
#include "config.h"
#include "log.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[64];

static void setup(void)
{
    strcpy(tmpdir, "/tmp/lwcfgXXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

static const char *write_file(const char *rel, const char *text)
{
    static char path[256];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, rel);
    char *slash = strrchr(path, '/');
    *slash = '\0';
    mkdir(path, 0700);
    *slash = '/';
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* Loads and returns the error text (empty on success) in errbuf. */
static int load(const char *file, const struct lw_cfg_set *sets, size_t nsets, char **env,
                struct lw_cfg_state **st, char *errbuf, size_t errcap)
{
    FILE *ef = fmemopen(errbuf, errcap, "w");
    memset(errbuf, 0, errcap);
    struct lw_cfg_load req = {file, sets, nsets, env};
    int rc = lw_cfg_load(&req, st, ef);
    fclose(ef);
    return rc;
}

START_TEST(test_defaults)
{
    struct lw_cfg_state *st;
    char err[512];
    ck_assert_int_eq(load(NULL, NULL, 0, NULL, &st, err, sizeof(err)), 0);
    const struct lw_config *c = lw_cfg_get(st);
    ck_assert_uint_eq(c->shards, 0);
    ck_assert_uint_eq(c->coap_listen_n, 2);
    ck_assert_str_eq(c->coap_listen[0].host, "0.0.0.0");
    ck_assert_uint_eq(c->coap_listen[0].port, 5683);
    ck_assert_str_eq(c->coap_listen[1].host, "::");
    ck_assert_uint_eq(c->coaps_listen[1].port, 5684);
    ck_assert_str_eq(c->api_listen[0].host, "127.0.0.1");
    ck_assert_uint_eq(c->api_listen[0].port, 8080);
    ck_assert_str_eq(c->db_url, "");
    ck_assert_int_eq(c->log_format, LW_LOGFMT_AUTO);
    lw_cfg_free(st);
}
END_TEST

START_TEST(test_precedence)
{
    const char *main_file = write_file("main.conf", "[server]\nshards = 3\nnode_id = 7\n"
                                                    "[log]\nlevel = warning\nrate_limit = 5\n");
    char mf[256];
    strcpy(mf, main_file);
    write_file("conf.d/20-b.conf", "[server]\nnode_id = 9\n");
    write_file("conf.d/10-a.conf", "[server]\nnode_id = 8\nshards = 4\n");
    write_file("conf.d/ignored.txt", "[bogus]\nx = 1\n");
    char *env[] = {"PATH=/bin", "LWM2MD_LOG_LEVEL=debug", "LWM2MD_CONFIG=/nope", NULL};
    struct lw_cfg_set sets[] = {{"log.rate_limit", "77"}};
    struct lw_cfg_state *st;
    char err[512];
    ck_assert_msg(load(mf, sets, 1, env, &st, err, sizeof(err)) == 0, "%s", err);
    const struct lw_config *c = lw_cfg_get(st);
    ck_assert_uint_eq(c->shards, 4);          /* conf.d beats main file */
    ck_assert_uint_eq(c->node_id, 9);         /* conf.d in name order: 20-b last */
    ck_assert_str_eq(c->log_level, "debug");  /* env beats files */
    ck_assert_uint_eq(c->log_rate_limit, 77); /* --set beats all */
    char out[4096] = {0};
    FILE *of = fmemopen(out, sizeof(out), "w");
    lw_cfg_print(st, of);
    fclose(of);
    ck_assert_ptr_nonnull(strstr(out, "node_id = 9  # "));
    ck_assert_ptr_nonnull(strstr(out, "20-b.conf:2"));
    ck_assert_ptr_nonnull(strstr(out, "level = debug  # env LWM2MD_LOG_LEVEL, reloadable"));
    ck_assert_ptr_nonnull(strstr(out, "rate_limit = 77  # --set"));
    lw_cfg_free(st);
}
END_TEST

START_TEST(test_errors_name_file_line_and_key)
{
    const char *f = write_file("bad.conf", "# comment\n[server]\nshards = many\n\n[coap]\n"
                                           "listen = 10.0.0.1\nfoo = 1\n[nope]\nx = 2\n"
                                           "[log]\nformat = xml\n");
    char path[256];
    strcpy(path, f);
    struct lw_cfg_state *st = NULL;
    char err[2048];
    ck_assert_int_eq(load(path, NULL, 0, NULL, &st, err, sizeof(err)), LW_ECONFIG);
    char want[512];
    snprintf(want, sizeof(want),
             "%s:3: key 'server.shards': expected an integer from 0 to 256, got 'many'", path);
    ck_assert_msg(strstr(err, want), "missing [%s] in:\n%s", want, err);
    snprintf(want, sizeof(want), "%s:6: key 'coap.listen': '10.0.0.1': expected host:port", path);
    ck_assert_msg(strstr(err, want), "missing [%s] in:\n%s", want, err);
    snprintf(want, sizeof(want), "%s:7: key 'coap.foo': unknown key", path);
    ck_assert_msg(strstr(err, want), "missing [%s] in:\n%s", want, err);
    snprintf(want, sizeof(want), "%s:9: key 'nope.x': unknown section [nope]", path);
    ck_assert_msg(strstr(err, want), "missing [%s] in:\n%s", want, err);
    snprintf(want, sizeof(want),
             "%s:11: key 'log.format': expected one of auto, logfmt, json, journal, got 'xml'",
             path);
    ck_assert_msg(strstr(err, want), "missing [%s] in:\n%s", want, err);
}
END_TEST

START_TEST(test_syntax_error_line)
{
    const char *f = write_file("syn.conf", "[server]\nshards = 1\nthis line has no equals sign\n");
    char path[256];
    strcpy(path, f);
    struct lw_cfg_state *st = NULL;
    char err[1024];
    ck_assert_int_eq(load(path, NULL, 0, NULL, &st, err, sizeof(err)), LW_ECONFIG);
    char want[300];
    snprintf(want, sizeof(want), "%s:3: syntax error", path);
    ck_assert_msg(strstr(err, want), "%s", err);
}
END_TEST

START_TEST(test_env_and_set_errors)
{
    char *env[] = {"LWM2MD_NO_SUCH_KEY=1", NULL};
    struct lw_cfg_set sets[] = {{"server", "1"}, {"api.listen", "[::1:80"}};
    struct lw_cfg_state *st = NULL;
    char err[1024];
    ck_assert_int_eq(load(NULL, sets, 2, env, &st, err, sizeof(err)), LW_ECONFIG);
    ck_assert_msg(strstr(err, "env LWM2MD_NO_SUCH_KEY: no such configuration key"), "%s", err);
    ck_assert_msg(strstr(err, "--set: key 'server': expected section.key=value"), "%s", err);
    ck_assert_msg(strstr(err, "--set: key 'api.listen': '[::1:80': IPv6 addresses"), "%s", err);
}
END_TEST

START_TEST(test_listen_and_secret)
{
    struct lw_cfg_set sets[] = {
        {"coap.listen", "[::1]:15683 , 127.0.0.2:5683"},
        {"coaps.listen", ""},
        {"database.url", "postgresql://u:hunter2@127.0.0.1/db"},
    };
    struct lw_cfg_state *st;
    char err[512];
    ck_assert_msg(load(NULL, sets, 3, NULL, &st, err, sizeof(err)) == 0, "%s", err);
    const struct lw_config *c = lw_cfg_get(st);
    ck_assert_uint_eq(c->coap_listen_n, 2);
    ck_assert_str_eq(c->coap_listen[0].host, "::1");
    ck_assert_uint_eq(c->coap_listen[0].port, 15683);
    ck_assert_str_eq(c->coap_listen[1].host, "127.0.0.2");
    ck_assert_uint_eq(c->coaps_listen_n, 0);
    ck_assert_str_eq(c->db_url, "postgresql://u:hunter2@127.0.0.1/db");
    char out[4096] = {0};
    FILE *of = fmemopen(out, sizeof(out), "w");
    lw_cfg_print(st, of);
    fclose(of);
    ck_assert_ptr_null(strstr(out, "hunter2"));
    ck_assert_ptr_nonnull(strstr(out, "url = ********  # --set"));
    lw_cfg_free(st);
}
END_TEST

START_TEST(test_reload_diff)
{
    struct lw_cfg_set a[] = {{"log.level", "info"}, {"server.shards", "2"}};
    struct lw_cfg_set b[] = {{"log.level", "debug"}, {"server.shards", "2"}};
    struct lw_cfg_set c[] = {{"log.level", "debug"}, {"server.shards", "4"}};
    struct lw_cfg_state *sa, *sb, *sc;
    char err[512];
    ck_assert_int_eq(load(NULL, a, 2, NULL, &sa, err, sizeof(err)), 0);
    ck_assert_int_eq(load(NULL, b, 2, NULL, &sb, err, sizeof(err)), 0);
    ck_assert_int_eq(load(NULL, c, 2, NULL, &sc, err, sizeof(err)), 0);
    ck_assert_int_eq(lw_cfg_diff_restart(sa, sb, NULL), 0); /* log.level is reloadable */
    char names[256] = {0};
    FILE *nf = fmemopen(names, sizeof(names), "w");
    ck_assert_int_eq(lw_cfg_diff_restart(sb, sc, nf), 1);
    fclose(nf);
    ck_assert_str_eq(names, "server.shards");
    lw_cfg_free(sa);
    lw_cfg_free(sb);
    lw_cfg_free(sc);
}
END_TEST

START_TEST(test_log_spec)
{
    int lv[LW_LG__COUNT];
    ck_assert_ptr_null(lw_log_parse_spec("notice", "net=debug, coap = err", lv));
    ck_assert_int_eq(lv[LW_LG_NET], LW_LOG_DEBUG);
    ck_assert_int_eq(lv[LW_LG_COAP], LW_LOG_ERR);
    ck_assert_int_eq(lv[LW_LG_SYS], LW_LOG_NOTICE);
    ck_assert_ptr_nonnull(lw_log_parse_spec("loud", "", lv));
    ck_assert_ptr_nonnull(lw_log_parse_spec("info", "bogus=debug", lv));
    ck_assert_ptr_nonnull(lw_log_parse_spec("info", "net", lv));
    ck_assert_ptr_nonnull(lw_log_parse_spec("info", "net=loud", lv));
    struct lw_cfg_set s[] = {{"log.groups", "dtls=verbose"}};
    struct lw_cfg_state *st = NULL;
    char err[512];
    ck_assert_int_eq(load(NULL, s, 1, NULL, &st, err, sizeof(err)), LW_ECONFIG);
    ck_assert_msg(strstr(err, "--set: key 'log.groups': group level must be"), "%s", err);
}
END_TEST

Suite *suite_config(void);
Suite *suite_config(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("layers");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_precedence);
    tcase_add_test(tc, test_errors_name_file_line_and_key);
    tcase_add_test(tc, test_syntax_error_line);
    tcase_add_test(tc, test_env_and_set_errors);
    tcase_add_test(tc, test_listen_and_secret);
    tcase_add_test(tc, test_reload_diff);
    tcase_add_test(tc, test_log_spec);
    suite_add_tcase(s, tc);
    return s;
}
