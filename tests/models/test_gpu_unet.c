/* The UNet on a real GPU: both tiny random fixtures (tests/models/make_unet_fixtures.py) on the
 * CUDA backend give diffusers' noise prediction within 1e-4, with f32 and bf16 resident
 * weights. Skipped with the reason where there is no CUDA build or no device (`make test`);
 * `make test-gpu` (EASEL_TEST_GPU=1) runs it on a GPU machine, where no device fails. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "unet_fixture.h"

static Backend *open_gpu(void) {
    Backend *be = NULL;
    Err err = {0};
    BackendConfig cfg = {.arena_bytes = (size_t)256 << 20};
    if (backend_open("cuda:0", &cfg, &be, NULL, 0, &err) != 0) {
        if (getenv("EASEL_TEST_GPU"))
            cr_assert_fail("EASEL_TEST_GPU set but no CUDA device: %s", err.msg);
        cr_skip_test("no GPU: %s", err.msg);
    }
    if (backend_kind(be) != BACKEND_CUDA) {
        backend_close(be);
        cr_skip_test("no GPU");
    }
    return be;
}

static void check_gpu(const char *dir, const char *cs) {
    Backend *be = open_gpu();
    double scale, md = run_case(be, dir, cs, DTYPE_F32, &scale);
    cr_log_info("%s case %s on %s: max |easel - diffusers| = %g (max |out| %g)", dir, cs,
                backend_name(be), md, scale);
    cr_assert(md <= 1e-4, "%s case %s: max diff %g (max |out| %g)", dir, cs, md, scale);
    md = run_case(be, dir, cs, DTYPE_BF16, &scale);
    cr_assert(md <= 6e-2 * scale, "%s case %s, bf16 weights: max diff %g (max |out| %g)", dir,
              cs, md, scale);
    backend_close(be);
}

Test(gpu_unet, sd_matches_diffusers) { check_gpu(FIX "unet_sd", "a"); }
Test(gpu_unet, sdxl_matches_diffusers) { check_gpu(FIX "unet_sdxl", "a"); }
Test(gpu_unet, sdxl_not_square) { check_gpu(FIX "unet_sdxl", "r"); }
/* 9×7 latents: the upsamplers' upsample_nearest kernels on the device */
Test(gpu_unet, odd_sizes) {
    check_gpu(FIX "unet_sd", "o");
    check_gpu(FIX "unet_deep", "o");
}
