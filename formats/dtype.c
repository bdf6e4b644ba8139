/* formats/dtype.c: the safetensors dtype table. */
#include "formats/dtype.h"

#include <string.h>

static const struct {
    const char *name;
    unsigned char bits;
    unsigned char rank;     /* bnb-format.md 4.6, 0 = lowest */
    unsigned char readable; /* qt_st_tensor_to_f32 converts it */
} dtypes[QT_DTYPE_COUNT] = {
    [QT_DTYPE_BOOL] = {"BOOL", 8, 0, 1},
    [QT_DTYPE_U8] = {"U8", 8, 4, 1},
    [QT_DTYPE_I8] = {"I8", 8, 5, 1},
    [QT_DTYPE_I16] = {"I16", 16, 11, 1},
    [QT_DTYPE_U16] = {"U16", 16, 12, 1},
    [QT_DTYPE_F16] = {"F16", 16, 13, 1},
    [QT_DTYPE_BF16] = {"BF16", 16, 14, 1},
    [QT_DTYPE_I32] = {"I32", 32, 15, 1},
    [QT_DTYPE_U32] = {"U32", 32, 16, 1},
    [QT_DTYPE_F32] = {"F32", 32, 17, 1},
    [QT_DTYPE_F64] = {"F64", 64, 19, 1},
    [QT_DTYPE_I64] = {"I64", 64, 20, 1},
    [QT_DTYPE_U64] = {"U64", 64, 21, 1},
    [QT_DTYPE_F8_E5M2] = {"F8_E5M2", 8, 6, 0},
    [QT_DTYPE_F8_E4M3] = {"F8_E4M3", 8, 7, 0},
    [QT_DTYPE_F8_E8M0] = {"F8_E8M0", 8, 8, 0},
    [QT_DTYPE_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", 8, 9, 0},
    [QT_DTYPE_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", 8, 10, 0},
    [QT_DTYPE_F4] = {"F4", 4, 1, 0},
    [QT_DTYPE_F6_E2M3] = {"F6_E2M3", 6, 2, 0},
    [QT_DTYPE_F6_E3M2] = {"F6_E3M2", 6, 3, 0},
    [QT_DTYPE_C64] = {"C64", 64, 18, 0},
};

static bool valid(qt_dtype d)
{
    return (int)d >= 0 && d < QT_DTYPE_COUNT;
}

const char *qt_dtype_name(qt_dtype dtype)
{
    return valid(dtype) ? dtypes[dtype].name : "?";
}

qt_status qt_dtype_parse(const char *s, qt_dtype *out)
{
    for (int i = 0; i < QT_DTYPE_COUNT; i++) {
        if (strcmp(s, dtypes[i].name) == 0) {
            *out = (qt_dtype)i;
            return QT_OK;
        }
    }
    return QT_ERR_FORMAT;
}

size_t qt_dtype_bits(qt_dtype dtype)
{
    return valid(dtype) ? dtypes[dtype].bits : 0;
}

bool qt_dtype_is_readable(qt_dtype dtype)
{
    return valid(dtype) && dtypes[dtype].readable;
}

int qt_dtype_rank(qt_dtype dtype)
{
    return valid(dtype) ? dtypes[dtype].rank : -1;
}

const char *qt_dtype_torch_name(qt_dtype d)
{
    return d == QT_DTYPE_BF16 ? "bfloat16" : d == QT_DTYPE_F16 ? "float16" : "float32";
}
