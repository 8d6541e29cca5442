/* server/observe.h - observations as desired state, and the last-known values cache.
 *
 * Observations created through the API (POST /api/v1/devices/{ep}/observations) are kept on the
 * control thread until deleted: each is established with an OPS_OBSERVE operation (after an
 * OPS_ATTRIBUTES one when attributes were given) and established again after the device
 * registers again. Notifications are `notification` events posted by the shard.
 *
 * The values cache keeps, per endpoint, the last value of every path seen in a successful Read,
 * a notification or a Send, with its time and source; it is dropped when the device
 * de-registers or expires.
 *
 * Threads: everything on the control thread (the cache and re-establishment follow the event
 * bus, which runs its sinks there).
 */
#ifndef LW_SERVER_OBSERVE_H
#define LW_SERVER_OBSERVE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* loop: the control loop (borrowed), for the re-establishment retry timer. */
int observe_start(uv_loop_t *loop);
void observe_stop(void);

/* Creates an observation of `paths` (array of path strings; one path unless composite) with
 * optional attributes (object: pmin, pmax, gt, lt, st, epmin, epmax, edge, con, hqmax). 0 with
 * *out (new reference: the observation JSON); LW_ENOENT unknown device; LW_EINVAL with err. */
int observe_create(const char *endpoint, const json_t *paths, const json_t *attrs, bool composite,
                   json_t **out, char *err, size_t cap);
/* The observations of endpoint (new reference: array). */
json_t *observe_list(const char *endpoint);
/* Deletes observation id of endpoint; active sends an active cancel. 0 or LW_ENOENT. */
int observe_delete(const char *endpoint, uint64_t id, bool active);
/* The cached values of endpoint: {"values":[{"path","type","value","timestamp","source"}]}
 * (new reference; an empty list when nothing is known). */
json_t *observe_values(const char *endpoint);

/* Hooks of ops.c: the establishing operation of observation obs_id finished in state (enum
 * ops_state) with CoAP code (0 = none). A timeout or 5.xx is retried with backoff (bounded:
 * state "retrying", then "failed"); 4.04, 4.05 and other refusals mark it failed with the reason
 * in "error". */
void observe_op_done(uint64_t obs_id, uint64_t op_id, int state, uint8_t code, const char *why);
/* The device ended observation obs_id (error notification or Reset). */
void observe_ended(uint64_t obs_id, uint64_t op_id);

/* Restore at start (ops.c, before the loop runs): observation ids start at `first` or above;
 * observe_restore_row puts back one desired observation read by opstore_load (state "pending":
 * established when the device next registers or updates). */
void observe_seed_ids(uint64_t first);
void observe_restore_row(void *ctx, const json_t *row);

/* Write-Attributes query from a JSON object of attributes, validated: 0 with the query in q
 * ("pmin=1&pmax=5"), LW_EINVAL with the reason in err. */
int observe_attr_query(const json_t *attrs, char *q, size_t qcap, char *err, size_t ecap);

#endif
