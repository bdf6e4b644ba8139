/* calib/output_error.c: the activation-weighted output error of a quantized
 * Linear (calib/calib.h), the default thresholds and tensor-name parsing. */
#include "calib/calib.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define ROWS_PER_BLOCK 16

void qt_output_error_finish(qt_output_error *e)
{
    if (e->e_sq == 0.0) {
        e->rel = 0.0;
        e->sqnr_db = INFINITY;
    } else if (e->y_sq == 0.0) {
        e->rel = INFINITY;
        e->sqnr_db = -INFINITY;
    } else {
        e->rel = sqrt(e->e_sq / e->y_sq);
        e->sqnr_db = 10.0 * log10(e->y_sq / e->e_sq);
    }
}

/* Sums over one block of nr output rows: w, wq (nr, n_in) fp32. */
static void block_sums(const float *w, const float *wq, size_t nr, size_t n_in, const float *x,
                       size_t n_rows, double *d, double *y_sq, double *e_sq)
{
    double ys = 0.0, es = 0.0;
    for (size_t j = 0; j < nr; j++) {
        const float *wj = w + j * n_in, *qj = wq + j * n_in;
        for (size_t k = 0; k < n_in; k++) d[k] = (double)wj[k] - (double)qj[k];
        for (size_t r = 0; r < n_rows; r++) {
            const float *xr = x + r * n_in;
            double y0 = 0, y1 = 0, e0 = 0, e1 = 0;
            size_t k = 0;
            for (; k + 2 <= n_in; k += 2) {
                y0 += (double)xr[k] * (double)wj[k];
                y1 += (double)xr[k + 1] * (double)wj[k + 1];
                e0 += (double)xr[k] * d[k];
                e1 += (double)xr[k + 1] * d[k + 1];
            }
            for (; k < n_in; k++) {
                y0 += (double)xr[k] * (double)wj[k];
                e0 += (double)xr[k] * d[k];
            }
            double y = y0 + y1, e = e0 + e1;
            ys += y * y;
            es += e * e;
        }
    }
    *y_sq = ys;
    *e_sq = es;
}

qt_status qt_output_error_compute(const qt_qweight *orig, const qt_qweight *quant, const float *x,
                                  size_t n_rows, qt_output_error *out)
{
    memset(out, 0, sizeof *out);
    if (!orig || !quant || !x || n_rows == 0 || orig->n_out != quant->n_out ||
        orig->n_in != quant->n_in || orig->n_in == 0)
        return QT_ERR_ARG;
    const size_t n_out = orig->n_out, n_in = orig->n_in;
    const size_t nblk = (n_out + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK;
    double *ys = qt_calloc(nblk, sizeof *ys), *es = qt_calloc(nblk, sizeof *es);
    if (!ys || !es) {
        qt_free(ys);
        qt_free(es);
        return QT_ERR_NOMEM;
    }
    int oom = 0;
    const long long nb = (long long)nblk;
#pragma omp parallel
    {
        float *w = qt_malloc(ROWS_PER_BLOCK * n_in * sizeof(float));
        float *wq = qt_malloc(ROWS_PER_BLOCK * n_in * sizeof(float));
        double *d = qt_malloc(n_in * sizeof(double));
        if (!w || !wq || !d) {
#pragma omp atomic write
            oom = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (long long b = 0; b < nb; b++) {
            if (!w || !wq || !d) continue;
            size_t r0 = (size_t)b * ROWS_PER_BLOCK;
            size_t nr = n_out - r0 < ROWS_PER_BLOCK ? n_out - r0 : ROWS_PER_BLOCK;
            qt_qweight_rows(NULL, orig, r0, nr, w);
            qt_qweight_rows(NULL, quant, r0, nr, wq);
            block_sums(w, wq, nr, n_in, x, n_rows, d, &ys[b], &es[b]);
        }
        qt_free(w);
        qt_free(wq);
        qt_free(d);
    }
    qt_status st = QT_OK;
    if (oom) {
        st = QT_ERR_NOMEM;
    } else {
        for (size_t b = 0; b < nblk; b++) {
            out->y_sq += ys[b];
            out->e_sq += es[b];
        }
        out->n_rows = n_rows;
        qt_output_error_finish(out);
    }
    qt_free(ys);
    qt_free(es);
    return st;
}

/* Measured on stories260K (docs/CALIBRATION.md): the honest conversions'
 * worst tensor, times a margin. */
double qt_calib_default_threshold(qt_scheme s)
{
    const qt_scheme_info *si = qt_scheme_get(s);
    return si ? si->calib_threshold : 0.0;
}

qt_status qt_calib_measure(const qt_calib_set *set, const char *name, const char *scheme_label,
                           const qt_qweight *orig, const qt_qweight *quant, double max_error,
                           qt_calib_entry *e)
{
    qt_status st;
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    snprintf(e->scheme, sizeof e->scheme, "%s", scheme_label ? scheme_label : "");
    e->layer = -1;
    e->proj = QT_PROJ_COUNT;
    e->verdict = QT_VERDICT_UNCHECKED;
    if ((st = qt_weight_error_compute(orig, quant, &e->werr)) != QT_OK) return st;
    size_t l;
    qt_proj p;
    if (qt_llama_parse_linear(name, &l, &p)) {
        e->layer = (int64_t)l;
        e->proj = p;
        size_t nr, ni;
        const float *x = set ? qt_calib_set_rows(set, l, p, &nr, &ni) : NULL;
        if (x && nr > 0) {
            if (ni != orig->n_in) return QT_ERR_ARG;
            if ((st = qt_output_error_compute(orig, quant, x, nr, &e->oerr)) != QT_OK) return st;
            e->have_out = true;
        }
    }
    e->threshold = qt_calib_default_threshold(quant->scheme);
    if (e->threshold > 0 && max_error > 0) e->threshold = max_error;
    if (e->have_out && e->threshold > 0)
        e->verdict = e->oerr.rel <= e->threshold ? QT_VERDICT_PASS : QT_VERDICT_FAIL;
    return QT_OK;
}
