/* common/threads.h: the OpenMP team size and thread index, 1 and 0 in a
 * build without OpenMP (`make OPENMP=0`), so threaded drivers read the same
 * either way. */
#ifndef QT_COMMON_THREADS_H
#define QT_COMMON_THREADS_H

#ifdef _OPENMP
#include <omp.h>
#endif

/* Threads a parallel region started now would get. */
static inline int qt_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* This thread's index in its team (0 outside a parallel region). */
static inline int qt_thread_id(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

#endif /* QT_COMMON_THREADS_H */
