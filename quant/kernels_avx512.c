/* quant/kernels_avx512.c: AVX-512 (F/BW/VL/DQ) kernels. Quantize kernels
 * give the same bytes as the _ref definitions (nf4.c, q8.c, int8.c): the
 * same float32 operations per element (absmax is an exact max, one scalar
 * correctly rounded reciprocal per block, one multiply, the same compares);
 * the code lookups are branch-free binary searches over the sorted
 * thresholds, which count exactly the thresholds below xn. A final partial
 * block goes to the _ref kernel. */
#include "quant/quant.h"

#include <immintrin.h>

#include "quant/quant_internal.h"

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

static inline __m512i nf4_codes(__m512 xn, __m512 thr)
{
    __m512i idx = _mm512_setzero_si512();
    for (int step = 8; step >= 1; step >>= 1) {
        __m512 t = _mm512_permutexvar_ps(_mm512_add_epi32(idx, _mm512_set1_epi32(step - 1)), thr);
        __mmask16 gt = _mm512_cmp_ps_mask(xn, t, _CMP_GT_OQ);
        idx = _mm512_mask_add_epi32(idx, gt, idx, _mm512_set1_epi32(step));
    }
    return idx;
}

static inline __m512i fp4_codes(__m512 xn, __m512 thr, __m512i lut)
{
    __mmask16 neg = _mm512_cmp_ps_mask(xn, _mm512_setzero_ps(), _CMP_LT_OQ);
    __m512 a = abs16(xn);
    __m512i idx = _mm512_setzero_si512();
    for (int step = 4; step >= 1; step >>= 1) {
        __m512 t = _mm512_permutexvar_ps(_mm512_add_epi32(idx, _mm512_set1_epi32(step - 1)), thr);
        __mmask16 gt = _mm512_cmp_ps_mask(a, t, _CMP_GT_OQ);
        idx = _mm512_mask_add_epi32(idx, gt, idx, _mm512_set1_epi32(step));
    }
    __m512i m = _mm512_permutexvar_epi32(idx, lut);
    return _mm512_mask_add_epi32(m, neg, m, _mm512_set1_epi32(8));
}

/* 16 codes (int32 lanes, element 2k then 2k+1) -> 8 packed bytes. */
static inline void pack16(__m512i c, uint8_t *dst)
{
    __m512i v = _mm512_or_si512(_mm512_slli_epi64(c, 4), _mm512_srli_epi64(c, 32));
    _mm_storel_epi64((__m128i *)dst, _mm512_cvtepi64_epi8(v));
}

static void quant4(bool fp4, qt_src_type t, const void *src, size_t n, size_t block,
                   uint8_t *codes, float *absmax)
{
    const unsigned char *s = src;
    const size_t es = qt_src_size(t), nfull = n / block;
    float th[16];
    __m512i lut = _mm512_setr_epi32(0, 1, 6, 7, 4, 5, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0);
    if (fp4) {
        for (int i = 0; i < 16; i++) th[i] = i < 7 ? qt_fp4_thresholds[i] : INFINITY;
    } else {
        for (int i = 0; i < 16; i++) th[i] = i < 15 ? qt_nf4_thresholds[i] : INFINITY;
    }
    const __m512 thr = _mm512_loadu_ps(th);
    for (size_t j = 0; j < nfull; j++) {
        const unsigned char *p = s + j * block * es;
        uint8_t *out = codes + j * block / 2;
        float m = absmax16(t, p, block, es);
        absmax[j] = m;
        const __m512 r = _mm512_set1_ps(1.0f / m);
        for (size_t i = 0; i < block; i += 16) {
            __m512 xn = _mm512_mul_ps(load16(t, p + i * es), r);
            pack16(fp4 ? fp4_codes(xn, thr, lut) : nf4_codes(xn, thr), out + i / 2);
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

/* roundf (half away from zero) of 16 lanes, NaN -> 0, clamped to +-127,
 * as int8 into dst. */
static inline void q8_store16(__m512 v, int8_t *dst)
{
    __m512 tr = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m512 frac = _mm512_sub_ps(v, tr); /* exact */
    __mmask16 up = _mm512_cmp_ps_mask(abs16(frac), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    __m512 one = _mm512_castsi512_ps(_mm512_or_si512(
        _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32((int)0x80000000u)),
        _mm512_castps_si512(_mm512_set1_ps(1.0f))));
    __m512 r = _mm512_mask_add_ps(tr, up, tr, one);
    __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    r = _mm512_mask_mov_ps(r, nan, _mm512_setzero_ps());
    r = _mm512_min_ps(_mm512_max_ps(r, _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f));
    _mm_storeu_si128((__m128i *)dst, _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(r)));
}

static void q8_quant(qt_src_type t, const void *src, size_t n, size_t block, void *dst)
{
    const unsigned char *s = src;
    const size_t es = qt_src_size(t), nfull = n / block, bb = qt_q8_block_bytes(block);
    unsigned char *out = dst;
    for (size_t j = 0; j < nfull; j++) {
        const unsigned char *p = s + j * block * es;
        unsigned char *blk = out + j * bb;
        float amax = absmax16(t, p, block, es);
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
        const __m512 vid = _mm512_set1_ps(id);
        for (size_t i = 0; i < block; i += 16)
            q8_store16(_mm512_mul_ps(load16(t, p + i * es), vid), qs + i);
    }
    if (nfull * block < n)
        qt_q8_quant_ref(t, s + nfull * block * es, n - nfull * block, block, out + nfull * bb);
}

/* 16 elements rounded through fp16 (exact for fp16 input). */
static inline __m512 load16_h(qt_src_type t, const unsigned char *p)
{
    if (t == QT_SRC_F16) return load16(t, p);
    return _mm512_cvtph_ps(
        _mm512_cvtps_ph(load16(t, p), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

static float half_value(qt_src_type t, const void *src, size_t i)
{
    if (t == QT_SRC_F16) return qt_ld(t, src, i);
    return qt_fp16_to_fp32(qt_fp32_to_fp16(qt_ld(t, src, i)));
}

static void int8_quant_row(qt_src_type t, const void *src, size_t n_cols, int8_t *cb, float *scb)
{
    const unsigned char *p = src;
    const size_t es = qt_src_size(t), nv = n_cols / 16 * 16;
    __m512 mv = _mm512_setzero_ps();
    for (size_t i = 0; i < nv; i += 16) mv = _mm512_max_ps(abs16(load16_h(t, p + i * es)), mv);
    float m = _mm512_reduce_max_ps(mv);
    for (size_t i = nv; i < n_cols; i++) m = qt_absmax_step(m, half_value(t, src, i));
    *scb = m;
    float inv = 1.0f / m;
    float scale = inv * 127.0f;
    const __m512 vs = _mm512_set1_ps(scale);
    for (size_t i = 0; i < nv; i += 16) {
        __m512 v = _mm512_mul_ps(load16_h(t, p + i * es), vs);
        __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        v = _mm512_mask_mov_ps(v, nan, _mm512_setzero_ps());
        v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f));
        _mm_storeu_si128((__m128i *)(cb + i), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(v)));
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

static void blockwise8_quant(qt_src_type t, const void *src, size_t n, size_t block,
                             const float map[256], uint8_t *codes, float *absmax)
{
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
        qt_blockwise8_quant_ref(t, s + nfull * block * es, n - nfull * block, block, map,
                                codes + nfull * block, absmax + nfull);
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

const qt_kernels qt_kernels_avx512 = {
    QT_ISA_AVX512,  quant4, dequant4, q8_quant, int8_quant_row, blockwise8_quant,
    dot_tile,
};
