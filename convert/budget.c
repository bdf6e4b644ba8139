/* convert/budget.c: mixed precision by measurement (`convert --calib TEXT
 * --budget BPW | --budget-size BYTES`). After the calibration pass has
 * measured every quantized Linear's relative output error e on real
 * activations, the modules quantization hurts most per byte are kept in the
 * compute dtype (listed in llm_int8_skip_modules, as transformers and vLLM
 * load them) until the budget is spent.
 *
 * The estimate: a module's loss is e^2 = ||X (W - W^)^T||^2 / ||X W^T||^2
 * (its relative output error on the calibration activations, squared); the
 * model's loss is taken as their sum. Keeping module i costs
 * dbytes_i = bytes_kept - bytes_quantized and saves e_i^2; the greedy
 * order e_i^2 / dbytes_i (ties: item order) fills the budget (a 0-1
 * knapsack by ratio: a module that does not fit is passed over, smaller
 * ones after it may still fit). docs/CALIBRATION.md measures how well e^2
 * predicts the model's KL divergence against one-module ablations. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "convert/convert_internal.h"

typedef struct cand {
    size_t item;
    double loss;      /* e^2 of the quantized module */
    uint64_t dbytes;  /* extra bytes to keep it in the compute dtype */
    uint64_t shuffle; /* --budget-order random: the order key */
} cand;

static int by_shuffle(const void *pa, const void *pb)
{
    const cand *a = pa, *b = pb;
    if (a->shuffle != b->shuffle) return a->shuffle < b->shuffle ? -1 : 1;
    return a->item < b->item ? -1 : a->item > b->item;
}

static int by_ratio(const void *pa, const void *pb)
{
    const cand *a = pa, *b = pb;
    /* a.loss / a.dbytes > b.loss / b.dbytes, without dividing */
    const double l = a->loss * (double)b->dbytes, r = b->loss * (double)a->dbytes;
    if (l != r) return l > r ? -1 : 1;
    return a->item < b->item ? -1 : a->item > b->item;
}

static uint64_t kept_bytes(const qt_conv *c, const qt_conv_item *it)
{
    return it->src->n_elements * (uint64_t)(qt_dtype_bits(c->compute) / 8);
}

/* Whether the budget kept it in the compute dtype (a candidate no longer
 * quantized). */
static bool kept_by_budget(const qt_conv_item *it)
{
    return it->budget_rank && it->action != QT_ACT_QUANT;
}

bool qt_conv_budget_on(const qt_conv *c)
{
    return c->o.budget_bpw > 0 || c->o.budget_bytes > 0;
}

qt_status qt_conv_budget_select(qt_conv *c, char *errmsg)
{
    qt_status st = QT_OK;
    cand *cs = NULL;
    if (!qt_conv_budget_on(c)) return QT_OK;
    QT_CHECK(c->o.check == qt_conv_calib_check && c->o.check_ctx, QT_ERR_ARG,
             "--budget needs the calibration check (--calib TEXT)");
    qt_conv_calib *k = c->o.check_ctx;
    cs = qt_calloc(c->n_items + 1, sizeof *cs);
    QT_CHECK(cs, QT_ERR_NOMEM, "out of memory");
    size_t n = 0;
    uint64_t params = 0, quant_bytes = 0, extra_max = 0, all_bytes = 0;
    for (size_t i = 0; i < c->n_items; i++) {
        const qt_conv_item *it = &c->items[i];
        all_bytes += it->bytes_out;
        if (it->action != QT_ACT_QUANT) continue;
        const qt_calib_entry *e = k->report ? qt_calib_report_find(k->report, it->src->name) : NULL;
        const double rel = e && e->have_out && isfinite(e->oerr.rel) ? e->oerr.rel : 0.0;
        const uint64_t kb = kept_bytes(c, it);
        cs[n] = (cand){i, rel * rel, kb > it->bytes_out ? kb - it->bytes_out : 0, 0};
        params += it->src->n_elements;
        quant_bytes += it->bytes_out;
        extra_max += cs[n].dbytes;
        n++;
    }
    QT_CHECK(n > 0 && params > 0, QT_ERR_ARG, "--budget: the plan quantizes no weight");
    /* The allowance over the all-quantized output, in bytes. */
    uint64_t allow;
    if (c->o.budget_bpw > 0) {
        const double lo = 8.0 * (double)quant_bytes / (double)params;
        const double hi = 8.0 * (double)(quant_bytes + extra_max) / (double)params;
        QT_CHECK(c->o.budget_bpw >= lo - 1e-9 && c->o.budget_bpw <= hi + 1e-9, QT_ERR_ARG,
                 "--budget %g bpw: outside the feasible range [%.4f, %.4f] bits per weight of "
                 "the quantizable Linears (all %s .. all %s)",
                 c->o.budget_bpw, lo, hi, qt_scheme_get(c->o.scheme)->name,
                 qt_conv_torch_name(c->compute));
        const double bytes = c->o.budget_bpw * (double)params / 8.0;
        allow = bytes > (double)quant_bytes ? (uint64_t)(bytes - (double)quant_bytes) : 0;
    } else {
        QT_CHECK(c->o.budget_bytes >= all_bytes && c->o.budget_bytes <= all_bytes + extra_max,
                 QT_ERR_ARG,
                 "--budget-size %" PRIu64 ": outside the feasible range [%" PRIu64 ", %" PRIu64
                 "] bytes of tensors",
                 c->o.budget_bytes, all_bytes, all_bytes + extra_max);
        allow = c->o.budget_bytes - all_bytes;
    }
    uint64_t seed = c->o.budget_random;
    for (size_t j = 0; j < n; j++) cs[j].shuffle = qt_splitmix64(&seed);
    qsort(cs, n, sizeof *cs, c->o.budget_random ? by_shuffle : by_ratio);
    uint64_t used = 0;
    for (size_t j = 0; j < n; j++) {
        qt_conv_item *it = &c->items[cs[j].item];
        const bool keep = (cs[j].loss > 0 || c->o.budget_random) && used + cs[j].dbytes <= allow;
        it->budget_loss = cs[j].loss;
        it->budget_rank = j + 1;
        if (!keep) continue;
        used += cs[j].dbytes;
        char why[64];
        snprintf(why, sizeof why, "budget (loss %.3g, rank %zu)", cs[j].loss, j + 1);
        QT_TRY(qt_conv_apply_fallback(c, it, QT_SCHEME_COUNT, why, errmsg));
        /* the check's report shows the decision too (validate's HTML) */
        qt_calib_entry *e = k->report ? qt_calib_report_find(k->report, it->src->name) : NULL;
        if (e) {
            e->verdict = QT_VERDICT_FALLBACK;
            snprintf(e->fallback, sizeof e->fallback, "%s", qt_conv_torch_name(c->compute));
        }
    }
    c->budget_params = params;
    c->budget_bits = 8.0 * (double)(quant_bytes + used) / (double)params;
fail:
    qt_free(cs);
    return st;
}

qt_status qt_conv_budget_metadata(const qt_conv *c, qt_outfmt *out, char *errmsg)
{
    if (!qt_conv_budget_on(c)) return QT_OK;
    char v[160];
    size_t kept = 0;
    for (size_t i = 0; i < c->n_items; i++)
        kept += kept_by_budget(&c->items[i]);
    if (c->o.budget_bpw > 0)
        snprintf(v, sizeof v, "bpw=%.6g;achieved_bpw=%.6g;kept=%zu", c->o.budget_bpw,
                 c->budget_bits, kept);
    else
        snprintf(v, sizeof v, "bytes=%" PRIu64 ";achieved_bpw=%.6g;kept=%zu", c->o.budget_bytes,
                 c->budget_bits, kept);
    return qt_outfmt_add_metadata(out, "qtool.budget", v, errmsg);
}

void qt_conv_budget_report(const qt_conv *c, qt_strbuf *b)
{
    if (!qt_conv_budget_on(c)) return;
    qt_strbuf_printf(b, ",\n  \"budget\": {\"bpw\": %.9g, \"bytes\": %" PRIu64
                        ", \"achieved_bpw\": %.9g, \"modules\": [",
                     c->o.budget_bpw, c->o.budget_bytes, c->budget_bits);
    bool first = true;
    for (size_t i = 0; i < c->n_items; i++) {
        const qt_conv_item *it = &c->items[i];
        if (!it->budget_rank) continue;
        const bool kept = kept_by_budget(it);
        qt_strbuf_printf(b, "%s\n    {\"tensor\": ", first ? "" : ",");
        qt_strbuf_json_string(b, it->src->name);
        qt_strbuf_printf(b, ", \"sensitivity\": %.9g, \"rank\": %zu, \"bytes\": %" PRIu64
                            ", \"decision\": \"%s\"}",
                         it->budget_loss, it->budget_rank, it->bytes_out,
                         kept ? qt_conv_torch_name(c->compute) : "quantized");
        first = false;
    }
    qt_strbuf_puts(b, "\n  ]}");
}

double qt_conv_budget_bpw(const qt_conv *c) { return c->budget_bits; }
