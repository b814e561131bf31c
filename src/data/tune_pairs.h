/* tune_pairs — the preference pairs a generator fine-tuning run (`easel tune`) learns from,
 * whatever their source: a pairs.jsonl file, the store's ratings (per aspect, or combined with
 * a reward model's learned head weights), or the online loop's scored candidates.
 *
 * Every pair names its winner and loser image by path (absolute, or relative to the
 * workspace) and the prompt they were made from; ADPO's rejected context is a second prompt.
 * `line` is the source line (pairs file) for error messages, 0 otherwise.
 * Data layer. */
#ifndef EASEL_TUNE_PAIRS_H
#define EASEL_TUNE_PAIRS_H

#include <stddef.h>
#include <stdint.h>

typedef struct TunePair {
    char *prompt;      /* c+: the images' prompt text */
    char *prompt_neg;  /* ADPO's rejected context c-, or NULL (drawn from the other prompts) */
    char *path_w;      /* the preferred image (img_pos) */
    char *path_l;      /* the other one (img_neg) */
    int64_t image_w;   /* store image ids, 0 when not from the store */
    int64_t image_l;
    double weight;     /* 1.0 unless the source says otherwise */
    int line;          /* 1-based line of the pairs file, 0 for other sources */
} TunePair;

typedef struct TunePairs {
    TunePair *v; /* malloc'd array of n */
    size_t n;
} TunePairs;

/* Append one pair, copying its strings (NULL prompt_neg allowed). */
void tune_pairs_push(TunePairs *ps, const TunePair *p);
/* Free every string and the array; *ps is zeroed. NULL allowed. */
void tune_pairs_free(TunePairs *ps);

#endif
