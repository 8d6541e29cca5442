/* server/store/sessions.h - hibernated DTLS sessions saved in PostgreSQL (table dtls_sessions),
 * so a DTLS 1.2 device keeps its session across a daemon restart (no handshake storm).
 *
 * Write-behind: a shard queues a change when a session hibernates (lw_sessions_put: the export
 * blob, sealed at once with the master key ring of secrets.h, so key material never waits or
 * travels in clear), when a hibernated session wakes (its row would be stale: the sequence
 * numbers move on) and when a hibernated session ends (lw_sessions_del). Changes coalesce per
 * endpoint in a bounded queue (LW_SESSIONS_QUEUE_MAX; beyond it a change is dropped and
 * counted). A writer thread of this module owns the database connection and writes batches
 * (one transaction each) every LW_SESSIONS_FLUSH_MS; it uses blocking libpq calls, which block
 * no event loop because the thread runs none. A lost connection re-queues the batch under any
 * newer change and reconnects with backoff (100 ms .. 10 s). After a kill -9, the rows of the
 * sessions hibernated until shortly before are in the table; live ones are not (they export on
 * graceful stop: coaps_free queues them, lw_sessions_stop writes everything, a few seconds at
 * most).
 *
 * Sealed state: secrets_seal(ad = secrets_row_ad("dtls_sessions", endpoint)) of
 *   version (1) | listener socket index (1) | security mode (1, enum regsrv_secmode) | export blob
 * key_id and nonce columns repeat the sealed blob's header. Without a master key (secrets_ring()
 * NULL), a database or CoAPS, nothing is saved or restored (logged once at start).
 *
 * Restore (lw_sessions_restore) runs before the sockets open: every unexpired row is opened and
 * handed to a callback (the shard's coaps_restore); rows that do not open (other key, tampered,
 * other endpoint) are skipped and counted.
 *
 * Threads: start/stop/restore on the main thread (before shards start / after they stopped);
 * put/del from any thread (shards); the writer thread is internal.
 */
#ifndef LWM2MD_STORE_SESSIONS_H
#define LWM2MD_STORE_SESSIONS_H

#include "config.h"
#include "peer.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LW_SESSIONS_QUEUE_MAX 1000000u
#define LW_SESSIONS_BATCH_MAX 2000u
#define LW_SESSIONS_FLUSH_MS  100u
#define LW_SESSIONS_CID_MAX   8
#define LW_SESSIONS_BLOB_MAX  1024 /* export blobs are ~360 B (lib/dtls LW_DTLS_BLOB_MAX 704) */

/* Starts the writer when cfg has a database, CoAPS listeners and a master key ring is loaded
 * (secrets_start ran). 0 (also when disabled) or LW_ENOMEM. */
int lw_sessions_start(const struct lw_config *cfg);
/* Writes what is queued (blocking, at most a few seconds), stops the writer thread and frees
 * the queue. Call after the shards stopped. */
void lw_sessions_stop(void);
/* True between a start that enabled persistence and stop. Any thread. */
bool lw_sessions_enabled(void);

/* A session to save (all views borrowed for the call). */
struct lw_sess_save {
    const char *ep;          /* endpoint the DTLS identity is bound to (NUL-terminated) */
    struct peer_addr addr;   /* peer address; addr.sock = the shard's listener socket index */
    uint8_t mode;            /* enum regsrv_secmode */
    const uint8_t *cid;      /* our connection id (what the peer puts in records), or NULL */
    size_t cid_len;          /* 0..LW_SESSIONS_CID_MAX */
    const uint8_t *blob;     /* lw_dtls_hibernate output (key material: wiped by the caller) */
    size_t blob_len;         /* 1..LW_SESSIONS_BLOB_MAX */
    int64_t expires_wall_ms; /* when the row stops being useful (session idle limit) */
};
/* Seals s and queues an upsert of its row (replacing what was queued for the endpoint).
 * 0, LW_EINVAL (no endpoint, bad sizes), LW_ENOSPC (queue full: dropped), LW_ENOMEM, or the
 * secrets_seal error; a no-op returning 0 when persistence is off. Any thread. */
int lw_sessions_put(const struct lw_sess_save *s);
/* Queues the delete of ep's row if it still belongs to the session named by (cid) or, without
 * a CID, by its address: the row of a newer session of ep is left alone. Any thread. */
void lw_sessions_del(const char *ep, const uint8_t *cid, size_t cid_len,
                     const struct peer_addr *addr);

/* A restored session (views valid for the callback only; blob is key material, wiped after). */
struct lw_sess_row {
    const char *ep;
    struct peer_addr addr; /* sock from the sealed state */
    uint8_t mode;
    const uint8_t *cid;
    size_t cid_len;
    const uint8_t *blob;
    size_t blob_len;
    int64_t expires_wall_ms;
};
/* Reads the unexpired rows (blocking libpq: start-up only, before sockets open and threads run)
 * and hands each opened row to cb; cb returns 0 when it took the session. Expired rows are
 * deleted. Needs a database and a ring (else returns 0 at once). 0 or LW_ENOMEM. */
int lw_sessions_restore(const struct lw_config *cfg,
                        int (*cb)(void *arg, const struct lw_sess_row *row), void *arg);

struct lw_sessions_stats {
    uint64_t puts, dels, coalesced, dropped, written, deleted, batches, failed, restored,
        restore_skipped;
    uint64_t queued; /* gauge */
    bool connected;
};
void lw_sessions_get_stats(struct lw_sessions_stats *out);
/* Tests: while held, the writer takes nothing from the queue (until stop), so a test can count
 * what is queued without racing the writer's flush tick. */
void lw__sessions_hold(bool hold);

#endif
