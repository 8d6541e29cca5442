/* server/wolfmem.h - wolfSSL's own allocator: per-thread size-class slabs on mmap'd spans.
 *
 * Why: a DTLS session's wolfSSL state (~9 KB in dozens of allocations) is freed when the session
 * hibernates, but from glibc's heap those chunks leave holes between the small long-lived
 * objects of other devices (registrations, blobs), so the resident size per hibernated device
 * stayed at ~7.5 KB for ~1.3 KB of real data. Here wolfSSL memory lives on spans of its own
 * (64 KB, one size class each, never shared with other allocations): once a wave of sessions
 * hibernates, their spans are empty and go back to the kernel whole (munmap; a few are kept
 * for reuse until wolfmem_trim). glibc's allocator has no per-call arena choice, hence this file.
 *
 * Each thread allocates from its own heap (shards are threads); a free from another thread
 * locks the owning heap (every heap has an uncontended-in-practice mutex). Allocations above
 * 8 KB are direct mmaps. Alignment 16 bytes.
 *
 * Install with wolfmem_install() before wolfSSL allocates anything (first thing in main):
 * memory allocated by glibc must never reach wolfmem's free. Not installed in ASan builds, nor
 * with the environment variable LW_WOLFMEM=off (for valgrind runs, which then check wolfSSL's
 * memory through malloc, and for comparisons). Threads: any.
 * Measured with tests/bench/dtls_daemon.sh (2000 devices, one shard, api.sse_ring=16): RSS per
 * registered, hibernated device 6027 B with glibc, ~1440 B with wolfmem (docs/benchmarks.md).
 */
#ifndef LW_SERVER_WOLFMEM_H
#define LW_SERVER_WOLFMEM_H

#include <stdbool.h>
#include <stddef.h>

/* Makes wolfSSL allocate through wolfmem. Returns true when installed (false in sanitizer
 * builds, or when wolfSSL refused). Call once, before any wolfSSL use, from one thread. */
bool wolfmem_install(void);
/* Returns the calling thread's cached empty spans to the kernel (after a hibernation wave). */
void wolfmem_trim(void);

struct wolfmem_stats {
    size_t spans;       /* spans mapped (all heaps), cached empty ones included */
    size_t large;       /* direct mmaps */
    size_t bytes_inuse; /* bytes handed out (size-class rounded) */
};
void wolfmem_stats(struct wolfmem_stats *out);

/* The allocator itself (also for tests): 16-byte aligned; wolfmem_free(NULL) is a no-op. */
void *wolfmem_malloc(size_t n);
void wolfmem_free(void *p);
void *wolfmem_realloc(void *p, size_t n);

#endif
