/* cli/cmd_batch_plan.c: `qtool batch-plan MANIFEST [--shard I/N]`: expands a
 * batch manifest (formats/manifest.h) into one conversion job per line, the
 * input of scripts/qtool-batch. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "convert/convert.h"
#include "formats/manifest.h"
#include "quant/quant.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qtool batch-plan MANIFEST [--shard I/N] [--estimate [--threads N]]\n\n"
            "Expands a batch manifest (docs/BATCH.md) into conversion jobs, models x schemes\n"
            "in manifest order, one per line, tab-separated:\n"
            "  JOB  MODEL  SCHEME-NAME  IN  OUT  CONVERT-ARGS...\n"
            "JOB is the job's index (from 0) in the whole manifest; CONVERT-ARGS are the\n"
            "`qtool convert IN OUT` options of the scheme (--scheme, --block, ...). Lines\n"
            "starting with '#' carry settings: '#jobs K TOTAL I/N', '#calib_text PATH',\n"
            "'#bench_text PATH', '#file KIND SUFFIX' (the files a job writes beside OUT:\n"
            "OUT + SUFFIX). Relative paths are resolved against the manifest's folder.\n\n"
            "  --shard I/N   only the jobs whose index %% N == I-1 (1 <= I <= N): N machines\n"
            "                given I = 1..N do every job exactly once, with no coordination\n"
            "  --estimate    instead of the plan, what each job needs (as `convert --dry-run`\n"
            "                prints it): JOB MODEL SCHEME PEAK_BYTES OUT_BYTES [ERROR], then\n"
            "                '#max_peak_bytes N' and '#total_out_bytes N'. A job whose input\n"
            "                cannot be planned shows '-' and its error (it will fail alone)\n"
            "  --threads N   threads each conversion will use (default: all cores)\n"
            "  -h, --help    this text\n");
}

static bool parse_shard(const char *s, long *i, long *n)
{
    char *end;
    errno = 0;
    long a = strtol(s, &end, 10);
    if (errno || end == s || *end != '/') return false;
    const char *q = end + 1;
    long b = strtol(q, &end, 10);
    if (errno || end == q || *end) return false;
    if (b < 1 || b > QT_MANIFEST_MAX_JOBS || a < 1 || a > b) return false;
    *i = a;
    *n = b;
    return true;
}

/* Checks a scheme entry against the scheme table; prints the error. */
static bool check_scheme(const char *path, size_t i, const qt_manifest_scheme *s)
{
    const qt_scheme_info *si = qt_scheme_find(s->scheme);
    if (!si || si->scheme == QT_SCHEME_INT8_BLOCKWISE) {
        qt_cli_error("manifest '%s': scheme %zu '%s': not one of nf4, fp4, int8, q8, bf16, fp16, "
                     "fp32",
                     path, i, s->scheme);
        return false;
    }
    if (s->block && si->scheme == QT_SCHEME_INT8) {
        qt_cli_error("manifest '%s': scheme %zu: int8 (LLM.int8) is row-wise and has no "
                     "\"block\"",
                     path, i);
        return false;
    }
    if (s->compute_dtype && strcmp(s->compute_dtype, "bf16") && strcmp(s->compute_dtype, "fp16") &&
        strcmp(s->compute_dtype, "fp32")) {
        qt_cli_error("manifest '%s': scheme %zu: \"compute_dtype\" '%s': not one of bf16, fp16, "
                     "fp32",
                     path, i, s->compute_dtype);
        return false;
    }
    uint64_t bytes;
    if (s->max_shard_size && !qt_cli_parse_size(s->max_shard_size, &bytes)) {
        qt_cli_error("manifest '%s': scheme %zu: \"max_shard_size\" '%s': expected a size such "
                     "as 2G or 500M",
                     path, i, s->max_shard_size);
        return false;
    }
    return true;
}

static void print_args(const qt_manifest_scheme *s)
{
    printf("\t--scheme\t%s", s->scheme);
    if (s->block) printf("\t--block\t%lld", (long long)s->block);
    if (s->no_double_quant) printf("\t--no-double-quant");
    if (s->compute_dtype) printf("\t--compute-dtype\t%s", s->compute_dtype);
    for (size_t k = 0; k < s->n_skip; k++) printf("\t--skip\t%s", s->skip[k]);
    if (s->recipe) printf("\t--recipe\t%s", s->recipe);
    if (s->max_shard_size) printf("\t--max-shard-size\t%s", s->max_shard_size);
}

/* The conversion options of a scheme entry, as `qtool convert` gets them
 * from print_args (defaults: convert's). */
static void scheme_opts(const qt_manifest_scheme *s, qt_conv_opts *o)
{
    memset(o, 0, sizeof *o);
    o->scheme = qt_scheme_find(s->scheme)->scheme;
    o->block = (size_t)s->block;
    o->double_quant = !s->no_double_quant;
    o->compute_dtype = s->compute_dtype;
    o->skip = (const char *const *)s->skip;
    o->n_skip = s->n_skip;
    o->recipe_path = s->recipe;
    if (s->max_shard_size) qt_cli_parse_size(s->max_shard_size, &o->max_shard_size);
    o->force = true; /* as --if-changed */
}

/* One job's row of --estimate: its needs, or '-' and why it cannot be
 * planned. Adds to *max_peak and *total_out. */
static void estimate_job(const qt_manifest *m, size_t k, const char *outp, int threads,
                         uint64_t *max_peak, uint64_t *total_out)
{
    const qt_manifest_model *md = &m->models[k / m->n_schemes];
    const qt_manifest_scheme *s = &m->schemes[k % m->n_schemes];
    qt_conv_opts o;
    scheme_opts(s, &o);
    o.in = md->path;
    o.out = outp;
    char err[QT_ERRMSG_SIZE] = "";
    qt_conv *cv = NULL;
    printf("%zu\t%s\t%s", k, md->name, s->name);
    if (qt_conv_plan(&o, &cv, err) != QT_OK) {
        printf("\t-\t-\t%s\n", err);
        return;
    }
    qt_conv_needs e;
    qt_conv_estimate(cv, threads, &e);
    qt_conv_free(cv);
    printf("\t%" PRIu64 "\t%" PRIu64 "\n", e.peak_bytes, e.out_bytes);
    *max_peak = e.peak_bytes > *max_peak ? e.peak_bytes : *max_peak;
    *total_out += e.out_bytes;
}

/* One job's line of the plan. */
static void plan_job(const qt_manifest *m, size_t k, const char *outp)
{
    const qt_manifest_model *md = &m->models[k / m->n_schemes];
    const qt_manifest_scheme *s = &m->schemes[k % m->n_schemes];
    printf("%zu\t%s\t%s\t%s\t%s", k, md->name, s->name, md->path, outp);
    print_args(s);
    putchar('\n');
}

int cmd_batch_plan(int argc, char **argv)
{
    enum { O_SHARD = 256, O_ESTIMATE, O_THREADS };
    static const struct option opts[] = {{"shard", required_argument, 0, O_SHARD},
                                         {"estimate", no_argument, 0, O_ESTIMATE},
                                         {"threads", required_argument, 0, O_THREADS},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    long shard_i = 1, shard_n = 1, threads = 0;
    bool estimate = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_SHARD:
            if (!parse_shard(optarg, &shard_i, &shard_n)) {
                qt_cli_error("--shard '%s': expected I/N with 1 <= I <= N (e.g. 3/8)", optarg);
                return QT_EXIT_USAGE;
            }
            break;
        case O_ESTIMATE: estimate = true; break;
        case O_THREADS:
            if (!qt_cli_parse_int("--threads", optarg, 1, 1024, &threads)) return QT_EXIT_USAGE;
            break;
        case 'h': usage(stdout); return QT_EXIT_OK;
        default: usage(stderr); return QT_EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        return QT_EXIT_USAGE;
    }
    const char *path = argv[optind];
    char err[QT_ERRMSG_SIZE] = "";
    qt_manifest *m = NULL;
    qt_status st = qt_manifest_load(path, &m, err);
    if (st != QT_OK) {
        qt_cli_error("%s", err);
        return qt_cli_exit_for(st);
    }
    int rc = QT_EXIT_OK;
    /* 1. every scheme is one convert knows */
    for (size_t i = 0; i < m->n_schemes; i++)
        if (!check_scheme(path, i, &m->schemes[i])) {
            rc = QT_EXIT_USAGE;
            goto out;
        }
    /* 2. the settings: job counts, texts, the files a job writes */
    size_t total = qt_manifest_n_jobs(m), mine = 0;
    for (size_t k = 0; k < total; k++) mine += k % (size_t)shard_n == (size_t)shard_i - 1;
    printf("#jobs\t%zu\t%zu\t%ld/%ld\n", mine, total, shard_i, shard_n);
    if (m->calib_text) printf("#calib_text\t%s\n", m->calib_text);
    if (m->bench_text) printf("#bench_text\t%s\n", m->bench_text);
    for (size_t i = 0; i < qt_manifest_n_job_files(); i++) {
        const char *kind, *suffix = qt_manifest_job_file(i, &kind);
        printf("#file\t%s\t%s\n", kind, suffix);
    }
    if (estimate) printf("#JOB\tMODEL\tSCHEME\tPEAK_BYTES\tOUT_BYTES\tERROR\n");
    /* 3. this shard's jobs: the plan, or what each will need */
    uint64_t max_peak = 0, total_out = 0;
    int nth = threads ? (int)threads : qt_cli_threads();
    for (size_t k = 0; k < total; k++) {
        if (k % (size_t)shard_n != (size_t)shard_i - 1) continue;
        char *outp = NULL;
        if (qt_manifest_job_output(m, k, &outp) != QT_OK) {
            qt_cli_error("out of memory");
            rc = QT_EXIT_FAIL;
            goto out;
        }
        if (estimate) estimate_job(m, k, outp, nth, &max_peak, &total_out);
        else plan_job(m, k, outp);
        qt_free(outp);
    }
    if (estimate)
        printf("#max_peak_bytes\t%" PRIu64 "\n#total_out_bytes\t%" PRIu64 "\n#threads\t%d\n",
               max_peak, total_out, nth);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        qt_cli_error("cannot write the plan: %s", strerror(errno));
        rc = QT_EXIT_FAIL;
    }
out:
    qt_manifest_free(m);
    return rc;
}
