/*
 * common/half.h: IEEE binary16 (fp16) and bfloat16 <-> float32 conversion.
 *
 * Rounding to the narrow types is round-to-nearest-even. NaN stays NaN (its
 * top payload bits kept and the quiet bit set), +-Inf stays Inf, subnormals
 * are kept (never flushed). The scalar functions are the definition; the
 * row functions dispatch to F16C/AVX2 or AVX-512 versions that give the
 * same bits (checked in tests/unit/test_half.c). Pure computation,
 * thread-safe, no allocation.
 */
#ifndef QT_HALF_H
#define QT_HALF_H

#include <stddef.h>
#include <stdint.h>

#include "common/cpu.h"

static inline float qt_fp16_to_fp32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13) | (man ? 0x00400000u : 0);
    } else if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: renormalize */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    }
    return qt_f32_from_bits(bits);
}

static inline uint16_t qt_fp32_to_fp16(float f)
{
    uint32_t x = qt_f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) /* NaN: keep top payload bits, quiet */
        return (uint16_t)(sign | 0x7e00 | ((ax >> 13) & 0x3ff));
    if (ax >= 0x477ff000u) /* rounds to >= 65536 -> Inf (also Inf) */
        return (uint16_t)(sign | 0x7c00);
    if (ax < 0x38800000u) { /* below the smallest normal: subnormal or 0 */
        if (ax < 0x33000000u) return sign; /* < half of the smallest subnormal */
        uint32_t e = ax >> 23;
        uint32_t m = (ax & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t q = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t r = ax + 0x0fff + ((ax >> 13) & 1); /* RNE at bit 13 */
    return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
}

static inline float qt_bf16_to_fp32(uint16_t b)
{
    return qt_f32_from_bits((uint32_t)b << 16);
}

static inline uint16_t qt_fp32_to_bf16(float f)
{
    uint32_t x = qt_f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x0040);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}

/* Row conversions (n elements; src and dst must not overlap; any alignment). */
typedef struct qt_half_kernels {
    void (*fp16_to_fp32)(const uint16_t *src, float *dst, size_t n);
    void (*fp32_to_fp16)(const float *src, uint16_t *dst, size_t n);
    void (*bf16_to_fp32)(const uint16_t *src, float *dst, size_t n);
    void (*fp32_to_bf16)(const float *src, uint16_t *dst, size_t n);
} qt_half_kernels;

/* The kernels for isa, or NULL when this build or CPU lacks it. */
const qt_half_kernels *qt_half_kernels_for(qt_isa isa);

/* Dispatched on qt_isa_active(). */
void qt_fp16_to_fp32_row(const uint16_t *src, float *dst, size_t n);
void qt_fp32_to_fp16_row(const float *src, uint16_t *dst, size_t n);
void qt_bf16_to_fp32_row(const uint16_t *src, float *dst, size_t n);
void qt_fp32_to_bf16_row(const float *src, uint16_t *dst, size_t n);

#endif /* QT_HALF_H */
