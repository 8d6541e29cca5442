#include "events.h"

#include "base/buf.h"
#include "base/clock.h"
#include "base/util.h"
#include "control.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    free(ev->json);
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

/* ---- one serialisation per event ----------------------------------------------------------
 * Every sink (SSE ring, webhooks, store) needs the event as compact JSON; it is written here
 * once per event. jansson's json_dumps spends most of its time in generic machinery (key
 * iteration, snprintf per number, a growing strbuffer), so the common shapes are written
 * directly: ASCII strings with jansson's escapes, integers, true/false/null, objects in
 * jansson's (insertion) order, arrays. Anything else (reals, non-ASCII strings whose UTF-8
 * jansson checks, very deep nesting) is handed to json_dumps for that value, so the text stays
 * byte-identical to json_dumps(JSON_COMPACT). */

#define EV_JSON_MAX_DEPTH 64

static void put_u64(struct lw_buf *b, uint64_t v)
{
    char t[24];
    size_t n = sizeof(t);
    do {
        t[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    lw_buf_put(b, t + n, sizeof(t) - n);
}

static void put_int(struct lw_buf *b, json_int_t x)
{
    if (x < 0) {
        lw_buf_put_u8(b, '-');
        put_u64(b, (uint64_t)0 - (uint64_t)x);
    } else {
        put_u64(b, (uint64_t)x);
    }
}

/* Appends json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT). 0 or -1. */
static int put_jansson(struct lw_buf *b, const json_t *v)
{
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (!s)
        return -1;
    lw_buf_put_str(b, s);
    free(s);
    return 0;
}

/* One byte, without a call while there is room. */
static inline void put_c(struct lw_buf *b, char c)
{
    if (b->len < b->cap && !b->overflow)
        b->data[b->len++] = (uint8_t)c;
    else
        lw_buf_put_u8(b, (uint8_t)c);
}

/* Appends s (len bytes) as a JSON string as jansson writes it. 0 or -1 (jansson refuses it). */
static int put_str(struct lw_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    if (len > (SIZE_MAX - 2) / 6)
        return -1;
    uint8_t *d = lw_buf_reserve(b, 6 * len + 2); /* every byte escaped, and the quotes */
    if (!d)
        return 0; /* overflow latched in b */
    size_t n = 0;
    d[n++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            d[n++] = c;
            continue;
        }
        if (c >= 0x80) { /* UTF-8: let jansson check and write it */
            json_t *j = json_stringn(s, len);
            int rc = j ? put_jansson(b, j) : -1;
            json_decref(j);
            return rc;
        }
        d[n++] = '\\';
        switch (c) {
        case '"': d[n++] = '"'; break;
        case '\\': d[n++] = '\\'; break;
        case '\b': d[n++] = 'b'; break;
        case '\f': d[n++] = 'f'; break;
        case '\n': d[n++] = 'n'; break;
        case '\r': d[n++] = 'r'; break;
        case '\t': d[n++] = 't'; break;
        default:
            d[n++] = 'u';
            d[n++] = '0';
            d[n++] = '0';
            d[n++] = (uint8_t)hex[c >> 4];
            d[n++] = (uint8_t)hex[c & 15];
        }
    }
    d[n++] = '"';
    lw_buf_commit(b, n);
    return 0;
}

static int put_value(struct lw_buf *b, const json_t *v, unsigned depth)
{
    if (depth > EV_JSON_MAX_DEPTH)
        return put_jansson(b, v);
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        put_c(b, '{');
        bool first = true;
        for (void *it = json_object_iter((json_t *)v); it;
             it = json_object_iter_next((json_t *)v, it)) {
            if (!first)
                put_c(b, ',');
            first = false;
            if (put_str(b, json_object_iter_key(it), json_object_iter_key_len(it)) != 0)
                return -1;
            put_c(b, ':');
            if (put_value(b, json_object_iter_value(it), depth + 1) != 0)
                return -1;
        }
        put_c(b, '}');
        return 0;
    }
    case JSON_ARRAY: {
        put_c(b, '[');
        for (size_t i = 0, n = json_array_size(v); i < n; i++) {
            if (i)
                put_c(b, ',');
            if (put_value(b, json_array_get(v, i), depth + 1) != 0)
                return -1;
        }
        put_c(b, ']');
        return 0;
    }
    case JSON_STRING: return put_str(b, json_string_value(v), json_string_length(v));
    case JSON_INTEGER: put_int(b, json_integer_value(v)); return 0;
    case JSON_TRUE: lw_buf_put(b, "true", 4); return 0;
    case JSON_FALSE: lw_buf_put(b, "false", 5); return 0;
    case JSON_NULL: lw_buf_put(b, "null", 4); return 0;
    default: return put_jansson(b, v); /* reals */
    }
}

/* "2026-11-22T04:05:29.123Z" as the API writes times (UTC, milliseconds). */
static void put_time(struct lw_buf *b, int64_t ms)
{
    char ts[40];
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof(ts) - n, ".%03dZ", (int)(ms % 1000));
    lw_buf_put_str(b, ts);
}

static void build_json(struct lw_event *ev)
{
    struct lw_buf b;
    const char *name = lw_event_type_name(ev->type);
    lw_buf_init(&b, 256);
    lw_buf_put_str(&b, "{\"id\":");
    put_int(&b, (json_int_t)ev->id); /* signed, as jansson's json_integer */
    lw_buf_put_str(&b, ",\"type\":");
    int rc = put_str(&b, name, strlen(name));
    lw_buf_put_str(&b, ",\"time\":\"");
    put_time(&b, ev->time_ms);
    lw_buf_put_str(&b, "\",\"endpoint\":");
    if (rc == 0)
        rc = put_str(&b, ev->endpoint, strnlen(ev->endpoint, sizeof(ev->endpoint)));
    lw_buf_put_str(&b, ",\"data\":");
    size_t off = b.len;
    if (rc == 0)
        rc = put_value(&b, ev->data, 0);
    size_t end = b.len;
    lw_buf_put(&b, "}", 2); /* with a NUL, so that the text is also a C string */
    if (rc != 0 || lw_buf_status(&b) != 0) {
        lw_buf_deinit(&b);
        ev->json_failed = true;
        return;
    }
    ev->json = (char *)b.data; /* takes the buffer */
    ev->json_len = end + 1;
    ev->data_off = off;
    ev->data_len = end - off;
}

const char *lw_event_json(const struct lw_event *cev, size_t *len)
{
    /* The cache is filled in place: events are heap objects (lw_event_new), and sinks see them
     * const only so that they do not change what the next sink sees. */
    struct lw_event *ev = (struct lw_event *)cev;
    if (!ev->json && !ev->json_failed)
        build_json(ev);
    if (!ev->json)
        return NULL;
    *len = ev->json_len;
    return ev->json;
}

const char *lw_event_data_json(const struct lw_event *ev, size_t *len)
{
    size_t n;
    if (!lw_event_json(ev, &n))
        return NULL;
    *len = ev->data_len;
    return ev->json + ev->data_off;
}
