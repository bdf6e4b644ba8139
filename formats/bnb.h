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
 * Pure functions on memory; thread-safe.
 */
#ifndef QT_FORMATS_BNB_H
#define QT_FORMATS_BNB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

#define QT_BNB_MAX_DIMS 8

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

#endif /* QT_FORMATS_BNB_H */
