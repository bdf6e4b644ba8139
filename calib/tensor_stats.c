/* calib/tensor_stats.c: per-tensor value statistics, threaded, deterministic. */
#include "calib/tensor_stats.h"

#include <math.h>
#include <string.h>

typedef struct chunk_acc {
    uint64_t n_finite, n_nan, n_posinf, n_neginf, n_sub, n_out;
    double sum, sumsq, min, max;
    qt_status st;
} chunk_acc;

qt_status qt_tensor_stats_compute(uint64_t n, size_t chunk_elems, qt_stats_read_fn read,
                                  void *ctx, qt_tensor_stats *out, char *errmsg)
{
    memset(out, 0, sizeof *out);
    out->n = n;
    if (n == 0) return QT_OK;
    if (chunk_elems == 0) chunk_elems = 65536;
    uint64_t n_chunks = (n + chunk_elems - 1) / chunk_elems;
    size_t bytes;
    if (!qt_mul_size((size_t)n_chunks, sizeof(chunk_acc), &bytes))
        return qt_set_err(errmsg, QT_ERR_OVERFLOW, "tensor too large for statistics");
    chunk_acc *acc = qt_calloc((size_t)n_chunks, sizeof *acc);
    if (!acc) return qt_set_err(errmsg, QT_ERR_NOMEM, "out of memory for statistics");
    qt_status st = QT_OK;
    char first_err[QT_ERRMSG_SIZE] = "";

    for (int pass = 0; pass < 2 && st == QT_OK; pass++) {
        double mean = out->mean, sd = out->std;
#pragma omp parallel
        {
            float *buf = qt_malloc(chunk_elems * sizeof(float));
#pragma omp for schedule(dynamic, 1)
            for (int64_t c = 0; c < (int64_t)n_chunks; c++) {
                chunk_acc *a = &acc[c];
                if (!buf) {
                    a->st = QT_ERR_NOMEM;
                    continue;
                }
                uint64_t first = (uint64_t)c * chunk_elems;
                size_t cnt = (size_t)(n - first < chunk_elems ? n - first : chunk_elems);
                char e[QT_ERRMSG_SIZE];
                qt_status s = read(ctx, first, cnt, buf, e);
                if (s != QT_OK) {
                    a->st = s;
#pragma omp critical
                    if (!first_err[0]) memcpy(first_err, e, sizeof e);
                    continue;
                }
                if (pass == 0) {
                    a->min = INFINITY;
                    a->max = -INFINITY;
                    for (size_t i = 0; i < cnt; i++) {
                        float v = buf[i];
                        if (isnan(v)) a->n_nan++;
                        else if (isinf(v)) v > 0 ? a->n_posinf++ : a->n_neginf++;
                        else {
                            if (v != 0 && fpclassify(v) == FP_SUBNORMAL) a->n_sub++;
                            a->n_finite++;
                            a->sum += v;
                            a->sumsq += (double)v * v;
                            if (v < a->min) a->min = v;
                            if (v > a->max) a->max = v;
                        }
                    }
                } else if (sd > 0) {
                    for (size_t i = 0; i < cnt; i++)
                        if (isfinite(buf[i]) && fabs(buf[i] - mean) > 6 * sd) a->n_out++;
                }
            }
            qt_free(buf);
        }
        for (uint64_t c = 0; c < n_chunks; c++)
            if (acc[c].st != QT_OK) {
                st = acc[c].st;
                break;
            }
        if (st != QT_OK) break;
        if (pass == 0) {
            double sum = 0, sumsq = 0, mn = INFINITY, mx = -INFINITY;
            for (uint64_t c = 0; c < n_chunks; c++) {
                chunk_acc *a = &acc[c];
                out->n_finite += a->n_finite;
                out->n_nan += a->n_nan;
                out->n_posinf += a->n_posinf;
                out->n_neginf += a->n_neginf;
                out->n_subnormal += a->n_sub;
                sum += a->sum;
                sumsq += a->sumsq;
                if (a->n_finite) {
                    if (a->min < mn) mn = a->min;
                    if (a->max > mx) mx = a->max;
                }
            }
            if (out->n_finite) {
                out->mean = sum / (double)out->n_finite;
                double var = sumsq / (double)out->n_finite - out->mean * out->mean;
                out->std = var > 0 ? sqrt(var) : 0;
                out->min = mn;
                out->max = mx;
                out->absmax = fabs(mn) > fabs(mx) ? fabs(mn) : fabs(mx);
            }
        } else {
            for (uint64_t c = 0; c < n_chunks; c++) out->n_beyond_6sigma += acc[c].n_out;
        }
    }
    if (st != QT_OK) {
        if (first_err[0]) qt_set_err(errmsg, st, "%s", first_err);
        else qt_set_err(errmsg, st, "statistics failed: %s", qt_status_str(st));
    }
    qt_free(acc);
    return st;
}
