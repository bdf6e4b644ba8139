/* quant/probe_avx512.c: the peak-FMA probe on AVX-512 (quant/probe.c): 16
 * independent 16-lane FMA chains held in named registers.
 *
 * Why 16: the peak needs latency x FMA pipes chains in flight (4 x 2 = 8 on
 * Zen 5 and on Intel cores with two 512-bit FMA units; Zen 4 splits a
 * 512-bit FMA over its two 256-bit pipes); 16 leaves margin for a longer
 * latency and fits the 32 zmm registers with the two operands. Separate
 * variables, not an array: see probe_avx2.c. */
#include "quant/quant.h"

#include <immintrin.h>

#include "quant/quant_internal.h"

/* one step of every chain */
#define BURN4(a, b, c_, d)                                                                        \
    a = _mm512_fmadd_ps(a, m, c), b = _mm512_fmadd_ps(b, m, c), c_ = _mm512_fmadd_ps(c_, m, c),  \
    d = _mm512_fmadd_ps(d, m, c)

uint64_t qt_fma_burn_avx512(size_t iters, float *sink)
{
    const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-6f);
    /* distinct starting values, so no two chains can be merged */
    __m512 a0 = _mm512_set1_ps(0e-3f), a1 = _mm512_set1_ps(1e-3f), a2 = _mm512_set1_ps(2e-3f);
    __m512 a3 = _mm512_set1_ps(3e-3f), a4 = _mm512_set1_ps(4e-3f), a5 = _mm512_set1_ps(5e-3f);
    __m512 a6 = _mm512_set1_ps(6e-3f), a7 = _mm512_set1_ps(7e-3f), a8 = _mm512_set1_ps(8e-3f);
    __m512 a9 = _mm512_set1_ps(9e-3f), a10 = _mm512_set1_ps(10e-3f), a11 = _mm512_set1_ps(11e-3f);
    __m512 a12 = _mm512_set1_ps(12e-3f), a13 = _mm512_set1_ps(13e-3f);
    __m512 a14 = _mm512_set1_ps(14e-3f), a15 = _mm512_set1_ps(15e-3f);
    for (size_t i = 0; i < iters; i++) {
        BURN4(a0, a1, a2, a3);
        BURN4(a4, a5, a6, a7);
        BURN4(a8, a9, a10, a11);
        BURN4(a12, a13, a14, a15);
    }
    /* the result is used, so no chain is dropped as dead code */
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    __m512 t = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)),
                             _mm512_add_ps(_mm512_add_ps(a12, a13), _mm512_add_ps(a14, a15)));
    *sink = _mm512_reduce_add_ps(_mm512_add_ps(s, t));
    return 2ull * 16 * 16 * iters;
}
