/* fmt_json — JSON text with the shortest round-trip reals. See fmt_json.h.
 *
 * jansson parses the text (keys keep their order); a small recursive writer then prints it,
 * asking jansson only to encode strings, so escaping stays jansson's.
 */
#include "fmt_json.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"

typedef struct Buf {
    char *s;
    size_t n, cap;
} Buf;

static void put(Buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        while (b->n + n + 1 > b->cap)
            b->cap = b->cap ? 2 * b->cap : 256;
        b->s = xrealloc(b->s, b->cap);
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

static void puts_(Buf *b, const char *s) { put(b, s, strlen(s)); }

char *fmt_json_real(double v, char buf[32]) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, 32, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    if (!strpbrk(buf, ".eEn")) /* "3" -> "3.0": still a real when read back */
        strcat(buf, ".0");
    return buf;
}

static void put_string(Buf *b, const char *s, size_t len) {
    json_t *j = json_stringn(s, len);
    char *t = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    puts_(b, t ? t : "\"\"");
    free(t);
    json_decref(j);
}

static void write_value(Buf *b, json_t *v) {
    char tmp[40];
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        json_t *x;
        int first = 1;
        puts_(b, "{");
        json_object_foreach(v, key, x) {
            if (!first)
                puts_(b, ",");
            first = 0;
            put_string(b, key, strlen(key));
            puts_(b, ":");
            write_value(b, x);
        }
        puts_(b, "}");
        break;
    }
    case JSON_ARRAY: {
        puts_(b, "[");
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i)
                puts_(b, ",");
            write_value(b, json_array_get(v, i));
        }
        puts_(b, "]");
        break;
    }
    case JSON_STRING:
        put_string(b, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        snprintf(tmp, sizeof tmp, "%lld", (long long)json_integer_value(v));
        puts_(b, tmp);
        break;
    case JSON_REAL:
        puts_(b, fmt_json_real(json_real_value(v), tmp));
        break;
    case JSON_TRUE:
        puts_(b, "true");
        break;
    case JSON_FALSE:
        puts_(b, "false");
        break;
    case JSON_NULL:
        puts_(b, "null");
        break;
    }
}

char *fmt_json_human(const char *json) {
    if (!json)
        return NULL;
    json_error_t je;
    json_t *v = json_loads(json, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!v)
        return xstrdup(json);
    Buf b = {0};
    write_value(&b, v);
    json_decref(v);
    return b.s ? b.s : xstrdup("");
}

/* ---- typed fields of a config ---------------------------------------------------------------- */

int fmt_json_get_int(json_t *o, const char *key, int dflt, int lo, int hi, int *out,
                     const char *where, Err *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return 0;
    }
    if (json_is_integer(v) && json_integer_value(v) >= lo && json_integer_value(v) <= hi) {
        *out = (int)json_integer_value(v);
        return 0;
    }
    if (lo == INT_MIN && hi == INT_MAX)
        return err_set(err, ERR_FORMAT, "%s: \"%s\" must be an integer", where, key);
    if (hi == INT_MAX)
        return err_set(err, ERR_FORMAT, "%s: \"%s\" must be an integer of at least %d", where,
                       key, lo);
    return err_set(err, ERR_FORMAT, "%s: \"%s\" must be an integer from %d to %d", where, key,
                   lo, hi);
}

int fmt_json_get_num(json_t *o, const char *key, double dflt, float *out, const char *where,
                     Err *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = (float)dflt;
        return 0;
    }
    if (!json_is_number(v))
        return err_set(err, ERR_FORMAT, "%s: \"%s\" must be a number", where, key);
    *out = (float)json_number_value(v);
    return 0;
}

int fmt_json_get_bool(json_t *o, const char *key, int dflt, int *out, const char *where,
                      Err *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return 0;
    }
    if (!json_is_boolean(v))
        return err_set(err, ERR_FORMAT, "%s: \"%s\" must be true or false", where, key);
    *out = json_is_true(v);
    return 0;
}
