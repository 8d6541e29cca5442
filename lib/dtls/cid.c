/* lib/dtls/cid.c - pure record-header parsing for CID demultiplexing (no wolfSSL state).
 *
 * Written here rather than calling wolfSSL_dtls_cid_parse() because the shard (and its tests and
 * fuzz target) needs a stricter answer: wolfSSL's parser only checks that the CID bytes exist,
 * while a demultiplexer should also refuse a DTLS 1.3 unified header whose announced sequence
 * number and length fields are cut off. The result agrees with wolfSSL's on every record both
 * accept (tests/fuzz/dtls_cid.c checks this).
 */
#include "dtls/dtls.h"

#include "base/err.h"

#define CT_TLS12_CID 25 /* RFC 9146 §4 */

int lw_dtls_cid_peek(const uint8_t *data, size_t len, size_t cid_len, struct lw_bytes *cid)
{
    if (cid)
        *cid = (struct lw_bytes){NULL, 0};
    if (cid_len == 0 || cid_len > LW_DTLS_CID_MAX)
        return LW_EMALFORMED;
    if (!data || len == 0)
        return 0;
    if (data[0] == CT_TLS12_CID) {
        /* type(1) version(2) epoch(2) seq(6) cid(n) length(2), RFC 9146 §4 */
        if (len < 13 + cid_len)
            return LW_EMALFORMED;
        if (cid)
            *cid = (struct lw_bytes){data + 11, cid_len};
        return 1;
    }
    /* RFC 9147 §4: unified header 001CSLEE. */
    if ((data[0] & 0xE0) == 0x20 && (data[0] & 0x10)) {
        size_t need = 1 + cid_len + ((data[0] & 0x08) ? 2 : 1) + ((data[0] & 0x04) ? 2 : 0);
        if (len < need)
            return LW_EMALFORMED;
        if (cid)
            *cid = (struct lw_bytes){data + 1, cid_len};
        return 1;
    }
    return 0;
}

int lw_dtls_cid_shard(struct lw_bytes cid)
{
    return cid.len ? cid.ptr[0] : -1;
}
