/* common/half.c: scalar half-precision row kernels and their dispatch. */
#include "common/half.h"

#include "common/half_internal.h"

static void fp16_to_fp32_ref(const uint16_t *src, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++) dst[i] = qt_fp16_to_fp32(src[i]);
}
static void fp32_to_fp16_ref(const float *src, uint16_t *dst, size_t n)
{
    for (size_t i = 0; i < n; i++) dst[i] = qt_fp32_to_fp16(src[i]);
}
static void bf16_to_fp32_ref(const uint16_t *src, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++) dst[i] = qt_bf16_to_fp32(src[i]);
}
static void fp32_to_bf16_ref(const float *src, uint16_t *dst, size_t n)
{
    for (size_t i = 0; i < n; i++) dst[i] = qt_fp32_to_bf16(src[i]);
}

static const qt_half_kernels half_ref = {fp16_to_fp32_ref, fp32_to_fp16_ref, bf16_to_fp32_ref,
                                         fp32_to_bf16_ref};

const qt_half_kernels *qt_half_kernels_for(qt_isa isa)
{
    if (!qt_isa_supported(isa)) return NULL;
    switch (isa) {
#if defined(__x86_64__)
    case QT_ISA_AVX2: return &qt_half_kernels_avx2;
    case QT_ISA_AVX512: return &qt_half_kernels_avx512;
#endif
    default: return &half_ref;
    }
}

static const qt_half_kernels *active(void)
{
    return qt_half_kernels_for(qt_isa_active());
}

void qt_fp16_to_fp32_row(const uint16_t *src, float *dst, size_t n)
{
    active()->fp16_to_fp32(src, dst, n);
}
void qt_fp32_to_fp16_row(const float *src, uint16_t *dst, size_t n)
{
    active()->fp32_to_fp16(src, dst, n);
}
void qt_bf16_to_fp32_row(const uint16_t *src, float *dst, size_t n)
{
    active()->bf16_to_fp32(src, dst, n);
}
void qt_fp32_to_bf16_row(const float *src, uint16_t *dst, size_t n)
{
    active()->fp32_to_bf16(src, dst, n);
}
