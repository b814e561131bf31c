/* The ops of the UNet (backend.h): unet_add (residuals, the per-channel time embedding),
 * unet_transpose (feature maps to tokens and back) and upsample_nearest (forward and backward) on the CPU backend and on the emulated CUDA
 * backend against plain loops, in place where allowed, and their argument checks. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "backend_impl.h"

static Backend *open_kind(int emu) {
    Backend *be = NULL;
    Err err = {0};
    int rc = emu ? backend_emu_open(NULL, &be, &err)
                 : backend_open("cpu", &(BackendConfig){.threads = 2}, &be, NULL, 0, &err);
    cr_assert_eq(rc, 0, "%s", err.msg);
    return be;
}

static float val(int i) { return (float)((i * 37) % 101) / 17.0f - 3.0f; }

static Tensor dev(Backend *be, int nd, const int64_t *shape, int seed) {
    Tensor d = backend_tensor_new(be, DTYPE_F32, nd, shape);
    size_t n = (size_t)tensor_numel(&d);
    float *h = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        h[i] = val((int)i + seed);
    Tensor hv = tensor_view(h, nd, shape);
    backend_upload(be, &d, &hv);
    free(h);
    return d;
}

static float *host(Backend *be, const Tensor *d) {
    size_t n = (size_t)tensor_numel(d);
    float *h = malloc(n * sizeof(float));
    Tensor hv = tensor_view(h, d->n_dims, d->shape);
    backend_download(be, &hv, d);
    Err err = {0};
    cr_assert_eq(backend_sync(be, &err), 0, "%s", err.msg);
    return h;
}

static void add_case(int emu) {
    Backend *be = open_kind(emu);
    int64_t s3[3] = {2, 5, 67}, s2[2] = {2, 5};
    int n = 2 * 5 * 67;
    Tensor a = dev(be, 3, s3, 0), b = dev(be, 3, s3, 11), c = dev(be, 2, s2, 5);
    Tensor o = backend_tensor_new(be, DTYPE_F32, 3, s3);
    for (int mode = 0; mode < 4; mode++) {
        const Tensor *bb = mode & 1 ? NULL : &b, *cc = mode & 2 ? NULL : &c;
        backend_unet_add(be, &o, &a, bb, cc);
        float *got = host(be, &o);
        for (int i = 0; i < n; i++) {
            float want = val(i) + (bb ? val(i + 11) : 0.0f) + (cc ? val(i / 67 + 5) : 0.0f);
            cr_assert_eq(got[i], want, "%s mode %d [%d]: %g, want %g", backend_name(be), mode, i,
                         got[i], want);
        }
        free(got);
    }
    backend_unet_add(be, &a, &a, &b, &c); /* in place, as the residuals use it */
    float *got = host(be, &a);
    for (int i = 0; i < n; i++)
        cr_assert_eq(got[i], val(i) + val(i + 11) + val(i / 67 + 5));
    free(got);
    Tensor *ts[] = {&a, &b, &c, &o};
    for (int i = 0; i < 4; i++)
        backend_tensor_free(be, ts[i]);
    backend_close(be);
}

static void transpose_case(int emu) {
    Backend *be = open_kind(emu);
    int64_t si[3] = {3, 45, 70}, so[3] = {3, 70, 45};
    Tensor in = dev(be, 3, si, 0), out = backend_tensor_new(be, DTYPE_F32, 3, so);
    backend_unet_transpose(be, &out, &in);
    float *got = host(be, &out);
    for (int b = 0; b < 3; b++)
        for (int r = 0; r < 45; r++)
            for (int c = 0; c < 70; c++)
                cr_assert_eq(got[(b * 70 + c) * 45 + r], val((b * 45 + r) * 70 + c));
    free(got);
    backend_tensor_free(be, &in);
    backend_tensor_free(be, &out);
    backend_close(be);
}

/* upsample_nearest's source indices as PyTorch 2.15's F.interpolate(size=, mode="nearest")
 * gave them (printed from torch for x = arange(in)): 3→5, 5→9, 2→3, 7→4 (shrinking), 9→17,
 * 4→8 (exactly 2×). */
static const struct {
    int in, out, src[17];
} torch_nearest[] = {
    {3, 5, {0, 0, 1, 1, 2}},
    {5, 9, {0, 0, 1, 1, 2, 2, 3, 3, 4}},
    {2, 3, {0, 0, 1}},
    {7, 4, {0, 1, 3, 5}},
    {9, 17, {0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8}},
    {4, 8, {0, 0, 1, 1, 2, 2, 3, 3}},
};

/* Forward: every (rows, columns) pair of the table above, on 2×3 planes, against the indices
 * torch gave; backward: every output gradient added into its source pixel, on top of a
 * pre-filled dinp (the gradient rule). */
static void nearest_case(int emu) {
    Backend *be = open_kind(emu);
    int nt = (int)(sizeof torch_nearest / sizeof torch_nearest[0]);
    for (int ty = 0; ty < nt; ty++)
        for (int tx = 0; tx < nt; tx += 2) {
            int H = torch_nearest[ty].in, Ho = torch_nearest[ty].out;
            int W = torch_nearest[tx].in, Wo = torch_nearest[tx].out, P = 6;
            const int *sy = torch_nearest[ty].src, *sx = torch_nearest[tx].src;
            int64_t si[4] = {2, 3, H, W}, so[4] = {2, 3, Ho, Wo};
            Tensor in = dev(be, 4, si, 3), out = dev(be, 4, so, 0);
            backend_upsample_nearest_forward(be, &out, &in);
            float *got = host(be, &out);
            for (int p = 0; p < P; p++)
                for (int y = 0; y < Ho; y++)
                    for (int x = 0; x < Wo; x++) {
                        float want = val((p * H + sy[y]) * W + sx[x] + 3);
                        cr_assert_eq(got[(p * Ho + y) * Wo + x], want,
                                     "%s %dx%d -> %dx%d plane %d (%d,%d)", backend_name(be), H,
                                     W, Ho, Wo, p, y, x);
                    }
            free(got);
            Tensor dout = dev(be, 4, so, 7), din = dev(be, 4, si, 1);
            backend_upsample_nearest_backward(be, &din, &dout);
            got = host(be, &din);
            float *want = malloc(sizeof(float) * (size_t)(P * H * W));
            for (int i = 0; i < P * H * W; i++)
                want[i] = val(i + 1);
            for (int p = 0; p < P; p++)
                for (int y = 0; y < Ho; y++)
                    for (int x = 0; x < Wo; x++)
                        want[(p * H + sy[y]) * W + sx[x]] += val((p * Ho + y) * Wo + x + 7);
            for (int i = 0; i < P * H * W; i++)
                cr_assert_float_eq(got[i], want[i], 1e-5f, "%s backward %dx%d -> %dx%d [%d]: %g,"
                                   " want %g", backend_name(be), H, W, Ho, Wo, i, got[i],
                                   want[i]);
            free(got);
            free(want);
            Tensor *ts[] = {&in, &out, &dout, &din};
            for (int i = 0; i < 4; i++)
                backend_tensor_free(be, ts[i]);
        }
    backend_close(be);
}

Test(unet_ops, upsample_nearest_cpu) { nearest_case(0); }
Test(unet_ops, upsample_nearest_emu) { nearest_case(1); }

/* Wrong batch or channels and aliasing fail the backend, naming the op and the argument. */
Test(unet_ops, upsample_nearest_arguments_checked) {
    Backend *be = open_kind(0);
    Tensor a = dev(be, 4, (int64_t[4]){2, 3, 4, 5}, 0), b = dev(be, 4, (int64_t[4]){2, 2, 7, 9}, 0);
    Err err = {0};
    backend_upsample_nearest_forward(be, &b, &a);
    cr_assert_neq(backend_sync(be, &err), 0);
    cr_assert(strstr(err.msg, "upsample_nearest_forward: out dimension 1 is 2, expected 3"), "%s",
              err.msg);
    backend_upsample_nearest_forward(be, &a, &a);
    cr_assert_neq(backend_sync(be, &err), 0);
    cr_assert(strstr(err.msg, "upsample_nearest_forward: out must not alias inp"), "%s", err.msg);
    backend_upsample_nearest_backward(be, &b, &a);
    cr_assert_neq(backend_sync(be, &err), 0);
    cr_assert(strstr(err.msg, "upsample_nearest_backward: dinp dimension 1"), "%s", err.msg);
    backend_tensor_free(be, &a);
    backend_tensor_free(be, &b);
    backend_close(be);
}

Test(unet_ops, add_cpu) { add_case(0); }
Test(unet_ops, add_emu) { add_case(1); }
Test(unet_ops, transpose_cpu) { transpose_case(0); }
Test(unet_ops, transpose_emu) { transpose_case(1); }

/* A wrong shape, an aliased transpose and a half activation fail the backend, naming the op
 * and the argument. */
Test(unet_ops, arguments_checked) {
    Backend *be = open_kind(0);
    int64_t s3[3] = {2, 4, 6}, s2[2] = {2, 3}, st[3] = {2, 6, 4};
    Tensor a = dev(be, 3, s3, 0), c = dev(be, 2, s2, 0), t = dev(be, 3, st, 0);
    Err err = {0};
    backend_unet_add(be, &a, &a, NULL, &c);
    cr_assert_neq(backend_sync(be, &err), 0);
    cr_assert(strstr(err.msg, "unet_add: chan dimension 1 is 3, expected 4"), "%s", err.msg);
    backend_unet_transpose(be, &a, &a);
    cr_assert_neq(backend_sync(be, &err), 0);
    cr_assert(strstr(err.msg, "unet_transpose: out dimension 1"), "%s", err.msg);
    Tensor sq = dev(be, 3, (int64_t[3]){2, 4, 4}, 0);
    backend_unet_transpose(be, &sq, &sq);
    cr_assert_neq(backend_sync(be, &err), 0);
    cr_assert(strstr(err.msg, "unet_transpose: out must not alias inp"), "%s", err.msg);
    Tensor h = backend_tensor_new(be, DTYPE_BF16, 3, s3);
    backend_unet_add(be, &a, &h, NULL, NULL);
    cr_assert_neq(backend_sync(be, &err), 0);
    cr_assert(strstr(err.msg, "unet_add: a is bf16"), "%s", err.msg);
    backend_unet_transpose(be, &t, &a);
    cr_assert_eq(backend_sync(be, &err), 0, "%s", err.msg);
    Tensor *ts[] = {&a, &c, &t, &sq, &h};
    for (int i = 0; i < 5; i++)
        backend_tensor_free(be, ts[i]);
    backend_close(be);
}
