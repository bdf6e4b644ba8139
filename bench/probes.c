/* bench/probes.c: the machine's own limits, measured in the run that
 * reports a figure against them (bench.h): read bandwidth (a parallel sum
 * over a buffer far larger than the caches) and peak FMA throughput
 * (qt_fma_burn on every thread). */
#include "bench/bench.h"

#include <math.h>
#include <stdint.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "quant/quant.h"

typedef struct read_job {
    const uint64_t *buf;
    size_t n;       /* words */
    int nth;
    uint64_t sink;
} read_job;

/* XOR of every word, one contiguous slice per thread: each byte is loaded
 * once, the arithmetic is far cheaper than the loads. */
static void run_read(void *p)
{
    read_job *j = p;
    uint64_t acc = 0;
    ptrdiff_t t;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(j->nth) reduction(^ : acc)
#endif
    for (t = 0; t < (ptrdiff_t)j->nth; t++) {
        const size_t a = j->n * (size_t)t / (size_t)j->nth;
        const size_t b = j->n * (size_t)(t + 1) / (size_t)j->nth;
        uint64_t x[8] = {0};
        size_t i = a;
        for (; i + 8 <= b; i += 8)
            for (int k = 0; k < 8; k++) x[k] ^= j->buf[i + (size_t)k];
        for (; i < b; i++) x[0] ^= j->buf[i];
        for (int k = 0; k < 8; k++) acc ^= x[k];
    }
    j->sink = acc;
}

double qt_probe_read_gbs(int nth, size_t bytes, int reps)
{
    const size_t n = bytes / sizeof(uint64_t);
    uint64_t *buf = qt_aligned_alloc(64, n * sizeof *buf);
    if (!buf) return 0.0;
    /* first touch from the threads that will read it (NUMA placement) */
    ptrdiff_t i;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nth)
#endif
    for (i = 0; i < (ptrdiff_t)n; i++) buf[i] = (uint64_t)i * 0x9E3779B97F4A7C15ull;
    read_job j = {buf, n, nth, 0};
    double s = qt_bench_best(run_read, &j, 1, reps, 0.3);
    qt_aligned_free(buf);
    return s > 0 ? (double)(n * sizeof *buf) / s / 1e9 : 0.0;
}

typedef struct fma_job {
    const qt_kernels *k;
    int nth;
    size_t iters;
    uint64_t flops;
    float sink;
} fma_job;

static void run_fma(void *p)
{
    fma_job *j = p;
    uint64_t total = 0;
    float sink = 0;
    ptrdiff_t t;
#ifdef _OPENMP
#pragma omp parallel for schedule(static, 1) num_threads(j->nth) reduction(+ : total, sink)
#endif
    for (t = 0; t < (ptrdiff_t)j->nth; t++) {
        float s;
        total += qt_fma_burn(j->k, j->iters, &s);
        sink += s;
    }
    j->flops = total;
    j->sink = sink;
}

double qt_probe_fma_gflops(const qt_kernels *k, int nth, int reps)
{
    fma_job j = {k, nth, 2000000, 0, 0};
    double s = qt_bench_best(run_fma, &j, 1, reps, 0.2);
    return s > 0 ? (double)j.flops / s / 1e9 : 0.0;
}
