/* quant/attn_simd.h: the 8-lane pieces of the attention kernel and its
 * driver over one job, shared by attn_avx2.c and attn_avx512.c (include only
 * from files built with the AVX2 flags). Each piece does, lane by lane, the
 * float operations quant/attn.c defines, in the same order (no FMA). */
#ifndef QT_ATTN_SIMD_H
#define QT_ATTN_SIMD_H

#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "quant/quant_internal.h"

#define ATTN_INLINE static inline __attribute__((always_inline))

/* qt_attn_exp8 on 8 lanes: e^(v - mx). */
ATTN_INLINE __m256 attn_exp_ymm(__m256 v, __m256 mx)
{
    const __m256 lo = _mm256_set1_ps(QT_ATTN_EXP_MIN), rnd = _mm256_set1_ps(QT_ATTN_RND);
    __m256 x = _mm256_sub_ps(v, mx);
    /* below the cut (or NaN): 0, computed from the cut */
    const __m256 ok = _mm256_cmp_ps(x, lo, _CMP_GE_OQ);
    const __m256 keep = _mm256_and_ps(ok, _mm256_set1_ps(1.0f));
    x = _mm256_blendv_ps(lo, x, ok);
    /* k = round(x / ln2), r = x - k ln2 */
    const __m256 kf = _mm256_sub_ps(
        _mm256_add_ps(_mm256_mul_ps(x, _mm256_set1_ps(QT_ATTN_LOG2E)), rnd), rnd);
    const __m256 r = _mm256_sub_ps(_mm256_sub_ps(x, _mm256_mul_ps(kf, _mm256_set1_ps(QT_ATTN_LN2_HI))),
                                   _mm256_mul_ps(kf, _mm256_set1_ps(QT_ATTN_LN2_LO)));
    /* e^r = 1 + r + r^2 P(r) */
    __m256 y = _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(QT_ATTN_P0), r), _mm256_set1_ps(QT_ATTN_P1));
    y = _mm256_add_ps(_mm256_mul_ps(y, r), _mm256_set1_ps(QT_ATTN_P2));
    y = _mm256_add_ps(_mm256_mul_ps(y, r), _mm256_set1_ps(QT_ATTN_P3));
    y = _mm256_add_ps(_mm256_mul_ps(y, r), _mm256_set1_ps(QT_ATTN_P4));
    y = _mm256_add_ps(_mm256_mul_ps(y, r), _mm256_set1_ps(QT_ATTN_P5));
    y = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(y, _mm256_mul_ps(r, r)), r), _mm256_set1_ps(1.0f));
    /* times 2^k */
    const __m256i bits = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvttps_epi32(kf), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(_mm256_mul_ps(y, _mm256_castsi256_ps(bits)), keep);
}

/* The scores of the 8 keys p.. (hd a multiple of 8); masked (a constant):
 * only the lanes of mask are read, the others are 0. */
ATTN_INLINE __m256 attn_key8(const float *k, const int masked, __m256i mask)
{
    return masked ? _mm256_maskload_ps(k, mask) : _mm256_loadu_ps(k);
}

ATTN_INLINE __m256 attn_score_ymm(const float *q, const float *kt, size_t ldk, size_t hd,
                                  size_t p, __m256 scale, const int masked, __m256i mask)
{
    __m256 acc[8];
    #pragma GCC unroll 8
    for (int u = 0; u < 8; u++)
        acc[u] = _mm256_mul_ps(_mm256_set1_ps(q[u]), attn_key8(kt + (size_t)u * ldk + p, masked, mask));
    for (size_t i0 = 8; i0 < hd; i0 += 8)
        #pragma GCC unroll 8
        for (int u = 0; u < 8; u++)
            acc[u] = _mm256_add_ps(acc[u], _mm256_mul_ps(_mm256_set1_ps(q[i0 + (size_t)u]),
                                                         attn_key8(kt + (i0 + (size_t)u) * ldk + p, masked, mask)));
    const __m256 s = _mm256_add_ps(
        _mm256_add_ps(_mm256_add_ps(acc[0], acc[4]), _mm256_add_ps(acc[1], acc[5])),
        _mm256_add_ps(_mm256_add_ps(acc[2], acc[6]), _mm256_add_ps(acc[3], acc[7])));
    return _mm256_mul_ps(s, scale);
}

/* m[j] = s > m[j] ? s : m[j] lane by lane (maxps returns its second operand
 * unless the first is greater). */
ATTN_INLINE __m256 attn_max_ymm(__m256 s, __m256 m) { return _mm256_max_ps(s, m); }

/* ((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7)) of the lanes. */
ATTN_INLINE float attn_combine8(__m256 a)
{
    float v[8];
    _mm256_storeu_ps(v, a);
    return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

/* Scores s[p] of the positions p0 <= p < n_pos, 8 at a time, the last
 * ones masked (their keys past n_pos unread, their lanes left out of the
 * maxima as -inf), into the running maxima m (lane p % 8, p0 a multiple of
 * 8); returns the maximum, the lanes combined in order. */
ATTN_INLINE float attn_scores_tail(const float *q, const float *kt, size_t ldk, size_t hd,
                                   size_t p0, size_t n_pos, float scale, float *s, __m256 m)
{
    const __m256 vs = _mm256_set1_ps(scale);
    size_t p = p0;
    for (; p + 8 <= n_pos; p += 8) {
        const __m256 x = attn_score_ymm(q, kt, ldk, hd, p, vs, 0, _mm256_setzero_si256());
        _mm256_storeu_ps(s + p, x);
        m = attn_max_ymm(x, m);
    }
    if (p < n_pos) {
        const __m256i valid = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n_pos - p)),
                                                 _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        const __m256 x = attn_score_ymm(q, kt, ldk, hd, p, vs, 1, valid);
        _mm256_maskstore_ps(s + p, valid, x);
        m = attn_max_ymm(_mm256_blendv_ps(_mm256_set1_ps(-INFINITY), x, _mm256_castsi256_ps(valid)), m);
    }
    float mm[8];
    _mm256_storeu_ps(mm, m);
    float r = mm[0];
    for (int j = 1; j < 8; j++) r = mm[j] > r ? mm[j] : r;
    return r;
}

/* e[p] = exp(s[p] - mx) for p0 <= p < n (p0 a multiple of 8), 8 at a time,
 * the tail padded with mx and its padding dropped; acc gathers the sums by
 * p % 8 (a dropped lane adds +0 to a sum >= +0: no change). Returns the sum. */
ATTN_INLINE float attn_exp_sum_tail(float *s, size_t p0, size_t n, float mx, __m256 acc)
{
    const __m256 vmx = _mm256_set1_ps(mx);
    size_t p = p0;
    for (; p + 8 <= n; p += 8) {
        const __m256 e = attn_exp_ymm(_mm256_loadu_ps(s + p), vmx);
        _mm256_storeu_ps(s + p, e);
        acc = _mm256_add_ps(acc, e);
    }
    if (p < n) {
        float t[8];
        for (size_t j = 0; j < 8; j++) t[j] = p + j < n ? s[p + j] : 0.0f;
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        const __m256 valid = _mm256_castsi256_ps(
            _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n - p)), lane));
        const __m256 x = _mm256_blendv_ps(vmx, _mm256_loadu_ps(t), valid);
        const __m256 e = _mm256_and_ps(attn_exp_ymm(x, vmx), valid);
        _mm256_storeu_ps(t, e);
        memcpy(s + p, t, (n - p) * sizeof(float));
        acc = _mm256_add_ps(acc, e);
    }
    return attn_combine8(acc);
}

/* e[p] *= inv for p < n: the weights (e[p] * (1 / sum)) of the value sums. */
ATTN_INLINE void attn_scale_row(float *e, size_t n, float inv)
{
    const __m256 vi = _mm256_set1_ps(inv);
    size_t p = 0;
    for (; p + 8 <= n; p += 8) _mm256_storeu_ps(e + p, _mm256_mul_ps(_mm256_loadu_ps(e + p), vi));
    for (; p < n; p++) e[p] = e[p] * inv;
}

/* o_r[i0..i0+8) = chains over p < n_pos[r] from +0 of += w_r[p] * v[p][i],
 * for R rows with n_pos[0] <= n_pos[r]: the positions all rows share first,
 * the rows side by side (R independent chains hide the add latency). */
ATTN_INLINE void attn_values8(const int R, const float *const *w, const size_t *n_pos,
                              const float *v, size_t ldv, size_t i0, float *const *o)
{
    __m256 acc[8];
    #pragma GCC unroll 8
    for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    const size_t n_min = n_pos[0];
    for (size_t p = 0; p < n_min; p++) {
        const __m256 vv = _mm256_loadu_ps(v + p * ldv + i0);
        #pragma GCC unroll 8
        for (int r = 0; r < R; r++)
            acc[r] = _mm256_add_ps(acc[r], _mm256_mul_ps(_mm256_broadcast_ss(w[r] + p), vv));
    }
    #pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        for (size_t p = n_min; p < n_pos[r]; p++)
            acc[r] = _mm256_add_ps(acc[r], _mm256_mul_ps(_mm256_broadcast_ss(w[r] + p),
                                                         _mm256_loadu_ps(v + p * ldv + i0)));
        _mm256_storeu_ps(o[r] + i0, acc[r]);
    }
}

/* The value sums of rows (n <= QT_ATTN_ROWS = 8 of them), 8 output elements at a time. */
ATTN_INLINE void attn_values(size_t n, const float *const *w, const size_t *n_pos, const float *v,
                             size_t ldv, size_t hd, float *const *o)
{
    for (size_t i0 = 0; i0 < hd; i0 += 8) switch (n) {
        case 1: attn_values8(1, w, n_pos, v, ldv, i0, o); break;
        case 2: attn_values8(2, w, n_pos, v, ldv, i0, o); break;
        case 3: attn_values8(3, w, n_pos, v, ldv, i0, o); break;
        case 4: attn_values8(4, w, n_pos, v, ldv, i0, o); break;
        case 5: attn_values8(5, w, n_pos, v, ldv, i0, o); break;
        case 6: attn_values8(6, w, n_pos, v, ldv, i0, o); break;
        case 7: attn_values8(7, w, n_pos, v, ldv, i0, o); break;
        default: attn_values8(8, w, n_pos, v, ldv, i0, o); break;
        }
}

/* One ISA's row pieces: the scores of a row (returning their maximum) and
 * the exponentials of a row (returning their sum). */
typedef float (*attn_scores_fn)(const float *q, const float *kt, size_t ldk, size_t hd,
                                size_t n_pos, float scale, float *s);
typedef float (*attn_exp_sum_fn)(float *s, size_t n, float mx);

/* The job, its rows (row r: token r / group, head r % group) QT_ATTN_ROWS
 * at a time: each row scored, exponentiated and scaled on its own into
 * the scratch, then the value sums of those rows together. hd not a
 * multiple of 8 takes the scalar definition. */
ATTN_INLINE void attn_job(const qt_attn_job *j, attn_scores_fn scores, attn_exp_sum_fn exp_sum)
{
    if (j->hd % 8 != 0) {
        qt_attn_ref(j);
        return;
    }
    const size_t rows = j->n_tok * j->group;
    for (size_t r0 = 0; r0 < rows; r0 += QT_ATTN_ROWS) {
        const float *w[QT_ATTN_ROWS];
        float *o[QT_ATTN_ROWS];
        size_t n_pos[QT_ATTN_ROWS];
        const size_t n = rows - r0 < QT_ATTN_ROWS ? rows - r0 : QT_ATTN_ROWS;
        /* the softmax weights of each row */
        for (size_t i = 0; i < n; i++) {
            const size_t t = (r0 + i) / j->group, g = (r0 + i) % j->group;
            float *s = j->scratch + i * j->ldk;
            n_pos[i] = j->pos0 + t + 1;
            const float mx = scores(j->q + t * j->ldq + g * j->hd, j->kt, j->ldk, j->hd,
                                    n_pos[i], j->scale, s);
            attn_scale_row(s, n_pos[i], 1.0f / exp_sum(s, n_pos[i], mx));
            w[i] = s;
            o[i] = j->o + t * j->ldo + g * j->hd;
        }
        /* their value sums together (rows in token order: n_pos[0] is the least) */
        attn_values(n, w, n_pos, j->v, j->ldv, j->hd, o);
    }
}

#endif /* QT_ATTN_SIMD_H */
