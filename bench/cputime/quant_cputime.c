/* bench/cputime/quant_cputime.c: quantize-kernel throughput in CPU time, for
 * shared machines where wall-clock figures (`qtool bench kernels`) are
 * dominated by other jobs (`make bench-cputime`; docs/BENCHMARKS.md).
 *
 * One thread; each op timed with CLOCK_THREAD_CPUTIME_ID (time this thread
 * ran, not time it waited), best of REPS, next to memcpy of the same input
 * bytes measured the same way in the same run; ratio = memcpy time / op
 * time. Data: 11008x4096 synthetic gaussian weights (sum of four uniforms,
 * sigma ~0.02, fixed seed) as fp32, fp16 and bf16. Ops: nf4 + double quant
 * (qt_nf4_quantize + qt_dq_quantize), nf4, fp4, q8 (block 32), LLM.int8,
 * each through its driver with the ISA's kernels, checked against the _ref
 * kernels on the first 64 rows before it is timed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cpu.h"
#include "common/half.h"
#include "quant/quant.h"

#define ROWS 11008
#define COLS 4096
#define REPS 7
#define CHECK_ROWS 64

enum { OP_MEMCPY, OP_NF4DQ, OP_NF4, OP_FP4, OP_Q8, OP_INT8, OP_COUNT };
static const char *const op_name[OP_COUNT] = {"memcpy", "nf4-dq", "nf4", "fp4", "q8", "int8"};

typedef struct bufs {
    uint8_t *codes; /* qt_q8_bytes(ROWS*COLS, 32): q8, the largest */
    float *scales;  /* absmax (n/32,) or SCB (ROWS,) */
    uint8_t *qa;    /* nested codes (n/64,) */
    float nested[QT_DQ_BLOCK * 16], offset;
    void *dst;      /* memcpy destination */
} bufs;

static double cpu_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Runs op on rows [0, rows) of src with kernels k. */
static qt_status run_op(int op, const qt_kernels *k, qt_src_type t, const void *src, size_t rows,
                        bufs *b)
{
    const size_t n = rows * COLS;
    switch (op) {
    case OP_MEMCPY: memcpy(b->dst, src, n * qt_src_size(t)); return QT_OK;
    case OP_NF4DQ: {
        qt_status st = qt_nf4_quantize(k, QT_SCHEME_NF4, t, src, n, 64, b->codes, b->scales);
        return st ? st : qt_dq_quantize(b->scales, n / 64, b->qa, b->nested, &b->offset);
    }
    case OP_NF4: return qt_nf4_quantize(k, QT_SCHEME_NF4, t, src, n, 64, b->codes, b->scales);
    case OP_FP4: return qt_nf4_quantize(k, QT_SCHEME_FP4, t, src, n, 64, b->codes, b->scales);
    case OP_Q8: return qt_q8_quantize(k, t, src, n, 32, b->codes);
    default: return qt_int8_quantize(k, t, src, rows, COLS, (int8_t *)b->codes, b->scales);
    }
}

/* Bytes of op's output for rows rows (codes, then scales). */
static void out_bytes(int op, size_t rows, size_t *codes, size_t *scales)
{
    const size_t n = rows * COLS;
    *codes = op == OP_Q8 ? qt_q8_bytes(n, 32) : op == OP_INT8 ? n : n / 2;
    *scales = op == OP_INT8 ? rows * 4 : op == OP_Q8 ? 0 : op == OP_NF4DQ ? 0 : n / 64 * 4;
}

/* The op's output on CHECK_ROWS rows equals the _ref kernels'. */
static int check_op(int op, const qt_kernels *k, qt_src_type t, const void *src, bufs *a, bufs *r)
{
    size_t cb, sb;
    out_bytes(op, CHECK_ROWS, &cb, &sb);
    if (run_op(op, k, t, src, CHECK_ROWS, a) || run_op(op, qt_kernels_for(QT_ISA_REF), t, src,
                                                        CHECK_ROWS, r))
        return 0;
    return !memcmp(a->codes, r->codes, cb) && !memcmp(a->scales, r->scales, sb) &&
           (op != OP_NF4DQ || !memcmp(a->qa, r->qa, CHECK_ROWS * COLS / 64));
}

static int bufs_init(bufs *b)
{
    const size_t n = (size_t)ROWS * COLS;
    b->codes = malloc(qt_q8_bytes(n, 32)); /* the largest output: q8 */
    b->scales = malloc(n / 32 * sizeof(float));
    b->qa = malloc(n / 64);
    b->dst = malloc(n * 4);
    if (!b->codes || !b->scales || !b->qa || !b->dst) return 0;
    /* first touch outside the timed runs */
    memset(b->codes, 0, qt_q8_bytes(n, 32));
    memset(b->scales, 0, n / 32 * sizeof(float));
    memset(b->qa, 0, n / 64);
    memset(b->dst, 0, n * 4);
    return 1;
}

int main(void)
{
    const size_t n = (size_t)ROWS * COLS;
    float *f32 = malloc(n * 4);
    uint16_t *f16 = malloc(n * 2), *bf16 = malloc(n * 2);
    static bufs a, r;
    if (!f32 || !f16 || !bf16 || !bufs_init(&a) || !bufs_init(&r)) return 1;
    /* synthetic gaussian weights (sum of four uniforms), fixed seed */
    unsigned long long s = 88172645463325252ULL;
    for (size_t i = 0; i < n; i++) {
        float v = 0;
        for (int u = 0; u < 4; u++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            v += (float)(s >> 40) / 16777216.0f;
        }
        f32[i] = (v - 2.0f) * 0.035f;
    }
    /* the fp16 and bf16 copies (the bf16 buffer lies right after the codes
     * buffer in memory: that is how a codes buffer too small for q8 once
     * corrupted it, see bufs_init) */
    for (size_t i = 0; i < n; i++) f16[i] = qt_fp32_to_fp16(f32[i]);
    for (size_t i = 0; i < n; i++) bf16[i] = qt_fp32_to_bf16(f32[i]);
    const void *srcs[QT_SRC_COUNT] = {f32, f16, bf16};
    const char *tname[QT_SRC_COUNT] = {"fp32", "fp16", "bf16"};
    printf("1 thread, CPU time (CLOCK_THREAD_CPUTIME_ID), best of %d, %dx%d; ms (memcpy ms / op ms)\n",
           REPS, ROWS, COLS);
    for (int isa = QT_ISA_AVX2; isa <= QT_ISA_AVX512; isa++) {
        const qt_kernels *k = qt_kernels_for((qt_isa)isa);
        if (!k || qt_isa_force((qt_isa)isa) != QT_OK) continue; /* DQ follows the active ISA */
        for (int t = 0; t < QT_SRC_COUNT; t++) {
            double best[OP_COUNT];
            for (int op = 0; op < OP_COUNT; op++) {
                best[op] = 1e30;
                if (op != OP_MEMCPY && !check_op(op, k, (qt_src_type)t, srcs[t], &a, &r)) {
                    fprintf(stderr, "%s %s %s: differs from _ref\n", qt_isa_name((qt_isa)isa),
                            tname[t], op_name[op]);
                    return 1;
                }
            }
            /* the ops interleaved, so that each sees the machine of the moment */
            for (int rep = 0; rep < REPS; rep++)
                for (int op = 0; op < OP_COUNT; op++) {
                    double t0 = cpu_seconds();
                    if (run_op(op, k, (qt_src_type)t, srcs[t], ROWS, &a) != QT_OK) return 1;
                    double dt = cpu_seconds() - t0;
                    if (dt < best[op]) best[op] = dt;
                }
            printf("%-6s %-4s", qt_isa_name((qt_isa)isa), tname[t]);
            for (int op = 0; op < OP_COUNT; op++)
                if (op == OP_MEMCPY) printf("  memcpy %6.2f |", best[op] * 1e3);
                else printf("  %s %6.2f (%3.0f%%)", op_name[op], best[op] * 1e3,
                            100.0 * best[OP_MEMCPY] / best[op]);
            printf("\n");
        }
    }
    return 0;
}
