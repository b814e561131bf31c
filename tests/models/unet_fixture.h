/* unet_fixture — the fixtures of tests/models/make_unet_fixtures.py run through unet_forward,
 * shared by test_unet.c (CPU, emu), test_unet_grad.c and test_gpu_unet.c (a real GPU). Static
 * helpers for Criterion tests (inline: a file uses the ones it needs); include once per file. */
#ifndef EASEL_TEST_UNET_FIXTURE_H
#define EASEL_TEST_UNET_FIXTURE_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend.h"
#include "backend_impl.h"
#include "base.h"
#include "fmt_safetensors.h"
#include "sd_weights.h"
#include "unet.h"

#define FIX "tests/models/fixtures/"

/* A fixture tensor as f32 (malloc'd), checking its element count when n > 0. */
static inline float *fix_read(SafeTensors *st, const char *name, size_t *n_out, int64_t *shape) {
    const StTensor *t = safetensors_find(st, name);
    cr_assert_not_null(t, "fixture tensor %s missing", name);
    float *p = xmalloc(sizeof(float) * (size_t)t->n_elem);
    Err err = {0};
    cr_assert_eq(safetensors_read_f32(st, t, p, (size_t)t->n_elem, &err), 0, "%s", err.msg);
    if (n_out)
        *n_out = (size_t)t->n_elem;
    if (shape)
        for (int i = 0; i < t->n_dim; i++)
            shape[i] = t->shape[i];
    return p;
}

static inline Tensor dev_from(Backend *be, float *host, int nd, const int64_t *shape) {
    Tensor d = backend_tensor_new(be, DTYPE_F32, nd, shape);
    Tensor h = tensor_view(host, nd, shape);
    backend_upload(be, &d, &h);
    return d;
}

/* A CPU backend of 2 threads and the emulated CUDA backend, both with a 64 MiB arena. */
static inline Backend *open_cpu(void) {
    Backend *be = NULL;
    Err err = {0};
    BackendConfig cfg = {.threads = 2, .arena_bytes = (size_t)64 << 20};
    cr_assert_eq(backend_open("cpu", &cfg, &be, NULL, 0, &err), 0, "%s", err.msg);
    return be;
}

static inline Backend *open_emu(void) {
    Backend *be = NULL;
    Err err = {0};
    BackendConfig cfg = {.arena_bytes = (size_t)64 << 20};
    cr_assert_eq(backend_emu_open(&cfg, &be, &err), 0, "%s", err.msg);
    return be;
}

/* Run fixture DIR's case CASE on be with resident DTYPE; returns max |got − want| and sets
 * *scale to max |want|. */
static inline double run_case(Backend *be, const char *dir, const char *cs, DType dtype, double *scale) {
    Err err = {0};
    SdWeights *w = NULL;
    cr_assert_eq(sd_weights_open(dir, "unet", &w, &err), 0, "%s", err.msg);
    Unet *u = NULL;
    UnetOptions o = {dtype};
    cr_assert_eq(unet_load(w, be, &o, &u, &err), 0, "%s", err.msg);
    char io_path[512], name[64];
    snprintf(io_path, sizeof io_path, "%s/io.safetensors", dir);
    SafeTensors *io = safetensors_open(io_path, &err);
    cr_assert_not_null(io, "%s", err.msg);
    int64_t xs[4], es[3], ts[2];
    size_t n_out;
#define GET(field, shp, np) (snprintf(name, sizeof name, "%s.%s", cs, field), \
                             fix_read(io, name, np, shp))
    float *x = GET("sample", xs, NULL), *t = GET("timesteps", NULL, NULL);
    float *ehs = GET("ehs", es, NULL), *want = GET("out", NULL, &n_out);
    float *te = NULL, *tid = NULL;
    Tensor dx = dev_from(be, x, 4, xs), de = dev_from(be, ehs, 3, es), dte = {0};
    if (unet_config(u)->text_time) {
        te = GET("text_embeds", ts, NULL);
        tid = GET("time_ids", NULL, NULL);
        dte = dev_from(be, te, 2, ts);
    }
#undef GET
    int64_t os[4] = {xs[0], unet_config(u)->out_channels, xs[2], xs[3]};
    Tensor dout = backend_tensor_new(be, DTYPE_F32, 4, os);
    int rc = unet_forward(u, be, &dout, &dx, t, &de, te ? &dte : NULL, tid, &err);
    cr_assert_eq(rc, 0, "%s", err.msg);
    float *got = xmalloc(sizeof(float) * n_out);
    Tensor hg = tensor_view(got, 4, os);
    backend_download(be, &hg, &dout);
    cr_assert_eq(backend_sync(be, &err), 0, "%s", err.msg);
    double md = 0, mw = 0;
    for (size_t i = 0; i < n_out; i++) {
        double d = fabs((double)got[i] - want[i]);
        cr_assert(d == d, "NaN at %zu", i);
        md = d > md ? d : md;
        mw = fabs(want[i]) > mw ? fabs(want[i]) : mw;
    }
    *scale = mw;
    backend_tensor_free(be, &dx);
    backend_tensor_free(be, &de);
    backend_tensor_free(be, &dout);
    if (dte.ptr)
        backend_tensor_free(be, &dte);
    free(x), free(t), free(ehs), free(want), free(te), free(tid), free(got);
    safetensors_close(io);
    unet_free(u);
    sd_weights_close(w);
    return md;
}

#endif
