/* quant/kquants.c: scalar definitions of the GGML K-quants (Q2_K .. Q6_K,
 * super-blocks of 256), bit-identical to ggml's quantize_row_q{2..6}_K_ref
 * and dequantize_row_q{2..6}_K (llama.cpp ggml/src/ggml-quants.c, checked
 * against b4747 and 01243c5, whose reference quantizers are the same). Every
 * float operation is the one ggml performs, in its order (built with
 * -ffp-contract=off, so nothing is fused); docs/GGML_BLOCKS.md has the
 * formulas and layouts.
 *
 * Block layouts (fp16 d / dmin, little-endian, no padding):
 *   q2_k  scales[16] (lo: scale, hi: min), qs[64], d, dmin          84 bytes
 *   q3_k  hmask[32], qs[64], scales[12] (6-bit, packed), d          110 bytes
 *   q4_k  d, dmin, scales[12] (6-bit scale/min pairs), qs[128]      144 bytes
 *   q5_k  d, dmin, scales[12], qh[32], qs[128]                      176 bytes
 *   q6_k  ql[128], qh[64], scales[16] int8, d                       210 bytes */
#include "quant/quant.h"

#include "quant/quant_internal.h"

#define GROUP_MAX_EPS 1e-15f /* ggml: a group below this is all zero */

static inline int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* ---- requantization with the stored scales ------------------------------------- */

/* L[i] = clamp(nearest((x[i] + dm) / d), lo, hi) - lo for i < n. q3_k / q6_k
 * call it with dm = 0: x + 0 is x (up to the sign of a zero, which the
 * rounding ignores), so this is their nearest(x / d). */
void qt_kq_requant_ref(const float *x, int n, float d, float dm, int lo, int hi, uint8_t *L)
{
    for (int i = 0; i < n; i++) L[i] = (uint8_t)(clampi(qt_kq_nearest_int((x[i] + dm) / d), lo, hi) - lo);
}

/* ---- make_qkx2_quants: scale and min of one group, searched ------------------ */

/* Codes L[0..n) in [0, nmax] for x ~ scale * L - the_min, weights w: the
 * plain range fit, then nstep + 1 trial scales (rmin + rdelta * is + nmax)
 * / range with a least-squares scale/min each, kept when the weighted error
 * (|diff| when use_mad, else diff^2) is strictly smaller. */
static float qt_kq_make_qkx2(int n, int nmax, const float *x, const float *w, uint8_t *L,
                      float *the_min, float rmin, float rdelta, int nstep, bool use_mad)
{
    uint8_t Laux[32];
    float min = x[0], max = x[0], sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; i++) L[i] = 0;
        *the_min = -min;
        return 0.0f;
    }
    /* the plain fit: its error is the one to beat */
    float iscale = (float)nmax / (max - min), scale = 1 / iscale, best_error = 0;
    for (int i = 0; i < n; i++) {
        int l = qt_kq_nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)clampi(l, 0, nmax);
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += w[i] * diff;
    }
    /* the trial scales */
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = clampi(qt_kq_nearest_int(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = (uint8_t)l;
            float wl = w[i] * (float)l;
            sum_l += wl;
            sum_l2 += wl * (float)l;
            sum_xl += wl * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (!(D > 0)) continue;
        float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
        float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        if (this_min > 0) {
            this_min = 0;
            this_scale = sum_xl / sum_l2;
        }
        float cur_error = 0;
        for (int i = 0; i < n; i++) {
            float diff = this_scale * Laux[i] + this_min - x[i];
            diff = use_mad ? fabsf(diff) : diff * diff;
            cur_error += w[i] * diff;
        }
        if (cur_error < best_error) {
            for (int i = 0; i < n; i++) L[i] = Laux[i];
            best_error = cur_error;
            scale = this_scale;
            min = this_min;
        }
    }
    *the_min = -min;
    return scale;
}

/* ---- the 6-bit scale/min pairs of q4_k / q5_k ------------------------------------ */

static void put_scale_min_k4(int j, uint8_t ls, uint8_t lm, uint8_t *q)
{
    if (j < 4) {
        q[j] = ls;
        q[j + 4] = lm;
    } else {
        q[j + 4] = (uint8_t)((ls & 0xF) | (lm & 0xF) << 4);
        q[j - 4] |= (uint8_t)((ls >> 4) << 6);
        q[j] |= (uint8_t)((lm >> 4) << 6);
    }
}

void qt_kq_get_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m)
{
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | (q[j - 4] >> 6) << 4);
        *m = (uint8_t)((q[j + 4] >> 4) | (q[j] >> 6) << 4);
    }
}

/* q4_k / q5_k after the group fits: scales[8], mins[8] (>= 0) -> the 6-bit
 * pairs, d and dmin at b[0..4), then the codes L requantized with the
 * stored (rounded) scales. */
void qt_kq_finish_k4(const float *x, const float *scales, const float *mins, int nmax,
                     unsigned char *b, uint8_t *L, qt_kq_requant_fn rq)
{
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    uint8_t *sc = b + 4;
    for (int j = 0; j < 8; j++) {
        uint8_t ls = (uint8_t)qt_kq_nearest_int(inv_scale * scales[j]);
        uint8_t lm = (uint8_t)qt_kq_nearest_int(inv_min * mins[j]);
        put_scale_min_k4(j, ls < 63 ? ls : 63, lm < 63 ? lm : 63, sc);
    }
    qt_blk_put_fp16(b, max_scale / 63.f);
    qt_blk_put_fp16(b + 2, max_min / 63.f);
    float d_all = qt_blk_get_fp16(b), m_all = qt_blk_get_fp16(b + 2);
    for (int j = 0; j < 8; j++) {
        uint8_t s, m;
        qt_kq_get_scale_min_k4(j, sc, &s, &m);
        float d = d_all * s;
        if (!d) continue;
        rq(x + 32 * j, 32, d, m_all * m, 0, nmax, L + 32 * j);
    }
}

/* The group weights of q4_k / q5_k: sqrt(mean x^2) + |x|. */
static void k4_weights(const float *x, float *w)
{
    float sum_x2 = 0;
    for (int l = 0; l < 32; l++) sum_x2 += x[l] * x[l];
    float av_x = sqrtf(sum_x2 / 32);
    for (int l = 0; l < 32; l++) w[l] = av_x + fabsf(x[l]);
}

/* ---- Q4_K ------------------------------------------------------------------------------ */

void qt_kq_q4_k_pack(const uint8_t *L, unsigned char *b)
{
    uint8_t *q = b + 16;
    for (int j = 0; j < QT_QK_K; j += 64, q += 32)
        for (int l = 0; l < 32; l++) q[l] = (uint8_t)(L[j + l] | L[j + l + 32] << 4);
}

/* q4_k / q5_k rows: the 8 group fits (make_qkx2_quants with the type's
 * nmax, rmin and trial count), the shared tail, the type's packing. */
static void k4_row_ref(const float *x, unsigned char *b, size_t n, int nmax, float rmin, int nstep,
                       size_t bb, void (*pack)(const uint8_t *, unsigned char *))
{
    for (size_t i0 = 0; i0 < n; i0 += QT_QK_K, b += bb) {
        const float *xb = x + i0;
        uint8_t L[QT_QK_K];
        float w[32], scales[8], mins[8];
        for (int j = 0; j < 8; j++) {
            k4_weights(xb + 32 * j, w);
            scales[j] = qt_kq_make_qkx2(32, nmax, xb + 32 * j, w, L + 32 * j, &mins[j], rmin, 0.1f,
                                        nstep, false);
        }
        qt_kq_finish_k4(xb, scales, mins, nmax, b, L, qt_kq_requant_ref);
        pack(L, b);
    }
}

/* q4_k / q5_k dequantization: group j of 32 = d * sc_j * code - dmin * m_j;
 * q5 adds bit j of qh[l] as 16 to the nibble */
static void k4_dequantize_ref(const unsigned char *b, size_t bb, bool q5, float *y, size_t n)
{
    for (size_t i0 = 0; i0 < n; i0 += QT_QK_K, b += bb) {
        float d = qt_blk_get_fp16(b), min = qt_blk_get_fp16(b + 2);
        const uint8_t *qh = b + 16, *qs = b + (q5 ? 48 : 16);
        for (int j = 0; j < 8; j++) {
            uint8_t s, m;
            qt_kq_get_scale_min_k4(j, b + 4, &s, &m);
            float d1 = d * s, m1 = min * m;
            for (int l = 0; l < 32; l++) {
                int q = (qs[(j / 2) * 32 + l] >> (4 * (j & 1))) & 0xF;
                if (q5) q += (qh[l] >> j & 1) ? 16 : 0;
                y[i0 + 32 * j + l] = d1 * q - m1;
            }
        }
    }
}

void qt_q4_k_quantize_ref(const float *x, void *blocks, size_t n)
{
    k4_row_ref(x, blocks, n, 15, -1.f, 20, 144, qt_kq_q4_k_pack);
}

void qt_q4_k_dequantize_ref(const void *blocks, float *y, size_t n)
{
    k4_dequantize_ref(blocks, 144, false, y, n);
}

/* ---- Q5_K ------------------------------------------------------------------------------ */

void qt_kq_q5_k_pack(const uint8_t *L, unsigned char *b)
{
    uint8_t *qh = b + 16, *ql = b + 48;
    memset(qh, 0, 32);
    uint8_t m1 = 1, m2 = 2;
    for (int n = 0; n < QT_QK_K; n += 64, ql += 32) {
        for (int j = 0; j < 32; j++) { /* branch-free: codes are 0..31 */
            int l1 = L[n + j], l2 = L[n + j + 32];
            qh[j] |= (uint8_t)((l1 >> 4) * m1 | (l2 >> 4) * m2);
            ql[j] = (uint8_t)((l1 & 15) | (l2 & 15) << 4);
        }
        m1 = (uint8_t)(m1 << 2);
        m2 = (uint8_t)(m2 << 2);
    }
}

void qt_q5_k_quantize_ref(const float *x, void *blocks, size_t n)
{
    k4_row_ref(x, blocks, n, 31, -0.5f, 15, 176, qt_kq_q5_k_pack);
}

void qt_q5_k_dequantize_ref(const void *blocks, float *y, size_t n)
{
    k4_dequantize_ref(blocks, 176, true, y, n);
}

/* ---- Q2_K ------------------------------------------------------------------------------ */

/* 2-bit codes L[256] into qs[64]: byte j/4 + l of each 128 holds elements
 * j + l, +32, +64, +96 at bits 0, 2, 4, 6 (q2_k and q3_k). */
static void pack_2bit(const uint8_t *L, uint8_t *qs)
{
    for (int j = 0; j < QT_QK_K; j += 128)
        for (int l = 0; l < 32; l++)
            qs[j / 4 + l] = (uint8_t)(L[j + l] | L[j + l + 32] << 2 | L[j + l + 64] << 4 |
                                      L[j + l + 96] << 6);
}

/* q2_k after the group fits: 4-bit scales and mins, d, dmin, requantized
 * codes, packing. */
void qt_kq_q2_k_finish(const float *x, const float *scales, const float *mins, uint8_t *L,
                       unsigned char *b, qt_kq_requant_fn rq)
{
    const float q4scale = 15.f;
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 16; j++) {
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    uint8_t *sc = b;
    for (int j = 0; j < 16; j++) sc[j] = 0;
    qt_blk_put_fp16(b + 80, 0.f);
    qt_blk_put_fp16(b + 82, 0.f);
    if (max_scale > 0) {
        float iscale = q4scale / max_scale;
        for (int j = 0; j < 16; j++) sc[j] = (uint8_t)qt_kq_nearest_int(iscale * scales[j]);
        qt_blk_put_fp16(b + 80, max_scale / q4scale);
    }
    if (max_min > 0) {
        float iscale = q4scale / max_min;
        for (int j = 0; j < 16; j++) sc[j] |= (uint8_t)((unsigned)qt_kq_nearest_int(iscale * mins[j]) << 4);
        qt_blk_put_fp16(b + 82, max_min / q4scale);
    }
    float d_all = qt_blk_get_fp16(b + 80), m_all = qt_blk_get_fp16(b + 82);
    for (int j = 0; j < 16; j++) {
        float d = d_all * (sc[j] & 0xF);
        if (!d) continue;
        rq(x + 16 * j, 16, d, m_all * (sc[j] >> 4), 0, 3, L + 16 * j);
    }
    pack_2bit(L, b + 16);
}

void qt_q2_k_quantize_ref(const float *x, void *blocks, size_t n)
{
    unsigned char *b = blocks;
    for (size_t i0 = 0; i0 < n; i0 += QT_QK_K, b += 84) {
        const float *xb = x + i0;
        uint8_t L[QT_QK_K];
        float w[16], scales[16], mins[16];
        for (int j = 0; j < 16; j++) {
            for (int l = 0; l < 16; l++) w[l] = fabsf(xb[16 * j + l]);
            scales[j] = qt_kq_make_qkx2(16, 3, xb + 16 * j, w, L + 16 * j, &mins[j], -0.5f, 0.1f,
                                        15, true);
        }
        qt_kq_q2_k_finish(xb, scales, mins, L, b, qt_kq_requant_ref);
    }
}

void qt_q2_k_dequantize_ref(const void *blocks, float *y, size_t n)
{
    const unsigned char *b = blocks;
    for (size_t i0 = 0; i0 < n; i0 += QT_QK_K, b += 84) {
        float d = qt_blk_get_fp16(b + 80), min = qt_blk_get_fp16(b + 82);
        for (int e = 0; e < QT_QK_K; e++) {
            /* element e: sub-block e / 16, byte (e / 128) * 32 + e % 32,
             * bits 2 * ((e / 32) % 4) */
            uint8_t sc = b[e / 16];
            float dl = d * (sc & 0xF), ml = min * (sc >> 4);
            int q = (b[16 + (e / 128) * 32 + e % 32] >> (2 * ((e / 32) % 4))) & 3;
            y[i0 + e] = dl * q - ml;
        }
    }
}

/* ---- Q3_K ------------------------------------------------------------------------------ */

/* The first fit of make_q3_quants / make_qx_quants over 16 values: iscale
 * = -nmax / (the signed extreme), l = clamp(nearest(iscale x)) in [-nmax,
 * nmax), w = x^2, the weighted sums. false (and l = 0) when the group is
 * all zero (|x| < 1e-15). */
static bool first_fit16(const float *x, int nmax, int8_t *l, float *sumlx, float *suml2,
                        float *max_out)
{
    float amax, max = qt_blk_signed_extreme(x, 16, &amax);
    *max_out = max;
    *sumlx = *suml2 = 0;
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < 16; i++) l[i] = 0;
        return false;
    }
    float iscale = -(float)nmax / max;
    for (int i = 0; i < 16; i++) {
        int li = clampi(qt_kq_nearest_int(iscale * x[i]), -nmax, nmax - 1);
        l[i] = (int8_t)li;
        float w = x[i] * x[i];
        *sumlx += w * x[i] * (float)li;
        *suml2 += w * (float)li * (float)li;
    }
    return true;
}

/* make_q3_quants(n = 16, nmax = 4, do_rmse): codes L in [0, 8) and the
 * group scale, by weighted (x^2) least squares with up to 5 passes of
 * single-code moves. */
static float qt_kq_make_q3(const float *x, int8_t *L)
{
    const int n = 16, nmax = 4;
    float sumlx, suml2, max;
    if (!first_fit16(x, nmax, L, &sumlx, &suml2, &max)) return 0.f;
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * (float)L[i];
            if (!(slx > 0)) continue;
            float sl2 = suml2 - w * (float)L[i] * (float)L[i];
            int new_l = clampi(qt_kq_nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
            if (new_l == L[i]) continue;
            slx += w * x[i] * (float)new_l;
            sl2 += w * (float)new_l * (float)new_l;
            if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                L[i] = (int8_t)new_l;
                sumlx = slx;
                suml2 = sl2;
                n_changed++;
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* The 6-bit scale of group j from the packed scales[12]. */
int qt_kq_q3_scale(const uint8_t *s, int j)
{
    int lo = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
    int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (int8_t)(lo | hi << 4) - 32;
}

void qt_kq_q3_k_finish(const float *x, const float *scales, uint8_t *L, unsigned char *b,
                       qt_kq_requant_fn rq)
{
    float max_scale = 0, amax = 0;
    for (int j = 0; j < 16; j++) {
        float a = fabsf(scales[j]);
        if (a > amax) {
            amax = a;
            max_scale = scales[j];
        }
    }
    uint8_t *hmask = b, *qs = b + 32, *sc = b + 96;
    memset(sc, 0, 12);
    qt_blk_put_fp16(b + 108, 0.f);
    if (max_scale != 0) {
        float iscale = -32.f / max_scale;
        for (int j = 0; j < 16; j++) {
            int8_t l8 = (int8_t)qt_kq_nearest_int(iscale * scales[j]);
            int l = clampi(l8, -32, 31) + 32;
            if (j < 8) sc[j] = (uint8_t)(l & 0xF);
            else sc[j - 8] |= (uint8_t)((l & 0xF) << 4);
            sc[j % 4 + 8] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
        }
        qt_blk_put_fp16(b + 108, 1 / iscale);
    }
    float d_all = qt_blk_get_fp16(b + 108);
    for (int j = 0; j < 16; j++) {
        float d = d_all * (float)qt_kq_q3_scale(sc, j);
        if (!d) continue;
        rq(x + 16 * j, 16, d, 0.0f, -4, 3, L + 16 * j);
    }
    /* bit 2 of code e goes to hmask[e % 32], bit e / 32 */
    memset(hmask, 0, 32);
    uint8_t low[QT_QK_K];
    for (int e = 0; e < QT_QK_K; e++) { /* branch-free: codes are 0..7 */
        hmask[e % 32] |= (uint8_t)((L[e] >> 2) << (e / 32));
        low[e] = L[e] & 3;
    }
    pack_2bit(low, qs);
}

/* q3_k / q6_k rows: the 16 signed group fits, then the type's tail. */
static void g16_signed_row(const float *x, unsigned char *b, size_t n, size_t bb,
                           float (*fit)(const float *, int8_t *),
                           void (*finish)(const float *, const float *, uint8_t *, unsigned char *,
                                          qt_kq_requant_fn))
{
    for (size_t i0 = 0; i0 < n; i0 += QT_QK_K, b += bb) {
        int8_t L[QT_QK_K];
        float scales[16];
        for (int j = 0; j < 16; j++) scales[j] = fit(x + i0 + 16 * j, L + 16 * j);
        finish(x + i0, scales, (uint8_t *)L, b, qt_kq_requant_ref);
    }
}

void qt_q3_k_quantize_ref(const float *x, void *blocks, size_t n)
{
    g16_signed_row(x, blocks, n, 110, qt_kq_make_q3, qt_kq_q3_k_finish);
}

void qt_q3_k_dequantize_ref(const void *blocks, float *y, size_t n)
{
    const unsigned char *b = blocks;
    for (size_t i0 = 0; i0 < n; i0 += QT_QK_K, b += 110) {
        float d_all = qt_blk_get_fp16(b + 108);
        for (int e = 0; e < QT_QK_K; e++) {
            float dl = d_all * (float)qt_kq_q3_scale(b + 96, e / 16);
            int q = (b[32 + (e / 128) * 32 + e % 32] >> (2 * ((e / 32) % 4))) & 3;
            int h = (b[e % 32] >> (e / 32)) & 1;
            y[i0 + e] = dl * (float)(q - (h ? 0 : 4));
        }
    }
}

/* ---- Q6_K ------------------------------------------------------------------------------ */

/* make_qx_quants(n = 16, nmax = 32, rmse_type 1, no weights): codes L in
 * [0, 64) and the group scale; trial scales -(nmax + 0.1 is) / max for is
 * in -9..9, kept when (sum w x l)^2 / (sum w l^2) grows, w = x^2. */
static float qt_kq_make_qx(const float *x, int8_t *L)
{
    const int n = 16, nmax = 32;
    float sumlx, suml2, max, iscale;
    if (!first_fit16(x, nmax, L, &sumlx, &suml2, &max)) return 0.f;
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    float scale = suml2 ? sumlx / suml2 : 0.0f, best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -((float)nmax + 0.1f * (float)is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = clampi(qt_kq_nearest_int(iscale * x[i]), -nmax, nmax - 1);
            float w = x[i] * x[i];
            sumlx += w * x[i] * (float)l;
            suml2 += w * (float)l * (float)l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++)
                L[i] = (int8_t)(nmax + clampi(qt_kq_nearest_int(iscale * x[i]), -nmax, nmax - 1));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

void qt_kq_q6_k_finish(const float *x, const float *scales, uint8_t *L, unsigned char *b,
                       qt_kq_requant_fn rq)
{
    float max_scale = 0, max_abs_scale = 0;
    for (int j = 0; j < 16; j++) {
        float a = fabsf(scales[j]);
        if (a > max_abs_scale) {
            max_abs_scale = a;
            max_scale = scales[j];
        }
    }
    if (max_abs_scale < GROUP_MAX_EPS) {
        memset(b, 0, 210);
        return;
    }
    uint8_t *ql = b, *qh = b + 128;
    int8_t *sc = (int8_t *)(b + 192);
    float iscale = -128.f / max_scale;
    qt_blk_put_fp16(b + 208, 1 / iscale);
    for (int j = 0; j < 16; j++) {
        int l = qt_kq_nearest_int(iscale * scales[j]);
        sc[j] = (int8_t)(l < 127 ? l : 127);
    }
    float d_all = qt_blk_get_fp16(b + 208);
    for (int j = 0; j < 16; j++) {
        float d = d_all * (float)sc[j];
        if (!d) continue;
        rq(x + 16 * j, 16, d, 0.0f, -32, 31, L + 16 * j);
    }
    for (int j = 0; j < QT_QK_K; j += 128, ql += 64, qh += 32) {
        for (int l = 0; l < 32; l++) {
            int q1 = L[j + l], q2 = L[j + l + 32], q3 = L[j + l + 64], q4 = L[j + l + 96];
            ql[l] = (uint8_t)((q1 & 0xF) | (q3 & 0xF) << 4);
            ql[l + 32] = (uint8_t)((q2 & 0xF) | (q4 & 0xF) << 4);
            qh[l] = (uint8_t)(q1 >> 4 | (q2 >> 4) << 2 | (q3 >> 4) << 4 | (q4 >> 4) << 6);
        }
    }
}

void qt_q6_k_quantize_ref(const float *x, void *blocks, size_t n)
{
    g16_signed_row(x, blocks, n, 210, qt_kq_make_qx, qt_kq_q6_k_finish);
}

void qt_q6_k_dequantize_ref(const void *blocks, float *y, size_t n)
{
    const unsigned char *b = blocks;
    for (size_t i0 = 0; i0 < n; i0 += QT_QK_K, b += 210) {
        float d = qt_blk_get_fp16(b + 208);
        const int8_t *sc = (const int8_t *)(b + 192);
        for (int e = 0; e < QT_QK_K; e++) {
            /* element e = 128 h + 32 k + l: ql byte 64 h + 32 (k & 1) + l,
             * nibble k >> 1; qh byte 32 h + l, bits 2 k */
            int h = e / 128, k = (e / 32) % 4, l = e % 32;
            int lo = (b[64 * h + 32 * (k & 1) + l] >> (4 * (k >> 1))) & 0xF;
            int hi = (b[128 + 32 * h + l] >> (2 * k)) & 3;
            int8_t q = (int8_t)((lo | hi << 4) - 32);
            y[i0 + e] = d * (float)sc[e / 16] * (float)q;
        }
    }
}

/* ---- dots (the fixed order of quant.h) ------------------------------------------------ */

float qt_q2_k_dot_ref(const void *blocks, const float *x, size_t n)
{
    return qt_blk_dot_ref(qt_q2_k_dequantize_ref, QT_QK_K, 84, blocks, x, n);
}
float qt_q3_k_dot_ref(const void *blocks, const float *x, size_t n)
{
    return qt_blk_dot_ref(qt_q3_k_dequantize_ref, QT_QK_K, 110, blocks, x, n);
}
float qt_q4_k_dot_ref(const void *blocks, const float *x, size_t n)
{
    return qt_blk_dot_ref(qt_q4_k_dequantize_ref, QT_QK_K, 144, blocks, x, n);
}
float qt_q5_k_dot_ref(const void *blocks, const float *x, size_t n)
{
    return qt_blk_dot_ref(qt_q5_k_dequantize_ref, QT_QK_K, 176, blocks, x, n);
}
float qt_q6_k_dot_ref(const void *blocks, const float *x, size_t n)
{
    return qt_blk_dot_ref(qt_q6_k_dequantize_ref, QT_QK_K, 210, blocks, x, n);
}
