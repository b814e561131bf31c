/* unet backward and LoRA (issue 16): on the tiny SD- and SDXL-shaped fixture UNets of
 * tests/models/make_unet_fixtures.py, unet_backward's gradients of L = Σ out·R w.r.t. the
 * input latents and the LoRA adapters' A and B match central finite differences of
 * unet_forward (f32, a few entries), and match torch autograd through diffusers + PEFT
 * (tests/models/make_unet_grad_fixtures.py: LoraConfig(r=4, lora_alpha=8), B non-zero) within
 * 1e-4, on the CPU backend and on the emulated CUDA backend (small). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "backend_impl.h"
#include "base.h"
#include "fmt_safetensors.h"
#include "rng.h"
#include "sd_weights.h"
#include "unet.h"

#include "unet_fixture.h"

/* A fixture case loaded on a backend: the inputs on the device and on the host. */
typedef struct Case {
    Backend *be;
    SdWeights *w;
    Unet *u;
    int64_t xs[4], os[4];
    size_t nx, no;
    float *x, *t, *ehs, *te, *tid, *R;
    Tensor dx, de, dte, dout;
} Case;

static void case_open_dt(Case *c, Backend *be, const char *dir, const char *cs, DType dt) {
    memset(c, 0, sizeof *c);
    c->be = be;
    Err err = {0};
    cr_assert_eq(sd_weights_open(dir, "unet", &c->w, &err), 0, "%s", err.msg);
    UnetOptions o = {dt};
    cr_assert_eq(unet_load(c->w, be, &o, &c->u, &err), 0, "%s", err.msg);
    char path[512], name[64];
    snprintf(path, sizeof path, "%s/io.safetensors", dir);
    SafeTensors *io = safetensors_open(path, &err);
    cr_assert_not_null(io, "%s", err.msg);
    int64_t es[3], ts[2];
#define GET(f, shp, np) (snprintf(name, sizeof name, "%s.%s", cs, f), fix_read(io, name, np, shp))
    c->x = GET("sample", c->xs, &c->nx);
    c->t = GET("timesteps", NULL, NULL);
    c->ehs = GET("ehs", es, NULL);
    c->dx = dev_from(be, c->x, 4, c->xs);
    c->de = dev_from(be, c->ehs, 3, es);
    if (unet_config(c->u)->text_time) {
        c->te = GET("text_embeds", ts, NULL);
        c->tid = GET("time_ids", NULL, NULL);
        c->dte = dev_from(be, c->te, 2, ts);
    }
#undef GET
    safetensors_close(io);
    memcpy(c->os, c->xs, sizeof c->os);
    c->os[1] = unet_config(c->u)->out_channels;
    c->no = (size_t)(c->os[0] * c->os[1] * c->os[2] * c->os[3]);
    c->dout = backend_tensor_new(be, DTYPE_F32, 4, c->os);
    c->R = xmalloc(sizeof(float) * c->no);
    Rng rng;
    rng_init(&rng, 7);
    for (size_t i = 0; i < c->no; i++)
        c->R[i] = rng_normal(&rng);
}

static void case_open(Case *c, Backend *be, const char *dir, const char *cs) {
    case_open_dt(c, be, dir, cs, DTYPE_F32);
}

static void case_close(Case *c) {
    backend_tensor_free(c->be, &c->dx);
    backend_tensor_free(c->be, &c->de);
    backend_tensor_free(c->be, &c->dout);
    if (c->dte.ptr)
        backend_tensor_free(c->be, &c->dte);
    free(c->x), free(c->t), free(c->ehs), free(c->te), free(c->tid), free(c->R);
    unet_free(c->u);
    sd_weights_close(c->w);
    backend_close(c->be);
}

/* L = Σ out·R for the latents on the device now. */
static double loss(Case *c) {
    Err err = {0};
    cr_assert_eq(unet_forward(c->u, c->be, &c->dout, &c->dx, c->t, &c->de,
                              c->te ? &c->dte : NULL, c->tid, &err), 0, "%s", err.msg);
    float *o = xmalloc(sizeof(float) * c->no);
    Tensor h = tensor_view(o, 4, c->os);
    backend_download(c->be, &h, &c->dout);
    cr_assert_eq(backend_sync(c->be, &err), 0, "%s", err.msg);
    double L = 0;
    for (size_t i = 0; i < c->no; i++)
        L += (double)o[i] * c->R[i];
    free(o);
    return L;
}

/* unet_backward for dout = R: the input gradient into gx (host, nx floats). */
static void backward(Case *c, float *gx) {
    Err err = {0};
    Tensor R = dev_from(c->be, c->R, 4, c->os);
    Tensor g = backend_tensor_new(c->be, DTYPE_F32, 4, c->xs);
    backend_zero(c->be, &g);
    unet_lora_zero_grad(c->u);
    cr_assert_eq(unet_backward(c->u, c->be, &g, &R, &c->dx, c->t, &c->de,
                               c->te ? &c->dte : NULL, c->tid, &err), 0, "%s", err.msg);
    Tensor h = tensor_view(gx, 4, c->xs);
    backend_download(c->be, &h, &g);
    cr_assert_eq(backend_sync(c->be, &err), 0, "%s", err.msg);
    backend_tensor_free(c->be, &g);
    backend_tensor_free(c->be, &R);
}

/* Host copy of a device tensor. */
static float *down(Backend *be, const Tensor *t) {
    float *h = xmalloc(sizeof(float) * (size_t)tensor_numel(t));
    Tensor v = tensor_view(h, t->n_dims, t->shape);
    backend_download(be, &v, t);
    Err err = {0};
    cr_assert_eq(backend_sync(be, &err), 0, "%s", err.msg);
    return h;
}

static void up(Backend *be, const Tensor *t, float *h) {
    Tensor v = tensor_view(h, t->n_dims, t->shape);
    backend_upload(be, t, &v);
    Err err = {0};
    cr_assert_eq(backend_sync(be, &err), 0, "%s", err.msg);
}

/* Central difference of L in element i of host array p (mirrored on device tensor t). */
static double fd(Case *c, const Tensor *t, float *p, size_t i, float h) {
    float v = p[i];
    p[i] = v + h;
    up(c->be, t, p);
    double lp = loss(c);
    p[i] = v - h;
    up(c->be, t, p);
    double lm = loss(c);
    p[i] = v;
    up(c->be, t, p);
    return (lp - lm) / (2.0 * (double)h);
}

static void check_fd(const char *what, double got, double want, double scale) {
    double d = fabs(got - want);
    cr_log_info("%s: backward %g, finite difference %g", what, got, want);
    cr_assert(d <= 2e-3 * scale + 1e-3 * fabs(want), "%s: backward %g, finite difference %g",
              what, got, want);
}

static double absmax(const float *p, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fabs(p[i]) > m ? fabs(p[i]) : m;
    return m;
}

static size_t argmax(const float *p, size_t n) {
    size_t b = 0;
    for (size_t i = 1; i < n; i++)
        b = fabsf(p[i]) > fabsf(p[b]) ? i : b;
    return b;
}

static void input_grad_fd_case(const char *dir, const char *cs) {
    Case c;
    case_open(&c, open_cpu(), dir, cs);
    float *gx = xmalloc(sizeof(float) * c.nx);
    backward(&c, gx);
    double scale = absmax(gx, c.nx);
    cr_assert(scale > 1e-3, "degenerate input gradient (max %g)", scale);
    size_t idx[] = {0, 17, c.nx / 2 + 5, c.nx - 1};
    for (size_t k = 0; k < ARRAY_LEN(idx); k++) {
        char what[64];
        snprintf(what, sizeof what, "%s dL/dx[%zu]", dir, idx[k]);
        check_fd(what, gx[idx[k]], fd(&c, &c.dx, c.x, idx[k], 1e-2f), scale);
    }
    free(gx);
    case_close(&c);
}

static void input_grad_fd(const char *dir) { input_grad_fd_case(dir, "s"); }

Test(unet_grad, input_gradient_matches_finite_differences_sd) { input_grad_fd(FIX "unet_sd"); }
/* 9×7 latents (case "o"): the downsamplers round up and the upsamplers resize to the skips'
 * sizes (upsample_nearest and its backward); the three-level model does so twice. */
Test(unet_grad, input_gradient_matches_finite_differences_odd_size) {
    input_grad_fd_case(FIX "unet_sd", "o");
    input_grad_fd_case(FIX "unet_deep", "o");
}
Test(unet_grad, input_gradient_matches_finite_differences_sdxl) {
    input_grad_fd(FIX "unet_sdxl");
}

/* LoRA on every targeted layer, with B set non-zero: dA and dB of a few adapters against
 * finite differences. */
Test(unet_grad, lora_gradients_match_finite_differences) {
    Case c;
    case_open(&c, open_cpu(), FIX "unet_sd", "s");
    Err err = {0};
    const char *tg[] = {"to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2"};
    cr_assert_eq(unet_lora_add(c.u, 4, 8.0f, tg, 6, 1, &err), 0, "%s", err.msg);
    int n = unet_lora_count(c.u);
    /* SD: transformers 2 down, 1 mid, 3 up; 10 linear layers each */
    cr_assert_eq(n, (2 + 1 + 3) * 10, "adapters: %d", n);
    Rng rng;
    rng_init(&rng, 3);
    for (int i = 0; i < n; i++) {
        Tensor B;
        unet_lora_get(c.u, i, NULL, &B, NULL, NULL);
        float *h = down(c.be, &B);
        for (int64_t k = 0; k < tensor_numel(&B); k++)
            h[k] = 0.05f * rng_normal(&rng);
        up(c.be, &B, h);
        free(h);
    }
    float *gx = xmalloc(sizeof(float) * c.nx);
    backward(&c, gx);
    int pick[] = {0, 5, 9, n - 1};
    for (size_t k = 0; k < ARRAY_LEN(pick); k++) {
        Tensor A, B, dA, dB;
        const char *name = unet_lora_get(c.u, pick[k], &A, &B, &dA, &dB);
        float *ga = down(c.be, &dA), *gb = down(c.be, &dB);
        float *ha = down(c.be, &A), *hb = down(c.be, &B);
        size_t na = (size_t)tensor_numel(&A), nb = (size_t)tensor_numel(&B);
        double sa = absmax(ga, na), sb = absmax(gb, nb);
        cr_assert(sa > 1e-4 && sb > 1e-4, "%s: degenerate gradients (%g, %g)", name, sa, sb);
        char what[256];
        size_t ia = argmax(ga, na), ib = argmax(gb, nb); /* FD noise is smallest there */
        snprintf(what, sizeof what, "%s dA[%zu]", name, ia);
        check_fd(what, ga[ia], fd(&c, &A, ha, ia, 1e-2f), sa);
        snprintf(what, sizeof what, "%s dB[%zu]", name, ib);
        check_fd(what, gb[ib], fd(&c, &B, hb, ib, 1e-2f), sb);
        free(ga), free(gb), free(ha), free(hb);
    }
    free(gx);
    case_close(&c);
}

/* max |got − want| over n, and max |want| into *scale. */
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

/* The fixture's adapters (A, B) loaded, unet_backward for its R: dx, every dA and dB within
 * tol of torch autograd's. */
static void check_torch(Backend *be, const char *dir, double tol) {
    Case c;
    case_open(&c, be, dir, "s");
    Err err = {0};
    const char *tg[] = {"to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2"};
    cr_assert_eq(unet_lora_add(c.u, 4, 8.0f, tg, 6, 1, &err), 0, "%s", err.msg);
    char path[512], name[256];
    snprintf(path, sizeof path, "%s/grad.safetensors", dir);
    SafeTensors *g = safetensors_open(path, &err);
    cr_assert_not_null(g, "%s", err.msg);
    free(c.R);
    size_t nr;
    c.R = fix_read(g, "R", &nr, NULL);
    cr_assert_eq(nr, c.no);
    int n = unet_lora_count(c.u);
    for (int i = 0; i < n; i++) {
        Tensor A, B;
        const char *m = unet_lora_get(c.u, i, &A, &B, NULL, NULL);
        snprintf(name, sizeof name, "%s.A", m);
        float *h = fix_read(g, name, NULL, NULL);
        up(be, &A, h);
        free(h);
        snprintf(name, sizeof name, "%s.B", m);
        h = fix_read(g, name, NULL, NULL);
        up(be, &B, h);
        free(h);
    }
    float *gx = xmalloc(sizeof(float) * c.nx), *want = fix_read(g, "dx", NULL, NULL);
    backward(&c, gx);
    double scale, md = maxdiff(gx, want, c.nx, &scale);
    cr_log_info("%s on %s: dx max |easel − torch| %g (max %g)", dir, backend_name(be), md, scale);
    cr_assert(scale > 0.1 && md <= tol, "%s on %s: dx max |easel − torch| %g (max %g)", dir,
              backend_name(be), md, scale);
    free(want);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        Tensor dA, dB;
        const char *m = unet_lora_get(c.u, i, NULL, NULL, &dA, &dB);
        const Tensor *ts[2] = {&dA, &dB};
        for (int k = 0; k < 2; k++) {
            snprintf(name, sizeof name, "%s.%s", m, k ? "dB" : "dA");
            float *w = fix_read(g, name, NULL, NULL), *got = down(be, ts[k]);
            double s, d = maxdiff(got, w, (size_t)tensor_numel(ts[k]), &s);
            cr_assert(s > 1e-4, "%s: degenerate torch gradient (max %g)", name, s);
            cr_assert(d <= tol, "%s on %s: max |easel − torch| %g (max %g)", name,
                      backend_name(be), d, s);
            worst = d > worst ? d : worst;
            free(w), free(got);
        }
    }
    cr_log_info("%s on %s: %d adapters, dA/dB max |easel − torch| %g", dir, backend_name(be), n,
                worst);
    free(gx);
    safetensors_close(g);
    case_close(&c);
}

Test(unet_grad, sd_lora_matches_torch_cpu) { check_torch(open_cpu(), FIX "unet_sd", 1e-4); }
Test(unet_grad, sdxl_lora_matches_torch_cpu) { check_torch(open_cpu(), FIX "unet_sdxl", 1e-4); }
/* One backward of the SD-shaped fixture with DoRA adapters (A, B and m randomised) on a
 * subset of layers of every kind — a to_v layer, the time embedding's linear_1 (the gradient
 * through every ResNet's time_emb_proj and the embedding MLP), a ResNet's 3×3 conv1, a 1×1
 * conv shortcut, a stride-2 downsampler — on be, for seeded inputs of 4×4 latents: dx, then
 * every adapter tensor's gradient, concatenated (host, *n floats). */
static float *grads_small(Backend *be, size_t *n) {
    /* a subset (the adapter code is the same on every layer of a kind: each launch costs on
     * the emulator) */
    Err err = {0};
    SdWeights *w = NULL;
    Unet *u = NULL;
    cr_assert_eq(sd_weights_open(FIX "unet_sd", "unet", &w, &err), 0, "%s", err.msg);
    cr_assert_eq(unet_load(w, be, NULL, &u, &err), 0, "%s", err.msg);
    const char *tg[] = {"mid_block.attentions.0.transformer_blocks.0.attn2.to_v",
                        "time_embedding.linear_1", "down_blocks.0.resnets.0.conv1",
                        "up_blocks.0.resnets.0.conv_shortcut",
                        "down_blocks.0.downsamplers.0.conv"};
    UnetAdapterConfig cf = {4, 8.0f, 1, tg, (int)ARRAY_LEN(tg), 5};
    cr_assert_eq(unet_adapter_add(u, &cf, &err), 0, "%s", err.msg);
    Rng rng;
    rng_init(&rng, 9);
    int np = unet_adapter_param_count(u);
    for (int i = 0; i < np; i++) {
        Tensor p;
        const char *nm = unet_adapter_param(u, i, &p, NULL);
        int mag = strstr(nm, "magnitude") != NULL;
        float *h = down(be, &p);
        for (int64_t k = 0; k < tensor_numel(&p); k++)
            h[k] = mag ? h[k] * (1.0f + 0.1f * rng_normal(&rng)) : h[k] + 0.05f * rng_normal(&rng);
        up(be, &p, h);
        free(h);
    }
    int64_t xs[4] = {1, 4, 4, 4}, es[3] = {1, 3, 24};
    float hx[64], he[72], hr[64], t = 321.0f;
    for (int i = 0; i < 64; i++)
        hx[i] = rng_normal(&rng), hr[i] = rng_normal(&rng);
    for (int i = 0; i < 72; i++)
        he[i] = rng_normal(&rng);
    Tensor x = dev_from(be, hx, 4, xs), e = dev_from(be, he, 3, es), r = dev_from(be, hr, 4, xs);
    Tensor dx = backend_tensor_new(be, DTYPE_F32, 4, xs);
    backend_zero(be, &dx);
    cr_assert_eq(unet_backward(u, be, &dx, &r, &x, &t, &e, NULL, NULL, &err), 0, "%s",
                 err.msg);
    size_t tot = 64;
    for (int i = 0; i < np; i++) {
        Tensor g;
        unet_adapter_param(u, i, NULL, &g);
        tot += (size_t)tensor_numel(&g);
    }
    float *all = xmalloc(sizeof(float) * tot), *p = down(be, &dx);
    memcpy(all, p, sizeof(float) * 64);
    free(p);
    size_t at = 64;
    for (int i = 0; i < np; i++) {
        Tensor g;
        unet_adapter_param(u, i, NULL, &g);
        p = down(be, &g);
        memcpy(all + at, p, sizeof(float) * (size_t)tensor_numel(&g));
        at += (size_t)tensor_numel(&g);
        free(p);
    }
    *n = tot;
    backend_tensor_free(be, &x), backend_tensor_free(be, &e), backend_tensor_free(be, &r);
    backend_tensor_free(be, &dx);
    unet_free(u);
    sd_weights_close(w);
    backend_close(be);
    return all;
}

/* The CUDA backend's ops on the host harness (every emulated launch starts a thread per GPU
 * thread: 4×4 latents) give the CPU backend's input and adapter gradients (DoRA on linear
 * and conv layers, the kern_dora.h kernels included). */
Test(unet_grad, emu_matches_cpu, .timeout = 300) {
    size_t nc, ne;
    float *c = grads_small(open_cpu(), &nc), *e = grads_small(open_emu(), &ne);
    cr_assert_eq(nc, ne);
    double s, d = maxdiff(e, c, nc, &s);
    cr_log_info("emu vs cpu: %zu gradient values, max |diff| %g (max %g)", nc, d, s);
    cr_assert(s > 0.1 && d <= 1e-4 * s, "emu vs cpu: max |diff| %g (max %g)", d, s);
    free(c), free(e);
}

/* Host copy of unet_forward's output for the case's inputs. */
static float *forward_out(Case *c) {
    (void)loss(c);
    return down(c->be, &c->dout);
}

/* A new adapter (B zero) leaves the output as the base's; with B non-zero it changes it, and
 * switched off (the reference model) the output is the base's again, bit for bit. */
Test(unet_grad, lora_starts_at_the_base_and_switches_off) {
    Case c;
    case_open(&c, open_cpu(), FIX "unet_sd", "s");
    Err err = {0};
    float *base = forward_out(&c);
    const char *tg[] = {"attn2.to_k", "ff.net.2"};
    cr_assert_eq(unet_lora_add(c.u, 4, 8.0f, tg, 2, 1, &err), 0, "%s", err.msg);
    cr_assert_eq(unet_lora_count(c.u), 2 * 6);
    float *o = forward_out(&c);
    cr_assert_eq(memcmp(o, base, sizeof(float) * c.no), 0, "B = 0 changed the output");
    free(o);
    Tensor B;
    unet_lora_get(c.u, 3, NULL, &B, NULL, NULL);
    float *h = down(c.be, &B);
    for (int64_t k = 0; k < tensor_numel(&B); k++)
        h[k] = 0.1f;
    up(c.be, &B, h);
    free(h);
    o = forward_out(&c);
    double s, d = maxdiff(o, base, c.no, &s);
    cr_assert(d > 1e-3, "a non-zero B did not change the output (%g)", d);
    free(o);
    unet_lora_enable(c.u, 0);
    o = forward_out(&c);
    cr_assert_eq(memcmp(o, base, sizeof(float) * c.no), 0, "switched off is not the base");
    /* and the backward then gives the adapters nothing */
    float *gx = xmalloc(sizeof(float) * c.nx);
    backward(&c, gx);
    Tensor dB;
    unet_lora_get(c.u, 3, NULL, NULL, NULL, &dB);
    float *g = down(c.be, &dB);
    cr_assert_eq(absmax(g, (size_t)tensor_numel(&dB)), 0.0);
    free(g), free(gx), free(o), free(base);
    case_close(&c);
}

/* Bad arguments are named: a target that matches no layer, a second unet_lora_add, a dx of
 * the wrong shape; an arena too small for the backward fails with the backend's ERR_NOMEM. */
Test(unet_grad, bad_arguments_are_errors) {
    Case c;
    case_open(&c, open_cpu(), FIX "unet_sd", "s");
    Err err = {0};
    const char *bad[] = {"to_q", "to_qq"};
    cr_assert_eq(unet_lora_add(c.u, 4, 8.0f, bad, 2, 1, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "\"to_qq\""), "%s", err.msg);
    cr_assert_eq(unet_lora_count(c.u), 0);
    const char *tg[] = {"to_q"};
    cr_assert_eq(unet_lora_add(c.u, 0, 8.0f, tg, 1, 1, &err), ERR_USAGE);
    cr_assert_eq(unet_lora_add(c.u, 4, 8.0f, tg, 1, 1, &err), 0, "%s", err.msg);
    cr_assert_eq(unet_lora_add(c.u, 4, 8.0f, tg, 1, 1, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "already"), "%s", err.msg);
    int64_t ws[4] = {1, 4, 8, 4};
    Tensor g = backend_tensor_new(c.be, DTYPE_F32, 4, ws);
    Tensor R = dev_from(c.be, c.R, 4, c.os);
    cr_assert_eq(unet_backward(c.u, c.be, &g, &R, &c.dx, c.t, &c.de, NULL, NULL, &err),
                 ERR_USAGE);
    cr_assert(strstr(err.msg, "unet_backward: dx"), "%s", err.msg);
    backend_tensor_free(c.be, &g);
    backend_tensor_free(c.be, &R);
    case_close(&c);

    Backend *be = NULL;
    BackendConfig cfg = {.threads = 1, .arena_bytes = (size_t)256 << 10};
    cr_assert_eq(backend_open("cpu", &cfg, &be, NULL, 0, &err), 0, "%s", err.msg);
    case_open(&c, be, FIX "unet_sd", "a"); /* batch 2, 16×16 */
    float *gx = xmalloc(sizeof(float) * c.nx);
    Tensor R2 = dev_from(be, c.R, 4, c.os);
    Tensor g2 = backend_tensor_new(be, DTYPE_F32, 4, c.xs);
    int rc = unet_backward(c.u, be, &g2, &R2, &c.dx, c.t, &c.de, NULL, NULL, &err);
    cr_assert_eq(rc, ERR_NOMEM, "rc %d: %s", rc, err.msg);
    cr_assert(strstr(err.msg, "arena"), "%s", err.msg);
    backend_tensor_free(be, &g2);
    backend_tensor_free(be, &R2);
    free(gx);
    case_close(&c);
}

/* A frozen half base (f16, bf16 resident weights; adapters and activations f32): the input
 * gradient stays within the dtype's error of the f32 base's (1 % / 5 % of its range). */
static void half_base(DType dt, double tol) {
    Case c;
    case_open(&c, open_cpu(), FIX "unet_sdxl", "s");
    float *g32 = xmalloc(sizeof(float) * c.nx), *gh = xmalloc(sizeof(float) * c.nx);
    backward(&c, g32);
    case_close(&c);
    case_open_dt(&c, open_cpu(), FIX "unet_sdxl", "s", dt);
    const char *tg[] = {"to_v"};
    Err err = {0};
    cr_assert_eq(unet_lora_add(c.u, 4, 8.0f, tg, 1, 1, &err), 0, "%s", err.msg);
    backward(&c, gh);
    double s, d = maxdiff(gh, g32, c.nx, &s);
    cr_log_info("%s base: dx max |diff| %g (max %g)", dtype_name(dt), d, s);
    cr_assert(d <= tol * s, "%s base: dx max |diff| %g (max %g)", dtype_name(dt), d, s);
    Tensor dA;
    unet_lora_get(c.u, 0, NULL, NULL, &dA, NULL);
    cr_assert_eq(dA.dtype, DTYPE_F32);
    free(g32), free(gh);
    case_close(&c);
}

Test(unet_grad, f16_base) { half_base(DTYPE_F16, 0.01); }
Test(unet_grad, bf16_base) { half_base(DTYPE_BF16, 0.05); }
