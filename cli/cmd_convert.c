/* cli/cmd_convert.c: `qtool convert IN OUT` and `qtool dequant IN OUT`. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "cli/cli.h"
#include "calib/calib.h"
#include "convert/convert.h"
#include "quant/quant.h"

static volatile sig_atomic_t cancel_flag;

static void on_signal(int sig)
{
    (void)sig;
    cancel_flag = 1;
}

/* GGML block types other than q8 (= Q8_0) have no safetensors layout. */
static bool gguf_only(const qt_scheme_info *s)
{
    return s->block_bytes && s->scheme != QT_SCHEME_Q8;
}

static void usage(FILE *f, bool dequant)
{
    if (dequant) {
        fprintf(f, "usage: qtool dequant IN OUT [--dtype bf16|fp16|fp32] [--force] [--if-changed]\n"
                   "                    [--quiet] [--threads N] [--max-shard-size SIZE]\n\n"
                   "Writes a plain checkpoint from a quantized one (bitsandbytes NF4/FP4/int8 or\n"
                   "qtool q8), with the exact dequantization of specs/bnb-format.md section 5.\n");
        return;
    }
    fprintf(f,
            "usage: qtool convert IN OUT [options]\n\n"
            "IN: a Hugging Face model directory (single or sharded safetensors, fp32/fp16/bf16)\n"
            "    or a safetensors file with config.json beside it.\n"
            "OUT: a new model directory; for nf4/fp4/int8 it loads as it is with\n"
            "    transformers + bitsandbytes (from_pretrained), ready for PEFT LoRA.\n"
            "    With --format gguf (or an OUT ending in .gguf): one GGUF file for llama.cpp\n"
            "    (qtool convert IN OUT.gguf -h lists its schemes and options).\n\n"
            "  --scheme S           quantization (default nf4):\n");
    for (size_t i = 0; i < qt_scheme_count(); i++) {
        const qt_scheme_info *s = qt_scheme_info_at(i);
        if (!(s->flags & QT_SCHEME_F_CONVERT)) continue; /* the table says which */
        fprintf(f, "                         %-6s %5.2f bpw  %s\n", s->name, s->bits_per_weight,
                s->description);
    }
    fprintf(f,
            "  --block N            block size where the scheme has blocks (default 64; q8: 32)\n"
            "  --no-double-quant    nf4/fp4 without double quantization of the scales\n"
            "  --compute-dtype D    bf16|fp16|fp32 for kept tensors (default: config.json)\n"
            "  --skip GLOB          keep matching tensors/modules unquantized (repeatable)\n"
            "  --recipe FILE        JSON rules: tensor glob -> scheme/block, first match wins\n"
            "  --report FILE        per-tensor JSON report (scheme, bytes, RMSE, SQNR, time)\n"
            "  --max-shard-size S   shard the output (bytes, or with K/M/G suffix)\n"
            "  --allow-nonfinite    quantize tensors that hold NaN or Inf\n"
            QT_CLI_MATCH_HELP
            "  --dry-run            print the plan, write nothing\n"
            "  --force              replace an existing OUT\n"
            "  --follow-symlinks    accept shards that are symlinks leaving IN (a Hugging Face\n"
            "                       cache snapshot); refused by default (rule I6)\n"
            "  --if-changed         do nothing (exit 0) when OUT records the same input\n"
            "                       fingerprints, qtool version and output-changing options;\n"
            "                       otherwise convert as with --force\n"
            "  --threads N          threads (default: all cores); output bytes do not change\n"
            "  --quiet              no progress bar\n"
            "  --isa ISA            force ref|avx2|avx512\n"
            "calibration check (see qtool validate -h, docs/CALIBRATION.md):\n"
            "  --calib TEXT         check each quantized tensor's output error on activations\n"
            "                       of TEXT (or a file of token ids); over its threshold the\n"
            "                       conversion fails (exit 1, no OUT) naming each tensor\n"
            "  --max-output-error E one threshold for every scheme (default per scheme)\n"
            "  --fallback[=S]       keep tensors over the threshold as S instead of failing:\n"
            "                       keep (the compute dtype, default), bf16, fp16, fp32, int8, q8\n"
            "  --calib-tokens N     token positions sampled per Linear (default 512)\n"
            "  --calib-cache FILE   cache file; --no-calib-cache: none\n"
            "  --calib-report FILE  the check's JSON report; --html FILE: as an HTML page\n"
            "mixed precision by measurement (with --calib; docs/CALIBRATION.md):\n"
            "  --budget BPW         average bits per weight of the quantizable Linears: keep the\n"
            "                       modules quantization hurts most (output error on TEXT) in\n"
            "                       the compute dtype until the budget is spent\n"
            "  --budget-size SIZE   the same for the bytes of all tensors (K/M/G suffix)\n"
            "  --budget-order random:SEED  fill the budget in a random order instead (a baseline)\n"
            "LoftQ initialization (docs/LOFTQ.md):\n"
            "  --loftq R            nf4/fp4 base plus OUT/loftq-adapter/, a PEFT LoRA adapter of\n"
            "                       rank R that cancels most of each Linear's quantization error\n"
            "  --loftq-iter T       alternating quantize / rank-R steps (default 1)\n"
            "  --loftq-alpha A      the adapter's lora_alpha (default R: scale 1)\n");
}

/* ---- the command line ------------------------------------------------------ */

enum { O_SCHEME = 256, O_BLOCK, O_NODQ, O_CDT, O_SKIP, O_RECIPE, O_REPORT, O_SHARD, O_NONFIN,
       O_DRY, O_FORCE, O_THREADS, O_QUIET, O_ISA, O_DTYPE, O_IFCH, O_FALLBACK, O_CALREP,
       O_FOLLOW, O_MATCH, O_RCP, O_BUDGET, O_BUDGET_SIZE, O_BUDGET_ORDER,
       O_LOFTQ, O_LOFTQ_ITER, O_LOFTQ_ALPHA };

static const struct option OPTS[] = {
    {"scheme", required_argument, 0, O_SCHEME},
    {"block", required_argument, 0, O_BLOCK},
    {"no-double-quant", no_argument, 0, O_NODQ},
    {"compute-dtype", required_argument, 0, O_CDT},
    {"skip", required_argument, 0, O_SKIP},
    {"recipe", required_argument, 0, O_RECIPE},
    {"report", required_argument, 0, O_REPORT},
    {"max-shard-size", required_argument, 0, O_SHARD},
    {"allow-nonfinite", no_argument, 0, O_NONFIN},
    {"dry-run", no_argument, 0, O_DRY},
    {"force", no_argument, 0, O_FORCE},
    {"if-changed", no_argument, 0, O_IFCH},
    {"follow-symlinks", no_argument, 0, O_FOLLOW},
    {"threads", required_argument, 0, O_THREADS},
    {"quiet", no_argument, 0, O_QUIET},
    {"isa", required_argument, 0, O_ISA},
    {"dtype", required_argument, 0, O_DTYPE},
    {"match", required_argument, 0, O_MATCH},
    {"rcp-table", required_argument, 0, O_RCP},
    QT_CLI_CALIB_OPTIONS, /* calibration check (cli/cmd_validate.c) */
    {"fallback", optional_argument, 0, O_FALLBACK},
    {"calib-report", required_argument, 0, O_CALREP},
    {"budget", required_argument, 0, O_BUDGET},
    {"budget-size", required_argument, 0, O_BUDGET_SIZE},
    {"budget-order", required_argument, 0, O_BUDGET_ORDER},
    {"loftq", required_argument, 0, O_LOFTQ},
    {"loftq-iter", required_argument, 0, O_LOFTQ_ITER},
    {"loftq-alpha", required_argument, 0, O_LOFTQ_ALPHA},
    {"help", no_argument, 0, 'h'},
    {0, 0, 0, 0}};

/* Everything the command line asks for. */
typedef struct convert_args {
    bool dequant;               /* `qtool dequant` */
    qt_conv_opts o;
    qt_cli_calib calib;         /* --calib and its options */
    qt_conv_calib cal;          /* --fallback, the check's context */
    const char *calib_report;   /* --calib-report */
    const char *skip[256];      /* --skip globs (n_skip) */
    size_t n_skip;
    const char *report, *isa;   /* --report, --isa */
    const char *match, *rcp_path; /* --match, --rcp-table */
    uint8_t *rcp;               /* --match cuda: the GPU reciprocal table (owned) */
    bool dry, quiet, if_changed;
    const char *budget_arg;     /* --budget as given, for the dry-run line */
    long threads;
} convert_args;

/* --scheme / --dtype S: the scheme (any convert scheme of the table; --dtype:
 * a plain one), or an error. */
static int parse_scheme(convert_args *a, int c, const char *arg)
{
    const unsigned want = QT_SCHEME_F_CONVERT | (c == O_DTYPE ? QT_SCHEME_F_PLAIN : 0);
    const qt_scheme_info *s = qt_scheme_find(arg);
    if (s && c == O_SCHEME && gguf_only(s)) {
        qt_cli_error("--scheme '%s': a GGUF block type, written only to a .gguf OUT", arg);
        return QT_EXIT_USAGE;
    }
    if (!s || (s->flags & want) != want || (a->dequant && c == O_SCHEME)) {
        char names[160];
        qt_cli_error("%s '%s': not one of %s", c == O_DTYPE ? "--dtype" : "--scheme", arg,
                     qt_scheme_names(want, names, sizeof names));
        return QT_EXIT_USAGE;
    }
    a->o.scheme = s->scheme;
    return -1;
}

/* --fallback[=S]: keep tensors over the threshold as S. */
static int parse_fallback(convert_args *a, const char *arg)
{
    const bool keep = !arg || !strcmp(arg, "keep");
    const qt_scheme_info *s = keep ? NULL : qt_scheme_find(arg);
    if (!keep && (!s || !(s->flags & QT_SCHEME_F_FALLBACK))) {
        char names[160];
        qt_cli_error("--fallback '%s': not one of keep, %s", arg,
                     qt_scheme_names(QT_SCHEME_F_FALLBACK, names, sizeof names));
        return QT_EXIT_USAGE;
    }
    a->cal.fallback_on = true;
    a->cal.fallback = s ? s->scheme : QT_SCHEME_COUNT;
    return -1;
}

/* --budget BPW, --budget-size SIZE, --budget-order measured|random:SEED. */
static int parse_budget(convert_args *a, int c, const char *arg)
{
    char *end = NULL;
    if (c == O_BUDGET) {
        a->budget_arg = arg;
        a->o.budget_bpw = strtod(arg, &end);
        if (end != arg && !*end && a->o.budget_bpw > 0 && a->o.budget_bpw <= 64) return -1;
        qt_cli_error("--budget '%s': expected bits per weight, e.g. 4.8", arg);
        return QT_EXIT_USAGE;
    }
    if (c == O_BUDGET_SIZE) {
        if (qt_cli_parse_size(arg, &a->o.budget_bytes)) return -1;
        qt_cli_error("--budget-size '%s': expected a size such as 700M", arg);
        return QT_EXIT_USAGE;
    }
    if (!strncmp(arg, "random:", 7)) a->o.budget_random = strtoull(arg + 7, &end, 10);
    if (!strcmp(arg, "measured") || (end && !*end && a->o.budget_random > 0)) return -1;
    qt_cli_error("--budget-order '%s': measured or random:SEED (SEED > 0)", arg);
    return QT_EXIT_USAGE;
}

/* --loftq R, --loftq-iter T, --loftq-alpha A. */
static int parse_loftq(convert_args *a, int c, const char *arg)
{
    long v;
    if (c == O_LOFTQ_ALPHA) {
        char *end;
        a->o.loftq_alpha = strtod(arg, &end);
        if (end != arg && !*end && a->o.loftq_alpha > 0 && isfinite(a->o.loftq_alpha)) return -1;
        qt_cli_error("--loftq-alpha '%s': expected a positive number", arg);
        return QT_EXIT_USAGE;
    }
    if (!qt_cli_parse_int(c == O_LOFTQ ? "--loftq" : "--loftq-iter", arg, 1, 1 << 20, &v))
        return QT_EXIT_USAGE;
    if (c == O_LOFTQ) a->o.loftq_rank = (size_t)v;
    else a->o.loftq_iters = (unsigned)v;
    return -1;
}

/* Applies one option; -1 to go on, or the exit code (help, a bad value). */
static int parse_option(convert_args *a, int c, const char *arg)
{
    long block = 0;
    switch (c) {
    case O_SCHEME:
    case O_DTYPE: return parse_scheme(a, c, arg);
    case O_BLOCK:
        if (!qt_cli_parse_int("--block", arg, 1, 1 << 20, &block)) return QT_EXIT_USAGE;
        a->o.block = (size_t)block;
        return -1;
    case O_NODQ: a->o.double_quant = false; return -1;
    case O_CDT: a->o.compute_dtype = arg; return -1;
    case O_SKIP:
        if (a->n_skip == sizeof a->skip / sizeof *a->skip) {
            qt_cli_error("too many --skip options");
            return QT_EXIT_USAGE;
        }
        a->skip[a->n_skip++] = arg;
        return -1;
    case O_RECIPE: a->o.recipe_path = arg; return -1;
    case O_REPORT: a->report = arg; return -1;
    case O_SHARD:
        if (qt_cli_parse_size(arg, &a->o.max_shard_size)) return -1;
        qt_cli_error("--max-shard-size '%s': expected a size such as 2G or 500M", arg);
        return QT_EXIT_USAGE;
    case O_NONFIN: a->o.allow_nonfinite = true; return -1;
    case O_DRY: a->dry = true; return -1;
    case O_FORCE: a->o.force = true; return -1;
    case O_IFCH: a->if_changed = a->o.force = true; return -1;
    case O_FOLLOW: a->o.follow_symlinks = true; return -1;
    case O_THREADS:
        return qt_cli_parse_int("--threads", arg, 1, 1024, &a->threads) ? -1 : QT_EXIT_USAGE;
    case O_QUIET: a->quiet = true; return -1;
    case O_ISA: a->isa = arg; return -1;
    case O_MATCH: a->match = arg; return -1;
    case O_RCP: a->rcp_path = arg; return -1;
    case 'h': usage(stdout, a->dequant); return QT_EXIT_OK;
    case O_FALLBACK: return parse_fallback(a, arg);
    case O_CALREP: a->calib_report = arg; return -1;
    case O_BUDGET:
    case O_BUDGET_SIZE:
    case O_BUDGET_ORDER: return parse_budget(a, c, arg);
    case O_LOFTQ:
    case O_LOFTQ_ITER:
    case O_LOFTQ_ALPHA: return parse_loftq(a, c, arg);
    default: usage(stderr, a->dequant); return QT_EXIT_USAGE;
    }
}

/* The options and IN OUT; -1 to go on, or the exit code. */
static int parse_args(int argc, char **argv, convert_args *a)
{
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", OPTS, NULL)) != -1) {
        int cr = qt_cli_calib_option(&a->calib, c, optarg);
        if (cr < 0) return QT_EXIT_USAGE;
        if (cr > 0) continue;
        int rc = parse_option(a, c, optarg);
        if (rc >= 0) return rc;
    }
    if (optind != argc - 2) {
        usage(stderr, a->dequant);
        return QT_EXIT_USAGE;
    }
    a->o.in = argv[optind];
    a->o.out = argv[optind + 1];
    a->o.skip = a->skip;
    a->o.n_skip = a->n_skip;
    a->o.metrics = a->report != NULL;
    a->o.progress = a->quiet ? NULL : stderr;
    a->o.cancel = &cancel_flag;
    return -1;
}

/* Everything that can be refused before any work: OUT, IN, the report paths,
 * option combinations, the ISA; then the thread team. -1 or the exit code. */
static int check_args(convert_args *a)
{
    if (!a->o.out[0]) { /* an empty OUT names no folder */
        qt_cli_error("OUT is empty: name the output folder");
        return QT_EXIT_USAGE;
    }
    if (qt_cli_need_input(a->o.in, "input") != QT_EXIT_OK) return QT_EXIT_USAGE;
    /* every report can be written */
    if (qt_cli_check_output("--report", a->report) != QT_EXIT_OK ||
        qt_cli_check_output("--calib-report", a->calib_report) != QT_EXIT_OK ||
        qt_cli_check_output("--html", a->calib.html) != QT_EXIT_OK)
        return QT_EXIT_USAGE;
    if (!qt_cli_setup_isa(a->isa)) return QT_EXIT_USAGE;
    if (a->o.block && a->o.scheme == QT_SCHEME_INT8) {
        qt_cli_error("--block: int8 (LLM.int8) is row-wise and has no block size");
        return QT_EXIT_USAGE;
    }
    if ((a->dequant && a->calib.text) ||
        (!a->calib.text && (a->cal.fallback_on || a->calib_report))) {
        qt_cli_error(a->dequant ? "--calib: dequant does not quantize"
                                : "--fallback and --calib-report need --calib TEXT");
        return QT_EXIT_USAGE;
    }
    if (a->dequant && (a->match || a->rcp_path)) {
        qt_cli_error("--match: dequant does not quantize");
        return QT_EXIT_USAGE;
    }
    int mrc = qt_cli_match_load(a->match, a->rcp_path, &a->rcp); /* --match cuda's table */
    if (mrc != QT_EXIT_OK) return mrc;
    a->o.rcp = a->rcp;
    const bool budget = a->o.budget_bpw > 0 || a->o.budget_bytes > 0;
    if (budget && (!a->calib.text || a->cal.fallback_on || (a->o.budget_bpw > 0 && a->o.budget_bytes))) {
        qt_cli_error(!a->calib.text   ? "--budget needs --calib TEXT (the measurement it chooses by)"
                     : a->cal.fallback_on ? "--budget chooses the kept modules itself: not with --fallback"
                                          : "--budget and --budget-size: give one");
        return QT_EXIT_USAGE;
    }
    if (budget) a->calib.max_error = 1e300; /* the budget decides, not the thresholds */
    if (a->calib.text) {
        a->o.check = qt_conv_calib_check;
        a->o.check_ctx = &a->cal;
        a->cal.max_error = a->calib.max_error;
    }
    qt_cli_setup_threads(a->threads); /* the thread team, up front */
    return -1;
}

/* ---- steps of the run ------------------------------------------------------- */

/* --dry-run: the plan as a table and its totals; nothing written. */
static void print_plan(const qt_conv *cv)
{
    uint64_t tin = 0, tout = 0;
    printf("%-48s %-16s %-6s %-10s %12s %12s  %s\n", "TENSOR", "SHAPE", "DTYPE", "SCHEME",
           "BYTES_IN", "BYTES_OUT", "WHY");
    for (size_t i = 0; i < qt_conv_n_items(cv); i++) {
        const qt_conv_item *it = qt_conv_item_at(cv, i);
        char shp[96] = "[";
        for (size_t d = 0; d < it->src->n_dims; d++) {
            size_t l = strlen(shp);
            snprintf(shp + l, sizeof shp - l, "%s%" PRIu64, d ? ", " : "", it->src->shape[d]);
        }
        strncat(shp, "]", sizeof shp - strlen(shp) - 1);
        char sch[32];
        snprintf(sch, sizeof sch, "%s%s", qt_scheme_get(it->scheme)->name,
                 it->double_quant ? "+dq" : "");
        printf("%-48s %-16s %-6s %-10s %12" PRIu64 " %12" PRIu64 "  %s\n", it->src->name, shp,
               qt_dtype_name(it->src->dtype), sch, it->bytes_in, it->bytes_out, it->reason);
        tin += it->bytes_in;
        tout += it->bytes_out;
    }
    printf("\ntotal: %zu tensors, %" PRIu64 " bytes in -> %" PRIu64
           " bytes out (%.1f%%), %zu shard(s), compute dtype %s; nothing written\n",
           qt_conv_n_items(cv), tin, tout, tin ? 100.0 * (double)tout / (double)tin : 0,
           qt_conv_n_shards(cv), qt_conv_compute_dtype(cv));
}

/* --if-changed: -1 when OUT must be (re)written, or the exit code (0 when
 * OUT is up to date). */
static int check_up_to_date(const convert_args *a, const qt_conv *cv)
{
    bool same = false;
    char why[QT_ERRMSG_SIZE] = "";
    qt_status st = qt_conv_up_to_date(cv, &same, why, sizeof why);
    if (st != QT_OK) { /* e.g. OUT is a user's folder */
        qt_cli_error("%s", why[0] ? why : qt_status_str(st));
        return qt_cli_exit_for(st);
    }
    if (same) {
        fprintf(stderr, "qtool: %s is up to date\n", a->o.out);
        return QT_EXIT_OK;
    }
    if (!a->quiet && access(a->o.out, F_OK) == 0)
        fprintf(stderr, "qtool: %s is out of date (%s); converting again\n", a->o.out, why);
    return -1;
}

/* The calibration set of --calib into *cset and the check's report: before
 * the run, or before a --budget dry run (which measures first). An exit code. */
static int calib_begin(convert_args *a, qt_calib_set **cset, qt_calib_report *crep)
{
    snprintf(crep->original, sizeof crep->original, "%s", a->o.in);
    snprintf(crep->quantized, sizeof crep->quantized, "%s", a->o.out);
    int rc = qt_cli_calib_load(a->o.in, &a->calib, cset, crep, a->quiet);
    if (rc == QT_EXIT_OK) {
        a->cal.set = *cset;
        a->cal.report = crep;
    }
    return rc;
}

/* --dry-run with --budget: the measurements and the choice, then the plan
 * (which shows every kept module) and the bits per weight; an exit code. */
static int dry_run_budget(convert_args *a, qt_conv *cv)
{
    qt_calib_set *cset = NULL;
    qt_calib_report crep;
    qt_calib_report_init(&crep);
    char err[QT_ERRMSG_SIZE] = "";
    int rc = calib_begin(a, &cset, &crep);
    qt_status st = rc == QT_EXIT_OK ? qt_conv_measure(cv, err) : QT_OK;
    if (st != QT_OK) {
        qt_cli_error("%s", err);
        rc = qt_cli_exit_for(st);
    }
    if (rc == QT_EXIT_OK) {
        print_plan(cv);
        qt_cli_print_needs(cv);
        printf("budget: %.4f bits per weight over the quantizable Linears (asked %s)\n",
               qt_conv_budget_bpw(cv), a->budget_arg ? a->budget_arg : "a size");
    }
    qt_calib_set_free(cset);
    qt_calib_report_release(&crep);
    return rc;
}

/* The conversion itself, with the calibration check around it when asked:
 * the calibration set is built first, the check's report written whatever
 * the verdict. *calib_rc: the exit code of the calibration set (when it could
 * not be built, *ran is false and the message printed) or of the check's
 * own files. */
static qt_status convert_checked(convert_args *a, qt_conv *cv, int *calib_rc, bool *ran,
                                 char *err)
{
    qt_calib_set *cset = NULL;
    qt_calib_report crep;
    qt_calib_report_init(&crep);
    bool had_warning = qt_conv_warning(cv) != NULL;
    *calib_rc = QT_EXIT_OK;
    *ran = false;
    if (a->calib.text) { /* the calibration set, before the run */
        *calib_rc = calib_begin(a, &cset, &crep);
        if (*calib_rc != QT_EXIT_OK) {
            qt_calib_report_release(&crep);
            return QT_ERR_ARG;
        }
    }
    qt_status st = qt_conv_run(cv, err);
    *ran = true;
    if (a->calib.text) { /* the check's report, whether the run passed or not */
        size_t cnt[QT_VERDICT_COUNT];
        qt_calib_report_counts(&crep, cnt);
        if (st == QT_ERR_NUMERIC && cnt[QT_VERDICT_FAIL]) {
            qt_cli_calib_print_failures(&crep);
            st = QT_ERR_IO; /* a check that failed: exit 1 */
        }
        if (!a->quiet && (st == QT_OK || st == QT_ERR_IO)) qt_cli_calib_print(stderr, &crep, false);
        if (!cancel_flag) *calib_rc = qt_cli_calib_write(&a->calib, a->calib_report, &crep);
        if (st == QT_OK && !had_warning && qt_conv_warning(cv))
            fprintf(stderr, "qtool: warning: %s\n", qt_conv_warning(cv));
        qt_calib_set_free(cset);
        qt_calib_report_release(&crep);
    }
    return st;
}

/* "wrote OUT: ..." and the phase times. */
static void print_summary(const convert_args *a, const qt_conv *cv, double seconds)
{
    uint64_t tin = 0, tout = 0;
    size_t nq = 0;
    for (size_t i = 0; i < qt_conv_n_items(cv); i++) {
        const qt_conv_item *it = qt_conv_item_at(cv, i);
        tin += it->bytes_in;
        tout += it->bytes_out;
        nq += it->action == QT_ACT_QUANT;
    }
    double pp, pw, pf;
    qt_conv_phase_seconds(cv, &pp, &pw, &pf);
    fprintf(stderr, "qtool: wrote %s: %zu tensors (%zu quantized), %.2f MB -> %.2f MB in %.2fs\n",
            a->o.out, qt_conv_n_items(cv), nq, (double)tin / 1e6, (double)tout / 1e6, seconds);
    fprintf(stderr, "qtool: phases: prepass %.3fs, quantize+write %.3fs, fsync+rename %.3fs\n",
            pp, pw, pf);
    if (a->o.loftq_rank) {
        size_t nm, nu;
        double ep, el;
        qt_conv_loftq_summary(cv, &nm, &nu, &ep, &el);
        fprintf(stderr,
                "qtool: loftq: rank %zu, %zu modules (%zu LoftQ, %zu plain + B=0): mean relative "
                "error %.5f -> %.5f; adapter in %s/loftq-adapter\n",
                a->o.loftq_rank, nm, nu, nm - nu, ep, el, a->o.out);
    }
}

/* --report FILE: the per-tensor JSON, written atomically; an exit code. */
static int write_report(const char *path, const qt_conv *cv)
{
    char err[QT_ERRMSG_SIZE], *json = NULL;
    int rc = QT_EXIT_OK;
    if (qt_conv_report_json(cv, &json, err) != QT_OK) {
        qt_cli_error("%s", err);
        rc = QT_EXIT_FAIL;
    } else if (qt_cli_write_file(path, json, strlen(json)) != QT_EXIT_OK) {
        rc = QT_EXIT_FAIL;
    }
    qt_free(json);
    return rc;
}

/* After the options: plan, then dry run, up-to-date check or the run,
 * then the summary and the report. */
static int plan_and_run(convert_args *a)
{
    char err[QT_ERRMSG_SIZE] = "";
    qt_conv *cv = NULL;
    int rc = -1, calib_rc = QT_EXIT_OK;
    /* the plan: IN opened and checked, nothing written */
    qt_status st = qt_conv_plan(&a->o, &cv, err);
    if (st != QT_OK) {
        qt_cli_error("%s", err);
        return qt_cli_exit_for(st);
    }
    if (qt_conv_warning(cv)) fprintf(stderr, "qtool: warning: %s\n", qt_conv_warning(cv));
    if (a->dry && (a->o.budget_bpw > 0 || a->o.budget_bytes > 0)) {
        rc = dry_run_budget(a, cv);
    } else if (a->dry) {
        print_plan(cv);
        qt_cli_print_needs(cv); /* peak memory and output size (batch --mem) */
        rc = QT_EXIT_OK;
    }
    if (rc < 0 && a->if_changed) rc = check_up_to_date(a, cv);
    if (rc >= 0) goto out;
    /* the run: Ctrl-C and SIGTERM stop it cleanly */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    double t0 = qt_now();
    bool ran;
    st = convert_checked(a, cv, &calib_rc, &ran, err);
    if (st != QT_OK && !ran) { /* no calibration set: its message is printed */
        rc = calib_rc;
    } else if (st != QT_OK && cancel_flag) {
        qt_cli_error("interrupted: no output written, temporary files removed");
        rc = QT_EXIT_FAIL;
    } else if (st != QT_OK) {
        qt_cli_error("%s", err);
        rc = st == QT_ERR_NUMERIC ? QT_EXIT_USAGE : qt_cli_exit_for(st);
    }
    if (st != QT_OK) goto out;
    if (!a->quiet) print_summary(a, cv, qt_now() - t0);
    rc = calib_rc;
    if (a->report && write_report(a->report, cv) != QT_EXIT_OK) rc = QT_EXIT_FAIL;
out:
    qt_conv_free(cv);
    return rc;
}

static int run(int argc, char **argv, bool dequant)
{
    convert_args a;
    memset(&a, 0, sizeof a);
    a.dequant = dequant;
    a.o.scheme = dequant ? QT_SCHEME_BF16 : QT_SCHEME_NF4;
    a.o.double_quant = true;
    a.cal.fallback = QT_SCHEME_COUNT;
    int rc = parse_args(argc, argv, &a);
    if (rc < 0) rc = check_args(&a);
    if (rc < 0) rc = plan_and_run(&a);
    qt_free(a.rcp);
    return rc;
}

int cmd_convert(int argc, char **argv)
{
    if (qt_cli_convert_is_gguf(argc, argv)) return cmd_convert_gguf(argc, argv);
    return run(argc, argv, false);
}
int cmd_dequant(int argc, char **argv) { return run(argc, argv, true); }
