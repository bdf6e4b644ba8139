/* cli/cmd_merge.c: `qtool merge BASE ADAPTER OUT --onto original|quantized
 * [--scheme S]`: a PEFT LoRA adapter folded into a model (convert/merge.h),
 * written in any scheme convert writes. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "convert/merge.h"
#include "formats/fsutil.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qtool merge BASE ADAPTER OUT --onto original|quantized [options]\n"
            "\n"
            "Folds a PEFT LoRA adapter (ADAPTER: adapter_config.json + adapter_model.safetensors)\n"
            "into BASE, W' = W + s B A in fp32, and writes OUT in the output scheme. W is the\n"
            "original weight (--onto original: BASE is the fp32/fp16/bf16 checkpoint) or the\n"
            "exact bitsandbytes dequantization of the quantized weight the adapter was trained\n"
            "on (--onto quantized: BASE is that nf4/fp4/int8/q8 model). Weights the adapter does\n"
            "not change keep their exact bytes when their stored form is the output's.\n"
            "Reports per weight ||s B A|| / ||W|| and, for 4-bit outputs, how many codes and\n"
            "block scales changed (most small deltas round back to the old code).\n"
            "\n"
            "options:\n"
            "  --onto WHAT          original or quantized (required)\n"
            "  --scheme S           nf4 (default), fp4, int8, q8, bf16, fp16, fp32; with\n"
            "                       --format gguf any GGUF scheme (f16 default, q8_0, Q4_K_M, ...)\n"
            "  --block N            block size (default: the scheme's)\n"
            "  --no-double-quant    nf4/fp4 without double quantization\n"
            "  --compute-dtype D    bf16, fp16 or fp32 (default: BASE's config dtype)\n"
            "  --format F           safetensors (default) or gguf (also for an OUT ending in\n"
            "                       .gguf): one llama.cpp file, through an fp32 merge beside OUT\n"
            "  --report FILE        per-weight JSON report\n"
            "  --dry-run            print the plan, write nothing\n"
            "  --force              replace an existing OUT\n"
            "  --threads N          OpenMP threads (output bytes do not depend on it)\n"
            "  --isa ISA            force a SIMD path: ref, avx2, avx512\n"
            "  --quiet              no progress or summary\n"
            "\n"
            "the cost, measured (PPL and KL divergence, as 'qtool bench ppl'):\n"
            "  --eval TEXT          after the merge, compare against the model as trained (the\n"
            "                       quantized base + the adapter, unmerged): OUT, and the\n"
            "                       alternatives merged into a temporary folder beside OUT:\n"
            "                       onto quantized / onto original x the scheme / bf16\n"
            "  --eval-quantized Q   the quantized base the adapter was trained on (default:\n"
            "                       BASE with --onto quantized; required with --onto original)\n"
            "  --eval-original O    the original checkpoint (default: BASE with --onto\n"
            "                       original; without it no \"onto original\" rows)\n"
            "  --eval-json FILE     the comparison as JSON; --eval-plot FILE.svg: as a chart\n"
            "  --ctx N, --chunks N  tokens per chunk (512), at most N chunks (all)\n"
            "  -h, --help           this help\n");
}

/* The plan, one line per weight. */
static void print_plan(const qt_merge *m)
{
    printf("%-48s %-8s %-10s %s\n", "TENSOR", "ACTION", "SCHEME", "STORED");
    for (size_t i = 0; i < qt_merge_n_items(m); i++) {
        const qt_merge_item *it = qt_merge_item_at(m, i);
        char sch[32];
        snprintf(sch, sizeof sch, "%s%s", qt_scheme_get(it->scheme)->name,
                 it->double_quant ? "+dq" : "");
        printf("%-48s %-8s %-10s %s\n", it->src->name, qt_merge_action_name(it->action), sch,
               qt_lweight_label(it->src));
    }
}

/* The summary: counts per action and the measurements of folded weights. */
static void print_summary(const qt_merge *m, const char *out)
{
    size_t cnt[QT_MERGE_ACTION_COUNT] = {0}, n4 = 0;
    double drel = 0, codes = 0, scales = 0, dmax = 0;
    for (size_t i = 0; i < qt_merge_n_items(m); i++) {
        const qt_merge_item *it = qt_merge_item_at(m, i);
        cnt[it->action]++;
        if (it->delta_rel >= 0) {
            drel += it->delta_rel;
            if (it->delta_rel > dmax) dmax = it->delta_rel;
        }
        if (it->codes_changed >= 0) {
            codes += it->codes_changed;
            scales += it->scales_changed;
            n4++;
        }
    }
    fprintf(stderr,
            "qtool: wrote %s: %zu tensors: %zu folded, %zu replaced, %zu passed as stored, %zu "
            "converted, %zu copied in %.2fs\n",
            out, qt_merge_n_items(m), cnt[QT_MERGE_FOLD], cnt[QT_MERGE_REPLACE],
            cnt[QT_MERGE_PASS], cnt[QT_MERGE_CONVERT], cnt[QT_MERGE_COPY], qt_merge_seconds(m));
    if (cnt[QT_MERGE_FOLD])
        fprintf(stderr, "qtool: ||s B A|| / ||W||: mean %.4g, max %.4g over %zu folded weights\n",
                drel / (double)cnt[QT_MERGE_FOLD], dmax, cnt[QT_MERGE_FOLD]);
    if (n4)
        fprintf(stderr,
                "qtool: requantized onto the base's grid: %.2f%% of 4-bit codes and %.2f%% of "
                "block scales changed (mean over %zu weights)\n",
                100.0 * codes / (double)n4, 100.0 * scales / (double)n4, n4);
}

static int write_report(const qt_merge *m, const char *path)
{
    char err[QT_ERRMSG_SIZE] = "", *json = NULL;
    int rc = QT_EXIT_OK;
    if (qt_merge_report_json(m, &json, err) != QT_OK) {
        qt_cli_error("%s", err);
        return QT_EXIT_FAIL;
    }
    rc = qt_cli_write_file(path, json, strlen(json)); /* temp + rename, errno named */
    qt_free(json);
    return rc;
}

int cmd_merge(int argc, char **argv)
{
    enum { O_ONTO = 256, O_SCHEME, O_BLOCK, O_NODQ, O_CDT, O_FORMAT, O_REPORT, O_DRY, O_FORCE,
           O_THREADS, O_ISA, O_QUIET, O_EVAL, O_EVQ, O_EVO, O_EVJ, O_EVP, O_CTX, O_CHUNKS };
    static const struct option opts[] = {
        {"onto", required_argument, 0, O_ONTO},      {"scheme", required_argument, 0, O_SCHEME},
        {"block", required_argument, 0, O_BLOCK},    {"no-double-quant", no_argument, 0, O_NODQ},
        {"compute-dtype", required_argument, 0, O_CDT},
        {"format", required_argument, 0, O_FORMAT},  {"report", required_argument, 0, O_REPORT},
        {"dry-run", no_argument, 0, O_DRY},          {"force", no_argument, 0, O_FORCE},
        {"threads", required_argument, 0, O_THREADS}, {"isa", required_argument, 0, O_ISA},
        {"quiet", no_argument, 0, O_QUIET},          {"help", no_argument, 0, 'h'},
        {"eval", required_argument, 0, O_EVAL},      {"eval-quantized", required_argument, 0, O_EVQ},
        {"eval-original", required_argument, 0, O_EVO},
        {"eval-json", required_argument, 0, O_EVJ},  {"eval-plot", required_argument, 0, O_EVP},
        {"ctx", required_argument, 0, O_CTX},        {"chunks", required_argument, 0, O_CHUNKS},
        {0, 0, 0, 0}};
    qt_merge_opts o = {.scheme = QT_SCHEME_NF4, .double_quant = true,
                       .onto = QT_MERGE_ONTO_COUNT};
    const char *report = NULL, *isa = NULL, *scheme_arg = NULL;
    qt_status st0;
    bool dry = false, quiet = false;
    long threads = 0, block = 0, num = 0;
    qt_cli_merge_eval_opts ev = {0};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_ONTO:
            if (!strcmp(optarg, "original")) o.onto = QT_MERGE_ONTO_ORIGINAL;
            else if (!strcmp(optarg, "quantized")) o.onto = QT_MERGE_ONTO_QUANTIZED;
            else {
                qt_cli_error("--onto '%s': not one of original, quantized", optarg);
                return QT_EXIT_USAGE;
            }
            break;
        case O_SCHEME: scheme_arg = optarg; break;
        case O_BLOCK:
            if (!qt_cli_parse_int("--block", optarg, 1, 1 << 20, &block)) return QT_EXIT_USAGE;
            o.block = (size_t)block;
            break;
        case O_NODQ: o.double_quant = false; break;
        case O_CDT: o.compute_dtype = optarg; break;
        case O_FORMAT: o.format = optarg; break;
        case O_REPORT: report = optarg; break;
        case O_DRY: dry = true; break;
        case O_FORCE: o.force = true; break;
        case O_THREADS:
            if (!qt_cli_parse_int("--threads", optarg, 1, 1024, &threads)) return QT_EXIT_USAGE;
            break;
        case O_ISA: isa = optarg; break;
        case O_QUIET: quiet = true; break;
        case O_EVAL: ev.text = optarg; break;
        case O_EVQ: ev.quantized = optarg; break;
        case O_EVO: ev.original = optarg; break;
        case O_EVJ: ev.json = optarg; break;
        case O_EVP: ev.plot = optarg; break;
        case O_CTX:
        case O_CHUNKS:
            if (!qt_cli_parse_int(c == O_CTX ? "--ctx" : "--chunks", optarg, c == O_CTX ? 4 : 1,
                                  1 << 20, &num))
                return QT_EXIT_USAGE;
            *(c == O_CTX ? &ev.ctx : &ev.chunks) = (size_t)num;
            break;
        case 'h': usage(stdout); return QT_EXIT_OK;
        default: usage(stderr); return QT_EXIT_USAGE;
        }
    }
    if (argc - optind != 3) {
        qt_cli_error("merge needs BASE ADAPTER OUT (see 'qtool merge -h')");
        return QT_EXIT_USAGE;
    }
    if (o.onto == QT_MERGE_ONTO_COUNT) {
        qt_cli_error("merge: --onto original|quantized is required (which weights W the "
                     "adapter is added to)");
        return QT_EXIT_USAGE;
    }
    if (!ev.text && (ev.quantized || ev.original || ev.json || ev.plot || ev.ctx || ev.chunks)) {
        qt_cli_error("merge: --eval-* options, --ctx and --chunks need --eval TEXT");
        return QT_EXIT_USAGE;
    }
    if (ev.text && o.onto == QT_MERGE_ONTO_ORIGINAL && !ev.quantized) {
        qt_cli_error("merge --onto original --eval: give the quantized base the adapter was "
                     "trained on (--eval-quantized QBASE)");
        return QT_EXIT_USAGE;
    }
    const bool gguf = (o.format && !strcmp(o.format, "gguf")) ||
                      (argc - optind == 3 && qt_str_ends_with(argv[optind + 2], ".gguf"));
    if (gguf && (ev.text || dry || report)) {
        qt_cli_error("merge --format gguf: --eval, --dry-run and --report are for the "
                     "safetensors outputs");
        return QT_EXIT_USAGE;
    }
    if (scheme_arg && !gguf) { /* a scheme of the table (the GGUF export names its own) */
        const qt_scheme_info *s = qt_scheme_find(scheme_arg);
        if (!s || s->scheme == QT_SCHEME_INT8_BLOCKWISE || (s->block_bytes && s->scheme != QT_SCHEME_Q8)) {
            qt_cli_error("--scheme '%s': not one of nf4, fp4, int8, q8, bf16, fp16, fp32",
                         scheme_arg);
            return QT_EXIT_USAGE;
        }
        o.scheme = s->scheme;
    }
    if (!qt_cli_setup_isa(isa)) return QT_EXIT_USAGE;
    if (qt_cli_check_output("--report", report) != QT_EXIT_OK) return QT_EXIT_USAGE;
    qt_cli_setup_threads(threads); /* the thread team, up front */
    o.base = argv[optind];
    o.adapter = argv[optind + 1];
    o.out = argv[optind + 2];
    o.progress = quiet ? NULL : stderr;
    char err[QT_ERRMSG_SIZE] = "";
    if (gguf) { /* the merge, then the GGUF export of it (convert/merge_gguf.c) */
        st0 = qt_merge_to_gguf(&o, scheme_arg ? scheme_arg : "f16", false,
                               quiet ? NULL : stderr, NULL, err);
        if (st0 != QT_OK) {
            qt_cli_error("%s", err);
            return st0 == QT_ERR_NUMERIC ? QT_EXIT_USAGE : qt_cli_exit_for(st0);
        }
        if (!quiet) fprintf(stderr, "qtool: wrote %s\n", o.out);
        return QT_EXIT_OK;
    }
    qt_merge *m = NULL;
    qt_status st = qt_merge_plan(&o, &m, err);
    if (st != QT_OK) {
        qt_cli_error("%s", err);
        return qt_cli_exit_for(st);
    }
    const qt_adapter *ad = qt_merge_adapter(m);
    for (size_t i = 0; i < ad->n_warnings; i++)
        fprintf(stderr, "qtool: warning: adapter '%s': %s\n", ad->dir, ad->warnings[i]);
    if (dry) {
        print_plan(m);
        qt_merge_free(m);
        return QT_EXIT_OK;
    }
    int rc = QT_EXIT_OK;
    if ((st = qt_merge_run(m, err)) != QT_OK) {
        qt_cli_error("%s", err);
        rc = st == QT_ERR_NUMERIC ? QT_EXIT_USAGE : qt_cli_exit_for(st);
    } else {
        if (!quiet) print_summary(m, o.out);
        if (report) rc = write_report(m, report);
    }
    qt_merge_free(m);
    if (rc == QT_EXIT_OK && ev.text) rc = qt_cli_merge_eval(&o, &ev, quiet);
    return rc;
}
