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

mode_t qt_current_umask(void)
{
    mode_t um = umask(077);
    umask(um);
    return um;
}

/* The mode of a copy: never more readable than the source (see the header),
 * nor than the user's umask allows. */
static mode_t copy_mode(const struct stat *src, const struct stat *dst)
{
    mode_t m = src->st_mode & 0644 & ~qt_current_umask();
    if (dst->st_gid != src->st_gid) m &= ~(mode_t)0070;
    return m;
}

qt_status qt_limit_mode(const char *dst, const char *src, char *errmsg)
{
    struct stat s, d;
    if (stat(src, &s) != 0)
        return qt_set_err(errmsg, QT_ERR_IO, "cannot stat '%s': %s", src, strerror(errno));
    if (stat(dst, &d) != 0)
        return qt_set_err(errmsg, QT_ERR_IO, "cannot stat '%s': %s", dst, strerror(errno));
    mode_t m = copy_mode(&s, &d);
    if (S_ISDIR(d.st_mode)) /* the owner keeps writing into it */
        m = (0700 | (s.st_mode & 0055 & ~qt_current_umask())) &
            ~(d.st_gid != s.st_gid ? (mode_t)0070 : 0);
    if (chmod(dst, m) != 0)
        return qt_set_err(errmsg, QT_ERR_IO, "cannot set the mode of '%s': %s", dst,
                          strerror(errno));
    return QT_OK;
}

/* Writes all of buf to fd. @return 0, or the errno of the failure. */
static int write_all(int fd, const char *buf, size_t n)
{
    while (n) {
        ssize_t w = write(fd, buf, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return w < 0 ? errno : ENOSPC;
        buf += w;
        n -= (size_t)w;
    }
    return 0;
}

qt_status qt_input_copy(int in_fd, const struct stat *in_sb, const char *src, const char *dst,
                        char *errmsg)
{
    qt_status st = QT_OK;
    enum { CHUNK = 1 << 20 };
    char *buf = qt_malloc(CHUNK);
    /* owner-only until the final mode is set, so no one reads a partial copy */
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    QT_CHECK(buf, QT_ERR_NOMEM, "'%s': out of memory", src);
    QT_CHECK(out >= 0, QT_ERR_IO, "cannot create '%s': %s", dst, strerror(errno));
    /* the bytes, chunk by chunk (memory bounded whatever the size) */
    for (off_t off = 0;;) {
        ssize_t r = pread(in_fd, buf, CHUNK, off);
        if (r < 0 && errno == EINTR) continue;
        QT_CHECK(r >= 0, QT_ERR_IO, "cannot read '%s': %s", src, strerror(errno));
        if (r == 0) break;
        int e = write_all(out, buf, (size_t)r);
        QT_CHECK(e == 0, QT_ERR_IO, "cannot write '%s': %s", dst, strerror(e));
        off += r;
    }
    /* the mode, then durability */
    struct stat osb;
    QT_CHECK(fstat(out, &osb) == 0 && fchmod(out, copy_mode(in_sb, &osb)) == 0, QT_ERR_IO,
             "cannot set the mode of '%s': %s", dst, strerror(errno));
    QT_CHECK(fsync(out) == 0, QT_ERR_IO, "cannot write '%s': %s", dst, strerror(errno));
    int fd = out;
    out = -1;
    QT_CHECK(close(fd) == 0, QT_ERR_IO, "cannot write '%s': %s", dst, strerror(errno));
fail:
    if (out >= 0) close(out);
    qt_free(buf);
    return st;
}
