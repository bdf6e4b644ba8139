/* formats/cuda_rcp.h: the file of the GPU's measured fast-math reciprocal
 * (../shared/data/cuda/rcp-sm90-2bit.zst, README beside it): a zstd frame of
 * QT_RCP_TABLE_BYTES bytes (2^23 two-bit entries, quant/quant.h), read
 * once and checked against the sha256 of the measured file and of its
 * content, then handed to the quantize kernels as memory (`--match cuda`). */
#ifndef QT_CUDA_RCP_H
#define QT_CUDA_RCP_H

#include <stdint.h>

#include "common/common.h"

/* sha256 of the compressed file and of the decompressed table (sm_90, H200). */
#define QT_RCP_SHA256_FILE "c9f5448f8bef407c9bf1862aba1415fd9964ffb318c75bb33fcf831e8ad19ab1"
#define QT_RCP_SHA256_TABLE "bbda0d685ab5a66767c2c3881a67dff147e1f5a2c766db1f6dd5b63fecedcf2c"

/* The file name of the table under the shared data folder, for messages
 * and defaults. */
#define QT_RCP_FILE_NAME "rcp-sm90-2bit.zst"

/* Reads path, checks both checksums, decompresses: *table
 * (QT_RCP_TABLE_BYTES, caller frees with qt_free).
 * @return QT_OK, QT_ERR_IO (unreadable), QT_ERR_FORMAT (not the measured
 * table: checksum, size or zstd frame), QT_ERR_NOMEM. errmsg names the
 * file and the rule. */
qt_status qt_cuda_rcp_load(const char *path, uint8_t **table, char *errmsg);

#endif
