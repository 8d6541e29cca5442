#include "arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct lw_arena_block {
    struct lw_arena_block *next;
    size_t size; /* usable bytes in data */
    size_t off;
    alignas(max_align_t) unsigned char data[];
};

#define ALIGN (alignof(max_align_t))

void lw_arena_init(struct lw_arena *a, size_t block_size, size_t limit)
{
    *a = (struct lw_arena){.block_size = block_size ? block_size : 4096, .limit = limit};
}

void lw_arena_deinit(struct lw_arena *a)
{
    struct lw_arena_block *b = a->head;
    while (b) {
        struct lw_arena_block *n = b->next;
        free(b);
        b = n;
    }
    a->head = NULL;
    a->used = 0;
}

void *lw_arena_alloc(struct lw_arena *a, size_t n)
{
    if (n == 0)
        n = 1;
    if (n > SIZE_MAX - ALIGN)
        return NULL;
    size_t need = (n + ALIGN - 1) & ~(ALIGN - 1);
    struct lw_arena_block *b = a->head;
    if (!b || b->size - b->off < need) {
        size_t sz = need > a->block_size ? need : a->block_size;
        if (a->limit && (sz > a->limit || a->used > a->limit - sz))
            return NULL;
        b = malloc(sizeof(*b) + sz);
        if (!b)
            return NULL;
        b->size = sz;
        b->off = 0;
        b->next = a->head;
        a->head = b;
        a->used += sz;
    }
    void *p = b->data + b->off;
    b->off += need;
    return p;
}

void *lw_arena_zalloc(struct lw_arena *a, size_t n)
{
    void *p = lw_arena_alloc(a, n);
    if (p)
        memset(p, 0, n);
    return p;
}

void *lw_arena_memdup(struct lw_arena *a, const void *p, size_t n)
{
    void *d = lw_arena_alloc(a, n);
    if (d && n)
        memcpy(d, p, n);
    return d;
}

char *lw_arena_strndup(struct lw_arena *a, const char *s, size_t n)
{
    char *d = lw_arena_alloc(a, n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

void lw_arena_reset(struct lw_arena *a)
{
    struct lw_arena_block *b = a->head;
    if (!b)
        return;
    /* Keep the oldest block (the one of default size, normally) and free the rest. */
    struct lw_arena_block *keep = b;
    while (keep->next)
        keep = keep->next;
    while (b != keep) {
        struct lw_arena_block *n = b->next;
        free(b);
        b = n;
    }
    keep->off = 0;
    a->head = keep;
    a->used = keep->size;
}
