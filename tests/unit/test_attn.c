/* tests/unit/test_attn.c: the attention kernel (quant/attn.c): its
 * exponential against libm's double exp (Cephes expf accuracy, 0 below the
 * cut), the scalar definition against a float64 softmax attention, the
 * AVX2 / AVX-512 twins byte for byte against it over shapes that reach
 * every tail (head_dim 8..64 and the scalar fallback, groups 1-5, tokens
 * 1-9, positions around multiples of 8 and 16), extreme scores (underflow,
 * ties, zeros), and causality (keys after a query's position change nothing). */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "common/cpu.h"
#include "quant/quant.h"
#include "quant/quant_internal.h"
#include "testutil.h"

/* A job's buffers: q and o (n_tok, q_dim), keys (hd, ldk), values (ldk, hd). */
typedef struct job_buf {
    qt_attn_job j;
    float *q, *kt, *v, *scratch;
} job_buf;

static void job_new(job_buf *b, size_t n_tok, size_t group, size_t hd, size_t pos0, float spread,
                    unsigned long long *seed)
{
    const size_t q_dim = group * hd + 3, ldk = pos0 + n_tok + 5; /* padded rows */
    b->q = malloc(n_tok * q_dim * sizeof(float));
    b->kt = malloc(hd * ldk * sizeof(float));
    b->v = malloc(ldk * hd * sizeof(float));
    b->scratch = qt_aligned_alloc(64, QT_ATTN_ROWS * ldk * sizeof(float));
    cr_assert(b->q && b->kt && b->v && b->scratch);
    for (size_t i = 0; i < n_tok * q_dim; i++) b->q[i] = spread * qt_test_gauss(seed);
    for (size_t i = 0; i < hd * ldk; i++) b->kt[i] = qt_test_gauss(seed);
    for (size_t i = 0; i < ldk * hd; i++) b->v[i] = qt_test_gauss(seed);
    b->j = (qt_attn_job){.q = b->q, .ldq = q_dim, .kt = b->kt, .ldk = ldk, .v = b->v, .ldv = hd,
                         .n_tok = n_tok, .group = group, .hd = hd, .pos0 = pos0,
                         .scale = (float)(1.0 / sqrt((double)hd)), .scratch = b->scratch,
                         .ldo = q_dim};
}

static void job_free(job_buf *b)
{
    free(b->q);
    free(b->kt);
    free(b->v);
    qt_aligned_free(b->scratch);
}

/* Runs the job on k into a fresh o (n_tok, ldo), NaN-filled first. */
static float *run(const qt_kernels *k, job_buf *b)
{
    const size_t n = b->j.n_tok * b->j.ldo;
    float *o = malloc(n * sizeof(float));
    cr_assert(o != NULL);
    for (size_t i = 0; i < n; i++) o[i] = NAN;
    b->j.o = o;
    k->attn(&b->j);
    return o;
}

/* The outputs of every head of every token (the padding of o is not). */
static int same_outputs(const job_buf *b, const float *x, const float *y)
{
    for (size_t t = 0; t < b->j.n_tok; t++)
        if (memcmp(x + t * b->j.ldo, y + t * b->j.ldo, b->j.group * b->j.hd * sizeof(float)))
            return 0;
    return 1;
}

Test(attn, exp_matches_libm)
{
    float worst = 0;
    for (int i = 0; i <= 87000; i += 8) {
        float v[8];
        for (int u = 0; u < 8; u++) v[u] = -(float)(i + u) * 1e-3f;
        float x[8];
        memcpy(x, v, sizeof x);
        qt_attn_exp8(v, 0.0f);
        for (int u = 0; u < 8; u++) {
            const double want = exp((double)x[u]);
            if (x[u] < QT_ATTN_EXP_MIN) {
                cr_assert(eq(flt, v[u], 0.0f));
                continue;
            }
            const float rel = (float)(fabs(v[u] - want) / want);
            worst = rel > worst ? rel : worst;
        }
    }
    /* about 1 ulp (2^-24 relative is half an ulp): allow 2 ulp */
    cr_assert(le(flt, worst, 0x1p-22f), "worst relative error %g", (double)worst);
    float t[8] = {-88.0f, -1e30f, -INFINITY, 0.0f, -0.0f, 3.0f, 3.0f, -87.0f};
    qt_attn_exp8(t, 3.0f);
    cr_assert(eq(flt, t[0], 0.0f));
    cr_assert(eq(flt, t[1], 0.0f));
    cr_assert(eq(flt, t[2], 0.0f));
    cr_assert(eq(flt, t[5], 1.0f)); /* e^0 exactly */
    cr_assert(eq(flt, t[7], 0.0f)); /* -90 is below the cut */
}

Test(attn, ref_matches_float64)
{
    unsigned long long seed = qt_test_seed(21);
    const size_t shapes[][4] = {{5, 2, 8, 0}, {7, 3, 16, 33}, {4, 1, 6, 12}, {3, 4, 64, 70}};
    for (size_t si = 0; si < 4; si++) {
        const size_t n_tok = shapes[si][0], group = shapes[si][1], hd = shapes[si][2];
        const size_t pos0 = shapes[si][3];
        job_buf b;
        job_new(&b, n_tok, group, hd, pos0, 2.0f, &seed);
        float *o = run(qt_kernels_for(QT_ISA_REF), &b);
        for (size_t t = 0; t < n_tok; t++)
            for (size_t g = 0; g < group; g++) {
                const size_t n_pos = pos0 + t + 1;
                const float *q = b.q + t * b.j.ldq + g * hd;
                double s[128], mx = -INFINITY, sum = 0;
                for (size_t p = 0; p < n_pos; p++) {
                    double d = 0;
                    for (size_t i = 0; i < hd; i++) d += (double)q[i] * b.kt[i * b.j.ldk + p];
                    s[p] = d / sqrt((double)hd);
                    mx = s[p] > mx ? s[p] : mx;
                }
                for (size_t p = 0; p < n_pos; p++) sum += (s[p] = exp(s[p] - mx));
                for (size_t i = 0; i < hd; i++) {
                    double want = 0;
                    for (size_t p = 0; p < n_pos; p++) want += s[p] / sum * b.v[p * hd + i];
                    const double got = o[t * b.j.ldo + g * hd + i];
                    cr_assert(le(dbl, fabs(got - want), 2e-5 * (1 + fabs(want))),
                              "shape %zu t %zu g %zu i %zu: %g vs %g", si, t, g, i, got, want);
                }
            }
        free(o);
        job_free(&b);
    }
}

/* Every ISA of this build and CPU gives the ref's bytes on one job. */
static void check_isas(job_buf *b, const char *what)
{
    float *want = run(qt_kernels_for(QT_ISA_REF), b);
    const qt_isa isas[] = {QT_ISA_AVX2, QT_ISA_AVX512};
    for (int k = 0; k < 2; k++) {
        const qt_kernels *kt = qt_kernels_for(isas[k]);
        if (!kt) continue;
        float *got = run(kt, b);
        cr_assert(same_outputs(b, want, got), "%s: isa %s differs from ref (tok %zu group %zu hd %zu pos0 %zu)",
                  what, qt_isa_name(isas[k]), b->j.n_tok, b->j.group, b->j.hd, b->j.pos0);
        free(got);
    }
    free(want);
}

Test(attn, simd_matches_ref)
{
    unsigned long long seed = qt_test_seed(22);
    const size_t hds[] = {8, 16, 24, 64, 6, 2};
    const size_t pos0s[] = {0, 7, 14, 15, 16, 31, 40, 100};
    for (size_t hi = 0; hi < 6; hi++)
        for (size_t group = 1; group <= 5; group++)
            for (size_t pi = 0; pi < 8; pi++) {
                const size_t n_tok = 1 + (hi * 5 + group + pi) % 9;
                job_buf b;
                job_new(&b, n_tok, group, hds[hi], pos0s[pi], 1.0f, &seed);
                check_isas(&b, "random");
                job_free(&b);
            }
}

Test(attn, simd_matches_ref_extremes)
{
    unsigned long long seed = qt_test_seed(23);
    for (int kind = 0; kind < 4; kind++) {
        job_buf b;
        job_new(&b, 6, 2, 16, 37, kind == 0 ? 40.0f : 1.0f, &seed);
        const size_t nk = b.j.hd * b.j.ldk;
        if (kind == 1) /* zero keys: every score 0, ties everywhere */
            memset(b.kt, 0, nk * sizeof(float));
        if (kind == 2) /* ties and signed zeros among random keys */
            for (size_t i = 0; i < nk; i += 3) b.kt[i] = i % 2 ? -0.0f : 1.0f;
        if (kind == 3) /* one huge score per row: the rest underflow to 0 */
            for (size_t i = 0; i < b.j.hd; i++) b.kt[i * b.j.ldk + 20] = 1e4f;
        check_isas(&b, kind == 0 ? "large spread" : kind == 1 ? "zero keys" : kind == 2 ? "ties" : "underflow");
        job_free(&b);
    }
}

Test(attn, causal)
{
    unsigned long long seed = qt_test_seed(24);
    for (int isa = QT_ISA_REF; isa < QT_ISA_COUNT; isa++) {
        const qt_kernels *k = qt_kernels_for((qt_isa)isa);
        if (!k) continue;
        job_buf b;
        job_new(&b, 5, 2, 8, 19, 1.0f, &seed);
        float *before = run(k, &b);
        /* keys and values after the last query's position */
        for (size_t p = b.j.pos0 + b.j.n_tok; p < b.j.ldk; p++) {
            for (size_t i = 0; i < b.j.hd; i++) b.kt[i * b.j.ldk + p] = 1e3f;
            for (size_t i = 0; i < b.j.hd; i++) b.v[p * b.j.hd + i] = 1e3f;
        }
        float *after = run(k, &b);
        cr_assert(same_outputs(&b, before, after), "isa %d reads past its positions", isa);
        free(before);
        free(after);
        job_free(&b);
    }
}
