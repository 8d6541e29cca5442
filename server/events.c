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

static void release_json(struct lw_event *ev);

static void fan_out(struct lw_event *ev)
{
    ev->id = next_id++;
    counts[ev->type]++;
    lw_list_foreach_safe (it, &sinks) {
        struct lw_event_sink *sink = lw_container_of(it, struct lw_event_sink, link);
        sink->on_event(sink->ctx, ev);
    }
}

static void deliver(struct shard *s, struct xmsg *m)
{
    (void)s;
    struct lw_event *ev = lw_container_of(m, struct lw_event, msg);
    fan_out(ev);
    lw_event_free(ev);
}

void lw_events_deliver(struct lw_event *ev)
{
    ev->json_scratch = true; /* its text goes to the reused buffer */
    fan_out(ev);
    release_json(ev);
}

/* The endpoint member: at most 127 bytes, NUL-terminated (what snprintf("%s") kept). */
static void set_endpoint(struct lw_event *ev, const char *endpoint, size_t len)
{
    len = strnlen(endpoint, LW_MIN(len, sizeof(ev->endpoint) - 1));
    memcpy(ev->endpoint, endpoint, len);
    ev->endpoint[len] = 0;
}

void lw_event_init_written(struct lw_event *ev, enum lw_event_type type, const char *endpoint,
                           size_t len, lw_event_data_writer write, void *ctx)
{
    ev->msg.run = deliver;
    ev->id = 0;
    ev->type = type;
    ev->time_ms = lw_wall_ms();
    set_endpoint(ev, endpoint ? endpoint : "", endpoint ? len : 0);
    ev->data = NULL;
    ev->write_data = write;
    ev->write_ctx = ctx;
    ev->free_ctx = NULL;
    ev->json = NULL;
    ev->json_len = ev->data_off = ev->data_len = 0;
    ev->json_failed = ev->json_scratch = false;
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
        set_endpoint(ev, endpoint, strlen(endpoint));
    return ev;
}

void lw_event_free(struct lw_event *ev)
{
    if (!ev)
        return;
    json_decref(ev->data);
    if (ev->free_ctx)
        ev->free_ctx(ev->write_ctx);
    release_json(ev);
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
 * iteration, snprintf per number, a growing strbuffer), and building its tree costs as much
 * again, so registration events write their data directly (lw_event_init_written) and jansson
 * trees are walked here: strings with jansson's escapes, integers, true/false/null, objects in
 * jansson's (insertion) order, arrays. Reals and very deep nesting are handed to json_dumps for
 * that value, so the text stays byte-identical to json_dumps(JSON_COMPACT). */

#define EV_JSON_MAX_DEPTH 64

void lw_json_put_uint(struct lw_buf *b, uint64_t v)
{
    char t[24];
    size_t n = sizeof(t);
    do {
        t[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    lw_buf_put(b, t + n, sizeof(t) - n);
}

void lw_json_put_int(struct lw_buf *b, int64_t x)
{
    if (x < 0) {
        lw_buf_put_u8(b, '-');
        lw_json_put_uint(b, (uint64_t)0 - (uint64_t)x);
    } else {
        lw_json_put_uint(b, (uint64_t)x);
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

/* Length of the UTF-8 sequence at s[0..n) (n >= 1, s[0] >= 0x80) with its code point in *cp,
 * or 0 when it is not a valid one (RFC 3629 section 4: no continuation byte first, no overlong
 * form, no surrogate, nothing above U+10FFFF). */
static size_t utf8_seq(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned c = s[0];
    size_t k;
    uint32_t v, min;
    if (c >= 0xc2 && c <= 0xdf) {
        k = 2, v = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        k = 3, v = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        k = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < k)
        return 0;
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return k;
}

static const char hexd[] = "0123456789ABCDEF";

static size_t put_u_esc(uint8_t *d, uint32_t u)
{
    d[0] = '\\';
    d[1] = 'u';
    d[2] = (uint8_t)hexd[(u >> 12) & 15];
    d[3] = (uint8_t)hexd[(u >> 8) & 15];
    d[4] = (uint8_t)hexd[(u >> 4) & 15];
    d[5] = (uint8_t)hexd[u & 15];
    return 6;
}

/* Bytes written as they are inside a JSON string: printable ASCII and DEL, but `"` and `\\`. */
#define P8(x) x, x, x, x, x, x, x, x
static const bool plain[256] = {
    P8(0), P8(0), P8(0), P8(0),                     /* 0x00 - 0x1f: control characters */
    1,     1,     0,     1,     1,     1,     1, 1, /* 0x20 - 0x27: '"' is 0x22 */
    P8(1), P8(1), P8(1), P8(1), P8(1), P8(1),       /* 0x28 - 0x57 */
    1,     1,     1,     1,     0,     1,     1, 1, /* 0x58 - 0x5f: '\\' is 0x5c */
    P8(1), P8(1), P8(1), P8(1),                     /* 0x60 - 0x7f */
};
#undef P8

size_t lw_json_str_to(uint8_t *d, const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t n = 0;
    d[n++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = s[i];
        if (plain[c]) {
            d[n++] = c;
            continue;
        }
        if (c >= 0x80) { /* valid UTF-8 is copied, anything else refused as jansson does */
            uint32_t cp;
            size_t k = utf8_seq(s + i, len - i, &cp);
            if (!k)
                return 0;
            memcpy(d + n, s + i, k);
            n += k;
            i += k - 1;
            continue;
        }
        switch (c) {
        case '"': d[n++] = '\\', d[n++] = '"'; break;
        case '\\': d[n++] = '\\', d[n++] = '\\'; break;
        case '\b': d[n++] = '\\', d[n++] = 'b'; break;
        case '\f': d[n++] = '\\', d[n++] = 'f'; break;
        case '\n': d[n++] = '\\', d[n++] = 'n'; break;
        case '\r': d[n++] = '\\', d[n++] = 'r'; break;
        case '\t': d[n++] = '\\', d[n++] = 't'; break;
        default: n += put_u_esc(d + n, c);
        }
    }
    d[n++] = '"';
    return n;
}

int lw_json_put_str(struct lw_buf *b, const char *str, size_t len)
{
    if (len > (SIZE_MAX - 2) / 6)
        return -1;
    uint8_t *d = lw_buf_reserve(b, 6 * len + 2); /* every byte escaped, and the quotes */
    if (!d)
        return 0; /* overflow latched in b */
    size_t n = lw_json_str_to(d, str, len);
    if (!n)
        return -1;
    lw_buf_commit(b, n);
    return 0;
}

int lw_json_put_ascii(struct lw_buf *b, const char *text, size_t len)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && s[j] < 0x80)
            j++;
        lw_buf_put(b, s + i, j - i);
        if (j == len)
            break;
        uint32_t cp;
        size_t k = utf8_seq(s + j, len - j, &cp);
        if (!k)
            return -1;
        uint8_t *d = lw_buf_reserve(b, 12);
        if (!d)
            return 0; /* overflow latched in b */
        size_t n;
        if (cp >= 0x10000) { /* a surrogate pair (RFC 8259 section 7) */
            cp -= 0x10000;
            n = put_u_esc(d, 0xd800 | (cp >> 10));
            n += put_u_esc(d + n, 0xdc00 | (cp & 0x3ff));
        } else {
            n = put_u_esc(d, cp);
        }
        lw_buf_commit(b, n);
        i = j + k;
    }
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
            if (lw_json_put_str(b, json_object_iter_key(it), json_object_iter_key_len(it)) != 0)
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
    case JSON_STRING: return lw_json_put_str(b, json_string_value(v), json_string_length(v));
    case JSON_INTEGER: lw_json_put_int(b, json_integer_value(v)); return 0;
    case JSON_TRUE: lw_buf_put(b, "true", 4); return 0;
    case JSON_FALSE: lw_buf_put(b, "false", 5); return 0;
    case JSON_NULL: lw_buf_put(b, "null", 4); return 0;
    default: return put_jansson(b, v); /* reals */
    }
}

bool lw_utc_fields(int64_t unix_s, unsigned f[6])
{
    if (unix_s < 0 || unix_s >= INT64_C(253402300800)) /* 10000-01-01 */
        return false;
    uint64_t days = (uint64_t)unix_s / 86400, sec = (uint64_t)unix_s % 86400;
    /* Days since 1970-01-01 to a proleptic Gregorian date, counted in 400-year eras that start
     * on March 1st (so that the leap day ends a year) */
    uint64_t z = days + 719468; /* days from 0000-03-01 */
    uint64_t era = z / 146097;
    unsigned doe = (unsigned)(z - era * 146097);                          /* 0..146096 */
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* 0..399 */
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);               /* 0..365 */
    unsigned mp = (5 * doy + 2) / 153;                                    /* 0 = March */
    unsigned m = mp < 10 ? mp + 3 : mp - 9;
    f[0] = (unsigned)(era * 400 + yoe) + (m <= 2);
    f[1] = m;
    f[2] = doy - (153 * mp + 2) / 5 + 1;
    f[3] = (unsigned)(sec / 3600);
    f[4] = (unsigned)(sec / 60 % 60);
    f[5] = (unsigned)(sec % 60);
    return true;
}

static void put_2(uint8_t *d, unsigned v)
{
    d[0] = (uint8_t)('0' + v / 10 % 10);
    d[1] = (uint8_t)('0' + v % 10);
}

/* "2026-11-22T04:05:29.123Z" as the API writes times (UTC, milliseconds): what strftime
 * "%Y-%m-%dT%H:%M:%S" and ".%03dZ" of gmtime_r wrote, by hand (once per event). */
static void put_time(struct lw_buf *b, int64_t ms)
{
    time_t t = (time_t)(ms / 1000);
    int frac = (int)(ms % 1000);
    unsigned f[6];
    if (frac < 0 || !lw_utc_fields((int64_t)t, f)) { /* not a time of this era: as before */
        char ts[64];
        struct tm tm = {0};
        gmtime_r(&t, &tm);
        size_t n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(ts + n, sizeof(ts) - n, ".%03dZ", frac);
        lw_buf_put_str(b, ts);
        return;
    }
    uint8_t *d = lw_buf_reserve(b, 24);
    if (!d)
        return;
    put_2(d, f[0] / 100);
    put_2(d + 2, f[0] % 100);
    d[4] = '-';
    put_2(d + 5, f[1]);
    d[7] = '-';
    put_2(d + 8, f[2]);
    d[10] = 'T';
    put_2(d + 11, f[3]);
    d[13] = ':';
    put_2(d + 14, f[4]);
    d[16] = ':';
    put_2(d + 17, f[5]);
    d[19] = '.';
    d[20] = (uint8_t)('0' + frac / 100);
    put_2(d + 21, (unsigned)frac % 100);
    d[23] = 'Z';
    lw_buf_commit(b, 24);
}

/* The buffer of delivered (borrowed) events' text, reused from one event to the next; control
 * thread only. Given back when an unusually large event made it grow. */
static struct lw_buf scratch;
static bool scratch_busy;
#define SCRATCH_KEEP (64u * 1024)

static void release_json(struct lw_event *ev)
{
    if (ev->json && ev->json_scratch && scratch_busy && ev->json == (char *)scratch.data) {
        scratch_busy = false;
        if (scratch.cap > SCRATCH_KEEP) {
            lw_buf_deinit(&scratch);
            memset(&scratch, 0, sizeof(scratch));
        }
    } else {
        free(ev->json);
    }
    ev->json = NULL;
}

static void build_json(struct lw_event *ev)
{
    struct lw_buf own, *b = &own;
    const char *name = lw_event_type_name(ev->type);
    if (ev->json_scratch && !scratch_busy) {
        if (!scratch.cap)
            lw_buf_init(&scratch, 1024);
        lw_buf_reset(&scratch);
        b = &scratch;
    } else {
        lw_buf_init(&own, 256);
    }
    lw_buf_put(b, "{\"id\":", 6);
    lw_json_put_int(b, (int64_t)ev->id); /* signed, as jansson's json_integer */
    lw_buf_put(b, ",\"type\":", 8);
    int rc = lw_json_put_str(b, name, strlen(name));
    lw_buf_put(b, ",\"time\":\"", 9);
    put_time(b, ev->time_ms);
    lw_buf_put(b, "\",\"endpoint\":", 13);
    if (rc == 0)
        rc = lw_json_put_str(b, ev->endpoint, strnlen(ev->endpoint, sizeof(ev->endpoint)));
    lw_buf_put(b, ",\"data\":", 8);
    size_t off = b->len;
    if (rc == 0)
        rc = ev->write_data ? ev->write_data(ev->write_ctx, b) : put_value(b, ev->data, 0);
    size_t end = b->len;
    lw_buf_put(b, "}", 2); /* with a NUL, so that the text is also a C string */
    if (rc != 0 || lw_buf_status(b) != 0) {
        if (b == &own)
            lw_buf_deinit(&own);
        ev->json_failed = true;
        return;
    }
    if (b == &scratch)
        scratch_busy = true;
    else
        ev->json_scratch = false; /* its own buffer: freed with the event */
    ev->json = (char *)b->data;   /* takes (or, scratch, borrows) the buffer */
    ev->json_len = end + 1;
    ev->data_off = off;
    ev->data_len = end - off;
}

const char *lw_event_json(const struct lw_event *cev, size_t *len)
{
    /* The cache is filled in place: events are heap objects (lw_event_new) or delivered by
     * lw_events_deliver, and sinks see them const only so that they do not change what the
     * next sink sees. */
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
