/* formats/safetensors.c: the validating, memory-mapped safetensors reader
 * (rules S1-S28 of specs/input-safety.md B.6). The writer is st_writer.c. */
#include "formats/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/half.h"
#include "formats/json.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "qtool's safetensors reader assumes a little-endian host"
#endif

struct qt_st_reader {
    char *path;                 /* owned: the path or the memory name */
    const unsigned char *base;  /* (size) the file bytes: mapping or borrowed buffer */
    size_t size;
    bool mapped;                /* base is our mmap */
    int fd;                     /* open while mapped (S28 re-checks), else -1 */
    struct stat st0;            /* fstat at open */
    uint64_t header_len;        /* N */
    size_t n_tensors;
    qt_st_tensor *tensors;      /* (n_tensors) in data order */
    size_t *by_name;            /* (n_tensors) indices sorted by name */
    size_t n_meta;
    const char **meta;          /* (2 * n_meta) key, value, key, value ... */
    char *arena;                /* owned: every name, key and value */
};

/* ---- rules ----------------------------------------------------------- */

static const struct {
    const char *name, *tag;
} rules[QT_ST_RULE_COUNT] = {
    [QT_ST_RULE_OK] = {"ok", ""},
    [QT_ST_RULE_IO] = {"i/o error", ""},
    [QT_ST_RULE_HEADER_TOO_SMALL] = {"header too small", "S1"},
    [QT_ST_RULE_HEADER_TOO_LARGE] = {"header too large", "S2"},
    [QT_ST_RULE_HEADER_LENGTH] = {"header length past end of file", "S3"},
    [QT_ST_RULE_HEADER_OVERFLOW] = {"header length overflows", "S4"},
    [QT_ST_RULE_HEADER_UTF8] = {"header not utf-8", "S5"},
    [QT_ST_RULE_HEADER_JSON] = {"header not valid json", "S6"},
    [QT_ST_RULE_HEADER_NOT_OBJECT] = {"header not a json object", "S7"},
    [QT_ST_RULE_DUPLICATE_KEY] = {"duplicate key", "S8"},
    [QT_ST_RULE_METADATA_VALUE] = {"bad __metadata__", "S9"},
    [QT_ST_RULE_TENSOR_ENTRY] = {"bad tensor entry", "S11"},
    [QT_ST_RULE_DTYPE_UNKNOWN] = {"unknown dtype", "S12"},
    [QT_ST_RULE_SHAPE_DIM] = {"bad dimension", "S13"},
    [QT_ST_RULE_RANK_TOO_LARGE] = {"too many dimensions", "S13"},
    [QT_ST_RULE_SHAPE_OVERFLOW] = {"element count overflows", "S14"},
    [QT_ST_RULE_SIZE_OVERFLOW] = {"byte size overflows", "S15"},
    [QT_ST_RULE_SUBBYTE_MISALIGNED] = {"sub-byte tensor not byte-sized", "S16"},
    [QT_ST_RULE_OFFSET_REVERSED] = {"data_offsets end before begin", "S17"},
    [QT_ST_RULE_SIZE_MISMATCH] = {"data_offsets do not match shape and dtype", "S18"},
    [QT_ST_RULE_OFFSET_GAP] = {"gap in the data buffer", "S19"},
    [QT_ST_RULE_OFFSET_OVERLAP] = {"overlapping tensors", "S20"},
    [QT_ST_RULE_OFFSET_PAST_END] = {"tensor past the end of the data", "S21"},
    [QT_ST_RULE_TRUNCATED] = {"file truncated", "S22"},
    [QT_ST_RULE_TRAILING_BYTES] = {"trailing bytes after the data", "S23"},
    [QT_ST_RULE_TOO_DEEP] = {"header nested too deep", "S25"},
    [QT_ST_RULE_FILE_CHANGED] = {"file changed while mapped", "S28"},
    [QT_ST_RULE_RESERVED_NAME] = {"tensor named __metadata__", "S29"},
};

const char *qt_st_rule_name(qt_st_rule rule)
{
    return (int)rule >= 0 && rule < QT_ST_RULE_COUNT ? rules[rule].name : "?";
}

const char *qt_st_rule_tag(qt_st_rule rule)
{
    return (int)rule >= 0 && rule < QT_ST_RULE_COUNT ? rules[rule].tag : "";
}

/* ---- exact numbers ------------------------------------------------------
 * cJSON stores numbers as doubles, which cannot hold every u64. The header
 * is lexed a second time alongside the tree: cJSON keeps document order, so
 * the k-th number node met in document order is the k-th number token of the
 * text (the lexer skips strings). Number tokens use cJSON's character set. */

typedef struct numlex {
    const char *p, *end;
} numlex;

static bool numchar(char c)
{
    return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

/* Next number token; false if none is left (cannot happen for a tree that
 * cJSON accepted, but is handled). */
static bool lex_next(numlex *lx, const char **tok, size_t *len)
{
    const char *p = lx->p;
    while (p < lx->end) {
        char c = *p;
        if (c == '"') {
            p++;
            while (p < lx->end && *p != '"') p += (*p == '\\') ? 2 : 1;
            p++;
            continue;
        }
        if (c == '-' || (c >= '0' && c <= '9')) {
            const char *s = p;
            while (p < lx->end && numchar(*p)) p++;
            *tok = s;
            *len = (size_t)(p - s);
            lx->p = p;
            return true;
        }
        p++;
    }
    lx->p = lx->end;
    return false;
}

typedef enum numkind { NUM_OK, NUM_NOT_UINT, NUM_TOO_BIG } numkind;

static numkind lex_u64(numlex *lx, uint64_t *v)
{
    const char *tok;
    size_t len;
    *v = 0;
    if (!lex_next(lx, &tok, &len) || len == 0) return NUM_NOT_UINT;
    uint64_t x = 0;
    for (size_t i = 0; i < len; i++) {
        if (tok[i] < '0' || tok[i] > '9') return NUM_NOT_UINT;
        if (!qt_mul_u64(x, 10, &x) || !qt_add_u64(x, (uint64_t)(tok[i] - '0'), &x))
            return NUM_TOO_BIG;
    }
    *v = x;
    return NUM_OK;
}

/* Skips the number tokens of a subtree that is not otherwise read. */
static void lex_skip(numlex *lx, const cJSON *node)
{
    if (cJSON_IsNumber(node)) {
        const char *tok;
        size_t len;
        lex_next(lx, &tok, &len);
        return;
    }
    for (const cJSON *c = node->child; c; c = c->next) lex_skip(lx, c);
}

/* True when the JSON text holds a \u0000 escape (cJSON would cut the
 * string there, so two different keys could read the same). */
static bool has_nul_escape(const char *s, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) {
        if (s[i] != '\\') continue;
        if (s[i + 1] == 'u' && i + 5 < n && memcmp(s + i + 2, "0000", 4) == 0) return true;
        i++; /* skip the escaped character */
    }
    return false;
}

/* ---- header parsing --------------------------------------------------- */

static int cmp_by_offset(const void *a, const void *b)
{
    const qt_st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    uint64_t xe = x->begin + x->nbytes, ye = y->begin + y->nbytes;
    if (xe != ye) return xe < ye ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index; /* document order */
}

/* Sorts idx[0..n) by tensor name (byte-wise); a merge sort because qsort
 * has no context argument. tmp holds n entries. */
static void sort_by_name(size_t *idx, size_t *tmp, size_t n, const qt_st_tensor *t)
{
    if (n < 2) return;
    size_t h = n / 2;
    sort_by_name(idx, tmp, h, t);
    sort_by_name(idx + h, tmp, n - h, t);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n)
        tmp[k++] = strcmp(t[idx[i]].name, t[idx[j]].name) <= 0 ? idx[i++] : idx[j++];
    while (i < h) tmp[k++] = idx[i++];
    while (j < n) tmp[k++] = idx[j++];
    memcpy(idx, tmp, n * sizeof *idx);
}

#define ST_FAIL(rl, ...)                                        \
    do {                                                        \
        *rule = (rl);                                           \
        st = qt_set_err(errmsg, QT_ERR_FORMAT, __VA_ARGS__);    \
        goto fail;                                              \
    } while (0)

/* Parses and validates one tensor entry e into t (all but the offsets'
 * place in the buffer, checked once every entry is read).
 * The lexer is positioned at the entry's first number token. */
static qt_status parse_tensor(const char *file, const cJSON *e, numlex *lx, qt_st_tensor *t,
                              qt_st_rule *rule, char *errmsg)
{
    qt_status st = QT_OK;
    const char *name = e->string;
    if (!cJSON_IsObject(e))
        ST_FAIL(QT_ST_RULE_TENSOR_ENTRY, "%s: tensor '%.100s': entry is not a JSON object (S11)",
                file, name);
    const cJSON *dtype = NULL;
    bool have_shape = false, have_offsets = false;
    const char *bad_field = NULL;      /* first mistyped field */
    numkind dim_err = NUM_OK;          /* first bad dimension */
    size_t n_dims = 0;
    uint64_t off[2] = {0, 0};
    size_t n_off = 0;
    bool off_bad = false;

    for (const cJSON *f = e->child; f; f = f->next) {
        if (strcmp(f->string, "dtype") == 0) {
            dtype = f;
            if (!cJSON_IsString(f) && !bad_field) bad_field = "dtype";
            lex_skip(lx, f);
        } else if (strcmp(f->string, "shape") == 0) {
            have_shape = true;
            if (!cJSON_IsArray(f)) {
                if (!bad_field) bad_field = "shape";
                lex_skip(lx, f);
                continue;
            }
            for (const cJSON *d = f->child; d; d = d->next) {
                if (!cJSON_IsNumber(d)) {
                    if (!bad_field) bad_field = "shape";
                    lex_skip(lx, d);
                    continue;
                }
                uint64_t v;
                numkind k = lex_u64(lx, &v);
                if (k != NUM_OK && dim_err == NUM_OK) dim_err = k;
                if (n_dims < QT_ST_MAX_DIMS) t->shape[n_dims] = v;
                n_dims++;
            }
        } else if (strcmp(f->string, "data_offsets") == 0) {
            have_offsets = true;
            if (!cJSON_IsArray(f)) {
                if (!bad_field) bad_field = "data_offsets";
                lex_skip(lx, f);
                continue;
            }
            for (const cJSON *d = f->child; d; d = d->next) {
                if (!cJSON_IsNumber(d)) {
                    off_bad = true;
                    lex_skip(lx, d);
                    continue;
                }
                uint64_t v;
                if (lex_u64(lx, &v) != NUM_OK) off_bad = true;
                if (n_off < 2) off[n_off] = v;
                n_off++;
            }
        } else {
            lex_skip(lx, f); /* unknown fields are ignored, as the reference does */
        }
    }

    if (!dtype || !have_shape || !have_offsets)
        ST_FAIL(QT_ST_RULE_TENSOR_ENTRY, "%s: tensor '%.100s': missing \"%s\" (S11)", file, name,
                !dtype ? "dtype" : !have_shape ? "shape" : "data_offsets");
    if (bad_field)
        ST_FAIL(QT_ST_RULE_TENSOR_ENTRY, "%s: tensor '%.100s': \"%s\" has the wrong JSON type (S11)",
                file, name, bad_field);
    if (off_bad || n_off != 2)
        ST_FAIL(QT_ST_RULE_TENSOR_ENTRY,
                "%s: tensor '%.100s': data_offsets must be two non-negative integers (S11)", file,
                name);
    if (qt_dtype_parse(dtype->valuestring, &t->dtype) != QT_OK)
        ST_FAIL(QT_ST_RULE_DTYPE_UNKNOWN, "%s: tensor '%.100s': unknown dtype '%.32s' (S12)", file,
                name, dtype->valuestring);
    if (n_dims > QT_ST_MAX_DIMS)
        ST_FAIL(QT_ST_RULE_RANK_TOO_LARGE, "%s: tensor '%.100s': %zu dimensions, more than %d (S13)",
                file, name, n_dims, QT_ST_MAX_DIMS);
    if (dim_err != NUM_OK)
        ST_FAIL(QT_ST_RULE_SHAPE_DIM, "%s: tensor '%.100s': %s (S13)", file, name,
                dim_err == NUM_TOO_BIG ? "a dimension exceeds 2^64-1"
                                       : "dimensions must be non-negative integers");
    t->n_dims = n_dims;
    uint64_t nel = 1;
    for (size_t i = 0; i < n_dims; i++)
        if (!qt_mul_u64(nel, t->shape[i], &nel))
            ST_FAIL(QT_ST_RULE_SHAPE_OVERFLOW, "%s: tensor '%.100s': element count overflows (S14)",
                    file, name);
    uint64_t nbits;
    if (!qt_mul_u64(nel, qt_dtype_bits(t->dtype), &nbits))
        ST_FAIL(QT_ST_RULE_SIZE_OVERFLOW, "%s: tensor '%.100s': size in bits overflows (S15)", file,
                name);
    if (nbits % 8)
        ST_FAIL(QT_ST_RULE_SUBBYTE_MISALIGNED,
                "%s: tensor '%.100s': %llu elements of %s are not a whole number of bytes (S16)",
                file, name, (unsigned long long)nel, qt_dtype_name(t->dtype));
    if (off[1] < off[0])
        ST_FAIL(QT_ST_RULE_OFFSET_REVERSED,
                "%s: tensor '%.100s': data_offsets [%llu, %llu) end before they begin (S17)", file,
                name, (unsigned long long)off[0], (unsigned long long)off[1]);
    if (off[1] - off[0] != nbits / 8)
        ST_FAIL(QT_ST_RULE_SIZE_MISMATCH,
                "%s: tensor '%.100s': data_offsets [%llu, %llu) do not match %llu elements of %s "
                "(%llu bytes) (S18)",
                file, name, (unsigned long long)off[0], (unsigned long long)off[1],
                (unsigned long long)nel, qt_dtype_name(t->dtype), (unsigned long long)(nbits / 8));
    t->n_elements = nel;
    t->begin = off[0];
    t->nbytes = off[1] - off[0];
    return QT_OK;
fail:
    return st;
}

static qt_status parse_metadata(qt_st_reader *r, const cJSON *m, char **arena_p,
                                qt_st_rule *rule, char *errmsg)
{
    qt_status st = QT_OK;
    if (!cJSON_IsObject(m))
        ST_FAIL(QT_ST_RULE_METADATA_VALUE, "%s: __metadata__ is not a JSON object (S9)", r->path);
    size_t i = 0;
    for (const cJSON *c = m->child; c; c = c->next, i++) {
        if (!cJSON_IsString(c))
            ST_FAIL(QT_ST_RULE_METADATA_VALUE,
                    "%s: __metadata__ value of '%.100s' is not a string (S9)", r->path, c->string);
        size_t kl = strlen(c->string) + 1, vl = strlen(c->valuestring) + 1;
        memcpy(*arena_p, c->string, kl);
        r->meta[2 * i] = *arena_p;
        *arena_p += kl;
        memcpy(*arena_p, c->valuestring, vl);
        r->meta[2 * i + 1] = *arena_p;
        *arena_p += vl;
    }
    return QT_OK;
fail:
    return st;
}

/* The header length: the file holds it, it stays under the cap (S1-S4). */
static qt_status parse_length(qt_st_reader *r, qt_st_rule *rule, char *errmsg)
{
    qt_status st = QT_OK;
    const char *file = r->path;
    if (r->size < 8)
        ST_FAIL(QT_ST_RULE_HEADER_TOO_SMALL, "%s: %zu bytes, too small for a header (S1)", file,
                r->size);
    uint64_t n = qt_load_le64(r->base), total;
    if (!qt_add_u64(n, 8, &total) || total > SIZE_MAX)
        ST_FAIL(QT_ST_RULE_HEADER_OVERFLOW, "%s: header length %llu overflows (S4)", file,
                (unsigned long long)n);
    if (n > QT_ST_MAX_HEADER)
        ST_FAIL(QT_ST_RULE_HEADER_TOO_LARGE, "%s: header length %llu exceeds the %u-byte cap (S2)",
                file, (unsigned long long)n, QT_ST_MAX_HEADER);
    if (total > r->size)
        ST_FAIL(QT_ST_RULE_HEADER_LENGTH,
                "%s: header length %llu runs past the end of the %zu-byte file (S3)", file,
                (unsigned long long)n, r->size);
    r->header_len = n;
fail:
    return st;
}

/* The header as a JSON object (S5-S7: UTF-8, syntax, depth, duplicate
 * keys, no NUL). */
static qt_status parse_json(const qt_st_reader *r, cJSON **root, qt_st_rule *rule, char *errmsg)
{
    qt_status st = QT_OK;
    const char *file = r->path, *hdr = (const char *)r->base + 8;
    const size_t n = (size_t)r->header_len;
    qt_json_rule jr;
    char jmsg[QT_ERRMSG_SIZE];
    st = qt_json_parse(hdr, n, file, root, &jr, jmsg);
    if (st == QT_ERR_NOMEM) return qt_set_err(errmsg, st, "%s", jmsg);
    if (st != QT_OK) {
        static const qt_st_rule map[] = {
            [QT_JSON_OK] = QT_ST_RULE_HEADER_JSON,
            [QT_JSON_BAD_UTF8] = QT_ST_RULE_HEADER_UTF8,
            [QT_JSON_NUL_BYTE] = QT_ST_RULE_HEADER_NOT_OBJECT,
            [QT_JSON_SYNTAX] = QT_ST_RULE_HEADER_JSON,
            [QT_JSON_TOO_DEEP] = QT_ST_RULE_TOO_DEEP,
            [QT_JSON_DUPLICATE] = QT_ST_RULE_DUPLICATE_KEY,
        };
        qt_st_rule rl = (unsigned)jr < sizeof map / sizeof map[0] ? map[jr] : QT_ST_RULE_HEADER_JSON;
        ST_FAIL(rl, "%s (%s)", jmsg, qt_st_rule_tag(rl));
    }
    if (!cJSON_IsObject(*root))
        ST_FAIL(QT_ST_RULE_HEADER_NOT_OBJECT, "%s: header is not a JSON object (S7)", file);
    if (has_nul_escape(hdr, n))
        ST_FAIL(QT_ST_RULE_HEADER_NOT_OBJECT, "%s: header holds a \\u0000 escape (S7)", file);
fail:
    return st;
}

/* Every entry: tensors (dtype, shape, offsets) and the metadata, their
 * strings copied into one arena sized from the header first. */
static qt_status parse_entries(qt_st_reader *r, const cJSON *root, size_t **tmp,
                               qt_st_rule *rule, char *errmsg)
{
    qt_status st = QT_OK;
    const char *file = r->path, *hdr = (const char *)r->base + 8;
    /* count entries and the bytes their strings need */
    size_t n_tensors = 0, n_meta = 0, arena_len = 1;
    const cJSON *meta = NULL;
    for (const cJSON *c = root->child; c; c = c->next) {
        size_t len = strlen(c->string) + 1;
        if (strcmp(c->string, "__metadata__") == 0) {
            meta = c;
            for (const cJSON *m = cJSON_IsObject(c) ? c->child : NULL; m; m = m->next) {
                n_meta++;
                len += strlen(m->string) + 1 + (cJSON_IsString(m) ? strlen(m->valuestring) + 1 : 0);
            }
        } else {
            n_tensors++;
        }
        arena_len += len; /* bounded by the header size: cannot overflow */
    }
    r->arena = qt_malloc(arena_len);
    r->tensors = qt_calloc(n_tensors ? n_tensors : 1, sizeof *r->tensors);
    r->by_name = qt_malloc((n_tensors ? n_tensors : 1) * sizeof *r->by_name);
    *tmp = qt_malloc((n_tensors ? n_tensors : 1) * sizeof **tmp);
    r->meta = qt_malloc((n_meta ? 2 * n_meta : 1) * sizeof *r->meta);
    QT_CHECK(r->arena && r->tensors && r->by_name && *tmp && r->meta, QT_ERR_NOMEM,
             "%s: out of memory for %zu tensors", file, n_tensors);
    /* parse them, in header order */
    char *ap = r->arena;
    numlex lx = {hdr, hdr + r->header_len};
    size_t ti = 0;
    for (const cJSON *c = root->child; c; c = c->next) {
        if (c == meta) {
            r->n_meta = n_meta;
            QT_TRY(parse_metadata(r, c, &ap, rule, errmsg));
            lex_skip(&lx, c); /* only strings there, but keep the lexer honest */
            continue;
        }
        qt_st_tensor *t = &r->tensors[ti];
        QT_TRY(parse_tensor(file, c, &lx, t, rule, errmsg));
        size_t len = strlen(c->string) + 1;
        memcpy(ap, c->string, len);
        t->name = ap;
        ap += len;
        t->index = ti++;
    }
    r->n_tensors = n_tensors;
fail:
    return st;
}

/* Contiguity: sorted by offsets, each tensor begins where the previous
 * ended, the first at 0, the last at the end of the data (S19-S23). */
static qt_status check_offsets(qt_st_reader *r, qt_st_rule *rule, char *errmsg)
{
    qt_status st = QT_OK;
    const char *file = r->path;
    const size_t n_tensors = r->n_tensors;
    const uint64_t data_size = r->size - 8 - r->header_len;
    qsort(r->tensors, n_tensors, sizeof *r->tensors, cmp_by_offset);
    uint64_t expect = 0;
    for (size_t i = 0; i < n_tensors; i++) {
        qt_st_tensor *t = &r->tensors[i];
        if (t->begin > expect) {
            if (i == 0)
                ST_FAIL(QT_ST_RULE_OFFSET_GAP,
                        "%s: tensor '%.100s': first tensor begins at %llu, not 0 (S19)", file,
                        t->name, (unsigned long long)t->begin);
            ST_FAIL(QT_ST_RULE_OFFSET_GAP,
                    "%s: tensor '%.100s': begins at %llu, leaving a gap after byte %llu (S19)",
                    file, t->name, (unsigned long long)t->begin, (unsigned long long)expect);
        }
        if (t->begin < expect)
            ST_FAIL(QT_ST_RULE_OFFSET_OVERLAP,
                    "%s: tensor '%.100s': [%llu, %llu) overlaps the tensor before it (S20)", file,
                    t->name, (unsigned long long)t->begin,
                    (unsigned long long)(t->begin + t->nbytes));
        expect = t->begin + t->nbytes; /* begin <= previous end: no overflow */
    }
    for (size_t i = 0; i < n_tensors; i++) {
        qt_st_tensor *t = &r->tensors[i];
        uint64_t end = t->begin + t->nbytes;
        if (end <= data_size) continue;
        if (t->begin >= data_size)
            ST_FAIL(QT_ST_RULE_OFFSET_PAST_END,
                    "%s: tensor '%.100s': [%llu, %llu) lies past the %llu-byte data buffer (S21)",
                    file, t->name, (unsigned long long)t->begin, (unsigned long long)end,
                    (unsigned long long)data_size);
        ST_FAIL(QT_ST_RULE_TRUNCATED,
                "%s: tensor '%.100s': file truncated, %llu bytes of [%llu, %llu) missing (S22)",
                file, t->name, (unsigned long long)(end - data_size), (unsigned long long)t->begin,
                (unsigned long long)end);
    }
    if (expect < data_size)
        ST_FAIL(QT_ST_RULE_TRAILING_BYTES,
                "%s: %llu trailing bytes after the last tensor (S23)", file,
                (unsigned long long)(data_size - expect));
fail:
    return st;
}

/* Validates r->base[0..r->size) and builds the tables. */
static qt_status parse(qt_st_reader *r, qt_st_rule *rule, char *errmsg)
{
    qt_status st = QT_OK;
    cJSON *root = NULL;
    size_t *tmp = NULL;
    *rule = QT_ST_RULE_OK;
    /* the header, then its entries, then where the data lies */
    QT_TRY(parse_length(r, rule, errmsg));
    QT_TRY(parse_json(r, &root, rule, errmsg));
    QT_TRY(parse_entries(r, root, &tmp, rule, errmsg));
    cJSON_Delete(root);
    root = NULL;
    QT_TRY(check_offsets(r, rule, errmsg));
    /* data pointers and the by-name index */
    const uint64_t n = r->header_len;
    const unsigned char *data = r->base + 8 + n;
    for (size_t i = 0; i < r->n_tensors; i++) {
        qt_st_tensor *t = &r->tensors[i];
        t->index = i;
        t->file_offset = 8 + n + t->begin;
        t->data = data + t->begin;
        r->by_name[i] = i;
    }
    sort_by_name(r->by_name, tmp, r->n_tensors, r->tensors);
    qt_free(tmp);
    *rule = QT_ST_RULE_OK;
    return QT_OK;
fail:
    cJSON_Delete(root);
    qt_free(tmp);
    return st;
}

/* ---- open / close ------------------------------------------------------ */

void qt_st_reader_close(qt_st_reader *r)
{
    if (!r) return;
    if (r->mapped && r->base) munmap((void *)r->base, r->size);
    if (r->fd >= 0) close(r->fd);
    qt_free(r->path);
    qt_free(r->tensors);
    qt_free(r->by_name);
    qt_free(r->meta);
    qt_free(r->arena);
    memset(r, 0, sizeof *r);
    qt_free(r);
}

static qt_st_reader *reader_new(const char *name)
{
    qt_st_reader *r = qt_calloc(1, sizeof *r);
    if (!r) return NULL;
    r->fd = -1;
    r->path = qt_strdup(name ? name : "<memory>");
    if (!r->path) {
        qt_free(r);
        return NULL;
    }
    return r;
}

static bool same_stat(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

qt_status qt_st_reader_open_ex(const char *path, qt_st_reader **out, qt_st_rule *rule,
                               char *errmsg)
{
    qt_status st = QT_OK;
    qt_st_rule dummy;
    if (!rule) rule = &dummy;
    *rule = QT_ST_RULE_IO;
    *out = NULL;
    qt_st_reader *r = reader_new(path);
    QT_CHECK(r, QT_ERR_NOMEM, "%s: out of memory", path);
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    QT_CHECK(r->fd >= 0, QT_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    QT_CHECK(fstat(r->fd, &r->st0) == 0, QT_ERR_IO, "cannot stat '%s': %s", path,
             strerror(errno));
    QT_CHECK(S_ISREG(r->st0.st_mode), QT_ERR_IO, "'%s' is not a regular file", path);
    if (r->st0.st_size < 8)
        ST_FAIL(QT_ST_RULE_HEADER_TOO_SMALL, "%s: %lld bytes, too small for a header (S1)", path,
                (long long)r->st0.st_size);
    QT_CHECK((uint64_t)r->st0.st_size <= SIZE_MAX, QT_ERR_IO, "'%s' is too large to map", path);
    r->size = (size_t)r->st0.st_size;
    void *m = mmap(NULL, r->size, PROT_READ, MAP_SHARED, r->fd, 0);
    QT_CHECK(m != MAP_FAILED, QT_ERR_IO, "cannot map '%s': %s", path, strerror(errno));
    r->base = m;
    r->mapped = true;
    struct stat s1;
    QT_CHECK(fstat(r->fd, &s1) == 0, QT_ERR_IO, "cannot stat '%s': %s", path, strerror(errno));
    if (!same_stat(&r->st0, &s1))
        ST_FAIL(QT_ST_RULE_FILE_CHANGED, "%s: file changed while being mapped (S28)", path);
    QT_TRY(parse(r, rule, errmsg));
    QT_CHECK(fstat(r->fd, &s1) == 0, QT_ERR_IO, "cannot stat '%s': %s", path, strerror(errno));
    if (!same_stat(&r->st0, &s1))
        ST_FAIL(QT_ST_RULE_FILE_CHANGED, "%s: file changed while its header was read (S28)",
                path);
    *out = r;
    return QT_OK;
fail:
    qt_st_reader_close(r);
    return st;
}

qt_status qt_st_reader_open(const char *path, qt_st_reader **out, char *errmsg)
{
    return qt_st_reader_open_ex(path, out, NULL, errmsg);
}

qt_status qt_st_reader_open_mem_ex(const void *buf, size_t n, const char *name,
                                   qt_st_reader **out, qt_st_rule *rule, char *errmsg)
{
    qt_status st = QT_OK;
    qt_st_rule dummy;
    if (!rule) rule = &dummy;
    *rule = QT_ST_RULE_OK;
    *out = NULL;
    qt_st_reader *r = reader_new(name);
    QT_CHECK(r, QT_ERR_NOMEM, "%s: out of memory", name ? name : "<memory>");
    r->base = buf;
    r->size = buf ? n : 0;
    QT_TRY(parse(r, rule, errmsg));
    *out = r;
    return QT_OK;
fail:
    qt_st_reader_close(r);
    return st;
}

qt_status qt_st_reader_open_mem(const void *buf, size_t n, const char *name,
                                qt_st_reader **out, char *errmsg)
{
    return qt_st_reader_open_mem_ex(buf, n, name, out, NULL, errmsg);
}

/* ---- accessors --------------------------------------------------------- */

const char *qt_st_reader_path(const qt_st_reader *r) { return r->path; }
uint64_t qt_st_reader_file_size(const qt_st_reader *r) { return r->size; }
uint64_t qt_st_reader_header_size(const qt_st_reader *r) { return r->header_len; }
size_t qt_st_reader_n_tensors(const qt_st_reader *r) { return r->n_tensors; }

const qt_st_tensor *qt_st_reader_tensor(const qt_st_reader *r, size_t i)
{
    return i < r->n_tensors ? &r->tensors[i] : NULL;
}

const qt_st_tensor *qt_st_reader_find(const qt_st_reader *r, const char *name)
{
    size_t lo = 0, hi = r->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const qt_st_tensor *t = &r->tensors[r->by_name[mid]];
        int c = strcmp(name, t->name);
        if (c == 0) return t;
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return NULL;
}

size_t qt_st_reader_n_metadata(const qt_st_reader *r) { return r->n_meta; }

void qt_st_reader_metadata(const qt_st_reader *r, size_t i, const char **key, const char **value)
{
    *key = i < r->n_meta ? r->meta[2 * i] : NULL;
    *value = i < r->n_meta ? r->meta[2 * i + 1] : NULL;
}

const char *qt_st_reader_metadata_get(const qt_st_reader *r, const char *key)
{
    for (size_t i = 0; i < r->n_meta; i++)
        if (strcmp(r->meta[2 * i], key) == 0) return r->meta[2 * i + 1];
    return NULL;
}

qt_status qt_st_reader_check_unchanged(const qt_st_reader *r, char *errmsg)
{
    if (!r->mapped) return QT_OK;
    struct stat s;
    if (fstat(r->fd, &s) != 0)
        return qt_set_err(errmsg, QT_ERR_IO, "cannot stat '%s': %s", r->path, strerror(errno));
    if (!same_stat(&r->st0, &s))
        return qt_set_err(errmsg, QT_ERR_FORMAT, "%s: file changed while mapped (S28)", r->path);
    return QT_OK;
}

static void advise(const qt_st_reader *r, const qt_st_tensor *t, int advice)
{
    if (!r->mapped || !t || t->nbytes == 0) return;
    long pg = sysconf(_SC_PAGESIZE);
    uintptr_t page = pg > 0 ? (uintptr_t)pg : 4096;
    uintptr_t b = (uintptr_t)t->data & ~(page - 1);
    uintptr_t e = (uintptr_t)t->data + (uintptr_t)t->nbytes;
    madvise((void *)b, e - b, advice);
}

void qt_st_tensor_release(const qt_st_reader *r, const qt_st_tensor *t)
{
    advise(r, t, MADV_DONTNEED);
}

void qt_st_tensor_prefetch(const qt_st_reader *r, const qt_st_tensor *t)
{
    advise(r, t, MADV_WILLNEED);
}

/* ---- values ----------------------------------------------------------- */

#define CONVERT_INT(type)                                      \
    for (size_t i = 0; i < count; i++) {                       \
        type v;                                                \
        memcpy(&v, src + i * sizeof(type), sizeof(type));      \
        dst[i] = (float)v;                                     \
    }

qt_status qt_st_tensor_to_f32(const qt_st_reader *r, const qt_st_tensor *t,
                              uint64_t first_elem, size_t count, float *dst, char *errmsg)
{
    if (!qt_dtype_is_readable(t->dtype))
        return qt_set_err(errmsg, QT_ERR_UNSUPPORTED, "%s: tensor '%.100s': unsupported dtype '%s'",
                          r->path, t->name, qt_dtype_name(t->dtype));
    if (first_elem > t->n_elements || count > t->n_elements - first_elem)
        return qt_set_err(errmsg, QT_ERR_ARG,
                          "%s: tensor '%.100s': elements [%llu, +%zu) outside its %llu", r->path,
                          t->name, (unsigned long long)first_elem, count,
                          (unsigned long long)t->n_elements);
    size_t bpe = qt_dtype_bits(t->dtype) / 8;
    const unsigned char *src = (const unsigned char *)t->data + first_elem * bpe;
    switch (t->dtype) {
    case QT_DTYPE_F32:
        if (count) memcpy(dst, src, count * 4);
        break;
    case QT_DTYPE_F16:
    case QT_DTYPE_BF16: {
        uint16_t tmp[1024];
        for (size_t i = 0; i < count; i += 1024) {
            size_t k = count - i < 1024 ? count - i : 1024;
            memcpy(tmp, src + 2 * i, 2 * k);
            if (t->dtype == QT_DTYPE_F16) qt_fp16_to_fp32_row(tmp, dst + i, k);
            else qt_bf16_to_fp32_row(tmp, dst + i, k);
        }
        break;
    }
    case QT_DTYPE_BOOL:
        for (size_t i = 0; i < count; i++) dst[i] = src[i] ? 1.0f : 0.0f;
        break;
    case QT_DTYPE_F64: CONVERT_INT(double); break;
    case QT_DTYPE_U8: CONVERT_INT(uint8_t); break;
    case QT_DTYPE_I8: CONVERT_INT(int8_t); break;
    case QT_DTYPE_I16: CONVERT_INT(int16_t); break;
    case QT_DTYPE_U16: CONVERT_INT(uint16_t); break;
    case QT_DTYPE_I32: CONVERT_INT(int32_t); break;
    case QT_DTYPE_U32: CONVERT_INT(uint32_t); break;
    case QT_DTYPE_I64: CONVERT_INT(int64_t); break;
    case QT_DTYPE_U64: CONVERT_INT(uint64_t); break;
    default:
        return qt_set_err(errmsg, QT_ERR_UNSUPPORTED, "%s: tensor '%.100s': unsupported dtype '%s'",
                          r->path, t->name, qt_dtype_name(t->dtype));
    }
    return QT_OK;
}
