/* lib/base/timer.h - hierarchical timer wheel (8 levels x 64 slots, 1 tick = 1 ms, 2^48 ms range).
 *
 * One wheel per shard, driven by a single loop timer: arm the loop timer for
 * lw_wheel_next_deadline() and call lw_wheel_advance(now) when it fires. Insert and cancel are
 * O(1); advancing costs O(timers fired + timers cascaded + levels) and skips empty ranges with
 * per-level occupancy bitmaps, so an idle wheel is not walked tick by tick. Timers are intrusive:
 * embed struct lw_timer and recover the owner with lw_container_of in the callback. Callbacks may
 * arm or cancel any timer, including themselves. Not thread-safe: the owning thread only.
 */
#ifndef LW_BASE_TIMER_H
#define LW_BASE_TIMER_H

#include "list.h"

#include <stdbool.h>
#include <stdint.h>

#define LW_WHEEL_LEVELS 8
#define LW_WHEEL_SLOTS  64

struct lw_timer;
typedef void (*lw_timer_fn)(struct lw_timer *t);

struct lw_timer {
    struct lw_list node; /* linked in a slot (or the due list) while armed */
    uint64_t expires;    /* absolute ms */
    lw_timer_fn cb;
    uint16_t slot; /* level * 64 + index, or LW_WHEEL_DUE */
};

struct lw_wheel {
    uint64_t now; /* last time advanced to (ms) */
    uint64_t count;
    uint64_t occupied[LW_WHEEL_LEVELS];
    struct lw_list due; /* armed with expires <= now: fire on the next advance */
    struct lw_list slots[LW_WHEEL_LEVELS * LW_WHEEL_SLOTS];
};

#define LW_WHEEL_NEVER UINT64_MAX

void lw_wheel_init(struct lw_wheel *w, uint64_t now);
/* Prepares a timer (not armed). */
void lw_timer_init(struct lw_timer *t, lw_timer_fn cb);
static inline bool lw_timer_armed(const struct lw_timer *t)
{
    return lw_list_linked(&t->node);
}
/* Arms (or re-arms) t to fire at absolute time `expires` (ms); a time <= now fires on the next
 * lw_wheel_advance. */
void lw_wheel_arm(struct lw_wheel *w, struct lw_timer *t, uint64_t expires);
/* Disarms t if armed; safe to call on an unarmed timer. */
void lw_wheel_cancel(struct lw_wheel *w, struct lw_timer *t);
/* Fires every timer with expires <= now, in expiry order (ties in arming order within a slot).
 * Returns the number fired. `now` earlier than the wheel's time is treated as the wheel's time. */
uint64_t lw_wheel_advance(struct lw_wheel *w, uint64_t now);
/* Earliest time the wheel needs to be advanced to (a timer's expiry or an internal cascade
 * point, never later than the earliest expiry), or LW_WHEEL_NEVER when empty. */
uint64_t lw_wheel_next_deadline(const struct lw_wheel *w);
static inline uint64_t lw_wheel_count(const struct lw_wheel *w)
{
    return w->count;
}

#endif
