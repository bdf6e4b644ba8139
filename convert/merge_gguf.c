/* convert/merge_gguf.c: `qtool merge BASE ADAPTER OUT.gguf --format gguf
 * --scheme S`: the adapter folded into BASE (W' = W + s.B.A, from the
 * original or the dequantized weights, as `merge` does) and written as one
 * llama.cpp-ready GGUF of any GGUF scheme, through the two pipelines that
 * own each half: qt_merge writes W' as an fp32 model into a private
 * staging folder beside OUT, qt_gguf_export turns that into OUT.gguf
 * (names, Q/K permutation, metadata, type policy, atomic write), and the
 * staging folder is removed whatever happens. Memory stays bounded as in
 * each half; the disk needs room for the fp32 model for a moment. */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "convert/gguf_export.h"
#include "convert/merge.h"
#include "formats/fsutil.h"
#include "formats/out_stage.h"

qt_status qt_merge_to_gguf(const qt_merge_opts *o, const char *gguf_scheme, bool pure,
                           FILE *plan_out, volatile sig_atomic_t *cancel, char *errmsg)
{
    qt_status st = QT_OK;
    qt_merge *m = NULL;
    qt_out_stage stage;
    memset(&stage, 0, sizeof stage);
    QT_CHECK(qt_gguf_scheme_find(gguf_scheme), QT_ERR_ARG,
             "merge --format gguf --scheme '%s': not a GGUF scheme (%s)",
             gguf_scheme ? gguf_scheme : "", qt_gguf_scheme_names());
    QT_CHECK(o->force || access(o->out, F_OK) != 0, QT_ERR_ARG,
             "output '%s' exists (--force replaces it)", o->out);
    /* 1. the merged model, fp32, in a staging folder beside OUT */
    QT_TRY(qt_out_stage_begin(&stage, o->out, false, NULL, errmsg));
    char merged[PATH_MAX];
    QT_CHECK(qt_path_join(merged, sizeof merged, stage.dir, "merged"), QT_ERR_ARG,
             "output path too long");
    qt_merge_opts mo = *o;
    mo.out = merged;
    mo.scheme = QT_SCHEME_FP32;
    mo.format = NULL;
    mo.force = false;
    QT_TRY(qt_merge_plan(&mo, &m, errmsg));
    QT_TRY(qt_merge_run(m, errmsg));
    /* 2. the GGUF from it */
    qt_gguf_export_opts go = {.in = merged, .out = o->out, .scheme = gguf_scheme, .pure = pure,
                              .force = o->force, .plan_out = plan_out, .progress = o->progress,
                              .cancel = cancel};
    qt_gguf_export_summary sum;
    memset(&sum, 0, sizeof sum);
    QT_TRY(qt_gguf_export(&go, &sum, errmsg));
fail:
    qt_merge_free(m);
    qt_out_stage_abort(&stage); /* the fp32 model is never left behind */
    return st;
}
