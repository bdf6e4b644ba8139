/* formats/zstd_cache.c: zstd-compressed cache files with a keyed, checksummed
 * header (layout and rules in zstd_cache.h). */
#include "formats/zstd_cache.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "common/sha256.h"

#define ZC_MAGIC "QTZCACHE"
#define ZC_VERSION 1u
#define ZC_PATH_MAX 4096

struct qt_zcache_writer {
    FILE *f;
    char path[ZC_PATH_MAX], tmp[ZC_PATH_MAX];
    unsigned char key[QT_ZCACHE_KEY_SIZE];
    char kind[QT_ZCACHE_KIND_MAX + 1];
    ZSTD_CCtx *cctx;
    void *obuf;
    size_t obuf_n;
    uint64_t payload, compressed;
    qt_sha256_ctx sha;
    qt_status failed;
    char errmsg[QT_ERRMSG_SIZE];
};

struct qt_zcache_reader {
    FILE *f;
    char path[ZC_PATH_MAX];
    ZSTD_DCtx *dctx;
    void *ibuf;
    size_t ibuf_n;
    ZSTD_inBuffer in;
    uint64_t payload, compressed, done, consumed; /* consumed: compressed bytes read */
    unsigned char sha_want[32];
    qt_sha256_ctx sha;
    size_t frame_left; /* last ZSTD_decompressStream hint: 0 = frame complete */
};

static bool kind_ok(const char *kind)
{
    if (!kind) return false;
    size_t n = strlen(kind);
    if (n == 0 || n > QT_ZCACHE_KIND_MAX) return false;
    for (size_t i = 0; i < n; i++)
        if (kind[i] < 0x21 || kind[i] > 0x7e) return false;
    return true;
}

/* mkdir -p of the folder holding path. */
static qt_status make_parents(const char *path, char *errmsg)
{
    char buf[ZC_PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return qt_set_err(errmsg, QT_ERR_ARG, "'%s': path too long", path);
    char *slash = strrchr(buf, '/');
    if (!slash || slash == buf) return QT_OK;
    *slash = 0;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return qt_set_err(errmsg, QT_ERR_IO, "cannot create '%s': %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return qt_set_err(errmsg, QT_ERR_IO, "cannot create '%s': %s", buf, strerror(errno));
    return QT_OK;
}

static void header_encode(unsigned char h[QT_ZCACHE_HEADER_SIZE], const unsigned char *key,
                          const char *kind, uint64_t payload, uint64_t compressed,
                          const unsigned char sha[32])
{
    memset(h, 0, QT_ZCACHE_HEADER_SIZE);
    memcpy(h, ZC_MAGIC, 8);
    qt_store_le32(h + 8, ZC_VERSION);
    qt_store_le32(h + 12, 0);
    memcpy(h + 16, key, QT_ZCACHE_KEY_SIZE);
    memcpy(h + 48, kind, strlen(kind));
    qt_store_le64(h + 64, payload);
    qt_store_le64(h + 72, compressed);
    memcpy(h + 80, sha, 32);
    unsigned char d[32];
    qt_sha256(h, 112, d);
    memcpy(h + 112, d, 8);
}

/* ---- writer ------------------------------------------------------------- */

/* Records the writer's first failure: "<what> '<tmp path>': <detail>". */
static qt_status wfail(qt_zcache_writer *w, qt_status st, const char *what, const char *detail)
{
    if (w->failed == QT_OK) {
        w->failed = st;
        qt_set_err(w->errmsg, st, "%s '%s': %s", what, w->tmp, detail);
    }
    return w->failed;
}

static qt_status wflush(qt_zcache_writer *w, const void *p, size_t n)
{
    if (n && fwrite(p, 1, n, w->f) != n)
        return wfail(w, QT_ERR_IO, "cannot write", strerror(errno));
    w->compressed += n;
    return QT_OK;
}

static void writer_free(qt_zcache_writer *w)
{
    if (!w) return;
    if (w->f) fclose(w->f);
    ZSTD_freeCCtx(w->cctx);
    qt_free(w->obuf);
    qt_free(w);
}

qt_status qt_zcache_writer_open(const char *path, const unsigned char *key, const char *kind,
                                int level, qt_zcache_writer **out, char *errmsg)
{
    qt_status st = QT_OK;
    qt_zcache_writer *w = NULL;
    *out = NULL;
    QT_CHECK(path && key, QT_ERR_ARG, "zstd cache: no path or key");
    QT_CHECK(kind_ok(kind), QT_ERR_ARG, "zstd cache: kind '%s' is not 1-%d printable characters",
             kind ? kind : "(null)", QT_ZCACHE_KIND_MAX);
    QT_CHECK(level >= 0 && level <= 19, QT_ERR_ARG, "zstd cache: level %d not in 1..19", level);
    w = qt_calloc(1, sizeof *w);
    QT_CHECK(w, QT_ERR_NOMEM, "out of memory");
    QT_CHECK(snprintf(w->path, sizeof w->path, "%s", path) < (int)sizeof w->path &&
                 snprintf(w->tmp, sizeof w->tmp, "%s.tmp.%ld", path, (long)getpid()) <
                     (int)sizeof w->tmp,
             QT_ERR_ARG, "'%s': path too long", path);
    memcpy(w->key, key, QT_ZCACHE_KEY_SIZE);
    snprintf(w->kind, sizeof w->kind, "%s", kind);
    QT_TRY(make_parents(path, errmsg));
    w->cctx = ZSTD_createCCtx();
    w->obuf_n = ZSTD_CStreamOutSize();
    w->obuf = qt_malloc(w->obuf_n);
    QT_CHECK(w->cctx && w->obuf, QT_ERR_NOMEM, "out of memory");
    QT_CHECK(!ZSTD_isError(ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel,
                                                  level ? level : 3)) &&
                 !ZSTD_isError(ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 1)),
             QT_ERR_ARG, "zstd cache: cannot set the compression parameters");
    w->f = fopen(w->tmp, "wb");
    QT_CHECK(w->f, QT_ERR_IO, "cannot create '%s': %s", w->tmp, strerror(errno));
    unsigned char zero[QT_ZCACHE_HEADER_SIZE] = {0};
    if (fwrite(zero, 1, sizeof zero, w->f) != sizeof zero) {
        st = qt_set_err(errmsg, QT_ERR_IO, "cannot write '%s': %s", w->tmp, strerror(errno));
        fclose(w->f);
        w->f = NULL;
        remove(w->tmp);
        goto fail;
    }
    qt_sha256_init(&w->sha);
    *out = w;
    return QT_OK;
fail:
    writer_free(w);
    return st;
}

qt_status qt_zcache_writer_write(qt_zcache_writer *w, const void *data, size_t n)
{
    if (w->failed != QT_OK) return w->failed;
    if (n == 0) return QT_OK;
    qt_sha256_update(&w->sha, data, n);
    w->payload += n;
    ZSTD_inBuffer in = {data, n, 0};
    while (in.pos < in.size) {
        ZSTD_outBuffer ob = {w->obuf, w->obuf_n, 0};
        size_t r = ZSTD_compressStream2(w->cctx, &ob, &in, ZSTD_e_continue);
        if (ZSTD_isError(r)) return wfail(w, QT_ERR_NOMEM, "zstd failed on", ZSTD_getErrorName(r));
        if (wflush(w, w->obuf, ob.pos) != QT_OK) return w->failed;
    }
    return QT_OK;
}

const char *qt_zcache_writer_errmsg(const qt_zcache_writer *w)
{
    return w ? w->errmsg : "";
}

void qt_zcache_writer_abort(qt_zcache_writer *w)
{
    if (!w) return;
    if (w->f) {
        fclose(w->f);
        w->f = NULL;
        remove(w->tmp);
    }
    writer_free(w);
}

qt_status qt_zcache_writer_close(qt_zcache_writer *w, char *errmsg)
{
    if (!w) return QT_OK;
    qt_status st = w->failed;
    if (st == QT_OK) {
        size_t left;
        do {
            ZSTD_inBuffer in = {NULL, 0, 0};
            ZSTD_outBuffer ob = {w->obuf, w->obuf_n, 0};
            left = ZSTD_compressStream2(w->cctx, &ob, &in, ZSTD_e_end);
            if (ZSTD_isError(left)) {
                wfail(w, QT_ERR_NOMEM, "zstd failed on", ZSTD_getErrorName(left));
                break;
            }
            if (wflush(w, w->obuf, ob.pos) != QT_OK) break;
        } while (left != 0);
        st = w->failed;
    }
    if (st == QT_OK) {
        unsigned char sha[32], h[QT_ZCACHE_HEADER_SIZE];
        qt_sha256_final(&w->sha, sha);
        header_encode(h, w->key, w->kind, w->payload, w->compressed, sha);
        if (fflush(w->f) != 0 || fseek(w->f, 0, SEEK_SET) != 0 ||
            fwrite(h, 1, sizeof h, w->f) != sizeof h || fflush(w->f) != 0 ||
            fsync(fileno(w->f)) != 0)
            st = wfail(w, QT_ERR_IO, "cannot write", strerror(errno));
    }
    if (w->f && fclose(w->f) != 0 && st == QT_OK)
        st = wfail(w, QT_ERR_IO, "cannot write", strerror(errno));
    w->f = NULL;
    if (st == QT_OK && rename(w->tmp, w->path) != 0)
        st = wfail(w, QT_ERR_IO, "cannot rename into place", strerror(errno));
    if (st != QT_OK) {
        remove(w->tmp);
        if (errmsg) snprintf(errmsg, QT_ERRMSG_SIZE, "%s", w->errmsg);
    }
    writer_free(w);
    return st;
}

/* ---- reader ------------------------------------------------------------- */

void qt_zcache_reader_close(qt_zcache_reader *r)
{
    if (!r) return;
    if (r->f) fclose(r->f);
    ZSTD_freeDCtx(r->dctx);
    qt_free(r->ibuf);
    qt_free(r);
}

qt_status qt_zcache_reader_open(const char *path, const unsigned char *key, const char *kind,
                                qt_zcache_reader **out, char *errmsg)
{
    qt_status st = QT_OK;
    qt_zcache_reader *r = NULL;
    unsigned char h[QT_ZCACHE_HEADER_SIZE];
    *out = NULL;
    QT_CHECK(path && key && kind_ok(kind), QT_ERR_ARG, "zstd cache: bad path, key or kind");
    r = qt_calloc(1, sizeof *r);
    QT_CHECK(r, QT_ERR_NOMEM, "out of memory");
    snprintf(r->path, sizeof r->path, "%s", path);
    r->f = fopen(path, "rb");
    QT_CHECK(r->f, QT_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    QT_CHECK(fstat(fileno(r->f), &sb) == 0, QT_ERR_IO, "cannot stat '%s': %s", path,
             strerror(errno));
    QT_CHECK(S_ISREG(sb.st_mode), QT_ERR_IO, "'%s': not a regular file", path);
    QT_CHECK((uint64_t)sb.st_size >= QT_ZCACHE_HEADER_SIZE &&
                 fread(h, 1, sizeof h, r->f) == sizeof h,
             QT_ERR_FORMAT, "'%s': shorter than a cache header", path);
    QT_CHECK(!memcmp(h, ZC_MAGIC, 8), QT_ERR_FORMAT, "'%s': not a qtool cache file (magic)", path);
    unsigned char d[32];
    qt_sha256(h, 112, d);
    QT_CHECK(!memcmp(d, h + 112, 8), QT_ERR_FORMAT, "'%s': header checksum mismatch", path);
    QT_CHECK(qt_load_le32(h + 8) == ZC_VERSION && qt_load_le32(h + 12) == 0, QT_ERR_FORMAT,
             "'%s': cache format version %u flags %u (expected %u, 0)", path,
             (unsigned)qt_load_le32(h + 8), (unsigned)qt_load_le32(h + 12), ZC_VERSION);
    char fkind[QT_ZCACHE_KIND_MAX + 2] = {0};
    memcpy(fkind, h + 48, 16);
    fkind[16] = 0;
    QT_CHECK(!strcmp(fkind, kind), QT_ERR_ARG, "'%s': a different cache entry (kind '%.16s', "
             "expected '%s')", path, fkind, kind);
    QT_CHECK(!memcmp(h + 16, key, QT_ZCACHE_KEY_SIZE), QT_ERR_ARG,
             "'%s': a different cache entry (key mismatch)", path);
    r->payload = qt_load_le64(h + 64);
    r->compressed = qt_load_le64(h + 72);
    memcpy(r->sha_want, h + 80, 32);
    QT_CHECK(r->compressed == (uint64_t)sb.st_size - QT_ZCACHE_HEADER_SIZE, QT_ERR_FORMAT,
             "'%s': file is %llu bytes, the header says %llu", path,
             (unsigned long long)sb.st_size,
             (unsigned long long)(r->compressed + QT_ZCACHE_HEADER_SIZE));
    r->dctx = ZSTD_createDCtx();
    r->ibuf_n = ZSTD_DStreamInSize();
    r->ibuf = qt_malloc(r->ibuf_n);
    QT_CHECK(r->dctx && r->ibuf, QT_ERR_NOMEM, "out of memory");
    r->in = (ZSTD_inBuffer){r->ibuf, 0, 0};
    r->frame_left = 1;
    qt_sha256_init(&r->sha);
    *out = r;
    return QT_OK;
fail:
    qt_zcache_reader_close(r);
    return st;
}

uint64_t qt_zcache_reader_size(const qt_zcache_reader *r)
{
    return r->payload;
}

qt_status qt_zcache_reader_read(qt_zcache_reader *r, void *buf, size_t n, char *errmsg)
{
    qt_status st = QT_OK;
    QT_CHECK(n <= r->payload - r->done, QT_ERR_ARG,
             "'%s': read of %zu bytes past the payload end (%llu of %llu read)", r->path, n,
             (unsigned long long)r->done, (unsigned long long)r->payload);
    ZSTD_outBuffer ob = {buf, n, 0};
    while (ob.pos < ob.size) {
        if (r->in.pos == r->in.size) {
            size_t want = r->ibuf_n;
            if ((uint64_t)want > r->compressed - r->consumed)
                want = (size_t)(r->compressed - r->consumed);
            QT_CHECK(want > 0, QT_ERR_FORMAT, "'%s': compressed data ends early (truncated)",
                     r->path);
            size_t got = fread(r->ibuf, 1, want, r->f);
            QT_CHECK(got == want, ferror(r->f) ? QT_ERR_IO : QT_ERR_FORMAT,
                     "'%s': cannot read: %s", r->path,
                     ferror(r->f) ? strerror(errno) : "file shrank");
            r->consumed += got;
            r->in = (ZSTD_inBuffer){r->ibuf, got, 0};
        }
        QT_CHECK(r->frame_left != 0, QT_ERR_FORMAT, "'%s': the zstd frame ends before the "
                 "declared payload size", r->path);
        size_t before = ob.pos;
        size_t ret = ZSTD_decompressStream(r->dctx, &ob, &r->in);
        QT_CHECK(!ZSTD_isError(ret), QT_ERR_FORMAT, "'%s': damaged: zstd: %s", r->path,
                 ZSTD_getErrorName(ret));
        r->frame_left = ret;
        qt_sha256_update(&r->sha, (unsigned char *)buf + before, ob.pos - before);
    }
    r->done += n;
    if (r->done == r->payload) {
        /* end of the payload: the frame must end here, with nothing after */
        unsigned char extra;
        while (r->frame_left != 0) {
            if (r->in.pos == r->in.size) {
                size_t want = r->ibuf_n;
                if ((uint64_t)want > r->compressed - r->consumed)
                    want = (size_t)(r->compressed - r->consumed);
                QT_CHECK(want > 0, QT_ERR_FORMAT, "'%s': compressed data ends early (truncated)",
                         r->path);
                size_t got = fread(r->ibuf, 1, want, r->f);
                QT_CHECK(got == want, QT_ERR_FORMAT, "'%s': cannot read: file shrank", r->path);
                r->consumed += got;
                r->in = (ZSTD_inBuffer){r->ibuf, got, 0};
            }
            ZSTD_outBuffer eb = {&extra, 1, 0};
            size_t ret = ZSTD_decompressStream(r->dctx, &eb, &r->in);
            QT_CHECK(!ZSTD_isError(ret), QT_ERR_FORMAT, "'%s': damaged: zstd: %s", r->path,
                     ZSTD_getErrorName(ret));
            QT_CHECK(eb.pos == 0, QT_ERR_FORMAT, "'%s': payload longer than declared", r->path);
            r->frame_left = ret;
        }
        QT_CHECK(r->in.pos == r->in.size && r->consumed == r->compressed, QT_ERR_FORMAT,
                 "'%s': bytes after the zstd frame", r->path);
        unsigned char d[32];
        qt_sha256_final(&r->sha, d);
        QT_CHECK(!memcmp(d, r->sha_want, 32), QT_ERR_FORMAT, "'%s': payload checksum mismatch",
                 r->path);
    }
    return QT_OK;
fail:
    return st;
}

/* ---- whole files ---------------------------------------------------------- */

qt_status qt_zcache_verify(const char *path, const unsigned char *key, const char *kind,
                           uint64_t *payload_size, char *errmsg)
{
    qt_status st;
    qt_zcache_reader *r = NULL;
    unsigned char *buf = NULL;
    const size_t cap = 1u << 17;
    QT_TRY(qt_zcache_reader_open(path, key, kind, &r, errmsg));
    buf = qt_malloc(cap);
    QT_CHECK(buf, QT_ERR_NOMEM, "out of memory");
    uint64_t left = r->payload;
    do { /* at least one read, so an empty payload is checked too */
        size_t n = left < cap ? (size_t)left : cap;
        QT_TRY(qt_zcache_reader_read(r, buf, n, errmsg));
        left -= n;
    } while (left > 0);
    if (payload_size) *payload_size = r->payload;
    st = QT_OK;
fail:
    qt_free(buf);
    qt_zcache_reader_close(r);
    return st;
}

qt_status qt_zcache_save(const char *path, const unsigned char *key, const char *kind,
                         const void *data, size_t n, char *errmsg)
{
    qt_zcache_writer *w = NULL;
    qt_status st = qt_zcache_writer_open(path, key, kind, 3, &w, errmsg);
    if (st != QT_OK) return st;
    if (qt_zcache_writer_write(w, data, n) != QT_OK) {
        /* close reports the writer's failure and removes the temporary file */
    }
    return qt_zcache_writer_close(w, errmsg);
}

qt_status qt_zcache_load(const char *path, const unsigned char *key, const char *kind,
                         uint64_t max_size, void **data, size_t *n, char *errmsg)
{
    qt_status st;
    qt_zcache_reader *r = NULL;
    unsigned char *buf = NULL;
    *data = NULL;
    *n = 0;
    QT_TRY(qt_zcache_reader_open(path, key, kind, &r, errmsg));
    QT_CHECK(r->payload <= max_size && r->payload <= (uint64_t)SIZE_MAX - 1, QT_ERR_FORMAT,
             "'%s': payload of %llu bytes exceeds the %llu allowed", path,
             (unsigned long long)r->payload, (unsigned long long)max_size);
    buf = qt_malloc(r->payload ? (size_t)r->payload : 1);
    QT_CHECK(buf, QT_ERR_NOMEM, "out of memory");
    QT_TRY(qt_zcache_reader_read(r, buf, (size_t)r->payload, errmsg));
    *data = buf;
    *n = (size_t)r->payload;
    buf = NULL;
    st = QT_OK;
fail:
    qt_free(buf);
    qt_zcache_reader_close(r);
    return st;
}
