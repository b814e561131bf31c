/* UNet adapters (issue 16): LoRA and DoRA on every linear and conv layer of the tiny SD- and
 * SDXL-shaped fixture UNets (tests/models/make_unet_grad_fixtures.py: PEFT's
 * LoraConfig(r=4, lora_alpha=8, target_modules=ALL, use_dora=False/True) through diffusers,
 * B and m set randomly): DoRA's magnitude initialisation equals PEFT's, and one
 * unet_forward_backward gives the output, dx and every dA, dB, dm within 1e-4 of torch's
 * (f32, CPU; the emulated CUDA backend is test_unet_grad's emu_matches_cpu); dm and dx of
 * DoRA on conv layers and the time embedding match finite differences; the fused step
 * is unet_forward then unet_backward; a bf16 base gives DoRA gradients close to the f32
 * base's; export / import round-trips and refuses a mismatched set naming the entry; an
 * unknown target is an error naming it; the backward's keep mode gives per-block
 * checkpointing's output and gradients bit for bit, and UNET_KEEP_AUTO checkpoints in an arena
 * too small for the records. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "backend_impl.h"
#include "base.h"
#include "fmt_safetensors.h"
#include "lora_set.h"
#include "rng.h"
#include "sd_weights.h"
#include "unet.h"

#include "unet_fixture.h"

static const char *const ALL[] = {
    "to_q",          "to_k",     "to_v",  "to_out.0",      "ff.net.0.proj",
    "ff.net.2",      "proj_in",  "proj_out", "conv1",      "conv2",
    "conv_shortcut", "time_emb_proj", "downsamplers.0.conv", "upsamplers.0.conv", "conv_in",
    "conv_out",      "linear_1", "linear_2"};
#define N_ALL ((int)(sizeof ALL / sizeof ALL[0]))

/* A fixture UNet on a backend with its case "s" inputs on the device. */
typedef struct Fx {
    Backend *be;
    SdWeights *w;
    Unet *u;
    int64_t xs[4], os[4];
    size_t nx, no;
    float *x, *t, *ehs, *te, *tid;
    Tensor dx, de, dte;
} Fx;

static void fx_open(Fx *f, Backend *be, const char *dir, DType dt) {
    memset(f, 0, sizeof *f);
    f->be = be;
    Err err = {0};
    cr_assert_eq(sd_weights_open(dir, "unet", &f->w, &err), 0, "%s", err.msg);
    UnetOptions o = {dt};
    cr_assert_eq(unet_load(f->w, be, &o, &f->u, &err), 0, "%s", err.msg);
    char path[512];
    snprintf(path, sizeof path, "%s/io.safetensors", dir);
    SafeTensors *io = safetensors_open(path, &err);
    cr_assert_not_null(io, "%s", err.msg);
    int64_t es[3], ts[2];
    f->x = fix_read(io, "s.sample", &f->nx, f->xs);
    f->t = fix_read(io, "s.timesteps", NULL, NULL);
    f->ehs = fix_read(io, "s.ehs", NULL, es);
    f->dx = dev_from(be, f->x, 4, f->xs);
    f->de = dev_from(be, f->ehs, 3, es);
    if (unet_config(f->u)->text_time) {
        f->te = fix_read(io, "s.text_embeds", NULL, ts);
        f->tid = fix_read(io, "s.time_ids", NULL, NULL);
        f->dte = dev_from(be, f->te, 2, ts);
    }
    safetensors_close(io);
    memcpy(f->os, f->xs, sizeof f->os);
    f->os[1] = unet_config(f->u)->out_channels;
    f->no = (size_t)(f->os[0] * f->os[1] * f->os[2] * f->os[3]);
}

static void fx_close(Fx *f) {
    backend_tensor_free(f->be, &f->dx);
    backend_tensor_free(f->be, &f->de);
    if (f->dte.ptr)
        backend_tensor_free(f->be, &f->dte);
    free(f->x), free(f->t), free(f->ehs), free(f->te), free(f->tid);
    unet_free(f->u);
    sd_weights_close(f->w);
    backend_close(f->be);
}

static float *down(Backend *be, const Tensor *t) {
    float *h = xmalloc(sizeof(float) * (size_t)tensor_numel(t));
    Tensor v = tensor_view(h, t->n_dims, t->shape);
    backend_download(be, &v, t);
    Err err = {0};
    cr_assert_eq(backend_sync(be, &err), 0, "%s", err.msg);
    return h;
}

static void up(Backend *be, const Tensor *t, const float *h) {
    Tensor v = tensor_view((float *)h, t->n_dims, t->shape);
    backend_upload(be, t, &v);
    Err err = {0};
    cr_assert_eq(backend_sync(be, &err), 0, "%s", err.msg);
}

static double maxdiff(const float *got, const float *want, size_t n, double *scale) {
    double md = 0, mw = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        cr_assert(d == d, "NaN at %zu", i);
        md = d > md ? d : md;
        mw = fabs(want[i]) > mw ? fabs(want[i]) : mw;
    }
    *scale = mw;
    return md;
}

/* dout_fn: the upstream gradient is the host array R; it also counts its calls. */
typedef struct Up {
    Backend *be;
    const float *R;
    int calls;
} Up;

static int dout_from_host(void *ctx, const Tensor *out, const Tensor *dout, Err *err) {
    Up *u = ctx;
    (void)out;
    u->calls++;
    Tensor v = tensor_view((float *)u->R, dout->n_dims, dout->shape);
    backend_upload(u->be, dout, &v);
    return backend_sync(u->be, err);
}

/* One step: out (host, no floats) and dx (host, nx floats) for dout = R; the adapters'
 * gradients are zeroed first. */
static void step(Fx *f, const float *R, float *out, float *gx) {
    Err err = {0};
    Tensor o = backend_tensor_new(f->be, DTYPE_F32, 4, f->os);
    Tensor g = backend_tensor_new(f->be, DTYPE_F32, 4, f->xs);
    backend_zero(f->be, &g);
    unet_lora_zero_grad(f->u);
    Up ctx = {f->be, R, 0};
    cr_assert_eq(unet_forward_backward(f->u, f->be, &o, &g, dout_from_host, &ctx, &f->dx, f->t,
                                       &f->de, f->te ? &f->dte : NULL, f->tid, &err),
                 0, "%s", err.msg);
    cr_assert_eq(ctx.calls, 1);
    float *h = down(f->be, &o);
    memcpy(out, h, sizeof(float) * f->no);
    free(h);
    h = down(f->be, &g);
    memcpy(gx, h, sizeof(float) * f->nx);
    free(h);
    backend_tensor_free(f->be, &o);
    backend_tensor_free(f->be, &g);
}

/* The fixture's adapters, against torch + PEFT: names, DoRA's initial m, output, dx and every
 * adapter gradient within tol. */
static void check_torch(const char *dir, int dora, double tol) {
    Fx f;
    fx_open(&f, open_cpu(), dir, DTYPE_F32);
    Err err = {0};
    UnetAdapterConfig cf = {4, 8.0f, dora, ALL, N_ALL, 1};
    cr_assert_eq(unet_adapter_add(f.u, &cf, &err), 0, "%s", err.msg);
    char path[512], name[300];
    snprintf(path, sizeof path, "%s/adapters_%s.safetensors", dir, dora ? "dora" : "lora");
    SafeTensors *g = safetensors_open(path, &err);
    cr_assert_not_null(g, "%s", err.msg);
    int np = unet_adapter_param_count(f.u), na = unet_lora_count(f.u);
    cr_assert_eq(np, na * (dora ? 3 : 2), "%d tensors for %d adapters", np, na);
    /* every torch adapter is a live one: count the fixture's ".dA" entries */
    size_t n_fix = 0;
    for (size_t i = 0; i < safetensors_count(g); i++) {
        const char *k = safetensors_at(g, i)->name;
        size_t l = strlen(k);
        n_fix += l > 3 && !strcmp(k + l - 3, ".dA");
    }
    cr_assert_eq((size_t)na, n_fix, "easel adapts %d modules, PEFT %zu", na, n_fix);
    static const char *const key[3] = {"A", "B", "m"};
    double worst_m0 = 0;
    for (int i = 0; i < np; i++) {
        Tensor p;
        const char *pn = unet_adapter_param(f.u, i, &p, NULL);
        int k = i % (dora ? 3 : 2);
        const char *mod = unet_lora_get(f.u, i / (dora ? 3 : 2), NULL, NULL, NULL, NULL);
        static const char *const sfx[3] = {".lora_A.weight", ".lora_B.weight",
                                           ".lora_magnitude_vector"};
        snprintf(name, sizeof name, "%s%s", mod, sfx[k]);
        cr_assert_str_eq(pn, name);
        if (k == 2) { /* DoRA's m at init: PEFT's row norms of W */
            snprintf(name, sizeof name, "%s.m0", mod);
            size_t n;
            float *want = fix_read(g, name, &n, NULL), *got = down(f.be, &p);
            cr_assert_eq(n, (size_t)tensor_numel(&p), "%s", name);
            for (size_t j = 0; j < n; j++) {
                double d = fabs(got[j] - want[j]) / fabs(want[j]);
                worst_m0 = d > worst_m0 ? d : worst_m0;
            }
            free(want), free(got);
        }
        snprintf(name, sizeof name, "%s.%s", mod, key[k]);
        size_t n;
        float *h = fix_read(g, name, &n, NULL);
        cr_assert_eq(n, (size_t)tensor_numel(&p), "%s: %zu values, live %lld", name, n,
                     (long long)tensor_numel(&p));
        up(f.be, &p, h);
        free(h);
    }
    cr_assert(worst_m0 <= 1e-6, "DoRA m at init: max relative diff %g from PEFT's", worst_m0);
    size_t nr;
    float *R = fix_read(g, "R", &nr, NULL);
    cr_assert_eq(nr, f.no);
    float *out = xmalloc(sizeof(float) * f.no), *gx = xmalloc(sizeof(float) * f.nx);
    step(&f, R, out, gx);
    double s, d;
    float *want = fix_read(g, "out", NULL, NULL);
    d = maxdiff(out, want, f.no, &s);
    cr_log_info("%s %s: out max |easel − torch| %g (max %g)", dir, dora ? "dora" : "lora", d, s);
    cr_assert(s > 0.1 && d <= tol, "%s: out max |easel − torch| %g (max %g)", dir, d, s);
    free(want);
    want = fix_read(g, "dx", NULL, NULL);
    d = maxdiff(gx, want, f.nx, &s);
    cr_assert(s > 0.1 && d <= tol, "%s: dx max |easel − torch| %g (max %g)", dir, d, s);
    free(want);
    double worst = 0;
    for (int i = 0; i < np; i++) {
        Tensor gt;
        unet_adapter_param(f.u, i, NULL, &gt);
        int k = i % (dora ? 3 : 2);
        const char *mod = unet_lora_get(f.u, i / (dora ? 3 : 2), NULL, NULL, NULL, NULL);
        snprintf(name, sizeof name, "%s.d%s", mod, key[k]);
        float *w = fix_read(g, name, NULL, NULL), *got = down(f.be, &gt);
        d = maxdiff(got, w, (size_t)tensor_numel(&gt), &s);
        cr_assert(s > 1e-6, "%s: degenerate torch gradient (max %g)", name, s);
        cr_assert(d <= tol, "%s: max |easel − torch| %g (max %g)", name, d, s);
        worst = d > worst ? d : worst;
        free(w), free(got);
    }
    cr_log_info("%s %s: %d adapters, gradients max |easel − torch| %g, m0 %g", dir,
                dora ? "dora" : "lora", na, worst, worst_m0);
    free(out), free(gx), free(R);
    safetensors_close(g);
    fx_close(&f);
}

Test(unet_adapters, sd_lora_every_layer_matches_torch) { check_torch(FIX "unet_sd", 0, 1e-4); }
Test(unet_adapters, sd_dora_every_layer_matches_torch) { check_torch(FIX "unet_sd", 1, 1e-4); }
Test(unet_adapters, sdxl_lora_every_layer_matches_torch) {
    check_torch(FIX "unet_sdxl", 0, 1e-4);
}
Test(unet_adapters, sdxl_dora_every_layer_matches_torch) {
    check_torch(FIX "unet_sdxl", 1, 1e-4);
}

/* Random values into every adapter tensor (B and m non-zero: every path matters). */
static void randomize(Fx *f, uint64_t seed) {
    Rng rng;
    rng_init(&rng, seed);
    for (int i = 0; i < unet_adapter_param_count(f->u); i++) {
        Tensor p;
        const char *n = unet_adapter_param(f->u, i, &p, NULL);
        float *h = down(f->be, &p);
        int mag = strstr(n, "magnitude") != NULL;
        for (int64_t k = 0; k < tensor_numel(&p); k++)
            h[k] = mag ? h[k] * (1.0f + 0.1f * rng_normal(&rng)) : h[k] + 0.05f * rng_normal(&rng);
        up(f->be, &p, h);
        free(h);
    }
}

/* Every gradient, concatenated after dx (host, *n floats). */
static float *all_grads(Fx *f, const float *gx, size_t *n) {
    size_t tot = f->nx;
    for (int i = 0; i < unet_adapter_param_count(f->u); i++) {
        Tensor g;
        unet_adapter_param(f->u, i, NULL, &g);
        tot += (size_t)tensor_numel(&g);
    }
    float *all = xmalloc(sizeof(float) * tot);
    memcpy(all, gx, sizeof(float) * f->nx);
    size_t at = f->nx;
    for (int i = 0; i < unet_adapter_param_count(f->u); i++) {
        Tensor g;
        unet_adapter_param(f->u, i, NULL, &g);
        float *h = down(f->be, &g);
        memcpy(all + at, h, sizeof(float) * (size_t)tensor_numel(&g));
        at += (size_t)tensor_numel(&g);
        free(h);
    }
    *n = tot;
    return all;
}

/* DoRA on a subset of layers of every kind (a linear of the time embedding, a ResNet's conv1
 * and time_emb_proj, a 1×1 shortcut, a transformer's proj_in and attention, a downsampler's
 * stride-2 conv, conv_out) on be, for seeded 4×4 latents: dx and every adapter gradient. */
static float *grads_subset(Backend *be, DType dt, size_t *n) {
    static const char *const tg[] = {"time_embedding.linear_1",
                                     "down_blocks.0.resnets.0.conv1",
                                     "down_blocks.0.resnets.1.time_emb_proj",
                                     "up_blocks.0.resnets.0.conv_shortcut",
                                     "mid_block.attentions.0.proj_in",
                                     "mid_block.attentions.0.transformer_blocks.0.attn2.to_v",
                                     "down_blocks.0.downsamplers.0.conv", "conv_out"};
    Fx f;
    memset(&f, 0, sizeof f);
    f.be = be;
    Err err = {0};
    cr_assert_eq(sd_weights_open(FIX "unet_sd", "unet", &f.w, &err), 0, "%s", err.msg);
    UnetOptions o = {dt};
    cr_assert_eq(unet_load(f.w, be, &o, &f.u, &err), 0, "%s", err.msg);
    UnetAdapterConfig cf = {4, 8.0f, 1, tg, (int)(sizeof tg / sizeof tg[0]), 5};
    cr_assert_eq(unet_adapter_add(f.u, &cf, &err), 0, "%s", err.msg);
    cr_assert_eq(unet_lora_count(f.u), 8);
    randomize(&f, 9);
    Rng rng;
    rng_init(&rng, 11);
    int64_t xs[4] = {1, 4, 4, 4}, es[3] = {1, 3, 24};
    float hx[64], he[72], hr[64], t = 321.0f;
    for (int i = 0; i < 64; i++)
        hx[i] = rng_normal(&rng), hr[i] = rng_normal(&rng);
    for (int i = 0; i < 72; i++)
        he[i] = rng_normal(&rng);
    memcpy(f.xs, xs, sizeof xs);
    memcpy(f.os, xs, sizeof xs);
    f.nx = f.no = 64;
    f.t = xmalloc(sizeof(float));
    *f.t = t;
    f.dx = dev_from(be, hx, 4, xs);
    f.de = dev_from(be, he, 3, es);
    float out[64], gx[64];
    step(&f, hr, out, gx);
    float *all = all_grads(&f, gx, n);
    fx_close(&f);
    return all;
}

/* A frozen bf16 base (adapters f32): dx and the DoRA gradients within 5 % of the f32 base's
 * range, per tensor. */
Test(unet_adapters, bf16_base_dora_gradients_close_to_f32) {
    size_t n32, n16;
    float *g32 = grads_subset(open_cpu(), DTYPE_F32, &n32);
    float *g16 = grads_subset(open_cpu(), DTYPE_BF16, &n16);
    cr_assert_eq(n32, n16);
    double s, d = maxdiff(g16, g32, n32, &s);
    cr_log_info("bf16 vs f32 base: %zu gradient values, max |diff| %g (max %g)", n32, d, s);
    cr_assert(d <= 0.05 * s, "bf16 vs f32 base: max |diff| %g (max %g)", d, s);
    free(g32), free(g16);
}

/* unet_forward_backward's output is unet_forward's, its gradients unet_backward's; a dout_fn
 * failure is returned and nothing more runs. */
static int dout_fails(void *ctx, const Tensor *out, const Tensor *dout, Err *err) {
    (void)ctx, (void)out, (void)dout;
    return err_set(err, ERR_USAGE, "the objective said no");
}

Test(unet_adapters, fused_step_equals_forward_then_backward) {
    Fx f;
    fx_open(&f, open_cpu(), FIX "unet_sd", DTYPE_F32);
    Err err = {0};
    UnetAdapterConfig cf = {4, 8.0f, 1, ALL, N_ALL, 3};
    cr_assert_eq(unet_adapter_add(f.u, &cf, &err), 0, "%s", err.msg);
    randomize(&f, 4);
    Rng rng;
    rng_init(&rng, 5);
    float *R = xmalloc(sizeof(float) * f.no);
    for (size_t i = 0; i < f.no; i++)
        R[i] = rng_normal(&rng);
    float *out = xmalloc(sizeof(float) * f.no), *gx = xmalloc(sizeof(float) * f.nx);
    step(&f, R, out, gx);
    size_t n1, n2;
    float *g1 = all_grads(&f, gx, &n1);
    /* apart */
    Tensor o = backend_tensor_new(f.be, DTYPE_F32, 4, f.os), dR = dev_from(f.be, R, 4, f.os);
    Tensor g = backend_tensor_new(f.be, DTYPE_F32, 4, f.xs);
    cr_assert_eq(unet_forward(f.u, f.be, &o, &f.dx, f.t, &f.de, NULL, NULL, &err), 0, "%s",
                 err.msg);
    float *o2 = down(f.be, &o);
    cr_assert_eq(memcmp(o2, out, sizeof(float) * f.no), 0, "fused output differs");
    backend_zero(f.be, &g);
    unet_lora_zero_grad(f.u);
    cr_assert_eq(unet_backward(f.u, f.be, &g, &dR, &f.dx, f.t, &f.de, NULL, NULL, &err), 0,
                 "%s", err.msg);
    float *gx2 = down(f.be, &g), *g2 = all_grads(&f, gx2, &n2);
    cr_assert_eq(n1, n2);
    cr_assert_eq(memcmp(g1, g2, sizeof(float) * n1), 0, "fused gradients differ");
    /* a failing dout_fn */
    unet_lora_zero_grad(f.u);
    cr_assert_eq(unet_forward_backward(f.u, f.be, &o, &g, dout_fails, NULL, &f.dx, f.t, &f.de,
                                       NULL, NULL, &err),
                 ERR_USAGE);
    cr_assert(strstr(err.msg, "the objective said no"), "%s", err.msg);
    Tensor dA;
    unet_adapter_param(f.u, 0, NULL, &dA);
    float *h = down(f.be, &dA);
    for (int64_t k = 0; k < tensor_numel(&dA); k++)
        cr_assert_eq(h[k], 0.0f, "a gradient was written after dout_fn failed");
    free(h);
    cr_assert_eq(unet_forward(f.u, f.be, &o, &f.dx, f.t, &f.de, NULL, NULL, &err), 0,
                 "the backend stayed failed: %s", err.msg);
    backend_tensor_free(f.be, &o), backend_tensor_free(f.be, &dR), backend_tensor_free(f.be, &g);
    free(R), free(out), free(gx), free(g1), free(o2), free(gx2), free(g2);
    fx_close(&f);
}

/* A new DoRA adapter leaves the output as the base's bit for bit (B = 0 and m = ‖W‖; the
 * layer is PEFT's form, base output + (m/‖W‖ − 1)·W x + ..., as PEFT's is exact: with the
 * bias added outside the base GEMM it was off in the last bits, and a DPO loss at β 2000 off
 * ln 2 by 4e-5); switched off it is the base's bit for bit. */
Test(unet_adapters, dora_starts_at_the_base_and_switches_off) {
    Fx f;
    fx_open(&f, open_cpu(), FIX "unet_sd", DTYPE_F32);
    Err err = {0};
    Tensor o = backend_tensor_new(f.be, DTYPE_F32, 4, f.os);
    cr_assert_eq(unet_forward(f.u, f.be, &o, &f.dx, f.t, &f.de, NULL, NULL, &err), 0, "%s",
                 err.msg);
    float *base = down(f.be, &o);
    UnetAdapterConfig cf = {0, 0.0f, 1, ALL, N_ALL, 3}; /* rank 8, alpha 32: the defaults */
    cr_assert_eq(unet_adapter_add(f.u, &cf, &err), 0, "%s", err.msg);
    Tensor A;
    unet_adapter_param(f.u, 0, &A, NULL);
    cr_assert_eq(A.shape[0], 8);
    cr_assert_eq(unet_forward(f.u, f.be, &o, &f.dx, f.t, &f.de, NULL, NULL, &err), 0, "%s",
                 err.msg);
    float *h = down(f.be, &o);
    double s, d = maxdiff(h, base, f.no, &s);
    cr_assert_eq(memcmp(h, base, sizeof(float) * f.no), 0,
                 "a new DoRA adapter changed the output by %g (max %g)", d, s);
    free(h);
    randomize(&f, 8);
    cr_assert_eq(unet_forward(f.u, f.be, &o, &f.dx, f.t, &f.de, NULL, NULL, &err), 0, "%s",
                 err.msg);
    h = down(f.be, &o);
    d = maxdiff(h, base, f.no, &s);
    cr_assert(d > 1e-3, "the adapter does not change the output (%g)", d);
    free(h);
    unet_lora_enable(f.u, 0);
    cr_assert_eq(unet_forward(f.u, f.be, &o, &f.dx, f.t, &f.de, NULL, NULL, &err), 0, "%s",
                 err.msg);
    h = down(f.be, &o);
    cr_assert_eq(memcmp(h, base, sizeof(float) * f.no), 0, "switched off is not the base");
    free(h), free(base);
    backend_tensor_free(f.be, &o);
    fx_close(&f);
}

/* export → LoraSet → import gives the same tensors; a set with a wrong name, a wrong rank,
 * another alpha, a missing magnitude or a missing entry is refused naming it, the adapters
 * unchanged. */
Test(unet_adapters, export_import_round_trip_and_mismatches) {
    Fx f;
    fx_open(&f, open_cpu(), FIX "unet_sd", DTYPE_F32);
    Err err = {0};
    UnetAdapterConfig cf = {4, 8.0f, 1, ALL, N_ALL, 3};
    cr_assert_eq(unet_adapter_add(f.u, &cf, &err), 0, "%s", err.msg);
    randomize(&f, 6);
    LoraSet s = {0};
    cr_assert_eq(unet_adapter_export(f.u, &s, &err), 0, "%s", err.msg);
    cr_assert_eq(s.n, (size_t)unet_lora_count(f.u));
    cr_assert_str_eq(s.e[0].name, "time_embedding.linear_1");
    cr_assert(s.e[0].m && s.e[0].r == 4 && s.e[0].alpha == 8.0f);
    int np = unet_adapter_param_count(f.u);
    float **before = xcalloc((size_t)np, sizeof(float *));
    for (int i = 0; i < np; i++) {
        Tensor p;
        unet_adapter_param(f.u, i, &p, NULL);
        before[i] = down(f.be, &p);
        /* the conv entries: kh = kw = the layer's kernel */
    }
    cr_assert_eq(s.e[2].kh, 3, "conv_in's A kernel %d", s.e[2].kh);
    randomize(&f, 7); /* change everything, then load the export back */
    cr_assert_eq(unet_adapter_import(f.u, &s, &err), 0, "%s", err.msg);
    for (int i = 0; i < np; i++) {
        Tensor p;
        const char *n = unet_adapter_param(f.u, i, &p, NULL);
        float *h = down(f.be, &p);
        cr_assert_eq(memcmp(h, before[i], sizeof(float) * (size_t)tensor_numel(&p)), 0,
                     "%s differs after the round trip", n);
        free(h);
    }
    /* mismatches */
    char keep[192];
    snprintf(keep, sizeof keep, "%s", s.e[5].name);
    snprintf(s.e[5].name, sizeof s.e[5].name, "down_blocks.9.nothing");
    cr_assert_eq(unet_adapter_import(f.u, &s, &err), ERR_FORMAT);
    cr_assert(strstr(err.msg, "\"down_blocks.9.nothing\""), "%s", err.msg);
    snprintf(s.e[5].name, sizeof s.e[5].name, "%s", keep);
    s.e[7].r = 5;
    cr_assert_eq(unet_adapter_import(f.u, &s, &err), ERR_FORMAT);
    cr_assert(strstr(err.msg, s.e[7].name) && strstr(err.msg, "rank 5"), "%s", err.msg);
    s.e[7].r = 4;
    s.e[8].alpha = 16.0f;
    cr_assert_eq(unet_adapter_import(f.u, &s, &err), ERR_FORMAT);
    cr_assert(strstr(err.msg, s.e[8].name) && strstr(err.msg, "alpha 16"), "%s", err.msg);
    s.e[8].alpha = 8.0f;
    float *m = s.e[9].m;
    s.e[9].m = NULL;
    cr_assert_eq(unet_adapter_import(f.u, &s, &err), ERR_FORMAT);
    cr_assert(strstr(err.msg, s.e[9].name) && strstr(err.msg, "magnitude"), "%s", err.msg);
    s.e[9].m = m;
    s.n--;
    cr_assert_eq(unet_adapter_import(f.u, &s, &err), ERR_FORMAT);
    cr_assert(strstr(err.msg, s.e[s.n].name), "%s", err.msg);
    s.n++;
    for (int i = 0; i < np; i++) {
        Tensor p;
        unet_adapter_param(f.u, i, &p, NULL);
        float *h = down(f.be, &p);
        cr_assert_eq(memcmp(h, before[i], sizeof(float) * (size_t)tensor_numel(&p)), 0,
                     "a refused import changed tensor %d", i);
        free(h), free(before[i]);
    }
    free(before);
    lora_set_free(&s);
    fx_close(&f);
}

/* An unknown target is an error naming it (nothing added); a second add is refused. */
Test(unet_adapters, unknown_target_is_named) {
    Fx f;
    fx_open(&f, open_cpu(), FIX "unet_sd", DTYPE_F32);
    Err err = {0};
    const char *bad[] = {"conv1", "norm1"};
    UnetAdapterConfig cf = {4, 8.0f, 1, bad, 2, 3};
    cr_assert_eq(unet_adapter_add(f.u, &cf, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "\"norm1\"") && strstr(err.msg, "no linear or conv layer"), "%s",
              err.msg);
    cr_assert_eq(unet_adapter_param_count(f.u), 0);
    const char *cv[] = {"onv1"}; /* a suffix must start after a '.' */
    cf.targets = cv, cf.n_targets = 1;
    cr_assert_eq(unet_adapter_add(f.u, &cf, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "\"onv1\""), "%s", err.msg);
    UnetAdapterConfig dflt = {0};
    cr_assert_eq(unet_adapter_add(f.u, &dflt, &err), 0, "%s", err.msg);
    cr_assert_eq(unet_lora_count(f.u), (2 + 1 + 3) * 10, "default targets: %d",
                 unet_lora_count(f.u));
    cr_assert_eq(unet_adapter_add(f.u, &dflt, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "already"), "%s", err.msg);
    fx_close(&f);
}

/* L = Σ out·R for the fixture's latents. */
static double loss(Fx *f, const float *R) {
    Err err = {0};
    Tensor o = backend_tensor_new(f->be, DTYPE_F32, 4, f->os);
    cr_assert_eq(unet_forward(f->u, f->be, &o, &f->dx, f->t, &f->de, f->te ? &f->dte : NULL,
                              f->tid, &err),
                 0, "%s", err.msg);
    float *h = down(f->be, &o);
    double L = 0;
    for (size_t i = 0; i < f->no; i++)
        L += (double)h[i] * R[i];
    free(h);
    backend_tensor_free(f->be, &o);
    return L;
}

/* DoRA on conv layers (3×3, 1×1 shortcut, stride 2) and the time embedding: the largest dm
 * of each, and dx, against central differences of unet_forward (independent of torch). Only
 * m and x: DoRA's dA and dB are by design not the derivative of the output (the norm of
 * W + s·BA is detached), torch + PEFT is their reference above. */
Test(unet_adapters, dora_gradients_match_finite_differences) {
    Fx f;
    fx_open(&f, open_cpu(), FIX "unet_sd", DTYPE_F32);
    Err err = {0};
    const char *tg[] = {"down_blocks.0.resnets.1.conv2", "up_blocks.1.resnets.2.conv_shortcut",
                        "down_blocks.0.downsamplers.0.conv", "time_embedding.linear_2"};
    UnetAdapterConfig cf = {4, 8.0f, 1, tg, 4, 3};
    cr_assert_eq(unet_adapter_add(f.u, &cf, &err), 0, "%s", err.msg);
    randomize(&f, 12);
    Rng rng;
    rng_init(&rng, 13);
    float *R = xmalloc(sizeof(float) * f.no);
    for (size_t i = 0; i < f.no; i++)
        R[i] = rng_normal(&rng);
    float *out = xmalloc(sizeof(float) * f.no), *gx = xmalloc(sizeof(float) * f.nx);
    step(&f, R, out, gx);
    int np = unet_adapter_param_count(f.u);
    cr_assert_eq(np, 12);
    for (int i = -1; i < np; i++) {
        Tensor p = f.dx, g = backend_tensor_new(f.be, DTYPE_F32, 4, f.xs);
        const char *name = "dx";
        if (i >= 0) {
            backend_tensor_free(f.be, &g);
            name = unet_adapter_param(f.u, i, &p, &g);
            if (!strstr(name, "magnitude"))
                continue;
        } else {
            up(f.be, &g, gx);
        }
        size_t n = (size_t)tensor_numel(&p);
        float *hg = down(f.be, &g), *hp = down(f.be, &p);
        size_t b = 0;
        for (size_t k = 1; k < n; k++)
            b = fabsf(hg[k]) > fabsf(hg[b]) ? k : b;
        cr_assert(fabsf(hg[b]) > 1e-4f, "%s: degenerate gradient", name);
        float v = hp[b], h = 1e-2f * (fabsf(v) > 1 ? fabsf(v) : 1);
        hp[b] = v + h;
        up(f.be, &p, hp);
        double lp = loss(&f, R);
        hp[b] = v - h;
        up(f.be, &p, hp);
        double lm = loss(&f, R);
        hp[b] = v;
        up(f.be, &p, hp);
        double fd = (lp - lm) / (2.0 * h);
        cr_log_info("%s[%zu]: backward %g, finite difference %g", name, b, hg[b], fd);
        cr_assert(fabs(hg[b] - fd) <= 2e-3 * fabs(fd) + 1e-3, "%s[%zu]: backward %g, finite "
                  "difference %g", name, b, hg[b], fd);
        free(hg), free(hp);
        if (i < 0)
            backend_tensor_free(f.be, &g);
    }
    free(R), free(out), free(gx);
    fx_close(&f);
}

/* benchtune16: DoRA's row norms ‖W + s·BA‖ are computed once per unet_forward /
 * unet_forward_backward call and kept between the forward, its recompute and the backward.
 * Adapter weights changed between calls (an optimizer step, an import, an upload) must give
 * what a UNet that never ran with the old weights gives, bit for bit: the output of a forward,
 * and the output, dx and every gradient of a fused step. */
Test(unet_adapters, dora_norms_follow_changed_weights) {
    Fx f, g;
    fx_open(&f, open_cpu(), FIX "unet_sd", DTYPE_F32);
    fx_open(&g, open_cpu(), FIX "unet_sd", DTYPE_F32);
    Err err = {0};
    UnetAdapterConfig cf = {4, 8.0f, 1, ALL, N_ALL, 5};
    cr_assert_eq(unet_adapter_add(f.u, &cf, &err), 0, "%s", err.msg);
    cr_assert_eq(unet_adapter_add(g.u, &cf, &err), 0, "%s", err.msg);
    float *R = xmalloc(sizeof(float) * f.no), *out = xmalloc(sizeof(float) * f.no);
    float *gx = xmalloc(sizeof(float) * f.nx);
    Rng rng;
    rng_init(&rng, 21);
    for (size_t i = 0; i < f.no; i++)
        R[i] = rng_normal(&rng);
    Tensor o = backend_tensor_new(f.be, DTYPE_F32, 4, f.os);
    for (int round = 0; round < 2; round++) {
        /* f runs with the weights it has (its norms are then of those) ... */
        cr_assert_eq(unet_forward(f.u, f.be, &o, &f.dx, f.t, &f.de, NULL, NULL, &err), 0, "%s",
                     err.msg);
        step(&f, R, out, gx);
        /* ... then new weights: f's and, through export / import, g's */
        randomize(&f, 30 + (uint64_t)round);
        LoraSet set = {0};
        cr_assert_eq(unet_adapter_export(f.u, &set, &err), 0, "%s", err.msg);
        cr_assert_eq(unet_adapter_import(g.u, &set, &err), 0, "%s", err.msg);
        lora_set_free(&set);
        cr_assert_eq(unet_forward(f.u, f.be, &o, &f.dx, f.t, &f.de, NULL, NULL, &err), 0, "%s",
                     err.msg);
        float *hf = down(f.be, &o);
        Tensor og = backend_tensor_new(g.be, DTYPE_F32, 4, g.os);
        cr_assert_eq(unet_forward(g.u, g.be, &og, &g.dx, g.t, &g.de, NULL, NULL, &err), 0,
                     "%s", err.msg);
        float *hg = down(g.be, &og);
        backend_tensor_free(g.be, &og);
        cr_assert_eq(memcmp(hf, hg, sizeof(float) * f.no), 0,
                     "round %d: the forward after new weights used stale DoRA norms", round);
        free(hf), free(hg);
        /* the fused step, on f after its forward with the new weights, and on g */
        float *outg = xmalloc(sizeof(float) * f.no), *gxg = xmalloc(sizeof(float) * f.nx);
        step(&f, R, out, gx);
        step(&g, R, outg, gxg);
        cr_assert_eq(memcmp(out, outg, sizeof(float) * f.no), 0, "round %d: step output",
                     round);
        size_t nf, ng;
        float *af = all_grads(&f, gx, &nf), *ag = all_grads(&g, gxg, &ng);
        cr_assert_eq(nf, ng);
        cr_assert_eq(memcmp(af, ag, sizeof(float) * nf), 0, "round %d: step gradients", round);
        free(af), free(ag), free(outg), free(gxg);
    }
    backend_tensor_free(f.be, &o);
    free(R), free(out), free(gx);
    fx_close(&f);
    fx_close(&g);
}

/* ---- keep mode against per-block checkpointing ---------------------------------------------- */

/* The fixture DIR with adapters (dora or LoRA) on every layer, random, on be with keep mode k:
 * one step for the seeded upstream gradient, through unet_forward_backward (fused) or
 * unet_backward; returns the output and every gradient after dx (host, *n floats); *kept:
 * unet_kept, *peak: the arena's high-water mark. */
static float *grads_mode(Backend *be, const char *dir, int dora, UnetKeep k, int fused,
                         size_t *n, int *kept, size_t *peak) {
    Fx f;
    fx_open(&f, be, dir, DTYPE_F32);
    Err err = {0};
    UnetAdapterConfig cf = {4, 8.0f, dora, ALL, N_ALL, 3};
    cr_assert_eq(unet_adapter_add(f.u, &cf, &err), 0, "%s", err.msg);
    randomize(&f, 4);
    unet_set_keep(f.u, k);
    Rng rng;
    rng_init(&rng, 5);
    float *R = xmalloc(sizeof(float) * f.no), *out = xmalloc(sizeof(float) * f.no);
    for (size_t i = 0; i < f.no; i++)
        R[i] = rng_normal(&rng);
    float *gx = xmalloc(sizeof(float) * f.nx);
    if (fused) {
        step(&f, R, out, gx);
    } else {
        Tensor dR = dev_from(f.be, R, 4, f.os), g = backend_tensor_new(f.be, DTYPE_F32, 4, f.xs);
        backend_zero(f.be, &g);
        unet_lora_zero_grad(f.u);
        cr_assert_eq(unet_backward(f.u, f.be, &g, &dR, &f.dx, f.t, &f.de, f.te ? &f.dte : NULL,
                                   f.tid, &err),
                     0, "%s", err.msg);
        float *h = down(f.be, &g);
        memcpy(gx, h, sizeof(float) * f.nx);
        memset(out, 0, sizeof(float) * f.no);
        free(h);
        backend_tensor_free(f.be, &dR), backend_tensor_free(f.be, &g);
    }
    size_t ng;
    float *g = all_grads(&f, gx, &ng);
    *n = f.no + ng;
    float *all = xmalloc(sizeof(float) * *n);
    memcpy(all, out, sizeof(float) * f.no);
    memcpy(all + f.no, g, sizeof(float) * ng);
    *kept = unet_kept(f.u);
    *peak = backend_arena_peak(f.be);
    free(R), free(out), free(gx), free(g);
    fx_close(&f);
    return all;
}

static void keep_matches_checkpoint(const char *dir, int dora, int fused) {
    size_t n1, n2, p1, p2;
    int k1, k2;
    float *on = grads_mode(open_cpu(), dir, dora, UNET_KEEP_ON, fused, &n1, &k1, &p1);
    float *off = grads_mode(open_cpu(), dir, dora, UNET_KEEP_OFF, fused, &n2, &k2, &p2);
    cr_assert(k1 && !k2, "kept %d with UNET_KEEP_ON, %d with UNET_KEEP_OFF", k1, k2);
    cr_assert_eq(n1, n2);
    size_t bad = 0;
    for (size_t i = 0; i < n1; i++)
        bad += memcmp(&on[i], &off[i], sizeof(float)) != 0;
    cr_assert_eq(bad, 0, "%s %s %s: %zu of %zu values differ between keep and checkpoint mode",
                 dir, dora ? "DoRA" : "LoRA", fused ? "fused" : "unet_backward", bad, n1);
    cr_log_info("%s %s: arena peak %zu B kept, %zu B checkpointed", dir, dora ? "DoRA" : "LoRA",
                p1, p2);
    free(on), free(off);
}

Test(unet_adapters, keep_mode_equals_checkpointing_sd) {
    keep_matches_checkpoint(FIX "unet_sd", 0, 1);
    keep_matches_checkpoint(FIX "unet_sd", 1, 1);
    keep_matches_checkpoint(FIX "unet_sd", 1, 0);
}

Test(unet_adapters, keep_mode_equals_checkpointing_sdxl) {
    keep_matches_checkpoint(FIX "unet_sdxl", 0, 1);
    keep_matches_checkpoint(FIX "unet_sdxl", 1, 1);
    keep_matches_checkpoint(FIX "unet_sdxl", 0, 0);
}

/* UNET_KEEP_AUTO keeps when the arena has room (the tests' 64 MiB) and checkpoints per block
 * in an arena that checkpointing fits and keeping does not, with the same gradients. */
Test(unet_adapters, auto_keep_falls_back_to_checkpointing_in_a_small_arena) {
    size_t n1, n2, n3, p1, p2, p3;
    int k1, k2, k3;
    float *on = grads_mode(open_cpu(), FIX "unet_sd", 1, UNET_KEEP_AUTO, 1, &n1, &k1, &p1);
    float *off = grads_mode(open_cpu(), FIX "unet_sd", 1, UNET_KEEP_OFF, 1, &n2, &k2, &p2);
    cr_assert(k1, "64 MiB: not kept");
    cr_assert(p1 > p2 + (p2 >> 3), "keep mode's arena peak %zu B is not above "
              "checkpointing's %zu B", p1, p2);
    Backend *be = NULL;
    Err err = {0};
    BackendConfig cfg = {.threads = 2, .arena_bytes = p2 + ((size_t)64 << 10)};
    cr_assert_eq(backend_open("cpu", &cfg, &be, NULL, 0, &err), 0, "%s", err.msg);
    float *small = grads_mode(be, FIX "unet_sd", 1, UNET_KEEP_AUTO, 1, &n3, &k3, &p3);
    cr_assert(!k3, "an arena of %zu B (keep mode needs %zu B) was kept", cfg.arena_bytes, p1);
    cr_assert_eq(n1, n3);
    cr_assert_eq(memcmp(small, on, sizeof(float) * n1), 0, "the gradients differ");
    cr_assert_eq(memcmp(small, off, sizeof(float) * n1), 0, "the gradients differ");
    free(on), free(off), free(small);
}
