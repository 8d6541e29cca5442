/* server/devices.h - northbound queries about registered devices, answered by the shards that own
 * them (scatter/gather over shard mailboxes, replies through the control mailbox).
 *
 * Threads: call on the control thread; `done` runs later on the control thread, exactly once per
 * accepted call (also during shutdown, with LW_ECANCELED). `cookie` identifies the caller's
 * request (e.g. an HTTP request id + generation); never a pointer that may dangle.
 * `result` is owned by the callee and freed after done returns (json_incref to keep it).
 *
 * Registration JSON (the API's Device schema; times RFC 3339 UTC):
 *   {"endpoint","registration_id","address","lwm2m_version","binding","queue_mode","lifetime_s",
 *    "registered_at","last_update","expires_at","sms","profile_id","security_mode",
 *    "objects":[{"id":3,"version":"1.1","instances":[0]}...]}
 */
#ifndef LW_SERVER_DEVICES_H
#define LW_SERVER_DEVICES_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef void (*lw_dev_done_fn)(uint64_t cookie, int err, json_t *result);

struct lw_dev_filter {
    const char *endpoint_prefix; /* NULL = any */
    const char *lwm2m_version;   /* "1.0" / "1.1" / "1.2", NULL = any */
    const char *binding;         /* exact binding string, e.g. "U" / "UQ", NULL = any */
    int queue_mode;              /* -1 any, 0 not in queue mode, 1 queue mode */
};

/* Lists registrations in endpoint byte order, starting strictly after `cursor` (NULL: from the
 * start), at most `limit` (1..1000). result: {"devices":[...], "next_cursor": "ep" | null}.
 * 0 when accepted, or a negative LW_E* code (done not called). */
int lw_devices_list(const struct lw_dev_filter *f, const char *cursor, size_t limit,
                    lw_dev_done_fn done, uint64_t cookie);
/* One registration; err LW_ENOENT when the endpoint is not registered. */
int lw_devices_get(const char *endpoint, lw_dev_done_fn done, uint64_t cookie);
/* Forced de-registration (admin); posts a `deregistered` event with "reason":"api".
 * err LW_ENOENT when not registered. result: the removed registration. */
int lw_devices_deregister(const char *endpoint, lw_dev_done_fn done, uint64_t cookie);

#endif
