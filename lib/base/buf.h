/* lib/base/buf.h - byte views and output buffers.
 *
 * struct lw_bytes is a borrowed view (ptr, len) into memory owned elsewhere; parsers return views
 * into the input datagram, valid while that datagram is. struct lw_buf is an output buffer: either
 * fixed (caller's memory, never grows) or growable (heap, lw_buf_deinit frees it). Writes past a
 * fixed buffer's capacity set `overflow` and are dropped, so encoders can write unconditionally and
 * check once at the end (lw_buf_status). Any thread; one buffer per thread at a time.
 */
#ifndef LW_BASE_BUF_H
#define LW_BASE_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct lw_bytes {
    const uint8_t *ptr;
    size_t len;
};

#define LW_BYTES(p, n)  ((struct lw_bytes){(const uint8_t *)(p), (n)})
#define LW_BYTES_STR(s) ((struct lw_bytes){(const uint8_t *)(s), strlen(s)})
#define LW_BYTES_LIT(s) ((struct lw_bytes){(const uint8_t *)(s), sizeof(s) - 1})

static inline bool lw_bytes_eq(struct lw_bytes a, struct lw_bytes b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}
static inline bool lw_bytes_eq_str(struct lw_bytes a, const char *s)
{
    return lw_bytes_eq(a, LW_BYTES_STR(s));
}

struct lw_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    bool growable; /* heap-owned, grows on demand */
    bool overflow; /* a write did not fit (fixed) or allocation failed (growable) */
};

/* Fixed buffer over caller memory (borrows mem). */
void lw_buf_init_fixed(struct lw_buf *b, void *mem, size_t cap);
/* Growable heap buffer; initial capacity may be 0. Free with lw_buf_deinit. */
void lw_buf_init(struct lw_buf *b, size_t initial_cap);
void lw_buf_deinit(struct lw_buf *b);
static inline void lw_buf_reset(struct lw_buf *b)
{
    b->len = 0;
    b->overflow = false;
}
/* 0, or LW_ENOSPC (fixed buffer overflowed) / LW_ENOMEM (growth failed). */
int lw_buf_status(const struct lw_buf *b);
/* Ensures room for n more bytes; returns a pointer to them or NULL (and sets overflow). The caller
 * writes at most n bytes there and then calls lw_buf_commit(b, written). */
uint8_t *lw_buf_reserve(struct lw_buf *b, size_t n);
static inline void lw_buf_commit(struct lw_buf *b, size_t n)
{
    b->len += n;
}

void lw_buf_put(struct lw_buf *b, const void *p, size_t n);
void lw_buf_put_u8(struct lw_buf *b, uint8_t v);
void lw_buf_put_be16(struct lw_buf *b, uint16_t v);
void lw_buf_put_be32(struct lw_buf *b, uint32_t v);
void lw_buf_put_be64(struct lw_buf *b, uint64_t v);
void lw_buf_put_str(struct lw_buf *b, const char *s);
/* printf-style append; the result is not NUL-terminated in len but a NUL follows when it fits. */
void lw_buf_printf(struct lw_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline struct lw_bytes lw_buf_bytes(const struct lw_buf *b)
{
    return (struct lw_bytes){b->data, b->len};
}

/* Big-endian loads from memory known to hold enough bytes. */
static inline uint16_t lw_load_be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}
static inline uint32_t lw_load_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint64_t lw_load_be64(const uint8_t *p)
{
    return (uint64_t)lw_load_be32(p) << 32 | lw_load_be32(p + 4);
}

#endif
