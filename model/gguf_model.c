/* model/gguf_model.c: a Llama model from a GGUF file (general.architecture
 * "llama", as llama.cpp's converter writes it): hyperparameters from the
 * llama.* keys, weights as quant/ descriptors over the mapped tensors
 * (F32, F16, BF16, Q8_0 = qtool q8 at block 32), and its SentencePiece
 * vocabulary. llama.cpp stores the rows of attn_q / attn_k in the
 * interleaved-pair RoPE order; the forward pass permutes the outputs of
 * those two matmuls back to the Hugging Face rotate-half order, so the
 * logits match the safetensors copy without copying any weight. */
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model/model_internal.h"

/* ============================================================================
 * Metadata
 * ========================================================================== */

/* An unsigned integer key of any integer type; *found false when absent. */
static qt_status get_uint(const qt_gguf *g, const char *key, uint64_t *out, bool *found,
                          char *errmsg)
{
    int64_t i = qt_gguf_find_key(g, key);
    *found = i >= 0;
    if (i < 0) return QT_OK;
    qt_status st = QT_ERR_FORMAT;
    switch (qt_gguf_kv_type(g, (size_t)i)) {
    case QT_GGUF_TYPE_UINT8: { uint8_t v; st = qt_gguf_get_u8(g, (size_t)i, &v, errmsg); *out = v; break; }
    case QT_GGUF_TYPE_UINT16: { uint16_t v; st = qt_gguf_get_u16(g, (size_t)i, &v, errmsg); *out = v; break; }
    case QT_GGUF_TYPE_UINT32: { uint32_t v; st = qt_gguf_get_u32(g, (size_t)i, &v, errmsg); *out = v; break; }
    case QT_GGUF_TYPE_UINT64: st = qt_gguf_get_u64(g, (size_t)i, out, errmsg); break;
    case QT_GGUF_TYPE_INT32: {
        int32_t v;
        st = qt_gguf_get_i32(g, (size_t)i, &v, errmsg);
        if (st == QT_OK && v < 0) st = QT_ERR_FORMAT;
        *out = (uint64_t)v;
        break;
    }
    case QT_GGUF_TYPE_INT64: {
        int64_t v;
        st = qt_gguf_get_i64(g, (size_t)i, &v, errmsg);
        if (st == QT_OK && v < 0) st = QT_ERR_FORMAT;
        *out = (uint64_t)v;
        break;
    }
    default: break;
    }
    if (st != QT_OK)
        return qt_set_err(errmsg, QT_ERR_FORMAT, "%s: key '%s' is not a non-negative integer",
                          qt_gguf_name(g), key);
    return QT_OK;
}

static qt_status get_size(const qt_gguf *g, const char *key, bool required, size_t dflt,
                          size_t *out, char *errmsg)
{
    uint64_t v = 0;
    bool found;
    qt_status st = get_uint(g, key, &v, &found, errmsg);
    if (st != QT_OK) return st;
    if (!found) {
        if (required)
            return qt_set_err(errmsg, QT_ERR_FORMAT, "%s: key '%s' is missing", qt_gguf_name(g),
                              key);
        *out = dflt;
        return QT_OK;
    }
    if (v == 0 || v > ((uint64_t)1 << 40))
        return qt_set_err(errmsg, QT_ERR_FORMAT, "%s: key '%s' = %llu is out of range",
                          qt_gguf_name(g), key, (unsigned long long)v);
    *out = (size_t)v;
    return QT_OK;
}

/* A float32 (or float64) key; dflt when absent. */
static qt_status get_float(const qt_gguf *g, const char *key, double dflt, double *out,
                           char *errmsg)
{
    int64_t i = qt_gguf_find_key(g, key);
    *out = dflt;
    if (i < 0) return QT_OK;
    qt_gguf_type t = qt_gguf_kv_type(g, (size_t)i);
    if (t == QT_GGUF_TYPE_FLOAT32) {
        float f;
        qt_status st = qt_gguf_get_f32(g, (size_t)i, &f, errmsg);
        *out = f;
        return st;
    }
    if (t == QT_GGUF_TYPE_FLOAT64) return qt_gguf_get_f64(g, (size_t)i, out, errmsg);
    return qt_set_err(errmsg, QT_ERR_FORMAT, "%s: key '%s' is not a float", qt_gguf_name(g), key);
}

/* Whether string key equals want; *found false when absent. */
static qt_status str_is(const qt_gguf *g, const char *key, const char *want, bool *found,
                        bool *eq, char *errmsg)
{
    int64_t i = qt_gguf_find_key(g, key);
    *found = i >= 0;
    *eq = false;
    if (i < 0) return QT_OK;
    const char *s;
    size_t len;
    qt_status st = qt_gguf_get_str(g, (size_t)i, &s, &len, errmsg);
    if (st != QT_OK) return st;
    *eq = len == strlen(want) && !memcmp(s, want, len);
    return QT_OK;
}

/* ============================================================================
 * Tensors
 * ========================================================================== */

static const char *type_label(qt_ggml_type t)
{
    const char *n = qt_ggml_type_name(t);
    return n ? n : "?";
}

/* Matrix `name` of shape (n_out, n_in) (ne = {n_in, n_out}); n_out 0 = any
 * (returned through *rows). */
static qt_status gguf_mat(qt_model *m, const char *name, size_t n_out, size_t n_in,
                          qt_qweight *q, const char **label, char *errmsg)
{
    qt_status st = QT_OK;
    const qt_gguf *g = m->gguf;
    int64_t t = qt_gguf_find_tensor(g, name);
    QT_CHECK(t >= 0, QT_ERR_FORMAT, "%s: tensor '%s' is missing", qt_gguf_name(g), name);
    const int64_t *ne = qt_gguf_tensor_ne(g, (size_t)t);
    QT_CHECK(qt_gguf_tensor_n_dims(g, (size_t)t) == 2 && (uint64_t)ne[0] == n_in &&
                 (uint64_t)ne[1] == n_out,
             QT_ERR_FORMAT, "%s: tensor '%s': ne (%lld, %lld), expected (%zu, %zu)",
             qt_gguf_name(g), name, (long long)ne[0], (long long)ne[1], n_in, n_out);
    memset(q, 0, sizeof *q);
    q->n_out = n_out;
    q->n_in = n_in;
    q->data = qt_gguf_tensor_data(g, (size_t)t);
    qt_ggml_type ty = qt_gguf_tensor_type(g, (size_t)t);
    switch (ty) {
    case QT_GGML_TYPE_F32: q->scheme = QT_SCHEME_FP32; break;
    case QT_GGML_TYPE_F16: q->scheme = QT_SCHEME_FP16; break;
    case QT_GGML_TYPE_BF16: q->scheme = QT_SCHEME_BF16; break;
    case QT_GGML_TYPE_Q8_0:
        q->scheme = QT_SCHEME_Q8;
        q->block_size = 32;
        break;
    default:
        QT_CHECK(0, QT_ERR_UNSUPPORTED,
                 "%s: tensor '%s': ggml type %s is not supported (F32, F16, BF16, Q8_0)",
                 qt_gguf_name(g), name, type_label(ty));
    }
    QT_CHECK(qt_qweight_check(q) == QT_OK, QT_ERR_FORMAT, "%s: tensor '%s': inconsistent",
             qt_gguf_name(g), name);
    *label = type_label(ty);
    return QT_OK;
fail:
    return st;
}

/* fp32 copy of a 1-D tensor of n elements. */
static qt_status gguf_vec(qt_model *m, const char *name, size_t n, const float **out,
                          char *errmsg)
{
    qt_status st = QT_OK;
    const qt_gguf *g = m->gguf;
    int64_t t = qt_gguf_find_tensor(g, name);
    QT_CHECK(t >= 0, QT_ERR_FORMAT, "%s: tensor '%s' is missing", qt_gguf_name(g), name);
    QT_CHECK(qt_gguf_tensor_n_elements(g, (size_t)t) == (int64_t)n, QT_ERR_FORMAT,
             "%s: tensor '%s': %lld elements, expected %zu", qt_gguf_name(g), name,
             (long long)qt_gguf_tensor_n_elements(g, (size_t)t), n);
    float *v = qt_model_alloc_f32(m, n);
    QT_CHECK(v, QT_ERR_NOMEM, "out of memory");
    QT_TRY(qt_gguf_tensor_to_f32(g, (size_t)t, 0, n, v, errmsg));
    for (size_t i = 0; i < n; i++)
        QT_CHECK(isfinite(v[i]), QT_ERR_NUMERIC, "%s: tensor '%s': value %zu is not finite",
                 qt_gguf_name(g), name, i);
    *out = v;
    return QT_OK;
fail:
    return st;
}

/* ============================================================================
 * Open
 * ========================================================================== */

static qt_status read_gguf_config(qt_model *m, size_t *ctx, char *errmsg)
{
    qt_status st = QT_OK;
    const qt_gguf *g = m->gguf;
    qt_model_config *c = &m->cfg;
    bool found, eq;
    QT_TRY(str_is(g, "general.architecture", "llama", &found, &eq, errmsg));
    QT_CHECK(found && eq, QT_ERR_UNSUPPORTED,
             "%s: general.architecture is not 'llama' (the only GGUF architecture supported)",
             qt_gguf_name(g));
    snprintf(c->arch, sizeof c->arch, "gguf:llama");
    QT_TRY(get_size(g, "llama.embedding_length", true, 0, &c->dim, errmsg));
    QT_TRY(get_size(g, "llama.feed_forward_length", true, 0, &c->hidden_dim, errmsg));
    QT_TRY(get_size(g, "llama.block_count", true, 0, &c->n_layers, errmsg));
    QT_TRY(get_size(g, "llama.attention.head_count", true, 0, &c->n_heads, errmsg));
    QT_TRY(get_size(g, "llama.attention.head_count_kv", false, c->n_heads, &c->n_kv_heads,
                    errmsg));
    QT_CHECK(c->dim % c->n_heads == 0, QT_ERR_FORMAT, "%s: embedding_length %zu is not a "
             "multiple of %zu heads", qt_gguf_name(g), c->dim, c->n_heads);
    QT_TRY(get_size(g, "llama.attention.key_length", false, c->dim / c->n_heads, &c->head_dim,
                    errmsg));
    size_t rot;
    QT_TRY(get_size(g, "llama.rope.dimension_count", false, c->head_dim, &rot, errmsg));
    QT_CHECK(rot == c->head_dim, QT_ERR_UNSUPPORTED,
             "%s: partial rotary embedding (%zu of %zu dims) is not supported", qt_gguf_name(g),
             rot, c->head_dim);
    QT_TRY(get_size(g, "llama.context_length", false, 2048, &c->max_pos, errmsg));
    *ctx = c->max_pos;
    double eps, theta;
    QT_TRY(get_float(g, "llama.attention.layer_norm_rms_epsilon", 1e-5, &eps, errmsg));
    c->norm_eps = (float)eps;
    QT_TRY(get_float(g, "llama.rope.freq_base", 10000.0, &theta, errmsg));
    c->rope_theta = theta;
    QT_TRY(str_is(g, "llama.rope.scaling.type", "linear", &found, &eq, errmsg));
    if (found && eq) {
        c->rope_scaling = QT_ROPE_LINEAR;
        QT_TRY(get_float(g, "llama.rope.scaling.factor", 1.0, &c->rope_factor, errmsg));
        QT_CHECK(c->rope_factor > 0, QT_ERR_FORMAT, "%s: rope scaling factor not positive",
                 qt_gguf_name(g));
    } else if (found) {
        QT_TRY(str_is(g, "llama.rope.scaling.type", "none", &found, &eq, errmsg));
        QT_CHECK(eq, QT_ERR_UNSUPPORTED, "%s: llama.rope.scaling.type is not supported (none, "
                 "linear)", qt_gguf_name(g));
    }
    QT_CHECK(qt_gguf_find_tensor(g, "rope_freqs.weight") < 0, QT_ERR_UNSUPPORTED,
             "%s: tensor 'rope_freqs.weight' (Llama 3 rope scaling) is not supported",
             qt_gguf_name(g));
    uint64_t id;
    QT_TRY(get_uint(g, "tokenizer.ggml.bos_token_id", &id, &found, errmsg));
    if (found && id < INT32_MAX) c->bos_id = (int32_t)id;
    QT_TRY(get_uint(g, "tokenizer.ggml.eos_token_id", &id, &found, errmsg));
    if (found && id < INT32_MAX) c->eos_id = (int32_t)id;
    return QT_OK;
fail:
    return st;
}

static qt_status load_gguf_weights(qt_model *m, char *errmsg)
{
    qt_status st = QT_OK;
    const qt_gguf *g = m->gguf;
    qt_model_config *c = &m->cfg;
    qt_model_weights *w = &m->w;
    const size_t q_dim = c->n_heads * c->head_dim, kv_dim = c->n_kv_heads * c->head_dim;
    char name[QT_GGUF_MAX_NAME + 32];

    int64_t te = qt_gguf_find_tensor(g, "token_embd.weight");
    QT_CHECK(te >= 0, QT_ERR_FORMAT, "%s: tensor 'token_embd.weight' is missing", qt_gguf_name(g));
    const int64_t *ne = qt_gguf_tensor_ne(g, (size_t)te);
    c->vocab_size = (size_t)ne[1];
    QT_TRY(gguf_mat(m, "token_embd.weight", c->vocab_size, c->dim, &w->embed, &w->embed_label,
                    errmsg));
    if (qt_gguf_find_tensor(g, "output.weight") >= 0) {
        QT_TRY(gguf_mat(m, "output.weight", c->vocab_size, c->dim, &w->lm_head,
                        &w->lm_head_label, errmsg));
    } else {
        c->tied_embeddings = true;
        w->lm_head = w->embed;
        w->lm_head_label = w->embed_label;
    }
    QT_TRY(gguf_vec(m, "output_norm.weight", c->dim, &w->norm, errmsg));
    w->layers = qt_calloc(c->n_layers, sizeof *w->layers);
    QT_CHECK(w->layers, QT_ERR_NOMEM, "out of memory");
    for (size_t l = 0; l < c->n_layers; l++) {
        qt_layer_weights *L = &w->layers[l];
#define BNAME(suffix) (snprintf(name, sizeof name, "blk.%zu.%s", l, suffix), name)
        QT_TRY(gguf_vec(m, BNAME("attn_norm.weight"), c->dim, &L->attn_norm, errmsg));
        QT_TRY(gguf_vec(m, BNAME("ffn_norm.weight"), c->dim, &L->ffn_norm, errmsg));
        /* the seven projections, names and shapes from the Llama table */
        qt_qweight *proj[QT_PROJ_COUNT] = {&L->wq, &L->wk, &L->wv, &L->wo,
                                           &L->w_gate, &L->w_up, &L->w_down};
        for (int p = 0; p < QT_PROJ_COUNT; p++) {
            size_t rows, cols;
            char tn[64];
            qt_proj_shape((qt_proj)p, c->dim, q_dim, kv_dim, c->hidden_dim, &rows, &cols);
            snprintf(tn, sizeof tn, "%s.weight", qt_proj_gguf_name((qt_proj)p));
            QT_TRY(gguf_mat(m, BNAME(tn), rows, cols, proj[p], &L->label[p], errmsg));
        }
        QT_CHECK(qt_gguf_find_tensor(g, BNAME("attn_q.bias")) < 0 &&
                     qt_gguf_find_tensor(g, BNAME("ffn_gate_inp.weight")) < 0,
                 QT_ERR_UNSUPPORTED, "%s: tensor '%s' is not supported (biases, experts)",
                 qt_gguf_name(g), name);
#undef BNAME
    }
    /* HF row i of a head <- stored row perm[i]: HF keeps the first halves of
     * the rotation pairs in rows [0, hd/2), GGUF interleaves (2j, 2j+1) */
    const size_t hd = c->head_dim;
    m->s.qk_perm = qt_malloc(hd * sizeof *m->s.qk_perm);
    QT_CHECK(m->s.qk_perm, QT_ERR_NOMEM, "out of memory");
    for (size_t r = 0; r < hd; r++) m->s.qk_perm[r] = (int32_t)qt_rope_stored_row(hd, r);
    w->qk_interleaved = true;
    return QT_OK;
fail:
    return st;
}

qt_status qt_model_open_gguf(const char *path, const qt_model_opts *opts, qt_model **out,
                             char *errmsg)
{
    qt_status st = QT_OK;
    qt_model *m = NULL;
    if (out) *out = NULL;
    QT_CHECK(path && out, QT_ERR_ARG, "qt_model_open_gguf: NULL argument");
    m = qt_model_new_empty();
    QT_CHECK(m, QT_ERR_NOMEM, "out of memory");
    QT_TRY(qt_gguf_open(path, &m->gguf, NULL, errmsg));
    size_t ctx = 0;
    QT_TRY(read_gguf_config(m, &ctx, errmsg));
    QT_TRY(load_gguf_weights(m, errmsg));
    QT_TRY(qt_model_setup(m, opts, ctx < 4096 ? ctx : 4096, errmsg));
    *out = m;
    return QT_OK;
fail:
    qt_model_free(m);
    return st;
}

/* ============================================================================
 * Vocabulary
 * ========================================================================== */

qt_status qt_model_gguf_vocab(const char *path, qt_vocab **out, char *errmsg)
{
    qt_status st = QT_OK;
    qt_gguf *g = NULL;
    qt_vocab *v = NULL;
    if (out) *out = NULL;
    QT_CHECK(path && out, QT_ERR_ARG, "qt_model_gguf_vocab: NULL argument");
    QT_TRY(qt_gguf_open(path, &g, NULL, errmsg));
    bool found, eq;
    QT_TRY(str_is(g, "tokenizer.ggml.model", "llama", &found, &eq, errmsg));
    QT_CHECK(found, QT_ERR_UNSUPPORTED, "%s: no vocabulary (tokenizer.ggml.model)", path);
    QT_CHECK(eq, QT_ERR_UNSUPPORTED,
             "%s: tokenizer.ggml.model is not 'llama' (SentencePiece), the only one supported",
             path);
    int64_t ki = qt_gguf_find_key(g, "tokenizer.ggml.tokens");
    int64_t ks = qt_gguf_find_key(g, "tokenizer.ggml.scores");
    int64_t kt = qt_gguf_find_key(g, "tokenizer.ggml.token_type");
    QT_CHECK(ki >= 0, QT_ERR_FORMAT, "%s: tokenizer.ggml.tokens is missing", path);
    qt_gguf_type et;
    size_t n = 0, n2 = 0;
    QT_TRY(qt_gguf_get_arr_info(g, (size_t)ki, &et, &n, errmsg));
    QT_CHECK(et == QT_GGUF_TYPE_STRING && n > 0 && n <= QT_VOCAB_MAX_TOKENS, QT_ERR_FORMAT,
             "%s: tokenizer.ggml.tokens is not a non-empty string array", path);
    if (ks >= 0) {
        QT_TRY(qt_gguf_get_arr_info(g, (size_t)ks, &et, &n2, errmsg));
        QT_CHECK(et == QT_GGUF_TYPE_FLOAT32 && n2 == n, QT_ERR_FORMAT,
                 "%s: tokenizer.ggml.scores: not %zu float32", path, n);
    }
    if (kt >= 0) {
        QT_TRY(qt_gguf_get_arr_info(g, (size_t)kt, &et, &n2, errmsg));
        QT_CHECK(et == QT_GGUF_TYPE_INT32 && n2 == n, QT_ERR_FORMAT,
                 "%s: tokenizer.ggml.token_type: not %zu int32", path, n);
    }
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        QT_TRY(qt_gguf_get_arr_str(g, (size_t)ki, i, &s, &len, errmsg));
        QT_CHECK(len <= QT_VOCAB_MAX_TOKEN_BYTES && memchr(s, 0, len) == NULL, QT_ERR_FORMAT,
                 "%s: token %zu is too long or holds a NUL byte", path, i);
        total += len + 1;
    }
    v = qt_calloc(1, sizeof *v);
    QT_CHECK(v, QT_ERR_NOMEM, "out of memory");
    v->tokens = qt_calloc(n, sizeof *v->tokens);
    v->arena = qt_malloc(total);
    QT_CHECK(v->tokens && v->arena, QT_ERR_NOMEM, "out of memory for the vocabulary");
    v->kind = QT_VOCAB_SPM;
    v->pretok = QT_PRETOK_NONE;
    v->n_tokens = n;
    v->bos_id = v->eos_id = v->unk_id = -1;
    char *p = v->arena;
    bool has_bytes = false;
    for (size_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        QT_TRY(qt_gguf_get_arr_str(g, (size_t)ki, i, &s, &len, errmsg));
        memcpy(p, s, len);
        p[len] = 0;
        qt_vocab_token *t = &v->tokens[i];
        t->text = p;
        t->len = (uint32_t)len;
        p += len + 1;
        if (ks >= 0) QT_TRY(qt_gguf_get_arr_f32(g, (size_t)ks, i, &t->score, errmsg));
        int32_t ty = QT_TOKEN_NORMAL;
        if (kt >= 0) QT_TRY(qt_gguf_get_arr_i32(g, (size_t)kt, i, &ty, errmsg));
        QT_CHECK(ty >= QT_TOKEN_NORMAL && ty <= QT_TOKEN_BYTE, QT_ERR_FORMAT,
                 "%s: token %zu has type %d", path, i, (int)ty);
        t->type = (uint8_t)ty;
        t->added = ty == QT_TOKEN_USER_DEFINED;
        if (ty == QT_TOKEN_BYTE) has_bytes = true;
        if (ty == QT_TOKEN_UNKNOWN && v->unk_id < 0) v->unk_id = (int32_t)i;
    }
    static const char *const ids[] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                                      "tokenizer.ggml.unknown_token_id"};
    int32_t *dst[] = {&v->bos_id, &v->eos_id, &v->unk_id};
    for (size_t j = 0; j < 3; j++) {
        uint64_t id;
        QT_TRY(get_uint(g, ids[j], &id, &found, errmsg));
        if (found && id < n) *dst[j] = (int32_t)id;
    }
    bool b = true;
    int64_t kb = qt_gguf_find_key(g, "tokenizer.ggml.add_bos_token");
    if (kb >= 0) QT_TRY(qt_gguf_get_bool(g, (size_t)kb, &b, errmsg));
    v->add_bos = b;
    b = true;
    kb = qt_gguf_find_key(g, "tokenizer.ggml.add_space_prefix");
    if (kb >= 0) QT_TRY(qt_gguf_get_bool(g, (size_t)kb, &b, errmsg));
    v->add_dummy_prefix = b;
    v->byte_fallback = has_bytes;
    v->fuse_unk = false;
    qt_gguf_close(g);
    *out = v;
    return QT_OK;
fail:
    qt_vocab_free(v);
    qt_gguf_close(g);
    return st;
}
