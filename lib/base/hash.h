/* lib/base/hash.h - open-addressing hash table of item pointers (linear probing, backward-shift
 * deletion, no tombstones). The caller computes the 64-bit hash (use lw_siphash for keys that come
 * from the network) and supplies an equality callback, so the table stores only (hash, item):
 * 16 bytes per slot, load factor <= 0.75. Lookups and removals are O(1) expected; growth rehashes
 * the whole table at once (O(n), amortised O(1) per insert). Slot arrays of 2 MiB and more are
 * mapped on their own with a transparent-huge-page hint (hash.c says why). Not thread-safe.
 */
#ifndef LW_BASE_HASH_H
#define LW_BASE_HASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct lw_hmap_slot {
    uint64_t hash;
    void *item; /* NULL = empty */
};

struct lw_hmap {
    struct lw_hmap_slot *slots;
    size_t mask; /* capacity - 1 (capacity is a power of two), or 0 before the first insert */
    size_t count;
};

/* true when item matches key. */
typedef bool (*lw_hmap_eq_fn)(const void *item, const void *key);

/* Reserves room for `expected` items (0: allocate lazily). 0 or LW_ENOMEM. */
int lw_hmap_init(struct lw_hmap *m, size_t expected);
void lw_hmap_deinit(struct lw_hmap *m);
static inline size_t lw_hmap_count(const struct lw_hmap *m)
{
    return m->count;
}
/* Bytes of slot memory (for memory accounting). */
static inline size_t lw_hmap_bytes(const struct lw_hmap *m)
{
    return m->slots ? (m->mask + 1) * sizeof(struct lw_hmap_slot) : 0;
}

/* Bytes of slot memory mapped outside the malloc heap (the 2 MiB-and-up case), else 0: what a
 * heap statistic such as mallinfo2 does not see. */
size_t lw_hmap_mapped_bytes(const struct lw_hmap *m);

/* Returns the matching item (borrowed) or NULL. */
void *lw_hmap_get(const struct lw_hmap *m, uint64_t hash, const void *key, lw_hmap_eq_fn eq);
/* Inserts item (borrowed; must be non-NULL). Does not check for duplicates: look up first.
 * 0 or LW_ENOMEM (table unchanged). */
int lw_hmap_put(struct lw_hmap *m, uint64_t hash, void *item);
/* Inserts item (borrowed, non-NULL) or, when an item matching key is present, puts item in its
 * place: one probe run where lw_hmap_del + lw_hmap_put take two. *old receives the item replaced
 * (borrowed back to the caller) or NULL. 0 or LW_ENOMEM (only when inserting; table unchanged). */
int lw_hmap_upsert(struct lw_hmap *m, uint64_t hash, const void *key, lw_hmap_eq_fn eq, void *item,
                   void **old);
/* Removes and returns the matching item, or NULL. */
void *lw_hmap_del(struct lw_hmap *m, uint64_t hash, const void *key, lw_hmap_eq_fn eq);
/* Removes this exact item (pointer identity); true when it was present. */
bool lw_hmap_del_item(struct lw_hmap *m, uint64_t hash, const void *item);
/* Iteration: `size_t pos = 0; while ((it = lw_hmap_next(m, &pos)))`. Do not insert or delete
 * while iterating. */
void *lw_hmap_next(const struct lw_hmap *m, size_t *pos);

/* ---- compact map: 8 bytes per slot -------------------------------------------------------
 * The same table (linear probing, load <= 0.75, backward-shift deletion) for the two tables that
 * hold one slot per device, the peer table of a shard and the endpoint directory: half the slot
 * memory of lw_hmap (at 1 M devices, 16 MiB instead of 32 MiB per table; most of a table's cost
 * per device). A slot is the item pointer in its low 48 bits and 16 bits of the hash (bits
 * 40..55) above them, so a lookup still dereferences only items whose hash bits match (a false
 * match once in 65 536 probes). The rest of the hash is not kept: growth and deletion recompute
 * it with the table's hash callback. Items must be heap or static addresses below 2^48, which
 * user-space pointers are on Linux x86-64 and arm64 (48-bit or 52/57-bit address spaces hand out
 * addresses above 2^47 only to mappings that ask for them); lw_cmap_put refuses any other with
 * LW_EINVAL rather than corrupt the table. The callback and its context must outlive the map. */
typedef uint64_t (*lw_cmap_hash_fn)(const void *item, const void *ctx);

struct lw_cmap {
    uint64_t *slots;
    size_t mask; /* capacity - 1, or 0 before the first insert */
    size_t count;
    lw_cmap_hash_fn hash;
    const void *ctx;
};

/* Like lw_hmap_init; hash(item, ctx) must return the hash the item was inserted under. */
int lw_cmap_init(struct lw_cmap *m, size_t expected, lw_cmap_hash_fn hash, const void *ctx);
void lw_cmap_deinit(struct lw_cmap *m);
static inline size_t lw_cmap_count(const struct lw_cmap *m)
{
    return m->count;
}
static inline size_t lw_cmap_bytes(const struct lw_cmap *m)
{
    return m->slots ? (m->mask + 1) * sizeof(uint64_t) : 0;
}
size_t lw_cmap_mapped_bytes(const struct lw_cmap *m);
/* The slot a lookup of hash starts at, for a prefetch hint (NULL while the table is empty). */
static inline const void *lw_cmap_home(const struct lw_cmap *m, uint64_t hash)
{
    return m->slots ? &m->slots[hash & m->mask] : NULL;
}
/* As the lw_hmap functions of the same names. lw_cmap_put and lw_cmap_upsert also return
 * LW_EINVAL for an item at an address of 2^48 or above. */
void *lw_cmap_get(const struct lw_cmap *m, uint64_t hash, const void *key, lw_hmap_eq_fn eq);
int lw_cmap_put(struct lw_cmap *m, uint64_t hash, void *item);
int lw_cmap_upsert(struct lw_cmap *m, uint64_t hash, const void *key, lw_hmap_eq_fn eq, void *item,
                   void **old);
void *lw_cmap_del(struct lw_cmap *m, uint64_t hash, const void *key, lw_hmap_eq_fn eq);
bool lw_cmap_del_item(struct lw_cmap *m, uint64_t hash, const void *item);
void *lw_cmap_next(const struct lw_cmap *m, size_t *pos);

#endif
