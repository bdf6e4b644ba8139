/*
 * tests/unit/test_hardening.c: allocation failure and hostile sizes
 * (issue 8, docs/RELIABILITY.md).
 *
 * Allocation failure: with qt_alloc_fail_after(k) for every k from 1 until
 * a run makes fewer than k allocations (cJSON allocates through qt_malloc
 * too, formats/json.c), opening stories260K (qt_modeldir_open +
 * qt_layout_build) and converting it (qt_conv_plan + qt_conv_run, nf4 with
 * double quantization into 2 shards + index, and q8) must either succeed
 * with exactly the bytes of an undisturbed run, or fail with QT_ERR_NOMEM,
 * a message, and nothing left in the output's folder. Leaks are found by
 * LeakSanitizer when `make asan` runs this file.
 *
 * Hostile sizes: generated inputs that claim far more than their bytes (10
 * million tensors, a 2^40 x 2^40 shape, arrays of 2^40 merges, JSON nested
 * 100000 deep, 100000 real tensors, a million real merges) are refused or
 * read with a clean status: refusals within HOSTILE_SECONDS, real large
 * inputs within LARGE_SECONDS (times are logged).
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "convert/convert.h"
#include "formats/gguf.h"
#include "formats/json.h"
#include "formats/layout.h"
#include "formats/modeldir.h"
#include "formats/safetensors.h"
#include "formats/vocab.h"
#include "testutil.h"

/* Inputs that claim sizes their bytes do not hold must be refused at once;
 * inputs that really are large (megabytes of valid JSON) are read at the
 * speed of the parser: a looser limit, so that loaded CI machines and
 * sanitizer builds do not fail (RELIABILITY.md has the figures measured). */
#define HOSTILE_SECONDS 1.0
#define LARGE_SECONDS 10.0

/* ---- small file helpers ---------------------------------------------- */

static size_t count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert(d != NULL, "cannot open %s", dir);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static void rmtree(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        char p[1024];
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            snprintf(p, sizeof p, "%s/%s", path, e->d_name);
            rmtree(p);
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    cr_assert(b != NULL);
    cr_assert(eq(sz, fread(b, 1, (size_t)len, f), (size_t)len));
    fclose(f);
    *n = (size_t)len;
    return b;
}

/* True when every file of folder a has the same bytes in folder b and both
 * hold the same number of entries (flat folders: convert's output). */
static bool same_tree(const char *a, const char *b)
{
    if (count_entries(a) != count_entries(b)) return false;
    DIR *d = opendir(a);
    struct dirent *e;
    bool same = true;
    while (same && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char pa[1024], pb[1024];
        snprintf(pa, sizeof pa, "%s/%s", a, e->d_name);
        snprintf(pb, sizeof pb, "%s/%s", b, e->d_name);
        size_t na = 0, nb = 0;
        unsigned char *ba = slurp(pa, &na), *bb = slurp(pb, &nb);
        same = ba && bb && na == nb && memcmp(ba, bb, na) == 0;
        if (!same) cr_log_error("%s differs from %s", pa, pb);
        free(ba);
        free(bb);
    }
    closedir(d);
    return same;
}

/* ---- allocation failure ---------------------------------------------- */

Test(hardening, alloc_failure_every_n_modeldir_and_layout, .timeout = 120)
{
    QT_NEED_DATA();
    char in[512], err[QT_ERRMSG_SIZE];
    qt_test_data_path(in, sizeof in, "models/stories260K-f32");
    uint64_t k = 1, failures = 0;
    for (;; k++) {
        qt_modeldir *md = NULL;
        qt_layout *L = NULL;
        err[0] = 0;
        qt_alloc_fail_after(k);
        qt_status st = qt_modeldir_open(in, &md, err);
        if (st == QT_OK) st = qt_layout_build(md, &L, err);
        uint64_t used = qt_alloc_count();
        qt_alloc_fail_after(0);
        if (st == QT_OK) {
            cr_assert(eq(sz, qt_layout_n(L) > 0, 1));
        } else {
            cr_assert(eq(int, st, QT_ERR_NOMEM), "k=%llu: status %d: %s", (unsigned long long)k,
                      st, err);
            cr_assert(ne(str, err, ""), "k=%llu: no message", (unsigned long long)k);
            failures++;
        }
        qt_layout_free(L);
        qt_modeldir_close(md);
        if (st == QT_OK && used < k) break; /* the k-th allocation never came */
    }
    cr_log_info("modeldir + layout: %llu allocation points, every one failed cleanly",
                (unsigned long long)(k - 1));
    cr_assert(eq(u64, failures, k - 1));
    cr_assert(gt(u64, failures, 20));
}

static qt_status convert_once(const qt_conv_opts *o, char *err)
{
    qt_conv *c = NULL;
    qt_status st = qt_conv_plan(o, &c, err);
    if (st == QT_OK) st = qt_conv_run(c, err);
    qt_conv_free(c);
    return st;
}

static void sweep_convert(qt_scheme scheme, bool dq, uint64_t shard_size)
{
    QT_NEED_DATA();
    char in[512], tmp[64], ref[128], out[128], err[QT_ERRMSG_SIZE];
    qt_test_data_path(in, sizeof in, "models/stories260K-f32");
    cr_assert(qt_test_tmpdir(tmp, sizeof tmp) != NULL);
    snprintf(ref, sizeof ref, "%s/ref", tmp);
    mkdir(ref, 0700);
    snprintf(out, sizeof out, "%s/ref/out", tmp);
    snprintf(ref, sizeof ref, "%s/ref/out", tmp); /* the undisturbed output */
    qt_conv_opts o = {.in = in, .out = out, .scheme = scheme, .double_quant = dq,
                      .max_shard_size = shard_size};
    cr_assert(eq(int, convert_once(&o, err), QT_OK), "%s", err);

    char work[128];
    snprintf(work, sizeof work, "%s/w", tmp);
    mkdir(work, 0700);
    snprintf(out, sizeof out, "%s/w/out", tmp);
    uint64_t k = 1, failures = 0, silent = 0, first_silent = 0;
    for (;; k++) {
        err[0] = 0;
        qt_alloc_fail_after(k);
        qt_status st = convert_once(&o, err);
        uint64_t used = qt_alloc_count();
        qt_alloc_fail_after(0);
        if (st == QT_OK) {
            cr_assert(same_tree(out, ref), "k=%llu: output differs from an undisturbed run",
                      (unsigned long long)k);
            rmtree(out);
            if (used < k) break;
        } else {
            cr_assert(eq(int, st, QT_ERR_NOMEM), "k=%llu: status %d: %s", (unsigned long long)k,
                      st, err);
            if (!err[0] && !silent++) first_silent = k; /* checked after the sweep */
            failures++;
        }
        cr_assert(eq(sz, count_entries(work), 0), "k=%llu: something left beside OUT",
                  (unsigned long long)k);
    }
    cr_log_info("convert %s: %llu allocation points, %llu failed cleanly",
                qt_scheme_get(scheme)->name, (unsigned long long)(k - 1),
                (unsigned long long)failures);
    cr_assert(gt(u64, failures, 50));
    cr_assert(eq(u64, silent, 0), "%llu failures left errmsg empty, the first at k=%llu",
              (unsigned long long)silent, (unsigned long long)first_silent);
    rmtree(tmp);
}

Test(hardening, alloc_failure_every_n_convert_nf4_sharded, .timeout = 600)
{
    sweep_convert(QT_SCHEME_NF4, true, 300000);
}

Test(hardening, alloc_failure_every_n_convert_q8, .timeout = 600)
{
    sweep_convert(QT_SCHEME_Q8, false, 0);
}

/* ---- hostile sizes ---------------------------------------------------- */

/* A safetensors image: 8-byte length then header, then `data` zero bytes. */
static unsigned char *st_image(const char *header, uint64_t claimed_len, size_t data, size_t *n)
{
    size_t h = strlen(header);
    *n = 8 + h + data;
    unsigned char *b = calloc(1, *n);
    cr_assert(b != NULL);
    qt_store_le64(b, claimed_len ? claimed_len : h);
    memcpy(b + 8, header, h);
    return b;
}

static void expect_st_rule(const unsigned char *b, size_t n, qt_st_rule want, const char *what)
{
    qt_st_reader *r = NULL;
    qt_st_rule rule = QT_ST_RULE_OK;
    char err[QT_ERRMSG_SIZE] = "";
    double t0 = qt_now();
    qt_status st = qt_st_reader_open_mem_ex(b, n, what, &r, &rule, err);
    double dt = qt_now() - t0;
    cr_assert(ne(int, st, QT_OK), "%s was accepted", what);
    cr_assert(r == NULL);
    cr_assert(eq(int, (int)rule, (int)want), "%s: rule %d, want %d: %s", what, rule, want, err);
    cr_assert(lt(dbl, dt, HOSTILE_SECONDS), "%s took %.3f s", what, dt);
    cr_log_info("%s: refused in %.4f s: %s", what, dt, err);
}

Test(hardening, safetensors_claiming_10_million_tensors)
{
    /* the header length a 10-million-tensor header would need (~600 MB),
     * in a 1 KB file: refused before anything is allocated for it */
    size_t n;
    unsigned char *b = st_image("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
                                600000000ull, 1000, &n);
    expect_st_rule(b, n, QT_ST_RULE_HEADER_TOO_LARGE, "10M-tensor claim over the cap");
    qt_store_le64(b, 99999999ull); /* under the 100 MB cap, far beyond the file */
    expect_st_rule(b, n, QT_ST_RULE_HEADER_LENGTH, "10M-tensor claim under the cap");
    qt_store_le64(b, UINT64_MAX - 3); /* 8 + N wraps */
    qt_st_rule r = QT_ST_RULE_OK;
    qt_st_reader *rd = NULL;
    cr_assert(ne(int, qt_st_reader_open_mem_ex(b, n, "wrap", &rd, &r, NULL), QT_OK));
    cr_assert(r == QT_ST_RULE_HEADER_TOO_LARGE || r == QT_ST_RULE_HEADER_OVERFLOW);
    free(b);
}

Test(hardening, safetensors_100000_real_tensors_read_quickly, .timeout = 60)
{
    /* 100000 zero-element tensors all at [0,0]: valid per the spec (S24),
     * a 6 MB header; parsed, sorted and checked at parser speed */
    size_t cap = 100000 * 70 + 64, len = 0;
    char *h = malloc(cap);
    cr_assert(h != NULL);
    h[len++] = '{';
    for (int i = 0; i < 100000; i++)
        len += (size_t)snprintf(h + len, cap - len,
                                "%s\"t%06d\":{\"dtype\":\"F32\",\"shape\":[0,7],\"data_offsets\":[0,0]}",
                                i ? "," : "", i);
    h[len++] = '}';
    h[len] = 0;
    size_t n;
    unsigned char *b = st_image(h, 0, 0, &n);
    qt_st_reader *r = NULL;
    char err[QT_ERRMSG_SIZE];
    double t0 = qt_now();
    cr_assert(eq(int, qt_st_reader_open_mem(b, n, "100k", &r, err), QT_OK), "%s", err);
    double dt = qt_now() - t0;
    cr_assert(eq(sz, qt_st_reader_n_tensors(r), 100000));
    cr_assert(qt_st_reader_find(r, "t099999") != NULL);
    qt_st_reader_close(r);
    cr_log_info("100000 tensors read in %.3f s", dt);
    cr_assert(lt(dbl, dt, LARGE_SECONDS), "took %.3f s", dt);
    free(b);
    free(h);
}

Test(hardening, shape_2_pow_40_squared_overflows)
{
    size_t n;
    /* 2^40 * 2^40 = 2^80 elements: the product overflows u64 (S14) */
    unsigned char *b = st_image("{\"w\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],"
                                "\"data_offsets\":[0,4]}}",
                                0, 4, &n);
    expect_st_rule(b, n, QT_ST_RULE_SHAPE_OVERFLOW, "shape [2^40, 2^40]");
    free(b);
    /* 2^40 * 2^21 = 2^61 elements of 4 bytes: the byte size overflows (S15) */
    b = st_image("{\"w\":{\"dtype\":\"F32\",\"shape\":[1099511627776,2097152],"
                 "\"data_offsets\":[0,4]}}",
                 0, 4, &n);
    expect_st_rule(b, n, QT_ST_RULE_SIZE_OVERFLOW, "shape [2^40, 2^21] F32");
    free(b);
}

/* A GGUF v3 image: header, the given KV bytes (n_kv of them), one tensor
 * info (name "w", dims), aligned data of data_len bytes. */
static unsigned char *gguf_image(uint64_t n_kv, const unsigned char *kv, size_t kv_len,
                                 const uint64_t *dims, uint32_t n_dims, size_t data_len,
                                 size_t *n)
{
    size_t cap = 64 + kv_len + 64 + 8 * n_dims + 64 + data_len, p = 0;
    unsigned char *b = calloc(1, cap);
    cr_assert(b != NULL);
    memcpy(b, "GGUF", 4);
    qt_store_le32(b + 4, 3);
    qt_store_le64(b + 8, dims ? 1 : 0);
    qt_store_le64(b + 16, n_kv);
    p = 24;
    if (kv_len) memcpy(b + p, kv, kv_len);
    p += kv_len;
    if (dims) {
        qt_store_le64(b + p, 1);
        b[p + 8] = 'w';
        p += 9;
        qt_store_le32(b + p, n_dims);
        p += 4;
        for (uint32_t i = 0; i < n_dims; i++, p += 8) qt_store_le64(b + p, dims[i]);
        qt_store_le32(b + p, 0); /* F32 */
        qt_store_le64(b + p + 4, 0);
        p += 12;
        p = (p + 31) / 32 * 32;
    }
    *n = p + data_len;
    return b;
}

static void expect_gguf_refused(const unsigned char *b, size_t n, const char *what)
{
    qt_gguf *g = NULL;
    qt_gguf_rule rule = QT_GGUF_RULE_OK;
    char err[QT_ERRMSG_SIZE] = "";
    double t0 = qt_now();
    qt_status st = qt_gguf_open_mem(b, n, what, &g, &rule, err);
    double dt = qt_now() - t0;
    cr_assert(ne(int, st, QT_OK), "%s was accepted", what);
    cr_assert(ne(int, st, QT_ERR_NOMEM), "%s: %s", what, err);
    cr_assert(g == NULL);
    cr_assert(ne(int, (int)rule, (int)QT_GGUF_RULE_OK), "%s: no rule: %s", what, err);
    cr_assert(lt(dbl, dt, HOSTILE_SECONDS), "%s took %.3f s", what, dt);
    cr_log_info("%s: refused (%s) in %.4f s: %s", what, qt_gguf_rule_name(rule), dt, err);
}

Test(hardening, gguf_hostile_counts_and_shapes)
{
    size_t n;
    /* 10 million tensors claimed in a 24-byte file */
    unsigned char *b = gguf_image(0, NULL, 0, NULL, 0, 0, &n);
    qt_store_le64(b + 8, 10000000);
    expect_gguf_refused(b, n, "gguf 10M tensors");
    free(b);
    /* tokenizer.ggml.merges claiming 2^40 strings */
    unsigned char kv[64];
    size_t k = 0;
    const char *key = "tokenizer.ggml.merges";
    qt_store_le64(kv, strlen(key));
    memcpy(kv + 8, key, strlen(key));
    k = 8 + strlen(key);
    qt_store_le32(kv + k, QT_GGUF_TYPE_ARRAY);
    qt_store_le32(kv + k + 4, QT_GGUF_TYPE_STRING);
    qt_store_le64(kv + k + 8, 1ull << 40);
    k += 16;
    b = gguf_image(1, kv, k, NULL, 0, 64, &n);
    expect_gguf_refused(b, n, "gguf 2^40 merges");
    free(b);
    /* a [2^40, 2^40] F32 tensor */
    uint64_t dims[2] = {1ull << 40, 1ull << 40};
    b = gguf_image(0, NULL, 0, dims, 2, 64, &n);
    expect_gguf_refused(b, n, "gguf shape [2^40, 2^40]");
    free(b);
}

Test(hardening, json_nested_100000_deep)
{
    size_t depth = 100000;
    char *s = malloc(2 * depth + 1);
    cr_assert(s != NULL);
    for (size_t i = 0; i < depth; i++) s[i] = '[', s[2 * depth - 1 - i] = ']';
    s[2 * depth] = 0;
    cJSON *root = NULL;
    qt_json_rule rule = QT_JSON_OK;
    char err[QT_ERRMSG_SIZE] = "";
    double t0 = qt_now();
    cr_assert(eq(int, qt_json_parse(s, 2 * depth, "deep", &root, &rule, err), QT_ERR_FORMAT));
    double dt = qt_now() - t0;
    cr_assert(root == NULL);
    cr_assert(ne(int, (int)rule, (int)QT_JSON_OK));
    cr_assert(lt(dbl, dt, HOSTILE_SECONDS));
    /* the same as a safetensors header and as a tokenizer.json */
    size_t n;
    unsigned char *b = st_image(s, 0, 0, &n);
    qt_st_reader *r = NULL;
    cr_assert(ne(int, qt_st_reader_open_mem(b, n, "deep", &r, err), QT_OK));
    qt_vocab *v = NULL;
    cr_assert(eq(int, qt_vocab_load_hf_json_mem(s, 2 * depth, "deep", NULL, &v, err),
                 QT_ERR_FORMAT));
    cr_assert(v == NULL);
    /* 64 levels are accepted, 65 are not */
    cr_assert(eq(int, qt_json_parse(s + depth - 64, 128, "64", &root, NULL, err), QT_OK));
    cJSON_Delete(root);
    cr_assert(eq(int, qt_json_parse(s + depth - 65, 130, "65", &root, &rule, err), QT_ERR_FORMAT));
    cr_assert(eq(int, (int)rule, (int)QT_JSON_TOO_DEEP));
    cr_log_info("JSON 100000 deep: refused in %.4f s", dt);
    free(b);
    free(s);
}

Test(hardening, json_number_beyond_float64)
{
    /* found by fuzz_config: 1e400 became "Infinity" in a rewritten config */
    cJSON *root = NULL;
    qt_json_rule rule = QT_JSON_OK;
    const char *s = "{\"a\": 1217281e3939450617283945}";
    cr_assert(eq(int, qt_json_parse(s, strlen(s), "big", &root, &rule, NULL), QT_ERR_FORMAT));
    cr_assert(eq(int, (int)rule, (int)QT_JSON_NUMBER_RANGE));
    s = "[1.7976931348623157e308, -1e-400, 0]"; /* largest double; underflow to 0 is fine */
    cr_assert(eq(int, qt_json_parse(s, strlen(s), "ok", &root, &rule, NULL), QT_OK));
    cJSON_Delete(root);
}

/* The stories260K tokenizer.json with its merges replaced by `count`
 * copies of "▁ t" (a valid merge), built in memory. */
static char *tokenizer_with_merges(size_t count, size_t *len)
{
    char path[1024];
    size_t n;
    unsigned char *base = slurp(qt_test_data_path(path, sizeof path,
                                                  "models/stories260K-f32/tokenizer.json"),
                                &n);
    cr_assert(base != NULL);
    char *m = strstr((char *)base, "\"merges\"");
    cr_assert(m != NULL);
    char *open = strchr(m, '['), *close = strchr(open, ']');
    const char *one = "\"\xe2\x96\x81 t\",";
    size_t ol = strlen(one), cap = n + count * ol + 16;
    char *out = malloc(cap);
    cr_assert(out != NULL);
    size_t p = (size_t)(open + 1 - (char *)base);
    memcpy(out, base, p);
    for (size_t i = 0; i < count; i++, p += ol) memcpy(out + p, one, ol);
    if (count) p--; /* drop the last comma */
    size_t rest = n - (size_t)(close - (char *)base);
    memcpy(out + p, close, rest);
    p += rest;
    out[p] = 0;
    *len = p;
    free(base);
    return out;
}

Test(hardening, tokenizer_with_a_million_merges, .timeout = 60)
{
    QT_NEED_DATA();
    size_t len;
    char *s = tokenizer_with_merges(1000000, &len);
    qt_vocab *v = NULL;
    char err[QT_ERRMSG_SIZE] = "";
    double t0 = qt_now();
    qt_status st = qt_vocab_load_hf_json_mem(s, len, "1M merges", NULL, &v, err);
    double dt = qt_now() - t0;
    cr_log_info("tokenizer.json with 1000000 merges (%zu bytes): status %d in %.3f s %s", len,
                st, dt, err);
    cr_assert(st == QT_OK || st == QT_ERR_FORMAT, "%s", err);
    if (st == QT_OK) cr_assert(eq(sz, v->n_merges, 1000000));
    cr_assert(lt(dbl, dt, LARGE_SECONDS), "took %.3f s", dt); /* 8 MB of JSON */
    qt_vocab_free(v);
    free(s);
}

Test(hardening, tokenizer_model_claiming_huge_lengths)
{
    /* a SentencePiece ModelProto whose first piece claims 4 GiB, then one
     * whose length varint runs past 10 bytes */
    const unsigned char a[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 'x'};
    const unsigned char b[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    const unsigned char *cases[] = {a, b};
    size_t lens[] = {sizeof a, sizeof b};
    for (int i = 0; i < 2; i++) {
        qt_vocab *v = NULL;
        char err[QT_ERRMSG_SIZE] = "";
        double t0 = qt_now();
        cr_assert(eq(int, qt_vocab_load_spm_mem(cases[i], lens[i], "spm", NULL, &v, err),
                     QT_ERR_FORMAT), "case %d: %s", i, err);
        cr_assert(lt(dbl, qt_now() - t0, HOSTILE_SECONDS));
        cr_assert(v == NULL);
    }
    /* 100000 real (empty) pieces: the count is bounded by the bytes */
    size_t n = 100000 * 2;
    unsigned char *c = malloc(n);
    cr_assert(c != NULL);
    for (size_t i = 0; i < n; i += 2) c[i] = 0x0a, c[i + 1] = 0;
    qt_vocab *v = NULL;
    char err[QT_ERRMSG_SIZE] = "";
    double t0 = qt_now();
    qt_status st = qt_vocab_load_spm_mem(c, n, "empty pieces", NULL, &v, err);
    double dt = qt_now() - t0;
    cr_assert(ne(int, st, QT_OK)); /* no trainer_spec: not a BPE model */
    cr_assert(ne(int, st, QT_ERR_NOMEM), "%s", err);
    cr_assert(lt(dbl, dt, HOSTILE_SECONDS));
    cr_log_info("100000 empty pieces: refused in %.4f s: %s", dt, err);
    free(c);
}
