/* tune_pairs_src — where a generator tuning run's pairs come from (doc/formats.md, "pairs.jsonl
 * for tuning"; doc/tuning.md):
 *   - a pairs file: the original's pairs.jsonl (tune_pairs_file.c);
 *   - the store's ratings, per aspect or combined with a reward model's learned head weights
 *     (tune_pairs_store.c).
 * Every TunePair's paths open from the current directory (absolute, or relative to it).
 * Data layer.
 */
#ifndef EASEL_TUNE_PAIRS_SRC_H
#define EASEL_TUNE_PAIRS_SRC_H

#include <stddef.h>

#include "err.h"
#include "store.h"
#include "tune_pairs.h"

/* ---- a pairs file ---- */

/* What a pairs file held besides its pairs. */
typedef struct TunePairsFileInfo {
    size_t lines;   /* non-blank lines (one pair each) */
    size_t pairs;   /* pairs returned */
    size_t neutral; /* label 0.5: no preference, skipped */
    size_t swapped; /* label < 0.5: img_neg was the preferred image */
} TunePairsFileInfo;

/* Read the pairs.jsonl at PATH: one JSON object per line with "prompt", "img_pos", "img_neg",
 * "label" (1.0 when absent: img_pos preferred; below 0.5 the images swap, so path_w is always
 * the preferred one; exactly 0.5 = no preference: skipped and counted), optional
 * "rating_pos/neg/diff" and "aspect" (read, not used). Relative image paths resolve against
 * BASE_DIR, or the file's folder when BASE_DIR is NULL; absolute ones are kept.
 * "prompt" is the text, or a prompt id ("prompt_N" or N, and "prompt_id" written by easel's
 * export): looked up in ST's prompts (ST may be NULL), then in a prompts.csv next to the pairs
 * file (prompt_id,prompt); an id-looking "prompt_N" that neither knows is an error, anything
 * else is the text itself.
 * Every image is checked to be a regular file that decodes (read and decoded in full, once
 * per distinct path, on several threads), and the two images of a pair must differ (path and
 * bytes). The first problem in line order is the error: ERR_FORMAT (or ERR_NOTFOUND for a
 * missing image) with "PATH:LINE: what is wrong; what to do". ERR_NOTFOUND/ERR_IO when PATH
 * cannot be read, ERR_FORMAT when it holds no pair at all. Writes nothing anywhere.
 * On success *OUT (zeroed first) holds the pairs in file order with `line` set, weight 1.0;
 * INFO (may be NULL) the counts. On error *OUT is empty. */
int tune_pairs_load_file_ex(Store *st, const char *path, const char *base_dir,
                            TunePairsFileInfo *info, TunePairs *out, Err *err);

/* tune_pairs_load_file_ex without a store or counts. */
int tune_pairs_load_file(const char *path, const char *base_dir, TunePairs *out, Err *err);

/* ---- the store ---- */

#define TUNE_N_HEADS 5 /* a reward model's heads: the first five aspects, in position order */

/* Pairs derived from the store's current ratings (retired images left out), mean over
 * annotators, by pairs.c's rule: two images of one prompt whose scores differ by MIN_DIFF or
 * more (and at all) make one pair, the higher-scored image the winner.
 *   ASPECT != NULL: that aspect's ratings (HEAD_WEIGHTS must be NULL);
 *   else the combined score over the aspects rated on both images: their plain mean when
 *   HEAD_WEIGHTS is NULL (pairs_derive's combined pair), else weighted by softmax(HEAD_WEIGHTS)
 *   (TUNE_N_HEADS values for aspect positions 0..4, as the reward model's combined score
 *   weighs its heads), Σ p_k r_k / Σ p_k over the aspects both images have; aspects past the
 *   fifth then weigh nothing.
 * Every pair's images are resolved as the store resolves paths and checked to decode; each
 * pair gets its prompt's text, image ids, weight 1.0, line 0. Order: prompt, then image ids.
 * Returns 0; ERR_USAGE (unknown aspect: the message lists the store's; both ASPECT and
 * HEAD_WEIGHTS); ERR_NOTFOUND (no pairs; an image not on disk); ERR_FORMAT (an image that does
 * not decode, a prompt without text); ERR_DB. Writes nothing. On error *OUT is empty. */
int tune_pairs_from_store(Store *st, const char *aspect, const double *head_weights,
                          double min_diff, TunePairs *out, Err *err);

/* P = softmax(W): the share of each head in a reward model's combined score. */
void tune_head_softmax(const double w[TUNE_N_HEADS], double p[TUNE_N_HEADS]);

/* The learned head weights (raw, before the softmax) of the reward model at CKPT: a
 * checkpoint folder of `easel train` (best/, final/, checkpoint-N/: its model.safetensors) or
 * a .safetensors file (the original's too), tensor `head_weights` (5 values, any float
 * dtype). Returns 0, or ERR_NOTFOUND/ERR_IO/ERR_FORMAT naming the file. */
int tune_reward_head_weights(const char *ckpt, double w[TUNE_N_HEADS], Err *err);

#endif
