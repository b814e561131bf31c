/* pairs_jsonl — one line of the original's pairs.jsonl, parsed and checked field by field.
 * Shared by the importer (import_pairs.c, which also defines these) and the tuning loader
 * (tune_pairs_file.c), so the two read the format the same way (doc/formats.md).
 * Data layer; no store. */
#ifndef EASEL_PAIRS_JSONL_H
#define EASEL_PAIRS_JSONL_H

/* The fields of one line. Strings point into the parsed object: valid until
 * pairs_line_deinit. */
typedef struct PairsLine {
    const char *prompt;    /* text, an id, or "prompt_N" */
    const char *prompt_id; /* "prompt_id" (written by easel's export), or NULL */
    const char *img_pos;
    const char *img_neg;
    const char *aspect;    /* NULL when absent; not checked against any store */
    double label;          /* 1.0 when absent; checked to be in 0..1 */
    double rating_pos, rating_neg, rating_diff; /* NAN when absent */
    void *obj;             /* the parsed JSON object */
} PairsLine;

/* Called once per problem found on LINE (a whole message: what is wrong, what to do). */
typedef void (*PairsProblemFn)(void *ud, long line, const char *msg);

/* Parse the JSON text S of LINE into *OUT. Returns 0, or -1 after reporting each of its
 * problems through PROBLEM (then *out holds nothing to deinit). */
int pairs_line_parse(const char *s, long line, PairsLine *out, PairsProblemFn problem, void *ud);
void pairs_line_deinit(PairsLine *pl); /* NULL allowed */

/* Split the NUL-terminated text at *CURSOR into lines in place: the next line (CR and, on
 * line 1, a UTF-8 BOM removed; may be blank), its 1-based number in *LINE; NULL at the end. */
char *pairs_jsonl_next_line(char **cursor, long *line);

#endif
