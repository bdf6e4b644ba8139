/* cli/cmd_verify.c: `qtool verify ORIGINAL QUANTIZED [--match cpu|cuda]`:
 * whether a bitsandbytes checkpoint is exactly what bitsandbytes' CPU or
 * CUDA path writes from ORIGINAL (convert/verify.c does the work). */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "convert/convert.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: qtool verify ORIGINAL QUANTIZED [--match cpu|cuda] [--rcp-table FILE]\n"
               "                    [--quiet]\n\n"
               "Re-derives QUANTIZED (a bitsandbytes NF4/FP4 or LLM.int8 checkpoint, file or\n"
               "folder) from ORIGINAL with the options its tensors record, and reports per\n"
               "tensor whether it is identical (else: differing bytes, first offset).\n"
               "Exit 0 only if every tensor is identical, 1 if any differs.\n\n" QT_CLI_MATCH_HELP
               "  --quiet              print only the tensors that differ and the summary\n");
}

/* One line per tensor (the identical ones unless quiet). */
static void print_tensor(void *ctx, const qt_verify_tensor *t)
{
    bool quiet = *(const bool *)ctx;
    if (t->identical) {
        if (!quiet) printf("%-56s identical\n", t->name);
    } else if (!t->in_derived) {
        printf("%-56s differs: not produced from ORIGINAL\n", t->name);
    } else if (!t->in_quantized) {
        printf("%-56s differs: missing in QUANTIZED\n", t->name);
    } else if (!t->same_layout) {
        printf("%-56s differs: dtype or shape\n", t->name);
    } else {
        printf("%-56s differs: %" PRIu64 " of %" PRIu64 " bytes, first at byte %" PRIu64 "\n",
               t->name, t->n_diff, t->n_bytes, t->first_diff);
    }
}

int cmd_verify(int argc, char **argv)
{
    enum { O_MATCH = 256, O_RCP, O_QUIET };
    static const struct option opts[] = {{"match", required_argument, 0, O_MATCH},
                                         {"rcp-table", required_argument, 0, O_RCP},
                                         {"quiet", no_argument, 0, O_QUIET},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *match = NULL, *rcp_path = NULL;
    bool quiet = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_MATCH: match = optarg; break;
        case O_RCP: rcp_path = optarg; break;
        case O_QUIET: quiet = true; break;
        case 'h': usage(stdout); return QT_EXIT_OK;
        default: usage(stderr); return QT_EXIT_USAGE;
        }
    }
    if (optind != argc - 2) {
        usage(stderr);
        return QT_EXIT_USAGE;
    }
    if (!qt_cli_setup_isa(NULL)) return QT_EXIT_USAGE;
    uint8_t *rcp = NULL;
    int rc = qt_cli_match_load(match, rcp_path, &rcp);
    if (rc != QT_EXIT_OK) return rc;
    char err[QT_ERRMSG_SIZE] = "";
    qt_verify_summary sum;
    qt_status st =
        qt_conv_verify(argv[optind], argv[optind + 1], rcp, print_tensor, &quiet, &sum, err);
    qt_free(rcp);
    if (st != QT_OK) {
        qt_cli_error("%s", err);
        return qt_cli_exit_for(st);
    }
    printf("%s: %zu of %zu tensors identical to bitsandbytes' %s bytes (re-derived with %s)\n",
           argv[optind + 1], sum.n_identical, sum.n_tensors, match && !strcmp(match, "cuda") ? "CUDA" : "CPU", sum.options);
    return sum.n_differ ? QT_EXIT_FAIL : QT_EXIT_OK;
}
