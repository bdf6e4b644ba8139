/* quant/kquants_avx512.c: the GGML block types on AVX-512 (16 lanes):
 * quantizers, dequantizers and the fixed-order dot of kquants_simd.h, which
 * also builds the table. Bit-identical to the _ref table
 * (tests/unit/test_kquants.c). */
#include "quant/quant.h"

#include <immintrin.h>

#include "quant/quant_internal.h"

#define QT_VW 16
#define QT_SQRT(v) (vf)_mm512_sqrt_ps((__m512)(v))
#define QT_IMIN(a, b) (vi)_mm512_min_epi32((__m512i)(a), (__m512i)(b))
#define QT_IMAX(a, b) (vi)_mm512_max_epi32((__m512i)(a), (__m512i)(b))
#define QT_ANY(m) (_mm512_movepi32_mask((__m512i)(m)) != 0)
#define QT_WIDEN16(p, v, ext)                                                    \
    do {                                                                         \
        __m512i w_ = _mm512_cvt##ext##_epi32(_mm_loadu_si128((const __m128i *)(p))); \
        memcpy(&(v), &w_, 64);                                                   \
    } while (0)
#define QT_CVTT(v) (vi)_mm512_cvttps_epi32((__m512)(v))
#define QT_GATHER(base, idx) (vf)_mm512_i32gather_ps((__m512i)(idx), (base), 4)
#define QT_FMIN(a, b) (vf)_mm512_min_ps((__m512)(a), (__m512)(b))
#define QT_FMAX(a, b) (vf)_mm512_max_ps((__m512)(a), (__m512)(b))
#define QT_SCALAR_DEQ32 0
#define QT_SFX avx512
#include "quant/kquants_simd.h"
