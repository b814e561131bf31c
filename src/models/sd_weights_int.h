/* sd_weights_int — what sd_weights.c (folders, reading), sd_weights_single.c (single-file
 * names, configs, writing) and sd_weights_lora.c (adapters) share. Not for models. */
#ifndef EASEL_SD_WEIGHTS_INT_H
#define EASEL_SD_WEIGHTS_INT_H

#include "sd_weights.h"

#define SD_MAX_SHARDS 64

/* One tensor as the models see it: T carries the diffusers name and shape and points into
 * the file's mapping (a row slice of SRC for a split in_proj, the same bytes with the 1x1
 * dims dropped for a conv-as-linear); TRANSPOSE says the file holds T's transpose. */
typedef struct SdEntry {
    StTensor t;
    const StTensor *src; /* the tensor in the file (its name is the file's name) */
    int file;            /* index into SdWeights.files */
    int transpose;
    char *own;           /* T's name when allocated here, else NULL */
} SdEntry;

typedef struct SdLora SdLora; /* sd_weights_lora.c */

struct SdWeights {
    SafeTensors *files[SD_MAX_SHARDS];
    int n_files;
    char *where;  /* the file, or the index for shards */
    char *config; /* config.json text or NULL */
    char *component;
    SdEntry *ents; /* sorted by diffusers name */
    size_t n_ents, cap_ents;
    SdLora **loras;
    int n_loras;
};

/* Append an entry (not yet sorted); NAME is copied when OWN_NAME, else borrowed. */
SdEntry *sd_weights_push(SdWeights *w, int file, const StTensor *src, const char *name,
                         int own_name);
/* Sort the entries by name; ERR_FORMAT naming both when two map to one name. */
int sd_weights_index(SdWeights *w, Err *err);
int sd_weights_add_file(SdWeights *w, const char *path, Err *err);

/* sd_weights_single.c: fill W (its file already added as files[0]) from the single-file
 * checkpoint's tensors of COMPONENT and make its config. */
int sd_weights_single_load(SdWeights *w, Err *err);

/* The single-file (SGM) name of each entry of a UNet (n_ents allocated strings, without the
 * model.diffusion_model. prefix), or NULL for the other components; the caller frees. */
char **sd_weights_single_sgm_names(const SdWeights *w);

/* sd_weights_lora.c: add the LoRA deltas of NAME (diffusers name, DST holding the base
 * weight of SHAPE) in place. */
int sd_weights_lora_apply(SdWeights *w, const char *name, int n_dims, const int64_t *shape,
                          float *dst, Err *err);
void sd_weights_lora_free(SdLora *l);
/* Whether an adapter added to W changes the weight NAME; whether W has any adapter at all
 * (sd_weights_write_single_lora; adio16). */
int sd_weights_lora_targets(const SdWeights *w, const char *name);
int sd_weights_lora_any(const SdWeights *w);

/* PEFT's alpha_pattern PATTERN (a JSON object; sd_weights_lora.c, shared with lora_file.c):
 * the first key K (in the file's order) for which MODULE matches ^(.*\.)?(K)$ gives *ALPHA;
 * none leaves *ALPHA as it is. A key that is no regular expression, or a value that is no
 * number: ERR_FORMAT naming FILE. */
struct json_t;
int sd_weights_pattern_alpha(struct json_t *pattern, const char *file, const char *module,
                             float *alpha, Err *err);

#endif
