/* quant/kquants_avx512.c: the GGML block types on AVX512 (16 lanes): the
 * K-quant quantizers of kquants_simd.h and the fixed-order dot; the rest
 * of the table is the scalar definitions. Bit-identical to the _ref table
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
#define QT_SFX avx512
#include "quant/kquants_simd.h"

QT_DOT16(q4_0, 32, 18, q4_0_dequantize_avx512)
QT_DOT16(q4_1, 32, 20, q4_1_dequantize_avx512)
QT_DOT16(q5_0, 32, 22, q5_0_dequantize_avx512)
QT_DOT16(q5_1, 32, 24, q5_1_dequantize_avx512)
QT_DOT16(q8_0, 32, 34, q8_0_dequantize_avx512)
QT_DOT16(q2_k, QT_QK_K, 84, q2_k_dequantize_avx512)
QT_DOT16(q3_k, QT_QK_K, 110, q3_k_dequantize_avx512)
QT_DOT16(q4_k, QT_QK_K, 144, q4_k_dequantize_avx512)
QT_DOT16(q5_k, QT_QK_K, 176, q5_k_dequantize_avx512)
QT_DOT16(q6_k, QT_QK_K, 210, q6_k_dequantize_avx512)

static void q8_0_quantize_avx512(const float *x, void *blocks, size_t n)
{
    qt_kernels_avx512.q8_quant(QT_SRC_F32, x, n, 32, blocks);
}

const qt_blk_ops qt_blk_ops_avx512[QT_SCHEME_COUNT] = {
    [QT_SCHEME_Q8] = {q8_0_quantize_avx512, q8_0_dequantize_avx512, q8_0_dot_avx512},
    [QT_SCHEME_Q4_0] = {q4_0_quantize_avx512, q4_0_dequantize_avx512, q4_0_dot_avx512},
    [QT_SCHEME_Q4_1] = {q4_1_quantize_avx512, q4_1_dequantize_avx512, q4_1_dot_avx512},
    [QT_SCHEME_Q5_0] = {q5_0_quantize_avx512, q5_0_dequantize_avx512, q5_0_dot_avx512},
    [QT_SCHEME_Q5_1] = {q5_1_quantize_avx512, q5_1_dequantize_avx512, q5_1_dot_avx512},
    [QT_SCHEME_Q2_K] = {q2_k_quantize_avx512, q2_k_dequantize_avx512, q2_k_dot_avx512},
    [QT_SCHEME_Q3_K] = {q3_k_quantize_avx512, q3_k_dequantize_avx512, q3_k_dot_avx512},
    [QT_SCHEME_Q4_K] = {q4_k_quantize_avx512, q4_k_dequantize_avx512, q4_k_dot_avx512},
    [QT_SCHEME_Q5_K] = {q5_k_quantize_avx512, q5_k_dequantize_avx512, q5_k_dot_avx512},
    [QT_SCHEME_Q6_K] = {q6_k_quantize_avx512, q6_k_dequantize_avx512, q6_k_dot_avx512},
};
