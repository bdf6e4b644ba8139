/* formats/outfmt.c: the table of output formats and the calls of the
 * output-format seam (see outfmt.h): each call checks the phase and the
 * weight id, then hands over to the format's own operation. */
#include "formats/outfmt.h"

#include <stdint.h>
#include <string.h>

#include "formats/out_gguf.h"
#include "formats/out_safetensors.h"

/* ---- the table: one row per format ------------------------------------ */
static const qt_outfmt_ops *const formats[] = {
    &qt_out_safetensors_ops,
    &qt_out_gguf_ops,
};

const qt_outfmt_ops *qt_outfmt_find(const char *name)
{
    for (size_t i = 0; i < sizeof formats / sizeof *formats; i++)
        if (!strcmp(formats[i]->name, name)) return formats[i];
    return NULL;
}

const char *qt_outfmt_names(void) { return "safetensors, gguf"; }

/* ---- an output --------------------------------------------------------- */
typedef enum phase { DECLARING = 0, PLANNED, WRITING, DONE } phase;

struct qt_outfmt {
    const qt_outfmt_ops *ops;
    void *self;
    size_t n_weights;
    phase ph;
};

/* Refuses a call made in the wrong phase or on an undeclared weight (a
 * caller bug, reported as such); id SIZE_MAX = no weight. */
static qt_status ready(const qt_outfmt *o, phase want, size_t id, const char *what, char *errmsg)
{
    if (o->ph != want)
        return qt_set_err(errmsg, QT_ERR_ARG, "internal: output %s called out of order", what);
    if (id != SIZE_MAX && id >= o->n_weights)
        return qt_set_err(errmsg, QT_ERR_ARG, "internal: output weight %zu not declared", id);
    return QT_OK;
}

qt_status qt_outfmt_new(const char *name, const qt_out_model *m, qt_outfmt **out, char *errmsg)
{
    qt_status st = QT_OK;
    *out = NULL;
    const qt_outfmt_ops *ops = qt_outfmt_find(name ? name : "safetensors");
    QT_CHECK(ops != NULL, QT_ERR_ARG, "output format '%s' is not one of: %s", name,
             qt_outfmt_names());
    qt_outfmt *o = qt_calloc(1, sizeof *o);
    QT_CHECK(o != NULL, QT_ERR_NOMEM, "out of memory");
    o->ops = ops;
    st = ops->create(m, &o->self, errmsg);
    if (st != QT_OK) {
        qt_free(o);
        return st;
    }
    *out = o;
fail:
    return st;
}

qt_status qt_outfmt_declare(qt_outfmt *o, const qt_out_weight *w, size_t *id, char *errmsg)
{
    qt_status st = ready(o, DECLARING, SIZE_MAX, "declare", errmsg);
    if (st == QT_OK) st = o->ops->declare(o->self, o->n_weights, w, errmsg);
    if (st == QT_OK) *id = o->n_weights++;
    return st;
}

qt_status qt_outfmt_plan(qt_outfmt *o, char *errmsg)
{
    qt_status st = ready(o, DECLARING, SIZE_MAX, "plan", errmsg);
    if (st == QT_OK) st = o->ops->plan(o->self, errmsg);
    if (st == QT_OK) o->ph = PLANNED;
    return st;
}

qt_status qt_outfmt_redeclare(qt_outfmt *o, size_t id, const qt_out_weight *w, char *errmsg)
{
    qt_status st = ready(o, PLANNED, id, "redeclare", errmsg);
    if (st == QT_OK) st = o->ops->redeclare(o->self, id, w, errmsg);
    return st;
}

uint64_t qt_outfmt_weight_bytes(const qt_outfmt *o, size_t id)
{
    return id < o->n_weights ? o->ops->weight_bytes(o->self, id) : 0;
}

uint64_t qt_outfmt_total_bytes(const qt_outfmt *o)
{
    if (o->ops->total_bytes) return o->ops->total_bytes(o->self);
    uint64_t sum = 0;
    for (size_t id = 0; id < o->n_weights; id++) sum += o->ops->weight_bytes(o->self, id);
    return sum;
}

size_t qt_outfmt_n_files(const qt_outfmt *o) { return o->ops->n_files(o->self); }
const char *qt_outfmt_file(const qt_outfmt *o, size_t i) { return o->ops->file(o->self, i); }
size_t qt_outfmt_n_weight_files(const qt_outfmt *o) { return o->ops->n_weight_files(o->self); }

qt_status qt_outfmt_add_metadata(qt_outfmt *o, const char *key, const char *value, char *errmsg)
{
    qt_status st = QT_OK;
    QT_CHECK(o->ph <= PLANNED, QT_ERR_ARG, "internal: output metadata added after begin");
    QT_TRY(o->ops->add_metadata(o->self, key, value, errmsg));
fail:
    return st;
}

qt_status qt_outfmt_begin(qt_outfmt *o, bool replace, char *errmsg)
{
    qt_status st = ready(o, PLANNED, SIZE_MAX, "begin", errmsg);
    if (st == QT_OK) st = o->ops->begin(o->self, replace, errmsg);
    if (st == QT_OK) o->ph = WRITING;
    return st;
}

qt_status qt_outfmt_write_quant(qt_outfmt *o, size_t id, const qt_qweight *q, char *errmsg)
{
    qt_status st = ready(o, WRITING, id, "write", errmsg);
    if (st == QT_OK) st = o->ops->write_quant(o->self, id, q, errmsg);
    return st;
}

qt_status qt_outfmt_write_plain(qt_outfmt *o, size_t id, uint64_t offset, const void *data,
                                size_t n, char *errmsg)
{
    qt_status st = ready(o, WRITING, id, "write", errmsg);
    if (st == QT_OK) st = o->ops->write_plain(o->self, id, offset, data, n, errmsg);
    return st;
}

qt_status qt_outfmt_add_file(qt_outfmt *o, const char *name, const char *src_path, char *errmsg)
{
    qt_status st = ready(o, WRITING, SIZE_MAX, "add_file", errmsg);
    if (st == QT_OK) st = o->ops->add_file(o->self, name, src_path, errmsg);
    return st;
}

const char *qt_outfmt_stage_dir(const qt_outfmt *o)
{
    if (o->ph != WRITING || !o->ops->stage_dir) return NULL;
    return o->ops->stage_dir(o->self);
}

qt_status qt_outfmt_commit(qt_outfmt *o, const char *const *skip_modules, size_t n_skip,
                           char *errmsg)
{
    qt_status st = ready(o, WRITING, SIZE_MAX, "commit", errmsg);
    if (st == QT_OK) st = o->ops->commit(o->self, skip_modules, n_skip, errmsg);
    if (st == QT_OK) o->ph = DONE;
    return st;
}

void qt_outfmt_free(qt_outfmt *o)
{
    if (!o) return;
    o->ops->destroy(o->self);
    qt_free(o);
}
