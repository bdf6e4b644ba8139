/* cli/cmd_convert_gguf.c: `qtool convert IN OUT.gguf --format gguf`
 * (convert/gguf_export.h): options, messages, exit codes. */
#include <getopt.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

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
            "  --force              replace an existing OUT\n"
            "  --allow-nonfinite    quantize tensors that hold NaN or Inf\n"
            "  --follow-symlinks    accept shards that are symlinks leaving IN\n"
            "  --threads N          threads (default: all cores); output bytes do not change\n"
            "  --quiet              no progress bar or summary\n"
            "  --isa ISA            force ref|avx2|avx512\n",
            qt_gguf_scheme_names());
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
                 (strcmp(argv[i], "--scheme") == 0 || strcmp(argv[i], "--gguf-pre") == 0 ||
                  strcmp(argv[i], "--threads") == 0 || strcmp(argv[i], "--isa") == 0))
            i++; /* skip the option's value */
    }
    return fmt > 0;
}

static void print_summary(const qt_gguf_export_opts *o, const qt_gguf_export_summary *s)
{
    fprintf(stderr, "qtool: wrote %s: %zu tensors (%zu quantized, %zu fallbacks), %.2f MB -> "
            "%.2f MB in %.2fs\n", o->out, s->n_tensors, s->n_quantized, s->n_fallback,
            (double)s->bytes_in / 1e6, (double)s->bytes_out / 1e6, s->seconds);
    if (s->n_f16_overflow)
        fprintf(stderr, "qtool: warning: %zu values beyond +-65504 became +-inf in F16\n",
                s->n_f16_overflow);
}

int cmd_convert_gguf(int argc, char **argv)
{
    enum { O_SCHEME = 256, O_PURE, O_PRE, O_DRY, O_FORCE, O_NONFIN, O_FOLLOW, O_THREADS, O_QUIET,
           O_ISA, O_FORMAT };
    static const struct option opts[] = {
        {"format", required_argument, 0, O_FORMAT},   {"scheme", required_argument, 0, O_SCHEME},
        {"pure", no_argument, 0, O_PURE},             {"gguf-pre", required_argument, 0, O_PRE},
        {"dry-run", no_argument, 0, O_DRY},           {"force", no_argument, 0, O_FORCE},
        {"allow-nonfinite", no_argument, 0, O_NONFIN},
        {"follow-symlinks", no_argument, 0, O_FOLLOW},
        {"threads", required_argument, 0, O_THREADS}, {"quiet", no_argument, 0, O_QUIET},
        {"isa", required_argument, 0, O_ISA},         {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    qt_gguf_export_opts o = {.scheme = NULL};
    bool quiet = false;
    long threads = 0;
    const char *isa = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_FORMAT:
            if (strcmp(optarg, "gguf") != 0) {
                qt_cli_error("--format '%s': only gguf takes this path", optarg);
                return QT_EXIT_USAGE;
            }
            break;
        case O_SCHEME: o.scheme = optarg; break;
        case O_PURE: o.pure = true; break;
        case O_PRE: o.pre = optarg; break;
        case O_DRY: o.dry_run = true; break;
        case O_FORCE: o.force = true; break;
        case O_NONFIN: o.allow_nonfinite = true; break;
        case O_FOLLOW: o.follow_symlinks = true; break;
        case O_THREADS:
            if (!qt_cli_parse_int("--threads", optarg, 1, 1024, &threads)) return QT_EXIT_USAGE;
            break;
        case O_QUIET: quiet = true; break;
        case O_ISA: isa = optarg; break;
        case 'h': gguf_usage(stdout); return QT_EXIT_OK;
        default: gguf_usage(stderr); return QT_EXIT_USAGE;
        }
    }
    if (argc - optind != 2 || !o.scheme) {
        qt_cli_error(!o.scheme ? "--scheme is required for GGUF output" : "IN and OUT are required");
        gguf_usage(stderr);
        return QT_EXIT_USAGE;
    }
    if (!qt_cli_setup_isa(isa)) return QT_EXIT_USAGE;
    if (threads) omp_set_num_threads((int)threads);
    o.in = argv[optind];
    o.out = argv[optind + 1];
    o.plan_out = o.dry_run ? stdout : (quiet ? NULL : stderr);
    o.progress = quiet ? NULL : stderr;
    o.cancel = &gguf_cancel;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_gguf_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    char err[QT_ERRMSG_SIZE] = "";
    qt_gguf_export_summary s;
    qt_status st = qt_gguf_export(&o, &s, err);
    if (gguf_cancel) {
        qt_cli_error("interrupted: no output written, temporary file removed");
        return QT_EXIT_FAIL;
    }
    if (st != QT_OK) {
        qt_cli_error("%s", err);
        return st == QT_ERR_NUMERIC ? QT_EXIT_USAGE : qt_cli_exit_for(st);
    }
    if (!quiet && !o.dry_run) print_summary(&o, &s);
    return QT_EXIT_OK;
}
