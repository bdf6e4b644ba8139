/* calib/report_html.c: the validation report as one self-contained HTML page
 * (calib/calib.h): inline CSS, inline SVG bar charts, no scripts, nothing
 * fetched. */
#include "calib/calib.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/pyjson.h"

static void esc(qt_strbuf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': qt_strbuf_puts(b, "&lt;"); break;
        case '>': qt_strbuf_puts(b, "&gt;"); break;
        case '&': qt_strbuf_puts(b, "&amp;"); break;
        case '"': qt_strbuf_puts(b, "&quot;"); break;
        default: qt_strbuf_append(b, s, 1);
        }
    }
}

/* v with `digits` decimals ('f') or significant digits ('g'). */
static void num(qt_strbuf *b, double v, int digits, char style)
{
    if (isnan(v)) qt_strbuf_puts(b, "&ndash;");
    else if (isinf(v)) qt_strbuf_puts(b, v > 0 ? "&infin;" : "-&infin;");
    else if (style == 'g') qt_strbuf_printf(b, "%.*g", digits, v);
    else qt_strbuf_printf(b, "%.*f", digits, v);
}

typedef struct bar {
    char label[48];
    double value; /* relative output error */
    bool bad;     /* over its threshold */
} bar;

/* A horizontal-axis bar chart: one bar per item, a dashed line at thr (when > 0). */
static void svg_bars(qt_strbuf *b, const char *title, const bar *bars, size_t n, double thr)
{
    const double W = 720, H = 240, L = 60, B = 50, T = 24;
    double vmax = thr > 0 ? thr * 1.2 : 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(bars[i].value) && bars[i].value > vmax) vmax = bars[i].value;
    if (vmax <= 0) vmax = 1;
    const double ph = H - B - T, pw = W - L - 10;
    qt_strbuf_printf(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
                        "role=\"img\" aria-label=\"",
                     W, H);
    esc(b, title);
    qt_strbuf_puts(b, "\"><text x=\"4\" y=\"16\" class=\"t\">");
    esc(b, title);
    qt_strbuf_puts(b, "</text>");
    for (int g = 0; g <= 4; g++) {
        double v = vmax * g / 4, y = T + ph - ph * g / 4;
        qt_strbuf_printf(b, "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" class=\"g\"/>"
                            "<text x=\"%.0f\" y=\"%.1f\" class=\"a\" text-anchor=\"end\">%.3g</text>",
                         L, W - 10, y, y, L - 4, y + 4, v);
    }
    double bw = n ? pw / (double)n : pw;
    for (size_t i = 0; i < n; i++) {
        double v = isfinite(bars[i].value) ? bars[i].value : vmax;
        double h = ph * v / vmax, x = L + bw * (double)i + bw * 0.15;
        qt_strbuf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" class=\"%s\">"
                            "<title>",
                         x, T + ph - h, bw * 0.7, h, bars[i].bad ? "bad" : "ok");
        esc(b, bars[i].label);
        qt_strbuf_printf(b, ": %.4g</title></rect>", bars[i].value);
        qt_strbuf_printf(b, "<text x=\"%.1f\" y=\"%.0f\" class=\"a\" text-anchor=\"end\" "
                            "transform=\"rotate(-35 %.1f %.0f)\">",
                         x + bw * 0.35, H - B + 14, x + bw * 0.35, H - B + 14);
        esc(b, bars[i].label);
        qt_strbuf_puts(b, "</text>");
    }
    if (thr > 0) {
        double y = T + ph - ph * thr / vmax;
        qt_strbuf_printf(b, "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" class=\"thr\"/>"
                            "<text x=\"%.0f\" y=\"%.1f\" class=\"a\">threshold %.3g</text>",
                         L, W - 10, y, y, W - 130, y - 4, thr);
    }
    qt_strbuf_puts(b, "</svg>\n");
}

static int cmp_rel(const void *a, const void *b)
{
    const qt_calib_entry *x = *(const qt_calib_entry *const *)a,
                         *y = *(const qt_calib_entry *const *)b;
    double rx = x->have_out ? x->oerr.rel : -1, ry = y->have_out ? y->oerr.rel : -1;
    if (isnan(rx)) rx = INFINITY;
    if (isnan(ry)) ry = INFINITY;
    return rx < ry ? 1 : rx > ry ? -1 : strcmp(x->name, y->name);
}

static void row(qt_strbuf *b, const qt_calib_entry *e)
{
    qt_strbuf_printf(b, "<tr class=\"%s\"><td>", qt_calib_verdict_name(e->verdict));
    esc(b, e->name);
    qt_strbuf_printf(b, "</td><td>%s</td><td>%s%s%s</td><td>", e->scheme,
                     qt_calib_verdict_name(e->verdict), e->verdict == QT_VERDICT_FALLBACK ? " &rarr; " : "",
                     e->verdict == QT_VERDICT_FALLBACK ? e->fallback : "");
    num(b, e->have_out ? e->oerr.rel : NAN, 4, 'f');
    qt_strbuf_puts(b, "</td><td>");
    num(b, e->have_out ? e->oerr.sqnr_db : NAN, 2, 'f');
    qt_strbuf_puts(b, "</td><td>");
    num(b, e->threshold > 0 ? e->threshold : NAN, 3, 'g');
    qt_strbuf_puts(b, "</td><td>");
    num(b, e->werr.rmse, 3, 'g');
    qt_strbuf_puts(b, "</td><td>");
    num(b, e->werr.max_abs, 3, 'g');
    qt_strbuf_puts(b, "</td><td>");
    num(b, e->werr.sqnr_db, 2, 'f');
    qt_strbuf_puts(b, "</td><td>");
    num(b, e->werr.cosine, 5, 'f');
    qt_strbuf_puts(b, "</td></tr>\n");
}

static const char *HEAD =
    "<tr><th>tensor</th><th>scheme</th><th>verdict</th><th>rel. output error</th>"
    "<th>output SQNR dB</th><th>threshold</th><th>RMSE</th><th>max abs</th>"
    "<th>weight SQNR dB</th><th>cosine</th></tr>\n";

qt_status qt_calib_report_html(const qt_calib_report *r, char **out, char *errmsg)
{
    qt_strbuf b = {0};
    size_t counts[QT_VERDICT_COUNT];
    qt_calib_report_counts(r, counts);
    const qt_calib_entry **v = qt_malloc((r->n ? r->n : 1) * sizeof *v);
    int64_t nl = -1;
    for (size_t i = 0; i < r->n; i++)
        if (r->entries[i].layer > nl) nl = r->entries[i].layer;
    nl++;
    bar *bars = qt_calloc((size_t)(nl > QT_PROJ_COUNT ? nl : QT_PROJ_COUNT) + 1, sizeof *bars);
    if (!v || !bars) {
        qt_free(v);
        qt_free(bars);
        return qt_set_err(errmsg, QT_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < r->n; i++) v[i] = &r->entries[i];
    qsort(v, r->n, sizeof *v, cmp_rel);
    double thr = r->max_error;
    for (size_t i = 0; i < r->n && thr <= 0; i++)
        if (r->entries[i].threshold > 0) thr = r->entries[i].threshold;

    qt_strbuf_puts(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                       "<title>qtool validation report</title><style>\n"
                       "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}"
                       "table{border-collapse:collapse;margin:8px 0 20px}"
                       "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
                       "td:first-child,th:first-child{text-align:left}"
                       "tr.fail td{background:#fdd}tr.fallback td{background:#ffe9c6}"
                       ".ok{fill:#4a7fb5}.bad{fill:#d9534f}.g{stroke:#ddd}"
                       ".thr{stroke:#d9534f;stroke-dasharray:6 4;stroke-width:1.5}"
                       ".a{font-size:11px;fill:#555}.t{font-size:13px;font-weight:bold}"
                       ".verdict-ok{color:#2a7a2a}.verdict-bad{color:#b52020}\n"
                       "</style></head><body>\n<h1>qtool validation report</h1>\n<p>original: <code>");
    esc(&b, r->original);
    qt_strbuf_puts(&b, "</code><br>quantized: <code>");
    esc(&b, r->quantized);
    qt_strbuf_puts(&b, "</code><br>calibration text: <code>");
    esc(&b, r->text);
    qt_strbuf_printf(&b, "</code> (%zu tokens evaluated, %zu rows per Linear, cache %s)</p>\n",
                     r->n_tokens, r->n_rows, r->cache);
    qt_output_error all = qt_calib_report_aggregate(r, -1, QT_PROJ_COUNT);
    qt_strbuf_printf(&b, "<h2 class=\"%s\">%s: %zu tensors, %zu pass, %zu fallback, %zu fail, "
                         "%zu unchecked</h2>\n<p>whole model: relative output error ",
                     counts[QT_VERDICT_FAIL] ? "verdict-bad" : "verdict-ok",
                     counts[QT_VERDICT_FAIL] ? "FAIL" : "PASS", r->n, counts[QT_VERDICT_PASS],
                     counts[QT_VERDICT_FALLBACK], counts[QT_VERDICT_FAIL],
                     counts[QT_VERDICT_UNCHECKED]);
    num(&b, all.rel, 4, 'f');
    qt_strbuf_puts(&b, ", output SQNR ");
    num(&b, all.sqnr_db, 2, 'f');
    qt_strbuf_puts(&b, " dB (after fallbacks; energy-weighted over every measured Linear)</p>\n");

    /* charts */
    for (int64_t l = 0; l < nl; l++) {
        qt_output_error a = qt_calib_report_aggregate(r, l, QT_PROJ_COUNT);
        snprintf(bars[l].label, sizeof bars[l].label, "layer %" PRId64, l);
        bars[l].value = a.rel;
        bars[l].bad = thr > 0 && !(a.rel <= thr);
    }
    svg_bars(&b, "relative output error per layer", bars, (size_t)nl, thr);
    size_t np = 0;
    for (int p = 0; p < QT_PROJ_COUNT; p++) {
        qt_output_error a = qt_calib_report_aggregate(r, -1, (qt_proj)p);
        if (a.y_sq == 0 && a.e_sq == 0) continue;
        snprintf(bars[np].label, sizeof bars[np].label, "%s", qt_proj_name((qt_proj)p));
        bars[np].value = a.rel;
        bars[np].bad = thr > 0 && !(a.rel <= thr);
        np++;
    }
    svg_bars(&b, "relative output error per projection type", bars, np, thr);

    qt_strbuf_puts(&b, "<h2>Thresholds</h2>\n<table><tr><th>scheme</th><th>max relative output "
                       "error</th></tr>\n");
    for (size_t i = 0; i < qt_scheme_count(); i++) { /* every checked scheme */
        const qt_scheme_info *si = qt_scheme_info_at(i);
        if (si->calib_threshold <= 0) continue;
        qt_strbuf_printf(&b, "<tr><td>%s</td><td>%.3g%s</td></tr>\n", si->name,
                         r->max_error > 0 ? r->max_error : si->calib_threshold,
                         r->max_error > 0 ? " (--max-output-error)" : " (default)");
    }
    qt_strbuf_puts(&b, "</table>\n<h2>Worst tensors</h2>\n<table>");
    qt_strbuf_puts(&b, HEAD);
    for (size_t i = 0; i < r->n && i < 10; i++) row(&b, v[i]);
    qt_strbuf_puts(&b, "</table>\n<h2>Every tensor</h2>\n<table>");
    qt_strbuf_puts(&b, HEAD);
    for (size_t i = 0; i < r->n; i++) row(&b, &r->entries[i]);
    qt_strbuf_puts(&b, "</table>\n<p>Relative output error = ||X(W &minus; &#x174;)<sup>T</sup>||"
                       "<sub>F</sub> / ||XW<sup>T</sup>||<sub>F</sub> on the calibration "
                       "activations X of the original model; aggregates weight each tensor by "
                       "its output energy. See docs/CALIBRATION.md.</p>\n</body></html>\n");
    qt_free(v);
    qt_free(bars);
    if (b.oom) {
        qt_strbuf_release(&b);
        return qt_set_err(errmsg, QT_ERR_NOMEM, "out of memory");
    }
    *out = b.data;
    return QT_OK;
}
