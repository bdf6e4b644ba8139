/* convert/gguf_policy.c: which ggml type each GGUF tensor gets: the
 * --scheme table and llama-quantize's per-tensor policy for dense llama /
 * qwen2 models (rules carried over from llama.cpp src/llama-quant.cpp,
 * llama_tensor_get_type_impl / tensor_type_fallback at commit 007dbbf;
 * code written here). In llama-quantize the per-layer counters
 * (i_attention_wv, i_ffn_down) advance in the loader's order, which sorts
 * by block number first, so for a dense model they equal the block index. */
#include "convert/gguf_export.h"

#include <string.h>

/* llama_ftype values (llama.h). */
enum {
    FT_F32 = 0, FT_F16 = 1, FT_Q4_0 = 2, FT_Q4_1 = 3, FT_Q8_0 = 7, FT_Q5_0 = 8, FT_Q5_1 = 9,
    FT_Q2_K = 10, FT_Q3_K_M = 12, FT_Q4_K_M = 15, FT_Q5_K_M = 17, FT_Q6_K = 18, FT_BF16 = 32,
};

static const qt_gguf_scheme schemes[] = {
    {"f32", FT_F32, QT_GGML_TYPE_F32, false},
    {"f16", FT_F16, QT_GGML_TYPE_F16, false},
    {"bf16", FT_BF16, QT_GGML_TYPE_BF16, false},
    {"q8_0", FT_Q8_0, QT_GGML_TYPE_Q8_0, false},
    {"q4_0", FT_Q4_0, QT_GGML_TYPE_Q4_0, false},
    {"q4_1", FT_Q4_1, QT_GGML_TYPE_Q4_1, false},
    {"q5_0", FT_Q5_0, QT_GGML_TYPE_Q5_0, false},
    {"q5_1", FT_Q5_1, QT_GGML_TYPE_Q5_1, false},
    {"q2_k", FT_Q2_K, QT_GGML_TYPE_Q2_K, false},
    {"q3_k", FT_Q3_K_M, QT_GGML_TYPE_Q3_K, false},
    {"q4_k", FT_Q4_K_M, QT_GGML_TYPE_Q4_K, false},
    {"q5_k", FT_Q5_K_M, QT_GGML_TYPE_Q5_K, false},
    {"q6_k", FT_Q6_K, QT_GGML_TYPE_Q6_K, false},
    {"Q8_0", FT_Q8_0, QT_GGML_TYPE_Q8_0, true},
    {"Q4_0", FT_Q4_0, QT_GGML_TYPE_Q4_0, true},
    {"Q4_1", FT_Q4_1, QT_GGML_TYPE_Q4_1, true},
    {"Q5_0", FT_Q5_0, QT_GGML_TYPE_Q5_0, true},
    {"Q5_1", FT_Q5_1, QT_GGML_TYPE_Q5_1, true},
    {"Q2_K", FT_Q2_K, QT_GGML_TYPE_Q2_K, true},
    {"Q3_K_M", FT_Q3_K_M, QT_GGML_TYPE_Q3_K, true},
    {"Q4_K_M", FT_Q4_K_M, QT_GGML_TYPE_Q4_K, true},
    {"Q5_K_M", FT_Q5_K_M, QT_GGML_TYPE_Q5_K, true},
    {"Q6_K", FT_Q6_K, QT_GGML_TYPE_Q6_K, true},
};

const qt_gguf_scheme *qt_gguf_scheme_find(const char *name)
{
    for (size_t i = 0; name && i < sizeof schemes / sizeof schemes[0]; i++)
        if (strcmp(schemes[i].name, name) == 0) return &schemes[i];
    return NULL;
}

const char *qt_gguf_scheme_names(void)
{
    return "f32|f16|bf16|q8_0|q4_0|q4_1|q5_0|q5_1|q2_k|q3_k|q4_k|q5_k|q6_k|"
           "Q8_0|Q4_0|Q4_1|Q5_0|Q5_1|Q2_K|Q3_K_M|Q4_K_M|Q5_K_M|Q6_K";
}

static bool is_quantized(qt_ggml_type t)
{
    return t != QT_GGML_TYPE_F32 && t != QT_GGML_TYPE_F16 && t != QT_GGML_TYPE_BF16;
}

/* llama-quantize's use_more_bits: the first and last eighth, and every
 * third block in between. */
static bool use_more_bits(int i, int n)
{
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

/* The output matrix (or the tied embedding): Q6_K unless the scheme is
 * Q8_0 already; Q8_0 when the rows are not whole blocks of the default. */
static qt_ggml_type output_type(const qt_gguf_policy *p, int64_t ne0)
{
    qt_ggml_type t = p->scheme->type;
    if (ne0 % qt_ggml_blck_size(t) != 0) return QT_GGML_TYPE_Q8_0;
    return t == QT_GGML_TYPE_Q8_0 ? t : QT_GGML_TYPE_Q6_K;
}

/* attn_v (i_attention_wv == layer). */
static qt_ggml_type attn_v_type(const qt_gguf_policy *p, int layer, qt_ggml_type t)
{
    uint32_t ft = p->scheme->ftype;
    int n = (int)p->n_layers;
    if (ft == FT_Q2_K) t = p->n_gqa >= 4 ? QT_GGML_TYPE_Q4_K : QT_GGML_TYPE_Q3_K;
    else if (ft == FT_Q3_K_M) t = layer < 2 ? QT_GGML_TYPE_Q5_K : QT_GGML_TYPE_Q4_K;
    else if ((ft == FT_Q4_K_M || ft == FT_Q5_K_M) && use_more_bits(layer, n))
        t = QT_GGML_TYPE_Q6_K;
    /* 70B: attn_v is 8x smaller than attn_q; a few more bits cost little */
    if (p->is_70b && (t == QT_GGML_TYPE_Q3_K || t == QT_GGML_TYPE_Q4_K)) t = QT_GGML_TYPE_Q5_K;
    return t;
}

/* ffn_down (i_ffn_down == layer). */
static qt_ggml_type ffn_down_type(const qt_gguf_policy *p, int layer, qt_ggml_type t)
{
    uint32_t ft = p->scheme->ftype;
    int n = (int)p->n_layers;
    if (ft == FT_Q2_K) t = QT_GGML_TYPE_Q3_K;
    else if (ft == FT_Q3_K_M)
        t = layer < n / 16 ? QT_GGML_TYPE_Q5_K : QT_GGML_TYPE_Q4_K; /* non-Falcon */
    else if (ft == FT_Q4_K_M && use_more_bits(layer, n)) t = QT_GGML_TYPE_Q6_K;
    else if (ft == FT_Q5_K_M && use_more_bits(layer, n)) t = QT_GGML_TYPE_Q6_K;
    return t;
}

/* attn_output: more bits for the low-bit mixes. */
static qt_ggml_type attn_output_type(const qt_gguf_policy *p, qt_ggml_type t)
{
    if (p->scheme->ftype == FT_Q2_K) return QT_GGML_TYPE_Q3_K;
    if (p->scheme->ftype == FT_Q3_K_M) return QT_GGML_TYPE_Q4_K;
    return t;
}

/* llama_tensor_get_type_impl for the roles of dense llama / qwen2 models. */
static qt_ggml_type mix_type(const qt_gguf_policy *p, qt_gguf_role role, int layer, int64_t ne0)
{
    qt_ggml_type t = p->scheme->type;
    if (role == QT_GGUF_ROLE_OUTPUT || (p->tied && role == QT_GGUF_ROLE_TOKEN_EMBD))
        return output_type(p, ne0);
    switch (role) {
    case QT_GGUF_ROLE_ATTN_V: return attn_v_type(p, layer, t);
    case QT_GGUF_ROLE_FFN_DOWN: return ffn_down_type(p, layer, t);
    case QT_GGUF_ROLE_ATTN_OUTPUT: return attn_output_type(p, t);
    default: return t;
    }
}

/* tensor_type_fallback: rows that are not whole blocks of t. */
qt_ggml_type qt_gguf_type_fallback(qt_ggml_type t, int64_t ne0, bool *fell)
{
    if (ne0 % qt_ggml_blck_size(t) == 0) return t;
    *fell = true;
    qt_ggml_type f;
    switch (t) {
    case QT_GGML_TYPE_Q2_K:
    case QT_GGML_TYPE_Q3_K: f = QT_GGML_TYPE_Q4_0; break;
    case QT_GGML_TYPE_Q4_K: f = QT_GGML_TYPE_Q5_0; break;
    case QT_GGML_TYPE_Q5_K: f = QT_GGML_TYPE_Q5_1; break;
    case QT_GGML_TYPE_Q6_K: f = QT_GGML_TYPE_Q8_0; break;
    /* legacy types: llama-quantize throws; the converter writes F16 (§7.4) */
    default: f = QT_GGML_TYPE_F16; break;
    }
    return ne0 % qt_ggml_blck_size(f) == 0 ? f : QT_GGML_TYPE_F16;
}

qt_ggml_type qt_gguf_policy_base(const qt_gguf_policy *p, qt_gguf_role role, int layer,
                                 uint32_t n_dims, int64_t ne0)
{
    qt_ggml_type t = p->scheme->type;
    /* 1-D tensors and norms stay F32 (§6) */
    if (n_dims < 2 || role == QT_GGUF_ROLE_OUTPUT_NORM || role == QT_GGUF_ROLE_ATTN_NORM ||
        role == QT_GGUF_ROLE_FFN_NORM || role == QT_GGUF_ROLE_ROPE_FREQS)
        return QT_GGML_TYPE_F32;
    if (is_quantized(t) && p->scheme->mix && !p->pure) t = mix_type(p, role, layer, ne0);
    return t;
}

qt_ggml_type qt_gguf_policy_type(const qt_gguf_policy *p, qt_gguf_role role, int layer,
                                 uint32_t n_dims, int64_t ne0, bool *fallback)
{
    bool fell = false;
    qt_ggml_type t = qt_gguf_policy_base(p, role, layer, n_dims, ne0);
    if (is_quantized(t)) t = qt_gguf_type_fallback(t, ne0, &fell);
    if (fallback) *fallback = fell;
    return t;
}
