/* server/api/api_int.h - internals shared by the files of server/api/.
 *
 * Layers: conn.c parses HTTP/1.1 (llhttp) from bytes and queues requests in arrival order; it is
 * independent of libuv (bytes in, bytes out through conn ops), so the fuzz target and unit tests
 * drive it directly. router.c matches (method, path) against the static route table, checks the
 * bearer token's role and calls the handler. server.c owns sockets and timers. Everything runs on
 * the control thread.
 */
#ifndef LW_SERVER_API_INT_H
#define LW_SERVER_API_INT_H

#include "base/buf.h"
#include "base/list.h"
#include "config.h"
#include "events.h"

#include <jansson.h>
#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum api_role { API_ROLE_NONE = 0, API_ROLE_VIEWER = 1, API_ROLE_OPERATOR = 2, API_ROLE_ADMIN = 3 };

const char *api_role_name(enum api_role r);
/* -1 when unknown. */
int api_role_parse(const char *s);

/* Request limits; zero values mean the defaults below. */
struct api_limits {
    size_t max_header_bytes;    /* request line + headers, default 16 KiB */
    size_t max_body_bytes;      /* default 1 MiB */
    unsigned max_requests;      /* per connection, default 1000 */
    unsigned max_pipeline;      /* queued unanswered requests before reading pauses, default 16 */
    unsigned header_timeout_ms; /* first byte of a request to end of its headers, default 10 s */
    unsigned idle_timeout_ms;   /* keep-alive idle, default 60 s */
};
void api_limits_fill(struct api_limits *l);

struct api_conn;

struct api_req {
    struct lw_list link; /* in conn->queue */
    struct api_conn *conn;
    uint32_t seq; /* per connection */
    int method;   /* llhttp_method_t */
    char *url;    /* raw request target, NUL-terminated (owned) */
    size_t url_len;
    char auth[320]; /* Authorization header value ("" = none) */
    bool auth_over;
    char last_event_id[32];
    char content_type[64];
    bool keep_alive;
    struct lw_buf body;
    uint64_t start_ns;
    /* routing results */
    int route;          /* index in the route table, -1 none */
    enum api_role role; /* of the caller's token */
    char actor[64];     /* token name for the audit log */
    char target[160];   /* audited object (first path parameter) */
    json_t *json;       /* decoded JSON body of POST/PUT/PATCH (owned) */
    /* response */
    bool done;
    bool stream; /* SSE: headers written, connection becomes an event stream */
    int status;
    struct lw_buf resp;
    char extra_hdr[160];
};

struct api_conn_ops {
    /* Sends bytes (the callee copies or takes nothing: the buffer is reused after return). */
    void (*write)(struct api_conn *c, const uint8_t *p, size_t n);
    /* The peer should be disconnected once queued writes flush. */
    void (*close)(struct api_conn *c);
    /* Reading should pause (true) or resume (false): too many pipelined requests. */
    void (*pause)(struct api_conn *c, bool paused);
    /* A request was answered (metrics, audit). */
    void (*answered)(struct api_conn *c, struct api_req *r);
};

struct api_conn {
    struct lw_list link; /* in the server's connection list */
    uint64_t id;
    llhttp_t parser;
    const struct api_conn_ops *ops;
    void *ctx; /* the transport's */
    struct api_limits lim;
    struct api_req *cur;  /* being parsed */
    struct lw_list queue; /* parsed, in order; the head is answered first */
    unsigned queued;
    unsigned nreq;
    size_t header_bytes;
    char hname[32]; /* current header name, lowercased (truncated names are ignored) */
    size_t hname_len;
    bool hname_over;
    int hwhich;     /* which header value is being collected */
    uint8_t *stash; /* unparsed input kept while paused (owned) */
    size_t stash_len;
    bool paused;
    bool closing;     /* no more requests: close after the queue drains */
    bool dead;        /* the transport is gone */
    bool in_header;   /* between message begin and headers complete (header timeout) */
    bool parser_busy; /* inside llhttp_execute */
    bool close_sent;  /* ops->close was called */
    /* SSE */
    bool sse;
    uint64_t sse_last_id;
    uint32_t sse_types; /* bit per lw_event_type */
    char sse_endpoint[128];
    bool sse_resuming; /* older events are being read from the database: live ones wait */
};

/* Initialises c (embedded by the transport). ops/ctx are borrowed. */
void api_conn_init(struct api_conn *c, uint64_t id, const struct api_limits *lim,
                   const struct api_conn_ops *ops, void *ctx);
/* Frees the queue and the parser state; queued requests are dropped (async replies for them find
 * nothing and are discarded). */
void api_conn_deinit(struct api_conn *c);
/* Feeds received bytes. Parse errors answer 400/413/431 (problem+json) and close. */
void api_conn_feed(struct api_conn *c, const uint8_t *p, size_t n);
/* The transport resumed reading: parses what was stashed. */
void api_conn_resume(struct api_conn *c);
/* Marks r answered (its resp is complete) and writes every answered request at the head of the
 * queue, in order. */
void api_req_finish(struct api_req *r);
/* The request with this sequence number still queued on c, or NULL. */
struct api_req *api_conn_find(struct api_conn *c, uint32_t seq);
/* Stops parsing further requests: close once the queue drains. */
void api_conn_shutdown(struct api_conn *c);

/* ---- responses ----------------------------------------------------------------------------- */
/* Writes a complete response (status line, headers, body) into r->resp and finishes r. */
void api_reply(struct api_req *r, int status, const char *ctype, const void *body, size_t len);
/* json is consumed (decref'd). */
void api_reply_json(struct api_req *r, int status, json_t *json);
/* problem+json (RFC 9457): type "urn:lwm2md:problem:<slug>", title, status, detail, instance. */
void api_problem(struct api_req *r, int status, const char *slug, const char *detail, ...)
    __attribute__((format(printf, 4, 5)));
const char *api_status_text(int status);

/* Extra response header lines ("Name: value\r\n"...) for the next api_reply on r. */
void api_reply_headers(struct api_req *r, const char *lines);

/* ---- routing ------------------------------------------------------------------------------- */
typedef void (*api_handler_fn)(struct api_req *r, char *const *params, const char *query);
struct api_route {
    int method;          /* HTTP_GET, ... */
    const char *pattern; /* "/api/v1/devices/{endpoint}" */
    api_handler_fn handler;
    enum api_role min_role; /* NONE: public (probes, when api.probes_public) */
    bool probe;             /* healthz/readyz/metrics: auth follows api.probes_public */
    bool mutating;          /* audited */
    const char *name;       /* metrics label */
};
extern const struct api_route api_routes[];
extern const size_t api_routes_n;
/* Routes one parsed request (called by conn.c). */
void api_route(struct api_req *r);
/* Decodes a POST/PUT/PATCH JSON body into r->json; false after answering 400/415. */
bool api_decode_json_body(struct api_req *r);
/* Percent-decodes in place; false on bad escapes or an embedded NUL. */
bool api_pct_decode(char *s, size_t *len);
/* Finds `name` in a query string and copies its decoded value into out (NUL-terminated).
 * 1 found, 0 absent, -1 malformed or too long. */
int api_query_get(const char *query, const char *name, char *out, size_t cap);

/* ---- runtime settings (control thread) ----------------------------------------------------- */
struct api_settings {
    bool probes_public;
    unsigned sse_heartbeat_ms;
    size_t sse_max_backlog; /* bytes queued to a slow SSE client before it is dropped */
    size_t sse_ring;        /* events kept for Last-Event-ID */
};
extern struct api_settings api_set;

/* ---- auth (tokens.c) ----------------------------------------------------------------------- */
/* Role of a bearer token ("" = none); fills actor with the token's name. */
enum api_role api_auth_check(const char *token, size_t len, char *actor, size_t actor_cap);
/* Records a mutating call: log line + audit_log row (async). */
void api_audit(const struct api_req *r, const char *action, const char *target);
/* Token store state for /readyz: true when no database is configured or the last refresh worked. */
bool api_tokens_db_ok(void);
void api_tokens_metrics(struct lw_buf *out);
int api_tokens_start(const struct lw_config *cfg);
/* Adds a token to the in-memory table (what a database refresh does; used by tests). */
int api_tokens_add(int64_t id, const char *name, enum api_role role, const char *token);
void api_tokens_stop(void);
/* Token routes (admin): POST /api/v1/tokens {"role", "name"} -> 201 with the token (shown once),
 * GET /api/v1/tokens (metadata), DELETE /api/v1/tokens/{id}. Durable before answered (503 when the
 * database fails). */
void h_tokens_create(struct api_req *r, char *const *params, const char *query);
void h_tokens_list(struct api_req *r, char *const *params, const char *query);
void h_tokens_revoke(struct api_req *r, char *const *params, const char *query);

/* ---- events (sse.c) ------------------------------------------------------------------------ */
int api_sse_start(void);
void api_sse_stop(void);
/* Starts an SSE stream for r (GET /api/v1/events). */
void api_sse_open(struct api_req *r, const char *query);
/* The connection is going away. */
void api_sse_detach(struct api_conn *c);
void api_sse_metrics(struct lw_buf *out);
/* Serialises one event as SSE ("id: N\nevent: T\ndata: {...}\n\n") into out; also the JSON used by
 * webhooks (api_event_json, new reference). */
json_t *api_event_json(const struct lw_event *ev);
void api_sse_format(struct lw_buf *out, uint64_t id, const char *type, const char *data);

/* ---- webhooks (webhook.c) ------------------------------------------------------------------ */
int api_webhooks_start(const struct lw_config *cfg);
void api_webhooks_stop(void);
void api_webhooks_metrics(struct lw_buf *out);
/* HMAC-SHA256(secret, id "." timestamp "." body) as base64 into out (>= 45 bytes). */
int api_webhook_sign(const uint8_t *secret, size_t secret_len, const char *id, int64_t ts,
                     const char *body, size_t body_len, char *out, size_t cap);

/* ---- server (server.c) --------------------------------------------------------------------- */
/* The live connection with this id, or NULL. */
struct api_conn *api_conn_lookup(uint64_t id);
/* A request as a number that survives its connection (connection id, sequence number), for
 * answers that arrive later from another module or thread; api_req_of_cookie gives the request
 * back while it is still waiting for its answer, else NULL (connection closed, or answered). */
uint64_t api_req_cookie(const struct api_req *r);
struct api_req *api_req_of_cookie(uint64_t cookie);
void api_conn_each(void (*fn)(struct api_conn *c, void *arg), void *arg);
/* Bytes queued for writing to c and not yet sent. */
size_t api_conn_backlog(struct api_conn *c);

/* ---- device credentials (credentials.c; route handlers) ------------------------------------ */
void h_credentials_put(struct api_req *r, char *const *params, const char *query);
void h_credentials_get(struct api_req *r, char *const *params, const char *query);
void h_credentials_delete(struct api_req *r, char *const *params, const char *query);

/* ---- device management (dm.c; route handlers) ---------------------------------------------- */
void h_dm_read(struct api_req *r, char *const *params, const char *query);
void h_dm_discover(struct api_req *r, char *const *params, const char *query);
void h_dm_write(struct api_req *r, char *const *params, const char *query);
void h_dm_patch(struct api_req *r, char *const *params, const char *query);
void h_dm_create(struct api_req *r, char *const *params, const char *query);
void h_dm_delete(struct api_req *r, char *const *params, const char *query);
void h_dm_execute(struct api_req *r, char *const *params, const char *query);
void h_operation_get(struct api_req *r, char *const *params, const char *query);
void h_dm_attributes(struct api_req *r, char *const *params, const char *query);
void h_observations_post(struct api_req *r, char *const *params, const char *query);
void h_observations_list(struct api_req *r, char *const *params, const char *query);
void h_observation_delete(struct api_req *r, char *const *params, const char *query);
void h_values_get(struct api_req *r, char *const *params, const char *query);
/* telemetry.c */
void h_telemetry_get(struct api_req *r, char *const *params, const char *query);
void h_dm_composite_read(struct api_req *r, char *const *params, const char *query);
void h_dm_composite_write(struct api_req *r, char *const *params, const char *query);

/* ---- metrics (router.c) -------------------------------------------------------------------- */
void api_metrics_observe(const struct api_req *r, uint64_t dur_ns);
void api_metrics_write(struct lw_buf *out);

#endif
