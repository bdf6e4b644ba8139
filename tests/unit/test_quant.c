/* tests/unit/test_quant.c: the quant module against specs/bnb-format.md.
 *
 *  - tables: bits and sha256 of the NF4 / FP4 / threshold / dynamic maps;
 *  - hand-computed golden bytes (NF4, FP4, Q8_0, LLM.int8), worked out in
 *    the comments from the spec's rules, not from the code's output;
 *  - every ISA against _ref (bit-identical quantized bytes) on seeded random
 *    data plus adversarial blocks, for fp32 / fp16 / bf16 inputs;
 *  - double quantization: exact mean, §5 dequantization, error bound, the
 *    dQuantize<0> tie rule;
 *  - determinism across thread counts; matmul against a float64 reference
 *    for every scheme with rows that straddle blocks;
 *  - the transformers + bitsandbytes golden files, when the shared data
 *    folder is present.
 * QT_SEED overrides the random seed (printed by each test that uses it). */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <criterion/parameterized.h>
#include <float.h>
#include <math.h>
#include <string.h>
#include <time.h>

#include "bench/bench.h"
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

/* Tolerances. */
#define MATMUL_REL_TOL 1e-5     /* |y - y64| <= tol * sum |x * w| (+ MATMUL_ABS_TOL) */
#define MATMUL_ABS_TOL 1e-6
#define DQ_REL_ERR 0.0075       /* nested absmax error <= this * nested_absmax (spec §5: ~0.7 %) */
#define NF4_MAX_HALF_GAP 0.1608 /* spec §5: |w - w^| <= absmax * this */

static const unsigned long long DEFAULT_SEED = 0x5eed2024ULL;

/* ---- helpers ------------------------------------------------------------- */

/* A tensor held as fp32 plus its fp16 and bf16 encodings. */
typedef struct srcbuf {
    size_t n;
    float *f32;
    uint16_t *f16, *bf16;
} srcbuf;

static void src_fill_narrow(srcbuf *s)
{
    for (size_t i = 0; i < s->n; i++) {
        s->f16[i] = qt_fp32_to_fp16(s->f32[i]);
        s->bf16[i] = qt_fp32_to_bf16(s->f32[i]);
    }
}

static srcbuf src_new(size_t n)
{
    srcbuf s = {n, malloc(n * 4 + 4), malloc(n * 2 + 2), malloc(n * 2 + 2)};
    cr_assert(not(eq(ptr, s.f32, NULL)));
    return s;
}

static void src_free(srcbuf *s)
{
    free(s->f32);
    free(s->f16);
    free(s->bf16);
}

static const void *src_ptr(const srcbuf *s, qt_src_type t)
{
    return t == QT_SRC_F32 ? (const void *)s->f32 : t == QT_SRC_F16 ? (const void *)s->f16
                                                                     : (const void *)s->bf16;
}

/* Random gaussian data, then adversarial blocks of size B written over the
 * first blocks: all-zero, constant, single outlier, every threshold exactly
 * (with an element 1.0 so absmax = 1, r = 1) and one ulp either side, +-Inf,
 * NaN, subnormals, a block of -0.0. */
static void fill_adversarial(srcbuf *s, size_t B, unsigned long long *seed)
{
    size_t n = s->n;
    for (size_t i = 0; i < n; i++) s->f32[i] = qt_test_gauss(seed) * 0.02f;
    size_t blk = 0;
#define BLK(i) (blk * B + (i))
#define NEXT_BLOCK() \
    do { blk++; if ((blk + 1) * B > n) goto done; } while (0)
    if (B > n) goto done;
    for (size_t i = 0; i < B; i++) s->f32[BLK(i)] = 0.0f; /* all zero */
    NEXT_BLOCK();
    for (size_t i = 0; i < B; i++) s->f32[BLK(i)] = 0.375f; /* constant */
    NEXT_BLOCK();
    s->f32[BLK(B / 3)] = 50.0f; /* single outlier */
    NEXT_BLOCK();
    /* thresholds (NF4 + FP4, both signs for FP4), exact and +-1 ulp, r = 1 */
    {
        float vals[3 * (15 + 14) + 1];
        size_t nv = 0;
        for (int i = 0; i < 15; i++) {
            float t = qt_nf4_thresholds[i];
            vals[nv++] = t;
            vals[nv++] = nextafterf(t, -INFINITY);
            vals[nv++] = nextafterf(t, INFINITY);
        }
        for (int i = 0; i < 7; i++)
            for (int sg = -1; sg <= 1; sg += 2) {
                float t = sg * qt_fp4_thresholds[i];
                vals[nv++] = t;
                vals[nv++] = nextafterf(t, -INFINITY);
                vals[nv++] = nextafterf(t, INFINITY);
            }
        size_t k = 0;
        while (k < nv) {
            s->f32[BLK(0)] = 1.0f;
            for (size_t i = 1; i < B && k < nv; i++) s->f32[BLK(i)] = vals[k++];
            NEXT_BLOCK();
        }
    }
    s->f32[BLK(1)] = INFINITY;
    s->f32[BLK(5)] = -INFINITY;
    NEXT_BLOCK();
    s->f32[BLK(2)] = NAN;
    s->f32[BLK(7)] = -NAN;
    NEXT_BLOCK();
    for (size_t i = 0; i < B; i++) s->f32[BLK(i)] = (float)((int)i - 7) * FLT_TRUE_MIN;
    NEXT_BLOCK();
    for (size_t i = 0; i < B; i++) s->f32[BLK(i)] = (float)((int)i % 5 - 2) * 1e-38f;
    NEXT_BLOCK();
    for (size_t i = 0; i < B; i++) s->f32[BLK(i)] = -0.0f;
    NEXT_BLOCK();
    for (size_t i = 0; i < B; i++) s->f32[BLK(i)] = (i & 1) ? 65504.0f : -70000.0f; /* fp16 overflow */
done:
#undef BLK
#undef NEXT_BLOCK
    src_fill_narrow(s);
}

static bool isa_kernels(qt_isa isa, const qt_kernels **k)
{
    *k = qt_kernels_for(isa);
    return *k != NULL;
}

#define NEED_ISA(isa, k)                                                               \
    do {                                                                               \
        if (!isa_kernels((isa), &(k))) cr_skip_test("CPU lacks %s", qt_isa_name(isa)); \
    } while (0)

static void set_threads(int n)
{
#ifdef _OPENMP
    omp_set_num_threads(n);
#else
    (void)n;
#endif
}

/* ---- tables -------------------------------------------------------------- */

static const uint32_t NF4_BITS[16] = {
    0xBF800000, 0xBF3239B1, 0xBF066B30, 0xBECA32A0, 0xBE91A24D, 0xBE3D353F, 0xBDBA7871, 0x00000000,
    0x3DA2FAFF, 0x3E24CAE3, 0x3E7C04DD, 0x3EAD033A, 0x3EE1A4B8, 0x3F1007AB, 0x3F3913B3, 0x3F800000};
static const uint32_t NF4_THR_BITS[15] = {
    0xBF591CD8, 0xBF1C5270, 0xBEEB8480, 0xBEADEA76, 0xBE703CEC, 0xBE0D38BC, 0xBD3A7871, 0x3D22FAFF,
    0x3DF64862, 0x3E5067E0, 0x3E9582D4, 0x3EC753F9, 0x3F006D04, 0x3F248DAF, 0x3F5C89DA};
static const uint32_t FP4_BITS[16] = {
    0x00000000, 0x3BAAAAAB, 0x3F2AAAAB, 0x3F800000, 0x3EAAAAAB, 0x3F000000, 0x3E2AAAAB, 0x3E800000,
    0x00000000, 0xBBAAAAAB, 0xBF2AAAAB, 0xBF800000, 0xBEAAAAAB, 0xBF000000, 0xBE2AAAAB, 0xBE800000};
static const uint32_t FP4_THR_BITS[7] = {0x3B2AAAB9, 0x3DB00000, 0x3E555555, 0x3E955555,
                                         0x3ED55556, 0x3F155550, 0x3F555555}; /* G E F A D B C */

static void sha_hex_of(const void *p, size_t n, char hex[65])
{
    unsigned char d[32];
    qt_sha256(p, n, d);
    qt_sha256_hex(d, hex);
}

Test(quant, tables_match_spec_bits)
{
    for (int i = 0; i < 16; i++) {
        cr_assert(eq(u32, qt_f32_bits(qt_nf4_map[i]), NF4_BITS[i]), "nf4[%d]", i);
        cr_assert(eq(u32, qt_f32_bits(qt_fp4_map[i]), FP4_BITS[i]), "fp4[%d]", i);
    }
    for (int i = 0; i < 15; i++) {
        cr_assert(eq(u32, qt_f32_bits(qt_nf4_thresholds[i]), NF4_THR_BITS[i]), "thr[%d]", i);
        /* thresholds are the f32 midpoints of consecutive table entries */
        float mid = (float)(((double)qt_nf4_map[i] + (double)qt_nf4_map[i + 1]) / 2);
        cr_assert(eq(u32, qt_f32_bits(mid), NF4_THR_BITS[i]), "midpoint %d", i);
    }
    for (int i = 0; i < 7; i++)
        cr_assert(eq(u32, qt_f32_bits(qt_fp4_thresholds[i]), FP4_THR_BITS[i]));
    cr_assert(eq(u32, qt_f32_bits(qt_dynamic_map[0]), 0xBF7E3333u));
    cr_assert(eq(u32, qt_f32_bits(qt_dynamic_map[127]), 0u));
    cr_assert(eq(u32, qt_f32_bits(qt_dynamic_map[255]), 0x3F800000u));
    for (int i = 0; i < 255; i++) cr_assert(lt(flt, qt_dynamic_map[i], qt_dynamic_map[i + 1]));
}

Test(quant, table_hashes_match_spec)
{
    unsigned char le[1024];
    char hex[65];
    for (int i = 0; i < 16; i++) qt_store_le32(le + 4 * i, qt_f32_bits(qt_nf4_map[i]));
    sha_hex_of(le, 64, hex);
    cr_assert(eq(str, hex, "8501941daa1b8a90ad1bbfeb632e5101b5dddbc4bb52d6e55abcfd777e60c06a"));
    for (int i = 0; i < 256; i++) qt_store_le32(le + 4 * i, qt_f32_bits(qt_dynamic_map[i]));
    sha_hex_of(le, 1024, hex);
    cr_assert(eq(str, hex, "e732639a65f497b4ad684bb166a4467708255edd5207757de8b8f0c7e1fda89c"));
}

Test(quant, scheme_table_drives_names)
{
    const char *names[] = {"nf4", "fp4", "int8", "q8", "int8-blockwise", "bf16", "fp16", "fp32"};
    cr_assert(eq(sz, qt_scheme_count(), (size_t)QT_SCHEME_COUNT));
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const qt_scheme_info *si = qt_scheme_find(names[i]);
        cr_assert(not(eq(ptr, (void *)si, NULL)), "%s", names[i]);
        cr_assert(eq(ptr, (void *)qt_scheme_get(si->scheme), (void *)si));
        cr_assert(gt(dbl, si->bits_per_weight, 0.0));
        cr_assert(not(eq(ptr, (void *)si->description, NULL)));
    }
    cr_assert(eq(ptr, (void *)qt_scheme_find("nf5"), NULL));
    cr_assert(eq(sz, qt_scheme_find("nf4")->default_block, (size_t)64));
    cr_assert(qt_scheme_block_ok(QT_SCHEME_NF4, 32));
    cr_assert(qt_scheme_block_ok(QT_SCHEME_NF4, 4096));
    cr_assert(not(qt_scheme_block_ok(QT_SCHEME_NF4, 96)));
    cr_assert(not(qt_scheme_block_ok(QT_SCHEME_NF4, 8192)));
    cr_assert(not(qt_scheme_block_ok(QT_SCHEME_INT8_BLOCKWISE, 32)));
    cr_assert(not(qt_scheme_block_ok(QT_SCHEME_INT8, 64)));
    cr_assert(eq(sz, qt_nf4_bytes(7), (size_t)4));
    cr_assert(eq(sz, qt_n_blocks(172 * 64, 64), (size_t)172));
    cr_assert(eq(sz, qt_dq_n_nested(257), (size_t)2));
    cr_assert(eq(sz, qt_q8_bytes(64, 32), (size_t)68));
    cr_assert(eq(sz, qt_q8_bytes(100, 64), (size_t)136));
}

/* ---- golden bytes worked out by hand ----------------------------------- */

Test(quant, nf4_golden_tiny_block)
{
    /* absmax = 1.0, so r = 1 and xn = x. code = #thresholds strictly below xn:
     *   1.0   > all 15                      -> 15
     *  -1.0   not > t0 = -0.848             -> 0
     *   0.5   t11 = 0.389 < 0.5 < t12=0.5017 -> 12
     *  -0.25  t3 = -0.3397 < -0.25 < t4 = -0.2346 -> 4
     *   0.0   t6 = -0.0455 < 0 < t7 = 0.0398 -> 7
     *   0.1   t7 < 0.1 < t8 = 0.1203          -> 8
     *   0.04  t7 = 0.03979 < 0.04 < t8        -> 8
     *   0.7   t13 = 0.6428 < 0.7 < t14 = 0.8615 -> 14
     * bytes (first element high nibble): F0 C4 78 8E.
     * n = 7 (drop 0.7): the last low nibble codes a padded 0.0 -> 7: 87. */
    float x[8] = {1.0f, -1.0f, 0.5f, -0.25f, 0.0f, 0.1f, 0.04f, 0.7f};
    uint8_t c[4];
    float am;
    cr_assert(eq(int, qt_nf4_quantize(&qt_kernels_ref, QT_SCHEME_NF4, QT_SRC_F32, x, 8, 64, c, &am),
                 QT_OK));
    uint8_t want[4] = {0xF0, 0xC4, 0x78, 0x8E};
    cr_assert(eq(u8[4], c, want));
    cr_assert(eq(flt, am, 1.0f));
    cr_assert(eq(int, qt_nf4_quantize(NULL, QT_SCHEME_NF4, QT_SRC_F32, x, 7, 64, c, &am), QT_OK));
    uint8_t want7[4] = {0xF0, 0xC4, 0x78, 0x87};
    cr_assert(eq(u8[4], c, want7));
    /* a value exactly on a threshold goes to the lower code: t7 -> 7, next ulp -> 8;
     * absmax 2: r = 0.5, xn = 0.5 exactly for x = 1 -> 12 */
    float y[4] = {1.0f, qt_nf4_thresholds[7], nextafterf(qt_nf4_thresholds[7], 1.0f), -1.0f};
    cr_assert(eq(int, qt_nf4_quantize(NULL, QT_SCHEME_NF4, QT_SRC_F32, y, 4, 32, c, &am), QT_OK));
    cr_assert(eq(u8, c[0], 0xF7));
    cr_assert(eq(u8, c[1], 0x80));
    float z[2] = {2.0f, 1.0f};
    cr_assert(eq(int, qt_nf4_quantize(NULL, QT_SCHEME_NF4, QT_SRC_F32, z, 2, 32, c, &am), QT_OK));
    cr_assert(eq(u8, c[0], 0xFC));
}

Test(quant, fp4_golden_tiny_block)
{
    /* absmax 1, xn = x; sign 8 iff xn < 0; tree with A=.2917 B=.5833 C=.8333
     * D=.4167 E=.0859 F=.2083 G=.0026:
     *   1.0 -> 3;  -1.0 -> 8+3 = 11;  0.0 -> 0;  -0.0 -> 0 (not < 0)
     *   0.5 (>A, <=B, >D) -> 5;  0.3 (>A, <=B, <=D) -> 4
     *   0.001 (<=A, <=E, <=G) -> 0;  -0.2 (<=A, >E, <=F) -> 8+6 = 14
     * bytes: 3B 00 54 0E. All-zero block: codes 0, absmax 0. */
    float x[8] = {1.0f, -1.0f, 0.0f, -0.0f, 0.5f, 0.3f, 0.001f, -0.2f};
    uint8_t c[4];
    float am;
    cr_assert(eq(int, qt_nf4_quantize(NULL, QT_SCHEME_FP4, QT_SRC_F32, x, 8, 64, c, &am), QT_OK));
    uint8_t want[4] = {0x3B, 0x00, 0x54, 0x0E};
    cr_assert(eq(u8[4], c, want));
    float zero[5] = {0};
    cr_assert(eq(int, qt_nf4_quantize(NULL, QT_SCHEME_NF4, QT_SRC_F32, zero, 5, 64, c, &am), QT_OK));
    uint8_t wz[3] = {0, 0, 0};
    cr_assert(eq(u8[3], c, wz));
    cr_assert(eq(u32, qt_f32_bits(am), 0u));
}

Test(quant, q8_golden_blocks)
{
    /* Block 0: amax 127 -> d = 1 (fp16 0x3C00), id = 1, q = roundf(x):
     *   127 -> 127 (7F), 0.5 -> 1, -0.5 -> -1 (FF), 1.5 -> 2, -1.5 -> -2 (FE),
     *   2.5 -> 3 (away from zero, not even), 126.4 -> 126 (7E), -3.49 -> -3 (FD),
     *   rest 0.
     * Block 1: all zero -> d = 0 (0000), id = 0, q = 0.
     * Block 2: amax 254 -> d = 2 (fp16 0x4000), id = 0.5:
     *   254 -> 127, 1 -> 0.5 -> 1, 3 -> 1.5 -> 2, -5 -> -2.5 -> -3 (FD),
     *   -254 -> -127 (81), 101 -> 50.5 -> 51 (33). */
    float x[96] = {0};
    float b0[8] = {127.0f, 0.5f, -0.5f, 1.5f, -1.5f, 2.5f, 126.4f, -3.49f};
    memcpy(x, b0, sizeof b0);
    float b2[6] = {254.0f, 1.0f, 3.0f, -5.0f, -254.0f, 101.0f};
    memcpy(x + 64, b2, sizeof b2);
    unsigned char out[3 * 34];
    cr_assert(eq(int, qt_q8_quantize(&qt_kernels_ref, QT_SRC_F32, x, 96, 32, out), QT_OK));
    unsigned char w0[10] = {0x00, 0x3C, 0x7F, 0x01, 0xFF, 0x02, 0xFE, 0x03, 0x7E, 0xFD};
    cr_assert(eq(u8[10], out, w0));
    for (int i = 10; i < 34; i++) cr_assert(eq(u8, out[i], 0));
    for (int i = 34; i < 68; i++) cr_assert(eq(u8, out[i], 0));
    unsigned char w2[8] = {0x00, 0x40, 0x7F, 0x01, 0x02, 0xFD, 0x81, 0x33};
    cr_assert(eq(u8[8], out + 68, w2));
    for (int i = 76; i < 102; i++) cr_assert(eq(u8, out[i], 0));
    /* every ISA gives the same bytes */
    for (int isa = 0; isa < QT_ISA_COUNT; isa++) {
        const qt_kernels *k = qt_kernels_for((qt_isa)isa);
        if (!k) continue;
        unsigned char o2[3 * 34];
        cr_assert(eq(int, qt_q8_quantize(k, QT_SRC_F32, x, 96, 32, o2), QT_OK));
        cr_assert(eq(int, memcmp(o2, out, sizeof out), 0), "%s", qt_isa_name((qt_isa)isa));
    }
}

Test(quant, int8_rowwise_by_hand)
{
    /* Row 0: {1, -0.5, 0.25, 0}: SCB 1, scale = f32(1/1)*127 = 127:
     *   127, -63.5 -> -64 (half to even), 31.75 -> 32, 0.
     * Row 1: {2, 1, -1, 0.0078125}: SCB 2, scale = 0.5*127 = 63.5:
     *   127, 63.5 -> 64 (even), -64, 0.496 -> 0.
     * Row 2: all zero: SCB 0, CB 0 (0*inf = NaN -> 0).
     * Row 3: {1.0001, 0.5}: cast to fp16 first -> {1.0, 0.5}: SCB exactly 1.0,
     *   CB 127, 63.5 -> 64. */
    float x[16] = {1.0f, -0.5f, 0.25f, 0.0f, 2.0f, 1.0f, -1.0f, 0.0078125f,
                   0,    0,     0,     0,    1.0001f, 0.5f, 0, 0};
    int8_t cb[16];
    float scb[4];
    cr_assert(eq(int, qt_int8_quantize(&qt_kernels_ref, QT_SRC_F32, x, 4, 4, cb, scb), QT_OK));
    int8_t want[16] = {127, -64, 32, 0, 127, 64, -64, 0, 0, 0, 0, 0, 127, 64, 0, 0};
    cr_assert(eq(i8[16], cb, want));
    cr_assert(eq(flt, scb[0], 1.0f));
    cr_assert(eq(flt, scb[1], 2.0f));
    cr_assert(eq(flt, scb[2], 0.0f));
    cr_assert(eq(flt, scb[3], 1.0f));
}

/* ---- every ISA against _ref --------------------------------------------- */

ParameterizedTestParameters(quant_isa, quantize_matches_ref)
{
    static qt_isa isas[] = {QT_ISA_AVX2, QT_ISA_AVX512, QT_ISA_NEON};
    return cr_make_param_array(qt_isa, isas, sizeof isas / sizeof isas[0]);
}

ParameterizedTest(qt_isa *isa, quant_isa, quantize_matches_ref)
{
    const qt_kernels *k;
    NEED_ISA(*isa, k);
    unsigned long long seed = qt_test_seed(DEFAULT_SEED);
    const size_t blocks[] = {32, 64, 128, 256, 4096};
    for (size_t bi = 0; bi < sizeof blocks / sizeof blocks[0]; bi++) {
        size_t B = blocks[bi];
        /* enough whole blocks for every adversarial block, then a partial odd one */
        size_t n = (B < 128 ? 40 : 3) * B + 77;
        srcbuf s = src_new(n);
        fill_adversarial(&s, B, &seed);
        size_t nb = qt_n_blocks(n, B);
        uint8_t *c0 = malloc(n), *c1 = malloc(n);
        float *a0 = malloc(nb * 4), *a1 = malloc(nb * 4);
        unsigned char *q0 = malloc(qt_q8_bytes(n, B)), *q1 = malloc(qt_q8_bytes(n, B));
        for (int t = 0; t < QT_SRC_COUNT; t++) {
            const void *src = src_ptr(&s, (qt_src_type)t);
            for (int fp4 = 0; fp4 <= 1; fp4++) {
                qt_kernels_ref.quant4(fp4, (qt_src_type)t, src, n, B, NULL, c0, a0);
                k->quant4(fp4, (qt_src_type)t, src, n, B, NULL, c1, a1);
                cr_assert(eq(int, memcmp(c0, c1, qt_nf4_bytes(n)), 0), "%s B=%zu type %d fp4 %d",
                          qt_isa_name(*isa), B, t, fp4);
                cr_assert(eq(int, memcmp(a0, a1, nb * 4), 0));
            }
            qt_kernels_ref.q8_quant((qt_src_type)t, src, n, B, q0);
            k->q8_quant((qt_src_type)t, src, n, B, q1);
            cr_assert(eq(int, memcmp(q0, q1, qt_q8_bytes(n, B)), 0), "q8 B=%zu type %d", B, t);
            if (B >= 64) {
                qt_kernels_ref.blockwise8_quant((qt_src_type)t, src, n, B, qt_dynamic_map, NULL, c0, a0);
                k->blockwise8_quant((qt_src_type)t, src, n, B, qt_dynamic_map, NULL, c1, a1);
                cr_assert(eq(int, memcmp(c0, c1, n), 0));
                cr_assert(eq(int, memcmp(a0, a1, nb * 4), 0));
            }
            /* LLM.int8 with rows of B + 13 columns (SIMD body + scalar tail) */
            size_t cols = B + 13, rows = n / cols;
            float scb0[64], scb1[64];
            if (rows > 64) rows = 64;
            for (size_t r = 0; r < rows; r++) {
                const unsigned char *rp = (const unsigned char *)src + r * cols * qt_src_size(t);
                qt_kernels_ref.int8_quant_row((qt_src_type)t, rp, cols, NULL, (int8_t *)c0, &scb0[r]);
                k->int8_quant_row((qt_src_type)t, rp, cols, NULL, (int8_t *)c1, &scb1[r]);
                cr_assert(eq(int, memcmp(c0, c1, cols), 0), "int8 row %zu type %d", r, t);
                cr_assert(eq(u32, qt_f32_bits(scb0[r]), qt_f32_bits(scb1[r])));
            }
        }
        free(c0);
        free(c1);
        free(a0);
        free(a1);
        free(q0);
        free(q1);
        src_free(&s);
    }
}

ParameterizedTestParameters(quant_isa, dequant_and_dot_match_ref)
{
    static qt_isa isas[] = {QT_ISA_AVX2, QT_ISA_AVX512, QT_ISA_NEON};
    return cr_make_param_array(qt_isa, isas, sizeof isas / sizeof isas[0]);
}

ParameterizedTest(qt_isa *isa, quant_isa, dequant_and_dot_match_ref)
{
    const qt_kernels *k;
    NEED_ISA(*isa, k);
    unsigned long long seed = qt_test_seed(DEFAULT_SEED + 1);
    uint8_t codes[200];
    for (int i = 0; i < 200; i++) codes[i] = (uint8_t)qt_test_rand(&seed);
    float d0[400], d1[400];
    /* every start parity and length, bit-identical (one multiply each) */
    for (size_t i0 = 0; i0 < 8; i0++)
        for (size_t len = 0; len < 200; len += 7) {
            qt_kernels_ref.dequant4(codes, i0, len, qt_nf4_map, 0.0371f, d0);
            k->dequant4(codes, i0, len, qt_nf4_map, 0.0371f, d1);
            cr_assert(eq(int, memcmp(d0, d1, len * 4), 0), "i0 %zu len %zu", i0, len);
        }
    /* dot tile: within tolerance of ref, and independent of the grouping */
    enum { NT = 5, NR = 7, N = 173 };
    static float x[NT * N], w[NR * N + 1], y0[NT * NR], y1[NT * NR], y2[NT * NR];
    for (int i = 0; i < NT * N; i++) x[i] = qt_test_randf(&seed);
    for (int i = 0; i < NR * N + 1; i++) w[i] = qt_test_randf(&seed);
    const float *wu = w + 1; /* unaligned rows */
    qt_kernels_ref.dot_tile(x, N, NT, wu, N, NR, N, y0, NR);
    k->dot_tile(x, N, NT, wu, N, NR, N, y1, NR);
    for (int t = 0; t < NT; t++)
        for (int r = 0; r < NR; r++) {
            k->dot_tile(x + t * N, N, 1, wu + r * N, N, 1, N, y2 + t * NR + r, NR);
            cr_assert(eq(u32, qt_f32_bits(y1[t * NR + r]), qt_f32_bits(y2[t * NR + r])));
            double sabs = 0;
            for (int i = 0; i < N; i++) sabs += fabs((double)x[t * N + i] * wu[r * N + i]);
            cr_assert(le(dbl, fabs((double)y0[t * NR + r] - y1[t * NR + r]),
                         MATMUL_REL_TOL * sabs + MATMUL_ABS_TOL));
        }
}

/* ---- spec rules checked directly ----------------------------------------- */

Test(quant, nf4_ref_follows_spec_rules)
{
    /* absmax per block, r = 1/absmax once, xn = f32(x*r), code = count of
     * thresholds below, NaN -> 0, odd padding. Checked element by element
     * with the rule written here, independent of the kernel. */
    unsigned long long seed = qt_test_seed(DEFAULT_SEED + 2);
    const size_t B = 64, n = 40 * B + 33;
    srcbuf s = src_new(n);
    fill_adversarial(&s, B, &seed);
    uint8_t *c = malloc(n);
    float *am = malloc(qt_n_blocks(n, B) * 4);
    cr_assert(eq(int, qt_nf4_quantize(NULL, QT_SCHEME_NF4, QT_SRC_F32, s.f32, n, B, c, am), QT_OK));
    for (size_t j = 0; j < qt_n_blocks(n, B); j++) {
        float m = 0;
        for (size_t i = j * B; i < n && i < (j + 1) * B; i++)
            if (fabsf(s.f32[i]) > m) m = fabsf(s.f32[i]);
        cr_assert(eq(u32, qt_f32_bits(am[j]), qt_f32_bits(m)), "absmax %zu", j);
        float r = 1.0f / m;
        for (size_t i = j * B; i < (j + 1) * B && i < n + (n & 1); i++) {
            float xn = (i < n ? s.f32[i] : 0.0f) * r;
            int want = 0;
            for (int q = 0; q < 15; q++) want += xn > qt_nf4_thresholds[q];
            int got = (i & 1) ? (c[i / 2] & 15) : (c[i / 2] >> 4);
            cr_assert(eq(int, got, want), "element %zu xn %a", i, (double)xn);
        }
    }
    free(c);
    free(am);
    src_free(&s);
}

/* dQuantize<0> exactly as spec §3.1 writes the CUDA search. */
static int dq8_literal(const float *code, float xn)
{
    int pivot = 127, up = 255, lo = 0;
    float lower = -1.0f, upper = 1.0f, val = code[127];
    for (int step = 64; step >= 1; step >>= 1) {
        if (xn > val) {
            lo = pivot;
            lower = val;
            pivot += step;
        } else {
            up = pivot;
            upper = val;
            pivot -= step;
        }
        val = code[pivot];
    }
    if (up == 255) upper = code[255];
    if (lo == 0) lower = code[0];
    if (xn > val) {
        volatile float m = upper + val;
        m = m * 0.5f;
        return xn > m ? up : pivot;
    }
    volatile float m = lower + val;
    m = m * 0.5f;
    return xn < m ? lo : pivot;
}

Test(quant, dq8_search_equals_literal_cuda_search)
{
    const float *m = qt_dynamic_map;
    unsigned long long seed = qt_test_seed(DEFAULT_SEED + 8);
    for (int k = 0; k < 256; k++) {
        float pts[8] = {m[k], nextafterf(m[k], -INFINITY), nextafterf(m[k], INFINITY), 0, 0, 0, 0, 0};
        if (k < 255) {
            float mid = (m[k] + m[k + 1]) * 0.5f;
            pts[3] = mid;
            pts[4] = nextafterf(mid, -INFINITY);
            pts[5] = nextafterf(mid, INFINITY);
        }
        for (int i = 0; i < 6; i++)
            cr_assert(eq(int, qt_dq8_code(m, pts[i]), dq8_literal(m, pts[i])), "k %d point %d", k, i);
    }
    float specials[] = {NAN, -NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 1.0f, -1.0f, 2.0f, -2.0f, 1e-30f};
    for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++)
        cr_assert(eq(int, qt_dq8_code(m, specials[i]), dq8_literal(m, specials[i])));
    for (int i = 0; i < 2000000; i++) {
        float x = qt_test_randf(&seed) * ((i & 3) == 0 ? 1e-4f : 1.0f);
        if ((i & 15) == 1) x = qt_f32_from_bits((uint32_t)qt_test_rand(&seed));
        int a = qt_dq8_code(m, x), b = dq8_literal(m, x);
        if (a != b) cr_assert(eq(int, a, b), "x %a", (double)x);
    }
}

Test(quant, dq8_search_tie_rule)
{
    /* dQuantize<0>: a value on the f32 midpoint f32(f32(a+b)*0.5) of two
     * neighbours goes to the even index; otherwise to the nearer one. */
    const float *m = qt_dynamic_map;
    for (int k = 0; k < 255; k++) {
        float mid = (m[k] + m[k + 1]) * 0.5f;
        int even = (k % 2 == 0) ? k : k + 1;
        cr_assert(eq(int, qt_dq8_code(m, mid), even), "midpoint %d", k);
        cr_assert(eq(int, qt_dq8_code(m, nextafterf(mid, -INFINITY)), k), "below midpoint %d", k);
        cr_assert(eq(int, qt_dq8_code(m, nextafterf(mid, INFINITY)), k + 1), "above %d", k);
        cr_assert(eq(int, qt_dq8_code(m, m[k]), k));
    }
    cr_assert(eq(int, qt_dq8_code(m, NAN), 0));
    cr_assert(eq(int, qt_dq8_code(m, 5.0f), 255));
    cr_assert(eq(int, qt_dq8_code(m, -5.0f), 0));
}

/* ---- double quantization -------------------------------------------------- */

Test(dq, mean_is_correctly_rounded)
{
    float mean;
    const float one_ulp = nextafterf(1.0f, 2.0f);
    float a[2] = {1.0f, 2.0f};
    cr_assert(eq(int, qt_dq_mean(a, 2, &mean), QT_OK));
    cr_assert(eq(flt, mean, 1.5f));
    float b[2] = {1.0f, one_ulp}; /* 1 + ulp/2: tie -> even -> 1.0 */
    qt_dq_mean(b, 2, &mean);
    cr_assert(eq(flt, mean, 1.0f));
    float c[2] = {one_ulp, nextafterf(one_ulp, 2.0f)}; /* 1 + 1.5 ulp: tie -> 1 + 2 ulp */
    qt_dq_mean(c, 2, &mean);
    cr_assert(eq(flt, mean, nextafterf(one_ulp, 2.0f)));
    float d[3] = {1.0f, 1.0f, one_ulp}; /* 1 + ulp/3 -> 1.0 */
    qt_dq_mean(d, 3, &mean);
    cr_assert(eq(flt, mean, 1.0f));
    float e[2] = {FLT_MAX, FLT_MAX};
    qt_dq_mean(e, 2, &mean);
    cr_assert(eq(flt, mean, FLT_MAX));
    float f[2] = {FLT_TRUE_MIN, 0.0f}; /* half the smallest subnormal: tie -> 0 */
    qt_dq_mean(f, 2, &mean);
    cr_assert(eq(flt, mean, 0.0f));
    float g[3] = {FLT_TRUE_MIN, FLT_TRUE_MIN, 0.0f}; /* 2/3 -> 1 subnormal */
    qt_dq_mean(g, 3, &mean);
    cr_assert(eq(flt, mean, FLT_TRUE_MIN));
    float h[3] = {1e30f, 1e-30f, 3.0f}; /* 1e30/3 exactly rounded */
    qt_dq_mean(h, 3, &mean);
    cr_assert(eq(flt, mean, (float)((double)1e30f / 3.0))); /* not near a tie */
    float bad[2] = {1.0f, INFINITY};
    cr_assert(eq(int, qt_dq_mean(bad, 2, &mean), QT_ERR_NUMERIC));
    cr_assert(eq(int, qt_dq_mean(bad, 0, &mean), QT_ERR_ARG));
    /* random values in one binade range: long double sums them exactly */
    unsigned long long seed = qt_test_seed(DEFAULT_SEED + 3);
    for (int rep = 0; rep < 50; rep++) {
        size_t n = 1 + qt_test_rand(&seed) % 5000;
        float *v = malloc(n * 4);
        long double s = 0;
        for (size_t i = 0; i < n; i++) {
            v[i] = fabsf(qt_test_gauss(&seed)) * 0.05f + 1e-3f;
            s += v[i];
        }
        qt_dq_mean(v, n, &mean);
        long double exact = s / (long double)n;
        float want = (float)exact;
        /* double rounding could only matter within 2^-40 of a tie */
        cr_assert(eq(u32, qt_f32_bits(mean), qt_f32_bits(want)), "n %zu", n);
        free(v);
    }
}

/* The AVX2 sum of the mean (two vector passes when the nonzero values span
 * at most QT_DQ_MEAN_WIN binades) against the per-exponent tables (the ref
 * ISA): n past several flushes and not a multiple of 8; spans of 1, 20 and
 * 24 binades (vector path) and 25, 40 (tables); zeros, -0.0, subnormals. */
Test(dq, mean_vector_sum_equals_tables)
{
    unsigned long long seed = qt_test_seed(DEFAULT_SEED + 9);
    const size_t n = 3 * 4096 + 1001;
    const int spans[] = {1, 20, 24, 25, 40};
    float *v = malloc(n * 4);
    for (size_t si = 0; si < sizeof spans / sizeof spans[0]; si++)
        for (int sub = 0; sub <= 1; sub++) {
            const float lo = sub ? FLT_TRUE_MIN * 3 : 1e-3f;
            for (size_t i = 0; i < n; i++) { /* lo .. lo * 2^span, spread in log */
                float u = (float)(qt_test_rand(&seed) % 1000000) / 1000000.0f;
                v[i] = lo * exp2f(u * (float)spans[si]);
            }
            v[0] = lo;
            v[1] = ldexpf(lo, spans[si]) * 0.999f;
            v[7] = 0.0f;
            v[n - 1] = -0.0f;
            float m_ref, m_simd;
            bool have = false;
            cr_assert(eq(int, qt_isa_force(QT_ISA_REF), QT_OK));
            cr_assert(eq(int, qt_dq_mean(v, n, &m_ref), QT_OK));
            for (int isa = QT_ISA_AVX2; isa <= QT_ISA_AVX512; isa++) {
                if (!qt_isa_supported((qt_isa)isa) || qt_isa_force((qt_isa)isa) != QT_OK) continue;
                cr_assert(eq(int, qt_dq_mean(v, n, &m_simd), QT_OK));
                cr_assert(eq(u32, qt_f32_bits(m_simd), qt_f32_bits(m_ref)), "span %d sub %d %s",
                          spans[si], sub, qt_isa_name((qt_isa)isa));
                have = true;
            }
            if (!have) cr_log_warn("no AVX2: the vector sum is not exercised");
        }
    /* negative and non-finite values are still refused */
    v[5] = -1.0f;
    float m;
    cr_assert(eq(int, qt_dq_mean(v, n, &m), QT_ERR_ARG));
    v[5] = INFINITY;
    cr_assert(eq(int, qt_dq_mean(v, n, &m), QT_ERR_NUMERIC));
    free(v);
}

Test(dq, nested_roundtrip_follows_section5)
{
    unsigned long long seed = qt_test_seed(DEFAULT_SEED + 4);
    const size_t nb = 3 * 256 + 45;
    float *am = malloc(nb * 4), *back = malloc(nb * 4);
    uint8_t *q = malloc(nb);
    float nested[4], offset;
    for (size_t i = 0; i < nb; i++) am[i] = fabsf(qt_test_gauss(&seed)) * 0.02f + 0.01f;
    am[300] = 0.9f; /* an outlier in group 1 */
    cr_assert(eq(int, qt_dq_quantize(am, nb, q, nested, &offset), QT_OK));
    float mean;
    qt_dq_mean(am, nb, &mean);
    cr_assert(eq(flt, offset, mean));
    qt_dq_dequantize(q, nb, nested, offset, NULL, back);
    for (size_t g = 0; g < qt_dq_n_nested(nb); g++) {
        /* nested absmax = max |absmax - offset| of the group */
        float m = 0;
        for (size_t j = g * 256; j < nb && j < (g + 1) * 256; j++) {
            float c = am[j] - offset;
            if (fabsf(c) > m) m = fabsf(c);
        }
        cr_assert(eq(flt, nested[g], m));
    }
    for (size_t j = 0; j < nb; j++) {
        volatile float prod = qt_dynamic_map[q[j]] * nested[j / 256];
        volatile float want = prod + offset;
        cr_assert(eq(u32, qt_f32_bits(back[j]), qt_f32_bits(want)));
        cr_assert(le(flt, fabsf(back[j] - am[j]), (float)DQ_REL_ERR * nested[j / 256]), "j %zu", j);
    }
    /* edge: one group, all equal -> centered 0, nested 0, codes 0, A = offset */
    float eq4[4] = {0.5f, 0.5f, 0.5f, 0.5f};
    uint8_t q4[4];
    float n4[1];
    cr_assert(eq(int, qt_dq_quantize(eq4, 4, q4, n4, &offset), QT_OK));
    uint8_t z4[4] = {0, 0, 0, 0};
    cr_assert(eq(u8[4], q4, z4));
    cr_assert(eq(flt, n4[0], 0.0f));
    cr_assert(eq(flt, offset, 0.5f));
    qt_dq_dequantize(q4, 4, n4, offset, NULL, back);
    cr_assert(eq(flt, back[0], 0.5f));
    free(am);
    free(back);
    free(q);
}

/* ---- determinism ----------------------------------------------------------- */

Test(quant, identical_bytes_for_1_and_2_threads)
{
    unsigned long long seed = qt_test_seed(DEFAULT_SEED + 5);
    const size_t n = 64 * 4096 + 31;
    srcbuf s = src_new(n);
    fill_adversarial(&s, 64, &seed);
    for (size_t i = 0; i < n; i++) /* double quant needs finite absmax */
        if (!isfinite(s.f32[i])) s.f32[i] = 0.5f;
    src_fill_narrow(&s);
    size_t nb = qt_n_blocks(n, 64);
    uint8_t *c[2], *dqc[2];
    float *a[2], off[2], nest[2][32];
    unsigned char *q8[2];
    for (int th = 0; th < 2; th++) {
        set_threads(th + 1);
        c[th] = malloc(n);
        a[th] = malloc(nb * 4);
        dqc[th] = malloc(nb);
        q8[th] = malloc(qt_q8_bytes(n, 32));
        cr_assert(eq(int, qt_nf4_quantize(NULL, QT_SCHEME_NF4, QT_SRC_BF16, s.bf16, n, 64, c[th], a[th]),
                     QT_OK));
        cr_assert(eq(int, qt_dq_quantize(a[th], nb, dqc[th], nest[th], &off[th]), QT_OK));
        cr_assert(eq(int, qt_q8_quantize(NULL, QT_SRC_F16, s.f16, n, 32, q8[th]), QT_OK));
    }
    set_threads(2);
    cr_assert(eq(int, memcmp(c[0], c[1], qt_nf4_bytes(n)), 0));
    cr_assert(eq(int, memcmp(a[0], a[1], nb * 4), 0));
    cr_assert(eq(int, memcmp(dqc[0], dqc[1], nb), 0));
    cr_assert(eq(int, memcmp(nest[0], nest[1], qt_dq_n_nested(nb) * 4), 0));
    cr_assert(eq(u32, qt_f32_bits(off[0]), qt_f32_bits(off[1])));
    cr_assert(eq(int, memcmp(q8[0], q8[1], qt_q8_bytes(n, 32)), 0));
    /* and the same bytes on every ISA */
    for (int isa = 0; isa < QT_ISA_COUNT; isa++) {
        const qt_kernels *k = qt_kernels_for((qt_isa)isa);
        if (!k) continue;
        cr_assert(eq(int, qt_nf4_quantize(k, QT_SCHEME_NF4, QT_SRC_BF16, s.bf16, n, 64, c[1], a[1]),
                     QT_OK));
        cr_assert(eq(int, memcmp(c[0], c[1], qt_nf4_bytes(n)), 0), "%s", qt_isa_name((qt_isa)isa));
    }
    for (int th = 0; th < 2; th++) {
        free(c[th]);
        free(a[th]);
        free(dqc[th]);
        free(q8[th]);
    }
    src_free(&s);
}

/* ---- matmul and dequantize over every scheme ------------------------------- */

/* A quantized weight built with the library, owning its buffers. */
typedef struct built {
    qt_qweight w;
    void *bufs[4];
} built;

static void built_free(built *b)
{
    for (int i = 0; i < 4; i++) free(b->bufs[i]);
}

static built build_weight(qt_scheme s, bool nested, size_t n_out, size_t n_in, size_t B,
                          const float *wf)
{
    built b;
    memset(&b, 0, sizeof b);
    size_t n = n_out * n_in, nb = B ? qt_n_blocks(n, B) : 0;
    b.w.scheme = s;
    b.w.n_out = n_out;
    b.w.n_in = n_in;
    b.w.block_size = B;
    switch (s) {
    case QT_SCHEME_NF4:
    case QT_SCHEME_FP4: {
        uint8_t *codes = malloc(qt_nf4_bytes(n));
        float *am = malloc(nb * 4);
        cr_assert(eq(int, qt_nf4_quantize(NULL, s, QT_SRC_F32, wf, n, B, codes, am), QT_OK));
        b.bufs[0] = codes;
        b.bufs[1] = am;
        b.w.data = codes;
        b.w.absmax = am;
        if (nested) {
            uint8_t *q = malloc(nb);
            float *ne = malloc(qt_dq_n_nested(nb) * 4);
            cr_assert(eq(int, qt_dq_quantize(am, nb, q, ne, &b.w.nested_offset), QT_OK));
            b.bufs[2] = q;
            b.bufs[3] = ne;
            b.w.absmax_q = q;
            b.w.nested_absmax = ne;
        }
        break;
    }
    case QT_SCHEME_INT8_BLOCKWISE: {
        uint8_t *codes = malloc(n);
        float *am = malloc(nb * 4);
        cr_assert(eq(int, qt_blockwise8_quantize(NULL, QT_SRC_F32, wf, n, B, codes, am), QT_OK));
        b.bufs[0] = codes;
        b.bufs[1] = am;
        b.w.data = codes;
        b.w.absmax = am;
        break;
    }
    case QT_SCHEME_Q8: {
        void *d = malloc(qt_q8_bytes(n, B));
        cr_assert(eq(int, qt_q8_quantize(NULL, QT_SRC_F32, wf, n, B, d), QT_OK));
        b.bufs[0] = d;
        b.w.data = d;
        break;
    }
    case QT_SCHEME_INT8: {
        int8_t *cb = malloc(n);
        float *scb = malloc(n_out * 4);
        cr_assert(eq(int, qt_int8_quantize(NULL, QT_SRC_F32, wf, n_out, n_in, cb, scb), QT_OK));
        b.bufs[0] = cb;
        b.bufs[1] = scb;
        b.w.data = cb;
        b.w.scb = scb;
        break;
    }
    case QT_SCHEME_BF16:
    case QT_SCHEME_FP16: {
        uint16_t *h = malloc(n * 2);
        for (size_t i = 0; i < n; i++)
            h[i] = s == QT_SCHEME_BF16 ? qt_fp32_to_bf16(wf[i]) : qt_fp32_to_fp16(wf[i]);
        b.bufs[0] = h;
        b.w.data = h;
        break;
    }
    case QT_SCHEME_Q4_0: case QT_SCHEME_Q4_1: case QT_SCHEME_Q5_0: case QT_SCHEME_Q5_1:
    case QT_SCHEME_Q2_K: case QT_SCHEME_Q3_K: case QT_SCHEME_Q4_K: case QT_SCHEME_Q5_K:
    case QT_SCHEME_Q6_K: { /* GGML block types: rows of whole blocks */
        unsigned char *d = malloc(n_out * qt_blk_row_bytes(s, n_in) + 1);
        cr_assert(eq(int, qt_blk_quantize(NULL, s, QT_SRC_F32, wf, n_out, n_in, false, d + 1,
                                          NULL), QT_OK));
        b.bufs[0] = d;
        b.w.data = d + 1; /* odd address: the unaligned path */
        break;
    }
    default: {
        /* fp32 at an odd address: exercises the unaligned path */
        unsigned char *p = malloc(n * 4 + 1);
        memcpy(p + 1, wf, n * 4);
        b.bufs[0] = p;
        b.w.data = p + 1;
        break;
    }
    }
    return b;
}

Test(quant, nf4_nested_dequant_is_section5_with_straddling_rows)
{
    unsigned long long seed = qt_test_seed(DEFAULT_SEED + 6);
    const size_t n_out = 9, n_in = 172, n = n_out * n_in, B = 64;
    float *wf = malloc(n * 4), *dq = malloc(n * 4);
    for (size_t i = 0; i < n; i++) wf[i] = qt_test_gauss(&seed) * 0.1f;
    built b = build_weight(QT_SCHEME_NF4, true, n_out, n_in, B, wf);
    cr_assert(eq(int, qt_dequantize(NULL, &b.w, QT_SRC_F32, dq), QT_OK));
    const uint8_t *codes = b.w.data;
    const float *ne = b.w.nested_absmax;
    for (size_t i = 0; i < n; i++) {
        size_t j = i / B;
        volatile float p = qt_dynamic_map[b.w.absmax_q[j]] * ne[j / 256];
        volatile float A = p + b.w.nested_offset;
        int c = (i & 1) ? (codes[i / 2] & 15) : (codes[i / 2] >> 4);
        volatile float want = qt_nf4_map[c] * A;
        cr_assert(eq(u32, qt_f32_bits(dq[i]), qt_f32_bits(want)), "element %zu", i);
        cr_assert(le(flt, fabsf(dq[i] - wf[i]), (float)NF4_MAX_HALF_GAP * A * 1.01f));
    }
    /* bf16 output = RNE of the fp32 values */
    uint16_t *h = malloc(n * 2);
    cr_assert(eq(int, qt_dequantize(NULL, &b.w, QT_SRC_BF16, h), QT_OK));
    for (size_t i = 0; i < n; i++) cr_assert(eq(u16, h[i], qt_fp32_to_bf16(dq[i])));
    /* every ISA dequantizes to the same bits */
    for (int isa = 0; isa < QT_ISA_COUNT; isa++) {
        const qt_kernels *k = qt_kernels_for((qt_isa)isa);
        if (!k) continue;
        float *d2 = malloc(n * 4);
        cr_assert(eq(int, qt_dequantize(k, &b.w, QT_SRC_F32, d2), QT_OK));
        cr_assert(eq(int, memcmp(d2, dq, n * 4), 0), "%s", qt_isa_name((qt_isa)isa));
        free(d2);
    }
    built_free(&b);
    free(wf);
    free(dq);
    free(h);
}

Test(quant, matmul_matches_float64_reference_for_every_scheme)
{
    unsigned long long seed = qt_test_seed(DEFAULT_SEED + 7);
    const size_t n_out = 37, n_in = 172, n_tok = 5, n = n_out * n_in;
    float *wf = malloc(n * 4), *x = malloc(n_tok * n_in * 4), *dq = malloc(n * 4);
    float *y = malloc(n_tok * n_out * 4), *y1 = malloc(n_tok * n_out * 4);
    for (size_t i = 0; i < n; i++) wf[i] = qt_test_gauss(&seed) * 0.05f;
    for (size_t i = 0; i < n_tok * n_in; i++) x[i] = qt_test_gauss(&seed);
    struct { qt_scheme s; bool nested; size_t B; } cases[] = {
        {QT_SCHEME_NF4, false, 64}, {QT_SCHEME_NF4, true, 64},  {QT_SCHEME_FP4, true, 128},
        {QT_SCHEME_FP4, false, 32}, {QT_SCHEME_INT8_BLOCKWISE, false, 64},
        {QT_SCHEME_Q8, false, 32},  {QT_SCHEME_Q8, false, 64},  {QT_SCHEME_INT8, false, 0},
        {QT_SCHEME_BF16, false, 0}, {QT_SCHEME_FP16, false, 0}, {QT_SCHEME_FP32, false, 0},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        built b = build_weight(cases[ci].s, cases[ci].nested, n_out, n_in, cases[ci].B, wf);
        cr_assert(eq(int, qt_qweight_check(&b.w), QT_OK));
        cr_assert(eq(int, qt_dequantize(&qt_kernels_ref, &b.w, QT_SRC_F32, dq), QT_OK));
        /* the dequantized weight is close to the original */
        double err = 0, ref = 0;
        for (size_t i = 0; i < n; i++) {
            err += ((double)dq[i] - wf[i]) * ((double)dq[i] - wf[i]);
            ref += (double)wf[i] * wf[i];
        }
        cr_assert(lt(dbl, sqrt(err / ref), 0.2), "scheme %d relative rmse %g", cases[ci].s,
                  sqrt(err / ref));
        for (int isa = 0; isa < QT_ISA_COUNT; isa++) {
            const qt_kernels *k = qt_kernels_for((qt_isa)isa);
            if (!k) continue;
            set_threads(2);
            cr_assert(eq(int, qt_matmul(k, &b.w, x, n_tok, y), QT_OK));
            set_threads(1);
            cr_assert(eq(int, qt_matmul(k, &b.w, x, n_tok, y1), QT_OK));
            set_threads(2);
            cr_assert(eq(int, memcmp(y, y1, n_tok * n_out * 4), 0), "threads, scheme %d",
                      cases[ci].s);
            for (size_t t = 0; t < n_tok; t++)
                for (size_t o = 0; o < n_out; o++) {
                    double s = 0, sabs = 0;
                    for (size_t i = 0; i < n_in; i++) {
                        s += (double)x[t * n_in + i] * dq[o * n_in + i];
                        sabs += fabs((double)x[t * n_in + i] * dq[o * n_in + i]);
                    }
                    cr_assert(le(dbl, fabs(y[t * n_out + o] - s), MATMUL_REL_TOL * sabs + MATMUL_ABS_TOL),
                              "scheme %d isa %s t %zu o %zu", cases[ci].s,
                              qt_isa_name((qt_isa)isa), t, o);
                }
        }
        built_free(&b);
    }
    free(wf);
    free(x);
    free(dq);
    free(y);
    free(y1);
}

Test(quant, bad_arguments_are_rejected)
{
    float x[4] = {0};
    uint8_t c[2];
    float a[1];
    cr_assert(eq(int, qt_nf4_quantize(NULL, QT_SCHEME_NF4, QT_SRC_F32, x, 4, 48, c, a), QT_ERR_ARG));
    cr_assert(eq(int, qt_nf4_quantize(NULL, QT_SCHEME_Q8, QT_SRC_F32, x, 4, 64, c, a), QT_ERR_ARG));
    cr_assert(eq(int, qt_nf4_quantize(NULL, QT_SCHEME_NF4, QT_SRC_F32, x, 0, 64, c, a), QT_ERR_ARG));
    qt_qweight w;
    memset(&w, 0, sizeof w);
    w.scheme = QT_SCHEME_NF4;
    w.n_out = w.n_in = 2;
    w.block_size = 64;
    w.data = c;
    cr_assert(eq(int, qt_qweight_check(&w), QT_ERR_ARG)); /* no absmax */
    w.absmax = a;
    cr_assert(eq(int, qt_qweight_check(&w), QT_OK));
    w.n_out = SIZE_MAX / 2;
    cr_assert(eq(int, qt_qweight_check(&w), QT_ERR_OVERFLOW));
}

/* ---- golden files from transformers + bitsandbytes ------------------------ */

typedef struct stfile {
    unsigned char *buf;
    size_t size, hlen;
} stfile;

static bool st_load(const char *path, stfile *f)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return false;
    fseek(fp, 0, SEEK_END);
    f->size = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    f->buf = malloc(f->size + 1);
    bool ok = fread(f->buf, 1, f->size, fp) == f->size;
    fclose(fp);
    f->buf[f->size] = 0;
    f->hlen = (size_t)qt_load_le64(f->buf);
    return ok && f->hlen + 8 <= f->size;
}

/* The bytes of tensor name (a tiny lookup in the JSON header:
 * "name":{..."data_offsets":[a,b]}), or NULL. */
static const unsigned char *st_find(const stfile *f, const char *name, size_t *len)
{
    char key[256];
    snprintf(key, sizeof key, "\"%s\":{", name);
    char save = (char)f->buf[8 + f->hlen];
    f->buf[8 + f->hlen] = 0;
    const char *h = (const char *)f->buf + 8, *p = strstr(h, key);
    const char *end = p ? strchr(p, '}') : NULL;
    const char *d = p ? strstr(p, "\"data_offsets\":[") : NULL;
    f->buf[8 + f->hlen] = (unsigned char)save;
    if (!d || d > end) return NULL;
    unsigned long long a, b;
    if (sscanf(d, "\"data_offsets\":[%llu,%llu]", &a, &b) != 2 || b < a ||
        8 + f->hlen + b > f->size)
        return NULL;
    *len = (size_t)(b - a);
    return f->buf + 8 + f->hlen + a;
}

Test(golden, transformers_nf4_dq_matches_qtool)
{
    QT_NEED_DATA();
    char p1[512], p2[512];
    stfile g, m;
    if (!st_load(qt_test_data_path(p1, sizeof p1, "golden/transformers-bnb-nf4-dq/model.safetensors"), &g) ||
        !st_load(qt_test_data_path(p2, sizeof p2, "models/stories260K-f32/model.safetensors"), &m))
        cr_skip_test("golden nf4 files absent");
    const char *projs[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                           "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                           "mlp.down_proj"};
    int checked = 0;
    for (int layer = 0; layer < 16; layer++)
        for (size_t pi = 0; pi < sizeof projs / sizeof projs[0]; pi++) {
            char name[200], key[256];
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer, projs[pi]);
            size_t wlen, glen, alen, nlen, qmlen, nmlen, jlen;
            const unsigned char *wsrc = st_find(&m, name, &wlen);
            const unsigned char *gw = st_find(&g, name, &glen);
            if (!wsrc || !gw) continue;
            size_t n = wlen / 4, nb = qt_n_blocks(n, 64);
            cr_assert(eq(sz, glen, qt_nf4_bytes(n)));
            snprintf(key, sizeof key, "%s.absmax", name);
            const unsigned char *gq = st_find(&g, key, &alen);
            snprintf(key, sizeof key, "%s.nested_absmax", name);
            const unsigned char *gn = st_find(&g, key, &nlen);
            snprintf(key, sizeof key, "%s.quant_map", name);
            const unsigned char *gqm = st_find(&g, key, &qmlen);
            snprintf(key, sizeof key, "%s.nested_quant_map", name);
            const unsigned char *gnm = st_find(&g, key, &nmlen);
            snprintf(key, sizeof key, "%s.quant_state.bitsandbytes__nf4", name);
            const unsigned char *gj = st_find(&g, key, &jlen);
            cr_assert(gq && gn && gqm && gnm && gj);
            cr_assert(eq(sz, alen, nb));
            /* quant maps: exactly ours */
            for (int i = 0; i < 16; i++)
                cr_assert(eq(u32, qt_load_le32(gqm + 4 * i), qt_f32_bits(qt_nf4_map[i])));
            for (int i = 0; i < 256; i++)
                cr_assert(eq(u32, qt_load_le32(gnm + 4 * i), qt_f32_bits(qt_dynamic_map[i])));
            /* packed codes: byte for byte, on every ISA */
            uint8_t *codes = malloc(glen);
            float *am = malloc(nb * 4);
            for (int isa = 0; isa < QT_ISA_COUNT; isa++) {
                const qt_kernels *k = qt_kernels_for((qt_isa)isa);
                if (!k) continue;
                cr_assert(eq(int, qt_nf4_quantize(k, QT_SCHEME_NF4, QT_SRC_F32, wsrc, n, 64, codes, am),
                             QT_OK));
                cr_assert(eq(int, memcmp(codes, gw, glen), 0), "%s on %s", name,
                          qt_isa_name((qt_isa)isa));
            }
            /* nested part given the file's own offset */
            char *js = malloc(jlen + 1);
            memcpy(js, gj, jlen);
            js[jlen] = 0;
            const char *o = strstr(js, "\"nested_offset\": ");
            cr_assert(not(eq(ptr, (void *)o, NULL)));
            float offset = strtof(o + 17, NULL);
            uint8_t *q = malloc(nb);
            float nested[8];
            cr_assert(eq(int, qt_dq_quantize_with_offset(am, nb, offset, NULL, q, nested), QT_OK));
            cr_assert(eq(int, memcmp(q, gq, nb), 0), "%s nested codes", name);
            for (size_t i = 0; i < nlen / 4; i++)
                cr_assert(eq(u32, qt_f32_bits(nested[i]), qt_load_le32(gn + 4 * i)));
            /* our correctly rounded mean is within 1 ulp of torch's */
            float mean;
            qt_dq_mean(am, nb, &mean);
            cr_assert(le(u32, (uint32_t)abs((int)qt_f32_bits(mean) - (int)qt_f32_bits(offset)), 1u));
            free(js);
            free(q);
            free(codes);
            free(am);
            checked++;
        }
    cr_assert(gt(int, checked, 0));
    cr_log_info("checked %d nf4 weights against the golden file", checked);
    free(g.buf);
    free(m.buf);
}

Test(golden, transformers_int8_matches_qtool)
{
    QT_NEED_DATA();
    char p1[512], p2[512];
    stfile g, m;
    if (!st_load(qt_test_data_path(p1, sizeof p1, "golden/transformers-bnb-int8/model.safetensors"), &g) ||
        !st_load(qt_test_data_path(p2, sizeof p2, "models/stories260K-f32/model.safetensors"), &m))
        cr_skip_test("golden int8 files absent");
    int checked = 0;
    for (int layer = 0; layer < 16; layer++) {
        const char *projs[] = {"self_attn.q_proj", "self_attn.k_proj", "mlp.gate_proj",
                               "mlp.down_proj"};
        for (int pi = 0; pi < 4; pi++) {
            char name[200], key[256];
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer, projs[pi]);
            snprintf(key, sizeof key, "model.layers.%d.%s.SCB", layer, projs[pi]);
            size_t wlen, glen, slen;
            const unsigned char *wsrc = st_find(&m, name, &wlen);
            const unsigned char *gw = st_find(&g, name, &glen);
            const unsigned char *gs = st_find(&g, key, &slen);
            if (!wsrc || !gw || !gs) continue;
            size_t rows = slen / 4, cols = glen / rows;
            int8_t *cb = malloc(glen);
            float *scb = malloc(slen);
            for (int isa = 0; isa < QT_ISA_COUNT; isa++) {
                const qt_kernels *k = qt_kernels_for((qt_isa)isa);
                if (!k) continue;
                cr_assert(eq(int, qt_int8_quantize(k, QT_SRC_F32, wsrc, rows, cols, cb, scb), QT_OK));
                cr_assert(eq(int, memcmp(cb, gw, glen), 0), "%s CB", name);
                cr_assert(eq(int, memcmp(scb, gs, slen), 0), "%s SCB", name);
            }
            free(cb);
            free(scb);
            checked++;
        }
    }
    cr_assert(gt(int, checked, 0));
    free(g.buf);
    free(m.buf);
}

/* ---- fast searches: every bucket against the scalar definitions ----------- */

/* The SIMD 4-bit kernels find codes through bucket tables (kernels_avx512.c);
 * blocks led by 1.0 (absmax 1, r = 1) sweep xn over [-1, 1] densely and
 * around every threshold; all 65536 bf16 patterns too. */
Test(quant, quant4_sweeps_match_ref_on_every_isa)
{
    const size_t B = 64, per = B - 1;
    size_t nv = 0, cap = 2 * (0x3f800000u / 509 + 2) + 15 * 17 + 7 * 2 * 17 + 8;
    float *vals = malloc(cap * 4);
    for (uint32_t u = 0; u <= 0x3f800000u; u += 509) {
        vals[nv++] = qt_f32_from_bits(u);
        vals[nv++] = -qt_f32_from_bits(u);
    }
    for (int i = 0; i < 15 + 14; i++) {
        float t = i < 15 ? qt_nf4_thresholds[i] : (i & 1 ? -1 : 1) * qt_fp4_thresholds[(i - 15) / 2];
        for (int d = -8; d <= 8; d++) vals[nv++] = qt_f32_from_bits(qt_f32_bits(t) + (uint32_t)d);
    }
    vals[nv++] = 1.0f;
    vals[nv++] = -1.0f;
    vals[nv++] = NAN;
    size_t nblk = (nv + per - 1) / per, n = nblk * B;
    float *x = malloc(n * 4);
    for (size_t b = 0, k = 0; b < nblk; b++) {
        x[b * B] = 1.0f;
        for (size_t i = 1; i < B; i++) x[b * B + i] = k < nv ? vals[k++] : 0.5f;
    }
    uint16_t *bf = malloc(65536 * 2);
    for (uint32_t u = 0; u < 65536; u++) bf[u] = (uint16_t)u;
    uint8_t *c0 = malloc(n / 2), *c1 = malloc(n / 2);
    float *a0 = malloc(nblk * 4), *a1 = malloc(nblk * 4);
    for (int isa = 0; isa < QT_ISA_COUNT; isa++) {
        const qt_kernels *k = qt_kernels_for((qt_isa)isa);
        if (!k || isa == QT_ISA_REF) continue;
        for (int fp4 = 0; fp4 <= 1; fp4++) {
            qt_kernels_ref.quant4(fp4, QT_SRC_F32, x, n, B, NULL, c0, a0);
            k->quant4(fp4, QT_SRC_F32, x, n, B, NULL, c1, a1);
            cr_assert(eq(int, memcmp(c0, c1, n / 2), 0), "%s fp4 %d", qt_isa_name((qt_isa)isa), fp4);
            cr_assert(eq(int, memcmp(a0, a1, nblk * 4), 0));
            for (size_t B2 = 32; B2 <= 4096; B2 *= 2) {
                qt_kernels_ref.quant4(fp4, QT_SRC_BF16, bf, 65536, B2, NULL, c0, a0);
                k->quant4(fp4, QT_SRC_BF16, bf, 65536, B2, NULL, c1, a1);
                cr_assert(eq(int, memcmp(c0, c1, 32768), 0), "bf16 B %zu fp4 %d", B2, fp4);
                cr_assert(eq(int, memcmp(a0, a1, 65536 / B2 * 4), 0));
            }
        }
    }
    free(vals);
    free(x);
    free(bf);
    free(c0);
    free(c1);
    free(a0);
    free(a1);
}

/* The SIMD q8 kernels round with trunc(|v| + 0.5) (kernels_avx2.c,
 * kernels_avx512.c), exact except at |v| = 0.5 - 2^-25, which they fix up:
 * blocks led by 127 (d = 1, id = 1: v = x) sweep v over [-128, 128] and
 * +-8 ulps around every half-integer and that value; all 65536 bf16 patterns
 * too (NaN, Inf, subnormal d); block 32 (fp16 d) and 64 (fp32 d). */
Test(quant, q8_sweeps_match_ref_on_every_isa)
{
    const size_t per = 31;
    size_t nv = 0, cap = 2 * (0x43000000u / 4099 + 2) + 2 * 129 * 17 + 2 * 17 + 4;
    float *vals = malloc(cap * 4);
    for (uint32_t u = 0; u <= 0x43000000u; u += 4099) {
        vals[nv++] = qt_f32_from_bits(u);
        vals[nv++] = -qt_f32_from_bits(u);
    }
    for (int k = 0; k <= 128; k++)
        for (int d = -8; d <= 8; d++) {
            float h = qt_f32_from_bits(qt_f32_bits((float)k + 0.5f) + (uint32_t)d);
            vals[nv++] = h;
            vals[nv++] = -h;
        }
    for (int d = -8; d <= 8; d++) {
        vals[nv++] = qt_f32_from_bits(0x3effffffu + (uint32_t)d);
        vals[nv++] = -qt_f32_from_bits(0x3effffffu + (uint32_t)d);
    }
    vals[nv++] = NAN;
    vals[nv++] = -NAN;
    vals[nv++] = -0.0f;
    vals[nv++] = 127.0f;
    size_t nblk = (nv + per - 1) / per, n = nblk * 32;
    float *x = malloc(n * 4);
    for (size_t b = 0, k = 0; b < nblk; b++) {
        x[b * 32] = 127.0f;
        for (size_t i = 1; i < 32; i++) x[b * 32 + i] = k < nv ? vals[k++] : 0.5f;
    }
    uint16_t *bf = malloc(65536 * 2);
    for (uint32_t u = 0; u < 65536; u++) bf[u] = (uint16_t)u;
    const size_t cap_out = qt_q8_bytes(n > 65536 ? n : 65536, 32);
    unsigned char *q0 = malloc(cap_out), *q1 = malloc(cap_out);
    for (int isa = 0; isa < QT_ISA_COUNT; isa++) {
        const qt_kernels *k = qt_kernels_for((qt_isa)isa);
        if (!k || isa == QT_ISA_REF) continue;
        for (size_t B = 32; B <= 64; B *= 2) {
            qt_kernels_ref.q8_quant(QT_SRC_F32, x, n, B, q0);
            k->q8_quant(QT_SRC_F32, x, n, B, q1);
            cr_assert(eq(int, memcmp(q0, q1, qt_q8_bytes(n, B)), 0), "%s B %zu",
                      qt_isa_name((qt_isa)isa), B);
            qt_kernels_ref.q8_quant(QT_SRC_BF16, bf, 65536, B, q0);
            k->q8_quant(QT_SRC_BF16, bf, 65536, B, q1);
            cr_assert(eq(int, memcmp(q0, q1, qt_q8_bytes(65536, B)), 0), "%s bf16 B %zu",
                      qt_isa_name((qt_isa)isa), B);
        }
    }
    free(vals);
    free(x);
    free(bf);
    free(q0);
    free(q1);
}

#if defined(__x86_64__)
/* The dQuantize<0> bucket table (quant_internal.h): each boundary is the
 * last float of its code, and the AVX2 and AVX-512 nested blocks equal the scalar one
 * on a dense sweep of xn (blocks led by 1.0 with offset 0: r = 1), on every
 * midpoint +-4 ulps, NaN / Inf and a block whose reciprocal overflows. */
Test(dq, dq8_table_and_simd_blocks_match_search)
{
    static qt_dq8_tab tab;
    cr_assert(qt_dq8_tab_init(&tab));
    const float *m = qt_dynamic_map;
    for (int k = 0; k < 255; k++) {
        cr_assert(eq(int, qt_dq8_code(m, tab.bound[k]), k), "bound %d", k);
        cr_assert(eq(int, qt_dq8_code(m, nextafterf(tab.bound[k], INFINITY)), k + 1));
    }
    typedef void (*block_fn)(const qt_dq8_tab *, const float *, size_t, float, uint8_t *, float *);
    const block_fn fns[2] = {qt_dq_block_avx2, qt_dq_block_avx512};
    const qt_isa isas[2] = {QT_ISA_AVX2, QT_ISA_AVX512};
    for (int f = 0; f < 2; f++) {
    if (!qt_kernels_for(isas[f])) continue;
    size_t cap = 2 * (0x3f800000u / 251 + 2) + 255 * 9 + 16, nv = 0;
    float *vals = malloc(cap * 4);
    for (uint32_t u = 0; u <= 0x3f800000u; u += 251) {
        vals[nv++] = qt_f32_from_bits(u);
        vals[nv++] = -qt_f32_from_bits(u);
    }
    for (int k = 0; k < 255; k++) {
        float mid = (m[k] + m[k + 1]) * 0.5f;
        for (int d = -4; d <= 4; d++) vals[nv++] = qt_f32_from_bits(qt_f32_bits(mid) + (uint32_t)d);
    }
    float specials[] = {NAN, -NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 1.0f, -1.0f, 1e-30f, -1e-30f};
    for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++) vals[nv++] = specials[i];
    float blk[QT_DQ_BLOCK];
    uint8_t c0[QT_DQ_BLOCK], c1[QT_DQ_BLOCK];
    float n0, n1;
    for (size_t k = 0; k < nv;) {
        size_t len = 1;
        blk[0] = 1.0f;
        while (len < QT_DQ_BLOCK - (k % 7) && k < nv) blk[len++] = vals[k++]; /* partial blocks too */
        qt_dq_block_ref(blk, len, 0.0f, NULL, c0, &n0);
        fns[f](&tab, blk, len, 0.0f, c1, &n1);
        cr_assert(eq(int, memcmp(c0, c1, len), 0), "block at %zu", k);
        cr_assert(eq(u32, qt_f32_bits(n0), qt_f32_bits(n1)));
    }
    /* offset != 0, and a reciprocal that overflows (spread 1e-40) */
    for (size_t i = 0; i < 200; i++) blk[i] = 0.5f + (float)i * 1e-3f;
    qt_dq_block_ref(blk, 200, 0.55f, NULL, c0, &n0);
    fns[f](&tab, blk, 200, 0.55f, c1, &n1);
    cr_assert(eq(int, memcmp(c0, c1, 200), 0));
    for (size_t i = 0; i < 100; i++) blk[i] = (i % 3) ? 0.0f : 1e-40f;
    qt_dq_block_ref(blk, 100, 0.0f, NULL, c0, &n0);
    fns[f](&tab, blk, 100, 0.0f, c1, &n1);
    cr_assert(eq(int, memcmp(c0, c1, 100), 0));
    cr_assert(eq(u32, qt_f32_bits(n0), qt_f32_bits(n1)));
    free(vals);
    }
}
#endif

/* The mean over many parallel chunks, and the status of the first invalid
 * value in order (NaN/Inf -> QT_ERR_NUMERIC, negative -> QT_ERR_ARG). */
Test(dq, mean_parallel_chunks_and_error_order)
{
    unsigned long long seed = qt_test_seed(DEFAULT_SEED + 12);
    const size_t n = 300007;
    float *v = malloc(n * 4);
    long double s = 0;
    for (size_t i = 0; i < n; i++) {
        v[i] = (i % 1000 == 0) ? ((i & 1) ? -0.0f : 0.0f) : fabsf(qt_test_gauss(&seed)) * 0.05f + 1e-3f;
        s += v[i];
    }
    float want = (float)(s / (long double)n), mean;
    for (int th = 1; th <= 2; th++) {
        set_threads(th);
        cr_assert(eq(int, qt_dq_mean(v, n, &mean), QT_OK));
        cr_assert(eq(u32, qt_f32_bits(mean), qt_f32_bits(want)), "threads %d", th);
    }
    v[250000] = NAN;
    v[280000] = -1.0f;
    cr_assert(eq(int, qt_dq_mean(v, n, &mean), QT_ERR_NUMERIC));
    v[250000] = -2.0f;
    v[280000] = INFINITY;
    cr_assert(eq(int, qt_dq_mean(v, n, &mean), QT_ERR_ARG));
    set_threads(1);
    float small[3] = {-0.0f, 1.0f, 2.0f};
    cr_assert(eq(int, qt_dq_mean(small, 3, &mean), QT_OK));
    cr_assert(eq(flt, mean, 1.0f));
    free(v);
}

/* ---- the packed GEMM of qt_matmul (AVX2 / AVX-512) -------------------------- */

/* y = 0; y = fmaf(x[k], w[k], y) for k in order: the one summation order of
 * the packed GEMM (quant_internal.h), computed here element by element. */
static float fma_chain(const float *x, const float *w, size_t n)
{
    float s = 0.0f;
    for (size_t i = 0; i < n; i++) s = fmaf(x[i], w[i], s);
    return s;
}

ParameterizedTestParameters(quant_isa, gemm_is_one_fma_chain_for_any_tiling_and_threads)
{
    static qt_isa isas[] = {QT_ISA_AVX2, QT_ISA_AVX512};
    return cr_make_param_array(qt_isa, isas, sizeof isas / sizeof isas[0]);
}

/* Shapes around every edge (panel widths 16 / 32, tiles of 64 outputs or 4
 * panels, kc = 256 blocks, 6 / 12 token blocks, the 1-token path, token
 * chunks beyond the 512-token output stage), weights with
 * straddling blocks: bit-identical to fma_chain over the dequantized weight,
 * for 1, 2 and 3 threads, batched or one token at a time. */
ParameterizedTest(qt_isa *isa, quant_isa, gemm_is_one_fma_chain_for_any_tiling_and_threads)
{
    const qt_kernels *k;
    NEED_ISA(*isa, k);
    unsigned long long seed = qt_test_seed(DEFAULT_SEED + 11);
    struct { size_t n_out, n_in, n_tok; qt_scheme s; size_t B; } cases[] = {
        {1, 1, 1, QT_SCHEME_FP32, 0},        {37, 172, 5, QT_SCHEME_NF4, 64},
        {130, 520, 13, QT_SCHEME_BF16, 0},   {300, 257, 30, QT_SCHEME_FP32, 0},
        {129, 300, 1, QT_SCHEME_Q8, 32},     {256, 256, 2, QT_SCHEME_INT8, 0},
        {96, 700, 25, QT_SCHEME_FP16, 0},    {200, 172, 7, QT_SCHEME_FP4, 128},
        {65, 513, 12, QT_SCHEME_INT8_BLOCKWISE, 64}, {512, 96, 1, QT_SCHEME_NF4, 64},
        {70, 40, 1100, QT_SCHEME_BF16, 0}, /* token chunks of the output stage */
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const size_t n_out = cases[ci].n_out, n_in = cases[ci].n_in, n_tok = cases[ci].n_tok;
        const size_t n = n_out * n_in;
        float *wf = malloc(n * 4), *dq = malloc(n * 4), *x = malloc(n_tok * n_in * 4);
        float *want = malloc(n_tok * n_out * 4), *y[4];
        for (int v = 0; v < 4; v++) y[v] = malloc(n_tok * n_out * 4);
        for (size_t i = 0; i < n; i++) wf[i] = qt_test_gauss(&seed) * 0.05f;
        for (size_t i = 0; i < n_tok * n_in; i++) x[i] = qt_test_gauss(&seed);
        built b = build_weight(cases[ci].s, cases[ci].s == QT_SCHEME_NF4, n_out, n_in,
                               cases[ci].B, wf);
        cr_assert(eq(int, qt_dequantize(&qt_kernels_ref, &b.w, QT_SRC_F32, dq), QT_OK));
        for (size_t t = 0; t < n_tok; t++)
            for (size_t o = 0; o < n_out; o++)
                want[t * n_out + o] = fma_chain(x + t * n_in, dq + o * n_in, n_in);
        for (int th = 1; th <= 3; th++) {
            set_threads(th);
            cr_assert(eq(int, qt_matmul(k, &b.w, x, n_tok, y[th]), QT_OK));
        }
        set_threads(2);
        for (size_t t = 0; t < n_tok; t++)
            cr_assert(eq(int, qt_matmul(k, &b.w, x + t * n_in, 1, y[0] + t * n_out), QT_OK));
        for (int v = 0; v < 4; v++)
            for (size_t i = 0; i < n_tok * n_out; i++)
                cr_assert(eq(u32, qt_f32_bits(y[v][i]), qt_f32_bits(want[i])),
                          "%s case %zu variant %d: t %zu o %zu", qt_isa_name(*isa), ci, v,
                          i / n_out, i % n_out);
        built_free(&b);
        free(wf);
        free(dq);
        free(x);
        free(want);
        for (int v = 0; v < 4; v++) free(y[v]);
    }
}

/* The peak-FMA probe bounds what the GEMM does: the ISA's packed GEMM kernel
 * on panels and tokens that stay in L1 (48 tokens x 2 micro-panels x 256
 * columns, 100 times), timed in this thread's CPU time like the probe, must
 * not beat the probe by more than 10 %. A probe that waits on memory or on
 * the load of other processes (both happened: 1/3 of the AVX2 peak) reads
 * far below such a kernel. */
ParameterizedTestParameters(quant_isa, fma_probe_bounds_the_gemm_kernel)
{
    static qt_isa isas[] = {QT_ISA_AVX2, QT_ISA_AVX512};
    return cr_make_param_array(qt_isa, isas, sizeof isas / sizeof isas[0]);
}

ParameterizedTest(qt_isa *isa, quant_isa, fma_probe_bounds_the_gemm_kernel)
{
    const qt_kernels *k;
    NEED_ISA(*isa, k);
    const qt_mm_ops *ops = qt_mm_ops_for(k);
    const size_t n_tok = 48, kc = 256, n_pan = 2, nc = n_pan * ops->nr;
    float *x = qt_aligned_alloc(64, n_tok * kc * 4), *p = qt_aligned_alloc(64, kc * nc * 4);
    float *y = qt_aligned_alloc(64, n_tok * nc * 4);
    cr_assert(x && p && y);
    for (size_t i = 0; i < n_tok * kc; i++) x[i] = (float)(i % 7) * 0.125f;
    for (size_t i = 0; i < kc * nc; i++) p[i] = (float)(i % 5) * 0.25f;
    double best = INFINITY;
    for (int rep = 0; rep < 5; rep++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
        for (int r = 0; r < 100; r++) ops->gemm(x, kc, n_tok, p, n_pan, kc, nc, y, nc, r > 0);
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
        double dt = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
        if (dt < best) best = dt;
    }
    const double gemm = 100.0 * 2.0 * (double)(n_tok * nc * kc) / best / 1e9;
    double peak = 0.0; /* best of three probes, like the kernel's best of five */
    for (int rep = 0; rep < 3; rep++) {
        const double pk = qt_probe_fma_gflops(k, 1, 3);
        if (pk > peak) peak = pk;
    }
    cr_assert(gemm <= 1.1 * peak, "%s: gemm kernel %.1f GFLOP/s, probe %.1f", qt_isa_name(*isa),
              gemm, peak);
    qt_aligned_free(x);
    qt_aligned_free(p);
    qt_aligned_free(y);
}

/* The scheme table drives the matmul (quant.h, "adding a scheme"): every row
 * that takes weights has all its hooks, and every fused dot_rows of every
 * ISA gives the bits of qt_dot_rows_ref over the dequantized rows, for row
 * ranges that start and end inside blocks. */
Test(quant, scheme_hooks_complete_and_fused_dots_match_ref)
{
    unsigned long long seed = qt_test_seed(DEFAULT_SEED + 13);
    const size_t n_out = 37, max_in = 512;
    float *wf = malloc(n_out * max_in * 4), *dq = malloc(n_out * max_in * 4);
    float *x = malloc(max_in * 4);
    float want[8], got[8];
    for (size_t i = 0; i < n_out * max_in; i++) wf[i] = qt_test_gauss(&seed) * 0.05f;
    for (size_t i = 0; i < max_in; i++) x[i] = qt_test_gauss(&seed);
    for (size_t si = 0; si < qt_scheme_count(); si++) {
        const qt_scheme_info *info = qt_scheme_info_at(si);
        const qt_scheme_ops *so = info->ops;
        /* GGML block types need rows of whole blocks (2 K super-blocks) */
        bool blk = info->block_bytes && info->scheme != QT_SCHEME_Q8;
        const size_t n_in = blk ? max_in : 172;
        cr_assert(so && so->check && so->dq_range && so->byte_range, "%s", info->name);
        built b = build_weight(info->scheme, info->scheme == QT_SCHEME_NF4, n_out, n_in,
                               info->default_block, wf);
        cr_assert(eq(int, qt_qweight_check(&b.w), QT_OK), "%s", info->name);
        cr_assert(eq(int, qt_dequantize(&qt_kernels_ref, &b.w, QT_SRC_F32, dq), QT_OK));
        for (qt_isa isa = 0; isa < QT_ISA_COUNT; isa++) {
            const qt_kernels *k = qt_kernels_for(isa);
            qt_dot_rows_fn dot = k ? qt_mm_ops_for(k)->dot_rows[info->scheme] : NULL;
            if (!dot) continue;
            qt_dq_ctx c;
            qt_dq_ctx_init(&c, k, &b.w);
            for (size_t r0 = 0; r0 + 8 <= n_out; r0 += 7) {
                qt_dot_rows_ref(dq + r0 * n_in, n_in, 8, x, want);
                dot(&c, r0, 8, x, got);
                for (size_t j = 0; j < 8; j++)
                    cr_assert(eq(u32, qt_f32_bits(got[j]), qt_f32_bits(want[j])),
                              "%s %s row %zu", info->name, qt_isa_name(isa), r0 + j);
            }
        }
        built_free(&b);
    }
    free(wf);
    free(dq);
    free(x);
}

/* The fused decoding dots read 4-bit codes, int8 / q8 codes and bf16 / fp16
 * rows straight from storage on rows of whole blocks (n_in a multiple of 32
 * or 64; other shapes take the tile path, covered above): for every such shape, block
 * size, double quant or not, output rounding (round_to f32 / bf16 / fp16),
 * row ranges that cut the 16- and 64-row groups, and weights with a scale
 * too small for normal products (subnormal bf16 values), giving bf16 ties or
 * non-finite, the bits of qt_dot_rows_ref over qt_dequantize's rows on every
 * ISA, with each of the bf16 roundings of qt_round4. */
Test(quant, fused_dots_from_storage_match_ref)
{
    unsigned long long seed = qt_test_seed(DEFAULT_SEED + 15);
    struct { qt_scheme s; size_t n_out, n_in, B; bool nested; qt_src_type rt; int special; } cases[] = {
        {QT_SCHEME_NF4, 150, 256, 64, true, QT_SRC_BF16, 0},
        {QT_SCHEME_NF4, 70, 384, 64, false, QT_SRC_F32, 0},
        {QT_SCHEME_NF4, 37, 512, 128, true, QT_SRC_F16, 0},
        {QT_SCHEME_FP4, 100, 256, 32, true, QT_SRC_BF16, 0},
        {QT_SCHEME_FP4, 33, 4096, 4096, false, QT_SRC_F32, 0},
        {QT_SCHEME_NF4, 130, 2304, 256, true, QT_SRC_BF16, 0}, /* > one scale chunk */
        {QT_SCHEME_NF4, 40, 256, 64, false, QT_SRC_BF16, 1},  /* subnormal products */
        {QT_SCHEME_NF4, 40, 256, 64, false, QT_SRC_BF16, 2},  /* NaN / Inf scales */
        {QT_SCHEME_NF4, 40, 256, 64, false, QT_SRC_BF16, 3},  /* ties to bf16 */
        {QT_SCHEME_NF4, 40, 256, 64, false, QT_SRC_BF16, 4},  /* a file's map with NaN, Inf */
        {QT_SCHEME_NF4, 40, 256, 64, false, QT_SRC_BF16, 5},  /* a file's map with tiny values */
        {QT_SCHEME_BF16, 90, 288, 0, false, QT_SRC_F32, 0},
        {QT_SCHEME_FP16, 21, 160, 0, false, QT_SRC_F32, 0},
        {QT_SCHEME_BF16, 17, 96, 0, false, QT_SRC_F32, 1},    /* subnormal / huge values */
        {QT_SCHEME_INT8, 70, 320, 0, false, QT_SRC_F32, 0},
        {QT_SCHEME_INT8, 9, 64, 0, false, QT_SRC_F32, 0},
        {QT_SCHEME_Q8, 45, 256, 32, false, QT_SRC_F32, 0},
        {QT_SCHEME_Q8, 40, 384, 128, false, QT_SRC_F32, 0},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const size_t n_out = cases[ci].n_out, n_in = cases[ci].n_in, n = n_out * n_in;
        float *wf = malloc(n * 4), *dq = malloc(n * 4), *x = malloc(n_in * 4);
        float *want = malloc(n_out * 4), *got = malloc(n_out * 4);
        for (size_t i = 0; i < n; i++) wf[i] = qt_test_gauss(&seed) * 0.05f;
        if (cases[ci].special == 1 && cases[ci].B == 0)
            for (size_t i = 0; i < n; i += 7) wf[i] = i % 2 ? 3e-39f : 1e30f;
        for (size_t i = 0; i < n_in; i++) x[i] = qt_test_gauss(&seed);
        built b = build_weight(cases[ci].s, cases[ci].nested, n_out, n_in, cases[ci].B, wf);
        b.w.round_to = cases[ci].rt;
        float *am = cases[ci].B && cases[ci].s != QT_SCHEME_Q8 ? b.bufs[1] : NULL;
        if (cases[ci].special == 1 && cases[ci].B) /* rows of scales near the bottom of */
            for (size_t j = 0; j < n / cases[ci].B; j++) { /* fp32 (subnormal products) */
                const size_t row = j / (n_in / cases[ci].B);
                am[j] = row % 2 ? 1.5e-38f : j % 2 ? 1.00390625f : 1.5e-38f;
            }
        if (cases[ci].special == 3) /* the block maximum (map +-1) times these is a tie */
            for (size_t j = 0; j < n / cases[ci].B; j++) am[j] = j % 2 ? 1.00390625f : 1.01171875f;
        float file_map[16];
        memcpy(file_map, qt_nf4_map, sizeof file_map);
        if (cases[ci].special == 4) { /* a NaN whose low bits would round into the top half */
            const uint32_t nan_bits = 0x7fc0ffffu;
            memcpy(&file_map[3], &nan_bits, 4);
            file_map[12] = -INFINITY;
        }
        if (cases[ci].special == 5) /* every product subnormal */
            for (int i = 0; i < 16; i++) file_map[i] *= 1e-37f;
        if (cases[ci].special >= 4) b.w.quant_map = file_map;
        if (cases[ci].special == 2 && cases[ci].B) {
            am[5] = NAN;
            am[n / cases[ci].B - 1] = INFINITY;
        }
        cr_assert(eq(int, qt_dequantize(&qt_kernels_ref, &b.w, QT_SRC_F32, dq), QT_OK));
        const size_t ranges[][2] = {{0, n_out}, {1, n_out - 1}, {n_out / 2, n_out - n_out / 2}};
        /* every ISA with all bf16 roundings allowed (v 0), then AVX-512 and
         * AVX2 without vcvtne2ps2bf16 (v 1) and without the split (v 2) */
        for (int v = 0; v < 3 * QT_ISA_COUNT; v++) {
            const qt_isa isa = (qt_isa)(v % QT_ISA_COUNT);
            const int variant = v / QT_ISA_COUNT;
            const qt_kernels *k = qt_kernels_for(isa);
            qt_dot_rows_fn dot = k ? qt_mm_ops_for(k)->dot_rows[cases[ci].s] : NULL;
            if (!dot || (variant && isa == QT_ISA_REF)) continue;
#if defined(__x86_64__)
            qt_gemv_avx512_bf16_rounding(variant == 0, variant < 2);
            qt_gemv_avx2_bf16_split(variant < 2);
#endif
            qt_dq_ctx c;
            qt_dq_ctx_init(&c, k, &b.w);
            for (size_t ri = 0; ri < 3; ri++) {
                const size_t r0 = ranges[ri][0], nr = ranges[ri][1];
                qt_dot_rows_ref(dq + r0 * n_in, n_in, nr, x, want);
                dot(&c, r0, nr, x, got);
                for (size_t j = 0; j < nr; j++)
                    cr_assert(eq(u32, qt_f32_bits(got[j]), qt_f32_bits(want[j])),
                              "case %zu %s variant %d rows %zu+%zu: row %zu", ci,
                              qt_isa_name(isa), variant, r0, nr, r0 + j);
            }
        }
#if defined(__x86_64__)
        qt_gemv_avx512_bf16_rounding(true, true);
        qt_gemv_avx2_bf16_split(true);
#endif
        built_free(&b);
        free(wf);
        free(dq);
        free(x);
        free(want);
        free(got);
    }
}

/* Fidelity with bitsandbytes for 4-bit weights of bf16 / fp16 models: with
 * round_to each dequantized value is the nearest-even bf16 / fp16 of the
 * exact fp32 one (what dequantize_4bit returns in the quant_state dtype),
 * on every ISA, and the matmul multiplies with those values. */
Test(quant, nf4_round_to_quant_state_dtype)
{
    unsigned long long seed = qt_test_seed(DEFAULT_SEED + 14);
    const size_t n_out = 9, n_in = 172, n = n_out * n_in;
    float *wf = malloc(n * 4), *exact = malloc(n * 4), *got = malloc(n * 4), *x = malloc(n_in * 4);
    float y[9];
    for (size_t i = 0; i < n; i++) wf[i] = qt_test_gauss(&seed) * 0.05f;
    for (size_t i = 0; i < n_in; i++) x[i] = qt_test_gauss(&seed);
    built b = build_weight(QT_SCHEME_NF4, true, n_out, n_in, 64, wf);
    qt_qweight_rows(&qt_kernels_ref, &b.w, 0, n_out, exact);
    const qt_src_type types[2] = {QT_SRC_BF16, QT_SRC_F16};
    for (int ti = 0; ti < 2; ti++) {
        b.w.round_to = types[ti];
        size_t changed = 0;
        for (qt_isa isa = 0; isa < QT_ISA_COUNT; isa++) {
            const qt_kernels *k = qt_kernels_for(isa);
            if (!k) continue;
            qt_qweight_rows(k, &b.w, 0, n_out, got);
            for (size_t i = 0; i < n; i++) {
                float want = types[ti] == QT_SRC_BF16 ? qt_bf16_to_fp32(qt_fp32_to_bf16(exact[i]))
                                                      : qt_fp16_to_fp32(qt_fp32_to_fp16(exact[i]));
                cr_assert(eq(u32, qt_f32_bits(got[i]), qt_f32_bits(want)), "%s %zu",
                          qt_isa_name(isa), i);
                changed += want != exact[i];
            }
            if (isa == QT_ISA_REF) continue;
            cr_assert(eq(int, qt_matmul(k, &b.w, x, 1, y), QT_OK));
            for (size_t o = 0; o < n_out; o++)
                cr_assert(eq(u32, qt_f32_bits(y[o]), qt_f32_bits(fma_chain(x, got + o * n_in, n_in))));
        }
        cr_assert(gt(sz, changed, 0)); /* the rounding is visible */
    }
    built_free(&b);
    free(wf);
    free(exact);
    free(got);
    free(x);
}

/* Raw random bytes as weights of every scheme (NaN, Inf, subnormal halves,
 * every code), rows straddling blocks: every ISA dequantizes to the bits of
 * _ref (one multiply per element, spec §5). */
Test(quant, dequantize_is_bit_identical_on_every_isa_for_every_scheme)
{
    unsigned long long seed = qt_test_seed(DEFAULT_SEED + 12);
    const size_t n_out = 7, n_in = 172, n = n_out * n_in;
    struct { qt_scheme s; size_t B; bool nested; } cases[] = {
        {QT_SCHEME_NF4, 64, false}, {QT_SCHEME_NF4, 64, true}, {QT_SCHEME_FP4, 128, true},
        {QT_SCHEME_INT8_BLOCKWISE, 64, false}, {QT_SCHEME_Q8, 32, false},
        {QT_SCHEME_Q8, 64, false}, {QT_SCHEME_INT8, 0, false}, {QT_SCHEME_BF16, 0, false},
        {QT_SCHEME_FP16, 0, false}, {QT_SCHEME_FP32, 0, false},
    };
    unsigned char *data = malloc(8 * n + 64);
    float *am = malloc(n * 4), *ne = malloc(64), *scb = malloc(n_out * 4);
    uint8_t *amq = malloc(n);
    float *d0 = malloc(n * 4), *d1 = malloc(n * 4);
    for (size_t i = 0; i < 8 * n + 64; i++) data[i] = (uint8_t)qt_test_rand(&seed);
    for (size_t i = 0; i < n; i++) {
        am[i] = qt_test_randf(&seed) * 3.0f;
        amq[i] = (uint8_t)qt_test_rand(&seed);
    }
    for (size_t i = 0; i < 16; i++) ne[i] = qt_test_randf(&seed);
    for (size_t i = 0; i < n_out; i++) scb[i] = qt_test_randf(&seed) * 100.0f;
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        qt_qweight w;
        memset(&w, 0, sizeof w);
        w.scheme = cases[ci].s;
        w.n_out = n_out;
        w.n_in = n_in;
        w.block_size = cases[ci].B;
        w.data = data + (w.scheme == QT_SCHEME_FP32 ? 1 : 0); /* unaligned fp32 */
        w.absmax = am;
        w.scb = scb;
        if (cases[ci].nested) {
            w.absmax_q = amq;
            w.nested_absmax = ne;
            w.nested_offset = 0.25f;
        }
        cr_assert(eq(int, qt_dequantize(&qt_kernels_ref, &w, QT_SRC_F32, d0), QT_OK));
        for (int isa = 0; isa < QT_ISA_COUNT; isa++) {
            const qt_kernels *k = qt_kernels_for((qt_isa)isa);
            if (!k) continue;
            cr_assert(eq(int, qt_dequantize(k, &w, QT_SRC_F32, d1), QT_OK));
            cr_assert(eq(int, memcmp(d0, d1, n * 4), 0), "scheme %d isa %s", w.scheme,
                      qt_isa_name((qt_isa)isa));
        }
    }
    free(data);
    free(am);
    free(ne);
    free(scb);
    free(amq);
    free(d0);
    free(d1);
}
