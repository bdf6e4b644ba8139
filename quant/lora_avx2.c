/* quant/lora_avx2.c: the AVX2 twin of qt_lora_merge_row_ref (quant/lora.c):
 * 8 columns at a time, the same multiply, add and order per element (no
 * FMA), so the result is bit-identical to the scalar definition. */
#include <immintrin.h>

#include "quant/quant_internal.h"

void qt_lora_merge_row_avx2(float *w, size_t n, const float *b, size_t r, const float *a,
                            float s)
{
    const __m256 vs = _mm256_set1_ps(s);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 acc = _mm256_setzero_ps();
        for (size_t k = 0; k < r; k++)
            acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(b[k]),
                                                   _mm256_loadu_ps(a + k * n + i)));
        _mm256_storeu_ps(w + i, _mm256_add_ps(_mm256_loadu_ps(w + i), _mm256_mul_ps(acc, vs)));
    }
    for (; i < n; i++) { /* the tail, as the scalar definition */
        float acc = 0.0f;
        for (size_t k = 0; k < r; k++) acc = acc + b[k] * a[k * n + i];
        w[i] = w[i] + acc * s;
    }
}
