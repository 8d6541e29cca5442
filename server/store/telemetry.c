/* server/store/telemetry.c - telemetry and event write-behind with spill files (telemetry.h). */
#include "store/telemetry.h"

#include "base/arena.h"
#include "base/b64.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/util.h"
#include "events.h"
#include "log.h"
#include "lwm2m/value.h"
#include "metrics.h"
#include "store/pgc.h"
#include "store/spill.h"
#include "values.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BATCH_MAX_RECS  5000u
#define BATCH_MAX_BYTES (4u * 1024 * 1024)
#define FLUSH_MS        50u
#define RETRY_MS        1000u
#define FILE_ROTATE     (16u * 1024 * 1024)
#define MAINTAIN_MS     (3600u * 1000)
#define AHEAD_DAYS      2
#define STOP_BUDGET_MS  5000
#define MAX_FILES       100000u
#define IDLE_CAP        (1u << 16)

/* One statement per batch: the ledger row decides whether the rest applies (a batch re-sent
 * after a connection loss that hid its commit inserts nothing the second time). */
static const char batch_sql[] =
    "WITH bt AS (INSERT INTO telemetry_batches (id) VALUES ($3::bigint) ON CONFLICT DO NOTHING "
    "RETURNING id), "
    "t AS (INSERT INTO telemetry (endpoint, path, at, source, type, v_num, v_int, v_bool, v_text, "
    "v_bytes) SELECT r.e, r.p, 'epoch'::timestamptz + r.a * interval '1 microsecond', r.s, r.t, "
    "r.n, r.i, r.b, r.x, decode(r.y, 'base64') FROM bt, json_to_recordset($1::json) AS r(e text, "
    "p text, a bigint, s text, t text, n float8, i bigint, b boolean, x text, y text)), "
    "ev AS (INSERT INTO events (id, at, type, endpoint, data) SELECT r.id, 'epoch'::timestamptz + "
    "r.ms * interval '1 millisecond', r.ty, nullif(r.ep, ''), coalesce(r.d, '{}'::jsonb) FROM bt, "
    "json_to_recordset($2::json) AS r(id bigint, ms bigint, ty text, ep text, d jsonb) "
    "ON CONFLICT (id) DO NOTHING) "
    "SELECT count(*) FROM bt";

static const char maintain_sql[] = "SELECT lwm2md_telemetry_maintain($1::integer, $2::bigint)";

static const char query_sql[] =
    "SELECT path, type, ((extract(epoch FROM at) * 1000000)::numeric)::bigint, source, v_num, "
    "v_int, v_bool, v_text, replace(encode(v_bytes, 'base64'), E'\\n', '') FROM telemetry "
    "WHERE endpoint = $1 AND ($2 = '' OR path = $2 OR path LIKE $2 || '/%') "
    "AND at >= 'epoch'::timestamptz + $3::bigint * interval '1 microsecond' "
    "AND at < 'epoch'::timestamptz + $4::bigint * interval '1 microsecond' "
    "AND (at, path) >= ('epoch'::timestamptz + $5::bigint * interval '1 microsecond', $6) "
    "ORDER BY at, path LIMIT $7::integer";

static const char events_sql[] =
    "SELECT id, type, ((extract(epoch FROM at) * 1000)::numeric)::bigint, coalesce(endpoint, ''), "
    "data::text FROM events WHERE id > $1::bigint AND id < $2::bigint ORDER BY id "
    "LIMIT $3::integer";

struct batch {
    bool active, in_db; /* built; sent and waiting for its result */
    bool from_file;
    uint64_t id;
    struct lw_buf data; /* framed records */
    size_t nrec;
    size_t file_end;    /* from_file: reader offset once committed */
    size_t nvals, nevs; /* rows the statement carries */
};

static struct {
    bool started, stopping, enabled;
    uv_loop_t *loop;
    char *url;         /* owned, secret: never logged */
    struct pgc *w, *q; /* writer, queries */
    uv_timer_t *flush_timer, *retry_timer, *maint_timer;
    int64_t retention_s;
    size_t mem_max;
    /* memory queue: framed records in mem.data[mem_head .. mem.len) */
    struct lw_buf mem;
    size_t mem_head, mem_n;
    struct batch b;
    /* spill files: sequence numbers oldest first */
    char dir[512];
    uint64_t *files;
    size_t nfiles;
    bool spilling;
    int wfd; /* writer: the newest file, -1 when closed */
    uint64_t wseq;
    size_t wbytes;
    uint8_t *rbuf; /* reader: the oldest file, loaded */
    size_t rlen, roff, rend;
    uint64_t rseq;
    bool rloaded;
    /* the last spill file, moved back into memory: removed once its records are committed */
    uint64_t pend_seq;
    size_t pend_left;
    struct lw_event_sink sink;
    struct lw_metrics_writer metrics;
    struct lw_arena arena;
    struct lw_buf enc;
    _Atomic uint64_t rows, events, batches, failed, spilled, replayed, dropped, queued,
        queued_bytes, spill_files, spill_bytes;
    _Atomic bool connected, spilling_a;
} T = {.wfd = -1};

static void add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static void set(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, n, memory_order_relaxed);
}

static size_t mem_bytes(void)
{
    return T.mem.len - T.mem_head + (T.b.active && !T.b.from_file ? T.b.data.len : 0);
}

static void gauges(void)
{
    set(&T.queued, T.mem_n);
    set(&T.queued_bytes, mem_bytes());
    set(&T.spill_files, T.nfiles);
    atomic_store_explicit(&T.spilling_a, T.spilling, memory_order_relaxed);
}

/* ---- spill files ------------------------------------------------------------------------------
 */

static void file_path(char *out, size_t cap, uint64_t seq)
{
    snprintf(out, cap, "%s/%020" PRIu64 ".spill", T.dir, seq);
}

static int files_push(uint64_t seq, bool front)
{
    if (T.nfiles >= MAX_FILES)
        return LW_ENOMEM;
    uint64_t *n = realloc(T.files, (T.nfiles + 1) * sizeof(*n));
    if (!n)
        return LW_ENOMEM;
    T.files = n;
    if (front) {
        memmove(T.files + 1, T.files, T.nfiles * sizeof(*n));
        T.files[0] = seq;
    } else {
        T.files[T.nfiles] = seq;
    }
    T.nfiles++;
    return 0;
}

static void files_pop_front(void)
{
    if (!T.nfiles)
        return;
    memmove(T.files, T.files + 1, (T.nfiles - 1) * sizeof(*T.files));
    T.nfiles--;
}

static bool write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Creates a new spill file with sequence seq holding the magic; returns its fd or -1. */
static int create_file(uint64_t seq)
{
    char path[600];
    file_path(path, sizeof(path), seq);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
        log_warn_rl(STORE, "telemetry spill file not created: %s: %s", path, strerror(errno));
        return -1;
    }
    if (!write_all(fd, (const uint8_t *)LW_SPILL_MAGIC, LW_SPILL_MAGIC_LEN)) {
        close(fd);
        unlink(path);
        return -1;
    }
    return fd;
}

static void close_writer(void)
{
    if (T.wfd >= 0) {
        close(T.wfd);
        T.wfd = -1;
    }
}

/* Appends framed records to the newest spill file (a new one when none is open or it is full). */
static bool spill_write(const uint8_t *p, size_t n, size_t nrec)
{
    if (T.wfd >= 0 && T.wbytes + n > FILE_ROTATE)
        close_writer();
    if (T.wfd < 0) {
        uint64_t seq = T.nfiles ? T.files[T.nfiles - 1] + 1 : T.wseq + 1;
        int fd = create_file(seq);
        if (fd < 0 || files_push(seq, false) != 0) {
            if (fd >= 0) {
                char path[600];
                close(fd);
                file_path(path, sizeof(path), seq);
                unlink(path);
            }
            add(&T.dropped, nrec);
            return false;
        }
        T.wfd = fd;
        T.wseq = seq;
        T.wbytes = LW_SPILL_MAGIC_LEN;
        add(&T.spill_bytes, LW_SPILL_MAGIC_LEN);
        if (!T.spilling)
            log_warn(STORE, "telemetry queue full, spilling to %s", T.dir);
        T.spilling = true;
    }
    if (!write_all(T.wfd, p, n)) {
        log_warn_rl(STORE, "telemetry spill write failed, %zu record(s) lost: %s", nrec,
                    strerror(errno));
        add(&T.dropped, nrec);
        return false;
    }
    T.wbytes += n;
    add(&T.spilled, nrec);
    add(&T.spill_bytes, n);
    return true;
}

static void reader_reset(void)
{
    free(T.rbuf);
    T.rbuf = NULL;
    T.rlen = T.roff = T.rend = 0;
    T.rloaded = false;
}

/* Loads the oldest spill file into the reader. false when it cannot be read (it is skipped). */
static bool reader_load(void)
{
    char path[600];
    struct stat sb;
    reader_reset();
    T.rseq = T.files[0];
    file_path(path, sizeof(path), T.rseq);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &sb) != 0) {
        log_err(STORE, "telemetry spill file not readable, skipped: %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return false;
    }
    T.rbuf = malloc((size_t)sb.st_size + 1);
    size_t got = 0;
    while (T.rbuf && got < (size_t)sb.st_size) {
        ssize_t r = read(fd, T.rbuf + got, (size_t)sb.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (!T.rbuf)
        return false;
    T.rlen = got;
    long n = lw_spill_scan(T.rbuf, got, &T.rend);
    if (n < 0) {
        log_err(STORE, "telemetry spill file without the spill header, skipped: %s", path);
        return false;
    }
    if (T.rend < got)
        log_warn(STORE,
                 "telemetry spill file ends in a torn or corrupt record: %s: %zu of %zu bytes "
                 "valid",
                 path, T.rend, got);
    T.roff = LW_SPILL_MAGIC_LEN;
    T.rloaded = true;
    return true;
}

static void drop_oldest_file(void)
{
    char path[600];
    file_path(path, sizeof(path), T.files[0]);
    if (unlink(path) != 0 && errno != ENOENT)
        log_warn(STORE, "telemetry spill file not removed: %s: %s", path, strerror(errno));
    size_t len = T.rloaded ? T.rlen : 0;
    uint64_t cur = atomic_load_explicit(&T.spill_bytes, memory_order_relaxed);
    set(&T.spill_bytes, cur > len ? cur - len : 0);
    files_pop_front();
    reader_reset();
    if (T.nfiles == 0 && T.wfd < 0) {
        T.spilling = false;
        log_info(STORE, "telemetry spill files replayed");
    }
}

/* ---- records from events ----------------------------------------------------------------------
 */

static void enqueue(const uint8_t *p, size_t n)
{
    if (!T.spilling && mem_bytes() + n <= T.mem_max) {
        if (T.mem_head > 0 && T.mem_head >= T.mem.len / 2) {
            memmove(T.mem.data, T.mem.data + T.mem_head, T.mem.len - T.mem_head);
            T.mem.len -= T.mem_head;
            T.mem_head = 0;
        }
        size_t before = T.mem.len;
        lw_buf_put(&T.mem, p, n);
        if (lw_buf_status(&T.mem) == 0) {
            T.mem_n++;
            return;
        }
        /* out of memory: keep what the queue held, this record goes to a file */
        T.mem.len = before;
        T.mem.overflow = false;
    }
    spill_write(p, n, 1);
}

static bool value_rec(const json_t *v, const struct lw_event *ev, uint8_t source,
                      struct lw_spill_rec *r)
{
    const json_t *jp = json_object_get(v, "path"), *jt = json_object_get(v, "type"),
                 *jv = json_object_get(v, "value"), *jtime = json_object_get(v, "time");
    if (!json_is_string(jp) || !json_is_string(jt) || !jv || json_is_null(jv))
        return false;
    memset(r, 0, sizeof(*r));
    r->kind = LW_SPILL_VALUE;
    r->source = source;
    r->ep = LW_BYTES_STR(ev->endpoint);
    r->path = LW_BYTES(json_string_value(jp), json_string_length(jp));
    enum lw_m2m_type t = lw_m2m_type_parse(json_string_value(jt), json_string_length(jt));
    r->type = (uint8_t)t;
    r->at_us = ev->time_ms * 1000;
    if (json_is_number(jtime)) {
        double s = json_number_value(jtime);
        if (isfinite(s) && s > 0 && s < 1e11)
            r->at_us = (int64_t)llround(s * 1e6);
    }
    switch (t) {
    case LW_M2M_T_STRING:
    case LW_M2M_T_CORELNK:
    case LW_M2M_T_OBJLNK:
        if (!json_is_string(jv))
            return false;
        r->bytes = LW_BYTES(json_string_value(jv), json_string_length(jv));
        return true;
    case LW_M2M_T_OPAQUE:
        return json_is_string(jv) && lw_b64_decode(&T.arena, json_string_value(jv),
                                                   json_string_length(jv), &r->bytes) == 0;
    case LW_M2M_T_INTEGER:
        if (json_is_integer(jv)) {
            r->i = json_integer_value(jv);
            return true;
        }
        return json_is_string(jv) &&
               lw_parse_i64(json_string_value(jv), json_string_length(jv), &r->i) == 0;
    case LW_M2M_T_UNSIGNED:
        if (json_is_integer(jv) && json_integer_value(jv) >= 0) {
            r->u = (uint64_t)json_integer_value(jv);
            return true;
        }
        return json_is_string(jv) &&
               lw_parse_u64(json_string_value(jv), json_string_length(jv), &r->u) == 0;
    case LW_M2M_T_TIME: {
        const json_t *e = json_object_get(v, "epoch");
        if (json_is_integer(e)) {
            r->i = json_integer_value(e);
            return true;
        }
        return json_is_string(e) &&
               lw_parse_i64(json_string_value(e), json_string_length(e), &r->i) == 0;
    }
    case LW_M2M_T_FLOAT:
        if (!json_is_number(jv))
            return false;
        r->f = json_number_value(jv);
        return true;
    case LW_M2M_T_BOOLEAN:
        if (!json_is_boolean(jv))
            return false;
        r->b = json_is_true(jv);
        return true;
    default: return false;
    }
}

static void enqueue_values(const struct lw_event *ev, const json_t *values, uint8_t source)
{
    size_t i;
    const json_t *v;
    if (!json_is_array(values))
        return;
    json_array_foreach(values, i, v)
    {
        struct lw_spill_rec r;
        lw_buf_reset(&T.enc);
        if (value_rec(v, ev, source, &r) && lw_spill_encode(&T.enc, &r) == 0)
            enqueue(T.enc.data, T.enc.len);
    }
    lw_arena_reset(&T.arena);
}

static void schedule(void);

static bool memchr_nonascii(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] >= 0x80)
            return true;
    return false;
}

static void on_event(void *ctx, const struct lw_event *ev)
{
    (void)ctx;
    if (T.stopping)
        return;
    struct lw_spill_rec r = {.kind = LW_SPILL_EVENT};
    /* The text the other sinks share; with non-ASCII in it, the escaped form as before. */
    size_t dlen = 0;
    const char *shared = lw_event_data_json(ev, &dlen);
    char *data = NULL;
    struct lw_buf ab = {0};
    if (shared && memchr_nonascii(shared, dlen)) {
        /* what json_dumps(JSON_COMPACT | JSON_ENSURE_ASCII) wrote, from the shared text */
        lw_buf_init(&ab, dlen + dlen / 2 + 16);
        if (lw_json_put_ascii(&ab, shared, dlen) == 0 && lw_buf_status(&ab) == 0) {
            shared = (const char *)ab.data;
            dlen = ab.len;
        } else {
            shared = NULL;
        }
    } else if (!shared && ev->data) { /* the event's text failed (its endpoint): data alone */
        data = json_dumps(ev->data, JSON_COMPACT | JSON_ENSURE_ASCII);
        shared = data;
        dlen = data ? strlen(data) : 0;
    } else if (!shared && ev->write_data) {
        lw_buf_init(&ab, 512);
        if (ev->write_data(ev->write_ctx, &ab) == 0 && lw_buf_status(&ab) == 0) {
            struct lw_buf raw = ab;
            lw_buf_init(&ab, raw.len + raw.len / 2 + 16);
            if (lw_json_put_ascii(&ab, (const char *)raw.data, raw.len) == 0 &&
                lw_buf_status(&ab) == 0) {
                shared = (const char *)ab.data;
                dlen = ab.len;
            }
            lw_buf_deinit(&raw);
        }
    }
    if (shared) {
        r.id = ev->id;
        r.time_ms = ev->time_ms;
        r.evtype = LW_BYTES_STR(lw_event_type_name(ev->type));
        r.ep = LW_BYTES_STR(ev->endpoint);
        r.data = LW_BYTES(shared, dlen);
        lw_buf_reset(&T.enc);
        if (lw_spill_encode(&T.enc, &r) == 0)
            enqueue(T.enc.data, T.enc.len);
    }
    free(data);
    lw_buf_deinit(&ab);
    if (T.enabled) {
        switch (ev->type) {
        case LW_EV_NOTIFICATION:
            enqueue_values(ev, json_object_get(ev->data, "values"), LW_SPILL_NOTIFY);
            break;
        case LW_EV_SEND:
            enqueue_values(ev, json_object_get(ev->data, "values"), LW_SPILL_SEND);
            break;
        case LW_EV_OPERATION: {
            const char *kind = json_string_value(json_object_get(ev->data, "kind"));
            const char *state = json_string_value(json_object_get(ev->data, "state"));
            if (kind && state && !strcmp(state, "succeeded") &&
                (!strcmp(kind, "read") || !strcmp(kind, "read-composite") ||
                 !strcmp(kind, "observe")))
                enqueue_values(ev, json_object_get(json_object_get(ev->data, "result"), "values"),
                               !strcmp(kind, "observe") ? LW_SPILL_NOTIFY : LW_SPILL_READ);
            break;
        }
        default: break;
        }
    }
    gauges();
    if (mem_bytes() >= BATCH_MAX_BYTES)
        schedule();
}

/* ---- batch parameters -------------------------------------------------------------------------
 */

/* JSON string of arbitrary bytes: invalid UTF-8 and NUL (jsonb refuses \u0000) become U+FFFD. */
static void put_jstr(struct lw_buf *o, const uint8_t *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    lw_buf_put_u8(o, '"');
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            size_t j = i + 1;
            while (j < n && s[j] >= 0x20 && s[j] < 0x80 && s[j] != '"' && s[j] != '\\')
                j++;
            lw_buf_put(o, s + i, j - i);
            i = j;
            continue;
        }
        if (c == '"' || c == '\\') {
            uint8_t e[2] = {'\\', c};
            lw_buf_put(o, e, 2);
            i++;
            continue;
        }
        if (c < 0x20) {
            if (c == 0) {
                lw_buf_put_str(o, "\\ufffd");
            } else {
                uint8_t e[6] = {'\\', 'u', '0', '0', (uint8_t)hex[c >> 4], (uint8_t)hex[c & 15]};
                lw_buf_put(o, e, 6);
            }
            i++;
            continue;
        }
        /* a UTF-8 sequence: validate (no overlongs, surrogates or values past U+10FFFF) */
        size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
        bool ok = len > 0 && c <= 0xF4 && i + len <= n;
        for (size_t k = 1; ok && k < len; k++)
            ok = (s[i + k] & 0xC0) == 0x80;
        if (ok && len == 3)
            ok = !(c == 0xE0 && s[i + 1] < 0xA0) && !(c == 0xED && s[i + 1] >= 0xA0);
        if (ok && len == 4)
            ok = !(c == 0xF0 && s[i + 1] < 0x90) && !(c == 0xF4 && s[i + 1] >= 0x90);
        if (ok) {
            lw_buf_put(o, s + i, len);
            i += len;
        } else {
            lw_buf_put_str(o, "\\ufffd");
            i++;
        }
    }
    lw_buf_put_u8(o, '"');
}

static const char *const source_names[] = {"read", "notify", "send"};

static void put_value_row(struct lw_buf *o, const struct lw_spill_rec *r)
{
    lw_buf_put_str(o, "{\"e\":");
    put_jstr(o, r->ep.ptr, r->ep.len);
    lw_buf_put_str(o, ",\"p\":");
    put_jstr(o, r->path.ptr, r->path.len);
    lw_buf_printf(o, ",\"a\":%" PRId64 ",\"s\":\"%s\",\"t\":\"%s\"", r->at_us,
                  source_names[r->source], lw_m2m_type_api_name((enum lw_m2m_type)r->type));
    switch (r->type) {
    case LW_M2M_T_INTEGER:
    case LW_M2M_T_TIME: lw_buf_printf(o, ",\"i\":%" PRId64, r->i); break;
    case LW_M2M_T_UNSIGNED:
        if (r->u <= (uint64_t)INT64_MAX)
            lw_buf_printf(o, ",\"i\":%" PRIu64, r->u);
        else
            lw_buf_printf(o, ",\"x\":\"%" PRIu64 "\"", r->u);
        break;
    case LW_M2M_T_FLOAT:
        if (isfinite(r->f))
            lw_buf_printf(o, ",\"n\":%.17g", r->f);
        break;
    case LW_M2M_T_BOOLEAN: lw_buf_printf(o, ",\"b\":%s", r->b ? "true" : "false"); break;
    case LW_M2M_T_OPAQUE:
        lw_buf_put_str(o, ",\"y\":\"");
        lw_b64_encode(o, r->bytes, false);
        lw_buf_put_u8(o, '"');
        break;
    default:
        lw_buf_put_str(o, ",\"x\":");
        put_jstr(o, r->bytes.ptr, r->bytes.len);
        break;
    }
    lw_buf_put_u8(o, '}');
}

/* Event data read back from a file is checked: one bad object would refuse the whole batch. */
static bool event_row(struct lw_buf *o, const struct lw_spill_rec *r, bool check)
{
    if (check) {
        json_t *j =
            json_loadb((const char *)r->data.ptr, r->data.len, JSON_DISABLE_EOF_CHECK, NULL);
        bool ok = json_is_object(j);
        json_decref(j);
        if (!ok || memchr(r->data.ptr, 0, r->data.len) || r->id == 0 || r->id > (uint64_t)INT64_MAX)
            return false;
    }
    lw_buf_printf(o, "{\"id\":%" PRIu64 ",\"ms\":%" PRId64 ",\"ty\":", r->id, r->time_ms);
    put_jstr(o, r->evtype.ptr, r->evtype.len);
    lw_buf_put_str(o, ",\"ep\":");
    put_jstr(o, r->ep.ptr, r->ep.len);
    lw_buf_put_str(o, ",\"d\":");
    lw_buf_put(o, r->data.ptr, r->data.len);
    lw_buf_put_u8(o, '}');
    return true;
}

/* Builds $1 (values), $2 (events), $3 (batch id) of the batch; NULL params on OOM. */
static bool batch_params(const struct batch *b, char **params, size_t *nvals, size_t *nevs)
{
    struct lw_buf v, e;
    size_t off = 0;
    struct lw_bytes pl;
    lw_buf_init(&v, b->data.len * 2 + 16);
    lw_buf_init(&e, 256);
    lw_buf_put_u8(&v, '[');
    lw_buf_put_u8(&e, '[');
    *nvals = *nevs = 0;
    while (lw_spill_next(b->data.data, b->data.len, &off, &pl) == 1) {
        struct lw_spill_rec r;
        if (lw_spill_decode(pl, &r) != 0)
            continue;
        if (r.kind == LW_SPILL_VALUE) {
            if (*nvals)
                lw_buf_put_u8(&v, ',');
            put_value_row(&v, &r);
            (*nvals)++;
        } else {
            size_t mark = e.len;
            if (*nevs)
                lw_buf_put_u8(&e, ',');
            if (event_row(&e, &r, b->from_file))
                (*nevs)++;
            else
                e.len = mark;
        }
    }
    lw_buf_put(&v, "]", 2); /* with the NUL */
    lw_buf_put(&e, "]", 2);
    char id[24];
    snprintf(id, sizeof(id), "%" PRIu64, b->id);
    params[0] = (char *)v.data;
    params[1] = (char *)e.data;
    params[2] = strdup(id);
    if (lw_buf_status(&v) || lw_buf_status(&e) || !params[2]) {
        lw_buf_deinit(&v);
        lw_buf_deinit(&e);
        free(params[2]);
        params[0] = params[1] = params[2] = NULL;
        return false;
    }
    return true;
}

/* ---- batches ----------------------------------------------------------------------------------
 */

static uint64_t new_batch_id(void)
{
    uint64_t id = 0;
    while (id == 0) {
        if (lw_random(&id, sizeof(id)) != 0)
            id = (uint64_t)lw_wall_ms() * 1000003u ^ (uint64_t)rand();
        id &= (uint64_t)INT64_MAX;
    }
    return id;
}

/* Moves up to a batch of records from p[*off..end) into b. */
static size_t take(const uint8_t *p, size_t end, size_t *off)
{
    struct lw_bytes pl;
    size_t n = 0;
    while (n < BATCH_MAX_RECS && T.b.data.len < BATCH_MAX_BYTES) {
        size_t at = *off;
        if (lw_spill_next(p, end, off, &pl) != 1)
            break;
        lw_buf_put(&T.b.data, p + at, *off - at);
        n++;
    }
    return n;
}

/* Caught up with the file being written while memory is empty: when it fits, its records move
 * back into the memory queue and new records follow them there (no more files under a steady
 * load once the backlog is gone). The file stays until those records are committed. */
static bool absorb_last_file(void)
{
    if (T.nfiles != 1 || T.files[0] != T.wseq || T.wfd < 0 || T.mem_n != 0 || T.pend_left ||
        T.wbytes > T.mem_max)
        return false;
    close_writer();
    if (!reader_load())
        return false; /* read as a file below (and skipped there) */
    size_t off = T.roff, n = 0;
    struct lw_bytes pl;
    T.mem.len = T.mem_head = 0;
    lw_buf_put(&T.mem, T.rbuf + off, T.rend - off);
    if (lw_buf_status(&T.mem)) {
        T.mem.len = 0;
        T.mem.overflow = false;
        return false;
    }
    while (lw_spill_next(T.rbuf, T.rend, &off, &pl) == 1)
        n++;
    T.mem_n = n;
    T.pend_seq = T.files[0];
    T.pend_left = n;
    uint64_t cur = atomic_load_explicit(&T.spill_bytes, memory_order_relaxed);
    set(&T.spill_bytes, cur > T.rlen ? cur - T.rlen : 0);
    files_pop_front();
    reader_reset();
    if (n == 0) {
        char path[600];
        file_path(path, sizeof(path), T.pend_seq);
        unlink(path);
    }
    T.spilling = false;
    log_info(STORE, "telemetry spill files replayed");
    return true;
}

/* Memory records committed or given up: the absorbed file goes once all of its are. */
static void mem_done(size_t n)
{
    if (!T.pend_left)
        return;
    T.pend_left -= LW_MIN(n, T.pend_left);
    if (T.pend_left == 0) {
        char path[600];
        file_path(path, sizeof(path), T.pend_seq);
        if (unlink(path) != 0 && errno != ENOENT)
            log_warn(STORE, "telemetry spill file not removed: %s: %s", path, strerror(errno));
    }
}

/* An empty queue or batch buffer that grew during a burst (up to telemetry.memory, 64 MB by
 * default) gives the memory back instead of keeping its peak size for the life of the process. */
static void shrink_idle(struct lw_buf *b)
{
    if (b->len == 0 && b->cap > IDLE_CAP) {
        lw_buf_deinit(b);
        lw_buf_init(b, IDLE_CAP);
    }
}

/* Chooses the next batch: memory first (it is older than any spill file), then the files. */
static bool build_batch(void)
{
    lw_buf_reset(&T.b.data);
    T.b.nrec = 0;
    T.b.from_file = false;
    if (T.mem_n == 0 && T.nfiles > 0 && !T.rloaded)
        absorb_last_file();
    if (T.mem_n > 0) {
        size_t off = T.mem_head;
        T.b.nrec = take(T.mem.data, T.mem.len, &off);
        T.mem_head = off;
        T.mem_n -= T.b.nrec;
        if (T.mem_n == 0) {
            T.mem.len = T.mem_head = 0;
            shrink_idle(&T.mem);
        }
    } else {
        while (T.nfiles > 0 && T.b.nrec == 0) {
            if (!T.rloaded) {
                if (T.files[0] == T.wseq && T.wfd >= 0) {
                    /* caught up with the file being written: close it; new records go to
                     * memory once the files are gone when it fits, to a new file otherwise */
                    close_writer();
                }
                if (!reader_load()) {
                    drop_oldest_file();
                    continue;
                }
            }
            size_t off = T.roff;
            T.b.nrec = take(T.rbuf, T.rend, &off);
            T.b.file_end = off;
            T.b.from_file = true;
            if (T.b.nrec == 0)
                drop_oldest_file();
        }
        if (T.nfiles == 0 && T.wfd < 0)
            T.spilling = false;
    }
    if (lw_buf_status(&T.b.data) || T.b.nrec == 0) {
        lw_buf_reset(&T.b.data);
        shrink_idle(&T.b.data);
        return false;
    }
    T.b.active = true;
    T.b.in_db = false;
    T.b.id = new_batch_id();
    gauges();
    return true;
}

static void send_batch(void);

static void on_retry(uv_timer_t *t)
{
    (void)t;
    send_batch();
}

static bool retryable(const PGresult *res)
{
    const char *code = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return !res || !code || strncmp(code, "08", 2) == 0 || strncmp(code, "53", 2) == 0 ||
           strncmp(code, "57", 2) == 0 || strncmp(code, "40", 2) == 0 ||
           strncmp(code, "55", 2) == 0;
}

static void batch_committed(size_t nvals, size_t nevs)
{
    add(&T.batches, 1);
    add(&T.rows, nvals);
    add(&T.events, nevs);
    if (T.b.from_file) {
        add(&T.replayed, T.b.nrec);
        T.roff = T.b.file_end;
        if (T.roff >= T.rend)
            drop_oldest_file();
    } else {
        if (T.pend_left)
            add(&T.replayed, LW_MIN(T.b.nrec, T.pend_left));
        mem_done(T.b.nrec);
    }
    T.b.active = T.b.in_db = false;
    lw_buf_reset(&T.b.data);
    gauges();
}

static void on_batch(void *ctx, const PGresult *res, const char *err)
{
    (void)ctx;
    T.b.in_db = false;
    if (T.stopping)
        return;
    ExecStatusType s = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (res && s == PGRES_TUPLES_OK) {
        /* 0: the ledger already had the batch (a re-send of a committed one) */
        bool applied = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "1") == 0;
        batch_committed(applied ? T.b.nvals : 0, applied ? T.b.nevs : 0);
        send_batch();
        return;
    }
    if (retryable(res)) {
        /* the batch stays the oldest: sent again (same id) once the connection is back */
        uv_timer_start(T.retry_timer, on_retry, res ? RETRY_MS : 0, 0);
        return;
    }
    char why[300];
    snprintf(why, sizeof(why), "%s", res ? PQresultErrorMessage(res) : err);
    why[strcspn(why, "\n")] = '\0';
    add(&T.failed, 1);
    log_err(STORE, "telemetry batch refused by the database, %zu record(s) not written: %s",
            T.b.nrec, why);
    if (T.b.from_file) {
        T.roff = T.b.file_end;
        if (T.roff >= T.rend)
            drop_oldest_file();
    } else {
        mem_done(T.b.nrec);
    }
    T.b.active = false;
    lw_buf_reset(&T.b.data);
    gauges();
    send_batch();
}

static void send_batch(void)
{
    if (!T.started || T.stopping || T.b.in_db || !pgc_up(T.w))
        return;
    if (!T.b.active && !build_batch())
        return;
    char *params[3];
    if (!batch_params(&T.b, params, &T.b.nvals, &T.b.nevs))
        return;
    T.b.in_db = true;
    if (pgc_query(T.w, batch_sql, 3, params, false, on_batch, NULL) != 0)
        T.b.in_db = false;
}

static void schedule(void)
{
    send_batch();
}

static void on_flush(uv_timer_t *t)
{
    (void)t;
    send_batch();
}

/* ---- maintenance ------------------------------------------------------------------------------
 */

static void on_maintained(void *ctx, const PGresult *res, const char *err)
{
    (void)ctx;
    if (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        long n = strtol(PQgetvalue(res, 0, 0), NULL, 10);
        if (n > 0)
            log_info(STORE, "telemetry retention: %ld partition(s) dropped", n);
        return;
    }
    char why[300];
    snprintf(why, sizeof(why), "%s", res ? PQresultErrorMessage(res) : err);
    why[strcspn(why, "\n")] = '\0';
    log_warn(STORE, "telemetry partition maintenance failed: %s", why);
}

static void maintain(void)
{
    char *p[2];
    if (asprintf(&p[0], "%d", AHEAD_DAYS) < 0)
        return;
    if (asprintf(&p[1], "%lld", (long long)T.retention_s) < 0) {
        free(p[0]);
        return;
    }
    pgc_query(T.w, maintain_sql, 2, p, true, on_maintained, NULL);
}

static void on_maint_timer(uv_timer_t *t)
{
    (void)t;
    if (pgc_up(T.w))
        maintain();
}

static void on_state(void *ctx, bool up)
{
    (void)ctx;
    atomic_store_explicit(&T.connected, up, memory_order_relaxed);
    if (up) {
        maintain();
        send_batch();
    }
}

/* ---- metrics ----------------------------------------------------------------------------------
 */

static void write_metrics(void *ctx, struct lw_buf *out)
{
    (void)ctx;
    struct lw_telemetry_stats s;
    lw_telemetry_get_stats(&s);
    static const struct {
        const char *name, *type, *help;
        size_t off;
    } m[] = {
        {"lwm2md_telemetry_rows_total", "counter", "Telemetry rows written",
         offsetof(struct lw_telemetry_stats, rows)},
        {"lwm2md_telemetry_events_total", "counter", "Event rows written",
         offsetof(struct lw_telemetry_stats, events)},
        {"lwm2md_telemetry_batches_total", "counter", "Telemetry batches committed",
         offsetof(struct lw_telemetry_stats, batches)},
        {"lwm2md_telemetry_batches_failed_total", "counter",
         "Telemetry batches refused by the database", offsetof(struct lw_telemetry_stats, failed)},
        {"lwm2md_telemetry_spilled_total", "counter", "Records written to spill files",
         offsetof(struct lw_telemetry_stats, spilled)},
        {"lwm2md_telemetry_replayed_total", "counter", "Records committed from spill files",
         offsetof(struct lw_telemetry_stats, replayed)},
        {"lwm2md_telemetry_dropped_total", "counter", "Records lost: spill file not writable",
         offsetof(struct lw_telemetry_stats, dropped)},
        {"lwm2md_telemetry_queued", "gauge", "Records waiting in memory",
         offsetof(struct lw_telemetry_stats, queued)},
        {"lwm2md_telemetry_queued_bytes", "gauge", "Bytes of records waiting in memory",
         offsetof(struct lw_telemetry_stats, queued_bytes)},
        {"lwm2md_telemetry_spill_files", "gauge", "Spill files waiting to be replayed",
         offsetof(struct lw_telemetry_stats, spill_files)},
        {"lwm2md_telemetry_spill_bytes", "gauge", "Bytes in spill files",
         offsetof(struct lw_telemetry_stats, spill_bytes)},
    };
    for (size_t i = 0; i < LW_ARRAY_SIZE(m); i++) {
        uint64_t v;
        memcpy(&v, (const char *)&s + m[i].off, sizeof(v));
        lw_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", m[i].name, m[i].help,
                      m[i].name, m[i].type, m[i].name, v);
    }
    lw_buf_printf(out,
                  "# HELP lwm2md_telemetry_connected 1 while the telemetry writer's database "
                  "connection is up\n# TYPE lwm2md_telemetry_connected gauge\n"
                  "lwm2md_telemetry_connected %d\n"
                  "# HELP lwm2md_telemetry_spilling 1 while telemetry goes to spill files\n"
                  "# TYPE lwm2md_telemetry_spilling gauge\nlwm2md_telemetry_spilling %d\n",
                  s.connected ? 1 : 0, s.spilling ? 1 : 0);
}

/* ---- start / stop -----------------------------------------------------------------------------
 */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int mkdirs(const char *dir)
{
    char tmp[512];
    snprintf(tmp, sizeof(tmp), "%s", dir);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    return mkdir(tmp, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

/* Lists the spill files and returns the highest event id they hold. */
static int scan_dir(uint64_t *max_event)
{
    DIR *d = opendir(T.dir);
    struct dirent *de;
    *max_event = 0;
    if (!d)
        return LW_EIO;
    while ((de = readdir(d)) != NULL) {
        uint64_t seq;
        size_t len = strlen(de->d_name);
        if (len != 26 || strcmp(de->d_name + 20, ".spill") != 0 ||
            lw_parse_u64(de->d_name, 20, &seq) != 0)
            continue;
        if (files_push(seq, false) != 0)
            break;
    }
    closedir(d);
    if (T.nfiles > 1)
        qsort(T.files, T.nfiles, sizeof(*T.files), cmp_u64);
    /* Event ids are given in order on the control thread and records reach the queue, and the
     * files, in that order (a stop writes the memory queue into a file before every existing
     * one), so the highest id spilled is in the newest file holding any event: files are read
     * from the newest back until one has an event, the others only sized (a restart after a long
     * outage otherwise reads every file: 840 MB took 6.5 s before anything else could start). */
    uint64_t bytes = 0;
    bool found = false;
    for (size_t i = T.nfiles; i-- > 0;) {
        char path[600];
        struct stat sb;
        file_path(path, sizeof(path), T.files[i]);
        if (found) {
            if (stat(path, &sb) == 0)
                bytes += (uint64_t)sb.st_size;
            continue;
        }
        FILE *f = fopen(path, "rb");
        if (!f)
            continue;
        struct lw_buf b;
        lw_buf_init(&b, 65536);
        uint8_t chunk[65536];
        size_t n;
        while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
            lw_buf_put(&b, chunk, n);
        fclose(f);
        bytes += b.len;
        size_t off = LW_SPILL_MAGIC_LEN, end;
        struct lw_bytes pl;
        if (!lw_buf_status(&b) && lw_spill_scan(b.data, b.len, &end) >= 0) {
            while (lw_spill_next(b.data, end, &off, &pl) == 1) {
                struct lw_spill_rec r;
                if (lw_spill_decode(pl, &r) == 0 && r.kind == LW_SPILL_EVENT) {
                    found = true;
                    if (r.id > *max_event)
                        *max_event = r.id;
                }
            }
        }
        lw_buf_deinit(&b);
    }
    set(&T.spill_bytes, bytes);
    if (T.nfiles) {
        T.spilling = true;
        T.wseq = T.files[T.nfiles - 1];
        log_info(STORE,
                 "telemetry: %zu spill file(s) from a previous run to replay (%" PRIu64 " bytes)",
                 T.nfiles, bytes);
    }
    return 0;
}

/* max(events.id), blocking (start, before the loops run); -1 when the database is away. */
static int64_t db_max_event(const char *url)
{
    const char *keys[] = {"dbname", "connect_timeout", NULL};
    const char *vals[] = {url, "3", NULL};
    PGconn *pg = PQconnectdbParams(keys, vals, 1);
    int64_t r = -1;
    if (PQstatus(pg) == CONNECTION_OK) {
        PGresult *res = PQexec(pg, "SELECT coalesce(max(id), 0) FROM events");
        if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
            r = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
    }
    PQfinish(pg);
    return r;
}

static uv_timer_t *new_timer(uv_loop_t *loop)
{
    uv_timer_t *t = malloc(sizeof(*t));
    if (t)
        uv_timer_init(loop, t);
    return t;
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

static void close_timer(uv_timer_t **t)
{
    if (*t) {
        uv_timer_stop(*t);
        uv_close((uv_handle_t *)*t, free_handle);
        *t = NULL;
    }
}

static void apply_cfg(const struct lw_config *cfg)
{
    T.retention_s = (int64_t)cfg->telemetry_retention * 86400;
    T.enabled = cfg->telemetry_enabled;
}

int lw_telemetry_start(uv_loop_t *loop, const struct lw_config *cfg)
{
    if (!cfg->db_url || !*cfg->db_url)
        return 0;
    memset(&T, 0, sizeof(T));
    T.wfd = -1;
    T.loop = loop;
    apply_cfg(cfg);
    T.url = strdup(cfg->db_url);
    if (!T.url)
        return LW_ENOMEM;
    T.mem_max = cfg->telemetry_memory ? cfg->telemetry_memory : 64u * 1024 * 1024;
    if (cfg->telemetry_spill_dir && *cfg->telemetry_spill_dir)
        snprintf(T.dir, sizeof(T.dir), "%s", cfg->telemetry_spill_dir);
    else
        snprintf(T.dir, sizeof(T.dir), "%s/telemetry-spill", cfg->state_dir);
    if (mkdirs(T.dir) != 0) {
        log_err(STORE, "telemetry spill directory not usable: %s: %s", T.dir, strerror(errno));
        return LW_EIO;
    }
    uint64_t max_ev = 0;
    if (scan_dir(&max_ev) != 0) {
        log_err(STORE, "telemetry spill directory not readable: %s: %s", T.dir, strerror(errno));
        return LW_EIO;
    }
    int64_t db_max = db_max_event(cfg->db_url);
    uint64_t first = LW_MAX(max_ev, db_max > 0 ? (uint64_t)db_max : 0) + 1;
    if (db_max < 0) {
        /* ids must not collide with rows written by an earlier run that the database holds:
         * without it, start above any id a clock-based earlier run could have reached */
        first = LW_MAX(first, (uint64_t)lw_wall_ms() * 1000);
        log_warn(STORE, "database not reachable at start: event ids start at %" PRIu64, first);
    }
    lw_events_init(first);
    lw_buf_init(&T.mem, IDLE_CAP);
    lw_buf_init(&T.b.data, IDLE_CAP);
    lw_buf_init(&T.enc, 1024);
    lw_arena_init(&T.arena, 4096, 16u << 20);
    T.flush_timer = new_timer(loop);
    T.retry_timer = new_timer(loop);
    T.maint_timer = new_timer(loop);
    T.w = pgc_new(loop, cfg->db_url, "telemetry", on_state, NULL);
    T.q = pgc_new(loop, cfg->db_url, "telemetry queries", NULL, NULL);
    if (!T.flush_timer || !T.retry_timer || !T.maint_timer || !T.w || !T.q) {
        pgc_free(T.w);
        pgc_free(T.q);
        close_timer(&T.flush_timer);
        close_timer(&T.retry_timer);
        close_timer(&T.maint_timer);
        return LW_ENOMEM;
    }
    uv_timer_start(T.flush_timer, on_flush, FLUSH_MS, FLUSH_MS);
    uv_timer_start(T.maint_timer, on_maint_timer, MAINTAIN_MS, MAINTAIN_MS);
    T.sink.on_event = on_event;
    lw_events_subscribe(&T.sink);
    T.metrics.write = write_metrics;
    lw_metrics_register(&T.metrics);
    T.started = true;
    gauges();
    log_info(STORE, "telemetry write-behind: %s, spill directory %s, next event id %" PRIu64,
             T.enabled ? "values and events" : "events only", T.dir, first);
    return 0;
}

/* Writes batches with blocking calls until everything is written or the budget is spent. */
static void drain_blocking(const char *url)
{
    const char *keys[] = {"dbname", "connect_timeout", NULL};
    const char *vals[] = {url, "2", NULL};
    uint64_t t0 = uv_hrtime();
    if (!T.b.active && T.mem_n == 0 && T.nfiles == 0)
        return;
    PGconn *pg = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(pg) != CONNECTION_OK) {
        PQfinish(pg);
        return;
    }
    PQsetNoticeProcessor(pg, NULL, NULL);
    while ((uv_hrtime() - t0) / 1000000 < (uint64_t)STOP_BUDGET_MS) {
        if (!T.b.active && !build_batch())
            break;
        char *params[3];
        if (!batch_params(&T.b, params, &T.b.nvals, &T.b.nevs))
            break;
        PGresult *res =
            PQexecParams(pg, batch_sql, 3, NULL, (const char *const *)params, NULL, NULL, 0);
        for (int i = 0; i < 3; i++)
            free(params[i]);
        bool ok = PQresultStatus(res) == PGRES_TUPLES_OK;
        if (ok) {
            bool applied = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "1") == 0;
            batch_committed(applied ? T.b.nvals : 0, applied ? T.b.nevs : 0);
        }
        PQclear(res);
        if (!ok)
            break;
    }
    PQfinish(pg);
}

/* Writes the batch (when it came from memory) and the memory queue into a spill file ordered
 * before every existing one. */
static void spill_memory(void)
{
    size_t n = T.mem_n + (T.b.active && !T.b.from_file ? T.b.nrec : 0);
    if (n == 0)
        return;
    uint64_t seq = T.nfiles ? T.files[0] - 1 : T.wseq + 1;
    if (T.nfiles && T.files[0] == 0) {
        log_err(STORE, "telemetry: %zu record(s) lost at stop: no spill sequence left", n);
        return;
    }
    int fd = create_file(seq);
    bool ok = fd >= 0;
    if (ok && T.b.active && !T.b.from_file)
        ok = write_all(fd, T.b.data.data, T.b.data.len);
    if (ok)
        ok = write_all(fd, T.mem.data + T.mem_head, T.mem.len - T.mem_head);
    if (fd >= 0 && fsync(fd) != 0)
        ok = false;
    if (fd >= 0)
        close(fd);
    if (ok)
        log_info(STORE, "telemetry: %zu record(s) not written kept in a spill file", n);
    else
        log_err(STORE, "telemetry: %zu record(s) lost at stop: spill file not written", n);
}

void lw_telemetry_stop(void)
{
    if (!T.started)
        return;
    lw_events_unsubscribe(&T.sink);
    lw_metrics_unregister(&T.metrics);
    T.stopping = true;
    close_timer(&T.flush_timer);
    close_timer(&T.retry_timer);
    close_timer(&T.maint_timer);
    pgc_free(T.q);
    pgc_free(T.w);
    T.q = T.w = NULL;
    close_writer();
    drain_blocking(T.url);
    if (T.pend_left) {
        /* its records still queued are in memory, which spill_memory writes out below */
        mem_done(T.pend_left);
    }
    spill_memory();
    if (T.wfd >= 0 && fsync(T.wfd) != 0)
        log_warn(STORE, "telemetry spill file not synced: %s", strerror(errno));
    close_writer();
    reader_reset();
    lw_buf_deinit(&T.mem);
    lw_buf_deinit(&T.b.data);
    lw_buf_deinit(&T.enc);
    lw_arena_deinit(&T.arena);
    free(T.files);
    T.files = NULL;
    T.nfiles = 0;
    free(T.url);
    T.url = NULL;
    T.started = false;
    atomic_store_explicit(&T.connected, false, memory_order_relaxed);
}

bool lw_telemetry_running(void)
{
    return T.started;
}

void lw_telemetry_get_stats(struct lw_telemetry_stats *o)
{
#define LD(f) o->f = atomic_load_explicit(&T.f, memory_order_relaxed)
    LD(rows);
    LD(events);
    LD(batches);
    LD(failed);
    LD(spilled);
    LD(replayed);
    LD(dropped);
    LD(queued);
    LD(queued_bytes);
    LD(spill_files);
    LD(spill_bytes);
#undef LD
    o->connected = atomic_load_explicit(&T.connected, memory_order_relaxed);
    o->spilling = atomic_load_explicit(&T.spilling_a, memory_order_relaxed);
}

/* ---- queries ----------------------------------------------------------------------------------
 */

/* Cursor "<at_us>_<skip>_<path>": rows ordered by (at, path) resume at the first row >= (at,
 * path), skipping `skip` rows equal to it (rows sharing a time and path). */
struct cursor {
    int64_t at_us;
    unsigned skip;
    char path[64];
};

static bool cursor_parse(const char *s, struct cursor *c)
{
    const char *u1 = strchr(s, '_');
    const char *u2 = u1 ? strchr(u1 + 1, '_') : NULL;
    uint64_t skip;
    if (!u2 || lw_parse_i64(s, (size_t)(u1 - s), &c->at_us) != 0 ||
        lw_parse_u64(u1 + 1, (size_t)(u2 - u1 - 1), &skip) != 0 || skip > 100000 ||
        strlen(u2 + 1) >= sizeof(c->path))
        return false;
    for (const char *p = u2 + 1; *p; p++)
        if (!(*p == '/' || (*p >= '0' && *p <= '9')))
            return false;
    c->skip = (unsigned)skip;
    snprintf(c->path, sizeof(c->path), "%s", u2 + 1);
    return true;
}

struct tq {
    lw_telemetry_done_fn done;
    void *ctx;
    unsigned limit;
    struct cursor cur;
};

static json_t *row_json(const PGresult *res, int i, int64_t *at_us)
{
    const char *type = PQgetvalue(res, i, 1);
    enum lw_m2m_type t = lw_m2m_type_parse(type, strlen(type));
    json_t *o = json_object();
    char ts[48];
    *at_us = strtoll(PQgetvalue(res, i, 2), NULL, 10);
    json_object_set_new(o, "path", json_string(PQgetvalue(res, i, 0)));
    json_object_set_new(o, "type", json_string(type));
    json_t *v = json_null();
    switch (t) {
    case LW_M2M_T_INTEGER:
    case LW_M2M_T_UNSIGNED:
    case LW_M2M_T_TIME: {
        const char *s = !PQgetisnull(res, i, 5) ? PQgetvalue(res, i, 5) : PQgetvalue(res, i, 7);
        long double d = strtold(s, NULL);
        int64_t iv = strtoll(s, NULL, 10);
        if (t == LW_M2M_T_TIME) {
            char b[32];
            json_object_set_new(o, "epoch", json_integer(iv));
            values_rfc3339(iv, b);
            v = json_string(b);
        } else if (d <= 9007199254740992.0L && d >= -9007199254740992.0L) {
            v = json_integer(iv);
        } else {
            v = json_string(s);
        }
        break;
    }
    case LW_M2M_T_FLOAT:
        if (!PQgetisnull(res, i, 4))
            v = json_real(strtod(PQgetvalue(res, i, 4), NULL));
        break;
    case LW_M2M_T_BOOLEAN:
        if (!PQgetisnull(res, i, 6))
            v = json_boolean(PQgetvalue(res, i, 6)[0] == 't');
        break;
    case LW_M2M_T_OPAQUE: v = json_string(PQgetvalue(res, i, 8)); break;
    default:
        if (!PQgetisnull(res, i, 7))
            v = json_string(PQgetvalue(res, i, 7));
        break;
    }
    json_object_set_new(o, "value", v ? v : json_null());
    time_t tt = (time_t)(*at_us / 1000000);
    struct tm tm;
    gmtime_r(&tt, &tm);
    size_t n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    int us = (int)(*at_us % 1000000);
    if (us < 0)
        us += 1000000;
    snprintf(ts + n, sizeof(ts) - n, ".%06dZ", us);
    json_object_set_new(o, "timestamp", json_string(ts));
    json_object_set_new(o, "source", json_string(PQgetvalue(res, i, 3)));
    return o;
}

static void on_query(void *ctx, const PGresult *res, const char *err)
{
    struct tq *q = ctx;
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
        if (res)
            log_warn(STORE, "telemetry query failed: %s", PQresultErrorMessage(res));
        else
            log_debug(STORE, "telemetry query failed: %s", err);
        q->done(q->ctx, 503, NULL);
        free(q);
        return;
    }
    json_t *vals = json_array();
    int n = PQntuples(res);
    unsigned skipped = 0, returned = 0;
    int64_t last_at = 0;
    char last_path[64] = "";
    unsigned same = 0; /* rows returned equal to (last_at, last_path) */
    for (int i = 0; i < n && returned < q->limit; i++) {
        int64_t at;
        json_t *row = row_json(res, i, &at);
        const char *path = PQgetvalue(res, i, 0);
        if (skipped < q->cur.skip && at == q->cur.at_us && !strcmp(path, q->cur.path)) {
            skipped++;
            json_decref(row);
            continue;
        }
        json_array_append_new(vals, row);
        returned++;
        if (at == last_at && !strcmp(path, last_path)) {
            same++;
        } else {
            last_at = at;
            snprintf(last_path, sizeof(last_path), "%s", path);
            same = 1;
        }
    }
    json_t *next = json_null();
    if (returned == q->limit && returned > 0) {
        char c[128];
        /* rows equal to the cursor's key skipped on earlier pages still sort before these */
        unsigned skip = same;
        if (last_at == q->cur.at_us && !strcmp(last_path, q->cur.path))
            skip += q->cur.skip;
        snprintf(c, sizeof(c), "%" PRId64 "_%u_%s", last_at, skip, last_path);
        next = json_string(c);
    }
    json_t *out = json_object();
    json_object_set_new(out, "values", vals);
    json_object_set_new(out, "next_cursor", next);
    q->done(q->ctx, 200, out);
    free(q);
}

int lw_telemetry_query(const char *ep, const char *path, int64_t from_us, int64_t to_us,
                       unsigned limit, const char *cursor, lw_telemetry_done_fn done, void *ctx)
{
    struct tq *q = calloc(1, sizeof(*q));
    char *p[7] = {0};
    if (!q)
        return LW_ENOMEM;
    q->done = done;
    q->ctx = ctx;
    q->limit = limit ? limit : 100;
    q->cur.at_us = from_us;
    if (cursor && *cursor && !cursor_parse(cursor, &q->cur)) {
        free(q);
        return LW_EINVAL;
    }
    if (!T.started || !T.q) {
        free(q);
        done(ctx, 503, NULL);
        return 0;
    }
    p[0] = strdup(ep);
    p[1] = strdup(path ? path : "");
    if (asprintf(&p[2], "%" PRId64, from_us) < 0)
        p[2] = NULL;
    if (asprintf(&p[3], "%" PRId64, to_us) < 0)
        p[3] = NULL;
    if (asprintf(&p[4], "%" PRId64, LW_MAX(q->cur.at_us, from_us)) < 0)
        p[4] = NULL;
    p[5] = strdup(q->cur.at_us > from_us || (cursor && *cursor) ? q->cur.path : "");
    if (asprintf(&p[6], "%u", q->limit + q->cur.skip) < 0)
        p[6] = NULL;
    for (int i = 0; i < 7; i++) {
        if (!p[i]) {
            for (int k = 0; k < 7; k++)
                free(p[k]);
            free(q);
            return LW_ENOMEM;
        }
    }
    return pgc_query(T.q, query_sql, 7, p, true, on_query, q) == 0 ? 0 : (free(q), LW_ENOMEM);
}

struct eq {
    lw_telemetry_done_fn done;
    void *ctx;
};

static void on_events(void *ctx, const PGresult *res, const char *err)
{
    struct eq *q = ctx;
    (void)err;
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
        q->done(q->ctx, 503, NULL);
        free(q);
        return;
    }
    json_t *a = json_array();
    for (int i = 0; i < PQntuples(res); i++) {
        json_t *data = json_loads(PQgetvalue(res, i, 4), 0, NULL);
        json_array_append_new(a, json_pack("{s:I, s:s, s:I, s:s, s:o}", "id",
                                           (json_int_t)strtoll(PQgetvalue(res, i, 0), NULL, 10),
                                           "type", PQgetvalue(res, i, 1), "time_ms",
                                           (json_int_t)strtoll(PQgetvalue(res, i, 2), NULL, 10),
                                           "endpoint", PQgetvalue(res, i, 3), "data",
                                           data ? data : json_object()));
    }
    q->done(q->ctx, 200, a);
    free(q);
}

int lw_telemetry_events(uint64_t after, uint64_t before, unsigned limit, lw_telemetry_done_fn done,
                        void *ctx)
{
    char *p[3];
    if (!T.started || !T.q) {
        done(ctx, 503, NULL);
        return 0;
    }
    struct eq *q = calloc(1, sizeof(*q));
    if (!q)
        return LW_ENOMEM;
    q->done = done;
    q->ctx = ctx;
    if (asprintf(&p[0], "%" PRIu64, after) < 0) {
        free(q);
        return LW_ENOMEM;
    }
    if (asprintf(&p[1], "%" PRIu64, LW_MIN(before, (uint64_t)INT64_MAX)) < 0) {
        free(p[0]);
        free(q);
        return LW_ENOMEM;
    }
    if (asprintf(&p[2], "%u", limit) < 0) {
        free(p[0]);
        free(p[1]);
        free(q);
        return LW_ENOMEM;
    }
    return pgc_query(T.q, events_sql, 3, p, true, on_events, q) == 0 ? 0 : (free(q), LW_ENOMEM);
}
