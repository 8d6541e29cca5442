#include "value.h"

#include "base/err.h"
#include "base/util.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

struct lw_m2m_record *lw_m2m_records_push(struct lw_m2m_records *r, struct lw_arena *a)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 8;
        struct lw_m2m_record *v = lw_arena_alloc(a, cap * sizeof(*v));
        if (!v)
            return NULL;
        if (r->n)
            memcpy(v, r->v, r->n * sizeof(*v));
        r->v = v;
        r->cap = cap;
    }
    struct lw_m2m_record *rec = &r->v[r->n++];
    memset(rec, 0, sizeof(*rec));
    return rec;
}

int lw_m2m_path_parse(const char *s, size_t len, struct lw_m2m_path *out)
{
    struct lw_m2m_path p = {{0}, 0};
    if (len == 0 || s[0] != '/')
        return LW_EMALFORMED;
    if (len == 1) {
        *out = p;
        return 0;
    }
    size_t i = 1;
    for (;;) {
        size_t start = i;
        while (i < len && s[i] != '/')
            i++;
        size_t n = i - start;
        if (n == 0 || n > 5 || p.len == 4)
            return LW_EMALFORMED;
        if (n > 1 && s[start] == '0')
            return LW_EMALFORMED;
        uint64_t v;
        if (lw_parse_u64(s + start, n, &v) || v > LW_M2M_ID_MAX)
            return LW_EMALFORMED;
        p.id[p.len++] = (uint16_t)v;
        if (i == len)
            break;
        i++; /* skip '/' */
        if (i == len)
            return LW_EMALFORMED; /* trailing slash */
    }
    *out = p;
    return 0;
}

int lw_m2m_path_format(const struct lw_m2m_path *p, char *out, size_t cap)
{
    size_t o = 0;
    if (p->len == 0) {
        if (cap < 2)
            return LW_ENOSPC;
        out[0] = '/';
        out[1] = '\0';
        return 1;
    }
    for (unsigned k = 0; k < p->len && k < 4; k++) {
        int n = snprintf(out + o, cap - o, "/%u", (unsigned)p->id[k]);
        if (n < 0 || (size_t)n >= cap - o)
            return LW_ENOSPC;
        o += (size_t)n;
    }
    return (int)o;
}

bool lw_m2m_path_within(const struct lw_m2m_path *p, const struct lw_m2m_path *prefix)
{
    if (prefix->len > p->len)
        return false;
    for (unsigned k = 0; k < prefix->len; k++)
        if (p->id[k] != prefix->id[k])
            return false;
    return true;
}

bool lw_m2m_path_eq(const struct lw_m2m_path *a, const struct lw_m2m_path *b)
{
    return a->len == b->len && lw_m2m_path_within(a, b);
}

int lw_m2m_path_cmp(const struct lw_m2m_path *a, const struct lw_m2m_path *b)
{
    unsigned n = LW_MIN(a->len, b->len);
    for (unsigned k = 0; k < n; k++)
        if (a->id[k] != b->id[k])
            return a->id[k] < b->id[k] ? -1 : 1;
    return (int)a->len - (int)b->len;
}

static const char *const ddf_names[] = {
    [LW_M2M_T_NONE] = "None",       [LW_M2M_T_STRING] = "String",
    [LW_M2M_T_INTEGER] = "Integer", [LW_M2M_T_UNSIGNED] = "Unsigned Integer",
    [LW_M2M_T_FLOAT] = "Float",     [LW_M2M_T_BOOLEAN] = "Boolean",
    [LW_M2M_T_OPAQUE] = "Opaque",   [LW_M2M_T_TIME] = "Time",
    [LW_M2M_T_OBJLNK] = "Objlnk",   [LW_M2M_T_CORELNK] = "Corelnk",
};
static const char *const api_names[] = {
    [LW_M2M_T_NONE] = "none",         [LW_M2M_T_STRING] = "string", [LW_M2M_T_INTEGER] = "integer",
    [LW_M2M_T_UNSIGNED] = "unsigned", [LW_M2M_T_FLOAT] = "float",   [LW_M2M_T_BOOLEAN] = "boolean",
    [LW_M2M_T_OPAQUE] = "opaque",     [LW_M2M_T_TIME] = "time",     [LW_M2M_T_OBJLNK] = "objlnk",
    [LW_M2M_T_CORELNK] = "corelnk",
};

const char *lw_m2m_type_name(enum lw_m2m_type t)
{
    return (unsigned)t < LW_ARRAY_SIZE(ddf_names) ? ddf_names[t] : "None";
}

const char *lw_m2m_type_api_name(enum lw_m2m_type t)
{
    return (unsigned)t < LW_ARRAY_SIZE(api_names) ? api_names[t] : "none";
}

enum lw_m2m_type lw_m2m_type_parse(const char *s, size_t len)
{
    for (unsigned t = 1; t < LW_ARRAY_SIZE(ddf_names); t++) {
        if ((strlen(ddf_names[t]) == len && strncasecmp(s, ddf_names[t], len) == 0) ||
            (strlen(api_names[t]) == len && strncasecmp(s, api_names[t], len) == 0))
            return (enum lw_m2m_type)t;
    }
    if (len == 12 && strncasecmp(s, "Unsigned Int", 12) == 0) /* seen in some registry files */
        return LW_M2M_T_UNSIGNED;
    return LW_M2M_T_NONE;
}
