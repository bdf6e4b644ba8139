/* convert/run.c: executing a conversion plan: stream every weight through
 * the kernels into the output shards, then assemble OUT atomically. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "common/half.h"
#include "calib/tensor_stats.h"
#include "common/progress.h"
#include "convert/convert.h"
#include "convert/convert_internal.h"
#include "formats/bnb.h"
#include "formats/fsutil.h"
#include "formats/input_file.h"
#include "formats/pyjson.h"
#include "formats/safetensors.h"

#define CHUNK_ELEMS ((size_t)1 << 20)

static qt_src_type src_type_of(qt_dtype d)
{
    return d == QT_DTYPE_BF16 ? QT_SRC_BF16 : d == QT_DTYPE_F16 ? QT_SRC_F16 : QT_SRC_F32;
}

static size_t dbytes(qt_dtype d) { return qt_dtype_bits(d) / 8; }

static bool cancelled(const qt_conv *c) { return c->o.cancel && *c->o.cancel; }

/* Converts n values between float dtypes (F32/F16/BF16) through a small
 * fp32 buffer. */
static void convert_values(qt_dtype sd, const void *src, qt_dtype dd, void *dst, size_t n,
                           float *tmp)
{
    if (sd == dd) {
        memcpy(dst, src, n * dbytes(sd));
        return;
    }
    for (size_t i = 0; i < n; i += CHUNK_ELEMS) {
        size_t m = n - i < CHUNK_ELEMS ? n - i : CHUNK_ELEMS;
        const float *f;
        if (sd == QT_DTYPE_F32) f = (const float *)src + i;
        else {
            if (sd == QT_DTYPE_BF16) qt_bf16_to_fp32_row((const uint16_t *)src + i, tmp, m);
            else qt_fp16_to_fp32_row((const uint16_t *)src + i, tmp, m);
            f = tmp;
        }
        if (dd == QT_DTYPE_F32) memcpy((float *)dst + i, f, m * 4);
        else if (dd == QT_DTYPE_BF16) qt_fp32_to_bf16_row(f, (uint16_t *)dst + i, m);
        else qt_fp32_to_fp16_row(f, (uint16_t *)dst + i, m);
    }
}

qt_status qt_conv_item_source(const qt_conv *c, const qt_conv_item *it, const void **src,
                              void **owned, char *errmsg)
{
    const qt_lweight *w = it->src;
    *owned = NULL;
    if (w->dtype == c->compute) {
        *src = w->weight->data;
        return QT_OK;
    }
    size_t bytes;
    if (!qt_mul_size((size_t)w->n_elements, dbytes(c->compute), &bytes))
        return qt_set_err(errmsg, QT_ERR_OVERFLOW, "tensor '%s': too large", w->name);
    void *buf = qt_malloc(bytes);
    float *tmp = qt_malloc(CHUNK_ELEMS * sizeof(float));
    if (!buf || !tmp) {
        qt_free(buf);
        qt_free(tmp);
        return qt_set_err(errmsg, QT_ERR_NOMEM, "tensor '%s': out of memory", w->name);
    }
    convert_values(w->dtype, w->weight->data, c->compute, buf, (size_t)w->n_elements, tmp);
    qt_free(tmp);
    *src = buf;
    *owned = buf;
    return QT_OK;
}

void qt_conv_qbuf_free(qt_qbuf *b)
{
    qt_free(b->codes);
    qt_free(b->absmax);
    qt_free(b->absmax_q);
    qt_free(b->nested);
    qt_free(b->scb);
    memset(b, 0, sizeof *b);
}

qt_status qt_conv_quantize(const qt_conv *c, const qt_conv_item *it, const float *dq_offset,
                           const void *src, qt_qbuf *b, qt_qweight *q, char *errmsg)
{
    qt_status st = QT_OK;
    const qt_lweight *w = it->src;
    const size_t n_out = (size_t)w->shape[0], n_in = (size_t)(w->n_elements / w->shape[0]);
    qt_qbuf_sizes sz;
    memset(b, 0, sizeof *b);
    /* the buffers the scheme fills */
    QT_CHECK(qt_qbuf_sizes_of(it->scheme, it->block, it->double_quant, n_out, n_in, &sz) == QT_OK,
             QT_ERR_ARG, "tensor '%s': not a quantizable weight", w->name);
    b->codes = qt_malloc(sz.codes);
    b->absmax = sz.absmax ? qt_malloc(sz.absmax) : NULL;
    b->absmax_q = sz.absmax_q ? qt_malloc(sz.absmax_q) : NULL;
    b->nested = sz.nested ? qt_malloc(sz.nested) : NULL;
    b->scb = sz.scb ? qt_malloc(sz.scb) : NULL;
    QT_CHECK(b->codes && (b->absmax || !sz.absmax) && (b->absmax_q || !sz.absmax_q) &&
                 (b->nested || !sz.nested) && (b->scb || !sz.scb),
             QT_ERR_NOMEM, "tensor '%s': out of memory", w->name);
    /* the kernels */
    st = qt_quantize_weight_rcp(NULL, it->scheme, it->block, it->double_quant, dq_offset,
                                c->o.rcp, src_type_of(c->compute), src, n_out, n_in, b, q);
    QT_CHECK(st == QT_OK, st, "tensor '%s': %squantization failed (%s)", w->name,
             st == QT_ERR_NUMERIC && it->double_quant ? "double " : "", qt_status_str(st));
fail:
    if (st != QT_OK) qt_conv_qbuf_free(b);
    return st;
}

/* Values of the source (compute dtype) as fp32, for calib/tensor_stats. */
typedef struct stats_src {
    qt_dtype dtype;
    const void *data;
} stats_src;

static qt_status stats_read(void *ctx, uint64_t first, size_t count, float *dst, char *errmsg)
{
    (void)errmsg;
    const stats_src *s = ctx;
    const unsigned char *p = (const unsigned char *)s->data + first * dbytes(s->dtype);
    if (s->dtype == QT_DTYPE_BF16) qt_bf16_to_fp32_row((const uint16_t *)p, dst, count);
    else if (s->dtype == QT_DTYPE_F16) qt_fp16_to_fp32_row((const uint16_t *)p, dst, count);
    else memcpy(dst, p, count * sizeof(float));
    return QT_OK;
}

/* The NaN / Inf policy of a tensor the scan flagged: counted by
 * calib/tensor_stats (the one counter), refused unless allowed. */
static qt_status check_finite(qt_conv *c, const qt_conv_item *it, const void *src, char *errmsg)
{
    if (c->o.allow_nonfinite) return QT_OK;
    stats_src ss = {c->compute, src};
    qt_tensor_stats ts;
    qt_status st = qt_tensor_stats_compute(it->src->n_elements, CHUNK_ELEMS, stats_read, &ss, &ts,
                                           errmsg);
    if (st != QT_OK) return st;
    if (ts.n_nan || ts.n_posinf || ts.n_neginf)
        return qt_set_err(errmsg, QT_ERR_NUMERIC,
                          "tensor '%s': %" PRIu64 " NaN and %" PRIu64
                          " Inf values; refusing to quantize it (--allow-nonfinite overrides)",
                          it->src->name, ts.n_nan, ts.n_posinf + ts.n_neginf);
    return QT_OK;
}

/* The NaN / Inf policy of an item whose source is at hand (single read):
 * one scan of the resident values, the counts only when it flags some. */
static qt_status nonfinite_policy(qt_conv *c, const qt_conv_item *it, const void *src,
                                  char *errmsg)
{
    bool nonfinite = false;
    qt_status st = qt_absmax_scan(src_type_of(c->compute), src, (size_t)it->src->n_elements, 4096,
                                  NULL, &nonfinite);
    if (st != QT_OK)
        return qt_set_err(errmsg, st, "tensor '%s': cannot scan it (%s)", it->src->name,
                          qt_status_str(st));
    return nonfinite ? check_finite(c, it, src, errmsg) : QT_OK;
}

/* The prepass for one QUANT item: the NaN / Inf policy and, with double
 * quantization, the nested offset (qt_dq_mean of the block absmax, which
 * sizes the quant_state JSON). One read of the data; only a tensor that
 * holds NaN under --allow-nonfinite goes through the kernels instead, so
 * the offset is always the one the quantization pass computes. */
static qt_status prepass_item(qt_conv *c, qt_conv_item *it, const void *src, char *errmsg)
{
    qt_status st = QT_OK;
    size_t n = (size_t)it->src->n_elements;
    bool fam4 = it->scheme == QT_SCHEME_NF4 || it->scheme == QT_SCHEME_FP4;
    size_t block = fam4 ? it->block : 4096, nb = qt_n_blocks(n, block);
    float *absmax = NULL;
    bool nonfinite = false;
    if (it->double_quant) {
        absmax = qt_malloc(nb * sizeof(float));
        QT_CHECK(absmax != NULL, QT_ERR_NOMEM, "tensor '%s': out of memory", it->src->name);
    }
    st = qt_absmax_scan(src_type_of(c->compute), src, n, block, absmax, &nonfinite);
    QT_CHECK(st == QT_OK, st, "tensor '%s': cannot scan it (%s)", it->src->name,
             qt_status_str(st));
    if (nonfinite) QT_TRY(check_finite(c, it, src, errmsg)); /* refuses unless allowed */
    if (it->double_quant) {
        float off;
        if (nonfinite) { /* NaN / Inf allowed: the kernels' own absmax rules */
            qt_qbuf b;
            qt_qweight q;
            QT_TRY(qt_conv_quantize(c, it, NULL, src, &b, &q, errmsg));
            off = q.nested_offset;
            qt_conv_qbuf_free(&b);
        } else {
            /* --match cuda: the GPU flushes subnormal inputs, so a block of
             * subnormals has absmax 0 there; then torch's CUDA mean */
            if (c->o.rcp)
                for (size_t b = 0; b < nb; b++)
                    if (absmax[b] < 0x1p-126f) absmax[b] = 0.0f;
            st = c->o.rcp ? qt_dq_mean_cuda(absmax, nb, &off) : qt_dq_mean(absmax, nb, &off);
            QT_CHECK(st == QT_OK, st, "tensor '%s': double quantization failed (%s)",
                     it->src->name, qt_status_str(st));
        }
        it->nested_offset = off; /* told to the output after the prepass */
    }
fail:
    qt_free(absmax);
    return st;
}

/* ---- tensor-level parallelism ------------------------------------------
 * Threads take whole tensors (dynamic schedule, item order); the kernels
 * inside run on one thread each (nested regions are inactive), so one
 * thread quantizes while another copies its result into the page cache.
 * Output bytes do not depend on who computes what: every tensor's bytes
 * are a function of its input, written at offsets fixed before. The writer
 * is used by one thread at a time (critical section); the input bytes in
 * flight are kept under a budget so memory stays bounded. */
static qt_status out_write_quant(qt_conv *c, qt_conv_item *it, const qt_qweight *q,
                                 char *errmsg)
{
    qt_status st;
#ifdef _OPENMP
#pragma omp critical(qt_conv_writer)
#endif
    {
        st = qt_outfmt_write_quant(c->out, it->out_id, q, errmsg);
        it->bytes_out = qt_outfmt_weight_bytes(c->out, it->out_id); /* single read: now known */
    }
    return st;
}

static qt_status out_write_plain(qt_conv *c, const qt_conv_item *it, uint64_t off,
                                 const void *data, size_t n, char *errmsg)
{
    qt_status st;
#ifdef _OPENMP
#pragma omp critical(qt_conv_writer)
#endif
    st = qt_outfmt_write_plain(c->out, it->out_id, off, data, n, errmsg);
    return st;
}

typedef struct par_state {
    uint64_t inflight, limit; /* bytes of the tensors being worked on */
    qt_status st;             /* the failure of the lowest failing item */
    size_t err_item;
    char errmsg[QT_ERRMSG_SIZE];
    volatile int stop;
} par_state;

static void par_init(par_state *p, const qt_conv *c)
{
    memset(p, 0, sizeof *p);
    p->err_item = SIZE_MAX;
    p->limit = qt_conv_budget(c); /* convert/estimate.c */
}

static void par_acquire(par_state *p, uint64_t need)
{
    for (;;) {
        bool ok;
#ifdef _OPENMP
#pragma omp critical(qt_conv_budget)
#endif
        {
            ok = p->inflight == 0 || p->inflight + need <= p->limit;
            if (ok) p->inflight += need;
        }
        if (ok || p->stop) return;
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
}

static void par_release(par_state *p, uint64_t need)
{
#ifdef _OPENMP
#pragma omp critical(qt_conv_budget)
#endif
    p->inflight -= need;
}

/* Records item i's failure; the lowest failing item's message wins, so the
 * message does not depend on the schedule. */
static void par_fail(par_state *p, size_t i, qt_status st, const char *msg)
{
#ifdef _OPENMP
#pragma omp critical(qt_conv_err)
#endif
    {
        if (i < p->err_item) {
            p->err_item = i;
            p->st = st;
            snprintf(p->errmsg, sizeof p->errmsg, "%s", msg);
        }
        p->stop = 1;
    }
}

/* ---- writing plain tensors ------------------------------------------- */
static qt_status write_plain(qt_conv *c, qt_conv_item *it, char *errmsg)
{
    qt_status st = QT_OK;
    const qt_lweight *w = it->src;
    size_t n = (size_t)w->n_elements;
    void *out = NULL;
    float *tmp = NULL;
    if (it->action == QT_ACT_COPY || (w->kind == QT_LW_PLAIN && w->dtype == it->out_dtype)) {
        const unsigned char *p = w->weight->data;
        for (uint64_t off = 0; off < w->weight->nbytes; off += 64u << 20) {
            size_t m = (size_t)(w->weight->nbytes - off < (64u << 20) ? w->weight->nbytes - off
                                                                      : (64u << 20));
            QT_TRY(out_write_plain(c, it, off, p + off, m, errmsg));
        }
        return QT_OK;
    }
    out = qt_malloc(CHUNK_ELEMS * dbytes(it->out_dtype));
    tmp = qt_malloc(CHUNK_ELEMS * sizeof(float));
    QT_CHECK(out && tmp, QT_ERR_NOMEM, "out of memory");
    if (w->kind == QT_LW_PLAIN) {
        for (size_t i = 0; i < n; i += CHUNK_ELEMS) {
            size_t m = n - i < CHUNK_ELEMS ? n - i : CHUNK_ELEMS;
            convert_values(w->dtype, (const char *)w->weight->data + i * dbytes(w->dtype),
                           it->out_dtype, out, m, tmp);
            QT_TRY(out_write_plain(c, it, (uint64_t)i * dbytes(it->out_dtype), out,
                            m * dbytes(it->out_dtype), errmsg));
        }
    } else { /* dequantize a quantized weight a few rows at a time */
        qt_qweight q;
        QT_TRY(qt_layout_qweight(w, &q, errmsg));
        size_t rows = CHUNK_ELEMS / q.n_in ? CHUNK_ELEMS / q.n_in : 1;
        float *f = tmp;
        if (rows * q.n_in > CHUNK_ELEMS) {
            qt_free(tmp);
            qt_free(out);
            tmp = qt_malloc(q.n_in * sizeof(float));
            out = qt_malloc(q.n_in * dbytes(it->out_dtype));
            QT_CHECK(tmp && out, QT_ERR_NOMEM, "out of memory");
            f = tmp;
        }
        for (size_t r = 0; r < q.n_out; r += rows) {
            size_t nr = q.n_out - r < rows ? q.n_out - r : rows;
            qt_qweight_rows(NULL, &q, r, nr, f);
            convert_values(QT_DTYPE_F32, f, it->out_dtype, out, nr * q.n_in, NULL);
            QT_TRY(out_write_plain(c, it, (uint64_t)r * q.n_in * dbytes(it->out_dtype),
                            out, nr * q.n_in * dbytes(it->out_dtype), errmsg));
        }
    }
fail:
    qt_free(out);
    qt_free(tmp);
    return st;
}

/* ---- provenance ------------------------------------------------------ */
typedef qt_status (*prov_fn)(void *ctx, const char *key, const char *value);

/* Calls fn for every provenance pair of the output's __metadata__, in the
 * order written: qtool.version, .scheme, .block_size, .double_quant,
 * .compute_dtype, .options, .input.<i> ("<shard> <fingerprint>"). */
static qt_status provenance(const qt_conv *c, prov_fn fn, void *ctx)
{
    qt_status st;
    const qt_scheme_info *si = qt_scheme_get(c->o.scheme);
    char buf[96];
    if ((st = fn(ctx, "qtool.version", QT_VERSION_STRING))) return st;
    if ((st = fn(ctx, "qtool.scheme", si->name))) return st;
    snprintf(buf, sizeof buf, "%zu",
             c->o.block ? c->o.block : (c->o.scheme == QT_SCHEME_INT8 ? 0 : si->default_block));
    if ((st = fn(ctx, "qtool.block_size", buf))) return st;
    bool dq = (c->o.scheme == QT_SCHEME_NF4 || c->o.scheme == QT_SCHEME_FP4) && c->o.double_quant;
    if ((st = fn(ctx, "qtool.double_quant", dq ? "true" : "false"))) return st;
    if ((st = fn(ctx, "qtool.compute_dtype", qt_conv_torch_name(c->compute)))) return st;
    if ((st = fn(ctx, "qtool.options", c->options ? c->options : ""))) return st;
    if (c->o.rcp && (st = fn(ctx, "qtool.match", "cuda"))) return st;
    for (size_t i = 0; i < qt_modeldir_n_shards(c->md); i++) {
        char key[96], hex[65], val[4200];
        qt_conv_fingerprint(qt_modeldir_shard(c->md, i), hex);
        snprintf(key, sizeof key, "qtool.input.%zu", i);
        snprintf(val, sizeof val, "%s %s", qt_modeldir_shard_name(c->md, i), hex);
        if ((st = fn(ctx, key, val))) return st;
    }
    return QT_OK;
}

static qt_status add_meta(void *ctx, const char *key, const char *value)
{
    return qt_outfmt_add_metadata(ctx, key, value, NULL);
}

struct prov_cmp {
    const qt_st_reader *r;
    char *reason;
    size_t reason_n;
    bool differ;
};

static qt_status cmp_meta(void *ctx, const char *key, const char *value)
{
    struct prov_cmp *p = ctx;
    const char *have = qt_st_reader_metadata_get(p->r, key);
    if (!p->differ && (!have || strcmp(have, value) != 0)) {
        p->differ = true;
        snprintf(p->reason, p->reason_n, "%s: recorded '%.60s', now '%.60s'", key,
                 have ? have : "(none)", value);
    }
    return QT_OK;
}

qt_status qt_conv_up_to_date(const qt_conv *c, bool *up_to_date, char *reason, size_t reason_n)
{
    char p[PATH_MAX], tmp[256];
    struct stat sb;
    qt_st_reader *r = NULL;
    *up_to_date = false;
    if (!reason || !reason_n) reason = tmp, reason_n = sizeof tmp;
    reason[0] = 0;
    if (stat(c->o.out, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        snprintf(reason, reason_n, "'%s' is not a folder", c->o.out);
        return QT_OK;
    }
    {   /* a folder that is not a previous qtool output is never converted over */
        char why[QT_ERRMSG_SIZE];
        qt_status rs = qt_conv_check_replaceable(c->o.out, why);
        if (rs != QT_OK) {
            snprintf(reason, reason_n, "%s", why);
            return rs;
        }
    }
    /* every file the run writes is there (OUT only ever appears complete) */
    for (size_t i = 0; i < qt_outfmt_n_files(c->out); i++) {
        const char *f = qt_outfmt_file(c->out, i);
        if (!qt_path_join(p, sizeof p, c->o.out, f) || stat(p, &sb) != 0) {
            snprintf(reason, reason_n, "'%s' is missing%s", f,
                     i < qt_outfmt_n_weight_files(c->out) ? " (shard layout differs)" : "");
            return QT_OK;
        }
    }
    /* the provenance in the first file's metadata */
    qt_path_join(p, sizeof p, c->o.out, qt_outfmt_file(c->out, 0));
    char err[QT_ERRMSG_SIZE];
    qt_status st = qt_st_reader_open(p, &r, err);
    if (st == QT_ERR_NOMEM) return st;
    if (st != QT_OK) {
        snprintf(reason, reason_n, "%.200s", err);
        return QT_OK;
    }
    struct prov_cmp pc = {r, reason, reason_n, false};
    provenance(c, cmp_meta, &pc);
    if (!pc.differ) {
        char key[64];
        snprintf(key, sizeof key, "qtool.input.%zu", qt_modeldir_n_shards(c->md));
        if (qt_st_reader_metadata_get(r, key)) {
            pc.differ = true;
            snprintf(reason, reason_n, "the input had more shards");
        }
    }
    qt_st_reader_close(r);
    *up_to_date = !pc.differ;
    return QT_OK;
}

/* ---- the run ----------------------------------------------------------- */

/* Converts item it into the output (any thread). */
static qt_status run_item(qt_conv *c, qt_conv_item *it, char *errmsg)
{
    qt_status st = QT_OK;
    qt_qbuf b = {0};
    qt_loftq_result lq = {0};
    void *owned = NULL;
    double ti = qt_now();
    qt_st_tensor_prefetch(it->src->reader, it->src->weight);
    if (it->action == QT_ACT_QUANT) {
        const void *src;
        qt_qweight q;
        QT_TRY(qt_conv_item_source(c, it, &src, &owned, errmsg));
        /* single read: the NaN / Inf policy here, the offset from the kernels */
        if (c->single_read) QT_TRY(nonfinite_policy(c, it, src, errmsg));
        if (qt_conv_loftq_on(c)) /* --loftq: the LoftQ base (loftq_run.c) */
            QT_TRY(qt_conv_loftq_quantize(c, it, src, &lq, &q, errmsg));
        else
            QT_TRY(qt_conv_quantize(c, it, c->single_read ? NULL : &it->nested_offset, src, &b,
                                    &q, errmsg));
        it->nested_offset = q.nested_offset;
        QT_TRY(out_write_quant(c, it, &q, errmsg));
        if (c->o.metrics) { /* error of the quantized weight against its source */
            qt_qweight qo;
            memset(&qo, 0, sizeof qo);
            qo.scheme = c->compute == QT_DTYPE_BF16   ? QT_SCHEME_BF16
                        : c->compute == QT_DTYPE_F16 ? QT_SCHEME_FP16
                                                      : QT_SCHEME_FP32;
            qo.n_out = q.n_out;
            qo.n_in = q.n_in;
            qo.data = src;
            if (qt_weight_error_compute(&qo, &q, &it->error) == QT_OK) it->have_error = true;
        }
    } else {
        QT_TRY(write_plain(c, it, errmsg));
    }
fail:
    qt_conv_qbuf_free(&b);
    qt_loftq_result_release(&lq);
    qt_free(owned);
    qt_st_tensor_release(it->src->reader, it->src->weight);
    it->seconds = qt_now() - ti;
    return st;
}

/* The prepass of item it (any thread). */
static qt_status prepass_run(qt_conv *c, qt_conv_item *it, char *errmsg)
{
    void *owned = NULL;
    const void *src;
    qt_status st = qt_conv_item_source(c, it, &src, &owned, errmsg);
    if (st == QT_OK) st = prepass_item(c, it, src, errmsg);
    if (st == QT_OK) st = qt_conv_loftq_prepass(c, it, src, errmsg);
    qt_free(owned);
    qt_st_tensor_release(it->src->reader, it->src->weight);
    return st;
}

/* Runs fn on every item of the given action in parallel (whole tensors per
 * thread, item order, memory budget); the lowest failing item's message
 * wins. prog (may be NULL) counts items done. */
typedef qt_status (*item_fn)(qt_conv *c, qt_conv_item *it, char *errmsg);
static qt_status for_items(qt_conv *c, bool quant_only, item_fn fn, qt_progress *prog,
                           char *errmsg)
{
    par_state ps;
    par_init(&ps, c);
#ifdef _OPENMP
    const int nth = omp_get_max_threads();
#endif
    const ptrdiff_t ni = (ptrdiff_t)c->n_items;
    ptrdiff_t i;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(nth) if (nth > 1)
#endif
    for (i = 0; i < ni; i++) {
        qt_conv_item *it = &c->items[i];
        if ((quant_only && it->action != QT_ACT_QUANT) || ps.stop) continue;
        char e[QT_ERRMSG_SIZE] = "";
        uint64_t need = qt_conv_item_need(c, it);
        par_acquire(&ps, need);
        qt_status s1 = fn(c, it, e);
        par_release(&ps, need);
        if (s1 == QT_OK && cancelled(c)) s1 = qt_set_err(e, QT_ERR_ARG, "cancelled");
        if (s1 != QT_OK) par_fail(&ps, (size_t)i, s1, e);
        if (prog) {
#ifdef _OPENMP
#pragma omp critical(qt_conv_progress)
#endif
            qt_progress_add(prog, 1, it->bytes_in);
        }
    }
    if (ps.st != QT_OK) return qt_set_err(errmsg, ps.st, "%s", ps.errmsg);
    return QT_OK;
}

/* Refuses an OUT that may not be replaced (it holds the input, or it is
 * not a previous qtool output) and an input whose copied files link out
 * of IN; *exists says whether OUT is there. Before any work (convert and
 * merge). */
qt_status qt_conv_check_out(const char *out, const char *in_dir, bool force, bool follow_symlinks,
                            bool *exists, char *errmsg)
{
    qt_status st = QT_OK;
    struct stat sb;
    *exists = lstat(out, &sb) == 0;
    QT_CHECK(!*exists || force, QT_ERR_ARG, "output '%s' exists (--force replaces it)", out);
    QT_CHECK(!*exists || S_ISDIR(sb.st_mode), QT_ERR_ARG,
             "output '%s' exists and is not a folder; refusing to replace it", out);
    char rin[PATH_MAX], rout[PATH_MAX];
    if (*exists && realpath(in_dir, rin) && realpath(out, rout)) {
        size_t lo = strlen(rout);
        QT_CHECK(!(strncmp(rin, rout, lo) == 0 && (rin[lo] == 0 || rin[lo] == '/')), QT_ERR_ARG,
                 "output '%s' holds the input: refusing to replace it", out);
    }
    if (*exists) QT_TRY(qt_conv_check_replaceable(out, errmsg)); /* never a user's folder */
    QT_TRY(qt_conv_check_links(in_dir, follow_symlinks, errmsg)); /* nothing from outside IN (I6) */
fail:
    return st;
}

/* Prepass over every weight to quantize: the NaN / Inf policy and the
 * double-quantization offsets, then told to the output (they size the
 * quant_state blobs). */
static qt_status prepass(qt_conv *c, char *errmsg)
{
    qt_status st = QT_OK;
    double tp = qt_now();
    QT_TRY(for_items(c, true, prepass_run, NULL, errmsg));
    for (size_t i = 0; i < c->n_items; i++)
        if (c->items[i].double_quant) QT_TRY(qt_conv_item_redeclare(c, &c->items[i], errmsg));
    c->t_prepass = qt_now() - tp;
fail:
    return st;
}

/* The output's metadata: provenance, then calibration fallbacks. */
static qt_status output_metadata(qt_conv *c, char *errmsg)
{
    qt_status st = provenance(c, add_meta, c->out);
    if (st != QT_OK) return qt_set_err(errmsg, st, "out of memory");
    st = qt_conv_fallback_metadata(c, c->out, errmsg);
    if (st == QT_OK) st = qt_conv_budget_metadata(c, c->out, errmsg);
    return st;
}

/* The known non-weight files of the input (tokenizer, generation config,
 * chat template, README/license; config.json aside: the format derives its
 * own) placed in the output's staging folder by convert/outdir.c's rules:
 * nothing else, within their reader's bounds, symlinks only inside IN,
 * never more readable than at the source. A format that takes no files
 * gets none (convert and merge). */
qt_status qt_conv_output_files(const char *in_dir, bool follow_symlinks, qt_outfmt *out,
                               char *errmsg)
{
    const char *dir = qt_outfmt_stage_dir(out);
    return dir ? qt_conv_copy_files(in_dir, follow_symlinks, dir, errmsg) : QT_OK;
}

qt_status qt_conv_measure(qt_conv *c, char *errmsg)
{
    qt_status st = QT_OK;
    if (c->measured) return QT_OK;
    QT_TRY(qt_conv_loftq_prepare(c, errmsg)); /* --loftq: options against the plan */
    if (!c->single_read) QT_TRY(prepass(c, errmsg)); /* else each weight is read once, below */
    if (c->o.check) QT_TRY(qt_conv_check_pass(c, errmsg)); /* calibration (validate.c) */
    QT_TRY(qt_conv_budget_select(c, errmsg));             /* --budget (budget.c) */
    c->measured = true;
fail:
    return st;
}

qt_status qt_conv_run(qt_conv *c, char *errmsg)
{
    qt_status st = QT_OK;
    bool exists;
    double t0 = qt_now();
    QT_TRY(qt_conv_check_out(c->o.out, c->in_dir, c->o.force, c->o.follow_symlinks, &exists,
                             errmsg));
    QT_TRY(qt_conv_measure(c, errmsg));
    QT_TRY(output_metadata(c, errmsg));
    /* every weight through the kernels into the output */
    double tw = qt_now();
    QT_TRY(qt_outfmt_begin(c->out, exists, errmsg));
    uint64_t total_in = 0;
    for (size_t i = 0; i < c->n_items; i++) total_in += c->items[i].bytes_in;
    qt_progress prog;
    qt_progress_init(&prog, c->o.progress, c->o.progress != NULL, "convert", c->n_items, total_in);
    QT_TRY(for_items(c, false, run_item, &prog, errmsg));
    c->t_write = qt_now() - tw;
    qt_progress_finish(&prog);
    /* the other files, then the output completed and moved into place */
    double tf = qt_now();
    QT_TRY(qt_conv_output_files(c->in_dir, c->o.follow_symlinks, c->out, errmsg));
    QT_TRY(qt_conv_loftq_finish(c, errmsg)); /* --loftq: the adapter into OUT */
    QT_CHECK(!cancelled(c), QT_ERR_ARG, "cancelled");
    QT_TRY(qt_conv_check_input(c, errmsg)); /* what was read is what was opened */
    QT_TRY(qt_outfmt_commit(c->out, (const char *const *)c->skip_modules, c->n_skip_modules,
                            errmsg));
    c->t_finish = qt_now() - tf;
    c->seconds_total = qt_now() - t0;
fail:
    /* a failure because IN changed under the run (a write from a mapping
     * past its new end: "Bad address") names that cause */
    if (st != QT_OK && st != QT_ERR_NOMEM && qt_conv_check_input(c, NULL) != QT_OK)
        st = qt_conv_check_input(c, errmsg);
    return st;
}

/* ---- report ------------------------------------------------------------ */
static void jnum(qt_strbuf *b, double v)
{
    char t[48];
    if (!isfinite(v)) snprintf(t, sizeof t, "null");
    else qt_py_float_repr(v, t, sizeof t);
    qt_strbuf_puts(b, t);
}

qt_status qt_conv_report_json(const qt_conv *c, char **json, char *errmsg)
{
    qt_strbuf b = {0};
    uint64_t tin = 0, tout = 0;
    qt_strbuf_puts(&b, "{\n  \"input\": ");
    qt_strbuf_json_string(&b, c->o.in);
    qt_strbuf_puts(&b, ",\n  \"output\": ");
    qt_strbuf_json_string(&b, c->o.out);
    qt_strbuf_printf(&b, ",\n  \"qtool_version\": \"%s\",\n  \"scheme\": \"%s\",\n"
                         "  \"compute_dtype\": \"%s\",\n  \"seconds\": ",
                     QT_VERSION_STRING, qt_scheme_get(c->o.scheme)->name,
                     qt_conv_torch_name(c->compute));
    jnum(&b, c->seconds_total);
    qt_strbuf_puts(&b, ",\n  \"tensors\": [");
    for (size_t i = 0; i < c->n_items; i++) {
        const qt_conv_item *it = &c->items[i];
        tin += it->bytes_in;
        tout += it->bytes_out;
        qt_strbuf_puts(&b, i ? ",\n    {\"name\": " : "\n    {\"name\": ");
        qt_strbuf_json_string(&b, it->src->name);
        const char *sn = qt_scheme_get(it->scheme)->name;
        qt_strbuf_printf(&b, ", \"action\": \"%s\", \"scheme\": \"%s%s\", \"block_size\": %zu",
                         it->action == QT_ACT_QUANT ? "quantize"
                         : it->action == QT_ACT_KEEP ? "keep"
                                                     : "copy",
                         sn, it->double_quant ? "+dq" : "", it->block);
        qt_strbuf_puts(&b, ", \"reason\": ");
        qt_strbuf_json_string(&b, it->reason);
        qt_strbuf_puts(&b, ", \"shape\": [");
        for (size_t d = 0; d < it->src->n_dims; d++)
            qt_strbuf_printf(&b, "%s%" PRIu64, d ? ", " : "", it->src->shape[d]);
        qt_strbuf_printf(&b, "], \"bytes_in\": %" PRIu64 ", \"bytes_out\": %" PRIu64, it->bytes_in,
                         it->bytes_out);
        if (it->have_error) {
            qt_strbuf_puts(&b, ", \"rmse\": ");
            jnum(&b, it->error.rmse);
            qt_strbuf_puts(&b, ", \"max_abs_error\": ");
            jnum(&b, it->error.max_abs);
            qt_strbuf_puts(&b, ", \"sqnr_db\": ");
            jnum(&b, it->error.sqnr_db);
            qt_strbuf_puts(&b, ", \"cosine\": ");
            jnum(&b, it->error.cosine);
        }
        qt_strbuf_puts(&b, ", \"seconds\": ");
        jnum(&b, it->seconds);
        qt_strbuf_puts(&b, "}");
    }
    qt_strbuf_printf(&b, "\n  ],\n  \"bytes_in\": %" PRIu64 ",\n  \"bytes_out\": %" PRIu64, tin,
                     tout);
    qt_conv_budget_report(c, &b);
    qt_conv_loftq_report(c, &b);
    qt_strbuf_puts(&b, "\n}\n");
    if (b.oom) {
        qt_strbuf_release(&b);
        return qt_set_err(errmsg, QT_ERR_NOMEM, "out of memory");
    }
    *json = b.data;
    return QT_OK;
}
