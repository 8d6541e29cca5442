/* Unit tests of the registration.profiles_file parser (server/profiles.c): parsed profiles in
 * canonical form with their lines, and every refusal naming "file:line: reason"; the loader in
 * reg_global_init passes those messages on. */
#include "base/err.h"
#include "profiles.h"
#include "registry.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char err[512];

static int parse(const char *text, struct reg_profiles *out)
{
    return reg_profiles_parse((const uint8_t *)text, strlen(text), "p.json", out, err, sizeof(err));
}

/* Asserts that text is refused with a message starting with prefix and containing part. */
static void refused(const char *text, const char *prefix, const char *part)
{
    struct reg_profiles set;
    ck_assert_int_eq(parse(text, &set), LW_ECONFIG);
    ck_assert_uint_eq(set.n, 0);
    ck_assert_ptr_null(set.v);
    ck_assert_msg(strncmp(err, prefix, strlen(prefix)) == 0, "'%s' does not start with '%s'", err,
                  prefix);
    ck_assert_msg(strstr(err, part) != NULL, "'%s' does not contain '%s'", err, part);
}

START_TEST(valid_files)
{
    struct reg_profiles set;
    const char *text = "{\n"
                       "  \"meter-a\": \"</3/0>,</1/0>,</10243/0>\",\n"
                       "\n"
                       "  \"meter-b\":\n"
                       "     \"</>;rt=\\\"oma.lwm2m\\\";ct=110,</1/0>,</5>;ver=1.1\",\n"
                       "  \"m\\u00e9ter\": \"</1/0>\"\n"
                       "}\n";
    ck_assert_int_eq(parse(text, &set), LW_ECONFIG); /* é is not printable ASCII */
    ck_assert_ptr_nonnull(strstr(err, "p.json:6: profile 'm"));
    text = "{\n"
           "  \"meter-a\": \"</3/0>,</1/0>,</10243/0>\",\n"
           "\n"
           "  \"meter-b\":\n"
           "     \"</>;rt=\\\"oma.lwm2m\\\";ct=110,</1/0>,</5>;ver=1.1\"\n"
           "}\n";
    ck_assert_int_eq(parse(text, &set), 0);
    ck_assert_str_eq(err, "");
    ck_assert_uint_eq(set.n, 2);
    ck_assert_str_eq(set.v[0].pid, "meter-a");
    ck_assert_uint_eq(set.v[0].line, 2);
    ck_assert_uint_eq(set.v[0].links_len, strlen("</1/0>,</3/0>,</10243/0>"));
    ck_assert(memcmp(set.v[0].links, "</1/0>,</3/0>,</10243/0>", set.v[0].links_len) == 0);
    ck_assert_str_eq(set.v[1].pid, "meter-b");
    ck_assert_uint_eq(set.v[1].line, 4);
    const char *canon = "</>;rt=\"oma.lwm2m\";ct=110,</1/0>,</5>;ver=1.1";
    ck_assert_uint_eq(set.v[1].links_len, strlen(canon));
    ck_assert(memcmp(set.v[1].links, canon, strlen(canon)) == 0);
    reg_profiles_free(&set);
    ck_assert_uint_eq(set.n, 0);

    ck_assert_int_eq(parse(" {} ", &set), 0);
    ck_assert_uint_eq(set.n, 0);
    reg_profiles_free(&set);
}
END_TEST

START_TEST(refusals_name_the_line)
{
    refused("", "p.json:1: ", "");
    refused("{\n\"a\": \"</1/0>\",\n\"b\" \"</1/0>\"\n}", "p.json:3: ", "");
    refused("\n\n[\"</1/0>\"]", "p.json:3: ", "expected a JSON object");
    refused("{\"a\": \"</1/0>\",\n \"a\": \"</3/0>\"}", "p.json:2: ", "duplicate");
    refused("{\n\"\": \"</1/0>\"}", "p.json:2: ", "the id must be 1 to 64");
    refused("{\n\n\"has space\": \"</1/0>\"}", "p.json:3: ", "profile 'has space'");
    refused("{\"a\": \"</1/0>\",\n \"b\":\n [\"</1/0>\"]}",
            "p.json:3: ", "profile 'b': expected a link-format string");
    refused("{\"a\": {\"x\": [1, {\"y\": 2}]}}", "p.json:1: ", "profile 'a': expected");
    refused("{\"ok\": \"</1/0>\", \"n\": 5,\n \"z\": \"</1/0>\"}", "p.json:1: ", "profile 'n'");
    refused("{\"ok\": \"</1/0>\",\n\n\n \"bad\": \"</1/0>,<3\"}",
            "p.json:4: ", "profile 'bad': invalid link format at byte");
    refused("{\"x\": \"</1/x>\"}", "p.json:1: ", "invalid link format");
    char id[80];
    memset(id, 'i', 65);
    id[65] = '\0';
    char text[200];
    snprintf(text, sizeof(text), "{\"%s\": \"</1/0>\"}", id);
    refused(text, "p.json:1: ", "the id must be");
    id[64] = '\0';
    snprintf(text, sizeof(text), "{\"%s\": \"</1/0>\"}", id);
    struct reg_profiles set;
    ck_assert_int_eq(parse(text, &set), 0);
    ck_assert_uint_eq(set.n, 1);
    reg_profiles_free(&set);
    /* Not NUL-terminated input: only len bytes are read. */
    ck_assert_int_eq(reg_profiles_parse((const uint8_t *)"{\"a\": \"</1/0>\"}garbage", 15, "p.json",
                                        &set, err, sizeof(err)),
                     0);
    reg_profiles_free(&set);
}
END_TEST

START_TEST(limits)
{
    struct reg_profiles set;
    size_t n = REG_PROFILES_MAX + 1, cap = n * 24 + 16, len = 0;
    char *big = malloc(cap);
    ck_assert_ptr_nonnull(big);
    len += (size_t)sprintf(big + len, "{");
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(big + len, "%s\"p%zu\": \"</1/0>\"\n", i ? "," : "", i);
    len += (size_t)sprintf(big + len, "}");
    ck_assert_int_eq(parse(big, &set), LW_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err, "more than 4096 profiles"));
    free(big);
    size_t huge = REG_PROFILES_MAX_FILE + 1;
    uint8_t *h = calloc(1, huge);
    ck_assert_ptr_nonnull(h);
    ck_assert_int_eq(reg_profiles_parse(h, huge, "p.json", &set, err, sizeof(err)), LW_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err, "p.json:1: file larger than"));
    free(h);
}
END_TEST

/* reg_global_init refuses a broken registration.profiles_file with "path:line: reason". */
START_TEST(loader_messages)
{
    char path[] = "/tmp/lwprofXXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    const char *json = "{\n  \"meterB\": \"</1/0>,</3/0>\",\n  \"bad\": \"</1/0>,<3\"\n}\n";
    ck_assert_int_eq(write(fd, json, strlen(json)), (int)strlen(json));
    close(fd);
    struct lw_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.reg_profiles_file = path;
    char e[512], want[64];
    ck_assert_int_eq(reg_global_init(&cfg, e, sizeof(e)), LW_ECONFIG);
    snprintf(want, sizeof(want), "%s:3: profile 'bad': invalid link format", path);
    ck_assert_msg(strstr(e, want) != NULL, "'%s'", e);
    unlink(path);
    ck_assert_int_eq(reg_global_init(&cfg, e, sizeof(e)), LW_ECONFIG);
    ck_assert_ptr_nonnull(strstr(e, "cannot open"));
    ck_assert_ptr_nonnull(strstr(e, path));
}
END_TEST

Suite *suite_reg_profiles(void);
Suite *suite_reg_profiles(void)
{
    Suite *s = suite_create("reg_profiles");
    TCase *tc = tcase_create("parser");
    tcase_add_test(tc, valid_files);
    tcase_add_test(tc, refusals_name_the_line);
    tcase_add_test(tc, limits);
    tcase_add_test(tc, loader_messages);
    suite_add_tcase(s, tc);
    return s;
}
