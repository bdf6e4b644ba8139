/* cli/cmd_generate.c: `qtool generate MODEL`: text generation with the C
 * forward pass (greedy by default), streamed to stdout; speed on stderr.
 * `--bench` measures prompt processing and decoding speed instead. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#ifdef _OPENMP
#include <omp.h>
#endif

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
            "  -j, --threads N       OpenMP threads (default: all)\n"
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

int cmd_generate(int argc, char **argv)
{
    enum { OPT_TOKENIZER = 256, OPT_IDS, OPT_BENCH, OPT_BENCH_PP, OPT_BENCH_TG, OPT_ISA, OPT_NOSTOP,
           OPT_ADAPTER };
    static const struct option longopts[] = {
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
    const char *prompt = NULL, *tok_path = NULL, *isa = NULL, *adapter = NULL;
    long n_gen = 256, seed = 42, threads = 0, ctx = 0, bench_pp = 512, bench_tg = 128;
    double temp = 0.0;
    bool ids_only = false, bench = false, stop = true;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "p:n:t:s:j:c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'p': prompt = optarg; break;
        case 'n':
            if (!qt_cli_parse_int("--tokens", optarg, 0, 1 << 24, &n_gen)) return QT_EXIT_USAGE;
            break;
        case 't': {
            char *end;
            temp = strtod(optarg, &end);
            if (end == optarg || *end || !(temp >= 0.0 && temp <= 100.0)) {
                qt_cli_error("option '--temp': '%s' is not a number in [0, 100]", optarg);
                return QT_EXIT_USAGE;
            }
            break;
        }
        case 's':
            if (!qt_cli_parse_int("--seed", optarg, 0, 0x7fffffffL, &seed)) return QT_EXIT_USAGE;
            break;
        case 'j':
            if (!qt_cli_parse_int("--threads", optarg, 1, 1024, &threads)) return QT_EXIT_USAGE;
            break;
        case 'c':
            if (!qt_cli_parse_int("--ctx", optarg, 1, 1 << 24, &ctx)) return QT_EXIT_USAGE;
            break;
        case OPT_TOKENIZER: tok_path = optarg; break;
        case OPT_IDS: ids_only = true; break;
        case OPT_NOSTOP: stop = false; break;
        case OPT_BENCH: bench = true; break;
        case OPT_BENCH_PP:
            if (!qt_cli_parse_int("--bench-pp", optarg, 1, 1 << 20, &bench_pp)) return QT_EXIT_USAGE;
            break;
        case OPT_BENCH_TG:
            if (!qt_cli_parse_int("--bench-tg", optarg, 0, 1 << 20, &bench_tg)) return QT_EXIT_USAGE;
            break;
        case OPT_ISA: isa = optarg; break;
        case OPT_ADAPTER: adapter = optarg; break;
        case 'h': usage(stdout); return QT_EXIT_OK;
        default: usage(stderr); return QT_EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        qt_cli_error("generate needs exactly one MODEL (see 'qtool generate -h')");
        return QT_EXIT_USAGE;
    }
    char model_path[4096];
    if (!qt_cli_setup_isa(isa)) return QT_EXIT_USAGE;
#ifdef _OPENMP
    if (threads > 0) omp_set_num_threads((int)threads);
#else
    (void)threads;
#endif

    char errmsg[QT_ERRMSG_SIZE] = "";
    int rc = QT_EXIT_OK;
    qt_status st;
    qt_model *m = NULL;
    qt_vocab *vocab = NULL;
    qt_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    float *logits = NULL;
    size_t n_ids = 0;

    qt_model_opts opts = {0};
    opts.n_ctx = (size_t)ctx;
    if (bench && (size_t)ctx < (size_t)(bench_pp + bench_tg)) opts.n_ctx = (size_t)(bench_pp + bench_tg);
    double t_load = qt_now();
    if ((rc = qt_cli_open_model(argv[optind], adapter, &opts, false, model_path,
                                sizeof model_path, &m)) != QT_EXIT_OK)
        return rc;
    char desc[512];
    qt_model_describe(m, desc, sizeof desc);
    fprintf(stderr, "qtool: %s\nqtool: loaded in %.3f s, isa %s\n", desc, qt_now() - t_load,
            qt_isa_name(qt_isa_active()));

    if (bench) {
        qt_model_bench_result r;
        if ((st = qt_model_bench(m, (size_t)bench_pp, (size_t)bench_tg, &r)) != QT_OK) {
            qt_cli_error("bench: %s", qt_model_errmsg(m));
            rc = qt_cli_exit_for(st);
            goto out;
        }
        int nth = 1;
#ifdef _OPENMP
        nth = omp_get_max_threads();
#endif
        printf("model: %s\nthreads: %d\nisa: %s\n", model_path, nth, qt_isa_name(qt_isa_active()));
        printf("prompt processing: %zu tokens in %.3f s: %.1f tokens/s\n", r.n_prompt,
               r.pp_seconds, r.pp_tok_s);
        printf("decoding: %zu tokens in %.3f s: %.1f tokens/s\n", r.n_gen, r.tg_seconds,
               r.tg_tok_s);
        goto out;
    }

    if ((st = qt_model_find_vocab(model_path, tok_path, &vocab, errmsg)) != QT_OK) {
        qt_cli_error("tokenizer: %s", errmsg);
        rc = qt_cli_exit_for(st);
        goto out;
    }
    if (vocab) {
        if ((st = qt_tokenizer_new(vocab, &tok)) != QT_OK) {
            qt_cli_error("tokenizer: %s", qt_status_str(st));
            rc = qt_cli_exit_for(st);
            goto out;
        }
        if (qt_tokenizer_n_tokens(tok) > qt_model_get_config(m)->vocab_size) {
            qt_cli_error("tokenizer has %zu tokens, the model %zu", qt_tokenizer_n_tokens(tok),
                         qt_model_get_config(m)->vocab_size);
            rc = QT_EXIT_USAGE;
            goto out;
        }
    } else {
        if (prompt && *prompt) {
            qt_cli_error("'%s': no tokenizer found for the prompt (use --tokenizer)", model_path);
            rc = QT_EXIT_USAGE;
            goto out;
        }
        if (!ids_only) fprintf(stderr, "qtool: no tokenizer found: printing token ids\n");
        ids_only = true;
    }

    /* prompt tokens: BOS, then the prompt */
    const qt_model_config *cfg = qt_model_get_config(m);
    int32_t bos = tok ? qt_tokenizer_bos(tok) : cfg->bos_id;
    int32_t eos = tok ? qt_tokenizer_eos(tok) : cfg->eos_id;
    if (tok && prompt && *prompt) {
        if ((st = qt_tokenizer_encode(tok, prompt, strlen(prompt), bos >= 0, &ids, &n_ids)) != QT_OK) {
            qt_cli_error("cannot encode the prompt (%s)", qt_status_str(st));
            rc = qt_cli_exit_for(st);
            goto out;
        }
    } else {
        ids = qt_malloc(sizeof *ids);
        if (!ids) {
            qt_cli_error("out of memory");
            rc = QT_EXIT_FAIL;
            goto out;
        }
        ids[0] = bos >= 0 ? bos : 0;
        n_ids = 1;
    }
    if (n_ids + (size_t)n_gen > qt_model_n_ctx(m)) {
        qt_cli_error("%zu prompt + %ld new tokens exceed the context of %zu (use --ctx)", n_ids,
                     n_gen, qt_model_n_ctx(m));
        rc = QT_EXIT_USAGE;
        goto out;
    }
    logits = qt_malloc(cfg->vocab_size * sizeof *logits);
    if (!logits) {
        qt_cli_error("out of memory");
        rc = QT_EXIT_FAIL;
        goto out;
    }

    bool at_start = true;
    if (prompt && *prompt) {
        if (ids_only) {
            for (size_t i = 0; i < n_ids; i++) printf("%s%d", i ? " " : "", ids[i]);
        } else {
            fputs(prompt, stdout);
            at_start = false;
        }
        fflush(stdout);
    }
    double t0 = qt_now();
    if ((st = qt_model_eval_last(m, ids, n_ids, 0, logits)) != QT_OK) {
        qt_cli_error("%s", qt_model_errmsg(m));
        rc = qt_cli_exit_for(st);
        goto out;
    }
    double t1 = qt_now();
    uint64_t rng = (uint64_t)seed * 0x9E3779B97F4A7C15ull + 1;
    size_t pos = n_ids, made = 0;
    bool first_id = !(prompt && *prompt);
    for (long i = 0; i < n_gen; i++) {
        int32_t next = qt_sample(logits, cfg->vocab_size, (float)temp, &rng);
        made++;
        if (stop && next == eos) break;
        if (ids_only) {
            printf("%s%d", first_id ? "" : " ", next);
            first_id = false;
        } else {
            const char *piece;
            size_t len;
            if (qt_tokenizer_piece(tok, next, at_start, &piece, &len) == QT_OK && len) {
                fwrite(piece, 1, len, stdout);
                at_start = false;
            }
        }
        fflush(stdout);
        if (i + 1 == n_gen) break;
        if ((st = qt_model_eval_last(m, &next, 1, pos, logits)) != QT_OK) {
            qt_cli_error("%s", qt_model_errmsg(m));
            rc = qt_cli_exit_for(st);
            goto out;
        }
        pos++;
    }
    printf("\n"); /* as llama2.c ends its output */
    fflush(stdout);
    double t2 = qt_now();
    fprintf(stderr, "qtool: prompt %zu tokens in %.3f s (%.1f tokens/s), generated %zu tokens in "
            "%.3f s (%.1f tokens/s)\n",
            n_ids, t1 - t0, t1 > t0 ? (double)n_ids / (t1 - t0) : 0.0, made, t2 - t1,
            t2 > t1 ? (double)made / (t2 - t1) : 0.0);
out:
    qt_free(logits);
    qt_free(ids);
    qt_tokenizer_free(tok);
    qt_vocab_free(vocab);
    qt_model_free(m);
    return rc;
}
