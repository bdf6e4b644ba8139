/* tests/unit/test_manifest.c: batch manifests (formats/manifest.h): every
 * key parsed, paths resolved against the manifest's folder, jobs in
 * model-major order with their output names, one malformed manifest per
 * rule (each naming its entry), the shipped sample, and allocation failures
 * at every step. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "formats/manifest.h"
#include "testutil.h"

/* Writes text to DIR/name; returns the path (static buffer per call). */
static const char *write_file(const char *dir, const char *name, const char *text)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert(f != NULL);
    fputs(text, f);
    fclose(f);
    return path;
}

static qt_status load_text(const char *text, qt_manifest **m, char *err)
{
    char dir[64];
    cr_assert(qt_test_tmpdir(dir, sizeof dir) != NULL);
    const char *p = write_file(dir, "m.json", text);
    qt_status st = qt_manifest_load(p, m, err);
    unlink(p);
    rmdir(dir);
    return st;
}

static const char *full =
    "{\"outputs\": \"out/{model}/{scheme}-q\",\n"
    " \"models\": [\"models/llama-7b/\", {\"name\": \"tiny\", \"path\": \"/abs/tiny\"}],\n"
    " \"schemes\": [\"nf4\",\n"
    "   {\"scheme\": \"nf4\", \"name\": \"nf4-b128\", \"block\": 128, \"double_quant\": false,\n"
    "    \"compute_dtype\": \"bf16\", \"skip\": [\"*.down_proj.weight\", \"lm_head\"],\n"
    "    \"recipe\": \"r.json\", \"max_shard_size\": \"2G\"},\n"
    "   {\"scheme\": \"int8\", \"max_shard_size\": 1000000, \"double_quant\": true}],\n"
    " \"calib_text\": \"c.txt\", \"bench_text\": \"/data/wiki.txt\"}\n";

Test(manifest, every_key)
{
    char dir[64], err[QT_ERRMSG_SIZE] = "";
    cr_assert(qt_test_tmpdir(dir, sizeof dir) != NULL);
    const char *p = write_file(dir, "m.json", full);
    qt_manifest *m = NULL;
    cr_assert(eq(int, qt_manifest_load(p, &m, err), QT_OK), "%s", err);
    char want[256];

    cr_assert(eq(sz, m->n_models, 2));
    cr_assert(eq(str, m->models[0].name, "llama-7b")); /* last component, trailing '/' */
    snprintf(want, sizeof want, "%s/models/llama-7b/", dir);
    cr_assert(eq(str, m->models[0].path, want));
    cr_assert(eq(str, m->models[1].name, "tiny"));
    cr_assert(eq(str, m->models[1].path, "/abs/tiny")); /* absolute: unchanged */

    cr_assert(eq(sz, m->n_schemes, 3));
    const qt_manifest_scheme *s0 = &m->schemes[0], *s1 = &m->schemes[1], *s2 = &m->schemes[2];
    cr_assert(eq(str, s0->name, "nf4"));
    cr_assert(eq(str, s0->scheme, "nf4"));
    cr_assert(eq(i64, s0->block, 0));
    cr_assert(not(s0->no_double_quant));
    cr_assert(eq(ptr, s0->compute_dtype, NULL));
    cr_assert(eq(sz, s0->n_skip, 0));
    cr_assert(eq(ptr, s0->recipe, NULL));
    cr_assert(eq(ptr, s0->max_shard_size, NULL));

    cr_assert(eq(str, s1->name, "nf4-b128"));
    cr_assert(eq(str, s1->scheme, "nf4"));
    cr_assert(eq(i64, s1->block, 128));
    cr_assert(s1->no_double_quant);
    cr_assert(eq(str, s1->compute_dtype, "bf16"));
    cr_assert(eq(sz, s1->n_skip, 2));
    cr_assert(eq(str, s1->skip[0], "*.down_proj.weight"));
    cr_assert(eq(str, s1->skip[1], "lm_head"));
    snprintf(want, sizeof want, "%s/r.json", dir);
    cr_assert(eq(str, s1->recipe, want));
    cr_assert(eq(str, s1->max_shard_size, "2G"));

    cr_assert(eq(str, s2->name, "int8"));
    cr_assert(not(s2->no_double_quant));
    cr_assert(eq(str, s2->max_shard_size, "1000000"));

    snprintf(want, sizeof want, "%s/c.txt", dir);
    cr_assert(eq(str, m->calib_text, want));
    cr_assert(eq(str, m->bench_text, "/data/wiki.txt"));

    /* jobs: model-major, output pattern filled and resolved */
    cr_assert(eq(sz, qt_manifest_n_jobs(m), 6));
    static const char *outs[6] = {"llama-7b/nf4-q", "llama-7b/nf4-b128-q", "llama-7b/int8-q",
                                  "tiny/nf4-q",     "tiny/nf4-b128-q",     "tiny/int8-q"};
    for (size_t k = 0; k < 6; k++) {
        char *o = NULL;
        cr_assert(eq(int, qt_manifest_job_output(m, k, &o), QT_OK));
        snprintf(want, sizeof want, "%s/out/%s", dir, outs[k]);
        cr_assert(eq(str, o, want));
        qt_free(o);
    }
    char *o = (char *)"x";
    cr_assert(eq(int, qt_manifest_job_output(m, 6, &o), QT_ERR_ARG));
    cr_assert(eq(ptr, o, NULL));
    qt_manifest_free(m);
    qt_manifest_free(NULL);
    unlink(p);
    rmdir(dir);
}

Test(manifest, defaults_and_relative_manifest)
{
    /* a manifest named without a folder: paths stay relative to the current one,
     * written "./x" so that a name starting with '-' is never an option */
    char dir[64], cwd[512], err[QT_ERRMSG_SIZE] = "";
    cr_assert(qt_test_tmpdir(dir, sizeof dir) != NULL);
    cr_assert(getcwd(cwd, sizeof cwd) != NULL);
    write_file(dir, "plain.json", "{\"models\": [\"a\", \"b\"], \"schemes\": [\"q8\"]}");
    cr_assert(eq(int, chdir(dir), 0));
    qt_manifest *m = NULL;
    qt_status st = qt_manifest_load("plain.json", &m, err);
    cr_assert(eq(int, chdir(cwd), 0));
    cr_assert(eq(int, st, QT_OK), "%s", err);
    cr_assert(eq(str, m->models[1].path, "./b"));
    cr_assert(eq(ptr, m->bench_text, NULL));
    cr_assert(eq(ptr, m->calib_text, NULL));
    char *o = NULL;
    cr_assert(eq(int, qt_manifest_job_output(m, 1, &o), QT_OK));
    cr_assert(eq(str, o, "./b-q8")); /* default pattern {model}-{scheme} */
    qt_free(o);
    qt_manifest_free(m);
    char p[128];
    snprintf(p, sizeof p, "%s/plain.json", dir);
    unlink(p);
    rmdir(dir);
}

Test(manifest, braces_in_folder_are_not_placeholders)
{
    char dir[64], sub[128], err[QT_ERRMSG_SIZE] = "";
    cr_assert(qt_test_tmpdir(dir, sizeof dir) != NULL);
    snprintf(sub, sizeof sub, "%s/{model}", dir);
    cr_assert(eq(int, mkdir(sub, 0700), 0));
    const char *p = write_file(sub, "m.json", "{\"models\": [\"a\"], \"schemes\": [\"nf4\"]}");
    char path[512];
    snprintf(path, sizeof path, "%s", p);
    qt_manifest *m = NULL;
    cr_assert(eq(int, qt_manifest_load(path, &m, err), QT_OK), "%s", err);
    char *o = NULL, want[256];
    cr_assert(eq(int, qt_manifest_job_output(m, 0, &o), QT_OK));
    snprintf(want, sizeof want, "%s/a-nf4", sub);
    cr_assert(eq(str, o, want));
    qt_free(o);
    qt_manifest_free(m);
    unlink(path);
    rmdir(sub);
    rmdir(dir);
}

struct bad_case {
    const char *json, *msg;
};

Test(manifest, malformed)
{
    static const struct bad_case cases[] = {
        {"[]", "expected an object"},
        {"{\"schemes\": [\"nf4\"]}", "needs a \"models\" array"},
        {"{\"models\": [\"a\"]}", "needs a \"schemes\" array"},
        {"{\"models\": [], \"schemes\": [\"nf4\"]}", "\"models\" is empty"},
        {"{\"models\": [\"a\"], \"schemes\": []}", "\"schemes\" is empty"},
        {"{\"models\": [\"a\"], \"schemes\": [\"nf4\"], \"bogus\": 1}", "unknown key 'bogus'"},
        {"{\"models\": [{\"path\": \"a\", \"size\": 1}], \"schemes\": [\"nf4\"]}",
         "model 0 has unknown key 'size'"},
        {"{\"models\": [{\"name\": \"a\"}], \"schemes\": [\"nf4\"]}", "model 0: expected a path"},
        {"{\"models\": [\"a\", 3], \"schemes\": [\"nf4\"]}", "model 1: expected a path"},
        {"{\"models\": [\"a\\tb\"], \"schemes\": [\"nf4\"]}", "model 0: expected a path"},
        {"{\"models\": [\"\"], \"schemes\": [\"nf4\"]}", "model 0: expected a path"},
        {"{\"models\": [{\"name\": \"x/y\", \"path\": \"a\"}], \"schemes\": [\"nf4\"]}",
         "model 0: \"name\" must be"},
        {"{\"models\": [\"/\"], \"schemes\": [\"nf4\"]}", "gives no usable name"},
        {"{\"models\": [\"..\"], \"schemes\": [\"nf4\"]}", "gives no usable name"},
        {"{\"models\": [\"a\", \"b/a\"], \"schemes\": [\"nf4\"]}", "models 0 and 1 are both named 'a'"},
        {"{\"models\": [\"a\"], \"schemes\": [\"nf4\", {\"scheme\": \"nf4\"}]}",
         "schemes 0 and 1 are both named 'nf4'"},
        {"{\"models\": [\"a\"], \"schemes\": [{\"name\": \"x\"}]}", "scheme 0: expected a scheme"},
        {"{\"models\": [\"a\"], \"schemes\": [{\"scheme\": \"nf4\", \"bits\": 4}]}",
         "scheme 0 has unknown key 'bits'"},
        {"{\"models\": [\"a\"], \"schemes\": [{\"scheme\": \"nf4\", \"block\": 0}]}",
         "\"block\" must be an integer"},
        {"{\"models\": [\"a\"], \"schemes\": [{\"scheme\": \"nf4\", \"block\": 64.5}]}",
         "\"block\" must be an integer"},
        {"{\"models\": [\"a\"], \"schemes\": [{\"scheme\": \"nf4\", \"double_quant\": 0}]}",
         "\"double_quant\" must be true or false"},
        {"{\"models\": [\"a\"], \"schemes\": [{\"scheme\": \"nf4\", \"skip\": \"x\"}]}",
         "\"skip\" must be an array"},
        {"{\"models\": [\"a\"], \"schemes\": [{\"scheme\": \"nf4\", \"skip\": [\"x\", 1]}]}",
         "skip 1 must be"},
        {"{\"models\": [\"a\"], \"schemes\": [{\"scheme\": \"nf4\", \"max_shard_size\": -1}]}",
         "\"max_shard_size\" must be"},
        {"{\"models\": [\"a\"], \"schemes\": [{\"scheme\": \"nf4\", \"compute_dtype\": 16}]}",
         "\"compute_dtype\" must be"},
        {"{\"models\": [\"a\"], \"schemes\": [{\"scheme\": \"nf4\", \"recipe\": \"\"}]}",
         "\"recipe\" must be"},
        {"{\"models\": [\"a\"], \"schemes\": [\"nf4\"], \"outputs\": \"o/{model}\"}",
         "must contain both {model} and {scheme}"},
        {"{\"models\": [\"a\"], \"schemes\": [\"nf4\"], \"outputs\": \"{model}{scheme}{date}\"}",
         "unknown placeholder at '{date}'"},
        {"{\"models\": [\"a-b\", {\"name\": \"a\", \"path\": \"z\"}], \"schemes\": [\"nf4\", "
         "\"b-nf4\"]}",
         "a-b-nf4' is written twice: as the output of job 0 (model 'a-b', scheme 'nf4') and "
         "as the output of job 3 (model 'a', scheme 'b-nf4')"},
        /* issue 12 item 12: one job's output is another job's log or report */
        {"{\"models\": [\"m\"], \"schemes\": [\"nf4\", {\"scheme\": \"nf4\", \"name\": "
         "\"nf4.log\"}]}",
         "m-nf4.log' is written twice: as the log of job 0 (model 'm', scheme 'nf4') and as "
         "the output of job 1 (model 'm', scheme 'nf4.log')"},
        {"{\"models\": [\"m\"], \"schemes\": [\"q8\", {\"scheme\": \"q8\", \"name\": "
         "\"q8.report.json\"}]}",
         "m-q8.report.json' is written twice: as the report of job 0"},
        {"{\"models\": [\"a\"], \"schemes\": [\"nf4\"], \"bench_text\": 1}",
         "\"bench_text\" must be a path"},
        {"{\"models\": [\"a\"], \"schemes\": [\"nf4\"], \"models\": [\"b\"]}", "duplicate"},
        {"{\"models\": [\"a\"], \"schemes\": [\"nf4\"]} x", "m.json"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[QT_ERRMSG_SIZE] = "";
        qt_manifest *m = (qt_manifest *)1;
        qt_status st = load_text(cases[i].json, &m, err);
        cr_expect(eq(int, st, QT_ERR_FORMAT), "case %zu (%s): status %d", i, cases[i].json, st);
        cr_expect(eq(ptr, m, NULL), "case %zu", i);
        cr_expect(strstr(err, cases[i].msg) != NULL, "case %zu: '%s' lacks '%s'", i, err,
                  cases[i].msg);
        cr_expect(strstr(err, "m.json") != NULL, "case %zu: '%s' does not name the file", i, err);
    }
}

Test(manifest, missing_file)
{
    char err[QT_ERRMSG_SIZE] = "";
    qt_manifest *m = NULL;
    cr_assert(eq(int, qt_manifest_load("/nonexistent/m.json", &m, err), QT_ERR_IO));
    cr_assert(eq(ptr, m, NULL));
}

Test(manifest, too_many_jobs)
{
    /* 1001 models x 1000 schemes > QT_MANIFEST_MAX_JOBS */
    size_t cap = 64 + 1001 * 8 + 1000 * 40;
    char *t = malloc(cap), *w = t;
    cr_assert(t != NULL);
    w += sprintf(w, "{\"models\": [");
    for (int i = 0; i < 1001; i++) w += sprintf(w, "%s\"m%d\"", i ? "," : "", i);
    w += sprintf(w, "], \"schemes\": [");
    for (int i = 0; i < 1000; i++) w += sprintf(w, "%s{\"scheme\":\"nf4\",\"name\":\"s%d\"}",
                                                i ? "," : "", i);
    sprintf(w, "]}");
    char err[QT_ERRMSG_SIZE] = "";
    qt_manifest *m = NULL;
    cr_assert(eq(int, load_text(t, &m, err), QT_ERR_FORMAT));
    cr_assert(strstr(err, "more than 1000000 jobs") != NULL, "%s", err);
    free(t);
}

Test(manifest, shipped_sample)
{
    char err[QT_ERRMSG_SIZE] = "";
    qt_manifest *m = NULL;
    cr_assert(eq(int, qt_manifest_load("samples/batch-example.json", &m, err), QT_OK), "%s", err);
    cr_assert(eq(sz, qt_manifest_n_jobs(m), m->n_models * m->n_schemes));
    cr_assert(m->n_models >= 3 && m->n_schemes >= 2);
    cr_assert(eq(str, m->models[2].name, "stories260K-bf16"));
    cr_assert(strncmp(m->models[0].path, "samples/", 8) == 0);
    cr_assert(m->bench_text != NULL);
    qt_manifest_free(m);
}

Test(manifest, alloc_failures)
{
    char dir[64];
    cr_assert(qt_test_tmpdir(dir, sizeof dir) != NULL);
    const char *p = write_file(dir, "m.json", full);
    char path[512];
    snprintf(path, sizeof path, "%s", p);
    int ok_at = 0;
    for (uint64_t k = 1; k < 2000 && !ok_at; k++) {
        char err[QT_ERRMSG_SIZE] = "";
        qt_manifest *m = NULL;
        qt_alloc_fail_after(k);
        qt_status st = qt_manifest_load(path, &m, err);
        qt_alloc_fail_after(0);
        if (st == QT_OK) {
            ok_at = (int)k;
            qt_manifest_free(m);
        } else {
            cr_assert(eq(int, st, QT_ERR_NOMEM), "k=%llu: %s (%s)", (unsigned long long)k,
                      qt_status_str(st), err);
            cr_assert(eq(ptr, m, NULL));
        }
    }
    cr_assert(ok_at > 10, "loaded after %d allocations", ok_at);
    unlink(path);
    rmdir(dir);
}

Test(manifest, job_files)
{
    /* the files scripts/qtool-batch writes beside each OUT (docs/BATCH.md) */
    static const char *const want[][2] = {
        {"log", ".log"}, {"report", ".report.json"}, {"bench", ".bench.json"},
        {"bench_tmp", ".bench.json.tmp"}};
    cr_assert(eq(sz, qt_manifest_n_job_files(), 4));
    for (size_t i = 0; i < 4; i++) {
        const char *kind = NULL;
        cr_assert(eq(str, (char *)qt_manifest_job_file(i, &kind), (char *)want[i][1]));
        cr_assert(eq(str, (char *)kind, (char *)want[i][0]));
    }
    cr_assert(eq(ptr, (void *)qt_manifest_job_file(4, NULL), NULL));
}
