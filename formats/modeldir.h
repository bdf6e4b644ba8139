/*
 * formats/modeldir.h: a Hugging Face model as qtool finds it on disk: one
 * safetensors file, a folder with model.safetensors, or a sharded folder
 * with model.safetensors.index.json; plus config.json and the other files
 * of the folder (tokenizer, generation config, ...).
 *
 * Layout of model.safetensors.index.json (only "weight_map" is read):
 *
 *   {"metadata": {"total_size": ...},
 *    "weight_map": {"<tensor name>": "<shard file name>", ...}}
 *
 * Opening validates every shard (safetensors.h, rules S1-S28) and the rules
 * I1-I6 of specs/input-safety.md B.6: every shard the index names exists
 * (all missing ones are listed), every mapped tensor is in its shard, no
 * shard holds a tensor the index does not assign to it, no tensor is in two
 * shards, shard names are plain file names inside the folder (no '/', no
 * '..', not absolute, no symlink leading out of the folder), and the index
 * is strict JSON with string shard names. Shards are never globbed: only
 * the index decides; other *.safetensors files are reported as strays.
 *
 * The unified view numbers tensors 0..n-1: shard by shard (shards sorted by
 * name), each shard's tensors in data order. config.json (optional, at most
 * QT_MODELDIR_CONFIG_MAX bytes, strict JSON object) is read through typed
 * getters; cJSON stays inside formats/ (formats_internal.h).
 *
 * What it does not do: write models (convert does, with st_writer), follow
 * remote references, or read pickle checkpoints (.bin files are just other
 * files here).
 *
 * Thread safety: read-only after qt_modeldir_open; may be shared by threads.
 * Every pointer it returns is borrowed, valid until qt_modeldir_close.
 */
#ifndef QT_FORMATS_MODELDIR_H
#define QT_FORMATS_MODELDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "formats/safetensors.h"

#define QT_MODELDIR_CONFIG_MAX (16u << 20)
#define QT_MODELDIR_INDEX_MAX (64u << 20)

/* The rule a rejected model broke (I-rules of input-safety.md B.6). */
typedef enum qt_md_rule {
    QT_MD_RULE_OK = 0,
    QT_MD_RULE_IO,               /* path missing, unreadable, not a file or folder */
    QT_MD_RULE_NO_WEIGHTS,       /* folder holds neither model.safetensors nor the index */
    QT_MD_RULE_SHARD_INVALID,    /* a shard broke a safetensors rule (see the S-code) */
    QT_MD_RULE_MISSING_SHARD,    /* I1/I4: the index names shards that are absent */
    QT_MD_RULE_TENSOR_NOT_IN_SHARD, /* I2: mapped tensor absent from its shard */
    QT_MD_RULE_UNASSIGNED_TENSOR,   /* I3: shard holds a tensor the index does not map there */
    QT_MD_RULE_DUPLICATE_TENSOR,    /* I3: the same tensor in two shards */
    QT_MD_RULE_INDEX_JSON,       /* I5: index malformed JSON or duplicate keys */
    QT_MD_RULE_INDEX_SCHEMA,     /* I5: no weight_map object, non-string shard names */
    QT_MD_RULE_SHARD_NAME,       /* I6: shard name with '/', '..', absolute, empty */
    QT_MD_RULE_SHARD_ESCAPES,    /* I6: shard is a symlink leading out of the folder */
    QT_MD_RULE_CONFIG,           /* config.json malformed, too large or not an object */
    QT_MD_RULE_COUNT
} qt_md_rule;

/* Short lowercase name of a rule; never NULL. */
const char *qt_md_rule_name(qt_md_rule rule);

/* Flags for qt_modeldir_open_ex. */
#define QT_MODELDIR_FOLLOW_SYMLINKS 1u /* allow shards that link out of the folder
                                          (a Hugging Face cache snapshot) */

typedef struct qt_modeldir qt_modeldir;

/* Opens a model: path is a .safetensors file (config.json beside it is
 * read when present), a folder with model.safetensors (preferred, as
 * transformers does) or with model.safetensors.index.json, or the index file
 * itself. out: the model (close with qt_modeldir_close), NULL on failure.
 * errmsg: QT_ERRMSG_SIZE bytes or NULL.
 * @return QT_OK, QT_ERR_IO, QT_ERR_FORMAT, QT_ERR_NOMEM. */
qt_status qt_modeldir_open(const char *path, qt_modeldir **out, char *errmsg);

/* As qt_modeldir_open with flags (QT_MODELDIR_*); *rule and *st_rule (each
 * may be NULL) receive the model rule broken and, for
 * QT_MD_RULE_SHARD_INVALID, the shard's safetensors rule. */
qt_status qt_modeldir_open_ex(const char *path, unsigned flags, qt_modeldir **out,
                              qt_md_rule *rule, qt_st_rule *st_rule, char *errmsg);

/* Closes every shard and frees the model. Accepts NULL. */
void qt_modeldir_close(qt_modeldir *md);

/* The model folder (the file's folder for a single file). */
const char *qt_modeldir_path(const qt_modeldir *md);
/* True when the weights come from an index; then the index path, else NULL. */
bool qt_modeldir_is_sharded(const qt_modeldir *md);
const char *qt_modeldir_index_path(const qt_modeldir *md);

/* Shards, sorted by file name. */
size_t qt_modeldir_n_shards(const qt_modeldir *md);
/* Shard i's reader (NULL when out of range); not const so that callers can
 * qt_st_tensor_release its pages. */
qt_st_reader *qt_modeldir_shard(const qt_modeldir *md, size_t i);
/* Shard i's file name inside the folder ("model-00001-of-00002.safetensors"). */
const char *qt_modeldir_shard_name(const qt_modeldir *md, size_t i);

/* Tensors across all shards. */
size_t qt_modeldir_n_tensors(const qt_modeldir *md);
/* Tensor i of the unified view (NULL when out of range); *reader (may be
 * NULL) receives the shard's reader. */
const qt_st_tensor *qt_modeldir_tensor(const qt_modeldir *md, size_t i, qt_st_reader **reader);
/* The tensor called name (O(log n)) or NULL; *reader as above. */
const qt_st_tensor *qt_modeldir_find(const qt_modeldir *md, const char *name,
                                     qt_st_reader **reader);

/* Files of the folder other than weights: every regular file (symlinks to
 * regular files included) except *.safetensors and the index, sorted by
 * name; config.json included. Names are relative to qt_modeldir_path. */
size_t qt_modeldir_n_files(const qt_modeldir *md);
const char *qt_modeldir_file(const qt_modeldir *md, size_t i);
/* *.safetensors files of the folder that the model does not use (I4),
 * sorted by name: worth a warning, never read. */
size_t qt_modeldir_n_strays(const qt_modeldir *md);
const char *qt_modeldir_stray(const qt_modeldir *md, size_t i);

/* ---- config.json ---------------------------------------------------------
 * key is a top-level key or a dotted path into nested objects
 * ("quantization_config.bnb_4bit_quant_type"). A key that is absent, whose
 * value is null, or with no config.json at all is "missing".
 * @return QT_OK, QT_ERR_ARG (missing), QT_ERR_FORMAT (present with another
 * type; for _int also a non-integral number or one outside int64). */
bool qt_modeldir_has_config(const qt_modeldir *md);
bool qt_modeldir_config_has(const qt_modeldir *md, const char *key);
qt_status qt_modeldir_config_int(const qt_modeldir *md, const char *key, int64_t *out);
qt_status qt_modeldir_config_float(const qt_modeldir *md, const char *key, double *out);
/* *out borrowed, valid until qt_modeldir_close. */
qt_status qt_modeldir_config_str(const qt_modeldir *md, const char *key, const char **out);
qt_status qt_modeldir_config_bool(const qt_modeldir *md, const char *key, bool *out);

/* A one-line summary of config.json into buf (n bytes, always
 * NUL-terminated when n > 0), e.g. "LlamaForCausalLM: hidden 64,
 * intermediate 172, 5 layers, 8 heads (4 kv), vocab 512, ctx 512, tied
 * embeddings, float32"; fields absent from the config are left out;
 * "no config.json" without one. */
void qt_modeldir_architecture_line(const qt_modeldir *md, char *buf, size_t n);

#endif /* QT_FORMATS_MODELDIR_H */
