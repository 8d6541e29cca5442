#include "hash.h"

#include "err.h"
#include "util.h"

#include <stdlib.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

static size_t cap_for(size_t n)
{
    size_t cap = 8;
    while (cap - cap / 4 < n) /* keep load <= 0.75 */
        cap *= 2;
    return cap;
}

/* Slot arrays of 2 MiB and more (131 072 slots: tables of ~100 k items and up) are mapped on
 * their own and offered to the kernel for transparent huge pages: in a table of a million items
 * every lookup is a cache miss, and with 4 KiB pages a TLB miss (a page walk) on top of it;
 * measured on the Register path with 1 M peers, the peer lookup cost ~3.5x as much without.
 * With THP off (or "never") the hint is ignored. Not under AddressSanitizer, which checks heap
 * memory only. */
#define SLOTS_MAPPED (2u << 20)
#if defined(__linux__) && !defined(LW_SANITIZED)
#define HAVE_MAPPED_SLOTS 1
#endif

/* bytes: a power of two. Zero-filled. */
static void *slots_alloc(size_t bytes)
{
#ifdef HAVE_MAPPED_SLOTS
    if (bytes >= SLOTS_MAPPED) {
        /* A huge page needs a 2 MiB-aligned range: map 2 MiB more, keep the aligned part (a
         * table of exactly 2 MiB would otherwise almost never get one). bytes is a power of two
         * of at least 2 MiB, so the tail is a whole number of pages. */
        size_t extra = SLOTS_MAPPED;
        char *raw =
            mmap(NULL, bytes + extra, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (raw == MAP_FAILED)
            return NULL;
        char *p = (char *)(((uintptr_t)raw + extra - 1) & ~(uintptr_t)(extra - 1));
        if (p > raw)
            munmap(raw, (size_t)(p - raw));
        if (raw + bytes + extra > p + bytes)
            munmap(p + bytes, (size_t)(raw + bytes + extra - (p + bytes)));
        (void)madvise(p, bytes, MADV_HUGEPAGE); /* a hint: EINVAL without THP support */
        return p;                               /* zero-filled by the kernel */
    }
#endif
    return calloc(1, bytes);
}

static void slots_free(void *slots, size_t bytes)
{
    (void)bytes; /* only the mapped case needs it */
#ifdef HAVE_MAPPED_SLOTS
    if (slots && bytes >= SLOTS_MAPPED) {
        munmap(slots, bytes);
        return;
    }
#endif
    free(slots);
}

static size_t mapped_bytes(size_t bytes)
{
#ifdef HAVE_MAPPED_SLOTS
    return bytes >= SLOTS_MAPPED ? bytes : 0;
#else
    (void)bytes;
    return 0;
#endif
}

static bool over_load(size_t count, size_t mask)
{
    return count > (mask + 1) - (mask + 1) / 4;
}

/* ---- one implementation for both slot layouts ---------------------------------------------
 * WIDE (lw_hmap): {hash, item}, 16 bytes. TAGGED (lw_cmap): the item pointer in the low 48 bits
 * and 16 hash bits (40..55: above any index bits, below the top bits the directory picks its
 * stripe with) above them, 8 bytes; a member's home slot comes from the map's hash callback.
 * The layout is a constant at every call, so each inlined function compiles to one loop per map
 * type. */
enum layout { WIDE, TAGGED };

#define C_PTR_BITS 48
#define C_PTR_MASK ((UINT64_C(1) << C_PTR_BITS) - 1)
#define C_PREFETCH 8 /* slots ahead when growing */

struct view {
    void *slots;
    size_t mask;
    lw_cmap_hash_fn hash; /* TAGGED only */
    const void *ctx;
};

static inline uint64_t c_tag(uint64_t hash)
{
    return (hash >> 40) << C_PTR_BITS;
}

static inline size_t slot_size(enum layout L)
{
    return L == WIDE ? sizeof(struct lw_hmap_slot) : sizeof(uint64_t);
}

static inline void *item_at(enum layout L, const void *slots, size_t i)
{
    if (L == WIDE)
        return ((const struct lw_hmap_slot *)slots)[i].item;
    return (void *)(uintptr_t)(((const uint64_t *)slots)[i] & C_PTR_MASK);
}

static inline bool hash_matches(enum layout L, const void *slots, size_t i, uint64_t hash)
{
    if (L == WIDE)
        return ((const struct lw_hmap_slot *)slots)[i].hash == hash;
    return (((const uint64_t *)slots)[i] & ~C_PTR_MASK) == c_tag(hash);
}

static inline void set_at(enum layout L, void *slots, size_t i, uint64_t hash, void *item)
{
    if (L == WIDE)
        ((struct lw_hmap_slot *)slots)[i] = (struct lw_hmap_slot){hash, item};
    else
        ((uint64_t *)slots)[i] = item ? c_tag(hash) | (uintptr_t)item : 0;
}

static inline void move_slot(enum layout L, void *slots, size_t to, size_t from)
{
    if (L == WIDE)
        ((struct lw_hmap_slot *)slots)[to] = ((struct lw_hmap_slot *)slots)[from];
    else
        ((uint64_t *)slots)[to] = ((uint64_t *)slots)[from];
}

static inline size_t home_of(enum layout L, const struct view *v, size_t i, size_t mask)
{
    if (L == WIDE)
        return ((const struct lw_hmap_slot *)v->slots)[i].hash & mask;
    return v->hash(item_at(L, v->slots, i), v->ctx) & mask;
}

/* The slot of the item matching key (or, with key NULL, the slot holding `item` itself), else the
 * empty slot that ends the probe run (*found false). The table must have slots. */
static inline size_t probe(enum layout L, const struct view *v, uint64_t hash, const void *key,
                           lw_hmap_eq_fn eq, const void *item, bool *found)
{
    for (size_t i = hash & v->mask;; i = (i + 1) & v->mask) {
        void *it = item_at(L, v->slots, i);
        if (!it || (key ? hash_matches(L, v->slots, i, hash) && eq(it, key) : it == item)) {
            *found = it != NULL;
            return i;
        }
    }
}

/* Moves every item into a new array of cap slots. */
static inline int regrow(enum layout L, struct view *v, size_t cap)
{
    void *slots = slots_alloc(cap * slot_size(L));
    if (!slots)
        return LW_ENOMEM;
    size_t mask = cap - 1;
    if (v->slots) {
        for (size_t i = 0; i <= v->mask; i++) {
            /* TAGGED reads each item for its hash: fetch a few slots ahead, so the reads (cache
             * misses in a large table) overlap instead of following one another. Measured on
             * the Register path from empty tables: the growth cost 10 % of the shard thread
             * without this and the peers' kept hash bits (server/peer.c). */
            if (L == TAGGED && i + C_PREFETCH <= v->mask && item_at(L, v->slots, i + C_PREFETCH))
                __builtin_prefetch(item_at(L, v->slots, i + C_PREFETCH));
            if (!item_at(L, v->slots, i))
                continue;
            size_t j = home_of(L, v, i, mask);
            while (item_at(L, slots, j))
                j = (j + 1) & mask;
            if (L == WIDE)
                ((struct lw_hmap_slot *)slots)[j] = ((struct lw_hmap_slot *)v->slots)[i];
            else
                ((uint64_t *)slots)[j] = ((uint64_t *)v->slots)[i];
        }
        slots_free(v->slots, (v->mask + 1) * slot_size(L));
    }
    v->slots = slots;
    v->mask = mask;
    return 0;
}

/* Backward-shift deletion: move later members of the probe run into the hole when their home
 * slot is not between the hole and their position, so no tombstones are needed. */
static inline void remove_at(enum layout L, const struct view *v, size_t hole)
{
    size_t i = hole;
    for (;;) {
        i = (i + 1) & v->mask;
        if (!item_at(L, v->slots, i))
            break;
        size_t home = home_of(L, v, i, v->mask);
        /* distance from home to i vs from home to hole (cyclic) */
        if (((i - home) & v->mask) >= ((i - hole) & v->mask)) {
            move_slot(L, v->slots, hole, i);
            hole = i;
        }
    }
    set_at(L, v->slots, hole, 0, NULL);
}

static inline int insert(enum layout L, struct view *v, size_t *count, uint64_t hash, void *item)
{
    if (!v->slots || over_load(*count + 1, v->mask)) {
        int rc = regrow(L, v, v->slots ? (v->mask + 1) * 2 : 8);
        if (rc)
            return rc;
    }
    bool found;
    size_t i = probe(L, v, hash, NULL, NULL, NULL, &found); /* the first empty slot */
    set_at(L, v->slots, i, hash, item);
    (*count)++;
    return 0;
}

static inline int upsert(enum layout L, struct view *v, size_t *count, uint64_t hash,
                         const void *key, lw_hmap_eq_fn eq, void *item, void **old)
{
    *old = NULL;
    if (v->slots) {
        bool found;
        size_t i = probe(L, v, hash, key, eq, NULL, &found);
        if (found) {
            *old = item_at(L, v->slots, i);
            set_at(L, v->slots, i, hash, item);
            return 0;
        }
        /* i is the empty slot ending the run: the item goes there unless the table must grow */
        if (!over_load(*count + 1, v->mask)) {
            set_at(L, v->slots, i, hash, item);
            (*count)++;
            return 0;
        }
    }
    return insert(L, v, count, hash, item);
}

static inline void *lookup(enum layout L, const struct view *v, uint64_t hash, const void *key,
                           lw_hmap_eq_fn eq)
{
    bool found = false;
    size_t i = v->slots ? probe(L, v, hash, key, eq, NULL, &found) : 0;
    return found ? item_at(L, v->slots, i) : NULL;
}

/* Removes the item matching key (or `item` itself with key NULL); returns it or NULL. */
static inline void *erase(enum layout L, const struct view *v, size_t *count, uint64_t hash,
                          const void *key, lw_hmap_eq_fn eq, const void *item)
{
    bool found = false;
    size_t i = v->slots ? probe(L, v, hash, key, eq, item, &found) : 0;
    if (!found)
        return NULL;
    void *it = item_at(L, v->slots, i);
    remove_at(L, v, i);
    (*count)--;
    return it;
}

static inline void *next_item(enum layout L, const void *slots, size_t mask, size_t *pos)
{
    if (!slots)
        return NULL;
    while (*pos <= mask) {
        void *it = item_at(L, slots, (*pos)++);
        if (it)
            return it;
    }
    return NULL;
}

/* ---- lw_hmap ------------------------------------------------------------------------------ */

static struct view h_view(const struct lw_hmap *m)
{
    return (struct view){m->slots, m->mask, NULL, NULL};
}

static void h_store(struct lw_hmap *m, const struct view *v)
{
    m->slots = v->slots;
    m->mask = v->mask;
}

size_t lw_hmap_mapped_bytes(const struct lw_hmap *m)
{
    return mapped_bytes(lw_hmap_bytes(m));
}

int lw_hmap_init(struct lw_hmap *m, size_t expected)
{
    *m = (struct lw_hmap){0};
    if (!expected)
        return 0;
    struct view v = h_view(m);
    int rc = regrow(WIDE, &v, cap_for(expected));
    h_store(m, &v);
    return rc;
}

void lw_hmap_deinit(struct lw_hmap *m)
{
    slots_free(m->slots, lw_hmap_bytes(m));
    *m = (struct lw_hmap){0};
}

void *lw_hmap_get(const struct lw_hmap *m, uint64_t hash, const void *key, lw_hmap_eq_fn eq)
{
    struct view v = h_view(m);
    return lookup(WIDE, &v, hash, key, eq);
}

int lw_hmap_put(struct lw_hmap *m, uint64_t hash, void *item)
{
    struct view v = h_view(m);
    int rc = insert(WIDE, &v, &m->count, hash, item);
    h_store(m, &v);
    return rc;
}

int lw_hmap_upsert(struct lw_hmap *m, uint64_t hash, const void *key, lw_hmap_eq_fn eq, void *item,
                   void **old)
{
    struct view v = h_view(m);
    int rc = upsert(WIDE, &v, &m->count, hash, key, eq, item, old);
    h_store(m, &v);
    return rc;
}

void *lw_hmap_del(struct lw_hmap *m, uint64_t hash, const void *key, lw_hmap_eq_fn eq)
{
    struct view v = h_view(m);
    return erase(WIDE, &v, &m->count, hash, key, eq, NULL);
}

bool lw_hmap_del_item(struct lw_hmap *m, uint64_t hash, const void *item)
{
    struct view v = h_view(m);
    return erase(WIDE, &v, &m->count, hash, NULL, NULL, item) != NULL;
}

void *lw_hmap_next(const struct lw_hmap *m, size_t *pos)
{
    return next_item(WIDE, m->slots, m->mask, pos);
}

/* ---- lw_cmap ------------------------------------------------------------------------------ */

static struct view c_view(const struct lw_cmap *m)
{
    return (struct view){m->slots, m->mask, m->hash, m->ctx};
}

static void c_store(struct lw_cmap *m, const struct view *v)
{
    m->slots = v->slots;
    m->mask = v->mask;
}

static bool c_storable(const void *item)
{
    return item && !((uintptr_t)item & ~(uintptr_t)C_PTR_MASK);
}

int lw_cmap_init(struct lw_cmap *m, size_t expected, lw_cmap_hash_fn hash, const void *ctx)
{
    *m = (struct lw_cmap){.hash = hash, .ctx = ctx};
    if (!expected)
        return 0;
    struct view v = c_view(m);
    int rc = regrow(TAGGED, &v, cap_for(expected));
    c_store(m, &v);
    return rc;
}

void lw_cmap_deinit(struct lw_cmap *m)
{
    slots_free(m->slots, lw_cmap_bytes(m));
    m->slots = NULL;
    m->mask = 0;
    m->count = 0;
}

size_t lw_cmap_mapped_bytes(const struct lw_cmap *m)
{
    return mapped_bytes(lw_cmap_bytes(m));
}

void *lw_cmap_get(const struct lw_cmap *m, uint64_t hash, const void *key, lw_hmap_eq_fn eq)
{
    struct view v = c_view(m);
    return lookup(TAGGED, &v, hash, key, eq);
}

int lw_cmap_put(struct lw_cmap *m, uint64_t hash, void *item)
{
    if (!c_storable(item))
        return LW_EINVAL;
    struct view v = c_view(m);
    int rc = insert(TAGGED, &v, &m->count, hash, item);
    c_store(m, &v);
    return rc;
}

int lw_cmap_upsert(struct lw_cmap *m, uint64_t hash, const void *key, lw_hmap_eq_fn eq, void *item,
                   void **old)
{
    *old = NULL;
    if (!c_storable(item))
        return LW_EINVAL;
    struct view v = c_view(m);
    int rc = upsert(TAGGED, &v, &m->count, hash, key, eq, item, old);
    c_store(m, &v);
    return rc;
}

void *lw_cmap_del(struct lw_cmap *m, uint64_t hash, const void *key, lw_hmap_eq_fn eq)
{
    struct view v = c_view(m);
    return erase(TAGGED, &v, &m->count, hash, key, eq, NULL);
}

bool lw_cmap_del_item(struct lw_cmap *m, uint64_t hash, const void *item)
{
    struct view v = c_view(m);
    return erase(TAGGED, &v, &m->count, hash, NULL, NULL, item) != NULL;
}

void *lw_cmap_next(const struct lw_cmap *m, size_t *pos)
{
    return next_item(TAGGED, m->slots, m->mask, pos);
}
