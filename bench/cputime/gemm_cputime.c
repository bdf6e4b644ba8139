/* bench/cputime/gemm_cputime.c: the prompt-processing GEMM (qt_matmul of
 * 512 tokens) in CPU time next to the peak-FMA probe of the same run, for
 * shared machines where wall-clock figures measure the other jobs
 * (`make bench-gemm`; docs/BENCHMARKS.md, prompt processing).
 *
 * Weights: the Linear shapes of one TinyLlama-1.1B layer (q/o 2048x2048,
 * k/v 256x2048, gate/up 5632x2048, down 2048x5632), synthetic gaussian
 * values (sum of four uniforms, sigma ~0.02, fixed seed) stored as bf16 and
 * as NF4 + double quantization (block 64). x: 512 tokens of the same noise
 * with sigma ~0.6. Per ISA and scheme, each shape is run once and 64 of its
 * outputs are checked against one fmaf chain over the dequantized weight
 * (the GEMM's definition), then the layer (every shape, k/v and gate/up
 * twice) is timed on one thread with CLOCK_THREAD_CPUTIME_ID, best of REPS,
 * interleaved with the probe (qt_probe_fma_gflops, 1 thread). Prints
 * GFLOP/s of CPU time and the fraction of the probe. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench.h"
#include "common/half.h"
#include "quant/quant.h"

#define N_TOK 512
#define REPS 5
#define N_CHECK 64

typedef struct shape {
    const char *name;
    size_t n_out, n_in;
    int count; /* times per layer */
} shape;

static const shape shapes[] = {
    {"q,o", 2048, 2048, 2}, {"k,v", 256, 2048, 2}, {"gate,up", 5632, 2048, 2}, {"down", 2048, 5632, 1},
};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])

/* One weight in both stored forms, with its dequantized values. */
typedef struct weights {
    qt_qweight bf16, nf4;
    uint16_t *h;
    uint8_t *codes, *qa;
    float *absmax, *nested, *dq;
} weights;

static double cpu_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* sum of four uniforms on [0, 1), centred: sigma 1/sqrt(3) */
static float noise(unsigned long long *s)
{
    float v = 0;
    for (int u = 0; u < 4; u++) {
        *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
        v += (float)(*s >> 40) / 16777216.0f;
    }
    return v - 2.0f;
}

static int weights_init(weights *w, const shape *sh, unsigned long long *seed)
{
    const size_t n = sh->n_out * sh->n_in, nb = n / 64;
    float *f = malloc(n * sizeof *f);
    w->h = malloc(n * 2);
    w->codes = malloc(qt_nf4_bytes(n));
    w->absmax = malloc(nb * sizeof(float));
    w->qa = malloc(nb);
    w->nested = malloc(qt_dq_n_nested(nb) * sizeof(float));
    w->dq = malloc(n * sizeof(float));
    if (!f || !w->h || !w->codes || !w->absmax || !w->qa || !w->nested || !w->dq) return 0;
    for (size_t i = 0; i < n; i++) f[i] = noise(seed) * 0.035f;
    for (size_t i = 0; i < n; i++) w->h[i] = qt_fp32_to_bf16(f[i]);
    memset(&w->bf16, 0, sizeof w->bf16);
    w->bf16.scheme = QT_SCHEME_BF16;
    w->bf16.n_out = sh->n_out;
    w->bf16.n_in = sh->n_in;
    w->bf16.data = w->h;
    /* NF4 + double quantization of the bf16 values (as convert does) */
    w->nf4 = w->bf16;
    w->nf4.scheme = QT_SCHEME_NF4;
    w->nf4.block_size = 64;
    int ok = qt_nf4_quantize(NULL, QT_SCHEME_NF4, QT_SRC_BF16, w->h, n, 64, w->codes,
                             w->absmax) == QT_OK &&
             qt_dq_quantize(w->absmax, nb, w->qa, w->nested, &w->nf4.nested_offset) == QT_OK;
    w->nf4.data = w->codes;
    w->nf4.absmax_q = w->qa;
    w->nf4.nested_absmax = w->nested;
    free(f);
    return ok;
}

static void weights_release(weights *w)
{
    free(w->h);
    free(w->codes);
    free(w->absmax);
    free(w->qa);
    free(w->nested);
    free(w->dq);
}

/* N_CHECK outputs of y (N_TOK x n_out) against one fmaf chain over the
 * dequantized weight, bit for bit. */
static int check(const qt_qweight *w, float *dq, const float *x, const float *y)
{
    if (qt_dequantize(qt_kernels_for(QT_ISA_REF), w, QT_SRC_F32, dq) != QT_OK) return 0;
    for (size_t c = 0; c < N_CHECK; c++) {
        const size_t t = c * 97 % N_TOK, o = c * 1031 % w->n_out;
        float s = 0.0f;
        for (size_t i = 0; i < w->n_in; i++) s = fmaf(x[t * w->n_in + i], dq[o * w->n_in + i], s);
        if (memcmp(&s, &y[t * w->n_out + o], sizeof s)) return 0;
    }
    return 1;
}

int main(void)
{
    static weights ws[N_SHAPES];
    unsigned long long seed = 88172645463325252ULL;
    float *x = malloc((size_t)N_TOK * 5632 * sizeof *x), *y = malloc((size_t)N_TOK * 5632 * sizeof *y);
    if (!x || !y) return 1;
    for (size_t i = 0; i < (size_t)N_TOK * 5632; i++) x[i] = noise(&seed);
    double flops = 0;
    for (size_t s = 0; s < N_SHAPES; s++) {
        if (!weights_init(&ws[s], &shapes[s], &seed)) return 1;
        flops += 2.0 * N_TOK * (double)shapes[s].n_out * (double)shapes[s].n_in * shapes[s].count;
    }
    printf("1 thread, %d tokens, one TinyLlama-1.1B layer's Linears, CPU time "
           "(CLOCK_THREAD_CPUTIME_ID), best of %d\n", N_TOK, REPS);
    for (int isa = QT_ISA_AVX2; isa <= QT_ISA_AVX512; isa++) {
        const qt_kernels *k = qt_kernels_for((qt_isa)isa);
        if (!k) continue;
        for (int sch = 0; sch < 2; sch++) {
            const char *sname = sch ? "nf4-dq" : "bf16";
            for (size_t s = 0; s < N_SHAPES; s++) {
                const qt_qweight *w = sch ? &ws[s].nf4 : &ws[s].bf16;
                if (qt_matmul(k, w, x, N_TOK, y) != QT_OK || !check(w, ws[s].dq, x, y)) {
                    fprintf(stderr, "%s %s %s: not one fma chain per output\n",
                            qt_isa_name((qt_isa)isa), sname, shapes[s].name);
                    return 1;
                }
            }
            /* the layer and the probe interleaved: both see the machine of the moment */
            double best = 1e30, peak = 0;
            for (int rep = 0; rep < REPS; rep++) {
                double t0 = cpu_seconds();
                for (size_t s = 0; s < N_SHAPES; s++)
                    for (int c = 0; c < shapes[s].count; c++)
                        if (qt_matmul(k, sch ? &ws[s].nf4 : &ws[s].bf16, x, N_TOK, y) != QT_OK)
                            return 1;
                double dt = cpu_seconds() - t0;
                if (dt < best) best = dt;
                double p = qt_probe_fma_gflops(k, 1, 3);
                if (p > peak) peak = p;
            }
            const double g = flops / best / 1e9;
            printf("%-6s %-6s  layer %7.1f ms  %6.1f GFLOP/s  probe %6.1f GFLOP/s  = %.3f of peak\n",
                   qt_isa_name((qt_isa)isa), sname, best * 1e3, g, peak, peak > 0 ? g / peak : 0.0);
        }
    }
    for (size_t s = 0; s < N_SHAPES; s++) weights_release(&ws[s]);
    free(x);
    free(y);
    return 0;
}
