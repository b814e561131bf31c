/* store_pairs — preference pairs kept in the store (imported from pairs.jsonl files). Pairs
 * derived from ratings are computed on demand by pairs.h and not stored.
 *
 * A stored pair follows easel's invariant: img_pos is the preferred image and label is the
 * probability that it is preferred (1.0 unless the file said otherwise; the importer swaps a
 * pair whose label was below 0.5). aspect is an aspect name, or "" for the overall/combined
 * preference.
 *
 * Thread safety: as store.h. Ownership: StorePair owns its strings (store_pairs_free).
 */
#ifndef EASEL_STORE_PAIRS_H
#define EASEL_STORE_PAIRS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "store.h"

typedef struct StorePair {
    int64_t id;
    int64_t prompt_id;     /* store id; 0 = none */
    int64_t img_pos;       /* store image id of the preferred image */
    int64_t img_neg;
    double label;          /* 0.5..1 */
    char *aspect;          /* aspect name, "" = combined */
    double rating_pos;     /* NAN if unknown */
    double rating_neg;
    double rating_diff;
    char *source;          /* "import" */
} StorePair;

/* Add P (id ignored) unless a pair with the same (img_pos, img_neg, aspect, source) exists:
 * identical → nothing happens (*added = 0); different label → ERR_CONFLICT. A pair of an
 * image with itself, or the opposite preference of a stored pair (img_pos and img_neg
 * swapped, same aspect; unless both labels are 0.5), is ERR_CONFLICT too. */
int store_pair_add(Store *st, const StorePair *p, int *added, Err *err);

/* All stored pairs in id order, except those with a retired image (store_image_retire),
 * which training and evaluation must not see. *out is the caller's: store_pairs_free(*out,
 * *n). */
int store_pairs_list(Store *st, StorePair **out, size_t *n, Err *err);
void store_pairs_free(StorePair *p, size_t n);

#endif
