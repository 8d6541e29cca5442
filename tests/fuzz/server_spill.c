/* Fuzz target: telemetry spill files read back from disk (server/store/spill.h). The input is a
 * whole file image: the scan must stop cleanly at a torn or corrupt tail, every record it accepts
 * must decode, and a decoded record must encode back to the same framed bytes. */
#include "base/buf.h"
#include "store/spill.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t end = 0;
    long n = lw_spill_scan(data, size, &end);
    if (n < 0)
        return 0;
    if (end > size)
        abort();
    size_t off = LW_SPILL_MAGIC_LEN;
    struct lw_bytes pl;
    struct lw_buf re;
    long seen = 0;
    lw_buf_init(&re, 256);
    while (lw_spill_next(data, end, &off, &pl) == 1) {
        struct lw_spill_rec r;
        if (lw_spill_decode(pl, &r) != 0)
            abort(); /* scan accepted it */
        lw_buf_reset(&re);
        if (lw_spill_encode(&re, &r) == 0 &&
            (re.len != pl.len + LW_SPILL_HDR || memcmp(re.data + LW_SPILL_HDR, pl.ptr, pl.len)))
            abort(); /* the format has one encoding per record */
        seen++;
    }
    if (seen != n || off != end)
        abort();
    lw_buf_deinit(&re);
    return 0;
}
