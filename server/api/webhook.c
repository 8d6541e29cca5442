/* server/api/webhook.c - webhook delivery: events from the bus are queued per subscriber
 * (webhooks.urls), POSTed in batches as a JSON array, signed, retried with exponential backoff.
 * Outbound HTTP uses libcurl's multi interface driven by the control loop (uv_poll per socket, one
 * uv_timer for curl's timeouts), so deliveries never block the loop or the shards.
 *
 * Signature headers (the "Standard Webhooks" layout): webhook-id: <batch id>, webhook-timestamp:
 * <unix seconds>, webhook-signature: v1,<base64(HMAC-SHA256(secret, id "." timestamp "." body))>.
 */
#include "api_int.h"

#include "base/b64.h"
#include "base/err.h"
#include "base/util.h"
#include "control.h"
#include "log.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hmac.h>

#define MAX_SUBS       8
#define MAX_BACKOFF_MS 300000u

struct qev {
    struct lw_list link;
    uint64_t id;
    char *json; /* owned */
    size_t len;
};

struct sub {
    unsigned idx;
    char *url;
    struct lw_list queue; /* struct qev, oldest first */
    unsigned queued;
    uv_timer_t timer; /* batch delay or backoff */
    CURL *easy;       /* in flight */
    struct curl_slist *hdrs;
    char *body; /* current batch (owned), kept across retries */
    size_t body_len;
    unsigned batch_n;
    uint64_t batch_id;
    unsigned attempts;
    /* stats */
    uint64_t ok, failed_attempts, delivered, dropped_retries, dropped_queue;
};

struct wpoll {
    uv_poll_t poll;
    curl_socket_t fd;
};

static struct {
    bool started;
    CURLM *multi;
    uv_timer_t curl_timer;
    struct sub subs[MAX_SUBS];
    unsigned nsubs;
    uint32_t types;
    uint8_t secret[256];
    size_t secret_len;
    unsigned batch_max, batch_delay, timeout, retry_max, retry_base, queue_max;
    struct lw_event_sink sink;
} wh;

int api_webhook_sign(const uint8_t *secret, size_t secret_len, const char *id, int64_t ts,
                     const char *body, size_t body_len, char *out, size_t cap)
{
    Hmac h;
    uint8_t mac[WC_SHA256_DIGEST_SIZE];
    char tsbuf[24];
    int rc = LW_EINTERNAL;
    if (cap < 4 * ((sizeof(mac) + 2) / 3) + 1)
        return LW_ENOSPC;
    snprintf(tsbuf, sizeof(tsbuf), "%lld", (long long)ts);
    if (wc_HmacInit(&h, NULL, INVALID_DEVID) != 0)
        return LW_EINTERNAL;
    if (wc_HmacSetKey(&h, WC_SHA256, secret, (word32)secret_len) == 0 &&
        wc_HmacUpdate(&h, (const uint8_t *)id, (word32)strlen(id)) == 0 &&
        wc_HmacUpdate(&h, (const uint8_t *)".", 1) == 0 &&
        wc_HmacUpdate(&h, (const uint8_t *)tsbuf, (word32)strlen(tsbuf)) == 0 &&
        wc_HmacUpdate(&h, (const uint8_t *)".", 1) == 0 &&
        wc_HmacUpdate(&h, (const uint8_t *)body, (word32)body_len) == 0 &&
        wc_HmacFinal(&h, mac) == 0) {
        lw_b64_encode_str(out, cap, mac, sizeof(mac), false);
        rc = 0;
    }
    wc_HmacFree(&h);
    lw_secure_zero(mac, sizeof(mac));
    return rc;
}

/* ---- curl <-> libuv ------------------------------------------------------------------------- */

static void check_done(void);

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct wpoll *p = h->data;
    int flags = 0, running;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    curl_multi_socket_action(wh.multi, p->fd, flags, &running);
    check_done();
}

static void free_handle(uv_handle_t *h)
{
    free(h->data);
}

static int sock_cb(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)e;
    (void)userp;
    struct wpoll *p = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (p) {
            uv_poll_stop(&p->poll);
            uv_close((uv_handle_t *)&p->poll, free_handle);
            curl_multi_assign(wh.multi, s, NULL);
        }
        return 0;
    }
    if (!p) {
        p = calloc(1, sizeof(*p));
        if (!p)
            return -1;
        p->fd = s;
        if (uv_poll_init_socket(lw_control_loop(), &p->poll, s) != 0) {
            free(p);
            return -1;
        }
        p->poll.data = p;
        curl_multi_assign(wh.multi, s, p);
    }
    int ev = (what & CURL_POLL_IN ? UV_READABLE : 0) | (what & CURL_POLL_OUT ? UV_WRITABLE : 0);
    uv_poll_start(&p->poll, ev, on_poll);
    return 0;
}

static void on_curl_timeout(uv_timer_t *t)
{
    (void)t;
    int running;
    curl_multi_socket_action(wh.multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done();
}

static int timer_cb(CURLM *m, long timeout_ms, void *userp)
{
    (void)m;
    (void)userp;
    if (timeout_ms < 0)
        uv_timer_stop(&wh.curl_timer);
    else
        uv_timer_start(&wh.curl_timer, on_curl_timeout, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---- delivery ------------------------------------------------------------------------------- */

static void on_sub_timer(uv_timer_t *t);

static void arm(struct sub *s, uint64_t ms)
{
    if (wh.started)
        uv_timer_start(&s->timer, on_sub_timer, ms, 0);
}

static size_t discard_body(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

static void finish_batch(struct sub *s)
{
    free(s->body);
    s->body = NULL;
    s->body_len = 0;
    s->batch_n = 0;
    s->attempts = 0;
}

static void build_batch(struct sub *s)
{
    struct lw_buf b;
    lw_buf_init(&b, 1024);
    lw_buf_put_u8(&b, '[');
    unsigned n = 0;
    struct lw_list *it;
    while (n < wh.batch_max && (it = lw_list_pop_front(&s->queue))) {
        struct qev *q = lw_container_of(it, struct qev, link);
        if (n == 0)
            s->batch_id = q->id;
        if (n)
            lw_buf_put_u8(&b, ',');
        lw_buf_put(&b, q->json, q->len);
        free(q->json);
        free(q);
        s->queued--;
        n++;
    }
    lw_buf_put_u8(&b, ']');
    lw_buf_put_u8(&b, 0);
    if (lw_buf_status(&b)) {
        s->dropped_queue += n;
        lw_buf_deinit(&b);
        return;
    }
    s->body = (char *)b.data;
    s->body_len = b.len - 1;
    s->batch_n = n;
    s->attempts = 0;
}

static void send_batch(struct sub *s)
{
    char id[40], sig[64], h[160];
    int64_t ts = (int64_t)time(NULL);
    snprintf(id, sizeof(id), "evt_%llu", (unsigned long long)s->batch_id);
    if (api_webhook_sign(wh.secret, wh.secret_len, id, ts, s->body, s->body_len, sig,
                         sizeof(sig)) != 0)
        return;
    CURL *e = curl_easy_init();
    if (!e) {
        arm(s, 1000);
        return;
    }
    curl_slist_free_all(s->hdrs);
    s->hdrs = NULL;
    s->hdrs = curl_slist_append(s->hdrs, "Content-Type: application/json");
    snprintf(h, sizeof(h), "webhook-id: %s", id);
    s->hdrs = curl_slist_append(s->hdrs, h);
    snprintf(h, sizeof(h), "webhook-timestamp: %lld", (long long)ts);
    s->hdrs = curl_slist_append(s->hdrs, h);
    snprintf(h, sizeof(h), "webhook-signature: v1,%s", sig);
    s->hdrs = curl_slist_append(s->hdrs, h);
    s->hdrs = curl_slist_append(s->hdrs, "User-Agent: lwm2md/" LW_VERSION);
    curl_easy_setopt(e, CURLOPT_URL, s->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, s->hdrs);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, s->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)s->body_len);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)wh.timeout);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard_body);
    curl_easy_setopt(e, CURLOPT_PRIVATE, s);
    s->attempts++;
    if (curl_multi_add_handle(wh.multi, e) != CURLM_OK) {
        curl_easy_cleanup(e);
        arm(s, 1000);
        return;
    }
    s->easy = e;
}

static void on_delivery(struct sub *s, bool ok, long code, CURLcode cc)
{
    if (ok) {
        s->ok++;
        s->delivered += s->batch_n;
        finish_batch(s);
        if (s->queued)
            arm(s, 0);
        return;
    }
    s->failed_attempts++;
    if (s->attempts > wh.retry_max) {
        log_warn(API, "webhook delivery abandoned: subscriber=%u events=%u attempts=%u", s->idx,
                 s->batch_n, s->attempts);
        s->dropped_retries += s->batch_n;
        finish_batch(s);
        if (s->queued)
            arm(s, 0);
        return;
    }
    uint64_t delay = wh.retry_base;
    for (unsigned i = 1; i < s->attempts && delay < MAX_BACKOFF_MS; i++)
        delay *= 2;
    delay = LW_MIN(delay, (uint64_t)MAX_BACKOFF_MS);
    log_info_rl(API,
                "webhook delivery failed, retrying: subscriber=%u status=%ld error=%s "
                "retry_in_ms=%llu",
                s->idx, code, curl_easy_strerror(cc), (unsigned long long)delay);
    arm(s, delay);
}

static void check_done(void)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(wh.multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *e = msg->easy_handle;
        CURLcode cc = msg->data.result;
        struct sub *s = NULL;
        long code = 0;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&s);
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
        curl_multi_remove_handle(wh.multi, e);
        curl_easy_cleanup(e);
        if (!s)
            continue;
        s->easy = NULL;
        on_delivery(s, cc == CURLE_OK && code >= 200 && code < 300, code, cc);
    }
}

static void on_sub_timer(uv_timer_t *t)
{
    struct sub *s = t->data;
    if (s->easy)
        return;
    if (!s->body) {
        if (!s->queued)
            return;
        build_batch(s);
        if (!s->body)
            return;
    }
    send_batch(s);
}

static void on_event(void *ctx, const struct lw_event *ev)
{
    (void)ctx;
    if (!(wh.types & (1u << ev->type)))
        return;
    size_t len;
    const char *s = lw_event_json(ev, &len); /* shared with the other sinks */
    if (!s)
        return;
    for (unsigned i = 0; i < wh.nsubs; i++) {
        struct sub *sb = &wh.subs[i];
        struct qev *q = malloc(sizeof(*q));
        char *copy = malloc(len + 1);
        if (!q || !copy) {
            free(q);
            free(copy);
            sb->dropped_queue++;
            continue;
        }
        memcpy(copy, s, len + 1);
        q->id = ev->id;
        q->json = copy;
        q->len = len;
        if (sb->queued >= wh.queue_max) {
            struct qev *old = lw_container_of(lw_list_pop_front(&sb->queue), struct qev, link);
            free(old->json);
            free(old);
            sb->queued--;
            sb->dropped_queue++;
        }
        lw_list_push_back(&sb->queue, &q->link);
        sb->queued++;
        if (!sb->easy && !sb->body && !uv_is_active((uv_handle_t *)&sb->timer))
            arm(sb, wh.batch_delay);
        else if (!sb->easy && !sb->body && sb->queued >= wh.batch_max)
            arm(sb, 0);
    }
}

static int load_secret(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        log_err(API, "webhooks.secret_file: cannot open %s: %s", path, strerror(errno));
        return LW_ECONFIG;
    }
    struct stat st;
    int rc = 0;
    if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077)) {
        log_err(API, "webhooks.secret_file: %s is readable by group or others (chmod 600 it)",
                path);
        rc = LW_ECONFIG;
    } else {
        wh.secret_len = fread(wh.secret, 1, sizeof(wh.secret), f);
        while (wh.secret_len &&
               (wh.secret[wh.secret_len - 1] == '\n' || wh.secret[wh.secret_len - 1] == '\r'))
            wh.secret_len--;
        if (wh.secret_len == 0) {
            log_err(API, "webhooks.secret_file: %s is empty", path);
            rc = LW_ECONFIG;
        }
    }
    fclose(f);
    return rc;
}

int api_webhooks_start(const struct lw_config *cfg)
{
    const char *urls = cfg->webhooks_urls ? cfg->webhooks_urls : "";
    int rc = 0;
    if (!*urls)
        return 0;
    wh.types = 0;
    const char *t = cfg->webhooks_types ? cfg->webhooks_types : "";
    while (*t) {
        size_t n = strcspn(t, ", ");
        if (n) {
            int ty = lw_event_type_parse(t, n);
            if (ty < 0) {
                log_err(API, "webhooks.types: unknown event type '%.*s'", (int)n, t);
                return LW_ECONFIG;
            }
            wh.types |= 1u << ty;
        }
        t += n;
        t += strspn(t, ", ");
    }
    if (!wh.types)
        wh.types = (1u << LW_EV__COUNT) - 1;
    if (!cfg->webhooks_secret_file || !*cfg->webhooks_secret_file) {
        log_err(API, "webhooks.urls is set but webhooks.secret_file is not");
        return LW_ECONFIG;
    }
    if ((rc = load_secret(cfg->webhooks_secret_file)) != 0)
        return rc;
    wh.batch_max = cfg->webhooks_batch_max ? cfg->webhooks_batch_max : 100;
    wh.batch_delay = cfg->webhooks_batch_delay;
    wh.timeout = cfg->webhooks_timeout ? cfg->webhooks_timeout : 10000;
    wh.retry_max = cfg->webhooks_retry_max;
    wh.retry_base = cfg->webhooks_retry_base ? cfg->webhooks_retry_base : 1000;
    wh.queue_max = cfg->webhooks_queue_max ? cfg->webhooks_queue_max : 10000;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(wh.multi = curl_multi_init()))
        return LW_ENOMEM;
    curl_multi_setopt(wh.multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(wh.multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    uv_timer_init(lw_control_loop(), &wh.curl_timer);
    wh.started = true;
    const char *p = urls;
    while (*p && wh.nsubs < MAX_SUBS) {
        size_t n = strcspn(p, ", ");
        if (n) {
            struct sub *s = &wh.subs[wh.nsubs];
            memset(s, 0, sizeof(*s));
            s->idx = wh.nsubs;
            s->url = strndup(p, n);
            if (!s->url)
                return LW_ENOMEM;
            lw_list_init(&s->queue);
            uv_timer_init(lw_control_loop(), &s->timer);
            s->timer.data = s;
            wh.nsubs++;
            log_info(API, "webhook subscriber %u configured", s->idx);
        }
        p += n;
        p += strspn(p, ", ");
    }
    if (*p)
        log_warn(API, "webhooks.urls: only the first %d subscribers are used", MAX_SUBS);
    wh.sink.on_event = on_event;
    lw_events_subscribe(&wh.sink);
    return 0;
}

void api_webhooks_stop(void)
{
    if (!wh.started)
        return;
    wh.started = false;
    lw_events_unsubscribe(&wh.sink);
    for (unsigned i = 0; i < wh.nsubs; i++) {
        struct sub *s = &wh.subs[i];
        struct lw_list *it;
        if (s->easy) {
            curl_multi_remove_handle(wh.multi, s->easy);
            curl_easy_cleanup(s->easy);
            s->easy = NULL;
        }
        unsigned lost = s->batch_n + s->queued;
        if (lost)
            log_warn(API, "webhook events not delivered at shutdown: subscriber=%u events=%u",
                     s->idx, lost);
        finish_batch(s);
        while ((it = lw_list_pop_front(&s->queue))) {
            struct qev *q = lw_container_of(it, struct qev, link);
            free(q->json);
            free(q);
        }
        s->queued = 0;
        curl_slist_free_all(s->hdrs);
        s->hdrs = NULL;
        free(s->url);
        s->url = NULL;
        uv_close((uv_handle_t *)&s->timer, NULL);
    }
    wh.nsubs = 0;
    curl_multi_cleanup(wh.multi);
    wh.multi = NULL;
    uv_close((uv_handle_t *)&wh.curl_timer, NULL);
    lw_secure_zero(wh.secret, sizeof(wh.secret));
    curl_global_cleanup();
}

void api_webhooks_metrics(struct lw_buf *out)
{
    if (!wh.nsubs)
        return;
    lw_buf_printf(out, "# HELP lwm2md_webhook_deliveries_total Webhook POST attempts by result.\n"
                       "# TYPE lwm2md_webhook_deliveries_total counter\n");
    for (unsigned i = 0; i < wh.nsubs; i++)
        lw_buf_printf(out,
                      "lwm2md_webhook_deliveries_total{subscriber=\"%u\",result=\"ok\"} %llu\n"
                      "lwm2md_webhook_deliveries_total{subscriber=\"%u\",result=\"error\"} %llu\n",
                      i, (unsigned long long)wh.subs[i].ok, i,
                      (unsigned long long)wh.subs[i].failed_attempts);
    lw_buf_printf(out, "# HELP lwm2md_webhook_events_total Events delivered or dropped.\n"
                       "# TYPE lwm2md_webhook_events_total counter\n");
    for (unsigned i = 0; i < wh.nsubs; i++)
        lw_buf_printf(
            out,
            "lwm2md_webhook_events_total{subscriber=\"%u\",result=\"delivered\"} %llu\n"
            "lwm2md_webhook_events_total{subscriber=\"%u\",result=\"dropped_retries\"} %llu\n"
            "lwm2md_webhook_events_total{subscriber=\"%u\",result=\"dropped_queue\"} %llu\n",
            i, (unsigned long long)wh.subs[i].delivered, i,
            (unsigned long long)wh.subs[i].dropped_retries, i,
            (unsigned long long)wh.subs[i].dropped_queue);
    lw_buf_printf(out, "# HELP lwm2md_webhook_queue Events waiting per subscriber.\n"
                       "# TYPE lwm2md_webhook_queue gauge\n");
    for (unsigned i = 0; i < wh.nsubs; i++)
        lw_buf_printf(out, "lwm2md_webhook_queue{subscriber=\"%u\"} %u\n", i,
                      wh.subs[i].queued + wh.subs[i].batch_n);
}
