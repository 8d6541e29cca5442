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

size_t lw_hmap_mapped_bytes(const struct lw_hmap *m)
{
    return mapped_bytes(lw_hmap_bytes(m));
}

static bool over_load(size_t count, size_t mask)
{
    return count > (mask + 1) - (mask + 1) / 4;
}

static int resize(struct lw_hmap *m, size_t cap)
{
    struct lw_hmap_slot *slots = slots_alloc(cap * sizeof(*slots));
    if (!slots)
        return LW_ENOMEM;
    size_t mask = cap - 1;
    if (m->slots) {
        for (size_t i = 0; i <= m->mask; i++) {
            struct lw_hmap_slot s = m->slots[i];
            if (!s.item)
                continue;
            size_t j = s.hash & mask;
            while (slots[j].item)
                j = (j + 1) & mask;
            slots[j] = s;
        }
        slots_free(m->slots, lw_hmap_bytes(m));
    }
    m->slots = slots;
    m->mask = mask;
    return 0;
}

int lw_hmap_init(struct lw_hmap *m, size_t expected)
{
    *m = (struct lw_hmap){0};
    return expected ? resize(m, cap_for(expected)) : 0;
}

void lw_hmap_deinit(struct lw_hmap *m)
{
    slots_free(m->slots, lw_hmap_bytes(m));
    *m = (struct lw_hmap){0};
}

void *lw_hmap_get(const struct lw_hmap *m, uint64_t hash, const void *key, lw_hmap_eq_fn eq)
{
    if (!m->slots)
        return NULL;
    for (size_t i = hash & m->mask;; i = (i + 1) & m->mask) {
        const struct lw_hmap_slot *s = &m->slots[i];
        if (!s->item)
            return NULL;
        if (s->hash == hash && eq(s->item, key))
            return s->item;
    }
}

int lw_hmap_put(struct lw_hmap *m, uint64_t hash, void *item)
{
    if (!m->slots || over_load(m->count + 1, m->mask)) {
        int rc = resize(m, m->slots ? (m->mask + 1) * 2 : 8);
        if (rc)
            return rc;
    }
    size_t i = hash & m->mask;
    while (m->slots[i].item)
        i = (i + 1) & m->mask;
    m->slots[i] = (struct lw_hmap_slot){hash, item};
    m->count++;
    return 0;
}

int lw_hmap_upsert(struct lw_hmap *m, uint64_t hash, const void *key, lw_hmap_eq_fn eq, void *item,
                   void **old)
{
    *old = NULL;
    size_t i = 0;
    if (m->slots) {
        for (i = hash & m->mask; m->slots[i].item; i = (i + 1) & m->mask) {
            struct lw_hmap_slot *s = &m->slots[i];
            if (s->hash == hash && eq(s->item, key)) {
                *old = s->item;
                s->item = item;
                return 0;
            }
        }
        /* i is the empty slot ending the run: the item goes there unless the table must grow */
        if (!over_load(m->count + 1, m->mask)) {
            m->slots[i] = (struct lw_hmap_slot){hash, item};
            m->count++;
            return 0;
        }
    }
    return lw_hmap_put(m, hash, item);
}

/* Backward-shift deletion: move later members of the probe run into the hole when their home
 * slot is not between the hole and their position, so no tombstones are needed. */
static void remove_at(struct lw_hmap *m, size_t hole)
{
    size_t i = hole;
    for (;;) {
        i = (i + 1) & m->mask;
        struct lw_hmap_slot *s = &m->slots[i];
        if (!s->item)
            break;
        size_t home = s->hash & m->mask;
        /* distance from home to i vs from home to hole (cyclic) */
        if (((i - home) & m->mask) >= ((i - hole) & m->mask)) {
            m->slots[hole] = *s;
            hole = i;
        }
    }
    m->slots[hole] = (struct lw_hmap_slot){0};
    m->count--;
}

void *lw_hmap_del(struct lw_hmap *m, uint64_t hash, const void *key, lw_hmap_eq_fn eq)
{
    if (!m->slots)
        return NULL;
    for (size_t i = hash & m->mask;; i = (i + 1) & m->mask) {
        struct lw_hmap_slot *s = &m->slots[i];
        if (!s->item)
            return NULL;
        if (s->hash == hash && eq(s->item, key)) {
            void *item = s->item;
            remove_at(m, i);
            return item;
        }
    }
}

bool lw_hmap_del_item(struct lw_hmap *m, uint64_t hash, const void *item)
{
    if (!m->slots)
        return false;
    for (size_t i = hash & m->mask;; i = (i + 1) & m->mask) {
        struct lw_hmap_slot *s = &m->slots[i];
        if (!s->item)
            return false;
        if (s->item == item) {
            remove_at(m, i);
            return true;
        }
    }
}

void *lw_hmap_next(const struct lw_hmap *m, size_t *pos)
{
    if (!m->slots)
        return NULL;
    while (*pos <= m->mask) {
        void *it = m->slots[(*pos)++].item;
        if (it)
            return it;
    }
    return NULL;
}

/* ---- compact map ------------------------------------------------------------------------- */

#define C_PTR_BITS 48
#define C_PTR_MASK ((UINT64_C(1) << C_PTR_BITS) - 1)
#define C_PREFETCH 8 /* slots ahead when growing */

/* The 16 hash bits kept in a slot: above any index bits (a table of 2^40 slots is out of
 * reach) and below the top bits the directory picks its stripe with. */
static inline uint64_t c_tag(uint64_t hash)
{
    return (hash >> 40) << C_PTR_BITS;
}

static inline void *c_item(uint64_t slot)
{
    return (void *)(uintptr_t)(slot & C_PTR_MASK);
}

static inline bool c_match(uint64_t slot, uint64_t hash)
{
    return (slot & ~C_PTR_MASK) == c_tag(hash);
}

static int c_resize(struct lw_cmap *m, size_t cap)
{
    uint64_t *slots = slots_alloc(cap * sizeof(*slots));
    if (!slots)
        return LW_ENOMEM;
    size_t mask = cap - 1;
    if (m->slots) {
        /* Each item is read for its hash: fetch a few slots ahead, so the reads (cache misses in
         * a large table: items lie anywhere in the heap) overlap instead of following one
         * another. Measured on the Register path from empty tables: the growth cost 10 % of the
         * shard thread without. */
        for (size_t i = 0; i <= m->mask; i++) {
            if (i + C_PREFETCH <= m->mask && m->slots[i + C_PREFETCH])
                __builtin_prefetch(c_item(m->slots[i + C_PREFETCH]));
            uint64_t s = m->slots[i];
            if (!s)
                continue;
            size_t j = m->hash(c_item(s), m->ctx) & mask;
            while (slots[j])
                j = (j + 1) & mask;
            slots[j] = s;
        }
        slots_free(m->slots, lw_cmap_bytes(m));
    }
    m->slots = slots;
    m->mask = mask;
    return 0;
}

int lw_cmap_init(struct lw_cmap *m, size_t expected, lw_cmap_hash_fn hash, const void *ctx)
{
    *m = (struct lw_cmap){.hash = hash, .ctx = ctx};
    return expected ? c_resize(m, cap_for(expected)) : 0;
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
    if (!m->slots)
        return NULL;
    for (size_t i = hash & m->mask;; i = (i + 1) & m->mask) {
        uint64_t s = m->slots[i];
        if (!s)
            return NULL;
        if (c_match(s, hash) && eq(c_item(s), key))
            return c_item(s);
    }
}

int lw_cmap_put(struct lw_cmap *m, uint64_t hash, void *item)
{
    if (!item || ((uintptr_t)item & ~(uintptr_t)C_PTR_MASK))
        return LW_EINVAL;
    if (!m->slots || over_load(m->count + 1, m->mask)) {
        int rc = c_resize(m, m->slots ? (m->mask + 1) * 2 : 8);
        if (rc)
            return rc;
    }
    size_t i = hash & m->mask;
    while (m->slots[i])
        i = (i + 1) & m->mask;
    m->slots[i] = c_tag(hash) | (uintptr_t)item;
    m->count++;
    return 0;
}

int lw_cmap_upsert(struct lw_cmap *m, uint64_t hash, const void *key, lw_hmap_eq_fn eq, void *item,
                   void **old)
{
    *old = NULL;
    if (!item || ((uintptr_t)item & ~(uintptr_t)C_PTR_MASK))
        return LW_EINVAL;
    if (m->slots) {
        size_t i;
        for (i = hash & m->mask; m->slots[i]; i = (i + 1) & m->mask) {
            uint64_t s = m->slots[i];
            if (c_match(s, hash) && eq(c_item(s), key)) {
                *old = c_item(s);
                m->slots[i] = c_tag(hash) | (uintptr_t)item;
                return 0;
            }
        }
        if (!over_load(m->count + 1, m->mask)) {
            m->slots[i] = c_tag(hash) | (uintptr_t)item;
            m->count++;
            return 0;
        }
    }
    return lw_cmap_put(m, hash, item);
}

/* Backward-shift deletion as in remove_at; a member's home slot comes from its recomputed hash
 * (one callback per member of the rest of the probe run: short at load <= 0.75). */
static void c_remove_at(struct lw_cmap *m, size_t hole)
{
    size_t i = hole;
    for (;;) {
        i = (i + 1) & m->mask;
        uint64_t s = m->slots[i];
        if (!s)
            break;
        size_t home = m->hash(c_item(s), m->ctx) & m->mask;
        if (((i - home) & m->mask) >= ((i - hole) & m->mask)) {
            m->slots[hole] = s;
            hole = i;
        }
    }
    m->slots[hole] = 0;
    m->count--;
}

void *lw_cmap_del(struct lw_cmap *m, uint64_t hash, const void *key, lw_hmap_eq_fn eq)
{
    if (!m->slots)
        return NULL;
    for (size_t i = hash & m->mask;; i = (i + 1) & m->mask) {
        uint64_t s = m->slots[i];
        if (!s)
            return NULL;
        if (c_match(s, hash) && eq(c_item(s), key)) {
            c_remove_at(m, i);
            return c_item(s);
        }
    }
}

bool lw_cmap_del_item(struct lw_cmap *m, uint64_t hash, const void *item)
{
    if (!m->slots)
        return false;
    for (size_t i = hash & m->mask;; i = (i + 1) & m->mask) {
        uint64_t s = m->slots[i];
        if (!s)
            return false;
        if (c_item(s) == item) {
            c_remove_at(m, i);
            return true;
        }
    }
}

void *lw_cmap_next(const struct lw_cmap *m, size_t *pos)
{
    if (!m->slots)
        return NULL;
    while (*pos <= m->mask) {
        uint64_t s = m->slots[(*pos)++];
        if (s)
            return c_item(s);
    }
    return NULL;
}
