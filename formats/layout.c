/* formats/layout.c: grouping stored tensors into logical weights. */
#include "formats/layout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/bnb.h"
#include "formats/fsutil.h"

struct qt_layout {
    qt_lweight *w; /* (n) */
    size_t n;
    const qt_lweight **sorted; /* (n) by name, for qt_layout_find */
};

static const qt_st_tensor *find_member(const qt_modeldir *md, const char *base, const char *suf)
{
    char name[1024];
    if ((size_t)snprintf(name, sizeof name, "%s%s", base, suf) >= sizeof name) return NULL;
    return qt_modeldir_find(md, name, NULL);
}

static qt_dtype dtype_from_torch(const char *s, bool *ok)
{
    *ok = true;
    if (!strcmp(s, "bfloat16")) return QT_DTYPE_BF16;
    if (!strcmp(s, "float16")) return QT_DTYPE_F16;
    if (!strcmp(s, "float32")) return QT_DTYPE_F32;
    *ok = false;
    return QT_DTYPE_F32;
}

static qt_scheme scheme_of_dtype(qt_dtype d)
{
    switch (d) {
    case QT_DTYPE_F32: return QT_SCHEME_FP32;
    case QT_DTYPE_F16: return QT_SCHEME_FP16;
    case QT_DTYPE_BF16: return QT_SCHEME_BF16;
    default: return QT_SCHEME_COUNT;
    }
}

static bool is_vec(const qt_st_tensor *t, qt_dtype d, uint64_t n)
{
    return t && t->dtype == d && t->n_dims == 1 && t->shape[0] == n;
}

/* A weight with a quant_state blob sj: its original dtype, shape and block
 * size from the blob, checked against the key suffix (want_q8 / fp4). */
static qt_status read_state(const qt_st_tensor *sj, bool want_q8, bool fp4, qt_lweight *w,
                            qt_bnb_state *bs, char *errmsg)
{
    qt_status st = QT_OK;
    QT_CHECK(sj->dtype == QT_DTYPE_U8 && sj->n_dims == 1, QT_ERR_FORMAT,
             "tensor '%s': quant_state must be a 1-D U8 tensor", sj->name);
    QT_TRY(qt_bnb_state_parse(sj->data, (size_t)sj->nbytes, sj->name, bs, errmsg));
    QT_CHECK(want_q8 == !strcmp(bs->quant_type, "q8") &&
                 (want_q8 || !strcmp(bs->quant_type, fp4 ? "fp4" : "nf4")),
             QT_ERR_FORMAT, "tensor '%s': quant_type '%s' does not match the key suffix", sj->name,
             bs->quant_type);
    bool ok;
    w->dtype = dtype_from_torch(bs->dtype, &ok);
    QT_CHECK(ok, QT_ERR_UNSUPPORTED, "tensor '%s': quant_state dtype '%s' not supported",
             sj->name, bs->dtype);
    uint64_t n = 1;
    for (int i = 0; i < bs->n_dims; i++)
        QT_CHECK(qt_mul_u64(n, (uint64_t)bs->shape[i], &n), QT_ERR_OVERFLOW,
                 "tensor '%s': quant_state shape overflows", sj->name);
    w->n_dims = (size_t)bs->n_dims;
    for (int i = 0; i < bs->n_dims; i++) w->shape[i] = (uint64_t)bs->shape[i];
    for (size_t i = (size_t)bs->n_dims; i < QT_ST_MAX_DIMS; i++) w->shape[i] = 0;
    w->n_elements = n;
    w->block_size = (size_t)bs->blocksize;
    w->state = sj;
    w->nbytes += sj->nbytes;
fail:
    return st;
}

/* The companions of a 4-bit weight (base = its module prefix): absmax,
 * quant_map and, with double quantization, the nested parts. */
static qt_status read_bnb4(const qt_modeldir *md, const char *base, const qt_bnb_state *bs,
                           qt_lweight *w, char *errmsg)
{
    qt_status st = QT_OK;
    const char *name = w->name;
    const uint64_t n = w->n_elements, nb = (n + w->block_size - 1) / w->block_size;
    QT_CHECK(w->weight->nbytes == (n + 1) / 2, QT_ERR_FORMAT,
             "tensor '%s': packed 4-bit data is %llu bytes, shape %s needs %llu", name,
             (unsigned long long)w->weight->nbytes, "from quant_state",
             (unsigned long long)((n + 1) / 2));
    w->absmax = find_member(md, base, qt_bnb_suffix(QT_BNB_ABSMAX, w->scheme));
    w->quant_map = find_member(md, base, qt_bnb_suffix(QT_BNB_QUANT_MAP, w->scheme));
    QT_CHECK(is_vec(w->quant_map, QT_DTYPE_F32, 16), QT_ERR_FORMAT,
             "tensor '%s': missing or malformed .quant_map (F32 [16])", name);
    w->nbytes += w->quant_map->nbytes;
    const qt_st_tensor *nested = find_member(md, base, qt_bnb_suffix(QT_BNB_NESTED_ABSMAX, w->scheme));
    if (bs->nested) {
        w->double_quant = true;
        w->nested_offset = bs->nested_offset;
        w->nested_absmax = nested;
        w->nested_map = find_member(md, base, qt_bnb_suffix(QT_BNB_NESTED_MAP, w->scheme));
        QT_CHECK(is_vec(w->absmax, QT_DTYPE_U8, nb), QT_ERR_FORMAT,
                 "tensor '%s': missing or malformed .absmax (U8 [%llu] with double quant)", name,
                 (unsigned long long)nb);
        QT_CHECK(is_vec(w->nested_absmax, QT_DTYPE_F32, (nb + 255) / 256), QT_ERR_FORMAT,
                 "tensor '%s': missing or malformed .nested_absmax (F32 [%llu])", name,
                 (unsigned long long)((nb + 255) / 256));
        QT_CHECK(is_vec(w->nested_map, QT_DTYPE_F32, 256), QT_ERR_FORMAT,
                 "tensor '%s': missing or malformed .nested_quant_map (F32 [256])", name);
        w->nbytes += w->nested_absmax->nbytes + w->nested_map->nbytes;
    } else {
        QT_CHECK(is_vec(w->absmax, QT_DTYPE_F32, nb), QT_ERR_FORMAT,
                 "tensor '%s': missing or malformed .absmax (F32 [%llu])", name,
                 (unsigned long long)nb);
        QT_CHECK(!nested, QT_ERR_FORMAT,
                 "tensor '%s': nested_absmax present but quant_state has no nested keys", name);
    }
    w->nbytes += w->absmax->nbytes;
fail:
    return st;
}

/* An LLM.int8 weight: I8 [out, in] with its SCB and optional weight_format. */
static qt_status read_int8(const qt_modeldir *md, const char *base, const qt_st_tensor *scb,
                           qt_lweight *w, char *errmsg)
{
    qt_status st = QT_OK;
    const qt_st_tensor *t = w->weight;
    w->kind = QT_LW_INT8;
    w->scheme = QT_SCHEME_INT8;
    w->dtype = QT_DTYPE_F16;
    w->scb = scb;
    QT_CHECK(t->dtype == QT_DTYPE_I8 && t->n_dims == 2, QT_ERR_FORMAT,
             "tensor '%s': LLM.int8 weight must be I8 [out, in]", t->name);
    QT_CHECK(is_vec(scb, QT_DTYPE_F32, t->shape[0]), QT_ERR_FORMAT,
             "tensor '%s': SCB must be F32 [%llu]", scb->name, (unsigned long long)t->shape[0]);
    w->nbytes += scb->nbytes;
    w->weight_format = find_member(md, base, qt_bnb_suffix(QT_BNB_WEIGHT_FORMAT, QT_SCHEME_INT8));
    if (w->weight_format) {
        QT_CHECK(w->weight_format->nbytes == 1 && w->weight_format->dtype == QT_DTYPE_U8 &&
                     *(const uint8_t *)w->weight_format->data == 0,
                 QT_ERR_UNSUPPORTED, "tensor '%s': only weight_format 0 (row) is supported",
                 w->weight_format->name);
        w->nbytes += w->weight_format->nbytes;
    }
fail:
    return st;
}

/* One logical weight from tensor t: plain, or grouped with its companions
 * (bitsandbytes 4-bit, LLM.int8, qtool q8; suffixes from formats/bnb). */
static qt_status build_one(const qt_modeldir *md, const qt_st_tensor *t, qt_st_reader *rd,
                           qt_lweight *w, char *errmsg)
{
    qt_status st = QT_OK;
    char base[1024];
    /* a plain tensor, until companions say otherwise */
    memset(w, 0, sizeof *w);
    w->name = t->name;
    w->weight = t;
    w->reader = rd;
    w->kind = QT_LW_PLAIN;
    w->dtype = t->dtype;
    w->scheme = scheme_of_dtype(t->dtype);
    w->n_dims = t->n_dims;
    memcpy(w->shape, t->shape, sizeof w->shape);
    w->n_elements = t->n_elements;
    w->nbytes = t->nbytes;
    if (!qt_str_ends_with(t->name, ".weight")) return QT_OK;
    size_t bl = strlen(t->name) - strlen(".weight");
    if (bl >= sizeof base) return QT_OK;
    memcpy(base, t->name, bl);
    base[bl] = 0;
    /* which layout: at most one quant_state, or an SCB */
    const qt_st_tensor *s4n = find_member(md, base, qt_bnb_suffix(QT_BNB_STATE, QT_SCHEME_NF4));
    const qt_st_tensor *s4f = find_member(md, base, qt_bnb_suffix(QT_BNB_STATE, QT_SCHEME_FP4));
    const qt_st_tensor *sq8 = find_member(md, base, qt_bnb_suffix(QT_BNB_STATE, QT_SCHEME_Q8));
    const qt_st_tensor *scb = find_member(md, base, qt_bnb_suffix(QT_BNB_SCB, QT_SCHEME_INT8));
    int nstates = (s4n != NULL) + (s4f != NULL) + (sq8 != NULL);
    QT_CHECK(nstates <= 1, QT_ERR_FORMAT, "tensor '%s': more than one quant_state blob", t->name);
    QT_CHECK(!(nstates && scb), QT_ERR_FORMAT, "tensor '%s': both a quant_state and an SCB",
             t->name);
    if (scb) return read_int8(md, base, scb, w, errmsg);
    if (!nstates) return QT_OK;
    qt_bnb_state bs;
    QT_TRY(read_state(s4n ? s4n : s4f ? s4f : sq8, sq8 != NULL, s4f != NULL, w, &bs, errmsg));
    if (sq8) { /* qtool q8: the blocks, nothing else */
        w->kind = QT_LW_Q8;
        w->scheme = QT_SCHEME_Q8;
        size_t want = qt_q8_bytes((size_t)w->n_elements, w->block_size);
        QT_CHECK(t->dtype == QT_DTYPE_U8 && t->nbytes == want, QT_ERR_FORMAT,
                 "tensor '%s': q8 data is %llu bytes, expected %zu", t->name,
                 (unsigned long long)t->nbytes, want);
        return QT_OK;
    }
    w->kind = QT_LW_BNB4;
    w->scheme = s4n ? QT_SCHEME_NF4 : QT_SCHEME_FP4;
    QT_TRY(read_bnb4(md, base, &bs, w, errmsg));
fail:
    return st;
}

static int cmp_lw(const void *a, const void *b)
{
    return strcmp((*(const qt_lweight *const *)a)->name, (*(const qt_lweight *const *)b)->name);
}

qt_status qt_layout_build(const qt_modeldir *md, qt_layout **out, char *errmsg)
{
    qt_status st = QT_OK;
    qt_layout *L = NULL;
    *out = NULL;
    size_t n = qt_modeldir_n_tensors(md);
    L = qt_calloc(1, sizeof *L);
    QT_CHECK(L != NULL, QT_ERR_NOMEM, "out of memory");
    L->w = qt_calloc(n + 1, sizeof *L->w);
    L->sorted = qt_calloc(n + 1, sizeof *L->sorted);
    QT_CHECK(L->w && L->sorted, QT_ERR_NOMEM, "out of memory");
    size_t members = 0;
    for (size_t i = 0; i < n; i++) {
        qt_st_reader *rd;
        const qt_st_tensor *t = qt_modeldir_tensor(md, i, &rd);
        if (qt_bnb_is_companion(t->name)) {
            members++;
            continue;
        }
        QT_TRY(build_one(md, t, rd, &L->w[L->n], errmsg));
        L->n++;
    }
    /* every companion must belong to a weight that used it */
    size_t used = 0;
    for (size_t i = 0; i < L->n; i++) {
        const qt_lweight *w = &L->w[i];
        used += (w->absmax != NULL) + (w->quant_map != NULL) + (w->nested_absmax != NULL) +
                (w->nested_map != NULL) + (w->state != NULL) + (w->scb != NULL) +
                (w->weight_format != NULL);
    }
    if (used != members) {
        for (size_t i = 0; i < n; i++) {
            const qt_st_tensor *t = qt_modeldir_tensor(md, i, NULL);
            if (!qt_bnb_is_companion(t->name)) continue;
            bool found = false;
            for (size_t j = 0; j < L->n && !found; j++) {
                const qt_lweight *w = &L->w[j];
                found = t == w->absmax || t == w->quant_map || t == w->nested_absmax ||
                        t == w->nested_map || t == w->state || t == w->scb ||
                        t == w->weight_format;
            }
            QT_CHECK(found, QT_ERR_FORMAT,
                     "tensor '%s': quantization companion without a weight that uses it",
                     t->name);
        }
    }
    for (size_t i = 0; i < L->n; i++) L->sorted[i] = &L->w[i];
    qsort(L->sorted, L->n, sizeof *L->sorted, cmp_lw);
    *out = L;
    L = NULL;
fail:
    qt_layout_free(L);
    return st;
}

size_t qt_layout_n(const qt_layout *L) { return L->n; }
const qt_lweight *qt_layout_at(const qt_layout *L, size_t i) { return i < L->n ? &L->w[i] : NULL; }

const qt_lweight *qt_layout_find(const qt_layout *L, const char *name)
{
    size_t lo = 0, hi = L->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(L->sorted[mid]->name, name);
        if (c == 0) return L->sorted[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

qt_status qt_layout_qweight(const qt_lweight *w, qt_qweight *q, char *errmsg)
{
    memset(q, 0, sizeof *q);
    if (w->n_dims < 1 || w->n_elements == 0)
        return qt_set_err(errmsg, QT_ERR_UNSUPPORTED, "tensor '%s': not a matrix", w->name);
    q->n_out = (size_t)w->shape[0];
    q->n_in = (size_t)(w->n_elements / w->shape[0]);
    q->block_size = w->block_size;
    q->data = w->weight->data;
    switch (w->kind) {
    case QT_LW_PLAIN:
        if (w->scheme == QT_SCHEME_COUNT)
            return qt_set_err(errmsg, QT_ERR_UNSUPPORTED, "tensor '%s': unsupported dtype '%s'",
                              w->name, qt_dtype_name(w->dtype));
        q->scheme = w->scheme;
        break;
    case QT_LW_BNB4:
        q->scheme = w->scheme;
        q->quant_map = w->quant_map->data;
        if (w->double_quant) {
            q->absmax_q = w->absmax->data;
            q->nested_absmax = w->nested_absmax->data;
            q->nested_map = w->nested_map->data;
            q->nested_offset = w->nested_offset;
        } else {
            q->absmax = w->absmax->data;
        }
        break;
    case QT_LW_INT8:
        q->scheme = QT_SCHEME_INT8;
        q->scb = w->scb->data;
        break;
    case QT_LW_Q8: q->scheme = QT_SCHEME_Q8; break;
    default: return qt_set_err(errmsg, QT_ERR_UNSUPPORTED, "tensor '%s': unknown kind", w->name);
    }
    qt_status st = qt_qweight_check(q);
    if (st != QT_OK)
        return qt_set_err(errmsg, st, "tensor '%s': inconsistent quantized weight", w->name);
    return QT_OK;
}

double qt_lweight_bpw(const qt_lweight *w)
{
    return w->n_elements ? (double)w->nbytes * 8.0 / (double)w->n_elements : 0.0;
}

const char *qt_lweight_label(const qt_lweight *w)
{
    switch (w->kind) {
    case QT_LW_BNB4:
        if (w->scheme == QT_SCHEME_NF4) return w->double_quant ? "nf4+dq" : "nf4";
        return w->double_quant ? "fp4+dq" : "fp4";
    case QT_LW_INT8: return "int8";
    case QT_LW_Q8: return "q8";
    default: return qt_dtype_name(w->dtype);
    }
}

void qt_layout_free(qt_layout *L)
{
    if (!L) return;
    qt_free(L->w);
    qt_free(L->sorted);
    qt_free(L);
}
