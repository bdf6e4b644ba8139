/* quant/gemm_internal.h: the row-block kernel of qt_gemm_f32 and its ISA
 * twins (quant/ only). */
#ifndef QT_GEMM_INTERNAL_H
#define QT_GEMM_INTERNAL_H

#include <stddef.h>

/* c[i*ldc + l] = sum over j < n, in order, of a[i*lda + j] * b[j*ldb + l]
 * as one fmaf chain starting from +0.0, for i < n_rows, l < k. */
typedef void (*qt_gemm_rows_fn)(const float *a, size_t lda, size_t n_rows, size_t n,
                                const float *b, size_t ldb, size_t k, float *c, size_t ldc);

void qt_gemm_rows_ref(const float *a, size_t lda, size_t n_rows, size_t n, const float *b,
                      size_t ldb, size_t k, float *c, size_t ldc);
void qt_gemm_rows_avx2(const float *a, size_t lda, size_t n_rows, size_t n, const float *b,
                       size_t ldb, size_t k, float *c, size_t ldc);
void qt_gemm_rows_avx512(const float *a, size_t lda, size_t n_rows, size_t n, const float *b,
                         size_t ldb, size_t k, float *c, size_t ldc);

#endif /* QT_GEMM_INTERNAL_H */
