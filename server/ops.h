/* server/ops.h - the operations engine: LwM2M Device Management requests the server originates
 * (protocol.md §4.3), driven by the HTTP API. Every call creates an operation resource that
 * lives on the control thread (id, state queued/sent/succeeded/failed/timeout, CoAP code,
 * result, timings); its request travels to the shard that owns the device (by mailbox, carrying
 * ids), which encodes it for the device (format by request, else by the device's LwM2M
 * version), hands it to the peer's CoAP endpoint (NSTART = 1: later requests wait in order) and
 * posts the outcome back. Results become `operation` events. Requests for a device in queue mode
 * that is asleep are held on its shard (bounded) and sent in order after its next uplink; such
 * operations are `queued` and their timeout starts when they are sent. Send (POST /dp) from
 * devices is answered here too (`send` events).
 *
 * Threads: ops_start/ops_stop/ops_submit/ops_json/ops_wait on the control thread. The ops_coap_*
 * and ops_uplink/ops_dev_request hooks are called by registry.c on a shard thread.
 */
#ifndef LW_SERVER_OPS_H
#define LW_SERVER_OPS_H

#include "coap/coap.h"
#include "lwm2m/value.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

enum ops_kind {
    OPS_READ,
    OPS_DISCOVER,
    OPS_WRITE,         /* replace: PUT */
    OPS_WRITE_PARTIAL, /* partial update: POST */
    OPS_EXECUTE,
    OPS_CREATE,
    OPS_DELETE,
    OPS_ATTRIBUTES,      /* Write-Attributes: PUT with the query, no payload */
    OPS_OBSERVE,         /* GET + Observe 0; notifications follow (observe.h) */
    OPS_OBSERVE_CANCEL,  /* active cancel: GET + Observe 1 with the observation's token */
    OPS_READ_COMPOSITE,  /* FETCH / with a SenML path list (body: {"paths":[...]}) */
    OPS_WRITE_COMPOSITE, /* iPATCH / with values (body: {"values":[...]}) */
    OPS__COUNT
};

enum ops_state { OPS_QUEUED, OPS_SENT, OPS_SUCCEEDED, OPS_FAILED, OPS_TIMEOUT };

#define OPS_FORMAT_DEFAULT 0xffff

struct ops_spec {
    enum ops_kind kind;
    const char *endpoint;    /* borrowed */
    struct lw_m2m_path path; /* target */
    uint16_t format;         /* content format, or OPS_FORMAT_DEFAULT */
    json_t *body;            /* borrowed (incref'd when kept): values for Write/Create */
    const char *args;        /* Execute arguments (borrowed), NULL = none */
    uint32_t timeout_ms;     /* 0: the default */
    const char *query;       /* Write-Attributes query "pmin=1&pmax=5" (borrowed) */
    uint64_t obs_id;         /* OPS_OBSERVE / OPS_OBSERVE_CANCEL: the observation (observe.h) */
    uint64_t obs_op;         /* OPS_OBSERVE_CANCEL: the operation that established it */
    bool composite;          /* OPS_OBSERVE / _CANCEL: Observe-Composite, body {"paths":[...]} */
};

/* Defaults; zero fields mean the values shown. */
struct ops_cfg {
    uint32_t timeout_ms;      /* 60 s: an operation not completed by then is `timeout` */
    uint32_t wait_default_ms; /* 5 s: ?wait when not given */
    uint32_t history;         /* 10000 finished operations kept for GET */
    uint32_t awake_ms;        /* 93 s (MAX_TRANSMIT_WAIT): a queue-mode device is awake this
                                 long after each uplink (Register, Update, Send) */
    uint32_t max_held;        /* 16 requests held per sleeping device; more fail at once */
    const char *db_url;       /* NULL/"": no persistence; else held requests and desired
                                 observations are kept in PostgreSQL (store/opstore.h) and
                                 restored by ops_start (borrowed for the call) */
};

/* 0 or LW_ENOMEM. cfg may be NULL. */
int ops_start(uv_loop_t *loop, const struct ops_cfg *cfg);
/* The device registered (control thread, from the event bus): restored requests that waited
 * for it go to its shard. */
void ops_registered(const char *ep);
/* Fails waiting requests, frees every operation, closes the timer. */
void ops_stop(void);
uint32_t ops_wait_default_ms(void);

/* Creates an operation and sends its request to the device's shard: 0 with *id set,
 * LW_ENOENT (endpoint not registered), LW_EINVAL, LW_ENOMEM or LW_ECANCELED (stopping). */
int ops_submit(const struct ops_spec *s, uint64_t *id);
/* The operation resource as JSON (new reference), or NULL when unknown/evicted. */
json_t *ops_json(uint64_t id);

/* Calls fn(cookie, op_json, final) once: when the operation completes (final = true) or after
 * ms (final = false), whichever first; at once when it already completed. op_json is borrowed.
 * 0 or LW_ENOENT / LW_ENOMEM. */
typedef void (*ops_wait_fn)(uint64_t cookie, json_t *op, bool final);
int ops_wait(uint64_t id, uint32_t ms, ops_wait_fn fn, uint64_t cookie);

const char *ops_kind_name(enum ops_kind k);
/* Forgets the shard-side state of the observation established by operation obs_op, without
 * telling the device (passive cancel: its next notification gets a Reset, RFC 7641 §3.6). */
void ops_observe_forget(const char *endpoint, uint64_t obs_op);
const char *ops_state_name(enum ops_state s);

/* ---- hooks for registry.c (shard thread) ---- */
struct regsrv;
struct peer;
void ops_coap_response(void *ctx, struct lw_coap_ep *ep, struct lw_coap_handle h, uint64_t cookie,
                       int result, const struct lw_coap_msg *msg);
void ops_coap_notify(void *ctx, struct lw_coap_ep *ep, struct lw_coap_handle h, uint64_t cookie,
                     const struct lw_coap_msg *msg, unsigned flags);
/* The device (id, gen) registered (registered = true) or updated. */
void ops_uplink(struct regsrv *r, uint64_t id, uint32_t gen, bool registered);
/* The registration of endpoint ep moved from peer `from` to peer `to` of this shard (its
 * address changed): its established observations follow (same tokens). Call before `from` is
 * settled. */
void ops_peer_moved(struct regsrv *r, const char *ep, struct peer *from, struct peer *to);
/* The registration of endpoint ep leaves this shard: for shard `to` (migration, keep_obs: its
 * observations are detached from peer `from` and follow it), or, with to < 0, because a Register
 * on the shard the directory now names replaced it (its observations are forgotten: the device
 * forgot them too, and observe.c establishes them again). Held requests follow in order, by
 * message (ownership moves; nothing is shared). Call before `from` is settled; from may be NULL. */
void ops_handover(struct regsrv *r, const char *ep, struct peer *from, int to, bool keep_obs);
/* A device request other than registration (Send POST /dp). true when answered. */
bool ops_dev_request(struct regsrv *r, struct peer *p, const struct lw_coap_msg *m);

#endif
