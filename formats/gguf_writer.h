/*
 * formats/gguf_writer.h: a streaming, atomic GGUF v3 writer
 * (specs/gguf-export.md §1, §8.4-8.5).
 *
 * Use: open, declare every metadata pair (typed: one function per GGUF
 * value type, the type is never inferred from the value) and every tensor
 * (name, ne, ggml type), then begin: the header, the pairs and the tensor
 * infos go to a temporary file beside the output, created at its final
 * size (padding reads as zeros). Then write each tensor's bytes in
 * declaration order (qt_gguf_writer_write) or at any offset in any order
 * (qt_gguf_writer_write_at), in as many pieces as convenient. close checks that every byte arrived, fsyncs, re-opens the
 * temporary file with qtool's hardened reader (formats/gguf.h, rules
 * G1-G16) and compares it with what was declared, and only then renames it
 * into place. Any failure, or abort, removes the temporary file: nothing
 * half written is ever left at the output path.
 *
 * Layout written (all little-endian): "GGUF", u32 3, u64 n_tensors, u64
 * n_kv, the pairs in declaration order, the tensor infos in declaration
 * order with offsets = running sum of PAD(nbytes, 32) (first 0), zero
 * padding to 32, the blobs each followed by zero padding to 32.
 * general.alignment is never written (32 is the default).
 *
 * Determinism: the bytes depend only on the calls made, never on time,
 * threads or the temporary name.
 *
 * Memory: the pairs are serialized into one buffer at declaration (a
 * vocabulary is a few MB); tensor data is never held or copied.
 *
 * Not thread-safe: one thread drives a writer.
 */
#ifndef QT_FORMATS_GGUF_WRITER_H
#define QT_FORMATS_GGUF_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "formats/gguf.h"

typedef struct qt_gguf_writer qt_gguf_writer;

/* A new writer for the final path (nothing is created yet). On failure
 * *out is NULL and errmsg (QT_ERRMSG_SIZE, may be NULL) says why.
 * @return QT_OK, QT_ERR_ARG, QT_ERR_NOMEM. */
qt_status qt_gguf_writer_open(const char *path, qt_gguf_writer **out, char *errmsg);

/* The message of the last failure (never NULL). */
const char *qt_gguf_writer_errmsg(const qt_gguf_writer *w);

/* ---- metadata (before begin). key: non-empty, unique; otherwise
 * QT_ERR_ARG. Arrays must not be empty (gguf-py never writes them). ---- */
qt_status qt_gguf_writer_add_u32(qt_gguf_writer *w, const char *key, uint32_t v);
qt_status qt_gguf_writer_add_i32(qt_gguf_writer *w, const char *key, int32_t v);
qt_status qt_gguf_writer_add_f32(qt_gguf_writer *w, const char *key, float v);
qt_status qt_gguf_writer_add_bool(qt_gguf_writer *w, const char *key, bool v);
/* s: len bytes, borrowed for the call (copied). */
qt_status qt_gguf_writer_add_str(qt_gguf_writer *w, const char *key, const char *s, size_t len);
/* Array of n (> 0) strings s[i] of lens[i] bytes (copied). */
qt_status qt_gguf_writer_add_arr_str(qt_gguf_writer *w, const char *key,
                                     const char *const *s, const uint32_t *lens, size_t n);
/* Array of n (> 0) FLOAT32 / INT32 values (copied). */
qt_status qt_gguf_writer_add_arr_f32(qt_gguf_writer *w, const char *key, const float *v,
                                     size_t n);
qt_status qt_gguf_writer_add_arr_i32(qt_gguf_writer *w, const char *key, const int32_t *v,
                                     size_t n);

/* ---- tensors (before begin) -------------------------------------------
 * name: 1..63 bytes, unique; n_dims 1..4; ne[0] a multiple of the type's
 * block size; the byte size must not overflow. *index (may be NULL) gets
 * the tensor's position. @return QT_OK, QT_ERR_ARG, QT_ERR_OVERFLOW,
 * QT_ERR_NOMEM. */
qt_status qt_gguf_writer_add_tensor(qt_gguf_writer *w, const char *name, uint32_t n_dims,
                                    const int64_t *ne, qt_ggml_type type, size_t *index);

/* Bytes of tensor data (unpadded) of a declared tensor; 0 out of range. */
size_t qt_gguf_writer_tensor_nbytes(const qt_gguf_writer *w, size_t index);
/* Size the finished file will have (valid after the last add_*). */
uint64_t qt_gguf_writer_file_size(const qt_gguf_writer *w);

/* Creates the temporary file beside the output and writes everything up
 * to the data section. @return QT_OK, QT_ERR_IO, QT_ERR_ARG (twice). */
qt_status qt_gguf_writer_begin(qt_gguf_writer *w);

/* Appends n bytes to the first tensor not yet complete (tensors in
 * declaration order; a tensor may take many calls, a call never spans two
 * tensors: QT_ERR_ARG if n runs past that tensor's end).
 * @return QT_OK, QT_ERR_IO, QT_ERR_ARG. */
qt_status qt_gguf_writer_write(qt_gguf_writer *w, const void *data, size_t n);

/* Writes n bytes of tensor index at byte offset within its data, in any
 * order (each byte once: a tensor is complete when nbytes bytes arrived).
 * @return QT_OK, QT_ERR_IO, QT_ERR_ARG (past the tensor's end). */
qt_status qt_gguf_writer_write_at(qt_gguf_writer *w, size_t index, uint64_t offset,
                                  const void *data, size_t n);

/* Finishes: checks every tensor is complete, flushes and fsyncs, re-reads
 * the temporary file with the hardened reader and compares names, types,
 * shapes and the key count with the declarations, renames it to the path
 * (replacing an existing file) and fsyncs the folder. Frees w whatever
 * happens; on failure the temporary file is removed and errmsg
 * (QT_ERRMSG_SIZE, may be NULL) says why.
 * @return QT_OK, QT_ERR_IO, QT_ERR_FORMAT (the self-check failed), QT_ERR_ARG. */
qt_status qt_gguf_writer_close(qt_gguf_writer *w, char *errmsg);

/* Removes the temporary file (if any) and frees w. Accepts NULL. */
void qt_gguf_writer_abort(qt_gguf_writer *w);

#endif /* QT_FORMATS_GGUF_WRITER_H */
