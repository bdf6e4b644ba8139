/*
 * quant/quant.h: the quantization formats of qtool as pure computation on
 * memory: the scheme table, quantize / dequantize kernels and the quantized
 * matrix multiply, bit-exact with bitsandbytes (specs/bnb-format.md) and
 * with GGUF Q8_0.
 *
 * Schemes (one table, qt_scheme_info):
 *   nf4, fp4        4-bit codes, blockwise absmax over the FLATTENED tensor
 *                   (blocks may straddle rows), optional double quantization
 *                   of the absmax (spec §1, §2).
 *   int8-blockwise  8-bit codes into the signed dynamic map, blockwise absmax
 *                   (spec §3.1).
 *   int8            LLM.int8 row-wise: int8 CB [rows, cols] + float SCB [rows]
 *                   (spec §3.2).
 *   q8              per-block symmetric int8 (GGUF Q8_0 at block 32).
 *   bf16/fp16/fp32  plain weights (only as matmul / dequantize inputs).
 *
 * Byte layouts:
 *   4-bit codes     byte k = code[2k] << 4 | code[2k+1] (first element in the
 *                   HIGH nibble); n odd: the last low nibble is the code of a
 *                   padded 0.0 (nf4 7, fp4 0; 0 if that block is all-zero).
 *                   (n+1)/2 bytes, then float32 absmax [ceil(n/B)].
 *   double quant    uint8 codes [nb] into qt_dynamic_map, float32 nested
 *                   absmax [ceil(nb/256)], float32 offset:
 *                   A[j] = f32(f32(map[q[j]] * nested[j/256]) + offset).
 *   q8              qt_q8_block32 (34 bytes, == GGUF block_q8_0) at B = 32,
 *                   else qt_q8_blockf: float d then B int8; every block is
 *                   stored whole (a partial last block is zero-padded).
 *
 * Inputs are read as fp32, fp16 or bf16 (qt_src_type) in place: no fp32 copy
 * of a tensor is made. Input pointers may be unaligned (memory-mapped
 * safetensors data); values are little-endian.
 *
 * What this module does not do: files, JSON, printing, choosing schemes for
 * a model. Kernels never allocate: the size functions below say how much the
 * caller provides. Only qt_matmul and qt_dequantize allocate a small
 * per-thread tile (a few rows), never a dequantized copy of a matrix.
 *
 * Adding a scheme (one table row plus its kernel files; nothing else
 * names schemes):
 *   1. a qt_scheme value (before QT_SCHEME_COUNT) and its row in
 *      quant/scheme.c: name, bits per weight, block sizes, description,
 *      and .ops, the scheme's stored-weight hooks (qt_scheme_ops,
 *      quant_internal.h): check (what a qt_qweight of the scheme needs),
 *      init (resolve maps once, may be NULL), dq_range ("dequantize a flat
 *      range / rows to fp32", exact and bit-identical on every ISA),
 *      byte_range (where a range's bytes lie, for prefetching);
 *   2. optionally, per ISA, a fused decoding kernel: qt_mm_ops.dot_rows
 *      [scheme] in quant/kernels_<isa>.c (or a gemv_<isa>.c it names):
 *      "dot stored rows r0 .. r0+nr-1 with an fp32 vector", which must give
 *      the bits of qt_dot_rows_ref over dq_range's values (one fma chain
 *      per output from +0, k ascending); where it is NULL, qt_matmul
 *      dequantizes the rows and runs the GEMM, with the same bits;
 *   3. its quantize kernels and drivers (if qtool writes the scheme), the
 *      fields of qt_qweight it reads, and tests: dq_range against the spec,
 *      each SIMD path bit for bit against _ref, the fused dot against
 *      qt_dot_rows_ref (tests/unit/test_quant.c loops over the table).
 *
 * Threads: the drivers (qt_*_quantize, qt_dq_quantize, qt_dequantize,
 * qt_matmul) use OpenMP when built with it; their results are bit-identical
 * whatever the thread count. Quantized bytes are bit-identical on every ISA;
 * dequantize is bit-identical too; matmul differs between ISAs only by the
 * summation order of the dot products (each output element has one fixed
 * order per ISA). Everything is thread-safe; the only global state is the
 * constant dispatch tables.
 */
#ifndef QT_QUANT_H
#define QT_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "common/cpu.h"

/* ---- schemes ----------------------------------------------------------- */

typedef enum qt_scheme {
    QT_SCHEME_NF4 = 0,
    QT_SCHEME_FP4,
    QT_SCHEME_INT8,           /* LLM.int8 row-wise */
    QT_SCHEME_Q8,             /* per-block symmetric int8 */
    QT_SCHEME_INT8_BLOCKWISE, /* dynamic-map 8-bit, blockwise */
    QT_SCHEME_BF16,
    QT_SCHEME_FP16,
    QT_SCHEME_FP32,
    /* GGML block types (GGUF), ggml's reference quantizers bit for bit;
     * the q8 row above is GGUF Q8_0 at block 32 */
    QT_SCHEME_Q4_0,
    QT_SCHEME_Q4_1,
    QT_SCHEME_Q5_0,
    QT_SCHEME_Q5_1,
    QT_SCHEME_Q2_K,
    QT_SCHEME_Q3_K,
    QT_SCHEME_Q4_K,
    QT_SCHEME_Q5_K,
    QT_SCHEME_Q6_K,
    QT_SCHEME_COUNT
} qt_scheme;

/* Element type of a tensor read by the kernels. */
typedef enum qt_src_type {
    QT_SRC_F32 = 0,
    QT_SRC_F16,
    QT_SRC_BF16,
    QT_SRC_COUNT
} qt_src_type;

typedef struct qt_scheme_ops qt_scheme_ops; /* opaque outside quant/ */

typedef struct qt_scheme_info {
    const char *name;       /* "nf4", "fp4", "int8", "q8", "int8-blockwise", ... */
    qt_scheme scheme;
    double bits_per_weight; /* storage incl. scales at the default block size
                               (nf4/fp4 with double quantization) */
    size_t default_block;   /* elements; 0 when the scheme has no blocks */
    size_t min_block;       /* allowed block sizes: powers of two in */
    size_t max_block;       /*   [min_block, max_block]; 0 = none */
    const char *description; /* one line, for --help and inspect */
    const struct qt_scheme_ops *ops; /* stored-weight hooks (quant_internal.h);
                                        NULL: not a matmul / dequantize input */
    int gguf_type;          /* ggml_type id in GGUF (F32 0, F16 1, Q8_0 8, ...),
                               -1 when GGUF has no such type */
    size_t block_bytes;     /* GGML block types (q8 at block 32, q4_0 .. q6_k):
                               bytes per block of default_block elements; else 0 */
    unsigned flags;         /* QT_SCHEME_F_*: what the rest of qtool may do with it */
    double calib_threshold; /* default max relative output error of `convert --calib`
                               / `validate` (docs/CALIBRATION.md); 0 = not checked */
} qt_scheme_info;

/* Scheme flags (the table, not the callers, says which list a scheme is on). */
#define QT_SCHEME_F_CONVERT 1u  /* a --scheme of `qtool convert` (quantized or plain) */
#define QT_SCHEME_F_PLAIN 2u    /* an unquantized dtype (bf16 / fp16 / fp32) */
#define QT_SCHEME_F_FALLBACK 4u /* allowed as a calibration --fallback */

/* Adding a scheme: the checklist. One row in quant/scheme.c (name, bits,
 * blocks, description, flags, calibration threshold) plus its kernels
 * (_ref, AVX2, AVX-512 with tests bit-for-bit against _ref, registered in
 * the kernel table) and the size function; quant/qweight_quant.c
 * (qt_qbuf_sizes_of, qt_quantize_weight) for the new case, its .ops hooks
 * for dequantization and qt_matmul (the list at the top of this file;
 * quant/matmul.c has no per-scheme code); formats/bnb.c
 * (qt_bnb_layout_of) if its stored layout is new, or a format in formats/
 * for another file type. The CLI
 * (--scheme, --fallback, --help), calibration reports, inspect and the
 * convert plan read the table and need nothing. */

/* Number of rows in the scheme table. */
size_t qt_scheme_count(void);
/* Row i (i < qt_scheme_count()), or NULL. Borrowed, static. */
const qt_scheme_info *qt_scheme_info_at(size_t i);
/* The row for a scheme enum, or NULL. */
const qt_scheme_info *qt_scheme_get(qt_scheme s);
/* The row named name (exact match), or NULL. */
const qt_scheme_info *qt_scheme_find(const char *name);
/* Whether block is an allowed block size for s. */
bool qt_scheme_block_ok(qt_scheme s, size_t block);
/* Whether s carries every flag in flags. */
bool qt_scheme_has(qt_scheme s, unsigned flags);
/* The names of the schemes carrying every flag in flags, in table order,
 * joined by ", " into buf (n bytes, truncated); returns buf. */
const char *qt_scheme_names(unsigned flags, char *buf, size_t n);
/* Bytes per element of a source type (4 or 2). Inline: the SIMD kernels
 * call it in their inner loops. */
static inline size_t qt_src_size(qt_src_type t)
{
    return t == QT_SRC_F32 ? 4 : 2;
}

/* ---- tables (spec §1.1, §1.2, §1.4, §2.2) --------------------------------- */

extern const float qt_nf4_map[16];         /* NF4 quant_map, ascending */
extern const float qt_nf4_thresholds[15];  /* f32 midpoints, strict > */
extern const float qt_fp4_map[16];         /* FP4 quant_map (entry 8 is +0.0) */
extern const float qt_fp4_thresholds[7];   /* G, E, F, A, D, B, C ascending */
extern const float qt_dynamic_map[256];    /* canonical signed dynamic map */
#define QT_DQ_BLOCK 256                    /* nested block size */

/* ---- matching bitsandbytes' CUDA path (quant/cuda.c) ----------------------
 * rcp: the GPU's fast-math reciprocal as a table of 2^23 two-bit entries,
 * four per byte, lowest bits first (QT_RCP_TABLE_BYTES bytes; entry i =
 * d + 1 for the float32 mantissa i, d in {-1, 0, +1} ulp from the
 * correctly rounded 1/x; formats/cuda_rcp.h reads and checks the file).
 * Every quantize function below that takes `rcp` computes bitsandbytes'
 * CPU bytes (correctly rounded) when it is NULL and its CUDA bytes when it
 * is the table: 1/absmax (and LLM.int8's __fdividef(127, absmax)) from the
 * table, subnormal inputs and products flushed to zero (--use_fast_math). */
#define QT_RCP_TABLE_BYTES ((size_t)1 << 21)

/* The GPU's 1.0f / x: the correctly rounded reciprocal moved by the
 * table's d ulp; 0 or subnormal x -> +-inf, +-inf -> +-0, a subnormal
 * result -> +-0, NaN -> NaN. */
float qt_cuda_rcp(const uint8_t *table, float x);

/* torch's float32 mean of v[0..n) as its CUDA reduction computes it (the
 * double-quantization offset of GPU-quantized files; order of additions in
 * quant/cuda.c). @return QT_OK, QT_ERR_ARG (n == 0, n > INT32_MAX, a
 * negative value), QT_ERR_NUMERIC (Inf/NaN). */
qt_status qt_dq_mean_cuda(const float *v, size_t n, float *mean);

/* ---- sizes --------------------------------------------------------------- */

/* ceil(n / block) (block > 0). */
size_t qt_n_blocks(size_t n, size_t block);
/* Packed 4-bit bytes for n elements: (n + 1) / 2. */
size_t qt_nf4_bytes(size_t n);
/* Nested absmax count for nb first-level blocks: ceil(nb / 256). */
size_t qt_dq_n_nested(size_t nb);
/* Bytes of the q8 blocks for n elements at block size block. */
size_t qt_q8_bytes(size_t n, size_t block);
/* Bytes of one q8 block (34 at block 32, else 4 + block). */
size_t qt_q8_block_bytes(size_t block);

/* GGUF Q8_0 block (block size 32): 34 bytes, no padding. */
typedef struct qt_q8_block32 {
    uint16_t d;     /* fp16 bits of the scale d = absmax / 127 (LE) */
    int8_t qs[32];  /* roundf(x / d), half away from zero */
} qt_q8_block32;
_Static_assert(sizeof(qt_q8_block32) == 34, "q8 block32 must be 34 bytes (GGUF Q8_0)");

/* q8 block of another size B: a float scale then B int8 (4 + B bytes). The
 * struct shows the header; qs runs on for B bytes. */
typedef struct qt_q8_blockf {
    float d;        /* scale d = absmax / 127, float32 LE */
    int8_t qs[];    /* (B,) codes */
} qt_q8_blockf;
_Static_assert(sizeof(qt_q8_blockf) == 4, "q8 float block header must be 4 bytes");

/* ---- kernels and dispatch ------------------------------------------------ */

/* One attention kernel call (quant/attn.c): n_tok consecutive query tokens
 * at positions pos0.. and the `group` query heads that share one kv head,
 * each attending causally to the positions 0 .. its own. All borrowed. */
typedef struct qt_attn_job {
    const float *q;    /* (n_tok, ldq): head g of token t at q + t * ldq + g * hd */
    size_t ldq;
    float *o;          /* (n_tok, ldo): the outputs, laid out as q */
    size_t ldo;
    const float *kt;   /* (hd, ldk) transposed keys: element i of key p at kt[i * ldk + p] */
    size_t ldk;        /* >= pos0 + n_tok */
    const float *v;    /* (pos0 + n_tok, ldv) values: element i of value p at v[p * ldv + i] */
    size_t ldv;
    size_t n_tok, group, hd, pos0;
    float scale;       /* the score scale, 1 / sqrt(hd) */
    float *scratch;    /* (QT_ATTN_ROWS, ldk) floats, 64-byte aligned */
} qt_attn_job;

/* Query rows (token, head) an attention kernel works on together: its
 * scratch holds their scores. */
#define QT_ATTN_ROWS 8

/* One ISA's kernels. Pure functions of their arguments: no threads, no
 * allocation. Quantize kernels are bit-identical across ISAs. */
typedef struct qt_kernels {
    qt_isa isa;
    /* NF4 (fp4 = false) or FP4: n > 0 elements of src starting at a block
     * boundary, blocks of `block` (even) elements, the last one may be
     * partial. codes: ((n+1)/2) bytes; absmax: (ceil(n/block),) float32.
     * rcp: NULL = CPU bytes, the GPU reciprocal table = CUDA bytes. */
    void (*quant4)(bool fp4, qt_src_type t, const void *src, size_t n, size_t block,
                   const uint8_t *rcp, uint8_t *codes, float *absmax);
    /* Dequantizes len elements of one block: flat element indices
     * [i0, i0+len) of the packed codes (codes = start of the whole tensor),
     * dst[k] = f32(map[code(i0+k)] * scale). */
    void (*dequant4)(const uint8_t *codes, size_t i0, size_t len, const float map[16],
                     float scale, float *dst);
    /* Per-block int8: n > 0 elements at a block boundary; writes
     * qt_q8_bytes(n, block) bytes to dst. */
    void (*q8_quant)(qt_src_type t, const void *src, size_t n, size_t block, void *dst);
    /* LLM.int8 of one row of n_cols elements: cb (n_cols,), *scb (rcp as
     * for quant4). */
    void (*int8_quant_row)(qt_src_type t, const void *src, size_t n_cols, const uint8_t *rcp,
                           int8_t *cb, float *scb);
    /* Dynamic-map 8-bit: like quant4, codes (n,) uint8 into map[256]. */
    void (*blockwise8_quant)(qt_src_type t, const void *src, size_t n, size_t block,
                             const float map[256], const uint8_t *rcp, uint8_t *codes,
                             float *absmax);
    /* y[t*ldy + r] = sum_k x[t*ldx + k] * w[r*ldw + k], k < n, for t < n_tok,
     * r < n_rows. w may be unaligned. The summation order of one element
     * depends only on n and the ISA, never on n_tok / n_rows / grouping. */
    void (*dot_tile)(const float *x, size_t ldx, size_t n_tok, const float *w, size_t ldw,
                     size_t n_rows, size_t n, float *y, size_t ldy);
    /* LoRA merge of one row of n columns: w[i] = w[i] + s * sum_k b[k] *
     * a[k*n + i] (k < r, summed in order), b (r,) the row of B, a (r, n) = A. */
    void (*lora_merge_row)(float *w, size_t n, const float *b, size_t r, const float *a,
                           float s);
    /* Causal softmax attention of one job (quant/attn.c gives the order of
     * every operation); bit-identical across ISAs. */
    void (*attn)(const qt_attn_job *j);
} qt_kernels;

/* The kernels for isa, or NULL when this build or CPU lacks it. Static. */
const qt_kernels *qt_kernels_for(qt_isa isa);
/* The kernels for qt_isa_active() (QT_ISA / --isa honoured). Never NULL. */
const qt_kernels *qt_kernels_active(void);

/* ---- quantize drivers (OpenMP over blocks / rows) -------------------------
 * k: the kernels to use, NULL = qt_kernels_active(). Results do not depend
 * on the thread count. @return QT_OK or QT_ERR_ARG (bad block size, NULL
 * pointer, n == 0). */

/* NF4 / FP4 of n elements. codes (qt_nf4_bytes(n),), absmax (qt_n_blocks(n,B),). */
qt_status qt_nf4_quantize(const qt_kernels *k, qt_scheme scheme, qt_src_type t, const void *src,
                          size_t n, size_t block, uint8_t *codes, float *absmax);
/* The same with rcp (NULL = CPU bytes, the table = CUDA bytes). */
qt_status qt_nf4_quantize_rcp(const qt_kernels *k, qt_scheme scheme, qt_src_type t,
                              const void *src, size_t n, size_t block, const uint8_t *rcp,
                              uint8_t *codes, float *absmax);

/* Correctly rounded float32 mean of v[0..n) (exact sum; n <= 2^32-1).
 * @return QT_OK, QT_ERR_ARG (n == 0 or too large), QT_ERR_NUMERIC (Inf/NaN). */
qt_status qt_dq_mean(const float *v, size_t n, float *mean);

/* Double quantization of absmax (nb,) with offset = qt_dq_mean(absmax):
 * codes (nb,) uint8, nested (qt_dq_n_nested(nb),), *offset.
 * @return QT_OK, QT_ERR_ARG, QT_ERR_NUMERIC (non-finite absmax). */
qt_status qt_dq_quantize(const float *absmax, size_t nb, uint8_t *codes, float *nested,
                         float *offset);
/* rcp NULL: qt_dq_quantize; the table: CUDA bytes, offset =
 * qt_dq_mean_cuda(absmax) and the GPU reciprocal in the nested blocks. */
qt_status qt_dq_quantize_rcp(const float *absmax, size_t nb, const uint8_t *rcp, uint8_t *codes,
                             float *nested, float *offset);
/* The same with a given offset (e.g. a file's own nested_offset). */
qt_status qt_dq_quantize_with_offset(const float *absmax, size_t nb, float offset,
                                     const uint8_t *rcp, uint8_t *codes, float *nested);
/* A[j] = f32(f32(map[codes[j]] * nested[j/256]) + offset) for j < nb (spec §5).
 * map NULL = qt_dynamic_map. nested may be unaligned. */
void qt_dq_dequantize(const uint8_t *codes, size_t nb, const void *nested, float offset,
                      const float *map, float *absmax);

/* Dynamic-map 8-bit of n elements, block in [64, 4096] power of two:
 * codes (n,), absmax (qt_n_blocks(n,B),). */
qt_status qt_blockwise8_quantize(const qt_kernels *k, qt_src_type t, const void *src, size_t n,
                                 size_t block, uint8_t *codes, float *absmax);

/* LLM.int8 row-wise of a (n_rows, n_cols) matrix: cb (n_rows, n_cols) int8,
 * scb (n_rows,) float32. */
qt_status qt_int8_quantize(const qt_kernels *k, qt_src_type t, const void *src, size_t n_rows,
                           size_t n_cols, int8_t *cb, float *scb);
/* The same with rcp (NULL = CPU bytes, the table = CUDA bytes). */
qt_status qt_int8_quantize_rcp(const qt_kernels *k, qt_src_type t, const void *src,
                               size_t n_rows, size_t n_cols, const uint8_t *rcp, int8_t *cb,
                               float *scb);

/* Per-block int8 of n elements, block in [32, 4096] power of two:
 * dst (qt_q8_bytes(n, block),). */
qt_status qt_q8_quantize(const qt_kernels *k, qt_src_type t, const void *src, size_t n,
                         size_t block, void *dst);

/* ---- quantized weights: dequantize and matmul ---------------------------- */

/* A weight matrix W (n_out, n_in) in any scheme. Every pointer is BORROWED
 * (typically into memory-mapped safetensors data), read-only, may be
 * unaligned, little-endian. Fields a scheme does not use are ignored. */
typedef struct qt_qweight {
    qt_scheme scheme;
    size_t n_out, n_in;       /* rows, columns */
    size_t block_size;        /* nf4/fp4/q8/int8-blockwise block (flat tensor) */
    const void *data;         /* nf4/fp4: ((n+1)/2,) packed codes; int8-blockwise:
                                 (n,) uint8; int8: (n_out, n_in) int8; q8: the
                                 blocks; bf16/fp16/fp32: (n_out, n_in) values */
    const void *absmax;       /* float32 (nb,): nf4/fp4 without double quant,
                                 int8-blockwise */
    const uint8_t *absmax_q;  /* (nb,) nested codes: nf4/fp4 with double quant
                                 (then absmax is ignored) */
    const void *nested_absmax; /* float32 (ceil(nb/256),) */
    float nested_offset;
    const void *quant_map;    /* float32 (16,) or (256,); NULL = built-in */
    const void *nested_map;   /* float32 (256,); NULL = qt_dynamic_map */
    const void *scb;          /* float32 (n_out,): int8 */
    qt_src_type round_to;     /* nf4/fp4: QT_SRC_BF16 / QT_SRC_F16 round every
                                 dequantized value to that type (nearest even),
                                 as bitsandbytes returns a 4-bit weight in its
                                 quant_state dtype; QT_SRC_F32 (0) = exact fp32 */
} qt_qweight;

/* Checks that w is complete and consistent (pointers present for its
 * scheme, block size allowed, sizes not overflowing).
 * @return QT_OK or QT_ERR_ARG / QT_ERR_OVERFLOW. */
qt_status qt_qweight_check(const qt_qweight *w);

/* Dequantizes rows [r0, r0+nr) of w to fp32 dst (nr, n_in), single thread
 * (spec §5 arithmetic exactly). k NULL = active. No allocation. */
void qt_qweight_rows(const qt_kernels *k, const qt_qweight *w, size_t r0, size_t nr, float *dst);

/* Dequantizes all of w to dst (n_out, n_in) of type out (f32, or bf16/fp16
 * rounded to nearest even). OpenMP over rows.
 * @return QT_OK, QT_ERR_ARG, QT_ERR_NOMEM (per-thread tile for bf16/fp16). */
qt_status qt_dequantize(const qt_kernels *k, const qt_qweight *w, qt_src_type out, void *dst);

/* y (n_tok, n_out) = x (n_tok, n_in) . W^T, W dequantized on the fly a few
 * rows at a time into a per-thread tile, or (one token, where the ISA has
 * the scheme's fused dot_rows) read straight from storage. OpenMP over
 * output rows; identical results for any thread count and token split.
 * x, y fp32, caller-owned.
 * @return QT_OK, QT_ERR_ARG, QT_ERR_NOMEM (the tile). */
qt_status qt_matmul(const qt_kernels *k, const qt_qweight *w, const float *x, size_t n_tok,
                    float *y);

/* ---- LoRA merge (quant/lora.c) ------------------------------------------- */

/* W (n_out, n_in) += s * (B A), B (n_out, r), A (r, n_in), all fp32: per
 * element the r products summed in order, scaled, then added to W (one
 * rounding order on every ISA and thread count). OpenMP over rows.
 * @return QT_OK, QT_ERR_ARG (NULL or zero size). */
qt_status qt_lora_merge(const qt_kernels *k, float *w, size_t n_out, size_t n_in,
                        const float *B, size_t r, const float *A, float s);

/* One pass over the n values of src (type t) in blocks of `block` (any
 * size > 0): absmax[j] (may be NULL) = max |x| of block j, exactly the
 * quantize kernels' absmax when no value is NaN; *nonfinite = some value
 * is NaN or Inf. OpenMP over groups of blocks; the result does not depend
 * on threads. @return QT_OK, QT_ERR_ARG. */
qt_status qt_absmax_scan(qt_src_type t, const void *src, size_t n, size_t block, float *absmax,
                         bool *nonfinite);

/* ---- quantizing a whole weight ------------------------------------------ */

/* The buffers a weight quantized with qt_quantize_weight fills, caller
 * provided (sizes from qt_qbuf_sizes; unused ones NULL / 0). */
typedef struct qt_qbuf {
    void *codes;        /* nf4/fp4 packed codes, int8 CB, q8 blocks */
    float *absmax;      /* nf4/fp4 block absmax (also the input of double quant) */
    uint8_t *absmax_q;  /* nf4/fp4 double quant: nested codes */
    float *nested;      /* nf4/fp4 double quant: nested absmax */
    float *scb;         /* int8 row scales */
} qt_qbuf;

typedef struct qt_qbuf_sizes {
    size_t codes, absmax, absmax_q, nested, scb; /* bytes; 0 = not used */
} qt_qbuf_sizes;

/* Bytes of each buffer for a (n_out, n_in) weight in scheme (NF4, FP4,
 * INT8, Q8) with block (NF4/FP4/Q8) and double_quant (NF4/FP4).
 * @return QT_OK, QT_ERR_ARG (not a quantization scheme), QT_ERR_OVERFLOW. */
qt_status qt_qbuf_sizes_of(qt_scheme scheme, size_t block, bool double_quant, size_t n_out,
                           size_t n_in, qt_qbuf_sizes *out);

/* Quantizes src (n_out, n_in) of type t into b and describes the result in
 * *out (pointers into b). The one entry that picks the kernels of a scheme
 * for a whole weight (convert, validate and merge use it). dq_offset: the
 * double-quantization offset when the caller computed it already
 * (qt_dq_mean of these absmax, e.g. in a prepass), NULL = computed here.
 * @return QT_OK, QT_ERR_ARG, QT_ERR_NUMERIC (double quant of a non-finite
 * absmax). */
qt_status qt_quantize_weight(const qt_kernels *k, qt_scheme scheme, size_t block,
                             bool double_quant, const float *dq_offset, qt_src_type t,
                             const void *src, size_t n_out, size_t n_in, const qt_qbuf *b,
                             qt_qweight *out);
/* The same with rcp (NULL = bitsandbytes' CPU bytes, the GPU reciprocal
 * table = its CUDA bytes; dq_offset then qt_dq_mean_cuda's; q8 ignores it). */
qt_status qt_quantize_weight_rcp(const qt_kernels *k, qt_scheme scheme, size_t block,
                                 bool double_quant, const float *dq_offset, const uint8_t *rcp,
                                 qt_src_type t, const void *src, size_t n_out, size_t n_in,
                                 const qt_qbuf *b, qt_qweight *out);
/* ---- dense fp32 products and low-rank factorization (LoftQ) ---------------- */

/* c (m, k) = a (m, n) . b (n, k), all fp32 row-major, caller-owned. Every
 * c[i][l] is one fmaf chain over j = 0..n-1 in order, starting from +0.0,
 * so the bytes are the same on every ISA (isa: the kernel to use; an
 * unsupported one falls back to the scalar definition) and for any thread
 * count. OpenMP over row chunks. @return QT_OK or QT_ERR_ARG. */
qt_status qt_gemm_f32(qt_isa isa, const float *a, size_t m, size_t n, const float *b, size_t k,
                      float *c);

/* Columns of the random sketch qt_lowrank_rsvd uses: min(rank + oversample,
 * m, n). */
size_t qt_lowrank_sketch_cols(size_t m, size_t n, size_t rank, size_t oversample);

/* Rank-`rank` approximation E ~ L . R of e (m, n) by randomized range finding
 * (a seeded +-1 sketch of rank + oversample columns, power_iters subspace
 * iterations), then the exact SVD of the small projection:
 * l (m, rank) = U_r sqrt(S_r), r (rank, n) = sqrt(S_r) V_r^T, sigma (rank,)
 * the singular values, descending (sigma may be NULL). Deterministic: the
 * bytes depend only on e, the sizes and seed. Allocates about m*n + 2*(m+n)*k
 * floats. rank <= min(m, n). @return QT_OK, QT_ERR_ARG, QT_ERR_OVERFLOW,
 * QT_ERR_NOMEM. */
qt_status qt_lowrank_rsvd(qt_isa isa, const float *e, size_t m, size_t n, size_t rank,
                          size_t oversample, unsigned power_iters, uint64_t seed, float *l,
                          float *r, float *sigma);

/* ---- GGML block types (GGUF Q4_0 .. Q6_K, Q8_0) --------------------------
 * Bit-identical to ggml's reference quantizers (quantize_row_*_ref in
 * llama.cpp ggml/src/ggml-quants.c, the path llama-quantize takes without an
 * importance matrix; docs/GGML_BLOCKS.md). A row of n elements (n a multiple
 * of the block: 32 for q4_0 .. q5_1 and q8, 256 for the K-quants) is
 * n / block blocks of block_bytes, little-endian, rows back to back.
 *
 * Non-finite input: the kernels apply ggml's arithmetic to it unchanged
 * (NaN/Inf give deterministic but meaningless blocks, identical on every
 * ISA); callers refuse such tensors unless told otherwise (the drivers
 * return QT_ERR_NUMERIC unless allow_nonfinite).
 *
 * Dot products and dequantization: dequantized values are ggml's
 * dequantize_row_* arithmetic exactly. dot(row, x) is one fixed order on
 * every ISA: element i (of the row) is multiplied with x[i] and added
 * (separately rounded, no FMA) to lane i % 16 of 16 float accumulators, in
 * increasing i; the lanes are then summed pairwise (l + 8, then + 4, + 2,
 * + 1). */

#define QT_QK_K 256 /* K-quant super-block */

/* One ISA's kernels for one GGML block type. Pure, no allocation. x, y:
 * (n,) float32, aligned to 4; blocks: (n / block * block_bytes,) bytes, any
 * alignment. n a positive multiple of the type's block. */
typedef struct qt_blk_ops {
    void (*quantize)(const float *x, void *blocks, size_t n);
    void (*dequantize)(const void *blocks, float *y, size_t n);
    float (*dot)(const void *blocks, const float *x, size_t n);
} qt_blk_ops;

/* The ops of scheme s for isa, NULL when s is not a GGML block type or this
 * build / CPU lacks isa. Static. */
const qt_blk_ops *qt_blk_ops_for(qt_isa isa, qt_scheme s);
/* The same for qt_isa_active(); NULL only when s is not a block type. */
const qt_blk_ops *qt_blk_ops_active(qt_scheme s);
/* Bytes of one row of n elements of block type s; 0 when s is not a block
 * type or n is not a multiple of its block. */
size_t qt_blk_row_bytes(qt_scheme s, size_t n);

/* Quantizes a (n_rows, n_cols) matrix of type t to block type s, OpenMP over
 * rows (identical bytes for any thread count). ops NULL = active ISA.
 * dst: (n_rows * qt_blk_row_bytes(s, n_cols),). *bad_row (may be NULL) gets
 * the first row holding NaN/Inf when that is refused.
 * @return QT_OK, QT_ERR_ARG (not a block type, n_cols not a multiple of the
 * block, NULL pointer), QT_ERR_NUMERIC (non-finite input, !allow_nonfinite),
 * QT_ERR_NOMEM (the per-thread fp32 row). */
qt_status qt_blk_quantize(const qt_blk_ops *ops, qt_scheme s, qt_src_type t, const void *src,
                          size_t n_rows, size_t n_cols, bool allow_nonfinite, void *dst,
                          size_t *bad_row);
/* Dequantizes n_rows rows of n_cols to fp32 dst (n_rows, n_cols), OpenMP
 * over rows. @return QT_OK or QT_ERR_ARG. */
qt_status qt_blk_dequantize(const qt_blk_ops *ops, qt_scheme s, const void *src, size_t n_rows,
                            size_t n_cols, float *dst);

/* Bytes a full pass over w reads: its stored values or codes and their
 * scales (the weight-traffic of one decoded token). */
uint64_t qt_qweight_stored_bytes(const qt_qweight *w);

/* ---- the peak-FMA probe ------------------------------------------------------
 * Runs `iters` rounds of independent fp32 FMA chains on the calling thread
 * with kernels k (NULL = active; the ISA's widest vectors), no memory
 * traffic; returns the floating-point operations done (2 per lane per FMA).
 * *sink receives a result so that the work is not optimized away. Time it
 * to get the core's peak FMA rate (bench/probes.c). */
uint64_t qt_fma_burn(const qt_kernels *k, size_t iters, float *sink);

#endif /* QT_QUANT_H */
