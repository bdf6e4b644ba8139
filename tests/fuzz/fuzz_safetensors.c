/* tests/fuzz/fuzz_safetensors.c: libFuzzer harness for the safetensors
 * header parser; walks every tensor view it returns (OSS-Fuzz style) and
 * converts the first values of readable ones. */
#include <stddef.h>
#include <stdint.h>

#include "formats/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qt_st_reader *r = NULL;
    char err[QT_ERRMSG_SIZE];
    if (qt_st_reader_open_mem(data, size, "fuzz", &r, err) != QT_OK) return 0;
    volatile uint64_t sink = 0;
    for (size_t i = 0; i < qt_st_reader_n_tensors(r); i++) {
        const qt_st_tensor *t = qt_st_reader_tensor(r, i);
        const uint8_t *p = t->data;
        for (uint64_t k = 0; k < t->nbytes; k += 61) sink += p[k];
        if (t->nbytes) sink += p[t->nbytes - 1];
        if (qt_st_reader_find(r, t->name) != t) __builtin_trap();
        float buf[8];
        size_t cnt = t->n_elements < 8 ? (size_t)t->n_elements : 8;
        if (cnt && qt_dtype_is_readable(t->dtype)) qt_st_tensor_to_f32(r, t, 0, cnt, buf, err);
    }
    qt_st_reader_close(r);
    return 0;
}
