/* quant/kquants_simd.h: the lane-parallel K-quant quantizers, written once
 * with GCC vector extensions and compiled per ISA (kquants_avx2.c: 8 lanes,
 * kquants_avx512.c: 16 lanes). Included only by those two files, after
 * they define QT_VW (lanes), QT_SQRT(v), QT_IMIN / QT_IMAX (int32 lanes),
 * QT_FMIN / QT_FMAX (float lanes, no NaN reaches them),
 * QT_ANY(mask) (any lane set), QT_GATHER(base, idx) (floats), QT_CVTT(v) (cvttps2dq), QT_WIDEN16(p, v16i, epu8|epi8) (16 bytes to
 * int32), QT_SCALAR_DEQ32 (1: scalar dequantizers for the 32-blocks and
 * q4_k) and QT_SFX (the name suffix). It defines the ISA's table,
 * qt_blk_ops_<sfx>.
 *
 * Why bit-identical to kquants.c: one lane runs one group (16 or 32
 * elements) of the scalar algorithm, so every float operation of the
 * scalar code happens in the lane, in the same order and rounding (IEEE
 * +,-,*,/,sqrt per lane, no FMA: -ffp-contract=off); branches become masks
 * that pick exactly what the scalar branch would have kept. The sums over
 * a group stay sequential inside each lane. Groups are transposed into
 * lanes on the way in; the per-super-block tail (6-bit scale packing,
 * requantization, bit packing) is the scalar code of kquants.c. */
#ifndef QT_VW
#error "define QT_VW and the QT_ macros listed above before including kquants_simd.h"
#endif

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* the 16-float helpers below are static (never called across an ABI), so
 * GCC's note about passing 64-byte vectors without AVX-512 does not apply */
#pragma GCC diagnostic ignored "-Wpsabi"

typedef float vf __attribute__((vector_size(QT_VW * 4)));
typedef int32_t vi __attribute__((vector_size(QT_VW * 4)));
typedef float v16f __attribute__((vector_size(64)));

#define QT_CAT2(a, b) a##b
#define QT_CAT(a, b) QT_CAT2(a, b)
#define QT_FN(name) QT_CAT(name, QT_SFX)

static inline vf vsplat(float v)
{
    return (vf){0} + v;
}
static inline vi isplat(int32_t v)
{
    return (vi){0} + v;
}
/* m ? a : b per lane (m: all ones or zero) */
static inline vf vsel(vi m, vf a, vf b)
{
    return (vf)(((vi)a & m) | ((vi)b & ~m));
}
static inline vi isel(vi m, vi a, vi b)
{
    return (a & m) | (b & ~m);
}
static inline vf vabs(vf v)
{
    return (vf)((vi)v & 0x7fffffff);
}
static inline vi iclamp(vi v, int lo, int hi)
{
    return QT_IMIN(QT_IMAX(v, isplat(lo)), isplat(hi));
}
static inline vi vnearest(vf v) /* qt_kq_nearest_int per lane */
{
    vf t = v + 12582912.0f;
    return ((vi)t & 0x007fffff) - 0x00400000;
}
static inline vf vfloat(vi v)
{
    return __builtin_convertvector(v, vf);
}
static inline bool vany(vi m)
{
    return QT_ANY(m);
}

/* ---- make_qkx2_quants, one group per lane ------------------------------------ */

/* xv[i], wv[i]: element i of each lane's group (i < n <= 32). Out: Lf[i]
 * codes (as floats), *scale, *the_min per lane. x - min is kept per element
 * and refreshed when min moves (the same value the scalar code computes in
 * each trial). */
static void qkx2_lanes(int n, int nmax, const vf *xv, const vf *wv, vf *Lf, vf *scale_out,
                       vf *min_out, float rmin, float rdelta, int nstep, bool use_mad)
{
    vf Laux[32], xm[32];
    vf min = xv[0], max = xv[0], sum_w = wv[0], sum_x = sum_w * xv[0];
    for (int i = 1; i < n; i++) {
        min = vsel(xv[i] < min, xv[i], min);
        max = vsel(xv[i] > max, xv[i], max);
        sum_w += wv[i];
        sum_x += wv[i] * xv[i];
    }
    min = vsel(min > 0, vsplat(0), min);
    vi flat = max == min; /* the scalar code returns here for these lanes */
    /* the plain fit */
    vf iscale = (float)nmax / (max - min), scale = 1 / iscale, best_error = vsplat(0);
    for (int i = 0; i < n; i++) {
        xm[i] = xv[i] - min;
        Lf[i] = vfloat(iclamp(vnearest(iscale * xm[i]), 0, nmax));
        vf diff = scale * Lf[i] + min - xv[i];
        diff = use_mad ? vabs(diff) : diff * diff;
        best_error += wv[i] * diff;
    }
    /* the trial scales */
    for (int is = 0; is <= nstep; is++) {
        /* min moves with each better trial, as in the scalar code */
        float num = rmin + rdelta * (float)is + (float)nmax;
        iscale = num / (max - min);
        vf sum_l = vsplat(0), sum_l2 = vsplat(0), sum_xl = vsplat(0);
        /* when every |iscale * (x - min)| stays far below 2^22, rounding
         * through the 1.5 * 2^23 addend and clamping can stay in floats
         * (the same integers as nearest_int); otherwise the integer path */
        bool fast = !vany(~(vabs(iscale) * (max - min) < 2097152.0f));
        for (int i = 0; i < n; i++) {
            vf v = iscale * xm[i], lf;
            if (fast) {
                lf = (v + 12582912.0f) - 12582912.0f;
                lf = QT_FMIN(QT_FMAX(lf, vsplat(0)), vsplat((float)nmax));
            } else {
                lf = vfloat(iclamp(vnearest(v), 0, nmax));
            }
            vf wl = wv[i] * lf;
            Laux[i] = lf;
            sum_l += wl;
            sum_l2 += wl * lf;
            sum_xl += wl * xv[i];
        }
        vf D = sum_w * sum_l2 - sum_l * sum_l;
        vi valid = (D > 0) & ~flat;
        if (!vany(valid)) continue;
        vf this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
        vf this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        vi pos = this_min > 0;
        this_min = vsel(pos, vsplat(0), this_min);
        this_scale = vsel(pos, sum_xl / sum_l2, this_scale);
        vf cur_error = vsplat(0);
        for (int i = 0; i < n; i++) {
            vf diff = this_scale * Laux[i] + this_min - xv[i];
            diff = use_mad ? vabs(diff) : diff * diff;
            cur_error += wv[i] * diff;
        }
        vi better = valid & (cur_error < best_error);
        if (!vany(better)) continue;
        best_error = vsel(better, cur_error, best_error);
        scale = vsel(better, this_scale, scale);
        min = vsel(better, this_min, min);
        for (int i = 0; i < n; i++) {
            Lf[i] = vsel(better, Laux[i], Lf[i]);
            xm[i] = xv[i] - min;
        }
    }
    for (int i = 0; i < n; i++) Lf[i] = vsel(flat, vsplat(0), Lf[i]);
    *scale_out = vsel(flat, vsplat(0), scale);
    *min_out = -min;
}

/* ---- make_qx_quants (q6_k) and make_q3_quants (q3_k), one group per lane ---- */

/* The element of largest magnitude per lane, sign kept (first on a tie),
 * and the magnitude. */
static void signed_max_lanes(const vf *xv, int n, vf *max_out, vf *amax_out)
{
    vf max = vsplat(0), amax = vsplat(0);
    for (int i = 0; i < n; i++) {
        vf ax = vabs(xv[i]);
        vi gt = ax > amax;
        amax = vsel(gt, ax, amax);
        max = vsel(gt, xv[i], max);
    }
    *max_out = max;
    *amax_out = amax;
}

/* make_qx_quants(16, 32, rmse_type 1, no weights): Lv[i] in [0, 64). */
static vf qx_lanes(const vf *xv, vi *Lv)
{
    const int n = 16, nmax = 32;
    vf max, amax;
    signed_max_lanes(xv, n, &max, &amax);
    vi zero = amax < 1e-15f;
    vf iscale = -(float)nmax / max, sumlx = vsplat(0), suml2 = vsplat(0), w[16], wx[16];
    for (int i = 0; i < n; i++) {
        vi l = iclamp(vnearest(iscale * xv[i]), -nmax, nmax - 1);
        Lv[i] = l + nmax;
        vf lf = vfloat(l);
        w[i] = xv[i] * xv[i];
        wx[i] = w[i] * xv[i];
        sumlx += wx[i] * lf;
        suml2 += w[i] * lf * lf;
    }
    vf scale = vsel(suml2 != 0, sumlx / suml2, vsplat(0)), best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        float num = -((float)nmax + 0.1f * (float)is);
        iscale = num / max;
        vi l[16];
        sumlx = suml2 = vsplat(0);
        for (int i = 0; i < n; i++) {
            l[i] = iclamp(vnearest(iscale * xv[i]), -nmax, nmax - 1);
            vf lf = vfloat(l[i]);
            sumlx += wx[i] * lf;
            suml2 += w[i] * lf * lf;
        }
        vi better = (suml2 > 0) & (sumlx * sumlx > best * suml2) & ~zero;
        if (!vany(better)) continue;
        for (int i = 0; i < n; i++) Lv[i] = isel(better, l[i] + nmax, Lv[i]);
        scale = vsel(better, sumlx / suml2, scale);
        best = vsel(better, scale * sumlx, best);
    }
    for (int i = 0; i < n; i++) Lv[i] = isel(zero, isplat(0), Lv[i]);
    return vsel(zero, vsplat(0), scale);
}

/* make_q3_quants(16, 4, do_rmse): Lv[i] in [0, 8). */
static vf q3_lanes(const vf *xv, vi *Lv)
{
    const int n = 16, nmax = 4;
    vf max, amax;
    signed_max_lanes(xv, n, &max, &amax);
    vi zero = amax < 1e-15f;
    vf iscale = -(float)nmax / max, sumlx = vsplat(0), suml2 = vsplat(0), w[16], wx[16];
    for (int i = 0; i < n; i++) {
        Lv[i] = iclamp(vnearest(iscale * xv[i]), -nmax, nmax - 1);
        vf lf = vfloat(Lv[i]);
        w[i] = xv[i] * xv[i];
        wx[i] = w[i] * xv[i];
        sumlx += wx[i] * lf;
        suml2 += w[i] * lf * lf;
    }
    /* a lane whose pass changed nothing would change nothing again, so
     * running more passes than it needs leaves it as the scalar code does */
    for (int itry = 0; itry < 5; itry++) {
        vi changed = isplat(0);
        for (int i = 0; i < n; i++) {
            vf Lf = vfloat(Lv[i]);
            vf slx = sumlx - wx[i] * Lf;
            vi act = (slx > 0) & ~zero;
            if (!vany(act)) continue;
            vf sl2 = suml2 - w[i] * Lf * Lf;
            vi new_l = iclamp(vnearest(xv[i] * sl2 / slx), -nmax, nmax - 1);
            act &= new_l != Lv[i];
            vf nf = vfloat(new_l);
            slx += wx[i] * nf;
            sl2 += w[i] * nf * nf;
            act &= (sl2 > 0) & (slx * slx * suml2 > sumlx * sumlx * sl2);
            /* a branch, not a select: most elements change no lane, and
             * then the sums carry no dependency into the next element */
            if (!vany(act)) continue;
            Lv[i] = isel(act, new_l, Lv[i]);
            sumlx = vsel(act, slx, sumlx);
            suml2 = vsel(act, sl2, suml2);
            changed |= act;
        }
        if (!vany(changed)) break;
    }
    for (int i = 0; i < n; i++) Lv[i] = isel(zero, isplat(0), Lv[i] + nmax);
    return vsel(zero, vsplat(0), vsel(suml2 > 0, sumlx / suml2, vsplat(0)));
}

/* ---- rows: groups transposed into lanes --------------------------------------- */

/* Lanes k < QT_VW take groups g0 + k of size gs from x (groups past n_groups
 * repeat group g0; their results are dropped): a gather per element. */
static void load_lanes(const float *x, size_t g0, size_t n_groups, int gs, vf *xv)
{
    vi idx;
    for (int k = 0; k < QT_VW; k++) idx[k] = g0 + (size_t)k < n_groups ? k * gs : 0;
    const float *base = x + g0 * (size_t)gs;
    for (int i = 0; i < gs; i++) xv[i] = QT_GATHER(base + i, idx);
}

/* Stores lane results of groups g0 + k < n_groups (the codes through one
 * aligned copy of the vectors, then bytes). */
static void store_lanes(const vi *Lv, vf scale, vf min, size_t g0, size_t n_groups, int gs,
                        uint8_t *L, float *scales, float *mins)
{
    int32_t t[32][QT_VW] __attribute__((aligned(64)));
    memcpy(t, Lv, (size_t)gs * sizeof(vi));
    for (int k = 0; k < QT_VW && g0 + (size_t)k < n_groups; k++) {
        size_t g = g0 + (size_t)k;
        scales[g] = scale[k];
        if (mins) mins[g] = min[k];
        uint8_t *o = L + g * (size_t)gs;
        for (int i = 0; i < gs; i++) o[i] = (uint8_t)t[i][k];
    }
}

/* The same for codes held as floats. */
static void store_lanes_f(const vf *Lf, vf scale, vf min, size_t g0, size_t n_groups, int gs,
                          uint8_t *L, float *scales, float *mins)
{
    vi Lv[32];
    for (int i = 0; i < gs; i++) Lv[i] = __builtin_convertvector(Lf[i], vi);
    store_lanes(Lv, scale, min, g0, n_groups, gs, L, scales, mins);
}

/* requantization along the elements (qt_kq_requant_ref, 16 at a time) */
typedef int32_t v16i __attribute__((vector_size(64)));
typedef uint8_t v16u8 __attribute__((vector_size(16)));
static void QT_FN(requant_)(const float *x, int n, float d, float dm, int lo, int hi, uint8_t *L)
{
    for (int i0 = 0; i0 < n; i0 += 16) {
        v16f xv;
        memcpy(&xv, x + i0, 64);
        v16f t = (xv + dm) / d + 12582912.0f;
        v16i l = ((v16i)t & 0x007fffff) - 0x00400000;
        l = ((l < lo) & lo) | (~(l < lo) & l);
        l = ((l > hi) & hi) | (~(l > hi) & l);
        v16u8 c = __builtin_convertvector(l - lo, v16u8);
        memcpy(L + i0, &c, 16);
    }
}

/* Super-blocks per pass: enough for whole vectors of groups. */
#define SB_PER_PASS (QT_VW >= 16 ? QT_VW / 8 : 1)

/* q4_k (nmax 15) and q5_k (nmax 31): the group fits of up to SB_PER_PASS
 * super-blocks at x, then kquants.c's tail per super-block. */
static void k4_row(const float *x, void *blocks, size_t n, int nmax, float rmin, float rdelta,
                   int nstep, size_t bbytes, void (*pack)(const uint8_t *, unsigned char *))
{
    unsigned char *b = blocks;
    size_t nsb = n / QT_QK_K;
    for (size_t s0 = 0; s0 < nsb; s0 += SB_PER_PASS) {
        size_t cnt = nsb - s0 < SB_PER_PASS ? nsb - s0 : SB_PER_PASS, ng = cnt * 8;
        const float *xs = x + s0 * QT_QK_K;
        uint8_t L[SB_PER_PASS * QT_QK_K];
        float scales[SB_PER_PASS * 8], mins[SB_PER_PASS * 8];
        for (size_t g0 = 0; g0 < ng; g0 += QT_VW) {
            vf xv[32], wv[32], sum_x2 = vsplat(0), scale, min, Lf[32];
            load_lanes(xs, g0, ng, 32, xv);
            /* weights: sqrt(mean x^2) + |x| */
            for (int l = 0; l < 32; l++) sum_x2 += xv[l] * xv[l];
            vf av_x = QT_SQRT(sum_x2 / 32);
            for (int l = 0; l < 32; l++) wv[l] = av_x + vabs(xv[l]);
            qkx2_lanes(32, nmax, xv, wv, Lf, &scale, &min, rmin, rdelta, nstep, false);
            store_lanes_f(Lf, scale, min, g0, ng, 32, L, scales, mins);
        }
        for (size_t s = 0; s < cnt; s++) {
            unsigned char *bs = b + (s0 + s) * bbytes;
            qt_kq_finish_k4(xs + s * QT_QK_K, scales + 8 * s, mins + 8 * s, nmax, bs,
                            L + s * QT_QK_K, QT_FN(requant_));
            pack(L + s * QT_QK_K, bs);
        }
    }
}

static void QT_FN(q4_k_quantize_)(const float *x, void *blocks, size_t n)
{
    k4_row(x, blocks, n, 15, -1.f, 0.1f, 20, 144, qt_kq_q4_k_pack);
}

static void QT_FN(q5_k_quantize_)(const float *x, void *blocks, size_t n)
{
    k4_row(x, blocks, n, 31, -0.5f, 0.1f, 15, 176, qt_kq_q5_k_pack);
}

/* The group fits of the 16-element-group types, one super-block at a
 * time (16 groups = one or two vectors). kind: 2 = q2_k, 3 = q3_k, 6 = q6_k. */
static void g16_superblock(const float *xs, int kind, uint8_t *L, float *scales, float *mins)
{
    for (size_t g0 = 0; g0 < 16; g0 += QT_VW) {
        vf xv[16], wv[16], scale, min = vsplat(0), Lf[16];
        vi Lv[16];
        load_lanes(xs, g0, 16, 16, xv);
        if (kind == 2) {
            for (int l = 0; l < 16; l++) wv[l] = vabs(xv[l]);
            qkx2_lanes(16, 3, xv, wv, Lf, &scale, &min, -0.5f, 0.1f, 15, true);
            for (int l = 0; l < 16; l++) Lv[l] = __builtin_convertvector(Lf[l], vi);
        } else if (kind == 3) {
            scale = q3_lanes(xv, Lv);
        } else {
            scale = qx_lanes(xv, Lv);
        }
        store_lanes(Lv, scale, min, g0, 16, 16, L, scales, kind == 2 ? mins : NULL);
    }
}

static void QT_FN(q2_k_quantize_)(const float *x, void *blocks, size_t n)
{
    unsigned char *b = blocks;
    for (size_t i0 = 0; i0 < n; i0 += QT_QK_K, b += 84) {
        uint8_t L[QT_QK_K];
        float scales[16], mins[16];
        g16_superblock(x + i0, 2, L, scales, mins);
        qt_kq_q2_k_finish(x + i0, scales, mins, L, b, QT_FN(requant_));
    }
}

static void QT_FN(q3_k_quantize_)(const float *x, void *blocks, size_t n)
{
    unsigned char *b = blocks;
    for (size_t i0 = 0; i0 < n; i0 += QT_QK_K, b += 110) {
        uint8_t L[QT_QK_K];
        float scales[16];
        g16_superblock(x + i0, 3, L, scales, NULL);
        qt_kq_q3_k_finish(x + i0, scales, L, b, QT_FN(requant_));
    }
}

static void QT_FN(q6_k_quantize_)(const float *x, void *blocks, size_t n)
{
    unsigned char *b = blocks;
    for (size_t i0 = 0; i0 < n; i0 += QT_QK_K, b += 210) {
        uint8_t L[QT_QK_K];
        float scales[16];
        g16_superblock(x + i0, 6, L, scales, NULL);
        qt_kq_q6_k_finish(x + i0, scales, L, b, QT_FN(requant_));
    }
}

/* ---- the 32-element types: one block per lane ------------------------------------ */

/* kind: 40 = q4_0, 41 = q4_1, 50 = q5_0, 51 = q5_1 (ggml_blocks.c's scalar
 * steps per lane: the scans, d and id, the truncating casts). */
static void legacy_row(const float *x, unsigned char *b, size_t n, int kind)
{
    const bool asym = kind % 10 == 1, five = kind >= 50;
    const size_t bb = kind == 40 ? 18 : kind == 41 ? 20 : kind == 50 ? 22 : 24;
    size_t nb = n / 32;
    for (size_t g0 = 0; g0 < nb; g0 += QT_VW) {
        vf xv[32], d, id, lo_v = vsplat(0), off;
        vi code[32];
        load_lanes(x, g0, nb, 32, xv);
        if (asym) { /* min and max from +-FLT_MAX, strict comparisons */
            vf mn = vsplat(3.40282347e38f), mx = vsplat(-3.40282347e38f);
            for (int j = 0; j < 32; j++) {
                mn = vsel(xv[j] < mn, xv[j], mn);
                mx = vsel(xv[j] > mx, xv[j], mx);
            }
            d = (mx - mn) / (five ? 31.0f : 15.0f);
            lo_v = mn;
            off = vsplat(0.5f);
        } else { /* the signed extreme, first on a tie */
            vf amax = vsplat(0), max = vsplat(0);
            for (int j = 0; j < 32; j++) {
                vi gt = amax < vabs(xv[j]);
                amax = vsel(gt, vabs(xv[j]), amax);
                max = vsel(gt, xv[j], max);
            }
            d = max / (five ? -16.0f : -8.0f);
            off = vsplat(five ? 16.5f : 8.5f);
        }
        id = vsel(d != 0, 1.0f / d, vsplat(0));
        for (int j = 0; j < 32; j++) {
            vf v = asym ? (xv[j] - lo_v) * id + off : xv[j] * id + off;
            vi t = QT_CVTT(v);
            if (kind == 51) {
                code[j] = t & 0xFF; /* (uint8_t) cast, no clamp */
            } else {
                vi t8 = (t << 24) >> 24; /* (int8_t) cast */
                code[j] = QT_IMIN(t8, isplat(five ? 31 : 15)) & 0xFF;
            }
        }
        vi qh = isplat(0), packed[16];
        for (int j = 0; j < 16; j++) {
            packed[j] = ((code[j] & 0xF) | (code[j + 16] & 0xF) << 4) & 0xFF;
            if (kind == 40 || kind == 41) packed[j] = (code[j] | code[j + 16] << 4) & 0xFF;
            qh |= ((code[j] >> 4) & 1) << j;
            qh |= ((code[j + 16] >> 4) & 1) << (j + 16);
        }
        for (int k = 0; k < QT_VW && g0 + (size_t)k < nb; k++) {
            unsigned char *o = b + (g0 + (size_t)k) * bb, *qs = o + 2;
            qt_blk_put_fp16(o, d[k]);
            if (asym) {
                qt_blk_put_fp16(o + 2, lo_v[k]);
                qs += 2;
            }
            if (five) {
                qt_store_le32(qs, (uint32_t)qh[k]);
                qs += 4;
            }
            for (int j = 0; j < 16; j++) qs[j] = (unsigned char)packed[j][k];
        }
    }
}

static void QT_FN(q4_0_quantize_)(const float *x, void *blocks, size_t n)
{
    legacy_row(x, blocks, n, 40);
}
static void QT_FN(q4_1_quantize_)(const float *x, void *blocks, size_t n)
{
    legacy_row(x, blocks, n, 41);
}
static void QT_FN(q5_0_quantize_)(const float *x, void *blocks, size_t n)
{
    legacy_row(x, blocks, n, 50);
}
static void QT_FN(q5_1_quantize_)(const float *x, void *blocks, size_t n)
{
    legacy_row(x, blocks, n, 51);
}

/* ---- dequantization, 16 elements at a time ---------------------------------------
 * The same per-element operations as the scalar dequantizers (int code ->
 * float, times the scale, minus the min), so the same floats. */

static const v16i LANE16 = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

static inline v16u8 ld16(const unsigned char *p)
{
    v16u8 v;
    memcpy(&v, p, 16);
    return v;
}
static inline v16i widen(v16u8 v)
{
    v16i r;
    QT_WIDEN16((const unsigned char *)&v, r, epu8);
    return r;
}
static inline v16f fl16(v16i v)
{
    return __builtin_convertvector(v, v16f);
}
typedef float v16f_u __attribute__((vector_size(64), aligned(4), may_alias));
static inline void st16(float *y, v16f v)
{
    *(v16f_u *)y = v;
}

__attribute__((unused)) static void QT_FN(q4_0_dequantize_)(const void *blocks, float *y, size_t n)
{
    const unsigned char *b = blocks;
    for (size_t i0 = 0; i0 < n; i0 += 32, b += 18) {
        float d = qt_blk_get_fp16(b);
        v16i q = widen(ld16(b + 2));
        st16(y + i0, fl16((q & 0xF) - 8) * d);
        st16(y + i0 + 16, fl16((q >> 4) - 8) * d);
    }
}

__attribute__((unused)) static void QT_FN(q4_1_dequantize_)(const void *blocks, float *y, size_t n)
{
    const unsigned char *b = blocks;
    for (size_t i0 = 0; i0 < n; i0 += 32, b += 20) {
        float d = qt_blk_get_fp16(b), m = qt_blk_get_fp16(b + 2);
        v16i q = widen(ld16(b + 4));
        st16(y + i0, fl16(q & 0xF) * d + m);
        st16(y + i0 + 16, fl16(q >> 4) * d + m);
    }
}

/* q5_0 (min = false: code - 16) and q5_1 (code * d + m) */
static void q5_dequantize(const unsigned char *b, size_t bb, bool min, float *y, size_t n)
{
    for (size_t i0 = 0; i0 < n; i0 += 32, b += bb) {
        float d = qt_blk_get_fp16(b), m = min ? qt_blk_get_fp16(b + 2) : 0.0f;
        const unsigned char *p = b + (min ? 4 : 2);
        v16i qh = (v16i){0} + (int32_t)qt_load_le32(p);
        v16i q = widen(ld16(p + 4));
        v16i lo = (q & 0xF) | ((qh >> LANE16) & 1) << 4;
        v16i hi = (q >> 4) | ((qh >> (LANE16 + 16)) & 1) << 4;
        if (min) {
            st16(y + i0, fl16(lo) * d + m);
            st16(y + i0 + 16, fl16(hi) * d + m);
        } else {
            st16(y + i0, fl16(lo - 16) * d);
            st16(y + i0 + 16, fl16(hi - 16) * d);
        }
    }
}

__attribute__((unused)) static void QT_FN(q5_0_dequantize_)(const void *blocks, float *y, size_t n)
{
    q5_dequantize(blocks, 22, false, y, n);
}

__attribute__((unused)) static void QT_FN(q5_1_dequantize_)(const void *blocks, float *y, size_t n)
{
    q5_dequantize(blocks, 24, true, y, n);
}

__attribute__((unused)) static void QT_FN(q8_0_dequantize_)(const void *blocks, float *y, size_t n)
{
    const unsigned char *b = blocks;
    for (size_t i0 = 0; i0 < n; i0 += 32, b += 34) {
        float d = qt_blk_get_fp16(b);
        for (int h = 0; h < 2; h++) {
            v16i q;
            QT_WIDEN16(b + 2 + 16 * h, q, epi8);
            st16(y + i0 + 16 * h, fl16(q) * d);
        }
    }
}

/* The 2-bit codes of elements e0 .. e0 + 15 (e0 a multiple of 16) from
 * qs[64] (q2_k, q3_k layout). */
static inline v16i codes2(const unsigned char *qs, int e0)
{
    return (widen(ld16(qs + (e0 / 128) * 32 + e0 % 32)) >> (2 * ((e0 / 32) % 4))) & 3;
}

__attribute__((unused)) static void QT_FN(q2_k_dequantize_)(const void *blocks, float *y, size_t n)
{
    const unsigned char *b = blocks;
    for (size_t i0 = 0; i0 < n; i0 += QT_QK_K, b += 84) {
        float d = qt_blk_get_fp16(b + 80), min = qt_blk_get_fp16(b + 82);
        for (int g = 0; g < 16; g++) {
            float dl = d * (b[g] & 0xF), ml = min * (b[g] >> 4);
            st16(y + i0 + 16 * g, dl * fl16(codes2(b + 16, 16 * g)) - ml);
        }
    }
}

__attribute__((unused)) static void QT_FN(q3_k_dequantize_)(const void *blocks, float *y, size_t n)
{
    const unsigned char *b = blocks;
    for (size_t i0 = 0; i0 < n; i0 += QT_QK_K, b += 110) {
        float d_all = qt_blk_get_fp16(b + 108);
        for (int g = 0; g < 16; g++) {
            int e0 = 16 * g;
            float dl = d_all * (float)qt_kq_q3_scale(b + 96, g);
            v16i h = (widen(ld16(b + e0 % 32)) >> (e0 / 32)) & 1;
            st16(y + i0 + e0, dl * fl16(codes2(b + 32, e0) - 4 + 4 * h));
        }
    }
}

/* q4_k (q5 = false) and q5_k (q5 = true: high bits in qh[32]) */
static void k4_dequantize(const unsigned char *b, size_t bb, bool q5, float *y, size_t n)
{
    for (size_t i0 = 0; i0 < n; i0 += QT_QK_K, b += bb) {
        float d = qt_blk_get_fp16(b), min = qt_blk_get_fp16(b + 2);
        const unsigned char *qs = b + (q5 ? 48 : 16);
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            qt_kq_get_scale_min_k4(j, b + 4, &sc, &m);
            float d1 = d * sc, m1 = min * m;
            for (int h = 0; h < 2; h++) {
                v16i q = (widen(ld16(qs + (j / 2) * 32 + 16 * h)) >> (4 * (j & 1))) & 0xF;
                if (q5) q += ((widen(ld16(b + 16 + 16 * h)) >> j) & 1) * 16;
                st16(y + i0 + 32 * j + 16 * h, d1 * fl16(q) - m1);
            }
        }
    }
}

__attribute__((unused)) static void QT_FN(q4_k_dequantize_)(const void *blocks, float *y, size_t n)
{
    k4_dequantize(blocks, 144, false, y, n);
}

__attribute__((unused)) static void QT_FN(q5_k_dequantize_)(const void *blocks, float *y, size_t n)
{
    k4_dequantize(blocks, 176, true, y, n);
}

__attribute__((unused)) static void QT_FN(q6_k_dequantize_)(const void *blocks, float *y, size_t n)
{
    const unsigned char *b = blocks;
    for (size_t i0 = 0; i0 < n; i0 += QT_QK_K, b += 210) {
        float d = qt_blk_get_fp16(b + 208);
        for (int g = 0; g < 16; g++) {
            /* elements 16 g .. = 128 h + 32 k + l, l = l0 .. l0 + 15 */
            int e0 = 16 * g, h = e0 / 128, k = (e0 / 32) % 4, l0 = e0 % 32;
            v16i lo = (widen(ld16(b + 64 * h + 32 * (k & 1) + l0)) >> (4 * (k >> 1))) & 0xF;
            v16i hi = (widen(ld16(b + 128 + 32 * h + l0)) >> (2 * k)) & 3;
            float ds = d * (float)(int8_t)b[192 + g];
            st16(y + i0 + e0, ds * fl16((lo | hi << 4) - 32));
        }
    }
}

/* ---- dot: the fixed 16-lane order of quant.h, block dequantized first ------ */

static float dot16(qt_blk_deq_fn deq, size_t block, size_t bbytes, const void *blocks,
                   const float *x, size_t n)
{
    typedef float vf_u __attribute__((vector_size(QT_VW * 4), aligned(4), may_alias));
    const unsigned char *b = blocks;
    float tmp[QT_QK_K] __attribute__((aligned(64)));
    vf acc[16 / QT_VW] = {{0}}; /* lanes 0 .. 15 of the definition */
    for (size_t i0 = 0; i0 < n; i0 += block, b += bbytes) {
        deq(b, tmp, block);
        for (size_t i = 0; i < block; i += 16)
            for (int h = 0; h < 16 / QT_VW; h++) {
                vf p = *(const vf_u *)(tmp + i + h * QT_VW) * *(const vf_u *)(x + i0 + i + h * QT_VW);
                acc[h] += p;
            }
    }
    float a[16];
    memcpy(a, acc, 64);
    return qt_blk_sum16(a);
}

#define QT_DOT16(t, block, bytes, deq)                                         \
    static float QT_FN(t##_dot_)(const void *blocks, const float *x, size_t n) \
    {                                                                          \
        return dot16(deq, block, bytes, blocks, x, n);                         \
    }

/* ---- this ISA's table ------------------------------------------------------------- */

#if QT_SCALAR_DEQ32
/* the scalar loops beat GCC's lowering of the 16-wide vectors here */
#define QT_DQ32(t) qt_##t##_dequantize_ref
#else
#define QT_DQ32(t) QT_FN(t##_dequantize_)
#endif

QT_DOT16(q8_0, 32, 34, QT_DQ32(q8_0))
QT_DOT16(q4_0, 32, 18, QT_DQ32(q4_0))
QT_DOT16(q4_1, 32, 20, QT_DQ32(q4_1))
QT_DOT16(q5_0, 32, 22, QT_DQ32(q5_0))
QT_DOT16(q5_1, 32, 24, QT_DQ32(q5_1))
QT_DOT16(q2_k, QT_QK_K, 84, QT_FN(q2_k_dequantize_))
QT_DOT16(q3_k, QT_QK_K, 110, QT_FN(q3_k_dequantize_))
QT_DOT16(q4_k, QT_QK_K, 144, QT_DQ32(q4_k))
QT_DOT16(q5_k, QT_QK_K, 176, QT_FN(q5_k_dequantize_))
QT_DOT16(q6_k, QT_QK_K, 210, QT_FN(q6_k_dequantize_))

static void QT_FN(q8_0_quantize_)(const float *x, void *blocks, size_t n)
{
    QT_FN(qt_kernels_).q8_quant(QT_SRC_F32, x, n, 32, blocks);
}

#define QT_ROW(S, t, deq) [S] = {QT_FN(t##_quantize_), deq, QT_FN(t##_dot_)}
const qt_blk_ops QT_FN(qt_blk_ops_)[QT_SCHEME_COUNT] = {
    QT_ROW(QT_SCHEME_Q8, q8_0, QT_DQ32(q8_0)),
    QT_ROW(QT_SCHEME_Q4_0, q4_0, QT_DQ32(q4_0)),
    QT_ROW(QT_SCHEME_Q4_1, q4_1, QT_DQ32(q4_1)),
    QT_ROW(QT_SCHEME_Q5_0, q5_0, QT_DQ32(q5_0)),
    QT_ROW(QT_SCHEME_Q5_1, q5_1, QT_DQ32(q5_1)),
    QT_ROW(QT_SCHEME_Q2_K, q2_k, QT_FN(q2_k_dequantize_)),
    QT_ROW(QT_SCHEME_Q3_K, q3_k, QT_FN(q3_k_dequantize_)),
    QT_ROW(QT_SCHEME_Q4_K, q4_k, QT_DQ32(q4_k)),
    QT_ROW(QT_SCHEME_Q5_K, q5_k, QT_FN(q5_k_dequantize_)),
    QT_ROW(QT_SCHEME_Q6_K, q6_k, QT_FN(q6_k_dequantize_)),
};
