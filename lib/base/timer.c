#include "timer.h"

#include "util.h"

/* Placement invariant: an armed timer with expires > now sits at level l = the highest 6-bit digit
 * in which expires and now differ, slot = expires's digit l (which is > now's digit l, and the
 * digits above l are equal). As `now` advances, now's digit l only changes through a carry, at
 * which point its lower digits are zero; when it reaches a slot that holds timers, those timers
 * are re-placed (they land on a lower level, or fire when expires == now). */

#define DUE_SLOT 0xffff
#define BITS     6

static inline unsigned digit(uint64_t t, unsigned level)
{
    return (unsigned)(t >> (BITS * level)) & (LW_WHEEL_SLOTS - 1);
}

void lw_wheel_init(struct lw_wheel *w, uint64_t now)
{
    w->now = now;
    w->count = 0;
    for (unsigned l = 0; l < LW_WHEEL_LEVELS; l++)
        w->occupied[l] = 0;
    lw_list_init(&w->due);
    for (unsigned i = 0; i < LW_WHEEL_LEVELS * LW_WHEEL_SLOTS; i++)
        lw_list_init(&w->slots[i]);
}

void lw_timer_init(struct lw_timer *t, lw_timer_fn cb)
{
    lw_list_init(&t->node);
    t->expires = 0;
    t->cb = cb;
    t->slot = DUE_SLOT;
}

static void place(struct lw_wheel *w, struct lw_timer *t)
{
    if (t->expires <= w->now) {
        t->slot = DUE_SLOT;
        lw_list_push_back(&w->due, &t->node);
        return;
    }
    uint64_t diff = t->expires ^ w->now;
    unsigned level = (unsigned)(63 - __builtin_clzll(diff)) / BITS;
    if (level >= LW_WHEEL_LEVELS) { /* beyond 2^48 ms: park in the farthest slot, re-placed later */
        level = LW_WHEEL_LEVELS - 1;
        unsigned d = LW_WHEEL_SLOTS - 1;
        if (digit(w->now, level) == d) { /* cannot happen for realistic clocks; keep it due-safe */
            t->slot = DUE_SLOT;
            lw_list_push_back(&w->due, &t->node);
            return;
        }
        t->slot = (uint16_t)(level * LW_WHEEL_SLOTS + d);
    } else {
        t->slot = (uint16_t)(level * LW_WHEEL_SLOTS + digit(t->expires, level));
    }
    w->occupied[level] |= 1ull << (t->slot % LW_WHEEL_SLOTS);
    lw_list_push_back(&w->slots[t->slot], &t->node);
}

static void unlink_timer(struct lw_wheel *w, struct lw_timer *t)
{
    lw_list_remove(&t->node);
    if (t->slot != DUE_SLOT && lw_list_empty(&w->slots[t->slot]))
        w->occupied[t->slot / LW_WHEEL_SLOTS] &= ~(1ull << (t->slot % LW_WHEEL_SLOTS));
    w->count--;
}

void lw_wheel_arm(struct lw_wheel *w, struct lw_timer *t, uint64_t expires)
{
    if (lw_timer_armed(t))
        unlink_timer(w, t);
    t->expires = expires;
    place(w, t);
    w->count++;
}

void lw_wheel_cancel(struct lw_wheel *w, struct lw_timer *t)
{
    if (lw_timer_armed(t))
        unlink_timer(w, t);
}

/* Next time > now at which level l's lowest occupied slot above now's digit comes due. */
static uint64_t level_event(const struct lw_wheel *w, unsigned l)
{
    unsigned d = digit(w->now, l);
    uint64_t above = d == LW_WHEEL_SLOTS - 1 ? 0 : w->occupied[l] & (~0ull << (d + 1));
    if (!above)
        return LW_WHEEL_NEVER;
    unsigned s = (unsigned)__builtin_ctzll(above);
    unsigned shift = BITS * (l + 1);
    uint64_t base = shift >= 64 ? 0 : (w->now >> shift) << shift;
    return base | ((uint64_t)s << (BITS * l));
}

uint64_t lw_wheel_next_deadline(const struct lw_wheel *w)
{
    if (!lw_list_empty(&w->due))
        return w->now;
    uint64_t best = LW_WHEEL_NEVER;
    for (unsigned l = 0; l < LW_WHEEL_LEVELS; l++) {
        uint64_t t = level_event(w, l);
        if (t < best)
            best = t;
    }
    return best;
}

static uint64_t fire_list(struct lw_wheel *w, struct lw_list *list)
{
    struct lw_list local;
    lw_list_init(&local);
    lw_list_splice_back(&local, list);
    uint64_t n = 0;
    struct lw_list *it;
    while ((it = lw_list_pop_front(&local))) {
        struct lw_timer *t = lw_container_of(it, struct lw_timer, node);
        w->count--;
        n++;
        t->cb(t); /* may re-arm t or touch any other timer, including those still in `local` */
    }
    return n;
}

uint64_t lw_wheel_advance(struct lw_wheel *w, uint64_t now)
{
    uint64_t fired = fire_list(w, &w->due);
    while (w->now < now) {
        uint64_t next = lw_wheel_next_deadline(w);
        if (next > now) {
            w->now = now;
            break;
        }
        w->now = next;
        /* Cascade every level whose current slot is occupied (their lower digits are zero). */
        for (unsigned l = LW_WHEEL_LEVELS - 1; l >= 1; l--) {
            unsigned s = digit(next, l);
            if (!(w->occupied[l] & (1ull << s)))
                continue;
            struct lw_list *head = &w->slots[l * LW_WHEEL_SLOTS + s];
            w->occupied[l] &= ~(1ull << s);
            struct lw_list moving;
            lw_list_init(&moving);
            lw_list_splice_back(&moving, head);
            struct lw_list *it;
            while ((it = lw_list_pop_front(&moving)))
                place(w, lw_container_of(it, struct lw_timer, node));
        }
        unsigned s0 = digit(next, 0);
        if (w->occupied[0] & (1ull << s0)) {
            w->occupied[0] &= ~(1ull << s0);
            fired += fire_list(w, &w->slots[s0]);
        }
        fired += fire_list(
            w, &w->due); /* timers cascaded to exactly now, or armed <= now by callbacks */
    }
    return fired;
}
