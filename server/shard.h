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
#include <sys/socket.h>

struct shard;

/* A mailbox message. The sender allocates it; run() owns it and frees it (or reuses it to reply).
 * When the shard is stopping, queued messages are still run (with shard->stopping set). */
struct xmsg {
    struct lw_list link;
    void (*run)(struct shard *s, struct xmsg *m);
};

/* Starts n shard threads (n >= 1): loads the object registry and profiles, opens one
 * SO_REUSEPORT socket per shard for every coap.listen address (steered by udp.h's CBPF
 * program), and starts each shard's registration service (registry.h). 0, or a negative LW_E*
 * code with everything undone. */
int shards_start(unsigned n, const struct lw_config *cfg);
/* Stops and joins every shard (drains mailboxes, closes handles); idempotent. */
void shards_stop(void);
unsigned shards_count(void);
struct shard *shard_get(unsigned i);
unsigned shard_id(const struct shard *s);
/* Queues m for s (takes ownership). Returns false (m not taken) when s has stopped. */
bool shard_post(struct shard *s, struct xmsg *m);

/* True once every shard thread runs its loop with its sockets open (for /readyz). Any thread. */
bool shards_ready(void);
/* The shard's registration service (registry.h); only on that shard's thread. */
struct regsrv *shard_regsrv(struct shard *s);
/* The shard's DTLS state (coaps.h), NULL without CoAPS; only on that shard's thread. */
struct coaps *shard_coaps(struct shard *s);
/* The shard that owns datagrams from sa (the kernel steering rule, udp_steer). */
unsigned shard_for_addr(const struct sockaddr *sa);

/* Liveness: shards_ping() posts a ping with a new sequence to every shard; shards_all_answered()
 * is true when every shard answered the previous ping, i.e. every loop ran since then. */
void shards_ping(void);
bool shards_all_answered(void);

#endif
