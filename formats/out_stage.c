/* formats/out_stage.c: the staging folder of an output (see out_stage.h). */
#include "formats/out_stage.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/fsutil.h"

/* Removes stale staging folders of earlier runs for the same OUT
 * (`<parent>/.<base>.qtool-tmp.<pid>`) whose process is gone (a run killed
 * with SIGKILL cannot clean up after itself). Folders of live processes
 * are left alone. */
static void remove_stale(const char *parent, const char *base)
{
    char prefix[PATH_MAX];
    int r = snprintf(prefix, sizeof prefix, ".%s.qtool-tmp.", base);
    if (r <= 0 || (size_t)r >= sizeof prefix) return;
    size_t pl = (size_t)r;
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

qt_status qt_out_stage_begin(qt_out_stage *s, const char *out, bool replace, char *errmsg)
{
    qt_status st = QT_OK;
    char tmp[PATH_MAX], base[PATH_MAX];
    memset(s, 0, sizeof *s);
    s->replace = replace;
    /* the final path, its folder and its base name */
    QT_CHECK(strlen(out) < sizeof s->out, QT_ERR_ARG, "output path too long");
    snprintf(s->out, sizeof s->out, "%s", out);
    snprintf(tmp, sizeof tmp, "%s", out);
    snprintf(s->parent, sizeof s->parent, "%s", dirname(tmp));
    snprintf(tmp, sizeof tmp, "%s", out);
    snprintf(base, sizeof base, "%s", basename(tmp));
    remove_stale(s->parent, base);
    /* the staging folder beside OUT */
    int r = snprintf(s->dir, sizeof s->dir, "%s/.%s.qtool-tmp.%ld", s->parent, base,
                     (long)getpid());
    QT_CHECK(r > 0 && (size_t)r < sizeof s->dir, QT_ERR_ARG, "output path too long");
    if (mkdir(s->dir, 0755) != 0) {
        st = qt_set_err(errmsg, QT_ERR_IO, "cannot create '%s': %s", s->dir, strerror(errno));
        s->dir[0] = 0;
    }
fail:
    if (st != QT_OK) s->dir[0] = 0;
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
