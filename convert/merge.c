/* convert/merge.c: `qtool merge`, a PEFT LoRA adapter folded into a model
 * (convert/merge.h): plan, prepass (double-quant offsets), then every
 * weight computed and streamed through the output-format seam. */
#include "convert/merge.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "common/half.h"
#include "common/progress.h"
#include "convert/convert.h"
#include "convert/convert_internal.h"
#include "formats/bnb.h"
#include "formats/fsutil.h"
#include "formats/modeldir.h"
#include "formats/outfmt.h"
#include "formats/pyjson.h"

struct qt_merge {
    qt_merge_opts o;
    qt_modeldir *md;
    qt_layout *L;
    qt_adapter *ad;
    qt_merge_item *items; /* (n_items), BASE's layout order */
    size_t n_items;
    qt_dtype compute;     /* F32 / F16 / BF16 */
    size_t block;         /* the output scheme's effective block */
    char in_dir[PATH_MAX];
    char config_path[PATH_MAX + 16];
    const char **protect; /* BASE's shard paths (borrowed from md) */
    char tmp_dir[PATH_MAX]; /* holds BASE's config without quantization_config; "" = none */
    qt_outfmt *out;
    double seconds;
};

const char *qt_merge_onto_name(qt_merge_onto o)
{
    return o == QT_MERGE_ONTO_ORIGINAL ? "original" : o == QT_MERGE_ONTO_QUANTIZED ? "quantized" : "?";
}

const char *qt_merge_action_name(qt_merge_action a)
{
    static const char *const names[] = {"pass", "fold", "replace", "convert", "copy"};
    return (unsigned)a < QT_MERGE_ACTION_COUNT ? names[a] : "?";
}

static bool is_float(qt_dtype d)
{
    return d == QT_DTYPE_F32 || d == QT_DTYPE_F16 || d == QT_DTYPE_BF16;
}

static bool is_quant_scheme(qt_scheme s)
{
    return s == QT_SCHEME_NF4 || s == QT_SCHEME_FP4 || s == QT_SCHEME_INT8 || s == QT_SCHEME_Q8;
}

static qt_dtype dtype_of_plain(qt_scheme s)
{
    return s == QT_SCHEME_BF16 ? QT_DTYPE_BF16 : s == QT_SCHEME_FP16 ? QT_DTYPE_F16 : QT_DTYPE_F32;
}

static qt_scheme plain_of_dtype(qt_dtype d)
{
    return d == QT_DTYPE_BF16 ? QT_SCHEME_BF16 : d == QT_DTYPE_F16 ? QT_SCHEME_FP16 : QT_SCHEME_FP32;
}

/* Whether a LoRA module changes nothing (B or A all zeros: a fresh adapter). */
static bool lora_is_zero(const qt_adapter_module *md)
{
    bool zb = true, za = true;
    for (size_t i = 0; zb && i < md->n_out * md->r; i++) zb = md->B[i] == 0.0f;
    for (size_t i = 0; za && !zb && i < md->r * md->n_in; i++) za = md->A[i] == 0.0f;
    return zb || za;
}

/* ============================================================================
 * Plan
 * ========================================================================== */

/* The compute dtype: --compute-dtype, else BASE's config dtype, else bf16. */
static qt_status choose_compute(qt_merge *m, char *errmsg)
{
    const char *name = m->o.compute_dtype;
    if (!name && qt_modeldir_config_str(m->md, "torch_dtype", &name) != QT_OK &&
        qt_modeldir_config_str(m->md, "dtype", &name) != QT_OK)
        name = "bfloat16";
    if (!qt_conv_dtype_from_name(name, &m->compute))
        return qt_set_err(errmsg, QT_ERR_ARG, "compute dtype '%s': expected bf16, fp16 or fp32",
                          name);
    return QT_OK;
}

/* The output form of weight w: quantized in the run's scheme (a Llama
 * Linear when the scheme quantizes), else plain in the compute dtype or the
 * scheme's dtype; non-float tensors keep theirs. */
static void output_form(const qt_merge *m, const qt_lweight *w, qt_merge_item *it)
{
    const bool quantizing = is_quant_scheme(m->o.scheme);
    it->quantized = quantizing && w->n_dims == 2 && qt_conv_default_linear(w->name);
    if (it->quantized) {
        it->scheme = m->o.scheme;
        it->block = m->o.scheme == QT_SCHEME_INT8 ? 0 : m->block;
        it->double_quant =
            (m->o.scheme == QT_SCHEME_NF4 || m->o.scheme == QT_SCHEME_FP4) && m->o.double_quant;
        it->dtype = m->compute;
        return;
    }
    it->dtype = !is_float(w->dtype) ? w->dtype
                : quantizing        ? m->compute
                                    : dtype_of_plain(m->o.scheme);
    it->scheme = plain_of_dtype(it->dtype);
}

/* Whether the base's stored form is exactly the output form. */
static bool same_form(const qt_lweight *w, const qt_merge_item *it)
{
    if (!it->quantized) return w->kind == QT_LW_PLAIN && w->dtype == it->dtype;
    return w->kind != QT_LW_PLAIN && w->scheme == it->scheme && w->dtype == it->dtype &&
           (it->scheme == QT_SCHEME_INT8 || w->block_size == it->block) &&
           w->double_quant == it->double_quant;
}

/* The action of one weight, and the --onto rule for folded ones. */
static qt_status plan_item(qt_merge *m, const qt_lweight *w, qt_merge_item *it, char *errmsg)
{
    char module[512];
    it->src = w;
    it->delta_rel = it->codes_changed = it->scales_changed = -1;
    output_form(m, w, it);
    snprintf(module, sizeof module, "%s", w->name);
    if (qt_str_ends_with(module, ".weight")) module[strlen(module) - 7] = 0;
    it->repl = qt_adapter_find_replacement(m->ad, w->name);
    it->mod = it->repl ? NULL : qt_adapter_find(m->ad, module);
    if (it->mod && lora_is_zero(it->mod)) it->mod = NULL; /* B = 0: nothing to fold */
    if (it->mod) {
        const bool quant = w->kind != QT_LW_PLAIN;
        if (m->o.onto == QT_MERGE_ONTO_ORIGINAL && quant)
            return qt_set_err(errmsg, QT_ERR_ARG,
                              "BASE '%s': tensor '%s' is quantized (%s): --onto original needs "
                              "the original checkpoint (or use --onto quantized)",
                              m->o.base, w->name, qt_lweight_label(w));
        if (m->o.onto == QT_MERGE_ONTO_QUANTIZED && !quant)
            return qt_set_err(errmsg, QT_ERR_ARG,
                              "BASE '%s': tensor '%s' is not quantized: --onto quantized needs the "
                              "quantized model the adapter was trained on",
                              m->o.base, w->name);
    }
    it->action = it->repl ? QT_MERGE_REPLACE
                 : it->mod ? QT_MERGE_FOLD
                 : same_form(w, it) ? QT_MERGE_PASS
                 : is_float(w->dtype) ? QT_MERGE_CONVERT
                                      : QT_MERGE_COPY;
    if (it->action == QT_MERGE_PASS && it->double_quant) it->nested_offset = w->nested_offset;
    return QT_OK;
}

/* Refuses an OUT that exists (without force) or holds BASE. */
static qt_status check_out(const qt_merge *m, char *errmsg)
{
    struct stat sb;
    if (lstat(m->o.out, &sb) != 0) return QT_OK;
    if (!m->o.force)
        return qt_set_err(errmsg, QT_ERR_ARG, "output '%s' exists (--force replaces it)",
                          m->o.out);
    char rin[PATH_MAX], rout[PATH_MAX];
    if (!S_ISDIR(sb.st_mode))
        return qt_set_err(errmsg, QT_ERR_ARG, "output '%s' exists and is not a folder", m->o.out);
    if (realpath(m->in_dir, rin) && realpath(m->o.out, rout) &&
        !strncmp(rin, rout, strlen(rout)) && (rin[strlen(rout)] == 0 || rin[strlen(rout)] == '/'))
        return qt_set_err(errmsg, QT_ERR_ARG, "output '%s' holds BASE: refusing to replace it",
                          m->o.out);
    return QT_OK;
}

/* The config the output derives its own from: BASE's, or (a quantized
 * BASE) a copy without quantization_config in a temporary folder, since
 * the output writes the run's own. */
static qt_status base_config(qt_merge *m, char *errmsg)
{
    qt_status st = QT_OK;
    char *text = NULL, *out = NULL;
    size_t n = 0, len = 0;
    QT_CHECK(qt_path_join(m->config_path, sizeof m->config_path, m->in_dir, "config.json"),
             QT_ERR_ARG, "BASE '%s': path too long", m->in_dir);
    if (!qt_modeldir_config_has(m->md, "quantization_config")) return QT_OK;
    QT_TRY(qt_file_read(m->config_path, &text, &n, 16u << 20, errmsg));
    qt_bnb_config cfg = {.plain = true, .compute_dtype = qt_dtype_torch_name(m->compute)};
    QT_TRY(qt_bnb_config_rewrite(text, n, m->config_path, &cfg, &out, &len, errmsg));
    const char *td = getenv("TMPDIR");
    snprintf(m->tmp_dir, sizeof m->tmp_dir, "%s/qtool-merge-XXXXXX", td && *td ? td : "/tmp");
    QT_CHECK(mkdtemp(m->tmp_dir), QT_ERR_IO, "cannot create a temporary folder: %s",
             strerror(errno));
    QT_CHECK(qt_path_join(m->config_path, sizeof m->config_path, m->tmp_dir, "config.json"),
             QT_ERR_ARG, "path too long");
    QT_TRY(qt_file_write(m->config_path, out, len, errmsg));
fail:
    qt_free(text);
    qt_free(out);
    return st;
}

/* The output (nothing written yet) and every weight declared to it. */
static qt_status declare_output(qt_merge *m, char *errmsg)
{
    qt_status st = QT_OK;
    const size_t ns = qt_modeldir_n_shards(m->md);
    m->protect = qt_calloc(ns + 1, sizeof *m->protect);
    QT_CHECK(m->protect, QT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < ns; i++) m->protect[i] = qt_st_reader_path(qt_modeldir_shard(m->md, i));
    QT_TRY(base_config(m, errmsg));
    qt_out_model om = {.out = m->o.out, .config_path = m->config_path, .compute = m->compute,
                       .scheme = m->o.scheme, .block = m->block,
                       .double_quant = m->o.double_quant, .protect = m->protect,
                       .n_protect = ns};
    QT_TRY(qt_outfmt_new(m->o.format, &om, &m->out, errmsg));
    for (size_t i = 0; i < m->n_items; i++) {
        const qt_merge_item *it = &m->items[i];
        qt_out_weight w = {.name = it->src->name, .quantized = it->quantized,
                           .scheme = it->scheme, .dtype = it->dtype, .n_dims = it->src->n_dims,
                           .block = it->block, .double_quant = it->double_quant,
                           .nested_offset = it->nested_offset};
        memcpy(w.shape, it->src->shape, sizeof w.shape);
        QT_TRY(qt_outfmt_declare(m->out, &w, &m->items[i].out_id, errmsg));
    }
    QT_TRY(qt_outfmt_plan(m->out, errmsg));
fail:
    return st;
}

qt_status qt_merge_plan(const qt_merge_opts *o, qt_merge **out, char *errmsg)
{
    qt_status st = QT_OK;
    qt_merge *m = NULL;
    *out = NULL;
    const qt_scheme_info *si = qt_scheme_get(o->scheme);
    QT_CHECK(si && o->base && o->adapter && o->out && (unsigned)o->onto < QT_MERGE_ONTO_COUNT,
             QT_ERR_ARG, "merge: bad options");
    m = qt_calloc(1, sizeof *m);
    QT_CHECK(m, QT_ERR_NOMEM, "out of memory");
    m->o = *o;
    m->block = o->block ? o->block : si->default_block;
    QT_CHECK(!is_quant_scheme(o->scheme) || o->scheme == QT_SCHEME_INT8 ||
                 qt_scheme_block_ok(o->scheme, m->block),
             QT_ERR_ARG, "--block %zu is not allowed for %s", m->block, si->name);
    /* BASE, its folder and compute dtype; the adapter, matched against it */
    QT_TRY(qt_modeldir_open(o->base, &m->md, errmsg));
    snprintf(m->in_dir, sizeof m->in_dir, "%s", o->base);
    if (!qt_path_is_dir(o->base)) {
        char *slash = strrchr(m->in_dir, '/');
        if (slash) *slash = 0;
        else snprintf(m->in_dir, sizeof m->in_dir, ".");
    }
    QT_CHECK(qt_modeldir_has_config(m->md), QT_ERR_ARG, "BASE '%s': no config.json", o->base);
    QT_TRY(qt_layout_build(m->md, &m->L, errmsg));
    QT_TRY(choose_compute(m, errmsg));
    QT_TRY(qt_adapter_open(o->adapter, &m->ad, errmsg));
    QT_TRY(qt_adapter_match(m->ad, m->L, errmsg));
    QT_TRY(check_out(m, errmsg));
    /* one item per logical weight, in BASE's order */
    m->items = qt_calloc(qt_layout_n(m->L) + 1, sizeof *m->items);
    QT_CHECK(m->items, QT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < qt_layout_n(m->L); i++)
        QT_TRY(plan_item(m, qt_layout_at(m->L, i), &m->items[m->n_items++], errmsg));
    QT_TRY(declare_output(m, errmsg));
    *out = m;
    return QT_OK;
fail:
    qt_merge_free(m);
    return st;
}

size_t qt_merge_n_items(const qt_merge *m) { return m->n_items; }
const qt_merge_item *qt_merge_item_at(const qt_merge *m, size_t i)
{
    return i < m->n_items ? &m->items[i] : NULL;
}
const qt_adapter *qt_merge_adapter(const qt_merge *m) { return m->ad; }
double qt_merge_seconds(const qt_merge *m) { return m->seconds; }

void qt_merge_free(qt_merge *m)
{
    if (!m) return;
    qt_outfmt_free(m->out);
    if (m->tmp_dir[0]) qt_tree_remove(m->tmp_dir);
    qt_free(m->protect);
    qt_free(m->items);
    qt_adapter_free(m->ad);
    qt_layout_free(m->L);
    qt_modeldir_close(m->md);
    memset(m, 0, sizeof *m);
    qt_free(m);
}

/* ============================================================================
 * Computing one weight
 * ========================================================================== */

/* The values being written: fp32 (n_out, n_in), and the base's before the
 * fold (for the measurements). */
typedef struct wbuf {
    float *w;       /* (n,) */
    float *orig;    /* (n,) FOLD only */
    void *cd;       /* (n,) in the compute dtype when it is not fp32 */
    qt_qbuf qb;     /* quantized output */
} wbuf;

static void wbuf_free(wbuf *b)
{
    qt_free(b->w);
    qt_free(b->orig);
    qt_free(b->cd);
    qt_free(b->qb.codes);
    qt_free(b->qb.absmax);
    qt_free(b->qb.absmax_q);
    qt_free(b->qb.nested);
    qt_free(b->qb.scb);
    memset(b, 0, sizeof *b);
}

/* The source values in fp32: the adapter's tensor (REPLACE), the exact
 * dequantization of a quantized base weight, or the widened plain one. */
static qt_status source_f32(const qt_merge *m, const qt_merge_item *it, float *dst, char *errmsg)
{
    const qt_lweight *w = it->src;
    if (it->repl)
        return qt_st_tensor_to_f32(m->ad->reader, it->repl->t, 0, (size_t)w->n_elements, dst,
                                   errmsg);
    if (w->kind == QT_LW_PLAIN)
        return qt_st_tensor_to_f32(w->reader, w->weight, 0, (size_t)w->n_elements, dst, errmsg);
    qt_qweight q;
    qt_status st = qt_layout_qweight(w, &q, errmsg);
    if (st == QT_OK && (st = qt_dequantize(NULL, &q, QT_SRC_F32, dst)) != QT_OK)
        qt_set_err(errmsg, st, "tensor '%s': cannot dequantize it (%s)", w->name,
                   qt_status_str(st));
    return st;
}

/* ||a - b||_F / ||b||_F over n values (double sums, fixed order). */
static double rel_diff(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : (num > 0 ? INFINITY : 0);
}

/* W' of a FOLD item into b->w (fp32); with b->orig, W kept there and
 * ||W' - W|| / ||W|| measured. */
static qt_status fold(qt_merge_item *it, wbuf *b, size_t n, char *errmsg)
{
    const qt_adapter_module *md = it->mod;
    if (b->orig) memcpy(b->orig, b->w, n * sizeof(float));
    qt_status st = qt_lora_merge(NULL, b->w, md->n_out, md->n_in, md->B, md->r, md->A, md->scale);
    if (st != QT_OK)
        return qt_set_err(errmsg, st, "module '%s': merge failed (%s)", md->name,
                          qt_status_str(st));
    for (size_t i = 0; i < n; i++)
        if (!isfinite(b->w[i]))
            return qt_set_err(errmsg, QT_ERR_NUMERIC,
                              "module '%s': merged weight value %zu is not finite", md->name, i);
    if (b->orig) it->delta_rel = rel_diff(b->w, b->orig, n);
    return QT_OK;
}

/* The fp32 values rounded once to the compute dtype (what the quantizer
 * reads, as in convert): b->cd, or b->w itself for fp32. */
static const void *compute_values(const qt_merge *m, wbuf *b, size_t n, qt_src_type *t)
{
    *t = m->compute == QT_DTYPE_BF16 ? QT_SRC_BF16 : m->compute == QT_DTYPE_F16 ? QT_SRC_F16
                                                                                : QT_SRC_F32;
    if (m->compute == QT_DTYPE_BF16) qt_fp32_to_bf16_row(b->w, b->cd, n);
    else if (m->compute == QT_DTYPE_F16) qt_fp32_to_fp16_row(b->w, b->cd, n);
    else return b->w;
    return b->cd;
}

/* Quantizes the item's values into b->qb, described by *q. */
static qt_status quantize(const qt_merge *m, const qt_merge_item *it, wbuf *b, qt_qweight *q,
                          char *errmsg)
{
    const size_t n_out = (size_t)it->src->shape[0], n_in = (size_t)it->src->shape[1];
    qt_src_type t;
    const void *src = compute_values(m, b, n_out * n_in, &t);
    qt_status st = qt_quantize_weight(NULL, it->scheme, it->block, it->double_quant, t, src,
                                      n_out, n_in, &b->qb, q);
    if (st != QT_OK)
        return qt_set_err(errmsg, st, "tensor '%s': quantization failed (%s)", it->src->name,
                          qt_status_str(st));
    return QT_OK;
}

/* Allocates the buffers of one item: fp32 values (+ a copy for FOLD when
 * measuring, a compute-dtype copy, the quantized buffers when written
 * quantized). */
static qt_status wbuf_alloc(const qt_merge *m, const qt_merge_item *it, bool measure, wbuf *b,
                            char *errmsg)
{
    const size_t n = (size_t)it->src->n_elements;
    size_t bytes;
    memset(b, 0, sizeof *b);
    if (!qt_mul_size(n, sizeof(float), &bytes))
        return qt_set_err(errmsg, QT_ERR_OVERFLOW, "tensor '%s': too large", it->src->name);
    bool ok = (b->w = qt_malloc(bytes)) != NULL;
    if (ok && measure && it->action == QT_MERGE_FOLD) ok = (b->orig = qt_malloc(bytes)) != NULL;
    if (ok && m->compute != QT_DTYPE_F32) ok = (b->cd = qt_malloc(n * 2)) != NULL;
    if (ok && it->quantized) {
        qt_qbuf_sizes z;
        qt_status st = qt_qbuf_sizes_of(it->scheme, it->block, it->double_quant,
                                        (size_t)it->src->shape[0], (size_t)it->src->shape[1], &z);
        if (st != QT_OK) return qt_set_err(errmsg, st, "tensor '%s': sizes", it->src->name);
        if (z.codes) ok = ok && (b->qb.codes = qt_malloc(z.codes));
        if (z.absmax) ok = ok && (b->qb.absmax = qt_malloc(z.absmax));
        if (z.absmax_q) ok = ok && (b->qb.absmax_q = qt_malloc(z.absmax_q));
        if (z.nested) ok = ok && (b->qb.nested = qt_malloc(z.nested));
        if (z.scb) ok = ok && (b->qb.scb = qt_malloc(z.scb));
    }
    if (!ok) {
        wbuf_free(b);
        return qt_set_err(errmsg, QT_ERR_NOMEM, "tensor '%s': out of memory", it->src->name);
    }
    return QT_OK;
}

/* The computed values of a FOLD / REPLACE / CONVERT item in b->w;
 * measure: also ||s B A|| / ||W|| (the write pass, not the prepass). */
static qt_status compute_item(const qt_merge *m, qt_merge_item *it, bool measure, wbuf *b,
                              char *errmsg)
{
    qt_status st = wbuf_alloc(m, it, measure, b, errmsg);
    if (st == QT_OK) st = source_f32(m, it, b->w, errmsg);
    if (st == QT_OK && it->action == QT_MERGE_FOLD)
        st = fold(it, b, (size_t)it->src->n_elements, errmsg);
    return st;
}

/* ============================================================================
 * Measurements against the base's codes (spec §6.3)
 * ========================================================================== */

/* Fractions of 4-bit codes and of block scales that differ from the base's
 * stored ones (same scheme, block and double quantization only). */
static void code_changes(qt_merge_item *it, const qt_qweight *q)
{
    const qt_lweight *w = it->src;
    if (!(q->scheme == QT_SCHEME_NF4 || q->scheme == QT_SCHEME_FP4) || !same_form(w, it)) return;
    qt_qweight base;
    if (qt_layout_qweight(w, &base, NULL) != QT_OK) return;
    const size_t n = q->n_out * q->n_in, nb = qt_n_blocks(n, q->block_size);
    const uint8_t *a = base.data, *c = q->data;
    size_t diff = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t x = (uint8_t)(i & 1 ? a[i / 2] & 15 : a[i / 2] >> 4);
        uint8_t y = (uint8_t)(i & 1 ? c[i / 2] & 15 : c[i / 2] >> 4);
        diff += x != y;
    }
    size_t sdiff = 0;
    for (size_t j = 0; j < nb; j++) {
        if (q->absmax_q) sdiff += base.absmax_q[j] != q->absmax_q[j];
        else {
            float x, y;
            memcpy(&x, (const char *)base.absmax + 4 * j, 4);
            memcpy(&y, (const char *)q->absmax + 4 * j, 4);
            sdiff += memcmp(&x, &y, 4) != 0;
        }
    }
    it->codes_changed = (double)diff / (double)n;
    it->scales_changed = (double)sdiff / (double)nb;
}

/* ============================================================================
 * Run
 * ========================================================================== */

/* Prepass: the nested offset of every double-quantized weight the run
 * computes (it sizes the quant_state), told to the output. */
static qt_status prepass(qt_merge *m, char *errmsg)
{
    qt_status st = QT_OK;
    for (size_t i = 0; i < m->n_items; i++) {
        qt_merge_item *it = &m->items[i];
        if (!it->double_quant || it->action == QT_MERGE_PASS) continue;
        wbuf b;
        qt_qweight q;
        st = compute_item(m, it, false, &b, errmsg);
        if (st == QT_OK) st = quantize(m, it, &b, &q, errmsg);
        wbuf_free(&b);
        QT_TRY(st);
        it->nested_offset = q.nested_offset;
        qt_out_weight w = {.name = it->src->name, .quantized = true, .scheme = it->scheme,
                           .dtype = it->dtype, .n_dims = it->src->n_dims, .block = it->block,
                           .double_quant = true, .nested_offset = it->nested_offset};
        memcpy(w.shape, it->src->shape, sizeof w.shape);
        QT_TRY(qt_outfmt_redeclare(m->out, it->out_id, &w, errmsg));
    }
fail:
    return st;
}

/* Writes fp32 values converted to the item's plain dtype, in chunks. */
static qt_status write_plain_values(qt_merge *m, const qt_merge_item *it, const float *v,
                                    size_t n, char *errmsg)
{
    enum { CHUNK = 1 << 16 };
    uint16_t h[CHUNK];
    if (it->dtype == QT_DTYPE_F32)
        return qt_outfmt_write_plain(m->out, it->out_id, 0, v, n * sizeof(float), errmsg);
    for (size_t i = 0; i < n; i += CHUNK) {
        size_t k = n - i < CHUNK ? n - i : CHUNK;
        if (it->dtype == QT_DTYPE_BF16) qt_fp32_to_bf16_row(v + i, h, k);
        else qt_fp32_to_fp16_row(v + i, h, k);
        qt_status st = qt_outfmt_write_plain(m->out, it->out_id, i * 2, h, k * 2, errmsg);
        if (st != QT_OK) return st;
    }
    return QT_OK;
}

/* The base's own bytes (PASS / COPY). */
static qt_status write_stored(qt_merge *m, const qt_merge_item *it, char *errmsg)
{
    const qt_lweight *w = it->src;
    if (w->kind == QT_LW_PLAIN)
        return qt_outfmt_write_plain(m->out, it->out_id, 0, w->weight->data,
                                     (size_t)w->weight->nbytes, errmsg);
    qt_qweight q;
    qt_status st = qt_layout_qweight(w, &q, errmsg);
    return st == QT_OK ? qt_outfmt_write_quant(m->out, it->out_id, &q, errmsg) : st;
}

static qt_status run_item(qt_merge *m, qt_merge_item *it, char *errmsg)
{
    qt_status st = QT_OK;
    double t0 = qt_now();
    wbuf b;
    memset(&b, 0, sizeof b);
    if (it->action == QT_MERGE_PASS || it->action == QT_MERGE_COPY) {
        QT_TRY(write_stored(m, it, errmsg));
    } else {
        QT_TRY(compute_item(m, it, true, &b, errmsg));
        if (it->quantized) {
            qt_qweight q;
            QT_TRY(quantize(m, it, &b, &q, errmsg));
            if (it->action == QT_MERGE_FOLD) code_changes(it, &q);
            QT_TRY(qt_outfmt_write_quant(m->out, it->out_id, &q, errmsg));
        } else {
            QT_TRY(write_plain_values(m, it, b.w, (size_t)it->src->n_elements, errmsg));
        }
    }
    qt_st_tensor_release(it->src->reader, it->src->weight);
    it->seconds = qt_now() - t0;
fail:
    wbuf_free(&b);
    return st;
}

/* Provenance: the adapter, --onto, the scheme and BASE's shards. */
static qt_status provenance(qt_merge *m, char *errmsg)
{
    qt_status st = QT_OK;
    char key[64], fp[65];
    QT_TRY(qt_outfmt_add_metadata(m->out, "qtool.version", QT_VERSION_STRING, errmsg));
    QT_TRY(qt_outfmt_add_metadata(m->out, "qtool.merge.adapter", m->ad->dir, errmsg));
    QT_TRY(qt_outfmt_add_metadata(m->out, "qtool.merge.adapter_fingerprint", m->ad->fingerprint,
                                  errmsg));
    QT_TRY(qt_outfmt_add_metadata(m->out, "qtool.merge.onto", qt_merge_onto_name(m->o.onto),
                                  errmsg));
    QT_TRY(qt_outfmt_add_metadata(m->out, "qtool.merge.scheme",
                                  qt_scheme_get(m->o.scheme)->name, errmsg));
    QT_TRY(qt_outfmt_add_metadata(m->out, "qtool.compute_dtype", qt_dtype_torch_name(m->compute),
                                  errmsg));
    for (size_t i = 0; i < qt_modeldir_n_shards(m->md); i++) {
        snprintf(key, sizeof key, "qtool.merge.base_fingerprint.%zu", i);
        qt_conv_fingerprint(qt_modeldir_shard(m->md, i), fp);
        QT_TRY(qt_outfmt_add_metadata(m->out, key, fp, errmsg));
    }
fail:
    return st;
}

/* BASE's non-weight files (config.json aside: the format derives it). */
static qt_status other_files(qt_merge *m, char *errmsg)
{
    qt_status st = QT_OK;
    for (size_t i = 0; i < qt_modeldir_n_files(m->md); i++) {
        const char *f = qt_modeldir_file(m->md, i);
        if (!strcmp(f, "config.json") || strchr(f, '/')) continue;
        char src[PATH_MAX];
        QT_CHECK(qt_path_join(src, sizeof src, m->in_dir, f), QT_ERR_ARG, "path too long");
        QT_TRY(qt_outfmt_add_file(m->out, f, src, errmsg));
    }
fail:
    return st;
}

qt_status qt_merge_run(qt_merge *m, char *errmsg)
{
    qt_status st = QT_OK;
    double t0 = qt_now();
    struct stat sb;
    const bool exists = lstat(m->o.out, &sb) == 0;
    QT_TRY(check_out(m, errmsg));
    QT_TRY(prepass(m, errmsg));
    QT_TRY(provenance(m, errmsg));
    QT_TRY(qt_outfmt_begin(m->out, exists, errmsg));
    qt_progress prog;
    uint64_t total = 0;
    for (size_t i = 0; i < m->n_items; i++) total += m->items[i].src->nbytes;
    qt_progress_init(&prog, m->o.progress, m->o.progress != NULL, "merge", m->n_items, total);
    for (size_t i = 0; i < m->n_items; i++) {
        QT_TRY(run_item(m, &m->items[i], errmsg));
        qt_progress_add(&prog, 1, m->items[i].src->nbytes);
    }
    qt_progress_finish(&prog);
    QT_TRY(other_files(m, errmsg));
    const char *skip[1] = {"lm_head"};
    QT_TRY(qt_outfmt_commit(m->out, skip, is_quant_scheme(m->o.scheme) ? 1 : 0, errmsg));
    m->seconds = qt_now() - t0;
fail:
    return st;
}

/* ============================================================================
 * Report
 * ========================================================================== */

static void jnum(qt_strbuf *b, double v)
{
    char t[48];
    if (!isfinite(v) || v < 0) snprintf(t, sizeof t, "null");
    else qt_py_float_repr(v, t, sizeof t);
    qt_strbuf_puts(b, t);
}

qt_status qt_merge_report_json(const qt_merge *m, char **json, char *errmsg)
{
    qt_strbuf b = {0};
    qt_strbuf_puts(&b, "{\n  \"base\": ");
    qt_strbuf_json_string(&b, m->o.base);
    qt_strbuf_puts(&b, ",\n  \"adapter\": ");
    qt_strbuf_json_string(&b, m->ad->dir);
    qt_strbuf_printf(&b, ",\n  \"adapter_fingerprint\": \"%s\",\n  \"onto\": \"%s\",\n"
                         "  \"scheme\": \"%s\",\n  \"seconds\": ",
                     m->ad->fingerprint, qt_merge_onto_name(m->o.onto),
                     qt_scheme_get(m->o.scheme)->name);
    jnum(&b, m->seconds);
    qt_strbuf_puts(&b, ",\n  \"tensors\": [");
    for (size_t i = 0; i < m->n_items; i++) {
        const qt_merge_item *it = &m->items[i];
        qt_strbuf_puts(&b, i ? ",\n    {\"name\": " : "\n    {\"name\": ");
        qt_strbuf_json_string(&b, it->src->name);
        qt_strbuf_printf(&b, ", \"action\": \"%s\", \"scheme\": \"%s\", \"delta_rel\": ",
                         qt_merge_action_name(it->action), qt_scheme_get(it->scheme)->name);
        jnum(&b, it->delta_rel);
        qt_strbuf_puts(&b, ", \"codes_changed\": ");
        jnum(&b, it->codes_changed);
        qt_strbuf_puts(&b, ", \"scales_changed\": ");
        jnum(&b, it->scales_changed);
        qt_strbuf_puts(&b, ", \"seconds\": ");
        jnum(&b, it->seconds);
        qt_strbuf_puts(&b, "}");
    }
    qt_strbuf_puts(&b, "\n  ]\n}\n");
    if (b.oom) {
        qt_strbuf_release(&b);
        return qt_set_err(errmsg, QT_ERR_NOMEM, "out of memory");
    }
    *json = b.data;
    return QT_OK;
}
