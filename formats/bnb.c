/* formats/bnb.c: bitsandbytes quant_state JSON and quantization_config. */
#include "formats/bnb.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "formats/formats_internal.h"
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
