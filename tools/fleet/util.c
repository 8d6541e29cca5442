/* tools/fleet/util.c - clock, random numbers and hashing for lwm2m-fleet. Also #included by
 * tests/fuzz/fleet_device.c. */
#include "fleet.h"

#include <time.h>

struct fleet_eng *E;

uint64_t fleet_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t fleet_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* xoroshiro128+: impairment decisions, jitter, MIDs and tokens of simulated devices. Not for
 * secrets; seeded from getrandom. */
uint64_t fleet_rand(void)
{
    uint64_t s0 = E->rng[0], s1 = E->rng[1], r = s0 + s1;
    s1 ^= s0;
    E->rng[0] = ((s0 << 24) | (s0 >> 40)) ^ s1 ^ (s1 << 16);
    E->rng[1] = (s1 << 37) | (s1 >> 27);
    return r;
}

double fleet_rand01(void)
{
    return (double)(fleet_rand() >> 11) / (double)(1ull << 53);
}

/* splitmix64-style mixer of two words (deterministic per-device values). */
uint64_t fleet_hash(uint64_t a, uint64_t b)
{
    uint64_t z = a * 0x9e3779b97f4a7c15ull + b + 0x632be59bd9b4e019ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
