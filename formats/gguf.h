/*
 * formats/gguf.h: a hardened, read-only GGUF (v2 and v3) reader.
 *
 * What it does: maps a GGUF file (or borrows a buffer), validates every
 * byte of the header against the rules G1-G16 of specs/input-safety.md
 * (B.6) before anything is exposed, and then gives typed, bounds-checked
 * access to the metadata (key/value pairs) and to the tensor infos and
 * their data, which stays a read-only view into the mapping.
 *
 * What it deliberately does not do: write GGUF, byte-swap big-endian
 * files, interpret metadata (no chat templates, no vocabulary logic),
 * dequantize anything but F32/F16/BF16/Q8_0, or read v1 files. It never
 * allocates more than a small multiple of the file size, and never reads
 * outside [0, file size).
 *
 * Thread-safety and ownership: qt_gguf_open / qt_gguf_open_mem return a
 * reader the caller owns and closes with qt_gguf_close. After a
 * successful open the reader is immutable: every accessor takes a const
 * reader and may be called from many threads at once. Every pointer an
 * accessor returns (names, strings, tensor data) is borrowed, read-only
 * and valid until qt_gguf_close. Strings inside the file are NOT
 * NUL-terminated: they come as pointer + length. Keys and tensor names are
 * copied at open time and ARE NUL-terminated (a NUL byte inside a key or
 * name is rejected). Tensor data pointers are not guaranteed to be
 * aligned beyond general.alignment relative to the buffer start (a
 * borrowed buffer may itself be unaligned): read through memcpy.
 *
 * Byte layout (all integers little-endian, no implicit padding):
 *
 *   1. magic      4 bytes  "GGUF" (0x47 0x47 0x55 0x46)
 *   2. version    uint32   2 or 3 (1 had 32-bit counts and is refused;
 *                          a value whose low 16 bits are 0 is a
 *                          byte-swapped, big-endian file)
 *   3. n_tensors  uint64   number of tensor infos (interpreted as int64;
 *                          must fit the bytes that follow)
 *   4. n_kv       uint64   number of key/value pairs (same)
 *   5. n_kv key/value pairs, each:
 *        key      gguf string: uint64 length + that many bytes (no NUL),
 *                 non-empty, unique, at most QT_GGUF_MAX_STRING bytes
 *        type     uint32   qt_gguf_type
 *        value    scalar: 1, 2, 4 or 8 bytes as the type says
 *                 (bool: 1 byte); STRING: a gguf string;
 *                 ARRAY: uint32 element type (any but ARRAY), uint64
 *                 count, then count elements back to back (strings
 *                 each with their own length)
 *   6. n_tensors tensor infos, each:
 *        name     gguf string, 1..QT_GGUF_MAX_NAME-1 bytes, unique
 *        n_dims   uint32   1..4
 *        ne       int64[n_dims]  elements per dimension, ne[0] fastest
 *                 varying; each >= 0; missing dimensions are 1
 *        type     uint32   qt_ggml_type
 *        offset   uint64   byte offset of the data, relative to the
 *                          data section
 *   7. padding    zero bytes up to a multiple of the alignment
 *                 (general.alignment, a UINT32 power of two; 32 when
 *                 absent)
 *   8. data       the tensors, in info order, each padded to the
 *                 alignment: tensor k starts at the padded end of
 *                 tensor k-1, the first at 0
 *
 * A tensor of ggml type T with ne[0..3] occupies
 * ne[0] / blck(T) * type_size(T) * ne[1] * ne[2] * ne[3] bytes; ne[0]
 * must be a multiple of blck(T).
 */
#ifndef QT_FORMATS_GGUF_H
#define QT_FORMATS_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

#define QT_GGUF_MAGIC "GGUF"
#define QT_GGUF_DEFAULT_ALIGNMENT 32u
#define QT_GGUF_MAX_DIMS 4
/* Tensor names are shorter than this many bytes (ggml's GGML_MAX_NAME). */
#define QT_GGUF_MAX_NAME 64
/* Caps from llama.cpp's hardening: 1 GiB per string, 1 Gi array elements. */
#define QT_GGUF_MAX_STRING ((uint64_t)1 << 30)
#define QT_GGUF_MAX_ARRAY ((uint64_t)1 << 30)

/* Type of a metadata value (the on-disk uint32). */
typedef enum qt_gguf_type {
    QT_GGUF_TYPE_UINT8 = 0,
    QT_GGUF_TYPE_INT8 = 1,
    QT_GGUF_TYPE_UINT16 = 2,
    QT_GGUF_TYPE_INT16 = 3,
    QT_GGUF_TYPE_UINT32 = 4,
    QT_GGUF_TYPE_INT32 = 5,
    QT_GGUF_TYPE_FLOAT32 = 6,
    QT_GGUF_TYPE_BOOL = 7,
    QT_GGUF_TYPE_STRING = 8,
    QT_GGUF_TYPE_ARRAY = 9,
    QT_GGUF_TYPE_UINT64 = 10,
    QT_GGUF_TYPE_INT64 = 11,
    QT_GGUF_TYPE_FLOAT64 = 12,
    QT_GGUF_TYPE_COUNT
} qt_gguf_type;

/* ggml tensor types, with ggml's own ids (gaps are ids ggml removed:
 * 4, 5 (Q4_2, Q4_3), 31-33 (Q4_0_4_4 ...), 36-38 (IQ4_NL_4_4 ...); files
 * using them are refused). */
typedef enum qt_ggml_type {
    QT_GGML_TYPE_F32 = 0,
    QT_GGML_TYPE_F16 = 1,
    QT_GGML_TYPE_Q4_0 = 2,
    QT_GGML_TYPE_Q4_1 = 3,
    QT_GGML_TYPE_Q5_0 = 6,
    QT_GGML_TYPE_Q5_1 = 7,
    QT_GGML_TYPE_Q8_0 = 8,
    QT_GGML_TYPE_Q8_1 = 9,
    QT_GGML_TYPE_Q2_K = 10,
    QT_GGML_TYPE_Q3_K = 11,
    QT_GGML_TYPE_Q4_K = 12,
    QT_GGML_TYPE_Q5_K = 13,
    QT_GGML_TYPE_Q6_K = 14,
    QT_GGML_TYPE_Q8_K = 15,
    QT_GGML_TYPE_IQ2_XXS = 16,
    QT_GGML_TYPE_IQ2_XS = 17,
    QT_GGML_TYPE_IQ3_XXS = 18,
    QT_GGML_TYPE_IQ1_S = 19,
    QT_GGML_TYPE_IQ4_NL = 20,
    QT_GGML_TYPE_IQ3_S = 21,
    QT_GGML_TYPE_IQ2_S = 22,
    QT_GGML_TYPE_IQ4_XS = 23,
    QT_GGML_TYPE_I8 = 24,
    QT_GGML_TYPE_I16 = 25,
    QT_GGML_TYPE_I32 = 26,
    QT_GGML_TYPE_I64 = 27,
    QT_GGML_TYPE_F64 = 28,
    QT_GGML_TYPE_IQ1_M = 29,
    QT_GGML_TYPE_BF16 = 30,
    QT_GGML_TYPE_TQ1_0 = 34,
    QT_GGML_TYPE_TQ2_0 = 35,
    QT_GGML_TYPE_MXFP4 = 39,
    QT_GGML_TYPE_NVFP4 = 40,
    QT_GGML_TYPE_COUNT /* first id this reader does not know */
} qt_ggml_type;

/* The rule (specs/input-safety.md B.6) a rejected file broke. */
typedef enum qt_gguf_rule {
    QT_GGUF_RULE_OK = 0,
    QT_GGUF_G1_MAGIC,        /* bad magic, or shorter than the magic */
    QT_GGUF_G2_VERSION,      /* version 0, 1, future, or byte-swapped */
    QT_GGUF_G3_COUNTS,       /* n_tensors / n_kv negative or beyond the file */
    QT_GGUF_G4_STRING,       /* string longer than the rest of the file or the cap */
    QT_GGUF_G5_ARRAY,        /* array count x element size beyond the file or cap */
    QT_GGUF_G6_KEY,          /* empty, NUL-containing or duplicate key */
    QT_GGUF_G7_KV_TYPE,      /* value type out of range; nested array */
    QT_GGUF_G8_ALIGNMENT,    /* general.alignment not UINT32 / zero / not 2^k */
    QT_GGUF_G9_TENSOR_NAME,  /* tensor name empty, too long, NUL, duplicate */
    QT_GGUF_G10_DIMS,        /* n_dims not 1..4; negative dimension */
    QT_GGUF_G11_OVERFLOW,    /* element count / byte size / padding overflows */
    QT_GGUF_G12_TENSOR_TYPE, /* ggml type out of range or removed */
    QT_GGUF_G13_BLOCK,       /* ne[0] not a multiple of the type's block size */
    QT_GGUF_G14_OFFSET,      /* offset not the running padded total */
    QT_GGUF_G15_TRUNCATED,   /* data (or any header field) past the end of file */
    QT_GGUF_G16_VALUE_TYPE,  /* an accessor asked for another type than stored */
    QT_GGUF_RULE_COUNT
} qt_gguf_rule;

typedef struct qt_gguf qt_gguf;

/* ---- rule, type and ggml type names ----------------------------------- */

/* "G1" ... "G16", "ok" for QT_GGUF_RULE_OK, "?" out of range. Never NULL. */
const char *qt_gguf_rule_name(qt_gguf_rule rule);

/* "uint8", "int8", ..., "string", "array"; "?" out of range. Never NULL. */
const char *qt_gguf_type_name(qt_gguf_type type);

/* Bytes of one scalar of a metadata type (0 for STRING, ARRAY, unknown). */
size_t qt_gguf_type_size(qt_gguf_type type);

/* ggml's name of a tensor type ("F32", "Q4_K", "IQ2_XXS", ...), or NULL
 * for an id this reader does not know (including removed ids). */
const char *qt_ggml_type_name(qt_ggml_type type);

/* Elements per block (1 for plain types, 32 for Q8_0, 256 for K-quants)
 * and bytes per block; 0 for an unknown id. */
int64_t qt_ggml_blck_size(qt_ggml_type type);
size_t qt_ggml_type_size(qt_ggml_type type);

/* ---- open / close ------------------------------------------------------ */

/* Maps the file at path read-only and validates it (G1-G15).
 * On success *out is a reader the caller closes with qt_gguf_close.
 * On failure *out is NULL, *rule (may be NULL) is the broken rule
 * (QT_GGUF_RULE_OK for I/O and memory errors) and errmsg
 * (QT_ERRMSG_SIZE bytes, may be NULL) names the file, the key or tensor
 * and the rule, e.g.
 *   "m.gguf: tensor 'blk.0.attn_q.weight': offset 96 expected 64 (G14)".
 * @return QT_OK, QT_ERR_IO (open/stat/mmap failed), QT_ERR_FORMAT,
 *         QT_ERR_NOMEM, QT_ERR_ARG (NULL path or out). */
qt_status qt_gguf_open(const char *path, qt_gguf **out, qt_gguf_rule *rule, char *errmsg);

/* As qt_gguf_open, over buf[0..n) (borrowed: it must stay valid and
 * unchanged until qt_gguf_close; tensor data and strings point into it).
 * name (may be NULL: "<memory>") is used in messages and copied.
 * @return QT_OK, QT_ERR_FORMAT, QT_ERR_NOMEM, QT_ERR_ARG. */
qt_status qt_gguf_open_mem(const void *buf, size_t n, const char *name, qt_gguf **out,
                           qt_gguf_rule *rule, char *errmsg);

/* Unmaps and frees everything the reader owns. Accepts NULL. Every pointer
 * obtained from the reader becomes invalid. */
void qt_gguf_close(qt_gguf *g);

/* ---- file-level facts --------------------------------------------------- */

uint32_t qt_gguf_version(const qt_gguf *g);
/* general.alignment, or QT_GGUF_DEFAULT_ALIGNMENT when the key is absent. */
uint32_t qt_gguf_alignment(const qt_gguf *g);
/* Byte offset in the file of the (aligned) data section; in a file without
 * tensors it may lie past the end of the file (nothing is read there). */
size_t qt_gguf_data_offset(const qt_gguf *g);
/* The name given at open (path or buffer name), borrowed. */
const char *qt_gguf_name(const qt_gguf *g);

/* ---- metadata ----------------------------------------------------------- */

size_t qt_gguf_n_kv(const qt_gguf *g);
/* Key i (NUL-terminated, borrowed), or NULL when i >= n_kv. */
const char *qt_gguf_kv_key(const qt_gguf *g, size_t i);
/* Type of value i; QT_GGUF_TYPE_COUNT when i >= n_kv. */
qt_gguf_type qt_gguf_kv_type(const qt_gguf *g, size_t i);
/* Index of the pair whose key equals key (O(log n_kv)), or -1. */
int64_t qt_gguf_find_key(const qt_gguf *g, const char *key);

/* Typed scalar getters for pair i. Each checks the stored type first
 * (G16): asking for a uint32 from an int32 or a string is refused with
 * QT_ERR_FORMAT and a message ending "(G16)" in errmsg (may be NULL).
 * @return QT_OK, QT_ERR_FORMAT (type differs), QT_ERR_ARG (i out of range
 *         or out NULL). */
qt_status qt_gguf_get_u8(const qt_gguf *g, size_t i, uint8_t *out, char *errmsg);
qt_status qt_gguf_get_i8(const qt_gguf *g, size_t i, int8_t *out, char *errmsg);
qt_status qt_gguf_get_u16(const qt_gguf *g, size_t i, uint16_t *out, char *errmsg);
qt_status qt_gguf_get_i16(const qt_gguf *g, size_t i, int16_t *out, char *errmsg);
qt_status qt_gguf_get_u32(const qt_gguf *g, size_t i, uint32_t *out, char *errmsg);
qt_status qt_gguf_get_i32(const qt_gguf *g, size_t i, int32_t *out, char *errmsg);
qt_status qt_gguf_get_u64(const qt_gguf *g, size_t i, uint64_t *out, char *errmsg);
qt_status qt_gguf_get_i64(const qt_gguf *g, size_t i, int64_t *out, char *errmsg);
qt_status qt_gguf_get_f32(const qt_gguf *g, size_t i, float *out, char *errmsg);
qt_status qt_gguf_get_f64(const qt_gguf *g, size_t i, double *out, char *errmsg);
/* Any non-zero byte reads as true. */
qt_status qt_gguf_get_bool(const qt_gguf *g, size_t i, bool *out, char *errmsg);

/* String value of pair i: *s points into the file (borrowed, NOT
 * NUL-terminated, may contain any bytes), *len is its length in bytes.
 * @return QT_OK, QT_ERR_FORMAT (not a string, G16), QT_ERR_ARG. */
qt_status qt_gguf_get_str(const qt_gguf *g, size_t i, const char **s, size_t *len,
                          char *errmsg);

/* Copies the string value of pair i into buf (cap bytes, cap >= 1) with a
 * terminating NUL. A string that does not fit (len >= cap) is refused,
 * buf then holds "" (no silent truncation).
 * @return QT_OK, QT_ERR_FORMAT (G16), QT_ERR_ARG (too long, bad args). */
qt_status qt_gguf_get_str_copy(const qt_gguf *g, size_t i, char *buf, size_t cap,
                               char *errmsg);

/* Element type and element count of array pair i.
 * @return QT_OK, QT_ERR_FORMAT (not an array, G16), QT_ERR_ARG. */
qt_status qt_gguf_get_arr_info(const qt_gguf *g, size_t i, qt_gguf_type *elem_type,
                               size_t *count, char *errmsg);

/* Element j of numeric (or bool) array pair i, checked to be of type want
 * (G16), decoded into *out, which must point to the C type of want
 * (uint8_t for UINT8 and BOOL, float for FLOAT32, ...).
 * @return QT_OK, QT_ERR_FORMAT (not an array of want, G16), QT_ERR_ARG
 *         (j out of range, want STRING or ARRAY, NULL out). */
qt_status qt_gguf_get_arr_elem(const qt_gguf *g, size_t i, size_t j, qt_gguf_type want,
                               void *out, char *errmsg);
/* Shorthands for get_arr_elem with FLOAT32 and INT32 (vocab scores and
 * token types). */
qt_status qt_gguf_get_arr_f32(const qt_gguf *g, size_t i, size_t j, float *out, char *errmsg);
qt_status qt_gguf_get_arr_i32(const qt_gguf *g, size_t i, size_t j, int32_t *out,
                              char *errmsg);

/* Element j of string array pair i: pointer into the file (borrowed, NOT
 * NUL-terminated) and length.
 * @return QT_OK, QT_ERR_FORMAT (not an array of strings, G16),
 *         QT_ERR_ARG (j out of range). */
qt_status qt_gguf_get_arr_str(const qt_gguf *g, size_t i, size_t j, const char **s,
                              size_t *len, char *errmsg);

/* Formats value i for display into buf (cap bytes, always NUL-terminated
 * when cap >= 1): scalars in full ("42", "-1.5", "true"), strings quoted
 * with non-printable bytes escaped (\n, \xNN) and long ones cut with
 * "...", arrays as "[int32; 512] 1, 2, 3, ..." (the first few elements).
 * Returns the length of the text written (never more than cap - 1). */
size_t qt_gguf_kv_format(const qt_gguf *g, size_t i, char *buf, size_t cap);

/* ---- tensors ------------------------------------------------------------ */

size_t qt_gguf_n_tensors(const qt_gguf *g);
/* Name of tensor t (NUL-terminated, borrowed), or NULL when t >= n_tensors. */
const char *qt_gguf_tensor_name(const qt_gguf *g, size_t t);
/* ggml type of tensor t (always one qt_ggml_type_name knows);
 * QT_GGML_TYPE_COUNT when t is out of range. */
qt_ggml_type qt_gguf_tensor_type(const qt_gguf *g, size_t t);
/* Number of dimensions (1..4), 0 when t is out of range. */
uint32_t qt_gguf_tensor_n_dims(const qt_gguf *g, size_t t);
/* ne[0..3] (ne[0] fastest varying; dimensions past n_dims are 1), borrowed;
 * NULL when t is out of range. */
const int64_t *qt_gguf_tensor_ne(const qt_gguf *g, size_t t);
/* ne[0] * ne[1] * ne[2] * ne[3] (checked at open); 0 when out of range. */
int64_t qt_gguf_tensor_n_elements(const qt_gguf *g, size_t t);
/* Bytes of data (unpadded); 0 when out of range. */
size_t qt_gguf_tensor_nbytes(const qt_gguf *g, size_t t);
/* Absolute byte offset of the data in the file; 0 when out of range. */
size_t qt_gguf_tensor_offset(const qt_gguf *g, size_t t);
/* The tensor's bytes (nbytes of them, inside the file), a read-only view
 * valid until qt_gguf_close; NULL when t is out of range. */
const void *qt_gguf_tensor_data(const qt_gguf *g, size_t t);
/* Index of the tensor called name (O(log n_tensors)), or -1. */
int64_t qt_gguf_find_tensor(const qt_gguf *g, const char *name);

/* Converts elements [first, first + count) of tensor t (in memory order,
 * ne[0] fastest) to float32 into dst (count floats, caller-owned). F32,
 * F16, BF16 and Q8_0 are handled (Q8_0 ranges need not be block aligned);
 * other types give QT_ERR_UNSUPPORTED "unsupported ggml type 'Q4_K'".
 * errmsg (may be NULL) names the file and the tensor.
 * @return QT_OK, QT_ERR_UNSUPPORTED, QT_ERR_ARG (t or the range out of
 *         bounds, dst NULL with count > 0). */
qt_status qt_gguf_tensor_to_f32(const qt_gguf *g, size_t t, size_t first, size_t count,
                                float *dst, char *errmsg);

#endif /* QT_FORMATS_GGUF_H */
