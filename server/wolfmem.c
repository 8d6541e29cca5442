/* server/wolfmem.c - wolfSSL's allocator: per-thread size-class slabs on 64 KB mmap'd spans
 * (see wolfmem.h for why). A span starts with its header and is aligned to its size, so the
 * span of any pointer is the pointer rounded down; large allocations are mmaps with the same
 * header, marked CLS_LARGE. */
#include "wolfmem.h"

#include "base/util.h"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/memory.h>

#include <assert.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define SPAN       ((size_t)64 * 1024)
#define HDR        64 /* header bytes before the first object (keeps 16-byte alignment) */
#define MAX_SMALL  8192
#define KEEP_EMPTY 4 /* empty spans a heap keeps mapped for reuse until wolfmem_trim */
#define CLS_LARGE  0xffff

static const uint32_t cls_size[] = {
    16,  32,  48,  64,   80,   96,   112,  128,  160,  192,  224,  256,  320,  384,  448,  512,
    640, 768, 896, 1024, 1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096, 5120, 6144, 7168, 8192,
};
#define NCLS (sizeof(cls_size) / sizeof(cls_size[0]))

struct heap;

struct span {
    struct heap *heap;
    struct span *next, *prev; /* in the heap's avail list of its class, or its empty list */
    void *free;               /* freed objects (each holds the next pointer) */
    char *bump, *end;         /* never-used objects: [bump, end) */
    size_t map_len;           /* large: length of the mapping */
    uint32_t used;
    uint16_t cls;
    uint8_t listed; /* 0: in no list (full), 1: avail, 2: empty */
};
static_assert(sizeof(struct span) <= HDR, "span header larger than HDR");

struct heap {
    pthread_mutex_t mu;
    struct span *avail[NCLS];
    struct span *empty;
    unsigned n_empty;
    size_t spans, large, inuse;
    struct heap *next_heap;
};

static struct {
    pthread_mutex_t mu; /* guards the heap list */
    struct heap *heaps;
} G = {.mu = PTHREAD_MUTEX_INITIALIZER};

static __thread struct heap *tl_heap;

static struct heap *my_heap(void)
{
    if (tl_heap)
        return tl_heap;
    /* Heaps live until the process ends (threads are the fixed set of shards and loops). */
    struct heap *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    pthread_mutex_init(&h->mu, NULL);
    pthread_mutex_lock(&G.mu);
    h->next_heap = G.heaps;
    G.heaps = h;
    pthread_mutex_unlock(&G.mu);
    tl_heap = h;
    return h;
}

static unsigned class_of(size_t n)
{
    if (n <= 128)
        return n ? (unsigned)((n + 15) / 16 - 1) : 0;
    unsigned i = 8;
    while (cls_size[i] < n)
        i++;
    return i;
}

/* len bytes of fresh zero pages aligned to SPAN, or NULL. */
static void *map_aligned(size_t len)
{
    char *p = mmap(NULL, len + SPAN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    char *a = (char *)(((uintptr_t)p + SPAN - 1) & ~(uintptr_t)(SPAN - 1));
    if (a > p)
        munmap(p, (size_t)(a - p));
    size_t tail = (size_t)(p + len + SPAN - (a + len));
    if (tail)
        munmap(a + len, tail);
    return a;
}

static void list_add(struct span **head, struct span *s, uint8_t which)
{
    s->prev = NULL;
    s->next = *head;
    if (*head)
        (*head)->prev = s;
    *head = s;
    s->listed = which;
}

static void list_del(struct span **head, struct span *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        *head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->next = s->prev = NULL;
    s->listed = 0;
}

static void span_reset(struct span *s, unsigned cls)
{
    s->cls = (uint16_t)cls;
    s->free = NULL;
    s->used = 0;
    s->bump = (char *)s + HDR;
    s->end = (char *)s + HDR + ((SPAN - HDR) / cls_size[cls]) * cls_size[cls];
}

static void *alloc_large(struct heap *h, size_t n)
{
    if (n > SIZE_MAX - HDR - SPAN - 4096)
        return NULL;
    size_t len = (HDR + n + 4095) & ~(size_t)4095;
    struct span *s = map_aligned(len);
    if (!s)
        return NULL;
    s->heap = h;
    s->cls = CLS_LARGE;
    s->map_len = len;
    pthread_mutex_lock(&h->mu);
    h->large++;
    pthread_mutex_unlock(&h->mu);
    return (char *)s + HDR;
}

void *wolfmem_malloc(size_t n)
{
    struct heap *h = my_heap();
    void *p = NULL;
    if (!h)
        return NULL;
    if (n > MAX_SMALL)
        return alloc_large(h, n);
    unsigned cls = class_of(n);
    size_t sz = cls_size[cls];
    pthread_mutex_lock(&h->mu);
    struct span *s = h->avail[cls];
    if (!s) {
        s = h->empty;
        if (s) {
            list_del(&h->empty, s);
            h->n_empty--;
        } else {
            s = map_aligned(SPAN);
            if (!s)
                goto out;
            s->heap = h;
            h->spans++;
        }
        span_reset(s, cls);
        list_add(&h->avail[cls], s, 1);
    }
    if (s->free) {
        p = s->free;
        s->free = *(void **)p;
    } else {
        p = s->bump;
        s->bump += sz;
    }
    s->used++;
    h->inuse += sz;
    if (!s->free && s->bump + sz > s->end)
        list_del(&h->avail[cls], s); /* full */
out:
    pthread_mutex_unlock(&h->mu);
    return p;
}

static struct span *span_of(const void *p)
{
    return (struct span *)((uintptr_t)p & ~(uintptr_t)(SPAN - 1));
}

void wolfmem_free(void *p)
{
    if (!p)
        return;
    struct span *s = span_of(p);
    struct heap *h = s->heap;
    if (s->cls == CLS_LARGE) {
        pthread_mutex_lock(&h->mu);
        h->large--;
        pthread_mutex_unlock(&h->mu);
        munmap(s, s->map_len);
        return;
    }
    pthread_mutex_lock(&h->mu);
    *(void **)p = s->free;
    s->free = p;
    s->used--;
    h->inuse -= cls_size[s->cls];
    if (s->used == 0) {
        if (s->listed == 1)
            list_del(&h->avail[s->cls], s);
        if (h->n_empty < KEEP_EMPTY) {
            list_add(&h->empty, s, 2);
            h->n_empty++;
        } else {
            h->spans--;
            munmap(s, SPAN); /* the whole span goes back to the kernel */
        }
    } else if (s->listed == 0) {
        list_add(&h->avail[s->cls], s, 1);
    }
    pthread_mutex_unlock(&h->mu);
}

void *wolfmem_realloc(void *p, size_t n)
{
    if (!p)
        return wolfmem_malloc(n);
    if (n == 0) {
        wolfmem_free(p);
        return NULL;
    }
    struct span *s = span_of(p);
    size_t cap = s->cls == CLS_LARGE ? s->map_len - HDR : cls_size[s->cls];
    if (n <= cap && (s->cls == CLS_LARGE || n > cap / 2))
        return p;
    void *q = wolfmem_malloc(n);
    if (!q)
        return NULL;
    memcpy(q, p, n < cap ? n : cap);
    wolfmem_free(p);
    return q;
}

void wolfmem_trim(void)
{
    struct heap *h = tl_heap;
    if (!h)
        return;
    pthread_mutex_lock(&h->mu);
    while (h->empty) {
        struct span *s = h->empty;
        list_del(&h->empty, s);
        h->n_empty--;
        h->spans--;
        munmap(s, SPAN);
    }
    pthread_mutex_unlock(&h->mu);
}

void wolfmem_stats(struct wolfmem_stats *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&G.mu);
    for (struct heap *h = G.heaps; h; h = h->next_heap) {
        pthread_mutex_lock(&h->mu);
        out->spans += h->spans;
        out->large += h->large;
        out->bytes_inuse += h->inuse;
        pthread_mutex_unlock(&h->mu);
    }
    pthread_mutex_unlock(&G.mu);
}

#ifdef LW_SANITIZED
#define WOLFMEM_SANITIZED 1
#endif

bool wolfmem_install(void)
{
#ifdef WOLFMEM_SANITIZED
    return false;
#else
    const char *e = getenv("LW_WOLFMEM"); /* "off": glibc (valgrind runs, comparisons) */
    if (e && strcmp(e, "off") == 0)
        return false;
    return wolfSSL_SetAllocators(wolfmem_malloc, wolfmem_free, wolfmem_realloc) == 0;
#endif
}
