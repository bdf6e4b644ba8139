/* convert/validate.c: the calibration check inside `qtool convert`
 * (qt_conv_check_fn in convert/convert.h): every tensor to quantize is
 * quantized once more, before any shard is opened, with the kernels and
 * arguments the write uses (quant/quant.h: the same codes, scales and
 * double-quantization offset), measured against its original by the check
 * callback, and kept, failed or re-planned at a higher precision. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/half.h"
#include "convert/convert.h"
#include "convert/convert_internal.h"
#include "formats/safetensors.h"

/* Re-plans an item after a FALLBACK verdict. */
qt_status qt_conv_apply_fallback(qt_conv *c, qt_conv_item *it, qt_scheme to, const char *why,
                                 char *errmsg)
{
    qt_status st = QT_OK;
    const char *from = qt_scheme_get(it->scheme)->name;
    char fromlbl[32];
    snprintf(fromlbl, sizeof fromlbl, "%s%s", from, it->double_quant ? "+dq" : "");
    if (to == QT_SCHEME_COUNT) to = qt_conv_plain_scheme(c->compute);
    const bool plain = qt_scheme_has(to, QT_SCHEME_F_PLAIN);
    const bool was4 = it->scheme == QT_SCHEME_NF4 || it->scheme == QT_SCHEME_FP4;
    if (plain) {
        it->action = QT_ACT_KEEP;
        it->out_dtype = qt_conv_plain_dtype(to);
        it->scheme = to;
        it->block = 0;
        it->double_quant = false;
        /* an unquantized Linear: transformers must not replace it */
        char mod[1024];
        snprintf(mod, sizeof mod, "%s", it->src->name);
        size_t l = strlen(mod);
        if (l > 7 && !strcmp(mod + l - 7, ".weight")) mod[l - 7] = 0;
        bool have = false;
        for (size_t i = 0; i < c->n_skip_modules; i++) have = have || !strcmp(c->skip_modules[i], mod);
        if (!have) {
            /* the plan sized skip_modules for every item plus lm_head */
            QT_CHECK(c->n_skip_modules < c->n_items + 1, QT_ERR_ARG, "internal: skip list full");
            c->skip_modules[c->n_skip_modules] = qt_strdup(mod);
            QT_CHECK(c->skip_modules[c->n_skip_modules], QT_ERR_NOMEM, "out of memory");
            c->n_skip_modules++;
        }
    } else {
        QT_CHECK(qt_scheme_has(to, QT_SCHEME_F_FALLBACK), QT_ERR_ARG,
                 "--fallback %s: not a fallback scheme", qt_scheme_get(to)->name);
        it->scheme = to;
        it->block = to == QT_SCHEME_INT8 ? 0 : qt_scheme_get(to)->default_block;
        it->double_quant = false;
        if (was4 && !c->warning[0])
            snprintf(c->warning, sizeof c->warning,
                     "fallbacks mix scheme families (4-bit and %s): transformers cannot load such "
                     "a model; qtool can",
                     qt_scheme_get(to)->name);
    }
    snprintf(it->reason, sizeof it->reason, "fallback %s->%s: %.60s", fromlbl,
             qt_scheme_get(to)->name, why);
    QT_TRY(qt_conv_item_redeclare(c, it, errmsg));
fail:
    return st;
}

qt_status qt_conv_check_pass(qt_conv *c, char *errmsg)
{
    qt_status st = QT_OK;
    void *owned = NULL;
    qt_qbuf b = {0};
    size_t n_failed = 0;
    char failed[160] = "";
    for (size_t i = 0; i < c->n_items; i++) {
        qt_conv_item *it = &c->items[i];
        for (int round = 0; round < 2 && it->action == QT_ACT_QUANT; round++) {
            const void *src = NULL;
            qt_qweight qo, qq;
            QT_TRY(qt_conv_item_source(c, it, &src, &owned, errmsg));
            QT_TRY(qt_conv_quantize(c, it, &it->nested_offset, src, &b, &qq, errmsg));
            memset(&qo, 0, sizeof qo);
            qo.scheme = qt_conv_plain_scheme(c->compute);
            qo.n_out = qq.n_out;
            qo.n_in = qq.n_in;
            qo.data = src;
            qt_conv_verdict v = QT_CONV_PASS;
            qt_scheme fb = QT_SCHEME_COUNT;
            QT_TRY(c->o.check(c->o.check_ctx, it, &qo, &qq, &v, &fb, errmsg));
            qt_conv_qbuf_free(&b);
            qt_free(owned);
            owned = NULL;
            if (v == QT_CONV_FALLBACK && round == 0) {
                QT_TRY(qt_conv_apply_fallback(c, it, fb, "over the output-error threshold", errmsg));
                continue; /* a quantized fallback is checked once more */
            }
            if (v != QT_CONV_PASS) {
                if (n_failed++ == 0) snprintf(failed, sizeof failed, "'%s'", it->src->name);
                else if (strlen(failed) + strlen(it->src->name) + 8 < sizeof failed) {
                    size_t l = strlen(failed);
                    snprintf(failed + l, sizeof failed - l, ", '%s'", it->src->name);
                }
            }
            break;
        }
        QT_CHECK(!(c->o.cancel && *c->o.cancel), QT_ERR_ARG, "cancelled");
    }
    QT_CHECK(n_failed == 0, QT_ERR_NUMERIC,
             "%zu tensor(s) over the calibration output-error threshold: %s", n_failed, failed);
fail:
    qt_conv_qbuf_free(&b);
    qt_free(owned);
    return st;
}

qt_status qt_conv_fallback_metadata(const qt_conv *c, qt_outfmt *out, char *errmsg)
{
    for (size_t i = 0; i < c->n_items; i++) {
        const qt_conv_item *it = &c->items[i];
        if (strncmp(it->reason, "fallback ", 9) != 0) continue;
        char key[300];
        snprintf(key, sizeof key, "qtool.fallback.%s", it->src->name);
        qt_status st = qt_outfmt_add_metadata(out, key, it->reason + 9, errmsg);
        if (st != QT_OK) return st;
    }
    return QT_OK;
}

qt_status qt_conv_calib_check(void *ctx, const qt_conv_item *it, const qt_qweight *orig,
                              const qt_qweight *quant, qt_conv_verdict *verdict,
                              qt_scheme *fallback, char *errmsg)
{
    qt_conv_calib *k = ctx;
    char label[32];
    snprintf(label, sizeof label, "%s%s", qt_scheme_get(it->scheme)->name,
             it->double_quant ? "+dq" : "");
    qt_calib_entry e;
    qt_status st = qt_calib_measure(k->set, it->src->name, label, orig, quant, k->max_error, &e);
    if (st != QT_OK)
        return qt_set_err(errmsg, st, "tensor '%s': cannot measure it (%s)", it->src->name,
                          qt_status_str(st));
    *verdict = QT_CONV_PASS;
    *fallback = k->fallback;
    qt_calib_entry *prev = k->report ? qt_calib_report_find(k->report, it->src->name) : NULL;
    if (prev && prev->verdict == QT_VERDICT_FALLBACK) {
        /* the re-check of a quantized fallback */
        prev->have_fb = e.have_out;
        prev->fb_oerr = e.oerr;
        if (e.verdict == QT_VERDICT_FAIL) {
            prev->verdict = QT_VERDICT_FAIL;
            *verdict = QT_CONV_FAIL;
        }
        return QT_OK;
    }
    if (e.verdict == QT_VERDICT_FAIL) {
        if (k->fallback_on) {
            e.verdict = QT_VERDICT_FALLBACK;
            qt_scheme to = k->fallback == QT_SCHEME_COUNT ? orig->scheme : k->fallback;
            snprintf(e.fallback, sizeof e.fallback, "%s", qt_scheme_get(to)->name);
            *verdict = QT_CONV_FALLBACK;
        } else {
            *verdict = QT_CONV_FAIL;
        }
    }
    if (k->report && qt_calib_report_add(k->report, &e) != QT_OK)
        return qt_set_err(errmsg, QT_ERR_NOMEM, "out of memory");
    return QT_OK;
}
