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

/* LLM.int8's SCB of an fp16 / bf16 row from top, the bits of its largest
 * magnitude (an unsigned 16-bit max of (bits & 0x7fff), which orders the
 * magnitudes like their values and puts NaN above them): rounding to fp16
 * is monotone and symmetric, so the max of the rounded values is the
 * rounded max. Returns false, leaving *scb, when the row holds NaN (the
 * SIMD kernels then take the float max, which ignores NaN). */
static inline bool qt_int8_scb_of_top(qt_src_type t, uint16_t top, float *scb)
{
    if (top > (t == QT_SRC_BF16 ? 0x7f80 : 0x7c00)) return false;
    *scb = t == QT_SRC_F16 ? qt_fp16_to_fp32(top)
                           : qt_fp16_to_fp32(qt_fp32_to_fp16(qt_bf16_to_fp32(top)));
    return true;
}

/* Whether the codes of a NaN-free row with SCB m and this scale need
 * neither a NaN mask nor a clamp: every |f32(x16 * scale)| is at most
 * f32(m * scale) (rounding is monotone), which then rounds into
 * [-127, 127]. */
static inline bool qt_int8_no_clamp(float m, float scale)
{
    return m < INFINITY && m * scale < 127.5f;
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

/* Prefetch (into L1) the cache lines of [p, p + bytes): the SIMD quantize
 * kernels ask for the group of blocks after the current one while they code
 * it, so that the memory reads overlap the arithmetic (without it, pass 2
 * of a group left no read in flight: fp32 AVX-512 NF4 ran at half the copy
 * bandwidth). A prefetch past the end of the input never faults. */
static inline void qt_prefetch_ahead(const void *p, size_t bytes)
{
    for (size_t b = 0; b < bytes; b += 64) __builtin_prefetch((const char *)p + b, 0, 3);
}

/* A q8 block's scale written at blk (block 32, GGUF Q8_0: h, the fp16 bits
 * of d; other blocks: the float d); returns where its codes go. */
static inline int8_t *qt_q8_block_head(unsigned char *blk, size_t block, float d, uint16_t h)
{
    if (block == 32) memcpy(blk, &h, 2);
    else memcpy(blk, &d, 4);
    return (int8_t *)(blk + (block == 32 ? 2 : 4));
}

/* The body of a SIMD q8 kernel qt_kernels.q8_quant (kernels_avx2.c,
 * kernels_avx512.c; both define q8_group(t, p, block, cnt, out) over
 * cnt <= group whole blocks, block a multiple of 32): the whole blocks in
 * groups, one specialization per source type, the rest through _ref. */
#define QT_Q8_SIMD_BODY(t, src, n, block, dst, group)                                          \
    do {                                                                                       \
        const unsigned char *s_ = (const unsigned char *)(src);                                \
        unsigned char *o_ = (unsigned char *)(dst);                                            \
        const size_t es_ = qt_src_size(t), bb_ = qt_q8_block_bytes(block);                     \
        const size_t nf_ = (block) % 32 ? 0 : (n) / (block);                                   \
        for (size_t g_ = 0; g_ < nf_; g_ += (group)) {                                         \
            const int c_ = nf_ - g_ < (group) ? (int)(nf_ - g_) : (group);                     \
            const unsigned char *p_ = s_ + g_ * (block) * es_;                                 \
            unsigned char *q_ = o_ + g_ * bb_;                                                 \
            if ((t) == QT_SRC_BF16) q8_group(QT_SRC_BF16, p_, block, c_, q_);                  \
            else if ((t) == QT_SRC_F16) q8_group(QT_SRC_F16, p_, block, c_, q_);               \
            else q8_group(QT_SRC_F32, p_, block, c_, q_);                                      \
        }                                                                                      \
        if (nf_ * (block) < (n))                                                               \
            qt_q8_quant_ref(t, s_ + nf_ * (block) * es_, (n) - nf_ * (block), block,           \
                            o_ + nf_ * bb_);                                                   \
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
void qt_lora_merge_row_ref(float *w, size_t n, const float *b, size_t r, const float *a,
                           float s);
void qt_lora_merge_row_avx2(float *w, size_t n, const float *b, size_t r, const float *a,
                            float s);
void qt_lora_merge_row_avx512(float *w, size_t n, const float *b, size_t r, const float *a,
                              float s);
/* Attention (quant/attn.c) and its exponential: v[i] = e^(v[i] - mx) for
 * v[i] <= mx, Cephes expf arithmetic (x = k ln2 + r, ln2 in two parts,
 * e^r = 1 + r + r^2 P(r) with degree-5 P, times 2^k), separate multiplies
 * and adds, about 1 ulp; arguments below QT_ATTN_EXP_MIN give 0. */
#define QT_ATTN_EXP_MIN -87.0f      /* e^-87 = 1.6e-38, still normal */
#define QT_ATTN_LOG2E 1.44269504088896341f
#define QT_ATTN_RND 12582912.0f     /* 1.5 * 2^23: adding it rounds to an integer */
#define QT_ATTN_LN2_HI 0.693359375f
#define QT_ATTN_LN2_LO -2.12194440e-4f
#define QT_ATTN_P0 1.9875691500e-4f
#define QT_ATTN_P1 1.3981999507e-3f
#define QT_ATTN_P2 8.3334519073e-3f
#define QT_ATTN_P3 4.1665795894e-2f
#define QT_ATTN_P4 1.6666665459e-1f
#define QT_ATTN_P5 5.0000001201e-1f
void qt_attn_exp8(float v[8], float mx);
/* The score of key p: (q . key p) * scale in the order of quant/attn.c. */
float qt_attn_score_ref(const float *q, const float *kt, size_t ldk, size_t hd, size_t p,
                        float scale);
void qt_attn_ref(const qt_attn_job *j);
void qt_attn_avx2(const qt_attn_job *j);
void qt_attn_avx512(const qt_attn_job *j);
void qt_dot_tile_ref(const float *x, size_t ldx, size_t n_tok, const float *w, size_t ldw,
                     size_t n_rows, size_t n, float *y, size_t ldy);

/* ---- the dot_tile tiling shared by the SIMD ISAs -------------------------
 * blk(x, ldx, NT, w, ldw, NR, n, y, ldy): the dots of NT <= 2 token rows
 * with NR <= 4 weight rows, each element in the ISA's one fixed order
 * (independent of NT, NR). The tiling: 4 rows x 2 tokens, then 4 rows x 1
 * token, then single rows. Both blk and this inline into the ISA's
 * dot_tile, so the block sizes stay constants. */
typedef void (*qt_dot_block_fn)(const float *x, size_t ldx, int NT, const float *w, size_t ldw,
                                int NR, size_t n, float *y, size_t ldy);
static inline __attribute__((always_inline)) void qt_dot_tile_by_blocks(
    qt_dot_block_fn blk, const float *x, size_t ldx, size_t n_tok, const float *w, size_t ldw,
    size_t n_rows, size_t n, float *y, size_t ldy)
{
    size_t r = 0;
    for (; r + 4 <= n_rows; r += 4) {
        size_t t = 0;
        for (; t + 2 <= n_tok; t += 2)
            blk(x + t * ldx, ldx, 2, w + r * ldw, ldw, 4, n, y + t * ldy + r, ldy);
        for (; t < n_tok; t++) blk(x + t * ldx, ldx, 1, w + r * ldw, ldw, 4, n, y + t * ldy + r, ldy);
    }
    for (; r < n_rows; r++)
        for (size_t t = 0; t < n_tok; t++)
            blk(x + t * ldx, ldx, 1, w + r * ldw, ldw, 1, n, y + t * ldy + r, ldy);
}

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
/* The mean's exact sum (quant/dq.c) on AVX2 when every value is finite and
 * not negative and the nonzero ones span at most QT_DQ_MEAN_WIN binades
 * from their smallest exponent e0 (biased, >= 1, e0 + 32 < 255): adds the
 * sum of the significands shifted to e0 to se[e0] (low 32 bits) and
 * se[e0 + 32] (high 32 bits); returns false, touching nothing, otherwise. */
#define QT_DQ_MEAN_WIN 24
bool qt_dq_mean_sum_avx2(const float *v, size_t n, uint64_t se[256]);
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
typedef struct qt_dq_ctx qt_dq_ctx;

/* The fused decoding hook of one scheme on one ISA (quant.h, "adding a
 * scheme"): y[j] for j < nr = the dot of stored row r0 + j with x (n_in,),
 * bit-identical to qt_dot_rows_ref over the rows qt_dq_range gives, i.e.
 *     y = +0.0f; for k = 0 .. n_in-1: y = fmaf(x[k], W[r0+j][k], y)
 * Single thread, no allocation; the driver splits rows across threads. */
typedef void (*qt_dot_rows_fn)(const qt_dq_ctx *c, size_t r0, size_t nr, const float *x,
                               float *y);

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
    /* fused decoding dot per scheme (one token); NULL = dequantize the rows
     * and run the packed GEMM (the same bits) */
    qt_dot_rows_fn dot_rows[QT_SCHEME_COUNT];
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
struct qt_dq_ctx {
    const qt_qweight *w;
    const qt_kernels *k;
    const qt_mm_ops *ops;
    const qt_scheme_ops *so; /* the weight's scheme hooks */
    const qt_half_kernels *hk; /* row conversions of k's ISA (w->round_to) */
    const qt_scheme_info *si;  /* GGML block types: the scheme's row */
    const qt_blk_ops *blk;     /* GGML block types: k's ISA's ops, else _ref's */
    float map4[16];
    float nmap[256];   /* double-quant nested map */
    float map8[256];   /* int8-blockwise map */
};

/* ---- the stored-weight hooks of a scheme (quant.h, "adding a scheme") -----
 * One row per scheme, named by its qt_scheme_info row (quant/scheme.c);
 * the built-in ones are in quant/weights.c. Every hook is single-threaded,
 * allocation-free and reads w's borrowed (maybe unaligned) pointers only. */
struct qt_scheme_ops {
    /* what w needs beyond the common checks of qt_qweight_check (non-NULL
     * data, non-zero sizes without overflow): QT_OK or QT_ERR_ARG */
    qt_status (*check)(const qt_qweight *w);
    /* resolves what every range needs once (maps) into c; NULL = nothing */
    void (*init)(qt_dq_ctx *c);
    /* flat elements [i0, i0+len) of w as fp32 into dst: the scheme's exact
     * dequantization, bit-identical on every ISA (it may use c->k / c->ops
     * conversions, which are) */
    void (*dq_range)(const qt_dq_ctx *c, size_t i0, size_t len, float *dst);
    /* the bytes of w->data holding flat elements [i0, i0+len), len > 0:
     * [*b0, *b1) (scales excluded); used for prefetching only */
    void (*byte_range)(const qt_qweight *w, size_t i0, size_t len, size_t *b0, size_t *b1);
    /* bytes of the scales and other companions a full pass reads beyond
     * byte_range of every element; NULL = none (e.g. q8: scales in blocks) */
    uint64_t (*scale_bytes)(const qt_qweight *w);
};

extern const qt_scheme_ops qt_ops_4bit;       /* nf4, fp4 */
extern const qt_scheme_ops qt_ops_blockwise8; /* int8-blockwise */
extern const qt_scheme_ops qt_ops_q8;
extern const qt_scheme_ops qt_ops_int8;       /* LLM.int8 row-wise */
extern const qt_scheme_ops qt_ops_half;       /* bf16, fp16 */
extern const qt_scheme_ops qt_ops_f32;
extern const qt_scheme_ops qt_ops_blk;        /* GGML block types q4_0 .. q6_k */

/* y[j] = +0 fma chain of x with rows[j * n_in ..] (n_in), j < nr: the
 * definition every fused dot_rows kernel reproduces bit for bit. */
void qt_dot_rows_ref(const float *rows, size_t n_in, size_t nr, const float *x, float *y);

void qt_dq_ctx_init(qt_dq_ctx *c, const qt_kernels *k, const qt_qweight *w);
/* Flat elements [i0, i0+len) of the weight into dst (spec §5 arithmetic,
 * bit-identical on every ISA). */
void qt_dq_range(const qt_dq_ctx *c, size_t i0, size_t len, float *dst);
/* Prefetches the stored bytes of flat elements [i0, i0+len) (the codes or
 * values, not the scales): the GEMM reads many rows a block at a time, more
 * streams than the hardware prefetchers follow. */
void qt_dq_prefetch(const qt_dq_ctx *c, size_t i0, size_t len);

/* True when the n values of map are finite: the fused 4-bit dots round
 * finite products only (a file's quant_map may hold NaN or Inf). */
static inline bool qt_map_finite(const float *map, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!(map[i] - map[i] == 0.0f)) return false;
    return true;
}

/* How the fused 4-bit dots round a product map[code] * scale to the stored
 * dtype (w->round_to). bf16 has two exact ways: the integer nearest-even
 * of qt_fp32_to_bf16 (any finite value), and, for products whose magnitude
 * is 0 or in [2^-100, 2^101) (checked exhaustively over every fp32 of that
 * range: the same bits), Veltkamp's split: c = v * (2^16 + 1), v' = c - (c
 * - v), three float operations instead of five integer ones; AVX-512 with
 * AVX512_BF16 instead rounds two vectors with one vcvtne2ps2bf16, exact for
 * normal products. The split and vcvtne2ps2bf16 are used only where every
 * map value is 0 or in [QT_SPLIT_MAP_MIN, QT_SPLIT_MAP_MAX] in magnitude and
 * every scale of the columns 0 or in [QT_SPLIT_SCALE_MIN,
 * QT_SPLIT_SCALE_MAX] (products within [2^-90, 2^100]). */
typedef enum qt_round4 {
    QT_ROUND4_NONE,      /* fp32: the product itself */
    QT_ROUND4_F16,       /* vcvtps2ph, nearest even */
    QT_ROUND4_BF16_INT,  /* integer nearest even */
    QT_ROUND4_BF16_SPLIT /* Veltkamp's split (or vcvtne2ps2bf16) */
} qt_round4;
#define QT_SPLIT_MAP_MIN 0x1p-20f
#define QT_SPLIT_MAP_MAX 0x1p10f
#define QT_SPLIT_SCALE_MIN 0x1p-70f
#define QT_SPLIT_SCALE_MAX 0x1p90f

/* The split's condition on the 16 map values (finite ones). */
static inline bool qt_map_split_ok(const float *map)
{
    for (int i = 0; i < 16; i++) {
        const float a = map[i] < 0.0f ? -map[i] : map[i];
        if (!(a == 0.0f || (a >= QT_SPLIT_MAP_MIN && a <= QT_SPLIT_MAP_MAX))) return false;
    }
    return true;
}

/* The split's condition on a scale. */
static inline bool qt_scale_split_ok(float s)
{
    const float a = s < 0.0f ? -s : s;
    return a == 0.0f || (a >= QT_SPLIT_SCALE_MIN && a <= QT_SPLIT_SCALE_MAX);
}

/* The first-level scales of 4-bit weight c->w (nf4 / fp4, rows of whole
 * blocks: n_in % block_size == 0) for the fused decoding dots: dst[b * rows
 * + i] = the scale of block b0 + b of row r0 + i (spec §5, double quant
 * included: the value qt_dq_range multiplies by), b < nb, i < rows; lanes
 * i >= nr repeat row r0. False when a scale is NaN or Inf. */
bool qt_4bit_scales_rows(const qt_dq_ctx *c, size_t r0, size_t nr, size_t rows, size_t b0,
                         size_t nb, float *dst);

/* the fused decoding dots (qt_dot_rows_fn) per ISA (quant/gemv_*.c): plain
 * rows read in place, and "dq" for any scheme through qt_dq_range */
#if defined(__x86_64__)
void qt_gemv_f32_avx512(const qt_dq_ctx *c, size_t r0, size_t nr, const float *x, float *y);
void qt_gemv_bf16_avx512(const qt_dq_ctx *c, size_t r0, size_t nr, const float *x, float *y);
void qt_gemv_f16_avx512(const qt_dq_ctx *c, size_t r0, size_t nr, const float *x, float *y);
void qt_gemv_dq_avx512(const qt_dq_ctx *c, size_t r0, size_t nr, const float *x, float *y);
void qt_gemv_4bit_avx512(const qt_dq_ctx *c, size_t r0, size_t nr, const float *x, float *y);
/* Which bf16 roundings (qt_round4) the AVX-512 4-bit dot may use where
 * their conditions hold: vcvtne2ps2bf16 (CPUs with AVX512_BF16) and the
 * split (default both; tests turn them off to reach the others: all give
 * the same bits). */
void qt_gemv_avx512_bf16_rounding(bool cvt, bool split);
/* The same for the AVX2 4-bit dot's split. */
void qt_gemv_avx2_bf16_split(bool on);
void qt_gemv_int8_avx512(const qt_dq_ctx *c, size_t r0, size_t nr, const float *x, float *y);
void qt_gemv_q8_avx512(const qt_dq_ctx *c, size_t r0, size_t nr, const float *x, float *y);
void qt_gemv_f32_avx2(const qt_dq_ctx *c, size_t r0, size_t nr, const float *x, float *y);
void qt_gemv_dq_avx2(const qt_dq_ctx *c, size_t r0, size_t nr, const float *x, float *y);
void qt_gemv_4bit_avx2(const qt_dq_ctx *c, size_t r0, size_t nr, const float *x, float *y);
void qt_gemv_half_avx2(const qt_dq_ctx *c, size_t r0, size_t nr, const float *x, float *y);
void qt_gemv_int8_avx2(const qt_dq_ctx *c, size_t r0, size_t nr, const float *x, float *y);
void qt_gemv_q8_avx2(const qt_dq_ctx *c, size_t r0, size_t nr, const float *x, float *y);
#endif

/* the peak-FMA probe per ISA (quant/probe*.c) */
#if defined(__x86_64__)
uint64_t qt_fma_burn_avx2(size_t iters, float *sink);
uint64_t qt_fma_burn_avx512(size_t iters, float *sink);
#endif

/* scalar definitions of the qt_mm_ops conversions */
void qt_cvt_half_ref(bool bf16, const void *src, size_t n, float *dst);
void qt_cvt_i8_ref(const int8_t *q, size_t n, float s, float c, float *dst);
void qt_cvt_map8_ref(const uint8_t *code, size_t n, const float map[256], float a, float *dst);

/* ---- GGML block types (ggml_blocks.c, kquants*.c) ---------------------------- */

/* Per-ISA block ops, indexed by qt_scheme (empty rows: not a block type). */
extern const qt_blk_ops qt_blk_ops_ref[QT_SCHEME_COUNT];
#if defined(__x86_64__)
extern const qt_blk_ops qt_blk_ops_avx2[QT_SCHEME_COUNT];
extern const qt_blk_ops qt_blk_ops_avx512[QT_SCHEME_COUNT];
#endif

typedef void (*qt_blk_deq_fn)(const void *blocks, float *y, size_t n);

/* x86 cvttss2si: toward zero, INT32_MIN for NaN / out of range. */
int32_t qt_blk_trunc_i32(float v);
/* fp16 store / load (round to nearest even) at any alignment. */
void qt_blk_put_fp16(unsigned char *p, float v);
float qt_blk_get_fp16(const unsigned char *p);
/* The element of largest |x| among x[0..n), sign kept, the first on a tie
 * (NaN never); *amax (may be NULL) gets its magnitude. */
float qt_blk_signed_extreme(const float *x, int n, float *amax);
/* The dot definition's final reduction of the 16 lane sums. */
float qt_blk_sum16(const float acc[16]);
/* The dot definition with a block dequantizer (blocks of block <= 256). */
float qt_blk_dot_ref(qt_blk_deq_fn deq, size_t block, size_t block_bytes, const void *blocks,
                     const float *x, size_t n);

/* Scalar definitions of the block types (ggml_blocks.c, kquants.c) */
#define QT_KQ_DECLARE(t)                                                        \
    void qt_##t##_quantize_ref(const float *x, void *blocks, size_t n);         \
    void qt_##t##_dequantize_ref(const void *blocks, float *y, size_t n);       \
    float qt_##t##_dot_ref(const void *blocks, const float *x, size_t n);
QT_KQ_DECLARE(q8_0)
QT_KQ_DECLARE(q4_0)
QT_KQ_DECLARE(q4_1)
QT_KQ_DECLARE(q5_0)
QT_KQ_DECLARE(q5_1)
QT_KQ_DECLARE(q2_k)
QT_KQ_DECLARE(q3_k)
QT_KQ_DECLARE(q4_k)
QT_KQ_DECLARE(q5_k)
QT_KQ_DECLARE(q6_k)
#undef QT_KQ_DECLARE
/* The per-super-block tails of the K-quant quantizers after the group fits
 * (shared by the SIMD files): b is the block being written, L (256,) the
 * codes of the fits, updated in place. */
typedef void (*qt_kq_requant_fn)(const float *x, int n, float d, float dm, int lo, int hi,
                                 uint8_t *L);
void qt_kq_requant_ref(const float *x, int n, float d, float dm, int lo, int hi, uint8_t *L);
void qt_kq_finish_k4(const float *x, const float *scales, const float *mins, int nmax,
                     unsigned char *b, uint8_t *L, qt_kq_requant_fn rq);
void qt_kq_q4_k_pack(const uint8_t *L, unsigned char *b);
/* Group j's 6-bit scale *d and min *m from q4_k / q5_k scales[12]. */
void qt_kq_get_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m);
/* Group j's signed scale (-32 .. 31) from q3_k scales[12]. */
int qt_kq_q3_scale(const uint8_t *s, int j);
void qt_kq_q5_k_pack(const uint8_t *L, unsigned char *b);
void qt_kq_q2_k_finish(const float *x, const float *scales, const float *mins, uint8_t *L,
                       unsigned char *b, qt_kq_requant_fn rq);
void qt_kq_q3_k_finish(const float *x, const float *scales, uint8_t *L, unsigned char *b,
                       qt_kq_requant_fn rq);
void qt_kq_q6_k_finish(const float *x, const float *scales, uint8_t *L, unsigned char *b,
                       qt_kq_requant_fn rq);

/* ggml's nearest_int: round through the 1.5 * 2^23 addend (exact for
 * |v| <= 2^22 - 1; other inputs give ggml's same garbage). */
static inline int qt_kq_nearest_int(float v)
{
    float t = v + 12582912.0f;
    int32_t i;
    memcpy(&i, &t, 4);
    return (i & 0x007fffff) - 0x00400000;
}


#endif
