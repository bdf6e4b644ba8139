/*
 * convert/gguf_budget.h: mixed precision by measurement for the GGUF
 * export (`convert IN OUT.gguf --calib TEXT --budget BPW`; convert-internal,
 * used by gguf_export.c).
 *
 * The matrices: the decoder Linears (attn_q/k/v/output, ffn_gate/up/down).
 * token_embd and output keep the scheme's type: the calibration set holds
 * no activations for them (calib/calib.h captures the decoder Linears'
 * inputs only), so there is nothing to measure them by.
 *
 * Candidates of a matrix: the type the scheme / policy gives it (its base)
 * and those of q4_k, q5_k, q6_k, q8_0 at least as large (bits per weight);
 * each written as the export writes it, i.e. after the fallback for rows
 * that are not whole blocks; candidates that fall back to the same type are
 * one, and one that is no block type (F16) is dropped. A matrix with no
 * candidate left keeps the export's type and stays out of the budget.
 *
 * The estimate: a matrix's loss in a candidate type is e^2, e its relative
 * output error on the calibration activations (calib/calib.h,
 * qt_calib_measure of exactly the bytes the export writes); the model's
 * loss is their sum. The choice starts from every matrix's cheapest
 * candidate. One fixed sequence of upgrade steps is built greedily, budget
 * or not: each step is the upgrade (any larger candidate of one matrix)
 * with the largest loss decrease e_before^2 - e_after^2 per extra byte
 * (ties: matrix order, then the smaller type; steps that do not decrease
 * the loss are never taken). A budget takes the longest prefix of that
 * sequence whose bytes fit, so a larger budget never gives any matrix a
 * smaller type.
 *
 * Bits per weight: 8 * bytes of the budget's matrices (block scales
 * included) / their weights. The feasible range: [every matrix in its
 * cheapest candidate, every matrix in its largest].
 *
 * Results do not depend on the thread count or the SIMD path (the block
 * quantizers and the output error are deterministic).
 */
#ifndef QT_CONVERT_GGUF_BUDGET_H
#define QT_CONVERT_GGUF_BUDGET_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "calib/calib.h"
#include "common/common.h"
#include "formats/gguf.h"
#include "formats/gguf_meta.h"
#include "formats/pyjson.h"
#include "formats/safetensors.h"

#define QT_GGUF_BUDGET_MAX_CAND 5

/* One candidate type of a matrix. */
typedef struct qt_gguf_bcand {
    qt_ggml_type asked;    /* the base type, or q4_k / q5_k / q6_k / q8_0 */
    qt_ggml_type type;     /* what is written: asked or its fallback */
    uint64_t bytes;        /* the matrix's bytes in type */
    bool measured;         /* the calibration set had rows for the matrix */
    double rel;            /* relative output error (0 when not measured) */
    double loss;           /* rel^2; 0 when not measured or not finite */
} qt_gguf_bcand;

/* One matrix of the budget. */
typedef struct qt_gguf_bmat {
    const char *name;            /* GGUF name, borrowed */
    const qt_st_tensor *src;     /* the checkpoint tensor, borrowed */
    const qt_st_reader *rd;      /* its reader, borrowed */
    size_t n_out, n_in;          /* HF rows, columns (ne1, ne0) */
    qt_ggml_type base;           /* the scheme / policy's type before the fallback */
    qt_gguf_bcand cand[QT_GGUF_BUDGET_MAX_CAND]; /* (n_cand) by bytes */
    size_t n_cand;
    size_t chosen;               /* index in cand */
    size_t step;                 /* the step that last raised it (1-based), 0 = none */
} qt_gguf_bmat;

typedef struct qt_gguf_budget {
    qt_gguf_bmat *m;             /* (n) owned */
    size_t n, cap;
    uint64_t params;             /* weights of the n matrices */
    uint64_t lo_bytes, hi_bytes; /* all cheapest, all largest candidates */
    uint64_t bytes;              /* the chosen types */
    double bpw;                  /* asked */
    size_t n_steps;              /* upgrade steps taken */
    double seconds;              /* measuring */
} qt_gguf_budget;

/* Whether a tensor of this role is one the budget chooses for. */
bool qt_gguf_budget_role(qt_gguf_role role);

/* Adds a matrix with its candidates (built from base and n_in). Matrices
 * with no block-type candidate are not added (*added false).
 * @return QT_OK, QT_ERR_NOMEM. */
qt_status qt_gguf_budget_add(qt_gguf_budget *b, const char *name, const qt_st_tensor *src,
                             const qt_st_reader *rd, qt_ggml_type base, bool *added,
                             char *errmsg);

/* The feasible range in bits per weight. */
void qt_gguf_budget_range(const qt_gguf_budget *b, double *lo, double *hi);

/* Quantizes every matrix to each of its candidates and measures the output
 * error on set's activations. cancel (may be NULL): non-zero stops between
 * matrices. @return QT_OK, QT_ERR_NUMERIC (NaN/Inf without
 * allow_nonfinite: the message names the tensor and row), QT_ERR_ARG
 * (cancelled, shapes that disagree with the set), QT_ERR_NOMEM. */
qt_status qt_gguf_budget_measure(qt_gguf_budget *b, const qt_calib_set *set,
                                 bool allow_nonfinite, volatile sig_atomic_t *cancel,
                                 char *errmsg);

/* Whether bpw lies in the feasible range. @return QT_OK, QT_ERR_ARG (no
 * matrix, or outside: the message gives the range). */
qt_status qt_gguf_budget_check(const qt_gguf_budget *b, double bpw, char *errmsg);

/* Chooses every matrix's candidate for bpw (checked as above).
 * @return QT_OK, QT_ERR_ARG (bpw outside the range). */
qt_status qt_gguf_budget_choose(qt_gguf_budget *b, double bpw, char *errmsg);

/* Achieved bits per weight of the chosen types. */
double qt_gguf_budget_bpw(const qt_gguf_budget *b);

/* The "budget" object of the report (decision table): asked and achieved
 * bpw, the range, and per matrix its candidates (type written, bytes,
 * relative error, loss), the chosen type and the step. */
void qt_gguf_budget_json(const qt_gguf_budget *b, qt_strbuf *out);

/* Frees the matrices; accepts a zeroed b, leaves it zeroed. */
void qt_gguf_budget_release(qt_gguf_budget *b);

#endif /* QT_CONVERT_GGUF_BUDGET_H */
