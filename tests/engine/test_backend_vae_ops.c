/* The ops of the VAE (backend.h: add, transpose, pad2d) on every backend — the CPU at 1 and 3
 * threads, the CUDA op code on the host harness ("emu"), and cuda:0 where a GPU exists —
 * against plain loops written here; and their argument checks (a half activation, a wrong
 * shape) fail the backend with a message naming the op and the argument. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend_impl.h"
#include "cuda.h"

static unsigned seed = 777;
static float frand(void) {
    seed = seed * 1664525u + 1013904223u;
    return ((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* A device tensor of SHAPE filled from the host array HOST (or random values when NULL). */
static Tensor dev(Backend *be, int nd, const int64_t *shape, const float *host) {
    Tensor t = backend_tensor_new(be, DTYPE_F32, nd, shape);
    int64_t n = tensor_numel(&t);
    float *h = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++)
        h[i] = host ? host[i] : frand();
    Tensor ht = tensor_view(h, nd, shape);
    backend_upload(be, &t, &ht);
    free(h);
    return t;
}

static float *host(Backend *be, const Tensor *t) {
    int64_t n = tensor_numel(t);
    float *h = malloc(sizeof(float) * (size_t)n);
    Tensor ht = tensor_view(h, t->n_dims, t->shape);
    backend_download(be, &ht, t);
    return h;
}

static void check_ops(Backend *be) {
    Err err = {0};
    /* add, with out aliasing a */
    const int64_t s4[4] = {2, 3, 5, 7};
    Tensor a = dev(be, 4, s4, NULL), b = dev(be, 4, s4, NULL), o = dev(be, 4, s4, NULL);
    float *ha = host(be, &a), *hb = host(be, &b);
    backend_add(be, &o, &a, &b);
    backend_add(be, &a, &a, &b);
    cr_assert_eq(backend_sync(be, &err), 0, "%s", err.msg);
    float *ho = host(be, &o), *ha2 = host(be, &a);
    for (int i = 0; i < 210; i++) {
        cr_assert_eq(ho[i], ha[i] + hb[i], "%s add[%d]", backend_name(be), i);
        cr_assert_eq(ha2[i], ha[i] + hb[i], "%s add in place[%d]", backend_name(be), i);
    }
    free(ho), free(ha2), free(hb);

    /* transpose (2,37,45) -> (2,45,37): several 32-blocks with ragged edges */
    const int64_t st[3] = {2, 37, 45}, sto[3] = {2, 45, 37};
    Tensor x = dev(be, 3, st, NULL), xt = dev(be, 3, sto, NULL);
    float *hx = host(be, &x);
    backend_unet_transpose(be, &xt, &x);
    cr_assert_eq(backend_sync(be, &err), 0, "%s", err.msg);
    float *hxt = host(be, &xt);
    for (int bb = 0; bb < 2; bb++)
        for (int m = 0; m < 37; m++)
            for (int n = 0; n < 45; n++)
                cr_assert_eq(hxt[(bb * 45 + n) * 37 + m], hx[(bb * 37 + m) * 45 + n],
                             "%s transpose b%d m%d n%d", backend_name(be), bb, m, n);
    free(hx), free(hxt);

    /* pad2d: (0,1,0,1) zero padding, and a window with both a crop and padding */
    const int64_t sp[4] = {2, 3, 5, 7}, spo[4] = {2, 3, 6, 8}, spw[4] = {2, 3, 4, 9};
    Tensor p = dev(be, 4, spo, NULL), w = dev(be, 4, spw, NULL);
    backend_pad2d_forward(be, &p, &b, 0, 0);
    backend_pad2d_forward(be, &w, &b, -2, 1);
    cr_assert_eq(backend_sync(be, &err), 0, "%s", err.msg);
    float *hp = host(be, &p), *hw = host(be, &w);
    hb = host(be, &b);
    (void)sp;
    for (int pl = 0; pl < 6; pl++) {
        for (int y = 0; y < 6; y++)
            for (int xx = 0; xx < 8; xx++) {
                float want = y < 5 && xx < 7 ? hb[(pl * 5 + y) * 7 + xx] : 0.0f;
                cr_assert_eq(hp[(pl * 6 + y) * 8 + xx], want, "%s pad plane %d (%d,%d)",
                             backend_name(be), pl, y, xx);
            }
        for (int y = 0; y < 4; y++)
            for (int xx = 0; xx < 9; xx++) {
                int yi = y + 2, xi = xx - 1;
                float want = yi < 5 && xi >= 0 && xi < 7 ? hb[(pl * 5 + yi) * 7 + xi] : 0.0f;
                cr_assert_eq(hw[(pl * 4 + y) * 9 + xx], want, "%s window plane %d (%d,%d)",
                             backend_name(be), pl, y, xx);
            }
    }
    free(hp), free(hw), free(hb), free(ha);
    Tensor *all[] = {&a, &b, &o, &x, &xt, &p, &w};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        backend_tensor_free(be, all[i]);
}

Test(backend_vae_ops, cpu_matches_the_loops) {
    for (int threads = 1; threads <= 3; threads += 2) {
        Backend *be = NULL;
        Err err = {0};
        BackendConfig cfg = {threads, 0};
        cr_assert_eq(backend_open("cpu", &cfg, &be, NULL, 0, &err), 0, "%s", err.msg);
        check_ops(be);
        backend_close(be);
    }
}

Test(backend_vae_ops, cuda_op_code_on_the_host_harness_matches_the_loops) {
    Backend *be = NULL;
    Err err = {0};
    cr_assert_eq(backend_emu_open(NULL, &be, &err), 0, "%s", err.msg);
    check_ops(be);
    backend_close(be);
}

Test(backend_vae_ops, cuda_matches_the_loops) {
    CudaDevice devs[4];
    int n = 0;
    char why[256];
    cuda_probe(devs, 4, &n, why, sizeof why);
    if (n == 0)
        cr_skip_test("no CUDA backend here: %s", why);
    Backend *be = NULL;
    Err err = {0};
    cr_assert_eq(backend_open("cuda:0", NULL, &be, NULL, 0, &err), 0, "%s", err.msg);
    check_ops(be);
    backend_close(be);
}

Test(backend_vae_ops, bad_arguments_are_named) {
    Backend *be = NULL;
    Err err = {0};
    cr_assert_eq(backend_open("cpu", NULL, &be, NULL, 0, &err), 0, "%s", err.msg);
    const int64_t s[3] = {1, 4, 6}, s2[3] = {1, 4, 5};
    Tensor a = dev(be, 3, s, NULL), b = dev(be, 3, s2, NULL);
    backend_add(be, &a, &a, &b);
    cr_assert_eq(backend_sync(be, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "add: b dimension 2 is 5, expected 6"), "%s", err.msg);
    backend_unet_transpose(be, &b, &a);
    cr_assert_eq(backend_sync(be, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "unet_transpose: out dimension 1 is 4, expected 6"), "%s",
              err.msg);
    Tensor h = backend_tensor_new(be, DTYPE_BF16, 3, s);
    backend_add(be, &h, &h, &h);
    cr_assert_eq(backend_sync(be, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "add: a is bf16, this op takes f32 only there"), "%s",
              err.msg);
    backend_pad2d_forward(be, &a, &a, 0, 0);
    cr_assert_eq(backend_sync(be, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "pad2d_forward: inp has 3 dimensions, expected 4"), "%s", err.msg);
    backend_tensor_free(be, &a), backend_tensor_free(be, &b), backend_tensor_free(be, &h);
    backend_close(be);
}
