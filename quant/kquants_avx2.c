/* quant/kquants_avx2.c: the GGML block types on AVX2 (8 lanes): quantizers,
 * dequantizers and the fixed-order dot of kquants_simd.h, which also builds
 * the table; the dequantizers of the 32-blocks and q4_k stay scalar (GCC's
 * lowering of 16-wide vectors to AVX2 is slower there). Bit-identical to
 * the _ref table (tests/unit/test_kquants.c). */
#include "quant/quant.h"

#include <immintrin.h>

#include "quant/quant_internal.h"

#define QT_VW 8
#define QT_SQRT(v) (vf)_mm256_sqrt_ps((__m256)(v))
#define QT_IMIN(a, b) (vi)_mm256_min_epi32((__m256i)(a), (__m256i)(b))
#define QT_IMAX(a, b) (vi)_mm256_max_epi32((__m256i)(a), (__m256i)(b))
#define QT_ANY(m) (_mm256_movemask_ps((__m256)(m)) != 0)
#define QT_WIDEN16(p, v, ext)                                                               \
    do {                                                                                    \
        typedef int32_t v8i_ __attribute__((vector_size(32)));                              \
        v8i_ lo_ = (v8i_)_mm256_cvt##ext##_epi32(_mm_loadl_epi64((const __m128i *)(p)));       \
        v8i_ hi_ = (v8i_)_mm256_cvt##ext##_epi32(_mm_loadl_epi64((const __m128i *)((p) + 8))); \
        (v) = __builtin_shufflevector(lo_, hi_, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, \
                                      14, 15);                                              \
    } while (0)
#define QT_CVTT(v) (vi)_mm256_cvttps_epi32((__m256)(v))
#define QT_GATHER(base, idx) (vf)_mm256_i32gather_ps((base), (__m256i)(idx), 4)
#define QT_FMIN(a, b) (vf)_mm256_min_ps((__m256)(a), (__m256)(b))
#define QT_FMAX(a, b) (vf)_mm256_max_ps((__m256)(a), (__m256)(b))
#define QT_SCALAR_DEQ32 1
#define QT_SFX avx2
#include "quant/kquants_simd.h"
