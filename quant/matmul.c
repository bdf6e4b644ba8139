/* quant/matmul.c: quantized weights (qt_qweight) through the scheme table:
 * validation, dequantization of flat element ranges and prefetching, each
 * delegated to the scheme's hooks (qt_scheme_ops, quant/weights.c for the
 * built-in schemes; no per-scheme code here), the scalar conversions of
 * qt_mm_ops and the scalar dot definitions. The threaded drivers are in
 * driver.c. */
#include "quant/quant.h"

#include "quant/quant_internal.h"

/* The scheme hooks of w, or NULL when its scheme has none. */
static const qt_scheme_ops *scheme_ops(const qt_qweight *w)
{
    const qt_scheme_info *si = qt_scheme_get(w->scheme);
    return si ? si->ops : NULL;
}

qt_status qt_qweight_check(const qt_qweight *w)
{
    if (!w || w->n_out == 0 || w->n_in == 0 || !w->data) return QT_ERR_ARG;
    size_t n;
    if (!qt_mul_size(w->n_out, w->n_in, &n) || n > SIZE_MAX / 8) return QT_ERR_OVERFLOW;
    const qt_scheme_ops *so = scheme_ops(w);
    return so ? so->check(w) : QT_ERR_ARG;
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
    .nr = 0, .mr = 0, .cvt_half = qt_cvt_half_ref, .cvt_i8 = qt_cvt_i8_ref,
    .cvt_map8 = qt_cvt_map8_ref, .pack = NULL, .pack_half = NULL, .gemm = NULL, .dot_rows = {NULL},
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

/* ---- dequantization of flat element ranges, through the scheme hooks ---- */

void qt_dq_ctx_init(qt_dq_ctx *c, const qt_kernels *k, const qt_qweight *w)
{
    if (!k) k = qt_kernels_active();
    c->w = w;
    c->k = k;
    c->ops = qt_mm_ops_for(k);
    c->so = scheme_ops(w);
    if (c->so->init) c->so->init(c);
}

void qt_dq_range(const qt_dq_ctx *c, size_t i0, size_t len, float *dst)
{
    c->so->dq_range(c, i0, len, dst);
}

void qt_dq_prefetch(const qt_dq_ctx *c, size_t i0, size_t len)
{
    if (len == 0) return;
    size_t b0, b1;
    c->so->byte_range(c->w, i0, len, &b0, &b1);
    const char *base = c->w->data;
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

void qt_dot_rows_ref(const float *rows, size_t n_in, size_t nr, const float *x, float *y)
{
    for (size_t j = 0; j < nr; j++) {
        const float *w = rows + j * n_in;
        float s = 0.0f;
        for (size_t i = 0; i < n_in; i++) s = fmaf(x[i], w[i], s);
        y[j] = s;
    }
}
