/* server/api/credentials.c - device DTLS credentials (admin):
 *   PUT    /api/v1/devices/{endpoint}/credentials  {"mode":"psk","identity":"..","key":"<hex>"}
 *                                                  {"mode":"x509"[,"certificate_name":".."]
 *                                                   [,"pin_sha256":"<hex>"]}
 *                                                  {"mode":"rpk","public_key":"<base64 SPKI>"}
 *   GET    /api/v1/devices/{endpoint}/credentials  metadata only
 *   DELETE /api/v1/devices/{endpoint}/credentials
 * Replacing or deleting credentials closes the endpoint's DTLS sessions (coaps_revoke).
 * Keys are never returned nor logged: answers carry the metadata of creds_info(). The store is
 * in memory (creds.h) until W1.8 persists it encrypted. Control thread. */
#include "api_int.h"

#include "base/err.h"
#include "base/util.h"
#include "coaps.h"
#include "creds.h"
#include "dir.h"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/coding.h>

#include <string.h>
#include <time.h>

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
    bool existed = creds_ep_secured(params[0], strlen(params[0]));
    int rc = creds_put(params[0], &sp, (int64_t)time(NULL));
    if (rc == LW_EEXIST)
        api_problem(r, 409, "conflict", "that identity belongs to another endpoint");
    else if (rc == LW_EINVAL)
        api_problem(r, 400, "bad-request", "invalid credentials");
    else if (rc)
        api_problem(r, rc == LW_ENOMEM ? 503 : 500, "internal", "cannot store the credentials: %s",
                    lw_strerror(rc));
    else {
        if (existed) /* sessions made with the old credentials end */
            coaps_revoke(params[0]);
        api_reply_json(r, existed ? 200 : 201, creds_info(params[0]));
    }
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
    if (creds_del(params[0]) != 0) {
        api_problem(r, 404, "credentials-not-found", "no credentials for this endpoint");
    } else {
        coaps_revoke(params[0]);
        api_reply(r, 204, NULL, NULL, 0);
    }
}
