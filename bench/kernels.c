/* bench/kernels.c: kernel throughput (`qtool bench kernels`).
 *
 * Data: synthetic gaussian weights (sum of four uniforms, sigma 0.02, fixed
 * seed) in the Llama-7B shapes 4096x4096 (q/k/v/o) and 11008x4096 (mlp), held
 * as fp32, fp16 or bf16. For each benchmark scheme, ISA, input type and
 * thread count: quantize (and dequantize) throughput as parameters/s and GB/s
 * of input, next to memcpy of a buffer of the same size measured in the same
 * run with the same threads, and the ratio. Matmul: y (64 x n_out) =
 * x (64 x n_in) . W^T for each scheme against fp32 weights. Every result is
 * checked against the _ref kernels (quantized bytes identical; matmul within
 * a relative tolerance) before it is timed. */
#include "bench/bench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/half.h"
#include "quant/quant.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define MATMUL_TOKENS 64
#define MATMUL_REL_TOL 1e-4

double qt_bench_best(void (*fn)(void *payload), void *payload, int warmup, int reps,
                     double min_seconds)
{
    for (int i = 0; i < warmup; i++) fn(payload);
    double best = INFINITY, total = 0;
    for (int i = 0; i < reps || (total < min_seconds && i < 100 * reps) || i == 0; i++) {
        double t0 = qt_now();
        fn(payload);
        double dt = qt_now() - t0;
        total += dt;
        if (dt < best) best = dt;
    }
    return best;
}

/* ---- the schemes benchmarked ---------------------------------------------- */

typedef struct bscheme {
    const char *name;
    qt_scheme scheme;
    bool dq;      /* nf4/fp4 with double quantization */
    size_t block; /* 0 = row-wise */
} bscheme;

static const bscheme bschemes[] = {
    {"nf4-dq", QT_SCHEME_NF4, true, 64},  {"nf4", QT_SCHEME_NF4, false, 64},
    {"fp4", QT_SCHEME_FP4, false, 64},    {"q8", QT_SCHEME_Q8, false, 32},
    {"int8", QT_SCHEME_INT8, false, 0},   {"int8-blockwise", QT_SCHEME_INT8_BLOCKWISE, false, 4096},
    /* GGML block types (rows of whole blocks; q8 above is Q8_0) */
    {"q4_0", QT_SCHEME_Q4_0, false, 32},  {"q5_0", QT_SCHEME_Q5_0, false, 32},
    {"q2_k", QT_SCHEME_Q2_K, false, 256}, {"q3_k", QT_SCHEME_Q3_K, false, 256},
    {"q4_k", QT_SCHEME_Q4_K, false, 256}, {"q5_k", QT_SCHEME_Q5_K, false, 256},
    {"q6_k", QT_SCHEME_Q6_K, false, 256},
};
#define N_BSCHEMES (sizeof bschemes / sizeof bschemes[0])

/* Quantized output buffers for one tensor. */
typedef struct qbuf {
    uint8_t *codes; /* nf4/fp4 packed, blockwise8 codes, int8 CB, q8 blocks */
    float *absmax;  /* (nb,) or SCB (rows,) */
    uint8_t *qa;    /* nested codes */
    float nested[4096], offset;
    size_t codes_bytes, absmax_n;
} qbuf;

typedef struct qjob {
    const qt_kernels *k;
    const bscheme *s;
    qt_src_type t;
    const void *src;
    size_t rows, cols;
    qbuf *out;
    qt_status st;
} qjob;

static void qbuf_sizes(const bscheme *s, size_t rows, size_t cols, size_t *cbytes, size_t *an)
{
    size_t n = rows * cols;
    switch (s->scheme) {
    case QT_SCHEME_NF4:
    case QT_SCHEME_FP4:
        *cbytes = qt_nf4_bytes(n);
        *an = qt_n_blocks(n, s->block);
        break;
    case QT_SCHEME_Q8:
        *cbytes = qt_q8_bytes(n, s->block);
        *an = 0;
        break;
    case QT_SCHEME_INT8:
        *cbytes = n;
        *an = rows;
        break;
    case QT_SCHEME_INT8_BLOCKWISE:
        *cbytes = n;
        *an = qt_n_blocks(n, s->block);
        break;
    default: /* GGML block types */
        *cbytes = rows * qt_blk_row_bytes(s->scheme, cols);
        *an = 0;
        break;
    }
}
static bool qbuf_init(qbuf *b, const bscheme *s, size_t rows, size_t cols)
{
    memset(b, 0, sizeof *b);
    qbuf_sizes(s, rows, cols, &b->codes_bytes, &b->absmax_n);
    b->codes = qt_aligned_alloc(64, b->codes_bytes);
    b->absmax = qt_aligned_alloc(64, (b->absmax_n + 1) * sizeof(float));
    b->qa = qt_aligned_alloc(64, b->absmax_n + 1);
    return b->codes && b->absmax && b->qa;
}

static void qbuf_release(qbuf *b)
{
    qt_aligned_free(b->codes);
    qt_aligned_free(b->absmax);
    qt_aligned_free(b->qa);
    memset(b, 0, sizeof *b);
}

static bool qbuf_equal(const qbuf *a, const qbuf *b, bool dq)
{
    if (memcmp(a->codes, b->codes, a->codes_bytes)) return false;
    if (memcmp(a->absmax, b->absmax, a->absmax_n * sizeof(float))) return false;
    if (dq) {
        if (memcmp(a->qa, b->qa, a->absmax_n)) return false;
        if (memcmp(a->nested, b->nested, qt_dq_n_nested(a->absmax_n) * sizeof(float))) return false;
        if (qt_f32_bits(a->offset) != qt_f32_bits(b->offset)) return false;
    }
    return true;
}

static void run_quant(void *p)
{
    qjob *j = p;
    const bscheme *s = j->s;
    size_t n = j->rows * j->cols;
    qbuf *o = j->out;
    switch (s->scheme) {
    case QT_SCHEME_NF4:
    case QT_SCHEME_FP4:
        j->st = qt_nf4_quantize(j->k, s->scheme, j->t, j->src, n, s->block, o->codes, o->absmax);
        if (j->st == QT_OK && s->dq)
            j->st = qt_dq_quantize(o->absmax, o->absmax_n, o->qa, o->nested, &o->offset);
        break;
    case QT_SCHEME_Q8: j->st = qt_q8_quantize(j->k, j->t, j->src, n, s->block, o->codes); break;
    case QT_SCHEME_INT8:
        j->st = qt_int8_quantize(j->k, j->t, j->src, j->rows, j->cols, (int8_t *)o->codes,
                                 o->absmax);
        break;
    case QT_SCHEME_INT8_BLOCKWISE:
        j->st = qt_blockwise8_quantize(j->k, j->t, j->src, n, s->block, o->codes, o->absmax);
        break;
    default: /* GGML block types, this ISA's kernels */
        j->st = qt_blk_quantize(j->k ? qt_blk_ops_for(j->k->isa, s->scheme) : NULL, s->scheme,
                                j->t, j->src, j->rows, j->cols, false, o->codes, NULL);
        break;
    }
}

static void weight_of(const bscheme *s, const qbuf *b, size_t rows, size_t cols, qt_qweight *w)
{
    memset(w, 0, sizeof *w);
    w->scheme = s->scheme;
    w->n_out = rows;
    w->n_in = cols;
    w->block_size = s->block;
    w->data = b->codes;
    w->absmax = b->absmax;
    w->scb = b->absmax;
    if (s->dq) {
        w->absmax_q = b->qa;
        w->nested_absmax = b->nested;
        w->nested_offset = b->offset;
    }
}

typedef struct djob {
    const qt_kernels *k;
    const qt_qweight *w;
    float *dst;
    qt_status st;
} djob;

static void run_dequant(void *p)
{
    djob *j = p;
    j->st = qt_dequantize(j->k, j->w, QT_SRC_F32, j->dst);
}

typedef struct mjob {
    const qt_kernels *k;
    const qt_qweight *w;
    const float *x;
    float *y;
    qt_status st;
} mjob;

static void run_matmul(void *p)
{
    mjob *j = p;
    j->st = qt_matmul(j->k, j->w, j->x, MATMUL_TOKENS, j->y);
}

typedef struct cjob {
    unsigned char *dst;
    const unsigned char *src;
    size_t bytes;
} cjob;

/* memcpy split into one contiguous piece per thread. */
static void run_memcpy(void *p)
{
    cjob *j = p;
    ptrdiff_t i;
    int nth = 1;
#ifdef _OPENMP
    nth = omp_get_max_threads();
#endif
    size_t piece = (j->bytes / (size_t)nth + 63) & ~(size_t)63;
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
    for (i = 0; i < nth; i++) {
        size_t a = (size_t)i * piece;
        if (a >= j->bytes) continue;
        size_t len = j->bytes - a < piece ? j->bytes - a : piece;
        memcpy(j->dst + a, j->src + a, len);
    }
}

static void set_threads(int n)
{
#ifdef _OPENMP
    omp_set_num_threads(n);
#else
    (void)n;
#endif
}

/* ---- output ---------------------------------------------------------------- */

typedef struct ctx {
    const qt_bench_kernels_opts *o;
    FILE *out;
} ctx;

static const char *src_name(qt_src_type t)
{
    return t == QT_SRC_F32 ? "fp32" : t == QT_SRC_F16 ? "fp16" : "bf16";
}

static void record(const ctx *c, const char *op, const char *scheme, const char *src,
                   size_t rows, size_t cols, const char *isa, int threads, double sec,
                   double params, double bytes, double base_gbs, double gflop)
{
    double gbs = bytes / sec / 1e9;
    if (c->o->json) {
        fprintf(c->out,
                "{\"bench\":\"kernels\",\"op\":\"%s\",\"scheme\":\"%s\",\"src\":\"%s\","
                "\"shape\":[%zu,%zu],\"isa\":\"%s\",\"threads\":%d,\"best_ms\":%.4f,"
                "\"params_per_s\":%.6g,\"gb_per_s\":%.4f",
                op, scheme, src, rows, cols, isa, threads, sec * 1e3, params / sec, gbs);
        if (base_gbs > 0)
            fprintf(c->out, ",\"memcpy_gb_per_s\":%.4f,\"ratio_to_memcpy\":%.4f", base_gbs,
                    gbs / base_gbs);
        if (gflop > 0) fprintf(c->out, ",\"gflop_per_s\":%.3f", gflop / sec / 1e9);
        fprintf(c->out, ",\"cpu\":\"%s\",\"git\":\"%s\",\"data\":\"synthetic gaussian\"}\n",
                qt_cpu_features_get()->brand, c->o->git ? c->o->git : "");
    } else {
        char shape[32];
        snprintf(shape, sizeof shape, "%zux%zu", rows, cols);
        fprintf(c->out, "%-10s %-15s %-5s %-10s %-7s %2d %9.2f %9.1f %8.2f", op, scheme, src,
                shape, isa, threads, sec * 1e3, params / sec / 1e6, gbs);
        if (base_gbs > 0) fprintf(c->out, " %8.2f %6.0f%%", base_gbs, 100 * gbs / base_gbs);
        else fprintf(c->out, " %8s %7s", "", "");
        if (gflop > 0) fprintf(c->out, " %8.1f", gflop / sec / 1e9);
        fputc('\n', c->out);
    }
    fflush(c->out);
}

/* ---- data ----------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

/* Approximately N(0, 0.02^2): a sum of four uniforms, rescaled. */
static void gaussian_fill(float *x, size_t n, uint64_t seed)
{
    uint64_t s = seed | 1;
    for (size_t i = 0; i < n; i++) {
        uint64_t r = rng_next(&s);
        float a = (float)(r & 0xffff) + (float)((r >> 16) & 0xffff) + (float)((r >> 32) & 0xffff) +
                  (float)(r >> 48);
        x[i] = (a / 65536.0f - 2.0f) * (0.02f / 0.5773503f);
    }
}

/* ---- the benchmark ----------------------------------------------------------- */

#define FAIL(status, ...)                                   \
    do {                                                    \
        st = qt_set_err(errmsg, (status), __VA_ARGS__);     \
        goto fail;                                          \
    } while (0)

/* The baseline: bytes copied per second by memcpy of cj->bytes (the kernel's
 * input size) from the input buffer into a destination that was written
 * once at allocation (first-touched: no page faults in the timing), one
 * contiguous piece per thread, best of at least `reps` runs and 0.2 s, like
 * the kernels. */
static double memcpy_gbs(cjob *cj, int reps)
{
    double s = qt_bench_best(run_memcpy, cj, 1, reps, 0.2);
    return (double)cj->bytes / s / 1e9;
}

qt_status qt_bench_kernels(const qt_bench_kernels_opts *o, FILE *out, char *errmsg)
{
    qt_status st = QT_OK;
    ctx c = {o, out};
    int threads0 = 1;
#ifdef _OPENMP
    threads0 = omp_get_max_threads();
#endif
    const size_t shapes7b[2][2] = {{4096, 4096}, {11008, 4096}};
    const size_t shapes_small[1][2] = {{1024, 1024}};
    const size_t(*shapes)[2] = o->small ? shapes_small : shapes7b;
    size_t n_shapes = o->small ? 1 : 2;
    int reps = o->reps > 0 ? o->reps : 3;
    float *f32 = NULL, *xs = NULL, *ys = NULL, *yr = NULL, *dq = NULL, *dqr = NULL;
    void *src = NULL;
    unsigned char *cpy = NULL;
    qbuf ref, got;
    memset(&ref, 0, sizeof ref);
    memset(&got, 0, sizeof got);
    if (o->scheme) {
        bool found = false;
        for (size_t i = 0; i < N_BSCHEMES; i++) found |= !strcmp(bschemes[i].name, o->scheme);
        if (!found) FAIL(QT_ERR_ARG, "unknown benchmark scheme '%s'", o->scheme);
    }
    if (!o->json) {
        fprintf(out, "# qtool kernel benchmark: cpu %s, synthetic gaussian data, best of %d\n",
                qt_cpu_features_get()->brand, reps);
        fprintf(out, "%-10s %-15s %-5s %-10s %-7s %2s %9s %9s %8s %8s %7s %8s\n", "op", "scheme",
                "src", "shape", "isa", "th", "best_ms", "Mparam/s", "GB/s", "memcpy", "ratio",
                "GFLOP/s");
    }
    size_t max_n = shapes[n_shapes - 1][0] * shapes[n_shapes - 1][1];
    f32 = qt_aligned_alloc(64, max_n * sizeof(float));
    src = qt_aligned_alloc(64, max_n * sizeof(float));
    cpy = qt_aligned_alloc(64, max_n * sizeof(float));
    dq = qt_aligned_alloc(64, max_n * sizeof(float));
    dqr = qt_aligned_alloc(64, max_n * sizeof(float));
    if (!f32 || !src || !cpy || !dq || !dqr) FAIL(QT_ERR_NOMEM, "out of memory for the inputs");
    memset(cpy, 0, max_n * sizeof(float)); /* first touch of the memcpy destination */

    /* ---- quantize / dequantize ---- */
    for (size_t si = 0; si < n_shapes; si++) {
        size_t rows = shapes[si][0], cols = shapes[si][1], n = rows * cols;
        gaussian_fill(f32, n, 0x9e3779b97f4a7c15ULL + si);
        for (int t = 0; t < QT_SRC_COUNT; t++) {
            if (o->src >= 0 && o->src != t) continue;
            qt_src_type tt = (qt_src_type)t;
            size_t in_bytes = n * qt_src_size(tt);
            if (tt == QT_SRC_F32) memcpy(src, f32, n * 4);
            else if (tt == QT_SRC_F16) qt_fp32_to_fp16_row(f32, src, n);
            else qt_fp32_to_bf16_row(f32, src, n);
            double base[3] = {0};
            for (int th = 1; th <= 2; th++) {
                if (o->threads && o->threads != th) continue;
                set_threads(th);
                cjob cj = {cpy, src, in_bytes};
                base[th] = memcpy_gbs(&cj, reps);
                record(&c, "memcpy", "-", src_name(tt), rows, cols, "-", th, in_bytes / base[th] / 1e9,
                       (double)n, (double)in_bytes, 0, 0);
            }
            for (size_t bi = 0; bi < N_BSCHEMES; bi++) {
                const bscheme *s = &bschemes[bi];
                if (o->scheme && strcmp(o->scheme, s->name)) continue;
                if (!qbuf_init(&ref, s, rows, cols) || !qbuf_init(&got, s, rows, cols))
                    FAIL(QT_ERR_NOMEM, "out of memory for the outputs");
                set_threads(2);
                qjob rj = {qt_kernels_for(QT_ISA_REF), s, tt, src, rows, cols, &ref, QT_OK};
                run_quant(&rj);
                if (rj.st != QT_OK) FAIL(rj.st, "%s: ref quantize failed", s->name);
                qt_qweight wr, wg;
                weight_of(s, &ref, rows, cols, &wr);
                djob rd = {qt_kernels_for(QT_ISA_REF), &wr, dqr, QT_OK};
                run_dequant(&rd);
                for (int isa = 0; isa < QT_ISA_COUNT; isa++) {
                    if (o->isa >= 0 && o->isa != isa) continue;
                    const qt_kernels *k = qt_kernels_for((qt_isa)isa);
                    if (!k) continue;
                    qjob qj = {k, s, tt, src, rows, cols, &got, QT_OK};
                    run_quant(&qj);
                    if (qj.st != QT_OK || !qbuf_equal(&ref, &got, s->dq))
                        FAIL(QT_ERR_NUMERIC, "%s %s %s: output differs from _ref", s->name,
                             qt_isa_name((qt_isa)isa), src_name(tt));
                    weight_of(s, &got, rows, cols, &wg);
                    djob dj = {k, &wg, dq, QT_OK};
                    run_dequant(&dj);
                    if (dj.st != QT_OK || memcmp(dq, dqr, n * 4))
                        FAIL(QT_ERR_NUMERIC, "%s %s: dequantize differs from _ref", s->name,
                             qt_isa_name((qt_isa)isa));
                    size_t qbytes = got.codes_bytes + got.absmax_n * (s->dq ? 1 : 4);
                    for (int th = 1; th <= 2; th++) {
                        if (o->threads && o->threads != th) continue;
                        set_threads(th);
                        /* the scalar definition is timed once: it is the slow baseline */
                        bool slow = isa == QT_ISA_REF;
                        double sec = qt_bench_best(run_quant, &qj, slow ? 0 : 1, slow ? 1 : reps,
                                                   slow ? 0 : 0.2);
                        record(&c, "quantize", s->name, src_name(tt), rows, cols,
                               qt_isa_name((qt_isa)isa), th, sec, (double)n, (double)in_bytes,
                               base[th], 0);
                        if (tt == QT_SRC_BF16 || o->src >= 0) { /* dequant once per shape */
                            double ds = qt_bench_best(run_dequant, &dj, slow ? 0 : 1,
                                                      slow ? 1 : reps, slow ? 0 : 0.2);
                            cjob cq = {cpy, src, qbytes};
                            double qb = memcpy_gbs(&cq, reps);
                            record(&c, "dequant", s->name, "f32", rows, cols,
                                   qt_isa_name((qt_isa)isa), th, ds, (double)n, (double)qbytes,
                                   qb, 0);
                        }
                    }
                }
                qbuf_release(&ref);
                qbuf_release(&got);
            }
        }
    }

    /* ---- matmul ---- */
    if (!o->no_matmul) {
        for (size_t si = 0; si < n_shapes; si++) {
            size_t rows = shapes[si][0], cols = shapes[si][1], n = rows * cols;
            double flop = 2.0 * MATMUL_TOKENS * (double)n;
            gaussian_fill(f32, n, 0x9e3779b97f4a7c15ULL + si);
            xs = qt_aligned_alloc(64, MATMUL_TOKENS * cols * sizeof(float));
            ys = qt_aligned_alloc(64, MATMUL_TOKENS * rows * sizeof(float));
            yr = qt_aligned_alloc(64, MATMUL_TOKENS * rows * sizeof(float));
            if (!xs || !ys || !yr) FAIL(QT_ERR_NOMEM, "out of memory for matmul");
            gaussian_fill(xs, MATMUL_TOKENS * cols, 7);
            for (size_t i = 0; i < MATMUL_TOKENS * cols; i++) xs[i] *= 50.0f;
            for (size_t bi = 0; bi <= N_BSCHEMES; bi++) {
                const bscheme fp32s = {"fp32", QT_SCHEME_FP32, false, 0};
                const bscheme *s = bi < N_BSCHEMES ? &bschemes[bi] : &fp32s;
                if (o->scheme && strcmp(o->scheme, s->name) && bi < N_BSCHEMES) continue;
                qt_qweight w;
                if (s->scheme == QT_SCHEME_FP32) {
                    memset(&w, 0, sizeof w);
                    w.scheme = QT_SCHEME_FP32;
                    w.n_out = rows;
                    w.n_in = cols;
                    w.data = f32;
                } else {
                    if (!qbuf_init(&got, s, rows, cols)) FAIL(QT_ERR_NOMEM, "out of memory");
                    set_threads(2);
                    qjob qj = {NULL, s, QT_SRC_F32, f32, rows, cols, &got, QT_OK};
                    run_quant(&qj);
                    weight_of(s, &got, rows, cols, &w);
                }
                /* reference for a sample of rows: dequantize, then float64 dots */
                float *wrow = dq; /* one row at a time */
                for (int isa = 0; isa < QT_ISA_COUNT; isa++) {
                    if (isa == QT_ISA_REF) continue; /* scalar matmul: too slow to time */
                    if (o->isa >= 0 && o->isa != isa) continue;
                    const qt_kernels *k = qt_kernels_for((qt_isa)isa);
                    if (!k) continue;
                    mjob mj = {k, &w, xs, ys, QT_OK};
                    set_threads(2);
                    run_matmul(&mj);
                    if (mj.st != QT_OK) FAIL(mj.st, "matmul %s failed", s->name);
                    for (size_t r = 0; r < rows; r += rows / 7) {
                        qt_qweight_rows(qt_kernels_for(QT_ISA_REF), &w, r, 1, wrow);
                        for (size_t tk = 0; tk < MATMUL_TOKENS; tk += 9) {
                            double acc = 0, aabs = 0;
                            for (size_t i = 0; i < cols; i++) {
                                acc += (double)xs[tk * cols + i] * wrow[i];
                                aabs += fabs((double)xs[tk * cols + i] * wrow[i]);
                            }
                            if (fabs(ys[tk * rows + r] - acc) > MATMUL_REL_TOL * aabs + 1e-6)
                                FAIL(QT_ERR_NUMERIC, "matmul %s %s: row %zu token %zu off", s->name,
                                     qt_isa_name((qt_isa)isa), r, tk);
                        }
                    }
                    for (int th = 1; th <= 2; th++) {
                        if (o->threads && o->threads != th) continue;
                        set_threads(th);
                        double sec = qt_bench_best(run_matmul, &mj, 1, reps, 0.2);
                        size_t wbytes = s->scheme == QT_SCHEME_FP32 ? n * 4 : got.codes_bytes;
                        record(&c, "matmul64", s->name, "f32", rows, cols, qt_isa_name((qt_isa)isa),
                               th, sec, (double)n, (double)wbytes, 0, flop);
                    }
                }
                qbuf_release(&got);
            }
            qt_aligned_free(xs);
            qt_aligned_free(ys);
            qt_aligned_free(yr);
            xs = ys = yr = NULL;
        }
    }
fail:
    set_threads(threads0);
    qbuf_release(&ref);
    qbuf_release(&got);
    qt_aligned_free(f32);
    qt_aligned_free(src);
    qt_aligned_free(cpy);
    qt_aligned_free(dq);
    qt_aligned_free(dqr);
    qt_aligned_free(xs);
    qt_aligned_free(ys);
    qt_aligned_free(yr);
    return st;
}
