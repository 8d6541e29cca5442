#include "events.h"

#include "base/clock.h"
#include "base/util.h"
#include "control.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static const char *const names[LW_EV__COUNT] = {
    "registered", "updated", "deregistered", "expired", "notification", "send", "operation",
};

static struct lw_list sinks = {&sinks, &sinks};
static uint64_t next_id = 1;
static uint64_t counts[LW_EV__COUNT];
static _Atomic uint64_t dropped;

const char *lw_event_type_name(enum lw_event_type t)
{
    return (unsigned)t < LW_EV__COUNT ? names[t] : "unknown";
}

int lw_event_type_parse(const char *s, size_t len)
{
    for (int t = 0; t < LW_EV__COUNT; t++)
        if (strlen(names[t]) == len && memcmp(names[t], s, len) == 0)
            return t;
    return -1;
}

static void deliver(struct shard *s, struct xmsg *m)
{
    (void)s;
    struct lw_event *ev = lw_container_of(m, struct lw_event, msg);
    ev->id = next_id++;
    counts[ev->type]++;
    lw_list_foreach_safe (it, &sinks) {
        struct lw_event_sink *sink = lw_container_of(it, struct lw_event_sink, link);
        sink->on_event(sink->ctx, ev);
    }
    lw_event_free(ev);
}

struct lw_event *lw_event_new(enum lw_event_type type, const char *endpoint)
{
    struct lw_event *ev = calloc(1, sizeof(*ev));
    if (!ev)
        return NULL;
    ev->data = json_object();
    if (!ev->data) {
        free(ev);
        return NULL;
    }
    ev->type = type;
    ev->time_ms = lw_wall_ms();
    ev->msg.run = deliver;
    if (endpoint)
        snprintf(ev->endpoint, sizeof(ev->endpoint), "%s", endpoint);
    return ev;
}

void lw_event_free(struct lw_event *ev)
{
    if (!ev)
        return;
    json_decref(ev->data);
    free(ev);
}

void lw_events_post(struct lw_event *ev)
{
    if (!lw_control_post(&ev->msg)) {
        atomic_fetch_add(&dropped, 1);
        lw_event_free(ev);
    }
}

void lw_events_subscribe(struct lw_event_sink *sink)
{
    lw_list_push_back(&sinks, &sink->link);
}
void lw_events_unsubscribe(struct lw_event_sink *sink)
{
    lw_list_remove(&sink->link);
}
uint64_t lw_events_next_id(void)
{
    return next_id;
}
void lw_events_init(uint64_t first_id)
{
    next_id = first_id ? first_id : 1;
}

uint64_t lw_events_posted(uint64_t out[LW_EV__COUNT])
{
    uint64_t total = 0;
    for (int t = 0; t < LW_EV__COUNT; t++) {
        if (out)
            out[t] = counts[t];
        total += counts[t];
    }
    return total;
}
