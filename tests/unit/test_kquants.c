/* tests/unit/test_kquants.c: the GGML block types (q4_0 .. q5_1, q8 = Q8_0,
 * q2_k .. q6_k) against ggml's reference arithmetic (docs/GGML_BLOCKS.md).
 *
 *  - sha256 of the bytes ggml's own reference code writes for 512 seeded
 *    values per type (how they were made: see that test);
 *  - golden bytes on hand-made blocks, worked out in the comments from the
 *    formulas (ties in the max, a negative extreme, all zeros, an fp16
 *    subnormal scale, values exactly at .5 after scaling, clamping);
 *  - every ISA bit-identical to _ref (quantized bytes, dequantized floats,
 *    dot products) on seeded gaussian rows plus adversarial rows;
 *  - quantize -> dequantize error within a bound derived from the bit
 *    width; dequantize and dot against a float64 reading of the layout;
 *  - the threaded driver: identical bytes for 1 and 4 threads, NaN/Inf
 *    refused with the first bad row named.
 * QT_SEED overrides the random seed. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "common/cpu.h"
#include "common/half.h"
#include "common/sha256.h"
#include "quant/quant.h"
#include "quant/quant_internal.h"
#include "testutil.h"

#ifdef _OPENMP
#include <omp.h>
#endif

static const unsigned long long DEFAULT_SEED = 0x6b717561ULL;

static const qt_scheme BLK[] = {QT_SCHEME_Q8,   QT_SCHEME_Q4_0, QT_SCHEME_Q4_1, QT_SCHEME_Q5_0,
                                QT_SCHEME_Q5_1, QT_SCHEME_Q2_K, QT_SCHEME_Q3_K, QT_SCHEME_Q4_K,
                                QT_SCHEME_Q5_K, QT_SCHEME_Q6_K};
#define N_BLK (sizeof BLK / sizeof BLK[0])

static const qt_blk_ops *ref_ops(qt_scheme s)
{
    return qt_blk_ops_for(QT_ISA_REF, s);
}

static void quant1(qt_scheme s, const float *x, size_t n, unsigned char *out)
{
    ref_ops(s)->quantize(x, out, n);
}

static uint16_t le16(const unsigned char *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

/* ---- scheme rows ------------------------------------------------------------ */

Test(kquants, scheme_rows)
{
    /* block elements, bytes, GGUF ggml_type (ggml-common.h, gguf constants) */
    struct {
        const char *name;
        size_t block, bytes;
        int gguf;
    } want[] = {{"q8", 32, 34, 8},     {"q4_0", 32, 18, 2},   {"q4_1", 32, 20, 3},
                {"q5_0", 32, 22, 6},   {"q5_1", 32, 24, 7},   {"q2_k", 256, 84, 10},
                {"q3_k", 256, 110, 11}, {"q4_k", 256, 144, 12}, {"q5_k", 256, 176, 13},
                {"q6_k", 256, 210, 14}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const qt_scheme_info *si = qt_scheme_find(want[i].name);
        cr_assert(not(eq(ptr, (void *)si, NULL)), "%s", want[i].name);
        cr_assert(eq(sz, si->default_block, want[i].block), "%s", want[i].name);
        cr_assert(eq(sz, si->block_bytes, want[i].bytes), "%s", want[i].name);
        cr_assert(eq(int, si->gguf_type, want[i].gguf), "%s", want[i].name);
        cr_assert(eq(dbl, si->bits_per_weight, want[i].bytes * 8.0 / want[i].block));
        cr_assert(eq(sz, qt_blk_row_bytes(si->scheme, 4 * want[i].block), 4 * want[i].bytes));
        cr_assert(eq(sz, qt_blk_row_bytes(si->scheme, want[i].block + 16), (size_t)0));
        cr_assert(not(eq(ptr, (void *)qt_blk_ops_active(si->scheme), NULL)));
    }
    cr_assert(eq(ptr, (void *)qt_blk_ops_active(QT_SCHEME_NF4), NULL));
    cr_assert(eq(sz, qt_blk_row_bytes(QT_SCHEME_NF4, 64), (size_t)0));
}

/* ---- golden bytes: legacy 32-blocks ------------------------------------------------ */

Test(kquants, golden_q4_0)
{
    float x[4 * 32] = {0};
    unsigned char b[4 * 18];
    /* block 0: x = j - 16. The extreme is -16 (j = 0, negative): d = -16/-8
     * = 2, id = 0.5; code = trunc(x/2 + 8.5) = trunc(j/2 + 0.5): j/2 for even
     * j, (j+1)/2 for odd j (x/2 = .5 exactly: rounds up), j = 31 gives 16,
     * clamped to 15. fp16(2) = 0x4000. */
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16);
    /* block 1: ties in the max: +4 at j = 3 and -4 at j = 10, the rest 1.
     * The first wins: max = +4, d = -0.5, id = -2. 4 -> trunc(0.5) = 0;
     * -4 -> trunc(16.5) = 16 -> 15; 1 -> trunc(6.5) = 6. fp16(-0.5) = 0xb800. */
    for (int j = 0; j < 32; j++) x[32 + j] = 1.0f;
    x[32 + 3] = 4.0f;
    x[32 + 10] = -4.0f;
    /* block 2: all zeros: d = 0 / -8 = -0 (fp16 0x8000), id = 0, every
     * code trunc(8.5) = 8 */
    /* block 3: fp16 subnormal scale: x[0] = -8 * 2^-20, x[17] = 3 * 2^-20:
     * d = 2^-20 = 16 * 2^-24 -> fp16 0x0010; codes 0 and trunc(3 + 8.5) = 11,
     * the rest 8 */
    x[96] = -8.0f * 0x1p-20f;
    x[96 + 17] = 3.0f * 0x1p-20f;
    quant1(QT_SCHEME_Q4_0, x, 128, b);
    cr_assert(eq(u16, le16(b), 0x4000));
    for (int k = 0; k < 16; k++) {
        int lo = (k + 1) / 2, hi = (k + 17) / 2 > 15 ? 15 : (k + 17) / 2;
        cr_assert(eq(u8, b[2 + k], (uint8_t)(lo | hi << 4)), "byte %d", k);
    }
    cr_assert(eq(u16, le16(b + 18), 0xb800));
    for (int k = 0; k < 16; k++) {
        int lo = k == 3 ? 0 : k == 10 ? 15 : 6;
        cr_assert(eq(u8, b[18 + 2 + k], (uint8_t)(lo | 6 << 4)), "byte %d", k);
    }
    cr_assert(eq(u16, le16(b + 36), 0x8000));
    for (int k = 0; k < 16; k++) cr_assert(eq(u8, b[36 + 2 + k], 0x88));
    cr_assert(eq(u16, le16(b + 54), 0x0010));
    cr_assert(eq(u8, b[54 + 2], 0x80));
    cr_assert(eq(u8, b[54 + 3], 0xb8));
    for (int k = 2; k < 16; k++) cr_assert(eq(u8, b[54 + 2 + k], 0x88));
    /* dequantize: (code - 8) * d: block 0 element 31 = 7 * 2 = 14 */
    float y[128];
    ref_ops(QT_SCHEME_Q4_0)->dequantize(b, y, 128);
    cr_assert(eq(flt, y[31], 14.0f));
    cr_assert(eq(flt, y[0], -16.0f));
    cr_assert(eq(flt, y[96 + 17], 3.0f * 0x1p-20f));
}

Test(kquants, golden_q4_1_q5_0_q5_1_q8_0)
{
    float x[32];
    unsigned char b[34];
    /* q4_1: x = j/2 - 1 (j < 31), x[31] = 14: min -1, max 14, d = 15/15 =
     * 1, id = 1, m = -1 (fp16 0xbc00); code = trunc(x + 1 + 0.5) = ceil(j/2)
     * (x + 1 = .5 exactly rounds up), x[31] -> 15. */
    for (int j = 0; j < 32; j++) x[j] = j < 31 ? (float)j / 2 - 1 : 14.0f;
    quant1(QT_SCHEME_Q4_1, x, 32, b);
    cr_assert(eq(u16, le16(b), 0x3c00));
    cr_assert(eq(u16, le16(b + 2), 0xbc00));
    for (int k = 0; k < 16; k++) {
        int lo = (k + 1) / 2, hi = k + 16 == 31 ? 15 : (k + 17) / 2;
        cr_assert(eq(u8, b[4 + k], (uint8_t)(lo | hi << 4)), "byte %d", k);
    }
    /* q5_0: x = j - 16: extreme -16, d = -16/-16 = 1, code = trunc(j - 16 +
     * 16.5) = j. qs[k] = k | (k + 16 & 15) << 4 = k * 17; high bits of codes
     * 16..31 -> qh = 0xffff0000. */
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16);
    quant1(QT_SCHEME_Q5_0, x, 32, b);
    cr_assert(eq(u16, le16(b), 0x3c00));
    cr_assert(eq(u32, qt_load_le32(b + 2), 0xffff0000u));
    for (int k = 0; k < 16; k++) cr_assert(eq(u8, b[6 + k], (uint8_t)(k * 17)));
    /* q5_1: x = j/2 - 2: min -2, max 13.5, d = 15.5/31 = 0.5 (0x3800), m =
     * -2 (0xc000), id = 2, code = trunc((x + 2) * 2 + 0.5) = j */
    for (int j = 0; j < 32; j++) x[j] = (float)j / 2 - 2;
    quant1(QT_SCHEME_Q5_1, x, 32, b);
    cr_assert(eq(u16, le16(b), 0x3800));
    cr_assert(eq(u16, le16(b + 2), 0xc000));
    cr_assert(eq(u32, qt_load_le32(b + 4), 0xffff0000u));
    for (int k = 0; k < 16; k++) cr_assert(eq(u8, b[8 + k], (uint8_t)(k * 17)));
    float y[32];
    ref_ops(QT_SCHEME_Q5_1)->dequantize(b, y, 32);
    for (int j = 0; j < 32; j++) cr_assert(eq(flt, y[j], x[j]));
    /* q8 = Q8_0: amax 127 -> d = 1 (0x3c00), id = 1, roundf half away from
     * zero: 2.5 -> 3, -2.5 -> -3, 0.49 -> 0; -127 and 127 tie in |x| */
    memset(x, 0, sizeof x);
    x[0] = -127.0f;
    x[1] = 2.5f;
    x[2] = -2.5f;
    x[3] = 127.0f;
    x[4] = 0.49f;
    quant1(QT_SCHEME_Q8, x, 32, b);
    cr_assert(eq(u16, le16(b), 0x3c00));
    int8_t want[5] = {-127, 3, -3, 127, 0};
    for (int j = 0; j < 5; j++) cr_assert(eq(i8, (int8_t)b[2 + j], want[j]));
}

/* ---- golden bytes: K-quants --------------------------------------------------------- */

Test(kquants, golden_k_all_zero)
{
    /* all zeros: every group fit returns scale 0 and codes 0 (q3_k / q6_k:
     * amax < 1e-15; q2/q4/q5_k: max == min == 0), the super-block scales are
     * 0, requantization is skipped (d == 0): every byte is 0 */
    float x[256] = {0}, y[256];
    unsigned char b[256];
    for (size_t t = 5; t < N_BLK; t++) {
        size_t bb = qt_scheme_get(BLK[t])->block_bytes;
        memset(b, 0xAA, sizeof b);
        quant1(BLK[t], x, 256, b);
        for (size_t i = 0; i < bb; i++) cr_assert(eq(u8, b[i], 0), "type %zu byte %zu", t, i);
        ref_ops(BLK[t])->dequantize(b, y, 256);
        for (int i = 0; i < 256; i++) cr_assert(eq(flt, fabsf(y[i]), 0.0f));
    }
}

Test(kquants, golden_q6_k_constant)
{
    /* x = +1 everywhere. make_qx_quants per group: max = 1, iscale = -32,
     * l = -32 (code 0), w = 1: sumlx = -512, suml2 = 16384, scale = -1/32,
     * best = 16. Trials -(32 + 0.1 is): l = -31 or -32 (clamped), both give
     * sumlx^2/suml2 = 16, never > best: scale -1/32. All groups equal:
     * max_scale = -1/32, iscale = -128 / (-1/32) = 4096, d = fp16(2^-12) =
     * 0x0c00, scales = min(127, nearest(-128)) = -128 (0x80). Requantize: d *
     * -128 = -1/32, l = nearest(1 / (-1/32)) = -32 -> code 0: ql = qh = 0.
     * x = -1: max = -1, scale +1/32, d = fp16(-2^-12) = 0x8c00, same codes. */
    float x[256], y[256];
    unsigned char b[210];
    for (int sign = 1; sign >= -1; sign -= 2) {
        for (int i = 0; i < 256; i++) x[i] = (float)sign;
        quant1(QT_SCHEME_Q6_K, x, 256, b);
        for (int i = 0; i < 192; i++) cr_assert(eq(u8, b[i], 0), "byte %d", i);
        for (int i = 192; i < 208; i++) cr_assert(eq(u8, b[i], 0x80), "byte %d", i);
        cr_assert(eq(u16, le16(b + 208), sign > 0 ? 0x0c00 : 0x8c00));
        ref_ops(QT_SCHEME_Q6_K)->dequantize(b, y, 256);
        for (int i = 0; i < 256; i++) cr_assert(eq(flt, y[i], (float)sign)); /* 2^-12*-128*-32 */
    }
}

Test(kquants, golden_q4_k_constant)
{
    /* x = 1 everywhere. make_qkx2_quants per group: min = 1 > 0 -> 0, max =
     * 1, iscale = 15, codes nearest(15) = 15, scale = 1/15f; the error is
     * exactly 0 (f32(f32(1/15) * 15) = 1), no trial beats it: scale 1/15f,
     * min -0. max_scale = 1/15f, max_min = 0: inv_scale = f32(63 / (1/15f)) =
     * 944.99994, ls = nearest(63.0) = 63, lm = 0. d = fp16(f32(1/15f / 63) =
     * 0.0010582) = 0x1456 (0.00105858), dmin = 0. Requantize: d * 63 =
     * 0.0666904, nearest(1 / 0.0666904 = 14.9947) = 15: qs all 0xff. Scale
     * bytes: j < 4: scales[j] = 63 | (63 >> 4) << 6 (from j + 4) = 0xff,
     * scales[j + 4] = lm = 0; scales[8..11] = (63 & 15) | (0 << 4) = 0x0f. */
    float x[256];
    unsigned char b[176];
    for (int i = 0; i < 256; i++) x[i] = 1.0f;
    quant1(QT_SCHEME_Q4_K, x, 256, b);
    cr_assert(eq(u16, le16(b), 0x1456));
    cr_assert(eq(u16, le16(b + 2), 0));
    for (int i = 0; i < 4; i++) cr_assert(eq(u8, b[4 + i], 0xff));
    for (int i = 4; i < 8; i++) cr_assert(eq(u8, b[4 + i], 0));
    for (int i = 8; i < 12; i++) cr_assert(eq(u8, b[4 + i], 0x0f));
    for (int i = 16; i < 144; i++) cr_assert(eq(u8, b[i], 0xff));
    /* q5_k: the same with nmax 31: scale 1/31f, ... codes 31: the low
     * nibbles 15 (ql 0xff) and every high bit set (qh 0xff) */
    quant1(QT_SCHEME_Q5_K, x, 256, b);
    for (int i = 16; i < 176; i++) cr_assert(eq(u8, b[i], 0xff), "byte %d", i);
}

/* ---- bytes written by ggml's reference code ------------------------------------------ */

Test(kquants, bytes_of_ggml_reference_code)
{
    /* Where the digests come from: a throw-away harness outside the project
     * holding a literal transcription of quantize_row_{q4_0,q4_1,q5_0,q5_1,
     * q8_0,q2_K,q3_K,q4_K,q5_K,q6_K}_ref and their helpers from llama.cpp
     * ggml/src/ggml-quants.c (commit 01243c58; ggml-common.h block structs,
     * F16C fp16 conversion), built with gcc 12 -O2 -mf16c -ffp-contract=off,
     * fed these 512 floats; sha256 of each output. The same harness agreed
     * with qtool byte for byte (and on dequantized floats) on 7 x 131072
     * values of every type and ISA. */
    static const char *want[N_BLK] = {
        "a72e9c3402b92de72895afca15ab535337e554bf14d62e1e830fc6cf531837b0", /* q8_0 */
        "3a4040fb5b73c196944751ed57cf88837944ed0f6e3fbd60efa001fa3167ef01", /* q4_0 */
        "46b24ef214e9e18805964da1595d1449201334e09a3f19861827344c33abd242", /* q4_1 */
        "bee98430347fcc1b538877694c7708f4ef14ab45982edc38f594a235b2599313", /* q5_0 */
        "92ce2b9cfc136244a60785f6e8b919bd4de7f7deb83b8acb822b5faa055959c0", /* q5_1 */
        "7a6acf16a4f055cd4bd570d816d1f42dd54c2d34fb7d15ad5b6e61a4183f8488", /* q2_k */
        "b0b2179cedea74607cd33e05ea8746d89d9bd7b5891eb14aa6f5f40f51931218", /* q3_k */
        "497841f1469e8ef80100c49a52f17b230c4613ecc556330b5e09ae39021a576c", /* q4_k */
        "e3e29546d57fa33f3ac3e251e074f8a81bc8c26ad435c888b724ba866044b879", /* q5_k */
        "7b4971bf4a881b48e1795f6542695c6eacdbed15b7686dfecd22ebfbbc943a46", /* q6_k */
    };
    /* 256 gaussian-ish values (sum of 4 uniforms, * 0.02), then 256 sparse
     * cubes (40 % zeros, the rest 1e-3 g^3: tiny groups, fp16-subnormal
     * scales) */
    float x[512];
    unsigned long long s = 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < 512; i++) {
        float g = qt_test_randf(&s) + qt_test_randf(&s) + qt_test_randf(&s) + qt_test_randf(&s);
        float u = qt_test_randf(&s);
        x[i] = i < 256 ? 0.02f * g : (u > 0.6f ? 0.0f : 1e-3f * g * g * g);
    }
    for (size_t t = 0; t < N_BLK; t++) {
        for (int isa = QT_ISA_REF; isa < QT_ISA_COUNT; isa++) {
            const qt_blk_ops *o = qt_blk_ops_for((qt_isa)isa, BLK[t]);
            if (!o) continue;
            unsigned char b[1024], d[32];
            char hex[65];
            o->quantize(x, b, 512);
            qt_sha256(b, qt_blk_row_bytes(BLK[t], 512), d);
            qt_sha256_hex(d, hex);
            cr_assert(eq(str, hex, (char *)want[t]), "%s isa %d", qt_scheme_get(BLK[t])->name, isa);
        }
    }
}

/* ---- ISAs bit-identical ------------------------------------------------------------- */

/* Rows of n: kind 0 gaussian-ish, 1 with outliers and exact ties, 2 tiny
 * values (fp16 subnormal scales), 3 groups of constants and zeros, 4 huge
 * values, 5 halves on a grid (ties after scaling). */
static void fill_row(float *x, size_t n, int kind, unsigned long long *s)
{
    for (size_t i = 0; i < n; i++) {
        float g = qt_test_randf(s) + qt_test_randf(s) + qt_test_randf(s) + qt_test_randf(s);
        switch (kind) {
        case 0: x[i] = 0.02f * g; break;
        case 1: x[i] = (qt_test_rand(s) % 17 == 0) ? (i & 1 ? 1.0f : -1.0f) : 0.1f * g; break;
        case 2: x[i] = 1e-6f * g; break;
        case 3: x[i] = (i / 16) % 3 == 0 ? 0.0f : (i / 16) % 3 == 1 ? 0.25f : -0.5f; break;
        case 4: x[i] = 3e4f * g; break;
        default: x[i] = (float)((int)(qt_test_rand(s) % 33) - 16) * 0.5f; break;
        }
    }
}

#define N_KINDS 6

Test(kquants, every_isa_bit_identical_to_ref)
{
    unsigned long long seed = qt_test_seed(DEFAULT_SEED);
    const size_t n = 4 * 256 + 256; /* 5 super-blocks: an odd count */
    float *x = malloc(n * 4), *yr = malloc(n * 4), *ys = malloc(n * 4);
    unsigned char *br = malloc(n * 2), *bs = malloc(n * 2);
    for (size_t t = 0; t < N_BLK; t++) {
        const qt_blk_ops *r = ref_ops(BLK[t]);
        size_t rb = qt_blk_row_bytes(BLK[t], n);
        for (int kind = 0; kind < N_KINDS; kind++) {
            fill_row(x, n, kind, &seed);
            r->quantize(x, br, n);
            r->dequantize(br, yr, n);
            float dr = r->dot(br, x, n);
            for (int isa = QT_ISA_REF + 1; isa < QT_ISA_COUNT; isa++) {
                const qt_blk_ops *o = qt_blk_ops_for((qt_isa)isa, BLK[t]);
                if (!o) continue;
                memset(bs, 0x5a, rb);
                o->quantize(x, bs, n);
                cr_assert(eq(int, memcmp(br, bs, rb), 0), "%s isa %d kind %d",
                          qt_scheme_get(BLK[t])->name, isa, kind);
                o->dequantize(br, ys, n);
                cr_assert(eq(int, memcmp(yr, ys, n * 4), 0));
                float ds = o->dot(br, x, n);
                cr_assert(eq(u32, qt_f32_bits(ds), qt_f32_bits(dr)), "%s dot isa %d",
                          qt_scheme_get(BLK[t])->name, isa);
            }
        }
    }
    free(x), free(yr), free(ys), free(br), free(bs);
}

Test(kquants, nonfinite_rows_identical_on_every_isa)
{
    /* the kernels' contract for NaN / Inf: ggml's arithmetic unchanged, so
     * every ISA writes the same bytes (callers refuse such input anyway) */
    unsigned long long seed = qt_test_seed(DEFAULT_SEED + 1);
    const size_t n = 512;
    float x[512];
    unsigned char br[512 * 2], bs[512 * 2];
    for (size_t t = 0; t < N_BLK; t++) {
        fill_row(x, n, 0, &seed);
        x[5] = NAN;
        x[300] = INFINITY;
        x[301] = -INFINITY;
        size_t rb = qt_blk_row_bytes(BLK[t], n);
        ref_ops(BLK[t])->quantize(x, br, n);
        for (int isa = QT_ISA_REF + 1; isa < QT_ISA_COUNT; isa++) {
            const qt_blk_ops *o = qt_blk_ops_for((qt_isa)isa, BLK[t]);
            if (!o) continue;
            o->quantize(x, bs, n);
            cr_assert(eq(int, memcmp(br, bs, rb), 0), "%s isa %d", qt_scheme_get(BLK[t])->name,
                      isa);
        }
    }
}

/* ---- error bounds, dequantize and dot ----------------------------------------------- */

Test(kquants, round_trip_error_within_bit_width_bound)
{
    /* b-bit codes over a group's range r ~ 4 sigma (gaussian, 16-32
     * values): step r / (2^b - 1), rms error step / sqrt(12), so relative
     * to sigma ~ 1.155 / (2^b - 1); bound 1.5x that (q8: 2^b - 1 = 254
     * steps over 2 * amax). */
    static const int bits[] = {8, 4, 4, 5, 5, 2, 3, 4, 5, 6};
    unsigned long long seed = qt_test_seed(DEFAULT_SEED + 2);
    const size_t n = 64 * 256;
    float *x = malloc(n * 4), *y = malloc(n * 4);
    unsigned char *b = malloc(n * 2);
    fill_row(x, n, 0, &seed);
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    double sigma = sqrt(ss / n);
    for (size_t t = 0; t < N_BLK; t++) {
        const qt_blk_ops *o = qt_blk_ops_active(BLK[t]);
        o->quantize(x, b, n);
        o->dequantize(b, y, n);
        double se = 0;
        for (size_t i = 0; i < n; i++) se += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
        double rel = sqrt(se / n) / sigma, bound = 1.5 * 1.155 / ((1 << bits[t]) - 1);
        cr_log_info("%s: relative rms error %.4f (bound %.4f)", qt_scheme_get(BLK[t])->name, rel,
                    bound);
        cr_assert(le(dbl, rel, bound), "%s: %g > %g", qt_scheme_get(BLK[t])->name, rel, bound);
        /* the dot of the definition against float64 over the dequantized row */
        double ref = 0, mag = 0;
        for (size_t i = 0; i < n; i++) ref += (double)y[i] * x[i], mag += fabs((double)y[i] * x[i]);
        float d = o->dot(b, x, n);
        cr_assert(le(dbl, fabs(d - ref), 1e-5 * mag + 1e-30), "%s dot", qt_scheme_get(BLK[t])->name);
    }
    free(x), free(y), free(b);
}

/* ---- the driver --------------------------------------------------------------------- */

Test(kquants, driver_threads_and_sources)
{
    unsigned long long seed = qt_test_seed(DEFAULT_SEED + 3);
    const size_t rows = 24, cols = 512, n = rows * cols;
    float *x = malloc(n * 4);
    uint16_t *h = malloc(n * 2);
    unsigned char *b1 = malloc(n * 2), *b4 = malloc(n * 2), *bh = malloc(n * 2);
    fill_row(x, n, 0, &seed);
    for (size_t i = 0; i < n; i++) {
        h[i] = qt_fp32_to_bf16(x[i]);
        x[i] = qt_bf16_to_fp32(h[i]); /* the bf16 values exactly, as fp32 */
    }
    for (size_t t = 0; t < N_BLK; t++) {
        size_t bytes = rows * qt_blk_row_bytes(BLK[t], cols);
#ifdef _OPENMP
        omp_set_num_threads(1);
#endif
        cr_assert(eq(int, qt_blk_quantize(NULL, BLK[t], QT_SRC_F32, x, rows, cols, false, b1, NULL),
                     QT_OK));
#ifdef _OPENMP
        omp_set_num_threads(4);
#endif
        cr_assert(eq(int, qt_blk_quantize(NULL, BLK[t], QT_SRC_F32, x, rows, cols, false, b4, NULL),
                     QT_OK));
        cr_assert(eq(int, qt_blk_quantize(NULL, BLK[t], QT_SRC_BF16, h, rows, cols, false, bh, NULL),
                     QT_OK));
        cr_assert(eq(int, memcmp(b1, b4, bytes), 0), "%s threads", qt_scheme_get(BLK[t])->name);
        cr_assert(eq(int, memcmp(b1, bh, bytes), 0), "%s bf16", qt_scheme_get(BLK[t])->name);
        /* row r alone = row r of the matrix */
        unsigned char one[1024];
        ref_ops(BLK[t])->quantize(x + 7 * cols, one, cols);
        size_t rb = qt_blk_row_bytes(BLK[t], cols);
        cr_assert(eq(int, memcmp(one, b1 + 7 * rb, rb), 0));
    }
    /* NaN in rows 9 and 15: refused, the first named; allowed when asked */
    x[9 * cols + 100] = NAN;
    x[15 * cols] = INFINITY;
    size_t bad = 0;
    cr_assert(eq(int, qt_blk_quantize(NULL, QT_SCHEME_Q4_K, QT_SRC_F32, x, rows, cols, false, b1, &bad),
                 QT_ERR_NUMERIC));
    cr_assert(eq(sz, bad, (size_t)9));
    cr_assert(eq(int, qt_blk_quantize(NULL, QT_SCHEME_Q4_K, QT_SRC_F32, x, rows, cols, true, b1, &bad),
                 QT_OK));
    /* bad arguments */
    cr_assert(eq(int, qt_blk_quantize(NULL, QT_SCHEME_Q4_K, QT_SRC_F32, x, rows, 100, false, b1, NULL),
                 QT_ERR_ARG));
    cr_assert(eq(int, qt_blk_quantize(NULL, QT_SCHEME_NF4, QT_SRC_F32, x, rows, cols, false, b1, NULL),
                 QT_ERR_ARG));
    free(x), free(h), free(b1), free(b4), free(bh);
}
