/* tests/unit/test_calib.c: calibration sets, their cache, the output-error
 * metric and the check inside convert (calib/calib.h, convert/validate.c). */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "calib/calib.h"
#include "convert/convert.h"
#include "formats/layout.h"
#include "formats/modeldir.h"
#include "formats/safetensors.h"
#include "testutil.h"

#define MODEL "models/stories260K-f32"
#define STORIES "text/tinystories_sample.txt"

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f != NULL, "cannot create %s", path);
    cr_assert(eq(sz, fwrite(data, 1, n, f), n));
    fclose(f);
}

/* ---- the metric against a direct fp64 computation ------------------------- */

Test(calib, output_error_matches_fp64_direct)
{
    enum { NO = 24, NI = 40, NR = 17 };
    unsigned long long s = qt_test_seed(7);
    static float w[NO * NI], x[NR * NI], wh[NO * NI], absmax[NO * NI / 64 + 1];
    static uint8_t codes[NO * NI / 2];
    for (int i = 0; i < NO * NI; i++) w[i] = qt_test_randf(&s) * (i % 7 == 0 ? 3.0f : 0.5f);
    for (int i = 0; i < NR * NI; i++) x[i] = qt_test_randf(&s);
    cr_assert(eq(int, qt_nf4_quantize(NULL, QT_SCHEME_NF4, QT_SRC_F32, w, NO * NI, 64, codes, absmax),
                 QT_OK));
    qt_qweight qo = {.scheme = QT_SCHEME_FP32, .n_out = NO, .n_in = NI, .data = w};
    qt_qweight qq = {.scheme = QT_SCHEME_NF4, .n_out = NO, .n_in = NI, .block_size = 64,
                     .data = codes, .absmax = absmax, .quant_map = qt_nf4_map};
    qt_qweight_rows(NULL, &qq, 0, NO, wh);
    /* Y = X W^T and Y-hat = X W-hat^T multiplied out in fp64 */
    double ys = 0, es = 0;
    for (int r = 0; r < NR; r++)
        for (int o = 0; o < NO; o++) {
            double y = 0, yh = 0;
            for (int k = 0; k < NI; k++) {
                y += (double)x[r * NI + k] * w[o * NI + k];
                yh += (double)x[r * NI + k] * wh[o * NI + k];
            }
            ys += y * y;
            es += (y - yh) * (y - yh);
        }
    qt_output_error e;
    cr_assert(eq(int, qt_output_error_compute(&qo, &qq, x, NR, &e), QT_OK));
    double rel = sqrt(es / ys);
    cr_assert(gt(dbl, rel, 0.01), "NF4 must not be exact here (%g)", rel);
    cr_assert(lt(dbl, fabs(e.rel - rel), 1e-9 * rel), "metric %.12g, direct %.12g", e.rel, rel);
    cr_assert(lt(dbl, fabs(e.sqnr_db - 10 * log10(ys / es)), 1e-7));
    cr_assert(lt(dbl, fabs(e.y_sq - ys), 1e-9 * ys));
    /* the same weight: exact */
    cr_assert(eq(int, qt_output_error_compute(&qo, &qo, x, NR, &e), QT_OK));
    cr_assert(eq(dbl, e.rel, 0.0));
    cr_assert(eq(int, isinf(e.sqnr_db) && e.sqnr_db > 0, 1));
    /* shapes that differ */
    qt_qweight bad = qo;
    bad.n_out = NO - 1;
    cr_assert(eq(int, qt_output_error_compute(&qo, &bad, x, NR, &e), QT_ERR_ARG));
}

Test(calib, linear_names)
{
    size_t l;
    qt_proj p;
    cr_assert(qt_llama_parse_linear("model.layers.12.mlp.down_proj.weight", &l, &p));
    cr_assert(eq(sz, l, 12));
    cr_assert(eq(int, p, QT_PROJ_DOWN));
    cr_assert(qt_llama_parse_linear("model.layers.0.self_attn.k_proj.weight", &l, &p));
    cr_assert(eq(int, p, QT_PROJ_K));
    cr_assert(not(qt_llama_parse_linear("model.layers.x.mlp.up_proj.weight", &l, &p)));
    cr_assert(not(qt_llama_parse_linear("lm_head.weight", &l, &p)));
    cr_assert(not(qt_llama_parse_linear("model.layers.1.mlp.up_proj.weight.absmax", &l, &p)));
}

/* ---- calibration sets and the cache ---------------------------------------- */

static qt_calib_set *get(const char *model, const char *text, const char *cache,
                         qt_calib_cache_status want)
{
    qt_calib_set *s = NULL;
    qt_calib_cache_status cs;
    char err[QT_ERRMSG_SIZE] = "", why[QT_ERRMSG_SIZE] = "";
    qt_calib_opts o = {.n_rows = 64};
    cr_assert(eq(int, qt_calib_set_get(model, text, &o, cache, &s, &cs, why, sizeof why, err),
                 QT_OK),
              "%s", err);
    cr_assert(eq(str, (char *)qt_calib_cache_status_name(cs), (char *)qt_calib_cache_status_name(want)),
              "%s", why);
    return s;
}

static bool same_rows(const qt_calib_set *a, const qt_calib_set *b)
{
    if (qt_calib_set_n_layers(a) != qt_calib_set_n_layers(b)) return false;
    for (size_t l = 0; l < qt_calib_set_n_layers(a); l++)
        for (int p = 0; p < QT_PROJ_COUNT; p++) {
            size_t r1, r2, i1, i2;
            const float *x = qt_calib_set_rows(a, l, (qt_proj)p, &r1, &i1);
            const float *y = qt_calib_set_rows(b, l, (qt_proj)p, &r2, &i2);
            if (r1 != r2 || i1 != i2 || memcmp(x, y, r1 * i1 * sizeof(float))) return false;
        }
    return true;
}

Test(calib, cache_reused_rebuilt_and_never_trusted_when_damaged)
{
    QT_NEED_DATA();
    char model[512], text[512], tmp[64], cache[600], t2[600], m2[600], cmd[2048];
    qt_test_data_path(model, sizeof model, MODEL);
    qt_test_data_path(text, sizeof text, STORIES);
    cr_assert(qt_test_tmpdir(tmp, sizeof tmp) != NULL);
    snprintf(cache, sizeof cache, "%s/c.qtc", tmp);
    qt_calib_set *a = get(model, text, cache, QT_CALIB_CACHE_NEW);
    cr_assert(eq(sz, qt_calib_set_n_rows(a), 64));
    cr_assert(eq(sz, qt_calib_set_n_layers(a), 5));
    size_t nr, ni;
    const float *x = qt_calib_set_rows(a, 4, QT_PROJ_DOWN, &nr, &ni);
    cr_assert(eq(sz, ni, 172));
    double norm = 0;
    for (size_t i = 0; i < nr * ni; i++) norm += fabs(x[i]);
    cr_assert(gt(dbl, norm, 0.0), "rows were captured");
    /* nothing changed: reused, the same rows */
    qt_calib_set *b = get(model, text, cache, QT_CALIB_CACHE_HIT);
    cr_assert(same_rows(a, b));
    qt_calib_set_free(b);
    /* other text at the same path: rebuilt */
    snprintf(t2, sizeof t2, "%s/t.txt", tmp);
    write_file(t2, "Once upon a time there was a cat. The cat sat on a mat.", 55);
    b = get(model, t2, cache, QT_CALIB_CACHE_STALE);
    qt_calib_set_free(b);
    write_file(t2, "Once upon a time there was a dog. The dog sat on a log.", 55);
    b = get(model, t2, cache, QT_CALIB_CACHE_STALE);
    cr_assert(not(same_rows(a, b)));
    qt_calib_set_free(b);
    /* back to the first text, then a truncated cache file: rebuilt, equal */
    qt_calib_set_free(get(model, text, cache, QT_CALIB_CACHE_STALE));
    struct stat sb;
    cr_assert(eq(int, stat(cache, &sb), 0));
    cr_assert(eq(int, truncate(cache, sb.st_size - 100), 0));
    b = get(model, text, cache, QT_CALIB_CACHE_DAMAGED);
    cr_assert(same_rows(a, b));
    qt_calib_set_free(b);
    /* one flipped byte inside the compressed frame: detected */
    FILE *f = fopen(cache, "r+b");
    cr_assert(f != NULL);
    fseek(f, 200, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, 200, SEEK_SET);
    fputc(ch ^ 0x5a, f);
    fclose(f);
    qt_calib_set_free(get(model, text, cache, QT_CALIB_CACHE_DAMAGED));
    qt_calib_set_free(get(model, text, cache, QT_CALIB_CACHE_HIT));
    /* the same files elsewhere: reused; a changed weight byte: rebuilt */
    snprintf(m2, sizeof m2, "%s/model", tmp);
    snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", model, m2);
    cr_assert(eq(int, system(cmd), 0));
    qt_calib_set_free(get(m2, text, cache, QT_CALIB_CACHE_HIT));
    snprintf(cmd, sizeof cmd, "%s/model.safetensors", m2);
    f = fopen(cmd, "r+b");
    cr_assert(f != NULL);
    fseek(f, -1000, SEEK_END);
    ch = fgetc(f);
    fseek(f, -1000, SEEK_END);
    fputc(ch ^ 0x01, f);
    fclose(f);
    qt_calib_set_free(get(m2, text, cache, QT_CALIB_CACHE_STALE));
    qt_calib_set_free(a);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    system(cmd);
}

Test(calib, token_id_files_and_bounded_rows)
{
    QT_NEED_DATA();
    char model[512], tmp[64], ids[600];
    qt_test_data_path(model, sizeof model, MODEL);
    cr_assert(qt_test_tmpdir(tmp, sizeof tmp) != NULL);
    snprintf(ids, sizeof ids, "%s/ids.txt", tmp);
    const char *t = "1 403 407 261 378, 32 300\n412 1 5 6 7 8 9";
    write_file(ids, t, strlen(t));
    qt_calib_set *s = NULL;
    qt_calib_cache_status cs;
    char err[QT_ERRMSG_SIZE] = "";
    qt_calib_opts o = {.n_rows = 1000};
    cr_assert(eq(int, qt_calib_set_get(model, ids, &o, NULL, &s, &cs, NULL, 0, err), QT_OK), "%s",
              err);
    cr_assert(eq(int, cs, QT_CALIB_CACHE_OFF));
    /* 14 ids + one BOS: the rows are bounded by the tokens evaluated */
    cr_assert(eq(sz, qt_calib_set_n_tokens(s), 15));
    cr_assert(eq(sz, qt_calib_set_n_rows(s), 15));
    qt_calib_set_free(s);
    write_file(ids, "1 2 99999", 9);
    cr_assert(eq(int, qt_calib_set_get(model, ids, &o, NULL, &s, &cs, NULL, 0, err),
                 QT_ERR_FORMAT));
    cr_assert(s == NULL);
}

/* ---- the check inside convert ------------------------------------------------ */

/* Converts MODEL to out with the calibration check; returns qt_conv_run's status. */
static qt_status convert_checked(const qt_calib_set *set, const char *out, double max_error,
                                 bool fallback, qt_calib_report *rep, char *err)
{
    char in[512];
    qt_conv_calib cal = {.set = set, .report = rep, .max_error = max_error,
                         .fallback_on = fallback, .fallback = QT_SCHEME_COUNT};
    qt_conv_opts o = {.in = qt_test_data_path(in, sizeof in, MODEL), .out = out,
                      .scheme = QT_SCHEME_NF4, .double_quant = true, .force = true,
                      .check = qt_conv_calib_check, .check_ctx = &cal};
    qt_conv *c = NULL;
    cr_assert(eq(int, qt_conv_plan(&o, &c, err), QT_OK), "%s", err);
    qt_status st = qt_conv_run(c, err);
    qt_conv_free(c);
    return st;
}

static qt_calib_set *build_set(const char *rel, size_t max_bytes_of_text)
{
    char model[512], text[512];
    qt_test_data_path(model, sizeof model, MODEL);
    qt_test_data_path(text, sizeof text, rel);
    FILE *f = fopen(text, "rb");
    cr_assert(f != NULL);
    char *buf = malloc(max_bytes_of_text);
    size_t n = fread(buf, 1, max_bytes_of_text, f);
    fclose(f);
    qt_calib_set *s = NULL;
    char err[QT_ERRMSG_SIZE] = "";
    cr_assert(eq(int, qt_calib_set_build(model, buf, n, false, NULL, &s, err), QT_OK), "%s", err);
    free(buf);
    return s;
}

Test(calib, honest_nf4_passes_default_thresholds_on_stories_and_wiki)
{
    QT_NEED_DATA();
    const char *texts[] = {STORIES, "text/wiki.test.raw"};
    for (int t = 0; t < 2; t++) {
        qt_calib_set *set = build_set(texts[t], 40000); /* wiki: a 40 KB slice */
        char tmp[64], out[600], err[QT_ERRMSG_SIZE] = "";
        cr_assert(qt_test_tmpdir(tmp, sizeof tmp) != NULL);
        snprintf(out, sizeof out, "%s/out", tmp);
        qt_calib_report rep;
        qt_calib_report_init(&rep);
        cr_assert(eq(int, convert_checked(set, out, 0, false, &rep, err), QT_OK), "%s: %s",
                  texts[t], err);
        size_t cnt[QT_VERDICT_COUNT];
        qt_calib_report_counts(&rep, cnt);
        cr_assert(eq(sz, cnt[QT_VERDICT_PASS], 35), "%s", texts[t]);
        qt_output_error m = qt_calib_report_aggregate(&rep, -1, QT_PROJ_COUNT);
        cr_assert(gt(dbl, m.rel, 0.01));
        cr_assert(lt(dbl, m.rel, 0.1), "%s: model error %g", texts[t], m.rel);
        /* validate measures the same numbers on the written bytes */
        qt_calib_report v;
        qt_calib_report_init(&v);
        char model[512];
        cr_assert(eq(int, qt_calib_compare_models(qt_test_data_path(model, sizeof model, MODEL),
                                                  out, set, 0, &v, err),
                     QT_OK),
                  "%s", err);
        cr_assert(eq(sz, v.n, 35));
        for (size_t i = 0; i < v.n; i++) {
            qt_calib_entry *e = qt_calib_report_find(&rep, v.entries[i].name);
            cr_assert(e != NULL);
            cr_assert(eq(dbl, e->oerr.rel, v.entries[i].oerr.rel), "%s", e->name);
        }
        char *js = NULL, *html = NULL;
        cr_assert(eq(int, qt_calib_report_json(&v, &js, err), QT_OK));
        cr_assert(strstr(js, "\"per_projection\"") != NULL);
        cr_assert(eq(int, qt_calib_report_html(&v, &html, err), QT_OK));
        cr_assert(strstr(html, "<svg") != NULL);
        cr_assert(strstr(html, "<script") == NULL);
        qt_free(js);
        qt_free(html);
        qt_calib_report_release(&v);
        qt_calib_report_release(&rep);
        qt_calib_set_free(set);
        char cmd[700];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
        system(cmd);
    }
}

Test(calib, scrambled_codes_in_one_tensor_are_caught_and_named)
{
    QT_NEED_DATA();
    qt_calib_set *set = build_set(STORIES, 1 << 20);
    char tmp[64], out[600], err[QT_ERRMSG_SIZE] = "", model[512];
    cr_assert(qt_test_tmpdir(tmp, sizeof tmp) != NULL);
    snprintf(out, sizeof out, "%s/out", tmp);
    qt_calib_report rep;
    qt_calib_report_init(&rep);
    cr_assert(eq(int, convert_checked(set, out, 0, false, &rep, err), QT_OK), "%s", err);
    qt_calib_report_release(&rep);
    /* measure every tensor of the output, one with its codes scrambled */
    qt_modeldir *mq = NULL, *mo = NULL;
    qt_layout *lq = NULL, *lo = NULL;
    cr_assert(eq(int, qt_modeldir_open(out, &mq, err), QT_OK), "%s", err);
    cr_assert(eq(int, qt_modeldir_open(qt_test_data_path(model, sizeof model, MODEL), &mo, err), QT_OK));
    cr_assert(eq(int, qt_layout_build(mq, &lq, err), QT_OK));
    cr_assert(eq(int, qt_layout_build(mo, &lo, err), QT_OK));
    const char *victim = "model.layers.2.mlp.up_proj.weight";
    size_t n_fail = 0;
    qt_calib_report_init(&rep);
    for (size_t i = 0; i < qt_layout_n(lq); i++) {
        const qt_lweight *w = qt_layout_at(lq, i);
        if (!qt_llama_parse_linear(w->name, NULL, NULL)) continue;
        qt_qweight qq, qo;
        cr_assert(eq(int, qt_layout_qweight(w, &qq, err), QT_OK));
        cr_assert(eq(int, qt_layout_qweight(qt_layout_find(lo, w->name), &qo, err), QT_OK));
        uint8_t *codes = NULL;
        if (!strcmp(w->name, victim)) {
            size_t nb = (qq.n_out * qq.n_in + 1) / 2;
            codes = malloc(nb);
            unsigned long long s = 99;
            for (size_t k = 0; k < nb; k++) codes[k] = (uint8_t)qt_test_rand(&s);
            qq.data = codes;
        }
        qt_calib_entry e;
        cr_assert(eq(int, qt_calib_measure(set, w->name, "nf4+dq", &qo, &qq, 0, &e), QT_OK));
        cr_assert(eq(int, qt_calib_report_add(&rep, &e), QT_OK));
        if (e.verdict == QT_VERDICT_FAIL) {
            n_fail++;
            cr_assert(eq(str, e.name, (char *)victim));
            cr_assert(gt(dbl, e.oerr.rel, 0.5), "scrambled error %g", e.oerr.rel);
        }
        free(codes);
    }
    cr_assert(eq(sz, n_fail, 1));
    char *js = NULL;
    cr_assert(eq(int, qt_calib_report_json(&rep, &js, err), QT_OK));
    cr_assert(strstr(js, "\"fail\": 1") != NULL);
    qt_free(js);
    qt_calib_report_release(&rep);
    qt_layout_free(lq);
    qt_layout_free(lo);
    qt_modeldir_close(mq);
    qt_modeldir_close(mo);
    qt_calib_set_free(set);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    system(cmd);
}

Test(calib, over_threshold_fails_then_fallback_passes_and_is_recorded)
{
    QT_NEED_DATA();
    qt_calib_set *set = build_set(STORIES, 1 << 20);
    char tmp[64], out[600], err[QT_ERRMSG_SIZE] = "", model[512], p[700];
    cr_assert(qt_test_tmpdir(tmp, sizeof tmp) != NULL);
    snprintf(out, sizeof out, "%s/out", tmp);
    qt_calib_report rep;
    qt_calib_report_init(&rep);
    /* a strict threshold: fails, names tensors, writes nothing */
    cr_assert(eq(int, convert_checked(set, out, 0.1, false, &rep, err), QT_ERR_NUMERIC));
    cr_assert(strstr(err, "over the calibration output-error threshold") != NULL, "%s", err);
    size_t cnt[QT_VERDICT_COUNT];
    qt_calib_report_counts(&rep, cnt);
    cr_assert(gt(sz, cnt[QT_VERDICT_FAIL], 0));
    struct stat sb;
    cr_assert(ne(int, stat(out, &sb), 0), "no OUT after a failed check");
    qt_calib_report_release(&rep);
    /* with fallback: passes; the fallbacks are what the report says */
    qt_calib_report_init(&rep);
    cr_assert(eq(int, convert_checked(set, out, 0.1, true, &rep, err), QT_OK), "%s", err);
    qt_calib_report_counts(&rep, cnt);
    cr_assert(gt(sz, cnt[QT_VERDICT_FALLBACK], 0));
    cr_assert(eq(sz, cnt[QT_VERDICT_FAIL], 0));
    cr_assert(eq(sz, cnt[QT_VERDICT_FALLBACK] + cnt[QT_VERDICT_PASS], 35));
    qt_modeldir *mq = NULL;
    qt_layout *lq = NULL;
    cr_assert(eq(int, qt_modeldir_open(out, &mq, err), QT_OK), "%s", err);
    cr_assert(eq(int, qt_layout_build(mq, &lq, err), QT_OK));
    snprintf(p, sizeof p, "%s/config.json", out);
    FILE *f = fopen(p, "rb");
    static char cfg[1 << 16];
    size_t nc = fread(cfg, 1, sizeof cfg - 1, f);
    cfg[nc] = 0;
    fclose(f);
    const qt_st_reader *r = qt_modeldir_shard(mq, 0);
    size_t n_plain_linear = 0;
    for (size_t i = 0; i < qt_layout_n(lq); i++) {
        const qt_lweight *w = qt_layout_at(lq, i);
        if (!qt_llama_parse_linear(w->name, NULL, NULL)) continue;
        qt_calib_entry *e = qt_calib_report_find(&rep, w->name);
        cr_assert(e != NULL, "%s", w->name);
        bool kept = w->kind == QT_LW_PLAIN;
        n_plain_linear += kept;
        cr_assert(eq(int, kept, e->verdict == QT_VERDICT_FALLBACK), "%s", w->name);
        char key[300], mod[300];
        snprintf(key, sizeof key, "qtool.fallback.%s", w->name);
        cr_assert(eq(int, qt_st_reader_metadata_get(r, key) != NULL, kept), "%s", key);
        snprintf(mod, sizeof mod, "\"%.*s\"", (int)(strlen(w->name) - 7), w->name);
        cr_assert(eq(int, strstr(cfg, mod) != NULL, kept), "%s in llm_int8_skip_modules", mod);
        if (kept) cr_assert(gt(dbl, e->oerr.rel, 0.1));
    }
    cr_assert(eq(sz, n_plain_linear, cnt[QT_VERDICT_FALLBACK]));
    /* and the result passes validation at the same threshold */
    qt_calib_report v;
    qt_calib_report_init(&v);
    cr_assert(eq(int, qt_calib_compare_models(qt_test_data_path(model, sizeof model, MODEL), out,
                                              set, 0.1, &v, err),
                 QT_OK));
    qt_calib_report_counts(&v, cnt);
    cr_assert(eq(sz, cnt[QT_VERDICT_FAIL], 0));
    cr_assert(eq(sz, cnt[QT_VERDICT_UNCHECKED], n_plain_linear));
    qt_calib_report_release(&v);
    qt_layout_free(lq);
    qt_modeldir_close(mq);
    qt_calib_report_release(&rep);
    qt_calib_set_free(set);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    system(cmd);
}

Test(calib, bitsandbytes_golden_nf4_validates)
{
    QT_NEED_DATA();
    qt_calib_set *set = build_set(STORIES, 1 << 20);
    char model[512], golden[512], err[QT_ERRMSG_SIZE] = "";
    qt_calib_report v;
    qt_calib_report_init(&v);
    cr_assert(eq(int, qt_calib_compare_models(qt_test_data_path(model, sizeof model, MODEL),
                                              qt_test_data_path(golden, sizeof golden,
                                                                "golden/transformers-bnb-nf4-dq"),
                                              set, 0, &v, err),
                 QT_OK),
              "%s", err);
    size_t cnt[QT_VERDICT_COUNT];
    qt_calib_report_counts(&v, cnt);
    cr_assert(eq(sz, cnt[QT_VERDICT_PASS], 35));
    cr_assert(eq(str, v.entries[0].scheme, "nf4+dq"));
    qt_calib_report_release(&v);
    qt_calib_set_free(set);
}
