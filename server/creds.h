/* server/creds.h - in-memory device credential store for CoAPS; with a database it is the cache of
 * the credentials table (store/credstore.h writes rows sealed with the master key first, then
 * updates this store, and restores it at start). One entry per endpoint: a PSK (identity + key), an
 * RPK (SHA-256 of the device's SubjectPublicKeyInfo) or X.509 expectations (certificate name,
 * optional SHA-256 pin of the DER certificate). Entries are indexed by endpoint and by what a
 * handshake presents (PSK identity, RPK hash, certificate name), so a handshake maps straight to
 * the endpoint it may register.
 *
 * Threads: any thread. The store is guarded by a reader-writer lock: handshakes (shard threads)
 * take it shared for one lookup; the API (control thread) takes it exclusively to change it.
 * Keys never leave this file except into the DTLS library's PSK callback buffer.
 */
#ifndef LW_SERVER_CREDS_H
#define LW_SERVER_CREDS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CREDS_EP_MAX  127 /* DIR_MAX_NAME */
#define CREDS_ID_MAX  128 /* PSK identity / certificate name */
#define CREDS_KEY_MAX 64  /* PSK bytes */
#define CREDS_KEY_MIN 8   /* shorter PSKs are refused */

enum creds_mode { CREDS_NONE = 0, CREDS_PSK = 1, CREDS_RPK = 2, CREDS_X509 = 3 };

/* What the API provides for one endpoint (all views borrowed). */
struct creds_spec {
    enum creds_mode mode;
    const uint8_t *id; /* PSK identity, or certificate name (X.509; NULL: the endpoint) */
    size_t id_len;
    const uint8_t *key; /* PSK key bytes */
    size_t key_len;
    bool has_pin;
    uint8_t pin[32]; /* X.509: SHA-256 of the DER certificate; RPK: SHA-256 of the SPKI */
};

/* 0 or LW_ENOMEM. Idempotent. */
int creds_init(void);
void creds_deinit(void);
/* Sets the credentials of endpoint ep (NUL-terminated), replacing earlier ones. 0, LW_EINVAL
 * (bad sizes), LW_EEXIST (the identity/name/key hash already belongs to another endpoint),
 * LW_ENOMEM. */
int creds_put(const char *ep, const struct creds_spec *spec, int64_t now_s);
/* What creds_put would answer, without changing anything: 0, LW_EINVAL or LW_EEXIST (may still
 * race with another writer: the API serialises its writes, see store/credstore.h). */
int creds_check(const char *ep, const struct creds_spec *spec);
/* 0 or LW_ENOENT. */
int creds_del(const char *ep);
/* Metadata only (endpoint, mode, identity for PSK/X.509, pinned, created_at); never a key.
 * New reference, or NULL when ep has none. */
json_t *creds_info(const char *ep);
/* True when ep has credentials (then it may not register over NoSec). */
bool creds_ep_secured(const char *ep, size_t len);
size_t creds_count(void);

/* Checks that der (len bytes) is a DER SubjectPublicKeyInfo of an EC key, as a device presents
 * it as its raw public key (RFC 7250 §3), and writes its SHA-256 to hash. 0 or LW_EINVAL. */
int creds_spki_hash(const uint8_t *der, size_t len, uint8_t hash[32]);

/* Handshake lookups (shard threads). PSK: copies the key (at most cap bytes) and returns its
 * length, 0 for an unknown identity. */
size_t creds_psk_key(const uint8_t *id, size_t id_len, uint8_t *key, size_t cap);
/* The endpoint bound to a handshake identity of the given mode, copied into ep (NUL-terminated,
 * cap >= CREDS_EP_MAX + 1): for PSK the identity, for RPK the SPKI hash (32 bytes), for X.509 the
 * certificate name. With X.509, `der` (may be NULL) is checked against a pin, and a name without
 * an entry maps to itself when chain_ok (trust store: CN/SAN = endpoint); der NULL skips the pin
 * and chain checks (after the handshake, which made them). 0, LW_ENOENT
 * (unknown, or a name that is not a valid endpoint), LW_EPERM (pin mismatch, or a certificate
 * that neither chains nor is pinned). */
int creds_bind(enum creds_mode mode, const uint8_t *id, size_t id_len, const uint8_t *der,
               size_t der_len, bool chain_ok, char *ep, size_t cap);

#endif
