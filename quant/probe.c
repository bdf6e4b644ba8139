/* quant/probe.c: the peak-FMA probe (qt_fma_burn): independent FMA chains
 * with no memory traffic, per ISA, so that benchmarks can state a measured
 * throughput as a fraction of what the cores can do. The scalar version
 * here; the SIMD ones in probe_avx2.c / probe_avx512.c. */
#include "quant/quant.h"

#include <math.h>

#include "quant/quant_internal.h"

/* 8 scalar chains; fmaf is one fused operation (a library call without
 * hardware FMA: then this measures that). */
static uint64_t fma_burn_ref(size_t iters, float *sink)
{
    float a[8];
    for (int j = 0; j < 8; j++) a[j] = (float)j * 1e-3f;
    const float m = 0.999999f, c = 1e-6f;
    for (size_t i = 0; i < iters; i++)
        for (int j = 0; j < 8; j++) a[j] = fmaf(a[j], m, c);
    float s = 0;
    for (int j = 0; j < 8; j++) s += a[j];
    *sink = s;
    return 2ull * 8 * iters;
}

uint64_t qt_fma_burn(const qt_kernels *k, size_t iters, float *sink)
{
    if (!k) k = qt_kernels_active();
#if defined(__x86_64__)
    if (k->isa == QT_ISA_AVX512) return qt_fma_burn_avx512(iters, sink);
    if (k->isa == QT_ISA_AVX2) return qt_fma_burn_avx2(iters, sink);
#endif
    return fma_burn_ref(iters, sink);
}
