/* lib/coap/msg.c - CoAP message codec (RFC 7252 §3, §3.1, §4.1, §5.4). */
#include "coap_int.h"

#include "base/err.h"
#include "base/util.h"

/* Records a rejection; the action depends on whether the header (type, MID) was readable. */
static int reject(struct lw_coap_perr *err, size_t offset, uint8_t reason, uint8_t action)
{
    if (err) {
        err->offset = offset;
        err->reason = reason;
        err->action = action;
        err->optnum = 0;
    }
    return LW_EMALFORMED;
}

/* Copies a token (0..8 bytes). Fixed-size copies: the compiler otherwise emits `rep movs` for the
 * variable-length memcpy, which costs more than the rest of a small message's encoding. */
static inline void copy_token(uint8_t *dst, const uint8_t *src, size_t n)
{
    if (n == 8) {
        memcpy(dst, src, 8);
    } else if (n >= 4) {
        memcpy(dst, src, 4);
        memcpy(dst + n - 4, src + n - 4, 4);
    } else {
        for (size_t i = 0; i < n; i++)
            dst[i] = src[i];
    }
}

/* Reads an extended delta/length field (RFC 7252 §3.1). nib is 0..14. Returns the value, or -1
 * when the extension bytes run past the end. */
static int32_t read_ext(uint8_t nib, const uint8_t *data, size_t len, size_t *pos)
{
    if (nib < 13)
        return nib;
    if (nib == 13) {
        if (*pos >= len)
            return -1;
        return 13 + data[(*pos)++];
    }
    if (len - *pos < 2)
        return -1;
    int32_t v = 269 + lw_load_be16(data + *pos);
    *pos += 2;
    return v;
}

int lw_coap_parse(struct lw_coap_msg *m, const uint8_t *data, size_t len,
                  const struct lw_coap_parse_cfg *cfg, struct lw_coap_perr *err)
{
    size_t max_opts = LW_COAP_MAX_OPTS;
    if (cfg && cfg->max_opts && cfg->max_opts < LW_COAP_MAX_OPTS)
        max_opts = cfg->max_opts;
    m->nopts = 0;
    m->payload = (struct lw_bytes){NULL, 0};
    if (len < 4)
        return reject(err, len, LW_COAP_R_SHORT, LW_COAP_A_DROP);
    /* §3: a message with an unknown version number MUST be silently ignored. */
    if ((data[0] >> 6) != 1)
        return reject(err, 0, LW_COAP_R_VERSION, LW_COAP_A_DROP);
    m->type = (data[0] >> 4) & 3;
    m->tkl = data[0] & 0x0f;
    m->code = data[1];
    m->mid = lw_load_be16(data + 2);
    /* §4.2: a CON with a format error is rejected with RST; anything else is ignored (§4.3). */
    uint8_t act = m->type == LW_COAP_CON ? LW_COAP_A_RST : LW_COAP_A_DROP;
    if (m->tkl > LW_COAP_MAX_TOKEN)
        return reject(err, 0, LW_COAP_R_TKL, act);
    /* §4.1: an Empty message has TKL 0 and nothing after the Message ID. */
    if (m->code == LW_COAP_EMPTY && len != 4)
        return reject(err, 4, LW_COAP_R_EMPTY_NOT_EMPTY, act);
    if (m->code == LW_COAP_EMPTY && m->tkl != 0)
        return reject(err, 0, LW_COAP_R_EMPTY_NOT_EMPTY, act);
    if (len - 4 < m->tkl)
        return reject(err, len, LW_COAP_R_TRUNCATED, act);
    copy_token(m->token, data + 4, m->tkl);
    size_t pos = 4 + (size_t)m->tkl;
    uint32_t num = 0;
    while (pos < len) {
        size_t start = pos;
        uint8_t b = data[pos++];
        if (b == 0xff) {
            /* §3: a marker followed by a zero-length payload is a format error. */
            if (pos == len)
                return reject(err, start, LW_COAP_R_EMPTY_PAYLOAD, act);
            m->payload = (struct lw_bytes){data + pos, len - pos};
            break;
        }
        uint8_t dn = b >> 4, ln = b & 0x0f;
        if (dn == 15 || ln == 15)
            return reject(err, start, LW_COAP_R_OPT_NIBBLE15, act);
        int32_t delta = dn, olen = ln;
        if (lw_unlikely(dn >= 13 || ln >= 13)) {
            /* Extended fields are rare (Uri-Query strings, options above 12 after others). */
            delta = read_ext(dn, data, len, &pos);
            if (delta < 0)
                return reject(err, start, LW_COAP_R_TRUNCATED, act);
            olen = read_ext(ln, data, len, &pos);
            if (olen < 0)
                return reject(err, start, LW_COAP_R_TRUNCATED, act);
        }
        num += (uint32_t)delta;
        if (num > 0xffff)
            return reject(err, start, LW_COAP_R_OPT_NUMBER, act);
        if (olen > 0xffff) /* only reachable in datagrams above 64 KiB (not over UDP) */
            return reject(err, start, LW_COAP_R_OPT_LENGTH, act);
        if ((size_t)olen > len - pos)
            return reject(err, start, LW_COAP_R_TRUNCATED, act);
        if (m->nopts >= max_opts)
            return reject(err, start, LW_COAP_R_TOO_MANY_OPTS, act);
        struct lw_coap_opt *o = &m->opts[m->nopts++];
        o->num = (uint16_t)num;
        o->len = (uint16_t)olen;
        o->val = data + pos;
        pos += (size_t)olen;
    }
    return 0;
}

int lw_coap_check_opts(const struct lw_coap_msg *m, struct lw_coap_perr *err)
{
    uint8_t cls = LW_COAP_CODE_CLASS(m->code);
    bool con = m->type == LW_COAP_CON;
    /* §4.2/§4.3: reserved classes cannot be processed: reject (RST for a CON). */
    if (cls == 1 || cls == 6 || cls == 7) {
        reject(err, 1, LW_COAP_R_RESERVED_CLASS, con ? LW_COAP_A_RST : LW_COAP_A_DROP);
        return LW_EPROTO;
    }
    /* Table 1 (§4): requests only travel in CON/NON, an Empty NON is not defined. */
    if ((lw_coap_is_request(m->code) && m->type >= LW_COAP_ACK) ||
        (m->code == LW_COAP_EMPTY && m->type == LW_COAP_NON)) {
        reject(err, 0, LW_COAP_R_BAD_TYPE, LW_COAP_A_DROP);
        return LW_EPROTO;
    }
    for (size_t i = 0; i < m->nopts; i++) {
        const struct lw_coap_opt *o = &m->opts[i];
        if (!lw_coap_opt_critical(o->num))
            continue; /* §5.4.1: unrecognised elective options are silently ignored */
        const struct lw_coap_optinfo *info = lw_coap_opt_info(o->num);
        /* §5.4.3 (length out of range) and §5.4.5 (non-repeatable option repeated) are treated
         * like unrecognised options. Options are in number order after parsing. */
        bool bad = !info || o->len < info->min_len || o->len > info->max_len ||
                   (!info->repeatable && i > 0 && m->opts[i - 1].num == o->num);
        if (!bad)
            continue;
        /* §5.4.1: 4.02 for a CON request; reject a CON response (RST); ignore an ACK or NON. */
        uint8_t act = LW_COAP_A_DROP;
        if (con)
            act = lw_coap_is_request(m->code) ? LW_COAP_A_BAD_OPTION : LW_COAP_A_RST;
        reject(err, 0, LW_COAP_R_BAD_CRITICAL, act);
        if (err)
            err->optnum = o->num;
        return LW_EBADOPT;
    }
    return 0;
}

void lw_coap_encode_empty(uint8_t out[4], uint8_t type, uint16_t mid)
{
    out[0] = (uint8_t)(0x40 | (type & 3) << 4);
    out[1] = 0;
    out[2] = (uint8_t)(mid >> 8);
    out[3] = (uint8_t)mid;
}

/* Writes an option header; returns bytes written. */
static size_t put_opt_hdr(uint8_t *p, uint32_t delta, uint32_t len)
{
    size_t n = 1;
    uint8_t dn = delta < 13 ? (uint8_t)delta : delta < 269 ? 13 : 14;
    uint8_t ln = len < 13 ? (uint8_t)len : len < 269 ? 13 : 14;
    p[0] = (uint8_t)(dn << 4 | ln);
    if (dn == 13) {
        p[n++] = (uint8_t)(delta - 13);
    } else if (dn == 14) {
        p[n++] = (uint8_t)((delta - 269) >> 8);
        p[n++] = (uint8_t)(delta - 269);
    }
    if (ln == 13) {
        p[n++] = (uint8_t)(len - 13);
    } else if (ln == 14) {
        p[n++] = (uint8_t)((len - 269) >> 8);
        p[n++] = (uint8_t)(len - 269);
    }
    return n;
}

int lw_coap_serialize(const struct lw_coap_msg *m, struct lw_buf *out)
{
    if (m->tkl > LW_COAP_MAX_TOKEN || m->type > 3 || m->nopts > LW_COAP_MAX_OPTS)
        return LW_EINVAL;
    if (m->code == LW_COAP_EMPTY && (m->tkl || m->nopts || m->payload.len))
        return LW_EINVAL;
    /* Stable insertion sort of option indexes by number: callers usually add options in order,
     * which makes this a single O(n) pass. */
    uint8_t idx[LW_COAP_MAX_OPTS];
    size_t n = m->nopts;
    for (size_t i = 0; i < n; i++) {
        size_t j = i;
        uint16_t num = m->opts[i].num;
        while (j > 0 && m->opts[idx[j - 1]].num > num) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = (uint8_t)i;
    }
    size_t total = 4 + (size_t)m->tkl;
    uint32_t prev = 0;
    for (size_t i = 0; i < n; i++) {
        const struct lw_coap_opt *o = &m->opts[idx[i]];
        total += 1 + lw__coap_ext_len(o->num - prev) + lw__coap_ext_len(o->len) + o->len;
        prev = o->num;
    }
    if (m->payload.len)
        total += 1 + m->payload.len;
    uint8_t *p = lw_buf_reserve(out, total);
    if (!p)
        return lw_buf_status(out);
    uint8_t *start = p;
    *p++ = (uint8_t)(0x40 | m->type << 4 | m->tkl);
    *p++ = m->code;
    *p++ = (uint8_t)(m->mid >> 8);
    *p++ = (uint8_t)m->mid;
    copy_token(p, m->token, m->tkl);
    p += m->tkl;
    prev = 0;
    for (size_t i = 0; i < n; i++) {
        const struct lw_coap_opt *o = &m->opts[idx[i]];
        p += put_opt_hdr(p, o->num - prev, o->len);
        if (o->len)
            memcpy(p, lw_coap_opt_data(o), o->len);
        p += o->len;
        prev = o->num;
    }
    if (m->payload.len) {
        *p++ = 0xff;
        memcpy(p, m->payload.ptr, m->payload.len);
        p += m->payload.len;
    }
    lw_buf_commit(out, (size_t)(p - start));
    return 0;
}

const char *lw_coap_reason_str(unsigned reason)
{
    static const char *const names[] = {
        [LW_COAP_R_OK] = "ok",
        [LW_COAP_R_SHORT] = "shorter than the 4-byte header",
        [LW_COAP_R_VERSION] = "unknown version",
        [LW_COAP_R_TKL] = "token length above 8",
        [LW_COAP_R_TRUNCATED] = "truncated token or option",
        [LW_COAP_R_EMPTY_NOT_EMPTY] = "empty message with token, options or payload",
        [LW_COAP_R_OPT_NIBBLE15] = "reserved option nibble 15",
        [LW_COAP_R_OPT_NUMBER] = "option number above 65535",
        [LW_COAP_R_EMPTY_PAYLOAD] = "payload marker without payload",
        [LW_COAP_R_TOO_MANY_OPTS] = "too many options",
        [LW_COAP_R_BAD_CRITICAL] = "unrecognised or invalid critical option",
        [LW_COAP_R_RESERVED_CLASS] = "reserved code class",
        [LW_COAP_R_BAD_TYPE] = "code not allowed in this message type",
        [LW_COAP_R_OPT_LENGTH] = "option longer than 65535 bytes",
    };
    if (reason >= sizeof(names) / sizeof(names[0]) || !names[reason])
        return "unknown reason";
    return names[reason];
}
