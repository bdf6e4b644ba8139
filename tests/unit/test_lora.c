/* tests/unit/test_lora.c: PEFT LoRA adapters (formats/adapter.h,
 * model/lora.c) against the golden that transformers + peft computed
 * (shared data golden/peft-lora: unmerged logits on qtool's NF4 conversion
 * of stories260K-f32 and on the f32 model, within 1e-4), a zero-B adapter
 * giving the base's logits bit for bit, scale resolution (rsLoRA,
 * rank_pattern, alpha_pattern) on hand-made adapters, and every refusal of
 * specs/peft-lora.md §2-§3. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "convert/convert.h"
#include "convert/merge.h"
#include "formats/adapter.h"
#include "formats/fsutil.h"
#include "formats/safetensors.h"
#include "model/model.h"
#include "quant/quant.h"
#include "testutil.h"

#define GOLDEN_LOGIT_TOL 1e-4 /* max |qtool - transformers+peft| logits (the bound) */
#define MERGE_F32_TOL 1e-4   /* merged-into-f32 vs unmerged logits (fp32 rounding) */
#define N_IDS 160             /* tokens in golden/peft-lora/ids */
#define VOCAB 512             /* stories260K */
#define DIM 64
#define HIDDEN 172
#define KV_DIM 32

/* ---- helpers -------------------------------------------------------------- */

/* The golden logits `name` (N_IDS, VOCAB) and the ids, copied. */
static void golden(const char *name, float *logits, int32_t *ids)
{
    char path[1024], err[QT_ERRMSG_SIZE] = "";
    qt_st_reader *r = NULL;
    qt_test_data_path(path, sizeof path, "golden/peft-lora/logits.safetensors");
    cr_assert(eq(int, qt_st_reader_open(path, &r, err), QT_OK), "%s", err);
    const qt_st_tensor *t = qt_st_reader_find(r, name), *ti = qt_st_reader_find(r, "ids");
    cr_assert(t && ti && t->n_elements == (uint64_t)N_IDS * VOCAB && ti->n_elements == N_IDS);
    if (logits) memcpy(logits, t->data, (size_t)t->nbytes);
    if (ids) memcpy(ids, ti->data, (size_t)ti->nbytes);
    qt_st_reader_close(r);
}

/* Logits of the golden ids through model (+ adapter dir, may be NULL). */
static float *run_logits(const char *model, const char *adapter, const int32_t *ids)
{
    char err[QT_ERRMSG_SIZE] = "";
    qt_model *m = NULL;
    qt_status st = qt_model_open_adapter(model, adapter, NULL, &m, err);
    cr_assert(eq(int, st, QT_OK), "%s", err);
    float *lg = malloc((size_t)N_IDS * VOCAB * sizeof *lg);
    cr_assert(eq(int, qt_model_eval(m, ids, N_IDS, 0, lg), QT_OK), "%s", qt_model_errmsg(m));
    qt_model_free(m);
    return lg;
}

static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double mx = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > mx) mx = d;
    }
    return mx;
}

/* Checks model (+ adapter) against golden logits `name` within tol. */
static void check_golden(const char *model, const char *adapter, const char *name)
{
    float *want = malloc((size_t)N_IDS * VOCAB * sizeof *want);
    int32_t ids[N_IDS];
    golden(name, want, ids);
    float *got = run_logits(model, adapter, ids);
    double d = max_abs_diff(got, want, (size_t)N_IDS * VOCAB);
    fprintf(stderr, "%s: max |qtool - golden| = %.3g\n", name, d);
    cr_assert(le(dbl, d, GOLDEN_LOGIT_TOL), "%s: max abs difference %.3g", name, d);
    free(want);
    free(got);
}

static const char *data_path(const char *rel)
{
    static char buf[4][1024];
    static int k;
    return qt_test_data_path(buf[k++ % 4], sizeof buf[0], rel);
}

/* A hand-made adapter: modules q_proj and v_proj of layers 0-1 (or `names`),
 * rank r, A and B seeded (B zero when zero_b). */
typedef struct handmade {
    qt_adapter_module mods[8];
    size_t n;
    float *buf[16];
} handmade;

static void handmade_init(handmade *h, size_t r, bool zero_b, unsigned long long seed)
{
    static const char *const names[] = {"model.layers.0.self_attn.q_proj",
                                        "model.layers.0.self_attn.v_proj",
                                        "model.layers.1.mlp.down_proj",
                                        "model.layers.4.self_attn.o_proj"};
    static const size_t outs[] = {DIM, KV_DIM, DIM, DIM}, ins[] = {DIM, DIM, HIDDEN, DIM};
    memset(h, 0, sizeof *h);
    h->n = 4;
    for (size_t i = 0; i < h->n; i++) {
        qt_adapter_module *m = &h->mods[i];
        m->name = (char *)names[i];
        m->r = r;
        m->n_in = ins[i];
        m->n_out = outs[i];
        m->A = h->buf[2 * i] = malloc(r * m->n_in * sizeof(float));
        m->B = h->buf[2 * i + 1] = calloc(m->n_out * r, sizeof(float));
        for (size_t j = 0; j < r * m->n_in; j++) m->A[j] = 0.1f * qt_test_randf(&seed);
        for (size_t j = 0; !zero_b && j < m->n_out * r; j++) m->B[j] = 0.1f * qt_test_randf(&seed);
    }
}

static void handmade_free(handmade *h)
{
    for (size_t i = 0; i < 16; i++) free(h->buf[i]);
}

/* Writes h with the given spec fields into a new temporary folder `dir`. */
static void write_adapter(char *dir, size_t n, const handmade *h, qt_adapter_spec spec)
{
    char err[QT_ERRMSG_SIZE] = "";
    cr_assert(ne(ptr, (char *)qt_test_tmpdir(dir, n), NULL));
    spec.mods = h->mods;
    spec.n_mods = h->n;
    if (!spec.r) spec.r = (int64_t)h->mods[0].r;
    if (!spec.lora_alpha) spec.lora_alpha = 8;
    cr_assert(eq(int, qt_adapter_write(dir, &spec, err), QT_OK), "%s", err);
}

/* Opens dir and matches it with the f32 model; returns the status, the
 * message in err. */
static qt_status open_and_match(const char *dir, char *err)
{
    qt_model *m = NULL;
    qt_status st = qt_model_open_adapter(data_path("models/stories260K-f32"), dir, NULL, &m, err);
    qt_model_free(m);
    return st;
}

/* Rewrites dir/adapter_config.json with `from` replaced by `to`. */
static void edit_config(const char *dir, const char *from, const char *to)
{
    char path[1024], *buf = NULL, out[8192];
    size_t n = 0;
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    cr_assert(eq(int, qt_file_read(path, &buf, &n, 1 << 20, NULL), QT_OK));
    char *p = strstr(buf, from);
    cr_assert(ne(ptr, p, NULL), "'%s' not in the config", from);
    snprintf(out, sizeof out, "%.*s%s%s", (int)(p - buf), buf, to, p + strlen(from));
    qt_free(buf);
    cr_assert(eq(int, qt_file_write(path, out, strlen(out), NULL), QT_OK));
}

static void expect_refusal(const char *dir, qt_status want, const char *needle)
{
    char err[QT_ERRMSG_SIZE] = "";
    qt_status st = open_and_match(dir, err);
    cr_assert(eq(int, st, want), "status %d (%s), want %d", st, err, want);
    cr_assert(ne(ptr, strstr(err, needle), NULL), "message '%s' lacks '%s'", err, needle);
}

static void rm_tree(const char *dir)
{
    qt_tree_remove(dir);
}

/* qtool's NF4 + double quant conversion of stories260K-f32 into dir/nf4. */
static void convert_nf4(const char *dir, char *out, size_t n)
{
    char err[QT_ERRMSG_SIZE] = "";
    snprintf(out, n, "%s/nf4", dir);
    qt_conv_opts o = {.in = data_path("models/stories260K-f32"), .out = out,
                      .scheme = QT_SCHEME_NF4, .double_quant = true, .compute_dtype = "fp32"};
    qt_conv *c = NULL;
    cr_assert(eq(int, qt_conv_plan(&o, &c, err), QT_OK), "%s", err);
    cr_assert(eq(int, qt_conv_run(c, err), QT_OK), "%s", err);
    qt_conv_free(c);
}

/* ---- golden: transformers + peft ------------------------------------------ */

Test(lora, golden_f32_base_and_adapter)
{
    QT_NEED_DATA();
    check_golden(data_path("models/stories260K-f32"), NULL, "f32_base");
    check_golden(data_path("models/stories260K-f32"), data_path("golden/peft-lora/adapter"),
                 "f32_plus_adapter");
}

Test(lora, golden_nf4_base_and_adapter)
{
    QT_NEED_DATA();
    char dir[64], out[128];
    cr_assert(ne(ptr, (char *)qt_test_tmpdir(dir, sizeof dir), NULL));
    convert_nf4(dir, out, sizeof out); /* the base peft trained on */
    check_golden(out, NULL, "nf4_base");
    check_golden(out, data_path("golden/peft-lora/adapter"), "nf4_plus_adapter");
    rm_tree(dir);
}

Test(lora, golden_adapter_loads_as_saved)
{
    QT_NEED_DATA();
    char err[QT_ERRMSG_SIZE] = "";
    qt_adapter *ad = NULL;
    cr_assert(eq(int, qt_adapter_open(data_path("golden/peft-lora/adapter"), &ad, err), QT_OK),
              "%s", err);
    /* 5 layers x 7 projections, r = 4, alpha = 8: scale 2 */
    cr_assert(eq(sz, ad->n_mods, 35));
    cr_assert(eq(sz, ad->n_repl, 0));
    for (size_t i = 0; i < ad->n_mods; i++) {
        cr_assert(eq(sz, ad->mods[i].r, 4));
        cr_assert(eq(flt, ad->mods[i].scale, 2.0f));
    }
    const qt_adapter_module *md = qt_adapter_find(ad, "model.layers.0.mlp.down_proj");
    cr_assert(md && md->n_in == HIDDEN && md->n_out == DIM);
    cr_assert(eq(sz, strlen(ad->fingerprint), 64));
    qt_adapter_free(ad);
}

/* ---- hand-made adapters ------------------------------------------------------ */

/* Logits of the golden ids on stories260K-f32 without and with a hand-made
 * adapter (B zero or not); caller frees both. */
static void base_and_handmade(bool zero_b, float **base, float **with)
{
    char dir[64];
    handmade h;
    handmade_init(&h, 4, zero_b, 7);
    write_adapter(dir, sizeof dir, &h, (qt_adapter_spec){0});
    int32_t ids[N_IDS];
    golden("f32_base", NULL, ids);
    *base = run_logits(data_path("models/stories260K-f32"), NULL, ids);
    *with = run_logits(data_path("models/stories260K-f32"), dir, ids);
    handmade_free(&h);
    rm_tree(dir);
}

Test(lora, zero_b_adapter_gives_base_logits_exactly)
{
    QT_NEED_DATA();
    float *base, *with;
    base_and_handmade(true, &base, &with);
    cr_assert(eq(int, memcmp(base, with, (size_t)N_IDS * VOCAB * sizeof(float)), 0),
              "a zero-B adapter changed the logits");
    free(base);
    free(with);
}

Test(lora, nonzero_adapter_changes_logits)
{
    QT_NEED_DATA();
    float *base, *with;
    base_and_handmade(false, &base, &with);
    cr_assert(gt(dbl, max_abs_diff(base, with, (size_t)N_IDS * VOCAB), 1e-3));
    free(base);
    free(with);
}

/* Scale of module `name` in the adapter at dir. */
static float scale_of(const char *dir, const char *name)
{
    char err[QT_ERRMSG_SIZE] = "";
    qt_adapter *ad = NULL;
    cr_assert(eq(int, qt_adapter_open(dir, &ad, err), QT_OK), "%s", err);
    const qt_adapter_module *md = qt_adapter_find(ad, name);
    cr_assert(ne(ptr, (void *)md, NULL), "%s", name);
    float s = md->scale;
    qt_adapter_free(ad);
    return s;
}

Test(lora, scale_plain_and_rslora)
{
    char dir[64];
    handmade h;
    handmade_init(&h, 16, false, 3);
    /* alpha / r = 32 / 16 = 2 */
    write_adapter(dir, sizeof dir, &h, (qt_adapter_spec){.lora_alpha = 32});
    cr_assert(eq(flt, scale_of(dir, "model.layers.0.self_attn.q_proj"), 2.0f));
    rm_tree(dir);
    /* rsLoRA: alpha / sqrt(r) = 32 / 4 = 8 */
    write_adapter(dir, sizeof dir, &h, (qt_adapter_spec){.lora_alpha = 32, .use_rslora = true});
    cr_assert(eq(flt, scale_of(dir, "model.layers.0.self_attn.q_proj"), 8.0f));
    handmade_free(&h);
    rm_tree(dir);
}

Test(lora, scale_rank_and_alpha_patterns)
{
    char dir[64];
    handmade h;
    handmade_init(&h, 4, false, 5);
    /* v_proj trained at rank 8: its A/B have 8 rows / columns */
    handmade h8;
    handmade_init(&h8, 8, false, 6);
    h.mods[1] = h8.mods[1];
    /* rank_pattern: "v_proj" -> 8 (suffix match); alpha_pattern: layer 1's
     * down_proj -> 2 (full-path key), "o_proj" -> 1; globals r 4, alpha 8 */
    write_adapter(dir, sizeof dir, &h,
                  (qt_adapter_spec){.r = 4, .lora_alpha = 8, .rank_pattern_json = "{\"v_proj\": 8}",
                                    .alpha_pattern_json =
                                        "{\"model.layers.1.mlp.down_proj\": 2, \"o_proj\": 1}"});
    cr_assert(eq(flt, scale_of(dir, "model.layers.0.self_attn.q_proj"), 8.0f / 4.0f));
    cr_assert(eq(flt, scale_of(dir, "model.layers.0.self_attn.v_proj"), 8.0f / 8.0f));
    cr_assert(eq(flt, scale_of(dir, "model.layers.1.mlp.down_proj"), 2.0f / 4.0f));
    cr_assert(eq(flt, scale_of(dir, "model.layers.4.self_attn.o_proj"), 1.0f / 4.0f));
    rm_tree(dir);
    /* the pattern must match whole dotted components: "proj" does not match q_proj */
    write_adapter(dir, sizeof dir, &h,
                  (qt_adapter_spec){.r = 4, .lora_alpha = 8,
                                    .rank_pattern_json = "{\"v_proj\": 8}",
                                    .alpha_pattern_json = "{\"proj\": 100}"});
    cr_assert(eq(flt, scale_of(dir, "model.layers.0.self_attn.q_proj"), 2.0f));
    handmade_free(&h);
    handmade_free(&h8);
    rm_tree(dir);
}

/* ---- refusals ------------------------------------------------------------------ */

/* A fresh hand-made adapter in dir with one config edit, then the refusal. */
static void refused_config(const char *from, const char *to, qt_status want, const char *needle)
{
    char dir[64];
    handmade h;
    handmade_init(&h, 4, false, 9);
    write_adapter(dir, sizeof dir, &h, (qt_adapter_spec){0});
    edit_config(dir, from, to);
    expect_refusal(dir, want, needle);
    handmade_free(&h);
    rm_tree(dir);
}

Test(lora, refuses_config_fields)
{
    QT_NEED_DATA();
    refused_config("\"peft_type\": \"LORA\"", "\"peft_type\": \"IA3\"", QT_ERR_UNSUPPORTED,
                   "peft_type");
    refused_config("\"peft_type\": \"LORA\",", "", QT_ERR_FORMAT, "peft_type");
    refused_config("\"use_dora\": false", "\"use_dora\": true", QT_ERR_UNSUPPORTED, "use_dora");
    refused_config("\"fan_in_fan_out\": false", "\"fan_in_fan_out\": true", QT_ERR_UNSUPPORTED,
                   "fan_in_fan_out");
    refused_config("\"bias\": \"none\"", "\"bias\": \"some\"", QT_ERR_FORMAT, "'bias'");
    refused_config("\"r\": 4", "\"r\": 4.5", QT_ERR_FORMAT, "'r'");
    refused_config("\"r\": 4", "\"r\": 0", QT_ERR_FORMAT, "'r'");
    refused_config("\"r\": 4", "\"r\": \"4\"", QT_ERR_FORMAT, "'r'");
    refused_config("\"lora_alpha\": 8", "\"lora_alpha\": -1", QT_ERR_FORMAT, "lora_alpha");
    refused_config("\"use_rslora\": false", "\"use_rslora\": 1", QT_ERR_FORMAT, "use_rslora");
    refused_config("\"modules_to_save\": null", "\"layer_replication\": [[0, 2]]",
                   QT_ERR_UNSUPPORTED, "layer_replication");
    refused_config("\"modules_to_save\": null", "\"target_parameters\": [\"w\"]",
                   QT_ERR_UNSUPPORTED, "target_parameters");
    refused_config("\"modules_to_save\": null", "\"trainable_token_indices\": [3]",
                   QT_ERR_UNSUPPORTED, "trainable_token_indices");
    refused_config("\"modules_to_save\": null", "\"use_qalora\": true", QT_ERR_UNSUPPORTED,
                   "use_qalora");
    refused_config("\"r\": 4", "\"r\": 8", QT_ERR_FORMAT, "rank 4");
    refused_config("\"rank_pattern\": {}", "\"rank_pattern\": {\"q_proj\": 2}", QT_ERR_FORMAT,
                   "rank_pattern");
    refused_config("\"rank_pattern\": {}", "\"rank_pattern\": {\"q_proj\": -2}", QT_ERR_FORMAT,
                   "rank_pattern");
    refused_config("{", "[", QT_ERR_FORMAT, "adapter_config.json");
}

/* Writes a one-module adapter file by hand: the key list and raw bytes. */
static void write_raw_adapter(const char *dir, const char *const *keys, const qt_dtype *dt,
                              const uint64_t (*shapes)[2], size_t n, float fill)
{
    char path[1024], err[QT_ERRMSG_SIZE] = "";
    qt_st_writer *w = NULL;
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    cr_assert(eq(int, qt_st_writer_open(path, &w, err), QT_OK));
    for (size_t i = 0; i < n; i++)
        cr_assert(eq(int, qt_st_writer_declare(w, keys[i], dt[i], 2, shapes[i], NULL), QT_OK));
    qt_st_writer_keep_order(w, true);
    for (size_t i = 0; i < n; i++) {
        size_t nb = (size_t)qt_st_writer_tensor_nbytes(w, i);
        float *v = malloc(nb);
        for (size_t j = 0; j < nb / sizeof(float); j++) v[j] = j == 3 ? fill : 0.01f;
        if (dt[i] != QT_DTYPE_F32) memset(v, 0, nb);
        cr_assert(eq(int, qt_st_writer_write(w, i, 0, v, nb), QT_OK));
        free(v);
    }
    cr_assert(eq(int, qt_st_writer_close(w, err), QT_OK), "%s", err);
}

/* An adapter dir whose safetensors holds exactly the given tensors. */
static void refused_tensors(const char *const *keys, const qt_dtype *dt,
                            const uint64_t (*shapes)[2], size_t n, float fill, qt_status want,
                            const char *needle)
{
    char dir[64];
    handmade h;
    handmade_init(&h, 4, false, 9);
    write_adapter(dir, sizeof dir, &h, (qt_adapter_spec){0});
    write_raw_adapter(dir, keys, dt, shapes, n, fill);
    expect_refusal(dir, want, needle);
    handmade_free(&h);
    rm_tree(dir);
}

#define Q0 "base_model.model.model.layers.0.self_attn.q_proj"

Test(lora, refuses_tensors)
{
    QT_NEED_DATA();
    const qt_dtype f32[3] = {QT_DTYPE_F32, QT_DTYPE_F32, QT_DTYPE_F32};
    const uint64_t ok[2][2] = {{4, DIM}, {DIM, 4}};
    /* missing lora_B */
    const char *only_a[] = {Q0 ".lora_A.weight"};
    refused_tensors(only_a, f32, ok, 1, 0.01f, QT_ERR_FORMAT, "lora_B.weight is missing");
    /* ranks differ */
    const char *ab[] = {Q0 ".lora_A.weight", Q0 ".lora_B.weight"};
    const uint64_t bad_r[2][2] = {{4, DIM}, {DIM, 3}};
    refused_tensors(ab, f32, bad_r, 2, 0.01f, QT_ERR_FORMAT, "rank");
    /* in_features does not match the base */
    const uint64_t bad_in[2][2] = {{4, DIM + 1}, {DIM, 4}};
    refused_tensors(ab, f32, bad_in, 2, 0.01f, QT_ERR_FORMAT, "base weight");
    /* NaN / Inf */
    refused_tensors(ab, f32, ok, 2, NAN, QT_ERR_NUMERIC, "not finite");
    refused_tensors(ab, f32, ok, 2, INFINITY, QT_ERR_NUMERIC, "not finite");
    /* a dtype adapters never use */
    const qt_dtype i32[2] = {QT_DTYPE_F32, QT_DTYPE_I32};
    refused_tensors(ab, i32, ok, 2, 0.01f, QT_ERR_UNSUPPORTED, "dtype");
    /* a module the base does not have */
    const char *ghost[] = {"base_model.model.model.layers.9.self_attn.q_proj.lora_A.weight",
                           "base_model.model.model.layers.9.self_attn.q_proj.lora_B.weight"};
    refused_tensors(ghost, f32, ok, 2, 0.01f, QT_ERR_FORMAT, "the base has no tensor");
    /* DoRA magnitude, embedding LoRA, keys without the PEFT prefix */
    const char *dora[] = {Q0 ".lora_magnitude_vector"};
    refused_tensors(dora, f32, ok, 1, 0.01f, QT_ERR_UNSUPPORTED, "DoRA");
    const char *emb[] = {"base_model.model.model.embed_tokens.lora_embedding_A"};
    refused_tensors(emb, f32, ok, 1, 0.01f, QT_ERR_UNSUPPORTED, "embeddings");
    const char *noprefix[] = {"model.layers.0.self_attn.q_proj.lora_A.weight"};
    refused_tensors(noprefix, f32, ok, 1, 0.01f, QT_ERR_FORMAT, "base_model.model.");
    /* a modules_to_save tensor of the wrong shape (resized vocabulary) */
    const char *lm[] = {"base_model.model.model.embed_tokens.weight"};
    const uint64_t big[1][2] = {{VOCAB + 1, DIM}};
    refused_tensors(lm, f32, big, 1, 0.01f, QT_ERR_FORMAT, "resized vocabulary");
}

Test(lora, refuses_pickle_and_missing_files)
{
    char dir[64], path[128], err[QT_ERRMSG_SIZE] = "";
    qt_adapter *ad = NULL;
    cr_assert(ne(ptr, (char *)qt_test_tmpdir(dir, sizeof dir), NULL));
    cr_assert(eq(int, qt_adapter_open(dir, &ad, err), QT_ERR_ARG));
    cr_assert(ne(ptr, strstr(err, "adapter_config.json"), NULL), "%s", err);
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    cr_assert(eq(int, qt_file_write(path, "{\"peft_type\": \"LORA\"}", 21, NULL), QT_OK));
    snprintf(path, sizeof path, "%s/adapter_model.bin", dir);
    cr_assert(eq(int, qt_file_write(path, "PK", 2, NULL), QT_OK));
    cr_assert(eq(int, qt_adapter_open(dir, &ad, err), QT_ERR_UNSUPPORTED));
    cr_assert(ne(ptr, strstr(err, "safetensors.torch"), NULL), "%s", err);
    cr_assert(eq(ptr, ad, NULL));
    rm_tree(dir);
}

Test(lora, modules_to_save_replaces_lm_head_and_embeddings)
{
    QT_NEED_DATA();
    /* stories260K ties lm_head to embed_tokens: an embed_tokens replacement
     * of all zeros gives zero embeddings; logits then differ from the base */
    char dir[64];
    const char *keys[] = {"base_model.model.model.embed_tokens.weight"};
    const qt_dtype f32[1] = {QT_DTYPE_F32};
    const uint64_t sh[1][2] = {{VOCAB, DIM}};
    handmade h;
    handmade_init(&h, 4, true, 1);
    write_adapter(dir, sizeof dir, &h, (qt_adapter_spec){0});
    write_raw_adapter(dir, keys, f32, sh, 1, 0.01f);
    char err[QT_ERRMSG_SIZE] = "";
    qt_adapter *ad = NULL;
    cr_assert(eq(int, qt_adapter_open(dir, &ad, err), QT_OK), "%s", err);
    cr_assert(eq(sz, ad->n_mods, 0));
    cr_assert(eq(sz, ad->n_repl, 1));
    cr_assert(eq(str, ad->repl[0].name, "model.embed_tokens.weight"));
    qt_adapter_free(ad);
    int32_t ids[N_IDS];
    golden("f32_base", NULL, ids);
    float *base = run_logits(data_path("models/stories260K-f32"), NULL, ids);
    float *with = run_logits(data_path("models/stories260K-f32"), dir, ids);
    cr_assert(gt(dbl, max_abs_diff(base, with, (size_t)N_IDS * VOCAB), 1e-2));
    free(base);
    free(with);
    handmade_free(&h);
    rm_tree(dir);
}

/* ---- the merge kernel (quant/lora.c) ------------------------------------------ */

Test(lora, merge_kernel_isas_bit_identical_and_match_fp64)
{
    unsigned long long seed = qt_test_seed(11);
    const size_t n_out = 37, n_in = 173; /* odd widths: every SIMD tail */
    const size_t ranks[] = {1, 5, 16};
    for (size_t ri = 0; ri < 3; ri++) {
        const size_t r = ranks[ri];
        float *W = malloc(n_out * n_in * sizeof *W), *A = malloc(r * n_in * sizeof *A);
        float *B = malloc(n_out * r * sizeof *B), *out[3] = {NULL, NULL, NULL};
        for (size_t i = 0; i < n_out * n_in; i++) W[i] = qt_test_gauss(&seed);
        for (size_t i = 0; i < r * n_in; i++) A[i] = 0.1f * qt_test_randf(&seed);
        for (size_t i = 0; i < n_out * r; i++) B[i] = 0.1f * qt_test_randf(&seed);
        const qt_isa isas[3] = {QT_ISA_REF, QT_ISA_AVX2, QT_ISA_AVX512};
        for (int k = 0; k < 3; k++) {
            const qt_kernels *kt = qt_kernels_for(isas[k]);
            if (!kt) continue;
            out[k] = malloc(n_out * n_in * sizeof *W);
            memcpy(out[k], W, n_out * n_in * sizeof *W);
            cr_assert(eq(int, qt_lora_merge(kt, out[k], n_out, n_in, B, r, A, 0.75f), QT_OK));
            if (k > 0)
                cr_assert(eq(int, memcmp(out[0], out[k], n_out * n_in * sizeof *W), 0),
                          "isa %d differs from ref at r %zu", k, r);
        }
        /* the definition: W + s (B A), against fp64 */
        for (size_t o = 0; o < n_out; o++)
            for (size_t i = 0; i < n_in; i++) {
                double d = 0;
                for (size_t j = 0; j < r; j++) d += (double)B[o * r + j] * A[j * n_in + i];
                double want = W[o * n_in + i] + 0.75 * d;
                cr_assert(le(dbl, fabs(out[0][o * n_in + i] - want), 1e-5 * (1 + fabs(want))));
            }
        for (int k = 0; k < 3; k++) free(out[k]);
        free(W);
        free(A);
        free(B);
    }
}

/* ---- merge (convert/merge.c) ---------------------------------------------------- */

static qt_status merge(const char *base, const char *adapter, const char *out,
                       qt_merge_onto onto, qt_scheme scheme, char *err)
{
    qt_merge_opts o = {.base = base, .adapter = adapter, .out = out, .onto = onto,
                       .scheme = scheme, .double_quant = true};
    qt_merge *m = NULL;
    qt_status st = qt_merge_plan(&o, &m, err);
    if (st == QT_OK) st = qt_merge_run(m, err);
    qt_merge_free(m);
    return st;
}

Test(lora, merge_zero_adapter_onto_quantized_nf4_keeps_the_base_bytes)
{
    QT_NEED_DATA();
    char dir[64], nf4[128], out[128], ad[64], err[QT_ERRMSG_SIZE] = "";
    cr_assert(ne(ptr, (char *)qt_test_tmpdir(dir, sizeof dir), NULL));
    convert_nf4(dir, nf4, sizeof nf4);
    handmade h;
    handmade_init(&h, 4, true, 2);
    write_adapter(ad, sizeof ad, &h, (qt_adapter_spec){0});
    snprintf(out, sizeof out, "%s/merged", dir);
    cr_assert(eq(int, merge(nf4, ad, out, QT_MERGE_ONTO_QUANTIZED, QT_SCHEME_NF4, err), QT_OK),
              "%s", err);
    /* every stored tensor byte for byte */
    char pa[160], pb[160];
    snprintf(pa, sizeof pa, "%s/model.safetensors", nf4);
    snprintf(pb, sizeof pb, "%s/model.safetensors", out);
    qt_st_reader *a = NULL, *b = NULL;
    cr_assert(eq(int, qt_st_reader_open(pa, &a, err), QT_OK), "%s", err);
    cr_assert(eq(int, qt_st_reader_open(pb, &b, err), QT_OK), "%s", err);
    cr_assert(eq(sz, qt_st_reader_n_tensors(a), qt_st_reader_n_tensors(b)));
    for (size_t i = 0; i < qt_st_reader_n_tensors(a); i++) {
        const qt_st_tensor *ta = qt_st_reader_tensor(a, i);
        const qt_st_tensor *tb = qt_st_reader_find(b, ta->name);
        cr_assert(ne(ptr, (void *)tb, NULL), "'%s' missing", ta->name);
        cr_assert(eq(u64, ta->nbytes, tb->nbytes), "%s", ta->name);
        cr_assert(eq(int, memcmp(ta->data, tb->data, (size_t)ta->nbytes), 0), "'%s' differs",
                  ta->name);
    }
    cr_assert(ne(ptr, (void *)qt_st_reader_metadata_get(b, "qtool.merge.adapter_fingerprint"),
                 NULL));
    qt_st_reader_close(a);
    qt_st_reader_close(b);
    handmade_free(&h);
    rm_tree(ad);
    rm_tree(dir);
}

Test(lora, merged_into_f32_equals_unmerged_to_fp32_rounding)
{
    QT_NEED_DATA();
    char dir[64], out[128], err[QT_ERRMSG_SIZE] = "";
    cr_assert(ne(ptr, (char *)qt_test_tmpdir(dir, sizeof dir), NULL));
    snprintf(out, sizeof out, "%s/merged", dir);
    const char *ad = data_path("golden/peft-lora/adapter");
    cr_assert(eq(int, merge(data_path("models/stories260K-f32"), ad, out, QT_MERGE_ONTO_ORIGINAL,
                            QT_SCHEME_FP32, err),
                 QT_OK),
              "%s", err);
    int32_t ids[N_IDS];
    golden("f32_base", NULL, ids);
    float *merged = run_logits(out, NULL, ids);
    float *unmerged = run_logits(data_path("models/stories260K-f32"), ad, ids);
    /* the same function, only the rounding of W + s B A differs: logits of
     * magnitude ~20 through 5 layers agree to a few fp32 ulps of 20 */
    double d = max_abs_diff(merged, unmerged, (size_t)N_IDS * VOCAB);
    fprintf(stderr, "merged fp32 vs unmerged: max |diff| %.3g\n", d);
    cr_assert(le(dbl, d, MERGE_F32_TOL), "%.3g", d);
    free(merged);
    free(unmerged);
    rm_tree(dir);
}

Test(lora, merge_refusals)
{
    QT_NEED_DATA();
    char dir[64], nf4[128], out[128], err[QT_ERRMSG_SIZE] = "";
    const char *ad = data_path("golden/peft-lora/adapter");
    const char *f32 = data_path("models/stories260K-f32");
    cr_assert(ne(ptr, (char *)qt_test_tmpdir(dir, sizeof dir), NULL));
    convert_nf4(dir, nf4, sizeof nf4);
    snprintf(out, sizeof out, "%s/merged", dir);
    /* --onto original on a quantized BASE, --onto quantized on an f32 one */
    cr_assert(eq(int, merge(nf4, ad, out, QT_MERGE_ONTO_ORIGINAL, QT_SCHEME_NF4, err), QT_ERR_ARG));
    cr_assert(ne(ptr, strstr(err, "--onto original needs the original"), NULL), "%s", err);
    cr_assert(eq(int, merge(f32, ad, out, QT_MERGE_ONTO_QUANTIZED, QT_SCHEME_NF4, err), QT_ERR_ARG));
    cr_assert(ne(ptr, strstr(err, "is not quantized"), NULL), "%s", err);
    cr_assert(not(qt_path_is_dir(out)), "a refused merge left OUT");
    /* OUT exists: refused without force */
    cr_assert(eq(int, merge(f32, ad, nf4, QT_MERGE_ONTO_ORIGINAL, QT_SCHEME_NF4, err), QT_ERR_ARG));
    cr_assert(ne(ptr, strstr(err, "exists"), NULL), "%s", err);
    rm_tree(dir);
}
