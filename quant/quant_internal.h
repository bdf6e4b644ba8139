/* quant/quant_internal.h: helpers shared by the quant/ kernels (quant/ and
 * its tests only): unaligned element loads and the per-ISA kernel tables. */
#ifndef QT_QUANT_INTERNAL_H
#define QT_QUANT_INTERNAL_H

#include <math.h>
#include <string.h>

#include "common/half.h"
#include "quant/quant.h"

extern const qt_kernels qt_kernels_ref;
extern const qt_kernels qt_kernels_avx2;
extern const qt_kernels qt_kernels_avx512;
extern const qt_kernels qt_kernels_neon;

/* Element i of a tensor of type t, widened exactly to float32. */
static inline float qt_ld(qt_src_type t, const void *src, size_t i)
{
    const unsigned char *p = src;
    switch (t) {
    case QT_SRC_F16: {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        return qt_fp16_to_fp32(h);
    }
    case QT_SRC_BF16: {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        return qt_bf16_to_fp32(h);
    }
    default: {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    }
}

/* Float32 i of an unaligned array. */
static inline float qt_ldf(const void *p, size_t i)
{
    float f;
    memcpy(&f, (const unsigned char *)p + 4 * i, 4);
    return f;
}

/* |x| as max accumulator step: NaN never wins (m starts at 0). */
static inline float qt_absmax_step(float m, float x)
{
    float a = fabsf(x);
    return a > m ? a : m;
}

/* 1/m as the target computes it: correctly rounded (rcp NULL) or the
 * GPU's reciprocal (quant/cuda.c). */
static inline float qt_recip(const uint8_t *rcp, float m)
{
    return rcp ? qt_cuda_rcp(rcp, m) : 1.0f / m;
}

/* A float32 result on the GPU with --use_fast_math: subnormals are zero. */
static inline float qt_ftz(float x)
{
    return fabsf(x) < 0x1p-126f ? copysignf(0.0f, x) : x;
}

/* --match cuda in the SIMD 4-bit kernels: blocks whose absmax lies outside
 * [2^-116, 2^126) go to the scalar definition. Inside it the reciprocal is
 * a normal float and a subnormal x scales below 2^-10, where flushing it
 * changes no NF4 code and only the FP4 sign (handled: an element counts as
 * negative when both x and x * r are <= -2^-126). */
static inline bool qt_cuda_simd_ok(float m)
{
    return m >= 0x1p-116f && m < 0x1p126f;
}
#define QT_CUDA_NEG_BELOW (-0x1.fffffcp-127f) /* x < this <=> x <= -2^-126 */

/* Element i of a tensor of type t rounded to fp16 (LLM.int8's cast; exact
 * for fp16 input). */
static inline float qt_half_value(qt_src_type t, const void *src, size_t i)
{
    if (t == QT_SRC_F16) return qt_ld(t, src, i);
    return qt_fp16_to_fp32(qt_fp32_to_fp16(qt_ld(t, src, i)));
}

/* LLM.int8's code of the scaled value v: round half to even, NaN -> 0,
 * saturated at +-127 (the scalar tail of every ISA). */
static inline int8_t qt_int8_code(float v)
{
    if (v != v) return 0;
    v = nearbyintf(v); /* default rounding mode: nearest, ties to even */
    return (int8_t)(v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v);
}

/* The body of a SIMD 4-bit kernel qt_kernels.quant4 (kernels_avx2.c,
 * kernels_avx512.c; both define a q4tab, its init q4tab_init(fp4, &tab) and
 * an always_inline quant4_t): builds the code tables, runs quant4_t over the
 * whole blocks once per (scheme, source type) as constants, so that its
 * branches fold away, and the partial last block through _ref. */
#define QT_QUANT4_SIMD_BODY(fp4, t, src, n, block, rcp, codes, absmax)                       \
    do {                                                                                     \
        const unsigned char *s_ = (src);                                                     \
        size_t nf_ = (n) / (block);                                                          \
        q4tab tb_;                                                                           \
        memset(&tb_, 0, sizeof tb_);                                                         \
        if ((block) % 32 || !q4tab_init((fp4), &tb_)) nf_ = 0; /* (never) all scalar */      \
        if (fp4) {                                                                           \
            if ((t) == QT_SRC_BF16) quant4_t(true, QT_SRC_BF16, s_, nf_, block, &tb_, rcp, codes, absmax); \
            else if ((t) == QT_SRC_F16) quant4_t(true, QT_SRC_F16, s_, nf_, block, &tb_, rcp, codes, absmax); \
            else quant4_t(true, QT_SRC_F32, s_, nf_, block, &tb_, rcp, codes, absmax);       \
        } else {                                                                             \
            if ((t) == QT_SRC_BF16) quant4_t(false, QT_SRC_BF16, s_, nf_, block, &tb_, rcp, codes, absmax); \
            else if ((t) == QT_SRC_F16) quant4_t(false, QT_SRC_F16, s_, nf_, block, &tb_, rcp, codes, absmax); \
            else quant4_t(false, QT_SRC_F32, s_, nf_, block, &tb_, rcp, codes, absmax);      \
        }                                                                                    \
        if (nf_ * (block) < (n))                                                             \
            qt_quant4_ref((fp4), (t), s_ + nf_ * (block) * qt_src_size(t), (n) - nf_ * (block), \
                          (block), (rcp), (codes) + nf_ * (block) / 2, (absmax) + nf_);      \
    } while (0)

/* Scalar definitions shared with the SIMD files for their tails. */
uint8_t qt_nf4_code(float xn);
uint8_t qt_fp4_code(float xn);
uint8_t qt_dq8_code(const float map[256], float xn); /* dQuantize<0> */
int8_t qt_q8_round(float v);                         /* roundf, NaN -> 0 */

/* The ref kernels (also used by SIMD tables for what they do not vectorize). */
void qt_quant4_ref(bool fp4, qt_src_type t, const void *src, size_t n, size_t block,
                   const uint8_t *rcp, uint8_t *codes, float *absmax);
void qt_dequant4_ref(const uint8_t *codes, size_t i0, size_t len, const float map[16],
                     float scale, float *dst);
void qt_q8_quant_ref(qt_src_type t, const void *src, size_t n, size_t block, void *dst);
void qt_int8_quant_row_ref(qt_src_type t, const void *src, size_t n_cols, const uint8_t *rcp,
                           int8_t *cb, float *scb);
void qt_blockwise8_quant_ref(qt_src_type t, const void *src, size_t n, size_t block,
                             const float map[256], const uint8_t *rcp, uint8_t *codes,
                             float *absmax);
void qt_dot_tile_ref(const float *x, size_t ldx, size_t n_tok, const float *w, size_t ldw,
                     size_t n_rows, size_t n, float *y, size_t ldy);

/* ---- fast exact dQuantize<0> over qt_dynamic_map (double quantization) ----
 * For a non-NaN xn, qt_dq8_code(qt_dynamic_map, xn) is the nearest-entry
 * search, monotone in xn: it equals #{k < 255 : xn > P[k]} where P[k] is the
 * last float that still codes k (the float midpoint of map[k], map[k+1] or
 * the float below it, depending on the tie side). NaN codes 0. The table
 * splits |xn| by its float bits (exponent and 6 mantissa bits: 64 buckets per
 * octave, octaves 2^-24 .. 2^3, clamped at both ends), per sign, so that a
 * bucket holds at most one boundary T (+inf if none):
 * code = base[b] + (xn > T[b]). */
#define QT_DQ8_KMIN (103u << 6) /* bits >> 17 of 2^-24 */
#define QT_DQ8_NBK (27 * 64)    /* buckets per sign: 2^-24 .. 2^3 */
typedef struct qt_dq8_tab {
    float t[2 * QT_DQ8_NBK];      /* [0, NBK): xn >= +0, [NBK, 2 NBK): sign bit set */
    int32_t base[2 * QT_DQ8_NBK];
    float bound[255];             /* P[k] */
} qt_dq8_tab;

/* Builds the table from qt_dq8_code (a few microseconds). false if a bucket
 * would hold two boundaries (never for qt_dynamic_map; tests check). */
bool qt_dq8_tab_init(qt_dq8_tab *tab);

/* One nested block of double quantization, like qt_dq_quantize_with_offset
 * for absmax[0..len), len <= QT_DQ_BLOCK: codes[0..len), *nested. */
void qt_dq_block_ref(const float *absmax, size_t len, float offset, const uint8_t *rcp,
                     uint8_t *codes, float *nested);
/* The same through k's blockwise8 kernel (the ref one above uses the ref kernel). */
void qt_dq_block_with(const qt_kernels *k, const float *absmax, size_t len, float offset,
                      const uint8_t *rcp, uint8_t *codes, float *nested);
#if defined(__x86_64__)
void qt_dq_block_avx2(const qt_dq8_tab *tab, const float *absmax, size_t len, float offset,
                      uint8_t *codes, float *nested);
void qt_dq_block_avx512(const qt_dq8_tab *tab, const float *absmax, size_t len, float offset,
                        uint8_t *codes, float *nested);
#endif

/* ---- absmax scan (scan.c; driver qt_absmax_scan in driver.c) ----------- */
/* Blocks [b0, b1) of the n values of src (type t, blocks of `block`):
 * absmax[b] (may be NULL) = max |x| of block b; true when one holds NaN or
 * Inf. */
bool qt_absmax_blocks_ref(qt_src_type t, const void *src, size_t n, size_t block, size_t b0,
                          size_t b1, float *absmax);

/* ---- matmul internals (matmul.c, driver.c, kernels_*.c) -------------------
 *
 * qt_matmul on AVX2 / AVX-512 is a packed GEMM: for a tile of output rows
 * (weight rows) and a block of kc input columns, the rows are dequantized
 * (qt_dq_range, bit-identical on every ISA) and transposed into K-major
 * micro-panels of nr rows (panel[k * nr + j] = W[o0 + j][k0 + k], rows past
 * the end zero), then a register-blocked kernel computes mr tokens x nr
 * outputs with FMA accumulators, continuing from y for every block after
 * the first. Per output element the summation is therefore ONE order,
 *     y = 0; for k = 0 .. n_in-1: y = fmaf(x[k], w[k], y)
 * whatever the tiling, the token count or the threads (AVX2 and AVX-512
 * give the same bits). The ref ISA keeps dot_tile (a mul + add chain). */
typedef struct qt_mm_ops {
    size_t nr; /* outputs per micro-panel (0 = no packed GEMM: use dot_tile) */
    size_t mr; /* tokens per register block */
    /* dst[i] = f32 value of bf16 (bf16) or fp16 src[i], i < n; src unaligned */
    void (*cvt_half)(bool bf16, const void *src, size_t n, float *dst);
    /* dst[i] = f32(f32((float)q[i] * s) * c), i < n */
    void (*cvt_i8)(const int8_t *q, size_t n, float s, float c, float *dst);
    /* dst[i] = f32(map[code[i]] * a), i < n */
    void (*cvt_map8)(const uint8_t *code, size_t n, const float map[256], float a, float *dst);
    /* panel[k * nr + j] = rows[j * ld + k] (floats at any float-or-byte
     * alignment) for j < n_rows (<= nr), k < kc; 0 for n_rows <= j < nr.
     * panel 64-byte aligned. */
    void (*pack)(const void *rows, size_t ld, size_t n_rows, size_t kc, float *panel);
    /* pack of bf16 (bf16) or fp16 rows, widened exactly (the values of
     * cvt_half); NULL: cvt_half then pack */
    void (*pack_half)(bool bf16, const void *rows, size_t ld, size_t n_rows, size_t kc,
                      float *panel);
    /* y[t * ldy + o] for t < n_tok, o < nc (<= n_pan * nr): continues the
     * chain over k < kc with x[t * ldx + k] and the n_pan consecutive
     * micro-panels of kc x nr (from y when acc, else from +0). */
    void (*gemm)(const float *x, size_t ldx, size_t n_tok, const float *panels, size_t n_pan,
                 size_t kc, size_t nc, float *y, size_t ldy, bool acc);
} qt_mm_ops;

extern const qt_mm_ops qt_mm_ops_ref;
#if defined(__x86_64__)
extern const qt_mm_ops qt_mm_ops_avx2;
extern const qt_mm_ops qt_mm_ops_avx512;
#endif
/* The ops of kernels k (ref ops, nr = 0, for ISAs without a packed GEMM). */
const qt_mm_ops *qt_mm_ops_for(const qt_kernels *k);

/* Everything qt_dq_range needs about one weight, resolved once (maps copied
 * out of possibly unaligned storage). Read-only once built: threads share it. */
typedef struct qt_dq_ctx {
    const qt_qweight *w;
    const qt_kernels *k;
    const qt_mm_ops *ops;
    float map4[16];
    float nmap[256];   /* double-quant nested map */
    float map8[256];   /* int8-blockwise map */
} qt_dq_ctx;

void qt_dq_ctx_init(qt_dq_ctx *c, const qt_kernels *k, const qt_qweight *w);
/* Flat elements [i0, i0+len) of the weight into dst (spec §5 arithmetic,
 * bit-identical on every ISA). */
void qt_dq_range(const qt_dq_ctx *c, size_t i0, size_t len, float *dst);
/* Prefetches the stored bytes of flat elements [i0, i0+len) (the codes or
 * values, not the scales): the GEMM reads many rows a block at a time, more
 * streams than the hardware prefetchers follow. */
void qt_dq_prefetch(const qt_dq_ctx *c, size_t i0, size_t len);

/* scalar definitions of the qt_mm_ops conversions */
void qt_cvt_half_ref(bool bf16, const void *src, size_t n, float *dst);
void qt_cvt_i8_ref(const int8_t *q, size_t n, float s, float c, float *dst);
void qt_cvt_map8_ref(const uint8_t *code, size_t n, const float map[256], float a, float *dst);

#endif
