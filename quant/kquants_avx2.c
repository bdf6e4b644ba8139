/* quant/kquants_avx2.c: the GGML block types on AVX2 (8 lanes): the
 * K-quant quantizers of kquants_simd.h and the fixed-order dot; the rest
 * of the table is the scalar definitions (also the dequantizers of q4_0,
 * q4_1, q5_0, q5_1, q8_0 and q4_k: GCC's lowering of the 16-wide generic
 * vectors to AVX2 is slower than the scalar loops there). Bit-identical to
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
#define QT_SFX avx2
#include "quant/kquants_simd.h"

QT_DOT16(q4_0, 32, 18, qt_q4_0_dequantize_ref)
QT_DOT16(q4_1, 32, 20, qt_q4_1_dequantize_ref)
QT_DOT16(q5_0, 32, 22, qt_q5_0_dequantize_ref)
QT_DOT16(q5_1, 32, 24, qt_q5_1_dequantize_ref)
QT_DOT16(q8_0, 32, 34, qt_blk_q8_0_dequantize_ref)
QT_DOT16(q2_k, QT_QK_K, 84, q2_k_dequantize_avx2)
QT_DOT16(q3_k, QT_QK_K, 110, q3_k_dequantize_avx2)
QT_DOT16(q4_k, QT_QK_K, 144, qt_q4_k_dequantize_ref)
QT_DOT16(q5_k, QT_QK_K, 176, q5_k_dequantize_avx2)
QT_DOT16(q6_k, QT_QK_K, 210, q6_k_dequantize_avx2)

static void q8_0_quantize_avx2(const float *x, void *blocks, size_t n)
{
    qt_kernels_avx2.q8_quant(QT_SRC_F32, x, n, 32, blocks);
}

const qt_blk_ops qt_blk_ops_avx2[QT_SCHEME_COUNT] = {
    [QT_SCHEME_Q8] = {q8_0_quantize_avx2, qt_blk_q8_0_dequantize_ref, q8_0_dot_avx2},
    [QT_SCHEME_Q4_0] = {q4_0_quantize_avx2, qt_q4_0_dequantize_ref, q4_0_dot_avx2},
    [QT_SCHEME_Q4_1] = {q4_1_quantize_avx2, qt_q4_1_dequantize_ref, q4_1_dot_avx2},
    [QT_SCHEME_Q5_0] = {q5_0_quantize_avx2, qt_q5_0_dequantize_ref, q5_0_dot_avx2},
    [QT_SCHEME_Q5_1] = {q5_1_quantize_avx2, qt_q5_1_dequantize_ref, q5_1_dot_avx2},
    [QT_SCHEME_Q2_K] = {q2_k_quantize_avx2, q2_k_dequantize_avx2, q2_k_dot_avx2},
    [QT_SCHEME_Q3_K] = {q3_k_quantize_avx2, q3_k_dequantize_avx2, q3_k_dot_avx2},
    [QT_SCHEME_Q4_K] = {q4_k_quantize_avx2, qt_q4_k_dequantize_ref, q4_k_dot_avx2},
    [QT_SCHEME_Q5_K] = {q5_k_quantize_avx2, q5_k_dequantize_avx2, q5_k_dot_avx2},
    [QT_SCHEME_Q6_K] = {q6_k_quantize_avx2, q6_k_dequantize_avx2, q6_k_dot_avx2},
};
