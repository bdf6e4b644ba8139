/* quant/ggml_blocks.c: the GGML block types with 32-element blocks (Q4_0,
 * Q4_1, Q5_0, Q5_1; Q8_0 is qtool's q8 at block 32), scalar definitions
 * that reproduce ggml's quantize_row_*_ref / dequantize_row_* arithmetic
 * (llama.cpp ggml/src/ggml-quants.c; docs/GGML_BLOCKS.md), the fixed-order
 * dot product every ISA follows, the per-ISA dispatch of all block types
 * and the OpenMP drivers.
 *
 * Block layouts (little-endian, no padding; d, m are fp16):
 *   q4_0  d, qs[16]            18 bytes   x[j] -> low nibble of qs[j], x[j+16] high
 *   q4_1  d, m, qs[16]         20 bytes
 *   q5_0  d, qh[4], qs[16]     22 bytes   bit 4 of code j in qh bit j (j < 32)
 *   q5_1  d, m, qh[4], qs[16]  24 bytes
 *   q8_0  d, qs[32] int8       34 bytes   (quant/q8.c) */
#include "quant/quant.h"

#include <float.h>
#include <stdlib.h>

#include "quant/quant_internal.h"

/* ---- shared scalar helpers (quant_internal.h) ----------------------------- */

int32_t qt_blk_trunc_i32(float v)
{
    /* what x86 cvttss2si / cvttps2dq return: toward zero, INT32_MIN when
     * NaN or out of range (ggml's float -> int8 casts compile to this) */
    if (!(v > -2147483904.0f && v < 2147483648.0f)) return INT32_MIN;
    return (int32_t)v;
}

void qt_blk_put_fp16(unsigned char *p, float v)
{
    uint16_t h = qt_fp32_to_fp16(v);
    memcpy(p, &h, 2);
}

float qt_blk_get_fp16(const unsigned char *p)
{
    return qt_fp16_to_fp32(qt_load_le16(p));
}

float qt_blk_sum16(const float acc[16])
{
    /* pairwise halving: the reduction order of the dot definition */
    float s8[8], s4[4], s2[2];
    for (int l = 0; l < 8; l++) s8[l] = acc[l] + acc[l + 8];
    for (int l = 0; l < 4; l++) s4[l] = s8[l] + s8[l + 4];
    for (int l = 0; l < 2; l++) s2[l] = s4[l] + s4[l + 2];
    return s2[0] + s2[1];
}

float qt_blk_dot_ref(qt_blk_deq_fn deq, size_t block, size_t block_bytes, const void *blocks,
                     const float *x, size_t n)
{
    const unsigned char *b = blocks;
    float acc[16] = {0}, tmp[QT_QK_K];
    for (size_t i0 = 0; i0 < n; i0 += block, b += block_bytes) {
        deq(b, tmp, block);
        for (size_t i = 0; i < block; i++) {
            float p = tmp[i] * x[i0 + i];
            acc[i % 16] = acc[i % 16] + p;
        }
    }
    return qt_blk_sum16(acc);
}

/* MIN(top, (int8_t)v) stored as uint8_t, as ggml's legacy quantizers do */
static inline uint8_t code_min(float v, int top)
{
    int8_t t = (int8_t)qt_blk_trunc_i32(v);
    return (uint8_t)(t < top ? t : top);
}

/* ---- Q4_0 / Q5_0: symmetric, the signed extreme maps to the lowest code ---- */

float qt_blk_signed_extreme(const float *x, int n, float *amax_out)
{
    /* strict >: the first element of the largest magnitude wins, NaN never */
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    if (amax_out) *amax_out = amax;
    return max;
}

/* 4-bit codes of a 32-block into qs[16]: low nibble element j, high j + 16. */
static void pack4(const uint8_t *code, unsigned char *qs)
{
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)(code[j] | code[j + 16] << 4);
}

/* 5-bit codes: the low nibbles as pack4, bit 4 of code j at bit j of qh. */
static void pack5(const uint8_t *code, unsigned char *qh, unsigned char *qs)
{
    uint32_t h = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((code[j] & 0x0F) | (code[j + 16] & 0x0F) << 4);
        h |= (uint32_t)((code[j] >> 4) & 1) << j;
        h |= (uint32_t)((code[j + 16] >> 4) & 1) << (j + 16);
    }
    qt_store_le32(qh, h);
}

void qt_q4_0_quantize_ref(const float *x, void *blocks, size_t n)
{
    unsigned char *b = blocks;
    for (size_t i0 = 0; i0 < n; i0 += 32, b += 18) {
        const float *xb = x + i0;
        float d = qt_blk_signed_extreme(xb, 32, NULL) / -8.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint8_t code[32];
        for (int j = 0; j < 32; j++) code[j] = code_min(xb[j] * id + 8.5f, 15);
        qt_blk_put_fp16(b, d);
        pack4(code, b + 2);
    }
}

void qt_q4_0_dequantize_ref(const void *blocks, float *y, size_t n)
{
    const unsigned char *b = blocks;
    for (size_t i0 = 0; i0 < n; i0 += 32, b += 18) {
        float d = qt_blk_get_fp16(b);
        for (int j = 0; j < 16; j++) {
            y[i0 + j] = (float)((b[2 + j] & 0x0F) - 8) * d;
            y[i0 + j + 16] = (float)((b[2 + j] >> 4) - 8) * d;
        }
    }
}

void qt_q5_0_quantize_ref(const float *x, void *blocks, size_t n)
{
    unsigned char *b = blocks;
    for (size_t i0 = 0; i0 < n; i0 += 32, b += 22) {
        const float *xb = x + i0;
        float d = qt_blk_signed_extreme(xb, 32, NULL) / -16.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint8_t code[32];
        for (int j = 0; j < 32; j++) code[j] = code_min(xb[j] * id + 16.5f, 31);
        qt_blk_put_fp16(b, d);
        pack5(code, b + 2, b + 6);
    }
}

void qt_q5_0_dequantize_ref(const void *blocks, float *y, size_t n)
{
    const unsigned char *b = blocks;
    for (size_t i0 = 0; i0 < n; i0 += 32, b += 22) {
        float d = qt_blk_get_fp16(b);
        uint32_t qh = qt_load_le32(b + 2);
        for (int j = 0; j < 16; j++) {
            int lo = (b[6 + j] & 0x0F) | (int)((qh >> j) & 1) << 4;
            int hi = (b[6 + j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            y[i0 + j] = (float)(lo - 16) * d;
            y[i0 + j + 16] = (float)(hi - 16) * d;
        }
    }
}

/* ---- Q4_1 / Q5_1: scale and minimum ----------------------------------------- */

static void min_max(const float *x, float *mn, float *mx)
{
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int j = 0; j < 32; j++) {
        if (x[j] < lo) lo = x[j];
        if (x[j] > hi) hi = x[j];
    }
    *mn = lo;
    *mx = hi;
}

void qt_q4_1_quantize_ref(const float *x, void *blocks, size_t n)
{
    unsigned char *b = blocks;
    for (size_t i0 = 0; i0 < n; i0 += 32, b += 20) {
        const float *xb = x + i0;
        float mn, mx;
        min_max(xb, &mn, &mx);
        float d = (mx - mn) / 15.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint8_t code[32];
        for (int j = 0; j < 32; j++) code[j] = code_min((xb[j] - mn) * id + 0.5f, 15);
        qt_blk_put_fp16(b, d);
        qt_blk_put_fp16(b + 2, mn);
        pack4(code, b + 4);
    }
}

void qt_q4_1_dequantize_ref(const void *blocks, float *y, size_t n)
{
    const unsigned char *b = blocks;
    for (size_t i0 = 0; i0 < n; i0 += 32, b += 20) {
        float d = qt_blk_get_fp16(b), m = qt_blk_get_fp16(b + 2);
        for (int j = 0; j < 16; j++) {
            y[i0 + j] = (float)(b[4 + j] & 0x0F) * d + m;
            y[i0 + j + 16] = (float)(b[4 + j] >> 4) * d + m;
        }
    }
}

void qt_q5_1_quantize_ref(const float *x, void *blocks, size_t n)
{
    unsigned char *b = blocks;
    for (size_t i0 = 0; i0 < n; i0 += 32, b += 24) {
        const float *xb = x + i0;
        float mn, mx;
        min_max(xb, &mn, &mx);
        float d = (mx - mn) / 31.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint8_t code[32];
        /* no clamp here in ggml: (uint8_t)(v + 0.5f) */
        for (int j = 0; j < 32; j++) code[j] = (uint8_t)qt_blk_trunc_i32((xb[j] - mn) * id + 0.5f);
        qt_blk_put_fp16(b, d);
        qt_blk_put_fp16(b + 2, mn);
        pack5(code, b + 4, b + 8);
    }
}

void qt_q5_1_dequantize_ref(const void *blocks, float *y, size_t n)
{
    const unsigned char *b = blocks;
    for (size_t i0 = 0; i0 < n; i0 += 32, b += 24) {
        float d = qt_blk_get_fp16(b), m = qt_blk_get_fp16(b + 2);
        uint32_t qh = qt_load_le32(b + 4);
        for (int j = 0; j < 16; j++) {
            int lo = (b[8 + j] & 0x0F) | (int)((qh >> j) & 1) << 4;
            int hi = (b[8 + j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            y[i0 + j] = (float)lo * d + m;
            y[i0 + j + 16] = (float)hi * d + m;
        }
    }
}

/* ---- Q8_0 (quantize: quant/q8.c at block 32) --------------------------------- */

void qt_q8_0_quantize_ref(const float *x, void *blocks, size_t n)
{
    qt_q8_quant_ref(QT_SRC_F32, x, n, 32, blocks);
}

void qt_q8_0_dequantize_ref(const void *blocks, float *y, size_t n)
{
    const unsigned char *b = blocks;
    for (size_t i0 = 0; i0 < n; i0 += 32, b += 34) {
        float d = qt_blk_get_fp16(b);
        for (int j = 0; j < 32; j++) y[i0 + j] = (float)(int8_t)b[2 + j] * d;
    }
}

/* ---- the ref table ------------------------------------------------------------ */

#define REF_DOT(name, block, bytes, deq)                                      \
    float name(const void *blocks, const float *x, size_t n)          \
    {                                                                         \
        return qt_blk_dot_ref(deq, block, bytes, blocks, x, n);               \
    }
REF_DOT(qt_q4_0_dot_ref, 32, 18, qt_q4_0_dequantize_ref)
REF_DOT(qt_q4_1_dot_ref, 32, 20, qt_q4_1_dequantize_ref)
REF_DOT(qt_q5_0_dot_ref, 32, 22, qt_q5_0_dequantize_ref)
REF_DOT(qt_q5_1_dot_ref, 32, 24, qt_q5_1_dequantize_ref)
REF_DOT(qt_q8_0_dot_ref, 32, 34, qt_q8_0_dequantize_ref)

/* Indexed by qt_scheme; rows that are not block types stay empty. */
const qt_blk_ops qt_blk_ops_ref[QT_SCHEME_COUNT] = {
    [QT_SCHEME_Q8] = {qt_q8_0_quantize_ref, qt_q8_0_dequantize_ref, qt_q8_0_dot_ref},
    [QT_SCHEME_Q4_0] = {qt_q4_0_quantize_ref, qt_q4_0_dequantize_ref, qt_q4_0_dot_ref},
    [QT_SCHEME_Q4_1] = {qt_q4_1_quantize_ref, qt_q4_1_dequantize_ref, qt_q4_1_dot_ref},
    [QT_SCHEME_Q5_0] = {qt_q5_0_quantize_ref, qt_q5_0_dequantize_ref, qt_q5_0_dot_ref},
    [QT_SCHEME_Q5_1] = {qt_q5_1_quantize_ref, qt_q5_1_dequantize_ref, qt_q5_1_dot_ref},
    [QT_SCHEME_Q2_K] = {qt_q2_k_quantize_ref, qt_q2_k_dequantize_ref, qt_q2_k_dot_ref},
    [QT_SCHEME_Q3_K] = {qt_q3_k_quantize_ref, qt_q3_k_dequantize_ref, qt_q3_k_dot_ref},
    [QT_SCHEME_Q4_K] = {qt_q4_k_quantize_ref, qt_q4_k_dequantize_ref, qt_q4_k_dot_ref},
    [QT_SCHEME_Q5_K] = {qt_q5_k_quantize_ref, qt_q5_k_dequantize_ref, qt_q5_k_dot_ref},
    [QT_SCHEME_Q6_K] = {qt_q6_k_quantize_ref, qt_q6_k_dequantize_ref, qt_q6_k_dot_ref},
};

/* ---- dispatch -------------------------------------------------------------------- */

const qt_blk_ops *qt_blk_ops_for(qt_isa isa, qt_scheme s)
{
    if ((unsigned)s >= QT_SCHEME_COUNT || !qt_blk_ops_ref[s].quantize) return NULL;
    if ((unsigned)isa >= QT_ISA_COUNT || !qt_isa_supported(isa)) return NULL;
    switch (isa) {
#if defined(__x86_64__)
    case QT_ISA_AVX2: return &qt_blk_ops_avx2[s];
    case QT_ISA_AVX512: return &qt_blk_ops_avx512[s];
#endif
    default: return &qt_blk_ops_ref[s];
    }
}

const qt_blk_ops *qt_blk_ops_active(qt_scheme s)
{
    const qt_blk_ops *o = qt_blk_ops_for(qt_isa_active(), s);
    return o ? o : qt_blk_ops_for(QT_ISA_REF, s);
}

size_t qt_blk_row_bytes(qt_scheme s, size_t n)
{
    const qt_scheme_info *si = qt_scheme_get(s);
    if (!si || !si->block_bytes || n % si->default_block) return 0;
    return n / si->default_block * si->block_bytes;
}

/* ---- drivers ------------------------------------------------------------------------- */

static bool row_finite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return false;
    return true;
}

qt_status qt_blk_quantize(const qt_blk_ops *ops, qt_scheme s, qt_src_type t, const void *src,
                          size_t n_rows, size_t n_cols, bool allow_nonfinite, void *dst,
                          size_t *bad_row)
{
    size_t rb = qt_blk_row_bytes(s, n_cols);
    if (!rb || !src || !dst || (unsigned)t >= QT_SRC_COUNT) return QT_ERR_ARG;
    if (!ops) ops = qt_blk_ops_active(s);
    size_t es = qt_src_size(t), bad = SIZE_MAX;
    int nomem = 0;
    /* each row is widened to fp32 in a per-thread buffer, checked, and
     * quantized on its own: the bytes do not depend on the thread count */
#pragma omp parallel reduction(min : bad) reduction(| : nomem)
    {
        float *row = malloc(n_cols * sizeof(float));
        nomem |= !row;
#pragma omp for schedule(static)
        for (size_t r = 0; r < n_rows; r++) {
            if (!row) continue;
            const unsigned char *in = (const unsigned char *)src + r * n_cols * es;
            for (size_t i = 0; i < n_cols; i++) row[i] = qt_ld(t, in, i);
            if (!allow_nonfinite && !row_finite(row, n_cols)) {
                if (r < bad) bad = r;
                continue;
            }
            ops->quantize(row, (unsigned char *)dst + r * rb, n_cols);
        }
        free(row);
    }
    if (nomem) return QT_ERR_NOMEM;
    if (bad != SIZE_MAX) {
        if (bad_row) *bad_row = bad;
        return QT_ERR_NUMERIC;
    }
    return QT_OK;
}

qt_status qt_blk_dequantize(const qt_blk_ops *ops, qt_scheme s, const void *src, size_t n_rows,
                            size_t n_cols, float *dst)
{
    size_t rb = qt_blk_row_bytes(s, n_cols);
    if (!rb || !src || !dst) return QT_ERR_ARG;
    if (!ops) ops = qt_blk_ops_active(s);
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < n_rows; r++)
        ops->dequantize((const unsigned char *)src + r * rb, dst + r * n_cols, n_cols);
    return QT_OK;
}
