/* The host emulation harness itself (gpu/kern_emulate.c): indices of 3-D grids and blocks,
 * shared memory and __syncthreads between real threads, warp shuffles and votes, atomics, and
 * the misuse it must refuse instead of hanging. The kernels here are test-only. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kern_emulate.h"

typedef struct ProbeArgs {
    int *coords;     /* per global thread: bx, by, bz, tx, ty, tz */
    int *counter;    /* atomicAdd int */
    float *fsum;     /* atomicAdd float */
    unsigned *votes; /* per global thread: ballot(odd lane), any(lane 7), all(lane<32), all(lane<31) */
    float *shfl;     /* per global thread: idx(3), down(1), xor(5) of the lane number */
    float *neighbour;/* per global thread: the value its neighbour put in shared memory */
} ProbeArgs;

KERN_ENTRY void probe(KernCtx *k, const ProbeArgs *a) {
    long blk = k->block_idx.x + (long)k->grid_dim.x * (k->block_idx.y + (long)k->grid_dim.y * k->block_idx.z);
    long g = blk * k->nthreads + k->tid;
    int *c = a->coords + 6 * g;
    c[0] = k->block_idx.x, c[1] = k->block_idx.y, c[2] = k->block_idx.z;
    c[3] = k->thread_idx.x, c[4] = k->thread_idx.y, c[5] = k->thread_idx.z;
    kern_atomic_add_i32(a->counter, 1);
    kern_atomic_add_f32(a->fsum, 0.5f);
    int lane = kern_lane(k);
    unsigned *v = a->votes + 4 * g;
    v[0] = kern_ballot(k, lane & 1);
    v[1] = (unsigned)kern_any(k, lane == 7);
    v[2] = (unsigned)kern_all(k, lane < 32);
    v[3] = (unsigned)kern_all(k, lane < 31);
    float *s = a->shfl + 3 * g;
    s[0] = kern_shfl_idx(k, (float)lane, 3);
    s[1] = kern_shfl_down(k, (float)lane, 1);
    s[2] = kern_shfl_xor(k, (float)lane, 5);
    float *sm = (float *)kern_shared(k);
    sm[k->tid] = (float)(k->tid * 1000 + blk);
    kern_sync(k);
    a->neighbour[g] = sm[(k->tid + 1) % k->nthreads];
}
KERN_HD KernLaunch probe_launch(const ProbeArgs *a) {
    (void)a;
    KernLaunch l;
    l.grid = kern_dim(2, 3, 2), l.block = kern_dim(8, 4, 2), l.smem = 64 * sizeof(float);
    return l;
}
KERN_EMULATE_DEFINE_(probe, ProbeArgs)

Test(harness, models_indices_shared_memory_warps_and_atomics) {
    enum { B = 12, T = 64, G = B * T };
    int *coords = calloc(6 * G, sizeof(int)), counter = 0;
    float fsum = 0.0f, *shfl = calloc(3 * G, sizeof(float)), *nb = calloc(G, sizeof(float));
    unsigned *votes = calloc(4 * G, sizeof(unsigned));
    ProbeArgs a = {coords, &counter, &fsum, votes, shfl, nb};
    Err err = {0};
    cr_assert_eq(probe_run(&a, &err), 0, "%s", err.msg);
    cr_assert_eq(counter, G);
    cr_assert_float_eq(fsum, 0.5f * G, 0.0f);
    for (int g = 0; g < G; g++) {
        int blk = g / T, t = g % T, *c = coords + 6 * g, lane = t % 32;
        cr_assert(c[0] == blk % 2 && c[1] == blk / 2 % 3 && c[2] == blk / 6, "block of %d", g);
        cr_assert(c[3] == t % 8 && c[4] == t / 8 % 4 && c[5] == t / 32, "thread of %d", g);
        cr_assert_eq(votes[4 * g], 0xAAAAAAAAu);
        cr_assert_eq(votes[4 * g + 1], 1u);
        cr_assert_eq(votes[4 * g + 2], 1u);
        cr_assert_eq(votes[4 * g + 3], 0u);
        cr_assert_float_eq(shfl[3 * g], 3.0f, 0.0f);
        cr_assert_float_eq(shfl[3 * g + 1], lane < 31 ? lane + 1.0f : 31.0f, 0.0f);
        cr_assert_float_eq(shfl[3 * g + 2], (float)(lane ^ 5), 0.0f);
        cr_assert_float_eq(nb[g], (float)((t + 1) % T * 1000 + blk), 0.0f, "shared memory of %d", g);
    }
    cr_assert_eq(kern_emulate_launches("probe"), 1);
    free(coords), free(shfl), free(nb), free(votes);
}

/* Kernels that misuse the primitives: the harness must fail the launch with a reason. */
typedef struct MisuseArgs {
    float *out;
    int how;
} MisuseArgs;

KERN_ENTRY void misuse(KernCtx *k, const MisuseArgs *a) {
    float v = (float)k->tid;
    switch (a->how) {
    case 0: /* __syncthreads inside a branch half the block takes */
        if (k->tid < 16)
            kern_sync(k);
        break;
    case 1: /* shuffle in a block that is not a whole number of warps */
        v = kern_shfl_xor(k, v, 16);
        break;
    case 2: /* a lane returns, the rest of its warp shuffles */
        if (kern_lane(k) == 5)
            return;
        v = kern_shfl_xor(k, v, 1);
        break;
    case 3: /* read shared memory nobody wrote */
        v = ((float *)kern_shared(k))[k->tid];
        break;
    }
    a->out[k->tid] = v;
}
KERN_HD KernLaunch misuse_launch(const MisuseArgs *a) {
    return kern_launch_1d(1, a->how == 1 ? 48 : 64, 64 * sizeof(float));
}
KERN_EMULATE_DEFINE_(misuse, MisuseArgs)

static void expect_refused(int how, const char *words) {
    float out[64];
    MisuseArgs a = {out, how};
    Err err = {0};
    cr_assert_eq(misuse_run(&a, &err), ERR_GPU, "case %d ran", how);
    cr_assert(strstr(err.msg, words) != NULL, "case %d: %s", how, err.msg);
    cr_assert(strstr(err.msg, "kernel misuse") != NULL, "%s", err.msg);
}

Test(harness, refuses_a_barrier_in_a_divergent_branch) { expect_refused(0, "__syncthreads"); }
Test(harness, refuses_a_shuffle_from_a_missing_lane) { expect_refused(1, "does not have"); }
Test(harness, refuses_a_warp_operation_after_a_lane_returned) { expect_refused(2, "returned"); }

Test(harness, unwritten_shared_memory_reads_nan) {
    float out[64];
    MisuseArgs a = {out, 3};
    Err err = {0};
    cr_assert_eq(misuse_run(&a, &err), 0, "%s", err.msg);
    for (int i = 0; i < 64; i++)
        cr_assert(isnan(out[i]), "out[%d] = %f", i, out[i]);
}

Test(harness, refuses_launches_a_device_refuses) {
    float out[64];
    MisuseArgs a = {out, 4};
    Err err = {0};
    cr_assert_eq(misuse_emulate(kern_launch_1d(1, 1025, 0), &a, &err), ERR_GPU);
    cr_assert(strstr(err.msg, "1024") != NULL, "%s", err.msg);
    cr_assert_eq(misuse_emulate(kern_launch_1d(1, 64, 64 * 1024), &a, &err), ERR_GPU);
    cr_assert(strstr(err.msg, "shared memory") != NULL, "%s", err.msg);
    cr_assert_eq(misuse_emulate(kern_launch_1d(0, 64, 0), &a, &err), 0, "empty grid: %s", err.msg);
}

/* Where the device is deterministic (fixed reduction trees, no atomics) so is the harness:
 * two runs give the same bits, even with the block's threads racing each other. */
Test(harness, block_reductions_are_deterministic) {
    enum { N = 6, C = 700 };
    float x[N * C], o1[N * C], o2[N * C], m1[N], m2[N], r1[N], r2[N];
    for (int i = 0; i < N * C; i++)
        x[i] = sinf((float)i * 0.37f) * 10.0f + 3.0f;
    LayerNormFwdArgs a1 = {o1, m1, r1, x, NULL, NULL, N, C, 1e-5f};
    LayerNormFwdArgs a2 = {o2, m2, r2, x, NULL, NULL, N, C, 1e-5f};
    Err err = {0};
    cr_assert_eq(layernorm_fwd_run(&a1, &err), 0, "%s", err.msg);
    cr_assert_eq(layernorm_fwd_run(&a2, &err), 0, "%s", err.msg);
    cr_assert(memcmp(o1, o2, sizeof o1) == 0 && memcmp(m1, m2, sizeof m1) == 0 &&
              memcmp(r1, r2, sizeof r1) == 0);
}
