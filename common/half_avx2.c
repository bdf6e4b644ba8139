/* common/half_avx2.c: F16C / AVX2 half-precision row kernels. */
#include "common/half.h"

#include <immintrin.h>

#include "common/half_internal.h"

static void fp16_to_fp32(const uint16_t *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = qt_fp16_to_fp32(src[i]);
}

static void fp32_to_fp16(const float *src, uint16_t *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) dst[i] = qt_fp32_to_fp16(src[i]);
}

static void bf16_to_fp32(const uint16_t *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(src + i)));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_slli_epi32(v, 16));
    }
    for (; i < n; i++) dst[i] = qt_bf16_to_fp32(src[i]);
}

static void fp32_to_bf16(const float *src, uint16_t *dst, size_t n)
{
    size_t i = 0;
    const __m256i absmask = _mm256_set1_epi32(0x7fffffff);
    const __m256i inf = _mm256_set1_epi32(0x7f800000);
    const __m256i bias = _mm256_set1_epi32(0x7fff);
    const __m256i one = _mm256_set1_epi32(1);
    const __m256i qbit = _mm256_set1_epi32(0x40);
    for (; i + 8 <= n; i += 8) {
        __m256i x = _mm256_loadu_si256((const __m256i *)(src + i));
        __m256i isnan = _mm256_cmpgt_epi32(_mm256_and_si256(x, absmask), inf);
        __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16), one);
        __m256i r = _mm256_srli_epi32(_mm256_add_epi32(x, _mm256_add_epi32(bias, lsb)), 16);
        __m256i nanv = _mm256_or_si256(_mm256_srli_epi32(x, 16), qbit);
        r = _mm256_blendv_epi8(r, nanv, isnan);
        /* pack 8 x u32 (each < 65536) to 8 x u16 */
        __m128i lo = _mm256_castsi256_si128(r), hi = _mm256_extracti128_si256(r, 1);
        _mm_storeu_si128((__m128i *)(dst + i), _mm_packus_epi32(lo, hi));
    }
    for (; i < n; i++) dst[i] = qt_fp32_to_bf16(src[i]);
}

const qt_half_kernels qt_half_kernels_avx2 = {fp16_to_fp32, fp32_to_fp16, bf16_to_fp32,
                                              fp32_to_bf16};
