/*
 * formats/adapter.h: PEFT LoRA adapter directories (specs/peft-lora.md):
 * adapter_config.json + adapter_model.safetensors, read and written.
 *
 * What it does: qt_adapter_open parses adapter_config.json with the strict
 * JSON parser (defaults for absent keys, refusals of §2: peft_type other
 * than LORA, fan_in_fan_out, DoRA (use_dora: refused in this version),
 * layer_replication, target_parameters, trainable_token_indices and the
 * exotic variants; a mistyped field is refused naming it), maps
 * adapter_model.safetensors with the validating reader, groups its tensors
 * by module (lora_A / lora_B / lora_B.bias; every other key is a full
 * replacement tensor: modules_to_save weights and trained base biases,
 * "base_layer." removed), checks every A has its B with a common rank, the
 * rank against the config (rank_pattern, §3.2), the dtypes (F32, F16,
 * BF16), and that every value is finite, and widens A and B to fp32 copies
 * owned by the adapter. The scale of each module is alpha / r, or
 * alpha / sqrt(r) with use_rslora, with r and alpha resolved per module
 * through rank_pattern / alpha_pattern (POSIX extended regex for the
 * patterns, PEFT's `(.*\.)?(P)$` anchored match, first key in file order).
 * qt_adapter_match then checks every module and replacement against a base
 * model's layout (module exists, in_features / out_features / full shape
 * agree) and cross-checks target_modules (a disagreement is a warning: the
 * tensors are the ground truth).
 * adapter_model.bin (a pickle) is refused with how to convert it.
 * qt_adapter_write writes a directory in PEFT's layout (F32 tensors),
 * used by tests, the benchmark and LoftQ.
 *
 * What it does not do: DoRA, embedding LoRA (lora_embedding_A/B), several
 * adapters in one directory, resized vocabularies, the forward pass
 * (model/lora.c) or merging (convert/merge.c).
 *
 * Ownership: a qt_adapter owns its copies; replacement tensors stay
 * borrowed from the mapped file, which the adapter keeps open until
 * qt_adapter_free. Every pointer a getter or struct field gives is valid
 * until qt_adapter_free. Read-only after open: threads may share it.
 */
#ifndef QT_FORMATS_ADAPTER_H
#define QT_FORMATS_ADAPTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "formats/layout.h"
#include "formats/safetensors.h"

/* Warnings kept on an adapter (the CLI prints them). */
#define QT_ADAPTER_MAX_WARNINGS 8

/* One LoRA-wrapped Linear: y += scale * (B (A x) + b_B). */
typedef struct qt_adapter_module {
    char *name;        /* module path in the base, "model.layers.0.self_attn.q_proj" */
    size_t r;          /* rank (rows of A) */
    size_t n_in;       /* in_features (columns of A) */
    size_t n_out;      /* out_features (rows of B) */
    double alpha;      /* resolved lora_alpha */
    float scale;       /* alpha / r, or alpha / sqrt(r) with rsLoRA */
    float *A;          /* (r, n_in) fp32 */
    float *B;          /* (n_out, r) fp32 */
    float *b_B;        /* (n_out,) lora_B bias (lora_bias: true), or NULL */
} qt_adapter_module;

/* A full tensor that replaces the base's tensor of the same name. */
typedef struct qt_adapter_replacement {
    char *name;                /* base tensor name, "lm_head.weight", "...q_proj.bias" */
    const char *key;           /* the adapter file's key; borrowed from the reader */
    const qt_st_tensor *t;     /* its data, borrowed from the reader (F32/F16/BF16) */
} qt_adapter_replacement;

/* The adapter_config.json fields qtool uses (defaults per spec §2). */
typedef struct qt_adapter_config {
    int64_t r;                 /* default rank */
    double lora_alpha;         /* default alpha */
    bool use_rslora;
    bool lora_bias;
    char bias[16];             /* "none", "all", "lora_only" */
    char base_model[256];      /* base_model_name_or_path, "" when null */
    char init_lora_weights[32]; /* "true", "false", or the method string */
} qt_adapter_config;

typedef struct qt_adapter {
    char *dir;                       /* the directory as given */
    qt_adapter_config cfg;
    qt_adapter_module *mods;         /* (n_mods,) sorted by name */
    size_t n_mods;
    qt_adapter_replacement *repl;    /* (n_repl,) */
    size_t n_repl;
    char fingerprint[65];            /* sha256 hex of config + safetensors header + file size */
    char warnings[QT_ADAPTER_MAX_WARNINGS][QT_ERRMSG_SIZE];
    size_t n_warnings;
    /* private */
    qt_st_reader *reader;
    void *cfg_json;                  /* cJSON tree of adapter_config.json */
} qt_adapter;

/* Opens the PEFT adapter directory `dir` (or a path to its
 * adapter_config.json). *out: free with qt_adapter_free; NULL on failure,
 * errmsg (QT_ERRMSG_SIZE, may be NULL) names the file, the module or
 * tensor, the field and the rule.
 * @return QT_OK, QT_ERR_ARG (no folder or no adapter_config.json), QT_ERR_IO,
 *         QT_ERR_FORMAT (bad config field, missing A or
 *         B, rank mismatch, bad key), QT_ERR_UNSUPPORTED (refused feature,
 *         adapter_model.bin, dtype), QT_ERR_NUMERIC (NaN / Inf),
 *         QT_ERR_NOMEM. */
qt_status qt_adapter_open(const char *dir, qt_adapter **out, char *errmsg);

/* Checks the adapter against a base model's logical weights: each module's
 * "<name>.weight" exists and is (n_out, n_in); each replacement exists with
 * the same shape; target_modules disagreements become warnings.
 * @return QT_OK, QT_ERR_FORMAT (a module or tensor missing or mis-shaped). */
qt_status qt_adapter_match(qt_adapter *ad, const qt_layout *base, char *errmsg);

/* The module called name ("model.layers.3.mlp.up_proj"), or NULL. */
const qt_adapter_module *qt_adapter_find(const qt_adapter *ad, const char *name);
/* The replacement for base tensor name, or NULL. */
const qt_adapter_replacement *qt_adapter_find_replacement(const qt_adapter *ad,
                                                          const char *name);

/* Frees the adapter and closes its file. Accepts NULL. */
void qt_adapter_free(qt_adapter *ad);

/* ---- writing ---------------------------------------------------------- */

/* What qt_adapter_write puts in a directory. */
typedef struct qt_adapter_spec {
    int64_t r;                          /* the config's r */
    double lora_alpha;                  /* the config's lora_alpha */
    bool use_rslora;
    const char *rank_pattern_json;      /* a JSON object text, or NULL = {} */
    const char *alpha_pattern_json;     /* a JSON object text, or NULL = {} */
    const char *base_model;             /* base_model_name_or_path, or NULL */
    const char *extra_json;             /* more top-level "key": value pairs (no braces,
                                           e.g. "\"use_dora\": true"), or NULL; for tests */
    const qt_adapter_module *mods;      /* (n_mods,) name, r, n_in, n_out, A, B (b_B
                                           ignored); scale and alpha ignored */
    size_t n_mods;
} qt_adapter_spec;

/* Writes dir/adapter_config.json and dir/adapter_model.safetensors (F32,
 * PEFT's keys "base_model.model.<name>.lora_A.weight"), creating dir if
 * needed. target_modules lists the modules' last components.
 * @return QT_OK, QT_ERR_ARG, QT_ERR_IO, QT_ERR_NOMEM. */
qt_status qt_adapter_write(const char *dir, const qt_adapter_spec *spec, char *errmsg);

#endif /* QT_FORMATS_ADAPTER_H */
