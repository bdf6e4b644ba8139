/* formats/vocab.c: tokenizer.json and SentencePiece tokenizer.model loaders. */
#include "formats/vocab.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "formats/json.h"

#define MAX_CONFIG_BYTES (16u << 20)


const char *qt_vocab_kind_str(qt_vocab_kind k)
{
    switch (k) {
    case QT_VOCAB_SPM: return "spm";
    case QT_VOCAB_BPE_SPM: return "bpe-spm";
    case QT_VOCAB_BPE_BYTE: return "bpe-byte";
    default: return "?";
    }
}

const char *qt_pretok_str(qt_pretok p)
{
    switch (p) {
    case QT_PRETOK_NONE: return "none";
    case QT_PRETOK_METASPACE: return "metaspace";
    case QT_PRETOK_GPT2: return "gpt2";
    case QT_PRETOK_LLAMA3: return "llama3";
    case QT_PRETOK_QWEN2: return "qwen2";
    default: return "?";
    }
}

void qt_vocab_free(qt_vocab *v)
{
    if (!v) return;
    qt_free(v->tokens);
    qt_free(v->merges);
    qt_free(v->arena);
    memset(v, 0, sizeof *v);
    qt_free(v);
}

static qt_vocab *vocab_new(void)
{
    qt_vocab *v = qt_calloc(1, sizeof *v);
    if (!v) return NULL;
    v->bos_id = v->eos_id = v->unk_id = -1;
    return v;
}

/* ---- small helpers ----------------------------------------------------- */

/* "<0xXX>" with uppercase hex, as SentencePiece writes byte pieces. */
static bool is_byte_piece(const char *s, size_t n)
{
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return false;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'))) return false;
    }
    return true;
}

/* String -> id hash over the vocab's token texts (open addressing). */
typedef struct str_map {
    int32_t *slots; /* (cap) token id or -1 */
    size_t cap;
} str_map;

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static bool str_map_build(str_map *m, const qt_vocab *v)
{
    size_t cap = 16;
    while (cap < v->n_tokens * 2) cap <<= 1;
    m->slots = qt_malloc(cap * sizeof *m->slots);
    if (!m->slots) return false;
    m->cap = cap;
    for (size_t i = 0; i < cap; i++) m->slots[i] = -1;
    for (size_t id = 0; id < v->n_tokens; id++) {
        const qt_vocab_token *t = &v->tokens[id];
        if (t->type == QT_TOKEN_UNUSED && t->len == 0) continue;
        size_t h = (size_t)hash_bytes(t->text, t->len) & (cap - 1);
        for (;;) {
            int32_t s = m->slots[h];
            if (s < 0) {
                m->slots[h] = (int32_t)id;
                break;
            }
            if (v->tokens[s].len == t->len && memcmp(v->tokens[s].text, t->text, t->len) == 0) break;
            h = (h + 1) & (cap - 1);
        }
    }
    return true;
}

static int32_t str_map_get(const str_map *m, const qt_vocab *v, const char *s, size_t n)
{
    size_t h = (size_t)hash_bytes(s, n) & (m->cap - 1);
    for (;;) {
        int32_t id = m->slots[h];
        if (id < 0) return -1;
        if (v->tokens[id].len == n && memcmp(v->tokens[id].text, s, n) == 0) return id;
        h = (h + 1) & (m->cap - 1);
    }
}

static int32_t find_token(const qt_vocab *v, const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < v->n_tokens; i++)
        if (v->tokens[i].len == n && memcmp(v->tokens[i].text, s, n) == 0) return (int32_t)i;
    return -1;
}

/* "<dir of path>/tokenizer_config.json" into buf; false if it does not fit. */
static bool config_path_for(const char *path, char *buf, size_t n)
{
    const char *slash = strrchr(path, '/');
    int k = slash ? snprintf(buf, n, "%.*s/tokenizer_config.json", (int)(slash - path), path)
                  : snprintf(buf, n, "tokenizer_config.json");
    return k > 0 && (size_t)k < n;
}

/* A token name in tokenizer_config.json: "<s>" or {"content": "<s>", ...}. */
static const char *config_token_name(const cJSON *item)
{
    if (cJSON_IsString(item)) return item->valuestring;
    if (cJSON_IsObject(item)) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(item, "content");
        if (cJSON_IsString(c)) return c->valuestring;
    }
    return NULL;
}

/* Applies tokenizer_config.json (when the file exists): add_bos_token,
 * bos_token, eos_token. A file that exists but is not valid JSON fails. */
static qt_status apply_config(qt_vocab *v, const char *config_path, char *errmsg)
{
    qt_status st = QT_OK;
    cJSON *root = NULL;
    struct stat sb;
    if (!config_path || stat(config_path, &sb) != 0) return QT_OK;
    QT_TRY(qt_json_parse_file(config_path, MAX_CONFIG_BYTES, &root, errmsg));
    QT_CHECK(cJSON_IsObject(root), QT_ERR_FORMAT, "'%s': not a JSON object", config_path);
    const cJSON *ab = cJSON_GetObjectItemCaseSensitive(root, "add_bos_token");
    if (cJSON_IsBool(ab)) v->add_bos = cJSON_IsTrue(ab);
    const char *name = config_token_name(cJSON_GetObjectItemCaseSensitive(root, "bos_token"));
    if (name) {
        int32_t id = find_token(v, name);
        if (id >= 0) v->bos_id = id;
    }
    name = config_token_name(cJSON_GetObjectItemCaseSensitive(root, "eos_token"));
    if (name) {
        int32_t id = find_token(v, name);
        if (id >= 0) v->eos_id = id;
    }
fail:
    cJSON_Delete(root);
    return st;
}

/* ---- tokenizer.json ---------------------------------------------------- */

static bool json_int(const cJSON *item, int64_t lo, int64_t hi, int64_t *out)
{
    if (!cJSON_IsNumber(item)) return false;
    double d = item->valuedouble;
    if (!(d >= (double)lo && d <= (double)hi) || d != (double)(int64_t)d) return false;
    *out = (int64_t)d;
    return true;
}

static const char *json_type_name(const cJSON *obj)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(obj, "type");
    return cJSON_IsString(t) ? t->valuestring : NULL;
}

static bool json_is_str(const cJSON *item, const char *s)
{
    return cJSON_IsString(item) && strcmp(item->valuestring, s) == 0;
}

/* true when absent, null, or false */
static bool json_falsy(const cJSON *item)
{
    return !item || cJSON_IsNull(item) || cJSON_IsFalse(item);
}

static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char LLAMA3_PATTERN[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char QWEN2_PATTERN[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* What the normalizer / pre-tokenizer sections say. */
typedef struct json_shape {
    bool prepend, replace;          /* normalizer Prepend("▁"), Replace(" " -> "▁") */
    bool metaspace, meta_split, meta_first, meta_prefix;
    bool bytelevel;
    qt_pretok pretok;
} json_shape;

#define METASPACE "\xe2\x96\x81"

static qt_status json_normalizer_one(const cJSON *n, const char *what, json_shape *sh,
                                     char *errmsg)
{
    qt_status st = QT_OK;
    const char *type = json_type_name(n);
    QT_CHECK(type, QT_ERR_FORMAT, "'%s': normalizer without a type", what);
    if (strcmp(type, "Prepend") == 0) {
        QT_CHECK(json_is_str(cJSON_GetObjectItemCaseSensitive(n, "prepend"), METASPACE),
                 QT_ERR_UNSUPPORTED, "'%s': normalizer Prepend of something other than \"\\u2581\"",
                 what);
        sh->prepend = true;
    } else if (strcmp(type, "Replace") == 0) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(n, "pattern");
        QT_CHECK(cJSON_IsObject(pat) &&
                     json_is_str(cJSON_GetObjectItemCaseSensitive(pat, "String"), " ") &&
                     json_is_str(cJSON_GetObjectItemCaseSensitive(n, "content"), METASPACE),
                 QT_ERR_UNSUPPORTED,
                 "'%s': normalizer Replace other than \" \" -> \"\\u2581\" is not supported", what);
        sh->replace = true;
    } else if (strcmp(type, "NFC") == 0) {
        /* accepted, not applied: text is taken to be NFC already */
    } else {
        QT_CHECK(false, QT_ERR_UNSUPPORTED, "'%s': normalizer '%s' is not supported", what, type);
    }
fail:
    return st;
}

static qt_status json_pretok_one(const cJSON *p, const char *what, json_shape *sh, bool in_seq,
                                 char *errmsg)
{
    qt_status st = QT_OK;
    const char *type = json_type_name(p);
    QT_CHECK(type, QT_ERR_FORMAT, "'%s': pre_tokenizer without a type", what);
    if (strcmp(type, "Metaspace") == 0) {
        QT_CHECK(json_is_str(cJSON_GetObjectItemCaseSensitive(p, "replacement"), METASPACE),
                 QT_ERR_UNSUPPORTED, "'%s': pre_tokenizer Metaspace replacement other than \"\\u2581\"",
                 what);
        sh->metaspace = true;
        const cJSON *split = cJSON_GetObjectItemCaseSensitive(p, "split");
        sh->meta_split = !split || cJSON_IsTrue(split);
        const cJSON *scheme = cJSON_GetObjectItemCaseSensitive(p, "prepend_scheme");
        const cJSON *aps = cJSON_GetObjectItemCaseSensitive(p, "add_prefix_space");
        if (cJSON_IsString(scheme)) {
            const char *s = scheme->valuestring;
            QT_CHECK(!strcmp(s, "always") || !strcmp(s, "first") || !strcmp(s, "never"),
                     QT_ERR_UNSUPPORTED, "'%s': Metaspace prepend_scheme '%s' is not supported",
                     what, s);
            sh->meta_prefix = strcmp(s, "never") != 0;
            sh->meta_first = strcmp(s, "first") == 0;
        } else {
            sh->meta_prefix = !aps || cJSON_IsTrue(aps);
        }
    } else if (strcmp(type, "ByteLevel") == 0) {
        QT_CHECK(json_falsy(cJSON_GetObjectItemCaseSensitive(p, "add_prefix_space")),
                 QT_ERR_UNSUPPORTED, "'%s': pre_tokenizer ByteLevel with add_prefix_space is not supported",
                 what);
        const cJSON *ur = cJSON_GetObjectItemCaseSensitive(p, "use_regex");
        bool use_regex = !ur || cJSON_IsTrue(ur);
        sh->bytelevel = true;
        if (use_regex) {
            QT_CHECK(sh->pretok == QT_PRETOK_NONE, QT_ERR_UNSUPPORTED,
                     "'%s': pre_tokenizer ByteLevel regex after a Split is not supported", what);
            sh->pretok = QT_PRETOK_GPT2;
        }
    } else if (strcmp(type, "Split") == 0 && in_seq) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
        const cJSON *re = cJSON_IsObject(pat) ? cJSON_GetObjectItemCaseSensitive(pat, "Regex") : NULL;
        QT_CHECK(cJSON_IsString(re), QT_ERR_UNSUPPORTED,
                 "'%s': pre_tokenizer Split without a Regex pattern is not supported", what);
        QT_CHECK(json_is_str(cJSON_GetObjectItemCaseSensitive(p, "behavior"), "Isolated") &&
                     json_falsy(cJSON_GetObjectItemCaseSensitive(p, "invert")),
                 QT_ERR_UNSUPPORTED, "'%s': pre_tokenizer Split other than Isolated is not supported",
                 what);
        QT_CHECK(sh->pretok == QT_PRETOK_NONE, QT_ERR_UNSUPPORTED,
                 "'%s': more than one pre_tokenizer Split", what);
        if (strcmp(re->valuestring, GPT2_PATTERN) == 0) sh->pretok = QT_PRETOK_GPT2;
        else if (strcmp(re->valuestring, LLAMA3_PATTERN) == 0) sh->pretok = QT_PRETOK_LLAMA3;
        else if (strcmp(re->valuestring, QWEN2_PATTERN) == 0) sh->pretok = QT_PRETOK_QWEN2;
        else
            QT_CHECK(false, QT_ERR_UNSUPPORTED,
                     "'%s': pre_tokenizer Split pattern is not one of GPT-2, Llama 3, Qwen2", what);
    } else {
        QT_CHECK(false, QT_ERR_UNSUPPORTED, "'%s': pre_tokenizer '%s' is not supported", what, type);
    }
fail:
    return st;
}

static qt_status json_shape_read(const cJSON *root, const char *what, json_shape *sh, char *errmsg)
{
    qt_status st = QT_OK;
    memset(sh, 0, sizeof *sh);
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (norm && !cJSON_IsNull(norm)) {
        QT_CHECK(cJSON_IsObject(norm), QT_ERR_FORMAT, "'%s': normalizer is not an object", what);
        const char *type = json_type_name(norm);
        if (type && strcmp(type, "Sequence") == 0) {
            const cJSON *list = cJSON_GetObjectItemCaseSensitive(norm, "normalizers");
            QT_CHECK(cJSON_IsArray(list), QT_ERR_FORMAT, "'%s': normalizer Sequence without a list",
                     what);
            for (const cJSON *n = list->child; n; n = n->next) {
                QT_CHECK(cJSON_IsObject(n), QT_ERR_FORMAT, "'%s': normalizer is not an object", what);
                QT_TRY(json_normalizer_one(n, what, sh, errmsg));
            }
        } else {
            QT_TRY(json_normalizer_one(norm, what, sh, errmsg));
        }
    }
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (pre && !cJSON_IsNull(pre)) {
        QT_CHECK(cJSON_IsObject(pre), QT_ERR_FORMAT, "'%s': pre_tokenizer is not an object", what);
        const char *type = json_type_name(pre);
        if (type && strcmp(type, "Sequence") == 0) {
            const cJSON *list = cJSON_GetObjectItemCaseSensitive(pre, "pretokenizers");
            QT_CHECK(cJSON_IsArray(list), QT_ERR_FORMAT,
                     "'%s': pre_tokenizer Sequence without a list", what);
            for (const cJSON *p = list->child; p; p = p->next) {
                QT_CHECK(cJSON_IsObject(p), QT_ERR_FORMAT, "'%s': pre_tokenizer is not an object",
                         what);
                QT_TRY(json_pretok_one(p, what, sh, true, errmsg));
            }
        } else {
            QT_TRY(json_pretok_one(pre, what, sh, false, errmsg));
        }
    }
    if (sh->bytelevel) {
        QT_CHECK(!sh->prepend && !sh->replace && !sh->metaspace, QT_ERR_UNSUPPORTED,
                 "'%s': ByteLevel mixed with a \"\\u2581\" normalizer or Metaspace", what);
        QT_CHECK(sh->pretok != QT_PRETOK_NONE, QT_ERR_UNSUPPORTED,
                 "'%s': ByteLevel without a split pattern is not supported", what);
    } else {
        QT_CHECK(sh->pretok == QT_PRETOK_NONE, QT_ERR_UNSUPPORTED,
                 "'%s': pre_tokenizer Split without ByteLevel is not supported", what);
        QT_CHECK(sh->replace != sh->metaspace, QT_ERR_UNSUPPORTED,
                 "'%s': needs exactly one of a Replace(\" \" -> \"\\u2581\") normalizer, a Metaspace "
                 "or a ByteLevel pre_tokenizer",
                 what);
        QT_CHECK(!(sh->metaspace && sh->prepend), QT_ERR_UNSUPPORTED,
                 "'%s': Prepend normalizer together with Metaspace is not supported", what);
    }
fail:
    return st;
}

/* Splits a merge entry into its two halves. */
static bool merge_parts(const cJSON *m, const char **a, size_t *na, const char **b, size_t *nb)
{
    if (cJSON_IsString(m)) {
        const char *s = m->valuestring;
        const char *sp = strchr(s, ' ');
        if (!sp || sp == s || sp[1] == '\0' || strchr(sp + 1, ' ')) return false;
        *a = s, *na = (size_t)(sp - s), *b = sp + 1, *nb = strlen(sp + 1);
        return true;
    }
    if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) &&
        cJSON_IsString(m->child->next)) {
        *a = m->child->valuestring, *na = strlen(*a);
        *b = m->child->next->valuestring, *nb = strlen(*b);
        return *na > 0 && *nb > 0;
    }
    return false;
}

/* The parts of a tokenizer.json that json_load reads. */
typedef struct json_tok {
    const cJSON *root, *model, *vocab, *merges, *added;
    const char *what;
} json_tok;

/* The "model" object: a BPE model without dropout or affixes, with a vocab
 * object and (maybe) a merges array. */
static qt_status json_model_check(json_tok *j, char *errmsg)
{
    qt_status st = QT_OK;
    const char *what = j->what;
    QT_CHECK(cJSON_IsObject(j->root), QT_ERR_FORMAT, "'%s': not a JSON object", what);
    j->model = cJSON_GetObjectItemCaseSensitive(j->root, "model");
    QT_CHECK(cJSON_IsObject(j->model), QT_ERR_FORMAT, "'%s': no \"model\" object", what);
    const char *mtype = json_type_name(j->model);
    j->vocab = cJSON_GetObjectItemCaseSensitive(j->model, "vocab");
    j->merges = cJSON_GetObjectItemCaseSensitive(j->model, "merges");
    if (!mtype && cJSON_IsObject(j->vocab) && cJSON_IsArray(j->merges)) mtype = "BPE";
    QT_CHECK(mtype, QT_ERR_FORMAT, "'%s': model without a type", what);
    QT_CHECK(strcmp(mtype, "BPE") == 0, QT_ERR_UNSUPPORTED,
             "'%s': model type '%s' is not supported (only BPE)", what, mtype);
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(j->model, "dropout");
    QT_CHECK(!dropout || cJSON_IsNull(dropout) || (cJSON_IsNumber(dropout) && dropout->valuedouble == 0),
             QT_ERR_UNSUPPORTED, "'%s': BPE dropout is not supported", what);
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (size_t i = 0; i < 2; i++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(j->model, affixes[i]);
        QT_CHECK(!a || cJSON_IsNull(a) || json_is_str(a, ""), QT_ERR_UNSUPPORTED,
                 "'%s': BPE %s is not supported", what, affixes[i]);
    }
    QT_CHECK(cJSON_IsObject(j->vocab), QT_ERR_FORMAT, "'%s': model.vocab is not an object", what);
    QT_CHECK(!j->merges || cJSON_IsArray(j->merges), QT_ERR_FORMAT,
             "'%s': model.merges is not an array", what);
    j->added = cJSON_GetObjectItemCaseSensitive(j->root, "added_tokens");
    QT_CHECK(!j->added || cJSON_IsNull(j->added) || cJSON_IsArray(j->added), QT_ERR_FORMAT,
             "'%s': added_tokens is not an array", what);
fail:
    return st;
}

/* Sizes before any allocation: the highest id (vocab and added tokens) and
 * the bytes of all token texts, each entry checked against the limits. */
static qt_status json_sizes(const json_tok *j, int64_t *max_id, size_t *text_bytes, char *errmsg)
{
    qt_status st = QT_OK;
    const char *what = j->what;
    size_t n_entries = 0;
    *max_id = -1;
    *text_bytes = 0;
    for (const cJSON *e = j->vocab->child; e; e = e->next) {
        int64_t id;
        QT_CHECK(++n_entries <= QT_VOCAB_MAX_TOKENS, QT_ERR_UNSUPPORTED,
                 "'%s': more than %u tokens", what, QT_VOCAB_MAX_TOKENS);
        QT_CHECK(json_int(e, 0, QT_VOCAB_MAX_TOKENS - 1, &id), QT_ERR_FORMAT,
                 "'%s': vocab entry '%.64s' has no valid id (an integer below %u)", what, e->string,
                 QT_VOCAB_MAX_TOKENS);
        size_t len = strlen(e->string);
        QT_CHECK(len <= QT_VOCAB_MAX_TOKEN_BYTES, QT_ERR_FORMAT,
                 "'%s': vocab entry of %zu bytes (limit %u)", what, len, QT_VOCAB_MAX_TOKEN_BYTES);
        *text_bytes += len + 1;
        if (id > *max_id) *max_id = id;
    }
    for (const cJSON *a = cJSON_IsArray(j->added) ? j->added->child : NULL; a; a = a->next) {
        int64_t id;
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(a, "content");
        QT_CHECK(cJSON_IsObject(a) &&
                     json_int(cJSON_GetObjectItemCaseSensitive(a, "id"), 0,
                              QT_VOCAB_MAX_TOKENS - 1, &id) &&
                     cJSON_IsString(content) && content->valuestring[0] != '\0',
                 QT_ERR_FORMAT, "'%s': an added_tokens entry lacks a valid id or content", what);
        size_t len = strlen(content->valuestring);
        QT_CHECK(len <= QT_VOCAB_MAX_TOKEN_BYTES, QT_ERR_FORMAT,
                 "'%s': added token of %zu bytes (limit %u)", what, len, QT_VOCAB_MAX_TOKEN_BYTES);
        *text_bytes += len + 1;
        if (id > *max_id) *max_id = id;
    }
    QT_CHECK(*max_id >= 0, QT_ERR_FORMAT, "'%s': empty vocabulary", what);
fail:
    return st;
}

/* Copies a token's text into the arena at *pos. */
static void token_set_text(qt_vocab *v, qt_vocab_token *t, const char *src, size_t *pos)
{
    size_t len = strlen(src);
    memcpy(v->arena + *pos, src, len + 1);
    t->text = v->arena + *pos;
    t->len = (uint32_t)len;
    *pos += len + 1;
}

/* Every token's text (an added token's content replaces the vocab entry
 * of its id) and type (unused, normal, added: control or user-defined,
 * unknown, byte). */
static qt_status json_tokens(const json_tok *j, qt_vocab *v, const char **added_text,
                             const bool *added_special, size_t text_bytes, char *errmsg)
{
    qt_status st = QT_OK;
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(j->model, "unk_token");
    const char *unk_name = cJSON_IsString(unk) ? unk->valuestring : NULL;
    size_t pos = 0;
    for (const cJSON *e = j->vocab->child; e; e = e->next) {
        int64_t id = (int64_t)e->valuedouble;
        qt_vocab_token *t = &v->tokens[id];
        QT_CHECK(!t->text, QT_ERR_FORMAT, "'%s': vocab id %lld is given twice", j->what,
                 (long long)id);
        token_set_text(v, t, added_text[id] ? added_text[id] : e->string, &pos);
    }
    for (size_t id = 0; id < v->n_tokens; id++) {
        qt_vocab_token *t = &v->tokens[id];
        if (!t->text && added_text[id]) token_set_text(v, t, added_text[id], &pos);
        if (!t->text) {
            t->text = v->arena + text_bytes; /* "" */
            t->type = QT_TOKEN_UNUSED;
            continue;
        }
        if (added_text[id]) {
            t->added = true;
            t->type = added_special[id] ? QT_TOKEN_CONTROL : QT_TOKEN_USER_DEFINED;
        } else {
            t->type = QT_TOKEN_NORMAL;
        }
        if (unk_name && strcmp(t->text, unk_name) == 0) {
            t->type = QT_TOKEN_UNKNOWN;
            v->unk_id = (int32_t)id;
        } else if (v->byte_fallback && is_byte_piece(t->text, t->len)) {
            t->type = QT_TOKEN_BYTE;
        }
    }
    QT_CHECK(!unk_name || v->unk_id >= 0, QT_ERR_FORMAT,
             "'%s': unk_token '%.64s' is not in the vocab", j->what, unk_name);
fail:
    return st;
}

/* The merges: each a pair of tokens whose concatenation is a token too. */
static qt_status json_merges(const json_tok *j, qt_vocab *v, char *errmsg)
{
    qt_status st = QT_OK;
    const char *what = j->what;
    str_map map = {0};
    char *cat = NULL;
    size_t n_merges = j->merges ? (size_t)cJSON_GetArraySize(j->merges) : 0;
    QT_CHECK(n_merges <= QT_VOCAB_MAX_MERGES, QT_ERR_UNSUPPORTED, "'%s': more than %u merges", what,
             QT_VOCAB_MAX_MERGES);
    if (!n_merges) return QT_OK;
    v->merges = qt_malloc(n_merges * sizeof *v->merges);
    cat = qt_malloc(2 * QT_VOCAB_MAX_TOKEN_BYTES + 1);
    QT_CHECK(v->merges && cat && str_map_build(&map, v), QT_ERR_NOMEM,
             "'%s': out of memory for %zu merges", what, n_merges);
    size_t r = 0;
    for (const cJSON *m = j->merges->child; m; m = m->next, r++) {
        const char *a, *b;
        size_t na, nb;
        QT_CHECK(merge_parts(m, &a, &na, &b, &nb), QT_ERR_FORMAT,
                 "'%s': merge %zu is neither \"a b\" nor [\"a\", \"b\"]", what, r);
        QT_CHECK(na <= QT_VOCAB_MAX_TOKEN_BYTES && nb <= QT_VOCAB_MAX_TOKEN_BYTES, QT_ERR_FORMAT,
                 "'%s': merge %zu is too long", what, r);
        int32_t ia = str_map_get(&map, v, a, na), ib = str_map_get(&map, v, b, nb);
        memcpy(cat, a, na);
        memcpy(cat + na, b, nb);
        int32_t ic = str_map_get(&map, v, cat, na + nb);
        QT_CHECK(ia >= 0 && ib >= 0 && ic >= 0, QT_ERR_FORMAT,
                 "'%s': merge %zu ('%.*s' '%.*s') uses a token that is not in the vocab", what, r,
                 (int)(na < 40 ? na : 40), a, (int)(nb < 40 ? nb : 40), b);
        v->merges[r].left = ia;
        v->merges[r].right = ib;
    }
    v->n_merges = n_merges;
fail:
    qt_free(map.slots);
    qt_free(cat);
    return st;
}

/* Byte-level or SentencePiece-style, and its pre-tokenization, from the
 * normalizer / pre-tokenizer shape. */
static void json_kind(qt_vocab *v, const json_shape *sh)
{
    if (sh->bytelevel) {
        v->kind = QT_VOCAB_BPE_BYTE;
        v->pretok = sh->pretok;
        return;
    }
    v->kind = QT_VOCAB_BPE_SPM;
    if (sh->metaspace) {
        v->add_dummy_prefix = sh->meta_prefix;
        v->prefix_first_only = sh->meta_first;
        v->pretok = sh->meta_split ? QT_PRETOK_METASPACE : QT_PRETOK_NONE;
    } else {
        v->add_dummy_prefix = sh->prepend;
        v->pretok = QT_PRETOK_NONE;
    }
}

/* BOS from a TemplateProcessing post-processor that starts with a special
 * token, else the usual names; EOS by the usual names. */
static void json_bos_eos(const json_tok *j, qt_vocab *v)
{
    const cJSON *post = cJSON_GetObjectItemCaseSensitive(j->root, "post_processor");
    if (cJSON_IsObject(post) && json_is_str(cJSON_GetObjectItemCaseSensitive(post, "type"),
                                            "TemplateProcessing")) {
        const cJSON *single = cJSON_GetObjectItemCaseSensitive(post, "single");
        const cJSON *first = cJSON_IsArray(single) ? single->child : NULL;
        const cJSON *sp = first ? cJSON_GetObjectItemCaseSensitive(first, "SpecialToken") : NULL;
        const cJSON *name = sp ? cJSON_GetObjectItemCaseSensitive(sp, "id") : NULL;
        if (cJSON_IsString(name)) {
            int32_t id = find_token(v, name->valuestring);
            if (id >= 0) {
                v->add_bos = true;
                v->bos_id = id;
            }
        }
    }
    static const char *const bos_names[] = {"<s>", "<|begin_of_text|>", "<|endoftext|>"};
    static const char *const eos_names[] = {"</s>", "<|end_of_text|>", "<|endoftext|>"};
    for (size_t i = 0; i < 3 && v->bos_id < 0; i++) v->bos_id = find_token(v, bos_names[i]);
    for (size_t i = 0; i < 3 && v->eos_id < 0; i++) v->eos_id = find_token(v, eos_names[i]);
}

static qt_status json_load(const cJSON *root, const char *what, const char *config_path,
                           qt_vocab **out, char *errmsg)
{
    qt_status st = QT_OK;
    qt_vocab *v = NULL;
    const char **added_text = NULL; /* (n_tokens) content of an added token or NULL */
    bool *added_special = NULL;
    json_tok j = {.root = root, .what = what};
    /* what the file holds, checked and sized before allocating */
    QT_TRY(json_model_check(&j, errmsg));
    json_shape sh;
    QT_TRY(json_shape_read(root, what, &sh, errmsg));
    int64_t max_id;
    size_t text_bytes;
    QT_TRY(json_sizes(&j, &max_id, &text_bytes, errmsg));
    /* the vocabulary and the added tokens by id */
    v = vocab_new();
    QT_CHECK(v, QT_ERR_NOMEM, "'%s': out of memory", what);
    v->n_tokens = (size_t)max_id + 1;
    v->tokens = qt_calloc(v->n_tokens, sizeof *v->tokens);
    v->arena = qt_malloc(text_bytes + 1);
    added_text = qt_calloc(v->n_tokens, sizeof *added_text);
    added_special = qt_calloc(v->n_tokens, sizeof *added_special);
    QT_CHECK(v->tokens && v->arena && added_text && added_special, QT_ERR_NOMEM,
             "'%s': out of memory for %zu tokens", what, v->n_tokens);
    v->arena[text_bytes] = '\0';
    for (const cJSON *a = cJSON_IsArray(j.added) ? j.added->child : NULL; a; a = a->next) {
        int64_t id = 0;
        json_int(cJSON_GetObjectItemCaseSensitive(a, "id"), 0, QT_VOCAB_MAX_TOKENS - 1, &id);
        QT_CHECK(!added_text[id], QT_ERR_FORMAT, "'%s': added token id %lld appears twice", what,
                 (long long)id);
        added_text[id] = cJSON_GetObjectItemCaseSensitive(a, "content")->valuestring;
        added_special[id] = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "special"));
    }
    v->byte_fallback = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j.model, "byte_fallback"));
    v->fuse_unk = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j.model, "fuse_unk"));
    v->ignore_merges = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j.model, "ignore_merges"));
    QT_TRY(json_tokens(&j, v, added_text, added_special, text_bytes, errmsg));
    /* merges, kind, special tokens, then config.json's overrides */
    QT_TRY(json_merges(&j, v, errmsg));
    json_kind(v, &sh);
    json_bos_eos(&j, v);
    QT_TRY(apply_config(v, config_path, errmsg));
    *out = v;
    v = NULL;
fail:
    qt_free((void *)added_text);
    qt_free(added_special);
    qt_vocab_free(v);
    return st;
}

qt_status qt_vocab_load_hf_json_mem(const char *buf, size_t n, const char *what,
                                    const char *config_path, qt_vocab **out, char *errmsg)
{
    qt_status st = QT_OK;
    cJSON *root = NULL;
    *out = NULL;
    QT_CHECK(n <= QT_VOCAB_MAX_JSON_BYTES, QT_ERR_FORMAT, "'%s': %zu bytes is over the %u-byte cap",
             what, n, QT_VOCAB_MAX_JSON_BYTES);
    QT_TRY(qt_json_parse(buf, n, what, &root, NULL, errmsg));
    QT_TRY(json_load(root, what, config_path, out, errmsg));
fail:
    cJSON_Delete(root);
    return st;
}

qt_status qt_vocab_load_hf_json(const char *path, qt_vocab **out, char *errmsg)
{
    qt_status st = QT_OK;
    cJSON *root = NULL;
    char cfg[4096];
    *out = NULL;
    QT_TRY(qt_json_parse_file(path, QT_VOCAB_MAX_JSON_BYTES, &root, errmsg));
    QT_TRY(json_load(root, path, config_path_for(path, cfg, sizeof cfg) ? cfg : NULL, out, errmsg));
fail:
    cJSON_Delete(root);
    return st;
}

/* ---- SentencePiece tokenizer.model (protobuf) --------------------------- */

typedef struct pb {
    const uint8_t *p, *end;
} pb;

static bool pb_varint(pb *r, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (r->p >= r->end) return false;
        uint8_t c = *r->p++;
        if (shift == 63 && c > 1) return false; /* more than 64 bits */
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *out = v;
            return true;
        }
    }
    return false;
}

/* Reads a field key and, for length-delimited fields, the payload bounds. */
typedef struct pb_field {
    uint32_t num, wire;
    uint64_t value;       /* varint value or fixed bits */
    const uint8_t *data;  /* wire type 2: payload */
    size_t len;
} pb_field;

/* Returns 1 on a field, 0 at the end, -1 on malformed data. */
static int pb_next(pb *r, pb_field *f)
{
    if (r->p == r->end) return 0;
    uint64_t key;
    if (!pb_varint(r, &key)) return -1;
    f->num = (uint32_t)(key >> 3);
    f->wire = (uint32_t)(key & 7);
    if (key >> 3 == 0 || key >> 3 > 0x1fffffff) return -1;
    f->data = NULL;
    f->len = 0;
    f->value = 0;
    switch (f->wire) {
    case 0:
        return pb_varint(r, &f->value) ? 1 : -1;
    case 1:
        if (r->end - r->p < 8) return -1;
        f->value = qt_load_le64(r->p);
        r->p += 8;
        return 1;
    case 5:
        if (r->end - r->p < 4) return -1;
        f->value = qt_load_le32(r->p);
        r->p += 4;
        return 1;
    case 2: {
        uint64_t len;
        if (!pb_varint(r, &len) || len > (uint64_t)(r->end - r->p)) return -1;
        f->data = r->p;
        f->len = (size_t)len;
        r->p += len;
        return 1;
    }
    default: /* groups (3, 4) and 6, 7 */
        return -1;
    }
}

typedef struct spm_header {
    uint64_t model_type;
    bool byte_fallback, ws_suffix;
    int64_t unk_id, bos_id, eos_id;
    bool add_dummy_prefix, remove_extra_ws, escape_ws;
    size_t charsmap_len;
} spm_header;

static qt_status spm_trainer(const uint8_t *d, size_t n, const char *what, spm_header *h,
                             char *errmsg)
{
    qt_status st = QT_OK;
    pb r = {d, d + n};
    pb_field f;
    int k;
    while ((k = pb_next(&r, &f)) > 0) {
        bool known = f.num == 3 || f.num == 24 || f.num == 35 || (f.num >= 40 && f.num <= 42);
        if (!known) continue;
        QT_CHECK(f.wire == 0, QT_ERR_FORMAT, "'%s': trainer_spec field %u has wire type %u", what,
                 f.num, f.wire);
        switch (f.num) {
        case 3: h->model_type = f.value; break;
        case 24: h->ws_suffix = f.value != 0; break;
        case 35: h->byte_fallback = f.value != 0; break;
        case 40: h->unk_id = (int64_t)(int32_t)f.value; break;
        case 41: h->bos_id = (int64_t)(int32_t)f.value; break;
        case 42: h->eos_id = (int64_t)(int32_t)f.value; break;
        default: break;
        }
    }
    QT_CHECK(k == 0, QT_ERR_FORMAT, "'%s': trainer_spec is truncated or malformed", what);
fail:
    return st;
}

static qt_status spm_normalizer(const uint8_t *d, size_t n, const char *what, spm_header *h,
                                char *errmsg)
{
    qt_status st = QT_OK;
    pb r = {d, d + n};
    pb_field f;
    int k;
    while ((k = pb_next(&r, &f)) > 0) {
        if (f.num == 2) {
            QT_CHECK(f.wire == 2, QT_ERR_FORMAT, "'%s': normalizer_spec field 2 has wire type %u",
                     what, f.wire);
            h->charsmap_len = f.len;
        } else if (f.num >= 3 && f.num <= 5) {
            QT_CHECK(f.wire == 0, QT_ERR_FORMAT, "'%s': normalizer_spec field %u has wire type %u",
                     what, f.num, f.wire);
            if (f.num == 3) h->add_dummy_prefix = f.value != 0;
            if (f.num == 4) h->remove_extra_ws = f.value != 0;
            if (f.num == 5) h->escape_ws = f.value != 0;
        }
    }
    QT_CHECK(k == 0, QT_ERR_FORMAT, "'%s': normalizer_spec is truncated or malformed", what);
fail:
    return st;
}

/* One SentencePiece message. */
static qt_status spm_piece(const uint8_t *d, size_t n, const char *what, size_t index,
                           const uint8_t **text, size_t *len, float *score, uint32_t *type,
                           char *errmsg)
{
    qt_status st = QT_OK;
    pb r = {d, d + n};
    pb_field f;
    int k;
    *text = NULL, *len = 0, *score = 0.0f, *type = QT_TOKEN_NORMAL;
    while ((k = pb_next(&r, &f)) > 0) {
        if (f.num == 1) {
            QT_CHECK(f.wire == 2, QT_ERR_FORMAT, "'%s': piece %zu: field 1 has wire type %u", what,
                     index, f.wire);
            *text = f.data, *len = f.len;
        } else if (f.num == 2) {
            QT_CHECK(f.wire == 5, QT_ERR_FORMAT, "'%s': piece %zu: score has wire type %u", what,
                     index, f.wire);
            *score = qt_f32_from_bits((uint32_t)f.value);
        } else if (f.num == 3) {
            QT_CHECK(f.wire == 0, QT_ERR_FORMAT, "'%s': piece %zu: type has wire type %u", what,
                     index, f.wire);
            QT_CHECK(f.value >= 1 && f.value <= 6, QT_ERR_FORMAT, "'%s': piece %zu: type %llu is not 1..6",
                     what, index, (unsigned long long)f.value);
            *type = (uint32_t)f.value;
        }
    }
    QT_CHECK(k == 0, QT_ERR_FORMAT, "'%s': piece %zu is truncated or malformed", what, index);
    QT_CHECK(*text && *len > 0, QT_ERR_FORMAT, "'%s': piece %zu has no text", what, index);
    QT_CHECK(*len <= QT_VOCAB_MAX_TOKEN_BYTES, QT_ERR_FORMAT, "'%s': piece %zu is %zu bytes (limit %u)",
             what, index, *len, QT_VOCAB_MAX_TOKEN_BYTES);
    QT_CHECK(*score == *score, QT_ERR_NUMERIC, "'%s': piece %zu has a NaN score", what, index);
    QT_CHECK(*type != QT_TOKEN_BYTE || is_byte_piece((const char *)*text, *len), QT_ERR_FORMAT,
             "'%s': byte piece %zu is not <0xXX>", what, index);
fail:
    return st;
}

qt_status qt_vocab_load_spm_mem(const uint8_t *buf, size_t n, const char *what,
                                const char *config_path, qt_vocab **out, char *errmsg)
{
    qt_status st = QT_OK;
    qt_vocab *v = NULL;
    spm_header h = {.model_type = 1, .unk_id = 0, .bos_id = 1, .eos_id = 2,
                    .add_dummy_prefix = true, .remove_extra_ws = true, .escape_ws = true};
    *out = NULL;
    QT_CHECK(n <= QT_VOCAB_MAX_SPM_BYTES, QT_ERR_FORMAT, "'%s': %zu bytes is over the %u-byte cap",
             what, n, QT_VOCAB_MAX_SPM_BYTES);

    /* pass 1: count pieces and text bytes, read the specs */
    size_t n_pieces = 0, text_bytes = 0;
    pb r = {buf, buf + n};
    pb_field f;
    int k;
    while ((k = pb_next(&r, &f)) > 0) {
        if (f.num >= 1 && f.num <= 3)
            QT_CHECK(f.wire == 2, QT_ERR_FORMAT, "'%s': ModelProto field %u has wire type %u", what,
                     f.num, f.wire);
        if (f.num == 1) {
            QT_CHECK(++n_pieces <= QT_VOCAB_MAX_TOKENS, QT_ERR_UNSUPPORTED,
                     "'%s': more than %u pieces", what, QT_VOCAB_MAX_TOKENS);
            text_bytes += f.len + 1; /* the piece text is shorter than its message */
        } else if (f.num == 2) {
            QT_TRY(spm_trainer(f.data, f.len, what, &h, errmsg));
        } else if (f.num == 3) {
            QT_TRY(spm_normalizer(f.data, f.len, what, &h, errmsg));
        }
    }
    QT_CHECK(k == 0, QT_ERR_FORMAT, "'%s': truncated or malformed protobuf (not a tokenizer.model?)",
             what);
    QT_CHECK(n_pieces > 0, QT_ERR_FORMAT, "'%s': no pieces", what);
    QT_CHECK(h.model_type == 2, QT_ERR_UNSUPPORTED,
             "'%s': SentencePiece model_type %llu is not supported (only BPE = 2)", what,
             (unsigned long long)h.model_type);
    QT_CHECK(!h.ws_suffix, QT_ERR_UNSUPPORTED, "'%s': treat_whitespace_as_suffix is not supported",
             what);
    QT_CHECK(h.charsmap_len == 0, QT_ERR_UNSUPPORTED,
             "'%s': normalizer_spec precompiled_charsmap (a normalization) is not supported", what);
    QT_CHECK(!h.remove_extra_ws, QT_ERR_UNSUPPORTED,
             "'%s': normalizer_spec remove_extra_whitespaces is not supported", what);
    QT_CHECK(h.escape_ws, QT_ERR_UNSUPPORTED,
             "'%s': normalizer_spec without escape_whitespaces is not supported", what);

    v = vocab_new();
    QT_CHECK(v, QT_ERR_NOMEM, "'%s': out of memory", what);
    v->tokens = qt_calloc(n_pieces, sizeof *v->tokens);
    v->arena = qt_malloc(text_bytes);
    QT_CHECK(v->tokens && v->arena, QT_ERR_NOMEM, "'%s': out of memory for %zu pieces", what,
             n_pieces);
    v->n_tokens = n_pieces;

    /* pass 2: the pieces */
    size_t pos = 0, i = 0;
    r = (pb){buf, buf + n};
    while (pb_next(&r, &f) > 0) {
        if (f.num != 1) continue;
        const uint8_t *text;
        size_t len;
        float score;
        uint32_t type;
        QT_TRY(spm_piece(f.data, f.len, what, i, &text, &len, &score, &type, errmsg));
        qt_vocab_token *t = &v->tokens[i];
        memcpy(v->arena + pos, text, len);
        v->arena[pos + len] = '\0';
        t->text = v->arena + pos;
        t->len = (uint32_t)len;
        t->score = score;
        t->type = (uint8_t)type;
        t->added = type == QT_TOKEN_USER_DEFINED;
        pos += len + 1;
        i++;
    }

    v->kind = QT_VOCAB_SPM;
    v->pretok = QT_PRETOK_NONE;
    v->add_dummy_prefix = h.add_dummy_prefix;
    v->byte_fallback = h.byte_fallback;
    v->add_bos = true;
    int64_t ids[3] = {h.unk_id, h.bos_id, h.eos_id};
    static const char *const names[3] = {"unk_id", "bos_id", "eos_id"};
    for (int j = 0; j < 3; j++) {
        QT_CHECK(ids[j] >= -1 && ids[j] < (int64_t)n_pieces, QT_ERR_FORMAT,
                 "'%s': trainer_spec %s %lld is outside the %zu pieces", what, names[j],
                 (long long)ids[j], n_pieces);
    }
    v->unk_id = (int32_t)h.unk_id;
    v->bos_id = (int32_t)h.bos_id;
    v->eos_id = (int32_t)h.eos_id;
    if (v->bos_id < 0) v->add_bos = false;
    QT_TRY(apply_config(v, config_path, errmsg));
    *out = v;
    v = NULL;
fail:
    qt_vocab_free(v);
    return st;
}

qt_status qt_vocab_load_spm(const char *path, qt_vocab **out, char *errmsg)
{
    qt_status st = QT_OK;
    FILE *fp = NULL;
    uint8_t *buf = NULL;
    char cfg[4096];
    *out = NULL;
    fp = fopen(path, "rb");
    QT_CHECK(fp, QT_ERR_IO, "'%s': cannot open: %s", path, strerror(errno));
    struct stat sb;
    QT_CHECK(fstat(fileno(fp), &sb) == 0, QT_ERR_IO, "'%s': cannot stat: %s", path, strerror(errno));
    QT_CHECK(S_ISREG(sb.st_mode), QT_ERR_IO, "'%s': not a regular file", path);
    QT_CHECK((uint64_t)sb.st_size <= QT_VOCAB_MAX_SPM_BYTES, QT_ERR_FORMAT,
             "'%s': %lld bytes is over the %u-byte cap", path, (long long)sb.st_size,
             QT_VOCAB_MAX_SPM_BYTES);
    size_t n = (size_t)sb.st_size;
    buf = qt_malloc(n ? n : 1);
    QT_CHECK(buf, QT_ERR_NOMEM, "'%s': out of memory", path);
    QT_CHECK(fread(buf, 1, n, fp) == n, QT_ERR_IO, "'%s': short read", path);
    QT_TRY(qt_vocab_load_spm_mem(buf, n, path, config_path_for(path, cfg, sizeof cfg) ? cfg : NULL,
                                 out, errmsg));
fail:
    if (fp) fclose(fp);
    qt_free(buf);
    return st;
}
