/* Tests for src/io/fmt_json.c: params and configs shown to people with the shortest reals
 * that read back exactly, the JSON value itself unchanged. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "fmt_json.h"

/* OUT parses to the same JSON value as IN. */
static void assert_same_value(const char *in, const char *out) {
    json_t *a = json_loads(in, JSON_DECODE_ANY, NULL), *b = json_loads(out, JSON_DECODE_ANY, NULL);
    cr_assert(a && b, "%s -> %s", in, out);
    cr_assert(json_equal(a, b), "%s -> %s", in, out);
    json_decref(a);
    json_decref(b);
}

Test(fmt_json, reals_are_shortest_and_exact) {
    json_t *o = json_pack("{s:f, s:f, s:f, s:f, s:f, s:i, s:s}", "val", 0.2, "lr", 1e-4,
                          "third", 1.0 / 3, "sum", 0.1 + 0.2, "big", 3.0, "epochs", 10, "name",
                          "a \"quoted\"\n\x1b name");
    char *in = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    cr_assert(strstr(in, "0.20000000000000001"), "jansson's own text: %s", in);
    char *out = fmt_json_human(in);
    cr_assert(strstr(out, "\"val\":0.2,"), "%s", out);
    cr_assert(strstr(out, "\"lr\":0.0001,"), "%s", out);
    cr_assert(strstr(out, "\"sum\":0.30000000000000004,"), "exact, not rounded: %s", out);
    cr_assert(strstr(out, "\"big\":3.0,"), "a real stays a real: %s", out);
    cr_assert(strstr(out, "\"epochs\":10,"), "%s", out);
    cr_assert(strstr(out, "\\u001B") && !strchr(out, 0x1b), "escaped as jansson does: %s",
              out);
    cr_assert_lt(strstr(out, "\"val\""), strstr(out, "\"name\""), "keys keep their order");
    assert_same_value(in, out);
    free(in);
    free(out);
}

Test(fmt_json, nested_values_and_text_that_is_not_json) {
    const char *in = "{\"a\":[1,2.5,{\"b\":null,\"c\":true}],\"d\":false,\"e\":-1.5e-300}";
    char *out = fmt_json_human(in);
    cr_assert_str_eq(out, in);
    free(out);
    out = fmt_json_human("not json {");
    cr_assert_str_eq(out, "not json {");
    free(out);
    cr_assert_null(fmt_json_human(NULL));
    char buf[32];
    cr_assert_str_eq(fmt_json_real(0.1, buf), "0.1");
    cr_assert_str_eq(fmt_json_real(-2, buf), "-2.0");
    cr_assert_str_eq(fmt_json_real(1e21, buf), "1e+21");
}
