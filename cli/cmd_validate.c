/* cli/cmd_validate.c: `qtool validate ORIGINAL QUANTIZED --calib TEXT`, and the
 * calibration options it shares with `qtool convert --calib`. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "calib/calib.h"
#include "cli/cli.h"
#include "model/model.h"
#include "common/sha256.h"

/* ---- shared with cmd_convert.c -------------------------------------------- */

int qt_cli_calib_option(qt_cli_calib *o, int opt, const char *arg)
{
    long v;
    char *end;
    switch (opt) {
    case QT_CLI_CALIB_TEXT: o->text = arg; return 1;
    case QT_CLI_CALIB_TOKENS:
        if (!qt_cli_parse_int("--calib-tokens", arg, 1, 1 << 24, &v)) return -1;
        o->rows = (size_t)v;
        return 1;
    case QT_CLI_CALIB_CACHE: o->cache = arg; return 1;
    case QT_CLI_CALIB_NOCACHE: o->no_cache = true; return 1;
    case QT_CLI_CALIB_MAXERR:
        errno = 0;
        o->max_error = strtod(arg, &end);
        if (errno || end == arg || *end || !(o->max_error > 0) || !isfinite(o->max_error)) {
            qt_cli_error("--max-output-error '%s': expected a positive number such as 0.2", arg);
            return -1;
        }
        return 1;
    case QT_CLI_CALIB_HTML: o->html = arg; return 1;
    default: return 0;
    }
}

/* The default cache file: $QT_CACHE_DIR, else $XDG_CACHE_HOME/qtool, else
 * ~/.cache/qtool, named by the model and text paths and the row count
 * (the fingerprint inside decides whether it is still valid). */
static bool default_cache(const char *model, const char *text, size_t rows, char *buf, size_t n)
{
    char dir[4096], rm[4096], rt[4096];
    const char *e = getenv("QT_CACHE_DIR"), *x = getenv("XDG_CACHE_HOME"), *h = getenv("HOME");
    if (e && *e) snprintf(dir, sizeof dir, "%s", e);
    else if (x && *x) snprintf(dir, sizeof dir, "%s/qtool", x);
    else if (h && *h) snprintf(dir, sizeof dir, "%s/.cache/qtool", h);
    else return false;
    if (!realpath(model, rm)) snprintf(rm, sizeof rm, "%s", model);
    if (!realpath(text, rt)) snprintf(rt, sizeof rt, "%s", text);
    char key[8300], hex[65];
    unsigned char d[32];
    snprintf(key, sizeof key, "%s\n%s\n%zu", rm, rt, rows);
    qt_sha256(key, strlen(key), d);
    qt_sha256_hex(d, hex);
    /* mkdir -p of the cache folder */
    for (char *p = dir + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(dir, 0755);
            *p = '/';
        }
    mkdir(dir, 0755);
    int r = snprintf(buf, n, "%s/calib-%.16s.qtc", dir, hex);
    return r > 0 && (size_t)r < n;
}

int qt_cli_calib_load(const char *model, const qt_cli_calib *o, qt_calib_set **set,
                      qt_calib_report *rep, bool quiet)
{
    char cache[4200], err[QT_ERRMSG_SIZE] = "", why[QT_ERRMSG_SIZE] = "";
    const char *cp = NULL;
    if (!o->no_cache) {
        if (o->cache) cp = o->cache;
        else if (default_cache(model, o->text, o->rows, cache, sizeof cache)) cp = cache;
    }
    qt_calib_opts co = {.n_rows = o->rows, .adapter = o->adapter};
    qt_calib_cache_status cs;
    double t0 = qt_now();
    qt_status st = qt_calib_set_get(model, o->text, &co, cp, set, &cs, why, sizeof why, err);
    if (st != QT_OK) {
        qt_cli_error("calibration: %s", err);
        return qt_cli_exit_for(st);
    }
    if (!quiet) {
        fprintf(stderr,
                "qtool: calibration: %zu tokens of '%s', %zu rows per Linear input, %.2fs; "
                "cache %s%s%s%s\n",
                qt_calib_set_n_tokens(*set), o->text, qt_calib_set_n_rows(*set), qt_now() - t0,
                qt_calib_cache_status_name(cs), cp ? " (" : "", cp ? why : "", cp ? ")" : "");
    }
    snprintf(rep->text, sizeof rep->text, "%s", o->text);
    rep->n_tokens = qt_calib_set_n_tokens(*set);
    rep->n_rows = qt_calib_set_n_rows(*set);
    snprintf(rep->cache, sizeof rep->cache, "%s", qt_calib_cache_status_name(cs));
    snprintf(rep->fingerprint, sizeof rep->fingerprint, "%s", qt_calib_set_fingerprint(*set));
    rep->max_error = o->max_error;
    return QT_EXIT_OK;
}

static int write_text(const char *path, const char *text)
{
    return qt_cli_write_file(path, text, strlen(text)); /* atomic: temp + rename */
}

int qt_cli_calib_write(const qt_cli_calib *o, const char *json_path, const qt_calib_report *rep)
{
    char err[QT_ERRMSG_SIZE];
    char *s = NULL;
    int rc = QT_EXIT_OK;
    if (json_path) {
        if (qt_calib_report_json(rep, &s, err) != QT_OK) {
            qt_cli_error("%s", err);
            return QT_EXIT_FAIL;
        }
        rc = write_text(json_path, s);
        qt_free(s);
        s = NULL;
    }
    if (o->html && rc == QT_EXIT_OK) {
        if (qt_calib_report_html(rep, &s, err) != QT_OK) {
            qt_cli_error("%s", err);
            return QT_EXIT_FAIL;
        }
        rc = write_text(o->html, s);
        qt_free(s);
    }
    return rc;
}

void qt_cli_calib_print(FILE *f, const qt_calib_report *r, bool all)
{
    size_t cnt[QT_VERDICT_COUNT];
    qt_calib_report_counts(r, cnt);
    if (all) {
        fprintf(f, "%-44s %-8s %10s %9s %9s %9s  %s\n", "TENSOR", "SCHEME", "OUT_ERR", "OUT_SQNR",
                "THRESH", "W_SQNR", "VERDICT");
        for (size_t i = 0; i < r->n; i++) {
            const qt_calib_entry *e = &r->entries[i];
            fprintf(f, "%-44s %-8s %10.4f %9.2f %9.3g %9.2f  %s%s%s\n", e->name, e->scheme,
                    e->have_out ? e->oerr.rel : NAN, e->have_out ? e->oerr.sqnr_db : NAN,
                    e->threshold > 0 ? e->threshold : NAN, e->werr.sqnr_db,
                    qt_calib_verdict_name(e->verdict),
                    e->verdict == QT_VERDICT_FALLBACK ? " -> " : "",
                    e->verdict == QT_VERDICT_FALLBACK ? e->fallback : "");
        }
        fprintf(f, "\nper projection:");
        for (int p = 0; p < QT_PROJ_COUNT; p++) {
            qt_output_error a = qt_calib_report_aggregate(r, -1, (qt_proj)p);
            if (a.y_sq > 0) fprintf(f, " %s %.4f", qt_proj_name((qt_proj)p), a.rel);
        }
        fprintf(f, "\n");
    }
    qt_output_error m = qt_calib_report_aggregate(r, -1, QT_PROJ_COUNT);
    fprintf(f, "model: relative output error %.4f (output SQNR %.2f dB); %zu tensors: %zu pass, "
               "%zu fallback, %zu fail, %zu unchecked\n",
            m.rel, m.sqnr_db, r->n, cnt[QT_VERDICT_PASS], cnt[QT_VERDICT_FALLBACK],
            cnt[QT_VERDICT_FAIL], cnt[QT_VERDICT_UNCHECKED]);
}

void qt_cli_calib_print_failures(const qt_calib_report *r)
{
    for (size_t i = 0; i < r->n; i++) {
        const qt_calib_entry *e = &r->entries[i];
        if (e->verdict != QT_VERDICT_FAIL) continue;
        const double rel = e->have_fb ? e->fb_oerr.rel : e->oerr.rel;
        qt_cli_error("tensor '%s' (%s): relative output error %.4f > threshold %.3g", e->name,
                     e->scheme, rel, e->threshold);
    }
}

/* ---- qtool validate ---------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qtool validate ORIGINAL QUANTIZED --calib TEXT [options]\n\n"
            "Measures every decoder Linear of QUANTIZED (written by qtool or by\n"
            "transformers + bitsandbytes) against ORIGINAL on calibration activations:\n"
            "relative output error ||X(W - W^)^T||/||XW^T|| and output SQNR per tensor,\n"
            "per layer, per projection and for the model, plus RMSE, max abs error,\n"
            "weight SQNR and cosine. Exit 0 when every tensor is within its threshold,\n"
            "1 when one is not.\n\n"
            "  --calib TEXT            calibration text (or a file of token ids)\n"
            "  --calib-tokens N        token positions sampled per Linear (default %d)\n"
            "  --calib-cache FILE      cache file (default: ~/.cache/qtool, $QT_CACHE_DIR)\n"
            "  --no-calib-cache        neither read nor write a cache\n"
            "  --max-output-error E    one threshold for every scheme (default per scheme:\n"
            "                          nf4 %.2f, fp4 %.2f, int8 %.2f, q8 %.2f)\n"
            "  --adapter DIR           capture the activations with a PEFT LoRA adapter on\n"
            "                          ORIGINAL (the fine-tuned model's inputs to each Linear)\n"
            "  --report FILE           the report as JSON\n"
            "  --html FILE             the report as a self-contained HTML page\n"
            "  --quiet                 print only the summary line\n"
            "  --threads N             threads\n",
            QT_CALIB_DEFAULT_ROWS, qt_calib_default_threshold(QT_SCHEME_NF4),
            qt_calib_default_threshold(QT_SCHEME_FP4), qt_calib_default_threshold(QT_SCHEME_INT8),
            qt_calib_default_threshold(QT_SCHEME_Q8));
}

int cmd_validate(int argc, char **argv)
{
    enum { O_REPORT = 512, O_QUIET, O_THREADS, O_ADAPTER };
    static const struct option opts[] = {
        QT_CLI_CALIB_OPTIONS,
        {"report", required_argument, 0, O_REPORT},
        {"adapter", required_argument, 0, O_ADAPTER},
        {"quiet", no_argument, 0, O_QUIET},
        {"threads", required_argument, 0, O_THREADS},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    qt_cli_calib co = {0};
    const char *report = NULL;
    bool quiet = false;
    long threads = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int r = qt_cli_calib_option(&co, c, optarg);
        if (r < 0) return QT_EXIT_USAGE;
        if (r > 0) continue;
        switch (c) {
        case O_REPORT: report = optarg; break;
        case O_ADAPTER: co.adapter = optarg; break;
        case O_QUIET: quiet = true; break;
        case O_THREADS:
            if (!qt_cli_parse_int("--threads", optarg, 1, 1024, &threads)) return QT_EXIT_USAGE;
            break;
        case 'h': usage(stdout); return QT_EXIT_OK;
        default: usage(stderr); return QT_EXIT_USAGE;
        }
    }
    if (optind != argc - 2 || !co.text) {
        if (optind == argc - 2) qt_cli_error("--calib TEXT is required");
        usage(stderr);
        return QT_EXIT_USAGE;
    }
    if (!qt_cli_setup_isa(NULL)) return QT_EXIT_USAGE;
    qt_cli_setup_threads(threads); /* the thread team, up front */
    const char *orig = argv[optind], *quant = argv[optind + 1];
    char qpath[4096];
    const char *qad = NULL; /* QUANTIZED may be QUANTIZED+ADAPTER */
    if (!qt_model_arg_split(quant, qpath, sizeof qpath, &qad) ||
        qt_cli_need_input(orig, "model") != QT_EXIT_OK ||
        qt_cli_need_input(qpath, "model") != QT_EXIT_OK ||
        qt_cli_need_input(co.text, "text") != QT_EXIT_OK ||
        qt_cli_check_output("--report", report) != QT_EXIT_OK ||
        qt_cli_check_output("--html", co.html) != QT_EXIT_OK)
        return QT_EXIT_USAGE;
    qt_calib_report rep;
    qt_calib_report_init(&rep);
    snprintf(rep.original, sizeof rep.original, "%s", orig);
    snprintf(rep.quantized, sizeof rep.quantized, "%s", quant);
    qt_calib_set *set = NULL;
    int rc = qt_cli_calib_load(orig, &co, &set, &rep, quiet);
    if (rc != QT_EXIT_OK) goto out;
    char err[QT_ERRMSG_SIZE] = "";
    qt_status st = qt_calib_compare_models(orig, quant, set, co.max_error, &rep, err);
    if (qt_cli_input_changed()) { /* a model cut while read: its errors are not real */
        rc = QT_EXIT_FAIL;
        goto out;
    }
    if (st != QT_OK) {
        qt_cli_error("%s", err);
        rc = qt_cli_exit_for(st);
        goto out;
    }
    qt_cli_calib_print(stdout, &rep, !quiet);
    rc = qt_cli_calib_write(&co, report, &rep);
    size_t cnt[QT_VERDICT_COUNT];
    qt_calib_report_counts(&rep, cnt);
    if (cnt[QT_VERDICT_FAIL]) {
        qt_cli_calib_print_failures(&rep);
        rc = QT_EXIT_FAIL;
    }
out:
    qt_calib_set_free(set);
    qt_calib_report_release(&rep);
    return rc;
}
