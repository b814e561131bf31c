/* jobkinds_reward — the reward pipeline's job kinds (`embed`, `train-reward`, `eval-reward`,
 * `score`) and the work they share with the CLI (src/cli/cli_train.c), so `easel train` in the
 * foreground and a queued train-reward job run the same code with the same parameters.
 *
 * The kinds' parameter schemas use the CLI's flag names (--fusion-method, --batch-size...),
 * so the CLI parses its flags by handing them to job_params_parse.
 *
 * Thread safety: every function works on the Store it is given, from one thread.
 */
#ifndef EASEL_JOBKINDS_REWARD_H
#define EASEL_JOBKINDS_REWARD_H

#include <stdio.h>

#include "encoder.h"
#include "err.h"
#include "jobkind.h"
#include "progress.h"
#include "store.h"
#include "train.h"

extern const JobKind jobkind_embed;
extern const JobKind jobkind_train_reward;
extern const JobKind jobkind_eval_reward;
extern const JobKind jobkind_score;

/* A TrainConfig from parsed train-reward parameters. A default output folder is
 * runs/<run name> beside the store. */
int reward_train_config(const JobParams *p, Store *st, TrainConfig *cfg, Err *err);


/* Encode every image and prompt of the store with ENCODER into the cache. Images that
 * cannot be read or encoded are skipped and named in one warning line through h->log.
 * *n_images / *n_prompts (may be NULL) get the counts. */
int reward_embed_all(Store *st, const char *encoder, const Progress *h, size_t *n_images,
                     size_t *n_prompts, Err *err);
/* The same on DEV (encoder.h; NULL = the CPU); the device's note, if any, goes to h->log. */
int reward_embed_all_on(Store *st, const char *encoder, const EncoderDevice *dev,
                        const Progress *h, size_t *n_images, size_t *n_prompts, Err *err);

/* The checkpoint folder ARG names, as users type it: a checkpoint folder (best/, final/,
 * checkpoint-N/); a run folder (then its best/, else final/, else the newest
 * checkpoint-N/); either relative to the current folder or to the store's folder (where
 * runs/ lives); or the name or id of a run of the store (the same choice among its
 * checkpoints). New string (free), or NULL with ERR_NOTFOUND saying what was tried. */
char *reward_checkpoint_resolve(Store *st, const char *arg, Err *err);

/* DEV (both below; may be NULL: auto on all cores): where the model runs (spec, CPU threads);
 * it gets the note to print when a cuda request runs on the CPU, and the backend's name.
 * Evaluate CHECKPOINT (anything reward_checkpoint_resolve takes) per EvalOptions, record it
 * as an eval-reward run with metrics, and write JSON_PATH / CSV_PATH when not NULL/"". *out
 * gets the report. */
int reward_eval(Store *st, const char *checkpoint, const EvalOptions *o, TrainDevice *dev,
                const char *json_path, const char *csv_path, EvalReport *out, Err *err);

/* The evaluation table (what `easel eval` prints). */
void reward_eval_print(FILE *f, const char *checkpoint, const EvalReport *r);

/* Score image files (PATHS, N; folders are expanded to their image files) or, with N == 0,
 * every image of the store, with CHECKPOINT (as reward_eval). PROMPT overrides each image's
 * own prompt when not NULL. Scores of images the store knows are saved in its scores table; every score goes
 * to CSV (a stream, may be NULL) as image,spatial,icono,style,fidelity,material,combined.
 * *n_scored (may be NULL) = images scored. Images that cannot be read or decoded are
 * skipped and listed in *skipped (may be NULL); when none could be scored, ERR_IO.
 * JOB_PATHS (1 for jobs): files found under a folder must lie inside the workspace or under
 * an output root (a symlink there may lead anywhere); one outside fails the run. */
int reward_score(Store *st, const char *checkpoint, char *const *paths, int n,
                 const char *prompt, TrainDevice *dev, FILE *csv, const Progress *h,
                 int job_paths, size_t *n_scored, TrainSkipped *skipped, Err *err);

#endif
