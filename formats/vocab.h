/*
 * formats/vocab.h: tokenizer files read into a plain C vocabulary.
 *
 * Two file kinds are read:
 *
 *  - Hugging Face `tokenizer.json` whose model is "BPE" (vocab + merges),
 *    in one of two shapes:
 *      SentencePiece-style (Llama 2, TinyLlama, Mistral): a normalizer
 *        Sequence [Prepend "▁", Replace " " -> "▁"] or a Metaspace
 *        pre-tokenizer (replacement "▁"); merges by rank; byte fallback to
 *        the `<0xXX>` tokens.                       -> QT_VOCAB_BPE_SPM
 *      byte-level (GPT-2, Llama 3, Qwen2): a ByteLevel pre-tokenizer (GPT-2
 *        split pattern) or a Sequence [Split(pattern), ByteLevel] where the
 *        pattern is exactly the Llama 3 or the Qwen2 one; token strings use
 *        the GPT-2 byte-to-unicode map.             -> QT_VOCAB_BPE_BYTE
 *    Anything else (Unigram / WordPiece models, other normalizers or
 *    pre-tokenizers, unknown split patterns, dropout, subword prefixes) is
 *    refused with QT_ERR_UNSUPPORTED and a message naming the file and the
 *    component. A Unicode "NFC" normalizer is accepted and NOT applied (input
 *    text is taken to be NFC already, as llama.cpp does).
 *
 *  - SentencePiece `tokenizer.model` (a protobuf ModelProto), BPE models only
 *    (trainer_spec.model_type == BPE): pieces merge by score.
 *                                                   -> QT_VOCAB_SPM
 *    The fields read (everything else is skipped by wire type):
 *      ModelProto       1: repeated SentencePiece pieces  (length-delimited)
 *                       2: TrainerSpec trainer_spec       (length-delimited)
 *                       3: NormalizerSpec normalizer_spec (length-delimited)
 *      SentencePiece    1: piece (bytes)   2: score (fixed32 float)
 *                       3: type (varint: 1 normal, 2 unknown, 3 control,
 *                          4 user-defined, 5 unused, 6 byte; default 1)
 *      TrainerSpec      3: model_type (varint; 2 = BPE; default 1 unigram)
 *                       24: treat_whitespace_as_suffix   35: byte_fallback
 *                       40/41/42: unk_id/bos_id/eos_id (int32 as varint,
 *                       -1 = none; defaults 0/1/2)
 *      NormalizerSpec   2: precompiled_charsmap (must be empty)
 *                       3: add_dummy_prefix (default true)
 *                       4: remove_extra_whitespaces (default true; must be
 *                          false)   5: escape_whitespaces (default true)
 *    Every varint and length is bounds-checked against the buffer; groups
 *    (wire types 3/4), field number 0, truncated data and wrong wire types of
 *    known fields are QT_ERR_FORMAT. Nothing is allocated beyond what the
 *    file's size justifies.
 *
 * Both loaders also read `tokenizer_config.json` beside the file when it
 * exists, for `add_bos_token` and the bos/eos token names.
 *
 * What this module does not do: encoding and decoding (model/tokenizer.h).
 * It is the only place that reads tokenizer files; cJSON stays here.
 * Thread-safety: loaders share no state; a loaded qt_vocab is read-only
 * and may be shared between threads.
 */
#ifndef QT_FORMATS_VOCAB_H
#define QT_FORMATS_VOCAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

#define QT_VOCAB_MAX_TOKENS 1000000u         /* refuse larger vocabularies */
#define QT_VOCAB_MAX_MERGES 10000000u        /* refuse more merges */
#define QT_VOCAB_MAX_TOKEN_BYTES 65536u      /* refuse longer token strings */
#define QT_VOCAB_MAX_JSON_BYTES (256u << 20) /* tokenizer.json size cap */
#define QT_VOCAB_MAX_SPM_BYTES (64u << 20)   /* tokenizer.model size cap */

/* How text becomes tokens. */
typedef enum qt_vocab_kind {
    QT_VOCAB_SPM,      /* tokenizer.model: merge the pair whose joined piece has the
                          highest score (llama.cpp llm_tokenizer_spm) */
    QT_VOCAB_BPE_SPM,  /* tokenizer.json BPE over "▁"-escaped text, merges by rank */
    QT_VOCAB_BPE_BYTE, /* tokenizer.json byte-level BPE, merges by rank */
    QT_VOCAB_KIND_COUNT
} qt_vocab_kind;

/* Pre-tokenizer: how the text is cut into words before BPE. */
typedef enum qt_pretok {
    QT_PRETOK_NONE,      /* the whole text is one word */
    QT_PRETOK_METASPACE, /* a new word starts at every "▁" (Metaspace split) */
    QT_PRETOK_GPT2,      /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+|... */
    QT_PRETOK_LLAMA3,    /* (?i:'s|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|... */
    QT_PRETOK_QWEN2,     /* as LLAMA3 with \p{N} (single digits) */
    QT_PRETOK_COUNT
} qt_pretok;

/* Token types, numbered as SentencePiece numbers them. */
typedef enum qt_token_type {
    QT_TOKEN_NORMAL = 1,
    QT_TOKEN_UNKNOWN = 2,
    QT_TOKEN_CONTROL = 3,      /* <s>, </s>, special added tokens: decode to nothing */
    QT_TOKEN_USER_DEFINED = 4, /* non-special added tokens: matched literally in text */
    QT_TOKEN_UNUSED = 5,       /* also fills id holes in a tokenizer.json */
    QT_TOKEN_BYTE = 6,         /* <0xXX> byte-fallback tokens */
} qt_token_type;

typedef struct qt_vocab_token {
    const char *text; /* borrowed from the vocab; NUL-terminated; for
                         QT_VOCAB_BPE_BYTE normal tokens this is the
                         byte-to-unicode form ("Ġthe"), added tokens are raw */
    uint32_t len;     /* bytes in text, without the NUL */
    float score;      /* SentencePiece score (0 for tokenizer.json) */
    uint8_t type;     /* qt_token_type */
    bool added;       /* listed in added_tokens (json) or user-defined (spm):
                         matched literally in input text before BPE */
} qt_vocab_token;

typedef struct qt_vocab_merge {
    int32_t left, right; /* token ids; the merge's rank is its index */
} qt_vocab_merge;

typedef struct qt_vocab {
    qt_vocab_kind kind;
    qt_pretok pretok;
    qt_vocab_token *tokens; /* (n_tokens) indexed by id */
    size_t n_tokens;
    qt_vocab_merge *merges; /* (n_merges) by rank, first = applied first; empty for SPM */
    size_t n_merges;
    int32_t bos_id, eos_id, unk_id; /* -1 when the vocabulary has none */
    bool add_bos;          /* whether the model expects BOS before text */
    bool add_dummy_prefix; /* prepend "▁" to text (SentencePiece add_dummy_prefix) */
    bool prefix_first_only;/* only before the first text segment (Metaspace "first") */
    bool byte_fallback;    /* unknown characters become <0xXX> tokens */
    bool fuse_unk;         /* consecutive unknown characters become one unk */
    bool ignore_merges;    /* a word found whole in the vocab is not merged (Llama 3) */
    char *arena;           /* owns every token text */
} qt_vocab;

/* Loads a Hugging Face tokenizer.json (model.type "BPE"). Merges may be
 * "a b" strings or ["a", "b"] arrays; every merge's parts and result must be
 * in the vocab. added_tokens may carry ids past the vocab (id holes become
 * QT_TOKEN_UNUSED empty tokens).
 * On success *out is a new vocab the caller frees with qt_vocab_free; on
 * failure *out is NULL and errmsg (QT_ERRMSG_SIZE bytes, may be NULL) names
 * the file and the rule or component.
 * @return QT_OK, QT_ERR_IO, QT_ERR_FORMAT, QT_ERR_UNSUPPORTED, QT_ERR_NOMEM. */
qt_status qt_vocab_load_hf_json(const char *path, qt_vocab **out, char *errmsg);

/* As qt_vocab_load_hf_json, from a buffer: `what` names it in messages and
 * config_path (may be NULL) is a tokenizer_config.json to read if it exists. */
qt_status qt_vocab_load_hf_json_mem(const char *buf, size_t n, const char *what,
                                    const char *config_path, qt_vocab **out, char *errmsg);

/* Loads a SentencePiece tokenizer.model (BPE model type only). Ownership and
 * messages as qt_vocab_load_hf_json.
 * @return QT_OK, QT_ERR_IO, QT_ERR_FORMAT, QT_ERR_UNSUPPORTED, QT_ERR_NOMEM. */
qt_status qt_vocab_load_spm(const char *path, qt_vocab **out, char *errmsg);

/* As qt_vocab_load_spm, from a buffer (for tests and fuzzing): `what` names
 * it in messages and config_path (may be NULL) as above. */
qt_status qt_vocab_load_spm_mem(const uint8_t *buf, size_t n, const char *what,
                                const char *config_path, qt_vocab **out, char *errmsg);

/* Frees a vocab and everything it owns. Accepts NULL. */
void qt_vocab_free(qt_vocab *v);

/* Name of a kind / pre-tokenizer ("spm", "bpe-spm", "bpe-byte"; "none",
 * "metaspace", "gpt2", "llama3", "qwen2"). Never NULL. */
const char *qt_vocab_kind_str(qt_vocab_kind k);
const char *qt_pretok_str(qt_pretok p);

#endif /* QT_FORMATS_VOCAB_H */
