/*
 * convert/convert.h: the conversion pipeline behind `qtool convert` and
 * `qtool dequant`.
 *
 * qt_conv_plan opens the input (a model directory or a safetensors file
 * with config.json beside it), groups its tensors into logical weights
 * (formats/layout.h) and decides for each one: quantize (which scheme,
 * block size, double quantization), keep in the compute dtype, or copy as
 * is (non-float tensors). By default exactly the Linear weights that
 * transformers' bitsandbytes integration replaces are quantized (for the
 * Llama family: q/k/v/o and gate/up/down projections); --skip globs and a
 * recipe override that. qt_conv_run then streams one weight at a time from
 * the mapped input through the quant/ kernels into the output format
 * (formats/outfmt.h: the model folder by default, assembled in a temporary
 * folder beside OUT and renamed into place only when complete; config.json
 * gets quantization_config with every unquantized Linear listed in
 * llm_int8_skip_modules, lm_head included; every other non-weight file is
 * copied byte for byte). convert never names a stored key or file itself.
 *
 * Each input byte is read once (no prepass) unless a calibration check is
 * set: then a prepass computes the double-quantization offsets first.
 * Memory: the input stays mapped and each weight's pages are released once
 * it is written, so peak memory is about the largest tensor (input pages)
 * plus its output buffer. Output bytes do not depend on the thread count or
 * the SIMD path. Not thread-safe itself (it threads internally).
 */
#ifndef QT_CONVERT_H
#define QT_CONVERT_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "calib/calib.h"
#include "calib/weight_error.h"
#include "common/common.h"
#include "formats/layout.h"
#include "quant/quant.h"

typedef enum qt_conv_action {
    QT_ACT_QUANT = 0, /* quantize with item.scheme */
    QT_ACT_KEEP,      /* float tensor written in item.out_dtype (dequantized if it was quantized) */
    QT_ACT_COPY,      /* non-float tensor copied as is */
} qt_conv_action;

/* Calibration check (convert/validate.c): after the prepass and before any
 * shard is opened, qt_conv_run quantizes every tensor to quantize (with
 * the same kernels as the write) and calls check with the original weight
 * (in the compute dtype) and the quantized one. PASS keeps the plan; FAIL
 * makes the run fail (QT_ERR_NUMERIC) after every tensor was checked, so
 * that the message and the check's own records name each offender;
 * FALLBACK re-plans the tensor as *fallback (a plain scheme bf16/fp16/fp32
 * keeps it unquantized in that dtype and lists its module in
 * llm_int8_skip_modules; QT_SCHEME_COUNT means the compute dtype; a
 * quantization scheme is checked once more, and FALLBACK again counts as
 * FAIL). Each fallback is recorded in the item's reason and in the
 * output's __metadata__ as "qtool.fallback.<tensor>". */
typedef enum qt_conv_verdict { QT_CONV_PASS = 0, QT_CONV_FALLBACK, QT_CONV_FAIL } qt_conv_verdict;
typedef struct qt_conv_item qt_conv_item;
typedef qt_status (*qt_conv_check_fn)(void *ctx, const qt_conv_item *it, const qt_qweight *orig,
                                      const qt_qweight *quant, qt_conv_verdict *verdict,
                                      qt_scheme *fallback, char *errmsg);

typedef struct qt_conv_opts {
    const char *in, *out;
    qt_scheme scheme;          /* nf4, fp4, int8, q8, or bf16/fp16/fp32 (dtype conversion) */
    size_t block;              /* 0 = the scheme's default */
    bool double_quant;         /* nf4/fp4 */
    const char *compute_dtype; /* "bf16"|"fp16"|"fp32"; NULL = from config.json */
    const char *const *skip;   /* globs over tensor and module names (n_skip) */
    size_t n_skip;
    const char *recipe_path;   /* NULL = none */
    uint64_t max_shard_size;   /* bytes; 0 = one file */
    bool force;                /* replace an existing OUT */
    bool allow_nonfinite;      /* quantize tensors holding NaN / Inf */
    bool metrics;              /* measure RMSE / SQNR per tensor (for the report) */
    bool allow_requantize;     /* dequant: input may be quantized */
    bool follow_symlinks;      /* accept shards that are symlinks leaving IN (a Hugging
                                  Face cache snapshot); refused by default (rule I6) */
    const uint8_t *rcp;        /* --match cuda: the GPU reciprocal table (formats/cuda_rcp.h,
                                  borrowed) for bitsandbytes' CUDA bytes; NULL = its CPU
                                  bytes (--match cpu) */
    FILE *progress;            /* progress bar target (a terminal), NULL = silent */
    volatile sig_atomic_t *cancel; /* set non-zero to stop between chunks; may be NULL */
    qt_conv_check_fn check;    /* calibration check; NULL = none (see qt_conv_check_fn) */
    void *check_ctx;           /* passed to check; borrowed */
    const char *format;        /* output format (formats/outfmt.h); NULL = "safetensors" */
    /* Mixed precision by measurement (convert/budget.c; needs check =
     * qt_conv_calib_check): average bits per weight over the quantizable
     * Linears, or bytes of all tensors; 0 = off. */
    double budget_bpw;
    uint64_t budget_bytes;
    uint64_t budget_random; /* > 0: fill the budget in a random order from this seed instead
                               of by measurement (the baseline docs/CALIBRATION.md compares) */
    /* LoftQ (convert/loftq_run.c): rank R > 0 turns it on for every quantized
     * Linear (nf4/fp4); OUT/loftq-adapter/ gets the PEFT adapter. */
    size_t loftq_rank;
    unsigned loftq_iters;      /* T >= 1 (0 = 1) */
    double loftq_alpha;        /* lora_alpha (0 = R, so s = 1) */
} qt_conv_opts;

typedef struct qt_conv_item {
    const qt_lweight *src;
    qt_conv_action action;
    qt_scheme scheme;      /* QUANT: the scheme; otherwise the plain scheme of out_dtype */
    size_t block;
    bool double_quant;
    qt_dtype out_dtype;    /* KEEP / COPY: the dtype written */
    char reason[160];      /* why this action: "default Linear", "--skip 'x'", "recipe rule 2" */
    uint64_t bytes_in, bytes_out;
    size_t out_id;         /* the weight's id in the output format (formats/outfmt.h) */
    float nested_offset;   /* double quant */
    /* results of qt_conv_run */
    double seconds;
    double budget_loss;    /* --budget: the estimated loss e^2 when quantized */
    size_t budget_rank;    /* --budget: 1-based place in the keep order; 0 = not a candidate */
    bool have_error;
    qt_weight_error error;
} qt_conv_item;

typedef struct qt_conv qt_conv;

/* Opens the input and builds the plan (nothing written).
 * @return QT_OK, QT_ERR_ARG (bad options), QT_ERR_FORMAT / QT_ERR_UNSUPPORTED
 * (bad input), QT_ERR_IO, QT_ERR_NOMEM. errmsg says which file, tensor and rule. */
qt_status qt_conv_plan(const qt_conv_opts *o, qt_conv **out, char *errmsg);

size_t qt_conv_n_items(const qt_conv *c);
const qt_conv_item *qt_conv_item_at(const qt_conv *c, size_t i);
/* The compute dtype chosen ("bfloat16", "float16", "float32"). */
const char *qt_conv_compute_dtype(const qt_conv *c);
/* Non-NULL when the plan mixes scheme families that transformers cannot
 * load together (e.g. nf4 and int8): a warning for the user. */
const char *qt_conv_warning(const qt_conv *c);
/* Number of output shards. */
size_t qt_conv_n_shards(const qt_conv *c);
/* The calibration measurements and the choices that depend on them
 * (fallbacks, --budget) without writing: what qt_conv_run does first. For
 * --dry-run; qt_conv_run does not repeat it. */
qt_status qt_conv_measure(qt_conv *c, char *errmsg);
/* --budget: the average bits per weight of the quantizable Linears the
 * choice gives (after qt_conv_measure / qt_conv_run). */
double qt_conv_budget_bpw(const qt_conv *c);
/* --loftq, after qt_conv_run: modules, those that kept LoftQ (the others
 * got the plain base and B = 0), and the mean relative Frobenius error
 * ||W - Q||/||W|| of plain quantization and of what OUT holds (Q + s.B.A). */
void qt_conv_loftq_summary(const qt_conv *c, size_t *n_mods, size_t *n_used, double *mean_plain,
                           double *mean_loftq);

/* What a run of the plan will need (convert/estimate.c): peak_bytes, an
 * upper bound of its resident memory with `threads` threads (the byte budget
 * qt_conv_run keeps tensors in flight under, budget_bytes, plus the process
 * and per-thread buffers); out_bytes, the size of OUT (tensors, headers,
 * copied files). Measured against /usr/bin/time in docs/BATCH.md. */
typedef struct qt_conv_needs {
    uint64_t peak_bytes, budget_bytes, out_bytes;
    int threads;
} qt_conv_needs;
void qt_conv_estimate(const qt_conv *c, int threads, qt_conv_needs *e);

/* Writes OUT. On any failure nothing is left at OUT (and an existing OUT
 * is untouched). @return QT_OK, QT_ERR_IO (disk full, permissions),
 * QT_ERR_NUMERIC (NaN/Inf in a tensor to quantize), QT_ERR_ARG (OUT exists,
 * cancelled), QT_ERR_NOMEM. */
qt_status qt_conv_run(qt_conv *c, char *errmsg);

/* Whether OUT already holds what qt_conv_run would write (for
 * `convert --if-changed`): every output file is there and the provenance
 * in the first shard's __metadata__ (qtool.version, .scheme, .block_size,
 * .double_quant, .compute_dtype, .options (every option that changes
 * output bytes: see qt_conv_options), .input.<i>: each input shard's name
 * and qt_conv_fingerprint) equals this plan's. reason (reason_n bytes, may
 * be NULL) says what differs when *up_to_date is false. An unreadable OUT
 * is "not up to date", not an error; an OUT that is not a previous qtool
 * output is refused (reason says what it holds).
 * @return QT_OK, QT_ERR_ARG (OUT may not be replaced), QT_ERR_IO, QT_ERR_NOMEM. */
qt_status qt_conv_up_to_date(const qt_conv *c, bool *up_to_date, char *reason, size_t reason_n);

/* The canonical "qtool.options" string of the plan: every option that
 * changes output bytes (scheme, effective block size, double quantization,
 * compute dtype, each --skip glob, sha256 of the recipe file, max shard
 * size, allow-nonfinite, and ";match=cuda" with --match cuda). Borrowed,
 * valid until qt_conv_free. */
const char *qt_conv_options(const qt_conv *c);

/* Where the time of the last qt_conv_run went, in seconds: prepass (NaN /
 * Inf scan and the double-quantization offsets; 0 when the input is read
 * once, i.e. without a calibration check), quantize + write (every
 * tensor through the kernels into the shards, page cache), finish (shard
 * fsync + rename, config and other files, folder fsync and the final
 * rename). */
void qt_conv_phase_seconds(const qt_conv *c, double *prepass, double *write, double *finish);

/* The per-tensor report as JSON (after qt_conv_run). Caller frees *json
 * with qt_free. @return QT_OK, QT_ERR_NOMEM. */
qt_status qt_conv_report_json(const qt_conv *c, char **json, char *errmsg);

/* A fingerprint of an input file: sha256 over its safetensors header, its
 * size and 64 KiB sampled at 16 evenly spaced places of its data (not a hash
 * of every byte: it is cheap on any model size). hex: 65 bytes. */
void qt_conv_fingerprint(const qt_st_reader *r, char hex[65]);

void qt_conv_free(qt_conv *c);

/* ---- verify (convert/verify.c) -------------------------------------------
 * `qtool verify ORIGINAL QUANTIZED`: re-derives QUANTIZED (a bitsandbytes
 * checkpoint: file or folder) from ORIGINAL with the options its tensors
 * record (quant type, block size, double quantization and dtype from the
 * quant_state blobs; LLM.int8 from `.SCB` and the dtype of its unquantized
 * tensors), written to a temporary folder under $TMPDIR (removed after),
 * and compares every tensor byte for byte. rcp as in qt_conv_opts: which
 * bitsandbytes path's bytes to expect. */
typedef struct qt_verify_tensor {
    const char *name;      /* borrowed, valid during the callback */
    bool in_quantized;     /* present in QUANTIZED */
    bool in_derived;       /* present in the re-derived checkpoint */
    bool same_layout;      /* both present with equal dtype and shape */
    bool identical;        /* both present, same layout, every byte equal */
    uint64_t n_bytes;      /* its size in QUANTIZED (else in the derived one) */
    uint64_t n_diff;       /* differing bytes (a size difference counts in full) */
    uint64_t first_diff;   /* byte offset of the first difference; UINT64_MAX if none */
} qt_verify_tensor;
typedef void (*qt_verify_fn)(void *ctx, const qt_verify_tensor *t);

typedef struct qt_verify_summary {
    size_t n_tensors;      /* tensors of QUANTIZED */
    size_t n_identical;    /* of them, identical */
    size_t n_differ;       /* tensors not identical (missing on either side included) */
    char options[160];     /* the convert options used, for the user */
} qt_verify_summary;

/* Calls fn (may be NULL) once per tensor of QUANTIZED, then once per
 * re-derived tensor QUANTIZED lacks. Identical iff sum->n_differ == 0.
 * @return QT_OK, QT_ERR_FORMAT / QT_ERR_UNSUPPORTED (QUANTIZED is not a
 * single-scheme bitsandbytes checkpoint, or bad input), QT_ERR_IO,
 * QT_ERR_NOMEM; errmsg names the file and tensor. */
qt_status qt_conv_verify(const char *original, const char *quantized, const uint8_t *rcp,
                         qt_verify_fn fn, void *ctx, qt_verify_summary *sum, char *errmsg);

/* ---- calibration check (convert/validate.c) ------------------------------ */

/* The context of qt_conv_calib_check: checks each tensor's relative output
 * error on a calibration set against its scheme's threshold. */
typedef struct qt_conv_calib {
    const qt_calib_set *set;  /* borrowed; NULL = weight metrics only (all unchecked) */
    qt_calib_report *report;  /* borrowed; every checked tensor is added to it */
    double max_error;         /* > 0 overrides the per-scheme default thresholds */
    bool fallback_on;         /* over the threshold: fall back instead of failing */
    qt_scheme fallback;       /* bf16/fp16/fp32 (kept), int8, q8, or QT_SCHEME_COUNT = the
                                 compute dtype */
} qt_conv_calib;

/* A qt_conv_check_fn over a qt_conv_calib (ctx).
 * @return QT_OK, QT_ERR_ARG (shapes), QT_ERR_NOMEM. */
qt_status qt_conv_calib_check(void *ctx, const qt_conv_item *it, const qt_qweight *orig,
                              const qt_qweight *quant, qt_conv_verdict *verdict,
                              qt_scheme *fallback, char *errmsg);

#endif /* QT_CONVERT_H */
