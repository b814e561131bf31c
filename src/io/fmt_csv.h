/* fmt_csv — CSV files as tables of rows with line numbers, and a minimal-quoting writer.
 *
 * Reading is a thin wrapper over libcsv (RFC 4180, strict mode): quoted fields may hold
 * commas, quotes ("" inside quotes) and newlines; a UTF-8 byte-order mark is skipped; every
 * field must be valid UTF-8; CRLF and LF line ends both work; blank lines are skipped. Each
 * row records the line it starts on, so importers can say `ratings.csv:14: ...`.
 * Unquoted fields lose surrounding spaces and tabs (libcsv); quote a field to keep them.
 *
 * Writing quotes a field only when it must (comma, quote, CR, LF, or leading/trailing space),
 * so a file round-trips byte for byte through read + write.
 *
 * Thread-safe (no globals). Ownership: a CsvTable owns all its rows and strings.
 */
#ifndef EASEL_FMT_CSV_H
#define EASEL_FMT_CSV_H

#include <stddef.h>
#include <stdio.h>

#include "err.h"

typedef struct CsvRow {
    long line;             /* 1-based line the row starts on */
    size_t n;              /* fields */
    char **field;          /* (n) NUL-terminated; "" for an empty field */
} CsvRow;

typedef struct CsvTable {
    char *name;            /* file name used in messages (as given) */
    CsvRow *rows;          /* (n_rows) the header, if any, is rows[0] */
    size_t n_rows;
} CsvTable;

/* Parse the N bytes at BUF; NAME is used in error messages. Returns 0, or ERR_FORMAT with
 * "NAME:LINE: what is wrong" (stray quote, unterminated quoted field, invalid UTF-8). On
 * error *t is left empty. */
int fmt_csv_parse(const char *name, const char *buf, size_t n, CsvTable *t, Err *err);

/* Read and parse the file at PATH (NAME = PATH). ERR_NOTFOUND / ERR_IO if it cannot be read. */
int fmt_csv_read(const char *path, CsvTable *t, Err *err);

void fmt_csv_deinit(CsvTable *t);   /* NULL allowed */

/* Index of the column named NAME in header row HDR (exact match after trimming), or -1. */
int fmt_csv_column(const CsvRow *hdr, const char *name);

/* Write one field, quoted only if needed. Returns 0 or ERR_IO. */
int fmt_csv_write_field(FILE *f, const char *s);

/* Write N fields separated by commas and a "\n". Returns 0 or ERR_IO. */
int fmt_csv_write_row(FILE *f, const char *const *fields, size_t n);

/* True if the N bytes at S are valid UTF-8 (no overlongs, no surrogates). */
int fmt_csv_valid_utf8(const char *s, size_t n);

#endif
