/* quant/dq.c: double ("nested") quantization of the 4-bit absmax (spec §2):
 * offset = the correctly rounded float32 mean of the absmax values, the
 * centered values f32(absmax - offset) quantized with the dynamic map in
 * blocks of 256 (the dQuantize<0> search of §3.1), and its inverse (§5).
 *
 * The mean is exact: every float32 is an integer multiple of 2^-149, so the
 * sum is accumulated exactly in a fixed-point integer of 32-bit limbs, then
 * divided by n with enough extra bits and rounded once to float32 (nearest
 * even, subnormals included). The result does not depend on the order of
 * the values, hence not on threads. */
#include "quant/quant.h"

#include <math.h>

#include "quant/quant_internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* 2 low limbs of fraction for the division, 277 bits of value, 32 bits of
 * count: 13 limbs of 32 bits hold everything. */
#define MEAN_LIMBS 13
#define MEAN_FRAC_LIMBS 2

qt_status qt_dq_mean(const float *v, size_t n, float *mean)
{
    if (!v || !mean || n == 0 || n > UINT32_MAX) return QT_ERR_ARG;
    uint64_t acc[MEAN_LIMBS] = {0}; /* limbs of 32 bits, carries deferred */
    for (size_t i = 0; i < n; i++) {
        uint32_t b = qt_f32_bits(v[i]);
        uint32_t e = (b >> 23) & 0xff, m = b & 0x7fffff;
        if (e == 0xff) return QT_ERR_NUMERIC;
        if (b >> 31 && (e | m)) return QT_ERR_ARG; /* absmax is never negative */
        unsigned shift = e ? e - 1 : 0; /* value = m * 2^(shift - 149) */
        uint64_t mant = e ? (m | 0x800000u) : m;
        unsigned limb = MEAN_FRAC_LIMBS + shift / 32, off = shift % 32;
        uint64_t part = mant << off; /* < 2^56 */
        acc[limb] += part & 0xffffffffu;
        acc[limb + 1] += part >> 32;
        if ((i & 0xffff) == 0xffff) /* normalize before the 64-bit limbs could overflow */
            for (int k = 0; k + 1 < MEAN_LIMBS; k++) {
                acc[k + 1] += acc[k] >> 32;
                acc[k] &= 0xffffffffu;
            }
    }
    for (int k = 0; k + 1 < MEAN_LIMBS; k++) {
        acc[k + 1] += acc[k] >> 32;
        acc[k] &= 0xffffffffu;
    }
    /* Q = floor(acc / n), value = Q * 2^(-149 - 64); rem != 0 is sticky. */
    uint32_t q[MEAN_LIMBS];
    uint64_t rem = 0;
    for (int k = MEAN_LIMBS - 1; k >= 0; k--) {
        uint64_t cur = rem << 32 | acc[k];
        q[k] = (uint32_t)(cur / n);
        rem = cur % n;
    }
    int top = -1; /* index of the highest set bit of Q */
    for (int k = MEAN_LIMBS - 1; k >= 0 && top < 0; k--)
        if (q[k]) top = k * 32 + 31 - __builtin_clz(q[k]);
    if (top < 0) { /* only when every value is zero (else Q >= 2^64 / n) */
        *mean = 0.0f;
        return QT_OK;
    }
    const int base = -149 - 32 * MEAN_FRAC_LIMBS; /* exponent of Q's bit 0 */
    int lsb = top + base - 23;                    /* exponent of the float's last bit */
    if (lsb < -149) lsb = -149;
    int drop = lsb - base; /* >= 64 */
    /* mantissa = Q >> drop, round bit, sticky */
    uint64_t mant = 0;
    for (int bit = top; bit >= drop; bit--) mant = mant << 1 | ((q[bit / 32] >> (bit % 32)) & 1);
    int round = (q[(drop - 1) / 32] >> ((drop - 1) % 32)) & 1;
    int sticky = rem != 0;
    for (int bit = drop - 2; bit >= 0 && !sticky; bit--) sticky = (q[bit / 32] >> (bit % 32)) & 1;
    if (round && (sticky || (mant & 1))) mant++;
    *mean = ldexpf((float)mant, lsb); /* mant <= 2^24: exact */
    return QT_OK;
}

qt_status qt_dq_quantize_with_offset(const float *absmax, size_t nb, float offset, uint8_t *codes,
                                     float *nested)
{
    if (!absmax || !codes || !nested || nb == 0) return QT_ERR_ARG;
    if (!isfinite(offset)) return QT_ERR_NUMERIC;
    size_t ng = qt_dq_n_nested(nb);
    const qt_kernels *k = qt_kernels_active(); /* bytes are the same on every ISA */
    ptrdiff_t g;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (ng > 4)
#endif
    for (g = 0; g < (ptrdiff_t)ng; g++) {
        float centered[QT_DQ_BLOCK];
        size_t b0 = (size_t)g * QT_DQ_BLOCK;
        size_t len = nb - b0 < QT_DQ_BLOCK ? nb - b0 : QT_DQ_BLOCK;
        for (size_t i = 0; i < len; i++) centered[i] = absmax[b0 + i] - offset;
        k->blockwise8_quant(QT_SRC_F32, centered, len, QT_DQ_BLOCK, qt_dynamic_map, codes + b0,
                            nested + g);
    }
    return QT_OK;
}

qt_status qt_dq_quantize(const float *absmax, size_t nb, uint8_t *codes, float *nested,
                         float *offset)
{
    if (!offset) return QT_ERR_ARG;
    qt_status st = qt_dq_mean(absmax, nb, offset);
    if (st != QT_OK) return st;
    return qt_dq_quantize_with_offset(absmax, nb, *offset, codes, nested);
}

void qt_dq_dequantize(const uint8_t *codes, size_t nb, const void *nested, float offset,
                      const float *map, float *absmax)
{
    if (!map) map = qt_dynamic_map;
    for (size_t j = 0; j < nb; j++) {
        float a = map[codes[j]] * qt_ldf(nested, j / QT_DQ_BLOCK);
        absmax[j] = a + offset;
    }
}
