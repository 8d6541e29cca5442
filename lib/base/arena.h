/* lib/base/arena.h - bump allocator in chained blocks, reset as a whole (the per-datagram arena:
 * parsers and handlers allocate scratch from it, the shard resets it after each datagram).
 * Allocation is O(1); reset keeps the first block and frees the others. Not thread-safe. */
#ifndef LW_BASE_ARENA_H
#define LW_BASE_ARENA_H

#include <stddef.h>

struct lw_arena_block;

struct lw_arena {
    struct lw_arena_block *head; /* current block (newest) */
    size_t block_size;           /* default size of new blocks */
    size_t limit;                /* total bytes this arena may hold; 0 = unlimited */
    size_t used;                 /* bytes held in all blocks */
};

/* block_size 0 means 4096. limit 0 means unlimited. */
void lw_arena_init(struct lw_arena *a, size_t block_size, size_t limit);
/* Frees every block. */
void lw_arena_deinit(struct lw_arena *a);
/* Returns owned-by-arena memory aligned to max_align_t, or NULL when the limit is reached or
 * malloc fails. Valid until lw_arena_reset / lw_arena_deinit. */
void *lw_arena_alloc(struct lw_arena *a, size_t n);
void *lw_arena_zalloc(struct lw_arena *a, size_t n);
/* Copies n bytes into the arena (NUL-terminated when used as a string via lw_arena_strndup). */
void *lw_arena_memdup(struct lw_arena *a, const void *p, size_t n);
char *lw_arena_strndup(struct lw_arena *a, const char *s, size_t n);
/* Releases everything allocated; keeps one block for reuse. */
void lw_arena_reset(struct lw_arena *a);

#endif
