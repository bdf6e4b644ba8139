/* tests/unit/test_safetensors.c: the safetensors reader (one malformed
 * input per rule S1-S28 of specs/input-safety.md B.6, each asserting its
 * own rule code; the must-accept inputs), the streaming writer (round
 * trips, order, padding, escaping, S29, never over an input, nothing left
 * behind), and the shared stories260K copies and transformers goldens. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/resource.h>
#include <dirent.h>
#include <unistd.h>

#include "common/common.h"
#include "common/half.h"
#include "formats/dtype.h"
#include "formats/safetensors.h"
#include "testutil.h"

/* ---- helpers ------------------------------------------------------------ */

/* A file image: u64 length of the header, the header, data_len bytes of
 * data (0, 1, 2, ...). The header is printf-formatted. Caller frees. */
static unsigned char *mk(size_t *n, size_t data_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static unsigned char *mk(size_t *n, size_t data_len, const char *fmt, ...)
{
    char hdr[4096];
    va_list ap;
    va_start(ap, fmt);
    int hl = vsnprintf(hdr, sizeof hdr, fmt, ap);
    va_end(ap);
    cr_assert(hl >= 0 && (size_t)hl < sizeof hdr);
    *n = 8 + (size_t)hl + data_len;
    unsigned char *b = malloc(*n + 1);
    qt_store_le64(b, (uint64_t)hl);
    memcpy(b + 8, hdr, (size_t)hl);
    for (size_t i = 0; i < data_len; i++) b[8 + hl + i] = (unsigned char)i;
    return b;
}

static void expect_rule_buf(const void *buf, size_t n, qt_st_rule want)
{
    qt_st_reader *r = NULL;
    qt_st_rule rule = QT_ST_RULE_OK;
    char err[QT_ERRMSG_SIZE] = "";
    qt_status st = qt_st_reader_open_mem_ex(buf, n, "t.safetensors", &r, &rule, err);
    cr_assert(eq(int, st, QT_ERR_FORMAT), "status %s (%s)", qt_status_str(st), err);
    cr_assert(eq(int, rule, want), "rule '%s', want '%s': %s", qt_st_rule_name(rule),
              qt_st_rule_name(want), err);
    cr_assert(r == NULL);
    cr_assert(strstr(err, "t.safetensors") != NULL, "message lacks the file: %s", err);
    char tag[16];
    snprintf(tag, sizeof tag, "(%s)", qt_st_rule_tag(want));
    cr_assert(strstr(err, tag) != NULL, "message lacks %s: %s", tag, err);
}

/* expect_rule(rule, data_len, header fmt, ...) */
#define expect_rule(want, data_len, ...)                       \
    do {                                                       \
        size_t n_;                                             \
        unsigned char *b_ = mk(&n_, (data_len), __VA_ARGS__);  \
        expect_rule_buf(b_, n_, (want));                       \
        free(b_);                                              \
    } while (0)

static qt_st_reader *open_ok_buf(const void *buf, size_t n)
{
    qt_st_reader *r = NULL;
    char err[QT_ERRMSG_SIZE] = "";
    qt_status st = qt_st_reader_open_mem(buf, n, "t.safetensors", &r, err);
    cr_assert(eq(int, st, QT_OK), "%s", err);
    cr_assert(r != NULL);
    return r;
}

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

static size_t count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert(d != NULL);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f != NULL);
    cr_assert(eq(sz, fwrite(p, 1, n, f), n));
    fclose(f);
}

static unsigned char *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    cr_assert(eq(sz, fread(b, 1, (size_t)len, f), (size_t)len));
    fclose(f);
    *n = (size_t)len;
    return b;
}

/* ---- dtype ------------------------------------------------------------ */

Test(safetensors, dtype_names_round_trip)
{
    for (int i = 0; i < QT_DTYPE_COUNT; i++) {
        qt_dtype d;
        cr_assert(eq(int, qt_dtype_parse(qt_dtype_name((qt_dtype)i), &d), QT_OK));
        cr_assert(eq(int, d, i));
        cr_assert(gt(sz, qt_dtype_bits((qt_dtype)i), 0));
    }
    qt_dtype d;
    cr_assert(eq(int, qt_dtype_parse("f32", &d), QT_ERR_FORMAT));
    cr_assert(eq(sz, qt_dtype_bits(QT_DTYPE_F4), 4));
    cr_assert(eq(sz, qt_dtype_bits(QT_DTYPE_F6_E3M2), 6));
    cr_assert(eq(sz, qt_dtype_bits(QT_DTYPE_C64), 64));
    cr_assert(eq(sz, qt_dtype_bits(QT_DTYPE_BF16), 16));
    cr_assert(qt_dtype_is_readable(QT_DTYPE_BOOL));
    cr_assert(qt_dtype_is_readable(QT_DTYPE_BF16));
    cr_assert(not(qt_dtype_is_readable(QT_DTYPE_F8_E4M3)));
    cr_assert(not(qt_dtype_is_readable(QT_DTYPE_C64)));
    /* bnb-format.md 4.6 rank order, low to high */
    static const qt_dtype order[] = {
        QT_DTYPE_BOOL, QT_DTYPE_F4, QT_DTYPE_F6_E2M3, QT_DTYPE_F6_E3M2, QT_DTYPE_U8,
        QT_DTYPE_I8, QT_DTYPE_F8_E5M2, QT_DTYPE_F8_E4M3, QT_DTYPE_F8_E8M0,
        QT_DTYPE_F8_E4M3FNUZ, QT_DTYPE_F8_E5M2FNUZ, QT_DTYPE_I16, QT_DTYPE_U16,
        QT_DTYPE_F16, QT_DTYPE_BF16, QT_DTYPE_I32, QT_DTYPE_U32, QT_DTYPE_F32,
        QT_DTYPE_C64, QT_DTYPE_F64, QT_DTYPE_I64, QT_DTYPE_U64};
    cr_assert(eq(sz, sizeof order / sizeof order[0], QT_DTYPE_COUNT));
    for (int i = 0; i < QT_DTYPE_COUNT; i++) cr_assert(eq(int, qt_dtype_rank(order[i]), i));
}

Test(safetensors, rule_names_and_tags)
{
    for (int i = 0; i < QT_ST_RULE_COUNT; i++) {
        cr_assert(qt_st_rule_name((qt_st_rule)i) != NULL);
        cr_assert(ne(str, (char *)qt_st_rule_name((qt_st_rule)i), "?"));
    }
    cr_assert(eq(str, (char *)qt_st_rule_tag(QT_ST_RULE_SIZE_MISMATCH), "S18"));
}

/* ---- must accept ---------------------------------------------------------- */

Test(safetensors, accepts_a_basic_file)
{
    size_t n;
    unsigned char *b = mk(&n, 24,
                          "{\"__metadata__\":{\"format\":\"pt\",\"k\":\"v\"},"
                          "\"b\":{\"dtype\":\"U8\",\"shape\":[2,4],\"data_offsets\":[16,24]},"
                          "\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}");
    qt_st_reader *r = open_ok_buf(b, n);
    cr_assert(eq(sz, qt_st_reader_n_tensors(r), 2));
    const qt_st_tensor *t0 = qt_st_reader_tensor(r, 0), *t1 = qt_st_reader_tensor(r, 1);
    cr_assert(eq(str, (char *)t0->name, "a")); /* data order, not header order */
    cr_assert(eq(str, (char *)t1->name, "b"));
    cr_assert(eq(int, t1->dtype, QT_DTYPE_U8));
    cr_assert(eq(sz, t1->n_dims, 2));
    cr_assert(eq(u64, t1->shape[0], 2));
    cr_assert(eq(u64, t1->shape[1], 4));
    cr_assert(eq(u64, t1->n_elements, 8));
    cr_assert(eq(u64, t1->nbytes, 8));
    cr_assert(eq(u64, t1->begin, 16));
    cr_assert(eq(sz, t1->index, 1));
    cr_assert(eq(u64, t1->file_offset, n - 8));
    cr_assert(eq(int, ((const unsigned char *)t1->data)[0], 16));
    cr_assert(qt_st_reader_find(r, "b") == t1);
    cr_assert(qt_st_reader_find(r, "a") == t0);
    cr_assert(qt_st_reader_find(r, "c") == NULL);
    cr_assert(qt_st_reader_find(r, "__metadata__") == NULL);
    cr_assert(eq(sz, qt_st_reader_n_metadata(r), 2));
    const char *k, *v;
    qt_st_reader_metadata(r, 0, &k, &v);
    cr_assert(eq(str, (char *)k, "format"));
    cr_assert(eq(str, (char *)v, "pt"));
    cr_assert(eq(str, (char *)qt_st_reader_metadata_get(r, "k"), "v"));
    cr_assert(qt_st_reader_metadata_get(r, "x") == NULL);
    cr_assert(eq(u64, qt_st_reader_file_size(r), n));
    cr_assert(eq(str, (char *)qt_st_reader_path(r), "t.safetensors"));
    qt_st_reader_close(r);
    qt_st_reader_close(NULL);
    free(b);
}

Test(safetensors, accepts_empty_metadata_S10)
{
    size_t n;
    unsigned char *b = mk(&n, 0, "{\"__metadata__\":{}}");
    qt_st_reader *r = open_ok_buf(b, n);
    cr_assert(eq(sz, qt_st_reader_n_tensors(r), 0));
    cr_assert(eq(sz, qt_st_reader_n_metadata(r), 0));
    qt_st_reader_close(r);
    free(b);
    b = mk(&n, 0, "{}");
    r = open_ok_buf(b, n);
    qt_st_reader_close(r);
    free(b);
}

Test(safetensors, accepts_zero_size_and_scalar_S24)
{
    size_t n;
    unsigned char *b = mk(&n, 4,
                          "{\"e\":{\"dtype\":\"F32\",\"shape\":[2,0],\"data_offsets\":[0,0]},"
                          "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
                          "\"z\":{\"dtype\":\"BF16\",\"shape\":[0],\"data_offsets\":[4,4]}}");
    qt_st_reader *r = open_ok_buf(b, n);
    const qt_st_tensor *e = qt_st_reader_find(r, "e"), *s = qt_st_reader_find(r, "s");
    cr_assert(eq(u64, e->n_elements, 0));
    cr_assert(eq(u64, e->nbytes, 0));
    cr_assert(eq(sz, s->n_dims, 0));
    cr_assert(eq(u64, s->n_elements, 1));
    float f;
    cr_assert(eq(int, qt_st_tensor_to_f32(r, s, 0, 1, &f, NULL), QT_OK));
    cr_assert(eq(int, qt_st_tensor_to_f32(r, e, 0, 0, &f, NULL), QT_OK));
    qt_st_reader_close(r);
    free(b);
}

Test(safetensors, accepts_whitespace_padded_header)
{
    size_t n;
    unsigned char *b = mk(&n, 4, " \n\t{\"a\":{\"dtype\":\"I32\",\"shape\":[1],"
                                 "\"data_offsets\":[0,4]}}   \r\n ");
    qt_st_reader *r = open_ok_buf(b, n);
    cr_assert(eq(sz, qt_st_reader_n_tensors(r), 1));
    qt_st_reader_close(r);
    free(b);
}

Test(safetensors, accepts_misaligned_data_S26)
{
    /* header padded so that the data starts at an odd offset */
    const char *h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    int pad = (int)strlen(h) % 2 ? 0 : 1;
    size_t n;
    unsigned char *b = mk(&n, 8, "%s%*s", h, pad, "");
    float v[2] = {1.5f, -2.25f};
    memcpy(b + n - 8, v, 8);
    qt_st_reader *r = open_ok_buf(b, n);
    const qt_st_tensor *t = qt_st_reader_tensor(r, 0);
    cr_assert(ne(u64, t->file_offset % 4, 0));
    float out[2];
    cr_assert(eq(int, qt_st_tensor_to_f32(r, t, 0, 2, out, NULL), QT_OK));
    cr_assert(eq(flt, out[0], 1.5f));
    cr_assert(eq(flt, out[1], -2.25f));
    qt_st_reader_close(r);
    free(b);
}

Test(safetensors, ignores_unknown_fields_but_reads_exact_numbers)
{
    size_t n;
    unsigned char *b = mk(&n, 2,
                          "{\"a\":{\"x\":[1.5,-3,{\"y\":7}],\"dtype\":\"U8\",\"shape\":[2],"
                          "\"note\":\"9 \\\" 8\",\"data_offsets\":[0,2]}}");
    qt_st_reader *r = open_ok_buf(b, n);
    cr_assert(eq(u64, qt_st_reader_tensor(r, 0)->shape[0], 2));
    qt_st_reader_close(r);
    free(b);
}

/* ---- S1-S28 ----------------------------------------------------------- */

Test(safetensors, S1_header_too_small)
{
    unsigned char b[7] = {0};
    expect_rule_buf(b, 0, QT_ST_RULE_HEADER_TOO_SMALL);
    expect_rule_buf(b, 7, QT_ST_RULE_HEADER_TOO_SMALL);
    char dir[64], path[128];
    cr_assert(qt_test_tmpdir(dir, sizeof dir) != NULL);
    snprintf(path, sizeof path, "%s/empty.safetensors", dir);
    write_file(path, b, 0);
    qt_st_reader *r = NULL;
    qt_st_rule rule;
    char err[QT_ERRMSG_SIZE];
    cr_assert(eq(int, qt_st_reader_open_ex(path, &r, &rule, err), QT_ERR_FORMAT));
    cr_assert(eq(int, rule, QT_ST_RULE_HEADER_TOO_SMALL));
    cr_assert(strstr(err, "(S1)") != NULL);
    snprintf(path, sizeof path, "%s/absent.safetensors", dir);
    cr_assert(eq(int, qt_st_reader_open_ex(path, &r, &rule, err), QT_ERR_IO));
    cr_assert(eq(int, rule, QT_ST_RULE_IO));
    /* a folder where a file should be is bad input, named as such (issue 12) */
    cr_assert(eq(int, qt_st_reader_open_ex(dir, &r, &rule, err), QT_ERR_FORMAT));
    cr_assert(strstr(err, "is a folder, not a regular file") != NULL, "%s", err);
    rmtree(dir);
}

Test(safetensors, S2_header_too_large)
{
    unsigned char b[64] = {0};
    qt_store_le64(b, QT_ST_MAX_HEADER + 1ull);
    expect_rule_buf(b, sizeof b, QT_ST_RULE_HEADER_TOO_LARGE);
}

Test(safetensors, S3_header_length_past_end)
{
    unsigned char b[20] = {0};
    qt_store_le64(b, 13);
    memcpy(b + 8, "{}", 2);
    expect_rule_buf(b, sizeof b, QT_ST_RULE_HEADER_LENGTH);
}

Test(safetensors, S4_header_length_overflows)
{
    unsigned char b[16] = {0};
    qt_store_le64(b, UINT64_MAX);
    expect_rule_buf(b, sizeof b, QT_ST_RULE_HEADER_OVERFLOW);
    qt_store_le64(b, UINT64_MAX - 7);
    expect_rule_buf(b, sizeof b, QT_ST_RULE_HEADER_OVERFLOW);
}

Test(safetensors, S5_header_not_utf8)
{
    expect_rule(QT_ST_RULE_HEADER_UTF8, 0, "{\"a\xff\":{}}");
    expect_rule(QT_ST_RULE_HEADER_UTF8, 0, "{\"\xc0\xaf\":{}}"); /* overlong */
}

Test(safetensors, S6_header_not_json)
{
    expect_rule(QT_ST_RULE_HEADER_JSON, 0, "{");
    expect_rule(QT_ST_RULE_HEADER_JSON, 0, "%s", "");
    expect_rule(QT_ST_RULE_HEADER_JSON, 0, "{\"a\":1,}");
    expect_rule(QT_ST_RULE_HEADER_JSON, 0, "{} x");
}

Test(safetensors, S7_header_not_an_object)
{
    expect_rule(QT_ST_RULE_HEADER_NOT_OBJECT, 0, "[]");
    expect_rule(QT_ST_RULE_HEADER_NOT_OBJECT, 0, "\"x\"");
    expect_rule(QT_ST_RULE_HEADER_NOT_OBJECT, 0, "12");
    expect_rule(QT_ST_RULE_HEADER_NOT_OBJECT, 0, "{\"a\\u0000b\":{}}");
    unsigned char b[8 + 4] = {0};
    qt_store_le64(b, 4);
    memcpy(b + 8, "{}\0 ", 4);
    expect_rule_buf(b, sizeof b, QT_ST_RULE_HEADER_NOT_OBJECT);
}

Test(safetensors, S8_duplicate_keys)
{
    expect_rule(QT_ST_RULE_DUPLICATE_KEY, 8,
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}");
    expect_rule(QT_ST_RULE_DUPLICATE_KEY, 0, "{\"__metadata__\":{},\"__metadata__\":{}}");
    expect_rule(QT_ST_RULE_DUPLICATE_KEY, 0, "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}");
}

Test(safetensors, S9_metadata_values_must_be_strings)
{
    expect_rule(QT_ST_RULE_METADATA_VALUE, 0, "{\"__metadata__\":{\"k\":1}}");
    expect_rule(QT_ST_RULE_METADATA_VALUE, 0, "{\"__metadata__\":{\"k\":null}}");
    expect_rule(QT_ST_RULE_METADATA_VALUE, 0, "{\"__metadata__\":{\"k\":{}}}");
    expect_rule(QT_ST_RULE_METADATA_VALUE, 0, "{\"__metadata__\":[\"a\"]}");
    expect_rule(QT_ST_RULE_METADATA_VALUE, 0, "{\"__metadata__\":\"a\"}");
}

Test(safetensors, S11_bad_tensor_entries)
{
    expect_rule(QT_ST_RULE_TENSOR_ENTRY, 4, "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}");
    expect_rule(QT_ST_RULE_TENSOR_ENTRY, 4, "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}");
    expect_rule(QT_ST_RULE_TENSOR_ENTRY, 4, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}");
    expect_rule(QT_ST_RULE_TENSOR_ENTRY, 4,
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[\"0\",\"4\"]}}");
    expect_rule(QT_ST_RULE_TENSOR_ENTRY, 4,
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,4]}}");
    expect_rule(QT_ST_RULE_TENSOR_ENTRY, 4,
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}");
    expect_rule(QT_ST_RULE_TENSOR_ENTRY, 4,
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,-4]}}");
    expect_rule(QT_ST_RULE_TENSOR_ENTRY, 4,
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.0]}}");
    expect_rule(QT_ST_RULE_TENSOR_ENTRY, 4,
                "{\"a\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}");
    expect_rule(QT_ST_RULE_TENSOR_ENTRY, 4,
                "{\"a\":{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}}");
    expect_rule(QT_ST_RULE_TENSOR_ENTRY, 4,
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}");
    expect_rule(QT_ST_RULE_TENSOR_ENTRY, 4, "{\"a\":[1,2]}");
    expect_rule(QT_ST_RULE_TENSOR_ENTRY, 4, "{\"a\":\"F32\"}");
}

Test(safetensors, S12_unknown_dtype)
{
    expect_rule(QT_ST_RULE_DTYPE_UNKNOWN, 4,
                "{\"a\":{\"dtype\":\"F31\",\"shape\":[1],\"data_offsets\":[0,4]}}");
    expect_rule(QT_ST_RULE_DTYPE_UNKNOWN, 4,
                "{\"a\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}");
    /* every dtype of the current list is known */
    size_t n;
    unsigned char *b = mk(&n, 8,
                          "{\"a\":{\"dtype\":\"F8_E8M0\",\"shape\":[2],\"data_offsets\":[0,2]},"
                          "\"b\":{\"dtype\":\"F4\",\"shape\":[4],\"data_offsets\":[2,4]},"
                          "\"c\":{\"dtype\":\"F6_E2M3\",\"shape\":[4],\"data_offsets\":[4,7]},"
                          "\"d\":{\"dtype\":\"BOOL\",\"shape\":[1],\"data_offsets\":[7,8]}}");
    qt_st_reader *r = open_ok_buf(b, n);
    char err[QT_ERRMSG_SIZE];
    float f[4];
    cr_assert(eq(int, qt_st_tensor_to_f32(r, qt_st_reader_find(r, "a"), 0, 2, f, err),
                 QT_ERR_UNSUPPORTED));
    cr_assert(strstr(err, "unsupported dtype 'F8_E8M0'") != NULL, "%s", err);
    cr_assert(eq(int, qt_st_tensor_to_f32(r, qt_st_reader_find(r, "d"), 0, 1, f, err), QT_OK));
    cr_assert(eq(flt, f[0], 1.0f)); /* byte 7 */
    qt_st_reader_close(r);
    free(b);
}

Test(safetensors, S13_bad_dimensions)
{
    expect_rule(QT_ST_RULE_SHAPE_DIM, 4,
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}");
    expect_rule(QT_ST_RULE_SHAPE_DIM, 4,
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}");
    expect_rule(QT_ST_RULE_SHAPE_DIM, 4,
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[1e0],\"data_offsets\":[0,4]}}");
    expect_rule(QT_ST_RULE_SHAPE_DIM, 4,
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[18446744073709551616],"
                "\"data_offsets\":[0,4]}}");
    expect_rule(QT_ST_RULE_RANK_TOO_LARGE, 4,
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],"
                "\"data_offsets\":[0,4]}}");
    /* exactly QT_ST_MAX_DIMS is fine */
    size_t n;
    unsigned char *b = mk(&n, 4,
                          "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],"
                          "\"data_offsets\":[0,4]}}");
    qt_st_reader *r = open_ok_buf(b, n);
    cr_assert(eq(sz, qt_st_reader_tensor(r, 0)->n_dims, 16));
    qt_st_reader_close(r);
    free(b);
}

Test(safetensors, S14_element_count_overflow)
{
    expect_rule(QT_ST_RULE_SHAPE_OVERFLOW, 4,
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,18446744073709551614],"
                "\"data_offsets\":[0,4]}}");
}

Test(safetensors, S15_byte_size_overflow)
{
    expect_rule(QT_ST_RULE_SIZE_OVERFLOW, 4,
                "{\"a\":{\"dtype\":\"I32\",\"shape\":[2,9223372036854775807],"
                "\"data_offsets\":[0,4]}}");
}

Test(safetensors, S16_subbyte_not_whole_bytes)
{
    expect_rule(QT_ST_RULE_SUBBYTE_MISALIGNED, 2,
                "{\"a\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}");
    expect_rule(QT_ST_RULE_SUBBYTE_MISALIGNED, 2,
                "{\"a\":{\"dtype\":\"F6_E3M2\",\"shape\":[2],\"data_offsets\":[0,2]}}");
}

Test(safetensors, S17_end_before_begin)
{
    expect_rule(QT_ST_RULE_OFFSET_REVERSED, 8,
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}");
}

Test(safetensors, S18_size_mismatch)
{
    size_t n;
    unsigned char *b =
        mk(&n, 12, "{\"x.weight\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,12]}}");
    char err[QT_ERRMSG_SIZE];
    qt_st_reader *r;
    qt_st_rule rule;
    cr_assert(eq(int, qt_st_reader_open_mem_ex(b, n, "model.safetensors", &r, &rule, err),
                 QT_ERR_FORMAT));
    cr_assert(eq(int, rule, QT_ST_RULE_SIZE_MISMATCH));
    cr_assert(eq(str, err,
                 "model.safetensors: tensor 'x.weight': data_offsets [0, 12) do not match 4 "
                 "elements of F32 (16 bytes) (S18)"));
    free(b);
}

Test(safetensors, S19_gaps)
{
    expect_rule(QT_ST_RULE_OFFSET_GAP, 8,
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}");
    expect_rule(QT_ST_RULE_OFFSET_GAP, 12,
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}");
}

Test(safetensors, S20_overlaps_and_aliases)
{
    expect_rule(QT_ST_RULE_OFFSET_OVERLAP, 8,
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}");
    expect_rule(QT_ST_RULE_OFFSET_OVERLAP, 4,
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}");
}

Test(safetensors, S21_offsets_past_the_data)
{
    expect_rule(QT_ST_RULE_OFFSET_PAST_END, 4,
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}");
    expect_rule(QT_ST_RULE_OFFSET_PAST_END, 0,
                "{\"a\":{\"dtype\":\"U8\",\"shape\":[1000000000000],"
                "\"data_offsets\":[0,1000000000000]}}");
}

Test(safetensors, S22_truncated)
{
    expect_rule(QT_ST_RULE_TRUNCATED, 6,
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}");
}

Test(safetensors, S23_trailing_bytes)
{
    expect_rule(QT_ST_RULE_TRAILING_BYTES, 9,
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}");
    expect_rule(QT_ST_RULE_TRAILING_BYTES, 1, "{}");
}

Test(safetensors, S25_nesting_too_deep)
{
    char hdr[512];
    size_t k = 0;
    k += (size_t)sprintf(hdr + k, "{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0],\"x\":");
    for (int i = 0; i < 100; i++) hdr[k++] = '[';
    for (int i = 0; i < 100; i++) hdr[k++] = ']';
    k += (size_t)sprintf(hdr + k, "}}");
    expect_rule(QT_ST_RULE_TOO_DEEP, 0, "%s", hdr);
}

Test(safetensors, S28_file_changed_while_mapped)
{
    char dir[64], path[128];
    cr_assert(qt_test_tmpdir(dir, sizeof dir) != NULL);
    snprintf(path, sizeof path, "%s/a.safetensors", dir);
    size_t n;
    unsigned char *b = mk(&n, 8, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}");
    write_file(path, b, n);
    qt_st_reader *r;
    char err[QT_ERRMSG_SIZE];
    cr_assert(eq(int, qt_st_reader_open(path, &r, err), QT_OK), "%s", err);
    cr_assert(eq(int, qt_st_reader_check_unchanged(r, err), QT_OK));
    cr_assert(eq(int, truncate(path, (off_t)n + 1), 0));
    cr_assert(eq(int, qt_st_reader_check_unchanged(r, err), QT_ERR_FORMAT));
    cr_assert(strstr(err, "(S28)") != NULL, "%s", err);
    qt_st_reader_close(r);
    free(b);
    rmtree(dir);
}

Test(safetensors, file_reader_maps_and_releases_pages)
{
    char dir[64], path[128];
    cr_assert(qt_test_tmpdir(dir, sizeof dir) != NULL);
    snprintf(path, sizeof path, "%s/big.safetensors", dir);
    size_t n;
    const size_t nel = 100000;
    unsigned char *b = mk(&n, nel * 4, "{\"w\":{\"dtype\":\"F32\",\"shape\":[%zu],"
                                       "\"data_offsets\":[0,%zu]}}",
                          nel, nel * 4);
    float *vals = (float *)malloc(nel * 4);
    for (size_t i = 0; i < nel; i++) vals[i] = (float)i * 0.5f;
    memcpy(b + n - nel * 4, vals, nel * 4);
    write_file(path, b, n);
    qt_st_reader *r;
    char err[QT_ERRMSG_SIZE];
    cr_assert(eq(int, qt_st_reader_open(path, &r, err), QT_OK), "%s", err);
    const qt_st_tensor *t = qt_st_reader_find(r, "w");
    float *out = malloc(nel * 4);
    qt_st_tensor_prefetch(r, t);
    cr_assert(eq(int, qt_st_tensor_to_f32(r, t, 0, nel, out, err), QT_OK));
    cr_assert(eq(int, memcmp(out, vals, nel * 4), 0));
    qt_st_tensor_release(r, t);
    memset(out, 0, nel * 4);
    cr_assert(eq(int, qt_st_tensor_to_f32(r, t, 10, nel - 10, out, err), QT_OK));
    cr_assert(eq(int, memcmp(out, vals + 10, (nel - 10) * 4), 0));
    cr_assert(eq(int, qt_st_tensor_to_f32(r, t, 10, nel, out, err), QT_ERR_ARG));
    qt_st_reader_close(r);
    free(out);
    free(vals);
    free(b);
    rmtree(dir);
}

Test(safetensors, random_corruption_never_crashes)
{
    unsigned long long seed = qt_test_seed(12345);
    size_t n;
    unsigned char *good = mk(&n, 24,
                             "{\"__metadata__\":{\"format\":\"pt\"},"
                             "\"b\":{\"dtype\":\"U8\",\"shape\":[2,4],\"data_offsets\":[16,24]},"
                             "\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}");
    unsigned char *b = malloc(n);
    for (int it = 0; it < 20000; it++) {
        memcpy(b, good, n);
        int flips = 1 + (int)(qt_test_rand(&seed) % 4);
        for (int k = 0; k < flips; k++)
            b[qt_test_rand(&seed) % n] = (unsigned char)qt_test_rand(&seed);
        size_t len = (qt_test_rand(&seed) % 8) ? n : (size_t)(qt_test_rand(&seed) % n);
        qt_st_reader *r = NULL;
        qt_st_rule rule;
        char err[QT_ERRMSG_SIZE];
        qt_status st = qt_st_reader_open_mem_ex(b, len, "fuzz", &r, &rule, err);
        if (st == QT_OK) {
            for (size_t i = 0; i < qt_st_reader_n_tensors(r); i++) {
                const qt_st_tensor *t = qt_st_reader_tensor(r, i);
                cr_assert(t->file_offset + t->nbytes <= len);
                volatile unsigned char sink = 0;
                for (uint64_t j = 0; j < t->nbytes; j++)
                    sink ^= ((const unsigned char *)t->data)[j];
                (void)sink;
            }
            qt_st_reader_close(r);
        } else {
            cr_assert(eq(int, st, QT_ERR_FORMAT));
            cr_assert(ne(int, rule, QT_ST_RULE_OK));
        }
    }
    free(b);
    free(good);
}

/* ---- writer ----------------------------------------------------------- */

Test(safetensors, writer_orders_pads_and_round_trips)
{
    char dir[64], path[128];
    cr_assert(qt_test_tmpdir(dir, sizeof dir) != NULL);
    snprintf(path, sizeof path, "%s/out.safetensors", dir);
    qt_st_writer *w;
    char err[QT_ERRMSG_SIZE];
    cr_assert(eq(int, qt_st_writer_open(path, &w, err), QT_OK));
    cr_assert(eq(int, qt_st_writer_add_metadata(w, "format", "pt"), QT_OK));
    cr_assert(eq(int, qt_st_writer_add_metadata(w, "qtool.scheme", "nf4"), QT_OK));
    cr_assert(eq(int, qt_st_writer_add_metadata(w, "format", "x"), QT_ERR_ARG));
    uint64_t s_b[] = {3}, s_z[] = {2, 2}, s_a[] = {5}, s_m[] = {3};
    size_t ib, iz, ia, im, ie;
    cr_assert(eq(int, qt_st_writer_declare(w, "b", QT_DTYPE_U8, 1, s_b, &ib), QT_OK));
    cr_assert(eq(int, qt_st_writer_declare(w, "z", QT_DTYPE_F32, 2, s_z, &iz), QT_OK));
    cr_assert(eq(int, qt_st_writer_declare(w, "a", QT_DTYPE_F32, 1, s_a, &ia), QT_OK));
    cr_assert(eq(int, qt_st_writer_declare(w, "m", QT_DTYPE_BF16, 1, s_m, &im), QT_OK));
    cr_assert(eq(int, qt_st_writer_declare(w, "empty", QT_DTYPE_I64, 0, NULL, &ie), QT_OK));
    cr_assert(eq(sz, ia, 2));
    cr_assert(eq(u64, qt_st_writer_tensor_nbytes(w, iz), 16));
    unsigned char vb[3] = {7, 8, 9};
    float vz[4] = {1, 2, 3, 4}, va[5] = {-1, -2, -3, -4, -5};
    uint16_t vm[3] = {qt_fp32_to_bf16(0.5f), qt_fp32_to_bf16(1.5f), qt_fp32_to_bf16(-3.0f)};
    int64_t ve = -42;
    /* chunks, out of order */
    cr_assert(eq(int, qt_st_writer_write(w, ia, 12, va + 3, 8), QT_OK));
    cr_assert(eq(int, qt_st_writer_write(w, ib, 0, vb, 3), QT_OK));
    cr_assert(eq(int, qt_st_writer_write(w, ia, 0, va, 12), QT_OK));
    cr_assert(eq(int, qt_st_writer_write(w, iz, 8, vz + 2, 8), QT_OK));
    cr_assert(eq(int, qt_st_writer_write(w, iz, 0, vz, 8), QT_OK));
    cr_assert(eq(int, qt_st_writer_write(w, iz, 4, vz + 1, 8), QT_OK)); /* rewrite */
    cr_assert(eq(int, qt_st_writer_write(w, im, 0, vm, 6), QT_OK));
    cr_assert(eq(int, qt_st_writer_write(w, ie, 0, &ve, 8), QT_OK));
    cr_assert(eq(int, qt_st_writer_write(w, ia, 16, va, 8), QT_ERR_ARG)); /* past the end */
    cr_assert(eq(int, qt_st_writer_declare(w, "late", QT_DTYPE_U8, 1, s_b, NULL), QT_ERR_ARG));
    cr_assert(eq(int, qt_st_writer_close(w, err), QT_OK), "%s", err);
    cr_assert(eq(sz, count_entries(dir), 1)); /* no temporary left */

    size_t n;
    unsigned char *file = read_file(path, &n);
    uint64_t hl = qt_load_le64(file);
    cr_assert(eq(u64, hl % 8, 0));
    const char *want = "{\"__metadata__\":{\"format\":\"pt\",\"qtool.scheme\":\"nf4\"},"
                       "\"empty\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]},"
                       "\"a\":{\"dtype\":\"F32\",\"shape\":[5],\"data_offsets\":[8,28]},"
                       "\"z\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[28,44]},"
                       "\"m\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[44,50]},"
                       "\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[50,53]}}";
    size_t wl = strlen(want);
    cr_assert(eq(u64, hl, (wl + 7) / 8 * 8));
    cr_assert(eq(int, memcmp(file + 8, want, wl), 0), "header: %.*s", (int)hl, file + 8);
    for (size_t i = wl; i < hl; i++) cr_assert(eq(int, file[8 + i], ' '));
    cr_assert(eq(sz, n, 8 + hl + 53));

    qt_st_reader *r;
    cr_assert(eq(int, qt_st_reader_open(path, &r, err), QT_OK), "%s", err);
    cr_assert(eq(sz, qt_st_reader_n_tensors(r), 5));
    const char *order[] = {"empty", "a", "z", "m", "b"};
    for (size_t i = 0; i < 5; i++)
        cr_assert(eq(str, (char *)qt_st_reader_tensor(r, i)->name, (char *)order[i]));
    float out[5];
    cr_assert(eq(int, qt_st_tensor_to_f32(r, qt_st_reader_find(r, "a"), 0, 5, out, err), QT_OK));
    cr_assert(eq(int, memcmp(out, va, 20), 0));
    cr_assert(eq(int, qt_st_tensor_to_f32(r, qt_st_reader_find(r, "z"), 0, 4, out, err), QT_OK));
    cr_assert(eq(int, memcmp(out, vz, 16), 0));
    cr_assert(eq(int, qt_st_tensor_to_f32(r, qt_st_reader_find(r, "m"), 0, 3, out, err), QT_OK));
    cr_assert(eq(flt, out[0], 0.5f));
    cr_assert(eq(flt, out[2], -3.0f));
    cr_assert(eq(int, qt_st_tensor_to_f32(r, qt_st_reader_find(r, "b"), 1, 2, out, err), QT_OK));
    cr_assert(eq(flt, out[0], 8.0f));
    cr_assert(eq(int, qt_st_tensor_to_f32(r, qt_st_reader_find(r, "empty"), 0, 1, out, err),
                 QT_OK));
    cr_assert(eq(flt, out[0], -42.0f));
    cr_assert(eq(str, (char *)qt_st_reader_metadata_get(r, "qtool.scheme"), "nf4"));
    qt_st_reader_close(r);
    free(file);
    rmtree(dir);
}

Test(safetensors, writer_keeps_declared_order_when_asked)
{
    char dir[64], path[128];
    cr_assert(qt_test_tmpdir(dir, sizeof dir) != NULL);
    snprintf(path, sizeof path, "%s/o.safetensors", dir);
    qt_st_writer *w;
    cr_assert(eq(int, qt_st_writer_open(path, &w, NULL), QT_OK));
    qt_st_writer_keep_order(w, true);
    uint64_t s[] = {1};
    unsigned char z[8] = {0};
    cr_assert(eq(int, qt_st_writer_declare(w, "y", QT_DTYPE_U8, 1, s, NULL), QT_OK));
    cr_assert(eq(int, qt_st_writer_declare(w, "x", QT_DTYPE_F64, 1, s, NULL), QT_OK));
    cr_assert(eq(int, qt_st_writer_write(w, 0, 0, z, 1), QT_OK));
    cr_assert(eq(int, qt_st_writer_write(w, 1, 0, z, 8), QT_OK));
    cr_assert(eq(int, qt_st_writer_close(w, NULL), QT_OK));
    qt_st_reader *r;
    cr_assert(eq(int, qt_st_reader_open(path, &r, NULL), QT_OK));
    cr_assert(eq(str, (char *)qt_st_reader_tensor(r, 0)->name, "y"));
    cr_assert(eq(u64, qt_st_reader_tensor(r, 1)->file_offset % 8, 1));
    qt_st_reader_close(r);
    rmtree(dir);
}

Test(safetensors, writer_escapes_names)
{
    char dir[64], path[128];
    cr_assert(qt_test_tmpdir(dir, sizeof dir) != NULL);
    snprintf(path, sizeof path, "%s/e.safetensors", dir);
    const char *names[] = {"q\"uote", "back\\slash", "new\nline\ttab", "ctl\x01\x1f",
                           "caf\xc3\xa9 \xe2\x96\x81"};
    qt_st_writer *w;
    cr_assert(eq(int, qt_st_writer_open(path, &w, NULL), QT_OK));
    cr_assert(eq(int, qt_st_writer_add_metadata(w, "k\"\\", "v\n\x02"), QT_OK));
    uint64_t s[] = {1};
    for (size_t i = 0; i < 5; i++)
        cr_assert(eq(int, qt_st_writer_declare(w, names[i], QT_DTYPE_U8, 1, s, NULL), QT_OK),
                  "%s", qt_st_writer_errmsg(w));
    cr_assert(eq(int, qt_st_writer_declare(w, "bad\xff", QT_DTYPE_U8, 1, s, NULL), QT_ERR_ARG));
    cr_assert(eq(int, qt_st_writer_declare(w, "", QT_DTYPE_U8, 1, s, NULL), QT_ERR_ARG));
    for (size_t i = 0; i < 5; i++) {
        unsigned char v = (unsigned char)i;
        cr_assert(eq(int, qt_st_writer_write(w, i, 0, &v, 1), QT_OK));
    }
    char err[QT_ERRMSG_SIZE];
    cr_assert(eq(int, qt_st_writer_close(w, err), QT_OK), "%s", err);
    qt_st_reader *r;
    cr_assert(eq(int, qt_st_reader_open(path, &r, err), QT_OK), "%s", err);
    for (size_t i = 0; i < 5; i++) {
        const qt_st_tensor *t = qt_st_reader_find(r, names[i]);
        cr_assert(t != NULL, "name %zu lost", i);
        cr_assert(eq(int, *(const unsigned char *)t->data, (int)i));
    }
    cr_assert(eq(str, (char *)qt_st_reader_metadata_get(r, "k\"\\"), "v\n\x02"));
    qt_st_reader_close(r);
    rmtree(dir);
}

Test(safetensors, S29_writer_refuses_metadata_tensor_and_duplicates)
{
    char dir[64], path[128];
    cr_assert(qt_test_tmpdir(dir, sizeof dir) != NULL);
    snprintf(path, sizeof path, "%s/d.safetensors", dir);
    qt_st_writer *w;
    cr_assert(eq(int, qt_st_writer_open(path, &w, NULL), QT_OK));
    uint64_t s[] = {1};
    cr_assert(eq(int, qt_st_writer_declare(w, "__metadata__", QT_DTYPE_U8, 1, s, NULL),
                 QT_ERR_ARG));
    cr_assert(strstr(qt_st_writer_errmsg(w), "(S29)") != NULL, "%s", qt_st_writer_errmsg(w));
    uint64_t s3[] = {3};
    cr_assert(eq(int, qt_st_writer_declare(w, "f4", QT_DTYPE_F4, 1, s3, NULL), QT_ERR_ARG));
    cr_assert(eq(int, qt_st_writer_declare(w, "a", QT_DTYPE_U8, 1, s, NULL), QT_OK));
    cr_assert(eq(int, qt_st_writer_declare(w, "a", QT_DTYPE_F32, 1, s, NULL), QT_OK));
    cr_assert(eq(int, qt_st_writer_begin(w), QT_ERR_ARG));
    cr_assert(strstr(qt_st_writer_errmsg(w), "'a' declared twice") != NULL, "%s",
              qt_st_writer_errmsg(w));
    char err[QT_ERRMSG_SIZE];
    cr_assert(ne(int, qt_st_writer_close(w, err), QT_OK));
    cr_assert(eq(sz, count_entries(dir), 0));
    rmtree(dir);
}

Test(safetensors, writer_never_writes_over_an_input)
{
    char dir[64], in[128], hard[128];
    cr_assert(qt_test_tmpdir(dir, sizeof dir) != NULL);
    snprintf(in, sizeof in, "%s/in.safetensors", dir);
    snprintf(hard, sizeof hard, "%s/hard.safetensors", dir);
    write_file(in, "original", 8);
    cr_assert(eq(int, link(in, hard), 0));
    const char *targets[] = {in, hard};
    for (int k = 0; k < 2; k++) {
        qt_st_writer *w;
        cr_assert(eq(int, qt_st_writer_open(targets[k], &w, NULL), QT_OK));
        cr_assert(eq(int, qt_st_writer_protect_path(w, in), QT_OK));
        uint64_t s[] = {1};
        cr_assert(eq(int, qt_st_writer_declare(w, "a", QT_DTYPE_U8, 1, s, NULL), QT_OK));
        unsigned char v = 1;
        cr_assert(eq(int, qt_st_writer_write(w, 0, 0, &v, 1), QT_ERR_ARG));
        char err[QT_ERRMSG_SIZE];
        cr_assert(ne(int, qt_st_writer_close(w, err), QT_OK));
        cr_assert(strstr(err, "input") != NULL, "%s", err);
    }
    size_t n;
    unsigned char *b = read_file(in, &n);
    cr_assert(eq(sz, n, 8));
    cr_assert(eq(int, memcmp(b, "original", 8), 0));
    free(b);
    cr_assert(eq(sz, count_entries(dir), 2));
    /* protect_inode with the pair directly, refused at close too */
    struct stat sb;
    cr_assert(eq(int, stat(in, &sb), 0));
    char out[128];
    snprintf(out, sizeof out, "%s/out.safetensors", dir);
    qt_st_writer *w;
    cr_assert(eq(int, qt_st_writer_open(out, &w, NULL), QT_OK));
    cr_assert(eq(int, qt_st_writer_protect_inode(w, sb.st_dev, sb.st_ino), QT_OK));
    cr_assert(eq(int, qt_st_writer_begin(w), QT_OK));
    cr_assert(eq(int, link(in, out), 0)); /* the output path becomes the input meanwhile */
    cr_assert(eq(int, qt_st_writer_close(w, NULL), QT_ERR_ARG));
    b = read_file(in, &n);
    cr_assert(eq(int, memcmp(b, "original", 8), 0));
    free(b);
    cr_assert(eq(sz, count_entries(dir), 3));
    rmtree(dir);
}

Test(safetensors, writer_abort_and_incomplete_leave_nothing)
{
    char dir[64], path[128];
    cr_assert(qt_test_tmpdir(dir, sizeof dir) != NULL);
    snprintf(path, sizeof path, "%s/x.safetensors", dir);
    uint64_t s[] = {4};
    qt_st_writer *w;
    cr_assert(eq(int, qt_st_writer_open(path, &w, NULL), QT_OK));
    cr_assert(eq(int, qt_st_writer_declare(w, "a", QT_DTYPE_F32, 1, s, NULL), QT_OK));
    cr_assert(eq(int, qt_st_writer_begin(w), QT_OK));
    cr_assert(eq(sz, count_entries(dir), 1)); /* the temporary file */
    qt_st_writer_abort(w);
    cr_assert(eq(sz, count_entries(dir), 0));
    qt_st_writer_abort(NULL);

    cr_assert(eq(int, qt_st_writer_open(path, &w, NULL), QT_OK));
    cr_assert(eq(int, qt_st_writer_declare(w, "a", QT_DTYPE_F32, 1, s, NULL), QT_OK));
    float v[4] = {0};
    cr_assert(eq(int, qt_st_writer_write(w, 0, 0, v, 8), QT_OK));
    cr_assert(eq(int, qt_st_writer_write(w, 0, 12, v, 4), QT_OK));
    char err[QT_ERRMSG_SIZE];
    cr_assert(eq(int, qt_st_writer_close(w, err), QT_ERR_ARG));
    cr_assert(strstr(err, "only 12 of 16 bytes") != NULL, "%s", err);
    cr_assert(eq(sz, count_entries(dir), 0));
    cr_assert(eq(int, qt_st_writer_close(NULL, NULL), QT_OK));
    rmtree(dir);
}

Test(safetensors, writer_io_error_leaves_nothing)
{
    char dir[64], path[128];
    cr_assert(qt_test_tmpdir(dir, sizeof dir) != NULL);
    snprintf(path, sizeof path, "%s/big.safetensors", dir);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {1 << 16, 1 << 16};
    cr_assert(eq(int, setrlimit(RLIMIT_FSIZE, &rl), 0));
    uint64_t s[] = {1 << 20};
    qt_st_writer *w;
    cr_assert(eq(int, qt_st_writer_open(path, &w, NULL), QT_OK));
    cr_assert(eq(int, qt_st_writer_declare(w, "a", QT_DTYPE_U8, 1, s, NULL), QT_OK));
    unsigned char *buf = calloc(1, 1 << 20);
    qt_status st = qt_st_writer_write(w, 0, 0, buf, 1 << 20);
    cr_assert(eq(int, st, QT_ERR_IO));
    cr_assert(strstr(qt_st_writer_errmsg(w), "File too large") != NULL, "%s",
              qt_st_writer_errmsg(w));
    cr_assert(eq(sz, count_entries(dir), 0));
    char err[QT_ERRMSG_SIZE];
    cr_assert(eq(int, qt_st_writer_close(w, err), QT_ERR_IO));
    cr_assert(eq(sz, count_entries(dir), 0));
    free(buf);
    rmtree(dir);
}

/* ---- shared data --------------------------------------------------------- */

static qt_st_reader *open_data(const char *rel)
{
    char p[512];
    qt_test_data_path(p, sizeof p, rel);
    qt_st_reader *r = NULL;
    char err[QT_ERRMSG_SIZE];
    cr_assert(eq(int, qt_st_reader_open(p, &r, err), QT_OK), "%s", err);
    return r;
}

Test(safetensors, stories260k_copies)
{
    QT_NEED_DATA();
    static const struct {
        const char *rel;
        qt_dtype dtype;
    } copies[] = {
        {"models/stories260K-f32/model.safetensors", QT_DTYPE_F32},
        {"models/stories260K-f16/model.safetensors", QT_DTYPE_F16},
        {"models/stories260K-bf16/model.safetensors", QT_DTYPE_BF16},
    };
    qt_st_reader *f32 = open_data(copies[0].rel);
    for (size_t c = 0; c < 3; c++) {
        qt_st_reader *r = open_data(copies[c].rel);
        cr_assert(eq(sz, qt_st_reader_n_tensors(r), 47));
        uint64_t params = 0;
        for (size_t i = 0; i < 47; i++) {
            const qt_st_tensor *t = qt_st_reader_tensor(r, i);
            cr_assert(eq(int, t->dtype, copies[c].dtype), "%s", t->name);
            params += t->n_elements;
            const qt_st_tensor *ref = qt_st_reader_find(f32, t->name);
            cr_assert(ref != NULL, "%s", t->name);
            cr_assert(eq(u64, ref->n_elements, t->n_elements));
            float *a = malloc(t->n_elements * 4), *b = malloc(t->n_elements * 4);
            char err[QT_ERRMSG_SIZE];
            cr_assert(eq(int, qt_st_tensor_to_f32(r, t, 0, t->n_elements, a, err), QT_OK), "%s",
                      err);
            cr_assert(eq(int, qt_st_tensor_to_f32(f32, ref, 0, ref->n_elements, b, err), QT_OK));
            for (uint64_t k = 0; k < t->n_elements; k++) {
                float want = b[k];
                if (copies[c].dtype == QT_DTYPE_BF16) want = qt_bf16_to_fp32(qt_fp32_to_bf16(b[k]));
                if (copies[c].dtype == QT_DTYPE_F16) want = qt_fp16_to_fp32(qt_fp32_to_fp16(b[k]));
                cr_assert(eq(u32, qt_f32_bits(a[k]), qt_f32_bits(want)), "%s[%llu]", t->name,
                          (unsigned long long)k);
            }
            free(a);
            free(b);
        }
        cr_assert(eq(u64, params, 260032));
        cr_assert(qt_st_reader_find(r, "model.embed_tokens.weight") != NULL);
        cr_assert(qt_st_reader_find(r, "lm_head.weight") == NULL);
        qt_st_reader_close(r);
    }
    qt_st_reader_close(f32);
}

/* Rewrites a file through the writer (tensors declared in reverse order,
 * its metadata) and compares the bytes: the writer's order and header
 * match what the reference writer produced. */
static void rewrite_and_compare(const char *rel)
{
    qt_st_reader *r = open_data(rel);
    char dir[64], path[128], err[QT_ERRMSG_SIZE];
    cr_assert(qt_test_tmpdir(dir, sizeof dir) != NULL);
    snprintf(path, sizeof path, "%s/re.safetensors", dir);
    qt_st_writer *w;
    cr_assert(eq(int, qt_st_writer_open(path, &w, err), QT_OK));
    char src[512];
    cr_assert(eq(int, qt_st_writer_protect_path(w, qt_test_data_path(src, sizeof src, rel)),
                 QT_OK));
    for (size_t i = 0; i < qt_st_reader_n_metadata(r); i++) {
        const char *k, *v;
        qt_st_reader_metadata(r, i, &k, &v);
        cr_assert(eq(int, qt_st_writer_add_metadata(w, k, v), QT_OK));
    }
    size_t n = qt_st_reader_n_tensors(r);
    for (size_t i = n; i-- > 0;) {
        const qt_st_tensor *t = qt_st_reader_tensor(r, i);
        cr_assert(eq(int, qt_st_writer_declare(w, t->name, t->dtype, t->n_dims, t->shape, NULL),
                     QT_OK));
    }
    for (size_t i = 0; i < n; i++) {
        const qt_st_tensor *t = qt_st_reader_tensor(r, n - 1 - i);
        cr_assert(eq(int, qt_st_writer_write(w, i, 0, t->data, t->nbytes), QT_OK), "%s",
                  qt_st_writer_errmsg(w));
    }
    cr_assert(eq(int, qt_st_writer_close(w, err), QT_OK), "%s", err);
    size_t na, nb;
    unsigned char *a = read_file(src, &na), *b = read_file(path, &nb);
    cr_assert(eq(sz, na, nb), "%s: sizes differ", rel);
    cr_assert(eq(int, memcmp(a, b, na), 0), "%s: bytes differ", rel);
    free(a);
    free(b);
    qt_st_reader_close(r);
    rmtree(dir);
}

Test(safetensors, writer_reproduces_reference_files_byte_for_byte)
{
    QT_NEED_DATA();
    rewrite_and_compare("golden/transformers-bnb-nf4-dq/model.safetensors");
    rewrite_and_compare("golden/transformers-bnb-int8/model.safetensors");
}

Test(safetensors, golden_files_open)
{
    QT_NEED_DATA();
    qt_st_reader *r = open_data("golden/transformers-bnb-nf4-dq/model.safetensors");
    cr_assert(eq(str, (char *)qt_st_reader_metadata_get(r, "format"), "pt"));
    const qt_st_tensor *t = qt_st_reader_find(r, "model.layers.0.mlp.down_proj.weight");
    cr_assert(t != NULL);
    cr_assert(eq(int, t->dtype, QT_DTYPE_U8));
    qt_st_reader_close(r);
    r = open_data("golden/transformers-bnb-int8/model.safetensors");
    t = qt_st_reader_find(r, "model.layers.0.mlp.down_proj.weight");
    cr_assert(t != NULL);
    cr_assert(eq(int, t->dtype, QT_DTYPE_I8));
    qt_st_reader_close(r);
}

Test(safetensors, allocation_failures_are_clean)
{
    size_t n;
    unsigned char *b = mk(&n, 24,
                          "{\"__metadata__\":{\"format\":\"pt\"},"
                          "\"b\":{\"dtype\":\"U8\",\"shape\":[2,4],\"data_offsets\":[16,24]},"
                          "\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}");
    int failures = 0;
    for (uint64_t k = 1; k < 40; k++) {
        qt_alloc_fail_after(k);
        qt_st_reader *r = NULL;
        char err[QT_ERRMSG_SIZE];
        qt_status st = qt_st_reader_open_mem(b, n, "t", &r, err);
        qt_alloc_fail_after(0);
        if (st == QT_OK) qt_st_reader_close(r);
        else {
            cr_assert(eq(int, st, QT_ERR_NOMEM), "%s", err);
            cr_assert(r == NULL);
            failures++;
        }
    }
    cr_assert(gt(int, failures, 0));
    free(b);
    char dir[64], path[128];
    cr_assert(qt_test_tmpdir(dir, sizeof dir) != NULL);
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    uint64_t s[] = {2};
    for (uint64_t k = 1; k < 40; k++) {
        qt_alloc_fail_after(k);
        qt_st_writer *w = NULL;
        qt_status st = qt_st_writer_open(path, &w, NULL);
        if (st == QT_OK) st = qt_st_writer_add_metadata(w, "format", "pt");
        if (st == QT_OK) st = qt_st_writer_declare(w, "a", QT_DTYPE_U8, 1, s, NULL);
        if (st == QT_OK) st = qt_st_writer_declare(w, "b", QT_DTYPE_F32, 1, s, NULL);
        float v[2] = {1, 2};
        if (st == QT_OK) st = qt_st_writer_write(w, 0, 0, v, 2);
        if (st == QT_OK) st = qt_st_writer_write(w, 1, 0, v, 8);
        if (st == QT_OK) st = qt_st_writer_close(w, NULL);
        else qt_st_writer_abort(w);
        qt_alloc_fail_after(0);
        if (st == QT_OK) {
            cr_assert(eq(int, unlink(path), 0));
        } else {
            cr_assert(eq(int, st, QT_ERR_NOMEM));
        }
        cr_assert(eq(sz, count_entries(dir), 0));
    }
    rmtree(dir);
}
