/* quant/weights.c: the stored-weight hooks (qt_scheme_ops, quant_internal.h)
 * of the built-in schemes: what each scheme needs beyond the common checks,
 * its maps resolved once, dequantization of a flat element range (spec §5
 * arithmetic) and where the bytes of a range lie. quant/matmul.c and the
 * drivers only call these through the scheme table.
 *
 * Blocks of nf4/fp4/int8-blockwise/q8 run over the flattened tensor, so a
 * row may start and end inside a block (e.g. n_in 172 with block 64): every
 * range is walked block by block. */
#include "quant/quant.h"

#include "quant/quant_internal.h"

#include <math.h>

/* End of the block segment that starts at flat element i (block B), capped
 * at end: the loops below dequantize one segment per scale. */
static size_t seg_end(size_t i, size_t B, size_t end)
{
    size_t e = (i / B + 1) * B;
    return e < end ? e : end;
}

/* Bytes [*b0, *b1) of the whole blocks (B elements in bb bytes each) that
 * hold flat elements [i0, i0 + len), len > 0. */
static void block_bytes(size_t B, size_t bb, size_t i0, size_t len, size_t *b0, size_t *b1)
{
    *b0 = i0 / B * bb;
    *b1 = ((i0 + len - 1) / B + 1) * bb;
}

/* ---- nf4 / fp4 ----------------------------------------------------------- */

static qt_status check4(const qt_qweight *w)
{
    if (!qt_scheme_block_ok(w->scheme, w->block_size) || (unsigned)w->round_to >= QT_SRC_COUNT)
        return QT_ERR_ARG;
    return (w->absmax_q ? !w->nested_absmax : !w->absmax) ? QT_ERR_ARG : QT_OK;
}

/* The 16-entry map (the file's, or the built-in) and the nested map. */
static void init4(qt_dq_ctx *c)
{
    const qt_qweight *w = c->w;
    if (w->quant_map) memcpy(c->map4, w->quant_map, sizeof c->map4);
    else memcpy(c->map4, w->scheme == QT_SCHEME_NF4 ? qt_nf4_map : qt_fp4_map, sizeof c->map4);
    if (w->absmax_q)
        memcpy(c->nmap, w->nested_map ? w->nested_map : (const void *)qt_dynamic_map,
               sizeof c->nmap);
    c->hk = qt_half_kernels_for(c->k->isa);
}

/* First-level scale of 4-bit block j (nested: spec §5, two roundings). */
static float block_scale4(const qt_dq_ctx *c, size_t j)
{
    const qt_qweight *w = c->w;
    if (!w->absmax_q) return qt_ldf(w->absmax, j);
    float a = c->nmap[w->absmax_q[j]] * qt_ldf(w->nested_absmax, j / QT_DQ_BLOCK);
    return a + w->nested_offset;
}

bool qt_4bit_scales_rows(const qt_dq_ctx *c, size_t r0, size_t nr, size_t rows, size_t b0,
                         size_t nb, float *dst)
{
    const size_t nb_row = c->w->n_in / c->w->block_size;
    bool finite = true;
    for (size_t b = 0; b < nb; b++)
        for (size_t i = 0; i < rows; i++) {
            const size_t r = r0 + (i < nr ? i : 0);
            const float s = block_scale4(c, r * nb_row + b0 + b);
            finite &= isfinite(s) != 0;
            dst[b * rows + i] = s;
        }
    return finite;
}

/* Rounds v[0..n) to bf16 / fp16 values (nearest even), exactly, through
 * the ISA's row conversions (bit-identical to qt_fp32_to_bf16 / _fp16),
 * a stack buffer of halves at a time. */
static void round_values(const qt_dq_ctx *c, float *v, size_t n)
{
    const qt_src_type t = c->w->round_to;
    if (t != QT_SRC_BF16 && t != QT_SRC_F16) return;
    uint16_t h[256];
    for (size_t i = 0; i < n; i += 256) {
        const size_t m = n - i < 256 ? n - i : 256;
        if (t == QT_SRC_BF16) {
            c->hk->fp32_to_bf16(v + i, h, m);
            c->hk->bf16_to_fp32(h, v + i, m);
        } else {
            c->hk->fp32_to_fp16(v + i, h, m);
            c->hk->fp16_to_fp32(h, v + i, m);
        }
    }
}

static void range4(const qt_dq_ctx *c, size_t i0, size_t len, float *dst)
{
    const size_t end = i0 + len, B = c->w->block_size;
    for (size_t i = i0; i < end;) {
        size_t e = seg_end(i, B, end);
        c->k->dequant4(c->w->data, i, e - i, c->map4, block_scale4(c, i / B), dst + (i - i0));
        i = e;
    }
    round_values(c, dst, len); /* bitsandbytes' output dtype */
}

static void bytes4(const qt_qweight *w, size_t i0, size_t len, size_t *b0, size_t *b1)
{
    (void)w;
    *b0 = i0 / 2;
    *b1 = (i0 + len + 1) / 2;
}

/* absmax: float32 per block, or (double quant) a byte per block plus the
 * nested float32 per 256 blocks */
static uint64_t scales4(const qt_qweight *w)
{
    const uint64_t nb = qt_n_blocks(w->n_out * w->n_in, w->block_size);
    return w->absmax_q ? nb + 4 * qt_dq_n_nested(nb) : 4 * nb;
}

const qt_scheme_ops qt_ops_4bit = {check4, init4, range4, bytes4, scales4};

/* ---- int8-blockwise ------------------------------------------------------ */

static qt_status check_bw8(const qt_qweight *w)
{
    return qt_scheme_block_ok(w->scheme, w->block_size) && w->absmax ? QT_OK : QT_ERR_ARG;
}

static void init_bw8(qt_dq_ctx *c)
{
    memcpy(c->map8, c->w->quant_map ? c->w->quant_map : (const void *)qt_dynamic_map,
           sizeof c->map8);
}

static void range_bw8(const qt_dq_ctx *c, size_t i0, size_t len, float *dst)
{
    const size_t end = i0 + len, B = c->w->block_size;
    const uint8_t *code = c->w->data;
    for (size_t i = i0; i < end;) {
        size_t e = seg_end(i, B, end);
        c->ops->cvt_map8(code + i, e - i, c->map8, qt_ldf(c->w->absmax, i / B), dst + (i - i0));
        i = e;
    }
}

/* One byte per element (int8-blockwise codes, LLM.int8 CB). */
static void bytes_1(const qt_qweight *w, size_t i0, size_t len, size_t *b0, size_t *b1)
{
    (void)w;
    *b0 = i0;
    *b1 = i0 + len;
}

static uint64_t scales_bw8(const qt_qweight *w)
{
    return 4 * (uint64_t)qt_n_blocks(w->n_out * w->n_in, w->block_size);
}

const qt_scheme_ops qt_ops_blockwise8 = {check_bw8, init_bw8, range_bw8, bytes_1, scales_bw8};

/* ---- q8 ------------------------------------------------------------------ */

static qt_status check_q8(const qt_qweight *w)
{
    return qt_scheme_block_ok(w->scheme, w->block_size) ? QT_OK : QT_ERR_ARG;
}

/* (float)q * d, then * 1.0f: exact, the same value. */
static void range_q8(const qt_dq_ctx *c, size_t i0, size_t len, float *dst)
{
    const size_t end = i0 + len, B = c->w->block_size;
    const size_t bb = qt_q8_block_bytes(B), hdr = B == 32 ? 2 : 4;
    const unsigned char *base = c->w->data;
    for (size_t i = i0; i < end;) {
        size_t j = i / B, e = seg_end(i, B, end);
        const unsigned char *blk = base + j * bb;
        float d = B == 32 ? qt_fp16_to_fp32(qt_load_le16(blk)) : qt_ldf(blk, 0);
        const int8_t *qs = (const int8_t *)(blk + hdr);
        c->ops->cvt_i8(qs + (i - j * B), e - i, d, 1.0f, dst + (i - i0));
        i = e;
    }
}

static void bytes_q8(const qt_qweight *w, size_t i0, size_t len, size_t *b0, size_t *b1)
{
    block_bytes(w->block_size, qt_q8_block_bytes(w->block_size), i0, len, b0, b1);
}

const qt_scheme_ops qt_ops_q8 = {check_q8, NULL, range_q8, bytes_q8, NULL};

/* ---- LLM.int8 row-wise --------------------------------------------------- */

static qt_status check_int8(const qt_qweight *w)
{
    return w->scb ? QT_OK : QT_ERR_ARG;
}

/* bnb: A * SCB * (1/127), row by row. */
static void range_int8(const qt_dq_ctx *c, size_t i0, size_t len, float *dst)
{
    const size_t end = i0 + len, n_in = c->w->n_in;
    const int8_t *cb = c->w->data;
    for (size_t i = i0; i < end;) {
        size_t r = i / n_in, e = seg_end(i, n_in, end);
        c->ops->cvt_i8(cb + i, e - i, qt_ldf(c->w->scb, r), 7.874015718698502e-3f,
                       dst + (i - i0));
        i = e;
    }
}

static uint64_t scales_int8(const qt_qweight *w)
{
    return 4 * (uint64_t)w->n_out; /* SCB */
}

const qt_scheme_ops qt_ops_int8 = {check_int8, NULL, range_int8, bytes_1, scales_int8};

/* ---- plain bf16 / fp16 / fp32 -------------------------------------------- */

static qt_status check_plain(const qt_qweight *w)
{
    (void)w;
    return QT_OK;
}

static void range_half(const qt_dq_ctx *c, size_t i0, size_t len, float *dst)
{
    c->ops->cvt_half(c->w->scheme == QT_SCHEME_BF16,
                     (const unsigned char *)c->w->data + 2 * i0, len, dst);
}

static void bytes_half(const qt_qweight *w, size_t i0, size_t len, size_t *b0, size_t *b1)
{
    (void)w;
    *b0 = 2 * i0;
    *b1 = 2 * (i0 + len);
}

const qt_scheme_ops qt_ops_half = {check_plain, NULL, range_half, bytes_half, NULL};

static void range_f32(const qt_dq_ctx *c, size_t i0, size_t len, float *dst)
{
    memcpy(dst, (const unsigned char *)c->w->data + 4 * i0, 4 * len);
}

static void bytes_f32(const qt_qweight *w, size_t i0, size_t len, size_t *b0, size_t *b1)
{
    (void)w;
    *b0 = 4 * i0;
    *b1 = 4 * (i0 + len);
}

const qt_scheme_ops qt_ops_f32 = {check_plain, NULL, range_f32, bytes_f32, NULL};

/* ---- GGML block types (q4_0 .. q6_k; GGUF tensors) --------------------------
 * Rows are whole blocks (GGUF requires ne[0] to be a multiple of the block),
 * so the flat element range is walked block by block; a block cut by the
 * range is dequantized whole into a small buffer. The ISA's dequantizer is
 * ggml's arithmetic exactly on every ISA (quant.h). */

static qt_status check_blk(const qt_qweight *w)
{
    const qt_scheme_info *si = qt_scheme_get(w->scheme);
    if (!si || !si->block_bytes || !qt_blk_ops_for(QT_ISA_REF, w->scheme)) return QT_ERR_ARG;
    return w->n_in % si->default_block == 0 ? QT_OK : QT_ERR_ARG;
}

/* The scheme's row and block ops, once per weight (dq_range runs per tile). */
static void init_blk(qt_dq_ctx *c)
{
    c->si = qt_scheme_get(c->w->scheme);
    c->blk = qt_blk_ops_for(c->k->isa, c->w->scheme);
    if (!c->blk) c->blk = qt_blk_ops_for(QT_ISA_REF, c->w->scheme);
}

static void range_blk(const qt_dq_ctx *c, size_t i0, size_t len, float *dst)
{
    const qt_blk_ops *o = c->blk;
    const size_t B = c->si->default_block, bb = c->si->block_bytes, end = i0 + len;
    const unsigned char *base = c->w->data;
    float tmp[QT_QK_K];
    for (size_t i = i0; i < end;) {
        size_t j = i / B, e = seg_end(i, B, end);
        if (i == j * B && e == (j + 1) * B) { /* whole blocks straight to dst */
            size_t nb = (end - i) / B;
            o->dequantize(base + j * bb, dst + (i - i0), nb * B);
            i += nb * B;
            continue;
        }
        o->dequantize(base + j * bb, tmp, B);
        memcpy(dst + (i - i0), tmp + (i - j * B), (e - i) * sizeof *tmp);
        i = e;
    }
}

static void bytes_blk(const qt_qweight *w, size_t i0, size_t len, size_t *b0, size_t *b1)
{
    const qt_scheme_info *si = qt_scheme_get(w->scheme);
    block_bytes(si->default_block, si->block_bytes, i0, len, b0, b1);
}

/* The block scales are inside the blocks: counted by byte_range. */
const qt_scheme_ops qt_ops_blk = {check_blk, init_blk, range_blk, bytes_blk, NULL};
