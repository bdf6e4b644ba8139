/* quant/simd_avx2.h: AVX2 register helpers shared by the AVX2 kernel files
 * (kernels_avx2.c, gemv_avx2.c; include only from files built with the
 * AVX2 flags): the 8 x 8 in-register transpose and the transposed loads of
 * 8 fp32, or 8 bf16 / fp16, weight rows. */
#ifndef QT_SIMD_AVX2_H
#define QT_SIMD_AVX2_H

#include <immintrin.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* In-register transpose of 8 rows of 8. */
static inline __attribute__((always_inline)) void transpose8(__m256 r[8])
{
    __m256 t[8], u[8];
#pragma GCC unroll 16
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
#pragma GCC unroll 16
    for (int g = 0; g < 2; g++) {
        __m256 a0 = t[4 * g], a1 = t[4 * g + 1], b0 = t[4 * g + 2], b1 = t[4 * g + 3];
        u[4 * g + 0] = _mm256_shuffle_ps(a0, b0, 0x44);
        u[4 * g + 1] = _mm256_shuffle_ps(a0, b0, 0xEE);
        u[4 * g + 2] = _mm256_shuffle_ps(a1, b1, 0x44);
        u[4 * g + 3] = _mm256_shuffle_ps(a1, b1, 0xEE);
    }
#pragma GCC unroll 16
    for (int j = 0; j < 4; j++) {
        r[j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x20);
        r[4 + j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
    }
}

/* 8 rows (g .. g+7 of n_rows, zero past it) x kk <= 8 columns from k,
 * transposed: r[j] = column j. */
static inline __attribute__((always_inline)) void load_t8(const unsigned char *base, size_t ld,
                                                          size_t n_rows, size_t g, size_t k,
                                                          size_t kk, __m256 r[8])
{
#pragma GCC unroll 8
    for (size_t i = 0; i < 8; i++) {
        const unsigned char *s = base + 4 * ((g + i) * ld + k);
        if (g + i >= n_rows) {
            r[i] = _mm256_setzero_ps();
        } else if (kk == 8) {
            r[i] = _mm256_loadu_ps((const float *)(const void *)s);
        } else {
            float tmp[8] = {0};
            memcpy(tmp, s, 4 * kk);
            r[i] = _mm256_loadu_ps(tmp);
        }
    }
    transpose8(r);
}

/* load_t8 of bf16 (bf16) or fp16 rows, each value widened to fp32 exactly
 * (bf16: the 16 bits moved to the top; fp16: vcvtph2ps). */
static inline __attribute__((always_inline)) void load_t8_half(bool bf16,
                                                               const unsigned char *base,
                                                               size_t ld, size_t n_rows,
                                                               size_t g, size_t k, size_t kk,
                                                               __m256 r[8])
{
#pragma GCC unroll 8
    for (size_t i = 0; i < 8; i++) {
        const unsigned char *s = base + 2 * ((g + i) * ld + k);
        __m128i h;
        if (g + i >= n_rows) {
            r[i] = _mm256_setzero_ps();
            continue;
        }
        if (kk == 8) {
            h = _mm_loadu_si128((const __m128i *)(const void *)s);
        } else {
            uint16_t tmp[8] = {0};
            memcpy(tmp, s, 2 * kk);
            h = _mm_loadu_si128((const __m128i *)(const void *)tmp);
        }
        r[i] = bf16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
                    : _mm256_cvtph_ps(h);
    }
    transpose8(r);
}

#endif
