/* store_ratings — the ratings: one current value per (image, annotator, aspect), 0..10, with
 * every replaced value kept in rating_history by a schema trigger. Nothing deletes a rating.
 *
 * Two ways to write:
 *   store_rating_set  an annotator's edit (the TUI): inserts, or replaces the current value;
 *                     the old value goes to history. The only way a value ever changes.
 *   store_rating_add  an import: inserts, or does nothing if the same value is there already;
 *                     a different existing value is ERR_CONFLICT, never overwritten.
 * Reads return plain arrays of StoreRating for agreement, export and training.
 *
 * Thread safety: as store.h. The writers run single statements; callers writing many rows wrap
 * them in store_begin/store_commit (one transaction, one fsync).
 */
#ifndef EASEL_STORE_RATINGS_H
#define EASEL_STORE_RATINGS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "store.h"

#define STORE_RATING_MIN 0.0
#define STORE_RATING_MAX 10.0

typedef struct StoreRating {
    int64_t image_id;
    int64_t prompt_id;     /* store id of the image's prompt; 0 = none */
    int64_t annotator_id;
    int64_t aspect_id;
    int aspect_pos;        /* dense 0-based position, as store_aspects_list numbers them */
    double value;          /* 0..10 */
    double seconds;        /* time spent on the image; NAN if unknown */
    double updated_at;     /* Unix time of the current value */
} StoreRating;

/* One entry of a rating's history, oldest first; the last entry is the current value. */
typedef struct StoreRatingEvent {
    double value;
    double seconds;        /* NAN if unknown */
    char *source;          /* 'tui', 'import:ratings.csv', ... owned */
    double set_at;         /* Unix time the value was entered */
} StoreRatingEvent;

/* Set the rating of (IMAGE, ANNOTATOR, ASPECT) to VALUE. SECONDS (NAN if unknown) is the time
 * spent; SOURCE says where it came from ("tui"). Setting the value it already has changes
 * nothing. *changed (may be NULL) is 1 if a row was inserted or the value replaced.
 * Returns 0, ERR_FORMAT if VALUE is not a number in 0..10, ERR_CONFLICT for an unknown
 * image/annotator/aspect id, ERR_DB/ERR_BUSY. */
int store_rating_set(Store *st, int64_t image_id, int64_t annotator_id, int64_t aspect_id,
                     double value, double seconds, const char *source, int *changed, Err *err);

/* Add a rating unless one exists: same value → nothing happens (*added = 0); different
 * value → ERR_CONFLICT with the existing value in the message ("... is already rated 7;
 * ratings are edited in the TUI, which keeps their history"). Other returns as
 * store_rating_set. */
int store_rating_add(Store *st, int64_t image_id, int64_t annotator_id, int64_t aspect_id,
                     double value, double seconds, const char *source, int *added, Err *err);

/* The current value of (IMAGE, ANNOTATOR, ASPECT): 0 and *value, ERR_NOTFOUND, ERR_DB. */
int store_rating_get(Store *st, int64_t image_id, int64_t annotator_id, int64_t aspect_id,
                     double *value, Err *err);

/* The current ratings of one image, all annotators, ordered by annotator id then aspect
 * position. *out is the caller's (free(*out)); *n may be 0. */
int store_ratings_of_image(Store *st, int64_t image_id, StoreRating **out, size_t *n, Err *err);

/* Every current rating of the images in use (retired images are left out: see
 * store_image_retire), ordered by prompt id, image id, annotator id, aspect position: what
 * training, evaluation, agreement, export and status read. *out is the caller's
 * (free(*out)). One read transaction: a consistent snapshot. */
int store_ratings_all(Store *st, StoreRating **out, size_t *n, Err *err);

/* History of one rating, oldest first, current value last; *n = 0 if it was never rated.
 * *out is the caller's: store_rating_events_free(*out, *n). */
int store_rating_history(Store *st, int64_t image_id, int64_t annotator_id, int64_t aspect_id,
                         StoreRatingEvent **out, size_t *n, Err *err);
void store_rating_events_free(StoreRatingEvent *ev, size_t n);

#endif
