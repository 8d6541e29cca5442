/* lib/lwm2m/link.c - CoRE Link Format (RFC 6690) parser and writers for LwM2M (see link.h).
 *
 * The generic parser runs twice over the input: a counting pass that validates the grammar and
 * sizes the output, then a filling pass, so the arena receives exactly two arrays whose sizes are
 * bounded by the input length and the cfg limits. Both passes are O(n). The registration parser
 * (on every Register / Update) reads its payload once instead: the same grammar code with the
 * few parameters it needs (rt, ct, ver) and the object paths picked up on the way, so it builds
 * no generic link array; grammar errors and their offsets are those of the generic parser.
 * Written here rather than taken from a library: Debian has no RFC 6690 parser in C (libcoap's
 * is tied to its resource tree and I/O model).
 */
#include "link.h"

#include "base/err.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>

struct limits {
    size_t max_len, max_links, max_attrs, max_cts;
};

static struct limits get_limits(const struct lw_m2m_link_cfg *cfg)
{
    struct limits l = {65536, 4096, 32, 16};
    if (cfg && cfg->max_len)
        l.max_len = cfg->max_len;
    if (cfg && cfg->max_links)
        l.max_links = cfg->max_links;
    if (cfg && cfg->max_attrs)
        l.max_attrs = cfg->max_attrs;
    if (cfg && cfg->max_cts)
        l.max_cts = cfg->max_cts;
    return l;
}

/* Character classes (RFC 3986 URI characters, RFC 5988 parmname, RFC 6690 ptokenchar,
 * quoted-string qdtext), as a const table: the parser tests every input byte. */
enum { C_URI = 1, C_PARM = 2, C_PTOK = 4, C_QD = 8, C_HEX = 16 };

#define ALNUM_CLS (C_URI | C_PARM | C_PTOK | C_QD)
static const uint8_t cls[256] = {
    ['\t'] = C_QD,
    [' '] = C_QD,
    ['!'] = C_URI | C_PARM | C_PTOK | C_QD,
    ['#'] = C_URI | C_PARM | C_PTOK | C_QD,
    ['$'] = C_URI | C_PARM | C_PTOK | C_QD,
    ['%'] = C_PTOK | C_QD, /* in URIs only as pct-encoded, checked by the parser */
    ['&'] = C_URI | C_PARM | C_PTOK | C_QD,
    ['\''] = C_URI | C_PTOK | C_QD,
    ['('] = C_URI | C_PTOK | C_QD,
    [')'] = C_URI | C_PTOK | C_QD,
    ['*'] = C_URI | C_PTOK | C_QD,
    ['+'] = C_URI | C_PARM | C_PTOK | C_QD,
    [','] = C_URI | C_QD,
    ['-'] = C_URI | C_PARM | C_PTOK | C_QD,
    ['.'] = C_URI | C_PARM | C_PTOK | C_QD,
    ['/'] = C_URI | C_PTOK | C_QD,
    ['0' ... '9'] = ALNUM_CLS | C_HEX,
    [':'] = C_URI | C_PTOK | C_QD,
    [';'] = C_URI | C_QD,
    ['<'] = C_PTOK | C_QD,
    ['='] = C_URI | C_PTOK | C_QD,
    ['>'] = C_PTOK | C_QD,
    ['?'] = C_URI | C_PTOK | C_QD,
    ['@'] = C_URI | C_PTOK | C_QD,
    ['A' ... 'F'] = ALNUM_CLS | C_HEX,
    ['G' ... 'Z'] = ALNUM_CLS,
    ['['] = C_URI | C_PTOK | C_QD,
    [']'] = C_URI | C_PTOK | C_QD,
    ['^'] = C_PARM | C_PTOK | C_QD,
    ['_'] = C_URI | C_PARM | C_PTOK | C_QD,
    ['`'] = C_PARM | C_PTOK | C_QD,
    ['a' ... 'f'] = ALNUM_CLS | C_HEX,
    ['g' ... 'z'] = ALNUM_CLS,
    ['{'] = C_PTOK | C_QD,
    ['|'] = C_PARM | C_PTOK | C_QD,
    ['}'] = C_PTOK | C_QD,
    ['~'] = C_URI | C_PARM | C_PTOK | C_QD,
    [0x80 ... 0xff] = C_QD, /* obs-text */
};

static bool is_hex(uint8_t c)
{
    return cls[c] & C_HEX;
}

static bool is_uri_char(uint8_t c)
{
    return cls[c] & C_URI;
}

static bool is_parm_char(uint8_t c)
{
    return cls[c] & C_PARM;
}

static bool is_ptoken_char(uint8_t c)
{
    return cls[c] & C_PTOK;
}

/* quoted-string content: qdtext (HTAB, SP, VCHAR except '"' and '\', obs-text) */
static bool is_qd_char(uint8_t c)
{
    return cls[c] & C_QD;
}

/* A URI-Reference from in[*pi] up to the closing '>'; *pi ends on the '>', or on the offending
 * byte (len when the input ended early). 0 or LW_EMALFORMED. */
static int scan_uri(const uint8_t *in, size_t len, size_t *pi)
{
    size_t i = *pi;
    int rc = 0;
    while (i < len && in[i] != '>') {
        if (in[i] == '%') {
            if (len - i < 3 || !is_hex(in[i + 1]) || !is_hex(in[i + 2])) {
                rc = LW_EMALFORMED;
                goto out;
            }
            i += 3;
            continue;
        }
        if (!is_uri_char(in[i])) {
            rc = LW_EMALFORMED;
            goto out;
        }
        i++;
    }
    if (i == len)
        rc = LW_EMALFORMED;
out:
    *pi = i;
    return rc;
}

/* The optional `"=" ( ptoken / quoted-string )` after a parmname at in[*pi], into *at; *pi ends
 * past it, or on the offending byte. 0 or LW_EMALFORMED. Inlined: it runs per parameter. */
__attribute__((always_inline)) static inline int scan_value(const uint8_t *in, size_t len,
                                                            size_t *pi, struct lw_m2m_link_attr *at)
{
    size_t i = *pi;
    int rc = 0;
    if (i == len || in[i] != '=')
        goto out;
    i++;
    at->has_value = true;
    if (i < len && in[i] == '"') {
        i++;
        size_t vs = i;
        while (i < len && in[i] != '"') {
            if (in[i] == '\\') {
                /* quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text ) */
                if (i + 1 == len || (in[i + 1] < 0x20 && in[i + 1] != '\t') || in[i + 1] == 0x7f) {
                    i++;
                    rc = LW_EMALFORMED;
                    goto out;
                }
                i += 2;
                continue;
            }
            if (!is_qd_char(in[i])) {
                rc = LW_EMALFORMED;
                goto out;
            }
            i++;
        }
        if (i == len) {
            rc = LW_EMALFORMED;
            goto out;
        }
        at->value = LW_BYTES(in + vs, i - vs);
        at->quoted = true;
        i++;
    } else {
        size_t vs = i;
        while (i < len && is_ptoken_char(in[i]))
            i++;
        if (i == vs) {
            rc = LW_EMALFORMED;
            goto out;
        }
        at->value = LW_BYTES(in + vs, i - vs);
    }
out:
    *pi = i;
    return rc;
}

/* One pass over the input. With links == NULL only validates and counts. */
static int scan(const uint8_t *in, size_t len, const struct limits *lim, struct lw_m2m_link *links,
                struct lw_m2m_link_attr *attrs, size_t *nl, size_t *na, size_t *off)
{
    size_t i = 0, nlinks = 0, nattrs = 0;
    int rc = 0;
    if (len == 0)
        goto out;
    for (;;) {
        if (i == len || in[i] != '<') {
            rc = LW_EMALFORMED;
            goto out;
        }
        if (nlinks == lim->max_links) {
            rc = LW_ELIMIT;
            goto out;
        }
        i++;
        size_t us = i;
        if ((rc = scan_uri(in, len, &i)))
            goto out;
        struct lw_m2m_link *l = links ? &links[nlinks] : NULL;
        if (l) {
            l->uri = LW_BYTES(in + us, i - us);
            l->attrs = &attrs[nattrs];
            l->nattrs = 0;
            l->is_path = lw_m2m_path_parse((const char *)in + us, i - us, &l->path) == 0;
        }
        i++; /* '>' */
        size_t link_attrs = 0;
        while (i < len && in[i] == ';') {
            i++;
            size_t ns = i;
            while (i < len && is_parm_char(in[i]))
                i++;
            if (i == ns) {
                rc = LW_EMALFORMED;
                goto out;
            }
            if (i < len && in[i] == '*') /* ext-name-star (RFC 5988 §5) */
                i++;
            if (link_attrs == lim->max_attrs) {
                i = ns;
                rc = LW_ELIMIT;
                goto out;
            }
            struct lw_m2m_link_attr at = {.name = LW_BYTES(in + ns, i - ns)};
            if ((rc = scan_value(in, len, &i, &at)))
                goto out;
            if (l) {
                attrs[nattrs] = at;
                l->nattrs++;
            }
            nattrs++;
            link_attrs++;
        }
        nlinks++;
        if (i == len)
            break;
        if (in[i] != ',') {
            rc = LW_EMALFORMED;
            goto out;
        }
        i++;
        if (i == len) { /* trailing comma */
            rc = LW_EMALFORMED;
            goto out;
        }
    }
out:
    *off = i;
    *nl = nlinks;
    *na = nattrs;
    return rc;
}

int lw_m2m_link_parse(const uint8_t *in, size_t len, struct lw_arena *a,
                      const struct lw_m2m_link_cfg *cfg, struct lw_m2m_links *out, size_t *err_off)
{
    struct limits lim = get_limits(cfg);
    size_t nl = 0, na = 0, off = 0;
    int rc;
    out->v = NULL;
    out->n = 0;
    if (len > lim.max_len) {
        off = lim.max_len;
        rc = LW_ELIMIT;
        goto out;
    }
    if ((rc = scan(in, len, &lim, NULL, NULL, &nl, &na, &off)))
        goto out;
    if (nl == 0)
        goto out;
    struct lw_m2m_link *links = lw_arena_alloc(a, nl * sizeof(*links));
    struct lw_m2m_link_attr *attrs = lw_arena_alloc(a, (na ? na : 1) * sizeof(*attrs));
    if (!links || !attrs) {
        rc = LW_ENOMEM;
        goto out;
    }
    if ((rc = scan(in, len, &lim, links, attrs, &nl, &na, &off)))
        goto out; /* cannot happen: same input as the counting pass */
    out->v = links;
    out->n = nl;
out:
    if (err_off)
        *err_off = rc ? off : 0;
    return rc;
}

const struct lw_m2m_link_attr *lw_m2m_link_attr_find(const struct lw_m2m_link *l, const char *name)
{
    for (size_t i = 0; i < l->nattrs; i++)
        if (lw_bytes_eq_str(l->attrs[i].name, name))
            return &l->attrs[i];
    return NULL;
}

int lw_m2m_link_attr_u64(const struct lw_m2m_link *l, const char *name, uint64_t *out)
{
    const struct lw_m2m_link_attr *at = lw_m2m_link_attr_find(l, name);
    if (!at || !at->has_value)
        return LW_ENOENT;
    return lw_parse_u64((const char *)at->value.ptr, at->value.len, out);
}

int lw_m2m_link_attr_f64(const struct lw_m2m_link *l, const char *name, double *out)
{
    const struct lw_m2m_link_attr *at = lw_m2m_link_attr_find(l, name);
    char tmp[64];
    if (!at || !at->has_value)
        return LW_ENOENT;
    /* strict number grammar first, so strtod's hex, inf, nan and spaces are never accepted */
    const uint8_t *v = at->value.ptr;
    size_t n = at->value.len, i = 0, digits = 0;
    if (n == 0 || n >= sizeof(tmp))
        return LW_EMALFORMED;
    if (v[i] == '-')
        i++;
    for (; i < n && v[i] >= '0' && v[i] <= '9'; i++)
        digits++;
    if (i < n && v[i] == '.') {
        size_t frac = 0;
        for (i++; i < n && v[i] >= '0' && v[i] <= '9'; i++)
            frac++;
        if (!frac)
            return LW_EMALFORMED;
    }
    if (!digits)
        return LW_EMALFORMED;
    if (i < n && (v[i] == 'e' || v[i] == 'E')) {
        size_t ed = 0;
        i++;
        if (i < n && (v[i] == '+' || v[i] == '-'))
            i++;
        for (; i < n && v[i] >= '0' && v[i] <= '9'; i++)
            ed++;
        if (!ed)
            return LW_EMALFORMED;
    }
    if (i != n)
        return LW_EMALFORMED;
    memcpy(tmp, v, n);
    tmp[n] = '\0';
    *out = strtod(tmp, NULL);
    return 0;
}

int lw_m2m_link_path_under(const struct lw_m2m_link *l, struct lw_bytes root,
                           struct lw_m2m_path *out)
{
    struct lw_bytes u = l->uri;
    if (root.len) {
        if (u.len < root.len || memcmp(u.ptr, root.ptr, root.len))
            return LW_EMALFORMED;
        u.ptr += root.len;
        u.len -= root.len;
        if (u.len == 0) { /* the root itself */
            *out = LW_M2M_PATH_ROOT;
            return 0;
        }
    }
    return lw_m2m_path_parse((const char *)u.ptr, u.len, out);
}

static void write_attrs(struct lw_buf *b, const struct lw_m2m_link *l)
{
    for (size_t k = 0; k < l->nattrs; k++) {
        const struct lw_m2m_link_attr *at = &l->attrs[k];
        lw_buf_put_u8(b, ';');
        lw_buf_put(b, at->name.ptr, at->name.len);
        if (!at->has_value)
            continue;
        lw_buf_put_u8(b, '=');
        if (at->quoted)
            lw_buf_put_u8(b, '"');
        lw_buf_put(b, at->value.ptr, at->value.len);
        if (at->quoted)
            lw_buf_put_u8(b, '"');
    }
}

void lw_m2m_link_write(const struct lw_m2m_links *links, struct lw_buf *b)
{
    for (size_t i = 0; i < links->n; i++) {
        const struct lw_m2m_link *l = &links->v[i];
        if (i)
            lw_buf_put_u8(b, ',');
        lw_buf_put_u8(b, '<');
        lw_buf_put(b, l->uri.ptr, l->uri.len);
        lw_buf_put_u8(b, '>');
        write_attrs(b, l);
    }
}

void lw_m2m_link_write_path(struct lw_buf *b, const char *prefix, const struct lw_m2m_path *p,
                            const char *const *params, size_t nparams)
{
    char tmp[32];
    if (b->len)
        lw_buf_put_u8(b, ',');
    lw_buf_put_u8(b, '<');
    if (prefix && *prefix)
        lw_buf_put_str(b, prefix);
    if (p->len || !prefix || !*prefix) {
        int n = lw_m2m_path_format(p, tmp, sizeof(tmp));
        if (n > 0)
            lw_buf_put(b, tmp, (size_t)n);
    }
    lw_buf_put_u8(b, '>');
    for (size_t i = 0; i < nparams; i++) {
        lw_buf_put_u8(b, ';');
        lw_buf_put_str(b, params[i]);
    }
}

/* ---- registration object lists ---- */

static size_t attr_off(const uint8_t *in, const struct lw_m2m_link_attr *at)
{
    return (size_t)(at->name.ptr - in);
}

/* true when the space-separated list `v` contains token `t`. */
static bool has_token(struct lw_bytes v, const char *t)
{
    size_t tl = strlen(t), i = 0;
    while (i < v.len) {
        size_t s = i;
        while (i < v.len && v.ptr[i] != ' ')
            i++;
        if (i - s == tl && !memcmp(v.ptr + s, t, tl))
            return true;
        i++;
    }
    return false;
}

/* "/" or "/seg(/seg)*" with non-empty segments and no query or fragment. */
static bool valid_root(struct lw_bytes u)
{
    if (u.len == 0 || u.ptr[0] != '/')
        return false;
    if (u.len == 1)
        return true;
    for (size_t i = 0; i < u.len; i++) {
        if (u.ptr[i] == '?' || u.ptr[i] == '#')
            return false;
        if (u.ptr[i] == '/' && (i + 1 == u.len || u.ptr[i + 1] == '/'))
            return false;
    }
    return true;
}

static int parse_u16_strict(const uint8_t *s, size_t len, uint16_t *out)
{
    uint32_t v = 0;
    if (len == 0 || len > 5 || (len > 1 && s[0] == '0'))
        return LW_EMALFORMED;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return LW_EMALFORMED;
        v = v * 10 + (uint32_t)(s[i] - '0');
    }
    if (v > 65535)
        return LW_EMALFORMED;
    *out = (uint16_t)v;
    return 0;
}

static int parse_cts(const uint8_t *in, const struct lw_m2m_link_attr *ct, struct lw_arena *a,
                     const struct limits *lim, struct lw_m2m_reg_links *out, size_t *off)
{
    struct lw_bytes v = ct->value;
    size_t n = 1;
    *off = attr_off(in, ct);
    if (!ct->has_value || v.len == 0)
        return LW_EMALFORMED;
    for (size_t i = 0; i < v.len; i++)
        n += v.ptr[i] == ' ';
    if (n > 1 && !ct->quoted) /* cannot happen: ptoken has no spaces */
        return LW_EMALFORMED;
    if (n > lim->max_cts)
        return LW_ELIMIT;
    out->cts = lw_arena_alloc(a, n * sizeof(*out->cts));
    if (!out->cts)
        return LW_ENOMEM;
    size_t i = 0;
    out->ncts = 0;
    while (out->ncts < n) {
        size_t s = i;
        while (i < v.len && v.ptr[i] != ' ')
            i++;
        if (parse_u16_strict(v.ptr + s, i - s, &out->cts[out->ncts])) {
            *off = (size_t)(v.ptr + s - in);
            return LW_EMALFORMED;
        }
        out->ncts++;
        i++;
    }
    return 0;
}

struct ent {
    uint16_t id, inst; /* inst LW_M2M_ID_NONE for an object link */
    bool has_ver;
    struct lw_m2m_ver ver;
    size_t off;
};

static int ent_cmp(const void *a, const void *b)
{
    const struct ent *x = a, *y = b;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    if (x->inst != y->inst)
        return x->inst < y->inst ? -1 : 1;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* Facts about one link of a Register payload, gathered by scan_reg for the checks after it. */
struct rlink {
    const uint8_t *uri;
    size_t ulen;
    const uint8_t *ver_name; /* first "ver" parameter, or NULL */
    struct lw_bytes ver_val;
    bool ver_has;
    bool rt_root; /* its first "rt" parameter lists oma.lwm2m */
    uint8_t kind; /* RK_*: the URI read as a registration path under the default root */
    uint16_t id, inst;
};

enum { RK_OTHER, RK_ROOT, RK_OBJ, RK_INST };

/* A root link candidate with its first ct parameter and where a second ct starts. */
struct rootcand {
    size_t idx; /* SIZE_MAX: none */
    struct lw_m2m_link_attr ct;
    bool has_ct;
    size_t ct_dup_off; /* SIZE_MAX: no second ct */
};

/* The path grammar of lw_m2m_path_parse, restricted to what a registration needs: "/" gives
 * RK_ROOT, a valid /o or /o/i gives RK_OBJ / RK_INST with the ids, anything else RK_OTHER. */
static uint8_t reg_path(const uint8_t *u, size_t n, uint16_t *id, uint16_t *inst)
{
    uint16_t v[2];
    unsigned k = 0;
    size_t i = 1;
    if (n == 0 || u[0] != '/')
        return RK_OTHER;
    if (n == 1)
        return RK_ROOT;
    for (;;) {
        size_t s = i;
        uint32_t x = 0;
        while (i < n && i - s < 5 && u[i] >= '0' && u[i] <= '9')
            x = x * 10 + (uint32_t)(u[i++] - '0');
        if (i == s || (i - s > 1 && u[s] == '0') || x > LW_M2M_ID_MAX)
            return RK_OTHER;
        v[k++] = (uint16_t)x;
        if (i == n)
            break;
        if (u[i] != '/' || k == 2 || i + 1 == n)
            return RK_OTHER;
        i++;
    }
    *id = v[0];
    *inst = k == 2 ? v[1] : LW_M2M_ID_NONE;
    return k == 2 ? RK_INST : RK_OBJ;
}

/* The common URI shapes "/", "/o" and "/o/i" (valid ids) followed by '>', read in one go: in[i]
 * is the byte after '<'. Returns the index of the '>' with l->kind / id / inst set, or 0 when
 * the URI needs the general loop (which then sees only URI characters it accepts here too). */
static inline size_t quick_uri(const uint8_t *in, size_t len, size_t i, struct rlink *l)
{
    uint16_t v[2];
    unsigned k = 0;
    size_t p = i + 1;
    if (i >= len || in[i] != '/' || p == len)
        return 0;
    if (in[p] == '>') {
        l->kind = RK_ROOT;
        return p;
    }
    for (;;) {
        size_t s = p;
        uint32_t x = 0;
        while (p < len && p - s < 5 && in[p] >= '0' && in[p] <= '9')
            x = x * 10 + (uint32_t)(in[p++] - '0');
        if (p == s || p == len || (p - s > 1 && in[s] == '0') || x > LW_M2M_ID_MAX)
            return 0;
        v[k++] = (uint16_t)x;
        if (in[p] == '>')
            break;
        if (in[p] != '/' || k == 2)
            return 0;
        p++;
    }
    l->id = v[0];
    l->inst = k == 2 ? v[1] : LW_M2M_ID_NONE;
    l->kind = k == 2 ? RK_INST : RK_OBJ;
    return p;
}

/* parse_u8 of registry.c: 1-3 digits, no leading zero, <= 255. */
static bool ver_part(const uint8_t *s, size_t n, uint8_t *out)
{
    unsigned v = 0;
    if (n == 0 || n > 3 || (n > 1 && s[0] == '0'))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 255)
        return false;
    *out = (uint8_t)v;
    return true;
}

/* Same grammar as lw_m2m_ver_parse ("major.minor", split at the first dot), without the
 * generic number parser. */
static int ver_parse(struct lw_bytes s, struct lw_m2m_ver *out)
{
    size_t d = 0;
    while (d < s.len && s.ptr[d] != '.')
        d++;
    if (d == s.len || !ver_part(s.ptr, d, &out->major) ||
        !ver_part(s.ptr + d + 1, s.len - d - 1, &out->minor))
        return LW_EMALFORMED;
    return 0;
}

static bool name_is(const uint8_t *p, size_t n, const char *s, size_t sn)
{
    return n == sn && !memcmp(p, s, sn);
}

/* The grammar pass of scan() fused with what lw_m2m_link_parse_reg needs from each link, so a
 * Register reads its payload once and builds no generic link array. Grammar errors and offsets
 * are those of scan(). Links go to `stk` (nstk entries) and, past that, to one arena array
 * sized by the input bound; on arena failure the grammar is still checked to the end and
 * LW_ENOMEM returned then (as lw_m2m_link_parse reports a grammar error before running out). */
static int scan_reg(const uint8_t *in, size_t len, const struct limits *lim, struct lw_arena *a,
                    struct rlink *stk, size_t nstk, struct rlink **recs_out, size_t *nl,
                    struct rootcand *rc_rt, struct rootcand *rc_slash, size_t *dup_rt_off,
                    size_t *off)
{
    size_t i = 0, nlinks = 0, cap = nstk;
    struct rlink *recs = stk;
    bool oom = false;
    int rc = 0;
    if (len == 0)
        goto out;
    for (;;) {
        if (i == len || in[i] != '<') {
            rc = LW_EMALFORMED;
            goto out;
        }
        if (nlinks == lim->max_links) {
            rc = LW_ELIMIT;
            goto out;
        }
        i++;
        size_t us = i;
        struct rlink l = {.uri = in + us};
        size_t q = quick_uri(in, len, i, &l);
        if (q)
            i = q;
        else {
            if ((rc = scan_uri(in, len, &i)))
                goto out;
            l.kind = reg_path(in + us, i - us, &l.id, &l.inst);
        }
        l.ulen = i - us;
        struct lw_m2m_link_attr ct = {0};
        bool has_ct = false;
        size_t ct_dup_off = SIZE_MAX;
        bool seen_rt = false;
        i++; /* '>' */
        size_t link_attrs = 0;
        while (i < len && in[i] == ';') {
            i++;
            size_t ns = i;
            while (i < len && is_parm_char(in[i]))
                i++;
            if (i == ns) {
                rc = LW_EMALFORMED;
                goto out;
            }
            if (i < len && in[i] == '*') /* ext-name-star (RFC 5988 §5) */
                i++;
            if (link_attrs == lim->max_attrs) {
                i = ns;
                rc = LW_ELIMIT;
                goto out;
            }
            struct lw_m2m_link_attr at = {.name = LW_BYTES(in + ns, i - ns)};
            if ((rc = scan_value(in, len, &i, &at)))
                goto out;
            /* the parameters a registration reads: first rt, first ver, first two ct */
            const uint8_t *nm = at.name.ptr;
            size_t nn = at.name.len;
            if (name_is(nm, nn, "rt", 2)) {
                if (!seen_rt)
                    l.rt_root = at.has_value && has_token(at.value, "oma.lwm2m");
                seen_rt = true;
            } else if (name_is(nm, nn, "ct", 2)) {
                if (!has_ct) {
                    ct = at;
                    has_ct = true;
                } else if (ct_dup_off == SIZE_MAX)
                    ct_dup_off = ns;
            } else if (name_is(nm, nn, "ver", 3) && !l.ver_name) {
                l.ver_name = nm;
                l.ver_val = at.value;
                l.ver_has = at.has_value;
            }
            link_attrs++;
        }
        if (l.rt_root) {
            if (rc_rt->idx == SIZE_MAX)
                *rc_rt = (struct rootcand){nlinks, ct, has_ct, ct_dup_off};
            else if (*dup_rt_off == SIZE_MAX)
                *dup_rt_off = us - 1;
        }
        if (l.kind == RK_ROOT && rc_slash->idx == SIZE_MAX)
            *rc_slash = (struct rootcand){nlinks, ct, has_ct, ct_dup_off};
        if (nlinks == cap && !oom) {
            /* n links take at least 3n - 1 bytes */
            size_t ncap = LW_MIN((len + 1) / 3, lim->max_links);
            struct rlink *big = lw_arena_alloc(a, ncap * sizeof(*big));
            if (big) {
                memcpy(big, recs, nlinks * sizeof(*big));
                recs = big;
                cap = ncap;
            } else
                oom = true;
        }
        if (!oom)
            recs[nlinks] = l;
        nlinks++;
        if (i == len)
            break;
        if (in[i] != ',') {
            rc = LW_EMALFORMED;
            goto out;
        }
        i++;
        if (i == len) { /* trailing comma */
            rc = LW_EMALFORMED;
            goto out;
        }
    }
    if (oom)
        rc = LW_ENOMEM;
out:
    *off = i;
    *nl = nlinks;
    *recs_out = recs;
    return rc;
}

/* Sorts by ent_cmp. Devices list links almost in order (an object link before its instance
 * links is the usual inversion), so insertion sort; past a budget of moves (adversarial order)
 * the rest goes to qsort, keeping the whole O(n log n). */
static void sort_ents(struct ent *e, size_t n)
{
    size_t moves = 0, budget = 8 * n + 64;
    for (size_t i = 1; i < n; i++) {
        if (ent_cmp(&e[i - 1], &e[i]) < 0)
            continue;
        struct ent t = e[i];
        size_t j = i;
        while (j > 0 && ent_cmp(&e[j - 1], &t) > 0) {
            e[j] = e[j - 1];
            j--;
            moves++;
        }
        e[j] = t;
        if (moves > budget) {
            qsort(e, n, sizeof(*e), ent_cmp);
            return;
        }
    }
}

int lw_m2m_link_parse_reg(const uint8_t *in, size_t len, struct lw_arena *a,
                          const struct lw_m2m_link_cfg *cfg, struct lw_m2m_reg_links *out,
                          size_t *err_off)
{
    struct limits lim = get_limits(cfg);
    struct rlink stk[32], *recs = NULL;
    struct ent estk[32], *ents = NULL;
    struct rootcand rt = {.idx = SIZE_MAX}, slash = {.idx = SIZE_MAX};
    const struct rootcand *root = NULL;
    size_t off = 0, nl = 0, dup_rt_off = SIZE_MAX, root_idx = SIZE_MAX, nents = 0;
    int rc;
    memset(out, 0, sizeof(*out));
    if (len > lim.max_len) {
        off = lim.max_len;
        rc = LW_ELIMIT;
        goto out;
    }
    if ((rc = scan_reg(in, len, &lim, a, stk, LW_ARRAY_SIZE(stk), &recs, &nl, &rt, &slash,
                       &dup_rt_off, &off)))
        goto out;
    /* the root link: rt="oma.lwm2m", else a plain </> */
    if (dup_rt_off != SIZE_MAX) {
        off = dup_rt_off;
        rc = LW_EMALFORMED;
        goto out;
    }
    root = rt.idx != SIZE_MAX ? &rt : slash.idx != SIZE_MAX ? &slash : NULL;
    if (root) {
        const struct rlink *r = &recs[root->idx];
        root_idx = root->idx;
        out->has_root_link = true;
        if (!valid_root(LW_BYTES(r->uri, r->ulen))) {
            off = (size_t)(r->uri - in) - 1;
            rc = LW_EMALFORMED;
            goto out;
        }
        out->root = LW_BYTES(r->uri, r->ulen == 1 ? 0 : r->ulen);
        if (root->ct_dup_off != SIZE_MAX) {
            off = root->ct_dup_off;
            rc = LW_EMALFORMED;
            goto out;
        }
        if (root->has_ct && (rc = parse_cts(in, &root->ct, a, &lim, out, &off)))
            goto out;
    }
    /* scratch on the stack, or from the arena: no heap allocation on this per-Register path */
    ents = nl <= LW_ARRAY_SIZE(estk) ? estk : lw_arena_alloc(a, nl * sizeof(*ents));
    if (!ents) {
        rc = LW_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < nl; i++) {
        const struct rlink *l = &recs[i];
        uint16_t id = l->id, inst = l->inst;
        uint8_t kind = l->kind;
        if (i == root_idx)
            continue;
        off = (size_t)(l->uri - in) - 1;
        if (out->root.len) {
            if (l->ulen <= out->root.len || memcmp(l->uri, out->root.ptr, out->root.len) ||
                l->uri[out->root.len] != '/') {
                rc = LW_EMALFORMED;
                goto out;
            }
            kind = reg_path(l->uri + out->root.len, l->ulen - out->root.len, &id, &inst);
        }
        if (kind != RK_OBJ && kind != RK_INST) {
            rc = LW_EMALFORMED;
            goto out;
        }
        struct ent *e = &ents[nents++];
        *e = (struct ent){.id = id, .inst = inst, .off = off};
        if (l->ver_name) {
            off = (size_t)(l->ver_name - in);
            if (!l->ver_has || ver_parse(l->ver_val, &e->ver)) {
                rc = LW_EMALFORMED;
                goto out;
            }
            e->has_ver = true;
        }
    }
    sort_ents(ents, nents);
    size_t nobj = 0, ninst = 0;
    for (size_t i = 0; i < nents; i++) {
        if (i == 0 || ents[i].id != ents[i - 1].id)
            nobj++;
        if (ents[i].inst != LW_M2M_ID_NONE &&
            (i == 0 || ents[i].id != ents[i - 1].id || ents[i].inst != ents[i - 1].inst))
            ninst++;
    }
    out->objs = nobj ? lw_arena_zalloc(a, nobj * sizeof(*out->objs)) : NULL;
    uint16_t *inst = ninst ? lw_arena_alloc(a, ninst * sizeof(*inst)) : NULL;
    if ((nobj && !out->objs) || (ninst && !inst)) {
        rc = LW_ENOMEM;
        goto out;
    }
    struct lw_m2m_reg_obj *o = NULL;
    size_t ver_off = 0; /* where the current object's version was announced */
    for (size_t i = 0; i < nents; i++) {
        const struct ent *e = &ents[i];
        if (!o || o->id != e->id) {
            o = &out->objs[out->nobjs++];
            o->id = e->id;
            o->ver = LW_M2M_VER(1, 0);
            o->inst = inst;
        }
        if (e->has_ver) {
            if (o->has_ver && lw_m2m_ver_cmp(o->ver, e->ver)) {
                off = LW_MAX(e->off, ver_off); /* the later of the two announcements */
                rc = LW_EMALFORMED;            /* two different versions announced for one object */
                goto out;
            }
            o->has_ver = true;
            o->ver = e->ver;
            ver_off = e->off;
        }
        if (e->inst != LW_M2M_ID_NONE && (o->ninst == 0 || o->inst[o->ninst - 1] != e->inst)) {
            o->inst[o->ninst++] = e->inst;
            inst++;
        }
    }
out:
    if (err_off)
        *err_off = rc ? off : 0;
    return rc;
}

static bool ver_is_default(struct lw_m2m_ver v)
{
    return v.major == 1 && v.minor == 0;
}

/* Writes c, then v in decimal, then d (when not NUL). The canonical writer runs once per Register
 * and Update with a payload: printf was most of its cost (5.5 k of 6 k instructions for a
 * five-object list). */
static void put_dec(struct lw_buf *b, char c, uint32_t v, char d)
{
    char t[12];
    size_t n = sizeof(t);
    if (d)
        t[--n] = d;
    do {
        t[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    t[--n] = c;
    lw_buf_put(b, t + n, sizeof(t) - n);
}

void lw_m2m_link_reg_write(const struct lw_m2m_reg_links *r, struct lw_buf *b)
{
    bool first = true;
    if (r->has_root_link) {
        lw_buf_put_u8(b, '<');
        if (r->root.len)
            lw_buf_put(b, r->root.ptr, r->root.len);
        else
            lw_buf_put_u8(b, '/');
        lw_buf_put_str(b, ">;rt=\"oma.lwm2m\"");
        if (r->ncts == 1) {
            lw_buf_put_str(b, ";ct");
            put_dec(b, '=', r->cts[0], 0);
        } else if (r->ncts > 1) {
            lw_buf_put_str(b, ";ct=");
            for (size_t i = 0; i < r->ncts; i++)
                put_dec(b, i ? ' ' : '"', r->cts[i], 0);
            lw_buf_put_u8(b, '"');
        }
        first = false;
    }
    for (size_t i = 0; i < r->nobjs; i++) {
        const struct lw_m2m_reg_obj *o = &r->objs[i];
        bool dflt = ver_is_default(o->ver);
        if (!dflt || o->ninst == 0) {
            if (!first)
                lw_buf_put_u8(b, ',');
            first = false;
            lw_buf_put_u8(b, '<');
            lw_buf_put(b, r->root.ptr, r->root.len);
            put_dec(b, '/', o->id, '>');
            if (!dflt) {
                lw_buf_put_str(b, ";ver");
                put_dec(b, '=', o->ver.major, 0);
                put_dec(b, '.', o->ver.minor, 0);
            }
        }
        for (size_t k = 0; k < o->ninst; k++) {
            if (!first)
                lw_buf_put_u8(b, ',');
            first = false;
            lw_buf_put_u8(b, '<');
            lw_buf_put(b, r->root.ptr, r->root.len);
            put_dec(b, '/', o->id, 0);
            put_dec(b, '/', o->inst[k], '>');
        }
    }
}

bool lw_m2m_link_reg_eq(const struct lw_m2m_reg_links *a, const struct lw_m2m_reg_links *b)
{
    if (a->has_root_link != b->has_root_link || !lw_bytes_eq(a->root, b->root) ||
        a->ncts != b->ncts || a->nobjs != b->nobjs)
        return false;
    if (a->ncts && memcmp(a->cts, b->cts, a->ncts * sizeof(*a->cts)))
        return false;
    for (size_t i = 0; i < a->nobjs; i++) {
        const struct lw_m2m_reg_obj *x = &a->objs[i], *y = &b->objs[i];
        if (x->id != y->id || lw_m2m_ver_cmp(x->ver, y->ver) || x->ninst != y->ninst)
            return false;
        if (x->ninst && memcmp(x->inst, y->inst, x->ninst * sizeof(*x->inst)))
            return false;
    }
    return true;
}

/* Chained SipHash over 64-byte blocks: each block is hashed together with the previous state. */
struct hasher {
    const uint8_t *key;
    uint64_t h;
    uint8_t blk[8 + 64];
    size_t n;
};

static void h_flush(struct hasher *hs)
{
    memcpy(hs->blk, &hs->h, 8);
    hs->h = lw_siphash(hs->key, hs->blk, 8 + hs->n);
    hs->n = 0;
}

static void h_put(struct hasher *hs, const void *p, size_t len)
{
    const uint8_t *s = p;
    while (len) {
        size_t k = LW_MIN(len, 64 - hs->n);
        memcpy(hs->blk + 8 + hs->n, s, k);
        hs->n += k;
        s += k;
        len -= k;
        if (hs->n == 64)
            h_flush(hs);
    }
}

/* inlined: called per id, version and instance of every object */
__attribute__((always_inline)) static inline void h_u16(struct hasher *hs, uint16_t v)
{
    if (hs->n + 2 <= 64) { /* fast path: no straddling */
        hs->blk[8 + hs->n] = (uint8_t)(v >> 8);
        hs->blk[8 + hs->n + 1] = (uint8_t)v;
        hs->n += 2;
        if (hs->n == 64)
            h_flush(hs);
        return;
    }
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    h_put(hs, b, 2);
}

static void h_u64(struct hasher *hs, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (56 - 8 * i));
    if (hs->n + 8 < 64) { /* fast path: the block does not fill */
        memcpy(hs->blk + 8 + hs->n, b, 8);
        hs->n += 8;
        return;
    }
    h_put(hs, b, 8);
}

uint64_t lw_m2m_link_reg_hash(const struct lw_m2m_reg_links *r, const uint8_t key[16])
{
    struct hasher hs = {.key = key, .h = 0x6c776d326d6c6e6bull};
    h_u64(&hs, r->has_root_link);
    h_u64(&hs, r->root.len);
    h_put(&hs, r->root.ptr, r->root.len);
    h_u64(&hs, r->ncts);
    for (size_t i = 0; i < r->ncts; i++)
        h_u16(&hs, r->cts[i]);
    h_u64(&hs, r->nobjs);
    for (size_t i = 0; i < r->nobjs; i++) {
        const struct lw_m2m_reg_obj *o = &r->objs[i];
        h_u16(&hs, o->id);
        h_u16(&hs, (uint16_t)(o->ver.major << 8 | o->ver.minor));
        h_u16(&hs, (uint16_t)o->ninst); /* < 65535: instance ids are unique */
        for (size_t k = 0; k < o->ninst; k++)
            h_u16(&hs, o->inst[k]);
    }
    h_flush(&hs);
    return hs.h;
}

struct lw_m2m_reg_links *lw_m2m_link_reg_dup(const struct lw_m2m_reg_links *r, size_t *bytes)
{
    /* layout: header, objects, instance ids, content formats, root bytes (alignment falls in
     * that order: pointers first, then uint16_t, then bytes) */
    size_t ninst = 0;
    for (size_t i = 0; i < r->nobjs; i++)
        ninst += r->objs[i].ninst;
    size_t size = sizeof(*r) + r->nobjs * sizeof(*r->objs) + ninst * sizeof(uint16_t) +
                  r->ncts * sizeof(uint16_t) + r->root.len;
    struct lw_m2m_reg_links *c = malloc(size);
    if (!c)
        return NULL;
    struct lw_m2m_reg_obj *objs = (struct lw_m2m_reg_obj *)(c + 1);
    uint16_t *inst = (uint16_t *)(objs + r->nobjs);
    uint16_t *cts = inst + ninst;
    uint8_t *root = (uint8_t *)(cts + r->ncts);
    *c = *r;
    c->objs = r->nobjs ? objs : NULL;
    for (size_t i = 0; i < r->nobjs; i++) {
        objs[i] = r->objs[i];
        objs[i].inst = inst;
        if (r->objs[i].ninst)
            memcpy(inst, r->objs[i].inst, r->objs[i].ninst * sizeof(*inst));
        inst += r->objs[i].ninst;
    }
    c->cts = r->ncts ? cts : NULL;
    if (r->ncts)
        memcpy(cts, r->cts, r->ncts * sizeof(*cts));
    if (r->root.len)
        memcpy(root, r->root.ptr, r->root.len);
    c->root = LW_BYTES(r->root.len ? root : NULL, r->root.len);
    if (bytes)
        *bytes = size;
    return c;
}

void lw_m2m_link_reg_free(struct lw_m2m_reg_links *r)
{
    free(r);
}

const struct lw_m2m_reg_obj *lw_m2m_link_reg_find(const struct lw_m2m_reg_links *r, uint16_t id)
{
    size_t lo = 0, hi = r->nobjs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->objs[mid].id == id)
            return &r->objs[mid];
        if (r->objs[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

int lw_m2m_link_reg_check(struct lw_m2m_reg_links *r, const struct lw_m2m_registry *reg,
                          size_t *nunknown)
{
    size_t unknown = 0;
    int rc = 0;
    for (size_t i = 0; i < r->nobjs; i++) {
        struct lw_m2m_reg_obj *o = &r->objs[i];
        o->flags = 0;
        if (o->id == 0 || o->id == 21)
            o->flags |= LW_M2M_REGOBJ_NOT_LISTED;
        const struct lw_m2m_obj_def *def = lw_m2m_registry_find(reg, o->id, &o->ver);
        if (!def) {
            def = lw_m2m_registry_find(reg, o->id, NULL);
            o->flags |= def ? LW_M2M_REGOBJ_OTHER_VER : LW_M2M_REGOBJ_UNKNOWN;
        }
        if (!def)
            unknown++;
        if (def && !def->multiple && (o->ninst > 1 || (o->ninst == 1 && o->inst[0] != 0))) {
            o->flags |= LW_M2M_REGOBJ_BAD_INST;
            rc = LW_EMALFORMED;
        }
    }
    if (nunknown)
        *nunknown = unknown;
    return rc;
}

static enum lw_m2m_type reg_type_of(void *ctx, const struct lw_m2m_path *p)
{
    const struct lw_m2m_reg_types_ctx *c = ctx;
    if (p->len < 3 || p->len > 4)
        return LW_M2M_T_NONE;
    const struct lw_m2m_reg_obj *o =
        c->reg_links ? lw_m2m_link_reg_find(c->reg_links, p->id[0]) : NULL;
    const struct lw_m2m_obj_def *def =
        lw_m2m_registry_resolve(c->registry, p->id[0], o ? &o->ver : NULL);
    const struct lw_m2m_res_def *r = def ? lw_m2m_obj_res(def, p->id[2]) : NULL;
    if (!r || (p->len == 4 && !r->multiple))
        return LW_M2M_T_NONE;
    return r->type;
}

struct lw_m2m_types lw_m2m_link_reg_types(const struct lw_m2m_reg_types_ctx *ctx)
{
    return (struct lw_m2m_types){reg_type_of, (void *)(uintptr_t)ctx};
}
