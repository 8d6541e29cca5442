/* lib/coap/coap.h - CoAP (RFC 7252) codec, options, Block-wise (RFC 7959) helpers, Observe
 * (RFC 7641) freshness, and the per-peer exchange layer (dedup, CON retransmission, NSTART queue,
 * separate responses, observations, automatic Block1/Block2 for server-originated requests).
 *
 * Sans-IO: nothing here touches sockets, threads, clocks or globals. Time is passed in as `now`
 * (monotonic milliseconds); bytes to send leave through the ops->send callback; the caller arms a
 * timer for lw_coap_ep_next_deadline() and calls lw_coap_ep_timeout() when it fires.
 *
 * Threads: every function may be called from any thread, but one struct lw_coap_ep (and the
 * struct lw_coap_env it points to, unless it is only read) belongs to one thread at a time.
 */
#ifndef LW_COAP_COAP_H
#define LW_COAP_COAP_H

#include "base/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------------------------------------
 * Constants
 */
enum lw_coap_type {
    LW_COAP_CON = 0,
    LW_COAP_NON = 1,
    LW_COAP_ACK = 2,
    LW_COAP_RST = 3,
};

/* Code byte = class << 5 | detail (RFC 7252 §3). A response code is a value, not an error. */
#define LW_COAP_CODE(c, d)     ((uint8_t)(((c) << 5) | (d)))
#define LW_COAP_CODE_CLASS(x)  ((uint8_t)(x) >> 5)
#define LW_COAP_CODE_DETAIL(x) ((uint8_t)(x)&0x1f)

enum lw_coap_code {
    LW_COAP_EMPTY = 0x00,
    LW_COAP_GET = 0x01,
    LW_COAP_POST = 0x02,
    LW_COAP_PUT = 0x03,
    LW_COAP_DELETE = 0x04,
    LW_COAP_FETCH = 0x05,
    LW_COAP_PATCH = 0x06,
    LW_COAP_IPATCH = 0x07,
    LW_COAP_CREATED = 0x41,
    LW_COAP_DELETED = 0x42,
    LW_COAP_VALID = 0x43,
    LW_COAP_CHANGED = 0x44,
    LW_COAP_CONTENT = 0x45,
    LW_COAP_CONTINUE = 0x5f,
    LW_COAP_BAD_REQUEST = 0x80,
    LW_COAP_UNAUTHORIZED = 0x81,
    LW_COAP_BAD_OPTION = 0x82,
    LW_COAP_FORBIDDEN = 0x83,
    LW_COAP_NOT_FOUND = 0x84,
    LW_COAP_METHOD_NOT_ALLOWED = 0x85,
    LW_COAP_NOT_ACCEPTABLE = 0x86,
    LW_COAP_REQUEST_INCOMPLETE = 0x88,
    LW_COAP_CONFLICT = 0x89,
    LW_COAP_PRECONDITION_FAILED = 0x8c,
    LW_COAP_REQUEST_TOO_LARGE = 0x8d,
    LW_COAP_UNSUPPORTED_FORMAT = 0x8f,
    LW_COAP_UNPROCESSABLE = 0x96,
    LW_COAP_INTERNAL_ERROR = 0xa0,
    LW_COAP_NOT_IMPLEMENTED = 0xa1,
    LW_COAP_SERVICE_UNAVAILABLE = 0xa3,
};

static inline bool lw_coap_is_request(uint8_t code)
{
    return code != 0 && LW_COAP_CODE_CLASS(code) == 0;
}
static inline bool lw_coap_is_response(uint8_t code)
{
    uint8_t c = LW_COAP_CODE_CLASS(code);
    return c == 2 || c == 4 || c == 5;
}

/* Option numbers used by LwM2M (RFC 7252 Table 4, RFC 7641, RFC 7959, RFC 8613, RFC 9175). */
enum lw_coap_optnum {
    LW_COAP_OPT_IF_MATCH = 1,
    LW_COAP_OPT_URI_HOST = 3,
    LW_COAP_OPT_ETAG = 4,
    LW_COAP_OPT_IF_NONE_MATCH = 5,
    LW_COAP_OPT_OBSERVE = 6,
    LW_COAP_OPT_URI_PORT = 7,
    LW_COAP_OPT_LOCATION_PATH = 8,
    LW_COAP_OPT_OSCORE = 9,
    LW_COAP_OPT_URI_PATH = 11,
    LW_COAP_OPT_CONTENT_FORMAT = 12,
    LW_COAP_OPT_MAX_AGE = 14,
    LW_COAP_OPT_URI_QUERY = 15,
    LW_COAP_OPT_ACCEPT = 17,
    LW_COAP_OPT_LOCATION_QUERY = 20,
    LW_COAP_OPT_BLOCK2 = 23,
    LW_COAP_OPT_BLOCK1 = 27,
    LW_COAP_OPT_SIZE2 = 28,
    LW_COAP_OPT_PROXY_URI = 35,
    LW_COAP_OPT_PROXY_SCHEME = 39,
    LW_COAP_OPT_SIZE1 = 60,
    LW_COAP_OPT_ECHO = 252,
    LW_COAP_OPT_NO_RESPONSE = 258,
};

/* RFC 7252 §5.4.6 option number properties. */
static inline bool lw_coap_opt_critical(uint16_t num)
{
    return num & 1;
}
static inline bool lw_coap_opt_unsafe(uint16_t num)
{
    return num & 2;
}
static inline bool lw_coap_opt_nocachekey(uint16_t num)
{
    return (num & 0x1e) == 0x1c;
}

#define LW_COAP_MAX_TOKEN 8
/* Options per message: a message with more is malformed (LW_ELIMIT reason). */
#define LW_COAP_MAX_OPTS 32
/* Largest datagram the exchange layer will build on its stack (responses, notifications' ACKs,
 * blocks). Bigger messages must use block-wise transfer. */
#define LW_COAP_MAX_DGRAM 2048

/* ------------------------------------------------------------------------------------------------
 * Messages and the codec
 */

/* One option. Parsed options point into the datagram (val). Options added with
 * lw_coap_add_uint keep their value inline (val == NULL, bytes in ib): read values through
 * lw_coap_opt_data(). */
struct lw_coap_opt {
    const uint8_t *val;
    uint16_t num;
    uint16_t len;
    uint8_t ib[4];
};

static inline const uint8_t *lw_coap_opt_data(const struct lw_coap_opt *o)
{
    return o->val ? o->val : o->ib;
}

/* A message view. Parsing fills it with views into the datagram (no allocation); it is valid
 * while the datagram is. For building, zero it (or lw_coap_msg_init), set the fields and add
 * options in any order: the serializer emits them sorted by number (stable for repeats). */
struct lw_coap_msg {
    uint8_t type; /* enum lw_coap_type */
    uint8_t code;
    uint8_t tkl;
    uint8_t nopts;
    uint16_t mid;
    uint8_t token[LW_COAP_MAX_TOKEN];
    struct lw_bytes payload;
    struct lw_coap_opt opts[LW_COAP_MAX_OPTS];
};

static inline void lw_coap_msg_init(struct lw_coap_msg *m, uint8_t type, uint8_t code)
{
    m->type = type;
    m->code = code;
    m->tkl = 0;
    m->nopts = 0;
    m->mid = 0;
    m->payload = (struct lw_bytes){NULL, 0};
}

/* Why a datagram was rejected. */
enum lw_coap_reason {
    LW_COAP_R_OK = 0,
    LW_COAP_R_SHORT,           /* fewer than 4 bytes */
    LW_COAP_R_VERSION,         /* version != 1 (RFC 7252 §3: silently ignore) */
    LW_COAP_R_TKL,             /* TKL 9..15 (§3) */
    LW_COAP_R_TRUNCATED,       /* token, option header or value runs past the end */
    LW_COAP_R_EMPTY_NOT_EMPTY, /* code 0.00 with a token, options or payload (§4.1) */
    LW_COAP_R_OPT_NIBBLE15,    /* delta or length nibble 15 outside the payload marker (§3.1) */
    LW_COAP_R_OPT_NUMBER,      /* option number above 65535 */
    LW_COAP_R_EMPTY_PAYLOAD,   /* payload marker followed by nothing (§3) */
    LW_COAP_R_TOO_MANY_OPTS,   /* more than the configured option count */
    LW_COAP_R_BAD_CRITICAL, /* unrecognised or invalid critical option (§5.4.1, §5.4.3, §5.4.5) */
    LW_COAP_R_RESERVED_CLASS, /* code class 1, 6 or 7 (§4.2, §4.3) */
    LW_COAP_R_BAD_TYPE,       /* request in ACK/RST, or empty NON (§4.2, §4.3) */
    LW_COAP_R_OPT_LENGTH,     /* option length above 65535 (datagrams over 64 KiB only) */
};

/* Static lowercase description of an enum lw_coap_reason value (for logs and counters). */
const char *lw_coap_reason_str(unsigned reason);

/* What the receiver must do with a rejected message (RFC 7252 §4.2, §4.3, §5.4.1). */
enum lw_coap_action {
    LW_COAP_A_DROP = 0,   /* silently ignore */
    LW_COAP_A_RST,        /* send an RST echoing the MID (lw_coap_encode_empty) */
    LW_COAP_A_BAD_OPTION, /* CON request: answer 4.02 Bad Option piggybacked in an ACK */
};

struct lw_coap_perr {
    size_t offset;   /* byte offset of the problem in the datagram */
    uint16_t optnum; /* the offending option for LW_COAP_R_BAD_CRITICAL */
    uint8_t reason;  /* enum lw_coap_reason */
    uint8_t action;  /* enum lw_coap_action */
};

/* Parse limits; zero values mean defaults. */
struct lw_coap_parse_cfg {
    uint8_t max_opts; /* 0 or > LW_COAP_MAX_OPTS: LW_COAP_MAX_OPTS */
};

/* Parses a datagram (RFC 7252 §3, §3.1) into m, whose views borrow `data`. Purely syntactic: it
 * does not judge whether options are recognised (see lw_coap_check_opts). cfg may be NULL.
 * Returns 0, or LW_EMALFORMED with *err (if non-NULL) set: offset, reason and the action the RFC
 * prescribes (RST for a CON whose header was readable, otherwise drop). Never allocates. */
int lw_coap_parse(struct lw_coap_msg *m, const uint8_t *data, size_t len,
                  const struct lw_coap_parse_cfg *cfg, struct lw_coap_perr *err);

/* Checks a parsed message against the option registry (lw_coap_opt_info) and the message-type
 * rules: unrecognised critical options, out-of-range lengths of critical options (§5.4.3) and
 * repeats of non-repeatable critical options (§5.4.5) make it LW_EBADOPT; a request in an ACK or
 * RST, an empty NON, or a reserved code class make it LW_EPROTO. Unrecognised elective options are
 * ignored (§5.4.1). Returns 0 or that code with *err set (action: 4.02 for a CON request, RST for
 * other CON messages, drop otherwise). */
int lw_coap_check_opts(const struct lw_coap_msg *m, struct lw_coap_perr *err);

/* Serializes m (options sorted by number, stable) into out. The payload marker is written only
 * for a non-empty payload. Returns 0, LW_EINVAL (TKL > 8, type > 3, empty code with token,
 * options or payload, option count > LW_COAP_MAX_OPTS) or the buffer's status (LW_ENOSPC /
 * LW_ENOMEM). Never allocates when out is a fixed buffer. */
int lw_coap_serialize(const struct lw_coap_msg *m, struct lw_buf *out);

/* Writes an Empty message (ACK or RST, or a CON ping) with the given MID into out[4]. */
void lw_coap_encode_empty(uint8_t out[4], uint8_t type, uint16_t mid);

/* ------------------------------------------------------------------------------------------------
 * Options
 */
enum lw_coap_optfmt { LW_COAP_FMT_EMPTY, LW_COAP_FMT_OPAQUE, LW_COAP_FMT_UINT, LW_COAP_FMT_STRING };

struct lw_coap_optinfo {
    uint16_t num;
    uint8_t fmt; /* enum lw_coap_optfmt */
    uint8_t repeatable;
    uint16_t min_len, max_len;
    const char *name;
};

/* Registry entry for a known option number, or NULL when unrecognised. */
const struct lw_coap_optinfo *lw_coap_opt_info(uint16_t num);

/* Adds an option (value borrowed: it must outlive serialization). 0, LW_ENOSPC (too many options)
 * or LW_EINVAL (len > 65535). */
int lw_coap_add_opt(struct lw_coap_msg *m, uint16_t num, const void *val, size_t len);
static inline int lw_coap_add_str(struct lw_coap_msg *m, uint16_t num, const char *s)
{
    return lw_coap_add_opt(m, num, s, strlen(s));
}
/* Adds a uint option in its shortest form (value 0 has length 0), stored inline. */
int lw_coap_add_uint(struct lw_coap_msg *m, uint16_t num, uint32_t v);
/* Removes every occurrence of option num; returns how many were removed. */
size_t lw_coap_del_opt(struct lw_coap_msg *m, uint16_t num);

/* First option `num`, or NULL. */
const struct lw_coap_opt *lw_coap_find_opt(const struct lw_coap_msg *m, uint16_t num);
/* Iterates the occurrences of a repeatable option: start with *pos = 0; NULL at the end. */
const struct lw_coap_opt *lw_coap_next_opt(const struct lw_coap_msg *m, uint16_t num, size_t *pos);
/* Reads option num as a uint (leading zeros accepted, §3.2): 0, LW_ENOENT (absent) or LW_ERANGE
 * (longer than 4 bytes). */
int lw_coap_get_uint(const struct lw_coap_msg *m, uint16_t num, uint32_t *out);
/* Decodes a uint value of any length up to 4 bytes; LW_ERANGE when longer. */
int lw_coap_decode_uint(const uint8_t *p, size_t len, uint32_t *out);
/* View of option num's value (string or opaque): 0 or LW_ENOENT. */
int lw_coap_get_bytes(const struct lw_coap_msg *m, uint16_t num, struct lw_bytes *out);
/* Writes the repeated Uri-Path options as "/a/b/c" into out (NUL-terminated; "/" for none).
 * 0 or LW_ENOSPC. */
int lw_coap_uri_path(const struct lw_coap_msg *m, char *out, size_t cap);
/* Adds one Uri-Path option per '/'-separated segment of path (borrowed). 0 or LW_ENOSPC. */
int lw_coap_add_uri_path(struct lw_coap_msg *m, const char *path);

/* ------------------------------------------------------------------------------------------------
 * Block-wise (RFC 7959)
 */
struct lw_coap_block {
    uint32_t num; /* 20 bits */
    bool more;
    uint8_t szx; /* 0..6; 7 is reserved */
};

static inline size_t lw_coap_block_size(uint8_t szx)
{
    return (size_t)1 << (szx + 4);
}
/* Block option value: NUM << 4 | M << 3 | SZX. LW_ERANGE when num >= 2^20 or szx > 7. */
int lw_coap_block_encode(const struct lw_coap_block *b, uint32_t *value);
/* Decodes Block option num (23 or 27): 0, LW_ENOENT (absent), LW_EMALFORMED (longer than 3 bytes;
 * SZX 7 is returned as is: callers reject it with 4.00, RFC 7959 §2.2). */
int lw_coap_get_block(const struct lw_coap_msg *m, uint16_t num, struct lw_coap_block *b);
/* Adds a Block option. 0, LW_ERANGE or LW_ENOSPC. */
int lw_coap_add_block(struct lw_coap_msg *m, uint16_t num, const struct lw_coap_block *b);

/* Serves one Block2 slice of `body` for request req (package download, big reads): honours the
 * request's Block2 (NUM, and SZX when smaller than max_szx: RFC 7959 §2.4 "use the smaller
 * size"), adds Block2 only when the body needs more than one block or the client asked with
 * Block2, adds ETag (etag.len 1..8, when non-empty) and Size2 (total size) on block 0 or when the
 * request carried Size2. resp gets code 2.05 and its payload borrows body; the caller sets type,
 * MID and token (lw_coap_ep_respond does). Out-of-range NUM: resp code 4.02 (RFC 7959 leaves this
 * case open; the Block2 value cannot be honoured). SZX 7 in the request: 4.00 (RFC 7959 §2.2).
 * Returns 0 (resp ready, check its code) or LW_ENOSPC (option table full). */
int lw_coap_block2_serve(const struct lw_coap_msg *req, struct lw_bytes body, struct lw_bytes etag,
                         uint8_t max_szx, struct lw_coap_msg *resp);

/* Reassembles a Block2 response body (client side, RFC 7959 §2.4): feed each response in order.
 * The buffer is heap-allocated and grows to at most `max` bytes. */
struct lw_coap_b2asm {
    uint8_t *data; /* owned */
    size_t len, cap, max;
    uint32_t next_num; /* NUM of the next block to request */
    uint8_t szx;
    uint8_t etag_len;
    uint8_t etag[8];
    bool has_etag;
};
/* max 0 means 64 KiB. */
void lw_coap_b2asm_init(struct lw_coap_b2asm *a, size_t max);
void lw_coap_b2asm_deinit(struct lw_coap_b2asm *a);
/* Feeds one response. Returns LW_EAGAIN (more blocks: request a->next_num with a->szx), 0 (body
 * complete: a->data/a->len), LW_ENOENT (response has no Block2: caller uses it as is),
 * LW_EPROTO (wrong block number, ETag changed, a non-final block of the wrong size),
 * LW_EMALFORMED (bad Block2 value), LW_ELIMIT (body larger than max) or LW_ENOMEM. */
int lw_coap_b2asm_feed(struct lw_coap_b2asm *a, const struct lw_coap_msg *resp);

/* Atomic Block1 receiver (server side, RFC 7959 §2.5): one in-progress request body per
 * instance (keep one per peer and resource). The buffer is heap-allocated up to `max` bytes. */
struct lw_coap_b1rx {
    uint8_t *data; /* owned */
    size_t len, cap, max;
    uint64_t expires; /* inactivity deadline (ms); state is dropped after it */
    uint32_t lifetime_ms;
    uint16_t cf; /* Content-Format of block 0 (0xffff: none) */
    uint8_t max_szx;
    bool active;
};
/* max 0: 64 KiB; max_szx > 6: 6; lifetime_ms 0: EXCHANGE_LIFETIME (247 s, RFC 7959 §2.5). */
void lw_coap_b1rx_init(struct lw_coap_b1rx *rx, size_t max, uint8_t max_szx, uint32_t lifetime_ms);
void lw_coap_b1rx_deinit(struct lw_coap_b1rx *rx);
/* Feeds a request. Returns:
 *  LW_ENOENT  - no Block1 option: not a block-wise request, resp untouched;
 *  LW_EAGAIN  - a non-final block was stored: resp is a 2.31 Continue echoing Block1 (M=1, our
 *               possibly smaller SZX); send it;
 *  0          - final block: *body views the whole body (valid until the next feed/deinit); the
 *               caller processes it and must add Block1 to its final response with
 *               lw_coap_b1rx_final_opt;
 *  LW_EPROTO  - missing/out-of-order block or Content-Format change: resp is 4.08 (§2.9.2);
 *  LW_ELIMIT  - body too large: resp is 4.13 with Size1 = max (§2.9.3);
 *  LW_EMALFORMED - bad Block1 value or SZX 7: resp is 4.00;
 *  LW_ENOMEM  - resp is 5.00.
 * resp gets only code and options: the caller (lw_coap_ep_respond) sets type, MID and token. */
int lw_coap_b1rx_feed(struct lw_coap_b1rx *rx, const struct lw_coap_msg *req, uint64_t now,
                      struct lw_coap_msg *resp, struct lw_bytes *body);
/* Adds the Block1 control option (echoing req's NUM and SZX, M=0) to a final response. */
int lw_coap_b1rx_final_opt(const struct lw_coap_msg *req, struct lw_coap_msg *resp);

/* ------------------------------------------------------------------------------------------------
 * Observe (RFC 7641)
 */
/* RFC 7641 §3.4: is a notification with sequence v2 received at t2 (ms) fresher than the last one
 * accepted (v1 at t1)? 24-bit serial arithmetic, or more than 128 s elapsed. */
bool lw_coap_obs_fresher(uint32_t v1, uint64_t t1_ms, uint32_t v2, uint64_t t2_ms);

/* ------------------------------------------------------------------------------------------------
 * Exchange layer: one struct lw_coap_ep per peer
 */

/* Transmission parameters (RFC 7252 §4.8); every zero means the RFC default. */
struct lw_coap_cfg {
    uint32_t ack_timeout_ms;        /* 2000 */
    uint32_t ack_random_factor_pct; /* 150 (= 1.5); values < 100 mean the default */
    uint8_t max_retransmit;         /* 4 */
    uint8_t nstart;                 /* 1 */
    uint8_t dedup_entries;          /* 16 remembered MIDs per peer (bounded ring, oldest evicted) */
    uint8_t block_szx;              /* 6 (1024 B): block size for Block1 requests and Block2 asks */
    uint32_t exchange_lifetime_ms;  /* 247000: CON dedup lifetime */
    uint32_t non_lifetime_ms;       /* 145000: NON dedup lifetime */
    uint32_t response_timeout_ms;   /* 93000 (MAX_TRANSMIT_WAIT): wait for a separate or NON
                                       response after the request was ACKed / sent */
    uint32_t max_body;              /* 65536: largest reassembled Block2 response body */
    /* Random source for MIDs, tokens and the ACK random factor: fill `out` with len bytes and
     * return 0. NULL: lw_random (getrandom). Tests pass a deterministic one. */
    int (*random)(void *rctx, void *out, size_t len);
    void *rctx;
};

/* Outcome of a server-originated request (on_response `result`). */
enum lw_coap_result {
    LW_COAP_RES_RESPONSE = 0, /* msg is the response (Block2 bodies reassembled) */
    LW_COAP_RES_TIMEOUT,      /* no ACK after MAX_RETRANSMIT, or no response in time */
    LW_COAP_RES_RESET,        /* the peer answered with RST (for a ping: the peer is alive) */
    LW_COAP_RES_CANCELED,     /* lw_coap_ep_cancel or lw_coap_ep_deinit */
    LW_COAP_RES_ERROR,        /* block-wise transfer failed (bad block sequence, ETag change,
                                 body too large, out of memory); msg is the offending response
                                 when there is one */
};

/* Notification flags (on_notify). */
#define LW_COAP_NOTIFY_FRESH 1u /* fresher than the previous one (RFC 7641 §3.4) */
#define LW_COAP_NOTIFY_FINAL 2u /* no Observe option / error code: the observation has ended */

/* Request handle: unique per ep for the ep's life (ids are never reused within an ep). */
struct lw_coap_handle {
    uint32_t id; /* 0 = none */
};

struct lw_coap_ep;

struct lw_coap_ops {
    /* Send one datagram (bytes borrowed for the call). Required. */
    void (*send)(void *ctx, const uint8_t *data, size_t len);
    /* A new (non-duplicate) request. msg and its views are valid for the call only. Answer now or
     * later with lw_coap_ep_respond (piggybacked while possible, otherwise separate), or call
     * lw_coap_ep_accept to send an Empty ACK first. Required. */
    void (*on_request)(void *ctx, struct lw_coap_ep *ep, const struct lw_coap_msg *msg,
                       uint64_t now);
    /* Completion of a request made with lw_coap_ep_request/ping. msg may be NULL (timeout, reset,
     * canceled). For an Observe registration answered with an Observe option the observation
     * stays active under the same handle. May be NULL. */
    void (*on_response)(void *ctx, struct lw_coap_ep *ep, struct lw_coap_handle h, uint64_t cookie,
                        int result, const struct lw_coap_msg *msg);
    /* A notification for observation h (flags LW_COAP_NOTIFY_*). A fresh notification whose
     * first block announces more (Block2 M=1) is reported once the rest has been fetched with
     * GET/FETCH + Block2 (RFC 7959 §2.6; a newer notification abandons that fetch, a failed
     * fetch drops the notification). May be NULL. */
    void (*on_notify)(void *ctx, struct lw_coap_ep *ep, struct lw_coap_handle h, uint64_t cookie,
                      const struct lw_coap_msg *msg, unsigned flags);
};

/* Shared by all eps of a shard (read-only after init). */
struct lw_coap_env {
    struct lw_coap_cfg cfg; /* resolved: no zeros left */
    const struct lw_coap_ops *ops;
};

/* Resolves cfg (NULL: all defaults) and stores ops (borrowed: must outlive every ep). 0 or
 * LW_EINVAL (ops->send / ops->on_request missing, nstart 0 after defaults, block_szx > 6). */
int lw_coap_env_init(struct lw_coap_env *env, const struct lw_coap_cfg *cfg,
                     const struct lw_coap_ops *ops);

/* Per-peer state, embedded by the caller. Memory (LP64):
 *  - idle: sizeof(struct lw_coap_ep) = 48 bytes, nothing on the heap;
 *  - dedup ring, allocated on the first CON/NON received and freed by lw_coap_ep_timeout once all
 *    entries expired: 8 + 56 bytes per entry, growing 2, 4, ... up to cfg.dedup_entries (16 by
 *    default: 904 bytes at most); replies over 32 bytes get an extra heap copy (at most
 *    LW_COAP_MAX_DGRAM each);
 *  - each request (active or queued): 104 bytes + a copy of its options and payload; a Block2
 *    reassembly buffer up to cfg.max_body while one is running;
 *  - each observation: 48 bytes.
 * Limits: if a CON request's dedup entry was evicted (more than cfg.dedup_entries messages within
 * EXCHANGE_LIFETIME) after lw_coap_ep_accept, a later lw_coap_ep_respond piggybacks. */
struct lw_coap_ep {
    const struct lw_coap_env *env;
    void *ctx;                 /* passed to every callback */
    struct lw_coap__dedup *dd; /* lazily allocated; freed when every entry expired */
    struct lw_coap__txn *txns; /* active and queued requests, in order */
    struct lw_coap__obs *obs;  /* observations */
    uint32_t next_id;
    uint16_t next_mid;
    uint8_t nactive;
    uint8_t in_cb; /* nesting depth of callbacks (deinit is refused inside one) */
};

/* Identifies a received request for a later (separate) answer: copy it in on_request. */
struct lw_coap_req_ref {
    uint16_t mid;
    uint8_t type;
    uint8_t tkl;
    uint8_t token[LW_COAP_MAX_TOKEN];
};
static inline struct lw_coap_req_ref lw_coap_req_ref_of(const struct lw_coap_msg *m)
{
    struct lw_coap_req_ref r = {m->mid, m->type, m->tkl, {0}};
    memcpy(r.token, m->token, m->tkl <= 8 ? m->tkl : 8);
    return r;
}

/* Initialises ep (env and ctx borrowed). The first MID is random (RFC 7252 §4.4). */
void lw_coap_ep_init(struct lw_coap_ep *ep, const struct lw_coap_env *env, void *ctx);
/* Frees all state; pending requests complete with LW_COAP_RES_CANCELED (callbacks run; new
 * requests made from them fail with LW_ECANCELED). Must not be called from inside one of this
 * ep's callbacks. */
void lw_coap_ep_deinit(struct lw_coap_ep *ep);

/* Processes one datagram from the peer (borrowed). Acts as the RFC prescribes (ACK/RST/4.02,
 * duplicate replay, callbacks) and returns why a datagram was not delivered: 0 (processed),
 * LW_EMALFORMED (format error; RST sent for a CON), LW_EBADOPT (critical option; 4.02 or RST
 * sent, or dropped), LW_EPROTO (invalid type/code combination), LW_EEXIST (duplicate: cached
 * reply re-sent or dropped), LW_ENOENT (unmatched ACK/RST/response; RST sent for an unmatched
 * CON or for a notification with an unknown token, RFC 7641 §3.6). */
int lw_coap_ep_input(struct lw_coap_ep *ep, const uint8_t *data, size_t len, uint64_t now);

/* Runs retransmissions, request timeouts and dedup expiry due at `now`. */
void lw_coap_ep_timeout(struct lw_coap_ep *ep, uint64_t now);
/* Earliest time lw_coap_ep_timeout has work, or UINT64_MAX. */
uint64_t lw_coap_ep_next_deadline(const struct lw_coap_ep *ep);

/* Answers request `ref` with resp (code, options, payload; type/MID/token are set here):
 * piggybacked in an ACK while the request is a CON not yet acknowledged, else as a separate
 * response (CON with retransmission, RFC 7252 §5.2.2) or, for a NON request, a NON. The reply to a
 * CON is cached for duplicate replay. Returns 0, LW_ENOSPC (message > LW_COAP_MAX_DGRAM),
 * LW_EINVAL or LW_ENOMEM. */
int lw_coap_ep_respond(struct lw_coap_ep *ep, const struct lw_coap_req_ref *ref,
                       const struct lw_coap_msg *resp, uint64_t now);
/* Sends an Empty ACK for CON request ref (separate response follows; RFC 7252 §5.2.2). Later
 * retransmissions of the request get the Empty ACK again. No-op for a NON. */
int lw_coap_ep_accept(struct lw_coap_ep *ep, const struct lw_coap_req_ref *ref, uint64_t now);

/* Sends a server-originated request. req gives type (CON or NON), code, options and payload; its
 * MID and token are assigned here (8 random bytes; RFC 7252 §5.3.1). Payloads larger than the
 * configured block size go out as Block1 blocks (with Size1); Block2 responses are reassembled
 * (up to max_body) before on_response. A GET/FETCH with Observe = 0 becomes an observation when
 * the response carries Observe. At most cfg.nstart requests are outstanding; others are queued
 * (RFC 7252 §4.7). The request is copied (payload included). cookie is returned in callbacks.
 * 0 (*h set), LW_EINVAL, LW_ENOSPC or LW_ENOMEM. */
int lw_coap_ep_request(struct lw_coap_ep *ep, const struct lw_coap_msg *req, uint64_t cookie,
                       uint64_t now, struct lw_coap_handle *h);
/* Sends a CoAP ping (Empty CON); the peer's RST completes it with LW_COAP_RES_RESET. */
int lw_coap_ep_ping(struct lw_coap_ep *ep, uint64_t cookie, uint64_t now, struct lw_coap_handle *h);
/* Cancels a pending request (on_response runs with LW_COAP_RES_CANCELED) or forgets an
 * observation (passive cancel: the next notification is answered with RST, RFC 7641 §3.6).
 * 0 or LW_ENOENT. */
int lw_coap_ep_cancel(struct lw_coap_ep *ep, struct lw_coap_handle h, uint64_t now);
/* Active cancel (RFC 7641 §3.6): sends req (GET or FETCH with the registration's URI and
 * options) with Observe = 1 and the observation's token, and forgets the observation. The cancel
 * request completes through on_response under the new handle *out. 0, LW_ENOENT, or as
 * lw_coap_ep_request. */
int lw_coap_ep_observe_cancel(struct lw_coap_ep *ep, struct lw_coap_handle obs,
                              const struct lw_coap_msg *req, uint64_t cookie, uint64_t now,
                              struct lw_coap_handle *out);
/* True when h is a request of ep that waits behind NSTART and was never transmitted (so it can
 * be cancelled and made again elsewhere without the peer having seen it). */
bool lw_coap_ep_queued(const struct lw_coap_ep *ep, struct lw_coap_handle h);
/* Moving an observation to another ep (the peer's address changed and its state follows it to
 * another ep, possibly on another thread). lw_coap_ep_obs_detach removes observation h from ep
 * (a Block2 continuation in flight is dropped silently) and returns it, owned by the caller
 * (attach it, or free it with lw_coap_obs_free), or NULL when h is not an observation of ep.
 * lw_coap_ep_obs_attach adds it to ep under a new handle *h with cookie, keeping its token,
 * registration request and freshness state (RFC 7641 §3.4), so the peer's notifications reach
 * ep as before. It takes ownership of o: 0, or LW_EEXIST (the token is in use on ep; o freed). */
struct lw_coap__obs *lw_coap_ep_obs_detach(struct lw_coap_ep *ep, struct lw_coap_handle h,
                                           uint64_t now);
int lw_coap_ep_obs_attach(struct lw_coap_ep *ep, struct lw_coap__obs *o, uint64_t cookie,
                          struct lw_coap_handle *h);
void lw_coap_obs_free(struct lw_coap__obs *o);
/* Number of requests (active + queued) and observations. */
size_t lw_coap_ep_pending(const struct lw_coap_ep *ep);
size_t lw_coap_ep_observations(const struct lw_coap_ep *ep);

#endif
