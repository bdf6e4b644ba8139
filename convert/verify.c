/* convert/verify.c: `qtool verify ORIGINAL QUANTIZED`: re-derives a
 * bitsandbytes checkpoint from its original with the options its own
 * tensors record, then compares every tensor byte for byte (convert.h). */
#include "convert/convert.h"

#include <stdlib.h>
#include <string.h>

#include "formats/bnb.h"
#include "formats/fsutil.h"
#include "formats/modeldir.h"

/* The --compute-dtype name of a torch dtype name or a float tensor dtype. */
static const char *cdt_of_torch(const char *torch)
{
    if (!strcmp(torch, "bfloat16")) return "bf16";
    if (!strcmp(torch, "float16")) return "fp16";
    if (!strcmp(torch, "float32")) return "fp32";
    return NULL;
}
static const char *cdt_of_dtype(qt_dtype d)
{
    return d == QT_DTYPE_BF16 ? "bf16" : d == QT_DTYPE_F16 ? "fp16" : d == QT_DTYPE_F32 ? "fp32" : NULL;
}

/* The conversion options QUANTIZED records in its tensors: the scheme and
 * quant_state of 4-bit weights (quant type, block size, double quant,
 * dtype), `.SCB` for LLM.int8 (the dtype of its first unquantized float
 * tensor). */
static qt_status infer_options(const qt_modeldir *q, const char *path, qt_conv_opts *o,
                               char *errmsg)
{
    qt_status st = QT_OK;
    bool four = false, eight = false;
    const char *plain_dt = NULL;
    for (size_t i = 0; i < qt_modeldir_n_tensors(q); i++) {
        const qt_st_tensor *t = qt_modeldir_tensor(q, i, NULL);
        if (strstr(t->name, ".quant_state.bitsandbytes__")) {
            qt_bnb_state s;
            QT_TRY(qt_bnb_state_parse(t->data, (size_t)t->nbytes, t->name, &s, errmsg));
            qt_scheme sc = !strcmp(s.quant_type, "fp4") ? QT_SCHEME_FP4 : QT_SCHEME_NF4;
            QT_CHECK(strcmp(s.quant_type, "q8") != 0, QT_ERR_UNSUPPORTED,
                     "'%s': tensor '%s': qtool's q8 layout, not a bitsandbytes checkpoint", path,
                     t->name);
            QT_CHECK(!four || (o->scheme == sc && o->block == (size_t)s.blocksize &&
                               o->double_quant == s.nested),
                     QT_ERR_UNSUPPORTED,
                     "'%s': tensor '%s': quant_state differs from the first weight's "
                     "(verify needs one scheme, block size and double quantization)",
                     path, t->name);
            o->scheme = sc;
            o->block = (size_t)s.blocksize;
            o->double_quant = s.nested;
            o->compute_dtype = cdt_of_torch(s.dtype);
            four = true;
        } else if (qt_str_ends_with(t->name, ".SCB")) {
            eight = true;
        } else if (!plain_dt && !qt_str_ends_with(t->name, ".absmax") &&
                   !qt_str_ends_with(t->name, ".quant_map") &&
                   !qt_str_ends_with(t->name, ".nested_absmax") &&
                   !qt_str_ends_with(t->name, ".nested_quant_map")) {
            plain_dt = cdt_of_dtype(t->dtype);
        }
    }
    QT_CHECK(four || eight, QT_ERR_FORMAT,
             "'%s': no bitsandbytes weight (no '.quant_state.bitsandbytes__*' or '.SCB' tensor)",
             path);
    QT_CHECK(!(four && eight), QT_ERR_UNSUPPORTED,
             "'%s': mixes 4-bit and LLM.int8 weights; verify needs one scheme", path);
    if (eight) {
        o->scheme = QT_SCHEME_INT8;
        o->block = 0;
        o->double_quant = false;
        o->compute_dtype = plain_dt;
    }
fail:
    return st;
}

/* Byte comparison of two tensors of the same name into r. */
static void compare_tensor(const qt_st_tensor *q, const qt_st_tensor *d, qt_verify_tensor *r)
{
    r->same_layout = q->dtype == d->dtype && q->n_dims == d->n_dims &&
                     !memcmp(q->shape, d->shape, q->n_dims * sizeof q->shape[0]);
    const unsigned char *a = q->data, *b = d->data;
    uint64_t n = q->nbytes < d->nbytes ? q->nbytes : d->nbytes;
    r->n_diff = q->nbytes > d->nbytes ? q->nbytes - d->nbytes : d->nbytes - q->nbytes;
    r->first_diff = r->n_diff ? n : UINT64_MAX;
    for (uint64_t i = n; i-- > 0;)
        if (a[i] != b[i]) {
            r->n_diff++;
            r->first_diff = i;
        }
}

/* Every tensor of QUANTIZED against the derived one, then the derived
 * tensors QUANTIZED lacks. */
static size_t compare_all(const qt_modeldir *q, const qt_modeldir *d, qt_verify_fn fn, void *ctx,
                          size_t *n_extra)
{
    *n_extra = 0;
    size_t n_differ = 0;
    for (size_t i = 0; i < qt_modeldir_n_tensors(q); i++) {
        const qt_st_tensor *tq = qt_modeldir_tensor(q, i, NULL);
        const qt_st_tensor *td = qt_modeldir_find(d, tq->name, NULL);
        qt_verify_tensor r = {.name = tq->name, .in_quantized = true, .in_derived = td != NULL,
                              .n_bytes = tq->nbytes, .first_diff = UINT64_MAX};
        if (td) compare_tensor(tq, td, &r);
        r.identical = td && r.same_layout && r.n_diff == 0;
        n_differ += !r.identical;
        if (fn) fn(ctx, &r);
    }
    for (size_t i = 0; i < qt_modeldir_n_tensors(d); i++) {
        const qt_st_tensor *td = qt_modeldir_tensor(d, i, NULL);
        if (qt_modeldir_find(q, td->name, NULL)) continue;
        qt_verify_tensor r = {.name = td->name, .in_derived = true, .n_bytes = td->nbytes,
                              .first_diff = UINT64_MAX};
        n_differ++;
        (*n_extra)++;
        if (fn) fn(ctx, &r);
    }
    return n_differ;
}

qt_status qt_conv_verify(const char *original, const char *quantized, const uint8_t *rcp,
                         qt_verify_fn fn, void *ctx, qt_verify_summary *sum, char *errmsg)
{
    qt_status st = QT_OK;
    qt_modeldir *q = NULL, *d = NULL;
    qt_conv *cv = NULL;
    char tmp[4096] = "", out[4200];
    memset(sum, 0, sizeof *sum);
    /* what QUANTIZED says about how it was made */
    QT_TRY(qt_modeldir_open(quantized, &q, errmsg));
    qt_conv_opts o = {.in = original, .rcp = rcp};
    QT_TRY(infer_options(q, quantized, &o, errmsg));
    char blk[48] = "";
    if (o.scheme != QT_SCHEME_INT8)
        snprintf(blk, sizeof blk, "%s --block %zu", o.double_quant ? "" : " --no-double-quant",
                 o.block);
    snprintf(sum->options, sizeof sum->options, "--scheme %s%s --compute-dtype %s%s",
             qt_scheme_get(o.scheme)->name, blk, o.compute_dtype ? o.compute_dtype : "(config)",
             rcp ? " --match cuda" : "");
    /* re-derive it into a temporary folder (memory bounded as convert) */
    const char *tdir = getenv("TMPDIR");
    snprintf(tmp, sizeof tmp, "%s/qtool-verify-XXXXXX", tdir && *tdir ? tdir : "/tmp");
    QT_CHECK(mkdtemp(tmp) != NULL, QT_ERR_IO, "cannot create a temporary folder '%s'", tmp);
    snprintf(out, sizeof out, "%s/derived", tmp);
    o.out = out;
    QT_TRY(qt_conv_plan(&o, &cv, errmsg));
    QT_TRY(qt_conv_run(cv, errmsg));
    /* compare */
    QT_TRY(qt_modeldir_open(out, &d, errmsg));
    size_t n_extra;
    size_t n_differ = compare_all(q, d, fn, ctx, &n_extra);
    sum->n_tensors = qt_modeldir_n_tensors(q);
    sum->n_differ = n_differ;
    sum->n_identical = sum->n_tensors - (n_differ - n_extra);
fail:
    qt_conv_free(cv);
    qt_modeldir_close(q);
    qt_modeldir_close(d);
    if (tmp[0] && strstr(tmp, "XXXXXX") == NULL) qt_tree_remove(tmp);
    return st;
}
