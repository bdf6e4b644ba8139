/*
 * formats/pyjson.h: JSON text exactly as Python's json.dumps writes it.
 *
 * transformers writes config.json with json.dumps(indent=2, sort_keys=True)
 * and bitsandbytes packs its quant_state with json.dumps(dict) (separators
 * ", " and ": ", insertion order). To reproduce those bytes qtool needs
 * Python's float repr (shortest round-trip digits, fixed notation for
 * decimal exponents in [-4, 16), else d.ddde+XX) and a serializer that
 * keeps each number's int-vs-float kind from the source text (cJSON only
 * keeps a double). Pure functions; thread-safe.
 */
#ifndef QT_FORMATS_PYJSON_H
#define QT_FORMATS_PYJSON_H

#include <cJSON.h>
#include <stddef.h>

#include "common/common.h"

/* Python repr() of a double into buf (at least 32 bytes): "1.0", "0.0001",
 * "5.5e-05", "1e+16", "nan" -> "NaN", inf -> "Infinity" (json.dumps). */
void qt_py_float_repr(double v, char *buf, size_t cap);

/* A growing output buffer (caller frees .data with qt_free). */
typedef struct qt_strbuf {
    char *data;
    size_t len, cap;
    bool oom; /* an append failed; the content is incomplete */
} qt_strbuf;

void qt_strbuf_append(qt_strbuf *b, const char *s, size_t n);
void qt_strbuf_puts(qt_strbuf *b, const char *s);
void qt_strbuf_printf(qt_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A JSON string literal with Python's escaping (ensure_ascii=True). */
void qt_strbuf_json_string(qt_strbuf *b, const char *s);
void qt_strbuf_release(qt_strbuf *b);

/* Marks each number node of `root` (parsed from text[0..n)) as float or
 * int according to its literal in the text ('.', 'e' or 'E' -> float), by
 * walking the tree in document order alongside a scan of the text. The
 * mark is the bit QT_PYJSON_FLOAT_FLAG in the node's `type` (cJSON tests
 * types with `type & 0xFF`, so the bit is free). */
#define QT_PYJSON_FLOAT_FLAG 0x10000
void qt_pyjson_mark_floats(cJSON *root, const char *text, size_t n);

/* Serializes like json.dumps(obj, indent=2, sort_keys=True) (indent>0) or
 * json.dumps(obj) (indent=0: insertion order, ", " and ": "). Numbers
 * print as ints unless marked float (or non-integral). */
void qt_pyjson_dump(const cJSON *node, int indent, bool sort_keys, qt_strbuf *out);

#endif /* QT_FORMATS_PYJSON_H */
