/* tests/unit/test_loftq.c: the deterministic fp32 GEMM, the randomized
 * truncated SVD (quant/lowrank.c) and LoftQ of one matrix (convert/loftq.c). */
#include <math.h>
#include <string.h>

#include "convert/loftq.h"
#include "quant/quant.h"
#include "testutil.h"

#ifdef _OPENMP
#include <omp.h>
#endif

static float *rand_mat(size_t n, unsigned long long *s)
{
    float *a = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) a[i] = qt_test_gauss(s);
    return a;
}

Test(gemm, every_isa_and_thread_count_gives_the_same_bytes)
{
    unsigned long long s = qt_test_seed(11);
    const size_t ks[] = {1, 7, 16, 24, 33, 70};
    const size_t m = 37, n = 131;
    float *a = rand_mat(m * n, &s);
    for (size_t t = 0; t < sizeof ks / sizeof ks[0]; t++) {
        const size_t k = ks[t];
        float *b = rand_mat(n * k, &s), *c0 = calloc(m * k, 4), *c1 = calloc(m * k, 4);
        cr_assert_eq(qt_gemm_f32(QT_ISA_REF, a, m, n, b, k, c0), QT_OK);
        /* The scalar definition against a float64 product. */
        for (size_t i = 0; i < m; i++)
            for (size_t l = 0; l < k; l++) {
                double d = 0.0, mag = 0.0;
                for (size_t j = 0; j < n; j++) {
                    d += (double)a[i * n + j] * b[j * k + l];
                    mag += fabs((double)a[i * n + j] * b[j * k + l]);
                }
                cr_assert(fabs(c0[i * k + l] - d) <= 1e-5 * mag + 1e-30, "k %zu (%zu,%zu)", k, i, l);
            }
        const qt_isa isas[] = {QT_ISA_AVX2, QT_ISA_AVX512};
        for (size_t q = 0; q < 2; q++) {
            if (!qt_isa_supported(isas[q])) continue;
            memset(c1, 0xff, m * k * 4);
            cr_assert_eq(qt_gemm_f32(isas[q], a, m, n, b, k, c1), QT_OK);
            cr_assert(memcmp(c0, c1, m * k * 4) == 0, "isa %s k %zu differs from ref",
                      qt_isa_name(isas[q]), k);
        }
#ifdef _OPENMP
        omp_set_num_threads(1);
        cr_assert_eq(qt_gemm_f32(qt_isa_active(), a, m, n, b, k, c1), QT_OK);
        omp_set_num_threads(2);
        cr_assert(memcmp(c0, c1, m * k * 4) == 0, "1 thread differs, k %zu", k);
#endif
        free(b), free(c0), free(c1);
    }
    free(a);
}

/* Orthonormal columns (rows, cols) in double by Gram-Schmidt. */
static double *orthonormal(size_t rows, size_t cols, unsigned long long *s)
{
    double *q = malloc(rows * cols * sizeof(double));
    for (size_t i = 0; i < rows * cols; i++) q[i] = qt_test_gauss(s);
    for (size_t c = 0; c < cols; c++) {
        for (int pass = 0; pass < 2; pass++)
            for (size_t p = 0; p < c; p++) {
                double d = 0;
                for (size_t i = 0; i < rows; i++) d += q[i * cols + p] * q[i * cols + c];
                for (size_t i = 0; i < rows; i++) q[i * cols + c] -= d * q[i * cols + p];
            }
        double nn = 0;
        for (size_t i = 0; i < rows; i++) nn += q[i * cols + c] * q[i * cols + c];
        for (size_t i = 0; i < rows; i++) q[i * cols + c] /= sqrt(nn);
    }
    return q;
}

Test(lowrank, recovers_a_known_spectrum_and_the_optimal_error)
{
    unsigned long long s = qt_test_seed(5);
    const size_t m = 96, n = 160, nc = 6, rank = 4;
    const double sv[6] = {10.0, 6.0, 3.0, 1.5, 0.4, 0.2};
    double *u = orthonormal(m, nc, &s), *v = orthonormal(n, nc, &s);
    float *e = malloc(m * n * sizeof(float));
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double x = 0;
            for (size_t c = 0; c < nc; c++) x += sv[c] * u[i * nc + c] * v[j * nc + c];
            e[i * n + j] = (float)x;
        }
    float *l = malloc(m * rank * 4), *r = malloc(rank * n * 4), sig[4];
    cr_assert_eq(qt_lowrank_rsvd(QT_ISA_REF, e, m, n, rank, 8, 2, 42, l, r, sig), QT_OK);
    for (size_t c = 0; c < rank; c++)
        cr_assert(fabs(sig[c] - sv[c]) <= 1e-4 * sv[0], "sigma %zu: %g vs %g", c, sig[c], sv[c]);
    /* ||E - L R||_F equals the Eckart-Young optimum sqrt(0.4^2 + 0.2^2). */
    double ss = 0;
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double p = 0;
            for (size_t c = 0; c < rank; c++) p += (double)l[i * rank + c] * r[c * n + j];
            ss += (e[i * n + j] - p) * (e[i * n + j] - p);
        }
    cr_assert(fabs(sqrt(ss) - sqrt(0.4 * 0.4 + 0.2 * 0.2)) < 1e-3, "error %g", sqrt(ss));
    /* Same bytes on every ISA. */
    const qt_isa isas[] = {QT_ISA_AVX2, QT_ISA_AVX512};
    for (size_t q = 0; q < 2; q++) {
        if (!qt_isa_supported(isas[q])) continue;
        float *l2 = malloc(m * rank * 4), *r2 = malloc(rank * n * 4);
        cr_assert_eq(qt_lowrank_rsvd(isas[q], e, m, n, rank, 8, 2, 42, l2, r2, NULL), QT_OK);
        cr_assert(memcmp(l, l2, m * rank * 4) == 0 && memcmp(r, r2, rank * n * 4) == 0);
        free(l2), free(r2);
    }
    cr_assert_eq(qt_lowrank_rsvd(QT_ISA_REF, e, m, n, 0, 8, 2, 42, l, r, NULL), QT_ERR_ARG);
    cr_assert_eq(qt_lowrank_rsvd(QT_ISA_REF, e, m, n, m + 1, 8, 2, 42, l, r, NULL), QT_ERR_ARG);
    free(u), free(v), free(e), free(l), free(r);
}

/* ||W - dequant(NF4+DQ(W))||_F computed through the public kernels. */
static double plain_error(const float *w, size_t m, size_t n)
{
    size_t nb = qt_n_blocks(m * n, 64);
    uint8_t *codes = malloc(qt_nf4_bytes(m * n)), *q = malloc(nb);
    float *am = malloc(nb * 4), *nested = malloc(qt_dq_n_nested(nb) * 4), off, *d = malloc(m * n * 4);
    cr_assert_eq(qt_nf4_quantize(NULL, QT_SCHEME_NF4, QT_SRC_F32, w, m * n, 64, codes, am), QT_OK);
    cr_assert_eq(qt_dq_quantize(am, nb, q, nested, &off), QT_OK);
    qt_qweight qw = {.scheme = QT_SCHEME_NF4, .n_out = m, .n_in = n, .block_size = 64, .data = codes,
                     .absmax_q = q, .nested_absmax = nested, .nested_offset = off};
    cr_assert_eq(qt_dequantize(NULL, &qw, QT_SRC_F32, d), QT_OK);
    double ss = 0;
    for (size_t i = 0; i < m * n; i++) ss += ((double)w[i] - d[i]) * ((double)w[i] - d[i]);
    free(codes), free(q), free(am), free(nested), free(d);
    return sqrt(ss);
}

Test(loftq, one_iteration_keeps_plain_nf4_bytes_and_lowers_the_error)
{
    unsigned long long s = qt_test_seed(9);
    const size_t m = 64, n = 96;
    float *w = rand_mat(m * n, &s);
    qt_loftq_opts o = qt_loftq_opts_default();
    o.rank = 8;
    qt_loftq_result r;
    char err[QT_ERRMSG_SIZE] = "";
    cr_assert_eq(qt_loftq_matrix(w, m, n, &o, &r, err), QT_OK, "%s", err);
    cr_assert(r.used_loftq);
    cr_assert(fabs(r.err_plain - plain_error(w, m, n)) <= 1e-9 * r.err_plain);
    cr_assert(r.err_loftq < 0.95 * r.err_plain, "loftq %g plain %g", r.err_loftq, r.err_plain);
    /* T = 1 quantizes W itself: the base bytes are plain NF4 of W. */
    uint8_t *codes = malloc(qt_nf4_bytes(m * n));
    float *am = malloc(qt_n_blocks(m * n, 64) * 4);
    cr_assert_eq(qt_nf4_quantize(NULL, QT_SCHEME_NF4, QT_SRC_F32, w, m * n, 64, codes, am), QT_OK);
    cr_assert(memcmp(codes, r.codes, qt_nf4_bytes(m * n)) == 0);
    /* s.B.A is what is scaled: alpha 2r (s = 2) gives B halved, same error. */
    qt_loftq_result r2;
    o.scale = 2.0f;
    cr_assert_eq(qt_loftq_matrix(w, m, n, &o, &r2, err), QT_OK, "%s", err);
    for (size_t i = 0; i < m * o.rank; i++) cr_assert_eq(r2.lora_b[i], r.lora_b[i] / 2.0f);
    cr_assert(fabs(r2.err_loftq - r.err_loftq) <= 1e-6 * r.err_loftq);
    /* More iterations: the alternation is reported, never worse than plain. */
    o.scale = 1.0f;
    o.iters = 3;
    qt_loftq_result r3;
    cr_assert_eq(qt_loftq_matrix(w, m, n, &o, &r3, err), QT_OK, "%s", err);
    cr_assert(r3.err_final <= r3.err_plain);
    qt_loftq_result_release(&r);
    qt_loftq_result_release(&r2);
    qt_loftq_result_release(&r3);
    qt_loftq_result_release(&r3); /* safe to repeat */
    free(w), free(codes), free(am);
}

Test(loftq, exactly_representable_weight_falls_back_to_the_default_init)
{
    /* Every block holds +-1 and NF4 grid values: quantization is exact, the
     * LoftQ error cannot beat 0, so the plain base and B = 0 are kept. */
    const size_t m = 16, n = 64;
    float *w = malloc(m * n * 4);
    for (size_t i = 0; i < m * n; i++) w[i] = qt_nf4_map[(i * 7) % 16];
    for (size_t b = 0; b < m * n; b += 64) w[b] = 1.0f;
    qt_loftq_opts o = qt_loftq_opts_default();
    o.rank = 4;
    o.double_quant = false;
    qt_loftq_result r;
    char err[QT_ERRMSG_SIZE] = "";
    cr_assert_eq(qt_loftq_matrix(w, m, n, &o, &r, err), QT_OK, "%s", err);
    cr_assert_eq(r.err_plain, 0.0);
    cr_assert(!r.used_loftq);
    const float bound = 1.0f / sqrtf((float)n);
    bool nonzero = false;
    for (size_t i = 0; i < o.rank * n; i++) {
        cr_assert(fabsf(r.lora_a[i]) <= bound);
        nonzero |= r.lora_a[i] != 0.0f;
    }
    cr_assert(nonzero);
    for (size_t i = 0; i < m * o.rank; i++) cr_assert_eq(r.lora_b[i], 0.0f);
    qt_loftq_result_release(&r);
    free(w);
}

Test(loftq, same_bytes_for_every_isa)
{
    unsigned long long s = qt_test_seed(3);
    const size_t m = 48, n = 80;
    float *w = rand_mat(m * n, &s);
    qt_loftq_opts o = qt_loftq_opts_default();
    o.rank = 6;
    o.iters = 2;
    qt_loftq_result r0, r1;
    char err[QT_ERRMSG_SIZE];
    const qt_isa isas[] = {QT_ISA_REF, QT_ISA_AVX2, QT_ISA_AVX512};
    for (size_t q = 0; q < 3; q++) {
        if (!qt_isa_supported(isas[q])) continue;
        cr_assert_eq(qt_isa_force(isas[q]), QT_OK);
        cr_assert_eq(qt_loftq_matrix(w, m, n, &o, q == 0 ? &r0 : &r1, err), QT_OK, "%s", err);
        if (q == 0) continue;
        cr_assert(memcmp(r0.codes, r1.codes, qt_nf4_bytes(m * n)) == 0);
        cr_assert(memcmp(r0.lora_a, r1.lora_a, o.rank * n * 4) == 0);
        cr_assert(memcmp(r0.lora_b, r1.lora_b, m * o.rank * 4) == 0);
        cr_assert_eq(r0.dq_offset, r1.dq_offset);
        qt_loftq_result_release(&r1);
    }
    qt_loftq_result_release(&r0);
    free(w);
}

Test(loftq, refuses_bad_options_and_nonfinite_weights)
{
    float w[64 * 4];
    for (size_t i = 0; i < 256; i++) w[i] = (float)i / 256.0f - 0.5f;
    qt_loftq_opts o = qt_loftq_opts_default();
    qt_loftq_result r;
    char err[QT_ERRMSG_SIZE];
    o.rank = 0;
    cr_assert_eq(qt_loftq_matrix(w, 4, 64, &o, &r, err), QT_ERR_ARG);
    cr_assert(strstr(err, "rank"), "%s", err);
    o.rank = 5;
    cr_assert_eq(qt_loftq_matrix(w, 4, 64, &o, &r, err), QT_ERR_ARG);
    o.rank = 2;
    o.iters = 0;
    cr_assert_eq(qt_loftq_matrix(w, 4, 64, &o, &r, err), QT_ERR_ARG);
    o.iters = 1;
    o.scheme = QT_SCHEME_INT8;
    cr_assert_eq(qt_loftq_matrix(w, 4, 64, &o, &r, err), QT_ERR_ARG);
    o.scheme = QT_SCHEME_NF4;
    w[17] = NAN;
    cr_assert_eq(qt_loftq_matrix(w, 4, 64, &o, &r, err), QT_ERR_NUMERIC);
    cr_assert(strstr(err, "non-finite"), "%s", err);
}
