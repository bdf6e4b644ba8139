/* formats/out_safetensors.c: the model-folder output format (see
 * out_safetensors.h): the seam's operations over qt_st_writer shards.
 *
 * Single pass (qt_out_model.single_pass): the header of a shard lists every
 * tensor's offset, and a double-quantized weight's quant_state length is
 * known only once the weight is quantized. So the parts are appended to a
 * spill file in the staging folder as they come (any order), and commit
 * writes each shard (header, then the parts copied from the spill, whose
 * ranges are released as they are copied): the same bytes as two passes,
 * with the input read once; the output's bytes are written twice (page
 * cache) and the staging folder holds up to twice the output for a moment. */
#include "formats/out_safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "formats/bnb.h"
#include "formats/fsutil.h"
#include "formats/input_file.h"
#include "formats/out_stage.h"
#include "formats/pyjson.h"

#include <unistd.h>

/* One stored tensor of a weight. */
typedef struct part {
    char *name;
    qt_bnb_role role; /* quantized weights; QT_BNB_CODES for a plain one */
    qt_dtype dtype;
    size_t n_dims;
    uint64_t shape[QT_ST_MAX_DIMS];
    uint64_t nbytes;
    size_t index;       /* in its shard's writer */
    bool spilled;       /* single pass: its bytes are in the spill file at spill_off */
    uint64_t spill_off;
} part;

typedef struct weight {
    qt_out_weight w; /* w.name: owned copy */
    qt_bnb_layout L; /* quantized weights */
    size_t n_parts;
    part part[QT_BNB_MAX_PARTS];
    uint64_t bytes;
    size_t shard;
} weight;

typedef struct sto {
    qt_out_model m;
    weight *w;
    size_t n_w, cap_w;
    size_t n_shards;
    char **files; /* shards, [index], config.json (n_files) */
    size_t n_files;
    char **meta; /* key, value, key, value, ... (2 * n_meta) */
    size_t n_meta;
    qt_out_stage stage;
    qt_st_writer **wr; /* (n_shards) while writing */
    int spill_fd;      /* single pass: the spill file, -1 when none */
    uint64_t spill_len;
    char spill_path[PATH_MAX];
} sto;

/* ---- parts of a weight ---------------------------------------------- */
static void free_parts(weight *x)
{
    for (size_t k = 0; k < x->n_parts; k++) qt_free(x->part[k].name);
    memset(x->part, 0, sizeof x->part);
    x->n_parts = 0;
    x->bytes = 0;
}

/* The module prefix of a weight name (without its trailing ".weight"). */
static void module_of(const char *name, char *buf, size_t n)
{
    snprintf(buf, n, "%s", name);
    size_t l = strlen(buf);
    if (l > 7 && !strcmp(buf + l - 7, ".weight")) buf[l - 7] = 0;
}

/* A plain weight: one tensor under its own name. */
static qt_status plain_parts(weight *x)
{
    part *p = &x->part[0];
    p->name = qt_strdup(x->w.name);
    if (!p->name) return QT_ERR_NOMEM;
    p->role = QT_BNB_CODES;
    p->dtype = x->w.dtype;
    p->n_dims = x->w.n_dims;
    memcpy(p->shape, x->w.shape, sizeof p->shape);
    uint64_t n = 1;
    for (size_t d = 0; d < x->w.n_dims; d++) n *= x->w.shape[d];
    p->nbytes = n * (qt_dtype_bits(x->w.dtype) / 8);
    x->n_parts = 1;
    x->bytes = p->nbytes;
    return QT_OK;
}

/* A quantized weight: the parts formats/bnb gives, named prefix + suffix. */
static qt_status quant_parts(weight *x)
{
    const qt_out_weight *w = &x->w;
    qt_status st = qt_bnb_layout_of(w->scheme, w->block, w->double_quant, w->dtype, w->n_dims,
                                    w->shape, w->nested_offset, &x->L);
    if (st != QT_OK) return st;
    char prefix[1024];
    module_of(w->name, prefix, sizeof prefix);
    for (size_t k = 0; k < x->L.n_parts; k++) {
        const qt_bnb_part *b = &x->L.part[k];
        part *p = &x->part[k];
        size_t len = strlen(prefix) + strlen(b->suffix) + 1;
        p->name = qt_malloc(len);
        if (!p->name) return QT_ERR_NOMEM;
        x->n_parts = k + 1;
        snprintf(p->name, len, "%s%s", prefix, b->suffix);
        p->role = b->role;
        p->dtype = b->dtype;
        p->n_dims = b->n_dims;
        memset(p->shape, 0, sizeof p->shape);
        p->shape[0] = b->shape[0];
        p->shape[1] = b->shape[1];
        p->nbytes = b->nbytes;
        x->bytes += b->nbytes;
    }
    return QT_OK;
}

/* (Re)computes the parts of x from its description w. */
static qt_status set_weight(weight *x, const qt_out_weight *w, char *errmsg)
{
    char *name = x->w.name == w->name ? (char *)x->w.name : qt_strdup(w->name);
    if (!name) return qt_set_err(errmsg, QT_ERR_NOMEM, "out of memory");
    if (x->w.name && x->w.name != name) qt_free((char *)x->w.name);
    free_parts(x);
    x->w = *w;
    x->w.name = name;
    qt_status st = w->quantized ? quant_parts(x) : plain_parts(x);
    if (st != QT_OK)
        qt_set_err(errmsg, st, "tensor '%s': cannot plan its output parts (%s)", w->name,
                   qt_status_str(st));
    return st;
}

/* ---- plan --------------------------------------------------------------- */
static qt_status op_create(const qt_out_model *m, void **self, char *errmsg)
{
    sto *s = qt_calloc(1, sizeof *s);
    if (!s) return qt_set_err(errmsg, QT_ERR_NOMEM, "out of memory");
    s->m = *m;
    s->spill_fd = -1;
    *self = s;
    return QT_OK;
}

static qt_status op_declare(void *self, size_t id, const qt_out_weight *w, char *errmsg)
{
    sto *s = self;
    if (id >= s->cap_w) {
        size_t cap = s->cap_w ? 2 * s->cap_w : 64;
        weight *nw = qt_realloc(s->w, cap * sizeof *nw);
        if (!nw) return qt_set_err(errmsg, QT_ERR_NOMEM, "out of memory");
        memset(nw + s->cap_w, 0, (cap - s->cap_w) * sizeof *nw);
        s->w = nw;
        s->cap_w = cap;
    }
    s->n_w = id + 1;
    return set_weight(&s->w[id], w, errmsg);
}

static qt_status add_file_name(sto *s, const char *name)
{
    char *c = qt_strdup(name);
    if (!c) return QT_ERR_NOMEM;
    s->files[s->n_files++] = c;
    return QT_OK;
}

/* Shards: whole weights, in order, each up to max_shard_size bytes; then
 * the names of every file the output holds. */
static qt_status op_plan(void *self, char *errmsg)
{
    sto *s = self;
    s->n_shards = 1;
    uint64_t cur = 0;
    for (size_t i = 0; i < s->n_w; i++) {
        weight *x = &s->w[i];
        if (s->m.max_shard_size && cur > 0 && cur + x->bytes > s->m.max_shard_size) {
            s->n_shards++;
            cur = 0;
        }
        x->shard = s->n_shards - 1;
        cur += x->bytes;
    }
    s->files = qt_calloc(s->n_shards + 2, sizeof *s->files);
    if (!s->files) return qt_set_err(errmsg, QT_ERR_NOMEM, "out of memory");
    qt_status st = QT_OK;
    for (size_t i = 0; i < s->n_shards && st == QT_OK; i++) {
        char sn[64];
        if (s->n_shards == 1) snprintf(sn, sizeof sn, "model.safetensors");
        else snprintf(sn, sizeof sn, "model-%05zu-of-%05zu.safetensors", i + 1, s->n_shards);
        st = add_file_name(s, sn);
    }
    if (st == QT_OK && s->n_shards > 1) st = add_file_name(s, "model.safetensors.index.json");
    if (st == QT_OK) st = add_file_name(s, "config.json");
    if (st != QT_OK) return qt_set_err(errmsg, st, "out of memory");
    return QT_OK;
}

static qt_status op_redeclare(void *self, size_t id, const qt_out_weight *w, char *errmsg)
{
    sto *s = self;
    return set_weight(&s->w[id], w, errmsg);
}

static uint64_t op_weight_bytes(const void *self, size_t id)
{
    return ((const sto *)self)->w[id].bytes;
}
static size_t op_n_files(const void *self) { return ((const sto *)self)->n_files; }
static const char *op_file(const void *self, size_t i)
{
    const sto *s = self;
    return i < s->n_files ? s->files[i] : NULL;
}
static size_t op_n_weight_files(const void *self) { return ((const sto *)self)->n_shards; }

static qt_status op_add_metadata(void *self, const char *key, const char *value, char *errmsg)
{
    sto *s = self;
    char **nm = qt_realloc(s->meta, (2 * s->n_meta + 2) * sizeof *nm);
    if (!nm) return qt_set_err(errmsg, QT_ERR_NOMEM, "out of memory");
    s->meta = nm;
    nm[2 * s->n_meta] = qt_strdup(key);
    nm[2 * s->n_meta + 1] = qt_strdup(value);
    s->n_meta++;
    if (!nm[2 * s->n_meta - 2] || !nm[2 * s->n_meta - 1])
        return qt_set_err(errmsg, QT_ERR_NOMEM, "out of memory");
    return QT_OK;
}

/* ---- writing ------------------------------------------------------------ */

/* Opens shard i in the staging folder: protected inputs, metadata, every
 * part of its weights declared, header written. */
static qt_status open_shard(sto *s, size_t i, char *errmsg)
{
    qt_status st = QT_OK;
    char path[PATH_MAX];
    QT_CHECK(qt_path_join(path, sizeof path, s->stage.dir, s->files[i]), QT_ERR_ARG,
             "path too long");
    QT_TRY(qt_st_writer_open(path, &s->wr[i], errmsg));
    qt_st_writer *w = s->wr[i];
    for (size_t k = 0; k < s->m.n_protect && st == QT_OK; k++)
        st = qt_st_writer_protect_path(w, s->m.protect[k]);
    if (st == QT_OK) st = qt_st_writer_add_metadata(w, "format", "pt");
    for (size_t k = 0; k < s->n_meta && st == QT_OK; k++)
        st = qt_st_writer_add_metadata(w, s->meta[2 * k], s->meta[2 * k + 1]);
    for (size_t j = 0; j < s->n_w && st == QT_OK; j++) {
        weight *x = &s->w[j];
        if (x->shard != i) continue;
        for (size_t k = 0; k < x->n_parts && st == QT_OK; k++)
            st = qt_st_writer_declare(w, x->part[k].name, x->part[k].dtype, x->part[k].n_dims,
                                      x->part[k].shape, &x->part[k].index);
    }
    if (st == QT_OK) st = qt_st_writer_begin(w);
    QT_CHECK(st == QT_OK, st, "%s", qt_st_writer_errmsg(w));
fail:
    return st;
}

static qt_status op_begin(void *self, bool replace, char *errmsg)
{
    sto *s = self;
    qt_status st = QT_OK;
    s->wr = qt_calloc(s->n_shards, sizeof *s->wr);
    QT_CHECK(s->wr != NULL, QT_ERR_NOMEM, "out of memory");
    QT_TRY(qt_out_stage_begin(&s->stage, s->m.out, replace, s->m.in_dir, errmsg));
    if (s->m.single_pass) { /* the shards are written at commit, from the spill */
        QT_CHECK(qt_path_join(s->spill_path, sizeof s->spill_path, s->stage.dir, ".spill"),
                 QT_ERR_ARG, "path too long");
        s->spill_fd = open(s->spill_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        QT_CHECK(s->spill_fd >= 0, QT_ERR_IO, "cannot create '%s': %s", s->spill_path,
                 strerror(errno));
        return QT_OK;
    }
    for (size_t i = 0; i < s->n_shards; i++) QT_TRY(open_shard(s, i, errmsg));
fail:
    return st;
}

/* ---- single pass: the spill file ---------------------------------------- */

/* Writes n bytes at offset off of the spill file. */
static qt_status spill_pwrite(sto *s, const void *data, size_t n, uint64_t off, char *errmsg)
{
    const unsigned char *p = data;
    while (n) {
        ssize_t w = pwrite(s->spill_fd, p, n, (off_t)off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0)
            return qt_set_err(errmsg, QT_ERR_IO, "cannot write '%s': %s", s->spill_path,
                              w < 0 ? strerror(errno) : "short write");
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return QT_OK;
}

/* The spill range of part p, allocated on its first write. */
static uint64_t spill_place(sto *s, part *p)
{
    if (!p->spilled) {
        p->spilled = true;
        p->spill_off = s->spill_len;
        s->spill_len += p->nbytes;
    }
    return p->spill_off;
}

/* Copies part p of shard writer w from the spill, then releases its range. */
static qt_status spill_copy(sto *s, qt_st_writer *w, const part *p, unsigned char *buf,
                            size_t cap, char *errmsg)
{
    for (uint64_t off = 0; off < p->nbytes;) {
        size_t m = p->nbytes - off < cap ? (size_t)(p->nbytes - off) : cap;
        ssize_t r = pread(s->spill_fd, buf, m, (off_t)(p->spill_off + off));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            return qt_set_err(errmsg, QT_ERR_IO, "cannot read '%s': %s", s->spill_path,
                              r < 0 ? strerror(errno) : "short read");
        qt_status st = qt_st_writer_write(w, p->index, off, buf, (size_t)r);
        if (st != QT_OK) return qt_set_err(errmsg, st, "%s", qt_st_writer_errmsg(w));
        off += (uint64_t)r;
    }
    if (p->nbytes) /* best effort: keeps the staging folder near the output's size */
        fallocate(s->spill_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)p->spill_off,
                  (off_t)p->nbytes);
    return QT_OK;
}

/* Every shard written from the spill: header, then each part's bytes. */
static qt_status spill_commit(sto *s, char *errmsg)
{
    qt_status st = QT_OK;
    const size_t cap = (size_t)4 << 20;
    unsigned char *buf = qt_malloc(cap);
    QT_CHECK(buf != NULL, QT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < s->n_shards; i++) {
        QT_TRY(open_shard(s, i, errmsg));
        for (size_t j = 0; j < s->n_w; j++) {
            const weight *x = &s->w[j];
            if (x->shard != i) continue;
            for (size_t k = 0; k < x->n_parts; k++) {
                QT_CHECK(x->part[k].spilled || !x->part[k].nbytes, QT_ERR_ARG,
                         "tensor '%s': internal: part '%s' never written", x->w.name,
                         x->part[k].name);
                QT_TRY(spill_copy(s, s->wr[i], &x->part[k], buf, cap, errmsg));
            }
        }
    }
fail:
    qt_free(buf);
    return st;
}

static qt_status part_write(sto *s, const weight *x, part *p, const void *data,
                            char *errmsg)
{
    if (s->m.single_pass) return spill_pwrite(s, data, (size_t)p->nbytes, spill_place(s, p), errmsg);
    qt_st_writer *w = s->wr[x->shard];
    qt_status st = qt_st_writer_write(w, p->index, 0, data, (size_t)p->nbytes);
    if (st != QT_OK) qt_set_err(errmsg, st, "%s", qt_st_writer_errmsg(w));
    return st;
}

/* The caller's data for a part of `role` in q, or NULL for a constant part. */
static const void *quant_data(const qt_qweight *q, const weight *x, qt_bnb_role role)
{
    switch (role) {
    case QT_BNB_CODES: return q->data;
    case QT_BNB_ABSMAX: return x->w.double_quant ? (const void *)q->absmax_q : q->absmax;
    case QT_BNB_NESTED_ABSMAX: return q->nested_absmax;
    case QT_BNB_SCB: return q->scb;
    case QT_BNB_QUANT_MAP: return q->quant_map;
    case QT_BNB_NESTED_MAP: return q->nested_map;
    default: return NULL;
    }
}

static qt_status op_write_quant(void *self, size_t id, const qt_qweight *q, char *errmsg)
{
    sto *s = self;
    weight *x = &s->w[id];
    /* single pass: the nested offset arrives now and sizes the quant_state */
    if (s->m.single_pass && x->w.quantized && x->w.double_quant &&
        memcmp(&q->nested_offset, &x->w.nested_offset, sizeof(float))) {
        qt_out_weight w = x->w;
        w.nested_offset = q->nested_offset;
        qt_status st = set_weight(x, &w, errmsg);
        if (st != QT_OK) return st;
    }
    /* q must be what was declared: the quant_state was formatted from it */
    uint64_t n = 1;
    for (size_t d = 0; d < x->w.n_dims; d++) n *= x->w.shape[d];
    if (!x->w.quantized || q->scheme != x->w.scheme || (uint64_t)q->n_out * q->n_in != n ||
        (x->w.double_quant && memcmp(&q->nested_offset, &x->w.nested_offset, sizeof(float))))
        return qt_set_err(errmsg, QT_ERR_ARG,
                          "tensor '%s': internal: the quantized weight does not match its "
                          "declaration",
                          x->w.name);
    unsigned char buf[1024]; /* room for any constant part (the 256-entry map) */
    for (size_t k = 0; k < x->n_parts; k++) {
        part *p = &x->part[k];
        const void *data = quant_data(q, x, p->role);
        if (!data) {
            qt_status st = p->nbytes <= sizeof buf
                               ? qt_bnb_constant_part(&x->L, &x->L.part[k], x->w.scheme, buf)
                               : QT_ERR_ARG;
            if (st != QT_OK)
                return qt_set_err(errmsg, st, "tensor '%s': cannot write part '%s' (%s)",
                                  x->w.name, p->name, qt_status_str(st));
            data = buf;
        }
        qt_status st = part_write(s, x, p, data, errmsg);
        if (st != QT_OK) return st;
    }
    return QT_OK;
}

static qt_status op_write_plain(void *self, size_t id, uint64_t offset, const void *data,
                                size_t n, char *errmsg)
{
    sto *s = self;
    weight *x = &s->w[id];
    if (s->m.single_pass) {
        if (offset + n > x->part[0].nbytes)
            return qt_set_err(errmsg, QT_ERR_ARG, "tensor '%s': write past its end", x->w.name);
        return spill_pwrite(s, data, n, spill_place(s, &x->part[0]) + offset, errmsg);
    }
    qt_st_writer *w = s->wr[x->shard];
    qt_status st = qt_st_writer_write(w, x->part[0].index, offset, data, n);
    if (st != QT_OK) qt_set_err(errmsg, st, "%s", qt_st_writer_errmsg(w));
    return st;
}

static qt_status op_add_file(void *self, const char *name, const char *src_path, char *errmsg)
{
    sto *s = self;
    char dst[PATH_MAX];
    if (!qt_path_join(dst, sizeof dst, s->stage.dir, name))
        return qt_set_err(errmsg, QT_ERR_ARG, "path too long");
    /* "sub/file": the subfolder is created in the staging area */
    char *slash = strrchr(dst, '/');
    if (strchr(name, '/') && slash) {
        *slash = 0;
        int rc = mkdir(dst, 0755);
        int e = errno;
        *slash = '/';
        if (rc != 0 && e != EEXIST)
            return qt_set_err(errmsg, QT_ERR_IO, "'%s': cannot create its folder: %s", dst,
                              strerror(e));
    }
    /* a regular file (no FIFO, no folder), copied no more readable than it is */
    int fd = -1;
    struct stat sb;
    qt_status st = qt_input_open(src_path, 0, UINT64_MAX, &fd, &sb, errmsg);
    if (st == QT_OK) st = qt_input_copy(fd, &sb, src_path, dst, errmsg);
    if (fd >= 0) close(fd);
    return st;
}

static const char *op_stage_dir(const void *self)
{
    const sto *s = self;
    return s->stage.dir[0] ? s->stage.dir : NULL;
}

/* ---- commit ------------------------------------------------------------- */

/* Orders ord[0..n) by names[ord[i]] (merge sort: indexes of large models
 * hold many thousand names). */
static qt_status sort_names(const char **names, size_t *ord, size_t n)
{
    size_t *tmp = qt_malloc((n + 1) * sizeof *tmp);
    if (!tmp) return QT_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) ord[i] = i;
    for (size_t w = 1; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            size_t a = lo, b = mid, o = lo;
            while (a < mid && b < hi)
                tmp[o++] = strcmp(names[ord[a]], names[ord[b]]) <= 0 ? ord[a++] : ord[b++];
            while (a < mid) tmp[o++] = ord[a++];
            while (b < hi) tmp[o++] = ord[b++];
        }
        memcpy(ord, tmp, n * sizeof *ord);
    }
    qt_free(tmp);
    return QT_OK;
}

/* model.safetensors.index.json: total size and every part name (sorted)
 * with its shard. */
static qt_status write_index(sto *s, char *errmsg)
{
    qt_status st = QT_OK;
    qt_strbuf b = {0};
    size_t np = 0, k = 0;
    uint64_t total = 0;
    for (size_t i = 0; i < s->n_w; i++) np += s->w[i].n_parts, total += s->w[i].bytes;
    const char **names = qt_malloc((np + 1) * sizeof *names);
    size_t *shard = qt_malloc((np + 1) * sizeof *shard), *ord = qt_malloc((np + 1) * sizeof *ord);
    QT_CHECK(names && shard && ord, QT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < s->n_w; i++)
        for (size_t p = 0; p < s->w[i].n_parts; p++) {
            names[k] = s->w[i].part[p].name;
            shard[k++] = s->w[i].shard;
        }
    QT_CHECK(sort_names(names, ord, np) == QT_OK, QT_ERR_NOMEM, "out of memory");
    qt_strbuf_printf(&b, "{\n  \"metadata\": {\n    \"total_size\": %" PRIu64 "\n  },\n"
                         "  \"weight_map\": {",
                     total);
    for (size_t i = 0; i < np; i++) {
        qt_strbuf_puts(&b, i ? ",\n    " : "\n    ");
        qt_strbuf_json_string(&b, names[ord[i]]);
        qt_strbuf_puts(&b, ": ");
        qt_strbuf_json_string(&b, s->files[shard[ord[i]]]);
    }
    qt_strbuf_puts(&b, "\n  }\n}\n");
    QT_CHECK(!b.oom, QT_ERR_NOMEM, "out of memory");
    char p[PATH_MAX];
    QT_CHECK(qt_path_join(p, sizeof p, s->stage.dir, "model.safetensors.index.json"), QT_ERR_ARG,
             "path too long");
    QT_TRY(qt_file_write(p, b.data, b.len, errmsg));
fail:
    qt_free(names);
    qt_free(shard);
    qt_free(ord);
    qt_strbuf_release(&b);
    return st;
}

/* config.json: the input's, with quantization_config for the run's scheme
 * and the dtype set to the compute dtype; no more readable than the input's. */
static qt_status write_config(sto *s, const char *const *skip, size_t n_skip, char *errmsg)
{
    qt_status st = QT_OK;
    char dst[PATH_MAX], *text = NULL, *out = NULL;
    size_t n, len;
    QT_CHECK(qt_path_join(dst, sizeof dst, s->stage.dir, "config.json"), QT_ERR_ARG,
             "path too long");
    QT_TRY(qt_file_read(s->m.config_path, &text, &n, 16u << 20, errmsg));
    qt_bnb_config cfg;
    qt_bnb_config_for(s->m.scheme, s->m.block, s->m.double_quant,
                      qt_dtype_torch_name(s->m.compute), &cfg);
    cfg.skip_modules = skip;
    cfg.n_skip = n_skip;
    QT_TRY(qt_bnb_config_rewrite(text, n, s->m.config_path, &cfg, &out, &len, errmsg));
    QT_TRY(qt_file_write(dst, out, len, errmsg));
    QT_TRY(qt_limit_mode(dst, s->m.config_path, errmsg)); /* never more readable than IN's */
fail:
    qt_free(text);
    qt_free(out);
    return st;
}

static qt_status op_commit(void *self, const char *const *skip, size_t n_skip, char *errmsg)
{
    sto *s = self;
    qt_status st = QT_OK;
    /* single pass: the shards are written now, from the spill */
    if (s->m.single_pass) {
        QT_TRY(spill_commit(s, errmsg));
        close(s->spill_fd);
        s->spill_fd = -1;
        unlink(s->spill_path);
    }
    /* every shard complete, fsync'd and renamed inside the staging folder */
    for (size_t i = 0; i < s->n_shards; i++) {
        st = qt_st_writer_close(s->wr[i], errmsg);
        s->wr[i] = NULL;
        QT_TRY(st);
    }
    if (s->n_shards > 1) QT_TRY(write_index(s, errmsg));
    QT_TRY(write_config(s, skip, n_skip, errmsg));
    QT_TRY(qt_out_stage_commit(&s->stage, errmsg));
fail:
    return st;
}

static void op_destroy(void *self)
{
    sto *s = self;
    if (!s) return;
    for (size_t i = 0; s->wr && i < s->n_shards; i++) qt_st_writer_abort(s->wr[i]);
    qt_free(s->wr);
    if (s->spill_fd >= 0) close(s->spill_fd);
    qt_out_stage_abort(&s->stage);
    for (size_t i = 0; i < s->n_w; i++) {
        free_parts(&s->w[i]);
        qt_free((char *)s->w[i].w.name);
    }
    qt_free(s->w);
    for (size_t i = 0; i < s->n_files; i++) qt_free(s->files[i]);
    qt_free(s->files);
    for (size_t i = 0; i < 2 * s->n_meta; i++) qt_free(s->meta[i]);
    qt_free(s->meta);
    qt_free(s);
}

const qt_outfmt_ops qt_out_safetensors_ops = {
    .name = "safetensors",
    .create = op_create,
    .declare = op_declare,
    .plan = op_plan,
    .redeclare = op_redeclare,
    .weight_bytes = op_weight_bytes,
    .n_files = op_n_files,
    .file = op_file,
    .n_weight_files = op_n_weight_files,
    .add_metadata = op_add_metadata,
    .begin = op_begin,
    .write_quant = op_write_quant,
    .write_plain = op_write_plain,
    .add_file = op_add_file,
    .stage_dir = op_stage_dir,
    .commit = op_commit,
    .destroy = op_destroy,
};
