/* quant/gemm.c: a plain fp32 matrix product whose every output element is
 * one in-order fmaf chain, so the result is bit-identical on every ISA and
 * for any thread count (the low-rank factorizations of LoftQ need products
 * with a dense residual matrix whose bytes must not depend on the machine).
 *
 * The kernel computes a block of rows; the AVX2 / AVX-512 twins vectorize
 * across output columns (independent chains), which cannot change a result.
 * The driver splits rows into fixed chunks with OpenMP. */
#include "quant/quant.h"

#include <math.h>

#include "quant/gemm_internal.h"

void qt_gemm_rows_ref(const float *a, size_t lda, size_t n_rows, size_t n, const float *b,
                      size_t ldb, size_t k, float *c, size_t ldc)
{
    for (size_t i = 0; i < n_rows; i++) {
        float *ci = c + i * ldc;
        for (size_t l = 0; l < k; l++) ci[l] = 0.0f;
        for (size_t j = 0; j < n; j++) {
            const float aij = a[i * lda + j];
            const float *bj = b + j * ldb;
            for (size_t l = 0; l < k; l++) ci[l] = fmaf(aij, bj[l], ci[l]);
        }
    }
}

static qt_gemm_rows_fn gemm_rows_for(qt_isa isa)
{
    switch (isa) {
#if defined(__x86_64__)
    case QT_ISA_AVX512: return qt_gemm_rows_avx512;
    case QT_ISA_AVX2: return qt_gemm_rows_avx2;
#endif
    default: return qt_gemm_rows_ref;
    }
}

/* Rows per parallel work item: a multiple of the kernels' row blocking. */
#define GEMM_CHUNK_ROWS 16

qt_status qt_gemm_f32(qt_isa isa, const float *a, size_t m, size_t n, const float *b, size_t k,
                      float *c)
{
    if (!a || !b || !c || m == 0 || n == 0 || k == 0) return QT_ERR_ARG;
    if (!qt_isa_supported(isa)) isa = QT_ISA_REF;
    const qt_gemm_rows_fn rows = gemm_rows_for(isa);
    const size_t n_chunks = (m + GEMM_CHUNK_ROWS - 1) / GEMM_CHUNK_ROWS;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) if (m * n * k > 65536)
#endif
    for (size_t ch = 0; ch < n_chunks; ch++) {
        const size_t r0 = ch * GEMM_CHUNK_ROWS;
        const size_t nr = m - r0 < GEMM_CHUNK_ROWS ? m - r0 : GEMM_CHUNK_ROWS;
        rows(a + r0 * n, n, nr, n, b, k, k, c + r0 * k, k);
    }
    return QT_OK;
}
