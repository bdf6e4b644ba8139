/* convert/convert.c: plan, stream, write atomically (see convert.h). */
#include "convert/convert.h"
#include "convert/convert_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/half.h"
#include "common/progress.h"
#include "common/sha256.h"
#include "formats/fsutil.h"
#include "formats/outfmt.h"
#include "formats/modeldir.h"
#include "formats/pyjson.h"
#include "model/model.h"
#include "formats/recipe.h"
#include "formats/safetensors.h"
#include "model/arch.h"

#define CHUNK_ELEMS ((size_t)1 << 20)


/* ---- small helpers ----------------------------------------------------- */
const char *qt_conv_torch_name(qt_dtype d) { return qt_dtype_torch_name(d); }

static bool dtype_from_name(const char *s, qt_dtype *d)
{
    if (!strcmp(s, "bf16") || !strcmp(s, "bfloat16")) *d = QT_DTYPE_BF16;
    else if (!strcmp(s, "fp16") || !strcmp(s, "float16") || !strcmp(s, "f16")) *d = QT_DTYPE_F16;
    else if (!strcmp(s, "fp32") || !strcmp(s, "float32") || !strcmp(s, "f32")) *d = QT_DTYPE_F32;
    else return false;
    return true;
}

static bool is_float_dtype(qt_dtype d)
{
    return d == QT_DTYPE_F32 || d == QT_DTYPE_F16 || d == QT_DTYPE_BF16;
}

/* A scheme convert quantizes weights with (the scheme table says which). */
static bool is_quant_scheme(qt_scheme s)
{
    return qt_scheme_has(s, QT_SCHEME_F_CONVERT) && !qt_scheme_has(s, QT_SCHEME_F_PLAIN);
}

/* The Linear weights quantized by default (the Llama table, model/arch.h),
 * and every Linear (with lm_head). */
static bool is_default_linear(const char *name) { return qt_llama_parse_linear(name, NULL, NULL); }

static bool is_linear_name(const char *name)
{
    return is_default_linear(name) || !strcmp(name, QT_LLAMA_LM_HEAD);
}

static void module_of(const char *name, char *buf, size_t n)
{
    snprintf(buf, n, "%s", name);
    size_t l = strlen(buf);
    if (l > 7 && !strcmp(buf + l - 7, ".weight")) buf[l - 7] = 0;
}

/* ---- plan -------------------------------------------------------------- */

/* What the output format is told about an item. */
static void out_weight_of(const qt_conv *c, const qt_conv_item *it, qt_out_weight *w)
{
    memset(w, 0, sizeof *w);
    w->name = it->src->name;
    w->quantized = it->action == QT_ACT_QUANT;
    w->scheme = it->scheme;
    w->dtype = w->quantized ? c->compute : it->out_dtype;
    w->n_dims = it->src->n_dims;
    memcpy(w->shape, it->src->shape, sizeof w->shape);
    w->block = it->block;
    w->double_quant = it->double_quant;
    w->nested_offset = it->nested_offset;
}

/* Declares an item to the output (its stored parts: the format's affair). */
static qt_status item_declare(qt_conv *c, qt_conv_item *it, char *errmsg)
{
    qt_out_weight w;
    out_weight_of(c, it, &w);
    return qt_outfmt_declare(c->out, &w, &it->out_id, errmsg);
}

qt_status qt_conv_item_redeclare(qt_conv *c, qt_conv_item *it, char *errmsg)
{
    qt_out_weight w;
    out_weight_of(c, it, &w);
    qt_status st = qt_outfmt_redeclare(c->out, it->out_id, &w, errmsg);
    if (st == QT_OK) it->bytes_out = qt_outfmt_weight_bytes(c->out, it->out_id);
    return st;
}

/* Creates the output (nothing written yet): the format, the input's
 * config and shard paths, the run's scheme. */
static qt_status output_new(qt_conv *c, size_t block, char *errmsg)
{
    const qt_conv_opts *o = &c->o;
    size_t ns = qt_modeldir_n_shards(c->md);
    c->protect = qt_calloc(ns + 1, sizeof *c->protect);
    if (!c->protect) return qt_set_err(errmsg, QT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < ns; i++) c->protect[i] = qt_st_reader_path(qt_modeldir_shard(c->md, i));
    if (!qt_path_join(c->config_path, sizeof c->config_path, c->in_dir, "config.json"))
        return qt_set_err(errmsg, QT_ERR_ARG, "input '%s': path too long", c->in_dir);
    /* one read of the input, unless a calibration check quantizes first */
    c->single_read = o->check == NULL;
    qt_out_model m = {.out = o->out,
                      .config_path = c->config_path,
                      .in_dir = c->in_dir,
                      .compute = c->compute,
                      .scheme = o->scheme,
                      .block = block,
                      .double_quant = o->double_quant,
                      .max_shard_size = o->max_shard_size,
                      .protect = c->protect,
                      .n_protect = ns,
                      .single_pass = c->single_read};
    return qt_outfmt_new(o->format, &m, &c->out, errmsg);
}

static bool glob_match(const char *pat, const char *name)
{
    char mod[1024];
    module_of(name, mod, sizeof mod);
    return fnmatch(pat, name, 0) == 0 || fnmatch(pat, mod, 0) == 0;
}

/* The canonical string of every option that changes output bytes, recorded
 * as "qtool.options" and compared by qt_conv_up_to_date:
 *   scheme=S;block=N;double_quant=0|1;compute_dtype=D;skip=["g1","g2"];
 *   recipe=<sha256 of the file's bytes>|none;max_shard_size=N;allow_nonfinite=0|1
 * then ";match=cuda" with --match cuda (absent for cpu, so that files made
 * before the option stay up to date) (block: the effective block size, 0
 * for int8). */
static qt_status options_string(qt_conv *c, char *errmsg)
{
    qt_status st = QT_OK;
    const qt_conv_opts *o = &c->o;
    const qt_scheme_info *si = qt_scheme_get(o->scheme);
    bool fam4 = o->scheme == QT_SCHEME_NF4 || o->scheme == QT_SCHEME_FP4;
    size_t block = o->block ? o->block : (o->scheme == QT_SCHEME_INT8 ? 0 : si->default_block);
    char rhex[65] = "none";
    FILE *f = NULL;
    qt_strbuf b = {0};
    if (o->recipe_path) {
        f = fopen(o->recipe_path, "rb");
        QT_CHECK(f != NULL, QT_ERR_IO, "recipe '%s': %s", o->recipe_path, strerror(errno));
        qt_sha256_ctx h;
        qt_sha256_init(&h);
        unsigned char buf[8192], d[32];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, f)) > 0) qt_sha256_update(&h, buf, n);
        QT_CHECK(!ferror(f), QT_ERR_IO, "recipe '%s': read error", o->recipe_path);
        qt_sha256_final(&h, d);
        qt_sha256_hex(d, rhex);
    }
    qt_strbuf_printf(&b, "scheme=%s;block=%zu;double_quant=%d;compute_dtype=%s;skip=[", si->name,
                     block, fam4 && o->double_quant, qt_conv_torch_name(c->compute));
    for (size_t i = 0; i < o->n_skip; i++) {
        if (i) qt_strbuf_puts(&b, ",");
        qt_strbuf_json_string(&b, o->skip[i]);
    }
    qt_strbuf_printf(&b, "];recipe=%s;max_shard_size=%" PRIu64 ";allow_nonfinite=%d", rhex,
                     o->max_shard_size, o->allow_nonfinite ? 1 : 0);
    if (o->loftq_rank) /* only when on: other outputs keep their provenance */
        qt_strbuf_printf(&b, ";loftq=%zu,%u,%.17g", o->loftq_rank,
                         o->loftq_iters ? o->loftq_iters : 1,
                         o->loftq_alpha > 0 ? o->loftq_alpha : (double)o->loftq_rank);
    if (o->rcp) qt_strbuf_puts(&b, ";match=cuda");
    if (o->budget_bpw > 0) qt_strbuf_printf(&b, ";budget_bpw=%.17g", o->budget_bpw);
    if (o->budget_bytes) qt_strbuf_printf(&b, ";budget_bytes=%" PRIu64, o->budget_bytes);
    if (o->budget_random) qt_strbuf_printf(&b, ";budget_random=%" PRIu64, o->budget_random);
    QT_CHECK(!b.oom, QT_ERR_NOMEM, "out of memory");
    c->options = b.data;
    b.data = NULL;
fail:
    if (f) fclose(f);
    qt_strbuf_release(&b);
    return st;
}

/* Opens the input: the model folder (or file + its folder), its config,
 * the logical weights, the recipe. */
static qt_status plan_open_input(qt_conv *c, char *errmsg)
{
    qt_status st = QT_OK;
    const qt_conv_opts *o = &c->o;
    struct stat sb;
    QT_CHECK(stat(o->in, &sb) == 0, QT_ERR_ARG, "input '%s': %s", o->in, strerror(errno));
    QT_TRY(qt_modeldir_open_ex(o->in, o->follow_symlinks ? QT_MODELDIR_FOLLOW_SYMLINKS : 0,
                               &c->md, NULL, NULL, errmsg));
    if (S_ISDIR(sb.st_mode)) snprintf(c->in_dir, sizeof c->in_dir, "%s", o->in);
    else {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s", o->in);
        snprintf(c->in_dir, sizeof c->in_dir, "%s", dirname(tmp));
    }
    QT_CHECK(qt_modeldir_has_config(c->md), QT_ERR_ARG,
             "input '%s': no config.json (a model directory, or a safetensors file with "
             "config.json beside it, is needed)",
             o->in);
    QT_TRY(qt_layout_build(c->md, &c->L, errmsg));
    /* the runtime's config rules, before anything is written; an architecture
     * qtool cannot run (UNSUPPORTED) may still be converted for transformers */
    {
        char why[QT_ERRMSG_SIZE] = "";
        st = qt_model_config_check(c->md, c->L, why);
        QT_CHECK(st == QT_OK || st == QT_ERR_UNSUPPORTED, st, "input '%s': %s", o->in, why);
        st = QT_OK;
    }
    if (o->recipe_path) QT_TRY(qt_recipe_load(o->recipe_path, &c->recipe, errmsg));
fail:
    return st;
}

/* Quantizing needs an architecture of the Llama table (which says the
 * Linears), unless a recipe chooses the tensors. */
static qt_status plan_check_arch(const qt_conv *c, char *errmsg)
{
    qt_status st = QT_OK;
    const char *arch = NULL;
    char arch_buf[128] = "";
    if (qt_modeldir_config_str(c->md, "architectures.0", &arch) != QT_OK) arch = NULL;
    if (arch) snprintf(arch_buf, sizeof arch_buf, "%s", arch);
    QT_CHECK(!is_quant_scheme(c->o.scheme) || c->o.recipe_path || qt_arch_known(arch),
             QT_ERR_UNSUPPORTED,
             "input '%s': architecture '%s': qtool knows the Linear layers of the Llama family "
             "(Llama, Mistral, Qwen2); give --recipe to choose tensors for others",
             c->o.in, arch ? arch_buf : "(none)");
fail:
    return st;
}

/* The compute dtype: the plain scheme's dtype, --compute-dtype, or the
 * config's torch_dtype (bfloat16 when it says none). */
static qt_status plan_compute_dtype(qt_conv *c, char *errmsg)
{
    qt_status st = QT_OK;
    const qt_conv_opts *o = &c->o;
    if (!is_quant_scheme(o->scheme)) {
        c->compute = o->scheme == QT_SCHEME_BF16   ? QT_DTYPE_BF16
                     : o->scheme == QT_SCHEME_FP16 ? QT_DTYPE_F16
                                                   : QT_DTYPE_F32;
    } else if (o->compute_dtype) {
        QT_CHECK(dtype_from_name(o->compute_dtype, &c->compute), QT_ERR_ARG,
                 "--compute-dtype '%s': expected bf16, fp16 or fp32", o->compute_dtype);
    } else {
        const char *td = NULL;
        if (qt_modeldir_config_str(c->md, "torch_dtype", &td) != QT_OK &&
            qt_modeldir_config_str(c->md, "dtype", &td) != QT_OK)
            td = "bfloat16";
        QT_CHECK(dtype_from_name(td, &c->compute), QT_ERR_UNSUPPORTED,
                 "input '%s': config.json torch_dtype '%s' is not bfloat16, float16 or float32",
                 o->in, td);
    }
fail:
    return st;
}

/* What a recipe rule asks for weight w: *want (QT_SCHEME_COUNT = keep) and
 * *want_block; the rule's scheme and block are checked. */
static qt_status recipe_choice(const qt_conv *c, const qt_recipe_rule *rr, size_t ri,
                               size_t block, qt_scheme *want, size_t *want_block, char *errmsg)
{
    qt_status st = QT_OK;
    const qt_conv_opts *o = &c->o;
    if (!strcmp(rr->scheme, "keep")) return QT_OK;
    const qt_scheme_info *rs = qt_scheme_find(rr->scheme);
    QT_CHECK(rs && is_quant_scheme(rs->scheme), QT_ERR_ARG,
             "recipe '%s': rule %zu: scheme '%s' is not nf4, fp4, int8, q8 or keep",
             o->recipe_path, ri, rr->scheme);
    *want = rs->scheme;
    *want_block = rr->block ? (size_t)rr->block : rs->scheme == o->scheme ? block : rs->default_block;
    if (*want != QT_SCHEME_INT8)
        QT_CHECK(qt_scheme_block_ok(*want, *want_block), QT_ERR_ARG,
                 "recipe '%s': rule %zu: block %zu not allowed for %s", o->recipe_path, ri,
                 *want_block, rs->name);
fail:
    return st;
}

/* The scheme a float weight gets when quantizing (QT_SCHEME_COUNT = kept):
 * a recipe rule first, else the default Linears; then --skip globs and
 * the matrix check. Records why in it->reason. */
static qt_status item_choice(const qt_conv *c, qt_conv_item *it, size_t block, qt_scheme *want,
                             size_t *want_block, char *errmsg)
{
    qt_status st = QT_OK;
    const qt_conv_opts *o = &c->o;
    const qt_lweight *w = it->src;
    const qt_recipe_rule *rr = NULL;
    size_t ri = 0;
    *want = QT_SCHEME_COUNT;
    *want_block = block;
    if (c->recipe && (rr = qt_recipe_match(c->recipe, w->name, &ri))) {
        QT_TRY(recipe_choice(c, rr, ri, block, want, want_block, errmsg));
        snprintf(it->reason, sizeof it->reason, "recipe rule %zu", ri);
    } else if (is_default_linear(w->name)) {
        *want = o->scheme;
        snprintf(it->reason, sizeof it->reason, "Linear");
    }
    for (size_t s = 0; s < o->n_skip && *want != QT_SCHEME_COUNT; s++) {
        if (glob_match(o->skip[s], w->name)) {
            *want = QT_SCHEME_COUNT;
            snprintf(it->reason, sizeof it->reason, "--skip '%.80s'", o->skip[s]);
        }
    }
    if (*want != QT_SCHEME_COUNT && (w->n_dims != 2 || w->n_elements == 0)) {
        *want = QT_SCHEME_COUNT;
        snprintf(it->reason, sizeof it->reason, "not a non-empty matrix");
    }
fail:
    return st;
}

/* Adds an unquantized Linear's module to llm_int8_skip_modules. */
static qt_status add_skip_module(qt_conv *c, const char *name, char *errmsg)
{
    char mod[1024];
    module_of(name, mod, sizeof mod);
    c->skip_modules[c->n_skip_modules] = qt_strdup(mod);
    if (!c->skip_modules[c->n_skip_modules])
        return qt_set_err(errmsg, QT_ERR_NOMEM, "out of memory");
    c->n_skip_modules++;
    return QT_OK;
}

/* Scheme families in the plan, for the mixed-families warning. */
typedef struct families {
    bool fam4, fam8, famq8;
} families;

/* Plans logical weight i: keep / copy / quantize (which scheme), then
 * declares it to the output. */
static qt_status plan_item(qt_conv *c, size_t i, size_t block, families *fam, char *errmsg)
{
    qt_status st = QT_OK;
    const qt_conv_opts *o = &c->o;
    const bool quantizing = is_quant_scheme(o->scheme);
    const qt_lweight *w = qt_layout_at(c->L, i);
    qt_conv_item *it = &c->items[c->n_items++];
    it->src = w;
    /* by default: float tensors kept in the compute dtype, others copied */
    bool is_float = is_float_dtype(w->dtype);
    QT_CHECK(w->kind == QT_LW_PLAIN || !quantizing, QT_ERR_ARG,
             "tensor '%s' is already quantized (%s): dequantize first (qtool dequant)", w->name,
             qt_lweight_label(w));
    it->action = is_float ? QT_ACT_KEEP : QT_ACT_COPY;
    it->out_dtype = is_float ? c->compute : w->dtype;
    snprintf(it->reason, sizeof it->reason, "%s", is_float ? "kept" : "not a float tensor");
    /* quantizing: the scheme it gets, or kept (then an unquantized Linear) */
    if (quantizing && is_float) {
        qt_scheme want;
        size_t want_block;
        QT_TRY(item_choice(c, it, block, &want, &want_block, errmsg));
        if (want != QT_SCHEME_COUNT) {
            const bool four = want == QT_SCHEME_NF4 || want == QT_SCHEME_FP4;
            it->action = QT_ACT_QUANT;
            it->scheme = want;
            it->block = want == QT_SCHEME_INT8 ? 0 : want_block;
            it->double_quant = four && o->double_quant;
            if (four) fam->fam4 = true;
            else if (want == QT_SCHEME_INT8) fam->fam8 = true;
            else fam->famq8 = true;
        } else if (is_linear_name(w->name) && strcmp(w->name, QT_LLAMA_LM_HEAD) != 0) {
            QT_TRY(add_skip_module(c, w->name, errmsg));
        }
    }
    if (it->action != QT_ACT_QUANT) it->scheme = qt_conv_plain_scheme(it->out_dtype);
    /* its place in the output */
    it->bytes_in = w->nbytes;
    QT_TRY(item_declare(c, it, errmsg));
    it->bytes_out = qt_outfmt_weight_bytes(c->out, it->out_id);
fail:
    return st;
}

qt_status qt_conv_plan(const qt_conv_opts *o, qt_conv **out, char *errmsg)
{
    qt_status st = QT_OK;
    qt_conv *c = NULL;
    *out = NULL;
    const qt_scheme_info *si = qt_scheme_get(o->scheme);
    QT_CHECK(si != NULL, QT_ERR_ARG, "unknown scheme");
    c = qt_calloc(1, sizeof *c);
    QT_CHECK(c != NULL, QT_ERR_NOMEM, "out of memory");
    c->o = *o;
    /* the input, and what may be done with it */
    QT_TRY(plan_open_input(c, errmsg));
    QT_TRY(plan_check_arch(c, errmsg));
    QT_TRY(plan_compute_dtype(c, errmsg));
    size_t block = o->block ? o->block : si->default_block;
    if (is_quant_scheme(o->scheme) && o->scheme != QT_SCHEME_INT8)
        QT_CHECK(qt_scheme_block_ok(o->scheme, block), QT_ERR_ARG,
                 "--block %zu is not allowed for %s (powers of two %zu..%zu)", block, si->name,
                 si->min_block, si->max_block);
    /* every logical weight planned and declared to the output */
    size_t n = qt_layout_n(c->L);
    QT_TRY(output_new(c, block, errmsg));
    c->items = qt_calloc(n + 1, sizeof *c->items);
    c->skip_modules = qt_calloc(n + 2, sizeof *c->skip_modules);
    QT_CHECK(c->items && c->skip_modules, QT_ERR_NOMEM, "out of memory");
    families fam = {false, false, false};
    for (size_t i = 0; i < n; i++) QT_TRY(plan_item(c, i, block, &fam, errmsg));
    if (is_quant_scheme(o->scheme)) QT_TRY(add_skip_module(c, "lm_head", errmsg));
    if ((fam.fam4 + fam.fam8 + fam.famq8) > 1)
        snprintf(c->warning, sizeof c->warning,
                 "the plan mixes scheme families (%s%s%s): transformers cannot load such a "
                 "model; qtool can",
                 fam.fam4 ? "4-bit " : "", fam.fam8 ? "int8 " : "", fam.famq8 ? "q8" : "");
    /* where every weight goes (shards): the format's affair */
    QT_TRY(qt_outfmt_plan(c->out, errmsg));
    c->n_shards = qt_outfmt_n_weight_files(c->out);
    QT_TRY(options_string(c, errmsg));
    *out = c;
    c = NULL;
fail:
    qt_conv_free(c);
    return st;
}

size_t qt_conv_n_items(const qt_conv *c) { return c->n_items; }
const qt_conv_item *qt_conv_item_at(const qt_conv *c, size_t i)
{
    return i < c->n_items ? &c->items[i] : NULL;
}
const char *qt_conv_compute_dtype(const qt_conv *c) { return qt_conv_torch_name(c->compute); }
const char *qt_conv_warning(const qt_conv *c) { return c->warning[0] ? c->warning : NULL; }
size_t qt_conv_n_shards(const qt_conv *c) { return c->n_shards; }
void qt_conv_phase_seconds(const qt_conv *c, double *prepass, double *write, double *finish)
{
    *prepass = c->t_prepass;
    *write = c->t_write;
    *finish = c->t_finish;
}
const char *qt_conv_options(const qt_conv *c) { return c->options ? c->options : ""; }

void qt_conv_free(qt_conv *c)
{
    if (!c) return;
    qt_conv_loftq_free(c);
    qt_free(c->items);
    for (size_t i = 0; i < c->n_skip_modules; i++) qt_free(c->skip_modules[i]);
    qt_free(c->skip_modules);
    qt_free(c->options);
    qt_outfmt_free(c->out);
    qt_free(c->protect);
    qt_recipe_free(c->recipe);
    qt_layout_free(c->L);
    qt_modeldir_close(c->md);
    qt_free(c);
}

/* ---- fingerprint ------------------------------------------------------- */
void qt_conv_fingerprint(const qt_st_reader *r, char hex[65])
{
    qt_sha256_ctx h;
    qt_sha256_init(&h);
    uint64_t size = qt_st_reader_file_size(r), hs = qt_st_reader_header_size(r);
    unsigned char le[8];
    qt_store_le64(le, size);
    qt_sha256_update(&h, le, 8);
    /* the header (tensor names, dtypes, shapes, offsets, metadata) */
    size_t nt = qt_st_reader_n_tensors(r);
    const unsigned char *base = NULL;
    if (nt) {
        const qt_st_tensor *t0 = qt_st_reader_tensor(r, 0);
        base = (const unsigned char *)t0->data - t0->file_offset;
        qt_sha256_update(&h, base, (size_t)(8 + hs));
        uint64_t data_len = size - 8 - hs;
        for (int k = 0; k < 16 && data_len; k++) {
            uint64_t off = 8 + hs + data_len * (uint64_t)k / 16;
            uint64_t take = size - off < 4096 ? size - off : 4096;
            qt_sha256_update(&h, base + off, (size_t)take);
        }
    }
    unsigned char d[32];
    qt_sha256_final(&h, d);
    qt_sha256_hex(d, hex);
}

/* ---- facts shared with convert/merge.c (convert_internal.h) ------------- */

bool qt_conv_default_linear(const char *name) { return is_default_linear(name); }
bool qt_conv_dtype_from_name(const char *s, qt_dtype *d) { return dtype_from_name(s, d); }
