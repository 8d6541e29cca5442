/* server/api/telemetry.c - GET /api/v1/devices/{endpoint}/telemetry: stored values of one device
 * (store/telemetry.h), oldest first, in the JSON shape of /values plus a paging cursor. The query
 * runs on the telemetry module's own non-blocking connection; the request is answered from its
 * callback, found again by (connection id, sequence) since the client may have gone meanwhile. */
#include "api_int.h"

#include "base/util.h"
#include "base/err.h"
#include "lwm2m/value.h"
#include "store/telemetry.h"
#include "values.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LIMIT_DEFAULT 100u
#define LIMIT_MAX     10000u
/* 0001-01-01 .. 9999-12-31: inside PostgreSQL's timestamp range */
#define MIN_US (-62135596800LL * 1000000)
#define MAX_US (253402300800LL * 1000000)

/* Epoch seconds (with an optional fraction) or RFC 3339 ("2026-11-22T10:00:00Z", offsets and
 * fractions allowed) into microseconds. false when malformed. */
static bool parse_when(const char *s, int64_t *us)
{
    char *end;
    if (!*s)
        return false;
    if (strchr(s, 'T') == NULL) {
        double v = strtod(s, &end);
        if (*end || end == s || !(v > -1e11 && v < 1e11))
            return false;
        *us = (int64_t)(v * 1e6);
        return true;
    }
    struct tm tm = {0};
    const char *e = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    int64_t frac = 0;
    if (!e)
        return false;
    if (*e == '.') {
        int64_t scale = 100000;
        for (e++; *e >= '0' && *e <= '9'; e++) {
            frac += (*e - '0') * scale;
            scale /= 10;
        }
    }
    int64_t off = 0;
    if ((*e == 'Z' || *e == 'z') && e[1] == '\0') {
        off = 0;
    } else if ((*e == '+' || *e == '-') && strlen(e) == 6 && e[3] == ':' && e[1] >= '0' &&
               e[1] <= '9' && e[2] >= '0' && e[2] <= '9' && e[4] >= '0' && e[4] <= '9' &&
               e[5] >= '0' && e[5] <= '9') {
        off = ((e[1] - '0') * 10 + (e[2] - '0')) * 3600 + ((e[4] - '0') * 10 + (e[5] - '0')) * 60;
        if (*e == '-')
            off = -off;
    } else {
        return false;
    }
    *us = ((int64_t)timegm(&tm) - off) * 1000000 + frac;
    return true;
}

static void on_done(void *ctx, int status, json_t *result)
{
    struct api_req *r = api_req_of_cookie((uint64_t)(uintptr_t)ctx);
    if (!r) {
        json_decref(result);
        return;
    }
    if (status == 200 && result) {
        api_reply_json(r, 200, result);
        return;
    }
    json_decref(result);
    api_problem(r, 503, "unavailable", "the telemetry database is not reachable");
}

void h_telemetry_get(struct api_req *r, char *const *params, const char *query)
{
    char path[64], from[64], to[64], lim[16], cursor[128];
    int64_t from_us = MIN_US, to_us = MAX_US;
    uint64_t limit = LIMIT_DEFAULT;
    const char *ep = params[0];
    int rc = api_query_get(query, "path", path, sizeof(path));
    struct lw_m2m_path p;
    if (rc < 0 || (rc > 0 && (lw_m2m_path_parse(path, strlen(path), &p) != 0 || p.len == 0))) {
        api_problem(r, 400, "invalid-parameter", "path must be an LwM2M path like /3/0 or /3/0/1");
        return;
    }
    if (rc > 0)
        lw_m2m_path_format(&p, path, sizeof(path));
    else
        path[0] = '\0';
    rc = api_query_get(query, "from", from, sizeof(from));
    if (rc < 0 || (rc > 0 && !parse_when(from, &from_us))) {
        api_problem(r, 400, "invalid-parameter",
                    "from must be an RFC 3339 time or seconds since the epoch");
        return;
    }
    rc = api_query_get(query, "to", to, sizeof(to));
    if (rc < 0 || (rc > 0 && !parse_when(to, &to_us))) {
        api_problem(r, 400, "invalid-parameter",
                    "to must be an RFC 3339 time or seconds since the epoch");
        return;
    }
    rc = api_query_get(query, "limit", lim, sizeof(lim));
    if (rc < 0 || (rc > 0 && (lw_parse_u64(lim, strlen(lim), &limit) != 0 || limit == 0 ||
                              limit > LIMIT_MAX))) {
        api_problem(r, 400, "invalid-parameter", "limit must be 1..%u", LIMIT_MAX);
        return;
    }
    rc = api_query_get(query, "cursor", cursor, sizeof(cursor));
    if (rc < 0) {
        api_problem(r, 400, "invalid-parameter", "malformed cursor");
        return;
    }
    if (rc == 0)
        cursor[0] = '\0';
    from_us = LW_MIN(LW_MAX(from_us, MIN_US), MAX_US);
    to_us = LW_MIN(LW_MAX(to_us, MIN_US), MAX_US);
    if (!lw_telemetry_running()) {
        api_problem(r, 503, "unavailable", "telemetry needs database.url");
        return;
    }
    rc = lw_telemetry_query(ep, path, from_us, to_us, (unsigned)limit, cursor, on_done,
                            (void *)(uintptr_t)api_req_cookie(r));
    if (rc == LW_EINVAL)
        api_problem(r, 400, "invalid-parameter", "cursor is not one this server returned");
    else if (rc != 0)
        api_problem(r, 500, "internal", "out of memory");
}
