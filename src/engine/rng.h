/* rng — seeded, reproducible random numbers for the engine.
 *
 * Two kinds:
 * - Rng: a sequential stream (xoshiro256**, seeded through splitmix64), for weight
 *   initialisation and shuffling. Same seed → same sequence on every machine: the generator is
 *   integer arithmetic and the float conversions are exact (24-bit mantissas), Box–Muller uses
 *   libm's log/cos/sin in double.
 * - rng_hash_*: counter-based values, a pure function of (seed, index). Dropout uses these so a
 *   mask does not depend on how many threads fill it or in which order.
 *
 * Not thread-safe per Rng (one owner); the hash functions are pure.
 */
#ifndef EASEL_RNG_H
#define EASEL_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct Rng {
    uint64_t s[4];     /* xoshiro256** state, never all zero */
    double spare;      /* second Box–Muller value */
    int has_spare;     /* 1 when spare is valid */
} Rng;

/* Seed the stream. Any seed (0 included) is fine. */
void rng_init(Rng *r, uint64_t seed);

uint64_t rng_u64(Rng *r);
/* Uniform in [0, 1) with 24 random bits (every value exactly representable as float). */
float rng_uniform(Rng *r);
/* Uniform integer in [0, n), n > 0, without modulo bias. */
uint64_t rng_below(Rng *r, uint64_t n);
/* Standard normal (Box–Muller). */
float rng_normal(Rng *r);

/* Fill x[0..n) with uniform values in [lo, hi) / normal values with mean and std. */
void rng_fill_uniform(Rng *r, float *x, size_t n, float lo, float hi);
void rng_fill_normal(Rng *r, float *x, size_t n, float mean, float std);
/* Shuffle idx[0..n) in place (Fisher–Yates). */
void rng_shuffle(Rng *r, int *idx, size_t n);

/* Counter-based: a well-mixed 64-bit value / a uniform [0,1) float for (seed, i): the
 * splitmix64 finaliser applied to seed ^ i·K (inline: dropout calls it for every activation). */
static inline uint64_t rng_hash_u64(uint64_t seed, uint64_t i) {
    uint64_t z = (seed ^ (i * 0xD1B54A32D192ED03ull)) + 2 * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline float rng_hash_uniform(uint64_t seed, uint64_t i) {
    return (float)(rng_hash_u64(seed, i) >> 40) * (1.0f / 16777216.0f);
}

#endif
