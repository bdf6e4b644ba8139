/* tests/unit/test_modeldir.c: Hugging Face model folders: a sharded folder
 * written by the test itself and read back, one malformed folder per rule
 * I1-I6 of specs/input-safety.md B.6 (each asserting its own rule code),
 * config.json getters and the architecture line, and the shared models. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <ftw.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "formats/formats_internal.h"
#include "formats/modeldir.h"
#include "formats/safetensors.h"
#include "testutil.h"

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void rmtree(const char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void put(const char *dir, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void put(const char *dir, const char *name, const char *fmt, ...)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    cr_assert(f != NULL, "%s", p);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fclose(f);
}

/* A shard holding F32 [2] tensors called names[0..n), values (k, k + 0.5)
 * where k is the tensor's first character. */
static void shard(const char *dir, const char *file, const char *const *names, size_t n)
{
    char p[512], err[QT_ERRMSG_SIZE];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    qt_st_writer *w;
    cr_assert(eq(int, qt_st_writer_open(p, &w, err), QT_OK));
    cr_assert(eq(int, qt_st_writer_add_metadata(w, "format", "pt"), QT_OK));
    uint64_t s[] = {2};
    for (size_t i = 0; i < n; i++)
        cr_assert(eq(int, qt_st_writer_declare(w, names[i], QT_DTYPE_F32, 1, s, NULL), QT_OK));
    for (size_t i = 0; i < n; i++) {
        float v[2] = {(float)names[i][0], (float)names[i][0] + 0.5f};
        cr_assert(eq(int, qt_st_writer_write(w, i, 0, v, 8), QT_OK));
    }
    cr_assert(eq(int, qt_st_writer_close(w, err), QT_OK), "%s", err);
}

static const char *const S1[] = {"a", "b"}, *const S2[] = {"c", "d", "e"};
#define SH1 "model-00001-of-00002.safetensors"
#define SH2 "model-00002-of-00002.safetensors"

/* A good two-shard folder; the index is written by the caller. */
static void sharded(char *dir, size_t n)
{
    cr_assert(qt_test_tmpdir(dir, n) != NULL);
    shard(dir, SH1, S1, 2);
    shard(dir, SH2, S2, 3);
}

#define GOOD_MAP                                                                          \
    "\"a\":\"" SH1 "\",\"b\":\"" SH1 "\",\"c\":\"" SH2 "\",\"d\":\"" SH2 "\",\"e\":\"" SH2 \
    "\""

static void index_json(const char *dir, const char *weight_map)
{
    put(dir, "model.safetensors.index.json",
        "{\"metadata\":{\"total_size\":40},\"weight_map\":{%s}}", weight_map);
}

static void expect_md(const char *path, unsigned flags, qt_md_rule want, const char *needle)
{
    qt_modeldir *md = NULL;
    qt_md_rule rule;
    qt_st_rule sr;
    char err[QT_ERRMSG_SIZE] = "";
    qt_status st = qt_modeldir_open_ex(path, flags, &md, &rule, &sr, err);
    cr_assert(ne(int, st, QT_OK));
    cr_assert(md == NULL);
    cr_assert(eq(int, rule, want), "rule '%s', want '%s': %s", qt_md_rule_name(rule),
              qt_md_rule_name(want), err);
    if (needle) cr_assert(strstr(err, needle) != NULL, "'%s' not in: %s", needle, err);
}

Test(modeldir, sharded_folder_reads_back)
{
    char dir[64];
    sharded(dir, sizeof dir);
    index_json(dir, GOOD_MAP);
    put(dir, "config.json", "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":8}");
    put(dir, "tokenizer.json", "{}");
    shard(dir, "stray.safetensors", S1, 1);
    qt_modeldir *md;
    char err[QT_ERRMSG_SIZE];
    cr_assert(eq(int, qt_modeldir_open(dir, &md, err), QT_OK), "%s", err);
    cr_assert(qt_modeldir_is_sharded(md));
    cr_assert(strstr(qt_modeldir_index_path(md), "model.safetensors.index.json") != NULL);
    cr_assert(eq(str, (char *)qt_modeldir_path(md), dir));
    cr_assert(eq(sz, qt_modeldir_n_shards(md), 2));
    cr_assert(eq(str, (char *)qt_modeldir_shard_name(md, 0), SH1));
    cr_assert(eq(str, (char *)qt_modeldir_shard_name(md, 1), SH2));
    cr_assert(eq(sz, qt_modeldir_n_tensors(md), 5));
    const char *order[] = {"a", "b", "c", "d", "e"};
    for (size_t i = 0; i < 5; i++) {
        qt_st_reader *r;
        const qt_st_tensor *t = qt_modeldir_tensor(md, i, &r);
        cr_assert(eq(str, (char *)t->name, (char *)order[i]));
        cr_assert(r == qt_modeldir_shard(md, i < 2 ? 0 : 1));
        float v[2];
        cr_assert(eq(int, qt_st_tensor_to_f32(r, t, 0, 2, v, err), QT_OK));
        cr_assert(eq(flt, v[1], (float)order[i][0] + 0.5f));
    }
    cr_assert(qt_modeldir_tensor(md, 5, NULL) == NULL);
    qt_st_reader *r;
    const qt_st_tensor *t = qt_modeldir_find(md, "d", &r);
    cr_assert(t != NULL);
    cr_assert(r == qt_modeldir_shard(md, 1));
    cr_assert(qt_modeldir_find(md, "zz", &r) == NULL);
    cr_assert(eq(sz, qt_modeldir_n_files(md), 2));
    cr_assert(eq(str, (char *)qt_modeldir_file(md, 0), "config.json"));
    cr_assert(eq(str, (char *)qt_modeldir_file(md, 1), "tokenizer.json"));
    cr_assert(eq(sz, qt_modeldir_n_strays(md), 1)); /* I4: reported, never read */
    cr_assert(eq(str, (char *)qt_modeldir_stray(md, 0), "stray.safetensors"));
    char line[256];
    qt_modeldir_architecture_line(md, line, sizeof line);
    cr_assert(eq(str, line, "LlamaForCausalLM: hidden 8"));
    qt_modeldir_close(md);
    qt_modeldir_close(NULL);

    /* the index file itself also opens */
    char ip[256];
    snprintf(ip, sizeof ip, "%s/model.safetensors.index.json", dir);
    cr_assert(eq(int, qt_modeldir_open(ip, &md, err), QT_OK), "%s", err);
    cr_assert(eq(sz, qt_modeldir_n_tensors(md), 5));
    qt_modeldir_close(md);
    rmtree(dir);
}

Test(modeldir, single_file_and_folder)
{
    char dir[64], p[256], err[QT_ERRMSG_SIZE];
    cr_assert(qt_test_tmpdir(dir, sizeof dir) != NULL);
    shard(dir, "model.safetensors", S2, 3);
    qt_modeldir *md;
    cr_assert(eq(int, qt_modeldir_open(dir, &md, err), QT_OK), "%s", err);
    cr_assert(not(qt_modeldir_is_sharded(md)));
    cr_assert(qt_modeldir_index_path(md) == NULL);
    cr_assert(eq(sz, qt_modeldir_n_tensors(md), 3));
    cr_assert(not(qt_modeldir_has_config(md)));
    char line[64];
    qt_modeldir_architecture_line(md, line, sizeof line);
    cr_assert(eq(str, line, "no config.json"));
    int64_t v;
    cr_assert(eq(int, qt_modeldir_config_int(md, "hidden_size", &v), QT_ERR_ARG));
    qt_modeldir_close(md);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    cr_assert(eq(int, qt_modeldir_open(p, &md, err), QT_OK), "%s", err);
    cr_assert(eq(sz, qt_modeldir_n_shards(md), 1));
    cr_assert(eq(str, (char *)qt_modeldir_shard_name(md, 0), "model.safetensors"));
    qt_modeldir_close(md);
    rmtree(dir);
}

Test(modeldir, no_weights)
{
    char dir[64];
    cr_assert(qt_test_tmpdir(dir, sizeof dir) != NULL);
    put(dir, "config.json", "{}");
    expect_md(dir, 0, QT_MD_RULE_NO_WEIGHTS, "neither");
    char p[256];
    snprintf(p, sizeof p, "%s/nope", dir);
    expect_md(p, 0, QT_MD_RULE_IO, "nope");
    rmtree(dir);
}

Test(modeldir, invalid_shard_reports_its_rule)
{
    char dir[64];
    sharded(dir, sizeof dir);
    index_json(dir, GOOD_MAP);
    put(dir, SH2, "garbage!");
    qt_modeldir *md;
    qt_md_rule rule;
    qt_st_rule sr;
    char err[QT_ERRMSG_SIZE];
    cr_assert(eq(int, qt_modeldir_open_ex(dir, 0, &md, &rule, &sr, err), QT_ERR_FORMAT));
    cr_assert(eq(int, rule, QT_MD_RULE_SHARD_INVALID));
    cr_assert(eq(int, sr, QT_ST_RULE_HEADER_TOO_LARGE), "%s", err);
    cr_assert(strstr(err, SH2) != NULL, "%s", err);
    rmtree(dir);
}

Test(modeldir, I1_missing_shards_are_listed)
{
    char dir[64];
    sharded(dir, sizeof dir);
    index_json(dir, GOOD_MAP ",\"f\":\"model-00003.safetensors\",\"g\":\"model-00004.safetensors\"");
    expect_md(dir, 0, QT_MD_RULE_MISSING_SHARD,
              "2 of 4 shards missing: model-00003.safetensors, model-00004.safetensors (I1)");
    rmtree(dir);
}

Test(modeldir, I2_tensor_not_in_its_shard)
{
    char dir[64];
    sharded(dir, sizeof dir);
    index_json(dir, GOOD_MAP ",\"mtp.fc.weight\":\"" SH1 "\"");
    expect_md(dir, 0, QT_MD_RULE_TENSOR_NOT_IN_SHARD, "'mtp.fc.weight'");
    rmtree(dir);
}

Test(modeldir, I3_unassigned_tensor)
{
    char dir[64];
    sharded(dir, sizeof dir);
    index_json(dir, "\"a\":\"" SH1 "\",\"c\":\"" SH2 "\",\"d\":\"" SH2 "\",\"e\":\"" SH2 "\"");
    expect_md(dir, 0, QT_MD_RULE_UNASSIGNED_TENSOR, "tensor 'b'");
    rmtree(dir);
}

Test(modeldir, I3_same_tensor_in_two_shards)
{
    char dir[64];
    cr_assert(qt_test_tmpdir(dir, sizeof dir) != NULL);
    const char *const s1[] = {"a", "b"}, *const s2[] = {"b", "c"};
    shard(dir, SH1, s1, 2);
    shard(dir, SH2, s2, 2);
    index_json(dir, "\"a\":\"" SH1 "\",\"b\":\"" SH2 "\",\"c\":\"" SH2 "\"");
    expect_md(dir, 0, QT_MD_RULE_DUPLICATE_TENSOR, "'b' is in both");
    rmtree(dir);
}

Test(modeldir, I5_malformed_index)
{
    char dir[64];
    sharded(dir, sizeof dir);
    put(dir, "model.safetensors.index.json", "{\"weight_map\":{\"a\":");
    expect_md(dir, 0, QT_MD_RULE_INDEX_JSON, "(I5)");
    index_json(dir, GOOD_MAP ",\"a\":\"" SH1 "\"");
    expect_md(dir, 0, QT_MD_RULE_INDEX_JSON, "duplicate key 'a'");
    index_json(dir, GOOD_MAP ",\"x\":3");
    expect_md(dir, 0, QT_MD_RULE_INDEX_SCHEMA, "tensor 'x'");
    put(dir, "model.safetensors.index.json", "{\"metadata\":{}}");
    expect_md(dir, 0, QT_MD_RULE_INDEX_SCHEMA, "weight_map");
    put(dir, "model.safetensors.index.json", "[]");
    expect_md(dir, 0, QT_MD_RULE_INDEX_SCHEMA, "weight_map");
    rmtree(dir);
}

Test(modeldir, I6_shard_names_stay_in_the_folder)
{
    char dir[64];
    sharded(dir, sizeof dir);
    index_json(dir, GOOD_MAP ",\"x\":\"../" SH1 "\"");
    expect_md(dir, 0, QT_MD_RULE_SHARD_NAME, "(I6)");
    index_json(dir, GOOD_MAP ",\"x\":\"/etc/passwd\"");
    expect_md(dir, 0, QT_MD_RULE_SHARD_NAME, "(I6)");
    index_json(dir, GOOD_MAP ",\"x\":\"sub/x.safetensors\"");
    expect_md(dir, 0, QT_MD_RULE_SHARD_NAME, "(I6)");
    index_json(dir, GOOD_MAP ",\"x\":\"..\"");
    expect_md(dir, 0, QT_MD_RULE_SHARD_NAME, "(I6)");
    index_json(dir, GOOD_MAP ",\"x\":\"\"");
    expect_md(dir, 0, QT_MD_RULE_SHARD_NAME, "(I6)");

    /* a symlink leading out of the folder */
    char out[64], target[256], linkp[256];
    cr_assert(qt_test_tmpdir(out, sizeof out) != NULL);
    const char *const s3[] = {"f"};
    shard(out, "elsewhere.safetensors", s3, 1);
    snprintf(target, sizeof target, "%s/elsewhere.safetensors", out);
    snprintf(linkp, sizeof linkp, "%s/model-3.safetensors", dir);
    cr_assert(eq(int, symlink(target, linkp), 0));
    index_json(dir, GOOD_MAP ",\"f\":\"model-3.safetensors\"");
    expect_md(dir, 0, QT_MD_RULE_SHARD_ESCAPES, "symlink");
    qt_modeldir *md;
    char err[QT_ERRMSG_SIZE];
    cr_assert(eq(int, qt_modeldir_open_ex(dir, QT_MODELDIR_FOLLOW_SYMLINKS, &md, NULL, NULL, err),
                 QT_OK), "%s", err);
    cr_assert(eq(sz, qt_modeldir_n_tensors(md), 6));
    qt_modeldir_close(md);

    /* a symlink inside the folder is fine: model-4 -> model-3, a real file */
    cr_assert(eq(int, unlink(linkp), 0));
    shard(dir, "model-3.safetensors", s3, 1);
    snprintf(target, sizeof target, "%s/model-4.safetensors", dir);
    cr_assert(eq(int, symlink("model-3.safetensors", target), 0));
    index_json(dir, GOOD_MAP ",\"f\":\"model-4.safetensors\"");
    cr_assert(eq(int, qt_modeldir_open(dir, &md, err), QT_OK), "%s", err);
    cr_assert(eq(sz, qt_modeldir_n_strays(md), 1)); /* model-3 itself is unused */
    qt_modeldir_close(md);
    rmtree(out);
    rmtree(dir);
}

Test(modeldir, bad_config_is_refused)
{
    char dir[64];
    cr_assert(qt_test_tmpdir(dir, sizeof dir) != NULL);
    shard(dir, "model.safetensors", S1, 2);
    put(dir, "config.json", "{\"a\":1,\"a\":2}");
    expect_md(dir, 0, QT_MD_RULE_CONFIG, "duplicate key");
    put(dir, "config.json", "[1]");
    expect_md(dir, 0, QT_MD_RULE_CONFIG, "object");
    rmtree(dir);
}

Test(modeldir, config_getters)
{
    char dir[64];
    cr_assert(qt_test_tmpdir(dir, sizeof dir) != NULL);
    shard(dir, "model.safetensors", S1, 2);
    put(dir, "config.json",
        "{\"n\":12,\"f\":1.5,\"s\":\"x\",\"b\":true,\"z\":null,\"q\":{\"k\":\"nf4\",\"i\":3}}");
    qt_modeldir *md;
    char err[QT_ERRMSG_SIZE];
    cr_assert(eq(int, qt_modeldir_open(dir, &md, err), QT_OK), "%s", err);
    int64_t i;
    double d;
    const char *s;
    bool b;
    cr_assert(eq(int, qt_modeldir_config_int(md, "n", &i), QT_OK));
    cr_assert(eq(i64, i, 12));
    cr_assert(eq(int, qt_modeldir_config_int(md, "f", &i), QT_ERR_FORMAT));
    cr_assert(eq(int, qt_modeldir_config_int(md, "s", &i), QT_ERR_FORMAT));
    cr_assert(eq(int, qt_modeldir_config_int(md, "missing", &i), QT_ERR_ARG));
    cr_assert(eq(int, qt_modeldir_config_int(md, "z", &i), QT_ERR_ARG));
    cr_assert(eq(int, qt_modeldir_config_float(md, "f", &d), QT_OK));
    cr_assert(eq(dbl, d, 1.5));
    cr_assert(eq(int, qt_modeldir_config_float(md, "n", &d), QT_OK));
    cr_assert(eq(int, qt_modeldir_config_str(md, "s", &s), QT_OK));
    cr_assert(eq(str, (char *)s, "x"));
    cr_assert(eq(int, qt_modeldir_config_str(md, "b", &s), QT_ERR_FORMAT));
    cr_assert(eq(int, qt_modeldir_config_bool(md, "b", &b), QT_OK));
    cr_assert(b);
    cr_assert(eq(int, qt_modeldir_config_bool(md, "n", &b), QT_ERR_FORMAT));
    cr_assert(eq(int, qt_modeldir_config_str(md, "q.k", &s), QT_OK));
    cr_assert(eq(str, (char *)s, "nf4"));
    cr_assert(eq(int, qt_modeldir_config_int(md, "q.i", &i), QT_OK));
    cr_assert(eq(int, qt_modeldir_config_int(md, "q.k.x", &i), QT_ERR_ARG));
    cr_assert(qt_modeldir_config_has(md, "q"));
    cr_assert(not(qt_modeldir_config_has(md, "z")));
    const cJSON *cfg = qt_modeldir_config_json(md);
    cr_assert(cJSON_IsObject(cfg));
    qt_modeldir_close(md);
    rmtree(dir);
}

Test(modeldir, stories260k_and_goldens)
{
    QT_NEED_DATA();
    static const char *const models[] = {"models/stories260K-f32", "models/stories260K-f16",
                                         "models/stories260K-bf16"};
    static const char *const dtypes[] = {"float32", "float16", "bfloat16"};
    for (size_t m = 0; m < 3; m++) {
        char p[512], err[QT_ERRMSG_SIZE], line[256], want[256];
        qt_modeldir *md;
        cr_assert(eq(int, qt_modeldir_open(qt_test_data_path(p, sizeof p, models[m]), &md, err),
                     QT_OK), "%s", err);
        cr_assert(eq(sz, qt_modeldir_n_tensors(md), 47));
        uint64_t params = 0;
        for (size_t i = 0; i < 47; i++) params += qt_modeldir_tensor(md, i, NULL)->n_elements;
        cr_assert(eq(u64, params, 260032));
        qt_modeldir_architecture_line(md, line, sizeof line);
        snprintf(want, sizeof want,
                 "LlamaForCausalLM: hidden 64, intermediate 172, 5 layers, 8 heads (4 kv), "
                 "vocab 512, ctx 512, tied embeddings, %s",
                 dtypes[m]);
        cr_assert(eq(str, line, want));
        int64_t v;
        cr_assert(eq(int, qt_modeldir_config_int(md, "num_key_value_heads", &v), QT_OK));
        cr_assert(eq(i64, v, 4));
        double eps;
        cr_assert(eq(int, qt_modeldir_config_float(md, "rms_norm_eps", &eps), QT_OK));
        cr_assert(eq(dbl, eps, 1e-5));
        cr_assert(eq(sz, qt_modeldir_n_files(md), 4));
        cr_assert(eq(str, (char *)qt_modeldir_file(md, 0), "config.json"));
        cr_assert(eq(str, (char *)qt_modeldir_file(md, 1), "tokenizer.json"));
        cr_assert(eq(str, (char *)qt_modeldir_file(md, 2), "tokenizer.model"));
        cr_assert(eq(str, (char *)qt_modeldir_file(md, 3), "tokenizer_config.json"));
        qt_modeldir_close(md);
    }
    static const char *const goldens[] = {"golden/transformers-bnb-nf4-dq",
                                          "golden/transformers-bnb-int8"};
    for (size_t g = 0; g < 2; g++) {
        char p[512], err[QT_ERRMSG_SIZE], line[256];
        qt_modeldir *md;
        cr_assert(eq(int, qt_modeldir_open(qt_test_data_path(p, sizeof p, goldens[g]), &md, err),
                     QT_OK), "%s", err);
        cr_assert(gt(sz, qt_modeldir_n_tensors(md), 47));
        const char *qm;
        cr_assert(eq(int, qt_modeldir_config_str(md, "quantization_config.quant_method", &qm),
                     QT_OK));
        cr_assert(eq(str, (char *)qm, "bitsandbytes"));
        cr_assert(not(qt_modeldir_config_has(md, "pad_token_id"))); /* null */
        qt_modeldir_architecture_line(md, line, sizeof line);
        cr_assert(strstr(line, g == 0 ? "quantized (bitsandbytes nf4)" : "quantized (bitsandbytes int8)")
                      != NULL, "%s", line);
        qt_modeldir_close(md);
    }
}
