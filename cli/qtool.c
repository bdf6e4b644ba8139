/* cli/qtool.c: `qtool <command>` dispatch (see cli/cli.h for the checklist). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "common/cpu.h"

struct qt_cmd {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
};

static const struct qt_cmd commands[] = {
    {"convert", cmd_convert, "quantize a model into a QLoRA-ready directory (nf4 by default)"},
    {"dequant", cmd_dequant, "write a plain checkpoint from a quantized one"},
    {"inspect", cmd_inspect, "show what is in a model file or directory"},
    {"version", cmd_version, "print qtool's version, build and CPU"},
    {"help", cmd_help, "list commands, or show one command's usage"},
    {"bench", cmd_bench, "benchmarks: perplexity and KL divergence (ppl), kernels, synthetic models"},
    {"generate", cmd_generate, "generate text with a model (greedy by default)"},
    {"validate", cmd_validate, "check a quantized model against the original on calibration data"},
    {"verify", cmd_verify, "check that a bitsandbytes checkpoint is exactly what bitsandbytes writes"},
    {"batch-plan", cmd_batch_plan, "expand a batch manifest into conversion jobs (scripts/qtool-batch)"},
};

static const struct qt_cmd *find_cmd(const char *name)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(commands[i].name, name) == 0) return &commands[i];
    return NULL;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: qtool <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'qtool help <command>' or 'qtool <command> -h' shows a command's options.\n"
               "environment: QT_ISA=ref|avx2|avx512 forces a SIMD path.\n"
               "exit codes: 0 success, 1 runtime failure, 2 usage error or bad input.\n");
}

int cmd_help(int argc, char **argv)
{
    if (argc >= 2) {
        const struct qt_cmd *c = find_cmd(argv[1]);
        if (!c) {
            qt_cli_error("unknown command '%s'", argv[1]);
            return QT_EXIT_USAGE;
        }
        char *av[] = {argv[1], "-h", NULL};
        return c->fn(2, av);
    }
    usage(stdout);
    return QT_EXIT_OK;
}

int cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    const qt_cpu_features *f = qt_cpu_features_get();
    printf("qtool %s\n", QT_VERSION_STRING);
    printf("cpu: %s\nisa: %s (best of:", f->brand[0] ? f->brand : "unknown",
           qt_isa_name(qt_isa_active()));
    for (int i = 0; i < QT_ISA_COUNT; i++)
        if (qt_isa_supported((qt_isa)i)) printf(" %s", qt_isa_name((qt_isa)i));
    printf(")\n");
#ifdef _OPENMP
    printf("openmp: on\n");
#else
    printf("openmp: off\n");
#endif
    return QT_EXIT_OK;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return QT_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) return cmd_help(1, argv);
    if (!strcmp(argv[1], "--version")) return cmd_version(1, argv);
    const struct qt_cmd *c = find_cmd(argv[1]);
    if (!c) {
        qt_cli_error("unknown command '%s' (see 'qtool help')", argv[1]);
        return QT_EXIT_USAGE;
    }
    return c->fn(argc - 1, argv + 1);
}
