/*
 * formats/manifest.h: batch-conversion manifests, a JSON file that lists
 * the models, the schemes (with their options) and how to name outputs,
 * expanded into jobs by `qtool batch-plan` and run by scripts/qtool-batch.
 *
 *   {"outputs": "out/{model}-{scheme}",
 *    "models":  ["models/a", {"name": "b", "path": "models/b-f16"}],
 *    "schemes": ["nf4",
 *                {"scheme": "int8"},
 *                {"scheme": "nf4", "name": "nf4-b128", "block": 128,
 *                 "double_quant": false, "compute_dtype": "bf16",
 *                 "skip": ["*.mlp.down_proj.weight"], "recipe": "r.json",
 *                 "max_shard_size": "2G"}],
 *    "calib_text": "calib.txt",
 *    "bench_text": "wiki.test.raw"}
 *
 * `outputs` is a pattern with the placeholders {model} and {scheme} (the
 * names below) and must contain both, so that every job has its own output;
 * default "{model}-{scheme}". A model is a path string (its name is the last
 * path component) or an object with "path" and optional "name". A scheme is
 * a scheme name string or an object with "scheme" and the optional keys
 * shown (name defaults to the scheme). Relative paths (models, recipe,
 * outputs, calib_text, bench_text) are taken from the manifest's folder and
 * returned resolved ("./x" when the manifest is in the current folder, so
 * that no path starts with '-'). Unknown keys, empty or duplicate names, names with '/',
 * '{', '}' or control characters, and strings holding a tab or newline are
 * rejected with QT_ERR_FORMAT and a message naming the file and the entry.
 * Scheme names are not checked here (formats/ does not own the scheme
 * table): the caller does that.
 *
 * Jobs are models x schemes, model-major, in manifest order: job k is model
 * k / n_schemes with scheme k % n_schemes. That order is the contract that
 * makes `--shard I/N` (job k belongs to shard k % N + 1) deterministic.
 *
 * What it does not do: run anything, look at the models, check that paths
 * exist. Thread-safe once loaded; the manifest is owned by the caller.
 */
#ifndef QT_FORMATS_MANIFEST_H
#define QT_FORMATS_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

#define QT_MANIFEST_MAX_ITEMS 100000 /* models, schemes, skip globs: each */
#define QT_MANIFEST_MAX_JOBS 1000000  /* models x schemes */
#define QT_MANIFEST_MAX_BYTES (16u << 20)

typedef struct qt_manifest_model {
    char *name; /* as given, or the last component of path */
    char *path; /* resolved against the manifest's folder */
} qt_manifest_model;

typedef struct qt_manifest_scheme {
    char *name;          /* as given, or = scheme */
    char *scheme;        /* scheme name (unchecked) */
    int64_t block;       /* 0 = the scheme's default */
    bool no_double_quant;/* "double_quant": false */
    char *compute_dtype; /* NULL = from config.json */
    char **skip;         /* (n_skip) globs */
    size_t n_skip;
    char *recipe;        /* resolved path, NULL = none */
    char *max_shard_size;/* as given ("2G", or a number of bytes), NULL = none */
} qt_manifest_scheme;

typedef struct qt_manifest {
    char *outputs;       /* pattern with {model} and {scheme}, as given */
    char *dir;           /* the manifest's folder ("." = the current one) */
    qt_manifest_model *models;   /* (n_models) */
    size_t n_models;
    qt_manifest_scheme *schemes; /* (n_schemes) */
    size_t n_schemes;
    char *calib_text;    /* resolved path, NULL = none */
    char *bench_text;    /* resolved path, NULL = none */
} qt_manifest;

/* Loads and checks a manifest file. On success *out is the manifest
 * (caller frees with qt_manifest_free); on failure *out is NULL and errmsg
 * (QT_ERRMSG_SIZE, may be NULL) names the file, the entry and the rule.
 * @return QT_OK, QT_ERR_IO, QT_ERR_FORMAT, QT_ERR_NOMEM. */
qt_status qt_manifest_load(const char *path, qt_manifest **out, char *errmsg);

/* Number of jobs: n_models * n_schemes (at most QT_MANIFEST_MAX_JOBS; a
 * load refuses more, and refuses two jobs with the same output path). */
size_t qt_manifest_n_jobs(const qt_manifest *m);

/* The output path of job k (k < qt_manifest_n_jobs): the outputs pattern
 * with {model} and {scheme} replaced, resolved against dir. Caller frees *out with qt_free.
 * @return QT_OK, QT_ERR_ARG (k out of range), QT_ERR_NOMEM. */
qt_status qt_manifest_job_output(const qt_manifest *m, size_t k, char **out);

/* The files a job writes beside its output OUT: OUT + suffix, i < n.
 * *kind (may be NULL) names it: "log", "report", "bench", "bench_tmp".
 * A load refuses a manifest where any two of all jobs' outputs and files
 * are the same path. @return the suffix, NULL when i is out of range. */
size_t qt_manifest_n_job_files(void);
const char *qt_manifest_job_file(size_t i, const char **kind);

/* Frees the manifest; accepts NULL. */
void qt_manifest_free(qt_manifest *m);

#endif /* QT_FORMATS_MANIFEST_H */
