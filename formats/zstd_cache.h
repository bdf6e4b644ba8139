/*
 * formats/zstd_cache.h: a cache file: one zstd-compressed blob behind a
 * header that names what it holds (a 32-byte key the caller derives from
 * everything the content depends on, and a short kind label) and carries
 * checksums, so that a stale, mismatching, truncated or damaged file is
 * detected and never used silently. Its two users: `qtool bench ppl`
 * keeps the BASE model's log-probabilities in one (bench/ppl.c, kind
 * "ppl-logp"), calibration its activation samples
 * (calib/calib_cache.c, kind "calib").
 *
 * Byte layout of a file (little-endian, QT_ZCACHE_HEADER_SIZE = 128 bytes
 * of header, then one zstd frame):
 *
 *   offset   0  8 bytes   magic "QTZCACHE"
 *   offset   8  u32       format version, 1
 *   offset  12  u32       flags, 0 (files with other flags are refused)
 *   offset  16  32 bytes  key (the caller's digest, e.g. a sha256)
 *   offset  48  16 bytes  kind: ASCII label, NUL-padded (at most 15 chars)
 *   offset  64  u64       payload size: uncompressed bytes
 *   offset  72  u64       compressed size: bytes of the zstd frame; the
 *                         file is exactly 128 + this long
 *   offset  80  32 bytes  sha256 of the uncompressed payload
 *   offset 112  8 bytes   the first 8 bytes of sha256(header bytes [0, 112))
 *   offset 120  8 bytes   zero
 *   offset 128  the zstd frame (content checksum flag set, so zstd checks
 *               its own XXH64 too)
 *
 * What is detected, and how it is reported: a missing file (QT_ERR_IO with
 * ENOENT's message), another key or kind (QT_ERR_ARG: "a different cache
 * entry", not damage), anything else wrong (bad magic, version, header
 * checksum, file length, a zstd error, a payload longer or shorter than
 * declared, a payload sha256 mismatch) is QT_ERR_FORMAT. A streaming reader
 * sees payload damage only once the whole payload is read (the checksum is
 * over all of it): callers that must not act on damaged data call
 * qt_zcache_verify first (one decompression pass, no allocation of the
 * payload) or load small blobs whole with qt_zcache_load.
 *
 * Writing is atomic: the writer fills "PATH.tmp.<pid>" and renames it to
 * PATH only when qt_zcache_writer_close succeeds; a failed or aborted write
 * leaves nothing at PATH (an older PATH stays as it was). Parent folders are
 * created when missing (mode 0755).
 *
 * What it does not do: choose file names or cache locations, expire old
 * entries, lock (two writers of one key both write complete files and the
 * last rename wins, which is harmless), or interpret the payload (callers
 * put their own small header at its start if they need one).
 *
 * Thread-safety and ownership: a writer or reader is used by one thread at
 * a time; distinct objects are independent. Every _close/_abort accepts
 * NULL. Memory: the zstd contexts and buffers of about 256 KiB, whatever
 * the payload size (qt_zcache_load excepted: it allocates the payload).
 */
#ifndef QT_FORMATS_ZSTD_CACHE_H
#define QT_FORMATS_ZSTD_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

#define QT_ZCACHE_HEADER_SIZE 128
#define QT_ZCACHE_KEY_SIZE 32
#define QT_ZCACHE_KIND_MAX 15 /* characters of a kind label */

typedef struct qt_zcache_writer qt_zcache_writer;
typedef struct qt_zcache_reader qt_zcache_reader;

/* ---- writing ---------------------------------------------------------- */

/* Starts a cache file for key (QT_ZCACHE_KEY_SIZE bytes) and kind (a
 * label of 1 to QT_ZCACHE_KIND_MAX printable ASCII characters) at path,
 * compressed at zstd level `level` (1..19; 0 = 3). Nothing appears at path
 * before qt_zcache_writer_close. *out: the writer (finish with _close or
 * _abort). errmsg: QT_ERRMSG_SIZE bytes or NULL.
 * @return QT_OK, QT_ERR_ARG (bad kind or level), QT_ERR_IO (cannot create
 *         the folder or the temporary file), QT_ERR_NOMEM. */
qt_status qt_zcache_writer_open(const char *path, const unsigned char *key, const char *kind,
                                int level, qt_zcache_writer **out, char *errmsg);

/* Appends data[0..n) to the payload (any chunking gives the same file).
 * After a failure the writer only accepts _abort (or _close, which fails).
 * @return QT_OK, QT_ERR_IO (write failed, e.g. disk full), QT_ERR_NOMEM. */
qt_status qt_zcache_writer_write(qt_zcache_writer *w, const void *data, size_t n);

/* The message of the last failure of a writer ("" if none). */
const char *qt_zcache_writer_errmsg(const qt_zcache_writer *w);

/* Ends the frame, writes the header, fsyncs and renames the file into
 * place, then frees the writer (also on failure, when the temporary file
 * is removed). Accepts NULL (QT_OK).
 * @return QT_OK, QT_ERR_IO, QT_ERR_NOMEM, or the writer's earlier failure. */
qt_status qt_zcache_writer_close(qt_zcache_writer *w, char *errmsg);

/* Removes the temporary file and frees the writer. Accepts NULL. */
void qt_zcache_writer_abort(qt_zcache_writer *w);

/* ---- reading ---------------------------------------------------------- */

/* Opens path and checks its header against key and kind (see the header
 * comment for what is checked when). *out: the reader (close with
 * qt_zcache_reader_close). errmsg: QT_ERRMSG_SIZE bytes or NULL.
 * @return QT_OK, QT_ERR_IO (missing or unreadable), QT_ERR_ARG (another
 *         key or kind), QT_ERR_FORMAT (damaged), QT_ERR_NOMEM. */
qt_status qt_zcache_reader_open(const char *path, const unsigned char *key, const char *kind,
                                qt_zcache_reader **out, char *errmsg);

/* Uncompressed payload size the header declares. */
uint64_t qt_zcache_reader_size(const qt_zcache_reader *r);

/* Reads exactly n payload bytes into buf. The read that reaches the end of
 * the payload also checks the payload sha256 and that the frame and the
 * file end there. Reading past the declared size is QT_ERR_ARG.
 * @return QT_OK, QT_ERR_ARG, QT_ERR_IO, QT_ERR_FORMAT (damaged), with the
 *         message in errmsg (QT_ERRMSG_SIZE or NULL). */
qt_status qt_zcache_reader_read(qt_zcache_reader *r, void *buf, size_t n, char *errmsg);

/* Closes the file and frees the reader. Accepts NULL. */
void qt_zcache_reader_close(qt_zcache_reader *r);

/* ---- whole files ------------------------------------------------------ */

/* Reads the whole file once (decompressing into a small buffer) and checks
 * everything: header, key, kind, length, zstd frame, payload sha256.
 * *payload_size (may be NULL) receives the payload size.
 * @return as qt_zcache_reader_open, or QT_ERR_FORMAT for payload damage. */
qt_status qt_zcache_verify(const char *path, const unsigned char *key, const char *kind,
                           uint64_t *payload_size, char *errmsg);

/* Writes data[0..n) as a cache file in one call (level 3).
 * @return as qt_zcache_writer_open / _write / _close. */
qt_status qt_zcache_save(const char *path, const unsigned char *key, const char *kind,
                         const void *data, size_t n, char *errmsg);

/* Reads and checks a whole cache file. *data: a new buffer of *n bytes
 * (caller frees with qt_free; a 1-byte buffer when the payload is empty),
 * NULL on failure. max_size caps the payload the caller will accept (a
 * larger declared size is QT_ERR_FORMAT before anything is allocated).
 * @return as qt_zcache_verify, plus QT_ERR_NOMEM. */
qt_status qt_zcache_load(const char *path, const unsigned char *key, const char *kind,
                         uint64_t max_size, void **data, size_t *n, char *errmsg);

#endif /* QT_FORMATS_ZSTD_CACHE_H */
