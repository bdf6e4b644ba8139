/* tests/unit/test_cuda.c: `--match cuda` (bitsandbytes' CUDA bytes).
 *   - the GPU reciprocal table: both checksums, a changed file refused, its
 *     semantics (the counts of ../shared/data/cuda/README.md, the exact
 *     reciprocal of mantissa 0 has d = 0, no entry 3, exponents only scale,
 *     flush-to-zero at both ends);
 *   - torch's CUDA mean: a case where its halving tree and the correctly
 *     rounded mean differ (worked by hand), and the offset of every
 *     double-quantized tensor the GPU wrote;
 *   - every file of golden/transformers-bnb-cuda re-derived byte for byte
 *     (qt_conv_verify) on every ISA and on 1 and 2 threads, and with CPU bytes exactly the tensors
 *     the golden README says differ;
 *   - the SIMD kernels against _ref with the table, on data with subnormals,
 *     zero blocks and huge or tiny absmax. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "common/cpu.h"
#include "convert/convert.h"
#include "formats/cuda_rcp.h"
#include "formats/fsutil.h"
#include "formats/modeldir.h"
#include "formats/bnb.h"
#include "quant/quant_internal.h"
#include "testutil.h"

static uint8_t *load_table(void)
{
    char p[512], err[QT_ERRMSG_SIZE] = "";
    uint8_t *t = NULL;
    cr_assert(eq(int, qt_cuda_rcp_load(qt_test_data_path(p, sizeof p, "cuda/" QT_RCP_FILE_NAME),
                                       &t, err),
                 QT_OK),
              "%s", err);
    return t;
}

static int entry(const uint8_t *t, uint32_t m) { return (t[m >> 2] >> (2 * (m & 3))) & 3; }

Test(cuda, table_checksums_and_refusal)
{
    QT_NEED_DATA();
    uint8_t *t = load_table();
    qt_free(t);
    /* one byte changed: refused with the file named */
    char p[512], tmp[64], bad[128], err[QT_ERRMSG_SIZE] = "";
    char *buf = NULL;
    size_t n = 0;
    cr_assert(eq(int, qt_file_read(qt_test_data_path(p, sizeof p, "cuda/" QT_RCP_FILE_NAME), &buf,
                                   &n, 1 << 22, err),
                 QT_OK));
    buf[n / 2] ^= 1;
    qt_test_tmpdir(tmp, sizeof tmp);
    snprintf(bad, sizeof bad, "%s/bad.zst", tmp);
    cr_assert(eq(int, qt_file_write(bad, buf, n, err), QT_OK));
    uint8_t *t2 = NULL;
    cr_assert(eq(int, qt_cuda_rcp_load(bad, &t2, err), QT_ERR_FORMAT));
    cr_assert(strstr(err, "bad.zst") && strstr(err, "sha256"), "%s", err);
    cr_assert(t2 == NULL);
    qt_free(buf);
    qt_tree_remove(tmp);
}

Test(cuda, table_semantics)
{
    QT_NEED_DATA();
    uint8_t *t = load_table();
    /* counts of d = -1, 0, +1 from the table's README; no entry 3 */
    size_t cnt[4] = {0};
    for (uint32_t m = 0; m < (1u << 23); m++) cnt[entry(t, m)]++;
    cr_assert(eq(sz, cnt[0], 374723));
    cr_assert(eq(sz, cnt[1], 7280086));
    cr_assert(eq(sz, cnt[2], 733799));
    cr_assert(eq(sz, cnt[3], 0));
    /* mantissa 0 (x a power of two) has an exact reciprocal: d = 0 */
    cr_assert(eq(int, entry(t, 0), 1));
    for (int e = -125; e <= 125; e += 10)
        cr_assert(eq(flt, qt_cuda_rcp(t, ldexpf(1.0f, e)), ldexpf(1.0f, -e)));
    /* within one ulp of the correctly rounded value; exponents only scale */
    unsigned long long s = qt_test_seed(20);
    for (int i = 0; i < 100000; i++) {
        float x = 1.0f + (float)(qt_test_rand(&s) >> 41) * 0x1p-23f;
        float r = qt_cuda_rcp(t, x), c = 1.0f / x;
        int32_t du = (int32_t)(qt_f32_bits(r) - qt_f32_bits(c));
        cr_assert(du >= -1 && du <= 1);
        cr_assert(eq(int, du, entry(t, qt_f32_bits(x) & 0x7fffff) - 1));
        cr_assert(eq(flt, qt_cuda_rcp(t, ldexpf(x, 37)), ldexpf(r, -37)));
        cr_assert(eq(flt, qt_cuda_rcp(t, ldexpf(x, -61)), ldexpf(r, 61)));
    }
    /* flush to zero: 0 and subnormal -> inf, beyond 2^126 -> 0, inf -> 0 */
    cr_assert(isinf(qt_cuda_rcp(t, 0.0f)) && qt_cuda_rcp(t, 0.0f) > 0);
    cr_assert(isinf(qt_cuda_rcp(t, 0x1p-130f)));
    cr_assert(eq(flt, qt_cuda_rcp(t, 0x1.8p126f), 0.0f));
    cr_assert(eq(flt, qt_cuda_rcp(t, INFINITY), 0.0f));
    cr_assert(isnan(qt_cuda_rcp(t, NAN)));
    qt_free(t);
}

Test(cuda, torch_mean_order)
{
    /* n = 4: 4 lanes of one value each, halving tree (v0 + v2) + (v1 + v3):
     * (1 + 2^-24) rounds to 1 (tie to even), 0 + 2^-24, then 1 + 2^-24 -> 1;
     * times f32(1/4): 0.25. The exact mean is (1 + 2^-23) / 4 = 0.25 + 2^-25,
     * which adjacent pairs ((1 + 0) + (2^-24 + 2^-24)) would also give. */
    const float v[4] = {1.0f, 0.0f, 0x1p-24f, 0x1p-24f};
    float m;
    cr_assert(eq(int, qt_dq_mean_cuda(v, 4, &m), QT_OK));
    cr_assert(eq(flt, m, 0.25f));
    cr_assert(eq(int, qt_dq_mean(v, 4, &m), QT_OK));
    cr_assert(eq(flt, m, 0.25f + 0x1p-25f));
    /* bad input as qt_dq_mean */
    const float w[2] = {1.0f, NAN};
    cr_assert(eq(int, qt_dq_mean_cuda(w, 2, &m), QT_ERR_NUMERIC));
    cr_assert(eq(int, qt_dq_mean_cuda(w, 0, &m), QT_ERR_ARG));
}

/* The nested offset of every double-quantized weight of a GPU golden equals
 * qt_dq_mean_cuda of the absmax qtool computes from the original. */
static void offsets_match(const char *model_rel, const char *golden_rel, qt_src_type t,
                          size_t *n_cuda, size_t *n_exact)
{
    char mp[512], gp[512], err[QT_ERRMSG_SIZE] = "";
    qt_modeldir *m = NULL, *g = NULL;
    cr_assert(eq(int, qt_modeldir_open(qt_test_data_path(mp, sizeof mp, model_rel), &m, err),
                 QT_OK), "%s", err);
    cr_assert(eq(int, qt_modeldir_open(qt_test_data_path(gp, sizeof gp, golden_rel), &g, err),
                 QT_OK), "%s", err);
    for (size_t i = 0; i < qt_modeldir_n_tensors(g); i++) {
        const qt_st_tensor *gt = qt_modeldir_tensor(g, i, NULL);
        const char *q = strstr(gt->name, ".quant_state.");
        if (!q) continue;
        qt_bnb_state s;
        cr_assert(eq(int, qt_bnb_state_parse(gt->data, (size_t)gt->nbytes, gt->name, &s, err),
                     QT_OK));
        char wname[256];
        snprintf(wname, sizeof wname, "%.*s", (int)(q - gt->name), gt->name);
        const qt_st_tensor *w = qt_modeldir_find(m, wname, NULL);
        cr_assert(w != NULL, "%s", wname);
        size_t n = (size_t)w->n_elements, nb = qt_n_blocks(n, 64);
        uint8_t *codes = qt_malloc(n);
        float *am = qt_malloc(nb * sizeof(float)), mc, me;
        cr_assert(eq(int, qt_nf4_quantize(NULL, QT_SCHEME_NF4, t, w->data, n, 64, codes, am),
                     QT_OK));
        cr_assert(eq(int, qt_dq_mean_cuda(am, nb, &mc), QT_OK));
        cr_assert(eq(int, qt_dq_mean(am, nb, &me), QT_OK));
        cr_assert(eq(flt, mc, s.nested_offset), "%s: %a vs %a", wname, mc, s.nested_offset);
        (*n_cuda)++;
        *n_exact += me == s.nested_offset;
        qt_free(codes);
        qt_free(am);
    }
    qt_modeldir_close(m);
    qt_modeldir_close(g);
}

Test(cuda, torch_mean_matches_every_gpu_offset)
{
    QT_NEED_DATA();
    size_t n = 0, exact = 0;
    offsets_match("models/stories260K-f32", "golden/transformers-bnb-cuda/gpu-nf4dq-f32.safetensors",
                  QT_SRC_F32, &n, &exact);
    cr_assert(eq(sz, n, 35));
    cr_assert(eq(sz, exact, 20)); /* 15 offsets are not the correctly rounded mean */
    offsets_match("models/stories260K-f16", "golden/transformers-bnb-cuda/gpu-nf4dq-f16.safetensors",
                  QT_SRC_F16, &n, &exact);
    offsets_match("models/stories260K-bf16",
                  "golden/transformers-bnb-cuda/gpu-nf4dq-bf16.safetensors", QT_SRC_BF16, &n,
                  &exact);
    offsets_match("models/stories260K-f16", "golden/transformers-bnb-cuda/gpu-fp4dq-f16.safetensors",
                  QT_SRC_F16, &n, &exact);
    cr_assert(eq(sz, n, 140));
}

/* golden file, original model, tensors that differ with CPU bytes (README). */
static const struct {
    const char *golden, *model;
    size_t cpu_differ;
} goldens[] = {
    {"gpu-nf4dq-f32", "stories260K-f32", 30}, {"gpu-nf4dq-f16", "stories260K-f16", 0},
    {"gpu-nf4dq-bf16", "stories260K-bf16", 0}, {"gpu-fp4dq-f16", "stories260K-f16", 4},
    {"gpu-fp4-f32", "stories260K-f32", 0},     {"gpu-int8-f32", "stories260K-f32", 7},
    {"gpu-int8-bf16", "stories260K-bf16", 14},
};

static size_t verify(size_t i, const uint8_t *rcp)
{
    char o[512], q[512], rel[128], err[QT_ERRMSG_SIZE] = "";
    snprintf(rel, sizeof rel, "models/%s", goldens[i].model);
    qt_test_data_path(o, sizeof o, rel);
    snprintf(rel, sizeof rel, "golden/transformers-bnb-cuda/%s.safetensors", goldens[i].golden);
    qt_test_data_path(q, sizeof q, rel);
    qt_verify_summary sum;
    cr_assert(eq(int, qt_conv_verify(o, q, rcp, NULL, NULL, &sum, err), QT_OK), "%s", err);
    cr_assert(eq(sz, sum.n_identical + sum.n_differ, sum.n_tensors));
    return sum.n_differ;
}

Test(cuda, every_gpu_golden_byte_for_byte_on_every_isa, .timeout = 60)
{
    QT_NEED_DATA();
    uint8_t *t = load_table();
    for (size_t i = 0; i < sizeof goldens / sizeof *goldens; i++) {
        cr_assert(eq(sz, verify(i, t), 0), "%s with --match cuda", goldens[i].golden);
        cr_assert(eq(sz, verify(i, NULL), goldens[i].cpu_differ), "%s with --match cpu",
                  goldens[i].golden);
    }
    /* the same bytes on one thread, and on the other ISAs (Criterion runs
     * each test in its own process, so this touches no other test) */
#ifdef _OPENMP
    omp_set_num_threads(1);
    for (size_t i = 0; i < sizeof goldens / sizeof *goldens; i++)
        cr_assert(eq(sz, verify(i, t), 0), "%s on 1 thread", goldens[i].golden);
    omp_set_num_threads(2);
#endif
    for (int isa = QT_ISA_REF; isa < QT_ISA_COUNT; isa++) {
        if (!qt_isa_supported((qt_isa)isa) || qt_isa_force((qt_isa)isa) != QT_OK) continue;
        for (size_t i = 0; i < sizeof goldens / sizeof *goldens; i++)
            cr_assert(eq(sz, verify(i, t), 0), "%s on %s", goldens[i].golden,
                      qt_isa_name((qt_isa)isa));
    }
    qt_free(t);
}

/* Random values with the edge cases of the GPU arithmetic: subnormals,
 * zero blocks, blocks of tiny or huge magnitude. */
static void edge_data(float *x, size_t n, unsigned long long *s)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t r = qt_test_rand(s);
        size_t blk = i / 64;
        float v = qt_test_randf(s);
        switch (blk % 8) {
        case 1: v = ldexpf(v, -130); break;                   /* subnormal block */
        case 2: v = 0.0f; break;                              /* zero block */
        case 3: v = ldexpf(v, -118); break;                   /* absmax near 2^-118 */
        case 4: v = ldexpf(v, 126); break;                    /* absmax near 2^126 */
        case 5: v = (r & 7) == 0 ? ldexpf(v, -140) : v; break; /* a few subnormals */
        case 6: v = (r & 3) == 0 ? -0x1p-148f * 3 : v * 1e-3f; break;
        default: break;
        }
        x[i] = v;
    }
}

Test(cuda, simd_kernels_match_ref_with_the_table)
{
    QT_NEED_DATA();
    uint8_t *t = load_table();
    enum { N = 64 * 64 + 32 };
    static float x[N];
    static uint16_t h[N];
    static uint8_t c0[N], c1[N];
    static float a0[N], a1[N];
    unsigned long long s = qt_test_seed(7);
    edge_data(x, N, &s);
    for (int isa = QT_ISA_REF + 1; isa < QT_ISA_COUNT; isa++) {
        const qt_kernels *k = qt_kernels_for((qt_isa)isa);
        if (!k) continue;
        for (int ty = 0; ty < QT_SRC_COUNT; ty++) {
            const void *src = x;
            if (ty != QT_SRC_F32) {
                for (size_t i = 0; i < N; i++)
                    h[i] = ty == QT_SRC_BF16 ? qt_fp32_to_bf16(x[i]) : qt_fp32_to_fp16(x[i]);
                src = h;
            }
            for (int fp4 = 0; fp4 < 2; fp4++) {
                qt_kernels_ref.quant4(fp4, (qt_src_type)ty, src, N, 64, t, c0, a0);
                k->quant4(fp4, (qt_src_type)ty, src, N, 64, t, c1, a1);
                cr_assert(eq(int, memcmp(c0, c1, (N + 1) / 2), 0), "quant4 %s fp4=%d t=%d",
                          qt_isa_name((qt_isa)isa), fp4, ty);
                cr_assert(eq(int, memcmp(a0, a1, qt_n_blocks(N, 64) * 4), 0));
            }
            for (size_t r = 0; r + 96 <= N; r += 96) {
                const unsigned char *rp = (const unsigned char *)src + r * qt_src_size(ty);
                float s0, s1;
                qt_kernels_ref.int8_quant_row((qt_src_type)ty, rp, 96, t, (int8_t *)c0, &s0);
                k->int8_quant_row((qt_src_type)ty, rp, 96, t, (int8_t *)c1, &s1);
                cr_assert(eq(int, memcmp(c0, c1, 96), 0), "int8 row %zu", r);
                cr_assert(eq(flt, s0, s1));
            }
        }
    }
    qt_free(t);
}
