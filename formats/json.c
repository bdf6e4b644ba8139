/* formats/json.c: strict JSON (UTF-8, no NUL, no duplicate keys, depth cap). */
#include "formats/json.h"
#include "formats/input_file.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "formats/formats_internal.h"

/* cJSON allocates through qt_malloc, so that out-of-memory and the
 * qt_alloc_fail_after test hook reach its allocations too; a failed one is
 * remembered per thread, so that a NULL from cJSON_Parse* is reported as
 * QT_ERR_NOMEM rather than as a syntax error, and builders of cJSON trees
 * (bnb.c) can tell that an Add/Create call dropped an item (issue 8). */
static _Thread_local bool json_oom;

static void *json_alloc(size_t n)
{
    void *p = qt_malloc(n);
    if (!p) json_oom = true;
    return p;
}

static void json_free(void *p) { qt_free(p); }

static pthread_once_t json_hooks_once = PTHREAD_ONCE_INIT;

static void json_install_hooks(void)
{
    cJSON_Hooks h = {json_alloc, json_free};
    cJSON_InitHooks(&h);
}

void qt_json_alloc_reset(void)
{
    pthread_once(&json_hooks_once, json_install_hooks);
    json_oom = false;
}

bool qt_json_alloc_failed(void) { return json_oom; }

bool qt_utf8_valid(const char *buf, size_t n)
{
    const unsigned char *s = (const unsigned char *)buf;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        unsigned min;
        if ((c & 0xe0) == 0xc0) len = 2, min = 0x80, c &= 0x1f;
        else if ((c & 0xf0) == 0xe0) len = 3, min = 0x800, c &= 0x0f;
        else if ((c & 0xf8) == 0xf0) len = 4, min = 0x10000, c &= 0x07;
        else return false;
        if (n - i < len) return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return false;
            c = (c << 6) | (s[i + k] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) return false;
        i += len;
    }
    return true;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Depth, number-range and duplicate-key walk. Returns the rule broken,
 * QT_JSON_OK, or -1 for out of memory; *dup gets the duplicate key. */
static int walk(const cJSON *node, int depth, const char **dup)
{
    if (depth > QT_JSON_MAX_DEPTH) return QT_JSON_TOO_DEEP;
    /* 1e400 parses to inf: a writer would turn it into "Infinity", which no
     * strict reader (qtool's included) accepts back (found by fuzz_config) */
    if (cJSON_IsNumber(node) && !isfinite(node->valuedouble)) return QT_JSON_NUMBER_RANGE;
    if (cJSON_IsObject(node)) {
        size_t count = 0;
        for (const cJSON *c = node->child; c; c = c->next) count++;
        if (count > 1) {
            const char **names = qt_malloc(count * sizeof *names);
            if (!names) return -1;
            size_t i = 0;
            for (const cJSON *c = node->child; c; c = c->next) names[i++] = c->string;
            qsort(names, count, sizeof *names, cmp_names);
            for (i = 1; i < count; i++) {
                if (strcmp(names[i - 1], names[i]) == 0) {
                    *dup = names[i];
                    qt_free(names);
                    return QT_JSON_DUPLICATE;
                }
            }
            qt_free(names);
        }
    }
    if (cJSON_IsObject(node) || cJSON_IsArray(node)) {
        for (const cJSON *c = node->child; c; c = c->next) {
            int r = walk(c, depth + 1, dup);
            if (r != QT_JSON_OK) return r;
        }
    }
    return QT_JSON_OK;
}

bool qt_json_has_nul_escape(const char *s, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) {
        if (s[i] != '\\') continue;
        if (s[i + 1] == 'u' && i + 5 < n && memcmp(s + i + 2, "0000", 4) == 0) return true;
        i++; /* skip the escaped character */
    }
    return false;
}

qt_status qt_json_parse(const char *buf, size_t n, const char *what, cJSON **out,
                        qt_json_rule *rule, char *errmsg)
{
    qt_json_rule dummy;
    if (!rule) rule = &dummy;
    *out = NULL;
    *rule = QT_JSON_OK;
    if (memchr(buf, 0, n)) {
        *rule = QT_JSON_NUL_BYTE;
        return qt_set_err(errmsg, QT_ERR_FORMAT, "%s: JSON holds a NUL byte", what);
    }
    if (!qt_utf8_valid(buf, n)) {
        *rule = QT_JSON_BAD_UTF8;
        return qt_set_err(errmsg, QT_ERR_FORMAT, "%s: JSON is not valid UTF-8", what);
    }
    const char *end = NULL;
    qt_json_alloc_reset();
    cJSON *root = cJSON_ParseWithLengthOpts(buf, n, &end, 0);
    if (!root && qt_json_alloc_failed())
        return qt_set_err(errmsg, QT_ERR_NOMEM, "%s: out of memory parsing JSON", what);
    if (!root) {
        /* cJSON also fails here past its own nesting limit (1000) */
        size_t pos = end && end >= buf ? (size_t)(end - buf) : 0;
        *rule = QT_JSON_SYNTAX;
        return qt_set_err(errmsg, QT_ERR_FORMAT, "%s: invalid JSON near byte %zu", what, pos);
    }
    /* only JSON whitespace may follow the value */
    if (end) {
        for (const char *p = end; p < buf + n; p++) {
            if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
                cJSON_Delete(root);
                *rule = QT_JSON_SYNTAX;
                return qt_set_err(errmsg, QT_ERR_FORMAT,
                                  "%s: trailing bytes after the JSON value at byte %zu", what,
                                  (size_t)(p - buf));
            }
        }
    }
    const char *dup = NULL;
    int r = walk(root, 1, &dup);
    if (r < 0) {
        cJSON_Delete(root);
        return qt_set_err(errmsg, QT_ERR_NOMEM, "%s: out of memory checking JSON", what);
    }
    if (r != QT_JSON_OK) {
        *rule = (qt_json_rule)r;
        if (r == QT_JSON_DUPLICATE)
            qt_set_err(errmsg, QT_ERR_FORMAT, "%s: duplicate key '%s'", what, dup);
        else if (r == QT_JSON_NUMBER_RANGE)
            qt_set_err(errmsg, QT_ERR_FORMAT, "%s: a number is outside the float64 range", what);
        else
            qt_set_err(errmsg, QT_ERR_FORMAT, "%s: JSON nested deeper than %d levels", what,
                       QT_JSON_MAX_DEPTH);
        cJSON_Delete(root);
        return QT_ERR_FORMAT;
    }
    *out = root;
    return QT_OK;
}

qt_status qt_json_parse_file(const char *path, size_t max_bytes, cJSON **out, char *errmsg)
{
    *out = NULL;
    FILE *f;
    struct stat sb;
    qt_status ost = qt_input_fopen(path, max_bytes, &f, &sb, errmsg);
    if (ost != QT_OK) return ost;
    size_t n = (size_t)sb.st_size;
    char *buf = qt_malloc(n + 1);
    if (!buf) {
        fclose(f);
        return qt_set_err(errmsg, QT_ERR_NOMEM, "'%s': out of memory", path);
    }
    size_t got = fread(buf, 1, n, f);
    int rerr = ferror(f);
    fclose(f);
    if (got != n || rerr) {
        qt_free(buf);
        return qt_set_err(errmsg, QT_ERR_IO, "cannot read '%s'", path);
    }
    qt_status st = qt_json_parse(buf, n, path, out, NULL, errmsg);
    qt_free(buf);
    return st;
}
