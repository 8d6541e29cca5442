/* server/store/pgc.h - one non-blocking PostgreSQL connection on a uv loop with a FIFO of
 * queries: connects in the background (PQconnectStart/PQconnectPoll on uv_poll), sends one query
 * at a time with PQsendQueryParams (text parameters), reports each result to its callback and
 * reconnects with exponential backoff (100 ms .. 10 s) after a failure. No blocking libpq call
 * is made on the loop. Used by the telemetry writer and the telemetry/SSE-resume queries.
 *
 * Ownership: pgc_new copies the URL (a secret: never logged); pgc_query takes the parameter
 * strings it is given (malloc'd, freed after sending). A callback gets the PGresult borrowed
 * (NULL when the connection failed before the query completed: `lost` says so).
 * Threads: everything on the loop's thread.
 */
#ifndef LWM2MD_STORE_PGC_H
#define LWM2MD_STORE_PGC_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

struct pgc;

/* res: the first result that is not OK, or the last one (NULL if the connection broke: then
 * err says why). */
typedef void (*pgc_done_fn)(void *ctx, const PGresult *res, const char *err);
/* Called on every connection state change (true: connected). */
typedef void (*pgc_state_fn)(void *ctx, bool up);

/* NULL on OOM. `name` labels log lines ("telemetry"). */
struct pgc *pgc_new(uv_loop_t *loop, const char *url, const char *name, pgc_state_fn on_state,
                    void *ctx);
/* Closes the connection; queued queries complete with res NULL, err "stopping". Handles close
 * on the next loop turn. */
void pgc_free(struct pgc *c);
bool pgc_up(const struct pgc *c);
/* Queries queued or in flight. */
size_t pgc_pending(const struct pgc *c);
/* Queues sql (borrowed: must outlive the query, normally a literal) with n text parameters
 * (taken: each malloc'd or NULL for SQL NULL). When the connection is down the query waits for
 * it unless fail_fast, in which case it completes at once with res NULL. 0 or LW_ENOMEM (then
 * the parameters are freed and done is not called). */
int pgc_query(struct pgc *c, const char *sql, int n, char **params, bool fail_fast,
              pgc_done_fn done, void *ctx);

#endif
