/* formats/out_stage.c: the staging folder of an output (see out_stage.h). */
#include "formats/out_stage.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/sha256.h"
#include "formats/fsutil.h"
#include "formats/input_file.h"

void qt_out_stage_prefix(const char *base, char *buf, size_t n)
{
    /* ".<base>.qtool-tmp." + a pid must stay within NAME_MAX: a long base is
     * cut and followed by 16 hex digits of its sha256, so names stay unique */
    const size_t room = NAME_MAX - 32; /* the pid, the dots and the suffix */
    size_t bl = strlen(base);
    if (bl <= room) {
        snprintf(buf, n, ".%s.qtool-tmp.", base);
        return;
    }
    unsigned char d[32];
    char hex[65];
    qt_sha256(base, bl, d);
    qt_sha256_hex(d, hex);
    snprintf(buf, n, ".%.100s~%.16s.qtool-tmp.", base, hex);
}

/* Removes stale staging folders of earlier runs for the same OUT
 * (`<parent>/<prefix><pid>`) whose process is gone (a run killed
 * with SIGKILL cannot clean up after itself). Folders of live processes
 * are left alone. */
static void remove_stale(const char *parent, const char *base)
{
    char prefix[NAME_MAX + 1];
    qt_out_stage_prefix(base, prefix, sizeof prefix);
    size_t pl = strlen(prefix);
    DIR *d = opendir(parent);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, prefix, pl) != 0) continue;
        const char *ds = e->d_name + pl;
        char *end;
        errno = 0;
        long pid = strtol(ds, &end, 10);
        if (errno || end == ds || *end || pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* alive, or not ours to judge */
        char p[PATH_MAX];
        struct stat sb;
        if (qt_path_join(p, sizeof p, parent, e->d_name) && lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
            qt_tree_remove(p);
    }
    closedir(d);
}

qt_status qt_out_stage_begin(qt_out_stage *s, const char *out, bool replace, const char *mode_of,
                             char *errmsg)
{
    qt_status st = QT_OK;
    char tmp[PATH_MAX], base[PATH_MAX], prefix[NAME_MAX + 1];
    memset(s, 0, sizeof *s);
    s->replace = replace;
    /* the final path, its folder and its base name */
    QT_CHECK(strlen(out) < sizeof s->out, QT_ERR_ARG, "output path too long: '%s'", out);
    snprintf(s->out, sizeof s->out, "%s", out);
    snprintf(tmp, sizeof tmp, "%s", out);
    snprintf(s->parent, sizeof s->parent, "%s", dirname(tmp));
    snprintf(tmp, sizeof tmp, "%s", out);
    snprintf(base, sizeof base, "%s", basename(tmp));
    remove_stale(s->parent, base);
    /* the staging folder beside OUT, its name within NAME_MAX */
    qt_out_stage_prefix(base, prefix, sizeof prefix);
    char dir[PATH_MAX];
    int r = snprintf(dir, sizeof dir, "%s/%s%ld", s->parent, prefix, (long)getpid());
    QT_CHECK(r > 0 && (size_t)r < sizeof dir, QT_ERR_ARG, "output path too long: '%s'", out);
    QT_CHECK(mkdir(dir, 0700) == 0, QT_ERR_IO, "cannot create '%s': %s", dir, strerror(errno));
    memcpy(s->dir, dir, sizeof s->dir); /* ours from now on: removed on failure */
    /* no more readable than the input's folder (OUT is a copy of IN) */
    if (mode_of) {
        QT_TRY(qt_limit_mode(s->dir, mode_of, errmsg));
    } else {
        QT_CHECK(chmod(s->dir, 0755 & ~qt_current_umask()) == 0, QT_ERR_IO,
                 "cannot set the mode of '%s': %s", s->dir, strerror(errno));
    }
fail:
    if (st != QT_OK) qt_out_stage_abort(s);
    return st;
}

qt_status qt_out_stage_commit(qt_out_stage *s, char *errmsg)
{
    qt_dir_fsync(s->dir);
    if (s->replace) {
        if (renameat2(AT_FDCWD, s->dir, AT_FDCWD, s->out, RENAME_EXCHANGE) != 0)
            return qt_set_err(errmsg, QT_ERR_IO, "cannot replace '%s': %s", s->out,
                              strerror(errno));
        qt_tree_remove(s->dir); /* the old OUT now lives there */
    } else if (rename(s->dir, s->out) != 0) {
        if (errno == ENOTEMPTY || errno == EEXIST) /* the losing side of a race for OUT */
            return qt_set_err(errmsg, QT_ERR_IO,
                              "output '%s' was written by another process meanwhile; this "
                              "run's output was discarded",
                              s->out);
        return qt_set_err(errmsg, QT_ERR_IO, "cannot rename '%s' to '%s': %s", s->dir, s->out,
                          strerror(errno));
    }
    s->dir[0] = 0;
    qt_dir_fsync(s->parent);
    return QT_OK;
}

void qt_out_stage_abort(qt_out_stage *s)
{
    if (s->dir[0]) qt_tree_remove(s->dir);
    s->dir[0] = 0;
}
