/* bench/synth_adapter.c: a SYNTHETIC PEFT LoRA adapter for a model
 * (`qtool bench synth-adapter`, bench/bench.h): every decoder-layer Linear
 * (q/k/v/o, gate/up/down) gets rank-r A and B of seeded uniform noise
 * (A in +-1/sqrt(in_features), B in +-0.01, so that B A is not zero and the
 * benchmark does the work a trained adapter costs). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bench/bench.h"
#include "formats/adapter.h"
#include "formats/layout.h"
#include "formats/modeldir.h"
#include "model/model.h"

/* xorshift64* in [-1, 1). */
static float noise(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return (float)((double)((*s * 2685821657736338717ull) >> 11) / 4503599627370496.0 - 1.0);
}

/* Whether name is "model.layers.N.<self_attn|mlp>.<proj>.weight". */
static bool is_layer_linear(const char *name)
{
    if (strncmp(name, "model.layers.", 13) || !strstr(name, ".weight")) return false;
    for (int p = 0; p < QT_PROJ_COUNT; p++) {
        char tail[48];
        snprintf(tail, sizeof tail, ".%s.weight", qt_proj_name((qt_proj)p));
        size_t lt = strlen(tail), ln = strlen(name);
        if (ln > lt && !strcmp(name + ln - lt, tail)) return true;
    }
    return false;
}

qt_status qt_bench_synth_adapter(const char *model, const char *out, size_t rank, double alpha,
                                 uint64_t seed, char *errmsg)
{
    qt_status st = QT_OK;
    qt_modeldir *md = NULL;
    qt_layout *L = NULL;
    qt_adapter_module *mods = NULL;
    size_t n = 0;
    QT_CHECK(rank >= 1 && rank <= 4096 && alpha > 0, QT_ERR_ARG, "rank %zu or alpha %g out of range",
             rank, alpha);
    QT_TRY(qt_modeldir_open(model, &md, errmsg));
    QT_TRY(qt_layout_build(md, &L, errmsg));
    mods = qt_calloc(qt_layout_n(L) + 1, sizeof *mods);
    QT_CHECK(mods, QT_ERR_NOMEM, "out of memory");
    uint64_t s = seed ? seed : 1;
    for (size_t i = 0; i < qt_layout_n(L); i++) {
        const qt_lweight *w = qt_layout_at(L, i);
        if (!is_layer_linear(w->name) || w->n_dims != 2) continue;
        qt_adapter_module *m = &mods[n++];
        m->name = qt_strdup(w->name);
        QT_CHECK(m->name, QT_ERR_NOMEM, "out of memory");
        m->name[strlen(m->name) - strlen(".weight")] = 0;
        m->r = rank;
        m->n_out = (size_t)w->shape[0];
        m->n_in = (size_t)w->shape[1];
        m->A = qt_malloc(rank * m->n_in * sizeof(float));
        m->B = qt_malloc(m->n_out * rank * sizeof(float));
        QT_CHECK(m->A && m->B, QT_ERR_NOMEM, "out of memory for '%s'", m->name);
        const float ka = 1.0f / sqrtf((float)m->n_in);
        for (size_t j = 0; j < rank * m->n_in; j++) m->A[j] = ka * noise(&s);
        for (size_t j = 0; j < m->n_out * rank; j++) m->B[j] = 0.01f * noise(&s);
    }
    QT_CHECK(n > 0, QT_ERR_ARG, "'%s': no decoder-layer Linear weights", model);
    qt_adapter_spec spec = {.r = (int64_t)rank, .lora_alpha = alpha, .base_model = model,
                            .mods = mods, .n_mods = n};
    QT_TRY(qt_adapter_write(out, &spec, errmsg));
fail:
    for (size_t i = 0; mods && i < n; i++) {
        qt_free(mods[i].name);
        qt_free(mods[i].A);
        qt_free(mods[i].B);
    }
    qt_free(mods);
    qt_layout_free(L);
    qt_modeldir_close(md);
    return st;
}
