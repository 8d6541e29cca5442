/* server/store/spill.c - telemetry queue / spill file records (see spill.h). */
#include "store/spill.h"

#include "base/err.h"
#include "lwm2m/value.h"

#include <string.h>

static uint32_t crc_table[256];
static bool crc_ready;

/* CRC-32C, reflected polynomial 0x82F63B78 (RFC 3720 appendix B.4). The table is computed once;
 * computing it twice from two threads writes the same values. */
static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
    crc_ready = true;
}

uint32_t lw__spill_crc32c_sw(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint32_t c = 0xFFFFFFFFu;
    if (!crc_ready)
        crc_init();
    for (size_t i = 0; i < n; i++)
        c = crc_table[(c ^ b[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <nmmintrin.h>
#define HAVE_CRC_HW 1
/* The same CRC with SSE 4.2's crc32 instruction (it implements exactly this polynomial), 8 bytes
 * per step: every telemetry record is checksummed when queued and again when read back, and
 * byte by byte that was ~15 k instructions per registration event in a storm. */
__attribute__((target("sse4.2"))) static uint32_t crc_hw(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t c = 0xFFFFFFFFu;
    for (; n >= 8; n -= 8, b += 8) {
        uint64_t v;
        memcpy(&v, b, 8);
        c = _mm_crc32_u64(c, v);
    }
    uint32_t c32 = (uint32_t)c;
    for (; n > 0; n--, b++)
        c32 = _mm_crc32_u8(c32, *b);
    return c32 ^ 0xFFFFFFFFu;
}
#endif

uint32_t lw_spill_crc32c(const void *p, size_t n)
{
#ifdef HAVE_CRC_HW
    if (__builtin_cpu_supports("sse4.2"))
        return crc_hw(p, n);
#endif
    return lw__spill_crc32c_sw(p, n);
}

static void put_le(uint8_t *o, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        o[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void put_n(struct lw_buf *b, uint64_t v, int n)
{
    uint8_t t[8];
    put_le(t, v, n);
    lw_buf_put(b, t, (size_t)n);
}

static bool is_bytes_type(uint8_t t)
{
    return t == LW_M2M_T_STRING || t == LW_M2M_T_OPAQUE || t == LW_M2M_T_OBJLNK ||
           t == LW_M2M_T_CORELNK;
}

int lw_spill_encode(struct lw_buf *out, const struct lw_spill_rec *r)
{
    size_t start = out->len;
    if (r->ep.len > 0xFFFF)
        return LW_EINVAL;
    put_n(out, 0, 8); /* header, filled below */
    if (r->kind == LW_SPILL_VALUE) {
        if (r->path.len > 0xFFFF || r->type < LW_M2M_T_STRING || r->type > LW_M2M_T_CORELNK ||
            r->source > LW_SPILL_SEND || r->bytes.len > LW_SPILL_REC_MAX - 1024)
            goto inval;
        lw_buf_put_u8(out, LW_SPILL_VALUE);
        lw_buf_put_u8(out, r->source);
        lw_buf_put_u8(out, r->type);
        put_n(out, (uint64_t)r->at_us, 8);
        put_n(out, r->ep.len, 2);
        lw_buf_put(out, r->ep.ptr, r->ep.len);
        put_n(out, r->path.len, 2);
        lw_buf_put(out, r->path.ptr, r->path.len);
        switch (r->type) {
        case LW_M2M_T_INTEGER:
        case LW_M2M_T_TIME: put_n(out, (uint64_t)r->i, 8); break;
        case LW_M2M_T_UNSIGNED: put_n(out, r->u, 8); break;
        case LW_M2M_T_FLOAT: {
            uint64_t bits;
            memcpy(&bits, &r->f, sizeof(bits));
            put_n(out, bits, 8);
            break;
        }
        case LW_M2M_T_BOOLEAN: lw_buf_put_u8(out, r->b ? 1 : 0); break;
        default:
            put_n(out, r->bytes.len, 4);
            lw_buf_put(out, r->bytes.ptr, r->bytes.len);
            break;
        }
    } else if (r->kind == LW_SPILL_EVENT) {
        if (r->evtype.len > 0xFF || r->data.len > LW_SPILL_REC_MAX - 1024)
            goto inval;
        lw_buf_put_u8(out, LW_SPILL_EVENT);
        put_n(out, r->id, 8);
        put_n(out, (uint64_t)r->time_ms, 8);
        lw_buf_put_u8(out, (uint8_t)r->evtype.len);
        lw_buf_put(out, r->evtype.ptr, r->evtype.len);
        put_n(out, r->ep.len, 2);
        lw_buf_put(out, r->ep.ptr, r->ep.len);
        put_n(out, r->data.len, 4);
        lw_buf_put(out, r->data.ptr, r->data.len);
    } else {
        goto inval;
    }
    if (lw_buf_status(out))
        return lw_buf_status(out);
    size_t plen = out->len - start - LW_SPILL_HDR;
    put_le(out->data + start, plen, 4);
    put_le(out->data + start + 4, lw_spill_crc32c(out->data + start + LW_SPILL_HDR, plen), 4);
    return 0;
inval:
    out->len = start;
    return LW_EINVAL;
}

int lw_spill_next(const uint8_t *p, size_t n, size_t *off, struct lw_bytes *payload)
{
    size_t o = *off;
    if (o >= n)
        return 0;
    if (n - o < LW_SPILL_HDR)
        return LW_EMALFORMED;
    uint64_t len = get_le(p + o, 4);
    uint32_t crc = (uint32_t)get_le(p + o + 4, 4);
    if (len == 0 || len > LW_SPILL_REC_MAX || len > n - o - LW_SPILL_HDR)
        return LW_EMALFORMED;
    if (lw_spill_crc32c(p + o + LW_SPILL_HDR, (size_t)len) != crc)
        return LW_EMALFORMED;
    *payload = LW_BYTES(p + o + LW_SPILL_HDR, (size_t)len);
    *off = o + LW_SPILL_HDR + (size_t)len;
    return 1;
}

struct rd {
    const uint8_t *p;
    size_t n, o;
    bool bad;
};

static uint64_t rd_le(struct rd *r, int n)
{
    if (r->bad || r->n - r->o < (size_t)n) {
        r->bad = true;
        return 0;
    }
    uint64_t v = get_le(r->p + r->o, n);
    r->o += (size_t)n;
    return v;
}

static struct lw_bytes rd_bytes(struct rd *r, size_t len)
{
    if (r->bad || r->n - r->o < len) {
        r->bad = true;
        return LW_BYTES("", 0);
    }
    struct lw_bytes b = LW_BYTES(r->p + r->o, len);
    r->o += len;
    return b;
}

int lw_spill_decode(struct lw_bytes payload, struct lw_spill_rec *out)
{
    struct rd r = {payload.ptr, payload.len, 0, false};
    memset(out, 0, sizeof(*out));
    uint8_t kind = (uint8_t)rd_le(&r, 1);
    if (kind == LW_SPILL_VALUE) {
        out->kind = LW_SPILL_VALUE;
        out->source = (uint8_t)rd_le(&r, 1);
        out->type = (uint8_t)rd_le(&r, 1);
        out->at_us = (int64_t)rd_le(&r, 8);
        out->ep = rd_bytes(&r, (size_t)rd_le(&r, 2));
        out->path = rd_bytes(&r, (size_t)rd_le(&r, 2));
        if (r.bad || out->source > LW_SPILL_SEND || out->type < LW_M2M_T_STRING ||
            out->type > LW_M2M_T_CORELNK)
            return LW_EMALFORMED;
        switch (out->type) {
        case LW_M2M_T_INTEGER:
        case LW_M2M_T_TIME: out->i = (int64_t)rd_le(&r, 8); break;
        case LW_M2M_T_UNSIGNED: out->u = rd_le(&r, 8); break;
        case LW_M2M_T_FLOAT: {
            uint64_t bits = rd_le(&r, 8);
            memcpy(&out->f, &bits, sizeof(bits));
            break;
        }
        case LW_M2M_T_BOOLEAN: {
            uint64_t v = rd_le(&r, 1);
            if (v > 1)
                return LW_EMALFORMED;
            out->b = v == 1;
            break;
        }
        default:
            if (is_bytes_type(out->type))
                out->bytes = rd_bytes(&r, (size_t)rd_le(&r, 4));
            break;
        }
    } else if (kind == LW_SPILL_EVENT) {
        out->kind = LW_SPILL_EVENT;
        out->id = rd_le(&r, 8);
        out->time_ms = (int64_t)rd_le(&r, 8);
        out->evtype = rd_bytes(&r, (size_t)rd_le(&r, 1));
        out->ep = rd_bytes(&r, (size_t)rd_le(&r, 2));
        out->data = rd_bytes(&r, (size_t)rd_le(&r, 4));
    } else {
        return LW_EMALFORMED;
    }
    if (r.bad || r.o != r.n || (out->ep.len == 0 && out->kind == LW_SPILL_VALUE))
        return LW_EMALFORMED;
    return 0;
}

long lw_spill_scan(const uint8_t *p, size_t n, size_t *valid_end)
{
    size_t off = LW_SPILL_MAGIC_LEN;
    long count = 0;
    struct lw_bytes pl;
    *valid_end = 0;
    if (n < LW_SPILL_MAGIC_LEN || memcmp(p, LW_SPILL_MAGIC, LW_SPILL_MAGIC_LEN) != 0)
        return LW_EMALFORMED;
    for (;;) {
        size_t at = off;
        struct lw_spill_rec rec;
        int rc = lw_spill_next(p, n, &off, &pl);
        if (rc <= 0 || lw_spill_decode(pl, &rec) != 0) {
            *valid_end = at;
            return count;
        }
        count++;
    }
}
