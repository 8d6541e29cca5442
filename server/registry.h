/* server/registry.h - the LwM2M registration interface of one shard (protocol.md §4.2), driven
 * without sockets or libuv: feed datagrams with regsrv_input(addr, bytes, now), advance time with
 * regsrv_advance(now), arm a timer for regsrv_next_deadline(). Bytes to send, cross-shard
 * messages and events leave through the ops callbacks. The shard thread (shard.c) wraps it with
 * its UDP sockets and loop; the unit tests and the server_rx fuzz target drive it directly with
 * a fake clock.
 *
 * Register  POST /rd?ep=&lt=&lwm2m=&b=&sms=&Q&pid=   -> 2.01 Location-Path rd/<id>
 *           4.12 for an unsupported lwm2m version, 4.00 (+ text/plain diagnostic) for a missing or
 *           invalid parameter or object list, 5.03 when registration.max is reached.
 * Update    POST /rd/<id>[?lt=&b=&Q&sms=] [payload]      -> 2.04, 4.04 unknown id, 4.00 bad input
 * De-reg    DELETE /rd/<id>                              -> 2.02, 4.04 unknown id
 * Object lists are interned process-wide (identical lists share one immutable, refcounted copy
 * of their canonical link format); the intern table's lock is taken only for Registers and
 * Updates that carry a payload. Lifetime expiry runs on the shard's timer wheel (one timer per
 * peer covers its CoAP deadlines and its registration's expiry).
 *
 * Threads: reg_global_* on the control thread before/after the shards run; one struct regsrv per
 * shard, used only by its thread. Ownership is stated per function.
 */
#ifndef LW_SERVER_REGISTRY_H
#define LW_SERVER_REGISTRY_H

#include "base/arena.h"
#include "base/clock.h"
#include "base/timer.h"
#include "coap/coap.h"
#include "config.h"
#include "devices.h"
#include "dir.h"
#include "events.h"
#include "peer.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* ---- process-wide state: object registry, intern table, profiles, directory ---- */

/* Loads the object registry (built-ins + cfg->objects_dir), the configured profiles
 * (cfg->reg_profiles_file) and initialises the directory. cfg may be NULL (all defaults, no
 * files). Errors are described in err. 0, LW_ECONFIG (a file could not be loaded) or LW_ENOMEM. */
int reg_global_init(const struct lw_config *cfg, char *err, size_t errlen);
void reg_global_deinit(void);
/* Interned object lists and known profiles (for metrics and tests). */
size_t reg_interned_count(void);
size_t reg_profile_count(void);

/* ---- one shard's registration service ---- */

enum regsrv_drop {
    RS_DROP_MALFORMED, /* not a CoAP message, or rejected by the CoAP layer */
    RS_DROP_PEERS_FULL,
    RS_DROP_NOMEM,
    RS_DROP_SEND,    /* the socket refused a datagram (counted by the shard) */
    RS_DROP_FORWARD, /* for another shard, whose queue of forwarded datagrams was full (shard.c) */
    RS_DROP__COUNT
};

enum regsrv_result {
    RS_REG_CREATED,  /* 2.01, new endpoint */
    RS_REG_REPLACED, /* 2.01, replaced an earlier registration of the endpoint */
    RS_REG_BAD,      /* 4.00 */
    RS_REG_VERSION,  /* 4.12 */
    RS_REG_FULL,     /* 5.03 */
    RS_UPD_OK,
    RS_UPD_NOT_FOUND,
    RS_UPD_BAD,
    RS_DEREG_OK,
    RS_DEREG_NOT_FOUND,
    RS_EXPIRED,
    RS_OTHER_REQUEST, /* 4.04 / 4.05 for other resources and methods */
    RS_FORBIDDEN,     /* 4.03: endpoint not bound to the DTLS identity, or another security */
    RS__COUNT
};

/* Counters, written by the shard thread only and read by the metrics writer (relaxed). */
struct regsrv_stats {
    _Atomic uint64_t rx, tx;
    _Atomic uint64_t drops[RS_DROP__COUNT];
    _Atomic uint64_t results[RS__COUNT];
    _Atomic uint64_t peers, regs;
};

struct regsrv_cfg {
    uint32_t lifetime_default_s; /* 0: 86400 */
    uint32_t lifetime_min_s;     /* 0: 1 */
    uint32_t lifetime_max_s;     /* 0: 4294967 */
    uint32_t expiry_grace_ms;
    uint32_t max_regs;  /* whole server (directory size); 0 = unlimited */
    uint32_t max_peers; /* this shard; 0 = unlimited */
    unsigned nshards;   /* shards in the process (ids naming others are forwarded); 0: 1 */
    struct lw_coap_cfg coap;
    struct lw_clock *clock; /* wall clock for timestamps; NULL: system */
};

/* Fills a regsrv_cfg from the daemon configuration. */
void regsrv_cfg_from(struct regsrv_cfg *rc, const struct lw_config *cfg);

/* An Update or De-register that reached a shard other than the one holding the registration
 * (the device's address moved, e.g. NAT rebinding, and the kernel steers it elsewhere). The
 * receiving shard forwards it to the holder; the holder answers a De-register itself, and for an
 * Update hands the registration over (migration: ownership moves with the message, nothing is
 * shared), after which the receiving shard applies the Update and answers it. The shard that
 * issued the id keeps its slot marked "moved to shard X" (no extra memory) so later requests
 * reaching it are forwarded on; holders tell it where the registration went and when it is gone. */
enum regsrv_fwd_kind {
    RS_FWD_REQ,   /* request on its way to the holder */
    RS_FWD_REPLY, /* the holder's answer on its way back */
    RS_FWD_MOVED, /* to the issuing shard: the registration now lives on `where` */
    RS_FWD_GONE,  /* to the issuing shard: the registration is gone; free its slot */
};

/* Security of a datagram: NoSec, or the endpoint a DTLS identity is bound to (creds.h). A
 * Register over DTLS must name that endpoint (else 4.03); a Register over NoSec must name an
 * endpoint without credentials (ops->ep_secured). Updates and De-registers may touch a
 * registration only with the same security: NoSec for NoSec, a DTLS identity bound to the
 * registration's endpoint for DTLS (ETS int-401); otherwise 4.03. */
enum regsrv_secmode { RS_SEC_NOSEC = 0, RS_SEC_PSK = 1, RS_SEC_RPK = 2, RS_SEC_X509 = 3 };
struct regsrv_sec {
    uint8_t mode;   /* enum regsrv_secmode */
    uint8_t ep_len; /* bound endpoint (not NUL-terminated), when mode != NOSEC */
    const char *ep;
};

struct regsrv_fwd {
    struct xmsg m;    /* transport for the shard layer */
    uint8_t sec_mode; /* security of the forwarded request (struct regsrv_sec) */
    uint8_t sec_len;
    char sec_ep[DIR_MAX_NAME + 1];
    unsigned from; /* shard that received the request */
    uint8_t kind;  /* enum regsrv_fwd_kind */
    uint8_t code;  /* De-register result (2.02 / 4.04) */
    uint8_t hops;
    uint8_t where;
    uint64_t id;
    struct reg *moved; /* owned: the migrating registration, or NULL */
    struct peer_addr addr;
    size_t len;
    uint8_t data[]; /* the request datagram */
};

/* What the write-behind store keeps of a registration change (regsrv_ops.persist). */
struct regsrv_change {
    enum lw_event_type type;      /* LW_EV_REGISTERED, _UPDATED, _DEREGISTERED or _EXPIRED */
    uint64_t id;                  /* registration id */
    const char *ep;               /* endpoint name, NUL-terminated */
    const struct peer_addr *addr; /* last source address, or NULL */
    uint8_t ver;                  /* major << 4 | minor */
    uint8_t sec;                  /* enum regsrv_secmode */
    bool queue;
    const char *binding;
    uint32_t lifetime_s;
    int64_t registered_s, updated_s, expires_s; /* wall clock, Unix seconds */
    const char *sms, *pid;                      /* NULL when absent */
    json_t *objs; /* the shared, immutable "objects" array (json_incref to keep it), or NULL */
};

struct regsrv_ops {
    /* Sends one datagram (bytes borrowed for the call). Required. */
    void (*send)(void *ctx, const struct peer_addr *to, const uint8_t *data, size_t len);
    /* Another shard holds a registration that a new Register replaced: ask it to drop (id, gen)
     * (regsrv_drop with reason "replaced"). NULL: single-shard use. */
    void (*drop_remote)(void *ctx, unsigned shard, uint64_t id, uint32_t gen);
    /* Posts f (takes ownership) to shard `shard`, whose thread calls regsrv_fwd_run; when it
     * cannot be delivered, call regsrv_fwd_free. NULL: no forwarding (4.04). */
    void (*post_fwd)(void *ctx, unsigned shard, struct regsrv_fwd *f);
    /* An event (takes ownership). NULL: lw_events_post. */
    void (*event)(void *ctx, struct lw_event *ev);
    /* True when endpoint ep (len bytes) has DTLS credentials, so a NoSec Register of it is
     * refused (4.03). NULL: none has. Any thread may call it (creds_ep_secured). */
    bool (*ep_secured)(void *ctx, const char *ep, size_t len);
    /* A registration change for the write-behind store (store.h), called on the shard thread
     * for every registered, updated (heartbeats included), deregistered and expired event,
     * before the event is posted; c and what it points to are borrowed for the call. NULL: none. */
    void (*persist)(void *ctx, const struct regsrv_change *c);
};

struct reg;
struct reg_memo_ent;
struct reg_snap;
#define REGSRV_MEMO_SLOTS 32  /* validated object-list payloads remembered per shard */
#define REGSRV_MEMO_MAX   512 /* longest payload remembered */

/* Where a datagram seems to carry a Register's endpoint name (a quick look at the raw bytes, not
 * a parse: a wrong guess only wastes a prefetch), and that name's directory hash. */
struct regsrv_ep_hint {
    const uint8_t *ep; /* NULL: none */
    size_t len;
    uint64_t hash; /* dir_hash(ep, len) */
};

struct regsrv {
    unsigned shard;
    struct regsrv_cfg cfg;
    const struct regsrv_ops *ops;
    void *ctx;
    struct lw_coap_env env;
    struct lw_coap_ops coap_ops;
    struct lw_wheel wheel;
    struct peer_table peers;
    struct reg **slots;   /* registration table by slot; free slots are tagged indexes */
    struct lw_hmap moved; /* registrations migrated here from other shards, by id */
    struct lw_hmap b1s;   /* block-wise bodies being received, by peer (peer.has_b1) */
    uint32_t nslots, free_head;
    uint32_t next_gen;
    struct lw_arena arena;         /* per-datagram scratch */
    struct lw_arena jarena;        /* scratch for building JSON */
    struct peer *busy;             /* peer whose callback is running: not freed until it returns */
    uint64_t now;                  /* time of the current input or timer */
    struct regsrv_ep_hint ep_hint; /* of the datagram being handled (regsrv_ep_hint), or zero */
    int64_t wall_ms;               /* wall clock read at monotonic time wall_at (regsrv_wall_ms) */
    uint64_t wall_at;
    struct lw_bytes cur_dgram;            /* the datagram being processed (for forwarding) */
    const struct lw_coap_msg *block1_req; /* final block of a block-wise request being handled */
    const struct regsrv_sec *sec;         /* security of the datagram being handled (NULL: NoSec) */
    bool closing;                         /* regsrv_deinit: no messages to other shards */
    uint8_t rkey[16];                     /* random stream (when cfg.coap.random is NULL) */
    uint64_t rctr;
    struct reg_memo_ent *memo[REGSRV_MEMO_SLOTS]; /* owned entries (registry.c) */
    bool hold_events;      /* events wait in `held` until regsrv_events_flush (a batch) */
    struct reg_snap *held; /* owned: event snapshots not yet posted, oldest first */
    struct reg_snap **held_tail;
    struct regsrv_stats stats;
};

/* 0, LW_EINVAL or LW_ENOMEM. shard < 256. ops and ctx borrowed. */
int regsrv_init(struct regsrv *r, unsigned shard, const struct regsrv_cfg *cfg,
                const struct regsrv_ops *ops, void *ctx, uint64_t now);
/* Frees every peer and registration without posting events (shutdown). */
void regsrv_deinit(struct regsrv *r);
/* One datagram from `from` (borrowed). */
void regsrv_input(struct regsrv *r, const struct peer_addr *from, const uint8_t *data, size_t len,
                  uint64_t now);
/* The same for a datagram that arrived with security sec (borrowed; NULL: NoSec), e.g. the
 * plaintext of a DTLS record. */
void regsrv_input_sec(struct regsrv *r, const struct peer_addr *from, const struct regsrv_sec *sec,
                      const uint8_t *data, size_t len, uint64_t now);
/* Fills *out for data; when it finds a name, prefetches its directory slots (dir_prefetch). The
 * shard does this for each datagram of a receive batch as it arrives and sets r->ep_hint to the
 * datagram's hint while handling it: a Register whose parsed name is the same bytes (same
 * address and length) uses the hash instead of computing it again. */
void regsrv_ep_hint(const uint8_t *data, size_t len, struct regsrv_ep_hint *out);
/* regsrv_input (NoSec) for an address whose peer_hash the caller already computed. */
void regsrv_input_hashed(struct regsrv *r, const struct peer_addr *from, uint64_t from_hash,
                         const uint8_t *data, size_t len, uint64_t now);
/* Posts the events held while hold_events was set (the shard sets it during a receive batch so
 * the batch's events reach the control thread as one message). */
void regsrv_events_flush(struct regsrv *r);
/* Runs due timers (retransmissions, dedup expiry, lifetime expiry). */
void regsrv_advance(struct regsrv *r, uint64_t now);
/* Earliest time regsrv_advance has work, or UINT64_MAX. */
uint64_t regsrv_next_deadline(const struct regsrv *r);
/* Runs a forwarded request or its reply on this shard (takes ownership of f). */
void regsrv_fwd_run(struct regsrv *r, struct regsrv_fwd *f, uint64_t now);
/* Frees an undeliverable f, including a registration in transit (any thread). */
void regsrv_fwd_free(struct regsrv_fwd *f);
/* Drops registration (id, gen) if this shard still holds it, posting `deregistered` with
 * reason ("replaced", "api", ...). *json (may be NULL) gets the removed registration (owned).
 * 0 or LW_ENOENT. */
int regsrv_drop(struct regsrv *r, uint64_t id, uint32_t gen, const char *reason, json_t **json);
/* The registration JSON (devices.h schema) of (id, gen): 0 with *json owned, or LW_ENOENT. */
int regsrv_get_json(struct regsrv *r, uint64_t id, uint32_t gen, json_t **json);
/* ---- device management (ops.c) ---- */
struct regsrv_dev {
    struct peer *peer; /* borrowed: valid on this shard's thread until the next event */
    uint8_t ver;       /* LwM2M version, major << 4 | minor */
    bool queue;        /* registered in queue mode */
    const char *ep;    /* endpoint name (borrowed) */
    uint64_t id;       /* registration id and generation */
    uint32_t gen;
};
/* Facts about registration (id, gen) on this shard: 0 or LW_ENOENT (gone, or not bound). */
int regsrv_dev_find(struct regsrv *r, uint64_t id, uint32_t gen, struct regsrv_dev *out);
/* The same for the registration bound to peer p: 0 or LW_ENOENT (p has none). */
int regsrv_peer_dev(struct regsrv *r, struct peer *p, struct regsrv_dev *out);
/* A type resolver context for the device bound to p: its announced object versions, parsed into
 * links (memory from a; borrowed by ctx). 0, LW_ENOENT (no object list: ctx falls back to the
 * newest versions) or LW_ENOMEM. */
struct lw_m2m_reg_links;
struct lw_m2m_reg_types_ctx;
int regsrv_dev_types(struct regsrv *r, const struct peer *p, struct lw_arena *a,
                     struct lw_m2m_reg_links *links, struct lw_m2m_reg_types_ctx *ctx);
/* The process-wide object registry (read-only after reg_global_init; any thread). */
struct lw_m2m_registry;
const struct lw_m2m_registry *regsrv_objreg(void);
/* A DTLS session with a Connection ID authenticated a record from a new address (RFC 9146 §6,
 * NAT rebinding): the peer at `from` (its CoAP exchanges and registration) moves to `to` at
 * once, so server-initiated requests and responses to them follow before the next Update. A
 * registration bound to a peer already at `to` is dropped ("replaced": one address is one
 * device, as for an Update from that address) and that peer freed (its exchanges cancelled).
 * An "updated" event (heartbeat class) carries a new IP address or port (none when only the
 * listener socket differs, as when a saved DTLS session is restored). Not from inside a regsrv
 * callback. 0, or LW_ENOENT when no peer is at `from`. */
int regsrv_peer_moved(struct regsrv *r, const struct peer_addr *from, const struct peer_addr *to,
                      uint64_t now);
/* Re-arms p's timer after work was queued on p->ep outside a datagram or timer callback. */
void regsrv_peer_settle(struct regsrv *r, struct peer *p, uint64_t now);

/* ---- restore at start (store/restore.c), before the shard's thread and sockets run ---- */
struct regsrv_saved {
    uint64_t id;           /* registration id as issued (by this shard or another) */
    const char *ep;        /* endpoint name, NUL-terminated (borrowed) */
    struct peer_addr addr; /* last source address (sock 0) */
    uint8_t ver;           /* major << 4 | minor */
    uint8_t sec;           /* enum regsrv_secmode */
    bool queue;
    char binding[7];
    uint32_t lifetime_s, registered_s, updated_s;
    int64_t expires_ms;   /* wall clock: when the registration expires */
    const char *sms;      /* NULL or borrowed */
    const char *pid;      /* NULL or borrowed */
    const uint8_t *links; /* CoRE link format object list (borrowed), may be empty */
    size_t links_len;
};
/* Puts a saved registration back under its id (no event is posted; the directory learns it).
 * An id another shard issued (or a shard this run does not have) is held as a migrated
 * registration is: the issuer's slot is marked with regsrv_restore_moved. Only between
 * regsrv_init and regsrv_restore_done, and for one shard on one thread at a time. 0, LW_EINVAL
 * (bad name or object list), LW_EEXIST (slot, id or endpoint already restored), LW_ETIMEDOUT
 * (already expired) or LW_ENOMEM. */
int regsrv_restore(struct regsrv *r, const struct regsrv_saved *sv, uint64_t now);
/* On the issuing shard: the registration `id` it issued is restored on shard `to` (where its
 * device's datagrams arrive), so requests for it are forwarded there. 0, LW_EEXIST (slot in
 * use) or LW_ENOMEM. Same rules as regsrv_restore. */
int regsrv_restore_moved(struct regsrv *r, uint64_t id, unsigned to);
/* Rebuilds the free slot list after restores. */
void regsrv_restore_done(struct regsrv *r);

/* Registrations matching f with endpoint > cursor (NULL: all), the `limit` smallest in endpoint
 * byte order, as a JSON array (owned) sorted by endpoint. *more is set when more matched. */
json_t *regsrv_list(struct regsrv *r, const struct lw_dev_filter *f, const char *cursor,
                    size_t limit, bool *more);
static inline size_t regsrv_reg_count(const struct regsrv *r)
{
    return (size_t)atomic_load_explicit(&r->stats.regs, memory_order_relaxed);
}
/* Heartbeat "updated" events skipped while the control thread lagged (any thread). */
uint64_t regsrv_events_coalesced(void);
/* Registration id text (11 base62 characters) <-> value. */
void regsrv_id_format(uint64_t id, char out[12]);
int regsrv_id_parse(const char *s, size_t len, uint64_t *id);
/* Bytes of heap held per registration by this shard's tables (slot + peer + record estimate),
 * for the benchmark's accounting. */
size_t regsrv_sizeof_record(void);

#endif
