/* One training step of each objective of `easel tune` on a real GPU (the CUDA backend): the
 * PyTorch fixture's loss, adapter gradients and AdamW update within 1e-4, as on the CPU
 * (test_tune_step.c). Skipped with the reason where there is no CUDA build or no device
 * (`make test`); `make test-gpu` (EASEL_TEST_GPU=1) runs it on a GPU machine, where no device
 * fails. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "tune_step_fixture.h"

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
        if (getenv("EASEL_TEST_GPU"))
            cr_assert_fail("EASEL_TEST_GPU set but cuda:0 opened the CPU");
        cr_skip_test("no GPU");
    }
    return be;
}

Test(gpu_tune, dpo_step_matches_torch) { check_case_on("dpo", SD, TUNE_DPO, 0, open_gpu()); }
Test(gpu_tune, dspo_sdxl_step_matches_torch) {
    check_case_on("dspo_xl", XL, TUNE_DSPO, 1, open_gpu());
}
Test(gpu_tune, adpo_dora_step_matches_torch) {
    check_case_on("adpo_dora", SD, TUNE_ADPO, 0, open_gpu());
}
