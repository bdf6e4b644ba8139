/*
 * bench/svg.h: a small SVG writer for benchmark charts: a row of scatter
 * panels, each with its own axes (linear or log10 y), grid lines, tick
 * labels and one labelled point per item. The output is a standalone SVG 1.1
 * document (no scripts, no external fonts or styles) that any browser shows.
 *
 * What it does not do: lines between points, legends, colours per series
 * beyond a fixed palette, or text measurement (labels are placed beside
 * their point and may overlap when points coincide).
 *
 * Thread-safety: pure functions over the caller's data. Text is escaped for
 * XML (&, <, >, ", ').
 */
#ifndef QT_BENCH_SVG_H
#define QT_BENCH_SVG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "common/common.h"

typedef struct qt_svg_point {
    double x, y;
    const char *label; /* borrowed; may be NULL */
} qt_svg_point;

typedef struct qt_svg_panel {
    const char *title, *x_label, *y_label; /* borrowed */
    bool log_y;        /* log10 y axis: points with y <= y_floor are drawn on the floor */
    double y_floor;    /* log_y only: the smallest y shown (> 0) */
    const qt_svg_point *points; /* (n_points) borrowed */
    size_t n_points;
} qt_svg_panel;

/* Writes a chart of n_panels panels side by side (each 480x360 px) under
 * title to f. Non-finite coordinates are skipped.
 * @return QT_OK, QT_ERR_ARG (no panels), QT_ERR_IO (a write failed). */
qt_status qt_svg_write_panels(FILE *f, const char *title, const qt_svg_panel *panels,
                              size_t n_panels, char *errmsg);

#endif /* QT_BENCH_SVG_H */
