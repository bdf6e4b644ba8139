/*
 * common/sha256.h: SHA-256 (FIPS 180-4), streaming and one-shot, for file
 * fingerprints, cache keys and table checks. No allocation; a context is
 * used by one thread at a time.
 */
#ifndef QT_SHA256_H
#define QT_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct qt_sha256_ctx {
    uint32_t h[8];
    uint64_t nbytes;
    unsigned char buf[64];
    size_t nbuf;
} qt_sha256_ctx;

void qt_sha256_init(qt_sha256_ctx *c);
void qt_sha256_update(qt_sha256_ctx *c, const void *data, size_t n);
void qt_sha256_final(qt_sha256_ctx *c, unsigned char out[32]);
/* One shot: digest of data[0..n). */
void qt_sha256(const void *data, size_t n, unsigned char out[32]);
/* 64 lowercase hex digits and a NUL into hex[65]. */
void qt_sha256_hex(const unsigned char digest[32], char hex[65]);

#endif /* QT_SHA256_H */
