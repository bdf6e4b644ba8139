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
int cmd_bench(int argc, char **argv);
int cmd_bench_ppl(int argc, char **argv); /* `qtool bench ppl`, a row of cmd_bench.c's table */
int cmd_generate(int argc, char **argv);
int cmd_batch_plan(int argc, char **argv);
int cmd_validate(int argc, char **argv);
int cmd_verify(int argc, char **argv);

/* Prints "qtool: error: <msg>" to stderr. */
void qt_cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The exit code for a library status: QT_ERR_IO / NOMEM -> 1, else 2. */
int qt_cli_exit_for(qt_status st);
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

/* Calibration options shared by `convert --calib` and `validate`
 * (cli/cmd_validate.c). Option codes for getopt_long's val. */
enum { QT_CLI_CALIB_TEXT = 1024, QT_CLI_CALIB_TOKENS, QT_CLI_CALIB_CACHE, QT_CLI_CALIB_NOCACHE,
       QT_CLI_CALIB_MAXERR, QT_CLI_CALIB_HTML };
typedef struct qt_cli_calib {
    const char *text;  /* --calib */
    size_t rows;       /* --calib-tokens, 0 = default */
    const char *cache; /* --calib-cache */
    bool no_cache;     /* --no-calib-cache */
    double max_error;  /* --max-output-error, 0 = per-scheme defaults */
    const char *html;  /* --html */
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
