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
#include "formats/bnb.h"
#include "formats/modeldir.h"
#include "formats/pyjson.h"
#include "model/model.h"
#include "formats/recipe.h"
#include "formats/safetensors.h"

#define CHUNK_ELEMS ((size_t)1 << 20)


/* ---- small helpers ----------------------------------------------------- */
const char *qt_conv_torch_name(qt_dtype d)
{
    return d == QT_DTYPE_BF16 ? "bfloat16" : d == QT_DTYPE_F16 ? "float16" : "float32";
}

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

static qt_scheme plain_scheme(qt_dtype d)
{
    return d == QT_DTYPE_BF16 ? QT_SCHEME_BF16 : d == QT_DTYPE_F16 ? QT_SCHEME_FP16 : QT_SCHEME_FP32;
}

static size_t dtype_bytes(qt_dtype d) { return qt_dtype_bits(d) / 8; }

static bool is_quant_scheme(qt_scheme s)
{
    return s == QT_SCHEME_NF4 || s == QT_SCHEME_FP4 || s == QT_SCHEME_INT8 || s == QT_SCHEME_Q8;
}

/* The Linear weights transformers' bitsandbytes integration replaces in a
 * Llama-family model: model.layers.N.{self_attn.{q,k,v,o},mlp.{gate,up,down}}_proj.weight */
static bool is_default_linear(const char *name)
{
    static const char *const tails[] = {".self_attn.q_proj.weight", ".self_attn.k_proj.weight",
                                        ".self_attn.v_proj.weight", ".self_attn.o_proj.weight",
                                        ".mlp.gate_proj.weight",    ".mlp.up_proj.weight",
                                        ".mlp.down_proj.weight"};
    if (strncmp(name, "model.layers.", 13) != 0) return false;
    const char *p = name + 13;
    if (*p < '0' || *p > '9') return false;
    while (*p >= '0' && *p <= '9') p++;
    for (size_t i = 0; i < sizeof tails / sizeof *tails; i++)
        if (!strcmp(p, tails[i])) return true;
    return false;
}

static bool is_linear_name(const char *name)
{
    return is_default_linear(name) || !strcmp(name, "lm_head.weight");
}

static void module_of(const char *name, char *buf, size_t n)
{
    snprintf(buf, n, "%s", name);
    size_t l = strlen(buf);
    if (l > 7 && !strcmp(buf + l - 7, ".weight")) buf[l - 7] = 0;
}

static bool supported_arch(const char *a)
{
    static const char *const ok[] = {"LlamaForCausalLM", "MistralForCausalLM",
                                     "Qwen2ForCausalLM", "LLaMAForCausalLM"};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        if (!strcmp(a, ok[i])) return true;
    return false;
}

/* ---- plan -------------------------------------------------------------- */
static qt_status add_part(qt_conv_item *it, const char *prefix, const char *suffix, qt_dtype d,
                          size_t nd, uint64_t d0, uint64_t d1)
{
    size_t k = it->n_parts;
    size_t len = strlen(prefix) + strlen(suffix) + 1;
    it->part_name[k] = qt_malloc(len);
    if (!it->part_name[k]) return QT_ERR_NOMEM;
    snprintf(it->part_name[k], len, "%s%s", prefix, suffix);
    it->part_dtype[k] = d;
    it->part_ndims[k] = nd;
    it->part_shape[k][0] = d0;
    it->part_shape[k][1] = d1;
    it->n_parts++;
    uint64_t elems = nd == 0 ? 1 : nd == 1 ? d0 : d0 * d1;
    it->bytes_out += elems * dtype_bytes(d);
    return QT_OK;
}

/* The length of the item's quant_state blob; 0 when it cannot be formatted
 * (out of memory), which callers treat as an error. */
static size_t state_json_len(const qt_conv_item *it, const qt_conv *c)
{
    qt_bnb_state s = {0};
    const qt_lweight *w = it->src;
    snprintf(s.quant_type, sizeof s.quant_type, "%s",
             it->scheme == QT_SCHEME_NF4 ? "nf4" : it->scheme == QT_SCHEME_FP4 ? "fp4" : "q8");
    s.blocksize = (int64_t)it->block;
    snprintf(s.dtype, sizeof s.dtype, "%s", qt_conv_torch_name(c->compute));
    s.n_dims = (int)w->n_dims;
    for (size_t i = 0; i < w->n_dims; i++) s.shape[i] = (int64_t)w->shape[i];
    if (it->double_quant) {
        s.nested = true;
        s.nested_blocksize = 256;
        snprintf(s.nested_dtype, sizeof s.nested_dtype, "float32");
        s.nested_offset = it->nested_offset;
    }
    char buf[512];
    size_t len = 0;
    if (qt_bnb_state_format(&s, buf, sizeof buf, &len) != QT_OK) return 0;
    return len;
}

static qt_status item_parts_impl(qt_conv *c, qt_conv_item *it);

/* Declares the output parts of an item (names, dtypes, shapes); the message
 * names the tensor. */
static qt_status item_parts(qt_conv *c, qt_conv_item *it, char *errmsg)
{
    qt_status st = item_parts_impl(c, it);
    if (st != QT_OK)
        qt_set_err(errmsg, st, "tensor '%s': cannot plan its output parts (%s)", it->src->name,
                   qt_status_str(st));
    return st;
}

static qt_status item_parts_impl(qt_conv *c, qt_conv_item *it)
{
    const qt_lweight *w = it->src;
    for (size_t k = 0; k < it->n_parts; k++) qt_free(it->part_name[k]);
    it->n_parts = 0;
    it->bytes_out = 0;
    char prefix[1024];
    module_of(w->name, prefix, sizeof prefix);
    uint64_t n = w->n_elements;
    if (it->action != QT_ACT_QUANT) {
        size_t k = it->n_parts;
        it->part_name[k] = qt_strdup(w->name);
        if (!it->part_name[k]) return QT_ERR_NOMEM;
        it->part_dtype[k] = it->out_dtype;
        it->part_ndims[k] = w->n_dims;
        memcpy(it->part_shape[k], w->shape, sizeof w->shape);
        it->n_parts = 1;
        it->bytes_out = n * dtype_bytes(it->out_dtype);
        return QT_OK;
    }
    qt_status st;
    uint64_t nb = (n + it->block - 1) / (it->block ? it->block : 1);
    switch (it->scheme) {
    case QT_SCHEME_NF4:
    case QT_SCHEME_FP4:
        if ((st = add_part(it, prefix, ".weight", QT_DTYPE_U8, 2, (n + 1) / 2, 1))) return st;
        if ((st = add_part(it, prefix, ".weight.absmax",
                           it->double_quant ? QT_DTYPE_U8 : QT_DTYPE_F32, 1, nb, 0)))
            return st;
        if ((st = add_part(it, prefix, ".weight.quant_map", QT_DTYPE_F32, 1, 16, 0))) return st;
        if (it->double_quant) {
            if ((st = add_part(it, prefix, ".weight.nested_absmax", QT_DTYPE_F32, 1,
                               (nb + 255) / 256, 0)))
                return st;
            if ((st = add_part(it, prefix, ".weight.nested_quant_map", QT_DTYPE_F32, 1, 256, 0)))
                return st;
        }
        return add_part(it, prefix,
                        it->scheme == QT_SCHEME_NF4 ? ".weight.quant_state.bitsandbytes__nf4"
                                                    : ".weight.quant_state.bitsandbytes__fp4",
                        QT_DTYPE_U8, 1, state_json_len(it, c), 0) != QT_OK ||
                       it->part_shape[it->n_parts - 1][0] == 0
                   ? QT_ERR_NOMEM
                   : QT_OK;
    case QT_SCHEME_INT8:
        if ((st = add_part(it, prefix, ".weight", QT_DTYPE_I8, 2, w->shape[0], n / w->shape[0])))
            return st;
        if ((st = add_part(it, prefix, ".SCB", QT_DTYPE_F32, 1, w->shape[0], 0))) return st;
        return add_part(it, prefix, ".weight_format", QT_DTYPE_U8, 0, 0, 0);
    case QT_SCHEME_Q8:
        if ((st = add_part(it, prefix, ".weight", QT_DTYPE_U8, 1, qt_q8_bytes((size_t)n, it->block),
                           0)))
            return st;
        return add_part(it, prefix, ".weight.quant_state.qtool__q8", QT_DTYPE_U8, 1,
                        state_json_len(it, c), 0) != QT_OK ||
                       it->part_shape[it->n_parts - 1][0] == 0
                   ? QT_ERR_NOMEM
                   : QT_OK;
    default: return QT_ERR_ARG;
    }
}

static bool glob_match(const char *pat, const char *name)
{
    char mod[1024];
    module_of(name, mod, sizeof mod);
    return fnmatch(pat, name, 0) == 0 || fnmatch(pat, mod, 0) == 0;
}

qt_status item_parts_refresh(qt_conv *c, qt_conv_item *it, char *errmsg)
{
    return item_parts(c, it, errmsg);
}

/* The canonical string of every option that changes output bytes, recorded
 * as "qtool.options" and compared by qt_conv_up_to_date:
 *   scheme=S;block=N;double_quant=0|1;compute_dtype=D;skip=["g1","g2"];
 *   recipe=<sha256 of the file's bytes>|none;max_shard_size=N;allow_nonfinite=0|1
 * (block: the effective block size, 0 for int8). */
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
    QT_CHECK(!b.oom, QT_ERR_NOMEM, "out of memory");
    c->options = b.data;
    b.data = NULL;
fail:
    if (f) fclose(f);
    qt_strbuf_release(&b);
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

    /* architecture */
    const char *arch = NULL;
    char arch_buf[128] = "";
    if (qt_modeldir_config_str(c->md, "architectures.0", &arch) != QT_OK) arch = NULL;
    if (arch) snprintf(arch_buf, sizeof arch_buf, "%s", arch);
    bool quantizing = is_quant_scheme(o->scheme);
    QT_CHECK(!quantizing || o->recipe_path || (arch && supported_arch(arch)), QT_ERR_UNSUPPORTED,
             "input '%s': architecture '%s': qtool knows the Linear layers of the Llama family "
             "(Llama, Mistral, Qwen2); give --recipe to choose tensors for others",
             o->in, arch ? arch_buf : "(none)");

    /* compute dtype */
    if (!quantizing) c->compute = o->scheme == QT_SCHEME_BF16   ? QT_DTYPE_BF16
                                  : o->scheme == QT_SCHEME_FP16 ? QT_DTYPE_F16
                                                                : QT_DTYPE_F32;
    else if (o->compute_dtype) {
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
    size_t block = o->block ? o->block : si->default_block;
    if (quantizing && o->scheme != QT_SCHEME_INT8)
        QT_CHECK(qt_scheme_block_ok(o->scheme, block), QT_ERR_ARG,
                 "--block %zu is not allowed for %s (powers of two %zu..%zu)", block, si->name,
                 si->min_block, si->max_block);

    size_t n = qt_layout_n(c->L);
    c->items = qt_calloc(n + 1, sizeof *c->items);
    c->skip_modules = qt_calloc(n + 2, sizeof *c->skip_modules);
    QT_CHECK(c->items && c->skip_modules, QT_ERR_NOMEM, "out of memory");
    bool fam4 = false, fam8 = false, famq8 = false;
    for (size_t i = 0; i < n; i++) {
        const qt_lweight *w = qt_layout_at(c->L, i);
        qt_conv_item *it = &c->items[c->n_items++];
        it->src = w;
        bool is_float = is_float_dtype(w->dtype);
        bool stored_quant = w->kind != QT_LW_PLAIN;
        QT_CHECK(!stored_quant || !quantizing, QT_ERR_ARG,
                 "tensor '%s' is already quantized (%s): dequantize first (qtool dequant)",
                 w->name, qt_lweight_label(w));
        it->action = is_float ? QT_ACT_KEEP : QT_ACT_COPY;
        it->out_dtype = is_float ? c->compute : w->dtype;
        snprintf(it->reason, sizeof it->reason, "%s", is_float ? "kept" : "not a float tensor");
        if (quantizing && is_float) {
            qt_scheme want = QT_SCHEME_COUNT;
            size_t want_block = block;
            const qt_recipe_rule *rr = NULL;
            size_t ri = 0;
            if (c->recipe && (rr = qt_recipe_match(c->recipe, w->name, &ri))) {
                if (strcmp(rr->scheme, "keep") != 0) {
                    const qt_scheme_info *rs = qt_scheme_find(rr->scheme);
                    QT_CHECK(rs && is_quant_scheme(rs->scheme), QT_ERR_ARG,
                             "recipe '%s': rule %zu: scheme '%s' is not nf4, fp4, int8, q8 or "
                             "keep",
                             o->recipe_path, ri, rr->scheme);
                    want = rs->scheme;
                    want_block = rr->block ? (size_t)rr->block
                                 : rs->scheme == o->scheme ? block
                                                           : rs->default_block;
                    if (want != QT_SCHEME_INT8)
                        QT_CHECK(qt_scheme_block_ok(want, want_block), QT_ERR_ARG,
                                 "recipe '%s': rule %zu: block %zu not allowed for %s",
                                 o->recipe_path, ri, want_block, rs->name);
                }
                snprintf(it->reason, sizeof it->reason, "recipe rule %zu", ri);
            } else if (is_default_linear(w->name)) {
                want = o->scheme;
                snprintf(it->reason, sizeof it->reason, "Linear");
            }
            for (size_t s = 0; s < o->n_skip && want != QT_SCHEME_COUNT; s++) {
                if (glob_match(o->skip[s], w->name)) {
                    want = QT_SCHEME_COUNT;
                    snprintf(it->reason, sizeof it->reason, "--skip '%.80s'", o->skip[s]);
                }
            }
            if (want != QT_SCHEME_COUNT && (w->n_dims != 2 || w->n_elements == 0)) {
                want = QT_SCHEME_COUNT;
                snprintf(it->reason, sizeof it->reason, "not a non-empty matrix");
            }
            if (want != QT_SCHEME_COUNT) {
                it->action = QT_ACT_QUANT;
                it->scheme = want;
                it->block = want == QT_SCHEME_INT8 ? 0 : want_block;
                it->double_quant =
                    (want == QT_SCHEME_NF4 || want == QT_SCHEME_FP4) && o->double_quant;
                if (want == QT_SCHEME_NF4 || want == QT_SCHEME_FP4) fam4 = true;
                else if (want == QT_SCHEME_INT8) fam8 = true;
                else famq8 = true;
            } else if (is_linear_name(w->name) && strcmp(w->name, "lm_head.weight") != 0) {
                char mod[1024];
                module_of(w->name, mod, sizeof mod);
                c->skip_modules[c->n_skip_modules] = qt_strdup(mod);
                QT_CHECK(c->skip_modules[c->n_skip_modules], QT_ERR_NOMEM, "out of memory");
                c->n_skip_modules++;
            }
        }
        if (it->action != QT_ACT_QUANT) it->scheme = plain_scheme(it->out_dtype);
        it->bytes_in = w->nbytes;
        QT_TRY(item_parts(c, it, errmsg));
    }
    if (quantizing) {
        c->skip_modules[c->n_skip_modules] = qt_strdup("lm_head");
        QT_CHECK(c->skip_modules[c->n_skip_modules], QT_ERR_NOMEM, "out of memory");
        c->n_skip_modules++;
    }
    if ((fam4 + fam8 + famq8) > 1)
        snprintf(c->warning, sizeof c->warning,
                 "the plan mixes scheme families (%s%s%s): transformers cannot load such a "
                 "model; qtool can",
                 fam4 ? "4-bit " : "", fam8 ? "int8 " : "", famq8 ? "q8" : "");
    /* shards: whole logical weights, in order, up to max_shard_size */
    c->n_shards = 1;
    uint64_t cur = 0;
    for (size_t i = 0; i < c->n_items; i++) {
        qt_conv_item *it = &c->items[i];
        if (o->max_shard_size && cur > 0 && cur + it->bytes_out > o->max_shard_size) {
            c->n_shards++;
            cur = 0;
        }
        it->shard = c->n_shards - 1;
        cur += it->bytes_out;
    }
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
    for (size_t i = 0; i < c->n_items; i++)
        for (size_t k = 0; k < c->items[i].n_parts; k++) qt_free(c->items[i].part_name[k]);
    qt_free(c->items);
    for (size_t i = 0; i < c->n_skip_modules; i++) qt_free(c->skip_modules[i]);
    qt_free(c->skip_modules);
    qt_free(c->options);
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
