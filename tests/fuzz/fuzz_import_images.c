/* fuzz_import_images — libFuzzer target for `easel import images` (`make fuzz`, needs clang).
 *
 * The first input byte picks the file's extension (.png, .jpg, .bmp, .webp), the rest is the
 * file, placed as FOLDER/1/7.EXT and imported into a new in-memory store holding the good
 * fixtures' prompts. Invariants checked on every input:
 *   - no crash, leak or undefined behaviour (ASan + UBSan);
 *   - a failed import lists at least one problem and leaves the store's counts exactly as they
 *     were; a successful one adds one image at most.
 * Seeds: tests/fixtures/import/images and the small images of fuzz_image (make fuzz).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "import.h"
#include "store_catalog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static Store *st;
static char root[64], file[96];

static void counts(int64_t out[4]) {
    StoreCounts c;
    if (store_counts(st, &c, NULL))
        __builtin_trap();
    int64_t v[4] = {c.prompts, c.images, c.images_missing, c.ratings};
    memcpy(out, v, sizeof v);
    store_counts_deinit(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!root[0]) {
        snprintf(root, sizeof root, "/tmp/easel-fuzz-images-%d", (int)getpid());
        char sub[96];
        snprintf(sub, sizeof sub, "%s/1", root);
        mkdir(root, 0700);
        mkdir(sub, 0700);
    }
    if (size < 1)
        return 0;
    /* A fresh store per input, so that a finding replays alone. */
    st = store_open(":memory:", NULL);
    ImportReport rep;
    if (!st || import_path(st, IMPORT_PROMPTS, "tests/fixtures/import/prompts_good.csv", NULL,
                           &rep, NULL))
        __builtin_trap();
    import_report_deinit(&rep);
    static const char *const ext[] = {"png", "jpg", "bmp", "webp"};
    snprintf(file, sizeof file, "%s/1/7.%s", root, ext[data[0] % 4]);
    FILE *f = fopen(file, "wb");
    if (!f) {
        store_close(st);
        return 0;
    }
    fwrite(data + 1, 1, size - 1, f);
    fclose(f);
    int64_t before[4], after[4];
    counts(before);
    ImportOptions o = {.annotator = "fuzz"};
    Err err = {0};
    int rc = import_path(st, IMPORT_IMAGES, root, &o, &rep, &err);
    counts(after);
    if (rc) {
        if (rep.n_errors == 0 || memcmp(before, after, sizeof before) != 0)
            __builtin_trap();
    } else if (after[1] - before[1] > 1 || after[0] != before[0] || after[3] != before[3]) {
        __builtin_trap();
    }
    import_report_deinit(&rep);
    store_close(st);
    unlink(file);
    return 0;
}
