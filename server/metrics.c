#include "metrics.h"

#include "base/util.h"

static struct lw_list writers = {&writers, &writers};

void lw_metrics_register(struct lw_metrics_writer *w)
{
    lw_list_push_back(&writers, &w->link);
}
void lw_metrics_unregister(struct lw_metrics_writer *w)
{
    lw_list_remove(&w->link);
}

void lw_metrics_write_all(struct lw_buf *out)
{
    lw_list_foreach (it, &writers) {
        struct lw_metrics_writer *w = lw_container_of(it, struct lw_metrics_writer, link);
        w->write(w->ctx, out);
    }
}
