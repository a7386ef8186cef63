/*
 * SplitMix64 (Steele, Lea, Flood 2014) and what the training jobs draw from
 * it: tiny, and the same in C and Swift bit for bit, so a guest job and its
 * native twin (Sources/MLWorkloads) start from the same weights.
 */
#ifndef MALV_SPLITMIX_H
#define MALV_SPLITMIX_H

#include <stdint.h>

static inline uint64_t splitmix64_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* [-bound, bound), in the f32 steps the native jobs repeat. */
static inline float splitmix64_uniform(uint64_t *state, float bound)
{
    return bound * (2.0f * (float)(splitmix64_next(state) >> 40) * (1.0f / 16777216.0f) - 1.0f);
}

/* sqrt without libm (60 Newton steps): the weight bounds, equal on both sides. */
static inline double newton_sqrt(double x)
{
    double r = x > 1 ? x : 1;
    for (int i = 0; i < 60; i++)
        r = 0.5 * (r + x / r);
    return r;
}

#endif
