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
            "    transformers + bitsandbytes (from_pretrained), ready for PEFT LoRA.\n\n"
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
            "LoftQ initialization (docs/LOFTQ.md):\n"
            "  --loftq R            nf4/fp4 base plus OUT/loftq-adapter/, a PEFT LoRA adapter of\n"
            "                       rank R that cancels most of each Linear's quantization error\n"
            "  --loftq-iter T       alternating quantize / rank-R steps (default 1)\n"
            "  --loftq-alpha A      the adapter's lora_alpha (default R: scale 1)\n");
}

static bool parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v <= 0) return false;
    double mul = 1;
    if (*end == 'K' || *end == 'k') mul = 1e3, end++;
    else if (*end == 'M' || *end == 'm') mul = 1e6, end++;
    else if (*end == 'G' || *end == 'g') mul = 1e9, end++;
    if (*end == 'B' || *end == 'b') end++;
    if (*end) return false;
    *out = (uint64_t)(v * mul);
    return true;
}

/* *rcp: the GPU reciprocal table run loaded for --match cuda (the caller
 * frees it). */
static int run(int argc, char **argv, bool dequant, uint8_t **rcp)
{
    enum { O_SCHEME = 256, O_BLOCK, O_NODQ, O_CDT, O_SKIP, O_RECIPE, O_REPORT, O_SHARD, O_NONFIN,
           O_DRY, O_FORCE, O_THREADS, O_QUIET, O_ISA, O_DTYPE, O_IFCH, O_FALLBACK, O_CALREP,
           O_FOLLOW, O_MATCH, O_RCP, O_LOFTQ, O_LOFTQ_ITER, O_LOFTQ_ALPHA };
    static const struct option opts[] = {
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
        /* calibration check (cli/cmd_validate.c) */
        {"calib", required_argument, 0, QT_CLI_CALIB_TEXT},
        {"calib-tokens", required_argument, 0, QT_CLI_CALIB_TOKENS},
        {"calib-cache", required_argument, 0, QT_CLI_CALIB_CACHE},
        {"no-calib-cache", no_argument, 0, QT_CLI_CALIB_NOCACHE},
        {"max-output-error", required_argument, 0, QT_CLI_CALIB_MAXERR},
        {"html", required_argument, 0, QT_CLI_CALIB_HTML},
        {"fallback", optional_argument, 0, O_FALLBACK},
        {"calib-report", required_argument, 0, O_CALREP},
        {"loftq", required_argument, 0, O_LOFTQ},
        {"loftq-iter", required_argument, 0, O_LOFTQ_ITER},
        {"loftq-alpha", required_argument, 0, O_LOFTQ_ALPHA},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    qt_conv_opts o = {.scheme = QT_SCHEME_NF4, .double_quant = true};
    qt_cli_calib calib = {0};
    qt_conv_calib cal = {.fallback = QT_SCHEME_COUNT};
    const char *calib_report = NULL;
    const char *skip[256];
    size_t n_skip = 0;
    const char *report = NULL, *isa = NULL, *match = NULL, *rcp_path = NULL;
    bool dry = false, quiet = false, if_changed = false;
    long threads = 0, block = 0;
    int c;
    if (dequant) o.scheme = QT_SCHEME_BF16;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int cr = qt_cli_calib_option(&calib, c, optarg);
        if (cr < 0) return QT_EXIT_USAGE;
        if (cr > 0) continue;
        switch (c) {
        case O_SCHEME:
        case O_DTYPE: {
            /* --scheme: any convert scheme of the table; --dtype: a plain one */
            const unsigned want = QT_SCHEME_F_CONVERT | (c == O_DTYPE ? QT_SCHEME_F_PLAIN : 0);
            const qt_scheme_info *s = qt_scheme_find(optarg);
            if (!s || (s->flags & want) != want || (dequant && c == O_SCHEME)) {
                char names[160];
                qt_cli_error("%s '%s': not one of %s", c == O_DTYPE ? "--dtype" : "--scheme",
                             optarg, qt_scheme_names(want, names, sizeof names));
                return QT_EXIT_USAGE;
            }
            o.scheme = s->scheme;
            break;
        }
        case O_BLOCK:
            if (!qt_cli_parse_int("--block", optarg, 1, 1 << 20, &block)) return QT_EXIT_USAGE;
            o.block = (size_t)block;
            break;
        case O_NODQ: o.double_quant = false; break;
        case O_CDT: o.compute_dtype = optarg; break;
        case O_SKIP:
            if (n_skip == sizeof skip / sizeof *skip) {
                qt_cli_error("too many --skip options");
                return QT_EXIT_USAGE;
            }
            skip[n_skip++] = optarg;
            break;
        case O_RECIPE: o.recipe_path = optarg; break;
        case O_REPORT: report = optarg; break;
        case O_SHARD:
            if (!parse_size(optarg, &o.max_shard_size)) {
                qt_cli_error("--max-shard-size '%s': expected a size such as 2G or 500M", optarg);
                return QT_EXIT_USAGE;
            }
            break;
        case O_NONFIN: o.allow_nonfinite = true; break;
        case O_DRY: dry = true; break;
        case O_FORCE: o.force = true; break;
        case O_IFCH: if_changed = o.force = true; break;
        case O_FOLLOW: o.follow_symlinks = true; break;
        case O_THREADS:
            if (!qt_cli_parse_int("--threads", optarg, 1, 1024, &threads)) return QT_EXIT_USAGE;
            break;
        case O_QUIET: quiet = true; break;
        case O_ISA: isa = optarg; break;
        case O_MATCH: match = optarg; break;
        case O_RCP: rcp_path = optarg; break;
        case 'h': usage(stdout, dequant); return QT_EXIT_OK;
        case O_FALLBACK: {
            const qt_scheme_info *s = optarg && strcmp(optarg, "keep") ? qt_scheme_find(optarg) : NULL;
            if (optarg && strcmp(optarg, "keep") && (!s || !(s->flags & QT_SCHEME_F_FALLBACK))) {
                char names[160];
                qt_cli_error("--fallback '%s': not one of keep, %s", optarg,
                             qt_scheme_names(QT_SCHEME_F_FALLBACK, names, sizeof names));
                return QT_EXIT_USAGE;
            }
            cal.fallback_on = true;
            cal.fallback = s ? s->scheme : QT_SCHEME_COUNT;
            break;
        }
        case O_CALREP: calib_report = optarg; break;
        case O_LOFTQ:
        case O_LOFTQ_ITER: {
            long v;
            if (!qt_cli_parse_int(c == O_LOFTQ ? "--loftq" : "--loftq-iter", optarg, 1, 1 << 20, &v))
                return QT_EXIT_USAGE;
            if (c == O_LOFTQ) o.loftq_rank = (size_t)v;
            else o.loftq_iters = (unsigned)v;
            break;
        }
        case O_LOFTQ_ALPHA: {
            char *end;
            o.loftq_alpha = strtod(optarg, &end);
            if (end == optarg || *end || !(o.loftq_alpha > 0) || !isfinite(o.loftq_alpha)) {
                qt_cli_error("--loftq-alpha '%s': expected a positive number", optarg);
                return QT_EXIT_USAGE;
            }
            break;
        }
        default: usage(stderr, dequant); return QT_EXIT_USAGE;
        }
    }
    if (optind != argc - 2) {
        usage(stderr, dequant);
        return QT_EXIT_USAGE;
    }
    if (!qt_cli_setup_isa(isa)) return QT_EXIT_USAGE;
#ifdef _OPENMP
    if (threads) omp_set_num_threads((int)threads);
#endif
    if (dequant && (match || rcp_path)) {
        qt_cli_error("--match: dequant does not quantize");
        return QT_EXIT_USAGE;
    }
    int mrc = qt_cli_match_load(match, rcp_path, rcp);
    if (mrc != QT_EXIT_OK) return mrc;
    o.rcp = *rcp;
    if (o.block && o.scheme == QT_SCHEME_INT8) {
        qt_cli_error("--block: int8 (LLM.int8) is row-wise and has no block size");
        return QT_EXIT_USAGE;
    }
    o.in = argv[optind];
    o.out = argv[optind + 1];
    o.skip = skip;
    o.n_skip = n_skip;
    o.metrics = report != NULL;
    o.progress = quiet ? NULL : stderr;
    o.cancel = &cancel_flag;
    char err[QT_ERRMSG_SIZE] = "";
    qt_conv *cv = NULL;
    if ((dequant && calib.text) || (!calib.text && (cal.fallback_on || calib_report))) {
        qt_cli_error(dequant ? "--calib: dequant does not quantize"
                             : "--fallback and --calib-report need --calib TEXT");
        return QT_EXIT_USAGE;
    }
    if (calib.text) {
        o.check = qt_conv_calib_check;
        o.check_ctx = &cal;
        cal.max_error = calib.max_error;
    }
    qt_status st = qt_conv_plan(&o, &cv, err);
    if (st != QT_OK) {
        qt_cli_error("%s", err);
        return qt_cli_exit_for(st);
    }
    if (qt_conv_warning(cv)) fprintf(stderr, "qtool: warning: %s\n", qt_conv_warning(cv));
    if (dry) {
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
        qt_cli_print_needs(cv);
        qt_conv_free(cv);
        return QT_EXIT_OK;
    }
    if (if_changed) {
        bool same = false;
        char why[256] = "";
        st = qt_conv_up_to_date(cv, &same, why, sizeof why);
        if (st != QT_OK) {
            qt_cli_error("%s", qt_status_str(st));
            qt_conv_free(cv);
            return qt_cli_exit_for(st);
        }
        if (same) {
            fprintf(stderr, "qtool: %s is up to date\n", o.out);
            qt_conv_free(cv);
            return QT_EXIT_OK;
        }
        if (!quiet && access(o.out, F_OK) == 0)
            fprintf(stderr, "qtool: %s is out of date (%s); converting again\n", o.out, why);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    qt_calib_set *cset = NULL;
    qt_calib_report crep;
    qt_calib_report_init(&crep);
    int calib_rc = QT_EXIT_OK;
    bool had_warning = qt_conv_warning(cv) != NULL;
    if (calib.text) {
        snprintf(crep.original, sizeof crep.original, "%s", o.in);
        snprintf(crep.quantized, sizeof crep.quantized, "%s", o.out);
        calib_rc = qt_cli_calib_load(o.in, &calib, &cset, &crep, quiet);
        if (calib_rc != QT_EXIT_OK) {
            qt_conv_free(cv);
            return calib_rc;
        }
        cal.set = cset;
        cal.report = &crep;
    }
    double t0 = qt_now();
    st = qt_conv_run(cv, err);
    if (calib.text) { /* the check's report, whether the run passed or not */
        size_t cnt[QT_VERDICT_COUNT];
        qt_calib_report_counts(&crep, cnt);
        if (st == QT_ERR_NUMERIC && cnt[QT_VERDICT_FAIL]) {
            qt_cli_calib_print_failures(&crep);
            st = QT_ERR_IO; /* a check that failed: exit 1 */
        }
        if (!quiet && (st == QT_OK || st == QT_ERR_IO)) qt_cli_calib_print(stderr, &crep, false);
        if (!cancel_flag) calib_rc = qt_cli_calib_write(&calib, calib_report, &crep);
        if (st == QT_OK && !had_warning && qt_conv_warning(cv))
            fprintf(stderr, "qtool: warning: %s\n", qt_conv_warning(cv));
        qt_calib_set_free(cset);
        qt_calib_report_release(&crep);
    }
    if (st != QT_OK && cancel_flag) {
        qt_cli_error("interrupted: no output written, temporary files removed");
        qt_conv_free(cv);
        return QT_EXIT_FAIL;
    }
    if (st != QT_OK) {
        qt_cli_error("%s", err);
        qt_conv_free(cv);
        return st == QT_ERR_NUMERIC ? QT_EXIT_USAGE : qt_cli_exit_for(st);
    }
    uint64_t tin = 0, tout = 0;
    size_t nq = 0;
    for (size_t i = 0; i < qt_conv_n_items(cv); i++) {
        const qt_conv_item *it = qt_conv_item_at(cv, i);
        tin += it->bytes_in;
        tout += it->bytes_out;
        nq += it->action == QT_ACT_QUANT;
    }
    double dt = qt_now() - t0;
    if (!quiet) {
        double pp, pw, pf;
        qt_conv_phase_seconds(cv, &pp, &pw, &pf);
        fprintf(stderr, "qtool: wrote %s: %zu tensors (%zu quantized), %.2f MB -> %.2f MB in %.2fs\n",
                o.out, qt_conv_n_items(cv), nq, (double)tin / 1e6, (double)tout / 1e6, dt);
        fprintf(stderr, "qtool: phases: prepass %.3fs, quantize+write %.3fs, fsync+rename %.3fs\n",
                pp, pw, pf);
    }
    if (!quiet && o.loftq_rank) {
        size_t nm, nu;
        double ep, el;
        qt_conv_loftq_summary(cv, &nm, &nu, &ep, &el);
        fprintf(stderr,
                "qtool: loftq: rank %zu, %zu modules (%zu LoftQ, %zu plain + B=0): mean relative "
                "error %.5f -> %.5f; adapter in %s/loftq-adapter\n",
                o.loftq_rank, nm, nu, nm - nu, ep, el, o.out);
    }
    int rc = calib_rc;
    if (report) {
        char *json = NULL;
        if (qt_conv_report_json(cv, &json, err) == QT_OK) {
            FILE *f = fopen(report, "w");
            if (!f || fputs(json, f) < 0 || fclose(f) != 0) {
                qt_cli_error("cannot write report '%s': %s", report, strerror(errno));
                rc = QT_EXIT_FAIL;
            }
        } else {
            qt_cli_error("%s", err);
            rc = QT_EXIT_FAIL;
        }
        qt_free(json);
    }
    qt_conv_free(cv);
    return rc;
}

static int run_and_free(int argc, char **argv, bool dequant)
{
    uint8_t *rcp = NULL;
    int rc = run(argc, argv, dequant, &rcp);
    qt_free(rcp);
    return rc;
}

int cmd_convert(int argc, char **argv) { return run_and_free(argc, argv, false); }
int cmd_dequant(int argc, char **argv) { return run_and_free(argc, argv, true); }
