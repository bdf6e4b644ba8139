/* formats/input_file.c: open an input file without blocking and check its type and size. */
#include "formats/input_file.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

const char *qt_file_kind(mode_t mode)
{
    if (S_ISDIR(mode)) return "a folder";
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    if (S_ISLNK(mode)) return "a symlink";
    return "a regular file";
}

/* Human-readable size for the refusal message: "256 MiB", "2 GiB", "4096 bytes". */
static void size_text(uint64_t n, char *buf, size_t cap)
{
    if (n >= (1u << 30) && n % (1u << 30) == 0) snprintf(buf, cap, "%llu GiB", (unsigned long long)(n >> 30));
    else if (n >= (1u << 20) && n % (1u << 20) == 0) snprintf(buf, cap, "%llu MiB", (unsigned long long)(n >> 20));
    else snprintf(buf, cap, "%llu bytes", (unsigned long long)n);
}

qt_status qt_input_open(const char *path, int extra_flags, uint64_t max_bytes, int *fd,
                        struct stat *sb, char *errmsg)
{
    struct stat tmp;
    if (!sb) sb = &tmp;
    *fd = -1;
    /* non-blocking open: a FIFO without a writer must not hang us */
    int f = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | extra_flags);
    if (f < 0) {
        if (errno == ELOOP && (extra_flags & O_NOFOLLOW))
            return qt_set_err(errmsg, QT_ERR_FORMAT, "'%s' is a symlink; refusing to follow it",
                              path);
        return qt_set_err(errmsg, QT_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    }
    /* the type and size before any read */
    if (fstat(f, sb) != 0) {
        int e = errno;
        close(f);
        return qt_set_err(errmsg, QT_ERR_IO, "cannot stat '%s': %s", path, strerror(e));
    }
    if (!S_ISREG(sb->st_mode)) {
        close(f);
        return qt_set_err(errmsg, QT_ERR_FORMAT, "'%s' is %s, not a regular file", path,
                          qt_file_kind(sb->st_mode));
    }
    if ((uint64_t)sb->st_size > max_bytes) {
        char lim[32];
        size_text(max_bytes, lim, sizeof lim);
        close(f);
        return qt_set_err(errmsg, QT_ERR_FORMAT, "'%s' is %lld bytes, more than the %s allowed",
                          path, (long long)sb->st_size, lim);
    }
    /* ordinary blocking reads from here on */
    int fl = fcntl(f, F_GETFL);
    if (fl >= 0) fcntl(f, F_SETFL, fl & ~O_NONBLOCK);
    *fd = f;
    return QT_OK;
}

qt_status qt_input_fopen(const char *path, uint64_t max_bytes, FILE **f, struct stat *sb,
                         char *errmsg)
{
    int fd;
    *f = NULL;
    qt_status st = qt_input_open(path, 0, max_bytes, &fd, sb, errmsg);
    if (st != QT_OK) return st;
    *f = fdopen(fd, "rb");
    if (!*f) {
        int e = errno;
        close(fd);
        return qt_set_err(errmsg, QT_ERR_IO, "cannot open '%s': %s", path, strerror(e));
    }
    return QT_OK;
}
