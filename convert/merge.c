/* convert/merge.c: `qtool merge`, a PEFT LoRA adapter folded into a model
 * (convert/merge.h): plan, prepass (double-quant offsets), then every
 * weight computed and streamed through the output-format seam. */
#include "common/threads.h"
#include "convert/merge.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <fcntl.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

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
    FILE *spill;          /* the prepass's quantized weights (double quant), read back by
                             the write pass; an unlinked temporary file beside OUT */
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
                                    : qt_conv_plain_dtype(m->o.scheme);
    it->scheme = qt_conv_plain_scheme(it->dtype);
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
    it->spill_at = -1;
    it->delta_rel = it->codes_changed = it->scales_changed = -1;
    output_form(m, w, it);
    snprintf(module, sizeof module, "%s", w->name);
    if (qt_str_ends_with(module, ".weight")) module[strlen(module) - 7] = 0;
    it->repl = qt_adapter_find_replacement(m->ad, w->name);
    it->mod = it->repl ? NULL : qt_adapter_find(m->ad, module);
    if (it->mod && lora_is_zero(it->mod)) it->mod = NULL; /* B = 0: nothing to fold */
    if (it->mod && it->mod->b_B)
        return qt_set_err(errmsg, QT_ERR_UNSUPPORTED,
                          "adapter '%s': module '%s': field 'lora_bias' is true: folding a lora_B "
                          "bias needs a base bias to add it to, which merge does not write (run "
                          "the adapter unmerged with --adapter)",
                          m->ad->dir, it->mod->name);
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
    bool exists;
    QT_TRY(qt_conv_check_out(o->out, m->in_dir, o->force, false, &exists, errmsg));
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
 * fold (for the measurements). The buffers grow to the largest weight and
 * are reused from one weight to the next (no page faults per weight). */
typedef struct wbuf {
    float *w;       /* (n,) fp32 values when the item needs them whole (a plain or fp32
                       output); NULL: the tiles are computed in scratch */
    bool measure;   /* FOLD, write pass: ||W' - W|| / ||W|| wanted */
    void *cd;       /* (n,) in the compute dtype when it is not fp32 */
    qt_qbuf qb;     /* quantized output */
    double *part;   /* (2 rows,) per-row sums of the measurement */
    float *scratch; /* (threads, 2, TILE_ROWS, n_in) per-thread tile and copy of W */
    size_t cap[10]; /* bytes of w, scratch, cd, codes, absmax, absmax_q, nested, scb, part */
    void *w_buf;    /* w's storage, kept while w is NULL */
} wbuf;

static void wbuf_free(wbuf *b)
{
    qt_free(b->w_buf);
    qt_free(b->scratch);
    qt_free(b->cd);
    qt_free(b->qb.codes);
    qt_free(b->qb.absmax);
    qt_free(b->qb.absmax_q);
    qt_free(b->qb.nested);
    qt_free(b->qb.scb);
    qt_free(b->part);
    memset(b, 0, sizeof *b);
}

/* *p holds at least n bytes (grown, contents dropped, when it did not). */
static bool grow(void **p, size_t *cap, size_t n)
{
    if (n <= *cap) return true;
    qt_free(*p);
    *p = qt_malloc(n);
    *cap = *p ? n : 0;
    return *p != NULL;
}


/* Rows of the pipeline's tiles: a tile of fp32 rows stays in cache from its
 * source through the fold to the compute dtype. */
#define TILE_ROWS 16

/* Source rows [r0, r0 + nr) of an item in fp32 into dst (nr * n_in): the
 * exact dequantization of a quantized base weight (q), the adapter's tensor
 * (REPLACE) or the base's plain values widened. Float dtypes only (checked
 * by the plan and the adapter), so it cannot fail. */
static void source_rows(const qt_merge *m, const qt_merge_item *it, const qt_qweight *q,
                        size_t r0, size_t nr, size_t n_in, float *dst)
{
    if (q) {
        qt_qweight_rows(NULL, q, r0, nr, dst);
        return;
    }
    const qt_st_reader *rd = it->repl ? m->ad->reader : it->src->reader;
    const qt_st_tensor *t = it->repl ? it->repl->t : it->src->weight;
    (void)qt_st_tensor_to_f32(rd, t, (uint64_t)(r0 * n_in), nr * n_in, dst, NULL);
}

/* One tile: the source rows, the fold (W' = W + s B A row by row), the
 * finite check and the measurement partials per row, the rounding to the
 * compute dtype. Returns false when a value is not finite. */
/* sum (w - b)^2 and sum b^2 over a row (b NULL: zeros), in 4 interleaved
 * double partial sums combined pairwise: a fixed order the compiler can
 * vectorize without reassociating anything itself. */
static void row_sums(const float *w, const float *b, size_t n, double *num, double *den)
{
    double nm[4] = {0, 0, 0, 0}, dn[4] = {0, 0, 0, 0};
    if (!b) {
        *num = *den = 0;
        return;
    }
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (size_t l = 0; l < 4; l++) {
            const double d = (double)w[i + l] - (double)b[i + l];
            nm[l] += d * d;
            dn[l] += (double)b[i + l] * b[i + l];
        }
    for (size_t l = 0; i < n; i++, l++) {
        const double d = (double)w[i] - (double)b[i];
        nm[l] += d * d;
        dn[l] += (double)b[i] * b[i];
    }
    *num = (nm[0] + nm[2]) + (nm[1] + nm[3]);
    *den = (dn[0] + dn[2]) + (dn[1] + dn[3]);
}

static bool compute_tile(const qt_merge *m, const qt_merge_item *it, const qt_qweight *q,
                         wbuf *b, size_t r0, size_t nr, size_t n_in)
{
    const qt_kernels *k = qt_kernels_active();
    const qt_adapter_module *md = it->action == QT_MERGE_FOLD ? it->mod : NULL;
    float *scratch = b->scratch + (size_t)qt_thread_id() * 2 * TILE_ROWS * n_in;
    float *w = b->w ? b->w + r0 * n_in : scratch; /* the tile's fp32 rows */
    float *orig = b->measure ? scratch + TILE_ROWS * n_in : NULL;
    bool ok = true;
    source_rows(m, it, q, r0, nr, n_in, w);
    if (orig) memcpy(orig, w, nr * n_in * sizeof(float));
    for (size_t j = 0; j < nr; j++) {
        float *wr = w + j * n_in;
        const float *br = orig ? orig + j * n_in : NULL;
        const size_t o = r0 + j;
        if (md) k->lora_merge_row(wr, n_in, md->B + o * md->r, md->r, md->A, md->scale);
        int bad = 0;
        for (size_t i = 0; i < n_in; i++) bad |= !(fabsf(wr[i]) <= FLT_MAX);
        ok = ok && !bad;
        row_sums(wr, br, n_in, &b->part[2 * o], &b->part[2 * o + 1]);
    }
    if (m->compute == QT_DTYPE_BF16) qt_fp32_to_bf16_row(w, (uint16_t *)b->cd + r0 * n_in, nr * n_in);
    else if (m->compute == QT_DTYPE_F16) qt_fp32_to_fp16_row(w, (uint16_t *)b->cd + r0 * n_in, nr * n_in);
    return ok;
}

/* Sizes the buffers for one item: fp32 values, the per-row partials (+ a
 * copy for FOLD when measuring, a compute-dtype copy, the quantized buffers
 * when written quantized), reusing what earlier items left. */
static qt_status wbuf_alloc(const qt_merge *m, const qt_merge_item *it, bool measure, wbuf *b,
                            size_t rows, char *errmsg)
{
    const size_t n = (size_t)it->src->n_elements, n_in = n / (rows ? rows : 1);
    size_t bytes, sbytes;
    if (!qt_mul_size(n, sizeof(float), &bytes) ||
        !qt_mul_size((size_t)qt_max_threads() * 2 * TILE_ROWS, n_in * sizeof(float), &sbytes))
        return qt_set_err(errmsg, QT_ERR_OVERFLOW, "tensor '%s': too large", it->src->name);
    /* whole fp32 values only where they are written or quantized from */
    const bool whole = !it->quantized || m->compute == QT_DTYPE_F32;
    bool ok = grow((void **)&b->part, &b->cap[8], 2 * rows * sizeof(double)) &&
              grow((void **)&b->scratch, &b->cap[1], sbytes);
    b->measure = measure && it->action == QT_MERGE_FOLD;
    b->w = NULL;
    if (ok && whole) {
        ok = grow(&b->w_buf, &b->cap[0], bytes);
        b->w = b->w_buf;
    }
    if (ok && m->compute != QT_DTYPE_F32) ok = grow(&b->cd, &b->cap[2], n * 2);
    if (ok && it->quantized) {
        qt_qbuf_sizes z;
        qt_status st = qt_qbuf_sizes_of(it->scheme, it->block, it->double_quant,
                                        (size_t)it->src->shape[0], (size_t)it->src->shape[1], &z);
        if (st != QT_OK) return qt_set_err(errmsg, st, "tensor '%s': sizes", it->src->name);
        ok = grow(&b->qb.codes, &b->cap[3], z.codes) &&
             grow((void **)&b->qb.absmax, &b->cap[4], z.absmax) &&
             grow((void **)&b->qb.absmax_q, &b->cap[5], z.absmax_q) &&
             grow((void **)&b->qb.nested, &b->cap[6], z.nested) &&
             grow((void **)&b->qb.scb, &b->cap[7], z.scb);
    }
    if (!ok) return qt_set_err(errmsg, QT_ERR_NOMEM, "tensor '%s': out of memory", it->src->name);
    return QT_OK;
}

/* The values of a FOLD / REPLACE / CONVERT item in b->w (fp32) and b->cd
 * (the compute dtype), computed in tiles of TILE_ROWS rows, OpenMP over
 * tiles (every value computed by one thread in one order: the same bytes on
 * any thread count); measure: also ||s B A|| / ||W|| (the write pass), from
 * per-row double sums added in row order. */
static qt_status compute_item(const qt_merge *m, qt_merge_item *it, bool measure, wbuf *b,
                              char *errmsg)
{
    const qt_lweight *w = it->src;
    const size_t rows = w->n_dims >= 2 ? (size_t)w->shape[0] : 1;
    const size_t n_in = (size_t)w->n_elements / rows;
    qt_qweight qw, *q = NULL;
    qt_status st = wbuf_alloc(m, it, measure, b, rows, errmsg);
    if (st != QT_OK) return st;
    if (!it->repl && w->kind != QT_LW_PLAIN) {
        QT_TRY(qt_layout_qweight(w, &qw, errmsg));
        q = &qw;
    }
    ptrdiff_t t;
    int bad = 0;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) reduction(| : bad) if (w->n_elements >= (1u << 18))
#endif
    for (t = 0; t < (ptrdiff_t)((rows + TILE_ROWS - 1) / TILE_ROWS); t++) {
        const size_t r0 = (size_t)t * TILE_ROWS;
        bad |= !compute_tile(m, it, q, b, r0, rows - r0 < TILE_ROWS ? rows - r0 : TILE_ROWS, n_in);
    }
    QT_CHECK(!bad, QT_ERR_NUMERIC, "tensor '%s': a %s value is not finite", w->name,
             it->action == QT_MERGE_FOLD ? "merged" : "source");
    if (b->measure) {
        double num = 0, den = 0;
        for (size_t r = 0; r < rows; r++) {
            num += b->part[2 * r];
            den += b->part[2 * r + 1];
        }
        it->delta_rel = den > 0 ? sqrt(num / den) : (num > 0 ? INFINITY : 0);
    }
fail:
    return st;
}

/* Quantizes the item's values into b->qb, described by *q. */
static qt_status quantize(const qt_merge *m, const qt_merge_item *it, wbuf *b, qt_qweight *q,
                          char *errmsg)
{
    const size_t n_out = (size_t)it->src->shape[0], n_in = (size_t)it->src->shape[1];
    const qt_src_type t = m->compute == QT_DTYPE_BF16  ? QT_SRC_BF16
                          : m->compute == QT_DTYPE_F16 ? QT_SRC_F16
                                                       : QT_SRC_F32;
    const void *src = t == QT_SRC_F32 ? (const void *)b->w : b->cd;
    qt_status st = qt_quantize_weight(NULL, it->scheme, it->block, it->double_quant, NULL, t, src,
                                      n_out, n_in, &b->qb, q);
    if (st != QT_OK)
        return qt_set_err(errmsg, st, "tensor '%s': quantization failed (%s)", it->src->name,
                          qt_status_str(st));
    return QT_OK;
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

/* The spill file: created beside OUT and unlinked at once (nothing is left
 * behind, whatever happens). */
static qt_status spill_open(qt_merge *m, char *errmsg)
{
    char path[PATH_MAX + 64], parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", m->o.out);
    char *slash = strrchr(parent, '/');
    if (slash) *slash = 0;
    else snprintf(parent, sizeof parent, ".");
    snprintf(path, sizeof path, "%s/.qtool-merge-spill.%ld", parent, (long)getpid());
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return qt_set_err(errmsg, QT_ERR_IO, "cannot create '%s': %s", path, strerror(errno));
    unlink(path);
    m->spill = fdopen(fd, "w+b");
    if (!m->spill) {
        close(fd);
        return qt_set_err(errmsg, QT_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    }
    return QT_OK;
}

/* The three arrays of a double-quantized 4-bit weight: codes, nested codes,
 * nested absmax (their sizes from the qbuf sizes). */
static void spill_parts(const qt_merge_item *it, wbuf *b, void **ptr, size_t *len)
{
    qt_qbuf_sizes z;
    (void)qt_qbuf_sizes_of(it->scheme, it->block, true, (size_t)it->src->shape[0],
                           (size_t)it->src->shape[1], &z);
    ptr[0] = b->qb.codes;
    len[0] = z.codes;
    ptr[1] = b->qb.absmax_q;
    len[1] = z.absmax_q;
    ptr[2] = b->qb.nested;
    len[2] = z.nested;
}

/* Keeps the prepass's quantized weight in the spill file. */
static qt_status spill_write(qt_merge *m, qt_merge_item *it, wbuf *b, char *errmsg)
{
    void *ptr[3];
    size_t len[3];
    spill_parts(it, b, ptr, len);
    if (fseeko(m->spill, 0, SEEK_END) != 0)
        return qt_set_err(errmsg, QT_ERR_IO, "spill file: seek failed: %s", strerror(errno));
    it->spill_at = (int64_t)ftello(m->spill);
    for (int k = 0; k < 3; k++)
        if (fwrite(ptr[k], 1, len[k], m->spill) != len[k])
            return qt_set_err(errmsg, QT_ERR_IO, "spill file beside '%s': write failed: %s",
                              m->o.out, strerror(errno));
    return QT_OK;
}

/* Reads a spilled weight back into b->qb and describes it in *q, as
 * qt_quantize_weight described it. */
static qt_status spill_read(qt_merge *m, const qt_merge_item *it, wbuf *b, qt_qweight *q,
                            char *errmsg)
{
    qt_status st = wbuf_alloc(m, it, false, b, 1, errmsg);
    if (st != QT_OK) return st;
    void *ptr[3];
    size_t len[3];
    spill_parts(it, b, ptr, len);
    if (fseeko(m->spill, (off_t)it->spill_at, SEEK_SET) != 0)
        return qt_set_err(errmsg, QT_ERR_IO, "spill file: seek failed: %s", strerror(errno));
    for (int k = 0; k < 3; k++)
        if (fread(ptr[k], 1, len[k], m->spill) != len[k])
            return qt_set_err(errmsg, QT_ERR_IO, "spill file: read failed");
    memset(q, 0, sizeof *q);
    q->scheme = it->scheme;
    q->n_out = (size_t)it->src->shape[0];
    q->n_in = (size_t)it->src->shape[1];
    q->block_size = it->block;
    q->data = b->qb.codes;
    q->quant_map = it->scheme == QT_SCHEME_NF4 ? qt_nf4_map : qt_fp4_map;
    q->absmax_q = b->qb.absmax_q;
    q->nested_absmax = b->qb.nested;
    q->nested_map = qt_dynamic_map;
    q->nested_offset = it->nested_offset;
    return QT_OK;
}

/* Prepass: every double-quantized weight the run computes, computed,
 * measured and quantized once (its nested offset sizes the quant_state),
 * told to the output and kept in the spill file for the write pass. */
static qt_status prepass(qt_merge *m, wbuf *b, char *errmsg)
{
    qt_status st = QT_OK;
    for (size_t i = 0; i < m->n_items; i++) {
        qt_merge_item *it = &m->items[i];
        if (!it->double_quant || it->action == QT_MERGE_PASS) continue;
        if (!m->spill) QT_TRY(spill_open(m, errmsg));
        qt_qweight q;
        QT_TRY(compute_item(m, it, true, b, errmsg));
        QT_TRY(quantize(m, it, b, &q, errmsg));
        if (it->action == QT_MERGE_FOLD) code_changes(it, &q);
        QT_TRY(spill_write(m, it, b, errmsg));
        qt_st_tensor_release(it->src->reader, it->src->weight); /* bounded memory */
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

static qt_status run_item(qt_merge *m, qt_merge_item *it, wbuf *bp, char *errmsg)
{
    qt_status st = QT_OK;
    double t0 = qt_now();
    wbuf *b = bp;
    if (it->action == QT_MERGE_PASS || it->action == QT_MERGE_COPY) {
        QT_TRY(write_stored(m, it, errmsg));
    } else if (it->spill_at >= 0) { /* computed by the prepass */
        qt_qweight q;
        QT_TRY(spill_read(m, it, b, &q, errmsg));
        QT_TRY(qt_outfmt_write_quant(m->out, it->out_id, &q, errmsg));
    } else {
        QT_TRY(compute_item(m, it, true, b, errmsg));
        if (it->quantized) {
            qt_qweight q;
            QT_TRY(quantize(m, it, b, &q, errmsg));
            if (it->action == QT_MERGE_FOLD) code_changes(it, &q);
            QT_TRY(qt_outfmt_write_quant(m->out, it->out_id, &q, errmsg));
        } else {
            QT_TRY(write_plain_values(m, it, b->w, (size_t)it->src->n_elements, errmsg));
        }
    }
    qt_st_tensor_release(it->src->reader, it->src->weight);
    it->seconds = qt_now() - t0;
fail:
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

qt_status qt_merge_run(qt_merge *m, char *errmsg)
{
    qt_status st = QT_OK;
    double t0 = qt_now();
    bool exists;
    wbuf b; /* one set of buffers for every weight */
    memset(&b, 0, sizeof b);
    QT_TRY(qt_conv_check_out(m->o.out, m->in_dir, m->o.force, false, &exists, errmsg));
    QT_TRY(prepass(m, &b, errmsg));
    QT_TRY(provenance(m, errmsg));
    QT_TRY(qt_outfmt_begin(m->out, exists, errmsg));
    qt_progress prog;
    uint64_t total = 0;
    for (size_t i = 0; i < m->n_items; i++) total += m->items[i].src->nbytes;
    qt_progress_init(&prog, m->o.progress, m->o.progress != NULL, "merge", m->n_items, total);
    for (size_t i = 0; i < m->n_items; i++) {
        QT_TRY(run_item(m, &m->items[i], &b, errmsg));
        qt_progress_add(&prog, 1, m->items[i].src->nbytes);
    }
    qt_progress_finish(&prog);
    QT_TRY(qt_conv_output_files(m->in_dir, false, m->out, errmsg));
    const char *skip[1] = {"lm_head"};
    QT_TRY(qt_outfmt_commit(m->out, skip, is_quant_scheme(m->o.scheme) ? 1 : 0, errmsg));
    m->seconds = qt_now() - t0;
fail:
    wbuf_free(&b);
    if (m->spill) fclose(m->spill);
    m->spill = NULL;
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
