/*
 * formats/out_gguf.h: the GGUF output format ("gguf") behind the seam of
 * formats/outfmt.h: one GGUF v3 file for llama.cpp (specs/gguf-export.md),
 * written by formats/gguf_writer.
 *
 * The caller declares the Hugging Face weights (names, shapes) in the
 * order the file should hold them, each either quantized in a GGML block
 * scheme (q8 at block 32 = Q8_0, q4_0 .. q6_k) or plain F32 / F16 / BF16,
 * and passes qt_out_model.format_opts = a qt_out_gguf_opts. plan maps the
 * names (§3), writes the metadata (§2 from config.json, §4 from the
 * tokenizer files of the model folder) and lays out the tensors. Writes
 * come in HF row order, whole (write_quant) or in chunks (write_plain), in
 * any order; the format moves the Q/K rows to llama.cpp's order (§5) as it
 * writes them. commit re-reads the file with the hardened reader and
 * renames it into place. add_metadata and add_file are accepted and
 * ignored: a GGUF holds the keys llama.cpp reads, and only the provenance
 * pairs the caller names in qt_out_gguf_opts.kv (known before plan).
 */
#ifndef QT_FORMATS_OUT_GGUF_H
#define QT_FORMATS_OUT_GGUF_H

#include "formats/gguf_meta.h"
#include "formats/outfmt.h"

/* What a GGUF output needs beyond qt_out_model (borrowed). */
typedef struct qt_out_gguf_opts {
    const qt_modeldir *md;   /* the input model: config.json and tokenizer files */
    uint32_t ftype;          /* general.file_type (llama_ftype) */
    const char *pre;         /* the BPE pre-tokenizer stated by the user, NULL = identify */
    /* extra string pairs written after the model's keys (qtool provenance,
     * e.g. "qtool.budget"): kv[2 i] the key, kv[2 i + 1] the value; n_kv pairs */
    const char *const *kv;
    size_t n_kv;
} qt_out_gguf_opts;

extern const qt_outfmt_ops qt_out_gguf_ops;

#endif /* QT_FORMATS_OUT_GGUF_H */
