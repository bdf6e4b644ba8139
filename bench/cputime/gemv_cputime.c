/* bench/cputime/gemv_cputime.c: the fused decoding dots (one token,
 * qt_matmul with n_tok = 1) in CPU time, for shared machines where the
 * wall-clock decoding figures of `qtool generate --bench` are dominated by
 * other jobs (`make bench-gemv`; docs/BENCHMARKS.md "Roofline fractions").
 *
 * One thread (OMP_NUM_THREADS=1), CLOCK_THREAD_CPUTIME_ID, best of REPS.
 * Weights: the seven Linear shapes' three sizes of a TinyLlama-1.1B layer
 * (2048x2048, 5632x2048, 2048x5632), random values, as bf16, NF4 + double
 * quant rounded to bf16 (what a bf16 model's NF4 directory decodes to) and
 * LLM.int8. Each scheme is checked bit for bit against qt_dot_rows_ref over
 * the _ref dequantization first, then timed twice: "in cache" (one weight
 * of each shape, 3 weights) and "from memory" (7 of each, 21 weights, past
 * the last-level cache), next to a read of a 256 MiB buffer timed the same
 * way; on AVX-512 NF4 also with each other exact bf16 rounding (qt_round4).
 * GB/s = stored bytes of the weights (codes and scales) per second. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "quant/quant.h"
#include "quant/quant_internal.h"

#define N_SHAPES 3
#define FROM_MEMORY 21 /* weights of the "from memory" pass */
#define REPS 8

static const size_t shape[N_SHAPES][2] = {{2048, 2048}, {5632, 2048}, {2048, 5632}};

static double cpu_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)rng;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "gemv_cputime: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

/* Weight i (shape i % 3) of scheme s with random stored values. */
static qt_qweight make_weight(qt_scheme s, size_t i)
{
    qt_qweight w;
    memset(&w, 0, sizeof w);
    w.scheme = s;
    w.n_out = shape[i % N_SHAPES][0];
    w.n_in = shape[i % N_SHAPES][1];
    const size_t n = w.n_out * w.n_in;
    if (s == QT_SCHEME_BF16) {
        uint16_t *d = xmalloc(2 * n);
        for (size_t j = 0; j < n; j++) d[j] = (uint16_t)(0x3c00 + (rnd() & 0x3ff)) ^ ((rnd() & 1) << 15);
        w.data = d;
    } else if (s == QT_SCHEME_INT8) {
        int8_t *d = xmalloc(n);
        float *scb = xmalloc(4 * w.n_out);
        for (size_t j = 0; j < n; j++) d[j] = (int8_t)rnd();
        for (size_t j = 0; j < w.n_out; j++) scb[j] = 0.5f + (float)(rnd() % 100) * 1e-2f;
        w.data = d;
        w.scb = scb;
    } else { /* nf4 + double quant, rounded to bf16 */
        const size_t nb = n / 64, nn = qt_dq_n_nested(nb);
        uint8_t *d = xmalloc(n / 2), *q = xmalloc(nb);
        float *na = xmalloc(4 * nn);
        for (size_t j = 0; j < n / 2; j++) d[j] = (uint8_t)rnd();
        for (size_t j = 0; j < nb; j++) q[j] = (uint8_t)rnd();
        for (size_t j = 0; j < nn; j++) na[j] = 0.01f + (float)(rnd() % 100) * 1e-4f;
        w.block_size = 64;
        w.data = d;
        w.absmax_q = q;
        w.nested_absmax = na;
        w.nested_offset = 0.0123f;
        w.round_to = QT_SRC_BF16;
    }
    return w;
}

static void free_weight(qt_qweight *w)
{
    free((void *)w->data);
    free((void *)w->scb);
    free((void *)w->absmax_q);
    free((void *)w->nested_absmax);
}

/* The fused dot of w against qt_dot_rows_ref over the _ref rows. */
static int check(const qt_kernels *k, const qt_qweight *w, const float *x)
{
    float *rows = xmalloc(4 * w->n_out * w->n_in), *want = xmalloc(4 * w->n_out);
    float *got = xmalloc(4 * w->n_out);
    qt_qweight_rows(qt_kernels_for(QT_ISA_REF), w, 0, w->n_out, rows);
    qt_dot_rows_ref(rows, w->n_in, w->n_out, x, want);
    int bad = qt_matmul(k, w, x, 1, got) != QT_OK || memcmp(want, got, 4 * w->n_out) != 0;
    free(rows);
    free(want);
    free(got);
    return bad;
}

/* Best seconds of one pass over the first n of w. */
static double time_pass(const qt_kernels *k, const qt_qweight *w, size_t n, const float *x,
                        float *y)
{
    double best = 1e30;
    for (int r = 0; r < REPS; r++) {
        const double t0 = cpu_seconds();
        for (size_t i = 0; i < n; i++) qt_matmul(k, &w[i], x, 1, y);
        const double t = cpu_seconds() - t0;
        if (t < best) best = t;
    }
    return best;
}

/* GB/s of a read of 256 MiB (XOR of 64-bit words), timed the same way. */
static double read_gbs(void)
{
    const size_t bytes = (size_t)256 << 20, n = bytes / 8;
    uint64_t *b = xmalloc(bytes);
    memset(b, 1, bytes);
    double best = 1e30;
    volatile uint64_t sink = 0;
    for (int r = 0; r < 5; r++) {
        const double t0 = cpu_seconds();
        uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (size_t j = 0; j < n; j += 4) {
            s0 ^= b[j];
            s1 ^= b[j + 1];
            s2 ^= b[j + 2];
            s3 ^= b[j + 3];
        }
        sink ^= s0 ^ s1 ^ s2 ^ s3;
        const double t = cpu_seconds() - t0;
        if (t < best) best = t;
    }
    free(b);
    return (double)bytes / best / 1e9;
}

int main(void)
{
    const qt_kernels *k = qt_kernels_active();
    static const qt_scheme schemes[] = {QT_SCHEME_BF16, QT_SCHEME_NF4, QT_SCHEME_INT8};
    static const char *const names[] = {"bf16", "nf4-dq (bf16 rounding)", "int8"};
    float *x = xmalloc(4 * 5632), *y = xmalloc(4 * 5632);
    for (size_t j = 0; j < 5632; j++) x[j] = (float)((int)(rnd() % 2001) - 1000) * 1e-3f;
    printf("isa %s, 1 thread, CPU time; read of 256 MiB: %.2f GB/s\n", qt_isa_name(k->isa),
           read_gbs());
    printf("%-24s %14s %14s\n", "scheme", "in cache GB/s", "memory GB/s");
    int bad = 0;
    for (size_t s = 0; s < sizeof schemes / sizeof schemes[0]; s++) {
        qt_qweight w[FROM_MEMORY];
        uint64_t bytes_cache = 0, bytes_all = 0;
        for (size_t i = 0; i < FROM_MEMORY; i++) {
            w[i] = make_weight(schemes[s], i);
            const uint64_t b = qt_qweight_stored_bytes(&w[i]);
            bytes_all += b;
            if (i < N_SHAPES) bytes_cache += b;
        }
        for (size_t i = 0; i < N_SHAPES; i++)
            if (check(k, &w[i], x)) {
                fprintf(stderr, "gemv_cputime: %s %zux%zu differs from qt_dot_rows_ref\n",
                        names[s], w[i].n_out, w[i].n_in);
                bad = 1;
            }
        const double tc = time_pass(k, w, N_SHAPES, x, y), tm = time_pass(k, w, FROM_MEMORY, x, y);
        printf("%-24s %14.2f %14.2f\n", names[s], (double)bytes_cache / tc / 1e9,
               (double)bytes_all / tm / 1e9);
#if defined(__x86_64__)
        /* AVX-512 nf4: the other exact bf16 roundings (qt_round4) */
        if (schemes[s] == QT_SCHEME_NF4 && k->isa == QT_ISA_AVX512) {
            static const char *const alt[] = {"  split rounding", "  integer rounding"};
            for (int a = 0; a < 2; a++) {
                qt_gemv_avx512_bf16_rounding(false, a == 0);
                const double ac = time_pass(k, w, N_SHAPES, x, y);
                const double am = time_pass(k, w, FROM_MEMORY, x, y);
                printf("%-24s %14.2f %14.2f\n", alt[a], (double)bytes_cache / ac / 1e9,
                       (double)bytes_all / am / 1e9);
            }
            qt_gemv_avx512_bf16_rounding(true, true);
        }
#endif
        for (size_t i = 0; i < FROM_MEMORY; i++) free_weight(&w[i]);
    }
    free(x);
    free(y);
    return bad;
}
