/* The registration.profiles_file parser. See profiles.h.
 *
 * jansson validates the document (syntax errors come with its line, duplicate ids are refused)
 * but keeps no positions for the values it returns, so the members of the top-level object are
 * then walked in the text itself: the walk only has to find where each key and value starts (the
 * text is known to be valid JSON), and each string is decoded by jansson again. That gives every
 * profile its line without a JSON parser of our own. */
#include "profiles.h"

#include "base/arena.h"
#include "base/buf.h"
#include "base/err.h"
#include "lwm2m/link.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct walk {
    const char *s;
    size_t len, pos;
    unsigned line;
};

static void skip_ws(struct walk *w)
{
    while (w->pos < w->len) {
        char c = w->s[w->pos];
        if (c == '\n')
            w->line++;
        else if (c != ' ' && c != '\t' && c != '\r')
            return;
        w->pos++;
    }
}

/* Skips a string token starting at its opening quote (valid JSON: escapes are well formed). */
static void skip_string(struct walk *w)
{
    w->pos++;
    while (w->pos < w->len && w->s[w->pos] != '"')
        w->pos += w->s[w->pos] == '\\' ? 2 : 1;
    w->pos++;
}

/* Skips one value of any kind (strings, numbers, literals, nested arrays and objects). */
static void skip_value(struct walk *w)
{
    size_t depth = 0;
    do {
        skip_ws(w);
        if (w->pos >= w->len)
            return;
        char c = w->s[w->pos];
        if (c == '"') {
            skip_string(w);
        } else if (c == '{' || c == '[') {
            depth++;
            w->pos++;
        } else if (c == '}' || c == ']') {
            depth--;
            w->pos++;
        } else if (c == ',' || c == ':') {
            w->pos++;
        } else {
            while (w->pos < w->len && !strchr(",:]} \t\r\n", w->s[w->pos]))
                w->pos++;
        }
        skip_ws(w);
    } while (depth > 0 && w->pos < w->len);
}

/* Decodes the string token at w->pos (jansson, so escapes mean what they mean to it); NULL when
 * the token is not a string (a value of another type) or on OOM. Owned by the caller. */
static json_t *take_string(struct walk *w)
{
    size_t start = w->pos;
    if (start >= w->len || w->s[start] != '"') {
        skip_value(w);
        return NULL;
    }
    skip_string(w);
    return json_loadb(w->s + start, w->pos - start, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
}

static int fail(char *err, size_t errlen, const char *name, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int fail(char *err, size_t errlen, const char *name, unsigned line, const char *fmt, ...)
{
    if (errlen) {
        int n = snprintf(err, errlen, "%s:%u: ", name, line);
        if (n >= 0 && (size_t)n < errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return LW_ECONFIG;
}

/* Printable ASCII without space, quote or backslash: what a Register's pid may hold. */
static bool pid_ok(const char *s, size_t len)
{
    if (len == 0 || len > REG_PROFILE_MAX_PID)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f || s[i] == '"' ||
            s[i] == '\\')
            return false;
    return true;
}

/* Adds one profile (pid, canonical form of the link-format text). 0, LW_ECONFIG (err set) or
 * LW_ENOMEM. */
static int add_profile(struct reg_profiles *out, size_t *cap, const char *pid, size_t plen,
                       const char *text, size_t tlen, unsigned line, unsigned vline,
                       struct lw_arena *a, const char *name, char *err, size_t errlen)
{
    struct lw_m2m_reg_links l;
    struct lw_buf b;
    size_t off = 0;
    int rc = lw_m2m_link_parse_reg((const uint8_t *)text, tlen, a, NULL, &l, &off);
    if (rc == LW_ENOMEM)
        return rc;
    if (rc)
        return fail(err, errlen, name, vline, "profile '%s': invalid link format at byte %zu: %s",
                    pid, off, lw_strerror(rc));
    if (out->n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 8;
        struct reg_profile_def *nv = realloc(out->v, ncap * sizeof(*nv));
        if (!nv)
            return LW_ENOMEM;
        out->v = nv;
        *cap = ncap;
    }
    lw_buf_init(&b, tlen + 32);
    lw_m2m_link_reg_write(&l, &b);
    if (lw_buf_status(&b) != 0) {
        lw_buf_deinit(&b);
        return LW_ENOMEM;
    }
    struct reg_profile_def *d = &out->v[out->n++];
    memcpy(d->pid, pid, plen);
    d->pid[plen] = '\0';
    d->links = b.data; /* the growable buffer's memory becomes the profile's */
    d->links_len = b.len;
    d->line = line;
    return 0;
}

int reg_profiles_parse(const uint8_t *data, size_t len, const char *name, struct reg_profiles *out,
                       char *err, size_t errlen)
{
    json_error_t je;
    json_t *root = NULL, *key = NULL, *val = NULL;
    struct walk w = {(const char *)data, len, 0, 1};
    struct lw_arena a;
    size_t cap = 0;
    int rc = 0;
    out->v = NULL;
    out->n = 0;
    if (errlen)
        err[0] = '\0';
    lw_arena_init(&a, 4096, 1u << 20);
    if (len > REG_PROFILES_MAX_FILE) {
        rc = fail(err, errlen, name, 1, "file larger than %d bytes", REG_PROFILES_MAX_FILE);
        goto out;
    }
    root = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        rc = fail(err, errlen, name, je.line > 0 ? (unsigned)je.line : 1, "%s", je.text);
        goto out;
    }
    skip_ws(&w);
    if (!json_is_object(root)) {
        rc = fail(err, errlen, name, w.line, "expected a JSON object of profile id -> object list");
        goto out;
    }
    if (json_object_size(root) > REG_PROFILES_MAX) {
        rc = fail(err, errlen, name, w.line, "more than %d profiles", REG_PROFILES_MAX);
        goto out;
    }
    w.pos++; /* '{' */
    for (;;) {
        skip_ws(&w);
        if (w.pos >= w.len || w.s[w.pos] == '}')
            break;
        if (w.s[w.pos] == ',') {
            w.pos++;
            continue;
        }
        unsigned line = w.line;
        key = take_string(&w);
        skip_ws(&w);
        w.pos++; /* ':' */
        skip_ws(&w);
        unsigned vline = w.line;
        bool vstr = w.pos < w.len && w.s[w.pos] == '"';
        val = take_string(&w);
        if (!key || (vstr && !val)) {
            rc = LW_ENOMEM;
            goto out;
        }
        const char *pid = json_string_value(key);
        size_t plen = json_string_length(key);
        if (!pid_ok(pid, plen)) {
            rc = fail(err, errlen, name, line,
                      "profile '%.64s': the id must be 1 to %d printable characters without "
                      "space, quote or backslash",
                      pid, REG_PROFILE_MAX_PID);
            goto out;
        }
        if (!val) {
            rc = fail(err, errlen, name, vline,
                      "profile '%s': expected a link-format string (\"</1/0>,</3/0>\")", pid);
            goto out;
        }
        rc = add_profile(out, &cap, pid, plen, json_string_value(val), json_string_length(val),
                         line, vline, &a, name, err, errlen);
        if (rc)
            goto out;
        json_decref(key);
        json_decref(val);
        key = val = NULL;
        lw_arena_reset(&a);
    }
out:
    if (rc == LW_ENOMEM)
        fail(err, errlen, name, w.line, "out of memory");
    if (rc)
        reg_profiles_free(out);
    json_decref(key);
    json_decref(val);
    json_decref(root);
    lw_arena_deinit(&a);
    return rc;
}

void reg_profiles_free(struct reg_profiles *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->v[i].links);
    free(p->v);
    p->v = NULL;
    p->n = 0;
}
