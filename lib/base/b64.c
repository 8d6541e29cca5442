#include "b64.h"

#include "err.h"

#include <stdint.h>

static const char std_alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char url_alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static size_t encode(uint8_t *o, const uint8_t *in, size_t n, bool url)
{
    const char *t = url ? url_alpha : std_alpha;
    size_t w = 0, k = 0;
    for (; k + 3 <= n; k += 3) {
        uint32_t v = (uint32_t)in[k] << 16 | (uint32_t)in[k + 1] << 8 | in[k + 2];
        o[w++] = (uint8_t)t[v >> 18];
        o[w++] = (uint8_t)t[(v >> 12) & 63];
        o[w++] = (uint8_t)t[(v >> 6) & 63];
        o[w++] = (uint8_t)t[v & 63];
    }
    size_t rem = n - k;
    if (rem) {
        uint32_t v = (uint32_t)in[k] << 16 | (rem == 2 ? (uint32_t)in[k + 1] << 8 : 0);
        o[w++] = (uint8_t)t[v >> 18];
        o[w++] = (uint8_t)t[(v >> 12) & 63];
        if (rem == 2)
            o[w++] = (uint8_t)t[(v >> 6) & 63];
        if (!url) {
            if (rem == 1)
                o[w++] = '=';
            o[w++] = '=';
        }
    }
    return w;
}

void lw_b64_encode(struct lw_buf *b, struct lw_bytes in, bool url)
{
    uint8_t *o = lw_buf_reserve(b, lw_b64_len(in.len, url));
    if (o)
        lw_buf_commit(b, encode(o, in.ptr, in.len, url));
}

size_t lw_b64_encode_str(char *out, size_t cap, const void *in, size_t n, bool url)
{
    if (cap == 0)
        return 0;
    if (lw_b64_len(n, url) + 1 > cap) {
        out[0] = '\0';
        return 0;
    }
    size_t w = encode((uint8_t *)out, in, n, url);
    out[w] = '\0';
    return w;
}

static int val(uint8_t c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

int lw_b64_decode(struct lw_arena *a, const void *src, size_t n, struct lw_bytes *out)
{
    const uint8_t *s = src;
    size_t pad = 0;
    while (n > 0 && s[n - 1] == '=' && pad < 2) {
        n--;
        pad++;
    }
    if (n % 4 == 1 || (pad && (n + pad) % 4 != 0))
        return LW_EMALFORMED;
    uint8_t *o = lw_arena_alloc(a, n / 4 * 3 + 3);
    if (!o)
        return LW_ENOMEM;
    size_t w = 0;
    uint32_t acc = 0;
    unsigned bits = 0;
    for (size_t k = 0; k < n; k++) {
        int v = val(s[k]);
        if (v < 0)
            return LW_EMALFORMED;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[w++] = (uint8_t)(acc >> bits);
        }
    }
    if (acc & ((1u << bits) - 1)) /* leftover bits must be zero (canonical encoding) */
        return LW_EMALFORMED;
    *out = (struct lw_bytes){o, w};
    return 0;
}
