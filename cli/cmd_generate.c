/* cli/cmd_generate.c: `qtool generate MODEL`: text generation with the C
 * forward pass (greedy by default), streamed to stdout; speed on stderr.
 * `--bench` measures prompt processing and decoding speed instead. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "bench/bench.h"
#include "cli/cli.h"
#include "common/cpu.h"
#include "formats/vocab.h"
#include "model/model.h"
#include "model/tokenizer.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qtool generate MODEL [options]\n"
            "\n"
            "Generates text with qtool's own forward pass, running the weights as they are\n"
            "stored (f32/f16/bf16, nf4/fp4 (+double quant), LLM.int8, q8, GGUF F32/F16/Q8_0).\n"
            "MODEL is a model directory, a .safetensors file or a .gguf file. Decoding is\n"
            "greedy unless --temp is given; the text streams to stdout, speed goes to stderr.\n"
            "\n"
            "options:\n"
            "  -p, --prompt TEXT     text to continue (default: none, BOS alone)\n"
            "  -n, --tokens N        tokens to generate (default 256)\n"
            "  -t, --temp T          sampling temperature; 0 = greedy (default 0)\n"
            "  -s, --seed S          random seed for sampling (default 42)\n"
            "  -j, --threads N       threads (default: the cores this process may use)\n"
            "  -c, --ctx N           context length (default: the model's, at most 4096)\n"
            "      --adapter DIR     run a PEFT LoRA adapter on MODEL, unmerged (or give\n"
            "                        MODEL+DIR)\n"
            "      --tokenizer PATH  tokenizer.json / tokenizer.model or a folder holding one\n"
            "                        (default: MODEL's folder; a .gguf's own vocabulary)\n"
            "      --ids             print token ids (one line) instead of text; the default\n"
            "                        when no tokenizer is found\n"
            "      --no-stop         keep going past the end-of-sequence token\n"
            "      --bench           measure speed: prompt processing of --bench-pp tokens in\n"
            "                        chunks of 512 and decoding of --bench-tg tokens\n"
            "      --bench-pp N      (default 512)   --bench-tg N (default 128)\n"
            "      --isa ISA         force a SIMD path: ref, avx2, avx512, neon\n"
            "  -h, --help            this help\n");
}

/* Whether every one of the n logits is a finite number. */
static bool all_finite(const float *logits, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(logits[i])) return false;
    return true;
}

/* ---- the command line ------------------------------------------------------ */

enum { OPT_TOKENIZER = 256, OPT_IDS, OPT_BENCH, OPT_BENCH_PP, OPT_BENCH_TG, OPT_ISA, OPT_NOSTOP,
       OPT_ADAPTER };
static const struct option LONGOPTS[] = {
    {"prompt", required_argument, NULL, 'p'},
    {"tokens", required_argument, NULL, 'n'},
    {"temp", required_argument, NULL, 't'},
    {"seed", required_argument, NULL, 's'},
    {"threads", required_argument, NULL, 'j'},
    {"ctx", required_argument, NULL, 'c'},
    {"tokenizer", required_argument, NULL, OPT_TOKENIZER},
    {"ids", no_argument, NULL, OPT_IDS},
    {"no-stop", no_argument, NULL, OPT_NOSTOP},
    {"adapter", required_argument, NULL, OPT_ADAPTER},
    {"bench", no_argument, NULL, OPT_BENCH},
    {"bench-pp", required_argument, NULL, OPT_BENCH_PP},
    {"bench-tg", required_argument, NULL, OPT_BENCH_TG},
    {"isa", required_argument, NULL, OPT_ISA},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Everything the command line asks for. */
typedef struct gen_args {
    const char *model_arg;      /* MODEL or MODEL+ADAPTER as given */
    char model_path[4096];      /* MODEL */
    const char *prompt, *tok_path, *isa, *adapter;
    long n_gen, seed, threads, ctx, bench_pp, bench_tg;
    double temp;
    bool ids_only, bench, stop;
} gen_args;

/* Applies one option; -1 to go on, or the exit code (help, a bad value). */
static int parse_option(gen_args *a, int c, const char *arg)
{
    char *end;
    switch (c) {
    case 'p': a->prompt = arg; return -1;
    case 'n': return qt_cli_parse_int("--tokens", arg, 0, 1 << 24, &a->n_gen) ? -1 : QT_EXIT_USAGE;
    case 't':
        a->temp = strtod(arg, &end);
        if (end != arg && !*end && a->temp >= 0.0 && a->temp <= 100.0) return -1;
        qt_cli_error("option '--temp': '%s' is not a number in [0, 100]", arg);
        return QT_EXIT_USAGE;
    case 's': return qt_cli_parse_int("--seed", arg, 0, 0x7fffffffL, &a->seed) ? -1 : QT_EXIT_USAGE;
    case 'j':
        return qt_cli_parse_int("--threads", arg, 1, 1024, &a->threads) ? -1 : QT_EXIT_USAGE;
    case 'c': return qt_cli_parse_int("--ctx", arg, 1, 1 << 24, &a->ctx) ? -1 : QT_EXIT_USAGE;
    case OPT_TOKENIZER: a->tok_path = arg; return -1;
    case OPT_IDS: a->ids_only = true; return -1;
    case OPT_NOSTOP: a->stop = false; return -1;
    case OPT_BENCH: a->bench = true; return -1;
    case OPT_BENCH_PP:
        return qt_cli_parse_int("--bench-pp", arg, 1, 1 << 20, &a->bench_pp) ? -1 : QT_EXIT_USAGE;
    case OPT_BENCH_TG:
        return qt_cli_parse_int("--bench-tg", arg, 0, 1 << 20, &a->bench_tg) ? -1 : QT_EXIT_USAGE;
    case OPT_ISA: a->isa = arg; return -1;
    case OPT_ADAPTER: a->adapter = arg; return -1;
    case 'h': usage(stdout); return QT_EXIT_OK;
    default: usage(stderr); return QT_EXIT_USAGE;
    }
}

/* The options and MODEL, then what can be refused before loading; -1 to go
 * on, or the exit code. */
static int parse_args(int argc, char **argv, gen_args *a)
{
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "p:n:t:s:j:c:h", LONGOPTS, NULL)) != -1) {
        int rc = parse_option(a, c, optarg);
        if (rc >= 0) return rc;
    }
    if (optind != argc - 1) {
        qt_cli_error("generate needs exactly one MODEL (see 'qtool generate -h')");
        return QT_EXIT_USAGE;
    }
    a->model_arg = argv[optind];
    const char *adapter = NULL; /* MODEL+ADAPTER: the model's path alone is checked here */
    if (!qt_model_arg_split(a->model_arg, a->model_path, sizeof a->model_path, &adapter)) {
        qt_cli_error("'%s': path too long", a->model_arg);
        return QT_EXIT_USAGE;
    }
    if (qt_cli_need_input(a->model_path, "model") != QT_EXIT_OK) return QT_EXIT_USAGE;
    if (!qt_cli_setup_isa(a->isa)) return QT_EXIT_USAGE;
    qt_cli_setup_threads(a->threads); /* the thread team, up front */
    return -1;
}

/* ---- steps ---------------------------------------------------------------- */

/* The --bench report: tokens/s of each phase beside the machine's limits
 * measured right after, in the same process and thread count: decoding as
 * a fraction of the read-bandwidth roofline (weight bytes per token x
 * tokens/s over a read probe of 512 MiB), prompt processing as a fraction
 * of peak FMA throughput (Linear-layer flops only). */
static void print_bench(const char *model_path, int nth, const qt_model_bench_result *r)
{
    const double bw = qt_probe_read_gbs(nth, (size_t)512 << 20, 5);
    const double peak = qt_probe_fma_gflops(NULL, nth, 5);
    const double tg_gbs = (double)r->weight_bytes_per_token * r->tg_tok_s / 1e9;
    const double pp_gfl = r->matmul_flops_per_token * r->pp_tok_s / 1e9;
    printf("model: %s\nthreads: %d\nisa: %s\n", model_path, nth, qt_isa_name(qt_isa_active()));
    printf("probes: read bandwidth %.2f GB/s, peak fp32 FMA %.1f GFLOP/s\n", bw, peak);
    printf("prompt processing: %zu tokens in %.3f s: %.1f tokens/s, %.1f GFLOP/s of Linear "
           "layers = %.3f of peak FMA\n",
           r->n_prompt, r->pp_seconds, r->pp_tok_s, pp_gfl, peak > 0 ? pp_gfl / peak : 0.0);
    printf("decoding: %zu tokens in %.3f s: %.1f tokens/s, %.1f MB of weights per token, "
           "%.2f GB/s = %.3f of the read-bandwidth roofline\n",
           r->n_gen, r->tg_seconds, r->tg_tok_s, (double)r->weight_bytes_per_token / 1e6, tg_gbs,
           bw > 0 ? tg_gbs / bw : 0.0);
}

/* --bench: prompt processing and decoding speed; an exit code. */
static int run_bench(qt_model *m, const gen_args *a)
{
    qt_model_bench_result r;
    qt_status st = qt_model_bench(m, (size_t)a->bench_pp, (size_t)a->bench_tg, &r);
    if (st != QT_OK) {
        qt_cli_error("bench: %s", qt_model_errmsg(m));
        return qt_cli_exit_for(st);
    }
    int nth = 1;
#ifdef _OPENMP
    nth = omp_get_max_threads();
#endif
    print_bench(a->model_path, nth, &r);
    return QT_EXIT_OK;
}

/* The tokenizer (--tokenizer, or MODEL's own); none found means token ids
 * are printed (a->ids_only), which a prompt cannot use. -1 or an exit code. */
static int load_tokenizer(gen_args *a, const qt_model *m, qt_vocab **vocab, qt_tokenizer **tok)
{
    char errmsg[QT_ERRMSG_SIZE] = "";
    qt_status st = qt_model_find_vocab(a->model_path, a->tok_path, vocab, errmsg);
    if (st != QT_OK) {
        qt_cli_error("tokenizer: %s", errmsg);
        return qt_cli_exit_for(st);
    }
    if (!*vocab) { /* no tokenizer: ids */
        if (a->prompt && *a->prompt) {
            qt_cli_error("'%s': no tokenizer found for the prompt (use --tokenizer)", a->model_path);
            return QT_EXIT_USAGE;
        }
        if (!a->ids_only) fprintf(stderr, "qtool: no tokenizer found: printing token ids\n");
        a->ids_only = true;
        return -1;
    }
    if ((st = qt_tokenizer_new(*vocab, tok)) != QT_OK) {
        qt_cli_error("tokenizer: %s", qt_status_str(st));
        return qt_cli_exit_for(st);
    }
    if (qt_tokenizer_n_tokens(*tok) > qt_model_get_config(m)->vocab_size) {
        qt_cli_error("tokenizer has %zu tokens, the model %zu", qt_tokenizer_n_tokens(*tok),
                     qt_model_get_config(m)->vocab_size);
        return QT_EXIT_USAGE;
    }
    return -1;
}

/* The prompt as token ids: BOS, then the prompt; it must fit the context
 * with the tokens to generate. -1 or an exit code. */
static int prompt_ids(const gen_args *a, const qt_tokenizer *tok, const qt_model *m, int32_t **ids,
                      size_t *n_ids)
{
    const qt_model_config *cfg = qt_model_get_config(m);
    int32_t bos = tok ? qt_tokenizer_bos(tok) : cfg->bos_id;
    if (tok && a->prompt && *a->prompt) {
        qt_status st = qt_tokenizer_encode(tok, a->prompt, strlen(a->prompt), bos >= 0, ids, n_ids);
        if (st != QT_OK) {
            qt_cli_error("cannot encode the prompt (%s)", qt_status_str(st));
            return qt_cli_exit_for(st);
        }
    } else {
        *ids = qt_malloc(sizeof **ids);
        if (!*ids) {
            qt_cli_error("out of memory");
            return QT_EXIT_FAIL;
        }
        (*ids)[0] = bos >= 0 ? bos : 0;
        *n_ids = 1;
    }
    if (*n_ids + (size_t)a->n_gen > qt_model_n_ctx(m)) {
        const size_t cap = qt_model_max_ctx(m);
        if (cap && qt_model_n_ctx(m) >= cap) /* no larger --ctx would be accepted */
            qt_cli_error("%zu prompt + %ld new tokens exceed the context of %zu, the most this "
                         "model runs (its sliding window; use fewer tokens)",
                         *n_ids, a->n_gen, qt_model_n_ctx(m));
        else
            qt_cli_error("%zu prompt + %ld new tokens exceed the context of %zu (use --ctx)",
                         *n_ids, a->n_gen, qt_model_n_ctx(m));
        return QT_EXIT_USAGE;
    }
    return -1;
}

/* Prints token next: its id, or its text piece. */
static void print_token(const gen_args *a, const qt_tokenizer *tok, int32_t next, bool *first_id,
                        bool *at_start)
{
    if (a->ids_only) {
        printf("%s%d", *first_id ? "" : " ", next);
        *first_id = false;
        return;
    }
    const char *piece;
    size_t len;
    if (qt_tokenizer_piece(tok, next, *at_start, &piece, &len) == QT_OK && len) {
        fwrite(piece, 1, len, stdout);
        *at_start = false;
    }
}

/* The generation: the prompt echoed, evaluated, then one token at a time
 * sampled, printed and evaluated; speed on stderr. An exit code. */
static int generate(const gen_args *a, qt_model *m, const qt_tokenizer *tok, const int32_t *ids,
                    size_t n_ids)
{
    const qt_model_config *cfg = qt_model_get_config(m);
    const int32_t eos = tok ? qt_tokenizer_eos(tok) : cfg->eos_id;
    const bool has_prompt = a->prompt && *a->prompt;
    int rc = QT_EXIT_OK;
    float *logits = qt_malloc(cfg->vocab_size * sizeof *logits);
    if (!logits) {
        qt_cli_error("out of memory");
        return QT_EXIT_FAIL;
    }
    /* the prompt, as ids or as its text */
    if (has_prompt && a->ids_only)
        for (size_t i = 0; i < n_ids; i++) printf("%s%d", i ? " " : "", ids[i]);
    else if (has_prompt)
        fputs(a->prompt, stdout);
    fflush(stdout);
    double t0 = qt_now();
    qt_status st = qt_model_eval_last(m, ids, n_ids, 0, logits);
    double t1 = qt_now();
    uint64_t rng = (uint64_t)a->seed * 0x9E3779B97F4A7C15ull + 1;
    size_t pos = n_ids, made = 0;
    bool first_id = !has_prompt, at_start = !has_prompt || a->ids_only;
    /* one token at a time */
    for (long i = 0; st == QT_OK && i < a->n_gen; i++) {
        if (!all_finite(logits, cfg->vocab_size)) { /* NaN/Inf weights: no text to make */
            fflush(stdout);
            qt_cli_error("model '%s': the logits at position %zu are not finite (NaN or Inf in "
                         "the weights? see qtool inspect --stats)",
                         a->model_path, pos);
            rc = QT_EXIT_USAGE;
            break;
        }
        int32_t next = qt_sample(logits, cfg->vocab_size, (float)a->temp, &rng);
        made++;
        if (a->stop && next == eos) break;
        print_token(a, tok, next, &first_id, &at_start);
        fflush(stdout);
        if (i + 1 == a->n_gen) break;
        st = qt_model_eval_last(m, &next, 1, pos++, logits);
    }
    qt_free(logits);
    if (st != QT_OK) {
        qt_cli_error("%s", qt_model_errmsg(m));
        return qt_cli_exit_for(st);
    }
    if (rc != QT_EXIT_OK) return rc;
    printf("\n"); /* as llama2.c ends its output */
    fflush(stdout);
    double t2 = qt_now();
    fprintf(stderr, "qtool: prompt %zu tokens in %.3f s (%.1f tokens/s), generated %zu tokens in "
            "%.3f s (%.1f tokens/s)\n",
            n_ids, t1 - t0, t1 > t0 ? (double)n_ids / (t1 - t0) : 0.0, made, t2 - t1,
            t2 > t1 ? (double)made / (t2 - t1) : 0.0);
    return QT_EXIT_OK;
}

int cmd_generate(int argc, char **argv)
{
    gen_args a = {.n_gen = 256, .seed = 42, .bench_pp = 512, .bench_tg = 128, .stop = true};
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0) return rc;
    qt_model *m = NULL;
    qt_vocab *vocab = NULL;
    qt_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    /* the model, with a context large enough for --bench */
    qt_model_opts opts = {0};
    opts.n_ctx = (size_t)a.ctx;
    if (a.bench && (size_t)a.ctx < (size_t)(a.bench_pp + a.bench_tg))
        opts.n_ctx = (size_t)(a.bench_pp + a.bench_tg);
    double t_load = qt_now();
    if ((rc = qt_cli_open_model(a.model_arg, a.adapter, &opts, false, a.model_path,
                                sizeof a.model_path, &m)) != QT_EXIT_OK)
        return rc;
    rc = -1; /* the steps below go on while rc < 0 */
    char desc[512];
    qt_model_describe(m, desc, sizeof desc);
    fprintf(stderr, "qtool: %s\nqtool: loaded in %.3f s, isa %s\n", desc, qt_now() - t_load,
            qt_isa_name(qt_isa_active()));
    /* --bench, or tokenizer, prompt and generation */
    if (a.bench) rc = run_bench(m, &a);
    if (rc < 0) rc = load_tokenizer(&a, m, &vocab, &tok);
    if (rc < 0) rc = prompt_ids(&a, tok, m, &ids, &n_ids);
    if (rc < 0) rc = generate(&a, m, tok, ids, n_ids);
    if (qt_cli_input_changed()) rc = QT_EXIT_FAIL; /* the model was cut while read */
    qt_free(ids);
    qt_tokenizer_free(tok);
    qt_vocab_free(vocab);
    qt_model_free(m);
    return rc;
}
