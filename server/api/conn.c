/* server/api/conn.c - HTTP/1.1 request parsing for one connection (llhttp), independent of the
 * transport: bytes come in through api_conn_feed, responses go out through ops->write in request
 * order (pipelining-safe: a later request answered first waits for the earlier ones). Limits on
 * header bytes, body bytes, requests per connection and queued pipelined requests. */
#include "api_int.h"

#include "base/clock.h"
#include "base/err.h"
#include "base/util.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

enum { H_NONE, H_AUTH, H_LAST_EVENT_ID, H_CONTENT_TYPE };

#define MAX_URL 8192

void api_limits_fill(struct api_limits *l)
{
    if (!l->max_header_bytes)
        l->max_header_bytes = 16 * 1024;
    if (!l->max_body_bytes)
        l->max_body_bytes = 1024 * 1024;
    if (!l->max_requests)
        l->max_requests = 1000;
    if (!l->max_pipeline)
        l->max_pipeline = 16;
    if (!l->header_timeout_ms)
        l->header_timeout_ms = 10000;
    if (!l->idle_timeout_ms)
        l->idle_timeout_ms = 60000;
}

static struct api_conn *conn_of(llhttp_t *p)
{
    return p->data;
}

static void req_free(struct api_req *r)
{
    if (!r)
        return;
    free(r->url);
    json_decref(r->json);
    lw_buf_deinit(&r->body);
    lw_buf_deinit(&r->resp);
    free(r);
}

static struct api_req *req_new(struct api_conn *c)
{
    struct api_req *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->conn = c;
    r->seq = ++c->nreq;
    r->route = -1;
    r->keep_alive = true;
    r->start_ns = lw_mono_ns();
    lw_buf_init(&r->body, 0);
    lw_buf_init(&r->resp, 0);
    return r;
}

/* A parse error: answer it after whatever is queued, then close. */
static void fail_request(struct api_conn *c, int status, const char *slug, const char *detail)
{
    struct api_req *r = c->cur;
    c->cur = NULL;
    if (!r) {
        r = req_new(c);
        if (!r) {
            c->closing = true;
            if (!c->close_sent) {
                c->close_sent = true;
                c->ops->close(c);
            }
            return;
        }
    }
    r->keep_alive = false;
    r->method = HTTP_GET;
    c->closing = true;
    lw_list_push_back(&c->queue, &r->link);
    c->queued++;
    api_problem(r, status, slug, "%s", detail);
}

static int on_message_begin(llhttp_t *p)
{
    struct api_conn *c = conn_of(p);
    if (c->closing)
        return -1;
    c->cur = req_new(c);
    if (!c->cur)
        return -1;
    c->header_bytes = 0;
    c->hname_len = 0;
    c->hname_over = false;
    c->hwhich = H_NONE;
    c->in_header = true;
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    struct api_conn *c = conn_of(p);
    struct api_req *r = c->cur;
    c->header_bytes += len;
    if (r->url_len + len > MAX_URL) {
        c->hwhich = -414;
        return -1;
    }
    char *u = realloc(r->url, r->url_len + len + 1);
    if (!u)
        return -1;
    memcpy(u + r->url_len, at, len);
    r->url_len += len;
    u[r->url_len] = '\0';
    r->url = u;
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct api_conn *c = conn_of(p);
    c->header_bytes += len;
    if (c->header_bytes > c->lim.max_header_bytes) {
        c->hwhich = -431;
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        if (c->hname_len + 1 >= sizeof(c->hname)) {
            c->hname_over = true;
            break;
        }
        c->hname[c->hname_len++] = (char)tolower((unsigned char)at[i]);
    }
    return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
    struct api_conn *c = conn_of(p);
    c->hname[c->hname_len] = '\0';
    c->hwhich = H_NONE;
    if (!c->hname_over) {
        if (strcmp(c->hname, "authorization") == 0)
            c->hwhich = H_AUTH;
        else if (strcmp(c->hname, "last-event-id") == 0)
            c->hwhich = H_LAST_EVENT_ID;
        else if (strcmp(c->hname, "content-type") == 0)
            c->hwhich = H_CONTENT_TYPE;
    }
    c->hname_len = 0;
    c->hname_over = false;
    return 0;
}

static void append_field(char *dst, size_t cap, bool *over, const char *at, size_t len)
{
    size_t have = strlen(dst);
    if (have + len >= cap) {
        if (over)
            *over = true;
        len = have < cap - 1 ? cap - 1 - have : 0;
    }
    memcpy(dst + have, at, len);
    dst[have + len] = '\0';
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct api_conn *c = conn_of(p);
    struct api_req *r = c->cur;
    c->header_bytes += len;
    if (c->header_bytes > c->lim.max_header_bytes) {
        c->hwhich = -431;
        return -1;
    }
    switch (c->hwhich) {
    case H_AUTH: append_field(r->auth, sizeof(r->auth), &r->auth_over, at, len); break;
    case H_LAST_EVENT_ID:
        append_field(r->last_event_id, sizeof(r->last_event_id), NULL, at, len);
        break;
    case H_CONTENT_TYPE:
        append_field(r->content_type, sizeof(r->content_type), NULL, at, len);
        break;
    default: break;
    }
    return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
    conn_of(p)->hwhich = H_NONE;
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    struct api_conn *c = conn_of(p);
    struct api_req *r = c->cur;
    c->in_header = false;
    r->method = llhttp_get_method(p);
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > c->lim.max_body_bytes) {
        c->hwhich = -413;
        return -1;
    }
    if (!r->url) {
        c->hwhich = -400;
        return -1;
    }
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    struct api_conn *c = conn_of(p);
    struct api_req *r = c->cur;
    if (r->body.len + len > c->lim.max_body_bytes) {
        c->hwhich = -413;
        return -1;
    }
    lw_buf_put(&r->body, at, len);
    return lw_buf_status(&r->body) ? -1 : 0;
}

static int on_message_complete(llhttp_t *p)
{
    struct api_conn *c = conn_of(p);
    struct api_req *r = c->cur;
    c->cur = NULL;
    r->keep_alive = llhttp_should_keep_alive(p) && c->nreq < c->lim.max_requests;
    if (!r->keep_alive)
        c->closing = true;
    lw_buf_put_u8(&r->body, 0); /* NUL after the body for string handlers; not counted */
    if (r->body.len)
        r->body.len--;
    lw_list_push_back(&c->queue, &r->link);
    c->queued++;
    api_route(r);
    if (c->closing || c->sse || c->dead)
        return HPE_PAUSED; /* stop parsing: what follows is discarded */
    if (c->queued >= c->lim.max_pipeline)
        return HPE_PAUSED;
    return 0;
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void api_conn_init(struct api_conn *c, uint64_t id, const struct api_limits *lim,
                   const struct api_conn_ops *ops, void *ctx)
{
    memset(c, 0, sizeof(*c));
    c->id = id;
    c->ops = ops;
    c->ctx = ctx;
    if (lim)
        c->lim = *lim;
    api_limits_fill(&c->lim);
    lw_list_init(&c->queue);
    lw_list_init(&c->link);
    llhttp_init(&c->parser, HTTP_REQUEST, &settings);
    c->parser.data = c;
}

void api_conn_deinit(struct api_conn *c)
{
    struct lw_list *it;
    c->dead = true;
    if (c->sse)
        api_sse_detach(c);
    while ((it = lw_list_pop_front(&c->queue)))
        req_free(lw_container_of(it, struct api_req, link));
    c->queued = 0;
    req_free(c->cur);
    c->cur = NULL;
    free(c->stash);
    c->stash = NULL;
    c->stash_len = 0;
}

static void stash_rest(struct api_conn *c, const uint8_t *p, size_t n)
{
    uint8_t *s = NULL;
    if (n) {
        s = malloc(n);
        if (!s) {
            c->closing = true;
            return;
        }
        memcpy(s, p, n);
    }
    free(c->stash);
    c->stash = s;
    c->stash_len = n;
}

static void parse_error(struct api_conn *c, llhttp_errno_t err)
{
    int why = c->hwhich;
    if (why == -413)
        fail_request(c, 413, "body-too-large", "the request body exceeds api.max_body_size");
    else if (why == -431)
        fail_request(c, 431, "headers-too-large", "the request headers exceed api.max_header_size");
    else if (why == -414)
        fail_request(c, 414, "uri-too-long", "the request target is too long");
    else if (err == HPE_CB_MESSAGE_BEGIN && c->closing)
        return; /* bytes after a final request: ignored */
    else
        fail_request(c, 400, "bad-request", llhttp_errno_name(err));
}

/* Parses p[0..n); stops at a pause (stashing the rest) or an error. */
static void execute(struct api_conn *c, const uint8_t *p, size_t n)
{
    if (c->closing || c->dead || c->sse || n == 0)
        return;
    c->parser_busy = true;
    llhttp_errno_t err = llhttp_execute(&c->parser, (const char *)p, n);
    c->parser_busy = false;
    if (err == HPE_PAUSED) {
        const uint8_t *pos = (const uint8_t *)llhttp_get_error_pos(&c->parser);
        llhttp_resume(&c->parser);
        if (c->closing || c->sse || c->dead)
            return;
        if (!pos || pos < p || pos > p + n)
            pos = p + n;
        stash_rest(c, pos, (size_t)(p + n - pos));
        c->paused = true;
        c->ops->pause(c, true);
    } else if (err == HPE_PAUSED_UPGRADE) {
        c->closing = true; /* no protocol upgrades: answer what came, then close */
    } else if (err != HPE_OK) {
        parse_error(c, err);
    }
}

static void flush(struct api_conn *c);

void api_conn_resume(struct api_conn *c)
{
    while (c->paused && !c->dead && c->queued < c->lim.max_pipeline) {
        c->paused = false;
        uint8_t *s = c->stash;
        size_t n = c->stash_len;
        c->stash = NULL;
        c->stash_len = 0;
        c->ops->pause(c, false);
        execute(c, s, n);
        free(s);
    }
    flush(c);
}

void api_conn_feed(struct api_conn *c, const uint8_t *p, size_t n)
{
    if (c->closing || c->dead || c->sse)
        return;
    if (c->paused) {
        uint8_t *s = realloc(c->stash, c->stash_len + n);
        if (!s) {
            c->closing = true;
            return;
        }
        memcpy(s + c->stash_len, p, n);
        c->stash = s;
        c->stash_len += n;
        return;
    }
    execute(c, p, n);
    flush(c);
}

static void flush(struct api_conn *c)
{
    struct lw_list *it;
    while (!c->dead && (it = lw_list_first(&c->queue))) {
        struct api_req *r = lw_container_of(it, struct api_req, link);
        if (!r->done)
            break;
        lw_list_remove(&r->link);
        c->queued--;
        if (r->resp.len)
            c->ops->write(c, r->resp.data, r->resp.len);
        if (c->ops->answered)
            c->ops->answered(c, r);
        if (!r->keep_alive)
            c->closing = true;
        req_free(r);
    }
    if (c->dead)
        return;
    if (c->closing && !c->sse && c->queued == 0 && !c->cur) {
        if (!c->close_sent) {
            c->close_sent = true;
            c->ops->close(c);
        }
        return;
    }
    if (c->paused && c->queued < c->lim.max_pipeline)
        api_conn_resume(c);
}

void api_req_finish(struct api_req *r)
{
    r->done = true;
    struct api_conn *c = r->conn;
    /* Inside llhttp_execute the flush happens when it returns (see api_conn_feed). */
    if (lw_list_first(&c->queue) == &r->link && !c->parser_busy)
        flush(c);
}

struct api_req *api_conn_find(struct api_conn *c, uint32_t seq)
{
    lw_list_foreach (it, &c->queue) {
        struct api_req *r = lw_container_of(it, struct api_req, link);
        if (r->seq == seq)
            return r;
    }
    return NULL;
}

void api_conn_shutdown(struct api_conn *c)
{
    c->closing = true;
    c->in_header = false;
    req_free(c->cur); /* a partial request can no longer complete */
    c->cur = NULL;
    flush(c);
}
