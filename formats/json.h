/*
 * formats/json.h: strict JSON parsing for untrusted headers and config
 * files, on top of cJSON (which this module alone links).
 *
 * cJSON accepts duplicate keys, invalid UTF-8 and stops at a NUL byte;
 * qt_json_parse rejects all three and numbers beyond float64 (1e400), caps
 * nesting at QT_JSON_MAX_DEPTH,
 * and requires the whole buffer to be one JSON value with only JSON
 * whitespace around it. Thread-safe (no cJSON global error state is used
 * across calls). The tree is owned by the caller: free it with
 * cJSON_Delete.
 */
#ifndef QT_FORMATS_JSON_H
#define QT_FORMATS_JSON_H

#include <cJSON.h>
#include <stddef.h>

#include "common/common.h"

#define QT_JSON_MAX_DEPTH 64

/* Rule that a rejected document broke (for tests and messages). */
typedef enum qt_json_rule {
    QT_JSON_OK = 0,
    QT_JSON_BAD_UTF8,   /* bytes are not UTF-8 */
    QT_JSON_NUL_BYTE,   /* a NUL byte inside the document */
    QT_JSON_SYNTAX,     /* not valid JSON / truncated / trailing garbage */
    QT_JSON_TOO_DEEP,   /* nesting deeper than QT_JSON_MAX_DEPTH */
    QT_JSON_DUPLICATE,  /* an object has the same key twice */
    QT_JSON_NUMBER_RANGE, /* a number overflows float64 (1e400) */
} qt_json_rule;

/* True when the JSON text s[0..n) holds a \u0000 escape: cJSON would cut
 * that string there, so two different names could read the same (callers
 * whose strings are names refuse it). */
bool qt_json_has_nul_escape(const char *s, size_t n);

/* Parses buf[0..n). `what` names the source in messages (a file path).
 * On success *out is the tree (caller frees with cJSON_Delete).
 * On failure *out is NULL, *rule (may be NULL) says which rule, and errmsg
 * (QT_ERRMSG_SIZE, may be NULL) names the file, the rule and, for
 * duplicates, the key.
 * @return QT_OK, QT_ERR_FORMAT, QT_ERR_NOMEM. */
qt_status qt_json_parse(const char *buf, size_t n, const char *what, cJSON **out,
                        qt_json_rule *rule, char *errmsg);

/* Reads a whole (small) file and parses it as above; files over max_bytes
 * are refused with QT_ERR_FORMAT. @return QT_OK, QT_ERR_IO, QT_ERR_FORMAT,
 * QT_ERR_NOMEM. */
qt_status qt_json_parse_file(const char *path, size_t max_bytes, cJSON **out, char *errmsg);

/* True when buf[0..n) is valid UTF-8 (no overlongs, no surrogates). */
bool qt_utf8_valid(const char *buf, size_t n);

#endif /* QT_FORMATS_JSON_H */
