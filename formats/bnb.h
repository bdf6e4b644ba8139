/*
 * formats/bnb.h: the bitsandbytes serialization of quantized Linear layers
 * (specs/bnb-format.md §3.2, §4): the quant_state JSON blob, the key names
 * of each quantized weight, and config.json's quantization_config.
 *
 * Byte layout of one 4-bit Linear with prefix P (nb = ceil(n / blocksize),
 * n = out*in):
 *   P.weight                               U8  [(n+1)/2, 1]  packed codes,
 *                                          first element in the high nibble
 *   P.weight.absmax                        F32 [nb]  (no double quant) or
 *                                          U8  [nb]  nested codes
 *   P.weight.quant_map                     F32 [16]
 *   P.weight.nested_absmax                 F32 [ceil(nb/256)]  (double quant)
 *   P.weight.nested_quant_map              F32 [256]           (double quant)
 *   P.weight.quant_state.bitsandbytes__nf4 U8  [len]  JSON (json.dumps bytes):
 *     {"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16",
 *      "shape": [out, in], "nested_blocksize": 256, "nested_dtype": "float32",
 *      "nested_offset": 0.0320...}   (nested_* only with double quant)
 * LLM.int8 Linear: P.weight I8 [out, in], P.SCB F32 [out], P.weight_format
 * U8 [] = 0 ("row").
 *
 * formats/bnb is the ONE owner of this layout: qt_bnb_layout_of gives the
 * stored parts of a weight (suffixes, dtypes, shapes) and its quant_state;
 * the writer (formats/out_safetensors.c), the reader (formats/layout.c) and
 * inspect ask it and never spell a suffix themselves. qtool's own q8
 * layout (P.weight U8 [qt_q8_bytes] + P.weight.quant_state.qtool__q8, the
 * same JSON with quant_type "q8") lives in the same table.
 *
 * Pure functions on memory; thread-safe.
 */
#ifndef QT_FORMATS_BNB_H
#define QT_FORMATS_BNB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "formats/dtype.h"
#include "quant/quant.h"

#define QT_BNB_MAX_DIMS 8
#define QT_BNB_MAX_PARTS 6

/* The parsed quant_state JSON of one 4-bit weight. */
typedef struct qt_bnb_state {
    char quant_type[8]; /* "nf4" or "fp4"; "q8" in qtool's own q8 layout */
    int64_t blocksize;
    char dtype[16]; /* "bfloat16", "float16", "float32" */
    int n_dims;
    int64_t shape[QT_BNB_MAX_DIMS]; /* original shape, e.g. [out, in] */
    bool nested;
    int64_t nested_blocksize;
    char nested_dtype[16];
    float nested_offset;
} qt_bnb_state;

/* Writes the blob exactly as bitsandbytes' json.dumps does into buf
 * (cap bytes, NUL-terminated); *len gets its length (without the NUL).
 * @return QT_OK, QT_ERR_ARG (buffer too small), QT_ERR_NOMEM. */
qt_status qt_bnb_state_format(const qt_bnb_state *s, char *buf, size_t cap, size_t *len);

/* Parses a blob (json[0..n), not NUL-terminated). `what` names the tensor
 * in messages. Checks types and ranges (blocksize a power of two 32..4096,
 * shape dims > 0, quant_type known, nested keys all present or all absent).
 * @return QT_OK, QT_ERR_FORMAT, QT_ERR_UNSUPPORTED, QT_ERR_NOMEM. */
qt_status qt_bnb_state_parse(const void *json, size_t n, const char *what, qt_bnb_state *out,
                             char *errmsg);

/* What a stored part holds: the caller's data (codes, scales) or a
 * constant the layout fills itself (maps, quant_state, weight_format). */
typedef enum qt_bnb_role {
    QT_BNB_CODES = 0,     /* P.weight: packed 4-bit codes, int8 or q8 blocks */
    QT_BNB_ABSMAX,        /* .absmax: F32 block absmax, or U8 nested codes (double quant) */
    QT_BNB_QUANT_MAP,     /* .quant_map: the 16-entry NF4 / FP4 table */
    QT_BNB_NESTED_ABSMAX, /* .nested_absmax (double quant) */
    QT_BNB_NESTED_MAP,    /* .nested_quant_map: the 256-entry dynamic map (double quant) */
    QT_BNB_STATE,         /* .quant_state.<bitsandbytes__nf4|bitsandbytes__fp4|qtool__q8> */
    QT_BNB_SCB,           /* LLM.int8 row scales */
    QT_BNB_WEIGHT_FORMAT, /* LLM.int8 U8 [] = 0 ("row") */
    QT_BNB_ROLE_COUNT
} qt_bnb_role;

/* One stored tensor of a quantized weight: name = module prefix + suffix. */
typedef struct qt_bnb_part {
    qt_bnb_role role;
    const char *suffix; /* ".weight", ".weight.absmax", ".SCB", ... (static) */
    qt_dtype dtype;
    size_t n_dims;      /* 0 (a scalar), 1 or 2 */
    uint64_t shape[2];
    uint64_t nbytes;
} qt_bnb_part;

/* The stored form of one quantized weight, parts in the order written. */
typedef struct qt_bnb_layout {
    size_t n_parts;
    qt_bnb_part part[QT_BNB_MAX_PARTS];
    bool has_state;     /* part QT_BNB_STATE is present; its bytes = state formatted */
    qt_bnb_state state;
} qt_bnb_layout;

/* The layout of a weight of `shape` (n_dims) quantized with scheme (NF4,
 * FP4, INT8, Q8), block size, double quantization (NF4/FP4) and the
 * nested offset (double quant; it changes the quant_state length), from a
 * weight whose dtype before quantization was `dtype` (F32/F16/BF16).
 * @return QT_OK, QT_ERR_ARG (not a quantization scheme, shape), QT_ERR_NOMEM. */
qt_status qt_bnb_layout_of(qt_scheme scheme, size_t block, bool double_quant, qt_dtype dtype,
                           size_t n_dims, const uint64_t *shape, float nested_offset,
                           qt_bnb_layout *out);

/* The part of `role` in L, or NULL. */
const qt_bnb_part *qt_bnb_layout_part(const qt_bnb_layout *L, qt_bnb_role role);

/* The key suffix of a part (for the reader): role QT_BNB_STATE needs the
 * scheme (NF4, FP4 or Q8); other roles ignore it. */
const char *qt_bnb_suffix(qt_bnb_role role, qt_scheme scheme);

/* Whether name ends with a companion suffix (any role but CODES): a stored
 * tensor that belongs to a quantized weight, not a weight of its own. */
bool qt_bnb_is_companion(const char *name);

/* The bytes of the constant parts (QUANT_MAP, NESTED_MAP, STATE,
 * WEIGHT_FORMAT) into buf (p->nbytes bytes). @return QT_OK, QT_ERR_ARG
 * (not a constant part), QT_ERR_NOMEM. */
qt_status qt_bnb_constant_part(const qt_bnb_layout *L, const qt_bnb_part *p, qt_scheme scheme,
                               void *buf);

/* Options written into config.json's quantization_config. */
typedef struct qt_bnb_config {
    bool load_in_4bit; /* false: LLM.int8 (load_in_8bit) */
    const char *quant_type;    /* "nf4" / "fp4" (4-bit only) */
    bool double_quant;
    const char *compute_dtype; /* "bfloat16", "float16", "float32" */
    const char *const *skip_modules; /* every unquantized Linear; may be NULL */
    size_t n_skip;
    const char *qtool_scheme; /* non-NULL: qtool's own layout (q8): writes
                                 {"quant_method": "qtool", "scheme": .., "blocksize": ..} */
    int64_t qtool_block;
    bool plain;               /* no quantization: drop any quantization_config
                                 and only set the dtype (dequant, dtype conversion) */
} qt_bnb_config;

/* Rewrites config.json text (src[0..n), from file `what`) as transformers
 * would save it: json.dumps(indent=2, sort_keys=True) with
 * quantization_config added and torch_dtype set to compute_dtype; extra
 * string pairs (qtool provenance) may be NULL. The result is NUL-terminated
 * in *out (caller frees with qt_free).
 * @return QT_OK, QT_ERR_FORMAT (bad JSON, already quantized), QT_ERR_NOMEM. */
qt_status qt_bnb_config_rewrite(const char *src, size_t n, const char *what,
                                const qt_bnb_config *cfg, char **out, size_t *out_len,
                                char *errmsg);

/* The quantization_config options of a run quantizing with scheme
 * (NF4/FP4: 4-bit; INT8: LLM.int8; Q8: qtool's own; any other: plain),
 * block (Q8) and double_quant (4-bit). Skip modules stay unset. */
void qt_bnb_config_for(qt_scheme scheme, size_t block, bool double_quant,
                       const char *compute_dtype, qt_bnb_config *cfg);

#endif /* QT_FORMATS_BNB_H */
