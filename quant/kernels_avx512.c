/* quant/kernels_avx512.c: AVX-512 (F/BW/VL/DQ) kernels. Quantize kernels
 * give the same bytes as the _ref definitions (nf4.c, q8.c, int8.c): the
 * same float32 operations per element (absmax is an exact max, a correctly
 * rounded reciprocal per block, one multiply, the same strict compares). The
 * 4-bit kernel works on 16 blocks at once (16 absmax in one vector, one
 * vector division) and finds codes through bucket tables (see below); the
 * double quantization of the absmax has its own exact bucket search over the
 * dynamic map (qt_dq_block_avx512, quant_internal.h). A final partial block
 * goes to the _ref kernel. */
#include "quant/quant.h"

#include <immintrin.h>

#include "quant/quant_internal.h"
#include "quant/simd_avx512.h"

/* 16 elements of type t at p, widened exactly to float32. */
static inline __m512 load16(qt_src_type t, const unsigned char *p)
{
    if (t == QT_SRC_F32) return _mm512_loadu_ps(p);
    __m256i h = _mm256_loadu_si256((const __m256i *)p);
    if (t == QT_SRC_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

static inline __m512 abs16(__m512 x)
{
    return _mm512_castsi512_ps(
        _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(0x7fffffff)));
}

/* max |x| over len (multiple of 16) elements; NaN never wins, like
 * qt_absmax_step (vmaxps returns its second operand when one is NaN). */
static inline float absmax16(qt_src_type t, const unsigned char *p, size_t len, size_t es)
{
    __m512 m0 = _mm512_setzero_ps(), m1 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= len; i += 32) {
        m0 = _mm512_max_ps(abs16(load16(t, p + i * es)), m0);
        m1 = _mm512_max_ps(abs16(load16(t, p + (i + 16) * es)), m1);
    }
    for (; i < len; i += 16) m0 = _mm512_max_ps(abs16(load16(t, p + i * es)), m0);
    return _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
}

/* ---- 4-bit quantization ----------------------------------------------------
 *
 * Work unit: 32 consecutive elements held as two 16-lane vectors, E (elements
 * 0, 2, .., 30) and O (1, 3, .., 31), so that packed byte k is
 * code(E[k]) << 4 | code(O[k]) (bf16: E = v << 16, O = v & 0xffff0000 on the
 * 32 raw values as 16 dwords). Blocks are processed 16 at a time: pass 1
 * takes the exact absmax of each block (max(|x|, m) from m = 0: NaN never
 * wins) and transposes-reduces the 16 per-block vectors into one vector of
 * 16 absmax; one vector division gives the 16 correctly rounded reciprocals
 * (the same values as the scalar 1.0f / m); pass 2 re-reads the blocks (from
 * L1) and codes f32(x * r).
 *
 * bf16 absmax: an unsigned 16-bit max of the magnitudes' bits (their order
 * is the float order for non-NaN values; a block holding NaN goes to the
 * scalar definition), one load, AND and max per 32 elements.
 *
 * Code search: a monotone bucket function b(x) (an FMA or multiply and a
 * truncation) splits the range into 32 (NF4, signed xn) or 16 (FP4, |xn|)
 * buckets narrower than the smallest gap between thresholds, so a bucket
 * holds at most one threshold T[b] (+inf if none). b is monotone, so the
 * thresholds below xn are those of the lower buckets plus T[b] if xn > T[b]:
 * code = base[b] + (xn > T[b]), the exact count with the same strict ordered
 * compare as the scalar definition. NaN truncates to 0x80000000, whose low
 * index bits select bucket 0 (base 0, the compare is false): code 0. The
 * index is only valid for |xn| < 1.015, which holds whenever r is finite
 * (|x| <= absmax, so |x * r| <= 1 + 2^-23); a block whose reciprocal
 * overflows (0 < absmax < 2^-128) goes to the scalar definition. */

#define NF4_BSCALE 15.75f /* b = trunc(xn * 15.75 + 16) in [0, 31] */
#define NF4_BOFF 16.0f
#define FP4_BSCALE 15.5f /* b = trunc(|xn| * 15.5) in [0, 15] */

typedef struct q4tab {
    __m512 t0, t1;          /* T[0..15], T[16..31] (FP4: t0 only) */
    __m512i lo0, lo1;       /* NF4: base[b]; FP4: the code when |xn| <= T[b] */
    __m512i hi0, hi1;       /* NF4: base[b] << 4; FP4: the code when |xn| > T[b] */
    __m512i lo0s, hi0s;     /* FP4: lo0, hi0 << 4 (the high nibble) */
} q4tab;

static inline __m512i nf4_bucket(__m512 xn)
{
    return _mm512_cvttps_epi32(
        _mm512_fmadd_ps(xn, _mm512_set1_ps(NF4_BSCALE), _mm512_set1_ps(NF4_BOFF)));
}

static inline __m512i fp4_bucket(__m512 a)
{
    return _mm512_cvttps_epi32(_mm512_mul_ps(a, _mm512_set1_ps(FP4_BSCALE)));
}

/* The bucket tables, built with the vector bucket functions themselves.
 * Returns false if a bucket would hold two thresholds (never for the
 * built-in tables; test_quant.c sweeps every bucket against _ref). */
static bool q4tab_init(bool fp4, q4tab *tb)
{
    static const int32_t fp4_lut[8] = {0, 1, 6, 7, 4, 5, 2, 3};
    float th[16], tt[32];
    int32_t bk[16], lo[32], hi[32];
    const int nt = fp4 ? 7 : 15, nbk = fp4 ? 16 : 32;
    for (int i = 0; i < 16; i++)
        th[i] = i < nt ? (fp4 ? qt_fp4_thresholds[i] : qt_nf4_thresholds[i]) : 0.0f;
    __m512 v = _mm512_loadu_ps(th);
    _mm512_storeu_si512(bk, fp4 ? fp4_bucket(v) : nf4_bucket(v));
    for (int b = 0; b < 32; b++) {
        int below = 0, in = 0;
        tt[b] = INFINITY;
        for (int i = 0; i < nt; i++) {
            if (bk[i] < 0 || bk[i] >= nbk) return false;
            below += bk[i] < b;
            if (bk[i] == b) {
                in++;
                tt[b] = th[i];
            }
        }
        if (in > 1) return false;
        lo[b] = fp4 ? fp4_lut[below] : below;
        hi[b] = fp4 ? fp4_lut[below + in] : below << 4;
    }
    tb->t0 = _mm512_loadu_ps(tt);
    tb->t1 = _mm512_loadu_ps(tt + 16);
    tb->lo0 = _mm512_loadu_si512(lo);
    tb->lo1 = _mm512_loadu_si512(lo + 16);
    tb->hi0 = _mm512_loadu_si512(hi);
    tb->hi1 = _mm512_loadu_si512(hi + 16);
    tb->lo0s = _mm512_slli_epi32(tb->lo0, 4);
    tb->hi0s = _mm512_slli_epi32(tb->hi0, 4);
    return true;
}

/* NF4 codes of 16 lanes; hi: shifted into the high nibble. */
static inline __m512i nf4_code16(__m512 xn, const q4tab *tb, bool hi)
{
    __m512i b = nf4_bucket(xn);
    __m512 t = _mm512_permutex2var_ps(tb->t0, b, tb->t1);
    __mmask16 gt = _mm512_cmp_ps_mask(xn, t, _CMP_GT_OQ);
    __m512i base = hi ? _mm512_permutex2var_epi32(tb->hi0, b, tb->hi1)
                      : _mm512_permutex2var_epi32(tb->lo0, b, tb->lo1);
    return _mm512_mask_add_epi32(base, gt, base, _mm512_set1_epi32(hi ? 16 : 1));
}

/* FP4 codes of 16 lanes (sign 8 when max(x, xn) < nt, x the element before
 * scaling: nt = 0, or QT_CUDA_NEG_BELOW for the GPU's flush to zero). */
static inline __m512i fp4_code16(__m512 xn, __m512 x, __m512 nt, const q4tab *tb, bool hi)
{
    __m512 a = abs16(xn);
    __m512i b = fp4_bucket(a);
    __mmask16 gt = _mm512_cmp_ps_mask(a, _mm512_permutexvar_ps(b, tb->t0), _CMP_GT_OQ);
    __mmask16 neg = _mm512_cmp_ps_mask(_mm512_max_ps(x, xn), nt, _CMP_LT_OQ);
    __m512i c = _mm512_mask_permutexvar_epi32(_mm512_permutexvar_epi32(b, hi ? tb->lo0s : tb->lo0),
                                              gt, b, hi ? tb->hi0s : tb->hi0);
    return _mm512_mask_or_epi32(c, neg, c, _mm512_set1_epi32(hi ? 0x80 : 8));
}

/* 32 elements of type t at p as E (even elements) and O (odd), float32. */
static inline __attribute__((always_inline)) void load_eo(qt_src_type t, const unsigned char *p,
                                                          __m512 *e, __m512 *o)
{
    if (t == QT_SRC_BF16) {
        __m512i v = _mm512_loadu_si512(p);
        *e = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
        *o = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32((int)0xffff0000u)));
        return;
    }
    __m512 a, b;
    if (t == QT_SRC_F32) {
        a = _mm512_loadu_ps(p);
        b = _mm512_loadu_ps(p + 64);
    } else {
        a = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
        b = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p + 32)));
    }
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    *e = _mm512_permutex2var_ps(a, ie, b);
    *o = _mm512_permutex2var_ps(a, _mm512_add_epi32(ie, _mm512_set1_epi32(1)), b);
}

/* Lane j of the result = max over the lanes of m[j] (no NaN in m): four
 * halving steps; step w pairs lanes i and i + w of vectors 2k and 2k + 1
 * (index (i / w) * 2w + i % w, and that + w, over the two vectors). The
 * index vectors are literal constants: built in a loop, they were rebuilt
 * through the stack on every call (~300 cycles per call). */
static inline __m512 reduce16x16(__m512 m[16])
{
    static const int32_t idx[4][16] = {
        {0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23},        /* w = 8 */
        {0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27},      /* w = 4 */
        {0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29},      /* w = 2 */
        {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30},     /* w = 1 */
    };
    int cnt = 16;
    for (int l = 0, w = 8; l < 4; l++, w >>= 1, cnt >>= 1) {
        const __m512i a = _mm512_loadu_si512(idx[l]), b = _mm512_add_epi32(a, _mm512_set1_epi32(w));
        for (int i = 0; i < cnt / 2; i++)
            m[i] = _mm512_max_ps(_mm512_permutex2var_ps(m[2 * i], a, m[2 * i + 1]),
                                 _mm512_permutex2var_ps(m[2 * i], b, m[2 * i + 1]));
    }
    return m[0];
}

/* cnt <= 16 whole blocks of `block` (a multiple of 32) elements. */
static inline __attribute__((always_inline)) void quant4_group(
    bool fp4, qt_src_type t, const unsigned char *p, size_t block, int cnt, const q4tab *tb,
    const uint8_t *rcp, uint8_t *codes, float *absmax)
{
    const size_t es = qt_src_size(t), units = block / 32;
    __m512 m[16];
    __mmask16 nan = 0; /* bf16 blocks holding NaN: the scalar definition */
    for (int j = 0; j < 16; j++) {
        __m512 mj = _mm512_setzero_ps();
        if (j < cnt && t == QT_SRC_BF16) {
            /* the magnitudes' bits in unsigned 16-bit order = float order
             * for non-NaN; then as floats (bits << 16) for the reduction */
            const __m512i mag = _mm512_set1_epi16(0x7fff);
            __m512i mi = _mm512_setzero_si512();
            for (size_t u = 0; u < units; u++)
                mi = _mm512_max_epu16(mi, _mm512_and_si512(_mm512_loadu_si512(p + (j * units + u) * 64), mag));
            mi = _mm512_max_epu32(_mm512_and_si512(mi, _mm512_set1_epi32(0xffff)), _mm512_srli_epi32(mi, 16));
            if (_mm512_cmpgt_epu32_mask(mi, _mm512_set1_epi32(0x7f80))) {
                nan |= (__mmask16)(1u << j);
                mi = _mm512_setzero_si512();
            }
            mj = _mm512_castsi512_ps(_mm512_slli_epi32(mi, 16));
        } else if (j < cnt) {
            for (size_t u = 0; u < units; u++) {
                __m512 e, o;
                load_eo(t, p + (j * units + u) * 32 * es, &e, &o);
                mj = _mm512_max_ps(abs16(e), mj);
                mj = _mm512_max_ps(abs16(o), mj);
            }
        }
        m[j] = mj;
    }
    const __mmask16 valid = (__mmask16)((1u << cnt) - 1);
    __m512 am = reduce16x16(m);
    _mm512_mask_storeu_ps(absmax, valid, am);
    __m512 r = _mm512_div_ps(_mm512_set1_ps(1.0f), am);
    __mmask16 big = (_mm512_mask_cmp_ps_mask(valid, r, _mm512_set1_ps(INFINITY), _CMP_EQ_OQ) &
                     _mm512_cmp_ps_mask(am, _mm512_setzero_ps(), _CMP_NEQ_OQ)) |
                    nan;
    float rr[16], aa[16];
    _mm512_storeu_ps(rr, r);
    if (rcp) { /* the GPU's reciprocals; blocks where flush-to-zero matters: scalar */
        _mm512_storeu_ps(aa, am);
        for (int j = 0; j < cnt; j++) {
            rr[j] = qt_cuda_rcp(rcp, aa[j]);
            if (!qt_cuda_simd_ok(aa[j])) big |= (__mmask16)(1u << j);
        }
    }
    const __m512 nt = _mm512_set1_ps(rcp ? QT_CUDA_NEG_BELOW : 0.0f);
    for (int j = 0; j < cnt; j++) {
        qt_prefetch_ahead(p + (16 + (size_t)j) * block * es, block * es); /* the next group */
        if (big >> j & 1) { /* NaN or an overflowing reciprocal: the scalar definition */
            qt_quant4_ref(fp4, t, p + j * block * es, block, block, rcp, codes + j * block / 2,
                          absmax + j);
            continue;
        }
        const __m512 rj = _mm512_set1_ps(rr[j]);
        for (size_t u = 0; u < units; u++) {
            __m512 e, o;
            load_eo(t, p + (j * units + u) * 32 * es, &e, &o);
            __m512 en = _mm512_mul_ps(e, rj), on = _mm512_mul_ps(o, rj);
            __m512i c = fp4 ? _mm512_or_si512(fp4_code16(en, e, nt, tb, true),
                                              fp4_code16(on, o, nt, tb, false))
                            : _mm512_or_si512(nf4_code16(en, tb, true), nf4_code16(on, tb, false));
            _mm_storeu_si128((__m128i *)(codes + (j * units + u) * 16), _mm512_cvtepi32_epi8(c));
        }
    }
}

static inline __attribute__((always_inline)) void quant4_t(bool fp4, qt_src_type t,
                                                           const unsigned char *s, size_t nfull,
                                                           size_t block, const q4tab *tb,
                                                           const uint8_t *rcp, uint8_t *codes,
                                                           float *absmax)
{
    const size_t es = qt_src_size(t);
    for (size_t g = 0; g < nfull; g += 16) {
        int cnt = nfull - g < 16 ? (int)(nfull - g) : 16;
        quant4_group(fp4, t, s + g * block * es, block, cnt, tb, rcp, codes + g * block / 2,
                     absmax + g);
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
    if ((i0 & 1) && len) { /* odd start: the low nibble of a byte */
        dst[0] = map[codes[i0 >> 1] & 15] * scale;
        k = 1;
    }
    const __m512 vmap = _mm512_loadu_ps(map), vs = _mm512_set1_ps(scale);
    const __m512i ia = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i ib = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30,
                                         15, 31);
    for (; k + 32 <= len; k += 32) {
        __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(codes + (i0 + k) / 2)));
        __m512i hi = _mm512_srli_epi32(b, 4), lo = _mm512_and_si512(b, _mm512_set1_epi32(15));
        __m512i c0 = _mm512_permutex2var_epi32(hi, ia, lo);
        __m512i c1 = _mm512_permutex2var_epi32(hi, ib, lo);
        _mm512_storeu_ps(dst + k, _mm512_mul_ps(_mm512_permutexvar_ps(c0, vmap), vs));
        _mm512_storeu_ps(dst + k + 16, _mm512_mul_ps(_mm512_permutexvar_ps(c1, vmap), vs));
    }
    if (k < len) qt_dequant4_ref(codes, i0 + k, len - k, map, scale, dst + k);
}

/* roundf (half away from zero) of 16 lanes with |v| <= 127.0001 or NaN,
 * as int8 into dst (NaN -> 0): trunc(v + copysign(0.5, v)) with the sum
 * rounded toward zero, which never reaches the next integer unless the
 * exact sum does. */
static inline void q8_store16(__m512 v, int8_t *dst)
{
    const __m512 h = _mm512_castsi512_ps(_mm512_ternarylogic_epi32(
        _mm512_castps_si512(v), _mm512_set1_epi32((int)0x80000000u),
        _mm512_castps_si512(_mm512_set1_ps(0.5f)), 0xEA)); /* (v & sign) | 0.5 */
    const __m512 s = _mm512_add_round_ps(v, h, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __mmask16 ord = _mm512_cmp_ps_mask(v, v, _CMP_ORD_Q);
    const __m512i q = _mm512_maskz_cvtt_roundps_epi32(ord, s, _MM_FROUND_NO_EXC);
    _mm_storeu_si128((__m128i *)dst, _mm512_cvtepi32_epi8(q));
}

/* q8 on cnt <= 16 whole blocks (block a multiple of 32), as the 4-bit
 * kernel: the 16 absmax in one vector, d = amax / 127 and id = 1 / d as
 * vectors, the block-32 fp16 scales through vcvtps2ph (round to nearest
 * even, as qt_fp32_to_fp16). x * id stays within +-127.0001 when d is
 * normal or 0 (Inf amax: id = 0); a subnormal d (amax < 127 * 2^-126),
 * where it does not, goes to _ref. */
static inline __attribute__((always_inline)) void q8_group(qt_src_type t, const unsigned char *p,
                                                           size_t block, int cnt,
                                                           unsigned char *out)
{
    const size_t es = qt_src_size(t), bb = qt_q8_block_bytes(block);
    __m512 m[16];
    for (int j = 0; j < 16; j++) {
        __m512 m0 = _mm512_setzero_ps(), m1 = _mm512_setzero_ps();
        if (j < cnt)
            for (size_t i = 0; i < block; i += 32) {
                const unsigned char *q = p + ((size_t)j * block + i) * es;
                m0 = _mm512_max_ps(abs16(load16(t, q)), m0);
                m1 = _mm512_max_ps(abs16(load16(t, q + 16 * es)), m1);
            }
        m[j] = _mm512_max_ps(m0, m1);
    }
    const __m512 am = reduce16x16(m);
    const __m512 d = _mm512_div_ps(am, _mm512_set1_ps(127.0f));
    const __mmask16 nz = _mm512_cmp_ps_mask(d, _mm512_setzero_ps(), _CMP_NEQ_OQ);
    const __m512 id = _mm512_maskz_div_ps(nz, _mm512_set1_ps(1.0f), d);
    const __mmask16 sub = _mm512_mask_cmp_ps_mask(nz, d, _mm512_set1_ps(0x1p-126f), _CMP_LT_OQ);
    float dd[16], ii[16];
    uint16_t hh[16];
    _mm512_storeu_ps(dd, d);
    _mm512_storeu_ps(ii, id);
    _mm256_storeu_si256((__m256i *)hh, _mm512_cvtps_ph(d, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (int j = 0; j < cnt; j++) {
        const unsigned char *pj = p + (size_t)j * block * es;
        unsigned char *blk = out + (size_t)j * bb;
        if (sub >> j & 1) {
            qt_q8_quant_ref(t, pj, block, block, blk);
            continue;
        }
        int8_t *qs = qt_q8_block_head(blk, block, dd[j], hh[j]);
        const __m512 vid = _mm512_set1_ps(ii[j]);
        for (size_t i = 0; i < block; i += 16)
            q8_store16(_mm512_mul_ps(load16(t, pj + i * es), vid), qs + i);
    }
}

static void q8_quant(qt_src_type t, const void *src, size_t n, size_t block, void *dst)
{
    QT_Q8_SIMD_BODY(t, src, n, block, dst, 16);
}

/* 16 elements rounded through fp16 (exact for fp16 input). */
static inline __m512 load16_h(qt_src_type t, const unsigned char *p)
{
    if (t == QT_SRC_F16) return load16(t, p);
    return _mm512_cvtph_ps(
        _mm512_cvtps_ph(load16(t, p), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

/* The bits of the largest magnitude of n (a multiple of 16) fp16 or bf16
 * values: an unsigned 16-bit max (magnitude bits order like the values,
 * NaN above every number). */
static inline uint16_t max_mag16(const unsigned char *p, size_t n)
{
    const __m512i mag = _mm512_set1_epi16(0x7fff);
    __m512i m = _mm512_setzero_si512();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) m = _mm512_max_epu16(m, _mm512_and_si512(_mm512_loadu_si512(p + 2 * i), mag));
    if (i < n) m = _mm512_max_epu16(m, _mm512_and_si512(_mm512_maskz_loadu_epi16(0xffff, p + 2 * i), mag));
    __m256i h = _mm256_max_epu16(_mm512_castsi512_si256(m), _mm512_extracti64x4_epi64(m, 1));
    __m128i q = _mm_max_epu16(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
    q = _mm_max_epu16(q, _mm_srli_si128(q, 8));
    q = _mm_max_epu16(q, _mm_srli_si128(q, 4));
    q = _mm_max_epu16(q, _mm_srli_si128(q, 2));
    return (uint16_t)_mm_extract_epi16(q, 0);
}

/* LLM.int8 row, as the AVX2 kernel: fp16 / bf16 rows without NaN take SCB
 * from the raw magnitudes (the max of the fp16-rounded values is the
 * rounded max); a row without NaN whose f32(SCB * scale) < 127.5 needs no
 * NaN mask or clamp. Pass 2 prefetches the next row. */
static void int8_quant_row(qt_src_type t, const void *src, size_t n_cols, const uint8_t *rcp,
                           int8_t *cb, float *scb)
{
    const unsigned char *p = src;
    const size_t es = qt_src_size(t), nv = n_cols / 16 * 16;
    float m = 0.0f;
    bool clean = false; /* no NaN in the SIMD part */
    if (t != QT_SRC_F32) clean = qt_int8_scb_of_top(t, nv ? max_mag16(p, nv) : 0, &m);
    if (!clean) {
        __m512 mv = _mm512_setzero_ps();
        for (size_t i = 0; i < nv; i += 16) mv = _mm512_max_ps(abs16(load16_h(t, p + i * es)), mv);
        m = _mm512_reduce_max_ps(mv);
    }
    for (size_t i = nv; i < n_cols; i++) m = qt_absmax_step(m, qt_half_value(t, src, i));
    *scb = m;
    float scale = qt_recip(rcp, m) * 127.0f;
    const __m512 vs = _mm512_set1_ps(scale);
    const bool fast = clean && qt_int8_no_clamp(m, scale);
    for (size_t i = 0; i < nv; i += 16) {
        qt_prefetch_ahead(p + (n_cols + i) * es, 16 * es); /* the next row */
        __m512 v = _mm512_mul_ps(load16_h(t, p + i * es), vs);
        if (!fast) {
            __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
            v = _mm512_mask_mov_ps(v, nan, _mm512_setzero_ps());
            v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f));
        }
        _mm_storeu_si128((__m128i *)(cb + i), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(v)));
    }
    for (size_t i = nv; i < n_cols; i++) cb[i] = qt_int8_code(qt_half_value(t, src, i) * scale);
}

/* dQuantize<0> on 16 lanes: the same branch-free walk as qt_dq8_code,
 * with gathers from the map. */
static inline __m512i dq8_codes(__m512 xn, const float *map)
{
    __m512i q = _mm512_set1_epi32(127);
    for (int s = 6; s >= 0; s--) {
        __m512 v = _mm512_i32gather_ps(q, map, 4);
        __mmask16 gt = _mm512_cmp_ps_mask(xn, v, _CMP_GT_OQ);
        q = _mm512_sub_epi32(q, _mm512_set1_epi32(1 << s));
        q = _mm512_mask_add_epi32(q, gt, q, _mm512_set1_epi32(2 << s));
    }
    __m512 val = _mm512_i32gather_ps(q, map, 4);
    __mmask16 g = _mm512_cmp_ps_mask(xn, val, _CMP_GT_OQ);
    __m512i ni = _mm512_mask_add_epi32(_mm512_sub_epi32(q, _mm512_set1_epi32(1)), g, q,
                                       _mm512_set1_epi32(1));
    ni = _mm512_max_epi32(ni, _mm512_setzero_si512());
    __m512 mid = _mm512_add_ps(_mm512_i32gather_ps(ni, map, 4), val);
    mid = _mm512_mul_ps(mid, _mm512_set1_ps(0.5f));
    __mmask16 gt2 = _mm512_cmp_ps_mask(xn, mid, _CMP_GT_OQ);
    __mmask16 lt2 = _mm512_cmp_ps_mask(xn, mid, _CMP_LT_OQ);
    __mmask16 mv = (__mmask16)((g & gt2) | (~g & lt2));
    return _mm512_mask_mov_epi32(q, mv, ni);
}

/* The GPU's arithmetic (rcp) is the scalar definition's: this kernel serves
 * the CPU bytes only. */
static void blockwise8_quant(qt_src_type t, const void *src, size_t n, size_t block,
                             const float map[256], const uint8_t *rcp, uint8_t *codes,
                             float *absmax)
{
    if (rcp) {
        qt_blockwise8_quant_ref(t, src, n, block, map, rcp, codes, absmax);
        return;
    }
    const unsigned char *s = src;
    const size_t es = qt_src_size(t), nfull = n / block;
    for (size_t j = 0; j < nfull; j++) {
        const unsigned char *p = s + j * block * es;
        float m = absmax16(t, p, block, es);
        absmax[j] = m;
        const __m512 r = _mm512_set1_ps(1.0f / m);
        for (size_t i = 0; i < block; i += 16) {
            __m512 xn = _mm512_mul_ps(load16(t, p + i * es), r);
            _mm_storeu_si128((__m128i *)(codes + j * block + i),
                             _mm512_cvtepi32_epi8(dq8_codes(xn, map)));
        }
    }
    if (nfull * block < n)
        qt_blockwise8_quant_ref(t, s + nfull * block * es, n - nfull * block, block, map, NULL,
                                codes + nfull * block, absmax + nfull);
}

/* ---- double quantization: one nested block (quant_internal.h) ---------- */

/* dQuantize<0> over qt_dynamic_map of 16 lanes through the bucket table. */
static inline __m512i dq8_codes_tab(__m512 xn, const qt_dq8_tab *tab)
{
    __m512i bits = _mm512_castps_si512(xn);
    __m512i key = _mm512_srli_epi32(_mm512_and_si512(bits, _mm512_set1_epi32(0x7fffffff)), 17);
    key = _mm512_max_epu32(key, _mm512_set1_epi32((int)QT_DQ8_KMIN));
    key = _mm512_min_epu32(_mm512_sub_epi32(key, _mm512_set1_epi32((int)QT_DQ8_KMIN)),
                           _mm512_set1_epi32(QT_DQ8_NBK - 1));
    key = _mm512_mask_add_epi32(key, _mm512_movepi32_mask(bits), key,
                                _mm512_set1_epi32(QT_DQ8_NBK));
    __m512 t = _mm512_i32gather_ps(key, tab->t, 4);
    __m512i base = _mm512_i32gather_epi32(key, tab->base, 4);
    __mmask16 gt = _mm512_cmp_ps_mask(xn, t, _CMP_GT_OQ);
    __mmask16 ord = _mm512_cmp_ps_mask(xn, xn, _CMP_ORD_Q);
    return _mm512_maskz_add_epi32(ord, base, _mm512_maskz_set1_epi32(gt, 1));
}

void qt_dq_block_avx512(const qt_dq8_tab *tab, const float *absmax, size_t len, float offset,
                        uint8_t *codes, float *nested)
{
    const __m512 off = _mm512_set1_ps(offset);
    __m512 mv = _mm512_setzero_ps();
    for (size_t i = 0; i < len; i += 16) {
        __mmask16 k = len - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (len - i)) - 1);
        /* masked-off lanes: 0 - offset, left out of the max */
        __m512 c = _mm512_sub_ps(_mm512_maskz_loadu_ps(k, absmax + i), off);
        mv = _mm512_mask_max_ps(mv, k, abs16(c), mv);
    }
    float m = _mm512_reduce_max_ps(mv);
    *nested = m;
    float r = 1.0f / m;
    if (isinf(r) && m != 0.0f) { /* |xn| unbounded: the scalar definition */
        qt_dq_block_ref(absmax, len, offset, NULL, codes, nested);
        return;
    }
    const __m512 vr = _mm512_set1_ps(r);
    for (size_t i = 0; i < len; i += 16) {
        __mmask16 k = len - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (len - i)) - 1);
        __m512 xn = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, absmax + i), off), vr);
        _mm_mask_storeu_epi8(codes + i, k, _mm512_cvtepi32_epi8(dq8_codes_tab(xn, tab)));
    }
}

/* Dot products of NT token rows with NR weight rows. Per element: one
 * 16-lane accumulator over the chunks in order, a masked last chunk, then
 * _mm512_reduce_add_ps: the same for every (NT, NR). */
static inline __attribute__((always_inline)) void dot_block(const float *x, size_t ldx, int NT,
                                                            const float *w, size_t ldw, int NR,
                                                            size_t n, float *y, size_t ldy)
{
    __m512 acc[2][4];
    for (int a = 0; a < NT; a++)
        for (int b = 0; b < NR; b++) acc[a][b] = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 wv[4];
        for (int b = 0; b < NR; b++) wv[b] = _mm512_loadu_ps(w + b * ldw + i);
        for (int a = 0; a < NT; a++) {
            __m512 xv = _mm512_loadu_ps(x + a * ldx + i);
            for (int b = 0; b < NR; b++) acc[a][b] = _mm512_fmadd_ps(xv, wv[b], acc[a][b]);
        }
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 wv[4];
        for (int b = 0; b < NR; b++) wv[b] = _mm512_maskz_loadu_ps(m, w + b * ldw + i);
        for (int a = 0; a < NT; a++) {
            __m512 xv = _mm512_maskz_loadu_ps(m, x + a * ldx + i);
            for (int b = 0; b < NR; b++) acc[a][b] = _mm512_fmadd_ps(xv, wv[b], acc[a][b]);
        }
    }
    for (int a = 0; a < NT; a++)
        for (int b = 0; b < NR; b++) y[a * ldy + b] = _mm512_reduce_add_ps(acc[a][b]);
}

static void dot_tile(const float *x, size_t ldx, size_t n_tok, const float *w, size_t ldw,
                     size_t n_rows, size_t n, float *y, size_t ldy)
{
    qt_dot_tile_by_blocks(dot_block, x, ldx, n_tok, w, ldw, n_rows, n, y, ldy);
}

const qt_kernels qt_kernels_avx512 = {
    QT_ISA_AVX512,  quant4, dequant4, q8_quant, int8_quant_row, blockwise8_quant,
    dot_tile,       qt_lora_merge_row_avx512, qt_attn_avx512,
};

/* ---- matmul: conversions, packing and the GEMM kernel (quant_internal.h) ---- */


static void cvt_half(bool bf16, const void *src, size_t n, float *dst)
{
    const unsigned char *p = src;
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m256i h = _mm256_maskz_loadu_epi16(m, p + 2 * i);
        __m512 v = bf16 ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))
                        : _mm512_cvtph_ps(h);
        _mm512_mask_storeu_ps(dst + i, m, v);
    }
}

static void cvt_i8(const int8_t *q, size_t n, float s, float c, float *dst)
{
    const __m512 vs = _mm512_set1_ps(s), vc = _mm512_set1_ps(c);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 v = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, q + i)));
        _mm512_mask_storeu_ps(dst + i, m, _mm512_mul_ps(_mm512_mul_ps(v, vs), vc));
    }
}

static void cvt_map8(const uint8_t *code, size_t n, const float map[256], float a, float *dst)
{
    const __m512 va = _mm512_set1_ps(a);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512i idx = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, code + i));
        __m512 v = _mm512_i32gather_ps(idx, map, 4);
        _mm512_mask_storeu_ps(dst + i, m, _mm512_mul_ps(v, va));
    }
}

#define MM_NR 32 /* outputs per micro-panel: 2 vectors */
#define MM_MR 12 /* tokens per register block: 24 accumulators */

static inline __attribute__((always_inline)) void pack_t(qt_src_type T, const void *rows,
                                                         size_t ld, size_t n_rows, size_t kc,
                                                         float *panel)
{
    const unsigned char *base = rows;
    size_t k = 0;
    for (; k + 16 <= kc; k += 16)
#pragma GCC unroll 2
        for (size_t g = 0; g < MM_NR; g += 16) {
            __m512 r[16];
            load_t16(T, base, ld, n_rows, g, k, (__mmask16)0xffff, r);
#pragma GCC unroll 16
            for (size_t j = 0; j < 16; j++) _mm512_store_ps(panel + (k + j) * MM_NR + g, r[j]);
        }
    if (k < kc) {
        _Alignas(64) float tb[16][16];
        for (size_t g = 0; g < MM_NR; g += 16) {
            __m512 r[16];
            load_t16(T, base, ld, n_rows, g, k, tail_mask(kc - k), r);
#pragma GCC unroll 16
            for (size_t j = 0; j < 16; j++) _mm512_store_ps(tb[j], r[j]);
            for (size_t j = 0; k + j < kc; j++)
                memcpy(panel + (k + j) * MM_NR + g, tb[j], sizeof tb[j]);
        }
    }
}

static void pack(const void *rows, size_t ld, size_t n_rows, size_t kc, float *panel)
{
    pack_t(QT_SRC_F32, rows, ld, n_rows, kc, panel);
}

static void pack_half(bool bf16, const void *rows, size_t ld, size_t n_rows, size_t kc,
                      float *panel)
{
    if (bf16) pack_t(QT_SRC_BF16, rows, ld, n_rows, kc, panel);
    else pack_t(QT_SRC_F16, rows, ld, n_rows, kc, panel);
}

/* mr tokens x 32 outputs over kc: c = fma(x[t][k], p[k][o], c) in k order. */
static inline __attribute__((always_inline)) void kern(const int mr, const float *x, size_t ldx,
                                                       const float *p, size_t kc, float *y,
                                                       size_t ldy, __mmask16 m0, __mmask16 m1,
                                                       bool acc)
{
    __m512 c0[MM_MR], c1[MM_MR];
#pragma GCC unroll 12
    for (int i = 0; i < mr; i++) {
        c0[i] = acc ? _mm512_maskz_loadu_ps(m0, y + i * ldy) : _mm512_setzero_ps();
        c1[i] = acc ? _mm512_maskz_loadu_ps(m1, y + i * ldy + 16) : _mm512_setzero_ps();
    }
    for (size_t k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_load_ps(p + k * MM_NR), b1 = _mm512_load_ps(p + k * MM_NR + 16);
#pragma GCC unroll 12
        for (int i = 0; i < mr; i++) {
            const __m512 a = _mm512_set1_ps(x[i * ldx + k]);
            c0[i] = _mm512_fmadd_ps(a, b0, c0[i]);
            c1[i] = _mm512_fmadd_ps(a, b1, c1[i]);
        }
    }
#pragma GCC unroll 12
    for (int i = 0; i < mr; i++) {
        _mm512_mask_storeu_ps(y + i * ldy, m0, c0[i]);
        _mm512_mask_storeu_ps(y + i * ldy + 16, m1, c1[i]);
    }
}

/* One token x 4 consecutive panels (128 outputs, 8 chains in flight): the
 * decoding case, where one panel alone would wait on the FMA latency. */
static inline void kern1x4(const float *x, const float *p, size_t kc, float *y, bool acc)
{
    const size_t ps = kc * MM_NR;
    __m512 c[8];
#pragma GCC unroll 8
    for (int v = 0; v < 8; v++) c[v] = acc ? _mm512_loadu_ps(y + 16 * v) : _mm512_setzero_ps();
    for (size_t k = 0; k < kc; k++) {
        const __m512 a = _mm512_set1_ps(x[k]);
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) {
            c[2 * q] = _mm512_fmadd_ps(a, _mm512_load_ps(p + q * ps + k * MM_NR), c[2 * q]);
            c[2 * q + 1] =
                _mm512_fmadd_ps(a, _mm512_load_ps(p + q * ps + k * MM_NR + 16), c[2 * q + 1]);
        }
    }
#pragma GCC unroll 8
    for (int v = 0; v < 8; v++) _mm512_storeu_ps(y + 16 * v, c[v]);
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
            const __mmask16 m0 = tail_mask(ncol), m1 = ncol > 16 ? tail_mask(ncol - 16) : 0;
            const float *pp = panels + p * kc * MM_NR;
            float *yo = yt + o;
            switch (mr) {
#define KCASE(n)                                                                                  \
    case n: kern(n, xt, ldx, pp, kc, yo, ldy, m0, m1, acc); break;
                KCASE(1) KCASE(2) KCASE(3) KCASE(4) KCASE(5) KCASE(6)
                KCASE(7) KCASE(8) KCASE(9) KCASE(10) KCASE(11)
                default: kern(MM_MR, xt, ldx, pp, kc, yo, ldy, m0, m1, acc); break;
#undef KCASE
            }
        }
    }
}

const qt_mm_ops qt_mm_ops_avx512 = {
    .nr = MM_NR, .mr = MM_MR, .cvt_half = cvt_half, .cvt_i8 = cvt_i8, .cvt_map8 = cvt_map8,
    .pack = pack, .pack_half = pack_half, .gemm = gemm,
    .dot_rows = {[QT_SCHEME_NF4] = qt_gemv_4bit_avx512, [QT_SCHEME_FP4] = qt_gemv_4bit_avx512,
                 [QT_SCHEME_INT8] = qt_gemv_int8_avx512, [QT_SCHEME_Q8] = qt_gemv_q8_avx512,
                 [QT_SCHEME_INT8_BLOCKWISE] = qt_gemv_dq_avx512,
                 [QT_SCHEME_BF16] = qt_gemv_bf16_avx512, [QT_SCHEME_FP16] = qt_gemv_f16_avx512,
                 [QT_SCHEME_FP32] = qt_gemv_f32_avx512},
};
