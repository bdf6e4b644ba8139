/*
 * bench/bench.h: qtool's benchmarks (kernel throughput now; perplexity and
 * KL divergence are added beside it).
 *
 * What it does: times library functions with one small generic harness
 * (function pointer + payload, warm-up, best of N) and writes a table or
 * JSON lines to a stream the caller gives. Every timed result is first
 * checked against the scalar _ref kernels. What it does not do: parse
 * command lines or exit (cli/cmd_bench.c does that). Not thread-safe: it
 * sets the OpenMP thread count while it runs.
 */
#ifndef QT_BENCH_H
#define QT_BENCH_H

#include <stdbool.h>
#include <stdio.h>

#include "common/common.h"
#include "common/cpu.h"
#include "quant/quant.h"

/* Runs fn(payload) `warmup` times, then `reps` times (at least once, and
 * until min_seconds have passed in total), and returns the fastest run in
 * seconds. */
double qt_bench_best(void (*fn)(void *payload), void *payload, int warmup, int reps,
                     double min_seconds);

/* ---- the machine's limits, measured in the same run (bench/probes.c) ---- */

/* Read bandwidth in GB/s (1e9 bytes): nth threads each read a contiguous
 * slice of a buffer of `bytes` (use far more than the caches), best of
 * reps. 0 when out of memory. */
double qt_probe_read_gbs(int nth, size_t bytes, int reps);

/* Peak fp32 FMA throughput in GFLOP/s of nth threads with kernels k (NULL =
 * active ISA), 2 flops per lane per FMA: each thread's flops over its own
 * CPU time (so other processes on the cores do not lower it), summed over
 * the threads (at most qt_cpu_usable_cores of them count), best of reps. */
double qt_probe_fma_gflops(const qt_kernels *k, int nth, int reps);

typedef struct qt_bench_kernels_opts {
    bool json;             /* JSON lines instead of a table */
    bool small;            /* 1024x1024 instead of the Llama-7B shapes */
    int reps;              /* best of reps (>= 1) */
    int isa;               /* one qt_isa only, or -1 for every supported ISA */
    int threads;           /* one thread count only, or 0 for 1 and 2 */
    int src;               /* one qt_src_type only, or -1 for fp32, fp16, bf16 */
    const char *scheme;    /* one benchmark scheme name only, or NULL */
    bool no_matmul;        /* skip the matmul section */
    const char *git;       /* `git describe` text for the records, or NULL */
} qt_bench_kernels_opts;

/* Kernel throughput: quantize / dequantize per scheme, ISA, input type and
 * thread count next to a memcpy baseline of the same size, and quantized
 * matmul GFLOP/s next to fp32. Writes to out; errmsg (QT_ERRMSG_SIZE, may be
 * NULL) says what failed.
 * @return QT_OK, QT_ERR_NOMEM, QT_ERR_NUMERIC (a kernel disagreed with _ref),
 * QT_ERR_ARG (unknown scheme name). */
qt_status qt_bench_kernels(const qt_bench_kernels_opts *opts, FILE *out, char *errmsg);

/* ---- synthetic checkpoints (bench/synth.c) ----------------------------- */

/* The shape of a synthetic Llama checkpoint (`qtool bench synth`). */
typedef struct qt_bench_synth_opts {
    size_t hidden, intermediate, layers, heads, kv_heads, vocab;
    const char *dtype;       /* "bf16" | "fp16" | "fp32" */
    uint64_t seed;
    uint64_t max_shard_size; /* bytes; 0 = one file */
    bool force;              /* replace an existing OUT */
} qt_bench_synth_opts;

/* Writes a SYNTHETIC Llama model directory at out (LlamaForCausalLM
 * config.json labelled "qtool_synthetic", model.safetensors or shards +
 * index, untied lm_head): seeded bell-shaped noise (sum of four uniforms),
 * sigma 0.02 for embeddings and Linears, 1 +- 0.05 for norms. Values depend
 * only on (seed, tensor, element), not on the thread count. Streams through
 * the safetensors writer (memory: a few 4 Mi-element buffers), assembles
 * the folder beside out and renames it into place. *bytes_out (may be NULL)
 * receives the tensor bytes written. errmsg: QT_ERRMSG_SIZE or NULL.
 * @return QT_OK, QT_ERR_ARG (bad shape or dtype, out exists without
 * force), QT_ERR_IO, QT_ERR_NOMEM. */
qt_status qt_bench_synth(const qt_bench_synth_opts *o, const char *out, uint64_t *bytes_out,
                         char *errmsg);

/* Writes a SYNTHETIC PEFT LoRA adapter for the model at `model` into the
 * folder out (formats/adapter.h qt_adapter_write): rank r on every
 * decoder-layer Linear (q/k/v/o, gate/up/down), lora_alpha alpha, seeded
 * uniform noise (bench/synth_adapter.c). Holds all A and B in memory
 * (r (in + out) floats per Linear). errmsg: QT_ERRMSG_SIZE or NULL.
 * @return QT_OK, QT_ERR_ARG (rank, no Linears), QT_ERR_FORMAT (model),
 *         QT_ERR_IO, QT_ERR_NOMEM. */
qt_status qt_bench_synth_adapter(const char *model, const char *out, size_t rank, double alpha,
                                 uint64_t seed, char *errmsg);

#endif /* QT_BENCH_H */
