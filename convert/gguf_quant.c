/* convert/gguf_quant.c: f32 rows -> ggml tensor bytes (gguf_quant.h). */
#include "convert/gguf_quant.h"

#include <string.h>

#include "common/half.h"
#include "quant/quant.h"

size_t qt_gguf_row_bytes(qt_ggml_type t, size_t ne0)
{
    int64_t b = qt_ggml_blck_size(t);
    return b > 0 ? ne0 / (size_t)b * qt_ggml_type_size(t) : 0;
}

bool qt_gguf_can_quantize(qt_ggml_type t)
{
    return t == QT_GGML_TYPE_F32 || t == QT_GGML_TYPE_F16 || t == QT_GGML_TYPE_BF16 ||
           t == QT_GGML_TYPE_Q8_0;
}

qt_status qt_gguf_quantize_rows(qt_ggml_type t, const float *src, size_t n_rows, size_t ne0,
                                void *dst, char *errmsg)
{
    size_t n = n_rows * ne0;
    if (n == 0) return QT_OK;
    switch (t) {
    case QT_GGML_TYPE_F32: memcpy(dst, src, n * sizeof *src); return QT_OK;
    case QT_GGML_TYPE_F16: qt_fp32_to_fp16_row(src, dst, n); return QT_OK;
    case QT_GGML_TYPE_BF16: qt_fp32_to_bf16_row(src, dst, n); return QT_OK;
    case QT_GGML_TYPE_Q8_0: return qt_q8_quantize(NULL, QT_SRC_F32, src, n, 32, dst);
    default:
        return qt_set_err(errmsg, QT_ERR_UNSUPPORTED, "ggml type %s: this build has no "
                          "quantizer for it", qt_ggml_type_name(t) ? qt_ggml_type_name(t) : "?");
    }
}
