/* tests/unit/test_ppl.c: the zstd cache files (formats/zstd_cache.h) and the
 * perplexity / KL-divergence harness (bench/ppl.h): metrics on known
 * distributions; on stories260K and text/tinystories_sample.txt: a model
 * against itself (KL 0, 100% agreement), thread-count invariance, the
 * protocol against a direct evaluation, the BASE cache (hit, damage
 * detected and rebuilt), f32 vs the schemes `convert` writes (bounds from
 * measured values), and a model with one layer's codes scrambled. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "bench/bench.h"
#include "bench/ppl.h"
#include "bench/svg.h"
#include "common/sha256.h"
#include "convert/convert.h"
#include "formats/json.h"
#include "formats/safetensors.h"
#include "formats/zstd_cache.h"
#include "formats/vocab.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "testutil.h"

/* ==== helpers ============================================================= */

static long file_size(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 ? (long)sb.st_size : -1;
}

static void flip_byte(const char *path, long off)
{
    FILE *f = fopen(path, "r+b");
    cr_assert(not(eq(ptr, f, NULL)));
    cr_assert(eq(int, fseek(f, off, SEEK_SET), 0));
    int c = fgetc(f);
    cr_assert(eq(int, fseek(f, off, SEEK_SET), 0));
    fputc(c ^ 0x5a, f);
    fclose(f);
}

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    cr_assert(not(eq(ptr, f, NULL)), "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)sz + 1);
    cr_assert(eq(sz, fread(buf, 1, (size_t)sz, f), (size_t)sz));
    buf[sz] = 0;
    fclose(f);
    *n = (size_t)sz;
    return buf;
}

/* ==== zstd cache files ====================================================== */

static void key_of(const char *s, unsigned char key[32])
{
    qt_sha256(s, strlen(s), key);
}

Test(zstd_cache, roundtrip_and_mismatches)
{
    char dir[64], path[256], err[QT_ERRMSG_SIZE] = "";
    cr_assert(not(eq(ptr, (char *)qt_test_tmpdir(dir, sizeof dir), NULL)));
    snprintf(path, sizeof path, "%s/sub/dir/a.zc", dir); /* parents are created */
    unsigned char key[32], other[32];
    key_of("key", key);
    key_of("other", other);
    size_t n = 300000;
    unsigned char *data = malloc(n);
    unsigned long long s = 7;
    for (size_t i = 0; i < n; i++) data[i] = (unsigned char)(i % 251 < 200 ? i % 7 : qt_test_rand(&s));
    cr_assert(eq(int, qt_zcache_save(path, key, "test-blob", data, n, err), QT_OK), "%s", err);
    cr_assert(lt(long, file_size(path), (long)n)); /* compressed */

    void *back = NULL;
    size_t bn = 0;
    cr_assert(eq(int, qt_zcache_load(path, key, "test-blob", 1u << 30, &back, &bn, err), QT_OK),
              "%s", err);
    cr_assert(eq(sz, bn, n));
    cr_assert(eq(int, memcmp(back, data, n), 0));
    qt_free(back);
    uint64_t ps = 0;
    cr_assert(eq(int, qt_zcache_verify(path, key, "test-blob", &ps, err), QT_OK));
    cr_assert(eq(u64, ps, (uint64_t)n));

    /* another key or kind is a different entry, not damage; absent is IO */
    cr_assert(eq(int, qt_zcache_verify(path, other, "test-blob", NULL, err), QT_ERR_ARG));
    cr_assert(not(eq(ptr, strstr(err, "different cache entry"), NULL)), "%s", err);
    cr_assert(eq(int, qt_zcache_verify(path, key, "other-kind", NULL, err), QT_ERR_ARG));
    char absent[300];
    snprintf(absent, sizeof absent, "%s/none.zc", dir);
    cr_assert(eq(int, qt_zcache_verify(absent, key, "test-blob", NULL, err), QT_ERR_IO));
    /* bad kinds and a too small max_size */
    cr_assert(eq(int, qt_zcache_save(path, key, "", data, 1, err), QT_ERR_ARG));
    cr_assert(eq(int, qt_zcache_save(path, key, "a kind with spaces", data, 1, err), QT_ERR_ARG));
    cr_assert(eq(int, qt_zcache_load(path, key, "test-blob", 1000, &back, &bn, err),
                 QT_ERR_FORMAT));
    cr_assert(eq(ptr, back, NULL));

    /* streaming in odd pieces gives the same file as one call */
    char path2[300];
    snprintf(path2, sizeof path2, "%s/b.zc", dir);
    qt_zcache_writer *w = NULL;
    cr_assert(eq(int, qt_zcache_writer_open(path2, key, "test-blob", 3, &w, err), QT_OK));
    cr_assert(eq(int, access(path2, F_OK), -1)); /* nothing at PATH before close */
    for (size_t off = 0; off < n;) {
        size_t k = (off * 7919 + 13) % 40000 + 1;
        if (k > n - off) k = n - off;
        cr_assert(eq(int, qt_zcache_writer_write(w, data + off, k), QT_OK));
        off += k;
    }
    cr_assert(eq(int, qt_zcache_writer_close(w, err), QT_OK), "%s", err);
    size_t na, nb;
    char *a = slurp(path, &na), *b = slurp(path2, &nb);
    cr_assert(eq(sz, na, nb));
    cr_assert(eq(int, memcmp(a, b, na), 0));
    free(a);
    free(b);

    /* streaming reads in pieces; reading past the end is refused */
    qt_zcache_reader *r = NULL;
    cr_assert(eq(int, qt_zcache_reader_open(path2, key, "test-blob", &r, err), QT_OK));
    cr_assert(eq(u64, qt_zcache_reader_size(r), (uint64_t)n));
    unsigned char *got = malloc(n);
    for (size_t off = 0; off < n;) {
        size_t k = n - off < 12345 ? n - off : 12345;
        cr_assert(eq(int, qt_zcache_reader_read(r, got + off, k, err), QT_OK), "%s", err);
        off += k;
    }
    cr_assert(eq(int, memcmp(got, data, n), 0));
    cr_assert(eq(int, qt_zcache_reader_read(r, got, 1, err), QT_ERR_ARG));
    qt_zcache_reader_close(r);
    qt_zcache_reader_close(NULL);

    /* an aborted writer leaves nothing */
    char path3[300];
    snprintf(path3, sizeof path3, "%s/c.zc", dir);
    cr_assert(eq(int, qt_zcache_writer_open(path3, key, "test-blob", 1, &w, err), QT_OK));
    cr_assert(eq(int, qt_zcache_writer_write(w, data, 1000), QT_OK));
    qt_zcache_writer_abort(w);
    qt_zcache_writer_abort(NULL);
    cr_assert(eq(int, access(path3, F_OK), -1));

    /* an empty payload */
    cr_assert(eq(int, qt_zcache_save(path3, key, "empty", data, 0, err), QT_OK), "%s", err);
    cr_assert(eq(int, qt_zcache_load(path3, key, "empty", 10, &back, &bn, err), QT_OK), "%s", err);
    cr_assert(eq(sz, bn, 0));
    qt_free(back);
    free(got);
    free(data);
}

Test(zstd_cache, damage_is_detected)
{
    char dir[64], path[256], err[QT_ERRMSG_SIZE] = "";
    cr_assert(not(eq(ptr, (char *)qt_test_tmpdir(dir, sizeof dir), NULL)));
    snprintf(path, sizeof path, "%s/a.zc", dir);
    unsigned char key[32];
    key_of("key", key);
    size_t n = 200000;
    float *data = malloc(n * sizeof *data);
    for (size_t i = 0; i < n; i++) data[i] = sinf((float)i * 0.01f);
    cr_assert(eq(int, qt_zcache_save(path, key, "t", data, n * sizeof *data, err), QT_OK));
    long size = file_size(path);
    /* every byte of the header is checked, and bytes across the frame */
    long offs[] = {0, 9, 20, 50, 66, 75, 90, 115, 128, 140, size / 2, size - 5, size - 1};
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
        flip_byte(path, offs[i]);
        qt_status st = qt_zcache_verify(path, key, "t", NULL, err);
        /* a flipped key or kind byte reads as another entry; all else is damage */
        if (offs[i] >= 16 && offs[i] < 64)
            cr_assert(eq(int, (int)(st == QT_ERR_FORMAT || st == QT_ERR_ARG), 1), "offset %ld",
                      offs[i]);
        else
            cr_assert(eq(int, st, QT_ERR_FORMAT), "offset %ld: %s (%s)", offs[i],
                      qt_status_str(st), err);
        void *back = NULL;
        size_t bn;
        cr_assert(not(eq(int, qt_zcache_load(path, key, "t", 1u << 30, &back, &bn, err), QT_OK)));
        cr_assert(eq(ptr, back, NULL));
        flip_byte(path, offs[i]); /* restore */
        cr_assert(eq(int, qt_zcache_verify(path, key, "t", NULL, err), QT_OK), "%s", err);
    }
    /* truncated, and one byte appended */
    cr_assert(eq(int, truncate(path, size - 100), 0));
    cr_assert(eq(int, qt_zcache_verify(path, key, "t", NULL, err), QT_ERR_FORMAT));
    cr_assert(eq(int, qt_zcache_save(path, key, "t", data, n * sizeof *data, err), QT_OK));
    FILE *f = fopen(path, "ab");
    fputc(0, f);
    fclose(f);
    cr_assert(eq(int, qt_zcache_verify(path, key, "t", NULL, err), QT_ERR_FORMAT));
    /* a file that is not a cache at all */
    f = fopen(path, "wb");
    fputs("hello", f);
    fclose(f);
    cr_assert(eq(int, qt_zcache_verify(path, key, "t", NULL, err), QT_ERR_FORMAT));
    free(data);
}

Test(zstd_cache, allocation_failures_are_clean)
{
    char dir[64], path[256], err[QT_ERRMSG_SIZE];
    cr_assert(not(eq(ptr, (char *)qt_test_tmpdir(dir, sizeof dir), NULL)));
    snprintf(path, sizeof path, "%s/a.zc", dir);
    unsigned char key[32];
    key_of("k", key);
    char data[1000];
    memset(data, 'x', sizeof data);
    cr_assert(eq(int, qt_zcache_save(path, key, "t", data, sizeof data, err), QT_OK));
    for (uint64_t k = 1; k <= 4; k++) {
        qt_alloc_fail_after(k);
        void *back = NULL;
        size_t bn;
        qt_status st = qt_zcache_load(path, key, "t", 1u << 20, &back, &bn, err);
        qt_alloc_fail_after(0);
        cr_assert(eq(int, (int)(st == QT_OK || st == QT_ERR_NOMEM), 1));
        if (st == QT_OK) qt_free(back);
        else cr_assert(eq(ptr, back, NULL));
    }
}

/* ==== metrics ================================================================= */

Test(ppl_metrics, known_values)
{
    float lg[4] = {1.0f, 2.0f, 3.0f, -1000.0f}, lp[4];
    qt_ppl_log_softmax(lg, 4, lp);
    double s = 0;
    for (int i = 0; i < 4; i++) s += exp((double)lp[i]);
    cr_assert(epsilon_eq(dbl, s, 1.0, 1e-6));
    cr_assert(epsilon_eq(dbl, (double)lp[2] - (double)lp[1], 1.0, 1e-6));

    /* KL([.5 .5] || [.9 .1]) = .5 ln(.5/.9) + .5 ln(.5/.1) */
    float p[2] = {logf(0.5f), logf(0.5f)}, q[2] = {logf(0.9f), logf(0.1f)};
    double want = 0.5 * log(0.5 / 0.9) + 0.5 * log(0.5 / 0.1);
    cr_assert(epsilon_eq(dbl, qt_ppl_kl(p, q, 2), want, 1e-6));
    cr_assert(eq(dbl, qt_ppl_kl(p, p, 2), 0.0));
    /* a zero-probability term counts 0 even against -inf */
    float z[2] = {0.0f, -INFINITY}, zq[2] = {logf(0.5f), -INFINITY};
    cr_assert(epsilon_eq(dbl, qt_ppl_kl(z, zq, 2), log(2.0), 1e-6));

    double v[100];
    for (int i = 0; i < 100; i++) v[i] = 100 - i; /* 100 .. 1 */
    cr_assert(eq(dbl, qt_ppl_quantile(v, 100, 0.99), 99.0));
    cr_assert(eq(dbl, qt_ppl_quantile(v, 100, 1.0), 100.0));
    cr_assert(eq(dbl, qt_ppl_quantile(v, 100, 0.0), 1.0));
    cr_assert(eq(dbl, qt_ppl_quantile(v, 100, 0.5), 50.5));
    cr_assert(eq(dbl, qt_ppl_quantile(v, 99, 0.5), 50.0));
    cr_assert(eq(dbl, qt_ppl_quantile(v, 0, 0.5), 0.0));
    cr_assert(eq(str, (char *)qt_ppl_score_name(QT_PPL_SCORE_ALL), "all"));
}

Test(ppl_svg, writes_a_document)
{
    char dir[64], path[256], err[QT_ERRMSG_SIZE];
    cr_assert(not(eq(ptr, (char *)qt_test_tmpdir(dir, sizeof dir), NULL)));
    snprintf(path, sizeof path, "%s/c.svg", dir);
    qt_svg_point pts[3] = {{32, 0, "f32"}, {16, 1e-6, "a<b&c"}, {4.5, 0.3, "nf4"}};
    qt_svg_panel p[2] = {{"KL", "bpw", "nats", true, 1e-7, pts, 3},
                         {"ratio", "bpw", "x", false, 0, pts, 3}};
    FILE *f = fopen(path, "w");
    cr_assert(eq(int, qt_svg_write_panels(f, "title", p, 2, err), QT_OK));
    fclose(f);
    size_t n;
    char *s = slurp(path, &n);
    cr_assert(eq(int, strncmp(s, "<?xml", 5), 0));
    cr_assert(not(eq(ptr, strstr(s, "</svg>"), NULL)));
    cr_assert(not(eq(ptr, strstr(s, "a&lt;b&amp;c"), NULL)));
    cr_assert(eq(ptr, strstr(s, "a<b"), NULL));
    int circles = 0;
    for (const char *c = s; (c = strstr(c, "<circle")); c++) circles++;
    cr_assert(eq(int, circles, 6));
    cr_assert(eq(ptr, strstr(s, "nan"), NULL));
    free(s);
    cr_assert(eq(int, qt_svg_write_panels(stdout, "t", p, 0, err), QT_ERR_ARG));
}

/* ==== the harness on stories260K ============================================== */

static char g_model[512], g_text_path[512];
static char *g_text;
static size_t g_text_n;

static void load_data(void)
{
    QT_NEED_DATA();
    qt_test_data_path(g_model, sizeof g_model, "models/stories260K-f32");
    qt_test_data_path(g_text_path, sizeof g_text_path, "text/tinystories_sample.txt");
    g_text = slurp(g_text_path, &g_text_n);
}

static qt_ppl_result *compare(const char *const *models, size_t n, size_t ctx, size_t chunks,
                              qt_ppl_score score, const char *cache_dir, const char *tmp_dir)
{
    char err[QT_ERRMSG_SIZE] = "";
    qt_ppl_opts o = {.ctx = ctx, .max_chunks = chunks, .score = score, .cache_dir = cache_dir,
                     .tmp_dir = tmp_dir};
    qt_ppl_result *r = NULL;
    qt_status st = qt_ppl_compare(models, n, g_text, g_text_n, &o, &r, err);
    cr_assert(eq(int, st, QT_OK), "%s", err);
    return r;
}

static void convert_to(const char *out, qt_scheme scheme, bool dq)
{
    char err[QT_ERRMSG_SIZE] = "";
    qt_conv_opts o = {.in = g_model, .out = out, .scheme = scheme, .double_quant = dq};
    qt_conv *c = NULL;
    cr_assert(eq(int, qt_conv_plan(&o, &c, err), QT_OK), "%s", err);
    cr_assert(eq(int, qt_conv_run(c, err), QT_OK), "%s", err);
    qt_conv_free(c);
}

/* NF4 of the bf16 model: by default every dequantized weight is rounded to
 * bf16 as bitsandbytes returns it (quant_state dtype bfloat16), which moves
 * the logits a little against the exact fp32 dequantization (dq_fp32). */
Test(ppl, nf4_of_bf16_model_rounds_weights_to_bf16_by_default, .init = load_data)
{
    char dir[64], q[128], src[512], err[QT_ERRMSG_SIZE] = "";
    cr_assert(not(eq(ptr, (char *)qt_test_tmpdir(dir, sizeof dir), NULL)));
    snprintf(q, sizeof q, "%s/nf4-bf16", dir);
    qt_test_data_path(src, sizeof src, "models/stories260K-bf16");
    qt_conv_opts co = {.in = src, .out = q, .scheme = QT_SCHEME_NF4, .double_quant = true};
    qt_conv *c = NULL;
    cr_assert(eq(int, qt_conv_plan(&co, &c, err), QT_OK), "%s", err);
    cr_assert(eq(int, qt_conv_run(c, err), QT_OK), "%s", err);
    qt_conv_free(c);
    const int32_t toks[4] = {1, 403, 407, 261};
    float lg[2][4 * 512];
    for (int v = 0; v < 2; v++) {
        qt_model_opts mo = {.n_ctx = 16, .dq_fp32 = v == 1};
        qt_model *m = NULL;
        cr_assert(eq(int, qt_model_open(q, &mo, &m, err), QT_OK), "%s", err);
        cr_assert(eq(sz, qt_model_get_config(m)->vocab_size, 512));
        cr_assert(eq(int, qt_model_eval(m, toks, 4, 0, lg[v]), QT_OK));
        qt_model_free(m);
    }
    double worst = 0;
    size_t differ = 0;
    for (size_t i = 0; i < 4 * 512; i++) {
        worst = fmax(worst, fabs((double)lg[0][i] - lg[1][i]));
        differ += lg[0][i] != lg[1][i];
    }
    cr_assert(gt(sz, differ, 0));    /* the rounding reaches the logits */
    cr_assert(lt(dbl, worst, 0.25)); /* and stays a rounding (bf16: 2^-9 relative) */
}

static bool same_double(double a, double b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

/* A vocabulary over 8192 keeps the cached distributions in fp16 but each
 * scored token's log-prob in fp32: BASE's perplexity from the cache equals,
 * bit for bit, that of the same model evaluated again (fp16-rounded
 * log-probs would move it by ~1e-4 relative). */
Test(ppl, large_vocab_base_ppl_is_exact_from_fp16_cache, .init = load_data)
{
    char dir[64], syn[128], err[QT_ERRMSG_SIZE] = "";
    cr_assert(not(eq(ptr, (char *)qt_test_tmpdir(dir, sizeof dir), NULL)));
    snprintf(syn, sizeof syn, "%s/syn9000", dir);
    qt_bench_synth_opts so = {.hidden = 64, .intermediate = 128, .layers = 1, .heads = 2,
                              .kv_heads = 1, .vocab = 9000, .dtype = "fp32", .seed = 3};
    cr_assert(eq(int, qt_bench_synth(&so, syn, NULL, err), QT_OK), "%s", err);
    const char *m[2] = {syn, syn};
    qt_ppl_opts o = {.ctx = 64, .max_chunks = 4, .tokenizer = g_model, .tmp_dir = dir};
    qt_ppl_result *r = NULL;
    cr_assert(eq(int, qt_ppl_compare(m, 2, g_text, g_text_n, &o, &r, err), QT_OK), "%s", err);
    cr_assert(eq(sz, r->value_bytes, 2)); /* the distributions are cached in fp16 */
    cr_assert(eq(int, (int)same_double(r->models[0].ppl, r->models[1].ppl), 1), "%.17g vs %.17g",
              r->models[0].ppl, r->models[1].ppl);
    cr_assert(gt(dbl, r->models[0].ppl, 1.0));
    qt_ppl_result_free(r);
}

Test(ppl, model_against_itself, .init = load_data)
{
    char dir[64];
    cr_assert(not(eq(ptr, (char *)qt_test_tmpdir(dir, sizeof dir), NULL)));
    const char *m[2] = {g_model, g_model};
    qt_ppl_result *r = compare(m, 2, 128, 0, QT_PPL_SCORE_HALF, NULL, dir);
    /* protocol: every whole chunk of 128, positions 64..126 */
    cr_assert(gt(sz, r->n_tokens, 1000));
    cr_assert(eq(sz, r->n_chunks, r->n_tokens / 128));
    cr_assert(eq(sz, r->first, 64));
    cr_assert(eq(sz, r->n_per_chunk, 63));
    cr_assert(eq(sz, r->vocab, 512));
    cr_assert(eq(sz, r->value_bytes, 4));
    for (int i = 0; i < 2; i++) {
        const qt_ppl_model *x = &r->models[i];
        cr_assert(eq(sz, x->n_scored, r->n_chunks * 63));
        cr_assert(eq(dbl, x->kl_mean, 0.0));
        cr_assert(eq(dbl, x->kl_max, 0.0));
        cr_assert(eq(dbl, x->top1, 1.0));
        cr_assert(eq(dbl, x->dp_p99, 0.0));
        cr_assert(eq(dbl, x->ppl_ratio, 1.0));
        cr_assert(eq(dbl, x->bpw, 32.0));
        cr_assert(eq(u64, x->n_params, 260032));
    }
    cr_assert(eq(int, (int)same_double(r->models[0].ppl, r->models[1].ppl), 1));
    /* a small story model on TinyStories text: low perplexity */
    cr_assert(gt(dbl, r->models[0].ppl, 2.0));
    cr_assert(lt(dbl, r->models[0].ppl, 15.0));
    cr_assert(gt(dbl, r->models[0].ppl_err, 0.0));
    cr_assert(lt(dbl, r->models[0].ppl_err, r->models[0].ppl * 0.3));
    /* the temporary BASE file is gone */
    cr_assert(eq(int, rmdir(dir), 0));
    qt_ppl_result_free(r);
    qt_ppl_result_free(NULL);
}

/* The protocol, recomputed directly with the model: one chunk. */
Test(ppl, protocol_matches_direct_evaluation, .init = load_data)
{
    char dir[64], err[QT_ERRMSG_SIZE] = "";
    cr_assert(not(eq(ptr, (char *)qt_test_tmpdir(dir, sizeof dir), NULL)));
    const size_t ctx = 256;
    const char *m[1] = {g_model};
    for (int mode = 0; mode < 2; mode++) {
        qt_ppl_result *r = compare(m, 1, ctx, 2, (qt_ppl_score)mode, NULL, dir);
        cr_assert(eq(sz, r->n_chunks, 2));
        cr_assert(eq(sz, r->n_per_chunk, mode == 0 ? ctx - 1 - ctx / 2 : ctx - 1));

        qt_model *mod = NULL;
        qt_model_opts mo = {.n_ctx = ctx};
        cr_assert(eq(int, qt_model_open(g_model, &mo, &mod, err), QT_OK), "%s", err);
        /* the same text tokenized here, BOS first */
        qt_vocab *v = NULL;
        char tp[600];
        snprintf(tp, sizeof tp, "%s/tokenizer.json", g_model);
        cr_assert(eq(int, qt_vocab_load_hf_json(tp, &v, err), QT_OK), "%s", err);
        qt_tokenizer *tok = NULL;
        cr_assert(eq(int, qt_tokenizer_new(v, &tok), QT_OK));
        int32_t *ids = NULL;
        size_t n = 0;
        cr_assert(eq(int, qt_tokenizer_encode(tok, g_text, g_text_n, true, &ids, &n), QT_OK));
        cr_assert(eq(sz, n, r->n_tokens));
        float *logits = malloc(ctx * 512 * sizeof *logits), lp[512];
        double nll = 0;
        size_t cnt = 0;
        for (size_t c = 0; c < 2; c++) {
            int32_t chunk[256];
            memcpy(chunk, ids + c * ctx, sizeof chunk);
            chunk[0] = qt_tokenizer_bos(tok);
            cr_assert(eq(int, qt_model_eval(mod, chunk, ctx, 0, logits), QT_OK));
            for (size_t j = mode == 0 ? ctx / 2 : 0; j + 1 < ctx; j++, cnt++) {
                qt_ppl_log_softmax(logits + j * 512, 512, lp);
                nll -= lp[ids[c * ctx + j + 1]];
            }
        }
        cr_assert(eq(sz, cnt, r->models[0].n_scored));
        cr_assert(epsilon_eq(dbl, exp(nll / (double)cnt), r->models[0].ppl, 1e-9 * r->models[0].ppl));
        free(logits);
        qt_free(ids);
        qt_tokenizer_free(tok);
        qt_vocab_free(v);
        qt_model_free(mod);
        qt_ppl_result_free(r);
    }
}

/* 2 and 3 threads: a tiny model runs one chunk per thread (a partial last
 * group with 3), with the same figures as 1 thread. */
Test(ppl, identical_with_1_2_and_3_threads, .init = load_data)
{
#ifndef _OPENMP
    cr_skip_test("built without OpenMP");
#else
    char dir[64], q[128];
    cr_assert(not(eq(ptr, (char *)qt_test_tmpdir(dir, sizeof dir), NULL)));
    snprintf(q, sizeof q, "%s/nf4", dir);
    convert_to(q, QT_SCHEME_NF4, true);
    const char *m[2] = {g_model, q};
    omp_set_num_threads(1);
    qt_ppl_result *a = compare(m, 2, 128, 0, QT_PPL_SCORE_HALF, NULL, dir);
    cr_assert(eq(int, a->threads, 1));
    for (int th = 2; th <= 3; th++) {
        omp_set_num_threads(th);
        qt_ppl_result *b = compare(m, 2, 128, 0, QT_PPL_SCORE_HALF, NULL, dir);
        cr_assert(eq(int, b->threads, th));
        for (int i = 0; i < 2; i++) {
            const qt_ppl_model *x = &a->models[i], *y = &b->models[i];
            cr_assert(eq(int, (int)same_double(x->ppl, y->ppl), 1), "model %d: %.17g vs %.17g", i,
                      x->ppl, y->ppl);
            cr_assert(eq(int, (int)same_double(x->ppl_err, y->ppl_err), 1));
            cr_assert(eq(int, (int)same_double(x->kl_mean, y->kl_mean), 1));
            cr_assert(eq(int, (int)same_double(x->kl_p99, y->kl_p99), 1));
            cr_assert(eq(int, (int)same_double(x->top1, y->top1), 1));
            cr_assert(eq(int, (int)same_double(x->dp_mean, y->dp_mean), 1));
        }
        qt_ppl_result_free(b);
    }
    cr_assert(gt(dbl, a->models[1].kl_mean, 0.0)); /* a real comparison */
    qt_ppl_result_free(a);
#endif
}

Test(ppl, base_cache_hit_and_damage, .init = load_data)
{
    char dir[64], cache[128], q[128];
    cr_assert(not(eq(ptr, (char *)qt_test_tmpdir(dir, sizeof dir), NULL)));
    snprintf(cache, sizeof cache, "%s/cache/qtool", dir);
    snprintf(q, sizeof q, "%s/q8", dir);
    convert_to(q, QT_SCHEME_Q8, false);
    const char *m[2] = {g_model, q};
    qt_ppl_result *a = compare(m, 2, 128, 5, QT_PPL_SCORE_HALF, cache, NULL);
    cr_assert(not(a->models[0].from_cache));
    cr_assert(gt(long, file_size(a->cache_path), 1000));
    cr_assert(eq(str, a->cache_note, ""));
    qt_ppl_result *b = compare(m, 2, 128, 5, QT_PPL_SCORE_HALF, cache, NULL);
    cr_assert(b->models[0].from_cache);
    cr_assert(eq(str, a->cache_path, b->cache_path));
    cr_assert(eq(dbl, a->models[0].tok_s, b->models[0].tok_s)); /* stored with the cache */
    for (int i = 0; i < 2; i++) {
        cr_assert(eq(int, (int)same_double(a->models[i].ppl, b->models[i].ppl), 1));
        cr_assert(eq(int, (int)same_double(a->models[i].kl_mean, b->models[i].kl_mean), 1));
    }
    /* other settings are another entry */
    qt_ppl_result *c = compare(m, 1, 128, 4, QT_PPL_SCORE_HALF, cache, NULL);
    cr_assert(not(c->models[0].from_cache));
    cr_assert(not(eq(str, c->cache_path, a->cache_path)));
    qt_ppl_result_free(c);
    c = compare(m, 1, 128, 5, QT_PPL_SCORE_ALL, cache, NULL);
    cr_assert(not(c->models[0].from_cache));
    qt_ppl_result_free(c);
    /* damage in the middle of the file: detected, rebuilt, same numbers */
    flip_byte(a->cache_path, file_size(a->cache_path) / 2);
    c = compare(m, 2, 128, 5, QT_PPL_SCORE_HALF, cache, NULL);
    cr_assert(not(c->models[0].from_cache));
    cr_assert(not(eq(str, c->cache_note, "")));
    for (int i = 0; i < 2; i++)
        cr_assert(eq(int, (int)same_double(a->models[i].kl_mean, c->models[i].kl_mean), 1));
    qt_ppl_result_free(c);
    c = compare(m, 2, 128, 5, QT_PPL_SCORE_HALF, cache, NULL);
    cr_assert(c->models[0].from_cache);
    qt_ppl_result_free(c);
    qt_ppl_result_free(a);
    qt_ppl_result_free(b);
}

Test(ppl, bad_input, .init = load_data)
{
    char err[QT_ERRMSG_SIZE] = "";
    const char *m[2] = {g_model, "/nonexistent/model"};
    qt_ppl_opts o = {.ctx = 128};
    qt_ppl_result *r = NULL;
    cr_assert(eq(int, qt_ppl_compare(m, 1, "Once upon a time", 16, &o, &r, err), QT_ERR_ARG));
    cr_assert(not(eq(ptr, strstr(err, "fewer than one chunk"), NULL)), "%s", err);
    cr_assert(eq(ptr, r, NULL));
    cr_assert(not(eq(int, qt_ppl_compare(m, 2, g_text, g_text_n, &o, &r, err), QT_OK)));
    cr_assert(not(eq(ptr, strstr(err, "nonexistent"), NULL)), "%s", err);
    o.ctx = 1024; /* beyond stories260K's 512 */
    cr_assert(eq(int, qt_ppl_compare(m, 1, g_text, g_text_n, &o, &r, err), QT_ERR_ARG));
    o.ctx = 3;
    cr_assert(eq(int, qt_ppl_compare(m, 1, g_text, g_text_n, &o, &r, err), QT_ERR_ARG));
    /* allocation failures anywhere leave nothing behind (ASan checks leaks) */
    o.ctx = 64;
    o.max_chunks = 2;
    char dir[64];
    cr_assert(not(eq(ptr, (char *)qt_test_tmpdir(dir, sizeof dir), NULL)));
    o.tmp_dir = dir;
    for (uint64_t k = 1; k < 400; k += 7) {
        qt_alloc_fail_after(k);
        qt_status st = qt_ppl_compare(m, 1, g_text, g_text_n, &o, &r, err);
        qt_alloc_fail_after(0);
        if (st == QT_OK) {
            qt_ppl_result_free(r);
            break;
        }
        cr_assert(eq(ptr, r, NULL));
    }
    cr_assert(eq(int, rmdir(dir), 0)); /* no temporary file left */
}

/* Bounds from measured values (ctx 128, the whole sample: 14 chunks, 882
 * scored positions; figures in the comments): KL within about 3x of what
 * was measured either way (a model left unquantized fails the lower bound,
 * a broken kernel the upper one: one scrambled layer gives KL 3.6, see
 * corrupted_layer_shows_up), PPL ratio within a few times its deviation
 * from 1. */
Test(ppl, schemes_against_f32, .init = load_data, .timeout = 300)
{
    char dir[64];
    cr_assert(not(eq(ptr, (char *)qt_test_tmpdir(dir, sizeof dir), NULL)));
    struct {
        const char *name;
        qt_scheme s;
        bool dq;
        double kl_lo, kl_hi, kl_p99_hi, top1_lo, ratio_lo, ratio_hi, dp_hi;
    } cases[] = {
        /* measured: KL mean 1.13e-6, p99 1.11e-5, top1 .9989, ratio .99988, |dp| 1.6e-4 */
        {"fp16", QT_SCHEME_FP16, false, 2e-7, 4e-6, 4e-5, 0.995, 0.9995, 1.0005, 5e-4},
        /* 9.3e-5, 8.2e-4, .9955, .9992, 1.5e-3 */
        {"bf16", QT_SCHEME_BF16, false, 2e-5, 3e-4, 2.5e-3, 0.985, 0.997, 1.003, 4e-3},
        /* 5.6e-4, 5.0e-3, .9807, .9985, 3.7e-3 */
        {"int8", QT_SCHEME_INT8, false, 1e-4, 1.5e-3, 1.5e-2, 0.96, 0.993, 1.007, 8e-3},
        /* 4.4e-4, 4.6e-3, .9864, .9998, 3.2e-3 */
        {"q8", QT_SCHEME_Q8, false, 1e-4, 1.5e-3, 1.5e-2, 0.96, 0.993, 1.007, 8e-3},
        /* 0.133, 1.18, .821, 1.134, 0.062 */
        {"nf4", QT_SCHEME_NF4, false, 0.04, 0.3, 2.5, 0.72, 1.05, 1.22, 0.1},
        /* 0.134, 1.13, .823, 1.135, 0.062 */
        {"nf4-dq", QT_SCHEME_NF4, true, 0.04, 0.3, 2.5, 0.72, 1.05, 1.22, 0.1},
        /* 0.284, 2.32, .718, 1.273, 0.100 */
        {"fp4-dq", QT_SCHEME_FP4, true, 0.1, 0.55, 4.0, 0.6, 1.12, 1.45, 0.17},
    };
    enum { N = sizeof cases / sizeof cases[0] };
    char paths[N][128];
    const char *m[N + 1] = {g_model};
    for (size_t i = 0; i < N; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/%s", dir, cases[i].name);
        convert_to(paths[i], cases[i].s, cases[i].dq);
        m[i + 1] = paths[i];
    }
    qt_ppl_result *r = compare(m, N + 1, 128, 0, QT_PPL_SCORE_HALF, NULL, dir);
    for (size_t i = 0; i < N; i++) {
        const qt_ppl_model *x = &r->models[i + 1];
        fprintf(stderr, "%-7s bpw %5.2f ppl %.4f ratio %.5f kl mean %.3e med %.3e p99 %.3e max "
                "%.3e top1 %.4f dp mean %.3e p99 %.3e\n", cases[i].name, x->bpw, x->ppl,
                x->ppl_ratio, x->kl_mean, x->kl_median, x->kl_p99, x->kl_max, x->top1,
                x->dp_mean, x->dp_p99);
        cr_assert(gt(dbl, x->kl_mean, cases[i].kl_lo), "%s: KL too small (not quantized?)",
                  cases[i].name);
        cr_assert(lt(dbl, x->kl_mean, cases[i].kl_hi), "%s", cases[i].name);
        cr_assert(lt(dbl, x->kl_p99, cases[i].kl_p99_hi), "%s", cases[i].name);
        cr_assert(le(dbl, x->kl_median, x->kl_p99), "%s", cases[i].name);
        cr_assert(le(dbl, x->kl_p99, x->kl_max), "%s", cases[i].name);
        cr_assert(gt(dbl, x->top1, cases[i].top1_lo), "%s", cases[i].name);
        cr_assert(gt(dbl, x->ppl_ratio, cases[i].ratio_lo), "%s", cases[i].name);
        cr_assert(lt(dbl, x->ppl_ratio, cases[i].ratio_hi), "%s", cases[i].name);
        cr_assert(lt(dbl, x->dp_mean, cases[i].dp_hi), "%s", cases[i].name);
        cr_assert(eq(sz, x->n_scored, r->models[0].n_scored));
    }
    /* order: 16-bit < 8-bit < 4-bit in KL; bits per weight as stored */
    cr_assert(lt(dbl, r->models[1].kl_mean, r->models[2].kl_mean));
    cr_assert(lt(dbl, r->models[2].kl_mean, r->models[5].kl_mean));
    cr_assert(lt(dbl, r->models[4].kl_mean, r->models[6].kl_mean));
    cr_assert(lt(dbl, r->models[6].kl_mean, r->models[7].kl_mean)); /* nf4 beats fp4 */
    cr_assert(eq(dbl, r->models[1].bpw, 16.0));
    cr_assert(lt(dbl, r->models[5].bpw, 9.0)); /* nf4: codes + f32 absmax, embedding f32 */
    cr_assert(gt(dbl, r->models[5].bpw, 4.0));

    /* the JSON report parses and holds every model; the SVG has a point each */
    char jp[128], sp[128], err[QT_ERRMSG_SIZE];
    snprintf(jp, sizeof jp, "%s/r.json", dir);
    snprintf(sp, sizeof sp, "%s/r.svg", dir);
    FILE *f = fopen(jp, "w");
    cr_assert(eq(int, qt_ppl_write_json(r, f, err), QT_OK));
    fclose(f);
    cJSON *j = NULL;
    cr_assert(eq(int, qt_json_parse_file(jp, 1 << 20, &j, err), QT_OK), "%s", err);
    cJSON *models = cJSON_GetObjectItemCaseSensitive(j, "models");
    cr_assert(eq(int, cJSON_GetArraySize(models), N + 1));
    cJSON *m5 = cJSON_GetArrayItem(models, 5);
    cr_assert(epsilon_eq(dbl, cJSON_GetObjectItemCaseSensitive(m5, "kl_mean")->valuedouble,
                         r->models[5].kl_mean, 1e-9 * r->models[5].kl_mean));
    cr_assert(eq(str, cJSON_GetObjectItemCaseSensitive(j, "score")->valuestring, "half"));
    cJSON_Delete(j);
    cr_assert(eq(int, qt_ppl_write_svg(r, sp, err), QT_OK), "%s", err);
    size_t n;
    char *s = slurp(sp, &n);
    int circles = 0;
    for (const char *c = s; (c = strstr(c, "<circle")); c++) circles++;
    cr_assert(eq(int, circles, 2 * (N + 1)));
    cr_assert(not(eq(ptr, strstr(s, ">nf4-dq<"), NULL)));
    free(s);
    qt_ppl_result_free(r);
}

/* Codes of one layer scrambled in a converted nf4 model: a large KL. */
Test(ppl, corrupted_layer_shows_up, .init = load_data)
{
    char dir[64], good[128], bad[128], st_path[160], err[QT_ERRMSG_SIZE];
    cr_assert(not(eq(ptr, (char *)qt_test_tmpdir(dir, sizeof dir), NULL)));
    snprintf(good, sizeof good, "%s/nf4", dir);
    snprintf(bad, sizeof bad, "%s/nf4-bad", dir);
    convert_to(good, QT_SCHEME_NF4, true);
    convert_to(bad, QT_SCHEME_NF4, true);
    snprintf(st_path, sizeof st_path, "%s/model.safetensors", bad);
    qt_st_reader *rd = NULL;
    cr_assert(eq(int, qt_st_reader_open(st_path, &rd, err), QT_OK), "%s", err);
    const qt_st_tensor *t = qt_st_reader_find(rd, "model.layers.2.mlp.down_proj.weight");
    cr_assert(not(eq(ptr, (void *)t, NULL)));
    uint64_t off = t->file_offset, nb = t->nbytes;
    qt_st_reader_close(rd);
    cr_assert(gt(u64, nb, 1000));
    FILE *f = fopen(st_path, "r+b");
    cr_assert(eq(int, fseek(f, (long)off, SEEK_SET), 0));
    unsigned long long s = 12345;
    for (uint64_t i = 0; i < nb; i++) fputc((int)(qt_test_rand(&s) >> 56), f);
    fclose(f);

    const char *m[3] = {g_model, good, bad};
    qt_ppl_result *r = compare(m, 3, 128, 0, QT_PPL_SCORE_HALF, NULL, dir);
    const qt_ppl_model *g = &r->models[1], *b = &r->models[2];
    fprintf(stderr, "nf4 kl %.4f top1 %.4f ratio %.4f; scrambled kl %.4f top1 %.4f ratio %.4f\n",
            g->kl_mean, g->top1, g->ppl_ratio, b->kl_mean, b->top1, b->ppl_ratio);
    cr_assert(gt(dbl, b->kl_mean, 4.0 * g->kl_mean));
    cr_assert(gt(dbl, b->kl_mean, 0.5));
    cr_assert(lt(dbl, b->top1, g->top1 - 0.1));
    cr_assert(gt(dbl, b->ppl_ratio, 1.3));
    qt_ppl_result_free(r);
}

/* BASE alone without a cache keeps only the scored tokens' log-probs and
 * runs every chunk in one parallel loop: the same figures, to the bit, as
 * BASE scored from a full persistent cache, for 1, 2 and 3 threads (3: the
 * chunks do not divide evenly). */
Test(ppl, base_alone_temporary_matches_cached, .init = load_data)
{
    char dir[64], cache[128];
    cr_assert(not(eq(ptr, (char *)qt_test_tmpdir(dir, sizeof dir), NULL)));
    snprintf(cache, sizeof cache, "%s/cache", dir);
    const char *m[1] = {g_model};
    qt_ppl_result *want = compare(m, 1, 128, 0, QT_PPL_SCORE_HALF, cache, NULL);
    cr_assert(gt(sz, want->n_chunks, 3));
    for (int th = 1; th <= 3; th++) {
#ifdef _OPENMP
        omp_set_num_threads(th);
#endif
        qt_ppl_result *got = compare(m, 1, 128, 0, QT_PPL_SCORE_HALF, NULL, dir);
        const qt_ppl_model *x = &want->models[0], *y = &got->models[0];
        cr_assert(eq(int, (int)same_double(x->ppl, y->ppl), 1), "%d threads: %.17g vs %.17g", th,
                  x->ppl, y->ppl);
        cr_assert(eq(int, (int)same_double(x->ppl_err, y->ppl_err), 1));
        cr_assert(eq(int, (int)same_double(x->nll, y->nll), 1));
        cr_assert(eq(sz, x->n_scored, y->n_scored));
        qt_ppl_result_free(got);
    }
    qt_ppl_result_free(want);
}
