/*
 * formats/out_safetensors.h: the Hugging Face model-folder output format
 * ("safetensors"): weights in model.safetensors (or model-0000i-of-0000N
 * shards of at most max_shard_size bytes, whole logical weights in order,
 * with model.safetensors.index.json), quantized weights in the stored form
 * formats/bnb gives (bitsandbytes NF4/FP4/LLM.int8, qtool q8), plain ones
 * as one tensor; config.json from the input's with quantization_config;
 * other files (qt_outfmt_add_file) copied byte for byte, never more
 * readable than their source, or placed by the caller in the staging folder
 * qt_outfmt_stage_dir names. Every shard's __metadata__ holds
 * "format": "pt" and then the caller's pairs in order.
 */
#ifndef QT_FORMATS_OUT_SAFETENSORS_H
#define QT_FORMATS_OUT_SAFETENSORS_H

#include "formats/outfmt.h"

extern const qt_outfmt_ops qt_out_safetensors_ops;

#endif /* QT_FORMATS_OUT_SAFETENSORS_H */
