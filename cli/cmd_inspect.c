/* cli/cmd_inspect.c: `qtool inspect PATH`: what is in a model file or
 * directory (safetensors, sharded or not, quantized or not; GGUF). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "calib/tensor_stats.h"
#include "cli/cli.h"
#include "common/cpu.h"
#include "formats/fsutil.h"
#include "formats/gguf.h"
#include "formats/layout.h"
#include "formats/modeldir.h"
#include "formats/pyjson.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qtool inspect PATH [--stats] [--json] [--threads N] [--isa ISA]\n"
            "                          [--follow-symlinks]\n"
            "       qtool inspect --cpu\n\n"
            "PATH is a safetensors file, a model directory (sharded or not, original or\n"
            "quantized) or a GGUF file. Shows every tensor (quantized weights as one\n"
            "logical weight: scheme, block size, original shape, bits per weight), totals,\n"
            "metadata and the architecture from config.json.\n\n"
            "  --stats      per tensor min, max, mean, std, absmax, NaN/Inf/subnormal counts\n"
            "               and values beyond 6 sigma\n"
            "  --json       the same as JSON on stdout\n"
            "  --threads N  threads for --stats (default: all cores)\n"
            "  --follow-symlinks  accept shards that are symlinks leaving the folder (a\n"
            "               Hugging Face cache snapshot); refused by default (rule I6)\n"
            "  --cpu        the CPU features and the SIMD path qtool uses\n");
}

/* ---- value readers for --stats ---------------------------------------- */
typedef struct plain_ctx {
    const qt_st_reader *r;
    const qt_st_tensor *t;
} plain_ctx;

static qt_status read_plain(void *vctx, uint64_t first, size_t count, float *dst, char *errmsg)
{
    plain_ctx *c = vctx;
    return qt_st_tensor_to_f32(c->r, c->t, first, count, dst, errmsg);
}

typedef struct qw_ctx {
    qt_qweight q;
} qw_ctx;

static qt_status read_qw(void *vctx, uint64_t first, size_t count, float *dst, char *errmsg)
{
    (void)errmsg;
    qw_ctx *c = vctx;
    size_t r0 = (size_t)(first / c->q.n_in), nr = count / c->q.n_in;
    qt_qweight_rows(NULL, &c->q, r0, nr, dst);
    return QT_OK;
}

typedef struct gguf_ctx {
    const qt_gguf *g;
    size_t t;
} gguf_ctx;

static qt_status read_gguf(void *vctx, uint64_t first, size_t count, float *dst, char *errmsg)
{
    gguf_ctx *c = vctx;
    return qt_gguf_tensor_to_f32(c->g, c->t, (size_t)first, count, dst, errmsg);
}

/* ---- output helpers ----------------------------------------------------- */
static void shape_str(const uint64_t *shape, size_t nd, char *buf, size_t n)
{
    size_t o = (size_t)snprintf(buf, n, "[");
    for (size_t i = 0; i < nd && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%" PRIu64, i ? ", " : "", shape[i]);
    if (o < n) snprintf(buf + o, n - o, "]");
}

static void json_shape(qt_strbuf *b, const uint64_t *shape, size_t nd)
{
    qt_strbuf_puts(b, "[");
    for (size_t i = 0; i < nd; i++) qt_strbuf_printf(b, "%s%" PRIu64, i ? ", " : "", shape[i]);
    qt_strbuf_puts(b, "]");
}

static void json_num(qt_strbuf *b, double v)
{
    char tmp[48];
    qt_py_float_repr(v, tmp, sizeof tmp);
    if (!isfinite(v)) snprintf(tmp, sizeof tmp, "null");
    qt_strbuf_puts(b, tmp);
}

static void json_stats(qt_strbuf *b, const qt_tensor_stats *s)
{
    qt_strbuf_puts(b, ", \"stats\": {\"min\": ");
    json_num(b, s->min);
    qt_strbuf_puts(b, ", \"max\": ");
    json_num(b, s->max);
    qt_strbuf_puts(b, ", \"mean\": ");
    json_num(b, s->mean);
    qt_strbuf_puts(b, ", \"std\": ");
    json_num(b, s->std);
    qt_strbuf_puts(b, ", \"absmax\": ");
    json_num(b, s->absmax);
    qt_strbuf_printf(b,
                     ", \"nan\": %" PRIu64 ", \"posinf\": %" PRIu64 ", \"neginf\": %" PRIu64
                     ", \"subnormal\": %" PRIu64 ", \"beyond_6sigma\": %" PRIu64 "}",
                     s->n_nan, s->n_posinf, s->n_neginf, s->n_subnormal, s->n_beyond_6sigma);
}

static void print_stats(const qt_tensor_stats *s)
{
    printf("    min %.6g  max %.6g  mean %.6g  std %.6g  absmax %.6g  nan %" PRIu64
           "  +inf %" PRIu64 "  -inf %" PRIu64 "  subnormal %" PRIu64 "  >6sigma %" PRIu64 "\n",
           s->min, s->max, s->mean, s->std, s->absmax, s->n_nan, s->n_posinf, s->n_neginf,
           s->n_subnormal, s->n_beyond_6sigma);
}

static void commas(uint64_t v, char *buf, size_t n)
{
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%" PRIu64, v);
    size_t len = strlen(tmp), o = 0;
    for (size_t i = 0; i < len && o + 1 < n; i++) {
        if (i && (len - i) % 3 == 0 && o + 2 < n) buf[o++] = ',';
        buf[o++] = tmp[i];
    }
    buf[o] = 0;
}

/* ---- safetensors / model directory -------------------------------------- */

/* The model line, its architecture and every shard's __metadata__ (a key
 * repeated by later shards once), as text or as the start of the JSON. */
static void print_modeldir_header(const char *path, const qt_modeldir *md, bool json,
                                  qt_strbuf *b)
{
    char arch[512];
    qt_modeldir_architecture_line(md, arch, sizeof arch);
    if (json) {
        qt_strbuf_puts(b, "{\"path\": ");
        qt_strbuf_json_string(b, path);
        qt_strbuf_printf(b, ", \"format\": \"safetensors\", \"shards\": %zu, \"architecture\": ",
                         qt_modeldir_n_shards(md));
        qt_strbuf_json_string(b, arch);
        qt_strbuf_puts(b, ", \"metadata\": {");
    } else {
        printf("model: %s (%zu shard%s)\n", path, qt_modeldir_n_shards(md),
               qt_modeldir_n_shards(md) == 1 ? "" : "s");
        printf("config: %s\n", arch);
    }
    size_t k = 0;
    for (size_t s = 0; s < qt_modeldir_n_shards(md); s++) {
        const qt_st_reader *r = qt_modeldir_shard(md, s);
        for (size_t i = 0; i < qt_st_reader_n_metadata(r); i++) {
            const char *key, *val;
            qt_st_reader_metadata(r, i, &key, &val);
            if (s > 0 && qt_st_reader_metadata_get(qt_modeldir_shard(md, 0), key)) continue;
            if (!json) {
                printf("metadata: %s = %.200s\n", key, val);
                continue;
            }
            qt_strbuf_puts(b, k++ ? ", " : "");
            qt_strbuf_json_string(b, key);
            qt_strbuf_puts(b, ": ");
            qt_strbuf_json_string(b, val);
        }
    }
    if (json) qt_strbuf_puts(b, "}, \"tensors\": [");
    else
        printf("\n%-48s %-12s %-16s %12s %12s %6s\n", "NAME", "SCHEME", "SHAPE", "PARAMS",
               "BYTES", "BPW");
}

/* --stats of one logical weight into *ts: plain tensors read as f32, quantized
 * ones dequantized row by row. QT_ERR_UNSUPPORTED (serr says why) is shown,
 * not fatal. */
static qt_status weight_stats(const qt_lweight *w, qt_tensor_stats *ts, char *serr)
{
    if (w->kind == QT_LW_PLAIN) {
        plain_ctx c = {w->reader, w->weight};
        if (!qt_dtype_is_readable(w->dtype))
            return qt_set_err(serr, QT_ERR_UNSUPPORTED, "unsupported dtype '%s'",
                              qt_dtype_name(w->dtype));
        return qt_tensor_stats_compute(w->n_elements, 65536, read_plain, &c, ts, serr);
    }
    qw_ctx c;
    qt_status st = qt_layout_qweight(w, &c.q, serr);
    if (st != QT_OK) return st;
    size_t rows = 65536 / c.q.n_in ? 65536 / c.q.n_in : 1;
    return qt_tensor_stats_compute(w->n_elements, rows * c.q.n_in, read_qw, &c, ts, serr);
}

/* One weight's row (and stats, when have_stats): a table line or a JSON object. */
static void print_weight(const qt_lweight *w, size_t i, const qt_tensor_stats *ts,
                         bool have_stats, const char *serr, bool json, qt_strbuf *b)
{
    if (json) {
        qt_strbuf_puts(b, i ? ", {\"name\": " : "{\"name\": ");
        qt_strbuf_json_string(b, w->name);
        qt_strbuf_puts(b, ", \"scheme\": ");
        qt_strbuf_json_string(b, qt_lweight_label(w));
        qt_strbuf_puts(b, ", \"dtype\": ");
        qt_strbuf_json_string(b, qt_dtype_name(w->dtype));
        qt_strbuf_puts(b, ", \"shape\": ");
        json_shape(b, w->shape, w->n_dims);
        qt_strbuf_printf(b, ", \"params\": %" PRIu64 ", \"bytes\": %" PRIu64
                            ", \"bits_per_weight\": ",
                         w->n_elements, w->nbytes);
        json_num(b, qt_lweight_bpw(w));
        qt_strbuf_printf(b, ", \"block_size\": %zu, \"double_quant\": %s", w->block_size,
                         w->double_quant ? "true" : "false");
        if (have_stats) json_stats(b, ts);
        qt_strbuf_puts(b, "}");
        return;
    }
    char shp[128], scheme[48], pbuf[32], bbuf[32];
    shape_str(w->shape, w->n_dims, shp, sizeof shp);
    if (w->block_size)
        snprintf(scheme, sizeof scheme, "%s/%zu", qt_lweight_label(w), w->block_size);
    else
        snprintf(scheme, sizeof scheme, "%s", qt_lweight_label(w));
    commas(w->n_elements, pbuf, sizeof pbuf);
    commas(w->nbytes, bbuf, sizeof bbuf);
    printf("%-48s %-12s %-16s %12s %12s %6.2f\n", w->name, scheme, shp, pbuf, bbuf,
           qt_lweight_bpw(w));
    if (have_stats) print_stats(ts);
    else if (serr[0]) printf("    stats: %s\n", serr);
}

/* The totals line (text) or object (JSON, then the whole document printed). */
static int print_modeldir_totals(size_t n, size_t n_stored, uint64_t params, uint64_t bytes,
                                 bool json, qt_strbuf *b)
{
    double bpw = params ? (double)bytes * 8 / (double)params : 0;
    if (!json) {
        char pbuf[32], bbuf[32];
        commas(params, pbuf, sizeof pbuf);
        commas(bytes, bbuf, sizeof bbuf);
        printf("\ntotal: %zu tensors (%zu stored), %s parameters, %s bytes, %.2f bits per "
               "weight\n",
               n, n_stored, pbuf, bbuf, bpw);
        return QT_EXIT_OK;
    }
    qt_strbuf_printf(b, "], \"totals\": {\"tensors\": %zu, \"stored_tensors\": %zu, "
                        "\"parameters\": %" PRIu64 ", \"bytes\": %" PRIu64
                        ", \"bits_per_weight\": ",
                     n, n_stored, params, bytes);
    json_num(b, bpw);
    qt_strbuf_puts(b, "}}\n");
    if (b->oom) {
        qt_cli_error("out of memory");
        return QT_EXIT_FAIL;
    }
    fputs(b->data, stdout);
    return QT_EXIT_OK;
}

static int inspect_modeldir(const char *path, bool stats, bool json, bool follow)
{
    char err[QT_ERRMSG_SIZE] = "";
    qt_modeldir *md = NULL;
    qt_layout *L = NULL;
    qt_strbuf b = {0};
    int rc = QT_EXIT_OK;
    /* the folder and its logical weights */
    qt_status st = qt_modeldir_open_ex(path, follow ? QT_MODELDIR_FOLLOW_SYMLINKS : 0, &md,
                                       NULL, NULL, err);
    if (st == QT_OK) st = qt_layout_build(md, &L, err);
    if (st != QT_OK) {
        qt_cli_error("%s", err);
        rc = qt_cli_exit_for(st);
        goto out;
    }
    print_modeldir_header(path, md, json, &b);
    /* one row per weight, with its stats when asked */
    uint64_t tot_params = 0, tot_bytes = 0;
    for (size_t i = 0; i < qt_layout_n(L); i++) {
        const qt_lweight *w = qt_layout_at(L, i);
        tot_params += w->n_elements;
        tot_bytes += w->nbytes;
        qt_tensor_stats ts;
        char serr[QT_ERRMSG_SIZE] = "";
        st = stats && w->n_elements ? weight_stats(w, &ts, serr) : QT_ERR_UNSUPPORTED;
        if (qt_cli_input_changed()) { /* stats of a file cut while read are not stats */
            rc = QT_EXIT_FAIL;
            goto out;
        }
        if (st != QT_OK && st != QT_ERR_UNSUPPORTED) {
            qt_cli_error("%s", serr);
            rc = qt_cli_exit_for(st);
            goto out;
        }
        print_weight(w, i, &ts, st == QT_OK, serr, json, &b);
    }
    rc = print_modeldir_totals(qt_layout_n(L), qt_modeldir_n_tensors(md), tot_params, tot_bytes,
                               json, &b);
out:
    qt_strbuf_release(&b);
    qt_layout_free(L);
    qt_modeldir_close(md);
    return rc;
}

/* ---- GGUF ------------------------------------------------------------------ */
static int inspect_gguf(const char *path, bool stats, bool json)
{
    char err[QT_ERRMSG_SIZE] = "";
    qt_gguf *g = NULL;
    qt_strbuf b = {0};
    int rc = QT_EXIT_OK;
    qt_status st = qt_gguf_open(path, &g, NULL, err);
    if (st != QT_OK) {
        qt_cli_error("%s", err);
        return qt_cli_exit_for(st);
    }
    size_t nkv = qt_gguf_n_kv(g), nt = qt_gguf_n_tensors(g);
    char val[512];
    if (json) {
        qt_strbuf_puts(&b, "{\"path\": ");
        qt_strbuf_json_string(&b, path);
        qt_strbuf_printf(&b, ", \"format\": \"gguf\", \"version\": %u, \"metadata\": {",
                         qt_gguf_version(g));
        for (size_t i = 0; i < nkv; i++) {
            qt_gguf_kv_format(g, i, val, sizeof val);
            qt_strbuf_puts(&b, i ? ", " : "");
            qt_strbuf_json_string(&b, qt_gguf_kv_key(g, i));
            qt_strbuf_puts(&b, ": ");
            qt_strbuf_json_string(&b, val);
        }
        qt_strbuf_puts(&b, "}, \"tensors\": [");
    } else {
        printf("model: %s (GGUF v%u, %zu metadata keys, alignment %u)\n", path,
               qt_gguf_version(g), nkv, qt_gguf_alignment(g));
        for (size_t i = 0; i < nkv; i++) {
            qt_gguf_kv_format(g, i, val, sizeof val);
            printf("metadata: %s = %.160s\n", qt_gguf_kv_key(g, i), val);
        }
        printf("\n%-48s %-12s %-16s %12s %12s %6s\n", "NAME", "TYPE", "SHAPE", "PARAMS",
               "BYTES", "BPW");
    }
    uint64_t tp = 0, tb = 0;
    for (size_t t = 0; t < nt; t++) {
        uint32_t nd = qt_gguf_tensor_n_dims(g, t);
        const int64_t *ne = qt_gguf_tensor_ne(g, t);
        uint64_t shape[4];
        for (uint32_t d = 0; d < nd; d++) shape[d] = (uint64_t)ne[nd - 1 - d];
        uint64_t ne_t = (uint64_t)qt_gguf_tensor_n_elements(g, t);
        uint64_t nb = qt_gguf_tensor_nbytes(g, t);
        tp += ne_t;
        tb += nb;
        const char *tn = qt_ggml_type_name(qt_gguf_tensor_type(g, t));
        qt_tensor_stats ts;
        bool have = false;
        char serr[QT_ERRMSG_SIZE] = "";
        if (stats && ne_t) {
            gguf_ctx c = {g, t};
            qt_status s2 = qt_tensor_stats_compute(ne_t, 65536, read_gguf, &c, &ts, serr);
            have = s2 == QT_OK;
            if (qt_cli_input_changed()) {
                rc = QT_EXIT_FAIL;
                goto out;
            }
        }
        if (json) {
            qt_strbuf_puts(&b, t ? ", {\"name\": " : "{\"name\": ");
            qt_strbuf_json_string(&b, qt_gguf_tensor_name(g, t));
            qt_strbuf_puts(&b, ", \"scheme\": ");
            qt_strbuf_json_string(&b, tn ? tn : "?");
            qt_strbuf_puts(&b, ", \"shape\": ");
            json_shape(&b, shape, nd);
            qt_strbuf_printf(&b, ", \"params\": %" PRIu64 ", \"bytes\": %" PRIu64
                                 ", \"bits_per_weight\": ",
                             ne_t, nb);
            json_num(&b, ne_t ? (double)nb * 8 / (double)ne_t : 0);
            if (have) json_stats(&b, &ts);
            qt_strbuf_puts(&b, "}");
        } else {
            char shp[128], pbuf[32], bbuf[32];
            shape_str(shape, nd, shp, sizeof shp);
            commas(ne_t, pbuf, sizeof pbuf);
            commas(nb, bbuf, sizeof bbuf);
            printf("%-48s %-12s %-16s %12s %12s %6.2f\n", qt_gguf_tensor_name(g, t),
                   tn ? tn : "?", shp, pbuf, bbuf, ne_t ? (double)nb * 8 / (double)ne_t : 0);
            if (have) print_stats(&ts);
            else if (stats && serr[0]) printf("    stats: %s\n", serr);
        }
    }
    double bpw = tp ? (double)tb * 8 / (double)tp : 0;
    if (json) {
        qt_strbuf_printf(&b, "], \"totals\": {\"tensors\": %zu, \"stored_tensors\": %zu, "
                             "\"parameters\": %" PRIu64 ", \"bytes\": %" PRIu64
                             ", \"bits_per_weight\": ",
                         nt, nt, tp, tb);
        json_num(&b, bpw);
        qt_strbuf_puts(&b, "}}\n");
        if (b.oom) rc = QT_EXIT_FAIL;
        else fputs(b.data, stdout);
    } else {
        char pbuf[32], bbuf[32];
        commas(tp, pbuf, sizeof pbuf);
        commas(tb, bbuf, sizeof bbuf);
        printf("\ntotal: %zu tensors, %s parameters, %s bytes, %.2f bits per weight\n", nt, pbuf,
               bbuf, bpw);
    }
out:
    qt_strbuf_release(&b);
    qt_gguf_close(g);
    return rc;
}

int cmd_inspect(int argc, char **argv)
{
    static const struct option opts[] = {
        {"stats", no_argument, 0, 's'},   {"json", no_argument, 0, 'j'},
        {"threads", required_argument, 0, 't'}, {"cpu", no_argument, 0, 'c'},
        {"isa", required_argument, 0, 'i'}, {"help", no_argument, 0, 'h'},
        {"follow-symlinks", no_argument, 0, 'f'},
        {0, 0, 0, 0}};
    bool stats = false, json = false, cpu = false, follow = false;
    const char *isa = NULL;
    long threads = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 's': stats = true; break;
        case 'j': json = true; break;
        case 'c': cpu = true; break;
        case 'f': follow = true; break;
        case 'i': isa = optarg; break;
        case 't':
            if (!qt_cli_parse_int("--threads", optarg, 1, 1024, &threads)) return QT_EXIT_USAGE;
            break;
        case 'h': usage(stdout); return QT_EXIT_OK;
        default: usage(stderr); return QT_EXIT_USAGE;
        }
    }
    if (!qt_cli_setup_isa(isa)) return QT_EXIT_USAGE;
    qt_cli_setup_threads(threads); /* the thread team, up front */
    if (cpu) {
        char *av[] = {"version", NULL};
        return cmd_version(1, av);
    }
    if (optind != argc - 1) {
        usage(stderr);
        return QT_EXIT_USAGE;
    }
    const char *path = argv[optind];
    struct stat sb;
    if (stat(path, &sb) != 0) {
        qt_cli_error("cannot open '%s': %s", path, strerror(errno));
        return QT_EXIT_USAGE; /* a path that does not exist is bad input */
    }
    if (qt_file_is_gguf(path)) return inspect_gguf(path, stats, json);
    return inspect_modeldir(path, stats, json, follow);
}
