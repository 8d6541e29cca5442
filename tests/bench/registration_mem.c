/* Registration memory and in-process cost (make bench): drives one shard's registration service
 * (registry.h) directly, without sockets, on a fake clock, and reports
 *   - heap bytes per registration with every table's overhead (record, peer with its CoAP state,
 *     slot, peer and directory hash tables, interned object list), measured with mallinfo2()
 *     (arenas and malloc's mmaps) plus the hash slot arrays mapped outside malloc
 *     after the CoAP dedup state of the last exchanges expired (EXCHANGE_LIFETIME, 247 s, passed
 *     on the fake clock), at 100 k and LW_BENCH_MAX (default 1 M) registrations;
 *   - ns per Register and per Update through the whole receive path (CoAP parse, dedup,
 *     registration interface, response encoding, the event snapshot the shard posts; with no
 *     control thread running here the snapshot is freed at once, and its JSON, which the
 *     daemon builds on the control thread, is not built).
 * Prints `bench registration_mem: ...` lines and appends a JSON line to
 * bench/results/registration_mem.json. */
#include "base/clock.h"
#include "coap/coap.h"
#include "dir.h"
#include "registry.h"

#include <arpa/inet.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static char (*ids)[12];
static uint32_t cur_dev;
static uint64_t sent;

static void on_send(void *ctx, const struct peer_addr *to, const uint8_t *d, size_t n)
{
    struct lw_coap_msg m;
    (void)ctx;
    (void)to;
    sent++;
    if (n > 4 && d[1] == LW_COAP_CREATED && lw_coap_parse(&m, d, n, NULL, NULL) == 0) {
        size_t pos = 0;
        const struct lw_coap_opt *o, *last = NULL;
        while ((o = lw_coap_next_opt(&m, LW_COAP_OPT_LOCATION_PATH, &pos)))
            last = o;
        if (last && last->len == 11)
            memcpy(ids[cur_dev], lw_coap_opt_data(last), 11);
    }
}

static const struct regsrv_ops ops = {.send = on_send};

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static size_t build(uint8_t *buf, uint32_t i, bool update, uint16_t mid)
{
    struct lw_coap_msg m;
    struct lw_buf b;
    char ep[32], path[32];
    lw_coap_msg_init(&m, LW_COAP_CON, LW_COAP_POST);
    m.mid = mid;
    m.tkl = 4;
    memcpy(m.token, &i, 4);
    if (update) {
        snprintf(path, sizeof(path), "rd/%.11s", ids[i]);
        lw_coap_add_uri_path(&m, path);
    } else {
        lw_coap_add_uri_path(&m, "rd");
        snprintf(ep, sizeof(ep), "ep=meter-%08u", i);
        lw_coap_add_str(&m, LW_COAP_OPT_URI_QUERY, ep);
        lw_coap_add_str(&m, LW_COAP_OPT_URI_QUERY, "lt=86400");
        lw_coap_add_str(&m, LW_COAP_OPT_URI_QUERY, "lwm2m=1.1");
        lw_coap_add_uint(&m, LW_COAP_OPT_CONTENT_FORMAT, 40);
        m.payload = LW_BYTES_STR("</>;rt=\"oma.lwm2m\";ct=110,</1/0>,</3/0>,</4/0>,</5/0>");
    }
    lw_buf_init_fixed(&b, buf, 512);
    lw_coap_serialize(&m, &b);
    return b.len;
}

static struct peer_addr addr_of(uint32_t i)
{
    struct peer_addr a = {0};
    uint32_t ip = htonl(0x0a000000u + i);
    a.family = 4;
    a.port = 5683;
    memcpy(a.ip, &ip, 4);
    return a;
}

/* Memory in use: the malloc heap (arenas and malloc's own mmaps: large arrays) and the hash slot
 * arrays mapped outside it (lw_hmap_mapped_bytes: the peer table and the directory's stripes
 * once they pass 2 MiB), so every table's overhead is counted. */
static size_t heap_bytes(const struct regsrv *rs)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd + lw_cmap_mapped_bytes(&rs->peers.map) +
           lw_hmap_mapped_bytes(&rs->moved) + dir_mapped_bytes();
}

int main(void)
{
    uint32_t max = getenv("LW_BENCH_MAX") ? (uint32_t)atol(getenv("LW_BENCH_MAX")) : 1000000;
    char err[256];
    struct lw_clock clock;
    struct regsrv rs;
    struct regsrv_cfg cfg = {0};
    uint64_t now = 1000;
    uint8_t buf[512];
    ids = calloc(max, sizeof(*ids));
    if (!ids || reg_global_init(NULL, err, sizeof(err)) != 0)
        return 1;
    lw_clock_fake_init(&clock, now, 1790000000000);
    cfg.clock = &clock;
    if (regsrv_init(&rs, 0, &cfg, &ops, NULL, now) != 0)
        return 1;
    size_t heap0 = heap_bytes(&rs);
    uint32_t marks[2] = {100000 < max ? 100000 : max, max};
    double per_reg[2] = {0, 0}, reg_ns = 0, upd_ns = 0;
    uint32_t done = 0;
    for (int k = 0; k < 2; k++) {
        double t0 = now_ns();
        uint32_t from = done;
        for (; done < marks[k]; done++) {
            cur_dev = done;
            size_t n = build(buf, done, false, (uint16_t)done);
            struct peer_addr a = addr_of(done);
            regsrv_input(&rs, &a, buf, n, now);
        }
        if (done > from && k == 0)
            reg_ns = (now_ns() - t0) / (double)(done - from);
        /* Let the CoAP dedup state of these exchanges expire (247 s on the fake clock). */
        now += 250000;
        lw_clock_fake_advance(&clock, 250000);
        regsrv_advance(&rs, now);
        per_reg[k] = (double)(heap_bytes(&rs) - heap0) / (double)done;
        if (k == 0) {
            t0 = now_ns();
            for (uint32_t i = 0; i < done; i++) {
                size_t n = build(buf, i, true, (uint16_t)(i + 30000));
                struct peer_addr a = addr_of(i);
                regsrv_input(&rs, &a, buf, n, now);
            }
            upd_ns = (now_ns() - t0) / (double)done;
            now += 250000;
            lw_clock_fake_advance(&clock, 250000);
            regsrv_advance(&rs, now);
        }
    }
    printf("bench registration_mem: %.0f bytes per registration at %u registrations\n", per_reg[0],
           marks[0]);
    printf("bench registration_mem: %.0f bytes per registration at %u registrations\n", per_reg[1],
           marks[1]);
    printf("bench registration_mem: register %.0f ns/op, update %.0f ns/op (in-process, no "
           "sockets; event snapshots posted as in the daemon)\n",
           reg_ns, upd_ns);
    printf("bench registration_mem: %zu registrations held, %zu interned object list(s)\n",
           regsrv_reg_count(&rs), reg_interned_count());
    mkdir("bench", 0755);
    mkdir("bench/results", 0755);
    FILE *j = fopen("bench/results/registration_mem.json", "a");
    if (j) {
        fprintf(j,
                "{\"bench\":\"registration_mem\",\"time\":%ld,\"bytes_per_reg_%u\":%.0f,"
                "\"bytes_per_reg_%u\":%.0f,\"register_ns\":%.0f,\"update_ns\":%.0f}\n",
                (long)time(NULL), marks[0], per_reg[0], marks[1], per_reg[1], reg_ns, upd_ns);
        fclose(j);
    }
    regsrv_deinit(&rs);
    reg_global_deinit();
    free(ids);
    return 0;
}
