/* convert/loftq_run.c: `qtool convert IN OUT --loftq R [--loftq-iter T]
 * [--loftq-alpha A]`: every weight the plan quantizes (nf4/fp4) gets its
 * LoftQ base (convert/loftq.h) instead of the plain quantization, and
 * OUT/loftq-adapter/ a PEFT LoRA adapter (adapter_config.json +
 * adapter_model.safetensors, target_modules = the quantized Linears,
 * r = R, lora_alpha = A) such that s.B.A is each module's rank-R
 * correction; a module where LoftQ would not lower the error keeps its
 * plain base and PEFT's default init (B = 0).
 *
 * Streaming like every conversion: one weight at a time per thread; only
 * the adapter's A and B (R x (n_in + n_out) floats per module) are kept
 * until the end, when they are written into the output before its commit.
 * The base bytes are exactly what the last iteration quantized, with the
 * double quantization that is written. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/half.h"
#include "convert/convert_internal.h"
#include "formats/adapter.h"
#include "formats/fsutil.h"

/* Per item: the adapter pair and the errors, filled by the item's thread. */
typedef struct loftq_mod {
    qt_adapter_module m; /* name, r, n_in, n_out, A, B */
    double norm_w, err_plain, err_loftq;
    bool used, done;
} loftq_mod;

struct qt_conv_loftq {
    loftq_mod *mods; /* (c->n_items), by item index */
    size_t rank;
    unsigned iters;
    double alpha;
};

bool qt_conv_loftq_on(const qt_conv *c) { return c->loftq != NULL; }

static bool applies(const qt_conv *c, const qt_conv_item *it)
{
    return c->loftq && it->action == QT_ACT_QUANT;
}

qt_status qt_conv_loftq_prepare(qt_conv *c, char *errmsg)
{
    qt_status st = QT_OK;
    const qt_conv_opts *o = &c->o;
    if (o->loftq_rank == 0) return QT_OK;
    QT_CHECK(!o->rcp, QT_ERR_ARG, "--loftq: not with --match cuda (LoftQ's quantization is the CPU path)");
    const double alpha = o->loftq_alpha > 0 ? o->loftq_alpha : (double)o->loftq_rank;
    QT_CHECK(isfinite(alpha), QT_ERR_ARG, "--loftq-alpha must be a positive number");
    size_t n_quant = 0;
    for (size_t i = 0; i < c->n_items; i++) {
        const qt_conv_item *it = &c->items[i];
        if (it->action != QT_ACT_QUANT) continue;
        n_quant++;
        QT_CHECK(it->scheme == QT_SCHEME_NF4 || it->scheme == QT_SCHEME_FP4, QT_ERR_ARG,
                 "--loftq: tensor '%s' is planned as %s; LoftQ supports nf4 and fp4 only",
                 it->src->name, qt_scheme_get(it->scheme)->name);
        const uint64_t *sh = it->src->shape;
        QT_CHECK(it->src->n_dims == 2, QT_ERR_ARG, "--loftq: tensor '%s' is not a matrix",
                 it->src->name);
        const uint64_t mn = sh[0] < sh[1] ? sh[0] : sh[1];
        QT_CHECK(o->loftq_rank <= mn, QT_ERR_ARG,
                 "--loftq %zu: larger than min(rows, cols) = %llu of tensor '%s'", o->loftq_rank,
                 (unsigned long long)mn, it->src->name);
        QT_CHECK(qt_str_ends_with(it->src->name, ".weight"), QT_ERR_ARG,
                 "--loftq: tensor '%s' is not a module's .weight", it->src->name);
    }
    QT_CHECK(n_quant > 0, QT_ERR_ARG, "--loftq: the plan quantizes no weight");
    c->loftq = qt_calloc(1, sizeof *c->loftq);
    QT_CHECK(c->loftq, QT_ERR_NOMEM, "out of memory");
    c->loftq->mods = qt_calloc(c->n_items, sizeof *c->loftq->mods);
    QT_CHECK(c->loftq->mods, QT_ERR_NOMEM, "out of memory");
    c->loftq->rank = o->loftq_rank;
    c->loftq->iters = o->loftq_iters ? o->loftq_iters : 1;
    c->loftq->alpha = alpha;
fail:
    return st;
}

/* The options of one item's LoftQ: its scheme and block, a seed from its
 * name (so the result does not depend on the item order). */
static qt_loftq_opts item_opts(const qt_conv *c, const qt_conv_item *it)
{
    qt_loftq_opts lo = qt_loftq_opts_default();
    lo.rank = c->loftq->rank;
    lo.iters = c->loftq->iters;
    lo.scale = (float)(c->loftq->alpha / (double)c->loftq->rank);
    lo.scheme = it->scheme;
    lo.block = it->block;
    lo.double_quant = it->double_quant;
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (const char *p = it->src->name; *p; p++) h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
    lo.seed = h;
    return lo;
}

/* The item's source values (compute dtype) widened to fp32 (qt_free). */
static float *source_f32(const qt_conv *c, const qt_conv_item *it, const void *src)
{
    const size_t n = (size_t)it->src->n_elements;
    float *f = qt_malloc(n * sizeof(float));
    if (!f) return NULL;
    const unsigned char *p = src;
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        switch (c->compute) {
        case QT_DTYPE_F16: memcpy(&h, p + 2 * i, 2); f[i] = qt_fp16_to_fp32(h); break;
        case QT_DTYPE_BF16: memcpy(&h, p + 2 * i, 2); f[i] = qt_bf16_to_fp32(h); break;
        default: memcpy(&f[i], p + 4 * i, 4); break;
        }
    }
    return f;
}

static qt_status run_matrix(qt_conv *c, qt_conv_item *it, const void *src, qt_loftq_result *res,
                            char *errmsg)
{
    const qt_loftq_opts lo = item_opts(c, it);
    float *w = source_f32(c, it, src);
    if (!w) return qt_set_err(errmsg, QT_ERR_NOMEM, "tensor '%s': out of memory", it->src->name);
    char e[QT_ERRMSG_SIZE] = "";
    qt_status st = qt_loftq_matrix(w, (size_t)it->src->shape[0], (size_t)it->src->shape[1], &lo,
                                   res, e);
    qt_free(w);
    if (st != QT_OK) return qt_set_err(errmsg, st, "tensor '%s': %s", it->src->name, e);
    return QT_OK;
}

qt_status qt_conv_loftq_prepass(qt_conv *c, qt_conv_item *it, const void *src, char *errmsg)
{
    /* With one iteration the base is the plain quantization of W, whose
     * offset the ordinary prepass already computed. (There is a prepass
     * only with a calibration check; otherwise each weight is read once and
     * the offset comes with the written weight.) */
    if (!applies(c, it) || c->loftq->iters == 1 || !it->double_quant) return QT_OK;
    qt_loftq_result res;
    qt_status st = run_matrix(c, it, src, &res, errmsg);
    if (st == QT_OK) it->nested_offset = res.dq_offset;
    qt_loftq_result_release(&res);
    return st;
}

qt_status qt_conv_loftq_quantize(qt_conv *c, qt_conv_item *it, const void *src,
                                 qt_loftq_result *res, qt_qweight *q, char *errmsg)
{
    qt_status st = run_matrix(c, it, src, res, errmsg);
    if (st != QT_OK) return st;
    if (!c->single_read && it->double_quant && res->dq_offset != it->nested_offset)
        return qt_set_err(errmsg, QT_ERR_NUMERIC,
                          "tensor '%s': internal error: LoftQ's nested offset differs from the "
                          "prepass's",
                          it->src->name);
    memset(q, 0, sizeof *q);
    q->scheme = it->scheme;
    q->n_out = res->n_out;
    q->n_in = res->n_in;
    q->block_size = it->block;
    q->data = res->codes;
    if (it->double_quant) {
        q->absmax_q = res->dq_codes;
        q->nested_absmax = res->dq_nested;
        q->nested_offset = res->dq_offset;
    } else {
        q->absmax = res->absmax;
    }
    /* The adapter pair moves to the store; the base stays with res. */
    loftq_mod *m = &c->loftq->mods[it - c->items];
    const size_t nl = strlen(it->src->name) - strlen(".weight");
    m->m.name = qt_malloc(nl + 1);
    if (!m->m.name) return qt_set_err(errmsg, QT_ERR_NOMEM, "out of memory");
    memcpy(m->m.name, it->src->name, nl);
    m->m.name[nl] = 0;
    m->m.r = res->rank;
    m->m.n_in = res->n_in;
    m->m.n_out = res->n_out;
    m->m.A = res->lora_a;
    m->m.B = res->lora_b;
    res->lora_a = res->lora_b = NULL;
    m->norm_w = res->norm_w;
    m->err_plain = res->err_plain;
    m->err_loftq = res->err_loftq;
    m->used = res->used_loftq;
    m->done = true;
    return QT_OK;
}

qt_status qt_conv_loftq_finish(qt_conv *c, char *errmsg)
{
    if (!c->loftq) return QT_OK;
    qt_status st = QT_OK;
    qt_adapter_module *mods = NULL;
    size_t n = 0;
    char tmp[] = "/tmp/qtool-loftq-XXXXXX", path[4096 + 64];
    const char *tdir = NULL;
    mods = qt_calloc(c->n_items, sizeof *mods);
    QT_CHECK(mods, QT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < c->n_items; i++)
        if (c->loftq->mods[i].done) mods[n++] = c->loftq->mods[i].m;
    /* The adapter is written to a private temporary folder, then handed to
     * the output like the model's other files (it is committed with OUT). */
    tdir = mkdtemp(tmp);
    QT_CHECK(tdir, QT_ERR_IO, "cannot create a temporary folder in /tmp: %s", strerror(errno));
    const qt_adapter_spec spec = {
        .r = (int64_t)c->loftq->rank,
        .lora_alpha = c->loftq->alpha,
        .base_model = "..",
        /* the saved adapter must not re-run LoftQ when PEFT loads it */
        .extra_json = "  \"init_lora_weights\": true",
        .mods = mods,
        .n_mods = n,
    };
    QT_TRY(qt_adapter_write(tdir, &spec, errmsg));
    static const char *const files[] = {"adapter_config.json", "adapter_model.safetensors"};
    for (size_t i = 0; i < 2; i++) {
        char name[64];
        snprintf(path, sizeof path, "%s/%s", tdir, files[i]);
        snprintf(name, sizeof name, "loftq-adapter/%s", files[i]);
        QT_TRY(qt_outfmt_add_file(c->out, name, path, errmsg));
    }
fail:
    if (tdir) qt_tree_remove(tdir);
    qt_free(mods);
    return st;
}

void qt_conv_loftq_report(const qt_conv *c, qt_strbuf *b)
{
    if (!c->loftq) return;
    char t[48];
    qt_strbuf_printf(b, ",\n  \"loftq\": {\"rank\": %zu, \"iterations\": %u, \"lora_alpha\": ",
                     c->loftq->rank, c->loftq->iters);
    qt_py_float_repr(c->loftq->alpha, t, sizeof t);
    qt_strbuf_printf(b, "%s, \"modules\": [", t);
    bool first = true;
    for (size_t i = 0; i < c->n_items; i++) {
        const loftq_mod *m = &c->loftq->mods[i];
        if (!m->done) continue;
        const double nw = m->norm_w > 0 ? m->norm_w : 1.0;
        qt_strbuf_printf(b, "%s\n    {\"module\": ", first ? "" : ",");
        qt_strbuf_json_string(b, m->m.name);
        qt_strbuf_printf(b, ", \"rel_error_plain\": %.9g, \"rel_error_loftq\": %.9g, \"kept\": \"%s\"}",
                         m->err_plain / nw, m->err_loftq / nw, m->used ? "loftq" : "plain");
        first = false;
    }
    qt_strbuf_puts(b, "\n  ]}");
}

void qt_conv_loftq_summary(const qt_conv *c, size_t *n_mods, size_t *n_used, double *mean_plain,
                           double *mean_loftq)
{
    *n_mods = *n_used = 0;
    *mean_plain = *mean_loftq = 0;
    if (!c->loftq) return;
    for (size_t i = 0; i < c->n_items; i++) {
        const loftq_mod *m = &c->loftq->mods[i];
        if (!m->done) continue;
        const double nw = m->norm_w > 0 ? m->norm_w : 1.0;
        (*n_mods)++;
        *n_used += m->used;
        *mean_plain += m->err_plain / nw;
        *mean_loftq += (m->used ? m->err_loftq : m->err_plain) / nw;
    }
    if (*n_mods) *mean_plain /= (double)*n_mods, *mean_loftq /= (double)*n_mods;
}

void qt_conv_loftq_free(qt_conv *c)
{
    if (!c->loftq) return;
    for (size_t i = 0; c->loftq->mods && i < c->n_items; i++) {
        qt_free(c->loftq->mods[i].m.name);
        qt_free(c->loftq->mods[i].m.A);
        qt_free(c->loftq->mods[i].m.B);
    }
    qt_free(c->loftq->mods);
    qt_free(c->loftq);
    c->loftq = NULL;
}
