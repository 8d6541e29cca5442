#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *lw_test_top(void)
{
    const char *t = getenv("LW_TOP");
    return t && *t ? t : ".";
}

const char *lw_test_shared(const char *rel)
{
    static char path[4096];
    snprintf(path, sizeof(path), "%s/../shared/%s", lw_test_top(), rel);
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "SKIP: %s not found (../shared is absent in this clone); test skipped\n",
                path);
        return NULL;
    }
    return path;
}

uint8_t *lw_test_hex(const char *hex, size_t *len)
{
    size_t n = strlen(hex);
    uint8_t *out = malloc(n / 2 + 1);
    size_t o = 0;
    int hi = -1;
    for (size_t i = 0; i < n; i++) {
        char c = hex[i];
        int v;
        if (c == ' ' || c == '\n' || c == '\t')
            continue;
        if (c >= '0' && c <= '9')
            v = c - '0';
        else if (c >= 'a' && c <= 'f')
            v = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v = c - 'A' + 10;
        else
            abort();
        if (hi < 0) {
            hi = v;
        } else {
            out[o++] = (uint8_t)(hi << 4 | v);
            hi = -1;
        }
    }
    if (hi >= 0)
        abort();
    *len = o;
    return out;
}

uint8_t *lw_test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(sz > 0 ? (size_t)sz : 1);
    size_t n = fread(buf, 1, (size_t)sz, f);
    fclose(f);
    *len = n;
    return buf;
}
