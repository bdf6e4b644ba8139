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

#include "common/common.h"

enum { QT_EXIT_OK = 0, QT_EXIT_FAIL = 1, QT_EXIT_USAGE = 2 };

int cmd_help(int argc, char **argv);
int cmd_version(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_dequant(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_batch_plan(int argc, char **argv);

/* Prints "qtool: error: <msg>" to stderr. */
void qt_cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The exit code for a library status: QT_ERR_IO / NOMEM -> 1, else 2. */
int qt_cli_exit_for(qt_status st);
/* Parses a non-negative integer option; false (and an error message) if bad. */
int qt_cli_parse_int(const char *opt, const char *s, long lo, long hi, long *out);
/* Applies QT_ISA (and --isa) to the dispatch; prints an error and returns
 * false when it names an ISA this CPU lacks. */
int qt_cli_setup_isa(const char *isa_opt);

#endif
