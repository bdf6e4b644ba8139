/* bench/probes.c: the machine's own limits, measured in the run that
 * reports a figure against them (bench.h): read bandwidth (a parallel sum
 * over a buffer far larger than the caches) and peak FMA throughput
 * (qt_fma_burn on every thread, counted in each thread's CPU time). */
#include "bench/bench.h"

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
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

/* Seconds of CPU time the calling thread has run. */
static double thread_cpu_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* One burst on every thread: the sum over threads of each one's flops per
 * second of its own CPU time. Time a thread waits while another process
 * runs on its core is not counted, so the rate is what the cores do when
 * they run (the peak), however loaded the machine is; a wall-clock rate
 * there measures the load, and a prompt-processing run of the same load
 * would come out above its "peak". */
static double fma_burst_gflops(const qt_kernels *k, int nth, size_t iters, float *sink)
{
    double rate = 0;
    float snk = 0;
    ptrdiff_t t;
#ifdef _OPENMP
#pragma omp parallel for schedule(static, 1) num_threads(nth) reduction(+ : rate, snk)
#endif
    for (t = 0; t < (ptrdiff_t)nth; t++) {
        float s;
        const double c0 = thread_cpu_seconds();
        const uint64_t flops = qt_fma_burn(k, iters, &s);
        const double dt = thread_cpu_seconds() - c0;
        if (dt > 0) rate += (double)flops / dt / 1e9;
        snk += s;
    }
    *sink += snk;
    return rate;
}

double qt_probe_fma_gflops(const qt_kernels *k, int nth, int reps)
{
    /* ~5 ms bursts (a few scheduler ticks), after one to warm the clocks */
    const size_t iters = 2000000;
    float sink = 0;
    fma_burst_gflops(k, nth, iters, &sink);
    double best = 0, t0 = qt_now();
    for (int r = 0; r < reps || (qt_now() - t0 < 0.2 && r < 100 * reps); r++) {
        const double g = fma_burst_gflops(k, nth, iters, &sink);
        if (g > best) best = g;
    }
    /* threads beyond the usable cores share them: they add no flops */
    const int cores = qt_cpu_usable_cores();
    if (nth > cores) best = best * cores / nth;
    (void)sink;
    return best;
}
