/* quant/nf4.c: the scalar definition of the bitsandbytes 4-bit formats
 * (NF4 and FP4; specs/bnb-format.md §1): blockwise absmax, one reciprocal
 * per block (correctly rounded, or the GPU's: quant/cuda.c), f32(x * r), the
 * threshold rules of the CUDA kernels, packing (first element in the high
 * nibble) and dequantization (§5). */
#include "quant/quant.h"

#include "quant/quant_internal.h"

/* NF4: the number of thresholds strictly below xn (the CUDA tree, §1.4);
 * NaN compares false everywhere and gives 0. */
uint8_t qt_nf4_code(float xn)
{
    uint8_t c = 0;
    for (int i = 0; i < 15; i++) c += xn > qt_nf4_thresholds[i];
    return c;
}

/* FP4 (§1.5): sign 8 when xn < 0 (not for -0.0 or NaN), then the CUDA tree
 *   a > A ? (a > B ? (a > C ? 3 : 2) : (a > D ? 5 : 4))
 *         : (a > E ? (a > F ? 7 : 6) : (a > G ? 1 : 0))
 * written out literally. */
uint8_t qt_fp4_code(float xn)
{
    const float G = qt_fp4_thresholds[0], E = qt_fp4_thresholds[1], F = qt_fp4_thresholds[2],
                A = qt_fp4_thresholds[3], D = qt_fp4_thresholds[4], B = qt_fp4_thresholds[5],
                C = qt_fp4_thresholds[6];
    uint8_t sign = xn < 0.0f ? 8 : 0;
    float a = fabsf(xn);
    uint8_t m = a > A ? (a > B ? (a > C ? 3 : 2) : (a > D ? 5 : 4))
                      : (a > E ? (a > F ? 7 : 6) : (a > G ? 1 : 0));
    return (uint8_t)(sign + m);
}

/* rcp NULL: the correctly rounded CPU definition. The GPU table: the CUDA
 * kernel under --use_fast_math, i.e. subnormal inputs count as zero (in the
 * absmax too), r = qt_cuda_rcp(absmax), and a subnormal x * r is zero. */
void qt_quant4_ref(bool fp4, qt_src_type t, const void *src, size_t n, size_t block,
                   const uint8_t *rcp, uint8_t *codes, float *absmax)
{
    size_t nb = qt_n_blocks(n, block);
    for (size_t j = 0; j < nb; j++) {
        size_t b0 = j * block, len = n - b0 < block ? n - b0 : block;
        float m = 0.0f;
        for (size_t i = 0; i < len; i++) {
            float x = qt_ld(t, src, b0 + i);
            m = qt_absmax_step(m, rcp ? qt_ftz(x) : x);
        }
        absmax[j] = m;
        float r = qt_recip(rcp, m); /* +inf for an all-zero block: 0 * inf = NaN -> code 0 */
        for (size_t i = 0; i < len; i += 2) {
            float x0 = qt_ld(t, src, b0 + i);
            /* n odd: the last low nibble codes a padded 0.0 scaled by r */
            float x1 = i + 1 < len ? qt_ld(t, src, b0 + i + 1) : 0.0f;
            float y0 = x0 * r, y1 = x1 * r;
            if (rcp) {
                y0 = qt_ftz(qt_ftz(x0) * r);
                y1 = qt_ftz(qt_ftz(x1) * r);
            }
            uint8_t c0 = fp4 ? qt_fp4_code(y0) : qt_nf4_code(y0);
            uint8_t c1 = fp4 ? qt_fp4_code(y1) : qt_nf4_code(y1);
            codes[(b0 + i) / 2] = (uint8_t)(c0 << 4 | c1);
        }
    }
}

void qt_dequant4_ref(const uint8_t *codes, size_t i0, size_t len, const float map[16],
                     float scale, float *dst)
{
    for (size_t k = 0; k < len; k++) {
        size_t i = i0 + k;
        uint8_t b = codes[i >> 1];
        uint8_t c = (i & 1) ? (b & 15) : (b >> 4);
        dst[k] = map[c] * scale;
    }
}
