/* server/store/credstore.h - durable device credentials (table credentials, sealed with the master
 * key ring of secrets.h) and the control loop's durable-before-acknowledged database writes
 * (credentials, API tokens, audit rows).
 *
 * Writes go through one non-blocking libpq connection polled by the control loop (uv_poll on
 * PQsocket; never a blocking libpq call on the loop). Jobs run strictly one after the other in
 * submission order; each is one SQL statement (so one transaction) and completes with a callback
 * on the loop once PostgreSQL committed it or failed. A job's precheck runs right before it is
 * sent, after every earlier job completed, so "check memory, write the row, update memory" is
 * atomic with respect to the other jobs. A job that is not done within CREDSTORE_TIMEOUT_MS of its
 * submission (database down, unreachable, stuck) fails with LW_ETIMEDOUT; a broken connection fails
 * the job in flight and the queued ones with LW_EDB (the job in flight is first retried once on a
 * new connection when it got no answer at all: an idle connection is found closed only when used)
 * and the next job connects again.
 *
 * Restore (credstore_restore) and `lwm2md rekey` (credstore_cli_rekey) use blocking libpq: only at
 * start-up before any loop runs, or from the CLI.
 *
 * Threads: control thread, except where stated.
 */
#ifndef LWM2MD_STORE_CREDSTORE_H
#define LWM2MD_STORE_CREDSTORE_H

#include "config.h"
#include "creds.h"
#include "secrets.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#define CREDSTORE_TIMEOUT_MS 5000u
#define CREDSTORE_QUEUE_MAX  1024u
#define CREDSTORE_MAX_PARAMS 12

/* Completion of a job, on the loop: rc is 0 (committed), LW_EEXIST (unique violation, SQLSTATE
 * 23505), LW_EDB (other database error, connection lost, or the store stopped), LW_ETIMEDOUT, or
 * what the precheck returned (then nothing was sent). val0 is the first column of the first row
 * returned, as text (NULL when none); why a one-line reason when rc != 0 (never a parameter value).
 * Both are valid during the call only. */
typedef void (*credstore_done_fn)(void *ctx, int rc, const char *val0, const char *why);
/* Runs just before the job is sent; a non-zero return completes the job with it, unsent. */
typedef int (*credstore_check_fn)(void *ctx);
/* Receives each row set the statement returns (binary format), before done. */
typedef void (*credstore_rows_fn)(void *ctx, const PGresult *res);

struct credstore_job {
    const char *sql; /* borrowed: static text */
    int nparams;
    const char *values[CREDSTORE_MAX_PARAMS]; /* copied at submission */
    int lengths[CREDSTORE_MAX_PARAMS];        /* for binary parameters */
    int formats[CREDSTORE_MAX_PARAMS];        /* 0 text, 1 binary */
    credstore_check_fn check;                 /* may be NULL */
    credstore_rows_fn rows;                   /* may be NULL: then results are text and done
                                                 gets the first value */
    credstore_done_fn done;
    void *ctx;
};

/* Starts the store on loop (borrowed) when cfg->db_url is set; connects on first use. Without a
 * database does nothing. 0 or LW_ENOMEM. */
int credstore_start(uv_loop_t *loop, const struct lw_config *cfg);
/* Fails what is queued with LW_EDB (callbacks run inside this call), closes the connection and its
 * handles (the caller runs the loop afterwards). */
void credstore_stop(void);
/* True once credstore_start saw a database.url: changes must then be written before they are
 * acknowledged. */
bool credstore_enabled(void);
/* Queues a job (its parameter values are copied). 0, LW_EINVAL (no database, not started, too many
 * parameters), LW_ELIMIT (CREDSTORE_QUEUE_MAX jobs waiting), LW_ENOMEM. On 0, job->done is called
 * exactly once, later, on the loop (never from inside this call). */
int credstore_submit(const struct credstore_job *job);

/* ---- credentials rows ------------------------------------------------------------------------ */

/* The credentials.kind of a mode ("psk", "rpk", "x509"), NULL for others. */
const char *credstore_kind(enum creds_mode mode);
/* Serialises and seals spec for endpoint ep under the ring's current key. Outputs: the identity
 * column (id, *id_len bytes, cap CREDS_ID_MAX: PSK identity, SPKI hash for RPK, certificate name or
 * empty for X.509) and the sealed blob (blob, *blob_len, cap CREDSTORE_BLOB_MAX). 0, LW_ENOENT (no
 * current key), LW_EINVAL (bad spec), or secrets_seal's codes. */
#define CREDSTORE_BLOB_MAX (4 + CREDS_KEY_MAX + 32 + SECRETS_OVERHEAD)
int credstore_seal(const struct secrets_ring *ring, const char *ep, const struct creds_spec *spec,
                   uint8_t *id, size_t *id_len, uint8_t *blob, size_t *blob_len);
/* Opens a row sealed by credstore_seal: fills spec (its id/key views point into idbuf/keybuf, which
 * the caller provides: CREDS_ID_MAX and CREDS_KEY_MAX bytes; wipe keybuf after use). 0,
 * LW_EMALFORMED (not a credentials record or kind mismatch) or secrets_open's codes. */
int credstore_open(const struct secrets_ring *ring, const char *ep, const char *kind,
                   const uint8_t *id, size_t id_len, const uint8_t *blob, size_t blob_len,
                   struct creds_spec *spec, uint8_t *idbuf, uint8_t *keybuf);

/* Loads every credentials row into the in-memory store (creds_put), opened with the daemon's ring
 * (secrets_ring()). A row that does not open (no key, wrong key, tampered, malformed) or clashes
 * is logged by endpoint and reason, never content, and skipped. Main thread at start-up before
 * the shards start (blocking libpq, connect bounded to 10 s). When the database cannot be read,
 * credstore_start retries in the background every 5 s until it can (endpoints changed through the
 * API meanwhile keep their newer credentials). 0 (also without database or when it is
 * unreachable: logged), or LW_ENOMEM. */
int credstore_restore(const struct lw_config *cfg);

/* `lwm2md rekey [--dry-run]`: argv[0] is "rekey". Re-seals every sealed row (credentials, and the
 * dtls_sessions / webhook_subscriptions rows that follow the secrets.h row convention) not under
 * the current master key, in one transaction. Rows that do not open are reported (table and key)
 * and left as they are. Exit status 0 (done, or nothing to do), 1 (a database failure: nothing
 * changed; or some rows did not open: the others were re-sealed), 2 (usage). Prints counts to
 * out, reasons to err. */
int credstore_cli_rekey(const struct lw_config *cfg, int argc, char **argv, FILE *out, FILE *err);

#endif
