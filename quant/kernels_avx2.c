/* quant/kernels_avx2.c: AVX2 + FMA + F16C kernels. Same contract as
 * kernels_avx512.c: quantize kernels are bit-identical to _ref (same float32
 * operations per element, exact absmax, branch-free bucket searches that
 * count the thresholds below xn); a final partial block goes to the _ref
 * kernel. */
#include "quant/quant.h"

#include <immintrin.h>

#include "quant/quant_internal.h"
#include "quant/simd_avx2.h"

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

/* ---- 4-bit quantization ----------------------------------------------------
 *
 * Work unit: 16 consecutive elements as E (elements 0, 2, .., 14) and O
 * (1, 3, .., 15), so that packed byte k is code(E[k]) << 4 | code(O[k])
 * (bf16: E = v << 16, O = v & 0xffff0000 on the 16 raw values as 8 dwords).
 * Per block: pass 1 takes the exact absmax (bf16: an unsigned 16-bit max of
 * the magnitudes' bits, which orders non-NaN values like floats; a block
 * holding NaN goes to _ref), one reciprocal, pass 2 codes f32(x * r).
 *
 * Code search: a monotone bucket index b(x) (an FMA or multiply and a
 * truncation) cuts the range into 16 (NF4, signed xn: [-1, 1]) or 8 (FP4,
 * |xn|: [0, 1]) buckets of width ~0.127, wider than in the AVX-512 kernel
 * but narrow enough that a bucket holds at most two thresholds (the
 * smallest gap is 0.080 for NF4, 0.083 for FP4): T1[b] <= T2[b] (+inf when
 * absent). b is monotone, so the thresholds below xn are those of the lower
 * buckets (base[b]) plus those of its own bucket that xn exceeds:
 * count = base[b] + (xn > T1[b]) + (xn > T2[b]), the exact count with the
 * scalar definition's strict ordered compares. The tables are built with
 * the vector bucket function itself. NaN truncates to 0x80000000, bucket 0
 * (base 0, compares false): code 0. The index is valid for |xn| < 1.015,
 * which holds whenever r is finite; a block whose reciprocal overflows
 * (0 < absmax < 2^-128) goes to _ref. */

#define NF4_BSCALE 7.875f /* b = trunc(xn * 7.875 + 8) in [0, 15] */
#define NF4_BOFF 8.0f
#define FP4_BSCALE 7.75f  /* b = trunc(|xn| * 7.75) in [0, 7] */

typedef struct q4tab {
    __m256 t1lo, t1hi, t2lo, t2hi; /* T1, T2 of buckets 0-7, 8-15 (FP4: lo only) */
    __m256 blo, bhi;               /* base[b] as int32 bits (FP4: lo only) */
    __m256i lut;                   /* FP4: code of the count of thresholds below |xn| */
} q4tab;

static inline __m256i nf4_bucket(__m256 xn)
{
    return _mm256_cvttps_epi32(
        _mm256_fmadd_ps(xn, _mm256_set1_ps(NF4_BSCALE), _mm256_set1_ps(NF4_BOFF)));
}

static inline __m256i fp4_bucket(__m256 a)
{
    return _mm256_cvttps_epi32(_mm256_mul_ps(a, _mm256_set1_ps(FP4_BSCALE)));
}

/* The tables; false if a bucket would hold more than two thresholds (never
 * for the built-in ones; test_quant.c sweeps every threshold against _ref). */
static bool q4tab_init(bool fp4, q4tab *tb)
{
    const int nt = fp4 ? 7 : 15, nbk = fp4 ? 8 : 16;
    float th[16], t1[16], t2[16];
    int32_t bk[16], base[16];
    for (int i = 0; i < 16; i++)
        th[i] = i < nt ? (fp4 ? qt_fp4_thresholds[i] : qt_nf4_thresholds[i]) : 0.0f;
    for (int h = 0; h < 16; h += 8) {
        __m256 v = _mm256_loadu_ps(th + h);
        _mm256_storeu_si256((__m256i *)(void *)(bk + h), fp4 ? fp4_bucket(v) : nf4_bucket(v));
    }
    for (int b = 0; b < 16; b++) {
        int below = 0, in = 0;
        t1[b] = t2[b] = INFINITY;
        for (int i = 0; i < nt; i++) { /* thresholds ascending */
            if (bk[i] < 0 || bk[i] >= nbk) return false;
            below += bk[i] < b;
            if (bk[i] == b) *(in++ ? &t2[b] : &t1[b]) = th[i];
        }
        if (in > 2) return false;
        base[b] = below;
    }
    tb->t1lo = _mm256_loadu_ps(t1);
    tb->t1hi = _mm256_loadu_ps(t1 + 8);
    tb->t2lo = _mm256_loadu_ps(t2);
    tb->t2hi = _mm256_loadu_ps(t2 + 8);
    tb->blo = _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)(const void *)base));
    tb->bhi = _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)(const void *)(base + 8)));
    tb->lut = _mm256_setr_epi32(0, 1, 6, 7, 4, 5, 2, 3);
    return true;
}

/* Entry b (0..15) of the 16-entry table (lo, hi); hib: b << 28 (bit 3 in
 * the sign). */
static inline __m256 lookup16(__m256 lo, __m256 hi, __m256i b, __m256 hib)
{
    return _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, b), _mm256_permutevar8x32_ps(hi, b), hib);
}

/* NF4 codes of 8 lanes: base[b] + (xn > T1[b]) + (xn > T2[b]). */
static inline __m256i nf4_code8(__m256 xn, const q4tab *tb)
{
    __m256i b = nf4_bucket(xn);
    __m256 hib = _mm256_castsi256_ps(_mm256_slli_epi32(b, 28));
    __m256i base = _mm256_castps_si256(lookup16(tb->blo, tb->bhi, b, hib));
    __m256i g1 = _mm256_castps_si256(_mm256_cmp_ps(xn, lookup16(tb->t1lo, tb->t1hi, b, hib),
                                                   _CMP_GT_OQ));
    __m256i g2 = _mm256_castps_si256(_mm256_cmp_ps(xn, lookup16(tb->t2lo, tb->t2hi, b, hib),
                                                   _CMP_GT_OQ));
    return _mm256_sub_epi32(_mm256_sub_epi32(base, g1), g2); /* g = -1 where true */
}

/* FP4 codes of 8 lanes: the magnitude code of the count below |xn|, plus 8
 * when max(x, xn) < nt (x the element before scaling: nt = 0, or
 * QT_CUDA_NEG_BELOW for the GPU's flush to zero; NaN xn: not negative). */
static inline __m256i fp4_code8(__m256 xn, __m256 x, __m256 nt, const q4tab *tb)
{
    __m256 a = abs8(xn);
    __m256i b = fp4_bucket(a);
    __m256i base = _mm256_castps_si256(_mm256_permutevar8x32_ps(tb->blo, b));
    __m256i g1 = _mm256_castps_si256(
        _mm256_cmp_ps(a, _mm256_permutevar8x32_ps(tb->t1lo, b), _CMP_GT_OQ));
    __m256i g2 = _mm256_castps_si256(
        _mm256_cmp_ps(a, _mm256_permutevar8x32_ps(tb->t2lo, b), _CMP_GT_OQ));
    __m256i m = _mm256_permutevar8x32_epi32(tb->lut, _mm256_sub_epi32(_mm256_sub_epi32(base, g1), g2));
    __m256 neg = _mm256_cmp_ps(_mm256_max_ps(x, xn), nt, _CMP_LT_OQ);
    return _mm256_or_si256(m, _mm256_and_si256(_mm256_castps_si256(neg), _mm256_set1_epi32(8)));
}

/* 16 elements of type t at p as E (even elements) and O (odd), float32. */
static inline __attribute__((always_inline)) void load_eo(qt_src_type t, const unsigned char *p,
                                                          __m256 *e, __m256 *o)
{
    if (t == QT_SRC_BF16) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)p);
        *e = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
        *o = _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32((int)0xffff0000u)));
        return;
    }
    __m256 a = load8(t, p), b = load8(t, p + 8 * qt_src_size(t));
    /* in-lane even / odd picks, then the 64-bit quarters in order */
    *e = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
    *o = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8));
}

/* Exact absmax of len (multiple of 16) bf16 values from the bits of their
 * magnitudes (unsigned order = float order for non-NaN); NaN: returns NaN. */
static inline float absmax_bf16(const unsigned char *p, size_t len)
{
    const __m256i mag = _mm256_set1_epi16(0x7fff);
    __m256i m0 = _mm256_setzero_si256(), m1 = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 32 <= len; i += 32) {
        m0 = _mm256_max_epu16(m0, _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(const void *)(p + 2 * i)), mag));
        m1 = _mm256_max_epu16(m1, _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(const void *)(p + 2 * i + 32)), mag));
    }
    for (; i < len; i += 16)
        m0 = _mm256_max_epu16(m0, _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(const void *)(p + 2 * i)), mag));
    __m128i m = _mm_max_epu16(_mm256_castsi256_si128(_mm256_max_epu16(m0, m1)),
                              _mm256_extracti128_si256(_mm256_max_epu16(m0, m1), 1));
    m = _mm_max_epu16(m, _mm_srli_si128(m, 8));
    m = _mm_max_epu16(m, _mm_srli_si128(m, 4));
    m = _mm_max_epu16(m, _mm_srli_si128(m, 2));
    uint16_t top = (uint16_t)_mm_extract_epi16(m, 0);
    return top > 0x7f80 ? NAN : qt_bf16_to_fp32(top);
}

/* 16 codes (E in the high nibble) of each of two units -> 16 bytes. */
static inline void store_codes(__m256i u0, __m256i u1, uint8_t *dst)
{
    __m256i p = _mm256_packus_epi32(u0, u1); /* 16-bit: u0[0..3] u1[0..3] | u0[4..7] u1[4..7] */
    p = _mm256_permute4x64_epi64(p, 0xD8);  /* u0[0..7] u1[0..7] */
    __m128i b = _mm_packus_epi16(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
    _mm_storeu_si128((__m128i *)(void *)dst, b);
}

/* One whole block of `block` (a multiple of 32) elements at p with
 * reciprocal r: codes[0 .. block/2). */
static inline __attribute__((always_inline)) void quant4_block(bool fp4, qt_src_type t,
                                                               const unsigned char *p, size_t block,
                                                               __m256 r, __m256 nt, const q4tab *tb,
                                                               uint8_t *codes)
{
    const size_t es = qt_src_size(t);
    for (size_t i = 0; i < block; i += 32) {
        __m256i u[2];
        for (int h = 0; h < 2; h++) {
            __m256 e, o;
            load_eo(t, p + (i + 16 * (size_t)h) * es, &e, &o);
            __m256 en = _mm256_mul_ps(e, r), on = _mm256_mul_ps(o, r);
            __m256i ce = fp4 ? fp4_code8(en, e, nt, tb) : nf4_code8(en, tb);
            __m256i co = fp4 ? fp4_code8(on, o, nt, tb) : nf4_code8(on, tb);
            u[h] = _mm256_or_si256(_mm256_slli_epi32(ce, 4), co);
        }
        store_codes(u[0], u[1], codes + i / 2);
    }
}

static inline __attribute__((always_inline)) void quant4_t(bool fp4, qt_src_type t,
                                                           const unsigned char *s, size_t nfull,
                                                           size_t block, const q4tab *tb,
                                                           const uint8_t *rcp, uint8_t *codes,
                                                           float *absmax)
{
    const size_t es = qt_src_size(t);
    const __m256 nt = _mm256_set1_ps(rcp ? QT_CUDA_NEG_BELOW : 0.0f);
    for (size_t j = 0; j < nfull; j++) {
        const unsigned char *p = s + j * block * es;
        uint8_t *out = codes + j * block / 2;
        float m = t == QT_SRC_BF16 ? absmax_bf16(p, block) : absmax8(t, p, block, es);
        float r = qt_recip(rcp, m);
        /* NaN in the block, an overflowing reciprocal, or (GPU) flush to
         * zero that matters: the scalar definition */
        if (m != m || (isinf(r) && m != 0.0f) || (rcp && !qt_cuda_simd_ok(m))) {
            qt_quant4_ref(fp4, t, p, block, block, rcp, out, absmax + j);
            continue;
        }
        absmax[j] = m;
        quant4_block(fp4, t, p, block, _mm256_set1_ps(r), nt, tb, out);
    }
}

static void quant4(bool fp4, qt_src_type t, const void *src, size_t n, size_t block,
                   const uint8_t *rcp, uint8_t *codes, float *absmax)
{
    QT_QUANT4_SIMD_BODY(fp4, t, src, n, block, rcp, codes, absmax);
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

static void int8_quant_row(qt_src_type t, const void *src, size_t n_cols, const uint8_t *rcp,
                           int8_t *cb, float *scb)
{
    const unsigned char *p = src;
    const size_t es = qt_src_size(t), nv = n_cols / 32 * 32;
    __m256 mv = _mm256_setzero_ps();
    for (size_t i = 0; i < nv; i += 8) mv = _mm256_max_ps(abs8(load8_h(t, p + i * es)), mv);
    float m = hmax8(mv);
    for (size_t i = nv; i < n_cols; i++) m = qt_absmax_step(m, qt_half_value(t, src, i));
    *scb = m;
    float scale = qt_recip(rcp, m) * 127.0f;
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
    for (size_t i = nv; i < n_cols; i++) cb[i] = qt_int8_code(qt_half_value(t, src, i) * scale);
}

/* ---- double quantization: one nested block (quant_internal.h) ---------- */

/* dQuantize<0> over qt_dynamic_map of 8 lanes through the bucket table
 * (the AVX-512 kernel's search: key from the float bits, 2 gathers, one
 * compare; NaN codes 0). */
static inline __m256i dq8_codes_tab(__m256 xn, const qt_dq8_tab *tab)
{
    __m256i bits = _mm256_castps_si256(xn);
    __m256i key = _mm256_srli_epi32(_mm256_and_si256(bits, _mm256_set1_epi32(0x7fffffff)), 17);
    key = _mm256_max_epu32(key, _mm256_set1_epi32((int)QT_DQ8_KMIN));
    key = _mm256_min_epu32(_mm256_sub_epi32(key, _mm256_set1_epi32((int)QT_DQ8_KMIN)),
                           _mm256_set1_epi32(QT_DQ8_NBK - 1));
    key = _mm256_add_epi32(key, _mm256_and_si256(_mm256_srai_epi32(bits, 31),
                                                 _mm256_set1_epi32(QT_DQ8_NBK)));
    __m256 t = _mm256_i32gather_ps(tab->t, key, 4);
    __m256i base = _mm256_i32gather_epi32(tab->base, key, 4);
    __m256i gt = _mm256_castps_si256(_mm256_cmp_ps(xn, t, _CMP_GT_OQ));
    __m256i ord = _mm256_castps_si256(_mm256_cmp_ps(xn, xn, _CMP_ORD_Q));
    return _mm256_and_si256(_mm256_sub_epi32(base, gt), ord); /* gt is -1 where true */
}

void qt_dq_block_avx2(const qt_dq8_tab *tab, const float *absmax, size_t len, float offset,
                      uint8_t *codes, float *nested)
{
    const __m256 off = _mm256_set1_ps(offset);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    /* nested absmax: max |absmax - offset| over the real lanes */
    __m256 mv = _mm256_setzero_ps();
    for (size_t i = 0; i < len; i += 8) {
        size_t rest = len - i < 8 ? len - i : 8;
        __m256i k = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)rest), lane);
        __m256 c = _mm256_sub_ps(_mm256_maskload_ps(absmax + i, k), off);
        mv = _mm256_max_ps(_mm256_and_ps(abs8(c), _mm256_castsi256_ps(k)), mv);
    }
    float m = hmax8(mv);
    *nested = m;
    float r = 1.0f / m;
    if (isinf(r) && m != 0.0f) { /* |xn| unbounded: the scalar definition */
        qt_dq_block_ref(absmax, len, offset, NULL, codes, nested);
        return;
    }
    const __m256 vr = _mm256_set1_ps(r);
    for (size_t i = 0; i < len; i += 8) {
        size_t rest = len - i < 8 ? len - i : 8;
        __m256i k = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)rest), lane);
        __m256 xn = _mm256_mul_ps(_mm256_sub_ps(_mm256_maskload_ps(absmax + i, k), off), vr);
        __m256i c = dq8_codes_tab(xn, tab);
        __m128i p = _mm_packus_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1));
        p = _mm_packus_epi16(p, p);
        uint8_t b[8];
        _mm_storel_epi64((__m128i *)(void *)b, p);
        memcpy(codes + i, b, rest);
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
    qt_dot_tile_by_blocks(dot_block, x, ldx, n_tok, w, ldw, n_rows, n, y, ldy);
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

#define MM_NR 16 /* outputs per micro-panel: 2 vectors */
#define MM_MR 6  /* tokens per register block: 12 accumulators */

/* 8 rows x kk columns of fp32 (T == QT_SRC_F32), bf16 or fp16 rows,
 * transposed (load_t8 / load_t8_half). */
static inline __attribute__((always_inline)) void load_rows(qt_src_type T,
                                                            const unsigned char *base, size_t ld,
                                                            size_t n_rows, size_t g, size_t k,
                                                            size_t kk, __m256 r[8])
{
    if (T == QT_SRC_F32) load_t8(base, ld, n_rows, g, k, kk, r);
    else load_t8_half(T == QT_SRC_BF16, base, ld, n_rows, g, k, kk, r);
}

static inline __attribute__((always_inline)) void pack_t(qt_src_type T, const void *rows,
                                                         size_t ld, size_t n_rows, size_t kc,
                                                         float *panel)
{
    const unsigned char *base = rows;
    size_t k = 0;
    for (; k + 8 <= kc; k += 8)
#pragma GCC unroll 2
        for (size_t g = 0; g < MM_NR; g += 8) {
            __m256 r[8];
            load_rows(T, base, ld, n_rows, g, k, 8, r);
#pragma GCC unroll 8
            for (size_t j = 0; j < 8; j++) _mm256_store_ps(panel + (k + j) * MM_NR + g, r[j]);
        }
    if (k < kc) {
        _Alignas(32) float tb[8][8];
        for (size_t g = 0; g < MM_NR; g += 8) {
            __m256 r[8];
            load_rows(T, base, ld, n_rows, g, k, kc - k, r);
#pragma GCC unroll 8
            for (size_t j = 0; j < 8; j++) _mm256_store_ps(tb[j], r[j]);
            for (size_t j = 0; k + j < kc; j++)
                memcpy(panel + (k + j) * MM_NR + g, tb[j], sizeof tb[j]);
        }
    }
}

static void pack(const void *rows, size_t ld, size_t n_rows, size_t kc, float *panel)
{
    pack_t(QT_SRC_F32, rows, ld, n_rows, kc, panel);
}

/* bf16 / fp16 weights widened while packing: no fp32 copy of the rows */
static void pack_half(bool bf16, const void *rows, size_t ld, size_t n_rows, size_t kc,
                      float *panel)
{
    if (bf16) pack_t(QT_SRC_BF16, rows, ld, n_rows, kc, panel);
    else pack_t(QT_SRC_F16, rows, ld, n_rows, kc, panel);
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
#pragma GCC unroll 8
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
#pragma GCC unroll 8
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
    .pack = pack, .pack_half = pack_half, .gemm = gemm,
    .dot_rows = {[QT_SCHEME_NF4] = qt_gemv_dq_avx2, [QT_SCHEME_FP4] = qt_gemv_dq_avx2,
                 [QT_SCHEME_INT8] = qt_gemv_dq_avx2, [QT_SCHEME_Q8] = qt_gemv_dq_avx2,
                 [QT_SCHEME_INT8_BLOCKWISE] = qt_gemv_dq_avx2, [QT_SCHEME_BF16] = qt_gemv_dq_avx2,
                 [QT_SCHEME_FP16] = qt_gemv_dq_avx2, [QT_SCHEME_FP32] = qt_gemv_f32_avx2},
};
