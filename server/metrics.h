/* server/metrics.h - Prometheus text exposition. Modules register writers once at start; GET
 * /metrics calls each in order. Writers run on the control thread and must only read state that
 * is safe to read from there (atomics, control-thread data). */
#ifndef LW_SERVER_METRICS_H
#define LW_SERVER_METRICS_H

#include "base/buf.h"
#include "base/list.h"

struct lw_metrics_writer {
    struct lw_list link;
    void (*write)(void *ctx, struct lw_buf *out); /* appends "# HELP/# TYPE" and samples */
    void *ctx;
};

void lw_metrics_register(struct lw_metrics_writer *w);
void lw_metrics_unregister(struct lw_metrics_writer *w);
/* Appends every registered writer's output. */
void lw_metrics_write_all(struct lw_buf *out);

#endif
