/* fuzz_import — libFuzzer target for the importers (`make fuzz`, needs clang).
 *
 * The first input byte picks the importer (prompts, ratings, generated, pairs); the rest is
 * the file. Each input is imported into one in-memory store that already holds the good
 * fixtures' prompts. The invariants checked on every input:
 *   - no crash, leak or undefined behaviour (ASan + UBSan);
 *   - a failed import lists at least one problem, names the file, and leaves the store's
 *     counts exactly as they were.
 * Seeds: the .csv and .jsonl files of tests/fixtures/import, each prefixed with one byte
 * (0 prompts, 1 ratings, 2 generated, 3 pairs). Run: make fuzz FUZZ_ARGS=-max_total_time=60
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "import.h"
#include "store_catalog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static Store *st;
static char path[64];

static void counts(int64_t out[8]) {
    StoreCounts c;
    if (store_counts(st, &c, NULL))
        __builtin_trap();
    int64_t v[8] = {c.prompts, c.images, c.images_missing, c.annotators,
                    c.ratings, c.rating_edits, c.pairs, c.images_rated};
    memcpy(out, v, sizeof v);
    store_counts_deinit(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!st) {
        st = store_open(":memory:", NULL);
        ImportReport rep;
        if (!st || import_path(st, IMPORT_PROMPTS, "tests/fixtures/import/prompts_good.csv",
                               NULL, &rep, NULL))
            __builtin_trap();
        import_report_deinit(&rep);
        snprintf(path, sizeof path, "/tmp/easel-fuzz-%d.txt", (int)getpid());
    }
    if (size < 1)
        return 0;
    static const ImportKind kinds[] = {IMPORT_PROMPTS, IMPORT_RATINGS, IMPORT_GENERATED,
                                       IMPORT_PAIRS};
    ImportKind kind = kinds[data[0] % 4];
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    fwrite(data + 1, 1, size - 1, f);
    fclose(f);
    int64_t before[8], after[8];
    counts(before);
    ImportOptions o = {.annotator = "fuzz"};
    ImportReport rep;
    Err err = {0};
    int rc = import_path(st, kind, path, &o, &rep, &err);
    counts(after);
    if (rc) {
        if (rep.n_errors == 0 || strncmp(err.msg, path, strlen(path)) != 0 ||
            memcmp(before, after, sizeof before) != 0)
            __builtin_trap();
    }
    import_report_deinit(&rep);
    unlink(path);
    return 0;
}
