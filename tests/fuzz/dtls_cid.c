/* Fuzz target: lw_dtls_cid_peek / lw_dtls_cid_shard, the CID demultiplexing parser.
 *
 * Input: byte 0 selects the CID length (1..8 from its low 3 bits + 1; 0 and 9 are tried too),
 * the rest is a datagram. Invariants (abort on violation): a found CID lies inside the datagram
 * at offset 11 (DTLS 1.2, type 25) or 1 (DTLS 1.3 unified header with the C bit) with the asked
 * length; whenever we find one, wolfSSL_dtls_cid_parse finds the same bytes (ours is stricter,
 * never looser); invalid lengths are refused. */
#include "dtls/dtls.h"
#include "base/err.h"

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t cid_len = (size_t)(data[0] & 7) + 1;
    const uint8_t *d = data + 1;
    size_t n = size - 1;
    struct lw_bytes cid;

    int rc = lw_dtls_cid_peek(d, n, cid_len, &cid);
    if (rc == 1) {
        if (cid.len != cid_len || cid.ptr < d || cid.ptr + cid.len > d + n)
            abort();
        size_t off = (size_t)(cid.ptr - d);
        if (!((d[0] == 25 && off == 11) || ((d[0] & 0xF0) == 0x30 && off == 1)))
            abort();
        const unsigned char *w = wolfSSL_dtls_cid_parse(d, (unsigned int)n, (unsigned int)cid_len);
        if (w != cid.ptr)
            abort();
        if (lw_dtls_cid_shard(cid) != cid.ptr[0])
            abort();
    } else if (rc == 0) {
        if (cid.len != 0)
            abort();
    } else if (rc != LW_EMALFORMED) {
        abort();
    }
    if (lw_dtls_cid_peek(d, n, 0, &cid) != LW_EMALFORMED ||
        lw_dtls_cid_peek(d, n, LW_DTLS_CID_MAX + 1, &cid) != LW_EMALFORMED)
        abort();
    (void)lw_dtls_cid_peek(d, n, cid_len, NULL);
    return 0;
}
