/* lib/dtls/client.h - sans-IO DTLS 1.2/1.3 PSK client over wolfSSL (load generators, tests).
 *
 * The counterpart of the server glue in dtls.h: the library never touches a socket. A client
 * session is created with lw_dtls_client_new (which emits the ClientHello through ops->send),
 * every datagram received from the server is fed to lw_dtls_client_input, application data goes
 * out with lw_dtls_client_write, and handshake flights are retransmitted when the caller honours
 * lw_dtls_client_next_timeout by calling lw_dtls_client_timeout (RFC 6347 §4.2.4, RFC 9147 §5.8).
 *
 * Objects:
 *  - struct lw_dtls_client_ctx: one WOLFSSL_CTX (client method of one DTLS version), the
 *    callbacks and a shared plaintext buffer. Used by one thread together with its sessions.
 *  - struct lw_dtls_client: one session. It keeps no credentials: the PSK identity and key are
 *    asked from ops->psk when the handshake needs them, so the caller may derive them (e.g. from
 *    a pattern) instead of storing them per session.
 *
 * Connection IDs (RFC 9146 for 1.2, RFC 9147 §9 for 1.3): unless cfg.no_cid, the client offers
 * the connection_id extension with an empty CID of its own (the server reaches the client by its
 * address) and, when the server supplies a CID, puts it in every record it sends, so the server
 * finds the session after the client's address changed.
 *
 * Errors: 0 or a negative LW_E* code; wolfSSL's raw error is kept (lw_dtls_client_raw_error).
 * Thread rules: a context and all of its sessions belong to one thread.
 */
#ifndef LW_DTLS_CLIENT_H
#define LW_DTLS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtls/dtls.h"

struct lw_dtls_client_ctx;
struct lw_dtls_client;

/* Callbacks; arg is the session's arg (lw_dtls_client_new). Views are borrowed for the call. */
struct lw_dtls_client_ops {
    /* A datagram to send to the server. Must not call into lib/dtls. */
    void (*send)(void *arg, const uint8_t *data, size_t len);
    /* Decrypted application data. May call lw_dtls_client_write/close (not input or free). */
    void (*deliver)(void *arg, const uint8_t *data, size_t len);
    /* LW_DTLS_EV_ESTABLISHED, LW_DTLS_EV_CLOSED, LW_DTLS_EV_FAILED (detail = raw wolfSSL error)
     * or LW_DTLS_EV_TIMEOUT. After FAILED/TIMEOUT/CLOSED the session is dead: free it after the
     * call into lib/dtls that raised the event returned. Same rules as deliver. */
    void (*event)(void *arg, enum lw_dtls_event ev, int detail);
    /* Writes the PSK identity (at most id_cap bytes, not NUL-terminated) to identity and its
     * length to *id_len, the key (at most key_cap bytes) to key; returns the key length, 0 when
     * the session has no PSK (the handshake fails). Required. */
    size_t (*psk)(void *arg, uint8_t *identity, size_t id_cap, size_t *id_len, uint8_t *key,
                  size_t key_cap);
};

struct lw_dtls_client_cfg {
    int version;         /* 12 or 13 (0: 12) */
    const char *ciphers; /* wolfSSL cipher list; NULL: PSK-AES128-CCM-8 (1.2), TLS13-AES128-CCM-8 */
    bool no_cid;         /* do not offer Connection IDs */
    uint16_t mtu;        /* record budget; 0: 1280 */
    uint32_t handshake_ms; /* give up after this; 0: 30000 */
};

/* Creates a client context (borrows ops, which must outlive it). *out owned, free with
 * lw_dtls_client_ctx_free after its sessions. 0, LW_ECONFIG (version, suite list), LW_ENOMEM,
 * LW_EDTLS. Initialises wolfSSL. */
int lw_dtls_client_ctx_new(const struct lw_dtls_client_cfg *cfg,
                           const struct lw_dtls_client_ops *ops, struct lw_dtls_client_ctx **out);
void lw_dtls_client_ctx_free(struct lw_dtls_client_ctx *ctx);

/* Starts a handshake: allocates the session and sends the ClientHello (ops->send). arg is
 * passed to every callback of this session. *out owned, free with lw_dtls_client_free.
 * 0, LW_ENOMEM, LW_EDTLS. */
int lw_dtls_client_new(struct lw_dtls_client_ctx *ctx, void *arg, uint64_t now_ms,
                       struct lw_dtls_client **out);
/* Frees a session (NULL is a no-op). Sends nothing. */
void lw_dtls_client_free(struct lw_dtls_client *c);

/* Feeds one datagram from the server (borrowed): continues the handshake (answering with the
 * next flight), raises LW_DTLS_EV_ESTABLISHED once, delivers application data. Returns 0 (also
 * for records wolfSSL dropped as invalid or replayed), LW_ECANCELED (session closed or failed
 * before), LW_EDTLS (the session failed now; LW_DTLS_EV_FAILED was raised). */
int lw_dtls_client_input(struct lw_dtls_client *c, const uint8_t *data, size_t len,
                         uint64_t now_ms);
/* Encrypts and sends one record. 0, LW_EAGAIN (handshake not done), LW_ECANCELED, LW_ERANGE
 * (len > 16384), LW_EDTLS. */
int lw_dtls_client_write(struct lw_dtls_client *c, const uint8_t *data, size_t len,
                         uint64_t now_ms);
/* Sends close_notify and marks the session closed. 0 or LW_EDTLS. */
int lw_dtls_client_close(struct lw_dtls_client *c);

/* Absolute deadline for lw_dtls_client_timeout, UINT64_MAX when none. */
uint64_t lw_dtls_client_next_timeout(const struct lw_dtls_client *c);
/* Retransmits the last flight when due, or past cfg.handshake_ms raises LW_DTLS_EV_TIMEOUT and
 * returns LW_ETIMEDOUT. 0 otherwise (also when called early). */
int lw_dtls_client_timeout(struct lw_dtls_client *c, uint64_t now_ms);

bool lw_dtls_client_established(const struct lw_dtls_client *c);
/* True when the server issued a CID that this session puts in its records. */
bool lw_dtls_client_has_cid(const struct lw_dtls_client *c);
/* 12 or 13 once established, else 0. */
int lw_dtls_client_version(const struct lw_dtls_client *c);
int lw_dtls_client_raw_error(const struct lw_dtls_client *c);

#endif
