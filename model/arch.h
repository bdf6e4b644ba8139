/*
 * model/arch.h: the one Llama-family table. Which architectures qtool knows
 * (config.json architectures[0] or model_type), the names of a decoder
 * layer's Linear projections and their shapes, which Linears are
 * quantized by default (exactly those transformers' bitsandbytes
 * integration replaces: q/k/v/o and gate/up/down; never lm_head), and the
 * Q/K row-permutation fact of GGUF files. convert, calib, bench, inspect
 * and the forward pass read it; nothing else spells these names.
 *
 * Pure functions on constant tables; thread-safe.
 */
#ifndef QT_MODEL_ARCH_H
#define QT_MODEL_ARCH_H

#include <stdbool.h>
#include <stddef.h>

/* The seven Linear projections of a decoder layer, in forward order. */
typedef enum qt_proj {
    QT_PROJ_Q = 0, QT_PROJ_K, QT_PROJ_V, QT_PROJ_O, QT_PROJ_GATE, QT_PROJ_UP, QT_PROJ_DOWN,
    QT_PROJ_COUNT
} qt_proj;

/* Whether name is a known architecture ("LlamaForCausalLM",
 * "MistralForCausalLM", "Qwen2ForCausalLM", the early "LLaMAForCausalLM")
 * or model_type ("llama", "mistral", "qwen2"). */
bool qt_arch_known(const char *name);
/* The canonical architecture names, for messages:
 * "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM". Static. */
const char *qt_arch_names(void);

/* "q_proj", "k_proj", ... "down_proj"; "?" out of range. */
const char *qt_proj_name(qt_proj p);
/* The module of a projection inside layer N: "self_attn.q_proj", "mlp.up_proj". */
const char *qt_proj_module(qt_proj p);

/* The shape [rows, cols] of projection p for model width dim, q width
 * (heads * head_dim), kv width (kv_heads * head_dim) and MLP width hidden. */
void qt_proj_shape(qt_proj p, size_t dim, size_t q_dim, size_t kv_dim, size_t hidden,
                   size_t *rows, size_t *cols);

/* Whether name is "model.layers.<L>.<proj module>.weight" (a Linear that
 * is quantized by default); sets *layer and *proj (each may be NULL). */
bool qt_llama_parse_linear(const char *name, size_t *layer, qt_proj *proj);
/* The name of the output head, a Linear kept unquantized: "lm_head.weight". */
#define QT_LLAMA_LM_HEAD "lm_head.weight"

/* The GGUF (llama.cpp) tensor of a projection inside "blk.N.": "attn_q",
 * "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down". */
const char *qt_proj_gguf_name(qt_proj p);

/* GGUF stores the rows of q_proj and k_proj in llama.cpp's interleaved-pair
 * RoPE order; true for those projections (Q and K). */
bool qt_proj_rope_permuted(qt_proj p);
/* Within one head of head_dim (even) rows: the stored (GGUF) row that holds
 * Hugging Face row hf_row. HF keeps the first halves of the rotation pairs
 * in rows [0, head_dim/2); GGUF interleaves them as (2i, 2i+1). */
size_t qt_rope_stored_row(size_t head_dim, size_t hf_row);

#endif /* QT_MODEL_ARCH_H */
