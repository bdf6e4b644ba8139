/* formats/fsutil.c: path joining, whole-file I/O, tree removal, folder fsync. */
#include "formats/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/input_file.h"

bool qt_path_is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

bool qt_path_is_file(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

bool qt_str_ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

bool qt_file_is_gguf(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    char m[4] = {0};
    size_t got = fread(m, 1, 4, f);
    fclose(f);
    return got == 4 && memcmp(m, "GGUF", 4) == 0;
}

bool qt_path_join(char *dst, size_t n, const char *a, const char *b)
{
    int r = snprintf(dst, n, "%s/%s", a, b);
    return r >= 0 && (size_t)r < n;
}

qt_status qt_file_write(const char *path, const void *data, size_t n, char *errmsg)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return qt_set_err(errmsg, QT_ERR_IO, "cannot create '%s': %s", path, strerror(errno));
    const char *p = data;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = w < 0 ? errno : ENOSPC;
            close(fd);
            return qt_set_err(errmsg, QT_ERR_IO, "cannot write '%s': %s", path, strerror(e));
        }
        p += w;
        n -= (size_t)w;
    }
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        return qt_set_err(errmsg, QT_ERR_IO, "cannot write '%s': %s", path, strerror(e));
    }
    if (close(fd) != 0)
        return qt_set_err(errmsg, QT_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    return QT_OK;
}

qt_status qt_file_read(const char *path, char **buf, size_t *n, size_t max, char *errmsg)
{
    *buf = NULL;
    FILE *f;
    struct stat sb;
    qt_status st = qt_input_fopen(path, max, &f, &sb, errmsg);
    if (st != QT_OK) return st;
    *buf = qt_malloc((size_t)sb.st_size + 1);
    if (!*buf) {
        fclose(f);
        return qt_set_err(errmsg, QT_ERR_NOMEM, "'%s': out of memory", path);
    }
    *n = fread(*buf, 1, (size_t)sb.st_size, f);
    int bad = ferror(f) || *n != (size_t)sb.st_size;
    fclose(f);
    if (bad) {
        qt_free(*buf);
        *buf = NULL;
        return qt_set_err(errmsg, QT_ERR_IO, "cannot read '%s'", path);
    }
    (*buf)[*n] = 0;
    return QT_OK;
}

void qt_tree_remove(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char p[PATH_MAX];
            if (!qt_path_join(p, sizeof p, path, e->d_name)) continue;
            struct stat sb;
            if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) qt_tree_remove(p);
            else unlink(p);
        }
        closedir(d);
    }
    rmdir(path);
}

void qt_dir_fsync(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}
