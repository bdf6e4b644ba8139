/* convert/loftq.c: LoftQ for one weight matrix (see convert/loftq.h): the
 * alternating quantize / low-rank loop over quant/ kernels and
 * quant/lowrank's randomized SVD. */
#include "common/rng.h"
#include "convert/loftq.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Rows of the L.R product formed at a time (bounds the scratch). */
#define LR_CHUNK_ROWS 256

qt_loftq_opts qt_loftq_opts_default(void)
{
    qt_loftq_opts o = {0};
    o.iters = 1;
    o.scale = 1.0f;
    o.scheme = QT_SCHEME_NF4;
    o.block = 64;
    o.double_quant = true;
    o.oversample = 8;
    o.power_iters = 2;
    return o;
}

void qt_loftq_result_release(qt_loftq_result *res)
{
    if (!res) return;
    qt_free(res->codes);
    qt_free(res->absmax);
    qt_free(res->dq_codes);
    qt_free(res->dq_nested);
    qt_free(res->lora_a);
    qt_free(res->lora_b);
    memset(res, 0, sizeof(*res));
}

static qt_status check_opts(const qt_loftq_opts *o, size_t m, size_t n, char *errmsg)
{
    qt_status st = QT_OK;
    const size_t mn = m < n ? m : n;
    QT_CHECK(o->rank >= 1 && o->rank <= mn, QT_ERR_ARG,
             "LoftQ rank %zu out of range: 1..%zu for a [%zu, %zu] weight", o->rank, mn, m, n);
    QT_CHECK(o->iters >= 1, QT_ERR_ARG, "LoftQ iterations must be >= 1");
    QT_CHECK(o->scheme == QT_SCHEME_NF4 || o->scheme == QT_SCHEME_FP4, QT_ERR_ARG,
             "LoftQ supports the 4-bit schemes nf4 and fp4 only");
    QT_CHECK(qt_scheme_block_ok(o->scheme, o->block), QT_ERR_ARG, "LoftQ: block size %zu not allowed",
             o->block);
    QT_CHECK(isfinite(o->scale) && o->scale > 0.0f, QT_ERR_ARG, "LoftQ: LoRA scale must be > 0");
fail:
    return st;
}

/* deq = dequant(quant(src)) with the parts kept in res (the bytes written). */
static qt_status quant_dequant(const float *src, size_t m, size_t n, const qt_loftq_opts *o,
                               qt_loftq_result *res, float *deq)
{
    qt_status st = qt_nf4_quantize(NULL, o->scheme, QT_SRC_F32, src, m * n, o->block, res->codes,
                                   res->absmax);
    if (st != QT_OK) return st;
    qt_qweight qw = {.scheme = o->scheme, .n_out = m, .n_in = n, .block_size = o->block,
                     .data = res->codes, .absmax = res->absmax};
    if (o->double_quant) {
        st = qt_dq_quantize(res->absmax, res->n_blocks, res->dq_codes, res->dq_nested, &res->dq_offset);
        if (st != QT_OK) return st;
        qw.absmax_q = res->dq_codes;
        qw.nested_absmax = res->dq_nested;
        qw.nested_offset = res->dq_offset;
    }
    return qt_dequantize(NULL, &qw, QT_SRC_F32, deq);
}

/* With P = s.B.A formed LR_CHUNK_ROWS rows at a time: returns ||e - P||_F in
 * *err (e (m, n)), and when res_out is set writes w - P there (it may alias
 * e: each chunk is read before it is written). */
static qt_status lowrank_pass(const float *w, const float *e, size_t m, size_t n,
                              const qt_loftq_result *r, float scale, float *res_out,
                              float *chunk, double *err)
{
    double ss = 0.0;
    for (size_t i0 = 0; i0 < m; i0 += LR_CHUNK_ROWS) {
        const size_t nr = m - i0 < LR_CHUNK_ROWS ? m - i0 : LR_CHUNK_ROWS;
        qt_status st = qt_gemm_f32(qt_isa_active(), r->lora_b + i0 * r->rank, nr, r->rank, r->lora_a,
                                   n, chunk);
        if (st != QT_OK) return st;
        for (size_t i = 0; i < nr * n; i++) {
            const float p = scale * chunk[i];
            const double d = (double)e[i0 * n + i] - p;
            ss += d * d;
            if (res_out) res_out[i0 * n + i] = w[i0 * n + i] - p;
        }
    }
    *err = sqrt(ss);
    return QT_OK;
}

static double frobenius(const float *a, size_t n)
{
    double ss = 0.0;
    for (size_t i = 0; i < n; i++) ss += (double)a[i] * a[i];
    return sqrt(ss);
}

/* PEFT's default LoRA init: B = 0, A uniform in +-1/sqrt(n_in)
 * (kaiming_uniform with a = sqrt(5)), from a seeded stream. */
static void default_init(qt_loftq_result *r, uint64_t seed)
{
    const float bound = 1.0f / sqrtf((float)r->n_in);
    uint64_t s = seed ^ 0x5DEECE66Dull;
    for (size_t i = 0; i < r->rank * r->n_in; i++) {
        const float u = (float)(qt_splitmix64(&s) >> 40) * 0x1p-24f; /* [0, 1) exact */
        r->lora_a[i] = bound * (2.0f * u - 1.0f);
    }
    memset(r->lora_b, 0, r->n_out * r->rank * sizeof(float));
}

static qt_status alloc_result(qt_loftq_result *r, size_t m, size_t n, const qt_loftq_opts *o)
{
    size_t n_el, na, nbm;
    if (!qt_mul_size(m, n, &n_el) || !qt_mul_size(o->rank, n, &na) || !qt_mul_size(m, o->rank, &nbm))
        return QT_ERR_OVERFLOW;
    r->n_out = m, r->n_in = n, r->rank = o->rank;
    r->n_blocks = qt_n_blocks(n_el, o->block);
    r->codes = qt_malloc(qt_nf4_bytes(n_el));
    r->absmax = qt_malloc(r->n_blocks * sizeof(float));
    r->lora_a = qt_malloc(na * sizeof(float));
    r->lora_b = qt_malloc(nbm * sizeof(float));
    if (o->double_quant) {
        r->dq_codes = qt_malloc(r->n_blocks);
        r->dq_nested = qt_malloc(qt_dq_n_nested(r->n_blocks) * sizeof(float));
        if (!r->dq_codes || !r->dq_nested) return QT_ERR_NOMEM;
    }
    return (r->codes && r->absmax && r->lora_a && r->lora_b) ? QT_OK : QT_ERR_NOMEM;
}

qt_status qt_loftq_matrix(const float *w, size_t m, size_t n, const qt_loftq_opts *o,
                          qt_loftq_result *res, char *errmsg)
{
    qt_status st = QT_OK;
    float *work = NULL, *chunk = NULL, *l = NULL;
    memset(res, 0, sizeof(*res));
    QT_TRY(check_opts(o, m, n, errmsg));
    for (size_t i = 0; i < m * n; i++)
        QT_CHECK(isfinite(w[i]), QT_ERR_NUMERIC, "LoftQ: non-finite weight at element %zu", i);
    QT_CHECK((st = alloc_result(res, m, n, o)) == QT_OK, st, "LoftQ: out of memory");
    work = qt_malloc(m * n * sizeof(float));
    chunk = qt_malloc((m < LR_CHUNK_ROWS ? m : LR_CHUNK_ROWS) * n * sizeof(float));
    l = qt_malloc(m * o->rank * sizeof(float));
    QT_CHECK(work && chunk && l, QT_ERR_NOMEM, "LoftQ: out of memory");
    res->norm_w = frobenius(w, m * n);

    const float *src = w;
    for (unsigned it = 0; it < o->iters; it++) {
        /* E = W - dequant(quant(res)) */
        QT_CHECK((st = quant_dequant(src, m, n, o, res, work)) == QT_OK, st,
                 "LoftQ: quantization failed (%s)", qt_status_str(st));
        for (size_t i = 0; i < m * n; i++) work[i] = w[i] - work[i];
        if (it == 0) res->err_plain = frobenius(work, m * n);
        /* (L, R) = best rank r of E; stored as A = R, B = L / s. */
        QT_CHECK((st = qt_lowrank_rsvd(qt_isa_active(), work, m, n, o->rank, o->oversample,
                                       o->power_iters, o->seed + 0x9E3779B97F4A7C15ull * it, l,
                                       res->lora_a, NULL)) == QT_OK,
                 st, "LoftQ: low-rank factorization failed (%s)", qt_status_str(st));
        for (size_t i = 0; i < m * o->rank; i++) res->lora_b[i] = l[i] / o->scale;
        /* The error of Q + s.B.A, and res = W - s.B.A for the next round. */
        const bool last = it + 1 == o->iters;
        QT_CHECK((st = lowrank_pass(w, work, m, n, res, o->scale, last ? NULL : work, chunk,
                                    &res->err_loftq)) == QT_OK,
                 st, "LoftQ: out of memory");
        src = work;
    }
    res->used_loftq = res->err_loftq < res->err_plain;
    res->err_final = res->used_loftq ? res->err_loftq : res->err_plain;
    if (!res->used_loftq) {
        /* Never worse than plain QLoRA: the plain quantization of W. */
        QT_CHECK((st = quant_dequant(w, m, n, o, res, work)) == QT_OK, st,
                 "LoftQ: quantization failed (%s)", qt_status_str(st));
        default_init(res, o->seed);
    }
fail:
    if (st != QT_OK) qt_loftq_result_release(res);
    qt_free(work);
    qt_free(chunk);
    qt_free(l);
    return st;
}
