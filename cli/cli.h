/*
 * cli/cli.h: the qtool subcommands and the helpers they share.
 *
 * Adding a command (the checklist, as git's builtin.h keeps it):
 *   1. write cli/cmd_<name>.c with `int cmd_<name>(int argc, char **argv)`,
 *      parsing its own options with getopt_long and printing usage on -h;
 *   2. declare it below;
 *   3. add its row to `commands[]` in cli/qtool.c (name, function, summary);
 *   4. add a test in tests/cli/ and its section in README.md.
 * The Makefile picks up every .c file in cli/ by itself.
 *
 * Exit codes: 0 success, 1 runtime failure (I/O, out of memory, a check
 * that failed), 2 usage error or bad input.
 */
#ifndef QT_CLI_H
#define QT_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/common.h"

enum { QT_EXIT_OK = 0, QT_EXIT_FAIL = 1, QT_EXIT_USAGE = 2 };

int cmd_help(int argc, char **argv);
int cmd_version(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_dequant(int argc, char **argv);
/* `qtool convert ... --format gguf` (cli/cmd_convert_gguf.c), and whether
 * convert's arguments ask for it (--format gguf, or OUT ending in .gguf). */
int cmd_convert_gguf(int argc, char **argv);
int qt_cli_convert_is_gguf(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_bench_ppl(int argc, char **argv); /* `qtool bench ppl`, a row of cmd_bench.c's table */
int cmd_generate(int argc, char **argv);
int cmd_batch_plan(int argc, char **argv);
int cmd_validate(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_merge(int argc, char **argv);

/* Prints "qtool: error: <msg>" to stderr. */
void qt_cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The exit code for a library status: QT_ERR_IO / NOMEM -> 1, else 2. */
int qt_cli_exit_for(qt_status st);
/* An input named on the command line must exist: prints "qtool: error:
 * <what> '<path>': No such file or directory" and returns QT_EXIT_USAGE
 * when it does not (a missing input is a usage error for every command);
 * QT_EXIT_OK otherwise (other errors are left to the reader). */
int qt_cli_need_input(const char *path, const char *what);
/* Whether a mapped input shrank while it was read (common/mapguard.h):
 * then prints "qtool: error: input '<file>' changed while it was read"
 * and returns true (the caller exits 1 and discards what it computed). */
bool qt_cli_input_changed(void);
/* Sets the OpenMP thread count (threads > 0: --threads; 0: all cores) and
 * starts the team now, before any work: threads that cannot be created
 * (ulimit -u, ulimit -v) are found with a pthread probe first, and the run
 * goes on with as many as could be created, saying so on stderr, rather
 * than libgomp ending the process later with only its own message. */
void qt_cli_setup_threads(long threads);
/* A report file named by option opt (--report, --json, --html, --plot...),
 * checked before any work: not empty, not a folder, in an existing folder
 * this process may write. Prints the error (the file, the folder, errno)
 * and returns QT_EXIT_USAGE when it cannot be written; QT_EXIT_OK (also for
 * path NULL). */
int qt_cli_check_output(const char *opt, const char *path);
/* Writes data[0..n) to path atomically: a temporary file in the same folder,
 * fsync'd, renamed over path, so a failure (full disk) leaves an older file
 * whole and no partial one. Prints the error (file and errno) and returns
 * QT_EXIT_FAIL on failure, QT_EXIT_OK otherwise. */
int qt_cli_write_file(const char *path, const char *data, size_t n);
/* Parses a non-negative integer option; false (and an error message) if bad. */
int qt_cli_parse_int(const char *opt, const char *s, long lo, long hi, long *out);
/* Applies QT_ISA (and --isa) to the dispatch; prints an error and returns
 * false when it names an ISA this CPU lacks. */
int qt_cli_setup_isa(const char *isa_opt);
/* Parses a size: bytes, or with a K/M/G suffix (powers of 1000) and an
 * optional B ("2G", "500M"); what --max-shard-size takes. 0 when bad. */
int qt_cli_parse_size(const char *s, uint64_t *out);
/* The number of threads a run will use (OpenMP's, 1 without OpenMP). */
int qt_cli_threads(void);
/* Prints "needs: peak memory ... ; output ..." for a conversion plan
 * (cli/needs.c, from convert/estimate.c). */
struct qt_conv;
void qt_cli_print_needs(const struct qt_conv *cv);

/* --match cpu|cuda and --rcp-table FILE (convert, verify): for "cuda" loads
 * the GPU reciprocal table (FILE, else $QTOOL_RCP_TABLE) into *table
 * (caller frees with qt_free); "cpu" (or NULL) leaves it NULL. Returns the
 * exit code: QT_EXIT_OK, or after an error message QT_EXIT_USAGE (bad value,
 * no table given, not the measured table) / QT_EXIT_FAIL (unreadable). */
int qt_cli_match_load(const char *match, const char *rcp_path, uint8_t **table);
#define QT_CLI_MATCH_HELP                                                                 \
    "  --match cpu|cuda     whose bitsandbytes bytes to reproduce: its CPU path (default)\n" \
    "                       or its CUDA path as an NVIDIA GPU runs it (docs/FORMATS.md)\n"  \
    "  --rcp-table FILE     cuda: the measured GPU reciprocal table (rcp-sm90-2bit.zst;\n"  \
    "                       default $QTOOL_RCP_TABLE)\n"

/* Opens a model argument: "MODEL", or "MODEL+ADAPTER" (a PEFT LoRA adapter
 * folder run unmerged), or MODEL with adapter_opt (--adapter; NULL = none;
 * both at once is a usage error). model_path (n bytes) receives MODEL.
 * Prints errors, the adapter's warnings and (unless quiet) a summary line
 * to stderr. *out: free with qt_model_free. Returns an exit code. */
struct qt_model;
struct qt_model_opts;
int qt_cli_open_model(const char *arg, const char *adapter_opt, const struct qt_model_opts *opts,
                      bool quiet, char *model_path, size_t n, struct qt_model **out);

/* Reads a whole file into a new buffer (NUL-terminated; qt_free it). On
 * failure prints the error, sets *rc (2 when missing, else 1) and returns
 * NULL (cli/cmd_bench_ppl.c). */
char *qt_cli_read_file(const char *path, size_t *n, int *rc);
/* The result of a perplexity comparison: the table on stdout (unless json
 * is "-"), JSON to json ("-" = stdout; may be NULL), SVG to plot (may be
 * NULL). Returns an exit code (cli/cmd_bench_ppl.c). */
struct qt_ppl_result;
int qt_cli_ppl_report(const struct qt_ppl_result *r, const char *text_path, const char *json,
                      const char *plot);

/* `qtool merge --eval` (cli/merge_eval.c): PPL and KL of the merged OUT
 * and of the alternatives (onto quantized / original x the scheme / bf16)
 * against the model as trained (the quantized base + the adapter). */
typedef struct qt_cli_merge_eval {
    const char *text;      /* --eval TEXT */
    const char *quantized; /* --eval-quantized: the base the adapter trained on (default:
                              BASE with --onto quantized) */
    const char *original;  /* --eval-original: the original checkpoint (default: BASE with
                              --onto original; without either, no "onto original" rows) */
    const char *json, *plot; /* --eval-json, --eval-plot; may be NULL */
    size_t ctx, chunks;    /* --ctx, --chunks; 0 = bench ppl's defaults */
} qt_cli_merge_eval_opts;
struct qt_merge_opts;
/* Returns an exit code; the temporary merges are removed. */
int qt_cli_merge_eval(const struct qt_merge_opts *o, const qt_cli_merge_eval_opts *e, bool quiet);

/* Calibration options shared by `convert --calib` and `validate`
 * (cli/cmd_validate.c). Option codes for getopt_long's val. */
enum { QT_CLI_CALIB_TEXT = 1024, QT_CLI_CALIB_TOKENS, QT_CLI_CALIB_CACHE, QT_CLI_CALIB_NOCACHE,
       QT_CLI_CALIB_MAXERR, QT_CLI_CALIB_HTML };
/* Their rows in a getopt_long table (one home for the names). */
#define QT_CLI_CALIB_OPTIONS                                              \
    {"calib", required_argument, 0, QT_CLI_CALIB_TEXT},                   \
        {"calib-tokens", required_argument, 0, QT_CLI_CALIB_TOKENS},      \
        {"calib-cache", required_argument, 0, QT_CLI_CALIB_CACHE},        \
        {"no-calib-cache", no_argument, 0, QT_CLI_CALIB_NOCACHE},         \
        {"max-output-error", required_argument, 0, QT_CLI_CALIB_MAXERR},  \
        {"html", required_argument, 0, QT_CLI_CALIB_HTML}
typedef struct qt_cli_calib {
    const char *text;  /* --calib */
    size_t rows;       /* --calib-tokens, 0 = default */
    const char *cache; /* --calib-cache */
    bool no_cache;     /* --no-calib-cache */
    double max_error;  /* --max-output-error, 0 = per-scheme defaults */
    const char *html;  /* --html */
    const char *adapter; /* validate --adapter: captured with this LoRA adapter; NULL = none */
} qt_cli_calib;
struct qt_calib_set;
struct qt_calib_report;
/* Applies a calibration option: 1 when opt was one, 0 when not, -1 on a bad
 * value (message printed). */
int qt_cli_calib_option(qt_cli_calib *o, int opt, const char *arg);
/* Builds or reads (cache) the calibration set of model and fills the
 * report's calibration fields; returns an exit code (message printed). */
int qt_cli_calib_load(const char *model, const qt_cli_calib *o, struct qt_calib_set **set,
                      struct qt_calib_report *rep, bool quiet);
/* Writes the JSON (json_path, may be NULL) and HTML (o->html) reports. */
int qt_cli_calib_write(const qt_cli_calib *o, const char *json_path,
                       const struct qt_calib_report *rep);
/* The per-tensor table (all) and the summary line; one error line per failure. */
void qt_cli_calib_print(FILE *f, const struct qt_calib_report *r, bool all);
void qt_cli_calib_print_failures(const struct qt_calib_report *r);

#endif
