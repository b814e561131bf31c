/* tune_eval — the evaluation of a generator adapter (issue 16): `easel tune-eval` and the
 * `tune-eval` job kind.
 *
 * Every held-out prompt × seed is generated twice from the same seed and settings — by the
 * base model into {out}/base/{prompt_id}/{seed}.png, then by the model with the adapter
 * merged at load (the generate kind's --lora) into {out}/adapter/... — each half through the
 * generation run (genrun.h: the metadata CSV, the store's images rows, resume: images already
 * there are kept). Every image is then scored with a reward checkpoint's five heads and its
 * combined score (train_ckpt_score), and per output (the five heads, then combined):
 *   win rate  = the share of (prompt, seed) pairs where the adapter's image scores strictly
 *               higher than the base model's (ties are not wins);
 *   mean gain = the mean over those pairs of adapter score minus base score;
 * plus both sides' mean scores. Pairs where either image is missing (a failed item) are left
 * out and counted.
 *
 * Results: the report (tune_eval_print: a table; tune_eval_json: JSON), {out}/tune-eval.json,
 * {out}/scores.csv (prompt_id,seed,side,spatial,...,combined per image) and a store run of
 * kind "tune-eval" (created running when the work starts, so the Monitor follows it; state
 * succeeded or failed at the end) whose metrics are split "eval", step 0: win_<head>,
 * gain_<head>, base_<head>, adapter_<head> for the five aspects and "combined", and split
 * "sys" "pairs" (pairs compared).
 *
 * Parameters (the kind's schema is also the command's flags): adapter (the adapter file, or a
 * folder holding pytorch_lora_weights.safetensors; FILE:SCALE scales it), model, prompts,
 * seeds, reward, out, device, steps, guidance, size, scheduler, negative, name.
 */
#ifndef EASEL_TUNE_EVAL_H
#define EASEL_TUNE_EVAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"
#include "jobkind.h"
#include "progress.h"
#include "store.h"

#define TUNE_EVAL_NO 6 /* the five heads, then combined */

extern const JobKind jobkind_tune_eval;

typedef struct TuneEvalPair {
    char *prompt_id;
    uint64_t seed;
    char *base_path, *adapter_path;
    float base[TUNE_EVAL_NO], adapter[TUNE_EVAL_NO];
} TuneEvalPair;

typedef struct TuneEvalReport {
    TuneEvalPair *pairs;       /* compared (both images there), in the prompts' order */
    size_t n;
    size_t missing;            /* (prompt, seed) items left out: an image failed */
    double win[TUNE_EVAL_NO];  /* 0..1 */
    double gain[TUNE_EVAL_NO];
    double base_mean[TUNE_EVAL_NO], adapter_mean[TUNE_EVAL_NO];
    int64_t run_id;            /* the tune-eval run (0: none recorded) */
    char *run_name;
    char *out;                 /* the output folder */
    char *adapter;             /* the adapter file used */
    char *reward;              /* the checkpoint folder used */
} TuneEvalReport;

/* Run the evaluation P (parameters of jobkind_tune_eval) on store ST for job JOB_ID (0: the
 * command). PR gets progress in images (3 × items: base, adapter, scoring), the cancel flag
 * and log lines (backend_open's device note among them). R is filled in every case
 * (tune_eval_report_deinit). 0, or ERR_USAGE (bad adapter, prompts, seeds), ERR_NOTFOUND (no
 * such checkpoint or model), ERR_CANCELLED, ERR_IO, ERR_DB; the run is then marked failed
 * (cancelled for ERR_CANCELLED). */
int tune_eval_execute(Store *st, int64_t job_id, const JobParams *p, const Progress *pr,
                      TuneEvalReport *r, Err *err);

/* The table `easel tune-eval` prints. */
void tune_eval_print(FILE *f, const TuneEvalReport *r);

/* The report as JSON (new string, free()): run, adapter, reward, out, pairs, missing, and per
 * output {win_rate, mean_gain, base_mean, adapter_mean} under "heads". */
char *tune_eval_json(const TuneEvalReport *r);

void tune_eval_report_deinit(TuneEvalReport *r); /* NULL allowed */

#endif
