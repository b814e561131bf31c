/* Tests for src/io/fmt_json.c: params and configs shown to people with the shortest reals
 * that read back exactly, the JSON value itself unchanged. */
#include <criterion/criterion.h>
#include <limits.h>
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

Test(fmt_json, typed_config_fields_default_check_and_name_the_key) {
    json_t *o = json_loads("{\"n\": 4, \"big\": 99, \"x\": 0.5, \"b\": true, \"s\": \"4\", "
                           "\"z\": null}", 0, NULL);
    cr_assert_not_null(o);
    Err err = {0};
    int i = 0, b = 0;
    float f = 0;
    cr_assert_eq(fmt_json_get_int(o, "n", 7, 1, 8, &i, "cfg.json", &err), 0);
    cr_assert_eq(i, 4);
    cr_assert_eq(fmt_json_get_int(o, "absent", 7, 1, 8, &i, "cfg.json", &err), 0);
    cr_assert_eq(i, 7);
    cr_assert_eq(fmt_json_get_int(o, "z", 3, 1, 8, &i, "cfg.json", &err), 0, "null: default");
    cr_assert_eq(i, 3);
    cr_assert_eq(fmt_json_get_int(o, "big", 7, 1, 8, &i, "cfg.json", &err), ERR_FORMAT);
    cr_assert_str_eq(err.msg, "cfg.json: \"big\" must be an integer from 1 to 8");
    cr_assert_eq(fmt_json_get_int(o, "s", 7, INT_MIN, INT_MAX, &i, "cfg.json", &err),
                 ERR_FORMAT);
    cr_assert_str_eq(err.msg, "cfg.json: \"s\" must be an integer");
    cr_assert_eq(fmt_json_get_int(o, "x", 7, 2, INT_MAX, &i, "c", &err), ERR_FORMAT);
    cr_assert_str_eq(err.msg, "c: \"x\" must be an integer of at least 2");
    cr_assert_eq(fmt_json_get_num(o, "x", 1.0, &f, "c", &err), 0);
    cr_assert_eq(f, 0.5f);
    cr_assert_eq(fmt_json_get_num(o, "n", 1.0, &f, "c", &err), 0, "an integer is a number");
    cr_assert_eq(f, 4.0f);
    cr_assert_eq(fmt_json_get_num(o, "b", 1.0, &f, "c", &err), ERR_FORMAT);
    cr_assert_str_eq(err.msg, "c: \"b\" must be a number");
    cr_assert_eq(fmt_json_get_bool(o, "b", 0, &b, "c", &err), 0);
    cr_assert_eq(b, 1);
    cr_assert_eq(fmt_json_get_bool(o, "n", 0, &b, "c", &err), ERR_FORMAT);
    cr_assert_str_eq(err.msg, "c: \"n\" must be true or false");
    json_decref(o);
}
