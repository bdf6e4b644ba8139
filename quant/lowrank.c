/* quant/lowrank.c: the best rank-r approximation of a dense fp32 matrix by
 * randomized range finding with subspace (power) iterations (Halko,
 * Martinsson, Tropp 2011, algorithms 4.4 and 5.1), for LoftQ.
 *
 * The large products with E go through qt_gemm_f32 (one in-order fmaf chain
 * per output); the small dense factorizations (orthonormalizing the k
 * sketch columns, the SVD of the k x n projected matrix) run here in double
 * with a fixed order: classical Gram-Schmidt applied twice, and cyclic
 * Jacobi rotations on the k x k Gram matrix of the projection. No LAPACK: its results depend on the BLAS build and the
 * CPU kernel it picks, and qtool's output bytes must not (docs/ARCHITECTURE.md).
 * The test matrix is Rademacher (+-1 from a seeded splitmix64 stream), so no
 * libm function decides a bit of the result either. */
#include "common/rng.h"
#include "quant/quant.h"

#include <math.h>
#include <string.h>

/* Orthonormalizes the k columns of y (m, k) row-major in place: classical
 * Gram-Schmidt twice per column, in double (yd scratch (m, k)). A column
 * that is (numerically) in the span of the previous ones becomes zero. */
static void orthonormalize(float *y, size_t m, size_t k, double *yd)
{
    for (size_t i = 0; i < m * k; i++) yd[i] = y[i];
    for (size_t c = 0; c < k; c++) {
        double norm0 = 0.0;
        for (size_t i = 0; i < m; i++) norm0 += yd[i * k + c] * yd[i * k + c];
        for (int pass = 0; pass < 2; pass++) {
            for (size_t p = 0; p < c; p++) {
                double d = 0.0;
                for (size_t i = 0; i < m; i++) d += yd[i * k + p] * yd[i * k + c];
                for (size_t i = 0; i < m; i++) yd[i * k + c] -= d * yd[i * k + p];
            }
        }
        double norm = 0.0;
        for (size_t i = 0; i < m; i++) norm += yd[i * k + c] * yd[i * k + c];
        const double inv = (norm > 1e-24 * norm0 && norm > 0.0) ? 1.0 / sqrt(norm) : 0.0;
        for (size_t i = 0; i < m; i++) yd[i * k + c] *= inv;
    }
    for (size_t i = 0; i < m * k; i++) y[i] = (float)yd[i];
}

/* Cyclic Jacobi eigendecomposition of the symmetric g (k, k), double, in
 * place: afterwards g's diagonal holds the eigenvalues and v (k, k) the
 * eigenvectors as columns (g_orig = v diag(g) v^T). Fixed sweep order. */
static void jacobi_eigen(double *g, size_t k, double *v)
{
    for (size_t i = 0; i < k * k; i++) v[i] = 0.0;
    for (size_t i = 0; i < k; i++) v[i * k + i] = 1.0;
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0.0, diag = 0.0;
        for (size_t p = 0; p < k; p++) {
            diag += g[p * k + p] * g[p * k + p];
            for (size_t q = p + 1; q < k; q++) off += g[p * k + q] * g[p * k + q];
        }
        if (off <= 1e-30 * diag) break;
        for (size_t p = 0; p + 1 < k; p++) {
            for (size_t q = p + 1; q < k; q++) {
                const double gpq = g[p * k + q];
                if (gpq == 0.0) continue;
                const double zeta = (g[q * k + q] - g[p * k + p]) / (2.0 * gpq);
                const double t = (zeta >= 0.0 ? 1.0 : -1.0) / (fabs(zeta) + sqrt(1.0 + zeta * zeta));
                const double c = 1.0 / sqrt(1.0 + t * t), s = c * t;
                /* g = J^T g J with J the rotation in the (p, q) plane. */
                for (size_t i = 0; i < k; i++) {
                    const double gp = g[i * k + p], gq = g[i * k + q];
                    g[i * k + p] = c * gp - s * gq;
                    g[i * k + q] = s * gp + c * gq;
                }
                for (size_t i = 0; i < k; i++) {
                    const double gp = g[p * k + i], gq = g[q * k + i];
                    g[p * k + i] = c * gp - s * gq;
                    g[q * k + i] = s * gp + c * gq;
                }
                for (size_t i = 0; i < k; i++) {
                    const double vp = v[i * k + p], vq = v[i * k + q];
                    v[i * k + p] = c * vp - s * vq;
                    v[i * k + q] = s * vp + c * vq;
                }
            }
        }
    }
}

/* dst (cols, rows) = src (rows, cols)^T, in cache-sized tiles. */
static void transpose(const float *src, size_t rows, size_t cols, float *dst)
{
    const size_t T = 64;
    for (size_t i0 = 0; i0 < rows; i0 += T)
        for (size_t j0 = 0; j0 < cols; j0 += T)
            for (size_t i = i0; i < rows && i < i0 + T; i++)
                for (size_t j = j0; j < cols && j < j0 + T; j++) dst[j * rows + i] = src[i * cols + j];
}

size_t qt_lowrank_sketch_cols(size_t m, size_t n, size_t rank, size_t oversample)
{
    size_t k = rank + oversample, mn = m < n ? m : n;
    return k < mn ? k : mn;
}

qt_status qt_lowrank_rsvd(qt_isa isa, const float *e, size_t m, size_t n, size_t rank,
                          size_t oversample, unsigned power_iters, uint64_t seed, float *l,
                          float *r, float *sigma)
{
    if (!e || !l || !r || m == 0 || n == 0 || rank == 0 || rank > (m < n ? m : n))
        return QT_ERR_ARG;
    const size_t k = qt_lowrank_sketch_cols(m, n, rank, oversample);
    size_t mn, mk, nk;
    if (!qt_mul_size(m, n, &mn) || !qt_mul_size(m, k, &mk) || !qt_mul_size(n, k, &nk))
        return QT_ERR_OVERFLOW;
    qt_status st = QT_ERR_NOMEM;
    float *et = qt_malloc(mn * sizeof(float));
    float *y = qt_malloc(mk * sizeof(float)), *z = qt_malloc(nk * sizeof(float));
    double *scratch = qt_malloc((mk > nk ? mk : nk) * sizeof(double) + 2 * k * k * sizeof(double));
    double *v = qt_malloc(k * k * sizeof(double));
    size_t *order = qt_malloc(k * sizeof(size_t));
    if (!et || !y || !z || !scratch || !v || !order) goto out;

    /* Sketch: Y = E . Omega with a Rademacher Omega (n, k). */
    uint64_t s = seed;
    for (size_t i = 0; i < nk; i++) z[i] = (qt_splitmix64(&s) >> 63) ? 1.0f : -1.0f;
    if ((st = qt_gemm_f32(isa, e, m, n, z, k, y)) != QT_OK) goto out;
    orthonormalize(y, m, k, scratch);
    /* Subspace iterations sharpen the range toward the top singular
     * directions: Z = orth(E^T Y), Y = orth(E Z). */
    transpose(e, m, n, et);
    for (unsigned it = 0; it < power_iters; it++) {
        if ((st = qt_gemm_f32(isa, et, n, m, y, k, z)) != QT_OK) goto out;
        orthonormalize(z, n, k, scratch);
        if ((st = qt_gemm_f32(isa, e, m, n, z, k, y)) != QT_OK) goto out;
        orthonormalize(y, m, k, scratch);
    }
    /* B^T = E^T Y (n, k) = Z. Its SVD through the eigendecomposition of the
     * small Gram matrix Z^T Z = V S^2 V^T: B = V S U_z^T with U_z = Z V / S. */
    if ((st = qt_gemm_f32(isa, et, n, m, y, k, z)) != QT_OK) goto out;
    double *g = scratch, *sv = scratch + k * k;
    for (size_t p = 0; p < k; p++)
        for (size_t q = p; q < k; q++) {
            double d = 0.0;
            for (size_t i = 0; i < n; i++) d += (double)z[i * k + p] * z[i * k + q];
            g[p * k + q] = g[q * k + p] = d;
        }
    jacobi_eigen(g, k, v);
    for (size_t c = 0; c < k; c++) {
        sv[c] = g[c * k + c] > 0.0 ? sqrt(g[c * k + c]) : 0.0;
        order[c] = c;
    }
    /* Descending singular values; ties keep column order (insertion sort). */
    for (size_t c = 1; c < k; c++) {
        size_t t = order[c], p = c;
        while (p > 0 && sv[order[p - 1]] < sv[t]) { order[p] = order[p - 1]; p--; }
        order[p] = t;
    }
    /* E ~ Y B = (Y V) S U_z^T: L = (Y V)_r sqrt(S), R = sqrt(S) U_z^T =
     * (Z V)^T / sqrt(S). */
    for (size_t c = 0; c < rank; c++) {
        const size_t src = order[c];
        const double sg = sv[src], rt = sqrt(sg), inv = sg > 0.0 ? 1.0 / rt : 0.0;
        if (sigma) sigma[c] = (float)sg;
        for (size_t i = 0; i < m; i++) {
            double acc = 0.0;
            for (size_t p = 0; p < k; p++) acc += (double)y[i * k + p] * v[p * k + src];
            l[i * rank + c] = (float)(acc * rt);
        }
        for (size_t j = 0; j < n; j++) {
            double acc = 0.0;
            for (size_t p = 0; p < k; p++) acc += (double)z[j * k + p] * v[p * k + src];
            r[c * n + j] = (float)(acc * inv);
        }
    }
    st = QT_OK;
out:
    qt_free(et);
    qt_free(y);
    qt_free(z);
    qt_free(scratch);
    qt_free(v);
    qt_free(order);
    return st;
}
