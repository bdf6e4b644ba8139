/* cli/util.c: messages, exit codes and option helpers shared by commands. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "formats/cuda_rcp.h"
#include "common/cpu.h"

void qt_cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("qtool: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int qt_cli_exit_for(qt_status st)
{
    switch (st) {
    case QT_OK: return QT_EXIT_OK;
    case QT_ERR_IO:
    case QT_ERR_NOMEM: return QT_EXIT_FAIL;
    default: return QT_EXIT_USAGE;
    }
}

int qt_cli_parse_int(const char *opt, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        qt_cli_error("option '%s': '%s' is not an integer in [%ld, %ld]", opt, s, lo, hi);
        return 0;
    }
    *out = v;
    return 1;
}

int qt_cli_match_load(const char *match, const char *rcp_path, uint8_t **table)
{
    *table = NULL;
    if (!match || !strcmp(match, "cpu")) {
        if (rcp_path) qt_cli_error("--rcp-table: only with --match cuda");
        return rcp_path ? QT_EXIT_USAGE : QT_EXIT_OK;
    }
    if (strcmp(match, "cuda")) {
        qt_cli_error("--match '%s': not one of cpu, cuda", match);
        return QT_EXIT_USAGE;
    }
    const char *path = rcp_path ? rcp_path : getenv("QTOOL_RCP_TABLE");
    if (!path || !*path) {
        qt_cli_error("--match cuda needs the GPU reciprocal table: --rcp-table FILE or "
                     "QTOOL_RCP_TABLE (e.g. ../shared/data/cuda/%s)",
                     QT_RCP_FILE_NAME);
        return QT_EXIT_USAGE;
    }
    char err[QT_ERRMSG_SIZE] = "";
    qt_status st = qt_cuda_rcp_load(path, table, err);
    if (st != QT_OK) {
        qt_cli_error("%s", err);
        return qt_cli_exit_for(st);
    }
    return QT_EXIT_OK;
}

int qt_cli_setup_isa(const char *isa_opt)
{
    if (isa_opt) {
        qt_isa isa;
        if (qt_isa_parse(isa_opt, &isa) != QT_OK) {
            qt_cli_error("--isa '%s': not one of ref, avx2, avx512, neon", isa_opt);
            return 0;
        }
        if (qt_isa_force(isa) != QT_OK) {
            qt_cli_error("--isa '%s': this CPU (or build) does not support it", isa_opt);
            return 0;
        }
        return 1;
    }
    const char *e = qt_isa_env_error();
    if (e) {
        qt_cli_error("%s", e);
        return 0;
    }
    return 1;
}

int qt_cli_parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !(v > 0)) return false;
    double mul = 1;
    if (*end == 'K' || *end == 'k') mul = 1e3, end++;
    else if (*end == 'M' || *end == 'm') mul = 1e6, end++;
    else if (*end == 'G' || *end == 'g') mul = 1e9, end++;
    if (*end == 'B' || *end == 'b') end++;
    if (*end || v * mul >= 1.8e19) return false;
    *out = (uint64_t)(v * mul);
    return true;
}
