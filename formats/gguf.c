/*
 * formats/gguf.c: the GGUF reader declared in gguf.h.
 *
 * Parsing is one forward pass over the header with a bounded cursor:
 * every field is read only after checking that it lies inside the file,
 * every count is compared with the bytes left before anything sized by it
 * is allocated, and all size arithmetic goes through the overflow-checked
 * helpers of common.h. Nothing is exposed until the whole header, the
 * tensor layout and the data section have been checked.
 */
#include "formats/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/half.h"
#include "common/mapguard.h"
#include "formats/input_file.h"

/* Smallest possible encodings, used to bound counts by the bytes left:
 * a pair is key length (8) + 1 key byte + type (4) + a 1-byte value; a
 * tensor info is name length (8) + 1 name byte + n_dims (4) + one ne (8)
 * + type (4) + offset (8). */
#define GG_MIN_KV_BYTES 14u
#define GG_MIN_TENSOR_BYTES 33u
/* Array elements shown by qt_gguf_kv_format, and string bytes shown. */
#define GG_FMT_ARRAY_ITEMS 8
#define GG_FMT_STR_BYTES 64

/* ---- tables ------------------------------------------------------------- */

typedef struct gg_type_traits {
    const char *name; /* NULL: unknown / removed id */
    int64_t blck;     /* elements per block */
    size_t size;      /* bytes per block */
} gg_type_traits;

static const gg_type_traits gg_traits[QT_GGML_TYPE_COUNT] = {
    [QT_GGML_TYPE_F32] = {"F32", 1, 4},
    [QT_GGML_TYPE_F16] = {"F16", 1, 2},
    [QT_GGML_TYPE_Q4_0] = {"Q4_0", 32, 18},
    [QT_GGML_TYPE_Q4_1] = {"Q4_1", 32, 20},
    [QT_GGML_TYPE_Q5_0] = {"Q5_0", 32, 22},
    [QT_GGML_TYPE_Q5_1] = {"Q5_1", 32, 24},
    [QT_GGML_TYPE_Q8_0] = {"Q8_0", 32, 34},
    [QT_GGML_TYPE_Q8_1] = {"Q8_1", 32, 36},
    [QT_GGML_TYPE_Q2_K] = {"Q2_K", 256, 84},
    [QT_GGML_TYPE_Q3_K] = {"Q3_K", 256, 110},
    [QT_GGML_TYPE_Q4_K] = {"Q4_K", 256, 144},
    [QT_GGML_TYPE_Q5_K] = {"Q5_K", 256, 176},
    [QT_GGML_TYPE_Q6_K] = {"Q6_K", 256, 210},
    [QT_GGML_TYPE_Q8_K] = {"Q8_K", 256, 292},
    [QT_GGML_TYPE_IQ2_XXS] = {"IQ2_XXS", 256, 66},
    [QT_GGML_TYPE_IQ2_XS] = {"IQ2_XS", 256, 74},
    [QT_GGML_TYPE_IQ3_XXS] = {"IQ3_XXS", 256, 98},
    [QT_GGML_TYPE_IQ1_S] = {"IQ1_S", 256, 50},
    [QT_GGML_TYPE_IQ4_NL] = {"IQ4_NL", 32, 18},
    [QT_GGML_TYPE_IQ3_S] = {"IQ3_S", 256, 110},
    [QT_GGML_TYPE_IQ2_S] = {"IQ2_S", 256, 82},
    [QT_GGML_TYPE_IQ4_XS] = {"IQ4_XS", 256, 136},
    [QT_GGML_TYPE_I8] = {"I8", 1, 1},
    [QT_GGML_TYPE_I16] = {"I16", 1, 2},
    [QT_GGML_TYPE_I32] = {"I32", 1, 4},
    [QT_GGML_TYPE_I64] = {"I64", 1, 8},
    [QT_GGML_TYPE_F64] = {"F64", 1, 8},
    [QT_GGML_TYPE_IQ1_M] = {"IQ1_M", 256, 56},
    [QT_GGML_TYPE_BF16] = {"BF16", 1, 2},
    [QT_GGML_TYPE_TQ1_0] = {"TQ1_0", 256, 54},
    [QT_GGML_TYPE_TQ2_0] = {"TQ2_0", 256, 66},
    [QT_GGML_TYPE_MXFP4] = {"MXFP4", 32, 17},
    [QT_GGML_TYPE_NVFP4] = {"NVFP4", 64, 36},
};

static const char *const gg_type_names[QT_GGUF_TYPE_COUNT] = {
    "uint8", "int8",   "uint16", "int16",  "uint32", "int32",  "float32",
    "bool",  "string", "array",  "uint64", "int64",  "float64",
};

static const size_t gg_type_sizes[QT_GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

static const char *const gg_rule_names[QT_GGUF_RULE_COUNT] = {
    "ok", "G1", "G2", "G3", "G4", "G5", "G6", "G7", "G8",
    "G9", "G10", "G11", "G12", "G13", "G14", "G15", "G16",
};

const char *qt_gguf_rule_name(qt_gguf_rule rule)
{
    return (unsigned)rule < QT_GGUF_RULE_COUNT ? gg_rule_names[rule] : "?";
}

const char *qt_gguf_type_name(qt_gguf_type type)
{
    return (unsigned)type < QT_GGUF_TYPE_COUNT ? gg_type_names[type] : "?";
}

size_t qt_gguf_type_size(qt_gguf_type type)
{
    return (unsigned)type < QT_GGUF_TYPE_COUNT ? gg_type_sizes[type] : 0;
}

const char *qt_ggml_type_name(qt_ggml_type type)
{
    return (unsigned)type < QT_GGML_TYPE_COUNT ? gg_traits[type].name : NULL;
}

int64_t qt_ggml_blck_size(qt_ggml_type type)
{
    return qt_ggml_type_name(type) ? gg_traits[type].blck : 0;
}

size_t qt_ggml_type_size(qt_ggml_type type)
{
    return qt_ggml_type_name(type) ? gg_traits[type].size : 0;
}

/* ---- the reader ------------------------------------------------------- */

typedef struct gg_str {
    size_t off; /* offset of the first byte in the file */
    size_t len;
} gg_str;

typedef struct gg_kv {
    const char *key;       /* in key_arena, NUL-terminated */
    gg_str key_raw;        /* where the key lies in the file */
    qt_gguf_type type;
    qt_gguf_type elem_type; /* ARRAY only */
    size_t count;          /* ARRAY: elements; otherwise 1 */
    gg_str val;            /* scalar / array: its bytes; STRING: the chars */
    gg_str *strs;          /* ARRAY of STRING: count entries, owned */
} gg_kv;

typedef struct gg_tensor {
    const char *name; /* in name_arena, NUL-terminated */
    gg_str name_raw;
    uint32_t n_dims;
    int64_t ne[QT_GGUF_MAX_DIMS];
    qt_ggml_type type;
    int64_t n_elements;
    size_t nbytes;
    size_t rel_off; /* relative to the data section */
} gg_tensor;

typedef struct gg_index {
    const char *name;
    size_t idx;
} gg_index;

struct qt_gguf {
    const uint8_t *base; /* file bytes (mapping or borrowed buffer) */
    size_t size;
    void *map;           /* owned mapping, or NULL for a borrowed buffer */
    size_t map_size;
    char *name;          /* owned copy of the path / buffer name */
    uint32_t version;
    uint32_t alignment;
    size_t n_kv, n_tensors;
    gg_kv *kv;           /* n_kv, owned */
    gg_tensor *tensors;  /* n_tensors, owned */
    char *key_arena, *name_arena;
    gg_index *kv_sorted, *tensor_sorted; /* sorted by name, owned */
    size_t data_off;
};

/* Parser state: the reader under construction plus a cursor and the rule
 * that the first failure broke. */
typedef struct gg_parser {
    qt_gguf *g;
    size_t pos;
    qt_gguf_rule rule;
} gg_parser;

/* Quotes bytes s[0..n) for a message: printable ASCII as is, the rest as
 * \xNN, cut to about 60 bytes with "...". Returns dst. */
static const char *gg_quote(char *dst, size_t cap, const uint8_t *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (o + 8 >= cap || i >= 60) {
            if (o + 4 <= cap) memcpy(dst + o, "...", 3), o += 3;
            break;
        }
        unsigned char c = s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') {
            dst[o++] = (char)c;
        } else {
            o += (size_t)snprintf(dst + o, cap - o, "\\x%02x", c);
        }
    }
    dst[o] = '\0';
    return dst;
}

/* Records rule r and formats "<file>: <what> (<rule>)" into errmsg. */
static qt_status gg_err(gg_parser *p, char *errmsg, qt_gguf_rule r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static qt_status gg_err(gg_parser *p, char *errmsg, qt_gguf_rule r, const char *fmt, ...)
{
    char what[QT_ERRMSG_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    p->rule = r;
    return qt_set_err(errmsg, QT_ERR_FORMAT, "%s: %s (%s)", p->g->name, what,
                      qt_gguf_rule_name(r));
}

/* QT_CHECK for file rules: on failure record rule r, format the message
 * (file name and rule added) and jump to fail. Needs p, st, errmsg. */
#define GG_CHECK(cond, r, ...)                                 \
    do {                                                       \
        if (!(cond)) {                                         \
            st = gg_err(p, errmsg, (r), __VA_ARGS__);          \
            goto fail;                                         \
        }                                                      \
    } while (0)

static size_t gg_left(const gg_parser *p)
{
    return p->g->size - p->pos;
}

/* Reads n bytes (n <= 8) at the cursor into a little-endian integer. */
static qt_status gg_read_le(gg_parser *p, size_t n, uint64_t *v, const char *what,
                            char *errmsg)
{
    qt_status st = QT_OK;
    GG_CHECK(gg_left(p) >= n, QT_GGUF_G15_TRUNCATED,
             "truncated at byte %zu reading %s (%zu bytes left, need %zu)", p->pos, what,
             gg_left(p), n);
    const uint8_t *b = p->g->base + p->pos;
    uint64_t x = 0;
    for (size_t i = n; i-- > 0;) x = (x << 8) | b[i];
    *v = x;
    p->pos += n;
fail:
    return st;
}

/* Reads a gguf string (uint64 length + bytes) at the cursor; checks the
 * length against the cap and the bytes left (G4). ctx names it. */
static qt_status gg_read_str(gg_parser *p, gg_str *s, const char *ctx, char *errmsg)
{
    qt_status st;
    uint64_t len = 0;
    QT_TRY(gg_read_le(p, 8, &len, ctx, errmsg));
    GG_CHECK(len <= QT_GGUF_MAX_STRING, QT_GGUF_G4_STRING,
             "%s: string length %llu exceeds the %llu-byte cap", ctx, (unsigned long long)len,
             (unsigned long long)QT_GGUF_MAX_STRING);
    GG_CHECK(len <= gg_left(p), QT_GGUF_G4_STRING,
             "%s: string length %llu exceeds the %zu bytes left in the file", ctx,
             (unsigned long long)len, gg_left(p));
    s->off = p->pos;
    s->len = (size_t)len;
    p->pos += (size_t)len;
fail:
    return st;
}

static int gg_index_cmp(const void *a, const void *b)
{
    return strcmp(((const gg_index *)a)->name, ((const gg_index *)b)->name);
}

/* Binary search in a sorted index; -1 when absent. */
static int64_t gg_index_find(const gg_index *ix, size_t n, const char *name)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(ix[mid].name, name);
        if (c == 0) return (int64_t)ix[mid].idx;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* ---- parsing ------------------------------------------------------------- */

static qt_status gg_parse_header(gg_parser *p, char *errmsg)
{
    qt_status st = QT_OK;
    qt_gguf *g = p->g;
    uint64_t v = 0, n_tensors = 0, n_kv = 0;

    GG_CHECK(g->size >= 4, QT_GGUF_G1_MAGIC, "file of %zu bytes is too short for the magic",
             g->size);
    if (memcmp(g->base, QT_GGUF_MAGIC, 4) != 0) {
        char q[64];
        GG_CHECK(0, QT_GGUF_G1_MAGIC, "bad magic '%s', expected 'GGUF'",
                 gg_quote(q, sizeof q, g->base, 4));
    }
    p->pos = 4;
    QT_TRY(gg_read_le(p, 4, &v, "version", errmsg));
    GG_CHECK((v & 0xffff) != 0, QT_GGUF_G2_VERSION,
             "version 0x%08llx looks byte-swapped: a big-endian file is not supported",
             (unsigned long long)v);
    GG_CHECK(v != 1, QT_GGUF_G2_VERSION, "version 1 is not supported (32-bit counts)");
    GG_CHECK(v == 2 || v == 3, QT_GGUF_G2_VERSION,
             "version %llu is not supported (only 2 and 3)", (unsigned long long)v);
    g->version = (uint32_t)v;

    QT_TRY(gg_read_le(p, 8, &n_tensors, "n_tensors", errmsg));
    QT_TRY(gg_read_le(p, 8, &n_kv, "n_kv", errmsg));
    GG_CHECK(n_tensors <= INT64_MAX, QT_GGUF_G3_COUNTS, "n_tensors %lld is negative",
             (long long)n_tensors);
    GG_CHECK(n_kv <= INT64_MAX, QT_GGUF_G3_COUNTS, "n_kv %lld is negative", (long long)n_kv);
    size_t left = gg_left(p);
    GG_CHECK(n_kv <= left / GG_MIN_KV_BYTES, QT_GGUF_G3_COUNTS,
             "n_kv %llu cannot fit in the %zu bytes left", (unsigned long long)n_kv, left);
    GG_CHECK(n_tensors <= left / GG_MIN_TENSOR_BYTES, QT_GGUF_G3_COUNTS,
             "n_tensors %llu cannot fit in the %zu bytes left", (unsigned long long)n_tensors,
             left);
    /* Both together (no overflow: each product is at most left). */
    GG_CHECK(n_kv * GG_MIN_KV_BYTES + n_tensors * GG_MIN_TENSOR_BYTES <= left,
             QT_GGUF_G3_COUNTS, "n_kv %llu and n_tensors %llu cannot fit in the %zu bytes left",
             (unsigned long long)n_kv, (unsigned long long)n_tensors, left);
    g->n_kv = (size_t)n_kv;
    g->n_tensors = (size_t)n_tensors;
fail:
    return st;
}

/* Parses the value of pair kv (its type already read) at the cursor. */
static qt_status gg_parse_value(gg_parser *p, gg_kv *kv, const char *qkey, char *errmsg)
{
    qt_status st = QT_OK;
    char ctx[128];
    snprintf(ctx, sizeof ctx, "key '%s'", qkey);

    kv->count = 1;
    if (kv->type == QT_GGUF_TYPE_STRING) {
        QT_TRY(gg_read_str(p, &kv->val, ctx, errmsg));
        goto fail; /* done (st == QT_OK) */
    }
    if (kv->type != QT_GGUF_TYPE_ARRAY) {
        size_t sz = gg_type_sizes[kv->type];
        GG_CHECK(gg_left(p) >= sz, QT_GGUF_G15_TRUNCATED,
                 "%s: truncated at byte %zu reading a %s value", ctx, p->pos,
                 gg_type_names[kv->type]);
        kv->val.off = p->pos;
        kv->val.len = sz;
        p->pos += sz;
        goto fail;
    }

    uint64_t et = 0, count = 0;
    QT_TRY(gg_read_le(p, 4, &et, "an array element type", errmsg));
    GG_CHECK(et < QT_GGUF_TYPE_COUNT, QT_GGUF_G7_KV_TYPE, "%s: array element type %llu is invalid",
             ctx, (unsigned long long)et);
    GG_CHECK(et != QT_GGUF_TYPE_ARRAY, QT_GGUF_G7_KV_TYPE, "%s: nested array", ctx);
    kv->elem_type = (qt_gguf_type)et;
    QT_TRY(gg_read_le(p, 8, &count, "an array count", errmsg));
    GG_CHECK(count <= QT_GGUF_MAX_ARRAY, QT_GGUF_G5_ARRAY,
             "%s: array of %llu elements exceeds the cap of %llu", ctx,
             (unsigned long long)count, (unsigned long long)QT_GGUF_MAX_ARRAY);
    /* A string element is at least its 8-byte length. */
    size_t esz = et == QT_GGUF_TYPE_STRING ? 8 : gg_type_sizes[et];
    GG_CHECK(count <= gg_left(p) / esz, QT_GGUF_G5_ARRAY,
             "%s: array of %llu %s elements exceeds the %zu bytes left", ctx,
             (unsigned long long)count, gg_type_names[et], gg_left(p));
    kv->count = (size_t)count;
    kv->val.off = p->pos;
    if (et != QT_GGUF_TYPE_STRING) {
        kv->val.len = kv->count * esz; /* <= left, checked above */
        p->pos += kv->val.len;
        goto fail;
    }
    if (kv->count > 0) {
        kv->strs = qt_malloc(kv->count * sizeof *kv->strs); /* count <= left / 8 */
        QT_CHECK(kv->strs, QT_ERR_NOMEM, "%s: out of memory for %zu strings", p->g->name,
                 kv->count);
    }
    for (size_t j = 0; j < kv->count; j++) {
        char ectx[160];
        snprintf(ectx, sizeof ectx, "%s: element %zu", ctx, j);
        QT_TRY(gg_read_str(p, &kv->strs[j], ectx, errmsg));
    }
    kv->val.len = p->pos - kv->val.off;
fail:
    return st;
}

static qt_status gg_parse_kvs(gg_parser *p, char *errmsg)
{
    qt_status st = QT_OK;
    qt_gguf *g = p->g;
    char q[96];

    if (g->n_kv > 0) {
        g->kv = qt_calloc(g->n_kv, sizeof *g->kv);
        QT_CHECK(g->kv, QT_ERR_NOMEM, "%s: out of memory for %zu key/value pairs", g->name,
                 g->n_kv);
    }
    for (size_t i = 0; i < g->n_kv; i++) {
        gg_kv *kv = &g->kv[i];
        char ctx[48];
        uint64_t type = 0;
        snprintf(ctx, sizeof ctx, "key %zu", i);
        QT_TRY(gg_read_str(p, &kv->key_raw, ctx, errmsg));
        const uint8_t *k = g->base + kv->key_raw.off;
        GG_CHECK(kv->key_raw.len > 0, QT_GGUF_G6_KEY, "key %zu is empty", i);
        GG_CHECK(!memchr(k, 0, kv->key_raw.len), QT_GGUF_G6_KEY, "key '%s' contains a NUL byte",
                 gg_quote(q, sizeof q, k, kv->key_raw.len));
        gg_quote(q, sizeof q, k, kv->key_raw.len);
        QT_TRY(gg_read_le(p, 4, &type, "a value type", errmsg));
        GG_CHECK(type < QT_GGUF_TYPE_COUNT, QT_GGUF_G7_KV_TYPE,
                 "key '%s': value type %llu is invalid",
                 q, (unsigned long long)type);
        kv->type = (qt_gguf_type)type;
        QT_TRY(gg_parse_value(p, kv, q, errmsg));
    }
fail:
    return st;
}

/* Copies the n names raw[i] (in the file) into one NUL-separated arena and
 * fills a sorted index; a repeated name fails with rule r. */
static qt_status gg_names(gg_parser *p, size_t n, const gg_str *(*raw_of)(const qt_gguf *, size_t),
                          const char **(*dst_of)(qt_gguf *, size_t), qt_gguf_rule r,
                          const char *what, char **arena_out, gg_index **index_out,
                          char *errmsg)
{
    qt_status st = QT_OK;
    qt_gguf *g = p->g;
    size_t total = 0;
    char *arena = NULL;
    gg_index *ix = NULL;

    for (size_t i = 0; i < n; i++) total += raw_of(g, i)->len + 1; /* all inside the file */
    if (n == 0) goto fail;
    arena = qt_malloc(total);
    ix = qt_malloc(n * sizeof *ix);
    QT_CHECK(arena && ix, QT_ERR_NOMEM, "%s: out of memory for %zu names", g->name, n);
    char *w = arena;
    for (size_t i = 0; i < n; i++) {
        const gg_str *s = raw_of(g, i);
        memcpy(w, g->base + s->off, s->len);
        w[s->len] = '\0';
        *dst_of(g, i) = w;
        ix[i].name = w;
        ix[i].idx = i;
        w += s->len + 1;
    }
    qsort(ix, n, sizeof *ix, gg_index_cmp);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(ix[i - 1].name, ix[i].name) == 0) {
            char q[96];
            GG_CHECK(0, r, "duplicate %s '%s'", what,
                     gg_quote(q, sizeof q, (const uint8_t *)ix[i].name, strlen(ix[i].name)));
        }
    }
    *arena_out = arena;
    *index_out = ix;
    return QT_OK;
fail:
    qt_free(arena);
    qt_free(ix);
    return st;
}

static const gg_str *gg_key_raw(const qt_gguf *g, size_t i) { return &g->kv[i].key_raw; }
static const char **gg_key_dst(qt_gguf *g, size_t i) { return &g->kv[i].key; }
static const gg_str *gg_tname_raw(const qt_gguf *g, size_t i) { return &g->tensors[i].name_raw; }
static const char **gg_tname_dst(qt_gguf *g, size_t i) { return &g->tensors[i].name; }

static qt_status gg_check_alignment(gg_parser *p, char *errmsg)
{
    qt_status st = QT_OK;
    qt_gguf *g = p->g;
    g->alignment = QT_GGUF_DEFAULT_ALIGNMENT;
    int64_t i = gg_index_find(g->kv_sorted, g->n_kv, "general.alignment");
    if (i < 0) goto fail;
    const gg_kv *kv = &g->kv[i];
    GG_CHECK(kv->type == QT_GGUF_TYPE_UINT32, QT_GGUF_G8_ALIGNMENT,
             "key 'general.alignment': type %s, expected uint32", gg_type_names[kv->type]);
    uint32_t a = qt_load_le32(g->base + kv->val.off);
    GG_CHECK(a != 0 && (a & (a - 1)) == 0, QT_GGUF_G8_ALIGNMENT,
             "key 'general.alignment': %u is not a non-zero power of two", a);
    g->alignment = a;
fail:
    return st;
}

/* Rounds x up to a multiple of align (a power of two); false on overflow
 * (checked before padding, so GGML_PAD cannot wrap to 0). */
static bool gg_pad(uint64_t x, uint64_t align, uint64_t *out)
{
    uint64_t t;
    if (!qt_add_u64(x, align - 1, &t)) return false;
    *out = t & ~(align - 1);
    return true;
}

static qt_status gg_parse_tensors(gg_parser *p, char *errmsg)
{
    qt_status st = QT_OK;
    qt_gguf *g = p->g;
    uint64_t expect = 0; /* running padded total, relative to the data section */
    char q[96];

    if (g->n_tensors > 0) {
        g->tensors = qt_calloc(g->n_tensors, sizeof *g->tensors);
        QT_CHECK(g->tensors, QT_ERR_NOMEM, "%s: out of memory for %zu tensor infos", g->name,
                 g->n_tensors);
    }
    for (size_t t = 0; t < g->n_tensors; t++) {
        gg_tensor *ti = &g->tensors[t];
        char ctx[48];
        uint64_t v = 0;
        snprintf(ctx, sizeof ctx, "tensor %zu name", t);
        QT_TRY(gg_read_str(p, &ti->name_raw, ctx, errmsg));
        const uint8_t *nm = g->base + ti->name_raw.off;
        size_t nlen = ti->name_raw.len;
        GG_CHECK(nlen > 0, QT_GGUF_G9_TENSOR_NAME, "tensor %zu: empty name", t);
        gg_quote(q, sizeof q, nm, nlen);
        GG_CHECK(nlen < QT_GGUF_MAX_NAME, QT_GGUF_G9_TENSOR_NAME,
                 "tensor '%s': name of %zu bytes, the limit is %d", q, nlen,
                 QT_GGUF_MAX_NAME - 1);
        GG_CHECK(!memchr(nm, 0, nlen), QT_GGUF_G9_TENSOR_NAME,
                 "tensor '%s': name contains a NUL byte", q);

        QT_TRY(gg_read_le(p, 4, &v, "n_dims", errmsg));
        GG_CHECK(v >= 1 && v <= QT_GGUF_MAX_DIMS, QT_GGUF_G10_DIMS,
                 "tensor '%s': n_dims %llu not in 1..%d", q, (unsigned long long)v,
                 QT_GGUF_MAX_DIMS);
        ti->n_dims = (uint32_t)v;
        for (int d = 0; d < QT_GGUF_MAX_DIMS; d++) ti->ne[d] = 1;
        for (uint32_t d = 0; d < ti->n_dims; d++) {
            QT_TRY(gg_read_le(p, 8, &v, "a dimension", errmsg));
            GG_CHECK(v <= INT64_MAX, QT_GGUF_G10_DIMS, "tensor '%s': dimension %u is %lld", q,
                     d, (long long)v);
            ti->ne[d] = (int64_t)v;
        }
        QT_TRY(gg_read_le(p, 4, &v, "a tensor type", errmsg));
        GG_CHECK(v < QT_GGML_TYPE_COUNT && gg_traits[v].name, QT_GGUF_G12_TENSOR_TYPE,
                 "tensor '%s': ggml type %llu is unknown or removed", q, (unsigned long long)v);
        ti->type = (qt_ggml_type)v;
        const gg_type_traits *tr = &gg_traits[v];
        QT_TRY(gg_read_le(p, 8, &v, "a tensor offset", errmsg));

        /* Element count, as int64 (by multiplication with overflow check). */
        uint64_t nel = 1;
        for (int d = 0; d < QT_GGUF_MAX_DIMS; d++) {
            bool ok = qt_mul_u64(nel, (uint64_t)ti->ne[d], &nel) && nel <= INT64_MAX;
            GG_CHECK(ok, QT_GGUF_G11_OVERFLOW,
                     "tensor '%s': element count of [%lld, %lld, %lld, %lld] overflows", q,
                     (long long)ti->ne[0], (long long)ti->ne[1], (long long)ti->ne[2],
                     (long long)ti->ne[3]);
        }
        ti->n_elements = (int64_t)nel;
        GG_CHECK(ti->ne[0] % tr->blck == 0, QT_GGUF_G13_BLOCK,
                 "tensor '%s': ne[0] %lld is not a multiple of the %s block size %lld", q,
                 (long long)ti->ne[0], tr->name, (long long)tr->blck);
        /* Bytes: row bytes times the other dimensions. */
        uint64_t nb = (uint64_t)(ti->ne[0] / tr->blck);
        bool ok = qt_mul_u64(nb, tr->size, &nb);
        for (int d = 1; d < QT_GGUF_MAX_DIMS && ok; d++)
            ok = qt_mul_u64(nb, (uint64_t)ti->ne[d], &nb);
        ok = ok && nb <= SIZE_MAX && nb <= INT64_MAX;
        GG_CHECK(ok, QT_GGUF_G11_OVERFLOW, "tensor '%s': byte size overflows", q);
        ti->nbytes = (size_t)nb;

        GG_CHECK(v == expect, QT_GGUF_G14_OFFSET, "tensor '%s': offset %llu expected %llu", q,
                 (unsigned long long)v, (unsigned long long)expect);
        ti->rel_off = (size_t)v; /* <= a padded sum of sizes, each <= SIZE_MAX, checked next */
        uint64_t end;
        ok = qt_add_u64(expect, nb, &end) && gg_pad(end, g->alignment, &expect) &&
             expect <= SIZE_MAX;
        GG_CHECK(ok, QT_GGUF_G11_OVERFLOW, "tensor '%s': data offsets overflow", q);
    }

    /* The data section starts at the next multiple of the alignment. */
    uint64_t data_off;
    GG_CHECK(gg_pad(p->pos, g->alignment, &data_off), QT_GGUF_G11_OVERFLOW,
             "data section offset overflows");
    g->data_off = (size_t)(data_off <= SIZE_MAX ? data_off : SIZE_MAX);
    if (g->n_tensors > 0) {
        GG_CHECK(data_off <= g->size, QT_GGUF_G15_TRUNCATED,
                 "data section at byte %llu starts past the end of the file (%zu bytes)",
                 (unsigned long long)data_off, g->size);
        for (size_t t = 0; t < g->n_tensors; t++) {
            const gg_tensor *ti = &g->tensors[t];
            uint64_t end;
            bool ok = qt_add_u64(data_off, ti->rel_off, &end) && qt_add_u64(end, ti->nbytes, &end);
            GG_CHECK(ok && end <= g->size, QT_GGUF_G15_TRUNCATED,
                     "tensor '%s': data ends at byte %llu, past the end of the file (%zu bytes)",
                     gg_quote(q, sizeof q, g->base + ti->name_raw.off, ti->name_raw.len),
                     (unsigned long long)(ok ? end : UINT64_MAX), g->size);
        }
    }
fail:
    return st;
}

static qt_status gg_parse(gg_parser *p, char *errmsg)
{
    qt_status st;
    qt_gguf *g = p->g;
    QT_TRY(gg_parse_header(p, errmsg));
    QT_TRY(gg_parse_kvs(p, errmsg));
    QT_TRY(gg_names(p, g->n_kv, gg_key_raw, gg_key_dst, QT_GGUF_G6_KEY, "key", &g->key_arena,
                    &g->kv_sorted, errmsg));
    QT_TRY(gg_check_alignment(p, errmsg));
    QT_TRY(gg_parse_tensors(p, errmsg));
    QT_TRY(gg_names(p, g->n_tensors, gg_tname_raw, gg_tname_dst, QT_GGUF_G9_TENSOR_NAME,
                    "tensor name", &g->name_arena, &g->tensor_sorted, errmsg));
fail:
    return st;
}

/* ---- open / close ------------------------------------------------------- */

void qt_gguf_close(qt_gguf *g)
{
    if (!g) return;
    for (size_t i = 0; g->kv && i < g->n_kv; i++) qt_free(g->kv[i].strs);
    qt_free(g->kv);
    qt_free(g->tensors);
    qt_free(g->key_arena);
    qt_free(g->name_arena);
    qt_free(g->kv_sorted);
    qt_free(g->tensor_sorted);
    qt_free(g->name);
    if (g->map) {
        qt_mapguard_remove(g->map);
        munmap(g->map, g->map_size);
    }
    memset(g, 0, sizeof *g);
    qt_free(g);
}

/* Takes ownership of map (may be NULL) in every case. */
static qt_status gg_open_common(const uint8_t *base, size_t n, void *map, const char *name,
                                qt_gguf **out, qt_gguf_rule *rule, char *errmsg)
{
    qt_status st = QT_OK;
    gg_parser p = {0};
    qt_gguf *g = qt_calloc(1, sizeof *g);
    if (!g) {
        if (map) munmap(map, n);
        QT_CHECK(0, QT_ERR_NOMEM, "%s: out of memory", name);
    }
    g->map = map;
    g->map_size = n;
    g->base = base;
    g->size = n;
    g->name = qt_strdup(name);
    QT_CHECK(g->name, QT_ERR_NOMEM, "%s: out of memory", name);
    p.g = g;
    QT_TRY(gg_parse(&p, errmsg));
    *out = g;
    if (rule) *rule = QT_GGUF_RULE_OK;
    return QT_OK;
fail:
    if (rule) *rule = st == QT_ERR_FORMAT ? p.rule : QT_GGUF_RULE_OK;
    qt_gguf_close(g);
    return st;
}

qt_status qt_gguf_open_mem(const void *buf, size_t n, const char *name, qt_gguf **out,
                           qt_gguf_rule *rule, char *errmsg)
{
    qt_status st = QT_OK;
    if (rule) *rule = QT_GGUF_RULE_OK;
    QT_CHECK(out, QT_ERR_ARG, "qt_gguf_open_mem: out is NULL");
    *out = NULL;
    QT_CHECK(buf || n == 0, QT_ERR_ARG, "qt_gguf_open_mem: buffer is NULL");
    static const uint8_t empty[1];
    return gg_open_common(buf ? buf : empty, n, NULL, name ? name : "<memory>", out, rule,
                          errmsg);
fail:
    return st;
}

qt_status qt_gguf_open(const char *path, qt_gguf **out, qt_gguf_rule *rule, char *errmsg)
{
    qt_status st = QT_OK;
    int fd = -1;
    void *map = NULL;
    size_t n = 0;
    static const uint8_t empty[1];

    if (rule) *rule = QT_GGUF_RULE_OK;
    QT_CHECK(out && path, QT_ERR_ARG, "qt_gguf_open: NULL argument");
    *out = NULL;
    struct stat sb;
    QT_TRY(qt_input_open(path, 0, UINT64_MAX, &fd, &sb, errmsg));
    QT_CHECK((uintmax_t)sb.st_size <= SIZE_MAX, QT_ERR_IO, "%s: file too large to map", path);
    n = (size_t)sb.st_size;
    if (n > 0) {
        map = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
        QT_CHECK(map != MAP_FAILED, QT_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
        /* a shrinking file must not kill us with SIGBUS (common/mapguard.h) */
        if (qt_mapguard_add(map, n, path) != QT_OK) {
            munmap(map, n);
            QT_CHECK(0, QT_ERR_NOMEM, "%s: cannot guard the mapping: out of memory", path);
        }
    }
    close(fd);
    fd = -1;
    return gg_open_common(map ? map : empty, n, map, path, out, rule, errmsg);
fail:
    if (fd >= 0) close(fd);
    return st;
}

/* ---- file-level facts ------------------------------------------------------ */

uint32_t qt_gguf_version(const qt_gguf *g) { return g->version; }
uint32_t qt_gguf_alignment(const qt_gguf *g) { return g->alignment; }
size_t qt_gguf_data_offset(const qt_gguf *g) { return g->data_off; }
const char *qt_gguf_name(const qt_gguf *g) { return g->name; }

/* ---- metadata ----------------------------------------------------------- */

size_t qt_gguf_n_kv(const qt_gguf *g) { return g->n_kv; }

const char *qt_gguf_kv_key(const qt_gguf *g, size_t i)
{
    return i < g->n_kv ? g->kv[i].key : NULL;
}

qt_gguf_type qt_gguf_kv_type(const qt_gguf *g, size_t i)
{
    return i < g->n_kv ? g->kv[i].type : QT_GGUF_TYPE_COUNT;
}

int64_t qt_gguf_find_key(const qt_gguf *g, const char *key)
{
    return key ? gg_index_find(g->kv_sorted, g->n_kv, key) : -1;
}

/* Checks that pair i exists and holds type want (G16). */
static qt_status gg_want(const qt_gguf *g, size_t i, qt_gguf_type want, const void *out,
                         char *errmsg)
{
    qt_status st = QT_OK;
    QT_CHECK(out, QT_ERR_ARG, "%s: NULL output", g->name);
    QT_CHECK(i < g->n_kv, QT_ERR_ARG, "%s: key index %zu out of range (%zu keys)", g->name, i,
             g->n_kv);
    QT_CHECK(g->kv[i].type == want, QT_ERR_FORMAT, "%s: key '%s': type %s, expected %s (G16)",
             g->name, g->kv[i].key, gg_type_names[g->kv[i].type], gg_type_names[want]);
fail:
    return st;
}

/* Decodes a little-endian scalar of type t at p into out (its C type). */
static void gg_decode(qt_gguf_type t, const uint8_t *p, void *out)
{
    switch (gg_type_sizes[t]) {
    case 1: memcpy(out, p, 1); break;
    case 2: { uint16_t v = qt_load_le16(p); memcpy(out, &v, 2); break; }
    case 4: { uint32_t v = qt_load_le32(p); memcpy(out, &v, 4); break; }
    case 8: { uint64_t v = qt_load_le64(p); memcpy(out, &v, 8); break; }
    default: break;
    }
}

#define GG_GETTER(fn, ctype, T)                                                        \
    qt_status fn(const qt_gguf *g, size_t i, ctype *out, char *errmsg)                 \
    {                                                                                  \
        qt_status st = gg_want(g, i, T, out, errmsg);                                  \
        if (st == QT_OK) gg_decode(T, g->base + g->kv[i].val.off, out);                \
        return st;                                                                     \
    }
GG_GETTER(qt_gguf_get_u8, uint8_t, QT_GGUF_TYPE_UINT8)
GG_GETTER(qt_gguf_get_i8, int8_t, QT_GGUF_TYPE_INT8)
GG_GETTER(qt_gguf_get_u16, uint16_t, QT_GGUF_TYPE_UINT16)
GG_GETTER(qt_gguf_get_i16, int16_t, QT_GGUF_TYPE_INT16)
GG_GETTER(qt_gguf_get_u32, uint32_t, QT_GGUF_TYPE_UINT32)
GG_GETTER(qt_gguf_get_i32, int32_t, QT_GGUF_TYPE_INT32)
GG_GETTER(qt_gguf_get_u64, uint64_t, QT_GGUF_TYPE_UINT64)
GG_GETTER(qt_gguf_get_i64, int64_t, QT_GGUF_TYPE_INT64)
GG_GETTER(qt_gguf_get_f32, float, QT_GGUF_TYPE_FLOAT32)
GG_GETTER(qt_gguf_get_f64, double, QT_GGUF_TYPE_FLOAT64)
#undef GG_GETTER

qt_status qt_gguf_get_bool(const qt_gguf *g, size_t i, bool *out, char *errmsg)
{
    qt_status st = gg_want(g, i, QT_GGUF_TYPE_BOOL, out, errmsg);
    if (st == QT_OK) *out = g->base[g->kv[i].val.off] != 0;
    return st;
}

qt_status qt_gguf_get_str(const qt_gguf *g, size_t i, const char **s, size_t *len,
                          char *errmsg)
{
    qt_status st = gg_want(g, i, QT_GGUF_TYPE_STRING, s && len ? s : NULL, errmsg);
    if (st != QT_OK) return st;
    *s = (const char *)g->base + g->kv[i].val.off;
    *len = g->kv[i].val.len;
    return QT_OK;
}

qt_status qt_gguf_get_str_copy(const qt_gguf *g, size_t i, char *buf, size_t cap,
                               char *errmsg)
{
    qt_status st = QT_OK;
    const char *s;
    size_t len;
    QT_CHECK(buf && cap > 0, QT_ERR_ARG, "%s: no buffer", g->name);
    buf[0] = '\0';
    QT_TRY(qt_gguf_get_str(g, i, &s, &len, errmsg));
    QT_CHECK(len < cap, QT_ERR_ARG, "%s: key '%s': string of %zu bytes does not fit %zu",
             g->name, g->kv[i].key, len, cap);
    memcpy(buf, s, len);
    buf[len] = '\0';
fail:
    return st;
}

qt_status qt_gguf_get_arr_info(const qt_gguf *g, size_t i, qt_gguf_type *elem_type,
                               size_t *count, char *errmsg)
{
    qt_status st = gg_want(g, i, QT_GGUF_TYPE_ARRAY, elem_type && count ? count : NULL, errmsg);
    if (st != QT_OK) return st;
    *elem_type = g->kv[i].elem_type;
    *count = g->kv[i].count;
    return QT_OK;
}

/* Checks that pair i is an array of want with element j (G16). */
static qt_status gg_want_elem(const qt_gguf *g, size_t i, size_t j, qt_gguf_type want,
                              const void *out, char *errmsg)
{
    qt_status st;
    QT_TRY(gg_want(g, i, QT_GGUF_TYPE_ARRAY, out, errmsg));
    const gg_kv *kv = &g->kv[i];
    QT_CHECK(kv->elem_type == want, QT_ERR_FORMAT,
             "%s: key '%s': array of %s, expected %s (G16)", g->name, kv->key,
             gg_type_names[kv->elem_type], qt_gguf_type_name(want));
    QT_CHECK(j < kv->count, QT_ERR_ARG, "%s: key '%s': index %zu out of range (%zu elements)",
             g->name, kv->key, j, kv->count);
fail:
    return st;
}

qt_status qt_gguf_get_arr_elem(const qt_gguf *g, size_t i, size_t j, qt_gguf_type want,
                               void *out, char *errmsg)
{
    qt_status st = QT_OK;
    QT_CHECK((unsigned)want < QT_GGUF_TYPE_COUNT && want != QT_GGUF_TYPE_STRING &&
                 want != QT_GGUF_TYPE_ARRAY,
             QT_ERR_ARG, "%s: get_arr_elem wants a numeric type", g->name);
    QT_TRY(gg_want_elem(g, i, j, want, out, errmsg));
    size_t esz = gg_type_sizes[want];
    gg_decode(want, g->base + g->kv[i].val.off + j * esz, out);
fail:
    return st;
}

qt_status qt_gguf_get_arr_f32(const qt_gguf *g, size_t i, size_t j, float *out, char *errmsg)
{
    return qt_gguf_get_arr_elem(g, i, j, QT_GGUF_TYPE_FLOAT32, out, errmsg);
}

qt_status qt_gguf_get_arr_i32(const qt_gguf *g, size_t i, size_t j, int32_t *out, char *errmsg)
{
    return qt_gguf_get_arr_elem(g, i, j, QT_GGUF_TYPE_INT32, out, errmsg);
}

qt_status qt_gguf_get_arr_str(const qt_gguf *g, size_t i, size_t j, const char **s,
                              size_t *len, char *errmsg)
{
    qt_status st = gg_want_elem(g, i, j, QT_GGUF_TYPE_STRING, s && len ? s : NULL, errmsg);
    if (st != QT_OK) return st;
    *s = (const char *)g->base + g->kv[i].strs[j].off;
    *len = g->kv[i].strs[j].len;
    return QT_OK;
}

/* ---- display ------------------------------------------------------------ */

typedef struct gg_out {
    char *buf;
    size_t cap, len; /* len < cap always (when cap > 0) */
} gg_out;

static void gg_put(gg_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void gg_put(gg_out *o, const char *fmt, ...)
{
    if (o->cap == 0 || o->len + 1 >= o->cap) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    o->len += (size_t)k;
    if (o->len > o->cap - 1) o->len = o->cap - 1;
}

static void gg_put_str(gg_out *o, const uint8_t *s, size_t n)
{
    gg_put(o, "\"");
    for (size_t i = 0; i < n; i++) {
        if (i >= GG_FMT_STR_BYTES) {
            gg_put(o, "...");
            break;
        }
        unsigned char c = s[i];
        if (c == '"' || c == '\\') gg_put(o, "\\%c", c);
        else if (c == '\n') gg_put(o, "\\n");
        else if (c == '\t') gg_put(o, "\\t");
        else if (c == '\r') gg_put(o, "\\r");
        else if (c < 0x20 || c == 0x7f) gg_put(o, "\\x%02x", c);
        else gg_put(o, "%c", c); /* bytes >= 0x80 pass (UTF-8) */
    }
    gg_put(o, "\"");
}

static void gg_put_scalar(gg_out *o, qt_gguf_type t, const uint8_t *p)
{
    switch (t) {
    case QT_GGUF_TYPE_UINT8: gg_put(o, "%u", (unsigned)p[0]); break;
    case QT_GGUF_TYPE_INT8: gg_put(o, "%d", (int)(int8_t)p[0]); break;
    case QT_GGUF_TYPE_UINT16: gg_put(o, "%u", (unsigned)qt_load_le16(p)); break;
    case QT_GGUF_TYPE_INT16: gg_put(o, "%d", (int)(int16_t)qt_load_le16(p)); break;
    case QT_GGUF_TYPE_UINT32: gg_put(o, "%lu", (unsigned long)qt_load_le32(p)); break;
    case QT_GGUF_TYPE_INT32: gg_put(o, "%ld", (long)(int32_t)qt_load_le32(p)); break;
    case QT_GGUF_TYPE_UINT64: gg_put(o, "%llu", (unsigned long long)qt_load_le64(p)); break;
    case QT_GGUF_TYPE_INT64: gg_put(o, "%lld", (long long)(int64_t)qt_load_le64(p)); break;
    case QT_GGUF_TYPE_FLOAT32: gg_put(o, "%.9g", (double)qt_f32_from_bits(qt_load_le32(p))); break;
    case QT_GGUF_TYPE_FLOAT64: {
        uint64_t u = qt_load_le64(p);
        double d;
        memcpy(&d, &u, 8);
        gg_put(o, "%.17g", d);
        break;
    }
    case QT_GGUF_TYPE_BOOL: gg_put(o, "%s", p[0] ? "true" : "false"); break;
    default: gg_put(o, "?"); break;
    }
}

size_t qt_gguf_kv_format(const qt_gguf *g, size_t i, char *buf, size_t cap)
{
    gg_out o = {buf, cap, 0};
    if (cap == 0) return 0;
    buf[0] = '\0';
    if (i >= g->n_kv) return 0;
    const gg_kv *kv = &g->kv[i];
    const uint8_t *v = g->base + kv->val.off;
    if (kv->type == QT_GGUF_TYPE_STRING) {
        gg_put_str(&o, v, kv->val.len);
    } else if (kv->type != QT_GGUF_TYPE_ARRAY) {
        gg_put_scalar(&o, kv->type, v);
    } else {
        gg_put(&o, "[%s; %zu]", gg_type_names[kv->elem_type], kv->count);
        for (size_t j = 0; j < kv->count; j++) {
            if (j == GG_FMT_ARRAY_ITEMS) {
                gg_put(&o, ", ...");
                break;
            }
            gg_put(&o, j ? ", " : " ");
            if (kv->elem_type == QT_GGUF_TYPE_STRING)
                gg_put_str(&o, g->base + kv->strs[j].off, kv->strs[j].len);
            else
                gg_put_scalar(&o, kv->elem_type, v + j * gg_type_sizes[kv->elem_type]);
        }
    }
    return o.len;
}

/* ---- tensors ------------------------------------------------------------- */

size_t qt_gguf_n_tensors(const qt_gguf *g) { return g->n_tensors; }

const char *qt_gguf_tensor_name(const qt_gguf *g, size_t t)
{
    return t < g->n_tensors ? g->tensors[t].name : NULL;
}

qt_ggml_type qt_gguf_tensor_type(const qt_gguf *g, size_t t)
{
    return t < g->n_tensors ? g->tensors[t].type : QT_GGML_TYPE_COUNT;
}

uint32_t qt_gguf_tensor_n_dims(const qt_gguf *g, size_t t)
{
    return t < g->n_tensors ? g->tensors[t].n_dims : 0;
}

const int64_t *qt_gguf_tensor_ne(const qt_gguf *g, size_t t)
{
    return t < g->n_tensors ? g->tensors[t].ne : NULL;
}

int64_t qt_gguf_tensor_n_elements(const qt_gguf *g, size_t t)
{
    return t < g->n_tensors ? g->tensors[t].n_elements : 0;
}

size_t qt_gguf_tensor_nbytes(const qt_gguf *g, size_t t)
{
    return t < g->n_tensors ? g->tensors[t].nbytes : 0;
}

size_t qt_gguf_tensor_offset(const qt_gguf *g, size_t t)
{
    return t < g->n_tensors ? g->data_off + g->tensors[t].rel_off : 0;
}

const void *qt_gguf_tensor_data(const qt_gguf *g, size_t t)
{
    return t < g->n_tensors ? g->base + g->data_off + g->tensors[t].rel_off : NULL;
}

int64_t qt_gguf_find_tensor(const qt_gguf *g, const char *name)
{
    return name ? gg_index_find(g->tensor_sorted, g->n_tensors, name) : -1;
}

qt_status qt_gguf_tensor_to_f32(const qt_gguf *g, size_t t, size_t first, size_t count,
                                float *dst, char *errmsg)
{
    qt_status st = QT_OK;
    QT_CHECK(t < g->n_tensors, QT_ERR_ARG, "%s: tensor index %zu out of range (%zu tensors)",
             g->name, t, g->n_tensors);
    const gg_tensor *ti = &g->tensors[t];
    size_t n = (size_t)ti->n_elements, end;
    QT_CHECK(qt_add_size(first, count, &end) && end <= n, QT_ERR_ARG,
             "%s: tensor '%s': range [%zu, +%zu) outside its %zu elements", g->name, ti->name,
             first, count, n);
    QT_CHECK(dst || count == 0, QT_ERR_ARG, "%s: tensor '%s': NULL destination", g->name,
             ti->name);
    const uint8_t *d = g->base + g->data_off + ti->rel_off;
    switch (ti->type) {
    case QT_GGML_TYPE_F32:
        for (size_t k = 0; k < count; k++)
            dst[k] = qt_f32_from_bits(qt_load_le32(d + 4 * (first + k)));
        break;
    case QT_GGML_TYPE_F16:
        for (size_t k = 0; k < count; k++)
            dst[k] = qt_fp16_to_fp32(qt_load_le16(d + 2 * (first + k)));
        break;
    case QT_GGML_TYPE_BF16:
        for (size_t k = 0; k < count; k++)
            dst[k] = qt_bf16_to_fp32(qt_load_le16(d + 2 * (first + k)));
        break;
    case QT_GGML_TYPE_Q8_0:
        /* block: fp16 scale d, then 32 int8 codes; x = d * q */
        for (size_t k = 0; k < count; k++) {
            size_t e = first + k;
            const uint8_t *blk = d + (e / 32) * 34;
            float scale = qt_fp16_to_fp32(qt_load_le16(blk));
            dst[k] = scale * (float)(int8_t)blk[2 + e % 32];
        }
        break;
    default:
        QT_CHECK(0, QT_ERR_UNSUPPORTED, "%s: tensor '%s': unsupported ggml type '%s'", g->name,
                 ti->name, gg_traits[ti->type].name);
    }
fail:
    return st;
}
