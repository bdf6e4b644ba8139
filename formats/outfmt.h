/*
 * formats/outfmt.h: the output-format seam. An output format turns a
 * stream of logical weights (quantized or plain) into files under OUT;
 * `convert` (and `merge`, and any pipeline that produces weights) drives
 * only this interface and never names a key, a shard or a file layout.
 *
 * Life of an output (every call from one thread unless said otherwise):
 *
 *   qt_outfmt_new(name, model)        plan time: nothing touches the disk
 *   qt_outfmt_declare(o, weight)*     every logical weight, in output order
 *   qt_outfmt_plan(o)                 fixes where each weight goes (shards);
 *                                     qt_outfmt_n_files / _file name them
 *   qt_outfmt_redeclare(o, id, w)*    a weight changed before begin: its
 *                                     scheme (a calibration fallback) or its
 *                                     nested offset (double quant; it sizes
 *                                     the quant_state); its place is kept
 *   qt_outfmt_add_metadata(o, k, v)*  provenance pairs, in order
 *   qt_outfmt_begin(o, replace)       creates the staging area beside OUT
 *   qt_outfmt_write_quant(o, id, q)   a quantized weight, whole (qt_qweight:
 *   qt_outfmt_write_plain(o, id, ..)  the kernels' own descriptor); plain
 *                                     values in chunks at any offset
 *   qt_outfmt_add_file(o, name, src)* a non-weight file of the model, or:
 *   qt_outfmt_stage_dir(o)            the staging folder, for a caller that
 *                                     places the model's other files itself
 *   qt_outfmt_commit(o)               completes and renames into OUT
 *   qt_outfmt_free(o)                 (aborts when not committed: nothing
 *                                     is left at OUT, an old OUT untouched)
 *
 * The writes of different weights may come from several threads, but the
 * caller serializes them (one write call at a time). Everything a format
 * writes is a function of what it was given, never of the thread order.
 *
 * Room for formats to come (why the calls are what they are):
 *   - GGUF (one file, tensors declared up front, aligned data, metadata
 *     KV): declare + plan lay out the tensor infos; add_metadata feeds the
 *     KV section; write_quant serializes the qt_qweight in GGUF blocks.
 *   - merge (LoRA folded in): the caller computes W' itself and hands the
 *     quantized result to write_quant; nothing here reads the input.
 *   - a single-pass writer: because write_quant receives the whole
 *     qt_qweight (nested offset included), a format may place parts whose
 *     size is known only then (the quant_state) after the data and write
 *     its header last into reserved, space-padded room; redeclare before
 *     begin is then optional.
 *
 * Adding a format = one file in formats/ implementing qt_outfmt_ops + one
 * row in the table of formats/outfmt.c.
 */
#ifndef QT_FORMATS_OUTFMT_H
#define QT_FORMATS_OUTFMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "formats/dtype.h"
#include "formats/safetensors.h"
#include "quant/quant.h"

/* What the output holds as a whole. Strings and arrays are borrowed and
 * must outlive the output. */
typedef struct qt_out_model {
    const char *out;           /* destination path (OUT) */
    const char *config_path;   /* the input's config.json (the output's is derived from it,
                                  and is never more readable than it) */
    const char *in_dir;        /* the input's folder: OUT is made no more readable than it
                                  (NULL: 0755 less the umask) */
    qt_dtype compute;          /* F32/F16/BF16: the dtype quantized weights had */
    qt_scheme scheme;          /* the run's scheme (config: quantization_config) */
    size_t block;              /* its effective block size */
    bool double_quant;
    uint64_t max_shard_size;   /* bytes per file; 0 = one file */
    const char *const *protect; /* input files the output must never replace (n_protect) */
    size_t n_protect;
    const void *format_opts;   /* what a format needs beyond this (gguf: qt_out_gguf_opts);
                                  NULL for safetensors */
    bool single_pass;          /* the caller reads its input once: write_quant may bring a
                                  nested offset that was not declared (no redeclare before
                                  begin); a format that needs every size before its header
                                  keeps the data aside until commit */
} qt_out_model;

/* One logical weight. */
typedef struct qt_out_weight {
    const char *name;       /* logical name, e.g. "model.layers.0.mlp.up_proj.weight" */
    bool quantized;         /* false: stored as plain values of dtype */
    qt_scheme scheme;       /* quantized: NF4/FP4/INT8/Q8 */
    qt_dtype dtype;         /* plain: the dtype written; quantized: model.compute */
    size_t n_dims;
    uint64_t shape[QT_ST_MAX_DIMS];
    size_t block;           /* quantized: block size (0 for INT8) */
    bool double_quant;
    float nested_offset;    /* double quant: qt_dq_mean of the block absmax */
} qt_out_weight;

typedef struct qt_outfmt qt_outfmt;

/* The operations of one format (a row of the table in formats/outfmt.c).
 * `self` is the format's own state; messages name the file and tensor. */
typedef struct qt_outfmt_ops {
    const char *name; /* "safetensors", ... (qt_outfmt_new's name) */
    qt_status (*create)(const qt_out_model *m, void **self, char *errmsg);
    qt_status (*declare)(void *self, size_t id, const qt_out_weight *w, char *errmsg);
    qt_status (*plan)(void *self, char *errmsg);
    qt_status (*redeclare)(void *self, size_t id, const qt_out_weight *w, char *errmsg);
    uint64_t (*weight_bytes)(const void *self, size_t id);
    /* bytes of everything OUT will hold (after plan); NULL = the weights' sum */
    uint64_t (*total_bytes)(const void *self);
    size_t (*n_files)(const void *self);
    const char *(*file)(const void *self, size_t i);
    size_t (*n_weight_files)(const void *self);
    qt_status (*add_metadata)(void *self, const char *key, const char *value, char *errmsg);
    qt_status (*begin)(void *self, bool replace, char *errmsg);
    qt_status (*write_quant)(void *self, size_t id, const qt_qweight *q, char *errmsg);
    qt_status (*write_plain)(void *self, size_t id, uint64_t offset, const void *data, size_t n,
                             char *errmsg);
    qt_status (*add_file)(void *self, const char *name, const char *src_path, char *errmsg);
    const char *(*stage_dir)(const void *self); /* may be NULL: takes no files */
    qt_status (*commit)(void *self, const char *const *skip_modules, size_t n_skip,
                        char *errmsg);
    void (*destroy)(void *self); /* aborts an uncommitted output */
} qt_outfmt_ops;

/* The format called name, or NULL. */
const qt_outfmt_ops *qt_outfmt_find(const char *name);
/* The name of every format, for messages ("safetensors, gguf"). Static. */
const char *qt_outfmt_names(void);

/* Creates an output of format `name` (NULL = "safetensors") for model m.
 * @return QT_OK, QT_ERR_ARG (unknown format), QT_ERR_NOMEM. */
qt_status qt_outfmt_new(const char *name, const qt_out_model *m, qt_outfmt **out,
                        char *errmsg);

/* Declares the next logical weight; *id (0, 1, ...) names it from now on.
 * Before qt_outfmt_plan. @return QT_OK, QT_ERR_ARG, QT_ERR_NOMEM. */
qt_status qt_outfmt_declare(qt_outfmt *o, const qt_out_weight *w, size_t *id, char *errmsg);
/* Fixes the files and the place of every weight. */
qt_status qt_outfmt_plan(qt_outfmt *o, char *errmsg);
/* Replaces weight id's description (same name), keeping its place. After
 * plan, before begin. */
qt_status qt_outfmt_redeclare(qt_outfmt *o, size_t id, const qt_out_weight *w, char *errmsg);
/* Bytes the weight takes in the output (all its stored parts). */
uint64_t qt_outfmt_weight_bytes(const qt_outfmt *o, size_t id);
/* Bytes OUT will hold (headers and metadata included where the format
 * knows them, else the weights' sum). After plan. */
uint64_t qt_outfmt_total_bytes(const qt_outfmt *o);
/* The files OUT will hold that this format writes (weight files first,
 * then index / config), names relative to OUT; borrowed. After plan. */
size_t qt_outfmt_n_files(const qt_outfmt *o);
const char *qt_outfmt_file(const qt_outfmt *o, size_t i);
/* How many of them hold weights (shards). */
size_t qt_outfmt_n_weight_files(const qt_outfmt *o);

qt_status qt_outfmt_add_metadata(qt_outfmt *o, const char *key, const char *value,
                                 char *errmsg);
/* Creates the staging area beside OUT; replace: OUT exists and is to be
 * replaced on commit (the caller checked that it may). */
qt_status qt_outfmt_begin(qt_outfmt *o, bool replace, char *errmsg);
/* Writes weight id from its quantized form q (scheme and shape as
 * declared). @return QT_OK, QT_ERR_ARG (q does not match), QT_ERR_IO. */
qt_status qt_outfmt_write_quant(qt_outfmt *o, size_t id, const qt_qweight *q, char *errmsg);
/* Writes n bytes of plain weight id's values at byte offset. */
qt_status qt_outfmt_write_plain(qt_outfmt *o, size_t id, uint64_t offset, const void *data,
                                size_t n, char *errmsg);
/* Adds a non-weight file of the model (tokenizer, generation config...)
 * under name, from src_path; a format may use or ignore it. */
qt_status qt_outfmt_add_file(qt_outfmt *o, const char *name, const char *src_path,
                             char *errmsg);
/* The folder the output is assembled in (between begin and commit), where
 * a caller may place the model's non-weight files itself (it then answers
 * for what it puts there: names must not collide with qt_outfmt_file's);
 * NULL when the format takes no files, or outside that phase. Borrowed. */
const char *qt_outfmt_stage_dir(const qt_outfmt *o);
/* Completes the output and moves it to OUT. skip_modules: every Linear
 * left unquantized (for loaders that must not replace them).
 * @return QT_OK, QT_ERR_IO, QT_ERR_ARG (bytes missing), QT_ERR_NOMEM. */
qt_status qt_outfmt_commit(qt_outfmt *o, const char *const *skip_modules, size_t n_skip,
                           char *errmsg);
/* Frees o; an output not committed is removed. Accepts NULL. */
void qt_outfmt_free(qt_outfmt *o);

#endif /* QT_FORMATS_OUTFMT_H */
