/* quant/matmul.c: quantized weights (qt_qweight): validation, dequantization
 * of a run of rows (spec §5 arithmetic for every scheme) and the scalar dot
 * tile. The threaded drivers are in driver.c.
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

/* First-level scale of 4-bit block j (nested: spec §5, two roundings). */
static float block_scale(const qt_qweight *w, const float *nmap, size_t j)
{
    if (!w->absmax_q) return qt_ldf(w->absmax, j);
    float a = nmap[w->absmax_q[j]] * qt_ldf(w->nested_absmax, j / QT_DQ_BLOCK);
    return a + w->nested_offset;
}

/* Flat elements [i0, i0+len) of w into dst. */
static void dequant_flat(const qt_kernels *k, const qt_qweight *w, size_t i0, size_t len,
                         float *dst)
{
    const size_t end = i0 + len, B = w->block_size;
    switch (w->scheme) {
    case QT_SCHEME_NF4:
    case QT_SCHEME_FP4: {
        float map[16], nmapbuf[256];
        const float *nmap = qt_dynamic_map;
        if (w->quant_map) memcpy(map, w->quant_map, sizeof map);
        else memcpy(map, w->scheme == QT_SCHEME_NF4 ? qt_nf4_map : qt_fp4_map, sizeof map);
        if (w->absmax_q && w->nested_map) {
            memcpy(nmapbuf, w->nested_map, sizeof nmapbuf);
            nmap = nmapbuf;
        }
        for (size_t i = i0; i < end;) {
            size_t j = i / B, seg = (j + 1) * B < end ? (j + 1) * B : end;
            k->dequant4(w->data, i, seg - i, map, block_scale(w, nmap, j), dst + (i - i0));
            i = seg;
        }
        break;
    }
    case QT_SCHEME_INT8_BLOCKWISE: {
        float mapbuf[256];
        const float *map = qt_dynamic_map;
        if (w->quant_map) {
            memcpy(mapbuf, w->quant_map, sizeof mapbuf);
            map = mapbuf;
        }
        const uint8_t *c = w->data;
        for (size_t i = i0; i < end;) {
            size_t j = i / B, seg = (j + 1) * B < end ? (j + 1) * B : end;
            float a = qt_ldf(w->absmax, j);
            for (; i < seg; i++) dst[i - i0] = map[c[i]] * a;
        }
        break;
    }
    case QT_SCHEME_Q8: {
        size_t bb = qt_q8_block_bytes(B), hdr = B == 32 ? 2 : 4;
        const unsigned char *base = w->data;
        for (size_t i = i0; i < end;) {
            size_t j = i / B, seg = (j + 1) * B < end ? (j + 1) * B : end;
            const unsigned char *blk = base + j * bb;
            float d = B == 32 ? qt_fp16_to_fp32(qt_load_le16(blk)) : qt_ldf(blk, 0);
            const int8_t *qs = (const int8_t *)(blk + hdr);
            for (; i < seg; i++) dst[i - i0] = (float)qs[i - j * B] * d;
        }
        break;
    }
    case QT_SCHEME_INT8: {
        const int8_t *cb = w->data;
        for (size_t i = i0; i < end; i++) {
            float s = qt_ldf(w->scb, i / w->n_in);
            float v = (float)cb[i] * s;
            dst[i - i0] = v * 7.874015718698502e-3f; /* bnb: A * SCB * (1/127) */
        }
        break;
    }
    case QT_SCHEME_BF16:
        for (size_t i = i0; i < end; i++) dst[i - i0] = qt_ld(QT_SRC_BF16, w->data, i);
        break;
    case QT_SCHEME_FP16:
        for (size_t i = i0; i < end; i++) dst[i - i0] = qt_ld(QT_SRC_F16, w->data, i);
        break;
    default:
        memcpy(dst, (const unsigned char *)w->data + 4 * i0, 4 * len);
        break;
    }
}

void qt_qweight_rows(const qt_kernels *k, const qt_qweight *w, size_t r0, size_t nr, float *dst)
{
    if (!k) k = qt_kernels_active();
    dequant_flat(k, w, r0 * w->n_in, nr * w->n_in, dst);
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
