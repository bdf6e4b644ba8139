/* quant/dq.c: double ("nested") quantization of the 4-bit absmax (spec §2):
 * offset = the correctly rounded float32 mean of the absmax values, the
 * centered values f32(absmax - offset) quantized with the dynamic map in
 * blocks of 256 (the dQuantize<0> search of §3.1), and its inverse (§5).
 *
 * The mean is exact: every float32 is an integer multiple of 2^-149, so the
 * sum is accumulated exactly in a fixed-point integer of 32-bit limbs, then
 * divided by n with enough extra bits and rounded once to float32 (nearest
 * even, subnormals included). The significands are first summed per
 * exponent in uint64 (OpenMP over chunks, merged exactly), then shifted into
 * the limbs; on AVX2 / AVX-512, when the nonzero values span at most
 * QT_DQ_MEAN_WIN binades (absmax values nearly always do), one vector pass
 * sums them shifted to the smallest exponent instead (qt_dq_mean_sum_avx2,
 * 0.9 -> 0.17 ms for 704,512 values on one core). The result does not
 * depend on the order of the values, hence not on threads or ISA.
 *
 * The driver over the nested blocks (qt_dq_quantize*) is in quant/driver.c:
 * on AVX-512 and AVX2 it uses qt_dq_block_avx512 / _avx2 with a bucket table
 * of the dQuantize<0> boundaries (quant_internal.h), built per call from
 * qt_dq8_code itself; other ISAs, and the GPU's arithmetic (rcp), use their
 * blockwise8 kernel (qt_dq_block_with). The bytes are the same. */
#include "quant/quant.h"

#include <math.h>
#include <string.h>

#include "quant/quant_internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* 2 low limbs of fraction for the division, 277 bits of value, 32 bits of
 * count: 13 limbs of 32 bits hold everything. */
#define MEAN_LIMBS 13
#define MEAN_FRAC_LIMBS 2
/* values per parallel work item of the mean */
#define MEAN_CHUNK 16384

/* The first invalid value decides the status, as a plain left-to-right scan. */
static qt_status mean_bad_status(const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t b = qt_f32_bits(v[i]);
        if (((b >> 23) & 0xff) == 0xff) return QT_ERR_NUMERIC;
        if (b > 0x80000000u) return QT_ERR_ARG; /* absmax is never negative (-0.0 is fine) */
    }
    return QT_OK;
}

static qt_status mean_round(uint64_t se[4][256], size_t n, float *mean);

qt_status qt_dq_mean(const float *v, size_t n, float *mean)
{
    if (!v || !mean || n == 0 || n > UINT32_MAX) return QT_ERR_ARG;
    /* Exact per-biased-exponent sums of the significands (value of one unit
     * at exponent e: 2^(max(e,1) - 150)); 4 interleaved tables keep the
     * read-modify-write chains short. Each sum < 2^24 * 2^32 = 2^56. */
    uint64_t se[4][256];
    memset(se, 0, sizeof se);
#if defined(__x86_64__)
    /* AVX2: two vector passes, no table read-modify-write (the usual case:
     * absmax within a few binades) */
    const qt_isa isa = qt_isa_active();
    if ((isa == QT_ISA_AVX2 || isa == QT_ISA_AVX512) && qt_dq_mean_sum_avx2(v, n, se[0]))
        return mean_round(se, n, mean);
#endif
    uint32_t bad = 0;
    const size_t nch = qt_n_blocks(n, MEAN_CHUNK);
    ptrdiff_t c;
#ifdef _OPENMP
#pragma omp parallel if (nch > 4)
#endif
    {
        uint64_t loc[4][256];
        memset(loc, 0, sizeof loc);
        uint32_t lbad = 0;
#ifdef _OPENMP
#pragma omp for schedule(static) nowait
#endif
        for (c = 0; c < (ptrdiff_t)nch; c++) {
            size_t i = (size_t)c * MEAN_CHUNK, end = n - i < MEAN_CHUNK ? n : i + MEAN_CHUNK;
            for (; i < end; i++) {
                uint32_t b = qt_f32_bits(v[i]);
                lbad |= ((b & 0x7fffffffu) >= 0x7f800000u) | (b > 0x80000000u);
                uint32_t e = (b >> 23) & 0xff;
                loc[i & 3][e] += (b & 0x7fffffu) | (uint32_t)(e != 0) << 23;
            }
        }
#ifdef _OPENMP
#pragma omp critical(qt_dq_mean_merge)
#endif
        {
            bad |= lbad;
            for (int l = 0; l < 4; l++)
                for (int e = 0; e < 256; e++) se[l][e] += loc[l][e];
        }
    }
    if (bad) return mean_bad_status(v, n);
    return mean_round(se, n, mean);
}

/* The mean from the per-exponent sums se (each < 2^58 once the 4 tables are
 * added): the sum as fixed-point limbs, divided by n, rounded once. */
static qt_status mean_round(uint64_t se[4][256], size_t n, float *mean)
{
    uint64_t acc[MEAN_LIMBS] = {0}; /* limbs of 32 bits, carries deferred */
    for (unsigned e = 0; e < 255; e++) {
        uint64_t x = se[0][e] + se[1][e] + se[2][e] + se[3][e]; /* < 2^58 */
        if (!x) continue;
        unsigned shift = e ? e - 1 : 0; /* value = x * 2^(shift - 149) */
        unsigned limb = MEAN_FRAC_LIMBS + shift / 32, off = shift % 32;
        uint64_t lo = (x & 0xffffffffu) << off, hi = (x >> 32) << off; /* < 2^63, 2^57 */
        acc[limb] += lo & 0xffffffffu;
        acc[limb + 1] += (lo >> 32) + (hi & 0xffffffffu);
        acc[limb + 2] += hi >> 32;
    }
    for (int k = 0; k + 1 < MEAN_LIMBS; k++) {
        acc[k + 1] += acc[k] >> 32;
        acc[k] &= 0xffffffffu;
    }
    /* Q = floor(acc / n), value = Q * 2^(-149 - 64); rem != 0 is sticky. */
    uint32_t q[MEAN_LIMBS];
    uint64_t rem = 0;
    for (int k = MEAN_LIMBS - 1; k >= 0; k--) {
        uint64_t cur = rem << 32 | acc[k];
        q[k] = (uint32_t)(cur / n);
        rem = cur % n;
    }
    int top = -1; /* index of the highest set bit of Q */
    for (int k = MEAN_LIMBS - 1; k >= 0 && top < 0; k--)
        if (q[k]) top = k * 32 + 31 - __builtin_clz(q[k]);
    if (top < 0) { /* only when every value is zero (else Q >= 2^64 / n) */
        *mean = 0.0f;
        return QT_OK;
    }
    const int base = -149 - 32 * MEAN_FRAC_LIMBS; /* exponent of Q's bit 0 */
    int lsb = top + base - 23;                    /* exponent of the float's last bit */
    if (lsb < -149) lsb = -149;
    int drop = lsb - base; /* >= 64 */
    /* mantissa = Q >> drop, round bit, sticky */
    uint64_t mant = 0;
    for (int bit = top; bit >= drop; bit--) mant = mant << 1 | ((q[bit / 32] >> (bit % 32)) & 1);
    int round = (q[(drop - 1) / 32] >> ((drop - 1) % 32)) & 1;
    int sticky = rem != 0;
    for (int bit = drop - 2; bit >= 0 && !sticky; bit--) sticky = (q[bit / 32] >> (bit % 32)) & 1;
    if (round && (sticky || (mant & 1))) mant++;
    *mean = ldexpf((float)mant, lsb); /* mant <= 2^24: exact */
    return QT_OK;
}

/* The last float that still codes k: the decision between map[k] and
 * map[k+1] is at their float midpoint; at the midpoint itself the search
 * keeps the entry it landed on, so the boundary is the midpoint or the float
 * below it. */
bool qt_dq8_tab_init(qt_dq8_tab *tab)
{
    const float *map = qt_dynamic_map;
    for (int k = 0; k < 255; k++) {
        float mid = (map[k] + map[k + 1]) * 0.5f;
        tab->bound[k] = qt_dq8_code(map, mid) > k ? nextafterf(mid, -INFINITY) : mid;
        if (k && !(tab->bound[k] > tab->bound[k - 1])) return false;
    }
    /* buckets in ascending order of xn: the negative side from the top
     * bucket down, then the positive side */
    int p = 0;
    for (int side = 0; side < 2; side++)
        for (int j = 0; j < QT_DQ8_NBK; j++) {
            int b = side ? j : QT_DQ8_NBK - 1 - j;
            uint32_t lo = b == 0 ? 0 : (QT_DQ8_KMIN + (uint32_t)b) << 17;
            uint32_t hi = b == QT_DQ8_NBK - 1 ? 0x7f800000u
                                              : ((QT_DQ8_KMIN + (uint32_t)b + 1) << 17) - 1;
            float xmin = side ? qt_f32_from_bits(lo) : -qt_f32_from_bits(hi);
            float xmax = side ? qt_f32_from_bits(hi) : -qt_f32_from_bits(lo);
            while (p < 255 && tab->bound[p] < xmin) p++;
            int q = p;
            while (q < 255 && tab->bound[q] <= xmax) q++;
            if (q - p > 1) return false;
            size_t at = (size_t)b + (side ? 0 : QT_DQ8_NBK);
            tab->base[at] = p;
            tab->t[at] = q > p ? tab->bound[p] : INFINITY;
        }
    return true;
}

void qt_dq_block_with(const qt_kernels *k, const float *absmax, size_t len, float offset,
                      const uint8_t *rcp, uint8_t *codes, float *nested)
{
    float centered[QT_DQ_BLOCK];
    for (size_t i = 0; i < len; i++) centered[i] = absmax[i] - offset;
    k->blockwise8_quant(QT_SRC_F32, centered, len, QT_DQ_BLOCK, qt_dynamic_map, rcp, codes,
                        nested);
}

void qt_dq_block_ref(const float *absmax, size_t len, float offset, const uint8_t *rcp,
                     uint8_t *codes, float *nested)
{
    qt_dq_block_with(&qt_kernels_ref, absmax, len, offset, rcp, codes, nested);
}

void qt_dq_dequantize(const uint8_t *codes, size_t nb, const void *nested, float offset,
                      const float *map, float *absmax)
{
    if (!map) map = qt_dynamic_map;
    for (size_t j = 0; j < nb; j++) {
        float a = map[codes[j]] * qt_ldf(nested, j / QT_DQ_BLOCK);
        absmax[j] = a + offset;
    }
}
