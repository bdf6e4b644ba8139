/*
 * tests/unit/testutil.h: helpers shared by the Criterion unit tests.
 *
 * QT_DATA (environment; tests/run.sh sets it) is the shared data folder,
 * ../shared/data by default. Tests that need it call QT_NEED_DATA(), which
 * skips the test, saying so, when the folder is absent (a user's clone).
 */
#ifndef QT_TESTUTIL_H
#define QT_TESTUTIL_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

static inline const char *qt_test_data_dir(void)
{
    const char *d = getenv("QT_DATA");
    return d && *d ? d : "../shared/data";
}

/* path = QT_DATA/rel in buf (static per call site is fine for tests). */
static inline const char *qt_test_data_path(char *buf, size_t n, const char *rel)
{
    snprintf(buf, n, "%s/%s", qt_test_data_dir(), rel);
    return buf;
}

#define QT_NEED_DATA()                                                            \
    do {                                                                          \
        struct stat qt_st_;                                                       \
        if (stat(qt_test_data_dir(), &qt_st_) != 0)                               \
            cr_skip_test("shared data folder '%s' is absent", qt_test_data_dir()); \
    } while (0)

/* A fresh temporary directory for a test; caller removes it (or not). */
static inline const char *qt_test_tmpdir(char *buf, size_t n)
{
    snprintf(buf, n, "/tmp/qtool-test-XXXXXX");
    return mkdtemp(buf);
}

/* Seed: QT_SEED from the environment or the given default; printed. */
static inline unsigned long long qt_test_seed(unsigned long long dflt)
{
    const char *s = getenv("QT_SEED");
    unsigned long long v = s && *s ? strtoull(s, NULL, 0) : dflt;
    fprintf(stderr, "seed %llu (QT_SEED to override)\n", v);
    return v;
}

/* xorshift64* generator for test data. */
static inline unsigned long long qt_test_rand(unsigned long long *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}
static inline float qt_test_randf(unsigned long long *s) /* [-1, 1) */
{
    return (float)((double)(qt_test_rand(s) >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}
static inline float qt_test_gauss(unsigned long long *s)
{
    float a = 0;
    for (int i = 0; i < 12; i++) a += (qt_test_randf(s) + 1.0f) * 0.5f;
    return a - 6.0f;
}

#endif
