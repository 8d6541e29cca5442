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

#include "base/buf.h"
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

/* Writes the JSON text of an event's `data` member (an object) to b, in the form
 * json_dumps(JSON_COMPACT) would give its jansson tree. 0, or -1 when that tree could not be
 * built or dumped (the event then has no JSON text). Overflow of b is latched in b. */
typedef int (*lw_event_data_writer)(const void *ctx, struct lw_buf *b);

struct lw_event {
    struct xmsg msg; /* transport to the control thread */
    uint64_t id;     /* assigned on the control thread */
    enum lw_event_type type;
    int64_t time_ms;    /* wall clock when it happened */
    char endpoint[128]; /* device endpoint name ("" when not about one device) */
    /* Event-specific fields (owned). Never NULL after lw_event_new; NULL in an event whose data
     * is written by write_data (lw_event_init_written): sinks then use lw_event_data_json. */
    json_t *data;
    /* When set, the data member's text comes from write_data(write_ctx, ..) instead of `data`;
     * free_ctx (NULL: the context is borrowed) releases write_ctx with the event. */
    lw_event_data_writer write_data;
    void *write_ctx;
    void (*free_ctx)(void *ctx);
    /* Compact JSON text of the event (lw_event_json), built on first use on the control thread
     * and shared by every sink; owned and freed with the event, except in an event delivered
     * with lw_events_deliver, where it lives in a buffer the bus reuses for the next one. */
    char *json;
    size_t json_len, data_off, data_len;
    bool json_failed, json_scratch;
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

/* Initialises a caller-owned event (typically on the stack of control-thread code) whose data
 * member is written by write(ctx, ..), borrowing ctx; endpoint (len bytes, NULL for none) is
 * truncated to 127 bytes as in lw_event_new; time = now. Deliver it with lw_events_deliver. */
void lw_event_init_written(struct lw_event *ev, enum lw_event_type type, const char *endpoint,
                           size_t len, lw_event_data_writer write, void *ctx);
/* Delivers ev to every sink now (control thread only, outside on_event), borrowing it: this
 * saves the allocations of a posted event for events that already reached the control thread
 * (the registration snapshots). The event's JSON text is released; the event is not freed. */
void lw_events_deliver(struct lw_event *ev);

/* Takes ownership. Drops (and frees) the event when the bus is stopped; counts drops. */
void lw_events_post(struct lw_event *ev);

/* ---- the JSON writer of events -----------------------------------------------------------------
 * jansson builds a tree of allocated nodes and dumps it through generic machinery; at tens of
 * thousands of registration events per second that was most of the control thread's time, so
 * the hot event shapes are written directly with these. Their output is byte for byte what
 * json_dumps(JSON_COMPACT) (jansson 2.14) writes for the same value: the tests and the
 * server_event_json fuzz target compare them. Overflow of b is latched in b (lw_buf_status).
 */
/* Appends s (len bytes, NUL bytes allowed) as a JSON string: `"` and `\` escaped, control
 * characters as \b \f \n \r \t or \u00XX, valid UTF-8 copied as is (RFC 8259 section 7).
 * 0, or -1 with nothing appended when s is not valid UTF-8 (RFC 3629: no overlong forms,
 * surrogates or code points above U+10FFFF), which jansson refuses as a string. */
int lw_json_put_str(struct lw_buf *b, const char *s, size_t len);
/* lw_json_put_str into d, which has room for 6 * len + 2 bytes: the bytes written, or 0 when s
 * is not valid UTF-8. */
size_t lw_json_str_to(uint8_t *d, const char *s, size_t len);
/* Append an integer in decimal. */
void lw_json_put_int(struct lw_buf *b, int64_t v);
void lw_json_put_uint(struct lw_buf *b, uint64_t v);
/* Copies JSON text that is valid and compact into b, with every character outside ASCII in
 * strings written as \uXXXX (surrogate pairs above U+FFFF), as JSON_ENSURE_ASCII would have
 * written it. The text must come from these writers or jansson (valid UTF-8); 0 or -1. */
int lw_json_put_ascii(struct lw_buf *b, const char *text, size_t len);
/* UTC calendar fields of a Unix time (year, month 1-12, day 1-31, hour, minute, second) by
 * arithmetic, as gmtime_r gives them (gmtime_r goes through the time zone code and its lock on
 * every call). false (f untouched) outside years 1970..9999: use gmtime_r there. */
bool lw_utc_fields(int64_t unix_s, unsigned f[6]);

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
