/* quant/gemm_avx512.c: AVX-512 twin of qt_gemm_rows_ref. Vectorized across
 * output columns (16 per register, up to 4 registers) and blocked over 4
 * rows; every output is still one in-order fmaf chain, so the result is
 * bit-identical to the scalar definition. */
#include <immintrin.h>

#include "quant/gemm_internal.h"

#define NC 4 /* column registers per pass: 64 columns */

static inline __attribute__((always_inline)) void
block(const int nr, const float *a, size_t lda, size_t n, const float *b, size_t ldb, size_t l0,
      size_t ncols, float *c, size_t ldc)
{
    __m512 acc[4][NC];
    __mmask16 m[NC];
    for (int q = 0; q < NC; q++) {
        const size_t lo = (size_t)q * 16;
        const size_t cnt = ncols > lo ? (ncols - lo < 16 ? ncols - lo : 16) : 0;
        m[q] = (__mmask16)((1u << cnt) - 1u);
        for (int r = 0; r < nr; r++) acc[r][q] = _mm512_setzero_ps();
    }
    const int nq = (int)((ncols + 15) / 16);
    for (size_t j = 0; j < n; j++) {
        const float *bj = b + j * ldb + l0;
        __m512 bv[NC];
        for (int q = 0; q < nq; q++) bv[q] = _mm512_maskz_loadu_ps(m[q], bj + q * 16);
        for (int r = 0; r < nr; r++) {
            const __m512 av = _mm512_set1_ps(a[(size_t)r * lda + j]);
            for (int q = 0; q < nq; q++) acc[r][q] = _mm512_fmadd_ps(av, bv[q], acc[r][q]);
        }
    }
    for (int r = 0; r < nr; r++)
        for (int q = 0; q < nq; q++)
            _mm512_mask_storeu_ps(c + (size_t)r * ldc + l0 + q * 16, m[q], acc[r][q]);
}

void qt_gemm_rows_avx512(const float *a, size_t lda, size_t n_rows, size_t n, const float *b,
                         size_t ldb, size_t k, float *c, size_t ldc)
{
    for (size_t l0 = 0; l0 < k; l0 += 16 * NC) {
        const size_t ncols = k - l0 < 16 * NC ? k - l0 : 16 * NC;
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
