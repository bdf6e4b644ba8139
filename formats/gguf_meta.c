/* formats/gguf_meta.c: config.json -> GGUF hyperparameter keys, HF -> GGUF
 * tensor names, the Q/K row permutation, Llama 3 rope_freqs
 * (specs/gguf-export.md §2, §3, §5). Tokenizer keys: gguf_vocab.c. */
#include "formats/gguf_meta.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define CFG "config.json"

/* ---- config.json ------------------------------------------------------------ */

/* A required positive integer key that fits a u32. */
static qt_status cfg_u32(const qt_modeldir *md, const char *key, bool required, uint32_t *out,
                         bool *found, char *errmsg)
{
    int64_t v;
    qt_status st = qt_modeldir_config_int(md, key, &v);
    if (found) *found = st == QT_OK;
    if (st == QT_ERR_ARG && !required) return QT_OK;
    if (st == QT_ERR_ARG)
        return qt_set_err(errmsg, QT_ERR_FORMAT, "%s: key '%s' is missing (GGUF needs it)", CFG,
                          key);
    if (st != QT_OK || v <= 0 || v > UINT32_MAX)
        return qt_set_err(errmsg, QT_ERR_FORMAT, "%s: key '%s' is not a positive 32-bit integer",
                          CFG, key);
    *out = (uint32_t)v;
    return QT_OK;
}

/* A float key, dflt when absent; *found tells whether it was there. */
static qt_status cfg_f32(const qt_modeldir *md, const char *key, float dflt, float *out,
                         bool *found, char *errmsg)
{
    double v;
    qt_status st = qt_modeldir_config_float(md, key, &v);
    if (found) *found = st == QT_OK;
    if (st == QT_ERR_ARG) {
        *out = dflt;
        return QT_OK;
    }
    if (st != QT_OK || !isfinite(v) || v <= 0)
        return qt_set_err(errmsg, QT_ERR_FORMAT, "%s: key '%s' is not a positive number", CFG,
                          key);
    *out = (float)v;
    return QT_OK;
}

/* architectures[0] -> GGUF architecture. */
static qt_status read_arch(const qt_modeldir *md, qt_gguf_hparams *hp, char *errmsg)
{
    const char *a = NULL;
    if (qt_modeldir_config_str(md, "architectures.0", &a) != QT_OK)
        return qt_set_err(errmsg, QT_ERR_UNSUPPORTED, "%s: key 'architectures' is missing: GGUF "
                          "export needs LlamaForCausalLM, MistralForCausalLM or Qwen2ForCausalLM",
                          CFG);
    if (strcmp(a, "LlamaForCausalLM") == 0 || strcmp(a, "MistralForCausalLM") == 0) {
        hp->arch = "llama";
        hp->permute_qk = true;
    } else if (strcmp(a, "Qwen2ForCausalLM") == 0) {
        hp->arch = "qwen2";
        hp->permute_qk = false;
    } else {
        return qt_set_err(errmsg, QT_ERR_UNSUPPORTED, "%s: architectures[0] '%.64s' is not "
                          "supported by GGUF export (LlamaForCausalLM, MistralForCausalLM, "
                          "Qwen2ForCausalLM)", CFG, a);
    }
    return QT_OK;
}

/* rope_scaling (§2.2): linear; llama3 (llama only); yarn (qwen2 only). */
static qt_status read_rope(const qt_modeldir *md, qt_gguf_hparams *hp, char *errmsg)
{
    const char *type = NULL;
    hp->rope = QT_GGUF_ROPE_NONE;
    if (!qt_modeldir_config_has(md, "rope_scaling")) return QT_OK;
    if (qt_modeldir_config_str(md, "rope_scaling.rope_type", &type) != QT_OK &&
        qt_modeldir_config_str(md, "rope_scaling.type", &type) != QT_OK)
        return qt_set_err(errmsg, QT_ERR_UNSUPPORTED, "%s: key 'rope_scaling' has no type or "
                          "rope_type: llama.cpp cannot express it", CFG);
    bool is_llama = strcmp(hp->arch, "llama") == 0;
    qt_status st = QT_OK;
    uint32_t orig = 8192;
    if (strcmp(type, "linear") == 0) {
        hp->rope = QT_GGUF_ROPE_LINEAR;
        st = cfg_f32(md, "rope_scaling.factor", 1.0f, &hp->rope_factor, NULL, errmsg);
    } else if (strcmp(type, "llama3") == 0 && is_llama) {
        hp->rope = QT_GGUF_ROPE_LLAMA3;
        if (st == QT_OK) st = cfg_f32(md, "rope_scaling.factor", 8.0f, &hp->rope_factor, NULL, errmsg);
        if (st == QT_OK)
            st = cfg_f32(md, "rope_scaling.low_freq_factor", 1.0f, &hp->rope_low, NULL, errmsg);
        if (st == QT_OK)
            st = cfg_f32(md, "rope_scaling.high_freq_factor", 4.0f, &hp->rope_high, NULL, errmsg);
        if (st == QT_OK)
            st = cfg_u32(md, "rope_scaling.original_max_position_embeddings", false, &orig, NULL,
                         errmsg);
        if (st == QT_OK && !(hp->rope_high > hp->rope_low))
            st = qt_set_err(errmsg, QT_ERR_FORMAT, "%s: rope_scaling high_freq_factor must exceed "
                            "low_freq_factor", CFG);
    } else if (strcmp(type, "yarn") == 0 && !is_llama) {
        hp->rope = QT_GGUF_ROPE_YARN;
        st = cfg_f32(md, "rope_scaling.factor", 1.0f, &hp->rope_factor, NULL, errmsg);
        if (st == QT_OK)
            st = cfg_u32(md, "rope_scaling.original_max_position_embeddings", true, &orig, NULL,
                         errmsg);
    } else {
        return qt_set_err(errmsg, QT_ERR_UNSUPPORTED, "%s: key 'rope_scaling.type' = '%.32s' "
                          "cannot be expressed in a GGUF for llama.cpp's '%s' architecture "
                          "(linear, %s)", CFG, type, hp->arch, is_llama ? "llama3" : "yarn");
    }
    hp->rope_orig_ctx = orig;
    return st;
}

qt_status qt_gguf_hparams_read(const qt_modeldir *md, qt_gguf_hparams *hp, char *errmsg)
{
    qt_status st = QT_OK;
    memset(hp, 0, sizeof *hp);
    QT_CHECK(qt_modeldir_has_config(md), QT_ERR_FORMAT, "%s: no config.json (GGUF export needs "
             "the model's hyperparameters)", qt_modeldir_path(md));
    QT_TRY(read_arch(md, hp, errmsg));
    QT_TRY(cfg_u32(md, "num_hidden_layers", true, &hp->n_layers, NULL, errmsg));
    QT_TRY(cfg_u32(md, "hidden_size", true, &hp->hidden, NULL, errmsg));
    QT_TRY(cfg_u32(md, "intermediate_size", true, &hp->ff, NULL, errmsg));
    QT_TRY(cfg_u32(md, "num_attention_heads", true, &hp->n_head, NULL, errmsg));
    QT_TRY(cfg_u32(md, "max_position_embeddings", true, &hp->ctx, NULL, errmsg));
    hp->n_kv_head = hp->n_head;
    QT_TRY(cfg_u32(md, "num_key_value_heads", false, &hp->n_kv_head, &hp->has_n_kv, errmsg));
    QT_CHECK(hp->hidden % hp->n_head == 0, QT_ERR_UNSUPPORTED, "%s: key 'hidden_size' %u is not a "
             "multiple of num_attention_heads %u", CFG, hp->hidden, hp->n_head);
    hp->head_dim = hp->hidden / hp->n_head;
    QT_TRY(cfg_u32(md, "head_dim", false, &hp->head_dim, &hp->has_head_dim, errmsg));
    QT_CHECK(hp->head_dim % 2 == 0, QT_ERR_UNSUPPORTED, "%s: key 'head_dim' %u is odd (RoPE "
             "rotates pairs)", CFG, hp->head_dim);
    QT_CHECK(hp->n_head % hp->n_kv_head == 0, QT_ERR_UNSUPPORTED, "%s: key "
             "'num_key_value_heads' %u does not divide num_attention_heads %u", CFG,
             hp->n_kv_head, hp->n_head);
    QT_TRY(cfg_u32(md, "vocab_size", false, &hp->vocab, &hp->has_vocab, errmsg));
    bool found;
    QT_TRY(cfg_f32(md, "rms_norm_eps", 0, &hp->eps, &found, errmsg));
    QT_CHECK(found, QT_ERR_FORMAT, "%s: key 'rms_norm_eps' is missing (llama.cpp requires "
             "layer_norm_rms_epsilon)", CFG);
    QT_TRY(cfg_f32(md, "rope_theta", 10000.0f, &hp->theta, &hp->has_theta, errmsg));
    hp->tied = false;
    if (qt_modeldir_config_bool(md, "tie_word_embeddings", &hp->tied) == QT_ERR_FORMAT)
        QT_CHECK(0, QT_ERR_FORMAT, "%s: key 'tie_word_embeddings' is not a boolean", CFG);
    QT_TRY(read_rope(md, hp, errmsg));
    return QT_OK;
fail:
    return st;
}

/* ---- hyperparameter keys (§2) ------------------------------------------------- */

/* "<arch>.<suffix>" into buf. */
static const char *akey(char *buf, size_t n, const qt_gguf_hparams *hp, const char *suffix)
{
    snprintf(buf, n, "%s.%s", hp->arch, suffix);
    return buf;
}

/* The rope scaling keys of §2.2 (llama3 writes a tensor instead). */
static qt_status write_rope(qt_gguf_writer *w, const qt_gguf_hparams *hp)
{
    char k[96];
    qt_status st = QT_OK;
    if (hp->rope == QT_GGUF_ROPE_LINEAR || hp->rope == QT_GGUF_ROPE_YARN) {
        const char *t = hp->rope == QT_GGUF_ROPE_LINEAR ? "linear" : "yarn";
        QT_TRY(qt_gguf_writer_add_str(w, akey(k, sizeof k, hp, "rope.scaling.type"), t, strlen(t)));
        QT_TRY(qt_gguf_writer_add_f32(w, akey(k, sizeof k, hp, "rope.scaling.factor"),
                                      hp->rope_factor));
    }
    if (hp->rope == QT_GGUF_ROPE_YARN)
        QT_TRY(qt_gguf_writer_add_u32(w, akey(k, sizeof k, hp,
                                              "rope.scaling.original_context_length"),
                                      hp->rope_orig_ctx));
fail:
    return st;
}

qt_status qt_gguf_hparams_write(qt_gguf_writer *w, const qt_gguf_hparams *hp, const char *name,
                                uint32_t ftype, bool quantized)
{
    qt_status st = QT_OK;
    char k[96];
    bool llama = strcmp(hp->arch, "llama") == 0;
    /* general.* first: architecture, type, name */
    QT_TRY(qt_gguf_writer_add_str(w, "general.architecture", hp->arch, strlen(hp->arch)));
    QT_TRY(qt_gguf_writer_add_str(w, "general.type", "model", 5));
    QT_TRY(qt_gguf_writer_add_str(w, "general.name", name, strlen(name)));
    QT_TRY(qt_gguf_writer_add_str(w, "general.quantized_by", "qtool " QT_VERSION_STRING,
                                  strlen("qtool " QT_VERSION_STRING)));
    /* the architecture's shape: every count UINT32, epsilons FLOAT32 */
    QT_TRY(qt_gguf_writer_add_u32(w, akey(k, sizeof k, hp, "block_count"), hp->n_layers));
    QT_TRY(qt_gguf_writer_add_u32(w, akey(k, sizeof k, hp, "context_length"), hp->ctx));
    QT_TRY(qt_gguf_writer_add_u32(w, akey(k, sizeof k, hp, "embedding_length"), hp->hidden));
    QT_TRY(qt_gguf_writer_add_u32(w, akey(k, sizeof k, hp, "feed_forward_length"), hp->ff));
    QT_TRY(qt_gguf_writer_add_u32(w, akey(k, sizeof k, hp, "attention.head_count"), hp->n_head));
    if (hp->has_n_kv)
        QT_TRY(qt_gguf_writer_add_u32(w, akey(k, sizeof k, hp, "attention.head_count_kv"),
                                      hp->n_kv_head));
    if (hp->has_theta)
        QT_TRY(qt_gguf_writer_add_f32(w, akey(k, sizeof k, hp, "rope.freq_base"), hp->theta));
    QT_TRY(qt_gguf_writer_add_f32(w, akey(k, sizeof k, hp, "attention.layer_norm_rms_epsilon"),
                                  hp->eps));
    if (hp->has_head_dim) {
        QT_TRY(qt_gguf_writer_add_u32(w, akey(k, sizeof k, hp, "attention.key_length"),
                                      hp->head_dim));
        QT_TRY(qt_gguf_writer_add_u32(w, akey(k, sizeof k, hp, "attention.value_length"),
                                      hp->head_dim));
    }
    QT_TRY(qt_gguf_writer_add_u32(w, "general.file_type", ftype));
    if (llama && hp->has_vocab)
        QT_TRY(qt_gguf_writer_add_u32(w, "llama.vocab_size", hp->vocab));
    if (llama) QT_TRY(qt_gguf_writer_add_u32(w, "llama.rope.dimension_count", hp->head_dim));
    QT_TRY(write_rope(w, hp));
    if (quantized) QT_TRY(qt_gguf_writer_add_u32(w, "general.quantization_version", 2));
fail:
    return st;
}

/* ---- tensor names (§3) ---------------------------------------------------------- */

typedef struct role_row {
    const char *hf;   /* suffix after "model.layers.N." or the full name */
    const char *gguf; /* GGUF name (after "blk.N.") */
    qt_gguf_role role;
} role_row;

static const role_row top_rows[] = {
    {"model.embed_tokens.weight", "token_embd.weight", QT_GGUF_ROLE_TOKEN_EMBD},
    {"model.norm.weight", "output_norm.weight", QT_GGUF_ROLE_OUTPUT_NORM},
    {"lm_head.weight", "output.weight", QT_GGUF_ROLE_OUTPUT},
};

static const role_row block_rows[] = {
    {"input_layernorm.weight", "attn_norm.weight", QT_GGUF_ROLE_ATTN_NORM},
    {"self_attn.q_proj.weight", "attn_q.weight", QT_GGUF_ROLE_ATTN_Q},
    {"self_attn.k_proj.weight", "attn_k.weight", QT_GGUF_ROLE_ATTN_K},
    {"self_attn.v_proj.weight", "attn_v.weight", QT_GGUF_ROLE_ATTN_V},
    {"self_attn.o_proj.weight", "attn_output.weight", QT_GGUF_ROLE_ATTN_OUTPUT},
    {"post_attention_layernorm.weight", "ffn_norm.weight", QT_GGUF_ROLE_FFN_NORM},
    {"mlp.gate_proj.weight", "ffn_gate.weight", QT_GGUF_ROLE_FFN_GATE},
    {"mlp.up_proj.weight", "ffn_up.weight", QT_GGUF_ROLE_FFN_UP},
    {"mlp.down_proj.weight", "ffn_down.weight", QT_GGUF_ROLE_FFN_DOWN},
    {"self_attn.q_proj.bias", "attn_q.bias", QT_GGUF_ROLE_ATTN_Q_BIAS},
    {"self_attn.k_proj.bias", "attn_k.bias", QT_GGUF_ROLE_ATTN_K_BIAS},
    {"self_attn.v_proj.bias", "attn_v.bias", QT_GGUF_ROLE_ATTN_V_BIAS},
};

static const char *const role_names[QT_GGUF_ROLE_COUNT] = {
    "token_embd", "output", "output_norm", "rope_freqs", "attn_norm", "attn_q", "attn_k",
    "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down", "attn_q.bias",
    "attn_k.bias", "attn_v.bias",
};

const char *qt_gguf_role_name(qt_gguf_role role)
{
    return (unsigned)role < QT_GGUF_ROLE_COUNT ? role_names[role] : "?";
}

int qt_gguf_role_order(qt_gguf_role role)
{
    /* rope_freqs, token_embd, block tensors by role, output_norm, output */
    static const int order[QT_GGUF_ROLE_COUNT] = {
        [QT_GGUF_ROLE_ROPE_FREQS] = 0, [QT_GGUF_ROLE_TOKEN_EMBD] = 1,
        [QT_GGUF_ROLE_ATTN_NORM] = 10, [QT_GGUF_ROLE_ATTN_Q] = 11,
        [QT_GGUF_ROLE_ATTN_Q_BIAS] = 12, [QT_GGUF_ROLE_ATTN_K] = 13,
        [QT_GGUF_ROLE_ATTN_K_BIAS] = 14, [QT_GGUF_ROLE_ATTN_V] = 15,
        [QT_GGUF_ROLE_ATTN_V_BIAS] = 16, [QT_GGUF_ROLE_ATTN_OUTPUT] = 17,
        [QT_GGUF_ROLE_FFN_NORM] = 18, [QT_GGUF_ROLE_FFN_GATE] = 19,
        [QT_GGUF_ROLE_FFN_UP] = 20, [QT_GGUF_ROLE_FFN_DOWN] = 21,
        [QT_GGUF_ROLE_OUTPUT_NORM] = 90, [QT_GGUF_ROLE_OUTPUT] = 91,
    };
    return (unsigned)role < QT_GGUF_ROLE_COUNT ? order[role] : 99;
}

/* Names the converter drops (§3). */
static bool is_skipped(const char *hf)
{
    static const char *const sfx[] = {".rotary_emb.inv_freq", ".attention.masked_bias",
                                      ".attention.bias"};
    size_t n = strlen(hf);
    for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++) {
        size_t m = strlen(sfx[i]);
        if (n >= m && strcmp(hf + n - m, sfx[i]) == 0) return true;
    }
    return false;
}

/* Rows of the Q/K permutation: heads for q (n_head) and k (n_kv_head). */
static uint32_t perm_heads(const qt_gguf_hparams *hp, qt_gguf_role r)
{
    if (!hp->permute_qk) return 0;
    if (r == QT_GGUF_ROLE_ATTN_Q || r == QT_GGUF_ROLE_ATTN_Q_BIAS) return hp->n_head;
    if (r == QT_GGUF_ROLE_ATTN_K || r == QT_GGUF_ROLE_ATTN_K_BIAS) return hp->n_kv_head;
    return 0;
}

qt_status qt_gguf_tensor_map(const qt_gguf_hparams *hp, const char *hf, qt_gguf_tmap *out,
                             char *errmsg)
{
    memset(out, 0, sizeof *out);
    out->layer = -1;
    if (is_skipped(hf)) {
        out->skip = true;
        return QT_OK;
    }
    for (size_t i = 0; i < sizeof top_rows / sizeof top_rows[0]; i++)
        if (strcmp(hf, top_rows[i].hf) == 0) {
            snprintf(out->name, sizeof out->name, "%s", top_rows[i].gguf);
            out->role = top_rows[i].role;
            return QT_OK;
        }
    unsigned layer;
    int used = 0;
    if (sscanf(hf, "model.layers.%u.%n", &layer, &used) == 1 && used > 0 &&
        layer < hp->n_layers) {
        for (size_t i = 0; i < sizeof block_rows / sizeof block_rows[0]; i++) {
            if (strcmp(hf + used, block_rows[i].hf) != 0) continue;
            snprintf(out->name, sizeof out->name, "blk.%u.%s", layer, block_rows[i].gguf);
            out->role = block_rows[i].role;
            out->layer = (int32_t)layer;
            out->permute_heads = perm_heads(hp, out->role);
            return QT_OK;
        }
    }
    return qt_set_err(errmsg, QT_ERR_UNSUPPORTED, "tensor '%.120s': cannot map it to a GGUF name "
                      "for llama.cpp's '%s' architecture", hf, hp->arch);
}

/* ---- Q/K permutation (§5) and rope_freqs (§2.2) ------------------------------------- */

size_t qt_gguf_qk_dst_row(size_t r, size_t rows, size_t n_head)
{
    size_t hd = rows / n_head, half = hd / 2;
    size_t h = r / hd, j = r % hd, s = j / half, i = j % half;
    return h * hd + 2 * i + s;
}

void qt_gguf_llama3_rope_freqs(const qt_gguf_hparams *hp, float *out)
{
    const double pi = 3.14159265358979323846;
    double base = hp->theta, dim = hp->head_dim, factor = hp->rope_factor;
    double lo = hp->rope_low, hi = hp->rope_high, old_ctx = hp->rope_orig_ctx;
    double lo_wavelen = old_ctx / lo, hi_wavelen = old_ctx / hi;
    for (size_t i = 0; i < hp->head_dim / 2; i++) {
        double freq = 1.0 / pow(base, (double)(2 * i) / dim);
        double wavelen = 2 * pi / freq;
        double v;
        if (wavelen < hi_wavelen) {
            v = 1.0; /* high frequencies: unscaled */
        } else if (wavelen > lo_wavelen) {
            v = factor; /* low frequencies: scaled by the whole factor */
        } else {
            double smooth = (old_ctx / wavelen - lo) / (hi - lo);
            v = 1.0 / ((1 - smooth) / factor + smooth);
        }
        out[i] = (float)v;
    }
}
