/* Tests for src/engine/tensor.c (views, strides, arena) and src/engine/rng.c (reproducibility,
 * distributions). Engine-only. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "rng.h"
#include "tensor.h"

#if defined(__SANITIZE_ADDRESS__)
/* arena_reports_nomem asks for an impossible block: under ASan malloc must return NULL for it
 * as libc's does, not abort. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }
#endif

Test(tensor, contiguous_views_and_strides) {
    float d[24];
    for (int i = 0; i < 24; i++)
        d[i] = (float)i;
    Tensor t = tensor_3d(d, 2, 3, 4);
    cr_expect_eq(tensor_numel(&t), 24);
    cr_expect_eq(t.stride[0], 12);
    cr_expect_eq(t.stride[1], 4);
    cr_expect_eq(t.stride[2], 1);
    cr_expect(tensor_is_contiguous(&t));
    cr_expect_eq(*tensor_ptr(&t, 1, 2, 3, 0), 23.0f);
    Tensor row = tensor_index(t, 1);
    cr_expect_eq(row.n_dims, 2);
    cr_expect_eq(*tensor_ptr(&row, 0, 0, 0, 0), 12.0f);
    Tensor s = tensor_slice(t, 2, 1, 2);
    cr_expect(!tensor_is_contiguous(&s));
    cr_expect_eq(*tensor_ptr(&s, 0, 1, 0, 0), 5.0f);
    Tensor tr = tensor_transpose(tensor_2d(d, 4, 6), 0, 1);
    cr_expect_eq(tr.shape[0], 6);
    cr_expect_eq(*tensor_ptr(&tr, 5, 1, 0, 0), 11.0f);
    Tensor r = tensor_reshape(t, 2, (int64_t[]){6, 4});
    cr_expect_eq(*tensor_ptr(&r, 5, 3, 0, 0), 23.0f);
}

Test(tensor, copy_and_fill_follow_strides) {
    float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {0};
    Tensor src = tensor_transpose(tensor_2d(a, 2, 3), 0, 1); /* (3,2) view of a */
    Tensor dst = tensor_2d(b, 3, 2);
    tensor_copy(&dst, &src);
    float want[6] = {1, 4, 2, 5, 3, 6};
    cr_expect_arr_eq(b, want, sizeof want);
    Tensor col = tensor_slice(tensor_2d(b, 3, 2), 1, 1, 1);
    tensor_fill(&col, -1.0f);
    float want2[6] = {1, -1, 2, -1, 3, -1};
    cr_expect_arr_eq(b, want2, sizeof want2);
}

Test(tensor, arena_measures_aligns_and_resets) {
    Arena m;
    arena_init_measure(&m);
    cr_expect_null(arena_alloc_f32(&m, 10));
    arena_alloc_f32(&m, 100);
    size_t need = m.used;
    cr_expect_eq(need, arena_round(40) + arena_round(400));
    Arena a;
    cr_assert_eq(arena_init(&a, need, NULL), 0);
    float *x = arena_alloc_f32(&a, 10);
    size_t mark = arena_mark(&a);
    Tensor t = arena_tensor(&a, 2, (int64_t[]){10, 10});
    cr_expect_eq((uintptr_t)x % TENSOR_ALIGN, 0);
    cr_expect_eq((uintptr_t)t.data % TENSOR_ALIGN, 0);
    cr_expect_eq(t.data[99], 0.0f); /* zeroed at init */
    cr_expect_eq(a.used, need);
    arena_reset(&a, mark);
    cr_expect_eq(arena_alloc_f32(&a, 100), t.data);
    cr_expect_eq(a.peak, need);
    arena_deinit(&a);
    arena_deinit(&a); /* deinit twice is harmless */
}

/* This process's resident set in bytes (/proc/self/statm). */
static size_t resident_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, res = 0;
    cr_assert_not_null(f);
    cr_assert_eq(fscanf(f, "%lu %lu", &size, &res), 2);
    fclose(f);
    return (size_t)res * (size_t)sysconf(_SC_PAGESIZE);
}

/* A large arena costs the memory of what is used, not of its size (it was zeroed up front,
 * so a training step's arena sized for the worst case was resident in full), and still reads
 * as zeros. */
Test(tensor, large_arena_is_paid_as_used) {
    size_t before = resident_bytes();
    Arena a;
    cr_assert_eq(arena_init(&a, (size_t)512 << 20, NULL), 0);
    size_t after = resident_bytes();
    cr_assert_lt(after, before + ((size_t)32 << 20), "resident %zu -> %zu bytes", before, after);
    float *x = arena_alloc_f32(&a, (size_t)64 << 20); /* 256 MiB: untouched, still zero */
    cr_assert_eq((uintptr_t)x % TENSOR_ALIGN, 0);
    cr_assert_eq(x[0], 0.0f);
    cr_assert_eq(x[((size_t)64 << 20) - 1], 0.0f);
    memset(x, 1, (size_t)16 << 20);
    cr_assert_gt(resident_bytes(), before + ((size_t)12 << 20), "touched pages are resident");
    arena_deinit(&a);
    cr_assert_lt(resident_bytes(), after + ((size_t)8 << 20), "unmapped");
}

Test(tensor, arena_reports_nomem) {
    Arena a;
    Err err = {0};
    cr_expect_eq(arena_init(&a, SIZE_MAX / 2, &err), ERR_NOMEM);
    cr_expect(strstr(err.msg, "cannot allocate") != NULL, "%s", err.msg);
}

Test(rng, same_seed_same_stream) {
    Rng a, b, c;
    rng_init(&a, 7);
    rng_init(&b, 7);
    rng_init(&c, 8);
    int differ = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t x = rng_u64(&a);
        cr_assert_eq(x, rng_u64(&b));
        differ += x != rng_u64(&c);
    }
    cr_expect_gt(differ, 95);
    cr_expect_eq(rng_hash_u64(5, 9), rng_hash_u64(5, 9));
    cr_expect_neq(rng_hash_u64(5, 9), rng_hash_u64(5, 10));
}

Test(rng, distributions) {
    Rng r;
    rng_init(&r, 1);
    int n = 200000;
    double su = 0, sn = 0, sn2 = 0;
    for (int i = 0; i < n; i++) {
        float u = rng_uniform(&r);
        cr_assert(u >= 0.0f && u < 1.0f);
        su += u;
        float z = rng_normal(&r);
        sn += z;
        sn2 += (double)z * z;
    }
    cr_expect(fabs(su / n - 0.5) < 0.005, "uniform mean %f", su / n);
    cr_expect(fabs(sn / n) < 0.01, "normal mean %f", sn / n);
    cr_expect(fabs(sqrt(sn2 / n) - 1.0) < 0.01, "normal std %f", sqrt(sn2 / n));
    int idx[50], seen[50] = {0};
    for (int i = 0; i < 50; i++)
        idx[i] = i;
    rng_shuffle(&r, idx, 50);
    int moved = 0;
    for (int i = 0; i < 50; i++) {
        seen[idx[i]]++;
        moved += idx[i] != i;
    }
    for (int i = 0; i < 50; i++)
        cr_expect_eq(seen[i], 1);
    cr_expect_gt(moved, 30);
    for (int i = 0; i < 1000; i++)
        cr_assert_lt(rng_below(&r, 7), 7u);
}
