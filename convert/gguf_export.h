/*
 * convert/gguf_export.h: `qtool convert IN OUT.gguf --format gguf`: a Hugging
 * Face Llama / Qwen2 checkpoint straight to one llama.cpp-ready GGUF file
 * (specs/gguf-export.md), streamed one tensor (in row chunks) at a time.
 *
 * Schemes (case matters):
 *   f32 f16 bf16                   every matrix in that type (ftype 0, 1, 32)
 *   q8_0 q4_0 q4_1 q5_0 q5_1       every matrix in that ggml type ("pure")
 *   q2_k q3_k q4_k q5_k q6_k       every matrix in that K type ("pure")
 *   Q4_0 Q4_1 Q5_0 Q5_1 Q8_0       llama-quantize's file types: the per-tensor
 *   Q2_K Q3_K_M Q4_K_M Q5_K_M Q6_K   type policy of llama.cpp src/llama-quant.cpp
 *                                  (llama_tensor_get_type, dense models), as of
 *                                  commit 007dbbf (2026, newer than b4747);
 *                                  --pure turns the policy off
 * 1-D tensors and *_norm.weight stay F32 (§6). A matrix whose rows are not
 * a whole number of its type's blocks falls back as llama-quantize does (K
 * types: Q4_K->Q5_0, Q5_K->Q5_1, Q6_K->Q8_0, Q2_K/Q3_K->Q4_0) and, where
 * llama-quantize has no fallback or it still does not fit, to F16 (the
 * converter's rule, §7.4); the summary counts them.
 */
#ifndef QT_CONVERT_GGUF_EXPORT_H
#define QT_CONVERT_GGUF_EXPORT_H

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>

#include "common/common.h"
#include "formats/gguf.h"
#include "formats/gguf_meta.h"

struct qt_calib_set;

/* ---- the per-tensor type policy (convert/gguf_policy.c) ------------------ */

/* A --scheme value: the llama_ftype written to general.file_type, the
 * default type of its matrices, and whether llama-quantize's policy applies. */
typedef struct qt_gguf_scheme {
    const char *name;
    uint32_t ftype;          /* llama_ftype */
    qt_ggml_type type;       /* default matrix type */
    bool mix;                /* llama-quantize's per-tensor policy */
} qt_gguf_scheme;

/* The scheme called name (exact, case-sensitive), or NULL. */
const qt_gguf_scheme *qt_gguf_scheme_find(const char *name);
/* All scheme names, "|"-separated (for usage text). Static. */
const char *qt_gguf_scheme_names(void);

/* What the policy needs to know about the model. */
typedef struct qt_gguf_policy {
    const qt_gguf_scheme *scheme;
    bool pure;               /* --pure: no per-tensor policy */
    bool tied;               /* no output.weight: token_embd is also the output */
    bool is_70b;             /* llama.cpp's LLM_TYPE_70B (80 layers, GQA) */
    uint32_t n_layers, n_gqa; /* n_head / n_head_kv */
} qt_gguf_policy;

/* The type the scheme (and its policy) gives one tensor before the
 * fallback for rows that are not whole blocks: role, block index (-1
 * outside the blocks), n_dims and ne[0]. */
qt_ggml_type qt_gguf_policy_base(const qt_gguf_policy *p, qt_gguf_role role, int layer,
                                 uint32_t n_dims, int64_t ne0);

/* A block type t for rows of ne0 elements: t when they are whole blocks,
 * else llama-quantize's fallback (K types: Q4_K->Q5_0, Q5_K->Q5_1,
 * Q6_K->Q8_0, Q2_K/Q3_K->Q4_0) or F16 (no fallback, or it does not fit
 * either); *fell is set (not cleared) when it falls back. */
qt_ggml_type qt_gguf_type_fallback(qt_ggml_type t, int64_t ne0, bool *fell);

/* The type of one tensor: role, block index (-1 outside the blocks),
 * n_dims and ne[0]. *fallback (may be NULL) is set when the rows were not a
 * whole number of blocks of the type the policy chose. */
qt_ggml_type qt_gguf_policy_type(const qt_gguf_policy *p, qt_gguf_role role, int layer,
                                 uint32_t n_dims, int64_t ne0, bool *fallback);

/* ---- the export ------------------------------------------------------------ */

typedef struct qt_gguf_export_opts {
    const char *in, *out;
    const char *scheme;      /* a qt_gguf_scheme name */
    bool pure;
    const char *pre;         /* --gguf-pre: the BPE pre-tokenizer name; NULL = identify */
    bool dry_run;            /* print the plan to plan_out, write nothing */
    bool force;              /* replace an existing OUT */
    bool allow_nonfinite;    /* quantize tensors holding NaN / Inf */
    bool follow_symlinks;
    FILE *plan_out;          /* per-tensor lines (dry run) and fallback notes; NULL = none */
    FILE *progress;          /* progress bar target, NULL = silent */
    volatile sig_atomic_t *cancel; /* non-zero: stop between chunks */
    /* --budget BPW (> 0; 0 = off): the decoder Linears' types chosen by
     * their measured output error (convert/gguf_budget.h), the choice in
     * the metadata key "qtool.budget". calib_get is called once, after the
     * budget passed the range check (a refused budget costs no calibration
     * pass), for the calibration set: *set borrowed until the export
     * returns; on failure it sets errmsg. */
    double budget_bpw;
    qt_status (*calib_get)(void *ctx, const struct qt_calib_set **set, char *errmsg);
    void *calib_ctx;
    bool want_report;        /* fill the summary's report (JSON) */
} qt_gguf_export_opts;

typedef struct qt_gguf_export_summary {
    size_t n_tensors, n_quantized, n_fallback, n_f16_overflow;
    uint64_t bytes_in, bytes_out;
    double seconds;
    uint32_t ftype;
    /* --budget: matrices chosen for, achieved bits per weight over them, the
     * feasible range, steps taken (0 without --budget) */
    size_t budget_n, budget_steps;
    double budget_bpw, budget_lo, budget_hi;
    char *report;            /* want_report: the JSON report (per-tensor types and, with
                                --budget, the decision table); caller frees with qt_free */
} qt_gguf_export_summary;

/* Plans and (unless dry_run) writes OUT atomically. Nothing is left at OUT
 * on failure. sum->report is NULL on failure. @return QT_OK, QT_ERR_ARG (options, OUT exists,
 * cancelled, a budget outside its feasible range: the message gives the range),
 * QT_ERR_FORMAT / QT_ERR_UNSUPPORTED (input llama.cpp could not use: the
 * message names the file and the key or tensor), QT_ERR_NUMERIC (NaN/Inf),
 * QT_ERR_IO, QT_ERR_NOMEM. */
qt_status qt_gguf_export(const qt_gguf_export_opts *o, qt_gguf_export_summary *sum,
                         char *errmsg);

#endif /* QT_CONVERT_GGUF_EXPORT_H */
