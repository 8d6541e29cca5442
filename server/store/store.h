/* server/store/store.h - write-behind of registrations to PostgreSQL.
 *
 * One writer per shard. Each writer owns one non-blocking libpq connection in pipeline mode,
 * polled by its shard's uv loop (uv_poll on PQsocket; never a blocking libpq call on a loop), and
 * a coalescing queue: a hash map (lib/base/hash.h) of fixed-size records keyed by endpoint, each
 * holding the newest registration state still to be written. A registered/updated change
 * replaces what was queued for its endpoint, a deregistered/expired one turns it into a delete;
 * a delete names the registration id it ends, so a late "replaced" from another shard cannot
 * delete its successor (deletes win over older upserts).
 *
 * The shards hand every change over directly (regsrv_ops.persist -> lw_store_change, no event
 * bus hop; the bus keeps feeding SSE and webhooks). Every change of one endpoint goes to the same
 * writer (chosen by a keyed hash of the endpoint name), so one queue and one connection order
 * them as the single control-thread queue did; it lands in that writer's inbox (a short mutex,
 * a copy of the record), which the writer drains into its map every LW_STORE_FLUSH_MS or sooner
 * when it fills. Batches of at most LW_STORE_BATCH_MAX endpoints are encoded as text arrays (one
 * array per column; deletes and a multi-row INSERT ... ON CONFLICT over unnest()) and sent with
 * PQsendQueryParams + PQpipelineSync; up to LW_STORE_INFLIGHT_MAX batches are in flight per
 * connection. Each batch is one implicit transaction.
 *
 * Bounded: at most LW_STORE_QUEUE_MAX endpoints wait in the whole process (split evenly between
 * writers, inbox and map each); a change for a new endpoint beyond that is dropped and counted.
 * A batch that fails because the connection broke (or for a transient reason: SQLSTATE classes
 * 08, 40, 53, 57) is re-queued under any newer state, with every batch sent after it, and the
 * connection is re-established with exponential backoff (100 ms .. 10 s); meanwhile the daemon
 * serves from memory and changes keep coalescing. A batch the database refuses for its content
 * is logged and counted (lwm2md_store_batches_failed_total).
 *
 * Graceful stop: the shards detach their writers (lw_store_detach) as they stop; lw_store_stop
 * then waits for the batches in flight and writes what is still queued with blocking calls,
 * bounded by a few seconds (the loops have stopped by then).
 *
 * Threads: lw_store_start/_attach/_stop on the control thread (attach before the shard thread
 * runs); lw_store_detach on the writer's shard thread; lw_store_change on any shard thread;
 * lw_store_db_ok and lw_store_get_stats from any thread (atomics).
 */
#ifndef LWM2MD_STORE_STORE_H
#define LWM2MD_STORE_STORE_H

#include "config.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#define LW_STORE_QUEUE_MAX    1000000u
#define LW_STORE_BATCH_MAX    5000u
#define LW_STORE_FLUSH_MS     10u
#define LW_STORE_INFLIGHT_MAX 4u

struct regsrv_change;

struct lw_store_stats {
    uint64_t changes;   /* registration changes seen */
    uint64_t coalesced; /* changes that replaced a queued one for the same endpoint */
    uint64_t dropped;   /* changes dropped: queue full */
    uint64_t upserts;   /* rows written */
    uint64_t deletes;   /* rows deleted (requested) */
    uint64_t batches;   /* batches committed */
    uint64_t failed;    /* batches refused by the database (rows lost; logged) */
    uint64_t requeued;  /* batches re-queued after a connection loss or a transient error */
    uint64_t connects;  /* successful connections */
    uint64_t queued;    /* endpoints waiting (gauge) */
    uint64_t inflight;  /* batches sent, not yet answered (gauge) */
    bool connected;     /* every writer's connection is up */
};

/* Starts the store (metrics; the writers come with lw_store_attach) when cfg->db_url is set;
 * without it does nothing and returns 0. loop (borrowed) is the control loop. 0 or LW_ENOMEM. */
int lw_store_start(uv_loop_t *loop, const struct lw_config *cfg);
/* Creates writer i of n on loop (borrowed; shard i's loop, whose thread does not run yet) and
 * starts connecting in the background. Every i in 0..n-1 must be attached, with the same n,
 * before any change arrives. 0 (also without a database), LW_EINVAL or LW_ENOMEM. */
int lw_store_attach(unsigned n, unsigned i, uv_loop_t *loop);
/* Closes writer i's handles on its loop (shard thread at stop, or the control thread when the
 * shard never ran); what is queued stays for lw_store_stop. Idempotent. */
void lw_store_detach(unsigned i);
/* One registration change (borrowed for the call) from a shard thread. */
void lw_store_change(const struct regsrv_change *c);
/* After the shards stopped: waits for the batches in flight, writes what is queued (blocking,
 * a few seconds at most), closes the connections and frees everything. */
void lw_store_stop(void);
/* True between lw_store_start with a database configured and lw_store_stop. */
bool lw_store_enabled(void);
/* True when no database is configured or every writer's connection is up. */
bool lw_store_db_ok(void);
void lw_store_get_stats(struct lw_store_stats *out);

/* Restore at start (store/restore.c): loads the live registrations (expires_at in the future)
 * from cfg->db_url into the shards that issued their ids, so devices keep their Location and
 * are not asked to Register again. Called by shards_start after the registration services exist
 * and before any socket opens or shard thread runs; blocking libpq is fine there. One thread
 * and connection per shard, each reading the rows of its shard's id range with COPY. Rows of
 * shards that no longer exist, expired or malformed rows are skipped (counted in the log).
 * Returns 0 (also without a database or when it is unreachable: logged) or LW_ENOMEM. */
int lw_store_restore(const struct lw_config *cfg, unsigned nshards);

/* Internal (store.c and restore.c): the registration "objects" JSON array (borrowed) as a CoRE
 * link format list appended to b ("</id>;ver=M.m" per object, "</id/inst>" per instance).
 * 0, LW_EMALFORMED (not an array) or LW_ENOMEM. */
struct lw_buf;
int lw__store_links_json(const json_t *arr, struct lw_buf *b);

#endif
