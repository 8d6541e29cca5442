/* server/secrets.c - AES-256-GCM sealing under a master key ring (see secrets.h). */
#include "secrets.h"

#include "base/err.h"
#include "base/util.h"
#include "config.h"
#include "log.h"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/aes.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEY_FILE_MAX 4096

struct ring_key {
    uint32_t id;
    uint8_t key[SECRETS_KEY_LEN];
};

struct secrets_ring {
    size_t n;
    int cur; /* index of the current key, -1 none */
    struct ring_key k[SECRETS_MAX_KEYS];
};

/* ---- key material ---------------------------------------------------------------------------- */

static bool blank(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int secrets_parse_key(const uint8_t *data, size_t len, uint8_t key[SECRETS_KEY_LEN])
{
    size_t b = 0, e = len;
    if (!data)
        return LW_EMALFORMED;
    /* Exactly 32 bytes: raw key material (it may contain any byte, blanks included). */
    if (len == SECRETS_KEY_LEN) {
        memcpy(key, data, SECRETS_KEY_LEN);
        return 0;
    }
    while (b < e && blank(data[b]))
        b++;
    while (e > b && blank(data[e - 1]))
        e--;
    if (e - b != 2 * SECRETS_KEY_LEN)
        return LW_EMALFORMED;
    if (lw_hex_decode(key, SECRETS_KEY_LEN, (const char *)data + b, e - b) != SECRETS_KEY_LEN) {
        lw_secure_zero(key, SECRETS_KEY_LEN);
        return LW_EMALFORMED;
    }
    return 0;
}

int secrets_read_key_file(const char *path, uint8_t key[SECRETS_KEY_LEN], char *why, size_t cap)
{
    uint8_t buf[KEY_FILE_MAX + 1];
    size_t len = 0;
    struct stat sb;
    int rc = LW_EIO;
    char dummy[1];
    if (!why) {
        why = dummy;
        cap = sizeof(dummy);
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        snprintf(why, cap, "cannot open master key file %s: %s", path, strerror(errno));
        return LW_EIO;
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        snprintf(why, cap, "master key file %s is not a regular file", path);
        goto out;
    }
    if (sb.st_mode & S_IRWXO) {
        snprintf(why, cap,
                 "master key file %s is accessible to other users (mode %04o): "
                 "chmod 0600 it",
                 path, (unsigned)(sb.st_mode & 07777));
        rc = LW_EPERM;
        goto out;
    }
    for (;;) {
        ssize_t r = read(fd, buf + len, sizeof(buf) - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(why, cap, "cannot read master key file %s: %s", path, strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len == sizeof(buf)) {
            snprintf(why, cap, "master key file %s is too large", path);
            goto out;
        }
    }
    if (secrets_parse_key(buf, len, key) != 0) {
        snprintf(why, cap,
                 "master key file %s holds no key: expected 32 raw bytes or 64 hex digits", path);
        rc = LW_EMALFORMED;
        goto out;
    }
    rc = 0;
out:
    lw_secure_zero(buf, sizeof(buf));
    close(fd);
    return rc;
}

uint32_t secrets_key_id(const uint8_t key[SECRETS_KEY_LEN])
{
    static const char label[] = "lwm2md master key id";
    uint8_t h[WC_SHA256_DIGEST_SIZE];
    wc_Sha256 sha;
    uint32_t id = 0;
    if (wc_InitSha256(&sha) == 0) {
        if (wc_Sha256Update(&sha, (const uint8_t *)label, sizeof(label) - 1) == 0 &&
            wc_Sha256Update(&sha, key, SECRETS_KEY_LEN) == 0 && wc_Sha256Final(&sha, h) == 0)
            id = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
        wc_Sha256Free(&sha);
    }
    id &= 0x7fffffffu;
    return id ? id : 1; /* 0 means "none" */
}

/* ---- rings ----------------------------------------------------------------------------------- */

struct secrets_ring *secrets_ring_new(void)
{
    struct secrets_ring *r = calloc(1, sizeof(*r));
    if (r)
        r->cur = -1;
    return r;
}

void secrets_ring_free(struct secrets_ring *r)
{
    if (!r)
        return;
    lw_secure_zero(r, sizeof(*r));
    free(r);
}

static int find(const struct secrets_ring *r, uint32_t id)
{
    for (size_t i = 0; r && i < r->n; i++)
        if (r->k[i].id == id)
            return (int)i;
    return -1;
}

int secrets_ring_add(struct secrets_ring *r, const uint8_t key[SECRETS_KEY_LEN], bool current)
{
    uint32_t id = secrets_key_id(key);
    int i = find(r, id);
    if (i >= 0) {
        if (!lw_ct_equal(r->k[i].key, key, SECRETS_KEY_LEN))
            return LW_EEXIST;
    } else {
        if (r->n >= SECRETS_MAX_KEYS)
            return LW_ENOSPC;
        i = (int)r->n;
    }
    if (current && r->cur >= 0 && r->cur != i)
        return LW_EEXIST;
    if (i == (int)r->n) {
        r->k[i].id = id;
        memcpy(r->k[i].key, key, SECRETS_KEY_LEN);
        r->n++;
    }
    if (current)
        r->cur = i;
    return 0;
}

uint32_t secrets_ring_current(const struct secrets_ring *r)
{
    return r && r->cur >= 0 ? r->k[r->cur].id : 0;
}

size_t secrets_ring_count(const struct secrets_ring *r)
{
    return r ? r->n : 0;
}

bool secrets_ring_has(const struct secrets_ring *r, uint32_t key_id)
{
    return find(r, key_id) >= 0;
}

/* ---- seal / open ----------------------------------------------------------------------------- */

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* GCM additional data: version | key id | ad. Returns its length, 0 when ad is too long. */
static size_t full_ad(uint8_t *out, const uint8_t *hdr, const uint8_t *ad, size_t ad_len)
{
    if (ad_len > SECRETS_AD_MAX)
        return 0;
    memcpy(out, hdr, 5);
    if (ad_len)
        memcpy(out + 5, ad, ad_len);
    return 5 + ad_len;
}

int secrets_seal(const struct secrets_ring *r, const uint8_t *ad, size_t ad_len, const uint8_t *pt,
                 size_t pt_len, uint8_t *out, size_t cap, size_t *out_len)
{
    uint8_t aad[5 + SECRETS_AD_MAX];
    Aes aes;
    int rc;
    if (!r || r->cur < 0)
        return LW_ENOENT;
    if (pt_len > UINT32_MAX - SECRETS_OVERHEAD || cap < pt_len + SECRETS_OVERHEAD)
        return LW_ENOSPC;
    const struct ring_key *k = &r->k[r->cur];
    out[0] = SECRETS_VERSION;
    put_be32(out + 1, k->id);
    if (lw_random(out + 5, SECRETS_NONCE_LEN) != 0)
        return LW_EIO;
    size_t aad_len = full_ad(aad, out, ad, ad_len);
    if (!aad_len)
        return LW_EINVAL;
    if (wc_AesInit(&aes, NULL, INVALID_DEVID) != 0)
        return LW_EINTERNAL;
    rc = wc_AesGcmSetKey(&aes, k->key, SECRETS_KEY_LEN);
    if (rc == 0)
        rc = wc_AesGcmEncrypt(&aes, out + SECRETS_HDR_LEN, pt, (word32)pt_len, out + 5,
                              SECRETS_NONCE_LEN, out + SECRETS_HDR_LEN + pt_len, SECRETS_TAG_LEN,
                              aad, (word32)aad_len);
    wc_AesFree(&aes);
    lw_secure_zero(&aes, sizeof(aes));
    if (rc != 0)
        return LW_EINTERNAL;
    *out_len = pt_len + SECRETS_OVERHEAD;
    return 0;
}

int secrets_blob_info(const uint8_t *blob, size_t len, uint32_t *key_id,
                      uint8_t nonce[SECRETS_NONCE_LEN])
{
    if (!blob || len < SECRETS_OVERHEAD || blob[0] != SECRETS_VERSION)
        return LW_EMALFORMED;
    if (key_id)
        *key_id = get_be32(blob + 1);
    if (nonce)
        memcpy(nonce, blob + 5, SECRETS_NONCE_LEN);
    return 0;
}

int secrets_open(const struct secrets_ring *r, const uint8_t *ad, size_t ad_len,
                 const uint8_t *blob, size_t len, uint8_t *out, size_t cap, size_t *out_len,
                 uint32_t *key_id)
{
    uint8_t aad[5 + SECRETS_AD_MAX];
    uint32_t id;
    Aes aes;
    int rc = secrets_blob_info(blob, len, &id, NULL);
    if (rc)
        return rc;
    if (key_id)
        *key_id = id;
    if (len - SECRETS_OVERHEAD > UINT32_MAX)
        return LW_EMALFORMED;
    int i = find(r, id);
    if (i < 0)
        return LW_ENOENT;
    size_t ct_len = len - SECRETS_OVERHEAD;
    if (cap < ct_len)
        return LW_ENOSPC;
    size_t aad_len = full_ad(aad, blob, ad, ad_len);
    if (!aad_len)
        return LW_EINVAL;
    if (wc_AesInit(&aes, NULL, INVALID_DEVID) != 0)
        return LW_EINTERNAL;
    rc = wc_AesGcmSetKey(&aes, r->k[i].key, SECRETS_KEY_LEN);
    if (rc == 0)
        rc = wc_AesGcmDecrypt(&aes, out, blob + SECRETS_HDR_LEN, (word32)ct_len, blob + 5,
                              SECRETS_NONCE_LEN, blob + SECRETS_HDR_LEN + ct_len, SECRETS_TAG_LEN,
                              aad, (word32)aad_len);
    wc_AesFree(&aes);
    lw_secure_zero(&aes, sizeof(aes));
    if (rc == AES_GCM_AUTH_E) {
        lw_secure_zero(out, ct_len);
        return LW_EPERM;
    }
    if (rc != 0) {
        lw_secure_zero(out, ct_len);
        return LW_EINTERNAL;
    }
    *out_len = ct_len;
    return 0;
}

size_t secrets_row_ad(uint8_t *out, size_t cap, const char *table, size_t n,
                      const uint8_t *const *parts, const size_t *lens)
{
    static const char pfx[] = "lwm2md:";
    size_t tl = strlen(table), len = sizeof(pfx) - 1 + tl;
    if (len > cap)
        return 0;
    memcpy(out, pfx, sizeof(pfx) - 1);
    memcpy(out + sizeof(pfx) - 1, table, tl);
    for (size_t i = 0; i < n; i++) {
        if (lens[i] > cap || len + 1 + lens[i] > cap)
            return 0;
        out[len++] = 0;
        if (lens[i])
            memcpy(out + len, parts[i], lens[i]);
        len += lens[i];
    }
    return len;
}

/* ---- the daemon's ring ----------------------------------------------------------------------- */

static int add_file(struct secrets_ring *r, const char *path, bool current, char *why, size_t cap)
{
    uint8_t key[SECRETS_KEY_LEN];
    int rc = secrets_read_key_file(path, key, why, cap);
    if (rc == 0) {
        rc = secrets_ring_add(r, key, current);
        if (rc == LW_ENOSPC)
            snprintf(why, cap, "too many master keys (at most %d)", SECRETS_MAX_KEYS);
        else if (rc == LW_EEXIST)
            snprintf(why, cap, "master key file %s: key id clash with another key", path);
    }
    lw_secure_zero(key, sizeof(key));
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* systemd credentials: lwm2md-master-key (current) and lwm2md-master-key.old* (older). */
static int from_credentials(struct secrets_ring *r, const char *dir, char *why, size_t cap)
{
    char path[4096];
    char *names[SECRETS_MAX_KEYS];
    size_t nn = 0;
    int rc = 0;
    struct dirent *de;
    snprintf(path, sizeof(path), "%s/%s", dir, SECRETS_CRED_NAME);
    if (access(path, F_OK) != 0)
        return 0; /* no credential: no key */
    if ((rc = add_file(r, path, true, why, cap)) != 0)
        return rc;
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, SECRETS_CRED_NAME ".old", sizeof(SECRETS_CRED_NAME ".old") - 1))
            continue;
        if (nn == SECRETS_MAX_KEYS) {
            snprintf(why, cap, "too many master keys (at most %d)", SECRETS_MAX_KEYS);
            rc = LW_ENOSPC;
            break;
        }
        if (!(names[nn] = strdup(de->d_name))) {
            rc = LW_ENOMEM;
            break;
        }
        nn++;
    }
    closedir(d);
    qsort(names, nn, sizeof(names[0]), cmp_str);
    for (size_t i = 0; i < nn; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        if (rc == 0)
            rc = add_file(r, path, false, why, cap);
        free(names[i]);
    }
    return rc;
}

int secrets_ring_from_config(const struct lw_config *cfg, struct secrets_ring **out, char *why,
                             size_t cap)
{
    const char *cur = cfg->sec_master_key_file ? cfg->sec_master_key_file : "";
    const char *old = cfg->sec_old_master_key_files ? cfg->sec_old_master_key_files : "";
    const char *creds = getenv("CREDENTIALS_DIRECTORY");
    struct secrets_ring *r = NULL;
    char *list = NULL;
    int rc = 0;
    *out = NULL;
    if (!*cur && *old) {
        snprintf(why, cap, "security.old_master_key_files is set without security.master_key_file");
        return LW_ECONFIG;
    }
    if (!*cur && !(creds && *creds))
        return 0;
    if (!(r = secrets_ring_new()))
        return LW_ENOMEM;
    if (*cur) {
        if ((rc = add_file(r, cur, true, why, cap)) != 0)
            goto out;
        if (!(list = strdup(old))) {
            rc = LW_ENOMEM;
            goto out;
        }
        char *save = NULL;
        for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            while (*tok == ' ' || *tok == '\t')
                tok++;
            size_t l = strlen(tok);
            while (l && (tok[l - 1] == ' ' || tok[l - 1] == '\t'))
                tok[--l] = '\0';
            if (!*tok)
                continue;
            if ((rc = add_file(r, tok, false, why, cap)) != 0)
                goto out;
        }
    } else if ((rc = from_credentials(r, creds, why, cap)) != 0) {
        goto out;
    }
    if (secrets_ring_count(r) == 0)
        goto out; /* $CREDENTIALS_DIRECTORY without our credential */
    *out = r;
    r = NULL;
out:
    free(list);
    secrets_ring_free(r);
    return rc;
}

static struct secrets_ring *G;

int secrets_start(const struct lw_config *cfg)
{
    char why[512] = "";
    struct secrets_ring *r;
    int rc = secrets_ring_from_config(cfg, &r, why, sizeof(why));
    if (rc) {
        log_err(SYS, "%s", why[0] ? why : lw_strerror(rc));
        return rc;
    }
    secrets_ring_free(G);
    G = r;
    if (!G) {
        if (cfg->db_url && *cfg->db_url)
            log_warn(SYS, "no master key configured (security.master_key_file): device "
                          "credentials cannot be stored in the database");
        return 0;
    }
    char ids[16 * 12] = "";
    for (size_t i = 0; i < G->n; i++)
        if ((int)i != G->cur)
            snprintf(ids + strlen(ids), sizeof(ids) - strlen(ids), "%s%u", ids[0] ? "," : "",
                     G->k[i].id);
    log_info(SYS, "master keys loaded: current=%u old=%s", secrets_ring_current(G),
             ids[0] ? ids : "none");
    return 0;
}

const struct secrets_ring *secrets_ring(void)
{
    return G;
}

void secrets_stop(void)
{
    secrets_ring_free(G);
    G = NULL;
}
