/* bench/ppl.c: perplexity / KL-divergence harness (protocol, cache and
 * metrics in ppl.h). */
#include "bench/ppl.h"
#include "formats/fsutil.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "bench/svg.h"
#include "common/half.h"
#include "common/progress.h"
#include "common/sha256.h"
#include "common/threads.h"
#include "formats/adapter.h"
#include "formats/gguf.h"
#include "formats/layout.h"
#include "formats/modeldir.h"
#include "formats/pyjson.h"
#include "formats/vocab.h"
#include "formats/zstd_cache.h"
#include "model/model.h"
#include "model/tokenizer.h"

#define PPL_KIND "ppl-logp"
#define PPL_MAGIC "QTPPLLP1"
#define PPL_RECORD 64  /* payload head */
#define PPL_TRAILER 16 /* payload tail: f64 seconds, f64 tokens/s */
#define PPL_FULL_HASH_MAX (1ull << 30)
#define PPL_PATH_MAX 4096

/* ==== small helpers ======================================================= */

const char *qt_ppl_score_name(qt_ppl_score s)
{
    switch (s) {
    case QT_PPL_SCORE_HALF: return "half";
    case QT_PPL_SCORE_ALL: return "all";
    default: return "?";
    }
}

static void hash_u64(qt_sha256_ctx *c, uint64_t v)
{
    unsigned char b[8];
    qt_store_le64(b, v);
    qt_sha256_update(c, b, 8);
}

static void hash_str(qt_sha256_ctx *c, const char *s)
{
    qt_sha256_update(c, s, strlen(s) + 1);
}

/* ==== metrics ============================================================= */

void qt_ppl_log_softmax(const float *logits, size_t n, float *out)
{
    if (n == 0) return;
    float mx = logits[0];
    for (size_t i = 1; i < n; i++)
        if (logits[i] > mx || isnan(logits[i])) mx = logits[i];
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += exp((double)logits[i] - (double)mx);
    double lse = (double)mx + log(s);
    for (size_t i = 0; i < n; i++) out[i] = (float)((double)logits[i] - lse);
}

double qt_ppl_kl(const float *logp, const float *logq, size_t n)
{
    double kl = 0.0;
    for (size_t i = 0; i < n; i++) {
        double p = exp((double)logp[i]);
        if (p == 0.0) continue;
        kl += p * ((double)logp[i] - (double)logq[i]);
    }
    return kl;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double qt_ppl_quantile(double *v, size_t n, double q)
{
    if (n == 0) return 0.0;
    qsort(v, n, sizeof *v, cmp_double);
    if (q == 0.5 && n % 2 == 0) return 0.5 * (v[n / 2 - 1] + v[n / 2]);
    double r = ceil(q * (double)n);
    size_t k = r < 1.0 ? 0 : (size_t)r - 1;
    if (k >= n) k = n - 1;
    return v[k];
}

/* ==== model files: fingerprint, sizes ====================================== */

/* Adds a file to the fingerprint: its base name, size, and either every
 * byte or its header (safetensors: 8 + N bytes; otherwise the first 16 MiB)
 * plus 64 KiB at 16 evenly spaced places. */
static qt_status hash_file(qt_sha256_ctx *c, const char *path, bool full, char *errmsg)
{
    qt_status st = QT_OK;
    unsigned char *buf = NULL;
    FILE *f = fopen(path, "rb");
    QT_CHECK(f, QT_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    QT_CHECK(fstat(fileno(f), &sb) == 0, QT_ERR_IO, "cannot stat '%s': %s", path,
             strerror(errno));
    uint64_t size = (uint64_t)sb.st_size;
    const char *base = strrchr(path, '/');
    hash_str(c, base ? base + 1 : path);
    hash_u64(c, size);
    const size_t cap = 1u << 20;
    buf = qt_malloc(cap);
    QT_CHECK(buf, QT_ERR_NOMEM, "out of memory");
    uint64_t head = size;
    if (!full) {
        head = 16u << 20;
        unsigned char b8[8];
        if (size >= 8 && fread(b8, 1, 8, f) == 8 && !qt_str_ends_with(path, ".gguf")) {
            uint64_t n = qt_load_le64(b8);
            if (n <= QT_ST_MAX_HEADER) head = 8 + n;
        }
        if (head > size) head = size;
        QT_CHECK(fseek(f, 0, SEEK_SET) == 0, QT_ERR_IO, "cannot seek '%s'", path);
    }
    for (uint64_t done = 0; done < head;) {
        size_t want = head - done < cap ? (size_t)(head - done) : cap;
        size_t got = fread(buf, 1, want, f);
        QT_CHECK(got == want, QT_ERR_IO, "cannot read '%s': %s", path,
                 ferror(f) ? strerror(errno) : "file shrank");
        qt_sha256_update(c, buf, got);
        done += got;
    }
    if (!full) {
        const uint64_t piece = 64u << 10;
        for (int i = 0; i < 16 && size > piece; i++) {
            uint64_t off = (size - piece) / 15 * (uint64_t)i;
            QT_CHECK(fseeko(f, (off_t)off, SEEK_SET) == 0 &&
                         fread(buf, 1, (size_t)piece, f) == piece,
                     QT_ERR_IO, "cannot read '%s'", path);
            qt_sha256_update(c, buf, (size_t)piece);
        }
    }
fail:
    qt_free(buf);
    if (f) fclose(f);
    return st;
}

/* One opened model. */
typedef struct ppl_src {
    qt_modeldir *md; /* NULL for GGUF */
    qt_model *m;
} ppl_src;

static void src_close(ppl_src *s)
{
    qt_model_free(s->m);
    qt_modeldir_close(s->md);
    memset(s, 0, sizeof *s);
}

/* Opens the model at path with a KV cache of ctx tokens, fills res's
 * description and sizes, and (fp non-NULL) its fingerprint. */
static qt_status src_open(const char *arg, const char *adapter_opt, size_t ctx, ppl_src *s,
                          qt_ppl_model *res, unsigned char *fp, char *errmsg)
{
    qt_status st;
    char path[PPL_PATH_MAX];
    const char *adapter = NULL; /* "MODEL+ADAPTER", else --adapter */
    qt_layout *L = NULL;
    qt_gguf *g = NULL;
    char buf[PPL_PATH_MAX + 32];
    memset(s, 0, sizeof *s);
    QT_CHECK(qt_model_arg_split(arg, path, sizeof path, &adapter), QT_ERR_ARG,
             "'%s': path too long", arg);
    if (!adapter) adapter = adapter_opt;
    qt_model_opts mo = {.n_ctx = ctx, .n_batch = 0};
    qt_sha256_ctx c;
    qt_sha256_init(&c);
    hash_str(&c, "qtool-model-fingerprint/1");
    if (!qt_path_is_dir(path) && qt_file_is_gguf(path)) {
        QT_TRY(qt_gguf_open(path, &g, NULL, errmsg));
        for (size_t t = 0; t < qt_gguf_n_tensors(g); t++) {
            res->n_params += (uint64_t)qt_gguf_tensor_n_elements(g, t);
            res->weight_bytes += qt_gguf_tensor_nbytes(g, t);
        }
        struct stat sb;
        if (stat(path, &sb) == 0) res->file_bytes = (uint64_t)sb.st_size;
        qt_gguf_close(g);
        g = NULL;
        if (fp) QT_TRY(hash_file(&c, path, res->file_bytes <= PPL_FULL_HASH_MAX, errmsg));
        QT_TRY(qt_model_open_gguf(path, &mo, &s->m, errmsg));
    } else {
        QT_TRY(qt_modeldir_open(path, &s->md, errmsg));
        QT_TRY(qt_layout_build(s->md, &L, errmsg));
        for (size_t i = 0; i < qt_layout_n(L); i++) {
            const qt_lweight *w = qt_layout_at(L, i);
            res->n_params += w->n_elements;
            res->weight_bytes += w->nbytes;
        }
        for (size_t i = 0; i < qt_modeldir_n_shards(s->md); i++)
            res->file_bytes += qt_st_reader_file_size(qt_modeldir_shard(s->md, i));
        if (fp) {
            bool full = res->file_bytes <= PPL_FULL_HASH_MAX;
            for (size_t i = 0; i < qt_modeldir_n_shards(s->md); i++)
                QT_TRY(hash_file(&c, qt_st_reader_path(qt_modeldir_shard(s->md, i)), full,
                                 errmsg));
            snprintf(buf, sizeof buf, "%s/config.json", qt_modeldir_path(s->md));
            if (qt_path_is_file(buf)) QT_TRY(hash_file(&c, buf, true, errmsg));
        }
        QT_TRY(qt_model_open_modeldir(s->md, &mo, &s->m, errmsg));
    }
    if (adapter) { /* LoRA: runs unmerged; its fingerprint joins the model's */
        QT_TRY(qt_model_load_adapter(s->m, adapter, errmsg));
        hash_str(&c, qt_model_adapter(s->m)->fingerprint);
    }
    res->bpw = res->n_params ? 8.0 * (double)res->weight_bytes / (double)res->n_params : 0.0;
    qt_model_describe(s->m, res->desc, sizeof res->desc);
    if (fp) qt_sha256_final(&c, fp);
    const qt_model_config *cfg = qt_model_get_config(s->m);
    QT_CHECK(cfg->max_pos == 0 || ctx <= cfg->max_pos, QT_ERR_ARG,
             "'%s': ctx %zu exceeds the model's trained context of %zu tokens", path, ctx,
             cfg->max_pos);
    st = QT_OK;
fail:
    qt_layout_free(L);
    qt_gguf_close(g);
    if (st != QT_OK) src_close(s);
    return st;
}

/* BASE's tokenizer: opts->tokenizer, else the one that comes with BASE. */
static qt_status find_vocab(const char *base, const char *tok_opt, qt_vocab **v, char *errmsg)
{
    char path[PPL_PATH_MAX];
    const char *adapter;
    qt_model_arg_split(base, path, sizeof path, &adapter);
    qt_status st = qt_model_find_vocab(path, tok_opt, v, errmsg);
    if (st == QT_OK && !*v)
        st = qt_set_err(errmsg, QT_ERR_ARG, "'%s' comes with no tokenizer.json or tokenizer.model "
                        "(give one with --tokenizer)", base);
    return st;
}

/* ==== the cached BASE log-probabilities ==================================== */

/* Byte-plane shuffle of n values of w bytes (w = 2 or 4) and back. */
static void shuffle(const unsigned char *src, unsigned char *dst, size_t n, size_t w)
{
    for (size_t i = 0; i < n; i++)
        for (size_t b = 0; b < w; b++) dst[b * n + i] = src[i * w + b];
}

static void unshuffle(const unsigned char *src, unsigned char *dst, size_t n, size_t w)
{
    for (size_t i = 0; i < n; i++)
        for (size_t b = 0; b < w; b++) dst[i * w + b] = src[b * n + i];
}

/* One evaluator: a model (a qt_model_fork of the opened one beyond slot 0)
 * and its scratch. Chunks of a tiny model run one per slot in parallel. */
typedef struct ppl_slot {
    qt_model *m;           /* slot 0: borrowed; others: owned forks */
    int32_t *chunk;        /* (ctx) */
    float *logits;         /* (ctx, V) */
    float *lq;             /* (per, V) the model's log-probs of a chunk */
    float *lt;             /* (per) fp32 log-prob of each scored next token */
    qt_status st;
    char errmsg[QT_ERRMSG_SIZE];
} ppl_slot;

/* The state of one run of qt_ppl_compare. */
typedef struct ppl_run {
    const qt_ppl_opts *o;
    qt_ppl_result *res;
    int32_t *tokens;       /* (n_tokens) */
    int32_t bos;
    size_t V, per;         /* vocab, scored positions per chunk */
    size_t vb;             /* bytes per cached value; 0: only the scored tokens'
                              log-probs are stored (a temporary cache of BASE alone) */
    unsigned char key[32];
    char path[PPL_PATH_MAX];
    bool temp_file;
    /* scratch */
    ppl_slot *slots;       /* (n_slots) */
    size_t n_slots;        /* chunks evaluated at once (1, or the threads) */
    float *lp;             /* (per, V) BASE's cached log-probs */
    float *lpt;            /* (per) BASE's fp32 log-prob of each scored token */
    unsigned char *raw, *packed; /* (per * V * vb) */
    double *kl, *nll, *dp; /* (per) of a chunk */
    unsigned char *agree;  /* (per) */
    double *kl_all, *dp_all; /* (n_chunks * per) */
    qt_progress prog;
} ppl_run;

/* Evaluates chunk c with slot's model into slot->lq (log-probs of the scored
 * rows) and slot->lt (each scored next token's log-prob, fp32). */
static qt_status eval_chunk(ppl_run *run, ppl_slot *slot, size_t c, char *errmsg)
{
    qt_status st = QT_OK;
    const size_t ctx = run->res->ctx, V = run->V, first = run->res->first;
    const int32_t *next = run->tokens + c * ctx + first + 1;
    memcpy(slot->chunk, run->tokens + c * ctx, ctx * sizeof *slot->chunk);
    slot->chunk[0] = run->bos;
    qt_model_reset(slot->m);
    st = qt_model_eval(slot->m, slot->chunk, ctx, 0, slot->logits);
    QT_CHECK(st == QT_OK, st, "%s", qt_model_errmsg(slot->m));
    int bad = 0;
#pragma omp parallel for schedule(static) reduction(| : bad) if (run->n_slots == 1)
    for (size_t r = 0; r < run->per; r++) {
        float *out = slot->lq + r * V;
        qt_ppl_log_softmax(slot->logits + (first + r) * V, V, out);
        for (size_t i = 0; i < V; i++)
            if (!isfinite(out[i])) bad = 1;
        slot->lt[r] = out[next[r]];
    }
    QT_CHECK(!bad, QT_ERR_NUMERIC, "chunk %zu: non-finite logits", c);
fail:
    return st;
}

/* Evaluates chunks c0 .. c0+n-1 (n <= n_slots), chunk c0+i in slot i: in
 * parallel, one single-threaded chunk per thread, when there are several
 * slots. Each chunk's result is the same either way (qt_model_fork). */
static qt_status eval_group(ppl_run *run, size_t c0, size_t n, char *errmsg)
{
    if (run->n_slots == 1) return eval_chunk(run, &run->slots[0], c0, errmsg);
    ptrdiff_t i;
#pragma omp parallel for schedule(static, 1) num_threads((int)n)
    for (i = 0; i < (ptrdiff_t)n; i++) {
#ifdef _OPENMP
        omp_set_num_threads(1); /* this thread's matmuls and attention stay on it */
#endif
        ppl_slot *sl = &run->slots[i];
        sl->errmsg[0] = 0;
        sl->st = eval_chunk(run, sl, c0 + (size_t)i, sl->errmsg);
    }
    for (size_t j = 0; j < n; j++) /* the first failure in chunk order */
        if (run->slots[j].st != QT_OK)
            return qt_set_err(errmsg, run->slots[j].st, "%s", run->slots[j].errmsg);
    return QT_OK;
}

/* Stores lq (per, V) (as f32 or fp16; nothing when vb is 0) into
 * run->raw, shuffled into run->packed; then lt (per), little-endian fp32,
 * after it. */
static void pack_chunk(ppl_run *run, const float *lq, const float *lt)
{
    size_t n = run->per * run->V;
    if (run->vb == 4) {
        memcpy(run->raw, lq, n * 4);
    } else if (run->vb == 2) {
        uint16_t *h = (uint16_t *)(void *)run->raw;
        for (size_t i = 0; i < n; i++) h[i] = qt_fp32_to_fp16(lq[i]);
    }
    if (run->vb) shuffle(run->raw, run->packed, n, run->vb);
    unsigned char *t = run->packed + n * run->vb;
    for (size_t r = 0; r < run->per; r++) {
        uint32_t u;
        memcpy(&u, &lt[r], 4);
        qt_store_le32(t + 4 * r, u);
    }
}

/* Bytes of one chunk in the cache: the distribution, then the targets. */
static size_t chunk_bytes(const ppl_run *run)
{
    return run->per * run->V * run->vb + 4 * run->per;
}

/* Reads the next chunk of BASE log-probs from the cache into run->lp and
 * its scored tokens' fp32 log-probs into run->lpt. */
static qt_status read_chunk(ppl_run *run, qt_zcache_reader *zr, char *errmsg)
{
    size_t n = run->per * run->V;
    qt_status st = qt_zcache_reader_read(zr, run->packed, chunk_bytes(run), errmsg);
    if (st != QT_OK) return st;
    for (size_t r = 0; r < run->per; r++) {
        uint32_t u = qt_load_le32(run->packed + n * run->vb + 4 * r);
        memcpy(&run->lpt[r], &u, 4);
    }
    if (run->vb == 4) {
        unshuffle(run->packed, (unsigned char *)run->lp, n, 4);
    } else if (run->vb == 2) {
        unshuffle(run->packed, run->raw, n, 2);
        const uint16_t *h = (const uint16_t *)(const void *)run->raw;
        for (size_t i = 0; i < n; i++) run->lp[i] = qt_fp16_to_fp32(h[i]);
    }
    return QT_OK;
}

static void record_encode(const ppl_run *run, unsigned char rec[PPL_RECORD])
{
    memset(rec, 0, PPL_RECORD);
    memcpy(rec, PPL_MAGIC, 8);
    qt_store_le64(rec + 8, run->res->n_chunks);
    qt_store_le64(rec + 16, run->per);
    qt_store_le64(rec + 24, run->V);
    qt_store_le32(rec + 32, (uint32_t)run->vb);
}

static void f64_store(unsigned char *p, double v)
{
    uint64_t u;
    memcpy(&u, &v, 8);
    qt_store_le64(p, u);
}

static double f64_load(const unsigned char *p)
{
    uint64_t u = qt_load_le64(p);
    double v;
    memcpy(&v, &u, 8);
    return v;
}

/* BASE alone into a temporary cache (vb 0: only the scored tokens'
 * log-probs, which fit in memory for every chunk): all chunks in one
 * parallel loop, each on the slot of the thread that takes it (the same
 * result on any slot), so threads never wait for each other between
 * chunks; lt_all (n_chunks, per). The first failure in chunk order wins. */
static qt_status eval_targets(ppl_run *run, float *lt_all, char *errmsg)
{
    const size_t nc = run->res->n_chunks, per = run->per;
    size_t fail_c = nc;
    qt_status fail_st = QT_OK;
    ptrdiff_t c;
#pragma omp parallel for schedule(dynamic, 1) num_threads((int)run->n_slots)
    for (c = 0; c < (ptrdiff_t)nc; c++) {
#ifdef _OPENMP
        omp_set_num_threads(1); /* this thread's matmuls and attention stay on it */
#endif
        ppl_slot *sl = &run->slots[qt_thread_id()];
        size_t seen;
#pragma omp atomic read
        seen = fail_c;
        if ((size_t)c > seen) continue; /* a failure before it ends the run */
        char msg[QT_ERRMSG_SIZE] = "";
        qt_status st = eval_chunk(run, sl, (size_t)c, msg);
        if (st == QT_OK) memcpy(lt_all + (size_t)c * per, sl->lt, per * sizeof *lt_all);
#pragma omp critical(ppl_targets)
        {
            if (st != QT_OK && (size_t)c < fail_c) {
                fail_c = (size_t)c;
                fail_st = st;
                qt_set_err(errmsg, st, "%s", msg);
            }
            if (st == QT_OK) qt_progress_add(&run->prog, 1, 0);
        }
    }
    return fail_st;
}

/* Runs BASE over every chunk and writes the cache file. */
static qt_status base_run(ppl_run *run, char *errmsg)
{
    qt_status st;
    qt_zcache_writer *w = NULL;
    unsigned char rec[PPL_RECORD], tail[PPL_TRAILER];
    /* a temporary file (--no-cache) is read once: the fastest zstd level */
    QT_TRY(qt_zcache_writer_open(run->path, run->key, PPL_KIND, run->temp_file ? 1 : 3, &w,
                                 errmsg));
    record_encode(run, rec);
    double t_eval = 0.0;
    qt_status wst = qt_zcache_writer_write(w, rec, sizeof rec);
    const size_t nc = run->res->n_chunks;
    if (run->vb == 0 && run->n_slots > 1) { /* every chunk at once, then written in order */
        float *lt_all = qt_malloc(nc * run->per * sizeof *lt_all);
        QT_CHECK(lt_all, QT_ERR_NOMEM, "out of memory");
        double t0 = qt_now();
        st = eval_targets(run, lt_all, errmsg);
        t_eval = qt_now() - t0;
        for (size_t c = 0; c < nc && st == QT_OK && wst == QT_OK; c++) {
            pack_chunk(run, NULL, lt_all + c * run->per);
            wst = qt_zcache_writer_write(w, run->packed, chunk_bytes(run));
        }
        qt_free(lt_all);
        if (st != QT_OK) goto fail;
    } else { /* n_slots chunks at a time, written in chunk order after each group */
        for (size_t c0 = 0; c0 < nc && wst == QT_OK; c0 += run->n_slots) {
            const size_t g = nc - c0 < run->n_slots ? nc - c0 : run->n_slots;
            double t0 = qt_now();
            QT_TRY(eval_group(run, c0, g, errmsg));
            t_eval += qt_now() - t0;
            for (size_t j = 0; j < g && wst == QT_OK; j++) {
                pack_chunk(run, run->slots[j].lq, run->slots[j].lt);
                wst = qt_zcache_writer_write(w, run->packed, chunk_bytes(run));
                qt_progress_add(&run->prog, 1, 0);
            }
        }
    }
    qt_ppl_model *b = &run->res->models[0];
    b->seconds = t_eval;
    b->tok_s = t_eval > 0 ? (double)(run->res->n_chunks * run->res->ctx) / t_eval : 0.0;
    f64_store(tail, b->seconds);
    f64_store(tail + 8, b->tok_s);
    if (wst == QT_OK) wst = qt_zcache_writer_write(w, tail, sizeof tail);
    if (wst != QT_OK) {
        st = qt_set_err(errmsg, wst, "%s", qt_zcache_writer_errmsg(w));
        goto fail;
    }
    st = qt_zcache_writer_close(w, errmsg);
    w = NULL;
fail:
    qt_zcache_writer_abort(w);
    return st;
}

/* Scores model i against the cached BASE log-probs: evaluated with the
 * slots' models (eval), or BASE itself from the cache alone (!eval). */
static qt_status score_model(ppl_run *run, size_t i, bool eval, char *errmsg)
{
    qt_status st;
    qt_zcache_reader *zr = NULL;
    qt_ppl_result *res = run->res;
    qt_ppl_model *pm = &res->models[i];
    unsigned char rec[PPL_RECORD], want[PPL_RECORD], tail[PPL_TRAILER];
    const size_t ctx = res->ctx, per = run->per, V = run->V;
    QT_TRY(qt_zcache_reader_open(run->path, run->key, PPL_KIND, &zr, errmsg));
    QT_TRY(qt_zcache_reader_read(zr, rec, sizeof rec, errmsg));
    record_encode(run, want);
    QT_CHECK(!memcmp(rec, want, sizeof rec) &&
                 qt_zcache_reader_size(zr) ==
                     PPL_RECORD + PPL_TRAILER + (uint64_t)res->n_chunks * chunk_bytes(run),
             QT_ERR_FORMAT, "'%s': cached log-probs do not match the run (record)", run->path);
    double nll_sum = 0.0, nll2_sum = 0.0, kl_sum = 0.0, kl2_sum = 0.0, dp_sum = 0.0,
           kl_max = 0.0;
    size_t agree = 0, n = 0;
    double t_eval = 0.0;
    for (size_t c = 0; c < res->n_chunks; c++) {
        const ppl_slot *sl = &run->slots[c % run->n_slots];
        if (eval && c % run->n_slots == 0) {
            const size_t g = res->n_chunks - c < run->n_slots ? res->n_chunks - c : run->n_slots;
            double t0 = qt_now();
            QT_TRY(eval_group(run, c, g, errmsg));
            t_eval += qt_now() - t0;
        }
        QT_TRY(read_chunk(run, zr, errmsg));
        /* the full distributions as stored (KL, top-1), the scored tokens'
         * log-probs in fp32 (NLL, |dp|) */
        const float *lq = eval ? sl->lq : run->lp, *lqt = eval ? sl->lt : run->lpt;
        /* threads only for the KL of an evaluated model (BASE's rows are trivial) */
#pragma omp parallel for schedule(static) if (eval)
        for (size_t r = 0; r < per; r++) {
            const float *b = run->lp + r * V, *q = lq + r * V;
            run->nll[r] = -(double)lqt[r];
            if (!eval) { /* BASE against itself: what the formulas give, exactly */
                run->kl[r] = 0.0;
                run->agree[r] = 1;
                run->dp[r] = 0.0;
                continue;
            }
            run->kl[r] = qt_ppl_kl(b, q, V);
            run->agree[r] = qt_sample_argmax(b, V) == qt_sample_argmax(q, V);
            run->dp[r] = fabs(exp((double)lqt[r]) - exp((double)run->lpt[r]));
        }
        for (size_t r = 0; r < per; r++, n++) { /* serial: fixed order */
            nll_sum += run->nll[r];
            nll2_sum += run->nll[r] * run->nll[r];
            kl_sum += run->kl[r];
            kl2_sum += run->kl[r] * run->kl[r];
            if (run->kl[r] > kl_max) kl_max = run->kl[r];
            dp_sum += run->dp[r];
            agree += run->agree[r];
            run->kl_all[n] = run->kl[r];
            run->dp_all[n] = run->dp[r];
        }
        if (eval) qt_progress_add(&run->prog, 1, 0);
    }
    QT_TRY(qt_zcache_reader_read(zr, tail, sizeof tail, errmsg));
    pm->n_scored = n;
    double dn = (double)n;
    pm->nll = nll_sum / dn;
    pm->ppl = exp(pm->nll);
    double var = nll2_sum / dn - pm->nll * pm->nll;
    pm->ppl_err = var > 0 && n > 1 ? pm->ppl * sqrt(var / (dn - 1.0)) : 0.0;
    pm->kl_mean = kl_sum / dn;
    var = kl2_sum / dn - pm->kl_mean * pm->kl_mean;
    pm->kl_mean_err = var > 0 && n > 1 ? sqrt(var / (dn - 1.0)) : 0.0;
    pm->kl_max = kl_max;
    pm->kl_median = qt_ppl_quantile(run->kl_all, n, 0.5);
    pm->kl_p99 = qt_ppl_quantile(run->kl_all, n, 0.99);
    pm->top1 = (double)agree / dn;
    pm->dp_mean = dp_sum / dn;
    pm->dp_p99 = qt_ppl_quantile(run->dp_all, n, 0.99);
    if (eval) {
        pm->seconds = t_eval;
        pm->tok_s = t_eval > 0 ? (double)(res->n_chunks * ctx) / t_eval : 0.0;
    } else if (pm->from_cache) {
        pm->seconds = f64_load(tail);
        pm->tok_s = f64_load(tail + 8);
    }
    pm->ppl_ratio = res->models[0].ppl > 0 ? pm->ppl / res->models[0].ppl : 0.0;
    st = QT_OK;
fail:
    qt_zcache_reader_close(zr);
    return st;
}

/* ==== the comparison ========================================================= */

void qt_ppl_result_free(qt_ppl_result *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->n_models; i++) qt_free(r->models[i].path);
    qt_free(r->models);
    qt_free(r);
}

/* Frees the forks of slots 1.. (slot 0's model is borrowed). */
static void slots_unbind(ppl_run *run)
{
    for (size_t j = 0; j < run->n_slots; j++) {
        if (j > 0) qt_model_free(run->slots[j].m);
        run->slots[j].m = NULL;
    }
}

/* Gives the slots m: slot 0 borrows it, the others get forks. */
static qt_status slots_bind(ppl_run *run, qt_model *m, char *errmsg)
{
    slots_unbind(run);
    run->slots[0].m = m;
    for (size_t j = 1; j < run->n_slots; j++) {
        qt_status st = qt_model_fork(m, &run->slots[j].m, errmsg);
        if (st != QT_OK) return st;
    }
    return QT_OK;
}

/* Chunks evaluated at once: one per thread for a model whose weights fit
 * in QT_PPL_CHUNK_PAR_BYTES (all overhead and attention, no big matmul to
 * share), else one chunk with every thread inside its matmuls. */
static size_t slots_for(const qt_ppl_model *pm, size_t n_chunks)
{
    size_t nth = 1;
#ifdef _OPENMP
    nth = (size_t)omp_get_max_threads();
#endif
    if (pm->weight_bytes > QT_PPL_CHUNK_PAR_BYTES) return 1;
    return nth < n_chunks ? nth : n_chunks;
}

static void run_release(ppl_run *run)
{
    qt_free(run->tokens);
    if (run->slots) {
        slots_unbind(run);
        for (size_t j = 0; j < run->n_slots; j++) {
            qt_free(run->slots[j].chunk);
            qt_free(run->slots[j].logits);
            qt_free(run->slots[j].lq);
            qt_free(run->slots[j].lt);
        }
        qt_free(run->slots);
    }
    qt_free(run->lp);
    qt_free(run->lpt);
    qt_free(run->raw);
    qt_free(run->packed);
    qt_free(run->kl);
    qt_free(run->nll);
    qt_free(run->dp);
    qt_free(run->agree);
    qt_free(run->kl_all);
    qt_free(run->dp_all);
    if (run->temp_file && run->path[0]) remove(run->path);
}

/* Tokenizes the text with BASE's tokenizer (BOS first) into run->tokens. */
static qt_status tokenize(ppl_run *run, const char *base, const char *text, size_t len,
                          size_t model_vocab, int32_t cfg_bos, char *errmsg)
{
    qt_status st;
    qt_vocab *v = NULL;
    qt_tokenizer *tok = NULL;
    QT_TRY(find_vocab(base, run->o->tokenizer, &v, errmsg));
    st = qt_tokenizer_new(v, &tok);
    QT_CHECK(st == QT_OK, st, "tokenizer: %s", qt_status_str(st));
    QT_CHECK(qt_tokenizer_n_tokens(tok) <= model_vocab, QT_ERR_ARG,
             "the tokenizer has %zu tokens, the model %zu", qt_tokenizer_n_tokens(tok),
             model_vocab);
    run->bos = qt_tokenizer_bos(tok);
    if (run->bos < 0) run->bos = cfg_bos;
    QT_CHECK(run->bos >= 0 && (size_t)run->bos < model_vocab, QT_ERR_ARG,
             "'%s': no BOS token (the protocol starts every chunk with BOS)", base);
    size_t n = 0;
    int32_t *ids = NULL;
    st = qt_tokenizer_encode(tok, text, len, false, &ids, &n);
    QT_CHECK(st == QT_OK, st, "cannot tokenize the text (%s)", qt_status_str(st));
    run->tokens = qt_malloc((n + 1) * sizeof *run->tokens);
    if (!run->tokens) {
        qt_free(ids);
        QT_CHECK(0, QT_ERR_NOMEM, "out of memory");
    }
    run->tokens[0] = run->bos;
    if (n) memcpy(run->tokens + 1, ids, n * sizeof *ids);
    qt_free(ids);
    run->res->n_tokens = n + 1;
fail:
    qt_tokenizer_free(tok);
    qt_vocab_free(v);
    return st;
}

static void *alloc_n(size_t count, size_t size, bool *ok)
{
    size_t b;
    if (!qt_mul_size(count, size, &b)) {
        *ok = false;
        return NULL;
    }
    void *p = qt_malloc(b ? b : 1);
    if (!p) *ok = false;
    return p;
}

qt_status qt_ppl_compare(const char *const *models, size_t n_models, const char *text,
                         size_t text_len, const qt_ppl_opts *opts, qt_ppl_result **out,
                         char *errmsg)
{
    qt_status st;
    ppl_run run;
    ppl_src src = {0};
    qt_ppl_result *res = NULL;
    memset(&run, 0, sizeof run);
    *out = NULL;
    run.o = opts;
    QT_CHECK(models && n_models >= 1 && opts && (text || text_len == 0), QT_ERR_ARG,
             "ppl: no model");
    size_t ctx = opts->ctx ? opts->ctx : 512;
    QT_CHECK(ctx >= 4 && ctx <= (1u << 20), QT_ERR_ARG, "ppl: ctx %zu not in 4..%u", ctx,
             1u << 20);
    QT_CHECK(opts->score < QT_PPL_SCORE_COUNT, QT_ERR_ARG, "ppl: bad score mode");
    res = qt_calloc(1, sizeof *res);
    QT_CHECK(res, QT_ERR_NOMEM, "out of memory");
    res->models = qt_calloc(n_models, sizeof *res->models);
    QT_CHECK(res->models, QT_ERR_NOMEM, "out of memory");
    res->n_models = n_models;
    for (size_t i = 0; i < n_models; i++) {
        res->models[i].path = qt_strdup(models[i]);
        QT_CHECK(res->models[i].path, QT_ERR_NOMEM, "out of memory");
    }
    run.res = res;
    res->ctx = ctx;
    res->score = opts->score;
    res->text_bytes = text_len;
    res->first = opts->score == QT_PPL_SCORE_HALF ? ctx / 2 : 0;
    res->n_per_chunk = run.per = ctx - 1 - res->first;
    res->threads = 1;
#ifdef _OPENMP
    res->threads = omp_get_max_threads();
#endif
    unsigned char text_sha[32], tok_sha[32], fp[32];
    qt_sha256(text, text_len, text_sha);
    qt_sha256_hex(text_sha, res->text_sha256);

    /* BASE: open (for its vocabulary, sizes and fingerprint), tokenize */
    QT_TRY(src_open(models[0], opts->adapter, ctx, &src, &res->models[0], fp, errmsg));
    const qt_model_config *cfg = qt_model_get_config(src.m);
    run.V = res->vocab = cfg->vocab_size;
    run.vb = res->value_bytes = run.V <= QT_PPL_F32_VOCAB_MAX ? 4 : 2;
    QT_TRY(tokenize(&run, models[0], text, text_len, run.V, cfg->bos_id, errmsg));
    res->n_chunks = res->n_tokens / ctx;
    if (opts->max_chunks && res->n_chunks > opts->max_chunks) res->n_chunks = opts->max_chunks;
    QT_CHECK(res->n_chunks >= 1, QT_ERR_ARG,
             "the text has %zu tokens, fewer than one chunk of %zu (lower --ctx)",
             res->n_tokens, ctx);
    qt_sha256(run.tokens, res->n_chunks * ctx * sizeof *run.tokens, tok_sha);

    /* the cache key and file */
    qt_sha256_ctx kc;
    qt_sha256_init(&kc);
    hash_str(&kc, "qtool-ppl-logp/2");
    hash_str(&kc, QT_VERSION_STRING);
    qt_sha256_update(&kc, fp, 32);
    qt_sha256_update(&kc, text_sha, 32);
    qt_sha256_update(&kc, tok_sha, 32);
    hash_u64(&kc, ctx);
    hash_u64(&kc, res->n_chunks);
    hash_u64(&kc, (uint64_t)opts->score);
    hash_u64(&kc, run.vb);
    qt_sha256_final(&kc, run.key);
    char hex[65];
    qt_sha256_hex(run.key, hex);
    bool cached = false;
    if (opts->cache_dir) {
        QT_CHECK(snprintf(run.path, sizeof run.path, "%s/ppl-%s.zc", opts->cache_dir, hex) <
                     (int)sizeof run.path,
                 QT_ERR_ARG, "cache folder path too long");
        snprintf(res->cache_path, sizeof res->cache_path, "%s", run.path);
        char why[QT_ERRMSG_SIZE] = "";
        qt_status vst = qt_zcache_verify(run.path, run.key, PPL_KIND, NULL, why);
        if (vst == QT_OK) cached = true;
        else if (!(vst == QT_ERR_IO && !qt_path_is_file(run.path)))
            snprintf(res->cache_note, sizeof res->cache_note, "rebuilt the cache file: %s", why);
    } else {
        const char *tmp = opts->tmp_dir ? opts->tmp_dir : getenv("TMPDIR");
        if (!tmp || !*tmp) tmp = "/tmp";
        QT_CHECK(snprintf(run.path, sizeof run.path, "%s/qtool-ppl-%ld-%.16s.zc", tmp,
                          (long)getpid(), hex) < (int)sizeof run.path,
                 QT_ERR_ARG, "temporary folder path too long");
        run.temp_file = true;
    }
    res->models[0].from_cache = cached;
    /* a temporary cache that only BASE's own NLL reads keeps no distributions */
    if (run.temp_file && n_models == 1) run.vb = 0;

    /* scratch */
    bool ok = true;
    size_t nv = run.per * run.V, total = res->n_chunks * run.per;
    run.n_slots = slots_for(&res->models[0], res->n_chunks);
    run.slots = qt_calloc(run.n_slots, sizeof *run.slots);
    QT_CHECK(run.slots, QT_ERR_NOMEM, "out of memory");
    for (size_t j = 0; j < run.n_slots; j++) {
        ppl_slot *sl = &run.slots[j];
        sl->chunk = alloc_n(ctx, sizeof *sl->chunk, &ok);
        sl->logits = alloc_n(ctx * run.V, sizeof *sl->logits, &ok);
        sl->lq = alloc_n(nv, sizeof *sl->lq, &ok);
        sl->lt = alloc_n(run.per, sizeof *sl->lt, &ok);
    }
    run.lp = alloc_n(nv, sizeof *run.lp, &ok);
    run.lpt = alloc_n(run.per, sizeof *run.lpt, &ok);
    run.raw = alloc_n(nv, run.vb, &ok);
    run.packed = alloc_n(nv * run.vb + 4 * run.per, 1, &ok);
    run.kl = alloc_n(run.per, sizeof *run.kl, &ok);
    run.nll = alloc_n(run.per, sizeof *run.nll, &ok);
    run.dp = alloc_n(run.per, sizeof *run.dp, &ok);
    run.agree = alloc_n(run.per, 1, &ok);
    run.kl_all = alloc_n(total, sizeof *run.kl_all, &ok);
    run.dp_all = alloc_n(total, sizeof *run.dp_all, &ok);
    QT_CHECK(ok, QT_ERR_NOMEM, "out of memory (ctx %zu x vocab %zu)", ctx, run.V);

    qt_progress_init(&run.prog, opts->progress, opts->progress != NULL, "ppl",
                     (uint64_t)res->n_chunks * (n_models - 1 + (cached ? 0 : 1)), 0);
    if (!cached) {
        QT_TRY(slots_bind(&run, src.m, errmsg));
        QT_TRY(base_run(&run, errmsg));
    }
    slots_unbind(&run);
    src_close(&src);
    QT_TRY(score_model(&run, 0, false, errmsg));
    for (size_t i = 1; i < n_models; i++) {
        QT_TRY(src_open(models[i], opts->adapter, ctx, &src, &res->models[i], NULL, errmsg));
        QT_CHECK(qt_model_get_config(src.m)->vocab_size == run.V, QT_ERR_ARG,
                 "'%s': vocabulary of %zu tokens, BASE has %zu", models[i],
                 qt_model_get_config(src.m)->vocab_size, run.V);
        QT_TRY(slots_bind(&run, src.m, errmsg));
        QT_TRY(score_model(&run, i, true, errmsg));
        slots_unbind(&run);
        src_close(&src);
    }
    qt_progress_finish(&run.prog);
    *out = res;
    res = NULL;
    st = QT_OK;
fail:
    src_close(&src);
    run_release(&run);
    qt_ppl_result_free(res);
    return st;
}

/* ==== reports ================================================================ */

void qt_ppl_protocol(const qt_ppl_result *r, char *buf, size_t n)
{
    if (!n) return;
    snprintf(buf, n,
             "ctx %zu, %zu chunks (%zu of %zu tokens), BOS first in each chunk, scored "
             "positions %zu..%zu (%zu per chunk, %zu in all%s)",
             r->ctx, r->n_chunks, r->n_chunks * r->ctx, r->n_tokens, r->first, r->ctx - 2,
             r->n_per_chunk, r->n_chunks * r->n_per_chunk,
             r->score == QT_PPL_SCORE_HALF ? "; llama-perplexity protocol"
                                           : "; --score all: every position");
}

static void jnum(qt_strbuf *b, const char *key, double v, bool comma)
{
    if (isfinite(v)) qt_strbuf_printf(b, "\"%s\": %.10g%s", key, v, comma ? ", " : "");
    else qt_strbuf_printf(b, "\"%s\": null%s", key, comma ? ", " : "");
}

qt_status qt_ppl_write_json(const qt_ppl_result *r, FILE *f, char *errmsg)
{
    qt_strbuf b = {0};
    char proto[512];
    qt_ppl_protocol(r, proto, sizeof proto);
    qt_strbuf_puts(&b, "{\"protocol\": ");
    qt_strbuf_json_string(&b, proto);
    qt_strbuf_printf(&b, ", \"ctx\": %zu, \"chunks\": %zu, \"score\": \"%s\", \"tokens\": %zu, "
                     "\"scored\": %zu, \"text_bytes\": %zu, \"text_sha256\": \"%s\", "
                     "\"threads\": %d, \"cache\": ",
                     r->ctx, r->n_chunks, qt_ppl_score_name(r->score), r->n_tokens,
                     r->n_chunks * r->n_per_chunk, r->text_bytes, r->text_sha256, r->threads);
    if (r->cache_path[0]) qt_strbuf_json_string(&b, r->cache_path);
    else qt_strbuf_puts(&b, "null");
    qt_strbuf_puts(&b, ", \"models\": [");
    for (size_t i = 0; i < r->n_models; i++) {
        const qt_ppl_model *m = &r->models[i];
        qt_strbuf_puts(&b, i ? ",\n  {\"path\": " : "\n  {\"path\": ");
        qt_strbuf_json_string(&b, m->path);
        qt_strbuf_puts(&b, ", \"description\": ");
        qt_strbuf_json_string(&b, m->desc);
        qt_strbuf_printf(&b, ", \"file_bytes\": %llu, \"params\": %llu, \"weight_bytes\": %llu, ",
                         (unsigned long long)m->file_bytes, (unsigned long long)m->n_params,
                         (unsigned long long)m->weight_bytes);
        jnum(&b, "bpw", m->bpw, true);
        jnum(&b, "ppl", m->ppl, true);
        jnum(&b, "ppl_err", m->ppl_err, true);
        jnum(&b, "ppl_ratio", m->ppl_ratio, true);
        jnum(&b, "nll", m->nll, true);
        jnum(&b, "kl_mean", m->kl_mean, true);
        jnum(&b, "kl_mean_err", m->kl_mean_err, true);
        jnum(&b, "kl_median", m->kl_median, true);
        jnum(&b, "kl_p99", m->kl_p99, true);
        jnum(&b, "kl_max", m->kl_max, true);
        jnum(&b, "top1", m->top1, true);
        jnum(&b, "dp_mean", m->dp_mean, true);
        jnum(&b, "dp_p99", m->dp_p99, true);
        jnum(&b, "seconds", m->seconds, true);
        jnum(&b, "tok_s", m->tok_s, true);
        qt_strbuf_printf(&b, "\"from_cache\": %s}", m->from_cache ? "true" : "false");
    }
    qt_strbuf_puts(&b, "\n]}\n");
    qt_status st = QT_OK;
    if (b.oom) st = qt_set_err(errmsg, QT_ERR_NOMEM, "out of memory");
    else if (fwrite(b.data, 1, b.len, f) != b.len || fflush(f) != 0)
        st = qt_set_err(errmsg, QT_ERR_IO, "cannot write the JSON report: %s", strerror(errno));
    qt_strbuf_release(&b);
    return st;
}

/* The last path component of p, without trailing slashes, into buf. */
static void short_name(const char *p, char *buf, size_t n)
{
    char tmp[PPL_PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", p);
    size_t len = strlen(tmp);
    while (len > 1 && tmp[len - 1] == '/') tmp[--len] = 0;
    const char *s = strrchr(tmp, '/');
    snprintf(buf, n, "%s", s ? s + 1 : tmp);
}

qt_status qt_ppl_write_svg(const qt_ppl_result *r, const char *path, char *errmsg)
{
    qt_status st;
    FILE *f = NULL;
    char tmp[PPL_PATH_MAX + 32] = "";
    qt_svg_point *kl = qt_calloc(r->n_models, sizeof *kl);
    qt_svg_point *pr = qt_calloc(r->n_models, sizeof *pr);
    char(*names)[64] = qt_calloc(r->n_models, sizeof *names);
    QT_CHECK(kl && pr && names, QT_ERR_NOMEM, "out of memory");
    double min_pos = INFINITY;
    for (size_t i = 0; i < r->n_models; i++) {
        const qt_ppl_model *m = &r->models[i];
        short_name(m->path, names[i], sizeof names[i]);
        kl[i] = (qt_svg_point){m->bpw, m->kl_mean, names[i]};
        pr[i] = (qt_svg_point){m->bpw, m->ppl_ratio, names[i]};
        if (m->kl_mean > 0 && m->kl_mean < min_pos) min_pos = m->kl_mean;
    }
    double floor_y = isfinite(min_pos) ? pow(10.0, floor(log10(min_pos)) - 1) : 1e-8;
    char title[256];
    snprintf(title, sizeof title, "qtool bench ppl: ctx %zu, %zu chunks, %zu scored tokens (%s)",
             r->ctx, r->n_chunks, r->n_chunks * r->n_per_chunk,
             r->score == QT_PPL_SCORE_HALF ? "llama-perplexity protocol" : "every position");
    qt_svg_panel panels[2] = {
        {"mean KL divergence vs BASE", "bits per weight", "KL divergence (nats, log scale)",
         true, floor_y, kl, r->n_models},
        {"perplexity ratio to BASE", "bits per weight", "PPL / PPL(BASE)", false, 0.0, pr,
         r->n_models},
    };
    QT_CHECK(snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) < (int)sizeof tmp,
             QT_ERR_ARG, "'%s': path too long", path);
    f = fopen(tmp, "w");
    QT_CHECK(f, QT_ERR_IO, "cannot create '%s': %s", tmp, strerror(errno));
    st = qt_svg_write_panels(f, title, panels, 2, errmsg);
    QT_CHECK(st != QT_ERR_IO, QT_ERR_IO, "cannot write '%s': %s", tmp, strerror(errno));
    QT_TRY(st);
    int rc = fclose(f);
    f = NULL;
    QT_CHECK(rc == 0, QT_ERR_IO, "cannot write '%s': %s", tmp, strerror(errno));
    QT_CHECK(rename(tmp, path) == 0, QT_ERR_IO, "cannot rename '%s' to '%s': %s", tmp, path,
             strerror(errno));
    st = QT_OK;
fail:
    if (f) fclose(f);
    if (st != QT_OK && tmp[0]) remove(tmp);
    qt_free(kl);
    qt_free(pr);
    qt_free(names);
    return st;
}
