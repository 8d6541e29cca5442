/* Fuzz target: the event JSON writer (server/events.h) against jansson, for the strings it takes
 * from devices (endpoint names, sms numbers, profile ids) and the text it derives. The input is
 * used whole as a string: lw_json_put_str must refuse exactly what json_stringn refuses and
 * otherwise write what json_dumps(JSON_COMPACT) writes; lw_json_put_ascii of that text must give
 * what JSON_ENSURE_ASCII gives. The first 8 bytes are also a Unix time for lw_utc_fields against
 * gmtime_r, and the input is an endpoint of a written event delivered through the bus. Any
 * difference aborts. */
#include "events.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int write_empty(const void *ctx, struct lw_buf *b)
{
    (void)ctx;
    lw_buf_put(b, "{}", 2);
    return 0;
}

static void check_event(void *ctx, const struct lw_event *ev)
{
    (void)ctx;
    size_t len = 0, dlen = 0;
    const char *t = lw_event_json(ev, &len);
    json_t *s = json_stringn(ev->endpoint, strlen(ev->endpoint));
    if (!t != !s)
        abort(); /* text exactly when jansson takes the (truncated) endpoint */
    if (t) {
        const char *d = lw_event_data_json(ev, &dlen);
        if (!d || dlen != 2 || memcmp(d, "{}", 2) != 0 || strlen(t) != len)
            abort();
    }
    json_decref(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct lw_event_sink sink = {.on_event = check_event};
    static int subscribed;
    if (size > 4096)
        return 0;
    const char *s = (const char *)data;
    json_t *j = json_stringn(s, size);
    char *want = j ? json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    struct lw_buf b;
    lw_buf_init(&b, 0);
    int rc = lw_json_put_str(&b, s, size);
    if (lw_buf_status(&b) != 0) {
        lw_buf_deinit(&b);
        free(want);
        json_decref(j);
        return 0; /* out of memory: nothing to compare */
    }
    if (!j) {
        if (rc != -1 || b.len != 0)
            abort();
    } else if (want) {
        if (rc != 0 || b.len != strlen(want) || memcmp(b.data, want, b.len) != 0)
            abort();
        char *ascii = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT | JSON_ENSURE_ASCII);
        struct lw_buf a;
        lw_buf_init(&a, 0);
        if (ascii && (lw_json_put_ascii(&a, (const char *)b.data, b.len) != 0 ||
                      (lw_buf_status(&a) == 0 &&
                       (a.len != strlen(ascii) || memcmp(a.data, ascii, a.len) != 0))))
            abort();
        lw_buf_deinit(&a);
        free(ascii);
    }
    lw_buf_deinit(&b);
    free(want);
    json_decref(j);

    if (size >= 8) {
        int64_t t;
        memcpy(&t, data, 8);
        unsigned f[6];
        time_t tt = (time_t)t;
        struct tm tm;
        if (lw_utc_fields(t, f)) {
            if (!gmtime_r(&tt, &tm) || f[0] != (unsigned)tm.tm_year + 1900 ||
                f[1] != (unsigned)tm.tm_mon + 1 || f[2] != (unsigned)tm.tm_mday ||
                f[3] != (unsigned)tm.tm_hour || f[4] != (unsigned)tm.tm_min ||
                f[5] != (unsigned)tm.tm_sec)
                abort();
        } else if (t >= 0 && t < INT64_C(253402300800)) {
            abort();
        }
    }

    if (!subscribed) {
        lw_events_subscribe(&sink);
        subscribed = 1;
    }
    struct lw_event ev;
    lw_event_init_written(&ev, LW_EV_UPDATED, s, size, write_empty, NULL);
    lw_events_deliver(&ev);
    return 0;
}
