/*
 * formats/gguf_meta.h: what a Hugging Face Llama-family checkpoint becomes
 * in a GGUF file for llama.cpp (specs/gguf-export.md §2-§6): the
 * hyperparameter keys for the `llama` and `qwen2` architectures with their
 * exact value types, the tokenizer keys for SentencePiece
 * (tokenizer.model) and byte-level BPE (tokenizer.json) vocabularies, the
 * HF -> GGUF tensor names, the Q/K row permutation and the Llama 3
 * rope_freqs tensor.
 *
 * Refusals (QT_ERR_UNSUPPORTED, or QT_ERR_FORMAT for malformed values),
 * each naming the file and the key or tensor: an architecture other than
 * LlamaForCausalLM / MistralForCausalLM / Qwen2ForCausalLM, a rope_scaling
 * llama.cpp cannot express for that architecture (only linear, llama3 for
 * llama, yarn for qwen2), shapes llama.cpp would reject (hidden size not a
 * multiple of the heads, odd head size, a tensor name it cannot map), a
 * BPE pre-tokenizer that is not identified (unless stated).
 *
 * Thread-safety: pure functions of their arguments.
 */
#ifndef QT_FORMATS_GGUF_META_H
#define QT_FORMATS_GGUF_META_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "formats/gguf_writer.h"
#include "formats/modeldir.h"

/* How RoPE is scaled (config.json rope_scaling). */
typedef enum qt_gguf_rope {
    QT_GGUF_ROPE_NONE = 0,
    QT_GGUF_ROPE_LINEAR, /* llama/qwen2: rope.scaling.type "linear" + factor */
    QT_GGUF_ROPE_LLAMA3, /* llama: the rope_freqs.weight tensor */
    QT_GGUF_ROPE_YARN,   /* qwen2: type "yarn", factor, original context */
} qt_gguf_rope;

/* The hyperparameters read from config.json. */
typedef struct qt_gguf_hparams {
    const char *arch;          /* "llama" or "qwen2" (static) */
    bool permute_qk;           /* llama: undo HF's rotate-half row order */
    uint32_t n_layers, hidden, ff, n_head, n_kv_head, head_dim, ctx, vocab;
    bool has_n_kv, has_head_dim, has_theta, has_vocab;
    bool tied;                 /* tie_word_embeddings */
    float eps, theta;
    qt_gguf_rope rope;
    float rope_factor, rope_low, rope_high; /* llama3: factor, low/high_freq_factor */
    uint32_t rope_orig_ctx;    /* llama3 / yarn: original_max_position_embeddings */
} qt_gguf_hparams;

/* Reads and checks config.json. errmsg names config.json and the key.
 * @return QT_OK, QT_ERR_UNSUPPORTED, QT_ERR_FORMAT. */
qt_status qt_gguf_hparams_read(const qt_modeldir *md, qt_gguf_hparams *hp, char *errmsg);

/* Writes general.* and the architecture keys (§2), file_type = ftype
 * (llama_ftype value), quantization_version when quantized. name: the
 * general.name value. @return the writer's status. */
qt_status qt_gguf_hparams_write(qt_gguf_writer *w, const qt_gguf_hparams *hp, const char *name,
                                uint32_t ftype, bool quantized);

/* What a tensor is, for naming and for the llama-quantize type policy. */
typedef enum qt_gguf_role {
    QT_GGUF_ROLE_TOKEN_EMBD = 0,
    QT_GGUF_ROLE_OUTPUT,
    QT_GGUF_ROLE_OUTPUT_NORM,
    QT_GGUF_ROLE_ROPE_FREQS,
    QT_GGUF_ROLE_ATTN_NORM,
    QT_GGUF_ROLE_ATTN_Q,
    QT_GGUF_ROLE_ATTN_K,
    QT_GGUF_ROLE_ATTN_V,
    QT_GGUF_ROLE_ATTN_OUTPUT,
    QT_GGUF_ROLE_FFN_NORM,
    QT_GGUF_ROLE_FFN_GATE,
    QT_GGUF_ROLE_FFN_UP,
    QT_GGUF_ROLE_FFN_DOWN,
    QT_GGUF_ROLE_ATTN_Q_BIAS,
    QT_GGUF_ROLE_ATTN_K_BIAS,
    QT_GGUF_ROLE_ATTN_V_BIAS,
    QT_GGUF_ROLE_COUNT
} qt_gguf_role;

/* One HF tensor mapped to GGUF. */
typedef struct qt_gguf_tmap {
    bool skip;                   /* dropped (rotary_emb.inv_freq, attention masks) */
    char name[QT_GGUF_MAX_NAME]; /* GGUF name */
    qt_gguf_role role;
    int32_t layer;               /* block index, -1 for non-block tensors */
    uint32_t permute_heads;      /* > 0: apply the Q/K row permutation with this many heads */
} qt_gguf_tmap;

/* Maps HF name hf (of the checkpoint described by hp) to GGUF.
 * @return QT_OK (maybe skip), QT_ERR_UNSUPPORTED ("cannot map tensor"). */
qt_status qt_gguf_tensor_map(const qt_gguf_hparams *hp, const char *hf, qt_gguf_tmap *out,
                             char *errmsg);

/* Position of a role in the deterministic tensor order of §1 (token_embd,
 * blocks, output_norm, output); rope_freqs comes first. */
int qt_gguf_role_order(qt_gguf_role role);

/* Short role name ("attn_q", "ffn_down", ...). Never NULL. */
const char *qt_gguf_role_name(qt_gguf_role role);

/* Q/K permutation: the GGUF row that HF row r of a (rows)-row matrix with
 * n_head heads goes to (§5: HF row h*hd + s*hd/2 + i -> GGUF row
 * h*hd + 2i + s; hd = rows / n_head). */
size_t qt_gguf_qk_dst_row(size_t r, size_t rows, size_t n_head);

/* The Llama 3 rope_freqs values (head_dim / 2 floats) into out (§2.2). */
void qt_gguf_llama3_rope_freqs(const qt_gguf_hparams *hp, float *out);

/* Writes the tokenizer keys (§4) from the files of the model folder dir:
 * tokenizer.model (SentencePiece) when present, else tokenizer.json
 * (byte-level BPE); tokenizer_config.json and config.json for special ids
 * and flags. hp->vocab must be the embedding's row count: the token list
 * gets exactly that many entries (holes "[PAD<i>]"). pre: the BPE pre-tokenizer name the user stated (NULL =
 * identify it; refused with QT_ERR_UNSUPPORTED naming what was found).
 * @return QT_OK, QT_ERR_IO, QT_ERR_FORMAT, QT_ERR_UNSUPPORTED, QT_ERR_NOMEM. */
qt_status qt_gguf_vocab_write(qt_gguf_writer *w, const qt_modeldir *md,
                              const qt_gguf_hparams *hp, const char *pre, char *errmsg);

#endif /* QT_FORMATS_GGUF_META_H */
