/*
 * common/progress.h: a progress bar for long work (items, bytes, rate, ETA).
 *
 * Drawn on the FILE given to qt_progress_init (the CLI passes stderr) only
 * when that stream is a terminal and the bar is enabled; otherwise every
 * call is a no-op, so library code can report progress unconditionally.
 * Redraws at most ~10 times a second. Not thread-safe: update it from one
 * thread.
 */
#ifndef QT_PROGRESS_H
#define QT_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct qt_progress {
    FILE *out;            /* borrowed; NULL = silent */
    const char *label;    /* borrowed, e.g. "convert" */
    uint64_t total_items, total_bytes;
    uint64_t done_items, done_bytes;
    double t_start, t_last_draw;
    bool drawn;
} qt_progress;

/* out may be NULL; enabled=false or a non-terminal out makes it silent. */
void qt_progress_init(qt_progress *p, FILE *out, bool enabled, const char *label,
                      uint64_t total_items, uint64_t total_bytes);
/* Adds items and bytes done and redraws when due. Accepts NULL. */
void qt_progress_add(qt_progress *p, uint64_t items, uint64_t bytes);
/* Draws the final state and ends the line. Accepts NULL. */
void qt_progress_finish(qt_progress *p);

#endif /* QT_PROGRESS_H */
