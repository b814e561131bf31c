/* fmt_csv — libcsv-backed reader with line numbers, minimal-quoting writer. See fmt_csv.h.
 *
 * Design: the buffer is fed to libcsv one physical line at a time. Whenever the parser is
 * between rows (pstate 0, libcsv's ROW_NOT_BEGUN) before a line is fed, that line is where
 * the next row starts; a quoted field spanning lines keeps the parser mid-row, so the start
 * line stays put. The last line without a newline is flushed by csv_fini.
 */
#include "fmt_csv.h"

#include <csv.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"

typedef struct Builder {
    CsvTable *t;
    size_t cap_rows;
    CsvRow cur;            /* row being built */
    size_t cap_fields;
    long start_line;       /* line the current row started on */
    const char *name;
    int bad_utf8;          /* first invalid UTF-8 seen: its line */
    long bad_line;
} Builder;

int fmt_csv_valid_utf8(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        unsigned cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (i + len > n)
            return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += len;
    }
    return 1;
}

static void on_field(void *data, size_t len, void *user) {
    Builder *b = user;
    if (b->cur.n == b->cap_fields) {
        b->cap_fields = b->cap_fields ? 2 * b->cap_fields : 8;
        b->cur.field = xrealloc(b->cur.field, b->cap_fields * sizeof *b->cur.field);
    }
    const char *s = data ? data : "";
    if (!data)
        len = 0;
    if (!b->bad_utf8 && !fmt_csv_valid_utf8(s, len)) {
        b->bad_utf8 = 1;
        b->bad_line = b->start_line;
    }
    b->cur.field[b->cur.n++] = xstrndup(s, len);
}

static void on_row(int c, void *user) {
    (void)c;
    Builder *b = user;
    CsvTable *t = b->t;
    if (t->n_rows == b->cap_rows) {
        b->cap_rows = b->cap_rows ? 2 * b->cap_rows : 64;
        t->rows = xrealloc(t->rows, b->cap_rows * sizeof *t->rows);
    }
    b->cur.line = b->start_line;
    t->rows[t->n_rows++] = b->cur;
    memset(&b->cur, 0, sizeof b->cur);
    b->cap_fields = 0;
}

static void free_row(CsvRow *r) {
    for (size_t i = 0; i < r->n; i++)
        free(r->field[i]);
    free(r->field);
}

void fmt_csv_deinit(CsvTable *t) {
    if (!t)
        return;
    for (size_t i = 0; i < t->n_rows; i++)
        free_row(&t->rows[i]);
    free(t->rows);
    free(t->name);
    memset(t, 0, sizeof *t);
}

int fmt_csv_parse(const char *name, const char *buf, size_t n, CsvTable *t, Err *err) {
    memset(t, 0, sizeof *t);
    t->name = xstrdup(name);
    Builder b = {.t = t, .name = name, .start_line = 1};
    struct csv_parser p;
    if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL) != 0)
        return err_set(err, ERR_NOMEM, "%s: cannot start the CSV parser", name);
    if (n >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0) { /* UTF-8 BOM */
        buf += 3;
        n -= 3;
    }
    int rc = 0;
    long line = 1;
    size_t pos = 0;
    while (pos < n) {
        const char *nl = memchr(buf + pos, '\n', n - pos);
        size_t len = nl ? (size_t)(nl - (buf + pos)) + 1 : n - pos;
        if (p.pstate == 0)
            b.start_line = line;
        if (csv_parse(&p, buf + pos, len, on_field, on_row, &b) != len) {
            rc = err_set(err, csv_error(&p) == CSV_ENOMEM ? ERR_NOMEM : ERR_FORMAT,
                         "%s:%ld: malformed CSV (a quote inside an unquoted field, or text "
                         "after a closing quote); quote the whole field and double inner quotes",
                         name, line);
            goto out;
        }
        pos += len;
        line++;
    }
    if (csv_fini(&p, on_field, on_row, &b) != 0) {
        rc = err_set(err, ERR_FORMAT,
                     "%s:%ld: a quoted field is never closed (missing '\"' before the end of "
                     "the file)", name, b.start_line);
        goto out;
    }
    if (b.bad_utf8) {
        rc = err_set(err, ERR_FORMAT, "%s:%ld: text is not valid UTF-8; save the file as UTF-8",
                     name, b.bad_line);
        goto out;
    }
out:
    csv_free(&p);
    free_row(&b.cur);
    if (rc)
        fmt_csv_deinit(t);
    return rc;
}

int fmt_csv_read(const char *path, CsvTable *t, Err *err) {
    memset(t, 0, sizeof *t);
    FILE *f = fopen(path, "rb");
    if (!f)
        return err_set(err, errno == ENOENT ? ERR_NOTFOUND : ERR_IO, "%s: cannot open: %s",
                       path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    int rc = 0;
    if (!buf) {
        rc = err_set(err, ERR_NOMEM, "%s: out of memory", path);
        goto out_close;
    }
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                rc = err_set(err, ERR_NOMEM, "%s: out of memory reading the file", path);
                goto out_free;
            }
            buf = nb;
            cap *= 2;
        }
    }
    if (ferror(f)) {
        rc = err_set(err, ERR_IO, "%s: read error", path);
        goto out_free;
    }
    rc = fmt_csv_parse(path, buf, n, t, err);
out_free:
    free(buf);
out_close:
    fclose(f);
    return rc;
}

int fmt_csv_column(const CsvRow *hdr, const char *name) {
    for (size_t i = 0; i < hdr->n; i++)
        if (strcmp(hdr->field[i], name) == 0)
            return (int)i;
    return -1;
}

int fmt_csv_write_field(FILE *f, const char *s) {
    if (!s)
        s = "";
    size_t n = strlen(s);
    int quote = n > 0 && (s[0] == ' ' || s[0] == '\t' || s[n - 1] == ' ' || s[n - 1] == '\t');
    if (!quote && strpbrk(s, ",\"\r\n"))
        quote = 1;
    if (!quote)
        return fputs(s, f) < 0 ? ERR_IO : 0;
    if (fputc('"', f) == EOF)
        return ERR_IO;
    for (const char *c = s; *c; c++) {
        if (*c == '"' && fputc('"', f) == EOF)
            return ERR_IO;
        if (fputc(*c, f) == EOF)
            return ERR_IO;
    }
    return fputc('"', f) == EOF ? ERR_IO : 0;
}

int fmt_csv_write_row(FILE *f, const char *const *fields, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (i && fputc(',', f) == EOF)
            return ERR_IO;
        if (fmt_csv_write_field(f, fields[i]))
            return ERR_IO;
    }
    return fputc('\n', f) == EOF ? ERR_IO : 0;
}
