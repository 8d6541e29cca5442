/* Endpoint directory: 8 stripes, each a mutex and a compact open-addressing map of node pointers
 * (lw_cmap: 8 bytes per slot) keyed by SipHash of the name (random key per process, so a device
 * cannot choose colliding names). A stripe is chosen from the hash's top bits, the slot from its
 * low bits. Why 8: a stripe's lock is held for one lookup (~0.1 us), so even 16 shards
 * registering at 100 k/s each keep a stripe busy ~2 % of the time; and fewer, larger maps reach
 * the 2 MiB at which the map asks for huge pages sooner (at ~800 k names instead of ~3 M with 32
 * stripes): a Register's directory lookup at 1 M names otherwise pays a TLB miss on top of its
 * cache miss. */
#include "dir.h"

#include "base/err.h"
#include "base/hash.h"
#include "base/util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#define NSTRIPES 8

struct stripe {
    pthread_mutex_t lock;
    struct lw_cmap map;
} __attribute__((aligned(64)));

static struct stripe stripes[NSTRIPES];
static uint8_t key[16];
static _Atomic size_t count;
static bool inited;

struct name_key {
    const char *name;
    size_t len;
};

static bool node_eq(const void *item, const void *k)
{
    const struct dir_node *n = item;
    const struct name_key *nk = k;
    return n->len == nk->len && memcmp(n->name, nk->name, nk->len) == 0;
}

static uint64_t name_hash(const char *name, size_t len)
{
    return lw_siphash(key, name, len);
}

static uint64_t node_hash(const void *item, const void *ctx)
{
    const struct dir_node *n = item;
    (void)ctx;
    return name_hash(n->name, n->len);
}

static struct stripe *stripe_of(uint64_t h)
{
    return &stripes[h >> 61];
}

int dir_init(void)
{
    if (inited)
        return 0;
    if (lw_random(key, sizeof(key)) != 0)
        memset(key, 0x5a, sizeof(key)); /* getrandom cannot fail on Linux >= 3.17 */
    for (size_t i = 0; i < NSTRIPES; i++) {
        pthread_mutex_init(&stripes[i].lock, NULL);
        if (lw_cmap_init(&stripes[i].map, 0, node_hash, NULL) != 0)
            return LW_ENOMEM;
    }
    atomic_store(&count, 0);
    inited = true;
    return 0;
}

void dir_deinit(void)
{
    if (!inited)
        return;
    for (size_t i = 0; i < NSTRIPES; i++) {
        lw_cmap_deinit(&stripes[i].map);
        pthread_mutex_destroy(&stripes[i].lock);
    }
    inited = false;
}

static struct dir_ref ref_of(const struct dir_node *n)
{
    return (struct dir_ref){n->id, n->gen, n->shard};
}

uint64_t dir_hash(const char *name, size_t len)
{
    return name_hash(name, len);
}

void dir_prefetch(uint64_t h)
{
    struct stripe *s = stripe_of(h);
    pthread_mutex_lock(&s->lock); /* another shard may resize the stripe meanwhile */
    const void *slot = lw_cmap_home(&s->map, h);
    pthread_mutex_unlock(&s->lock);
    if (slot) /* a stale address after a resize is harmless: a prefetch never faults */
        __builtin_prefetch(slot);
}

int dir_put(struct dir_node *n, struct dir_ref *old)
{
    return dir_put_h(n, name_hash(n->name, n->len), old);
}

int dir_put_h(struct dir_node *n, uint64_t h, struct dir_ref *old)
{
    struct name_key nk = {n->name, n->len};
    struct stripe *s = stripe_of(h);
    int rc;
    void *prev = NULL;
    pthread_mutex_lock(&s->lock);
    rc = lw_cmap_upsert(&s->map, h, &nk, node_eq, n, &prev);
    if (rc == 0 && prev && old)
        *old = ref_of(prev);
    pthread_mutex_unlock(&s->lock);
    if (rc != 0)
        return rc;
    if (!prev)
        atomic_fetch_add_explicit(&count, 1, memory_order_relaxed);
    return prev ? 1 : 0;
}

bool dir_remove(struct dir_node *n)
{
    uint64_t h = name_hash(n->name, n->len);
    struct stripe *s = stripe_of(h);
    pthread_mutex_lock(&s->lock);
    bool found = lw_cmap_del_item(&s->map, h, n);
    pthread_mutex_unlock(&s->lock);
    if (found)
        atomic_fetch_sub_explicit(&count, 1, memory_order_relaxed);
    return found;
}

void dir_set_shard(struct dir_node *n, unsigned shard)
{
    struct stripe *s = stripe_of(name_hash(n->name, n->len));
    pthread_mutex_lock(&s->lock);
    n->shard = (uint8_t)shard;
    pthread_mutex_unlock(&s->lock);
}

int dir_lookup(const char *name, size_t len, struct dir_ref *out)
{
    uint64_t h = name_hash(name, len);
    struct name_key nk = {name, len};
    struct stripe *s = stripe_of(h);
    pthread_mutex_lock(&s->lock);
    const struct dir_node *n = lw_cmap_get(&s->map, h, &nk, node_eq);
    if (n)
        *out = ref_of(n);
    pthread_mutex_unlock(&s->lock);
    return n ? 0 : LW_ENOENT;
}

/* ---- restore at start ---------------------------------------------------------------------- */

void dir_reserve(size_t n)
{
    /* The stripe is chosen by SipHash bits, so each gets about n / NSTRIPES names; 1/8 slack
     * covers the spread (a fuller stripe simply grows as it would have). */
    size_t per = n / NSTRIPES + n / (NSTRIPES * 8) + 16;
    for (size_t i = 0; i < NSTRIPES; i++) {
        struct stripe *s = &stripes[i];
        struct lw_cmap m;
        pthread_mutex_lock(&s->lock);
        if (lw_cmap_count(&s->map) == 0 && lw_cmap_init(&m, per, node_hash, NULL) == 0) {
            lw_cmap_deinit(&s->map);
            s->map = m;
        }
        pthread_mutex_unlock(&s->lock);
    }
}

int dir_put_new(struct dir_node *n)
{
    uint64_t h = name_hash(n->name, n->len);
    struct name_key nk = {n->name, n->len};
    struct stripe *s = stripe_of(h);
    int rc = LW_EEXIST;
    pthread_mutex_lock(&s->lock);
    if (!lw_cmap_get(&s->map, h, &nk, node_eq)) {
        rc = lw_cmap_put(&s->map, h, n);
        if (rc == 0)
            atomic_fetch_add_explicit(&count, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

size_t dir_mapped_bytes(void)
{
    size_t total = 0;
    for (size_t i = 0; i < NSTRIPES; i++) {
        pthread_mutex_lock(&stripes[i].lock);
        total += lw_cmap_mapped_bytes(&stripes[i].map);
        pthread_mutex_unlock(&stripes[i].lock);
    }
    return total;
}

size_t dir_count(void)
{
    return atomic_load_explicit(&count, memory_order_relaxed);
}
