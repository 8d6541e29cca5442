/* tests/bench/store_pipeline.c - registration changes persisted per second by the write-behind
 * store (server/store/store.c) against a real PostgreSQL: LW_BENCH_DB_URL names a migrated
 * database (tests/bench/store_bench.sh provides one; without it the benchmark says so and exits
 * 0). One thread per shard writer runs a uv loop that, like a shard, hands changes to
 * lw_store_change and polls its writer's pipelined connection. Two phases over
 * LW_BENCH_ROWS (default 1000000) distinct endpoints, so every change is one row (nothing
 * coalesces): Registers (rows inserted), then Updates of the same endpoints (rows updated). The
 * producers keep at most BACKLOG changes waiting (backpressure, nothing dropped) and a phase
 * ends when every row is committed. Prints "bench store_pipeline_...: N changes/s" and appends
 * a JSON line to bench/results/store_pipeline.json. The rows left behind (live for a day, ids
 * of shards 0..NW-1) serve the restore measurement of store_bench.sh. */
#include "base/util.h"
#include "config.h"
#include "registry.h"
#include "store/store.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <uv.h>

#define NW      2
#define CHUNK   1000
#define BACKLOG 100000

struct prod {
    unsigned idx;
    uv_loop_t loop;
    uv_timer_t tick;
    uv_thread_t thread;
    json_t *objs;
    _Atomic int phase; /* 0 idle, 1 registers, 2 updates, 3 stop */
    int done_phase;
    size_t next; /* next endpoint index (idx, idx + NW, ...) */
};

static size_t rows = 1000000;
static _Atomic int phase;
static struct prod P[NW];

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void produce(struct prod *p, int ph)
{
    struct lw_store_stats st;
    lw_store_get_stats(&st);
    if (st.queued > BACKLOG)
        return;
    int64_t t = (int64_t)time(NULL);
    for (unsigned k = 0; k < CHUNK && p->next < rows; k++, p->next += NW) {
        size_t i = p->next;
        char ep[32];
        snprintf(ep, sizeof(ep), "bench-%07zu", i);
        struct peer_addr a = {.family = 4, .port = (uint16_t)(5683 + i % 1000)};
        a.ip[0] = 10;
        a.ip[1] = (uint8_t)(i >> 16);
        a.ip[2] = (uint8_t)(i >> 8);
        a.ip[3] = (uint8_t)i;
        /* shard i % NW, slot i / NW: restorable into a daemon with NW shards */
        uint64_t id =
            (uint64_t)(i % NW) << 56 | (uint64_t)(i / NW) << 32 | (uint32_t)(i * 2654435761u);
        struct regsrv_change c = {.type = ph == 1 ? LW_EV_REGISTERED : LW_EV_UPDATED,
                                  .id = id,
                                  .ep = ep,
                                  .addr = &a,
                                  .ver = 0x11,
                                  .binding = "U",
                                  .lifetime_s = 86400,
                                  .registered_s = t,
                                  .updated_s = t,
                                  .expires_s = t + 86400,
                                  .objs = p->objs};
        lw_store_change(&c);
    }
}

static void on_tick(uv_timer_t *h)
{
    struct prod *p = h->data;
    int ph = atomic_load(&phase);
    if (ph == 3) {
        lw_store_detach(p->idx);
        uv_close((uv_handle_t *)&p->tick, NULL);
        return;
    }
    if (ph != p->done_phase) {
        p->done_phase = ph;
        p->next = p->idx;
    }
    if (ph == 1 || ph == 2)
        produce(p, ph);
}

static void run(void *arg)
{
    struct prod *p = arg;
    uv_run(&p->loop, UV_RUN_DEFAULT);
}

/* Waits until `want` more rows are committed than `base`; returns the changes/s of the phase. */
static double wait_rows(uint64_t base, uint64_t want, uint64_t t0, const char *what)
{
    struct lw_store_stats st;
    for (;;) {
        lw_store_get_stats(&st);
        if (st.upserts - base >= want)
            break;
        if (st.failed || st.dropped) {
            fprintf(stderr, "store_pipeline: %s: %llu batch(es) failed, %llu dropped\n", what,
                    (unsigned long long)st.failed, (unsigned long long)st.dropped);
            return 0;
        }
        uv_sleep(2);
    }
    double s = (double)(now_ns() - t0) / 1e9;
    return (double)want / s;
}

int main(void)
{
    char *url = getenv("LW_BENCH_DB_URL");
    if (getenv("LW_BENCH_ROWS"))
        rows = strtoul(getenv("LW_BENCH_ROWS"), NULL, 10);
    if (!url || !*url) {
        printf("bench store_pipeline: skipped (no LW_BENCH_DB_URL; tests/bench/store_bench.sh "
               "runs it against its own PostgreSQL)\n");
        return 0;
    }
    struct lw_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.db_url = url;
    if (lw_store_start(NULL, &cfg) != 0)
        return 1;
    json_t *objs = json_loads("[{\"id\":1,\"version\":\"1.1\",\"instances\":[0]},"
                              "{\"id\":3,\"version\":\"1.0\",\"instances\":[0]},"
                              "{\"id\":3303,\"version\":\"1.0\",\"instances\":[0,1]}]",
                              0, NULL);
    for (unsigned i = 0; i < NW; i++) {
        struct prod *p = &P[i];
        p->idx = i;
        p->objs = objs;
        uv_loop_init(&p->loop);
        uv_timer_init(&p->loop, &p->tick);
        p->tick.data = p;
        uv_timer_start(&p->tick, on_tick, 1, 1);
        if (lw_store_attach(NW, i, &p->loop) != 0)
            return 1;
    }
    for (unsigned i = 0; i < NW; i++)
        uv_thread_create(&P[i].thread, run, &P[i]);
    /* connected? */
    for (int k = 0; k < 1000 && !lw_store_db_ok(); k++)
        uv_sleep(10);
    if (!lw_store_db_ok()) {
        fprintf(stderr, "store_pipeline: cannot connect to the database\n");
        return 1;
    }
    struct lw_store_stats st;
    lw_store_get_stats(&st);
    uint64_t t0 = now_ns();
    atomic_store(&phase, 1);
    double ins = wait_rows(st.upserts, rows, t0, "registers");
    lw_store_get_stats(&st);
    t0 = now_ns();
    atomic_store(&phase, 2);
    double upd = wait_rows(st.upserts, rows, t0, "updates");
    lw_store_get_stats(&st);
    atomic_store(&phase, 3);
    for (unsigned i = 0; i < NW; i++) {
        uv_thread_join(&P[i].thread);
        uv_loop_close(&P[i].loop);
    }
    lw_store_stop();
    json_decref(objs);
    printf("bench store_pipeline_insert: %.0f changes/s (%zu registrations, %u writers)\n", ins,
           rows, NW);
    printf("bench store_pipeline_update: %.0f changes/s (%zu updates, %u writers, %llu batches)\n",
           upd, rows, NW, (unsigned long long)st.batches);
    mkdir("bench", 0755);
    mkdir("bench/results", 0755);
    FILE *f = fopen("bench/results/store_pipeline.json", "a");
    if (f) {
        fprintf(f,
                "{\"time\":%lld,\"rows\":%zu,\"writers\":%u,\"insert_per_s\":%.0f,"
                "\"update_per_s\":%.0f}\n",
                (long long)time(NULL), rows, NW, ins, upd);
        fclose(f);
    }
    return ins > 0 && upd > 0 ? 0 : 1;
}
