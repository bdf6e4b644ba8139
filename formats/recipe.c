/* formats/recipe.c: recipe files (ordered glob -> scheme rules). */
#include "formats/recipe.h"

#include <fnmatch.h>
#include <math.h>
#include <string.h>

#include "formats/json.h"

void qt_recipe_free(qt_recipe *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->n_rules; i++) {
        qt_free(r->rules[i].match);
        qt_free(r->rules[i].scheme);
    }
    qt_free(r->rules);
    qt_free(r);
}

qt_status qt_recipe_load(const char *path, qt_recipe **out, char *errmsg)
{
    qt_status st = QT_OK;
    cJSON *root = NULL;
    qt_recipe *r = NULL;
    *out = NULL;
    QT_TRY(qt_json_parse_file(path, 16u << 20, &root, errmsg));
    const cJSON *rules = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "rules")
                                              : NULL;
    QT_CHECK(cJSON_IsArray(rules), QT_ERR_FORMAT,
             "recipe '%s': expected an object with a \"rules\" array", path);
    int n = cJSON_GetArraySize(rules);
    QT_CHECK(n <= QT_RECIPE_MAX_RULES, QT_ERR_FORMAT, "recipe '%s': %d rules, more than %d",
             path, n, QT_RECIPE_MAX_RULES);
    r = qt_calloc(1, sizeof *r);
    QT_CHECK(r != NULL, QT_ERR_NOMEM, "out of memory");
    r->rules = qt_calloc((size_t)n + 1, sizeof *r->rules);
    QT_CHECK(r->rules != NULL, QT_ERR_NOMEM, "out of memory");
    int i = 0;
    for (const cJSON *it = rules->child; it; it = it->next, i++) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(it, "match");
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(it, "scheme");
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(it, "block");
        QT_CHECK(cJSON_IsObject(it) && cJSON_IsString(m) && cJSON_IsString(s), QT_ERR_FORMAT,
                 "recipe '%s': rule %d needs string \"match\" and \"scheme\"", path, i);
        for (const cJSON *k = it->child; k; k = k->next)
            QT_CHECK(!strcmp(k->string, "match") || !strcmp(k->string, "scheme") ||
                         !strcmp(k->string, "block"),
                     QT_ERR_FORMAT, "recipe '%s': rule %d has unknown key '%s'", path, i,
                     k->string);
        if (b) {
            QT_CHECK(cJSON_IsNumber(b) && b->valuedouble >= 1 && b->valuedouble <= 1 << 20 &&
                         b->valuedouble == floor(b->valuedouble),
                     QT_ERR_FORMAT, "recipe '%s': rule %d: \"block\" must be a positive integer",
                     path, i);
            r->rules[i].block = (int64_t)b->valuedouble;
        }
        r->rules[i].match = qt_strdup(m->valuestring);
        r->rules[i].scheme = qt_strdup(s->valuestring);
        r->n_rules = (size_t)i + 1;
        QT_CHECK(r->rules[i].match && r->rules[i].scheme, QT_ERR_NOMEM, "out of memory");
    }
    *out = r;
    r = NULL;
fail:
    qt_recipe_free(r);
    cJSON_Delete(root);
    return st;
}

const qt_recipe_rule *qt_recipe_match(const qt_recipe *r, const char *name, size_t *index)
{
    if (!r) return NULL;
    for (size_t i = 0; i < r->n_rules; i++) {
        if (fnmatch(r->rules[i].match, name, 0) == 0) {
            if (index) *index = i;
            return &r->rules[i];
        }
    }
    return NULL;
}
