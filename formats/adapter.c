/* formats/adapter.c: PEFT LoRA adapter directories (formats/adapter.h,
 * specs/peft-lora.md §1-§4): the config, the tensors, scale resolution,
 * matching against a base, and the writer. */
#include "formats/adapter.h"

#include <errno.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/sha256.h"
#include "formats/fsutil.h"
#include "formats/json.h"

#define CONFIG_NAME "adapter_config.json"
#define WEIGHTS_NAME "adapter_model.safetensors"
#define PICKLE_NAME "adapter_model.bin"
#define KEY_PREFIX "base_model.model."
#define MAX_CONFIG_BYTES (1u << 20)
#define MAX_RANK 65536

/* ============================================================================
 * adapter_config.json
 * ========================================================================== */

/* Fields whose mere presence (non-null, non-false, non-empty) is refused. */
static const char *const REFUSED_FIELDS[] = {
    "layer_replication", "target_parameters", "trainable_token_indices", "use_qalora",
    "alora_invocation_tokens", "use_bdlora", "arrow_config", "velora_config",
    "monteclora_config", "megatron_config", "use_dora", "fan_in_fan_out"};

/* init_lora_weights methods that also change the base weights (§2). */
static const char *const BASE_CHANGING_INITS[] = {"pissa", "olora", "corda", "loftq",
                                                  "lora_ga", "eva", "mica"};

/* Keeps a warning on the adapter (the first QT_ADAPTER_MAX_WARNINGS). */
#define add_warning(ad, ...)                                                            \
    do {                                                                                \
        if ((ad)->n_warnings < QT_ADAPTER_MAX_WARNINGS)                                 \
            snprintf((ad)->warnings[(ad)->n_warnings++], QT_ERRMSG_SIZE, __VA_ARGS__);  \
    } while (0)

/* Whether a JSON value counts as "set": not null, not false, not an empty
 * list, object or string. */
static bool json_is_set(const cJSON *v)
{
    if (!v || cJSON_IsNull(v) || cJSON_IsFalse(v)) return false;
    if ((cJSON_IsArray(v) || cJSON_IsObject(v)) && !v->child) return false;
    if (cJSON_IsString(v) && !v->valuestring[0]) return false;
    return true;
}

static const cJSON *field(const cJSON *root, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

/* A boolean field (absent or null: dflt). */
static qt_status cfg_bool(const cJSON *root, const char *path, const char *name, bool dflt,
                          bool *out, char *errmsg)
{
    const cJSON *v = field(root, name);
    if (!v) {
        *out = dflt;
        return QT_OK;
    }
    if (!cJSON_IsBool(v))
        return qt_set_err(errmsg, QT_ERR_FORMAT, "'%s': field '%s' is not true or false", path,
                          name);
    *out = cJSON_IsTrue(v);
    return QT_OK;
}

/* A number field (absent or null: dflt); integral when `integer`. */
static qt_status cfg_number(const cJSON *root, const char *path, const char *name, double dflt,
                            bool integer, double *out, char *errmsg)
{
    const cJSON *v = field(root, name);
    if (!v) {
        *out = dflt;
        return QT_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) ||
        (integer && v->valuedouble != floor(v->valuedouble)))
        return qt_set_err(errmsg, QT_ERR_FORMAT, "'%s': field '%s' is not %s", path, name,
                          integer ? "an integer" : "a number");
    *out = v->valuedouble;
    return QT_OK;
}

/* A string field copied into out (absent or null: dflt). */
static qt_status cfg_string(const cJSON *root, const char *path, const char *name,
                            const char *dflt, char *out, size_t n, char *errmsg)
{
    const cJSON *v = field(root, name);
    if (v && !cJSON_IsString(v))
        return qt_set_err(errmsg, QT_ERR_FORMAT, "'%s': field '%s' is not a string", path,
                          name);
    snprintf(out, n, "%s", v ? v->valuestring : dflt);
    return QT_OK;
}

/* A pattern dict (rank_pattern / alpha_pattern): an object of numbers
 * (integers for ranks) whose keys compile as regular expressions. */
static qt_status check_pattern(const cJSON *root, const char *path, const char *name,
                               bool integer, char *errmsg)
{
    const cJSON *p = field(root, name);
    if (!p) return QT_OK;
    if (!cJSON_IsObject(p))
        return qt_set_err(errmsg, QT_ERR_FORMAT, "'%s': field '%s' is not an object", path,
                          name);
    for (const cJSON *e = p->child; e; e = e->next) {
        if (!cJSON_IsNumber(e) || !(e->valuedouble > 0) ||
            (integer && (e->valuedouble != floor(e->valuedouble) || e->valuedouble > MAX_RANK)))
            return qt_set_err(errmsg, QT_ERR_FORMAT,
                              "'%s': field '%s': entry '%s' is not a positive %s", path, name,
                              e->string, integer ? "integer rank" : "number");
        regex_t re;
        if (regcomp(&re, e->string, REG_EXTENDED | REG_NOSUB) != 0)
            return qt_set_err(errmsg, QT_ERR_UNSUPPORTED,
                              "'%s': field '%s': pattern '%s' is not a regular expression qtool "
                              "understands (POSIX extended)",
                              path, name, e->string);
        regfree(&re);
    }
    return QT_OK;
}

/* Refuses the features of §2 qtool does not run. */
static qt_status refuse_features(const cJSON *root, const char *path, char *errmsg)
{
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(root, "peft_type");
    if (!cJSON_IsString(pt))
        return qt_set_err(errmsg, QT_ERR_FORMAT, "'%s': field 'peft_type' is missing", path);
    if (strcmp(pt->valuestring, "LORA"))
        return qt_set_err(errmsg, QT_ERR_UNSUPPORTED,
                          "'%s': field 'peft_type' is '%s': only LORA adapters are supported",
                          path, pt->valuestring);
    for (size_t i = 0; i < sizeof REFUSED_FIELDS / sizeof *REFUSED_FIELDS; i++)
        if (json_is_set(cJSON_GetObjectItemCaseSensitive(root, REFUSED_FIELDS[i])))
            return qt_set_err(errmsg, QT_ERR_UNSUPPORTED,
                              "'%s': field '%s' is set: not supported by qtool (%s)", path,
                              REFUSED_FIELDS[i],
                              !strcmp(REFUSED_FIELDS[i], "use_dora")
                                  ? "DoRA adapters are refused in this version"
                                  : !strcmp(REFUSED_FIELDS[i], "fan_in_fan_out")
                                        ? "Llama-family weights are stored (out, in)"
                                        : "a PEFT variant qtool does not run");
    return QT_OK;
}

/* Informational fields: task_type, init_lora_weights, base model name. */
static qt_status read_info(qt_adapter *ad, const cJSON *root, const char *path, char *errmsg)
{
    qt_status st = QT_OK;
    char task[64];
    QT_TRY(cfg_string(root, path, "task_type", "CAUSAL_LM", task, sizeof task, errmsg));
    if (strcmp(task, "CAUSAL_LM"))
        add_warning(ad, "task_type is '%s'%s, not CAUSAL_LM: the adapter may not fit a causal LM",
                    task, "");
    QT_TRY(cfg_string(root, path, "base_model_name_or_path", "", ad->cfg.base_model,
                      sizeof ad->cfg.base_model, errmsg));
    const cJSON *init = field(root, "init_lora_weights");
    snprintf(ad->cfg.init_lora_weights, sizeof ad->cfg.init_lora_weights, "%s",
             !init ? "true" : cJSON_IsString(init) ? init->valuestring
                              : cJSON_IsFalse(init) ? "false" : "true");
    for (size_t i = 0; i < sizeof BASE_CHANGING_INITS / sizeof *BASE_CHANGING_INITS; i++)
        if (!strncmp(ad->cfg.init_lora_weights, BASE_CHANGING_INITS[i],
                     strlen(BASE_CHANGING_INITS[i])))
            add_warning(ad,
                        "init_lora_weights '%s' also changes the base weights: the adapter is "
                        "only valid on the residual base it was made with%s",
                        ad->cfg.init_lora_weights,
                        !strcmp(BASE_CHANGING_INITS[i], "loftq") ? " (LoftQ: its own base)" : "");
    return QT_OK;
fail:
    return st;
}

/* Reads and checks every field qtool uses; ad->cfg_json keeps the tree for
 * the pattern lookups. */
static qt_status read_config(qt_adapter *ad, const char *path, char *errmsg)
{
    qt_status st = QT_OK;
    cJSON *root = NULL;
    double r, alpha;
    QT_TRY(qt_json_parse_file(path, MAX_CONFIG_BYTES, &root, errmsg));
    ad->cfg_json = root;
    QT_CHECK(cJSON_IsObject(root), QT_ERR_FORMAT, "'%s': not a JSON object", path);
    QT_TRY(refuse_features(root, path, errmsg));
    QT_TRY(cfg_number(root, path, "r", 8, true, &r, errmsg));
    QT_CHECK(r >= 1 && r <= MAX_RANK, QT_ERR_FORMAT, "'%s': field 'r' is %g, not in 1..%d", path,
             r, MAX_RANK);
    QT_TRY(cfg_number(root, path, "lora_alpha", 8, false, &alpha, errmsg));
    QT_CHECK(alpha > 0, QT_ERR_FORMAT, "'%s': field 'lora_alpha' is %g, not positive", path,
             alpha);
    ad->cfg.r = (int64_t)r;
    ad->cfg.lora_alpha = alpha;
    QT_TRY(cfg_bool(root, path, "use_rslora", false, &ad->cfg.use_rslora, errmsg));
    QT_TRY(cfg_bool(root, path, "lora_bias", false, &ad->cfg.lora_bias, errmsg));
    QT_TRY(cfg_string(root, path, "bias", "none", ad->cfg.bias, sizeof ad->cfg.bias, errmsg));
    QT_CHECK(!strcmp(ad->cfg.bias, "none") || !strcmp(ad->cfg.bias, "all") ||
                 !strcmp(ad->cfg.bias, "lora_only"),
             QT_ERR_FORMAT, "'%s': field 'bias' is '%s', not none, all or lora_only", path,
             ad->cfg.bias);
    QT_TRY(check_pattern(root, path, "rank_pattern", true, errmsg));
    QT_TRY(check_pattern(root, path, "alpha_pattern", false, errmsg));
    QT_TRY(read_info(ad, root, path, errmsg));
    return QT_OK;
fail:
    return st;
}

/* PEFT's get_pattern_key: the first key p of dict `name` (file order) for
 * which "(.*\.)?(p)$" matches the module name from its start; its value,
 * or dflt. */
static double pattern_value(const cJSON *root, const char *name, const char *module,
                            double dflt)
{
    const cJSON *p = field(root, name);
    if (!cJSON_IsObject(p)) return dflt;
    for (const cJSON *e = p->child; e; e = e->next) {
        size_t len = strlen(e->string) + 16;
        char *pat = qt_malloc(len);
        if (!pat) return dflt;
        snprintf(pat, len, "^(.*\\.)?(%s)$", e->string);
        regex_t re;
        bool hit = false;
        if (regcomp(&re, pat, REG_EXTENDED | REG_NOSUB) == 0) {
            hit = regexec(&re, module, 0, NULL, 0) == 0;
            regfree(&re);
        }
        qt_free(pat);
        if (hit) return e->valuedouble;
    }
    return dflt;
}

/* ============================================================================
 * adapter_model.safetensors
 * ========================================================================== */

typedef enum part_kind { PART_A = 0, PART_B, PART_B_BIAS, PART_REPLACEMENT } part_kind;

typedef struct part {
    char *module;              /* module name (A/B/bias) or base tensor name */
    part_kind kind;
    const qt_st_tensor *t;
} part;

static int part_cmp(const void *a, const void *b)
{
    const part *x = a, *y = b;
    int c = strcmp(x->module, y->module);
    return c ? c : (int)x->kind - (int)y->kind;
}

/* Splits an adapter key into (module or base tensor name, kind); refuses
 * keys qtool does not understand. *module: caller frees. */
static qt_status parse_key(const char *path, const char *key, char **module, part_kind *kind,
                           char *errmsg)
{
    static const struct { const char *suffix; part_kind kind; } LORA[] = {
        {".lora_A.weight", PART_A}, {".lora_B.weight", PART_B}, {".lora_B.bias", PART_B_BIAS}};
    *module = NULL;
    if (strncmp(key, KEY_PREFIX, strlen(KEY_PREFIX)))
        return qt_set_err(errmsg, QT_ERR_FORMAT,
                          "'%s': tensor '%s': key does not start with '" KEY_PREFIX "'", path,
                          key);
    const char *rest = key + strlen(KEY_PREFIX);
    for (size_t i = 0; i < 3; i++)
        if (qt_str_ends_with(rest, LORA[i].suffix) && strlen(rest) > strlen(LORA[i].suffix)) {
            *module = qt_strdup(rest);
            if (*module) (*module)[strlen(rest) - strlen(LORA[i].suffix)] = 0;
            *kind = LORA[i].kind;
            return *module ? QT_OK : QT_ERR_NOMEM;
        }
    if (strstr(rest, "lora_magnitude_vector"))
        return qt_set_err(errmsg, QT_ERR_UNSUPPORTED,
                          "'%s': tensor '%s': DoRA magnitude vectors are not supported", path,
                          key);
    if (strstr(rest, "lora_embedding_"))
        return qt_set_err(errmsg, QT_ERR_UNSUPPORTED,
                          "'%s': tensor '%s': LoRA on embeddings is not supported", path, key);
    if (strstr(rest, "lora_"))
        return qt_set_err(errmsg, QT_ERR_FORMAT,
                          "'%s': tensor '%s': unknown LoRA key (an adapter name left in it?)",
                          path, key);
    /* a full tensor: drop PEFT's "base_layer." wrapper component */
    char *name = qt_strdup(rest);
    if (!name) return QT_ERR_NOMEM;
    char *bl = strstr(name, ".base_layer.");
    if (bl) memmove(bl, bl + strlen(".base_layer"), strlen(bl + strlen(".base_layer")) + 1);
    *module = name;
    *kind = PART_REPLACEMENT;
    return QT_OK;
}

/* A tensor widened to fp32 into a new buffer (*out: caller frees with
 * qt_free), every value checked finite. */
static qt_status widen(const qt_adapter *ad, const char *module, const char *what,
                       const qt_st_tensor *t, float **out, char *errmsg)
{
    qt_status st = QT_OK;
    float *v = NULL;
    size_t bytes;
    QT_CHECK(qt_mul_size((size_t)t->n_elements, sizeof(float), &bytes), QT_ERR_OVERFLOW,
             "'%s': module '%s': %s too large", qt_st_reader_path(ad->reader), module, what);
    v = qt_malloc(bytes ? bytes : 1);
    QT_CHECK(v, QT_ERR_NOMEM, "'%s': module '%s': out of memory for %s",
             qt_st_reader_path(ad->reader), module, what);
    QT_TRY(qt_st_tensor_to_f32(ad->reader, t, 0, (size_t)t->n_elements, v, errmsg));
    qt_st_tensor_release(ad->reader, t); /* the fp32 copy is what is used from now on */
    for (size_t i = 0; i < t->n_elements; i++)
        QT_CHECK(isfinite(v[i]), QT_ERR_NUMERIC,
                 "'%s': module '%s': %s value %zu is not finite (NaN or Inf)",
                 qt_st_reader_path(ad->reader), module, what, i);
    *out = v;
    return QT_OK;
fail:
    qt_free(v);
    return st;
}

/* Every value of a replacement tensor is finite (checked in chunks). */
static qt_status check_finite(const qt_adapter *ad, const qt_adapter_replacement *rp,
                              char *errmsg)
{
    enum { CHUNK = 16384 };
    float buf[CHUNK];
    for (uint64_t i = 0; i < rp->t->n_elements; i += CHUNK) {
        size_t n = rp->t->n_elements - i < CHUNK ? (size_t)(rp->t->n_elements - i) : CHUNK;
        qt_status st = qt_st_tensor_to_f32(ad->reader, rp->t, i, n, buf, errmsg);
        if (st != QT_OK) return st;
        for (size_t j = 0; j < n; j++)
            if (!isfinite(buf[j]))
                return qt_set_err(errmsg, QT_ERR_NUMERIC,
                                  "'%s': tensor '%s': value %llu is not finite (NaN or Inf)",
                                  qt_st_reader_path(ad->reader), rp->key,
                                  (unsigned long long)(i + j));
    }
    qt_st_tensor_release(ad->reader, rp->t); /* read again only when applied */
    return QT_OK;
}

/* The dtype rule of §3: F32, F16 or BF16. */
static qt_status check_dtype(const qt_adapter *ad, const qt_st_tensor *t, char *errmsg)
{
    if (t->dtype == QT_DTYPE_F32 || t->dtype == QT_DTYPE_F16 || t->dtype == QT_DTYPE_BF16)
        return QT_OK;
    return qt_set_err(errmsg, QT_ERR_UNSUPPORTED,
                      "'%s': tensor '%s': dtype %s (adapters must be F32, F16 or BF16)",
                      qt_st_reader_path(ad->reader), t->name, qt_dtype_name(t->dtype));
}

/* Resolves r, alpha and the scale of module md (§3.2, §4) and checks the
 * pattern-resolved rank against A's rows. */
static qt_status resolve_scale(qt_adapter *ad, qt_adapter_module *md, char *errmsg)
{
    const cJSON *root = ad->cfg_json;
    double r = pattern_value(root, "rank_pattern", md->name, (double)ad->cfg.r);
    md->alpha = pattern_value(root, "alpha_pattern", md->name, ad->cfg.lora_alpha);
    if ((size_t)r != md->r)
        return qt_set_err(errmsg, QT_ERR_FORMAT,
                          "'%s': module '%s': lora_A has rank %zu but the config (field '%s') "
                          "says %g",
                          ad->dir, md->name, md->r,
                          r == (double)ad->cfg.r ? "r" : "rank_pattern", r);
    md->scale = ad->cfg.use_rslora ? (float)(md->alpha / sqrt(r)) : (float)(md->alpha / r);
    return QT_OK;
}

/* Builds module mods[i] from its parts [p, p + n) (A, B, optional bias). */
static qt_status build_module(qt_adapter *ad, const part *p, size_t n, qt_adapter_module *md,
                              char *errmsg)
{
    qt_status st = QT_OK;
    const char *path = qt_st_reader_path(ad->reader);
    const qt_st_tensor *A = NULL, *B = NULL, *bias = NULL;
    for (size_t i = 0; i < n; i++) {
        if (p[i].kind == PART_A) A = p[i].t;
        if (p[i].kind == PART_B) B = p[i].t;
        if (p[i].kind == PART_B_BIAS) bias = p[i].t;
    }
    md->name = qt_strdup(p[0].module);
    QT_CHECK(md->name, QT_ERR_NOMEM, "out of memory");
    QT_CHECK(A && B, QT_ERR_FORMAT, "'%s': module '%s': %s is missing", path, md->name,
             A ? "lora_B.weight" : "lora_A.weight");
    QT_CHECK(A->n_dims == 2 && B->n_dims == 2, QT_ERR_FORMAT,
             "'%s': module '%s': lora_A and lora_B must be 2-D", path, md->name);
    QT_CHECK(A->shape[0] == B->shape[1] && A->shape[0] >= 1 && A->shape[0] <= MAX_RANK,
             QT_ERR_FORMAT,
             "'%s': module '%s': lora_A rank %llu and lora_B rank %llu differ (or out of range)",
             path, md->name, (unsigned long long)A->shape[0], (unsigned long long)B->shape[1]);
    QT_CHECK(bias || !ad->cfg.lora_bias, QT_ERR_FORMAT,
             "'%s': module '%s': lora_B.bias is missing (field 'lora_bias' is true)", path,
             md->name);
    QT_CHECK(!bias || (ad->cfg.lora_bias && bias->n_dims == 1 && bias->shape[0] == B->shape[0]),
             QT_ERR_FORMAT,
             "'%s': module '%s': lora_B.bias present but field 'lora_bias' is false, or its "
             "shape is not (%llu)",
             path, md->name, (unsigned long long)B->shape[0]);
    QT_TRY(check_dtype(ad, A, errmsg));
    QT_TRY(check_dtype(ad, B, errmsg));
    if (bias) QT_TRY(check_dtype(ad, bias, errmsg));
    md->r = (size_t)A->shape[0];
    md->n_in = (size_t)A->shape[1];
    md->n_out = (size_t)B->shape[0];
    QT_TRY(resolve_scale(ad, md, errmsg));
    QT_TRY(widen(ad, md->name, "lora_A", A, &md->A, errmsg));
    QT_TRY(widen(ad, md->name, "lora_B", B, &md->B, errmsg));
    if (bias) QT_TRY(widen(ad, md->name, "lora_B.bias", bias, &md->b_B, errmsg));
    return QT_OK;
fail:
    return st;
}

/* Groups the file's tensors into modules and replacements. */
static qt_status read_tensors(qt_adapter *ad, char *errmsg)
{
    qt_status st = QT_OK;
    const char *path = qt_st_reader_path(ad->reader);
    const size_t nt = qt_st_reader_n_tensors(ad->reader);
    part *parts = qt_calloc(nt ? nt : 1, sizeof *parts);
    QT_CHECK(parts, QT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < nt; i++) {
        parts[i].t = qt_st_reader_tensor(ad->reader, i);
        QT_TRY(parse_key(path, parts[i].t->name, &parts[i].module, &parts[i].kind, errmsg));
    }
    qsort(parts, nt, sizeof *parts, part_cmp);
    ad->mods = qt_calloc(nt ? nt : 1, sizeof *ad->mods);
    ad->repl = qt_calloc(nt ? nt : 1, sizeof *ad->repl);
    QT_CHECK(ad->mods && ad->repl, QT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < nt;) {
        size_t j = i + 1;
        if (parts[i].kind == PART_REPLACEMENT) {
            QT_CHECK(j == nt || strcmp(parts[j].module, parts[i].module), QT_ERR_FORMAT,
                     "'%s': tensor '%s' appears twice (with and without 'base_layer')", path,
                     parts[i].module);
            qt_adapter_replacement *rp = &ad->repl[ad->n_repl++];
            rp->name = parts[i].module;
            parts[i].module = NULL;
            rp->key = parts[i].t->name;
            rp->t = parts[i].t;
            QT_TRY(check_dtype(ad, rp->t, errmsg));
            QT_TRY(check_finite(ad, rp, errmsg));
            i = j;
            continue;
        }
        while (j < nt && parts[j].kind != PART_REPLACEMENT &&
               !strcmp(parts[j].module, parts[i].module))
            j++;
        QT_TRY(build_module(ad, parts + i, j - i, &ad->mods[ad->n_mods++], errmsg));
        i = j;
    }
    QT_CHECK(ad->n_mods + ad->n_repl > 0, QT_ERR_FORMAT, "'%s': no adapter tensors", path);
fail:
    for (size_t i = 0; parts && i < nt; i++) qt_free(parts[i].module);
    qt_free(parts);
    return st;
}

/* sha256 of the config bytes, the safetensors header and its file size. */
static qt_status fingerprint(qt_adapter *ad, const char *cfg_path, const char *st_path,
                             char *errmsg)
{
    qt_status st = QT_OK;
    char *cfg = NULL, *hdr = NULL;
    size_t ncfg = 0, nhdr = (size_t)qt_st_reader_header_size(ad->reader) + 8;
    FILE *f = NULL;
    QT_TRY(qt_file_read(cfg_path, &cfg, &ncfg, MAX_CONFIG_BYTES, errmsg));
    hdr = qt_malloc(nhdr);
    QT_CHECK(hdr, QT_ERR_NOMEM, "out of memory");
    f = fopen(st_path, "rb");
    QT_CHECK(f && fread(hdr, 1, nhdr, f) == nhdr, QT_ERR_IO, "'%s': cannot read: %s", st_path,
             strerror(errno));
    uint64_t size = qt_st_reader_file_size(ad->reader);
    qt_sha256_ctx c;
    unsigned char d[32];
    qt_sha256_init(&c);
    qt_sha256_update(&c, cfg, ncfg);
    qt_sha256_update(&c, hdr, nhdr);
    qt_sha256_update(&c, &size, sizeof size);
    qt_sha256_final(&c, d);
    qt_sha256_hex(d, ad->fingerprint);
fail:
    if (f) fclose(f);
    qt_free(cfg);
    qt_free(hdr);
    return st;
}

qt_status qt_adapter_open(const char *dir, qt_adapter **out, char *errmsg)
{
    qt_status st = QT_OK;
    qt_adapter *ad = NULL;
    char cfg_path[4096], st_path[4096], bin_path[4096], base[4096];
    if (out) *out = NULL;
    QT_CHECK(dir && out, QT_ERR_ARG, "qt_adapter_open: NULL argument");
    /* a path to the config file names its folder */
    snprintf(base, sizeof base, "%s", dir);
    if (qt_str_ends_with(base, "/" CONFIG_NAME)) base[strlen(base) - strlen(CONFIG_NAME) - 1] = 0;
    QT_CHECK(qt_path_is_dir(base), QT_ERR_ARG, "'%s': not an adapter directory", dir);
    QT_CHECK(qt_path_join(cfg_path, sizeof cfg_path, base, CONFIG_NAME) &&
                 qt_path_join(st_path, sizeof st_path, base, WEIGHTS_NAME) &&
                 qt_path_join(bin_path, sizeof bin_path, base, PICKLE_NAME),
             QT_ERR_ARG, "'%s': path too long", dir);
    QT_CHECK(qt_path_is_file(cfg_path), QT_ERR_ARG, "'%s': missing (not a PEFT adapter directory)",
             cfg_path);
    QT_CHECK(qt_path_is_file(st_path) || !qt_path_is_file(bin_path), QT_ERR_UNSUPPORTED,
             "'%s': a pickle; qtool reads only safetensors. Convert it with python3 -c \"import "
             "torch, safetensors.torch as s; s.save_file(torch.load('%s', map_location='cpu'), "
             "'%s')\"",
             bin_path, PICKLE_NAME, WEIGHTS_NAME);
    ad = qt_calloc(1, sizeof *ad);
    QT_CHECK(ad, QT_ERR_NOMEM, "out of memory");
    ad->dir = qt_strdup(base);
    QT_CHECK(ad->dir, QT_ERR_NOMEM, "out of memory");
    QT_TRY(read_config(ad, cfg_path, errmsg));
    QT_TRY(qt_st_reader_open(st_path, &ad->reader, errmsg));
    QT_TRY(read_tensors(ad, errmsg));
    QT_TRY(fingerprint(ad, cfg_path, st_path, errmsg));
    *out = ad;
    return QT_OK;
fail:
    qt_adapter_free(ad);
    return st;
}

void qt_adapter_free(qt_adapter *ad)
{
    if (!ad) return;
    for (size_t i = 0; i < ad->n_mods; i++) {
        qt_free(ad->mods[i].name);
        qt_free(ad->mods[i].A);
        qt_free(ad->mods[i].B);
        qt_free(ad->mods[i].b_B);
    }
    for (size_t i = 0; i < ad->n_repl; i++) qt_free(ad->repl[i].name);
    qt_free(ad->mods);
    qt_free(ad->repl);
    qt_free(ad->dir);
    cJSON_Delete(ad->cfg_json);
    qt_st_reader_close(ad->reader);
    memset(ad, 0, sizeof *ad);
    qt_free(ad);
}

const qt_adapter_module *qt_adapter_find(const qt_adapter *ad, const char *name)
{
    size_t lo = 0, hi = ad->n_mods;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(ad->mods[mid].name, name);
        if (!c) return &ad->mods[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const qt_adapter_replacement *qt_adapter_find_replacement(const qt_adapter *ad,
                                                          const char *name)
{
    for (size_t i = 0; i < ad->n_repl; i++)
        if (!strcmp(ad->repl[i].name, name)) return &ad->repl[i];
    return NULL;
}

/* ============================================================================
 * Matching a base
 * ========================================================================== */

/* PEFT's list rule: key equals an entry or ends with "." + entry; a string
 * is a regex full match (§3.1). */
static bool target_matches(const cJSON *tm, const char *module)
{
    if (cJSON_IsString(tm)) {
        if (!strcmp(tm->valuestring, "all-linear")) return !strstr(module, "lm_head");
        size_t len = strlen(tm->valuestring) + 8;
        char *pat = qt_malloc(len);
        if (!pat) return true;
        snprintf(pat, len, "^(%s)$", tm->valuestring);
        regex_t re;
        bool hit = true; /* a pattern POSIX cannot compile: no opinion */
        if (regcomp(&re, pat, REG_EXTENDED | REG_NOSUB) == 0) {
            hit = regexec(&re, module, 0, NULL, 0) == 0;
            regfree(&re);
        }
        qt_free(pat);
        return hit;
    }
    if (!cJSON_IsArray(tm)) return true;
    const size_t lm = strlen(module);
    for (const cJSON *e = tm->child; e; e = e->next) {
        if (!cJSON_IsString(e)) continue;
        const size_t le = strlen(e->valuestring);
        if (!strcmp(module, e->valuestring) ||
            (lm > le && module[lm - le - 1] == '.' && !strcmp(module + lm - le, e->valuestring)))
            return true;
        if (!strcmp(e->valuestring, "all-linear") && !strstr(module, "lm_head")) return true;
    }
    return false;
}

qt_status qt_adapter_match(qt_adapter *ad, const qt_layout *base, char *errmsg)
{
    qt_status st = QT_OK;
    char name[512];
    const cJSON *tm = field(ad->cfg_json, "target_modules");
    for (size_t i = 0; i < ad->n_mods; i++) {
        const qt_adapter_module *md = &ad->mods[i];
        snprintf(name, sizeof name, "%s.weight", md->name);
        const qt_lweight *lw = qt_layout_find(base, name);
        QT_CHECK(lw, QT_ERR_FORMAT, "adapter '%s': module '%s': the base has no tensor '%s'",
                 ad->dir, md->name, name);
        QT_CHECK(lw->n_dims == 2 && lw->shape[0] == md->n_out && lw->shape[1] == md->n_in,
                 QT_ERR_FORMAT,
                 "adapter '%s': module '%s': lora_B x lora_A is (%zu, %zu) but the base weight "
                 "is (%llu, %llu)",
                 ad->dir, md->name, md->n_out, md->n_in, (unsigned long long)lw->shape[0],
                 (unsigned long long)(lw->n_dims > 1 ? lw->shape[1] : 0));
        if (tm && !target_matches(tm, md->name))
            add_warning(ad, "module '%s' has LoRA tensors but is not in target_modules%s",
                        md->name, " (the tensors are used)");
    }
    for (size_t i = 0; i < ad->n_repl; i++) {
        const qt_adapter_replacement *rp = &ad->repl[i];
        const qt_lweight *lw = qt_layout_find(base, rp->name);
        QT_CHECK(lw, QT_ERR_FORMAT, "adapter '%s': tensor '%s': the base has no tensor '%s'",
                 ad->dir, rp->key, rp->name);
        bool same = lw->n_dims == rp->t->n_dims;
        for (size_t d = 0; same && d < lw->n_dims; d++) same = lw->shape[d] == rp->t->shape[d];
        QT_CHECK(same, QT_ERR_FORMAT,
                 "adapter '%s': tensor '%s': shape differs from the base's '%s' (a resized "
                 "vocabulary is not supported)",
                 ad->dir, rp->key, rp->name);
    }
    return QT_OK;
fail:
    return st;
}

/* ============================================================================
 * Writing an adapter directory
 * ========================================================================== */

/* The config text: PEFT's fields with the spec's values. *out: qt_free. */
static qt_status config_text(const qt_adapter_spec *s, char **out, size_t *n)
{
    size_t cap = 1024 + 64 * s->n_mods + (s->rank_pattern_json ? strlen(s->rank_pattern_json) : 0) +
                 (s->alpha_pattern_json ? strlen(s->alpha_pattern_json) : 0) +
                 (s->base_model ? strlen(s->base_model) : 0) +
                 (s->extra_json ? strlen(s->extra_json) : 0);
    char *b = qt_malloc(cap);
    if (!b) return QT_ERR_NOMEM;
    int len = snprintf(b, cap,
                       "{\n  \"peft_type\": \"LORA\",\n  \"task_type\": \"CAUSAL_LM\",\n"
                       "  \"base_model_name_or_path\": \"%s\",\n  \"r\": %lld,\n"
                       "  \"lora_alpha\": %.17g,\n  \"use_rslora\": %s,\n"
                       "  \"rank_pattern\": %s,\n  \"alpha_pattern\": %s,\n"
                       "  \"bias\": \"none\",\n  \"lora_dropout\": 0.0,\n"
                       "  \"fan_in_fan_out\": false,\n  \"use_dora\": false,\n"
                       "  \"modules_to_save\": null,\n%s%s  \"target_modules\": [",
                       s->base_model ? s->base_model : "", (long long)s->r, s->lora_alpha,
                       s->use_rslora ? "true" : "false",
                       s->rank_pattern_json ? s->rank_pattern_json : "{}",
                       s->alpha_pattern_json ? s->alpha_pattern_json : "{}",
                       s->extra_json ? s->extra_json : "", s->extra_json ? ",\n" : "");
    /* target_modules: each distinct last name component once */
    for (size_t i = 0; i < s->n_mods && len > 0 && (size_t)len < cap; i++) {
        const char *leaf = strrchr(s->mods[i].name, '.');
        leaf = leaf ? leaf + 1 : s->mods[i].name;
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++) {
            const char *lj = strrchr(s->mods[j].name, '.');
            seen = !strcmp(lj ? lj + 1 : s->mods[j].name, leaf);
        }
        if (!seen) len += snprintf(b + len, cap - (size_t)len, "%s\"%s\"", i ? ", " : "", leaf);
    }
    if (len > 0 && (size_t)len < cap) len += snprintf(b + len, cap - (size_t)len, "]\n}\n");
    if (len < 0 || (size_t)len >= cap) {
        qt_free(b);
        return QT_ERR_OVERFLOW;
    }
    *out = b;
    *n = (size_t)len;
    return QT_OK;
}

/* Declares and writes the A and B tensors of every module. */
static qt_status write_tensors(const char *path, const qt_adapter_spec *s, char *errmsg)
{
    qt_status st = QT_OK;
    qt_st_writer *w = NULL;
    char key[600];
    QT_TRY(qt_st_writer_open(path, &w, errmsg));
    QT_TRY(qt_st_writer_add_metadata(w, "format", "pt"));
    for (size_t i = 0; i < s->n_mods; i++) {
        const qt_adapter_module *m = &s->mods[i];
        uint64_t sa[2] = {m->r, m->n_in}, sb[2] = {m->n_out, m->r};
        snprintf(key, sizeof key, KEY_PREFIX "%s.lora_A.weight", m->name);
        QT_TRY(qt_st_writer_declare(w, key, QT_DTYPE_F32, 2, sa, NULL));
        snprintf(key, sizeof key, KEY_PREFIX "%s.lora_B.weight", m->name);
        QT_TRY(qt_st_writer_declare(w, key, QT_DTYPE_F32, 2, sb, NULL));
    }
    qt_st_writer_keep_order(w, true);
    for (size_t i = 0; i < s->n_mods; i++) {
        const qt_adapter_module *m = &s->mods[i];
        QT_TRY(qt_st_writer_write(w, 2 * i, 0, m->A, m->r * m->n_in * sizeof(float)));
        QT_TRY(qt_st_writer_write(w, 2 * i + 1, 0, m->B, m->n_out * m->r * sizeof(float)));
    }
    st = qt_st_writer_close(w, errmsg);
    w = NULL;
    return st;
fail:
    if (w && errmsg && !errmsg[0]) snprintf(errmsg, QT_ERRMSG_SIZE, "%s", qt_st_writer_errmsg(w));
    qt_st_writer_abort(w);
    return st;
}

qt_status qt_adapter_write(const char *dir, const qt_adapter_spec *spec, char *errmsg)
{
    qt_status st = QT_OK;
    char *cfg = NULL;
    size_t ncfg = 0;
    char path[4096];
    if (errmsg) errmsg[0] = 0;
    QT_CHECK(dir && spec && spec->r > 0, QT_ERR_ARG, "qt_adapter_write: bad argument");
    QT_CHECK(mkdir(dir, 0755) == 0 || errno == EEXIST, QT_ERR_IO, "'%s': cannot create: %s",
             dir, strerror(errno));
    QT_CHECK(config_text(spec, &cfg, &ncfg) == QT_OK, QT_ERR_NOMEM,
             "'%s': cannot format the config", dir);
    QT_CHECK(qt_path_join(path, sizeof path, dir, CONFIG_NAME), QT_ERR_ARG, "path too long");
    QT_TRY(qt_file_write(path, cfg, ncfg, errmsg));
    QT_CHECK(qt_path_join(path, sizeof path, dir, WEIGHTS_NAME), QT_ERR_ARG, "path too long");
    QT_TRY(write_tensors(path, spec, errmsg));
fail:
    qt_free(cfg);
    return st;
}
