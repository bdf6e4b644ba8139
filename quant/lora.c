/* quant/lora.c: folding a LoRA update into a weight matrix,
 * W' = W + s * (B A) (specs/peft-lora.md §6.1), in fp32: the scalar
 * definition of the row kernel and its threaded driver. The SIMD twins
 * (lora_avx2.c, lora_avx512.c) vectorize over the columns and do the same
 * operations per element in the same order, so they are bit-identical. */
#include "quant/quant.h"

#include "quant/quant_internal.h"

void qt_lora_merge_row_ref(float *w, size_t n, const float *b, size_t r, const float *a,
                           float s)
{
    for (size_t i = 0; i < n; i++) {
        float acc = 0.0f;
        for (size_t k = 0; k < r; k++) acc = acc + b[k] * a[k * n + i];
        w[i] = w[i] + acc * s;
    }
}

qt_status qt_lora_merge(const qt_kernels *k, float *w, size_t n_out, size_t n_in,
                        const float *B, size_t r, const float *A, float s)
{
    if (!w || !B || !A || n_out == 0 || n_in == 0 || r == 0) return QT_ERR_ARG;
    if (!k) k = qt_kernels_active();
    ptrdiff_t o;
    /* rows are independent: any thread count gives the same bytes */
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (n_out * n_in * r >= (1u << 20))
#endif
    for (o = 0; o < (ptrdiff_t)n_out; o++)
        k->lora_merge_row(w + (size_t)o * n_in, n_in, B + (size_t)o * r, r, A, s);
    return QT_OK;
}
