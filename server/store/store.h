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
 * A batch cut off because the connection broke is re-queued under any newer state, with every
 * batch sent after it, and the connection is re-established with exponential backoff
 * (100 ms .. 10 s); meanwhile the daemon serves from memory and changes keep coalescing. A batch
 * that fails for a transient reason (SQLSTATE classes 08, 40, 53, 57) is re-queued the same way
 * and nothing is sent for the same backoff (counted: lwm2md_store_transient_errors_total).
 *
 * A batch the database refuses for its content (a constraint, a value it cannot take, ...) is
 * split in halves, each sent again as its own transaction ("pieces", split again when refused)
 * until the refused rows are alone: only those are dropped, each logged once (endpoint and the
 * database's message) and counted (lwm2md_store_rows_refused_total). Pieces wait in a retry list
 * sent before anything of the map; the batches in flight behind a refused one are re-queued like
 * after a transient error, and a piece's record whose endpoint has a newer change queued is left
 * out when the piece is sent, so a retried older state never overwrites a newer one. A batch
 * refused as a statement (SQLSTATE class 42: a missing table, column or privilege refuses every
 * row alike) is not split: its rows are dropped, logged once for the batch and counted.
 *
 * Storms: while changes arrive at a writer faster than LW_STORE_SURGE_PER_S, or the shards'
 * sockets hold a backlog (their receive batches come full, LW_STORE_SURGE_FULL_BATCHES times;
 * both measured over windows of LW_STORE_SURGE_WINDOW_MS), the writer keeps coalescing them but
 * sends nothing, so that PostgreSQL (whose work per row costs more CPU than the Register itself)
 * does not compete with the shards for the cores while devices wait for their answers. The hold
 * ends when the rate falls below the threshold, when database.write_hold have passed since it
 * began, or when half of the writer's queue bound is used; after a hold that ran out, the writer
 * writes until its queue is empty before it may hold again. So no change waits more than
 * database.write_hold plus the time the database needs for what is queued ahead of it (counted:
 * lwm2md_store_deferrals_total, lwm2md_store_deferred_ms_total).
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
/* Storm hold (above): arrival rate per writer that starts it and the window it is measured over.
 * The longest hold is database.write_hold (cfg->db_write_hold ms, default 5 s; 0: never hold). */
#define LW_STORE_SURGE_PER_S     10000u
#define LW_STORE_SURGE_WINDOW_MS 100u
/* ... or that many full receive batches of the shards (a backlog in their sockets) in a window. */
#define LW_STORE_SURGE_FULL_BATCHES 4u

struct regsrv_change;

struct lw_store_stats {
    uint64_t changes;     /* registration changes seen */
    uint64_t coalesced;   /* changes that replaced a queued one for the same endpoint */
    uint64_t dropped;     /* changes dropped: queue full */
    uint64_t upserts;     /* rows written */
    uint64_t deletes;     /* rows deleted (requested) */
    uint64_t batches;     /* batches committed */
    uint64_t failed;      /* rows refused by the database (isolated, logged, not written) */
    uint64_t requeued;    /* batches re-queued: connection loss, transient error, refusal before */
    uint64_t splits;      /* refused batches (or pieces) split in halves */
    uint64_t transient;   /* batches failed for a transient reason, retried after a backoff */
    uint64_t connects;    /* successful connections */
    uint64_t queued;      /* endpoints waiting (gauge) */
    uint64_t inflight;    /* batches sent, not yet answered (gauge) */
    uint64_t deferrals;   /* storm holds begun */
    uint64_t deferred_ms; /* time spent holding (sum over writers) */
    bool connected;       /* every writer's connection is up */
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
/* Shard i's thread: one receive batch of n datagrams ended, of at most cap (a full batch means
 * more were waiting: the shard is behind, see "Storms"). Cheap; nothing without a database. */
void lw_store_rx_batch(unsigned i, unsigned n, unsigned cap);
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

/* Tests only (tests/unit/server/check_store.c), on the thread of writer i's loop while its
 * connection is down: plays the database for one round. Drains the inbox, takes batches as the
 * writer would send them (up to LW_STORE_INFLIGHT_MAX) and finishes them in order: a batch fails
 * transiently when `transient`, is refused when refuse(ctx, ep) is true for one of its records
 * (as a statement, SQLSTATE class 42, when `statement`), else commits and calls written(ctx, ep,
 * lifetime_s, is_delete) per record (either callback may be NULL). Returns the number of batches
 * finished (0 when nothing waits or the writer holds after a transient error). */
struct lw__store_fake {
    bool (*refuse)(void *ctx, const char *ep);
    void (*written)(void *ctx, const char *ep, uint32_t lifetime_s, bool del);
    bool transient, statement;
    void *ctx;
};
unsigned lw__store_fake_round(unsigned i, const struct lw__store_fake *f);
/* Tests only: the storm hold's threshold (changes per second per writer, 0: never) and longest
 * hold in ms for the writers of this run (lw_store_start sets the defaults), and whether writer i
 * holds its writes now (on its loop's thread). */
void lw__store_tune(unsigned surge_per_s, unsigned defer_max_ms);
bool lw__store_holding(unsigned i);

#endif
