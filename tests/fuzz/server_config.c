/* Fuzz target: the configuration file parser (user input). The input is written to a memfd and
 * loaded as the main configuration file; every outcome must be a clean success or LW_ECONFIG. */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("lwcfg", 0);
    if (fd < 0)
        return 0;
    if (write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    FILE *devnull = fopen("/dev/null", "w");
    struct lw_cfg_load req = {path, NULL, 0, NULL};
    struct lw_cfg_state *st = NULL;
    if (lw_cfg_load(&req, &st, devnull) == 0) {
        lw_cfg_print(st, devnull);
        lw_cfg_free(st);
    }
    fclose(devnull);
    close(fd);
    return 0;
}
