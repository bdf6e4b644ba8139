/* bench/svg.c: scatter-panel SVG charts (see svg.h). */
#include "bench/svg.h"

#include <math.h>
#include <string.h>

#define PANEL_W 480.0
#define PANEL_H 360.0
#define TITLE_H 40.0
#define M_LEFT 70.0
#define M_RIGHT 20.0
#define M_TOP 36.0
#define M_BOTTOM 50.0

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                      "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"};

static void put_text(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        default:
            /* control characters are not allowed in XML 1.0 */
            fputc((unsigned char)*s < 0x20 ? ' ' : *s, f);
        }
    }
}

/* A "nice" tick step (1, 2 or 5 times a power of ten) for about 5 ticks. */
static double nice_step(double span)
{
    double raw = span / 5.0;
    double p = pow(10.0, floor(log10(raw)));
    double m = raw / p;
    return (m < 1.5 ? 1.0 : m < 3.5 ? 2.0 : m < 7.5 ? 5.0 : 10.0) * p;
}

static void fmt_num(char *buf, size_t n, double v)
{
    if (v != 0.0 && (fabs(v) < 1e-3 || fabs(v) >= 1e5)) snprintf(buf, n, "%.0e", v);
    else snprintf(buf, n, "%.6g", v);
}

typedef struct axis {
    double lo, hi;
    bool log;
} axis;

static double map(const axis *a, double v, double p0, double p1)
{
    double t;
    if (a->log) t = (log10(v) - a->lo) / (a->hi - a->lo);
    else t = (v - a->lo) / (a->hi - a->lo);
    return p0 + t * (p1 - p0);
}

static void panel(FILE *f, const qt_svg_panel *p, double ox, double oy)
{
    double x0 = ox + M_LEFT, x1 = ox + PANEL_W - M_RIGHT;
    double y0 = oy + PANEL_H - M_BOTTOM, y1 = oy + M_TOP; /* y0: bottom */
    axis ax = {INFINITY, -INFINITY, false}, ay = {INFINITY, -INFINITY, p->log_y};
    double floor_y = p->log_y && p->y_floor > 0 ? p->y_floor : 1e-9;
    for (size_t i = 0; i < p->n_points; i++) {
        double x = p->points[i].x, y = p->points[i].y;
        if (!isfinite(x) || !isfinite(y)) continue;
        if (p->log_y && y < floor_y) y = floor_y;
        if (x < ax.lo) ax.lo = x;
        if (x > ax.hi) ax.hi = x;
        double yy = p->log_y ? log10(y) : y;
        if (yy < ay.lo) ay.lo = yy;
        if (yy > ay.hi) ay.hi = yy;
    }
    if (!(ax.lo <= ax.hi)) ax.lo = 0, ax.hi = 1;
    if (!(ay.lo <= ay.hi)) ay.lo = 0, ay.hi = 1;
    if (ax.hi - ax.lo < 1e-12) ax.lo -= 1, ax.hi += 1;
    if (ay.hi - ay.lo < 1e-12) ay.lo -= p->log_y ? 1 : fmax(1e-3, fabs(ay.lo) * 0.01),
                               ay.hi += p->log_y ? 1 : fmax(1e-3, fabs(ay.hi) * 0.01);
    double pad = (ax.hi - ax.lo) * 0.08;
    ax.lo -= pad, ax.hi += pad;
    if (p->log_y) {
        ay.lo = floor(ay.lo), ay.hi = ceil(ay.hi);
        if (ay.hi <= ay.lo) ay.hi = ay.lo + 1;
    } else {
        pad = (ay.hi - ay.lo) * 0.08;
        ay.lo -= pad, ay.hi += pad;
    }

    fprintf(f, "<g>\n<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#fff\" "
               "stroke=\"#444\"/>\n", x0, y1, x1 - x0, y0 - y1);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"14\" "
               "font-weight=\"bold\">", (x0 + x1) / 2, oy + 22);
    put_text(f, p->title);
    fputs("</text>\n", f);
    char buf[64];
    /* x ticks */
    double st = nice_step(ax.hi - ax.lo);
    for (double v = ceil(ax.lo / st) * st; v <= ax.hi + 1e-9 * st; v += st) {
        double x = map(&ax, v, x0, x1);
        fmt_num(buf, sizeof buf, fabs(v) < 1e-12 * st ? 0.0 : v);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                   "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"11\">%s</text>\n",
                x, y0, x, y1, x, y0 + 15, buf);
    }
    /* y ticks */
    if (p->log_y) {
        for (double e = ay.lo; e <= ay.hi + 1e-9; e += 1) {
            double y = y0 + (e - ay.lo) / (ay.hi - ay.lo) * (y1 - y0);
            snprintf(buf, sizeof buf, "1e%d", (int)e);
            fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                       "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"11\">%s</text>\n",
                    x0, y, x1, y, x0 - 5, y + 4, buf);
        }
    } else {
        st = nice_step(ay.hi - ay.lo);
        for (double v = ceil(ay.lo / st) * st; v <= ay.hi + 1e-9 * st; v += st) {
            double y = map(&ay, v, y0, y1);
            fmt_num(buf, sizeof buf, fabs(v) < 1e-12 * st ? 0.0 : v);
            fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                       "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"11\">%s</text>\n",
                    x0, y, x1, y, x0 - 5, y + 4, buf);
        }
    }
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\">",
            (x0 + x1) / 2, y0 + 36);
    put_text(f, p->x_label);
    fprintf(f, "</text>\n<text transform=\"translate(%.1f %.1f) rotate(-90)\" "
               "text-anchor=\"middle\" font-size=\"12\">", ox + 18, (y0 + y1) / 2);
    put_text(f, p->y_label);
    fputs("</text>\n", f);
    /* points */
    for (size_t i = 0; i < p->n_points; i++) {
        double x = p->points[i].x, y = p->points[i].y;
        if (!isfinite(x) || !isfinite(y)) continue;
        bool on_floor = p->log_y && y < floor_y;
        if (on_floor) y = floor_y;
        double px = map(&ax, x, x0, x1);
        double py = p->log_y ? y0 + (log10(y) - ay.lo) / (ay.hi - ay.lo) * (y1 - y0)
                             : map(&ay, y, y0, y1);
        const char *col = palette[i % (sizeof palette / sizeof palette[0])];
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"%s\"%s><title>", px, py, col,
                on_floor ? " fill-opacity=\"0.4\"" : "");
        put_text(f, p->points[i].label);
        fprintf(f, ": x=%.6g y=%.6g</title></circle>\n", p->points[i].x, p->points[i].y);
        if (p->points[i].label) {
            bool right = px < (x0 + x1) / 2;
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" font-size=\"11\" "
                       "fill=\"%s\">", right ? px + 8 : px - 8, py - 6,
                    right ? "start" : "end", col);
            put_text(f, p->points[i].label);
            fputs(on_floor ? " (0)</text>\n" : "</text>\n", f);
        }
    }
    fputs("</g>\n", f);
}

qt_status qt_svg_write_panels(FILE *f, const char *title, const qt_svg_panel *panels,
                              size_t n_panels, char *errmsg)
{
    if (!f || !panels || n_panels == 0)
        return qt_set_err(errmsg, QT_ERR_ARG, "svg: no panels to draw");
    double w = PANEL_W * (double)n_panels, h = PANEL_H + TITLE_H;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%.0f\" "
               "height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"#fafafa\"/>\n"
               "<text x=\"%.1f\" y=\"26\" text-anchor=\"middle\" font-size=\"16\">",
            w, h, w, h, w / 2);
    put_text(f, title);
    fputs("</text>\n", f);
    for (size_t i = 0; i < n_panels; i++) panel(f, &panels[i], PANEL_W * (double)i, TITLE_H);
    fputs("</svg>\n", f);
    if (ferror(f)) return qt_set_err(errmsg, QT_ERR_IO, "svg: write failed");
    return QT_OK;
}
