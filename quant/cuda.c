/* quant/cuda.c: the arithmetic of bitsandbytes' CUDA path that differs from
 * correctly rounded CPU arithmetic (`convert --match cuda`; docs/FORMATS.md
 * says which bytes it reproduces):
 *
 *   - the GPU's fast-math reciprocal (SASS MUFU.RCP, PTX rcp.approx.ftz.f32,
 *     what `1.0f / x` and `__fdividef` compile to under --use_fast_math):
 *     the correctly rounded 1/x moved by d in {-1, 0, +1} units in the last
 *     place, d looked up by the mantissa of x in the measured table
 *     (../shared/data/cuda/README.md; the exponent only scales the result);
 *     subnormal inputs count as zero and subnormal results flush to zero;
 *   - torch's CUDA float32 mean (the double-quantization offset): the exact
 *     order of additions of its reduction kernel for a 1-D contiguous input.
 *
 * Pure computation: the table arrives as memory (formats/cuda_rcp.c reads
 * and checks the file). */
#include "quant/quant.h"

#include <math.h>

#include "quant/quant_internal.h"

float qt_cuda_rcp(const uint8_t *table, float x)
{
    const uint32_t b = qt_f32_bits(x), sign = b & 0x80000000u, e = (b >> 23) & 0xffu;
    /* zero and subnormal inputs are zero (ftz): +-inf */
    if (e == 0) return qt_f32_from_bits(sign | 0x7f800000u);
    /* NaN stays NaN, +-inf gives +-0 */
    if (e == 0xff) return (b & 0x7fffffu) ? x : qt_f32_from_bits(sign);
    const uint32_t rb = qt_f32_bits(1.0f / x);
    /* a subnormal reciprocal (|x| > 2^126) is flushed */
    if ((rb & 0x7f800000u) == 0) return qt_f32_from_bits(sign);
    const uint32_t m = b & 0x7fffffu;
    const int d = (int)((table[m >> 2] >> (2 * (m & 3))) & 3u) - 1;
    return qt_f32_from_bits(rb + (uint32_t)d); /* d ulp on the magnitude */
}

/* ---- torch's CUDA float32 mean -------------------------------------------
 *
 * What torch (aten/src/ATen/native/cuda/Reduce.cuh, ReduceMomentKernel.cu)
 * does for `t.mean()` of a contiguous 1-D float32 CUDA
 * tensor of n values, and what this code replays:
 *   - MeanOps: float accumulator, combine = a + b, the result = sum * factor
 *     with factor = (float)1 / (float)n;
 *   - launch: one output, so the block is block_width x 1 threads with
 *     block_width = the largest power of two <= dim0, at most 512, where
 *     dim0 = n, or n / 4 when the input is vectorized (n > 128: loads of 4
 *     floats, input_vec_size = vt0 = 4);
 *   - when each thread would see >= 256 values (values_per_thread =
 *     ceil(n / block_width)), the input is split over C blocks:
 *     C = max(min(G, ceil(vpt / 16)), ceil(vpt / 256)), G = SMs x (2048 /
 *     threads per block) (528 on H100 / H200 SXM, 132 SMs: it only binds
 *     beyond ~276M values), and a last block adds the C partial sums;
 *   - per thread: 4 accumulators, each a left-to-right chain from +0
 *     (vectorized: accumulator i takes element i of every 4-vector the
 *     thread loads, vectors lane + c * bw, stepping bw * C; the n % 4 tail
 *     elements go to accumulator 0 of lanes 0.. of block 0; otherwise
 *     accumulator i takes element idx + i * bw of each group of 4 strided
 *     loads, the tail in accumulator order), then ((a0 + a1) + a2) + a3;
 *   - per block: a halving tree over the lanes (shared memory down to 32
 *     lanes, then warp shuffles with offsets 16, 8, .., 1):
 *     v[i] += v[i + h] for i < h, h = lanes / 2 .. 1;
 *   - across blocks: lane t of the last block takes +0 + partial t (+
 *     partial t + bw ..), then the same halving tree.
 * The descending warp order is torch's since pytorch PR #164790 (Oct 2025,
 * torch 2.10 on); older torch shuffles with offsets 1, 2, .., 16. Checked
 * against every double-quantized tensor of the GPU goldens (n = 32, 64,
 * 172: single block, vectorized and not; the old warp order misses 12 of
 * the 140); the multi-block split (n >= 131072) follows the source,
 * unmeasured. */

#define TORCH_MAX_THREADS 512 /* threads per block of a float reduction */
#define TORCH_VEC 4           /* input_vec_size = vt0 */
#define TORCH_VEC_FROM 128    /* inputs are vectorized when dim0 > 128 */
#define TORCH_TARGET_GRID 528 /* H100 / H200 SXM: 132 SMs x 4 blocks of 512 */
#define TORCH_SPLIT_VPT 256   /* max_values_per_thread */
#define TORCH_MIN_VPT 16      /* min_values_per_thread */

/* The largest power of two <= n (at least 1). */
static size_t last_pow2(size_t n)
{
    size_t p = 1;
    while (p * 2 <= n) p *= 2;
    return p;
}

/* v[0] after the halving tree over v[0..lanes) (lanes a power of two). */
static float halving_tree(float *v, size_t lanes)
{
    for (size_t h = lanes / 2; h >= 1; h /= 2)
        for (size_t i = 0; i < h; i++) v[i] += v[i + h];
    return v[0];
}

/* One thread's value: its 4 accumulator chains from +0, combined in order.
 * tail_at < n: the index of the tail element this thread adds to
 * accumulator 0 after its vector loads (vectorized input only). */
static float thread_value(const float *v, size_t n, bool vec, size_t idx, size_t stride,
                          size_t tail_at)
{
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (vec) {
        for (; idx * TORCH_VEC + TORCH_VEC - 1 < n; idx += stride)
            for (int i = 0; i < TORCH_VEC; i++) acc[i] += v[idx * TORCH_VEC + i];
        if (tail_at < n) acc[0] += v[tail_at];
    } else {
        for (; idx + 3 * stride < n; idx += 4 * stride)
            for (int i = 0; i < 4; i++) acc[i] += v[idx + (size_t)i * stride];
        for (int i = 0; i < 4 && idx < n; i++, idx += stride) acc[i] += v[idx];
    }
    return ((acc[0] + acc[1]) + acc[2]) + acc[3];
}

qt_status qt_dq_mean_cuda(const float *v, size_t n, float *mean)
{
    if (!v || !mean || n == 0 || n > INT32_MAX) return QT_ERR_ARG;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(v[i])) return QT_ERR_NUMERIC;
        if (qt_f32_bits(v[i]) > 0x80000000u) return QT_ERR_ARG; /* absmax is never negative */
    }
    /* launch configuration */
    const bool vec = n > TORCH_VEC_FROM;
    const size_t dim0 = vec ? n / TORCH_VEC : n;
    const size_t bw = dim0 >= TORCH_MAX_THREADS ? TORCH_MAX_THREADS : last_pow2(dim0);
    const size_t vpt = qt_n_blocks(n, bw);
    size_t ctas = 1;
    if (vpt >= TORCH_SPLIT_VPT) {
        size_t c2 = qt_n_blocks(vpt, TORCH_MIN_VPT), c3 = qt_n_blocks(vpt, TORCH_SPLIT_VPT);
        ctas = c2 < TORCH_TARGET_GRID ? c2 : TORCH_TARGET_GRID;
        if (c3 > ctas) ctas = c3;
    }
    const size_t stride = bw * ctas, tail = vec ? n % TORCH_VEC : 0;
    /* per block: its lanes' values, then the halving tree; block c's
     * partial goes to lane c % bw of the last block, in block order */
    float lanes[TORCH_MAX_THREADS], last[TORCH_MAX_THREADS];
    for (size_t l = 0; l < bw; l++) last[l] = 0.0f;
    for (size_t c = 0; c < ctas; c++) {
        /* the n % 4 tail elements: lanes 0.. of block 0 */
        for (size_t l = 0; l < bw; l++)
            lanes[l] = thread_value(v, n, vec, l + c * bw, stride,
                                    c == 0 && l < tail ? n - tail + l : SIZE_MAX);
        float partial = halving_tree(lanes, bw);
        if (ctas == 1) {
            *mean = partial * (1.0f / (float)n);
            return QT_OK;
        }
        last[c % bw] += partial;
    }
    *mean = halving_tree(last, bw) * (1.0f / (float)n);
    return QT_OK;
}
