/* model/tokenizer.c: BPE encoding and decoding (SentencePiece, HF BPE, byte-level). */
#include "model/tokenizer.h"

#include <stdlib.h>
#include <string.h>

#define METASPACE "\xe2\x96\x81"
#define UNK_SURFACE " \xe2\x81\x87 "

struct qt_tokenizer {
    qt_vocab_kind kind;
    qt_pretok pretok;
    size_t n_tokens;
    int32_t bos_id, eos_id, unk_id;
    bool add_bos, add_dummy_prefix, prefix_first_only, byte_fallback, fuse_unk, ignore_merges;
    bool nl_splits;     /* no mergeable piece holds '\n': SPM text may be cut around it */
    bool nl_splits_bpe; /* the same for HF BPE (and no whole-word or unk-fusing rule) */

    char *text;                   /* token texts as the vocab spells them */
    uint32_t *text_off, *text_len; /* (n_tokens) */
    uint8_t *type;                /* (n_tokens) qt_token_type */
    float *score;                 /* (n_tokens) */
    char *piece;                  /* decoded bytes of every token */
    uint32_t *piece_off, *piece_len; /* (n_tokens) */

    int32_t *str_slots; /* (str_cap) token id or -1: text -> id */
    size_t str_cap;

    uint64_t *pair_key; /* (pair_cap) left << 32 | right, UINT64_MAX = empty */
    int32_t *pair_rank, *pair_id;
    size_t pair_cap;

    int32_t byte_id[256]; /* <0xXX> token (SPM kinds) or byte-level char token */
    uint16_t b2u[256];    /* GPT-2 byte -> code point */
    int16_t u2b[324];     /* code point -> byte, -1 if none */

    int32_t *added; /* (n_added) ids, sorted by first byte then longer first */
    size_t n_added;
    size_t added_start[257]; /* added[added_start[b] .. added_start[b+1]) start with byte b */
};

/* ---- hashing ------------------------------------------------------------ */

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static uint64_t hash_u64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static int32_t str_get(const qt_tokenizer *t, const char *s, size_t n)
{
    size_t mask = t->str_cap - 1, h = (size_t)hash_bytes(s, n) & mask;
    for (;;) {
        int32_t id = t->str_slots[h];
        if (id < 0) return -1;
        if (t->text_len[id] == n && memcmp(t->text + t->text_off[id], s, n) == 0) return id;
        h = (h + 1) & mask;
    }
}

static bool pair_get(const qt_tokenizer *t, int32_t a, int32_t b, int32_t *rank, int32_t *id)
{
    if (!t->pair_cap) return false;
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t mask = t->pair_cap - 1, h = (size_t)hash_u64(key) & mask;
    for (;;) {
        uint64_t k = t->pair_key[h];
        if (k == UINT64_MAX) return false;
        if (k == key) {
            *rank = t->pair_rank[h];
            *id = t->pair_id[h];
            return true;
        }
        h = (h + 1) & mask;
    }
}

/* ---- byte-level map (GPT-2 bytes_to_unicode) ---------------------------- */

/* Printable bytes map to themselves; the others, in order, to 256, 257, ... */
static void byte_map_init(qt_tokenizer *t)
{
    uint32_t next = 256;
    for (int i = 0; i < 324; i++) t->u2b[i] = -1;
    for (unsigned b = 0; b < 256; b++) {
        bool printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
        uint32_t cp = printable ? b : next++;
        t->b2u[b] = (uint16_t)cp;
        t->u2b[cp] = (int16_t)b;
    }
}

static size_t utf8_put(char *dst, uint32_t cp)
{
    if (cp < 0x80) {
        dst[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        dst[0] = (char)(0xc0 | cp >> 6);
        dst[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        dst[0] = (char)(0xe0 | cp >> 12);
        dst[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        dst[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    dst[0] = (char)(0xf0 | cp >> 18);
    dst[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    dst[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    dst[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Decodes one code point at s[i..n); invalid or truncated sequences decode as
 * one byte with cp = 0xFFFD. Returns the byte length (>= 1). */
static size_t utf8_get(const unsigned char *s, size_t n, size_t i, uint32_t *cp)
{
    unsigned c = s[i];
    size_t len;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if ((c & 0xe0) == 0xc0) len = 2, v = c & 0x1f, min = 0x80;
    else if ((c & 0xf0) == 0xe0) len = 3, v = c & 0x0f, min = 0x800;
    else if ((c & 0xf8) == 0xf0) len = 4, v = c & 0x07, min = 0x10000;
    else goto bad;
    if (n - i < len) goto bad;
    for (size_t k = 1; k < len; k++) {
        if ((s[i + k] & 0xc0) != 0x80) goto bad;
        v = v << 6 | (s[i + k] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) goto bad;
    *cp = v;
    return len;
bad:
    *cp = 0xfffd;
    return 1;
}

/* Length of the UTF-8 character starting with byte c (llama.cpp's rule:
 * by the lead byte alone, clipped to what is left). */
static size_t utf8_len_lead(unsigned char c)
{
    static const uint8_t lens[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lens[c >> 4];
}

/* ---- construction ------------------------------------------------------- */

void qt_tokenizer_free(qt_tokenizer *t)
{
    if (!t) return;
    qt_free(t->text);
    qt_free(t->text_off);
    qt_free(t->text_len);
    qt_free(t->type);
    qt_free(t->score);
    qt_free(t->piece);
    qt_free(t->piece_off);
    qt_free(t->piece_len);
    qt_free(t->str_slots);
    qt_free(t->pair_key);
    qt_free(t->pair_rank);
    qt_free(t->pair_id);
    qt_free(t->added);
    memset(t, 0, sizeof *t);
    qt_free(t);
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c - 'a' + 10;
}

/* Decoded bytes of token id into dst; returns the length. dst holds at least
 * text_len + 8 bytes. */
static size_t make_piece(const qt_tokenizer *t, size_t id, char *dst)
{
    const char *s = t->text + t->text_off[id];
    size_t n = t->text_len[id], o = 0;
    switch (t->type[id]) {
    case QT_TOKEN_CONTROL:
        return 0;
    case QT_TOKEN_UNKNOWN:
        memcpy(dst, UNK_SURFACE, sizeof UNK_SURFACE - 1);
        return sizeof UNK_SURFACE - 1;
    case QT_TOKEN_BYTE:
        if (t->kind != QT_VOCAB_BPE_BYTE && n == 6) {
            dst[0] = (char)(hexval(s[3]) << 4 | hexval(s[4]));
            return 1;
        }
        break;
    case QT_TOKEN_USER_DEFINED:
        memcpy(dst, s, n);
        return n;
    default:
        break;
    }
    if (t->kind == QT_VOCAB_BPE_BYTE) {
        /* inverse byte map; characters outside it are kept as UTF-8 */
        for (size_t i = 0; i < n;) {
            uint32_t cp;
            size_t k = utf8_get((const unsigned char *)s, n, i, &cp);
            int b = cp < 324 ? t->u2b[cp] : -1;
            if (b >= 0) dst[o++] = (char)b;
            else memcpy(dst + o, s + i, k), o += k;
            i += k;
        }
        return o;
    }
    for (size_t i = 0; i < n;) {
        if (n - i >= 3 && memcmp(s + i, METASPACE, 3) == 0) {
            dst[o++] = ' ';
            i += 3;
        } else {
            dst[o++] = s[i++];
        }
    }
    return o;
}

typedef struct added_key {
    unsigned first;
    uint32_t len;
    int32_t id;
} added_key;

/* by first byte, then longer first, then id */
static int cmp_added(const void *pa, const void *pb)
{
    const added_key *a = pa, *b = pb;
    if (a->first != b->first) return a->first < b->first ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

/* The vocabulary's flags and special ids (ids out of range dropped). */
static void tok_settings(qt_tokenizer *t, const qt_vocab *v)
{
    const size_t n = v->n_tokens;
    t->kind = v->kind;
    t->pretok = v->pretok;
    t->n_tokens = n;
    t->bos_id = v->bos_id >= 0 && (size_t)v->bos_id < n ? v->bos_id : -1;
    t->eos_id = v->eos_id >= 0 && (size_t)v->eos_id < n ? v->eos_id : -1;
    t->unk_id = v->unk_id >= 0 && (size_t)v->unk_id < n ? v->unk_id : -1;
    t->add_bos = v->add_bos;
    t->add_dummy_prefix = v->add_dummy_prefix && v->kind != QT_VOCAB_BPE_BYTE;
    t->prefix_first_only = v->prefix_first_only;
    t->byte_fallback = v->byte_fallback;
    t->fuse_unk = v->fuse_unk;
    t->ignore_merges = v->ignore_merges;
    byte_map_init(t);
}

/* Token texts, types and scores in flat arrays, each token's decoded piece,
 * and whether newlines split text (no multi-byte token holds one). */
static qt_status tok_texts(qt_tokenizer *t, const qt_vocab *v)
{
    const size_t n = v->n_tokens;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += v->tokens[i].len;
    t->text = qt_malloc(total + 1);
    t->text_off = qt_malloc(n * sizeof *t->text_off);
    t->text_len = qt_malloc(n * sizeof *t->text_len);
    t->type = qt_malloc(n);
    t->score = qt_malloc(n * sizeof *t->score);
    t->piece_off = qt_malloc(n * sizeof *t->piece_off);
    t->piece_len = qt_malloc(n * sizeof *t->piece_len);
    t->piece = qt_malloc(total + 8 * n + 1);
    if (!(t->text && t->text_off && t->text_len && t->type && t->score && t->piece_off &&
          t->piece_len && t->piece))
        return QT_ERR_NOMEM;
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        const qt_vocab_token *vt = &v->tokens[i];
        if (vt->len) memcpy(t->text + pos, vt->text, vt->len);
        t->text_off[i] = (uint32_t)pos;
        t->text_len[i] = vt->len;
        t->type[i] = vt->type;
        t->score[i] = vt->score;
        if (vt->added) t->n_added++;
        pos += vt->len;
    }
    t->nl_splits = true;
    for (size_t i = 0; i < n && t->nl_splits; i++)
        if ((t->type[i] == QT_TOKEN_NORMAL || t->type[i] == QT_TOKEN_USER_DEFINED) && t->text_len[i] > 1 &&
            memchr(t->text + t->text_off[i], '\n', t->text_len[i]))
            t->nl_splits = false;
    pos = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = make_piece(t, i, t->piece + pos);
        t->piece_off[i] = (uint32_t)pos;
        t->piece_len[i] = (uint32_t)k;
        pos += k;
    }
    return QT_OK;
}

/* text -> id (open addressing); the first id wins for duplicated texts. */
static qt_status tok_text_index(qt_tokenizer *t)
{
    const size_t n = t->n_tokens;
    t->str_cap = 16;
    while (t->str_cap < 2 * n) t->str_cap <<= 1;
    t->str_slots = qt_malloc(t->str_cap * sizeof *t->str_slots);
    if (!t->str_slots) return QT_ERR_NOMEM;
    for (size_t i = 0; i < t->str_cap; i++) t->str_slots[i] = -1;
    for (size_t i = 0; i < n; i++) {
        if (t->text_len[i] == 0) continue;
        const char *s = t->text + t->text_off[i];
        size_t mask = t->str_cap - 1, h = (size_t)hash_bytes(s, t->text_len[i]) & mask;
        while (t->str_slots[h] >= 0) {
            int32_t o = t->str_slots[h];
            if (t->text_len[o] == t->text_len[i] && memcmp(t->text + t->text_off[o], s, t->text_len[i]) == 0)
                break;
            h = (h + 1) & mask;
        }
        if (t->str_slots[h] < 0) t->str_slots[h] = (int32_t)i;
    }
    return QT_OK;
}

/* Merges: (left, right) -> (rank, result); the lowest rank wins. */
static qt_status tok_merges(qt_tokenizer *t, const qt_vocab *v)
{
    qt_status st = QT_OK;
    char *errmsg = NULL; /* QT_CHECK needs one; the status says enough here */
    char *tmp = NULL;
    const size_t n = t->n_tokens;
    if (!v->n_merges || v->kind == QT_VOCAB_SPM) return QT_OK;
    QT_CHECK(v->merges && v->n_merges <= QT_VOCAB_MAX_MERGES, QT_ERR_ARG, "bad merges");
    t->pair_cap = 16;
    while (t->pair_cap < 2 * v->n_merges) t->pair_cap <<= 1;
    t->pair_key = qt_malloc(t->pair_cap * sizeof *t->pair_key);
    t->pair_rank = qt_malloc(t->pair_cap * sizeof *t->pair_rank);
    t->pair_id = qt_malloc(t->pair_cap * sizeof *t->pair_id);
    tmp = qt_malloc(2 * (size_t)QT_VOCAB_MAX_TOKEN_BYTES + 2);
    QT_CHECK(t->pair_key && t->pair_rank && t->pair_id && tmp, QT_ERR_NOMEM, "oom");
    for (size_t i = 0; i < t->pair_cap; i++) t->pair_key[i] = UINT64_MAX;
    for (size_t r = 0; r < v->n_merges; r++) {
        int32_t a = v->merges[r].left, b = v->merges[r].right;
        QT_CHECK(a >= 0 && b >= 0 && (size_t)a < n && (size_t)b < n &&
                     t->text_len[a] <= QT_VOCAB_MAX_TOKEN_BYTES &&
                     t->text_len[b] <= QT_VOCAB_MAX_TOKEN_BYTES,
                 QT_ERR_ARG, "bad merge");
        memcpy(tmp, t->text + t->text_off[a], t->text_len[a]);
        memcpy(tmp + t->text_len[a], t->text + t->text_off[b], t->text_len[b]);
        int32_t c = str_get(t, tmp, (size_t)t->text_len[a] + t->text_len[b]);
        if (c < 0) continue; /* the loader refuses these; a hand-made vocab may have them */
        uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
        size_t mask = t->pair_cap - 1, h = (size_t)hash_u64(key) & mask;
        while (t->pair_key[h] != UINT64_MAX && t->pair_key[h] != key) h = (h + 1) & mask;
        if (t->pair_key[h] == key) continue;
        t->pair_key[h] = key;
        t->pair_rank[h] = (int32_t)r;
        t->pair_id[h] = c;
    }
fail:
    (void)errmsg;
    qt_free(tmp);
    return st;
}

/* The token of each byte: byte-level vocabularies spell every byte as its
 * mapped character; others may have <0xNN> byte tokens. */
static qt_status tok_bytes(qt_tokenizer *t)
{
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    if (t->kind == QT_VOCAB_BPE_BYTE) {
        for (unsigned b = 0; b < 256; b++) {
            char u[4];
            size_t k = utf8_put(u, t->b2u[b]);
            t->byte_id[b] = str_get(t, u, k);
            if (t->byte_id[b] < 0) return QT_ERR_ARG; /* byte-level vocab lacks byte b */
        }
    } else {
        for (size_t i = 0; i < t->n_tokens; i++) {
            if (t->type[i] != QT_TOKEN_BYTE || t->text_len[i] != 6) continue;
            const char *s = t->text + t->text_off[i];
            int b = hexval(s[3]) << 4 | hexval(s[4]);
            if (t->byte_id[b] < 0) t->byte_id[b] = (int32_t)i;
        }
    }
    bool all_bytes = t->byte_fallback;
    for (int b = 0; b < 256; b++) all_bytes = all_bytes && t->byte_id[b] >= 0;
    t->nl_splits_bpe = t->nl_splits && !t->ignore_merges && (!t->fuse_unk || all_bytes);
    return QT_OK;
}

/* Added tokens, matched literally: sorted by first byte, then length. */
static qt_status tok_added(qt_tokenizer *t, const qt_vocab *v)
{
    if (!t->n_added) return QT_OK;
    t->added = qt_malloc(t->n_added * sizeof *t->added);
    added_key *keys = qt_malloc(t->n_added * sizeof *keys);
    if (!t->added || !keys) {
        qt_free(keys);
        return QT_ERR_NOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < t->n_tokens; i++)
        if (v->tokens[i].added && t->text_len[i] > 0)
            keys[k++] = (added_key){(unsigned char)t->text[t->text_off[i]], t->text_len[i], (int32_t)i};
    qsort(keys, k, sizeof *keys, cmp_added);
    for (size_t i = 0; i < k; i++) t->added[i] = keys[i].id;
    t->n_added = k;
    size_t j = 0;
    for (unsigned b = 0; b <= 256; b++) {
        while (j < k && keys[j].first < b) j++;
        t->added_start[b] = j;
    }
    qt_free(keys);
    return QT_OK;
}

qt_status qt_tokenizer_new(const qt_vocab *v, qt_tokenizer **out)
{
    qt_status st = QT_OK;
    qt_tokenizer *t = NULL;
    char *errmsg = NULL; /* QT_CHECK needs one; the status says enough here */
    if (out) *out = NULL;
    QT_CHECK(v && out && v->n_tokens > 0 && v->n_tokens <= QT_VOCAB_MAX_TOKENS && v->tokens &&
                 (unsigned)v->kind < QT_VOCAB_KIND_COUNT,
             QT_ERR_ARG, "bad vocab");
    t = qt_calloc(1, sizeof *t);
    QT_CHECK(t, QT_ERR_NOMEM, "oom");
    /* settings, texts and their index, then merges, bytes and added tokens */
    tok_settings(t, v);
    QT_TRY(tok_texts(t, v));
    QT_TRY(tok_text_index(t));
    QT_TRY(tok_merges(t, v));
    QT_TRY(tok_bytes(t));
    QT_TRY(tok_added(t, v));
    *out = t;
    t = NULL;
fail:
    (void)errmsg;
    qt_tokenizer_free(t);
    return st;
}

size_t qt_tokenizer_n_tokens(const qt_tokenizer *t) { return t ? t->n_tokens : 0; }
int32_t qt_tokenizer_bos(const qt_tokenizer *t) { return t ? t->bos_id : -1; }
int32_t qt_tokenizer_eos(const qt_tokenizer *t) { return t ? t->eos_id : -1; }
bool qt_tokenizer_add_bos(const qt_tokenizer *t) { return t && t->add_bos; }

/* ---- encode scratch ------------------------------------------------------ */

typedef struct sym {
    int32_t prev, next; /* -1 at the ends */
    uint32_t start, len; /* bytes in the word buffer; len 0 = merged away */
    int32_t id;          /* token id of the span, -1 if none */
} sym;

typedef struct cand {
    double prio;         /* higher first: a score, or -rank */
    int32_t left, right; /* symbol indices */
    uint32_t llen, rlen; /* lengths when pushed (stale check) */
    int32_t id;          /* the merged token */
} cand;

typedef struct scratch {
    int32_t *out; /* the ids produced */
    size_t n_out, cap_out;
    sym *syms;
    size_t cap_syms;
    cand *heap;
    size_t n_heap, cap_heap;
    char *buf; /* normalized text / mapped word */
    size_t cap_buf;
    uint32_t *cps; /* code points of a segment (byte-level) */
    uint32_t *cpo; /* their byte offsets, one more than cps */
    size_t cap_cps, cap_cpo;
} scratch;

static bool grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 64;
    while (c < need) {
        if (c > SIZE_MAX / 2 / elem) return false;
        c *= 2;
    }
    void *q = qt_realloc(*p, c * elem);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

static bool push_id(scratch *s, int32_t id)
{
    if (s->n_out == s->cap_out && !grow((void **)&s->out, &s->cap_out, s->n_out + 1, sizeof *s->out))
        return false;
    s->out[s->n_out++] = id;
    return true;
}

static bool cand_before(const cand *a, const cand *b)
{
    return a->prio > b->prio || (a->prio == b->prio && a->left < b->left);
}

static void heap_push(scratch *s, cand c)
{
    size_t i = s->n_heap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_before(&c, &s->heap[p])) break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = c;
}

static cand heap_pop(scratch *s)
{
    cand top = s->heap[0], last = s->heap[--s->n_heap];
    size_t i = 0, n = s->n_heap;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const cand *best = &last;
        if (l < n && cand_before(&s->heap[l], best)) m = l, best = &s->heap[l];
        if (r < n && cand_before(&s->heap[r], best)) m = r;
        if (m == i) break;
        s->heap[i] = s->heap[m];
        i = m;
    }
    if (n) s->heap[i] = last;
    return top;
}

/* Candidate for merging symbols l and r (adjacent). by_score: SentencePiece
 * (the joined text must be a normal / user-defined piece; priority = its
 * score); otherwise HF BPE (the id pair must be a merge; priority = -rank). */
static void try_pair(const qt_tokenizer *t, scratch *s, const char *w, int32_t l, int32_t r,
                     bool by_score)
{
    if (l < 0 || r < 0) return;
    const sym *a = &s->syms[l], *b = &s->syms[r];
    cand c = {0, l, r, a->len, b->len, -1};
    if (by_score) {
        int32_t id = str_get(t, w + a->start, (size_t)a->len + b->len);
        if (id < 0 || (t->type[id] != QT_TOKEN_NORMAL && t->type[id] != QT_TOKEN_USER_DEFINED)) return;
        c.prio = t->score[id];
        c.id = id;
    } else {
        int32_t rank, id;
        if (a->id < 0 || b->id < 0 || !pair_get(t, a->id, b->id, &rank, &id)) return;
        c.prio = -(double)rank;
        c.id = id;
    }
    heap_push(s, c);
}

/* Merges the n_syms symbols already in s->syms (a list in index order). */
static void merge_all(const qt_tokenizer *t, scratch *s, const char *w, size_t n_syms, bool by_score)
{
    s->n_heap = 0;
    for (size_t i = 1; i < n_syms; i++) try_pair(t, s, w, (int32_t)i - 1, (int32_t)i, by_score);
    while (s->n_heap) {
        cand c = heap_pop(s);
        sym *a = &s->syms[c.left], *b = &s->syms[c.right];
        if (a->len != c.llen || b->len != c.rlen || a->next != c.right) continue;
        a->len += b->len;
        a->id = c.id;
        b->len = 0;
        a->next = b->next;
        if (b->next >= 0) s->syms[b->next].prev = c.left;
        try_pair(t, s, w, a->prev, c.left, by_score);
        try_pair(t, s, w, c.left, a->next, by_score);
    }
}

static bool reserve_syms(scratch *s, size_t n)
{
    return grow((void **)&s->syms, &s->cap_syms, n, sizeof *s->syms) &&
           grow((void **)&s->heap, &s->cap_heap, 3 * n + 1, sizeof *s->heap);
}

static void link_syms(scratch *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        s->syms[i].prev = (int32_t)i - 1;
        s->syms[i].next = i + 1 < n ? (int32_t)i + 1 : -1;
    }
}

/* Byte fallback / unk for bytes w[0..n) of a character no piece covers. */
static qt_status emit_unknown(const qt_tokenizer *t, scratch *s, const char *w, size_t n)
{
    if (t->byte_fallback) {
        bool all = true;
        for (size_t i = 0; i < n; i++) all = all && t->byte_id[(unsigned char)w[i]] >= 0;
        if (all) {
            for (size_t i = 0; i < n; i++)
                if (!push_id(s, t->byte_id[(unsigned char)w[i]])) return QT_ERR_NOMEM;
            return QT_OK;
        }
    }
    if (t->unk_id < 0) return QT_ERR_ARG;
    return push_id(s, t->unk_id) ? QT_OK : QT_ERR_NOMEM;
}

/* SentencePiece (tokenizer.model) over the escaped text w[0..n). */
static qt_status encode_spm(const qt_tokenizer *t, scratch *s, const char *w, size_t n)
{
    if (!reserve_syms(s, n)) return QT_ERR_NOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n; k++) {
        size_t len = utf8_len_lead((unsigned char)w[i]);
        if (len > n - i) len = n - i;
        int32_t id = str_get(t, w + i, len);
        if (id >= 0 && t->type[id] != QT_TOKEN_NORMAL && t->type[id] != QT_TOKEN_USER_DEFINED) id = -1;
        s->syms[k] = (sym){0, 0, (uint32_t)i, (uint32_t)len, id};
        i += len;
    }
    link_syms(s, k);
    merge_all(t, s, w, k, true);
    for (int32_t i = k ? 0 : -1; i >= 0; i = s->syms[i].next) {
        const sym *y = &s->syms[i];
        qt_status st = y->id >= 0 ? (push_id(s, y->id) ? QT_OK : QT_ERR_NOMEM)
                                  : emit_unknown(t, s, w + y->start, y->len);
        if (st != QT_OK) return st;
    }
    return QT_OK;
}

/* Hugging Face BPE over one word w[0..n): characters (or their bytes) merged
 * by rank. byte_level: every byte is one symbol (mapped char). */
static qt_status encode_bpe_word(const qt_tokenizer *t, scratch *s, const char *w, size_t n,
                                 bool byte_level)
{
    if (n == 0) return QT_OK;
    if (t->ignore_merges) {
        int32_t id;
        if (byte_level) {
            if (!grow((void **)&s->buf, &s->cap_buf, 2 * n, 1)) return QT_ERR_NOMEM;
            size_t m = 0;
            for (size_t i = 0; i < n; i++) m += utf8_put(s->buf + m, t->b2u[(unsigned char)w[i]]);
            id = str_get(t, s->buf, m);
        } else {
            id = str_get(t, w, n);
        }
        if (id >= 0) return push_id(s, id) ? QT_OK : QT_ERR_NOMEM;
    }
    if (!reserve_syms(s, n)) return QT_ERR_NOMEM;
    size_t k = 0;
    if (byte_level) {
        for (size_t i = 0; i < n; i++)
            s->syms[k++] = (sym){0, 0, (uint32_t)i, 1, t->byte_id[(unsigned char)w[i]]};
    } else {
        for (size_t i = 0; i < n;) {
            size_t len = utf8_len_lead((unsigned char)w[i]);
            if (len > n - i) len = n - i;
            int32_t id = str_get(t, w + i, len);
            bool bytes_ok = t->byte_fallback;
            for (size_t j = 0; id < 0 && bytes_ok && j < len; j++)
                bytes_ok = t->byte_id[(unsigned char)w[i + j]] >= 0;
            if (id >= 0) {
                s->syms[k++] = (sym){0, 0, (uint32_t)i, (uint32_t)len, id};
            } else if (bytes_ok) {
                for (size_t j = 0; j < len; j++)
                    s->syms[k++] = (sym){0, 0, (uint32_t)(i + j), 1, t->byte_id[(unsigned char)w[i + j]]};
            } else {
                if (t->unk_id < 0) return QT_ERR_ARG;
                if (t->fuse_unk && k > 0 && s->syms[k - 1].id == t->unk_id &&
                    s->syms[k - 1].start + s->syms[k - 1].len == i)
                    s->syms[k - 1].len += (uint32_t)len;
                else
                    s->syms[k++] = (sym){0, 0, (uint32_t)i, (uint32_t)len, t->unk_id};
            }
            i += len;
        }
    }
    link_syms(s, k);
    merge_all(t, s, w, k, false);
    for (int32_t i = k ? 0 : -1; i >= 0; i = s->syms[i].next)
        if (!push_id(s, s->syms[i].id)) return QT_ERR_NOMEM;
    return QT_OK;
}

/* ---- byte-level pre-tokenizers ------------------------------------------- */

static bool is_L(uint32_t c) { return qt_unicode_is_letter(c); }
static bool is_N(uint32_t c) { return qt_unicode_is_number(c); }
static bool is_S(uint32_t c) { return qt_unicode_is_space(c); }
static bool is_other(uint32_t c) { return !is_S(c) && !is_L(c) && !is_N(c); }
static bool is_nl(uint32_t c) { return c == '\r' || c == '\n'; }

/* Contraction at i: 's 't 'm 'd (2) or 're 've 'll (3); 0 if none. */
static size_t contraction(const uint32_t *cp, size_t n, size_t i, bool icase)
{
    if (cp[i] != '\'' || i + 1 >= n) return 0;
    uint32_t a = cp[i + 1], b = i + 2 < n ? cp[i + 2] : 0;
    if (icase) {
        if (a < 0x80) a |= 0x20 * (a >= 'A' && a <= 'Z');
        if (b < 0x80) b |= 0x20 * (b >= 'A' && b <= 'Z');
    }
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

/* Whitespace alternatives \s+(?!\S)|\s+ at i (cp[i] is whitespace). */
static size_t ws_run(const uint32_t *cp, size_t n, size_t i)
{
    size_t k = i;
    while (k < n && is_S(cp[k])) k++;
    if (k == n || k - i < 2) return k;
    return k - 1;
}

/* End of the word that starts at i (exclusive), by the GPT-2 pattern
 * 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static size_t next_gpt2(const uint32_t *cp, size_t n, size_t i)
{
    size_t c = contraction(cp, n, i, false);
    if (c) return i + c;
    size_t j = i + (cp[i] == ' ');
    if (j < n) {
        if (is_L(cp[j])) {
            while (j < n && is_L(cp[j])) j++;
            return j;
        }
        if (is_N(cp[j])) {
            while (j < n && is_N(cp[j])) j++;
            return j;
        }
        if (is_other(cp[j])) {
            while (j < n && is_other(cp[j])) j++;
            return j;
        }
    }
    return ws_run(cp, n, i);
}

/* Llama 3 / Qwen2: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|
 * \p{N}{1,max_digits}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static size_t next_llama3(const uint32_t *cp, size_t n, size_t i, size_t max_digits)
{
    size_t c = contraction(cp, n, i, true);
    if (c) return i + c;
    uint32_t x = cp[i];
    size_t j = i;
    if (!is_nl(x) && !is_L(x) && !is_N(x) && i + 1 < n && is_L(cp[i + 1])) j = i + 1;
    if (is_L(cp[j])) {
        while (j < n && is_L(cp[j])) j++;
        return j;
    }
    if (is_N(x)) {
        while (j < n && j - i < max_digits && is_N(cp[j])) j++;
        return j;
    }
    j = i + (x == ' ');
    if (j < n && is_other(cp[j])) {
        while (j < n && is_other(cp[j])) j++;
        while (j < n && is_nl(cp[j])) j++;
        return j;
    }
    size_t k = i;
    while (k < n && is_S(cp[k])) k++;
    for (size_t p = k; p > i; p--)
        if (is_nl(cp[p - 1])) return p;
    return ws_run(cp, n, i);
}

static qt_status encode_bytelevel(const qt_tokenizer *t, scratch *s, const char *text, size_t n)
{
    if (!grow((void **)&s->cps, &s->cap_cps, n + 1, sizeof *s->cps)) return QT_ERR_NOMEM;
    if (!grow((void **)&s->cpo, &s->cap_cpo, n + 1, sizeof *s->cpo)) return QT_ERR_NOMEM;
    size_t m = 0;
    for (size_t i = 0; i < n; m++) {
        s->cpo[m] = (uint32_t)i;
        i += utf8_get((const unsigned char *)text, n, i, &s->cps[m]);
    }
    s->cpo[m] = (uint32_t)n;
    for (size_t i = 0; i < m;) {
        size_t e;
        switch (t->pretok) {
        case QT_PRETOK_GPT2: e = next_gpt2(s->cps, m, i); break;
        case QT_PRETOK_LLAMA3: e = next_llama3(s->cps, m, i, 3); break;
        case QT_PRETOK_QWEN2: e = next_llama3(s->cps, m, i, 1); break;
        default: e = m; break;
        }
        if (e <= i) e = i + 1; /* cannot happen; keeps the loop finite */
        qt_status st = encode_bpe_word(t, s, text + s->cpo[i], s->cpo[e] - s->cpo[i], true);
        if (st != QT_OK) return st;
        i = e;
    }
    return QT_OK;
}

/* One text segment (between added tokens). */
static qt_status encode_segment(const qt_tokenizer *t, scratch *s, const char *text, size_t n,
                                bool first)
{
    if (n == 0) return QT_OK;
    if (t->kind == QT_VOCAB_BPE_BYTE) return encode_bytelevel(t, s, text, n);
    /* escape: optional "▁" prefix, every ' ' -> "▁" */
    size_t need;
    if (!qt_mul_size(n, 3, &need) || !qt_add_size(need, 3, &need) ||
        !grow((void **)&s->buf, &s->cap_buf, need, 1))
        return QT_ERR_NOMEM;
    char *w = s->buf;
    size_t m = 0;
    if (t->add_dummy_prefix && (first || !t->prefix_first_only)) {
        memcpy(w, METASPACE, 3);
        m = 3;
    }
    for (size_t i = 0; i < n; i++) {
        if (text[i] == ' ') {
            memcpy(w + m, METASPACE, 3);
            m += 3;
        } else {
            w[m++] = text[i];
        }
    }
    bool spm = t->kind == QT_VOCAB_SPM;
    if (t->pretok != QT_PRETOK_METASPACE) {
        if (!(spm ? t->nl_splits : t->nl_splits_bpe)) return spm ? encode_spm(t, s, w, m) : encode_bpe_word(t, s, w, m, false);
        /* no piece spans a '\n', so no merge crosses one: cut the text there
         * (the same result, with a small heap per line) */
        size_t start = 0;
        for (size_t i = 0; i <= m; i++) {
            if (i < m && w[i] != '\n') continue;
            size_t end = i < m ? i + 1 : m;
            if (end > start) {
                qt_status st = spm ? encode_spm(t, s, w + start, end - start)
                                   : encode_bpe_word(t, s, w + start, end - start, false);
                if (st != QT_OK) return st;
            }
            start = end;
        }
        return QT_OK;
    }
    size_t start = 0;
    for (size_t i = 1; i <= m; i++) {
        if (i == m || (m - i >= 3 && memcmp(w + i, METASPACE, 3) == 0)) {
            qt_status st = encode_bpe_word(t, s, w + start, i - start, false);
            if (st != QT_OK) return st;
            start = i;
        }
    }
    return QT_OK;
}

/* Longest added token at text[i..n), or -1. */
static int32_t match_added(const qt_tokenizer *t, const char *text, size_t n, size_t i)
{
    unsigned b = (unsigned char)text[i];
    for (size_t k = t->added_start[b]; k < t->added_start[b + 1]; k++) {
        int32_t id = t->added[k];
        size_t len = t->text_len[id];
        if (len <= n - i && memcmp(text + i, t->text + t->text_off[id], len) == 0) return id;
    }
    return -1;
}

qt_status qt_tokenizer_encode(const qt_tokenizer *t, const char *text, size_t len, bool add_bos,
                              int32_t **ids, size_t *n_ids)
{
    qt_status st = QT_OK;
    scratch s = {0};
    if (ids) *ids = NULL;
    if (n_ids) *n_ids = 0;
    if (!t || !ids || !n_ids || (!text && len)) return QT_ERR_ARG;
    if (len > UINT32_MAX - 16) return QT_ERR_ARG; /* offsets are 32-bit */
    if (add_bos && t->bos_id >= 0 && !push_id(&s, t->bos_id)) {
        st = QT_ERR_NOMEM;
        goto fail;
    }
    size_t seg = 0;
    bool first = true;
    for (size_t i = 0; i < len && t->n_added;) {
        int32_t id = match_added(t, text, len, i);
        if (id < 0) {
            i++;
            continue;
        }
        if (i > seg) {
            if ((st = encode_segment(t, &s, text + seg, i - seg, first)) != QT_OK) goto fail;
            first = false;
        }
        if (!push_id(&s, id)) {
            st = QT_ERR_NOMEM;
            goto fail;
        }
        i += t->text_len[id];
        seg = i;
    }
    if (len > seg && (st = encode_segment(t, &s, text + seg, len - seg, first)) != QT_OK) goto fail;
    *ids = s.out;
    *n_ids = s.n_out;
    s.out = NULL;
fail:
    qt_free(s.out);
    qt_free(s.syms);
    qt_free(s.heap);
    qt_free(s.buf);
    qt_free(s.cps);
    qt_free(s.cpo);
    return st;
}

/* ---- decode --------------------------------------------------------------- */

qt_status qt_tokenizer_piece(const qt_tokenizer *t, int32_t id, bool at_start, const char **piece,
                             size_t *len)
{
    if (!t || !piece || !len || id < 0 || (size_t)id >= t->n_tokens) return QT_ERR_ARG;
    const char *p = t->piece + t->piece_off[id];
    size_t n = t->piece_len[id];
    if (at_start && t->add_dummy_prefix && n > 0 && p[0] == ' ' &&
        t->type[id] != QT_TOKEN_BYTE && t->type[id] != QT_TOKEN_UNKNOWN)
        p++, n--;
    *piece = p;
    *len = n;
    return QT_OK;
}

qt_status qt_tokenizer_decode(const qt_tokenizer *t, const int32_t *ids, size_t n, char **text,
                              size_t *len)
{
    if (text) *text = NULL;
    if (len) *len = 0;
    if (!t || !text || !len || (!ids && n)) return QT_ERR_ARG;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || (size_t)ids[i] >= t->n_tokens) return QT_ERR_ARG;
        if (!qt_add_size(total, t->piece_len[ids[i]], &total)) return QT_ERR_OVERFLOW;
    }
    char *out = qt_malloc(total + 1);
    if (!out) return QT_ERR_NOMEM;
    size_t o = 0;
    bool at_start = true;
    for (size_t i = 0; i < n; i++) {
        const char *p;
        size_t k;
        qt_tokenizer_piece(t, ids[i], at_start, &p, &k);
        if (t->type[ids[i]] == QT_TOKEN_CONTROL) continue;
        memcpy(out + o, p, k);
        o += k;
        at_start = false;
    }
    out[o] = '\0';
    *text = out;
    *len = o;
    return QT_OK;
}
