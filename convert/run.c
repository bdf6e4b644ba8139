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

/* Counts NaN and +-Inf in n values of a float dtype. */
static void count_nonfinite(qt_dtype d, const void *p, size_t n, uint64_t *nan, uint64_t *inf)
{
    uint64_t a = 0, b = 0;
    if (d == QT_DTYPE_F32) {
        const uint32_t *u = p;
        for (size_t i = 0; i < n; i++) {
            uint32_t x = u[i] & 0x7fffffffu;
            a += x > 0x7f800000u;
            b += x == 0x7f800000u;
        }
    } else {
        const uint16_t *u = p;
        uint16_t e = d == QT_DTYPE_BF16 ? 0x7f80 : 0x7c00;
        for (size_t i = 0; i < n; i++) {
            uint16_t x = u[i] & 0x7fff;
            a += x > e;
            b += x == e;
        }
    }
    *nan = a;
    *inf = b;
}

/* The source values of a QUANT item in the compute dtype: the mapping when
 * the dtypes agree, else a converted copy (*owned, caller frees). */
static qt_status item_source(qt_conv *c, const qt_conv_item *it, const void **src, void **owned,
                             char *errmsg)
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

static void free_parts(void **parts)
{
    for (int k = 0; k < QT_CONV_MAX_PARTS; k++) {
        qt_free(parts[k]);
        parts[k] = NULL;
    }
}

static void state_of(const qt_conv *c, const qt_conv_item *it, float offset, qt_bnb_state *s)
{
    memset(s, 0, sizeof *s);
    snprintf(s->quant_type, sizeof s->quant_type, "%s",
             it->scheme == QT_SCHEME_NF4 ? "nf4" : it->scheme == QT_SCHEME_FP4 ? "fp4" : "q8");
    s->blocksize = (int64_t)it->block;
    snprintf(s->dtype, sizeof s->dtype, "%s", qt_conv_torch_name(c->compute));
    s->n_dims = (int)it->src->n_dims;
    for (size_t i = 0; i < it->src->n_dims; i++) s->shape[i] = (int64_t)it->src->shape[i];
    if (it->double_quant) {
        s->nested = true;
        s->nested_blocksize = 256;
        snprintf(s->nested_dtype, sizeof s->nested_dtype, "float32");
        s->nested_offset = offset;
    }
}

/* Quantizes one item into freshly allocated part buffers (parts[k] holds
 * the bytes of part k). */
static qt_status quantize_item(qt_conv *c, qt_conv_item *it, const void *src, void **parts,
                               float *offset_out, bool prepass, char *errmsg)
{
    qt_status st = QT_OK;
    const qt_lweight *w = it->src;
    float *absmax = NULL;
    for (size_t k = 0; k < it->n_parts; k++) {
        uint64_t e = 1;
        for (size_t d = 0; d < it->part_ndims[k]; d++) e *= it->part_shape[k][d];
        size_t bytes = (size_t)(e * dbytes(it->part_dtype[k]));
        parts[k] = qt_malloc(bytes < 512 ? 512 : bytes); /* room for any quant_state */
        QT_CHECK(parts[k] != NULL, QT_ERR_NOMEM, "tensor '%s': out of memory", w->name);
    }
    qt_src_type t = src_type_of(c->compute);
    size_t n = (size_t)w->n_elements;
    float offset = 0;
    switch (it->scheme) {
    case QT_SCHEME_NF4:
    case QT_SCHEME_FP4: {
        size_t nb = qt_n_blocks(n, it->block);
        absmax = it->double_quant ? qt_malloc(nb * sizeof(float)) : parts[1];
        QT_CHECK(absmax != NULL, QT_ERR_NOMEM, "out of memory");
        QT_CHECK(qt_nf4_quantize(NULL, it->scheme, t, src, n, it->block, parts[0], absmax) ==
                     QT_OK,
                 QT_ERR_ARG, "tensor '%s': quantization failed", w->name);
        memcpy(parts[2], it->scheme == QT_SCHEME_NF4 ? qt_nf4_map : qt_fp4_map, 64);
        size_t js = 3;
        if (it->double_quant) {
            st = qt_dq_quantize(absmax, nb, parts[1], parts[3], &offset);
            QT_CHECK(st == QT_OK, st, "tensor '%s': double quantization failed (%s)", w->name,
                     qt_status_str(st));
            memcpy(parts[4], qt_dynamic_map, 1024);
            js = 5;
        }
        qt_bnb_state s;
        state_of(c, it, offset, &s);
        size_t len;
        char buf[512];
        st = qt_bnb_state_format(&s, buf, sizeof buf, &len);
        QT_CHECK(st == QT_OK, st, "tensor '%s': cannot format its quant_state (%s)", w->name, qt_status_str(st));
        QT_CHECK(prepass || len == it->part_shape[js][0], QT_ERR_ARG,
                 "tensor '%s': internal: quant_state length changed", w->name);
        memcpy(parts[js], buf, len);
        break;
    }
    case QT_SCHEME_INT8:
        QT_CHECK(qt_int8_quantize(NULL, t, src, (size_t)w->shape[0], n / (size_t)w->shape[0],
                                  parts[0], parts[1]) == QT_OK,
                 QT_ERR_ARG, "tensor '%s': quantization failed", w->name);
        *(uint8_t *)parts[2] = 0;
        break;
    case QT_SCHEME_Q8: {
        QT_CHECK(qt_q8_quantize(NULL, t, src, n, it->block, parts[0]) == QT_OK, QT_ERR_ARG,
                 "tensor '%s': quantization failed", w->name);
        qt_bnb_state s;
        state_of(c, it, 0, &s);
        size_t len;
        char buf[512];
        st = qt_bnb_state_format(&s, buf, sizeof buf, &len);
        QT_CHECK(st == QT_OK, st, "tensor '%s': cannot format its quant_state (%s)", w->name, qt_status_str(st));
        memcpy(parts[1], buf, len);
        break;
    }
    default: QT_CHECK(0, QT_ERR_ARG, "tensor '%s': not a quantization scheme", w->name);
    }
    *offset_out = offset;
fail:
    if (it->double_quant) qt_free(absmax);
    return st;
}

/* The kernel descriptor of an item's quantized output (for metrics). */
static void output_qweight(const qt_conv_item *it, void **parts, float offset, qt_qweight *q)
{
    memset(q, 0, sizeof *q);
    q->scheme = it->scheme;
    q->n_out = (size_t)it->src->shape[0];
    q->n_in = (size_t)(it->src->n_elements / it->src->shape[0]);
    q->block_size = it->block;
    q->data = parts[0];
    if (it->scheme == QT_SCHEME_NF4 || it->scheme == QT_SCHEME_FP4) {
        q->quant_map = parts[2];
        if (it->double_quant) {
            q->absmax_q = parts[1];
            q->nested_absmax = parts[3];
            q->nested_map = parts[4];
            q->nested_offset = offset;
        } else {
            q->absmax = parts[1];
        }
    } else if (it->scheme == QT_SCHEME_INT8) {
        q->scb = parts[1];
    }
}

static qt_status check_finite(qt_conv *c, const qt_conv_item *it, const void *src, char *errmsg)
{
    uint64_t nan, inf;
    count_nonfinite(c->compute, src, (size_t)it->src->n_elements, &nan, &inf);
    if ((nan || inf) && !c->o.allow_nonfinite)
        return qt_set_err(errmsg, QT_ERR_NUMERIC,
                          "tensor '%s': %" PRIu64 " NaN and %" PRIu64
                          " Inf values; refusing to quantize it (--allow-nonfinite overrides)",
                          it->src->name, nan, inf);
    return QT_OK;
}

/* ---- prepass scan ------------------------------------------------------ */
/* Largest |x| of n values as the bit pattern with the sign cleared: for
 * every IEEE format the magnitude order of non-NaN values is the integer
 * order of these bits, and NaN / Inf lie at or above the all-ones exponent
 * (0x7f80 bf16, 0x7c00 fp16, 0x7f800000 fp32). Loads go through memcpy:
 * mapped tensor data may be unaligned. Fixed-length inner loops of 32 so
 * that the compiler vectorizes them. */
#define SCAN_W 32
static uint32_t scan_max16(const unsigned char *p, size_t n)
{
    uint16_t m[SCAN_W] = {0};
    size_t i = 0;
    for (; i + SCAN_W <= n; i += SCAN_W) {
        uint16_t v[SCAN_W];
        memcpy(v, p + 2 * i, sizeof v);
        for (int k = 0; k < SCAN_W; k++) {
            uint16_t a = v[k] & 0x7fff;
            m[k] = a > m[k] ? a : m[k];
        }
    }
    for (int w = SCAN_W / 2; w >= 1; w /= 2) /* tree reduction: vectorizes down to 8 lanes */
        for (int k = 0; k < w; k++) m[k] = m[k + w] > m[k] ? m[k + w] : m[k];
    uint16_t r = m[0];
    for (; i < n; i++) {
        uint16_t a;
        memcpy(&a, p + 2 * i, 2);
        a &= 0x7fff;
        r = a > r ? a : r;
    }
    return r;
}

static uint32_t scan_max32(const unsigned char *p, size_t n)
{
    uint32_t m[SCAN_W / 2] = {0};
    size_t i = 0;
    for (; i + SCAN_W / 2 <= n; i += SCAN_W / 2) {
        uint32_t v[SCAN_W / 2];
        memcpy(v, p + 4 * i, sizeof v);
        for (int k = 0; k < SCAN_W / 2; k++) {
            uint32_t a = v[k] & 0x7fffffffu;
            m[k] = a > m[k] ? a : m[k];
        }
    }
    for (int w = SCAN_W / 4; w >= 1; w /= 2)
        for (int k = 0; k < w; k++) m[k] = m[k + w] > m[k] ? m[k + w] : m[k];
    uint32_t r = m[0];
    for (; i < n; i++) {
        uint32_t a;
        memcpy(&a, p + 4 * i, 4);
        a &= 0x7fffffffu;
        r = a > r ? a : r;
    }
    return r;
}

static float bits_to_float(qt_dtype d, uint32_t b)
{
    if (d == QT_DTYPE_F16) return qt_fp16_to_fp32((uint16_t)b);
    if (d == QT_DTYPE_BF16) b <<= 16;
    float f;
    memcpy(&f, &b, 4);
    return f;
}

/* One pass over the n values of src (dtype d) in blocks of `block`:
 * absmax[j] (may be NULL) = max |x| of block j, exactly the kernels'
 * absmax when no value is NaN; *nonfinite = some value is NaN or Inf.
 * OpenMP over groups of blocks; the result does not depend on threads. */
static void scan_blocks(qt_dtype d, const void *src, size_t n, size_t block, float *absmax,
                        bool *nonfinite)
{
    const size_t es = d == QT_DTYPE_F32 ? 4 : 2, nb = qt_n_blocks(n, block);
    const uint32_t inf = d == QT_DTYPE_F32 ? 0x7f800000u : d == QT_DTYPE_F16 ? 0x7c00u : 0x7f80u;
    const size_t group = block >= 4096 ? 1 : 4096 / block; /* blocks per iteration */
    const ptrdiff_t ng = (ptrdiff_t)qt_n_blocks(nb, group);
    int bad = 0;
    ptrdiff_t g;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) reduction(| : bad) if (ng > 1)
#endif
    for (g = 0; g < ng; g++) {
        size_t b1 = (size_t)g * group + group < nb ? (size_t)g * group + group : nb;
        for (size_t b = (size_t)g * group; b < b1; b++) {
            size_t e0 = b * block, len = n - e0 < block ? n - e0 : block;
            const unsigned char *p = (const unsigned char *)src + e0 * es;
            uint32_t m = es == 2 ? scan_max16(p, len) : scan_max32(p, len);
            bad |= m >= inf;
            if (absmax) absmax[b] = bits_to_float(d, m);
        }
    }
    *nonfinite = bad != 0;
}

/* The prepass for one QUANT item: the NaN / Inf policy and, with double
 * quantization, the nested offset (qt_dq_mean of the block absmax, which
 * sizes the quant_state JSON). One read of the data; only a tensor that
 * holds NaN under --allow-nonfinite goes through the kernels instead, so
 * the offset is always the one the quantization pass computes. */
static qt_status prepass_item(qt_conv *c, qt_conv_item *it, const void *src, void **parts,
                              char *errmsg)
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
    scan_blocks(c->compute, src, n, block, absmax, &nonfinite);
    if (nonfinite) QT_TRY(check_finite(c, it, src, errmsg)); /* refuses unless allowed */
    if (it->double_quant) {
        float off;
        if (nonfinite) { /* NaN / Inf allowed: the kernels' own absmax rules */
            QT_TRY(quantize_item(c, it, src, parts, &off, true, errmsg));
            free_parts(parts);
        } else {
            st = qt_dq_mean(absmax, nb, &off);
            QT_CHECK(st == QT_OK, st, "tensor '%s': double quantization failed (%s)",
                     it->src->name, qt_status_str(st));
        }
        it->nested_offset = off;
        QT_TRY(item_parts_refresh(c, it, errmsg));
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
static qt_status wr_write(qt_st_writer *w, size_t index, uint64_t off, const void *data, size_t n,
                          char *errmsg)
{
    qt_status st;
#ifdef _OPENMP
#pragma omp critical(qt_conv_writer)
#endif
    {
        st = qt_st_writer_write(w, index, off, data, n);
        if (st != QT_OK) qt_set_err(errmsg, st, "%s", qt_st_writer_errmsg(w));
    }
    return st;
}

typedef struct par_state {
    uint64_t inflight, limit; /* bytes of the tensors being worked on */
    qt_status st;             /* the failure of the lowest failing item */
    size_t err_item;
    char errmsg[QT_ERRMSG_SIZE];
    volatile int stop;
} par_state;

/* Memory a thread holds while it works on an item: its mapped input, its
 * output buffers and a converted copy of the input. */
static uint64_t item_need(const qt_conv *c, const qt_conv_item *it)
{
    uint64_t need = it->bytes_in;
    if (it->action == QT_ACT_QUANT) {
        need += it->bytes_out;
        if (it->src->dtype != c->compute) need += it->src->n_elements * dbytes(c->compute);
    }
    return need;
}

static void par_init(par_state *p, const qt_conv *c)
{
    memset(p, 0, sizeof *p);
    p->err_item = SIZE_MAX;
    uint64_t m = 0;
    for (size_t i = 0; i < c->n_items; i++) {
        uint64_t n = item_need(c, &c->items[i]);
        m = n > m ? n : m;
    }
    p->limit = m + m / 2;
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
static qt_status write_plain(qt_conv *c, qt_conv_item *it, qt_st_writer *wr, char *errmsg)
{
    (void)c;
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
            QT_TRY(wr_write(wr, it->part_index[0], off, p + off, m, errmsg));
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
            QT_TRY(wr_write(wr, it->part_index[0], (uint64_t)i * dbytes(it->out_dtype), out,
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
            QT_TRY(wr_write(wr, it->part_index[0], (uint64_t)r * q.n_in * dbytes(it->out_dtype),
                            out, nr * q.n_in * dbytes(it->out_dtype), errmsg));
        }
    }
fail:
    qt_free(out);
    qt_free(tmp);
    return st;
}

static void shard_name(const qt_conv *c, size_t s, char *buf, size_t n)
{
    if (c->n_shards == 1) snprintf(buf, n, "model.safetensors");
    else snprintf(buf, n, "model-%05zu-of-%05zu.safetensors", s + 1, c->n_shards);
}

static qt_status write_config(qt_conv *c, const char *tmpdir, char *errmsg)
{
    qt_status st = QT_OK;
    char src[PATH_MAX], dst[PATH_MAX], *text = NULL, *out = NULL;
    size_t n, len;
    QT_CHECK(qt_path_join(src, sizeof src, c->in_dir, "config.json") &&
                 qt_path_join(dst, sizeof dst, tmpdir, "config.json"),
             QT_ERR_ARG, "path too long");
    QT_TRY(qt_file_read(src, &text, &n, 16u << 20, errmsg));
    qt_bnb_config cfg = {0};
    qt_scheme s = c->o.scheme;
    cfg.compute_dtype = qt_conv_torch_name(c->compute);
    cfg.skip_modules = (const char *const *)c->skip_modules;
    cfg.n_skip = c->n_skip_modules;
    if (s == QT_SCHEME_NF4 || s == QT_SCHEME_FP4) {
        cfg.load_in_4bit = true;
        cfg.quant_type = s == QT_SCHEME_NF4 ? "nf4" : "fp4";
        cfg.double_quant = c->o.double_quant;
    } else if (s == QT_SCHEME_INT8) {
        cfg.load_in_4bit = false;
    } else if (s == QT_SCHEME_Q8) {
        cfg.qtool_scheme = "q8";
        cfg.qtool_block = (int64_t)(c->o.block ? c->o.block : qt_scheme_get(s)->default_block);
    } else {
        cfg.plain = true;
    }
    QT_TRY(qt_bnb_config_rewrite(text, n, src, &cfg, &out, &len, errmsg));
    QT_TRY(qt_file_write(dst, out, len, errmsg));
    QT_TRY(qt_limit_mode(dst, src, errmsg)); /* never more readable than IN's */
fail:
    qt_free(text);
    qt_free(out);
    return st;
}

static qt_status write_index(qt_conv *c, const char *tmpdir, char *errmsg)
{
    qt_strbuf b = {0};
    uint64_t total = 0;
    for (size_t i = 0; i < c->n_items; i++) total += c->items[i].bytes_out;
    qt_strbuf_printf(&b, "{\n  \"metadata\": {\n    \"total_size\": %" PRIu64 "\n  },\n"
                         "  \"weight_map\": {",
                     total);
    /* all part names sorted, each with its shard */
    size_t np = 0;
    for (size_t i = 0; i < c->n_items; i++) np += c->items[i].n_parts;
    const char **names = qt_malloc((np + 1) * sizeof *names);
    size_t *shard = qt_malloc((np + 1) * sizeof *shard);
    if (!names || !shard) {
        qt_free(names);
        qt_free(shard);
        return qt_set_err(errmsg, QT_ERR_NOMEM, "out of memory");
    }
    size_t k = 0;
    for (size_t i = 0; i < c->n_items; i++)
        for (size_t p = 0; p < c->items[i].n_parts; p++) {
            names[k] = c->items[i].part_name[p];
            shard[k++] = c->items[i].shard;
        }
    /* insertion sort on an index array would be O(n^2); sort pairs instead */
    size_t *ord = qt_malloc((np + 1) * sizeof *ord);
    if (!ord) {
        qt_free(names);
        qt_free(shard);
        return qt_set_err(errmsg, QT_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < np; i++) ord[i] = i;
    /* simple merge sort by name */
    size_t *tmp = qt_malloc((np + 1) * sizeof *tmp);
    for (size_t w = 1; tmp && w < np; w *= 2) {
        for (size_t lo = 0; lo < np; lo += 2 * w) {
            size_t mid = lo + w < np ? lo + w : np, hi = lo + 2 * w < np ? lo + 2 * w : np;
            size_t a = lo, bb = mid, o = lo;
            while (a < mid && bb < hi)
                tmp[o++] = strcmp(names[ord[a]], names[ord[bb]]) <= 0 ? ord[a++] : ord[bb++];
            while (a < mid) tmp[o++] = ord[a++];
            while (bb < hi) tmp[o++] = ord[bb++];
        }
        memcpy(ord, tmp, np * sizeof *ord);
    }
    for (size_t i = 0; i < np; i++) {
        char sn[64];
        shard_name(c, shard[ord[i]], sn, sizeof sn);
        qt_strbuf_puts(&b, i ? ",\n    " : "\n    ");
        qt_strbuf_json_string(&b, names[ord[i]]);
        qt_strbuf_puts(&b, ": ");
        qt_strbuf_json_string(&b, sn);
    }
    qt_strbuf_puts(&b, "\n  }\n}\n");
    qt_free(tmp);
    qt_free(ord);
    qt_free(names);
    qt_free(shard);
    qt_status st = QT_OK;
    if (b.oom) st = qt_set_err(errmsg, QT_ERR_NOMEM, "out of memory");
    else {
        char p[PATH_MAX];
        st = qt_path_join(p, sizeof p, tmpdir, "model.safetensors.index.json")
                 ? qt_file_write(p, b.data, b.len, errmsg)
                 : qt_set_err(errmsg, QT_ERR_ARG, "path too long");
    }
    qt_strbuf_release(&b);
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
    return qt_st_writer_add_metadata(ctx, key, value);
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
    char p[PATH_MAX], sn[64], tmp[256];
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
    for (size_t s = 0; s < c->n_shards; s++) {
        shard_name(c, s, sn, sizeof sn);
        if (!qt_path_join(p, sizeof p, c->o.out, sn) || stat(p, &sb) != 0) {
            snprintf(reason, reason_n, "'%s' is missing (shard layout differs)", sn);
            return QT_OK;
        }
    }
    const char *extra[] = {"config.json", c->n_shards > 1 ? "model.safetensors.index.json" : NULL};
    for (size_t i = 0; i < 2; i++) {
        if (!extra[i]) continue;
        if (!qt_path_join(p, sizeof p, c->o.out, extra[i]) || stat(p, &sb) != 0) {
            snprintf(reason, reason_n, "'%s' is missing", extra[i]);
            return QT_OK;
        }
    }
    shard_name(c, 0, sn, sizeof sn);
    qt_path_join(p, sizeof p, c->o.out, sn);
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
static qt_status open_shard(qt_conv *c, size_t s, const char *tmpdir, qt_st_writer **out,
                            char *errmsg)
{
    qt_status st = QT_OK;
    char path[PATH_MAX], sn[64];
    shard_name(c, s, sn, sizeof sn);
    QT_CHECK(qt_path_join(path, sizeof path, tmpdir, sn), QT_ERR_ARG, "path too long");
    qt_st_writer *w = NULL;
    QT_TRY(qt_st_writer_open(path, &w, errmsg));
    for (size_t i = 0; i < qt_modeldir_n_shards(c->md); i++) {
        st = qt_st_writer_protect_path(w, qt_st_reader_path(qt_modeldir_shard(c->md, i)));
        QT_CHECK(st == QT_OK, st, "%s", qt_st_writer_errmsg(w));
    }
    st = qt_st_writer_add_metadata(w, "format", "pt");
    QT_CHECK(st == QT_OK, st, "%s", qt_st_writer_errmsg(w));
    st = provenance(c, add_meta, w);
    QT_CHECK(st == QT_OK, st, "%s", qt_st_writer_errmsg(w));
    QT_TRY(qt_conv_fallback_metadata(c, w, errmsg));
    for (size_t i = 0; i < c->n_items; i++) {
        qt_conv_item *it = &c->items[i];
        if (it->shard != s) continue;
        for (size_t k = 0; k < it->n_parts; k++) {
            st = qt_st_writer_declare(w, it->part_name[k], it->part_dtype[k], it->part_ndims[k],
                                      it->part_shape[k], &it->part_index[k]);
            QT_CHECK(st == QT_OK, st, "%s", qt_st_writer_errmsg(w));
        }
    }
    st = qt_st_writer_begin(w);
    QT_CHECK(st == QT_OK, st, "%s", qt_st_writer_errmsg(w));
    *out = w;
    return QT_OK;
fail:
    qt_st_writer_abort(w);
    return st;
}

/* Removes stale temporary folders of earlier runs for the same OUT
 * (`<parent>/.<base>.qtool-tmp.<pid>`) whose process is gone (a run killed
 * with SIGKILL cannot clean up after itself). Folders of live processes
 * are left alone. */
static void remove_stale_tmp(const char *parent, const char *base)
{
    char prefix[NAME_MAX + 1];
    qt_conv_tmp_prefix(base, prefix, sizeof prefix);
    size_t pl = strlen(prefix);
    DIR *d = opendir(parent);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, prefix, pl) != 0) continue;
        const char *ds = e->d_name + pl;
        char *end;
        errno = 0;
        long pid = strtol(ds, &end, 10);
        if (errno || end == ds || *end || pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* alive, or not ours to judge */
        char p[PATH_MAX];
        struct stat sb;
        if (qt_path_join(p, sizeof p, parent, e->d_name) && lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
            qt_tree_remove(p);
    }
    closedir(d);
}

/* Converts item it into writer w (any thread). */
static qt_status run_item(qt_conv *c, qt_conv_item *it, qt_st_writer *w, char *errmsg)
{
    qt_status st = QT_OK;
    void *parts[QT_CONV_MAX_PARTS] = {0};
    void *owned = NULL;
    double ti = qt_now();
    qt_st_tensor_prefetch(it->src->reader, it->src->weight);
    if (it->action == QT_ACT_QUANT) {
        const void *src;
        float off;
        QT_TRY(item_source(c, it, &src, &owned, errmsg));
        QT_TRY(quantize_item(c, it, src, parts, &off, false, errmsg));
        QT_CHECK(!it->double_quant || off == it->nested_offset, QT_ERR_ARG,
                 "tensor '%s': internal: offset changed between passes", it->src->name);
        for (size_t k = 0; k < it->n_parts; k++) {
            uint64_t nb = qt_st_writer_tensor_nbytes(w, it->part_index[k]);
            QT_TRY(wr_write(w, it->part_index[k], 0, parts[k], (size_t)nb, errmsg));
        }
        if (c->o.metrics) {
            qt_qweight qo, qq;
            memset(&qo, 0, sizeof qo);
            qo.scheme = c->compute == QT_DTYPE_BF16   ? QT_SCHEME_BF16
                        : c->compute == QT_DTYPE_F16 ? QT_SCHEME_FP16
                                                      : QT_SCHEME_FP32;
            qo.n_out = (size_t)it->src->shape[0];
            qo.n_in = (size_t)(it->src->n_elements / it->src->shape[0]);
            qo.data = src;
            output_qweight(it, parts, off, &qq);
            if (qt_weight_error_compute(&qo, &qq, &it->error) == QT_OK) it->have_error = true;
        }
    } else {
        QT_TRY(write_plain(c, it, w, errmsg));
    }
fail:
    free_parts(parts);
    qt_free(owned);
    qt_st_tensor_release(it->src->reader, it->src->weight);
    it->seconds = qt_now() - ti;
    return st;
}

/* The prepass of item it (any thread). */
static qt_status prepass_run(qt_conv *c, qt_conv_item *it, char *errmsg)
{
    void *parts[QT_CONV_MAX_PARTS] = {0};
    void *owned = NULL;
    const void *src;
    qt_status st = item_source(c, it, &src, &owned, errmsg);
    if (st == QT_OK) st = prepass_item(c, it, src, parts, errmsg);
    free_parts(parts);
    qt_free(owned);
    qt_st_tensor_release(it->src->reader, it->src->weight);
    return st;
}

qt_status qt_conv_run(qt_conv *c, char *errmsg)
{
    qt_status st = QT_OK;
    char tmpdir[PATH_MAX] = "", parent[PATH_MAX], base[PATH_MAX], tmp[PATH_MAX];
    qt_st_writer *w = NULL;
    bool made_tmp = false;
    double t0 = qt_now();
    const char *out = c->o.out;
    struct stat sb;
    bool exists = lstat(out, &sb) == 0;
    QT_CHECK(!exists || c->o.force, QT_ERR_ARG, "output '%s' exists (--force replaces it)", out);
    QT_CHECK(!exists || S_ISDIR(sb.st_mode), QT_ERR_ARG,
             "output '%s' exists and is not a folder; refusing to replace it", out);
    snprintf(tmp, sizeof tmp, "%s", out);
    snprintf(parent, sizeof parent, "%s", dirname(tmp));
    snprintf(tmp, sizeof tmp, "%s", out);
    snprintf(base, sizeof base, "%s", basename(tmp));
    {
        char rin[PATH_MAX], rout[PATH_MAX];
        if (exists && realpath(c->in_dir, rin) && realpath(out, rout)) {
            size_t lo = strlen(rout);
            QT_CHECK(!(strncmp(rin, rout, lo) == 0 && (rin[lo] == 0 || rin[lo] == '/')),
                     QT_ERR_ARG, "output '%s' holds the input: refusing to replace it", out);
        }
    }
    if (exists) QT_TRY(qt_conv_check_replaceable(out, errmsg)); /* never a user's folder */
    QT_TRY(qt_conv_check_links(c, errmsg)); /* nothing from outside IN (rule I6) */
    remove_stale_tmp(parent, base);
    {
        char prefix[NAME_MAX + 1];
        qt_conv_tmp_prefix(base, prefix, sizeof prefix);
        int r = snprintf(tmpdir, sizeof tmpdir, "%s/%s%ld", parent, prefix, (long)getpid());
        QT_CHECK(r > 0 && (size_t)r < sizeof tmpdir, QT_ERR_ARG, "output path too long");
    }
    QT_CHECK(mkdir(tmpdir, 0700) == 0, QT_ERR_IO, "cannot create '%s': %s", tmpdir,
             strerror(errno));
    made_tmp = true;
    QT_TRY(qt_limit_mode(tmpdir, c->in_dir, errmsg)); /* OUT no more open than IN */

    double tp = qt_now();
    par_state ps;
    par_init(&ps, c);
#ifdef _OPENMP
    const int nth = omp_get_max_threads();
#endif
    const ptrdiff_t ni = (ptrdiff_t)c->n_items;
    /* prepass: NaN / Inf policy for every weight to quantize, and the
     * double-quantization offsets that size the quant_state blobs */
    {
        ptrdiff_t i;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(nth) if (nth > 1)
#endif
        for (i = 0; i < ni; i++) {
            qt_conv_item *it = &c->items[i];
            if (it->action != QT_ACT_QUANT || ps.stop) continue;
            char e[QT_ERRMSG_SIZE] = "";
            uint64_t need = item_need(c, it);
            par_acquire(&ps, need);
            qt_status s1 = prepass_run(c, it, e);
            par_release(&ps, need);
            if (s1 == QT_OK && cancelled(c)) s1 = qt_set_err(e, QT_ERR_ARG, "cancelled");
            if (s1 != QT_OK) par_fail(&ps, (size_t)i, s1, e);
        }
    }
    if (ps.st != QT_OK) {
        st = qt_set_err(errmsg, ps.st, "%s", ps.errmsg);
        goto fail;
    }
    c->t_prepass = qt_now() - tp;
    if (c->o.check) QT_TRY(qt_conv_check_pass(c, errmsg)); /* calibration (validate.c) */
    double tw = qt_now(), t_close = 0;
    uint64_t total_in = 0;
    for (size_t i = 0; i < c->n_items; i++) total_in += c->items[i].bytes_in;
    qt_progress prog;
    qt_progress_init(&prog, c->o.progress, c->o.progress != NULL, "convert", c->n_items, total_in);
    for (size_t s = 0, first = 0; s < c->n_shards; s++) {
        size_t last = first; /* items [first, last) form shard s */
        while (last < c->n_items && c->items[last].shard == s) last++;
        QT_TRY(open_shard(c, s, tmpdir, &w, errmsg));
        ptrdiff_t i;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(nth) if (nth > 1)
#endif
        for (i = (ptrdiff_t)first; i < (ptrdiff_t)last; i++) {
            qt_conv_item *it = &c->items[i];
            if (ps.stop) continue;
            char e[QT_ERRMSG_SIZE] = "";
            uint64_t need = item_need(c, it);
            par_acquire(&ps, need);
            qt_status s1 = run_item(c, it, w, e);
            par_release(&ps, need);
            if (s1 == QT_OK && cancelled(c)) s1 = qt_set_err(e, QT_ERR_ARG, "cancelled");
            if (s1 != QT_OK) par_fail(&ps, (size_t)i, s1, e);
#ifdef _OPENMP
#pragma omp critical(qt_conv_progress)
#endif
            qt_progress_add(&prog, 1, it->bytes_in);
        }
        if (ps.st != QT_OK) {
            st = qt_set_err(errmsg, ps.st, "%s", ps.errmsg);
            goto fail;
        }
        double tc = qt_now();
        st = qt_st_writer_close(w, errmsg);
        w = NULL;
        t_close += qt_now() - tc;
        QT_TRY(st);
        first = last;
    }
    c->t_write = qt_now() - tw - t_close;
    double tf = qt_now();
    qt_progress_finish(&prog);
    if (c->n_shards > 1) QT_TRY(write_index(c, tmpdir, errmsg));
    QT_TRY(write_config(c, tmpdir, errmsg));
    QT_TRY(qt_conv_copy_files(c, tmpdir, errmsg)); /* the known non-weight files only */
    qt_dir_fsync(tmpdir);
    QT_CHECK(!cancelled(c), QT_ERR_ARG, "cancelled");
    QT_TRY(qt_conv_check_input(c, errmsg)); /* what was read is what was opened */
    if (exists) {
        QT_CHECK(renameat2(AT_FDCWD, tmpdir, AT_FDCWD, out, RENAME_EXCHANGE) == 0, QT_ERR_IO,
                 "cannot replace '%s': %s", out, strerror(errno));
        qt_tree_remove(tmpdir); /* the old OUT now lives there */
    } else {
        int r = rename(tmpdir, out);
        QT_CHECK(r == 0 || (errno != ENOTEMPTY && errno != EEXIST), QT_ERR_IO,
                 "output '%s' was written by another process meanwhile; this run's output was "
                 "discarded",
                 out);
        QT_CHECK(r == 0, QT_ERR_IO, "cannot rename '%s' to '%s': %s", tmpdir, out,
                 strerror(errno));
    }
    made_tmp = false;
    qt_dir_fsync(parent);
    c->t_finish = qt_now() - tf + t_close;
    c->seconds_total = qt_now() - t0;
fail:
    if (st != QT_OK && st != QT_ERR_NOMEM && qt_conv_check_input(c, NULL) != QT_OK)
        st = qt_conv_check_input(c, errmsg); /* the cause of the failure ("Bad address") */
    if (w) qt_st_writer_abort(w);
    if (made_tmp) qt_tree_remove(tmpdir);
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
    qt_strbuf_printf(&b, "\n  ],\n  \"bytes_in\": %" PRIu64 ",\n  \"bytes_out\": %" PRIu64 "\n}\n",
                     tin, tout);
    if (b.oom) {
        qt_strbuf_release(&b);
        return qt_set_err(errmsg, QT_ERR_NOMEM, "out of memory");
    }
    *json = b.data;
    return QT_OK;
}
