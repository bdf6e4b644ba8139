/* quant/gemv_avx2.c: the fused decoding dot (qt_dot_rows_fn, quant_internal.h)
 * on AVX2: as gemv_avx512.c with 8 rows per vector of chains, two vectors
 * at a time: 8 columns at
 * a time are loaded, transposed in registers and multiplied in column by
 * column (y = fmaf(x[k], w[k], y) over k in order, the bits of
 * qt_dot_rows_ref). fp32 rows are read in place; other schemes (bf16 /
 * fp16 included) are dequantized GV_KB columns at a time into an L1 tile. */
#include "quant/quant.h"

#include <immintrin.h>

#include "quant/quant_internal.h"
#include "quant/simd_avx2.h"

#define GV_KB 256 /* columns per dequantized tile */

/* The chains of 16 rows (n_rows <= 16 present, fp32 rows ld floats apart
 * from base) over columns [0, n) with x: two vectors of 8 chains,
 * interleaved so that two FMAs are in flight. */
static inline __attribute__((always_inline)) void chains16(const float *base, size_t ld,
                                                           size_t n_rows, size_t n,
                                                           const float *x, __m256 acc[2])
{
    const unsigned char *b0 = (const unsigned char *)base, *b1 = b0 + 4 * 8 * ld;
    const size_t nr0 = n_rows < 8 ? n_rows : 8, nr1 = n_rows > 8 ? n_rows - 8 : 0;
    for (size_t k = 0; k < n; k += 8) {
        const size_t kl = n - k < 8 ? n - k : 8;
        __m256 r0[8], r1[8];
        if ((k & 8) == 0) /* the rows are up to 16 streams: fetch 512 bytes ahead */
            for (size_t i = 0; i < n_rows; i++)
                _mm_prefetch((const char *)(base + i * ld + k) + 512, _MM_HINT_T0);
        load_t8(b0, ld, nr0, 0, k, kl, r0);
        load_t8(b1, ld, nr1, 0, k, kl, r1);
        if (kl == 8) { /* unrolled: r0, r1 stay in registers */
#pragma GCC unroll 8
            for (size_t j = 0; j < 8; j++) {
                const __m256 xj = _mm256_set1_ps(x[k + j]);
                acc[0] = _mm256_fmadd_ps(xj, r0[j], acc[0]);
                acc[1] = _mm256_fmadd_ps(xj, r1[j], acc[1]);
            }
        } else {
            for (size_t j = 0; j < kl; j++) {
                const __m256 xj = _mm256_set1_ps(x[k + j]);
                acc[0] = _mm256_fmadd_ps(xj, r0[j], acc[0]);
                acc[1] = _mm256_fmadd_ps(xj, r1[j], acc[1]);
            }
        }
    }
}

/* y[0..ng) from the 16 lanes of acc. */
static void store_rows(const __m256 acc[2], size_t ng, float *y)
{
    _Alignas(32) float t[16];
    _mm256_store_ps(t, acc[0]);
    _mm256_store_ps(t + 8, acc[1]);
    memcpy(y, t, ng * sizeof(float));
}

void qt_gemv_f32_avx2(const qt_dq_ctx *c, size_t r0, size_t nr, const float *x, float *y)
{
    const size_t n_in = c->w->n_in;
    for (size_t g = 0; g < nr; g += 16) {
        const size_t ng = nr - g < 16 ? nr - g : 16;
        __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
        chains16((const float *)c->w->data + (r0 + g) * n_in, n_in, ng, n_in, x, acc);
        store_rows(acc, ng, y + g);
    }
}

void qt_gemv_dq_avx2(const qt_dq_ctx *c, size_t r0, size_t nr, const float *x, float *y)
{
    _Alignas(32) float tile[16 * GV_KB];
    const size_t n_in = c->w->n_in;
    for (size_t g = 0; g < nr; g += 16) {
        const size_t ng = nr - g < 16 ? nr - g : 16;
        __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
        for (size_t k0 = 0; k0 < n_in; k0 += GV_KB) {
            const size_t kb = n_in - k0 < GV_KB ? n_in - k0 : GV_KB;
            for (size_t i = 0; i < ng; i++)
                qt_dq_range(c, (r0 + g + i) * n_in + k0, kb, tile + i * GV_KB);
            chains16(tile, GV_KB, ng, kb, x + k0, acc);
        }
        store_rows(acc, ng, y + g);
    }
}
