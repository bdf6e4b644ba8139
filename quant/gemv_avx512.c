/* quant/gemv_avx512.c: the fused decoding dot (qt_dot_rows_fn,
 * quant_internal.h) on AVX-512. Sixteen weight rows are one vector of
 * chains (lane j = row r0 + g + j), two such vectors at a time; 16 columns
 * at a time are loaded, transposed in registers and multiplied in, column
 * by column: y = fmaf(x[k], w[k], y) over k in order, the bits of
 * qt_dot_rows_ref, with no K-major panel written or read. bf16 / fp16 /
 * fp32 rows are read in place; other schemes are dequantized (qt_dq_range,
 * exact) GV_KB columns at a time into a 32-row tile in L1. */
#include "quant/quant.h"

#include <immintrin.h>

#include "quant/quant_internal.h"
#include "quant/simd_avx512.h"

#define GV_KB 128 /* columns per dequantized tile (32 rows: 16 KiB) */

/* The chains of 32 rows (n_rows <= 32 present, rows ld elements apart
 * from base, of type T) over columns [0, n) with x: two vectors of chains,
 * interleaved so that two FMAs are in flight (one chain alone waits on the
 * FMA latency). */
static inline __attribute__((always_inline)) void chains32(qt_src_type T,
                                                           const unsigned char *base, size_t ld,
                                                           size_t n_rows, size_t n,
                                                           const float *x, __m512 acc[2])
{
    const size_t es = T == QT_SRC_F32 ? 4 : 2;
    const unsigned char *base1 = base + es * 16 * ld;
    const size_t nr1 = n_rows > 16 ? n_rows - 16 : 0;
    for (size_t k = 0; k < n; k += 16) {
        const size_t kl = n - k < 16 ? n - k : 16;
        const __mmask16 m = tail_mask(kl);
        __m512 r0[16], r1[16];
        /* the rows are up to 32 streams: fetch 512 bytes ahead of each */
        if (T != QT_SRC_F32 || (k & 16) == 0)
            for (size_t i = 0; i < n_rows; i++)
                _mm_prefetch((const char *)base + es * (i * ld + k) + 512, _MM_HINT_NTA);
        load_t16(T, base, ld, n_rows, 0, k, m, r0);
        load_t16(T, base1, ld, nr1, 0, k, m, r1);
        if (kl == 16) {
#pragma GCC unroll 16
            for (size_t j = 0; j < 16; j++) {
                const __m512 xj = _mm512_set1_ps(x[k + j]);
                acc[0] = _mm512_fmadd_ps(xj, r0[j], acc[0]);
                acc[1] = _mm512_fmadd_ps(xj, r1[j], acc[1]);
            }
        } else {
            for (size_t j = 0; j < kl; j++) {
                const __m512 xj = _mm512_set1_ps(x[k + j]);
                acc[0] = _mm512_fmadd_ps(xj, r0[j], acc[0]);
                acc[1] = _mm512_fmadd_ps(xj, r1[j], acc[1]);
            }
        }
    }
}

/* y[0..ng) from the two vectors of chains. */
static void store32(const __m512 acc[2], size_t ng, float *y)
{
    _mm512_mask_storeu_ps(y, tail_mask(ng), acc[0]);
    if (ng > 16) _mm512_mask_storeu_ps(y + 16, tail_mask(ng - 16), acc[1]);
}

/* Plain rows of type T, read where they are stored. */
static inline __attribute__((always_inline)) void plain_rows(qt_src_type T, const qt_dq_ctx *c,
                                                             size_t r0, size_t nr, const float *x,
                                                             float *y)
{
    const size_t n_in = c->w->n_in, es = T == QT_SRC_F32 ? 4 : 2;
    for (size_t g = 0; g < nr; g += 32) {
        const size_t ng = nr - g < 32 ? nr - g : 32;
        const unsigned char *base = (const unsigned char *)c->w->data + es * (r0 + g) * n_in;
        __m512 acc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
        chains32(T, base, n_in, ng, n_in, x, acc);
        store32(acc, ng, y + g);
    }
}

void qt_gemv_f32_avx512(const qt_dq_ctx *c, size_t r0, size_t nr, const float *x, float *y)
{
    plain_rows(QT_SRC_F32, c, r0, nr, x, y);
}

/* ---- bf16 / fp16 rows, 32 columns at a time ------------------------------
 * Sixteen rows' 64 bytes (a cache line each, consumed whole: rows 4 KiB
 * apart share one L1 set) are transposed as 32-bit words: t[d], lane i =
 * columns 2d, 2d + 1 of row i, the first in the low half. */

/* Column 2d + h (h = 0, 1) of the sixteen rows of word vector t, widened. */
static inline __attribute__((always_inline)) __m512 half_col(qt_src_type T, __m512i t, int h)
{
    if (T == QT_SRC_BF16)
        return _mm512_castsi512_ps(h ? _mm512_and_si512(t, _mm512_set1_epi32((int)0xffff0000u))
                                     : _mm512_slli_epi32(t, 16));
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(h ? _mm512_srli_epi32(t, 16) : t));
}

/* The chains of 16 rows (ng present, rows ld elements apart from base)
 * over columns [0, n), n a multiple of 32. */
static inline __attribute__((always_inline)) __m512 chains_half16(qt_src_type T,
                                                                  const uint16_t *base,
                                                                  size_t ld, size_t ng,
                                                                  size_t n, const float *x)
{
    __m512 acc = _mm512_setzero_ps();
    for (size_t k = 0; k < n; k += 32) {
        __m512 r[16];
#pragma GCC unroll 16
        for (size_t i = 0; i < 16; i++) {
            const uint16_t *p = base + (i < ng ? i : 0) * ld + k;
            _mm_prefetch((const char *)p + 512, _MM_HINT_NTA);
            r[i] = _mm512_loadu_ps(p);
        }
        transpose16(r);
#pragma GCC unroll 16
        for (int d = 0; d < 16; d++) {
            const __m512i t = _mm512_castps_si512(r[d]);
            acc = _mm512_fmadd_ps(_mm512_set1_ps(x[k + 2 * d]), half_col(T, t, 0), acc);
            acc = _mm512_fmadd_ps(_mm512_set1_ps(x[k + 2 * d + 1]), half_col(T, t, 1), acc);
        }
    }
    return acc;
}

static inline __attribute__((always_inline)) void half_rows(qt_src_type T, const qt_dq_ctx *c,
                                                            size_t r0, size_t nr, const float *x,
                                                            float *y)
{
    const size_t n_in = c->w->n_in;
    if (n_in % 32) {
        plain_rows(T, c, r0, nr, x, y);
        return;
    }
    for (size_t g = 0; g < nr; g += 16) {
        const size_t ng = nr - g < 16 ? nr - g : 16;
        const uint16_t *base = (const uint16_t *)c->w->data + (r0 + g) * n_in;
        _mm512_mask_storeu_ps(y + g, tail_mask(ng), chains_half16(T, base, n_in, ng, n_in, x));
    }
}

void qt_gemv_bf16_avx512(const qt_dq_ctx *c, size_t r0, size_t nr, const float *x, float *y)
{
    half_rows(QT_SRC_BF16, c, r0, nr, x, y);
}

void qt_gemv_f16_avx512(const qt_dq_ctx *c, size_t r0, size_t nr, const float *x, float *y)
{
    half_rows(QT_SRC_F16, c, r0, nr, x, y);
}

/* Any scheme: GV_KB columns of 32 rows dequantized into an L1 tile, then
 * the same chains over the tile. */
void qt_gemv_dq_avx512(const qt_dq_ctx *c, size_t r0, size_t nr, const float *x, float *y)
{
    _Alignas(64) float tile[32 * GV_KB];
    const size_t n_in = c->w->n_in;
    for (size_t g = 0; g < nr; g += 32) {
        const size_t ng = nr - g < 32 ? nr - g : 32;
        __m512 acc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
        for (size_t k0 = 0; k0 < n_in; k0 += GV_KB) {
            const size_t kb = n_in - k0 < GV_KB ? n_in - k0 : GV_KB;
            for (size_t i = 0; i < ng; i++)
                qt_dq_range(c, (r0 + g + i) * n_in + k0, kb, tile + i * GV_KB);
            chains32(QT_SRC_F32, (const unsigned char *)tile, GV_KB, ng, kb, x + k0, acc);
        }
        store32(acc, ng, y + g);
    }
}

/* ---- nf4 / fp4 straight from the packed codes ----------------------------
 *
 * Rows of whole blocks (n_in a multiple of the block size, itself a multiple
 * of 32) are read 16 bytes (32 codes) per row at a time. Four rows' 16 bytes
 * fill one vector (row 4L + q in 128-bit lane L of z[q]); a 4 x 4 transpose
 * of 32-bit words inside the lanes gives t[d], lane i = bytes 4d .. 4d+3 of
 * row i: eight codes of sixteen rows. Code e of a word is the nibble at bit
 * 8 * (e / 2) + 4 * (1 - e % 2) (the first code of a byte is its high
 * nibble); shifted to the bottom it indexes the 16-entry map directly (the
 * permute reads the low four bits). Then the product with the block scale
 * (the value qt_dq_range computes: map[c] * scale), its rounding to the
 * stored dtype when round_to says so, and the chain y = fmaf(x[k], w, y). */

#define G4_KC 2048 /* columns whose scales are resolved at once (at least a block) */

/* z[q], lane L = 16 bytes at off of row 4L + q; then the in-lane transpose
 * to t[d], lane i = word d of row i. */
static inline __attribute__((always_inline)) void load_words16(const uint8_t *const rows[16],
                                                               size_t off, __m512i t[4])
{
    __m512i z[4];
#pragma GCC unroll 4
    for (int q = 0; q < 4; q++) {
        __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const void *)(rows[q] + off)));
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const void *)(rows[4 + q] + off)), 1);
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const void *)(rows[8 + q] + off)), 2);
        z[q] = _mm512_inserti32x4(v, _mm_loadu_si128((const void *)(rows[12 + q] + off)), 3);
    }
    const __m512i a0 = _mm512_unpacklo_epi32(z[0], z[1]), a1 = _mm512_unpackhi_epi32(z[0], z[1]);
    const __m512i b0 = _mm512_unpacklo_epi32(z[2], z[3]), b1 = _mm512_unpackhi_epi32(z[2], z[3]);
    t[0] = _mm512_unpacklo_epi64(a0, b0);
    t[1] = _mm512_unpackhi_epi64(a0, b0);
    t[2] = _mm512_unpacklo_epi64(a1, b1);
    t[3] = _mm512_unpackhi_epi64(a1, b1);
}

/* v rounded as mode says (quant_internal.h, qt_round4) and widened back. */
static inline __attribute__((always_inline)) __m512 round4(qt_round4 mode, __m512 v)
{
    if (mode == QT_ROUND4_BF16_INT) {
        const __m512i u = _mm512_castps_si512(v);
        const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
        const __m512i r = _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb);
        return _mm512_castsi512_ps(_mm512_and_si512(r, _mm512_set1_epi32((int)0xffff0000u)));
    }
    if (mode == QT_ROUND4_BF16_SPLIT) {
        const __m512 c = _mm512_mul_ps(v, _mm512_set1_ps(65537.0f));
        return _mm512_sub_ps(c, _mm512_sub_ps(c, v));
    }
    if (mode == QT_ROUND4_F16)
        return _mm512_cvtph_ps(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    return v;
}

/* Code e (0..7) of every lane's word v as its weight: map[code] * s, rounded. */
static inline __attribute__((always_inline)) __m512 weight4(qt_round4 mode, __m512i v, int e,
                                                           __m512 map, __m512 s)
{
    const int sh = 8 * (e / 2) + 4 * (1 - e % 2);
    const __m512 m = _mm512_permutexvar_ps(_mm512_srli_epi32(v, (unsigned)sh), map);
    return round4(mode, _mm512_mul_ps(m, s));
}

#define G4_NV 2              /* vectors of chains in flight (FMA latency) */
#define G4_ROWS (16 * G4_NV) /* rows per pass */

/* The codes of one step (32 columns from k) of the G4_ROWS rows: t[v][d],
 * lane i = word d of row 16v + i; prefetches 2 lines ahead every 4 steps. */
static inline __attribute__((always_inline)) void load_step4(const uint8_t *const rows[G4_ROWS],
                                                             size_t k, __m512i t[G4_NV][4])
{
#pragma GCC unroll 4
    for (int v = 0; v < G4_NV; v++) load_words16(rows + 16 * v, k / 2, t[v]);
    if ((k & 127) == 0) /* G4_ROWS streams */
        for (int i = 0; i < G4_ROWS; i++) _mm_prefetch((const char *)rows[i] + k / 2 + 128, _MM_HINT_NTA);
}

/* The chains of G4_ROWS rows (G4_NV vectors) over columns [k0, k0 + kc)
 * (whole blocks), scales sc[b * G4_ROWS + i] of the kc / B blocks. */
static inline __attribute__((always_inline)) void chains4(qt_round4 mode,
                                                          const uint8_t *const rows[G4_ROWS],
                                                          size_t k0, size_t kc, size_t B,
                                                          const float *sc, const float *x,
                                                          __m512 map, __m512 acc[G4_NV])
{
    for (size_t k = k0; k < k0 + kc; k += 32) {
        const float *s = sc + (k - k0) / B * G4_ROWS;
        __m512 sv[G4_NV];
        __m512i t[G4_NV][4];
#pragma GCC unroll 4
        for (int v = 0; v < G4_NV; v++) sv[v] = _mm512_loadu_ps(s + 16 * v);
        load_step4(rows, k, t);
#pragma GCC unroll 4
        for (int d = 0; d < 4; d++)
#pragma GCC unroll 8
            for (int e = 0; e < 8; e++) {
                const __m512 xk = _mm512_set1_ps(x[k + 8 * d + e]);
#pragma GCC unroll 4
                for (int v = 0; v < G4_NV; v++)
                    acc[v] = _mm512_fmadd_ps(xk, weight4(mode, t[v][d], e, map, sv[v]), acc[v]);
            }
    }
}

/* t[code] per lane (code < 256) from the 256 floats t in 16 vectors: eight
 * 32-entry permutes by the low five bits, then a selection by the top three. */
static inline __attribute__((always_inline)) __m512 lookup256(const __m512 t[16], __m512i code)
{
    __m512 p[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) p[i] = _mm512_permutex2var_ps(t[2 * i], code, t[2 * i + 1]);
    const __mmask16 b5 = _mm512_test_epi32_mask(code, _mm512_set1_epi32(32));
    const __mmask16 b6 = _mm512_test_epi32_mask(code, _mm512_set1_epi32(64));
    const __mmask16 b7 = _mm512_test_epi32_mask(code, _mm512_set1_epi32(128));
    const __m512 q0 = _mm512_mask_blend_ps(b5, p[0], p[1]), q1 = _mm512_mask_blend_ps(b5, p[2], p[3]);
    const __m512 q2 = _mm512_mask_blend_ps(b5, p[4], p[5]), q3 = _mm512_mask_blend_ps(b5, p[6], p[7]);
    const __m512 h0 = _mm512_mask_blend_ps(b6, q0, q1), h1 = _mm512_mask_blend_ps(b6, q2, q3);
    return _mm512_mask_blend_ps(b7, h0, h1);
}

/* The scales of qt_4bit_scales_rows (the same values, vectorized): blocks
 * [b0, b0 + nb) (nb <= 64) of rows r .. r + G4_ROWS - 1 (ng present, the
 * others repeat row r) into sc[b * G4_ROWS + i]: per row, 16 blocks per
 * vector (the nested map and nested absmax gathered), then 16 x 16
 * transposes. False when one is NaN or Inf; *split_ok when all meet
 * qt_scale_split_ok. */
static bool scales4(const qt_dq_ctx *c, size_t r, size_t ng, size_t b0, size_t nb, float *sc,
                    bool *split_ok)
{
    __m512 nm[16];
    for (int i = 0; i < 16; i++) nm[i] = _mm512_loadu_ps(c->nmap + 16 * i);
    const qt_qweight *w = c->w;
    const size_t nb_row = w->n_in / w->block_size, nbv = (nb + 15) / 16;
    _Alignas(64) float tmp[G4_ROWS][64];
    __mmask16 bad = 0, small = 0;
    for (size_t i = 0; i < G4_ROWS; i++) {
        const size_t j0 = (r + (i < ng ? i : 0)) * nb_row + b0; /* flat block index */
        for (size_t v = 0; v < nbv; v++) {
            const __mmask16 m = tail_mask(nb - 16 * v);
            const size_t j = j0 + 16 * v;
            __m512 s;
            if (w->absmax_q) {
                const __m128i q = m == 0xffff ? _mm_loadu_si128((const void *)(w->absmax_q + j))
                                              : _mm_maskz_loadu_epi8(m, w->absmax_q + j);
                const __m512i code = _mm512_cvtepu8_epi32(q);
                /* the nested absmax of 16 consecutive blocks: at most two */
                const float *na = w->nested_absmax;
                const size_t jl = j + 15 < j0 + nb ? j + 15 : j0 + nb - 1;
                const __mmask16 hi = (__mmask16)(0xffffu << ((j / QT_DQ_BLOCK + 1) * QT_DQ_BLOCK - j < 16
                                                                 ? (j / QT_DQ_BLOCK + 1) * QT_DQ_BLOCK - j
                                                                 : 16));
                const __m512 n = _mm512_mask_blend_ps(hi, _mm512_set1_ps(qt_ldf(na, j / QT_DQ_BLOCK)),
                                                      _mm512_set1_ps(qt_ldf(na, jl / QT_DQ_BLOCK)));
                const __m512 a = lookup256(nm, code);
                s = _mm512_add_ps(_mm512_mul_ps(a, n), _mm512_set1_ps(w->nested_offset));
            } else {
                s = _mm512_maskz_loadu_ps(m, (const float *)w->absmax + j);
            }
            bad |= _mm512_mask_cmp_ps_mask(m, _mm512_sub_ps(s, s), _mm512_setzero_ps(),
                                           _CMP_NEQ_UQ);
            const __m512 a = _mm512_abs_ps(s); /* the qt_scale_split_ok test */
            const __mmask16 in = _mm512_cmp_ps_mask(a, _mm512_set1_ps(QT_SPLIT_SCALE_MIN), _CMP_GE_OQ) &
                                 _mm512_cmp_ps_mask(a, _mm512_set1_ps(QT_SPLIT_SCALE_MAX), _CMP_LE_OQ);
            small |= m & ~in & _mm512_cmp_ps_mask(a, _mm512_setzero_ps(), _CMP_NEQ_OQ);
            _mm512_store_ps(tmp[i] + 16 * v, s);
        }
    }
    for (size_t v = 0; v < nbv; v++)
        for (size_t g = 0; g < G4_ROWS; g += 16) {
            __m512 t[16];
            for (int i = 0; i < 16; i++) t[i] = _mm512_load_ps(tmp[g + i] + 16 * v);
            transpose16(t);
            for (size_t b = 16 * v; b < nb && b < 16 * v + 16; b++)
                _mm512_store_ps(sc + b * G4_ROWS + g, t[b - 16 * v]);
        }
    *split_ok = small == 0;
    return bad == 0;
}

/* ---- bf16 rounding through vcvtne2ps2bf16 (CPUs with AVX512_BF16) -------
 * Where the split may be used (qt_round4: every product 0 or normal) this
 * instruction rounds like qt_fp32_to_bf16 (it reads subnormal inputs as
 * zero: none here). It rounds the two vectors of chains at once into one
 * vector of 32 bf16; widening its halves (a bf16 is the top half of its
 * fp32) gives lanes in a fixed other order of the 32 rows: pair_lo = rows
 * 0-3, 8-11, 16-19, 24-27, pair_hi = rows 4-7, 12-15, 20-23, 28-31. */
_Static_assert(G4_NV == 2, "chains4_pair pairs two vectors of chains");

static bool bf16cvt_on = true, split_on = true;

void qt_gemv_avx512_bf16_rounding(bool cvt, bool split)
{
    bf16cvt_on = cvt;
    split_on = split;
}

static bool bf16cvt_usable(void)
{
    return bf16cvt_on && __builtin_cpu_supports("avx512bf16");
}

__attribute__((target("avx512bf16"))) static void chains4_pair(const uint8_t *const rows[G4_ROWS],
                                                               size_t k0, size_t kc, size_t B,
                                                               const float *sc, const float *x,
                                                               __m512 map, __m512 acc[2])
{
    /* rows order <-> pair order of the accumulators */
    const __m512i to_lo = _mm512_setr_epi32(0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
    const __m512i to_hi = _mm512_setr_epi32(4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
    const __m512i back0 = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
    const __m512i back1 = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
    __m512 lo = _mm512_permutex2var_ps(acc[0], to_lo, acc[1]);
    __m512 hi = _mm512_permutex2var_ps(acc[0], to_hi, acc[1]);
    for (size_t k = k0; k < k0 + kc; k += 32) {
        const float *s = sc + (k - k0) / B * G4_ROWS;
        const __m512 s0 = _mm512_loadu_ps(s), s1 = _mm512_loadu_ps(s + 16);
        __m512i t[G4_NV][4];
        load_step4(rows, k, t);
#pragma GCC unroll 4
        for (int d = 0; d < 4; d++)
#pragma GCC unroll 8
            for (int e = 0; e < 8; e++) {
                const __m512 xk = _mm512_set1_ps(x[k + 8 * d + e]);
                const __m512 m0 = weight4(QT_ROUND4_NONE, t[0][d], e, map, s0);
                const __m512 m1 = weight4(QT_ROUND4_NONE, t[1][d], e, map, s1);
                const __m512i p = (__m512i)_mm512_cvtne2ps_pbh(m1, m0);
                const __m512i z = _mm512_setzero_si512();
                lo = _mm512_fmadd_ps(xk, _mm512_castsi512_ps(_mm512_unpacklo_epi16(z, p)), lo);
                hi = _mm512_fmadd_ps(xk, _mm512_castsi512_ps(_mm512_unpackhi_epi16(z, p)), hi);
            }
    }
    acc[0] = _mm512_permutex2var_ps(lo, back0, hi);
    acc[1] = _mm512_permutex2var_ps(lo, back1, hi);
}

/* G4_ROWS rows from r (ng present; the others repeat row r and are dropped). */
static bool rows4(const qt_dq_ctx *c, qt_src_type rt, size_t r, size_t ng, const float *x,
                  float *y, __m512 map)
{
    const qt_qweight *w = c->w;
    const size_t n_in = w->n_in, B = w->block_size;
    const size_t kc_max = G4_KC < B ? B : G4_KC / B * B;
    _Alignas(64) float sc[G4_ROWS * (G4_KC / 32)];
    const uint8_t *rows[G4_ROWS];
    for (size_t i = 0; i < G4_ROWS; i++)
        rows[i] = (const uint8_t *)w->data + (r + (i < ng ? i : 0)) * (n_in / 2);
    const bool split_map = rt == QT_SRC_BF16 && qt_map_split_ok(c->map4);
    const bool cvt = split_map && bf16cvt_usable();
    __m512 acc[G4_NV];
    for (int v = 0; v < G4_NV; v++) acc[v] = _mm512_setzero_ps();
    for (size_t k0 = 0; k0 < n_in; k0 += kc_max) {
        const size_t kc = n_in - k0 < kc_max ? n_in - k0 : kc_max;
        bool split;
        if (!scales4(c, r, ng, k0 / B, kc / B, sc, &split)) return false;
        split &= split_map && split_on;
        if (split && cvt) chains4_pair(rows, k0, kc, B, sc, x, map, acc);
        else if (split) chains4(QT_ROUND4_BF16_SPLIT, rows, k0, kc, B, sc, x, map, acc);
        else if (rt == QT_SRC_BF16) chains4(QT_ROUND4_BF16_INT, rows, k0, kc, B, sc, x, map, acc);
        else if (rt == QT_SRC_F16) chains4(QT_ROUND4_F16, rows, k0, kc, B, sc, x, map, acc);
        else chains4(QT_ROUND4_NONE, rows, k0, kc, B, sc, x, map, acc);
    }
    for (size_t v = 0; v < G4_NV && 16 * v < ng; v++)
        _mm512_mask_storeu_ps(y + 16 * v, tail_mask(ng - 16 * v), acc[v]);
    return true;
}

void qt_gemv_4bit_avx512(const qt_dq_ctx *c, size_t r0, size_t nr, const float *x, float *y)
{
    const qt_qweight *w = c->w;
    const size_t B = w->block_size;
    const qt_src_type rt = w->round_to;
    /* rows of whole blocks of whole 32-code steps, one scale per step, and
     * a rounding this kernel does; anything else: the tile path */
    if (B % 32 || w->n_in % B || B > G4_KC ||
        (rt != QT_SRC_F32 && rt != QT_SRC_BF16 && rt != QT_SRC_F16) || !qt_map_finite(c->map4, 16)) {
        qt_gemv_dq_avx512(c, r0, nr, x, y);
        return;
    }
    const __m512 map = _mm512_loadu_ps(c->map4);
    for (size_t g = 0; g < nr; g += G4_ROWS) {
        const size_t ng = nr - g < G4_ROWS ? nr - g : G4_ROWS;
        /* a non-finite scale (NaN, Inf): the tile path, whose rounding
         * handles NaN as qt_fp32_to_bf16 does */
        if (!rows4(c, rt, r0 + g, ng, x, y + g, map)) qt_gemv_dq_avx512(c, r0 + g, ng, x, y + g);
    }
}

/* ---- LLM.int8 and q8 (GGUF Q8_0) straight from the int8 codes ------------
 * int8 rows (n_in a multiple of 64): sixteen rows' 64 bytes transposed as
 * 32-bit words, t[d], lane i = columns 4d .. 4d+3 of row i; byte j
 * sign-extended, widened, times SCB of the row, times 1/127 (the two
 * roundings of range_int8). q8 rows (whole blocks of 32 or more codes
 * after a 2-byte fp16 or 4-byte fp32 scale): 16 codes of each row at a
 * time through load_words16, times the block's scale (exact for fp16). */

/* Byte j (0..3) of every lane's word v, sign-extended, as fp32. */
static inline __attribute__((always_inline)) __m512 byte_col(__m512i v, int j)
{
    const __m512i s = j == 3 ? v : _mm512_slli_epi32(v, (unsigned)(24 - 8 * j));
    return _mm512_cvtepi32_ps(_mm512_srai_epi32(s, 24));
}

void qt_gemv_int8_avx512(const qt_dq_ctx *c, size_t r0, size_t nr, const float *x, float *y)
{
    const qt_qweight *w = c->w;
    const size_t n_in = w->n_in;
    if (n_in % 64) {
        qt_gemv_dq_avx512(c, r0, nr, x, y);
        return;
    }
    const __m512 inv127 = _mm512_set1_ps(7.874015718698502e-3f); /* as range_int8 */
    for (size_t g = 0; g < nr; g += 32) { /* two vectors of chains, interleaved */
        const size_t ng = nr - g < 32 ? nr - g : 32;
        _Alignas(64) float scb[32];
        const uint8_t *rows[32];
        for (size_t i = 0; i < 32; i++) {
            const size_t r = r0 + g + (i < ng ? i : 0);
            scb[i] = qt_ldf(w->scb, r);
            rows[i] = (const uint8_t *)w->data + r * n_in;
        }
        const __m512 s0 = _mm512_load_ps(scb), s1 = _mm512_load_ps(scb + 16);
        __m512 acc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
        for (size_t k = 0; k < n_in; k += 16) {
            __m512i t0[4], t1[4];
            load_words16(rows, k, t0);
            load_words16(rows + 16, k, t1);
            if ((k & 63) == 0)
                for (int i = 0; i < 32; i++) _mm_prefetch((const char *)rows[i] + k + 256, _MM_HINT_NTA);
#pragma GCC unroll 4
            for (int d = 0; d < 4; d++)
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++) {
                    const __m512 xk = _mm512_set1_ps(x[k + 4 * d + j]);
                    const __m512 v0 = _mm512_mul_ps(_mm512_mul_ps(byte_col(t0[d], j), s0), inv127);
                    const __m512 v1 = _mm512_mul_ps(_mm512_mul_ps(byte_col(t1[d], j), s1), inv127);
                    acc[0] = _mm512_fmadd_ps(xk, v0, acc[0]);
                    acc[1] = _mm512_fmadd_ps(xk, v1, acc[1]);
                }
        }
        store32(acc, ng, y + g);
    }
}

void qt_gemv_q8_avx512(const qt_dq_ctx *c, size_t r0, size_t nr, const float *x, float *y)
{
    const qt_qweight *w = c->w;
    const size_t n_in = w->n_in, B = w->block_size;
    if (n_in % B) {
        qt_gemv_dq_avx512(c, r0, nr, x, y);
        return;
    }
    const size_t bb = qt_q8_block_bytes(B), hdr = B == 32 ? 2 : 4, row_bytes = n_in / B * bb;
    for (size_t g = 0; g < nr; g += 32) {
        const size_t ng = nr - g < 32 ? nr - g : 32;
        const uint8_t *rows[32];
        for (size_t i = 0; i < 32; i++)
            rows[i] = (const uint8_t *)w->data + (r0 + g + (i < ng ? i : 0)) * row_bytes;
        __m512 acc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
        for (size_t b = 0; b < n_in / B; b++) {
            __m512 d0, d1; /* the 32 rows' block scales (fp16 widened exactly) */
            if (B == 32) {
                _Alignas(64) uint16_t h[32];
                for (size_t i = 0; i < 32; i++) h[i] = qt_load_le16(rows[i] + b * bb);
                d0 = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(const void *)h));
                d1 = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(const void *)(h + 16)));
            } else {
                _Alignas(64) float d[32];
                for (size_t i = 0; i < 32; i++) d[i] = qt_ldf(rows[i] + b * bb, 0);
                d0 = _mm512_load_ps(d);
                d1 = _mm512_load_ps(d + 16);
            }
            for (size_t k = 0; k < B; k += 16) {
                const size_t off = b * bb + hdr + k;
                __m512i t0[4], t1[4];
                load_words16(rows, off, t0);
                load_words16(rows + 16, off, t1);
#pragma GCC unroll 4
                for (int q = 0; q < 4; q++)
#pragma GCC unroll 4
                    for (int j = 0; j < 4; j++) {
                        const __m512 xk = _mm512_set1_ps(x[b * B + k + 4 * q + j]);
                        acc[0] = _mm512_fmadd_ps(xk, _mm512_mul_ps(byte_col(t0[q], j), d0), acc[0]);
                        acc[1] = _mm512_fmadd_ps(xk, _mm512_mul_ps(byte_col(t1[q], j), d1), acc[1]);
                    }
            }
        }
        store32(acc, ng, y + g);
    }
}
