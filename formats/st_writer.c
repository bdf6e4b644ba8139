/* formats/st_writer.c: the streaming safetensors writer (declared tensors,
 * reference order and padding, temporary file renamed into place). */
#include "formats/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/json.h"

typedef struct ival {
    uint64_t b, e; /* [b, e) bytes written */
} ival;

typedef struct wtensor {
    char *name;                      /* owned */
    qt_dtype dtype;
    size_t n_dims;
    uint64_t shape[QT_ST_MAX_DIMS];  /* (n_dims) */
    uint64_t nbytes;
    uint64_t begin;                  /* in the data buffer, fixed by begin */
    size_t decl;                     /* declaration index */
    ival *iv;                        /* (n_iv) disjoint, sorted, non-adjacent */
    size_t n_iv, cap_iv;
} wtensor;

typedef struct protected_file {
    dev_t dev;
    ino_t ino;
} protected_file;

struct qt_st_writer {
    char *path;         /* owned: final path */
    char *tmp_path;     /* owned: temporary path, set by begin */
    char *dir;          /* owned: folder of path */
    int fd;             /* temporary file, -1 when none */
    bool begun, failed, keep_order;
    wtensor *t;         /* (n) in declaration order */
    size_t n, cap;
    char **meta;        /* (2 * n_meta) key, value, ... owned */
    size_t n_meta, cap_meta;
    protected_file *prot;
    size_t n_prot, cap_prot;
    uint64_t header_len, data_size;
    char errmsg[QT_ERRMSG_SIZE];
};

static bool grow(void **p, size_t *cap, size_t need, size_t elsz)
{
    if (need <= *cap) return true;
    size_t nc = *cap ? *cap : 8, bytes;
    while (nc < need) nc *= 2;
    if (!qt_mul_size(nc, elsz, &bytes)) return false;
    void *q = qt_realloc(*p, bytes);
    if (!q) return false;
    *p = q;
    *cap = nc;
    return true;
}

qt_status qt_st_writer_open(const char *path, qt_st_writer **out, char *errmsg)
{
    qt_status st = QT_OK;
    *out = NULL;
    qt_st_writer *w = NULL;
    QT_CHECK(path && *path, QT_ERR_ARG, "empty output path");
    w = qt_calloc(1, sizeof *w);
    QT_CHECK(w, QT_ERR_NOMEM, "%s: out of memory", path);
    w->fd = -1;
    w->path = qt_strdup(path);
    const char *slash = strrchr(path, '/');
    if (slash) {
        size_t dl = slash == path ? 1 : (size_t)(slash - path);
        w->dir = qt_malloc(dl + 1);
        if (w->dir) {
            memcpy(w->dir, path, dl);
            w->dir[dl] = 0;
        }
    } else {
        w->dir = qt_strdup(".");
    }
    QT_CHECK(w->path && w->dir, QT_ERR_NOMEM, "%s: out of memory", path);
    QT_CHECK(!slash || slash[1], QT_ERR_ARG, "'%s' names a folder, not a file", path);
    *out = w;
    return QT_OK;
fail:
    qt_st_writer_abort(w);
    return st;
}

const char *qt_st_writer_errmsg(const qt_st_writer *w)
{
    return w ? w->errmsg : "";
}

void qt_st_writer_keep_order(qt_st_writer *w, bool keep)
{
    w->keep_order = keep;
}

qt_status qt_st_writer_add_metadata(qt_st_writer *w, const char *key, const char *value)
{
    qt_status st = QT_OK;
    char *errmsg = w->errmsg;
    QT_CHECK(!w->begun, QT_ERR_ARG, "%s: metadata added after the header was written", w->path);
    QT_CHECK(qt_utf8_valid(key, strlen(key)) && qt_utf8_valid(value, strlen(value)), QT_ERR_ARG,
             "%s: metadata '%.100s' is not UTF-8", w->path, key);
    for (size_t i = 0; i < w->n_meta; i++)
        QT_CHECK(strcmp(w->meta[2 * i], key) != 0, QT_ERR_ARG,
                 "%s: duplicate metadata key '%.100s'", w->path, key);
    QT_CHECK(grow((void **)&w->meta, &w->cap_meta, 2 * w->n_meta + 2, sizeof *w->meta),
             QT_ERR_NOMEM, "%s: out of memory", w->path);
    char *k = qt_strdup(key), *v = qt_strdup(value);
    if (!k || !v) {
        qt_free(k);
        qt_free(v);
        QT_CHECK(false, QT_ERR_NOMEM, "%s: out of memory", w->path);
    }
    w->meta[2 * w->n_meta] = k;
    w->meta[2 * w->n_meta + 1] = v;
    w->n_meta++;
    return QT_OK;
fail:
    return st;
}

qt_status qt_st_writer_protect_inode(qt_st_writer *w, dev_t dev, ino_t ino)
{
    qt_status st = QT_OK;
    char *errmsg = w->errmsg;
    QT_CHECK(grow((void **)&w->prot, &w->cap_prot, w->n_prot + 1, sizeof *w->prot), QT_ERR_NOMEM,
             "%s: out of memory", w->path);
    w->prot[w->n_prot].dev = dev;
    w->prot[w->n_prot].ino = ino;
    w->n_prot++;
    return QT_OK;
fail:
    return st;
}

qt_status qt_st_writer_protect_path(qt_st_writer *w, const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return qt_set_err(w->errmsg, QT_ERR_IO, "cannot stat '%s': %s", path, strerror(errno));
    return qt_st_writer_protect_inode(w, sb.st_dev, sb.st_ino);
}

qt_status qt_st_writer_declare(qt_st_writer *w, const char *name, qt_dtype dtype,
                               size_t n_dims, const uint64_t *shape, size_t *index)
{
    qt_status st = QT_OK;
    char *errmsg = w->errmsg;
    QT_CHECK(!w->begun, QT_ERR_ARG, "%s: tensor '%.100s' declared after the header was written",
             w->path, name);
    QT_CHECK(strcmp(name, "__metadata__") != 0, QT_ERR_ARG,
             "%s: a tensor may not be named '__metadata__' (S29)", w->path);
    QT_CHECK(*name && qt_utf8_valid(name, strlen(name)), QT_ERR_ARG,
             "%s: tensor name '%.100s' is empty or not UTF-8", w->path, name);
    QT_CHECK((int)dtype >= 0 && dtype < QT_DTYPE_COUNT, QT_ERR_ARG,
             "%s: tensor '%.100s': unknown dtype %d", w->path, name, (int)dtype);
    QT_CHECK(n_dims <= QT_ST_MAX_DIMS, QT_ERR_ARG, "%s: tensor '%.100s': %zu dimensions, more than %d",
             w->path, name, n_dims, QT_ST_MAX_DIMS);
    uint64_t nel = 1, bits, total;
    for (size_t i = 0; i < n_dims; i++)
        QT_CHECK(qt_mul_u64(nel, shape[i], &nel), QT_ERR_OVERFLOW,
                 "%s: tensor '%.100s': element count overflows", w->path, name);
    QT_CHECK(qt_mul_u64(nel, qt_dtype_bits(dtype), &bits), QT_ERR_OVERFLOW,
             "%s: tensor '%.100s': size overflows", w->path, name);
    QT_CHECK(bits % 8 == 0, QT_ERR_ARG, "%s: tensor '%.100s': %llu elements of %s are not whole bytes",
             w->path, name, (unsigned long long)nel, qt_dtype_name(dtype));
    QT_CHECK(qt_add_u64(w->data_size, bits / 8, &total), QT_ERR_OVERFLOW,
             "%s: total size overflows", w->path);
    QT_CHECK(grow((void **)&w->t, &w->cap, w->n + 1, sizeof *w->t), QT_ERR_NOMEM,
             "%s: out of memory", w->path);
    wtensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    t->name = qt_strdup(name);
    QT_CHECK(t->name, QT_ERR_NOMEM, "%s: out of memory", w->path);
    t->dtype = dtype;
    t->n_dims = n_dims;
    for (size_t i = 0; i < n_dims; i++) t->shape[i] = shape[i];
    t->nbytes = bits / 8;
    t->decl = w->n;
    w->data_size = total;
    if (index) *index = w->n;
    w->n++;
    return QT_OK;
fail:
    return st;
}

uint64_t qt_st_writer_tensor_nbytes(const qt_st_writer *w, size_t index)
{
    return index < w->n ? w->t[index].nbytes : 0;
}

/* ---- header ------------------------------------------------------------ */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    size_t need;
    if (!qt_add_size(b->len, n + 1, &need) || !grow((void **)&b->p, &b->cap, need, 1)) {
        b->oom = true;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_puts(sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

static void sb_u64(sbuf *b, uint64_t v)
{
    char num[24];
    int k = snprintf(num, sizeof num, "%llu", (unsigned long long)v);
    sb_put(b, num, (size_t)k);
}

/* A JSON string literal: quotes, backslashes and control characters
 * escaped (serde_json's choices: \" \\ \b \f \n \r \t, else \u00XX). */
static void sb_json_string(sbuf *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        switch (*p) {
        case '"': sb_put(b, "\\\"", 2); break;
        case '\\': sb_put(b, "\\\\", 2); break;
        case '\b': sb_put(b, "\\b", 2); break;
        case '\f': sb_put(b, "\\f", 2); break;
        case '\n': sb_put(b, "\\n", 2); break;
        case '\r': sb_put(b, "\\r", 2); break;
        case '\t': sb_put(b, "\\t", 2); break;
        default:
            if (*p < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", *p);
                sb_put(b, esc, 6);
            } else {
                sb_put(b, (const char *)p, 1);
            }
        }
    }
    sb_put(b, "\"", 1);
}

static int cmp_rank_name(const void *a, const void *b)
{
    const wtensor *x = *(const wtensor *const *)a, *y = *(const wtensor *const *)b;
    int rx = qt_dtype_rank(x->dtype), ry = qt_dtype_rank(y->dtype);
    if (rx != ry) return rx > ry ? -1 : 1;
    int c = strcmp(x->name, y->name);
    if (c) return c;
    return x->decl < y->decl ? -1 : x->decl > y->decl;
}

static int cmp_name(const void *a, const void *b)
{
    const wtensor *x = *(const wtensor *const *)a, *y = *(const wtensor *const *)b;
    return strcmp(x->name, y->name);
}

static bool is_protected(const qt_st_writer *w, const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0) return false;
    for (size_t i = 0; i < w->n_prot; i++)
        if (w->prot[i].dev == sb.st_dev && w->prot[i].ino == sb.st_ino) return true;
    return false;
}

static qt_status pwrite_all(int fd, const void *buf, size_t n, uint64_t off)
{
    const unsigned char *p = buf;
    while (n) {
        ssize_t k = pwrite(fd, p, n, (off_t)off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            if (k == 0) errno = EIO;
            return QT_ERR_IO;
        }
        p += k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
    return QT_OK;
}

/* Records an I/O failure: removes the temporary file at once. */
static qt_status fail_io(qt_st_writer *w, const char *what, int err)
{
    qt_set_err(w->errmsg, QT_ERR_IO, "cannot %s '%s': %s", what,
               w->tmp_path ? w->tmp_path : w->path, strerror(err));
    if (w->fd >= 0) close(w->fd);
    w->fd = -1;
    if (w->tmp_path) unlink(w->tmp_path);
    w->failed = true;
    return QT_ERR_IO;
}

qt_status qt_st_writer_begin(qt_st_writer *w)
{
    qt_status st = QT_OK;
    char *errmsg = w->errmsg;
    wtensor **order = NULL;
    sbuf h = {0};
    if (w->begun) return w->failed ? QT_ERR_IO : QT_OK;
    w->begun = true;
    order = qt_malloc((w->n ? w->n : 1) * sizeof *order);
    QT_CHECK(order, QT_ERR_NOMEM, "%s: out of memory", w->path);
    for (size_t i = 0; i < w->n; i++) order[i] = &w->t[i];
    qsort(order, w->n, sizeof *order, cmp_name);
    for (size_t i = 1; i < w->n; i++)
        QT_CHECK(strcmp(order[i - 1]->name, order[i]->name) != 0, QT_ERR_ARG,
                 "%s: tensor '%.100s' declared twice (S8)", w->path, order[i]->name);
    QT_CHECK(!is_protected(w, w->path), QT_ERR_ARG,
             "refusing to write '%s': it is one of the input files", w->path);
    if (w->keep_order)
        for (size_t i = 0; i < w->n; i++) order[i] = &w->t[i];
    else
        qsort(order, w->n, sizeof *order, cmp_rank_name);

    /* offsets and the header */
    uint64_t off = 0;
    sb_puts(&h, "{");
    bool first = true;
    if (w->n_meta) {
        sb_puts(&h, "\"__metadata__\":{");
        for (size_t i = 0; i < w->n_meta; i++) {
            if (i) sb_puts(&h, ",");
            sb_json_string(&h, w->meta[2 * i]);
            sb_puts(&h, ":");
            sb_json_string(&h, w->meta[2 * i + 1]);
        }
        sb_puts(&h, "}");
        first = false;
    }
    for (size_t i = 0; i < w->n; i++) {
        wtensor *t = order[i];
        t->begin = off;
        off += t->nbytes; /* total checked in declare */
        if (!first) sb_puts(&h, ",");
        first = false;
        sb_json_string(&h, t->name);
        sb_puts(&h, ":{\"dtype\":\"");
        sb_puts(&h, qt_dtype_name(t->dtype));
        sb_puts(&h, "\",\"shape\":[");
        for (size_t d = 0; d < t->n_dims; d++) {
            if (d) sb_puts(&h, ",");
            sb_u64(&h, t->shape[d]);
        }
        sb_puts(&h, "],\"data_offsets\":[");
        sb_u64(&h, t->begin);
        sb_puts(&h, ",");
        sb_u64(&h, t->begin + t->nbytes);
        sb_puts(&h, "]}");
    }
    sb_puts(&h, "}");
    while (!h.oom && h.len % 8) sb_puts(&h, " ");
    QT_CHECK(!h.oom, QT_ERR_NOMEM, "%s: out of memory for the header", w->path);
    QT_CHECK(h.len <= QT_ST_MAX_HEADER, QT_ERR_ARG, "%s: header of %zu bytes exceeds the %u-byte cap",
             w->path, h.len, QT_ST_MAX_HEADER);
    w->header_len = h.len;

    /* the temporary file, beside the final one */
    const char *base = strrchr(w->path, '/');
    base = base ? base + 1 : w->path;
    size_t tl = strlen(w->dir) + strlen(base) + 48;
    w->tmp_path = qt_malloc(tl);
    QT_CHECK(w->tmp_path, QT_ERR_NOMEM, "%s: out of memory", w->path);
    snprintf(w->tmp_path, tl, "%s/.%s.tmp.%ld", w->dir, base, (long)getpid());
    w->fd = open(w->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        int e = errno;
        qt_set_err(errmsg, QT_ERR_IO, "cannot create '%s': %s", w->tmp_path, strerror(e));
        qt_free(w->tmp_path); /* not ours: never unlink it */
        w->tmp_path = NULL;
        w->failed = true;
        st = QT_ERR_IO;
        goto fail;
    }
    uint64_t total = 8 + h.len + w->data_size;
    if (total > 8 + h.len && fallocate(w->fd, 0, 0, (off_t)total) != 0) {
        int e = errno;
        if (e == ENOSPC || e == EFBIG || e == EDQUOT) {
            st = fail_io(w, "reserve space for", e);
            goto fail;
        }
        if (ftruncate(w->fd, (off_t)total) != 0) {
            st = fail_io(w, "size", errno);
            goto fail;
        }
    }
    unsigned char len8[8];
    qt_store_le64(len8, h.len);
    if (pwrite_all(w->fd, len8, 8, 0) != QT_OK || pwrite_all(w->fd, h.p, h.len, 8) != QT_OK) {
        st = fail_io(w, "write", errno);
        goto fail;
    }
    qt_free(order);
    qt_free(h.p);
    return QT_OK;
fail:
    w->failed = true;
    qt_free(order);
    qt_free(h.p);
    return st;
}

static bool add_interval(wtensor *t, uint64_t a, uint64_t b)
{
    size_t i = 0;
    while (i < t->n_iv && t->iv[i].e < a) i++;
    size_t j = i;
    uint64_t na = a, nb = b;
    while (j < t->n_iv && t->iv[j].b <= b) {
        if (t->iv[j].b < na) na = t->iv[j].b;
        if (t->iv[j].e > nb) nb = t->iv[j].e;
        j++;
    }
    if (j == i) {
        if (!grow((void **)&t->iv, &t->cap_iv, t->n_iv + 1, sizeof *t->iv)) return false;
        memmove(t->iv + i + 1, t->iv + i, (t->n_iv - i) * sizeof *t->iv);
        t->n_iv++;
    } else {
        memmove(t->iv + i + 1, t->iv + j, (t->n_iv - j) * sizeof *t->iv);
        t->n_iv -= j - i - 1;
    }
    t->iv[i].b = na;
    t->iv[i].e = nb;
    return true;
}

qt_status qt_st_writer_write(qt_st_writer *w, size_t index, uint64_t offset_in_tensor,
                             const void *data, size_t nbytes)
{
    qt_status st = QT_OK;
    char *errmsg = w->errmsg;
    if (!w->begun) QT_TRY(qt_st_writer_begin(w));
    if (w->failed) return QT_ERR_IO; /* the first failure's message stays */
    QT_CHECK(index < w->n, QT_ERR_ARG, "%s: no tensor %zu", w->path, index);
    wtensor *t = &w->t[index];
    QT_CHECK(offset_in_tensor <= t->nbytes && nbytes <= t->nbytes - offset_in_tensor, QT_ERR_ARG,
             "%s: tensor '%.100s': write of %zu bytes at %llu runs past its %llu bytes", w->path,
             t->name, nbytes, (unsigned long long)offset_in_tensor,
             (unsigned long long)t->nbytes);
    if (nbytes == 0) return QT_OK;
    uint64_t pos = 8 + w->header_len + t->begin + offset_in_tensor;
    if (pwrite_all(w->fd, data, nbytes, pos) != QT_OK) return fail_io(w, "write", errno);
    QT_CHECK(add_interval(t, offset_in_tensor, offset_in_tensor + nbytes), QT_ERR_NOMEM,
             "%s: out of memory", w->path);
    return QT_OK;
fail:
    return st;
}

static void writer_free(qt_st_writer *w)
{
    if (!w) return;
    if (w->fd >= 0) close(w->fd);
    for (size_t i = 0; i < w->n; i++) {
        qt_free(w->t[i].name);
        qt_free(w->t[i].iv);
    }
    qt_free(w->t);
    for (size_t i = 0; i < 2 * w->n_meta; i++) qt_free(w->meta[i]);
    qt_free(w->meta);
    qt_free(w->prot);
    qt_free(w->path);
    qt_free(w->tmp_path);
    qt_free(w->dir);
    memset(w, 0, sizeof *w);
    qt_free(w);
}

void qt_st_writer_abort(qt_st_writer *w)
{
    if (!w) return;
    if (w->fd >= 0) close(w->fd);
    w->fd = -1;
    if (w->tmp_path) unlink(w->tmp_path);
    writer_free(w);
}

qt_status qt_st_writer_close(qt_st_writer *w, char *errmsg_out)
{
    if (!w) return QT_OK;
    qt_status st = QT_OK;
    char *errmsg = w->errmsg;
    if (!w->begun) QT_TRY(qt_st_writer_begin(w));
    if (w->failed) {
        st = QT_ERR_IO;
        goto fail;
    }
    for (size_t i = 0; i < w->n; i++) {
        const wtensor *t = &w->t[i];
        uint64_t done = 0;
        for (size_t k = 0; k < t->n_iv; k++) done += t->iv[k].e - t->iv[k].b;
        QT_CHECK(done == t->nbytes, QT_ERR_ARG,
                 "%s: tensor '%.100s': only %llu of %llu bytes were written", w->path, t->name,
                 (unsigned long long)done, (unsigned long long)t->nbytes);
    }
    if (fsync(w->fd) != 0) {
        st = fail_io(w, "sync", errno);
        goto fail;
    }
    int fd = w->fd;
    w->fd = -1;
    if (close(fd) != 0) {
        st = fail_io(w, "close", errno);
        goto fail;
    }
    QT_CHECK(!is_protected(w, w->path), QT_ERR_ARG,
             "refusing to write '%s': it is one of the input files", w->path);
    if (rename(w->tmp_path, w->path) != 0) {
        int e = errno;
        qt_set_err(errmsg, QT_ERR_IO, "cannot rename '%s' to '%s': %s", w->tmp_path, w->path,
                   strerror(e));
        st = QT_ERR_IO;
        goto fail;
    }
    qt_free(w->tmp_path);
    w->tmp_path = NULL; /* now the final file: never unlink */
    int dfd = open(w->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        int rc = fsync(dfd);
        int e = errno;
        close(dfd);
        QT_CHECK(rc == 0 || e == EINVAL || e == EROFS, QT_ERR_IO, "cannot sync folder '%s': %s",
                 w->dir, strerror(e));
    }
    writer_free(w);
    return QT_OK;
fail:
    if (errmsg_out) memcpy(errmsg_out, w->errmsg, QT_ERRMSG_SIZE);
    qt_st_writer_abort(w);
    return st;
}
