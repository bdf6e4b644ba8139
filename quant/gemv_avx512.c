/* quant/gemv_avx512.c: the fused decoding dot (qt_dot_rows_fn,
 * quant_internal.h) on AVX-512. Sixteen weight rows are one vector of
 * chains (lane j = row r0 + g + j), two such vectors at a time; 16 columns
 * at a time are loaded, transposed in registers and multiplied in, column
 * by column: y = fmaf(x[k], w[k], y) over k in order, the bits of
 * qt_dot_rows_ref, with no K-major panel written or read. bf16 / fp16 /
 * fp32 rows are read in place; other schemes are dequantized (qt_dq_range,
 * exact) GV_KB columns at a time into a 32-row tile in L1. */
#include "quant/quant.h"

#include <immintrin.h>

#include "quant/quant_internal.h"
#include "quant/simd_avx512.h"

#define GV_KB 128 /* columns per dequantized tile (32 rows: 16 KiB) */

/* The chains of 32 rows (n_rows <= 32 present, rows ld elements apart
 * from base, of type T) over columns [0, n) with x: two vectors of chains,
 * interleaved so that two FMAs are in flight (one chain alone waits on the
 * FMA latency). */
static inline __attribute__((always_inline)) void chains32(qt_src_type T,
                                                           const unsigned char *base, size_t ld,
                                                           size_t n_rows, size_t n,
                                                           const float *x, __m512 acc[2])
{
    const size_t es = T == QT_SRC_F32 ? 4 : 2;
    const unsigned char *base1 = base + es * 16 * ld;
    const size_t nr1 = n_rows > 16 ? n_rows - 16 : 0;
    for (size_t k = 0; k < n; k += 16) {
        const size_t kl = n - k < 16 ? n - k : 16;
        const __mmask16 m = tail_mask(kl);
        __m512 r0[16], r1[16];
        /* the rows are up to 32 streams: fetch 512 bytes ahead of each */
        if (T != QT_SRC_F32 || (k & 16) == 0)
            for (size_t i = 0; i < n_rows; i++)
                _mm_prefetch((const char *)base + es * (i * ld + k) + 512, _MM_HINT_T0);
        load_t16(T, base, ld, n_rows, 0, k, m, r0);
        load_t16(T, base1, ld, nr1, 0, k, m, r1);
        if (kl == 16) {
#pragma GCC unroll 16
            for (size_t j = 0; j < 16; j++) {
                const __m512 xj = _mm512_set1_ps(x[k + j]);
                acc[0] = _mm512_fmadd_ps(xj, r0[j], acc[0]);
                acc[1] = _mm512_fmadd_ps(xj, r1[j], acc[1]);
            }
        } else {
            for (size_t j = 0; j < kl; j++) {
                const __m512 xj = _mm512_set1_ps(x[k + j]);
                acc[0] = _mm512_fmadd_ps(xj, r0[j], acc[0]);
                acc[1] = _mm512_fmadd_ps(xj, r1[j], acc[1]);
            }
        }
    }
}

/* y[0..ng) from the two vectors of chains. */
static void store32(const __m512 acc[2], size_t ng, float *y)
{
    _mm512_mask_storeu_ps(y, tail_mask(ng), acc[0]);
    if (ng > 16) _mm512_mask_storeu_ps(y + 16, tail_mask(ng - 16), acc[1]);
}

/* Plain rows of type T, read where they are stored. */
static inline __attribute__((always_inline)) void plain_rows(qt_src_type T, const qt_dq_ctx *c,
                                                             size_t r0, size_t nr, const float *x,
                                                             float *y)
{
    const size_t n_in = c->w->n_in, es = T == QT_SRC_F32 ? 4 : 2;
    for (size_t g = 0; g < nr; g += 32) {
        const size_t ng = nr - g < 32 ? nr - g : 32;
        const unsigned char *base = (const unsigned char *)c->w->data + es * (r0 + g) * n_in;
        __m512 acc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
        chains32(T, base, n_in, ng, n_in, x, acc);
        store32(acc, ng, y + g);
    }
}

void qt_gemv_f32_avx512(const qt_dq_ctx *c, size_t r0, size_t nr, const float *x, float *y)
{
    plain_rows(QT_SRC_F32, c, r0, nr, x, y);
}

void qt_gemv_bf16_avx512(const qt_dq_ctx *c, size_t r0, size_t nr, const float *x, float *y)
{
    plain_rows(QT_SRC_BF16, c, r0, nr, x, y);
}

void qt_gemv_f16_avx512(const qt_dq_ctx *c, size_t r0, size_t nr, const float *x, float *y)
{
    plain_rows(QT_SRC_F16, c, r0, nr, x, y);
}

/* Any scheme: GV_KB columns of 32 rows dequantized into an L1 tile, then
 * the same chains over the tile. */
void qt_gemv_dq_avx512(const qt_dq_ctx *c, size_t r0, size_t nr, const float *x, float *y)
{
    _Alignas(64) float tile[32 * GV_KB];
    const size_t n_in = c->w->n_in;
    for (size_t g = 0; g < nr; g += 32) {
        const size_t ng = nr - g < 32 ? nr - g : 32;
        __m512 acc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
        for (size_t k0 = 0; k0 < n_in; k0 += GV_KB) {
            const size_t kb = n_in - k0 < GV_KB ? n_in - k0 : GV_KB;
            for (size_t i = 0; i < ng; i++)
                qt_dq_range(c, (r0 + g + i) * n_in + k0, kb, tile + i * GV_KB);
            chains32(QT_SRC_F32, (const unsigned char *)tile, GV_KB, ng, kb, x + k0, acc);
        }
        store32(acc, ng, y + g);
    }
}
