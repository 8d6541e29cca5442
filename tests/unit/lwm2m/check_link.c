/* Unit tests for lib/lwm2m/link.c: RFC 6690 parsing (valid, malformed with offsets, limits),
 * writers, registration object lists (root/alternate path, ct lists, versions, canonical form,
 * hash), validation against the registry and the per-device type resolver. */
#include "lwm2m/link.h"

#include "base/err.h"

#include <check.h>
#include <stdio.h>
#include <string.h>

static struct lw_arena arena;

static void setup(void)
{
    lw_arena_init(&arena, 0, 1 << 20);
}

static void teardown(void)
{
    lw_arena_deinit(&arena);
}

static int parse(const char *s, struct lw_m2m_links *l, size_t *off)
{
    return lw_m2m_link_parse((const uint8_t *)s, strlen(s), &arena, NULL, l, off);
}

static int parse_reg(const char *s, struct lw_m2m_reg_links *r, size_t *off)
{
    return lw_m2m_link_parse_reg((const uint8_t *)s, strlen(s), &arena, NULL, r, off);
}

START_TEST(test_parse_discover)
{
    struct lw_m2m_links l;
    size_t off = 99;
    const char *in = "</3>;ver=1.1,</3/0>;pmin=10;pmax=60,</3/0/0>,</3/0/7>;dim=2";
    ck_assert_int_eq(parse(in, &l, &off), 0);
    ck_assert_uint_eq(off, 0);
    ck_assert_uint_eq(l.n, 4);
    ck_assert(lw_bytes_eq_str(l.v[0].uri, "/3"));
    ck_assert(l.v[0].is_path);
    ck_assert_int_eq(l.v[0].path.len, 1);
    ck_assert_uint_eq(l.v[0].nattrs, 1);
    ck_assert(lw_bytes_eq_str(l.v[0].attrs[0].name, "ver"));
    ck_assert(lw_bytes_eq_str(l.v[0].attrs[0].value, "1.1"));
    ck_assert(!l.v[0].attrs[0].quoted);
    uint64_t v;
    ck_assert_int_eq(lw_m2m_link_attr_u64(&l.v[1], "pmin", &v), 0);
    ck_assert_uint_eq(v, 10);
    ck_assert_int_eq(lw_m2m_link_attr_u64(&l.v[1], "pmax", &v), 0);
    ck_assert_uint_eq(v, 60);
    ck_assert_int_eq(lw_m2m_link_attr_u64(&l.v[1], "gt", &v), LW_ENOENT);
    ck_assert_int_eq(l.v[2].path.len, 3);
    ck_assert_uint_eq(l.v[2].nattrs, 0);
    ck_assert_int_eq(lw_m2m_link_attr_u64(&l.v[3], "dim", &v), 0);
    ck_assert_uint_eq(v, 2);
    ck_assert_int_eq(lw_m2m_link_attr_u64(&l.v[0], "ver", &v), LW_EMALFORMED);
}
END_TEST

START_TEST(test_parse_quoted_and_flags)
{
    struct lw_m2m_links l;
    size_t off;
    const char *in = "</>;rt=\"oma.lwm2m\";ct=\"60 110\",</a>;title=\"x, y; z \\\"q\\\"\";obs;"
                     "title*=UTF-8'en'%e2,<coap://h:5683/p?q=1#f>;anchor=\"/\"";
    ck_assert_int_eq(parse(in, &l, &off), 0);
    ck_assert_uint_eq(l.n, 3);
    ck_assert(l.v[0].is_path);
    ck_assert_int_eq(l.v[0].path.len, 0);
    ck_assert(lw_bytes_eq_str(l.v[0].attrs[1].value, "60 110"));
    ck_assert(l.v[0].attrs[1].quoted);
    ck_assert(!l.v[1].is_path);
    ck_assert_uint_eq(l.v[1].nattrs, 3);
    ck_assert(lw_bytes_eq_str(l.v[1].attrs[0].value, "x, y; z \\\"q\\\""));
    ck_assert(lw_bytes_eq_str(l.v[1].attrs[1].name, "obs"));
    ck_assert(!l.v[1].attrs[1].has_value);
    ck_assert(lw_bytes_eq_str(l.v[1].attrs[2].name, "title*"));
    ck_assert(lw_bytes_eq_str(l.v[2].uri, "coap://h:5683/p?q=1#f"));
    ck_assert_ptr_null(lw_m2m_link_attr_find(&l.v[2], "ANCHOR"));
    ck_assert_ptr_nonnull(lw_m2m_link_attr_find(&l.v[2], "anchor"));

    /* the generic writer reproduces the input byte for byte */
    struct lw_buf b;
    lw_buf_init(&b, 0);
    lw_m2m_link_write(&l, &b);
    ck_assert_int_eq(lw_buf_status(&b), 0);
    ck_assert_uint_eq(b.len, strlen(in));
    ck_assert(memcmp(b.data, in, b.len) == 0);
    lw_buf_deinit(&b);

    ck_assert_int_eq(parse("", &l, &off), 0);
    ck_assert_uint_eq(l.n, 0);
    ck_assert_int_eq(parse("<>", &l, &off), 0); /* empty URI-Reference is valid RFC 6690 */
    ck_assert_uint_eq(l.n, 1);
    ck_assert(!l.v[0].is_path);
}
END_TEST

struct bad {
    const char *in;
    size_t off;
};

static const struct bad bad_links[] = {
    {" </3>", 0},
    {"</3> ", 4},
    {"</3>,", 5},
    {"</3>;", 5},
    {"</3>;=1", 5},
    {"</3>;a=", 7},
    {"</3>;a=\"x", 9},
    {"<3", 2},
    {"</3>x", 4},
    {"</3>;a=b c", 8},
    {"</%zz>", 2},
    {"</%4", 2},
    {"</3>;a=\"\x01\"", 8},
    {"</3>,,</4>", 5},
    {"</3>;a=,</4>", 7},
    {"</3 >", 3},
    {"</3>;a\"b\"", 6},
    {"</3>;a=\"x\\", 10},
    {"</3>;a=\"x\\\x01\"", 10},
    {"/3", 0},
    {"</3>;a=\"x\"y", 10},
    {"</\"3>", 2},
    {"</3>;a=b\"", 8},
    {"</3>;\xff", 5},
};

START_TEST(test_parse_malformed)
{
    const struct bad *c = &bad_links[_i];
    struct lw_m2m_links l;
    size_t off = 12345;
    int rc = parse(c->in, &l, &off);
    ck_assert_msg(rc == LW_EMALFORMED, "case %d \"%s\": rc %d", _i, c->in, rc);
    ck_assert_msg(off == c->off, "case %d \"%s\": offset %zu, want %zu", _i, c->in, off, c->off);
    ck_assert_uint_eq(l.n, 0);
}
END_TEST

START_TEST(test_parse_limits)
{
    struct lw_m2m_links l;
    size_t off;
    struct lw_m2m_link_cfg cfg = {.max_links = 2};
    const char *in = "</1>,</2>,</3>";
    ck_assert_int_eq(lw_m2m_link_parse((const uint8_t *)in, strlen(in), &arena, &cfg, &l, &off),
                     LW_ELIMIT);
    ck_assert_uint_eq(off, 10);
    cfg = (struct lw_m2m_link_cfg){.max_attrs = 2};
    in = "</1>;a;b,</2>;a;b;c";
    ck_assert_int_eq(lw_m2m_link_parse((const uint8_t *)in, strlen(in), &arena, &cfg, &l, &off),
                     LW_ELIMIT);
    ck_assert_uint_eq(off, 18);
    cfg = (struct lw_m2m_link_cfg){.max_len = 8};
    ck_assert_int_eq(lw_m2m_link_parse((const uint8_t *)in, strlen(in), &arena, &cfg, &l, &off),
                     LW_ELIMIT);
    ck_assert_uint_eq(off, 8);
    /* an arena that refuses */
    struct lw_arena tiny;
    lw_arena_init(&tiny, 16, 16);
    in = "</1>,</2>,</3>,</4>";
    ck_assert_int_eq(lw_m2m_link_parse((const uint8_t *)in, strlen(in), &tiny, NULL, &l, &off),
                     LW_ENOMEM);
    lw_arena_deinit(&tiny);
}
END_TEST

START_TEST(test_attr_numbers_and_paths)
{
    struct lw_m2m_links l;
    size_t off;
    ck_assert_int_eq(parse("</lwm2m/3303/0/5700>;gt=20.5;lt=-3;st=1e-1;a=1.;b=.5;c=0x1;d=inf;"
                           "e=1e;f=-;g=\"2.5\";h,</lwm2m>,</lwm2mx/3>",
                           &l, &off),
                     0);
    double d;
    ck_assert_int_eq(lw_m2m_link_attr_f64(&l.v[0], "gt", &d), 0);
    ck_assert(d == 20.5);
    ck_assert_int_eq(lw_m2m_link_attr_f64(&l.v[0], "lt", &d), 0);
    ck_assert(d == -3);
    ck_assert_int_eq(lw_m2m_link_attr_f64(&l.v[0], "st", &d), 0);
    ck_assert(d == 0.1);
    ck_assert_int_eq(lw_m2m_link_attr_f64(&l.v[0], "g", &d), 0);
    ck_assert(d == 2.5);
    static const char *const bad[] = {"a", "b", "c", "d", "e", "f"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_int_eq(lw_m2m_link_attr_f64(&l.v[0], bad[i], &d), LW_EMALFORMED);
    ck_assert_int_eq(lw_m2m_link_attr_f64(&l.v[0], "h", &d), LW_ENOENT);
    ck_assert_int_eq(lw_m2m_link_attr_f64(&l.v[0], "zz", &d), LW_ENOENT);

    struct lw_m2m_path p;
    ck_assert_int_eq(lw_m2m_link_path_under(&l.v[0], LW_BYTES_LIT("/lwm2m"), &p), 0);
    ck_assert_int_eq(p.len, 3);
    ck_assert_int_eq(p.id[2], 5700);
    ck_assert_int_eq(lw_m2m_link_path_under(&l.v[1], LW_BYTES_LIT("/lwm2m"), &p), 0);
    ck_assert_int_eq(p.len, 0);
    ck_assert_int_eq(lw_m2m_link_path_under(&l.v[2], LW_BYTES_LIT("/lwm2m"), &p), LW_EMALFORMED);
    ck_assert_int_eq(lw_m2m_link_path_under(&l.v[0], LW_BYTES(NULL, 0), &p), LW_EMALFORMED);
    ck_assert_int_eq(lw_m2m_link_path_under(&l.v[2], LW_BYTES_LIT("/x"), &p), LW_EMALFORMED);
}
END_TEST

START_TEST(test_write_path)
{
    struct lw_buf b;
    lw_buf_init(&b, 0);
    struct lw_m2m_path p = LW_M2M_PATH1(3);
    const char *ver[] = {"ver=1.1"};
    lw_m2m_link_write_path(&b, NULL, &p, ver, 1);
    p = LW_M2M_PATH2(3, 0);
    const char *per[] = {"pmin=10", "pmax=60"};
    lw_m2m_link_write_path(&b, NULL, &p, per, 2);
    p = LW_M2M_PATH3(3, 0, 7);
    const char *dim[] = {"dim=2"};
    lw_m2m_link_write_path(&b, NULL, &p, dim, 1);
    lw_buf_put_u8(&b, 0);
    ck_assert_str_eq((char *)b.data, "</3>;ver=1.1,</3/0>;pmin=10;pmax=60,</3/0/7>;dim=2");
    lw_buf_reset(&b);
    p = LW_M2M_PATH_ROOT;
    lw_m2m_link_write_path(&b, "/lwm2m", &p, NULL, 0);
    p = LW_M2M_PATH2(1, 0);
    lw_m2m_link_write_path(&b, "/lwm2m", &p, NULL, 0);
    p = LW_M2M_PATH_ROOT;
    lw_m2m_link_write_path(&b, NULL, &p, NULL, 0);
    lw_buf_put_u8(&b, 0);
    ck_assert_str_eq((char *)b.data, "</lwm2m>,</lwm2m/1/0>,</>");
    lw_buf_deinit(&b);
}
END_TEST

START_TEST(test_reg_basic)
{
    struct lw_m2m_reg_links r;
    size_t off;
    ck_assert_int_eq(
        parse_reg("</>;rt=\"oma.lwm2m\";ct=11543,</1/0>,</3>;ver=1.1,</3/0>,</5/0>,</10243/0>", &r,
                  &off),
        0);
    ck_assert(r.has_root_link);
    ck_assert_uint_eq(r.root.len, 0);
    ck_assert_uint_eq(r.ncts, 1);
    ck_assert_uint_eq(r.cts[0], 11543);
    ck_assert_uint_eq(r.nobjs, 4);
    ck_assert_uint_eq(r.objs[0].id, 1);
    ck_assert(!r.objs[0].has_ver);
    ck_assert_int_eq(r.objs[0].ver.major, 1);
    ck_assert_int_eq(r.objs[0].ver.minor, 0);
    ck_assert_uint_eq(r.objs[0].ninst, 1);
    ck_assert_uint_eq(r.objs[1].id, 3);
    ck_assert(r.objs[1].has_ver);
    ck_assert_int_eq(r.objs[1].ver.minor, 1);
    ck_assert_uint_eq(r.objs[1].ninst, 1);
    ck_assert_uint_eq(r.objs[1].inst[0], 0);
    ck_assert_uint_eq(r.objs[3].id, 10243);
    ck_assert_ptr_nonnull(lw_m2m_link_reg_find(&r, 5));
    ck_assert_ptr_null(lw_m2m_link_reg_find(&r, 4));

    /* alternate root path, quoted ct list, unordered links, duplicates merged */
    ck_assert_int_eq(parse_reg("</lwm2m/3/0>,</lwm2m>;rt=\"oma.lwm2m\";ct=\"60 110 112 11542 "
                               "11543\",</lwm2m/1/1>,</lwm2m/1/0>,</lwm2m/1/0>,</lwm2m/2>",
                               &r, &off),
                     0);
    ck_assert(lw_bytes_eq_str(r.root, "/lwm2m"));
    ck_assert_uint_eq(r.ncts, 5);
    ck_assert_uint_eq(r.cts[0], 60);
    ck_assert_uint_eq(r.cts[4], 11543);
    ck_assert_uint_eq(r.nobjs, 3);
    ck_assert_uint_eq(r.objs[0].ninst, 2);
    ck_assert_uint_eq(r.objs[0].inst[0], 0);
    ck_assert_uint_eq(r.objs[0].inst[1], 1);
    ck_assert_uint_eq(r.objs[1].id, 2);
    ck_assert_uint_eq(r.objs[1].ninst, 0);

    /* no root link; rt with several types; empty payload (Update without changes) */
    ck_assert_int_eq(parse_reg("</1/0>,</3/0>", &r, &off), 0);
    ck_assert(!r.has_root_link);
    ck_assert_uint_eq(r.nobjs, 2);
    ck_assert_int_eq(parse_reg("</x>;rt=\"core.rd oma.lwm2m\",</x/3/0>", &r, &off), 0);
    ck_assert(lw_bytes_eq_str(r.root, "/x"));
    ck_assert_int_eq(parse_reg("", &r, &off), 0);
    ck_assert_uint_eq(r.nobjs, 0);
    /* ver on an instance link agreeing with the object link */
    ck_assert_int_eq(parse_reg("</3>;ver=1.1,</3/0>;ver=1.1", &r, &off), 0);
    ck_assert_int_eq(r.objs[0].ver.minor, 1);
    ck_assert_int_eq(parse_reg("</3/0>;ver=\"1.2\"", &r, &off), 0);
    ck_assert_int_eq(r.objs[0].ver.minor, 2);
}
END_TEST

static const struct bad bad_regs[] = {
    {"</lwm2m>;rt=\"oma.lwm2m\",</3/0>", 24},        /* not under the alternate root */
    {"</lwm2m>;rt=\"oma.lwm2m\",</lwm2m3/0>", 24},   /* prefix without '/' */
    {"</3/0/1>", 0},                                 /* resource link */
    {"</>;rt=\"oma.lwm2m\",</>", 19},                /* root twice (plain </>) */
    {"</a>;rt=\"oma.lwm2m\",</b>;rt=oma.lwm2m", 20}, /* two root links */
    {"</3>;ver=1.x", 5},
    {"</3>;ver", 5},
    {"</3>;ver=1.1,</3/0>;ver=1.2", 13},
    {"</65535/0>", 0},
    {"</3/65535>", 0},
    {"</03/0>", 0},
    {"</>;ct=\"60  110\"", 11},
    {"</>;ct=\"60 110 \"", 15},
    {"</>;ct=abc", 7},
    {"</>;ct=65536", 7},
    {"</>;ct=\"\"", 4},
    {"</>;ct=1;ct=2", 9},
    {"</a/>;rt=\"oma.lwm2m\"", 0},
    {"</a?b>;rt=\"oma.lwm2m\"", 0},
    {"<a>;rt=\"oma.lwm2m\"", 0},
    {"<coap://x/3/0>", 0},
    {"</3/0>,", 7},
};

START_TEST(test_reg_malformed)
{
    const struct bad *c = &bad_regs[_i];
    struct lw_m2m_reg_links r;
    size_t off = 12345;
    int rc = parse_reg(c->in, &r, &off);
    ck_assert_msg(rc == LW_EMALFORMED, "case %d \"%s\": rc %d", _i, c->in, rc);
    ck_assert_msg(off == c->off, "case %d \"%s\": offset %zu, want %zu", _i, c->in, off, c->off);
}
END_TEST

START_TEST(test_reg_ct_offsets_and_limits)
{
    struct lw_m2m_reg_links r;
    size_t off;
    ck_assert_int_eq(parse_reg("</>;ct=\"60 x\"", &r, &off), LW_EMALFORMED);
    ck_assert_uint_eq(off, 11); /* the bad token */
    struct lw_m2m_link_cfg cfg = {.max_cts = 2};
    const char *in = "</>;ct=\"1 2 3\"";
    ck_assert_int_eq(lw_m2m_link_parse_reg((const uint8_t *)in, strlen(in), &arena, &cfg, &r, &off),
                     LW_ELIMIT);
    ck_assert_uint_eq(off, 4);
}
END_TEST

static void canon(const struct lw_m2m_reg_links *r, char *out, size_t cap)
{
    struct lw_buf b;
    lw_buf_init_fixed(&b, out, cap);
    lw_m2m_link_reg_write(r, &b);
    lw_buf_put_u8(&b, 0);
    ck_assert_int_eq(lw_buf_status(&b), 0);
}

START_TEST(test_reg_canonical)
{
    static const uint8_t key[16] = {1, 2, 3};
    struct lw_m2m_reg_links a, b, c;
    size_t off;
    char s[512], t[512];
    ck_assert_int_eq(parse_reg("</5/0>,</3/0>,</1/1>,</>;ct=\"110 112\";rt=\"oma.lwm2m\","
                               "</1/0>,</3>;ver=1.0,</7>,</9>;ver=2.3",
                               &a, &off),
                     0);
    canon(&a, s, sizeof(s));
    ck_assert_str_eq(s, "</>;rt=\"oma.lwm2m\";ct=\"110 112\",</1/0>,</1/1>,</3/0>,</5/0>,</7>,"
                        "</9>;ver=2.3");
    ck_assert_int_eq(parse_reg(s, &b, &off), 0);
    ck_assert(lw_m2m_link_reg_eq(&a, &b));
    canon(&b, t, sizeof(t));
    ck_assert_str_eq(s, t);
    ck_assert_uint_eq(lw_m2m_link_reg_hash(&a, key), lw_m2m_link_reg_hash(&b, key));

    /* same list in another order, with ver=1.0 spelled out and a duplicate */
    ck_assert_int_eq(parse_reg("</>;rt=\"oma.lwm2m\";ct=\"110 112\",</9>;ver=2.3,</7>,</5/0>,"
                               "</3/0>;ver=1.0,</1/1>,</1/0>,</1/0>",
                               &c, &off),
                     0);
    ck_assert(lw_m2m_link_reg_eq(&a, &c));
    ck_assert_uint_eq(lw_m2m_link_reg_hash(&a, key), lw_m2m_link_reg_hash(&c, key));

    /* differences are seen */
    static const char *const others[] = {
        "</>;rt=\"oma.lwm2m\";ct=\"112 110\",</1/0>,</1/1>,</3/0>,</5/0>,</7>,</9>;ver=2.3",
        "</>;rt=\"oma.lwm2m\";ct=\"110 112\",</1/0>,</1/2>,</3/0>,</5/0>,</7>,</9>;ver=2.3",
        "</>;rt=\"oma.lwm2m\";ct=\"110 112\",</1/0>,</1/1>,</3/0>,</5/0>,</7>,</9>;ver=2.2",
        "</x>;rt=\"oma.lwm2m\";ct=\"110 112\",</x/1/0>,</x/1/1>,</x/3/0>,</x/5/0>,</x/7>,"
        "</x/9>;ver=2.3",
        "</1/0>,</1/1>,</3/0>,</5/0>,</7>,</9>;ver=2.3",
        "</>;rt=\"oma.lwm2m\";ct=\"110 112\",</1/0>,</1/1>,</3/0>,</5/0>,</9>;ver=2.3",
    };
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        ck_assert_int_eq(parse_reg(others[i], &b, &off), 0);
        ck_assert_msg(!lw_m2m_link_reg_eq(&a, &b), "%s", others[i]);
        ck_assert_msg(lw_m2m_link_reg_hash(&a, key) != lw_m2m_link_reg_hash(&b, key), "%s",
                      others[i]);
        canon(&b, t, sizeof(t));
        ck_assert_str_eq(t, others[i]); /* these are already canonical */
    }
    /* a different key gives a different hash */
    static const uint8_t key2[16] = {9};
    ck_assert_uint_ne(lw_m2m_link_reg_hash(&a, key), lw_m2m_link_reg_hash(&a, key2));

    /* a long list crosses several hash blocks; one instance changed at the end is seen */
    char big[8192], big2[8192];
    size_t n = 0;
    for (int i = 0; i < 300; i++)
        n += (size_t)snprintf(big + n, sizeof(big) - n, "%s</%d/0>", i ? "," : "", 3300 + i);
    memcpy(big2, big, n + 1);
    big2[n - 2] = '1';
    ck_assert_int_eq(parse_reg(big, &b, &off), 0);
    ck_assert_int_eq(parse_reg(big2, &c, &off), 0);
    ck_assert_uint_eq(b.nobjs, 300);
    ck_assert(!lw_m2m_link_reg_eq(&b, &c));
    ck_assert_uint_ne(lw_m2m_link_reg_hash(&b, key), lw_m2m_link_reg_hash(&c, key));
    /* a heap copy outlives the input and the arena */
    size_t bytes = 0;
    struct lw_m2m_reg_links *copy = lw_m2m_link_reg_dup(&a, &bytes);
    ck_assert_ptr_nonnull(copy);
    ck_assert_uint_gt(bytes, sizeof(*copy));
    lw_arena_reset(&arena);
    memset(s, 0, sizeof(s));
    ck_assert_int_eq(parse_reg("</7>;ver=9.9", &c, &off), 0); /* reuse the arena memory */
    canon(copy, t, sizeof(t));
    ck_assert_str_eq(t, "</>;rt=\"oma.lwm2m\";ct=\"110 112\",</1/0>,</1/1>,</3/0>,</5/0>,</7>,"
                        "</9>;ver=2.3");
    struct lw_m2m_reg_links *copy2 = lw_m2m_link_reg_dup(copy, NULL);
    ck_assert(lw_m2m_link_reg_eq(copy, copy2));
    ck_assert_uint_eq(lw_m2m_link_reg_hash(copy, key), lw_m2m_link_reg_hash(copy2, key));
    lw_m2m_link_reg_free(copy2);
    lw_m2m_link_reg_free(copy);
    ck_assert_int_eq(parse_reg("", &c, &off), 0);
    copy = lw_m2m_link_reg_dup(&c, &bytes);
    ck_assert_ptr_nonnull(copy);
    ck_assert_uint_eq(copy->nobjs, 0);
    lw_m2m_link_reg_free(copy);
    lw_m2m_link_reg_free(NULL);
    ck_assert_int_eq(parse_reg("</x>;rt=\"oma.lwm2m\",</x/3/0>", &c, &off), 0);
    copy = lw_m2m_link_reg_dup(&c, NULL);
    ck_assert(lw_m2m_link_reg_eq(copy, &c));
    ck_assert(copy->root.ptr != c.root.ptr);
    lw_m2m_link_reg_free(copy);
    /* fixed buffer too small: latched */
    struct lw_buf fb;
    char tiny[8];
    lw_buf_init_fixed(&fb, tiny, sizeof(tiny));
    lw_m2m_link_reg_write(&c, &fb);
    ck_assert_int_eq(lw_buf_status(&fb), LW_ENOSPC);
}
END_TEST

START_TEST(test_reg_check_and_types)
{
    struct lw_m2m_registry *reg = lw_m2m_registry_new(NULL);
    struct lw_m2m_reg_links r;
    size_t off, unknown = 99;
    ck_assert_int_eq(
        parse_reg("</>;rt=\"oma.lwm2m\",</1/0>,</3>;ver=1.1,</3/0>,</5/0>,</10243/0>", &r, &off),
        0);
    ck_assert_int_eq(lw_m2m_link_reg_check(&r, reg, &unknown), 0);
    ck_assert_uint_eq(unknown, 1);
    ck_assert_int_eq(r.objs[0].flags, 0);
    ck_assert_int_eq(r.objs[1].flags, LW_M2M_REGOBJ_OTHER_VER); /* 3 v1.1 not built in */
    ck_assert_int_eq(r.objs[2].flags, LW_M2M_REGOBJ_OTHER_VER); /* 5 v1.0: only v1.2 known */
    ck_assert_int_eq(r.objs[3].flags, LW_M2M_REGOBJ_UNKNOWN);

    /* per-device types: /1 announced as v1.0 has no resource 10, the newest has */
    struct lw_m2m_reg_types_ctx tc = {&r, reg};
    struct lw_m2m_types t = lw_m2m_link_reg_types(&tc);
    struct lw_m2m_path p = LW_M2M_PATH3(1, 0, 10);
    ck_assert_int_eq(t.type_of(t.ctx, &p), LW_M2M_T_NONE);
    ck_assert_int_eq(lw_m2m_registry_type_of(reg, &p), LW_M2M_T_OBJLNK);
    p = LW_M2M_PATH3(1, 0, 1);
    ck_assert_int_eq(t.type_of(t.ctx, &p), LW_M2M_T_INTEGER);
    p = LW_M2M_PATH3(3, 0, 22); /* 3 v1.1 resolves to v1.2 (same major) */
    ck_assert_int_eq(t.type_of(t.ctx, &p), LW_M2M_T_OBJLNK);
    p = LW_M2M_PATH4(3, 0, 11, 0);
    ck_assert_int_eq(t.type_of(t.ctx, &p), LW_M2M_T_INTEGER);
    p = LW_M2M_PATH4(3, 0, 0, 0);
    ck_assert_int_eq(t.type_of(t.ctx, &p), LW_M2M_T_NONE);
    p = LW_M2M_PATH3(4, 0, 0); /* not announced: newest */
    ck_assert_int_eq(t.type_of(t.ctx, &p), LW_M2M_T_INTEGER);
    p = LW_M2M_PATH3(10243, 0, 0);
    ck_assert_int_eq(t.type_of(t.ctx, &p), LW_M2M_T_NONE);
    p = LW_M2M_PATH2(3, 0);
    ck_assert_int_eq(t.type_of(t.ctx, &p), LW_M2M_T_NONE);

    /* single-instance object with two instances or a non-zero instance */
    ck_assert_int_eq(parse_reg("</3/0>,</3/1>", &r, &off), 0);
    ck_assert_int_eq(lw_m2m_link_reg_check(&r, reg, NULL), LW_EMALFORMED);
    ck_assert_int_eq(r.objs[0].flags, LW_M2M_REGOBJ_BAD_INST | LW_M2M_REGOBJ_OTHER_VER);
    ck_assert_int_eq(parse_reg("</5/1>", &r, &off), 0);
    ck_assert_int_eq(lw_m2m_link_reg_check(&r, reg, NULL), LW_EMALFORMED);
    /* objects that should not be listed are flagged only */
    ck_assert_int_eq(parse_reg("</0/0>,</0/1>,</21/0>", &r, &off), 0);
    ck_assert_int_eq(lw_m2m_link_reg_check(&r, reg, &unknown), 0);
    ck_assert_int_eq(r.objs[0].flags, LW_M2M_REGOBJ_NOT_LISTED);
    ck_assert_int_eq(r.objs[1].flags, LW_M2M_REGOBJ_NOT_LISTED | LW_M2M_REGOBJ_OTHER_VER);
    ck_assert_uint_eq(unknown, 0);
    lw_m2m_registry_free(reg);
}
END_TEST

Suite *suite_link(void);
Suite *suite_link(void)
{
    Suite *s = suite_create("lwm2m_link");
    TCase *tc = tcase_create("link");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_parse_discover);
    tcase_add_test(tc, test_parse_quoted_and_flags);
    tcase_add_loop_test(tc, test_parse_malformed, 0,
                        (int)(sizeof(bad_links) / sizeof(bad_links[0])));
    tcase_add_test(tc, test_parse_limits);
    tcase_add_test(tc, test_attr_numbers_and_paths);
    tcase_add_test(tc, test_write_path);
    tcase_add_test(tc, test_reg_basic);
    tcase_add_loop_test(tc, test_reg_malformed, 0, (int)(sizeof(bad_regs) / sizeof(bad_regs[0])));
    tcase_add_test(tc, test_reg_ct_offsets_and_limits);
    tcase_add_test(tc, test_reg_canonical);
    tcase_add_test(tc, test_reg_check_and_types);
    suite_add_tcase(s, tc);
    return s;
}
