/*
 * formats/dtype.h: the element types of safetensors files, by their
 * safetensors spelling ("F32", "BF16", "F8_E4M3", ...).
 *
 * What it does: names, parsing, bit sizes, which types qtool can read as
 * values (qt_dtype_is_readable), and the "rank" order that the reference
 * safetensors writer (and so transformers) uses to order tensors in a file
 * (specs/bnb-format.md 4.6: low to high BOOL, F4, F6_E2M3, F6_E3M2, U8, I8,
 * F8_E5M2, F8_E4M3, F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ, I16, U16, F16, BF16,
 * I32, U32, F32, C64, F64, I64, U64).
 *
 * What it does not do: convert values (safetensors.h does that for the
 * readable types; common/half.h holds the fp16/bf16 definitions).
 * Pure tables: thread-safe, no allocation.
 */
#ifndef QT_FORMATS_DTYPE_H
#define QT_FORMATS_DTYPE_H

#include <stdbool.h>
#include <stddef.h>

#include "common/common.h"

typedef enum qt_dtype {
    QT_DTYPE_BOOL,
    QT_DTYPE_U8,
    QT_DTYPE_I8,
    QT_DTYPE_I16,
    QT_DTYPE_U16,
    QT_DTYPE_F16,
    QT_DTYPE_BF16,
    QT_DTYPE_I32,
    QT_DTYPE_U32,
    QT_DTYPE_F32,
    QT_DTYPE_F64,
    QT_DTYPE_I64,
    QT_DTYPE_U64,
    QT_DTYPE_F8_E5M2,
    QT_DTYPE_F8_E4M3,
    QT_DTYPE_F8_E8M0,
    QT_DTYPE_F8_E4M3FNUZ,
    QT_DTYPE_F8_E5M2FNUZ,
    QT_DTYPE_F4,
    QT_DTYPE_F6_E2M3,
    QT_DTYPE_F6_E3M2,
    QT_DTYPE_C64,
    QT_DTYPE_COUNT
} qt_dtype;

/* The safetensors spelling of dtype ("F32", "BF16", "F8_E4M3", ...), or
 * "?" for a value outside [0, QT_DTYPE_COUNT). Never NULL; static storage. */
const char *qt_dtype_name(qt_dtype dtype);

/* Parses the safetensors spelling s (exact, case-sensitive, NUL-terminated)
 * into *out. @return QT_OK, or QT_ERR_FORMAT for an unknown name (*out is
 * left unchanged). */
qt_status qt_dtype_parse(const char *s, qt_dtype *out);

/* Bits per element: 1-byte types 8, F16/BF16 16, F4 4, F6_* 6, C64 64 (two
 * F32), ... Returns 0 for a value outside the enum. */
size_t qt_dtype_bits(qt_dtype dtype);

/* True for the types qt_st_tensor_to_f32 converts to float: F32, F16, BF16,
 * F64, BOOL and the integer types U8, I8, I16, U16, I32, U32, I64, U64. */
bool qt_dtype_is_readable(qt_dtype dtype);

/* Position of dtype in the reference writer's rank order (0 = BOOL, the
 * lowest, ... 21 = U64, the highest); tensors are written rank descending,
 * then name ascending. Returns -1 for a value outside the enum. */
int qt_dtype_rank(qt_dtype dtype);

/* torch's name of a float dtype ("bfloat16", "float16", "float32"; any
 * other dtype gives "float32"), as config.json and quant_state spell it. */
const char *qt_dtype_torch_name(qt_dtype dtype);

#endif /* QT_FORMATS_DTYPE_H */
