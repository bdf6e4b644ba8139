/*
 * formats/recipe.h: conversion recipes, a JSON file of ordered rules that
 * say which scheme each tensor gets. First match wins.
 *
 *   {"rules": [
 *      {"match": "*.mlp.down_proj.weight", "scheme": "int8"},
 *      {"match": "model.layers.0.*",       "scheme": "keep"},
 *      {"match": "*_proj.weight",          "scheme": "nf4", "block": 128}
 *   ]}
 *
 * `match` is an fnmatch(3) glob over the full tensor name; `scheme` is a
 * scheme name of the scheme table or "keep" (leave in the compute dtype);
 * `block` is optional. Scheme names are checked by the caller (convert),
 * which owns the scheme table. Tensors no rule matches follow the
 * defaults. Thread-safe once loaded; the recipe is owned by the caller.
 */
#ifndef QT_FORMATS_RECIPE_H
#define QT_FORMATS_RECIPE_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

#define QT_RECIPE_MAX_RULES 4096

typedef struct qt_recipe_rule {
    char *match;  /* glob */
    char *scheme; /* scheme name or "keep" */
    int64_t block; /* 0 = the scheme's default */
} qt_recipe_rule;

typedef struct qt_recipe {
    qt_recipe_rule *rules; /* (n_rules) */
    size_t n_rules;
} qt_recipe;

/* Loads and checks a recipe file. @return QT_OK, QT_ERR_IO, QT_ERR_FORMAT
 * (message names the file and the rule index), QT_ERR_NOMEM. */
qt_status qt_recipe_load(const char *path, qt_recipe **out, char *errmsg);

/* The first rule matching name, or NULL. */
const qt_recipe_rule *qt_recipe_match(const qt_recipe *r, const char *name, size_t *index);

/* Frees the recipe; accepts NULL. */
void qt_recipe_free(qt_recipe *r);

#endif /* QT_FORMATS_RECIPE_H */
