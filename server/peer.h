/* server/peer.h - per-peer state of a shard: one allocation holding the peer's transport address,
 * its CoAP exchange state (dedup, transactions) and a pointer to its registration, plus the
 * shard's peer table keyed by address (SipHash under a per-process random key, so remote peers
 * cannot force collisions).
 *
 * Ownership: the table owns its peers (peer_table_deinit frees them; the caller deinits their
 * CoAP state first). Threads: one shard thread owns a table and its peers.
 */
#ifndef LW_SERVER_PEER_H
#define LW_SERVER_PEER_H

#include "base/hash.h"
#include "base/timer.h"
#include "coap/coap.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* A compact UDP transport address (20 bytes), the peer table key. */
struct peer_addr {
    uint8_t family; /* 4 or 6 */
    uint8_t sock;   /* index of the shard listener socket the peer talks to */
    uint16_t port;  /* host byte order */
    uint8_t ip[16]; /* IPv4 in the first 4 bytes, the rest zero */
};

/* From a received sockaddr (AF_INET or AF_INET6): 0 or LW_EINVAL. */
int peer_addr_from_sa(struct peer_addr *a, const struct sockaddr *sa, uint8_t sock);
/* To a sockaddr for sending; returns its length. */
socklen_t peer_addr_to_sa(const struct peer_addr *a, struct sockaddr_storage *ss);
/* "1.2.3.4:5683" or "[::1]:5683" into out (NUL-terminated, truncated to cap). */
void peer_addr_format(const struct peer_addr *a, char *out, size_t cap);

struct reg;

struct peer {
    struct lw_timer timer; /* CoAP deadlines and the registration's expiry, whichever first */
    struct peer_addr addr;
    /* A block-wise Register/Update body is being received from this address: its state is in
     * the shard's side table (registry.c), as few peers ever have one (the byte is padding). */
    bool has_b1;
    uint8_t hlo[3]; /* the low 24 bits of its hash in the table (peer.c: growth reads them) */
    struct lw_coap_ep ep;
    struct reg *reg; /* the registration bound to this address, or NULL */
};

struct peer_block;

/* Peers come from a pool of the table's own (peer.c says why): blocks of peers, and a free list
 * of the peers deleted since. */
struct peer_table {
    struct lw_cmap map; /* its hash callback's context is the table: do not move one */
    uint8_t key[16];
    struct peer_block *blocks; /* newest first; the newest may have peers never handed out */
    unsigned fresh;            /* peers of the newest block handed out so far */
    struct peer *free;         /* deleted peers, linked through their first bytes */
};

/* Tables below 2^lw__peer_hlo_bits slots place peers by the hash bits each peer keeps (peer.c);
 * 23, tests set less. */
extern unsigned lw__peer_hlo_bits;

/* 0 or LW_ENOMEM. */
int peer_table_init(struct peer_table *t);
/* Frees every peer still in the table (their ep must already be deinitialised). */
void peer_table_deinit(struct peer_table *t);
struct peer *peer_find(const struct peer_table *t, const struct peer_addr *a);
/* Allocates a zeroed peer for a (not yet present) and inserts it; NULL on OOM. The caller
 * initialises ep and timer. */
struct peer *peer_add(struct peer_table *t, const struct peer_addr *a);
/* peer_add for a hash computed by peer_hash (one SipHash per datagram instead of two). */
struct peer *peer_add_h(struct peer_table *t, const struct peer_addr *a, uint64_t hash);
/* The hash of a in t, and a hint to the CPU to fetch the table's slots for it: the shard hashes
 * and prefetches every datagram of a receive batch before handling the first, so the lookups
 * (one cache miss each in a large table) overlap instead of following one another. */
uint64_t peer_hash(const struct peer_table *t, const struct peer_addr *a);
static inline void peer_prefetch(const struct peer_table *t, uint64_t hash)
{
    const void *slot = lw_cmap_home(&t->map, hash);
    if (slot)
        __builtin_prefetch(slot);
}
/* peer_find for a hash computed by peer_hash. */
struct peer *peer_find_hashed(const struct peer_table *t, const struct peer_addr *a, uint64_t hash);
/* Re-keys p (in t) under address a, which no other peer of t may hold (look it up first): the
 * peer keeps its CoAP state and registration. Cannot fail (the table does not grow). */
void peer_rekey(struct peer_table *t, struct peer *p, const struct peer_addr *a);
/* Unlinks and frees p (its ep must already be deinitialised and its timer cancelled). */
void peer_del(struct peer_table *t, struct peer *p);
static inline size_t peer_count(const struct peer_table *t)
{
    return lw_cmap_count(&t->map);
}

#endif
