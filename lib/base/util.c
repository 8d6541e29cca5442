#include "util.h"

#include "err.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

static _Atomic uint64_t assert_failures;
static lw_assert_hook_fn assert_hook;

_Noreturn void lw__require_failed(const char *expr, const char *file, int line)
{
    fprintf(stderr, "lwm2md: invariant failed: %s (%s:%d)\n", expr, file, line);
    abort();
}

bool lw__assert_failed(const char *expr, const char *file, int line)
{
    assert_failures++;
    if (assert_hook)
        assert_hook(expr, file, line);
#ifdef LW_DEBUG_ASSERT
    lw__require_failed(expr, file, line);
#endif
    return true;
}

void lw_set_assert_hook(lw_assert_hook_fn fn)
{
    assert_hook = fn;
}
uint64_t lw_assert_failures(void)
{
    return assert_failures;
}

void lw_hex_encode(char *out, const uint8_t *in, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * len] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int lw_hex_decode(uint8_t *out, size_t cap, const char *in, size_t in_len)
{
    if (in_len % 2)
        return LW_EMALFORMED;
    if (in_len / 2 > cap)
        return LW_ENOSPC;
    for (size_t i = 0; i < in_len / 2; i++) {
        int hi = hexval(in[2 * i]), lo = hexval(in[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return LW_EMALFORMED;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return (int)(in_len / 2);
}

int lw_random(void *out, size_t len)
{
    uint8_t *p = out;
    while (len) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0)
            return LW_EIO;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int lw_parse_u64(const char *s, size_t len, uint64_t *out)
{
    if (len == 0)
        return LW_EMALFORMED;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return LW_EMALFORMED;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return LW_ERANGE;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int lw_parse_i64(const char *s, size_t len, int64_t *out)
{
    bool neg = len > 0 && s[0] == '-';
    uint64_t v;
    int rc = lw_parse_u64(s + neg, len - neg, &v);
    if (rc)
        return rc;
    if (neg) {
        if (v > (uint64_t)INT64_MAX + 1)
            return LW_ERANGE;
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    } else {
        if (v > INT64_MAX)
            return LW_ERANGE;
        *out = (int64_t)v;
    }
    return 0;
}

/* SipHash-2-4 (Aumasson and Bernstein, "SipHash: a fast short-input PRF", 2012): written here
 * because no Debian library exposes a keyed short-input hash as a plain C function. */
#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND           \
    do {                   \
        v0 += v1;          \
        v1 = ROTL(v1, 13); \
        v1 ^= v0;          \
        v0 = ROTL(v0, 32); \
        v2 += v3;          \
        v3 = ROTL(v3, 16); \
        v3 ^= v2;          \
        v0 += v3;          \
        v3 = ROTL(v3, 21); \
        v3 ^= v0;          \
        v2 += v1;          \
        v1 = ROTL(v1, 17); \
        v1 ^= v2;          \
        v2 = ROTL(v2, 32); \
    } while (0)

static inline uint64_t load_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v; /* little-endian host (static_assert in lw_siphash) */
}

uint64_t lw_siphash(const uint8_t key[16], const void *data, size_t len)
{
    static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "little-endian host expected");
    const uint8_t *in = data;
    uint64_t k0 = load_le64(key), k1 = load_le64(key + 8);
    uint64_t v0 = 0x736f6d6570736575ull ^ k0, v1 = 0x646f72616e646f6dull ^ k1;
    uint64_t v2 = 0x6c7967656e657261ull ^ k0, v3 = 0x7465646279746573ull ^ k1;
    const uint8_t *end = in + (len & ~(size_t)7);
    for (; in != end; in += 8) {
        uint64_t m = load_le64(in);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    switch (len & 7) {
    case 7: b |= (uint64_t)in[6] << 48; /* fall through */
    case 6: b |= (uint64_t)in[5] << 40; /* fall through */
    case 5: b |= (uint64_t)in[4] << 32; /* fall through */
    case 4: b |= (uint64_t)in[3] << 24; /* fall through */
    case 3: b |= (uint64_t)in[2] << 16; /* fall through */
    case 2: b |= (uint64_t)in[1] << 8;  /* fall through */
    case 1: b |= (uint64_t)in[0]; break;
    default: break;
    }
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

bool lw_ct_equal(const void *a, const void *b, size_t len)
{
    const volatile uint8_t *x = a, *y = b;
    uint8_t d = 0;
    for (size_t i = 0; i < len; i++)
        d |= x[i] ^ y[i];
    return d == 0;
}

void lw_secure_zero(void *p, size_t len)
{
    explicit_bzero(p, len);
}
