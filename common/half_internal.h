/* common/half_internal.h: per-ISA half-precision row kernels (common/ only). */
#ifndef QT_HALF_INTERNAL_H
#define QT_HALF_INTERNAL_H

#include "common/half.h"

extern const qt_half_kernels qt_half_kernels_avx2;
extern const qt_half_kernels qt_half_kernels_avx512;

#endif
