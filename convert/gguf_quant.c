/* convert/gguf_quant.c: f32 rows -> ggml tensor bytes (gguf_quant.h). The
 * ggml type <-> qtool scheme correspondence is the scheme table's gguf_type
 * column (quant/scheme.c); the block kernels are quant/'s. */
#include "convert/gguf_quant.h"

#include <string.h>

#include "common/half.h"

size_t qt_gguf_row_bytes(qt_ggml_type t, size_t ne0)
{
    int64_t b = qt_ggml_blck_size(t);
    return b > 0 ? ne0 / (size_t)b * qt_ggml_type_size(t) : 0;
}

qt_scheme qt_gguf_block_scheme(qt_ggml_type t)
{
    for (size_t i = 0; i < qt_scheme_count(); i++) {
        const qt_scheme_info *si = qt_scheme_info_at(i);
        if (si->gguf_type == (int)t && si->block_bytes) return si->scheme;
    }
    return QT_SCHEME_COUNT;
}

bool qt_gguf_can_quantize(qt_ggml_type t)
{
    return t == QT_GGML_TYPE_F32 || t == QT_GGML_TYPE_F16 || t == QT_GGML_TYPE_BF16 ||
           qt_gguf_block_scheme(t) != QT_SCHEME_COUNT;
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
    default: break;
    }
    qt_scheme s = qt_gguf_block_scheme(t);
    if (s == QT_SCHEME_COUNT)
        return qt_set_err(errmsg, QT_ERR_UNSUPPORTED, "ggml type %s: this build has no "
                          "quantizer for it", qt_ggml_type_name(t) ? qt_ggml_type_name(t) : "?");
    /* the caller has already checked (or allowed) non-finite values */
    qt_status st = qt_blk_quantize(NULL, s, QT_SRC_F32, src, n_rows, ne0, true, dst, NULL);
    if (st != QT_OK)
        return qt_set_err(errmsg, st, "ggml type %s: quantizing %zu rows of %zu failed (%s)",
                          qt_ggml_type_name(t), n_rows, ne0, qt_status_str(st));
    return QT_OK;
}
