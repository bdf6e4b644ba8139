/* tests/unit/test_tokenizer.c: vocab loaders (formats/vocab.h) and the
 * tokenizers (model/tokenizer.h) against llama.cpp's vocab test strings,
 * the Llama 2 and stories260K tokenizers, and hostile files. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "formats/vocab.h"
#include "model/tokenizer.h"
#include "testutil.h"

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
    buf[sz] = '\0';
    fclose(f);
    *n = (size_t)sz;
    return buf;
}

static qt_tokenizer *load_tok(const char *rel, bool spm)
{
    char path[1024], err[QT_ERRMSG_SIZE] = "";
    qt_vocab *v = NULL;
    qt_tokenizer *t = NULL;
    qt_test_data_path(path, sizeof path, rel);
    qt_status st = spm ? qt_vocab_load_spm(path, &v, err) : qt_vocab_load_hf_json(path, &v, err);
    cr_assert(eq(int, st, QT_OK), "%s: %s", rel, err);
    cr_assert(eq(int, qt_tokenizer_new(v, &t), QT_OK));
    qt_vocab_free(v);
    return t;
}

/* Runs llama.cpp's test-tokenizer-0 data (strings separated by
 * "\n__ggml_vocab_test__\n", one line of expected ids per string). */
static void run_llamacpp(const char *vocab_name, qt_tokenizer *t)
{
    char path[1024];
    size_t n_inp, n_out;
    snprintf(path, sizeof path, "%s/tokenizers/llamacpp-vocab/ggml-vocab-%s.gguf.inp",
             qt_test_data_dir(), vocab_name);
    char *inp = read_all(path, &n_inp);
    snprintf(path, sizeof path, "%s/tokenizers/llamacpp-vocab/ggml-vocab-%s.gguf.out",
             qt_test_data_dir(), vocab_name);
    char *out = read_all(path, &n_out);
    static const char sep[] = "\n__ggml_vocab_test__\n";
    char *p = inp, *o = out;
    int n_tests = 0, n_pass = 0;
    for (;;) {
        char *e = strstr(p, sep);
        if (!e) break;
        char *line_end = strchr(o, '\n');
        cr_assert(ne(ptr, line_end, NULL), "%s: .out has fewer lines than .inp", vocab_name);
        *line_end = '\0';
        int32_t expect[4096];
        size_t n_expect = 0;
        for (char *q = o, *end; *q; q = end) {
            long x = strtol(q, &end, 10);
            if (end == q) break;
            cr_assert(n_expect < 4096);
            expect[n_expect++] = (int32_t)x;
        }
        int32_t *ids = NULL;
        size_t n_ids = 0;
        cr_assert(eq(int, qt_tokenizer_encode(t, p, (size_t)(e - p), false, &ids, &n_ids), QT_OK));
        bool ok = n_ids == n_expect && (n_ids == 0 || memcmp(ids, expect, n_ids * sizeof *ids) == 0);
        n_tests++;
        n_pass += ok;
        if (!ok) {
            fprintf(stderr, "%s: test %d '%.*s' differs:\n  got ", vocab_name, n_tests, (int)(e - p), p);
            for (size_t i = 0; i < n_ids; i++) fprintf(stderr, " %d", ids[i]);
            fprintf(stderr, "\n  want");
            for (size_t i = 0; i < n_expect; i++) fprintf(stderr, " %d", expect[i]);
            fprintf(stderr, "\n");
        }
        qt_free(ids);
        p = e + sizeof sep - 1;
        o = line_end + 1;
    }
    fprintf(stderr, "llama.cpp vocab %s: %d / %d test strings match\n", vocab_name, n_pass, n_tests);
    cr_assert(eq(int, n_tests, 46));
    cr_assert(eq(int, n_pass, n_tests));
    free(inp);
    free(out);
}

Test(tokenizer, llamacpp_gpt2)
{
    QT_NEED_DATA();
    qt_tokenizer *t = load_tok("tokenizers/gpt2/tokenizer.json", false);
    run_llamacpp("gpt-2", t);
    qt_tokenizer_free(t);
}

Test(tokenizer, llamacpp_llama_spm)
{
    QT_NEED_DATA();
    qt_tokenizer *t = load_tok("tokenizers/llama2/tokenizer.model", true);
    run_llamacpp("llama-spm", t);
    qt_tokenizer_free(t);
}

Test(tokenizer, llama2_hello_world)
{
    QT_NEED_DATA();
    char path[1024], err[QT_ERRMSG_SIZE] = "";
    qt_vocab *v = NULL;
    cr_assert(eq(int, qt_vocab_load_spm(qt_test_data_path(path, sizeof path, "tokenizers/llama2/tokenizer.model"), &v, err), QT_OK), "%s", err);
    cr_assert(eq(int, v->kind, QT_VOCAB_SPM));
    cr_assert(eq(sz, v->n_tokens, 32000));
    cr_assert(eq(int, v->bos_id, 1));
    cr_assert(eq(int, v->eos_id, 2));
    cr_assert(eq(int, v->unk_id, 0));
    cr_assert(v->add_dummy_prefix);
    cr_assert(v->byte_fallback);
    cr_assert(eq(int, v->tokens[3].type, QT_TOKEN_BYTE));
    qt_tokenizer *t = NULL;
    cr_assert(eq(int, qt_tokenizer_new(v, &t), QT_OK));
    qt_vocab_free(v);

    int32_t *ids;
    size_t n;
    cr_assert(eq(int, qt_tokenizer_encode(t, "Hello world", 11, false, &ids, &n), QT_OK));
    cr_assert(eq(sz, n, 2));
    cr_assert(eq(i32, ids[0], 15043));
    cr_assert(eq(i32, ids[1], 3186));
    qt_free(ids);
    cr_assert(eq(int, qt_tokenizer_encode(t, "Hello world", 11, true, &ids, &n), QT_OK));
    cr_assert(eq(sz, n, 3));
    cr_assert(eq(i32, ids[0], 1));

    char *text;
    size_t len;
    cr_assert(eq(int, qt_tokenizer_decode(t, ids, n, &text, &len), QT_OK));
    cr_assert(eq(str, text, "Hello world"));
    qt_free(text);

    /* streaming pieces */
    const char *p;
    size_t k;
    cr_assert(eq(int, qt_tokenizer_piece(t, ids[0], true, &p, &k), QT_OK));
    cr_assert(eq(sz, k, 0));
    cr_assert(eq(int, qt_tokenizer_piece(t, ids[1], true, &p, &k), QT_OK));
    cr_assert(eq(int, (k == 5) && (memcmp(p, "Hello", 5) == 0), 1));
    cr_assert(eq(int, qt_tokenizer_piece(t, ids[2], false, &p, &k), QT_OK));
    cr_assert(eq(int, (k == 6) && (memcmp(p, " world", 6) == 0), 1));
    cr_assert(eq(int, qt_tokenizer_piece(t, 32000, false, &p, &k), QT_ERR_ARG));
    cr_assert(eq(int, qt_tokenizer_piece(t, 3 + 0xe2, false, &p, &k), QT_OK)); /* <0xE2> */
    cr_assert(eq(int, (k == 1) && ((unsigned char)p[0] == 0xe2), 1));
    qt_free(ids);

    /* empty text: nothing (BOS only when asked) */
    cr_assert(eq(int, qt_tokenizer_encode(t, "", 0, false, &ids, &n), QT_OK));
    cr_assert(eq(sz, n, 0));
    qt_free(ids);
    qt_tokenizer_free(t);
}

/* Encodes and round-trips; returns ids (caller frees) and prints timings. */
static int32_t *roundtrip(qt_tokenizer *t, const char *what, const char *text, size_t n,
                          size_t *n_ids)
{
    int32_t *ids;
    double t0 = qt_now();
    cr_assert(eq(int, qt_tokenizer_encode(t, text, n, false, &ids, n_ids), QT_OK));
    double t1 = qt_now();
    char *back;
    size_t len;
    cr_assert(eq(int, qt_tokenizer_decode(t, ids, *n_ids, &back, &len), QT_OK));
    double t2 = qt_now();
    fprintf(stderr, "%s: %zu bytes -> %zu tokens, encode %.3f s, decode %.3f s\n", what, n, *n_ids,
            t1 - t0, t2 - t1);
    cr_assert(eq(sz, len, n), "%s: round trip length", what);
    size_t i = 0;
    while (i < n && back[i] == text[i]) i++;
    cr_assert(eq(sz, i, n), "%s: round trip differs at byte %zu", what, i);
    qt_free(back);
    return ids;
}

Test(tokenizer, stories260k_json_vs_model, .timeout = 120)
{
    QT_NEED_DATA();
    char path[1024], err[QT_ERRMSG_SIZE] = "";
    qt_vocab *vj = NULL, *vm = NULL;
    cr_assert(eq(int, qt_vocab_load_hf_json(qt_test_data_path(path, sizeof path, "models/stories260K-f32/tokenizer.json"), &vj, err), QT_OK), "%s", err);
    cr_assert(eq(int, qt_vocab_load_spm(qt_test_data_path(path, sizeof path, "models/stories260K-f32/tokenizer.model"), &vm, err), QT_OK), "%s", err);
    cr_assert(eq(int, vj->kind, QT_VOCAB_BPE_SPM));
    cr_assert(eq(int, vm->kind, QT_VOCAB_SPM));
    cr_assert(eq(sz, vj->n_tokens, 512));
    cr_assert(eq(sz, vm->n_tokens, 512));
    cr_assert(eq(sz, vj->n_merges, 165));
    cr_assert(eq(int, (vj->add_bos) && (vm->add_bos) && (vj->add_dummy_prefix), 1));
    cr_assert(eq(int, vj->bos_id, 1));
    cr_assert(eq(int, vj->eos_id, 2));
    cr_assert(eq(int, vj->unk_id, 0));
    for (size_t i = 0; i < 512; i++) {
        cr_assert(eq(str, (char *)vj->tokens[i].text, (char *)vm->tokens[i].text));
        if (i >= 3) cr_assert(eq(int, vj->tokens[i].type, vm->tokens[i].type), "token %zu", i);
    }
    qt_tokenizer *tj, *tm;
    cr_assert(eq(int, qt_tokenizer_new(vj, &tj), QT_OK));
    cr_assert(eq(int, qt_tokenizer_new(vm, &tm), QT_OK));
    qt_vocab_free(vj);
    qt_vocab_free(vm);

    size_t n;
    char *text = read_all(qt_test_data_path(path, sizeof path, "text/tinystories_sample.txt"), &n);
    size_t nj, nm;
    int32_t *ij = roundtrip(tj, "stories260K tokenizer.json / tinystories", text, n, &nj);
    int32_t *im = roundtrip(tm, "stories260K tokenizer.model / tinystories", text, n, &nm);
    cr_assert(eq(sz, nj, nm));
    cr_assert(eq(int, memcmp(ij, im, nj * sizeof *ij), 0));
    qt_free(ij);
    qt_free(im);
    free(text);

    text = read_all(qt_test_data_path(path, sizeof path, "text/wiki.test.raw"), &n);
    ij = roundtrip(tj, "stories260K tokenizer.json / wiki.test.raw", text, n, &nj);
    im = roundtrip(tm, "stories260K tokenizer.model / wiki.test.raw", text, n, &nm);
    cr_assert(eq(sz, nj, nm));
    size_t i = 0;
    while (i < nj && ij[i] == im[i]) i++;
    cr_assert(eq(sz, i, nj), "json and model encodings differ at token %zu", i);
    qt_free(ij);
    qt_free(im);
    free(text);
    qt_tokenizer_free(tj);
    qt_tokenizer_free(tm);
}

Test(tokenizer, gpt2_wiki_roundtrip, .timeout = 120)
{
    QT_NEED_DATA();
    char path[1024];
    qt_tokenizer *t = load_tok("tokenizers/gpt2/tokenizer.json", false);
    cr_assert(eq(i32, qt_tokenizer_eos(t), 50256));
    size_t n, n_ids;
    char *text = read_all(qt_test_data_path(path, sizeof path, "text/wiki.test.raw"), &n);
    int32_t *ids = roundtrip(t, "gpt2 / wiki.test.raw", text, n, &n_ids);
    qt_free(ids);
    free(text);

    /* the special token is matched in text, and decodes to nothing */
    static const char s[] = "a<|endoftext|>b";
    cr_assert(eq(int, qt_tokenizer_encode(t, s, sizeof s - 1, false, &ids, &n_ids), QT_OK));
    cr_assert(eq(sz, n_ids, 3));
    cr_assert(eq(i32, ids[1], 50256));
    qt_free(ids);
    qt_tokenizer_free(t);
}

Test(tokenizer, llama2_wiki_speed, .timeout = 120)
{
    QT_NEED_DATA();
    char path[1024];
    qt_tokenizer *t = load_tok("tokenizers/llama2/tokenizer.model", true);
    size_t n, n_ids;
    char *text = read_all(qt_test_data_path(path, sizeof path, "text/wiki.test.raw"), &n);
    int32_t *ids = roundtrip(t, "llama2 / wiki.test.raw", text, n, &n_ids);
    qt_free(ids);
    free(text);
    qt_tokenizer_free(t);
}

Test(tokenizer, unicode_classes)
{
    cr_assert(qt_unicode_is_letter('a'));
    cr_assert(qt_unicode_is_letter(0x4e2d));  /* 中 */
    cr_assert(qt_unicode_is_letter(0x1780));  /* Khmer KA */
    cr_assert(not(qt_unicode_is_letter(0x17b6))); /* Khmer vowel sign (Mc) */
    cr_assert(not(qt_unicode_is_letter('1')));
    cr_assert(qt_unicode_is_number('7'));
    cr_assert(qt_unicode_is_number(0x00bd));  /* ½ (No) */
    cr_assert(qt_unicode_is_number(0x0663));  /* Arabic-Indic 3 */
    cr_assert(not(qt_unicode_is_number(0x1f600)));
    cr_assert(qt_unicode_is_space(' '));
    cr_assert(qt_unicode_is_space(0x3000));
    cr_assert(not(qt_unicode_is_space(0x200b)));
}

/* ---- hostile inputs ------------------------------------------------------ */

static qt_status spm_bytes(const void *buf, size_t n, char *err)
{
    qt_vocab *v = NULL;
    qt_status st = qt_vocab_load_spm_mem(buf, n, "hostile.model", NULL, &v, err);
    if (st == QT_OK) {
        qt_tokenizer *t = NULL;
        if (qt_tokenizer_new(v, &t) == QT_OK) {
            int32_t *ids;
            size_t k;
            if (qt_tokenizer_encode(t, "Hello world", 11, true, &ids, &k) == QT_OK) qt_free(ids);
            qt_tokenizer_free(t);
        }
    } else {
        cr_assert(eq(ptr, v, NULL));
        cr_assert(ne(sz, strlen(err), 0));
    }
    qt_vocab_free(v);
    return st;
}

/* trainer_spec { model_type: BPE, bos_id: 0, eos_id: 0 }
 * normalizer_spec { remove_extra_whitespaces: false } */
#define SPM_SPECS 0x12, 0x08, 0x18, 0x02, 0xc8, 0x02, 0x00, 0xd0, 0x02, 0x00, 0x1a, 0x02, 0x20, 0x00

Test(tokenizer, spm_hostile)
{
    char err[QT_ERRMSG_SIZE];
    /* a minimal valid model: pieces "a" (score 0) and "b" */
    static const uint8_t ok[] = {0x0a, 0x03, 0x0a, 0x01, 'a', 0x0a, 0x03, 0x0a, 0x01, 'b', SPM_SPECS};
    cr_assert(eq(int, spm_bytes(ok, sizeof ok, err), QT_OK), "%s", err);

    static const uint8_t trunc_varint[] = {0x0a, 0x83};
    cr_assert(eq(int, spm_bytes(trunc_varint, sizeof trunc_varint, err), QT_ERR_FORMAT));
    static const uint8_t long_varint[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
    cr_assert(eq(int, spm_bytes(long_varint, sizeof long_varint, err), QT_ERR_FORMAT));
    static const uint8_t past_end[] = {0x0a, 0x10, 0x0a, 0x01, 'a', SPM_SPECS};
    cr_assert(eq(int, spm_bytes(past_end, sizeof past_end, err), QT_ERR_FORMAT));
    static const uint8_t huge_len[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00};
    cr_assert(eq(int, spm_bytes(huge_len, sizeof huge_len, err), QT_ERR_FORMAT));
    static const uint8_t inner_past_end[] = {0x0a, 0x03, 0x0a, 0x05, 'a', SPM_SPECS};
    cr_assert(eq(int, spm_bytes(inner_past_end, sizeof inner_past_end, err), QT_ERR_FORMAT));
    static const uint8_t pieces_varint[] = {0x08, 0x01, SPM_SPECS}; /* field 1 as varint */
    cr_assert(eq(int, spm_bytes(pieces_varint, sizeof pieces_varint, err), QT_ERR_FORMAT));
    static const uint8_t score_varint[] = {0x0a, 0x05, 0x0a, 0x01, 'a', 0x10, 0x01, SPM_SPECS};
    cr_assert(eq(int, spm_bytes(score_varint, sizeof score_varint, err), QT_ERR_FORMAT));
    static const uint8_t bad_type[] = {0x0a, 0x05, 0x0a, 0x01, 'a', 0x18, 0x09, SPM_SPECS};
    cr_assert(eq(int, spm_bytes(bad_type, sizeof bad_type, err), QT_ERR_FORMAT));
    static const uint8_t bad_byte[] = {0x0a, 0x05, 0x0a, 0x01, 'a', 0x18, 0x06, SPM_SPECS};
    cr_assert(eq(int, spm_bytes(bad_byte, sizeof bad_byte, err), QT_ERR_FORMAT));
    static const uint8_t empty_piece[] = {0x0a, 0x02, 0x0a, 0x00, SPM_SPECS};
    cr_assert(eq(int, spm_bytes(empty_piece, sizeof empty_piece, err), QT_ERR_FORMAT));
    static const uint8_t group[] = {0x0b, 0x0c, SPM_SPECS};
    cr_assert(eq(int, spm_bytes(group, sizeof group, err), QT_ERR_FORMAT));
    static const uint8_t field0[] = {0x02, 0x00};
    cr_assert(eq(int, spm_bytes(field0, sizeof field0, err), QT_ERR_FORMAT));
    static const uint8_t bad_bos[] = {0x0a, 0x03, 0x0a, 0x01, 'a', 0x12, 0x05, 0x18, 0x02, 0xc8, 0x02, 0x07,
                                      0x1a, 0x02, 0x20, 0x00};
    cr_assert(eq(int, spm_bytes(bad_bos, sizeof bad_bos, err), QT_ERR_FORMAT));
    static const uint8_t unigram[] = {0x0a, 0x03, 0x0a, 0x01, 'a', 0x1a, 0x02, 0x20, 0x00};
    cr_assert(eq(int, spm_bytes(unigram, sizeof unigram, err), QT_ERR_UNSUPPORTED));
    cr_assert(not(strstr(err, "model_type") == NULL));
    cr_assert(eq(int, spm_bytes("", 0, err), QT_ERR_FORMAT));
    cr_assert(eq(int, spm_bytes("{\"model\": 1}", 12, err), QT_ERR_FORMAT));
}

Test(tokenizer, spm_mutations, .timeout = 120)
{
    QT_NEED_DATA();
    char path[1024], err[QT_ERRMSG_SIZE];
    size_t n;
    uint8_t *buf = (uint8_t *)read_all(qt_test_data_path(path, sizeof path, "models/stories260K-f32/tokenizer.model"), &n);
    /* every truncation must be refused or load cleanly */
    int refused = 0;
    for (size_t k = 0; k < n; k += 7) refused += spm_bytes(buf, k, err) != QT_OK;
    cr_assert(gt(int, refused, 0));
    /* random byte flips */
    unsigned long long seed = qt_test_seed(12345);
    uint8_t *copy = malloc(n);
    for (int it = 0; it < 2000; it++) {
        memcpy(copy, buf, n);
        int flips = 1 + (int)(qt_test_rand(&seed) % 4);
        for (int f = 0; f < flips; f++) copy[qt_test_rand(&seed) % n] = (uint8_t)qt_test_rand(&seed);
        spm_bytes(copy, n, err);
    }
    free(copy);
    free(buf);
}

static qt_status json_bytes(const char *s, char *err)
{
    qt_vocab *v = NULL;
    qt_status st = qt_vocab_load_hf_json_mem(s, strlen(s), "hostile.json", NULL, &v, err);
    if (st == QT_OK) {
        qt_tokenizer *t = NULL;
        if (qt_tokenizer_new(v, &t) == QT_OK) {
            int32_t *ids;
            size_t k;
            if (qt_tokenizer_encode(t, "ab ab", 5, true, &ids, &k) == QT_OK) qt_free(ids);
            qt_tokenizer_free(t);
        }
    } else {
        cr_assert(eq(ptr, v, NULL));
        cr_assert(ne(sz, strlen(err), 0));
    }
    qt_vocab_free(v);
    return st;
}

#define NORM "\"normalizer\":{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\\u2581\"},"

Test(tokenizer, json_hostile)
{
    char err[QT_ERRMSG_SIZE];
    cr_assert(eq(int, json_bytes("{" NORM "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},"
                                 "\"merges\":[\"a b\"]}}", err), QT_OK), "%s", err);
    cr_assert(eq(int, json_bytes("{" NORM "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},"
                                 "\"merges\":[[\"a\",\"b\"]]}}", err), QT_OK), "%s", err);
    cr_assert(eq(int, json_bytes("{" NORM "\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}", err),
                 QT_ERR_UNSUPPORTED));
    cr_assert(not(strstr(err, "Unigram") == NULL));
    cr_assert(eq(int, json_bytes("{" NORM "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},"
                                 "\"merges\":[\"a b\"]}}", err), QT_ERR_FORMAT));
    cr_assert(eq(int, json_bytes("{" NORM "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":\"0\"},"
                                 "\"merges\":[]}}", err), QT_ERR_FORMAT));
    cr_assert(eq(int, json_bytes("{" NORM "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1},"
                                 "\"merges\":[]}}", err), QT_ERR_FORMAT));
    cr_assert(eq(int, json_bytes("{" NORM "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1.5},"
                                 "\"merges\":[]}}", err), QT_ERR_FORMAT));
    cr_assert(eq(int, json_bytes("{" NORM "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":99999999},"
                                 "\"merges\":[]}}", err), QT_ERR_FORMAT));
    cr_assert(eq(int, json_bytes("{" NORM "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0},"
                                 "\"merges\":[]}}", err), QT_ERR_FORMAT));
    cr_assert(eq(int, json_bytes("{" NORM "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},"
                                 "\"merges\":[\"a\"]}}", err), QT_ERR_FORMAT));
    cr_assert(eq(int, json_bytes("{" NORM "\"model\":{\"type\":\"BPE\",\"vocab\":[1,2],"
                                 "\"merges\":[]}}", err), QT_ERR_FORMAT));
    cr_assert(eq(int, json_bytes("{" NORM "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},"
                                 "\"merges\":{}}}", err), QT_ERR_FORMAT));
    cr_assert(eq(int, json_bytes("{\"normalizer\":{\"type\":\"NFKC\"},\"model\":{\"type\":\"BPE\","
                                 "\"vocab\":{\"a\":0},\"merges\":[]}}", err), QT_ERR_UNSUPPORTED));
    cr_assert(not(strstr(err, "NFKC") == NULL));
    cr_assert(eq(int, json_bytes("{\"pre_tokenizer\":{\"type\":\"Whitespace\"},\"model\":{\"type\":\"BPE\","
                                 "\"vocab\":{\"a\":0},\"merges\":[]}}", err), QT_ERR_UNSUPPORTED));
    cr_assert(eq(int, json_bytes("{\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":"
                                 "\"Split\",\"pattern\":{\"Regex\":\"\\\\w+\"},\"behavior\":\"Isolated\"},"
                                 "{\"type\":\"ByteLevel\",\"use_regex\":false}]},\"model\":{\"type\":\"BPE\","
                                 "\"vocab\":{\"a\":0},\"merges\":[]}}", err), QT_ERR_UNSUPPORTED));
    cr_assert(eq(int, json_bytes("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}", err),
                 QT_ERR_UNSUPPORTED));
    cr_assert(eq(int, json_bytes("{" NORM "\"added_tokens\":[{\"id\":5}],\"model\":{\"type\":\"BPE\","
                                 "\"vocab\":{\"a\":0},\"merges\":[]}}", err), QT_ERR_FORMAT));
    cr_assert(eq(int, json_bytes("{" NORM "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}", err),
                 QT_ERR_FORMAT));
    cr_assert(eq(int, json_bytes("[]", err), QT_ERR_FORMAT));
    cr_assert(eq(int, json_bytes("{}", err), QT_ERR_FORMAT));
}

/* Hand-built byte-level vocab: pre-tokenizer words and merges. */
Test(tokenizer, bytelevel_small)
{
    QT_NEED_DATA();
    qt_tokenizer *t = load_tok("tokenizers/gpt2/tokenizer.json", false);
    static const struct {
        const char *text;
        int32_t ids[8];
        size_t n;
    } cases[] = {
        {"Hello world", {15496, 995}, 2},
        {" discards", {1221, 1371}, 2},
        {"33333", {2091, 20370}, 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int32_t *ids;
        size_t n;
        cr_assert(eq(int, qt_tokenizer_encode(t, cases[i].text, strlen(cases[i].text), false, &ids, &n), QT_OK));
        cr_assert(eq(sz, n, cases[i].n), "%s", cases[i].text);
        cr_assert(eq(int, memcmp(ids, cases[i].ids, n * sizeof *ids), 0), "%s", cases[i].text);
        qt_free(ids);
    }
    /* invalid UTF-8 survives the round trip */
    static const char bad[] = "a\xff\xc3 b\xe2\x82";
    int32_t *ids;
    size_t n, len;
    char *back;
    cr_assert(eq(int, qt_tokenizer_encode(t, bad, sizeof bad - 1, false, &ids, &n), QT_OK));
    cr_assert(eq(int, qt_tokenizer_decode(t, ids, n, &back, &len), QT_OK));
    cr_assert(eq(int, (len == sizeof bad - 1) && (memcmp(back, bad, len) == 0), 1));
    qt_free(ids);
    qt_free(back);
    qt_tokenizer_free(t);
}

Test(tokenizer, alloc_failures, .timeout = 120)
{
    QT_NEED_DATA();
    char path[1024], err[QT_ERRMSG_SIZE];
    qt_test_data_path(path, sizeof path, "models/stories260K-f32/tokenizer.json");
    for (uint64_t k = 1; k < 400; k++) {
        qt_vocab *v = NULL;
        qt_tokenizer *t = NULL;
        int32_t *ids = NULL;
        size_t n;
        qt_alloc_fail_after(k);
        qt_status st = qt_vocab_load_hf_json(path, &v, err);
        if (st == QT_OK) st = qt_tokenizer_new(v, &t);
        if (st == QT_OK) st = qt_tokenizer_encode(t, "Once upon a time", 16, true, &ids, &n);
        qt_alloc_fail_after(0);
        cr_assert(st == QT_OK || st == QT_ERR_NOMEM, "k=%llu st=%d %s", (unsigned long long)k, st, err);
        qt_free(ids);
        qt_tokenizer_free(t);
        qt_vocab_free(v);
    }
}

static void expect_ids(const char *json, const char *text, const int32_t *want, size_t n_want)
{
    char err[QT_ERRMSG_SIZE] = "";
    qt_vocab *v = NULL;
    qt_tokenizer *t = NULL;
    cr_assert(eq(int, qt_vocab_load_hf_json_mem(json, strlen(json), "small.json", NULL, &v, err), QT_OK),
              "%s", err);
    cr_assert(eq(int, qt_tokenizer_new(v, &t), QT_OK));
    int32_t *ids;
    size_t n, len;
    char *back;
    cr_assert(eq(int, qt_tokenizer_encode(t, text, strlen(text), false, &ids, &n), QT_OK));
    cr_assert(eq(sz, n, n_want));
    cr_assert(eq(int, memcmp(ids, want, n * sizeof *ids), 0));
    cr_assert(eq(int, qt_tokenizer_decode(t, ids, n, &back, &len), QT_OK));
    cr_assert(eq(str, back, (char *)text));
    qt_free(back);
    qt_free(ids);
    qt_tokenizer_free(t);
    qt_vocab_free(v);
}

#define SMALL_MODEL                                                                              \
    "\"model\":{\"type\":\"BPE\",\"vocab\":{\"\\u2581\":0,\"a\":1,\"b\":2,\"\\u2581a\":3,"         \
    "\"\\u2581\\u2581\":4},\"merges\":[\"\\u2581 a\",\"\\u2581 \\u2581\"]}"

Test(tokenizer, metaspace_split)
{
    static const int32_t split[] = {3, 0, 0, 2}, whole[] = {3, 4, 2};
    expect_ids("{\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"\\u2581\","
               "\"prepend_scheme\":\"always\",\"split\":true}," SMALL_MODEL "}",
               "a  b", split, 4);
    expect_ids("{\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"\\u2581\","
               "\"prepend_scheme\":\"always\",\"split\":false}," SMALL_MODEL "}",
               "a  b", whole, 3);
    expect_ids("{" NORM SMALL_MODEL "}", " a", (const int32_t[]){3}, 1); /* no Prepend: no dummy prefix */
}
