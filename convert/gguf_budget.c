/* convert/gguf_budget.c: per-tensor GGUF types chosen by measurement for a
 * bits-per-weight budget (gguf_budget.h: candidates, the estimate, the
 * greedy sequence of upgrade steps and why a budget takes a prefix of it). */
#include "convert/gguf_budget.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "convert/gguf_export.h"
#include "convert/gguf_quant.h"

/* The types a matrix may be raised to, smallest first. */
static const qt_ggml_type ladder[] = {QT_GGML_TYPE_Q4_K, QT_GGML_TYPE_Q5_K, QT_GGML_TYPE_Q6_K,
                                      QT_GGML_TYPE_Q8_0};
#define N_LADDER (sizeof ladder / sizeof ladder[0])

bool qt_gguf_budget_role(qt_gguf_role role)
{
    switch (role) {
    case QT_GGUF_ROLE_ATTN_Q:
    case QT_GGUF_ROLE_ATTN_K:
    case QT_GGUF_ROLE_ATTN_V:
    case QT_GGUF_ROLE_ATTN_OUTPUT:
    case QT_GGUF_ROLE_FFN_GATE:
    case QT_GGUF_ROLE_FFN_UP:
    case QT_GGUF_ROLE_FFN_DOWN: return true;
    default: return false;
    }
}

/* Nominal bits per weight of a type, as a fraction num/den (exact compare). */
static bool type_at_least(qt_ggml_type a, qt_ggml_type b)
{
    /* size(a)/blck(a) >= size(b)/blck(b) */
    return (uint64_t)qt_ggml_type_size(a) * (uint64_t)qt_ggml_blck_size(b) >=
           (uint64_t)qt_ggml_type_size(b) * (uint64_t)qt_ggml_blck_size(a);
}

/* Appends candidate `asked` unless what it writes is no block type or is
 * already a candidate. */
static void add_cand(qt_gguf_bmat *m, qt_ggml_type asked)
{
    bool fell = false;
    qt_ggml_type t = qt_gguf_type_fallback(asked, (int64_t)m->n_in, &fell);
    if (qt_gguf_block_scheme(t) == QT_SCHEME_COUNT) return; /* F16: not a choice */
    for (size_t j = 0; j < m->n_cand; j++)
        if (m->cand[j].type == t) return;
    qt_gguf_bcand *c = &m->cand[m->n_cand++];
    memset(c, 0, sizeof *c);
    c->asked = asked;
    c->type = t;
    c->bytes = (uint64_t)qt_gguf_row_bytes(t, m->n_in) * m->n_out;
}

/* Candidates: the base and the ladder's types at least as large, sorted by
 * bytes (insertion sort: stable, the base first among equals). */
static void build_cands(qt_gguf_bmat *m)
{
    bool in_ladder = false;
    for (size_t k = 0; k < N_LADDER; k++) in_ladder |= ladder[k] == m->base;
    if (!in_ladder) add_cand(m, m->base);
    for (size_t k = 0; k < N_LADDER; k++)
        if (type_at_least(ladder[k], m->base)) add_cand(m, ladder[k]);
    for (size_t i = 1; i < m->n_cand; i++)
        for (size_t j = i; j > 0 && m->cand[j].bytes < m->cand[j - 1].bytes; j--) {
            qt_gguf_bcand t = m->cand[j];
            m->cand[j] = m->cand[j - 1];
            m->cand[j - 1] = t;
        }
}

qt_status qt_gguf_budget_add(qt_gguf_budget *b, const char *name, const qt_st_tensor *src,
                             const qt_st_reader *rd, qt_ggml_type base, bool *added,
                             char *errmsg)
{
    qt_status st = QT_OK;
    *added = false;
    /* grow the array */
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 64;
        qt_gguf_bmat *m = qt_realloc(b->m, cap * sizeof *m);
        QT_CHECK(m, QT_ERR_NOMEM, "out of memory");
        b->m = m;
        b->cap = cap;
    }
    /* the matrix and its candidates */
    qt_gguf_bmat *m = &b->m[b->n];
    memset(m, 0, sizeof *m);
    m->name = name;
    m->src = src;
    m->rd = rd;
    m->n_out = (size_t)src->shape[0];
    m->n_in = (size_t)src->shape[1];
    m->base = base;
    build_cands(m);
    if (m->n_cand == 0) return QT_OK;
    /* totals */
    b->params += src->n_elements;
    b->lo_bytes += m->cand[0].bytes;
    b->hi_bytes += m->cand[m->n_cand - 1].bytes;
    b->bytes += m->cand[0].bytes;
    b->n++;
    *added = true;
fail:
    return st;
}

void qt_gguf_budget_range(const qt_gguf_budget *b, double *lo, double *hi)
{
    *lo = b->params ? 8.0 * (double)b->lo_bytes / (double)b->params : 0.0;
    *hi = b->params ? 8.0 * (double)b->hi_bytes / (double)b->params : 0.0;
}

/* ---- measuring -------------------------------------------------------------------- */

static qt_src_type src_type(qt_dtype d)
{
    return d == QT_DTYPE_F16 ? QT_SRC_F16 : d == QT_DTYPE_BF16 ? QT_SRC_BF16 : QT_SRC_F32;
}

static qt_scheme plain_scheme(qt_dtype d)
{
    return d == QT_DTYPE_F16 ? QT_SCHEME_FP16 : d == QT_DTYPE_BF16 ? QT_SCHEME_BF16 : QT_SCHEME_FP32;
}

/* One candidate: quantize the checkpoint rows as the export writes them
 * (buf holds c->bytes) and measure them against the original. */
static qt_status measure_cand(const qt_gguf_bmat *m, qt_gguf_bcand *c, const qt_calib_set *set,
                              bool allow_nonfinite, unsigned char *buf, char *errmsg)
{
    qt_scheme s = qt_gguf_block_scheme(c->type);
    size_t bad = 0;
    /* quantize: the kernels of the write, so the bytes measured are the bytes written */
    qt_status st = qt_blk_quantize(NULL, s, src_type(m->src->dtype), m->src->data, m->n_out,
                                   m->n_in, allow_nonfinite, buf, &bad);
    if (st == QT_ERR_NUMERIC)
        return qt_set_err(errmsg, st, "tensor '%s': row %zu holds NaN or Inf: refusing to "
                          "quantize it to %s (--allow-nonfinite to force)", m->src->name, bad,
                          qt_ggml_type_name(c->type));
    if (st != QT_OK)
        return qt_set_err(errmsg, st, "tensor '%s': quantizing to %s failed (%s)", m->src->name,
                          qt_ggml_type_name(c->type), qt_status_str(st));
    /* measure against the original on the calibration rows */
    qt_qweight orig = {.scheme = plain_scheme(m->src->dtype), .n_out = m->n_out,
                       .n_in = m->n_in, .data = m->src->data};
    qt_qweight q = {.scheme = s, .n_out = m->n_out, .n_in = m->n_in,
                    .block_size = qt_scheme_get(s)->default_block, .data = buf};
    qt_calib_entry e;
    st = qt_calib_measure(set, m->src->name, qt_ggml_type_name(c->type), &orig, &q, 0, &e);
    if (st != QT_OK)
        return qt_set_err(errmsg, st, "tensor '%s': cannot measure it in %s (%s: the "
                          "calibration set does not fit this model)", m->src->name,
                          qt_ggml_type_name(c->type), qt_status_str(st));
    c->measured = e.have_out;
    c->rel = e.have_out ? e.oerr.rel : 0.0;
    c->loss = e.have_out && isfinite(e.oerr.rel) ? e.oerr.rel * e.oerr.rel : 0.0;
    return QT_OK;
}

qt_status qt_gguf_budget_measure(qt_gguf_budget *b, const qt_calib_set *set,
                                 bool allow_nonfinite, volatile sig_atomic_t *cancel,
                                 char *errmsg)
{
    qt_status st = QT_OK;
    double t0 = qt_now();
    /* one buffer for the largest candidate */
    uint64_t most = 1;
    for (size_t i = 0; i < b->n; i++)
        if (b->m[i].cand[b->m[i].n_cand - 1].bytes > most) most = b->m[i].cand[b->m[i].n_cand - 1].bytes;
    unsigned char *buf = qt_aligned_alloc(64, (size_t)most);
    QT_CHECK(buf, QT_ERR_NOMEM, "out of memory for a %" PRIu64 "-byte tensor", most);
    /* every candidate of every matrix, in order */
    for (size_t i = 0; i < b->n; i++) {
        qt_gguf_bmat *m = &b->m[i];
        QT_CHECK(!cancel || !*cancel, QT_ERR_ARG, "cancelled");
        for (size_t j = 0; j < m->n_cand; j++)
            QT_TRY(measure_cand(m, &m->cand[j], set, allow_nonfinite, buf, errmsg));
        qt_st_tensor_release(m->rd, m->src);
    }
fail:
    qt_aligned_free(buf);
    b->seconds = qt_now() - t0;
    return st;
}

/* ---- choosing --------------------------------------------------------------------- */

/* The best upgrade of the current state: matrix *bi to candidate *bj, with
 * loss decrease *dl over *db extra bytes; false when no upgrade lowers the
 * loss. Better = larger dl/db (compared as products: db may be 0). */
static bool best_step(const qt_gguf_budget *b, size_t *bi, size_t *bj, double *dl, uint64_t *db)
{
    bool found = false;
    for (size_t i = 0; i < b->n; i++) {
        const qt_gguf_bmat *m = &b->m[i];
        const qt_gguf_bcand *cur = &m->cand[m->chosen];
        for (size_t j = m->chosen + 1; j < m->n_cand; j++) {
            double l = cur->loss - m->cand[j].loss;
            uint64_t d = m->cand[j].bytes - cur->bytes;
            if (!(l > 0)) continue;
            if (found && !(l * (double)*db > *dl * (double)d)) continue; /* ties: first */
            *bi = i, *bj = j, *dl = l, *db = d;
            found = true;
        }
    }
    return found;
}

qt_status qt_gguf_budget_check(const qt_gguf_budget *b, double bpw, char *errmsg)
{
    qt_status st = QT_OK;
    double lo, hi;
    qt_gguf_budget_range(b, &lo, &hi);
    QT_CHECK(b->n > 0, QT_ERR_ARG, "--budget: no matrix can take a block type (rows are not "
             "whole blocks of any candidate)");
    QT_CHECK(bpw >= lo - 1e-9 && bpw <= hi + 1e-9, QT_ERR_ARG,
             "--budget %g bpw: outside the feasible range [%.4f, %.4f] bits per weight of the "
             "%zu quantizable matrices (all cheapest candidate .. all largest)", bpw, lo, hi,
             b->n);
fail:
    return st;
}

qt_status qt_gguf_budget_choose(qt_gguf_budget *b, double bpw, char *errmsg)
{
    qt_status st = QT_OK;
    /* the feasible range */
    QT_TRY(qt_gguf_budget_check(b, bpw, errmsg));
    b->bpw = bpw;
    /* the allowance over the all-cheapest choice, in bytes */
    double cap = bpw * (double)b->params / 8.0;
    uint64_t allow = cap > (double)b->lo_bytes ? (uint64_t)(cap - (double)b->lo_bytes) : 0;
    uint64_t used = 0;
    /* the prefix of the greedy sequence that fits */
    size_t bi, bj;
    double dl;
    uint64_t db;
    while (best_step(b, &bi, &bj, &dl, &db) && used + db <= allow) {
        qt_gguf_bmat *m = &b->m[bi];
        used += db;
        m->chosen = bj;
        m->step = ++b->n_steps;
    }
    b->bytes = b->lo_bytes + used;
fail:
    return st;
}

double qt_gguf_budget_bpw(const qt_gguf_budget *b)
{
    return b->params ? 8.0 * (double)b->bytes / (double)b->params : 0.0;
}

/* ---- the report ----------------------------------------------------------------------- */

/* A JSON number; null when not finite. */
static void jnum(qt_strbuf *o, double v)
{
    if (isfinite(v)) qt_strbuf_printf(o, "%.9g", v);
    else qt_strbuf_puts(o, "null");
}

static void json_matrix(const qt_gguf_bmat *m, qt_strbuf *o)
{
    qt_strbuf_puts(o, "\n    {\"tensor\": ");
    qt_strbuf_json_string(o, m->name);
    qt_strbuf_puts(o, ", \"source\": ");
    qt_strbuf_json_string(o, m->src->name);
    qt_strbuf_printf(o, ", \"params\": %" PRIu64 ", \"base\": \"%s\", \"candidates\": [",
                     m->src->n_elements, qt_ggml_type_name(m->base));
    for (size_t j = 0; j < m->n_cand; j++) {
        const qt_gguf_bcand *c = &m->cand[j];
        qt_strbuf_printf(o, "%s{\"type\": \"%s\", \"asked\": \"%s\", \"bytes\": %" PRIu64
                         ", \"measured\": %s, \"rel_error\": ", j ? ", " : "",
                         qt_ggml_type_name(c->type), qt_ggml_type_name(c->asked), c->bytes,
                         c->measured ? "true" : "false");
        jnum(o, c->rel);
        qt_strbuf_puts(o, ", \"sensitivity\": ");
        jnum(o, c->loss);
        qt_strbuf_puts(o, "}");
    }
    const qt_gguf_bcand *ch = &m->cand[m->chosen];
    qt_strbuf_printf(o, "], \"chosen\": \"%s\", \"bytes\": %" PRIu64 ", \"step\": %zu}",
                     qt_ggml_type_name(ch->type), ch->bytes, m->step);
}

void qt_gguf_budget_json(const qt_gguf_budget *b, qt_strbuf *o)
{
    double lo, hi;
    qt_gguf_budget_range(b, &lo, &hi);
    qt_strbuf_printf(o, "{\"bpw\": %.9g, \"achieved_bpw\": %.9g, \"feasible\": [%.9g, %.9g], "
                     "\"params\": %" PRIu64 ", \"bytes\": %" PRIu64 ", \"steps\": %zu, "
                     "\"measure_seconds\": %.3f, \"modules\": [",
                     b->bpw, qt_gguf_budget_bpw(b), lo, hi, b->params, b->bytes, b->n_steps,
                     b->seconds);
    for (size_t i = 0; i < b->n; i++) {
        if (i) qt_strbuf_puts(o, ",");
        json_matrix(&b->m[i], o);
    }
    qt_strbuf_puts(o, "\n  ]}");
}

void qt_gguf_budget_release(qt_gguf_budget *b)
{
    if (!b) return;
    qt_free(b->m);
    memset(b, 0, sizeof *b);
}
