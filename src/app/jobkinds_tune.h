/* jobkinds_tune — the `tune` job kind and what `easel tune` runs in the foreground: preference
 * fine-tuning of a diffusion model's UNet with a LoRA or DoRA adapter (src/train/tune.h;
 * doc/tuning.md).
 *
 * The kind's parameter schema is also the command's flags (src/cli/cli_tune.c). A job asks for
 * one GPU unless --device cpu or the model is small (a UNet file under 64 MiB: the tiny test
 * models train faster on the CPU than a GPU is handed over); without one it runs on the CPU.
 * It resumes from its run folder's newest checkpoint (the job's checkpoint records the folder
 * and step), and a cancel stops within one step, keeping a checkpoint of the last step.
 */
#ifndef EASEL_JOBKINDS_TUNE_H
#define EASEL_JOBKINDS_TUNE_H

#include "jobkind.h"
#include "tune.h"

extern const JobKind jobkind_tune;

/* P (the tune kind's parameters) into C on store ST (a registered model name resolved to its
 * folder; ST may be NULL). ERR_USAGE / ERR_NOTFOUND naming the flag. */
int tune_job_config(Store *st, const JobParams *p, TuneConfig *c, Err *err);

#endif
