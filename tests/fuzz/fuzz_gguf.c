/* tests/fuzz/fuzz_gguf.c: libFuzzer harness for the GGUF reader; formats
 * every key and touches every tensor's bytes. */
#include <stddef.h>
#include <stdint.h>

#include "formats/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qt_gguf *g = NULL;
    char err[QT_ERRMSG_SIZE], buf[256];
    if (qt_gguf_open_mem(data, size, "fuzz", &g, NULL, err) != QT_OK) return 0;
    for (size_t i = 0; i < qt_gguf_n_kv(g); i++) qt_gguf_kv_format(g, i, buf, sizeof buf);
    volatile uint64_t sink = 0;
    for (size_t t = 0; t < qt_gguf_n_tensors(g); t++) {
        const uint8_t *p = qt_gguf_tensor_data(g, t);
        size_t nb = qt_gguf_tensor_nbytes(g, t);
        for (size_t k = 0; k < nb; k += 61) sink += p[k];
        float f[4];
        if (qt_gguf_tensor_n_elements(g, t) >= 4) qt_gguf_tensor_to_f32(g, t, 0, 4, f, err);
    }
    qt_gguf_close(g);
    return 0;
}
