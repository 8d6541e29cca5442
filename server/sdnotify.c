#include "sdnotify.h"

#ifdef LW_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>

void lw_sd_notify(const char *state)
{
    sd_notify(0, state);
}

uint64_t lw_sd_watchdog_usec(void)
{
    uint64_t usec = 0;
    return sd_watchdog_enabled(0, &usec) > 0 ? usec : 0;
}
#else
void lw_sd_notify(const char *state)
{
    (void)state;
}
uint64_t lw_sd_watchdog_usec(void)
{
    return 0;
}
#endif
