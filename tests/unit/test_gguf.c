/* tests/unit/test_gguf.c: the GGUF reader. A tiny in-memory GGUF builder
 * (test-only) makes valid files and one handcrafted bad file per rule
 * G1-G16 of specs/input-safety.md (as llama.cpp's test-gguf does); every
 * prefix and a few thousand random mutations of a valid file must be
 * rejected or read without a crash; the real stories260K GGUF and the
 * llama.cpp vocab-only GGUFs must read, and stories260K's embedding must
 * equal the Hugging Face f32 copy's bytes. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "common/half.h"
#include "formats/gguf.h"
#include "testutil.h"

#define STORIES_GGUF "models/stories260K-gguf/stories260K.gguf"
#define STORIES_ST "models/stories260K-f32/model.safetensors"
#define N_MUTATIONS 3000

/* ---- a tiny GGUF builder --------------------------------------------------- */

typedef struct gb {
    uint8_t *b;
    size_t n, cap;
} gb;

static void gb_bytes(gb *f, const void *p, size_t n)
{
    if (f->n + n > f->cap) {
        size_t cap = f->cap ? f->cap : 256;
        while (cap < f->n + n) cap *= 2;
        f->b = realloc(f->b, cap);
        cr_assert(ne(ptr, f->b, NULL));
        f->cap = cap;
    }
    if (n) memcpy(f->b + f->n, p, n);
    f->n += n;
}
static void gb_u8(gb *f, uint8_t v) { gb_bytes(f, &v, 1); }
static void gb_u16(gb *f, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    gb_bytes(f, b, 2);
}
static void gb_u32(gb *f, uint32_t v)
{
    uint8_t b[4];
    qt_store_le32(b, v);
    gb_bytes(f, b, 4);
}
static void gb_u64(gb *f, uint64_t v)
{
    uint8_t b[8];
    qt_store_le64(b, v);
    gb_bytes(f, b, 8);
}
static void gb_f32(gb *f, float v) { gb_u32(f, qt_f32_bits(v)); }
static void gb_f64(gb *f, double v)
{
    uint64_t u;
    memcpy(&u, &v, 8);
    gb_u64(f, u);
}
static void gb_strn(gb *f, const char *s, size_t n)
{
    gb_u64(f, n);
    gb_bytes(f, s, n);
}
static void gb_str(gb *f, const char *s) { gb_strn(f, s, strlen(s)); }
static void gb_zeros(gb *f, size_t n)
{
    static const uint8_t z[256];
    while (n) {
        size_t k = n < sizeof z ? n : sizeof z;
        gb_bytes(f, z, k);
        n -= k;
    }
}
static void gb_pad(gb *f, size_t align)
{
    gb_zeros(f, (align - f->n % align) % align);
}
static void gb_header(gb *f, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    gb_bytes(f, "GGUF", 4);
    gb_u32(f, version);
    gb_u64(f, n_tensors);
    gb_u64(f, n_kv);
}
static void gb_key(gb *f, const char *key, qt_gguf_type t)
{
    gb_str(f, key);
    gb_u32(f, (uint32_t)t);
}
static void gb_kv_u32(gb *f, const char *key, uint32_t v)
{
    gb_key(f, key, QT_GGUF_TYPE_UINT32);
    gb_u32(f, v);
}
static void gb_kv_str(gb *f, const char *key, const char *v)
{
    gb_key(f, key, QT_GGUF_TYPE_STRING);
    gb_str(f, v);
}
/* A tensor info with n_dims dimensions ne[]. */
static void gb_tensor(gb *f, const char *name, uint32_t n_dims, const int64_t *ne, uint32_t type,
                      uint64_t off)
{
    gb_str(f, name);
    gb_u32(f, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) gb_u64(f, (uint64_t)ne[d]);
    gb_u32(f, type);
    gb_u64(f, off);
}
static void gb_free(gb *f)
{
    free(f->b);
    memset(f, 0, sizeof *f);
}

/* A small valid file: 4 pairs (architecture, alignment, a string array
 * and a float32 array), tensors "a" F32
 * [8, 2] (64 bytes, values 0..15) and "b" Q8_0 [64] (68 bytes). */
static void make_valid(gb *f, uint32_t align)
{
    gb_header(f, 3, 2, 4);
    gb_kv_str(f, "general.architecture", "llama");
    gb_kv_u32(f, "general.alignment", align);
    gb_key(f, "tokenizer.ggml.tokens", QT_GGUF_TYPE_ARRAY);
    gb_u32(f, QT_GGUF_TYPE_STRING);
    gb_u64(f, 3);
    gb_str(f, "<unk>"), gb_str(f, "<s>"), gb_str(f, "\xe2\x96\x81" "a");
    gb_key(f, "tokenizer.ggml.scores", QT_GGUF_TYPE_ARRAY);
    gb_u32(f, QT_GGUF_TYPE_FLOAT32);
    gb_u64(f, 3);
    gb_f32(f, 0.0f), gb_f32(f, -1.0f), gb_f32(f, -2.0f);
    gb_tensor(f, "a", 2, (const int64_t[]){8, 2}, QT_GGML_TYPE_F32, 0);
    uint64_t off_b = (64 + align - 1) / align * align;
    gb_tensor(f, "b", 1, (const int64_t[]){64}, QT_GGML_TYPE_Q8_0, off_b);
    gb_pad(f, align);
    for (int i = 0; i < 16; i++) gb_f32(f, (float)i);
    gb_zeros(f, off_b - 64);
    for (int blk = 0; blk < 2; blk++) {
        gb_u16(f, qt_fp32_to_fp16(0.5f));
        for (int i = 0; i < 32; i++) gb_u8(f, (uint8_t)(int8_t)(i - 16));
    }
}

/* Opens f from an exactly-sized heap copy (so ASan sees any overread). */
static qt_status open_copy(const gb *f, qt_gguf **g, qt_gguf_rule *rule, char *err)
{
    void *copy = malloc(f->n ? f->n : 1);
    if (f->n) memcpy(copy, f->b, f->n);
    qt_status st = qt_gguf_open_mem(copy, f->n, "t.gguf", g, rule, err);
    if (st == QT_OK) {
        /* keep the buffer alive with the reader: tests close via close_copy */
        return st;
    }
    free(copy);
    return st;
}

/* Expects f to be rejected under rule want, with "(Gn)" in the message. */
static void expect_rule(gb *f, qt_gguf_rule want)
{
    qt_gguf *g = (qt_gguf *)(uintptr_t)1; /* must be reset to NULL */
    qt_gguf_rule rule = QT_GGUF_RULE_OK;
    char err[QT_ERRMSG_SIZE] = "";
    qt_status st = open_copy(f, &g, &rule, err);
    cr_assert(eq(int, st, QT_ERR_FORMAT), "status %s: %s", qt_status_str(st), err);
    cr_assert(eq(ptr, g, NULL));
    cr_assert(eq(str, (char *)qt_gguf_rule_name(rule), (char *)qt_gguf_rule_name(want)),
              "message: %s", err);
    char tag[16];
    snprintf(tag, sizeof tag, "(%s)", qt_gguf_rule_name(want));
    cr_assert(ne(ptr, strstr(err, tag), NULL), "message: %s", err);
    cr_assert(eq(int, strncmp(err, "t.gguf: ", 8), 0), "message: %s", err);
    gb_free(f);
}

/* Opens f (copied into a buffer that lives until close_ok) and expects
 * success. */
static qt_gguf *open_ok(const gb *f, void **buf)
{
    qt_gguf *g = NULL;
    qt_gguf_rule rule = QT_GGUF_RULE_OK;
    char err[QT_ERRMSG_SIZE] = "";
    *buf = malloc(f->n);
    memcpy(*buf, f->b, f->n);
    qt_status st = qt_gguf_open_mem(*buf, f->n, "t.gguf", &g, &rule, err);
    cr_assert(eq(int, st, QT_OK), "unexpected failure: %s", err);
    cr_assert(eq(int, rule, QT_GGUF_RULE_OK));
    cr_assert(ne(ptr, g, NULL));
    return g;
}

static void close_ok(qt_gguf *g, void *buf)
{
    qt_gguf_close(g);
    free(buf);
}

/* ---- names and tables ------------------------------------------------------ */

Test(gguf, rule_and_type_names)
{
    cr_assert(eq(str, (char *)qt_gguf_rule_name(QT_GGUF_G1_MAGIC), "G1"));
    cr_assert(eq(str, (char *)qt_gguf_rule_name(QT_GGUF_G16_VALUE_TYPE), "G16"));
    cr_assert(eq(str, (char *)qt_gguf_rule_name(QT_GGUF_RULE_COUNT), "?"));
    cr_assert(eq(str, (char *)qt_gguf_type_name(QT_GGUF_TYPE_FLOAT64), "float64"));
    cr_assert(eq(str, (char *)qt_ggml_type_name(QT_GGML_TYPE_Q4_K), "Q4_K"));
    cr_assert(eq(str, (char *)qt_ggml_type_name(QT_GGML_TYPE_BF16), "BF16"));
    cr_assert(eq(ptr, (void *)qt_ggml_type_name((qt_ggml_type)4), NULL)); /* Q4_2, removed */
    cr_assert(eq(ptr, (void *)qt_ggml_type_name((qt_ggml_type)31), NULL));
    cr_assert(eq(ptr, (void *)qt_ggml_type_name(QT_GGML_TYPE_COUNT), NULL));
    cr_assert(eq(i64, qt_ggml_blck_size(QT_GGML_TYPE_Q8_0), 32));
    cr_assert(eq(sz, qt_ggml_type_size(QT_GGML_TYPE_Q8_0), 34));
    cr_assert(eq(sz, qt_ggml_type_size(QT_GGML_TYPE_Q6_K), 210));
    cr_assert(eq(i64, qt_ggml_blck_size(QT_GGML_TYPE_Q4_K), 256));
    /* Every known type: block size 1, 32, 64 or 256, and fewer than 10 bytes
     * per element. */
    for (int t = 0; t < QT_GGML_TYPE_COUNT; t++) {
        if (!qt_ggml_type_name((qt_ggml_type)t)) continue;
        int64_t b = qt_ggml_blck_size((qt_ggml_type)t);
        cr_assert(eq(int, b == 1 || b == 32 || b == 64 || b == 256, 1), "type %d", t);
        cr_assert(lt(sz, qt_ggml_type_size((qt_ggml_type)t), (size_t)b * 10));
    }
}

/* ---- one bad file per rule --------------------------------------------------- */

Test(gguf, g1_bad_magic)
{
    gb f = {0};
    make_valid(&f, 32);
    memcpy(f.b, "GGUX", 4);
    expect_rule(&f, QT_GGUF_G1_MAGIC);
    gb_bytes(&f, "GG", 2); /* shorter than the magic */
    expect_rule(&f, QT_GGUF_G1_MAGIC);
    expect_rule(&f, QT_GGUF_G1_MAGIC); /* empty */
}

Test(gguf, g2_bad_version)
{
    const uint32_t bad[] = {0, 1, 4, 0xffff, 0x03000000u, 0x02000000u};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        gb f = {0};
        make_valid(&f, 32);
        qt_store_le32(f.b + 4, bad[k]);
        expect_rule(&f, QT_GGUF_G2_VERSION);
    }
    /* The byte-swapped case says why. */
    gb f = {0};
    make_valid(&f, 32);
    qt_store_le32(f.b + 4, 0x03000000u);
    qt_gguf *g;
    char err[QT_ERRMSG_SIZE];
    cr_assert(eq(int, open_copy(&f, &g, NULL, err), QT_ERR_FORMAT));
    cr_assert(ne(ptr, strstr(err, "big-endian"), NULL), "message: %s", err);
    gb_free(&f);
    /* Version 2 is accepted. */
    make_valid(&f, 32);
    qt_store_le32(f.b + 4, 2);
    void *buf;
    qt_gguf *g2 = open_ok(&f, &buf);
    cr_assert(eq(u32, qt_gguf_version(g2), 2));
    close_ok(g2, buf);
    gb_free(&f);
}

Test(gguf, g3_bad_counts)
{
    gb f = {0};
    make_valid(&f, 32);
    qt_store_le64(f.b + 8, UINT64_MAX); /* n_tensors = -1 */
    expect_rule(&f, QT_GGUF_G3_COUNTS);
    make_valid(&f, 32);
    qt_store_le64(f.b + 16, UINT64_MAX); /* n_kv = -1 */
    expect_rule(&f, QT_GGUF_G3_COUNTS);
    make_valid(&f, 32);
    qt_store_le64(f.b + 16, (uint64_t)1 << 40); /* huge but positive */
    expect_rule(&f, QT_GGUF_G3_COUNTS);
    make_valid(&f, 32);
    qt_store_le64(f.b + 8, 1000); /* more tensor infos than bytes */
    expect_rule(&f, QT_GGUF_G3_COUNTS);
}

Test(gguf, g4_bad_string_length)
{
    gb f = {0};
    /* key length beyond the file */
    gb_header(&f, 3, 0, 1);
    gb_u64(&f, 1000);
    gb_bytes(&f, "general.architecture", 20);
    gb_u32(&f, QT_GGUF_TYPE_UINT32);
    gb_u32(&f, 0);
    expect_rule(&f, QT_GGUF_G4_STRING);
    /* key length over the 1 GiB cap */
    gb_header(&f, 3, 0, 1);
    gb_u64(&f, QT_GGUF_MAX_STRING + 1);
    gb_zeros(&f, 16);
    expect_rule(&f, QT_GGUF_G4_STRING);
    /* string value with length 2^64-1 */
    gb_header(&f, 3, 0, 1);
    gb_key(&f, "general.name", QT_GGUF_TYPE_STRING);
    gb_u64(&f, UINT64_MAX);
    gb_zeros(&f, 8);
    expect_rule(&f, QT_GGUF_G4_STRING);
    /* one string inside a string array too long */
    gb_header(&f, 3, 0, 1);
    gb_key(&f, "tokenizer.ggml.tokens", QT_GGUF_TYPE_ARRAY);
    gb_u32(&f, QT_GGUF_TYPE_STRING);
    gb_u64(&f, 2);
    gb_str(&f, "ok");
    gb_u64(&f, 100);
    gb_bytes(&f, "short", 5);
    expect_rule(&f, QT_GGUF_G4_STRING);
    /* tensor name length beyond the file */
    gb_header(&f, 3, 1, 0);
    gb_u64(&f, 1u << 20);
    gb_zeros(&f, 40);
    expect_rule(&f, QT_GGUF_G4_STRING);
}

Test(gguf, g5_bad_array_count)
{
    gb f = {0};
    /* 1000 uint32 in 16 bytes */
    gb_header(&f, 3, 0, 1);
    gb_key(&f, "a", QT_GGUF_TYPE_ARRAY);
    gb_u32(&f, QT_GGUF_TYPE_UINT32);
    gb_u64(&f, 1000);
    gb_zeros(&f, 16);
    expect_rule(&f, QT_GGUF_G5_ARRAY);
    /* count x 8 overflows 64 bits */
    gb_header(&f, 3, 0, 1);
    gb_key(&f, "a", QT_GGUF_TYPE_ARRAY);
    gb_u32(&f, QT_GGUF_TYPE_UINT64);
    gb_u64(&f, (UINT64_MAX / 8) + 2);
    gb_zeros(&f, 16);
    expect_rule(&f, QT_GGUF_G5_ARRAY);
    /* 2^40 strings (each needs >= 8 bytes) */
    gb_header(&f, 3, 0, 1);
    gb_key(&f, "a", QT_GGUF_TYPE_ARRAY);
    gb_u32(&f, QT_GGUF_TYPE_STRING);
    gb_u64(&f, (uint64_t)1 << 40);
    gb_zeros(&f, 64);
    expect_rule(&f, QT_GGUF_G5_ARRAY);
    /* 16 strings, only enough bytes for 2 length fields */
    gb_header(&f, 3, 0, 1);
    gb_key(&f, "a", QT_GGUF_TYPE_ARRAY);
    gb_u32(&f, QT_GGUF_TYPE_STRING);
    gb_u64(&f, 16);
    gb_zeros(&f, 16);
    expect_rule(&f, QT_GGUF_G5_ARRAY);
}

Test(gguf, g6_empty_or_duplicate_key)
{
    gb f = {0};
    gb_header(&f, 3, 0, 1);
    gb_kv_u32(&f, "", 1);
    expect_rule(&f, QT_GGUF_G6_KEY);

    gb_header(&f, 3, 0, 3);
    gb_kv_u32(&f, "general.alignment", 32);
    gb_kv_str(&f, "general.name", "x");
    gb_kv_u32(&f, "general.alignment", 64);
    qt_gguf *g;
    char err[QT_ERRMSG_SIZE];
    cr_assert(eq(int, open_copy(&f, &g, NULL, err), QT_ERR_FORMAT));
    cr_assert(eq(str, err, "t.gguf: duplicate key 'general.alignment' (G6)"));
    expect_rule(&f, QT_GGUF_G6_KEY);

    gb_header(&f, 3, 0, 1);
    gb_key(&f, "a", QT_GGUF_TYPE_UINT8);
    f.b[f.n - 5] = 0; /* the key "a" becomes "\0": a NUL inside a key */
    gb_u8(&f, 1);
    expect_rule(&f, QT_GGUF_G6_KEY);
}

Test(gguf, g7_bad_kv_type_or_nested_array)
{
    const uint32_t bad[] = {QT_GGUF_TYPE_COUNT, 0xffffffffu, 0x80000000u};
    for (size_t k = 0; k < 3; k++) {
        gb f = {0};
        gb_header(&f, 3, 0, 1);
        gb_key(&f, "a", (qt_gguf_type)bad[k]);
        gb_zeros(&f, 16);
        expect_rule(&f, QT_GGUF_G7_KV_TYPE);
        gb_header(&f, 3, 0, 1); /* bad element type */
        gb_key(&f, "a", QT_GGUF_TYPE_ARRAY);
        gb_u32(&f, bad[k]);
        gb_u64(&f, 1);
        gb_zeros(&f, 16);
        expect_rule(&f, QT_GGUF_G7_KV_TYPE);
    }
    gb f = {0};
    gb_header(&f, 3, 0, 1);
    gb_key(&f, "a", QT_GGUF_TYPE_ARRAY);
    gb_u32(&f, QT_GGUF_TYPE_ARRAY);
    gb_u64(&f, 1);
    gb_u32(&f, QT_GGUF_TYPE_UINT8);
    gb_u64(&f, 1);
    gb_u8(&f, 7);
    expect_rule(&f, QT_GGUF_G7_KV_TYPE);
}

Test(gguf, g8_bad_alignment)
{
    const uint32_t bad[] = {0, 13, 48, 0xffffffffu};
    for (size_t k = 0; k < 4; k++) {
        gb f = {0};
        gb_header(&f, 3, 0, 1);
        gb_kv_u32(&f, "general.alignment", bad[k]);
        expect_rule(&f, QT_GGUF_G8_ALIGNMENT);
    }
    gb f = {0};
    gb_header(&f, 3, 0, 1); /* right value, wrong type */
    gb_key(&f, "general.alignment", QT_GGUF_TYPE_UINT64);
    gb_u64(&f, 32);
    expect_rule(&f, QT_GGUF_G8_ALIGNMENT);
    gb_header(&f, 3, 0, 1);
    gb_key(&f, "general.alignment", QT_GGUF_TYPE_INT32);
    gb_u32(&f, 32);
    expect_rule(&f, QT_GGUF_G8_ALIGNMENT);
}

/* One F32 [4] tensor called name, with its data. */
static void one_tensor(gb *f, const char *name, uint32_t n_dims, const int64_t *ne,
                       uint32_t type, uint64_t off, size_t data)
{
    gb_header(f, 3, 1, 0);
    gb_tensor(f, name, n_dims, ne, type, off);
    gb_pad(f, 32);
    gb_zeros(f, data);
}

Test(gguf, g9_bad_tensor_name)
{
    const int64_t ne[] = {4};
    char name[80];
    memset(name, 'x', 64);
    name[64] = '\0';
    gb f = {0};
    one_tensor(&f, name, 1, ne, QT_GGML_TYPE_F32, 0, 16); /* 64 bytes */
    expect_rule(&f, QT_GGUF_G9_TENSOR_NAME);
    name[63] = '\0'; /* 63 bytes: accepted */
    one_tensor(&f, name, 1, ne, QT_GGML_TYPE_F32, 0, 16);
    void *buf;
    qt_gguf *g = open_ok(&f, &buf);
    cr_assert(eq(str, (char *)qt_gguf_tensor_name(g, 0), name));
    close_ok(g, buf);
    gb_free(&f);
    one_tensor(&f, "", 1, ne, QT_GGML_TYPE_F32, 0, 16);
    expect_rule(&f, QT_GGUF_G9_TENSOR_NAME);
    /* duplicate */
    gb_header(&f, 3, 2, 0);
    gb_tensor(&f, "w", 1, ne, QT_GGML_TYPE_F32, 0);
    gb_tensor(&f, "w", 1, ne, QT_GGML_TYPE_F32, 32);
    gb_pad(&f, 32);
    gb_zeros(&f, 64);
    expect_rule(&f, QT_GGUF_G9_TENSOR_NAME);
}

Test(gguf, g10_bad_dims)
{
    gb f = {0};
    const int64_t ne5[] = {1, 1, 1, 1, 1};
    one_tensor(&f, "w", 5, ne5, QT_GGML_TYPE_F32, 0, 64);
    expect_rule(&f, QT_GGUF_G10_DIMS);
    one_tensor(&f, "w", 0, ne5, QT_GGML_TYPE_F32, 0, 64);
    expect_rule(&f, QT_GGUF_G10_DIMS);
    one_tensor(&f, "w", 2, (const int64_t[]){4, -1}, QT_GGML_TYPE_F32, 0, 64);
    expect_rule(&f, QT_GGUF_G10_DIMS);
    /* A zero dimension is allowed (as in gguf.cpp): an empty tensor. */
    one_tensor(&f, "w", 2, (const int64_t[]){4, 0}, QT_GGML_TYPE_F32, 0, 0);
    void *buf;
    qt_gguf *g = open_ok(&f, &buf);
    cr_assert(eq(i64, qt_gguf_tensor_n_elements(g, 0), 0));
    cr_assert(eq(sz, qt_gguf_tensor_nbytes(g, 0), 0));
    close_ok(g, buf);
    gb_free(&f);
}

Test(gguf, g11_size_overflow)
{
    gb f = {0};
    /* element count overflows int64 */
    one_tensor(&f, "w", 4, (const int64_t[]){INT64_MAX / 2, 3, 1, 1}, QT_GGML_TYPE_F32, 0, 64);
    expect_rule(&f, QT_GGUF_G11_OVERFLOW);
    one_tensor(&f, "w", 4, (const int64_t[]){1 << 16, 1 << 16, 1 << 16, 1 << 16},
               QT_GGML_TYPE_I8, 0, 64);
    expect_rule(&f, QT_GGUF_G11_OVERFLOW);
    /* elements fit, bytes (x 8) do not: the GHSA-96jg case */
    one_tensor(&f, "w", 2, (const int64_t[]){(int64_t)1 << 42, (int64_t)1 << 19},
               QT_GGML_TYPE_F64, 0, 64);
    expect_rule(&f, QT_GGUF_G11_OVERFLOW);
    /* the padded running total wraps (GGML_PAD bypass) */
    gb_header(&f, 3, 2, 0);
    gb_tensor(&f, "a", 1, (const int64_t[]){INT64_MAX - 7}, QT_GGML_TYPE_I8, 0);
    gb_tensor(&f, "b", 1, (const int64_t[]){INT64_MAX - 7}, QT_GGML_TYPE_I8,
              (uint64_t)1 << 63);
    gb_zeros(&f, 64);
    expect_rule(&f, QT_GGUF_G11_OVERFLOW);
}

Test(gguf, g12_bad_tensor_type)
{
    const uint32_t bad[] = {4, 5, 31, 33, 36, 38, QT_GGML_TYPE_COUNT, 1000, 0xffffffffu};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        gb f = {0};
        one_tensor(&f, "w", 1, (const int64_t[]){256}, bad[k], 0, 2048);
        expect_rule(&f, QT_GGUF_G12_TENSOR_TYPE);
    }
}

Test(gguf, g13_row_not_whole_blocks)
{
    gb f = {0};
    one_tensor(&f, "w", 2, (const int64_t[]){33, 2}, QT_GGML_TYPE_Q8_0, 0, 256);
    expect_rule(&f, QT_GGUF_G13_BLOCK);
    one_tensor(&f, "w", 1, (const int64_t[]){128}, QT_GGML_TYPE_Q4_K, 0, 256);
    expect_rule(&f, QT_GGUF_G13_BLOCK);
}

Test(gguf, g14_bad_offset)
{
    gb f = {0};
    make_valid(&f, 32);
    void *buf;
    qt_gguf *g = open_ok(&f, &buf);
    size_t info_b = 0; /* where tensor "b"'s offset field lies */
    close_ok(g, buf);
    /* locate b's offset: the last 8 bytes before the data padding */
    for (size_t i = 0; i + 9 < f.n; i++)
        if (memcmp(f.b + i, "\x01\x00\x00\x00\x00\x00\x00\x00" "b", 9) == 0) info_b = i + 9;
    cr_assert(gt(sz, info_b, 0));
    size_t off_field = info_b + 4 + 8 + 4; /* n_dims, ne[0], type */
    cr_assert(eq(u64, qt_load_le64(f.b + off_field), 64));

    gb m = {0};
    gb_bytes(&m, f.b, f.n);
    qt_store_le64(m.b + off_field, 96); /* a gap */
    char err[QT_ERRMSG_SIZE];
    cr_assert(eq(int, open_copy(&m, &g, NULL, err), QT_ERR_FORMAT));
    cr_assert(eq(str, err, "t.gguf: tensor 'b': offset 96 expected 64 (G14)"));
    expect_rule(&m, QT_GGUF_G14_OFFSET);
    gb_bytes(&m, f.b, f.n);
    qt_store_le64(m.b + off_field, 0); /* overlaps tensor a */
    expect_rule(&m, QT_GGUF_G14_OFFSET);
    gb_bytes(&m, f.b, f.n);
    qt_store_le64(m.b + off_field, 65); /* misaligned */
    expect_rule(&m, QT_GGUF_G14_OFFSET);
    gb_free(&f);

    /* Inconsistent alignment: offsets laid out for 32, file says 64. */
    gb_header(&f, 3, 2, 1);
    gb_kv_u32(&f, "general.alignment", 64);
    gb_tensor(&f, "a", 1, (const int64_t[]){8}, QT_GGML_TYPE_F32, 0);
    gb_tensor(&f, "b", 1, (const int64_t[]){8}, QT_GGML_TYPE_F32, 32);
    gb_pad(&f, 64);
    gb_zeros(&f, 128);
    expect_rule(&f, QT_GGUF_G14_OFFSET);
    /* first tensor not at 0 */
    one_tensor(&f, "w", 1, (const int64_t[]){8}, QT_GGML_TYPE_F32, 32, 64);
    expect_rule(&f, QT_GGUF_G14_OFFSET);
}

Test(gguf, g15_truncated)
{
    gb f = {0};
    make_valid(&f, 32);
    f.n -= 1; /* last data byte missing */
    expect_rule(&f, QT_GGUF_G15_TRUNCATED);
    /* data section start past the end */
    gb_header(&f, 3, 1, 0);
    gb_tensor(&f, "w", 1, (const int64_t[]){4}, QT_GGML_TYPE_F32, 0);
    expect_rule(&f, QT_GGUF_G15_TRUNCATED);
    /* a tensor whose data is far past the file (Ollama CVE-2026-7482) */
    one_tensor(&f, "w", 2, (const int64_t[]){1024, 1024}, QT_GGML_TYPE_F32, 0, 64);
    expect_rule(&f, QT_GGUF_G15_TRUNCATED);
    /* header cut in a scalar value */
    gb_header(&f, 3, 0, 1);
    gb_key(&f, "x", QT_GGUF_TYPE_UINT64);
    gb_zeros(&f, 6); /* 6 of the 8 bytes */
    expect_rule(&f, QT_GGUF_G15_TRUNCATED);
}

Test(gguf, every_prefix_of_a_valid_file_is_rejected)
{
    gb f = {0};
    make_valid(&f, 64);
    for (size_t n = 0; n < f.n; n++) {
        gb p = {0};
        gb_bytes(&p, f.b, n);
        qt_gguf *g;
        qt_gguf_rule rule;
        char err[QT_ERRMSG_SIZE];
        qt_status st = open_copy(&p, &g, &rule, err);
        cr_assert(eq(int, st, QT_ERR_FORMAT), "prefix %zu accepted", n);
        cr_assert(ne(int, rule, QT_GGUF_RULE_OK));
        gb_free(&p);
    }
    gb_free(&f);
}

/* Reads everything a reader exposes (under ASan: any overread shows). */
static void touch_all(const qt_gguf *g)
{
    char buf[512];
    for (size_t i = 0; i < qt_gguf_n_kv(g); i++) {
        qt_gguf_kv_format(g, i, buf, sizeof buf);
        qt_gguf_type et;
        size_t n;
        if (qt_gguf_get_arr_info(g, i, &et, &n, NULL) == QT_OK && n > 0) {
            const char *s;
            size_t len;
            uint64_t v;
            if (et == QT_GGUF_TYPE_STRING)
                cr_assert(eq(int, qt_gguf_get_arr_str(g, i, n - 1, &s, &len, NULL), QT_OK));
            else
                cr_assert(eq(int, qt_gguf_get_arr_elem(g, i, n - 1, et, &v, NULL), QT_OK));
        }
    }
    for (size_t t = 0; t < qt_gguf_n_tensors(g); t++) {
        size_t n = (size_t)qt_gguf_tensor_n_elements(g, t);
        if (n > 4096) n = 4096;
        float *dst = malloc((n ? n : 1) * sizeof *dst);
        qt_status st = qt_gguf_tensor_to_f32(g, t, 0, n, dst, NULL);
        cr_assert(eq(int, st == QT_OK || st == QT_ERR_UNSUPPORTED, 1));
        free(dst);
        const uint8_t *d = qt_gguf_tensor_data(g, t);
        size_t nb = qt_gguf_tensor_nbytes(g, t);
        if (nb) {
            volatile uint8_t x = d[0];
            x = d[nb - 1];
            (void)x;
        }
    }
}

Test(gguf, random_mutations_never_crash)
{
    unsigned long long seed = qt_test_seed(20240607);
    gb f = {0};
    make_valid(&f, 32);
    size_t ok = 0, bad = 0;
    for (int it = 0; it < N_MUTATIONS; it++) {
        gb m = {0};
        gb_bytes(&m, f.b, f.n);
        int flips = 1 + (int)(qt_test_rand(&seed) % 4);
        for (int k = 0; k < flips; k++) {
            size_t at = qt_test_rand(&seed) % m.n;
            unsigned long long r = qt_test_rand(&seed);
            m.b[at] = (r & 1) ? (uint8_t)(r >> 8) : (uint8_t)(m.b[at] ^ (1u << ((r >> 8) % 8)));
        }
        if (qt_test_rand(&seed) % 4 == 0) m.n = qt_test_rand(&seed) % (m.n + 1);
        void *copy = malloc(m.n ? m.n : 1);
        memcpy(copy, m.b, m.n);
        qt_gguf *g;
        qt_gguf_rule rule;
        char err[QT_ERRMSG_SIZE];
        qt_status st = qt_gguf_open_mem(copy, m.n, "m.gguf", &g, &rule, err);
        cr_assert(eq(int, st == QT_OK || st == QT_ERR_FORMAT, 1), "%s", err);
        if (st == QT_OK) {
            touch_all(g);
            qt_gguf_close(g);
            ok++;
        } else {
            cr_assert(ne(int, rule, QT_GGUF_RULE_OK));
            bad++;
        }
        free(copy);
        gb_free(&m);
    }
    cr_assert(gt(sz, bad, 0));
    fprintf(stderr, "mutations: %zu accepted, %zu rejected\n", ok, bad);
    gb_free(&f);
}

Test(gguf, allocation_failures_are_reported)
{
    gb f = {0};
    make_valid(&f, 32);
    /* Fail each allocation in turn until open succeeds. */
    for (uint64_t k = 1; k < 64; k++) {
        qt_gguf *g;
        char err[QT_ERRMSG_SIZE];
        qt_alloc_fail_after(k);
        qt_status st = qt_gguf_open_mem(f.b, f.n, "t.gguf", &g, NULL, err);
        qt_alloc_fail_after(0);
        if (st == QT_OK) {
            qt_gguf_close(g);
            break;
        }
        cr_assert(eq(int, st, QT_ERR_NOMEM), "step %llu: %s", (unsigned long long)k, err);
    }
    gb_free(&f);
}

/* ---- G16 and the accessors ---------------------------------------------- */

Test(gguf, g16_typed_accessors_check_the_type)
{
    gb f = {0};
    gb_header(&f, 3, 0, 3);
    gb_kv_str(&f, "general.name", "x");
    gb_key(&f, "tokenizer.ggml.scores", QT_GGUF_TYPE_ARRAY); /* scores as UINT8 */
    gb_u32(&f, QT_GGUF_TYPE_UINT8);
    gb_u64(&f, 3);
    gb_bytes(&f, "\x01\x02\x03", 3);
    gb_key(&f, "n", QT_GGUF_TYPE_INT32);
    gb_u32(&f, (uint32_t)-5);
    void *buf;
    qt_gguf *g = open_ok(&f, &buf);
    char err[QT_ERRMSG_SIZE];
    uint32_t u;
    int32_t i;
    float x;
    const char *s;
    size_t len;
    cr_assert(eq(int, qt_gguf_get_u32(g, 0, &u, err), QT_ERR_FORMAT));
    cr_assert(eq(str, err, "t.gguf: key 'general.name': type string, expected uint32 (G16)"));
    int64_t sc = qt_gguf_find_key(g, "tokenizer.ggml.scores");
    cr_assert(eq(i64, sc, 1));
    cr_assert(eq(int, qt_gguf_get_arr_f32(g, (size_t)sc, 0, &x, err), QT_ERR_FORMAT));
    cr_assert(eq(str, err,
                 "t.gguf: key 'tokenizer.ggml.scores': array of uint8, expected float32 (G16)"));
    cr_assert(eq(int, qt_gguf_get_arr_str(g, (size_t)sc, 0, &s, &len, err), QT_ERR_FORMAT));
    cr_assert(eq(int, qt_gguf_get_str(g, (size_t)sc, &s, &len, err), QT_ERR_FORMAT));
    cr_assert(eq(int, qt_gguf_get_u32(g, 2, &u, err), QT_ERR_FORMAT)); /* int32 != uint32 */
    cr_assert(eq(int, qt_gguf_get_i32(g, 2, &i, err), QT_OK));
    cr_assert(eq(i32, i, -5));
    uint8_t b;
    cr_assert(eq(int, qt_gguf_get_arr_elem(g, (size_t)sc, 2, QT_GGUF_TYPE_UINT8, &b, err), QT_OK));
    cr_assert(eq(u8, b, 3));
    cr_assert(eq(int, qt_gguf_get_arr_elem(g, (size_t)sc, 3, QT_GGUF_TYPE_UINT8, &b, err),
                 QT_ERR_ARG));
    cr_assert(eq(int, qt_gguf_get_i32(g, 3, &i, err), QT_ERR_ARG)); /* no such pair */
    cr_assert(eq(int, qt_gguf_get_i32(g, 2, NULL, err), QT_ERR_ARG));
    cr_assert(eq(i64, qt_gguf_find_key(g, "nope"), -1));
    cr_assert(eq(ptr, (void *)qt_gguf_kv_key(g, 3), NULL));
    close_ok(g, buf);
    gb_free(&f);
}

/* ---- a valid file with every type, round trip ---------------------------- */

static void round_trip(uint32_t align)
{
    gb f = {0};
    gb_header(&f, 3, 5, 19);
    gb_key(&f, "t.u8", QT_GGUF_TYPE_UINT8), gb_u8(&f, 200);
    gb_key(&f, "t.i8", QT_GGUF_TYPE_INT8), gb_u8(&f, (uint8_t)(int8_t)-100);
    gb_key(&f, "t.u16", QT_GGUF_TYPE_UINT16), gb_u16(&f, 60000);
    gb_key(&f, "t.i16", QT_GGUF_TYPE_INT16), gb_u16(&f, (uint16_t)(int16_t)-30000);
    gb_key(&f, "t.u32", QT_GGUF_TYPE_UINT32), gb_u32(&f, 4000000000u);
    gb_key(&f, "t.i32", QT_GGUF_TYPE_INT32), gb_u32(&f, (uint32_t)INT32_MIN);
    gb_key(&f, "t.f32", QT_GGUF_TYPE_FLOAT32), gb_f32(&f, -1.5f);
    gb_key(&f, "t.bool", QT_GGUF_TYPE_BOOL), gb_u8(&f, 1);
    gb_key(&f, "t.str", QT_GGUF_TYPE_STRING), gb_strn(&f, "a\"b\n\0c", 6);
    gb_key(&f, "t.u64", QT_GGUF_TYPE_UINT64), gb_u64(&f, UINT64_MAX);
    gb_key(&f, "t.i64", QT_GGUF_TYPE_INT64), gb_u64(&f, (uint64_t)INT64_MIN);
    gb_key(&f, "t.f64", QT_GGUF_TYPE_FLOAT64), gb_f64(&f, 0.1);
    gb_key(&f, "t.arr_i16", QT_GGUF_TYPE_ARRAY), gb_u32(&f, QT_GGUF_TYPE_INT16), gb_u64(&f, 3);
    gb_u16(&f, 1), gb_u16(&f, (uint16_t)-2), gb_u16(&f, 3);
    gb_key(&f, "t.arr_f32", QT_GGUF_TYPE_ARRAY), gb_u32(&f, QT_GGUF_TYPE_FLOAT32), gb_u64(&f, 20);
    for (int i = 0; i < 20; i++) gb_f32(&f, (float)i * 0.25f);
    gb_key(&f, "t.arr_str", QT_GGUF_TYPE_ARRAY), gb_u32(&f, QT_GGUF_TYPE_STRING), gb_u64(&f, 3);
    gb_str(&f, "<unk>"), gb_str(&f, ""), gb_str(&f, "\xe2\x96\x81the");
    gb_key(&f, "t.arr_empty", QT_GGUF_TYPE_ARRAY), gb_u32(&f, QT_GGUF_TYPE_UINT64), gb_u64(&f, 0);
    gb_key(&f, "t.arr_bool", QT_GGUF_TYPE_ARRAY), gb_u32(&f, QT_GGUF_TYPE_BOOL), gb_u64(&f, 2);
    gb_u8(&f, 0), gb_u8(&f, 1);
    gb_key(&f, "t.arr_f64", QT_GGUF_TYPE_ARRAY), gb_u32(&f, QT_GGUF_TYPE_FLOAT64), gb_u64(&f, 1);
    gb_f64(&f, -2.25);
    gb_kv_u32(&f, "general.alignment", align);

    /* Tensors: F32 [3, 2], F16 [5], BF16 [2, 1, 1, 2], Q8_0 [64, 2], Q4_K [256]. */
    struct {
        const char *name;
        uint32_t n_dims;
        int64_t ne[4];
        qt_ggml_type type;
        size_t nbytes;
    } ts[5] = {
        {"blk.0.attn_norm.weight", 2, {3, 2, 1, 1}, QT_GGML_TYPE_F32, 24},
        {"half", 1, {5, 1, 1, 1}, QT_GGML_TYPE_F16, 10},
        {"brain", 4, {2, 1, 1, 2}, QT_GGML_TYPE_BF16, 8},
        {"q8", 2, {64, 2, 1, 1}, QT_GGML_TYPE_Q8_0, 136},
        {"q4k", 1, {256, 1, 1, 1}, QT_GGML_TYPE_Q4_K, 144},
    };
    uint64_t off[5], o = 0;
    for (int t = 0; t < 5; t++) {
        off[t] = o;
        gb_tensor(&f, ts[t].name, ts[t].n_dims, ts[t].ne, ts[t].type, o);
        o = (o + ts[t].nbytes + align - 1) / align * align;
    }
    gb_pad(&f, align);
    size_t data0 = f.n;
    for (int i = 0; i < 6; i++) gb_f32(&f, (float)i - 2.5f);
    gb_pad(&f, align);
    for (int i = 0; i < 5; i++) gb_u16(&f, qt_fp32_to_fp16((float)i * 0.5f));
    gb_pad(&f, align);
    for (int i = 0; i < 4; i++) gb_u16(&f, qt_fp32_to_bf16((float)(i + 1) * -3.0f));
    gb_pad(&f, align);
    for (int blk = 0; blk < 4; blk++) {
        gb_u16(&f, qt_fp32_to_fp16(0.25f * (float)(blk + 1)));
        for (int i = 0; i < 32; i++) gb_u8(&f, (uint8_t)(int8_t)(i - 16));
    }
    gb_pad(&f, align);
    gb_zeros(&f, 144);

    /* Through a real file too (qt_gguf_open, mmap). */
    char dir[64], path[128];
    cr_assert(ne(ptr, (void *)qt_test_tmpdir(dir, sizeof dir), NULL));
    snprintf(path, sizeof path, "%s/rt.gguf", dir);
    FILE *fp = fopen(path, "wb");
    cr_assert(ne(ptr, fp, NULL));
    cr_assert(eq(sz, fwrite(f.b, 1, f.n, fp), f.n));
    fclose(fp);
    qt_gguf *g = NULL;
    char err[QT_ERRMSG_SIZE] = "";
    qt_gguf_rule rule;
    cr_assert(eq(int, qt_gguf_open(path, &g, &rule, err), QT_OK), "%s", err);
    unlink(path);
    rmdir(dir);

    cr_assert(eq(u32, qt_gguf_version(g), 3));
    cr_assert(eq(u32, qt_gguf_alignment(g), align));
    cr_assert(eq(sz, qt_gguf_n_kv(g), 19));
    cr_assert(eq(sz, qt_gguf_data_offset(g), data0));
    cr_assert(eq(sz, qt_gguf_data_offset(g) % align, 0));
    cr_assert(eq(str, (char *)qt_gguf_name(g), path));

#define KEY(k) ((size_t)qt_gguf_find_key(g, k))
    uint8_t u8;
    int8_t i8;
    uint16_t u16;
    int16_t i16;
    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    int64_t i64;
    float f32;
    double f64;
    bool b;
    cr_assert(eq(int, qt_gguf_get_u8(g, KEY("t.u8"), &u8, err), QT_OK));
    cr_assert(eq(u8, u8, 200));
    cr_assert(eq(int, qt_gguf_get_i8(g, KEY("t.i8"), &i8, err), QT_OK));
    cr_assert(eq(i8, i8, -100));
    cr_assert(eq(int, qt_gguf_get_u16(g, KEY("t.u16"), &u16, err), QT_OK));
    cr_assert(eq(u16, u16, 60000));
    cr_assert(eq(int, qt_gguf_get_i16(g, KEY("t.i16"), &i16, err), QT_OK));
    cr_assert(eq(i16, i16, -30000));
    cr_assert(eq(int, qt_gguf_get_u32(g, KEY("t.u32"), &u32, err), QT_OK));
    cr_assert(eq(u32, u32, 4000000000u));
    cr_assert(eq(int, qt_gguf_get_i32(g, KEY("t.i32"), &i32, err), QT_OK));
    cr_assert(eq(i32, i32, INT32_MIN));
    cr_assert(eq(int, qt_gguf_get_f32(g, KEY("t.f32"), &f32, err), QT_OK));
    cr_assert(eq(flt, f32, -1.5f));
    cr_assert(eq(int, qt_gguf_get_bool(g, KEY("t.bool"), &b, err), QT_OK));
    cr_assert(eq(int, b, 1));
    cr_assert(eq(int, qt_gguf_get_u64(g, KEY("t.u64"), &u64, err), QT_OK));
    cr_assert(eq(u64, u64, UINT64_MAX));
    cr_assert(eq(int, qt_gguf_get_i64(g, KEY("t.i64"), &i64, err), QT_OK));
    cr_assert(eq(i64, i64, INT64_MIN));
    cr_assert(eq(int, qt_gguf_get_f64(g, KEY("t.f64"), &f64, err), QT_OK));
    cr_assert(eq(dbl, f64, 0.1));

    const char *s;
    size_t len;
    cr_assert(eq(int, qt_gguf_get_str(g, KEY("t.str"), &s, &len, err), QT_OK));
    cr_assert(eq(sz, len, 6));
    cr_assert(eq(int, memcmp(s, "a\"b\n\0c", 6), 0));
    char small[4], big[16];
    cr_assert(eq(int, qt_gguf_get_str_copy(g, KEY("t.str"), small, sizeof small, err),
                 QT_ERR_ARG));
    cr_assert(eq(str, small, ""));
    cr_assert(eq(int, qt_gguf_get_str_copy(g, KEY("t.str"), big, sizeof big, err), QT_OK));
    cr_assert(eq(int, memcmp(big, "a\"b\n\0c", 7), 0));

    qt_gguf_type et;
    size_t n;
    cr_assert(eq(int, qt_gguf_get_arr_info(g, KEY("t.arr_i16"), &et, &n, err), QT_OK));
    cr_assert(eq(int, et, QT_GGUF_TYPE_INT16));
    cr_assert(eq(sz, n, 3));
    cr_assert(eq(int, qt_gguf_get_arr_elem(g, KEY("t.arr_i16"), 1, QT_GGUF_TYPE_INT16, &i16, err),
                 QT_OK));
    cr_assert(eq(i16, i16, -2));
    for (size_t j = 0; j < 20; j++) {
        cr_assert(eq(int, qt_gguf_get_arr_f32(g, KEY("t.arr_f32"), j, &f32, err), QT_OK));
        cr_assert(eq(flt, f32, (float)j * 0.25f));
    }
    cr_assert(eq(int, qt_gguf_get_arr_info(g, KEY("t.arr_str"), &et, &n, err), QT_OK));
    cr_assert(eq(int, et, QT_GGUF_TYPE_STRING));
    cr_assert(eq(sz, n, 3));
    cr_assert(eq(int, qt_gguf_get_arr_str(g, KEY("t.arr_str"), 2, &s, &len, err), QT_OK));
    cr_assert(eq(sz, len, 6));
    cr_assert(eq(int, memcmp(s, "\xe2\x96\x81the", 6), 0));
    cr_assert(eq(int, qt_gguf_get_arr_str(g, KEY("t.arr_str"), 1, &s, &len, err), QT_OK));
    cr_assert(eq(sz, len, 0));
    cr_assert(eq(int, qt_gguf_get_arr_str(g, KEY("t.arr_str"), 3, &s, &len, err), QT_ERR_ARG));
    cr_assert(eq(int, qt_gguf_get_arr_info(g, KEY("t.arr_empty"), &et, &n, err), QT_OK));
    cr_assert(eq(sz, n, 0));
    cr_assert(eq(int, qt_gguf_get_arr_elem(g, KEY("t.arr_bool"), 1, QT_GGUF_TYPE_BOOL, &u8, err),
                 QT_OK));
    cr_assert(eq(u8, u8, 1));
    cr_assert(eq(int, qt_gguf_get_arr_elem(g, KEY("t.arr_f64"), 0, QT_GGUF_TYPE_FLOAT64, &f64,
                                           err),
                 QT_OK));
    cr_assert(eq(dbl, f64, -2.25));

    /* Display. */
    char buf[256];
    qt_gguf_kv_format(g, KEY("t.i64"), buf, sizeof buf);
    cr_assert(eq(str, buf, "-9223372036854775808"));
    qt_gguf_kv_format(g, KEY("t.u64"), buf, sizeof buf);
    cr_assert(eq(str, buf, "18446744073709551615"));
    qt_gguf_kv_format(g, KEY("t.f32"), buf, sizeof buf);
    cr_assert(eq(str, buf, "-1.5"));
    qt_gguf_kv_format(g, KEY("t.bool"), buf, sizeof buf);
    cr_assert(eq(str, buf, "true"));
    qt_gguf_kv_format(g, KEY("t.str"), buf, sizeof buf);
    cr_assert(eq(str, buf, "\"a\\\"b\\n\\x00c\""));
    qt_gguf_kv_format(g, KEY("t.arr_i16"), buf, sizeof buf);
    cr_assert(eq(str, buf, "[int16; 3] 1, -2, 3"));
    qt_gguf_kv_format(g, KEY("t.arr_f32"), buf, sizeof buf);
    cr_assert(eq(str, buf, "[float32; 20] 0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, ..."));
    qt_gguf_kv_format(g, KEY("t.arr_str"), buf, sizeof buf);
    cr_assert(eq(str, buf, "[string; 3] \"<unk>\", \"\", \"\xe2\x96\x81the\""));
    qt_gguf_kv_format(g, KEY("t.arr_empty"), buf, sizeof buf);
    cr_assert(eq(str, buf, "[uint64; 0]"));
    cr_assert(eq(sz, qt_gguf_kv_format(g, KEY("t.arr_f32"), buf, 8), 7));
    cr_assert(eq(str, buf, "[float3"));
#undef KEY

    /* Tensors. */
    cr_assert(eq(sz, qt_gguf_n_tensors(g), 5));
    for (size_t t = 0; t < 5; t++) {
        cr_assert(eq(str, (char *)qt_gguf_tensor_name(g, t), (char *)ts[t].name));
        cr_assert(eq(i64, qt_gguf_find_tensor(g, ts[t].name), (int64_t)t));
        cr_assert(eq(int, qt_gguf_tensor_type(g, t), ts[t].type));
        cr_assert(eq(u32, qt_gguf_tensor_n_dims(g, t), ts[t].n_dims));
        const int64_t *ne = qt_gguf_tensor_ne(g, t);
        for (int d = 0; d < 4; d++) cr_assert(eq(i64, ne[d], ts[t].ne[d]));
        cr_assert(eq(i64, qt_gguf_tensor_n_elements(g, t), ne[0] * ne[1] * ne[2] * ne[3]));
        cr_assert(eq(sz, qt_gguf_tensor_nbytes(g, t), ts[t].nbytes));
        cr_assert(eq(sz, qt_gguf_tensor_offset(g, t), data0 + off[t]));
        cr_assert(eq(sz, qt_gguf_tensor_offset(g, t) % align, 0));
    }
    cr_assert(eq(i64, qt_gguf_find_tensor(g, "missing"), -1));
    cr_assert(eq(ptr, (void *)qt_gguf_tensor_name(g, 5), NULL));
    cr_assert(eq(ptr, (void *)qt_gguf_tensor_data(g, 5), NULL));

    float out[128];
    cr_assert(eq(int, qt_gguf_tensor_to_f32(g, 0, 0, 6, out, err), QT_OK));
    for (int i = 0; i < 6; i++) cr_assert(eq(flt, out[i], (float)i - 2.5f));
    cr_assert(eq(int, qt_gguf_tensor_to_f32(g, 0, 4, 2, out, err), QT_OK));
    cr_assert(eq(flt, out[0], 1.5f));
    cr_assert(eq(int, qt_gguf_tensor_to_f32(g, 0, 5, 2, out, err), QT_ERR_ARG));
    cr_assert(eq(int, qt_gguf_tensor_to_f32(g, 1, 0, 5, out, err), QT_OK));
    for (int i = 0; i < 5; i++) cr_assert(eq(flt, out[i], (float)i * 0.5f));
    cr_assert(eq(int, qt_gguf_tensor_to_f32(g, 2, 0, 4, out, err), QT_OK));
    for (int i = 0; i < 4; i++) cr_assert(eq(flt, out[i], (float)(i + 1) * -3.0f));
    cr_assert(eq(int, qt_gguf_tensor_to_f32(g, 3, 0, 128, out, err), QT_OK));
    for (int i = 0; i < 128; i++)
        cr_assert(eq(flt, out[i], 0.25f * (float)(i / 32 + 1) * (float)(i % 32 - 16)), "i %d", i);
    cr_assert(eq(int, qt_gguf_tensor_to_f32(g, 3, 30, 5, out, err), QT_OK)); /* across blocks */
    cr_assert(eq(flt, out[0], 0.25f * 14.0f));
    cr_assert(eq(flt, out[2], 0.5f * -16.0f));
    cr_assert(eq(int, qt_gguf_tensor_to_f32(g, 4, 0, 1, out, err), QT_ERR_UNSUPPORTED));
    cr_assert(ne(ptr, strstr(err, "unsupported ggml type 'Q4_K'"), NULL), "%s", err);
    cr_assert(eq(int, qt_gguf_tensor_to_f32(g, 9, 0, 1, out, err), QT_ERR_ARG));

    qt_gguf_close(g);
    qt_gguf_close(NULL);
    gb_free(&f);
}

Test(gguf, round_trip_every_type_align_32) { round_trip(32); }
Test(gguf, round_trip_every_type_align_64) { round_trip(64); }
Test(gguf, round_trip_every_type_align_1) { round_trip(1); }

Test(gguf, open_reports_io_errors)
{
    qt_gguf *g = (qt_gguf *)(uintptr_t)1;
    qt_gguf_rule rule;
    char err[QT_ERRMSG_SIZE];
    cr_assert(eq(int, qt_gguf_open("/nonexistent/x.gguf", &g, &rule, err), QT_ERR_IO));
    cr_assert(eq(ptr, g, NULL));
    cr_assert(eq(int, rule, QT_GGUF_RULE_OK));
    cr_assert(ne(ptr, strstr(err, "cannot open '/nonexistent/x.gguf'"), NULL), "%s", err);
    /* a folder where a file should be is bad input (formats/input_file.h, issue 12) */
    cr_assert(eq(int, qt_gguf_open("/tmp", &g, &rule, err), QT_ERR_FORMAT));
    cr_assert(ne(ptr, strstr(err, "'/tmp' is a folder, not a regular file"), NULL), "%s", err);
    cr_assert(eq(int, qt_gguf_open(NULL, &g, &rule, err), QT_ERR_ARG));
    /* an empty file is a format error, not a mapping failure */
    char dir[64], path[128];
    cr_assert(ne(ptr, (void *)qt_test_tmpdir(dir, sizeof dir), NULL));
    snprintf(path, sizeof path, "%s/empty.gguf", dir);
    FILE *fp = fopen(path, "wb");
    fclose(fp);
    cr_assert(eq(int, qt_gguf_open(path, &g, &rule, err), QT_ERR_FORMAT));
    cr_assert(eq(int, rule, QT_GGUF_G1_MAGIC));
    unlink(path);
    rmdir(dir);
}

/* ---- real files ------------------------------------------------------------ */

/* Reads a whole file into a malloc'd buffer. */
static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    cr_assert(ne(ptr, fp, NULL), "cannot open %s", path);
    fseek(fp, 0, SEEK_END);
    long fsz = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)fsz + 1);
    cr_assert(eq(sz, fread(b, 1, (size_t)fsz, fp), (size_t)fsz));
    fclose(fp);
    b[fsz] = 0;
    *n = (size_t)fsz;
    return b;
}

/* Minimal safetensors lookup: the F32 data of tensor name (borrowed from
 * file), and its byte size. Enough for a known, trusted test file. */
static const uint8_t *st_tensor(const uint8_t *file, size_t n, const char *name, size_t *nbytes)
{
    uint64_t hlen = qt_load_le64(file);
    cr_assert(le(u64, 8 + hlen, n));
    char *hdr = malloc(hlen + 1);
    memcpy(hdr, file + 8, hlen);
    hdr[hlen] = 0;
    char key[128];
    snprintf(key, sizeof key, "\"%s\"", name);
    const char *p = strstr(hdr, key);
    cr_assert(ne(ptr, (void *)p, NULL), "%s not in the safetensors header", name);
    const char *end = strchr(p, '}');
    const char *dt = strstr(p, "\"dtype\"");
    cr_assert(eq(int, dt && dt < end, 1));
    cr_assert(ne(ptr, strstr(dt, "\"F32\""), NULL));
    const char *o = strstr(p, "\"data_offsets\"");
    cr_assert(eq(int, o && o < end, 1));
    unsigned long long a = 0, b = 0;
    cr_assert(eq(int, sscanf(strchr(o, '[') + 1, "%llu , %llu", &a, &b), 2));
    free(hdr);
    cr_assert(le(u64, 8 + hlen + b, n));
    *nbytes = (size_t)(b - a);
    return file + 8 + hlen + a;
}

Test(gguf, stories260K_reads_and_matches_the_hf_copy)
{
    QT_NEED_DATA();
    char path[512], err[QT_ERRMSG_SIZE] = "";
    qt_gguf *g = NULL;
    qt_gguf_rule rule;
    qt_test_data_path(path, sizeof path, STORIES_GGUF);
    cr_assert(eq(int, qt_gguf_open(path, &g, &rule, err), QT_OK), "%s", err);
    cr_assert(eq(u32, qt_gguf_version(g), 3));
    cr_assert(eq(u32, qt_gguf_alignment(g), 32));
    cr_assert(eq(sz, qt_gguf_n_tensors(g), 48));
    int64_t total = 0;
    for (size_t t = 0; t < 48; t++) {
        cr_assert(eq(int, qt_gguf_tensor_type(g, t), QT_GGML_TYPE_F32), "%s",
                  qt_gguf_tensor_name(g, t));
        total += qt_gguf_tensor_n_elements(g, t);
        cr_assert(eq(sz, qt_gguf_tensor_nbytes(g, t),
                     (size_t)qt_gguf_tensor_n_elements(g, t) * 4));
    }
    /* 260,032 parameters (data README) + the output matrix copy 64 x 512. */
    cr_assert(eq(i64, total, 260032 + 64 * 512));

    uint32_t u;
    cr_assert(eq(int, qt_gguf_get_u32(g, (size_t)qt_gguf_find_key(g, "llama.embedding_length"), &u,
                                      err),
                 QT_OK));
    cr_assert(eq(u32, u, 64));
    cr_assert(eq(int, qt_gguf_get_u32(g, (size_t)qt_gguf_find_key(g, "llama.block_count"), &u, err),
                 QT_OK));
    cr_assert(eq(u32, u, 5));
    int64_t tok = qt_gguf_find_key(g, "tokenizer.ggml.tokens");
    int64_t sc = qt_gguf_find_key(g, "tokenizer.ggml.scores");
    cr_assert(eq(int, tok >= 0 && sc >= 0, 1));
    qt_gguf_type et;
    size_t n;
    cr_assert(eq(int, qt_gguf_get_arr_info(g, (size_t)tok, &et, &n, err), QT_OK));
    cr_assert(eq(int, et, QT_GGUF_TYPE_STRING));
    cr_assert(eq(sz, n, 512));
    const char *s;
    size_t len;
    cr_assert(eq(int, qt_gguf_get_arr_str(g, (size_t)tok, 1, &s, &len, err), QT_OK));
    cr_assert(eq(int, len == 3 && memcmp(s, "<s>", 3) == 0, 1));
    cr_assert(eq(int, qt_gguf_get_arr_str(g, (size_t)tok, 3, &s, &len, err), QT_OK));
    cr_assert(eq(int, len == 6 && memcmp(s, "<0x00>", 6) == 0, 1));
    cr_assert(eq(int, qt_gguf_get_arr_info(g, (size_t)sc, &et, &n, err), QT_OK));
    cr_assert(eq(int, et, QT_GGUF_TYPE_FLOAT32));
    cr_assert(eq(sz, n, 512));
    float score;
    cr_assert(eq(int, qt_gguf_get_arr_f32(g, (size_t)sc, 511, &score, err), QT_OK));
    cr_assert(eq(int, isfinite(score), 1));
    char buf[256];
    qt_gguf_kv_format(g, (size_t)tok, buf, sizeof buf);
    const char *head = "[string; 512] \"<unk>\", \"<s>\", \"</s>\", ";
    cr_assert(eq(int, strncmp(buf, head, strlen(head)), 0), "%s", buf);

    /* token_embd.weight (ne [64, 512]) and output.weight equal the HF
     * model.embed_tokens.weight ([512, 64] row-major: the same bytes);
     * blk.0.attn_v.weight (not RoPE-permuted) equals v_proj. */
    size_t fn;
    char stpath[512];
    uint8_t *st = slurp(qt_test_data_path(stpath, sizeof stpath, STORIES_ST), &fn);
    const struct {
        const char *gg, *hf;
    } pairs[] = {
        {"token_embd.weight", "model.embed_tokens.weight"},
        {"output.weight", "model.embed_tokens.weight"},
        {"blk.0.attn_v.weight", "model.layers.0.self_attn.v_proj.weight"},
        {"blk.4.ffn_down.weight", "model.layers.4.mlp.down_proj.weight"},
        {"output_norm.weight", "model.norm.weight"},
    };
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
        int64_t t = qt_gguf_find_tensor(g, pairs[k].gg);
        cr_assert(ge(i64, t, 0), "%s", pairs[k].gg);
        size_t nb;
        const uint8_t *ref = st_tensor(st, fn, pairs[k].hf, &nb);
        cr_assert(eq(sz, qt_gguf_tensor_nbytes(g, (size_t)t), nb), "%s", pairs[k].gg);
        cr_assert(eq(int, memcmp(qt_gguf_tensor_data(g, (size_t)t), ref, nb), 0), "%s",
                  pairs[k].gg);
        float x[16];
        cr_assert(eq(int, qt_gguf_tensor_to_f32(g, (size_t)t, 0, 16, x, err), QT_OK));
        for (int i = 0; i < 16; i++)
            cr_assert(eq(u32, qt_f32_bits(x[i]), qt_load_le32(ref + 4 * i)));
    }
    free(st);
    qt_gguf_close(g);
}

Test(gguf, llamacpp_vocab_files_read)
{
    QT_NEED_DATA();
    const char *files[] = {"ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf",
                           "ggml-vocab-phi-3.gguf"};
    const size_t n_tokens[] = {32000, 50257, 32064};
    for (size_t k = 0; k < 3; k++) {
        char rel[128], path[512], err[QT_ERRMSG_SIZE] = "";
        snprintf(rel, sizeof rel, "tokenizers/llamacpp-vocab/%s", files[k]);
        qt_test_data_path(path, sizeof path, rel);
        qt_gguf *g = NULL;
        cr_assert(eq(int, qt_gguf_open(path, &g, NULL, err), QT_OK), "%s", err);
        cr_assert(eq(u32, qt_gguf_version(g), 3));
        cr_assert(eq(sz, qt_gguf_n_tensors(g), 0));
        int64_t tok = qt_gguf_find_key(g, "tokenizer.ggml.tokens");
        cr_assert(ge(i64, tok, 0));
        qt_gguf_type et;
        size_t n;
        cr_assert(eq(int, qt_gguf_get_arr_info(g, (size_t)tok, &et, &n, err), QT_OK));
        cr_assert(eq(int, et, QT_GGUF_TYPE_STRING));
        cr_assert(eq(sz, n, n_tokens[k]), "%s", files[k]);
        size_t bytes = 0;
        for (size_t j = 0; j < n; j++) {
            const char *s;
            size_t len;
            cr_assert(eq(int, qt_gguf_get_arr_str(g, (size_t)tok, j, &s, &len, err), QT_OK));
            bytes += len;
        }
        cr_assert(gt(sz, bytes, n));
        char arch[32];
        size_t ka = (size_t)qt_gguf_find_key(g, "general.architecture");
        cr_assert(eq(int, qt_gguf_get_str_copy(g, ka, arch, sizeof arch, err), QT_OK), "%s", err);
        touch_all(g);
        qt_gguf_close(g);
    }
}
