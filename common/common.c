/* common/common.c: status names, error messages, allocation, clock. */
#include "common/common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *qt_status_str(qt_status st)
{
    static const char *const names[QT_STATUS_COUNT] = {
        [QT_OK] = "ok",
        [QT_ERR_NOMEM] = "out of memory",
        [QT_ERR_IO] = "i/o error",
        [QT_ERR_FORMAT] = "malformed input",
        [QT_ERR_UNSUPPORTED] = "unsupported",
        [QT_ERR_ARG] = "invalid argument",
        [QT_ERR_OVERFLOW] = "size overflow",
        [QT_ERR_NUMERIC] = "non-finite value",
    };
    if ((unsigned)st >= QT_STATUS_COUNT) return "unknown status";
    return names[st];
}

qt_status qt_set_err(char *buf, qt_status st, const char *fmt, ...)
{
    if (buf) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(buf, QT_ERRMSG_SIZE, fmt, ap);
        va_end(ap);
        static const char cut[] = " [...]"; /* a cut message says so */
        if (n >= QT_ERRMSG_SIZE) memcpy(buf + QT_ERRMSG_SIZE - sizeof cut, cut, sizeof cut);
    }
    return st;
}

/* ---- allocation with a failure-injection hook ------------------------- */
static uint64_t alloc_fail_at;  /* 0 = never */
static uint64_t alloc_counter;

void qt_alloc_fail_after(uint64_t n)
{
    alloc_fail_at = n;
    alloc_counter = 0;
}

uint64_t qt_alloc_count(void) { return alloc_counter; }

static bool alloc_should_fail(void)
{
    uint64_t c = __atomic_add_fetch(&alloc_counter, 1, __ATOMIC_RELAXED);
    return alloc_fail_at != 0 && c == alloc_fail_at;
}

void *qt_malloc(size_t n)
{
    if (alloc_should_fail()) return NULL;
    return malloc(n ? n : 1);
}

void *qt_calloc(size_t count, size_t size)
{
    if (alloc_should_fail()) return NULL;
    if (count == 0 || size == 0) return calloc(1, 1);
    return calloc(count, size);
}

void *qt_realloc(void *p, size_t n)
{
    if (alloc_should_fail()) return NULL;
    return realloc(p, n ? n : 1);
}

void *qt_aligned_alloc(size_t alignment, size_t n)
{
    void *p = NULL;
    if (alloc_should_fail()) return NULL;
    if (posix_memalign(&p, alignment, n ? n : alignment) != 0) return NULL;
    return p;
}

void qt_free(void *p) { free(p); }
void qt_aligned_free(void *p) { free(p); }

char *qt_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = qt_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

double qt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
