/*
 * calib/weight_error.h: how far a quantized weight is from the original,
 * without calibration data: RMSE, max abs error, SQNR (dB) and the cosine
 * similarity of W and W-hat.
 *
 * Both weights are qt_qweight descriptors of the same shape (the original
 * as plain F32/F16/BF16); rows are dequantized a chunk at a time (no copy of
 * either matrix), in parallel, and combined in chunk order: results do not
 * depend on the thread count. Sums in double.
 */
#ifndef QT_CALIB_WEIGHT_ERROR_H
#define QT_CALIB_WEIGHT_ERROR_H

#include "common/common.h"
#include "quant/quant.h"

typedef struct qt_weight_error {
    double rmse;       /* sqrt(mean((w - w_hat)^2)) */
    double max_abs;    /* max |w - w_hat| */
    double sqnr_db;    /* 10 log10(sum w^2 / sum (w - w_hat)^2); +inf when exact */
    double cosine;     /* <w, w_hat> / (|w| |w_hat|); 1 when both are zero */
} qt_weight_error;

/* @return QT_OK, QT_ERR_ARG (shapes differ), QT_ERR_NOMEM. */
qt_status qt_weight_error_compute(const qt_qweight *orig, const qt_qweight *quant,
                                  qt_weight_error *out);

#endif /* QT_CALIB_WEIGHT_ERROR_H */
