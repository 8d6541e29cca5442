#include "clock.h"

#include <time.h>

uint64_t lw_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t lw_mono_ms(void)
{
    return lw_mono_ns() / 1000000u;
}

int64_t lw_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t sys_mono(struct lw_clock *c)
{
    (void)c;
    return lw_mono_ms();
}
static int64_t sys_wall(struct lw_clock *c)
{
    (void)c;
    return lw_wall_ms();
}
static uint64_t fake_mono(struct lw_clock *c)
{
    return c->fake_mono;
}
static int64_t fake_wall(struct lw_clock *c)
{
    return c->fake_wall;
}

struct lw_clock *lw_clock_system(void)
{
    static struct lw_clock sys = {.mono_ms = sys_mono, .wall_ms = sys_wall};
    return &sys;
}

void lw_clock_fake_init(struct lw_clock *c, uint64_t mono_ms, int64_t wall_ms)
{
    *c = (struct lw_clock){
        .mono_ms = fake_mono, .wall_ms = fake_wall, .fake_mono = mono_ms, .fake_wall = wall_ms};
}

void lw_clock_fake_advance(struct lw_clock *c, uint64_t ms)
{
    c->fake_mono += ms;
    c->fake_wall += (int64_t)ms;
}
