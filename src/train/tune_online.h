/* tune_online — `easel tune --online`: the seeds' multi-head loop. Each round, with the
 * current adapter on (the run's one pipeline, tune_int.h), every prompt of a prompts.csv gets
 * `candidates` images from seeds derived from (seed, prompt, candidate); the reward model scores
 * each with its five heads and a combined score (its learned head weights, or the per-head
 * weights the user gives); the best and the worst candidate of each prompt make a pair (a
 * prompt whose best and worst tie gives none); `steps_per_round` optimizer steps of the
 * objective follow on those pairs. doc/tuning.md ("Online") is the user's guide.
 *
 * DESIGN
 *   - Candidates are written as OUT/round-R/{prompt_id}/{seed}.png (with OUT/round-R/
 *     scores.csv) and the pairs' latents are the VAE encoder's of those PNGs, as an offline
 *     run on the same files would have: what is trained on is exactly what was scored and
 *     kept (the pipeline's final latents are not exposed, and the 8-bit rounding of the
 *     PNG is far below the VAE's own reconstruction error).
 *   - Common random numbers: candidate J of prompt P has the same seed in every round
 *     (tune_online_seed has no round), so round R's candidates are round 1's noise through
 *     R−1 rounds of the adapter, and the round-over-round change of their mean reward
 *     measures the adapter, not a new draw of 16 noises (with seeds per round, that draw
 *     moved the mean as much as the adapter did).
 *   - Per round the store gets split "round" metrics at step R: reward_<head> and
 *     reward_combined, means over the round's candidates (the Monitor draws one line per
 *     head), plus "pairs"; OUT/rounds.jsonl the same. Each prompt's best candidate goes to the
 *     store's run_images (step (R−1)·K + 1, label "round R best: PROMPT"). The steps'
 *     metrics are the offline ones (split "train", step = the global step (R−1)·K + k).
 *   - checkpoint-S (S = R·K) after every round; final/ at the end. A run given an OUT with
 *     checkpoints resumes after the newest round: its candidates are regenerated from the
 *     restored adapter with the same seeds, so a resumed run equals an uninterrupted one bit
 *     for bit. A cancel stops within a step (or between candidates) and keeps no partial
 *     round: the next run redoes that round from its checkpoint.
 *   - Progress: unit "rounds", fractional (each candidate and each step advances it).
 * Thread safety: one run per thread. */
#ifndef EASEL_TUNE_ONLINE_H
#define EASEL_TUNE_ONLINE_H

#include "err.h"
#include "store.h"
#include "tune.h"

/* The online settings of C (c->online set): ERR_USAGE naming the flag. */
int tune_online_check(const TuneConfig *c, Err *err);

/* Parse "spatial=1,style=2" into W (heads not named: 0). ERR_USAGE naming the aspect. */
int tune_online_aspect_weights(const char *s, double w[5], Err *err);

/* The seed of candidate J of prompt P (0-based) in every round of a run seeded SEED. */
uint64_t tune_online_seed(uint64_t seed, int p, int j);

/* The online run (tune_run calls it when c->online). */
int tune_online_run(Store *st, const TuneConfig *c, const TuneHooks *h, Err *err);

#endif
