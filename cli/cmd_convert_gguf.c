/* cli/cmd_convert_gguf.c: `qtool convert IN OUT.gguf --format gguf`
 * (convert/gguf_export.h): options, messages, exit codes. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib/calib.h"
#include "cli/cli.h"
#include "convert/gguf_export.h"
#include "formats/fsutil.h"

static volatile sig_atomic_t gguf_cancel;

static void on_gguf_signal(int sig)
{
    (void)sig;
    gguf_cancel = 1;
}

static void gguf_usage(FILE *f)
{
    fprintf(f,
            "usage: qtool convert IN OUT.gguf [--format gguf] --scheme SCHEME [options]\n\n"
            "Writes one GGUF v3 file for llama.cpp (architectures llama, qwen2).\n"
            "  --scheme S           %s\n"
            "                       lowercase: every matrix in that type; UPPERCASE: the\n"
            "                       llama-quantize file type with its per-tensor type policy\n"
            "  --pure               no per-tensor policy: every matrix in the scheme's type\n"
            "  --gguf-pre NAME      the BPE pre-tokenizer llama.cpp should use (when qtool\n"
            "                       cannot identify it, e.g. llama-bpe, qwen2, smollm, gpt-2)\n"
            "  --dry-run            print per-tensor types and the file size, write nothing\n"
            "mixed precision by measurement (docs/CALIBRATION.md):\n"
            "  --budget BPW         choose each decoder Linear's type among the scheme's and\n"
            "                       q4_k|q5_k|q6_k|q8_0 by its output error on --calib text,\n"
            "                       for BPW bits per weight over them (default scheme q4_k)\n"
            "  --calib TEXT         the calibration text (required by --budget)\n"
            "  --calib-tokens N     token positions sampled per Linear (default 512)\n"
            "  --calib-cache FILE   cache file; --no-calib-cache: none\n"
            "  --report FILE        JSON: every tensor's type and the budget's decision table\n"
            "  --force              replace an existing OUT\n"
            "  --allow-nonfinite    quantize tensors that hold NaN or Inf\n"
            "  --follow-symlinks    accept shards that are symlinks leaving IN\n"
            "  --threads N          threads (default: all cores); output bytes do not change\n"
            "  --quiet              no progress bar or summary\n"
            "  --isa ISA            force ref|avx2|avx512\n",
            qt_gguf_scheme_names());
}

/* Whether a long option (of either convert path) takes a separate value. */
static bool takes_value(const char *opt)
{
    static const char *const with_value[] = {
        "--scheme", "--gguf-pre", "--threads", "--isa", "--calib", "--calib-tokens",
        "--calib-cache", "--budget", "--budget-size", "--budget-order", "--report",
        "--calib-report", "--html", "--max-output-error", "--dtype", "--recipe",
        "--skip", "--block", "--compute-dtype", "--match", "--rcp-table", "--max-shard-size"};
    for (size_t k = 0; k < sizeof with_value / sizeof with_value[0]; k++)
        if (strcmp(opt, with_value[k]) == 0) return true;
    return false;
}

/* Whether `qtool convert` should take the GGUF path: --format gguf, or an
 * OUT (second positional argument) ending in .gguf without --format. */
int qt_cli_convert_is_gguf(int argc, char **argv)
{
    int pos = 0, fmt = -1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--format") == 0 && i + 1 < argc)
            fmt = strcmp(argv[++i], "gguf") == 0;
        else if (strncmp(argv[i], "--format=", 9) == 0)
            fmt = strcmp(argv[i] + 9, "gguf") == 0;
        else if (argv[i][0] != '-' && ++pos == 2 && fmt < 0)
            fmt = qt_str_ends_with(argv[i], ".gguf") ? 2 : -1;
        else if (argv[i][0] == '-' && argv[i][1] == '-' && !strchr(argv[i], '=') &&
                 takes_value(argv[i]))
            i++; /* skip the option's value */
    }
    return fmt > 0;
}

static void print_summary(const qt_gguf_export_opts *o, const qt_gguf_export_summary *s)
{
    fprintf(stderr, "qtool: wrote %s: %zu tensors (%zu quantized, %zu fallbacks), %.2f MB -> "
            "%.2f MB in %.2fs\n", o->out, s->n_tensors, s->n_quantized, s->n_fallback,
            (double)s->bytes_in / 1e6, (double)s->bytes_out / 1e6, s->seconds);
    if (s->budget_n)
        fprintf(stderr, "qtool: budget: %.4f bits per weight over %zu matrices (asked %g, "
                "feasible [%.4f, %.4f]), %zu upgrade steps\n", s->budget_bpw, s->budget_n,
                o->budget_bpw, s->budget_lo, s->budget_hi, s->budget_steps);
    if (s->n_f16_overflow)
        fprintf(stderr, "qtool: warning: %zu values beyond +-65504 became +-inf in F16\n",
                s->n_f16_overflow);
}

/* ---- the options --------------------------------------------------------------- */

typedef struct gguf_args {
    qt_gguf_export_opts o;
    qt_cli_calib calib;      /* --calib and its options */
    const char *report;      /* --report */
    const char *isa;
    bool quiet;
    long threads;
} gguf_args;

enum { O_SCHEME = 256, O_PURE, O_PRE, O_DRY, O_FORCE, O_NONFIN, O_FOLLOW, O_THREADS, O_QUIET,
       O_ISA, O_FORMAT, O_BUDGET, O_REPORT };
static const struct option GGUF_OPTS[] = {
    {"format", required_argument, 0, O_FORMAT},   {"scheme", required_argument, 0, O_SCHEME},
    {"pure", no_argument, 0, O_PURE},             {"gguf-pre", required_argument, 0, O_PRE},
    {"dry-run", no_argument, 0, O_DRY},           {"force", no_argument, 0, O_FORCE},
    {"allow-nonfinite", no_argument, 0, O_NONFIN},
    {"follow-symlinks", no_argument, 0, O_FOLLOW},
    {"threads", required_argument, 0, O_THREADS}, {"quiet", no_argument, 0, O_QUIET},
    {"isa", required_argument, 0, O_ISA},         {"budget", required_argument, 0, O_BUDGET},
    {"report", required_argument, 0, O_REPORT},
    {"calib", required_argument, 0, QT_CLI_CALIB_TEXT},
    {"calib-tokens", required_argument, 0, QT_CLI_CALIB_TOKENS},
    {"calib-cache", required_argument, 0, QT_CLI_CALIB_CACHE},
    {"no-calib-cache", no_argument, 0, QT_CLI_CALIB_NOCACHE},
    {"help", no_argument, 0, 'h'},                {0, 0, 0, 0}};

/* --budget BPW: a positive finite number. */
static bool parse_budget(const char *arg, double *out)
{
    char *end;
    errno = 0;
    *out = strtod(arg, &end);
    if (errno || end == arg || *end || !(*out > 0) || !isfinite(*out)) {
        qt_cli_error("--budget '%s': expected bits per weight such as 5.5", arg);
        return false;
    }
    return true;
}

/* One option into a; -1 to go on, else the exit code. */
static int apply_option(gguf_args *a, int c, const char *arg)
{
    switch (c) {
    case O_FORMAT:
        if (strcmp(arg, "gguf") == 0) return -1;
        qt_cli_error("--format '%s': only gguf takes this path", arg);
        return QT_EXIT_USAGE;
    case O_SCHEME: a->o.scheme = arg; return -1;
    case O_PURE: a->o.pure = true; return -1;
    case O_PRE: a->o.pre = arg; return -1;
    case O_DRY: a->o.dry_run = true; return -1;
    case O_FORCE: a->o.force = true; return -1;
    case O_NONFIN: a->o.allow_nonfinite = true; return -1;
    case O_FOLLOW: a->o.follow_symlinks = true; return -1;
    case O_THREADS:
        return qt_cli_parse_int("--threads", arg, 1, 1024, &a->threads) ? -1 : QT_EXIT_USAGE;
    case O_QUIET: a->quiet = true; return -1;
    case O_ISA: a->isa = arg; return -1;
    case O_BUDGET: return parse_budget(arg, &a->o.budget_bpw) ? -1 : QT_EXIT_USAGE;
    case O_REPORT: a->report = arg; return -1;
    case 'h': gguf_usage(stdout); return QT_EXIT_OK;
    default: break;
    }
    int cr = qt_cli_calib_option(&a->calib, c, arg);
    if (cr == 1) return -1;
    if (cr == 0) gguf_usage(stderr);
    return QT_EXIT_USAGE;
}

/* The combinations: -1 to go on, else the exit code (message printed). */
static int check_args(gguf_args *a, int n_pos)
{
    const bool budget = a->o.budget_bpw > 0;
    if (!a->o.scheme && budget) a->o.scheme = "q4_k"; /* --budget's default */
    if (n_pos != 2 || !a->o.scheme) {
        qt_cli_error(!a->o.scheme ? "--scheme is required for GGUF output" : "IN and OUT are required");
        gguf_usage(stderr);
        return QT_EXIT_USAGE;
    }
    if (budget != (a->calib.text != NULL) || (a->report && !budget)) {
        qt_cli_error(budget ? "--budget needs --calib TEXT (the measurement it chooses by)"
                     : a->calib.text ? "--calib: a GGUF export measures only to choose types "
                                       "for --budget BPW"
                                     : "--report: the GGUF report is the --budget decision table");
        return QT_EXIT_USAGE;
    }
    if (qt_cli_check_output("--report", a->report) != QT_EXIT_OK) return QT_EXIT_USAGE;
    if (!qt_cli_setup_isa(a->isa)) return QT_EXIT_USAGE;
    qt_cli_setup_threads(a->threads); /* the thread team, up front */
    return -1;
}

/* ---- the calibration set, when the export asks for it ------------------------------ */

typedef struct calib_ctx {
    const char *model;
    const qt_cli_calib *calib;
    bool quiet;
    qt_calib_set *set;       /* freed by the caller */
    int rc;                  /* a failed load's exit code (message printed), else 0 */
} calib_ctx;

static qt_status calib_get(void *vctx, const qt_calib_set **set, char *errmsg)
{
    calib_ctx *k = vctx;
    qt_calib_report rep;
    qt_calib_report_init(&rep);
    k->rc = qt_cli_calib_load(k->model, k->calib, &k->set, &rep, k->quiet);
    qt_calib_report_release(&rep);
    if (k->rc != QT_EXIT_OK)
        return qt_set_err(errmsg, k->rc == QT_EXIT_USAGE ? QT_ERR_ARG : QT_ERR_IO,
                          "no calibration set");
    *set = k->set;
    return QT_OK;
}

/* ---- the run ---------------------------------------------------------------------- */

/* The export and its messages; an exit code. */
static int run_export(gguf_args *a)
{
    calib_ctx k = {.model = a->o.in, .calib = &a->calib, .quiet = a->quiet};
    a->o.calib_get = a->calib.text ? calib_get : NULL;
    a->o.calib_ctx = &k;
    a->o.want_report = a->report != NULL;
    char err[QT_ERRMSG_SIZE] = "";
    qt_gguf_export_summary s;
    qt_status st = qt_gguf_export(&a->o, &s, err);
    qt_calib_set_free(k.set);
    int rc = QT_EXIT_OK;
    if (gguf_cancel) {
        qt_cli_error("interrupted: no output written, temporary file removed");
        rc = QT_EXIT_FAIL;
    } else if (k.rc != QT_EXIT_OK) {
        rc = k.rc; /* the calibration set's message is printed */
    } else if (st != QT_OK) {
        qt_cli_error("%s", err);
        rc = st == QT_ERR_NUMERIC ? QT_EXIT_USAGE : qt_cli_exit_for(st);
    } else {
        if (!a->quiet && !a->o.dry_run) print_summary(&a->o, &s);
        if (a->report) rc = qt_cli_write_file(a->report, s.report, strlen(s.report));
    }
    qt_free(s.report);
    return rc;
}

int cmd_convert_gguf(int argc, char **argv)
{
    gguf_args a;
    memset(&a, 0, sizeof a);
    int c, rc;
    /* options and their combinations */
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", GGUF_OPTS, NULL)) != -1)
        if ((rc = apply_option(&a, c, optarg)) >= 0) return rc;
    if ((rc = check_args(&a, argc - optind)) >= 0) return rc;
    a.o.in = argv[optind];
    a.o.out = argv[optind + 1];
    a.o.plan_out = a.o.dry_run ? stdout : (a.quiet ? NULL : stderr);
    a.o.progress = a.quiet ? NULL : stderr;
    a.o.cancel = &gguf_cancel;
    /* Ctrl-C / TERM: stop between chunks, remove the temporary file */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_gguf_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    return run_export(&a);
}
