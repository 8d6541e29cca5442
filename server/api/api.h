/* server/api/api.h - the northbound HTTP API (REST under /api/v1, SSE events, webhooks, probes,
 * Prometheus metrics) served on the control thread's libuv loop.
 *
 * Threads: lw_api_start/lw_api_stop/lw_api_reload on the control thread only. The CLI entry points
 * (lw_api_cli_*) run before any loop exists and may block.
 */
#ifndef LW_SERVER_API_H
#define LW_SERVER_API_H

#include "config.h"

#include <stdio.h>
#include <uv.h>

/* Binds every api.listen address, loads API tokens (database.url, if set), starts the event
 * ring, SSE heartbeats and webhook delivery. 0, or a negative LW_E* code after logging why
 * (nothing is left running then). cfg is borrowed: the API copies what it keeps. */
int lw_api_start(uv_loop_t *loop, const struct lw_config *cfg);
/* Graceful stop: stops accepting, answers in-flight requests, closes idle and SSE connections,
 * abandons webhook retries (counted). Call before the last uv_run that drains the loop. */
void lw_api_stop(void);
/* Applies reloadable api.* / webhooks.* keys (SIGHUP). */
void lw_api_reload(const struct lw_config *cfg);

/* `lwm2md token create|list|revoke ...`, `lwm2md healthcheck`, `lwm2md routes`: exit status.
 * argv[0] is the subcommand name. They print to out / err. */
int lw_api_cli_token(const struct lw_config *cfg, int argc, char **argv, FILE *out, FILE *err);
int lw_api_cli_healthcheck(const struct lw_config *cfg, FILE *err);
int lw_api_cli_routes(FILE *out);

#endif
