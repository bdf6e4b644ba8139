/*
 * calib/tensor_stats.h: value statistics of one tensor (min, max, mean,
 * std, absmax, counts of NaN / +-Inf / subnormal values and of values more
 * than 6 standard deviations from the mean), for `qtool inspect --stats`
 * and convert's NaN policy (the counts of a tensor its prepass scan flagged:
 * convert/run.c check_finite).
 *
 * The values come through a callback that fills chunks of fp32 values, so
 * any dtype or quantized layout can be measured without a copy of the whole
 * tensor. Chunks are processed in parallel (OpenMP) and combined in chunk
 * order, so results do not depend on the thread count. Moments are summed
 * in double. The outlier count needs the mean and std first, so each chunk
 * is read twice (the tensor is streamed twice, the model once).
 */
#ifndef QT_CALIB_TENSOR_STATS_H
#define QT_CALIB_TENSOR_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

typedef struct qt_tensor_stats {
    uint64_t n;          /* elements */
    uint64_t n_finite;   /* elements that are neither NaN nor Inf */
    uint64_t n_nan, n_posinf, n_neginf, n_subnormal, n_beyond_6sigma;
    double min, max, mean, std, absmax; /* over finite values; 0 when none */
} qt_tensor_stats;

/* Fills dst with `count` values starting at element `first`. The callback
 * must be safe to call from several threads at once. */
typedef qt_status (*qt_stats_read_fn)(void *ctx, uint64_t first, size_t count, float *dst,
                                      char *errmsg);

/* Measures n elements read chunk_elems at a time (the last chunk may be
 * shorter). @return QT_OK, QT_ERR_NOMEM, or the callback's status (with its
 * message in errmsg). */
qt_status qt_tensor_stats_compute(uint64_t n, size_t chunk_elems, qt_stats_read_fn read,
                                  void *ctx, qt_tensor_stats *out, char *errmsg);

#endif /* QT_CALIB_TENSOR_STATS_H */
