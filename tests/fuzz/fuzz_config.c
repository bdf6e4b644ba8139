/*
 * tests/fuzz/fuzz_config.c: libFuzzer harness for the JSON that qtool reads
 * from config.json and from the quant_state blobs of bitsandbytes models:
 * the strict parser (qt_json_parse), config.json's rewrite with a
 * quantization_config (three option sets: nf4 + double quant, q8, plain) and
 * the quant_state parser. Properties checked (trap on violation):
 *   - a rewritten config is itself strict JSON (qt_json_parse accepts it);
 *   - a parsed quant_state has a finite nested_offset and formats back into
 *     a blob that parses to the same fields.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "formats/bnb.h"
#include "formats/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_rewrite(const char *src, size_t n, const qt_bnb_config *cfg)
{
    char err[QT_ERRMSG_SIZE], *out = NULL;
    size_t len = 0;
    if (qt_bnb_config_rewrite(src, n, "fuzz", cfg, &out, &len, err) != QT_OK) return;
    if (strlen(out) != len) __builtin_trap();
    cJSON *again = NULL;
    if (qt_json_parse(out, len, "rewritten", &again, NULL, err) != QT_OK) __builtin_trap();
    cJSON_Delete(again);
    qt_free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *src = (const char *)data;
    char err[QT_ERRMSG_SIZE];
    cJSON *root = NULL;
    qt_json_rule rule = QT_JSON_OK;
    qt_status st = qt_json_parse(src, size, "fuzz", &root, &rule, err);
    if ((st == QT_OK) != (root != NULL)) __builtin_trap();
    cJSON_Delete(root);
    if (st != QT_OK) return 0; /* every consumer below starts with qt_json_parse */

    static const char *const skip[] = {"lm_head", "model.layers.0.mlp.down_proj"};
    qt_bnb_config nf4 = {.load_in_4bit = true, .quant_type = "nf4", .double_quant = true,
                         .compute_dtype = "bfloat16", .skip_modules = skip, .n_skip = 2};
    qt_bnb_config q8 = {.compute_dtype = "float16", .qtool_scheme = "q8", .qtool_block = 32};
    qt_bnb_config plain = {.compute_dtype = "float32", .plain = true};
    check_rewrite(src, size, &nf4);
    check_rewrite(src, size, &q8);
    check_rewrite(src, size, &plain);

    qt_bnb_state s, s2;
    if (qt_bnb_state_parse(data, size, "fuzz", &s, err) == QT_OK) {
        if (s.nested && !isfinite(s.nested_offset)) __builtin_trap();
        char blob[1024];
        size_t blen = 0;
        if (qt_bnb_state_format(&s, blob, sizeof blob, &blen) != QT_OK) return 0;
        if (qt_bnb_state_parse(blob, blen, "formatted", &s2, err) != QT_OK) __builtin_trap();
        if (strcmp(s.quant_type, s2.quant_type) || s.blocksize != s2.blocksize ||
            strcmp(s.dtype, s2.dtype) || s.n_dims != s2.n_dims || s.nested != s2.nested ||
            memcmp(s.shape, s2.shape, sizeof s.shape) ||
            (s.nested && (s.nested_blocksize != s2.nested_blocksize ||
                          qt_f32_bits(s.nested_offset) != qt_f32_bits(s2.nested_offset))))
            __builtin_trap();
    }
    return 0;
}
