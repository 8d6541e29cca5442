#include "creds.h"

#include "base/buf.h"
#include "base/err.h"
#include "base/hash.h"
#include "base/util.h"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/hash.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* One endpoint's credentials: one allocation, in both maps (by endpoint and by lookup key). */
struct cred {
    uint8_t mode;
    uint8_t ep_len;
    uint8_t id_len;  /* lookup key length: PSK identity, certificate name, or 32 (RPK hash) */
    uint8_t key_len; /* PSK */
    bool has_pin;
    int64_t created_s;
    char ep[CREDS_EP_MAX + 1];
    uint8_t id[CREDS_ID_MAX];
    uint8_t key[CREDS_KEY_MAX];
    uint8_t pin[32];
};

/* Lookup key of the second map: mode + bytes (a PSK identity and a certificate name may be
 * equal strings for different devices). */
struct lkey {
    uint8_t mode;
    const uint8_t *p;
    size_t len;
};

static struct {
    pthread_rwlock_t lock;
    struct lw_hmap by_ep, by_id;
    uint8_t hkey[16];
    bool inited;
    /* Entries in by_ep, stored under the write lock after every change: creds_ep_secured reads it
     * without the lock so that a Register with no credential in the store (the common NoSec
     * fleet) takes no lock. A zero read orders that Register before any creds_put still in
     * progress, so the rule stays exact. */
    atomic_size_t n;
} st = {.lock = PTHREAD_RWLOCK_INITIALIZER};

/* Publishes the entry count (write lock held). */
static void count_locked(void)
{
    atomic_store(&st.n, st.inited ? lw_hmap_count(&st.by_ep) : 0);
}

static uint64_t h_ep(const char *ep, size_t len)
{
    return lw_siphash(st.hkey, ep, len);
}

static uint64_t h_id(uint8_t mode, const uint8_t *p, size_t len)
{
    return lw_siphash(st.hkey, p, len) ^ ((uint64_t)mode * 0x9e3779b97f4a7c15ull);
}

static bool ep_eq(const void *item, const void *key)
{
    const struct cred *c = item;
    const struct lw_bytes *k = key;
    return c->ep_len == k->len && memcmp(c->ep, k->ptr, k->len) == 0;
}

static bool id_eq(const void *item, const void *key)
{
    const struct cred *c = item;
    const struct lkey *k = key;
    return c->mode == k->mode && c->id_len == k->len && memcmp(c->id, k->p, k->len) == 0;
}

int creds_init(void)
{
    int rc = 0;
    pthread_rwlock_wrlock(&st.lock);
    if (st.inited)
        goto out;
    if (lw_random(st.hkey, sizeof(st.hkey)) != 0) {
        rc = LW_EIO;
        goto out;
    }
    if ((rc = lw_hmap_init(&st.by_ep, 0)) != 0)
        goto out;
    if ((rc = lw_hmap_init(&st.by_id, 0)) != 0) {
        lw_hmap_deinit(&st.by_ep);
        goto out;
    }
    st.inited = true;
out:
    pthread_rwlock_unlock(&st.lock);
    return rc;
}

void creds_deinit(void)
{
    pthread_rwlock_wrlock(&st.lock);
    if (st.inited) {
        size_t pos = 0;
        struct cred *c;
        while ((c = lw_hmap_next(&st.by_ep, &pos))) {
            explicit_bzero(c, sizeof(*c));
            free(c);
        }
        lw_hmap_deinit(&st.by_ep);
        lw_hmap_deinit(&st.by_id);
        st.inited = false;
    }
    count_locked();
    pthread_rwlock_unlock(&st.lock);
}

static struct cred *find_ep_locked(const char *ep, size_t len)
{
    struct lw_bytes k = LW_BYTES(ep, len);
    return st.inited ? lw_hmap_get(&st.by_ep, h_ep(ep, len), &k, ep_eq) : NULL;
}

static struct cred *find_id_locked(uint8_t mode, const uint8_t *p, size_t len)
{
    struct lkey k = {mode, p, len};
    return st.inited ? lw_hmap_get(&st.by_id, h_id(mode, p, len), &k, id_eq) : NULL;
}

static void unlink_locked(struct cred *c)
{
    lw_hmap_del_item(&st.by_ep, h_ep(c->ep, c->ep_len), c);
    lw_hmap_del_item(&st.by_id, h_id(c->mode, c->id, c->id_len), c);
}

/* Builds the entry of ep from spec (validated). 0, LW_EINVAL or LW_ENOMEM; *out owned. */
static int make_cred(const char *ep, const struct creds_spec *spec, int64_t now_s,
                     struct cred **out)
{
    size_t ep_len = strlen(ep);
    struct cred *c = NULL;
    int rc = LW_EINVAL;
    *out = NULL;
    if (ep_len == 0 || ep_len > CREDS_EP_MAX)
        return LW_EINVAL;
    c = calloc(1, sizeof(*c));
    if (!c)
        return LW_ENOMEM;
    c->mode = (uint8_t)spec->mode;
    c->ep_len = (uint8_t)ep_len;
    memcpy(c->ep, ep, ep_len);
    c->created_s = now_s;
    c->has_pin = spec->has_pin;
    memcpy(c->pin, spec->pin, sizeof(c->pin));
    switch (spec->mode) {
    case CREDS_PSK:
        if (spec->id_len == 0 || spec->id_len > CREDS_ID_MAX || spec->key_len < CREDS_KEY_MIN ||
            spec->key_len > CREDS_KEY_MAX)
            goto out;
        memcpy(c->id, spec->id, spec->id_len);
        c->id_len = (uint8_t)spec->id_len;
        memcpy(c->key, spec->key, spec->key_len);
        c->key_len = (uint8_t)spec->key_len;
        c->has_pin = false;
        break;
    case CREDS_RPK:
        if (!spec->has_pin)
            goto out;
        memcpy(c->id, spec->pin, 32);
        c->id_len = 32;
        break;
    case CREDS_X509: {
        const uint8_t *name = spec->id ? spec->id : (const uint8_t *)ep;
        size_t nlen = spec->id ? spec->id_len : ep_len;
        if (nlen == 0 || nlen > CREDS_ID_MAX)
            goto out;
        memcpy(c->id, name, nlen);
        c->id_len = (uint8_t)nlen;
        break;
    }
    default: goto out;
    }
    *out = c;
    c = NULL;
    rc = 0;
out:
    if (c) {
        explicit_bzero(c, sizeof(*c));
        free(c);
    }
    return rc;
}

int creds_check(const char *ep, const struct creds_spec *spec)
{
    struct cred *c;
    int rc = make_cred(ep, spec, 0, &c);
    if (rc)
        return rc;
    pthread_rwlock_rdlock(&st.lock);
    const struct cred *other = find_id_locked(c->mode, c->id, c->id_len);
    if (!st.inited)
        rc = LW_EINVAL;
    else if (other && (other->ep_len != c->ep_len || memcmp(other->ep, ep, c->ep_len) != 0))
        rc = LW_EEXIST;
    pthread_rwlock_unlock(&st.lock);
    explicit_bzero(c, sizeof(*c));
    free(c);
    return rc;
}

int creds_put(const char *ep, const struct creds_spec *spec, int64_t now_s)
{
    size_t ep_len = strlen(ep);
    struct cred *c = NULL;
    int rc = make_cred(ep, spec, now_s, &c);
    if (rc)
        return rc;
    pthread_rwlock_wrlock(&st.lock);
    if (!st.inited) {
        rc = LW_EINVAL;
    } else {
        struct cred *other = find_id_locked(c->mode, c->id, c->id_len);
        if (other && (other->ep_len != ep_len || memcmp(other->ep, ep, ep_len) != 0)) {
            rc = LW_EEXIST;
        } else {
            struct cred *old = find_ep_locked(ep, ep_len);
            if (old)
                unlink_locked(old);
            rc = lw_hmap_put(&st.by_ep, h_ep(ep, ep_len), c);
            if (rc == 0) {
                rc = lw_hmap_put(&st.by_id, h_id(c->mode, c->id, c->id_len), c);
                if (rc != 0)
                    lw_hmap_del_item(&st.by_ep, h_ep(ep, ep_len), c);
            }
            if (rc == 0) {
                if (old) {
                    explicit_bzero(old, sizeof(*old));
                    free(old);
                }
                c = NULL;
            } else if (old) { /* put the old entry back (no allocation: its slots were freed) */
                lw_hmap_put(&st.by_ep, h_ep(old->ep, old->ep_len), old);
                lw_hmap_put(&st.by_id, h_id(old->mode, old->id, old->id_len), old);
            }
        }
    }
    count_locked();
    pthread_rwlock_unlock(&st.lock);
    if (c) {
        explicit_bzero(c, sizeof(*c));
        free(c);
    }
    return rc;
}

int creds_del(const char *ep)
{
    int rc = LW_ENOENT;
    pthread_rwlock_wrlock(&st.lock);
    struct cred *c = find_ep_locked(ep, strlen(ep));
    if (c) {
        unlink_locked(c);
        explicit_bzero(c, sizeof(*c));
        free(c);
        rc = 0;
    }
    count_locked();
    pthread_rwlock_unlock(&st.lock);
    return rc;
}

static const char *mode_name(uint8_t m)
{
    switch (m) {
    case CREDS_PSK: return "psk";
    case CREDS_RPK: return "rpk";
    case CREDS_X509: return "x509";
    default: return "none";
    }
}

json_t *creds_info(const char *ep)
{
    json_t *j = NULL;
    char hex[65];
    pthread_rwlock_rdlock(&st.lock);
    const struct cred *c = find_ep_locked(ep, strlen(ep));
    if (c) {
        j = json_object();
        if (j) {
            json_object_set_new(j, "endpoint", json_stringn(c->ep, c->ep_len));
            json_object_set_new(j, "mode", json_string(mode_name(c->mode)));
            if (c->mode == CREDS_PSK)
                json_object_set_new(j, "psk_identity",
                                    json_stringn((const char *)c->id, c->id_len));
            if (c->mode == CREDS_X509)
                json_object_set_new(j, "certificate_name",
                                    json_stringn((const char *)c->id, c->id_len));
            if (c->has_pin) {
                lw_hex_encode(hex, c->pin, 32);
                json_object_set_new(j, c->mode == CREDS_RPK ? "spki_sha256" : "pin_sha256",
                                    json_string(hex));
            }
            json_object_set_new(j, "created_at", json_integer(c->created_s));
        }
    }
    pthread_rwlock_unlock(&st.lock);
    return j;
}

bool creds_ep_secured(const char *ep, size_t len)
{
    if (atomic_load(&st.n) == 0)
        return false;
    pthread_rwlock_rdlock(&st.lock);
    bool r = find_ep_locked(ep, len) != NULL;
    pthread_rwlock_unlock(&st.lock);
    return r;
}

size_t creds_count(void)
{
    pthread_rwlock_rdlock(&st.lock);
    size_t n = st.inited ? lw_hmap_count(&st.by_ep) : 0;
    pthread_rwlock_unlock(&st.lock);
    return n;
}

size_t creds_psk_key(const uint8_t *id, size_t id_len, uint8_t *key, size_t cap)
{
    size_t n = 0;
    pthread_rwlock_rdlock(&st.lock);
    const struct cred *c = find_id_locked(CREDS_PSK, id, id_len);
    if (c && c->key_len <= cap) {
        memcpy(key, c->key, c->key_len);
        n = c->key_len;
    }
    pthread_rwlock_unlock(&st.lock);
    return n;
}

/* Endpoint names that may be taken from a certificate without an entry: printable ASCII. */
static bool name_is_ep(const uint8_t *p, size_t len)
{
    if (len == 0 || len > CREDS_EP_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (p[i] <= 0x20 || p[i] >= 0x7f)
            return false;
    return true;
}

int creds_bind(enum creds_mode mode, const uint8_t *id, size_t id_len, const uint8_t *der,
               size_t der_len, bool chain_ok, char *ep, size_t cap)
{
    int rc = LW_ENOENT;
    pthread_rwlock_rdlock(&st.lock);
    const struct cred *c = find_id_locked((uint8_t)mode, id, id_len);
    if (c) {
        rc = 0;
        if (mode == CREDS_X509 && der) {
            if (c->has_pin) {
                uint8_t h[32];
                if (!der || wc_Sha256Hash(der, (word32)der_len, h) != 0 ||
                    !lw_ct_equal(h, c->pin, 32))
                    rc = LW_EPERM;
            } else if (!chain_ok) {
                rc = LW_EPERM;
            }
        }
        if (rc == 0 && cap > c->ep_len) {
            memcpy(ep, c->ep, c->ep_len);
            ep[c->ep_len] = '\0';
        } else if (rc == 0) {
            rc = LW_ENOSPC;
        }
    } else if (mode == CREDS_X509 && chain_ok && name_is_ep(id, id_len) && cap > id_len) {
        memcpy(ep, id, id_len);
        ep[id_len] = '\0';
        rc = 0;
    }
    pthread_rwlock_unlock(&st.lock);
    return rc;
}

int creds_spki_hash(const uint8_t *der, size_t len, uint8_t hash[32])
{
    ecc_key k;
    word32 idx = 0;
    int rc = LW_EINVAL;
    if (!der || len == 0 || len > 1024 || wc_ecc_init(&k) != 0)
        return LW_EINVAL;
    /* The whole input must be one SubjectPublicKeyInfo with a valid curve point. */
    if (wc_EccPublicKeyDecode(der, &idx, &k, (word32)len) == 0 && idx == len &&
        wc_ecc_check_key(&k) == 0 && wc_Sha256Hash(der, (word32)len, hash) == 0)
        rc = 0;
    wc_ecc_free(&k);
    return rc;
}
