/* lib/lwm2m/registry.c - object registry storage and lookups (see registry.h).
 *
 * Layout: a hash map from object id to a slot holding that id's versions in a list sorted newest
 * first. Object ids in the table come from configuration (built-ins and DDF files), never from
 * the network; the network only supplies lookup keys, so an unkeyed integer mix is enough here
 * (an attacker cannot grow a probe chain). Definitions added at run time are deep-copied into the
 * registry's arena, which only grows while loading and is freed as a whole.
 */
#include "registry.h"
#include "registry_int.h"

#include "base/arena.h"
#include "base/err.h"
#include "base/hash.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>

struct version {
    const struct lw_m2m_obj_def *def;
    struct version *older;
};

struct id_slot {
    uint16_t id;
    struct version *newest;
};

struct lw_m2m_registry {
    struct lw_m2m_registry_cfg cfg;
    struct lw_arena arena;
    struct lw_hmap by_id; /* item: struct id_slot * */
    size_t count;         /* (id, version) definitions */
};

static uint64_t id_hash(uint16_t id)
{
    /* splitmix64 finaliser: the table indexes by the low bits */
    uint64_t z = (uint64_t)id + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static bool slot_eq(const void *item, const void *key)
{
    return ((const struct id_slot *)item)->id == *(const uint16_t *)key;
}

static struct id_slot *slot_get(const struct lw_m2m_registry *reg, uint16_t id)
{
    return lw_hmap_get(&reg->by_id, id_hash(id), &id, slot_eq);
}

int lw_m2m_ver_cmp(struct lw_m2m_ver a, struct lw_m2m_ver b)
{
    if (a.major != b.major)
        return a.major < b.major ? -1 : 1;
    if (a.minor != b.minor)
        return a.minor < b.minor ? -1 : 1;
    return 0;
}

static int parse_u8(const char *s, size_t len, uint8_t *out)
{
    uint64_t v;
    if (len == 0 || len > 3 || (len > 1 && s[0] == '0'))
        return LW_EMALFORMED;
    if (lw_parse_u64(s, len, &v) || v > 255)
        return LW_EMALFORMED;
    *out = (uint8_t)v;
    return 0;
}

int lw_m2m_ver_parse(const char *s, size_t len, struct lw_m2m_ver *out)
{
    const char *dot = memchr(s, '.', len);
    struct lw_m2m_ver v;
    if (!dot)
        return LW_EMALFORMED;
    size_t ml = (size_t)(dot - s);
    if (parse_u8(s, ml, &v.major) || parse_u8(dot + 1, len - ml - 1, &v.minor))
        return LW_EMALFORMED;
    *out = v;
    return 0;
}

static void apply_defaults(struct lw_m2m_registry_cfg *c)
{
    if (!c->max_file_size)
        c->max_file_size = 1u << 20;
    if (!c->max_objects)
        c->max_objects = 65535;
    if (!c->max_file_objects)
        c->max_file_objects = 64;
    if (!c->max_resources)
        c->max_resources = 4096;
    if (!c->max_string)
        c->max_string = 512;
    if (!c->max_depth)
        c->max_depth = 16;
}

const struct lw_m2m_registry_cfg *lw__m2m_registry_cfg(const struct lw_m2m_registry *reg)
{
    return &reg->cfg;
}

/* Links def (already owned or const) under its id; 0 or LW_ENOMEM. Conflicts were checked. */
static int insert(struct lw_m2m_registry *reg, const struct lw_m2m_obj_def *def)
{
    struct id_slot *slot = slot_get(reg, def->id);
    if (!slot) {
        slot = lw_arena_zalloc(&reg->arena, sizeof(*slot));
        if (!slot)
            return LW_ENOMEM;
        slot->id = def->id;
        if (lw_hmap_put(&reg->by_id, id_hash(def->id), slot))
            return LW_ENOMEM;
    }
    struct version **pp = &slot->newest;
    while (*pp && lw_m2m_ver_cmp((*pp)->def->ver, def->ver) > 0)
        pp = &(*pp)->older;
    if (*pp && lw_m2m_ver_cmp((*pp)->def->ver, def->ver) == 0) {
        (*pp)->def = def; /* override (allowed by the caller) */
        return 0;
    }
    struct version *v = lw_arena_zalloc(&reg->arena, sizeof(*v));
    if (!v)
        return LW_ENOMEM;
    v->def = def;
    v->older = *pp;
    *pp = v;
    reg->count++;
    return 0;
}

struct lw_m2m_registry *lw_m2m_registry_new(const struct lw_m2m_registry_cfg *cfg)
{
    struct lw_m2m_registry *reg = calloc(1, sizeof(*reg));
    if (!reg)
        return NULL;
    if (cfg)
        reg->cfg = *cfg;
    apply_defaults(&reg->cfg);
    lw_arena_init(&reg->arena, 16384, 0);
    if (lw_hmap_init(&reg->by_id, 64))
        goto fail;
    if (!reg->cfg.no_builtin) {
        size_t n;
        const struct lw_m2m_obj_def *const *core = lw_m2m_core_objects(&n);
        for (size_t i = 0; i < n; i++)
            if (insert(reg, core[i]))
                goto fail;
    }
    return reg;
fail:
    lw_m2m_registry_free(reg);
    return NULL;
}

void lw_m2m_registry_free(struct lw_m2m_registry *reg)
{
    if (!reg)
        return;
    lw_hmap_deinit(&reg->by_id);
    lw_arena_deinit(&reg->arena);
    free(reg);
}

static int validate(const struct lw_m2m_registry *reg, const struct lw_m2m_obj_def *d)
{
    if (d->id > LW_M2M_ID_MAX || !d->name || (d->nres && !d->res))
        return LW_EINVAL;
    if (d->nres > reg->cfg.max_resources)
        return LW_ELIMIT;
    for (size_t i = 0; i < d->nres; i++) {
        const struct lw_m2m_res_def *r = &d->res[i];
        if (r->id > LW_M2M_ID_MAX || !r->name || r->ops > (LW_M2M_OP_RW | LW_M2M_OP_E))
            return LW_EINVAL;
        if ((unsigned)r->type > LW_M2M_T_CORELNK)
            return LW_EINVAL;
        if ((r->ops & LW_M2M_OP_E) ? r->type != LW_M2M_T_NONE : r->type == LW_M2M_T_NONE)
            return LW_EINVAL;
    }
    /* duplicate ids: an 8 KiB bitmap over the id space keeps this O(n) */
    uint64_t seen[65536 / 64] = {0};
    for (size_t i = 0; i < d->nres; i++) {
        uint16_t id = d->res[i].id;
        if (seen[id / 64] & (1ull << (id % 64)))
            return LW_EINVAL;
        seen[id / 64] |= 1ull << (id % 64);
    }
    return 0;
}

static int res_cmp(const void *a, const void *b)
{
    const struct lw_m2m_res_def *x = a, *y = b;
    return (int)x->id - (int)y->id;
}

static const char *dup_str(struct lw_arena *a, const char *s, bool *oom)
{
    if (!s)
        return NULL;
    char *d = lw_arena_strndup(a, s, strlen(s));
    if (!d)
        *oom = true;
    return d;
}

/* Deep copy into the registry arena, resources sorted by id. NULL on OOM. */
static const struct lw_m2m_obj_def *copy_def(struct lw_m2m_registry *reg,
                                             const struct lw_m2m_obj_def *d)
{
    bool oom = false;
    struct lw_m2m_obj_def *c = lw_arena_alloc(&reg->arena, sizeof(*c));
    struct lw_m2m_res_def *res =
        d->nres ? lw_arena_alloc(&reg->arena, d->nres * sizeof(*res)) : NULL;
    if (!c || (d->nres && !res))
        return NULL;
    *c = *d;
    c->builtin = false;
    c->name = dup_str(&reg->arena, d->name, &oom);
    c->urn = dup_str(&reg->arena, d->urn, &oom);
    for (size_t i = 0; i < d->nres; i++) {
        res[i] = d->res[i];
        res[i].name = dup_str(&reg->arena, d->res[i].name, &oom);
        res[i].range = dup_str(&reg->arena, d->res[i].range, &oom);
        res[i].units = dup_str(&reg->arena, d->res[i].units, &oom);
    }
    if (d->nres)
        qsort(res, d->nres, sizeof(*res), res_cmp);
    c->res = res;
    return oom ? NULL : c;
}

int lw__m2m_registry_add_many(struct lw_m2m_registry *reg, const struct lw_m2m_obj_def *const *defs,
                              size_t n, size_t *bad)
{
    int rc = 0;
    size_t fresh = 0;
    for (size_t i = 0; i < n; i++) {
        *bad = i;
        if ((rc = validate(reg, defs[i])))
            goto out;
        for (size_t j = 0; j < i; j++) {
            if (defs[j]->id == defs[i]->id && !lw_m2m_ver_cmp(defs[j]->ver, defs[i]->ver)) {
                rc = LW_EEXIST;
                goto out;
            }
        }
        if (lw_m2m_registry_find(reg, defs[i]->id, &defs[i]->ver)) {
            if (!reg->cfg.allow_override) {
                rc = LW_EEXIST;
                goto out;
            }
        } else {
            fresh++;
        }
    }
    if (reg->count + fresh > reg->cfg.max_objects) {
        rc = LW_ELIMIT;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        *bad = i;
        const struct lw_m2m_obj_def *c = copy_def(reg, defs[i]);
        if (!c || insert(reg, c)) {
            rc = LW_ENOMEM;
            goto out;
        }
    }
out:
    return rc;
}

int lw_m2m_registry_add(struct lw_m2m_registry *reg, const struct lw_m2m_obj_def *def)
{
    size_t bad;
    return lw__m2m_registry_add_many(reg, &def, 1, &bad);
}

const struct lw_m2m_obj_def *lw_m2m_registry_find(const struct lw_m2m_registry *reg, uint16_t id,
                                                  const struct lw_m2m_ver *ver)
{
    const struct id_slot *slot = slot_get(reg, id);
    if (!slot)
        return NULL;
    if (!ver)
        return slot->newest->def;
    for (const struct version *v = slot->newest; v; v = v->older)
        if (!lw_m2m_ver_cmp(v->def->ver, *ver))
            return v->def;
    return NULL;
}

const struct lw_m2m_obj_def *lw_m2m_registry_resolve(const struct lw_m2m_registry *reg, uint16_t id,
                                                     const struct lw_m2m_ver *ver)
{
    const struct id_slot *slot = slot_get(reg, id);
    if (!slot)
        return NULL;
    if (!ver)
        return slot->newest->def;
    const struct lw_m2m_obj_def *same_major = NULL;
    for (const struct version *v = slot->newest; v; v = v->older) {
        if (!lw_m2m_ver_cmp(v->def->ver, *ver))
            return v->def;
        if (!same_major && v->def->ver.major == ver->major)
            same_major = v->def;
    }
    return same_major ? same_major : slot->newest->def;
}

size_t lw_m2m_registry_count(const struct lw_m2m_registry *reg)
{
    return reg->count;
}

static int def_ptr_cmp(const void *a, const void *b)
{
    const struct lw_m2m_obj_def *x = *(const struct lw_m2m_obj_def *const *)a;
    const struct lw_m2m_obj_def *y = *(const struct lw_m2m_obj_def *const *)b;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    return lw_m2m_ver_cmp(x->ver, y->ver);
}

int lw_m2m_registry_foreach(const struct lw_m2m_registry *reg,
                            int (*fn)(void *ctx, const struct lw_m2m_obj_def *def), void *ctx)
{
    int rc = 0;
    size_t n = 0, pos = 0;
    const struct id_slot *slot;
    const struct lw_m2m_obj_def **all = malloc((reg->count ? reg->count : 1) * sizeof(*all));
    if (!all)
        return LW_ENOMEM;
    while ((slot = lw_hmap_next(&reg->by_id, &pos)))
        for (const struct version *v = slot->newest; v && n < reg->count; v = v->older)
            all[n++] = v->def;
    qsort(all, n, sizeof(*all), def_ptr_cmp);
    for (size_t i = 0; i < n; i++)
        if ((rc = fn(ctx, all[i])))
            goto out;
out:
    free(all);
    return rc;
}

const struct lw_m2m_res_def *lw_m2m_obj_res(const struct lw_m2m_obj_def *obj, uint16_t res_id)
{
    size_t lo = 0, hi = obj->nres;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint16_t id = obj->res[mid].id;
        if (id == res_id)
            return &obj->res[mid];
        if (id < res_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const struct lw_m2m_res_def *lw_m2m_registry_res(const struct lw_m2m_registry *reg,
                                                 const struct lw_m2m_path *p)
{
    if (p->len < 3 || p->len > 4)
        return NULL;
    const struct lw_m2m_obj_def *obj = lw_m2m_registry_find(reg, p->id[0], NULL);
    return obj ? lw_m2m_obj_res(obj, p->id[2]) : NULL;
}

enum lw_m2m_type lw_m2m_registry_type_of(void *ctx, const struct lw_m2m_path *p)
{
    const struct lw_m2m_res_def *r = lw_m2m_registry_res(ctx, p);
    if (!r || (p->len == 4 && !r->multiple))
        return LW_M2M_T_NONE;
    return r->type;
}

struct lw_m2m_types lw_m2m_registry_types(const struct lw_m2m_registry *reg)
{
    /* type_of only reads through ctx; the cast drops const for the generic void * slot */
    return (struct lw_m2m_types){lw_m2m_registry_type_of, (void *)(uintptr_t)reg};
}
