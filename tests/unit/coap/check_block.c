/* Unit tests for the Block-wise helpers (RFC 7959) and the Observe freshness rule (RFC 7641). */
#include "coap/coap.h"
#include "base/err.h"
#include "base/util.h"

#include <check.h>
#include <stdlib.h>

static uint8_t body[5000];

static void fill_body(void)
{
    for (size_t i = 0; i < sizeof(body); i++)
        body[i] = (uint8_t)(i * 31 + 7);
}

static void req_block2(struct lw_coap_msg *req, uint32_t num, uint8_t szx, bool size2)
{
    lw_coap_msg_init(req, LW_COAP_CON, LW_COAP_GET);
    lw_coap_add_uri_path(req, "fw/pkg");
    struct lw_coap_block b = {num, false, szx};
    lw_coap_add_block(req, LW_COAP_OPT_BLOCK2, &b);
    if (size2)
        lw_coap_add_uint(req, LW_COAP_OPT_SIZE2, 0);
}

START_TEST(test_block2_serve)
{
    fill_body();
    struct lw_coap_msg req, resp;
    struct lw_bytes bd = LW_BYTES(body, 2500);
    struct lw_bytes etag = LW_BYTES("\x01\x02\x03\x04", 4);
    struct lw_coap_block b;
    uint32_t v;
    struct lw_bytes t;

    /* No Block2 in the request, body larger than a block: block 0 with Size2 and ETag. */
    lw_coap_msg_init(&req, LW_COAP_CON, LW_COAP_GET);
    ck_assert_int_eq(lw_coap_block2_serve(&req, bd, etag, 6, &resp), 0);
    ck_assert_uint_eq(resp.code, LW_COAP_CONTENT);
    ck_assert_int_eq(lw_coap_get_block(&resp, LW_COAP_OPT_BLOCK2, &b), 0);
    ck_assert_uint_eq(b.num, 0);
    ck_assert(b.more);
    ck_assert_uint_eq(b.szx, 6);
    ck_assert_int_eq(lw_coap_get_uint(&resp, LW_COAP_OPT_SIZE2, &v), 0);
    ck_assert_uint_eq(v, 2500);
    ck_assert_int_eq(lw_coap_get_bytes(&resp, LW_COAP_OPT_ETAG, &t), 0);
    ck_assert(lw_bytes_eq(t, etag));
    ck_assert_uint_eq(resp.payload.len, 1024);
    ck_assert_ptr_eq(resp.payload.ptr, body);

    /* Last block: M=0, no Size2 unless asked. */
    req_block2(&req, 2, 6, false);
    ck_assert_int_eq(lw_coap_block2_serve(&req, bd, etag, 6, &resp), 0);
    ck_assert_int_eq(lw_coap_get_block(&resp, LW_COAP_OPT_BLOCK2, &b), 0);
    ck_assert_uint_eq(b.num, 2);
    ck_assert(!b.more);
    ck_assert_uint_eq(resp.payload.len, 2500 - 2048);
    ck_assert_int_eq(lw_coap_get_uint(&resp, LW_COAP_OPT_SIZE2, &v), LW_ENOENT);
    req_block2(&req, 2, 6, true);
    ck_assert_int_eq(lw_coap_block2_serve(&req, bd, etag, 6, &resp), 0);
    ck_assert_int_eq(lw_coap_get_uint(&resp, LW_COAP_OPT_SIZE2, &v), 0);

    /* The client asks for smaller blocks: honoured (SZX 2 = 64 bytes). */
    req_block2(&req, 5, 2, false);
    ck_assert_int_eq(lw_coap_block2_serve(&req, bd, etag, 6, &resp), 0);
    ck_assert_int_eq(lw_coap_get_block(&resp, LW_COAP_OPT_BLOCK2, &b), 0);
    ck_assert_uint_eq(b.num, 5);
    ck_assert_uint_eq(b.szx, 2);
    ck_assert_ptr_eq(resp.payload.ptr, body + 5 * 64);
    ck_assert_uint_eq(resp.payload.len, 64);

    /* The client asks for bigger blocks than we serve: we answer with ours, same offset. */
    req_block2(&req, 1, 6, false);
    ck_assert_int_eq(lw_coap_block2_serve(&req, bd, etag, 4, &resp), 0);
    ck_assert_int_eq(lw_coap_get_block(&resp, LW_COAP_OPT_BLOCK2, &b), 0);
    ck_assert_uint_eq(b.szx, 4);
    ck_assert_uint_eq(b.num, 4);
    ck_assert_ptr_eq(resp.payload.ptr, body + 1024);
    ck_assert_uint_eq(resp.payload.len, 256);

    /* Out of range and SZX 7. */
    req_block2(&req, 3, 6, false);
    ck_assert_int_eq(lw_coap_block2_serve(&req, bd, etag, 6, &resp), 0);
    ck_assert_uint_eq(resp.code, LW_COAP_BAD_OPTION);
    ck_assert_uint_eq(resp.payload.len, 0);
    req_block2(&req, 0, 7, false);
    ck_assert_int_eq(lw_coap_block2_serve(&req, bd, etag, 6, &resp), 0);
    ck_assert_uint_eq(resp.code, LW_COAP_BAD_REQUEST);

    /* Small body without Block2 in the request: no Block2 option, whole payload. */
    lw_coap_msg_init(&req, LW_COAP_CON, LW_COAP_GET);
    ck_assert_int_eq(lw_coap_block2_serve(&req, LW_BYTES(body, 100), LW_BYTES(NULL, 0), 6, &resp),
                     0);
    ck_assert_int_eq(lw_coap_get_block(&resp, LW_COAP_OPT_BLOCK2, &b), LW_ENOENT);
    ck_assert_int_eq(lw_coap_get_bytes(&resp, LW_COAP_OPT_ETAG, &t), LW_ENOENT);
    ck_assert_uint_eq(resp.payload.len, 100);
    /* Empty body, block 0 asked: an empty final block. */
    req_block2(&req, 0, 6, false);
    ck_assert_int_eq(lw_coap_block2_serve(&req, LW_BYTES(body, 0), etag, 6, &resp), 0);
    ck_assert_uint_eq(resp.code, LW_COAP_CONTENT);
    ck_assert_uint_eq(resp.payload.len, 0);
}
END_TEST

/* Serves the whole body through lw_coap_block2_serve and reassembles it with lw_coap_b2asm. */
START_TEST(test_b2asm_roundtrip)
{
    fill_body();
    struct lw_bytes etag = LW_BYTES("\xaa\xbb", 2);
    for (uint8_t szx = 0; szx <= 6; szx++) {
        struct lw_coap_b2asm a;
        lw_coap_b2asm_init(&a, 0);
        uint32_t num = 0;
        int rc;
        int rounds = 0;
        do {
            struct lw_coap_msg req, resp;
            req_block2(&req, num, szx, false);
            ck_assert_int_eq(lw_coap_block2_serve(&req, LW_BYTES(body, 4321), etag, 6, &resp), 0);
            rc = lw_coap_b2asm_feed(&a, &resp);
            num = a.next_num;
            rounds++;
        } while (rc == LW_EAGAIN);
        ck_assert_int_eq(rc, 0);
        ck_assert_int_eq(rounds,
                         (int)((4321 + lw_coap_block_size(szx) - 1) / lw_coap_block_size(szx)));
        ck_assert_uint_eq(a.len, 4321);
        ck_assert_mem_eq(a.data, body, 4321);
        lw_coap_b2asm_deinit(&a);
    }
}
END_TEST

START_TEST(test_b2asm_errors)
{
    fill_body();
    struct lw_coap_b2asm a;
    struct lw_coap_msg req, resp;
    /* ETag change between blocks. */
    lw_coap_b2asm_init(&a, 0);
    req_block2(&req, 0, 4, false);
    lw_coap_block2_serve(&req, LW_BYTES(body, 1000), LW_BYTES("\x01", 1), 6, &resp);
    ck_assert_int_eq(lw_coap_b2asm_feed(&a, &resp), LW_EAGAIN);
    req_block2(&req, 1, 4, false);
    lw_coap_block2_serve(&req, LW_BYTES(body, 1000), LW_BYTES("\x02", 1), 6, &resp);
    ck_assert_int_eq(lw_coap_b2asm_feed(&a, &resp), LW_EPROTO);
    lw_coap_b2asm_deinit(&a);
    /* Wrong block number. */
    lw_coap_b2asm_init(&a, 0);
    req_block2(&req, 0, 4, false);
    lw_coap_block2_serve(&req, LW_BYTES(body, 1000), LW_BYTES(NULL, 0), 6, &resp);
    ck_assert_int_eq(lw_coap_b2asm_feed(&a, &resp), LW_EAGAIN);
    req_block2(&req, 2, 4, false);
    lw_coap_block2_serve(&req, LW_BYTES(body, 1000), LW_BYTES(NULL, 0), 6, &resp);
    ck_assert_int_eq(lw_coap_b2asm_feed(&a, &resp), LW_EPROTO);
    lw_coap_b2asm_deinit(&a);
    /* Body larger than the limit. */
    lw_coap_b2asm_init(&a, 300);
    req_block2(&req, 0, 4, false);
    lw_coap_block2_serve(&req, LW_BYTES(body, 1000), LW_BYTES(NULL, 0), 6, &resp);
    ck_assert_int_eq(lw_coap_b2asm_feed(&a, &resp), LW_EAGAIN);
    req_block2(&req, 1, 4, false);
    lw_coap_block2_serve(&req, LW_BYTES(body, 1000), LW_BYTES(NULL, 0), 6, &resp);
    ck_assert_int_eq(lw_coap_b2asm_feed(&a, &resp), LW_ELIMIT);
    lw_coap_b2asm_deinit(&a);
    /* M=1 with a short payload; no Block2; SZX 7; 4-byte Block2. */
    lw_coap_b2asm_init(&a, 0);
    lw_coap_msg_init(&resp, LW_COAP_ACK, LW_COAP_CONTENT);
    struct lw_coap_block b = {0, true, 4};
    lw_coap_add_block(&resp, LW_COAP_OPT_BLOCK2, &b);
    resp.payload = LW_BYTES(body, 10);
    ck_assert_int_eq(lw_coap_b2asm_feed(&a, &resp), LW_EPROTO);
    resp.nopts = 0;
    ck_assert_int_eq(lw_coap_b2asm_feed(&a, &resp), LW_ENOENT);
    b.szx = 7;
    lw_coap_add_block(&resp, LW_COAP_OPT_BLOCK2, &b);
    ck_assert_int_eq(lw_coap_b2asm_feed(&a, &resp), LW_EMALFORMED);
    resp.nopts = 0;
    lw_coap_add_opt(&resp, LW_COAP_OPT_BLOCK2, "\x01\x00\x00\x00", 4);
    ck_assert_int_eq(lw_coap_b2asm_feed(&a, &resp), LW_EMALFORMED);
    lw_coap_b2asm_deinit(&a);
}
END_TEST

static void req_block1(struct lw_coap_msg *req, uint32_t num, bool more, uint8_t szx, size_t off,
                       size_t len, int cf)
{
    lw_coap_msg_init(req, LW_COAP_CON, LW_COAP_PUT);
    lw_coap_add_uri_path(req, "5/0/0");
    if (cf >= 0)
        lw_coap_add_uint(req, LW_COAP_OPT_CONTENT_FORMAT, (uint32_t)cf);
    struct lw_coap_block b = {num, more, szx};
    lw_coap_add_block(req, LW_COAP_OPT_BLOCK1, &b);
    req->payload = LW_BYTES(body + off, len);
}

START_TEST(test_b1rx_sequence)
{
    fill_body();
    struct lw_coap_b1rx rx;
    lw_coap_b1rx_init(&rx, 4096, 6, 0);
    struct lw_coap_msg req, resp;
    struct lw_bytes got;
    struct lw_coap_block b;
    uint64_t now = 1000;
    /* Not block-wise. */
    lw_coap_msg_init(&req, LW_COAP_CON, LW_COAP_PUT);
    ck_assert_int_eq(lw_coap_b1rx_feed(&rx, &req, now, &resp, &got), LW_ENOENT);
    /* 3 blocks of 1024 + 100: 2.31, 2.31, final. */
    for (uint32_t i = 0; i < 2; i++) {
        req_block1(&req, i, true, 6, i * 1024, 1024, 42);
        ck_assert_int_eq(lw_coap_b1rx_feed(&rx, &req, now, &resp, &got), LW_EAGAIN);
        ck_assert_uint_eq(resp.code, LW_COAP_CONTINUE);
        ck_assert_int_eq(lw_coap_get_block(&resp, LW_COAP_OPT_BLOCK1, &b), 0);
        ck_assert_uint_eq(b.num, i);
        ck_assert(b.more);
        ck_assert_uint_eq(b.szx, 6);
        ck_assert_uint_eq(resp.payload.len, 0);
    }
    req_block1(&req, 2, false, 6, 2048, 100, 42);
    ck_assert_int_eq(lw_coap_b1rx_feed(&rx, &req, now, &resp, &got), 0);
    ck_assert_uint_eq(got.len, 2148);
    ck_assert_mem_eq(got.ptr, body, 2148);
    struct lw_coap_msg fin;
    lw_coap_msg_init(&fin, LW_COAP_ACK, LW_COAP_CHANGED);
    ck_assert_int_eq(lw_coap_b1rx_final_opt(&req, &fin), 0);
    ck_assert_int_eq(lw_coap_get_block(&fin, LW_COAP_OPT_BLOCK1, &b), 0);
    ck_assert_uint_eq(b.num, 2);
    ck_assert(!b.more);

    /* Missing block: 4.08. */
    req_block1(&req, 0, true, 6, 0, 1024, 42);
    ck_assert_int_eq(lw_coap_b1rx_feed(&rx, &req, now, &resp, &got), LW_EAGAIN);
    req_block1(&req, 2, true, 6, 2048, 1024, 42);
    ck_assert_int_eq(lw_coap_b1rx_feed(&rx, &req, now, &resp, &got), LW_EPROTO);
    ck_assert_uint_eq(resp.code, LW_COAP_REQUEST_INCOMPLETE);
    /* A block without a preceding block 0: 4.08. */
    req_block1(&req, 1, false, 6, 1024, 10, 42);
    ck_assert_int_eq(lw_coap_b1rx_feed(&rx, &req, now, &resp, &got), LW_EPROTO);
    /* Content-Format change: 4.08. */
    req_block1(&req, 0, true, 6, 0, 1024, 42);
    ck_assert_int_eq(lw_coap_b1rx_feed(&rx, &req, now, &resp, &got), LW_EAGAIN);
    req_block1(&req, 1, false, 6, 1024, 10, 0);
    ck_assert_int_eq(lw_coap_b1rx_feed(&rx, &req, now, &resp, &got), LW_EPROTO);
    /* Inactivity: the partial body expires after the lifetime. */
    req_block1(&req, 0, true, 6, 0, 1024, 42);
    ck_assert_int_eq(lw_coap_b1rx_feed(&rx, &req, now, &resp, &got), LW_EAGAIN);
    req_block1(&req, 1, false, 6, 1024, 10, 42);
    ck_assert_int_eq(lw_coap_b1rx_feed(&rx, &req, now + 247000, &resp, &got), LW_EPROTO);
    /* Too large: 4.13 with Size1; announced by Size1 on block 0 as well. */
    for (uint32_t i = 0; i < 4; i++) {
        req_block1(&req, i, true, 6, i * 1024, 1024, 42);
        ck_assert_int_eq(lw_coap_b1rx_feed(&rx, &req, now, &resp, &got), LW_EAGAIN);
    }
    req_block1(&req, 4, false, 6, 0, 1, 42);
    ck_assert_int_eq(lw_coap_b1rx_feed(&rx, &req, now, &resp, &got), LW_ELIMIT);
    ck_assert_uint_eq(resp.code, LW_COAP_REQUEST_TOO_LARGE);
    uint32_t v;
    ck_assert_int_eq(lw_coap_get_uint(&resp, LW_COAP_OPT_SIZE1, &v), 0);
    ck_assert_uint_eq(v, 4096);
    req_block1(&req, 0, true, 6, 0, 1024, 42);
    lw_coap_add_uint(&req, LW_COAP_OPT_SIZE1, 100000);
    ck_assert_int_eq(lw_coap_b1rx_feed(&rx, &req, now, &resp, &got), LW_ELIMIT);
    /* SZX 7 and M=1 with a short payload: 4.00. */
    req_block1(&req, 0, true, 7, 0, 1024, 42);
    ck_assert_int_eq(lw_coap_b1rx_feed(&rx, &req, now, &resp, &got), LW_EMALFORMED);
    ck_assert_uint_eq(resp.code, LW_COAP_BAD_REQUEST);
    req_block1(&req, 0, true, 6, 0, 1000, 42);
    ck_assert_int_eq(lw_coap_b1rx_feed(&rx, &req, now, &resp, &got), LW_EMALFORMED);
    lw_coap_b1rx_deinit(&rx);
}
END_TEST

START_TEST(test_b1rx_szx_negotiation)
{
    fill_body();
    struct lw_coap_b1rx rx;
    lw_coap_b1rx_init(&rx, 0, 4, 0); /* we prefer 256-byte blocks */
    struct lw_coap_msg req, resp;
    struct lw_bytes got;
    struct lw_coap_block b;
    /* The client starts with 1024: we keep the data and answer SZX 4 (RFC 7959 §2.3). */
    req_block1(&req, 0, true, 6, 0, 1024, 42);
    ck_assert_int_eq(lw_coap_b1rx_feed(&rx, &req, 0, &resp, &got), LW_EAGAIN);
    ck_assert_int_eq(lw_coap_get_block(&resp, LW_COAP_OPT_BLOCK1, &b), 0);
    ck_assert_uint_eq(b.szx, 4);
    ck_assert_uint_eq(b.num, 0);
    /* It continues with NUM 4 in 256-byte blocks. */
    req_block1(&req, 4, true, 4, 1024, 256, 42);
    ck_assert_int_eq(lw_coap_b1rx_feed(&rx, &req, 0, &resp, &got), LW_EAGAIN);
    ck_assert_int_eq(lw_coap_get_block(&resp, LW_COAP_OPT_BLOCK1, &b), 0);
    ck_assert_uint_eq(b.num, 4);
    req_block1(&req, 5, false, 4, 1280, 5, 42);
    ck_assert_int_eq(lw_coap_b1rx_feed(&rx, &req, 0, &resp, &got), 0);
    ck_assert_uint_eq(got.len, 1285);
    ck_assert_mem_eq(got.ptr, body, 1285);
    lw_coap_b1rx_deinit(&rx);
}
END_TEST

START_TEST(test_obs_freshness)
{
    /* RFC 7641 §3.4 */
    ck_assert(lw_coap_obs_fresher(12, 0, 13, 0));
    ck_assert(!lw_coap_obs_fresher(13, 0, 12, 0));
    ck_assert(!lw_coap_obs_fresher(13, 0, 13, 0));
    ck_assert(lw_coap_obs_fresher(0xffffff, 0, 0, 0)); /* wrap-around */
    ck_assert(!lw_coap_obs_fresher(0, 0, 0xffffff, 0));
    ck_assert(lw_coap_obs_fresher(5, 0, 5 + (1u << 23) - 1, 0));
    ck_assert(!lw_coap_obs_fresher(5, 0, 5 + (1u << 23), 0)); /* exactly half: not fresher */
    ck_assert(!lw_coap_obs_fresher(13, 1000, 12, 129000));    /* 128 s: not yet */
    ck_assert(lw_coap_obs_fresher(13, 1000, 12, 129001));     /* more than 128 s */
    ck_assert(lw_coap_obs_fresher(0x1000000 | 1, 0, 2, 0));   /* only 24 bits count */
}
END_TEST

Suite *suite_block(void);
Suite *suite_block(void)
{
    Suite *s = suite_create("coap_block");
    TCase *tc = tcase_create("block");
    tcase_add_test(tc, test_block2_serve);
    tcase_add_test(tc, test_b2asm_roundtrip);
    tcase_add_test(tc, test_b2asm_errors);
    tcase_add_test(tc, test_b1rx_sequence);
    tcase_add_test(tc, test_b1rx_szx_negotiation);
    tcase_add_test(tc, test_obs_freshness);
    suite_add_tcase(s, tc);
    return s;
}
