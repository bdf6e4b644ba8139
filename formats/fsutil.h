/*
 * formats/fsutil.h: the few file-system chores that writing model folders
 * needs: joining paths without silent truncation, whole-file read and
 * (fsync'd) write, removing a folder tree, and fsync of a
 * folder so a rename survives a crash.
 *
 * Errors become a qt_status plus a message naming the path (errno turned
 * into text here). Thread-safe; no global state.
 */
#ifndef QT_FORMATS_FSUTIL_H
#define QT_FORMATS_FSUTIL_H

#include <stdbool.h>
#include <stddef.h>

#include "common/common.h"

/* Whether path names an existing folder / regular file (symlinks followed). */
bool qt_path_is_dir(const char *path);
bool qt_path_is_file(const char *path);

/* Whether s ends with suffix. */
bool qt_str_ends_with(const char *s, const char *suffix);

/* Whether the file starts with the GGUF magic (content sniffing, not the
 * file name). */
bool qt_file_is_gguf(const char *path);

/* dst = a "/" b; false (dst unspecified) when it does not fit in n bytes. */
bool qt_path_join(char *dst, size_t n, const char *a, const char *b);

/* Writes data[0..n) to path (created or truncated, mode 0644) and fsyncs
 * it. @return QT_OK, QT_ERR_IO. */
qt_status qt_file_write(const char *path, const void *data, size_t n, char *errmsg);

/* Reads a whole file of at most max bytes into *buf (NUL-terminated;
 * caller frees with qt_free). @return QT_OK, QT_ERR_IO, QT_ERR_FORMAT (too
 * large), QT_ERR_NOMEM. */
qt_status qt_file_read(const char *path, char **buf, size_t *n, size_t max, char *errmsg);

/* Removes path and everything below it (symlinks are removed, not
 * followed). Best effort: errors are ignored. */
void qt_tree_remove(const char *path);

/* fsyncs a folder (after creating or renaming entries in it); best effort. */
void qt_dir_fsync(const char *path);

#endif /* QT_FORMATS_FSUTIL_H */
