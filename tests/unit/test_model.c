/* tests/unit/test_model.c: the forward pass (model/model.h) on stories260K:
 * greedy decoding reproduces llama2.c's sample, the f16 / bf16 copies and
 * the real bitsandbytes NF4 / LLM.int8 outputs run (their agreement with the
 * f32 run is reported), the GGUF copy gives the same logits as the
 * safetensors one, quantized logits match a slow fp64 reference over the
 * dequantized weights, batching and thread count do not change a bit, and
 * unsupported configurations are refused. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "common/common.h"
#include "formats/vocab.h"
#include "model/model.h"
#include "model/model_internal.h"
#include "model/tokenizer.h"
#include "testutil.h"

/* Named tolerances. */
#define GGUF_LOGIT_TOL 1e-4     /* |safetensors - GGUF| logits, same F32 weights */
#define REF_LOGIT_TOL 2e-3      /* |qtool - fp64 reference| logits (|logit| <~ 20) */
#define N_GREEDY 256            /* tokens of the lily story */
#define MIN_HALF_PREFIX 64      /* f16 / bf16 keep at least this many greedy tokens */
#define MIN_QUANT_PREFIX 8      /* nf4 / int8 keep at least this many */

/* ---- helpers -------------------------------------------------------------- */

static qt_model *open_model(const char *rel, const qt_model_opts *opts)
{
    char path[1024], err[QT_ERRMSG_SIZE] = "";
    qt_model *m = NULL;
    qt_test_data_path(path, sizeof path, rel);
    qt_status st = qt_model_open(path, opts, &m, err);
    cr_assert(eq(int, st, QT_OK), "%s: %s", rel, err);
    return m;
}

static char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    cr_assert(ne(ptr, f, NULL), "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)sz + 1);
    cr_assert(ne(ptr, buf, NULL));
    cr_assert(eq(sz, (long)fread(buf, 1, (size_t)sz, f), sz));
    buf[sz] = 0;
    fclose(f);
    *n = (size_t)sz;
    return buf;
}

/* Greedy decoding of n tokens after BOS (id 1) into out. */
static void greedy(qt_model *m, size_t n, int32_t *out)
{
    size_t V = qt_model_get_config(m)->vocab_size;
    float *logits = malloc(V * sizeof *logits);
    int32_t tok = 1;
    qt_model_reset(m);
    for (size_t i = 0; i < n; i++) {
        qt_status st = qt_model_eval_last(m, &tok, 1, i, logits);
        cr_assert(eq(int, st, QT_OK), "%s", qt_model_errmsg(m));
        tok = qt_sample_argmax(logits, V);
        out[i] = tok;
    }
    free(logits);
}

static size_t common_prefix(const int32_t *a, const int32_t *b, size_t n)
{
    size_t i = 0;
    while (i < n && a[i] == b[i]) i++;
    return i;
}

static size_t n_equal(const int32_t *a, const int32_t *b, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += a[i] == b[i];
    return k;
}

static qt_tokenizer *stories_tokenizer(void)
{
    char path[1024], err[QT_ERRMSG_SIZE] = "";
    qt_vocab *v = NULL;
    qt_tokenizer *t = NULL;
    qt_test_data_path(path, sizeof path, "models/stories260K-f32/tokenizer.json");
    cr_assert(eq(int, qt_vocab_load_hf_json(path, &v, err), QT_OK), "%s", err);
    cr_assert(eq(int, qt_tokenizer_new(v, &t), QT_OK));
    qt_vocab_free(v);
    return t;
}

/* The f32 model's greedy tokens (computed once per test process). */
static const int32_t *reference_tokens(void)
{
    static int32_t toks[N_GREEDY];
    static int done;
    if (!done) {
        qt_model *m = open_model("models/stories260K-f32", NULL);
        greedy(m, N_GREEDY, toks);
        qt_model_free(m);
        done = 1;
    }
    return toks;
}

/* ---- greedy text ---------------------------------------------------------- */

Test(model, greedy_256_tokens_reproduce_lily_story)
{
    QT_NEED_DATA();
    const int32_t *toks = reference_tokens();
    qt_tokenizer *t = stories_tokenizer();
    char *text = NULL;
    size_t len = 0;
    cr_assert(eq(int, qt_tokenizer_decode(t, toks, N_GREEDY, &text, &len), QT_OK));
    char path[1024];
    size_t n;
    char *want = read_all(qt_test_data_path(path, sizeof path, "text/lily_story.txt"), &n);
    /* the file is the 256 tokens' text plus the newline llama2.c prints */
    cr_assert(eq(sz, n, len + 1));
    cr_assert(eq(int, want[n - 1], '\n'));
    cr_assert(eq(int, memcmp(text, want, len), 0), "got:\n%s", text);
    free(want);
    qt_free(text);
    qt_tokenizer_free(t);
}

/* ---- other storage of the same weights ------------------------------------- */

static void agreement(const char *rel, size_t min_prefix)
{
    const int32_t *ref = reference_tokens();
    int32_t toks[N_GREEDY];
    qt_model *m = open_model(rel, NULL);
    greedy(m, N_GREEDY, toks);
    char desc[512];
    qt_model_describe(m, desc, sizeof desc);
    size_t pre = common_prefix(ref, toks, N_GREEDY), eqn = n_equal(ref, toks, N_GREEDY);
    cr_log_info("%s: greedy tokens equal to f32: first %zu of %d identical, %zu of %d "
                "position-wise (%s)", rel, pre, N_GREEDY, eqn, N_GREEDY, desc);
    fprintf(stderr, "%s: first %zu of %d greedy tokens identical to f32, %zu of %d "
            "position-wise\n", rel, pre, N_GREEDY, eqn, N_GREEDY);
    cr_assert(ge(sz, pre, min_prefix), "%s: only %zu tokens agree", rel, pre);
    qt_model_free(m);
}

Test(model, f16_copy_runs) { QT_NEED_DATA(); agreement("models/stories260K-f16", MIN_HALF_PREFIX); }
Test(model, bf16_copy_runs) { QT_NEED_DATA(); agreement("models/stories260K-bf16", MIN_HALF_PREFIX); }
Test(model, bnb_nf4_dq_golden_runs)
{
    QT_NEED_DATA();
    agreement("golden/transformers-bnb-nf4-dq", MIN_QUANT_PREFIX);
}
Test(model, bnb_int8_golden_runs)
{
    QT_NEED_DATA();
    agreement("golden/transformers-bnb-int8", MIN_QUANT_PREFIX);
}

/* The GGUF copy (Q/K rows in interleaved-pair order) gives the safetensors
 * logits: 64 positions evaluated as one batch. */
Test(model, gguf_logits_match_safetensors)
{
    QT_NEED_DATA();
    const int32_t *ref = reference_tokens();
    int32_t toks[64];
    toks[0] = 1;
    memcpy(toks + 1, ref, 63 * sizeof *toks);
    qt_model *a = open_model("models/stories260K-f32", NULL);
    qt_model *b = open_model("models/stories260K-gguf/stories260K.gguf", NULL);
    size_t V = qt_model_get_config(a)->vocab_size;
    cr_assert(eq(sz, qt_model_get_config(b)->vocab_size, V));
    float *la = malloc(64 * V * sizeof(float)), *lb = malloc(64 * V * sizeof(float));
    cr_assert(eq(int, qt_model_eval(a, toks, 64, 0, la), QT_OK));
    cr_assert(eq(int, qt_model_eval(b, toks, 64, 0, lb), QT_OK));
    double worst = 0;
    for (size_t i = 0; i < 64 * V; i++) worst = fmax(worst, fabs((double)la[i] - lb[i]));
    cr_log_info("safetensors vs gguf: max |logit difference| %.3g over 64 positions", worst);
    cr_assert(le(dbl, worst, GGUF_LOGIT_TOL));
    free(la);
    free(lb);
    qt_model_free(a);
    qt_model_free(b);
}

/* The GGUF's own vocabulary decodes like tokenizer.json. */
Test(model, gguf_vocabulary_decodes_like_tokenizer_json)
{
    QT_NEED_DATA();
    char path[1024], err[QT_ERRMSG_SIZE] = "";
    qt_vocab *v = NULL;
    qt_tokenizer *tg = NULL, *tj = stories_tokenizer();
    qt_test_data_path(path, sizeof path, "models/stories260K-gguf/stories260K.gguf");
    cr_assert(eq(int, qt_model_gguf_vocab(path, &v, err), QT_OK), "%s", err);
    cr_assert(eq(int, qt_tokenizer_new(v, &tg), QT_OK));
    cr_assert(eq(int, (int)v->n_tokens, 512));
    cr_assert(eq(i32, v->bos_id, 1));
    const int32_t *ref = reference_tokens();
    char *a = NULL, *b = NULL;
    size_t na, nb;
    cr_assert(eq(int, qt_tokenizer_decode(tg, ref, N_GREEDY, &a, &na), QT_OK));
    cr_assert(eq(int, qt_tokenizer_decode(tj, ref, N_GREEDY, &b, &nb), QT_OK));
    cr_assert(eq(str, a, b));
    int32_t *ids = NULL;
    size_t n_ids = 0;
    cr_assert(eq(int, qt_tokenizer_encode(tg, b, nb, true, &ids, &n_ids), QT_OK));
    cr_assert(eq(sz, n_ids, (size_t)N_GREEDY + 1));
    cr_assert(eq(int, memcmp(ids + 1, ref, N_GREEDY * sizeof *ids), 0));
    qt_free(ids);
    qt_free(a);
    qt_free(b);
    qt_tokenizer_free(tg);
    qt_tokenizer_free(tj);
    qt_vocab_free(v);
}

/* ---- a slow fp64 reference over dequantized weights ------------------------ */

/* y (n_out,) = W x, W dequantized row by row, fp64 sums. */
static void ref_matvec(const qt_qweight *w, const double *x, double *y)
{
    float *row = malloc(w->n_in * sizeof *row);
    for (size_t r = 0; r < w->n_out; r++) {
        qt_qweight_rows(NULL, w, r, 1, row);
        double s = 0;
        for (size_t i = 0; i < w->n_in; i++) s += (double)row[i] * x[i];
        y[r] = s;
    }
    free(row);
}

static void ref_rmsnorm(double *o, const double *x, const float *w, size_t d, double eps)
{
    double ss = 0;
    for (size_t i = 0; i < d; i++) ss += x[i] * x[i];
    double r = 1.0 / sqrt(ss / (double)d + eps);
    for (size_t i = 0; i < d; i++) o[i] = (double)w[i] * x[i] * r;
}

static void ref_rope(double *v, size_t n_h, size_t hd, size_t pos, double theta)
{
    for (size_t h = 0; h < n_h; h++)
        for (size_t i = 0; i < hd / 2; i++) {
            double a = (double)pos * pow(theta, -(double)(2 * i) / (double)hd);
            double x1 = v[h * hd + i], x2 = v[h * hd + i + hd / 2];
            v[h * hd + i] = x1 * cos(a) - x2 * sin(a);
            v[h * hd + i + hd / 2] = x2 * cos(a) + x1 * sin(a);
        }
}

/* logits (n, V) of tokens[0..n) from position 0, all in fp64. */
static void ref_forward(const qt_model *m, const int32_t *tokens, size_t n, double *logits)
{
    const qt_model_config *c = qt_model_get_config(m);
    const size_t D = c->dim, H = c->hidden_dim, hd = c->head_dim;
    const size_t qd = c->n_heads * hd, kvd = c->n_kv_heads * hd, V = c->vocab_size;
    double *x = calloc(D, 8), *xb = calloc(D, 8), *q = calloc(qd, 8), *ao = calloc(qd, 8);
    double *o = calloc(D > V ? D : V, 8), *g = calloc(H, 8), *u = calloc(H, 8);
    double *kc = calloc(c->n_layers * n * kvd, 8), *vc = calloc(c->n_layers * n * kvd, 8);
    double *att = calloc(n, 8);
    float *row = malloc(D * sizeof *row);
    for (size_t t = 0; t < n; t++) {
        qt_qweight_rows(NULL, &m->w.embed, (size_t)tokens[t], 1, row);
        for (size_t i = 0; i < D; i++) x[i] = row[i];
        for (size_t l = 0; l < c->n_layers; l++) {
            const qt_layer_weights *L = &m->w.layers[l];
            double *k = kc + (l * n + t) * kvd, *v = vc + (l * n + t) * kvd;
            ref_rmsnorm(xb, x, L->attn_norm, D, c->norm_eps);
            ref_matvec(&L->wq, xb, q);
            ref_matvec(&L->wk, xb, k);
            ref_matvec(&L->wv, xb, v);
            ref_rope(q, c->n_heads, hd, t, c->rope_theta);
            ref_rope(k, c->n_kv_heads, hd, t, c->rope_theta);
            for (size_t h = 0; h < c->n_heads; h++) {
                size_t kh = h / (c->n_heads / c->n_kv_heads);
                double mx = -INFINITY, sum = 0;
                for (size_t p = 0; p <= t; p++) {
                    double d = 0;
                    for (size_t i = 0; i < hd; i++)
                        d += q[h * hd + i] * kc[(l * n + p) * kvd + kh * hd + i];
                    att[p] = d / sqrt((double)hd);
                    mx = fmax(mx, att[p]);
                }
                for (size_t p = 0; p <= t; p++) sum += att[p] = exp(att[p] - mx);
                for (size_t i = 0; i < hd; i++) {
                    double s = 0;
                    for (size_t p = 0; p <= t; p++)
                        s += att[p] / sum * vc[(l * n + p) * kvd + kh * hd + i];
                    ao[h * hd + i] = s;
                }
            }
            ref_matvec(&L->wo, ao, o);
            for (size_t i = 0; i < D; i++) x[i] += o[i];
            ref_rmsnorm(xb, x, L->ffn_norm, D, c->norm_eps);
            ref_matvec(&L->w_gate, xb, g);
            ref_matvec(&L->w_up, xb, u);
            for (size_t i = 0; i < H; i++) g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
            ref_matvec(&L->w_down, g, o);
            for (size_t i = 0; i < D; i++) x[i] += o[i];
        }
        ref_rmsnorm(xb, x, m->w.norm, D, c->norm_eps);
        ref_matvec(&m->w.lm_head, xb, logits + t * V);
    }
    free(x); free(xb); free(q); free(ao); free(o); free(g); free(u);
    free(kc); free(vc); free(att); free(row);
}

static void check_against_reference(const char *rel)
{
    const int32_t *ref = reference_tokens();
    enum { N = 24 };
    int32_t toks[N];
    toks[0] = 1;
    memcpy(toks + 1, ref, (N - 1) * sizeof *toks);
    qt_model *m = open_model(rel, NULL);
    size_t V = qt_model_get_config(m)->vocab_size;
    float *lg = malloc(N * V * sizeof *lg);
    double *lr = malloc(N * V * sizeof *lr);
    cr_assert(eq(int, qt_model_eval(m, toks, N, 0, lg), QT_OK), "%s", qt_model_errmsg(m));
    ref_forward(m, toks, N, lr);
    double worst = 0, scale = 0;
    for (size_t i = 0; i < N * V; i++) {
        worst = fmax(worst, fabs(lg[i] - lr[i]));
        scale = fmax(scale, fabs(lr[i]));
    }
    cr_log_info("%s: max |logit - fp64 reference| %.3g (max |logit| %.3g)", rel, worst, scale);
    cr_assert(le(dbl, worst, REF_LOGIT_TOL), "%s: %g", rel, worst);
    free(lg);
    free(lr);
    qt_model_free(m);
}

Test(model, nf4_logits_match_fp64_reference)
{
    QT_NEED_DATA();
    check_against_reference("golden/transformers-bnb-nf4-dq");
}
Test(model, int8_logits_match_fp64_reference)
{
    QT_NEED_DATA();
    check_against_reference("golden/transformers-bnb-int8");
}
Test(model, f32_logits_match_fp64_reference)
{
    QT_NEED_DATA();
    check_against_reference("models/stories260K-f32");
}

/* ---- batching and threads change nothing --------------------------------- */

/* Logits of 40 tokens evaluated in one batch, in batches of 7, and one at a
 * time through the cache are bit-identical. */
Test(model, batch_size_does_not_change_logits)
{
    QT_NEED_DATA();
    const int32_t *ref = reference_tokens();
    enum { N = 40 };
    int32_t toks[N];
    toks[0] = 1;
    memcpy(toks + 1, ref, (N - 1) * sizeof *toks);
    qt_model_opts o7 = {.n_batch = 7};
    qt_model *a = open_model("golden/transformers-bnb-nf4-dq", NULL);
    qt_model *b = open_model("golden/transformers-bnb-nf4-dq", &o7);
    size_t V = qt_model_get_config(a)->vocab_size;
    float *la = malloc(N * V * 4), *lb = malloc(N * V * 4), *lc = malloc(N * V * 4);
    cr_assert(eq(int, qt_model_eval(a, toks, N, 0, la), QT_OK));
    cr_assert(eq(int, qt_model_eval(b, toks, N, 0, lb), QT_OK));
    qt_model_reset(a);
    for (size_t t = 0; t < N; t++)
        cr_assert(eq(int, qt_model_eval_last(a, toks + t, 1, t, lc + t * V), QT_OK));
    cr_assert(eq(int, memcmp(la, lb, N * V * 4), 0));
    cr_assert(eq(int, memcmp(la, lc, N * V * 4), 0));
    /* a prompt split in two evaluations */
    cr_assert(eq(int, qt_model_eval(b, toks, 10, 0, lb), QT_OK));
    cr_assert(eq(int, qt_model_eval(b, toks + 10, N - 10, 10, lb + 10 * V), QT_OK));
    cr_assert(eq(int, memcmp(la, lb, N * V * 4), 0));
    free(la);
    free(lb);
    free(lc);
    qt_model_free(a);
    qt_model_free(b);
}

Test(model, thread_count_does_not_change_logits)
{
#ifndef _OPENMP
    cr_skip_test("built without OpenMP");
#else
    QT_NEED_DATA();
    const int32_t *ref = reference_tokens();
    enum { N = 48 };
    int32_t toks[N];
    toks[0] = 1;
    memcpy(toks + 1, ref, (N - 1) * sizeof *toks);
    const char *models[] = {"models/stories260K-f32", "golden/transformers-bnb-nf4-dq",
                            "golden/transformers-bnb-int8"};
    for (size_t k = 0; k < 3; k++) {
        qt_model *m = open_model(models[k], NULL);
        size_t V = qt_model_get_config(m)->vocab_size;
        float *l1 = malloc(N * V * 4), *l2 = malloc(N * V * 4), *l3 = malloc(N * V * 4);
        omp_set_num_threads(1);
        cr_assert(eq(int, qt_model_eval(m, toks, N, 0, l1), QT_OK));
        omp_set_num_threads(2);
        cr_assert(eq(int, qt_model_eval(m, toks, N, 0, l2), QT_OK));
        omp_set_num_threads(3);
        cr_assert(eq(int, qt_model_eval(m, toks, N, 0, l3), QT_OK));
        cr_assert(eq(int, memcmp(l1, l2, N * V * 4), 0), "%s", models[k]);
        cr_assert(eq(int, memcmp(l1, l3, N * V * 4), 0), "%s", models[k]);
        free(l1);
        free(l2);
        free(l3);
        qt_model_free(m);
    }
#endif
}

/* ---- refusals ------------------------------------------------------------ */

/* A folder with a copy of stories260K's weights and the given config.json
 * (a copy: the model directory refuses shards that link out of it). */
static const char *model_with_config(char *dir, size_t n, const char *config)
{
    char src[1024], dst[1200];
    cr_assert(ne(ptr, (void *)qt_test_tmpdir(dir, n), NULL));
    qt_test_data_path(src, sizeof src, "models/stories260K-f32/model.safetensors");
    size_t len;
    char *bytes = read_all(src, &len);
    snprintf(dst, sizeof dst, "%s/model.safetensors", dir);
    FILE *f = fopen(dst, "wb");
    cr_assert(ne(ptr, f, NULL));
    cr_assert(eq(sz, fwrite(bytes, 1, len, f), len));
    fclose(f);
    free(bytes);
    snprintf(dst, sizeof dst, "%s/config.json", dir);
    f = fopen(dst, "w");
    cr_assert(ne(ptr, f, NULL));
    fputs(config, f);
    fclose(f);
    return dir;
}

static void remove_model_dir(const char *dir)
{
    char p[1200];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/config.json", dir);
    unlink(p);
    rmdir(dir);
}

#define BASE_CONFIG                                                                         \
    "\"hidden_size\": 64, \"intermediate_size\": 172, \"num_hidden_layers\": 5, "           \
    "\"num_attention_heads\": 8, \"num_key_value_heads\": 4, \"vocab_size\": 512, "         \
    "\"max_position_embeddings\": 512, \"rms_norm_eps\": 1e-05, \"tie_word_embeddings\": true"

static qt_status open_with_config_opts(const char *config, const qt_model_opts *o, char *err)
{
    char dir[256];
    model_with_config(dir, sizeof dir, config);
    qt_model *m = NULL;
    qt_status st = qt_model_open(dir, o, &m, err);
    if (st == QT_OK && o && o->n_ctx) cr_assert(eq(sz, qt_model_n_ctx(m), o->n_ctx));
    qt_model_free(m);
    remove_model_dir(dir);
    return st;
}

static qt_status open_with_config(const char *config, char *err)
{
    return open_with_config_opts(config, NULL, err);
}

Test(model, unsupported_configurations_are_refused)
{
    QT_NEED_DATA();
    char err[QT_ERRMSG_SIZE] = "";
    cr_assert(eq(int, open_with_config("{\"architectures\": [\"LlamaForCausalLM\"], " BASE_CONFIG "}", err), QT_OK), "%s", err);
    cr_assert(eq(int, open_with_config("{\"architectures\": [\"GPT2LMHeadModel\"], " BASE_CONFIG "}", err), QT_ERR_UNSUPPORTED));
    cr_assert(ne(ptr, strstr(err, "GPT2LMHeadModel"), NULL), "%s", err);
    cr_assert(eq(int, open_with_config("{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_act\": \"gelu\", " BASE_CONFIG "}", err), QT_ERR_UNSUPPORTED));
    cr_assert(ne(ptr, strstr(err, "gelu"), NULL), "%s", err);
    cr_assert(eq(int, open_with_config("{\"architectures\": [\"LlamaForCausalLM\"], \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}, " BASE_CONFIG "}", err), QT_ERR_UNSUPPORTED));
    cr_assert(ne(ptr, strstr(err, "yarn"), NULL), "%s", err);
    /* a sliding window shorter than the context: the default context shrinks
     * to the window (full attention is then exact); a longer one is refused */
    qt_model_opts o128 = {.n_ctx = 128}, o512 = {.n_ctx = 512};
    cr_assert(eq(int, open_with_config_opts("{\"architectures\": [\"MistralForCausalLM\"], \"sliding_window\": 128, " BASE_CONFIG "}", &o128, err), QT_OK), "%s", err);
    cr_assert(eq(int, open_with_config_opts("{\"architectures\": [\"MistralForCausalLM\"], \"sliding_window\": 128, " BASE_CONFIG "}", &o512, err), QT_ERR_UNSUPPORTED));
    cr_assert(ne(ptr, strstr(err, "sliding_window"), NULL), "%s", err);
    cr_assert(eq(int, open_with_config("{\"architectures\": [\"MistralForCausalLM\"], \"sliding_window\": null, " BASE_CONFIG "}", err), QT_OK), "%s", err);
    /* Qwen2 windows only layers >= max_window_layers (transformers): with 5
     * layers, max_window_layers 5 means full attention everywhere */
    cr_assert(eq(int, open_with_config_opts("{\"architectures\": [\"Qwen2ForCausalLM\"], \"attention_bias\": false, \"use_sliding_window\": true, \"sliding_window\": 128, \"max_window_layers\": 5, " BASE_CONFIG "}", &o512, err), QT_OK), "%s", err);
    cr_assert(eq(int, open_with_config_opts("{\"architectures\": [\"Qwen2ForCausalLM\"], \"attention_bias\": false, \"use_sliding_window\": true, \"sliding_window\": 128, \"max_window_layers\": 4, " BASE_CONFIG "}", &o512, err), QT_ERR_UNSUPPORTED));
    /* the weights do not fit the shape */
    cr_assert(eq(int, open_with_config("{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 128, \"intermediate_size\": 172, \"num_hidden_layers\": 5, \"num_attention_heads\": 8, \"vocab_size\": 512}", err), QT_ERR_FORMAT));
    /* Qwen2 expects q/k/v biases */
    cr_assert(eq(int, open_with_config("{\"architectures\": [\"Qwen2ForCausalLM\"], " BASE_CONFIG "}", err), QT_ERR_FORMAT));
    cr_assert(ne(ptr, strstr(err, "q_proj.bias"), NULL), "%s", err);
}

Test(model, llama3_rope_scaling_is_accepted)
{
    QT_NEED_DATA();
    char dir[256], err[QT_ERRMSG_SIZE] = "";
    model_with_config(dir, sizeof dir,
                      "{\"architectures\": [\"LlamaForCausalLM\"], \"rope_theta\": 500000.0, "
                      "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, "
                      "\"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
                      "\"original_max_position_embeddings\": 64}, " BASE_CONFIG "}");
    qt_model *m = NULL;
    cr_assert(eq(int, qt_model_open(dir, NULL, &m, err), QT_OK), "%s", err);
    const qt_model_config *c = qt_model_get_config(m);
    cr_assert(eq(int, c->rope_scaling, QT_ROPE_LLAMA3));
    cr_assert(eq(dbl, c->rope_theta, 500000.0));
    int32_t t = 1;
    float logits[512];
    cr_assert(eq(int, qt_model_eval_last(m, &t, 1, 0, logits), QT_OK));
    qt_model_free(m);
    remove_model_dir(dir);
}

Test(model, eval_rejects_bad_arguments)
{
    QT_NEED_DATA();
    qt_model_opts o = {.n_ctx = 16};
    qt_model *m = open_model("models/stories260K-f32", &o);
    cr_assert(eq(sz, qt_model_n_ctx(m), 16));
    float logits[512];
    int32_t bad = 512, toks[17] = {1};
    cr_assert(eq(int, qt_model_eval_last(m, &bad, 1, 0, logits), QT_ERR_ARG));
    cr_assert(ne(ptr, strstr(qt_model_errmsg(m), "vocabulary"), NULL));
    cr_assert(eq(int, qt_model_eval_last(m, toks, 1, 3, logits), QT_ERR_ARG)); /* gap */
    cr_assert(eq(int, qt_model_eval_last(m, toks, 17, 0, logits), QT_ERR_ARG)); /* past ctx */
    cr_assert(eq(int, qt_model_eval_last(m, toks, 16, 0, logits), QT_OK));
    cr_assert(eq(sz, qt_model_n_past(m), 16));
    qt_model_reset(m);
    cr_assert(eq(sz, qt_model_n_past(m), 0));
    qt_model_free(m);
}

Test(model, sampling_is_seeded)
{
    float logits[8] = {0.1f, 2.0f, 1.5f, -1.0f, 2.0f, 0.0f, 0.3f, 1.9f};
    cr_assert(eq(i32, qt_sample_argmax(logits, 8), 1));
    uint64_t r1 = 42, r2 = 42;
    for (int i = 0; i < 100; i++)
        cr_assert(eq(i32, qt_sample(logits, 8, 0.8f, &r1), qt_sample(logits, 8, 0.8f, &r2)));
    uint64_t r3 = 7;
    cr_assert(eq(i32, qt_sample(logits, 8, 0.0f, &r3), 1));
    cr_assert(eq(u64, r3, 7));
}

Test(model, bench_reports_speed)
{
    QT_NEED_DATA();
    qt_model_opts o = {.n_ctx = 160, .n_batch = 64};
    qt_model *m = open_model("models/stories260K-f32", &o);
    qt_model_bench_result r;
    cr_assert(eq(int, qt_model_bench(m, 128, 32, &r), QT_OK), "%s", qt_model_errmsg(m));
    cr_assert(gt(dbl, r.pp_tok_s, 0.0));
    cr_assert(gt(dbl, r.tg_tok_s, 0.0));
    cr_assert(eq(sz, qt_model_n_past(m), 0));
    qt_model_free(m);
}
