/* UNet adapters (issue 16): LoRA and DoRA on every linear and conv layer of the tiny SD- and
 * SDXL-shaped fixture UNets (tests/models/make_unet_grad_fixtures.py: PEFT's
 * LoraConfig(r=4, lora_alpha=8, target_modules=ALL, use_dora=False/True) through diffusers,
 * B and m set randomly): DoRA's magnitude initialisation equals PEFT's, and one
 * unet_forward_backward gives the output, dx and every dA, dB, dm within 1e-4 of torch's
 * (f32, CPU); the emulated CUDA backend gives the CPU's on a subset (DoRA on linear and conv
 * layers, the time embedding's included); a bf16 base gives gradients close to the f32 base's;
 * export / import round-trips and refuses a mismatched set naming the entry; an unknown target
 * is an error naming it. */
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
