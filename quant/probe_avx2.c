/* quant/probe_avx2.c: the peak-FMA probe on AVX2 (quant/probe.c): 12
 * independent 8-lane FMA chains, enough to cover the FMA latency of
 * current x86 cores on both FMA ports. */
#include "quant/quant.h"

#include <immintrin.h>

#include "quant/quant_internal.h"

uint64_t qt_fma_burn_avx2(size_t iters, float *sink)
{
    __m256 a[12];
    for (int j = 0; j < 12; j++) a[j] = _mm256_set1_ps((float)j * 1e-3f);
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-6f);
    for (size_t i = 0; i < iters; i++)
        for (int j = 0; j < 12; j++) a[j] = _mm256_fmadd_ps(a[j], m, c);
    __m256 s = a[0];
    for (int j = 1; j < 12; j++) s = _mm256_add_ps(s, a[j]);
    *sink = _mm256_cvtss_f32(s);
    return 2ull * 8 * 12 * iters;
}
