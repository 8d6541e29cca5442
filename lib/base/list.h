/* lib/base/list.h - intrusive circular doubly-linked list (embed struct lw_list in the element,
 * get it back with lw_container_of). O(1) insert and remove. Not thread-safe. */
#ifndef LW_BASE_LIST_H
#define LW_BASE_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct lw_list {
    struct lw_list *next, *prev;
};

static inline void lw_list_init(struct lw_list *h)
{
    h->next = h->prev = h;
}
static inline bool lw_list_empty(const struct lw_list *h)
{
    return h->next == h;
}
/* A node that is not on a list (after lw_list_init or lw_list_remove) is linked to itself. */
static inline bool lw_list_linked(const struct lw_list *n)
{
    return n->next != n && n->next;
}

static inline void lw__list_insert(struct lw_list *n, struct lw_list *prev, struct lw_list *next)
{
    n->prev = prev;
    n->next = next;
    prev->next = n;
    next->prev = n;
}
static inline void lw_list_push_back(struct lw_list *h, struct lw_list *n)
{
    lw__list_insert(n, h->prev, h);
}
static inline void lw_list_push_front(struct lw_list *h, struct lw_list *n)
{
    lw__list_insert(n, h, h->next);
}
static inline void lw_list_remove(struct lw_list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n->prev = n;
}
static inline struct lw_list *lw_list_first(const struct lw_list *h)
{
    return lw_list_empty(h) ? NULL : h->next;
}
static inline struct lw_list *lw_list_pop_front(struct lw_list *h)
{
    struct lw_list *n = lw_list_first(h);
    if (n)
        lw_list_remove(n);
    return n;
}
/* Moves every node of src to the end of dst; src becomes empty. */
static inline void lw_list_splice_back(struct lw_list *dst, struct lw_list *src)
{
    if (lw_list_empty(src))
        return;
    src->next->prev = dst->prev;
    dst->prev->next = src->next;
    src->prev->next = dst;
    dst->prev = src->prev;
    lw_list_init(src);
}

#define lw_list_foreach(it, h) for (struct lw_list *it = (h)->next; it != (h); it = it->next)
/* Safe against removal of `it` inside the loop body. */
#define lw_list_foreach_safe(it, h)                                      \
    for (struct lw_list *it = (h)->next, *it##_nx = it->next; it != (h); \
         it = it##_nx, it##_nx = it->next)

#endif
