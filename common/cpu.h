/*
 * common/cpu.h: CPU feature detection and the choice of SIMD path.
 *
 * qt_cpu_features() reads cpuid once, with the OSXSAVE/XGETBV check that
 * the OS saves the YMM/ZMM state, so AVX2 / AVX-512 are reported only when
 * they are really usable. qt_isa_active() is the ISA every dispatch table
 * uses: the best one available, or the one forced with QT_ISA=ref|avx2|
 * avx512|neon (or qt_isa_force() from --isa). Thread-safe after the first
 * call; call qt_isa_active() once from the main thread before spawning.
 */
#ifndef QT_CPU_H
#define QT_CPU_H

#include <stdbool.h>

#include "common/common.h"

typedef enum qt_isa {
    QT_ISA_REF = 0,
    QT_ISA_AVX2,   /* AVX2 + FMA + F16C */
    QT_ISA_AVX512, /* AVX-512 F + BW + VL (+ the AVX2 set) */
    QT_ISA_NEON,   /* aarch64 Advanced SIMD */
    QT_ISA_COUNT
} qt_isa;

typedef struct qt_cpu_features {
    bool sse42, avx, avx2, fma, f16c, avx512f, avx512bw, avx512vl, avx512dq,
        avx512bf16, avx512vnni, neon;
    char brand[64]; /* CPU model name, "" when unknown */
} qt_cpu_features;

/* The features of the running CPU (cached; never NULL). */
const qt_cpu_features *qt_cpu_features_get(void);

/* Cores this process may run on (sched_getaffinity: a taskset, cgroup
 * cpuset or Slurm allocation counts, not the machine's), at least 1. */
int qt_cpu_usable_cores(void);

/* Whether this build and this CPU can run isa. */
bool qt_isa_supported(qt_isa isa);

/* Name of an ISA ("ref", "avx2", "avx512", "neon"). */
const char *qt_isa_name(qt_isa isa);

/* Parses an ISA name. @return QT_OK or QT_ERR_ARG. */
qt_status qt_isa_parse(const char *name, qt_isa *out);

/* The ISA in use: forced (qt_isa_force or QT_ISA) or the best supported.
 * An unsupported or unknown QT_ISA falls back to the best and is reported
 * by qt_isa_env_error(). */
qt_isa qt_isa_active(void);

/* Forces an ISA. @return QT_OK, QT_ERR_UNSUPPORTED (CPU lacks it). */
qt_status qt_isa_force(qt_isa isa);

/* NULL, or a message saying why QT_ISA could not be honoured. The CLI turns
 * it into an error exit. */
const char *qt_isa_env_error(void);

#endif /* QT_CPU_H */
