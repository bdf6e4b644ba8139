/* formats/out_gguf.c: the GGUF output format behind the seam (out_gguf.h). */
#include "formats/out_gguf.h"

#include <stdio.h>
#include <string.h>

#include "formats/gguf_writer.h"

/* One declared weight. */
typedef struct og_weight {
    qt_gguf_tmap map;      /* GGUF name, role, Q/K permutation */
    qt_ggml_type type;
    uint32_t n_dims;
    int64_t ne[2];         /* ne[0] = HF last dimension */
    size_t row_bytes;      /* bytes of one stored row of ne[0] elements */
} og_weight;

typedef struct og {
    qt_out_model m;
    qt_out_gguf_opts o;
    qt_gguf_hparams hp;
    qt_gguf_writer *w;
    og_weight *ws;
    size_t n, cap;
    bool quantized;        /* some weight is in a block type */
} og;

/* ---- declaring ------------------------------------------------------------ */

static qt_status og_create(const qt_out_model *m, void **self, char *errmsg)
{
    qt_status st = QT_OK;
    og *g = qt_calloc(1, sizeof *g);
    QT_CHECK(g, QT_ERR_NOMEM, "out of memory");
    g->m = *m;
    QT_CHECK(m->format_opts, QT_ERR_ARG, "internal: gguf output without its options");
    g->o = *(const qt_out_gguf_opts *)m->format_opts;
    QT_TRY(qt_gguf_hparams_read(g->o.md, &g->hp, errmsg));
    QT_TRY(qt_gguf_writer_open(m->out, &g->w, errmsg));
    *self = g;
    return QT_OK;
fail:
    if (g) qt_gguf_writer_abort(g->w);
    qt_free(g);
    return st;
}

/* The ggml type of a declared weight: the scheme table's gguf_type for a
 * block scheme, the dtype for plain values. */
static qt_status weight_type(const qt_out_weight *w, qt_ggml_type *t, char *errmsg)
{
    if (w->quantized) {
        const qt_scheme_info *si = qt_scheme_get(w->scheme);
        if (si && si->block_bytes && si->gguf_type >= 0 && w->block == si->default_block) {
            *t = (qt_ggml_type)si->gguf_type;
            return QT_OK;
        }
    } else if (w->dtype == QT_DTYPE_F32 || w->dtype == QT_DTYPE_F16 || w->dtype == QT_DTYPE_BF16) {
        *t = w->dtype == QT_DTYPE_F32   ? QT_GGML_TYPE_F32
             : w->dtype == QT_DTYPE_F16 ? QT_GGML_TYPE_F16
                                        : QT_GGML_TYPE_BF16;
        return QT_OK;
    }
    return qt_set_err(errmsg, QT_ERR_ARG, "tensor '%s': GGUF has no type for this scheme or "
                      "dtype", w->name);
}

static qt_status og_declare(void *self, size_t id, const qt_out_weight *w, char *errmsg)
{
    og *g = self;
    qt_status st = QT_OK;
    QT_CHECK(id == g->n && (w->n_dims == 1 || w->n_dims == 2), QT_ERR_ARG,
             "tensor '%s': GGUF export takes 1-D and 2-D weights", w->name);
    if (g->n == g->cap) {
        size_t cap = g->cap ? 2 * g->cap : 64;
        og_weight *ws = qt_realloc(g->ws, cap * sizeof *ws);
        QT_CHECK(ws, QT_ERR_NOMEM, "out of memory");
        g->ws = ws;
        g->cap = cap;
    }
    og_weight *o = &g->ws[g->n];
    memset(o, 0, sizeof *o);
    if (strcmp(w->name, "rope_freqs.weight") == 0) { /* generated, already a GGUF name */
        snprintf(o->map.name, sizeof o->map.name, "%s", w->name);
        o->map.role = QT_GGUF_ROLE_ROPE_FREQS;
        o->map.layer = -1;
    } else {
        QT_TRY(qt_gguf_tensor_map(&g->hp, w->name, &o->map, errmsg));
        QT_CHECK(!o->map.skip, QT_ERR_ARG, "tensor '%s': not a GGUF tensor", w->name);
    }
    QT_TRY(weight_type(w, &o->type, errmsg));
    o->n_dims = (uint32_t)w->n_dims;
    o->ne[0] = (int64_t)w->shape[w->n_dims - 1];
    o->ne[1] = w->n_dims == 2 ? (int64_t)w->shape[0] : 1;
    int64_t blck = qt_ggml_blck_size(o->type);
    QT_CHECK(o->ne[0] % blck == 0, QT_ERR_ARG, "tensor '%s': rows of %lld are not whole %s "
             "blocks", w->name, (long long)o->ne[0], qt_ggml_type_name(o->type));
    o->row_bytes = (size_t)(o->ne[0] / blck) * qt_ggml_type_size(o->type);
    g->quantized |= w->quantized;
    g->n++;
fail:
    return st;
}

static qt_status og_redeclare(void *self, size_t id, const qt_out_weight *w, char *errmsg)
{
    (void)self;
    (void)id;
    return qt_set_err(errmsg, QT_ERR_ARG, "tensor '%s': GGUF tensors cannot be redeclared",
                      w->name);
}

/* Metadata (§2, §4) and the tensor infos. The vocabulary has one entry
 * per token_embd row. */
static qt_status og_plan(void *self, char *errmsg)
{
    og *g = self;
    qt_status st = QT_OK;
    for (size_t i = 0; i < g->n; i++)
        if (g->ws[i].map.role == QT_GGUF_ROLE_TOKEN_EMBD) g->hp.vocab = (uint32_t)g->ws[i].ne[1];
    QT_CHECK(g->hp.vocab > 0, QT_ERR_ARG, "GGUF output without token_embd");
    errmsg[0] = 0;
    const char *path = qt_modeldir_path(g->o.md), *slash = strrchr(path, '/');
    const char *name = slash && slash[1] ? slash + 1 : path;
    st = qt_gguf_hparams_write(g->w, &g->hp, name, g->o.ftype, g->quantized);
    if (st == QT_OK) st = qt_gguf_vocab_write(g->w, g->o.md, &g->hp, g->o.pre, errmsg);
    for (size_t i = 0; i < g->o.n_kv && st == QT_OK; i++) /* the caller's provenance */
        st = qt_gguf_writer_add_str(g->w, g->o.kv[2 * i], g->o.kv[2 * i + 1],
                                    strlen(g->o.kv[2 * i + 1]));
    for (size_t i = 0; i < g->n && st == QT_OK; i++)
        st = qt_gguf_writer_add_tensor(g->w, g->ws[i].map.name, g->ws[i].n_dims, g->ws[i].ne,
                                       g->ws[i].type, NULL);
    if (st != QT_OK && !errmsg[0]) qt_set_err(errmsg, st, "%s", qt_gguf_writer_errmsg(g->w));
fail:
    return st;
}

static uint64_t og_weight_bytes(const void *self, size_t id)
{
    const og *g = self;
    return qt_gguf_writer_tensor_nbytes(g->w, id);
}

static uint64_t og_total_bytes(const void *self)
{
    return qt_gguf_writer_file_size(((const og *)self)->w);
}

static size_t og_n_files(const void *self)
{
    (void)self;
    return 1;
}

/* The one file is OUT itself: its name relative to OUT is "". */
static const char *og_file(const void *self, size_t i)
{
    (void)self;
    return i == 0 ? "" : NULL;
}

static qt_status og_add_metadata(void *self, const char *key, const char *value, char *errmsg)
{
    (void)self, (void)key, (void)value, (void)errmsg;
    return QT_OK;
}

/* ---- writing ------------------------------------------------------------------- */

static qt_status og_begin(void *self, bool replace, char *errmsg)
{
    og *g = self;
    (void)replace; /* the rename replaces OUT */
    qt_status st = qt_gguf_writer_begin(g->w);
    return st == QT_OK ? st : qt_set_err(errmsg, st, "%s", qt_gguf_writer_errmsg(g->w));
}

/* Writes n bytes of weight id at HF byte offset off: rows of a Q/K weight
 * go to their llama.cpp position (whole rows move; a piece may cut rows). */
static qt_status put(og *g, size_t id, uint64_t off, const unsigned char *data, size_t n,
                     char *errmsg)
{
    const og_weight *o = &g->ws[id];
    qt_status st = QT_OK;
    /* a permuted bias is a column of one-element rows */
    size_t rb = o->n_dims == 2 ? o->row_bytes : qt_ggml_type_size(o->type);
    size_t rows = o->n_dims == 2 ? (size_t)o->ne[1] : (size_t)o->ne[0];
    if (!o->map.permute_heads) {
        st = qt_gguf_writer_write_at(g->w, id, off, data, n);
    } else {
        while (n && st == QT_OK) {
            size_t hf_row = (size_t)(off / rb), within = (size_t)(off % rb);
            size_t k = rb - within < n ? rb - within : n;
            size_t to = qt_gguf_qk_dst_row(hf_row, rows, o->map.permute_heads);
            st = qt_gguf_writer_write_at(g->w, id, (uint64_t)to * rb + within, data, k);
            data += k, off += k, n -= k;
        }
    }
    return st == QT_OK ? st : qt_set_err(errmsg, st, "%s", qt_gguf_writer_errmsg(g->w));
}

static qt_status og_write_quant(void *self, size_t id, const qt_qweight *q, char *errmsg)
{
    og *g = self;
    const og_weight *o = &g->ws[id];
    if (q->n_in != (size_t)o->ne[0] || q->n_out != (size_t)o->ne[1] ||
        qt_scheme_get(q->scheme)->gguf_type != (int)o->type)
        return qt_set_err(errmsg, QT_ERR_ARG, "tensor '%s': the quantized weight differs from "
                          "its declaration", o->map.name);
    return put(g, id, 0, q->data, o->row_bytes * (size_t)o->ne[1], errmsg);
}

static qt_status og_write_plain(void *self, size_t id, uint64_t offset, const void *data,
                                size_t n, char *errmsg)
{
    return put(self, id, offset, data, n, errmsg);
}

static qt_status og_add_file(void *self, const char *name, const char *src_path, char *errmsg)
{
    (void)self, (void)name, (void)src_path, (void)errmsg;
    return QT_OK;
}

static qt_status og_commit(void *self, const char *const *skip_modules, size_t n_skip,
                           char *errmsg)
{
    og *g = self;
    (void)skip_modules, (void)n_skip;
    qt_status st = qt_gguf_writer_close(g->w, errmsg);
    g->w = NULL;
    return st;
}

static void og_destroy(void *self)
{
    og *g = self;
    if (!g) return;
    qt_gguf_writer_abort(g->w);
    qt_free(g->ws);
    qt_free(g);
}

const qt_outfmt_ops qt_out_gguf_ops = {
    .name = "gguf",
    .create = og_create,
    .declare = og_declare,
    .plan = og_plan,
    .redeclare = og_redeclare,
    .weight_bytes = og_weight_bytes,
    .total_bytes = og_total_bytes,
    .n_files = og_n_files,
    .file = og_file,
    .n_weight_files = og_n_files,
    .add_metadata = og_add_metadata,
    .begin = og_begin,
    .write_quant = og_write_quant,
    .write_plain = og_write_plain,
    .add_file = og_add_file,
    .commit = og_commit,
    .destroy = og_destroy,
};
