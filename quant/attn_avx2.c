/* quant/attn_avx2.c: the AVX2 twin of qt_attn_ref (quant/attn.c): scores
 * and exponentials 8 positions at a time, value sums 8 output elements x
 * up to 8 query rows at a time (quant/attn_simd.h); bit-identical. */
#include "quant/attn_simd.h"

static float scores_avx2(const float *q, const float *kt, size_t ldk, size_t hd, size_t n_pos,
                         float scale, float *s)
{
    return attn_scores_tail(q, kt, ldk, hd, 0, n_pos, scale, s, _mm256_set1_ps(-INFINITY));
}

static float exp_sum_avx2(float *s, size_t n, float mx)
{
    return attn_exp_sum_tail(s, 0, n, mx, _mm256_setzero_ps());
}

void qt_attn_avx2(const qt_attn_job *j) { attn_job(j, scores_avx2, exp_sum_avx2); }
