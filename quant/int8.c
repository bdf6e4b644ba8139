/* quant/int8.c: the scalar definition of LLM.int8 row-wise quantization
 * (spec §3.2): the row is cast to fp16 first (exact for fp16 input, round to
 * nearest even otherwise), SCB = max |w16| as float32,
 * scale = f32(r * 127) with r = 1/SCB (correctly rounded, or the GPU's),
 * CB = round-half-even(f32(w16 * scale)).
 * An all-zero row gives SCB 0 and CB 0 (0 * inf = NaN -> 0); NaN -> 0. */
#include "quant/quant.h"

#include "quant/quant_internal.h"

/* rcp NULL: scale = f32(f32(1/SCB) * 127) (bitsandbytes' CPU path); the
 * GPU table: __fdividef(127, SCB) = f32(127 * MUFU.RCP(SCB)). The same
 * multiply either way; only the reciprocal differs (a product below 2^-126,
 * flushed on the GPU, rounds to 0 anyway). */
void qt_int8_quant_row_ref(qt_src_type t, const void *src, size_t n_cols, const uint8_t *rcp,
                           int8_t *cb, float *scb)
{
    float m = 0.0f;
    for (size_t i = 0; i < n_cols; i++) m = qt_absmax_step(m, qt_half_value(t, src, i));
    *scb = m;
    float scale = qt_recip(rcp, m) * 127.0f;
    for (size_t i = 0; i < n_cols; i++) cb[i] = qt_int8_code(qt_half_value(t, src, i) * scale);
}
