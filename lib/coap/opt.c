/* lib/coap/opt.c - option registry and typed accessors (RFC 7252 §3.2, §5.10, Table 4). */
#include "coap_int.h"

#include "base/err.h"

/* RFC 7252 Table 4, RFC 7641 §2, RFC 7959 §2.1 and §4, RFC 8613 §2, RFC 9175 §2.2.1,
 * RFC 7967 §2. */
static const struct lw_coap_optinfo optinfo[] = {
    {LW_COAP_OPT_IF_MATCH, LW_COAP_FMT_OPAQUE, 1, 0, 8, "If-Match"},
    {LW_COAP_OPT_URI_HOST, LW_COAP_FMT_STRING, 0, 1, 255, "Uri-Host"},
    {LW_COAP_OPT_ETAG, LW_COAP_FMT_OPAQUE, 1, 1, 8, "ETag"},
    {LW_COAP_OPT_IF_NONE_MATCH, LW_COAP_FMT_EMPTY, 0, 0, 0, "If-None-Match"},
    {LW_COAP_OPT_OBSERVE, LW_COAP_FMT_UINT, 0, 0, 3, "Observe"},
    {LW_COAP_OPT_URI_PORT, LW_COAP_FMT_UINT, 0, 0, 2, "Uri-Port"},
    {LW_COAP_OPT_LOCATION_PATH, LW_COAP_FMT_STRING, 1, 0, 255, "Location-Path"},
    {LW_COAP_OPT_OSCORE, LW_COAP_FMT_OPAQUE, 0, 0, 255, "OSCORE"},
    {LW_COAP_OPT_URI_PATH, LW_COAP_FMT_STRING, 1, 0, 255, "Uri-Path"},
    {LW_COAP_OPT_CONTENT_FORMAT, LW_COAP_FMT_UINT, 0, 0, 2, "Content-Format"},
    {LW_COAP_OPT_MAX_AGE, LW_COAP_FMT_UINT, 0, 0, 4, "Max-Age"},
    {LW_COAP_OPT_URI_QUERY, LW_COAP_FMT_STRING, 1, 0, 255, "Uri-Query"},
    {LW_COAP_OPT_ACCEPT, LW_COAP_FMT_UINT, 0, 0, 2, "Accept"},
    {LW_COAP_OPT_LOCATION_QUERY, LW_COAP_FMT_STRING, 1, 0, 255, "Location-Query"},
    {LW_COAP_OPT_BLOCK2, LW_COAP_FMT_UINT, 0, 0, 3, "Block2"},
    {LW_COAP_OPT_BLOCK1, LW_COAP_FMT_UINT, 0, 0, 3, "Block1"},
    {LW_COAP_OPT_SIZE2, LW_COAP_FMT_UINT, 0, 0, 4, "Size2"},
    {LW_COAP_OPT_PROXY_URI, LW_COAP_FMT_STRING, 0, 1, 1034, "Proxy-Uri"},
    {LW_COAP_OPT_PROXY_SCHEME, LW_COAP_FMT_STRING, 0, 1, 255, "Proxy-Scheme"},
    {LW_COAP_OPT_SIZE1, LW_COAP_FMT_UINT, 0, 0, 4, "Size1"},
    {LW_COAP_OPT_ECHO, LW_COAP_FMT_OPAQUE, 0, 1, 40, "Echo"},
    {LW_COAP_OPT_NO_RESPONSE, LW_COAP_FMT_UINT, 0, 0, 1, "No-Response"},
};

/* Index into optinfo + 1 for option numbers below 64 (0: unknown), built at compile time so the
 * per-option check on the hot path is one load. */
#define OI(n, i) [n] = (i) + 1
static const uint8_t optidx[64] = {
    OI(1, 0),   OI(3, 1),   OI(4, 2),   OI(5, 3),   OI(6, 4),   OI(7, 5),   OI(8, 6),
    OI(9, 7),   OI(11, 8),  OI(12, 9),  OI(14, 10), OI(15, 11), OI(17, 12), OI(20, 13),
    OI(23, 14), OI(27, 15), OI(28, 16), OI(35, 17), OI(39, 18), OI(60, 19),
};
#undef OI

const struct lw_coap_optinfo *lw_coap_opt_info(uint16_t num)
{
    if (num < 64)
        return optidx[num] ? &optinfo[optidx[num] - 1] : NULL;
    if (num == LW_COAP_OPT_ECHO)
        return &optinfo[20];
    if (num == LW_COAP_OPT_NO_RESPONSE)
        return &optinfo[21];
    return NULL;
}

size_t lw__coap_uint_bytes(uint32_t v, uint8_t out[4])
{
    size_t n = v == 0 ? 0 : v < 0x100 ? 1 : v < 0x10000 ? 2 : v < 0x1000000 ? 3 : 4;
    for (size_t i = 0; i < n; i++)
        out[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
    return n;
}

int lw_coap_add_opt(struct lw_coap_msg *m, uint16_t num, const void *val, size_t len)
{
    if (len > 0xffff || (len && !val))
        return LW_EINVAL;
    if (m->nopts >= LW_COAP_MAX_OPTS)
        return LW_ENOSPC;
    struct lw_coap_opt *o = &m->opts[m->nopts++];
    o->num = num;
    o->len = (uint16_t)len;
    /* A zero-length option may come with val == NULL; point at the inline bytes then. */
    o->val = len ? val : NULL;
    return 0;
}

int lw_coap_add_uint(struct lw_coap_msg *m, uint16_t num, uint32_t v)
{
    if (m->nopts >= LW_COAP_MAX_OPTS)
        return LW_ENOSPC;
    struct lw_coap_opt *o = &m->opts[m->nopts++];
    o->num = num;
    o->val = NULL;
    o->len = (uint16_t)lw__coap_uint_bytes(v, o->ib);
    return 0;
}

size_t lw_coap_del_opt(struct lw_coap_msg *m, uint16_t num)
{
    size_t j = 0, removed = 0;
    for (size_t i = 0; i < m->nopts; i++) {
        if (m->opts[i].num == num) {
            removed++;
            continue;
        }
        if (i != j)
            m->opts[j] = m->opts[i];
        j++;
    }
    m->nopts = (uint8_t)j;
    return removed;
}

int lw__coap_copy_opts(struct lw_coap_msg *dst, const struct lw_coap_msg *src, uint16_t skip1,
                       uint16_t skip2)
{
    for (size_t i = 0; i < src->nopts; i++) {
        const struct lw_coap_opt *o = &src->opts[i];
        if ((skip1 && o->num == skip1) || (skip2 && o->num == skip2))
            continue;
        if (dst->nopts >= LW_COAP_MAX_OPTS)
            return LW_ENOSPC;
        dst->opts[dst->nopts++] = *o;
    }
    return 0;
}

const struct lw_coap_opt *lw_coap_find_opt(const struct lw_coap_msg *m, uint16_t num)
{
    for (size_t i = 0; i < m->nopts; i++)
        if (m->opts[i].num == num)
            return &m->opts[i];
    return NULL;
}

const struct lw_coap_opt *lw_coap_next_opt(const struct lw_coap_msg *m, uint16_t num, size_t *pos)
{
    for (size_t i = *pos; i < m->nopts; i++) {
        if (m->opts[i].num == num) {
            *pos = i + 1;
            return &m->opts[i];
        }
    }
    *pos = m->nopts;
    return NULL;
}

int lw_coap_decode_uint(const uint8_t *p, size_t len, uint32_t *out)
{
    /* §3.2: senders use the shortest form, but receivers accept leading zero bytes. */
    while (len > 4 && *p == 0) {
        p++;
        len--;
    }
    if (len > 4)
        return LW_ERANGE;
    uint32_t v = 0;
    for (size_t i = 0; i < len; i++)
        v = v << 8 | p[i];
    *out = v;
    return 0;
}

int lw_coap_get_uint(const struct lw_coap_msg *m, uint16_t num, uint32_t *out)
{
    const struct lw_coap_opt *o = lw_coap_find_opt(m, num);
    if (!o)
        return LW_ENOENT;
    return lw_coap_decode_uint(lw_coap_opt_data(o), o->len, out);
}

int lw_coap_get_bytes(const struct lw_coap_msg *m, uint16_t num, struct lw_bytes *out)
{
    const struct lw_coap_opt *o = lw_coap_find_opt(m, num);
    if (!o)
        return LW_ENOENT;
    *out = (struct lw_bytes){lw_coap_opt_data(o), o->len};
    return 0;
}

int lw_coap_uri_path(const struct lw_coap_msg *m, char *out, size_t cap)
{
    size_t n = 0, pos = 0;
    const struct lw_coap_opt *o;
    if (cap < 2)
        return LW_ENOSPC;
    while ((o = lw_coap_next_opt(m, LW_COAP_OPT_URI_PATH, &pos)) != NULL) {
        if (cap - n < (size_t)o->len + 2)
            return LW_ENOSPC;
        out[n++] = '/';
        memcpy(out + n, lw_coap_opt_data(o), o->len);
        n += o->len;
    }
    if (n == 0)
        out[n++] = '/';
    out[n] = '\0';
    return 0;
}

int lw_coap_add_uri_path(struct lw_coap_msg *m, const char *path)
{
    const char *p = path;
    if (*p == '/')
        p++;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        int rc = lw_coap_add_opt(m, LW_COAP_OPT_URI_PATH, p, len);
        if (rc)
            return rc == LW_EINVAL ? LW_ENOSPC : rc;
        p += len;
        if (*p == '/')
            p++;
    }
    return 0;
}
