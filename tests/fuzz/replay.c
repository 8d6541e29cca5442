/* tests/fuzz/replay.c - plain main() that replays fuzz corpora without libFuzzer (Knot DNS style).
 *
 * Usage: replay PATH... ; each PATH is a file or a directory (its regular files and those of its
 * direct subdirectories are replayed). Every input is passed to LLVMFuzzerTestOneInput once; a
 * crash or sanitizer report aborts the run. Prints "replay <path>: N inputs ok" per argument.
 */
#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *data = NULL;
    int rc = -1;
    if (!f)
        goto out;
    if (fseek(f, 0, SEEK_END) != 0)
        goto out;
    long n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0)
        goto out;
    /* malloc(0) may return NULL: always allocate at least one byte. */
    data = malloc((size_t)n + 1);
    if (!data)
        goto out;
    if (n > 0 && fread(data, 1, (size_t)n, f) != (size_t)n)
        goto out;
    LLVMFuzzerTestOneInput(data, (size_t)n);
    rc = 0;
out:
    free(data);
    if (f)
        fclose(f);
    if (rc != 0)
        fprintf(stderr, "replay: cannot read %s\n", path);
    return rc;
}

/* Replays a directory; depth 0 is the argument itself, depth 1 its subdirectories. */
static int replay_dir(const char *path, int depth, size_t *count)
{
    DIR *d = opendir(path);
    int rc = 0;
    if (!d) {
        fprintf(stderr, "replay: cannot open %s\n", path);
        return -1;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char sub[4096];
        int w = snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
        if (w < 0 || (size_t)w >= sizeof(sub))
            continue;
        struct stat st;
        if (stat(sub, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            if (depth == 0 && replay_dir(sub, 1, count) != 0)
                rc = -1;
        } else if (S_ISREG(st.st_mode)) {
            if (replay_file(sub) != 0)
                rc = -1;
            else
                (*count)++;
        }
    }
    closedir(d);
    return rc;
}

int main(int argc, char **argv)
{
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        size_t count = 0;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s: no such file or directory\n", argv[i]);
            rc = 1;
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            if (replay_dir(argv[i], 0, &count) != 0)
                rc = 1;
        } else if (replay_file(argv[i]) == 0) {
            count = 1;
        } else {
            rc = 1;
        }
        printf("replay %s: %zu inputs ok\n", argv[i], count);
    }
    return rc;
}
