/* convert/outdir.c: what convert may do with OUT and the files beside the
 * weights: the temporary folder's name, whether an existing OUT may be
 * replaced, and which non-weight files of IN are copied, and how. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "convert/convert_internal.h"
#include "formats/fsutil.h"
#include "formats/input_file.h"
#include "formats/modeldir.h"
#include "formats/out_stage.h"
#include "formats/vocab.h"

/* The non-weight files a model folder is known to hold, each with the size
 * its reader accepts: only these are copied into OUT (config.json is
 * rewritten, not copied). */
static const struct model_file {
    const char *name;
    uint64_t max_bytes;
} MODEL_FILES[] = {
    {"tokenizer.json", QT_VOCAB_MAX_JSON_BYTES},
    {"tokenizer.model", QT_VOCAB_MAX_SPM_BYTES},
    {"tokenizer_config.json", QT_MODELDIR_CONFIG_MAX},
    {"special_tokens_map.json", QT_MODELDIR_CONFIG_MAX},
    {"added_tokens.json", QT_MODELDIR_CONFIG_MAX},
    {"vocab.json", QT_VOCAB_MAX_JSON_BYTES},
    {"merges.txt", QT_VOCAB_MAX_JSON_BYTES},
    {"generation_config.json", QT_MODELDIR_CONFIG_MAX},
    {"chat_template.json", QT_MODELDIR_CONFIG_MAX},
    {"chat_template.jinja", QT_MODELDIR_CONFIG_MAX},
    {"README.md", QT_MODELDIR_CONFIG_MAX},
    {"LICENSE", QT_MODELDIR_CONFIG_MAX},
    {"LICENSE.txt", QT_MODELDIR_CONFIG_MAX},
    {"LICENSE.md", QT_MODELDIR_CONFIG_MAX},
    {"USE_POLICY.md", QT_MODELDIR_CONFIG_MAX},
    {"NOTICE", QT_MODELDIR_CONFIG_MAX},
};
#define N_MODEL_FILES (sizeof MODEL_FILES / sizeof MODEL_FILES[0])

/* ---- the temporary folder's name ---------------------------------------- */

void qt_conv_tmp_prefix(const char *base, char *buf, size_t n)
{
    qt_out_stage_prefix(base, buf, n); /* one home: the staging folder's own module */
}

/* ---- may an existing OUT be replaced? ----------------------------------- */

/* Whether name is a file qtool writes into OUT (other than a shard). */
static bool written_by_qtool(const char *name)
{
    if (!strcmp(name, "config.json") || !strcmp(name, "model.safetensors.index.json")) return true;
    for (size_t i = 0; i < N_MODEL_FILES; i++)
        if (!strcmp(name, MODEL_FILES[i].name)) return true;
    return false;
}

/* Whether the safetensors file p carries the provenance convert writes. */
static bool has_provenance(const char *p)
{
    qt_st_reader *r = NULL;
    char err[QT_ERRMSG_SIZE];
    if (qt_st_reader_open(p, &r, err) != QT_OK) return false;
    bool ok = qt_st_reader_metadata_get(r, "qtool.version") != NULL;
    qt_st_reader_close(r);
    return ok;
}

qt_status qt_conv_check_replaceable(const char *out, char *errmsg)
{
    qt_status st = QT_OK;
    size_t n_entries = 0, n_shards = 0;
    char p[PATH_MAX];
    DIR *d = opendir(out);
    QT_CHECK(d, QT_ERR_IO, "cannot list '%s': %s", out, strerror(errno));
    /* every entry must be a file qtool writes; every shard must carry qtool's provenance */
    for (struct dirent *e; (e = readdir(d));) {
        const char *name = e->d_name;
        if (!strcmp(name, ".") || !strcmp(name, "..")) continue;
        n_entries++;
        struct stat sb;
        bool file = qt_path_join(p, sizeof p, out, name) && lstat(p, &sb) == 0 &&
                    S_ISREG(sb.st_mode);
        bool shard = file && qt_str_ends_with(name, ".safetensors");
        QT_CHECK(file && (shard || written_by_qtool(name)), QT_ERR_ARG,
                 "output '%s' holds '%s', which qtool does not write: refusing to replace a "
                 "folder that is not a previous qtool output",
                 out, name);
        QT_CHECK(!shard || has_provenance(p), QT_ERR_ARG,
                 "output '%s': '%s' has no qtool provenance (__metadata__ qtool.version): "
                 "refusing to replace a folder that is not a previous qtool output",
                 out, name);
        n_shards += shard;
    }
    /* an empty folder holds nothing to lose; anything else must hold qtool's weights */
    QT_CHECK(n_entries == 0 || n_shards > 0, QT_ERR_ARG,
             "output '%s' holds no qtool weights: refusing to replace a folder that is not a "
             "previous qtool output",
             out);
fail:
    if (d) closedir(d);
    return st;
}

/* ---- the non-weight files ------------------------------------------------ */

/* Rule I6 for a copied file: a symlink must resolve inside in_dir. */
static qt_status check_link_inside(const char *in_dir, const char *src, char *errmsg)
{
    qt_status st = QT_OK;
    char *rd = realpath(in_dir, NULL), *rf = realpath(src, NULL);
    QT_CHECK(rd && rf, QT_ERR_FORMAT, "cannot resolve the symlink '%s': %s", src, strerror(errno));
    size_t n = strlen(rd);
    QT_CHECK(strncmp(rf, rd, n) == 0 && (rf[n] == '/' || (n == 1 && rd[0] == '/')), QT_ERR_FORMAT,
             "'%s' is a symlink leading out of the model folder (I6; --follow-symlinks copies "
             "it)",
             src);
fail:
    free(rd); /* realpath allocates with malloc */
    free(rf);
    return st;
}

qt_status qt_conv_check_links(const char *in_dir, bool follow_symlinks, char *errmsg)
{
    qt_status st = QT_OK;
    char p[PATH_MAX];
    struct stat sb;
    if (follow_symlinks) return QT_OK;
    /* config.json (rewritten into OUT) and every file copied */
    for (size_t i = 0; i <= N_MODEL_FILES; i++) {
        const char *name = i < N_MODEL_FILES ? MODEL_FILES[i].name : "config.json";
        QT_CHECK(qt_path_join(p, sizeof p, in_dir, name), QT_ERR_ARG, "path too long: '%s/%s'",
                 in_dir, name);
        if (lstat(p, &sb) == 0 && S_ISLNK(sb.st_mode)) QT_TRY(check_link_inside(in_dir, p, errmsg));
    }
fail:
    return st;
}

/* Copies one known file of IN into tmpdir, when IN has it. */
static qt_status copy_one(const char *in_dir, bool follow_symlinks, const struct model_file *f,
                          const char *tmpdir, char *errmsg)
{
    qt_status st = QT_OK;
    char src[PATH_MAX], dst[PATH_MAX];
    int fd = -1;
    QT_CHECK(qt_path_join(src, sizeof src, in_dir, f->name) &&
                 qt_path_join(dst, sizeof dst, tmpdir, f->name),
             QT_ERR_ARG, "path too long: '%s/%s'", in_dir, f->name);
    struct stat lsb, sb;
    if (lstat(src, &lsb) != 0) { /* IN does not have it, or it cannot be looked at */
        if (errno == ENOENT) return QT_OK;
        return qt_set_err(errmsg, QT_ERR_IO, "'%s': %s", src, strerror(errno));
    }
    /* a symlink is followed only inside IN, or with --follow-symlinks */
    bool link = S_ISLNK(lsb.st_mode);
    if (link && !follow_symlinks) QT_TRY(check_link_inside(in_dir, src, errmsg));
    /* a regular file no larger than its reader accepts (no FIFO, no folder) */
    QT_TRY(qt_input_open(src, link ? 0 : O_NOFOLLOW, f->max_bytes, &fd, &sb, errmsg));
    QT_TRY(qt_input_copy(fd, &sb, src, dst, errmsg));
fail:
    if (fd >= 0) close(fd);
    return st;
}

qt_status qt_conv_copy_files(const char *in_dir, bool follow_symlinks, const char *tmpdir,
                             char *errmsg)
{
    qt_status st = QT_OK;
    for (size_t i = 0; i < N_MODEL_FILES; i++)
        QT_TRY(copy_one(in_dir, follow_symlinks, &MODEL_FILES[i], tmpdir, errmsg));
fail:
    return st;
}
