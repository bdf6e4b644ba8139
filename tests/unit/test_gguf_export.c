/* tests/unit/test_gguf_export.c: GGUF export (specs/gguf-export.md): the
 * writer (layout, typed pairs, refusals, atomicity), stories260K-f32 -> F32
 * GGUF byte-identical to ggml-org's stories260K.gguf (tensors and the
 * vocabulary arrays), the same logits as the safetensors model, perplexity
 * bounds per type, the llama-quantize type policy and the refusals. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <dirent.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"
#include "common/half.h"
#include "convert/gguf_export.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "formats/safetensors.h"
#include "formats/vocab.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "testutil.h"

/* ---- helpers ------------------------------------------------------------------ */

/* Exports the shared model `rel` with scheme into dir/name; returns the path. */
static const char *export_model(const char *rel, const char *scheme, const char *dir,
                                const char *name, char *out, size_t n)
{
    char in[1024], err[QT_ERRMSG_SIZE] = "";
    qt_test_data_path(in, sizeof in, rel);
    snprintf(out, n, "%s/%s", dir, name);
    qt_gguf_export_opts o = {.in = in, .out = out, .scheme = scheme, .force = true};
    qt_gguf_export_summary s;
    qt_status st = qt_gguf_export(&o, &s, err);
    cr_assert(eq(int, st, QT_OK), "%s -> %s: %s", rel, scheme, err);
    return out;
}

static qt_gguf *open_gguf(const char *path)
{
    qt_gguf *g = NULL;
    char err[QT_ERRMSG_SIZE] = "";
    cr_assert(eq(int, qt_gguf_open(path, &g, NULL, err), QT_OK), "%s", err);
    return g;
}

/* Number of entries in dir (to see that no temporary file is left). */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += e->d_name[0] != '.';
    if (d) closedir(d);
    return n;
}

static void rm_tree(const char *dir)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert(eq(int, system(cmd), 0));
}

/* ---- the writer ------------------------------------------------------------------ */

Test(gguf_writer, layout_and_typed_pairs_read_back)
{
    char dir[64], path[128];
    cr_assert(ne(ptr, (void *)qt_test_tmpdir(dir, sizeof dir), NULL));
    snprintf(path, sizeof path, "%s/t.gguf", dir);
    qt_gguf_writer *w;
    cr_assert(eq(int, qt_gguf_writer_open(path, &w, NULL), QT_OK));
    const char *s[] = {"a", "bc"};
    uint32_t l[] = {1, 2};
    float f[] = {1.5f, -2.0f};
    int32_t i32[] = {3, -4};
    cr_assert(eq(int, qt_gguf_writer_add_u32(w, "k.u32", 7), QT_OK));
    cr_assert(eq(int, qt_gguf_writer_add_i32(w, "k.i32", -7), QT_OK));
    cr_assert(eq(int, qt_gguf_writer_add_f32(w, "k.f32", 0.25f), QT_OK));
    cr_assert(eq(int, qt_gguf_writer_add_bool(w, "k.bool", true), QT_OK));
    cr_assert(eq(int, qt_gguf_writer_add_str(w, "k.str", "xyz", 3), QT_OK));
    cr_assert(eq(int, qt_gguf_writer_add_arr_str(w, "k.as", s, l, 2), QT_OK));
    cr_assert(eq(int, qt_gguf_writer_add_arr_f32(w, "k.af", f, 2), QT_OK));
    cr_assert(eq(int, qt_gguf_writer_add_arr_i32(w, "k.ai", i32, 2), QT_OK));
    int64_t ne_a[2] = {3, 2}, ne_b[2] = {32, 2};
    cr_assert(eq(int, qt_gguf_writer_add_tensor(w, "a", 2, ne_a, QT_GGML_TYPE_F32, NULL), QT_OK));
    cr_assert(eq(int, qt_gguf_writer_add_tensor(w, "b", 2, ne_b, QT_GGML_TYPE_Q8_0, NULL), QT_OK));
    uint64_t size = qt_gguf_writer_file_size(w);
    cr_assert(eq(int, qt_gguf_writer_begin(w), QT_OK));
    float a[6] = {1, 2, 3, 4, 5, 6};
    unsigned char b[68];
    memset(b, 0x11, sizeof b);
    cr_assert(eq(int, qt_gguf_writer_write(w, a, 8), QT_OK)); /* in pieces */
    cr_assert(eq(int, qt_gguf_writer_write(w, (char *)a + 8, 16), QT_OK));
    cr_assert(eq(int, qt_gguf_writer_write(w, b, 68), QT_OK));
    cr_assert(eq(int, qt_gguf_writer_close(w, NULL), QT_OK));
    qt_gguf *g = open_gguf(path);
    struct stat stt;
    cr_assert(eq(int, stat(path, &stt), 0));
    cr_assert(eq(u64, (uint64_t)stt.st_size, size));
    cr_assert(eq(sz, qt_gguf_n_kv(g), 8));
    const char *key[] = {"k.u32", "k.i32", "k.f32", "k.bool", "k.str", "k.as", "k.af", "k.ai"};
    qt_gguf_type type[] = {QT_GGUF_TYPE_UINT32, QT_GGUF_TYPE_INT32, QT_GGUF_TYPE_FLOAT32,
                           QT_GGUF_TYPE_BOOL, QT_GGUF_TYPE_STRING, QT_GGUF_TYPE_ARRAY,
                           QT_GGUF_TYPE_ARRAY, QT_GGUF_TYPE_ARRAY};
    for (size_t k = 0; k < 8; k++) { /* declaration order and exact types */
        cr_assert(eq(str, (char *)qt_gguf_kv_key(g, k), (char *)key[k]));
        cr_assert(eq(int, qt_gguf_kv_type(g, k), type[k]));
    }
    uint32_t u;
    float fv;
    int32_t iv;
    cr_assert(eq(int, qt_gguf_get_u32(g, 0, &u, NULL), QT_OK));
    cr_assert(eq(u32, u, 7));
    cr_assert(eq(int, qt_gguf_get_arr_f32(g, 6, 1, &fv, NULL), QT_OK));
    cr_assert(eq(flt, fv, -2.0f));
    cr_assert(eq(int, qt_gguf_get_arr_i32(g, 7, 1, &iv, NULL), QT_OK));
    cr_assert(eq(i32, iv, -4));
    /* offsets: 0, then PAD(24, 32) = 32; data section 32-aligned */
    cr_assert(eq(sz, qt_gguf_data_offset(g) % 32, 0));
    cr_assert(eq(sz, qt_gguf_tensor_offset(g, 0), qt_gguf_data_offset(g)));
    cr_assert(eq(sz, qt_gguf_tensor_offset(g, 1), qt_gguf_data_offset(g) + 32));
    cr_assert(eq(int, memcmp(qt_gguf_tensor_data(g, 0), a, 24), 0));
    cr_assert(eq(int, memcmp(qt_gguf_tensor_data(g, 1), b, 68), 0));
    qt_gguf_close(g);
    cr_assert(eq(int, count_entries(dir), 1)); /* no temporary file left */
    rm_tree(dir);
}

Test(gguf_writer, refuses_what_llama_cpp_rejects)
{
    qt_gguf_writer *w;
    cr_assert(eq(int, qt_gguf_writer_open("/tmp/unused.gguf", &w, NULL), QT_OK));
    int64_t ne[2] = {33, 2}, ok[2] = {32, 1};
    cr_assert(eq(int, qt_gguf_writer_add_u32(w, "", 1), QT_ERR_ARG));
    qt_gguf_writer_abort(w);
    cr_assert(eq(int, qt_gguf_writer_open("/tmp/unused.gguf", &w, NULL), QT_OK));
    cr_assert(eq(int, qt_gguf_writer_add_u32(w, "x", 1), QT_OK));
    cr_assert(eq(int, qt_gguf_writer_add_u32(w, "x", 2), QT_ERR_ARG));
    cr_assert(eq(str, (char *)qt_gguf_writer_errmsg(w), "gguf writer: duplicate key 'x'"));
    qt_gguf_writer_abort(w);
    cr_assert(eq(int, qt_gguf_writer_open("/tmp/unused.gguf", &w, NULL), QT_OK));
    cr_assert(eq(int, qt_gguf_writer_add_tensor(w, "q", 2, ne, QT_GGML_TYPE_Q8_0, NULL), QT_ERR_ARG));
    qt_gguf_writer_abort(w);
    char name[80];
    memset(name, 'n', 64);
    name[64] = 0; /* 64 bytes: one too many */
    cr_assert(eq(int, qt_gguf_writer_open("/tmp/unused.gguf", &w, NULL), QT_OK));
    cr_assert(eq(int, qt_gguf_writer_add_tensor(w, name, 2, ok, QT_GGML_TYPE_F32, NULL), QT_ERR_ARG));
    qt_gguf_writer_abort(w);
    cr_assert(eq(int, qt_gguf_writer_open("/tmp/unused.gguf", &w, NULL), QT_OK));
    cr_assert(eq(int, qt_gguf_writer_add_tensor(w, "t", 2, ok, QT_GGML_TYPE_F32, NULL), QT_OK));
    cr_assert(eq(int, qt_gguf_writer_add_tensor(w, "t", 2, ok, QT_GGML_TYPE_F32, NULL), QT_ERR_ARG));
    qt_gguf_writer_abort(w);
    cr_assert(eq(int, qt_gguf_writer_open("/tmp/unused.gguf", &w, NULL), QT_OK));
    cr_assert(eq(int, qt_gguf_writer_add_tensor(w, "t", 5, ok, QT_GGML_TYPE_F32, NULL), QT_ERR_ARG));
    qt_gguf_writer_abort(w);
    const float *none = NULL;
    cr_assert(eq(int, qt_gguf_writer_open("/tmp/unused.gguf", &w, NULL), QT_OK));
    cr_assert(eq(int, qt_gguf_writer_add_arr_f32(w, "empty", none, 0), QT_ERR_ARG));
    qt_gguf_writer_abort(w);
}

/* An incomplete tensor fails the close: the old file stays, no temporary is left. */
Test(gguf_writer, incomplete_write_leaves_old_file)
{
    char dir[64], path[128];
    cr_assert(ne(ptr, (void *)qt_test_tmpdir(dir, sizeof dir), NULL));
    snprintf(path, sizeof path, "%s/t.gguf", dir);
    FILE *f = fopen(path, "w");
    fputs("old", f);
    fclose(f);
    qt_gguf_writer *w;
    int64_t ne[1] = {8};
    float x[8] = {0};
    char err[QT_ERRMSG_SIZE] = "";
    cr_assert(eq(int, qt_gguf_writer_open(path, &w, NULL), QT_OK));
    cr_assert(eq(int, qt_gguf_writer_add_tensor(w, "t", 1, ne, QT_GGML_TYPE_F32, NULL), QT_OK));
    cr_assert(eq(int, qt_gguf_writer_begin(w), QT_OK));
    cr_assert(eq(int, qt_gguf_writer_write(w, x, 16), QT_OK));
    cr_assert(eq(int, qt_gguf_writer_write(w, x, 20), QT_ERR_ARG)); /* past the end */
    cr_assert(eq(int, qt_gguf_writer_close(w, err), QT_ERR_ARG));
    cr_assert(ne(ptr, strstr(err, "past the end of tensor 't'"), NULL), "%s", err);
    char buf[8] = "";
    f = fopen(path, "r");
    cr_assert(ne(ptr, fgets(buf, sizeof buf, f), NULL));
    fclose(f);
    cr_assert(eq(str, buf, "old"));
    cr_assert(eq(int, count_entries(dir), 1));
    rm_tree(dir);
}

/* ---- stories260K: bytes and logits --------------------------------------------------- */

/* Every tensor of ours is byte-identical to the reference's tensor of that
 * name (the reference also stores output.weight, a copy we omit), and so are
 * the tokens, scores and token_type arrays. */
Test(gguf_export, stories_f32_bytes_match_ggml_org_reference)
{
    QT_NEED_DATA();
    char dir[64], out[256], ref[1024];
    cr_assert(ne(ptr, (void *)qt_test_tmpdir(dir, sizeof dir), NULL));
    export_model("models/stories260K-f32", "f32", dir, "s.gguf", out, sizeof out);
    qt_gguf *a = open_gguf(out);
    qt_gguf *b = open_gguf(qt_test_data_path(ref, sizeof ref,
                                             "models/stories260K-gguf/stories260K.gguf"));
    cr_assert(eq(sz, qt_gguf_n_tensors(a), 47));
    for (size_t t = 0; t < qt_gguf_n_tensors(a); t++) {
        const char *name = qt_gguf_tensor_name(a, t);
        int64_t u = qt_gguf_find_tensor(b, name);
        cr_assert(ge(i64, u, 0), "%s not in the reference", name);
        cr_assert(eq(int, qt_gguf_tensor_type(a, t), qt_gguf_tensor_type(b, (size_t)u)));
        cr_assert(eq(int, memcmp(qt_gguf_tensor_ne(a, t), qt_gguf_tensor_ne(b, (size_t)u),
                                 4 * sizeof(int64_t)), 0), "%s: ne differs", name);
        size_t n = qt_gguf_tensor_nbytes(a, t);
        cr_assert(eq(sz, n, qt_gguf_tensor_nbytes(b, (size_t)u)));
        cr_assert(eq(int, memcmp(qt_gguf_tensor_data(a, t), qt_gguf_tensor_data(b, (size_t)u), n),
                     0), "%s: bytes differ", name);
    }
    static const char *const arrays[] = {"tokenizer.ggml.tokens", "tokenizer.ggml.scores",
                                         "tokenizer.ggml.token_type"};
    for (size_t k = 0; k < 3; k++) {
        int64_t ia = qt_gguf_find_key(a, arrays[k]), ib = qt_gguf_find_key(b, arrays[k]);
        cr_assert(ge(i64, ia, 0));
        cr_assert(ge(i64, ib, 0));
        qt_gguf_type ta, tb;
        size_t na, nb;
        cr_assert(eq(int, qt_gguf_get_arr_info(a, (size_t)ia, &ta, &na, NULL), QT_OK));
        cr_assert(eq(int, qt_gguf_get_arr_info(b, (size_t)ib, &tb, &nb, NULL), QT_OK));
        cr_assert(eq(int, ta, tb));
        cr_assert(eq(sz, na, nb));
        for (size_t j = 0; j < na; j++) {
            if (ta == QT_GGUF_TYPE_STRING) {
                const char *sa, *sb;
                size_t la, lb;
                qt_gguf_get_arr_str(a, (size_t)ia, j, &sa, &la, NULL);
                qt_gguf_get_arr_str(b, (size_t)ib, j, &sb, &lb, NULL);
                cr_assert(eq(sz, la, lb));
                cr_assert(eq(int, memcmp(sa, sb, la), 0), "token %zu differs", j);
            } else {
                uint32_t va, vb;
                qt_gguf_get_arr_elem(a, (size_t)ia, j, ta, &va, NULL);
                qt_gguf_get_arr_elem(b, (size_t)ib, j, tb, &vb, NULL);
                cr_assert(eq(u32, va, vb), "%s[%zu] differs", arrays[k], j);
            }
        }
    }
    qt_gguf_close(a);
    qt_gguf_close(b);
    rm_tree(dir);
}

/* Logits (n positions, V) of tokens 1, 2, ... through model path. */
static float *logits_of(const char *path, size_t n, size_t *V)
{
    qt_model *m = NULL;
    char err[QT_ERRMSG_SIZE] = "";
    cr_assert(eq(int, qt_model_open(path, NULL, &m, err), QT_OK), "%s: %s", path, err);
    *V = qt_model_get_config(m)->vocab_size;
    int32_t toks[256];
    for (size_t i = 0; i < n; i++) toks[i] = (int32_t)(1 + (i * 37) % (*V - 1));
    float *l = malloc(n * *V * sizeof *l);
    cr_assert(eq(int, qt_model_eval(m, toks, n, 0, l), QT_OK));
    qt_model_free(m);
    return l;
}

Test(gguf_export, f32_gguf_gives_the_safetensors_logits)
{
    QT_NEED_DATA();
    char dir[64], out[256], in[1024];
    cr_assert(ne(ptr, (void *)qt_test_tmpdir(dir, sizeof dir), NULL));
    export_model("models/stories260K-f32", "f32", dir, "s.gguf", out, sizeof out);
    size_t V, V2;
    float *a = logits_of(qt_test_data_path(in, sizeof in, "models/stories260K-f32"), 64, &V);
    float *b = logits_of(out, 64, &V2);
    cr_assert(eq(sz, V, V2));
    double worst = 0;
    for (size_t i = 0; i < 64 * V; i++) worst = fmax(worst, fabs((double)a[i] - b[i]));
    cr_log_info("safetensors vs exported F32 GGUF: max |logit difference| %.3g", worst);
    cr_assert(le(dbl, worst, 1e-5));
    free(a);
    free(b);
    rm_tree(dir);
}

/* Perplexity of the model at path over the text's tokens (greedy story). */
static double ppl_of(const char *path, const int32_t *toks, size_t n)
{
    qt_model *m = NULL;
    char err[QT_ERRMSG_SIZE] = "";
    cr_assert(eq(int, qt_model_open(path, NULL, &m, err), QT_OK), "%s: %s", path, err);
    size_t V = qt_model_get_config(m)->vocab_size;
    float *l = malloc(n * V * sizeof *l);
    cr_assert(eq(int, qt_model_eval(m, toks, n, 0, l), QT_OK));
    double nll = 0;
    for (size_t t = 0; t + 1 < n; t++) {
        const float *r = l + t * V;
        double mx = r[0], s = 0;
        for (size_t v = 1; v < V; v++) mx = fmax(mx, r[v]);
        for (size_t v = 0; v < V; v++) s += exp(r[v] - mx);
        nll += mx + log(s) - r[toks[t + 1]];
    }
    free(l);
    qt_model_free(m);
    return exp(nll / (double)(n - 1));
}

/* The first n tokens of tinystories_sample.txt (<|endoftext|> as a newline),
 * encoded with the vocabulary read back from the GGUF at path. */
static size_t story_tokens(const char *path, int32_t *toks, size_t n)
{
    char tp[1024], err[QT_ERRMSG_SIZE] = "";
    FILE *f = fopen(qt_test_data_path(tp, sizeof tp, "text/tinystories_sample.txt"), "rb");
    cr_assert(ne(ptr, f, NULL));
    char text[4096];
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = 0;
    for (char *e; (e = strstr(text, "<|endoftext|>"));) {
        *e = '\n';
        memmove(e + 1, e + 13, strlen(e + 13) + 1);
    }
    qt_vocab *v = NULL;
    qt_tokenizer *tok = NULL;
    cr_assert(eq(int, qt_model_gguf_vocab(path, &v, err), QT_OK), "%s", err);
    cr_assert(eq(int, qt_tokenizer_new(v, &tok), QT_OK));
    int32_t *ids;
    size_t n_ids;
    cr_assert(eq(int, qt_tokenizer_encode(tok, text, strlen(text), true, &ids, &n_ids), QT_OK));
    size_t m = n_ids < n ? n_ids : n;
    memcpy(toks, ids, m * sizeof *ids);
    qt_free(ids);
    qt_tokenizer_free(tok);
    qt_vocab_free(v);
    return m;
}

/* PPL of each scheme relative to F32 over 256 tokens of TinyStories text,
 * tokenized with the exported vocabulary. On stories260K (hidden 64) every
 * K type falls back (rows of 64 are not 256-blocks: Q4_K->Q5_0, Q5_K->Q5_1,
 * Q6_K->Q8_0, Q2_K/Q3_K->Q4_0) and ffn_down (ne0 172) is F16 in all.
 * Bounds, from llama.cpp's own llama-perplexity on this model (spec, top
 * table: f16 -0.01 %, bf16 -0.07 %, q8_0 +0.47 %, q4_0 +12.8 %):
 *  - f16, bf16: within 0.3 % either way (~4x llama.cpp's change);
 *  - 8-bit (q8_0, Q8_0, and Q6_K whose matrices all become Q8_0): at most
 *    +1.5 % (~3x);
 *  - 5-bit (q5_0, q5_1, Q5_K_M, Q4_K_M, whose matrices are Q5_0/Q5_1/Q8_0
 *    here): at most +8 %: 5-bit weight noise is half the 4-bit one (RMSE
 *    0.043 vs 0.086 of sigma for Gaussian rows), the PPL change ~ noise
 *    power, so ~1/4 of Q4_0's 12.8 %, with 2.5x headroom;
 *  - 4-bit (q4_0, q4_1, Q4_0, Q2_K, Q3_K_M): at most +15 % (llama.cpp's
 *    Q4_0 figure plus headroom for the different text).
 * Quantization may not help by more than 1 % (a lower bound catches a
 * scorer that ignores the weights). */
Test(gguf_export, perplexity_bounds_per_type)
{
    QT_NEED_DATA();
    static const struct {
        const char *scheme;
        double lo, hi; /* bounds on ppl / ppl_f32 - 1 */
    } types[] = {
        {"f16", -0.003, 0.003}, {"bf16", -0.003, 0.003}, {"q8_0", -0.01, 0.015},
        {"Q8_0", -0.01, 0.015}, {"Q6_K", -0.01, 0.015},  {"q5_0", -0.01, 0.08},
        {"q5_1", -0.01, 0.08},  {"Q5_K_M", -0.01, 0.08}, {"Q4_K_M", -0.01, 0.08},
        {"q4_0", -0.01, 0.15},  {"q4_1", -0.01, 0.15},   {"Q4_0", -0.01, 0.15},
        {"Q3_K_M", -0.01, 0.15}, {"Q2_K", -0.01, 0.15},
    };
    char dir[64], out[256];
    cr_assert(ne(ptr, (void *)qt_test_tmpdir(dir, sizeof dir), NULL));
    export_model("models/stories260K-f32", "f32", dir, "f32.gguf", out, sizeof out);
    int32_t toks[256];
    size_t n = story_tokens(out, toks, 256);
    cr_assert(eq(sz, n, 256));
    double base = ppl_of(out, toks, n);
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        char name[64];
        snprintf(name, sizeof name, "%s.gguf", types[k].scheme);
        export_model("models/stories260K-f32", types[k].scheme, dir, name, out, sizeof out);
        double p = ppl_of(out, toks, n);
        cr_log_info("%s: ppl %.5f vs f32 %.5f (%+.3f %%)", types[k].scheme, p, base,
                    100 * (p / base - 1));
        double rel = p / base - 1;
        cr_assert(rel >= types[k].lo && rel <= types[k].hi, "%s: ppl %.5f vs f32 %.5f",
                  types[k].scheme, p, base);
    }
    rm_tree(dir);
}

/* f16/bf16 matrices of the f32 checkpoint equal those of the published
 * f16/bf16 checkpoints (round-to-nearest-even copies of the same weights)
 * exported as they are (norms stay F32 and so keep the source's rounding). */
Test(gguf_export, half_types_match_the_half_checkpoints)
{
    QT_NEED_DATA();
    static const char *const pairs[][2] = {{"f16", "models/stories260K-f16"},
                                           {"bf16", "models/stories260K-bf16"}};
    char dir[64], a_path[256], b_path[256];
    cr_assert(ne(ptr, (void *)qt_test_tmpdir(dir, sizeof dir), NULL));
    for (size_t k = 0; k < 2; k++) {
        export_model("models/stories260K-f32", pairs[k][0], dir, "a.gguf", a_path, sizeof a_path);
        export_model(pairs[k][1], pairs[k][0], dir, "b.gguf", b_path, sizeof b_path);
        qt_gguf *a = open_gguf(a_path), *b = open_gguf(b_path);
        cr_assert(eq(sz, qt_gguf_n_tensors(a), qt_gguf_n_tensors(b)));
        for (size_t t = 0; t < qt_gguf_n_tensors(a); t++) {
            cr_assert(eq(sz, qt_gguf_tensor_nbytes(a, t), qt_gguf_tensor_nbytes(b, t)));
            if (qt_gguf_tensor_type(a, t) == QT_GGML_TYPE_F32) continue; /* norms: F32 */
            cr_assert(eq(int, memcmp(qt_gguf_tensor_data(a, t), qt_gguf_tensor_data(b, t),
                                     qt_gguf_tensor_nbytes(a, t)), 0),
                      "%s: %s differs", pairs[k][0], qt_gguf_tensor_name(a, t));
        }
        qt_gguf_close(a);
        qt_gguf_close(b);
    }
    rm_tree(dir);
}

/* Q8_0 blocks follow §7.1 from the spec's formula: d = fp16(amax / 127),
 * q = roundf(x / d) computed as x * (1 / d); checked on every block of the
 * exported attn_q of block 0 against the F32 export's (permuted) rows. */
Test(gguf_export, q8_0_blocks_follow_the_spec)
{
    QT_NEED_DATA();
    char dir[64], fp[256], qp[256];
    cr_assert(ne(ptr, (void *)qt_test_tmpdir(dir, sizeof dir), NULL));
    export_model("models/stories260K-f32", "f32", dir, "f.gguf", fp, sizeof fp);
    export_model("models/stories260K-f32", "q8_0", dir, "q.gguf", qp, sizeof qp);
    qt_gguf *f = open_gguf(fp), *q = open_gguf(qp);
    int64_t tf = qt_gguf_find_tensor(f, "blk.0.attn_q.weight");
    int64_t tq = qt_gguf_find_tensor(q, "blk.0.attn_q.weight");
    cr_assert(eq(int, qt_gguf_tensor_type(q, (size_t)tq), QT_GGML_TYPE_Q8_0));
    const float *x = qt_gguf_tensor_data(f, (size_t)tf);
    const unsigned char *b = qt_gguf_tensor_data(q, (size_t)tq);
    size_t n = (size_t)qt_gguf_tensor_n_elements(f, (size_t)tf);
    for (size_t blk = 0; blk < n / 32; blk++, b += 34) {
        float amax = 0;
        for (size_t j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[blk * 32 + j]));
        float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
        cr_assert(eq(u16, (uint16_t)(b[0] | b[1] << 8), qt_fp32_to_fp16(d)));
        for (size_t j = 0; j < 32; j++)
            cr_assert(eq(i8, (int8_t)b[2 + j], (int8_t)roundf(x[blk * 32 + j] * id)));
    }
    /* the five ffn_down (ne0 = 172) fell back to F16 (§7.4) */
    int64_t td = qt_gguf_find_tensor(q, "blk.4.ffn_down.weight");
    cr_assert(eq(int, qt_gguf_tensor_type(q, (size_t)td), QT_GGML_TYPE_F16));
    qt_gguf_close(f);
    qt_gguf_close(q);
    rm_tree(dir);
}

/* ---- the llama-quantize type policy -------------------------------------------------- */

static qt_gguf_policy policy(const char *scheme, uint32_t n_layers, uint32_t n_gqa, bool tied)
{
    qt_gguf_policy p = {.scheme = qt_gguf_scheme_find(scheme), .tied = tied,
                        .n_layers = n_layers, .n_gqa = n_gqa};
    cr_assert(ne(ptr, (void *)p.scheme, NULL), "%s", scheme);
    return p;
}

#define TY(p, role, layer, ne0) qt_gguf_policy_type(&(p), (role), (layer), 2, (ne0), NULL)

/* TinyLlama-1.1B shape (22 layers, GQA 8, hidden 2048, ff 5632), Q4_K_M:
 * attn_v and ffn_down get Q6_K in the first and last eighth and every third
 * block between (llama.cpp's use_more_bits): blocks 0 1 4 7 10 13 16 19 20 21;
 * output Q6_K, everything else Q4_K. */
Test(gguf_policy, q4_k_m_on_tinyllama)
{
    qt_gguf_policy p = policy("Q4_K_M", 22, 8, false);
    static const int more[] = {0, 1, 4, 7, 10, 13, 16, 19, 20, 21};
    for (int l = 0; l < 22; l++) {
        bool m = false;
        for (size_t i = 0; i < sizeof more / sizeof more[0]; i++) m |= more[i] == l;
        qt_ggml_type want = m ? QT_GGML_TYPE_Q6_K : QT_GGML_TYPE_Q4_K;
        cr_assert(eq(int, TY(p, QT_GGUF_ROLE_ATTN_V, l, 2048), want), "attn_v %d", l);
        cr_assert(eq(int, TY(p, QT_GGUF_ROLE_FFN_DOWN, l, 5632), want), "ffn_down %d", l);
        cr_assert(eq(int, TY(p, QT_GGUF_ROLE_ATTN_Q, l, 2048), QT_GGML_TYPE_Q4_K));
        cr_assert(eq(int, TY(p, QT_GGUF_ROLE_FFN_UP, l, 2048), QT_GGML_TYPE_Q4_K));
    }
    cr_assert(eq(int, TY(p, QT_GGUF_ROLE_OUTPUT, -1, 2048), QT_GGML_TYPE_Q6_K));
    cr_assert(eq(int, TY(p, QT_GGUF_ROLE_TOKEN_EMBD, -1, 2048), QT_GGML_TYPE_Q4_K));
    cr_assert(eq(int, qt_gguf_policy_type(&p, QT_GGUF_ROLE_ATTN_NORM, 0, 1, 2048, NULL),
                 QT_GGML_TYPE_F32));
    p.pure = true;
    cr_assert(eq(int, TY(p, QT_GGUF_ROLE_ATTN_V, 0, 2048), QT_GGML_TYPE_Q4_K));
    cr_assert(eq(int, TY(p, QT_GGUF_ROLE_OUTPUT, -1, 2048), QT_GGML_TYPE_Q4_K));
}

/* Q2_K: attn_v Q4_K with GQA >= 4 (else Q3_K), ffn_down and attn_output
 * Q3_K; Q3_K_M: attn_v Q5_K in blocks 0-1 then Q4_K, ffn_down Q5_K below
 * n/16 then Q4_K, attn_output Q4_K; Q6_K and Q8_0 keep their type. */
Test(gguf_policy, low_bit_mixes)
{
    qt_gguf_policy p = policy("Q2_K", 32, 8, false);
    cr_assert(eq(int, TY(p, QT_GGUF_ROLE_ATTN_V, 5, 4096), QT_GGML_TYPE_Q4_K));
    cr_assert(eq(int, TY(p, QT_GGUF_ROLE_FFN_DOWN, 5, 11008), QT_GGML_TYPE_Q3_K));
    cr_assert(eq(int, TY(p, QT_GGUF_ROLE_ATTN_OUTPUT, 5, 4096), QT_GGML_TYPE_Q3_K));
    cr_assert(eq(int, TY(p, QT_GGUF_ROLE_FFN_GATE, 5, 4096), QT_GGML_TYPE_Q2_K));
    p = policy("Q2_K", 32, 1, false);
    cr_assert(eq(int, TY(p, QT_GGUF_ROLE_ATTN_V, 5, 4096), QT_GGML_TYPE_Q3_K));
    p = policy("Q3_K_M", 32, 1, false);
    cr_assert(eq(int, TY(p, QT_GGUF_ROLE_ATTN_V, 1, 4096), QT_GGML_TYPE_Q5_K));
    cr_assert(eq(int, TY(p, QT_GGUF_ROLE_ATTN_V, 2, 4096), QT_GGML_TYPE_Q4_K));
    cr_assert(eq(int, TY(p, QT_GGUF_ROLE_FFN_DOWN, 1, 11008), QT_GGML_TYPE_Q5_K));
    cr_assert(eq(int, TY(p, QT_GGUF_ROLE_FFN_DOWN, 2, 11008), QT_GGML_TYPE_Q4_K));
    cr_assert(eq(int, TY(p, QT_GGUF_ROLE_ATTN_OUTPUT, 9, 4096), QT_GGML_TYPE_Q4_K));
    cr_assert(eq(int, TY(p, QT_GGUF_ROLE_ATTN_Q, 9, 4096), QT_GGML_TYPE_Q3_K));
    p = policy("Q6_K", 32, 1, false);
    cr_assert(eq(int, TY(p, QT_GGUF_ROLE_ATTN_V, 0, 4096), QT_GGML_TYPE_Q6_K));
    cr_assert(eq(int, TY(p, QT_GGUF_ROLE_OUTPUT, -1, 4096), QT_GGML_TYPE_Q6_K));
    p = policy("Q8_0", 32, 1, true);
    cr_assert(eq(int, TY(p, QT_GGUF_ROLE_TOKEN_EMBD, -1, 4096), QT_GGML_TYPE_Q8_0));
}

/* Legacy mixes: only the output (or the tied embedding) changes: Q6_K,
 * or Q8_0 when its rows are not whole 256-blocks... of the scheme's block. */
Test(gguf_policy, legacy_mix_output_rule)
{
    qt_gguf_policy p = policy("Q4_0", 22, 8, true);
    cr_assert(eq(int, TY(p, QT_GGUF_ROLE_TOKEN_EMBD, -1, 2048), QT_GGML_TYPE_Q6_K));
    cr_assert(eq(int, TY(p, QT_GGUF_ROLE_ATTN_V, 0, 2048), QT_GGML_TYPE_Q4_0));
    cr_assert(eq(int, TY(p, QT_GGUF_ROLE_FFN_DOWN, 0, 5632), QT_GGML_TYPE_Q4_0));
    /* stories260K: hidden 64 -> Q6_K does not fit, its fallback is Q8_0 */
    bool fb = false;
    cr_assert(eq(int, qt_gguf_policy_type(&p, QT_GGUF_ROLE_TOKEN_EMBD, -1, 2, 64, &fb),
                 QT_GGML_TYPE_Q8_0));
    cr_assert(fb);
    p = policy("q4_0", 22, 8, true); /* lowercase: pure */
    cr_assert(eq(int, TY(p, QT_GGUF_ROLE_TOKEN_EMBD, -1, 2048), QT_GGML_TYPE_Q4_0));
}

/* Rows that are not whole blocks: llama-quantize's chain, then F16. */
Test(gguf_policy, fallback_chain)
{
    static const struct {
        const char *scheme;
        int64_t ne0;
        qt_ggml_type want;
    } cases[] = {
        {"q4_k", 4864 + 32, QT_GGML_TYPE_Q5_0}, {"q5_k", 96, QT_GGML_TYPE_Q5_1},
        {"q6_k", 96, QT_GGML_TYPE_Q8_0},        {"q2_k", 96, QT_GGML_TYPE_Q4_0},
        {"q3_k", 96, QT_GGML_TYPE_Q4_0},        {"q4_k", 172, QT_GGML_TYPE_F16},
        {"q8_0", 172, QT_GGML_TYPE_F16},        {"q4_0", 172, QT_GGML_TYPE_F16},
        {"q4_k", 256, QT_GGML_TYPE_Q4_K},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        qt_gguf_policy p = policy(cases[i].scheme, 4, 1, false);
        bool fb = false;
        qt_ggml_type t = qt_gguf_policy_type(&p, QT_GGUF_ROLE_FFN_UP, 0, 2, cases[i].ne0, &fb);
        cr_assert(eq(int, t, cases[i].want), "%s ne0 %lld", cases[i].scheme,
                  (long long)cases[i].ne0);
        cr_assert(eq(int, fb, t != p.scheme->type));
    }
}

/* ---- refusals on tensors ---------------------------------------------------------------- */

/* A model folder: stories260K's config.json and tokenizer.model, and a
 * model.safetensors holding zero-filled F32 tensors named names[i] with the
 * given 1-D or 2-D shapes. */
static void make_model(const char *dir, const char *const *names, const int64_t (*shapes)[2],
                       size_t n)
{
    char path[256], src[1024], hdr[4096];
    size_t len = 0, off = 0;
    len += (size_t)snprintf(hdr + len, sizeof hdr - len, "{");
    for (size_t i = 0; i < n; i++) {
        size_t elems = (size_t)shapes[i][0] * (size_t)(shapes[i][1] ? shapes[i][1] : 1);
        if (shapes[i][1])
            len += (size_t)snprintf(hdr + len, sizeof hdr - len, "%s\"%s\":{\"dtype\":\"F32\","
                                    "\"shape\":[%lld,%lld],\"data_offsets\":[%zu,%zu]}",
                                    i ? "," : "", names[i], (long long)shapes[i][0],
                                    (long long)shapes[i][1], off, off + 4 * elems);
        else
            len += (size_t)snprintf(hdr + len, sizeof hdr - len, "%s\"%s\":{\"dtype\":\"F32\","
                                    "\"shape\":[%lld],\"data_offsets\":[%zu,%zu]}", i ? "," : "",
                                    names[i], (long long)shapes[i][0], off, off + 4 * elems);
        off += 4 * elems;
    }
    len += (size_t)snprintf(hdr + len, sizeof hdr - len, "}");
    while (len % 8) hdr[len++] = ' ';
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *f = fopen(path, "wb");
    uint64_t hl = len;
    fwrite(&hl, 8, 1, f);
    fwrite(hdr, 1, len, f);
    for (size_t i = 0; i < off; i++) fputc(0, f);
    fclose(f);
    static const char *const copy[] = {"config.json", "tokenizer.model"};
    for (size_t i = 0; i < 2; i++) {
        char cmd[2400];
        snprintf(cmd, sizeof cmd, "cp '%s/%s' '%s/'",
                 qt_test_data_path(src, sizeof src, "models/stories260K-f32"), copy[i], dir);
        cr_assert(eq(int, system(cmd), 0));
    }
}

/* Exports dir; expects QT_ERR_FORMAT / UNSUPPORTED with want in the message. */
static void expect_refusal(const char *dir, const char *want)
{
    char out[256], err[QT_ERRMSG_SIZE] = "";
    snprintf(out, sizeof out, "%s/out.gguf", dir);
    qt_gguf_export_opts o = {.in = dir, .out = out, .scheme = "f32"};
    qt_gguf_export_summary s;
    qt_status st = qt_gguf_export(&o, &s, err);
    cr_assert(st == QT_ERR_FORMAT || st == QT_ERR_UNSUPPORTED, "status %d: %s", (int)st, err);
    cr_assert(ne(ptr, strstr(err, want), NULL), "'%s' lacks '%s'", err, want);
    cr_assert(ne(int, access(out, F_OK), 0), "output written");
}

Test(gguf_export, refuses_a_tensor_llama_cpp_cannot_map)
{
    QT_NEED_DATA();
    char dir[64];
    cr_assert(ne(ptr, (void *)qt_test_tmpdir(dir, sizeof dir), NULL));
    static const char *const names[] = {"model.embed_tokens.weight",
                                        "model.layers.0.mlp.extra_proj.weight"};
    static const int64_t shapes[][2] = {{512, 64}, {64, 64}};
    make_model(dir, names, shapes, 2);
    expect_refusal(dir, "tensor 'model.layers.0.mlp.extra_proj.weight': cannot map");
    rm_tree(dir);
}

Test(gguf_export, refuses_a_block_without_its_tensors)
{
    QT_NEED_DATA();
    char dir[64];
    cr_assert(ne(ptr, (void *)qt_test_tmpdir(dir, sizeof dir), NULL));
    static const char *const names[] = {"model.embed_tokens.weight", "model.norm.weight",
                                        "model.layers.0.self_attn.rotary_emb.inv_freq"};
    static const int64_t shapes[][2] = {{512, 64}, {64, 0}, {4, 0}};
    make_model(dir, names, shapes, 3);
    expect_refusal(dir, "block 0 has no 'attn_norm' tensor");
    rm_tree(dir);
}

Test(gguf_export, refuses_a_layer_past_num_hidden_layers)
{
    QT_NEED_DATA();
    char dir[64];
    cr_assert(ne(ptr, (void *)qt_test_tmpdir(dir, sizeof dir), NULL));
    static const char *const names[] = {"model.embed_tokens.weight",
                                        "model.layers.5.input_layernorm.weight"};
    static const int64_t shapes[][2] = {{512, 64}, {64, 0}};
    make_model(dir, names, shapes, 2);
    expect_refusal(dir, "tensor 'model.layers.5.input_layernorm.weight': cannot map");
    rm_tree(dir);
}

/* ---- K-quant blocks through the runtime -------------------------------------------------- */

/* Relative RMS difference of logits b against a (over n). */
static double rel_err(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0, mean = 0;
    for (size_t i = 0; i < n; i++) mean += a[i];
    mean /= (double)n;
    for (size_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += ((double)a[i] - mean) * ((double)a[i] - mean);
    }
    return sqrt(num / den);
}

/* A synthetic model whose rows are whole 256-blocks (hidden 256, ff 512):
 * the pure K types really write K blocks, the runtime runs them, and the
 * logits move away from F32 in the order of the types' bits. Weight noise
 * of Gaussian rows (relative RMSE, measured with quant/'s kernels): q6_k
 * 0.018, q5_k 0.036, q4_k 0.071, q3_k 0.15, q2_k 0.29; the logits of this
 * 2-block model may amplify it by up to 3x (two blocks of three matmuls in
 * series plus the output). */
Test(gguf_export, k_quants_run_and_order_by_bits, .timeout = 60)
{
    QT_NEED_DATA();
    static const struct {
        const char *scheme;
        qt_ggml_type type;
        double weight_rmse;
    } types[] = {{"q6_k", QT_GGML_TYPE_Q6_K, 0.018}, {"q5_k", QT_GGML_TYPE_Q5_K, 0.036},
                 {"q4_k", QT_GGML_TYPE_Q4_K, 0.071}, {"q3_k", QT_GGML_TYPE_Q3_K, 0.15},
                 {"q2_k", QT_GGML_TYPE_Q2_K, 0.29}};
    char dir[64], model[128], out[256], cmd[2400], src[1024];
    cr_assert(ne(ptr, (void *)qt_test_tmpdir(dir, sizeof dir), NULL));
    snprintf(model, sizeof model, "%s/synth", dir);
    qt_bench_synth_opts so = {.hidden = 256, .intermediate = 512, .layers = 2, .heads = 4,
                              .kv_heads = 2, .vocab = 512, .dtype = "fp32", .seed = 7};
    char err[QT_ERRMSG_SIZE] = "";
    cr_assert(eq(int, qt_bench_synth(&so, model, NULL, err), QT_OK), "%s", err);
    snprintf(cmd, sizeof cmd, "cp '%s/tokenizer.model' '%s/'",
             qt_test_data_path(src, sizeof src, "models/stories260K-f32"), model);
    cr_assert(eq(int, system(cmd), 0));
    char f32[256];
    snprintf(f32, sizeof f32, "%s/f32.gguf", dir);
    qt_gguf_export_opts o = {.in = model, .out = f32, .scheme = "f32"};
    qt_gguf_export_summary s;
    cr_assert(eq(int, qt_gguf_export(&o, &s, err), QT_OK), "%s", err);
    size_t V, V2, n = 32;
    float *base = logits_of(f32, n, &V);
    double prev = 0;
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        snprintf(out, sizeof out, "%s/%s.gguf", dir, types[k].scheme);
        o.out = out;
        o.scheme = types[k].scheme;
        cr_assert(eq(int, qt_gguf_export(&o, &s, err), QT_OK), "%s", err);
        cr_assert(eq(sz, s.n_fallback, 0));
        qt_gguf *g = open_gguf(out);
        int64_t t = qt_gguf_find_tensor(g, "blk.1.ffn_down.weight");
        cr_assert(eq(int, qt_gguf_tensor_type(g, (size_t)t), types[k].type));
        qt_gguf_close(g);
        float *l = logits_of(out, n, &V2);
        double e = rel_err(base, l, n * V);
        cr_log_info("%s: relative logit error %.4f (weight noise %.3f)", types[k].scheme, e,
                    types[k].weight_rmse);
        cr_assert(gt(dbl, e, prev), "%s: error %.4f not above the type with more bits", 
                  types[k].scheme, e);
        cr_assert(le(dbl, e, 3 * types[k].weight_rmse), "%s: error %.4f", types[k].scheme, e);
        prev = e;
        free(l);
    }
    free(base);
    rm_tree(dir);
}

/* ---- byte-level BPE tokenizer keys (spec §4.3) ------------------------------------------- */

/* GPT-2's tokenizer.json (50,257 tokens, 50,000 merges in the [a, b] form)
 * with --gguf-pre gpt-2, for a model of 50,260 embedding rows: model "gpt2",
 * no scores, token 0 "!", the three extra rows "[PAD<i>]" UNUSED,
 * <|endoftext|> CONTROL, merges joined with one space. */
Test(gguf_export, bpe_vocabulary_keys)
{
    QT_NEED_DATA();
    char dir[64], src[1024], cmd[2400], out[256], err[QT_ERRMSG_SIZE] = "";
    cr_assert(ne(ptr, (void *)qt_test_tmpdir(dir, sizeof dir), NULL));
    static const char *const names[] = {"model.norm.weight"};
    static const int64_t shapes[][2] = {{64, 0}};
    make_model(dir, names, shapes, 1);
    snprintf(cmd, sizeof cmd, "rm '%s/tokenizer.model' && cp '%s' '%s/'", dir,
             qt_test_data_path(src, sizeof src, "tokenizers/gpt2/tokenizer.json"), dir);
    cr_assert(eq(int, system(cmd), 0));
    qt_modeldir *md = NULL;
    cr_assert(eq(int, qt_modeldir_open(dir, &md, err), QT_OK), "%s", err);
    qt_gguf_hparams hp = {.arch = "llama", .vocab = 50260};
    qt_gguf_writer *w;
    snprintf(out, sizeof out, "%s/v.gguf", dir);
    cr_assert(eq(int, qt_gguf_writer_open(out, &w, NULL), QT_OK));
    /* unidentified without --gguf-pre, named in the refusal */
    cr_assert(eq(int, qt_gguf_vocab_write(w, md, &hp, NULL, err), QT_ERR_UNSUPPORTED));
    cr_assert(ne(ptr, strstr(err, "pre-tokenizer 'gpt2'"), NULL), "%s", err);
    qt_gguf_writer_abort(w);
    cr_assert(eq(int, qt_gguf_writer_open(out, &w, NULL), QT_OK));
    cr_assert(eq(int, qt_gguf_vocab_write(w, md, &hp, "gpt-2", err), QT_OK), "%s", err);
    cr_assert(eq(int, qt_gguf_writer_close(w, err), QT_OK), "%s", err);
    qt_modeldir_close(md);
    qt_gguf *g = open_gguf(out);
    char buf[64];
    cr_assert(eq(int, qt_gguf_get_str_copy(g, (size_t)qt_gguf_find_key(g, "tokenizer.ggml.model"),
                                           buf, sizeof buf, NULL), QT_OK));
    cr_assert(eq(str, buf, "gpt2"));
    cr_assert(eq(int, qt_gguf_get_str_copy(g, (size_t)qt_gguf_find_key(g, "tokenizer.ggml.pre"),
                                           buf, sizeof buf, NULL), QT_OK));
    cr_assert(eq(str, buf, "gpt-2"));
    cr_assert(lt(i64, qt_gguf_find_key(g, "tokenizer.ggml.scores"), 0));
    size_t kt = (size_t)qt_gguf_find_key(g, "tokenizer.ggml.tokens");
    size_t ky = (size_t)qt_gguf_find_key(g, "tokenizer.ggml.token_type");
    size_t km = (size_t)qt_gguf_find_key(g, "tokenizer.ggml.merges");
    qt_gguf_type et;
    size_t n;
    cr_assert(eq(int, qt_gguf_get_arr_info(g, kt, &et, &n, NULL), QT_OK));
    cr_assert(eq(sz, n, 50260));
    const char *s;
    size_t len;
    int32_t ty;
    qt_gguf_get_arr_str(g, kt, 0, &s, &len, NULL);
    cr_assert(len == 1 && s[0] == '!');
    qt_gguf_get_arr_str(g, kt, 50256, &s, &len, NULL);
    cr_assert(len == 13 && memcmp(s, "<|endoftext|>", 13) == 0);
    qt_gguf_get_arr_i32(g, ky, 50256, &ty, NULL);
    cr_assert(eq(i32, ty, 3)); /* CONTROL */
    qt_gguf_get_arr_i32(g, ky, 100, &ty, NULL);
    cr_assert(eq(i32, ty, 1)); /* NORMAL */
    qt_gguf_get_arr_str(g, kt, 50259, &s, &len, NULL);
    cr_assert(len == 10 && memcmp(s, "[PAD50259]", 10) == 0, "%.*s", (int)len, s);
    qt_gguf_get_arr_i32(g, ky, 50259, &ty, NULL);
    cr_assert(eq(i32, ty, 5)); /* UNUSED */
    cr_assert(eq(int, qt_gguf_get_arr_info(g, km, &et, &n, NULL), QT_OK));
    cr_assert(eq(sz, n, 50000));
    qt_gguf_get_arr_str(g, km, 0, &s, &len, NULL);
    cr_assert(len == 4 && memcmp(s, "\xc4\xa0 t", 4) == 0, "first merge '%.*s'", (int)len, s);
    qt_gguf_close(g);
    rm_tree(dir);
}

/* ---- qwen2 ------------------------------------------------------------------------------- */

/* A Qwen2 checkpoint made from stories260K: its tensors plus seeded q/k/v
 * biases (the qwen2 loader requires them), config.json naming
 * Qwen2ForCausalLM. Not a trained Qwen2, but the same layout. */
static void make_qwen2(const char *dir)
{
    char src[1024], path[256], err[QT_ERRMSG_SIZE] = "";
    qt_st_reader *r = NULL;
    cr_assert(eq(int, qt_st_reader_open(qt_test_data_path(src, sizeof src,
                                                           "models/stories260K-f32/model.safetensors"),
                                         &r, err), QT_OK), "%s", err);
    size_t n = qt_st_reader_n_tensors(r), hdr_cap = 16384, len = 0;
    char *hdr = malloc(hdr_cap);
    uint64_t off = 0;
    len += (size_t)snprintf(hdr, hdr_cap, "{");
    for (size_t i = 0; i < n; i++) {
        const qt_st_tensor *t = qt_st_reader_tensor(r, i);
        len += (size_t)snprintf(hdr + len, hdr_cap - len, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[",
                                len > 1 ? "," : "", t->name);
        for (size_t d = 0; d < t->n_dims; d++)
            len += (size_t)snprintf(hdr + len, hdr_cap - len, "%s%llu", d ? "," : "",
                                    (unsigned long long)t->shape[d]);
        len += (size_t)snprintf(hdr + len, hdr_cap - len, "],\"data_offsets\":[%llu,%llu]}",
                                (unsigned long long)off, (unsigned long long)(off + t->nbytes));
        off += t->nbytes;
    }
    static const char *const proj[] = {"q", "k", "v"};
    for (int l = 0; l < 5; l++)
        for (int p = 0; p < 3; p++) {
            size_t m = p == 0 ? 64 : 32;
            len += (size_t)snprintf(hdr + len, hdr_cap - len, ",\"model.layers.%d.self_attn.%s_proj"
                                    ".bias\":{\"dtype\":\"F32\",\"shape\":[%zu],\"data_offsets\":"
                                    "[%llu,%llu]}", l, proj[p], m, (unsigned long long)off,
                                    (unsigned long long)(off + 4 * m));
            off += 4 * m;
        }
    len += (size_t)snprintf(hdr + len, hdr_cap - len, "}");
    while (len % 8) hdr[len++] = ' ';
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *f = fopen(path, "wb");
    uint64_t hl = len;
    fwrite(&hl, 8, 1, f);
    fwrite(hdr, 1, len, f);
    for (size_t i = 0; i < n; i++) {
        const qt_st_tensor *t = qt_st_reader_tensor(r, i);
        fwrite(t->data, 1, t->nbytes, f);
    }
    unsigned long long seed = 99;
    for (int b = 0; b < 5 * (64 + 32 + 32); b++) {
        float v = qt_test_randf(&seed) * 0.5f;
        fwrite(&v, 4, 1, f);
    }
    fclose(f);
    free(hdr);
    qt_st_reader_close(r);
    snprintf(path, sizeof path, "%s/config.json", dir);
    f = fopen(path, "w");
    fputs("{\"architectures\": [\"Qwen2ForCausalLM\"], \"model_type\": \"qwen2\", "
          "\"hidden_size\": 64, \"intermediate_size\": 172, \"num_hidden_layers\": 5, "
          "\"num_attention_heads\": 8, \"num_key_value_heads\": 4, \"vocab_size\": 512, "
          "\"max_position_embeddings\": 512, \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, "
          "\"tie_word_embeddings\": true, \"torch_dtype\": \"float32\"}", f);
    fclose(f);
    char cmd[2400];
    snprintf(cmd, sizeof cmd, "cp '%s/tokenizer.model' '%s/'",
             qt_test_data_path(src, sizeof src, "models/stories260K-f32"), dir);
    cr_assert(eq(int, system(cmd), 0));
}

/* qwen2: no Q/K permutation, q/k/v biases as F32 tensors, qwen2.* keys; the
 * GGUF gives the safetensors model's logits (qtool runs both). */
Test(gguf_export, qwen2_round_trip)
{
    QT_NEED_DATA();
    char dir[64], model[128], out[256], err[QT_ERRMSG_SIZE] = "";
    cr_assert(ne(ptr, (void *)qt_test_tmpdir(dir, sizeof dir), NULL));
    snprintf(model, sizeof model, "%s/qwen2", dir);
    cr_assert(eq(int, mkdir(model, 0755), 0));
    make_qwen2(model);
    snprintf(out, sizeof out, "%s/q.gguf", dir);
    qt_gguf_export_opts o = {.in = model, .out = out, .scheme = "f32"};
    qt_gguf_export_summary s;
    cr_assert(eq(int, qt_gguf_export(&o, &s, err), QT_OK), "%s", err);
    cr_assert(eq(sz, s.n_tensors, 47 + 15));
    qt_gguf *g = open_gguf(out);
    cr_assert(ge(i64, qt_gguf_find_key(g, "qwen2.block_count"), 0));
    cr_assert(lt(i64, qt_gguf_find_key(g, "llama.block_count"), 0));
    int64_t tb = qt_gguf_find_tensor(g, "blk.3.attn_k.bias");
    cr_assert(ge(i64, tb, 0));
    cr_assert(eq(int, qt_gguf_tensor_type(g, (size_t)tb), QT_GGML_TYPE_F32));
    qt_gguf_close(g);
    size_t V, V2;
    float *a = logits_of(model, 64, &V), *b = logits_of(out, 64, &V2);
    double worst = 0;
    for (size_t i = 0; i < 64 * V; i++) worst = fmax(worst, fabs((double)a[i] - b[i]));
    cr_log_info("qwen2 safetensors vs GGUF: max |logit difference| %.3g", worst);
    cr_assert(le(dbl, worst, 1e-5));
    free(a);
    free(b);
    rm_tree(dir);
}

/* NaN in a matrix to quantize: refused naming the tensor and row, nothing
 * written; accepted with --allow-nonfinite; F32 output keeps it as is; a
 * value beyond +-65504 in an F16 export is counted (the CLI warns). */
Test(gguf_export, nonfinite_refused_unless_allowed)
{
    QT_NEED_DATA();
    char dir[64], src[1024], cmd[2400], path[256], out[256], err[QT_ERRMSG_SIZE] = "";
    cr_assert(ne(ptr, (void *)qt_test_tmpdir(dir, sizeof dir), NULL));
    snprintf(cmd, sizeof cmd, "cp '%s'/* '%s/'",
             qt_test_data_path(src, sizeof src, "models/stories260K-f32"), dir);
    cr_assert(eq(int, system(cmd), 0));
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    qt_st_reader *r = NULL;
    cr_assert(eq(int, qt_st_reader_open(path, &r, err), QT_OK), "%s", err);
    const qt_st_tensor *t = qt_st_reader_find(r, "model.layers.2.self_attn.v_proj.weight");
    cr_assert(ne(ptr, (void *)t, NULL));
    uint64_t at = t->file_offset + 4 * (64 * 3 + 5); /* row 3 */
    qt_st_reader_close(r);
    FILE *f = fopen(path, "r+b");
    float nan = NAN;
    cr_assert(eq(int, fseek(f, (long)at, SEEK_SET), 0));
    cr_assert(eq(sz, fwrite(&nan, 4, 1, f), 1));
    fclose(f);
    snprintf(out, sizeof out, "%s/o.gguf", dir);
    qt_gguf_export_opts o = {.in = dir, .out = out, .scheme = "q8_0"};
    qt_gguf_export_summary s;
    cr_assert(eq(int, qt_gguf_export(&o, &s, err), QT_ERR_NUMERIC));
    cr_assert(ne(ptr, strstr(err, "tensor 'model.layers.2.self_attn.v_proj.weight': row 3"),
                 NULL), "%s", err);
    cr_assert(ne(int, access(out, F_OK), 0));
    o.allow_nonfinite = true;
    cr_assert(eq(int, qt_gguf_export(&o, &s, err), QT_OK), "%s", err);
    o.allow_nonfinite = false;
    o.scheme = "f32";
    o.force = true;
    cr_assert(eq(int, qt_gguf_export(&o, &s, err), QT_OK), "%s", err);
    /* a value beyond fp16's range becomes inf in F16: counted for the warning */
    f = fopen(path, "r+b");
    float big = 1e6f;
    cr_assert(eq(int, fseek(f, (long)(at + 4), SEEK_SET), 0));
    cr_assert(eq(sz, fwrite(&big, 4, 1, f), 1));
    fclose(f);
    o.scheme = "f16";
    cr_assert(eq(int, qt_gguf_export(&o, &s, err), QT_OK), "%s", err);
    cr_assert(eq(sz, s.n_f16_overflow, 1));
    rm_tree(dir);
}
