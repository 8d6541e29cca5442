/* server/sdnotify.h - systemd service notifications (READY, STOPPING, STATUS, WATCHDOG, RELOADING).
 * No-ops when not started by systemd or built without libsystemd. Control thread only. */
#ifndef LW_SERVER_SDNOTIFY_H
#define LW_SERVER_SDNOTIFY_H

#include <stdint.h>

void lw_sd_notify(const char *state);
/* Watchdog interval in µs requested by the service manager for this process, or 0. */
uint64_t lw_sd_watchdog_usec(void);

#endif
