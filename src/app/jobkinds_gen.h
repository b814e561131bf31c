/* jobkinds_gen — the `generate` job kind and what `easel generate` runs in the foreground:
 * text-to-image with the pipeline (src/gen/pipeline.h) over a work list of prompts × seeds,
 * through the generation run (genrun.h: files, metadata CSV, store rows, resume, shards,
 * failures, cancel).
 *
 * The kind's parameter schema is also the command's flags (src/cli/cli_generate.c), so the
 * two cannot drift: model (a registered diffusion model's name, or a folder), prompts (a
 * prompts.csv), from-store, prompt, seeds, steps, guidance, size, scheduler, negative, lora
 * (FILE[:SCALE], several joined by ','), rng, out, device, shard.
 *
 * Progress is reported in images (unit "images") with the images in flight counting by their
 * steps, so a job's rate and ETA and the command's line come from one number.
 *
 * Devices: one worker per GPU (genrun.h, "Workers"), each opening its own backend and
 * pipeline on its thread. The job runs on the GPUs the scheduler gave it (--device auto and
 * cuda ask for every free one, cuda:N for one, cpu for none); given none, auto is the CPU.
 * The command runs on every GPU NVML sees for auto and cuda, on GPU N for cuda:N.
 */
#ifndef EASEL_JOBKINDS_GEN_H
#define EASEL_JOBKINDS_GEN_H

#include "genrun.h"
#include "jobkind.h"

extern const JobKind jobkind_generate;

/* Run the generation P describes on store ST in the foreground (`easel generate`): --device
 * auto and cuda run one worker on each GPU the machine has (NVML's count, at most MAX_GPUS
 * when > 0), cuda:N and cpu one worker. PR's log gets backend_open's notes (a cuda request
 * that runs on the CPU) and the workers' failures; its cancelled hook is also read from the
 * workers (genrun.h). REP is filled. */
int gen_job_execute(Store *st, const JobParams *p, int max_gpus, const Progress *pr,
                    GenRunReport *rep, Err *err);
/* The same for a job's run (IN_JOB 1: another kind's job, e.g. tune-eval's halves): the
 * model's files and tokenizer pass the trust rules and the images stay inside --out, as the
 * generate job's own (qa15). */
int gen_job_execute_in(Store *st, const JobParams *p, int max_gpus, int in_job,
                       const Progress *pr, GenRunReport *rep, Err *err);

/* The diffusion model M names: a registered model's name, a folder, or ("") the one model
 * registered. *PATH and *NAME new strings (free). 0, ERR_NOTFOUND, ERR_USAGE (none or several
 * registered), ERR_DB. (Also tune_eval's check before it writes anything.) */
int gen_model_resolve(Store *st, const char *m, char **path, char **name, Err *err);

/* What the model at MPATH (registered as MNAME, or not) lacks: the tokenizer (TOKENIZER when
 * not "", else the registered model's, else, for a single file, the first registered CLIP
 * model's folder) and the prediction type (PREDICTION unless "" or "model", else the
 * registered model's); *tok / *pred NULL when none (malloc'd). (Also the tune kind's.) */
void gen_model_extras(Store *st, const char *tokenizer, const char *prediction,
                      const char *mname, const char *mpath, char **tok, char **pred);

#endif
