/* formats/manifest.c: batch-conversion manifests (models x schemes -> jobs). */
#include "formats/manifest.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/json.h"

void qt_manifest_free(qt_manifest *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->n_models; i++) {
        qt_free(m->models[i].name);
        qt_free(m->models[i].path);
    }
    for (size_t i = 0; i < m->n_schemes; i++) {
        qt_manifest_scheme *s = &m->schemes[i];
        qt_free(s->name);
        qt_free(s->scheme);
        qt_free(s->compute_dtype);
        for (size_t k = 0; k < s->n_skip; k++) qt_free(s->skip[k]);
        qt_free(s->skip);
        qt_free(s->recipe);
        qt_free(s->max_shard_size);
    }
    qt_free(m->models);
    qt_free(m->schemes);
    qt_free(m->outputs);
    qt_free(m->dir);
    qt_free(m->calib_text);
    qt_free(m->bench_text);
    qt_free(m);
}

size_t qt_manifest_n_jobs(const qt_manifest *m) { return m->n_models * m->n_schemes; }

/* A string value usable on one line of a tab-separated plan: non-empty and
 * without tab, CR or LF. */
static bool plain_string(const cJSON *v)
{
    return cJSON_IsString(v) && v->valuestring[0] && !strpbrk(v->valuestring, "\t\r\n");
}

/* A name that can go into a path component: no '/', no braces, no control
 * characters, not "." or "..". */
static bool good_name(const char *s)
{
    if (!*s || !strcmp(s, ".") || !strcmp(s, "..")) return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f || *p == '/' || *p == '{' || *p == '}') return false;
    return true;
}

/* dir + "/" + rel, or a copy of rel when it is absolute or dir is empty. */
static char *resolve(const char *dir, const char *rel)
{
    if (rel[0] == '/' || !dir[0]) return qt_strdup(rel);
    size_t a = strlen(dir), b = strlen(rel);
    char *p = qt_malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, rel, b + 1);
    return p;
}

/* Checks that object o has only keys from the NULL-terminated list. */
static const char *unknown_key(const cJSON *o, const char *const *keys)
{
    for (const cJSON *k = o->child; k; k = k->next) {
        bool ok = false;
        for (const char *const *w = keys; *w; w++) ok = ok || !strcmp(k->string, *w);
        if (!ok) return k->string;
    }
    return NULL;
}

static const char *last_component(const char *path, size_t *len)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    size_t s = n;
    while (s > 0 && path[s - 1] != '/') s--;
    *len = n - s;
    return path + s;
}

static qt_status load_models(const char *path, const char *dir, const cJSON *arr, qt_manifest *m,
                             char *errmsg)
{
    static const char *const keys[] = {"name", "path", NULL};
    qt_status st = QT_OK;
    int n = cJSON_GetArraySize(arr);
    QT_CHECK(n >= 1, QT_ERR_FORMAT, "manifest '%s': \"models\" is empty", path);
    QT_CHECK(n <= QT_MANIFEST_MAX_ITEMS, QT_ERR_FORMAT,
             "manifest '%s': %d models, more than %d", path, n, QT_MANIFEST_MAX_ITEMS);
    m->models = qt_calloc((size_t)n, sizeof *m->models);
    QT_CHECK(m->models != NULL, QT_ERR_NOMEM, "out of memory");
    int i = 0;
    for (const cJSON *it = arr->child; it; it = it->next, i++) {
        const cJSON *p = it, *nm = NULL;
        if (cJSON_IsObject(it)) {
            const char *bad = unknown_key(it, keys);
            QT_CHECK(!bad, QT_ERR_FORMAT, "manifest '%s': model %d has unknown key '%s'", path, i,
                     bad);
            p = cJSON_GetObjectItemCaseSensitive(it, "path");
            nm = cJSON_GetObjectItemCaseSensitive(it, "name");
        }
        QT_CHECK(plain_string(p), QT_ERR_FORMAT,
                 "manifest '%s': model %d: expected a path string or an object with a \"path\" "
                 "string (non-empty, no tab or newline)",
                 path, i);
        qt_manifest_model *md = &m->models[i];
        m->n_models = (size_t)i + 1;
        if (nm) {
            QT_CHECK(cJSON_IsString(nm) && good_name(nm->valuestring), QT_ERR_FORMAT,
                     "manifest '%s': model %d: \"name\" must be a non-empty string without '/', "
                     "'{', '}' or control characters",
                     path, i);
            md->name = qt_strdup(nm->valuestring);
        } else {
            size_t len;
            const char *base = last_component(p->valuestring, &len);
            md->name = qt_malloc(len + 1);
            if (md->name) {
                memcpy(md->name, base, len);
                md->name[len] = 0;
                QT_CHECK(good_name(md->name), QT_ERR_FORMAT,
                         "manifest '%s': model %d: path '%s' gives no usable name; add \"name\"",
                         path, i, p->valuestring);
            }
        }
        md->path = resolve(dir, p->valuestring);
        QT_CHECK(md->name && md->path, QT_ERR_NOMEM, "out of memory");
        for (int j = 0; j < i; j++)
            QT_CHECK(strcmp(m->models[j].name, md->name) != 0, QT_ERR_FORMAT,
                     "manifest '%s': models %d and %d are both named '%s'", path, j, i, md->name);
    }
fail:
    return st;
}

static qt_status load_scheme(const char *path, const char *dir, const cJSON *it, int i,
                             qt_manifest_scheme *s, char *errmsg)
{
    static const char *const keys[] = {"scheme",  "name",   "block",          "double_quant",
                                       "compute_dtype", "skip", "recipe", "max_shard_size",
                                       NULL};
    qt_status st = QT_OK;
    const cJSON *sc = it, *nm = NULL;
    if (cJSON_IsObject(it)) {
        const char *bad = unknown_key(it, keys);
        QT_CHECK(!bad, QT_ERR_FORMAT, "manifest '%s': scheme %d has unknown key '%s'", path, i,
                 bad);
        sc = cJSON_GetObjectItemCaseSensitive(it, "scheme");
        nm = cJSON_GetObjectItemCaseSensitive(it, "name");
    }
    QT_CHECK(cJSON_IsString(sc) && good_name(sc->valuestring), QT_ERR_FORMAT,
             "manifest '%s': scheme %d: expected a scheme name or an object with a \"scheme\" "
             "string",
             path, i);
    if (nm)
        QT_CHECK(cJSON_IsString(nm) && good_name(nm->valuestring), QT_ERR_FORMAT,
                 "manifest '%s': scheme %d: \"name\" must be a non-empty string without '/', "
                 "'{', '}' or control characters",
                 path, i);
    s->scheme = qt_strdup(sc->valuestring);
    s->name = qt_strdup(nm ? nm->valuestring : sc->valuestring);
    QT_CHECK(s->scheme && s->name, QT_ERR_NOMEM, "out of memory");
    if (!cJSON_IsObject(it)) return QT_OK;

    const cJSON *b = cJSON_GetObjectItemCaseSensitive(it, "block");
    if (b) {
        QT_CHECK(cJSON_IsNumber(b) && b->valuedouble >= 1 && b->valuedouble <= (1 << 20) &&
                     b->valuedouble == floor(b->valuedouble),
                 QT_ERR_FORMAT, "manifest '%s': scheme %d: \"block\" must be an integer in [1, %d]",
                 path, i, 1 << 20);
        s->block = (int64_t)b->valuedouble;
    }
    const cJSON *dq = cJSON_GetObjectItemCaseSensitive(it, "double_quant");
    if (dq) {
        QT_CHECK(cJSON_IsBool(dq), QT_ERR_FORMAT,
                 "manifest '%s': scheme %d: \"double_quant\" must be true or false", path, i);
        s->no_double_quant = cJSON_IsFalse(dq);
    }
    const cJSON *cd = cJSON_GetObjectItemCaseSensitive(it, "compute_dtype");
    if (cd) {
        QT_CHECK(plain_string(cd), QT_ERR_FORMAT,
                 "manifest '%s': scheme %d: \"compute_dtype\" must be a string", path, i);
        s->compute_dtype = qt_strdup(cd->valuestring);
        QT_CHECK(s->compute_dtype, QT_ERR_NOMEM, "out of memory");
    }
    const cJSON *rc = cJSON_GetObjectItemCaseSensitive(it, "recipe");
    if (rc) {
        QT_CHECK(plain_string(rc), QT_ERR_FORMAT,
                 "manifest '%s': scheme %d: \"recipe\" must be a path string", path, i);
        s->recipe = resolve(dir, rc->valuestring);
        QT_CHECK(s->recipe, QT_ERR_NOMEM, "out of memory");
    }
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(it, "max_shard_size");
    if (ms) {
        char num[32];
        if (cJSON_IsNumber(ms)) {
            QT_CHECK(ms->valuedouble >= 1 && ms->valuedouble <= 1e18 &&
                         ms->valuedouble == floor(ms->valuedouble),
                     QT_ERR_FORMAT,
                     "manifest '%s': scheme %d: \"max_shard_size\" must be a positive integer "
                     "or a string such as \"2G\"",
                     path, i);
            snprintf(num, sizeof num, "%.0f", ms->valuedouble);
        } else {
            QT_CHECK(plain_string(ms) && strlen(ms->valuestring) < sizeof num, QT_ERR_FORMAT,
                     "manifest '%s': scheme %d: \"max_shard_size\" must be a positive integer "
                     "or a string such as \"2G\"",
                     path, i);
            snprintf(num, sizeof num, "%s", ms->valuestring);
        }
        s->max_shard_size = qt_strdup(num);
        QT_CHECK(s->max_shard_size, QT_ERR_NOMEM, "out of memory");
    }
    const cJSON *sk = cJSON_GetObjectItemCaseSensitive(it, "skip");
    if (sk) {
        QT_CHECK(cJSON_IsArray(sk), QT_ERR_FORMAT,
                 "manifest '%s': scheme %d: \"skip\" must be an array of globs", path, i);
        int n = cJSON_GetArraySize(sk);
        QT_CHECK(n <= QT_MANIFEST_MAX_ITEMS, QT_ERR_FORMAT,
                 "manifest '%s': scheme %d: more than %d skip globs", path, i,
                 QT_MANIFEST_MAX_ITEMS);
        s->skip = qt_calloc((size_t)n + 1, sizeof *s->skip);
        QT_CHECK(s->skip, QT_ERR_NOMEM, "out of memory");
        int k = 0;
        for (const cJSON *g = sk->child; g; g = g->next, k++) {
            QT_CHECK(plain_string(g), QT_ERR_FORMAT,
                     "manifest '%s': scheme %d: skip %d must be a non-empty string", path, i, k);
            s->skip[k] = qt_strdup(g->valuestring);
            QT_CHECK(s->skip[k], QT_ERR_NOMEM, "out of memory");
            s->n_skip = (size_t)k + 1;
        }
    }
fail:
    return st;
}

static qt_status load_schemes(const char *path, const char *dir, const cJSON *arr, qt_manifest *m,
                              char *errmsg)
{
    qt_status st = QT_OK;
    int n = cJSON_GetArraySize(arr);
    QT_CHECK(n >= 1, QT_ERR_FORMAT, "manifest '%s': \"schemes\" is empty", path);
    QT_CHECK(n <= QT_MANIFEST_MAX_ITEMS, QT_ERR_FORMAT,
             "manifest '%s': %d schemes, more than %d", path, n, QT_MANIFEST_MAX_ITEMS);
    m->schemes = qt_calloc((size_t)n, sizeof *m->schemes);
    QT_CHECK(m->schemes != NULL, QT_ERR_NOMEM, "out of memory");
    int i = 0;
    for (const cJSON *it = arr->child; it; it = it->next, i++) {
        m->n_schemes = (size_t)i + 1;
        QT_TRY(load_scheme(path, dir, it, i, &m->schemes[i], errmsg));
        for (int j = 0; j < i; j++)
            QT_CHECK(strcmp(m->schemes[j].name, m->schemes[i].name) != 0, QT_ERR_FORMAT,
                     "manifest '%s': schemes %d and %d are both named '%s' (give one a \"name\")",
                     path, j, i, m->schemes[i].name);
    }
fail:
    return st;
}

static qt_status opt_path(const char *path, const char *dir, const cJSON *root, const char *key,
                          char **out, char *errmsg)
{
    qt_status st = QT_OK;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v) return QT_OK;
    QT_CHECK(plain_string(v), QT_ERR_FORMAT,
             "manifest '%s': \"%s\" must be a path string (non-empty, no tab or newline)", path,
             key);
    *out = resolve(dir, v->valuestring);
    QT_CHECK(*out, QT_ERR_NOMEM, "out of memory");
fail:
    return st;
}

/* The files a job writes beside OUT (scripts/qtool-batch reads this table
 * from the plan's "#file" lines): kind, suffix appended to OUT. */
static const char *const job_files[][2] = {
    {"log", ".log"},
    {"report", ".report.json"},
    {"bench", ".bench.json"},
    {"bench_tmp", ".bench.json.tmp"},
};
#define N_JOB_FILES (sizeof job_files / sizeof *job_files)

size_t qt_manifest_n_job_files(void) { return N_JOB_FILES; }

const char *qt_manifest_job_file(size_t i, const char **kind)
{
    if (i >= N_JOB_FILES) return NULL;
    if (kind) *kind = job_files[i][0];
    return job_files[i][1];
}

/* One file a job writes: OUT itself (file == N_JOB_FILES) or OUT + the
 * suffix of job_files[file]. */
typedef struct job_path {
    char *path;
    size_t job, file;
} job_path;

static int cmp_job_path(const void *a, const void *b)
{
    const job_path *x = a, *y = b;
    int c = strcmp(x->path, y->path);
    return c ? c : (x->job > y->job) - (x->job < y->job);
}

static const char *file_kind(size_t file) { return file == N_JOB_FILES ? "output" : job_files[file][0]; }

/* Every file of job k into ps[0 .. N_JOB_FILES]: OUT, then OUT + suffix. */
static qt_status job_paths(const qt_manifest *m, size_t k, job_path *ps)
{
    char *out;
    qt_status st = qt_manifest_job_output(m, k, &out);
    if (st != QT_OK) return st;
    size_t n = strlen(out);
    ps[0] = (job_path){out, k, N_JOB_FILES};
    for (size_t f = 0; f < N_JOB_FILES; f++) {
        size_t ls = strlen(job_files[f][1]);
        char *p = qt_malloc(n + ls + 1);
        if (!p) return QT_ERR_NOMEM;
        memcpy(p, out, n);
        memcpy(p + n, job_files[f][1], ls + 1);
        ps[1 + f] = (job_path){p, k, f};
    }
    return QT_OK;
}

/* Refuses two jobs whose files would be the same path: one job's output,
 * log, report or bench file is another's (shards included: the check runs
 * on the whole manifest). */
static qt_status check_outputs(const char *path, const qt_manifest *m, char *errmsg)
{
    qt_status st = QT_OK;
    const size_t per = N_JOB_FILES + 1, n = qt_manifest_n_jobs(m) * per;
    job_path *ps = qt_calloc(n, sizeof *ps);
    QT_CHECK(ps, QT_ERR_NOMEM, "out of memory");
    /* 1. every file of every job */
    for (size_t k = 0; k < qt_manifest_n_jobs(m); k++) QT_TRY(job_paths(m, k, ps + k * per));
    /* 2. sorted by path, a collision is two neighbours */
    qsort(ps, n, sizeof *ps, cmp_job_path);
    for (size_t i = 1; i < n; i++) {
        const job_path *a = &ps[i - 1], *b = &ps[i];
        if (strcmp(a->path, b->path)) continue;
        const size_t ns = m->n_schemes;
        QT_CHECK(false, QT_ERR_FORMAT,
                 "manifest '%s': '%s' is written twice: as the %s of job %zu (model '%s', "
                 "scheme '%s') and as the %s of job %zu (model '%s', scheme '%s'); rename a model "
                 "or a scheme",
                 path, a->path, file_kind(a->file), a->job, m->models[a->job / ns].name,
                 m->schemes[a->job % ns].name, file_kind(b->file), b->job,
                 m->models[b->job / ns].name, m->schemes[b->job % ns].name);
    }
fail:
    if (ps)
        for (size_t i = 0; i < n; i++) qt_free(ps[i].path);
    qt_free(ps);
    if (st == QT_ERR_NOMEM) qt_set_err(errmsg, st, "out of memory");
    return st;
}

qt_status qt_manifest_load(const char *path, qt_manifest **out, char *errmsg)
{
    static const char *const keys[] = {"outputs", "models", "schemes", "calib_text", "bench_text",
                                       NULL};
    qt_status st = QT_OK;
    cJSON *root = NULL;
    qt_manifest *m = NULL;
    char *dir = NULL;
    *out = NULL;
    QT_TRY(qt_json_parse_file(path, QT_MANIFEST_MAX_BYTES, &root, errmsg));
    QT_CHECK(cJSON_IsObject(root), QT_ERR_FORMAT,
             "manifest '%s': expected an object with \"models\" and \"schemes\" arrays", path);
    const char *bad = unknown_key(root, keys);
    QT_CHECK(!bad, QT_ERR_FORMAT,
             "manifest '%s': unknown key '%s' (known: outputs, models, schemes, calib_text, "
             "bench_text)",
             path, bad);
    const cJSON *models = cJSON_GetObjectItemCaseSensitive(root, "models");
    const cJSON *schemes = cJSON_GetObjectItemCaseSensitive(root, "schemes");
    const cJSON *outputs = cJSON_GetObjectItemCaseSensitive(root, "outputs");
    QT_CHECK(cJSON_IsArray(models), QT_ERR_FORMAT, "manifest '%s': needs a \"models\" array",
             path);
    QT_CHECK(cJSON_IsArray(schemes), QT_ERR_FORMAT, "manifest '%s': needs a \"schemes\" array",
             path);
    if (outputs) {
        QT_CHECK(plain_string(outputs), QT_ERR_FORMAT,
                 "manifest '%s': \"outputs\" must be a path pattern string", path);
        QT_CHECK(strstr(outputs->valuestring, "{model}") && strstr(outputs->valuestring, "{scheme}"),
                 QT_ERR_FORMAT,
                 "manifest '%s': \"outputs\" '%s' must contain both {model} and {scheme}", path,
                 outputs->valuestring);
        for (const char *p = outputs->valuestring; (p = strchr(p, '{')); p++)
            QT_CHECK(!strncmp(p, "{model}", 7) || !strncmp(p, "{scheme}", 8), QT_ERR_FORMAT,
                     "manifest '%s': \"outputs\": unknown placeholder at '%.20s' (known: {model}, "
                     "{scheme})",
                     path, p);
    }

    dir = qt_strdup(path);
    QT_CHECK(dir, QT_ERR_NOMEM, "out of memory");
    char *slash = strrchr(dir, '/');
    if (slash) slash == dir ? (void)(slash[1] = 0) : (void)(*slash = 0);
    else strcpy(dir, "."); /* "./NAME": a name starting with '-' is not an option */

    m = qt_calloc(1, sizeof *m);
    QT_CHECK(m, QT_ERR_NOMEM, "out of memory");
    m->outputs = qt_strdup(outputs ? outputs->valuestring : "{model}-{scheme}");
    QT_CHECK(m->outputs, QT_ERR_NOMEM, "out of memory");
    m->dir = qt_strdup(dir);
    QT_CHECK(m->dir, QT_ERR_NOMEM, "out of memory");
    QT_TRY(load_models(path, dir, models, m, errmsg));
    QT_TRY(load_schemes(path, dir, schemes, m, errmsg));
    QT_CHECK(m->n_models <= QT_MANIFEST_MAX_JOBS / m->n_schemes, QT_ERR_FORMAT,
             "manifest '%s': %zu models x %zu schemes is more than %d jobs", path, m->n_models,
             m->n_schemes, QT_MANIFEST_MAX_JOBS);
    QT_TRY(opt_path(path, dir, root, "calib_text", &m->calib_text, errmsg));
    QT_TRY(opt_path(path, dir, root, "bench_text", &m->bench_text, errmsg));
    QT_TRY(check_outputs(path, m, errmsg));
    *out = m;
    m = NULL;
fail:
    qt_manifest_free(m);
    qt_free(dir);
    cJSON_Delete(root);
    return st;
}

qt_status qt_manifest_job_output(const qt_manifest *m, size_t k, char **out)
{
    *out = NULL;
    if (k >= qt_manifest_n_jobs(m)) return QT_ERR_ARG;
    const char *model = m->models[k / m->n_schemes].name;
    const char *scheme = m->schemes[k % m->n_schemes].name;
    size_t n = 1, lm = strlen(model), ls = strlen(scheme);
    for (const char *p = m->outputs; *p;) {
        if (!strncmp(p, "{model}", 7)) n += lm, p += 7;
        else if (!strncmp(p, "{scheme}", 8)) n += ls, p += 8;
        else n++, p++;
    }
    char *s = qt_malloc(n), *w = s;
    if (!s) return QT_ERR_NOMEM;
    for (const char *p = m->outputs; *p;) {
        if (!strncmp(p, "{model}", 7)) memcpy(w, model, lm), w += lm, p += 7;
        else if (!strncmp(p, "{scheme}", 8)) memcpy(w, scheme, ls), w += ls, p += 8;
        else *w++ = *p++;
    }
    *w = 0;
    *out = resolve(m->dir, s);
    qt_free(s);
    return *out ? QT_OK : QT_ERR_NOMEM;
}
