/* cli/util.c: messages, exit codes and option helpers shared by commands. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "cli/cli.h"
#include "formats/cuda_rcp.h"
#include "common/cpu.h"
#include "common/mapguard.h"
#include "formats/fsutil.h"

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

int qt_cli_need_input(const char *path, const char *what)
{
    struct stat sb;
    if (stat(path, &sb) == 0 || (errno != ENOENT && errno != ENOTDIR)) return QT_EXIT_OK;
    qt_cli_error("%s '%s': %s", what, path, strerror(errno));
    return QT_EXIT_USAGE;
}

bool qt_cli_input_changed(void)
{
    const char *name = NULL;
    if (!qt_mapguard_tripped(&name)) return false;
    qt_cli_error("input '%s' changed while it was read (truncated or rewritten by another "
                 "process)",
                 name ? name : "?");
    return true;
}

#ifdef _OPENMP
/* The body of a probe thread: wait until every probe thread exists (the
 * gate is held while they are created), so that they count together. */
static pthread_mutex_t probe_gate = PTHREAD_MUTEX_INITIALIZER;
static void *idle_thread(void *arg)
{
    pthread_mutex_lock(&probe_gate);
    pthread_mutex_unlock(&probe_gate);
    return arg;
}

/* How many of want threads (the caller's included) can run at once: creates
 * want - 1 idle threads, then releases them. *err: the errno of the first
 * failed creation, 0 if none. */
static long probe_threads(long want, int *err)
{
    pthread_t *t = qt_calloc((size_t)want, sizeof *t);
    long made = 0;
    *err = t ? 0 : ENOMEM;
    pthread_mutex_lock(&probe_gate);
    while (t && made + 1 < want) {
        int e = pthread_create(&t[made], NULL, idle_thread, NULL);
        if (e) {
            *err = e;
            break;
        }
        made++;
    }
    pthread_mutex_unlock(&probe_gate);
    for (long i = 0; i < made; i++) pthread_join(t[i], NULL);
    qt_free(t);
    return made + 1;
}
#endif

void qt_cli_setup_threads(long threads)
{
#ifdef _OPENMP
    long want = threads > 0 ? threads : omp_get_max_threads();
    int err = 0;
    long can = want > 1 ? probe_threads(want, &err) : 1;
    if (can < want)
        fprintf(stderr, "qtool: warning: could start only %ld of %ld threads (%s); running with %ld\n",
                can, want, strerror(err), can);
    omp_set_num_threads((int)can);
    /* the team is created here, so a later parallel region finds it ready */
    int started = 0;
#pragma omp parallel num_threads((int)can)
    {
#pragma omp atomic
        started++;
    }
    (void)started;
#else
    (void)threads;
#endif
}

int qt_cli_check_output(const char *opt, const char *path)
{
    if (!path) return QT_EXIT_OK;
    if (!*path) {
        qt_cli_error("%s: the file name is empty", opt);
        return QT_EXIT_USAGE;
    }
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        qt_cli_error("%s '%s': is a folder", opt, path);
        return QT_EXIT_USAGE;
    }
    /* the folder it goes into: present, a folder, writable */
    char *copy = qt_strdup(path);
    if (!copy) {
        qt_cli_error("out of memory");
        return QT_EXIT_FAIL;
    }
    const char *dir = dirname(copy);
    int rc = QT_EXIT_OK, e = 0;
    if (stat(dir, &sb) != 0) e = errno;
    else if (!S_ISDIR(sb.st_mode)) e = ENOTDIR;
    else if (access(dir, W_OK | X_OK) != 0) e = errno;
    if (e) {
        qt_cli_error("%s '%s': cannot write into the folder '%s': %s", opt, path, dir, strerror(e));
        rc = QT_EXIT_USAGE;
    }
    qt_free(copy);
    return rc;
}

int qt_cli_write_file(const char *path, const char *data, size_t n)
{
    char err[QT_ERRMSG_SIZE], *copy = qt_strdup(path), tmp[PATH_MAX];
    if (!copy) {
        qt_cli_error("out of memory");
        return QT_EXIT_FAIL;
    }
    /* a short temporary name beside path (within NAME_MAX whatever path's length) */
    int k = snprintf(tmp, sizeof tmp, "%s/.qtool-write.%ld.tmp", dirname(copy), (long)getpid());
    qt_free(copy);
    if (k < 0 || (size_t)k >= sizeof tmp) {
        qt_cli_error("cannot write '%s': path too long", path);
        return QT_EXIT_FAIL;
    }
    /* the bytes (fsync'd), then the rename that makes them visible at once */
    if (qt_file_write(tmp, data, n, err) != QT_OK) {
        unlink(tmp);
        qt_cli_error("%s (writing '%s')", err, path);
        return QT_EXIT_FAIL;
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        qt_cli_error("cannot write '%s': %s", path, strerror(e));
        return QT_EXIT_FAIL;
    }
    return QT_EXIT_OK;
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
