/* common/half_avx512.c: AVX-512 half-precision row kernels. */
#include "common/half.h"

#include <immintrin.h>

#include "common/half_internal.h"

static void fp16_to_fp32(const uint16_t *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + i))));
    for (; i < n; i++) dst[i] = qt_fp16_to_fp32(src[i]);
}

static void fp32_to_fp16(const float *src, uint16_t *dst, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(dst + i),
                            _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) dst[i] = qt_fp32_to_fp16(src[i]);
}

static void bf16_to_fp32(const uint16_t *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(src + i)));
        _mm512_storeu_si512(dst + i, _mm512_slli_epi32(v, 16));
    }
    for (; i < n; i++) dst[i] = qt_bf16_to_fp32(src[i]);
}

static void fp32_to_bf16(const float *src, uint16_t *dst, size_t n)
{
    size_t i = 0;
    const __m512i absmask = _mm512_set1_epi32(0x7fffffff);
    const __m512i inf = _mm512_set1_epi32(0x7f800000);
    const __m512i bias = _mm512_set1_epi32(0x7fff);
    const __m512i one = _mm512_set1_epi32(1);
    const __m512i qbit = _mm512_set1_epi32(0x40);
    for (; i + 16 <= n; i += 16) {
        __m512i x = _mm512_loadu_si512(src + i);
        __mmask16 isnan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(x, absmask), inf);
        __m512i hi16 = _mm512_srli_epi32(x, 16);
        __m512i lsb = _mm512_and_si512(hi16, one);
        __m512i r = _mm512_srli_epi32(_mm512_add_epi32(x, _mm512_add_epi32(bias, lsb)), 16);
        r = _mm512_mask_or_epi32(r, isnan, hi16, qbit);
        _mm256_storeu_si256((__m256i *)(dst + i), _mm512_cvtepi32_epi16(r));
    }
    for (; i < n; i++) dst[i] = qt_fp32_to_bf16(src[i]);
}

const qt_half_kernels qt_half_kernels_avx512 = {fp16_to_fp32, fp32_to_fp16, bf16_to_fp32,
                                                fp32_to_bf16};
