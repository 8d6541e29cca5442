/* lib/dtls/dtls.h - sans-IO DTLS 1.2/1.3 server glue over wolfSSL.
 *
 * The library never touches a socket. The shard feeds each received datagram to lw_dtls_input()
 * together with the sender's address and `now`; records to send come back through the shard's
 * ops->send callback, decrypted application data through ops->deliver, and state changes
 * (established, peer moved, close_notify, alert/failure) through ops->event. Deadlines come from
 * lw_dtls_next_timeout() and are honoured by calling lw_dtls_timeout() (the shard's timer wheel).
 *
 * Objects:
 *  - struct lw_dtls_ctx: the server configuration (one WOLFSSL_CTX, DTLS 1.2 and 1.3 through
 *    wolfDTLS_server_method(), suites, credentials callbacks, server certificate, trust store).
 *    Read-only after lw_dtls_ctx_new(); shared by all shards (any thread).
 *  - struct lw_dtls_shard: per shard (one thread): a scratch WOLFSSL object that answers
 *    ClientHellos statelessly (wolfDTLS_accept_stateless: HelloVerifyRequest for 1.2, HRR cookie
 *    for 1.3), the cookie secret, the CID generator, the handshake budget and a plaintext buffer.
 *  - struct lw_dtls_sess: one peer. Created only when a ClientHello carries a valid cookie: the
 *    scratch object that verified it becomes the session's WOLFSSL and a fresh scratch replaces
 *    it, so a ClientHello without a valid cookie leaves no per-peer memory behind.
 *
 * Connection IDs (RFC 9146): the server issues fixed-length CIDs (cfg.cid_len bytes, default 6)
 * laid out as [shard id][node id][per-shard counter, XOR a random key]; lw_dtls_cid_peek() finds
 * the CID in a raw record so the shard can demultiplex (and the kernel's BPF steering can pick the
 * shard byte) before any session lookup. DTLS 1.2 CID record (content type 25): the CID starts at
 * byte 11 (after type(1) version(2) epoch(2) seq(6)). DTLS 1.3 unified header (RFC 9147 §4, first
 * byte 001CSLEE with C set): the CID starts at byte 1.
 *
 * Hibernation: lw_dtls_hibernate() exports an established DTLS 1.2 session (wolfSSL_dtls_export)
 * into a small blob and frees all of its memory; lw_dtls_wake() rebuilds a session from the
 * blob (CID re-enabled before wolfSSL_dtls_import, on a DTLS 1.2-only twin context because the
 * import needs an object already at DTLS 1.2). wolfSSL 5.9 cannot export DTLS 1.3 sessions:
 * hibernating one returns LW_ENOTSUP and the session stays live.
 *
 * DoS limits before any session exists: a per-source-prefix token bucket on hellos (fixed
 * table per shard), the stateless cookie exchange, and cfg.max_handshakes sessions in handshake
 * per shard.
 *
 * Errors: 0 or a negative LW_E* code; wolfSSL's raw error is kept in the session
 * (lw_dtls_sess_raw_error). Thread rules: ctx any thread; a shard and its sessions only from
 * the shard's thread. What callbacks may do: see lw_dtls_input.
 */
#ifndef LW_DTLS_DTLS_H
#define LW_DTLS_DTLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "base/buf.h"

/* Default suite list (wolfSSL names), preference order: CoAP/LwM2M mandatory suites first. */
#define LW_DTLS_DEFAULT_CIPHERS                          \
    "TLS13-AES128-CCM-8-SHA256:TLS13-AES128-GCM-SHA256:" \
    "PSK-AES128-CCM-8:PSK-AES128-CBC-SHA256:"            \
    "ECDHE-ECDSA-AES128-CCM-8:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-SHA256"

#define LW_DTLS_CID_MAX   8   /* wolfSSL built with DTLS_CID_MAX_SIZE=8 */
#define LW_DTLS_ADDR_MAX  28  /* sizeof(struct sockaddr_in6) */
#define LW_DTLS_IDENT_MAX 128 /* longest PSK identity / certificate name kept */
#define LW_DTLS_BLOB_MAX  704 /* upper bound of a hibernation blob (~360 B in practice) */
#define LW_DTLS_V12       1
#define LW_DTLS_V13       2

/* What authenticated the peer (lw_dtls_sess_identity). */
enum lw_dtls_auth {
    LW_DTLS_AUTH_NONE = 0,
    LW_DTLS_AUTH_PSK,  /* identity = PSK identity bytes */
    LW_DTLS_AUTH_X509, /* identity = certificate subject CN, else its first URI SAN, else its
                        * first DNS SAN (verify_peer saw them all) */
    LW_DTLS_AUTH_RPK,  /* identity = SHA-256 of the client's SubjectPublicKeyInfo (32 bytes) */
};

/* Client certificate or raw public key handed to verify_peer. All views borrowed for the call.
 * With rpk set (RFC 7250 client_certificate_type RawPublicKey was negotiated), der is the
 * client's DER SubjectPublicKeyInfo, spki_sha256 its SHA-256, and cn/san/chain_ok are empty:
 * a raw key has no chain, so only the credential store can vouch for it. */
#define LW_DTLS_SAN_MAX 8
struct lw_dtls_san {
    uint8_t type; /* GeneralName tag: 2 dNSName, 6 uniformResourceIdentifier */
    struct lw_bytes name;
};
struct lw_dtls_peer_info {
    struct lw_bytes der;                     /* end-entity certificate (DER) */
    struct lw_bytes cn;                      /* its subject CN (may be empty) */
    struct lw_dtls_san san[LW_DTLS_SAN_MAX]; /* DNS and URI subjectAltNames, first ones */
    size_t n_san;
    bool chain_ok; /* the certificate verified against cfg.ca */
    bool rpk;      /* der is a raw public key (SubjectPublicKeyInfo) */
    uint8_t spki_sha256[32];
};

/* Credential store callbacks (the server's), all optional; arg is cfg.cred_arg. They run on the
 * shard thread that is handshaking and must not block. */
struct lw_dtls_cred_ops {
    /* Looks up the PSK for `identity` (id_len bytes, not NUL-terminated). Writes at most cap
     * bytes to key and returns the key length, 0 for an unknown identity (handshake fails). */
    size_t (*psk_lookup)(void *arg, const uint8_t *identity, size_t id_len, uint8_t *key,
                         size_t cap);
    /* Decides whether a client certificate is acceptable (e.g. CN = endpoint, or pinned DER):
     * return 0 to accept. When NULL, a certificate is accepted iff chain_ok (so a raw public
     * key never is). */
    int (*verify_peer)(void *arg, const struct lw_dtls_peer_info *info);
};

struct lw_dtls_cfg {
    const char *ciphers; /* wolfSSL cipher list; NULL: LW_DTLS_DEFAULT_CIPHERS */
    unsigned versions;   /* LW_DTLS_V12 | LW_DTLS_V13; 0: both */
    bool no_cid;         /* do not negotiate Connection IDs */
    /* CID length 4..8 (0: 6): [shard][node][counter]; the counter keeps CIDs of one shard
     * unique for 2^32 sessions at 6 bytes, only 65536 at 4. */
    uint8_t cid_len;
    uint8_t node_id;      /* second CID byte (clustering) */
    const char *psk_hint; /* optional PSK identity hint (DTLS 1.2) */
    /* Server certificate chain and private key (PEM or DER, ECDSA P-256). Both empty: PSK only.
     * With a certificate, ECDHE-ECDSA clients must present a certificate (mutual auth). */
    struct lw_bytes cert, key;
    /* Trust anchors for client certificates (PEM, possibly several, or one DER). The leaf must
     * be signed directly by one of them (include intermediates here). */
    struct lw_bytes ca;
    /* Raw public keys (RFC 7250): the server authenticates with the public key of cfg.key sent
     * as a raw SubjectPublicKeyInfo (server_certificate_type RawPublicKey; cfg.cert must be
     * empty), and ECDHE-ECDSA clients authenticate with a raw public key (preferred) or an X.509
     * certificate (client_certificate_type), judged by verify_peer. A client that does not
     * offer server_certificate_type RawPublicKey cannot use the certificate suites then. */
    bool rpk;
    uint16_t mtu;            /* record payload budget; 0: 1280 */
    uint32_t handshake_ms;   /* a handshake must finish within this; 0: 30000 */
    uint32_t max_handshakes; /* per shard in flight; 0: 1024 */
    /* Hellos without a session, per source prefix (IPv4 /24, IPv6 /56) and shard: token bucket
     * of hello_rate per second (0: 1000) and hello_burst (0: 2 x rate); no_hello_limit turns it
     * off. Generous by default because carrier-grade NAT puts many devices behind one prefix. */
    uint32_t hello_rate;
    uint32_t hello_burst;
    bool no_hello_limit;
    struct lw_dtls_cred_ops cred;
    void *cred_arg;
};

struct lw_dtls_ctx;
struct lw_dtls_shard;
struct lw_dtls_sess;

enum lw_dtls_event {
    LW_DTLS_EV_ESTABLISHED = 1, /* handshake done; identity available */
    LW_DTLS_EV_PEER_MOVED,      /* a CID record from a new address authenticated; address adopted */
    LW_DTLS_EV_CLOSED,          /* peer sent close_notify (we answered with ours) */
    LW_DTLS_EV_FAILED,          /* fatal alert sent or received, or handshake failure; detail =
                                 * raw wolfSSL error. The session is dead: free it. */
    LW_DTLS_EV_TIMEOUT,         /* handshake did not finish in cfg.handshake_ms: free it */
};

/* Shard callbacks; arg is the shard's ops_arg. `sess` is NULL for stateless answers
 * (HelloVerifyRequest / HRR) which go to `to`. Views are borrowed for the call. */
struct lw_dtls_shard_ops {
    void (*send)(void *arg, struct lw_dtls_sess *sess, const struct sockaddr *to, socklen_t tolen,
                 const uint8_t *data, size_t len);
    void (*deliver)(void *arg, struct lw_dtls_sess *sess, const uint8_t *data, size_t len);
    void (*event)(void *arg, struct lw_dtls_sess *sess, enum lw_dtls_event ev, int detail);
    /* Optional: true when cid (len bytes) is held by a session the shard keeps elsewhere (e.g.
     * restored after a restart, when this shard's CID counter started afresh): the next CID is
     * tried instead (at most 64). NULL: CIDs of this shard object are unique by construction. */
    bool (*cid_in_use)(void *arg, const uint8_t *cid, size_t len);
};

/* Counters of one shard (read by the owner thread). */
struct lw_dtls_stats {
    uint64_t hello_stateless; /* ClientHellos answered statelessly (cookie request / bad cookie) */
    uint64_t hello_dropped;   /* datagrams without session that were not a usable ClientHello */
    uint64_t sessions_created;
    uint64_t handshakes_done;
    uint64_t handshakes_failed;
    uint64_t budget_refused;    /* valid cookie but cfg.max_handshakes in flight */
    uint64_t hello_crossed;     /* a client's retransmitted hello ignored: we sent our flight
                                 * less than one retransmission period before */
    uint64_t hello_ratelimited; /* hellos dropped by the per-prefix limit */
    uint32_t in_handshake;      /* sessions currently handshaking */
    uint32_t live;              /* sessions allocated */
};

/* ---- context ----------------------------------------------------------------------------- */

/* Creates the shared server context; *out is owned, free with lw_dtls_ctx_free (after every
 * shard). Copies what it needs from cfg (strings and byte views may be freed afterwards except
 * cred_arg). Returns 0, LW_ECONFIG (bad suite list, key, certificate, cid_len, or a wolfSSL
 * without static PSK / DTLS 1.3 / CID / session export fails to compile), LW_ENOMEM. Not
 * thread-safe with itself; the result is read-only and may be shared by all shards. Initialises
 * wolfSSL. */
int lw_dtls_ctx_new(const struct lw_dtls_cfg *cfg, struct lw_dtls_ctx **out);
void lw_dtls_ctx_free(struct lw_dtls_ctx *ctx);

/* ---- shard ------------------------------------------------------------------------------- */

/* Creates the per-shard state (borrows ctx and ops/arg, which must outlive it). shard_id is the
 * first CID byte. The cookie secret is random; rotate it with lw_dtls_shard_rotate_cookie.
 * *out owned, free with lw_dtls_shard_free (after freeing its sessions). 0 / LW_ENOMEM /
 * LW_EDTLS / LW_EIO (no randomness). */
int lw_dtls_shard_new(const struct lw_dtls_ctx *ctx, uint8_t shard_id,
                      const struct lw_dtls_shard_ops *ops, void *arg, struct lw_dtls_shard **out);
void lw_dtls_shard_free(struct lw_dtls_shard *sh);
/* New random cookie secret: hellos that carry a cookie issued before get a new cookie request
 * (one extra round trip). 0 / LW_EIO / LW_EDTLS. */
int lw_dtls_shard_rotate_cookie(struct lw_dtls_shard *sh);
void lw_dtls_shard_stats(const struct lw_dtls_shard *sh, struct lw_dtls_stats *out);
/* Handshakes the shard may still start before cfg.max_handshakes is reached (0: a hello with a
 * cookie now gets LW_ELIMIT). Lets a caller that kept refused hellos know when to feed them. */
uint32_t lw_dtls_shard_room(const struct lw_dtls_shard *sh);

/* ---- datagram input ---------------------------------------------------------------------- */

/* Feeds one datagram (borrowed). sess is the session the caller found for it (by CID via
 * lw_dtls_cid_peek, else by source address) or NULL. With NULL, the datagram is treated as a
 * ClientHello: past the per-prefix hello limit it is dropped; without a valid cookie it is
 * answered statelessly (nothing allocated, returns 0, *created = NULL); with one, a session is
 * created, the handshake continues and *created receives it (owned by the caller: insert it in
 * your tables, free with lw_dtls_sess_free). Anything else without a session is dropped (0).
 * With a session, records are processed and callbacks fire; a record from an address other
 * than the session's is accepted only on a CID session and only if it authenticates (then
 * LW_DTLS_EV_PEER_MOVED and the address changes).
 * A new epoch-0 ClientHello from the address of a session in any state (the device rebooted or
 * restarted its handshake; RFC 6347 §4.2.8) goes through the cookie exchange like one without a
 * session and, once its cookie verifies, *created receives a new session for that address while
 * `sess` is left as it was: replace it in your tables and free it. Retransmissions and late
 * duplicates of the hello that created `sess` (same random) are recognised and not treated so:
 * while `sess` handshakes, one is answered with our flight again only when we sent none for a
 * retransmission period (the timer's current value); otherwise it is ignored (hello_crossed).
 * Returns 0 (also for records wolfSSL silently dropped), LW_EINVAL (bad address, non-CID
 * session from another address), LW_ELIMIT (handshake budget full, nothing allocated and nothing
 * sent: a ClientHello carrying a cookie is refused before its cookie is even checked, so the
 * caller may keep the datagram and feed it again once lw_dtls_shard_room() > 0),
 * LW_ENOMEM, LW_EDTLS (the session failed; LW_DTLS_EV_FAILED was raised).
 * Callbacks: send must not call into lib/dtls; deliver and event may call lw_dtls_write and
 * lw_dtls_close (on any session, this one included) but must not call lw_dtls_input or free a
 * session (free it after lw_dtls_input returns). */
int lw_dtls_input(struct lw_dtls_shard *sh, struct lw_dtls_sess *sess, const struct sockaddr *from,
                  socklen_t fromlen, const uint8_t *data, size_t len, uint64_t now_ms,
                  struct lw_dtls_sess **created);

/* Encrypts and sends one application record (ops->send). 0, LW_EAGAIN (handshake not done),
 * LW_ECANCELED (closed or failed), LW_EDTLS, LW_ERANGE (len > 16384). */
int lw_dtls_write(struct lw_dtls_sess *sess, const uint8_t *data, size_t len, uint64_t now_ms);
/* Sends close_notify (RFC 6347 §4.1.2.7 / RFC 9147 §5.10) and marks the session closed; the
 * caller frees it. 0 or LW_EDTLS. */
int lw_dtls_close(struct lw_dtls_sess *sess);

/* Absolute deadline (ms, the clock of `now_ms`) at which lw_dtls_timeout must be called, or
 * UINT64_MAX when none (established sessions need none). */
uint64_t lw_dtls_next_timeout(const struct lw_dtls_sess *sess);
/* Deadline processing: retransmits the last flight (wolfSSL_dtls_got_timeout) or, past
 * cfg.handshake_ms, raises LW_DTLS_EV_TIMEOUT and returns LW_ETIMEDOUT. 0 otherwise (also when
 * called early). */
int lw_dtls_timeout(struct lw_dtls_sess *sess, uint64_t now_ms);

/* Frees a session and everything it owns (NULL is a no-op). Sends nothing. */
void lw_dtls_sess_free(struct lw_dtls_sess *sess);

/* ---- session accessors ------------------------------------------------------------------- */

bool lw_dtls_sess_established(const struct lw_dtls_sess *sess);
/* Our (receive) CID: the bytes peers put in CID records; empty view without CID. */
struct lw_bytes lw_dtls_sess_cid(const struct lw_dtls_sess *sess);
/* Current peer address (borrowed; valid until the session moves or is freed). */
const struct sockaddr *lw_dtls_sess_addr(const struct lw_dtls_sess *sess, socklen_t *len);
/* Who the peer authenticated as (borrowed view into the session). */
enum lw_dtls_auth lw_dtls_sess_identity(const struct lw_dtls_sess *sess, struct lw_bytes *id);
/* 12 or 13 once established, else 0. */
int lw_dtls_sess_version(const struct lw_dtls_sess *sess);
/* Last raw wolfSSL error code (for logging; 0 when none). */
int lw_dtls_sess_raw_error(const struct lw_dtls_sess *sess);
void lw_dtls_sess_set_user(struct lw_dtls_sess *sess, void *user);
void *lw_dtls_sess_user(const struct lw_dtls_sess *sess);

/* ---- hibernation ------------------------------------------------------------------------- */

/* Exports an established DTLS 1.2 session into `out` (appended; at most LW_DTLS_BLOB_MAX bytes)
 * and, on success, frees the session (sess is gone; do not use it). 0, LW_EAGAIN (not
 * established), LW_ENOTSUP (DTLS 1.3: the session is left untouched), LW_ENOSPC/LW_ENOMEM
 * (buffer), LW_EDTLS. */
int lw_dtls_hibernate(struct lw_dtls_sess *sess, struct lw_buf *out);
/* Rebuilds a session from a blob (borrowed) produced by lw_dtls_hibernate on a shard of the same
 * context. *out owned, free with lw_dtls_sess_free. 0, LW_EMALFORMED (not a blob of ours, or
 * wolfSSL refused it), LW_ENOMEM, LW_EDTLS. */
int lw_dtls_wake(struct lw_dtls_shard *sh, const uint8_t *blob, size_t len, uint64_t now_ms,
                 struct lw_dtls_sess **out);

/* ---- record header parsing (pure; no wolfSSL state) -------------------------------------- */

/* Finds the CID of a record that starts a datagram, given the length of our CIDs (cid_len).
 * Returns 1 and sets *cid (view into data) for a DTLS 1.2 tls12_cid record (type 25, at least
 * 13 + cid_len bytes) or a DTLS 1.3 unified-header record with the C bit (1 + cid_len bytes plus
 * the sequence number and length fields the header announces); 0 for a record without a CID;
 * LW_EMALFORMED for a CID record too short to hold its header, or cid_len not in 1..8. */
int lw_dtls_cid_peek(const uint8_t *data, size_t len, size_t cid_len, struct lw_bytes *cid);
/* Shard id encoded in one of our CIDs (its first byte), or -1 for an empty view. */
int lw_dtls_cid_shard(struct lw_bytes cid);

#endif
