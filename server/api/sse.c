/* server/api/sse.c - GET /api/v1/events: Server-Sent Events fed from the event bus. Every event
 * is serialised once into a bounded ring (api.sse_ring entries) so that a client reconnecting with
 * Last-Event-ID gets what it missed; filters endpoint= (exact name) and types= (comma list);
 * heartbeat comments every api.sse_heartbeat; a client that lets more than api.sse_max_backlog
 * bytes pile up is disconnected (it resumes with Last-Event-ID). */
#include "api_int.h"

#include "base/err.h"
#include "base/util.h"
#include "control.h"
#include "log.h"
#include "store/telemetry.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

struct ring_ev {
    uint64_t id;
    enum lw_event_type type;
    char endpoint[128];
    char *frame;     /* complete SSE frame (owned) */
    size_t len, cap; /* cap: bytes allocated for frame */
};

static struct {
    struct ring_ev *ring;
    size_t cap, head, count; /* head: index of the oldest */
    struct lw_event_sink sink;
    uv_timer_t heartbeat;
    bool started;
    uint64_t clients_dropped;
} sse;

void api_sse_format(struct lw_buf *out, uint64_t id, const char *type, const char *data)
{
    lw_buf_printf(out, "id: %llu\nevent: %s\ndata: %s\n\n", (unsigned long long)id, type, data);
}

static void rfc3339(char *out, size_t cap, int64_t ms)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, cap - n, ".%03dZ", (int)(ms % 1000));
}

json_t *api_event_json(const struct lw_event *ev)
{
    char ts[40];
    rfc3339(ts, sizeof(ts), ev->time_ms);
    return json_pack("{s:I, s:s, s:s, s:s, s:O}", "id", (json_int_t)ev->id, "type",
                     lw_event_type_name(ev->type), "time", ts, "endpoint", ev->endpoint, "data",
                     ev->data);
}

static bool wants(const struct api_conn *c, enum lw_event_type type, const char *endpoint)
{
    if (!(c->sse_types & (1u << type)))
        return false;
    return !c->sse_endpoint[0] || strcmp(c->sse_endpoint, endpoint) == 0;
}

static void send_frame(struct api_conn *c, const char *frame, size_t len)
{
    if (c->dead || !c->sse || !lw_list_empty(&c->queue))
        return;
    c->ops->write(c, (const uint8_t *)frame, len);
    if (api_conn_backlog(c) > api_set.sse_max_backlog) {
        log_warn_rl(API, "sse client too slow, disconnecting: backlog=%zu", api_conn_backlog(c));
        sse.clients_dropped++;
        c->sse = false;
        c->ops->close(c);
    }
}

struct fan {
    const struct ring_ev *e;
};

static void fan_one(struct api_conn *c, void *arg)
{
    const struct ring_ev *e = ((struct fan *)arg)->e;
    if (c->sse && !c->sse_resuming && wants(c, e->type, e->endpoint) && e->id > c->sse_last_id) {
        send_frame(c, e->frame, e->len);
        c->sse_last_id = e->id;
    }
}

static void on_event(void *ctx, const struct lw_event *ev)
{
    (void)ctx;
    size_t len;
    const char *data = lw_event_json(ev, &len); /* shared with the other sinks */
    if (!data)
        return;
    /* api_sse_format, without printf over the whole text. Once the ring is full, the frame
     * leaving it lends its memory to the new one when that fits without wasting much (frames
     * of one kind of event are about the same size): no malloc/free pair per event. */
    const char *name = lw_event_type_name(ev->type);
    size_t need = len + 64; /* "id: " 20 digits "\nevent: " name "\ndata: " text "\n\n" NUL */
    char *reuse = NULL;
    size_t rcap = 0;
    if (sse.count == sse.cap) {
        struct ring_ev *old = &sse.ring[sse.head];
        reuse = old->frame;
        rcap = old->cap;
        old->frame = NULL;
        sse.head = (sse.head + 1) % sse.cap;
        sse.count--;
    }
    struct lw_buf b;
    if (reuse && rcap >= need && rcap <= 2 * need + 256) {
        lw_buf_init_fixed(&b, reuse, rcap);
    } else {
        free(reuse);
        reuse = NULL;
        lw_buf_init(&b, (need + 127) & ~(size_t)63); /* room for a few more digits next time */
    }
    lw_buf_put(&b, "id: ", 4);
    lw_json_put_uint(&b, ev->id);
    lw_buf_put(&b, "\nevent: ", 8);
    lw_buf_put_str(&b, name);
    lw_buf_put(&b, "\ndata: ", 7);
    lw_buf_put(&b, data, len);
    lw_buf_put(&b, "\n\n", 3); /* with a NUL, as lw_buf_printf leaves one */
    b.len--;
    if (lw_buf_status(&b)) {
        if (reuse)
            free(reuse);
        else
            lw_buf_deinit(&b);
        return;
    }
    struct ring_ev *e = &sse.ring[(sse.head + sse.count) % sse.cap];
    sse.count++;
    e->id = ev->id;
    e->type = ev->type;
    size_t elen = strnlen(ev->endpoint, LW_MIN(sizeof(e->endpoint), sizeof(ev->endpoint)) - 1);
    memcpy(e->endpoint, ev->endpoint, elen); /* what snprintf("%s") kept, without printf */
    e->endpoint[elen] = 0;
    e->frame = (char *)b.data; /* takes the buffer */
    e->len = b.len;
    e->cap = b.cap;
    struct fan f = {e};
    api_conn_each(fan_one, &f);
}

static void hb_one(struct api_conn *c, void *arg)
{
    (void)arg;
    if (c->sse)
        send_frame(c, ": heartbeat\n\n", 13);
}

static void on_heartbeat(uv_timer_t *t)
{
    (void)t;
    api_conn_each(hb_one, NULL);
}

int api_sse_start(void)
{
    sse.cap = api_set.sse_ring ? api_set.sse_ring : 10000;
    sse.ring = calloc(sse.cap, sizeof(*sse.ring));
    if (!sse.ring)
        return LW_ENOMEM;
    sse.head = sse.count = 0;
    sse.sink.on_event = on_event;
    sse.sink.ctx = NULL;
    lw_events_subscribe(&sse.sink);
    uv_timer_init(lw_control_loop(), &sse.heartbeat);
    uv_timer_start(&sse.heartbeat, on_heartbeat, api_set.sse_heartbeat_ms,
                   api_set.sse_heartbeat_ms);
    sse.started = true;
    return 0;
}

void api_sse_stop(void)
{
    if (!sse.started)
        return;
    sse.started = false;
    lw_events_unsubscribe(&sse.sink);
    uv_timer_stop(&sse.heartbeat);
    uv_close((uv_handle_t *)&sse.heartbeat, NULL);
    for (size_t i = 0; i < sse.count; i++)
        free(sse.ring[(sse.head + i) % sse.cap].frame);
    free(sse.ring);
    sse.ring = NULL;
    sse.count = sse.cap = 0;
}

void api_sse_metrics(struct lw_buf *out)
{
    lw_buf_printf(out,
                  "# HELP lwm2md_sse_ring_events Events kept for Last-Event-ID resumption.\n"
                  "# TYPE lwm2md_sse_ring_events gauge\nlwm2md_sse_ring_events %zu\n"
                  "# HELP lwm2md_sse_clients_dropped_total Event stream clients disconnected for "
                  "not reading.\n# TYPE lwm2md_sse_clients_dropped_total counter\n"
                  "lwm2md_sse_clients_dropped_total %llu\n",
                  sse.count, (unsigned long long)sse.clients_dropped);
}

void api_sse_detach(struct api_conn *c)
{
    c->sse = false;
}

/* ---- resume from the database -----------------------------------------------------------------
 */

#define RESUME_PAGE 5000u

struct resume {
    uint64_t conn;   /* connection id (the connection may be gone when rows arrive) */
    uint64_t before; /* upper bound (exclusive) of the query */
};

static void on_resume_rows(void *ctx, int status, json_t *rows);

static void resume_query(struct api_conn *c, uint64_t after, uint64_t before)
{
    struct resume *q = malloc(sizeof(*q));
    if (!q) {
        c->sse_resuming = false;
        return;
    }
    q->conn = c->id;
    q->before = before;
    if (lw_telemetry_events(after, before, RESUME_PAGE, on_resume_rows, q) != 0) {
        free(q);
        c->sse_resuming = false;
    }
}

/* Sends the ring's events after the ones read from the database; live events flow again. */
static void resume_finish(struct api_conn *c)
{
    uint64_t oldest = sse.count ? sse.ring[sse.head].id : lw_events_next_id();
    if (oldest > c->sse_last_id + 1) {
        char note[96];
        int n = snprintf(note, sizeof(note), ": events %llu..%llu are no longer available\n\n",
                         (unsigned long long)c->sse_last_id + 1, (unsigned long long)oldest - 1);
        send_frame(c, note, (size_t)n);
    }
    c->sse_resuming = false;
    for (size_t i = 0; i < sse.count && c->sse; i++) {
        const struct ring_ev *e = &sse.ring[(sse.head + i) % sse.cap];
        if (e->id <= c->sse_last_id)
            continue;
        if (wants(c, e->type, e->endpoint))
            send_frame(c, e->frame, e->len);
        c->sse_last_id = e->id;
    }
}

static void on_resume_rows(void *ctx, int status, json_t *rows)
{
    struct resume *q = ctx;
    struct api_conn *c = api_conn_lookup(q->conn);
    uint64_t before = q->before;
    free(q);
    if (!c || !c->sse || c->dead || !sse.started) {
        json_decref(rows);
        return;
    }
    size_t i, n = status == 200 ? json_array_size(rows) : 0;
    json_t *row;
    json_array_foreach(rows, i, row)
    {
        uint64_t id = (uint64_t)json_integer_value(json_object_get(row, "id"));
        const char *type = json_string_value(json_object_get(row, "type"));
        const char *ep = json_string_value(json_object_get(row, "endpoint"));
        int t = type ? lw_event_type_parse(type, strlen(type)) : -1;
        if (id <= c->sse_last_id)
            continue;
        c->sse_last_id = id;
        if (t < 0 || !wants(c, (enum lw_event_type)t, ep ? ep : ""))
            continue;
        char ts[40];
        rfc3339(ts, sizeof(ts), json_integer_value(json_object_get(row, "time_ms")));
        json_t *j =
            json_pack("{s:I, s:s, s:s, s:s, s:O}", "id", (json_int_t)id, "type", type, "time", ts,
                      "endpoint", ep ? ep : "", "data", json_object_get(row, "data"));
        char *data = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        if (!data)
            continue;
        struct lw_buf b;
        lw_buf_init(&b, strlen(data) + 64);
        api_sse_format(&b, id, type, data);
        free(data);
        if (!lw_buf_status(&b))
            send_frame(c, (const char *)b.data, b.len);
        lw_buf_deinit(&b);
        if (!c->sse)
            break; /* too slow: disconnected */
    }
    json_decref(rows);
    if (!c->sse)
        return;
    if (n == RESUME_PAGE) {
        resume_query(c, c->sse_last_id, before);
        return;
    }
    /* the ring may have moved on while the database answered */
    uint64_t oldest = sse.count ? sse.ring[sse.head].id : lw_events_next_id();
    if (status == 200 && oldest > before && oldest > c->sse_last_id + 1) {
        resume_query(c, LW_MAX(c->sse_last_id, before - 1), oldest);
        return;
    }
    resume_finish(c);
}

static bool parse_types(const char *s, uint32_t *mask)
{
    *mask = 0;
    while (*s) {
        size_t n = strcspn(s, ",");
        int t = lw_event_type_parse(s, n);
        if (t < 0)
            return false;
        *mask |= 1u << t;
        s += n;
        if (*s == ',')
            s++;
    }
    return *mask != 0;
}

void api_sse_open(struct api_req *r, const char *query)
{
    struct api_conn *c = r->conn;
    char types[256], ep[128], last[32];
    uint32_t mask = (1u << LW_EV__COUNT) - 1;
    int rc = api_query_get(query, "types", types, sizeof(types));
    if (rc < 0 || (rc > 0 && !parse_types(types, &mask))) {
        api_problem(r, 400, "invalid-parameter",
                    "types must be a comma-separated list of event types (registered, updated, "
                    "deregistered, expired, notification, send, operation)");
        return;
    }
    rc = api_query_get(query, "endpoint", ep, sizeof(ep));
    if (rc < 0) {
        api_problem(r, 400, "invalid-parameter", "malformed endpoint");
        return;
    }
    if (rc == 0)
        ep[0] = '\0';
    uint64_t after = 0;
    const char *lid = r->last_event_id;
    if (!*lid && api_query_get(query, "last_event_id", last, sizeof(last)) > 0)
        lid = last;
    if (*lid && lw_parse_u64(lid, strlen(lid), &after)) {
        api_problem(r, 400, "invalid-parameter", "Last-Event-ID must be an event id");
        return;
    }
    if (!sse.started) {
        api_problem(r, 503, "unavailable", "the event stream is not running");
        return;
    }
    c->sse_types = mask;
    snprintf(c->sse_endpoint, sizeof(c->sse_endpoint), "%s", ep);
    c->sse = true;
    c->closing = true; /* no further requests on this connection */
    r->stream = true;
    r->keep_alive = true;
    r->status = 200;
    lw_buf_reset(&r->resp);
    lw_buf_put_str(&r->resp, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                             "Cache-Control: no-store\r\nX-Accel-Buffering: no\r\n"
                             "Connection: keep-alive\r\n\r\nretry: 2000\n\n");
    uint64_t last_id = after;
    uint64_t oldest = sse.count ? sse.ring[sse.head].id : lw_events_next_id();
    if (*lid && oldest > after + 1 && lw_telemetry_running()) {
        /* older than the ring: read them from the events table first (resume_more) */
        c->sse_resuming = true;
        c->sse_last_id = after;
        api_req_finish(r);
        resume_query(c, after, oldest);
        return;
    }
    if (*lid && sse.count && sse.ring[sse.head].id > after + 1)
        lw_buf_printf(&r->resp, ": events %llu..%llu are no longer available\n\n",
                      (unsigned long long)after + 1, (unsigned long long)sse.ring[sse.head].id - 1);
    for (size_t i = 0; *lid && i < sse.count; i++) {
        const struct ring_ev *e = &sse.ring[(sse.head + i) % sse.cap];
        if (e->id <= after || !wants(c, e->type, e->endpoint))
            continue;
        lw_buf_put(&r->resp, e->frame, e->len);
        last_id = e->id;
    }
    if (!*lid && sse.count)
        last_id = sse.ring[(sse.head + sse.count - 1) % sse.cap].id;
    c->sse_last_id = last_id;
    if (lw_buf_status(&r->resp)) {
        c->sse = false;
        r->stream = false;
        api_problem(r, 500, "internal", "out of memory");
        return;
    }
    api_req_finish(r);
}
