/*
 * calib/calib.h: calibration sets and activation-aware error: how much a
 * quantized Linear changes the outputs of the layer on real activations.
 *
 * Calibration set (qt_calib_set): a calibration text (or a file of token
 * ids) is tokenized with the model's own tokenizer and run through the
 * ORIGINAL model (model/model.h) in sequences of seq_len tokens, each
 * starting at position 0 with BOS. A capture hook copies the input rows of
 * every decoder-layer Linear at n_rows token positions chosen uniformly
 * without replacement (seeded xorshift64*) among the max_tokens evaluated:
 * the same positions for every Linear, so memory is
 *   n_rows * n_layers * (2 * dim + q_dim + hidden_dim) * 4 bytes
 * (q/k/v share one input, gate/up another), whatever the text length;
 * n_rows is lowered to fit max_bytes (1 GiB by default).
 *
 * Cache (qt_calib_set_get): the set is stored zstd-compressed in one file
 * with a fingerprint (sha256) of the model files, the text bytes and the
 * settings. The file is reused only when its fingerprint equals the one
 * computed now; a stale file is rebuilt and replaced; a damaged file (bad
 * magic, sizes that disagree, a checksum mismatch, a zstd error) is detected and rebuilt, never trusted. The file is one
 * formats/zstd_cache.h container (magic "QTZCACHE", kind "calib", key =
 * the fingerprint, raw 32 bytes; header and payload checksums there).
 * payload: u64 n_layers, n_rows, n_tokens, n_in of the 4 sites (attention
 * input, o_proj input, MLP input, down_proj input), then for each layer
 * and site n_rows * n_in fp32 values, row-major.
 * The model fingerprint samples each file of the model folder (its size,
 * first MiB, 16 evenly spaced 64 KiB windows and last 64 KiB), as convert's
 * fingerprint does: an edit elsewhere in a large shard is not seen.
 *
 * Output error (qt_output_error_compute): for W (n_out, n_in), its
 * quantized W-hat and X (n_rows, n_in):
 *   rel  = ||X (W - W-hat)^T||_F / ||X W^T||_F
 *   sqnr = 10 log10(||X W^T||_F^2 / ||X (W - W-hat)^T||_F^2)  (dB)
 * summed in double from the fp32 dequantized rows (differences taken in
 * double), OpenMP over blocks of output rows, combined in block order:
 * results do not depend on the thread count. Aggregates (per layer, per
 * projection, model) add the squared norms of their tensors before the
 * ratio: an energy-weighted relative error.
 *
 * Reports (qt_calib_report): per tensor weight error (calib/weight_error.h),
 * output error, threshold and verdict; rendered as JSON or a self-contained
 * HTML page (inline SVG, no scripts, no network). Default thresholds per
 * scheme and the measurements behind them: docs/CALIBRATION.md.
 *
 * Thread-safety and ownership: a set, a report is used by one thread at a
 * time; every pointer a getter returns is borrowed until the object is
 * freed. Free functions accept NULL. Nothing here prints.
 */
#ifndef QT_CALIB_CALIB_H
#define QT_CALIB_CALIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "calib/weight_error.h"
#include "common/common.h"
#include "model/model.h"
#include "quant/quant.h"

/* ---- calibration sets ----------------------------------------------------- */

#define QT_CALIB_DEFAULT_ROWS 512

typedef struct qt_calib_opts {
    size_t n_rows;     /* token positions sampled per Linear input (--calib-tokens);
                          0 = QT_CALIB_DEFAULT_ROWS */
    size_t max_tokens; /* tokens of text evaluated at most; 0 = 8 * n_rows */
    size_t seq_len;    /* tokens per sequence; 0 = min(trained context, 512) */
    uint64_t seed;     /* row sampling; 0 = 1 */
    size_t max_bytes;  /* cap on the samples' memory; 0 = 1 GiB */
} qt_calib_opts;

typedef struct qt_calib_set qt_calib_set;

typedef enum qt_calib_cache_status {
    QT_CALIB_CACHE_OFF = 0,  /* no cache path given: built in memory */
    QT_CALIB_CACHE_HIT,      /* read from the cache */
    QT_CALIB_CACHE_NEW,      /* no cache file yet: built and written */
    QT_CALIB_CACHE_STALE,    /* fingerprint differed: rebuilt and replaced */
    QT_CALIB_CACHE_DAMAGED,  /* unreadable or corrupt: rebuilt and replaced */
    QT_CALIB_CACHE_STATUS_COUNT
} qt_calib_cache_status;

/* "off", "hit", "new", "stale", "damaged". */
const char *qt_calib_cache_status_name(qt_calib_cache_status s);

/* Builds a set in memory from text[0..len) (UTF-8, or token ids when
 * is_ids: integers separated by spaces, commas or newlines) run through the
 * model at model_path (a model directory; its tokenizer.json or
 * tokenizer.model encodes the text). opts may be NULL. *out: free with
 * qt_calib_set_free.
 * @return QT_OK, QT_ERR_IO, QT_ERR_FORMAT (bad model, ids out of range, no
 *         tokens), QT_ERR_UNSUPPORTED, QT_ERR_ARG, QT_ERR_NOMEM. */
qt_status qt_calib_set_build(const char *model_path, const char *text, size_t len, bool is_ids,
                             const qt_calib_opts *opts, qt_calib_set **out, char *errmsg);

/* Reads the file text_path (token ids when it holds only integers and
 * separators, else text) and returns the set for model_path: from the
 * cache file cache_path when its fingerprint matches, else built and
 * written there (atomically: a temporary file renamed into place).
 * cache_path NULL: no cache. *status says which happened, why (why_n bytes,
 * may be NULL) in words. A cache that cannot be written is not an error
 * (*status says "new"/"stale" and why says so).
 * @return as qt_calib_set_build, QT_ERR_IO for an unreadable text. */
qt_status qt_calib_set_get(const char *model_path, const char *text_path,
                           const qt_calib_opts *opts, const char *cache_path,
                           qt_calib_set **out, qt_calib_cache_status *status, char *why,
                           size_t why_n, char *errmsg);

/* The sampled inputs of projection p of layer l: (*n_rows, *n_in) fp32,
 * borrowed; NULL when l is out of range. */
const float *qt_calib_set_rows(const qt_calib_set *s, size_t layer, qt_proj p, size_t *n_rows,
                               size_t *n_in);
size_t qt_calib_set_n_layers(const qt_calib_set *s);
size_t qt_calib_set_n_rows(const qt_calib_set *s);
/* Tokens evaluated to draw the sample. */
size_t qt_calib_set_n_tokens(const qt_calib_set *s);
/* The fingerprint, 64 hex digits. Borrowed. */
const char *qt_calib_set_fingerprint(const qt_calib_set *s);
void qt_calib_set_free(qt_calib_set *s);

/* Writes s to path (atomically), or reads it back checking every field and
 * the fingerprint against want_fp (64 hex digits; required: it is the
 * container's key).
 * @return QT_OK, QT_ERR_IO, QT_ERR_FORMAT (damaged), QT_ERR_ARG (other
 *         fingerprint), QT_ERR_NOMEM. */
qt_status qt_calib_set_save(const qt_calib_set *s, const char *path, char *errmsg);
qt_status qt_calib_set_load(const char *path, const char *want_fp, qt_calib_set **out,
                            char *errmsg);

/* ---- output error --------------------------------------------------------- */

typedef struct qt_output_error {
    double y_sq;    /* ||X W^T||_F^2 */
    double e_sq;    /* ||X (W - W-hat)^T||_F^2 */
    double rel;     /* sqrt(e_sq / y_sq); 0 when e_sq is 0; +inf when only y_sq is 0 */
    double sqnr_db; /* 10 log10(y_sq / e_sq); +inf when e_sq is 0 */
    size_t n_rows;  /* rows of X */
} qt_output_error;

/* Measures W-hat (quant) against W (orig) on x (n_rows, orig->n_in) fp32.
 * @return QT_OK, QT_ERR_ARG (shapes differ, n_rows 0), QT_ERR_NOMEM. */
qt_status qt_output_error_compute(const qt_qweight *orig, const qt_qweight *quant, const float *x,
                                  size_t n_rows, qt_output_error *out);

/* Fills rel and sqnr_db from y_sq and e_sq (for aggregates). */
void qt_output_error_finish(qt_output_error *e);

/* ---- thresholds ------------------------------------------------------------ */

/* The default maximum relative output error of a scheme (docs/CALIBRATION.md);
 * 0 for plain dtypes (not checked). */
double qt_calib_default_threshold(qt_scheme s);


/* ---- reports --------------------------------------------------------------- */

typedef enum qt_calib_verdict {
    QT_VERDICT_PASS = 0,  /* within its threshold */
    QT_VERDICT_FALLBACK,  /* over it; kept at a higher precision instead */
    QT_VERDICT_FAIL,      /* over it */
    QT_VERDICT_UNCHECKED, /* no threshold (plain dtype) or no calibration rows */
    QT_VERDICT_COUNT
} qt_calib_verdict;

/* "pass", "fallback", "fail", "unchecked". */
const char *qt_calib_verdict_name(qt_calib_verdict v);

typedef struct qt_calib_entry {
    char name[192];        /* tensor name */
    int64_t layer;         /* -1 when not a decoder Linear */
    qt_proj proj;          /* QT_PROJ_COUNT when not a decoder Linear */
    char scheme[32];       /* as measured: "nf4+dq", "int8", "bf16" */
    qt_weight_error werr;
    bool have_out;         /* oerr measured */
    qt_output_error oerr;
    double threshold;      /* 0 = none */
    qt_calib_verdict verdict;
    char fallback[32];     /* FALLBACK: the scheme it was kept in ("bf16", "int8") */
    bool have_fb;          /* fb_oerr measured (quantized fallbacks) */
    qt_output_error fb_oerr;
} qt_calib_entry;

typedef struct qt_calib_report {
    qt_calib_entry *entries; /* (n) owned */
    size_t n, cap;
    char original[1024], quantized[1024], text[1024];
    size_t n_tokens, n_rows;
    char cache[16];          /* qt_calib_cache_status_name */
    char fingerprint[65];
    double max_error;        /* the --max-output-error override; 0 = per-scheme defaults */
} qt_calib_report;

void qt_calib_report_init(qt_calib_report *r);
void qt_calib_report_release(qt_calib_report *r);

/* Copies e into the report (replacing an entry of the same name).
 * @return QT_OK, QT_ERR_NOMEM. */
qt_status qt_calib_report_add(qt_calib_report *r, const qt_calib_entry *e);
/* The entry of that name, or NULL. Borrowed until the next add. */
qt_calib_entry *qt_calib_report_find(qt_calib_report *r, const char *name);
/* Counts of each verdict. */
void qt_calib_report_counts(const qt_calib_report *r, size_t counts[QT_VERDICT_COUNT]);
/* Aggregate over all entries with output errors (layer < 0: any layer;
 * proj QT_PROJ_COUNT: any projection). */
qt_output_error qt_calib_report_aggregate(const qt_calib_report *r, int64_t layer, qt_proj proj);

/* Fills e for tensor `name`: weight error, and the output error on the
 * set's rows when name is a decoder Linear and set is non-NULL; threshold
 * (max_error > 0 overrides the scheme default) and the verdict PASS / FAIL /
 * UNCHECKED. scheme_label: how quant is stored ("nf4+dq").
 * @return QT_OK, QT_ERR_ARG (shapes differ), QT_ERR_NOMEM. */
qt_status qt_calib_measure(const qt_calib_set *set, const char *name, const char *scheme_label,
                           const qt_qweight *orig, const qt_qweight *quant, double max_error,
                           qt_calib_entry *e);

/* `qtool validate`: measures every decoder Linear of the model at
 * quant_path (qtool's or bitsandbytes' layout, quantized or not) against the
 * same tensor of orig_path, appending to r.
 * @return QT_OK, QT_ERR_IO, QT_ERR_FORMAT (a tensor missing or of another
 *         shape), QT_ERR_UNSUPPORTED, QT_ERR_NOMEM. */
qt_status qt_calib_compare_models(const char *orig_path, const char *quant_path,
                                  const qt_calib_set *set, double max_error, qt_calib_report *r,
                                  char *errmsg);

/* The report as JSON (stable keys: "original", "quantized", "calibration",
 * "thresholds", "summary", "per_projection", "per_layer", "worst",
 * "fallbacks", "tensors"). *out: caller frees with qt_free.
 * @return QT_OK, QT_ERR_NOMEM. */
qt_status qt_calib_report_json(const qt_calib_report *r, char **out, char *errmsg);

/* The report as one self-contained HTML page (inline CSS and SVG charts of
 * the error per layer and per projection, the worst tensors, the
 * thresholds; no scripts, works offline). *out: caller frees with qt_free.
 * @return QT_OK, QT_ERR_NOMEM. */
qt_status qt_calib_report_html(const qt_calib_report *r, char **out, char *errmsg);

#endif /* QT_CALIB_CALIB_H */
