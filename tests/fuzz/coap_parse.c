/* Fuzz target: the CoAP codec and the Block/option accessors on arbitrary datagrams.
 *
 * Invariants checked (abort on violation): a datagram that parses re-serializes to exactly the
 * same bytes (the option encoding is canonical and values are kept verbatim), the re-parse gives
 * the same view, and every accessor and block helper runs without reading out of bounds. */
#include "coap/coap.h"
#include "base/err.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void exercise_blocks(const struct lw_coap_msg *m)
{
    struct lw_coap_block b;
    (void)lw_coap_get_block(m, LW_COAP_OPT_BLOCK1, &b);
    (void)lw_coap_get_block(m, LW_COAP_OPT_BLOCK2, &b);
    /* Serve a Block2 slice of a fixed body as if m were a request. */
    static const uint8_t body[3000];
    struct lw_coap_msg resp;
    lw_coap_msg_init(&resp, LW_COAP_ACK, 0);
    if (lw_coap_block2_serve(m, (struct lw_bytes){body, sizeof(body)},
                             (struct lw_bytes){(const uint8_t *)"\x01\x02", 2}, 6, &resp) == 0) {
        if (resp.payload.len &&
            (resp.payload.ptr < body || resp.payload.ptr + resp.payload.len > body + sizeof(body)))
            abort();
    }
    /* Feed m to a Block2 reassembler and an atomic Block1 receiver. */
    struct lw_coap_b2asm a;
    lw_coap_b2asm_init(&a, 4096);
    (void)lw_coap_b2asm_feed(&a, m);
    if (a.len > 4096)
        abort();
    lw_coap_b2asm_deinit(&a);
    struct lw_coap_b1rx rx;
    lw_coap_b1rx_init(&rx, 4096, 6, 0);
    struct lw_bytes got;
    (void)lw_coap_b1rx_feed(&rx, m, 0, &resp, &got);
    (void)lw_coap_b1rx_feed(&rx, m, 1, &resp, &got);
    lw_coap_b1rx_deinit(&rx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lw_coap_msg m;
    struct lw_coap_perr err;
    if (lw_coap_parse(&m, data, size, NULL, &err) != 0) {
        if (err.offset > size)
            abort();
        return 0;
    }
    (void)lw_coap_check_opts(&m, &err);
    for (size_t i = 0; i < m.nopts; i++) {
        uint32_t v;
        (void)lw_coap_decode_uint(lw_coap_opt_data(&m.opts[i]), m.opts[i].len, &v);
        (void)lw_coap_opt_info(m.opts[i].num);
    }
    char path[64];
    (void)lw_coap_uri_path(&m, path, sizeof(path));
    exercise_blocks(&m);

    /* Round trip: serialize(parse(x)) == x. */
    uint8_t *out = malloc(size + 1);
    if (!out)
        return 0;
    struct lw_buf b;
    lw_buf_init_fixed(&b, out, size + 1);
    if (lw_coap_serialize(&m, &b) != 0 || b.len != size || memcmp(out, data, size) != 0)
        abort();
    struct lw_coap_msg m2;
    if (lw_coap_parse(&m2, out, b.len, NULL, NULL) != 0 || m2.nopts != m.nopts ||
        m2.payload.len != m.payload.len || m2.mid != m.mid || m2.code != m.code)
        abort();
    free(out);
    return 0;
}
