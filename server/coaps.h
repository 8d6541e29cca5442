/* server/coaps.h - CoAP over DTLS for the shards: glue between a shard's CoAPS sockets,
 * lib/dtls (one lw_dtls_shard per shard, one lw_dtls_sess per peer) and the registration service
 * (plaintext goes to regsrv_input_sec with the endpoint the DTLS identity is bound to).
 *
 * Per peer: a `struct csess` (this file) indexed by transport address and by Connection ID, plus
 * the lib/dtls session (a second allocation; the registry's `struct peer` is a third, as for
 * NoSec). A CID record is demultiplexed by its CID before any address lookup, so a NAT-rebound
 * device keeps its session; records naming another shard or node in their CID are dropped and
 * counted. Handshake retransmission and timeout deadlines and the idle hibernation deadline run
 * on this file's timer wheel, which the shard's loop timer drives (coaps_next_deadline /
 * coaps_advance). ClientHellos refused for want of a handshake slot (coaps.max_handshakes) wait,
 * as copies of the datagram, in a bounded FIFO backlog per shard (coaps.handshake_backlog) and
 * are started as handshakes end. After coaps.hibernate_idle without traffic an established DTLS 1.2
 * session is exported into a blob of ~360 bytes and its wolfSSL state freed; the next record wakes
 * it. Hibernated sessions bound to an endpoint are saved in PostgreSQL (store/sessions.h: sealed on
 * hibernation, deleted when they wake or end); coaps_free exports the live DTLS 1.2 ones too
 * (graceful stop), and coaps_restore_cb puts them back at start. DTLS 1.3 sessions cannot be
 * exported by wolfSSL 5.9: they neither hibernate nor survive a restart.
 *
 * Threads: coaps_global_* on the control thread before the shards start / after they stop; one
 * struct coaps per shard, used only by that shard's thread.
 */
#ifndef LW_SERVER_COAPS_H
#define LW_SERVER_COAPS_H

#include "config.h"
#include "peer.h"
#include "registry.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Builds the shared DTLS context from cfg (server certificate, key, trust store, suites,
 * versions, limits; credentials from creds.h). Nothing to do when coaps.listen is empty.
 * 0, or LW_ECONFIG / LW_ENOMEM with err describing the problem. */
int coaps_global_init(const struct lw_config *cfg, char *err, size_t errlen);
void coaps_global_deinit(void);
/* True after coaps_global_init when CoAPS listeners are configured. */
bool coaps_enabled(void);

struct coaps;

struct coaps_ops {
    /* Sends one datagram on the shard's socket `sock` (the index in peer_addr.sock). */
    void (*send)(void *ctx, uint8_t sock, const struct sockaddr *to, socklen_t tolen,
                 const uint8_t *data, size_t len);
};

/* Counters of one shard (written by its thread, read relaxed by the metrics writer). */
struct coaps_stats {
    _Atomic uint64_t sessions, hibernated; /* gauges */
    _Atomic uint64_t handshakes_ok, handshakes_failed, hibernations, wakes, wake_failed;
    _Atomic uint64_t unbound;    /* established, but the identity maps to no endpoint */
    _Atomic uint64_t cid_stale;  /* CID records naming another shard/node, or an unknown CID */
    _Atomic uint64_t peer_moved; /* NAT rebinding followed through a CID */
    _Atomic uint64_t hello_stateless, hello_ratelimited, budget_refused;
    /* Hellos refused for want of a handshake slot (budget_refused) kept in the backlog
     * (coaps.handshake_backlog) / dropped because it was full / dropped after waiting longer
     * than coaps.handshake_timeout; deferred is a gauge (waiting now). */
    _Atomic uint64_t hello_deferred, backlog_full, backlog_expired, deferred;
    _Atomic uint64_t hello_crossed; /* lw_dtls_stats.hello_crossed */
};

/* Per-shard state: rs (borrowed) receives plaintext; ops/ctx borrowed. shard_id is the CID's
 * first byte. 0, LW_ENOMEM, LW_EDTLS, LW_EIO. */
int coaps_new(unsigned shard_id, struct regsrv *rs, const struct coaps_ops *ops, void *ctx,
              uint64_t now, struct coaps **out);
/* Frees every session (sends nothing) and the shard state. NULL is a no-op. */
void coaps_free(struct coaps *c);
/* One datagram received on CoAPS socket `sock` (borrowed). */
void coaps_input(struct coaps *c, uint8_t sock, const struct sockaddr *from, socklen_t fromlen,
                 const uint8_t *data, size_t len, uint64_t now);
/* Encrypts a CoAP datagram for the peer at `to` (its session must be established; a hibernated
 * one is woken). 0, LW_ENOENT (no session), or the lw_dtls_write error. */
int coaps_write(struct coaps *c, const struct peer_addr *to, const uint8_t *data, size_t len,
                uint64_t now);
void coaps_advance(struct coaps *c, uint64_t now);
uint64_t coaps_next_deadline(const struct coaps *c);
const struct coaps_stats *coaps_stats(const struct coaps *c);
/* Restore at start (store/sessions.h lw_sessions_restore callback): puts a saved session back,
 * hibernated, on the shard its CID names (else the one its address steers to), and moves the
 * endpoint's restored registration onto this DTLS address. Main thread, after the registrations
 * were restored and before the shard threads run. 0 when taken; LW_EINVAL (CID of another
 * node/layout, no such shard, bad row), LW_EEXIST (address or CID taken), LW_ENOMEM. */
struct lw_sess_row;
int coaps_restore_cb(void *arg, const struct lw_sess_row *row);
/* Closes (close_notify) and frees every session bound to endpoint ep on every shard, by message
 * (credentials replaced or deleted: the old key must not keep working). Control thread. */
void coaps_revoke(const char *ep);

#endif
