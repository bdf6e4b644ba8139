/*
 * model/model.h: the Llama-family forward pass (Llama 1-3, TinyLlama,
 * Mistral, Qwen2, SmolLM shapes) over weights of any qtool scheme, with a
 * KV cache, batched evaluation for perplexity and single-token decoding.
 *
 * What it does: reads config.json (through formats/modeldir.h) or the
 * llama.* keys of a GGUF file, takes every weight matrix straight from the
 * memory-mapped files as a quant/ descriptor (formats/layout.h: plain
 * F32/F16/BF16, bitsandbytes NF4/FP4 with or without double quantization,
 * LLM.int8, qtool q8; GGUF F32/F16/BF16/Q8_0) and multiplies through
 * qt_matmul, which dequantizes one cache-sized tile of weight rows at a
 * time (small matmuls stay on the calling thread; results do not depend
 * on the thread count): the model is never
 * expanded to fp32 in memory, so perplexity measures exactly the bytes
 * `convert` wrote. Only the norm vectors and biases are converted to fp32.
 * LLM.int8 weights are run weight-only (W = CB * SCB / 127 in fp32), without
 * bitsandbytes' outlier decomposition of the activations.
 *
 * The computation, per token, as Hugging Face's LlamaForCausalLM in fp32:
 *   x = embed[token]
 *   per layer: h = rmsnorm(x) * w_attn_norm
 *              q, k, v = h Wq^T (+bq), h Wk^T (+bk), h Wv^T (+bv)
 *              rotate-half RoPE on q, k (the HF row order; GGUF files keep
 *              the interleaved-pair order and are permuted back on load)
 *              grouped-query causal attention over the KV cache (fp32)
 *              x += attn Wo^T (+bo)
 *              h = rmsnorm(x) * w_ffn_norm
 *              x += (silu(h Wgate^T) * (h Wup^T)) Wdown^T
 *   logits = rmsnorm(x) * w_norm  lm_head^T (lm_head = embed when tied)
 * RoPE frequencies follow HF's float32 computation (inv_freq =
 * 1 / theta^(2i/d), angle = pos * inv_freq, cos/sin in float32), with the
 * "linear" and "llama3" rope_scaling types.
 *
 * What it deliberately does not do: sliding-window attention (a window
 * shorter than the context is refused), MoE, biases on the MLP, other
 * activations than SiLU, other rope scalings (yarn, dynamic, longrope),
 * multi-sequence batches, or GPU offload. Anything it does not support is
 * refused at open with QT_ERR_UNSUPPORTED and a message, never run wrongly.
 *
 * Determinism: the logits are bit-identical whatever the OpenMP thread
 * count: qt_matmul computes every output element in one fixed order, and
 * attention runs over (token, head) pairs with each output computed by one
 * thread; reductions (RMSNorm, softmax) run serially per row. Sampling
 * (qt_sample) is a pure function of the logits, the temperature and the
 * caller's RNG state.
 *
 * Reference data and figures (tests/unit/test_model.c): stories260K
 * (shared data models/stories260K-f32), greedy decoding of 256 tokens from
 * BOS reproduces text/lily_story.txt exactly.
 *
 * Thread-safety and ownership: a qt_model is used by one thread at a time
 * (its KV cache and scratch are mutable); it parallelizes internally with
 * OpenMP. Weights borrow the mapped files, which the model keeps open until
 * qt_model_free (qt_model_open_modeldir borrows a caller's model directory
 * instead, which must outlive the model). Every pointer a getter returns
 * is borrowed, valid until qt_model_free.
 */
#ifndef QT_MODEL_MODEL_H
#define QT_MODEL_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "formats/modeldir.h"
#include "formats/vocab.h"
#include "model/arch.h"

/* RoPE frequency scaling (config.json rope_scaling / rope_parameters). */
typedef enum qt_rope_scaling {
    QT_ROPE_NONE = 0, /* "default" or absent */
    QT_ROPE_LINEAR,   /* inv_freq / factor */
    QT_ROPE_LLAMA3,   /* Llama 3.1 smooth low/high frequency scaling */
    QT_ROPE_SCALING_COUNT
} qt_rope_scaling;

/* Hyperparameters, as read from config.json or the GGUF metadata. */
typedef struct qt_model_config {
    char arch[64];          /* "LlamaForCausalLM", "MistralForCausalLM",
                               "Qwen2ForCausalLM", or "gguf:llama" */
    size_t dim;             /* hidden_size */
    size_t hidden_dim;      /* intermediate_size */
    size_t n_layers;        /* num_hidden_layers */
    size_t n_heads;         /* num_attention_heads */
    size_t n_kv_heads;      /* num_key_value_heads (GQA; = n_heads when absent) */
    size_t head_dim;        /* head_dim, or dim / n_heads */
    size_t vocab_size;      /* rows of the embedding */
    size_t max_pos;         /* max_position_embeddings (trained context) */
    float norm_eps;         /* rms_norm_eps */
    double rope_theta;      /* rope_theta (10000 when absent) */
    qt_rope_scaling rope_scaling;
    double rope_factor;     /* linear / llama3 factor */
    double rope_low_freq_factor, rope_high_freq_factor; /* llama3 */
    size_t rope_orig_max_pos; /* llama3 original_max_position_embeddings */
    bool tied_embeddings;   /* lm_head is the embedding matrix */
    bool has_bias;          /* q/k/v (and maybe o) projections carry biases */
    int32_t bos_id, eos_id; /* -1 when the config does not say */
} qt_model_config;


/* Activation capture (calib/ collects calibration samples with it): called
 * on the evaluating thread right before each decoder-layer matmul, with the
 * layer, the projection and its input rows x: (n_rows, n_in) fp32, where
 * row t is the token at position pos0 + t (pos0 of the chunk being
 * evaluated; chunks follow qt_model_eval's n_batch split). x is borrowed
 * for the call only and must not be modified. q/k/v (and gate/up) share
 * one input and are reported separately. The lm_head matmul is not
 * reported. The callback cannot fail the evaluation: it records its own
 * errors in ctx. */
typedef void (*qt_model_capture_fn)(void *ctx, size_t layer, qt_proj proj, size_t pos0,
                                    const float *x, size_t n_rows, size_t n_in);

/* Options for opening a model; a zeroed struct (or NULL) means defaults. */
typedef struct qt_model_opts {
    size_t n_ctx;   /* KV cache length in tokens; 0 = the trained context
                       (max_position_embeddings) capped at 4096 */
    size_t n_batch; /* tokens evaluated at once by qt_model_eval (longer
                       inputs run in chunks of this size); 0 = 512 */
    qt_model_capture_fn capture; /* NULL = none (see qt_model_capture_fn) */
    void *capture_ctx;           /* passed to capture; borrowed */
} qt_model_opts;


typedef struct qt_model qt_model;

/* ---- open / close -------------------------------------------------------- */

/* Opens a model: a model directory, a .safetensors file (config.json beside
 * it), or a .gguf file (recognized by its magic). opts may be NULL.
 * On success *out is the model (free with qt_model_free); on failure *out
 * is NULL and errmsg (QT_ERRMSG_SIZE bytes, may be NULL) names the file,
 * the tensor or config key, and the rule.
 * @return QT_OK, QT_ERR_IO, QT_ERR_FORMAT (missing or inconsistent tensors
 *         and config), QT_ERR_UNSUPPORTED (architecture, option or tensor
 *         type qtool does not run), QT_ERR_ARG (bad opts), QT_ERR_NOMEM. */
qt_status qt_model_open(const char *path, const qt_model_opts *opts, qt_model **out,
                        char *errmsg);

/* As qt_model_open over an opened model directory, which is BORROWED: it
 * must stay open until qt_model_free. Same return values. */
qt_status qt_model_open_modeldir(const qt_modeldir *md, const qt_model_opts *opts,
                                 qt_model **out, char *errmsg);

/* As qt_model_open for a GGUF file (general.architecture "llama"; tensors
 * F32, F16, BF16 or Q8_0). Same return values. */
qt_status qt_model_open_gguf(const char *path, const qt_model_opts *opts, qt_model **out,
                             char *errmsg);

/* Frees the model, its cache and the files it opened. Accepts NULL. */
void qt_model_free(qt_model *m);

/* ---- facts --------------------------------------------------------------- */

/* The hyperparameters. Borrowed, valid until qt_model_free. */
const qt_model_config *qt_model_get_config(const qt_model *m);
/* KV cache length (the largest position + 1 that can be evaluated). */
size_t qt_model_n_ctx(const qt_model *m);
/* Positions [0, n_past) hold evaluated tokens. */
size_t qt_model_n_past(const qt_model *m);
/* The message of the last failure of eval on this model ("" if none). */
const char *qt_model_errmsg(const qt_model *m);
/* A one-line description into buf (n bytes, NUL-terminated when n > 0):
 * architecture, shape, and how the matrices are stored, e.g.
 * "LlamaForCausalLM: dim 64, 5 layers, 8 heads (4 kv), vocab 512, ctx 512;
 * matrices nf4+dq 35, F32 1". */
void qt_model_describe(const qt_model *m, char *buf, size_t n);

/* ---- evaluation ----------------------------------------------------------- */

/* Forgets the KV cache: the next evaluation starts at position 0. */
void qt_model_reset(qt_model *m);

/* Evaluates tokens[0..n) at positions pos0 .. pos0+n-1 (causal attention
 * over every cached position before them), storing their keys and values
 * in the cache. The matmuls run over chunks of up to n_batch tokens at once.
 * pos0 must be <= qt_model_n_past(m) (later positions are overwritten:
 * pos0 = 0 restarts) and pos0 + n <= n_ctx; afterwards n_past = pos0 + n.
 * logits: (n, vocab_size) caller-owned, row t = next-token logits after
 * tokens[t]; NULL skips the output layer.
 * @return QT_OK, QT_ERR_ARG (token id out of range, positions past n_ctx,
 *         pos0 > n_past, n == 0), QT_ERR_NOMEM; the message is in
 *         qt_model_errmsg. On failure the cache is left at n_past = pos0. */
qt_status qt_model_eval(qt_model *m, const int32_t *tokens, size_t n, size_t pos0,
                        float *logits);

/* As qt_model_eval, computing the logits of the last token only: logits
 * (vocab_size,) caller-owned (NULL skips them). Prompt processing and
 * decoding (n = 1) use this. Same return values. */
qt_status qt_model_eval_last(qt_model *m, const int32_t *tokens, size_t n, size_t pos0,
                             float *logits);

/* ---- sampling --------------------------------------------------------------- */

/* Index of the largest of logits[0..n) (the first on ties; NaN never wins). */
int32_t qt_sample_argmax(const float *logits, size_t n);

/* Samples a token from softmax(logits / temp). temp <= 0 is greedy
 * (qt_sample_argmax, rng untouched). rng: a xorshift64* state the caller
 * seeds (non-zero) and keeps; the result is a function of logits, temp and
 * *rng only. */
int32_t qt_sample(const float *logits, size_t n, float temp, uint64_t *rng);

/* ---- tokenizer files and benchmark ---------------------------------------- */

/* Reads the vocabulary a GGUF file carries (tokenizer.ggml.model "llama":
 * tokens, scores, token types, special ids) as a SentencePiece vocabulary.
 * *out: free with qt_vocab_free.
 * @return QT_OK, QT_ERR_IO, QT_ERR_FORMAT, QT_ERR_UNSUPPORTED (no
 *         vocabulary, or another tokenizer model), QT_ERR_NOMEM. */
qt_status qt_model_gguf_vocab(const char *path, qt_vocab **out, char *errmsg);

/* Loads the vocabulary that goes with a model. With `tokenizer` (may be
 * NULL): that file (tokenizer.json, tokenizer.model or a GGUF) or folder.
 * Without: tokenizer.json, else tokenizer.model, in the model's folder (the
 * folder of a .safetensors file), or a GGUF model's own vocabulary.
 * *out is NULL (and QT_OK) when the model comes with none (a folder without
 * tokenizer files, a GGUF without a vocabulary); a `tokenizer` that holds
 * none is an error. *out: free with qt_vocab_free.
 * @return QT_OK, QT_ERR_ARG, QT_ERR_IO, QT_ERR_FORMAT, QT_ERR_UNSUPPORTED,
 *         QT_ERR_NOMEM. */
qt_status qt_model_find_vocab(const char *model_path, const char *tokenizer, qt_vocab **out,
                              char *errmsg);

/* Speed of one model: prompt processing of n_prompt tokens in chunks of
 * n_batch (the model's n_batch; logits of every token computed, as
 * perplexity does) and decoding of n_gen tokens one at a time after it.
 * Tokens are drawn deterministically from the vocabulary. The cache is
 * reset before and after. n_prompt + n_gen <= n_ctx. */
typedef struct qt_model_bench_result {
    size_t n_prompt, n_gen;
    double pp_seconds, tg_seconds; /* wall time of each phase */
    double pp_tok_s, tg_tok_s;     /* tokens per second */
} qt_model_bench_result;

/* @return QT_OK, QT_ERR_ARG (sizes), QT_ERR_NOMEM. */
qt_status qt_model_bench(qt_model *m, size_t n_prompt, size_t n_gen,
                         qt_model_bench_result *res);

#endif /* QT_MODEL_MODEL_H */
