/* lib/lwm2m/fmt_tlv.c - OMA TLV (11542, legacy 1542).
 *
 * Layout (protocol.md §5.3): type byte (bits 7-6 kind: 00 Object Instance, 01 Resource
 * Instance, 10 Multiple Resource, 11 Resource with value; bit 5 16-bit id; bits 4-3 length
 * field size 0..3 bytes; bits 2-0 the length when there is no length field), id, length, value.
 *
 * Decoding walks the TLVs with a context path that starts as the request path. Each kind fills
 * one path level (instance, resource, resource instance); a TLV for a level the request path
 * already fixes must repeat that id, a TLV for the next level appends its id, and a TLV that
 * would skip a level is malformed. Containers nest only as the spec allows (instance holds
 * resources; multiple resource holds resource instances), so recursion is at most 3 deep.
 * Values are read with the model type; unknown types come back as OPAQUE bytes. Integer and
 * time values accept 1/2/4/8 bytes, unsigned 1/2/4/8, float 4/8, boolean 1 (0 or 1), objlnk 4.
 *
 * Encoding computes each container's length before writing it (a sizing pass over the same
 * code with a NULL buffer), so the output is written once, front to back.
 */
#include "fmt_int.h"

#include "base/err.h"

#include <math.h>
#include <string.h>

enum { K_INST = 0, K_RINST = 1, K_MULTI = 2, K_RES = 3 };

struct tlv {
    unsigned kind;
    uint16_t id;
    const uint8_t *val;
    size_t len;
    size_t off; /* header offset in the payload */
};

/* Parses the TLV at p[*pos] (p spans the enclosing container; base = its payload offset). */
static int tlv_read(struct lw__m2m_dec *d, const uint8_t *p, size_t len, size_t *pos, size_t base,
                    struct tlv *t)
{
    size_t i = *pos;
    uint8_t type = p[i];
    size_t idlen = (type & 0x20) ? 2 : 1, lt = (type >> 3) & 3;
    t->off = base + i;
    if (len - i < 1 + idlen + lt)
        return lw__m2m_fail(d, LW_EMALFORMED, t->off);
    i++;
    t->kind = type >> 6;
    t->id = idlen == 2 ? lw_load_be16(p + i) : p[i];
    i += idlen;
    if (t->id > LW_M2M_ID_MAX)
        return lw__m2m_fail(d, LW_EMALFORMED, t->off);
    size_t vlen = 0;
    if (lt == 0) {
        vlen = type & 7;
    } else {
        for (size_t k = 0; k < lt; k++)
            vlen = vlen << 8 | p[i + k];
        i += lt;
    }
    if (vlen > len - i)
        return lw__m2m_fail(d, LW_EMALFORMED, t->off);
    t->val = p + i;
    t->len = vlen;
    *pos = i + vlen;
    return 0;
}

static int64_t load_int(const uint8_t *p, size_t n)
{
    switch (n) {
    case 1: return (int8_t)p[0];
    case 2: return (int16_t)lw_load_be16(p);
    case 4: return (int32_t)lw_load_be32(p);
    default: return (int64_t)lw_load_be64(p);
    }
}

static uint64_t load_uint(const uint8_t *p, size_t n)
{
    switch (n) {
    case 1: return p[0];
    case 2: return lw_load_be16(p);
    case 4: return lw_load_be32(p);
    default: return lw_load_be64(p);
    }
}

static int tlv_value(struct lw__m2m_dec *d, const struct tlv *t, enum lw_m2m_type model,
                     struct lw_m2m_value *v)
{
    bool int_len = t->len == 1 || t->len == 2 || t->len == 4 || t->len == 8;
    v->type = model;
    switch (model) {
    case LW_M2M_T_INTEGER:
    case LW_M2M_T_TIME:
        if (!int_len)
            return lw__m2m_fail(d, LW_ETYPE, t->off);
        v->i = load_int(t->val, t->len);
        return 0;
    case LW_M2M_T_UNSIGNED:
        if (!int_len)
            return lw__m2m_fail(d, LW_ETYPE, t->off);
        v->u = load_uint(t->val, t->len);
        return 0;
    case LW_M2M_T_FLOAT:
        if (t->len == 4) {
            uint32_t bits = lw_load_be32(t->val);
            float f;
            memcpy(&f, &bits, 4);
            v->f = f;
        } else if (t->len == 8) {
            uint64_t bits = lw_load_be64(t->val);
            memcpy(&v->f, &bits, 8);
        } else {
            return lw__m2m_fail(d, LW_ETYPE, t->off);
        }
        return 0;
    case LW_M2M_T_BOOLEAN:
        if (t->len != 1 || t->val[0] > 1)
            return lw__m2m_fail(d, LW_ETYPE, t->off);
        v->b = t->val[0] == 1;
        return 0;
    case LW_M2M_T_OBJLNK:
        if (t->len != 4)
            return lw__m2m_fail(d, LW_ETYPE, t->off);
        v->lnk.obj = lw_load_be16(t->val);
        v->lnk.inst = lw_load_be16(t->val + 2);
        return 0;
    case LW_M2M_T_STRING:
    case LW_M2M_T_CORELNK:
        if (!lw__m2m_utf8_valid(t->val, t->len))
            return lw__m2m_fail(d, LW_ETYPE, t->off);
        v->bytes = (struct lw_bytes){t->val, t->len};
        return 0;
    default: /* OPAQUE or unknown: raw bytes */
        v->type = LW_M2M_T_OPAQUE;
        v->bytes = (struct lw_bytes){t->val, t->len};
        return 0;
    }
}

static int tlv_seq(struct lw__m2m_dec *d, const uint8_t *p, size_t len, size_t base,
                   const struct lw_m2m_path *ctx, int parent)
{
    static const unsigned level[4] = {[K_INST] = 1, [K_RINST] = 3, [K_MULTI] = 2, [K_RES] = 2};
    size_t pos = 0;
    int rc;
    while (pos < len) {
        struct tlv t = {0};
        if ((rc = tlv_read(d, p, len, &pos, base, &t)))
            return rc;
        if ((parent == K_INST && t.kind != K_RES && t.kind != K_MULTI) ||
            (parent == K_MULTI && t.kind != K_RINST))
            return lw__m2m_fail(d, LW_EMALFORMED, t.off);
        unsigned j = level[t.kind];
        struct lw_m2m_record rec;
        memset(&rec, 0, sizeof(rec));
        rec.path = *ctx;
        if (j == ctx->len)
            rec.path.id[rec.path.len++] = t.id;
        else if (j > ctx->len || ctx->id[j] != t.id)
            return lw__m2m_fail(d, LW_EMALFORMED, t.off);
        size_t voff = base + (size_t)(t.val - p);
        if (t.kind == K_INST || t.kind == K_MULTI) {
            if (t.len == 0 && j == ctx->len)
                rc = lw__m2m_add(d, &rec, t.off); /* empty container: path only */
            else if (t.len == 0)
                rc = 0; /* an empty container the request path already names: nothing */
            else
                rc = tlv_seq(d, t.val, t.len, voff, &rec.path, (int)t.kind);
        } else {
            rec.has_value = true;
            rc = tlv_value(d, &t, lw__m2m_type_of(d, &rec.path), &rec.value);
            if (rc == 0)
                rc = lw__m2m_add(d, &rec, t.off);
        }
        if (rc)
            return rc;
    }
    return 0;
}

int lw__m2m_tlv_decode(struct lw__m2m_dec *d, struct lw_bytes in)
{
    if (d->req->len == 0)
        return LW_EINVAL;
    return tlv_seq(d, in.ptr, in.len, 0, d->req, -1);
}

/* ---- encoding ---- */

static size_t val_len(const struct lw_m2m_value *v)
{
    switch (v->type) {
    case LW_M2M_T_INTEGER:
    case LW_M2M_T_TIME:
        return v->i >= INT8_MIN && v->i <= INT8_MAX     ? 1
               : v->i >= INT16_MIN && v->i <= INT16_MAX ? 2
               : v->i >= INT32_MIN && v->i <= INT32_MAX ? 4
                                                        : 8;
    case LW_M2M_T_UNSIGNED:
        return v->u <= UINT8_MAX ? 1 : v->u <= UINT16_MAX ? 2 : v->u <= UINT32_MAX ? 4 : 8;
    case LW_M2M_T_FLOAT: return (isnan(v->f) || (double)(float)v->f == v->f) ? 4 : 8;
    case LW_M2M_T_BOOLEAN: return 1;
    case LW_M2M_T_OBJLNK: return 4;
    default: return v->bytes.len;
    }
}

static void put_val(struct lw_buf *b, const struct lw_m2m_value *v, size_t n)
{
    switch (v->type) {
    case LW_M2M_T_INTEGER:
    case LW_M2M_T_TIME:
    case LW_M2M_T_UNSIGNED: {
        uint64_t u = v->type == LW_M2M_T_UNSIGNED ? v->u : (uint64_t)v->i;
        for (size_t k = n; k-- > 0;)
            lw_buf_put_u8(b, (uint8_t)(u >> (8 * k)));
        break;
    }
    case LW_M2M_T_FLOAT:
        if (n == 4) {
            float f = (float)v->f;
            uint32_t bits;
            memcpy(&bits, &f, 4);
            lw_buf_put_be32(b, bits);
        } else {
            uint64_t bits;
            memcpy(&bits, &v->f, 8);
            lw_buf_put_be64(b, bits);
        }
        break;
    case LW_M2M_T_BOOLEAN: lw_buf_put_u8(b, v->b ? 1 : 0); break;
    case LW_M2M_T_OBJLNK:
        lw_buf_put_be16(b, v->lnk.obj);
        lw_buf_put_be16(b, v->lnk.inst);
        break;
    default: lw_buf_put(b, v->bytes.ptr, v->bytes.len); break;
    }
}

/* Header for (kind, id, vlen); writes it when b != NULL; returns its size, 0 when vlen does not
 * fit the 24-bit length field. */
static size_t put_hdr(struct lw_buf *b, unsigned kind, uint16_t id, size_t vlen)
{
    size_t lt = vlen < 8 ? 0 : vlen < 0x100 ? 1 : vlen < 0x10000 ? 2 : vlen < 0x1000000 ? 3 : 4;
    if (lt == 4)
        return 0;
    size_t idlen = id > 0xFF ? 2 : 1;
    if (b) {
        lw_buf_put_u8(
            b, (uint8_t)(kind << 6 | (idlen == 2 ? 0x20 : 0) | lt << 3 | (lt == 0 ? vlen : 0)));
        if (idlen == 2)
            lw_buf_put_be16(b, id);
        else
            lw_buf_put_u8(b, (uint8_t)id);
        for (size_t k = lt; k-- > 0;)
            lw_buf_put_u8(b, (uint8_t)(vlen >> (8 * k)));
    }
    return 1 + idlen + lt;
}

/* A leaf TLV; adds its size to *sz. */
static int put_leaf(struct lw_buf *b, unsigned kind, uint16_t id, const struct lw_m2m_value *v,
                    size_t *sz)
{
    size_t n = val_len(v), h = put_hdr(b, kind, id, n);
    if (!h)
        return LW_EINVAL;
    if (b)
        put_val(b, v, n);
    *sz += h + n;
    return 0;
}

/* Records written as one TLV, starting at r[0]: a lone record of path length `lvl` (a leaf or
 * an empty container), else the consecutive records below the same first `lvl` ids. Splitting
 * this way lets anything the decoder accepts (duplicates included) encode again. */
static size_t run(const struct lw_m2m_record *r, size_t n, unsigned lvl)
{
    size_t k = 1;
    if (r[0].path.len == lvl)
        return 1;
    while (k < n && r[k].path.len > lvl && memcmp(r[k].path.id, r[0].path.id, 2 * lvl) == 0)
        k++;
    return k;
}

/* One resource (records r[0..n) share /o/i/r): Resource TLV, or Multiple Resource TLV holding
 * Resource Instance TLVs (bare instances when !wrap). */
static int put_res(struct lw_buf *b, const struct lw_m2m_record *r, size_t n, bool wrap, size_t *sz)
{
    int rc;
    if (n == 1 && r->path.len == 3) {
        if (r->has_value)
            return put_leaf(b, K_RES, r->path.id[2], &r->value, sz);
        *sz += put_hdr(b, K_MULTI, r->path.id[2], 0);
        return 0;
    }
    size_t inner = 0;
    for (size_t k = 0; k < n; k++) {
        if (r[k].path.len != 4 || !r[k].has_value)
            return LW_EINVAL;
        if ((rc = put_leaf(NULL, K_RINST, r[k].path.id[3], &r[k].value, &inner)))
            return rc;
    }
    if (wrap) {
        size_t h = put_hdr(b, K_MULTI, r->path.id[2], inner);
        if (!h)
            return LW_EINVAL;
        *sz += h;
    }
    for (size_t k = 0; k < n && b; k++)
        put_leaf(b, K_RINST, r[k].path.id[3], &r[k].value, &inner);
    *sz += inner;
    return 0;
}

/* Resources of one instance (records r[0..n), all of path length >= 3). */
static int put_resources(struct lw_buf *b, const struct lw_m2m_record *r, size_t n, size_t *sz)
{
    for (size_t k = 0; k < n;) {
        if (r[k].path.len < 3)
            return LW_EINVAL;
        size_t m = run(r + k, n - k, 3);
        int rc = put_res(b, r + k, m, true, sz);
        if (rc)
            return rc;
        k += m;
    }
    return 0;
}

int lw__m2m_tlv_encode(const struct lw_m2m_path *req, const struct lw_m2m_record *r, size_t n,
                       struct lw_buf *out)
{
    size_t sz = 0;
    int rc = 0;
    if (n == 0)
        return lw_buf_status(out); /* nothing: an empty payload */
    switch (req->len) {
    case 1:
        for (size_t k = 0; k < n && rc == 0;) {
            if (r[k].path.len < 2)
                return LW_EINVAL;
            size_t m = run(r + k, n - k, 2), inner = 0;
            if (m == 1 && r[k].path.len == 2) {
                if (r[k].has_value)
                    return LW_EINVAL;
            } else if ((rc = put_resources(NULL, r + k, m, &inner))) {
                break;
            }
            if (!put_hdr(out, K_INST, r[k].path.id[1], inner))
                return LW_EINVAL;
            if (inner)
                rc = put_resources(out, r + k, m, &sz);
            k += m;
        }
        break;
    case 2:
        if ((rc = put_resources(NULL, r, n, &sz)) == 0)
            rc = put_resources(out, r, n, &sz);
        break;
    case 3:
        if ((rc = put_resources(NULL, r, n, &sz)) == 0)
            rc = put_resources(out, r, n, &sz);
        break;
    case 4: /* normally one record; repeated ones (the decoder accepts them) repeat the TLV */
        for (size_t k = 0; k < n && rc == 0; k++)
            rc = r[k].has_value ? put_leaf(out, K_RINST, r[k].path.id[3], &r[k].value, &sz)
                                : LW_EINVAL;
        break;
    default: return LW_EINVAL;
    }
    return rc ? rc : lw_buf_status(out);
}
