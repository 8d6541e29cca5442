#include "control.h"

#include "base/util.h"

#include <pthread.h>

static struct {
    uv_loop_t *loop;
    uv_async_t wake;
    pthread_mutex_t lock;
    struct lw_list inbox;
    bool open;
    pthread_t thread;
} ctl = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void drain(void)
{
    struct lw_list batch;
    lw_list_init(&batch);
    pthread_mutex_lock(&ctl.lock);
    lw_list_splice_back(&batch, &ctl.inbox);
    pthread_mutex_unlock(&ctl.lock);
    struct lw_list *it;
    while ((it = lw_list_pop_front(&batch))) {
        struct xmsg *m = lw_container_of(it, struct xmsg, link);
        m->run(NULL, m);
    }
}

static void on_wake(uv_async_t *h)
{
    (void)h;
    drain();
}

int lw_control_start(uv_loop_t *loop)
{
    ctl.loop = loop;
    ctl.thread = pthread_self();
    lw_list_init(&ctl.inbox);
    int rc = uv_async_init(loop, &ctl.wake, on_wake);
    if (rc)
        return rc;
    pthread_mutex_lock(&ctl.lock);
    ctl.open = true;
    pthread_mutex_unlock(&ctl.lock);
    return 0;
}

void lw_control_stop(void)
{
    pthread_mutex_lock(&ctl.lock);
    bool was_open = ctl.open;
    ctl.open = false;
    pthread_mutex_unlock(&ctl.lock);
    if (!was_open)
        return;
    drain();
    uv_close((uv_handle_t *)&ctl.wake, NULL);
}

uv_loop_t *lw_control_loop(void)
{
    return ctl.loop;
}

bool lw_control_post(struct xmsg *m)
{
    pthread_mutex_lock(&ctl.lock);
    bool ok = ctl.open;
    if (ok)
        lw_list_push_back(&ctl.inbox, &m->link);
    pthread_mutex_unlock(&ctl.lock);
    if (ok)
        uv_async_send(&ctl.wake);
    return ok;
}

bool lw_on_control_thread(void)
{
    return pthread_equal(pthread_self(), ctl.thread);
}
