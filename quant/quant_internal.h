/* quant/quant_internal.h: helpers shared by the quant/ kernels (quant/ and
 * its tests only): unaligned element loads and the per-ISA kernel tables. */
#ifndef QT_QUANT_INTERNAL_H
#define QT_QUANT_INTERNAL_H

#include <math.h>
#include <string.h>

#include "common/half.h"
#include "quant/quant.h"

extern const qt_kernels qt_kernels_ref;
extern const qt_kernels qt_kernels_avx2;
extern const qt_kernels qt_kernels_avx512;
extern const qt_kernels qt_kernels_neon;

/* Element i of a tensor of type t, widened exactly to float32. */
static inline float qt_ld(qt_src_type t, const void *src, size_t i)
{
    const unsigned char *p = src;
    switch (t) {
    case QT_SRC_F16: {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        return qt_fp16_to_fp32(h);
    }
    case QT_SRC_BF16: {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        return qt_bf16_to_fp32(h);
    }
    default: {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    }
}

/* Float32 i of an unaligned array. */
static inline float qt_ldf(const void *p, size_t i)
{
    float f;
    memcpy(&f, (const unsigned char *)p + 4 * i, 4);
    return f;
}

/* |x| as max accumulator step: NaN never wins (m starts at 0). */
static inline float qt_absmax_step(float m, float x)
{
    float a = fabsf(x);
    return a > m ? a : m;
}

/* Scalar definitions shared with the SIMD files for their tails. */
uint8_t qt_nf4_code(float xn);
uint8_t qt_fp4_code(float xn);
uint8_t qt_dq8_code(const float map[256], float xn); /* dQuantize<0> */
int8_t qt_q8_round(float v);                         /* roundf, NaN -> 0 */

/* The ref kernels (also used by SIMD tables for what they do not vectorize). */
void qt_quant4_ref(bool fp4, qt_src_type t, const void *src, size_t n, size_t block,
                   uint8_t *codes, float *absmax);
void qt_dequant4_ref(const uint8_t *codes, size_t i0, size_t len, const float map[16],
                     float scale, float *dst);
void qt_q8_quant_ref(qt_src_type t, const void *src, size_t n, size_t block, void *dst);
void qt_int8_quant_row_ref(qt_src_type t, const void *src, size_t n_cols, int8_t *cb,
                           float *scb);
void qt_blockwise8_quant_ref(qt_src_type t, const void *src, size_t n, size_t block,
                             const float map[256], uint8_t *codes, float *absmax);
void qt_dot_tile_ref(const float *x, size_t ldx, size_t n_tok, const float *w, size_t ldw,
                     size_t n_rows, size_t n, float *y, size_t ldy);

/* ---- fast exact dQuantize<0> over qt_dynamic_map (double quantization) ----
 * For a non-NaN xn, qt_dq8_code(qt_dynamic_map, xn) is the nearest-entry
 * search, monotone in xn: it equals #{k < 255 : xn > P[k]} where P[k] is the
 * last float that still codes k (the float midpoint of map[k], map[k+1] or
 * the float below it, depending on the tie side). NaN codes 0. The table
 * splits |xn| by its float bits (exponent and 6 mantissa bits: 64 buckets per
 * octave, octaves 2^-24 .. 2^3, clamped at both ends), per sign, so that a
 * bucket holds at most one boundary T (+inf if none):
 * code = base[b] + (xn > T[b]). */
#define QT_DQ8_KMIN (103u << 6) /* bits >> 17 of 2^-24 */
#define QT_DQ8_NBK (27 * 64)    /* buckets per sign: 2^-24 .. 2^3 */
typedef struct qt_dq8_tab {
    float t[2 * QT_DQ8_NBK];      /* [0, NBK): xn >= +0, [NBK, 2 NBK): sign bit set */
    int32_t base[2 * QT_DQ8_NBK];
    float bound[255];             /* P[k] */
} qt_dq8_tab;

/* Builds the table from qt_dq8_code (a few microseconds). false if a bucket
 * would hold two boundaries (never for qt_dynamic_map; tests check). */
bool qt_dq8_tab_init(qt_dq8_tab *tab);

/* One nested block of double quantization, like qt_dq_quantize_with_offset
 * for absmax[0..len), len <= QT_DQ_BLOCK: codes[0..len), *nested. */
void qt_dq_block_ref(const float *absmax, size_t len, float offset, uint8_t *codes,
                     float *nested);
#if defined(__x86_64__)
void qt_dq_block_avx512(const qt_dq8_tab *tab, const float *absmax, size_t len, float offset,
                        uint8_t *codes, float *nested);
#endif

#endif
