/*
 * formats/safetensors.h: the safetensors container: a memory-mapped reader
 * that validates the whole header before a byte of tensor data is touched,
 * and a streaming writer that produces the reference writer's layout.
 *
 * Byte layout of a file (little-endian, no holes):
 *
 *   offset 0        u64 N: length of the JSON header in bytes
 *   offset 8        N bytes of UTF-8 JSON, one object:
 *                     "__metadata__": {string: string}        (optional)
 *                     "<tensor name>": {"dtype": "F32",
 *                                       "shape": [d0, d1, ...],
 *                                       "data_offsets": [begin, end]}
 *                   possibly padded with JSON whitespace (writers pad with
 *                   spaces so that 8 + N is a multiple of 8)
 *   offset 8 + N    the data buffer; tensor t occupies bytes
 *                   [8 + N + begin, 8 + N + end), row-major (C order)
 *
 * The reader enforces the rules S1-S28 of specs/input-safety.md B.6; each
 * has its own qt_st_rule code, and the message names the file, the tensor
 * when there is one, and the rule ("(S18)"). Tensor data need not be
 * aligned (S26): read it with memcpy / unaligned loads, never as an
 * aligned SIMD type. Values are not checked (S27 is the caller's job).
 *
 * The writer (qt_st_writer_*) orders tensors as bnb-format.md 4.6 (dtype
 * rank descending, then name ascending, byte-wise) unless told to keep the
 * declared order, writes a compact header ("__metadata__" first) padded
 * with spaces to a multiple of 8, takes data per tensor in any order and in
 * chunks, and renames the finished file into place; an aborted or failed
 * write leaves nothing behind.
 *
 * What it does not do: convert F8/F4/F6/C64 values, check NaN/Inf, or
 * resolve shards (modeldir.h does). Hosts are assumed little-endian.
 *
 * Thread safety: a reader is read-only after qt_st_reader_open and may be
 * shared by threads (qt_st_tensor_release and qt_st_reader_check_unchanged
 * included); a writer is used by one thread at a time.
 */
#ifndef QT_FORMATS_SAFETENSORS_H
#define QT_FORMATS_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/common.h"
#include "formats/dtype.h"

/* Largest header a file may declare (the reference MAX_HEADER_SIZE). */
#define QT_ST_MAX_HEADER 100000000u
/* Largest tensor rank accepted (more is rule QT_ST_RULE_RANK_TOO_LARGE). */
#define QT_ST_MAX_DIMS 16

/* The rule a rejected file broke; the comment gives the input-safety.md
 * row. qt_st_rule_name() returns the short name ("header too small"). */
typedef enum qt_st_rule {
    QT_ST_RULE_OK = 0,
    QT_ST_RULE_IO,                 /* open / stat / mmap failed (not a format rule) */
    QT_ST_RULE_HEADER_TOO_SMALL,   /* S1: fewer than 8 bytes */
    QT_ST_RULE_HEADER_TOO_LARGE,   /* S2: N > QT_ST_MAX_HEADER */
    QT_ST_RULE_HEADER_LENGTH,      /* S3: 8 + N > file size */
    QT_ST_RULE_HEADER_OVERFLOW,    /* S4: 8 + N overflows u64 / size_t */
    QT_ST_RULE_HEADER_UTF8,        /* S5: header not UTF-8 */
    QT_ST_RULE_HEADER_JSON,        /* S6: invalid or truncated JSON */
    QT_ST_RULE_HEADER_NOT_OBJECT,  /* S7: not an object, or a NUL byte / \u0000 */
    QT_ST_RULE_DUPLICATE_KEY,      /* S8: a key twice (tensor or __metadata__) */
    QT_ST_RULE_METADATA_VALUE,     /* S9: __metadata__ not {string: string} */
    QT_ST_RULE_TENSOR_ENTRY,       /* S11: entry not an object, field missing or mistyped */
    QT_ST_RULE_DTYPE_UNKNOWN,      /* S12: dtype string not known */
    QT_ST_RULE_SHAPE_DIM,          /* S13: dim negative, fractional, > 2^64-1 */
    QT_ST_RULE_RANK_TOO_LARGE,     /* S13: more than QT_ST_MAX_DIMS dims */
    QT_ST_RULE_SHAPE_OVERFLOW,     /* S14: product of dims overflows u64 */
    QT_ST_RULE_SIZE_OVERFLOW,      /* S15: elements x bits overflows u64 */
    QT_ST_RULE_SUBBYTE_MISALIGNED, /* S16: total bits not a multiple of 8 */
    QT_ST_RULE_OFFSET_REVERSED,    /* S17: end < begin */
    QT_ST_RULE_SIZE_MISMATCH,      /* S18: end - begin != bytes of shape x dtype */
    QT_ST_RULE_OFFSET_GAP,         /* S19: first not at 0, or a gap */
    QT_ST_RULE_OFFSET_OVERLAP,     /* S20: overlapping or identical ranges */
    QT_ST_RULE_OFFSET_PAST_END,    /* S21: a tensor starts at / past the data end */
    QT_ST_RULE_TRUNCATED,          /* S22: the last tensor's bytes are cut short */
    QT_ST_RULE_TRAILING_BYTES,     /* S23: bytes after the last tensor */
    QT_ST_RULE_TOO_DEEP,           /* S25: JSON nested deeper than 64 */
    QT_ST_RULE_FILE_CHANGED,       /* S28: file changed while mapped */
    QT_ST_RULE_RESERVED_NAME,      /* S29 (writer): tensor named __metadata__ */
    QT_ST_RULE_COUNT
} qt_st_rule;

/* Short lowercase name of a rule ("offset gap"); never NULL. */
const char *qt_st_rule_name(qt_st_rule rule);

/* The input-safety.md tag of a rule ("S19"), "" for OK / IO. Never NULL. */
const char *qt_st_rule_tag(qt_st_rule rule);

/* One tensor of a file. Every pointer is borrowed from the reader and
 * valid until qt_st_reader_close. */
typedef struct qt_st_tensor {
    const char *name;                /* UTF-8, NUL-terminated */
    qt_dtype dtype;
    size_t n_dims;                   /* 0 for a scalar */
    uint64_t shape[QT_ST_MAX_DIMS];  /* (n_dims) dims, outermost first */
    uint64_t n_elements;             /* product of shape (1 for a scalar) */
    uint64_t begin;                  /* data_offsets[0], relative to the data buffer */
    uint64_t nbytes;                 /* data_offsets[1] - data_offsets[0] */
    uint64_t file_offset;            /* absolute offset of the first byte in the file */
    size_t index;                    /* position in data order */
    const void *data;                /* (nbytes) read-only view into the mapping; any alignment */
} qt_st_tensor;

typedef struct qt_st_reader qt_st_reader;

/* Opens the safetensors file at path: maps it read-only and validates the
 * header completely (S1-S28) before touching tensor data.
 * out:    on success the reader (close with qt_st_reader_close); NULL on failure.
 * errmsg: QT_ERRMSG_SIZE bytes or NULL; the reason on failure.
 * @return QT_OK, QT_ERR_IO (open, stat, mmap; not a regular file),
 *         QT_ERR_FORMAT (a rule broken), QT_ERR_NOMEM. */
qt_status qt_st_reader_open(const char *path, qt_st_reader **out, char *errmsg);

/* As qt_st_reader_open; *rule (may be NULL) also receives the rule broken
 * (QT_ST_RULE_OK on success, QT_ST_RULE_IO for I/O failures). */
qt_status qt_st_reader_open_ex(const char *path, qt_st_reader **out, qt_st_rule *rule,
                               char *errmsg);

/* The same parser over buf[0..n), for fuzzing and tests. buf is borrowed:
 * it must stay valid and unchanged until qt_st_reader_close. name is used
 * in messages (copied). @return as qt_st_reader_open (no QT_ERR_IO). */
qt_status qt_st_reader_open_mem(const void *buf, size_t n, const char *name,
                                qt_st_reader **out, char *errmsg);
qt_status qt_st_reader_open_mem_ex(const void *buf, size_t n, const char *name,
                                   qt_st_reader **out, qt_st_rule *rule, char *errmsg);

/* Unmaps and frees the reader; every pointer obtained from it becomes
 * invalid. Accepts NULL. */
void qt_st_reader_close(qt_st_reader *r);

/* The path (or the name given to _open_mem); borrowed. */
const char *qt_st_reader_path(const qt_st_reader *r);
/* Size of the whole file in bytes. */
uint64_t qt_st_reader_file_size(const qt_st_reader *r);
/* N, the header length in bytes (data starts at 8 + N). */
uint64_t qt_st_reader_header_size(const qt_st_reader *r);
/* Number of tensors. */
size_t qt_st_reader_n_tensors(const qt_st_reader *r);
/* Tensor i in data order (i < n_tensors), or NULL when out of range. */
const qt_st_tensor *qt_st_reader_tensor(const qt_st_reader *r, size_t i);
/* The tensor called name (O(log n)), or NULL when absent. */
const qt_st_tensor *qt_st_reader_find(const qt_st_reader *r, const char *name);

/* Number of __metadata__ pairs, and pair i in the header's order (key and
 * value borrowed; both NULL when i is out of range). */
size_t qt_st_reader_n_metadata(const qt_st_reader *r);
void qt_st_reader_metadata(const qt_st_reader *r, size_t i, const char **key,
                           const char **value);
/* The __metadata__ value for key, or NULL. */
const char *qt_st_reader_metadata_get(const qt_st_reader *r, const char *key);

/* Re-stats the file and fails with rule S28 when its size, inode or mtime
 * changed since it was opened (touching the mapping of a shrunk file
 * would fault). No-op for memory readers. errmsg may be NULL.
 * @return QT_OK, QT_ERR_FORMAT (changed), QT_ERR_IO (stat failed). */
qt_status qt_st_reader_check_unchanged(const qt_st_reader *r, char *errmsg);

/* Tells the kernel the pages of t are no longer needed (madvise
 * MADV_DONTNEED), bounding resident memory when tensors are streamed; the
 * data stays readable (pages are read again on access). No-op for memory
 * readers and empty tensors. */
void qt_st_tensor_release(const qt_st_reader *r, const qt_st_tensor *t);
/* Asks the kernel to read t's pages ahead (MADV_WILLNEED). */
void qt_st_tensor_prefetch(const qt_st_reader *r, const qt_st_tensor *t);

/* Converts elements [first_elem, first_elem + count) of t to float into
 * dst (count floats, any alignment of the file data). F32, F16, BF16, F64,
 * BOOL (0 / 1) and the integer types are converted (integers and F64
 * rounded to nearest float). errmsg may be NULL.
 * @return QT_OK, QT_ERR_UNSUPPORTED (other dtypes: "unsupported dtype
 *         'F8_E4M3'"), QT_ERR_ARG (range outside the tensor). */
qt_status qt_st_tensor_to_f32(const qt_st_reader *r, const qt_st_tensor *t,
                              uint64_t first_elem, size_t count, float *dst, char *errmsg);

/* ---- streaming writer ------------------------------------------------ */

typedef struct qt_st_writer qt_st_writer;

/* Starts a writer for the final path `path`; nothing is created on disk
 * until qt_st_writer_begin. The writer is freed by qt_st_writer_close or
 * qt_st_writer_abort (even when they fail).
 * @return QT_OK, QT_ERR_NOMEM, QT_ERR_ARG (empty path). */
qt_status qt_st_writer_open(const char *path, qt_st_writer **out, char *errmsg);

/* Message of the writer's last failure ("" when none); borrowed. */
const char *qt_st_writer_errmsg(const qt_st_writer *w);

/* Keeps tensors in declaration order instead of the rank / name order. */
void qt_st_writer_keep_order(qt_st_writer *w, bool keep);

/* Adds the __metadata__ pair key: value (copied; UTF-8; written in the
 * order added). Before begin only. @return QT_OK, QT_ERR_ARG (duplicate
 * key, not UTF-8, after begin), QT_ERR_NOMEM. */
qt_status qt_st_writer_add_metadata(qt_st_writer *w, const char *key, const char *value);

/* Registers an input file that the output must never replace: path is
 * stat()ed now (following symlinks) and its (st_dev, st_ino) kept.
 * @return QT_OK, QT_ERR_IO (stat failed), QT_ERR_NOMEM. */
qt_status qt_st_writer_protect_path(qt_st_writer *w, const char *path);
/* The same with the (st_dev, st_ino) pair given directly. */
qt_status qt_st_writer_protect_inode(qt_st_writer *w, dev_t dev, ino_t ino);

/* Declares a tensor (name copied, shape (n_dims) copied). *index (may be
 * NULL) receives its declared index, used by qt_st_writer_write. Before
 * begin only. @return QT_OK, QT_ERR_ARG (name "__metadata__" (S29),
 * empty or not UTF-8, n_dims > QT_ST_MAX_DIMS, unknown dtype, F4/F6 whose
 * bits are not a multiple of 8, after begin), QT_ERR_OVERFLOW (size),
 * QT_ERR_NOMEM. Duplicate names are refused by qt_st_writer_begin. */
qt_status qt_st_writer_declare(qt_st_writer *w, const char *name, qt_dtype dtype,
                               size_t n_dims, const uint64_t *shape, size_t *index);

/* Fixes the order and offsets, creates the temporary file
 * `<dir>/.<name>.tmp.<pid>` beside the final path, reserves its space and
 * writes the header. Called by the first write or close when not called
 * before. @return QT_OK, QT_ERR_ARG (duplicate names, final path is a
 * protected input, header over QT_ST_MAX_HEADER), QT_ERR_IO, QT_ERR_NOMEM. */
qt_status qt_st_writer_begin(qt_st_writer *w);

/* Size in bytes of declared tensor index (0 when out of range), and its
 * position in data order after begin. */
uint64_t qt_st_writer_tensor_nbytes(const qt_st_writer *w, size_t index);

/* Writes data[0..nbytes) at byte offset_in_tensor of declared tensor
 * `index` (pwrite; chunks in any order; rewriting a range is allowed).
 * @return QT_OK, QT_ERR_ARG (bad index, range outside the tensor, writer
 * failed before), QT_ERR_IO (write failed: the temporary file is removed
 * at once). */
qt_status qt_st_writer_write(qt_st_writer *w, size_t index, uint64_t offset_in_tensor,
                             const void *data, size_t nbytes);

/* Finishes the file: checks every byte of every tensor was written, fsyncs,
 * refuses a final path that is a protected input, renames into place and
 * fsyncs the folder. Frees w whatever happens; on failure the temporary
 * file is removed and errmsg (may be NULL) says why. Accepts NULL.
 * @return QT_OK, QT_ERR_ARG (bytes missing, protected path), QT_ERR_IO. */
qt_status qt_st_writer_close(qt_st_writer *w, char *errmsg);

/* Removes the temporary file (if any) and frees w. Accepts NULL. */
void qt_st_writer_abort(qt_st_writer *w);

#endif /* QT_FORMATS_SAFETENSORS_H */
