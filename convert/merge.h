/*
 * convert/merge.h: folding a PEFT LoRA adapter into a model
 * (`qtool merge BASE ADAPTER OUT`, specs/peft-lora.md §6).
 *
 * What it does: for every logical weight of BASE, in order, one of
 *   FOLD     W' = W + s (B A) in fp32 (quant/ qt_lora_merge), W being the
 *            original weight (--onto original: BASE is the fp32/fp16/bf16
 *            checkpoint) or the exact bitsandbytes dequantization of the
 *            stored NF4/FP4/int8/q8 weight (--onto quantized: BASE is the
 *            model the adapter was trained on); then rounded once to the
 *            compute dtype and written in the output scheme;
 *   REPLACE  the adapter's full tensor (modules_to_save, trained biases);
 *   PASS     the base's own bytes, unchanged: a weight the adapter does not
 *            change (not wrapped, or B = 0) whose output form equals its
 *            stored form (same scheme, block, double quantization or dtype);
 *   CONVERT  the base's values in the output form (dequantized first when
 *            stored quantized);
 *   COPY     a non-float tensor as it is.
 * Which weights the output quantizes follows `convert`: the Llama-family
 * Linear weights (convert_internal.h qt_conv_default_linear) when the
 * scheme is nf4/fp4/int8/q8, everything else in the compute dtype.
 * The output goes through the output-format seam (formats/outfmt.h), like
 * convert: assembled beside OUT, renamed into place when complete, nothing
 * left on failure; bytes independent of threads and ISA. Provenance in the
 * metadata: "qtool.merge.adapter", ".adapter_fingerprint", ".onto",
 * ".scheme", ".base_fingerprint.<i>".
 * Per folded weight it measures ||s B A||_F / ||W||_F and, when the output
 * is 4-bit of the base's own block size, the fraction of 4-bit codes and of
 * block scales that changed from the base's (spec §6.3: most small deltas
 * round back to the old code).
 *
 * Memory: one weight at a time: its fp32 values, a copy for the
 * measurements, the compute-dtype values and the quantized buffers, about
 * 3x the largest weight in fp32, plus the mapped input pages (released
 * after each weight). A double-quantized output needs each changed
 * weight's nested offset before the first byte is written (it sizes the
 * quant_state): the prepass computes and quantizes those weights once and
 * keeps their quantized form in an unlinked temporary file beside OUT
 * (disk: about the size of those weights in the output), which the write
 * pass reads back.
 *
 * What it does not do: DoRA, embedding LoRA (refused by formats/adapter),
 * several adapters at once, unmerging. Not thread-safe itself (it threads
 * internally through the kernels).
 */
#ifndef QT_CONVERT_MERGE_H
#define QT_CONVERT_MERGE_H

#include <stdbool.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>

#include "common/common.h"
#include "formats/adapter.h"
#include "formats/layout.h"
#include "quant/quant.h"

typedef enum qt_merge_onto {
    QT_MERGE_ONTO_ORIGINAL = 0, /* BASE holds the original (unquantized) weights */
    QT_MERGE_ONTO_QUANTIZED,    /* BASE holds the quantized weights the adapter trained on */
    QT_MERGE_ONTO_COUNT
} qt_merge_onto;

/* "original", "quantized". */
const char *qt_merge_onto_name(qt_merge_onto o);

typedef struct qt_merge_opts {
    const char *base;          /* BASE model directory (or .safetensors with config.json) */
    const char *adapter;       /* PEFT adapter directory */
    const char *out;           /* output directory */
    qt_merge_onto onto;
    qt_scheme scheme;          /* output: nf4, fp4, int8, q8, bf16, fp16, fp32 */
    size_t block;              /* 0 = the scheme's default */
    bool double_quant;         /* nf4/fp4 */
    const char *compute_dtype; /* "bf16"|"fp16"|"fp32"; NULL = BASE's config dtype */
    const char *format;        /* output format (formats/outfmt.h); NULL = safetensors */
    bool force;                /* replace an existing OUT */
    FILE *progress;            /* progress bar target; NULL = silent */
} qt_merge_opts;

typedef enum qt_merge_action {
    QT_MERGE_PASS = 0, QT_MERGE_FOLD, QT_MERGE_REPLACE, QT_MERGE_CONVERT, QT_MERGE_COPY,
    QT_MERGE_ACTION_COUNT
} qt_merge_action;

/* "pass", "fold", "replace", "convert", "copy". */
const char *qt_merge_action_name(qt_merge_action a);

typedef struct qt_merge_item {
    const qt_lweight *src;              /* BASE's weight (borrowed) */
    const qt_adapter_module *mod;       /* FOLD: its LoRA (borrowed) */
    const qt_adapter_replacement *repl; /* REPLACE: the adapter's tensor (borrowed) */
    qt_merge_action action;
    bool quantized;                     /* written quantized (scheme, block, dq below) */
    qt_scheme scheme;                   /* quantized: the scheme; else the plain scheme */
    qt_dtype dtype;                     /* plain: the dtype written */
    size_t block;
    bool double_quant;
    float nested_offset;                /* double quant (after the prepass) */
    size_t out_id;                      /* the weight's id in the output */
    int64_t spill_at;                   /* byte offset of its quantized form in the spill
                                           file (double quant, computed once); -1 = none */
    /* measurements (FOLD; -1 when not measured) */
    double delta_rel;                   /* ||s B A||_F / ||W||_F */
    double codes_changed;               /* fraction of 4-bit codes unlike the base's */
    double scales_changed;              /* fraction of blocks whose stored scale changed */
    double seconds;
} qt_merge_item;

typedef struct qt_merge qt_merge;

/* Opens BASE and the adapter, checks them against each other and against
 * --onto, and plans every weight (nothing written).
 * @return QT_OK, QT_ERR_ARG (options, --onto does not fit BASE, OUT exists
 *         without force), QT_ERR_FORMAT / QT_ERR_UNSUPPORTED / QT_ERR_NUMERIC
 *         (BASE or adapter), QT_ERR_IO, QT_ERR_NOMEM. errmsg names the file,
 *         tensor or module and the rule. */
qt_status qt_merge_plan(const qt_merge_opts *o, qt_merge **out, char *errmsg);

size_t qt_merge_n_items(const qt_merge *m);
const qt_merge_item *qt_merge_item_at(const qt_merge *m, size_t i);
/* The adapter (borrowed, valid until qt_merge_free). */
const qt_adapter *qt_merge_adapter(const qt_merge *m);

/* Writes OUT. On failure nothing is left at OUT.
 * @return QT_OK, QT_ERR_IO, QT_ERR_NUMERIC (a non-finite merged weight),
 *         QT_ERR_ARG, QT_ERR_NOMEM. */
qt_status qt_merge_run(qt_merge *m, char *errmsg);

/* Seconds of the last qt_merge_run. */
double qt_merge_seconds(const qt_merge *m);

/* The per-weight report as JSON (after qt_merge_run). *json: qt_free.
 * @return QT_OK, QT_ERR_NOMEM. */
qt_status qt_merge_report_json(const qt_merge *m, char **json, char *errmsg);

void qt_merge_free(qt_merge *m);

/* `merge --format gguf`: the merge as fp32 in a staging folder beside
 * o->out, then qt_gguf_export of it to o->out (one GGUF file) with
 * gguf_scheme (a qt_gguf_scheme name: f16, q8_0, Q4_K_M, ...) and --pure;
 * the staging folder is removed on success and failure. o->scheme and
 * o->format are ignored. @return as qt_merge_run / qt_gguf_export. */
qt_status qt_merge_to_gguf(const qt_merge_opts *o, const char *gguf_scheme, bool pure,
                           FILE *plan_out, volatile sig_atomic_t *cancel, char *errmsg);

#endif /* QT_CONVERT_MERGE_H */
