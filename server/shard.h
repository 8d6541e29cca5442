/* server/shard.h - shard threads: one thread + uv_loop each, owning its peers, registrations,
 * observations and timers (architecture.md §3). Other threads talk to a shard only through its
 * mailbox: an MPSC list under a mutex plus a uv_async_t; uv_async_send coalesces, so the handler
 * drains the whole list each time.
 *
 * Threads: shards_start/shards_stop/shards_ping from the control thread; shard_post from any
 * thread; a message's run() executes on the shard's thread.
 */
#ifndef LW_SERVER_SHARD_H
#define LW_SERVER_SHARD_H

#include "base/list.h"
#include "config.h"

#include <stdbool.h>
#include <stdint.h>

struct shard;

/* A mailbox message. The sender allocates it; run() owns it and frees it (or reuses it to reply).
 * When the shard is stopping, queued messages are still run (with shard->stopping set). */
struct xmsg {
    struct lw_list link;
    void (*run)(struct shard *s, struct xmsg *m);
};

/* Starts n shard threads (n >= 1). 0, or a negative LW_E* code with every started thread
 * stopped again. */
int shards_start(unsigned n, const struct lw_config *cfg);
/* Stops and joins every shard (drains mailboxes, closes handles); idempotent. */
void shards_stop(void);
unsigned shards_count(void);
struct shard *shard_get(unsigned i);
unsigned shard_id(const struct shard *s);
/* Queues m for s (takes ownership). Returns false (m not taken) when s has stopped. */
bool shard_post(struct shard *s, struct xmsg *m);

/* Liveness: shards_ping() posts a ping with a new sequence to every shard; shards_all_answered()
 * is true when every shard answered the previous ping, i.e. every loop ran since then. */
void shards_ping(void);
bool shards_all_answered(void);

#endif
