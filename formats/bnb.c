/* formats/bnb.c: bitsandbytes quant_state JSON and quantization_config. */
#include "formats/bnb.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "formats/formats_internal.h"
#include "formats/fsutil.h"
#include "formats/json.h"
#include "formats/pyjson.h"

qt_status qt_bnb_state_format(const qt_bnb_state *s, char *buf, size_t cap, size_t *len)
{
    qt_strbuf b = {0};
    qt_strbuf_puts(&b, "{\"quant_type\": ");
    qt_strbuf_json_string(&b, s->quant_type);
    qt_strbuf_printf(&b, ", \"blocksize\": %lld, \"dtype\": ", (long long)s->blocksize);
    qt_strbuf_json_string(&b, s->dtype);
    qt_strbuf_puts(&b, ", \"shape\": [");
    for (int i = 0; i < s->n_dims; i++)
        qt_strbuf_printf(&b, "%s%lld", i ? ", " : "", (long long)s->shape[i]);
    qt_strbuf_puts(&b, "]");
    if (s->nested) {
        char f[40];
        qt_py_float_repr((double)s->nested_offset, f, sizeof f);
        qt_strbuf_printf(&b, ", \"nested_blocksize\": %lld, \"nested_dtype\": ",
                         (long long)s->nested_blocksize);
        qt_strbuf_json_string(&b, s->nested_dtype);
        qt_strbuf_printf(&b, ", \"nested_offset\": %s", f);
    }
    qt_strbuf_puts(&b, "}");
    qt_status st = QT_OK;
    if (b.oom) st = QT_ERR_NOMEM;
    else if (b.len + 1 > cap) st = QT_ERR_ARG;
    else {
        memcpy(buf, b.data, b.len + 1);
        *len = b.len;
    }
    qt_strbuf_release(&b);
    return st;
}

static bool get_str(const cJSON *o, const char *k, char *dst, size_t cap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= cap) return false;
    strcpy(dst, v->valuestring);
    return true;
}

static bool get_int(const cJSON *o, const char *k, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (d != floor(d) || d < 0 || d > 9.007199254740992e15) return false;
    *out = (int64_t)d;
    return true;
}

qt_status qt_bnb_state_parse(const void *json, size_t n, const char *what, qt_bnb_state *out,
                             char *errmsg)
{
    qt_status st = QT_OK;
    cJSON *root = NULL;
    memset(out, 0, sizeof *out);
    QT_TRY(qt_json_parse(json, n, what, &root, NULL, errmsg));
    QT_CHECK(cJSON_IsObject(root), QT_ERR_FORMAT, "%s: quant_state is not a JSON object", what);
    QT_CHECK(get_str(root, "quant_type", out->quant_type, sizeof out->quant_type),
             QT_ERR_FORMAT, "%s: quant_state lacks a string 'quant_type'", what);
    QT_CHECK(!strcmp(out->quant_type, "nf4") || !strcmp(out->quant_type, "fp4") ||
                 !strcmp(out->quant_type, "q8"),
             QT_ERR_UNSUPPORTED, "%s: quant_type '%s' is not nf4, fp4 or q8", what,
             out->quant_type);
    QT_CHECK(get_int(root, "blocksize", &out->blocksize), QT_ERR_FORMAT,
             "%s: quant_state lacks an integer 'blocksize'", what);
    QT_CHECK(out->blocksize >= 32 && out->blocksize <= 4096 &&
                 (out->blocksize & (out->blocksize - 1)) == 0,
             QT_ERR_UNSUPPORTED, "%s: blocksize %lld is not a power of two in 32..4096", what,
             (long long)out->blocksize);
    QT_CHECK(get_str(root, "dtype", out->dtype, sizeof out->dtype), QT_ERR_FORMAT,
             "%s: quant_state lacks a string 'dtype'", what);
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(root, "shape");
    QT_CHECK(cJSON_IsArray(shape), QT_ERR_FORMAT, "%s: quant_state lacks a 'shape' array", what);
    int nd = cJSON_GetArraySize(shape);
    QT_CHECK(nd >= 1 && nd <= QT_BNB_MAX_DIMS, QT_ERR_FORMAT,
             "%s: quant_state shape has %d dims (1..%d allowed)", what, nd, QT_BNB_MAX_DIMS);
    out->n_dims = nd;
    int i = 0;
    for (const cJSON *d = shape->child; d; d = d->next, i++) {
        QT_CHECK(cJSON_IsNumber(d) && d->valuedouble >= 1 && d->valuedouble < 9.0e15 &&
                     d->valuedouble == floor(d->valuedouble),
                 QT_ERR_FORMAT, "%s: quant_state shape[%d] is not a positive integer", what, i);
        out->shape[i] = (int64_t)d->valuedouble;
    }
    const cJSON *nb = cJSON_GetObjectItemCaseSensitive(root, "nested_blocksize");
    const cJSON *nd_ = cJSON_GetObjectItemCaseSensitive(root, "nested_dtype");
    const cJSON *no = cJSON_GetObjectItemCaseSensitive(root, "nested_offset");
    QT_CHECK((nb != NULL) == (no != NULL) && (nb != NULL) == (nd_ != NULL), QT_ERR_FORMAT,
             "%s: quant_state has some but not all nested_* keys", what);
    if (nb) {
        out->nested = true;
        QT_CHECK(get_int(root, "nested_blocksize", &out->nested_blocksize) &&
                     out->nested_blocksize == 256,
                 QT_ERR_UNSUPPORTED, "%s: nested_blocksize must be 256", what);
        QT_CHECK(get_str(root, "nested_dtype", out->nested_dtype, sizeof out->nested_dtype) &&
                     !strcmp(out->nested_dtype, "float32"),
                 QT_ERR_UNSUPPORTED, "%s: nested_dtype must be \"float32\"", what);
        QT_CHECK(cJSON_IsNumber(no) && isfinite(no->valuedouble), QT_ERR_FORMAT,
                 "%s: nested_offset is not a finite number", what);
        out->nested_offset = (float)no->valuedouble;
    }
fail:
    cJSON_Delete(root);
    return st;
}

qt_status qt_bnb_config_rewrite(const char *src, size_t n, const char *what,
                                const qt_bnb_config *cfg, char **out, size_t *out_len,
                                char *errmsg)
{
    qt_status st = QT_OK;
    cJSON *root = NULL;
    qt_strbuf b = {0};
    *out = NULL;
    QT_TRY(qt_json_parse(src, n, what, &root, NULL, errmsg));
    QT_CHECK(cJSON_IsObject(root), QT_ERR_FORMAT, "%s: config is not a JSON object", what);
    QT_CHECK(cfg->plain || !cJSON_GetObjectItemCaseSensitive(root, "quantization_config"),
             QT_ERR_FORMAT, "%s: the model is already quantized (config has quantization_config)",
             what);
    qt_pyjson_mark_floats(root, src, n);
    if (cfg->plain) {
        cJSON_DeleteItemFromObjectCaseSensitive(root, "quantization_config");
        goto dtype;
    }
    if (cfg->qtool_scheme) {
        cJSON *qq = cJSON_CreateObject();
        QT_CHECK(qq != NULL, QT_ERR_NOMEM, "out of memory");
        if (!cJSON_AddItemToObject(root, "quantization_config", qq)) { /* key copy failed */
            cJSON_Delete(qq);
            QT_CHECK(0, QT_ERR_NOMEM, "out of memory");
        }
        cJSON_AddNumberToObject(qq, "blocksize", (double)cfg->qtool_block);
        cJSON_AddStringToObject(qq, "quant_method", "qtool");
        cJSON_AddStringToObject(qq, "scheme", cfg->qtool_scheme);
        if (cfg->n_skip) {
            cJSON *arr = cJSON_AddArrayToObject(qq, "skip_modules");
            QT_CHECK(arr != NULL, QT_ERR_NOMEM, "out of memory");
            for (size_t i = 0; i < cfg->n_skip; i++)
                cJSON_AddItemToArray(arr, cJSON_CreateString(cfg->skip_modules[i]));
        }
        goto dtype;
    }

    cJSON *q = cJSON_CreateObject();
    QT_CHECK(q != NULL, QT_ERR_NOMEM, "out of memory");
    if (!cJSON_AddItemToObject(root, "quantization_config", q)) { /* key copy failed */
        cJSON_Delete(q);
        QT_CHECK(0, QT_ERR_NOMEM, "out of memory");
    }
    bool b4 = cfg->load_in_4bit;
    cJSON_AddBoolToObject(q, "_load_in_4bit", b4);
    cJSON_AddBoolToObject(q, "_load_in_8bit", !b4);
    cJSON_AddStringToObject(q, "bnb_4bit_compute_dtype", cfg->compute_dtype);
    cJSON_AddStringToObject(q, "bnb_4bit_quant_storage", "uint8");
    cJSON_AddStringToObject(q, "bnb_4bit_quant_type", b4 ? cfg->quant_type : "fp4");
    cJSON_AddBoolToObject(q, "bnb_4bit_use_double_quant", b4 && cfg->double_quant);
    cJSON_AddBoolToObject(q, "llm_int8_enable_fp32_cpu_offload", 0);
    cJSON_AddBoolToObject(q, "llm_int8_has_fp16_weight", 0);
    if (cfg->n_skip) {
        cJSON *arr = cJSON_AddArrayToObject(q, "llm_int8_skip_modules");
        QT_CHECK(arr != NULL, QT_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < cfg->n_skip; i++)
            cJSON_AddItemToArray(arr, cJSON_CreateString(cfg->skip_modules[i]));
    } else {
        cJSON_AddNullToObject(q, "llm_int8_skip_modules");
    }
    cJSON *thr = cJSON_AddNumberToObject(q, "llm_int8_threshold", 6.0);
    if (thr) thr->type |= QT_PYJSON_FLOAT_FLAG;
    cJSON_AddBoolToObject(q, "load_in_4bit", b4);
    cJSON_AddBoolToObject(q, "load_in_8bit", !b4);
    cJSON_AddStringToObject(q, "quant_method", "bitsandbytes");

dtype:;
    const char *dkey = cJSON_GetObjectItemCaseSensitive(root, "dtype") &&
                               !cJSON_GetObjectItemCaseSensitive(root, "torch_dtype")
                           ? "dtype"
                           : "torch_dtype";
    cJSON_DeleteItemFromObjectCaseSensitive(root, dkey);
    cJSON_AddStringToObject(root, dkey, cfg->compute_dtype);
    /* the Add / Create calls above drop items silently when out of memory */
    QT_CHECK(!qt_json_alloc_failed(), QT_ERR_NOMEM, "out of memory building config.json");

    qt_pyjson_dump(root, 2, true, &b);
    qt_strbuf_append(&b, "\n", 1);
    QT_CHECK(!b.oom, QT_ERR_NOMEM, "out of memory writing config.json");
    *out = b.data;
    *out_len = b.len;
    b.data = NULL;
fail:
    qt_strbuf_release(&b);
    cJSON_Delete(root);
    return st;
}

/* ---- the stored parts of a quantized weight ---------------------------- */

/* Key suffixes by role; the quant_state suffix depends on the scheme. */
static const char *const role_suffix[QT_BNB_ROLE_COUNT] = {
    [QT_BNB_CODES] = ".weight",
    [QT_BNB_ABSMAX] = ".weight.absmax",
    [QT_BNB_QUANT_MAP] = ".weight.quant_map",
    [QT_BNB_NESTED_ABSMAX] = ".weight.nested_absmax",
    [QT_BNB_NESTED_MAP] = ".weight.nested_quant_map",
    [QT_BNB_STATE] = NULL,
    [QT_BNB_SCB] = ".SCB",
    [QT_BNB_WEIGHT_FORMAT] = ".weight_format",
};
static const char *const state_suffix[] = {".weight.quant_state.bitsandbytes__nf4",
                                           ".weight.quant_state.bitsandbytes__fp4",
                                           ".weight.quant_state.qtool__q8"};

const char *qt_bnb_suffix(qt_bnb_role role, qt_scheme scheme)
{
    if (role == QT_BNB_STATE)
        return scheme == QT_SCHEME_NF4   ? state_suffix[0]
               : scheme == QT_SCHEME_FP4 ? state_suffix[1]
               : scheme == QT_SCHEME_Q8  ? state_suffix[2]
                                         : NULL;
    return role < QT_BNB_ROLE_COUNT ? role_suffix[role] : NULL;
}

bool qt_bnb_is_companion(const char *name)
{
    for (int r = QT_BNB_ABSMAX; r < QT_BNB_ROLE_COUNT; r++)
        if (role_suffix[r] && qt_str_ends_with(name, role_suffix[r])) return true;
    for (size_t i = 0; i < sizeof state_suffix / sizeof *state_suffix; i++)
        if (qt_str_ends_with(name, state_suffix[i])) return true;
    return false;
}

/* Appends a part of `role` with its dtype and shape to L. */
static void add_part(qt_bnb_layout *L, qt_bnb_role role, qt_scheme s, qt_dtype d, size_t nd,
                     uint64_t d0, uint64_t d1)
{
    qt_bnb_part *p = &L->part[L->n_parts++];
    p->role = role;
    p->suffix = qt_bnb_suffix(role, s);
    p->dtype = d;
    p->n_dims = nd;
    p->shape[0] = d0;
    p->shape[1] = d1;
    uint64_t elems = nd == 0 ? 1 : nd == 1 ? d0 : d0 * d1;
    p->nbytes = elems * (qt_dtype_bits(d) / 8);
}

/* The quant_state of a 4-bit or q8 weight (bitsandbytes' QuantState.as_dict). */
static void state_of(qt_scheme scheme, size_t block, bool dq, qt_dtype dtype, size_t n_dims,
                     const uint64_t *shape, float offset, qt_bnb_state *s)
{
    memset(s, 0, sizeof *s);
    snprintf(s->quant_type, sizeof s->quant_type, "%s",
             scheme == QT_SCHEME_NF4 ? "nf4" : scheme == QT_SCHEME_FP4 ? "fp4" : "q8");
    s->blocksize = (int64_t)block;
    snprintf(s->dtype, sizeof s->dtype, "%s", qt_dtype_torch_name(dtype));
    s->n_dims = (int)n_dims;
    for (size_t i = 0; i < n_dims; i++) s->shape[i] = (int64_t)shape[i];
    if (dq) {
        s->nested = true;
        s->nested_blocksize = 256;
        snprintf(s->nested_dtype, sizeof s->nested_dtype, "float32");
        s->nested_offset = offset;
    }
}

/* Adds the quant_state part, sized by its formatted length. */
static qt_status add_state(qt_bnb_layout *L, qt_scheme s)
{
    char buf[512];
    size_t len;
    qt_status st = qt_bnb_state_format(&L->state, buf, sizeof buf, &len);
    if (st != QT_OK) return st;
    L->has_state = true;
    add_part(L, QT_BNB_STATE, s, QT_DTYPE_U8, 1, len, 0);
    return QT_OK;
}

qt_status qt_bnb_layout_of(qt_scheme scheme, size_t block, bool double_quant, qt_dtype dtype,
                           size_t n_dims, const uint64_t *shape, float nested_offset,
                           qt_bnb_layout *L)
{
    memset(L, 0, sizeof *L);
    if (n_dims < 1 || n_dims > QT_BNB_MAX_DIMS || !shape[0]) return QT_ERR_ARG;
    uint64_t n = 1;
    for (size_t i = 0; i < n_dims; i++)
        if (!qt_mul_u64(n, shape[i], &n)) return QT_ERR_ARG;
    const bool fam4 = scheme == QT_SCHEME_NF4 || scheme == QT_SCHEME_FP4;
    if (fam4 || scheme == QT_SCHEME_Q8) {
        if (!block) return QT_ERR_ARG;
        state_of(scheme, block, fam4 && double_quant, dtype, n_dims, shape, nested_offset,
                 &L->state);
    }
    uint64_t nb = (n + block - 1) / (block ? block : 1);
    switch (scheme) {
    case QT_SCHEME_NF4:
    case QT_SCHEME_FP4: /* packed codes, absmax, quant_map [, nested], quant_state */
        add_part(L, QT_BNB_CODES, scheme, QT_DTYPE_U8, 2, (n + 1) / 2, 1);
        add_part(L, QT_BNB_ABSMAX, scheme, double_quant ? QT_DTYPE_U8 : QT_DTYPE_F32, 1, nb, 0);
        add_part(L, QT_BNB_QUANT_MAP, scheme, QT_DTYPE_F32, 1, 16, 0);
        if (double_quant) {
            add_part(L, QT_BNB_NESTED_ABSMAX, scheme, QT_DTYPE_F32, 1, (nb + 255) / 256, 0);
            add_part(L, QT_BNB_NESTED_MAP, scheme, QT_DTYPE_F32, 1, 256, 0);
        }
        return add_state(L, scheme);
    case QT_SCHEME_INT8: /* LLM.int8: I8 [out, in], SCB [out], weight_format */
        add_part(L, QT_BNB_CODES, scheme, QT_DTYPE_I8, 2, shape[0], n / shape[0]);
        add_part(L, QT_BNB_SCB, scheme, QT_DTYPE_F32, 1, shape[0], 0);
        add_part(L, QT_BNB_WEIGHT_FORMAT, scheme, QT_DTYPE_U8, 0, 0, 0);
        return QT_OK;
    case QT_SCHEME_Q8: /* qtool q8 blocks, quant_state */
        add_part(L, QT_BNB_CODES, scheme, QT_DTYPE_U8, 1, qt_q8_bytes((size_t)n, block), 0);
        return add_state(L, scheme);
    default: return QT_ERR_ARG;
    }
}

const qt_bnb_part *qt_bnb_layout_part(const qt_bnb_layout *L, qt_bnb_role role)
{
    for (size_t k = 0; k < L->n_parts; k++)
        if (L->part[k].role == role) return &L->part[k];
    return NULL;
}

qt_status qt_bnb_constant_part(const qt_bnb_layout *L, const qt_bnb_part *p, qt_scheme scheme,
                               void *buf)
{
    char js[512];
    size_t len;
    qt_status st;
    switch (p->role) {
    case QT_BNB_QUANT_MAP:
        memcpy(buf, scheme == QT_SCHEME_NF4 ? qt_nf4_map : qt_fp4_map, sizeof qt_nf4_map);
        return QT_OK;
    case QT_BNB_NESTED_MAP: memcpy(buf, qt_dynamic_map, sizeof qt_dynamic_map); return QT_OK;
    case QT_BNB_WEIGHT_FORMAT: *(uint8_t *)buf = 0; return QT_OK; /* "row" */
    case QT_BNB_STATE:
        st = qt_bnb_state_format(&L->state, js, sizeof js, &len);
        if (st != QT_OK) return st;
        if (len != p->nbytes) return QT_ERR_ARG; /* the state changed since the layout */
        memcpy(buf, js, len);
        return QT_OK;
    default: return QT_ERR_ARG;
    }
}

void qt_bnb_config_for(qt_scheme scheme, size_t block, bool double_quant,
                       const char *compute_dtype, qt_bnb_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->compute_dtype = compute_dtype;
    if (scheme == QT_SCHEME_NF4 || scheme == QT_SCHEME_FP4) {
        cfg->load_in_4bit = true;
        cfg->quant_type = scheme == QT_SCHEME_NF4 ? "nf4" : "fp4";
        cfg->double_quant = double_quant;
    } else if (scheme == QT_SCHEME_INT8) {
        cfg->load_in_4bit = false;
    } else if (scheme == QT_SCHEME_Q8) {
        cfg->qtool_scheme = "q8";
        cfg->qtool_block = (int64_t)block;
    } else {
        cfg->plain = true;
    }
}
