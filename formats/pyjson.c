/* formats/pyjson.c: Python json.dumps-compatible output. */
#include "formats/pyjson.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- strbuf ----------------------------------------------------------- */
void qt_strbuf_append(qt_strbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = qt_realloc(b->data, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
}

void qt_strbuf_puts(qt_strbuf *b, const char *s) { qt_strbuf_append(b, s, strlen(s)); }

void qt_strbuf_printf(qt_strbuf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        qt_strbuf_append(b, tmp, (size_t)n);
        return;
    }
    char *big = qt_malloc((size_t)n + 1);
    if (!big) {
        b->oom = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    qt_strbuf_append(b, big, (size_t)n);
    qt_free(big);
}

void qt_strbuf_release(qt_strbuf *b)
{
    if (!b) return;
    qt_free(b->data);
    memset(b, 0, sizeof *b);
}

static unsigned utf8_next(const unsigned char **p)
{
    const unsigned char *s = *p;
    unsigned c = s[0];
    int len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : 4;
    if (len == 1) {
        *p += 1;
        return c;
    }
    c &= (len == 2 ? 0x1f : len == 3 ? 0x0f : 0x07);
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) { /* invalid: emit the byte as is */
            *p += 1;
            return s[0];
        }
        c = (c << 6) | (s[i] & 0x3f);
    }
    *p += len;
    return c;
}

void qt_strbuf_json_string(qt_strbuf *b, const char *s)
{
    qt_strbuf_append(b, "\"", 1);
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        if (c == '"') qt_strbuf_append(b, "\\\"", 2), p++;
        else if (c == '\\') qt_strbuf_append(b, "\\\\", 2), p++;
        else if (c == '\n') qt_strbuf_append(b, "\\n", 2), p++;
        else if (c == '\r') qt_strbuf_append(b, "\\r", 2), p++;
        else if (c == '\t') qt_strbuf_append(b, "\\t", 2), p++;
        else if (c == '\b') qt_strbuf_append(b, "\\b", 2), p++;
        else if (c == '\f') qt_strbuf_append(b, "\\f", 2), p++;
        else if (c < 0x20) qt_strbuf_printf(b, "\\u%04x", c), p++;
        else if (c < 0x80) qt_strbuf_append(b, (const char *)p, 1), p++;
        else {
            unsigned cp = utf8_next(&p);
            if (cp >= 0x10000) {
                cp -= 0x10000;
                qt_strbuf_printf(b, "\\u%04x\\u%04x", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
            } else {
                qt_strbuf_printf(b, "\\u%04x", cp);
            }
        }
    }
    qt_strbuf_append(b, "\"", 1);
}

/* ---- float repr ------------------------------------------------------- */
void qt_py_float_repr(double v, char *buf, size_t cap)
{
    if (isnan(v)) {
        snprintf(buf, cap, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, cap, v > 0 ? "Infinity" : "-Infinity");
        return;
    }
    if (v == 0) {
        snprintf(buf, cap, signbit(v) ? "-0.0" : "0.0");
        return;
    }
    char tmp[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, v);
        if (strtod(tmp, NULL) == v) break;
    }
    /* tmp = [-]d[.ddd]e[+-]XX ; collect digits and exponent */
    const char *p = tmp;
    bool neg = false;
    if (*p == '-') neg = true, p++;
    char digits[24];
    int nd = 0;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9') digits[nd++] = *p;
    int e10 = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--; /* strip trailing zeros */
    digits[nd] = 0;
    char out[64];
    size_t o = 0;
    if (neg) out[o++] = '-';
    if (e10 >= -4 && e10 < 16) {
        if (e10 < 0) {
            out[o++] = '0';
            out[o++] = '.';
            for (int i = 0; i < -e10 - 1; i++) out[o++] = '0';
            for (int i = 0; i < nd; i++) out[o++] = digits[i];
        } else {
            for (int i = 0; i <= e10; i++) out[o++] = i < nd ? digits[i] : '0';
            out[o++] = '.';
            if (nd > e10 + 1)
                for (int i = e10 + 1; i < nd; i++) out[o++] = digits[i];
            else
                out[o++] = '0';
        }
        out[o] = 0;
    } else {
        out[o++] = digits[0];
        if (nd > 1) {
            out[o++] = '.';
            for (int i = 1; i < nd; i++) out[o++] = digits[i];
        }
        o += (size_t)snprintf(out + o, sizeof out - o, "e%c%02d", e10 < 0 ? '-' : '+',
                              e10 < 0 ? -e10 : e10);
    }
    snprintf(buf, cap, "%s", out);
}

/* ---- number kinds from the source text -------------------------------- */
/* Scans the text for number tokens (outside strings), in document order,
 * calling back with whether each is a float literal. */
typedef struct mark_ctx {
    const char *text;
    size_t n, pos;
} mark_ctx;

static int next_number_is_float(mark_ctx *m)
{
    const char *t = m->text;
    while (m->pos < m->n) {
        char c = t[m->pos];
        if (c == '"') {
            m->pos++;
            while (m->pos < m->n && t[m->pos] != '"') {
                if (t[m->pos] == '\\') m->pos++;
                m->pos++;
            }
            m->pos++;
            continue;
        }
        if (c == '-' || (c >= '0' && c <= '9')) {
            int is_float = 0;
            while (m->pos < m->n) {
                c = t[m->pos];
                if (c == '.' || c == 'e' || c == 'E') is_float = 1;
                else if (!(c == '-' || c == '+' || (c >= '0' && c <= '9'))) break;
                m->pos++;
            }
            return is_float;
        }
        m->pos++;
    }
    return 0;
}

static void mark_walk(cJSON *node, mark_ctx *m)
{
    for (; node; node = node->next) {
        if (cJSON_IsNumber(node)) {
            if (next_number_is_float(m)) node->type |= QT_PYJSON_FLOAT_FLAG;
        } else if (cJSON_IsObject(node) || cJSON_IsArray(node)) {
            mark_walk(node->child, m);
        }
    }
}

void qt_pyjson_mark_floats(cJSON *root, const char *text, size_t n)
{
    mark_ctx m = {text, n, 0};
    mark_walk(root, &m);
}

/* ---- dump ------------------------------------------------------------- */
static int cmp_keys(const void *a, const void *b)
{
    const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;
    return strcmp(x->string, y->string);
}

static void indent_to(qt_strbuf *out, int indent, int level)
{
    qt_strbuf_append(out, "\n", 1);
    for (int i = 0; i < indent * level; i++) qt_strbuf_append(out, " ", 1);
}

static void dump(const cJSON *node, int indent, bool sort_keys, int level, qt_strbuf *out)
{
    if (cJSON_IsNull(node)) qt_strbuf_puts(out, "null");
    else if (cJSON_IsTrue(node)) qt_strbuf_puts(out, "true");
    else if (cJSON_IsFalse(node)) qt_strbuf_puts(out, "false");
    else if (cJSON_IsString(node)) qt_strbuf_json_string(out, node->valuestring);
    else if (cJSON_IsNumber(node)) {
        double v = node->valuedouble;
        char tmp[40];
        if (!(node->type & QT_PYJSON_FLOAT_FLAG) && v == floor(v) && fabs(v) < 9.007199254740992e15)
            snprintf(tmp, sizeof tmp, "%.0f", v);
        else
            qt_py_float_repr(v, tmp, sizeof tmp);
        qt_strbuf_puts(out, tmp);
    } else if (cJSON_IsArray(node) || cJSON_IsObject(node)) {
        bool obj = cJSON_IsObject(node);
        size_t count = 0;
        for (const cJSON *c = node->child; c; c = c->next) count++;
        if (count == 0) {
            qt_strbuf_puts(out, obj ? "{}" : "[]");
            return;
        }
        const cJSON **items = qt_malloc(count * sizeof *items);
        if (!items) {
            out->oom = true;
            return;
        }
        size_t i = 0;
        for (const cJSON *c = node->child; c; c = c->next) items[i++] = c;
        if (obj && sort_keys) qsort(items, count, sizeof *items, cmp_keys);
        qt_strbuf_puts(out, obj ? "{" : "[");
        for (i = 0; i < count; i++) {
            if (i) qt_strbuf_puts(out, indent ? "," : ", ");
            if (indent) indent_to(out, indent, level + 1);
            if (obj) {
                qt_strbuf_json_string(out, items[i]->string);
                qt_strbuf_puts(out, ": ");
            }
            dump(items[i], indent, sort_keys, level + 1, out);
        }
        if (indent) indent_to(out, indent, level);
        qt_strbuf_puts(out, obj ? "}" : "]");
        qt_free(items);
    }
}

void qt_pyjson_dump(const cJSON *node, int indent, bool sort_keys, qt_strbuf *out)
{
    dump(node, indent, sort_keys, 0, out);
}
