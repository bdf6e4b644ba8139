/* model/model.c: the Llama-family forward pass (model/model.h): config.json
 * and safetensors loading through formats/layout.h, the run state, the
 * batched forward pass, sampling and the speed benchmark. The GGUF loader is
 * in gguf_model.c. */
#include "common/threads.h"
#include "model/model.h"
#include "formats/fsutil.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "model/model_internal.h"

#define DEFAULT_CTX_CAP 4096
#define DEFAULT_BATCH 512

/* ============================================================================
 * Ownership helpers
 * ========================================================================== */

qt_model *qt_model_new_empty(void)
{
    qt_model *m = qt_calloc(1, sizeof *m);
    if (!m) return NULL;
    m->cfg.bos_id = m->cfg.eos_id = -1;
    return m;
}

float *qt_model_alloc_f32(qt_model *m, size_t n)
{
    size_t bytes;
    if (n == 0) n = 1;
    if (!qt_mul_size(n, sizeof(float), &bytes)) return NULL;
    if (m->n_owned == m->cap_owned) {
        size_t cap = m->cap_owned ? 2 * m->cap_owned : 64;
        void **o = qt_realloc(m->owned, cap * sizeof *o);
        if (!o) return NULL;
        m->owned = o;
        m->cap_owned = cap;
    }
    float *p = qt_aligned_alloc(64, bytes);
    if (!p) return NULL;
    memset(p, 0, bytes);
    m->owned[m->n_owned++] = p;
    return p;
}

void qt_model_free(qt_model *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->n_owned; i++) qt_aligned_free(m->owned[i]);
    qt_free(m->owned);
    qt_lora_free(m->lora);
    qt_aligned_free(m->s.att);
    if (!m->parent) {
        qt_free(m->s.qk_perm);
        qt_free(m->w.layers);
    }
    qt_layout_free(m->layout);
    qt_modeldir_close(m->md_owned);
    qt_gguf_close(m->gguf);
    memset(m, 0, sizeof *m);
    qt_free(m);
}

/* ============================================================================
 * Run state: KV cache, scratch, RoPE tables
 * ========================================================================== */

/* a * b * c floats, or 0 on overflow. */
static size_t n3(size_t a, size_t b, size_t c)
{
    size_t ab, abc;
    if (!qt_mul_size(a, b, &ab) || !qt_mul_size(ab, c, &abc)) return 0;
    return abc;
}

/* HF's rotary inverse frequencies (float32 as torch computes them), with
 * the linear / llama3 scaling of the config applied. inv: (head_dim / 2,). */
static void rope_inv_freq(const qt_model_config *c, float *inv)
{
    const size_t half = c->head_dim / 2;
    const float base = (float)c->rope_theta;
    for (size_t i = 0; i < half; i++) {
        float e = (float)(2 * i) / (float)c->head_dim;
        inv[i] = 1.0f / powf(base, e);
    }
    if (c->rope_scaling == QT_ROPE_LINEAR) {
        for (size_t i = 0; i < half; i++) inv[i] = inv[i] / (float)c->rope_factor;
    } else if (c->rope_scaling == QT_ROPE_LLAMA3) {
        /* transformers _compute_llama3_parameters */
        const double factor = c->rope_factor, lo = c->rope_low_freq_factor,
                     hi = c->rope_high_freq_factor, old = (double)c->rope_orig_max_pos;
        const double low_wavelen = old / lo, high_wavelen = old / hi;
        for (size_t i = 0; i < half; i++) {
            float f = inv[i];
            float wavelen = (float)(2.0 * M_PI) / f;
            float scaled = (double)wavelen > low_wavelen ? f / (float)factor : f;
            if (!((double)wavelen < high_wavelen) && !((double)wavelen > low_wavelen)) {
                float smooth = (float)(((float)old / wavelen - (float)lo) / (float)(hi - lo));
                scaled = (1.0f - smooth) * scaled / (float)factor + smooth * scaled;
            }
            inv[i] = scaled;
        }
    }
}

/* The rules a model's hyperparameters must meet for the forward pass: sizes
 * present, in range and consistent, finite norm epsilon and RoPE base. */
static qt_status check_sizes(const qt_model_config *c, char *errmsg)
{
    qt_status st = QT_OK;
    QT_CHECK(c->dim > 0 && c->hidden_dim > 0 && c->n_layers > 0 && c->n_heads > 0 &&
                 c->n_kv_heads > 0 && c->head_dim > 0 && c->vocab_size > 0,
             QT_ERR_FORMAT, "%s: a model size is zero or missing", c->arch);
    QT_CHECK(c->n_heads % c->n_kv_heads == 0, QT_ERR_FORMAT,
             "%s: %zu attention heads are not a multiple of %zu kv heads", c->arch, c->n_heads,
             c->n_kv_heads);
    QT_CHECK(c->head_dim % 2 == 0, QT_ERR_FORMAT, "%s: head_dim %zu is odd", c->arch,
             c->head_dim);
    QT_CHECK(c->dim <= (1u << 20) && c->hidden_dim <= (1u << 22) && c->n_layers <= 4096 &&
                 c->n_heads <= 4096 && c->head_dim <= 4096 && c->vocab_size <= (1u << 24),
             QT_ERR_FORMAT, "%s: model sizes out of range", c->arch);
    QT_CHECK(c->norm_eps >= 0.0f && isfinite(c->norm_eps), QT_ERR_FORMAT,
             "%s: rms_norm_eps is not a finite non-negative number", c->arch);
    QT_CHECK(c->rope_theta > 0.0 && isfinite(c->rope_theta), QT_ERR_FORMAT,
             "%s: rope_theta is not a positive number", c->arch);
fail:
    return st;
}

qt_status qt_model_setup(qt_model *m, const qt_model_opts *opts, size_t default_ctx,
                         char *errmsg)
{
    qt_status st = QT_OK;
    const qt_model_config *c = &m->cfg;
    QT_TRY(check_sizes(c, errmsg));
    size_t n_ctx = opts && opts->n_ctx ? opts->n_ctx : default_ctx;
    if (n_ctx == 0) n_ctx = 2048;
    size_t n_batch = opts && opts->n_batch ? opts->n_batch : DEFAULT_BATCH;
    QT_CHECK(n_ctx <= (1u << 24) && n_batch <= (1u << 20), QT_ERR_ARG,
             "context %zu or batch %zu too large", n_ctx, n_batch);
    if (n_batch > n_ctx) n_batch = n_ctx;
    m->n_ctx = n_ctx;
    m->n_batch = n_batch;
    m->capture = opts ? opts->capture : NULL;
    m->capture_ctx = opts ? opts->capture_ctx : NULL;

    const size_t q_dim = c->n_heads * c->head_dim, kv_dim = c->n_kv_heads * c->head_dim;
    qt_run_state *s = &m->s;
    size_t cache = n3(c->n_layers, n_ctx, kv_dim);
    QT_CHECK(cache && n3(n_batch, c->hidden_dim, 1) && n3(n_batch, q_dim, 1), QT_ERR_OVERFLOW,
             "%s: KV cache size overflows", c->arch);
    s->x = qt_model_alloc_f32(m, n_batch * c->dim);
    s->xb = qt_model_alloc_f32(m, n_batch * c->dim);
    s->xb2 = qt_model_alloc_f32(m, n_batch * c->dim);
    s->q = qt_model_alloc_f32(m, n_batch * q_dim);
    s->k = qt_model_alloc_f32(m, n_batch * kv_dim);
    s->v = qt_model_alloc_f32(m, n_batch * kv_dim);
    s->att_out = qt_model_alloc_f32(m, n_batch * q_dim);
    s->hb = qt_model_alloc_f32(m, n_batch * c->hidden_dim);
    s->hb2 = qt_model_alloc_f32(m, n_batch * c->hidden_dim);
    s->key_cache = qt_model_alloc_f32(m, cache);
    s->value_cache = qt_model_alloc_f32(m, cache);
    s->rope_cos = qt_model_alloc_f32(m, n_ctx * (c->head_dim / 2));
    s->rope_sin = qt_model_alloc_f32(m, n_ctx * (c->head_dim / 2));
    float *inv = qt_model_alloc_f32(m, c->head_dim / 2);
    QT_CHECK(s->x && s->xb && s->xb2 && s->q && s->k && s->v && s->att_out && s->hb &&
                 s->hb2 && s->key_cache && s->value_cache && s->rope_cos && s->rope_sin && inv,
             QT_ERR_NOMEM, "%s: out of memory for the KV cache (%zu tokens)", c->arch, n_ctx);

    rope_inv_freq(c, inv);
    const size_t half = c->head_dim / 2;
    for (size_t p = 0; p < n_ctx; p++)
        for (size_t i = 0; i < half; i++) {
            float a = (float)p * inv[i];
            s->rope_cos[p * half + i] = cosf(a);
            s->rope_sin[p * half + i] = sinf(a);
        }
    m->k = qt_kernels_active();
    return QT_OK;
fail:
    return st;
}

/* Makes sure the per-thread attention scratch covers nth threads: each
 * (QT_ATTN_ROWS, n_ctx) floats, rounded up to 64 bytes. */
static qt_status ensure_att(qt_model *m, int nth)
{
    if (m->s.att && m->s.att_threads >= nth) return QT_OK;
    size_t stride, all, bytes;
    if (!qt_mul_size(QT_ATTN_ROWS, m->n_ctx, &stride) || stride > SIZE_MAX - 15)
        return QT_ERR_OVERFLOW;
    stride = (stride + 15) / 16 * 16;
    if (!qt_mul_size((size_t)nth, stride, &all) || !qt_mul_size(all, sizeof(float), &bytes))
        return QT_ERR_OVERFLOW;
    float *a = qt_aligned_alloc(64, bytes);
    if (!a) return QT_ERR_NOMEM;
    qt_aligned_free(m->s.att);
    m->s.att = a;
    m->s.att_threads = nth;
    m->s.att_stride = stride;
    return QT_OK;
}

/* ============================================================================
 * Loading a model directory (config.json + safetensors)
 * ========================================================================== */

/* An integer config key; required ones must be present. */
static qt_status cfg_size(const qt_modeldir *md, const char *key, bool required, size_t dflt,
                          size_t *out, char *errmsg)
{
    int64_t v;
    qt_status st = qt_modeldir_config_int(md, key, &v);
    if (st == QT_ERR_ARG && !required) {
        *out = dflt;
        return QT_OK;
    }
    if (st == QT_ERR_ARG)
        return qt_set_err(errmsg, QT_ERR_FORMAT, "config.json: '%s' is missing", key);
    if (st != QT_OK || v <= 0)
        return qt_set_err(errmsg, QT_ERR_FORMAT, "config.json: '%s' is not a positive integer",
                          key);
    *out = (size_t)v;
    return QT_OK;
}

static qt_status cfg_float(const qt_modeldir *md, const char *key, double dflt, double *out,
                           char *errmsg)
{
    qt_status st = qt_modeldir_config_float(md, key, out);
    if (st == QT_ERR_ARG) {
        *out = dflt;
        return QT_OK;
    }
    if (st != QT_OK)
        return qt_set_err(errmsg, QT_ERR_FORMAT, "config.json: '%s' is not a number", key);
    return QT_OK;
}

static qt_status cfg_bool(const qt_modeldir *md, const char *key, bool dflt, bool *out,
                          char *errmsg)
{
    qt_status st = qt_modeldir_config_bool(md, key, out);
    if (st == QT_ERR_ARG) {
        *out = dflt;
        return QT_OK;
    }
    if (st != QT_OK)
        return qt_set_err(errmsg, QT_ERR_FORMAT, "config.json: '%s' is not true or false", key);
    return QT_OK;
}

/* rope_scaling (or transformers 5's rope_parameters): the type and its
 * parameters under the object named obj. */
static qt_status read_rope_scaling(const qt_modeldir *md, qt_model_config *c, char *errmsg)
{
    qt_status st = QT_OK;
    const char *obj = NULL, *type = NULL;
    char key[96];
    static const char *const objs[] = {"rope_scaling", "rope_parameters"};
    for (size_t i = 0; i < 2 && !type; i++) {
        if (!qt_modeldir_config_has(md, objs[i])) continue;
        obj = objs[i];
        snprintf(key, sizeof key, "%s.rope_type", obj);
        if (qt_modeldir_config_str(md, key, &type) != QT_OK) {
            snprintf(key, sizeof key, "%s.type", obj);
            if (qt_modeldir_config_str(md, key, &type) != QT_OK) type = NULL;
        }
        QT_CHECK(type || i == 1, QT_ERR_FORMAT, "config.json: '%s' has no type", obj);
    }
    c->rope_scaling = QT_ROPE_NONE;
    if (!type || !strcmp(type, "default")) return QT_OK;
    if (!strcmp(type, "linear")) c->rope_scaling = QT_ROPE_LINEAR;
    else if (!strcmp(type, "llama3")) c->rope_scaling = QT_ROPE_LLAMA3;
    else
        QT_CHECK(0, QT_ERR_UNSUPPORTED,
                 "config.json: %s type '%s' is not supported (default, linear, llama3)", obj,
                 type);
    snprintf(key, sizeof key, "%s.factor", obj);
    QT_CHECK(qt_modeldir_config_float(md, key, &c->rope_factor) == QT_OK && c->rope_factor > 0,
             QT_ERR_FORMAT, "config.json: '%s' missing or not positive", key);
    if (c->rope_scaling == QT_ROPE_LLAMA3) {
        snprintf(key, sizeof key, "%s.low_freq_factor", obj);
        QT_CHECK(qt_modeldir_config_float(md, key, &c->rope_low_freq_factor) == QT_OK, QT_ERR_FORMAT,
                 "config.json: '%s' missing", key);
        snprintf(key, sizeof key, "%s.high_freq_factor", obj);
        QT_CHECK(qt_modeldir_config_float(md, key, &c->rope_high_freq_factor) == QT_OK,
                 QT_ERR_FORMAT, "config.json: '%s' missing", key);
        snprintf(key, sizeof key, "%s.original_max_position_embeddings", obj);
        QT_TRY(cfg_size(md, key, true, 0, &c->rope_orig_max_pos, errmsg));
        QT_CHECK(c->rope_high_freq_factor > c->rope_low_freq_factor, QT_ERR_FORMAT,
                 "config.json: %s: high_freq_factor must exceed low_freq_factor", obj);
    }
    return QT_OK;
fail:
    return st;
}

static qt_status read_config(const qt_modeldir *md, qt_model_config *c, size_t *window,
                             char *errmsg)
{
    qt_status st = QT_OK;
    QT_CHECK(qt_modeldir_has_config(md), QT_ERR_FORMAT, "%s: no config.json",
             qt_modeldir_path(md));
    /* architectures[0] (or model_type), as the architecture line names it */
    char line[256];
    qt_modeldir_architecture_line(md, line, sizeof line);
    char *colon = strchr(line, ':');
    if (colon) *colon = 0;
    QT_CHECK(qt_arch_known(line), QT_ERR_UNSUPPORTED,
             "config.json: architecture '%s' is not supported (%s)", line, qt_arch_names());
    snprintf(c->arch, sizeof c->arch, "%.63s", line);
    const bool qwen2 = strstr(line, "Qwen2") || !strcmp(line, "qwen2");

    const char *act = NULL;
    if (qt_modeldir_config_str(md, "hidden_act", &act) == QT_OK)
        QT_CHECK(!strcmp(act, "silu"), QT_ERR_UNSUPPORTED,
                 "config.json: hidden_act '%s' is not supported (silu)", act);
    bool mlp_bias = false;
    QT_TRY(cfg_bool(md, "mlp_bias", false, &mlp_bias, errmsg));
    QT_CHECK(!mlp_bias, QT_ERR_UNSUPPORTED, "config.json: mlp_bias true is not supported");

    QT_TRY(cfg_size(md, "hidden_size", true, 0, &c->dim, errmsg));
    QT_TRY(cfg_size(md, "intermediate_size", true, 0, &c->hidden_dim, errmsg));
    QT_TRY(cfg_size(md, "num_hidden_layers", true, 0, &c->n_layers, errmsg));
    QT_TRY(cfg_size(md, "num_attention_heads", true, 0, &c->n_heads, errmsg));
    QT_TRY(cfg_size(md, "num_key_value_heads", false, c->n_heads, &c->n_kv_heads, errmsg));
    QT_CHECK(c->dim % c->n_heads == 0 || qt_modeldir_config_has(md, "head_dim"), QT_ERR_FORMAT,
             "config.json: hidden_size %zu is not a multiple of %zu heads", c->dim, c->n_heads);
    QT_TRY(cfg_size(md, "head_dim", false, c->dim / c->n_heads, &c->head_dim, errmsg));
    QT_TRY(cfg_size(md, "vocab_size", false, 0, &c->vocab_size, errmsg));
    QT_TRY(cfg_size(md, "max_position_embeddings", false, 2048, &c->max_pos, errmsg));
    double eps, theta;
    QT_TRY(cfg_float(md, "rms_norm_eps", 1e-6, &eps, errmsg));
    c->norm_eps = (float)eps;
    if (qt_modeldir_config_has(md, "rope_theta"))
        QT_TRY(cfg_float(md, "rope_theta", 10000.0, &theta, errmsg));
    else
        QT_TRY(cfg_float(md, "rope_parameters.rope_theta", 10000.0, &theta, errmsg));
    c->rope_theta = theta;
    QT_TRY(read_rope_scaling(md, c, errmsg));
    QT_TRY(cfg_bool(md, "tie_word_embeddings", false, &c->tied_embeddings, errmsg));
    QT_TRY(cfg_bool(md, "attention_bias", qwen2, &c->has_bias, errmsg));

    int64_t id;
    if (qt_modeldir_config_int(md, "bos_token_id", &id) == QT_OK && id >= 0 && id < INT32_MAX)
        c->bos_id = (int32_t)id;
    if (qt_modeldir_config_int(md, "eos_token_id", &id) == QT_OK && id >= 0 && id < INT32_MAX)
        c->eos_id = (int32_t)id;

    /* sliding-window attention: only a window that covers the whole context
     * is run (it is then full attention) */
    *window = 0;
    bool use_sw = true;
    if (qwen2) {
        /* transformers' Qwen2 windows only layers >= max_window_layers
         * (default 28): none when that covers every layer */
        size_t mwl = 0;
        QT_TRY(cfg_bool(md, "use_sliding_window", false, &use_sw, errmsg));
        QT_TRY(cfg_size(md, "max_window_layers", false, 28, &mwl, errmsg));
        if (mwl >= c->n_layers) use_sw = false;
    }
    if (use_sw && qt_modeldir_config_has(md, "sliding_window"))
        QT_TRY(cfg_size(md, "sliding_window", true, 0, window, errmsg));
    return QT_OK;
fail:
    return st;
}

/* The fp32 copy of a plain 1-D tensor of n elements (norm or bias); *out NULL
 * when absent and optional. */
static qt_status load_vec(qt_model *m, const char *name, size_t n, bool required,
                          const float **out, char *errmsg)
{
    qt_status st = QT_OK;
    *out = NULL;
    const qt_lweight *lw = qt_layout_find(m->layout, name);
    if (!lw && !required) return QT_OK;
    QT_CHECK(lw, QT_ERR_FORMAT, "tensor '%s' is missing", name);
    QT_CHECK(lw->kind == QT_LW_PLAIN && lw->n_elements == n, QT_ERR_FORMAT,
             "tensor '%s': expected %zu plain values, found %llu (%s)", name, n,
             (unsigned long long)lw->n_elements, qt_lweight_label(lw));
    float *v = qt_model_alloc_f32(m, n);
    QT_CHECK(v, QT_ERR_NOMEM, "tensor '%s': out of memory", name);
    QT_TRY(qt_st_tensor_to_f32(lw->reader, lw->weight, 0, n, v, errmsg));
    for (size_t i = 0; i < n; i++)
        QT_CHECK(isfinite(v[i]), QT_ERR_NUMERIC, "tensor '%s': value %zu is not finite", name,
                 i);
    *out = v;
    return QT_OK;
fail:
    return st;
}

/* A weight matrix of shape (n_out, n_in). */
static qt_status load_mat(qt_model *m, const char *name, size_t n_out, size_t n_in,
                          qt_qweight *out, const char **label, char *errmsg)
{
    qt_status st = QT_OK;
    const qt_lweight *lw = qt_layout_find(m->layout, name);
    QT_CHECK(lw, QT_ERR_FORMAT, "tensor '%s' is missing", name);
    QT_CHECK(lw->n_dims == 2 && lw->shape[0] == n_out && lw->shape[1] == n_in, QT_ERR_FORMAT,
             "tensor '%s': shape (%llu, %llu), expected (%zu, %zu)", name,
             (unsigned long long)lw->shape[0],
             (unsigned long long)(lw->n_dims > 1 ? lw->shape[1] : 1), n_out, n_in);
    QT_TRY(qt_layout_qweight(lw, out, errmsg));
    QT_CHECK(out->n_out == n_out && out->n_in == n_in, QT_ERR_FORMAT,
             "tensor '%s': inconsistent descriptor", name);
    /* 4-bit weights of a bf16 / fp16 model: bitsandbytes dequantizes into
     * the quant_state dtype, and transformers multiplies with that */
    if ((out->scheme == QT_SCHEME_NF4 || out->scheme == QT_SCHEME_FP4) && !m->dq_fp32)
        out->round_to = lw->dtype == QT_DTYPE_BF16  ? QT_SRC_BF16
                        : lw->dtype == QT_DTYPE_F16 ? QT_SRC_F16
                                                    : QT_SRC_F32;
    if (label) *label = qt_lweight_label(lw);
    return QT_OK;
fail:
    return st;
}

static qt_status load_weights(qt_model *m, char *errmsg)
{
    qt_status st = QT_OK;
    qt_model_config *c = &m->cfg;
    qt_model_weights *w = &m->w;
    const size_t q_dim = c->n_heads * c->head_dim, kv_dim = c->n_kv_heads * c->head_dim;
    char name[160];

    const qt_lweight *emb = qt_layout_find(m->layout, "model.embed_tokens.weight");
    QT_CHECK(emb, QT_ERR_FORMAT, "tensor 'model.embed_tokens.weight' is missing");
    QT_CHECK(emb->n_dims == 2 && emb->shape[1] == c->dim && emb->shape[0] > 0, QT_ERR_FORMAT,
             "tensor 'model.embed_tokens.weight': expected (vocab, %zu)", c->dim);
    if (c->vocab_size == 0) c->vocab_size = (size_t)emb->shape[0];
    QT_CHECK(emb->shape[0] == c->vocab_size, QT_ERR_FORMAT,
             "tensor 'model.embed_tokens.weight': %llu rows, config vocab_size %zu",
             (unsigned long long)emb->shape[0], c->vocab_size);
    QT_TRY(load_mat(m, "model.embed_tokens.weight", c->vocab_size, c->dim, &w->embed,
                    &w->embed_label, errmsg));
    if (!c->tied_embeddings && !qt_layout_find(m->layout, "lm_head.weight"))
        c->tied_embeddings = true; /* no separate output matrix: it is the embedding */
    if (c->tied_embeddings) {
        w->lm_head = w->embed;
        w->lm_head_label = w->embed_label;
    } else {
        QT_TRY(load_mat(m, "lm_head.weight", c->vocab_size, c->dim, &w->lm_head,
                        &w->lm_head_label, errmsg));
    }
    QT_TRY(load_vec(m, "model.norm.weight", c->dim, true, &w->norm, errmsg));

    w->layers = qt_calloc(c->n_layers, sizeof *w->layers);
    QT_CHECK(w->layers, QT_ERR_NOMEM, "out of memory");
    bool any_bias = false;
    for (size_t l = 0; l < c->n_layers; l++) {
        qt_layer_weights *L = &w->layers[l];
#define LNAME(suffix) (snprintf(name, sizeof name, "model.layers.%zu.%s", l, suffix), name)
        QT_TRY(load_vec(m, LNAME("input_layernorm.weight"), c->dim, true, &L->attn_norm, errmsg));
        QT_TRY(load_vec(m, LNAME("post_attention_layernorm.weight"), c->dim, true, &L->ffn_norm,
                        errmsg));
        /* the seven projections, names and shapes from the Llama table */
        qt_qweight *proj[QT_PROJ_COUNT] = {&L->wq, &L->wk, &L->wv, &L->wo,
                                           &L->w_gate, &L->w_up, &L->w_down};
        for (int p = 0; p < QT_PROJ_COUNT; p++) {
            size_t rows, cols;
            char mod[64];
            qt_proj_shape((qt_proj)p, c->dim, q_dim, kv_dim, c->hidden_dim, &rows, &cols);
            snprintf(mod, sizeof mod, "%s.weight", qt_proj_module((qt_proj)p));
            QT_TRY(load_mat(m, LNAME(mod), rows, cols, proj[p], &L->label[p], errmsg));
        }
        /* biases: every one present is used; the config says which must be */
        QT_TRY(load_vec(m, LNAME("self_attn.q_proj.bias"), q_dim, c->has_bias, &L->bq, errmsg));
        QT_TRY(load_vec(m, LNAME("self_attn.k_proj.bias"), kv_dim, c->has_bias, &L->bk, errmsg));
        QT_TRY(load_vec(m, LNAME("self_attn.v_proj.bias"), kv_dim, c->has_bias, &L->bv, errmsg));
        QT_TRY(load_vec(m, LNAME("self_attn.o_proj.bias"), c->dim, false, &L->bo, errmsg));
        QT_CHECK(!qt_layout_find(m->layout, LNAME("mlp.up_proj.bias")), QT_ERR_UNSUPPORTED,
                 "tensor '%s': MLP biases are not supported", name);
#undef LNAME
        any_bias = any_bias || L->bq || L->bk || L->bv || L->bo;
    }
    c->has_bias = any_bias;
    return QT_OK;
fail:
    return st;
}

qt_status qt_model_config_check(const qt_modeldir *md, const qt_layout *L, char *errmsg)
{
    qt_status st = QT_OK;
    qt_model_config c;
    memset(&c, 0, sizeof c);
    size_t window = 0;
    /* the keys and their types, then the sizes, as qt_model_open reads them */
    QT_TRY(read_config(md, &c, &window, errmsg));
    const qt_lweight *emb = qt_layout_find(L, "model.embed_tokens.weight");
    if (c.vocab_size == 0 && emb) c.vocab_size = (size_t)emb->shape[0];
    QT_TRY(check_sizes(&c, errmsg));
    /* the embedding has one row per vocabulary entry */
    QT_CHECK(!emb || emb->shape[0] == c.vocab_size, QT_ERR_FORMAT,
             "config.json: vocab_size %zu, but tensor 'model.embed_tokens.weight' has %llu rows",
             c.vocab_size, (unsigned long long)emb->shape[0]);
fail:
    return st;
}

qt_status qt_model_open_modeldir(const qt_modeldir *md, const qt_model_opts *opts,
                                 qt_model **out, char *errmsg)
{
    qt_status st = QT_OK;
    qt_model *m = NULL;
    if (out) *out = NULL;
    QT_CHECK(md && out, QT_ERR_ARG, "qt_model_open_modeldir: NULL argument");
    m = qt_model_new_empty();
    QT_CHECK(m, QT_ERR_NOMEM, "out of memory");
    size_t window = 0;
    QT_TRY(read_config(md, &m->cfg, &window, errmsg));
    QT_TRY(qt_layout_build(md, &m->layout, errmsg));
    m->dq_fp32 = opts && opts->dq_fp32;
    QT_TRY(load_weights(m, errmsg));
    size_t dflt = m->cfg.max_pos < DEFAULT_CTX_CAP ? m->cfg.max_pos : DEFAULT_CTX_CAP;
    if (window && window < dflt) dflt = window;
    QT_TRY(qt_model_setup(m, opts, dflt, errmsg));
    m->max_ctx = window;
    QT_CHECK(!window || m->n_ctx <= window, QT_ERR_UNSUPPORTED,
             "config.json: sliding_window %zu is shorter than the context %zu (sliding-window "
             "attention is not supported: use a context of at most %zu tokens)",
             window, m->n_ctx, window);
    *out = m;
    return QT_OK;
fail:
    qt_model_free(m);
    return st;
}

qt_status qt_model_open(const char *path, const qt_model_opts *opts, qt_model **out,
                        char *errmsg)
{
    qt_status st = QT_OK;
    qt_modeldir *md = NULL;
    if (out) *out = NULL;
    QT_CHECK(path && out, QT_ERR_ARG, "qt_model_open: NULL argument");
    if (qt_file_is_gguf(path)) return qt_model_open_gguf(path, opts, out, errmsg);
    QT_TRY(qt_modeldir_open(path, &md, errmsg));
    QT_TRY(qt_model_open_modeldir(md, opts, out, errmsg));
    (*out)->md_owned = md;
    return QT_OK;
fail:
    qt_modeldir_close(md);
    return st;
}

qt_status qt_model_fork(const qt_model *m, qt_model **out, char *errmsg)
{
    *out = NULL;
    qt_model *f = qt_model_new_empty();
    if (!f) return qt_set_err(errmsg, QT_ERR_NOMEM, "out of memory for a model fork");
    /* the weights and the GGUF row permutation are borrowed from m */
    f->cfg = m->cfg;
    f->w = m->w;
    f->parent = m;
    f->max_ctx = m->max_ctx;
    f->s.qk_perm = m->s.qk_perm;
    /* its own KV cache and scratch, the same sizes */
    qt_model_opts o = {.n_ctx = m->n_ctx, .n_batch = m->n_batch};
    qt_status st = qt_model_setup(f, &o, m->n_ctx, errmsg);
    if (st == QT_OK && m->lora) st = qt_lora_fork(f, m, errmsg); /* LoRA: same adapter */
    if (st != QT_OK) {
        qt_model_free(f);
        return st;
    }
    f->k = m->k;
    *out = f;
    return QT_OK;
}

/* ============================================================================
 * Facts
 * ========================================================================== */

const qt_model_config *qt_model_get_config(const qt_model *m) { return &m->cfg; }
size_t qt_model_n_ctx(const qt_model *m) { return m->n_ctx; }
size_t qt_model_n_past(const qt_model *m) { return m->n_past; }
size_t qt_model_max_ctx(const qt_model *m) { return m->max_ctx; }
const char *qt_model_errmsg(const qt_model *m) { return m->errmsg; }
void qt_model_reset(qt_model *m) { m->n_past = 0; }

void qt_model_describe(const qt_model *m, char *buf, size_t n)
{
    if (!n) return;
    const qt_model_config *c = &m->cfg;
    /* count matrices per storage label, in order of first appearance */
    const char *labels[16];
    size_t counts[16], nl = 0;
    for (size_t l = 0; l < c->n_layers; l++)
        for (size_t j = 0; j < 8; j++) {
            const char *lab = j < 7 ? m->w.layers[l].label[j] : NULL;
            if (j == 7) {
                if (l != c->n_layers - 1) continue;
                lab = m->w.lm_head_label;
            }
            if (!lab) lab = "?";
            size_t i = 0;
            while (i < nl && strcmp(labels[i], lab)) i++;
            if (i == nl) {
                if (nl == 16) continue;
                labels[nl] = lab;
                counts[nl++] = 0;
            }
            counts[i]++;
        }
    int len = snprintf(buf, n,
                       "%s: dim %zu, hidden %zu, %zu layers, %zu heads (%zu kv, head_dim %zu), "
                       "vocab %zu, ctx %zu%s; matrices",
                       c->arch, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
                       c->head_dim, c->vocab_size, m->n_ctx,
                       c->tied_embeddings ? ", tied embeddings" : "");
    for (size_t i = 0; i < nl && len > 0 && (size_t)len < n; i++)
        len += snprintf(buf + len, n - (size_t)len, "%s %s x%zu", i ? "," : "", labels[i],
                        counts[i]);
}

/* ============================================================================
 * The forward pass
 * ========================================================================== */


/* o (n, d) = x / rms(x) * w, row by row. Rows are independent, each reduced
 * serially in a fixed order (double accumulator). */
static void rmsnorm(float *o, const float *x, const float *w, size_t n, size_t d, float eps)
{
    ptrdiff_t t;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (n * d >= 65536)
#endif
    for (t = 0; t < (ptrdiff_t)n; t++) {
        const float *xr = x + (size_t)t * d;
        float *orow = o + (size_t)t * d;
        double ss = 0.0;
        for (size_t i = 0; i < d; i++) ss += (double)xr[i] * xr[i];
        float var = (float)(ss / (double)d);
        float r = 1.0f / sqrtf(var + eps);
        for (size_t i = 0; i < d; i++) orow[i] = w[i] * (xr[i] * r);
    }
}

/* y (n, d) += b (d,) */
static void add_bias(float *y, const float *b, size_t n, size_t d)
{
    if (!b) return;
    for (size_t t = 0; t < n; t++)
        for (size_t i = 0; i < d; i++) y[t * d + i] += b[i];
}

/* GGUF Q/K rows come in the interleaved-pair order: y (n, n_h * hd) is put
 * back in the HF order, head by head. tmp: (hd,) scratch. */
static void unpermute_rows(float *y, size_t n, size_t n_h, size_t hd, const int32_t *perm,
                           float *tmp)
{
    for (size_t r = 0; r < n * n_h; r++) {
        float *h = y + r * hd;
        for (size_t i = 0; i < hd; i++) tmp[i] = h[perm[i]];
        memcpy(h, tmp, hd * sizeof(float));
    }
}

/* Rotate-half RoPE on v (n_h heads of hd) at position pos. */
static void rope(float *v, size_t n_h, size_t hd, const float *cs, const float *sn)
{
    const size_t half = hd / 2;
    for (size_t h = 0; h < n_h; h++) {
        float *a = v + h * hd, *b = a + half;
        for (size_t i = 0; i < half; i++) {
            float x1 = a[i], x2 = b[i];
            a[i] = x1 * cs[i] - x2 * sn[i];
            b[i] = x2 * cs[i] + x1 * sn[i];
        }
    }
}

/* Query tokens per attention job (x the query heads of one kv head). */
#define QT_ATTN_TOK 4

/* Causal GQA attention of n tokens at positions pos0.. over the layer's
 * cache: att_out (n, q_dim), through the attention kernel (quant/attn.c
 * defines its arithmetic). One job = QT_ATTN_TOK tokens x the query heads
 * of one kv head, computed by one thread: the same bits for any thread count. */
static void attention(qt_model *m, size_t l, size_t n, size_t pos0, int nth)
{
    const qt_model_config *c = &m->cfg;
    qt_run_state *s = &m->s;
    const size_t hd = c->head_dim, q_dim = c->n_heads * hd, kv_dim = c->n_kv_heads * hd;
    const size_t group = c->n_heads / c->n_kv_heads;
    const float *kc = s->key_cache + l * m->n_ctx * kv_dim; /* (kv heads, hd, n_ctx) */
    const float *vc = s->value_cache + l * m->n_ctx * kv_dim;
    const float scale = (float)(1.0 / sqrt((double)hd));
    const size_t n_blk = (n + QT_ATTN_TOK - 1) / QT_ATTN_TOK;
    const ptrdiff_t total = (ptrdiff_t)(n_blk * c->n_kv_heads);
    /* threads only when there is work enough to pay for waking them */
    const bool par = total > 1 &&
                     (double)n * (double)c->n_heads * (double)(pos0 + n) * (double)hd > 65536.0;
    ptrdiff_t idx;
    (void)nth;
    (void)par;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(nth) if (par)
#endif
    for (idx = 0; idx < total; idx++) {
        const size_t t0 = (size_t)idx / c->n_kv_heads * QT_ATTN_TOK;
        const size_t kvh = (size_t)idx % c->n_kv_heads;
        const size_t off = t0 * q_dim + kvh * group * hd; /* the group's first head */
        const qt_attn_job job = {
            .q = s->q + off, .ldq = q_dim, .o = s->att_out + off, .ldo = q_dim,
            .kt = kc + kvh * hd * m->n_ctx, .ldk = m->n_ctx, .v = vc + kvh * hd, .ldv = kv_dim,
            .n_tok = n - t0 < QT_ATTN_TOK ? n - t0 : QT_ATTN_TOK, .group = group, .hd = hd,
            .pos0 = pos0 + t0, .scale = scale,
            .scratch = s->att + (size_t)qt_thread_id() * s->att_stride,
        };
        m->k->attn(&job);
    }
}

/* x (n, d) += y (n, d) */
static void residual(float *x, const float *y, size_t nd)
{
    for (size_t i = 0; i < nd; i++) x[i] += y[i];
}

/* y (n, n_out) = x (n, n_in) . W^T through qt_matmul (which keeps small
 * matmuls on the calling thread; every output element has one summation
 * order whatever n, the tiling or the threads). */
static qt_status mm(qt_model *m, const qt_qweight *w, const float *x, size_t n, float *y,
                    const char *what, size_t l)
{
    if (m->capture && l < m->cfg.n_layers) {
        for (int p = 0; p < QT_PROJ_COUNT; p++)
            if (!strcmp(what, qt_proj_name((qt_proj)p))) {
                m->capture(m->capture_ctx, l, (qt_proj)p, m->cur_pos0, x, n, w->n_in);
                break;
            }
    }
    qt_status st = qt_matmul(m->k, w, x, n, y);
    if (st != QT_OK)
        return qt_set_err(m->errmsg, st, "layer %zu: %s: matmul failed (%s)", l, what,
                          qt_status_str(st));
    if (m->lora) return qt_lora_apply(m, l, what, x, n, y); /* LoRA: y += s B A x */
    return QT_OK;
}

/* One chunk of n <= n_batch tokens at positions pos0..; logits: (n, vocab)
 * when !last_only, (vocab,) of the last token when last_only, or NULL. */
static qt_status forward_chunk(qt_model *m, const int32_t *tokens, size_t n, size_t pos0,
                               float *logits, bool last_only)
{
    qt_status st = QT_OK;
    const qt_model_config *c = &m->cfg;
    const qt_model_weights *w = &m->w;
    qt_run_state *s = &m->s;
    const size_t dim = c->dim, hd = c->head_dim, half = hd / 2;
    const size_t q_dim = c->n_heads * hd, kv_dim = c->n_kv_heads * hd, hid = c->hidden_dim;
    const int nth = qt_max_threads();
    if ((st = ensure_att(m, nth)) != QT_OK)
        return qt_set_err(m->errmsg, st, "out of memory for attention scores");

    m->cur_pos0 = pos0;
    /* embedding rows */
    for (size_t t = 0; t < n; t++) qt_qweight_rows(m->k, &w->embed, (size_t)tokens[t], 1, s->x + t * dim);

    for (size_t l = 0; l < c->n_layers; l++) {
        const qt_layer_weights *L = &w->layers[l];
        /* ---- attention block ---- */
        rmsnorm(s->xb, s->x, L->attn_norm, n, dim, c->norm_eps);
        if ((st = mm(m, &L->wq, s->xb, n, s->q, "q_proj", l))) return st;
        if ((st = mm(m, &L->wk, s->xb, n, s->k, "k_proj", l))) return st;
        if ((st = mm(m, &L->wv, s->xb, n, s->v, "v_proj", l))) return st;
        add_bias(s->q, L->bq, n, q_dim);
        add_bias(s->k, L->bk, n, kv_dim);
        add_bias(s->v, L->bv, n, kv_dim);
        if (w->qk_interleaved) {
            unpermute_rows(s->q, n, c->n_heads, hd, s->qk_perm, s->att_out);
            unpermute_rows(s->k, n, c->n_kv_heads, hd, s->qk_perm, s->att_out);
        }
        float *kc = s->key_cache + l * m->n_ctx * kv_dim;
        float *vc = s->value_cache + l * m->n_ctx * kv_dim;
        for (size_t t = 0; t < n; t++) {
            const size_t pos = pos0 + t;
            const float *cs = s->rope_cos + pos * half, *sn = s->rope_sin + pos * half;
            rope(s->q + t * q_dim, c->n_heads, hd, cs, sn);
            rope(s->k + t * kv_dim, c->n_kv_heads, hd, cs, sn);
            for (size_t i = 0; i < kv_dim; i++) /* keys transposed: (kv heads, hd, n_ctx) */
                kc[i * m->n_ctx + pos] = s->k[t * kv_dim + i];
            memcpy(vc + pos * kv_dim, s->v + t * kv_dim, kv_dim * sizeof(float));
        }
        attention(m, l, n, pos0, nth);
        if ((st = mm(m, &L->wo, s->att_out, n, s->xb2, "o_proj", l))) return st;
        add_bias(s->xb2, L->bo, n, dim);
        residual(s->x, s->xb2, n * dim);

        /* ---- MLP block (SwiGLU) ---- */
        rmsnorm(s->xb, s->x, L->ffn_norm, n, dim, c->norm_eps);
        if ((st = mm(m, &L->w_gate, s->xb, n, s->hb, "gate_proj", l))) return st;
        if ((st = mm(m, &L->w_up, s->xb, n, s->hb2, "up_proj", l))) return st;
        for (size_t i = 0; i < n * hid; i++) {
            float g = s->hb[i];
            s->hb[i] = g * (1.0f / (1.0f + expf(-g))) * s->hb2[i];
        }
        if ((st = mm(m, &L->w_down, s->hb, n, s->xb2, "down_proj", l))) return st;
        residual(s->x, s->xb2, n * dim);
    }

    if (!logits) return QT_OK;
    const size_t first = last_only ? n - 1 : 0, nl = n - first;
    rmsnorm(s->xb, s->x + first * dim, w->norm, nl, dim, c->norm_eps);
    return mm(m, &w->lm_head, s->xb, nl, logits, "lm_head", c->n_layers);
}

static qt_status eval(qt_model *m, const int32_t *tokens, size_t n, size_t pos0, float *logits,
                      bool last_only)
{
    m->errmsg[0] = 0;
    if (!tokens || n == 0)
        return qt_set_err(m->errmsg, QT_ERR_ARG, "eval: no tokens");
    if (pos0 > m->n_past)
        return qt_set_err(m->errmsg, QT_ERR_ARG,
                          "eval: position %zu leaves a gap after the %zu cached tokens", pos0,
                          m->n_past);
    if (n > m->n_ctx || pos0 > m->n_ctx - n)
        return qt_set_err(m->errmsg, QT_ERR_ARG,
                          "eval: positions %zu..%zu run past the context of %zu tokens", pos0,
                          pos0 + n - 1, m->n_ctx);
    for (size_t t = 0; t < n; t++)
        if (tokens[t] < 0 || (size_t)tokens[t] >= m->cfg.vocab_size)
            return qt_set_err(m->errmsg, QT_ERR_ARG,
                              "eval: token %d at %zu is outside the vocabulary (%zu)", tokens[t],
                              t, m->cfg.vocab_size);
    m->n_past = pos0;
    for (size_t t0 = 0; t0 < n; t0 += m->n_batch) {
        size_t nb = n - t0 < m->n_batch ? n - t0 : m->n_batch;
        bool last_chunk = t0 + nb == n;
        float *lg = NULL;
        if (logits && !last_only) lg = logits + t0 * m->cfg.vocab_size;
        else if (logits && last_chunk) lg = logits;
        qt_status st = forward_chunk(m, tokens + t0, nb, pos0 + t0, lg, last_only);
        if (st != QT_OK) return st;
        m->n_past = pos0 + t0 + nb;
    }
    return QT_OK;
}

qt_status qt_model_eval(qt_model *m, const int32_t *tokens, size_t n, size_t pos0, float *logits)
{
    return eval(m, tokens, n, pos0, logits, false);
}

qt_status qt_model_eval_last(qt_model *m, const int32_t *tokens, size_t n, size_t pos0,
                             float *logits)
{
    return eval(m, tokens, n, pos0, logits, true);
}

/* ============================================================================
 * Sampling
 * ========================================================================== */

int32_t qt_sample_argmax(const float *logits, size_t n)
{
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (logits[i] > logits[best] || (logits[best] != logits[best] && logits[i] == logits[i]))
            best = i;
    return (int32_t)best;
}

static uint64_t rng_next(uint64_t *s)
{
    if (*s == 0) *s = 0x9E3779B97F4A7C15ull;
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

int32_t qt_sample(const float *logits, size_t n, float temp, uint64_t *rng)
{
    if (!(temp > 0.0f) || !rng) return qt_sample_argmax(logits, n);
    const int32_t best = qt_sample_argmax(logits, n);
    const double mx = logits[best];
    double sum = 0.0;
    for (size_t i = 0; i < n; i++)
        if (logits[i] == logits[i]) sum += exp(((double)logits[i] - mx) / temp);
    double u = (double)(rng_next(rng) >> 11) / 9007199254740992.0 * sum, acc = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (logits[i] != logits[i]) continue;
        acc += exp(((double)logits[i] - mx) / temp);
        if (u < acc) return (int32_t)i;
    }
    return best;
}

/* ============================================================================
 * Benchmark
 * ========================================================================== */

/* What every token costs in the Linear layers and lm_head: the bytes of
 * weights a decoded token reads and the multiply-add flops (2 per weight). */
static void matmul_traffic(const qt_model *m, uint64_t *bytes, double *flops)
{
    *bytes = qt_qweight_stored_bytes(&m->w.lm_head);
    *flops = 2.0 * (double)m->w.lm_head.n_out * (double)m->w.lm_head.n_in;
    for (size_t l = 0; l < m->cfg.n_layers; l++) {
        const qt_layer_weights *L = &m->w.layers[l];
        const qt_qweight *ws[7] = {&L->wq,     &L->wk,   &L->wv,    &L->wo,
                                   &L->w_gate, &L->w_up, &L->w_down};
        for (int i = 0; i < 7; i++) {
            *bytes += qt_qweight_stored_bytes(ws[i]);
            *flops += 2.0 * (double)ws[i]->n_out * (double)ws[i]->n_in;
        }
    }
}

qt_status qt_model_bench(qt_model *m, size_t n_prompt, size_t n_gen, qt_model_bench_result *res)
{
    qt_status st = QT_OK;
    int32_t *toks = NULL;
    float *logits = NULL;
    const size_t V = m->cfg.vocab_size;
    if (!res || n_prompt == 0 || n_prompt + n_gen > m->n_ctx)
        return qt_set_err(m->errmsg, QT_ERR_ARG, "bench: %zu + %zu tokens do not fit the context %zu",
                          n_prompt, n_gen, m->n_ctx);
    memset(res, 0, sizeof *res);
    toks = qt_malloc((n_prompt + n_gen) * sizeof *toks);
    size_t nl = m->n_batch < n_prompt ? m->n_batch : n_prompt;
    logits = qt_aligned_alloc(64, nl * V * sizeof(float));
    if (!toks || !logits) {
        st = qt_set_err(m->errmsg, QT_ERR_NOMEM, "bench: out of memory");
        goto out;
    }
    uint64_t rng = 0x2545F4914F6CDD1Dull;
    for (size_t i = 0; i < n_prompt + n_gen; i++) toks[i] = (int32_t)(rng_next(&rng) % V);
    qt_model_reset(m);
    double t0 = qt_now();
    for (size_t p = 0; p < n_prompt; p += nl) {
        size_t nb = n_prompt - p < nl ? n_prompt - p : nl;
        if ((st = qt_model_eval(m, toks + p, nb, p, logits)) != QT_OK) goto out;
    }
    double t1 = qt_now();
    for (size_t i = 0; i < n_gen; i++)
        if ((st = qt_model_eval_last(m, toks + n_prompt + i, 1, n_prompt + i, logits)) != QT_OK)
            goto out;
    double t2 = qt_now();
    res->n_prompt = n_prompt;
    res->n_gen = n_gen;
    res->pp_seconds = t1 - t0;
    res->tg_seconds = t2 - t1;
    res->pp_tok_s = t1 > t0 ? (double)n_prompt / (t1 - t0) : 0.0;
    res->tg_tok_s = t2 > t1 ? (double)n_gen / (t2 - t1) : 0.0;
    matmul_traffic(m, &res->weight_bytes_per_token, &res->matmul_flops_per_token);
out:
    qt_model_reset(m);
    qt_free(toks);
    qt_aligned_free(logits);
    return st;
}
