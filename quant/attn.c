/* quant/attn.c: causal attention of a few query tokens over one kv head's
 * cache (the kernel behind model/'s forward pass), the scalar definition.
 *
 * For each query row (token t, head g of the group) with n_pos = pos0 + t + 1:
 *   s[p]  = (q . key p) * scale, the dot in 8 partial sums (element i into
 *           sum i % 8, each a chain over i in order starting with its first
 *           product), combined ((s0 + s4) + (s1 + s5)) + ((s2 + s6) + (s3 + s7));
 *   mx    = the largest s[p] (eight running maxima by p % 8, then combined);
 *   e[p]  = exp(s[p] - mx) by qt_attn_exp8 (below), not libm;
 *   sum   = the e[p] in 8 partial sums by p % 8 from +0, combined as above;
 *   o[i]  = chain over p in order from +0 of o[i] += (e[p] * (1 / sum)) * v[p][i].
 * Every step is one fixed sequence of float operations (no FMA), so the
 * SIMD twins (attn_avx2.c, attn_avx512.c), which vectorize over positions
 * and over output elements, give the same bits. */
#include "quant/quant.h"

#include <math.h>
#include <string.h>

#include "quant/quant_internal.h"

static inline __attribute__((always_inline)) void exp8(float v[8], float mx)
{
    float x[8], keep[8], kf[8], r[8], y[8], two_k[8];
    int32_t bits[8];
    /* shift by the maximum; below -87 the result is 0 */
    for (int i = 0; i < 8; i++) {
        x[i] = v[i] - mx;
        keep[i] = x[i] >= QT_ATTN_EXP_MIN ? 1.0f : 0.0f;
        x[i] = x[i] >= QT_ATTN_EXP_MIN ? x[i] : QT_ATTN_EXP_MIN;
    }
    /* k = round(x / ln2) by the 1.5 * 2^23 trick (|x / ln2| < 2^22) */
    for (int i = 0; i < 8; i++) kf[i] = (x[i] * QT_ATTN_LOG2E + QT_ATTN_RND) - QT_ATTN_RND;
    /* r = x - k ln2, ln2 in two parts */
    for (int i = 0; i < 8; i++) r[i] = (x[i] - kf[i] * QT_ATTN_LN2_HI) - kf[i] * QT_ATTN_LN2_LO;
    /* e^r = 1 + r + r^2 P(r), Horner */
    for (int i = 0; i < 8; i++) {
        y[i] = QT_ATTN_P0 * r[i] + QT_ATTN_P1;
        y[i] = y[i] * r[i] + QT_ATTN_P2;
        y[i] = y[i] * r[i] + QT_ATTN_P3;
        y[i] = y[i] * r[i] + QT_ATTN_P4;
        y[i] = y[i] * r[i] + QT_ATTN_P5;
        y[i] = (y[i] * (r[i] * r[i]) + r[i]) + 1.0f;
    }
    /* times 2^k, k in [-126, 0]: a normal float built from its exponent */
    for (int i = 0; i < 8; i++) bits[i] = ((int32_t)kf[i] + 127) << 23;
    memcpy(two_k, bits, sizeof two_k);
    for (int i = 0; i < 8; i++) v[i] = y[i] * two_k[i] * keep[i];
}

void qt_attn_exp8(float v[8], float mx) { exp8(v, mx); }

float qt_attn_score_ref(const float *q, const float *kt, size_t ldk, size_t hd, size_t p,
                        float scale)
{
    float acc[8] = {0};
    for (size_t i = 0; i < hd; i++) {
        const float prod = q[i] * kt[i * ldk + p];
        acc[i % 8] = i < 8 ? prod : acc[i % 8] + prod;
    }
    return (((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))) *
           scale;
}

/* The largest of v[0..n): running maxima m[p % 8] = v > m ? v : m from
 * -inf, then r = m[j] > r ? m[j] : r for j = 1..7 from m[0]. */
static float max_ref(const float *v, size_t n)
{
    float m[8];
    for (int j = 0; j < 8; j++) m[j] = -INFINITY;
    for (size_t p = 0; p < n; p++) m[p % 8] = v[p] > m[p % 8] ? v[p] : m[p % 8];
    float r = m[0];
    for (int j = 1; j < 8; j++) r = m[j] > r ? m[j] : r;
    return r;
}

/* v[p] = exp(v[p] - mx) for p < n; returns their sum (definition above). */
static float exp_sum_ref(float *v, size_t n, float mx)
{
    float acc[8] = {0};
    size_t p0 = 0;
    for (; p0 + 8 <= n; p0 += 8) {
        exp8(v + p0, mx);
        for (int j = 0; j < 8; j++) acc[j] += v[p0 + (size_t)j];
    }
    if (p0 < n) { /* the tail, padded with mx; the padding is dropped */
        float t[8];
        const size_t k = n - p0;
        for (size_t j = 0; j < 8; j++) t[j] = j < k ? v[p0 + j] : mx;
        exp8(t, mx);
        for (size_t j = 0; j < k; j++) {
            v[p0 + j] = t[j];
            acc[j] += t[j];
        }
    }
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

/* o (hd,) = sum over p < n_pos of (e[p] * inv) * v[p * ldv + i], chains in
 * order from +0; 8 output elements at a time in registers. */
static void values_ref(const float *e, size_t n_pos, float inv, const float *v, size_t ldv,
                       size_t hd, float *o)
{
    size_t i0 = 0;
    for (; i0 + 8 <= hd; i0 += 8) { /* 8 chains in registers */
        float acc[8] = {0};
        for (size_t p = 0; p < n_pos; p++) {
            const float a = e[p] * inv, *vp = v + p * ldv + i0;
            for (int i = 0; i < 8; i++) acc[i] += a * vp[i];
        }
        memcpy(o + i0, acc, sizeof acc);
    }
    for (; i0 < hd; i0++) { /* the rest, one chain each */
        float acc = 0.0f;
        for (size_t p = 0; p < n_pos; p++) acc += (e[p] * inv) * v[p * ldv + i0];
        o[i0] = acc;
    }
}

/* s[p] = qt_attn_score_ref(.., p, ..) for p < n_pos, 8 positions at a time
 * in constant-length loops (which compilers vectorize). */
static void scores_ref(const float *q, const float *kt, size_t ldk, size_t hd, size_t n_pos,
                       float scale, float *s)
{
    size_t p = 0;
    for (; p + 8 <= n_pos; p += 8) {
        float acc[8][8] = {{0}}; /* [partial sum][position] */
        for (size_t i = 0; i < hd && i < 8; i++) /* the first products */
            for (int j = 0; j < 8; j++) acc[i][j] = q[i] * kt[i * ldk + p + (size_t)j];
        for (size_t i = 8; i < hd; i++) /* the chains */
            for (int j = 0; j < 8; j++) acc[i % 8][j] += q[i] * kt[i * ldk + p + (size_t)j];
        for (int j = 0; j < 8; j++)
            s[p + (size_t)j] = (((acc[0][j] + acc[4][j]) + (acc[1][j] + acc[5][j])) +
                                ((acc[2][j] + acc[6][j]) + (acc[3][j] + acc[7][j]))) * scale;
    }
    for (; p < n_pos; p++) s[p] = qt_attn_score_ref(q, kt, ldk, hd, p, scale);
}

void qt_attn_ref(const qt_attn_job *j)
{
    for (size_t t = 0; t < j->n_tok; t++)
        for (size_t g = 0; g < j->group; g++) {
            const size_t n_pos = j->pos0 + t + 1;
            const float *q = j->q + t * j->ldq + g * j->hd;
            float *s = j->scratch; /* one row is enough here */
            scores_ref(q, j->kt, j->ldk, j->hd, n_pos, j->scale, s);
            const float sum = exp_sum_ref(s, n_pos, max_ref(s, n_pos));
            values_ref(s, n_pos, 1.0f / sum, j->v, j->ldv, j->hd, j->o + t * j->ldo + g * j->hd);
        }
}
