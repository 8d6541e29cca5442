/* server/control.h - the control thread's mailbox. The control thread runs the default uv loop:
 * HTTP API, SSE, webhooks, event fan-out, metrics, systemd notifications, reloads. Shards (and
 * any other thread) hand it work with lw_control_post; replies to asynchronous requests from the
 * API come back this way, carrying (id, generation) rather than pointers.
 *
 * Threads: lw_control_start/stop on the control thread; lw_control_post from any thread; the
 * message's run() executes on the control thread (with s == NULL).
 */
#ifndef LW_SERVER_CONTROL_H
#define LW_SERVER_CONTROL_H

#include "shard.h"

#include <stdbool.h>
#include <uv.h>

/* 0 or a negative LW_E* code. */
int lw_control_start(uv_loop_t *loop);
/* Runs what is still queued, then closes the mailbox handle. */
void lw_control_stop(void);
uv_loop_t *lw_control_loop(void);
/* Queues m for the control thread (takes ownership; run(NULL, m) frees or reuses it).
 * false (m not taken) after lw_control_stop. */
bool lw_control_post(struct xmsg *m);
/* true when called on the control thread. */
bool lw_on_control_thread(void);

#endif
