/* Tests for src/io/fmt_csv.c: line numbers, quoting, CRLF, BOM, UTF-8 checks, round trips. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fmt_csv.h"

static int parse(const char *text, CsvTable *t, Err *err) {
    return fmt_csv_parse("t.csv", text, strlen(text), t, err);
}

Test(fmt_csv, rows_know_their_start_line) {
    const char *text = "a,b\n"
                       "1,\"two\nlines\"\n"
                       "\n"
                       "\"x, y\",\"say \"\"hi\"\"\"\n"
                       "last,row";
    CsvTable t;
    Err err = {0};
    cr_assert_eq(parse(text, &t, &err), 0, "%s", err.msg);
    cr_assert_eq(t.n_rows, 4);
    cr_assert_eq(t.rows[0].line, 1);
    cr_assert_eq(t.rows[1].line, 2);
    cr_assert_str_eq(t.rows[1].field[1], "two\nlines");
    cr_assert_eq(t.rows[2].line, 5);
    cr_assert_str_eq(t.rows[2].field[0], "x, y");
    cr_assert_str_eq(t.rows[2].field[1], "say \"hi\"");
    cr_assert_eq(t.rows[3].line, 6);
    cr_assert_str_eq(t.rows[3].field[1], "row");
    cr_assert_eq(fmt_csv_column(&t.rows[0], "b"), 1);
    cr_assert_eq(fmt_csv_column(&t.rows[0], "c"), -1);
    fmt_csv_deinit(&t);
}

Test(fmt_csv, crlf_bom_and_empty_fields) {
    CsvTable t;
    cr_assert_eq(parse("\xef\xbb\xbfid,v\r\n1,\r\n2,\"\"\r\n", &t, NULL), 0);
    cr_assert_eq(t.n_rows, 3);
    cr_assert_str_eq(t.rows[0].field[0], "id");
    cr_assert_eq(t.rows[1].n, 2);
    cr_assert_str_eq(t.rows[1].field[1], "");
    cr_assert_str_eq(t.rows[2].field[1], "");
    cr_assert_eq(t.rows[2].line, 3);
    fmt_csv_deinit(&t);
}

Test(fmt_csv, errors_name_the_line) {
    CsvTable t;
    Err err = {0};
    cr_assert_eq(parse("a,b\n1,2\n3,x\"y\n", &t, &err), ERR_FORMAT);
    cr_assert(strstr(err.msg, "t.csv:3:") != NULL, "%s", err.msg);
    cr_assert_eq(parse("a,b\n1,2\n3,\"open\n4,5\n", &t, &err), ERR_FORMAT);
    cr_assert(strstr(err.msg, "t.csv:3:") != NULL, "%s", err.msg);
    cr_assert(strstr(err.msg, "never closed") != NULL, "%s", err.msg);
    cr_assert_eq(parse("a\nok\n\xc3\x28\n", &t, &err), ERR_FORMAT);
    cr_assert(strstr(err.msg, "t.csv:3:") != NULL, "%s", err.msg);
    cr_assert(strstr(err.msg, "UTF-8") != NULL, "%s", err.msg);
    cr_assert_eq(t.n_rows, 0);
}

Test(fmt_csv, utf8_validation) {
    cr_assert(fmt_csv_valid_utf8("Café 東京 😀", strlen("Café 東京 😀")));
    cr_assert_not(fmt_csv_valid_utf8("\xc0\xaf", 2));         /* overlong */
    cr_assert_not(fmt_csv_valid_utf8("\xed\xa0\x80", 3));     /* surrogate */
    cr_assert_not(fmt_csv_valid_utf8("\xe6\x9d", 2));         /* truncated */
}

/* Fields with commas, quotes, newlines, edge spaces and UTF-8 survive write → parse. */
Test(fmt_csv, write_then_read_round_trip) {
    const char *fields[] = {"plain", "a, comma", "say \"hi\"", "two\nlines", " padded ",
                            "Café — 東京", "", "cr\rhere"};
    size_t n = sizeof fields / sizeof fields[0];
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_eq(fmt_csv_write_row(f, fields, n), 0);
    cr_assert_eq(fmt_csv_write_row(f, fields, n), 0);
    fclose(f);
    CsvTable t;
    Err err = {0};
    cr_assert_eq(fmt_csv_parse("m.csv", buf, len, &t, &err), 0, "%s", err.msg);
    cr_assert_eq(t.n_rows, 2);
    for (size_t r = 0; r < 2; r++) {
        cr_assert_eq(t.rows[r].n, n);
        for (size_t i = 0; i < n; i++)
            cr_assert_str_eq(t.rows[r].field[i], fields[i]);
    }
    cr_assert_eq(t.rows[1].line, 3); /* the first row spans lines 1-2 */
    /* writing what we read gives the same bytes */
    char *buf2 = NULL;
    size_t len2 = 0;
    f = open_memstream(&buf2, &len2);
    for (size_t r = 0; r < 2; r++)
        fmt_csv_write_row(f, (const char *const *)t.rows[r].field, t.rows[r].n);
    fclose(f);
    cr_assert_eq(len, len2);
    cr_assert_eq(memcmp(buf, buf2, len), 0);
    cr_assert_str_eq(buf, "plain,\"a, comma\",\"say \"\"hi\"\"\",\"two\nlines\",\" padded \","
                          "Café — 東京,,\"cr\rhere\"\n"
                          "plain,\"a, comma\",\"say \"\"hi\"\"\",\"two\nlines\",\" padded \","
                          "Café — 東京,,\"cr\rhere\"\n");
    free(buf);
    free(buf2);
    fmt_csv_deinit(&t);
}
