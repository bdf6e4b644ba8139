/* quant/gemv_avx2.c: the fused decoding dot (qt_dot_rows_fn, quant_internal.h)
 * on AVX2: as gemv_avx512.c with 8 rows per vector of chains, two vectors
 * at a time: 8 columns at
 * a time are loaded, transposed in registers and multiplied in column by
 * column (y = fmaf(x[k], w[k], y) over k in order, the bits of
 * qt_dot_rows_ref). fp32 rows are read in place; other schemes (bf16 /
 * fp16 included) are dequantized GV_KB columns at a time into an L1 tile. */
#include "quant/quant.h"

#include <immintrin.h>

#include "quant/quant_internal.h"
#include "quant/simd_avx2.h"

#define GV_KB 256 /* columns per dequantized tile */

/* The chains of 16 rows (n_rows <= 16 present, fp32 rows ld floats apart
 * from base) over columns [0, n) with x: two vectors of 8 chains,
 * interleaved so that two FMAs are in flight. */
static inline __attribute__((always_inline)) void chains16(const float *base, size_t ld,
                                                           size_t n_rows, size_t n,
                                                           const float *x, __m256 acc[2])
{
    const unsigned char *b0 = (const unsigned char *)base, *b1 = b0 + 4 * 8 * ld;
    const size_t nr0 = n_rows < 8 ? n_rows : 8, nr1 = n_rows > 8 ? n_rows - 8 : 0;
    for (size_t k = 0; k < n; k += 8) {
        const size_t kl = n - k < 8 ? n - k : 8;
        __m256 r0[8], r1[8];
        if ((k & 8) == 0) /* the rows are up to 16 streams: fetch 512 bytes ahead */
            for (size_t i = 0; i < n_rows; i++)
                _mm_prefetch((const char *)(base + i * ld + k) + 512, _MM_HINT_NTA);
        load_t8(b0, ld, nr0, 0, k, kl, r0);
        load_t8(b1, ld, nr1, 0, k, kl, r1);
        if (kl == 8) { /* unrolled: r0, r1 stay in registers */
#pragma GCC unroll 8
            for (size_t j = 0; j < 8; j++) {
                const __m256 xj = _mm256_set1_ps(x[k + j]);
                acc[0] = _mm256_fmadd_ps(xj, r0[j], acc[0]);
                acc[1] = _mm256_fmadd_ps(xj, r1[j], acc[1]);
            }
        } else {
            for (size_t j = 0; j < kl; j++) {
                const __m256 xj = _mm256_set1_ps(x[k + j]);
                acc[0] = _mm256_fmadd_ps(xj, r0[j], acc[0]);
                acc[1] = _mm256_fmadd_ps(xj, r1[j], acc[1]);
            }
        }
    }
}

/* y[0..ng) from the 16 lanes of acc. */
static void store_rows(const __m256 acc[2], size_t ng, float *y)
{
    _Alignas(32) float t[16];
    _mm256_store_ps(t, acc[0]);
    _mm256_store_ps(t + 8, acc[1]);
    memcpy(y, t, ng * sizeof(float));
}

void qt_gemv_f32_avx2(const qt_dq_ctx *c, size_t r0, size_t nr, const float *x, float *y)
{
    const size_t n_in = c->w->n_in;
    for (size_t g = 0; g < nr; g += 16) {
        const size_t ng = nr - g < 16 ? nr - g : 16;
        __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
        chains16((const float *)c->w->data + (r0 + g) * n_in, n_in, ng, n_in, x, acc);
        store_rows(acc, ng, y + g);
    }
}

void qt_gemv_dq_avx2(const qt_dq_ctx *c, size_t r0, size_t nr, const float *x, float *y)
{
    _Alignas(32) float tile[16 * GV_KB];
    const size_t n_in = c->w->n_in;
    for (size_t g = 0; g < nr; g += 16) {
        const size_t ng = nr - g < 16 ? nr - g : 16;
        __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
        for (size_t k0 = 0; k0 < n_in; k0 += GV_KB) {
            const size_t kb = n_in - k0 < GV_KB ? n_in - k0 : GV_KB;
            for (size_t i = 0; i < ng; i++)
                qt_dq_range(c, (r0 + g + i) * n_in + k0, kb, tile + i * GV_KB);
            chains16(tile, GV_KB, ng, kb, x + k0, acc);
        }
        store_rows(acc, ng, y + g);
    }
}

/* ---- bf16 / fp16 rows, 16 columns at a time ------------------------------
 * As gemv_avx512.c: eight rows' 32 bytes transposed as 32-bit words, t[d],
 * lane i = columns 2d, 2d + 1 of row i (the first in the low half); two
 * such steps consume each row's cache line whole. */

/* Column 2d + h (h = 0, 1) of the eight rows of word vector t, widened. */
static inline __attribute__((always_inline)) __m256 half_col8(qt_src_type T, __m256i t, int h)
{
    if (T == QT_SRC_BF16)
        return _mm256_castsi256_ps(h ? _mm256_and_si256(t, _mm256_set1_epi32((int)0xffff0000u))
                                     : _mm256_slli_epi32(t, 16));
    /* fp16: the eight halves packed into 128 bits, then widened */
    const __m256i v = h ? _mm256_srli_epi32(t, 16) : _mm256_and_si256(t, _mm256_set1_epi32(0xffff));
    const __m256i p = _mm256_packus_epi32(v, v); /* lanes 0-3, 0-3 | 4-7, 4-7 */
    return _mm256_cvtph_ps(_mm256_castsi256_si128(_mm256_permute4x64_epi64(p, 0x08)));
}

/* Rows 0-7 and 8-15 of a group (ng present, the others repeat row 0; rows
 * ld bytes apart from base) at byte off, 32 bytes each, transposed as
 * 32-bit words: r[d] (rows 0-7), q[d] (rows 8-15), lane i = word d of its
 * row. pf: also prefetch 512 bytes ahead of each row. */
static inline __attribute__((always_inline)) void load_words8x2(const unsigned char *base,
                                                                size_t ld, size_t ng, size_t off,
                                                                bool pf, __m256 r[8], __m256 q[8])
{
#pragma GCC unroll 8
    for (size_t i = 0; i < 8; i++) {
        const unsigned char *p = base + (i < ng ? i : 0) * ld + off;
        const unsigned char *p2 = base + (8 + i < ng ? 8 + i : 0) * ld + off;
        if (pf) {
            _mm_prefetch((const char *)p + 512, _MM_HINT_NTA);
            _mm_prefetch((const char *)p2 + 512, _MM_HINT_NTA);
        }
        r[i] = _mm256_loadu_ps((const float *)(const void *)p);
        q[i] = _mm256_loadu_ps((const float *)(const void *)p2);
    }
    transpose8(r);
    transpose8(q);
}

/* The chains of 16 rows (ng present, rows ld elements apart from base) over
 * columns [0, n), n a multiple of 16: two vectors of chains, their FMAs
 * interleaved (one chain alone waits on the FMA latency). */
static inline __attribute__((always_inline)) void chains_half16(qt_src_type T,
                                                                const uint16_t *base, size_t ld,
                                                                size_t ng, size_t n,
                                                                const float *x, __m256 acc[2])
{
    for (size_t k = 0; k < n; k += 16) {
        __m256 r[8], q[8];
        load_words8x2((const unsigned char *)base, 2 * ld, ng, 2 * k, (k & 31) == 0, r, q);
#pragma GCC unroll 8
        for (int d = 0; d < 8; d++) {
            const __m256i t = _mm256_castps_si256(r[d]), u = _mm256_castps_si256(q[d]);
            const __m256 x0 = _mm256_set1_ps(x[k + 2 * d]), x1 = _mm256_set1_ps(x[k + 2 * d + 1]);
            acc[0] = _mm256_fmadd_ps(x0, half_col8(T, t, 0), acc[0]);
            acc[1] = _mm256_fmadd_ps(x0, half_col8(T, u, 0), acc[1]);
            acc[0] = _mm256_fmadd_ps(x1, half_col8(T, t, 1), acc[0]);
            acc[1] = _mm256_fmadd_ps(x1, half_col8(T, u, 1), acc[1]);
        }
    }
}

void qt_gemv_half_avx2(const qt_dq_ctx *c, size_t r0, size_t nr, const float *x, float *y)
{
    const qt_qweight *w = c->w;
    const size_t n_in = w->n_in;
    if (n_in % 16) {
        qt_gemv_dq_avx2(c, r0, nr, x, y);
        return;
    }
    const qt_src_type T = w->scheme == QT_SCHEME_BF16 ? QT_SRC_BF16 : QT_SRC_F16;
    for (size_t g = 0; g < nr; g += 16) {
        const size_t ng = nr - g < 16 ? nr - g : 16;
        const uint16_t *base = (const uint16_t *)w->data + (r0 + g) * n_in;
        __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
        if (T == QT_SRC_BF16) chains_half16(QT_SRC_BF16, base, n_in, ng, n_in, x, acc);
        else chains_half16(QT_SRC_F16, base, n_in, ng, n_in, x, acc);
        store_rows(acc, ng, y + g);
    }
}

/* ---- nf4 / fp4 straight from the packed codes ----------------------------
 * As gemv_avx512.c (rows of whole blocks, 16 bytes of a row at a time,
 * row 4L + q in 128-bit lane L of z[q], the in-lane transpose to words t[d]
 * of eight rows), with the 16-entry map as two 8-entry permutes and a blend
 * on bit 3 of the code. */

#define G4_KC 2048 /* columns whose scales are resolved at once (at least a block) */
#define G4_ROWS 16 /* rows per pass: two vectors of chains in flight */

static inline __attribute__((always_inline)) void load_words8(const uint8_t *const rows[8],
                                                              size_t off, __m256i t[4])
{
    __m256i z[4];
#pragma GCC unroll 4
    for (int q = 0; q < 4; q++)
        z[q] = _mm256_loadu2_m128i((const __m128i *)(const void *)(rows[4 + q] + off),
                                   (const __m128i *)(const void *)(rows[q] + off));
    const __m256i a0 = _mm256_unpacklo_epi32(z[0], z[1]), a1 = _mm256_unpackhi_epi32(z[0], z[1]);
    const __m256i b0 = _mm256_unpacklo_epi32(z[2], z[3]), b1 = _mm256_unpackhi_epi32(z[2], z[3]);
    t[0] = _mm256_unpacklo_epi64(a0, b0);
    t[1] = _mm256_unpackhi_epi64(a0, b0);
    t[2] = _mm256_unpacklo_epi64(a1, b1);
    t[3] = _mm256_unpackhi_epi64(a1, b1);
}

/* v rounded as mode says (quant_internal.h, qt_round4) and widened back. */
static inline __attribute__((always_inline)) __m256 round4_8(qt_round4 mode, __m256 v)
{
    if (mode == QT_ROUND4_BF16_INT) {
        const __m256i u = _mm256_castps_si256(v);
        const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
        const __m256i r = _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb);
        return _mm256_castsi256_ps(_mm256_and_si256(r, _mm256_set1_epi32((int)0xffff0000u)));
    }
    if (mode == QT_ROUND4_BF16_SPLIT) {
        const __m256 c = _mm256_mul_ps(v, _mm256_set1_ps(65537.0f));
        return _mm256_sub_ps(c, _mm256_sub_ps(c, v));
    }
    if (mode == QT_ROUND4_F16)
        return _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    return v;
}

/* Code e (0..7) of every lane's word v as its weight: map[code] * s, rounded. */
static inline __attribute__((always_inline)) __m256 weight4_8(qt_round4 mode, __m256i v, int e,
                                                             __m256 map_lo, __m256 map_hi,
                                                             __m256 s)
{
    const int sh = 8 * (e / 2) + 4 * (1 - e % 2);
    const __m256i code = _mm256_srli_epi32(v, sh); /* the permutes read bits 0-2 */
    const __m256 lo = _mm256_permutevar8x32_ps(map_lo, code);
    const __m256 hi = _mm256_permutevar8x32_ps(map_hi, code);
    const __m256 m = _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(code, 28)));
    return round4_8(mode, _mm256_mul_ps(m, s));
}

static inline __attribute__((always_inline)) void chains4_8(qt_round4 mode,
                                                            const uint8_t *const rows[G4_ROWS],
                                                            size_t k0, size_t kc, size_t B,
                                                            const float *sc, const float *x,
                                                            const float map[16], __m256 acc[2])
{
    const __m256 map_lo = _mm256_loadu_ps(map), map_hi = _mm256_loadu_ps(map + 8);
    for (size_t k = k0; k < k0 + kc; k += 32) {
        const float *s = sc + (k - k0) / B * G4_ROWS;
        const __m256 s0 = _mm256_loadu_ps(s), s1 = _mm256_loadu_ps(s + 8);
        if ((k & 127) == 0)
            for (int i = 0; i < G4_ROWS; i++)
                _mm_prefetch((const char *)rows[i] + k / 2 + 128, _MM_HINT_NTA);
        __m256i t0[4], t1[4];
        load_words8(rows, k / 2, t0);
        load_words8(rows + 8, k / 2, t1);
#pragma GCC unroll 4
        for (int d = 0; d < 4; d++)
#pragma GCC unroll 8
            for (int e = 0; e < 8; e++) {
                const __m256 xk = _mm256_set1_ps(x[k + 8 * d + e]);
                acc[0] = _mm256_fmadd_ps(xk, weight4_8(mode, t0[d], e, map_lo, map_hi, s0), acc[0]);
                acc[1] = _mm256_fmadd_ps(xk, weight4_8(mode, t1[d], e, map_lo, map_hi, s1), acc[1]);
            }
    }
}

static bool split_on = true;

void qt_gemv_avx2_bf16_split(bool on)
{
    split_on = on;
}

static bool rows4_8(const qt_dq_ctx *c, qt_src_type rt, size_t r, size_t ng, const float *x,
                    float *y)
{
    const qt_qweight *w = c->w;
    const size_t n_in = w->n_in, B = w->block_size;
    const size_t kc_max = G4_KC < B ? B : G4_KC / B * B;
    _Alignas(32) float sc[G4_ROWS * (G4_KC / 32)];
    const uint8_t *rows[G4_ROWS];
    for (size_t i = 0; i < G4_ROWS; i++)
        rows[i] = (const uint8_t *)w->data + (r + (i < ng ? i : 0)) * (n_in / 2);
    const bool split_map = rt == QT_SRC_BF16 && qt_map_split_ok(c->map4);
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (size_t k0 = 0; k0 < n_in; k0 += kc_max) {
        const size_t kc = n_in - k0 < kc_max ? n_in - k0 : kc_max;
        if (!qt_4bit_scales_rows(c, r, ng, G4_ROWS, k0 / B, kc / B, sc)) return false;
        bool split = split_map && split_on;
        for (size_t i = 0; split && i < G4_ROWS * (kc / B); i++) split = qt_scale_split_ok(sc[i]);
        if (split) chains4_8(QT_ROUND4_BF16_SPLIT, rows, k0, kc, B, sc, x, c->map4, acc);
        else if (rt == QT_SRC_BF16) chains4_8(QT_ROUND4_BF16_INT, rows, k0, kc, B, sc, x, c->map4, acc);
        else if (rt == QT_SRC_F16) chains4_8(QT_ROUND4_F16, rows, k0, kc, B, sc, x, c->map4, acc);
        else chains4_8(QT_ROUND4_NONE, rows, k0, kc, B, sc, x, c->map4, acc);
    }
    store_rows(acc, ng, y);
    return true;
}

void qt_gemv_4bit_avx2(const qt_dq_ctx *c, size_t r0, size_t nr, const float *x, float *y)
{
    const qt_qweight *w = c->w;
    const size_t B = w->block_size;
    const qt_src_type rt = w->round_to;
    /* rows of whole blocks of whole 32-code steps and a rounding this
     * kernel does; anything else: the tile path */
    if (B % 32 || w->n_in % B || B > G4_KC ||
        (rt != QT_SRC_F32 && rt != QT_SRC_BF16 && rt != QT_SRC_F16) || !qt_map_finite(c->map4, 16)) {
        qt_gemv_dq_avx2(c, r0, nr, x, y);
        return;
    }
    for (size_t g = 0; g < nr; g += G4_ROWS) {
        const size_t ng = nr - g < G4_ROWS ? nr - g : G4_ROWS;
        /* a non-finite scale: the tile path (NaN rounding as qt_fp32_to_bf16) */
        if (!rows4_8(c, rt, r0 + g, ng, x, y + g)) qt_gemv_dq_avx2(c, r0 + g, ng, x, y + g);
    }
}

/* ---- LLM.int8 and q8 (GGUF Q8_0) straight from the int8 codes ------------
 * As gemv_avx512.c: int8 rows (n_in a multiple of 32) as eight rows' 32
 * bytes transposed as words; q8 rows 16 codes at a time per block through
 * load_words8. */

/* Byte j (0..3) of every lane's word v, sign-extended, as fp32. */
static inline __attribute__((always_inline)) __m256 byte_col8(__m256i v, int j)
{
    const __m256i s = j == 3 ? v : _mm256_slli_epi32(v, 24 - 8 * j);
    return _mm256_cvtepi32_ps(_mm256_srai_epi32(s, 24));
}

void qt_gemv_int8_avx2(const qt_dq_ctx *c, size_t r0, size_t nr, const float *x, float *y)
{
    const qt_qweight *w = c->w;
    const size_t n_in = w->n_in;
    if (n_in % 32) {
        qt_gemv_dq_avx2(c, r0, nr, x, y);
        return;
    }
    const __m256 inv127 = _mm256_set1_ps(7.874015718698502e-3f); /* as range_int8 */
    for (size_t g = 0; g < nr; g += 16) { /* two vectors of chains, interleaved */
        const size_t ng = nr - g < 16 ? nr - g : 16;
        _Alignas(32) float scb[16];
        for (size_t i = 0; i < 16; i++) scb[i] = qt_ldf(w->scb, r0 + g + (i < ng ? i : 0));
        const __m256 s0 = _mm256_load_ps(scb), s1 = _mm256_load_ps(scb + 8);
        const int8_t *base = (const int8_t *)w->data + (r0 + g) * n_in;
        __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
        for (size_t k = 0; k < n_in; k += 32) {
            __m256 r[8], q[8];
            load_words8x2((const unsigned char *)base, n_in, ng, k, (k & 63) == 0, r, q);
#pragma GCC unroll 8
            for (int d = 0; d < 8; d++)
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++) {
                    const __m256 xk = _mm256_set1_ps(x[k + 4 * d + j]);
                    const __m256 v0 = byte_col8(_mm256_castps_si256(r[d]), j);
                    const __m256 v1 = byte_col8(_mm256_castps_si256(q[d]), j);
                    acc[0] = _mm256_fmadd_ps(xk, _mm256_mul_ps(_mm256_mul_ps(v0, s0), inv127), acc[0]);
                    acc[1] = _mm256_fmadd_ps(xk, _mm256_mul_ps(_mm256_mul_ps(v1, s1), inv127), acc[1]);
                }
        }
        store_rows(acc, ng, y + g);
    }
}

void qt_gemv_q8_avx2(const qt_dq_ctx *c, size_t r0, size_t nr, const float *x, float *y)
{
    const qt_qweight *w = c->w;
    const size_t n_in = w->n_in, B = w->block_size;
    if (n_in % B) {
        qt_gemv_dq_avx2(c, r0, nr, x, y);
        return;
    }
    const size_t bb = qt_q8_block_bytes(B), hdr = B == 32 ? 2 : 4, row_bytes = n_in / B * bb;
    for (size_t g = 0; g < nr; g += 16) {
        const size_t ng = nr - g < 16 ? nr - g : 16;
        const uint8_t *rows[16];
        for (size_t i = 0; i < 16; i++)
            rows[i] = (const uint8_t *)w->data + (r0 + g + (i < ng ? i : 0)) * row_bytes;
        __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
        for (size_t b = 0; b < n_in / B; b++) {
            __m256 d0, d1; /* the 16 rows' block scales (fp16 widened exactly) */
            if (B == 32) {
                _Alignas(32) uint16_t h[16];
                for (size_t i = 0; i < 16; i++) h[i] = qt_load_le16(rows[i] + b * bb);
                d0 = _mm256_cvtph_ps(_mm_load_si128((const __m128i *)(const void *)h));
                d1 = _mm256_cvtph_ps(_mm_load_si128((const __m128i *)(const void *)(h + 8)));
            } else {
                _Alignas(32) float d[16];
                for (size_t i = 0; i < 16; i++) d[i] = qt_ldf(rows[i] + b * bb, 0);
                d0 = _mm256_load_ps(d);
                d1 = _mm256_load_ps(d + 8);
            }
            for (size_t k = 0; k < B; k += 16) {
                const size_t off = b * bb + hdr + k;
                __m256i t0[4], t1[4];
                load_words8(rows, off, t0);
                load_words8(rows + 8, off, t1);
#pragma GCC unroll 4
                for (int q = 0; q < 4; q++)
#pragma GCC unroll 4
                    for (int j = 0; j < 4; j++) {
                        const __m256 xk = _mm256_set1_ps(x[b * B + k + 4 * q + j]);
                        acc[0] = _mm256_fmadd_ps(xk, _mm256_mul_ps(byte_col8(t0[q], j), d0), acc[0]);
                        acc[1] = _mm256_fmadd_ps(xk, _mm256_mul_ps(byte_col8(t1[q], j), d1), acc[1]);
                    }
            }
        }
        store_rows(acc, ng, y + g);
    }
}
