/* quant/scan.c: the blockwise absmax scan of a source tensor (the convert
 * prepass: NaN / Inf policy and the double-quantization offset without
 * quantizing). Largest |x| of a block as the bit pattern with the sign
 * cleared: for every IEEE format the magnitude order of non-NaN values is
 * the integer order of these bits, and NaN / Inf lie at or above the
 * all-ones exponent (0x7f80 bf16, 0x7c00 fp16, 0x7f800000 fp32). Loads go
 * through memcpy: mapped tensor data may be unaligned. Fixed-length inner
 * loops of 32 so that the compiler vectorizes them: there is no
 * hand-written SIMD twin (the scan runs at memory bandwidth); the OpenMP
 * driver is qt_absmax_scan in driver.c. */
#include <string.h>

#include "common/half.h"
#include "quant/quant.h"
#include "quant/quant_internal.h"

#define SCAN_W 32

static uint32_t scan_max16(const unsigned char *p, size_t n)
{
    uint16_t m[SCAN_W] = {0};
    size_t i = 0;
    for (; i + SCAN_W <= n; i += SCAN_W) {
        uint16_t v[SCAN_W];
        memcpy(v, p + 2 * i, sizeof v);
        for (int k = 0; k < SCAN_W; k++) {
            uint16_t a = v[k] & 0x7fff;
            m[k] = a > m[k] ? a : m[k];
        }
    }
    for (int w = SCAN_W / 2; w >= 1; w /= 2) /* tree reduction: vectorizes down to 8 lanes */
        for (int k = 0; k < w; k++) m[k] = m[k + w] > m[k] ? m[k + w] : m[k];
    uint16_t r = m[0];
    for (; i < n; i++) {
        uint16_t a;
        memcpy(&a, p + 2 * i, 2);
        a &= 0x7fff;
        r = a > r ? a : r;
    }
    return r;
}

static uint32_t scan_max32(const unsigned char *p, size_t n)
{
    uint32_t m[SCAN_W / 2] = {0};
    size_t i = 0;
    for (; i + SCAN_W / 2 <= n; i += SCAN_W / 2) {
        uint32_t v[SCAN_W / 2];
        memcpy(v, p + 4 * i, sizeof v);
        for (int k = 0; k < SCAN_W / 2; k++) {
            uint32_t a = v[k] & 0x7fffffffu;
            m[k] = a > m[k] ? a : m[k];
        }
    }
    for (int w = SCAN_W / 4; w >= 1; w /= 2)
        for (int k = 0; k < w; k++) m[k] = m[k + w] > m[k] ? m[k + w] : m[k];
    uint32_t r = m[0];
    for (; i < n; i++) {
        uint32_t a;
        memcpy(&a, p + 4 * i, 4);
        a &= 0x7fffffffu;
        r = a > r ? a : r;
    }
    return r;
}

static uint32_t inf_bits(qt_src_type t)
{
    return t == QT_SRC_F32 ? 0x7f800000u : t == QT_SRC_F16 ? 0x7c00u : 0x7f80u;
}

static float bits_to_float(qt_src_type t, uint32_t b)
{
    if (t == QT_SRC_F16) return qt_fp16_to_fp32((uint16_t)b);
    if (t == QT_SRC_BF16) b <<= 16;
    float f;
    memcpy(&f, &b, 4);
    return f;
}

bool qt_absmax_blocks_ref(qt_src_type t, const void *src, size_t n, size_t block, size_t b0,
                          size_t b1, float *absmax)
{
    const size_t es = qt_src_size(t);
    const uint32_t inf = inf_bits(t);
    bool bad = false;
    for (size_t b = b0; b < b1; b++) {
        size_t e0 = b * block, len = n - e0 < block ? n - e0 : block;
        const unsigned char *p = (const unsigned char *)src + e0 * es;
        uint32_t m = es == 2 ? scan_max16(p, len) : scan_max32(p, len);
        bad |= m >= inf;
        if (absmax) absmax[b] = bits_to_float(t, m);
    }
    return bad;
}
