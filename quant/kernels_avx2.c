/* quant/kernels_avx2.c: AVX2 + FMA + F16C kernels. Same contract as
 * kernels_avx512.c: quantize kernels are bit-identical to _ref (same float32
 * operations per element, exact absmax, branch-free searches that count the
 * thresholds below xn); a final partial block goes to the _ref kernel. */
#include "quant/quant.h"

#include <immintrin.h>

#include "quant/quant_internal.h"

static inline __m256 load8(qt_src_type t, const unsigned char *p)
{
    if (t == QT_SRC_F32) return _mm256_loadu_ps((const float *)(const void *)p);
    __m128i h = _mm_loadu_si128((const __m128i *)(const void *)p);
    if (t == QT_SRC_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

static inline __m256 abs8(__m256 x)
{
    return _mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)));
}

static inline float hmax8(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* max |x| over len (multiple of 32) elements; NaN never wins. */
static inline float absmax8(qt_src_type t, const unsigned char *p, size_t len, size_t es)
{
    __m256 m0 = _mm256_setzero_ps(), m1 = _mm256_setzero_ps();
    __m256 m2 = _mm256_setzero_ps(), m3 = _mm256_setzero_ps();
    for (size_t i = 0; i < len; i += 32) {
        m0 = _mm256_max_ps(abs8(load8(t, p + i * es)), m0);
        m1 = _mm256_max_ps(abs8(load8(t, p + (i + 8) * es)), m1);
        m2 = _mm256_max_ps(abs8(load8(t, p + (i + 16) * es)), m2);
        m3 = _mm256_max_ps(abs8(load8(t, p + (i + 24) * es)), m3);
    }
    return hmax8(_mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3)));
}

/* NF4: step 8 against t7 picks the half (t0..t7 or t8..t14,inf), then a
 * 3-step search inside it. Result = #{i : xn > t_i}. */
static inline __m256i nf4_codes(__m256 xn, __m256 tlo, __m256 thi, __m256 t7)
{
    __m256 sel = _mm256_cmp_ps(xn, t7, _CMP_GT_OQ);
    __m256i idx = _mm256_and_si256(_mm256_castps_si256(sel), _mm256_set1_epi32(8));
    __m256i loc = _mm256_setzero_si256();
    for (int step = 4; step >= 1; step >>= 1) {
        __m256i k = _mm256_add_epi32(loc, _mm256_set1_epi32(step - 1));
        __m256 t = _mm256_blendv_ps(_mm256_permutevar8x32_ps(tlo, k),
                                    _mm256_permutevar8x32_ps(thi, k), sel);
        __m256 gt = _mm256_cmp_ps(xn, t, _CMP_GT_OQ);
        loc = _mm256_add_epi32(loc, _mm256_and_si256(_mm256_castps_si256(gt),
                                                     _mm256_set1_epi32(step)));
    }
    return _mm256_add_epi32(idx, loc);
}

static inline __m256i fp4_codes(__m256 xn, __m256 thr, __m256i lut)
{
    __m256 neg = _mm256_cmp_ps(xn, _mm256_setzero_ps(), _CMP_LT_OQ);
    __m256 a = abs8(xn);
    __m256i idx = _mm256_setzero_si256();
    for (int step = 4; step >= 1; step >>= 1) {
        __m256i k = _mm256_add_epi32(idx, _mm256_set1_epi32(step - 1));
        __m256 gt = _mm256_cmp_ps(a, _mm256_permutevar8x32_ps(thr, k), _CMP_GT_OQ);
        idx = _mm256_add_epi32(idx, _mm256_and_si256(_mm256_castps_si256(gt),
                                                     _mm256_set1_epi32(step)));
    }
    __m256i m = _mm256_permutevar8x32_epi32(lut, idx);
    return _mm256_add_epi32(m, _mm256_and_si256(_mm256_castps_si256(neg), _mm256_set1_epi32(8)));
}

/* 32 codes (4 x 8 int32 lanes, in element order) -> 16 packed bytes. */
static inline void pack32(__m256i c0, __m256i c1, __m256i c2, __m256i c3, uint8_t *dst)
{
    /* 16-bit lanes in element order */
    __m256i p01 = _mm256_permute4x64_epi64(_mm256_packus_epi32(c0, c1), 0xD8);
    __m256i p23 = _mm256_permute4x64_epi64(_mm256_packus_epi32(c2, c3), 0xD8);
    /* dword k holds e[2k] | e[2k+1] << 16 -> e[2k] << 4 | e[2k+1] */
    const __m256i ff = _mm256_set1_epi32(0xff);
    __m256i d01 = _mm256_and_si256(_mm256_or_si256(_mm256_slli_epi32(p01, 4),
                                                   _mm256_srli_epi32(p01, 16)), ff);
    __m256i d23 = _mm256_and_si256(_mm256_or_si256(_mm256_slli_epi32(p23, 4),
                                                   _mm256_srli_epi32(p23, 16)), ff);
    __m256i q = _mm256_permute4x64_epi64(_mm256_packus_epi32(d01, d23), 0xD8);
    __m256i b = _mm256_packus_epi16(q, q);
    b = _mm256_permute4x64_epi64(b, 0x08);
    _mm_storeu_si128((__m128i *)(void *)dst, _mm256_castsi256_si128(b));
}

static void quant4(bool fp4, qt_src_type t, const void *src, size_t n, size_t block,
                   uint8_t *codes, float *absmax)
{
    const unsigned char *s = src;
    const size_t es = qt_src_size(t), nfull = n / block;
    float th[16];
    for (int i = 0; i < 16; i++) th[i] = i < 15 ? qt_nf4_thresholds[i] : INFINITY;
    float tf[8];
    for (int i = 0; i < 8; i++) tf[i] = i < 7 ? qt_fp4_thresholds[i] : INFINITY;
    const __m256 tlo = _mm256_loadu_ps(th), thi = _mm256_loadu_ps(th + 8);
    const __m256 t7 = _mm256_set1_ps(th[7]), tfp = _mm256_loadu_ps(tf);
    const __m256i lut = _mm256_setr_epi32(0, 1, 6, 7, 4, 5, 2, 3);
    for (size_t j = 0; j < nfull; j++) {
        const unsigned char *p = s + j * block * es;
        uint8_t *out = codes + j * block / 2;
        float m = absmax8(t, p, block, es);
        absmax[j] = m;
        const __m256 r = _mm256_set1_ps(1.0f / m);
        for (size_t i = 0; i < block; i += 32) {
            __m256i c[4];
            for (int v = 0; v < 4; v++) {
                __m256 xn = _mm256_mul_ps(load8(t, p + (i + 8 * v) * es), r);
                c[v] = fp4 ? fp4_codes(xn, tfp, lut) : nf4_codes(xn, tlo, thi, t7);
            }
            pack32(c[0], c[1], c[2], c[3], out + i / 2);
        }
    }
    if (nfull * block < n)
        qt_quant4_ref(fp4, t, s + nfull * block * es, n - nfull * block, block,
                      codes + nfull * block / 2, absmax + nfull);
}

static void dequant4(const uint8_t *codes, size_t i0, size_t len, const float map[16],
                     float scale, float *dst)
{
    size_t k = 0;
    if ((i0 & 1) && len) {
        dst[0] = map[codes[i0 >> 1] & 15] * scale;
        k = 1;
    }
    const __m256 mlo = _mm256_loadu_ps(map), mhi = _mm256_loadu_ps(map + 8);
    const __m256 vs = _mm256_set1_ps(scale);
    for (; k + 16 <= len; k += 16) {
        /* 8 bytes -> 16 codes in element order (high nibble first) */
        __m128i b = _mm_loadl_epi64((const __m128i *)(const void *)(codes + (i0 + k) / 2));
        __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), _mm_set1_epi8(15));
        __m128i lo = _mm_and_si128(b, _mm_set1_epi8(15));
        __m128i e = _mm_unpacklo_epi8(hi, lo);
        for (int h = 0; h < 2; h++) {
            __m256i c = _mm256_cvtepu8_epi32(h ? _mm_srli_si128(e, 8) : e);
            __m256 big = _mm256_castsi256_ps(_mm256_slli_epi32(c, 28)); /* bit 3 -> sign */
            __m256 v = _mm256_blendv_ps(_mm256_permutevar8x32_ps(mlo, c),
                                        _mm256_permutevar8x32_ps(mhi, c), big);
            _mm256_storeu_ps(dst + k + 8 * h, _mm256_mul_ps(v, vs));
        }
    }
    if (k < len) qt_dequant4_ref(codes, i0 + k, len - k, map, scale, dst + k);
}

/* roundf of 8 lanes (half away from zero), NaN -> 0, clamp +-127 -> int32. */
static inline __m256i q8_round8(__m256 v)
{
    __m256 tr = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 frac = _mm256_sub_ps(v, tr);
    __m256 up = _mm256_cmp_ps(abs8(frac), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    __m256 one = _mm256_or_ps(_mm256_and_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32((int)0x80000000u))),
                              _mm256_set1_ps(1.0f));
    __m256 r = _mm256_add_ps(tr, _mm256_and_ps(up, one));
    __m256 ord = _mm256_cmp_ps(v, v, _CMP_ORD_Q);
    r = _mm256_and_ps(r, ord);
    r = _mm256_min_ps(_mm256_max_ps(r, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f));
    return _mm256_cvtps_epi32(r);
}

/* 32 int32 lanes (each in [-127,127]) -> 32 int8 in order. */
static inline void store_i8x32(__m256i a, __m256i b, __m256i c, __m256i d, int8_t *dst)
{
    __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    __m256i x = _mm256_packs_epi16(ab, cd);
    x = _mm256_permutevar8x32_epi32(x, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)(void *)dst, x);
}

static void q8_quant(qt_src_type t, const void *src, size_t n, size_t block, void *dst)
{
    const unsigned char *s = src;
    const size_t es = qt_src_size(t), nfull = n / block, bb = qt_q8_block_bytes(block);
    unsigned char *out = dst;
    for (size_t j = 0; j < nfull; j++) {
        const unsigned char *p = s + j * block * es;
        unsigned char *blk = out + j * bb;
        float amax = absmax8(t, p, block, es);
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        int8_t *qs;
        if (block == 32) {
            uint16_t h = qt_fp32_to_fp16(d);
            memcpy(blk, &h, 2);
            qs = (int8_t *)(blk + 2);
        } else {
            memcpy(blk, &d, 4);
            qs = (int8_t *)(blk + 4);
        }
        const __m256 vid = _mm256_set1_ps(id);
        for (size_t i = 0; i < block; i += 32) {
            __m256i r[4];
            for (int v = 0; v < 4; v++)
                r[v] = q8_round8(_mm256_mul_ps(load8(t, p + (i + 8 * v) * es), vid));
            store_i8x32(r[0], r[1], r[2], r[3], qs + i);
        }
    }
    if (nfull * block < n)
        qt_q8_quant_ref(t, s + nfull * block * es, n - nfull * block, block, out + nfull * bb);
}

static inline __m256 load8_h(qt_src_type t, const unsigned char *p)
{
    if (t == QT_SRC_F16) return load8(t, p);
    return _mm256_cvtph_ps(_mm256_cvtps_ph(load8(t, p), _MM_FROUND_TO_NEAREST_INT));
}

static float half_value(qt_src_type t, const void *src, size_t i)
{
    if (t == QT_SRC_F16) return qt_ld(t, src, i);
    return qt_fp16_to_fp32(qt_fp32_to_fp16(qt_ld(t, src, i)));
}

static void int8_quant_row(qt_src_type t, const void *src, size_t n_cols, int8_t *cb, float *scb)
{
    const unsigned char *p = src;
    const size_t es = qt_src_size(t), nv = n_cols / 32 * 32;
    __m256 mv = _mm256_setzero_ps();
    for (size_t i = 0; i < nv; i += 8) mv = _mm256_max_ps(abs8(load8_h(t, p + i * es)), mv);
    float m = hmax8(mv);
    for (size_t i = nv; i < n_cols; i++) m = qt_absmax_step(m, half_value(t, src, i));
    *scb = m;
    float inv = 1.0f / m;
    float scale = inv * 127.0f;
    const __m256 vs = _mm256_set1_ps(scale);
    for (size_t i = 0; i < nv; i += 32) {
        __m256i r[4];
        for (int v = 0; v < 4; v++) {
            __m256 x = _mm256_mul_ps(load8_h(t, p + (i + 8 * v) * es), vs);
            x = _mm256_and_ps(x, _mm256_cmp_ps(x, x, _CMP_ORD_Q));
            x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f));
            r[v] = _mm256_cvtps_epi32(x);
        }
        store_i8x32(r[0], r[1], r[2], r[3], cb + i);
    }
    for (size_t i = nv; i < n_cols; i++) {
        float v = half_value(t, src, i) * scale;
        if (v != v) {
            cb[i] = 0;
            continue;
        }
        v = nearbyintf(v);
        cb[i] = (int8_t)(v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v);
    }
}

static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Per element: one 8-lane accumulator over the chunks in order, hsum8, then
 * the scalar tail in order; the same for every (NT, NR). */
static inline __attribute__((always_inline)) void dot_block(const float *x, size_t ldx, int NT,
                                                            const float *w, size_t ldw, int NR,
                                                            size_t n, float *y, size_t ldy)
{
    __m256 acc[2][4];
    for (int a = 0; a < NT; a++)
        for (int b = 0; b < NR; b++) acc[a][b] = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 wv[4];
        for (int b = 0; b < NR; b++) wv[b] = _mm256_loadu_ps(w + b * ldw + i);
        for (int a = 0; a < NT; a++) {
            __m256 xv = _mm256_loadu_ps(x + a * ldx + i);
            for (int b = 0; b < NR; b++) acc[a][b] = _mm256_fmadd_ps(xv, wv[b], acc[a][b]);
        }
    }
    for (int a = 0; a < NT; a++)
        for (int b = 0; b < NR; b++) {
            float s = hsum8(acc[a][b]);
            for (size_t k = i; k < n; k++) s += x[a * ldx + k] * qt_ldf(w + b * ldw, k);
            y[a * ldy + b] = s;
        }
}

static void dot_tile(const float *x, size_t ldx, size_t n_tok, const float *w, size_t ldw,
                     size_t n_rows, size_t n, float *y, size_t ldy)
{
    size_t r = 0;
    for (; r + 4 <= n_rows; r += 4) {
        size_t t = 0;
        for (; t + 2 <= n_tok; t += 2)
            dot_block(x + t * ldx, ldx, 2, w + r * ldw, ldw, 4, n, y + t * ldy + r, ldy);
        for (; t < n_tok; t++)
            dot_block(x + t * ldx, ldx, 1, w + r * ldw, ldw, 4, n, y + t * ldy + r, ldy);
    }
    for (; r < n_rows; r++)
        for (size_t t = 0; t < n_tok; t++)
            dot_block(x + t * ldx, ldx, 1, w + r * ldw, ldw, 1, n, y + t * ldy + r, ldy);
}

const qt_kernels qt_kernels_avx2 = {
    QT_ISA_AVX2,    quant4, dequant4, q8_quant, int8_quant_row, qt_blockwise8_quant_ref,
    dot_tile,       qt_lora_merge_row_avx2,
};

/* ---- matmul: conversions, packing and the GEMM kernel (quant_internal.h) ---- */

static void cvt_half(bool bf16, const void *src, size_t n, float *dst)
{
    const unsigned char *p = src;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(p + 2 * i));
        __m256 v = bf16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
                        : _mm256_cvtph_ps(h);
        _mm256_storeu_ps(dst + i, v);
    }
    if (i < n) qt_cvt_half_ref(bf16, p + 2 * i, n - i, dst + i);
}

static void cvt_i8(const int8_t *q, size_t n, float s, float c, float *dst)
{
    const __m256 vs = _mm256_set1_ps(s), vc = _mm256_set1_ps(c);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i b = _mm_loadl_epi64((const __m128i *)(const void *)(q + i));
        __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
        _mm256_storeu_ps(dst + i, _mm256_mul_ps(_mm256_mul_ps(v, vs), vc));
    }
    if (i < n) qt_cvt_i8_ref(q + i, n - i, s, c, dst + i);
}

static void cvt_map8(const uint8_t *code, size_t n, const float map[256], float a, float *dst)
{
    const __m256 va = _mm256_set1_ps(a);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i b = _mm_loadl_epi64((const __m128i *)(const void *)(code + i));
        __m256 v = _mm256_i32gather_ps(map, _mm256_cvtepu8_epi32(b), 4);
        _mm256_storeu_ps(dst + i, _mm256_mul_ps(v, va));
    }
    if (i < n) qt_cvt_map8_ref(code + i, n - i, map, a, dst + i);
}

/* In-register transpose of 8 rows of 8. */
static inline __attribute__((always_inline)) void transpose8(__m256 r[8])
{
    __m256 t[8], u[8];
#pragma GCC unroll 16
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
#pragma GCC unroll 16
    for (int g = 0; g < 2; g++) {
        __m256 a0 = t[4 * g], a1 = t[4 * g + 1], b0 = t[4 * g + 2], b1 = t[4 * g + 3];
        u[4 * g + 0] = _mm256_shuffle_ps(a0, b0, 0x44);
        u[4 * g + 1] = _mm256_shuffle_ps(a0, b0, 0xEE);
        u[4 * g + 2] = _mm256_shuffle_ps(a1, b1, 0x44);
        u[4 * g + 3] = _mm256_shuffle_ps(a1, b1, 0xEE);
    }
#pragma GCC unroll 16
    for (int j = 0; j < 4; j++) {
        r[j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x20);
        r[4 + j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
    }
}

#define MM_NR 16 /* outputs per micro-panel: 2 vectors */
#define MM_MR 6  /* tokens per register block: 12 accumulators */

/* 8 rows (g .. g+7 of n_rows, zero past it) x kk <= 8 columns from k,
 * transposed: r[j] = column j. */
static inline __attribute__((always_inline)) void load_t8(const unsigned char *base, size_t ld,
                                                          size_t n_rows, size_t g, size_t k,
                                                          size_t kk, __m256 r[8])
{
#pragma GCC unroll 8
    for (size_t i = 0; i < 8; i++) {
        const unsigned char *s = base + 4 * ((g + i) * ld + k);
        if (g + i >= n_rows) {
            r[i] = _mm256_setzero_ps();
        } else if (kk == 8) {
            r[i] = _mm256_loadu_ps((const float *)(const void *)s);
        } else {
            float tmp[8] = {0};
            memcpy(tmp, s, 4 * kk);
            r[i] = _mm256_loadu_ps(tmp);
        }
    }
    transpose8(r);
}

static void pack(const void *rows, size_t ld, size_t n_rows, size_t kc, float *panel)
{
    const unsigned char *base = rows;
    size_t k = 0;
    for (; k + 8 <= kc; k += 8)
#pragma GCC unroll 2
        for (size_t g = 0; g < MM_NR; g += 8) {
            __m256 r[8];
            load_t8(base, ld, n_rows, g, k, 8, r);
#pragma GCC unroll 8
            for (size_t j = 0; j < 8; j++) _mm256_store_ps(panel + (k + j) * MM_NR + g, r[j]);
        }
    if (k < kc) {
        _Alignas(32) float tb[8][8];
        for (size_t g = 0; g < MM_NR; g += 8) {
            __m256 r[8];
            load_t8(base, ld, n_rows, g, k, kc - k, r);
#pragma GCC unroll 8
            for (size_t j = 0; j < 8; j++) _mm256_store_ps(tb[j], r[j]);
            for (size_t j = 0; k + j < kc; j++)
                memcpy(panel + (k + j) * MM_NR + g, tb[j], sizeof tb[j]);
        }
    }
}

/* mr tokens x 16 outputs over kc: c = fma(x[t][k], p[k][o], c) in k order.
 * ncol < 16: y goes through a local copy. */
static inline __attribute__((always_inline)) void kern(const int mr, const float *x, size_t ldx,
                                                       const float *p, size_t kc, float *y,
                                                       size_t ldy, size_t ncol, bool acc)
{
    __m256 c0[MM_MR], c1[MM_MR];
    float tmp[MM_MR][MM_NR];
    const bool full = ncol == MM_NR;
#pragma GCC unroll 6
    for (int i = 0; i < mr; i++) {
        if (!acc) {
            c0[i] = c1[i] = _mm256_setzero_ps();
        } else if (full) {
            c0[i] = _mm256_loadu_ps(y + i * ldy);
            c1[i] = _mm256_loadu_ps(y + i * ldy + 8);
        } else {
            memset(tmp[i], 0, sizeof tmp[i]);
            memcpy(tmp[i], y + i * ldy, ncol * sizeof(float));
            c0[i] = _mm256_loadu_ps(tmp[i]);
            c1[i] = _mm256_loadu_ps(tmp[i] + 8);
        }
    }
    for (size_t k = 0; k < kc; k++) {
        const __m256 b0 = _mm256_load_ps(p + k * MM_NR), b1 = _mm256_load_ps(p + k * MM_NR + 8);
#pragma GCC unroll 6
        for (int i = 0; i < mr; i++) {
            const __m256 a = _mm256_broadcast_ss(x + i * ldx + k);
            c0[i] = _mm256_fmadd_ps(a, b0, c0[i]);
            c1[i] = _mm256_fmadd_ps(a, b1, c1[i]);
        }
    }
#pragma GCC unroll 6
    for (int i = 0; i < mr; i++) {
        if (full) {
            _mm256_storeu_ps(y + i * ldy, c0[i]);
            _mm256_storeu_ps(y + i * ldy + 8, c1[i]);
        } else {
            _mm256_storeu_ps(tmp[i], c0[i]);
            _mm256_storeu_ps(tmp[i] + 8, c1[i]);
            memcpy(y + i * ldy, tmp[i], ncol * sizeof(float));
        }
    }
}

/* One token x 4 consecutive panels (64 outputs, 8 chains in flight). */
static inline void kern1x4(const float *x, const float *p, size_t kc, float *y, bool acc)
{
    const size_t ps = kc * MM_NR;
    __m256 c[8];
    for (int v = 0; v < 8; v++) c[v] = acc ? _mm256_loadu_ps(y + 8 * v) : _mm256_setzero_ps();
    for (size_t k = 0; k < kc; k++) {
        const __m256 a = _mm256_broadcast_ss(x + k);
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) {
            c[2 * q] = _mm256_fmadd_ps(a, _mm256_load_ps(p + q * ps + k * MM_NR), c[2 * q]);
            c[2 * q + 1] =
                _mm256_fmadd_ps(a, _mm256_load_ps(p + q * ps + k * MM_NR + 8), c[2 * q + 1]);
        }
    }
    for (int v = 0; v < 8; v++) _mm256_storeu_ps(y + 8 * v, c[v]);
}

static void gemm(const float *x, size_t ldx, size_t n_tok, const float *panels, size_t n_pan,
                 size_t kc, size_t nc, float *y, size_t ldy, bool acc)
{
    for (size_t t = 0; t < n_tok; t += MM_MR) {
        const size_t mr = n_tok - t < MM_MR ? n_tok - t : MM_MR;
        const float *xt = x + t * ldx;
        float *yt = y + t * ldy;
        size_t p = 0;
        if (mr == 1)
            for (; p + 4 <= n_pan && (p + 4) * MM_NR <= nc; p += 4)
                kern1x4(xt, panels + p * kc * MM_NR, kc, yt + p * MM_NR, acc);
        for (; p < n_pan; p++) {
            const size_t o = p * MM_NR, ncol = nc - o < MM_NR ? nc - o : MM_NR;
            const float *pp = panels + p * kc * MM_NR;
            float *yo = yt + o;
            switch (mr) {
            case 1: kern(1, xt, ldx, pp, kc, yo, ldy, ncol, acc); break;
            case 2: kern(2, xt, ldx, pp, kc, yo, ldy, ncol, acc); break;
            case 3: kern(3, xt, ldx, pp, kc, yo, ldy, ncol, acc); break;
            case 4: kern(4, xt, ldx, pp, kc, yo, ldy, ncol, acc); break;
            case 5: kern(5, xt, ldx, pp, kc, yo, ldy, ncol, acc); break;
            default: kern(MM_MR, xt, ldx, pp, kc, yo, ldy, ncol, acc); break;
            }
        }
    }
}

const qt_mm_ops qt_mm_ops_avx2 = {
    .nr = MM_NR, .mr = MM_MR, .cvt_half = cvt_half, .cvt_i8 = cvt_i8, .cvt_map8 = cvt_map8,
    .pack = pack, .pack_half = NULL, .gemm = gemm, .dot_rows = {NULL},
};
