/* server/secrets.h - encryption at rest of secrets kept in PostgreSQL (device credentials, saved
 * DTLS sessions, webhook secrets) with AES-256-GCM (wolfCrypt wc_AesGcm*) under a master key ring.
 *
 * Sealed blob (bytes, stored as one bytea):
 *   version (1 byte, SECRETS_VERSION) | key id (4 bytes, big endian) | nonce (12 random bytes) |
 *   ciphertext (as long as the plaintext) | tag (16 bytes)
 * The GCM additional data is version | key id | the caller's associated data (ad), so a blob moved
 * to another row (other endpoint, other kind), or whose header was edited, does not open. Nonces
 * are random: with 96-bit random nonces one key must seal fewer than 2^32 blobs (NIST SP 800-38D
 * 8.3); rotate long before (docs/operations.md).
 *
 * Key ring: one current key (seals) and older keys (open only). A key id is derived from the key
 * (the first 31 bits of SHA-256("lwm2md master key id" | key)), so ids never need configuring and
 * fit PostgreSQL's integer columns (key_id). Keys come from files: 32 raw bytes, or 64 hex digits
 * (surrounding blanks and a trailing newline allowed); a file readable or writable by others is
 * refused.
 *
 * Associated data convention for rows (secrets_row_ad): "lwm2md:" table NUL part1 NUL part2 ...,
 * e.g. credentials: ("credentials", endpoint, kind, identity); dtls_sessions: ("dtls_sessions",
 * endpoint). `lwm2md rekey` re-seals rows of the tables it knows with the same convention.
 *
 * Threads: a ring is immutable once built, so sealing and opening with one ring may happen on any
 * number of threads at once (each call uses its own Aes context). secrets_start/secrets_stop run on
 * the main thread before shards start / after they stopped; secrets_ring() may be called from any
 * thread in between.
 */
#ifndef LW_SERVER_SECRETS_H
#define LW_SERVER_SECRETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SECRETS_VERSION   1
#define SECRETS_KEY_LEN   32
#define SECRETS_NONCE_LEN 12
#define SECRETS_TAG_LEN   16
#define SECRETS_HDR_LEN   (1 + 4 + SECRETS_NONCE_LEN)
/* Bytes a sealed blob adds to its plaintext. */
#define SECRETS_OVERHEAD (SECRETS_HDR_LEN + SECRETS_TAG_LEN)
#define SECRETS_MAX_KEYS 16
/* Largest associated data secrets_row_ad builds. */
#define SECRETS_AD_MAX 1024
/* systemd credential name looked up in $CREDENTIALS_DIRECTORY when no key file is configured;
 * files named SECRETS_CRED_NAME ".old*" there are older keys. */
#define SECRETS_CRED_NAME "lwm2md-master-key"

struct lw_config;
struct secrets_ring;

/* ---- key material ---------------------------------------------------------------------------- */

/* Parses the content of a key file (user input): exactly 32 bytes taken raw, or 64 hex digits
 * with optional ASCII blanks (space, tab, CR, LF) around them. Writes the key to key.
 * 0 or LW_EMALFORMED. Any thread. */
int secrets_parse_key(const uint8_t *data, size_t len, uint8_t key[SECRETS_KEY_LEN]);
/* Reads and parses a key file. Refuses (LW_EPERM) a file whose mode gives any access to others
 * (o+rwx), LW_EIO when unreadable or larger than 4 KiB, LW_EMALFORMED when not a key. `why`
 * (may be NULL) receives a one-line reason naming the path (never the content). Any thread. */
int secrets_read_key_file(const char *path, uint8_t key[SECRETS_KEY_LEN], char *why, size_t cap);
/* The key id of a key (31 bits, > 0). */
uint32_t secrets_key_id(const uint8_t key[SECRETS_KEY_LEN]);

/* ---- rings ----------------------------------------------------------------------------------- */

/* A new empty ring; returns owned (free with secrets_ring_free), NULL on allocation failure. */
struct secrets_ring *secrets_ring_new(void);
/* Wipes the keys and frees the ring; NULL is a no-op. */
void secrets_ring_free(struct secrets_ring *r);
/* Adds a key (copied). The first key added with current = true seals; others only open. A key
 * already in the ring is ignored (0) unless it is now made current. 0, LW_ENOSPC
 * (SECRETS_MAX_KEYS), LW_EEXIST (a second current key, or two different keys with the same id). */
int secrets_ring_add(struct secrets_ring *r, const uint8_t key[SECRETS_KEY_LEN], bool current);
/* Id of the current key, 0 when the ring has none (then secrets_seal fails). */
uint32_t secrets_ring_current(const struct secrets_ring *r);
/* Number of keys. */
size_t secrets_ring_count(const struct secrets_ring *r);
/* True when the ring holds a key with this id. */
bool secrets_ring_has(const struct secrets_ring *r, uint32_t key_id);

/* ---- seal / open ----------------------------------------------------------------------------- */

/* Seals pt (pt_len bytes) under the ring's current key with a fresh random nonce, binding ad
 * (ad_len bytes, may be NULL/0). Writes pt_len + SECRETS_OVERHEAD bytes to out (cap bytes; must
 * not overlap pt) and their count to *out_len. 0, LW_ENOENT (no current key), LW_ENOSPC (cap too
 * small), LW_EINVAL (ad_len > SECRETS_AD_MAX), LW_EIO (no randomness), LW_EINTERNAL (wolfCrypt
 * failed). All inputs are borrowed. */
int secrets_seal(const struct secrets_ring *r, const uint8_t *ad, size_t ad_len, const uint8_t *pt,
                 size_t pt_len, uint8_t *out, size_t cap, size_t *out_len);
/* Opens a sealed blob with whichever ring key its id names, checking ad. Writes the plaintext
 * (len - SECRETS_OVERHEAD bytes) to out and its length to *out_len; key_id (may be NULL) receives
 * the blob's key id. 0, LW_EMALFORMED (too short, unknown version), LW_ENOENT (key id not in the
 * ring), LW_EPERM (authentication failed: tampered blob, wrong ad or wrong key; out is wiped),
 * LW_ENOSPC (cap too small), LW_EINVAL (ad_len > SECRETS_AD_MAX). Never crashes on any input. */
int secrets_open(const struct secrets_ring *r, const uint8_t *ad, size_t ad_len,
                 const uint8_t *blob, size_t len, uint8_t *out, size_t cap, size_t *out_len,
                 uint32_t *key_id);
/* Key id and nonce of a blob without opening it (for the key_id / nonce columns).
 * 0 or LW_EMALFORMED. */
int secrets_blob_info(const uint8_t *blob, size_t len, uint32_t *key_id,
                      uint8_t nonce[SECRETS_NONCE_LEN]);

/* Builds the associated data of a table row: "lwm2md:" table, then each of the n parts
 * (parts[i], lens[i] bytes) preceded by a NUL. Returns its length, or 0 when it exceeds cap. */
size_t secrets_row_ad(uint8_t *out, size_t cap, const char *table, size_t n,
                      const uint8_t *const *parts, const size_t *lens);

/* ---- the daemon's ring ----------------------------------------------------------------------- */

/* Builds a ring from the configuration: security.master_key_file (current) and
 * security.old_master_key_files (comma-separated, open only); when master_key_file is empty,
 * $CREDENTIALS_DIRECTORY/lwm2md-master-key (current) and lwm2md-master-key.old* (old) from systemd.
 * *out is owned (secrets_ring_free); it is NULL (and 0 is returned) when nothing is configured.
 * LW_EPERM / LW_EIO / LW_EMALFORMED / LW_EEXIST / LW_ENOSPC / LW_ECONFIG / LW_ENOMEM with a
 * reason in why otherwise.
 * Blocking file reads: main thread at start-up, or CLI. */
int secrets_ring_from_config(const struct lw_config *cfg, struct secrets_ring **out, char *why,
                             size_t cap);
/* Loads the daemon-wide ring (secrets_ring_from_config) and logs which keys were loaded (ids only).
 * 0 (also when nothing is configured) or the error above, logged. Main thread, before shards. */
int secrets_start(const struct lw_config *cfg);
/* The daemon-wide ring, or NULL when no master key is configured (then nothing may be written
 * encrypted: callers refuse or skip). Borrowed; valid until secrets_stop. Any thread. */
const struct secrets_ring *secrets_ring(void);
/* Wipes and frees the daemon-wide ring. Main thread, after shards stopped. */
void secrets_stop(void);

#endif
