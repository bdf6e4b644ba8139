/*
 * formats/input_file.h: opening an input file safely, the one way every
 * reader of config, tokenizer, text, safetensors and index files does it.
 *
 * The file is opened with O_NONBLOCK, so that a FIFO, a terminal or a
 * device cannot hang the open, then fstat'd: a regular file of at most
 * max_bytes is required before a byte is read. The descriptor is switched
 * back to blocking reads. Refusals are QT_ERR_FORMAT (bad input) with a
 * message naming the file and what it is ("a FIFO", "a folder", "2 GiB,
 * more than the 256 MiB allowed"); a file that cannot be opened is
 * QT_ERR_IO with errno as text.
 *
 * Thread-safe; no global state.
 */
#ifndef QT_FORMATS_INPUT_FILE_H
#define QT_FORMATS_INPUT_FILE_H

#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>

#include "common/common.h"

/* The text-input rule (calibration text, perplexity text, prompts from a
 * file): a regular file of at most 2 GiB. */
#define QT_TEXT_MAX_BYTES ((uint64_t)1 << 31)

/* Opens path for reading: *fd (caller closes) and its stat in *sb (may be
 * NULL). extra_flags: added to O_RDONLY (e.g. O_NOFOLLOW).
 * @return QT_OK, QT_ERR_IO (cannot open), QT_ERR_FORMAT (not a regular
 * file, or over max_bytes). */
qt_status qt_input_open(const char *path, int extra_flags, uint64_t max_bytes, int *fd,
                        struct stat *sb, char *errmsg);

/* The same as a stdio stream (caller fcloses). */
qt_status qt_input_fopen(const char *path, uint64_t max_bytes, FILE **f, struct stat *sb,
                         char *errmsg);

/* Copies the open input in_fd (its stat in in_sb; the descriptor is read
 * from offset 0 and not closed) to a new file dst (O_EXCL, fsync'd), in
 * 1 MiB chunks. The copy is never more readable than the source: its mode
 * is the source's read/write bits without execute and without write for
 * others (& 0644), and without the group bits when the copy's group is
 * not the source's, and never beyond what the umask allows. src names the
 * source in messages.
 * @return QT_OK, QT_ERR_IO (errno named), QT_ERR_NOMEM. */
qt_status qt_input_copy(int in_fd, const struct stat *in_sb, const char *src, const char *dst,
                        char *errmsg);

/* Makes dst (a file or folder qtool wrote from src) no more readable than
 * src: the copy rule of qt_input_copy; a folder keeps rwx for its owner and
 * the read/search bits of src's. @return QT_OK, QT_ERR_IO (errno named). */
qt_status qt_limit_mode(const char *dst, const char *src, char *errmsg);

/* The process's umask (read by setting it and putting it back). */
mode_t qt_current_umask(void);

/* What a file of this mode is, for messages: "a FIFO", "a folder", ... */
const char *qt_file_kind(mode_t mode);

#endif /* QT_FORMATS_INPUT_FILE_H */
