/* Unit tests of the peer table (server/peer.c): adds, lookups, address changes (peer_rekey) and
 * deletions against a reference array, through the table's growth to 262 144 slots, once with the
 * hash bits each peer keeps (the default) and once with full SipHash beyond 16 slots (the branch
 * tables of 2^23 slots and more take). */
#include "peer.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

enum { N = 120000, ROUNDS = 400000 };

static struct peer_addr addr_of(uint32_t k, uint16_t gen)
{
    struct peer_addr a = {0};
    a.family = 4;
    a.sock = (uint8_t)(k % 3);
    a.port = (uint16_t)(1000 + gen);
    uint32_t ip = 0x0a000000u + k;
    memcpy(a.ip, &ip, 4);
    return a;
}

static void run(unsigned hlo_bits)
{
    unsigned saved = lw__peer_hlo_bits;
    lw__peer_hlo_bits = hlo_bits;
    struct peer_table t;
    ck_assert_int_eq(peer_table_init(&t), 0);
    struct peer **ref = calloc(N, sizeof(*ref));
    uint16_t *gen = calloc(N, sizeof(*gen));
    size_t live = 0;
    srand(5);
    for (int r = 0; r < ROUNDS; r++) {
        uint32_t k = (uint32_t)rand() % N;
        struct peer_addr a = addr_of(k, gen[k]);
        ck_assert_ptr_eq(peer_find(&t, &a), ref[k]);
        int op = rand() % 10;
        if (!ref[k] && op < 7) {
            ref[k] = peer_add(&t, &a);
            ck_assert_ptr_nonnull(ref[k]);
            live++;
        } else if (ref[k] && op < 2) {
            peer_del(&t, ref[k]);
            ref[k] = NULL;
            live--;
        } else if (ref[k] && op < 4) {
            gen[k]++;
            struct peer_addr b = addr_of(k, gen[k]);
            peer_rekey(&t, ref[k], &b);
            ck_assert_ptr_null(peer_find(&t, &a));
            ck_assert_ptr_eq(peer_find(&t, &b), ref[k]);
        }
    }
    ck_assert_uint_eq(peer_count(&t), live);
    ck_assert_uint_ge(lw_cmap_bytes(&t.map), (size_t)131072 * 8);
    for (uint32_t k = 0; k < N; k++) {
        struct peer_addr a = addr_of(k, gen[k]);
        ck_assert_ptr_eq(peer_find(&t, &a), ref[k]);
        if (ref[k])
            peer_del(&t, ref[k]);
    }
    ck_assert_uint_eq(peer_count(&t), 0);
    peer_table_deinit(&t);
    free(ref);
    free(gen);
    lw__peer_hlo_bits = saved;
}

START_TEST(kept_hash_bits)
{
    run(23);
}
END_TEST

START_TEST(full_siphash)
{
    run(4);
}
END_TEST

Suite *suite_peer_table(void);
Suite *suite_peer_table(void)
{
    Suite *s = suite_create("peer_table");
    TCase *tc = tcase_create("peer_table");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, kept_hash_bits);
    tcase_add_test(tc, full_siphash);
    suite_add_tcase(s, tc);
    return s;
}
