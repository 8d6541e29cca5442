/* server/api/credentials.c - device DTLS credentials (admin):
 *   PUT    /api/v1/devices/{endpoint}/credentials  {"mode":"psk","identity":"..","key":"<hex>"}
 *                                                  {"mode":"x509"[,"certificate_name":".."]
 *                                                   [,"pin_sha256":"<hex>"]}
 *                                                  {"mode":"rpk","public_key":"<base64 SPKI>"}
 *   GET    /api/v1/devices/{endpoint}/credentials  metadata only
 *   DELETE /api/v1/devices/{endpoint}/credentials
 * Replacing or deleting credentials closes the endpoint's DTLS sessions (coaps_revoke).
 * Keys are never returned nor logged: answers carry the metadata of creds_info().
 *
 * With database.url, a change is durable before it is acknowledged: the row (sealed with the
 * master key, secrets.h) and its audit_log row are committed in one statement through the control
 * loop's non-blocking connection (store/credstore.h), and only then is the in-memory store changed
 * and the request answered. A database failure answers 503 and leaves memory as it was. Without a
 * master key such changes are refused (503). Without a database the store is in memory only.
 * Control thread. */
#include "api_int.h"

#include "base/err.h"
#include "base/util.h"
#include "coaps.h"
#include "creds.h"
#include "dir.h"
#include "log.h"
#include "secrets.h"
#include "store/credstore.h"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/coding.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One durable change in flight: what memory gets once the row is committed (the request may be
 * gone by then; memory is updated anyway, as the database now holds the change). */
struct change {
    uint64_t cookie; /* request: connection id << 24 | sequence */
    bool del;
    bool existed; /* the endpoint had credentials when the change was sent */
    char ep[CREDS_EP_MAX + 1];
    struct creds_spec spec; /* views into idbuf / keybuf */
    uint8_t idbuf[CREDS_ID_MAX];
    uint8_t keybuf[CREDS_KEY_MAX];
};

/* Upserts the device and its credentials (other kinds of the endpoint removed) and the audit row,
 * in one statement. The audit result is the status the API answers (201 new, 200 replaced). */
static const char put_sql[] =
    "WITH dev AS (INSERT INTO devices (endpoint) VALUES ($1) ON CONFLICT (endpoint) DO NOTHING), "
    "old AS (DELETE FROM credentials WHERE endpoint = $1 AND kind <> $2), "
    "cred AS (INSERT INTO credentials (endpoint, kind, identity, key_id, nonce, secret) VALUES "
    "($1, $2, $3, $4::integer, $5, $6) ON CONFLICT (endpoint, kind) DO UPDATE SET identity = "
    "EXCLUDED.identity, key_id = EXCLUDED.key_id, nonce = EXCLUDED.nonce, secret = "
    "EXCLUDED.secret, updated_at = now()), "
    "aud AS (INSERT INTO audit_log (actor, action, target, result, detail) SELECT $7, "
    "'credentials_put', $1, CASE WHEN EXISTS (SELECT 1 FROM credentials WHERE endpoint = $1) "
    "THEN 200 ELSE 201 END, jsonb_build_object('mode', $2::text, 'key_id', $4::integer)) "
    "SELECT 1";

static const char del_sql[] =
    "WITH d AS (DELETE FROM credentials WHERE endpoint = $1 RETURNING 1), "
    "aud AS (INSERT INTO audit_log (actor, action, target, result) SELECT $2, "
    "'credentials_delete', $1, CASE WHEN EXISTS (SELECT 1 FROM d) OR $3::boolean THEN 204 ELSE "
    "404 END) "
    "SELECT count(*) FROM d";

static bool ep_ok(const char *ep)
{
    size_t n = strlen(ep);
    if (n == 0 || n > CREDS_EP_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)ep[i] <= 0x20 || (unsigned char)ep[i] >= 0x7f)
            return false;
    return true;
}

/* Decodes a hex string member into out (exactly `want` bytes when want > 0, else up to cap).
 * Returns the length, 0 when absent, -1 when invalid. */
static int hex_member(json_t *obj, const char *name, uint8_t *out, size_t cap, size_t want)
{
    json_t *v = json_object_get(obj, name);
    if (!v)
        return 0;
    if (!json_is_string(v))
        return -1;
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (len == 0 || len % 2 || len / 2 > cap || (want && len / 2 != want))
        return -1;
    int n = lw_hex_decode(out, cap, s, len);
    return n > 0 ? n : -1;
}

/* A device's raw public key: base64 of its DER SubjectPublicKeyInfo, or the same in PEM
 * ("-----BEGIN PUBLIC KEY-----"). Its SHA-256 into hash; 0, or -1 when invalid. */
static int rpk_member(json_t *obj, uint8_t hash[32])
{
    static const char begin[] = "-----BEGIN PUBLIC KEY-----", end[] = "-----END PUBLIC KEY-----";
    json_t *v = json_object_get(obj, "public_key");
    uint8_t der[1024];
    word32 dlen = sizeof(der);
    if (!json_is_string(v))
        return -1;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n >= sizeof(begin) - 1 && memcmp(s, begin, sizeof(begin) - 1) == 0) {
        const char *e = strstr(s, end);
        if (!e)
            return -1;
        s += sizeof(begin) - 1;
        n = (size_t)(e - s);
    }
    /* Base64_Decode skips line breaks but not other blanks: trim the PEM body's ends. */
    while (n && (*s == '\n' || *s == '\r' || *s == ' '))
        s++, n--;
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
        n--;
    if (n == 0 || n > 4 * sizeof(der) / 3 ||
        Base64_Decode((const byte *)s, (word32)n, der, &dlen) != 0)
        return -1;
    return creds_spki_hash(der, dlen, hash) == 0 ? 0 : -1;
}

static void free_change(struct change *ch)
{
    explicit_bzero(ch, sizeof(*ch));
    free(ch);
}

/* Answers a PUT whose memory update returned rc. */
static void answer_put(struct api_req *r, const char *ep, int rc, bool existed)
{
    if (rc == LW_EEXIST)
        api_problem(r, 409, "conflict", "that identity belongs to another endpoint");
    else if (rc == LW_EINVAL)
        api_problem(r, 400, "bad-request", "invalid credentials");
    else if (rc)
        api_problem(r, rc == LW_ENOMEM ? 503 : 500, "internal", "cannot store the credentials: %s",
                    lw_strerror(rc));
    else {
        if (existed) /* sessions made with the old credentials end */
            coaps_revoke(ep);
        api_reply_json(r, existed ? 200 : 201, creds_info(ep));
    }
}

static void db_unavailable(struct api_req *r, int rc, const char *why)
{
    api_problem(r, 503, "database-unavailable", "the change was not stored: %s",
                rc == LW_ETIMEDOUT ? "the database did not answer in time"
                : why && *why      ? why
                                   : lw_strerror(rc));
}

/* Runs right before the statement is sent (earlier changes are complete). */
static int put_check(void *ctx)
{
    struct change *ch = ctx;
    ch->existed = creds_ep_secured(ch->ep, strlen(ch->ep));
    return creds_check(ch->ep, &ch->spec);
}

static void put_done(void *ctx, int rc, const char *val0, const char *why)
{
    struct change *ch = ctx;
    struct api_req *r = api_req_of_cookie(ch->cookie);
    (void)val0;
    if (rc == 0) {
        rc = creds_put(ch->ep, &ch->spec, (int64_t)time(NULL));
        if (rc)
            log_err(API, "credentials stored but not applied in memory: endpoint=%s: %s", ch->ep,
                    lw_strerror(rc));
        if (r)
            answer_put(r, ch->ep, rc, ch->existed);
        else if (rc == 0 && ch->existed)
            coaps_revoke(ch->ep);
    } else if (r) {
        if (rc == LW_EEXIST || rc == LW_EINVAL)
            answer_put(r, ch->ep, rc, ch->existed);
        else
            db_unavailable(r, rc, why);
    }
    free_change(ch);
}

static void submit_put(struct api_req *r, const char *ep, const struct creds_spec *sp)
{
    uint8_t id[CREDS_ID_MAX], blob[CREDSTORE_BLOB_MAX], nonce[SECRETS_NONCE_LEN];
    size_t id_len, blob_len;
    uint32_t kid;
    char kidtxt[16];
    const struct secrets_ring *ring = secrets_ring();
    struct change *ch = NULL;
    if (!ring || !secrets_ring_current(ring)) {
        api_problem(r, 503, "no-master-key",
                    "credentials cannot be stored: no master key is configured "
                    "(security.master_key_file)");
        return;
    }
    int rc = credstore_seal(ring, ep, sp, id, &id_len, blob, &blob_len);
    if (rc) {
        api_problem(r, rc == LW_EINVAL ? 400 : 500, rc == LW_EINVAL ? "bad-request" : "internal",
                    "cannot seal the credentials: %s", lw_strerror(rc));
        goto out;
    }
    ch = calloc(1, sizeof(*ch));
    if (!ch) {
        api_problem(r, 503, "internal", "out of memory");
        goto out;
    }
    ch->cookie = api_req_cookie(r);
    snprintf(ch->ep, sizeof(ch->ep), "%s", ep);
    ch->spec = *sp;
    if (sp->id_len)
        memcpy(ch->idbuf, sp->id, sp->id_len);
    if (sp->key_len)
        memcpy(ch->keybuf, sp->key, sp->key_len);
    ch->spec.id = sp->id ? ch->idbuf : NULL;
    ch->spec.key = sp->key ? ch->keybuf : NULL;
    secrets_blob_info(blob, blob_len, &kid, nonce);
    snprintf(kidtxt, sizeof(kidtxt), "%u", kid);
    struct credstore_job job = {
        .sql = put_sql,
        .nparams = 7,
        .values = {ep, credstore_kind(sp->mode), (const char *)id, kidtxt, (const char *)nonce,
                   (const char *)blob, r->actor},
        .lengths = {0, 0, (int)id_len, 0, SECRETS_NONCE_LEN, (int)blob_len, 0},
        .formats = {0, 0, 1, 0, 1, 1, 0},
        .check = put_check,
        .done = put_done,
        .ctx = ch,
    };
    rc = credstore_submit(&job);
    if (rc) {
        free_change(ch);
        api_problem(r, 503, rc == LW_ELIMIT ? "busy" : "internal", "the change was not stored: %s",
                    lw_strerror(rc));
    }
out:
    lw_secure_zero(blob, sizeof(blob));
}

static int del_check(void *ctx)
{
    struct change *ch = ctx;
    ch->existed = creds_ep_secured(ch->ep, strlen(ch->ep));
    return 0;
}

static void del_done(void *ctx, int rc, const char *val0, const char *why)
{
    struct change *ch = ctx;
    struct api_req *r = api_req_of_cookie(ch->cookie);
    if (rc == 0) {
        bool gone = creds_del(ch->ep) == 0;
        if (gone || ch->existed)
            coaps_revoke(ch->ep);
        if (r && (gone || ch->existed || (val0 && strcmp(val0, "0") != 0)))
            api_reply(r, 204, NULL, NULL, 0);
        else if (r)
            api_problem(r, 404, "credentials-not-found", "no credentials for this endpoint");
    } else if (r) {
        db_unavailable(r, rc, why);
    }
    free_change(ch);
}

static void submit_del(struct api_req *r, const char *ep)
{
    struct change *ch = calloc(1, sizeof(*ch));
    if (!ch) {
        api_problem(r, 503, "internal", "out of memory");
        return;
    }
    ch->cookie = api_req_cookie(r);
    ch->del = true;
    snprintf(ch->ep, sizeof(ch->ep), "%s", ep);
    /* $3: the endpoint has credentials in memory now (audited as 204 even when its row was
     * never written, e.g. one that did not open at start) */
    struct credstore_job job = {
        .sql = del_sql,
        .nparams = 3,
        .values = {ep, r->actor, creds_ep_secured(ep, strlen(ep)) ? "true" : "false"},
        .check = del_check,
        .done = del_done,
        .ctx = ch,
    };
    int rc = credstore_submit(&job);
    if (rc) {
        free_change(ch);
        api_problem(r, 503, rc == LW_ELIMIT ? "busy" : "internal", "the change was not stored: %s",
                    lw_strerror(rc));
    }
}

void h_credentials_put(struct api_req *r, char *const *params, const char *query)
{
    struct creds_spec sp;
    uint8_t key[CREDS_KEY_MAX];
    (void)query;
    memset(&sp, 0, sizeof(sp));
    if (!ep_ok(params[0])) {
        api_problem(r, 400, "invalid-parameter", "invalid endpoint name");
        return;
    }
    if (!json_is_object(r->json)) { /* decoded by the router */
        api_problem(r, 400, "bad-request", "expected a JSON object");
        return;
    }
    const char *mode = json_string_value(json_object_get(r->json, "mode"));
    if (mode && strcmp(mode, "psk") == 0) {
        json_t *id = json_object_get(r->json, "identity");
        int kl = hex_member(r->json, "key", key, sizeof(key), 0);
        if (!json_is_string(id) || json_string_length(id) == 0 ||
            json_string_length(id) > CREDS_ID_MAX) {
            api_problem(r, 400, "bad-request", "identity must be a string of 1 to %d bytes",
                        CREDS_ID_MAX);
            goto out;
        }
        if (kl < CREDS_KEY_MIN) {
            api_problem(r, 400, "bad-request", "key must be %d to %d bytes in hex", CREDS_KEY_MIN,
                        CREDS_KEY_MAX);
            goto out;
        }
        sp.mode = CREDS_PSK;
        sp.id = (const uint8_t *)json_string_value(id);
        sp.id_len = json_string_length(id);
        sp.key = key;
        sp.key_len = (size_t)kl;
    } else if (mode && strcmp(mode, "x509") == 0) {
        json_t *cn = json_object_get(r->json, "certificate_name");
        if (cn && (!json_is_string(cn) || json_string_length(cn) == 0 ||
                   json_string_length(cn) > CREDS_ID_MAX)) {
            api_problem(r, 400, "bad-request", "certificate_name must be a string of 1 to %d bytes",
                        CREDS_ID_MAX);
            return;
        }
        int pl = hex_member(r->json, "pin_sha256", sp.pin, sizeof(sp.pin), 32);
        if (pl < 0) {
            api_problem(r, 400, "bad-request", "pin_sha256 must be 64 hex digits");
            return;
        }
        sp.mode = CREDS_X509;
        sp.has_pin = pl == 32;
        if (cn) {
            sp.id = (const uint8_t *)json_string_value(cn);
            sp.id_len = json_string_length(cn);
        }
    } else if (mode && strcmp(mode, "rpk") == 0) {
        if (rpk_member(r->json, sp.pin) != 0) {
            api_problem(r, 400, "bad-request",
                        "public_key must be the base64 DER SubjectPublicKeyInfo of an EC key");
            return;
        }
        sp.mode = CREDS_RPK;
        sp.has_pin = true;
    } else {
        api_problem(r, 400, "bad-request", "mode must be psk, rpk or x509");
        return;
    }
    if (credstore_enabled()) {
        submit_put(r, params[0], &sp);
        goto out;
    }
    bool existed = creds_ep_secured(params[0], strlen(params[0]));
    int rc = creds_put(params[0], &sp, (int64_t)time(NULL));
    answer_put(r, params[0], rc, existed);
out:
    explicit_bzero(key, sizeof(key));
}

void h_credentials_get(struct api_req *r, char *const *params, const char *query)
{
    (void)query;
    json_t *j = creds_info(params[0]);
    if (!j)
        api_problem(r, 404, "credentials-not-found", "no credentials for this endpoint");
    else
        api_reply_json(r, 200, j);
}

void h_credentials_delete(struct api_req *r, char *const *params, const char *query)
{
    (void)query;
    if (credstore_enabled()) {
        submit_del(r, params[0]);
        return;
    }
    if (creds_del(params[0]) != 0) {
        api_problem(r, 404, "credentials-not-found", "no credentials for this endpoint");
    } else {
        coaps_revoke(params[0]);
        api_reply(r, 204, NULL, NULL, 0);
    }
}
