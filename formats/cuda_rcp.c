/* formats/cuda_rcp.c: reading the GPU reciprocal table (cuda_rcp.h). */
#include "formats/cuda_rcp.h"

#include <string.h>
#include <zstd.h>

#include "common/sha256.h"
#include "formats/fsutil.h"
#include "quant/quant.h"

/* The compressed file is 127,687 bytes; anything far larger is not it. */
#define RCP_FILE_MAX ((size_t)4 << 20)

/* Whether the sha256 of data[0..n) is hex. */
static bool sha256_is(const void *data, size_t n, const char *hex)
{
    unsigned char d[32];
    char h[65];
    qt_sha256(data, n, d);
    qt_sha256_hex(d, h);
    return strcmp(h, hex) == 0;
}

qt_status qt_cuda_rcp_load(const char *path, uint8_t **table, char *errmsg)
{
    qt_status st = QT_OK;
    char *buf = NULL;
    uint8_t *t = NULL;
    size_t n = 0;
    *table = NULL;
    /* the compressed bytes: exactly the measured file */
    QT_TRY(qt_file_read(path, &buf, &n, RCP_FILE_MAX, errmsg));
    QT_CHECK(sha256_is(buf, n, QT_RCP_SHA256_FILE), QT_ERR_FORMAT,
             "file '%s': sha256 differs from the measured GPU reciprocal table (%s)", path,
             QT_RCP_SHA256_FILE);
    /* one zstd frame of exactly the table's size */
    QT_CHECK(ZSTD_getFrameContentSize(buf, n) == QT_RCP_TABLE_BYTES, QT_ERR_FORMAT,
             "file '%s': not a zstd frame of %zu bytes", path, QT_RCP_TABLE_BYTES);
    t = qt_malloc(QT_RCP_TABLE_BYTES);
    QT_CHECK(t != NULL, QT_ERR_NOMEM, "file '%s': out of memory", path);
    size_t got = ZSTD_decompress(t, QT_RCP_TABLE_BYTES, buf, n);
    QT_CHECK(!ZSTD_isError(got) && got == QT_RCP_TABLE_BYTES, QT_ERR_FORMAT,
             "file '%s': zstd frame does not decompress to %zu bytes", path,
             QT_RCP_TABLE_BYTES);
    /* the content: exactly the measured table */
    QT_CHECK(sha256_is(t, QT_RCP_TABLE_BYTES, QT_RCP_SHA256_TABLE), QT_ERR_FORMAT,
             "file '%s': decompressed table's sha256 differs from %s", path, QT_RCP_SHA256_TABLE);
    *table = t;
    t = NULL;
fail:
    qt_free(buf);
    qt_free(t);
    return st;
}
