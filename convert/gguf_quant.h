/*
 * convert/gguf_quant.h: f32 rows -> the bytes of one ggml tensor type, by
 * dispatching to the kernels (quant/, common/half): F32, F16, BF16 (round to
 * nearest even, as ggml), Q8_0 (qtool's q8 at block 32 = ggml's reference
 * quantizer). Types whose quantizer this build lacks give QT_ERR_UNSUPPORTED
 * naming the type. Output bytes do not depend on threads or ISA.
 */
#ifndef QT_CONVERT_GGUF_QUANT_H
#define QT_CONVERT_GGUF_QUANT_H

#include <stdbool.h>
#include <stddef.h>

#include "common/common.h"
#include "formats/gguf.h"
#include "quant/quant.h"

/* Bytes of one row of ne0 elements of type t (ne0 a multiple of its block). */
size_t qt_gguf_row_bytes(qt_ggml_type t, size_t ne0);

/* Whether this build can write type t. */
bool qt_gguf_can_quantize(qt_ggml_type t);

/* The qtool scheme storing ggml block type t (the scheme table's gguf_type
 * column: Q8_0 -> q8 at block 32, Q4_0 -> q4_0, ...), QT_SCHEME_COUNT for
 * plain types and types without a scheme. */
qt_scheme qt_gguf_block_scheme(qt_ggml_type t);

/* src (n_rows, ne0) f32 -> dst (n_rows * qt_gguf_row_bytes(t, ne0) bytes).
 * @return QT_OK, QT_ERR_UNSUPPORTED (no quantizer for t). */
qt_status qt_gguf_quantize_rows(qt_ggml_type t, const float *src, size_t n_rows, size_t ne0,
                                void *dst, char *errmsg);

#endif /* QT_CONVERT_GGUF_QUANT_H */
