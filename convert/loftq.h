/*
 * convert/loftq.h: LoftQ initialization of one Linear weight (Li et al.
 * 2023; peft's loftq_utils): the 4-bit base Q and a rank-r LoRA pair (A, B)
 * such that Q + s.B.A is close to W, alternating
 *
 *     res = W;  repeat T times { Q = dequant(quant(res));
 *                                (L, R) = best rank-r of W - Q;
 *                                res = W - L.R }
 *
 * with qtool's exact NF4/FP4 quantization INCLUDING the double
 * quantization that is written (peft quantizes without it), and a
 * randomized truncated SVD (quant/lowrank). The adapter stores
 * lora_A = R and lora_B = L / s, so that s.B.A = L.R for any lora_alpha
 * (peft stores B = L, right only when s = 1).
 *
 * Never worse than plain QLoRA: when ||W - Q - s.B.A||_F is not below the
 * plain error ||W - dequant(quant(W))||_F the result is the plain
 * quantization of W with PEFT's default init (B = 0, A uniform in
 * +-1/sqrt(n_in), seeded), and used_loftq is false.
 *
 * Deterministic: the bytes depend only on W, the options and the seed, not
 * on the thread count or the SIMD path.
 */
#ifndef QT_LOFTQ_H
#define QT_LOFTQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "quant/quant.h"

typedef struct qt_loftq_opts {
    size_t rank;          /* r >= 1, <= min(n_out, n_in) */
    unsigned iters;       /* T >= 1 */
    float scale;          /* s = lora_alpha / r */
    qt_scheme scheme;     /* QT_SCHEME_NF4 or QT_SCHEME_FP4 */
    size_t block;         /* 4-bit block size */
    bool double_quant;    /* quantize the absmax as written */
    uint64_t seed;        /* sketch and fallback init */
    size_t oversample;    /* extra sketch columns (0 = 8) */
    unsigned power_iters; /* subspace iterations (0 = none; default 2 via qt_loftq_opts_default) */
} qt_loftq_opts;

/* Defaults: T 1, s 1, NF4, block 64, double quant, oversample 8, 2 power
 * iterations, seed 0; rank must be set. */
qt_loftq_opts qt_loftq_opts_default(void);

/* The result for one weight (n_out, n_in). Buffers are owned by the result:
 * release with qt_loftq_result_release (safe to repeat). */
typedef struct qt_loftq_result {
    size_t n_out, n_in, rank, n_blocks;
    uint8_t *codes;   /* (ceil(n/2),) packed 4-bit codes, n = n_out*n_in */
    float *absmax;    /* (n_blocks,) the absmax before double quantization */
    uint8_t *dq_codes; /* (n_blocks,) nested codes (double_quant only) */
    float *dq_nested; /* (qt_dq_n_nested(n_blocks),) (double_quant only) */
    float dq_offset;
    float *lora_a;    /* (rank, n_in) */
    float *lora_b;    /* (n_out, rank) */
    double norm_w;    /* ||W||_F */
    double err_plain; /* ||W - dequant(quant(W))||_F */
    double err_loftq; /* ||W - Q_T - s.B.A||_F of the alternation */
    double err_final; /* the error of what the result holds */
    bool used_loftq;  /* false: plain quantization + zero-B init */
} qt_loftq_result;

/* LoftQ of w (n_out, n_in) fp32. Peak memory about 3 * n_out * n_in floats.
 * errmsg (256) gets a message on failure.
 * @return QT_OK, QT_ERR_ARG (bad option), QT_ERR_NUMERIC (non-finite W),
 * QT_ERR_NOMEM, QT_ERR_OVERFLOW. */
qt_status qt_loftq_matrix(const float *w, size_t n_out, size_t n_in, const qt_loftq_opts *o,
                          qt_loftq_result *res, char *errmsg);
void qt_loftq_result_release(qt_loftq_result *res);

#endif /* QT_LOFTQ_H */
