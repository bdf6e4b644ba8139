/*
 * formats/out_stage.h: the staging folder every output format assembles
 * its files in: `<parent>/.<base>.qtool-tmp.<pid>` beside OUT, renamed
 * into place (or exchanged with an existing OUT, atomically) only when
 * complete, removed on failure. Folders left by killed runs (their process
 * gone) are removed when a new stage for the same OUT begins.
 */
#ifndef QT_FORMATS_OUT_STAGE_H
#define QT_FORMATS_OUT_STAGE_H

#include <limits.h>
#include <stdbool.h>

#include "common/common.h"

typedef struct qt_out_stage {
    char out[PATH_MAX];    /* the final path */
    char parent[PATH_MAX]; /* its folder */
    char dir[PATH_MAX];    /* the staging folder; "" when none */
    bool replace;          /* OUT exists and is exchanged on commit */
} qt_out_stage;

/* Creates the staging folder for out. @return QT_OK, QT_ERR_ARG (path too
 * long), QT_ERR_IO. */
qt_status qt_out_stage_begin(qt_out_stage *s, const char *out, bool replace, char *errmsg);
/* fsyncs the staging folder and moves it to OUT (the old OUT removed).
 * @return QT_OK, QT_ERR_IO. */
qt_status qt_out_stage_commit(qt_out_stage *s, char *errmsg);
/* Removes the staging folder (if any). */
void qt_out_stage_abort(qt_out_stage *s);

#endif /* QT_FORMATS_OUT_STAGE_H */
