/* The planted preference (issue 16's "Done when"): the tiny SD pipeline of tests/gen makes 16
 * images; pairs prefer the brighter half over the darker half; `easel tune`'s run (DPO, LoRA
 * on the attention, feed-forward and conv layers) learns it on the CPU in seconds:
 *   - held-out seeds render brighter with the adapter than without (the adapter file given to
 *     the pipeline as a LoRA, as `easel generate --lora` does);
 *   - the DPO margin computed independently of the trainer (plain unet_forward calls with and
 *     without the adapter, fresh timesteps and noise: (e_θ,w − e_ref,w) − (e_θ,l − e_ref,l),
 *     mean over the pairs) is below zero: the winners became easier to denoise than the losers
 *     relative to the reference. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "base.h"
#include "image.h"
#include "pipeline.h"
#include "rng.h"
#include "scheduler.h"
#include "sd_text.h"
#include "tune.h"
#include "tune_latents.h"
#include "tune_step.h"
#include "unet.h"
#include "vae.h"

#define MODEL "tests/gen/fixtures/pipeline_sd"
#define N_IMG 16
#define PROMPT "a red fox"

static double brightness(const uint8_t *px, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += px[i];
    return s / (double)n;
}

static int by_value(const void *a, const void *b) {
    double x = ((const double *)a)[0], y = ((const double *)b)[0];
    return (x > y) - (x < y);
}

static SdPipeline *open_pipe(Backend *be, const char *lora) {
    SdLora l = {lora, 1.0f};
    SdPipelineConfig pc = {0};
    pc.loras = lora ? &l : NULL;
    pc.n_loras = lora ? 1 : 0;
    SdPipeline *p = NULL;
    Err err = {0};
    cr_assert_eq(sd_pipeline_open(MODEL, be, &pc, &p, &err), 0, "%s", err.msg);
    return p;
}

static uint8_t *render(SdPipeline *p, uint64_t seed, float guidance) {
    SdGenParams g = {0};
    g.prompt = PROMPT;
    g.steps = 8;
    g.guidance = guidance;
    g.seed = seed;
    uint8_t *rgb = NULL;
    int w, h;
    Err err = {0};
    cr_assert_eq(sd_pipeline_generate(p, &g, NULL, &rgb, &w, &h, &err), 0, "%s", err.msg);
    cr_assert(w == 64 && h == 64);
    return rgb;
}

/* mean((unet(x_t) − ε)²) of one latent under PIPE's UNet */
static double denoise_err(SdPipeline *p, Backend *be, const float *xt, const float *eps, int t,
                          const float *ehs, int T, int D) {
    int64_t xs[4] = {1, 4, 8, 8}, es[3] = {1, T, D};
    Tensor x = backend_tensor_new(be, DTYPE_F32, 4, xs), o = backend_tensor_new(be, DTYPE_F32,
                                                                                4, xs);
    Tensor e = backend_tensor_new(be, DTYPE_F32, 3, es);
    Tensor hx = tensor_4d((float *)xt, 1, 4, 8, 8), he = tensor_3d((float *)ehs, 1, T, D);
    backend_upload(be, &x, &hx);
    backend_upload(be, &e, &he);
    float tf = (float)t, out[256];
    Err err = {0};
    cr_assert_eq(unet_forward(sd_pipeline_unet(p), be, &o, &x, &tf, &e, NULL, NULL, &err), 0,
                 "%s", err.msg);
    Tensor ho = tensor_4d(out, 1, 4, 8, 8);
    backend_download(be, &ho, &o);
    cr_assert_eq(backend_sync(be, &err), 0, "%s", err.msg);
    double s = 0;
    for (int i = 0; i < 256; i++)
        s += ((double)out[i] - eps[i]) * ((double)out[i] - eps[i]);
    backend_tensor_free(be, &x);
    backend_tensor_free(be, &o);
    backend_tensor_free(be, &e);
    return s / 256;
}

Test(tune_planted, brighter_is_learned, .timeout = 600) {
    char tmp[] = "/tmp/easel-planted-XXXXXX";
    cr_assert_not_null(mkdtemp(tmp));
    Err err = {0};
    Backend *be = NULL;
    BackendConfig bc = {.threads = 2};
    cr_assert_eq(backend_open("cpu", &bc, &be, NULL, 0, &err), 0, "%s", err.msg);
    /* the model's own images, sorted by brightness */
    SdPipeline *base = open_pipe(be, NULL);
    double bright[N_IMG][2];
    char path[N_IMG][300];
    for (int i = 0; i < N_IMG; i++) {
        uint8_t *rgb = render(base, (uint64_t)i, 7.5f);
        snprintf(path[i], sizeof path[i], "%s/%d.png", tmp, i);
        cr_assert_eq(image_write_png(path[i], rgb, 64, 64, 3, &err), 0, "%s", err.msg);
        bright[i][0] = brightness(rgb, 64 * 64 * 3);
        bright[i][1] = i;
        free(rgb);
    }
    qsort(bright, N_IMG, sizeof bright[0], by_value);
    char pairs[300];
    snprintf(pairs, sizeof pairs, "%s/pairs.jsonl", tmp);
    FILE *f = fopen(pairs, "w");
    int h = N_IMG / 2;
    for (int i = 0; i < h; i++)
        fprintf(f, "{\"prompt\": \"%s\", \"img_pos\": \"%d.png\", \"img_neg\": \"%d.png\", "
                "\"label\": 1}\n", PROMPT, (int)bright[h + i][1], (int)bright[i][1]);
    fclose(f);
    /* tune */
    TuneConfig c;
    tune_config_defaults(&c);
    snprintf(c.model, sizeof c.model, "%s", MODEL);
    snprintf(c.pairs, sizeof c.pairs, "%s", pairs);
    snprintf(c.out, sizeof c.out, "%s/run", tmp);
    snprintf(c.device, sizeof c.device, "cpu");
    snprintf(c.sample_seeds, sizeof c.sample_seeds, "none");
    snprintf(c.targets, sizeof c.targets,
             "to_q,to_k,to_v,to_out.0,ff.net.0.proj,ff.net.2,conv1,conv2,conv_in,conv_out");
    c.steps = 80;
    c.batch = 4;
    c.lr = 3e-3;
    c.save_every = 0;
    c.seed = 1;
    c.threads = 2;
    cr_assert_eq(tune_run(NULL, &c, NULL, &err), 0, "%s", err.msg);
    char adapter[400];
    snprintf(adapter, sizeof adapter, "%s/run/final/pytorch_lora_weights.safetensors", tmp);
    SdPipeline *tuned = open_pipe(be, adapter);
    /* held-out seeds render brighter with the adapter (no guidance: the conditional model the
     * adapter was trained as) */
    double with = 0, without = 0;
    for (int s = 100; s < 112; s++) {
        uint8_t *a = render(tuned, (uint64_t)s, 1.0f), *b = render(base, (uint64_t)s, 1.0f);
        with += brightness(a, 64 * 64 * 3) / 12;
        without += brightness(b, 64 * 64 * 3) / 12;
        free(a), free(b);
    }
    cr_log_info("held-out brightness: %.2f with the adapter, %.2f without", with, without);
    cr_assert(with > without + 1.0, "held-out images: %.2f with the adapter, %.2f without", with,
              without);
    /* the DPO margin, independently: latents by the VAE encoder, the prompt's conditioning,
     * 8 fresh (t, ε) per pair */
    Vae *vae = NULL;
    VaeOptions vo = {0};
    vo.parts = VAE_ENCODER;
    cr_assert_eq(vae_load(be, MODEL, &vo, &vae, &err), 0, "%s", err.msg);
    SdText *tx = sd_pipeline_text(base);
    int T = sd_text_context(tx), D = sd_text_width(tx);
    float *ehs = xmalloc((size_t)T * D * sizeof *ehs);
    cr_assert_eq(sd_text_encode_prompt(tx, PROMPT, NULL, 0, 0, ehs, NULL, NULL, NULL, &err), 0,
                 "%s", err.msg);
    SchedConfig sc;
    cr_assert_eq(sd_pipeline_sched_config(base, &sc, &err), 0, "%s", err.msg);
    Scheduler sch;
    cr_assert_eq(scheduler_init(&sch, &sc, 1, &err), 0, "%s", err.msg);
    float lat[2][256], pix[3 * 64 * 64], logvar[256], eps[256], xt[256], tgt[256];
    Rng rg;
    rng_init(&rg, 12345);
    double margin = 0;
    int n = 0;
    for (int i = 0; i < h; i++) {
        for (int k = 0; k < 2; k++) {
            Image im = {0};
            cr_assert_eq(image_load(path[(int)bright[k ? i : h + i][1]], 3, &im, &err), 0);
            tune_image_pixels(im.px, im.w, im.h, 64, 64, pix);
            image_deinit(&im);
            cr_assert_eq(vae_encode(vae, pix, 1, 64, 64, lat[k], logvar, &err), 0, "%s",
                         err.msg);
            for (int j = 0; j < 256; j++)
                lat[k][j] *= vae_config(vae)->scaling_factor;
        }
        for (int d = 0; d < 8; d++, n++) {
            int t = (int)rng_below(&rg, (uint64_t)sch.n_train);
            rng_fill_normal(&rg, eps, 256, 0, 1);
            double e[2][2]; /* [winner, loser][adapter, reference] */
            for (int k = 0; k < 2; k++) {
                tune_add_noise(sch.alphas_cumprod, t, lat[k], eps, 256, sc.prediction, xt, tgt);
                e[k][0] = denoise_err(tuned, be, xt, tgt, t, ehs, T, D);
                e[k][1] = denoise_err(base, be, xt, tgt, t, ehs, T, D);
            }
            margin += (e[0][0] - e[0][1]) - (e[1][0] - e[1][1]);
        }
    }
    margin /= n;
    cr_log_info("independent DPO margin: %g", margin);
    cr_assert(margin < 0, "the DPO margin (winner − loser) is %g, not below zero", margin);
    scheduler_deinit(&sch);
    free(ehs);
    vae_free(vae);
    sd_pipeline_close(tuned);
    sd_pipeline_close(base);
    backend_close(be);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    cr_assert_eq(system(cmd), 0);
}
