/* lib/lwm2m/ddf.c - DDF (OMA LwM2M object definition XML) loader on expat's streaming parser.
 *
 * The file is fed to expat in chunks (never held whole). Only the fields the server needs are
 * captured (object id, name, URN, versions, multiplicity, mandatory; per resource id, name,
 * operations, multiplicity, mandatory, type, range, units); descriptions are skipped without being
 * buffered. Everything captured is bounded by the cfg limits: string length, resources per object,
 * objects per file, nesting depth and file size, and the scratch arena has a hard byte limit, so a
 * hostile file costs bounded memory. DOCTYPE declarations are refused outright (DDF files never
 * use them), which also rules out entity-expansion attacks.
 *
 * Registry quirks handled: UTF-8 byte order marks (expat), leading/trailing spaces in names
 * (trimmed), executables with an empty <Type/>, bootstrap-only resources with empty
 * <Operations/>, absent <Mandatory> (means Optional). Files that are not object definitions
 * (XSD schemas, the DDF index, the units list, the CommonResources file) are refused with the
 * reason. Start-up only; one thread.
 */
#include "registry.h"
#include "registry_int.h"

#include "base/arena.h"
#include "base/err.h"
#include "base/util.h"

#include <dirent.h>
#include <errno.h>
#include <expat.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Element roles, by position in the tree. */
enum el {
    EL_IGNORED = 0, /* skipped, with everything below it */
    EL_ROOT,
    EL_OBJECT,
    EL_RESOURCES,
    EL_ITEM,
    EL_FIELD, /* a captured text field of an object or an item */
};

enum ofield { OF_ID, OF_NAME, OF_URN, OF_LWM2M, OF_VER, OF_MULTI, OF_MAND, OF_N };
enum rfield { RF_NAME, RF_OPS, RF_MULTI, RF_MAND, RF_TYPE, RF_RANGE, RF_UNITS, RF_N };

static const char *const ofield_names[OF_N] = {
    "ObjectID",          "Name",      "ObjectURN", "LWM2MVersion", "ObjectVersion",
    "MultipleInstances", "Mandatory",
};
static const char *const rfield_names[RF_N] = {
    "Name", "Operations", "MultipleInstances", "Mandatory", "Type", "RangeEnumeration", "Units",
};

struct ddf {
    XML_Parser xp;
    const struct lw_m2m_registry_cfg *cfg;
    const char *name;
    struct lw_arena a; /* scratch: objects of this file, copied into the registry on success */
    int rc;
    unsigned long err_line;
    char msg[256];

    enum el *stack; /* element roles, cfg->max_depth entries */
    size_t depth;
    size_t ignore_depth; /* > 0: inside an ignored subtree starting at this depth */
    unsigned long root_line;

    /* text capture for the current EL_FIELD */
    char **field; /* destination slot */
    char *text;   /* cfg->max_string + 1 bytes */
    size_t tlen;
    const char *field_name;

    /* current object */
    bool in_object;
    unsigned long obj_line;
    char *of[OF_N];
    struct lw_m2m_res_def *res;
    size_t nres, res_cap;

    /* current item */
    bool in_item;
    unsigned long item_line;
    uint16_t item_id;
    char *rf[RF_N];

    struct lw_m2m_obj_def **objs; /* cfg->max_file_objects entries */
    unsigned long *obj_lines;
    size_t nobjs;
};

static void fail(struct ddf *d, int rc, unsigned long line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void fail(struct ddf *d, int rc, unsigned long line, const char *fmt, ...)
{
    if (d->rc)
        return;
    d->rc = rc;
    d->err_line = line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->msg, sizeof(d->msg), fmt, ap);
    va_end(ap);
    if (d->xp)
        XML_StopParser(d->xp, XML_FALSE);
}

/* Record a failure and leave the (void) handler. */
#define FAIL(...)          \
    do {                   \
        fail(__VA_ARGS__); \
        return;            \
    } while (0)
#define OOM_RET() \
    do {          \
        oom(d);   \
        return;   \
    } while (0)

static unsigned long cur_line(const struct ddf *d)
{
    return (unsigned long)XML_GetCurrentLineNumber(d->xp);
}

static void oom(struct ddf *d)
{
    /* the scratch arena's limit is a configured bound, not a system failure */
    fail(d, LW_ELIMIT, cur_line(d), "definition exceeds the loader's memory limit");
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Trimmed copy of the captured text into the scratch arena. */
static char *take_text(struct ddf *d)
{
    size_t s = 0, e = d->tlen;
    while (s < e && is_space(d->text[s]))
        s++;
    while (e > s && is_space(d->text[e - 1]))
        e--;
    char *p = lw_arena_strndup(&d->a, d->text + s, e - s);
    if (!p)
        oom(d);
    return p;
}

static int parse_id(const char *s, size_t len, uint16_t *out)
{
    uint64_t v;
    if (len == 0 || len > 5 || (len > 1 && s[0] == '0') || lw_parse_u64(s, len, &v) ||
        v > LW_M2M_ID_MAX)
        return LW_EMALFORMED;
    *out = (uint16_t)v;
    return 0;
}

static void push(struct ddf *d, enum el role)
{
    d->stack[d->depth++] = role;
}

static void start_field(struct ddf *d, char **slot, const char *name)
{
    if (*slot) {
        fail(d, LW_EMALFORMED, cur_line(d), "duplicate <%s>", name);
        return;
    }
    d->field = slot;
    d->field_name = name;
    d->tlen = 0;
    push(d, EL_FIELD);
}

static void start_object(struct ddf *d, const XML_Char **attrs)
{
    for (size_t i = 0; attrs[i]; i += 2) {
        if (!strcmp(attrs[i], "ObjectType") && strcmp(attrs[i + 1], "MODefinition")) {
            fail(d, LW_EMALFORMED, cur_line(d),
                 "<Object ObjectType=\"%.40s\"> is not an object definition (MODefinition)",
                 attrs[i + 1]);
            return;
        }
    }
    if (d->nobjs == d->cfg->max_file_objects) {
        fail(d, LW_ELIMIT, cur_line(d), "more than %zu <Object> elements in one file",
             d->cfg->max_file_objects);
        return;
    }
    d->in_object = true;
    d->obj_line = cur_line(d);
    memset(d->of, 0, sizeof(d->of));
    d->res = NULL;
    d->nres = d->res_cap = 0;
    push(d, EL_OBJECT);
}

static void start_item(struct ddf *d, const XML_Char **attrs)
{
    const char *id = NULL;
    for (size_t i = 0; attrs[i]; i += 2)
        if (!strcmp(attrs[i], "ID"))
            id = attrs[i + 1];
    d->item_line = cur_line(d);
    if (!id) {
        fail(d, LW_EMALFORMED, d->item_line, "<Item> without an ID attribute");
        return;
    }
    if (parse_id(id, strlen(id), &d->item_id)) {
        fail(d, LW_EMALFORMED, d->item_line, "invalid resource ID \"%.20s\" (0..65534)", id);
        return;
    }
    d->in_item = true;
    memset(d->rf, 0, sizeof(d->rf));
    push(d, EL_ITEM);
}

static void XMLCALL on_start(void *ud, const XML_Char *el, const XML_Char **attrs)
{
    struct ddf *d = ud;
    if (d->rc)
        return;
    if (d->depth == d->cfg->max_depth) {
        fail(d, LW_ELIMIT, cur_line(d), "elements nested deeper than %zu", d->cfg->max_depth);
        return;
    }
    if (d->ignore_depth) {
        push(d, EL_IGNORED);
        return;
    }
    enum el parent = d->depth ? d->stack[d->depth - 1] : EL_IGNORED;
    if (d->depth == 0) {
        d->root_line = cur_line(d);
        if (strcmp(el, "LWM2M")) {
            fail(d, LW_EMALFORMED, d->root_line, "root element <%.40s> is not <LWM2M>", el);
            return;
        }
        push(d, EL_ROOT);
        return;
    }
    switch (parent) {
    case EL_ROOT:
        if (!strcmp(el, "Object")) {
            start_object(d, attrs);
            return;
        }
        break;
    case EL_OBJECT:
        if (!strcmp(el, "Resources")) {
            push(d, EL_RESOURCES);
            return;
        }
        for (unsigned f = 0; f < OF_N; f++) {
            if (!strcmp(el, ofield_names[f])) {
                start_field(d, &d->of[f], ofield_names[f]);
                return;
            }
        }
        break;
    case EL_RESOURCES:
        if (!strcmp(el, "Item")) {
            start_item(d, attrs);
            return;
        }
        break;
    case EL_ITEM:
        for (unsigned f = 0; f < RF_N; f++) {
            if (!strcmp(el, rfield_names[f])) {
                start_field(d, &d->rf[f], rfield_names[f]);
                return;
            }
        }
        break;
    case EL_FIELD:
        fail(d, LW_EMALFORMED, cur_line(d), "unexpected element <%.40s> inside <%s>", el,
             d->field_name);
        return;
    default: break;
    }
    /* unknown or uninteresting (descriptions, submitter, ...): skip the subtree */
    d->ignore_depth = d->depth + 1;
    push(d, EL_IGNORED);
}

static void XMLCALL on_text(void *ud, const XML_Char *s, int len)
{
    struct ddf *d = ud;
    if (d->rc || !d->depth || d->stack[d->depth - 1] != EL_FIELD || len <= 0)
        return;
    if ((size_t)len > d->cfg->max_string - d->tlen) {
        fail(d, LW_ELIMIT, cur_line(d), "<%s> longer than %zu bytes", d->field_name,
             d->cfg->max_string);
        return;
    }
    memcpy(d->text + d->tlen, s, (size_t)len);
    d->tlen += (size_t)len;
}

static int parse_choice(const char *s, const char *yes, const char *no, bool *out)
{
    if (!strcmp(s, yes))
        *out = true;
    else if (!strcmp(s, no))
        *out = false;
    else
        return LW_EMALFORMED;
    return 0;
}

static void end_item(struct ddf *d)
{
    unsigned long ln = d->item_line;
    uint16_t id = d->item_id;
    struct lw_m2m_res_def r = {.id = id};
    d->in_item = false;
    if (!d->rf[RF_NAME] || !*d->rf[RF_NAME])
        FAIL(d, LW_EMALFORMED, ln, "resource %u: missing <Name>", id);
    r.name = d->rf[RF_NAME];
    const char *ops = d->rf[RF_OPS];
    if (!ops)
        FAIL(d, LW_EMALFORMED, ln, "resource %u: missing <Operations>", id);
    if (!*ops)
        r.ops = LW_M2M_OP_NONE;
    else if (!strcmp(ops, "R"))
        r.ops = LW_M2M_OP_R;
    else if (!strcmp(ops, "W"))
        r.ops = LW_M2M_OP_W;
    else if (!strcmp(ops, "RW"))
        r.ops = LW_M2M_OP_RW;
    else if (!strcmp(ops, "E"))
        r.ops = LW_M2M_OP_E;
    else
        FAIL(d, LW_EMALFORMED, ln, "resource %u: invalid <Operations> \"%.20s\"", id, ops);
    if (!d->rf[RF_MULTI])
        FAIL(d, LW_EMALFORMED, ln, "resource %u: missing <MultipleInstances>", id);
    if (parse_choice(d->rf[RF_MULTI], "Multiple", "Single", &r.multiple))
        FAIL(d, LW_EMALFORMED, ln, "resource %u: invalid <MultipleInstances> \"%.20s\"", id,
             d->rf[RF_MULTI]);
    if (d->rf[RF_MAND] && parse_choice(d->rf[RF_MAND], "Mandatory", "Optional", &r.mandatory))
        FAIL(d, LW_EMALFORMED, ln, "resource %u: invalid <Mandatory> \"%.20s\"", id,
             d->rf[RF_MAND]);
    const char *ty = d->rf[RF_TYPE] ? d->rf[RF_TYPE] : "";
    if (r.ops & LW_M2M_OP_E) {
        if (*ty)
            FAIL(d, LW_EMALFORMED, ln, "resource %u: executable with <Type> \"%.20s\"", id, ty);
        r.type = LW_M2M_T_NONE;
    } else {
        if (!*ty)
            FAIL(d, LW_EMALFORMED, ln, "resource %u: missing <Type>", id);
        r.type = lw_m2m_type_parse(ty, strlen(ty));
        if (r.type == LW_M2M_T_NONE)
            FAIL(d, LW_EMALFORMED, ln, "resource %u: unknown <Type> \"%.30s\"", id, ty);
    }
    r.range = d->rf[RF_RANGE] && *d->rf[RF_RANGE] ? d->rf[RF_RANGE] : NULL;
    r.units = d->rf[RF_UNITS] && *d->rf[RF_UNITS] ? d->rf[RF_UNITS] : NULL;
    for (size_t i = 0; i < d->nres; i++)
        if (d->res[i].id == id)
            FAIL(d, LW_EMALFORMED, ln, "duplicate resource ID %u", id);
    if (d->nres == d->cfg->max_resources)
        FAIL(d, LW_ELIMIT, ln, "more than %zu resources in one object", d->cfg->max_resources);
    if (d->nres == d->res_cap) {
        size_t cap = d->res_cap ? d->res_cap * 2 : 32;
        cap = LW_MIN(cap, d->cfg->max_resources);
        struct lw_m2m_res_def *n = lw_arena_alloc(&d->a, cap * sizeof(*n));
        if (!n)
            OOM_RET();
        if (d->nres)
            memcpy(n, d->res, d->nres * sizeof(*n));
        d->res = n;
        d->res_cap = cap;
    }
    d->res[d->nres++] = r;
}

static void end_object(struct ddf *d)
{
    unsigned long ln = d->obj_line;
    struct lw_m2m_obj_def *o = lw_arena_zalloc(&d->a, sizeof(*o));
    d->in_object = false;
    if (!o)
        OOM_RET();
    const char *id = d->of[OF_ID];
    if (!id)
        FAIL(d, LW_EMALFORMED, ln, "<Object> has no <ObjectID>");
    if (parse_id(id, strlen(id), &o->id))
        FAIL(d, LW_EMALFORMED, ln, "invalid <ObjectID> \"%.20s\" (0..65534)", id);
    if (!d->of[OF_NAME] || !*d->of[OF_NAME])
        FAIL(d, LW_EMALFORMED, ln, "object %u: missing <Name>", o->id);
    o->name = d->of[OF_NAME];
    o->urn = d->of[OF_URN] && *d->of[OF_URN] ? d->of[OF_URN] : NULL;
    o->ver = LW_M2M_VER(1, 0);
    o->lwm2m = LW_M2M_VER(1, 0);
    const char *v = d->of[OF_VER];
    if (v && *v && lw_m2m_ver_parse(v, strlen(v), &o->ver))
        FAIL(d, LW_EMALFORMED, ln, "object %u: invalid <ObjectVersion> \"%.20s\"", o->id, v);
    v = d->of[OF_LWM2M];
    if (v && *v && lw_m2m_ver_parse(v, strlen(v), &o->lwm2m))
        FAIL(d, LW_EMALFORMED, ln, "object %u: invalid <LWM2MVersion> \"%.20s\"", o->id, v);
    if (!d->of[OF_MULTI])
        FAIL(d, LW_EMALFORMED, ln, "object %u: missing <MultipleInstances>", o->id);
    if (parse_choice(d->of[OF_MULTI], "Multiple", "Single", &o->multiple))
        FAIL(d, LW_EMALFORMED, ln, "object %u: invalid <MultipleInstances> \"%.20s\"", o->id,
             d->of[OF_MULTI]);
    if (d->of[OF_MAND] && parse_choice(d->of[OF_MAND], "Mandatory", "Optional", &o->mandatory))
        FAIL(d, LW_EMALFORMED, ln, "object %u: invalid <Mandatory> \"%.20s\"", o->id,
             d->of[OF_MAND]);
    o->res = d->res;
    o->nres = d->nres;
    d->obj_lines[d->nobjs] = ln;
    d->objs[d->nobjs++] = o;
}

static void XMLCALL on_end(void *ud, const XML_Char *el)
{
    struct ddf *d = ud;
    LW_UNUSED(el);
    if (d->rc || !d->depth)
        return;
    enum el role = d->stack[--d->depth];
    if (d->ignore_depth) {
        if (d->depth + 1 == d->ignore_depth)
            d->ignore_depth = 0;
        return;
    }
    switch (role) {
    case EL_FIELD:
        *d->field = take_text(d);
        d->field = NULL;
        break;
    case EL_ITEM: end_item(d); break;
    case EL_OBJECT: end_object(d); break;
    default: break;
    }
}

static void XMLCALL on_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
                               const XML_Char *pubid, int has_internal)
{
    struct ddf *d = ud;
    LW_UNUSED(name);
    LW_UNUSED(sysid);
    LW_UNUSED(pubid);
    LW_UNUSED(has_internal);
    fail(d, LW_EMALFORMED, cur_line(d), "DOCTYPE declarations are not allowed in DDF files");
}

static void XMLCALL on_entity(void *ud, const XML_Char *name, int is_param, const XML_Char *value,
                              int vlen, const XML_Char *base, const XML_Char *sysid,
                              const XML_Char *pubid, const XML_Char *notation)
{
    struct ddf *d = ud;
    LW_UNUSED(name);
    LW_UNUSED(is_param);
    LW_UNUSED(value);
    LW_UNUSED(vlen);
    LW_UNUSED(base);
    LW_UNUSED(sysid);
    LW_UNUSED(pubid);
    LW_UNUSED(notation);
    fail(d, LW_EMALFORMED, cur_line(d), "entity declarations are not allowed in DDF files");
}

static int ddf_init(struct ddf *d, const struct lw_m2m_registry *reg, const char *name)
{
    memset(d, 0, sizeof(*d));
    d->cfg = lw__m2m_registry_cfg(reg);
    d->name = name;
    /* scratch bound: captured strings and resource arrays cannot outgrow a few times the
     * largest file, plus the fixed tables below */
    lw_arena_init(&d->a, 16384,
                  4 * d->cfg->max_file_size + 65536 + d->cfg->max_depth * sizeof(*d->stack) +
                      d->cfg->max_string +
                      d->cfg->max_file_objects * (sizeof(void *) + sizeof(long)));
    d->stack = lw_arena_alloc(&d->a, d->cfg->max_depth * sizeof(*d->stack));
    d->text = lw_arena_alloc(&d->a, d->cfg->max_string + 1);
    d->objs = lw_arena_alloc(&d->a, d->cfg->max_file_objects * sizeof(*d->objs));
    d->obj_lines = lw_arena_alloc(&d->a, d->cfg->max_file_objects * sizeof(*d->obj_lines));
    d->xp = XML_ParserCreate(NULL);
    if (!d->stack || !d->text || !d->objs || !d->obj_lines || !d->xp)
        return LW_ENOMEM;
    XML_SetUserData(d->xp, d);
    XML_SetElementHandler(d->xp, on_start, on_end);
    XML_SetCharacterDataHandler(d->xp, on_text);
    XML_SetStartDoctypeDeclHandler(d->xp, on_doctype);
    XML_SetEntityDeclHandler(d->xp, on_entity);
    return 0;
}

static void ddf_deinit(struct ddf *d)
{
    if (d->xp)
        XML_ParserFree(d->xp);
    lw_arena_deinit(&d->a);
}

/* Feeds one chunk; 0 or the failure code (message in d). */
static int ddf_feed(struct ddf *d, const void *data, size_t len, bool final)
{
    if (len > INT_MAX) {
        fail(d, LW_ELIMIT, 0, "chunk too large");
        return d->rc;
    }
    if (XML_Parse(d->xp, data, (int)len, final) == XML_STATUS_ERROR && !d->rc)
        fail(d, LW_EMALFORMED, cur_line(d), "XML error: %s",
             XML_ErrorString(XML_GetErrorCode(d->xp)));
    return d->rc;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* After the last chunk: checks the document and commits its objects. */
static int ddf_finish(struct ddf *d, struct lw_m2m_registry *reg)
{
    if (!d->rc && d->nobjs == 0)
        fail(d, LW_EMALFORMED, d->root_line ? d->root_line : 1, "no <Object> element");
    if (d->rc)
        return d->rc;
    size_t bad = 0;
    int rc = lw__m2m_registry_add_many(reg, (const struct lw_m2m_obj_def *const *)d->objs, d->nobjs,
                                       &bad);
    if (rc) {
        const struct lw_m2m_obj_def *o = d->objs[bad];
        const struct lw_m2m_obj_def *old = lw_m2m_registry_find(reg, o->id, &o->ver);
        if (rc == LW_EEXIST)
            fail(d, rc, d->obj_lines[bad],
                 "object %u version %u.%u is already defined (%s); keeping the existing one", o->id,
                 o->ver.major, o->ver.minor,
                 old && old->builtin ? "built in"
                 : old               ? "loaded before"
                                     : "twice in this file");
        else if (rc == LW_ELIMIT)
            fail(d, rc, d->obj_lines[bad], "registry is full (max_objects %zu)",
                 d->cfg->max_objects);
        else
            fail(d, rc, d->obj_lines[bad], "cannot add object %u: %s", o->id, lw_strerror(rc));
    }
    return d->rc;
}

static void report(const struct ddf *d, int rc, char *err, size_t errlen)
{
    if (rc && d->msg[0] && !d->err_line)
        set_err(err, errlen, "%s: %s", d->name, d->msg);
    else if (rc && d->msg[0])
        set_err(err, errlen, "%s:%lu: %s", d->name, d->err_line, d->msg);
    else if (rc)
        set_err(err, errlen, "%s: %s", d->name, lw_strerror(rc));
    else
        set_err(err, errlen, "%s", "");
}

int lw_m2m_registry_load_mem(struct lw_m2m_registry *reg, const char *name, const void *data,
                             size_t len, char *err, size_t errlen)
{
    struct ddf d;
    int rc = ddf_init(&d, reg, name);
    if (rc)
        goto out;
    if (len > d.cfg->max_file_size) {
        fail(&d, LW_ELIMIT, 0, "file larger than %zu bytes", d.cfg->max_file_size);
        rc = d.rc;
        goto out;
    }
    if ((rc = ddf_feed(&d, data, len, true)))
        goto out;
    rc = ddf_finish(&d, reg);
out:
    report(&d, rc, err, errlen);
    ddf_deinit(&d);
    return rc;
}

int lw_m2m_registry_load_file(struct lw_m2m_registry *reg, const char *path, char *err,
                              size_t errlen)
{
    struct ddf d;
    char chunk[16384];
    size_t total = 0;
    int fd = -1;
    int rc = ddf_init(&d, reg, path);
    if (rc)
        goto out;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = errno == ENOENT ? LW_ENOENT : LW_EIO;
        fail(&d, rc, 0, "cannot open: %s", strerror(errno));
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fail(&d, LW_EIO, 0, "read error: %s", strerror(errno));
            rc = d.rc;
            goto out;
        }
        total += (size_t)n;
        if (total > d.cfg->max_file_size) {
            fail(&d, LW_ELIMIT, 0, "file larger than %zu bytes", d.cfg->max_file_size);
            rc = d.rc;
            goto out;
        }
        if ((rc = ddf_feed(&d, chunk, (size_t)n, n == 0)))
            goto out;
        if (n == 0)
            break;
    }
    rc = ddf_finish(&d, reg);
out:
    if (fd >= 0)
        close(fd);
    report(&d, rc, err, errlen);
    ddf_deinit(&d);
    return rc;
}

static bool has_xml_suffix(const char *n)
{
    size_t l = strlen(n);
    return l > 4 && !strcmp(n + l - 4, ".xml");
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int lw_m2m_registry_load_dir(struct lw_m2m_registry *reg, const char *dir,
                             lw_m2m_ddf_report_fn report_fn, void *ctx,
                             struct lw_m2m_load_stats *stats, char *err, size_t errlen)
{
    int rc = 0;
    char **names = NULL;
    size_t n = 0, cap = 0;
    char path[4096], msg[512];
    struct lw_m2m_load_stats st = {0};
    DIR *dh = opendir(dir);
    if (!dh) {
        rc = errno == ENOENT ? LW_ENOENT : LW_EIO;
        set_err(err, errlen, "%s: cannot open directory: %s", dir, strerror(errno));
        goto out;
    }
    struct dirent *de;
    while ((de = readdir(dh))) {
        if (!has_xml_suffix(de->d_name))
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            char **nn = realloc(names, ncap * sizeof(*nn));
            if (!nn) {
                rc = LW_ENOMEM;
                goto out;
            }
            names = nn;
            cap = ncap;
        }
        if (!(names[n] = strdup(de->d_name))) {
            rc = LW_ENOMEM;
            goto out;
        }
        n++;
    }
    if (n)
        qsort(names, n, sizeof(*names), name_cmp);
    set_err(err, errlen, "%s", "");
    for (size_t i = 0; i < n; i++) {
        int r = snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        if (r < 0 || (size_t)r >= sizeof(path))
            continue;
        struct stat sb;
        if (stat(path, &sb) || !S_ISREG(sb.st_mode))
            continue;
        int frc = lw_m2m_registry_load_file(reg, path, msg, sizeof(msg));
        if (frc) {
            st.refused++;
            if (!rc) {
                rc = frc;
                set_err(err, errlen, "%s", msg);
            }
        } else {
            st.loaded++;
        }
        if (report_fn)
            report_fn(ctx, path, frc, msg);
    }
out:
    if (dh)
        closedir(dh);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (stats)
        *stats = st;
    return rc;
}
