/* model/arch.c: the Llama-family table (see arch.h). */
#include "model/arch.h"

#include <string.h>

/* Known architectures and their model_type (rows of the table). */
static const struct {
    const char *arch, *model_type;
} ARCHS[] = {
    {"LlamaForCausalLM", "llama"},
    {"MistralForCausalLM", "mistral"},
    {"Qwen2ForCausalLM", "qwen2"},
    {"LLaMAForCausalLM", "llama"}, /* early Hugging Face conversions */
};

/* Projections: name, module inside a layer, shape in symbolic widths. */
typedef enum width { W_DIM, W_Q, W_KV, W_HIDDEN } width;
static const struct {
    const char *name, *module, *gguf;
    width rows, cols;
    bool rope_permuted;
} PROJS[QT_PROJ_COUNT] = {
    [QT_PROJ_Q] = {"q_proj", "self_attn.q_proj", "attn_q", W_Q, W_DIM, true},
    [QT_PROJ_K] = {"k_proj", "self_attn.k_proj", "attn_k", W_KV, W_DIM, true},
    [QT_PROJ_V] = {"v_proj", "self_attn.v_proj", "attn_v", W_KV, W_DIM, false},
    [QT_PROJ_O] = {"o_proj", "self_attn.o_proj", "attn_output", W_DIM, W_Q, false},
    [QT_PROJ_GATE] = {"gate_proj", "mlp.gate_proj", "ffn_gate", W_HIDDEN, W_DIM, false},
    [QT_PROJ_UP] = {"up_proj", "mlp.up_proj", "ffn_up", W_HIDDEN, W_DIM, false},
    [QT_PROJ_DOWN] = {"down_proj", "mlp.down_proj", "ffn_down", W_DIM, W_HIDDEN, false},
};

bool qt_arch_known(const char *name)
{
    for (size_t i = 0; name && i < sizeof ARCHS / sizeof *ARCHS; i++)
        if (!strcmp(name, ARCHS[i].arch) || !strcmp(name, ARCHS[i].model_type)) return true;
    return false;
}

const char *qt_arch_names(void) { return "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM"; }

const char *qt_proj_name(qt_proj p) { return (unsigned)p < QT_PROJ_COUNT ? PROJS[p].name : "?"; }

const char *qt_proj_module(qt_proj p)
{
    return (unsigned)p < QT_PROJ_COUNT ? PROJS[p].module : "?";
}

void qt_proj_shape(qt_proj p, size_t dim, size_t q_dim, size_t kv_dim, size_t hidden,
                   size_t *rows, size_t *cols)
{
    const size_t w[] = {[W_DIM] = dim, [W_Q] = q_dim, [W_KV] = kv_dim, [W_HIDDEN] = hidden};
    *rows = (unsigned)p < QT_PROJ_COUNT ? w[PROJS[p].rows] : 0;
    *cols = (unsigned)p < QT_PROJ_COUNT ? w[PROJS[p].cols] : 0;
}

const char *qt_proj_gguf_name(qt_proj p)
{
    return (unsigned)p < QT_PROJ_COUNT ? PROJS[p].gguf : "?";
}

bool qt_proj_rope_permuted(qt_proj p)
{
    return (unsigned)p < QT_PROJ_COUNT && PROJS[p].rope_permuted;
}

size_t qt_rope_stored_row(size_t head_dim, size_t hf_row)
{
    const size_t half = head_dim / 2;
    return 2 * (hf_row % half) + hf_row / half;
}

bool qt_llama_parse_linear(const char *name, size_t *layer, qt_proj *proj)
{
    /* "model.layers." then the layer number */
    if (!name || strncmp(name, "model.layers.", 13) != 0) return false;
    const char *p = name + 13;
    if (*p < '0' || *p > '9') return false;
    size_t l = 0;
    while (*p >= '0' && *p <= '9') {
        if (l > 100000000) return false;
        l = l * 10 + (size_t)(*p++ - '0');
    }
    /* then ".<module>.weight" of one projection */
    if (*p++ != '.') return false;
    for (int i = 0; i < QT_PROJ_COUNT; i++) {
        size_t ml = strlen(PROJS[i].module);
        if (strncmp(p, PROJS[i].module, ml) == 0 && !strcmp(p + ml, ".weight")) {
            if (layer) *layer = l;
            if (proj) *proj = (qt_proj)i;
            return true;
        }
    }
    return false;
}
