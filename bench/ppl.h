/*
 * bench/ppl.h: perplexity and KL divergence of quantized models against the
 * original (`qtool bench ppl BASE [QUANT ...]`).
 *
 * Protocol (llama.cpp's llama-perplexity, so that numbers compare): the
 * whole text is tokenized once with BASE's tokenizer, BOS first; it is cut
 * into consecutive, non-overlapping chunks of ctx tokens (the remainder is
 * dropped; at most max_chunks chunks); in each chunk the first token is
 * replaced by BOS and the chunk is evaluated from position 0. Scored are
 * (QT_PPL_SCORE_HALF) the logits at positions ctx/2 .. ctx-2 predicting the
 * token after each, ctx-1-ctx/2 per chunk, or (QT_PPL_SCORE_ALL) every
 * position 0 .. ctx-2 (position 0 predicts from BOS alone). PPL =
 * exp(mean NLL); its standard error is PPL * sqrt(var(NLL) / (n - 1)), as
 * llama.cpp computes it.
 *
 * Comparison: every model is scored on exactly the same tokens. Per scored
 * position, with p = BASE's and q = the model's token distribution
 * (log-softmax of the logits, accumulated in double): KL(p || q) =
 * sum_i p_i (log p_i - log q_i); top-1 agreement (the most likely token of
 * q, first on ties, equals p's); |q(correct) - p(correct)|. Reported: mean
 * (with its standard error), median, 99th percentile (nearest rank) and max
 * of KL; top-1 agreement as a fraction; mean and 99th percentile of |dp|;
 * PPL and its ratio to BASE's; weight bytes, parameters and bits per weight
 * (as `qtool inspect`: all stored bytes of all logical weights over their
 * parameters); evaluation wall time and tokens per second (evaluated tokens,
 * ctx per chunk).
 *
 * BASE's log-probabilities are computed once and kept in a cache file
 * (formats/zstd_cache.h, kind "ppl-logp") named by its key:
 * "<cache_dir>/ppl-<sha256 hex>.zc", key = sha256 of the model fingerprint
 * (every weight file's name and size and its bytes: the whole file when the
 * model is at most 1 GiB, else its header plus 64 KiB at 16 places; and
 * config.json), the text's sha256, the token ids' sha256, ctx, the number of
 * chunks, the score mode, the storage type and the qtool version. The
 * payload is a 64-byte record (magic "QTPPLLP1", u64 n_chunks, u64 scored
 * positions per chunk, u64 vocab, u32 bytes per value, then zeros), per
 * chunk the scored rows of log-probabilities, (positions, vocab), stored
 * byte-plane-shuffled (all first bytes of the chunk's values, then all
 * second bytes, ...) which zstd compresses better, then the float32
 * log-probability of each scored position's next token (positions,), and a
 * 16-byte trailer (f64 BASE's evaluation seconds, f64 its tokens/s).
 * Distribution values are float32 when vocab <= 8192 (exact: a model
 * compared with itself gives KL 0 and 100% agreement, cached or not) and
 * IEEE fp16 above (half the size; a 32k vocabulary over wikitext-2 at ctx
 * 512 still makes ~26 GB before compression). Perplexities (NLL) and |dp|
 * always use the float32 log-probs of the scored tokens, so BASE's PPL and
 * the PPL ratio are exact either way; with fp16 only KL and top-1 use the
 * rounded distribution (KL off by about 1e-4 relative; a top-1 tie may
 * break differently).
 * A damaged cache file is detected (qt_zcache_verify before use), reported
 * in cache_note and rebuilt. Without cache_dir the file is a temporary one,
 * removed at the end.
 *
 * What it does not do: print (the CLI prints the table), sliding-window or
 * strided perplexity, multiple sequences per batch, or compare models whose
 * vocabularies differ (refused).
 *
 * Threads: a model of at most QT_PPL_CHUNK_PAR_BYTES of weights runs one
 * chunk per thread (qt_model_fork: each thread its own KV cache and
 * scratch, single-threaded inside; results consumed in chunk order); a
 * larger one runs chunks one after another with every thread inside the
 * matmuls. Not reentrant with respect to OpenMP settings (it uses whatever
 * omp_set_num_threads set); results are bit-identical whatever the thread
 * count (each chunk's logits do not depend on it, and every reduction here
 * runs in a fixed order). Ownership: a qt_ppl_result and everything in it belong to
 * the caller, freed with qt_ppl_result_free.
 */
#ifndef QT_BENCH_PPL_H
#define QT_BENCH_PPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/common.h"

/* Which positions of a chunk are scored. */
typedef enum qt_ppl_score {
    QT_PPL_SCORE_HALF = 0, /* ctx/2 .. ctx-2 (llama-perplexity) */
    QT_PPL_SCORE_ALL,      /* 0 .. ctx-2 */
    QT_PPL_SCORE_COUNT
} qt_ppl_score;

/* "half" / "all"; "?" when out of range. */
const char *qt_ppl_score_name(qt_ppl_score s);

/* Largest vocabulary whose log-probabilities are cached as float32 (above:
 * fp16). */
#define QT_PPL_F32_VOCAB_MAX 8192

/* Models whose weights take at most this many bytes are evaluated one chunk
 * per thread (each thread its own KV cache and scratch, qt_model_fork;
 * results written in chunk order): they are all overhead and attention. */
#define QT_PPL_CHUNK_PAR_BYTES (64u << 20)

typedef struct qt_ppl_opts {
    size_t ctx;            /* tokens per chunk, 4 .. 1<<20 (0 = 512) */
    size_t max_chunks;     /* at most this many chunks; 0 = all */
    qt_ppl_score score;
    const char *tokenizer; /* tokenizer.json / tokenizer.model / .gguf or a folder
                              holding one; NULL = BASE's own */
    const char *cache_dir; /* BASE log-prob cache folder (created if missing);
                              NULL = a temporary file, removed at the end */
    const char *tmp_dir;   /* folder for that temporary file; NULL = $TMPDIR or /tmp */
    FILE *progress;        /* progress bar target (drawn only on a terminal); NULL = none */
    const char *adapter;   /* PEFT LoRA adapter run on every model given without its own
                              "MODEL+ADAPTER" (model.h qt_model_arg_split); NULL = none */
} qt_ppl_opts;

/* The figures of one model. */
typedef struct qt_ppl_model {
    char *path;              /* as given; owned by the result */
    char desc[320];          /* qt_model_describe */
    uint64_t file_bytes;     /* size of the weight files */
    uint64_t n_params;       /* parameters of all logical weights */
    uint64_t weight_bytes;   /* bytes storing them */
    double bpw;              /* 8 * weight_bytes / n_params */
    size_t n_scored;         /* positions scored */
    double nll;              /* mean negative log-likelihood (nats) */
    double ppl, ppl_err;     /* exp(nll) and its standard error */
    double ppl_ratio;        /* ppl / BASE's ppl */
    double kl_mean, kl_mean_err, kl_median, kl_p99, kl_max; /* KL(BASE || model), nats */
    double top1;             /* fraction of positions whose argmax is BASE's */
    double dp_mean, dp_p99;  /* |p_model(correct) - p_BASE(correct)| */
    double seconds, tok_s;   /* evaluation wall time; evaluated tokens per second */
    bool from_cache;         /* BASE: log-probs read from the cache (seconds and
                                tok_s are those of the run that wrote it) */
} qt_ppl_model;

typedef struct qt_ppl_result {
    size_t text_bytes, n_tokens;  /* tokens of the whole text, BOS included */
    size_t ctx, n_chunks, first;  /* first scored position of a chunk */
    size_t n_per_chunk;           /* scored positions per chunk */
    qt_ppl_score score;
    size_t vocab;
    size_t value_bytes;           /* 4 (float32) or 2 (fp16) per cached log-prob */
    char text_sha256[65];
    char cache_path[4096];        /* "" when no cache folder was given */
    char cache_note[QT_ERRMSG_SIZE]; /* why a cache file was rebuilt, or "" */
    int threads;                  /* OpenMP threads used (1 without OpenMP) */
    size_t n_models;
    qt_ppl_model *models;         /* (n_models); [0] is BASE */
} qt_ppl_result;

/* Scores models[0] (BASE) and compares models[1..n) with it on text[0..n)
 * (UTF-8) as the header comment describes. Each model is a model directory,
 * a .safetensors file (config.json beside it) or a .gguf file. *out: the
 * result (free with qt_ppl_result_free), NULL on failure. errmsg:
 * QT_ERRMSG_SIZE bytes or NULL; names the model or file.
 * @return QT_OK, QT_ERR_ARG (bad options; text shorter than one chunk; ctx
 *         beyond a model's context; vocabularies that differ; no BOS),
 *         QT_ERR_IO, QT_ERR_FORMAT, QT_ERR_UNSUPPORTED (a model qtool does
 *         not run), QT_ERR_NOMEM, QT_ERR_NUMERIC (non-finite logits). */
qt_status qt_ppl_compare(const char *const *models, size_t n_models, const char *text,
                         size_t text_len, const qt_ppl_opts *opts, qt_ppl_result **out,
                         char *errmsg);

/* Frees a result. Accepts NULL. */
void qt_ppl_result_free(qt_ppl_result *r);

/* One line saying which protocol produced the numbers, into buf (n bytes,
 * NUL-terminated when n > 0), e.g. "ctx 512, 3 chunks of 1542 tokens, BOS
 * first, scored positions 256..510 (255 per chunk, llama-perplexity)". */
void qt_ppl_protocol(const qt_ppl_result *r, char *buf, size_t n);

/* Writes the result as one JSON object (keys: "protocol", "ctx", "chunks",
 * "score", "tokens", "scored", "text_sha256", "threads", "cache",
 * "models": [{"path", "description", "file_bytes", "params", "weight_bytes",
 * "bpw", "ppl", "ppl_err", "ppl_ratio", "nll", "kl_mean", "kl_mean_err",
 * "kl_median", "kl_p99", "kl_max", "top1", "dp_mean", "dp_p99", "seconds",
 * "tok_s", "from_cache"}]) to f.
 * @return QT_OK, QT_ERR_IO (write failed), QT_ERR_NOMEM. */
qt_status qt_ppl_write_json(const qt_ppl_result *r, FILE *f, char *errmsg);

/* Writes an SVG chart (bench/svg.h) with two panels, mean KL divergence
 * (log scale; BASE's 0 drawn on the floor) and PPL ratio against bits per
 * weight, one labelled point per model, to path (replaced atomically).
 * @return QT_OK, QT_ERR_IO, QT_ERR_NOMEM. */
qt_status qt_ppl_write_svg(const qt_ppl_result *r, const char *path, char *errmsg);

/* ---- the metrics, exposed for tests --------------------------------------- */

/* log-softmax of logits[0..n) into out[0..n) (max-shifted, sums in
 * double). Non-finite logits give non-finite output. */
void qt_ppl_log_softmax(const float *logits, size_t n, float *out);

/* KL(p || q) = sum p_i (logp_i - logq_i) over n log-probabilities, summed
 * in double in index order. Terms with p_i == 0 count 0. */
double qt_ppl_kl(const float *logp, const float *logq, size_t n);

/* The q-quantile (0 <= q <= 1) of v[0..n) by nearest rank (the smallest
 * value with at least ceil(q * n) values <= it; q = 0.5 with n even
 * averages the two middle values). Sorts v in place. 0 when n == 0. */
double qt_ppl_quantile(double *v, size_t n, double q);

#endif /* QT_BENCH_PPL_H */
