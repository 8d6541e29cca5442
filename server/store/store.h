/* server/store/store.h - write-behind of registrations to PostgreSQL.
 *
 * The store subscribes to the event bus (events.h) and keeps, per endpoint, the newest
 * registration state still to be written: a registered/updated event replaces what was queued
 * for its endpoint, a deregistered/expired one turns it into a delete (deletes win over older
 * upserts). The queue is bounded (LW_STORE_QUEUE_MAX endpoints); a change for a new endpoint
 * beyond it is dropped and counted. A flush timer writes batches of at most LW_STORE_BATCH_MAX
 * endpoints as one statement (deletes and a multi-row upsert from a jsonb parameter) on a
 * non-blocking libpq connection polled by the control loop (uv_poll on PQsocket; no blocking
 * libpq call on the loop). A batch that fails because the connection broke is re-queued under
 * any newer state and the connection is re-established with exponential backoff (100 ms .. 10 s);
 * meanwhile the daemon serves from memory and changes keep coalescing.
 *
 * Graceful stop (lw_store_stop) writes what is still queued with blocking calls, bounded by a
 * few seconds: the loops have stopped by then.
 *
 * Threads: every function on the control thread; lw_store_metrics reads atomics.
 */
#ifndef LWM2MD_STORE_STORE_H
#define LWM2MD_STORE_STORE_H

#include "config.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#define LW_STORE_QUEUE_MAX 1000000u
#define LW_STORE_BATCH_MAX 5000u
#define LW_STORE_FLUSH_MS  50u

struct lw_store_stats {
    uint64_t changes;   /* registration changes seen */
    uint64_t coalesced; /* changes that replaced a queued one for the same endpoint */
    uint64_t dropped;   /* changes dropped: queue full */
    uint64_t upserts;   /* rows written */
    uint64_t deletes;   /* rows deleted (requested) */
    uint64_t batches;   /* batches committed */
    uint64_t failed;    /* batches refused by the database (rows lost; logged) */
    uint64_t requeued;  /* batches re-queued after a connection loss */
    uint64_t connects;  /* successful connections */
    uint64_t queued;    /* endpoints waiting (gauge) */
    bool connected;
};

/* Starts the store on `loop` (borrowed; the control loop) when cfg->db_url is set; without it
 * does nothing and returns 0. Connecting happens in the background. 0 or LW_ENOMEM. */
int lw_store_start(uv_loop_t *loop, const struct lw_config *cfg);
/* Stops listening to events, writes what is queued (blocking, a few seconds at most), closes the
 * connection and its handles (the caller runs the loop afterwards so they finish closing). */
void lw_store_stop(void);
/* True when no database is configured or the store's connection is up. */
bool lw_store_db_ok(void);
void lw_store_get_stats(struct lw_store_stats *out);

/* Restore at start (store/restore.c): loads the live registrations (expires_at in the future)
 * from cfg->db_url into the shards that issued their ids, so devices keep their Location and
 * are not asked to Register again. Called by shards_start after the registration services exist
 * and before any socket opens or shard thread runs; blocking libpq is fine there. Rows of
 * shards that no longer exist, expired or malformed rows are skipped (counted in the log).
 * Returns 0 (also without a database or when it is unreachable: logged) or LW_ENOMEM. */
int lw_store_restore(const struct lw_config *cfg, unsigned nshards);

#endif
