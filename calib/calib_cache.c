/* calib/calib_cache.c: the calibration cache file (layout in calib/calib.h):
 * a checked header, a sha256 over the zstd frame, the frame. Written to a
 * temporary file and renamed into place; every field is checked on read. */
#include "calib/calib.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "calib/calib_internal.h"
#include "common/sha256.h"

#define MAGIC "QTCALIB"
#define VERSION 1
#define HDR 96
#define PAYLOAD_HDR (7 * 8)
#define MAX_FILE ((uint64_t)1 << 40)

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static bool hex_to_raw(const char *hex, unsigned char raw[32])
{
    if (!hex || strlen(hex) != 64) return false;
    for (int i = 0; i < 32; i++) {
        int a = hexval(hex[2 * i]), b = hexval(hex[2 * i + 1]);
        if (a < 0 || b < 0) return false;
        raw[i] = (unsigned char)(a * 16 + b);
    }
    return true;
}

static bool little_endian(void)
{
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

qt_status qt_calib_set_save(const qt_calib_set *s, const char *path, char *errmsg)
{
    qt_status st = QT_OK;
    unsigned char *payload = NULL, *frame = NULL;
    FILE *f = NULL;
    char tmp[4200];
    bool made = false;
    QT_CHECK(little_endian(), QT_ERR_UNSUPPORTED, "the calibration cache needs a little-endian host");
    size_t n_vals = 0;
    for (size_t l = 0; l < s->n_layers; l++)
        for (int k = 0; k < QT_CALIB_SITES; k++) n_vals += s->n_rows * s->n_in[k];
    size_t psize = PAYLOAD_HDR + n_vals * sizeof(float);
    payload = qt_malloc(psize);
    size_t bound = ZSTD_compressBound(psize);
    frame = qt_malloc(bound);
    QT_CHECK(payload && frame, QT_ERR_NOMEM, "out of memory");
    uint64_t fields[7] = {s->n_layers, s->n_rows, s->n_tokens, s->n_in[0], s->n_in[1], s->n_in[2],
                          s->n_in[3]};
    for (int i = 0; i < 7; i++) qt_store_le64(payload + 8 * i, fields[i]);
    unsigned char *p = payload + PAYLOAD_HDR;
    for (size_t l = 0; l < s->n_layers; l++)
        for (int k = 0; k < QT_CALIB_SITES; k++) {
            size_t b = s->n_rows * s->n_in[k] * sizeof(float);
            memcpy(p, s->rows[l * QT_CALIB_SITES + (size_t)k], b);
            p += b;
        }
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    QT_CHECK(cc, QT_ERR_NOMEM, "out of memory");
    ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, 3);
    ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1);
    size_t fsize = ZSTD_compress2(cc, frame, bound, payload, psize);
    ZSTD_freeCCtx(cc);
    QT_CHECK(!ZSTD_isError(fsize), QT_ERR_NOMEM, "zstd: %s", ZSTD_getErrorName(fsize));

    unsigned char hdr[HDR] = {0};
    memcpy(hdr, MAGIC, 8);
    qt_store_le32(hdr + 8, VERSION);
    QT_CHECK(hex_to_raw(s->fingerprint, hdr + 16), QT_ERR_ARG, "calibration set has no fingerprint");
    qt_store_le64(hdr + 48, psize);
    qt_store_le64(hdr + 56, fsize);
    qt_sha256(frame, fsize, hdr + 64);

    QT_CHECK(snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) < (int)sizeof tmp,
             QT_ERR_ARG, "cache path too long");
    f = fopen(tmp, "wb");
    QT_CHECK(f, QT_ERR_IO, "cannot create '%s': %s", tmp, strerror(errno));
    made = true;
    QT_CHECK(fwrite(hdr, 1, HDR, f) == HDR && fwrite(frame, 1, fsize, f) == fsize, QT_ERR_IO,
             "cannot write '%s': %s", tmp, strerror(errno));
    int rc = fclose(f);
    f = NULL;
    QT_CHECK(rc == 0, QT_ERR_IO, "cannot write '%s': %s", tmp, strerror(errno));
    QT_CHECK(rename(tmp, path) == 0, QT_ERR_IO, "cannot rename '%s' to '%s': %s", tmp, path,
             strerror(errno));
    made = false;
fail:
    if (f) fclose(f);
    if (made) unlink(tmp);
    qt_free(payload);
    qt_free(frame);
    return st;
}

qt_status qt_calib_set_load(const char *path, const char *want_fp, qt_calib_set **out,
                            char *errmsg)
{
    qt_status st = QT_OK;
    unsigned char hdr[HDR], *frame = NULL, *payload = NULL;
    qt_calib_set *s = NULL;
    *out = NULL;
    FILE *f = fopen(path, "rb");
    QT_CHECK(f, QT_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    QT_CHECK(fstat(fileno(f), &sb) == 0 && S_ISREG(sb.st_mode), QT_ERR_IO,
             "'%s' is not a regular file", path);
    QT_CHECK(little_endian(), QT_ERR_UNSUPPORTED, "the calibration cache needs a little-endian host");
    QT_CHECK(fread(hdr, 1, HDR, f) == HDR, QT_ERR_FORMAT, "'%s': truncated header", path);
    QT_CHECK(memcmp(hdr, MAGIC, 8) == 0, QT_ERR_FORMAT, "'%s': not a qtool calibration cache", path);
    QT_CHECK(qt_load_le32(hdr + 8) == VERSION, QT_ERR_FORMAT, "'%s': cache version %u", path,
             qt_load_le32(hdr + 8));
    char fp[65];
    qt_sha256_hex(hdr + 16, fp);
    QT_CHECK(!want_fp || strcmp(fp, want_fp) == 0, QT_ERR_ARG,
             "'%s': made from another model, text or settings (fingerprint %.12s, now %.12s)", path,
             fp, want_fp ? want_fp : "");
    uint64_t psize = qt_load_le64(hdr + 48), fsize = qt_load_le64(hdr + 56);
    QT_CHECK(fsize <= MAX_FILE && (uint64_t)sb.st_size == HDR + fsize, QT_ERR_FORMAT,
             "'%s': %lld bytes, the header says %llu (truncated or extended)", path,
             (long long)sb.st_size, (unsigned long long)(HDR + fsize));
    QT_CHECK(psize >= PAYLOAD_HDR && psize <= MAX_FILE, QT_ERR_FORMAT, "'%s': bad payload size",
             path);
    frame = qt_malloc(fsize ? (size_t)fsize : 1);
    QT_CHECK(frame, QT_ERR_NOMEM, "out of memory");
    QT_CHECK(fread(frame, 1, (size_t)fsize, f) == fsize, QT_ERR_FORMAT, "'%s': truncated", path);
    unsigned char dig[32];
    qt_sha256(frame, (size_t)fsize, dig);
    QT_CHECK(memcmp(dig, hdr + 64, 32) == 0, QT_ERR_FORMAT, "'%s': checksum mismatch (damaged)",
             path);
    unsigned long long cs = ZSTD_getFrameContentSize(frame, (size_t)fsize);
    QT_CHECK(cs == psize, QT_ERR_FORMAT, "'%s': zstd frame size disagrees with the header", path);
    payload = qt_malloc((size_t)psize);
    QT_CHECK(payload, QT_ERR_NOMEM, "out of memory");
    size_t got = ZSTD_decompress(payload, (size_t)psize, frame, (size_t)fsize);
    QT_CHECK(!ZSTD_isError(got) && got == psize, QT_ERR_FORMAT, "'%s': zstd: %s", path,
             ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short frame");
    uint64_t fields[7];
    for (int i = 0; i < 7; i++) fields[i] = qt_load_le64(payload + 8 * i);
    QT_CHECK(fields[0] > 0 && fields[0] <= 4096 && fields[1] > 0 && fields[2] >= fields[1],
             QT_ERR_FORMAT, "'%s': bad counts", path);
    uint64_t need = 0;
    for (int k = 0; k < QT_CALIB_SITES; k++) {
        uint64_t t;
        QT_CHECK(fields[3 + k] > 0 && fields[3 + k] <= (1u << 24) &&
                     qt_mul_u64(fields[1], fields[3 + k], &t) && qt_mul_u64(t, fields[0], &t) &&
                     qt_add_u64(need, t, &need),
                 QT_ERR_FORMAT, "'%s': bad widths", path);
    }
    QT_CHECK(qt_mul_u64(need, sizeof(float), &need) && need + PAYLOAD_HDR == psize, QT_ERR_FORMAT,
             "'%s': payload size disagrees with its counts", path);
    size_t n_in[QT_CALIB_SITES] = {(size_t)fields[3], (size_t)fields[4], (size_t)fields[5],
                                   (size_t)fields[6]};
    st = qt_calib_set_alloc((size_t)fields[0], (size_t)fields[1], n_in, &s);
    QT_CHECK(st == QT_OK, st, "out of memory");
    s->n_tokens = (size_t)fields[2];
    memcpy(s->fingerprint, fp, sizeof fp);
    const unsigned char *p = payload + PAYLOAD_HDR;
    for (size_t l = 0; l < s->n_layers; l++)
        for (int k = 0; k < QT_CALIB_SITES; k++) {
            size_t b = s->n_rows * s->n_in[k] * sizeof(float);
            memcpy(s->rows[l * QT_CALIB_SITES + (size_t)k], p, b);
            p += b;
        }
    *out = s;
    s = NULL;
fail:
    if (f) fclose(f);
    qt_free(frame);
    qt_free(payload);
    qt_calib_set_free(s);
    return st;
}
