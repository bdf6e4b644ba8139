/* quant/probe_avx512.c: the peak-FMA probe on AVX-512 (quant/probe.c): 12
 * independent 16-lane FMA chains. */
#include "quant/quant.h"

#include <immintrin.h>

#include "quant/quant_internal.h"

uint64_t qt_fma_burn_avx512(size_t iters, float *sink)
{
    __m512 a[12];
    for (int j = 0; j < 12; j++) a[j] = _mm512_set1_ps((float)j * 1e-3f);
    const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-6f);
    for (size_t i = 0; i < iters; i++)
        for (int j = 0; j < 12; j++) a[j] = _mm512_fmadd_ps(a[j], m, c);
    __m512 s = a[0];
    for (int j = 1; j < 12; j++) s = _mm512_add_ps(s, a[j]);
    *sink = _mm512_reduce_add_ps(s);
    return 2ull * 16 * 12 * iters;
}
