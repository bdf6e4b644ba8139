/*
 * formats/layout.h: the logical weights of a model directory.
 *
 * A quantized checkpoint stores one weight as several tensors (bitsandbytes
 * 4-bit: P.weight + .absmax + .quant_map [+ .nested_absmax +
 * .nested_quant_map] + .quant_state.bitsandbytes__nf4|fp4; LLM.int8:
 * P.weight + P.SCB + P.weight_format; qtool's q8: P.weight +
 * .quant_state.qtool__q8; see formats/bnb.h and docs/FORMATS.md). The
 * layout groups them back into one logical weight each, with its scheme,
 * block size, original shape and bytes, checks that the parts agree
 * (sizes, dtypes, the quant_state JSON), and turns a 2-D weight into a
 * qt_qweight descriptor for the quant/ kernels: pointers into the mapped
 * files, nothing copied.
 *
 * Plain tensors (norms, embeddings, unquantized Linears) are logical
 * weights of kind QT_LW_PLAIN. Ownership: the layout borrows the model
 * directory, which must outlive it; qt_layout_free accepts NULL.
 */
#ifndef QT_FORMATS_LAYOUT_H
#define QT_FORMATS_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "formats/dtype.h"
#include "formats/modeldir.h"
#include "formats/safetensors.h"
#include "quant/quant.h"

typedef enum qt_lw_kind {
    QT_LW_PLAIN = 0, /* one tensor, stored as is */
    QT_LW_BNB4,      /* bitsandbytes NF4 / FP4 (optionally double-quantized) */
    QT_LW_INT8,      /* bitsandbytes LLM.int8 row-wise (weight + SCB) */
    QT_LW_Q8,        /* qtool per-block symmetric int8 */
    QT_LW_KIND_COUNT
} qt_lw_kind;

typedef struct qt_lweight {
    const char *name;      /* logical tensor name, e.g. "model.layers.0.mlp.up_proj.weight" */
    qt_lw_kind kind;
    qt_scheme scheme;      /* NF4, FP4, INT8, Q8, or BF16/FP16/FP32 for plain float
                              tensors; QT_SCHEME_COUNT for other plain dtypes */
    qt_dtype dtype;        /* plain: the stored dtype; quantized: the dtype the
                              weight had before quantization (quant_state "dtype";
                              F16 for LLM.int8) */
    size_t n_dims;
    uint64_t shape[QT_ST_MAX_DIMS]; /* logical shape, outermost first */
    uint64_t n_elements;
    size_t block_size;     /* 0 when the scheme has no blocks */
    bool double_quant;
    float nested_offset;   /* double quant only */
    uint64_t nbytes;       /* bytes of all the tensors that store it */
    /* the stored tensors (NULL when absent) and the shard readers holding them */
    const qt_st_tensor *weight, *absmax, *quant_map, *nested_absmax, *nested_map, *state, *scb,
        *weight_format;
    qt_st_reader *reader; /* of `weight`; companions may sit in other shards */
} qt_lweight;

typedef struct qt_layout qt_layout;

/* Groups md's tensors into logical weights. Inconsistent groups (a
 * .absmax without its weight, a quant_state whose shape does not match the
 * packed size, two quant_state blobs, ...) are rejected with a message
 * naming the tensor. @return QT_OK, QT_ERR_FORMAT, QT_ERR_UNSUPPORTED,
 * QT_ERR_NOMEM. */
qt_status qt_layout_build(const qt_modeldir *md, qt_layout **out, char *errmsg);

/* Number of logical weights, in the order of the model's tensors. */
size_t qt_layout_n(const qt_layout *L);
const qt_lweight *qt_layout_at(const qt_layout *L, size_t i);
/* By logical name ("...q_proj.weight"), or NULL. */
const qt_lweight *qt_layout_find(const qt_layout *L, const char *name);

/* Fills a kernel descriptor for a 2-D weight (rows = shape[0], columns =
 * the product of the rest) of kind PLAIN (F32/F16/BF16), BNB4, INT8 or Q8.
 * Pointers borrow the mapping. @return QT_OK, QT_ERR_UNSUPPORTED (other
 * dtypes), QT_ERR_FORMAT. */
qt_status qt_layout_qweight(const qt_lweight *w, qt_qweight *out, char *errmsg);

/* Bits per weight as stored (all parts counted). */
double qt_lweight_bpw(const qt_lweight *w);

/* A short scheme label for display: "nf4", "nf4+dq", "int8", "q8", "bf16". */
const char *qt_lweight_label(const qt_lweight *w);

void qt_layout_free(qt_layout *L);

#endif /* QT_FORMATS_LAYOUT_H */
