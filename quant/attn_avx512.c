/* quant/attn_avx512.c: the AVX-512 twin of qt_attn_ref (quant/attn.c):
 * scores and exponentials 16 positions at a time (the rest and the value
 * sums as in AVX2, quant/attn_simd.h); bit-identical. Running maxima and
 * sums keep their 8 lanes (p % 8): each 16-wide result enters them as its
 * low then its high half, the order of the definition. */
#include "quant/attn_simd.h"

/* qt_attn_exp8 on 16 lanes: e^(v - mx), as two halves (on a CPU that
 * splits 512-bit arithmetic in two this costs nothing). */
static inline __attribute__((always_inline)) __m512 exp16(__m512 v, __m256 mx)
{
    const __m256 lo = attn_exp_ymm(_mm512_castps512_ps256(v), mx);
    const __m256 hi = attn_exp_ymm(_mm512_extractf32x8_ps(v, 1), mx);
    return _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
}

/* The scores of the 16 keys p.. (hd a multiple of 8). */
static inline __attribute__((always_inline)) __m512 score16(const float *q, const float *kt,
                                                            size_t ldk, size_t hd, size_t p,
                                                            __m512 scale)
{
    __m512 acc[8];
    #pragma GCC unroll 8
    for (int u = 0; u < 8; u++)
        acc[u] = _mm512_mul_ps(_mm512_set1_ps(q[u]), _mm512_loadu_ps(kt + (size_t)u * ldk + p));
    for (size_t i0 = 8; i0 < hd; i0 += 8)
        #pragma GCC unroll 8
        for (int u = 0; u < 8; u++)
            acc[u] = _mm512_add_ps(acc[u], _mm512_mul_ps(_mm512_set1_ps(q[i0 + (size_t)u]),
                                                         _mm512_loadu_ps(kt + (i0 + (size_t)u) * ldk + p)));
    const __m512 s = _mm512_add_ps(
        _mm512_add_ps(_mm512_add_ps(acc[0], acc[4]), _mm512_add_ps(acc[1], acc[5])),
        _mm512_add_ps(_mm512_add_ps(acc[2], acc[6]), _mm512_add_ps(acc[3], acc[7])));
    return _mm512_mul_ps(s, scale);
}

static float scores_avx512(const float *q, const float *kt, size_t ldk, size_t hd, size_t n_pos,
                           float scale, float *s)
{
    const __m512 vs = _mm512_set1_ps(scale);
    __m256 m = _mm256_set1_ps(-INFINITY);
    size_t p = 0;
    for (; p + 16 <= n_pos; p += 16) {
        const __m512 x = score16(q, kt, ldk, hd, p, vs);
        _mm512_storeu_ps(s + p, x);
        m = attn_max_ymm(_mm512_castps512_ps256(x), m);
        m = attn_max_ymm(_mm512_extractf32x8_ps(x, 1), m);
    }
    return attn_scores_tail(q, kt, ldk, hd, p, n_pos, scale, s, m);
}

static float exp_sum_avx512(float *s, size_t n, float mx)
{
    const __m256 vmx = _mm256_set1_ps(mx);
    __m256 acc = _mm256_setzero_ps();
    size_t p = 0;
    for (; p + 16 <= n; p += 16) {
        const __m512 e = exp16(_mm512_loadu_ps(s + p), vmx);
        _mm512_storeu_ps(s + p, e);
        acc = _mm256_add_ps(acc, _mm512_castps512_ps256(e));
        acc = _mm256_add_ps(acc, _mm512_extractf32x8_ps(e, 1));
    }
    return attn_exp_sum_tail(s, p, n, mx, acc);
}

void qt_attn_avx512(const qt_attn_job *j) { attn_job(j, scores_avx512, exp_sum_avx512); }
