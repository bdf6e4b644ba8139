/* quant/qweight_quant.c: quantizing a whole weight matrix in any scheme
 * (the per-scheme choice of kernels, in one place). */
#include <string.h>

#include "quant/quant.h"

qt_status qt_qbuf_sizes_of(qt_scheme scheme, size_t block, bool double_quant, size_t n_out,
                           size_t n_in, qt_qbuf_sizes *out)
{
    memset(out, 0, sizeof *out);
    size_t n;
    if (!qt_mul_size(n_out, n_in, &n) || n == 0) return QT_ERR_OVERFLOW;
    switch (scheme) {
    case QT_SCHEME_NF4:
    case QT_SCHEME_FP4: {
        if (!block) return QT_ERR_ARG;
        size_t nb = qt_n_blocks(n, block);
        out->codes = qt_nf4_bytes(n);
        out->absmax = nb * sizeof(float);
        if (double_quant) {
            out->absmax_q = nb;
            out->nested = qt_dq_n_nested(nb) * sizeof(float);
        }
        return QT_OK;
    }
    case QT_SCHEME_INT8:
        out->codes = n;
        out->scb = n_out * sizeof(float);
        return QT_OK;
    case QT_SCHEME_Q8:
        if (!block) return QT_ERR_ARG;
        out->codes = qt_q8_bytes(n, block);
        return QT_OK;
    default: return QT_ERR_ARG;
    }
}

/* NF4 / FP4: codes and block absmax, then (double quant) the absmax
 * quantized once more with its mean as offset. */
static qt_status quantize4(const qt_kernels *k, qt_scheme scheme, size_t block, bool dq,
                           const float *dq_offset, const uint8_t *rcp, qt_src_type t,
                           const void *src, size_t n, const qt_qbuf *b, qt_qweight *q)
{
    qt_status st = qt_nf4_quantize_rcp(k, scheme, t, src, n, block, rcp, b->codes, b->absmax);
    if (st != QT_OK) return st;
    q->quant_map = scheme == QT_SCHEME_NF4 ? qt_nf4_map : qt_fp4_map;
    if (!dq) {
        q->absmax = b->absmax;
        return QT_OK;
    }
    const size_t nb = qt_n_blocks(n, block);
    if (dq_offset) {
        q->nested_offset = *dq_offset;
        st = qt_dq_quantize_with_offset(b->absmax, nb, *dq_offset, rcp, b->absmax_q, b->nested);
    } else {
        st = qt_dq_quantize_rcp(b->absmax, nb, rcp, b->absmax_q, b->nested, &q->nested_offset);
    }
    q->absmax_q = b->absmax_q;
    q->nested_absmax = b->nested;
    q->nested_map = qt_dynamic_map;
    return st;
}

qt_status qt_quantize_weight(const qt_kernels *k, qt_scheme scheme, size_t block,
                             bool double_quant, const float *dq_offset, qt_src_type t,
                             const void *src, size_t n_out, size_t n_in, const qt_qbuf *b,
                             qt_qweight *q)
{
    return qt_quantize_weight_rcp(k, scheme, block, double_quant, dq_offset, NULL, t, src, n_out,
                                  n_in, b, q);
}

qt_status qt_quantize_weight_rcp(const qt_kernels *k, qt_scheme scheme, size_t block,
                                 bool double_quant, const float *dq_offset, const uint8_t *rcp,
                                 qt_src_type t, const void *src, size_t n_out, size_t n_in,
                                 const qt_qbuf *b, qt_qweight *q)
{
    memset(q, 0, sizeof *q);
    q->scheme = scheme;
    q->n_out = n_out;
    q->n_in = n_in;
    q->block_size = scheme == QT_SCHEME_INT8 ? 0 : block;
    q->data = b->codes;
    const size_t n = n_out * n_in;
    switch (scheme) {
    case QT_SCHEME_NF4:
    case QT_SCHEME_FP4:
        return quantize4(k, scheme, block, double_quant, dq_offset, rcp, t, src, n, b, q);
    case QT_SCHEME_INT8:
        q->scb = b->scb;
        return qt_int8_quantize_rcp(k, t, src, n_out, n_in, rcp, b->codes, b->scb);
    case QT_SCHEME_Q8: return qt_q8_quantize(k, t, src, n, block, b->codes);
    default: return QT_ERR_ARG;
    }
}
