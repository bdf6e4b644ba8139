/* quant/q8.c: scalar definitions of the two 8-bit blockwise formats:
 *   q8              per-block symmetric int8, ggml's quantize_row_q8_0_ref
 *                   arithmetic (d = amax/127, id = d ? 1/d : 0,
 *                   q = roundf(x * id)); block 32 = GGUF Q8_0 bytes.
 *   int8-blockwise  bitsandbytes quantize_blockwise with the dynamic map and
 *                   the CUDA dQuantize<0> binary search (spec §3.1).
 * Non-finite inputs: NaN is ignored by the absmax and quantizes to 0;
 * results outside [-127, 127] (only reachable through Inf / overflowing
 * 1/d) saturate. */
#include "quant/quant.h"

#include "quant/quant_internal.h"

int8_t qt_q8_round(float v)
{
    if (v != v) return 0;
    float r = roundf(v);
    if (r > 127.0f) r = 127.0f;
    if (r < -127.0f) r = -127.0f;
    return (int8_t)r;
}

void qt_q8_quant_ref(qt_src_type t, const void *src, size_t n, size_t block, void *dst)
{
    size_t nb = qt_n_blocks(n, block), bb = qt_q8_block_bytes(block);
    unsigned char *out = dst;
    for (size_t j = 0; j < nb; j++) {
        size_t b0 = j * block, len = n - b0 < block ? n - b0 : block;
        unsigned char *blk = out + j * bb;
        float amax = 0.0f;
        for (size_t i = 0; i < len; i++) amax = qt_absmax_step(amax, qt_ld(t, src, b0 + i));
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        int8_t *qs;
        if (block == 32) {
            uint16_t h = qt_fp32_to_fp16(d);
            memcpy(blk, &h, 2);
            qs = (int8_t *)(blk + 2);
        } else {
            memcpy(blk, &d, 4);
            qs = (int8_t *)(blk + 4);
        }
        for (size_t i = 0; i < len; i++) qs[i] = qt_q8_round(qt_ld(t, src, b0 + i) * id);
        for (size_t i = len; i < block; i++) qs[i] = 0;
    }
}

/* dQuantize<0> (spec §3.1). The CUDA search keeps (lo, lower, up, upper)
 * while it walks 7 steps of 64..1 from pivot 127; it always ends on an even
 * pivot q in [0, 254] with lo = q - 1 (or the initial 0) on the greater side
 * and up = q + 1 on the other, so the walk reduces to a branch-free index
 * computation and the final midpoint test against the neighbour on xn's
 * side. tests/unit/test_quant.c checks this form against the literal CUDA
 * search on every midpoint, +-1 ulp, NaN, +-Inf and random values. */
uint8_t qt_dq8_code(const float map[256], float xn)
{
    /* integer arithmetic only (no branches): the comparisons are data
     * dependent, and branch-free code lets elements overlap */
    int q = 127;
    for (int s = 6; s >= 0; s--) {
        int gt = xn > map[q];
        q = q - (1 << s) + (gt << (s + 1));
    }
    float val = map[q];
    int g = xn > val;
    int ni = q + 2 * g - 1; /* the neighbour on xn's side: q + 1 <= 255 or q - 1 */
    ni = ni < 0 ? 0 : ni;   /* q == 0: lower = map[0], lo = 0 */
    float mid = map[ni] + val;
    mid = mid * 0.5f;
    int gt2 = xn > mid, lt2 = xn < mid;
    int mv = (g & gt2) | ((1 - g) & lt2);
    return (uint8_t)(q + mv * (ni - q));
}

/* rcp as in qt_quant4_ref: NULL = CPU, the GPU table = the CUDA kernel
 * (subnormal inputs and products are zero, r = qt_cuda_rcp(absmax)). */
void qt_blockwise8_quant_ref(qt_src_type t, const void *src, size_t n, size_t block,
                             const float map[256], const uint8_t *rcp, uint8_t *codes,
                             float *absmax)
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
        float r = qt_recip(rcp, m);
        for (size_t i = 0; i < len; i++) {
            float x = qt_ld(t, src, b0 + i);
            codes[b0 + i] = qt_dq8_code(map, rcp ? qt_ftz(qt_ftz(x) * r) : x * r);
        }
    }
}
