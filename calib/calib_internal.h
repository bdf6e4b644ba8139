/* calib/calib_internal.h: the calibration set's struct, shared by calib.c
 * (building) and calib_cache.c (the cache file). calib/ and its tests only. */
#ifndef QT_CALIB_INTERNAL_H
#define QT_CALIB_INTERNAL_H

#include "calib/calib.h"

#define QT_CALIB_SITES 4 /* attention input, o_proj input, MLP input, down_proj input */

struct qt_calib_set {
    size_t n_layers, n_rows, n_tokens;
    size_t n_in[QT_CALIB_SITES];
    float **rows;         /* (n_layers * QT_CALIB_SITES) arrays of (n_rows, n_in[site]) */
    char fingerprint[65];
};

/* Which stored input a projection reads. */
static inline int qt_calib_site(qt_proj p)
{
    return p <= QT_PROJ_V ? 0 : p == QT_PROJ_O ? 1 : p <= QT_PROJ_UP ? 2 : 3;
}

/* An empty set with its arrays allocated (zeroed). @return QT_OK, QT_ERR_NOMEM,
 * QT_ERR_OVERFLOW. */
qt_status qt_calib_set_alloc(size_t n_layers, size_t n_rows, const size_t n_in[QT_CALIB_SITES],
                             qt_calib_set **out);

#endif
