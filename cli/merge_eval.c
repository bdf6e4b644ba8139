/* cli/merge_eval.c: `qtool merge ... --eval TEXT`: what merging cost,
 * measured. The model as trained (the quantized base + the adapter,
 * unmerged) is BASE of a perplexity / KL comparison (bench/ppl.h) against
 * the merged output and the alternatives, each merged into a temporary
 * folder beside OUT: onto the quantized weights vs onto the original ones,
 * requantized (the run's scheme) vs 16-bit (bf16). Table on stdout, JSON
 * and SVG as `bench ppl` writes them. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/ppl.h"
#include "convert/merge.h"
#include "cli/cli.h"
#include "formats/fsutil.h"

#define MAX_MODELS 6

/* The merges to compare: onto quantized / original (when that base is
 * known) x the run's scheme / bf16, except the run's own (OUT). */
static size_t variants(const qt_merge_opts *o, const char *qbase, const char *orig,
                       qt_merge_onto *onto, qt_scheme *scheme, const char **base)
{
    const qt_scheme schemes[2] = {o->scheme, QT_SCHEME_BF16};
    const char *bases[2] = {qbase, orig};
    size_t n = 0;
    for (int b = 0; b < 2; b++)
        for (int s = 0; s < 2 && bases[b]; s++) {
            if (s == 1 && schemes[1] == schemes[0]) continue;
            if ((qt_merge_onto)(b == 0 ? QT_MERGE_ONTO_QUANTIZED : QT_MERGE_ONTO_ORIGINAL) ==
                    o->onto && schemes[s] == o->scheme)
                continue; /* OUT itself */
            onto[n] = b == 0 ? QT_MERGE_ONTO_QUANTIZED : QT_MERGE_ONTO_ORIGINAL;
            scheme[n] = schemes[s];
            base[n++] = bases[b];
        }
    return n;
}

/* One alternative merge into dir (quietly). Returns an exit code. */
static int merge_into(const qt_merge_opts *o, qt_merge_onto onto, qt_scheme scheme,
                      const char *base, const char *dir)
{
    char err[QT_ERRMSG_SIZE] = "";
    qt_merge_opts v = *o;
    v.onto = onto;
    v.scheme = scheme;
    v.base = base;
    v.out = dir;
    v.force = false;
    v.progress = NULL;
    qt_merge *m = NULL;
    qt_status st = qt_merge_plan(&v, &m, err);
    if (st == QT_OK) st = qt_merge_run(m, err);
    qt_merge_free(m);
    if (st != QT_OK) qt_cli_error("--eval: merging onto %s as %s: %s", qt_merge_onto_name(onto),
                                  qt_scheme_get(scheme)->name, err);
    return st == QT_OK ? QT_EXIT_OK : qt_cli_exit_for(st);
}

/* A temporary folder beside OUT for the alternatives. */
static bool make_tmp(const char *out, char *tmp, size_t n)
{
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", out);
    char *slash = strrchr(parent, '/');
    if (slash) *slash = 0;
    else snprintf(parent, sizeof parent, ".");
    if ((size_t)snprintf(tmp, n, "%s/.qtool-merge-eval-XXXXXX", parent) >= n) return false;
    return mkdtemp(tmp) != NULL;
}

int qt_cli_merge_eval(const qt_merge_opts *o, const qt_cli_merge_eval_opts *e, bool quiet)
{
    const char *qbase = e->quantized ? e->quantized
                        : o->onto == QT_MERGE_ONTO_QUANTIZED ? o->base : NULL;
    const char *orig = e->original ? e->original
                       : o->onto == QT_MERGE_ONTO_ORIGINAL ? o->base : NULL;
    if (!qbase) {
        qt_cli_error("--eval compares with the model as trained: give the quantized model the "
                     "adapter was trained on (--eval-quantized QBASE)");
        return QT_EXIT_USAGE;
    }
    char tmp[PATH_MAX], trained[2 * PATH_MAX + 2], paths[MAX_MODELS][PATH_MAX + 64];
    const char *models[MAX_MODELS + 2];
    qt_merge_onto onto[4];
    qt_scheme scheme[4];
    const char *base[4];
    int rc = QT_EXIT_OK;
    if (!make_tmp(o->out, tmp, sizeof tmp)) {
        qt_cli_error("--eval: cannot create a temporary folder beside '%s': %s", o->out,
                     strerror(errno));
        return QT_EXIT_FAIL;
    }
    /* rows: the model as trained, OUT, then each alternative */
    snprintf(trained, sizeof trained, "%s+%s", qbase, o->adapter);
    size_t n = 0;
    models[n++] = trained;
    models[n++] = o->out;
    size_t nv = variants(o, qbase, orig, onto, scheme, base);
    for (size_t i = 0; i < nv && rc == QT_EXIT_OK; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/onto-%s-%s", tmp, qt_merge_onto_name(onto[i]),
                 qt_scheme_get(scheme[i])->name);
        if (!quiet) fprintf(stderr, "qtool: --eval: merging onto %s as %s\n",
                            qt_merge_onto_name(onto[i]), qt_scheme_get(scheme[i])->name);
        rc = merge_into(o, onto[i], scheme[i], base[i], paths[i]);
        models[n++] = paths[i];
    }
    size_t text_len = 0;
    char *text = rc == QT_EXIT_OK ? qt_cli_read_file(e->text, &text_len, &rc) : NULL;
    if (text) {
        char err[QT_ERRMSG_SIZE] = "";
        qt_ppl_opts po = {.ctx = e->ctx, .max_chunks = e->chunks,
                          .progress = quiet ? NULL : stderr};
        qt_ppl_result *r = NULL;
        qt_status st = qt_ppl_compare(models, n, text, text_len, &po, &r, err);
        if (st != QT_OK) {
            qt_cli_error("--eval: %s", err);
            rc = qt_cli_exit_for(st);
        } else {
            printf("the model as trained (first row): %s; KL of each merge against it\n",
                   trained);
            rc = qt_cli_ppl_report(r, e->text, e->json, e->plot);
        }
        qt_ppl_result_free(r);
        qt_free(text);
    }
    qt_tree_remove(tmp);
    return rc;
}
