/* quant/int8.c: the scalar definition of LLM.int8 row-wise quantization
 * (spec §3.2): the row is cast to fp16 first (exact for fp16 input, round to
 * nearest even otherwise), SCB = max |w16| as float32,
 * scale = f32(f32(1/SCB) * 127), CB = round-half-even(f32(w16 * scale)).
 * An all-zero row gives SCB 0 and CB 0 (0 * inf = NaN -> 0); NaN -> 0. */
#include "quant/quant.h"

#include "quant/quant_internal.h"

static float to_half_value(qt_src_type t, const void *src, size_t i)
{
    if (t == QT_SRC_F16) return qt_ld(t, src, i);
    return qt_fp16_to_fp32(qt_fp32_to_fp16(qt_ld(t, src, i)));
}

void qt_int8_quant_row_ref(qt_src_type t, const void *src, size_t n_cols, int8_t *cb, float *scb)
{
    float m = 0.0f;
    for (size_t i = 0; i < n_cols; i++) m = qt_absmax_step(m, to_half_value(t, src, i));
    *scb = m;
    float inv = 1.0f / m;
    float scale = inv * 127.0f;
    for (size_t i = 0; i < n_cols; i++) {
        float v = to_half_value(t, src, i) * scale;
        if (v != v) {
            cb[i] = 0;
            continue;
        }
        v = nearbyintf(v); /* default rounding mode: nearest, ties to even */
        if (v > 127.0f) v = 127.0f;
        if (v < -127.0f) v = -127.0f;
        cb[i] = (int8_t)v;
    }
}
