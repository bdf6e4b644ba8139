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
    size_t n_tok; /* 0 = MATMUL_TOKENS */
} mjob;

static void run_matmul(void *p)
{
    mjob *j = p;
    j->st = qt_matmul(j->k, j->w, j->x, j->n_tok ? j->n_tok : MATMUL_TOKENS, j->y);
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

/* Everything one run shares: options, output, the inputs and scratch
 * (sized for the largest shape) and the two quantized buffers. */
typedef struct bk {
    ctx c;
    int reps;
    char *errmsg;
    float *f32, *dq, *dqr, *xs, *ys; /* xs, ys: the matmul's x and y */
    void *src;                       /* f32 as the input type under test */
    unsigned char *cpy;              /* memcpy destination */
    qbuf ref, got;
} bk;

/* An unknown --scheme is refused before anything runs. */
static qt_status check_scheme_opt(const qt_bench_kernels_opts *o, char *errmsg)
{
    if (!o->scheme) return QT_OK;
    for (size_t i = 0; i < N_BSCHEMES; i++)
        if (!strcmp(bschemes[i].name, o->scheme)) return QT_OK;
    return qt_set_err(errmsg, QT_ERR_ARG, "unknown benchmark scheme '%s'", o->scheme);
}

static void print_header(const bk *b)
{
    if (b->c.o->json) return;
    fprintf(b->c.out, "# qtool kernel benchmark: cpu %s, synthetic gaussian data, best of %d\n",
            qt_cpu_features_get()->brand, b->reps);
    fprintf(b->c.out, "%-10s %-15s %-5s %-10s %-7s %2s %9s %9s %8s %8s %7s %8s\n", "op", "scheme",
            "src", "shape", "isa", "th", "best_ms", "Mparam/s", "GB/s", "memcpy", "ratio",
            "GFLOP/s");
}

/* b->src = the first n values of b->f32 as type t. */
static void fill_src(bk *b, qt_src_type t, size_t n)
{
    if (t == QT_SRC_F32) memcpy(b->src, b->f32, n * 4);
    else if (t == QT_SRC_F16) qt_fp32_to_fp16_row(b->f32, b->src, n);
    else qt_fp32_to_bf16_row(b->f32, b->src, n);
}

/* The memcpy baseline of the input size per thread count into base[th]. */
static void bench_memcpy(bk *b, qt_src_type t, size_t rows, size_t cols, double base[3])
{
    const size_t n = rows * cols, in_bytes = n * qt_src_size(t);
    for (int th = 1; th <= 2; th++) {
        if (b->c.o->threads && b->c.o->threads != th) continue;
        set_threads(th);
        cjob cj = {b->cpy, b->src, in_bytes};
        base[th] = memcpy_gbs(&cj, b->reps);
        record(&b->c, "memcpy", "-", src_name(t), rows, cols, "-", th, in_bytes / base[th] / 1e9,
               (double)n, (double)in_bytes, 0, 0);
    }
}

/* Scheme s on one ISA: quantize and dequantize checked against _ref (in
 * b->ref, b->dqr), then timed per thread count. */
static qt_status bench_scheme_isa(bk *b, const bscheme *s, qt_src_type t, size_t rows,
                                  size_t cols, int isa, const double base[3])
{
    qt_status st = QT_OK;
    char *errmsg = b->errmsg;
    const qt_kernels *k = qt_kernels_for((qt_isa)isa);
    const size_t n = rows * cols, in_bytes = n * qt_src_size(t);
    qjob qj = {k, s, t, b->src, rows, cols, &b->got, QT_OK};
    run_quant(&qj);
    if (qj.st != QT_OK || !qbuf_equal(&b->ref, &b->got, s->dq))
        FAIL(QT_ERR_NUMERIC, "%s %s %s: output differs from _ref", s->name,
             qt_isa_name((qt_isa)isa), src_name(t));
    qt_qweight wg;
    weight_of(s, &b->got, rows, cols, &wg);
    djob dj = {k, &wg, b->dq, QT_OK};
    run_dequant(&dj);
    if (dj.st != QT_OK || memcmp(b->dq, b->dqr, n * 4))
        FAIL(QT_ERR_NUMERIC, "%s %s: dequantize differs from _ref", s->name,
             qt_isa_name((qt_isa)isa));
    const size_t qbytes = b->got.codes_bytes + b->got.absmax_n * (s->dq ? 1 : 4);
    for (int th = 1; th <= 2; th++) {
        if (b->c.o->threads && b->c.o->threads != th) continue;
        set_threads(th);
        /* the scalar definition is timed once: it is the slow baseline */
        const bool slow = isa == QT_ISA_REF;
        const int warm = slow ? 0 : 1, reps = slow ? 1 : b->reps;
        const double min_s = slow ? 0 : 0.2;
        double sec = qt_bench_best(run_quant, &qj, warm, reps, min_s);
        record(&b->c, "quantize", s->name, src_name(t), rows, cols, qt_isa_name((qt_isa)isa), th,
               sec, (double)n, (double)in_bytes, base[th], 0);
        if (t == QT_SRC_BF16 || b->c.o->src >= 0) { /* dequant once per shape */
            double ds = qt_bench_best(run_dequant, &dj, warm, reps, min_s);
            cjob cq = {b->cpy, b->src, qbytes};
            double qb = memcpy_gbs(&cq, b->reps);
            record(&b->c, "dequant", s->name, "f32", rows, cols, qt_isa_name((qt_isa)isa), th, ds,
                   (double)n, (double)qbytes, qb, 0);
        }
    }
fail:
    return st;
}

/* Scheme s from input type t: the _ref result once, then every ISA. */
static qt_status bench_scheme(bk *b, const bscheme *s, qt_src_type t, size_t rows, size_t cols,
                              const double base[3])
{
    qt_status st = QT_OK;
    char *errmsg = b->errmsg;
    if (!qbuf_init(&b->ref, s, rows, cols) || !qbuf_init(&b->got, s, rows, cols))
        FAIL(QT_ERR_NOMEM, "out of memory for the outputs");
    set_threads(2);
    qjob rj = {qt_kernels_for(QT_ISA_REF), s, t, b->src, rows, cols, &b->ref, QT_OK};
    run_quant(&rj);
    if (rj.st != QT_OK) FAIL(rj.st, "%s: ref quantize failed", s->name);
    qt_qweight wr;
    weight_of(s, &b->ref, rows, cols, &wr);
    djob rd = {qt_kernels_for(QT_ISA_REF), &wr, b->dqr, QT_OK};
    run_dequant(&rd);
    for (int isa = 0; isa < QT_ISA_COUNT && st == QT_OK; isa++) {
        if (b->c.o->isa >= 0 && b->c.o->isa != isa) continue;
        if (!qt_kernels_for((qt_isa)isa)) continue;
        st = bench_scheme_isa(b, s, t, rows, cols, isa, base);
    }
fail:
    qbuf_release(&b->ref);
    qbuf_release(&b->got);
    return st;
}

/* Quantize / dequantize: every shape, input type and scheme selected. */
static qt_status bench_quantize(bk *b, const size_t (*shapes)[2], size_t n_shapes)
{
    const qt_bench_kernels_opts *o = b->c.o;
    for (size_t si = 0; si < n_shapes; si++) {
        const size_t rows = shapes[si][0], cols = shapes[si][1];
        gaussian_fill(b->f32, rows * cols, 0x9e3779b97f4a7c15ULL + si);
        for (int t = 0; t < QT_SRC_COUNT; t++) {
            if (o->src >= 0 && o->src != t) continue;
            fill_src(b, (qt_src_type)t, rows * cols);
            double base[3] = {0};
            bench_memcpy(b, (qt_src_type)t, rows, cols, base);
            for (size_t bi = 0; bi < N_BSCHEMES; bi++) {
                if (o->scheme && strcmp(o->scheme, bschemes[bi].name)) continue;
                qt_status st = bench_scheme(b, &bschemes[bi], (qt_src_type)t, rows, cols, base);
                if (st != QT_OK) return st;
            }
        }
    }
    return QT_OK;
}

/* The weight of scheme s quantized from b->f32 into b->got (fp32: b->f32
 * itself). */
static qt_status matmul_weight(bk *b, const bscheme *s, size_t rows, size_t cols, qt_qweight *w)
{
    memset(w, 0, sizeof *w);
    if (s->scheme == QT_SCHEME_FP32) {
        w->scheme = QT_SCHEME_FP32;
        w->n_out = rows;
        w->n_in = cols;
        w->data = b->f32;
        return QT_OK;
    }
    if (!qbuf_init(&b->got, s, rows, cols))
        return qt_set_err(b->errmsg, QT_ERR_NOMEM, "out of memory");
    set_threads(2);
    qjob qj = {NULL, s, QT_SRC_F32, b->f32, rows, cols, &b->got, QT_OK};
    run_quant(&qj);
    weight_of(s, &b->got, rows, cols, w);
    return QT_OK;
}

/* b->ys against float64 dots of the dequantized weight, for a sample of
 * rows and tokens, within MATMUL_REL_TOL of the sum of |terms|. */
static qt_status check_matmul(bk *b, const bscheme *s, int isa, const qt_qweight *w)
{
    const size_t rows = w->n_out, cols = w->n_in;
    float *wrow = b->dq; /* one row at a time */
    for (size_t r = 0; r < rows; r += rows / 7) {
        qt_qweight_rows(qt_kernels_for(QT_ISA_REF), w, r, 1, wrow);
        for (size_t tk = 0; tk < MATMUL_TOKENS; tk += 9) {
            double acc = 0, aabs = 0;
            for (size_t i = 0; i < cols; i++) {
                acc += (double)b->xs[tk * cols + i] * wrow[i];
                aabs += fabs((double)b->xs[tk * cols + i] * wrow[i]);
            }
            if (fabs(b->ys[tk * rows + r] - acc) > MATMUL_REL_TOL * aabs + 1e-6)
                return qt_set_err(b->errmsg, QT_ERR_NUMERIC, "matmul %s %s: row %zu token %zu off",
                                  s->name, qt_isa_name((qt_isa)isa), r, tk);
        }
    }
    return QT_OK;
}

/* Scheme s (or fp32) in one shape: checked, then timed per ISA and threads. */
static qt_status bench_matmul_scheme(bk *b, const bscheme *s, size_t rows, size_t cols)
{
    qt_status st;
    char *errmsg = b->errmsg;
    const size_t n = rows * cols;
    const double flop = 2.0 * MATMUL_TOKENS * (double)n;
    qt_qweight w;
    QT_TRY(matmul_weight(b, s, rows, cols, &w));
    for (int isa = 0; isa < QT_ISA_COUNT; isa++) {
        if (isa == QT_ISA_REF) continue; /* scalar matmul: too slow to time */
        if (b->c.o->isa >= 0 && b->c.o->isa != isa) continue;
        const qt_kernels *k = qt_kernels_for((qt_isa)isa);
        if (!k) continue;
        mjob mj = {k, &w, b->xs, b->ys, QT_OK, 0};
        set_threads(2);
        run_matmul(&mj);
        if (mj.st != QT_OK) FAIL(mj.st, "matmul %s failed", s->name);
        QT_TRY(check_matmul(b, s, isa, &w));
        for (int th = 1; th <= 2; th++) {
            if (b->c.o->threads && b->c.o->threads != th) continue;
            set_threads(th);
            double sec = qt_bench_best(run_matmul, &mj, 1, b->reps, 0.2);
            size_t wbytes = s->scheme == QT_SCHEME_FP32 ? n * 4 : b->got.codes_bytes;
            record(&b->c, "matmul64", s->name, "f32", rows, cols, qt_isa_name((qt_isa)isa), th,
                   sec, (double)n, (double)wbytes, 0, flop);
            /* one token (decoding): the fused dot where the ISA has it */
            mjob gj = {k, &w, b->xs, b->ys, QT_OK, 1};
            sec = qt_bench_best(run_matmul, &gj, 1, b->reps, 0.2);
            record(&b->c, "gemv", s->name, "f32", rows, cols, qt_isa_name((qt_isa)isa), th, sec,
                   (double)n, (double)wbytes, 0, flop / MATMUL_TOKENS);
        }
    }
    st = QT_OK;
fail:
    qbuf_release(&b->got);
    return st;
}

/* Matmul: every shape, each selected scheme and fp32. */
static qt_status bench_matmul(bk *b, const size_t (*shapes)[2], size_t n_shapes)
{
    static const bscheme fp32s = {"fp32", QT_SCHEME_FP32, false, 0};
    for (size_t si = 0; si < n_shapes; si++) {
        const size_t rows = shapes[si][0], cols = shapes[si][1];
        gaussian_fill(b->f32, rows * cols, 0x9e3779b97f4a7c15ULL + si);
        gaussian_fill(b->xs, MATMUL_TOKENS * cols, 7);
        for (size_t i = 0; i < MATMUL_TOKENS * cols; i++) b->xs[i] *= 50.0f;
        for (size_t bi = 0; bi <= N_BSCHEMES; bi++) {
            const bscheme *s = bi < N_BSCHEMES ? &bschemes[bi] : &fp32s;
            if (b->c.o->scheme && strcmp(b->c.o->scheme, s->name) && bi < N_BSCHEMES) continue;
            qt_status st = bench_matmul_scheme(b, s, rows, cols);
            if (st != QT_OK) return st;
        }
    }
    return QT_OK;
}

qt_status qt_bench_kernels(const qt_bench_kernels_opts *o, FILE *out, char *errmsg)
{
    qt_status st = QT_OK;
    int threads0 = 1;
#ifdef _OPENMP
    threads0 = omp_get_max_threads();
#endif
    static const size_t shapes7b[2][2] = {{4096, 4096}, {11008, 4096}};
    static const size_t shapes_small[1][2] = {{1024, 1024}};
    const size_t(*shapes)[2] = o->small ? shapes_small : shapes7b;
    const size_t n_shapes = o->small ? 1 : 2;
    bk b;
    memset(&b, 0, sizeof b);
    b.c = (ctx){o, out};
    b.reps = o->reps > 0 ? o->reps : 3;
    b.errmsg = errmsg;
    QT_TRY(check_scheme_opt(o, errmsg));
    print_header(&b);
    /* buffers for the largest shape */
    const size_t max_n = shapes[n_shapes - 1][0] * shapes[n_shapes - 1][1];
    const size_t max_cols = shapes[n_shapes - 1][1], max_rows = shapes[n_shapes - 1][0];
    b.f32 = qt_aligned_alloc(64, max_n * sizeof(float));
    b.src = qt_aligned_alloc(64, max_n * sizeof(float));
    b.cpy = qt_aligned_alloc(64, max_n * sizeof(float));
    b.dq = qt_aligned_alloc(64, max_n * sizeof(float));
    b.dqr = qt_aligned_alloc(64, max_n * sizeof(float));
    b.xs = qt_aligned_alloc(64, MATMUL_TOKENS * max_cols * sizeof(float));
    b.ys = qt_aligned_alloc(64, MATMUL_TOKENS * max_rows * sizeof(float));
    if (!b.f32 || !b.src || !b.cpy || !b.dq || !b.dqr || !b.xs || !b.ys)
        FAIL(QT_ERR_NOMEM, "out of memory for the inputs");
    memset(b.cpy, 0, max_n * sizeof(float)); /* first touch of the memcpy destination */
    QT_TRY(bench_quantize(&b, shapes, n_shapes));
    if (!o->no_matmul) QT_TRY(bench_matmul(&b, shapes, n_shapes));
fail:
    set_threads(threads0);
    qt_aligned_free(b.f32);
    qt_aligned_free(b.src);
    qt_aligned_free(b.cpy);
    qt_aligned_free(b.dq);
    qt_aligned_free(b.dqr);
    qt_aligned_free(b.xs);
    qt_aligned_free(b.ys);
    return st;
}
