/* tests/unit/test_bnb.c: Python-compatible JSON output (float repr, config
 * rewrite), the bitsandbytes quant_state blob format and parser. Golden
 * strings are what CPython's repr / json.dumps print (checked by hand
 * against the rules in specs/bnb-format.md §4.3). */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <stdio.h>
#include <string.h>

#include "formats/bnb.h"
#include "formats/pyjson.h"
#include "testutil.h"

static const char *repr(double v)
{
    static char buf[64];
    qt_py_float_repr(v, buf, sizeof buf);
    return buf;
}

Test(bnb, python_float_repr)
{
    cr_assert(eq(str, (char *)repr(1.0), "1.0"));
    cr_assert(eq(str, (char *)repr(6.0), "6.0"));
    cr_assert(eq(str, (char *)repr(0.1), "0.1"));
    cr_assert(eq(str, (char *)repr(1e-05), "1e-05"));
    cr_assert(eq(str, (char *)repr(5.5e-05), "5.5e-05"));
    cr_assert(eq(str, (char *)repr(0.0001), "0.0001"));
    cr_assert(eq(str, (char *)repr(10000.0), "10000.0"));
    cr_assert(eq(str, (char *)repr(1e16), "1e+16"));
    cr_assert(eq(str, (char *)repr(1234567890123456.0), "1234567890123456.0"));
    cr_assert(eq(str, (char *)repr(-2.5), "-2.5"));
    cr_assert(eq(str, (char *)repr(0.0), "0.0"));
    /* a float32 widened to double prints all its double digits */
    cr_assert(eq(str, (char *)repr((double)0.1f), "0.10000000149011612"));
    cr_assert(eq(str, (char *)repr((double)0.03209815174341202f), "0.03209815174341202"));
    cr_assert(eq(str, (char *)repr(1.5e300), "1.5e+300"));
    cr_assert(eq(str, (char *)repr(123.456), "123.456"));
}

Test(bnb, quant_state_blob_bytes)
{
    qt_bnb_state s = {.quant_type = "nf4", .blocksize = 64, .dtype = "bfloat16", .n_dims = 2,
                      .shape = {4096, 11008}, .nested = true, .nested_blocksize = 256,
                      .nested_dtype = "float32", .nested_offset = 0.03209815174341202f};
    char buf[512];
    size_t len;
    cr_assert(eq(int, qt_bnb_state_format(&s, buf, sizeof buf, &len), QT_OK));
    cr_assert(eq(str, buf,
                 "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"bfloat16\", "
                 "\"shape\": [4096, 11008], \"nested_blocksize\": 256, \"nested_dtype\": "
                 "\"float32\", \"nested_offset\": 0.03209815174341202}"));
    qt_bnb_state back;
    char err[QT_ERRMSG_SIZE];
    cr_assert(eq(int, qt_bnb_state_parse(buf, len, "t", &back, err), QT_OK));
    cr_assert(eq(int, memcmp(&s.shape, &back.shape, sizeof s.shape), 0));
    cr_assert(eq(flt, back.nested_offset, s.nested_offset));
    s.nested = false;
    cr_assert(eq(int, qt_bnb_state_format(&s, buf, sizeof buf, &len), QT_OK));
    cr_assert(eq(str, buf,
                 "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"bfloat16\", "
                 "\"shape\": [4096, 11008]}"));
    cr_assert(eq(int, qt_bnb_state_format(&s, buf, 10, &len), QT_ERR_ARG));
}

Test(bnb, quant_state_parse_rejects_bad_blobs)
{
    const char *bad[] = {
        "{\"quant_type\": \"nf5\", \"blocksize\": 64, \"dtype\": \"bfloat16\", \"shape\": [2]}",
        "{\"quant_type\": \"nf4\", \"blocksize\": 63, \"dtype\": \"bfloat16\", \"shape\": [2]}",
        "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"bfloat16\", \"shape\": [0]}",
        "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"bfloat16\", \"shape\": 7}",
        "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"bfloat16\", \"shape\": [2], "
        "\"nested_blocksize\": 256}",
        "{\"quant_type\": \"nf4\", \"quant_type\": \"nf4\", \"blocksize\": 64}",
        "[1, 2]",
        "{\"quant_type\": \"nf4\"",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        qt_bnb_state s;
        char err[QT_ERRMSG_SIZE] = "";
        qt_status st = qt_bnb_state_parse(bad[i], strlen(bad[i]), "blob", &s, err);
        cr_assert(ne(int, st, QT_OK), "blob %zu accepted", i);
        cr_assert(ne(int, (int)strlen(err), 0));
    }
}

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char buf[1 << 16];
    *n = fread(buf, 1, sizeof buf - 1, f);
    buf[*n] = 0;
    fclose(f);
    return buf;
}

/* The quantization_config block qtool writes equals the one transformers
 * wrote in the golden directory, line for line. */
Test(bnb, config_rewrite_matches_transformers)
{
    QT_NEED_DATA();
    char p1[512], p2[512];
    size_t n;
    char *src = slurp(qt_test_data_path(p1, sizeof p1, "models/stories260K-f32/config.json"), &n);
    cr_assert(src != NULL);
    char *srccopy = strdup(src);
    qt_bnb_config cfg = {.load_in_4bit = true, .quant_type = "nf4", .double_quant = true,
                         .compute_dtype = "float32"};
    char *out = NULL;
    size_t len;
    char err[QT_ERRMSG_SIZE];
    cr_assert(eq(int, qt_bnb_config_rewrite(srccopy, n, "config.json", &cfg, &out, &len, err),
                 QT_OK), "%s", err);
    size_t gn;
    char *gold = slurp(
        qt_test_data_path(p2, sizeof p2, "golden/transformers-bnb-nf4-dq/config.json"), &gn);
    cr_assert(gold != NULL);
    char *gq = strstr(gold, "  \"quantization_config\": {");
    char *oq = strstr(out, "  \"quantization_config\": {");
    cr_assert(gq && oq);
    size_t glen = (size_t)(strstr(gq, "\n  },") - gq);
    cr_assert(eq(int, strncmp(gq, oq, glen + 5), 0), "qtool wrote:\n%.*s", (int)glen + 5, oq);
    /* float literals keep their kind, keys are sorted, 2-space indent */
    cr_assert(strstr(out, "\"rope_theta\": 10000.0,") != NULL);
    cr_assert(strstr(out, "\"rms_norm_eps\": 1e-05,") != NULL);
    cr_assert(strstr(out, "\"hidden_size\": 64,") != NULL);
    cr_assert(strstr(out, "{\n  \"architectures\": [\n    \"LlamaForCausalLM\"\n  ],") == out);
    cr_assert(eq(chr, out[len - 1], '\n'));
    /* a second rewrite refuses: already quantized */
    char *again = NULL;
    cr_assert(eq(int, qt_bnb_config_rewrite(out, len, "c", &cfg, &again, &len, err),
                 QT_ERR_FORMAT));
    qt_free(out);
    free(srccopy);
}

Test(bnb, config_skip_modules_are_listed)
{
    const char *src = "{\"torch_dtype\": \"float32\", \"a\": 1}";
    const char *skip[] = {"lm_head", "model.layers.0.mlp.down_proj"};
    qt_bnb_config cfg = {.load_in_4bit = false, .compute_dtype = "float32",
                         .skip_modules = skip, .n_skip = 2};
    char *out;
    size_t len;
    cr_assert(eq(int, qt_bnb_config_rewrite(src, strlen(src), "c", &cfg, &out, &len, NULL),
                 QT_OK));
    cr_assert(strstr(out, "\"llm_int8_skip_modules\": [\n      \"lm_head\",\n      "
                          "\"model.layers.0.mlp.down_proj\"\n    ],") != NULL, "%s", out);
    cr_assert(strstr(out, "\"load_in_8bit\": true,") != NULL);
    qt_free(out);
}
