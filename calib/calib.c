/* calib/calib.c: calibration sets (calib/calib.h): text -> tokens -> the
 * original model -> sampled input rows of every decoder Linear; the
 * fingerprint and the cached path (qt_calib_set_get). The cache file
 * itself is in calib_cache.c. */
#include "calib/calib.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "calib/calib_internal.h"
#include "common/sha256.h"
#include "formats/fsutil.h"
#include "formats/vocab.h"
#include "model/tokenizer.h"

#define DEFAULT_MAX_BYTES ((size_t)1 << 30)
#define MAX_TEXT_BYTES ((size_t)1 << 31)

const char *qt_calib_cache_status_name(qt_calib_cache_status s)
{
    static const char *const n[QT_CALIB_CACHE_STATUS_COUNT] = {"off", "hit", "new", "stale",
                                                                "damaged"};
    return (unsigned)s < QT_CALIB_CACHE_STATUS_COUNT ? n[s] : "?";
}

/* ---- the set ---------------------------------------------------------------- */

qt_status qt_calib_set_alloc(size_t n_layers, size_t n_rows, const size_t n_in[QT_CALIB_SITES],
                             qt_calib_set **out)
{
    *out = NULL;
    qt_calib_set *s = qt_calloc(1, sizeof *s);
    if (!s) return QT_ERR_NOMEM;
    s->n_layers = n_layers;
    s->n_rows = n_rows;
    memcpy(s->n_in, n_in, sizeof s->n_in);
    size_t n_arr;
    if (!qt_mul_size(n_layers, QT_CALIB_SITES, &n_arr)) {
        qt_free(s);
        return QT_ERR_OVERFLOW;
    }
    s->rows = qt_calloc(n_arr ? n_arr : 1, sizeof *s->rows);
    if (!s->rows) {
        qt_free(s);
        return QT_ERR_NOMEM;
    }
    for (size_t i = 0; i < n_arr; i++) {
        size_t e, bytes;
        if (!qt_mul_size(n_rows ? n_rows : 1, n_in[i % QT_CALIB_SITES], &e) ||
            !qt_mul_size(e ? e : 1, sizeof(float), &bytes)) {
            qt_calib_set_free(s);
            return QT_ERR_OVERFLOW;
        }
        s->rows[i] = qt_calloc(1, bytes);
        if (!s->rows[i]) {
            qt_calib_set_free(s);
            return QT_ERR_NOMEM;
        }
    }
    *out = s;
    return QT_OK;
}

void qt_calib_set_free(qt_calib_set *s)
{
    if (!s) return;
    if (s->rows)
        for (size_t i = 0; i < s->n_layers * QT_CALIB_SITES; i++) qt_free(s->rows[i]);
    qt_free(s->rows);
    memset(s, 0, sizeof *s);
    qt_free(s);
}

const float *qt_calib_set_rows(const qt_calib_set *s, size_t layer, qt_proj p, size_t *n_rows,
                               size_t *n_in)
{
    if (!s || layer >= s->n_layers || (unsigned)p >= QT_PROJ_COUNT) return NULL;
    int site = qt_calib_site(p);
    if (n_rows) *n_rows = s->n_rows;
    if (n_in) *n_in = s->n_in[site];
    return s->rows[layer * QT_CALIB_SITES + (size_t)site];
}

size_t qt_calib_set_n_layers(const qt_calib_set *s) { return s ? s->n_layers : 0; }
size_t qt_calib_set_n_rows(const qt_calib_set *s) { return s ? s->n_rows : 0; }
size_t qt_calib_set_n_tokens(const qt_calib_set *s) { return s ? s->n_tokens : 0; }
const char *qt_calib_set_fingerprint(const qt_calib_set *s) { return s ? s->fingerprint : ""; }

/* ---- building ------------------------------------------------------------------ */

typedef struct capture_ctx {
    qt_calib_set *set;
    const int32_t *row_of; /* (n_eval,) sample row of each evaluated token, or -1 */
    size_t n_eval;
    size_t g_base;         /* global index of position 0 of the current sequence */
    int bad_shape;
} capture_ctx;

static void capture(void *ctx, size_t layer, qt_proj proj, size_t pos0, const float *x,
                    size_t n_rows, size_t n_in)
{
    capture_ctx *c = ctx;
    if (proj == QT_PROJ_K || proj == QT_PROJ_V || proj == QT_PROJ_UP) return; /* shared inputs */
    if (layer >= c->set->n_layers) return;
    int site = qt_calib_site(proj);
    if (n_in != c->set->n_in[site]) {
        c->bad_shape = 1;
        return;
    }
    float *dst = c->set->rows[layer * QT_CALIB_SITES + (size_t)site];
    for (size_t t = 0; t < n_rows; t++) {
        size_t g = c->g_base + pos0 + t;
        if (g >= c->n_eval || c->row_of[g] < 0) continue;
        memcpy(dst + (size_t)c->row_of[g] * n_in, x + t * n_in, n_in * sizeof(float));
    }
}

static uint64_t xs64(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

/* Parses token ids (integers separated by spaces, commas, newlines). */
static qt_status parse_ids(const char *t, size_t len, int32_t **ids, size_t *n, char *errmsg)
{
    size_t cap = 0, k = 0;
    int32_t *v = NULL;
    size_t i = 0;
    *ids = NULL;
    *n = 0;
    while (i < len) {
        char ch = t[i];
        if (ch == ' ' || ch == ',' || ch == '\n' || ch == '\r' || ch == '\t') {
            i++;
            continue;
        }
        if (ch < '0' || ch > '9') {
            qt_free(v);
            return qt_set_err(errmsg, QT_ERR_FORMAT, "token ids: unexpected byte at offset %zu", i);
        }
        int64_t x = 0;
        while (i < len && t[i] >= '0' && t[i] <= '9') {
            x = x * 10 + (t[i++] - '0');
            if (x > INT32_MAX) {
                qt_free(v);
                return qt_set_err(errmsg, QT_ERR_FORMAT, "token ids: id too large at offset %zu",
                                  i);
            }
        }
        if (k == cap) {
            cap = cap ? 2 * cap : 1024;
            int32_t *nv = qt_realloc(v, cap * sizeof *nv);
            if (!nv) {
                qt_free(v);
                return qt_set_err(errmsg, QT_ERR_NOMEM, "out of memory");
            }
            v = nv;
        }
        v[k++] = (int32_t)x;
    }
    *ids = v;
    *n = k;
    return QT_OK;
}

/* The model's vocabulary: tokenizer.json, else tokenizer.model in the
 * model folder (or beside a .safetensors file). */
static qt_status load_tokenizer(const char *model_path, qt_tokenizer **tok, char *errmsg)
{
    char dir[4096], p[4200];
    struct stat sb;
    snprintf(dir, sizeof dir, "%s", model_path);
    if (stat(dir, &sb) == 0 && !S_ISDIR(sb.st_mode)) {
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        else snprintf(dir, sizeof dir, ".");
    }
    qt_vocab *v = NULL;
    qt_status st;
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    if (stat(p, &sb) == 0) {
        st = qt_vocab_load_hf_json(p, &v, errmsg);
    } else {
        snprintf(p, sizeof p, "%s/tokenizer.model", dir);
        if (stat(p, &sb) != 0)
            return qt_set_err(errmsg, QT_ERR_FORMAT,
                              "'%s' has no tokenizer.json or tokenizer.model: give token ids "
                              "instead of text",
                              dir);
        st = qt_vocab_load_spm(p, &v, errmsg);
    }
    if (st != QT_OK) return st;
    st = qt_tokenizer_new(v, tok);
    qt_vocab_free(v);
    if (st != QT_OK) return qt_set_err(errmsg, st, "tokenizer of '%s': %s", dir, qt_status_str(st));
    return QT_OK;
}

static void resolve_opts(const qt_calib_opts *o, qt_calib_opts *r)
{
    memset(r, 0, sizeof *r);
    if (o) *r = *o;
    if (!r->n_rows) r->n_rows = QT_CALIB_DEFAULT_ROWS;
    if (!r->max_tokens) r->max_tokens = 8 * r->n_rows;
    if (!r->seed) r->seed = 1;
    if (!r->max_bytes) r->max_bytes = DEFAULT_MAX_BYTES;
}

qt_status qt_calib_set_build(const char *model_path, const char *text, size_t len, bool is_ids,
                             const qt_calib_opts *opts, qt_calib_set **out, char *errmsg)
{
    qt_status st = QT_OK;
    qt_calib_opts o;
    resolve_opts(opts, &o);
    qt_tokenizer *tok = NULL;
    qt_model *m = NULL;
    int32_t *ids = NULL, *seq = NULL, *row_of = NULL;
    size_t *perm = NULL;
    size_t n_ids = 0;
    qt_calib_set *set = NULL;
    *out = NULL;

    if (is_ids) {
        QT_TRY(parse_ids(text, len, &ids, &n_ids, errmsg));
    } else {
        QT_TRY(load_tokenizer(model_path, &tok, errmsg));
        st = qt_tokenizer_encode(tok, text, len, false, &ids, &n_ids);
        QT_CHECK(st == QT_OK, st, "calibration text: cannot encode it (%s)", qt_status_str(st));
    }
    QT_CHECK(n_ids > 0, QT_ERR_FORMAT, "calibration text: no tokens");

    /* the model, with a context of one sequence */
    {
        qt_model_opts mo = {0};
        QT_TRY(qt_model_open(model_path, NULL, &m, errmsg));
        const qt_model_config *cfg = qt_model_get_config(m);
        size_t seq_len = o.seq_len ? o.seq_len : cfg->max_pos < 512 ? cfg->max_pos : 512;
        if (seq_len < 2) seq_len = 2;
        qt_model_free(m);
        m = NULL;
        o.seq_len = seq_len;
        mo.n_ctx = seq_len;
        mo.n_batch = seq_len;
        capture_ctx cc = {0};
        mo.capture = capture;
        mo.capture_ctx = &cc;
        QT_TRY(qt_model_open(model_path, &mo, &m, errmsg));
        cfg = qt_model_get_config(m);
        for (size_t i = 0; i < n_ids; i++)
            QT_CHECK(ids[i] >= 0 && (size_t)ids[i] < cfg->vocab_size, QT_ERR_FORMAT,
                     "calibration tokens: id %d at %zu is outside the vocabulary (%zu)", ids[i], i,
                     cfg->vocab_size);
        const bool bos = cfg->bos_id >= 0;
        const size_t body = bos ? seq_len - 1 : seq_len;
        /* evaluated tokens: whole sequences of the text, up to max_tokens */
        size_t n_seq = (n_ids + body - 1) / body, n_eval = 0;
        size_t max_seq = o.max_tokens / seq_len ? o.max_tokens / seq_len : 1;
        if (n_seq > max_seq) n_seq = max_seq;
        for (size_t s = 0; s < n_seq; s++) {
            size_t take = n_ids - s * body < body ? n_ids - s * body : body;
            n_eval += take + (bos ? 1 : 0);
        }
        /* rows: n_rows, at most the tokens and what max_bytes allows */
        size_t n_in[QT_CALIB_SITES] = {cfg->dim, cfg->n_heads * cfg->head_dim, cfg->dim,
                                       cfg->hidden_dim};
        size_t per_row = 0;
        for (int k = 0; k < QT_CALIB_SITES; k++) per_row += n_in[k];
        per_row *= cfg->n_layers * sizeof(float);
        size_t n_rows = o.n_rows < n_eval ? o.n_rows : n_eval;
        if (per_row && n_rows > o.max_bytes / per_row) n_rows = o.max_bytes / per_row;
        QT_CHECK(n_rows > 0, QT_ERR_ARG, "calibration: max_bytes allows no sample row");
        QT_TRY(qt_calib_set_alloc(cfg->n_layers, n_rows, n_in, &set));
        set->n_tokens = n_eval;
        /* choose n_rows of the n_eval positions: partial Fisher-Yates */
        perm = qt_malloc(n_eval * sizeof *perm);
        row_of = qt_malloc(n_eval * sizeof *row_of);
        seq = qt_malloc(seq_len * sizeof *seq);
        QT_CHECK(perm && row_of && seq, QT_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < n_eval; i++) perm[i] = i, row_of[i] = -1;
        uint64_t rng = o.seed;
        for (size_t i = 0; i < n_rows; i++) {
            size_t j = i + (size_t)(xs64(&rng) % (uint64_t)(n_eval - i));
            size_t t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
            row_of[perm[i]] = 0;
        }
        int32_t r = 0;
        for (size_t g = 0; g < n_eval; g++)
            if (row_of[g] == 0) row_of[g] = r++;
        cc.set = set;
        cc.row_of = row_of;
        cc.n_eval = n_eval;
        size_t g = 0;
        for (size_t s = 0; s < n_seq; s++) {
            size_t take = n_ids - s * body < body ? n_ids - s * body : body, k = 0;
            if (bos) seq[k++] = cfg->bos_id;
            memcpy(seq + k, ids + s * body, take * sizeof *seq);
            k += take;
            cc.g_base = g;
            qt_model_reset(m);
            st = qt_model_eval(m, seq, k, 0, NULL);
            QT_CHECK(st == QT_OK, st, "calibration: %s", qt_model_errmsg(m));
            g += k;
        }
        QT_CHECK(!cc.bad_shape, QT_ERR_FORMAT, "calibration: a Linear input has an unexpected width");
    }
    *out = set;
    set = NULL;
fail:
    qt_calib_set_free(set);
    qt_model_free(m);
    qt_tokenizer_free(tok);
    qt_free(ids);
    qt_free(seq);
    qt_free(perm);
    qt_free(row_of);
    return st;
}

/* ---- fingerprint -------------------------------------------------------------- */

/* Hashes a file's name, size, first MiB, 16 windows of 64 KiB and last
 * 64 KiB. Missing files hash as absent. */
static void hash_file(qt_sha256_ctx *h, const char *path, const char *name)
{
    qt_sha256_update(h, name, strlen(name) + 1);
    FILE *f = fopen(path, "rb");
    struct stat sb;
    if (!f || fstat(fileno(f), &sb) != 0) {
        if (f) fclose(f);
        qt_sha256_update(h, "absent", 6);
        return;
    }
    unsigned char sz[8];
    qt_store_le64(sz, (uint64_t)sb.st_size);
    qt_sha256_update(h, sz, 8);
    enum { WIN = 1 << 16 };
    unsigned char *buf = qt_malloc(WIN);
    if (!buf) {
        fclose(f);
        qt_sha256_update(h, "nomem", 5);
        return;
    }
    const uint64_t size = (uint64_t)sb.st_size;
    uint64_t offs[18];
    size_t lens[18], n = 0;
    offs[n] = 0, lens[n++] = (size_t)(size < (1u << 20) ? size : (1u << 20));
    for (int i = 0; i < 16 && size > (1u << 20); i++)
        offs[n] = size / 16 * (uint64_t)i, lens[n++] = WIN;
    if (size > (1u << 20)) offs[n] = size - WIN, lens[n++] = WIN;
    for (size_t i = 0; i < n; i++) {
        if (fseeko(f, (off_t)offs[i], SEEK_SET) != 0) break;
        size_t left = lens[i];
        while (left) {
            size_t want = left < WIN ? left : WIN;
            size_t got = fread(buf, 1, want, f);
            if (!got) break;
            qt_sha256_update(h, buf, got);
            left -= got;
        }
    }
    qt_free(buf);
    fclose(f);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* sha256 over the model files (every regular file of the folder, sorted),
 * the text and the settings. */
static qt_status fingerprint(const char *model_path, const char *text, size_t len, bool is_ids,
                             const qt_calib_opts *o, char hex[65], char *errmsg)
{
    qt_sha256_ctx h;
    qt_sha256_init(&h);
    qt_sha256_update(&h, "qtool-calib 1", 14);
    char dir[4096], p[8200];
    struct stat sb;
    snprintf(dir, sizeof dir, "%s", model_path);
    if (stat(dir, &sb) == 0 && !S_ISDIR(sb.st_mode)) {
        hash_file(&h, model_path, "model-file");
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        else snprintf(dir, sizeof dir, ".");
    }
    DIR *d = opendir(dir);
    if (!d) return qt_set_err(errmsg, QT_ERR_IO, "cannot open '%s': %s", dir, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    qt_status st = QT_OK;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (stat(p, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 32;
            char **nn = qt_realloc(names, cap * sizeof *nn);
            if (!nn) {
                st = QT_ERR_NOMEM;
                break;
            }
            names = nn;
        }
        if (!(names[n] = qt_strdup(e->d_name))) {
            st = QT_ERR_NOMEM;
            break;
        }
        n++;
    }
    closedir(d);
    if (st == QT_OK) {
        qsort(names, n, sizeof *names, cmp_str);
        for (size_t i = 0; i < n; i++) {
            snprintf(p, sizeof p, "%s/%s", dir, names[i]);
            hash_file(&h, p, names[i]);
        }
    }
    for (size_t i = 0; i < n; i++) qt_free(names[i]);
    qt_free(names);
    if (st != QT_OK) return qt_set_err(errmsg, st, "out of memory");
    unsigned char tdig[32];
    qt_sha256(text, len, tdig);
    qt_sha256_update(&h, tdig, 32);
    char settings[256];
    snprintf(settings, sizeof settings, "ids=%d rows=%zu max_tokens=%zu seq_len=%zu seed=%llu "
             "max_bytes=%zu",
             is_ids, o->n_rows, o->max_tokens, o->seq_len, (unsigned long long)o->seed,
             o->max_bytes);
    qt_sha256_update(&h, settings, strlen(settings));
    unsigned char dig[32];
    qt_sha256_final(&h, dig);
    qt_sha256_hex(dig, hex);
    return QT_OK;
}

/* Token ids: only digits and separators, at least one digit. */
static bool looks_like_ids(const char *t, size_t n)
{
    bool digit = false;
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        if (c >= '0' && c <= '9') digit = true;
        else if (c != ' ' && c != ',' && c != '\n' && c != '\r' && c != '\t') return false;
    }
    return digit;
}

/* The calibration text, whole (formats/fsutil reads it): a regular file
 * under 2 GiB. */
static qt_status read_text(const char *path, char **buf, size_t *n, char *errmsg)
{
    struct stat sb;
    *buf = NULL;
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
        return qt_set_err(errmsg, QT_ERR_ARG, "'%s' is not a regular file under 2 GiB", path);
    qt_status st = qt_file_read(path, buf, n, MAX_TEXT_BYTES, errmsg);
    if (st == QT_ERR_FORMAT) /* too large */
        return qt_set_err(errmsg, QT_ERR_ARG, "'%s' is not a regular file under 2 GiB", path);
    return st;
}

qt_status qt_calib_set_get(const char *model_path, const char *text_path,
                           const qt_calib_opts *opts, const char *cache_path,
                           qt_calib_set **out, qt_calib_cache_status *status, char *why,
                           size_t why_n, char *errmsg)
{
    qt_status st = QT_OK;
    char *text = NULL, tmp[QT_ERRMSG_SIZE], fp[65], wbuf[8];
    size_t len = 0;
    qt_calib_set *set = NULL;
    qt_calib_opts o;
    resolve_opts(opts, &o);
    *out = NULL;
    if (!why || !why_n) why = wbuf, why_n = sizeof wbuf;
    why[0] = 0;
    *status = QT_CALIB_CACHE_OFF;
    QT_TRY(read_text(text_path, &text, &len, errmsg));
    const bool ids = looks_like_ids(text, len);
    QT_TRY(fingerprint(model_path, text, len, ids, &o, fp, errmsg));
    if (cache_path) {
        struct stat sb;
        if (stat(cache_path, &sb) != 0) {
            *status = QT_CALIB_CACHE_NEW;
            snprintf(why, why_n, "no cache file yet");
        } else {
            qt_status ls = qt_calib_set_load(cache_path, fp, &set, tmp);
            if (ls == QT_OK) {
                *status = QT_CALIB_CACHE_HIT;
                snprintf(why, why_n, "fingerprint matches");
                goto done;
            }
            QT_CHECK(ls != QT_ERR_NOMEM, ls, "%s", tmp);
            *status = ls == QT_ERR_ARG ? QT_CALIB_CACHE_STALE : QT_CALIB_CACHE_DAMAGED;
            snprintf(why, why_n, "%s", tmp);
        }
    }
    QT_TRY(qt_calib_set_build(model_path, text, len, ids, &o, &set, errmsg));
    memcpy(set->fingerprint, fp, sizeof fp);
    if (cache_path) {
        if (qt_calib_set_save(set, cache_path, tmp) != QT_OK) {
            size_t l = strlen(why);
            snprintf(why + l, why_n - l, "; cache not written: %s", tmp);
        }
    }
done:
    *out = set;
    set = NULL;
fail:
    qt_calib_set_free(set);
    qt_free(text);
    return st;
}
