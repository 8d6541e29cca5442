/* lib/base/clock.h - time sources. lib/ code takes `now` as an argument; the daemon reads it
 * from a struct lw_clock so tests can substitute a fake clock. Any thread. */
#ifndef LW_BASE_CLOCK_H
#define LW_BASE_CLOCK_H

#include <stdint.h>

/* CLOCK_MONOTONIC in ms / ns; wall clock (CLOCK_REALTIME) in ms since the Unix epoch. */
uint64_t lw_mono_ms(void);
uint64_t lw_mono_ns(void);
int64_t lw_wall_ms(void);

struct lw_clock {
    uint64_t (*mono_ms)(struct lw_clock *c);
    int64_t (*wall_ms)(struct lw_clock *c);
    uint64_t fake_mono; /* used by the fake clock */
    int64_t fake_wall;
};

/* The system clock (shared, stateless). */
struct lw_clock *lw_clock_system(void);
/* A fake clock starting at the given times; move it with lw_clock_fake_advance. */
void lw_clock_fake_init(struct lw_clock *c, uint64_t mono_ms, int64_t wall_ms);
void lw_clock_fake_advance(struct lw_clock *c, uint64_t ms);
static inline uint64_t lw_clock_mono(struct lw_clock *c)
{
    return c->mono_ms(c);
}
static inline int64_t lw_clock_wall(struct lw_clock *c)
{
    return c->wall_ms(c);
}

#endif
