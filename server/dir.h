/* server/dir.h - the endpoint directory: endpoint name -> (shard, registration id, generation).
 * The only table shared by all shards (architecture.md §3): striped locks, written only on
 * register, de-register, expiry and migration; read by the API (devices.c) and by a shard that
 * receives a Register for an endpoint another shard holds.
 *
 * Nodes are embedded at the end of their registration record (the endpoint name is stored once,
 * inline) and owned by the shard that owns the registration. Other threads only copy (id, gen)
 * out of a node under its stripe lock; the owner removes the node (dir_remove) before freeing it,
 * and a node that dir_put replaced is unreachable from the directory from then on.
 *
 * Threads: every function may be called from any thread once dir_init returned; dir_init and
 * dir_deinit from one thread while no other uses the directory.
 */
#ifndef LW_SERVER_DIR_H
#define LW_SERVER_DIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DIR_MAX_NAME 127

/* Registration ids: bits 63..56 the shard that issued it, 55..32 the slot in that shard's
 * table, 31..0 random (so ids cannot be guessed from each other). A registration that migrated
 * keeps its id; the node's `shard` names its current owner. */
static inline unsigned dir_id_shard(uint64_t id)
{
    return (unsigned)(id >> 56);
}

struct dir_node {
    uint64_t id;   /* immutable while linked */
    uint32_t gen;  /* immutable while linked */
    uint8_t shard; /* current owner; changed only with dir_set_shard */
    uint8_t len;   /* strlen(name) */
    char name[];   /* NUL-terminated; the owner allocates len + 1 bytes after the node */
};

/* A copy of a node's identity, safe to keep and to send to other threads. */
struct dir_ref {
    uint64_t id;
    uint32_t gen;
    unsigned shard;
};

/* 0 or LW_ENOMEM. Creates the stripes and the hash key (random per process). */
int dir_init(void);
/* Forgets every node (does not free them: their owners do). */
void dir_deinit(void);

/* Links n (borrowed until dir_remove or replacement) under n->name. When another node had the
 * name, it is unlinked, its identity copied to *old and 1 returned; otherwise 0. LW_ENOMEM when
 * the table cannot grow (nothing changed). */
int dir_put(struct dir_node *n, struct dir_ref *old);
/* dir_put for h == dir_hash(n->name, n->len), computed earlier. */
int dir_put_h(struct dir_node *n, uint64_t h, struct dir_ref *old);
/* The directory's hash of a name (keyed per process), and a hint to the CPU to fetch the slots
 * where a name of that hash lives or would be linked: the shard computes both for the Registers
 * of a receive batch before handling the first, so the cache misses of a large directory
 * overlap. dir_prefetch has no effect on the contents. */
uint64_t dir_hash(const char *name, size_t len);
void dir_prefetch(uint64_t h);
/* Unlinks n if the directory maps its name to n itself; true when it did. */
bool dir_remove(struct dir_node *n);
/* Records that n (linked or not) now belongs to shard (migration), under n's stripe lock. */
void dir_set_shard(struct dir_node *n, unsigned shard);
/* Copies the identity registered under name: 0 or LW_ENOENT. */
int dir_lookup(const char *name, size_t len, struct dir_ref *out);
/* Restore at start (registry.c regsrv_restore), before the shards serve:
 * dir_reserve sizes every empty stripe for about n names in all (rows PostgreSQL estimates), so
 * a large restore does not rehash the tables again and again; best effort (a failed allocation
 * leaves the stripe as it was). */
void dir_reserve(size_t n);
/* Links n (borrowed, as dir_put) unless its name is taken: 0, LW_EEXIST (nothing changed) or
 * LW_ENOMEM. One lookup where dir_lookup + dir_put take two. */
int dir_put_new(struct dir_node *n);
/* Bytes of the stripes' slot arrays that live outside the malloc heap (lw_hmap_mapped_bytes);
 * for memory accounting. */
size_t dir_mapped_bytes(void);
/* Number of linked nodes (relaxed; for limits and metrics). */
size_t dir_count(void);

#endif
