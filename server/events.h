/* server/events.h - the event bus. Every state change (registered, updated, deregistered,
 * expired, notification, send, operation result, ...) is one struct lw_event, posted from
 * whichever thread saw it and fanned out on the control thread, in posting order per thread,
 * to every subscribed sink (SSE ring, webhooks, store). The bus assigns ids: monotonically
 * increasing across the process (SSE `id:` and Last-Event-ID).
 *
 * Ownership: lw_events_post takes the event; sinks borrow it during on_event only (copy or
 * json_incref what they keep). `data` is a jansson object owned by the event.
 * Threads: lw_event_new/lw_events_post from any thread; everything else on the control thread.
 */
#ifndef LW_SERVER_EVENTS_H
#define LW_SERVER_EVENTS_H

#include "base/list.h"
#include "shard.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum lw_event_type {
    LW_EV_REGISTERED,
    LW_EV_UPDATED,
    LW_EV_DEREGISTERED,
    LW_EV_EXPIRED,
    LW_EV_NOTIFICATION,
    LW_EV_SEND,
    LW_EV_OPERATION,
    LW_EV__COUNT
};

struct lw_event {
    struct xmsg msg; /* transport to the control thread */
    uint64_t id;     /* assigned on the control thread */
    enum lw_event_type type;
    int64_t time_ms;    /* wall clock when it happened */
    char endpoint[128]; /* device endpoint name ("" when not about one device) */
    json_t *data;       /* event-specific fields (owned); never NULL after lw_event_new */
    /* Compact JSON text of the event (lw_event_json), built on first use on the control thread
     * and shared by every sink; owned, freed with the event. */
    char *json;
    size_t json_len, data_off, data_len;
    bool json_failed;
};

/* "registered", "updated", ... (the SSE event names and webhook types). */
const char *lw_event_type_name(enum lw_event_type t);
/* -1 when unknown. */
int lw_event_type_parse(const char *s, size_t len);

/* Returns a new event with an empty data object, time = now; NULL on OOM. */
struct lw_event *lw_event_new(enum lw_event_type type, const char *endpoint);
void lw_event_free(struct lw_event *ev);
/* The event as the API shows it, serialised once and shared by the SSE ring, webhooks and the
 * store: `{"id":..,"type":"..","time":"<RFC 3339 UTC, ms>","endpoint":"..","data":{..}}`, byte
 * for byte what json_dumps(JSON_COMPACT) writes for that object (jansson 2.14 key order and
 * escapes). Borrowed: valid until the event is freed. NULL (every later call too) when the
 * endpoint or data cannot be serialised or memory runs out. Control thread only, after the
 * bus assigned the id (inside on_event); *len gets the length (no NUL counted). */
const char *lw_event_json(const struct lw_event *ev, size_t *len);
/* The `data` member of lw_event_json (a slice of it, not NUL-terminated); NULL as above. */
const char *lw_event_data_json(const struct lw_event *ev, size_t *len);

/* Takes ownership. Drops (and frees) the event when the bus is stopped; counts drops. */
void lw_events_post(struct lw_event *ev);

struct lw_event_sink {
    struct lw_list link;
    void (*on_event)(void *ctx, const struct lw_event *ev);
    void *ctx;
};
void lw_events_subscribe(struct lw_event_sink *sink);
void lw_events_unsubscribe(struct lw_event_sink *sink);
/* The id the next event will get (ids start at `first_id`, set at start from persistence). */
uint64_t lw_events_next_id(void);
void lw_events_init(uint64_t first_id);
/* Counters for /metrics. */
uint64_t lw_events_posted(uint64_t counts[LW_EV__COUNT]);

#endif
