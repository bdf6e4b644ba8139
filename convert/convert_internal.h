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
/* convert/validate.c: the calibration check pass over every item to
 * quantize (o.check; see qt_conv_check_fn), and the "qtool.fallback.*"
 * metadata of its fallbacks into a shard writer. */
qt_status qt_conv_check_pass(qt_conv *c, char *errmsg);
qt_status qt_conv_fallback_metadata(const qt_conv *c, qt_st_writer *w, char *errmsg);

/* convert/outdir.c. The temporary folder of OUT's base name is
 * <parent>/<prefix><pid>; the prefix (buf, n bytes) keeps the name within
 * NAME_MAX. */
void qt_conv_tmp_prefix(const char *base, char *buf, size_t n);
/* An existing OUT may be replaced only when it is a previous qtool output
 * (every entry a file qtool writes, the shards with qtool's provenance)
 * or empty. @return QT_OK, QT_ERR_ARG (refused: the message names what is
 * there), QT_ERR_IO. */
qt_status qt_conv_check_replaceable(const char *out, char *errmsg);
/* Rule I6 for the files convert copies or rewrites (config.json and the
 * known model files): a symlink must stay inside IN unless
 * --follow-symlinks. @return QT_OK, QT_ERR_FORMAT (the file named). */
qt_status qt_conv_check_links(const qt_conv *c, char *errmsg);
/* Copies the known non-weight files of IN (tokenizer, generation config,
 * chat template, README/license) into tmpdir: regular files within their
 * reader's size bound, symlinks only inside IN unless --follow-symlinks,
 * never more readable than the source. Nothing else is copied.
 * @return QT_OK, QT_ERR_FORMAT (bad input), QT_ERR_IO, QT_ERR_NOMEM. */
qt_status qt_conv_copy_files(const qt_conv *c, const char *tmpdir, char *errmsg);
/* convert/input_guard.c: QT_OK while IN is as it was opened; QT_ERR_IO
 * naming the shard when a mapped read faulted (common/mapguard.h) or a
 * shard's size, inode or mtime changed: "IN changed while it was read". */
qt_status qt_conv_check_input(const qt_conv *c, char *errmsg);

#endif
