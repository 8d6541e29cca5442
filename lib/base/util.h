/* lib/base/util.h - small helpers: container_of, min/max, array size, assertions, hex, random.
 * Any thread may call these.
 */
#ifndef LW_BASE_UTIL_H
#define LW_BASE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LW_ARRAY_SIZE(a)                   (sizeof(a) / sizeof((a)[0]))
#define LW_MIN(a, b)                       ((a) < (b) ? (a) : (b))
#define LW_MAX(a, b)                       ((a) > (b) ? (a) : (b))
#define lw_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define LW_UNUSED(x)                       ((void)(x))
#define lw_likely(x)                       __builtin_expect(!!(x), 1)
#define lw_unlikely(x)                     __builtin_expect(!!(x), 0)

/* LW_REQUIRE: invariant whose failure means memory corruption; always aborts. Never use it on
 * data derived from the network. */
#define LW_REQUIRE(x)                                   \
    do {                                                \
        if (lw_unlikely(!(x)))                          \
            lw__require_failed(#x, __FILE__, __LINE__); \
    } while (0)

/* lw_fails_assert: `if (lw_fails_assert(x)) return LW_EINTERNAL;`. Counts the failure and calls
 * the hook installed with lw_set_assert_hook (the daemon logs it); aborts only when built with
 * -DLW_DEBUG_ASSERT. Returns true when x is false. */
#define lw_fails_assert(x) (lw_unlikely(!(x)) && lw__assert_failed(#x, __FILE__, __LINE__))

_Noreturn void lw__require_failed(const char *expr, const char *file, int line);
bool lw__assert_failed(const char *expr, const char *file, int line);
typedef void (*lw_assert_hook_fn)(const char *expr, const char *file, int line);
void lw_set_assert_hook(lw_assert_hook_fn fn);
uint64_t lw_assert_failures(void);

/* Hex: writes 2*len chars plus NUL into out (size >= 2*len+1). */
void lw_hex_encode(char *out, const uint8_t *in, size_t len);
/* Decodes exactly 2*n hex digits (either case) into out[cap]; returns bytes written or a
 * negative LW_EMALFORMED / LW_ENOSPC. */
int lw_hex_decode(uint8_t *out, size_t cap, const char *in, size_t in_len);

/* Cryptographically secure random bytes from the kernel (getrandom); 0 or LW_EIO. */
int lw_random(void *out, size_t len);

/* Parse a decimal unsigned/signed integer occupying all of [s, s+len); 0 or LW_EMALFORMED /
 * LW_ERANGE. No leading '+', no whitespace. */
int lw_parse_u64(const char *s, size_t len, uint64_t *out);
int lw_parse_i64(const char *s, size_t len, int64_t *out);

/* SipHash-2-4 of data under a 128-bit key: keyed hash for tables fed by the network, so that a
 * remote peer cannot force collisions. */
uint64_t lw_siphash(const uint8_t key[16], const void *data, size_t len);

/* Constant-time comparison of secrets; true when equal. */
bool lw_ct_equal(const void *a, const void *b, size_t len);

/* Overwrite a secret in a way the compiler does not elide. */
void lw_secure_zero(void *p, size_t len);

/* LW_SANITIZED: 1 when AddressSanitizer or MemorySanitizer instruments this build (gcc defines
 * __SANITIZE_ADDRESS__, clang answers __has_feature). Code with its own allocators (pools, mapped
 * tables) falls back to malloc then, so the sanitizer still sees every object. */
#if defined(__SANITIZE_ADDRESS__)
#define LW_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define LW_SANITIZED 1
#endif
#endif

#endif
