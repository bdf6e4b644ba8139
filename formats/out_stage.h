/*
 * formats/out_stage.h: the staging folder every output format assembles
 * its files in: `<parent>/<prefix><pid>` beside OUT (the prefix is
 * `.<base>.qtool-tmp.`, or a cut base plus a hash of it when the name
 * would pass NAME_MAX), renamed into place (or exchanged with an existing
 * OUT, atomically) only when complete, removed on failure. It is created
 * 0700 and then made no more readable than the input's folder. Folders
 * left by killed runs (their process gone) are removed when a new stage
 * for the same OUT begins.
 */
#ifndef QT_FORMATS_OUT_STAGE_H
#define QT_FORMATS_OUT_STAGE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/common.h"

typedef struct qt_out_stage {
    char out[PATH_MAX];    /* the final path */
    char parent[PATH_MAX]; /* its folder */
    char dir[PATH_MAX];    /* the staging folder; "" when none */
    bool replace;          /* OUT exists and is exchanged on commit */
} qt_out_stage;

/* The prefix (buf, n bytes) of the staging folders of an OUT whose base
 * name is base: the folder is <prefix><pid>, within NAME_MAX whatever the
 * base's length (a base too long is cut and followed by 16 hex digits of
 * its sha256, so names stay distinct). The one home of that name. */
void qt_out_stage_prefix(const char *base, char *buf, size_t n);

/* Creates the staging folder for out (mode 0700), then, when mode_of is
 * not NULL, makes it no more readable than the folder mode_of
 * (qt_limit_mode; the input's folder), else 0755 less the umask.
 * @return QT_OK, QT_ERR_ARG (path too long), QT_ERR_IO. */
qt_status qt_out_stage_begin(qt_out_stage *s, const char *out, bool replace, const char *mode_of,
                             char *errmsg);
/* fsyncs the staging folder and moves it to OUT (the old OUT removed).
 * When OUT appeared meanwhile (another process wrote it), says so and
 * leaves it alone. @return QT_OK, QT_ERR_IO. */
qt_status qt_out_stage_commit(qt_out_stage *s, char *errmsg);
/* Removes the staging folder (if any). */
void qt_out_stage_abort(qt_out_stage *s);

#endif /* QT_FORMATS_OUT_STAGE_H */
