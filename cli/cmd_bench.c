/* cli/cmd_bench.c: `qtool bench <what>`: benchmarks. Subcommands live in a
 * small table (kernels now; ppl is added beside it). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "cli/cli.h"
#include "common/cpu.h"
#include "quant/quant.h"

struct bench_sub {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
};

static void kernels_usage(FILE *f)
{
    fprintf(f,
            "usage: qtool bench kernels [options]\n\n"
            "Quantize / dequantize throughput per scheme, ISA, input type (fp32, fp16, bf16)\n"
            "and thread count (1, 2) on synthetic gaussian Llama-7B shapes (4096x4096,\n"
            "11008x4096), next to memcpy of the same size; quantized matmul GFLOP/s\n"
            "(64 tokens) next to fp32. Every result is checked against the scalar _ref\n"
            "kernels first.\n\n"
            "options:\n"
            "  --json            JSON lines (cpu, isa, threads, git describe) instead of a table\n"
            "  --small           1024x1024 only (a quick run)\n"
            "  --reps N          best of N runs (default 3)\n"
            "  --isa ISA         only this ISA (ref, avx2, avx512, neon)\n"
            "  --threads N       only 1 or 2 threads\n"
            "  --src TYPE        only fp32, fp16 or bf16 input\n"
            "  --scheme NAME     only nf4-dq, nf4, fp4, q8, int8, int8-blockwise, q4_0,\n"
            "                    q5_0, q2_k, q3_k, q4_k, q5_k or q6_k\n"
            "  --no-matmul       skip the matmul section\n"
            "  -h, --help        this text\n"
            "environment: QT_GIT_DESCRIBE is recorded in the JSON lines.\n");
}

static int bench_kernels_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'},      {"small", no_argument, NULL, 's'},
        {"reps", required_argument, NULL, 'r'}, {"isa", required_argument, NULL, 'i'},
        {"threads", required_argument, NULL, 't'}, {"src", required_argument, NULL, 'S'},
        {"scheme", required_argument, NULL, 'm'}, {"no-matmul", no_argument, NULL, 'M'},
        {"help", no_argument, NULL, 'h'},      {NULL, 0, NULL, 0},
    };
    qt_bench_kernels_opts o = {0};
    o.isa = -1;
    o.src = -1;
    o.reps = 3;
    long v;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'j': o.json = true; break;
        case 's': o.small = true; break;
        case 'M': o.no_matmul = true; break;
        case 'r':
            if (!qt_cli_parse_int("--reps", optarg, 1, 1000, &v)) return QT_EXIT_USAGE;
            o.reps = (int)v;
            break;
        case 't':
            if (!qt_cli_parse_int("--threads", optarg, 1, 2, &v)) return QT_EXIT_USAGE;
            o.threads = (int)v;
            break;
        case 'i': {
            qt_isa isa;
            if (qt_isa_parse(optarg, &isa) != QT_OK) {
                qt_cli_error("--isa '%s': not one of ref, avx2, avx512, neon", optarg);
                return QT_EXIT_USAGE;
            }
            if (!qt_isa_supported(isa)) {
                qt_cli_error("--isa '%s': this CPU (or build) does not support it", optarg);
                return QT_EXIT_USAGE;
            }
            o.isa = (int)isa;
            break;
        }
        case 'S':
            if (!strcmp(optarg, "fp32")) o.src = QT_SRC_F32;
            else if (!strcmp(optarg, "fp16")) o.src = QT_SRC_F16;
            else if (!strcmp(optarg, "bf16")) o.src = QT_SRC_BF16;
            else {
                qt_cli_error("--src '%s': not one of fp32, fp16, bf16", optarg);
                return QT_EXIT_USAGE;
            }
            break;
        case 'm': o.scheme = optarg; break;
        case 'h': kernels_usage(stdout); return QT_EXIT_OK;
        default: kernels_usage(stderr); return QT_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        qt_cli_error("bench kernels: unexpected argument '%s'", argv[optind]);
        return QT_EXIT_USAGE;
    }
    if (!qt_cli_setup_isa(NULL)) return QT_EXIT_USAGE;
    const char *git = getenv("QT_GIT_DESCRIBE");
    o.git = git && *git ? git : NULL;
    char err[QT_ERRMSG_SIZE] = "";
    qt_status st = qt_bench_kernels(&o, stdout, err);
    if (st != QT_OK) {
        qt_cli_error("bench kernels: %s", err[0] ? err : qt_status_str(st));
        return st == QT_ERR_ARG ? QT_EXIT_USAGE : QT_EXIT_FAIL;
    }
    return QT_EXIT_OK;
}

static int bench_synth_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"hidden", required_argument, NULL, 'H'},  {"intermediate", required_argument, NULL, 'I'},
        {"layers", required_argument, NULL, 'L'},  {"heads", required_argument, NULL, 'A'},
        {"kv-heads", required_argument, NULL, 'K'}, {"vocab", required_argument, NULL, 'V'},
        {"dtype", required_argument, NULL, 'd'},   {"seed", required_argument, NULL, 's'},
        {"max-shard-size", required_argument, NULL, 'z'}, {"force", no_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    qt_bench_synth_opts o = {.hidden = 2048, .intermediate = 5632, .layers = 22, .heads = 32,
                             .kv_heads = 4, .vocab = 32000, .dtype = "bf16", .seed = 1};
    size_t *dims[] = {&o.hidden, &o.intermediate, &o.layers, &o.heads, &o.kv_heads, &o.vocab};
    const char *dnames = "HILAKV";
    long v;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        const char *dp = ch > 0 ? strchr(dnames, ch) : NULL;
        if (dp) {
            if (!qt_cli_parse_int(argv[optind - 1], optarg, 1, 1L << 24, &v)) return QT_EXIT_USAGE;
            *dims[dp - dnames] = (size_t)v;
            continue;
        }
        switch (ch) {
        case 'd': o.dtype = optarg; break;
        case 's':
            if (!qt_cli_parse_int("--seed", optarg, 0, 1L << 62, &v)) return QT_EXIT_USAGE;
            o.seed = (uint64_t)v;
            break;
        case 'z':
            if (!qt_cli_parse_int("--max-shard-size", optarg, 1, 1L << 62, &v)) return QT_EXIT_USAGE;
            o.max_shard_size = (uint64_t)v;
            break;
        case 'f': o.force = true; break;
        case 'h':
            printf("usage: qtool bench synth OUT [--hidden N] [--intermediate N] [--layers N]\n"
                   "         [--heads N] [--kv-heads N] [--vocab N] [--dtype bf16|fp16|fp32]\n"
                   "         [--seed N] [--max-shard-size BYTES] [--force]\n\n"
                   "Writes a SYNTHETIC Llama checkpoint (seeded noise, not a trained model) for\n"
                   "benchmarks; defaults: TinyLlama-1.1B shapes (2048, 5632, 22, 32, 4, 32000),\n"
                   "bf16, seed 1.\n");
            return QT_EXIT_OK;
        default: return QT_EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        qt_cli_error("bench synth: expected one OUT folder");
        return QT_EXIT_USAGE;
    }
    char err[QT_ERRMSG_SIZE] = "";
    uint64_t bytes = 0;
    double t0 = qt_now();
    qt_status st = qt_bench_synth(&o, argv[optind], &bytes, err);
    if (st != QT_OK) {
        qt_cli_error("bench synth: %s", err[0] ? err : qt_status_str(st));
        return st == QT_ERR_ARG ? QT_EXIT_USAGE : QT_EXIT_FAIL;
    }
    fprintf(stderr, "qtool: wrote synthetic model %s: %.2f GB in %.2fs\n", argv[optind],
            (double)bytes / 1e9, qt_now() - t0);
    return QT_EXIT_OK;
}

static int bench_synth_adapter_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"rank", required_argument, NULL, 'r'}, {"alpha", required_argument, NULL, 'a'},
        {"seed", required_argument, NULL, 's'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    long rank = 16, alpha = 16, seed = 1;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'r':
            if (!qt_cli_parse_int("--rank", optarg, 1, 4096, &rank)) return QT_EXIT_USAGE;
            break;
        case 'a':
            if (!qt_cli_parse_int("--alpha", optarg, 1, 1 << 20, &alpha)) return QT_EXIT_USAGE;
            break;
        case 's':
            if (!qt_cli_parse_int("--seed", optarg, 0, 1L << 62, &seed)) return QT_EXIT_USAGE;
            break;
        case 'h':
            printf("usage: qtool bench synth-adapter MODEL OUT [--rank R] [--alpha A] [--seed N]\n\n"
                   "Writes a SYNTHETIC PEFT LoRA adapter (seeded noise) for MODEL: rank R (16)\n"
                   "on every decoder-layer Linear, lora_alpha A (16), for benchmarks of\n"
                   "--adapter and merge.\n");
            return QT_EXIT_OK;
        default: return QT_EXIT_USAGE;
        }
    }
    if (optind != argc - 2) {
        qt_cli_error("bench synth-adapter: expected MODEL and OUT");
        return QT_EXIT_USAGE;
    }
    char err[QT_ERRMSG_SIZE] = "";
    qt_status st = qt_bench_synth_adapter(argv[optind], argv[optind + 1], (size_t)rank,
                                          (double)alpha, (uint64_t)seed, err);
    if (st != QT_OK) {
        qt_cli_error("bench synth-adapter: %s", err[0] ? err : qt_status_str(st));
        return qt_cli_exit_for(st);
    }
    fprintf(stderr, "qtool: wrote synthetic adapter %s (rank %ld)\n", argv[optind + 1], rank);
    return QT_EXIT_OK;
}

static const struct bench_sub subs[] = {
    {"kernels", bench_kernels_main, "kernel throughput: quantize, dequantize, matmul"},
    {"synth", bench_synth_main, "write a synthetic Llama checkpoint (for benchmarks)"},
    {"synth-adapter", bench_synth_adapter_main, "write a synthetic LoRA adapter for a model"},
    {"ppl", cmd_bench_ppl, "perplexity and KL divergence of quantized models vs the original"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: qtool bench <what> [options]\n\n");
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
        fprintf(f, "  %-10s %s\n", subs[i].name, subs[i].summary);
    fprintf(f, "\n'qtool bench <what> -h' shows its options.\n");
}

int cmd_bench(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return QT_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(stdout);
        return QT_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
        if (!strcmp(subs[i].name, argv[1])) return subs[i].fn(argc - 1, argv + 1);
    qt_cli_error("bench: unknown benchmark '%s' (one of: ppl, kernels, synth, synth-adapter)", argv[1]);
    return QT_EXIT_USAGE;
}
