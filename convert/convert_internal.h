/* convert/convert_internal.h: shared between convert/ files only. */
#ifndef QT_CONVERT_INTERNAL_H
#define QT_CONVERT_INTERNAL_H

#include "convert/convert.h"
#include "convert/loftq.h"
#include "formats/pyjson.h"
#include "formats/modeldir.h"
#include "formats/outfmt.h"
#include "formats/recipe.h"

struct qt_conv {
    qt_conv_opts o;
    qt_modeldir *md;
    qt_layout *L;
    qt_recipe *recipe;
    qt_outfmt *out;      /* the output, planned with the items */
    char config_path[4096 + 16]; /* IN's config.json */
    const char **protect; /* every input shard's path (borrowed from md) */
    qt_conv_item *items; /* (n_items) */
    size_t n_items;
    size_t n_shards;
    qt_dtype compute; /* F32 / F16 / BF16 */
    char warning[256];
    char in_dir[4096];
    char **skip_modules; /* unquantized Linears, for the config (n_skip_modules) */
    size_t n_skip_modules;
    double seconds_total;
    char *options;     /* canonical "qtool.options" provenance string (heap) */
    double t_prepass, t_write, t_finish; /* phase times of qt_conv_run, seconds */
    bool measured;     /* qt_conv_measure done (prepass, check, budget) */
    uint64_t budget_params; /* --budget: parameters of the quantizable Linears */
    double budget_bits;     /* --budget: achieved bits per weight */
    struct qt_conv_loftq *loftq; /* --loftq state (convert/loftq_run.c), NULL when off */
    bool single_read;  /* no prepass: each weight read once (not with a calibration check) */
};

const char *qt_conv_torch_name(qt_dtype d);
/* Tells the output an item changed (its nested offset after the prepass,
 * its scheme after a calibration fallback); updates bytes_out. */
qt_status qt_conv_item_redeclare(qt_conv *c, qt_conv_item *it, char *errmsg);
/* The source values of a QUANT item in the compute dtype: the mapping when
 * the dtypes agree, else a converted copy (*owned, caller frees). */
qt_status qt_conv_item_source(const qt_conv *c, const qt_conv_item *it, const void **src,
                              void **owned, char *errmsg);
/* Quantizes an item's source values as the plan says into freshly
 * allocated buffers b (free with qt_conv_qbuf_free), described by *q.
 * dq_offset: the nested offset the prepass computed (it->nested_offset),
 * NULL = computed here (the prepass itself). */
qt_status qt_conv_quantize(const qt_conv *c, const qt_conv_item *it, const float *dq_offset,
                           const void *src, qt_qbuf *b, qt_qweight *q, char *errmsg);
void qt_conv_qbuf_free(qt_qbuf *b);
/* convert/estimate.c: the memory qt_conv_run holds while it works on an
 * item (its mapped input, its output buffers, a converted copy of the
 * input), and the budget for all items in flight (1.5 x the largest). */
uint64_t qt_conv_item_need(const qt_conv *c, const qt_conv_item *it);
uint64_t qt_conv_budget(const qt_conv *c);
/* The plain scheme that stores dtype d (bf16, fp16, else fp32), and the
 * dtype a plain scheme stores (convert, merge, validate). */
static inline qt_scheme qt_conv_plain_scheme(qt_dtype d)
{
    return d == QT_DTYPE_BF16 ? QT_SCHEME_BF16 : d == QT_DTYPE_F16 ? QT_SCHEME_FP16 : QT_SCHEME_FP32;
}
static inline qt_dtype qt_conv_plain_dtype(qt_scheme s)
{
    return s == QT_SCHEME_BF16 ? QT_DTYPE_BF16 : s == QT_SCHEME_FP16 ? QT_DTYPE_F16 : QT_DTYPE_F32;
}
/* Whether name is a Linear weight transformers' bitsandbytes integration
 * quantizes in a Llama-family model (what convert quantizes by default). */
bool qt_conv_default_linear(const char *name);
/* Refuses an OUT that exists without force, is not a folder, or holds the
 * input folder in_dir; *exists says whether OUT is there (convert and merge). */
qt_status qt_conv_check_out(const char *out, const char *in_dir, bool force, bool follow_symlinks,
                            bool *exists, char *errmsg);
/* Every non-weight file of the input folder in_dir (config.json aside: the
 * format derives its own) handed to the output (convert and merge). */
qt_status qt_conv_output_files(const char *in_dir, bool follow_symlinks, qt_outfmt *out,
                               char *errmsg);
/* "bf16"/"bfloat16", "fp16"/"float16"/"f16", "fp32"/"float32"/"f32" -> *d. */
bool qt_conv_dtype_from_name(const char *s, qt_dtype *d);
/* convert/validate.c: the calibration check pass over every item to
 * quantize (o.check; see qt_conv_check_fn), and the "qtool.fallback.*"
 * metadata of its fallbacks into the output. */
qt_status qt_conv_check_pass(qt_conv *c, char *errmsg);
/* Re-plans item it as `to` (QT_SCHEME_COUNT = the compute dtype, listed in
 * llm_int8_skip_modules) with the reason "fallback A->B: why". */
qt_status qt_conv_apply_fallback(qt_conv *c, qt_conv_item *it, qt_scheme to, const char *why,
                                 char *errmsg);
/* convert/budget.c: --budget (see there). */
bool qt_conv_budget_on(const qt_conv *c);
qt_status qt_conv_budget_select(qt_conv *c, char *errmsg);
qt_status qt_conv_budget_metadata(const qt_conv *c, qt_outfmt *out, char *errmsg);
void qt_conv_budget_report(const qt_conv *c, qt_strbuf *b);
qt_status qt_conv_fallback_metadata(const qt_conv *c, qt_outfmt *out, char *errmsg);

/* convert/outdir.c. The temporary folder of OUT's base name is
 * <parent>/<prefix><pid>; the prefix (buf, n bytes) keeps the name within
 * NAME_MAX (qt_out_stage_prefix of formats/out_stage.h, its one home). */
void qt_conv_tmp_prefix(const char *base, char *buf, size_t n);
/* An existing OUT may be replaced only when it is a previous qtool output
 * (every entry a file qtool writes, the shards with qtool's provenance)
 * or empty. @return QT_OK, QT_ERR_ARG (refused: the message names what is
 * there), QT_ERR_IO. */
qt_status qt_conv_check_replaceable(const char *out, char *errmsg);
/* Rule I6 for the files convert copies or rewrites (config.json and the
 * known model files): a symlink must stay inside IN unless
 * --follow-symlinks. @return QT_OK, QT_ERR_FORMAT (the file named). */
qt_status qt_conv_check_links(const char *in_dir, bool follow_symlinks, char *errmsg);
/* Copies the known non-weight files of IN (tokenizer, generation config,
 * chat template, README/license) into tmpdir: regular files within their
 * reader's size bound, symlinks only inside IN unless --follow-symlinks,
 * never more readable than the source. Nothing else is copied. tmpdir:
 * the output's staging folder (qt_outfmt_stage_dir).
 * @return QT_OK, QT_ERR_FORMAT (bad input), QT_ERR_IO, QT_ERR_NOMEM. */
qt_status qt_conv_copy_files(const char *in_dir, bool follow_symlinks, const char *tmpdir,
                             char *errmsg);
/* convert/input_guard.c: QT_OK while IN is as it was opened; QT_ERR_IO
 * naming the shard when a mapped read faulted (common/mapguard.h) or a
 * shard's size, inode or mtime changed: "IN changed while it was read". */
qt_status qt_conv_check_input(const qt_conv *c, char *errmsg);
/* convert/loftq_run.c: `convert --loftq R` (all no-ops when it is off).
 * prepare: checks the options against every quantized weight (exit-2
 * errors) and sets up the adapter store; prepass: the nested offset of
 * an item whose base is not plain NF4 of W (T > 1); quantize: the item's
 * LoftQ base as the output's *q (buffers in *res, release with
 * qt_loftq_result_release), its A / B kept for the adapter; finish: the
 * adapter into the output as loftq-adapter/; report: the "loftq" object
 * of the --report JSON; summary: one line for the user. */
qt_status qt_conv_loftq_prepare(qt_conv *c, char *errmsg);
bool qt_conv_loftq_on(const qt_conv *c);
qt_status qt_conv_loftq_prepass(qt_conv *c, qt_conv_item *it, const void *src, char *errmsg);
qt_status qt_conv_loftq_quantize(qt_conv *c, qt_conv_item *it, const void *src,
                                 qt_loftq_result *res, qt_qweight *q, char *errmsg);
qt_status qt_conv_loftq_finish(qt_conv *c, char *errmsg);
void qt_conv_loftq_report(const qt_conv *c, qt_strbuf *b);
void qt_conv_loftq_free(qt_conv *c);

#endif
