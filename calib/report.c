/* calib/report.c: validation reports (calib/calib.h): entries, aggregates,
 * JSON, and the model-against-model comparison behind `qtool validate`. */
#include "calib/calib.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/layout.h"
#include "formats/modeldir.h"
#include "formats/pyjson.h"

const char *qt_calib_verdict_name(qt_calib_verdict v)
{
    static const char *const n[QT_VERDICT_COUNT] = {"pass", "fallback", "fail", "unchecked"};
    return (unsigned)v < QT_VERDICT_COUNT ? n[v] : "?";
}

void qt_calib_report_init(qt_calib_report *r) { memset(r, 0, sizeof *r); }

void qt_calib_report_release(qt_calib_report *r)
{
    if (!r) return;
    qt_free(r->entries);
    memset(r, 0, sizeof *r);
}

qt_calib_entry *qt_calib_report_find(qt_calib_report *r, const char *name)
{
    for (size_t i = 0; i < r->n; i++)
        if (!strcmp(r->entries[i].name, name)) return &r->entries[i];
    return NULL;
}

qt_status qt_calib_report_add(qt_calib_report *r, const qt_calib_entry *e)
{
    qt_calib_entry *have = qt_calib_report_find(r, e->name);
    if (have) {
        *have = *e;
        return QT_OK;
    }
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 64;
        qt_calib_entry *ne = qt_realloc(r->entries, cap * sizeof *ne);
        if (!ne) return QT_ERR_NOMEM;
        r->entries = ne;
        r->cap = cap;
    }
    r->entries[r->n++] = *e;
    return QT_OK;
}

void qt_calib_report_counts(const qt_calib_report *r, size_t counts[QT_VERDICT_COUNT])
{
    memset(counts, 0, QT_VERDICT_COUNT * sizeof *counts);
    for (size_t i = 0; i < r->n; i++)
        if ((unsigned)r->entries[i].verdict < QT_VERDICT_COUNT) counts[r->entries[i].verdict]++;
}

/* The output error the tensor has in the written model: after a quantized
 * fallback its fallback measurement, after a kept one none (exact). */
static const qt_output_error *effective(const qt_calib_entry *e, qt_output_error *zero)
{
    if (e->verdict == QT_VERDICT_FALLBACK) {
        if (e->have_fb) return &e->fb_oerr;
        memset(zero, 0, sizeof *zero);
        zero->y_sq = e->oerr.y_sq;
        qt_output_error_finish(zero);
        return zero;
    }
    return &e->oerr;
}

qt_output_error qt_calib_report_aggregate(const qt_calib_report *r, int64_t layer, qt_proj proj)
{
    qt_output_error a;
    memset(&a, 0, sizeof a);
    for (size_t i = 0; i < r->n; i++) {
        const qt_calib_entry *e = &r->entries[i];
        if (!e->have_out || (layer >= 0 && e->layer != layer) ||
            (proj != QT_PROJ_COUNT && e->proj != proj))
            continue;
        qt_output_error z;
        const qt_output_error *o = effective(e, &z);
        a.y_sq += o->y_sq;
        a.e_sq += o->e_sq;
        if (o->n_rows > a.n_rows) a.n_rows = o->n_rows;
    }
    qt_output_error_finish(&a);
    return a;
}

/* ---- JSON ----------------------------------------------------------------- */

static void jnum(qt_strbuf *b, double v)
{
    char t[48];
    if (isnan(v)) snprintf(t, sizeof t, "null");
    else if (isinf(v)) snprintf(t, sizeof t, "%s", v > 0 ? "\"inf\"" : "\"-inf\"");
    else qt_py_float_repr(v, t, sizeof t);
    qt_strbuf_puts(b, t);
}

static void jerr(qt_strbuf *b, const qt_output_error *o)
{
    qt_strbuf_puts(b, "{\"rel_output_error\": ");
    jnum(b, o->rel);
    qt_strbuf_puts(b, ", \"output_sqnr_db\": ");
    jnum(b, o->sqnr_db);
    qt_strbuf_puts(b, "}");
}

static int cmp_worst(const void *a, const void *b)
{
    const qt_calib_entry *x = *(const qt_calib_entry *const *)a,
                         *y = *(const qt_calib_entry *const *)b;
    double rx = x->have_out ? x->oerr.rel : -1, ry = y->have_out ? y->oerr.rel : -1;
    if (isnan(rx)) rx = INFINITY;
    if (isnan(ry)) ry = INFINITY;
    return rx < ry ? 1 : rx > ry ? -1 : strcmp(x->name, y->name);
}

/* Entries sorted worst first (by output error before any fallback).
 * Caller frees. NULL when out of memory. */
static const qt_calib_entry **sorted_worst(const qt_calib_report *r)
{
    const qt_calib_entry **v = qt_malloc((r->n ? r->n : 1) * sizeof *v);
    if (!v) return NULL;
    for (size_t i = 0; i < r->n; i++) v[i] = &r->entries[i];
    qsort(v, r->n, sizeof *v, cmp_worst);
    return v;
}

static int64_t max_layer(const qt_calib_report *r)
{
    int64_t m = -1;
    for (size_t i = 0; i < r->n; i++)
        if (r->entries[i].layer > m) m = r->entries[i].layer;
    return m;
}

qt_status qt_calib_report_json(const qt_calib_report *r, char **out, char *errmsg)
{
    qt_strbuf b = {0};
    size_t counts[QT_VERDICT_COUNT];
    qt_calib_report_counts(r, counts);
    const qt_calib_entry **worst = sorted_worst(r);
    if (!worst) return qt_set_err(errmsg, QT_ERR_NOMEM, "out of memory");
    qt_strbuf_puts(&b, "{\n  \"original\": ");
    qt_strbuf_json_string(&b, r->original);
    qt_strbuf_puts(&b, ",\n  \"quantized\": ");
    qt_strbuf_json_string(&b, r->quantized);
    qt_strbuf_puts(&b, ",\n  \"calibration\": {\"text\": ");
    qt_strbuf_json_string(&b, r->text);
    qt_strbuf_printf(&b, ", \"tokens_evaluated\": %zu, \"rows_per_linear\": %zu, \"cache\": ",
                     r->n_tokens, r->n_rows);
    qt_strbuf_json_string(&b, r->cache);
    qt_strbuf_puts(&b, ", \"fingerprint\": ");
    qt_strbuf_json_string(&b, r->fingerprint);
    qt_strbuf_puts(&b, "},\n  \"thresholds\": {\"max_output_error\": ");
    if (r->max_error > 0) jnum(&b, r->max_error);
    else qt_strbuf_puts(&b, "null");
    qt_strbuf_puts(&b, ", \"defaults\": {");
    for (size_t i = 0, k = 0; i < qt_scheme_count(); i++) { /* every checked scheme */
        const qt_scheme_info *si = qt_scheme_info_at(i);
        if (si->calib_threshold <= 0) continue;
        qt_strbuf_printf(&b, "%s\"%s\": ", k++ ? ", " : "", si->name);
        jnum(&b, si->calib_threshold);
    }
    qt_strbuf_puts(&b, "}},\n  \"summary\": {");
    qt_strbuf_printf(&b, "\"tensors\": %zu, \"pass\": %zu, \"fallback\": %zu, \"fail\": %zu, "
                         "\"unchecked\": %zu, \"ok\": %s, \"model\": ",
                     r->n, counts[QT_VERDICT_PASS], counts[QT_VERDICT_FALLBACK],
                     counts[QT_VERDICT_FAIL], counts[QT_VERDICT_UNCHECKED],
                     counts[QT_VERDICT_FAIL] ? "false" : "true");
    qt_output_error all = qt_calib_report_aggregate(r, -1, QT_PROJ_COUNT);
    jerr(&b, &all);
    qt_strbuf_puts(&b, "},\n  \"per_projection\": {");
    bool first = true;
    for (int p = 0; p < QT_PROJ_COUNT; p++) {
        qt_output_error a = qt_calib_report_aggregate(r, -1, (qt_proj)p);
        if (a.y_sq == 0 && a.e_sq == 0) continue;
        qt_strbuf_printf(&b, "%s\n    \"%s\": ", first ? "" : ",", qt_proj_name((qt_proj)p));
        jerr(&b, &a);
        first = false;
    }
    qt_strbuf_puts(&b, "\n  },\n  \"per_layer\": [");
    for (int64_t l = 0; l <= max_layer(r); l++) {
        qt_output_error a = qt_calib_report_aggregate(r, l, QT_PROJ_COUNT);
        qt_strbuf_printf(&b, "%s\n    {\"layer\": %" PRId64 ", ", l ? "," : "", l);
        qt_strbuf_puts(&b, "\"rel_output_error\": ");
        jnum(&b, a.rel);
        qt_strbuf_puts(&b, ", \"output_sqnr_db\": ");
        jnum(&b, a.sqnr_db);
        qt_strbuf_puts(&b, "}");
    }
    qt_strbuf_puts(&b, "\n  ],\n  \"worst\": [");
    for (size_t i = 0, k = 0; i < r->n && k < 10; i++) {
        if (!worst[i]->have_out) continue;
        qt_strbuf_puts(&b, k ? ", " : "");
        qt_strbuf_json_string(&b, worst[i]->name);
        k++;
    }
    qt_strbuf_puts(&b, "],\n  \"fallbacks\": [");
    first = true;
    for (size_t i = 0; i < r->n; i++) {
        const qt_calib_entry *e = &r->entries[i];
        if (e->verdict != QT_VERDICT_FALLBACK) continue;
        qt_strbuf_puts(&b, first ? "\n    {\"name\": " : ",\n    {\"name\": ");
        qt_strbuf_json_string(&b, e->name);
        qt_strbuf_printf(&b, ", \"from\": \"%s\", \"to\": \"%s\", \"rel_output_error\": ",
                         e->scheme, e->fallback);
        jnum(&b, e->oerr.rel);
        qt_strbuf_puts(&b, "}");
        first = false;
    }
    qt_strbuf_puts(&b, first ? "],\n  \"tensors\": [" : "\n  ],\n  \"tensors\": [");
    for (size_t i = 0; i < r->n; i++) {
        const qt_calib_entry *e = &r->entries[i];
        qt_strbuf_puts(&b, i ? ",\n    {\"name\": " : "\n    {\"name\": ");
        qt_strbuf_json_string(&b, e->name);
        qt_strbuf_printf(&b, ", \"layer\": %" PRId64 ", \"projection\": ", e->layer);
        if (e->proj < QT_PROJ_COUNT) qt_strbuf_printf(&b, "\"%s\"", qt_proj_name(e->proj));
        else qt_strbuf_puts(&b, "null");
        qt_strbuf_printf(&b, ", \"scheme\": \"%s\", \"verdict\": \"%s\"", e->scheme,
                         qt_calib_verdict_name(e->verdict));
        if (e->verdict == QT_VERDICT_FALLBACK)
            qt_strbuf_printf(&b, ", \"fallback\": \"%s\"", e->fallback);
        qt_strbuf_puts(&b, ", \"threshold\": ");
        if (e->threshold > 0) jnum(&b, e->threshold);
        else qt_strbuf_puts(&b, "null");
        qt_strbuf_puts(&b, ", \"rmse\": ");
        jnum(&b, e->werr.rmse);
        qt_strbuf_puts(&b, ", \"max_abs_error\": ");
        jnum(&b, e->werr.max_abs);
        qt_strbuf_puts(&b, ", \"sqnr_db\": ");
        jnum(&b, e->werr.sqnr_db);
        qt_strbuf_puts(&b, ", \"cosine\": ");
        jnum(&b, e->werr.cosine);
        qt_strbuf_puts(&b, ", \"rel_output_error\": ");
        jnum(&b, e->have_out ? e->oerr.rel : NAN);
        qt_strbuf_puts(&b, ", \"output_sqnr_db\": ");
        jnum(&b, e->have_out ? e->oerr.sqnr_db : NAN);
        if (e->have_fb) {
            qt_strbuf_puts(&b, ", \"fallback_rel_output_error\": ");
            jnum(&b, e->fb_oerr.rel);
        }
        qt_strbuf_puts(&b, "}");
    }
    qt_strbuf_puts(&b, "\n  ]\n}\n");
    qt_free(worst);
    if (b.oom) {
        qt_strbuf_release(&b);
        return qt_set_err(errmsg, QT_ERR_NOMEM, "out of memory");
    }
    *out = b.data;
    return QT_OK;
}

/* ---- comparing two models ------------------------------------------------- */

qt_status qt_calib_compare_models(const char *orig_path, const char *quant_path,
                                  const qt_calib_set *set, double max_error, qt_calib_report *r,
                                  char *errmsg)
{
    qt_status st = QT_OK;
    qt_modeldir *mo = NULL, *mq = NULL;
    qt_layout *lo = NULL, *lq = NULL;
    QT_TRY(qt_modeldir_open(orig_path, &mo, errmsg));
    QT_TRY(qt_modeldir_open(quant_path, &mq, errmsg));
    QT_TRY(qt_layout_build(mo, &lo, errmsg));
    QT_TRY(qt_layout_build(mq, &lq, errmsg));
    size_t n_linear = 0;
    for (size_t i = 0; i < qt_layout_n(lq); i++) {
        const qt_lweight *wq = qt_layout_at(lq, i);
        if (!qt_llama_parse_linear(wq->name, NULL, NULL)) continue;
        n_linear++;
        const qt_lweight *wo = qt_layout_find(lo, wq->name);
        QT_CHECK(wo, QT_ERR_FORMAT, "tensor '%s' of '%s' is not in '%s'", wq->name, quant_path,
                 orig_path);
        QT_CHECK(wo->n_dims == 2 && wq->n_dims == 2 && wo->shape[0] == wq->shape[0] &&
                     wo->shape[1] == wq->shape[1],
                 QT_ERR_FORMAT, "tensor '%s': shapes differ between the two models", wq->name);
        qt_qweight qo, qq;
        QT_TRY(qt_layout_qweight(wo, &qo, errmsg));
        QT_TRY(qt_layout_qweight(wq, &qq, errmsg));
        qt_calib_entry e;
        st = qt_calib_measure(set, wq->name, qt_lweight_label(wq), &qo, &qq, max_error, &e);
        QT_CHECK(st == QT_OK, st, "tensor '%s': cannot measure it (%s)", wq->name,
                 qt_status_str(st));
        QT_CHECK(qt_calib_report_add(r, &e) == QT_OK, QT_ERR_NOMEM, "out of memory");
    }
    QT_CHECK(n_linear > 0, QT_ERR_FORMAT, "'%s' has no decoder Linear weights", quant_path);
fail:
    qt_layout_free(lo);
    qt_layout_free(lq);
    qt_modeldir_close(mo);
    qt_modeldir_close(mq);
    return st;
}
