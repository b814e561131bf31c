/* tune_pairs_int — private to src/data/tune_pairs_*.c: checking image files on several
 * threads. */
#ifndef EASEL_TUNE_PAIRS_INT_H
#define EASEL_TUNE_PAIRS_INT_H

#include <stddef.h>
#include <sys/types.h>

#include "err.h"
#include "sha256.h"

/* One image file to check: read in full and decoded (tune_img_check_all). */
typedef struct TuneImgCheck {
    char *path;               /* as it opens from the cwd (the caller's) */
    int ok;                   /* it decodes */
    int missing;              /* nothing at the path */
    dev_t dev;                /* the file, to tell two spellings of one path */
    ino_t ino;
    char sha[SHA256_HEX_LEN + 1];
    Err err;                  /* why not ok (not missing): names the file */
} TuneImgCheck;

/* Check V[0..N) on up to 8 threads (this one among them). */
void tune_img_check_all(TuneImgCheck *v, size_t n);

#endif
