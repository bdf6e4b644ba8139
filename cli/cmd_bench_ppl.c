/* cli/cmd_bench_ppl.c: `qtool bench ppl BASE [QUANT ...] --text FILE`:
 * perplexity of each model and KL divergence, top-1 agreement and |dp| of
 * each QUANT against BASE (bench/ppl.h), as a table, JSON and an SVG chart. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "bench/ppl.h"
#include "cli/cli.h"
#include "common/cpu.h"
#include "formats/fsutil.h"
#include "formats/input_file.h"
#include "model/model.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qtool bench ppl BASE [QUANT ...] --text FILE [options]\n"
            "\n"
            "Perplexity of BASE and of each QUANT on FILE, and how far each QUANT's token\n"
            "distributions are from BASE's on exactly the same tokens: KL divergence (mean,\n"
            "median, 99th percentile, max), top-1 agreement, |dp| of the correct token, PPL\n"
            "ratio; bits per weight and tokens/s. Models: model directories, .safetensors or\n"
            ".gguf files that qtool runs (original or converted).\n"
            "Protocol (llama-perplexity): the text is tokenized once with BOS first, cut into\n"
            "chunks of --ctx tokens (the remainder dropped), each chunk starts with BOS and\n"
            "only its second half is scored. BASE's log-probabilities are cached, so comparing\n"
            "more models later does not rerun BASE.\n"
            "\n"
            "options:\n"
            "      --text FILE       the text to score (UTF-8; required)\n"
            "  -c, --ctx N           tokens per chunk (default 512)\n"
            "      --chunks N        at most N chunks (default: all)\n"
            "      --score MODE      half (default: positions ctx/2..ctx-2) or all (every\n"
            "                        position, the first predicted from BOS alone)\n"
            "  -j, --threads N       threads (default: the cores this process may use);\n"
            "                        results do not depend on it\n"
            "      --json FILE       also write the results as JSON ('-' = stdout, no table)\n"
            "      --plot FILE.svg   SVG chart: KL divergence and PPL ratio vs bits per weight\n"
            "      --cache DIR       BASE log-prob cache (default $XDG_CACHE_HOME/qtool or\n"
            "                        ~/.cache/qtool)\n"
            "      --no-cache        keep BASE's log-probs in a temporary file only\n"
            "      --adapter DIR     run a PEFT LoRA adapter (unmerged) on every model given\n"
            "                        without its own: a model argument MODEL+DIR carries one\n"
            "      --tokenizer PATH  tokenizer.json / tokenizer.model / .gguf or a folder\n"
            "                        (default: BASE's)\n"
            "      --isa ISA         force a SIMD path: ref, avx2, avx512, neon\n"
            "  -q, --quiet           no progress bar\n"
            "  -h, --help            this help\n");
}

/* Reads the text (the text-input rule: a regular file of at most 2 GiB;
 * NUL-terminated, qt_free it). On failure prints the error, sets *rc and
 * returns NULL. */
char *qt_cli_read_file(const char *path, size_t *n, int *rc)
{
    char err[QT_ERRMSG_SIZE], *buf = NULL;
    if ((*rc = qt_cli_need_input(path, "text")) != QT_EXIT_OK) return NULL;
    qt_status st = qt_file_read(path, &buf, n, QT_TEXT_MAX_BYTES, err);
    if (st != QT_OK) {
        qt_cli_error("%s", err);
        *rc = qt_cli_exit_for(st);
        return NULL;
    }
    return buf;
}

/* Writes the JSON result to path atomically (temp + rename); an exit code. */
static int write_json(const qt_ppl_result *r, const char *path)
{
    char errmsg[QT_ERRMSG_SIZE], *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    if (!mem) {
        qt_cli_error("cannot write '%s': %s", path, strerror(errno));
        return QT_EXIT_FAIL;
    }
    qt_status st = qt_ppl_write_json(r, mem, errmsg);
    int closed = fclose(mem), rc;
    if (st != QT_OK) {
        qt_cli_error("%s", errmsg);
        rc = qt_cli_exit_for(st);
    } else if (closed != 0 || !text) {
        qt_cli_error("cannot write '%s': out of memory", path);
        rc = QT_EXIT_FAIL;
    } else {
        rc = qt_cli_write_file(path, text, len); /* temp + rename */
    }
    free(text); /* open_memstream allocates with malloc */
    return rc;
}

static void print_table(const qt_ppl_result *r, const char *text_path)
{
    char proto[512];
    qt_ppl_protocol(r, proto, sizeof proto);
    printf("text: %s (%zu bytes, sha256 %.16s...)\n", text_path, r->text_bytes, r->text_sha256);
    printf("protocol: %s\n", proto);
    printf("threads: %d, isa: %s\n", r->threads, qt_isa_name(qt_isa_active()));
    if (r->cache_path[0])
        printf("cache: %s (BASE %s)\n", r->cache_path,
               r->models[0].from_cache ? "read from the cache" : "computed and cached");
    printf("\n%-28s %6s %16s %7s %9s %9s %9s %9s %7s %9s %9s %9s\n", "MODEL", "BPW",
           "PPL", "RATIO", "KL-MEAN", "KL-MED", "KL-P99", "KL-MAX", "TOP1%", "|DP|MEAN",
           "|DP|P99", "TOK/S");
    for (size_t i = 0; i < r->n_models; i++) {
        const qt_ppl_model *m = &r->models[i];
        const char *name = m->path;
        size_t len = strlen(name);
        char shown[64];
        if (len > 28) snprintf(shown, sizeof shown, "...%s", name + len - 25);
        else snprintf(shown, sizeof shown, "%s", name);
        char ppl[32];
        snprintf(ppl, sizeof ppl, "%.4f+-%.4f", m->ppl, m->ppl_err);
        printf("%-28s %6.2f %16s %7.4f %9.2e %9.2e %9.2e %9.2e %7.2f %9.2e %9.2e %9.0f%s\n",
               shown, m->bpw, ppl, m->ppl_ratio, m->kl_mean, m->kl_median, m->kl_p99, m->kl_max,
               100.0 * m->top1, m->dp_mean, m->dp_p99, m->tok_s, m->from_cache ? "*" : "");
    }
    if (r->models[0].from_cache) printf("(* tokens/s of the run that filled the cache)\n");
}

int qt_cli_ppl_report(const qt_ppl_result *r, const char *text_path, const char *json,
                      const char *plot)
{
    int rc = QT_EXIT_OK;
    qt_status st;
    char errmsg[QT_ERRMSG_SIZE] = "";
    bool json_stdout = json && !strcmp(json, "-");
    if (!json_stdout) print_table(r, text_path);
    if (json_stdout) {
        st = qt_ppl_write_json(r, stdout, errmsg);
        if (st != QT_OK) {
            qt_cli_error("%s", errmsg);
            rc = qt_cli_exit_for(st);
        }
    } else if (json) {
        int wrc = write_json(r, json); /* temp + rename */
        if (wrc != QT_EXIT_OK) rc = wrc;
    }
    if (plot) {
        st = qt_ppl_write_svg(r, plot, errmsg);
        if (st != QT_OK) {
            qt_cli_error("%s", errmsg);
            rc = qt_cli_exit_for(st);
        }
    }
    return rc;
}

int cmd_bench_ppl(int argc, char **argv)
{
    enum { OPT_TEXT = 256, OPT_CHUNKS, OPT_SCORE, OPT_JSON, OPT_PLOT, OPT_CACHE, OPT_NOCACHE,
           OPT_TOKENIZER, OPT_ISA, OPT_ADAPTER };
    static const struct option longopts[] = {
        {"text", required_argument, NULL, OPT_TEXT},
        {"ctx", required_argument, NULL, 'c'},
        {"chunks", required_argument, NULL, OPT_CHUNKS},
        {"score", required_argument, NULL, OPT_SCORE},
        {"threads", required_argument, NULL, 'j'},
        {"json", required_argument, NULL, OPT_JSON},
        {"plot", required_argument, NULL, OPT_PLOT},
        {"cache", required_argument, NULL, OPT_CACHE},
        {"no-cache", no_argument, NULL, OPT_NOCACHE},
        {"tokenizer", required_argument, NULL, OPT_TOKENIZER},
        {"isa", required_argument, NULL, OPT_ISA},
        {"adapter", required_argument, NULL, OPT_ADAPTER},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *text_path = NULL, *json = NULL, *plot = NULL, *cache = NULL, *isa = NULL;
    bool no_cache = false, quiet = false;
    long ctx = 512, chunks = 0, threads = 0;
    qt_ppl_opts o = {0};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:j:qh", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_TEXT: text_path = optarg; break;
        case 'c':
            if (!qt_cli_parse_int("--ctx", optarg, 4, 1 << 20, &ctx)) return QT_EXIT_USAGE;
            break;
        case OPT_CHUNKS:
            if (!qt_cli_parse_int("--chunks", optarg, 1, 1L << 40, &chunks)) return QT_EXIT_USAGE;
            break;
        case OPT_SCORE:
            if (!strcmp(optarg, "half")) o.score = QT_PPL_SCORE_HALF;
            else if (!strcmp(optarg, "all")) o.score = QT_PPL_SCORE_ALL;
            else {
                qt_cli_error("--score '%s': not one of half, all", optarg);
                return QT_EXIT_USAGE;
            }
            break;
        case 'j':
            if (!qt_cli_parse_int("--threads", optarg, 1, 1024, &threads)) return QT_EXIT_USAGE;
            break;
        case OPT_JSON: json = optarg; break;
        case OPT_PLOT: plot = optarg; break;
        case OPT_CACHE: cache = optarg; break;
        case OPT_NOCACHE: no_cache = true; break;
        case OPT_TOKENIZER: o.tokenizer = optarg; break;
        case OPT_ADAPTER: o.adapter = optarg; break;
        case OPT_ISA: isa = optarg; break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return QT_EXIT_OK;
        default: usage(stderr); return QT_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        qt_cli_error("bench ppl needs BASE and optionally QUANT models (see 'qtool bench ppl -h')");
        return QT_EXIT_USAGE;
    }
    if (!text_path) {
        qt_cli_error("bench ppl: --text FILE is required");
        return QT_EXIT_USAGE;
    }
    if (no_cache && cache) {
        qt_cli_error("bench ppl: --cache and --no-cache exclude each other");
        return QT_EXIT_USAGE;
    }
    for (int i = optind; i < argc; i++) { /* MODEL of each MODEL[+ADAPTER] is there */
        char mp[4096];
        const char *ad = NULL;
        if (!qt_model_arg_split(argv[i], mp, sizeof mp, &ad) ||
            qt_cli_need_input(mp, "model") != QT_EXIT_OK)
            return QT_EXIT_USAGE;
    }
    if ((json && strcmp(json, "-") && qt_cli_check_output("--json", json) != QT_EXIT_OK) ||
        qt_cli_check_output("--plot", plot) != QT_EXIT_OK)
        return QT_EXIT_USAGE;
    if (!qt_cli_setup_isa(isa)) return QT_EXIT_USAGE;
    qt_cli_setup_threads(threads); /* the thread team, up front */
    char cache_buf[4096];
    if (!no_cache && !cache) {
        const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
        if (xdg && *xdg) snprintf(cache_buf, sizeof cache_buf, "%s/qtool", xdg);
        else if (home && *home) snprintf(cache_buf, sizeof cache_buf, "%s/.cache/qtool", home);
        else cache_buf[0] = 0;
        if (cache_buf[0]) cache = cache_buf;
    }
    o.ctx = (size_t)ctx;
    o.max_chunks = (size_t)chunks;
    o.cache_dir = no_cache ? NULL : cache;
    o.progress = quiet ? NULL : stderr;

    size_t text_len = 0;
    int rc = QT_EXIT_OK;
    char *text = qt_cli_read_file(text_path, &text_len, &rc);
    if (!text) return rc;
    char errmsg[QT_ERRMSG_SIZE] = "";
    qt_ppl_result *r = NULL;
    qt_status st = qt_ppl_compare((const char *const *)argv + optind, (size_t)(argc - optind),
                                  text, text_len, &o, &r, errmsg);
    qt_free(text);
    if (qt_cli_input_changed()) { /* a model cut while read: its figures are not real */
        qt_ppl_result_free(r);
        return QT_EXIT_FAIL;
    }
    if (st != QT_OK) {
        qt_cli_error("bench ppl: %s", errmsg[0] ? errmsg : qt_status_str(st));
        return qt_cli_exit_for(st);
    }
    if (r->cache_note[0]) fprintf(stderr, "qtool: warning: %s\n", r->cache_note);
    rc = qt_cli_ppl_report(r, text_path, json, plot);
    qt_ppl_result_free(r);
    return rc;
}
