/* bench/synth.c: synthetic Llama checkpoints for benchmarks and tests
 * (`qtool bench synth`), see bench/bench.h. */
#include "bench/bench.h"
#include "formats/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "common/half.h"
#include "formats/dtype.h"
#include "formats/pyjson.h"
#include "formats/safetensors.h"
#include "model/arch.h"

/* Values generated per write (elements); sub-blocks of SYNTH_SUB elements
 * are generated in parallel, each from its own counter-based stream. */
#define SYNTH_CHUNK ((size_t)1 << 22)
#define SYNTH_SUB ((size_t)1 << 16)
#define SYNTH_MAX_TENSORS_PER_LAYER 9

typedef struct synth_tensor {
    char name[96];
    uint64_t shape[2];
    size_t n_dims;
    float mean, std;
    size_t shard;
} synth_tensor;

/* splitmix64's finalizer: a counter-based generator, so every value
 * depends only on (seed, tensor, element index), never on threads. */
static inline uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* n values of tensor key starting at element first: mean + std * g, g a
 * sum of four 16-bit uniforms scaled to unit variance (bell-shaped, tails
 * cut at +-3.46 sigma). */
static void gen_values(uint64_t key, uint64_t first, float mean, float std, float *dst, size_t n)
{
    const float scale = std * 1.7320508f / 65536.0f; /* sqrt(3) / 2^16 */
    for (size_t i = 0; i < n; i++) {
        uint64_t r = mix64(key + (first + i) * 0x9e3779b97f4a7c15ull);
        uint32_t s = (uint32_t)(r & 0xffff) + (uint32_t)((r >> 16) & 0xffff) +
                     (uint32_t)((r >> 32) & 0xffff) + (uint32_t)(r >> 48);
        dst[i] = mean + ((float)s - 131070.0f) * scale;
    }
}

static void shard_file(size_t s, size_t n, char *buf, size_t len)
{
    if (n == 1) snprintf(buf, len, "model.safetensors");
    else snprintf(buf, len, "model-%05zu-of-%05zu.safetensors", s + 1, n);
}

static void add_tensor(synth_tensor *t, size_t *n, const char *name, uint64_t d0, uint64_t d1,
                       float mean, float std)
{
    synth_tensor *x = &t[(*n)++];
    snprintf(x->name, sizeof x->name, "%s", name);
    x->shape[0] = d0;
    x->shape[1] = d1;
    x->n_dims = d1 ? 2 : 1;
    x->mean = mean;
    x->std = std;
}

static qt_status write_config(const qt_bench_synth_opts *o, const char *dir, const char *torch,
                              char *errmsg)
{
    qt_strbuf b = {0};
    qt_strbuf_printf(&b,
                     "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n"
                     "  \"model_type\": \"llama\",\n"
                     "  \"hidden_size\": %zu,\n  \"intermediate_size\": %zu,\n"
                     "  \"num_hidden_layers\": %zu,\n  \"num_attention_heads\": %zu,\n"
                     "  \"num_key_value_heads\": %zu,\n  \"vocab_size\": %zu,\n"
                     "  \"max_position_embeddings\": 2048,\n  \"rms_norm_eps\": 1e-05,\n"
                     "  \"rope_theta\": 10000.0,\n  \"hidden_act\": \"silu\",\n"
                     "  \"tie_word_embeddings\": false,\n  \"bos_token_id\": 1,\n"
                     "  \"eos_token_id\": 2,\n  \"torch_dtype\": \"%s\",\n"
                     "  \"qtool_synthetic\": {\"seed\": %" PRIu64 ", \"note\": \"synthetic "
                     "weights from qtool bench synth (seeded bell-shaped noise); not a trained "
                     "model\"}\n}\n",
                     o->hidden, o->intermediate, o->layers, o->heads, o->kv_heads, o->vocab,
                     torch, o->seed);
    char p[PATH_MAX];
    qt_status st = b.oom ? qt_set_err(errmsg, QT_ERR_NOMEM, "out of memory")
                   : qt_path_join(p, sizeof p, dir, "config.json")
                       ? qt_file_write(p, b.data, strlen(b.data), errmsg)
                       : qt_set_err(errmsg, QT_ERR_ARG, "path too long");
    qt_strbuf_release(&b);
    return st;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp((*(const synth_tensor *const *)a)->name, (*(const synth_tensor *const *)b)->name);
}

static qt_status write_index(const synth_tensor *t, size_t n, size_t n_shards, uint64_t total,
                             const char *dir, char *errmsg)
{
    const synth_tensor **ord = qt_malloc(n * sizeof *ord);
    if (!ord) return qt_set_err(errmsg, QT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) ord[i] = &t[i];
    qsort(ord, n, sizeof *ord, cmp_names);
    qt_strbuf b = {0};
    qt_strbuf_printf(&b, "{\n  \"metadata\": {\n    \"total_size\": %" PRIu64
                         "\n  },\n  \"weight_map\": {",
                     total);
    for (size_t i = 0; i < n; i++) {
        char sn[64];
        shard_file(ord[i]->shard, n_shards, sn, sizeof sn);
        qt_strbuf_puts(&b, i ? ",\n    " : "\n    ");
        qt_strbuf_json_string(&b, ord[i]->name);
        qt_strbuf_puts(&b, ": ");
        qt_strbuf_json_string(&b, sn);
    }
    qt_strbuf_puts(&b, "\n  }\n}\n");
    qt_free(ord);
    char p[PATH_MAX];
    qt_status st = b.oom ? qt_set_err(errmsg, QT_ERR_NOMEM, "out of memory")
                   : qt_path_join(p, sizeof p, dir, "model.safetensors.index.json")
                       ? qt_file_write(p, b.data, strlen(b.data), errmsg)
                       : qt_set_err(errmsg, QT_ERR_ARG, "path too long");
    qt_strbuf_release(&b);
    return st;
}

/* Writes tensor ti (index in t) into writer w at declared index wi. */
static qt_status write_tensor(const qt_bench_synth_opts *o, const synth_tensor *x, size_t ti,
                              qt_dtype dt, qt_st_writer *w, size_t wi, float *f, void *conv,
                              char *errmsg)
{
    uint64_t n = x->shape[0] * (x->n_dims == 2 ? x->shape[1] : 1);
    size_t esz = qt_dtype_bits(dt) / 8;
    uint64_t key = mix64(o->seed * 0x2545f4914f6cdd1dull + (uint64_t)ti + 1);
    for (uint64_t first = 0; first < n; first += SYNTH_CHUNK) {
        size_t m = (size_t)(n - first < SYNTH_CHUNK ? n - first : SYNTH_CHUNK);
        long nsub = (long)((m + SYNTH_SUB - 1) / SYNTH_SUB);
#pragma omp parallel for schedule(static)
        for (long s = 0; s < nsub; s++) {
            size_t a = (size_t)s * SYNTH_SUB, k = m - a < SYNTH_SUB ? m - a : SYNTH_SUB;
            gen_values(key, first + a, x->mean, x->std, f + a, k);
            if (dt == QT_DTYPE_BF16) qt_fp32_to_bf16_row(f + a, (uint16_t *)conv + a, k);
            else if (dt == QT_DTYPE_F16) qt_fp32_to_fp16_row(f + a, (uint16_t *)conv + a, k);
        }
        const void *src = dt == QT_DTYPE_F32 ? (const void *)f : conv;
        if (qt_st_writer_write(w, wi, first * esz, src, m * esz) != QT_OK)
            return qt_set_err(errmsg, QT_ERR_IO, "%s", qt_st_writer_errmsg(w));
    }
    return QT_OK;
}

qt_status qt_bench_synth(const qt_bench_synth_opts *o, const char *out, uint64_t *bytes_out,
                         char *errmsg)
{
    qt_status st = QT_OK;
    synth_tensor *t = NULL;
    float *f = NULL;
    void *conv = NULL;
    qt_st_writer *w = NULL;
    char tmpdir[PATH_MAX] = "", parent[PATH_MAX], base[PATH_MAX], tmp[PATH_MAX];
    bool made_tmp = false;
    qt_dtype dt;
    const char *torch;
    if (bytes_out) *bytes_out = 0;
    QT_CHECK(o->dtype, QT_ERR_ARG, "no dtype");
    if (!strcmp(o->dtype, "bf16")) dt = QT_DTYPE_BF16, torch = "bfloat16";
    else if (!strcmp(o->dtype, "fp16")) dt = QT_DTYPE_F16, torch = "float16";
    else if (!strcmp(o->dtype, "fp32")) dt = QT_DTYPE_F32, torch = "float32";
    else QT_CHECK(0, QT_ERR_ARG, "dtype '%s': not one of bf16, fp16, fp32", o->dtype);
    QT_CHECK(o->hidden && o->intermediate && o->layers && o->heads && o->kv_heads && o->vocab,
             QT_ERR_ARG, "every dimension must be at least 1");
    QT_CHECK(o->hidden % o->heads == 0, QT_ERR_ARG, "hidden %zu is not a multiple of heads %zu",
             o->hidden, o->heads);
    QT_CHECK(o->heads % o->kv_heads == 0, QT_ERR_ARG,
             "heads %zu is not a multiple of kv heads %zu", o->heads, o->kv_heads);
    QT_CHECK(o->layers <= 100000 && o->hidden <= (1u << 20) && o->intermediate <= (1u << 22) &&
                 o->vocab <= (1u << 24),
             QT_ERR_ARG, "dimensions too large for a synthetic model");
    struct stat sb;
    QT_CHECK(lstat(out, &sb) != 0 || o->force, QT_ERR_ARG, "output '%s' exists (--force replaces it)",
             out);

    /* the tensors, in Hugging Face order */
    size_t nt = 0, cap = 3 + o->layers * SYNTH_MAX_TENSORS_PER_LAYER;
    t = qt_calloc(cap, sizeof *t);
    QT_CHECK(t != NULL, QT_ERR_NOMEM, "out of memory");
    size_t hd = o->hidden / o->heads, kv = hd * o->kv_heads;
    const float wstd = 0.02f;
    add_tensor(t, &nt, "model.embed_tokens.weight", o->vocab, o->hidden, 0, wstd);
    for (size_t l = 0; l < o->layers; l++) {
        /* each layer: a norm before attention and before the MLP, the seven
         * projections of the Llama table in between */
        for (int p = 0; p < QT_PROJ_COUNT; p++) {
            char name[96];
            size_t rows, cols;
            if (p == QT_PROJ_Q || p == QT_PROJ_GATE) {
                snprintf(name, sizeof name, "model.layers.%zu.%s.weight", l,
                         p == QT_PROJ_Q ? "input_layernorm" : "post_attention_layernorm");
                add_tensor(t, &nt, name, o->hidden, 0, 1.0f, 0.05f);
            }
            qt_proj_shape((qt_proj)p, o->hidden, o->hidden, kv, o->intermediate, &rows, &cols);
            snprintf(name, sizeof name, "model.layers.%zu.%s.weight", l,
                     qt_proj_module((qt_proj)p));
            add_tensor(t, &nt, name, rows, cols, 0.0f, wstd);
        }
    }
    add_tensor(t, &nt, "model.norm.weight", o->hidden, 0, 1.0f, 0.05f);
    add_tensor(t, &nt, "lm_head.weight", o->vocab, o->hidden, 0, wstd);

    /* shards: whole tensors, in order, up to max_shard_size */
    size_t esz = qt_dtype_bits(dt) / 8, n_shards = 1;
    uint64_t cur = 0, total = 0;
    for (size_t i = 0; i < nt; i++) {
        uint64_t b = t[i].shape[0] * (t[i].n_dims == 2 ? t[i].shape[1] : 1) * esz;
        if (o->max_shard_size && cur > 0 && cur + b > o->max_shard_size) n_shards++, cur = 0;
        t[i].shard = n_shards - 1;
        cur += b;
        total += b;
    }

    snprintf(tmp, sizeof tmp, "%s", out);
    snprintf(parent, sizeof parent, "%s", dirname(tmp));
    snprintf(tmp, sizeof tmp, "%s", out);
    snprintf(base, sizeof base, "%s", basename(tmp));
    int r = snprintf(tmpdir, sizeof tmpdir, "%s/.%s.qtool-synth.%ld", parent, base, (long)getpid());
    QT_CHECK(r > 0 && (size_t)r < sizeof tmpdir, QT_ERR_ARG, "output path too long");
    QT_CHECK(mkdir(tmpdir, 0755) == 0, QT_ERR_IO, "cannot create '%s': %s", tmpdir, strerror(errno));
    made_tmp = true;

    f = qt_aligned_alloc(64, SYNTH_CHUNK * sizeof(float));
    conv = qt_aligned_alloc(64, SYNTH_CHUNK * sizeof(uint16_t));
    QT_CHECK(f && conv, QT_ERR_NOMEM, "out of memory");
    char meta[160];
    snprintf(meta, sizeof meta, "seed=%" PRIu64 "; not a trained model", o->seed);
    for (size_t s = 0; s < n_shards; s++) {
        char sn[64], path[PATH_MAX];
        shard_file(s, n_shards, sn, sizeof sn);
        QT_CHECK(qt_path_join(path, sizeof path, tmpdir, sn), QT_ERR_ARG, "path too long");
        QT_TRY(qt_st_writer_open(path, &w, errmsg));
        qt_st_writer_add_metadata(w, "format", "pt");
        qt_st_writer_add_metadata(w, "qtool.synthetic", meta);
        size_t first = SIZE_MAX, last = 0;
        for (size_t i = 0; i < nt; i++) {
            if (t[i].shard != s) continue;
            if (first == SIZE_MAX) first = i;
            last = i;
            size_t idx;
            st = qt_st_writer_declare(w, t[i].name, dt, t[i].n_dims, t[i].shape, &idx);
            QT_CHECK(st == QT_OK, st, "%s", qt_st_writer_errmsg(w));
        }
        st = qt_st_writer_begin(w);
        QT_CHECK(st == QT_OK, st, "%s", qt_st_writer_errmsg(w));
        for (size_t i = first; i <= last; i++)
            QT_TRY(write_tensor(o, &t[i], i, dt, w, i - first, f, conv, errmsg));
        st = qt_st_writer_close(w, errmsg);
        w = NULL;
        QT_TRY(st);
    }
    if (n_shards > 1) QT_TRY(write_index(t, nt, n_shards, total, tmpdir, errmsg));
    QT_TRY(write_config(o, tmpdir, torch, errmsg));
    if (lstat(out, &sb) == 0) qt_tree_remove(out); /* o->force, checked above */
    QT_CHECK(rename(tmpdir, out) == 0, QT_ERR_IO, "cannot rename '%s' to '%s': %s", tmpdir, out,
             strerror(errno));
    made_tmp = false;
    if (bytes_out) *bytes_out = total;
fail:
    if (w) qt_st_writer_abort(w);
    if (made_tmp) qt_tree_remove(tmpdir);
    qt_aligned_free(f);
    qt_aligned_free(conv);
    qt_free(t);
    return st;
}
