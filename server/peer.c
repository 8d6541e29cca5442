#include "peer.h"

#include "base/err.h"
#include "base/util.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int peer_addr_from_sa(struct peer_addr *a, const struct sockaddr *sa, uint8_t sock)
{
    memset(a, 0, sizeof(*a));
    a->sock = sock;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        a->family = 4;
        a->port = ntohs(in->sin_port);
        memcpy(a->ip, &in->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        a->family = 6;
        a->port = ntohs(in6->sin6_port);
        memcpy(a->ip, &in6->sin6_addr, 16);
        return 0;
    }
    return LW_EINVAL;
}

socklen_t peer_addr_to_sa(const struct peer_addr *a, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (a->family == 4) {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        in->sin_family = AF_INET;
        in->sin_port = htons(a->port);
        memcpy(&in->sin_addr, a->ip, 4);
        return sizeof(*in);
    }
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(a->port);
    memcpy(&in6->sin6_addr, a->ip, 16);
    return sizeof(*in6);
}

void peer_addr_format(const struct peer_addr *a, char *out, size_t cap)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    inet_ntop(a->family == 4 ? AF_INET : AF_INET6, a->ip, ip, sizeof(ip));
    if (a->family == 4)
        snprintf(out, cap, "%s:%u", ip, a->port);
    else
        snprintf(out, cap, "[%s]:%u", ip, a->port);
}

static bool peer_eq(const void *item, const void *key)
{
    const struct peer *p = item;
    return memcmp(&p->addr, key, sizeof(struct peer_addr)) == 0;
}

static uint64_t addr_hash(const struct peer_table *t, const struct peer_addr *a)
{
    return lw_siphash(t->key, a, sizeof(*a));
}

/* The table's hash callback (growth and deletion). A table of up to 2^23 slots (and its next
 * size) places items by their low 24 bits, which the peer keeps in bytes that were padding:
 * growing the table then costs no SipHash per peer (measured on the Register path from an empty
 * table: the rehash's SipHash took 4.4 % of the shard thread). */
unsigned lw__peer_hlo_bits = 23; /* tests lower it to reach the SipHash branch */

static uint64_t item_hash(const void *item, const void *ctx)
{
    const struct peer *p = item;
    const struct peer_table *t = ctx;
    if (t->map.mask < ((size_t)1 << lw__peer_hlo_bits))
        return (uint64_t)p->hlo[0] | (uint64_t)p->hlo[1] << 8 | (uint64_t)p->hlo[2] << 16;
    return addr_hash(t, &p->addr);
}

static void keep_hash(struct peer *p, uint64_t hash)
{
    p->hlo[0] = (uint8_t)hash;
    p->hlo[1] = (uint8_t)(hash >> 8);
    p->hlo[2] = (uint8_t)(hash >> 16);
}

/* ---- the peer pool ------------------------------------------------------------------------
 * A peer is the commonest object of a shard (one per device address, 120 bytes). From glibc each
 * would cost 8 bytes more (the chunk header: 128) and a few hundred instructions per calloc on
 * the Register path; from these blocks it costs neither. Memory of deleted peers is reused by
 * the next new ones and returned with the table (a fleet that shrank keeps it for its next
 * registration storm). Under AddressSanitizer every peer is its own allocation again, so a use
 * after peer_del is still caught. */
#define PEER_BLOCK 500 /* ~60 KB per block */
_Static_assert(sizeof(struct peer) == 120, "a peer grew: check the memory figures (benchmarks.md)");

struct peer_block {
    struct peer_block *next;
    struct peer p[PEER_BLOCK];
};

#ifdef LW_SANITIZED
#define PEER_POOL_OFF 1
#endif

static struct peer *pool_get(struct peer_table *t)
{
#ifdef PEER_POOL_OFF
    (void)t;
    return calloc(1, sizeof(struct peer));
#else
    struct peer *p = t->free;
    if (p) {
        memcpy(&t->free, p, sizeof(t->free)); /* the next free peer */
    } else {
        if (!t->blocks || t->fresh == PEER_BLOCK) {
            struct peer_block *b = malloc(sizeof(*b));
            if (!b)
                return NULL;
            b->next = t->blocks;
            t->blocks = b;
            t->fresh = 0;
        }
        p = &t->blocks->p[t->fresh++];
    }
    memset(p, 0, sizeof(*p));
    return p;
#endif
}

static void pool_put(struct peer_table *t, struct peer *p)
{
#ifdef PEER_POOL_OFF
    (void)t;
    free(p);
#else
    memcpy(p, &t->free, sizeof(t->free));
    t->free = p;
#endif
}

int peer_table_init(struct peer_table *t)
{
    t->blocks = NULL;
    t->fresh = 0;
    t->free = NULL;
    if (lw_random(t->key, sizeof(t->key)) != 0)
        memset(t->key, 0xa5, sizeof(t->key));
    return lw_cmap_init(&t->map, 0, item_hash, t);
}

void peer_table_deinit(struct peer_table *t)
{
#ifdef PEER_POOL_OFF
    size_t pos = 0;
    struct peer *p;
    while ((p = lw_cmap_next(&t->map, &pos)))
        free(p);
#else
    while (t->blocks) {
        struct peer_block *b = t->blocks;
        t->blocks = b->next;
        free(b);
    }
    t->free = NULL;
    t->fresh = 0;
#endif
    lw_cmap_deinit(&t->map);
}

uint64_t peer_hash(const struct peer_table *t, const struct peer_addr *a)
{
    return addr_hash(t, a);
}

struct peer *peer_find_hashed(const struct peer_table *t, const struct peer_addr *a, uint64_t hash)
{
    return lw_cmap_get(&t->map, hash, a, peer_eq);
}

struct peer *peer_find(const struct peer_table *t, const struct peer_addr *a)
{
    return lw_cmap_get(&t->map, addr_hash(t, a), a, peer_eq);
}

struct peer *peer_add_h(struct peer_table *t, const struct peer_addr *a, uint64_t hash)
{
    struct peer *p = pool_get(t);
    if (!p)
        return NULL;
    p->addr = *a;
    keep_hash(p, hash);
    if (lw_cmap_put(&t->map, hash, p) != 0) {
        pool_put(t, p);
        return NULL;
    }
    return p;
}

struct peer *peer_add(struct peer_table *t, const struct peer_addr *a)
{
    return peer_add_h(t, a, addr_hash(t, a));
}

void peer_rekey(struct peer_table *t, struct peer *p, const struct peer_addr *a)
{
    lw_cmap_del_item(&t->map, addr_hash(t, &p->addr), p);
    p->addr = *a;
    uint64_t h = addr_hash(t, a);
    keep_hash(p, h);
    /* one item fewer than a moment ago: lw_cmap_put does not resize, so it cannot fail */
    int rc = lw_cmap_put(&t->map, h, p);
    LW_REQUIRE(rc == 0);
}

void peer_del(struct peer_table *t, struct peer *p)
{
    lw_cmap_del_item(&t->map, addr_hash(t, &p->addr), p);
    pool_put(t, p);
}
