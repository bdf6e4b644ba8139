/* calib/weight_error.c: weight-space error metrics of a quantized matrix. */
#include "calib/weight_error.h"

#include <math.h>
#include <string.h>

typedef struct acc {
    double se, so, sq, dot, mx;
    int bad;
} acc;

qt_status qt_weight_error_compute(const qt_qweight *orig, const qt_qweight *quant,
                                  qt_weight_error *out)
{
    memset(out, 0, sizeof *out);
    if (orig->n_out != quant->n_out || orig->n_in != quant->n_in) return QT_ERR_ARG;
    size_t n_in = orig->n_in, n_out = orig->n_out;
    if (!n_in || !n_out) return QT_OK;
    size_t rows = (1u << 16) / n_in ? (1u << 16) / n_in : 1;
    size_t n_chunks = (n_out + rows - 1) / rows;
    acc *a = qt_calloc(n_chunks, sizeof *a);
    if (!a) return QT_ERR_NOMEM;
    const qt_kernels *k = qt_kernels_active();
#pragma omp parallel
    {
        float *x = qt_malloc(rows * n_in * sizeof(float));
        float *y = qt_malloc(rows * n_in * sizeof(float));
#pragma omp for schedule(dynamic, 1)
        for (int64_t c = 0; c < (int64_t)n_chunks; c++) {
            if (!x || !y) {
                a[c].bad = 1;
                continue;
            }
            size_t r0 = (size_t)c * rows, nr = n_out - r0 < rows ? n_out - r0 : rows;
            qt_qweight_rows(k, orig, r0, nr, x);
            qt_qweight_rows(k, quant, r0, nr, y);
            acc s = {0};
            for (size_t i = 0; i < nr * n_in; i++) {
                double d = (double)x[i] - (double)y[i];
                s.se += d * d;
                s.so += (double)x[i] * x[i];
                s.sq += (double)y[i] * y[i];
                s.dot += (double)x[i] * y[i];
                if (fabs(d) > s.mx || isnan(d)) s.mx = isnan(d) ? NAN : fabs(d);
            }
            a[c] = s;
        }
        qt_free(x);
        qt_free(y);
    }
    acc t = {0};
    for (size_t c = 0; c < n_chunks; c++) {
        if (a[c].bad) {
            qt_free(a);
            return QT_ERR_NOMEM;
        }
        t.se += a[c].se;
        t.so += a[c].so;
        t.sq += a[c].sq;
        t.dot += a[c].dot;
        if (a[c].mx > t.mx || isnan(a[c].mx)) t.mx = a[c].mx;
    }
    qt_free(a);
    double n = (double)n_in * (double)n_out;
    out->rmse = sqrt(t.se / n);
    out->max_abs = t.mx;
    out->sqnr_db = t.se > 0 ? 10.0 * log10(t.so / t.se) : INFINITY;
    out->cosine = (t.so > 0 && t.sq > 0) ? t.dot / sqrt(t.so * t.sq) : (t.so == t.sq ? 1.0 : 0.0);
    return QT_OK;
}
