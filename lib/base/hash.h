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

#endif
