/* The reward model on cuda:0 against the CPU backend, every fusion (model_reward_compare.h):
 * what `make test-gpu` runs on a GPU machine. Skipped without a CUDA device (the probe says
 * why), and a failure there when EASEL_TEST_GPU is set (make test-gpu: a GPU was promised). */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "backend.h"
#include "cuda.h"
#include "model_reward_compare.h"

Test(model_reward_gpu, cuda_training_matches_the_cpu) {
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
    cr_assert_eq(backend_kind(be), BACKEND_CUDA);
    cr_expect_eq(compare_with_cpu(be, 0, 3), 0);
    backend_close(be);
}
