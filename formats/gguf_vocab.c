/* formats/gguf_vocab.c: tokenizer files -> GGUF tokenizer keys
 * (specs/gguf-export.md §4). SentencePiece from tokenizer.model, byte-level
 * BPE from tokenizer.json; both read through formats/vocab.h (the one place
 * that parses tokenizer files), then laid out as llama.cpp's converter does. */
#include "formats/gguf_meta.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/formats_internal.h"
#include "formats/fsutil.h"
#include "formats/json.h"
#include "formats/vocab.h"

/* The token arrays being built (n entries). */
typedef struct gv_arrays {
    size_t n;
    const char **text; /* borrowed from the vocab or from pad */
    uint32_t *len;
    float *score;
    int32_t *type;
    char *pad;         /* "[PAD<i>]" strings and rewritten added tokens */
    size_t pad_used, pad_cap;
} gv_arrays;

static void arrays_free(gv_arrays *a)
{
    qt_free(a->text);
    qt_free(a->len);
    qt_free(a->score);
    qt_free(a->type);
    qt_free(a->pad);
}

/* n entries of "[PAD<i>]", score -10000, UNUSED (the converter's start). */
static qt_status arrays_init(gv_arrays *a, size_t n, size_t extra, char *errmsg)
{
    memset(a, 0, sizeof *a);
    a->n = n;
    a->pad_cap = n * 20 + extra + 1;
    a->text = qt_calloc(n, sizeof *a->text);
    a->len = qt_calloc(n, sizeof *a->len);
    a->score = qt_calloc(n, sizeof *a->score);
    a->type = qt_calloc(n, sizeof *a->type);
    a->pad = qt_malloc(a->pad_cap);
    if (!a->text || !a->len || !a->score || !a->type || !a->pad)
        return qt_set_err(errmsg, QT_ERR_NOMEM, "out of memory for the vocabulary");
    for (size_t i = 0; i < n; i++) {
        char *p = a->pad + a->pad_used;
        int k = snprintf(p, 20, "[PAD%zu]", i);
        a->text[i] = p;
        a->len[i] = (uint32_t)k;
        a->pad_used += (size_t)k;
        a->score[i] = -10000.0f;
        a->type[i] = QT_TOKEN_UNUSED;
    }
    return QT_OK;
}

/* Stores a copy of s with every "▁" (U+2581) replaced by a space. */
static const char *unescape_space(gv_arrays *a, const char *s, uint32_t n, uint32_t *out_len)
{
    if (a->pad_used + n + 1 > a->pad_cap) return NULL;
    char *p = a->pad + a->pad_used, *q = p;
    for (uint32_t i = 0; i < n;) {
        if (i + 3 <= n && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
            *q++ = ' ';
            i += 3;
        } else {
            *q++ = s[i++];
        }
    }
    *out_len = (uint32_t)(q - p);
    a->pad_used += *out_len;
    return p;
}

/* The converter's "looks special" test for added tokens. */
static bool looks_special(const char *s, size_t n)
{
    if (n >= 4 && memcmp(s, "<|", 2) == 0 && memcmp(s + n - 2, "|>", 2) == 0) return true;
    if ((n == 5 && memcmp(s, "<pad>", 5) == 0) || (n == 6 && memcmp(s, "<mask>", 6) == 0))
        return true;
    return n >= 7 && memcmp(s, "<unused", 7) == 0;
}

/* An added token at id: CONTROL when special (or looking it), else
 * USER_DEFINED with "▁" as a space; score -1000. */
static void set_added(gv_arrays *a, size_t id, const char *s, uint32_t n, bool special)
{
    a->score[id] = -1000.0f;
    if (special || looks_special(s, n)) {
        a->text[id] = s;
        a->len[id] = n;
        a->type[id] = QT_TOKEN_CONTROL;
        return;
    }
    uint32_t m;
    const char *u = unescape_space(a, s, n, &m);
    a->text[id] = u ? u : s;
    a->len[id] = u ? m : n;
    a->type[id] = QT_TOKEN_USER_DEFINED;
}

/* "<model dir>/<file>" into buf. */
static bool dir_file(const qt_modeldir *md, const char *file, char *buf, size_t n)
{
    return qt_path_join(buf, n, qt_modeldir_path(md), file);
}

/* tokenizer_config.json, or NULL when absent. */
static qt_status read_tok_config(const qt_modeldir *md, cJSON **out, char *errmsg)
{
    char path[4096];
    *out = NULL;
    if (!dir_file(md, "tokenizer_config.json", path, sizeof path) || !qt_path_is_file(path))
        return QT_OK;
    return qt_json_parse_file(path, QT_MODELDIR_CONFIG_MAX, out, errmsg);
}

/* added_tokens_decoder of tokenizer_config.json (§4.2 step 4). */
static void apply_added_decoder(gv_arrays *a, const cJSON *tc)
{
    const cJSON *dec = tc ? cJSON_GetObjectItemCaseSensitive(tc, "added_tokens_decoder") : NULL;
    const cJSON *e;
    cJSON_ArrayForEach(e, dec) {
        char *end;
        unsigned long id = strtoul(e->string, &end, 10);
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (*end || id >= a->n || !cJSON_IsString(c)) continue;
        bool special = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "special"));
        set_added(a, id, c->valuestring, (uint32_t)strlen(c->valuestring), special);
    }
}

/* ---- special ids and flags (§4.2 "Special ids") ------------------------------------- */

/* Id of the token whose text is s in the arrays, or -1. */
static int64_t find_text(const gv_arrays *a, const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < a->n; i++)
        if (a->len[i] == n && memcmp(a->text[i], s, n) == 0) return (int64_t)i;
    return -1;
}

static qt_status write_special(qt_gguf_writer *w, const qt_modeldir *md, const cJSON *tc,
                               const gv_arrays *a, bool smollm_quirk)
{
    static const char *const typ[] = {"bos", "eos", "unk", "sep", "pad"};
    static const char *const key[] = {"bos", "eos", "unknown", "seperator", "padding"};
    qt_status st = QT_OK;
    char k[96], ck[64];
    for (size_t i = 0; i < sizeof typ / sizeof typ[0]; i++) {
        int64_t id = -1;
        /* first the token named in tokenizer_config.json, then config.json's id */
        snprintf(ck, sizeof ck, "%s_token", typ[i]);
        const cJSON *t = tc ? cJSON_GetObjectItemCaseSensitive(tc, ck) : NULL;
        if (cJSON_IsObject(t)) t = cJSON_GetObjectItemCaseSensitive(t, "content");
        if (cJSON_IsString(t)) id = find_text(a, t->valuestring);
        snprintf(ck, sizeof ck, "%s_token_id", typ[i]);
        if (id < 0 && qt_modeldir_config_int(md, ck, &id) != QT_OK) id = -1;
        if (id < 0 || (uint64_t)id >= a->n) continue;
        snprintf(k, sizeof k, "tokenizer.ggml.%s_token_id", key[i]);
        QT_TRY(qt_gguf_writer_add_u32(w, k, (uint32_t)id));
    }
    /* add_bos / add_eos from tokenizer_config, the SmolLM/granite quirk */
    const cJSON *ab = tc ? cJSON_GetObjectItemCaseSensitive(tc, "add_bos_token") : NULL;
    const cJSON *ae = tc ? cJSON_GetObjectItemCaseSensitive(tc, "add_eos_token") : NULL;
    const cJSON *ap = tc ? cJSON_GetObjectItemCaseSensitive(tc, "add_prefix_space") : NULL;
    if (cJSON_IsBool(ab))
        QT_TRY(qt_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", cJSON_IsTrue(ab)));
    else if (smollm_quirk)
        QT_TRY(qt_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", false));
    if (cJSON_IsBool(ae))
        QT_TRY(qt_gguf_writer_add_bool(w, "tokenizer.ggml.add_eos_token", cJSON_IsTrue(ae)));
    if (cJSON_IsBool(ap))
        QT_TRY(qt_gguf_writer_add_bool(w, "tokenizer.ggml.add_space_prefix", cJSON_IsTrue(ap)));
    /* chat template: a string, or the "default" entry of a list */
    const cJSON *ct = tc ? cJSON_GetObjectItemCaseSensitive(tc, "chat_template") : NULL;
    const cJSON *e;
    if (cJSON_IsArray(ct))
        cJSON_ArrayForEach(e, ct) {
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(e, "name");
            if (cJSON_IsString(nm) && strcmp(nm->valuestring, "default") == 0)
                ct = cJSON_GetObjectItemCaseSensitive(e, "template");
        }
    if (cJSON_IsString(ct))
        QT_TRY(qt_gguf_writer_add_str(w, "tokenizer.chat_template", ct->valuestring,
                                      strlen(ct->valuestring)));
fail:
    return st;
}

/* tokens, (scores), token_type. */
static qt_status write_arrays(qt_gguf_writer *w, const gv_arrays *a, bool scores)
{
    qt_status st = QT_OK;
    QT_TRY(qt_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", a->text, a->len, a->n));
    if (scores) QT_TRY(qt_gguf_writer_add_arr_f32(w, "tokenizer.ggml.scores", a->score, a->n));
    QT_TRY(qt_gguf_writer_add_arr_i32(w, "tokenizer.ggml.token_type", a->type, a->n));
fail:
    return st;
}

/* ---- SentencePiece (§4.2) ------------------------------------------------------------- */

/* added_tokens.json {content: id} (§4.2 step 3). */
static qt_status apply_added_json(gv_arrays *a, const qt_modeldir *md, char *errmsg)
{
    char path[4096];
    if (!dir_file(md, "added_tokens.json", path, sizeof path) || !qt_path_is_file(path))
        return QT_OK;
    cJSON *root = NULL;
    qt_status st = qt_json_parse_file(path, QT_MODELDIR_CONFIG_MAX, &root, errmsg);
    if (st != QT_OK) return st;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= (double)a->n) continue;
        size_t id = (size_t)e->valuedouble;
        a->text[id] = e->string;
        a->len[id] = (uint32_t)strlen(e->string);
        a->score[id] = -1000.0f;
        a->type[id] = QT_TOKEN_USER_DEFINED;
    }
    /* the strings must outlive the writer call: copy them into pad */
    for (size_t i = 0; i < a->n; i++) {
        if (a->type[i] != QT_TOKEN_USER_DEFINED || a->score[i] != -1000.0f) continue;
        if (a->pad_used + a->len[i] > a->pad_cap) break;
        memcpy(a->pad + a->pad_used, a->text[i], a->len[i]);
        a->text[i] = a->pad + a->pad_used;
        a->pad_used += a->len[i];
    }
    cJSON_Delete(root);
    return QT_OK;
}

static qt_status write_spm(qt_gguf_writer *w, const qt_modeldir *md, const qt_gguf_hparams *hp,
                           const char *path, const cJSON *tc, char *errmsg)
{
    qt_status st = QT_OK;
    qt_vocab *v = NULL;
    gv_arrays a;
    memset(&a, 0, sizeof a);
    QT_TRY(qt_vocab_load_spm(path, &v, errmsg));
    size_t n = hp->vocab; /* = token_embd rows: llama.cpp's n_vocab */
    QT_CHECK(n >= v->n_tokens, QT_ERR_FORMAT, "%s: %zu pieces but the model has %zu embedding "
             "rows (llama.cpp requires one row per token)", path, v->n_tokens, n);
    QT_TRY(arrays_init(&a, n, 1 << 20, errmsg));
    /* pieces: text as is, score, type (user-defined reads as normal, the
     * converter's quirk) */
    for (size_t i = 0; i < v->n_tokens; i++) {
        const qt_vocab_token *t = &v->tokens[i];
        a.text[i] = t->text;
        a.len[i] = t->len;
        a.score[i] = t->score;
        a.type[i] = t->type == QT_TOKEN_USER_DEFINED ? QT_TOKEN_NORMAL : t->type;
    }
    QT_TRY(apply_added_json(&a, md, errmsg));
    apply_added_decoder(&a, tc);
    QT_TRY(qt_gguf_writer_add_str(w, "tokenizer.ggml.model", "llama", 5));
    QT_TRY(qt_gguf_writer_add_str(w, "tokenizer.ggml.pre", "default", 7));
    QT_TRY(write_arrays(w, &a, true));
    QT_TRY(write_special(w, md, tc, &a, false));
fail:
    if (st != QT_OK && !errmsg[0]) qt_set_err(errmsg, st, "%s", qt_gguf_writer_errmsg(w));
    arrays_free(&a);
    qt_vocab_free(v);
    return st;
}

/* ---- byte-level BPE (§4.3) ------------------------------------------------------------ */

/* Pre-tokenizer names llama.cpp's llama-vocab.cpp accepts. */
static const char *const known_pre[] = {
    "default", "llama3", "llama-v3", "llama-bpe", "falcon3", "deepseek-llm", "deepseek-coder",
    "deepseek-v3", "falcon", "mpt", "starcoder", "gpt-2", "phi-2", "jina-es", "jina-de",
    "jina-v1-en", "jina-v2-es", "jina-v2-de", "jina-v2-code", "refact", "command-r", "qwen2",
    "stablelm2", "olmo", "dbrx", "smaug-bpe", "poro-chat", "jais", "tekken", "smollm",
    "codeshell", "bloom", "gpt3-finnish", "exaone", "chameleon", "minerva-7b", "megrez",
    "gpt-4o", "viking", "roberta-bpe", "chatglm-bpe",
};

static bool pre_known(const char *p)
{
    for (size_t i = 0; i < sizeof known_pre / sizeof known_pre[0]; i++)
        if (strcmp(p, known_pre[i]) == 0) return true;
    return false;
}

/* The built-in identification table of §4.3 (model_type, split regex, vocab size). */
static const char *identify_pre(const qt_modeldir *md, const qt_vocab *v, size_t n)
{
    const char *mt = "";
    (void)qt_modeldir_config_str(md, "model_type", &mt);
    if (v->pretok == QT_PRETOK_LLAMA3 && strcmp(mt, "llama") == 0 && n == 128256)
        return "llama-bpe";
    if (v->pretok == QT_PRETOK_QWEN2 && strcmp(mt, "qwen2") == 0) return "qwen2";
    if (v->pretok == QT_PRETOK_GPT2 && strcmp(mt, "llama") == 0 && n == 49152) return "smollm";
    return NULL;
}

/* merges as "left right" strings. */
static qt_status write_merges(qt_gguf_writer *w, const qt_vocab *v, char *errmsg)
{
    qt_status st = QT_OK;
    size_t bytes = 0;
    for (size_t i = 0; i < v->n_merges; i++)
        bytes += v->tokens[v->merges[i].left].len + 1 + v->tokens[v->merges[i].right].len;
    char *arena = qt_malloc(bytes + 1);
    const char **s = qt_malloc((v->n_merges + 1) * sizeof *s);
    uint32_t *len = qt_malloc((v->n_merges + 1) * sizeof *len);
    QT_CHECK(arena && s && len, QT_ERR_NOMEM, "out of memory for the merges");
    char *p = arena;
    for (size_t i = 0; i < v->n_merges; i++) {
        const qt_vocab_token *l = &v->tokens[v->merges[i].left], *r = &v->tokens[v->merges[i].right];
        s[i] = p;
        memcpy(p, l->text, l->len);
        p[l->len] = ' ';
        memcpy(p + l->len + 1, r->text, r->len);
        len[i] = l->len + 1 + r->len;
        p += len[i];
    }
    if (v->n_merges) QT_TRY(qt_gguf_writer_add_arr_str(w, "tokenizer.ggml.merges", s, len,
                                                       v->n_merges));
fail:
    qt_free(arena);
    qt_free(s);
    qt_free(len);
    return st;
}

static qt_status write_bpe(qt_gguf_writer *w, const qt_modeldir *md, const qt_gguf_hparams *hp,
                           const char *path, const cJSON *tc, const char *pre, char *errmsg)
{
    qt_status st = QT_OK;
    qt_vocab *v = NULL;
    gv_arrays a;
    memset(&a, 0, sizeof a);
    QT_TRY(qt_vocab_load_hf_json(path, &v, errmsg));
    QT_CHECK(v->kind == QT_VOCAB_BPE_BYTE, QT_ERR_UNSUPPORTED, "%s: a SentencePiece-style BPE "
             "without tokenizer.model is not supported for GGUF export (add tokenizer.model)",
             path);
    size_t n = hp->vocab; /* = token_embd rows: llama.cpp's n_vocab */
    const char *found = identify_pre(md, v, n);
    if (!pre) pre = found;
    QT_CHECK(pre, QT_ERR_UNSUPPORTED, "%s: BPE pre-tokenizer '%s' (vocab %zu) is not identified "
             "as one llama.cpp knows; state it with --gguf-pre NAME (e.g. llama-bpe, qwen2, "
             "smollm, gpt-2)", path, qt_pretok_str(v->pretok), n);
    QT_CHECK(pre_known(pre), QT_ERR_ARG, "--gguf-pre '%.64s' is not a pre-tokenizer llama.cpp "
             "accepts", pre);
    QT_CHECK(v->n_tokens <= n, QT_ERR_FORMAT, "%s: %zu tokens but the model has %zu embedding "
             "rows (llama.cpp requires one row per token)", path, v->n_tokens, n);
    QT_TRY(arrays_init(&a, n, 1 << 22, errmsg));
    /* base vocab NORMAL, added tokens CONTROL / USER_DEFINED, holes [PAD<i>] */
    for (size_t i = 0; i < v->n_tokens; i++) {
        const qt_vocab_token *t = &v->tokens[i];
        if (t->type == QT_TOKEN_UNUSED && t->len == 0) continue;
        if (t->added) {
            set_added(&a, i, t->text, t->len, t->type == QT_TOKEN_CONTROL);
            a.score[i] = 0; /* BPE has no scores array */
        } else {
            a.text[i] = t->text;
            a.len[i] = t->len;
            a.type[i] = QT_TOKEN_NORMAL;
        }
    }
    QT_TRY(qt_gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2", 4));
    QT_TRY(qt_gguf_writer_add_str(w, "tokenizer.ggml.pre", pre, strlen(pre)));
    QT_TRY(write_arrays(w, &a, false));
    QT_TRY(write_merges(w, v, errmsg));
    QT_TRY(write_special(w, md, tc, &a, strcmp(hp->arch, "llama") == 0 && n == 49152));
fail:
    if (st != QT_OK && !errmsg[0]) qt_set_err(errmsg, st, "%s", qt_gguf_writer_errmsg(w));
    arrays_free(&a);
    qt_vocab_free(v);
    return st;
}

qt_status qt_gguf_vocab_write(qt_gguf_writer *w, const qt_modeldir *md,
                              const qt_gguf_hparams *hp, const char *pre, char *errmsg)
{
    char spm[4096], json[4096];
    cJSON *tc = NULL;
    qt_status st = QT_OK;
    errmsg[0] = 0;
    QT_CHECK(dir_file(md, "tokenizer.model", spm, sizeof spm) &&
                 dir_file(md, "tokenizer.json", json, sizeof json),
             QT_ERR_ARG, "%s: path too long", qt_modeldir_path(md));
    QT_TRY(read_tok_config(md, &tc, errmsg));
    if (qt_path_is_file(spm))
        st = write_spm(w, md, hp, spm, tc, errmsg);
    else if (qt_path_is_file(json))
        st = write_bpe(w, md, hp, json, tc, pre, errmsg);
    else
        st = qt_set_err(errmsg, QT_ERR_FORMAT, "%s: no tokenizer.model or tokenizer.json (GGUF "
                        "needs the vocabulary)", qt_modeldir_path(md));
fail:
    cJSON_Delete(tc);
    return st;
}
