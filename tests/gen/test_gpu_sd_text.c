/* The SD text conditioning on a given backend (SdTextOptions.backend, as the pipeline passes
 * its own) against the default, each encoder on a CPU backend of its own: "emu" (the CUDA
 * backend's ops with its kernels on the host emulation harness, gpu/backend_emu.c) everywhere,
 * "cuda:0" where a GPU is (make test-gpu; skipped without one, failed without one when
 * EASEL_TEST_GPU is set). The tiny SD and SDXL fixtures (tests/gen/fixtures/sdtext), a prompt
 * with a negative prompt and with clip_skip: prompt and negative embeddings, SDXL's pooled
 * ones, within 1e-4 (2e-3 on a device: its expf and FMA contraction). The encoders must run
 * on the backend given (clip_model_backend), not on one of their own.
 *
 * The emulator runs a host thread per GPU thread, and 77 positions take it minutes: its
 * test uses copies of the fixtures with 8 positions (the position embeddings' first 8 rows,
 * max_position_embeddings and model_max_length 8), which exercise the same ops. */
#define _XOPEN_SOURCE 700
#include <criterion/criterion.h>
#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend_impl.h"
#include "base.h"
#include "cuda.h"
#include "fmt_safetensors.h"
#include "sd_text.h"

#define FIX "tests/gen/fixtures/sdtext/"

/* ---- the fixtures with a shorter context ------------------------------------------------- */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void rm_tree(const char *dir) { nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

/* SRC (a JSON file) with KEY set to V, written to DST. */
static void json_with(const char *src, const char *dst, const char *key, int v) {
    json_error_t e;
    json_t *j = json_load_file(src, 0, &e);
    cr_assert(j, "%s: %s", src, e.text);
    json_object_set_new(j, key, json_integer(v));
    cr_assert_eq(json_dump_file(j, dst, JSON_INDENT(1)), 0, "%s", dst);
    json_decref(j);
}

static void link_to(const char *src, const char *dst) {
    char cwd[4096], *abs;
    cr_assert(getcwd(cwd, sizeof cwd));
    abs = xasprintf("%s/%s", cwd, src);
    cr_assert_eq(symlink(abs, dst), 0, "symlink %s", dst);
    free(abs);
}

/* The sdtext fixture SRC (a model folder) as DST with CTX positions. */
static void short_copy(const char *src, const char *dst, int ctx) {
    static const char *const enc[] = {"text_encoder", "text_encoder_2"};
    static const char *const tok[] = {"tokenizer", "tokenizer_2"};
    cr_assert_eq(mkdir(dst, 0755), 0, "%s", dst);
    char *a = xasprintf("%s/model_index.json", src), *b = xasprintf("%s/model_index.json", dst);
    link_to(a, b);
    free(a), free(b);
    for (int i = 0; i < 2; i++) {
        char *sd = xasprintf("%s/%s", src, enc[i]);
        if (access(sd, F_OK) != 0) {
            free(sd);
            continue;
        }
        char *dd = xasprintf("%s/%s", dst, enc[i]);
        cr_assert_eq(mkdir(dd, 0755), 0);
        a = xasprintf("%s/config.json", sd), b = xasprintf("%s/config.json", dd);
        json_with(a, b, "max_position_embeddings", ctx);
        free(a), free(b);
        a = xasprintf("%s/model.safetensors", sd), b = xasprintf("%s/model.safetensors", dd);
        Err err = {0};
        SafeTensors *st = safetensors_open(a, &err);
        cr_assert(st, "%s", err.msg);
        SafeTensorsWriter *w = safetensors_writer_new();
        for (size_t k = 0; k < safetensors_count(st); k++) {
            const StTensor *t = safetensors_at(st, k);
            int64_t shape[ST_MAX_DIMS];
            memcpy(shape, t->shape, sizeof shape);
            if (strstr(t->name, "position_embedding") && t->n_dim == 2)
                shape[0] = ctx; /* its first CTX rows */
            else if (strstr(t->name, "position_ids") && t->n_dim >= 1)
                shape[t->n_dim - 1] = ctx;
            cr_assert_eq(safetensors_writer_add(w, t->name, t->dtype, t->n_dim, shape, t->data,
                                                &err), 0, "%s", err.msg);
        }
        cr_assert_eq(safetensors_writer_save(w, b, &err), 0, "%s", err.msg);
        safetensors_writer_free(w);
        safetensors_close(st);
        free(a), free(b), free(sd), free(dd);

        sd = xasprintf("%s/%s", src, tok[i]), dd = xasprintf("%s/%s", dst, tok[i]);
        cr_assert_eq(mkdir(dd, 0755), 0);
        static const char *const files[] = {"vocab.json", "merges.txt",
                                            "special_tokens_map.json"};
        for (int f = 0; f < 3; f++) {
            a = xasprintf("%s/%s", sd, files[f]), b = xasprintf("%s/%s", dd, files[f]);
            link_to(a, b);
            free(a), free(b);
        }
        a = xasprintf("%s/tokenizer_config.json", sd);
        b = xasprintf("%s/tokenizer_config.json", dd);
        json_with(a, b, "model_max_length", ctx);
        free(a), free(b), free(sd), free(dd);
    }
}

/* ---- the comparison --------------------------------------------------------------------- */

typedef struct Cond {
    float *pe, *ne, *pp, *np;
    size_t TD, P;
} Cond;

static void cond_free(Cond *c) {
    free(c->pe), free(c->ne), free(c->pp), free(c->np);
}

/* The conditioning of DIR's encoders on BE (NULL: their own CPU backends) for PROMPT,
 * NEGATIVE and CLIP_SKIP, with guidance. */
static void encode(const char *dir, Backend *be, const char *prompt, const char *negative,
                   int clip_skip, Cond *c) {
    SdTextOptions o = {0};
    o.backend = be;
    SdText *t = NULL;
    Err err = {0};
    cr_assert_eq(sd_text_open(dir, &o, CLIP_WEIGHTS_F32, &t, &err), 0, "%s: %s", dir, err.msg);
    for (int i = 0; i < 2 && sd_text_encoder(t, i); i++)
        if (be)
            cr_assert(clip_model_backend(sd_text_encoder(t, i)) == be,
                      "%s: encoder %d is not on the backend given", dir, i);
        else
            cr_assert(clip_model_backend(sd_text_encoder(t, i)) != NULL);
    c->TD = (size_t)sd_text_context(t) * (size_t)sd_text_width(t);
    c->P = (size_t)sd_text_pooled_width(t);
    c->pe = xmalloc(c->TD * sizeof(float));
    c->ne = xmalloc(c->TD * sizeof(float));
    c->pp = c->P ? xmalloc(c->P * sizeof(float)) : NULL;
    c->np = c->P ? xmalloc(c->P * sizeof(float)) : NULL;
    cr_assert_eq(sd_text_encode_prompt(t, prompt, negative, 1, clip_skip, c->pe, c->ne, c->pp,
                                       c->np, &err),
                 0, "%s: %s", dir, err.msg);
    sd_text_free(t);
}

static void same(const char *what, const float *got, const float *want, size_t n, double tol) {
    double worst = 0, norm = 0;
    for (size_t i = 0; i < n; i++) {
        cr_assert(isfinite(got[i]), "%s [%zu]: %g", what, i, (double)got[i]);
        worst = fmax(worst, fabs((double)got[i] - want[i]));
        norm += (double)want[i] * want[i];
    }
    cr_assert(norm > 0, "%s: all zeros", what);
    cr_assert(worst <= tol, "%s: max abs difference %g from the CPU's (tolerance %g)", what,
              worst, tol);
}

/* BE against the CPU on the SD and SDXL fixtures, or their copies with CTX positions (0: as
 * they are); clip_skip 0, and 1 unless ONE_SKIP. */
static void compare(Backend *be, double tol, int ctx, int one_skip) {
    char tmp[] = "/tmp/easel-gpu-sd-text-XXXXXX";
    char *dirs[2];
    if (ctx) {
        cr_assert(mkdtemp(tmp));
        dirs[0] = xasprintf("%s/sd", tmp);
        dirs[1] = xasprintf("%s/sdxl", tmp);
        short_copy(FIX "sd", dirs[0], ctx);
        short_copy(FIX "sdxl", dirs[1], ctx);
    } else {
        dirs[0] = xstrdup(FIX "sd");
        dirs[1] = xstrdup(FIX "sdxl");
    }
    for (int d = 0; d < 2; d++) {
        for (int skip = 0; skip < (one_skip ? 1 : 2); skip++) {
            const char *prompt = "a red fox in the snow, 35mm";
            const char *neg = "blurry, low quality";
            Cond want, got;
            encode(dirs[d], NULL, prompt, neg, skip, &want);
            encode(dirs[d], be, prompt, neg, skip, &got);
            char what[128];
            snprintf(what, sizeof what, "%s clip_skip %d prompt embeds", dirs[d], skip);
            same(what, got.pe, want.pe, want.TD, tol);
            snprintf(what, sizeof what, "%s clip_skip %d negative embeds", dirs[d], skip);
            same(what, got.ne, want.ne, want.TD, tol);
            if (want.P) {
                snprintf(what, sizeof what, "%s clip_skip %d pooled", dirs[d], skip);
                same(what, got.pp, want.pp, want.P, tol);
                snprintf(what, sizeof what, "%s clip_skip %d negative pooled", dirs[d], skip);
                same(what, got.np, want.np, want.P, tol);
            }
            cond_free(&want);
            cond_free(&got);
        }
    }
    free(dirs[0]), free(dirs[1]);
    if (ctx)
        rm_tree(tmp);
}

Test(gpu_sd_text, emu_backend_matches_the_cpu, .timeout = 300) {
    Backend *be = NULL;
    Err err = {0};
    cr_assert_eq(backend_emu_open(NULL, &be, &err), 0, "%s", err.msg);
    compare(be, 1e-4, 8, 1);
    backend_close(be);
}

Test(gpu_sd_text, cuda_matches_the_cpu) {
    CudaDevice devs[4];
    int n = 0;
    char why[256];
    cuda_probe(devs, 4, &n, why, sizeof why);
    if (n == 0) {
        if (getenv("EASEL_TEST_GPU"))
            cr_assert_fail("EASEL_TEST_GPU set but no CUDA device: %s", why);
        cr_skip_test("no CUDA backend here: %s", why);
    }
    Backend *be = NULL;
    Err err = {0};
    cr_assert_eq(backend_open("cuda:0", NULL, &be, NULL, 0, &err), 0, "%s", err.msg);
    compare(be, 2e-3, 0, 0);
    backend_close(be);
}
