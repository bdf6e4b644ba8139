/* quant/scheme.c: the one scheme table (STYLE 31) and the size functions.
 * CLI parsing, --help and inspect all read this table. */
#include "quant/quant.h"

#include "quant/quant_internal.h"

#include <stdio.h>
#include <string.h>

/* bits per weight: codes plus scales at the default block size
 *   nf4/fp4 (double quant): 4 + 8/64 + 32/(64*256)
 *   q8 (block 32): 34 bytes / 32 weights
 *   int8-blockwise (block 4096): 8 + 32/4096
 *   int8 row-wise: 8 plus one float per row (shown without it)
 *   GGML block types: block_bytes * 8 / block (ggml-common.h block structs) */
#define CV QT_SCHEME_F_CONVERT
#define PL QT_SCHEME_F_PLAIN
#define FB QT_SCHEME_F_FALLBACK
/* calibration thresholds: docs/CALIBRATION.md "Thresholds" */
static const qt_scheme_info schemes[] = {
    {"nf4", QT_SCHEME_NF4, 4.0 + 8.0 / 64 + 32.0 / (64 * 256), 64, 32, 4096,
     "4-bit NormalFloat, blockwise absmax (bitsandbytes / QLoRA), double quant", &qt_ops_4bit,
     -1, 0, CV, 0.25},
    {"fp4", QT_SCHEME_FP4, 4.0 + 8.0 / 64 + 32.0 / (64 * 256), 64, 32, 4096,
     "4-bit float (1-2-1 style table), blockwise absmax (bitsandbytes)", &qt_ops_4bit, -1, 0,
     CV, 0.35},
    {"int8", QT_SCHEME_INT8, 8.0, 0, 0, 0,
     "LLM.int8 row-wise int8 with per-row SCB (bitsandbytes Linear8bitLt)", &qt_ops_int8, -1, 0,
     CV | FB, 0.02},
    {"q8", QT_SCHEME_Q8, 34.0 * 8 / 32, 32, 32, 4096,
     "per-block symmetric int8, block 32 = GGUF Q8_0 bytes", &qt_ops_q8, 8, 34, CV | FB, 0.02},
    {"int8-blockwise", QT_SCHEME_INT8_BLOCKWISE, 8.0 + 32.0 / 4096, 4096, 64, 4096,
     "8-bit dynamic map, blockwise absmax (bitsandbytes quantize_blockwise)",
     &qt_ops_blockwise8, -1, 0, 0, 0},
    {"bf16", QT_SCHEME_BF16, 16.0, 0, 0, 0, "bfloat16, unquantized", &qt_ops_half, 30, 0,
     CV | PL | FB, 0},
    {"fp16", QT_SCHEME_FP16, 16.0, 0, 0, 0, "IEEE half, unquantized", &qt_ops_half, 1, 0,
     CV | PL | FB, 0},
    {"fp32", QT_SCHEME_FP32, 32.0, 0, 0, 0, "float32, unquantized", &qt_ops_f32, 0, 0,
     CV | PL | FB, 0},
    /* GGML block types: one block size each (min = max = default); GGUF only */
    {"q4_0", QT_SCHEME_Q4_0, 18.0 * 8 / 32, 32, 32, 32,
     "GGUF Q4_0: 4-bit symmetric, fp16 scale per 32", &qt_ops_blk, 2, 18, 0, 0},
    {"q4_1", QT_SCHEME_Q4_1, 20.0 * 8 / 32, 32, 32, 32,
     "GGUF Q4_1: 4-bit with fp16 scale and min per 32", &qt_ops_blk, 3, 20, 0, 0},
    {"q5_0", QT_SCHEME_Q5_0, 22.0 * 8 / 32, 32, 32, 32,
     "GGUF Q5_0: 5-bit symmetric, fp16 scale per 32", &qt_ops_blk, 6, 22, 0, 0},
    {"q5_1", QT_SCHEME_Q5_1, 24.0 * 8 / 32, 32, 32, 32,
     "GGUF Q5_1: 5-bit with fp16 scale and min per 32", &qt_ops_blk, 7, 24, 0, 0},
    {"q2_k", QT_SCHEME_Q2_K, 84.0 * 8 / 256, 256, 256, 256,
     "GGUF Q2_K: 2-bit, 4-bit scales and mins per 16, super-block 256", &qt_ops_blk, 10, 84,
     0, 0},
    {"q3_k", QT_SCHEME_Q3_K, 110.0 * 8 / 256, 256, 256, 256,
     "GGUF Q3_K: 3-bit, 6-bit scales per 16, super-block 256", &qt_ops_blk, 11, 110, 0, 0},
    {"q4_k", QT_SCHEME_Q4_K, 144.0 * 8 / 256, 256, 256, 256,
     "GGUF Q4_K: 4-bit, 6-bit scales and mins per 32, super-block 256", &qt_ops_blk, 12, 144,
     0, 0},
    {"q5_k", QT_SCHEME_Q5_K, 176.0 * 8 / 256, 256, 256, 256,
     "GGUF Q5_K: 5-bit, 6-bit scales and mins per 32, super-block 256", &qt_ops_blk, 13, 176,
     0, 0},
    {"q6_k", QT_SCHEME_Q6_K, 210.0 * 8 / 256, 256, 256, 256,
     "GGUF Q6_K: 6-bit, 8-bit scales per 16, super-block 256", &qt_ops_blk, 14, 210, 0, 0},
};
#undef CV
#undef PL
#undef FB
_Static_assert(sizeof schemes / sizeof schemes[0] == QT_SCHEME_COUNT,
               "one scheme table row per qt_scheme");

size_t qt_scheme_count(void)
{
    return sizeof schemes / sizeof schemes[0];
}

const qt_scheme_info *qt_scheme_info_at(size_t i)
{
    return i < qt_scheme_count() ? &schemes[i] : NULL;
}

const qt_scheme_info *qt_scheme_get(qt_scheme s)
{
    for (size_t i = 0; i < qt_scheme_count(); i++)
        if (schemes[i].scheme == s) return &schemes[i];
    return NULL;
}

const qt_scheme_info *qt_scheme_find(const char *name)
{
    if (!name) return NULL;
    for (size_t i = 0; i < qt_scheme_count(); i++)
        if (strcmp(schemes[i].name, name) == 0) return &schemes[i];
    return NULL;
}

bool qt_scheme_block_ok(qt_scheme s, size_t block)
{
    const qt_scheme_info *si = qt_scheme_get(s);
    if (!si || si->max_block == 0) return false;
    return block >= si->min_block && block <= si->max_block && (block & (block - 1)) == 0;
}

size_t qt_n_blocks(size_t n, size_t block)
{
    return n / block + (n % block != 0);
}

size_t qt_nf4_bytes(size_t n)
{
    return n / 2 + (n & 1);
}

size_t qt_dq_n_nested(size_t nb)
{
    return qt_n_blocks(nb, QT_DQ_BLOCK);
}

size_t qt_q8_block_bytes(size_t block)
{
    return block == 32 ? sizeof(qt_q8_block32) : sizeof(qt_q8_blockf) + block;
}

size_t qt_q8_bytes(size_t n, size_t block)
{
    return qt_n_blocks(n, block) * qt_q8_block_bytes(block);
}

bool qt_scheme_has(qt_scheme s, unsigned flags)
{
    const qt_scheme_info *si = qt_scheme_get(s);
    return si && (si->flags & flags) == flags;
}

const char *qt_scheme_names(unsigned flags, char *buf, size_t n)
{
    size_t len = 0;
    if (n) buf[0] = 0;
    for (size_t i = 0; i < qt_scheme_count() && n; i++) {
        if ((schemes[i].flags & flags) != flags) continue;
        int r = snprintf(buf + len, n - len, "%s%s", len ? ", " : "", schemes[i].name);
        if (r < 0 || (size_t)r >= n - len) break;
        len += (size_t)r;
    }
    return buf;
}
