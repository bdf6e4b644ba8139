/* calib/calib_cache.c: the calibration cache file: one formats/zstd_cache
 * container (kind "calib", key = the set's fingerprint), the payload
 * described in calib/calib.h. The container checks the header, the key,
 * the length, the zstd frame and the payload sha256; this file checks that
 * the payload's counts agree with its size. */
#include "calib/calib.h"

#include <stdio.h>
#include <string.h>

#include "calib/calib_internal.h"
#include "formats/zstd_cache.h"

#define KIND "calib"
#define PAYLOAD_HDR (7 * 8)
#define MAX_PAYLOAD ((uint64_t)1 << 40)

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The raw 32-byte key of a 64-hex-digit fingerprint. */
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
    qt_zcache_writer *w = NULL;
    unsigned char key[32], head[PAYLOAD_HDR];
    QT_CHECK(little_endian(), QT_ERR_UNSUPPORTED, "the calibration cache needs a little-endian host");
    QT_CHECK(hex_to_raw(s->fingerprint, key), QT_ERR_ARG, "calibration set has no fingerprint");
    /* the counts, then every layer's and site's rows as they are in memory */
    const uint64_t fields[7] = {s->n_layers, s->n_rows,  s->n_tokens, s->n_in[0],
                                s->n_in[1],  s->n_in[2], s->n_in[3]};
    for (int i = 0; i < 7; i++) qt_store_le64(head + 8 * i, fields[i]);
    QT_TRY(qt_zcache_writer_open(path, key, KIND, 3, &w, errmsg));
    st = qt_zcache_writer_write(w, head, sizeof head);
    for (size_t l = 0; l < s->n_layers && st == QT_OK; l++)
        for (int k = 0; k < QT_CALIB_SITES && st == QT_OK; k++)
            st = qt_zcache_writer_write(w, s->rows[l * QT_CALIB_SITES + (size_t)k],
                                        s->n_rows * s->n_in[k] * sizeof(float));
    QT_CHECK(st == QT_OK, st, "%s", qt_zcache_writer_errmsg(w));
    st = qt_zcache_writer_close(w, errmsg);
    w = NULL;
fail:
    qt_zcache_writer_abort(w);
    return st;
}

/* The payload's counts: checked against each other and the payload size,
 * so that nothing is allocated beyond what the file holds. */
static qt_status read_counts(qt_zcache_reader *r, const char *path, uint64_t fields[7],
                             char *errmsg)
{
    qt_status st = QT_OK;
    unsigned char head[PAYLOAD_HDR];
    uint64_t psize = qt_zcache_reader_size(r), need = 0;
    QT_CHECK(psize >= PAYLOAD_HDR && psize <= MAX_PAYLOAD, QT_ERR_FORMAT, "'%s': bad payload size",
             path);
    QT_TRY(qt_zcache_reader_read(r, head, sizeof head, errmsg));
    for (int i = 0; i < 7; i++) fields[i] = qt_load_le64(head + 8 * i);
    QT_CHECK(fields[0] > 0 && fields[0] <= 4096 && fields[1] > 0 && fields[2] >= fields[1],
             QT_ERR_FORMAT, "'%s': bad counts", path);
    for (int k = 0; k < QT_CALIB_SITES; k++) {
        uint64_t t;
        QT_CHECK(fields[3 + k] > 0 && fields[3 + k] <= (1u << 24) &&
                     qt_mul_u64(fields[1], fields[3 + k], &t) && qt_mul_u64(t, fields[0], &t) &&
                     qt_add_u64(need, t, &need),
                 QT_ERR_FORMAT, "'%s': bad widths", path);
    }
    QT_CHECK(qt_mul_u64(need, sizeof(float), &need) && need + PAYLOAD_HDR == psize, QT_ERR_FORMAT,
             "'%s': payload size disagrees with its counts", path);
fail:
    return st;
}

qt_status qt_calib_set_load(const char *path, const char *want_fp, qt_calib_set **out,
                            char *errmsg)
{
    qt_status st = QT_OK;
    qt_zcache_reader *r = NULL;
    qt_calib_set *s = NULL;
    unsigned char key[32];
    uint64_t fields[7];
    *out = NULL;
    QT_CHECK(little_endian(), QT_ERR_UNSUPPORTED, "the calibration cache needs a little-endian host");
    QT_CHECK(hex_to_raw(want_fp, key), QT_ERR_ARG, "'%s': no fingerprint to compare with", path);
    /* another fingerprint is QT_ERR_ARG (stale), damage QT_ERR_FORMAT */
    QT_TRY(qt_zcache_reader_open(path, key, KIND, &r, errmsg));
    QT_TRY(read_counts(r, path, fields, errmsg));
    size_t n_in[QT_CALIB_SITES] = {(size_t)fields[3], (size_t)fields[4], (size_t)fields[5],
                                   (size_t)fields[6]};
    st = qt_calib_set_alloc((size_t)fields[0], (size_t)fields[1], n_in, &s);
    QT_CHECK(st == QT_OK, st, "out of memory");
    s->n_tokens = (size_t)fields[2];
    snprintf(s->fingerprint, sizeof s->fingerprint, "%s", want_fp);
    /* the rows; the last read checks the payload sha256 */
    for (size_t l = 0; l < s->n_layers; l++)
        for (int k = 0; k < QT_CALIB_SITES; k++)
            QT_TRY(qt_zcache_reader_read(r, s->rows[l * QT_CALIB_SITES + (size_t)k],
                                         s->n_rows * s->n_in[k] * sizeof(float), errmsg));
    *out = s;
    s = NULL;
fail:
    qt_zcache_reader_close(r);
    qt_calib_set_free(s);
    return st;
}
