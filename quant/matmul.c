/* quant/matmul.c: quantized weights (qt_qweight): validation, dequantization
 * of a run of rows (spec §5 arithmetic for every scheme) and the scalar dot
 * tile, the scalar conversions of qt_mm_ops (quant_internal.h). The
 * threaded drivers are in driver.c.
 *
 * Blocks of nf4/fp4/int8-blockwise/q8 run over the flattened tensor, so a
 * row may start and end inside a block (e.g. n_in 172 with block 64): rows
 * are dequantized as flat element ranges, block by block. */
#include "quant/quant.h"

#include "quant/quant_internal.h"

qt_status qt_qweight_check(const qt_qweight *w)
{
    if (!w || w->n_out == 0 || w->n_in == 0 || !w->data) return QT_ERR_ARG;
    size_t n;
    if (!qt_mul_size(w->n_out, w->n_in, &n) || n > SIZE_MAX / 8) return QT_ERR_OVERFLOW;
    switch (w->scheme) {
    case QT_SCHEME_NF4:
    case QT_SCHEME_FP4:
        if (!qt_scheme_block_ok(w->scheme, w->block_size)) return QT_ERR_ARG;
        if (w->absmax_q ? !w->nested_absmax : !w->absmax) return QT_ERR_ARG;
        return QT_OK;
    case QT_SCHEME_INT8_BLOCKWISE:
        if (!qt_scheme_block_ok(w->scheme, w->block_size) || !w->absmax) return QT_ERR_ARG;
        return QT_OK;
    case QT_SCHEME_Q8: return qt_scheme_block_ok(w->scheme, w->block_size) ? QT_OK : QT_ERR_ARG;
    case QT_SCHEME_INT8: return w->scb ? QT_OK : QT_ERR_ARG;
    case QT_SCHEME_BF16:
    case QT_SCHEME_FP16:
    case QT_SCHEME_FP32: return QT_OK;
    default: return QT_ERR_ARG;
    }
}

/* ---- scalar conversions (the definitions; SIMD ones are bit-identical) ---- */

void qt_cvt_half_ref(bool bf16, const void *src, size_t n, float *dst)
{
    const qt_src_type t = bf16 ? QT_SRC_BF16 : QT_SRC_F16;
    for (size_t i = 0; i < n; i++) dst[i] = qt_ld(t, src, i);
}

void qt_cvt_i8_ref(const int8_t *q, size_t n, float s, float c, float *dst)
{
    for (size_t i = 0; i < n; i++) {
        float v = (float)q[i] * s;
        dst[i] = v * c;
    }
}

void qt_cvt_map8_ref(const uint8_t *code, size_t n, const float map[256], float a, float *dst)
{
    for (size_t i = 0; i < n; i++) dst[i] = map[code[i]] * a;
}

const qt_mm_ops qt_mm_ops_ref = {
    0, 0, qt_cvt_half_ref, qt_cvt_i8_ref, qt_cvt_map8_ref, NULL, NULL, NULL,
};

const qt_mm_ops *qt_mm_ops_for(const qt_kernels *k)
{
#if defined(__x86_64__)
    if (k && k->isa == QT_ISA_AVX512) return &qt_mm_ops_avx512;
    if (k && k->isa == QT_ISA_AVX2) return &qt_mm_ops_avx2;
#else
    (void)k;
#endif
    return &qt_mm_ops_ref;
}

/* ---- dequantization of flat element ranges -------------------------------- */

void qt_dq_ctx_init(qt_dq_ctx *c, const qt_kernels *k, const qt_qweight *w)
{
    if (!k) k = qt_kernels_active();
    c->w = w;
    c->k = k;
    c->ops = qt_mm_ops_for(k);
    if (w->scheme == QT_SCHEME_NF4 || w->scheme == QT_SCHEME_FP4) {
        if (w->quant_map) memcpy(c->map4, w->quant_map, sizeof c->map4);
        else memcpy(c->map4, w->scheme == QT_SCHEME_NF4 ? qt_nf4_map : qt_fp4_map, sizeof c->map4);
        if (w->absmax_q)
            memcpy(c->nmap, w->nested_map ? w->nested_map : (const void *)qt_dynamic_map,
                   sizeof c->nmap);
    } else if (w->scheme == QT_SCHEME_INT8_BLOCKWISE) {
        memcpy(c->map8, w->quant_map ? w->quant_map : (const void *)qt_dynamic_map,
               sizeof c->map8);
    }
}

/* First-level scale of 4-bit block j (nested: spec §5, two roundings). */
static float block_scale(const qt_dq_ctx *c, size_t j)
{
    const qt_qweight *w = c->w;
    if (!w->absmax_q) return qt_ldf(w->absmax, j);
    float a = c->nmap[w->absmax_q[j]] * qt_ldf(w->nested_absmax, j / QT_DQ_BLOCK);
    return a + w->nested_offset;
}

void qt_dq_range(const qt_dq_ctx *c, size_t i0, size_t len, float *dst)
{
    const qt_qweight *w = c->w;
    const qt_mm_ops *ops = c->ops;
    const size_t end = i0 + len, B = w->block_size;
    switch (w->scheme) {
    case QT_SCHEME_NF4:
    case QT_SCHEME_FP4:
        for (size_t i = i0; i < end;) {
            size_t j = i / B, seg = (j + 1) * B < end ? (j + 1) * B : end;
            c->k->dequant4(w->data, i, seg - i, c->map4, block_scale(c, j), dst + (i - i0));
            i = seg;
        }
        break;
    case QT_SCHEME_INT8_BLOCKWISE: {
        const uint8_t *code = w->data;
        for (size_t i = i0; i < end;) {
            size_t j = i / B, seg = (j + 1) * B < end ? (j + 1) * B : end;
            ops->cvt_map8(code + i, seg - i, c->map8, qt_ldf(w->absmax, j), dst + (i - i0));
            i = seg;
        }
        break;
    }
    case QT_SCHEME_Q8: {
        /* (float)q * d, then * 1.0f: exact, the same value */
        const size_t bb = qt_q8_block_bytes(B), hdr = B == 32 ? 2 : 4;
        const unsigned char *base = w->data;
        for (size_t i = i0; i < end;) {
            size_t j = i / B, seg = (j + 1) * B < end ? (j + 1) * B : end;
            const unsigned char *blk = base + j * bb;
            float d = B == 32 ? qt_fp16_to_fp32(qt_load_le16(blk)) : qt_ldf(blk, 0);
            const int8_t *qs = (const int8_t *)(blk + hdr);
            ops->cvt_i8(qs + (i - j * B), seg - i, d, 1.0f, dst + (i - i0));
            i = seg;
        }
        break;
    }
    case QT_SCHEME_INT8: {
        /* bnb: A * SCB * (1/127), row by row */
        const int8_t *cb = w->data;
        for (size_t i = i0; i < end;) {
            size_t r = i / w->n_in, seg = (r + 1) * w->n_in < end ? (r + 1) * w->n_in : end;
            ops->cvt_i8(cb + i, seg - i, qt_ldf(w->scb, r), 7.874015718698502e-3f,
                        dst + (i - i0));
            i = seg;
        }
        break;
    }
    case QT_SCHEME_BF16:
    case QT_SCHEME_FP16:
        ops->cvt_half(w->scheme == QT_SCHEME_BF16,
                      (const unsigned char *)w->data + 2 * i0, len, dst);
        break;
    default:
        memcpy(dst, (const unsigned char *)w->data + 4 * i0, 4 * len);
        break;
    }
}

void qt_dq_prefetch(const qt_dq_ctx *c, size_t i0, size_t len)
{
    const qt_qweight *w = c->w;
    if (len == 0) return;
    size_t b0, b1; /* byte range of the codes / values */
    switch (w->scheme) {
    case QT_SCHEME_NF4:
    case QT_SCHEME_FP4:
        b0 = i0 / 2;
        b1 = (i0 + len + 1) / 2;
        break;
    case QT_SCHEME_Q8: {
        const size_t bb = qt_q8_block_bytes(w->block_size);
        b0 = i0 / w->block_size * bb;
        b1 = ((i0 + len - 1) / w->block_size + 1) * bb;
        break;
    }
    case QT_SCHEME_INT8:
    case QT_SCHEME_INT8_BLOCKWISE:
        b0 = i0;
        b1 = i0 + len;
        break;
    case QT_SCHEME_BF16:
    case QT_SCHEME_FP16:
        b0 = 2 * i0;
        b1 = 2 * (i0 + len);
        break;
    default:
        b0 = 4 * i0;
        b1 = 4 * (i0 + len);
        break;
    }
    const char *base = w->data;
    for (size_t b = b0 & ~(size_t)63; b < b1; b += 64) __builtin_prefetch(base + b, 0, 3);
}

void qt_qweight_rows(const qt_kernels *k, const qt_qweight *w, size_t r0, size_t nr, float *dst)
{
    qt_dq_ctx c;
    qt_dq_ctx_init(&c, k, w);
    qt_dq_range(&c, r0 * w->n_in, nr * w->n_in, dst);
}

void qt_dot_tile_ref(const float *x, size_t ldx, size_t n_tok, const float *w, size_t ldw,
                     size_t n_rows, size_t n, float *y, size_t ldy)
{
    for (size_t t = 0; t < n_tok; t++)
        for (size_t r = 0; r < n_rows; r++) {
            const float *xr = x + t * ldx;
            const unsigned char *wr = (const unsigned char *)(w + r * ldw);
            float s = 0.0f;
            for (size_t i = 0; i < n; i++) s += xr[i] * qt_ldf(wr, i);
            y[t * ldy + r] = s;
        }
}
