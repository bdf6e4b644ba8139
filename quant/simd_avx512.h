/* quant/simd_avx512.h: AVX-512 register helpers shared by the AVX-512
 * kernel files (kernels_avx512.c, gemv_avx512.c; include only from files
 * built with the AVX-512 flags): tail masks, the 16 x 16 in-register
 * transpose and the transposed load of 16 weight rows. */
#ifndef QT_SIMD_AVX512_H
#define QT_SIMD_AVX512_H

#include <immintrin.h>
#include <stddef.h>

#include "quant/quant.h"

/* The first n (< 16: a tail; >= 16: all) lanes. */
static inline __mmask16 tail_mask(size_t n)
{
    return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
}

/* In-register transpose: r[i] (row i, 16 columns) -> r[j] (column j). */
static inline __attribute__((always_inline)) void transpose16(__m512 r[16])
{
    __m512 t[16], u[16];
#pragma GCC unroll 16
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
#pragma GCC unroll 16
    for (int g = 0; g < 4; g++) { /* rows 4g .. 4g+3 */
        __m512 a0 = t[4 * g], a1 = t[4 * g + 1], b0 = t[4 * g + 2], b1 = t[4 * g + 3];
        u[4 * g + 0] = _mm512_shuffle_ps(a0, b0, 0x44);
        u[4 * g + 1] = _mm512_shuffle_ps(a0, b0, 0xEE);
        u[4 * g + 2] = _mm512_shuffle_ps(a1, b1, 0x44);
        u[4 * g + 3] = _mm512_shuffle_ps(a1, b1, 0xEE);
    }
    /* u[4g + j], 128-bit lane L: column 4L + j of rows 4g .. 4g+3 */
#pragma GCC unroll 16
    for (int j = 0; j < 4; j++) {
        __m512 v0 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88);
        __m512 v1 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88);
        __m512 w0 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xDD);
        __m512 w1 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xDD);
        r[j] = _mm512_shuffle_f32x4(v0, v1, 0x88);
        r[8 + j] = _mm512_shuffle_f32x4(v0, v1, 0xDD);
        r[4 + j] = _mm512_shuffle_f32x4(w0, w1, 0x88);
        r[12 + j] = _mm512_shuffle_f32x4(w0, w1, 0xDD);
    }
}

/* 16 rows (g .. g+15 of n_rows, zero past it) x 16 columns from k (m: the
 * columns present) of fp32 (T == QT_SRC_F32), bf16 or fp16 values widened
 * exactly, transposed: r[j] = column j. */
static inline __attribute__((always_inline)) void load_t16(qt_src_type T,
                                                           const unsigned char *base, size_t ld,
                                                           size_t n_rows, size_t g, size_t k,
                                                           __mmask16 m, __m512 r[16])
{
    const size_t es = T == QT_SRC_F32 ? 4 : 2;
#pragma GCC unroll 16
    for (size_t i = 0; i < 16; i++) {
        const unsigned char *s = base + es * ((g + i) * ld + k);
        if (g + i >= n_rows) r[i] = _mm512_setzero_ps();
        else if (T == QT_SRC_F32) r[i] = _mm512_maskz_loadu_ps(m, s);
        else if (T == QT_SRC_BF16)
            r[i] = _mm512_castsi512_ps(
                _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, s)), 16));
        else r[i] = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, s));
    }
    transpose16(r);
}

#endif
