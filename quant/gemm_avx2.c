/* quant/gemm_avx2.c: AVX2 twin of qt_gemm_rows_ref. Vectorized across
 * output columns (8 per register, up to 3 registers) and blocked over 4
 * rows; every output is still one in-order fmaf chain, so the result is
 * bit-identical to the scalar definition. */
#include <immintrin.h>

#include "quant/gemm_internal.h"

#define NC 3 /* column registers per pass: 24 columns */

static inline __m256i lane_mask(size_t cnt)
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)cnt), idx);
}

static inline __attribute__((always_inline)) void
block(const int nr, const float *a, size_t lda, size_t n, const float *b, size_t ldb, size_t l0,
      size_t ncols, float *c, size_t ldc)
{
    __m256 acc[4][NC];
    __m256i m[NC];
    for (int q = 0; q < NC; q++) {
        const size_t lo = (size_t)q * 8;
        m[q] = lane_mask(ncols > lo ? (ncols - lo < 8 ? ncols - lo : 8) : 0);
        for (int r = 0; r < nr; r++) acc[r][q] = _mm256_setzero_ps();
    }
    const int nq = (int)((ncols + 7) / 8);
    for (size_t j = 0; j < n; j++) {
        const float *bj = b + j * ldb + l0;
        __m256 bv[NC];
        for (int q = 0; q < nq; q++) bv[q] = _mm256_maskload_ps(bj + q * 8, m[q]);
        for (int r = 0; r < nr; r++) {
            const __m256 av = _mm256_set1_ps(a[(size_t)r * lda + j]);
            for (int q = 0; q < nq; q++) acc[r][q] = _mm256_fmadd_ps(av, bv[q], acc[r][q]);
        }
    }
    for (int r = 0; r < nr; r++)
        for (int q = 0; q < nq; q++)
            _mm256_maskstore_ps(c + (size_t)r * ldc + l0 + q * 8, m[q], acc[r][q]);
}

void qt_gemm_rows_avx2(const float *a, size_t lda, size_t n_rows, size_t n, const float *b,
                       size_t ldb, size_t k, float *c, size_t ldc)
{
    for (size_t l0 = 0; l0 < k; l0 += 8 * NC) {
        const size_t ncols = k - l0 < 8 * NC ? k - l0 : 8 * NC;
        size_t i = 0;
        for (; i + 4 <= n_rows; i += 4) block(4, a + i * lda, lda, n, b, ldb, l0, ncols, c + i * ldc, ldc);
        switch (n_rows - i) {
        case 3: block(3, a + i * lda, lda, n, b, ldb, l0, ncols, c + i * ldc, ldc); break;
        case 2: block(2, a + i * lda, lda, n, b, ldb, l0, ncols, c + i * ldc, ldc); break;
        case 1: block(1, a + i * lda, lda, n, b, ldb, l0, ncols, c + i * ldc, ldc); break;
        default: break;
        }
    }
}
