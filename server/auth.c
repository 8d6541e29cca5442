#include "auth.h"

#include "base/err.h"
#include "base/util.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/sha256.h>

static struct {
    bool set;
    unsigned char salt[16];
    unsigned char hash[WC_SHA256_DIGEST_SIZE];
} boot;

static int salted_hash(const unsigned char salt[16], const char *tok, size_t len,
                       unsigned char out[WC_SHA256_DIGEST_SIZE])
{
    wc_Sha256 sha;
    if (wc_InitSha256(&sha) != 0)
        return LW_EINTERNAL;
    int rc = wc_Sha256Update(&sha, salt, 16);
    if (rc == 0)
        rc = wc_Sha256Update(&sha, (const unsigned char *)tok, (word32)len);
    if (rc == 0)
        rc = wc_Sha256Final(&sha, out);
    wc_Sha256Free(&sha);
    return rc ? LW_EINTERNAL : 0;
}

int lw_auth_load_bootstrap(const char *path, char *why, size_t whylen)
{
    char tok[300];
    int rc = LW_EINVAL;
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(why, whylen, "cannot open %s: %s", path, strerror(errno));
        return LW_ENOENT;
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077)) {
        snprintf(why, whylen, "%s is readable by group or others (chmod 600 it)", path);
        goto out;
    }
    if (!fgets(tok, sizeof(tok), f)) {
        snprintf(why, whylen, "%s is empty", path);
        goto out;
    }
    size_t n = strcspn(tok, "\r\n");
    tok[n] = '\0';
    if (n < 32 || n > 256) {
        snprintf(why, whylen, "%s: a token must be 32 to 256 characters", path);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        char c = tok[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_')) {
            snprintf(why, whylen, "%s: a token may contain only A-Z a-z 0-9 - _", path);
            goto out;
        }
    }
    if (lw_random(boot.salt, sizeof(boot.salt)) || salted_hash(boot.salt, tok, n, boot.hash)) {
        snprintf(why, whylen, "cannot hash the token");
        rc = LW_EINTERNAL;
        goto out;
    }
    boot.set = true;
    rc = 0;
out:
    lw_secure_zero(tok, sizeof(tok));
    fclose(f);
    return rc;
}

bool lw_auth_is_bootstrap(const char *token, size_t len)
{
    unsigned char h[WC_SHA256_DIGEST_SIZE];
    if (!boot.set || salted_hash(boot.salt, token, len, h))
        return false;
    return lw_ct_equal(h, boot.hash, sizeof(h));
}

void lw_auth_clear(void)
{
    lw_secure_zero(&boot, sizeof(boot));
}
