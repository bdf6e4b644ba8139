/* quant/driver.c: the dispatch tables and the thin OpenMP drivers.
 *
 * Dispatch: qt_kernels_for(isa) returns a constant table; the active one
 * follows qt_isa_active() (decided once, QT_ISA / --isa honoured).
 * Threads: each driver splits its work into fixed chunks (blocks, rows,
 * 4-row output tiles) whose results do not depend on which thread computes
 * them, so every output is bit-identical for any thread count. */
#include "quant/quant.h"

#include "quant/quant_internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

const qt_kernels qt_kernels_ref = {
    QT_ISA_REF,     qt_quant4_ref,           qt_dequant4_ref, qt_q8_quant_ref,
    qt_int8_quant_row_ref, qt_blockwise8_quant_ref, qt_dot_tile_ref,
};

#if defined(__aarch64__)
/* NEON: compile-time only; no hand-written NEON kernels yet, the scalar
 * definitions are used (compilers auto-vectorize the simple loops). */
const qt_kernels qt_kernels_neon = {
    QT_ISA_NEON,    qt_quant4_ref,           qt_dequant4_ref, qt_q8_quant_ref,
    qt_int8_quant_row_ref, qt_blockwise8_quant_ref, qt_dot_tile_ref,
};
#endif

const qt_kernels *qt_kernels_for(qt_isa isa)
{
    if ((unsigned)isa >= QT_ISA_COUNT || !qt_isa_supported(isa)) return NULL;
    switch (isa) {
#if defined(__x86_64__)
    case QT_ISA_AVX2: return &qt_kernels_avx2;
    case QT_ISA_AVX512: return &qt_kernels_avx512;
#endif
#if defined(__aarch64__)
    case QT_ISA_NEON: return &qt_kernels_neon;
#endif
    case QT_ISA_REF: return &qt_kernels_ref;
    default: return NULL;
    }
}

const qt_kernels *qt_kernels_active(void)
{
    const qt_kernels *k = qt_kernels_for(qt_isa_active());
    return k ? k : &qt_kernels_ref;
}

/* Elements per parallel work item of the blockwise quantizers. */
#define CHUNK_ELEMS 16384

static size_t chunk_blocks(size_t block)
{
    return block >= CHUNK_ELEMS ? 1 : CHUNK_ELEMS / block;
}

qt_status qt_nf4_quantize(const qt_kernels *k, qt_scheme scheme, qt_src_type t, const void *src,
                          size_t n, size_t block, uint8_t *codes, float *absmax)
{
    if (scheme != QT_SCHEME_NF4 && scheme != QT_SCHEME_FP4) return QT_ERR_ARG;
    if (!src || !codes || !absmax || n == 0 || (unsigned)t >= QT_SRC_COUNT ||
        !qt_scheme_block_ok(scheme, block))
        return QT_ERR_ARG;
    if (!k) k = qt_kernels_active();
    const bool fp4 = scheme == QT_SCHEME_FP4;
    const size_t nb = qt_n_blocks(n, block), cb = chunk_blocks(block), es = qt_src_size(t);
    const size_t nc = qt_n_blocks(nb, cb);
    ptrdiff_t c;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (nc > 1)
#endif
    for (c = 0; c < (ptrdiff_t)nc; c++) {
        size_t b0 = (size_t)c * cb, e0 = b0 * block;
        size_t len = n - e0 < cb * block ? n - e0 : cb * block;
        k->quant4(fp4, t, (const unsigned char *)src + e0 * es, len, block, codes + e0 / 2,
                  absmax + b0);
    }
    return QT_OK;
}

qt_status qt_blockwise8_quantize(const qt_kernels *k, qt_src_type t, const void *src, size_t n,
                                 size_t block, uint8_t *codes, float *absmax)
{
    if (!src || !codes || !absmax || n == 0 || (unsigned)t >= QT_SRC_COUNT ||
        !qt_scheme_block_ok(QT_SCHEME_INT8_BLOCKWISE, block))
        return QT_ERR_ARG;
    if (!k) k = qt_kernels_active();
    const size_t nb = qt_n_blocks(n, block), cb = chunk_blocks(block), es = qt_src_size(t);
    const size_t nc = qt_n_blocks(nb, cb);
    ptrdiff_t c;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (nc > 1)
#endif
    for (c = 0; c < (ptrdiff_t)nc; c++) {
        size_t b0 = (size_t)c * cb, e0 = b0 * block;
        size_t len = n - e0 < cb * block ? n - e0 : cb * block;
        k->blockwise8_quant(t, (const unsigned char *)src + e0 * es, len, block, qt_dynamic_map,
                            codes + e0, absmax + b0);
    }
    return QT_OK;
}

qt_status qt_q8_quantize(const qt_kernels *k, qt_src_type t, const void *src, size_t n,
                         size_t block, void *dst)
{
    if (!src || !dst || n == 0 || (unsigned)t >= QT_SRC_COUNT ||
        !qt_scheme_block_ok(QT_SCHEME_Q8, block))
        return QT_ERR_ARG;
    if (!k) k = qt_kernels_active();
    const size_t nb = qt_n_blocks(n, block), cb = chunk_blocks(block), es = qt_src_size(t);
    const size_t nc = qt_n_blocks(nb, cb), bb = qt_q8_block_bytes(block);
    ptrdiff_t c;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (nc > 1)
#endif
    for (c = 0; c < (ptrdiff_t)nc; c++) {
        size_t b0 = (size_t)c * cb, e0 = b0 * block;
        size_t len = n - e0 < cb * block ? n - e0 : cb * block;
        k->q8_quant(t, (const unsigned char *)src + e0 * es, len, block,
                    (unsigned char *)dst + b0 * bb);
    }
    return QT_OK;
}

qt_status qt_int8_quantize(const qt_kernels *k, qt_src_type t, const void *src, size_t n_rows,
                           size_t n_cols, int8_t *cb, float *scb)
{
    if (!src || !cb || !scb || n_rows == 0 || n_cols == 0 || (unsigned)t >= QT_SRC_COUNT)
        return QT_ERR_ARG;
    size_t n;
    if (!qt_mul_size(n_rows, n_cols, &n)) return QT_ERR_OVERFLOW;
    if (!k) k = qt_kernels_active();
    const size_t es = qt_src_size(t);
    ptrdiff_t r;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (n_rows > 1 && n > 65536)
#endif
    for (r = 0; r < (ptrdiff_t)n_rows; r++)
        k->int8_quant_row(t, (const unsigned char *)src + (size_t)r * n_cols * es, n_cols,
                          cb + (size_t)r * n_cols, scb + r);
    return QT_OK;
}

/* Output rows per dequantized tile in qt_matmul / qt_dequantize. */
#define TILE_ROWS 4

static int max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

static int thread_id(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

qt_status qt_dequantize(const qt_kernels *k, const qt_qweight *w, qt_src_type out, void *dst)
{
    qt_status st = qt_qweight_check(w);
    if (st != QT_OK) return st;
    if (!dst || (unsigned)out >= QT_SRC_COUNT) return QT_ERR_ARG;
    if (!k) k = qt_kernels_active();
    const size_t n_in = w->n_in, nt = qt_n_blocks(w->n_out, TILE_ROWS);
    float *tiles = NULL;
    int nth = max_threads();
    if (out != QT_SRC_F32) {
        size_t bytes;
        if (!qt_mul_size((size_t)nth * TILE_ROWS, n_in * sizeof(float), &bytes))
            return QT_ERR_OVERFLOW;
        tiles = qt_aligned_alloc(64, bytes);
        if (!tiles) return QT_ERR_NOMEM;
    }
    ptrdiff_t ti;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nth) if (nt > 1)
#endif
    for (ti = 0; ti < (ptrdiff_t)nt; ti++) {
        size_t r0 = (size_t)ti * TILE_ROWS;
        size_t nr = w->n_out - r0 < TILE_ROWS ? w->n_out - r0 : TILE_ROWS;
        if (out == QT_SRC_F32) {
            qt_qweight_rows(k, w, r0, nr, (float *)dst + r0 * n_in);
            continue;
        }
        float *tile = tiles + (size_t)thread_id() * TILE_ROWS * n_in;
        qt_qweight_rows(k, w, r0, nr, tile);
        uint16_t *o = (uint16_t *)dst + r0 * n_in;
        for (size_t i = 0; i < nr * n_in; i++)
            o[i] = out == QT_SRC_BF16 ? qt_fp32_to_bf16(tile[i]) : qt_fp32_to_fp16(tile[i]);
    }
    qt_aligned_free(tiles);
    return QT_OK;
}

qt_status qt_matmul(const qt_kernels *k, const qt_qweight *w, const float *x, size_t n_tok,
                    float *y)
{
    qt_status st = qt_qweight_check(w);
    if (st != QT_OK) return st;
    if (!x || !y || n_tok == 0) return QT_ERR_ARG;
    if (!k) k = qt_kernels_active();
    const size_t n_in = w->n_in, n_out = w->n_out, nt = qt_n_blocks(n_out, TILE_ROWS);
    /* fp32 weights at float alignment are used in place */
    const bool direct = w->scheme == QT_SCHEME_FP32 && ((uintptr_t)w->data % sizeof(float)) == 0;
    int nth = max_threads();
    float *tiles = NULL;
    if (!direct) {
        size_t bytes;
        if (!qt_mul_size((size_t)nth * TILE_ROWS, n_in * sizeof(float), &bytes))
            return QT_ERR_OVERFLOW;
        tiles = qt_aligned_alloc(64, bytes);
        if (!tiles) return QT_ERR_NOMEM;
    }
    ptrdiff_t ti;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nth) if (nt > 1)
#endif
    for (ti = 0; ti < (ptrdiff_t)nt; ti++) {
        size_t r0 = (size_t)ti * TILE_ROWS;
        size_t nr = n_out - r0 < TILE_ROWS ? n_out - r0 : TILE_ROWS;
        const float *wt;
        if (direct) {
            wt = (const float *)w->data + r0 * n_in;
        } else {
            float *tile = tiles + (size_t)thread_id() * TILE_ROWS * n_in;
            qt_qweight_rows(k, w, r0, nr, tile);
            wt = tile;
        }
        k->dot_tile(x, n_in, n_tok, wt, n_in, nr, n_in, y + r0, n_out);
    }
    qt_aligned_free(tiles);
    return QT_OK;
}
