/* server/store/opstore.h - durable state of the operations engine in PostgreSQL: queued
 * operations (table operations, durable before the API acknowledges them) and desired
 * observations (table observations), written through one non-blocking libpq connection of its
 * own on the control loop, and read back at start.
 *
 * Writes are jobs in a FIFO, sent one at a time (each its own implicit transaction) in the order
 * they were made, so a delete never overtakes the insert it undoes. A job that fails because the
 * connection broke (or for a transient SQLSTATE class 08, 40, 53, 57) stays at the head and is
 * sent again after the reconnect (backoff 100 ms .. 10 s); a job the database refuses for its
 * content is logged and dropped. The queue is bounded (OPSTORE_QUEUE_MAX jobs); a job beyond it
 * is dropped and reported as not durable. Each job may carry a completion callback, called on the
 * control thread once it committed (ok) or was dropped (not ok); opstore_stop drops nothing: it
 * writes what is queued with blocking calls, a few seconds at most, after the loop stopped.
 *
 * Threads: everything on the control thread. opstore_load before the loop runs (blocking libpq is
 * fine there).
 */
#ifndef LWM2MD_STORE_OPSTORE_H
#define LWM2MD_STORE_OPSTORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#define OPSTORE_QUEUE_MAX 100000u

/* Starts the writer when url is non-empty (borrowed; copied): connects in the background. Without
 * a url the store is off and every write completes at once with ok = false. 0 or LW_ENOMEM. */
int opstore_start(uv_loop_t *loop, const char *url);
/* Writes what is still queued (blocking, bounded), closes the connection and the handles. */
void opstore_stop(void);
/* True when a database is configured. */
bool opstore_enabled(void);

typedef void (*opstore_done_fn)(uint64_t cookie, bool ok);

/* A queued operation: req (borrowed) is its whole request as JSON. fn may be NULL. */
void opstore_op_put(uint64_t id, const char *ep, const char *kind, const char *path, int format,
                    const json_t *req, int64_t created_ms, opstore_done_fn fn, uint64_t cookie);
/* The operation was sent to its device: its row stays, marked sent, until it finishes, so a
 * restart knows it may have reached the device. */
void opstore_op_sent(uint64_t id);
/* The operation finished (succeeded, failed, timed out, cancelled). */
void opstore_op_del(uint64_t id);
/* A desired observation; attrs may be NULL, query is its Write-Attributes query ("" none). */
void opstore_obs_put(uint64_t id, const char *ep, const json_t *paths, bool composite,
                     const json_t *attrs, const char *query, int64_t created_ms);
void opstore_obs_del(uint64_t id);

/* Reads every unfinished operation (queued or sent; oldest first) and desired observation from
 * url, calling on_op(ctx, row) with {"id","endpoint","kind","path","format","request",
 * "created_ms","sent"} and
 * on_obs(ctx, row) with {"id","endpoint","paths","composite","attrs","created_ms"} (rows
 * borrowed for the call). Blocking; before the loops run. 0, or LW_EIO (logged: the database is
 * unreachable or the schema lacks the tables; the daemon starts without them). */
int opstore_load(const char *url, void (*on_op)(void *ctx, const json_t *row),
                 void (*on_obs)(void *ctx, const json_t *row), void *ctx);

/* Jobs waiting or in flight (for tests and /metrics). */
size_t opstore_queued(void);

#endif
