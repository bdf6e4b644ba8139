/* common/rng.h: splitmix64 (Steele, Lea, Flood 2014), the seeded stream behind
 * every reproducible random choice qtool writes into an output (LoftQ's
 * sketch and default init, --budget-order random): a pure function of the
 * seed, the same on every machine. */
#ifndef QT_COMMON_RNG_H
#define QT_COMMON_RNG_H

#include <stdint.h>

/* The next value of the stream whose state is *s (advanced). */
static inline uint64_t qt_splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

#endif /* QT_COMMON_RNG_H */
