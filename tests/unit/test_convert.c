/* tests/unit/test_convert.c: `convert` end to end on stories260K against
 * what transformers + bitsandbytes wrote (../shared/data/golden): the same
 * tensor names, dtypes, shapes and header order; packed NF4 codes,
 * quant_map, nested codes and nested_quant_map byte for byte; LLM.int8 every
 * data byte. nested_absmax and the JSON offset may differ by the documented
 * +-1 ulp of torch's mean (golden/README.md), so they are not compared. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <string.h>
#include <sys/stat.h>

#include "convert/convert.h"
#include "formats/modeldir.h"
#include "formats/safetensors.h"
#include "testutil.h"

static void convert_to(const char *in_rel, qt_scheme scheme, bool dq, const char *out)
{
    char in[512], err[QT_ERRMSG_SIZE] = "";
    qt_conv_opts o = {.in = qt_test_data_path(in, sizeof in, in_rel), .out = out,
                      .scheme = scheme, .double_quant = dq, .metrics = true};
    qt_conv *c = NULL;
    cr_assert(eq(int, qt_conv_plan(&o, &c, err), QT_OK), "%s", err);
    cr_assert(eq(int, qt_conv_run(c, err), QT_OK), "%s", err);
    qt_conv_free(c);
}

static bool ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static void compare_with_golden(const char *out_file, const char *golden_rel, bool all_bytes)
{
    char gp[512], err[QT_ERRMSG_SIZE];
    qt_st_reader *a = NULL, *g = NULL;
    cr_assert(eq(int, qt_st_reader_open(out_file, &a, err), QT_OK), "%s", err);
    cr_assert(eq(int, qt_st_reader_open(qt_test_data_path(gp, sizeof gp, golden_rel), &g, err),
                 QT_OK), "%s", err);
    cr_assert(eq(sz, qt_st_reader_n_tensors(a), qt_st_reader_n_tensors(g)));
    size_t compared = 0;
    for (size_t i = 0; i < qt_st_reader_n_tensors(g); i++) {
        const qt_st_tensor *tg = qt_st_reader_tensor(g, i), *ta = qt_st_reader_tensor(a, i);
        cr_assert(eq(str, (char *)ta->name, (char *)tg->name), "header order differs at %zu", i);
        cr_assert(eq(int, (int)ta->dtype, (int)tg->dtype), "%s dtype", tg->name);
        cr_assert(eq(sz, ta->n_dims, tg->n_dims), "%s rank", tg->name);
        bool skip = !all_bytes && (ends_with(tg->name, ".nested_absmax") ||
                                   strstr(tg->name, ".quant_state.") != NULL);
        if (skip) continue; /* the blob's length follows the offset's digits */
        for (size_t d = 0; d < tg->n_dims; d++)
            cr_assert(eq(u64, ta->shape[d], tg->shape[d]), "%s shape", tg->name);
        cr_assert(eq(int, memcmp(ta->data, tg->data, (size_t)tg->nbytes), 0), "%s bytes differ",
                  tg->name);
        compared++;
    }
    cr_assert(gt(sz, compared, 100));
    qt_st_reader_close(a);
    qt_st_reader_close(g);
}

Test(convert, nf4_double_quant_matches_bitsandbytes)
{
    QT_NEED_DATA();
    char tmp[64], out[128], f[160];
    qt_test_tmpdir(tmp, sizeof tmp);
    snprintf(out, sizeof out, "%s/nf4", tmp);
    convert_to("models/stories260K-f32", QT_SCHEME_NF4, true, out);
    snprintf(f, sizeof f, "%s/model.safetensors", out);
    compare_with_golden(f, "golden/transformers-bnb-nf4-dq/model.safetensors", false);
}

Test(convert, int8_matches_bitsandbytes_byte_for_byte)
{
    QT_NEED_DATA();
    char tmp[64], out[128], f[160];
    qt_test_tmpdir(tmp, sizeof tmp);
    snprintf(out, sizeof out, "%s/int8", tmp);
    convert_to("models/stories260K-f32", QT_SCHEME_INT8, false, out);
    snprintf(f, sizeof f, "%s/model.safetensors", out);
    compare_with_golden(f, "golden/transformers-bnb-int8/model.safetensors", true);
}

/* NF4 error bound of spec §5: |w - w_hat| <= absmax * 0.1608 per block, so
 * the tensor's max abs error <= its absmax * 0.1608; SQNR of a Gaussian-ish
 * weight under NF4 is about 20 dB: require > 15 dB for every tensor. */
Test(convert, nf4_error_within_spec_bounds)
{
    QT_NEED_DATA();
    char in[512], tmp[64], out[128], err[QT_ERRMSG_SIZE] = "";
    qt_test_tmpdir(tmp, sizeof tmp);
    snprintf(out, sizeof out, "%s/nf4b", tmp);
    for (int src = 0; src < 3; src++) {
        const char *rel[] = {"models/stories260K-f32", "models/stories260K-f16",
                             "models/stories260K-bf16"};
        for (int dq = 0; dq < 2; dq++) {
            qt_conv_opts o = {.in = qt_test_data_path(in, sizeof in, rel[src]), .out = out,
                              .scheme = QT_SCHEME_NF4, .double_quant = dq, .metrics = true,
                              .force = true};
            qt_conv *c = NULL;
            cr_assert(eq(int, qt_conv_plan(&o, &c, err), QT_OK), "%s", err);
            cr_assert(eq(int, qt_conv_run(c, err), QT_OK), "%s", err);
            size_t nq = 0;
            for (size_t i = 0; i < qt_conv_n_items(c); i++) {
                const qt_conv_item *it = qt_conv_item_at(c, i);
                if (it->action != QT_ACT_QUANT) continue;
                nq++;
                cr_assert(it->have_error);
                cr_assert(gt(dbl, it->error.sqnr_db, 15.0), "%s: SQNR %.2f dB", it->src->name,
                          it->error.sqnr_db);
                cr_assert(gt(dbl, it->error.cosine, 0.99), "%s cosine", it->src->name);
            }
            cr_assert(eq(sz, nq, 35)); /* 5 layers x 7 projections */
            qt_conv_free(c);
        }
    }
}

Test(convert, refuses_existing_output_and_quantized_input)
{
    QT_NEED_DATA();
    char in[512], tmp[64], err[QT_ERRMSG_SIZE] = "";
    qt_test_tmpdir(tmp, sizeof tmp);
    qt_conv_opts o = {.in = qt_test_data_path(in, sizeof in, "models/stories260K-f32"),
                      .out = tmp, .scheme = QT_SCHEME_NF4, .double_quant = true};
    qt_conv *c = NULL;
    cr_assert(eq(int, qt_conv_plan(&o, &c, err), QT_OK), "%s", err);
    cr_assert(eq(int, qt_conv_run(c, err), QT_ERR_ARG));
    cr_assert(strstr(err, "exists") != NULL, "%s", err);
    qt_conv_free(c);
    qt_conv_opts o2 = {.in = qt_test_data_path(in, sizeof in, "golden/transformers-bnb-nf4-dq"),
                       .out = "/nonexistent/x", .scheme = QT_SCHEME_NF4};
    cr_assert(eq(int, qt_conv_plan(&o2, &c, err), QT_ERR_ARG));
    cr_assert(strstr(err, "already quantized") != NULL, "%s", err);
}

Test(convert, options_string_and_up_to_date)
{
    QT_NEED_DATA();
    char in[512], tmp[64], out[128], err[QT_ERRMSG_SIZE] = "", why[256];
    qt_test_tmpdir(tmp, sizeof tmp);
    snprintf(out, sizeof out, "%s/o", tmp);
    const char *skip[] = {"*.mlp.*", "a\"b"};
    qt_conv_opts o = {.in = qt_test_data_path(in, sizeof in, "models/stories260K-f32"),
                      .out = out, .scheme = QT_SCHEME_NF4, .double_quant = true, .skip = skip,
                      .n_skip = 2, .max_shard_size = 1000000};
    qt_conv *c = NULL;
    cr_assert(eq(int, qt_conv_plan(&o, &c, err), QT_OK), "%s", err);
    cr_assert(eq(str, (char *)qt_conv_options(c),
                 "scheme=nf4;block=64;double_quant=1;compute_dtype=float32;"
                 "skip=[\"*.mlp.*\",\"a\\\"b\"];recipe=none;max_shard_size=1000000;"
                 "allow_nonfinite=0"));
    bool same = true;
    cr_assert(eq(int, qt_conv_up_to_date(c, &same, why, sizeof why), QT_OK));
    cr_assert(not(same));
    cr_assert(eq(int, qt_conv_run(c, err), QT_OK), "%s", err);
    cr_assert(eq(int, qt_conv_up_to_date(c, &same, why, sizeof why), QT_OK));
    cr_assert(same, "%s", why);
    qt_conv_free(c);
    /* one option less: not up to date, and the reason names the key */
    o.n_skip = 1;
    cr_assert(eq(int, qt_conv_plan(&o, &c, err), QT_OK), "%s", err);
    cr_assert(eq(int, qt_conv_up_to_date(c, &same, why, sizeof why), QT_OK));
    cr_assert(not(same));
    cr_assert(strstr(why, "qtool.options") != NULL, "%s", why);
    qt_conv_free(c);
}
