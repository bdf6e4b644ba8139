/* quant/lora_avx512.c: the AVX-512 twin of qt_lora_merge_row_ref (quant/lora.c):
 * 16 columns at a time, the same multiply, add and order per element (no
 * FMA), so the result is bit-identical to the scalar definition. */
#include <immintrin.h>

#include "quant/quant_internal.h"

void qt_lora_merge_row_avx512(float *w, size_t n, const float *b, size_t r, const float *a,
                            float s)
{
    const __m512 vs = _mm512_set1_ps(s);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 acc = _mm512_setzero_ps();
        for (size_t k = 0; k < r; k++)
            acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_set1_ps(b[k]),
                                                   _mm512_loadu_ps(a + k * n + i)));
        _mm512_storeu_ps(w + i, _mm512_add_ps(_mm512_loadu_ps(w + i), _mm512_mul_ps(acc, vs)));
    }
    for (; i < n; i++) { /* the tail, as the scalar definition */
        float acc = 0.0f;
        for (size_t k = 0; k < r; k++) acc = acc + b[k] * a[k * n + i];
        w[i] = w[i] + acc * s;
    }
}
