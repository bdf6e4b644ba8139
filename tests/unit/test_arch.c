/* tests/unit/test_arch.c: the one Llama table (model/arch.h): the
 * architectures accepted everywhere, the default-quantized Linear names
 * (transformers' bitsandbytes integration: q/k/v/o, gate/up/down, never
 * lm_head), projection shapes, and the GGUF Q/K row order (llama.cpp's
 * convert permute: reshape (heads, 2, hd/2, cols), swap axes 1 and 2, so
 * stored row 2i+j holds HF row j*hd/2 + i). */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "model/arch.h"

Test(arch, architectures)
{
    cr_assert(qt_arch_known("LlamaForCausalLM"));
    cr_assert(qt_arch_known("MistralForCausalLM"));
    cr_assert(qt_arch_known("Qwen2ForCausalLM"));
    cr_assert(qt_arch_known("LLaMAForCausalLM"));
    cr_assert(qt_arch_known("qwen2"));
    cr_assert(not(qt_arch_known("GPT2LMHeadModel")));
    cr_assert(not(qt_arch_known(NULL)));
}

Test(arch, linear_names)
{
    size_t l = 99;
    qt_proj p = QT_PROJ_COUNT;
    cr_assert(qt_llama_parse_linear("model.layers.12.mlp.down_proj.weight", &l, &p));
    cr_assert(eq(sz, l, 12));
    cr_assert(eq(int, p, QT_PROJ_DOWN));
    cr_assert(qt_llama_parse_linear("model.layers.0.self_attn.o_proj.weight", &l, &p));
    cr_assert(eq(int, p, QT_PROJ_O));
    cr_assert(not(qt_llama_parse_linear(QT_LLAMA_LM_HEAD, NULL, NULL)));
    cr_assert(not(qt_llama_parse_linear("model.layers.1.mlp.up_proj.bias", NULL, NULL)));
    cr_assert(not(qt_llama_parse_linear("model.layers.1.input_layernorm.weight", NULL, NULL)));
    cr_assert(not(qt_llama_parse_linear("model.layers.1.mlp.up_proj.weight.absmax", NULL, NULL)));
    cr_assert(not(qt_llama_parse_linear("model.layers.1self_attn.q_proj.weight", NULL, NULL)));
    cr_assert(eq(str, (char *)qt_proj_gguf_name(QT_PROJ_O), "attn_output"));
}

Test(arch, shapes_and_rope_rows)
{
    size_t r, c;
    qt_proj_shape(QT_PROJ_K, 2048, 2048, 256, 5632, &r, &c);
    cr_assert(eq(sz, r, 256));
    cr_assert(eq(sz, c, 2048));
    qt_proj_shape(QT_PROJ_DOWN, 2048, 2048, 256, 5632, &r, &c);
    cr_assert(eq(sz, r, 2048));
    cr_assert(eq(sz, c, 5632));
    cr_assert(qt_proj_rope_permuted(QT_PROJ_Q) && qt_proj_rope_permuted(QT_PROJ_K));
    cr_assert(not(qt_proj_rope_permuted(QT_PROJ_V)));
    /* head_dim 8: HF rows 0..3 are pair firsts (stored 0,2,4,6), 4..7 seconds */
    const size_t want[8] = {0, 2, 4, 6, 1, 3, 5, 7};
    for (size_t i = 0; i < 8; i++) cr_assert(eq(sz, qt_rope_stored_row(8, i), want[i]), "row %zu", i);
}
