/* fmt_json — JSON text for people: the params and configs that `jobs show`, `runs show` and
 * the Jobs screen print; and the typed fields of a config file (a model's config.json).
 *
 * jansson writes a real with 17 significant digits, so 0.2 reads "0.20000000000000001".
 * Here every real is written in the shortest form that reads back (strtod) as exactly the
 * same double ("0.2", "1e-05", "0.1"), integers, strings, booleans and null as jansson
 * writes them, keys in their stored order, compact (no spaces). The value is unchanged:
 * parsing the output gives the same JSON value as parsing the input.
 *
 * Pure, thread-safe; allocations through xmalloc.
 */
#ifndef EASEL_FMT_JSON_H
#define EASEL_FMT_JSON_H

#include <jansson.h>

#include "err.h"

/* JSON, re-written for people as above. New string (free). Text that is not JSON comes back
 * as a copy, unchanged; NULL gives NULL. */
char *fmt_json_human(const char *json);

/* The shortest text of V that strtod reads back as exactly V, with a '.' or an exponent so
 * that it stays a real ("0.2", "3.0", "1e-05"); "NaN"/"Infinity" never occur in JSON. BUF
 * holds at least 32 bytes. Returns BUF. */
char *fmt_json_real(double v, char buf[32]);

/* Typed fields of the JSON object O (config files): KEY absent or null gives DFLT; a value of
 * the wrong type, or an integer outside [LO, HI], is ERR_FORMAT with "WHERE: \"KEY\" must be
 * ..." (WHERE names the file). Return 0 or the error. */
int fmt_json_get_int(json_t *o, const char *key, int dflt, int lo, int hi, int *out,
                     const char *where, Err *err);
int fmt_json_get_num(json_t *o, const char *key, double dflt, float *out, const char *where,
                     Err *err);
int fmt_json_get_bool(json_t *o, const char *key, int dflt, int *out, const char *where,
                      Err *err);

#endif
