/* common/progress.c: terminal progress bar. */
#include "common/progress.h"

#include <string.h>
#include <unistd.h>

#include "common/common.h"

void qt_progress_init(qt_progress *p, FILE *out, bool enabled, const char *label,
                      uint64_t total_items, uint64_t total_bytes)
{
    memset(p, 0, sizeof *p);
    if (enabled && out && isatty(fileno(out))) p->out = out;
    p->label = label ? label : "";
    p->total_items = total_items;
    p->total_bytes = total_bytes;
    p->t_start = qt_now();
}

static void draw(qt_progress *p, double now)
{
    double frac = p->total_bytes ? (double)p->done_bytes / (double)p->total_bytes
                  : p->total_items ? (double)p->done_items / (double)p->total_items
                                   : 1.0;
    if (frac > 1) frac = 1;
    int width = 30, filled = (int)(frac * width);
    char bar[32];
    for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '.';
    bar[width] = 0;
    double el = now - p->t_start;
    double rate = el > 0 ? (double)p->done_bytes / el / 1e6 : 0;
    double eta = frac > 0 ? el / frac - el : 0;
    fprintf(p->out, "\r%s [%s] %3.0f%% %llu/%llu  %.1f MB/s  ETA %.0fs ", p->label, bar,
            frac * 100, (unsigned long long)p->done_items, (unsigned long long)p->total_items,
            rate, eta);
    fflush(p->out);
    p->drawn = true;
    p->t_last_draw = now;
}

void qt_progress_add(qt_progress *p, uint64_t items, uint64_t bytes)
{
    if (!p) return;
    p->done_items += items;
    p->done_bytes += bytes;
    if (!p->out) return;
    double now = qt_now();
    if (now - p->t_last_draw >= 0.1) draw(p, now);
}

void qt_progress_finish(qt_progress *p)
{
    if (!p || !p->out) return;
    draw(p, qt_now());
    fputc('\n', p->out);
    p->out = NULL;
}
