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
/* convert/validate.c: the calibration check pass over every item to
 * quantize (o.check; see qt_conv_check_fn), and the "qtool.fallback.*"
 * metadata of its fallbacks into the output. */
qt_status qt_conv_check_pass(qt_conv *c, char *errmsg);
qt_status qt_conv_fallback_metadata(const qt_conv *c, qt_outfmt *out, char *errmsg);

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
