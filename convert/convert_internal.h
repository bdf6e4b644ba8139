/* convert/convert_internal.h: shared between convert/ files only. */
#ifndef QT_CONVERT_INTERNAL_H
#define QT_CONVERT_INTERNAL_H

#include "convert/convert.h"
#include "formats/modeldir.h"
#include "formats/recipe.h"

struct qt_conv {
    qt_conv_opts o;
    qt_modeldir *md;
    qt_layout *L;
    qt_recipe *recipe;
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
};

const char *qt_conv_torch_name(qt_dtype d);
/* Recomputes an item's output parts (after its nested offset is known). */
qt_status item_parts_refresh(qt_conv *c, qt_conv_item *it, char *errmsg);
/* convert/estimate.c: the memory qt_conv_run holds while it works on an
 * item (its mapped input, its output buffers, a converted copy of the
 * input), and the budget for all items in flight (1.5 x the largest). */
uint64_t qt_conv_item_need(const qt_conv *c, const qt_conv_item *it);
uint64_t qt_conv_budget(const qt_conv *c);
/* convert/validate.c: the calibration check pass over every item to
 * quantize (o.check; see qt_conv_check_fn), and the "qtool.fallback.*"
 * metadata of its fallbacks into a shard writer. */
qt_status qt_conv_check_pass(qt_conv *c, char *errmsg);
qt_status qt_conv_fallback_metadata(const qt_conv *c, qt_st_writer *w, char *errmsg);

#endif
