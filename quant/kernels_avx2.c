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
 * Work unit: 32 consecutive elements as 4 vectors (fp32 / fp16 in element
 * order; bf16 widened in-lane by unpacking with zero), coded in 32-bit
 * lanes up to the compares, then as 32 bytes (codes32), paired into nibbles
 * by one byte multiply-add and reordered by one byte shuffle (store_codes).
 * Splitting 16 elements into even / odd vectors instead cost two shuffles
 * per 16 fp32 / fp16 elements and the search's sums ran on 32-bit lanes:
 * 1 thread in-cache fp16 NF4 0.28 -> 0.22 ns/element. Blocks are processed 8 at a time (as the AVX-512 kernel does 16): pass 1
 * takes the exact absmax of each block (bf16: an unsigned 16-bit max of the
 * magnitudes' bits, which orders non-NaN values like floats; a block holding
 * NaN goes to _ref) and transposes-reduces the 8 per-block vectors into one
 * vector of 8 absmax; one vector division gives the 8 correctly rounded
 * reciprocals; pass 2 re-reads the blocks (from L1) and codes f32(x * r).
 * One block at a time, the chain absmax -> horizontal max -> division ->
 * codes left the core idle ~30 % of the time.
 *
 * Code search: a monotone bucket index b(x) (an FMA or multiply and a
 * truncation) cuts the range into 8 buckets (NF4: signed xn over [-1, 1],
 * width 0.258; FP4: |xn| over [0, 1], width 0.129), each holding at most
 * three thresholds (NF4; FP4: two): T1[b] <= T2[b] <= T3[b] (+inf when
 * absent). 8-entry tables are one vpermps each, with no blend (16 buckets
 * of at most two thresholds took two permutes and a blend per table). b is
 * monotone, so the thresholds below xn are those of the lower buckets
 * (base[b]) plus those of its own bucket that xn exceeds:
 * count = base[b] + (xn > T1[b]) + (xn > T2[b]) + (xn > T3[b]), the exact
 * count with the scalar definition's strict ordered compares. base[b] is a
 * byte table read with one vpshufb per 32 lanes, on b packed to bytes
 * (saturating). The tables are built with the vector bucket function
 * itself. NaN truncates to 0x80000000, which packs to 0x80: vpshufb writes
 * 0, the compares are false: code 0. The index is
 * valid for |xn| <= 1.015 (checked when the tables are built), which holds
 * whenever r is finite; a block whose reciprocal overflows
 * (0 < absmax < 2^-128) goes to _ref. */

#define NF4_BSCALE 3.875f /* b = trunc(xn * 3.875 + 4) in [0, 7] */
#define NF4_BOFF 4.0f
#define FP4_BSCALE 7.75f  /* b = trunc(|xn| * 7.75) in [0, 7] */
#define Q4_GROUP 8        /* blocks per pass-1 / pass-2 group */
#define Q4_XN_MAX 1.015f  /* |xn| the bucket index must cover */

typedef struct q4tab {
    __m256 t[3];  /* T1, T2, T3 of buckets 0-7 (FP4: T3 all +inf) */
    __m256i base; /* base[b] as bytes 0-7 (8-15: 0), in both 128-bit lanes */
    __m256i lut;  /* FP4: code of the count below |xn| as bytes 0-7, in both 128-bit lanes */
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

/* The tables; false if a bucket would hold more than three thresholds or
 * +-Q4_XN_MAX fell outside the 8 buckets (never for the built-in ones;
 * test_quant.c sweeps every threshold against _ref). */
static bool q4tab_init(bool fp4, q4tab *tb)
{
    const int nt = fp4 ? 7 : 15;
    float th[16], tt[3][8];
    int32_t bk[16];
    uint8_t base[32] = {0};
    for (int i = 0; i < 16; i++)
        th[i] = i < nt ? (fp4 ? qt_fp4_thresholds[i] : qt_nf4_thresholds[i])
                : (i & 1 ? -Q4_XN_MAX : Q4_XN_MAX); /* the ends, after the thresholds */
    for (int h = 0; h < 16; h += 8) {
        __m256 v = _mm256_loadu_ps(th + h);
        _mm256_storeu_si256((__m256i *)(void *)(bk + h), fp4 ? fp4_bucket(abs8(v)) : nf4_bucket(v));
    }
    for (int i = 0; i < 16; i++)
        if (bk[i] < 0 || bk[i] >= 8) return false;
    for (int b = 0; b < 8; b++) {
        int below = 0, in = 0;
        for (int k = 0; k < 3; k++) tt[k][b] = INFINITY;
        for (int i = 0; i < nt; i++) { /* thresholds ascending */
            below += bk[i] < b;
            if (bk[i] == b) {
                if (in == 3) return false;
                tt[in++][b] = th[i];
            }
        }
        base[b] = base[b + 16] = (uint8_t)below;
    }
    for (int k = 0; k < 3; k++) tb->t[k] = _mm256_loadu_ps(tt[k]);
    tb->base = _mm256_loadu_si256((const __m256i *)(const void *)base);
    tb->lut = _mm256_setr_epi8(0, 1, 6, 7, 4, 5, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 6, 7, 4, 5, 2, 3,
                               0, 0, 0, 0, 0, 0, 0, 0);
    return true;
}

/* g = -1 where xn > T[b] (the table k), 0 elsewhere. */
static inline __m256i above(__m256 xn, const q4tab *tb, int k, __m256i b)
{
    return _mm256_castps_si256(
        _mm256_cmp_ps(xn, _mm256_permutevar8x32_ps(tb->t[k], b), _CMP_GT_OQ));
}

/* 4 vectors of int32 lanes in [-128, 127] (or INT32_MIN: -128) as 32
 * bytes, in 4-byte quarters v0[0..3] v1[0..3] v2[0..3] v3[0..3] |
 * v0[4..7] v1[4..7] v2[4..7] v3[4..7]. */
static inline __m256i pack4x8(__m256i v0, __m256i v1, __m256i v2, __m256i v3)
{
    return _mm256_packs_epi16(_mm256_packs_epi32(v0, v1), _mm256_packs_epi32(v2, v3));
}

/* Codes of 4 vectors of 8 elements (x before scaling, xn after) as bytes
 * in pack4x8's order. Per lane: -(the compares true in its bucket) as a sum
 * of -1 masks, and b; then for 32 lanes at once: base[b] (one vpshufb of
 * the packed b: NaN's INT32_MIN packs to 0x80, which vpshufb turns into 0),
 * minus that sum. NF4: base[b] + (xn > T1[b]) + (xn > T2[b]) + (xn > T3[b]).
 * FP4: the count below |xn| the same way (two tables), its magnitude code
 * through the byte table lut, plus 8 when max(x, xn) < nt (nt = 0, or
 * QT_CUDA_NEG_BELOW for the GPU's flush to zero; NaN xn: not negative). */
static inline __attribute__((always_inline)) __m256i codes32(bool fp4, const __m256 x[4],
                                                             const __m256 xn[4], __m256 nt,
                                                             const q4tab *tb)
{
    __m256i b[4], g[4], neg[4], bp[2], gp[2];
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        if (fp4) {
            const __m256 a = abs8(xn[k]);
            b[k] = fp4_bucket(a);
            g[k] = _mm256_add_epi32(above(a, tb, 0, b[k]), above(a, tb, 1, b[k]));
            neg[k] = _mm256_castps_si256(_mm256_cmp_ps(_mm256_max_ps(x[k], xn[k]), nt, _CMP_LT_OQ));
        } else {
            b[k] = nf4_bucket(xn[k]);
            g[k] = _mm256_add_epi32(_mm256_add_epi32(above(xn[k], tb, 0, b[k]), above(xn[k], tb, 1, b[k])),
                                    above(xn[k], tb, 2, b[k]));
        }
        if (k & 1) { /* 16-bit as soon as a pair is ready: fewer live registers */
            bp[k / 2] = _mm256_packs_epi32(b[k - 1], b[k]);
            gp[k / 2] = _mm256_packs_epi32(g[k - 1], g[k]);
        }
    }
    const __m256i c = _mm256_sub_epi8(_mm256_shuffle_epi8(tb->base, _mm256_packs_epi16(bp[0], bp[1])),
                                      _mm256_packs_epi16(gp[0], gp[1]));
    if (!fp4) return c;
    return _mm256_or_si256(_mm256_shuffle_epi8(tb->lut, c),
                           _mm256_and_si256(pack4x8(neg[0], neg[1], neg[2], neg[3]), _mm256_set1_epi8(8)));
}

/* fp16 magnitude bits (below Inf) placed at bit 13 of a float32, as the
 * float32 value: one multiply by 2^112 rescales the exponent exactly, for
 * normal and subnormal halves. */
static inline __m256 fp16_bits_value(__m256i b13)
{
    return _mm256_mul_ps(_mm256_castsi256_ps(b13), _mm256_set1_ps(0x1p112f));
}

/* Lanes of the per-block maxima of one fp32 block: max(|x|, m) from 0 (NaN
 * never wins). */
static inline __attribute__((always_inline)) __m256 block_max8(const unsigned char *p,
                                                               size_t block)
{
    __m256 m0 = _mm256_setzero_ps(), m1 = _mm256_setzero_ps();
    for (size_t i = 0; i < block; i += 16) {
        m0 = _mm256_max_ps(abs8(load8(QT_SRC_F32, p + i * 4)), m0);
        m1 = _mm256_max_ps(abs8(load8(QT_SRC_F32, p + (i + 8) * 4)), m1);
    }
    return _mm256_max_ps(m0, m1);
}

/* 16-bit lanes of the per-block maxima of one fp16 / bf16 block: an
 * unsigned 16-bit max of the magnitudes' bits (their order is the values'
 * order below Inf / NaN). */
static inline __attribute__((always_inline)) __m256i block_max16(const unsigned char *p,
                                                                 size_t block)
{
    const __m256i mag = _mm256_set1_epi16(0x7fff);
    __m256i m0 = _mm256_setzero_si256(), m1 = _mm256_setzero_si256();
    for (size_t i = 0; i < block; i += 32) {
        m0 = _mm256_max_epu16(m0, _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(const void *)(p + 2 * i)), mag));
        m1 = _mm256_max_epu16(m1, _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(const void *)(p + 2 * i + 32)), mag));
    }
    return _mm256_max_epu16(m0, m1);
}

/* Max of each of 8 vectors of 16 unsigned 16-bit lanes, as 8 words in
 * order: three levels of unpack (words, dwords, qwords) and max, each
 * halving the lanes per vector and interleaving the vectors, then the two
 * 128-bit halves. */
static inline __attribute__((always_inline)) __m128i reduce8x16(const __m256i m[8])
{
    __m256i a[4], b[2];
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++)
        a[j] = _mm256_max_epu16(_mm256_unpacklo_epi16(m[2 * j], m[2 * j + 1]),
                                _mm256_unpackhi_epi16(m[2 * j], m[2 * j + 1]));
#pragma GCC unroll 2
    for (int j = 0; j < 2; j++)
        b[j] = _mm256_max_epu16(_mm256_unpacklo_epi32(a[2 * j], a[2 * j + 1]),
                                _mm256_unpackhi_epi32(a[2 * j], a[2 * j + 1]));
    const __m256i c = _mm256_max_epu16(_mm256_unpacklo_epi64(b[0], b[1]),
                                       _mm256_unpackhi_epi64(b[0], b[1]));
    return _mm_max_epu16(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1));
}

/* The absmax of cnt <= 8 whole blocks at p in one vector (lanes past cnt:
 * 0). fp32: block_max8 per block, an 8 x 8 transpose, a max of the rows.
 * fp16 / bf16: block_max16 per block, reduce8x16, widened to floats (bf16:
 * bits << 16; fp16: through fp16_bits_value). *flagged: the blocks holding
 * NaN (bf16) or Inf / NaN (fp16), whose lane is 0, for the scalar
 * definition. */
static inline __attribute__((always_inline)) __m256 group_absmax8(qt_src_type t,
                                                                  const unsigned char *p,
                                                                  size_t block, int cnt,
                                                                  unsigned *flagged)
{
    const size_t es = qt_src_size(t);
    if (t != QT_SRC_F32) {
        __m256i m[8];
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++)
            m[j] = j < cnt ? block_max16(p + (size_t)j * block * es, block) : _mm256_setzero_si256();
        const __m128i w = reduce8x16(m);
        const __m128i bad = _mm_cmpgt_epi16(w, _mm_set1_epi16(t == QT_SRC_BF16 ? 0x7f80 : 0x7bff));
        *flagged = (unsigned)_mm_movemask_epi8(_mm_packs_epi16(bad, _mm_setzero_si128()));
        const __m256i v = _mm256_cvtepu16_epi32(_mm_andnot_si128(bad, w));
        if (t == QT_SRC_BF16) return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
        return fp16_bits_value(_mm256_slli_epi32(v, 13));
    }
    __m256 m[8];
    *flagged = 0;
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++)
        m[j] = j < cnt ? block_max8(p + (size_t)j * block * es, block) : _mm256_setzero_ps();
    transpose8(m);
    return _mm256_max_ps(_mm256_max_ps(_mm256_max_ps(m[0], m[1]), _mm256_max_ps(m[2], m[3])),
                         _mm256_max_ps(_mm256_max_ps(m[4], m[5]), _mm256_max_ps(m[6], m[7])));
}

/* 32 codes -> 16 bytes (even element in the high nibble): one multiply-add
 * of byte pairs (16 * even + odd; pairs never straddle pack4x8's 4-byte
 * quarters), a pack to bytes, then the 2-byte pairs in element order.
 * The 4 vectors held elements 0-7, 8-15, 16-23, 24-31 (fp32, fp16) or, when
 * bf16 (widened in-lane by unpacking with zero), 0-3 8-11 | 4-7 12-15 |
 * 16-19 24-27 | 20-23 28-31. */
static inline void store_codes(bool bf16, __m256i c, uint8_t *dst)
{
    const __m256i w = _mm256_maddubs_epi16(c, _mm256_set1_epi16(0x0110));
    /* pairs of 4 elements, bytes 2k, 2k+1: f32 / fp16: 0 8 16 24 4 12 20 28
     * (the first element of each); bf16: 0 4 16 20 8 12 24 28 */
    __m128i q = _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
    q = _mm_shuffle_epi8(q, bf16 ? _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15)
                                 : _mm_setr_epi8(0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15));
    _mm_storeu_si128((__m128i *)(void *)dst, q);
}

/* One whole block of `block` (a multiple of 32) elements at p with
 * reciprocal r: codes[0 .. block/2), 32 elements at a time. */
static inline __attribute__((always_inline)) void quant4_block(bool fp4, qt_src_type t,
                                                               const unsigned char *p, size_t block,
                                                               __m256 r, __m256 nt, const q4tab *tb,
                                                               uint8_t *codes)
{
    const size_t es = qt_src_size(t);
    const bool bf16 = t == QT_SRC_BF16;
    for (size_t i = 0; i < block; i += 32) {
        __m256 x[4], xn[4];
        if (bf16) {
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(p + 2 * (i + 16 * (size_t)h)));
                x[2 * h] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(_mm256_setzero_si256(), v));
                x[2 * h + 1] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(_mm256_setzero_si256(), v));
            }
        } else {
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) x[k] = load8(t, p + (i + 8 * (size_t)k) * es);
        }
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) xn[k] = _mm256_mul_ps(x[k], r);
        store_codes(bf16, codes32(fp4, x, xn, nt, tb), codes + i / 2);
    }
}

/* cnt <= 8 whole blocks of `block` (a multiple of 32) elements. */
static inline __attribute__((always_inline)) void quant4_group(
    bool fp4, qt_src_type t, const unsigned char *p, size_t block, int cnt, const q4tab *tb,
    const uint8_t *rcp, uint8_t *codes, float *absmax)
{
    const size_t es = qt_src_size(t);
    /* pass 1: the 8 absmax in one vector */
    unsigned big; /* blocks for the scalar definition */
    const __m256 am = group_absmax8(t, p, block, cnt, &big);
    __m256 r = _mm256_div_ps(_mm256_set1_ps(1.0f), am);
    /* an overflowing reciprocal of a nonzero absmax: the scalar definition */
    big |= (unsigned)_mm256_movemask_ps(
        _mm256_and_ps(_mm256_cmp_ps(r, _mm256_set1_ps(INFINITY), _CMP_EQ_OQ),
                      _mm256_cmp_ps(am, _mm256_setzero_ps(), _CMP_NEQ_OQ)));
    float rr[Q4_GROUP], aa[Q4_GROUP];
    _mm256_storeu_ps(rr, r);
    _mm256_storeu_ps(aa, am);
    if (rcp) /* the GPU's reciprocals; blocks where flush-to-zero matters: scalar */
        for (int j = 0; j < cnt; j++) {
            rr[j] = qt_cuda_rcp(rcp, aa[j]);
            if (!qt_cuda_simd_ok(aa[j])) big |= 1u << j;
        }
    /* pass 2: the codes, block by block */
    const __m256 nt = _mm256_set1_ps(rcp ? QT_CUDA_NEG_BELOW : 0.0f);
    for (int j = 0; j < cnt; j++) {
        const unsigned char *pj = p + (size_t)j * block * es;
        qt_prefetch_ahead(pj + Q4_GROUP * block * es, block * es); /* the next group */
        if (big >> j & 1) {
            qt_quant4_ref(fp4, t, pj, block, block, rcp, codes + (size_t)j * block / 2,
                          absmax + j);
            continue;
        }
        absmax[j] = aa[j];
        quant4_block(fp4, t, pj, block, _mm256_set1_ps(rr[j]), nt, tb,
                     codes + (size_t)j * block / 2);
    }
}

static inline __attribute__((always_inline)) void quant4_t(bool fp4, qt_src_type t,
                                                           const unsigned char *s, size_t nfull,
                                                           size_t block, const q4tab *tb,
                                                           const uint8_t *rcp, uint8_t *codes,
                                                           float *absmax)
{
    const size_t es = qt_src_size(t);
    for (size_t g = 0; g < nfull; g += Q4_GROUP) {
        int cnt = nfull - g < Q4_GROUP ? (int)(nfull - g) : Q4_GROUP;
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

/* roundf (half away from zero) of 8 lanes with |v| <= 127.0001 or NaN, as
 * int32: trunc(|v| + 0.5) with the sign of v put back. The sum is exact or
 * rounds without crossing an integer, except |v| = 0.5 - 2^-25 (0x3effffff),
 * whose sum rounds to 1.0: that lane gets 1 taken off. NaN gives INT32_MIN
 * (-128 once narrowed; store_q8x32 makes it 0). */
static inline __m256i q8_round8(__m256 v)
{
    const __m256i a = _mm256_and_si256(_mm256_castps_si256(v), _mm256_set1_epi32(0x7fffffff));
    __m256i q = _mm256_cvttps_epi32(_mm256_add_ps(_mm256_castsi256_ps(a), _mm256_set1_ps(0.5f)));
    q = _mm256_add_epi32(q, _mm256_cmpeq_epi32(a, _mm256_set1_epi32(0x3effffff)));
    return _mm256_sign_epi32(q, _mm256_castps_si256(v));
}

/* 32 int32 lanes (each in [-127,127], or INT32_MIN for NaN) -> 32 int8 in
 * order, NaN as 0. */
static inline void store_q8x32(__m256i a, __m256i b, __m256i c, __m256i d, int8_t *dst)
{
    __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    __m256i x = _mm256_packs_epi16(ab, cd);
    x = _mm256_andnot_si256(_mm256_cmpeq_epi8(x, _mm256_set1_epi8(-128)), x);
    x = _mm256_permutevar8x32_epi32(x, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)(void *)dst, x);
}

/* 32 int32 lanes (each in [-127,127]) -> 32 int8 in order. */
static inline void store_i8x32(__m256i a, __m256i b, __m256i c, __m256i d, int8_t *dst)
{
    __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    __m256i x = _mm256_packs_epi16(ab, cd);
    x = _mm256_permutevar8x32_epi32(x, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)(void *)dst, x);
}

/* The 16-bit lanes of 16 consecutive int8 codes (|code| <= 127) from those
 * of the even (e) and odd (o) elements as int32: e's low half, o's low half
 * above it. */
static inline __m256i interleave16(__m256i e, __m256i o)
{
    return _mm256_blend_epi16(e, _mm256_slli_epi32(o, 16), 0xAA);
}

/* q8 codes of one whole bf16 block (block a multiple of 32, no NaN) with
 * reciprocal vid: the raw values taken as 8 dwords give the even elements
 * (v << 16) and the odd ones (v & 0xffff0000) without a widening shuffle;
 * the codes go back into element order as 16-bit lanes (interleave16),
 * then one saturating pack (exact: |code| <= 127) and a quarter permute. */
static inline void q8_block_bf16(const unsigned char *p, size_t block, __m256 vid, int8_t *qs)
{
    const __m256i hi = _mm256_set1_epi32((int)0xffff0000u);
    for (size_t i = 0; i < block; i += 32) {
        __m256i w[2];
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(p + 2 * (i + 16 * (size_t)h)));
            __m256 e = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
            __m256 o = _mm256_castsi256_ps(_mm256_and_si256(v, hi));
            w[h] = interleave16(q8_round8(_mm256_mul_ps(e, vid)), q8_round8(_mm256_mul_ps(o, vid)));
        }
        /* bytes: 0-7, 16-23 | 8-15, 24-31 -> in order */
        __m256i x = _mm256_permute4x64_epi64(_mm256_packs_epi16(w[0], w[1]), 0xD8);
        _mm256_storeu_si256((__m256i *)(void *)(qs + i), x);
    }
}

/* q8 on cnt <= 8 whole blocks (block a multiple of 32), as the 4-bit kernel:
 * the 8 absmax in one vector (group_absmax8: fp16 / bf16 blocks holding NaN,
 * or Inf for fp16, go to _ref), d = amax / 127 and id = 1 / d as vectors,
 * the block-32 fp16 scales through vcvtps2ph (round to nearest even, as
 * qt_fp32_to_fp16). x * id stays within +-127.0001 when d is normal
 * or 0 (Inf amax: id = 0); a subnormal d (amax < 127 * 2^-126), where it
 * does not, goes to _ref. */
static inline __attribute__((always_inline)) void q8_group(qt_src_type t, const unsigned char *p,
                                                           size_t block, int cnt,
                                                           unsigned char *out)
{
    const size_t es = qt_src_size(t), bb = qt_q8_block_bytes(block);
    unsigned ref; /* blocks for the scalar definition */
    const __m256 am = group_absmax8(t, p, block, cnt, &ref);
    const __m256 d = _mm256_div_ps(am, _mm256_set1_ps(127.0f));
    const __m256 nz = _mm256_cmp_ps(d, _mm256_setzero_ps(), _CMP_NEQ_OQ);
    const __m256 id = _mm256_and_ps(_mm256_div_ps(_mm256_set1_ps(1.0f), d), nz);
    ref |= (unsigned)_mm256_movemask_ps(
        _mm256_and_ps(_mm256_cmp_ps(d, _mm256_set1_ps(0x1p-126f), _CMP_LT_OQ), nz));
    float dd[8], ii[8];
    uint16_t hh[8];
    _mm256_storeu_ps(dd, d);
    _mm256_storeu_ps(ii, id);
    _mm_storeu_si128((__m128i *)(void *)hh, _mm256_cvtps_ph(d, _MM_FROUND_TO_NEAREST_INT));
    for (int j = 0; j < cnt; j++) {
        const unsigned char *pj = p + (size_t)j * block * es;
        unsigned char *blk = out + (size_t)j * bb;
        if (ref >> j & 1) {
            qt_q8_quant_ref(t, pj, block, block, blk);
            continue;
        }
        int8_t *qs = qt_q8_block_head(blk, block, dd[j], hh[j]);
        const __m256 vid = _mm256_set1_ps(ii[j]);
        if (t == QT_SRC_BF16) {
            q8_block_bf16(pj, block, vid, qs);
            continue;
        }
        for (size_t i = 0; i < block; i += 32) {
            __m256i r[4];
            for (int v = 0; v < 4; v++)
                r[v] = q8_round8(_mm256_mul_ps(load8(t, pj + (i + 8 * (size_t)v) * es), vid));
            if (t == QT_SRC_F16) /* NaN blocks went to _ref */
                store_i8x32(r[0], r[1], r[2], r[3], qs + i);
            else
                store_q8x32(r[0], r[1], r[2], r[3], qs + i);
        }
    }
}

static void q8_quant(qt_src_type t, const void *src, size_t n, size_t block, void *dst)
{
    QT_Q8_SIMD_BODY(t, src, n, block, dst, 8);
}

static inline __m256 load8_h(qt_src_type t, const unsigned char *p)
{
    if (t == QT_SRC_F16) return load8(t, p);
    return _mm256_cvtph_ps(_mm256_cvtps_ph(load8(t, p), _MM_FROUND_TO_NEAREST_INT));
}

/* max |x| of n (a multiple of 16) fp16 or bf16 values as the bits of the
 * largest magnitude: an unsigned 16-bit max (magnitude bits order like
 * the values, NaN above every number). */
static inline uint16_t max_mag16(const unsigned char *p, size_t n)
{
    const __m256i mag = _mm256_set1_epi16(0x7fff);
    __m256i m0 = _mm256_setzero_si256(), m1 = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        m0 = _mm256_max_epu16(m0, _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(const void *)(p + 2 * i)), mag));
        m1 = _mm256_max_epu16(m1, _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(const void *)(p + 2 * i + 32)), mag));
    }
    for (; i < n; i += 16)
        m0 = _mm256_max_epu16(m0, _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(const void *)(p + 2 * i)), mag));
    m0 = _mm256_max_epu16(m0, m1);
    __m128i m = _mm_max_epu16(_mm256_castsi256_si128(m0), _mm256_extracti128_si256(m0, 1));
    m = _mm_max_epu16(m, _mm_srli_si128(m, 8));
    m = _mm_max_epu16(m, _mm_srli_si128(m, 4));
    m = _mm_max_epu16(m, _mm_srli_si128(m, 2));
    return (uint16_t)_mm_extract_epi16(m, 0);
}

/* LLM.int8 row. SCB: fp16 / bf16 rows without NaN take the max of the raw
 * magnitudes (rounding to fp16 is monotone and symmetric, so the max of
 * the rounded values is the rounded max); otherwise max |fp16(x)| as
 * floats (NaN never wins). Codes: when the row holds no NaN, SCB is
 * finite and f32(SCB * scale) < 127.5, every |f32(x16 * scale)| is at most
 * that (rounding is monotone) and rounds into [-127, 127]: no NaN mask and
 * no clamp; otherwise both. Pass 2 prefetches the next row. */
static void int8_quant_row(qt_src_type t, const void *src, size_t n_cols, const uint8_t *rcp,
                           int8_t *cb, float *scb)
{
    const unsigned char *p = src;
    const size_t es = qt_src_size(t), nv = n_cols / 32 * 32;
    float m = 0.0f;
    bool clean = false; /* no NaN in the SIMD part */
    if (t != QT_SRC_F32) clean = qt_int8_scb_of_top(t, nv ? max_mag16(p, nv) : 0, &m);
    if (!clean) {
        __m256 mv = _mm256_setzero_ps();
        for (size_t i = 0; i < nv; i += 8) mv = _mm256_max_ps(abs8(load8_h(t, p + i * es)), mv);
        m = hmax8(mv);
    }
    for (size_t i = nv; i < n_cols; i++) m = qt_absmax_step(m, qt_half_value(t, src, i));
    *scb = m;
    float scale = qt_recip(rcp, m) * 127.0f;
    const __m256 vs = _mm256_set1_ps(scale);
    if (clean && qt_int8_no_clamp(m, scale)) {
        for (size_t i = 0; i < nv; i += 32) {
            qt_prefetch_ahead(p + (n_cols + i) * es, 32 * es); /* the next row */
            __m256i r[4];
            for (int v = 0; v < 4; v++)
                r[v] = _mm256_cvtps_epi32(_mm256_mul_ps(load8_h(t, p + (i + 8 * v) * es), vs));
            store_i8x32(r[0], r[1], r[2], r[3], cb + i);
        }
    } else {
        for (size_t i = 0; i < nv; i += 32) {
            qt_prefetch_ahead(p + (n_cols + i) * es, 32 * es); /* the next row */
            __m256i r[4];
            for (int v = 0; v < 4; v++) {
                __m256 x = _mm256_mul_ps(load8_h(t, p + (i + 8 * v) * es), vs);
                x = _mm256_and_ps(x, _mm256_cmp_ps(x, x, _CMP_ORD_Q));
                x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f));
                r[v] = _mm256_cvtps_epi32(x);
            }
            store_i8x32(r[0], r[1], r[2], r[3], cb + i);
        }
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

/* dq8_codes_tab's 8 codes as the low 8 bytes. */
static inline __m128i dq8_codes8(__m256 xn, const qt_dq8_tab *tab)
{
    __m256i c = dq8_codes_tab(xn, tab);
    __m128i p = _mm_packus_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1));
    return _mm_packus_epi16(p, p);
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
    size_t i = 0;
    for (; i + 8 <= len; i += 8) /* whole vectors: plain loads, 8-byte stores */
        _mm_storel_epi64((__m128i *)(void *)(codes + i),
                         dq8_codes8(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(absmax + i), off), vr), tab));
    if (i < len) { /* the last few: masked load, through a buffer */
        __m256i k = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(len - i)), lane);
        __m256 xn = _mm256_mul_ps(_mm256_sub_ps(_mm256_maskload_ps(absmax + i, k), off), vr);
        uint8_t b[8];
        _mm_storel_epi64((__m128i *)(void *)b, dq8_codes8(xn, tab));
        memcpy(codes + i, b, len - i);
    }
}

/* ---- the exact mean of double quantization (quant_internal.h) ---------- */

/* Values per flush of the 64-bit lane sums: 2^12 / 8 per lane, each below
 * 2^(24 + QT_DQ_MEAN_WIN), stay below 2^57. */
#define MEAN_FLUSH 4096

bool qt_dq_mean_sum_avx2(const float *v, size_t n, uint64_t se[256])
{
    const unsigned char *p = (const unsigned char *)v;
    const size_t nv = n / 8 * 8;
    const __m256i mag = _mm256_set1_epi32(0x7fffffff);
    /* pass 1: the largest bits (unsigned: a negative value wins), the
     * largest and smallest nonzero magnitudes */
    __m256i bmax = _mm256_setzero_si256(), amax = bmax, amin = _mm256_set1_epi32(-1);
    for (size_t i = 0; i < nv; i += 8) {
        __m256i b = _mm256_loadu_si256((const __m256i *)(const void *)(p + 4 * i));
        __m256i a = _mm256_and_si256(b, mag);
        bmax = _mm256_max_epu32(bmax, b);
        amax = _mm256_max_epu32(amax, a);
        amin = _mm256_min_epu32(amin, _mm256_or_si256(a, _mm256_cmpeq_epi32(a, _mm256_setzero_si256())));
    }
    uint32_t bm[8], am[8], an[8], hb = 0, ha = 0, la = UINT32_MAX;
    _mm256_storeu_si256((__m256i *)(void *)bm, bmax);
    _mm256_storeu_si256((__m256i *)(void *)am, amax);
    _mm256_storeu_si256((__m256i *)(void *)an, amin);
    for (int l = 0; l < 8; l++) {
        hb = bm[l] > hb ? bm[l] : hb;
        ha = am[l] > ha ? am[l] : ha;
        la = an[l] < la ? an[l] : la;
    }
    for (size_t i = nv; i < n; i++) {
        uint32_t b = qt_f32_bits(v[i]), a = b & 0x7fffffffu;
        hb = b > hb ? b : hb;
        ha = a > ha ? a : ha;
        la = a && a < la ? a : la;
    }
    if (hb > 0x80000000u || ha >= 0x7f800000u || la == UINT32_MAX) return false;
    const uint32_t e0 = la >> 23 ? la >> 23 : 1, e1 = ha >> 23 ? ha >> 23 : 1;
    if (e1 - e0 > QT_DQ_MEAN_WIN || e0 + 32 >= 255) return false;
    /* pass 2: significand << (max(e, 1) - e0) in 64-bit lanes (zero: a
     * significand of 0), flushed into 32-bit halves every MEAN_FLUSH */
    const __m256i ve0 = _mm256_set1_epi32((int)e0), one = _mm256_set1_epi32(1);
    uint64_t lo = 0, hi = 0;
    for (size_t f = 0; f < nv; f += MEAN_FLUSH) {
        const size_t end = nv - f < MEAN_FLUSH ? nv : f + MEAN_FLUSH;
        __m256i s0 = _mm256_setzero_si256(), s1 = s0;
        for (size_t i = f; i < end; i += 8) {
            __m256i a = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(const void *)(p + 4 * i)), mag);
            __m256i e = _mm256_srli_epi32(a, 23);
            __m256i m = _mm256_or_si256(_mm256_and_si256(a, _mm256_set1_epi32(0x7fffff)),
                                        _mm256_andnot_si256(_mm256_cmpeq_epi32(e, _mm256_setzero_si256()),
                                                            _mm256_set1_epi32(0x800000)));
            __m256i sh = _mm256_sub_epi32(_mm256_max_epu32(e, one), ve0); /* zero: < 0, shifts out */
            s0 = _mm256_add_epi64(s0, _mm256_sllv_epi64(_mm256_cvtepu32_epi64(_mm256_castsi256_si128(m)),
                                                        _mm256_cvtepu32_epi64(_mm256_castsi256_si128(sh))));
            s1 = _mm256_add_epi64(s1, _mm256_sllv_epi64(_mm256_cvtepu32_epi64(_mm256_extracti128_si256(m, 1)),
                                                        _mm256_cvtepu32_epi64(_mm256_extracti128_si256(sh, 1))));
        }
        uint64_t q[8];
        _mm256_storeu_si256((__m256i *)(void *)q, s0);
        _mm256_storeu_si256((__m256i *)(void *)(q + 4), s1);
        for (int l = 0; l < 8; l++) {
            lo += q[l] & 0xffffffffu;
            hi += q[l] >> 32;
        }
    }
    for (size_t i = nv; i < n; i++) {
        uint32_t a = qt_f32_bits(v[i]) & 0x7fffffffu, e = a >> 23, eb = e ? e : 1;
        uint64_t m = (a & 0x7fffffu) | (uint32_t)(e != 0) << 23;
        if (m) lo += m << (eb - e0); /* < 2^48: below the 2^63 the halves allow */
    }
    se[e0] += lo;
    se[e0 + 32] += hi;
    return true;
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
    dot_tile,       qt_lora_merge_row_avx2, qt_attn_avx2,
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
    .dot_rows = {[QT_SCHEME_NF4] = qt_gemv_4bit_avx2, [QT_SCHEME_FP4] = qt_gemv_4bit_avx2,
                 [QT_SCHEME_INT8] = qt_gemv_int8_avx2, [QT_SCHEME_Q8] = qt_gemv_q8_avx2,
                 [QT_SCHEME_INT8_BLOCKWISE] = qt_gemv_dq_avx2, [QT_SCHEME_BF16] = qt_gemv_half_avx2,
                 [QT_SCHEME_FP16] = qt_gemv_half_avx2, [QT_SCHEME_FP32] = qt_gemv_f32_avx2},
};
