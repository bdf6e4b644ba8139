/* common/cpu.c: cpuid / xgetbv feature detection and ISA selection. */
#include "common/cpu.h"

#include <sched.h>
#include <unistd.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define QT_X86 1
#endif

static qt_cpu_features feats;
static bool feats_done;
static qt_isa isa_current = QT_ISA_COUNT; /* COUNT = not chosen yet */
static char isa_env_err[160];

#ifdef QT_X86
static unsigned long long read_xcr0(void)
{
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}
#endif

static void detect(void)
{
    memset(&feats, 0, sizeof feats);
#ifdef QT_X86
    unsigned int a, b, c, d;
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        bool osxsave = (c >> 27) & 1;
        bool ymm_ok = false, zmm_ok = false;
        if (osxsave) {
            unsigned long long xcr0 = read_xcr0();
            ymm_ok = (xcr0 & 0x6) == 0x6;
            zmm_ok = ymm_ok && (xcr0 & 0xe0) == 0xe0;
        }
        feats.sse42 = (c >> 20) & 1;
        feats.avx = ymm_ok && ((c >> 28) & 1);
        feats.fma = feats.avx && ((c >> 12) & 1);
        feats.f16c = feats.avx && ((c >> 29) & 1);
        if (__get_cpuid_max(0, NULL) >= 7) {
            __cpuid_count(7, 0, a, b, c, d);
            feats.avx2 = feats.avx && ((b >> 5) & 1);
            feats.avx512f = zmm_ok && ((b >> 16) & 1);
            feats.avx512dq = zmm_ok && ((b >> 17) & 1);
            feats.avx512bw = zmm_ok && ((b >> 30) & 1);
            feats.avx512vl = zmm_ok && ((b >> 31) & 1);
            feats.avx512vnni = zmm_ok && ((c >> 11) & 1);
            __cpuid_count(7, 1, a, b, c, d);
            feats.avx512bf16 = zmm_ok && ((a >> 5) & 1);
        }
    }
    unsigned int regs[12];
    if (__get_cpuid_max(0x80000000, NULL) >= 0x80000004) {
        for (unsigned i = 0; i < 3; i++)
            __get_cpuid(0x80000002 + i, &regs[4 * i], &regs[4 * i + 1], &regs[4 * i + 2],
                        &regs[4 * i + 3]);
        memcpy(feats.brand, regs, 48);
        feats.brand[48] = 0;
        /* trim */
        char *s = feats.brand;
        while (*s == ' ') s++;
        memmove(feats.brand, s, strlen(s) + 1);
        size_t n = strlen(feats.brand);
        while (n && feats.brand[n - 1] == ' ') feats.brand[--n] = 0;
    }
#endif
#if defined(__aarch64__)
    feats.neon = true;
#endif
    feats_done = true;
}

const qt_cpu_features *qt_cpu_features_get(void)
{
    if (!feats_done) detect();
    return &feats;
}

bool qt_isa_supported(qt_isa isa)
{
    const qt_cpu_features *f = qt_cpu_features_get();
    switch (isa) {
    case QT_ISA_REF: return true;
#ifdef QT_X86
    case QT_ISA_AVX2: return f->avx2 && f->fma && f->f16c;
    case QT_ISA_AVX512:
        return f->avx2 && f->fma && f->f16c && f->avx512f && f->avx512bw && f->avx512vl &&
               f->avx512dq;
#endif
#if defined(__aarch64__)
    case QT_ISA_NEON: return f->neon;
#endif
    default: return false;
    }
}

const char *qt_isa_name(qt_isa isa)
{
    static const char *const names[QT_ISA_COUNT] = {"ref", "avx2", "avx512", "neon"};
    if ((unsigned)isa >= QT_ISA_COUNT) return "?";
    return names[isa];
}

qt_status qt_isa_parse(const char *name, qt_isa *out)
{
    for (int i = 0; i < QT_ISA_COUNT; i++) {
        if (strcmp(name, qt_isa_name((qt_isa)i)) == 0) {
            *out = (qt_isa)i;
            return QT_OK;
        }
    }
    return QT_ERR_ARG;
}

static qt_isa best_isa(void)
{
    if (qt_isa_supported(QT_ISA_AVX512)) return QT_ISA_AVX512;
    if (qt_isa_supported(QT_ISA_AVX2)) return QT_ISA_AVX2;
    if (qt_isa_supported(QT_ISA_NEON)) return QT_ISA_NEON;
    return QT_ISA_REF;
}

qt_isa qt_isa_active(void)
{
    if (isa_current != QT_ISA_COUNT) return isa_current;
    qt_isa isa = best_isa();
    const char *env = getenv("QT_ISA");
    if (env && *env) {
        qt_isa want;
        if (qt_isa_parse(env, &want) != QT_OK)
            snprintf(isa_env_err, sizeof isa_env_err,
                     "QT_ISA='%s' is not one of ref, avx2, avx512, neon", env);
        else if (!qt_isa_supported(want))
            snprintf(isa_env_err, sizeof isa_env_err,
                     "QT_ISA='%s': this CPU (or build) does not support it", env);
        else
            isa = want;
    }
    isa_current = isa;
    return isa;
}

qt_status qt_isa_force(qt_isa isa)
{
    if ((unsigned)isa >= QT_ISA_COUNT || !qt_isa_supported(isa)) return QT_ERR_UNSUPPORTED;
    isa_current = isa;
    return QT_OK;
}

const char *qt_isa_env_error(void)
{
    (void)qt_isa_active();
    return isa_env_err[0] ? isa_env_err : NULL;
}

int qt_cpu_usable_cores(void)
{
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
#endif
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
