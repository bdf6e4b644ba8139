/*
 * model/model_internal.h: the model's structs (llama2.c's Config / Weights /
 * RunState), shared by model.c (config.json + safetensors, the forward pass)
 * and gguf_model.c (the GGUF loader). model/ and its tests only.
 */
#ifndef QT_MODEL_INTERNAL_H
#define QT_MODEL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "formats/gguf.h"
#include "formats/layout.h"
#include "formats/modeldir.h"
#include "model/model.h"
#include "quant/quant.h"

/* ---- Weights ---------------------------------------------------------------
 * Matrices are quant/ descriptors borrowing the mapped files; norm vectors
 * and biases are fp32 copies owned by the model (NULL when absent). */
typedef struct qt_layer_weights {
    const float *attn_norm; /* (dim,) input_layernorm */
    const float *ffn_norm;  /* (dim,) post_attention_layernorm */
    qt_qweight wq;          /* (n_heads * head_dim, dim) */
    qt_qweight wk;          /* (n_kv_heads * head_dim, dim) */
    qt_qweight wv;          /* (n_kv_heads * head_dim, dim) */
    qt_qweight wo;          /* (dim, n_heads * head_dim) */
    qt_qweight w_gate;      /* (hidden_dim, dim) */
    qt_qweight w_up;        /* (hidden_dim, dim) */
    qt_qweight w_down;      /* (dim, hidden_dim) */
    const float *bq;        /* (n_heads * head_dim,) or NULL */
    const float *bk, *bv;   /* (n_kv_heads * head_dim,) or NULL */
    const float *bo;        /* (dim,) or NULL */
    const char *label[7];   /* storage labels of wq..w_down ("nf4+dq", "F32") */
} qt_layer_weights;

typedef struct qt_model_weights {
    qt_qweight embed;         /* (vocab_size, dim) token embedding */
    qt_layer_weights *layers; /* (n_layers,) */
    const float *norm;        /* (dim,) final norm */
    qt_qweight lm_head;       /* (vocab_size, dim); a copy of embed when tied */
    const char *embed_label, *lm_head_label;
    bool qk_interleaved;      /* GGUF: Q/K rows in interleaved-pair RoPE order,
                                 permuted to the HF order after each matmul */
} qt_model_weights;

/* ---- RunState ---------------------------------------------------------------
 * Scratch for a chunk of up to n_batch tokens, the KV cache and the RoPE
 * tables. All fp32, 64-byte aligned, owned by the model. */
typedef struct qt_run_state {
    float *x;           /* (n_batch, dim) residual stream */
    float *xb;          /* (n_batch, dim) normed input of a block */
    float *xb2;         /* (n_batch, dim) output of wo / w_down */
    float *q;           /* (n_batch, q_dim) */
    float *k;           /* (n_batch, kv_dim) */
    float *v;           /* (n_batch, kv_dim) */
    float *att_out;     /* (n_batch, q_dim) attention output */
    float *hb;          /* (n_batch, hidden_dim) gate, then silu(gate) * up */
    float *hb2;         /* (n_batch, hidden_dim) up */
    float *att;         /* (att_threads, att_stride) per-thread attention scratch */
    int att_threads;    /* rows of att */
    size_t att_stride;  /* QT_ATTN_ROWS * n_ctx, rounded up to 16 */
    float *key_cache;   /* (n_layers, n_kv_heads, head_dim, n_ctx): each key
                           transposed, so attention reads positions in a row */
    float *value_cache; /* (n_layers, n_ctx, kv_dim) */
    float *rope_cos;    /* (n_ctx, head_dim / 2) */
    float *rope_sin;    /* (n_ctx, head_dim / 2) */
    int32_t *qk_perm;   /* (head_dim,) HF index -> stored index, GGUF only */
} qt_run_state;

/* An adapter prepared for the forward pass (model/lora.c). */
typedef struct qt_lora qt_lora;

struct qt_model {
    qt_model_config cfg;
    qt_model_weights w;
    qt_run_state s;
    const qt_kernels *k;   /* the active kernels at open */
    size_t n_ctx, n_batch, n_past;
    qt_model_capture_fn capture; /* opts->capture, NULL = none */
    void *capture_ctx;
    size_t cur_pos0;             /* position of the chunk being evaluated */
    size_t max_ctx;        /* the largest n_ctx accepted (sliding window); 0 = no cap */
    bool dq_fp32;          /* opts->dq_fp32: 4-bit weights stay exact fp32 */
    qt_lora *lora;               /* the adapter in the forward pass (model/lora.c), NULL = none */
    const qt_model *parent; /* qt_model_fork: whose weights (and qk_perm) these
                               are; NULL when the model owns them */
    /* what the model owns */
    qt_modeldir *md_owned; /* NULL when borrowed or GGUF */
    qt_layout *layout;
    qt_gguf *gguf;
    void **owned;          /* fp32 copies and scratch, freed at qt_model_free */
    size_t n_owned, cap_owned;
    char errmsg[QT_ERRMSG_SIZE];
};

/* A new zeroed model (cfg.bos_id / eos_id = -1), or NULL. */
qt_model *qt_model_new_empty(void);

/* n floats (64-byte aligned, zeroed) owned by m; NULL when out of memory. */
float *qt_model_alloc_f32(qt_model *m, size_t n);

/* Checks cfg (sizes non-zero and consistent, head_dim even, n_heads a
 * multiple of n_kv_heads), applies opts (n_ctx, n_batch) and allocates the
 * run state, the KV cache and the RoPE tables.
 * @return QT_OK, QT_ERR_FORMAT, QT_ERR_ARG, QT_ERR_OVERFLOW, QT_ERR_NOMEM. */
qt_status qt_model_setup(qt_model *m, const qt_model_opts *opts, size_t default_ctx,
                         char *errmsg);

/* Adds the adapter's correction s * (B (A x) + b_B) to y (n, n_out), the
 * output of the Linear `what` ("q_proj", ..., "lm_head") of layer l
 * (n_layers for lm_head) on input x (n, n_in); nothing when the adapter
 * does not wrap it. @return QT_OK, QT_ERR_NOMEM (message in m->errmsg). */
qt_status qt_lora_apply(qt_model *m, size_t l, const char *what, const float *x, size_t n,
                        float *y);
/* Gives the fork f the adapter of m (borrowed, as f borrows m's weights)
 * with its own scratch. @return QT_OK, QT_ERR_NOMEM. */
qt_status qt_lora_fork(qt_model *f, const qt_model *m, char *errmsg);
/* Frees a prepared adapter and the adapter it owns. Accepts NULL. */
void qt_lora_free(qt_lora *lo);

#endif /* QT_MODEL_INTERNAL_H */
