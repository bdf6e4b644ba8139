/* quant/probe_avx2.c: the peak-FMA probe on AVX2 (quant/probe.c): 12
 * independent 8-lane FMA chains held in named registers.
 *
 * Why 12: a core sustains its peak only with latency x FMA pipes chains in
 * flight (4 cycles x 2 pipes = 8 on Zen 4/5 and on Intel since Skylake,
 * 5 x 2 = 10 on Zen 2/3); 12 covers them all, and 12 accumulators plus the
 * two operands fit the 16 ymm registers. The chains are separate variables,
 * not an array: an array indexed in a loop is kept in memory at -O2, and
 * then every FMA waits on a store-to-load forward (the old probe measured
 * that, about half the real peak). */
#include "quant/quant.h"

#include <immintrin.h>

#include "quant/quant_internal.h"

uint64_t qt_fma_burn_avx2(size_t iters, float *sink)
{
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-6f);
    /* distinct starting values, so no two chains can be merged */
    __m256 a0 = _mm256_set1_ps(0e-3f), a1 = _mm256_set1_ps(1e-3f), a2 = _mm256_set1_ps(2e-3f);
    __m256 a3 = _mm256_set1_ps(3e-3f), a4 = _mm256_set1_ps(4e-3f), a5 = _mm256_set1_ps(5e-3f);
    __m256 a6 = _mm256_set1_ps(6e-3f), a7 = _mm256_set1_ps(7e-3f), a8 = _mm256_set1_ps(8e-3f);
    __m256 a9 = _mm256_set1_ps(9e-3f), a10 = _mm256_set1_ps(10e-3f), a11 = _mm256_set1_ps(11e-3f);
    for (size_t i = 0; i < iters; i++) {
        a0 = _mm256_fmadd_ps(a0, m, c), a1 = _mm256_fmadd_ps(a1, m, c);
        a2 = _mm256_fmadd_ps(a2, m, c), a3 = _mm256_fmadd_ps(a3, m, c);
        a4 = _mm256_fmadd_ps(a4, m, c), a5 = _mm256_fmadd_ps(a5, m, c);
        a6 = _mm256_fmadd_ps(a6, m, c), a7 = _mm256_fmadd_ps(a7, m, c);
        a8 = _mm256_fmadd_ps(a8, m, c), a9 = _mm256_fmadd_ps(a9, m, c);
        a10 = _mm256_fmadd_ps(a10, m, c), a11 = _mm256_fmadd_ps(a11, m, c);
    }
    /* the result is used, so no chain is dropped as dead code */
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    *sink = _mm256_cvtss_f32(s);
    return 2ull * 8 * 12 * iters;
}
