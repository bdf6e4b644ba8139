/* formats/modeldir.c: Hugging Face model folders: single or sharded
 * safetensors (rules I1-I6), config.json getters, the other files. */
#include "formats/modeldir.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/fsutil.h"
#include "formats/formats_internal.h"
#include "formats/json.h"

#define INDEX_NAME "model.safetensors.index.json"
#define SINGLE_NAME "model.safetensors"

typedef struct md_ref {
    size_t shard;
    const qt_st_tensor *t;
} md_ref;

/* One weight_map entry. */
typedef struct md_map {
    const char *tensor; /* borrowed from the index tree */
    const char *shard;
    size_t shard_idx;
} md_map;

struct qt_modeldir {
    char *dir;             /* owned: the folder */
    char *index_path;      /* owned, NULL when not sharded */
    size_t n_shards;
    char **shard_names;    /* (n_shards) owned */
    qt_st_reader **shards; /* (n_shards) owned */
    size_t n_tensors;
    md_ref *refs;          /* (n_tensors) unified order */
    md_ref *by_name;       /* (n_tensors) sorted by tensor name */
    char **files;          /* (n_files) owned */
    size_t n_files;
    char **strays;         /* (n_strays) owned */
    size_t n_strays;
    cJSON *config;         /* owned, NULL without config.json */
};

static const char *const rule_names[QT_MD_RULE_COUNT] = {
    [QT_MD_RULE_OK] = "ok",
    [QT_MD_RULE_IO] = "i/o error",
    [QT_MD_RULE_NO_WEIGHTS] = "no weights",
    [QT_MD_RULE_SHARD_INVALID] = "invalid shard",
    [QT_MD_RULE_MISSING_SHARD] = "missing shard",
    [QT_MD_RULE_TENSOR_NOT_IN_SHARD] = "tensor not in its shard",
    [QT_MD_RULE_UNASSIGNED_TENSOR] = "tensor not in the index",
    [QT_MD_RULE_DUPLICATE_TENSOR] = "tensor in two shards",
    [QT_MD_RULE_INDEX_JSON] = "index not valid json",
    [QT_MD_RULE_INDEX_SCHEMA] = "bad weight_map",
    [QT_MD_RULE_SHARD_NAME] = "bad shard name",
    [QT_MD_RULE_SHARD_ESCAPES] = "shard outside the folder",
    [QT_MD_RULE_CONFIG] = "bad config.json",
};

const char *qt_md_rule_name(qt_md_rule rule)
{
    return (int)rule >= 0 && rule < QT_MD_RULE_COUNT ? rule_names[rule] : "?";
}

#define MD_FAIL(rl, status, ...)                                  \
    do {                                                          \
        *rule = (rl);                                             \
        st = qt_set_err(errmsg, (status), __VA_ARGS__);           \
        goto fail;                                                \
    } while (0)

static char *join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = qt_malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_map_shard(const void *a, const void *b)
{
    const md_map *x = a, *y = b;
    int c = strcmp(x->shard, y->shard);
    return c ? c : strcmp(x->tensor, y->tensor);
}

static int cmp_map_tensor(const void *a, const void *b)
{
    return strcmp(((const md_map *)a)->tensor, ((const md_map *)b)->tensor);
}

static int cmp_ref_name(const void *a, const void *b)
{
    return strcmp(((const md_ref *)a)->t->name, ((const md_ref *)b)->t->name);
}

/* I6: a shard name must be a plain file name. */
static bool shard_name_ok(const char *s)
{
    return *s && !strchr(s, '/') && !strchr(s, '\\') && strcmp(s, ".") != 0 &&
           strcmp(s, "..") != 0;
}

/* I6: a shard that is a symlink must resolve inside the folder. Returns
 * QT_OK, or QT_ERR_FORMAT with *escapes set, or QT_ERR_IO. */
static qt_status check_inside(const char *dir, const char *file, bool *escapes)
{
    *escapes = false;
    struct stat sb;
    if (lstat(file, &sb) != 0) return QT_ERR_IO;
    if (!S_ISLNK(sb.st_mode)) return QT_OK;
    char *rd = realpath(dir, NULL), *rf = realpath(file, NULL);
    qt_status st = QT_OK;
    if (!rd || !rf) {
        st = QT_ERR_IO;
    } else {
        size_t n = strlen(rd);
        bool inside = strncmp(rf, rd, n) == 0 && (rf[n] == '/' || (n == 1 && rd[0] == '/'));
        if (!inside) {
            *escapes = true;
            st = QT_ERR_FORMAT;
        }
    }
    free(rd); /* realpath allocates with malloc */
    free(rf);
    return st;
}

static qt_status add_shard(qt_modeldir *md, const char *name, char *errmsg)
{
    qt_status st = QT_OK;
    char *copy = qt_strdup(name);
    QT_CHECK(copy, QT_ERR_NOMEM, "out of memory");
    md->shard_names[md->n_shards] = copy;
    md->shards[md->n_shards] = NULL;
    md->n_shards++;
    return QT_OK;
fail:
    return st;
}

/* Opens shard i (already named) with the I6 symlink check when in_folder. */
static qt_status open_shard(qt_modeldir *md, size_t i, const char *file, bool in_folder,
                            unsigned flags, qt_md_rule *rule, qt_st_rule *st_rule, char *errmsg)
{
    qt_status st = QT_OK;
    if (in_folder && !(flags & QT_MODELDIR_FOLLOW_SYMLINKS)) {
        bool escapes;
        qt_status cs = check_inside(md->dir, file, &escapes);
        if (escapes)
            MD_FAIL(QT_MD_RULE_SHARD_ESCAPES, QT_ERR_FORMAT,
                    "%s: shard '%s' is a symlink leading out of the model folder (I6)", md->dir,
                    md->shard_names[i]);
        if (cs != QT_OK)
            MD_FAIL(QT_MD_RULE_IO, QT_ERR_IO, "cannot resolve '%s': %s", file, strerror(errno));
    }
    st = qt_st_reader_open_ex(file, &md->shards[i], st_rule, errmsg);
    if (st != QT_OK) *rule = (st == QT_ERR_IO) ? QT_MD_RULE_IO : QT_MD_RULE_SHARD_INVALID;
fail:
    return st;
}

/* Reads and parses the index file: strict JSON without \u0000 escapes
 * (a shard name cut at the NUL would name another file). */
static qt_status parse_index(const char *ip, cJSON **tree, char *errmsg)
{
    char *buf = NULL;
    size_t n = 0;
    qt_status st = qt_file_read(ip, &buf, &n, QT_MODELDIR_INDEX_MAX, errmsg);
    if (st == QT_OK && qt_json_has_nul_escape(buf, n))
        st = qt_set_err(errmsg, QT_ERR_FORMAT, "%s: a string holds a \\u0000 escape", ip);
    if (st == QT_OK) st = qt_json_parse(buf, n, ip, tree, NULL, errmsg);
    qt_free(buf);
    return st;
}

/* Reads the index into maps (sorted by shard), fills md->shard_names. */
static qt_status read_index(qt_modeldir *md, unsigned flags, cJSON **tree, md_map **maps_out,
                            size_t *n_maps_out, qt_md_rule *rule, qt_st_rule *st_rule,
                            char *errmsg)
{
    qt_status st = QT_OK;
    md_map *maps = NULL;
    char *missing = NULL;
    const char *ip = md->index_path;
    st = parse_index(ip, tree, errmsg);
    if (st == QT_ERR_FORMAT) {
        *rule = QT_MD_RULE_INDEX_JSON;
        size_t l = errmsg ? strlen(errmsg) : 0;
        if (errmsg && l + 6 < QT_ERRMSG_SIZE) memcpy(errmsg + l, " (I5)", 6);
        goto fail;
    }
    if (st != QT_OK) {
        *rule = QT_MD_RULE_IO;
        goto fail;
    }
    const cJSON *wm = cJSON_IsObject(*tree)
                          ? cJSON_GetObjectItemCaseSensitive(*tree, "weight_map")
                          : NULL;
    if (!cJSON_IsObject(wm))
        MD_FAIL(QT_MD_RULE_INDEX_SCHEMA, QT_ERR_FORMAT, "%s: no \"weight_map\" object (I5)", ip);
    size_t n = 0;
    for (const cJSON *c = wm->child; c; c = c->next) n++;
    if (n == 0)
        MD_FAIL(QT_MD_RULE_INDEX_SCHEMA, QT_ERR_FORMAT, "%s: \"weight_map\" is empty (I5)", ip);
    maps = qt_malloc((n ? n : 1) * sizeof *maps);
    QT_CHECK(maps, QT_ERR_NOMEM, "%s: out of memory", ip);
    size_t i = 0;
    for (const cJSON *c = wm->child; c; c = c->next, i++) {
        if (!cJSON_IsString(c))
            MD_FAIL(QT_MD_RULE_INDEX_SCHEMA, QT_ERR_FORMAT,
                    "%s: tensor '%.100s': shard name is not a string (I5)", ip, c->string);
        if (!shard_name_ok(c->valuestring))
            MD_FAIL(QT_MD_RULE_SHARD_NAME, QT_ERR_FORMAT,
                    "%s: tensor '%.100s': shard name '%.100s' is not a plain file name (I6)", ip,
                    c->string, c->valuestring);
        maps[i].tensor = c->string;
        maps[i].shard = c->valuestring;
    }
    if (n) qsort(maps, n, sizeof *maps, cmp_map_shard);
    size_t n_unique = 0;
    for (i = 0; i < n; i++)
        if (i == 0 || strcmp(maps[i].shard, maps[i - 1].shard) != 0) n_unique++;
    md->shard_names = qt_calloc(n_unique ? n_unique : 1, sizeof *md->shard_names);
    md->shards = qt_calloc(n_unique ? n_unique : 1, sizeof *md->shards);
    QT_CHECK(md->shard_names && md->shards, QT_ERR_NOMEM, "%s: out of memory", ip);
    for (i = 0; i < n; i++) {
        if (i == 0 || strcmp(maps[i].shard, maps[i - 1].shard) != 0)
            QT_TRY(add_shard(md, maps[i].shard, errmsg));
        maps[i].shard_idx = md->n_shards - 1;
    }

    /* I1: list every missing shard */
    size_t n_missing = 0, mlen = 0, mcap = 160;
    missing = qt_malloc(mcap + 1);
    QT_CHECK(missing, QT_ERR_NOMEM, "%s: out of memory", ip);
    missing[0] = 0;
    for (i = 0; i < md->n_shards; i++) {
        char *file = join(md->dir, md->shard_names[i]);
        QT_CHECK(file, QT_ERR_NOMEM, "%s: out of memory", ip);
        struct stat sb;
        bool absent = lstat(file, &sb) != 0 || (stat(file, &sb) != 0);
        qt_free(file);
        if (!absent) continue;
        n_missing++;
        int k = snprintf(missing + mlen, mcap + 1 - mlen, "%s%s", mlen ? ", " : "",
                         md->shard_names[i]);
        if (k > 0) mlen = mlen + (size_t)k > mcap ? mcap : mlen + (size_t)k;
    }
    if (n_missing)
        MD_FAIL(QT_MD_RULE_MISSING_SHARD, QT_ERR_FORMAT, "%s: %zu of %zu shards missing: %s (I1)", ip,
                n_missing, md->n_shards, missing);
    for (i = 0; i < md->n_shards; i++) {
        char *file = join(md->dir, md->shard_names[i]);
        QT_CHECK(file, QT_ERR_NOMEM, "%s: out of memory", ip);
        st = open_shard(md, i, file, true, flags, rule, st_rule, errmsg);
        qt_free(file);
        if (st != QT_OK) goto fail;
    }
    qt_free(missing);
    *maps_out = maps;
    *n_maps_out = n;
    return QT_OK;
fail:
    qt_free(missing);
    qt_free(maps);
    return st;
}

/* I2 and I3 over the opened shards. */
static qt_status check_index(qt_modeldir *md, md_map *maps, size_t n, qt_md_rule *rule,
                             char *errmsg)
{
    qt_status st = QT_OK;
    const char *ip = md->index_path;
    for (size_t i = 0; i < n; i++) {
        if (!qt_st_reader_find(md->shards[maps[i].shard_idx], maps[i].tensor))
            MD_FAIL(QT_MD_RULE_TENSOR_NOT_IN_SHARD, QT_ERR_FORMAT,
                    "%s: tensor '%.100s' is mapped to '%s', which does not hold it (I2)", ip,
                    maps[i].tensor, maps[i].shard);
    }
    if (n) qsort(maps, n, sizeof *maps, cmp_map_tensor);
    for (size_t s = 0; s < md->n_shards; s++) {
        const qt_st_reader *r = md->shards[s];
        for (size_t k = 0; k < qt_st_reader_n_tensors(r); k++) {
            const qt_st_tensor *t = qt_st_reader_tensor(r, k);
            md_map key = {.tensor = t->name};
            const md_map *m = bsearch(&key, maps, n, sizeof *maps, cmp_map_tensor);
            if (!m)
                MD_FAIL(QT_MD_RULE_UNASSIGNED_TENSOR, QT_ERR_FORMAT,
                        "%s: shard '%s' holds tensor '%.100s', which the index does not list (I3)",
                        ip, md->shard_names[s], t->name);
            if (m->shard_idx != s)
                MD_FAIL(QT_MD_RULE_DUPLICATE_TENSOR, QT_ERR_FORMAT,
                        "%s: tensor '%.100s' is in both '%s' and '%s' (I3)", ip, t->name,
                        md->shard_names[s], m->shard);
        }
    }
    return QT_OK;
fail:
    return st;
}

/* Lists the other files and the stray *.safetensors of the folder. */
static qt_status list_files(qt_modeldir *md, char *errmsg)
{
    qt_status st = QT_OK;
    DIR *d = opendir(md->dir);
    size_t cap_f = 0, cap_s = 0;
    char *file = NULL;
    QT_CHECK(d, QT_ERR_IO, "cannot list '%s': %s", md->dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *name = e->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) continue;
        if (md->index_path && strcmp(name, INDEX_NAME) == 0) continue;
        file = join(md->dir, name);
        QT_CHECK(file, QT_ERR_NOMEM, "out of memory");
        struct stat sb;
        bool regular = stat(file, &sb) == 0 && S_ISREG(sb.st_mode);
        qt_free(file);
        file = NULL;
        if (!regular) continue;
        char ***list = &md->files;
        size_t *count = &md->n_files, *cap = &cap_f;
        if (ends_with(name, ".safetensors")) {
            bool used = false;
            for (size_t i = 0; i < md->n_shards && !used; i++)
                used = strcmp(md->shard_names[i], name) == 0;
            if (used) continue;
            list = &md->strays;
            count = &md->n_strays;
            cap = &cap_s;
        } else if (strcmp(name, INDEX_NAME) == 0) {
            continue; /* an unused index beside model.safetensors: not copied */
        }
        if (*count == *cap) {
            size_t nc = *cap ? 2 * *cap : 16;
            char **p = qt_realloc(*list, nc * sizeof *p);
            QT_CHECK(p, QT_ERR_NOMEM, "out of memory");
            *list = p;
            *cap = nc;
        }
        (*list)[*count] = qt_strdup(name);
        QT_CHECK((*list)[*count], QT_ERR_NOMEM, "out of memory");
        (*count)++;
    }
    if (md->n_files) qsort(md->files, md->n_files, sizeof *md->files, cmp_str);
    if (md->n_strays) qsort(md->strays, md->n_strays, sizeof *md->strays, cmp_str);
fail:
    qt_free(file);
    if (d) closedir(d);
    return st;
}

qt_status qt_modeldir_open_ex(const char *path, unsigned flags, qt_modeldir **out,
                              qt_md_rule *rule, qt_st_rule *st_rule, char *errmsg)
{
    qt_status st = QT_OK;
    qt_md_rule rdummy;
    qt_st_rule sdummy;
    if (!rule) rule = &rdummy;
    if (!st_rule) st_rule = &sdummy;
    *rule = QT_MD_RULE_IO;
    *st_rule = QT_ST_RULE_OK;
    *out = NULL;
    cJSON *index = NULL;
    md_map *maps = NULL;
    size_t n_maps = 0;
    char *file = NULL;
    qt_modeldir *md = qt_calloc(1, sizeof *md);
    QT_CHECK(md, QT_ERR_NOMEM, "out of memory");

    struct stat sb;
    QT_CHECK(stat(path, &sb) == 0, QT_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    const char *single = NULL; /* shard name in single mode */
    bool in_folder = true;
    if (S_ISDIR(sb.st_mode)) {
        md->dir = qt_strdup(path);
        QT_CHECK(md->dir, QT_ERR_NOMEM, "out of memory");
        file = join(path, SINGLE_NAME);
        QT_CHECK(file, QT_ERR_NOMEM, "out of memory");
        struct stat s2;
        if (lstat(file, &s2) == 0) {
            single = SINGLE_NAME;
        } else {
            qt_free(file);
            file = join(path, INDEX_NAME);
            QT_CHECK(file, QT_ERR_NOMEM, "out of memory");
            if (stat(file, &s2) != 0)
                MD_FAIL(QT_MD_RULE_NO_WEIGHTS, QT_ERR_IO,
                        "'%s' holds neither %s nor %s", path, SINGLE_NAME, INDEX_NAME);
            md->index_path = file;
            file = NULL;
        }
    } else if (S_ISREG(sb.st_mode)) {
        const char *slash = strrchr(path, '/');
        const char *base = slash ? slash + 1 : path;
        if (slash) {
            size_t dl = slash == path ? 1 : (size_t)(slash - path);
            md->dir = qt_malloc(dl + 1);
            QT_CHECK(md->dir, QT_ERR_NOMEM, "out of memory");
            memcpy(md->dir, path, dl);
            md->dir[dl] = 0;
        } else {
            md->dir = qt_strdup(".");
            QT_CHECK(md->dir, QT_ERR_NOMEM, "out of memory");
        }
        if (ends_with(base, ".index.json")) {
            md->index_path = qt_strdup(path);
            QT_CHECK(md->index_path, QT_ERR_NOMEM, "out of memory");
        } else {
            single = base;
            in_folder = false;
            file = qt_strdup(path);
            QT_CHECK(file, QT_ERR_NOMEM, "out of memory");
        }
    } else {
        MD_FAIL(QT_MD_RULE_IO, QT_ERR_IO, "'%s' is neither a file nor a folder", path);
    }

    if (single) {
        md->shard_names = qt_calloc(1, sizeof *md->shard_names);
        md->shards = qt_calloc(1, sizeof *md->shards);
        QT_CHECK(md->shard_names && md->shards, QT_ERR_NOMEM, "out of memory");
        QT_TRY(add_shard(md, single, errmsg));
        QT_TRY(open_shard(md, 0, file, in_folder, flags, rule, st_rule, errmsg));
    } else {
        QT_TRY(read_index(md, flags, &index, &maps, &n_maps, rule, st_rule, errmsg));
        QT_TRY(check_index(md, maps, n_maps, rule, errmsg));
    }

    /* the unified view */
    size_t total = 0;
    for (size_t s = 0; s < md->n_shards; s++) total += qt_st_reader_n_tensors(md->shards[s]);
    md->refs = qt_malloc((total ? total : 1) * sizeof *md->refs);
    md->by_name = qt_malloc((total ? total : 1) * sizeof *md->by_name);
    QT_CHECK(md->refs && md->by_name, QT_ERR_NOMEM, "out of memory");
    size_t k = 0;
    for (size_t s = 0; s < md->n_shards; s++)
        for (size_t i = 0; i < qt_st_reader_n_tensors(md->shards[s]); i++) {
            md->refs[k].shard = s;
            md->refs[k].t = qt_st_reader_tensor(md->shards[s], i);
            k++;
        }
    md->n_tensors = total;
    if (total) {
        memcpy(md->by_name, md->refs, total * sizeof *md->refs);
        qsort(md->by_name, total, sizeof *md->by_name, cmp_ref_name);
    }

    /* config.json */
    qt_free(file);
    file = join(md->dir, "config.json");
    QT_CHECK(file, QT_ERR_NOMEM, "out of memory");
    if (stat(file, &sb) == 0) {
        st = qt_json_parse_file(file, QT_MODELDIR_CONFIG_MAX, &md->config, errmsg);
        if (st != QT_OK) {
            *rule = st == QT_ERR_FORMAT ? QT_MD_RULE_CONFIG : QT_MD_RULE_IO;
            goto fail;
        }
        if (!cJSON_IsObject(md->config))
            MD_FAIL(QT_MD_RULE_CONFIG, QT_ERR_FORMAT, "%s: not a JSON object", file);
    }
    *rule = QT_MD_RULE_IO;
    QT_TRY(list_files(md, errmsg));

    qt_free(file);
    qt_free(maps);
    cJSON_Delete(index);
    *rule = QT_MD_RULE_OK;
    *out = md;
    return QT_OK;
fail:
    qt_free(file);
    qt_free(maps);
    cJSON_Delete(index);
    qt_modeldir_close(md);
    return st;
}

qt_status qt_modeldir_open(const char *path, qt_modeldir **out, char *errmsg)
{
    return qt_modeldir_open_ex(path, 0, out, NULL, NULL, errmsg);
}

void qt_modeldir_close(qt_modeldir *md)
{
    if (!md) return;
    for (size_t i = 0; i < md->n_shards; i++) {
        qt_st_reader_close(md->shards[i]);
        qt_free(md->shard_names[i]);
    }
    qt_free(md->shards);
    qt_free(md->shard_names);
    for (size_t i = 0; i < md->n_files; i++) qt_free(md->files[i]);
    qt_free(md->files);
    for (size_t i = 0; i < md->n_strays; i++) qt_free(md->strays[i]);
    qt_free(md->strays);
    qt_free(md->refs);
    qt_free(md->by_name);
    qt_free(md->dir);
    qt_free(md->index_path);
    cJSON_Delete(md->config);
    memset(md, 0, sizeof *md);
    qt_free(md);
}

/* ---- accessors --------------------------------------------------------- */

const char *qt_modeldir_path(const qt_modeldir *md) { return md->dir; }
bool qt_modeldir_is_sharded(const qt_modeldir *md) { return md->index_path != NULL; }
const char *qt_modeldir_index_path(const qt_modeldir *md) { return md->index_path; }
size_t qt_modeldir_n_shards(const qt_modeldir *md) { return md->n_shards; }

qt_st_reader *qt_modeldir_shard(const qt_modeldir *md, size_t i)
{
    return i < md->n_shards ? md->shards[i] : NULL;
}

const char *qt_modeldir_shard_name(const qt_modeldir *md, size_t i)
{
    return i < md->n_shards ? md->shard_names[i] : NULL;
}

size_t qt_modeldir_n_tensors(const qt_modeldir *md) { return md->n_tensors; }

const qt_st_tensor *qt_modeldir_tensor(const qt_modeldir *md, size_t i, qt_st_reader **reader)
{
    if (i >= md->n_tensors) {
        if (reader) *reader = NULL;
        return NULL;
    }
    if (reader) *reader = md->shards[md->refs[i].shard];
    return md->refs[i].t;
}

const qt_st_tensor *qt_modeldir_find(const qt_modeldir *md, const char *name,
                                     qt_st_reader **reader)
{
    size_t lo = 0, hi = md->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, md->by_name[mid].t->name);
        if (c == 0) {
            if (reader) *reader = md->shards[md->by_name[mid].shard];
            return md->by_name[mid].t;
        }
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    if (reader) *reader = NULL;
    return NULL;
}

size_t qt_modeldir_n_files(const qt_modeldir *md) { return md->n_files; }

const char *qt_modeldir_file(const qt_modeldir *md, size_t i)
{
    return i < md->n_files ? md->files[i] : NULL;
}

size_t qt_modeldir_n_strays(const qt_modeldir *md) { return md->n_strays; }

const char *qt_modeldir_stray(const qt_modeldir *md, size_t i)
{
    return i < md->n_strays ? md->strays[i] : NULL;
}

const cJSON *qt_modeldir_config_json(const qt_modeldir *md)
{
    return md->config;
}

/* ---- config.json --------------------------------------------------------- */

/* The value at a dotted key, or NULL (absent or null). */
static const cJSON *lookup(const qt_modeldir *md, const char *key)
{
    const cJSON *node = md->config;
    char seg[256];
    while (node && *key) {
        const char *dot = strchr(key, '.');
        size_t n = dot ? (size_t)(dot - key) : strlen(key);
        if (n >= sizeof seg) return NULL;
        memcpy(seg, key, n);
        seg[n] = 0;
        if (cJSON_IsArray(node) && n > 0 && strspn(seg, "0123456789") == n && n < 9)
            node = cJSON_GetArrayItem(node, atoi(seg)); /* "architectures.0" */
        else if (cJSON_IsObject(node))
            node = cJSON_GetObjectItemCaseSensitive(node, seg);
        else
            return NULL;
        key = dot ? dot + 1 : key + n;
    }
    return node && !cJSON_IsNull(node) ? node : NULL;
}

bool qt_modeldir_has_config(const qt_modeldir *md) { return md->config != NULL; }

bool qt_modeldir_config_has(const qt_modeldir *md, const char *key)
{
    return lookup(md, key) != NULL;
}

qt_status qt_modeldir_config_int(const qt_modeldir *md, const char *key, int64_t *out)
{
    const cJSON *v = lookup(md, key);
    if (!v) return QT_ERR_ARG;
    if (!cJSON_IsNumber(v)) return QT_ERR_FORMAT;
    double d = v->valuedouble;
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) || d != floor(d))
        return QT_ERR_FORMAT;
    *out = (int64_t)d;
    return QT_OK;
}

qt_status qt_modeldir_config_float(const qt_modeldir *md, const char *key, double *out)
{
    const cJSON *v = lookup(md, key);
    if (!v) return QT_ERR_ARG;
    if (!cJSON_IsNumber(v)) return QT_ERR_FORMAT;
    *out = v->valuedouble;
    return QT_OK;
}

qt_status qt_modeldir_config_str(const qt_modeldir *md, const char *key, const char **out)
{
    const cJSON *v = lookup(md, key);
    if (!v) return QT_ERR_ARG;
    if (!cJSON_IsString(v)) return QT_ERR_FORMAT;
    *out = v->valuestring;
    return QT_OK;
}

qt_status qt_modeldir_config_bool(const qt_modeldir *md, const char *key, bool *out)
{
    const cJSON *v = lookup(md, key);
    if (!v) return QT_ERR_ARG;
    if (!cJSON_IsBool(v)) return QT_ERR_FORMAT;
    *out = cJSON_IsTrue(v);
    return QT_OK;
}

/* Appends to buf at *len (truncating safely). */
static void appendf(char *buf, size_t n, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void appendf(char *buf, size_t n, size_t *len, const char *fmt, ...)
{
    if (*len + 1 >= n) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf + *len, n - *len, fmt, ap);
    va_end(ap);
    if (k > 0) *len = *len + (size_t)k >= n ? n - 1 : *len + (size_t)k;
}

void qt_modeldir_architecture_line(const qt_modeldir *md, char *buf, size_t n)
{
    if (!n) return;
    buf[0] = 0;
    if (!md->config) {
        snprintf(buf, n, "no config.json");
        return;
    }
    size_t len = 0;
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(md->config, "architectures");
    const cJSON *a0 = cJSON_IsArray(archs) ? cJSON_GetArrayItem(archs, 0) : NULL;
    const char *arch = NULL;
    if (cJSON_IsString(a0)) arch = a0->valuestring;
    else if (qt_modeldir_config_str(md, "model_type", &arch) != QT_OK) arch = "unknown";
    appendf(buf, n, &len, "%.80s:", arch);
    const char *sep = " ";
    static const struct {
        const char *key, *before, *after;
    } ints[] = {
        {"hidden_size", "hidden ", ""},
        {"intermediate_size", "intermediate ", ""},
        {"num_hidden_layers", "", " layers"},
        {"num_attention_heads", "", " heads"},
    };
    int64_t v;
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        if (qt_modeldir_config_int(md, ints[i].key, &v) != QT_OK) continue;
        appendf(buf, n, &len, "%s", sep);
        appendf(buf, n, &len, "%s%lld%s", ints[i].before, (long long)v, ints[i].after);
        sep = ", ";
        if (i == 3 && qt_modeldir_config_int(md, "num_key_value_heads", &v) == QT_OK)
            appendf(buf, n, &len, " (%lld kv)", (long long)v);
    }
    if (qt_modeldir_config_int(md, "vocab_size", &v) == QT_OK) {
        appendf(buf, n, &len, "%svocab %lld", sep, (long long)v);
        sep = ", ";
    }
    if (qt_modeldir_config_int(md, "max_position_embeddings", &v) == QT_OK) {
        appendf(buf, n, &len, "%sctx %lld", sep, (long long)v);
        sep = ", ";
    }
    bool tied;
    if (qt_modeldir_config_bool(md, "tie_word_embeddings", &tied) == QT_OK && tied) {
        appendf(buf, n, &len, "%stied embeddings", sep);
        sep = ", ";
    }
    const char *dt;
    if (qt_modeldir_config_str(md, "torch_dtype", &dt) == QT_OK ||
        qt_modeldir_config_str(md, "dtype", &dt) == QT_OK) {
        appendf(buf, n, &len, "%s%.32s", sep, dt);
        sep = ", ";
    }
    const char *qm;
    if (qt_modeldir_config_str(md, "quantization_config.quant_method", &qm) == QT_OK) {
        appendf(buf, n, &len, "%squantized (%.32s", sep, qm);
        const char *qt4;
        bool b4 = false, b8 = false;
        qt_modeldir_config_bool(md, "quantization_config.load_in_4bit", &b4);
        qt_modeldir_config_bool(md, "quantization_config.load_in_8bit", &b8);
        if (b4 && qt_modeldir_config_str(md, "quantization_config.bnb_4bit_quant_type", &qt4) ==
                      QT_OK)
            appendf(buf, n, &len, " %.16s", qt4);
        else if (b8)
            appendf(buf, n, &len, " int8");
        appendf(buf, n, &len, ")");
    }
}
