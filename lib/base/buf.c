#include "buf.h"

#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void lw_buf_init_fixed(struct lw_buf *b, void *mem, size_t cap)
{
    *b = (struct lw_buf){.data = mem, .cap = cap};
}

void lw_buf_init(struct lw_buf *b, size_t initial_cap)
{
    *b = (struct lw_buf){.growable = true};
    if (initial_cap) {
        b->data = malloc(initial_cap);
        if (b->data)
            b->cap = initial_cap;
        else
            b->overflow = true;
    }
}

void lw_buf_deinit(struct lw_buf *b)
{
    if (b->growable)
        free(b->data);
    *b = (struct lw_buf){0};
}

int lw_buf_status(const struct lw_buf *b)
{
    if (!b->overflow)
        return 0;
    return b->growable ? LW_ENOMEM : LW_ENOSPC;
}

uint8_t *lw_buf_reserve(struct lw_buf *b, size_t n)
{
    if (b->overflow)
        return NULL;
    if (n <= b->cap - b->len)
        return b->data + b->len;
    if (!b->growable || n > SIZE_MAX / 2 - b->len) {
        b->overflow = true;
        return NULL;
    }
    size_t cap = b->cap ? b->cap : 64;
    while (cap - b->len < n)
        cap *= 2;
    uint8_t *d = realloc(b->data, cap);
    if (!d) {
        b->overflow = true;
        return NULL;
    }
    b->data = d;
    b->cap = cap;
    return b->data + b->len;
}

void lw_buf_put(struct lw_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    uint8_t *d = lw_buf_reserve(b, n);
    if (d) {
        memcpy(d, p, n);
        b->len += n;
    }
}

void lw_buf_put_u8(struct lw_buf *b, uint8_t v)
{
    lw_buf_put(b, &v, 1);
}

void lw_buf_put_be16(struct lw_buf *b, uint16_t v)
{
    uint8_t t[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    lw_buf_put(b, t, 2);
}

void lw_buf_put_be32(struct lw_buf *b, uint32_t v)
{
    uint8_t t[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    lw_buf_put(b, t, 4);
}

void lw_buf_put_be64(struct lw_buf *b, uint64_t v)
{
    lw_buf_put_be32(b, (uint32_t)(v >> 32));
    lw_buf_put_be32(b, (uint32_t)v);
}

void lw_buf_put_str(struct lw_buf *b, const char *s)
{
    lw_buf_put(b, s, strlen(s));
}

void lw_buf_printf(struct lw_buf *b, const char *fmt, ...)
{
    if (b->overflow)
        return;
    va_list ap;
    va_start(ap, fmt);
    size_t room = b->cap - b->len;
    int n = vsnprintf(room ? (char *)b->data + b->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->overflow = true;
        return;
    }
    if ((size_t)n < room) {
        b->len += (size_t)n;
        return;
    }
    /* Did not fit (the NUL included): grow and format again. */
    if (!lw_buf_reserve(b, (size_t)n + 1))
        return;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}
