#include "shard.h"

#include "base/err.h"
#include "base/util.h"
#include "log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <uv.h>

struct shard {
    unsigned id;
    uv_thread_t thread;
    uv_loop_t loop;
    uv_async_t wake;
    pthread_mutex_t lock;
    struct lw_list inbox; /* guarded by lock */
    bool closed;          /* guarded by lock: no more posts accepted */
    bool stopping;        /* shard thread only */
    _Atomic uint64_t ping_answer;
    struct xmsg ping; /* embedded, reused: at most one ping outstanding per shard */
    _Atomic bool ping_queued;
    bool started;
    const struct lw_config *cfg;
};

static struct shard *shards;
static unsigned nshards;
static _Atomic uint64_t ping_seq;

unsigned shards_count(void)
{
    return nshards;
}
struct shard *shard_get(unsigned i)
{
    return i < nshards ? &shards[i] : NULL;
}
unsigned shard_id(const struct shard *s)
{
    return s->id;
}

bool shard_post(struct shard *s, struct xmsg *m)
{
    pthread_mutex_lock(&s->lock);
    bool ok = !s->closed;
    if (ok)
        lw_list_push_back(&s->inbox, &m->link);
    pthread_mutex_unlock(&s->lock);
    if (ok)
        uv_async_send(&s->wake);
    return ok;
}

static void on_wake(uv_async_t *h)
{
    struct shard *s = h->data;
    struct lw_list batch;
    lw_list_init(&batch);
    pthread_mutex_lock(&s->lock);
    lw_list_splice_back(&batch, &s->inbox);
    pthread_mutex_unlock(&s->lock);
    struct lw_list *it;
    while ((it = lw_list_pop_front(&batch))) {
        struct xmsg *m = lw_container_of(it, struct xmsg, link);
        m->run(s, m);
    }
    if (s->stopping)
        uv_close((uv_handle_t *)&s->wake, NULL);
}

static void run_ping(struct shard *s, struct xmsg *m)
{
    (void)m;
    atomic_store(&s->ping_answer, atomic_load(&ping_seq));
    atomic_store(&s->ping_queued, false);
}

static void run_stop(struct shard *s, struct xmsg *m)
{
    free(m);
    s->stopping = true;
    log_debug(SHARD, "shard %u stopping", s->id);
}

static void walk_close(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void shard_main(void *arg)
{
    struct shard *s = arg;
    log_debug(SHARD, "shard %u running", s->id);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    /* Everything the shard owns is closed by now; close any straggler and drain close callbacks. */
    uv_walk(&s->loop, walk_close, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
}

static void shard_free_one(struct shard *s)
{
    if (s->started) {
        uv_loop_close(&s->loop);
        pthread_mutex_destroy(&s->lock);
    }
}

int shards_start(unsigned n, const struct lw_config *cfg)
{
    if (n == 0)
        return LW_EINVAL;
    shards = calloc(n, sizeof(*shards));
    if (!shards)
        return LW_ENOMEM;
    nshards = n;
    for (unsigned i = 0; i < n; i++) {
        struct shard *s = &shards[i];
        s->id = i;
        s->cfg = cfg;
        lw_list_init(&s->inbox);
        s->ping.run = run_ping;
        int rc = uv_loop_init(&s->loop);
        if (rc == 0) {
            rc = uv_async_init(&s->loop, &s->wake, on_wake);
            if (rc)
                uv_loop_close(&s->loop);
        }
        if (rc) {
            log_err(SHARD, "shard %u: cannot create its loop: %s", i, uv_strerror(rc));
            nshards = i;
            shards_stop();
            return LW_EIO;
        }
        s->wake.data = s;
        pthread_mutex_init(&s->lock, NULL);
        s->started = true;
        rc = uv_thread_create(&s->thread, shard_main, s);
        if (rc) {
            log_err(SHARD, "shard %u: cannot start its thread: %s", i, uv_strerror(rc));
            uv_close((uv_handle_t *)&s->wake, NULL);
            uv_run(&s->loop, UV_RUN_DEFAULT);
            shard_free_one(s);
            nshards = i;
            shards_stop();
            return LW_EIO;
        }
    }
    log_info(SHARD, "%u shard%s started", n, n == 1 ? "" : "s");
    return 0;
}

void shards_stop(void)
{
    if (!shards)
        return;
    for (unsigned i = 0; i < nshards; i++) {
        struct xmsg *m = malloc(sizeof(*m));
        if (!m) /* cannot happen in practice; the shard would never stop: fail loudly */
            abort();
        m->run = run_stop;
        if (!shard_post(&shards[i], m))
            free(m);
    }
    for (unsigned i = 0; i < nshards; i++) {
        uv_thread_join(&shards[i].thread);
        pthread_mutex_lock(&shards[i].lock);
        shards[i].closed = true;
        pthread_mutex_unlock(&shards[i].lock);
        shard_free_one(&shards[i]);
    }
    free(shards);
    shards = NULL;
    nshards = 0;
}

void shards_ping(void)
{
    atomic_fetch_add(&ping_seq, 1);
    for (unsigned i = 0; i < nshards; i++) {
        struct shard *s = &shards[i];
        bool expected = false;
        if (atomic_compare_exchange_strong(&s->ping_queued, &expected, true))
            shard_post(s, &s->ping);
    }
}

bool shards_all_answered(void)
{
    uint64_t seq = atomic_load(&ping_seq);
    for (unsigned i = 0; i < nshards; i++)
        if (atomic_load(&shards[i].ping_answer) != seq)
            return false;
    return true;
}
