/*
 * common/common.h: status codes, error-message helpers, allocation and
 * overflow-checked size arithmetic shared by every qtool module.
 *
 * What it does not do: printing, file I/O, threads. Everything here is
 * thread-safe except qt_alloc_fail_after(), a test hook meant to be set
 * before work starts.
 *
 * Error convention (docs/ARCHITECTURE.md "Contracts"; STYLE.md 12-14 with
 * 13 read this way): every fallible function returns a qt_status and writes
 * its message into the caller's `char *errmsg` (QT_ERRMSG_SIZE bytes, may
 * be NULL), naming the file, the tensor and the rule. The exception: a
 * streaming object whose hot calls take no errmsg (qt_st_writer_write,
 * qt_zcache_writer_write) keeps its last message on the object
 * (qt_st_writer_errmsg, qt_zcache_writer_errmsg). No global or thread-local
 * error state. Inside a function that uses QT_CHECK / QT_TRY, the following
 * must be in scope: `qt_status st`, `char *errmsg` and a `fail:` label
 * where cleanup happens.
 */
#ifndef QT_COMMON_H
#define QT_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QT_VERSION_STRING "0.1.0"
#define QT_ERRMSG_SIZE 256

typedef enum qt_status {
    QT_OK = 0,
    QT_ERR_NOMEM,       /* an allocation failed */
    QT_ERR_IO,          /* a read, write, open, rename, fsync failed */
    QT_ERR_FORMAT,      /* input bytes break a rule of their format */
    QT_ERR_UNSUPPORTED, /* well-formed but not something qtool handles */
    QT_ERR_ARG,         /* a caller or user argument is invalid */
    QT_ERR_OVERFLOW,    /* a size computed from input overflows */
    QT_ERR_NUMERIC,     /* NaN / Inf where finite values are required */
    QT_STATUS_COUNT
} qt_status;

/* Name of a status ("ok", "out of memory", ...). Never NULL. */
const char *qt_status_str(qt_status st);

/* Formats a message into buf (QT_ERRMSG_SIZE bytes); buf may be NULL.
 * Returns st so it can be used as `return qt_set_err(buf, st, ...)`. */
qt_status qt_set_err(char *buf, qt_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define QT_CHECK(cond, status, ...)                                  \
    do {                                                             \
        if (!(cond)) {                                               \
            st = qt_set_err(errmsg, (status), __VA_ARGS__);          \
            goto fail;                                               \
        }                                                            \
    } while (0)

#define QT_TRY(expr)                                                 \
    do {                                                             \
        st = (expr);                                                 \
        if (st != QT_OK) goto fail;                                  \
    } while (0)

/* ---- allocation ------------------------------------------------------ */
/* All qtool allocation goes through these. They return NULL on failure
 * (and when the test hook says to fail). qt_free accepts NULL. */
void *qt_malloc(size_t n);
void *qt_calloc(size_t count, size_t size);
void *qt_realloc(void *p, size_t n);
/* alignment: a power of two >= sizeof(void*); free with qt_aligned_free. */
void *qt_aligned_alloc(size_t alignment, size_t n);
void qt_free(void *p);
void qt_aligned_free(void *p);
char *qt_strdup(const char *s);

/* Test hook: make the n-th allocation from now fail (n >= 1); 0 disables.
 * qt_alloc_count() returns allocations made since the hook was last set. */
void qt_alloc_fail_after(uint64_t n);
uint64_t qt_alloc_count(void);

/* ---- overflow-checked size math -------------------------------------- */
/* Return true and store the result on success; false on overflow. */
static inline bool qt_mul_size(size_t a, size_t b, size_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool qt_add_size(size_t a, size_t b, size_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}
static inline bool qt_mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool qt_add_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

/* Little-endian loads and stores from unaligned bytes. */
static inline uint64_t qt_load_le64(const void *p)
{
    const unsigned char *b = p;
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | b[i];
    return v;
}
static inline uint32_t qt_load_le32(const void *p)
{
    const unsigned char *b = p;
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}
static inline uint16_t qt_load_le16(const void *p)
{
    const unsigned char *b = p;
    return (uint16_t)(b[0] | b[1] << 8);
}
static inline void qt_store_le64(void *p, uint64_t v)
{
    unsigned char *b = p;
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
}
static inline void qt_store_le32(void *p, uint32_t v)
{
    unsigned char *b = p;
    for (int i = 0; i < 4; i++) b[i] = (unsigned char)(v >> (8 * i));
}

/* Bit casts between float and its IEEE-754 bits. */
static inline uint32_t qt_f32_bits(float f)
{
    uint32_t u;
    __builtin_memcpy(&u, &f, 4);
    return u;
}
static inline float qt_f32_from_bits(uint32_t u)
{
    float f;
    __builtin_memcpy(&f, &u, 4);
    return f;
}

/* Monotonic wall clock in seconds. */
double qt_now(void);

#endif /* QT_COMMON_H */
