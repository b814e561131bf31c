/* jobkinds_gen — see jobkinds_gen.h. */
#include "jobkinds_gen.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend.h"
#include "base.h"
#include "fmt_csv.h"
#include "fmt_safetensors.h"
#include "gpu.h"
#include "jobs.h"
#include "lora_file.h"
#include "pipeline.h"
#include "sd_weights.h"
#include "sha256.h"
#include "store_catalog.h"
#include "store_models.h"
#include "trust.h"
#include "unet.h"

static const JobParamSpec gen_params[] = {
    {"model", JOB_PARAM_STRING, "", "a registered diffusion model's name (easel models add "
     "diffusion), a diffusers folder or a single-file .safetensors checkpoint; default: the "
     "one registered", NULL},
    {"prompts", JOB_PARAM_PATH, "", "prompts.csv (prompt_id,prompt) to generate for", NULL},
    {"from-store", JOB_PARAM_BOOL, "false", "generate for every prompt in the store", NULL},
    {"prompt", JOB_PARAM_STRING, "", "one prompt's text", NULL},
    {"seeds", JOB_PARAM_STRING, "0,1", "seeds, comma-separated (each image: prompt x seed)", NULL},
    {"steps", JOB_PARAM_INT, "50", "denoising steps", NULL},
    {"guidance", JOB_PARAM_FLOAT, "7.5", "classifier-free guidance scale (<= 1: off)", NULL},
    {"size", JOB_PARAM_STRING, "", "WxH, multiples of 8; default the model's (SDXL 1024x1024, "
     "SD 1.x 512x512)", NULL},
    {"scheduler", JOB_PARAM_STRING, "", "euler, euler_a, ddim, dpmpp_2m, dpmpp_2m_karras or "
     "pndm; default the model's scheduler_config.json", NULL},
    {"negative", JOB_PARAM_STRING, "", "negative prompt", NULL},
    {"lora", JOB_PARAM_STRING, "", "LoRA .safetensors FILE[:SCALE] or adapter folder "
     "DIR[:SCALE] (its pytorch_lora_weights.safetensors); --lora again for another", NULL},
    {"latents", JOB_PARAM_PATH, "", "initial latents for every image (diffusers' latents=): a "
     ".safetensors file of one tensor (1,4,H/8,W/8) or (4,H/8,W/8), before the scheduler's "
     "init_noise_sigma; the seeds then drive only the ancestral noise", NULL},
    {"rng", JOB_PARAM_CHOICE, "torch-cpu", "initial noise as torch.Generator on this device "
     "makes it", "torch-cpu|torch-cuda"},
    {"out", JOB_PARAM_PATH, "generated", "output folder: {out}/{prompt_id}/{seed}.png and "
     "metadata.csv", NULL},
    {"device", JOB_PARAM_STRING, "auto", "where the model runs: auto, cpu, cuda or cuda:N", NULL},
    {"shard", JOB_PARAM_STRING, "", "K/N: only the K-th of N slices of the prompt x seed list",
     NULL},
    /* single-file checkpoints (issue 15, sf15) */
    {"tokenizer", JOB_PARAM_PATH, "", "tokenizer folder for a single-file --model (vocab.json + "
     "merges.txt, or a diffusers model folder); default: the registered model's, else a "
     "registered CLIP model's folder", NULL},
    {"prediction", JOB_PARAM_CHOICE, "model", "the scheduler's prediction type: the model's, "
     "epsilon or v (v-prediction)", "model|epsilon|v"},
    /* mem15: the weights' resident dtype (gen_weights_dtype) */
    {"dtype", JOB_PARAM_CHOICE, "auto", "the weights' dtype in memory: auto (bf16 on a GPU, f32 "
     "on the CPU), f32, f16 or bf16; activations and the VAE decode stay f32",
     "auto|f32|f16|bf16"},
    {NULL, 0, NULL, NULL, NULL},
};

static const char *const schedulers[] = {"euler", "euler_a", "ddim", "dpmpp_2m",
                                         "dpmpp_2m_karras", "pndm", NULL};

/* "0,1,7" into *seeds (malloc'd). */
static int parse_seeds(const char *s, uint64_t **seeds, size_t *n, Err *err) {
    *seeds = NULL;
    *n = 0;
    const char *p = s;
    while (p && *p) {
        char *end = NULL;
        errno = 0;
        if (*p < '0' || *p > '9')
            break;
        unsigned long long v = strtoull(p, &end, 10);
        if (errno || (*end && *end != ',') || v > (unsigned long long)INT64_MAX)
            break; /* qa15: 2^63 passed, and the store's signed seed column made it negative */
        for (size_t i = 0; i < *n; i++)
            if ((*seeds)[i] == v) { /* qa15: one image, not two rows of it */
                free(*seeds);
                *seeds = NULL;
                *n = 0;
                return err_set(err, ERR_USAGE, "--seeds %s: seed %llu is given twice", s, v);
            }
        *seeds = xrealloc(*seeds, (*n + 1) * sizeof **seeds);
        (*seeds)[(*n)++] = v;
        p = *end ? end + 1 : end;
        if (*end == ',' && !*p)
            break;
        if (!*end) {
            p = NULL;
            break;
        }
    }
    if (p || *n == 0) {
        free(*seeds);
        *seeds = NULL;
        *n = 0;
        return err_set(err, ERR_USAGE, "--seeds %s: expected whole numbers from 0 to "
                       "9223372036854775807 separated by ',' (e.g. 0,1)", s);
    }
    return 0;
}

static int parse_size(const char *s, int *w, int *h, Err *err) {
    *w = *h = 0;
    if (!*s)
        return 0;
    char *end = NULL;
    long a = strtol(s, &end, 10), b = 0;
    int ok = end != s && (*end == 'x' || *end == 'X');
    if (ok) {
        const char *q = end + 1;
        b = strtol(q, &end, 10);
        ok = end != q && !*end && a >= 8 && b >= 8 && a <= 4096 && b <= 4096 && a % 8 == 0 &&
             b % 8 == 0;
    }
    if (!ok) /* the pipeline takes any multiple of the VAE's scale (8), as diffusers */
        return err_set(err, ERR_USAGE, "--size %s: expected WxH, each a multiple of 8 from 8 "
                       "to 4096 (e.g. 1024x1024)", s);
    *w = (int)a;
    *h = (int)b;
    return 0;
}

/* "a.safetensors:0.8,b.safetensors" into *out (paths malloc'd). A folder stands for the
 * adapter file in it, DIR/pytorch_lora_weights.safetensors, as easel tune and diffusers'
 * save_lora_weights write it. */
static int parse_loras(const char *s, SdLora **out, int *n, Err *err) {
    *out = NULL;
    *n = 0;
    if (!*s)
        return 0;
    char *copy = xstrdup(s);
    int rc = 0;
    for (char *tok = strtok(copy, ","); tok && !rc; tok = strtok(NULL, ",")) {
        float scale = 1.0f;
        char *colon = strrchr(tok, ':');
        if (colon) {
            char *end = NULL;
            double v = strtod(colon + 1, &end);
            if (end != colon + 1 && !*end && isfinite(v)) {
                scale = (float)v;
                *colon = '\0';
            }
        }
        struct stat sb;
        char *path = xstrdup(tok);
        if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) { /* an adapter folder */
            free(path);
            path = xasprintf("%s/" LORA_FILE_PEFT_WEIGHTS, tok);
            if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) {
                rc = err_set(err, ERR_USAGE, "--lora %s: a folder without %s (give an adapter "
                             "folder as easel tune or diffusers' save_lora_weights write it, "
                             "or the LoRA .safetensors file itself)", tok,
                             LORA_FILE_PEFT_WEIGHTS);
                free(path);
                break;
            }
        }
        if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) {
            rc = err_set(err, ERR_USAGE, "--lora %s: no such file or folder (expected "
                         "FILE[:SCALE] or DIR[:SCALE]: a LoRA .safetensors, or an adapter "
                         "folder with " LORA_FILE_PEFT_WEIGHTS ")", tok);
            free(path);
            break;
        }
        *out = xrealloc(*out, (size_t)(*n + 1) * sizeof **out);
        (*out)[*n].path = path;
        (*out)[(*n)++].scale = scale;
    }
    free(copy);
    if (rc) {
        for (int i = 0; i < *n; i++)
            free((char *)(*out)[i].path);
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

static void loras_free(SdLora *l, int n) {
    for (int i = 0; i < n; i++)
        free((char *)l[i].path);
    free(l);
}

/* The backend arena an image of W x H needs: the UNet's scratch at batch 2 (guidance) grows
 * with the latent area (doc/models.md: 107 MB at 32² latents, ~1.0 GB at 128², SDXL's widths,
 * the widest of the SD family), with room to spare; the VAE decodes in tiles within it. */
static size_t gen_arena_bytes(int width, int height) {
    size_t px = (size_t)(width / 8) * (size_t)(height / 8);
    return ((size_t)64 << 20) + px * ((size_t)96 << 10);
}

/* The model's own image size (its UNet's sample_size × 8), or 1024 x 1024 when unknown, and
 * its family as the pipeline names it (sd_pipeline_family: an SDXL UNet takes the text_time
 * conditioning, SD 2.x's cross-attends to 1024-wide text), read from its unet/config.json
 * before any worker loads it. */
static void model_defaults(const char *mpath, int *w, int *h, const char **family) {
    *w = *h = 1024;
    *family = "sd1";
    SdWeights *sw = NULL;
    UnetConfig uc;
    if (sd_weights_open(mpath, "unet", &sw, NULL) == 0 && sd_weights_config_json(sw) &&
        unet_config_parse(sd_weights_config_json(sw), "unet/config.json", &uc, NULL) == 0) {
        if (uc.sample_size > 0)
            *w = *h = uc.sample_size * 8;
        *family = uc.text_time ? "sdxl" : uc.cross_dim >= 1024 ? "sd2" : "sd1";
    }
    sd_weights_close(sw);
}

/* The one tensor of the safetensors file PATH as the (1, 4, h, w) latents of a W x H image
 * (f32, f16 or bf16 in the file): *out (malloc'd) or an error naming the file and the shape. */
static int load_latents(const char *path, int width, int height, float **out, Err *err) {
    *out = NULL;
    SafeTensors *st = safetensors_open(path, err);
    if (!st)
        return err ? err->code : ERR_FORMAT;
    int rc = 0;
    const StTensor *t = safetensors_count(st) == 1 ? safetensors_at(st, 0) : NULL;
    int64_t lh = height / 8, lw = width / 8;
    int shaped = t && ((t->n_dim == 4 && t->shape[0] == 1 && t->shape[1] == 4 &&
                        t->shape[2] == lh && t->shape[3] == lw) ||
                       (t->n_dim == 3 && t->shape[0] == 4 && t->shape[1] == lh &&
                        t->shape[2] == lw));
    if (!t)
        rc = err_set(err, ERR_FORMAT, "%s: --latents holds %zu tensors; give a file of one "
                     "(1, 4, %lld, %lld) tensor", path, safetensors_count(st), (long long)lh,
                     (long long)lw);
    else if (!shaped)
        rc = err_set(err, ERR_FORMAT, "%s: tensor %s is not (1, 4, %lld, %lld): the latents of "
                     "a %dx%d image (--size)", path, t->name, (long long)lh, (long long)lw,
                     width, height);
    if (!rc) {
        float *buf = xmalloc(sizeof(float) * (size_t)t->n_elem);
        rc = safetensors_read_f32(st, t, buf, (size_t)t->n_elem, err);
        for (int64_t i = 0; !rc && i < t->n_elem; i++)
            if (!isfinite(buf[i]))
                rc = err_set(err, ERR_FORMAT, "%s: tensor %s holds a non-finite value at "
                             "element %lld", path, t->name, (long long)i);
        if (rc)
            free(buf);
        else
            *out = buf;
    }
    safetensors_close(st);
    return rc;
}

static int gen_validate(const JobParams *p, Err *err) {
    int sources = (job_param_str(p, "prompts")[0] != 0) + job_param_bool(p, "from-store") +
                  (job_param_str(p, "prompt")[0] != 0);
    if (sources != 1)
        return err_set(err, ERR_USAGE, "generate: give exactly one of --prompts FILE, "
                       "--from-store or --prompt TEXT");
    uint64_t *seeds;
    size_t ns;
    int rc = parse_seeds(job_param_str(p, "seeds"), &seeds, &ns, err);
    free(seeds);
    if (rc)
        return rc;
    int64_t steps = job_param_int(p, "steps");
    if (steps < 1 || steps > 1000)
        return err_set(err, ERR_USAGE, "--steps %lld: expected 1 to 1000", (long long)steps);
    double g = job_param_float(p, "guidance");
    if (!isfinite(g) || g < 0 || g > 100)
        return err_set(err, ERR_USAGE, "--guidance %g: expected 0 to 100", g);
    int w, h;
    if ((rc = parse_size(job_param_str(p, "size"), &w, &h, err)))
        return rc;
    const char *sch = job_param_str(p, "scheduler");
    if (*sch) {
        int ok = 0;
        for (int i = 0; schedulers[i]; i++)
            ok |= strcmp(sch, schedulers[i]) == 0;
        if (!ok)
            return err_set(err, ERR_USAGE, "--scheduler %s: expected euler, euler_a, ddim, "
                           "dpmpp_2m, dpmpp_2m_karras or pndm", sch);
    }
    SdLora *l;
    int nl;
    if ((rc = parse_loras(job_param_str(p, "lora"), &l, &nl, err)))
        return rc;
    loras_free(l, nl);
    int kind, index;
    if ((rc = backend_spec_parse(job_param_str(p, "device"), &kind, &index, err)))
        return rc;
    const char *shard = job_param_str(p, "shard");
    if (*shard && (rc = gen_parse_shard(shard, &kind, &index, err)))
        return rc;
    return 0;
}

/* The work list: prompts (ext ids and texts, owned in *keep) x seeds. */
typedef struct Work {
    GenItem *items;
    size_t n;
    char **strs;  /* every string the items point to */
    size_t n_strs;
} Work;

static const char *work_str(Work *w, char *s) {
    w->strs = xrealloc(w->strs, (w->n_strs + 1) * sizeof *w->strs);
    w->strs[w->n_strs++] = s;
    return s;
}

static void work_add(Work *w, const char *id, const char *text, const uint64_t *seeds,
                     size_t ns) {
    const char *i2 = work_str(w, xstrdup(id)), *t2 = work_str(w, xstrdup(text));
    w->items = xrealloc(w->items, (w->n + ns) * sizeof *w->items);
    for (size_t k = 0; k < ns; k++)
        w->items[w->n++] = (GenItem){i2, t2, seeds[k]};
}

static void work_free(Work *w) {
    base_strv_free(w->strs, w->n_strs);
    free(w->items);
}

/* qa15: a prompt id names one folder and one prompt in the store, so before anything is
 * generated: an id on two lines of FILE with two texts, or in the store with another text
 * (store_prompt_add would refuse every image's row after it was made), is an error naming
 * the lines; a row repeated as it is gets skip[r] = 1 (its images once). */
typedef struct PromptRow {
    const char *id;
    size_t r;
} PromptRow;

static int prompt_row_cmp(const void *a, const void *b) {
    const PromptRow *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    return c ? c : (x->r > y->r) - (x->r < y->r);
}

static int prompts_check(Store *st, const char *file, const CsvTable *t, int ci, int ct,
                         char *skip, Err *err) {
    size_t n = t->n_rows ? t->n_rows - 1 : 0;
    PromptRow *v = xcalloc(n ? n : 1, sizeof *v);
    for (size_t r = 1; r < t->n_rows; r++)
        v[r - 1] = (PromptRow){t->rows[r].field[ci], r};
    qsort(v, n, sizeof *v, prompt_row_cmp);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        const CsvRow *row = &t->rows[v[i].r];
        if (i && strcmp(v[i - 1].id, v[i].id) == 0) {
            const CsvRow *first = &t->rows[v[i - 1].r];
            if (strcmp(first->field[ct], row->field[ct]))
                rc = err_set(err, ERR_FORMAT, "%s:%ld: prompt_id '%s' is on line %ld too, with "
                             "another text: give each prompt its own id (its images go to "
                             "{out}/%s/)", file, row->line, v[i].id, first->line, v[i].id);
            else
                skip[v[i].r] = 1; /* the same prompt again */
            continue;
        }
        StorePrompt sp = {0};
        if (st && store_prompt_by_ext(st, v[i].id, &sp, NULL) == 0 && sp.text && sp.text[0] &&
            strcmp(sp.text, row->field[ct]))
            rc = err_set(err, ERR_CONFLICT, "%s:%ld: prompt_id '%s' is in the store with "
                         "another text (\"%.80s\"): give this prompt another id, or its text "
                         "as the store has it", file, row->line, v[i].id, sp.text);
        store_prompt_deinit(&sp);
    }
    free(v);
    return rc;
}

static int load_work(Store *st, const JobParams *p, Work *w, Err *err) {
    uint64_t *seeds;
    size_t ns;
    int rc = parse_seeds(job_param_str(p, "seeds"), &seeds, &ns, err);
    if (rc)
        return rc;
    const char *file = job_param_str(p, "prompts"), *one = job_param_str(p, "prompt");
    if (*file) {
        CsvTable t = {0};
        if ((rc = fmt_csv_read(file, &t, err)))
            goto out;
        int ci = t.n_rows ? fmt_csv_column(&t.rows[0], "prompt_id") : -1;
        int ct = t.n_rows ? fmt_csv_column(&t.rows[0], "prompt") : -1;
        if (ci < 0 || ct < 0) {
            rc = err_set(err, ERR_FORMAT, "%s:1: expected the header prompt_id,prompt (the "
                         "original's prompts.csv)", file);
        }
        for (size_t r = 1; r < t.n_rows && !rc; r++) {
            const CsvRow *row = &t.rows[r];
            if (row->n <= (size_t)(ci > ct ? ci : ct)) {
                rc = err_set(err, ERR_FORMAT, "%s:%ld: expected %d fields, found %zu", file,
                             row->line, (ci > ct ? ci : ct) + 1, row->n);
            } else if (!gen_prompt_id_ok(row->field[ci])) {
                rc = err_set(err, ERR_FORMAT, "%s:%ld: prompt_id '%s' cannot name a folder: "
                             "use letters, digits, '_', '-' and '.'", file, row->line,
                             row->field[ci]);
            }
        }
        char *skip = xcalloc(t.n_rows ? t.n_rows : 1, 1);
        if (!rc)
            rc = prompts_check(st, file, &t, ci, ct, skip, err);
        for (size_t r = 1; r < t.n_rows && !rc; r++)
            if (!skip[r]) /* a row repeated as it is: once */
                work_add(w, t.rows[r].field[ci], t.rows[r].field[ct], seeds, ns);
        free(skip);
        fmt_csv_deinit(&t);
    } else if (*one) {
        StorePrompt sp = {0};
        char id[32];
        if (st && store_prompt_by_text(st, one, &sp, NULL) == 0 && gen_prompt_id_ok(sp.ext_id)) {
            base_strlcpy(id, sp.ext_id, sizeof id);
        } else {
            char hex[SHA256_HEX_LEN + 1];
            sha256_hex(one, strlen(one), hex);
            snprintf(id, sizeof id, "prompt-%.12s", hex);
        }
        store_prompt_deinit(&sp);
        work_add(w, id, one, seeds, ns);
    } else {
        StorePrompt *ps = NULL;
        size_t np = 0;
        if ((rc = store_prompts_list(st, &ps, &np, err)))
            goto out;
        for (size_t i = 0; i < np && !rc; i++) {
            if (!ps[i].text || !ps[i].text[0]) /* prompts known by id only have no text */
                continue;
            if (!gen_prompt_id_ok(ps[i].ext_id)) /* qa15: say where it is and what to do */
                rc = err_set(err, ERR_FORMAT, "generate --from-store: the store's prompt '%s' "
                             "has an id that cannot name a folder (letters, digits, '_', '-' "
                             "and '.' only): write the prompts out ('easel export prompts'), "
                             "give it another id and use --prompts FILE", ps[i].ext_id);
            else
                work_add(w, ps[i].ext_id, ps[i].text, seeds, ns);
        }
        store_prompts_free(ps, np);
        if (!rc && !w->n)
            rc = err_set(err, ERR_NOTFOUND, "generate --from-store: the store has no prompt "
                         "with text (easel import prompts FILE)");
    }
out:
    free(seeds);
    return rc;
}

/* The name of the registered diffusion model whose folder or file is PATH (symlinks
 * resolved), else NULL (malloc'd): a path to it gets its registered settings (a single
 * file's tokenizer and prediction), as a job queued with its name does (jobs make a name
 * that is also a path here absolute when queued). */
static char *registered_at(Store *st, const char *path) {
    char *real = realpath(path, NULL), *res = NULL;
    StoreModel *v = NULL;
    int n = 0;
    if (st && real && store_model_list(st, "diffusion", &v, &n, NULL) == 0) {
        for (int i = 0; i < n && !res; i++) {
            char *r2 = realpath(v[i].path, NULL);
            if (r2 && strcmp(r2, real) == 0)
                res = xstrdup(v[i].name);
            free(r2);
        }
    }
    store_model_list_free(v, n);
    free(real);
    return res;
}

/* The model's folder: a registered name, a folder, or the only registered one. */
int gen_model_resolve(Store *st, const char *m, char **path, char **name, Err *err) {
    *path = *name = NULL;
    if (*m) {
        StoreModel sm = {0};
        if (st && store_model_get(st, "diffusion", m, &sm, NULL) == 0) {
            *path = xstrdup(sm.path);
            *name = xstrdup(sm.name);
            store_model_deinit(&sm);
            return 0;
        }
        struct stat sb;
        if (stat(m, &sb) == 0 && (S_ISDIR(sb.st_mode) || S_ISREG(sb.st_mode))) {
            *path = xstrdup(m);
            *name = registered_at(st, m); /* qa15: a queued job's name made a path */
            if (!*name)
                *name = xstrdup(m);
            return 0;
        }
        return err_set(err, ERR_NOTFOUND, "--model %s: neither a registered diffusion model "
                       "nor a folder or single-file checkpoint (see 'easel models list'; "
                       "register one with 'easel models add diffusion PATH')", m);
    }
    StoreModel *v = NULL;
    int n = 0;
    int rc = st ? store_model_list(st, "diffusion", &v, &n, err) : 0;
    if (rc)
        return rc;
    if (n == 1) {
        *path = xstrdup(v[0].path);
        *name = xstrdup(v[0].name);
    } else {
        rc = err_set(err, ERR_USAGE, "generate: %s; name one with --model NAME|PATH",
                     n ? "several diffusion models are registered" :
                     "no diffusion model is registered (easel models add diffusion PATH)");
    }
    store_model_list_free(v, n);
    return rc;
}

/* ---- single-file checkpoints (issue 15, sf15) ------------------------------------------- */

/* The single file's tokenizer and prediction type (jobkinds_gen.h). */
void gen_model_extras(Store *st, const char *t, const char *pr, const char *mname,
                      const char *mpath, char **tok, char **pred) {
    *tok = *pred = NULL;
    if (t[0])
        *tok = xstrdup(t);
    if (pr[0] && strcmp(pr, "model"))
        *pred = xstrdup(pr);
    StoreModel sm = {0};
    if (st && store_model_get(st, "diffusion", mname, &sm, NULL) == 0 && sm.config) {
        json_t *j = json_loads(sm.config, 0, NULL);
        const char *jt = json_string_value(json_object_get(j, "tokenizer"));
        const char *jp = json_string_value(json_object_get(j, "prediction"));
        if (!*tok && jt)
            *tok = xstrdup(jt);
        if (!*pred && jp)
            *pred = xstrdup(jp);
        json_decref(j);
    }
    store_model_deinit(&sm);
    struct stat sb;
    if (!*tok && st && stat(mpath, &sb) == 0 && S_ISREG(sb.st_mode)) {
        StoreModel *v = NULL;
        int n = 0;
        if (store_model_list(st, "clip", &v, &n, NULL) == 0 && n > 0)
            *tok = xstrdup(v[0].path);
        store_model_list_free(v, n);
    }
}

/* The settings every worker makes its images with, and what each worker opens: its own
 * backend on its device and its own pipeline (gen_run calls these on the worker's thread). */
typedef struct GenShared {
    const char *mpath;
    const char *const *devices;  /* per worker: a backend_open spec */
    BackendConfig bcfg;
    SdPipelineConfig pcfg;
    SdGenParams base;
} GenShared;

typedef struct PipeGen {
    Backend *be;
    SdPipeline *pipe;
    const SdGenParams *base;
} PipeGen;

static int pipe_open(void *user, int worker, const Progress *log, void **gen_user, Err *err) {
    GenShared *gs = user;
    PipeGen *pg = xcalloc(1, sizeof *pg);
    pg->base = &gs->base;
    char note[256] = "";
    int rc = backend_open(gs->devices[worker], &gs->bcfg, &pg->be, note, sizeof note, err);
    if (note[0])
        progress_log(log, note);
    if (!rc)
        rc = sd_pipeline_open(gs->mpath, pg->be, &gs->pcfg, &pg->pipe, err);
    if (rc) {
        sd_pipeline_close(pg->pipe);
        backend_close(pg->be);
        free(pg);
        return rc;
    }
    *gen_user = pg;
    return 0;
}

static void pipe_close(void *user, int worker, void *gen_user) {
    (void)user;
    (void)worker;
    PipeGen *pg = gen_user;
    sd_pipeline_close(pg->pipe);
    backend_close(pg->be);
    free(pg);
}

static int pipe_image(void *user, const GenItem *it, const Progress *steps, uint8_t **rgb,
                      int w, int h, Err *err) {
    PipeGen *pg = user;
    SdGenParams g = *pg->base;
    g.prompt = it->prompt;
    g.seed = it->seed;
    g.width = w;
    g.height = h;
    int ow = 0, oh = 0;
    int rc = sd_pipeline_generate(pg->pipe, &g, steps, rgb, &ow, &oh, err);
    if (!rc && (ow != w || oh != h)) {
        free(*rgb);
        *rgb = NULL;
        rc = err_set(err, ERR_FORMAT, "the pipeline made %dx%d, not %dx%d", ow, oh, w, h);
    }
    return rc;
}

/* The devices the workers open, one worker each: the GPUs given (the job's from the
 * scheduler; the command's: every GPU NVML sees for auto and cuda, at most MAX_GPUS when
 * > 0), or the one --device names (cpu; cuda:N; auto or cuda on a machine without a GPU,
 * which is the CPU). *labels (gpu_id) when more than one GPU runs. Both malloc'd lists. */
static int gen_devices(const char *spec, const int *gpus, int n_gpus, char ***devices,
                       char ***labels) {
    int n = n_gpus > 0 ? n_gpus : 1;
    *devices = xcalloc((size_t)n + 1, sizeof **devices);
    *labels = NULL;
    if (n_gpus <= 0) {
        (*devices)[0] = xstrdup(spec);
        return 1;
    }
    if (n_gpus > 1)
        *labels = xcalloc((size_t)n + 1, sizeof **labels);
    for (int i = 0; i < n_gpus; i++) {
        (*devices)[i] = xasprintf("cuda:%d", gpus[i]);
        if (*labels)
            (*labels)[i] = xasprintf("%d", gpus[i]);
    }
    return n;
}

static void strv_free(char **v) {
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

/* mem15: --dtype. auto: bf16 on CUDA (every device the CUDA build runs on, sm_80 and up, has
 * bf16: the Makefile's gencode list), f32 on the CPU (its half-weight kernels widen every
 * weight on each use, and a CPU host has the memory for f32; doc/models.md "Memory"). */
static DType gen_weights_dtype(const char *param, int on_cuda) {
    if (strcmp(param, "f32") == 0)
        return DTYPE_F32;
    if (strcmp(param, "f16") == 0)
        return DTYPE_F16;
    if (strcmp(param, "bf16") == 0)
        return DTYPE_BF16;
    return on_cuda ? DTYPE_BF16 : DTYPE_F32;
}

/* The generation P describes on the devices given (JOB_ID 0: the command). */
/* qa15: PATH and, for a folder, everything in it (a model folder's unet/, vae/ ...; a
 * symbolic link in it may lead anywhere) must pass the trust rules: a job's worker reads
 * them. Folders are followed 6 levels deep (a diffusers model needs 2). */
static int trust_check_tree(Store *st, const char *what, const char *path, int depth,
                            Err *err) {
    int rc = trust_check_path(st, what, path, err);
    struct stat sb;
    DIR *d = !rc && depth < 6 && stat(path, &sb) == 0 && S_ISDIR(sb.st_mode) ? opendir(path)
                                                                            : NULL;
    for (struct dirent *e; d && !rc && (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *sub = xasprintf("%s/%s", path, e->d_name);
        rc = trust_check_tree(st, what, sub, depth + 1, err);
        free(sub);
    }
    if (d)
        closedir(d);
    return rc;
}

static int gen_execute(Store *st, int64_t job_id, int in_job, const JobParams *p,
                       const char *device, const int *gpus, int n_gpus, const Progress *pr,
                       GenRunReport *rep, Err *err) {
    memset(rep, 0, sizeof *rep);
    Work w = {0};
    char *mpath = NULL, *mname = NULL;
    SdLora *loras = NULL;
    int n_loras = 0;
    char *settings = NULL;
    float *latents = NULL;
    char **devices = NULL, **labels = NULL;
    int rc = gen_validate(p, err);
    if (!rc)
        rc = load_work(st, p, &w, err);
    if (!rc)
        rc = gen_model_resolve(st, job_param_str(p, "model"), &mpath, &mname, err);
    if (!rc)
        rc = parse_loras(job_param_str(p, "lora"), &loras, &n_loras, err);
    char *tok = NULL, *pred = NULL; /* sf15: what a single file lacks */
    if (!rc)
        gen_model_extras(st, job_param_str(p, "tokenizer"), job_param_str(p, "prediction"),
                         mname, mpath, &tok, &pred);
    if (!rc && in_job) /* qa15: every file of the model a job reads, and the tokenizer (a
                        * registered CLIP model's folder for a single file) */
        rc = trust_check_tree(st, "generate --model", mpath, 0, err);
    if (!rc && in_job && tok)
        rc = trust_check_tree(st, "generate tokenizer", tok, 0, err);
    for (int i = 0; !rc && in_job && i < n_loras; i++) /* the adapter file a folder stands for
                                                         * may be a link leading out */
        rc = trust_check_path(st, "generate --lora", loras[i].path, err);
    if (rc)
        goto out;
    int width, height, dw, dh;
    const char *family;
    if (sd_pipeline_model_defaults(mpath, pred, &dw, &dh, &family, NULL)) /* sf15: files too */
        model_defaults(mpath, &dw, &dh, &family);
    parse_size(job_param_str(p, "size"), &width, &height, NULL);
    if (!width) {
        width = dw;
        height = dh;
    }
    int shard_k = 0, shard_n = 0;
    if (job_param_str(p, "shard")[0])
        gen_parse_shard(job_param_str(p, "shard"), &shard_k, &shard_n, NULL);
    if (job_param_str(p, "latents")[0] &&
        (rc = load_latents(job_param_str(p, "latents"), width, height, &latents, err)))
        goto out;
    const char *sch = job_param_str(p, "scheduler"), *neg = job_param_str(p, "negative");
    /* the settings name the sampler that ran: the model's own when none was asked for (its
     * settings are the model's scheduler_config.json either way) */
    if (!*sch && !(sch = sd_pipeline_model_scheduler(mpath, pred)))
        sch = "";
    int steps = (int)job_param_int(p, "steps");
    double guidance = job_param_float(p, "guidance");
    json_t *js = json_pack("{s:s, s:s, s:s, s:i, s:f, s:s?, s:s?, s:s, s:i, s:i, s:s}",
                           "model", mname, "model_path", mpath, "family", family,
                           "steps", steps, "guidance", guidance,
                           "scheduler", *sch ? sch : NULL, "negative", *neg ? neg : NULL,
                           "rng", job_param_str(p, "rng"), "width", width, "height", height,
                           "generator", "easel");
    /* mem15: the weights' dtype, one for the run (an image depends on the settings only,
     * never on its worker): the GPUs' when GPUs are given and the machine has them (NVML), the
     * CPU's otherwise (--device cpu; auto or cuda without a GPU; GPUs handed out that the
     * machine does not have, which open as the CPU) */
    int on_cuda = 0;
    if (n_gpus > 0) {
        GpuSystem *gsys = gpu_open();
        on_cuda = gpu_count(gsys) > 0;
        gpu_close(gsys);
    }
    DType wdt = gen_weights_dtype(job_param_str(p, "dtype"), on_cuda);
    json_object_set_new(js, "dtype", json_string(dtype_name(wdt)));
    if (job_param_str(p, "latents")[0])
        json_object_set_new(js, "latents", json_string(job_param_str(p, "latents")));
    if (tok) /* sf15 */
        json_object_set_new(js, "tokenizer", json_string(tok));
    if (pred)
        json_object_set_new(js, "prediction", json_string(pred));
    if (n_loras) {
        json_t *arr = json_array();
        for (int i = 0; i < n_loras; i++)
            json_array_append_new(arr, json_pack("{s:s, s:f}", "path", loras[i].path,
                                                 "scale", (double)loras[i].scale));
        json_object_set_new(js, "loras", arr);
    }
    settings = json_dumps(js, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(js);
    int n_workers = gen_devices(device, gpus, n_gpus, &devices, &labels);
    /* the arena for the image size (the default 64 MiB fits only tiny models) */
    GenShared gs = {.mpath = mpath, .devices = (const char *const *)devices,
                    .bcfg = {.arena_bytes = gen_arena_bytes(width, height)},
                    .pcfg = {.weights = wdt, .loras = loras, .n_loras = n_loras,
                             .tokenizer = tok, .prediction = pred},
                    .base = {.negative = *neg ? neg : NULL, .steps = steps,
                             .guidance = (float)guidance, .scheduler = *sch ? sch : NULL,
                             .rng = strcmp(job_param_str(p, "rng"), "torch-cuda") == 0
                                        ? SD_RNG_TORCH_CUDA : SD_RNG_TORCH_CPU,
                             .latents = latents}};
    gs.pcfg.arena_bytes = gs.bcfg.arena_bytes;
    if (n_workers > 1) { /* a GPU that opens as the CPU (no driver) shares the cores */
        int cores = jobs_default_threads() / n_workers;
        gs.bcfg.threads = cores > 1 ? cores : 1;
    }
    /* one GPU and a shard: the multi-GPU layout's gpu_id column too (which GPU made each
     * row); several GPUs: each image's own */
    char gpu_id[16] = "";
    int sk = 0, sidx = 0;
    if (shard_n && n_gpus == 1 && backend_spec_parse(devices[0], &sk, &sidx, NULL) == 0)
        snprintf(gpu_id, sizeof gpu_id, "%d", sidx);
    GenRunOpts o = {.out_dir = job_param_str(p, "out"), .items = w.items, .n_items = w.n,
                    .gpu_id = gpu_id[0] ? gpu_id : NULL,
                    .shard_k = shard_k, .shard_n = shard_n, .width = width, .height = height,
                    .steps = steps, .guidance = guidance, .settings = settings, .store = st,
                    .job_id = job_id, .confine = in_job, .gen = pipe_image, .progress = pr,
                    .n_workers = n_workers, .open = pipe_open, .close = pipe_close,
                    .open_user = &gs, .worker_ids = (const char *const *)labels};
    if (n_workers > 1) {
        char line[64];
        snprintf(line, sizeof line, "generating on %d GPUs, one worker each", n_workers);
        progress_log(pr, line);
    }
    rc = gen_run(&o, rep, err);
out:
    strv_free(devices);
    strv_free(labels);
    free(tok);
    free(pred);
    free(latents);
    free(settings);
    loras_free(loras, n_loras);
    free(mpath);
    free(mname);
    work_free(&w);
    return rc;
}

int gen_job_execute(Store *st, const JobParams *p, int max_gpus, const Progress *pr,
                    GenRunReport *rep, Err *err) {
    return gen_job_execute_in(st, p, max_gpus, 0, pr, rep, err);
}

int gen_job_execute_in(Store *st, const JobParams *p, int max_gpus, int in_job,
                       const Progress *pr, GenRunReport *rep, Err *err) {
    /* auto and cuda: every GPU this machine has (NVML's count, as `easel gpus` shows them) */
    int kind = BACKEND_SPEC_AUTO, index = 0, n = 0;
    int *gpus = NULL;
    const char *d = job_param_str(p, "device");
    if (backend_spec_parse(d, &kind, &index, NULL) == 0 && kind != BACKEND_SPEC_CPU) {
        GpuSystem *g = gpu_open();
        int have = gpu_count(g);
        gpu_close(g);
        gpus = xcalloc((size_t)(have > 0 ? have : 1), sizeof *gpus);
        if (strncmp(d, "cuda:", 5) == 0) { /* that one, when it is there */
            if (index < have)
                gpus[n++] = index;
        } else {
            n = max_gpus > 0 && have > max_gpus ? max_gpus : have;
            for (int i = 0; i < n; i++)
                gpus[i] = i;
        }
    }
    int rc = gen_execute(st, 0, in_job, p, job_param_str(p, "device"), gpus, n, pr, rep, err);
    free(gpus);
    return rc;
}

static int gen_job_run(JobCtx *ctx, const JobParams *p, Err *err) {
    Progress h = job_progress_hooks(ctx);
    GenRunReport rep;
    int n_gpus = 0;
    const int *gpus = job_gpus(ctx, &n_gpus);
    const char *device = job_param_str(p, "device");
    if (strcmp(device, "cpu") == 0)
        n_gpus = 0;
    /* no GPU from the scheduler: auto is the CPU (a GPU only through the scheduler); cuda as
     * asked, which on a machine without a GPU runs on the CPU and says so. Given GPUs: one
     * worker on each, whatever cuda:N said (the scheduler hands out the free ones). */
    int rc = gen_execute(job_store(ctx), job_id(ctx), 1, p,
                         n_gpus == 0 && strcmp(device, "auto") == 0 ? "cpu" : device, gpus,
                         n_gpus, &h, &rep, err);
    job_log(ctx, "%zu images: %zu generated (%zu redone), %zu kept, %zu failed; %s", rep.total,
            rep.generated, rep.redone, rep.kept, rep.failed,
            rep.metadata ? rep.metadata : "no metadata written");
    if (rep.workers > 1 || rep.workers_lost)
        job_log(ctx, "%d workers, %d of them stopped early", rep.workers, rep.workers_lost);
    if (rep.failures)
        job_log(ctx, "failed prompts and their errors: %s", rep.failures);
    /* qa15: a job that made no image, every one failing (a setting no image can be made with,
     * e.g. too many steps for the scheduler), has not succeeded; some made: it has (the
     * failures are listed, and jobs after it get the images there are) */
    if (!rc && rep.failed && !rep.generated && !rep.kept)
        rc = err_set(err, ERR_FORMAT, "no image made: all %zu failed (the errors are in the "
                     "log and in %s)", rep.failed, rep.failures ? rep.failures : "failed.csv");
    gen_run_report_deinit(&rep);
    return rc;
}

/* cpu: none; cuda:N: one; auto and cuda: every free GPU (one worker each; `--gpus N` limits
 * it). */
static int gen_job_gpus(const JobParams *p) {
    const char *d = job_param_str(p, "device");
    if (strcmp(d, "cpu") == 0)
        return 0;
    return strncmp(d, "cuda:", 5) == 0 ? 1 : JOBKIND_GPUS_ALL;
}

const JobKind jobkind_generate = {
    .name = "generate",
    .summary = "generate images with a diffusion model: {out}/{prompt_id}/{seed}.png",
    .help = "Text to image with a Stable Diffusion / SDXL model over prompts x seeds. Writes\n"
            "{out}/{prompt_id}/{seed}.png, metadata.csv (the original's layout) and rows in\n"
            "the store's images table, ready to annotate. Resumable: images already there\n"
            "are kept after checking they decode. A failing prompt is logged, written to\n"
            "failed.csv and skipped. --device auto or cuda holds every free GPU (--gpus N:\n"
            "at most N) and runs one worker on each, pulling from one queue; cuda:N holds\n"
            "one. See doc/generate.md.\n\n"
            "example:\n  easel jobs add generate --model sdxl --from-store --seeds 0,1\n",
    .params = gen_params,
    .gpus = JOBKIND_GPUS_ALL,
    .refs = (const JobParamRefSpec[]){{"model", JOB_REF_DIFFUSION_MODEL},
                                      {"lora", JOB_REF_PATH_LIST},
                                      {NULL, JOB_REF_NONE}},
    .validate = gen_validate,
    .run = gen_job_run,
    .gpus_for = gen_job_gpus,
};
