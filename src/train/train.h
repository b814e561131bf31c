/* train — training a five-head reward model from the store, and using its checkpoints.
 *
 * Data: ratings averaged over annotators (or one annotator's), turned into pairs of images of
 * the same prompt (objective `pairs`), or the per-image means themselves (objective
 * `regression`); or pairs imported into the store (mode `pairs`). Prompts, not pairs, are
 * split into train and validation sets, deterministically from the seed, so no prompt's
 * images are on both sides.
 *
 * Features come from an encoder (encoder.h) and are cached in the store; the model
 * (model_reward.h) trains on them. Every step writes train metrics, every epoch validation
 * metrics per head (accuracy, binary F1, loss) to the store (store_runs.h), so any process
 * sees the run live. Checkpoints: `best/` (highest mean per-head validation F1),
 * `checkpoint-N/` (every save_every epochs, the newest save_total_limit kept), `final/`,
 * each with model.safetensors (the original's tensor names), config.json and metrics.json,
 * written into a temporary folder and renamed into place. `.resume/` holds the optimizer state and RNG after every epoch, so
 * an interrupted run continues to the same final weights as an uninterrupted one.
 *
 * Thread safety: train_run uses the Store it is given from the calling thread only.
 */
#ifndef EASEL_TRAIN_H
#define EASEL_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "encoder.h"
#include "err.h"
#include "evalrm.h"
#include "pairs.h"
#include "progress.h"
#include "store.h"

#define TRAIN_N_HEADS 5

/* The name of output K: for K < TRAIN_N_HEADS the head's aspect (reward_head_names, the one
 * list: the checkpoint format names the tensors "heads.<aspect>.*", and a new store's aspects
 * table holds the same five in the same positions), for K == TRAIN_N_HEADS "combined". */
const char *train_output_name(int k);

typedef struct TrainConfig {
    char mode[16];           /* "multihead": pairs from ratings; "pairs": imported pairs */
    char objective[16];      /* "pairs" (Bradley–Terry) or "regression" (MSE on 0..10) */
    char encoder[64];        /* "classic", "clip:NAME" */
    char fusion[24];         /* "concat", "add", "cross_attention" */
    int epochs;              /* 10 */
    int batch_size;          /* 8 */
    double learning_rate;    /* 1e-4 */
    double weight_decay;     /* 0.01 */
    double min_rating_diff;  /* 0.5 */
    double val_fraction;     /* share of prompts held out: 0.2 */
    int save_every;          /* epochs between checkpoint-N/ (0 = never): 2 */
    int save_total_limit;    /* newest checkpoint-N/ kept, older ones deleted (0 = keep all):
                              * 2, as Hugging Face's save_total_limit; best/, final/ stay */
    int patience;            /* epochs without a better val F1 before stopping (0 = off) */
    int threads;             /* engine threads (0 = all cores) */
    char device[24];         /* "auto", "cpu", "cuda", "cuda:N" (backend_open) */
    uint64_t seed;           /* split, init, shuffling, dropout */
    double irrelevant_weight;/* seed 003's irrelevant-prompt loss weight (0 = off) */
    double dropout;          /* 0.1 as the original */
    int64_t annotator_id;    /* 0 = mean over annotators; else that annotator only */
    char output[1024];       /* run folder */
    char run_name[128];      /* "" = generated */
} TrainConfig;

/* The training options, written once. The train-reward job kind's parameters (and so `easel
 * train`'s flags, its --help and the TUI's form), train_config_defaults, the whole-number
 * ranges that reward_train_config and train_config_check enforce, and the job parameters'
 * reading into a TrainConfig all expand this table; the original's flags first, with the
 * original's defaults (origin-facts.md).
 *   X(field, name, TYPE, default, lo, hi, help, choices)
 * FIELD is the TrainConfig member, NAME the flag / parameter, TYPE one of INT, FLOAT, STRING,
 * CHOICE (JOB_PARAM_<TYPE>), DEFAULT a literal of that type, LO..HI the closed range of an
 * INT (floats are checked by train_config_check, whose conditions are not closed ranges),
 * CHOICES "a|b" for a CHOICE, else NULL. Three parameters are not TrainConfig fields and are
 * the job kind's own: annotator (a name, resolved in the store), output (default runs/NAME
 * beside the store) and name (default generated). */
#define TRAIN_OPTIONS(X)                                                                      \
    X(mode, "mode", CHOICE, "multihead", 0, 0,                                                \
      "multihead: pairs derived from ratings; pairs: imported preference pairs",              \
      "multihead|pairs")                                                                      \
    X(objective, "objective", CHOICE, "pairs", 0, 0,                                          \
      "pairs: Bradley-Terry loss on pairs; regression: MSE on the 0-10 ratings",              \
      "pairs|regression")                                                                     \
    X(encoder, "encoder", STRING, "classic", 0, 0, "feature encoder: classic, or clip:NAME",  \
      NULL)                                                                                   \
    X(fusion, "fusion-method", CHOICE, "concat", 0, 0, "how image and prompt features combine",\
      "concat|add|cross_attention")                                                           \
    X(epochs, "epochs", INT, 10, 1, 100000, "passes over the training pairs", NULL)           \
    X(batch_size, "batch-size", INT, 8, 1, 65536, "pairs (or images) per step", NULL)         \
    X(learning_rate, "learning-rate", FLOAT, 1e-4, 0, 0, "AdamW learning rate", NULL)         \
    X(weight_decay, "weight-decay", FLOAT, 0.01, 0, 0, "AdamW decoupled weight decay", NULL)  \
    X(min_rating_diff, "min-rating-diff", FLOAT, 0.5, 0, 0,                                   \
      "smallest rating difference that makes a preference", NULL)                             \
    X(val_fraction, "val-fraction", FLOAT, 0.2, 0, 0,                                         \
      "share of prompts held out for validation", NULL)                                       \
    X(save_every, "save-every", INT, 2, 0, 100000,                                            \
      "write checkpoint-N/ every N epochs (0: never)", NULL)                                  \
    X(save_total_limit, "save-total-limit", INT, 2, 0, 100000,                                \
      "keep the newest N checkpoint-N/ folders, delete older ones (best/ and final/ always "  \
      "stay; 0: keep all)", NULL)                                                             \
    X(patience, "patience", INT, 0, 0, 100000,                                                \
      "stop after N epochs without a better validation F1 (0: never)", NULL)                  \
    X(seed, "seed", INT, 42, 0, INT64_MAX, "seed of the split, init, shuffling and dropout",  \
      NULL)                                                                                   \
    X(threads, "threads", INT, 0, 0, 4096, "CPU threads (0: all cores)", NULL)                \
    X(device, "device", STRING, "auto", 0, 0,                                                 \
      "where the model runs: auto (a GPU when there is one), cpu, cuda or cuda:N", NULL)      \
    X(irrelevant_weight, "irrelevant-weight", FLOAT, 0, 0, 0,                                 \
      "weight of the irrelevant-prompt loss (seed 003's robustness trick; 0: off)", NULL)     \
    X(dropout, "dropout", FLOAT, 0.1, 0, 0, "dropout in the heads", NULL)

/* The table's defaults (output "runs/reward", no annotator, no run name). */
void train_config_defaults(TrainConfig *cfg);

/* The closed range of the INT option NAME of TRAIN_OPTIONS; ERR_NOTFOUND for any other. */
int train_option_int_range(const char *name, long long *lo, long long *hi);

/* Check values and combinations; ERR_USAGE naming the flag. */
int train_config_check(const TrainConfig *cfg, Err *err);

/* The config as compact JSON (new string, free()), and back (defaults for missing keys,
 * then train_config_check). */
char *train_config_json(const TrainConfig *cfg);
int train_config_parse(TrainConfig *cfg, const char *json, Err *err);

/* Hooks from whoever runs the training (the job kind, the CLI). All optional. */
typedef struct TrainHooks {
    Progress progress;       /* progress in steps; cancel stops at the next step */
    /* Called (with progress.user) after each epoch's resume state is on disk, with a JSON
     * the caller stores (the job's checkpoint); RESUME (below) gives it back after an
     * interruption. */
    int (*resume_point)(void *user, const char *json, Err *err);
    const char *resume;      /* JSON from resume_point, or NULL for a fresh run */
    /* Called (with progress.user) with one line when the model's device differs from the one
     * asked for (--device cuda on a machine without a GPU runs on the CPU). NULL: the line
     * goes where progress lines go. */
    void (*device_note)(void *user, const char *note);
    int64_t job_id;          /* recorded in the run (0 = none) */
} TrainHooks;

/* Train. Creates a run in the store (or reopens it when resuming), writes metrics and
 * checkpoints, sets the run's state at the end. *run_id (may be NULL) gets the run id as
 * soon as it exists. Returns 0, ERR_CANCELLED (resume state kept), or another ERR_*. */
int train_run(Store *st, const TrainConfig *cfg, const TrainHooks *hooks, int64_t *run_id,
              Err *err);

/* Bytes the files below folder PATH occupy on disk (allocated blocks, as du counts them);
 * 0 when it does not exist. */
uint64_t train_dir_disk_usage(const char *path);

/* Parse a resume JSON (from resume_point) back into the run folder; for `easel train
 * --resume`: the JSON is also written to OUTPUT/.resume/resume.json. New string or NULL. */
char *train_resume_read(const char *output, Err *err);

/* ---- data, pure ---- */

/* Mark which of N prompt ids go to validation: a seeded shuffle of the distinct ids, the
 * first round(val_fraction * n_distinct) of them (at least 1 when there are 2 or more
 * prompts and val_fraction > 0; never all of them). is_val[i] is set for every i whose
 * prompt is held out. Returns the number of distinct validation prompts. */
size_t train_split_prompts(const int64_t *prompt_ids, size_t n, double val_fraction,
                           uint64_t seed, uint8_t *is_val);

/* A training pair in the original's orientation: img_a is the lower image id. */
typedef struct TrainPair {
    int64_t prompt_id;
    int64_t img_a;
    int64_t img_b;
    float label[TRAIN_N_HEADS]; /* 1: a preferred, 0: b preferred, 0.5: no preference */
    float label_combined;       /* mean of the five labels (the original's soft target) */
    float label_overall;        /* the combined pair (1: a preferred, 0: b, 0.5: none): what
                                 * validation scores the combined output against, the rule
                                 * of train_eval */
} TrainPair;

/* Group pairs from pairs_derive (per aspect, and the combined ones when given) into one
 * TrainPair per image pair with at least one non-neutral head, sorted by (prompt, img_a,
 * img_b). Aspects beyond TRAIN_N_HEADS are ignored; a combined pair sets label_overall.
 * *out is the caller's (free). */
void train_pairs_group(const Pair *p, size_t n, TrainPair **out, size_t *n_out);


/* ---- unreadable images: skipped, counted, named once ---- */

/* Training, evaluation and scoring skip an image whose file cannot be read, decoded or
 * encoded, and say so once at the end: how many, the first few names, the first reason. */
#define TRAIN_SKIP_NAMES 3
typedef struct TrainSkipped {
    size_t n;                                /* distinct images skipped */
    char names[TRAIN_SKIP_NAMES][160];       /* the first few, as the user knows them */
    char reason[ERR_MSG_LEN];                /* the first one's error */
} TrainSkipped;

/* Is an error of this code one a bad image file causes (missing, unreadable, not decodable:
 * ERR_IO, ERR_NOTFOUND, ERR_FORMAT, ERR_DENIED)? Anything else (the store, memory, a
 * cancel) stops the run instead. */
int train_err_is_unreadable(int code);

/* Count NAME (a path) with REASON (may be NULL); callers add each image once. */
void train_skipped_add(TrainSkipped *s, const char *name, const char *reason);

/* Can ENC read, decode and encode the image file PATH (without the store's cache)? 0, or
 * the error that says why not. Tells a bad image (skipped) from a failure elsewhere (the
 * cache, the store: the run stops) after encoder_embed_image failed. */
int train_image_probe(Encoder *enc, const char *path, Err *err);

/* "skipped 5 unreadable images (a.png, b.png, c.png and 2 more): REASON" into BUF; "" when
 * none was skipped. */
void train_skipped_text(const TrainSkipped *s, char *buf, size_t n);

/* Where a reward model runs (src/engine/backend.h): SPEC is "auto", "cpu", "cuda" or
 * "cuda:N" (NULL or "" = auto), THREADS the CPU backend's threads (0 = all cores). Opening
 * fills NOTE (one line saying why a cuda request runs on the CPU, "" when there is nothing to
 * say: print it) and NAME (the backend, "cpu (8 threads)", "cuda:0 (NVIDIA ...)"). */
typedef struct TrainDevice {
    const char *spec;
    int threads;
    char note[320];
    char name[160];
} TrainDevice;

/* ---- using a checkpoint: scoring and evaluation (train_eval.c) ---- */

/* A checkpoint folder (config.json + model.safetensors) loaded with its encoder. */
typedef struct RewardCkpt RewardCkpt;

/* Open checkpoint folder DIR (best/, final/, checkpoint-N/) into *out. ST (may be NULL) is
 * used for the encoder's model registry and the embedding cache. THREADS 0 = all cores.
 * Returns 0, or ERR_* (*out NULL) with err naming the file when the folder, its config or its
 * weights are missing or malformed. */
int train_ckpt_open(Store *st, const char *dir, int threads, RewardCkpt **out, Err *err);
/* The same on the device DEV says (may be NULL: auto on all cores), which gets the note and
 * the backend's name. train_ckpt_open is this with {cpu, THREADS}: the callers that hold no
 * GPU of the scheduler (the Annotate queue's order, tests) stay on the CPU. */
int train_ckpt_open_on(Store *st, const char *dir, TrainDevice *dev, RewardCkpt **out,
                       Err *err);
void train_ckpt_free(RewardCkpt *c); /* NULL allowed */
/* Absolute path of the folder (the scores table's key). Borrowed. */
const char *train_ckpt_path(const RewardCkpt *c);
const char *train_ckpt_encoder(const RewardCkpt *c);

/* Scores of the image file PATH (SHA256: its hash if known, else NULL) under PROMPT (may be
 * ""): out[0..4] the heads, out[5] the combined score. Features are cached in ST. */
int train_ckpt_score(RewardCkpt *c, Store *st, const char *path, const char *sha256,
                     const char *prompt, float out[TRAIN_N_HEADS + 1], Err *err);

/* 0 when the image file PATH can be read, decoded and encoded for C (cache not used), else
 * the error saying why not (train_err_is_unreadable tells whether it is the image's fault). */
int train_ckpt_probe(RewardCkpt *c, const char *path, Err *err);

/* Evaluation of a checkpoint on preference pairs.
 *
 * One rule for both sources of pairs (a pairs file, or pairs derived from the store's
 * ratings exactly as `easel export pairs` derives them): a preference with an aspect counts
 * for that head only; a preference without one (aspect "combined", "" or absent: the
 * overall preference) counts for the combined score only. From ratings, the combined
 * preference compares the mean rating over the aspects rated on both images (pairs.h).
 * Each pair is presented in a canonical order, the image with the smaller sha256 first (the
 * label following), so F1 of "first preferred" has both classes whatever order the source
 * lists the images in; a store and its export therefore give the same numbers. */
typedef struct EvalReport {
    EvalStats st[TRAIN_N_HEADS + 1];  /* per head, then combined */
    size_t n_pairs;                   /* distinct image pairs evaluated */
    size_t n_labels;                  /* preferences evaluated (per head and combined) */
    size_t n_images;                  /* distinct images scored */
    size_t n_skipped_labels;          /* preferences left out: an image was unreadable */
    TrainSkipped skipped;             /* the unreadable images */
    char source[1100];                /* "pairs.jsonl", "ratings in STORE (min diff 0.5)" */
    char checkpoint[1100];            /* the checkpoint folder, absolute */
} EvalReport;

typedef struct EvalOptions {
    const char *pairs_file;  /* pairs.jsonl to evaluate; NULL = pairs of the store */
    double min_rating_diff;  /* for pairs derived from ratings */
    const char *split;       /* "all", "val", "train": with the checkpoint's seed (store pairs) */
    Progress progress;       /* in pairs; cancel stops between pairs */
    /* 1 (eval jobs): a pairs file's image paths must lie inside the workspace or under an
     * output root (trust_check_path), as the job's own paths: a worker reads them for
     * whoever queued the job. 0: the CLI, which reads as the user who runs it. */
    int job_paths;
    int64_t job_id;          /* the eval job that runs it (its run row names it); 0: the CLI */
} EvalOptions;

/* Evaluate checkpoint C on the pairs OPTS names. A pairs file's images need not be in the
 * store (they are encoded on the fly); its relative paths resolve against the file's folder,
 * then the current directory. Images that cannot be read are skipped (out->skipped); when
 * nothing is left to evaluate that is an error. Progress ends at total/total. Errors name
 * FILE:LINE. */
int train_eval(RewardCkpt *c, Store *st, const EvalOptions *opts, EvalReport *out, Err *err);

#endif
