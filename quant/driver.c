/* quant/driver.c: the dispatch tables and the thin OpenMP drivers.
 *
 * Dispatch: qt_kernels_for(isa) returns a constant table; the active one
 * follows qt_isa_active() (decided once, QT_ISA / --isa honoured).
 * Threads: each driver splits its work into fixed chunks (blocks, rows,
 * output tiles) whose results do not depend on which thread computes them,
 * so every output is bit-identical for any thread count. qt_matmul stays on
 * the calling thread below MM_PAR_WORK multiply-adds. */
#include "common/threads.h"
#include "quant/quant.h"

#include <math.h>
#include <string.h>

#include "quant/quant_internal.h"

const qt_kernels qt_kernels_ref = {
    QT_ISA_REF,     qt_quant4_ref,           qt_dequant4_ref, qt_q8_quant_ref,
    qt_int8_quant_row_ref, qt_blockwise8_quant_ref, qt_dot_tile_ref, qt_lora_merge_row_ref,
    qt_attn_ref,
};

#if defined(__aarch64__)
/* NEON: compile-time only; no hand-written NEON kernels yet, the scalar
 * definitions are used (compilers auto-vectorize the simple loops). */
const qt_kernels qt_kernels_neon = {
    QT_ISA_NEON,    qt_quant4_ref,           qt_dequant4_ref, qt_q8_quant_ref,
    qt_int8_quant_row_ref, qt_blockwise8_quant_ref, qt_dot_tile_ref, qt_lora_merge_row_ref,
    qt_attn_ref,
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

/* Elements per parallel work item of the blockwise quantizers: large enough
 * that a kernel's per-call setup (the 4-bit code tables, ~1 us) stays under
 * 1 % of its time, small enough for 2 threads to share a 4096x4096 tensor
 * in 128 items. */
#define CHUNK_ELEMS 131072

static size_t chunk_blocks(size_t block)
{
    return block >= CHUNK_ELEMS ? 1 : CHUNK_ELEMS / block;
}

qt_status qt_nf4_quantize(const qt_kernels *k, qt_scheme scheme, qt_src_type t, const void *src,
                          size_t n, size_t block, uint8_t *codes, float *absmax)
{
    return qt_nf4_quantize_rcp(k, scheme, t, src, n, block, NULL, codes, absmax);
}

qt_status qt_nf4_quantize_rcp(const qt_kernels *k, qt_scheme scheme, qt_src_type t,
                              const void *src, size_t n, size_t block, const uint8_t *rcp,
                              uint8_t *codes, float *absmax)
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
        k->quant4(fp4, t, (const unsigned char *)src + e0 * es, len, block, rcp, codes + e0 / 2,
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
                            NULL, codes + e0, absmax + b0);
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
    return qt_int8_quantize_rcp(k, t, src, n_rows, n_cols, NULL, cb, scb);
}

qt_status qt_int8_quantize_rcp(const qt_kernels *k, qt_src_type t, const void *src,
                               size_t n_rows, size_t n_cols, const uint8_t *rcp, int8_t *cb,
                               float *scb)
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
        k->int8_quant_row(t, (const unsigned char *)src + (size_t)r * n_cols * es, n_cols, rcp,
                          cb + (size_t)r * n_cols, scb + r);
    return QT_OK;
}

qt_status qt_absmax_scan(qt_src_type t, const void *src, size_t n, size_t block, float *absmax,
                         bool *nonfinite)
{
    if (!src || !nonfinite || n == 0 || block == 0 || (unsigned)t >= QT_SRC_COUNT)
        return QT_ERR_ARG;
    const size_t nb = qt_n_blocks(n, block);
    const size_t group = block >= 4096 ? 1 : 4096 / block; /* blocks per work item */
    const ptrdiff_t ng = (ptrdiff_t)qt_n_blocks(nb, group);
    int bad = 0;
    ptrdiff_t g;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) reduction(| : bad) if (ng > 1)
#endif
    for (g = 0; g < ng; g++) {
        size_t b0 = (size_t)g * group, b1 = b0 + group < nb ? b0 + group : nb;
        bad |= qt_absmax_blocks_ref(t, src, n, block, b0, b1, absmax);
    }
    *nonfinite = bad != 0;
    return QT_OK;
}

/* Double quantization (spec §2): the centered absmax in nested blocks of
 * QT_DQ_BLOCK, one block per work item. AVX-512 and AVX2 have a bucket-table
 * kernel (the table built per call, a few microseconds); other ISAs, and
 * the GPU's arithmetic (rcp), run the blockwise8 kernel on the centered
 * values. Same bytes on every ISA. */
qt_status qt_dq_quantize_with_offset(const float *absmax, size_t nb, float offset,
                                     const uint8_t *rcp, uint8_t *codes, float *nested)
{
    if (!absmax || !codes || !nested || nb == 0) return QT_ERR_ARG;
    if (!isfinite(offset)) return QT_ERR_NUMERIC;
    const qt_kernels *k = qt_kernels_active();
    const ptrdiff_t ng = (ptrdiff_t)qt_dq_n_nested(nb);
    bool tab_ok = false;
#if defined(__x86_64__)
    qt_dq8_tab tab; /* ~28 KB, read-only once built */
    void (*block)(const qt_dq8_tab *, const float *, size_t, float, uint8_t *, float *) =
        k->isa == QT_ISA_AVX512 ? qt_dq_block_avx512 : qt_dq_block_avx2;
    tab_ok = !rcp && (k->isa == QT_ISA_AVX512 || k->isa == QT_ISA_AVX2) && qt_dq8_tab_init(&tab);
#endif
    ptrdiff_t g;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (ng > (tab_ok ? 64 : 4))
#endif
    for (g = 0; g < ng; g++) {
        size_t b0 = (size_t)g * QT_DQ_BLOCK;
        size_t len = nb - b0 < QT_DQ_BLOCK ? nb - b0 : QT_DQ_BLOCK;
#if defined(__x86_64__)
        if (tab_ok) {
            block(&tab, absmax + b0, len, offset, codes + b0, nested + g);
            continue;
        }
#endif
        qt_dq_block_with(k, absmax + b0, len, offset, rcp, codes + b0, nested + g);
    }
    return QT_OK;
}

qt_status qt_dq_quantize_rcp(const float *absmax, size_t nb, const uint8_t *rcp, uint8_t *codes,
                             float *nested, float *offset)
{
    if (!offset) return QT_ERR_ARG;
    qt_status st = rcp ? qt_dq_mean_cuda(absmax, nb, offset) : qt_dq_mean(absmax, nb, offset);
    if (st != QT_OK) return st;
    return qt_dq_quantize_with_offset(absmax, nb, *offset, rcp, codes, nested);
}

qt_status qt_dq_quantize(const float *absmax, size_t nb, uint8_t *codes, float *nested,
                         float *offset)
{
    return qt_dq_quantize_rcp(absmax, nb, NULL, codes, nested, offset);
}

/* Output rows per dequantized tile in qt_dequantize and the dot_tile path
 * of qt_matmul. */
#define TILE_ROWS 4
/* Packed GEMM: input columns per block (kc); outputs per tile when
 * prompt processing (4 AVX2 micro-panels, 2 AVX-512 ones: every tile reads
 * the whole of x once, so a wider tile reads it less often, and its 64 KiB
 * of panels stay in L2); micro-panels per tile when decoding (few tokens). */
#define MM_KC 256
#define MM_TILE_OUT 64
#define MM_PANELS_GEMV 4
/* Below this many multiply-adds a matmul runs on the calling thread: waking
 * a team costs more than it saves. */
#define MM_PAR_WORK 262144.0
/* Work items per thread wanted before tokens are split too. */
#define MM_ITEMS_PER_THREAD 4
/* Packed GEMM: most tokens per work item. Their outputs are accumulated in
 * a per-thread stage (MM_STAGE_TOK x MM_TILE_OUT floats, 128 KiB, in L2)
 * rather than in y, whose rows are n_out floats apart (a power of two in
 * most models): there a tile's accumulators share a few cache sets and
 * pages and are evicted between column blocks. */
#define MM_STAGE_TOK 512

/* One dequantized tile of TILE_ROWS rows of n_in floats per thread. */
static qt_status tiles_alloc(int nth, size_t n_in, float **tiles)
{
    size_t bytes;
    if (!qt_mul_size((size_t)nth * TILE_ROWS, n_in * sizeof(float), &bytes)) return QT_ERR_OVERFLOW;
    *tiles = qt_aligned_alloc(64, bytes);
    return *tiles ? QT_OK : QT_ERR_NOMEM;
}

qt_status qt_dequantize(const qt_kernels *k, const qt_qweight *w, qt_src_type out, void *dst)
{
    qt_status st = qt_qweight_check(w);
    if (st != QT_OK) return st;
    if (!dst || (unsigned)out >= QT_SRC_COUNT) return QT_ERR_ARG;
    if (!k) k = qt_kernels_active();
    const size_t n_in = w->n_in, nt = qt_n_blocks(w->n_out, TILE_ROWS);
    float *tiles = NULL;
    int nth = qt_max_threads();
    if (out != QT_SRC_F32) { /* fp32 goes straight to dst */
        st = tiles_alloc(nth, n_in, &tiles);
        if (st != QT_OK) return st;
    }
    qt_dq_ctx ctx;
    qt_dq_ctx_init(&ctx, k, w);
    ptrdiff_t ti;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nth) if (nt > 1)
#endif
    for (ti = 0; ti < (ptrdiff_t)nt; ti++) {
        size_t r0 = (size_t)ti * TILE_ROWS;
        size_t nr = w->n_out - r0 < TILE_ROWS ? w->n_out - r0 : TILE_ROWS;
        if (out == QT_SRC_F32) {
            qt_dq_range(&ctx, r0 * n_in, nr * n_in, (float *)dst + r0 * n_in);
            continue;
        }
        float *tile = tiles + (size_t)qt_thread_id() * TILE_ROWS * n_in;
        qt_dq_range(&ctx, r0 * n_in, nr * n_in, tile);
        uint16_t *o = (uint16_t *)dst + r0 * n_in;
        for (size_t i = 0; i < nr * n_in; i++)
            o[i] = out == QT_SRC_BF16 ? qt_fp32_to_bf16(tile[i]) : qt_fp32_to_fp16(tile[i]);
    }
    qt_aligned_free(tiles);
    return QT_OK;
}

/* The ref ISA: 4-row tiles dequantized then dot_tile, OpenMP over tiles. */
static qt_status matmul_dot(const qt_kernels *k, const qt_qweight *w, const float *x,
                            size_t n_tok, float *y, bool par, int nth)
{
    const size_t n_in = w->n_in, n_out = w->n_out, nt = qt_n_blocks(n_out, TILE_ROWS);
    /* fp32 weights at float alignment are used in place */
    const bool direct = w->scheme == QT_SCHEME_FP32 && ((uintptr_t)w->data % sizeof(float)) == 0;
    float *tiles = NULL;
    if (!par) nth = 1;
    if (!direct) {
        qt_status st = tiles_alloc(nth, n_in, &tiles);
        if (st != QT_OK) return st;
    }
    qt_dq_ctx ctx;
    qt_dq_ctx_init(&ctx, k, w);
    ptrdiff_t ti;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nth) if (par && nt > 1)
#endif
    for (ti = 0; ti < (ptrdiff_t)nt; ti++) {
        size_t r0 = (size_t)ti * TILE_ROWS;
        size_t nr = n_out - r0 < TILE_ROWS ? n_out - r0 : TILE_ROWS;
        const float *wt;
        if (direct) {
            wt = (const float *)w->data + r0 * n_in;
        } else {
            float *tile = tiles + (size_t)qt_thread_id() * TILE_ROWS * n_in;
            qt_dq_range(&ctx, r0 * n_in, nr * n_in, tile);
            wt = tile;
        }
        k->dot_tile(x, n_in, n_tok, wt, n_in, nr, n_in, y + r0, n_out);
    }
    qt_aligned_free(tiles);
    return QT_OK;
}

/* The packed GEMM's panels of one tile (outputs o0 .. o0+ncv-1, nc the
 * tile's width) over input columns k0 .. k0+kl-1: each micro-panel of nr
 * rows dequantized into `rows` (fp32 rows are read in place, bf16 / fp16
 * widened by pack_half where the ISA has it) and packed K-major into
 * `panel`; the next column block's bytes (or the next tile's) prefetched. */
static void gemm_pack_tile(const qt_dq_ctx *ctx, const qt_mm_ops *ops, size_t o0, size_t ncv,
                           size_t nc, size_t k0, size_t kl, float *rows, float *panel)
{
    const qt_qweight *w = ctx->w;
    const size_t n_in = w->n_in, n_out = w->n_out, nr = ops->nr, kc = n_in < MM_KC ? n_in : MM_KC;
    const size_t n_pan = qt_n_blocks(ncv, nr);
    /* fp32, and bf16 / fp16 where the ISA widens while packing: no rows copy */
    const bool direct = w->scheme == QT_SCHEME_FP32;
    const bool half = (w->scheme == QT_SCHEME_BF16 || w->scheme == QT_SCHEME_FP16) &&
                      ops->pack_half;
    for (size_t p = 0; p < n_pan; p++) {
        const size_t r0 = o0 + p * nr, nrw = ncv - p * nr < nr ? ncv - p * nr : nr;
        const void *src;
        size_t ld;
        if (half) {
            const size_t nl = n_in - k0 - kl < kc ? n_in - k0 - kl : kc;
            for (size_t r = 0; r < nrw && nl; r++)
                qt_dq_prefetch(ctx, (r0 + r) * n_in + k0 + kl, nl);
            ops->pack_half(w->scheme == QT_SCHEME_BF16,
                           (const unsigned char *)w->data + 2 * (r0 * n_in + k0), n_in, nrw, kl,
                           panel + p * kl * nr);
            continue;
        }
        if (direct) {
            src = (const unsigned char *)w->data + 4 * (r0 * n_in + k0);
            ld = n_in;
        } else {
            for (size_t r = 0; r < nrw; r++) {
                /* the same row's next block, or the next tile's first */
                if (k0 + kl < n_in) {
                    size_t nl = n_in - k0 - kl < kc ? n_in - k0 - kl : kc;
                    qt_dq_prefetch(ctx, (r0 + r) * n_in + k0 + kl, nl);
                } else if (r0 + r + nc < n_out) {
                    qt_dq_prefetch(ctx, (r0 + r + nc) * n_in, kc);
                }
                qt_dq_range(ctx, (r0 + r) * n_in + k0, kl, rows + r * kl);
            }
            src = rows;
            ld = kl;
        }
        ops->pack(src, ld, nrw, kl, panel + p * kl * nr);
    }
}

/* The packed GEMM (quant_internal.h). Work item = (tile of np micro-panels
 * of output rows, chunk of tokens); for each block of kc input columns the
 * tile's rows are dequantized into `rows`, packed into `panel`, and the
 * kernel continues every output's fma chain in the thread's stage, copied
 * to y when the chain is complete. Which thread runs an item, and how items
 * are cut, changes nothing in the result; items are handed out one at a
 * time, so a thread that another process holds up leaves its share to the
 * others instead of stalling the barrier. */
static qt_status matmul_gemm(const qt_kernels *k, const qt_mm_ops *ops, const qt_qweight *w,
                             const float *x, size_t n_tok, float *y, bool par, int nth)
{
    const size_t n_in = w->n_in, n_out = w->n_out, nr = ops->nr;
    const size_t np = n_tok < 4 ? MM_PANELS_GEMV : nr < MM_TILE_OUT ? MM_TILE_OUT / nr : 1;
    const size_t nc = np * nr;
    const size_t kc = n_in < MM_KC ? n_in : MM_KC;
    const size_t n_tiles = qt_n_blocks(n_out, nc);
    if (!par) nth = 1;
    /* tokens split when there are too few tiles to share, and in chunks
     * that fit the output stage */
    size_t tch = n_tok;
    if (par && n_tiles < (size_t)nth * MM_ITEMS_PER_THREAD && n_tok > ops->mr) {
        size_t want = qt_n_blocks((size_t)nth * MM_ITEMS_PER_THREAD, n_tiles);
        tch = qt_n_blocks(qt_n_blocks(n_tok, want), ops->mr) * ops->mr;
    }
    if (tch > MM_STAGE_TOK) tch = MM_STAGE_TOK;
    const size_t n_tch = qt_n_blocks(n_tok, tch), items = n_tiles * n_tch;
    /* per thread: dequantized rows (nc x kc), the panels (kc x nc) and the
     * output stage (tch x nc) */
    const size_t per = 2 * nc * kc + tch * nc;
    size_t bytes;
    if (!qt_mul_size((size_t)nth * per, sizeof(float), &bytes)) return QT_ERR_OVERFLOW;
    float *scratch = qt_aligned_alloc(64, bytes);
    if (!scratch) return QT_ERR_NOMEM;
    qt_dq_ctx ctx;
    qt_dq_ctx_init(&ctx, k, w);
    ptrdiff_t it;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(nth) if (par && items > 1)
#endif
    for (it = 0; it < (ptrdiff_t)items; it++) {
        const size_t tile = (size_t)it / n_tch, tc = (size_t)it % n_tch;
        const size_t o0 = tile * nc, ncv = n_out - o0 < nc ? n_out - o0 : nc;
        const size_t t0 = tc * tch, nt = n_tok - t0 < tch ? n_tok - t0 : tch;
        float *rows = scratch + (size_t)qt_thread_id() * per, *panel = rows + nc * kc;
        float *stage = panel + nc * kc;
        for (size_t k0 = 0; k0 < n_in; k0 += kc) {
            const size_t kl = n_in - k0 < kc ? n_in - k0 : kc;
            gemm_pack_tile(&ctx, ops, o0, ncv, nc, k0, kl, rows, panel);
            ops->gemm(x + t0 * n_in + k0, n_in, nt, panel, qt_n_blocks(ncv, nr), kl, ncv, stage,
                      nc, k0 > 0);
        }
        /* the chains are complete: the stage goes to y */
        for (size_t t = 0; t < nt; t++)
            memcpy(y + (t0 + t) * n_out + o0, stage + t * nc, ncv * sizeof(float));
    }
    qt_aligned_free(scratch);
    return QT_OK;
}

/* Decoding (one token) through the scheme's fused dot_rows: rows split in
 * fixed chunks across threads; every output is one call's fma chain. */
#define GEMV_ROWS 64
static qt_status matmul_fused(const qt_kernels *k, qt_dot_rows_fn dot, const qt_qweight *w,
                              const float *x, float *y, bool par, int nth)
{
    const size_t n_ch = qt_n_blocks(w->n_out, GEMV_ROWS);
    qt_dq_ctx ctx;
    qt_dq_ctx_init(&ctx, k, w);
    if (!par) nth = 1;
    (void)nth; /* used by the OpenMP clause only */
    ptrdiff_t ci;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nth) if (par && n_ch > 1)
#endif
    for (ci = 0; ci < (ptrdiff_t)n_ch; ci++) {
        size_t r0 = (size_t)ci * GEMV_ROWS;
        size_t nr = w->n_out - r0 < GEMV_ROWS ? w->n_out - r0 : GEMV_ROWS;
        dot(&ctx, r0, nr, x, y + r0);
    }
    return QT_OK;
}

qt_status qt_matmul(const qt_kernels *k, const qt_qweight *w, const float *x, size_t n_tok,
                    float *y)
{
    qt_status st = qt_qweight_check(w);
    if (st != QT_OK) return st;
    if (!x || !y || n_tok == 0) return QT_ERR_ARG;
    if (!k) k = qt_kernels_active();
    const int nth = qt_max_threads();
    const bool par =
        nth > 1 && (double)n_tok * (double)w->n_out * (double)w->n_in >= MM_PAR_WORK;
    const qt_mm_ops *ops = qt_mm_ops_for(k);
    if (n_tok == 1 && ops->dot_rows[w->scheme])
        return matmul_fused(k, ops->dot_rows[w->scheme], w, x, y, par, nth);
    if (!ops->gemm) return matmul_dot(k, w, x, n_tok, y, par, nth);
    return matmul_gemm(k, ops, w, x, n_tok, y, par, nth);
}
