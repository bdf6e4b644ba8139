/* formats/gguf_writer.c: streaming, atomic GGUF v3 writer (gguf_writer.h). */
#include "formats/gguf_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/fsutil.h"

#define GW_ALIGN ((uint64_t)QT_GGUF_DEFAULT_ALIGNMENT)

typedef struct gw_tensor {
    char name[QT_GGUF_MAX_NAME];
    uint32_t n_dims;
    int64_t ne[QT_GGUF_MAX_DIMS];
    qt_ggml_type type;
    uint64_t nbytes; /* unpadded */
    uint64_t offset; /* relative to the data section */
    uint64_t done;   /* bytes written so far */
} gw_tensor;

/* A growable byte buffer (serialized pairs, write staging). */
typedef struct gw_buf {
    unsigned char *p;
    size_t n, cap;
} gw_buf;

struct qt_gguf_writer {
    char *path;      /* final path */
    char *tmp;       /* temporary file, NULL until begin */
    int fd;          /* -1 when closed */
    gw_buf kv;       /* serialized pairs */
    size_t n_kv;
    char **keys;     /* (n_kv) for the uniqueness check */
    gw_tensor *t;    /* (n_t) declared tensors */
    size_t n_t, cap_t;
    uint64_t data_size; /* sum of padded blobs */
    bool begun, failed;
    uint64_t data_start; /* file offset of the data section */
    size_t cur;      /* tensor the next sequential write goes to */
    char errmsg[QT_ERRMSG_SIZE];
};

static uint64_t pad_up(uint64_t n) { return (n + GW_ALIGN - 1) / GW_ALIGN * GW_ALIGN; }

/* ---- byte buffer -------------------------------------------------------- */

static bool buf_put(gw_buf *b, const void *p, size_t n)
{
    if (n > SIZE_MAX - b->n) return false;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) {
            if (cap > SIZE_MAX / 2) return false;
            cap *= 2;
        }
        unsigned char *q = qt_realloc(b->p, cap);
        if (!q) return false;
        b->p = q;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, p, n);
    b->n += n;
    return true;
}

static bool buf_u32(gw_buf *b, uint32_t v)
{
    unsigned char x[4];
    qt_store_le32(x, v);
    return buf_put(b, x, 4);
}

static bool buf_u64(gw_buf *b, uint64_t v)
{
    unsigned char x[8];
    qt_store_le64(x, v);
    return buf_put(b, x, 8);
}

/* A GGUF string: u64 length, the bytes. */
static bool buf_str(gw_buf *b, const char *s, size_t len)
{
    return buf_u64(b, len) && buf_put(b, s, len);
}

/* ---- open, errors ------------------------------------------------------- */

qt_status qt_gguf_writer_open(const char *path, qt_gguf_writer **out, char *errmsg)
{
    if (out) *out = NULL;
    if (!path || !*path || !out) return qt_set_err(errmsg, QT_ERR_ARG, "gguf writer: no path");
    qt_gguf_writer *w = qt_calloc(1, sizeof *w);
    if (!w || !(w->path = qt_strdup(path))) {
        qt_free(w);
        return qt_set_err(errmsg, QT_ERR_NOMEM, "out of memory");
    }
    w->fd = -1;
    *out = w;
    return QT_OK;
}

const char *qt_gguf_writer_errmsg(const qt_gguf_writer *w) { return w ? w->errmsg : ""; }

/* Records a failure on the writer (the writer is unusable afterwards). */
#define GW_FAIL(w, status, ...) \
    ((w)->failed = true, qt_set_err((w)->errmsg, (status), __VA_ARGS__))

/* ---- metadata ----------------------------------------------------------- */

/* Checks the key and writes key + type into the pair buffer. */
static qt_status kv_head(qt_gguf_writer *w, const char *key, qt_gguf_type type)
{
    if (w->begun || w->failed) return GW_FAIL(w, QT_ERR_ARG, "gguf writer: key '%s' too late", key);
    if (!key || !*key) return GW_FAIL(w, QT_ERR_ARG, "gguf writer: empty key");
    for (size_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->keys[i], key) == 0)
            return GW_FAIL(w, QT_ERR_ARG, "gguf writer: duplicate key '%s'", key);
    char **k = qt_realloc(w->keys, (w->n_kv + 1) * sizeof *k);
    if (!k) return GW_FAIL(w, QT_ERR_NOMEM, "out of memory");
    w->keys = k;
    if (!(k[w->n_kv] = qt_strdup(key))) return GW_FAIL(w, QT_ERR_NOMEM, "out of memory");
    w->n_kv++;
    if (!buf_str(&w->kv, key, strlen(key)) || !buf_u32(&w->kv, (uint32_t)type))
        return GW_FAIL(w, QT_ERR_NOMEM, "out of memory");
    return QT_OK;
}

static qt_status kv_scalar(qt_gguf_writer *w, const char *key, qt_gguf_type type, const void *le,
                           size_t n)
{
    qt_status st = kv_head(w, key, type);
    if (st != QT_OK) return st;
    if (!buf_put(&w->kv, le, n)) return GW_FAIL(w, QT_ERR_NOMEM, "out of memory");
    return QT_OK;
}

qt_status qt_gguf_writer_add_u32(qt_gguf_writer *w, const char *key, uint32_t v)
{
    unsigned char x[4];
    qt_store_le32(x, v);
    return kv_scalar(w, key, QT_GGUF_TYPE_UINT32, x, 4);
}

qt_status qt_gguf_writer_add_i32(qt_gguf_writer *w, const char *key, int32_t v)
{
    unsigned char x[4];
    qt_store_le32(x, (uint32_t)v);
    return kv_scalar(w, key, QT_GGUF_TYPE_INT32, x, 4);
}

qt_status qt_gguf_writer_add_f32(qt_gguf_writer *w, const char *key, float v)
{
    unsigned char x[4];
    qt_store_le32(x, qt_f32_bits(v));
    return kv_scalar(w, key, QT_GGUF_TYPE_FLOAT32, x, 4);
}

qt_status qt_gguf_writer_add_bool(qt_gguf_writer *w, const char *key, bool v)
{
    unsigned char x = v ? 1 : 0;
    return kv_scalar(w, key, QT_GGUF_TYPE_BOOL, &x, 1);
}

qt_status qt_gguf_writer_add_str(qt_gguf_writer *w, const char *key, const char *s, size_t len)
{
    qt_status st = kv_head(w, key, QT_GGUF_TYPE_STRING);
    if (st != QT_OK) return st;
    if (!buf_str(&w->kv, s, len)) return GW_FAIL(w, QT_ERR_NOMEM, "out of memory");
    return QT_OK;
}

/* key, ARRAY, element type, count. */
static qt_status arr_head(qt_gguf_writer *w, const char *key, qt_gguf_type elem, size_t n)
{
    if (n == 0) return GW_FAIL(w, QT_ERR_ARG, "gguf writer: empty array '%s'", key);
    qt_status st = kv_head(w, key, QT_GGUF_TYPE_ARRAY);
    if (st != QT_OK) return st;
    if (!buf_u32(&w->kv, (uint32_t)elem) || !buf_u64(&w->kv, n))
        return GW_FAIL(w, QT_ERR_NOMEM, "out of memory");
    return QT_OK;
}

qt_status qt_gguf_writer_add_arr_str(qt_gguf_writer *w, const char *key,
                                     const char *const *s, const uint32_t *lens, size_t n)
{
    qt_status st = arr_head(w, key, QT_GGUF_TYPE_STRING, n);
    if (st != QT_OK) return st;
    for (size_t i = 0; i < n; i++)
        if (!buf_str(&w->kv, s[i], lens[i])) return GW_FAIL(w, QT_ERR_NOMEM, "out of memory");
    return QT_OK;
}

/* n 32-bit values, little-endian. */
static qt_status arr_32(qt_gguf_writer *w, const char *key, qt_gguf_type elem, const void *v,
                        size_t n)
{
    qt_status st = arr_head(w, key, elem, n);
    if (st != QT_OK) return st;
    const uint32_t *u = v;
    for (size_t i = 0; i < n; i++)
        if (!buf_u32(&w->kv, u[i])) return GW_FAIL(w, QT_ERR_NOMEM, "out of memory");
    return QT_OK;
}

qt_status qt_gguf_writer_add_arr_f32(qt_gguf_writer *w, const char *key, const float *v, size_t n)
{
    return arr_32(w, key, QT_GGUF_TYPE_FLOAT32, v, n);
}

qt_status qt_gguf_writer_add_arr_i32(qt_gguf_writer *w, const char *key, const int32_t *v,
                                     size_t n)
{
    return arr_32(w, key, QT_GGUF_TYPE_INT32, v, n);
}

/* ---- tensors -------------------------------------------------------------- */

/* Byte size of a tensor of type ty and shape ne[0..n_dims), or a failure
 * message on w. */
static qt_status tensor_nbytes(qt_gguf_writer *w, const char *name, uint32_t n_dims,
                               const int64_t *ne, qt_ggml_type ty, uint64_t *out)
{
    int64_t blck = qt_ggml_blck_size(ty);
    if (blck <= 0) return GW_FAIL(w, QT_ERR_ARG, "tensor '%s': unknown ggml type %d", name, (int)ty);
    if (ne[0] % blck != 0)
        return GW_FAIL(w, QT_ERR_ARG, "tensor '%s': ne[0] = %lld is not a multiple of %s's "
                       "block size %lld", name, (long long)ne[0], qt_ggml_type_name(ty),
                       (long long)blck);
    uint64_t n = (uint64_t)(ne[0] / blck) * qt_ggml_type_size(ty);
    for (uint32_t d = 1; d < n_dims; d++)
        if (!qt_mul_u64(n, (uint64_t)ne[d], &n))
            return GW_FAIL(w, QT_ERR_OVERFLOW, "tensor '%s': byte size overflows", name);
    if (n > (uint64_t)INT64_MAX - GW_ALIGN)
        return GW_FAIL(w, QT_ERR_OVERFLOW, "tensor '%s': byte size overflows", name);
    *out = n;
    return QT_OK;
}

qt_status qt_gguf_writer_add_tensor(qt_gguf_writer *w, const char *name, uint32_t n_dims,
                                    const int64_t *ne, qt_ggml_type type, size_t *index)
{
    if (w->begun || w->failed) return GW_FAIL(w, QT_ERR_ARG, "gguf writer: tensor too late");
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len >= QT_GGUF_MAX_NAME)
        return GW_FAIL(w, QT_ERR_ARG, "tensor '%s': name must be 1..%d bytes", name ? name : "",
                       QT_GGUF_MAX_NAME - 1);
    if (n_dims < 1 || n_dims > QT_GGUF_MAX_DIMS)
        return GW_FAIL(w, QT_ERR_ARG, "tensor '%s': %u dimensions", name, n_dims);
    for (uint32_t d = 0; d < n_dims; d++)
        if (ne[d] < 0) return GW_FAIL(w, QT_ERR_ARG, "tensor '%s': negative dimension", name);
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return GW_FAIL(w, QT_ERR_ARG, "gguf writer: duplicate tensor '%s'", name);
    uint64_t nb = 0;
    qt_status st = tensor_nbytes(w, name, n_dims, ne, type, &nb);
    if (st != QT_OK) return st;
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 64;
        gw_tensor *t = qt_realloc(w->t, cap * sizeof *t);
        if (!t) return GW_FAIL(w, QT_ERR_NOMEM, "out of memory");
        w->t = t;
        w->cap_t = cap;
    }
    gw_tensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    memcpy(t->name, name, len + 1);
    t->n_dims = n_dims;
    for (uint32_t d = 0; d < QT_GGUF_MAX_DIMS; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->type = type;
    t->nbytes = nb;
    t->offset = w->data_size;
    w->data_size += pad_up(nb);
    if (index) *index = w->n_t;
    w->n_t++;
    return QT_OK;
}

size_t qt_gguf_writer_tensor_nbytes(const qt_gguf_writer *w, size_t index)
{
    return index < w->n_t ? (size_t)w->t[index].nbytes : 0;
}

/* Bytes of the header + pairs + tensor infos (before alignment). */
static uint64_t header_size(const qt_gguf_writer *w)
{
    uint64_t n = 4 + 4 + 8 + 8 + w->kv.n;
    for (size_t i = 0; i < w->n_t; i++)
        n += 8 + strlen(w->t[i].name) + 4 + 8 * (uint64_t)w->t[i].n_dims + 4 + 8;
    return n;
}

uint64_t qt_gguf_writer_file_size(const qt_gguf_writer *w)
{
    return pad_up(header_size(w)) + w->data_size;
}

/* ---- file output ------------------------------------------------------------ */

/* Writes n bytes at file offset off. */
static qt_status put_at(qt_gguf_writer *w, uint64_t off, const void *data, size_t n)
{
    const unsigned char *p = data;
    while (n) {
        ssize_t k = pwrite(w->fd, p, n, (off_t)off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0)
            return GW_FAIL(w, QT_ERR_IO, "cannot write '%s': %s", w->tmp,
                           strerror(k < 0 ? errno : ENOSPC));
        p += k;
        off += (uint64_t)k;
        n -= (size_t)k;
    }
    return QT_OK;
}

/* Creates "<path>.tmp-XXXXXX" in the output's folder. */
static qt_status make_temp(qt_gguf_writer *w)
{
    size_t n = strlen(w->path) + 16;
    w->tmp = qt_malloc(n);
    if (!w->tmp) return GW_FAIL(w, QT_ERR_NOMEM, "out of memory");
    snprintf(w->tmp, n, "%s.tmp-XXXXXX", w->path);
    w->fd = mkostemp(w->tmp, O_CLOEXEC);
    if (w->fd < 0) {
        int e = errno;
        qt_free(w->tmp);
        w->tmp = NULL;
        return GW_FAIL(w, QT_ERR_IO, "cannot create a temporary file beside '%s': %s", w->path,
                       strerror(e));
    }
    (void)fchmod(w->fd, 0644);
    return QT_OK;
}

/* Header, pairs and tensor infos, serialized into b. */
static bool serialize_head(const qt_gguf_writer *w, gw_buf *b)
{
    bool ok = buf_put(b, QT_GGUF_MAGIC, 4) && buf_u32(b, 3) && buf_u64(b, w->n_t) &&
              buf_u64(b, w->n_kv) && buf_put(b, w->kv.p, w->kv.n);
    for (size_t i = 0; i < w->n_t && ok; i++) {
        const gw_tensor *t = &w->t[i];
        ok = buf_str(b, t->name, strlen(t->name)) && buf_u32(b, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims && ok; d++) ok = buf_u64(b, (uint64_t)t->ne[d]);
        ok = ok && buf_u32(b, (uint32_t)t->type) && buf_u64(b, t->offset);
    }
    return ok;
}

qt_status qt_gguf_writer_begin(qt_gguf_writer *w)
{
    qt_status st;
    if (w->begun || w->failed) return GW_FAIL(w, QT_ERR_ARG, "gguf writer: begin twice");
    if ((st = make_temp(w)) != QT_OK) return st;
    w->begun = true;
    /* the file at its final size: padding and not yet written bytes read as zeros */
    w->data_start = pad_up(header_size(w));
    if (ftruncate(w->fd, (off_t)(w->data_start + w->data_size)) != 0)
        return GW_FAIL(w, QT_ERR_IO, "cannot write '%s': %s", w->tmp, strerror(errno));
    gw_buf h = {0};
    st = serialize_head(w, &h) ? put_at(w, 0, h.p, h.n) : GW_FAIL(w, QT_ERR_NOMEM, "out of memory");
    qt_free(h.p);
    return st;
}

qt_status qt_gguf_writer_write_at(qt_gguf_writer *w, size_t index, uint64_t offset,
                                  const void *data, size_t n)
{
    if (!w->begun || w->failed) return GW_FAIL(w, QT_ERR_ARG, "gguf writer: write before begin");
    if (index >= w->n_t) return GW_FAIL(w, QT_ERR_ARG, "gguf writer: no tensor %zu", index);
    gw_tensor *t = &w->t[index];
    if (offset > t->nbytes || n > t->nbytes - offset || n > t->nbytes - t->done)
        return GW_FAIL(w, QT_ERR_ARG, "gguf writer: %zu bytes past the end of tensor '%s'", n,
                       t->name);
    qt_status st = put_at(w, w->data_start + t->offset + offset, data, n);
    if (st == QT_OK) t->done += n;
    return st;
}

qt_status qt_gguf_writer_write(qt_gguf_writer *w, const void *data, size_t n)
{
    if (!w->begun || w->failed) return GW_FAIL(w, QT_ERR_ARG, "gguf writer: write before begin");
    /* complete tensors (zero-byte ones included) are passed over */
    while (w->cur < w->n_t && w->t[w->cur].done == w->t[w->cur].nbytes) w->cur++;
    if (n == 0) return QT_OK;
    if (w->cur >= w->n_t)
        return GW_FAIL(w, QT_ERR_ARG, "gguf writer: %zu bytes past the end of tensor '%s'", n,
                       w->n_t ? w->t[w->n_t - 1].name : "(none)");
    return qt_gguf_writer_write_at(w, w->cur, w->t[w->cur].done, data, n);
}

/* ---- close: self-check and rename --------------------------------------------- */

/* Re-reads the temporary file with the hardened reader (spec §8.5) and
 * compares it with the declarations. */
static qt_status self_check(qt_gguf_writer *w)
{
    qt_gguf *g = NULL;
    qt_gguf_rule rule;
    char msg[QT_ERRMSG_SIZE];
    qt_status st = qt_gguf_open(w->tmp, &g, &rule, msg);
    if (st != QT_OK)
        return GW_FAIL(w, QT_ERR_FORMAT, "self-check of '%s' failed: %s", w->path, msg);
    st = QT_OK;
    if (qt_gguf_n_kv(g) != w->n_kv || qt_gguf_n_tensors(g) != w->n_t)
        st = GW_FAIL(w, QT_ERR_FORMAT, "self-check of '%s': counts differ", w->path);
    for (size_t i = 0; i < w->n_t && st == QT_OK; i++) {
        const gw_tensor *t = &w->t[i];
        const int64_t *ne = qt_gguf_tensor_ne(g, i);
        if (strcmp(qt_gguf_tensor_name(g, i), t->name) != 0 ||
            qt_gguf_tensor_type(g, i) != t->type || qt_gguf_tensor_nbytes(g, i) != t->nbytes ||
            memcmp(ne, t->ne, sizeof t->ne) != 0)
            st = GW_FAIL(w, QT_ERR_FORMAT, "self-check of '%s': tensor '%s' differs", w->path,
                         t->name);
    }
    qt_gguf_close(g);
    return st;
}

/* The folder of path (for the fsync after rename). */
static void fsync_parent(const char *path)
{
    char *c = qt_strdup(path);
    if (!c) return;
    qt_dir_fsync(dirname(c));
    qt_free(c);
}

static void writer_free(qt_gguf_writer *w)
{
    if (w->fd >= 0) close(w->fd);
    if (w->tmp) unlink(w->tmp);
    for (size_t i = 0; i < w->n_kv; i++) qt_free(w->keys[i]);
    qt_free(w->keys);
    qt_free(w->kv.p);
    qt_free(w->t);
    qt_free(w->tmp);
    qt_free(w->path);
    qt_free(w);
}

qt_status qt_gguf_writer_close(qt_gguf_writer *w, char *errmsg)
{
    if (!w) return qt_set_err(errmsg, QT_ERR_ARG, "gguf writer: NULL");
    qt_status st = QT_OK;
    if (!w->begun && !w->failed) st = qt_gguf_writer_begin(w);
    if (st == QT_OK && w->failed) st = QT_ERR_ARG;
    for (size_t i = 0; i < w->n_t && st == QT_OK; i++)
        if (w->t[i].done != w->t[i].nbytes)
            st = GW_FAIL(w, QT_ERR_ARG, "gguf writer: tensor '%s' is incomplete (%llu of %llu "
                         "bytes)", w->t[i].name, (unsigned long long)w->t[i].done,
                         (unsigned long long)w->t[i].nbytes);
    if (st == QT_OK && fsync(w->fd) != 0)
        st = GW_FAIL(w, QT_ERR_IO, "cannot write '%s': %s", w->tmp, strerror(errno));
    if (st == QT_OK && close(w->fd) != 0)
        st = GW_FAIL(w, QT_ERR_IO, "cannot write '%s': %s", w->tmp, strerror(errno));
    if (st == QT_OK) w->fd = -1;
    if (st == QT_OK) st = self_check(w);
    if (st == QT_OK && rename(w->tmp, w->path) != 0)
        st = GW_FAIL(w, QT_ERR_IO, "cannot rename '%s' to '%s': %s", w->tmp, w->path,
                     strerror(errno));
    if (st == QT_OK) {
        qt_free(w->tmp);
        w->tmp = NULL;
        fsync_parent(w->path);
    } else {
        qt_set_err(errmsg, st, "%s", w->errmsg[0] ? w->errmsg : qt_status_str(st));
    }
    writer_free(w);
    return st;
}

void qt_gguf_writer_abort(qt_gguf_writer *w)
{
    if (w) writer_free(w);
}
