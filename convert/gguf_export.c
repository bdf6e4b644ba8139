/* convert/gguf_export.c: HF checkpoint -> GGUF (gguf_export.h): plan the
 * tensors (names, order, shapes llama.cpp checks, types), then stream them
 * through the kernels, in chunks of whole rows, into the "gguf" output
 * format behind the seam (formats/outfmt.h, formats/out_gguf.c). */
#include "convert/gguf_export.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/half.h"
#include "common/progress.h"
#include "convert/gguf_budget.h"
#include "convert/gguf_quant.h"
#include "formats/fsutil.h"
#include "formats/modeldir.h"
#include "formats/out_gguf.h"
#include "formats/outfmt.h"

/* Elements converted per chunk (bounds the working memory: 16 MiB of f32). */
#define GX_CHUNK_ELEMS ((size_t)4 << 20)

/* One output tensor. */
typedef struct gx_item {
    const qt_st_tensor *src; /* NULL: generated (rope_freqs) */
    qt_st_reader *rd;
    qt_gguf_tmap map;
    uint32_t n_dims;
    int64_t ne[2];           /* ne[0] = HF last dimension */
    qt_ggml_type type;
    bool fallback;
    size_t bud;              /* --budget: 1 + its index in the budget's matrices; 0 = none */
} gx_item;

typedef struct gx_plan {
    qt_modeldir *md;
    qt_gguf_hparams hp;
    qt_gguf_policy pol;
    gx_item *items;
    size_t n;
    bool has_output;
    qt_gguf_budget bud;      /* --budget: the matrices, candidates and choice */
    const qt_calib_set *set; /* --budget: borrowed from calib_get */
} gx_plan;

static void plan_release(gx_plan *p)
{
    qt_gguf_budget_release(&p->bud);
    qt_free(p->items);
    qt_modeldir_close(p->md);
    memset(p, 0, sizeof *p);
}

/* ---- planning -------------------------------------------------------------------- */

/* Deterministic order of §1: rope_freqs, token_embd, blocks (role order), output_norm, output. */
static int item_cmp(const void *a, const void *b)
{
    const gx_item *x = a, *y = b;
    int ox = qt_gguf_role_order(x->map.role), oy = qt_gguf_role_order(y->map.role);
    int bx = x->map.layer < 0 ? (ox < 10 ? -1 : INT32_MAX) : x->map.layer;
    int by = y->map.layer < 0 ? (oy < 10 ? -1 : INT32_MAX) : y->map.layer;
    if (bx != by) return bx < by ? -1 : 1;
    return (ox > oy) - (ox < oy);
}

/* The shape llama.cpp's create_tensor expects for a role: ne0, ne1 (0 = 1-D). */
static void expected_shape(const qt_gguf_hparams *hp, qt_gguf_role r, int64_t *e0, int64_t *e1)
{
    int64_t h = hp->hidden, q = (int64_t)hp->n_head * hp->head_dim;
    int64_t kv = (int64_t)hp->n_kv_head * hp->head_dim, ff = hp->ff, v = hp->vocab;
    *e1 = 0;
    switch (r) {
    case QT_GGUF_ROLE_TOKEN_EMBD:
    case QT_GGUF_ROLE_OUTPUT: *e0 = h, *e1 = v; break;
    case QT_GGUF_ROLE_ATTN_Q: *e0 = h, *e1 = q; break;
    case QT_GGUF_ROLE_ATTN_K:
    case QT_GGUF_ROLE_ATTN_V: *e0 = h, *e1 = kv; break;
    case QT_GGUF_ROLE_ATTN_OUTPUT: *e0 = q, *e1 = h; break;
    case QT_GGUF_ROLE_FFN_GATE:
    case QT_GGUF_ROLE_FFN_UP: *e0 = h, *e1 = ff; break;
    case QT_GGUF_ROLE_FFN_DOWN: *e0 = ff, *e1 = h; break;
    case QT_GGUF_ROLE_ATTN_Q_BIAS: *e0 = q; break;
    case QT_GGUF_ROLE_ATTN_K_BIAS:
    case QT_GGUF_ROLE_ATTN_V_BIAS: *e0 = kv; break;
    case QT_GGUF_ROLE_ROPE_FREQS: *e0 = hp->head_dim / 2; break;
    default: *e0 = h; break; /* norms */
    }
}

/* Checks a mapped tensor's dtype and shape against what llama.cpp expects. */
static qt_status check_item(const gx_plan *p, const gx_item *it, char *errmsg)
{
    qt_status st = QT_OK;
    const qt_st_tensor *t = it->src;
    qt_dtype d = t->dtype;
    QT_CHECK(d == QT_DTYPE_F32 || d == QT_DTYPE_F16 || d == QT_DTYPE_BF16, QT_ERR_UNSUPPORTED,
             "%s: tensor '%s': dtype %s cannot be exported (F32, F16, BF16 checkpoints only)",
             qt_st_reader_path(it->rd), t->name, qt_dtype_name(d));
    int64_t e0, e1;
    expected_shape(&p->hp, it->map.role, &e0, &e1);
    bool ok = e1 ? (t->n_dims == 2 && (int64_t)t->shape[1] == e0 && (int64_t)t->shape[0] == e1)
                 : (t->n_dims == 1 && (int64_t)t->shape[0] == e0);
    QT_CHECK(ok, QT_ERR_FORMAT, "%s: tensor '%s': shape does not match config.json: llama.cpp "
             "expects GGUF '%s' with ne [%lld%s%.0lld]", qt_st_reader_path(it->rd), t->name,
             it->map.name, (long long)e0, e1 ? ", " : "", (long long)e1);
fail:
    return st;
}

/* The vocabulary size llama.cpp will see: embed_tokens rows (config.json's
 * vocab_size must agree). */
static qt_status plan_vocab(gx_plan *p, char *errmsg)
{
    qt_status st = QT_OK;
    const qt_st_tensor *e = qt_modeldir_find(p->md, "model.embed_tokens.weight", NULL);
    QT_CHECK(e && e->n_dims == 2, QT_ERR_FORMAT, "%s: tensor 'model.embed_tokens.weight' is "
             "missing or not 2-D (llama.cpp requires token_embd)", qt_modeldir_path(p->md));
    QT_CHECK(!p->hp.has_vocab || e->shape[0] == p->hp.vocab, QT_ERR_FORMAT, "config.json: key "
             "'vocab_size' %u differs from the %llu rows of model.embed_tokens.weight",
             p->hp.vocab, (unsigned long long)e->shape[0]);
    QT_CHECK(e->shape[0] > 0 && e->shape[0] <= UINT32_MAX, QT_ERR_FORMAT,
             "tensor 'model.embed_tokens.weight': bad vocabulary size");
    p->hp.vocab = (uint32_t)e->shape[0];
fail:
    return st;
}

/* Every block has its nine matrices and norms (qwen2: and the q/k/v biases). */
static qt_status check_complete(const gx_plan *p, char *errmsg)
{
    qt_status st = QT_OK;
    bool qwen2 = strcmp(p->hp.arch, "qwen2") == 0;
    unsigned need = 0;
    for (int r = QT_GGUF_ROLE_ATTN_NORM; r <= QT_GGUF_ROLE_ATTN_V_BIAS; r++)
        if (r <= QT_GGUF_ROLE_FFN_DOWN || qwen2) need |= 1u << r;
    unsigned *have = qt_calloc(p->hp.n_layers, sizeof *have);
    bool out_norm = false;
    QT_CHECK(have, QT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < p->n; i++) {
        const gx_item *it = &p->items[i];
        if (it->map.layer >= 0) have[it->map.layer] |= 1u << it->map.role;
        if (it->map.role == QT_GGUF_ROLE_OUTPUT_NORM) out_norm = true;
    }
    QT_CHECK(out_norm, QT_ERR_FORMAT, "%s: tensor 'model.norm.weight' is missing (llama.cpp "
             "requires output_norm)", qt_modeldir_path(p->md));
    for (uint32_t l = 0; l < p->hp.n_layers; l++) {
        unsigned miss = need & ~have[l];
        if (!miss) continue;
        int r = __builtin_ctz(miss);
        QT_CHECK(0, QT_ERR_FORMAT, "%s: block %u has no '%s' tensor (llama.cpp requires "
                 "blk.%u.%s)", qt_modeldir_path(p->md), l, qt_gguf_role_name((qt_gguf_role)r), l,
                 qt_gguf_role_name((qt_gguf_role)r));
    }
fail:
    qt_free(have);
    return st;
}

/* Maps every HF tensor, adds rope_freqs, orders them, checks them. */
static qt_status plan_items(gx_plan *p, char *errmsg)
{
    qt_status st = QT_OK;
    size_t n = qt_modeldir_n_tensors(p->md);
    p->items = qt_calloc(n + 1, sizeof *p->items);
    QT_CHECK(p->items, QT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        gx_item *it = &p->items[p->n];
        it->src = qt_modeldir_tensor(p->md, i, &it->rd);
        QT_TRY(qt_gguf_tensor_map(&p->hp, it->src->name, &it->map, errmsg));
        if (it->map.skip) continue;
        QT_TRY(check_item(p, it, errmsg));
        it->n_dims = (uint32_t)it->src->n_dims;
        it->ne[0] = (int64_t)it->src->shape[it->n_dims - 1];
        it->ne[1] = it->n_dims == 2 ? (int64_t)it->src->shape[0] : 1;
        if (it->map.role == QT_GGUF_ROLE_OUTPUT) p->has_output = true;
        p->n++;
    }
    if (p->hp.rope == QT_GGUF_ROPE_LLAMA3) {
        gx_item *it = &p->items[p->n++];
        snprintf(it->map.name, sizeof it->map.name, "rope_freqs.weight");
        it->map.role = QT_GGUF_ROLE_ROPE_FREQS;
        it->map.layer = -1;
        it->n_dims = 1;
        it->ne[0] = p->hp.head_dim / 2;
        it->ne[1] = 1;
    }
    qsort(p->items, p->n, sizeof *p->items, item_cmp);
    QT_TRY(check_complete(p, errmsg));
fail:
    return st;
}

/* Types for every item (the policy). */
static void plan_types(gx_plan *p)
{
    for (size_t i = 0; i < p->n; i++) {
        gx_item *it = &p->items[i];
        it->type = qt_gguf_policy_type(&p->pol, it->map.role, it->map.layer, it->n_dims,
                                       it->ne[0], &it->fallback);
    }
}

/* The summary's counts of quantized tensors and fallbacks. */
static void count_types(const gx_plan *p, qt_gguf_export_summary *sum)
{
    sum->n_fallback = sum->n_quantized = 0;
    for (size_t i = 0; i < p->n; i++) {
        const gx_item *it = &p->items[i];
        sum->n_fallback += it->fallback;
        sum->n_quantized += it->type != QT_GGML_TYPE_F32 && it->type != QT_GGML_TYPE_F16 &&
                            it->type != QT_GGML_TYPE_BF16;
    }
}

static qt_status plan_open(const qt_gguf_export_opts *o, gx_plan *p, qt_gguf_export_summary *sum,
                           char *errmsg)
{
    qt_status st = QT_OK;
    memset(p, 0, sizeof *p);
    const qt_gguf_scheme *s = qt_gguf_scheme_find(o->scheme);
    QT_CHECK(s, QT_ERR_ARG, "--scheme '%s' is not a GGUF scheme (%s)", o->scheme ? o->scheme : "",
             qt_gguf_scheme_names());
    QT_TRY(qt_modeldir_open_ex(o->in, o->follow_symlinks ? QT_MODELDIR_FOLLOW_SYMLINKS : 0,
                               &p->md, NULL, NULL, errmsg));
    QT_TRY(qt_gguf_hparams_read(p->md, &p->hp, errmsg));
    QT_TRY(plan_vocab(p, errmsg));
    QT_TRY(plan_items(p, errmsg));
    p->pol.scheme = s;
    p->pol.pure = o->pure;
    p->pol.tied = !p->has_output;
    p->pol.n_layers = p->hp.n_layers;
    p->pol.n_gqa = p->hp.n_head / p->hp.n_kv_head;
    p->pol.is_70b = p->hp.n_layers == 80 &&
                    (strcmp(p->hp.arch, "qwen2") == 0 || p->hp.n_head != p->hp.n_kv_head);
    sum->ftype = s->ftype;
    plan_types(p);
    count_types(p, sum);
fail:
    return st;
}

/* ---- --budget ---------------------------------------------------------------------------- */

/* The budget's matrices: the decoder Linears with a block-type candidate,
 * each from the type the scheme / policy gives it. */
static qt_status budget_collect(gx_plan *p, char *errmsg)
{
    qt_status st = QT_OK;
    for (size_t i = 0; i < p->n; i++) {
        gx_item *it = &p->items[i];
        if (!it->src || it->n_dims != 2 || !qt_gguf_budget_role(it->map.role)) continue;
        qt_ggml_type base = qt_gguf_policy_base(&p->pol, it->map.role, it->map.layer, it->n_dims,
                                                it->ne[0]);
        bool added = false;
        QT_TRY(qt_gguf_budget_add(&p->bud, it->map.name, it->src, it->rd, base, &added, errmsg));
        if (added) it->bud = p->bud.n;
    }
fail:
    return st;
}

/* The chosen candidates into the items' types. */
static void budget_apply(gx_plan *p, qt_gguf_export_summary *sum)
{
    for (size_t i = 0; i < p->n; i++) {
        gx_item *it = &p->items[i];
        if (!it->bud) continue;
        const qt_gguf_bmat *m = &p->bud.m[it->bud - 1];
        const qt_gguf_bcand *c = &m->cand[m->chosen];
        it->type = c->type;
        it->fallback = c->type != c->asked; /* rows not whole blocks of the candidate */
    }
    count_types(p, sum);
    sum->budget_n = p->bud.n;
    sum->budget_steps = p->bud.n_steps;
    sum->budget_bpw = qt_gguf_budget_bpw(&p->bud);
}

/* --budget: the matrices and the range check (before any calibration
 * pass), then the calibration set, the measurements and the choice. */
static qt_status plan_budget(const qt_gguf_export_opts *o, gx_plan *p,
                             qt_gguf_export_summary *sum, char *errmsg)
{
    qt_status st = QT_OK;
    if (!(o->budget_bpw > 0)) return QT_OK;
    /* a scheme that quantizes, and a calibration set to come */
    QT_CHECK(qt_gguf_block_scheme(p->pol.scheme->type) != QT_SCHEME_COUNT, QT_ERR_ARG,
             "--budget: scheme '%s' does not quantize (give a block type such as q4_k or "
             "Q4_K_M)", p->pol.scheme->name);
    QT_CHECK(o->calib_get, QT_ERR_ARG, "--budget needs a calibration set (--calib TEXT)");
    /* the matrices, their candidates and the feasible range */
    QT_TRY(budget_collect(p, errmsg));
    qt_gguf_budget_range(&p->bud, &sum->budget_lo, &sum->budget_hi);
    QT_TRY(qt_gguf_budget_check(&p->bud, o->budget_bpw, errmsg));
    /* measure every candidate, choose */
    QT_TRY(o->calib_get(o->calib_ctx, &p->set, errmsg));
    QT_TRY(qt_gguf_budget_measure(&p->bud, p->set, o->allow_nonfinite, o->cancel, errmsg));
    QT_TRY(qt_gguf_budget_choose(&p->bud, o->budget_bpw, errmsg));
    budget_apply(p, sum);
fail:
    return st;
}

/* The value of the metadata key "qtool.budget". */
static void budget_meta(const gx_plan *p, char *v, size_t n)
{
    double lo, hi;
    qt_gguf_budget_range(&p->bud, &lo, &hi);
    snprintf(v, n, "bpw=%.6g;achieved_bpw=%.6g;feasible=%.6g..%.6g;matrices=%zu;steps=%zu;"
             "calib=%.16s", p->bud.bpw, qt_gguf_budget_bpw(&p->bud), lo, hi, p->bud.n,
             p->bud.n_steps, p->set ? qt_calib_set_fingerprint(p->set) : "");
}

/* ---- metadata and tensor infos ------------------------------------------------------ */

/* The seam's description of an item: HF name and shape, a block scheme
 * or a plain dtype. */
static qt_out_weight out_weight(const gx_item *it)
{
    qt_out_weight w = {.name = it->src ? it->src->name : it->map.name,
                       .n_dims = it->n_dims};
    qt_scheme s = qt_gguf_block_scheme(it->type);
    w.quantized = s != QT_SCHEME_COUNT;
    w.scheme = s;
    w.block = w.quantized ? qt_scheme_get(s)->default_block : 0;
    w.dtype = it->type == QT_GGML_TYPE_F16    ? QT_DTYPE_F16
              : it->type == QT_GGML_TYPE_BF16 ? QT_DTYPE_BF16
                                              : QT_DTYPE_F32;
    if (it->n_dims == 2) {
        w.shape[0] = (uint64_t)it->ne[1];
        w.shape[1] = (uint64_t)it->ne[0];
    } else {
        w.shape[0] = (uint64_t)it->ne[0];
    }
    return w;
}

/* Creates the "gguf" output and declares every item in plan order. */
static qt_status declare(qt_outfmt **out, const gx_plan *p, const qt_gguf_export_opts *o,
                         const qt_out_gguf_opts *go, char *errmsg)
{
    qt_status st = QT_OK;
    qt_out_model m = {.out = o->out, .format_opts = go};
    QT_TRY(qt_outfmt_new("gguf", &m, out, errmsg));
    for (size_t i = 0; i < p->n; i++) {
        qt_out_weight w = out_weight(&p->items[i]);
        size_t id;
        QT_TRY(qt_outfmt_declare(*out, &w, &id, errmsg));
    }
    QT_TRY(qt_outfmt_plan(*out, errmsg));
fail:
    return st;
}

/* ---- streaming the data ---------------------------------------------------------------- */

/* Rows per chunk: about GX_CHUNK_ELEMS elements. */
static size_t chunk_rows(const gx_item *it)
{
    size_t rows = (size_t)it->ne[1], r = GX_CHUNK_ELEMS / (size_t)it->ne[0];
    if (r == 0) r = 1;
    return r < rows ? r : rows;
}

/* Source rows [r0, r0+nr) of a tensor as f32 into buf (HF order: the
 * output format moves Q/K rows). */
static qt_status read_rows(const gx_plan *p, const gx_item *it, size_t r0, size_t nr, float *buf,
                           char *errmsg)
{
    size_t ne0 = (size_t)it->ne[0];
    if (!it->src) { /* generated: rope_freqs */
        qt_gguf_llama3_rope_freqs(&p->hp, buf);
        return QT_OK;
    }
    return qt_st_tensor_to_f32(it->rd, it->src, (uint64_t)r0 * ne0, nr * ne0, buf, errmsg);
}

/* Values beyond fp16's range become +-inf in an F16 tensor: counted for a
 * warning (plain types keep NaN / Inf as they are; block types are checked
 * by the kernels, quantize_src_rows). */
static void count_f16_overflow(const gx_item *it, const float *x, size_t n,
                               qt_gguf_export_summary *sum)
{
    if (it->type != QT_GGML_TYPE_F16) return;
    for (size_t i = 0; i < n; i++)
        if (isfinite(x[i]) && fabsf(x[i]) > 65504.0f) sum->n_f16_overflow++;
}

/* The kernels' source type of a checkpoint dtype (F32, F16, BF16 only:
 * plan checked). */
static qt_src_type src_type(qt_dtype d)
{
    return d == QT_DTYPE_F16 ? QT_SRC_F16 : d == QT_DTYPE_BF16 ? QT_SRC_BF16 : QT_SRC_F32;
}

/* Rows [r0, r0+nr) of a checkpoint tensor quantized to block scheme blk
 * straight from the mapped source (the kernels widen each row to fp32 and
 * check it; OpenMP over rows). */
static qt_status quantize_src_rows(const gx_item *it, qt_scheme blk, size_t r0, size_t nr,
                                   bool allow_nonfinite, unsigned char *dst, char *errmsg)
{
    size_t ne0 = (size_t)it->ne[0], es = qt_dtype_bits(it->src->dtype) / 8, bad = 0;
    const unsigned char *src = (const unsigned char *)it->src->data + r0 * ne0 * es;
    qt_status st = qt_blk_quantize(NULL, blk, src_type(it->src->dtype), src, nr, ne0,
                                   allow_nonfinite, dst, &bad);
    if (st == QT_ERR_NUMERIC)
        return qt_set_err(errmsg, st, "tensor '%s': row %zu holds NaN or Inf: refusing to "
                          "quantize it to %s (--allow-nonfinite to force)", it->src->name,
                          r0 + bad, qt_ggml_type_name(it->type));
    if (st != QT_OK)
        return qt_set_err(errmsg, st, "tensor '%s': quantizing to %s failed (%s)", it->src->name,
                          qt_ggml_type_name(it->type), qt_status_str(st));
    return QT_OK;
}

/* Converts, checks and quantizes one tensor chunk by chunk: plain values
 * go out per chunk, block types are assembled whole (the seam takes a
 * quantized weight at once) in qbuf. */
static qt_status write_item(qt_outfmt *out, size_t id, const gx_plan *p, const gx_item *it,
                            const qt_gguf_export_opts *o, float *buf, unsigned char *qbuf,
                            qt_gguf_export_summary *sum, qt_progress *prog, char *errmsg)
{
    qt_status st = QT_OK;
    size_t ne0 = (size_t)it->ne[0], rows = (size_t)it->ne[1], step = chunk_rows(it);
    size_t row_bytes = qt_gguf_row_bytes(it->type, ne0);
    qt_scheme blk = qt_gguf_block_scheme(it->type);
    for (size_t r0 = 0; r0 < rows; r0 += step) {
        size_t nr = rows - r0 < step ? rows - r0 : step;
        QT_CHECK(!o->cancel || !*o->cancel, QT_ERR_ARG, "cancelled");
        if (blk != QT_SCHEME_COUNT && it->src) {
            QT_TRY(quantize_src_rows(it, blk, r0, nr, o->allow_nonfinite, qbuf + r0 * row_bytes,
                                     errmsg));
        } else {
            QT_TRY(read_rows(p, it, r0, nr, buf, errmsg));
            count_f16_overflow(it, buf, nr * ne0, sum);
            QT_TRY(qt_gguf_quantize_rows(it->type, buf, nr, ne0, qbuf, errmsg));
            QT_TRY(qt_outfmt_write_plain(out, id, (uint64_t)r0 * row_bytes, qbuf,
                                         nr * row_bytes, errmsg));
        }
        qt_progress_add(prog, 0, nr * ne0 * (it->src ? qt_dtype_bits(it->src->dtype) / 8 : 4));
    }
    if (blk != QT_SCHEME_COUNT) {
        qt_qweight q = {.scheme = blk, .n_out = rows, .n_in = ne0,
                        .block_size = qt_scheme_get(blk)->default_block, .data = qbuf};
        QT_TRY(qt_outfmt_write_quant(out, id, &q, errmsg));
    }
    if (it->src) qt_st_tensor_release(it->rd, it->src);
    qt_progress_add(prog, 1, 0);
fail:
    return st;
}

/* Buffer sizes: the largest chunk in f32 elements; output bytes: a chunk
 * of plain values, or a whole tensor of a block type. */
static void chunk_sizes(const gx_plan *p, size_t *elems, size_t *bytes)
{
    *elems = *bytes = 0;
    for (size_t i = 0; i < p->n; i++) {
        const gx_item *it = &p->items[i];
        size_t nr = chunk_rows(it), e = nr * (size_t)it->ne[0];
        if (qt_gguf_block_scheme(it->type) != QT_SCHEME_COUNT) nr = (size_t)it->ne[1];
        size_t b = nr * qt_gguf_row_bytes(it->type, (size_t)it->ne[0]);
        if (e > *elems) *elems = e;
        if (b > *bytes) *bytes = b;
    }
}

static qt_status write_data(qt_outfmt *out, const gx_plan *p, const qt_gguf_export_opts *o,
                            qt_gguf_export_summary *sum, char *errmsg)
{
    qt_status st = QT_OK;
    size_t elems, bytes;
    chunk_sizes(p, &elems, &bytes);
    float *buf = qt_aligned_alloc(64, (elems ? elems : 1) * sizeof *buf);
    unsigned char *qbuf = qt_aligned_alloc(64, bytes ? bytes : 1);
    qt_progress prog;
    QT_CHECK(buf && qbuf, QT_ERR_NOMEM, "out of memory for the conversion buffers");
    qt_progress_init(&prog, o->progress, o->progress != NULL, "gguf", p->n, sum->bytes_in);
    for (size_t i = 0; i < p->n; i++)
        QT_TRY(write_item(out, i, p, &p->items[i], o, buf, qbuf, sum, &prog, errmsg));
    qt_progress_finish(&prog);
fail:
    qt_aligned_free(buf);
    qt_aligned_free(qbuf);
    return st;
}

/* ---- the dry run ---------------------------------------------------------------------- */

/* --budget: a matrix's measured candidates ("*" marks the chosen one). */
static void print_cands(FILE *f, const qt_gguf_bmat *m)
{
    fputs("  rel.err:", f);
    for (size_t j = 0; j < m->n_cand; j++)
        fprintf(f, " %s%s %.4g", j == m->chosen ? "*" : "", qt_ggml_type_name(m->cand[j].type),
                m->cand[j].rel);
}

/* --budget: the achieved bits per weight and the range. */
static void print_budget(FILE *f, const gx_plan *p)
{
    double lo, hi;
    qt_gguf_budget_range(&p->bud, &lo, &hi);
    fprintf(f, "budget: %.4f bits per weight over %zu matrices (asked %g, feasible [%.4f, %.4f]), "
            "%zu upgrade steps, %llu bytes\n", qt_gguf_budget_bpw(&p->bud), p->bud.n, p->bud.bpw,
            lo, hi, p->bud.n_steps, (unsigned long long)p->bud.bytes);
}

static void print_plan(FILE *f, const gx_plan *p, uint64_t file_size)
{
    if (!f) return;
    fprintf(f, "%-32s %-8s %-18s %12s %6s\n", "TENSOR", "TYPE", "NE", "BYTES", "BPW");
    for (size_t i = 0; i < p->n; i++) {
        const gx_item *it = &p->items[i];
        char ne[40];
        if (it->n_dims == 2)
            snprintf(ne, sizeof ne, "[%lld, %lld]", (long long)it->ne[0], (long long)it->ne[1]);
        else
            snprintf(ne, sizeof ne, "[%lld]", (long long)it->ne[0]);
        size_t b = qt_gguf_row_bytes(it->type, (size_t)it->ne[0]) * (size_t)it->ne[1];
        fprintf(f, "%-32s %-8s %-18s %12zu %6.2f%s", it->map.name, qt_ggml_type_name(it->type),
                ne, b, 8.0 * (double)b / (double)(it->ne[0] * it->ne[1]),
                it->fallback ? "  (fallback: rows not whole blocks)" : "");
        if (it->bud) print_cands(f, &p->bud.m[it->bud - 1]);
        fputc('\n', f);
    }
    if (p->bud.n) print_budget(f, p);
    fprintf(f, "file size: %llu bytes\n", (unsigned long long)file_size);
}

/* ---- the report ------------------------------------------------------------------------ */

/* The JSON report: the run, the calibration set, every tensor's type and
 * (--budget) the decision table. *out: caller frees with qt_free. */
static qt_status build_report(const qt_gguf_export_opts *o, const gx_plan *p, uint64_t file_bytes,
                              char **out, char *errmsg)
{
    qt_strbuf b = {0};
    /* the run */
    qt_strbuf_puts(&b, "{\n  \"input\": ");
    qt_strbuf_json_string(&b, o->in);
    qt_strbuf_puts(&b, ",\n  \"output\": ");
    qt_strbuf_json_string(&b, o->out);
    qt_strbuf_printf(&b, ",\n  \"format\": \"gguf\",\n  \"scheme\": \"%s\",\n  \"dry_run\": %s,"
                     "\n  \"file_bytes\": %llu", p->pol.scheme->name, o->dry_run ? "true" : "false",
                     (unsigned long long)file_bytes);
    /* the calibration set */
    if (p->set)
        qt_strbuf_printf(&b, ",\n  \"calibration\": {\"tokens\": %zu, \"rows\": %zu, "
                         "\"fingerprint\": \"%s\"}", qt_calib_set_n_tokens(p->set),
                         qt_calib_set_n_rows(p->set), qt_calib_set_fingerprint(p->set));
    /* every tensor */
    qt_strbuf_puts(&b, ",\n  \"tensors\": [");
    for (size_t i = 0; i < p->n; i++) {
        const gx_item *it = &p->items[i];
        qt_strbuf_puts(&b, i ? ",\n    {\"name\": " : "\n    {\"name\": ");
        qt_strbuf_json_string(&b, it->map.name);
        qt_strbuf_printf(&b, ", \"type\": \"%s\", \"bytes\": %zu, \"fallback\": %s}",
                         qt_ggml_type_name(it->type),
                         qt_gguf_row_bytes(it->type, (size_t)it->ne[0]) * (size_t)it->ne[1],
                         it->fallback ? "true" : "false");
    }
    qt_strbuf_puts(&b, "\n  ]");
    /* the decision table */
    if (p->bud.n) {
        qt_strbuf_puts(&b, ",\n  \"budget\": ");
        qt_gguf_budget_json(&p->bud, &b);
    }
    qt_strbuf_puts(&b, "\n}\n");
    if (b.oom) {
        qt_strbuf_release(&b);
        return qt_set_err(errmsg, QT_ERR_NOMEM, "out of memory for the report");
    }
    *out = b.data;
    return QT_OK;
}

/* Notes the fallbacks on the plan stream (written files only). */
static void print_fallbacks(FILE *f, const gx_plan *p)
{
    for (size_t i = 0; f && i < p->n; i++)
        if (p->items[i].fallback)
            fprintf(f, "qtool: %s ne0=%lld: rows are not whole blocks of the planned type "
                    "-> %s\n", p->items[i].map.name, (long long)p->items[i].ne[0],
                    qt_ggml_type_name(p->items[i].type));
}

/* ---- entry ----------------------------------------------------------------------------- */

qt_status qt_gguf_export(const qt_gguf_export_opts *o, qt_gguf_export_summary *sum, char *errmsg)
{
    qt_status st = QT_OK;
    gx_plan p;
    qt_outfmt *out = NULL;
    double t0 = qt_now();
    memset(sum, 0, sizeof *sum);
    memset(&p, 0, sizeof p);
    QT_CHECK(o && o->in && o->out, QT_ERR_ARG, "gguf export: IN and OUT are required");
    QT_CHECK(o->force || o->dry_run || access(o->out, F_OK) != 0, QT_ERR_ARG,
             "%s exists (use --force to replace it)", o->out);
    QT_TRY(plan_open(o, &p, sum, errmsg));
    QT_TRY(plan_budget(o, &p, sum, errmsg));
    for (size_t i = 0; i < p.n; i++)
        sum->bytes_in += p.items[i].src ? p.items[i].src->nbytes : 0;
    sum->n_tensors = p.n;
    /* the budget's provenance pair */
    char bval[256];
    const char *kv[2] = {"qtool.budget", bval};
    budget_meta(&p, bval, sizeof bval);
    qt_out_gguf_opts go = {.md = p.md, .ftype = sum->ftype, .pre = o->pre, .kv = kv,
                           .n_kv = p.bud.n ? 1 : 0};
    QT_TRY(declare(&out, &p, o, &go, errmsg));
    sum->bytes_out = qt_outfmt_total_bytes(out);
    if (o->want_report) QT_TRY(build_report(o, &p, sum->bytes_out, &sum->report, errmsg));
    if (o->dry_run) {
        print_plan(o->plan_out, &p, sum->bytes_out);
        goto fail; /* nothing to write */
    }
    for (size_t i = 0; i < p.n; i++)
        QT_CHECK(qt_gguf_can_quantize(p.items[i].type), QT_ERR_UNSUPPORTED, "tensor '%s': ggml "
                 "type %s: this build has no quantizer for it", p.items[i].map.name,
                 qt_ggml_type_name(p.items[i].type));
    print_fallbacks(o->plan_out, &p);
    QT_TRY(qt_outfmt_begin(out, o->force, errmsg));
    QT_TRY(write_data(out, &p, o, sum, errmsg));
    QT_TRY(qt_outfmt_commit(out, NULL, 0, errmsg));
fail:
    qt_outfmt_free(out);
    plan_release(&p);
    if (st != QT_OK) {
        qt_free(sum->report);
        sum->report = NULL;
    }
    sum->seconds = qt_now() - t0;
    return st;
}
