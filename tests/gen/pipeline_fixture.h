/* pipeline_fixture — the CPU backend on a 2-thread pool that test_pipeline.c and
 * test_pipeline_single.c run the pipeline on: `be`, and setup / teardown for the suite's .init /
 * .fini. Include once per file. */
#ifndef EASEL_TEST_PIPELINE_FIXTURE_H
#define EASEL_TEST_PIPELINE_FIXTURE_H

#include <criterion/criterion.h>

#include "backend.h"
#include "backend_cpu.h"
#include "base.h"

static Backend *be;
static CpuPool *pool, *prev_pool;

static void setup(void) {
    Err err = {0};
    BackendConfig cfg = {2, 0};
    cr_assert_eq(backend_open("cpu", &cfg, &be, NULL, 0, &err), 0, "%s", err.msg);
    pool = backend_cpu_pool_new(2, &err);
    cr_assert(pool, "%s", err.msg);
    prev_pool = backend_cpu_use(pool);
}

static void teardown(void) {
    backend_cpu_use(prev_pool);
    backend_cpu_pool_free(pool);
    backend_close(be);
}

#endif
