/* server/store/telemetry.h - telemetry and event write-behind to PostgreSQL with spill files.
 *
 * Every value of a successful Read (read, read-composite, observe), of a notification and of a
 * Send becomes a row of `telemetry` (endpoint, path, time, source, typed value), and every event
 * of the bus a row of `events` (the SSE stream's history). Both are encoded once as framed records
 * (store/spill.h) into one queue, in event order, and written in batches (one statement per
 * batch, at most once thanks to a batch-id ledger) on a non-blocking libpq connection polled by
 * the control loop. The queue's memory is bounded (telemetry.memory); what does not fit, and
 * everything after it until the files are drained, is appended to spill files under
 * telemetry.spill_dir. Spill files are replayed in order when the database is reachable and
 * deleted once their records are committed; files left by a previous run are replayed too.
 * Graceful stop writes what is queued (blocking, bounded by a few seconds) and spills the rest.
 *
 * The daemon also maintains daily partitions (created two days ahead) and drops whole partitions
 * past telemetry.retention (schema/005_telemetry.sql), at connect and every hour.
 *
 * Threads: every function on the control thread, except lw_telemetry_get_stats (atomics).
 */
#ifndef LWM2MD_STORE_TELEMETRY_H
#define LWM2MD_STORE_TELEMETRY_H

#include "config.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct lw_telemetry_stats {
    uint64_t rows;         /* telemetry rows committed */
    uint64_t events;       /* event rows committed */
    uint64_t batches;      /* batches committed */
    uint64_t failed;       /* batches refused by the database (records lost; logged) */
    uint64_t spilled;      /* records written to spill files */
    uint64_t replayed;     /* records committed from spill files */
    uint64_t dropped;      /* records lost: spill file not writable */
    uint64_t queued;       /* records waiting in memory (gauge) */
    uint64_t queued_bytes; /* bytes of them (gauge) */
    uint64_t spill_files;  /* spill files on disk (gauge) */
    uint64_t spill_bytes;  /* their size (gauge) */
    bool connected;
    bool spilling;
};

/* Starts when cfg->db_url is set (otherwise returns 0 and does nothing): scans the spill
 * directory, sets the event bus's next id above every persisted one (a short blocking query: call
 * before the loops run) and connects in the background. 0, LW_ENOMEM or LW_EIO (spill directory
 * not usable: logged). */
int lw_telemetry_start(uv_loop_t *loop, const struct lw_config *cfg);
/* Stops listening to events, writes what is queued (blocking, bounded) and spills the rest;
 * handles close on the next loop run. */
void lw_telemetry_stop(void);
bool lw_telemetry_running(void);
void lw_telemetry_get_stats(struct lw_telemetry_stats *out);

/* Telemetry query (GET /api/v1/devices/{ep}/telemetry). Rows with at in [from_us, to_us), path
 * equal to or below `path` ("" = any), oldest first, after the cursor (NULL = from the start),
 * at most limit. done gets {"values":[...], "next_cursor": string|null} (new reference; NULL with
 * status 503 when the database is not reachable, 400 for a bad cursor). Runs on a connection of
 * its own; no blocking call. 0 or LW_ENOMEM / LW_EINVAL (bad cursor: done not called). */
typedef void (*lw_telemetry_done_fn)(void *ctx, int status, json_t *result);
int lw_telemetry_query(const char *ep, const char *path, int64_t from_us, int64_t to_us,
                       unsigned limit, const char *cursor, lw_telemetry_done_fn done, void *ctx);

/* Events with after < id < before from the events table, oldest first, at most limit: done gets
 * a JSON array of {id, type, time_ms, endpoint, data} (NULL, status 503 when unavailable). */
int lw_telemetry_events(uint64_t after, uint64_t before, unsigned limit, lw_telemetry_done_fn done,
                        void *ctx);

#endif
