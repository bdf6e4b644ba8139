/* model/lora.c: a PEFT LoRA adapter in the forward pass (model/model.h
 * qt_model_set_adapter; specs/peft-lora.md §5.1): per wrapped Linear,
 * y += s * (B (A x) + b_B), batched over the tokens of a chunk as
 * T = X A^T (n, r) then U = T B^T (n, n_out), through qt_matmul on fp32
 * descriptors (B A is never formed); full replacement tensors
 * (modules_to_save, trained biases) swap the base's weights for fp32
 * copies owned by the model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/adapter.h"
#include "formats/fsutil.h"
#include "model/model_internal.h"

/* The adapter as the forward pass uses it: the module of each
 * (layer, projection), and lm_head's, in one table. */
struct qt_lora {
    qt_adapter *ad;                      /* owned, unless borrowed (a fork's) */
    const qt_adapter_module **slot;      /* (n_layers * QT_PROJ_COUNT + 1,) NULL = none */
    bool borrowed;                       /* ad, slot and bt belong to the parent model */
    float **bt;                          /* (n_slots,) B^T (r, n_out) of each slot's module,
                                            owned by the model (qt_model_alloc_f32) */
    float *t;                            /* (n_batch, r_max) A x */
    float *u;                            /* (n_batch, n_out_max) B (A x) */
};

/* The table index of a module name, or -1 when it is not a Linear the
 * forward pass runs. */
static ptrdiff_t slot_index(const qt_model *m, const char *name)
{
    if (!strcmp(name, "lm_head")) return (ptrdiff_t)(m->cfg.n_layers * QT_PROJ_COUNT);
    size_t l;
    int used = 0;
    if (sscanf(name, "model.layers.%zu.%n", &l, &used) != 1 || used == 0 || l >= m->cfg.n_layers)
        return -1;
    const char *rest = name + used;
    for (int p = 0; p < QT_PROJ_COUNT; p++) {
        const char *leaf = strrchr(rest, '.');
        const char *group = p <= QT_PROJ_O ? "self_attn." : "mlp.";
        if (leaf && !strncmp(rest, group, strlen(group)) && !strcmp(leaf + 1, qt_proj_name(p)) &&
            (size_t)(leaf - rest) == strlen(group) - 1)
            return (ptrdiff_t)(l * QT_PROJ_COUNT + (size_t)p);
    }
    return -1;
}

/* The model's weight matrix called name (an fp32 replacement goes there),
 * or NULL. */
static qt_qweight *matrix_slot(qt_model *m, const char *name)
{
    if (!strcmp(name, "model.embed_tokens.weight")) return &m->w.embed;
    if (!strcmp(name, "lm_head.weight")) return &m->w.lm_head;
    char mod[256];
    snprintf(mod, sizeof mod, "%s", name);
    if (!qt_str_ends_with(mod, ".weight")) return NULL;
    mod[strlen(mod) - strlen(".weight")] = 0;
    ptrdiff_t i = slot_index(m, mod);
    if (i < 0 || (size_t)i >= m->cfg.n_layers * QT_PROJ_COUNT) return NULL;
    qt_layer_weights *L = &m->w.layers[(size_t)i / QT_PROJ_COUNT];
    qt_qweight *mats[QT_PROJ_COUNT] = {&L->wq, &L->wk,     &L->wv,    &L->wo,
                                       &L->w_gate, &L->w_up, &L->w_down};
    return mats[(size_t)i % QT_PROJ_COUNT];
}

/* The model's fp32 vector called name (norms, biases), or NULL. */
static const float **vector_slot(qt_model *m, const char *name)
{
    if (!strcmp(name, "model.norm.weight")) return &m->w.norm;
    size_t l;
    int used = 0;
    if (sscanf(name, "model.layers.%zu.%n", &l, &used) != 1 || used == 0 || l >= m->cfg.n_layers)
        return NULL;
    qt_layer_weights *L = &m->w.layers[l];
    static const char *const names[] = {"input_layernorm.weight", "post_attention_layernorm.weight",
                                        "self_attn.q_proj.bias", "self_attn.k_proj.bias",
                                        "self_attn.v_proj.bias", "self_attn.o_proj.bias"};
    const float **slots[] = {&L->attn_norm, &L->ffn_norm, &L->bq, &L->bk, &L->bv, &L->bo};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!strcmp(name + used, names[i])) return slots[i];
    return NULL;
}

/* Puts a replacement tensor in place of the base's: an fp32 copy owned by
 * the model. */
static qt_status replace(qt_model *m, const qt_adapter *ad, const qt_adapter_replacement *rp,
                         char *errmsg)
{
    qt_status st = QT_OK;
    qt_qweight *mat = matrix_slot(m, rp->name);
    const float **vec = mat ? NULL : vector_slot(m, rp->name);
    QT_CHECK(mat || vec, QT_ERR_UNSUPPORTED,
             "adapter '%s': tensor '%s': replacing '%s' is not supported", ad->dir, rp->key,
             rp->name);
    float *v = qt_model_alloc_f32(m, (size_t)rp->t->n_elements);
    QT_CHECK(v, QT_ERR_NOMEM, "adapter '%s': tensor '%s': out of memory", ad->dir, rp->key);
    QT_TRY(qt_st_tensor_to_f32(ad->reader, rp->t, 0, (size_t)rp->t->n_elements, v, errmsg));
    if (vec) {
        *vec = v;
        return QT_OK;
    }
    QT_CHECK(rp->t->n_dims == 2 && rp->t->shape[0] == mat->n_out && rp->t->shape[1] == mat->n_in,
             QT_ERR_FORMAT, "adapter '%s': tensor '%s': shape differs from the model's",
             ad->dir, rp->key);
    qt_qweight q = {.scheme = QT_SCHEME_FP32, .n_out = mat->n_out, .n_in = mat->n_in, .data = v};
    *mat = q;
    return QT_OK;
fail:
    return st;
}

/* The largest rank and out_features among the adapter's modules. */
static void lora_sizes(const qt_adapter *ad, size_t *r_max, size_t *out_max)
{
    *r_max = *out_max = 1;
    for (size_t i = 0; i < ad->n_mods; i++) {
        if (ad->mods[i].r > *r_max) *r_max = ad->mods[i].r;
        if (ad->mods[i].n_out > *out_max) *out_max = ad->mods[i].n_out;
    }
}

void qt_lora_free(qt_lora *lo)
{
    if (!lo) return;
    if (!lo->borrowed) {
        qt_adapter_free(lo->ad);
        qt_free(lo->slot);
        qt_free(lo->bt);
    }
    memset(lo, 0, sizeof *lo);
    qt_free(lo);
}

qt_status qt_model_set_adapter(qt_model *m, qt_adapter *ad, char *errmsg)
{
    qt_status st = QT_OK;
    qt_lora *lo = NULL;
    QT_CHECK(m && ad, QT_ERR_ARG, "qt_model_set_adapter: NULL argument");
    QT_CHECK(!m->lora, QT_ERR_ARG, "the model already has an adapter");
    QT_CHECK(m->layout, QT_ERR_UNSUPPORTED,
             "adapter '%s': the base must be a safetensors model directory (GGUF names differ)",
             ad->dir);
    /* every tensor must fit the base (names, shapes) before anything changes */
    QT_TRY(qt_adapter_match(ad, m->layout, errmsg));
    lo = qt_calloc(1, sizeof *lo);
    const size_t n_slots = m->cfg.n_layers * QT_PROJ_COUNT + 1;
    QT_CHECK(lo && (lo->slot = qt_calloc(n_slots, sizeof *lo->slot)) &&
                 (lo->bt = qt_calloc(n_slots, sizeof *lo->bt)),
             QT_ERR_NOMEM, "out of memory");
    size_t r_max, out_max;
    for (size_t i = 0; i < ad->n_mods; i++) {
        const qt_adapter_module *md = &ad->mods[i];
        ptrdiff_t s = slot_index(m, md->name);
        QT_CHECK(s >= 0, QT_ERR_UNSUPPORTED,
                 "adapter '%s': module '%s': LoRA on this module is not supported", ad->dir,
                 md->name);
        lo->slot[s] = md;
        lo->bt[s] = qt_model_alloc_f32(m, md->r * md->n_out);
        QT_CHECK(lo->bt[s], QT_ERR_NOMEM,
                 "out of memory");
        for (size_t o = 0; o < md->n_out; o++) /* B^T, for the row kernel */
            for (size_t k = 0; k < md->r; k++) lo->bt[s][k * md->n_out + o] = md->B[o * md->r + k];
    }
    lora_sizes(ad, &r_max, &out_max);
    lo->t = qt_model_alloc_f32(m, m->n_batch * r_max);
    lo->u = qt_model_alloc_f32(m, m->n_batch * out_max);
    QT_CHECK(lo->t && lo->u, QT_ERR_NOMEM, "out of memory for the adapter's scratch");
    for (size_t i = 0; i < ad->n_repl; i++) QT_TRY(replace(m, ad, &ad->repl[i], errmsg));
    lo->ad = ad;
    m->lora = lo;
    return QT_OK;
fail:
    if (lo) lo->ad = NULL; /* the caller keeps the adapter on failure */
    qt_lora_free(lo);
    return st;
}

qt_status qt_lora_fork(qt_model *f, const qt_model *m, char *errmsg)
{
    size_t r_max, out_max;
    qt_lora *lo = qt_calloc(1, sizeof *lo);
    if (!lo) return qt_set_err(errmsg, QT_ERR_NOMEM, "out of memory for the adapter");
    /* the adapter and its table borrowed, the scratch its own */
    lo->ad = m->lora->ad;
    lo->slot = m->lora->slot;
    lo->bt = m->lora->bt;
    lo->borrowed = true;
    lora_sizes(lo->ad, &r_max, &out_max);
    lo->t = qt_model_alloc_f32(f, f->n_batch * r_max);
    lo->u = qt_model_alloc_f32(f, f->n_batch * out_max);
    f->lora = lo;
    if (!lo->t || !lo->u) return qt_set_err(errmsg, QT_ERR_NOMEM, "out of memory for the adapter");
    return QT_OK;
}

/* Tokens per work item of the LoRA branch; below LORA_PAR_WORK
 * multiply-adds it stays on the calling thread. */
#define LORA_TOKENS 8
#define LORA_PAR_WORK 262144.0

/* y (n, n_out) += s * (B (A x) + b_B) for n tokens x (n, n_in): per block
 * of tokens T = X A^T (n, r), U = T B^T (n, n_out) through the kernels' dot
 * tile (each element one fixed summation order), then y += (U + b_B) * s,
 * PEFT's order. One parallel region over token blocks: any thread count
 * gives the same bytes. t (n, r) and u (n, n_out) are scratch. */
static void lora_rows(const qt_kernels *k, const qt_adapter_module *md, const float *bt,
                      const float *x, size_t n, float *t, float *u, float *y)
{
    const size_t r = md->r, n_in = md->n_in, n_out = md->n_out;
    const ptrdiff_t n_blocks = (ptrdiff_t)((n + LORA_TOKENS - 1) / LORA_TOKENS);
    const float sc = md->scale;
    ptrdiff_t b;
    (void)n_blocks;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if ((double)n * (double)r * (double)(n_in + n_out) >= LORA_PAR_WORK)
#endif
    for (b = 0; b < n_blocks; b++) {
        const size_t t0 = (size_t)b * LORA_TOKENS;
        const size_t nt = n - t0 < LORA_TOKENS ? n - t0 : LORA_TOKENS;
        k->dot_tile(x + t0 * n_in, n_in, nt, md->A, n_in, r, n_in, t + t0 * r, r);
        if (!md->b_B) { /* y += s (sum_k t_k B^T[k, :]): the merge row kernel, vectorized over n_out */
            for (size_t i = t0; i < t0 + nt; i++)
                k->lora_merge_row(y + i * n_out, n_out, t + i * r, r, bt, sc);
            continue;
        }
        k->dot_tile(t + t0 * r, r, nt, md->B, r, n_out, r, u + t0 * n_out, n_out);
        for (size_t i = t0; i < t0 + nt; i++) {
            float *yr = y + i * n_out;
            const float *ur = u + i * n_out;
            if (md->b_B)
                for (size_t o = 0; o < n_out; o++) yr[o] += (ur[o] + md->b_B[o]) * sc;
            else
                for (size_t o = 0; o < n_out; o++) yr[o] += ur[o] * sc;
        }
    }
}

qt_status qt_lora_apply(qt_model *m, size_t l, const char *what, const float *x, size_t n,
                        float *y)
{
    qt_lora *lo = m->lora;
    size_t p = 0;
    while (p < QT_PROJ_COUNT && strcmp(what, qt_proj_name((qt_proj)p))) p++;
    if (l < m->cfg.n_layers && p == QT_PROJ_COUNT) return QT_OK;
    const size_t s = l < m->cfg.n_layers ? l * QT_PROJ_COUNT + p
                                         : m->cfg.n_layers * QT_PROJ_COUNT;
    const qt_adapter_module *md = lo->slot[s];
    if (!md) return QT_OK;
    lora_rows(m->k, md, lo->bt[s], x, n, lo->t, lo->u, y);
    return QT_OK;
}

qt_status qt_model_load_adapter(qt_model *m, const char *adapter_dir, char *errmsg)
{
    qt_adapter *ad = NULL;
    qt_status st = qt_adapter_open(adapter_dir, &ad, errmsg);
    if (st == QT_OK && (st = qt_model_set_adapter(m, ad, errmsg)) != QT_OK) qt_adapter_free(ad);
    return st;
}

qt_status qt_model_open_adapter(const char *path, const char *adapter_dir,
                                const qt_model_opts *opts, qt_model **out, char *errmsg)
{
    qt_status st = QT_OK;
    qt_model *m = NULL;
    if (out) *out = NULL;
    QT_TRY(qt_model_open(path, opts, &m, errmsg));
    if (adapter_dir) QT_TRY(qt_model_load_adapter(m, adapter_dir, errmsg));
    *out = m;
    return QT_OK;
fail:
    qt_model_free(m);
    return st;
}

bool qt_model_arg_split(const char *arg, char *model, size_t n, const char **adapter)
{
    *adapter = NULL;
    snprintf(model, n, "%s", arg);
    const char *plus = strrchr(arg, '+');
    if (!plus || !plus[1] || plus == arg || qt_path_is_dir(arg) || qt_path_is_file(arg))
        return strlen(arg) < n;
    model[(size_t)(plus - arg) < n ? (size_t)(plus - arg) : n - 1] = 0;
    *adapter = plus + 1;
    return (size_t)(plus - arg) < n;
}

const qt_adapter *qt_model_adapter(const qt_model *m)
{
    return m->lora ? m->lora->ad : NULL;
}
