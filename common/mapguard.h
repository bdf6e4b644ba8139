/*
 * common/mapguard.h: surviving an input file that shrinks while it is
 * memory-mapped.
 *
 * Reading a page of a shared file mapping that lies past the file's end
 * (another process truncated or rewrote the file) raises SIGBUS, which kills
 * the process with no message and leaves temporary files behind. Readers
 * register their mappings here; the SIGBUS handler, for a fault inside a
 * registered mapping, replaces the pages from the faulting one to the end of
 * that mapping with zero pages (the read then completes, on zeros) and
 * records which file it was. Callers check qt_mapguard_tripped() after
 * reading and before trusting what they computed: the result is discarded
 * and the user told "IN changed while it was read". A SIGBUS outside every
 * registered mapping keeps its default action (a crash: a bug).
 *
 * Global state (the one exception to the house rule, by necessity: a signal
 * handler has no other way to find the mappings): a fixed table of
 * QT_MAPGUARD_MAX slots, updated under a mutex and read by the handler with
 * atomic loads. Thread-safe.
 */
#ifndef QT_COMMON_MAPGUARD_H
#define QT_COMMON_MAPGUARD_H

#include <stdbool.h>
#include <stddef.h>

#include "common/common.h"

#define QT_MAPGUARD_MAX 4096 /* mappings guarded at once (shards of open models) */

/* Guards the read-only mapping [base, base + len) of the file name (the
 * string is copied). Installs the SIGBUS handler on first use.
 * @return QT_OK, QT_ERR_NOMEM (no free slot, or the name), QT_ERR_IO
 * (sigaction failed). */
qt_status qt_mapguard_add(const void *base, size_t len, const char *name);

/* Stops guarding the mapping at base (before munmap). */
void qt_mapguard_remove(const void *base);

/* Whether a guarded mapping faulted since the process started (or the last
 * qt_mapguard_clear); *name (may be NULL) is then the file, valid until
 * qt_mapguard_clear. */
bool qt_mapguard_tripped(const char **name);

/* Forgets a fault (tests). */
void qt_mapguard_clear(void);

#endif /* QT_COMMON_MAPGUARD_H */
