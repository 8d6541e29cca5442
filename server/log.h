/* server/log.h - structured logging for the daemon (lib/ never logs).
 *
 * log_err/warn/notice/info/debug(GROUP, fmt, ...) with groups sys net dtls coap m2m store shard
 * api mgmt; each group has its own level, changeable at runtime (SIGHUP). The level is checked
 * before any argument is evaluated. Output goes to stderr as
 *   - logfmt on a terminal:   2026-11-22T10:00:00.123Z info  sys  msg="..." key=value
 *   - JSON lines otherwise:   {"ts":"...","level":"info","group":"sys","msg":"...",...}
 *   - journald native fields when JOURNAL_STREAM names our stderr (PRIORITY, LWM2MD_GROUP, ...).
 * Messages follow PostgreSQL's style: lowercase, no trailing period, detail after a colon.
 * Structured fields: append " key=value" pairs with log_kv(); values are quoted when needed.
 * Never pass keys, PSKs or tokens to a log call. log_*_rl variants rate-limit per call site.
 * Thread-safe: every thread may log; lines are written with one write(2) each.
 */
#ifndef LW_SERVER_LOG_H
#define LW_SERVER_LOG_H

#include "config.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

enum lw_log_level {
    LW_LOG_ERR = 3,
    LW_LOG_WARNING = 4,
    LW_LOG_NOTICE = 5,
    LW_LOG_INFO = 6,
    LW_LOG_DEBUG = 7
};
enum lw_log_group {
    LW_LG_SYS,
    LW_LG_NET,
    LW_LG_DTLS,
    LW_LG_COAP,
    LW_LG_M2M,
    LW_LG_STORE,
    LW_LG_SHARD,
    LW_LG_API,
    LW_LG_MGMT,
    LW_LG__COUNT
};

extern _Atomic int lw__log_levels[LW_LG__COUNT];

/* Parses a default level and a group override list ("net=debug,coap=warning") into levels[].
 * Returns NULL on success or a static message naming the problem. */
const char *lw_log_parse_spec(const char *level, const char *groups, int levels[LW_LG__COUNT]);
/* Sets the output format (AUTO picks journal / logfmt / JSON from the environment) and levels.
 * Call from the control thread; safe while other threads log. */
void lw_log_configure(const struct lw_config *cfg);
/* The effective format after AUTO resolution. */
enum lw_log_format lw_log_format_in_use(void);
const char *lw_log_group_name(enum lw_log_group g);

void lw_log_emit(int level, enum lw_log_group g, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static inline bool lw_log_enabled(int level, enum lw_log_group g)
{
    return level <= atomic_load_explicit(&lw__log_levels[g], memory_order_relaxed);
}

/* Per-call-site rate limiter: at most `per_sec` messages per second; suppressed messages are
 * counted and reported with the next message that passes. */
struct lw_log_rl {
    _Atomic int64_t window; /* second of the current window */
    _Atomic unsigned count;
    _Atomic unsigned suppressed;
};
extern _Atomic unsigned lw__log_rate_limit;
bool lw__log_rl_pass(struct lw_log_rl *rl, unsigned *suppressed);

#define LW_LOG(level, grp, ...)                             \
    do {                                                    \
        if (lw_log_enabled((level), LW_LG_##grp))           \
            lw_log_emit((level), LW_LG_##grp, __VA_ARGS__); \
    } while (0)

#define LW_LOG_RL(level, grp, fmt, ...)                                                      \
    do {                                                                                     \
        if (lw_log_enabled((level), LW_LG_##grp)) {                                          \
            static struct lw_log_rl rl__;                                                    \
            unsigned sup__;                                                                  \
            if (lw__log_rl_pass(&rl__, &sup__))                                              \
                lw_log_emit((level), LW_LG_##grp, fmt " suppressed=%u", __VA_ARGS__, sup__); \
        }                                                                                    \
    } while (0)

#define log_err(grp, ...)           LW_LOG(LW_LOG_ERR, grp, __VA_ARGS__)
#define log_warn(grp, ...)          LW_LOG(LW_LOG_WARNING, grp, __VA_ARGS__)
#define log_notice(grp, ...)        LW_LOG(LW_LOG_NOTICE, grp, __VA_ARGS__)
#define log_info(grp, ...)          LW_LOG(LW_LOG_INFO, grp, __VA_ARGS__)
#define log_debug(grp, ...)         LW_LOG(LW_LOG_DEBUG, grp, __VA_ARGS__)
#define log_warn_rl(grp, fmt, ...)  LW_LOG_RL(LW_LOG_WARNING, grp, fmt, __VA_ARGS__)
#define log_info_rl(grp, fmt, ...)  LW_LOG_RL(LW_LOG_INFO, grp, fmt, __VA_ARGS__)
#define log_debug_rl(grp, fmt, ...) LW_LOG_RL(LW_LOG_DEBUG, grp, fmt, __VA_ARGS__)

#endif
