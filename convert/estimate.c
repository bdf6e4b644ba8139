/* convert/estimate.c: what a conversion will need before it runs: its peak
 * memory (resident set) and the bytes it writes. The memory model is the one
 * qt_conv_run enforces (convert/run.c): tensors in flight are held under a
 * byte budget of 1.5 x the largest tensor's need, and each thread has fixed
 * chunk buffers on top. Used by `convert --dry-run`, `batch-plan --estimate`
 * and the Slurm `--mem` request of scripts/qtool-batch (docs/BATCH.md). */
#include <string.h>
#include <sys/stat.h>

#include "convert/convert_internal.h"
#include "formats/bnb.h"
#include "formats/fsutil.h"

/* Resident memory of qtool itself before any tensor: code, libraries,
 * OpenMP runtime, the parsed headers (measured 3.8 MiB on stories260K). */
#define EST_BASE_BYTES ((uint64_t)8 << 20)
/* Per thread: run.c's chunk buffers (1 Mi fp32 values + 1 Mi output values
 * of at most 4 bytes) and the thread's stack. */
#define EST_THREAD_BYTES ((uint64_t)12 << 20)
/* Per output tensor: its safetensors header entry (name, dtype, shape,
 * offsets), a generous upper bound. */
#define EST_HEADER_BYTES_PER_TENSOR 160u

static uint64_t dtype_bytes(qt_dtype d) { return qt_dtype_bits(d) / 8; }

uint64_t qt_conv_item_need(const qt_conv *c, const qt_conv_item *it)
{
    uint64_t need = it->bytes_in;
    if (it->action == QT_ACT_QUANT) {
        need += it->bytes_out;
        if (it->src->dtype != c->compute) need += it->src->n_elements * dtype_bytes(c->compute);
        /* --loftq: W, the residual and its transpose in fp32 */
        if (c->o.loftq_rank) need += 3 * it->src->n_elements * sizeof(float);
    }
    return need;
}

uint64_t qt_conv_budget(const qt_conv *c)
{
    uint64_t m = 0;
    for (size_t i = 0; i < c->n_items; i++) {
        uint64_t n = qt_conv_item_need(c, &c->items[i]);
        m = n > m ? n : m;
    }
    return m + m / 2;
}

/* Bytes of the non-weight files convert copies (config.json is rewritten
 * with a quantization_config, counted at its input size plus 4 KiB). */
static uint64_t other_files_bytes(const qt_conv *c)
{
    uint64_t sum = 4096;
    for (size_t i = 0; i < qt_modeldir_n_files(c->md); i++) {
        const char *f = qt_modeldir_file(c->md, i);
        char p[4096];
        struct stat sb;
        if (strchr(f, '/') || !qt_path_join(p, sizeof p, c->in_dir, f)) continue;
        if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode)) sum += (uint64_t)sb.st_size;
    }
    return sum;
}

void qt_conv_estimate(const qt_conv *c, int threads, qt_conv_needs *e)
{
    memset(e, 0, sizeof *e);
    e->threads = threads < 1 ? 1 : threads;
    /* 1. the tensors in flight never exceed the budget (run.c's par_acquire) */
    e->budget_bytes = qt_conv_budget(c);
    /* 2. plus what does not depend on the tensors: the process and each
     *    thread's chunk buffers */
    e->peak_bytes = EST_BASE_BYTES + e->budget_bytes + (uint64_t)e->threads * EST_THREAD_BYTES;
    /* 3. output: every tensor's bytes, the headers, the copied files */
    uint64_t out = 0;
    for (size_t i = 0; i < c->n_items; i++) {
        const qt_conv_item *it = &c->items[i];
        out += it->bytes_out + (it->action == QT_ACT_QUANT ? QT_BNB_MAX_PARTS : 1) * EST_HEADER_BYTES_PER_TENSOR;
    }
    e->out_bytes = out + c->n_shards * 1024 + other_files_bytes(c);
}
