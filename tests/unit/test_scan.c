/* tests/unit/test_scan.c: qt_absmax_scan (the convert prepass) gives
 * exactly the block absmax the NF4 quantize kernels compute (spec §1:
 * absmax = max |x| of the block), for fp32 / fp16 / bf16 sources, partial
 * last blocks and unaligned data, and flags NaN and Inf. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/half.h"
#include "quant/quant.h"

#define N 4133 /* not a multiple of any block */

static void fill(qt_src_type t, unsigned char *dst, const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (t == QT_SRC_F32) memcpy(dst + 4 * i, &v[i], 4);
        else {
            uint16_t h = t == QT_SRC_F16 ? qt_fp32_to_fp16(v[i]) : qt_fp32_to_bf16(v[i]);
            memcpy(dst + 2 * i, &h, 2);
        }
    }
}

Test(scan, absmax_equals_the_quantize_kernels)
{
    static float v[N];
    static unsigned char raw[4 * N + 1], codes[N];
    static float want[N], got[N];
    srand(7);
    for (size_t i = 0; i < N; i++) v[i] = ((float)rand() / RAND_MAX - 0.5f) * (float)(1 + i % 97);
    const qt_src_type types[] = {QT_SRC_F32, QT_SRC_F16, QT_SRC_BF16};
    const size_t blocks[] = {32, 64, 256, 4096};
    for (size_t ti = 0; ti < 3; ti++)
        for (size_t bi = 0; bi < 4; bi++) {
            unsigned char *src = raw + 1; /* unaligned, as mapped tensor data may be */
            fill(types[ti], src, v, N);
            cr_assert(eq(int, qt_nf4_quantize(NULL, QT_SCHEME_NF4, types[ti], src, N, blocks[bi],
                                              codes, want),
                         QT_OK));
            bool bad = true;
            cr_assert(eq(int, qt_absmax_scan(types[ti], src, N, blocks[bi], got, &bad), QT_OK));
            cr_assert(not(bad));
            size_t nb = qt_n_blocks(N, blocks[bi]);
            cr_assert(memcmp(got, want, nb * sizeof(float)) == 0, "type %zu block %zu", ti,
                      blocks[bi]);
        }
}

Test(scan, flags_nan_and_inf)
{
    static float v[N];
    static unsigned char raw[4 * N];
    const qt_src_type types[] = {QT_SRC_F32, QT_SRC_F16, QT_SRC_BF16};
    const float odd[] = {NAN, INFINITY, -INFINITY};
    for (size_t ti = 0; ti < 3; ti++)
        for (size_t k = 0; k < 3; k++) {
            for (size_t i = 0; i < N; i++) v[i] = 0.5f;
            v[N - 1] = odd[k]; /* in the partial last block */
            fill(types[ti], raw, v, N);
            bool bad = false;
            cr_assert(eq(int, qt_absmax_scan(types[ti], raw, N, 64, NULL, &bad), QT_OK));
            cr_assert(bad, "type %zu value %zu", ti, k);
        }
    bool bad;
    cr_assert(eq(int, qt_absmax_scan(QT_SRC_F32, raw, 0, 64, NULL, &bad), QT_ERR_ARG));
}
