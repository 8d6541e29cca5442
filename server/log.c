#include "log.h"

#include "base/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef LW_HAVE_SYSTEMD
#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>
#endif

_Atomic int lw__log_levels[LW_LG__COUNT] = {
    LW_LOG_INFO, LW_LOG_INFO, LW_LOG_INFO, LW_LOG_INFO, LW_LOG_INFO,
    LW_LOG_INFO, LW_LOG_INFO, LW_LOG_INFO, LW_LOG_INFO,
};
_Atomic unsigned lw__log_rate_limit = 20;
static _Atomic int log_format = LW_LOGFMT_LOGFMT;

static const char *const group_names[LW_LG__COUNT] = {
    "sys", "net", "dtls", "coap", "m2m", "store", "shard", "api", "mgmt",
};
static const char *const level_names[8] = {
    NULL, NULL, NULL, "err", "warning", "notice", "info", "debug",
};

const char *lw_log_group_name(enum lw_log_group g)
{
    return (unsigned)g < LW_LG__COUNT ? group_names[g] : "?";
}

static int parse_level(const char *s, size_t n)
{
    static const struct {
        const char *name;
        int level;
    } names[] = {
        {"err", LW_LOG_ERR},      {"error", LW_LOG_ERR},     {"warning", LW_LOG_WARNING},
        {"warn", LW_LOG_WARNING}, {"notice", LW_LOG_NOTICE}, {"info", LW_LOG_INFO},
        {"debug", LW_LOG_DEBUG},
    };
    for (size_t i = 0; i < LW_ARRAY_SIZE(names); i++)
        if (strlen(names[i].name) == n && strncmp(names[i].name, s, n) == 0)
            return names[i].level;
    return -1;
}

const char *lw_log_parse_spec(const char *level, const char *groups, int levels[LW_LG__COUNT])
{
    int def = parse_level(level, strlen(level));
    if (def < 0)
        return "level must be one of err, warning, notice, info, debug";
    for (int g = 0; g < LW_LG__COUNT; g++)
        levels[g] = def;
    const char *p = groups;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!*p)
            break;
        const char *eq = strchr(p, '=');
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        if (!eq || eq > end)
            return "groups must be a list of group=level (groups: sys net dtls coap m2m store "
                   "shard api mgmt)";
        size_t glen = (size_t)(eq - p);
        while (glen && p[glen - 1] == ' ')
            glen--;
        int found = -1;
        for (int g = 0; g < LW_LG__COUNT; g++)
            if (strlen(group_names[g]) == glen && strncmp(group_names[g], p, glen) == 0)
                found = g;
        if (found < 0)
            return "unknown log group (groups: sys net dtls coap m2m store shard api mgmt)";
        const char *lv = eq + 1;
        while (*lv == ' ')
            lv++;
        size_t llen = (size_t)(end - lv);
        while (llen && lv[llen - 1] == ' ')
            llen--;
        int l = parse_level(lv, llen);
        if (l < 0)
            return "group level must be one of err, warning, notice, info, debug";
        levels[found] = l;
        p = end;
    }
    return NULL;
}

/* journald's stream protocol: JOURNAL_STREAM="dev:ino" of the stream it gave us as stderr. */
static bool stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    if (!js)
        return false;
    unsigned long long dev, ino;
    if (sscanf(js, "%llu:%llu", &dev, &ino) != 2)
        return false;
    struct stat st;
    return fstat(STDERR_FILENO, &st) == 0 && st.st_dev == dev && st.st_ino == ino;
}

void lw_log_configure(const struct lw_config *cfg)
{
    int levels[LW_LG__COUNT];
    if (!lw_log_parse_spec(cfg->log_level, cfg->log_groups, levels))
        for (int g = 0; g < LW_LG__COUNT; g++)
            atomic_store(&lw__log_levels[g], levels[g]);
    atomic_store(&lw__log_rate_limit, cfg->log_rate_limit);
    int fmt = cfg->log_format;
    if (fmt == LW_LOGFMT_AUTO) {
        if (stderr_is_journal())
            fmt = LW_LOGFMT_JOURNAL;
        else
            fmt = isatty(STDERR_FILENO) ? LW_LOGFMT_LOGFMT : LW_LOGFMT_JSON;
    }
#ifndef LW_HAVE_SYSTEMD
    if (fmt == LW_LOGFMT_JOURNAL)
        fmt = LW_LOGFMT_JSON;
#endif
    atomic_store(&log_format, fmt);
}

enum lw_log_format lw_log_format_in_use(void)
{
    return (enum lw_log_format)atomic_load(&log_format);
}

bool lw__log_rl_pass(struct lw_log_rl *rl, unsigned *suppressed)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    int64_t sec = ts.tv_sec;
    int64_t w = atomic_load(&rl->window);
    if (w != sec && atomic_compare_exchange_strong(&rl->window, &w, sec))
        atomic_store(&rl->count, 0);
    if (atomic_fetch_add(&rl->count, 1) < atomic_load(&lw__log_rate_limit)) {
        *suppressed = atomic_exchange(&rl->suppressed, 0);
        return true;
    }
    atomic_fetch_add(&rl->suppressed, 1);
    return false;
}

static void json_escape(char *out, size_t cap, const char *in)
{
    size_t o = 0;
    for (; *in && o + 7 < cap; in++) {
        unsigned char c = (unsigned char)*in;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
}

void lw_log_emit(int level, enum lw_log_group g, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    int lv = level < LW_LOG_ERR ? LW_LOG_ERR : level > LW_LOG_DEBUG ? LW_LOG_DEBUG : level;
    int format = atomic_load_explicit(&log_format, memory_order_relaxed);
#ifdef LW_HAVE_SYSTEMD
    if (format == LW_LOGFMT_JOURNAL) {
        sd_journal_send("MESSAGE=%s", msg, "PRIORITY=%d", lv, "LWM2MD_GROUP=%s", group_names[g],
                        "SYSLOG_IDENTIFIER=lwm2md", NULL);
        return;
    }
#endif
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[64];
    snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)(ts.tv_nsec / 1000000) % 1000);
    char line[4608];
    int n;
    if (format == LW_LOGFMT_JSON) {
        char esc[4200];
        json_escape(esc, sizeof(esc), msg);
        n = snprintf(line, sizeof(line),
                     "{\"ts\":\"%s\",\"level\":\"%s\",\"group\":\"%s\",\"msg\":\"%s\"}\n", when,
                     level_names[lv], group_names[g], esc);
    } else {
        n = snprintf(line, sizeof(line), "%s %-7s %-5s %s\n", when, level_names[lv], group_names[g],
                     msg);
    }
    if (n > (int)sizeof(line) - 1) {
        n = (int)sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}
