/* test_torch_rng — torch's random numbers: torch.randn on a CPU generator, bit for bit, for
 * both of torch's kernels (fixtures from tests/gen/make_fixtures.py: several seeds, sizes
 * below, at and above 16, not multiples of 16, successive draws on one generator); MT19937
 * against its published reference output; Philox4x32-10 against the Random123 known-answer
 * vectors; the CUDA layout's invariants. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "torch_rng.h"

#define FIX "tests/gen/fixtures/"

static json_t *load(const char *path) {
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    cr_assert(j, "%s: line %d: %s (make it with tests/gen/make_fixtures.py)", path, e.line,
              e.text);
    return j;
}

static uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Every case of the fixture's PATH kernel: the same bits as torch. */
static void check_kernel(const char *name, TorchRngPath path) {
    json_t *root = load(FIX "rng_cpu.json");
    json_t *cases = json_object_get(root, name);
    cr_assert(json_array_size(cases) > 50);
    size_t ci, n_values = 0;
    json_t *c;
    json_array_foreach(cases, ci, c) {
        /* a string: seeds reach 2^64, past jansson's integers */
        uint64_t seed = strtoull(json_string_value(json_object_get(c, "seed")), NULL, 10);
        TorchCpuGen g;
        torch_cpu_gen_seed(&g, seed, path);
        size_t di;
        json_t *d;
        json_array_foreach(json_object_get(c, "draws"), di, d) {
            size_t n = json_array_size(d);
            float *x = xmalloc(n * sizeof *x);
            torch_cpu_randn(&g, x, n);
            for (size_t i = 0; i < n; i++) {
                uint32_t want = (uint32_t)json_integer_value(json_array_get(d, i));
                cr_assert_eq(f2u(x[i]), want,
                             "%s kernel, case %zu (seed %llu), draw %zu of %zu values, value "
                             "%zu: got %.9g, torch %08x",
                             name, ci, (unsigned long long)seed, di, n, i, (double)x[i], want);
            }
            n_values += n;
            free(x);
        }
    }
    cr_assert_gt(n_values, 5000u);
    json_decref(root);
}

Test(torch_rng, cpu_avx2_kernel_bit_exact) { check_kernel("avx2", TORCH_RNG_AVX2); }

Test(torch_rng, cpu_generic_kernel_bit_exact) { check_kernel("generic", TORCH_RNG_SCALAR); }

/* The fixtures must exercise what they claim: both kernels give different values somewhere
 * (else the AVX2 emulation would be untested), and the seed's high bits are ignored as torch
 * ignores them. */
Test(torch_rng, kernels_differ_and_seed_low_bits) {
    TorchCpuGen a, b;
    float xa[256], xb[256];
    torch_cpu_gen_seed(&a, 42, TORCH_RNG_AVX2);
    torch_cpu_gen_seed(&b, 42, TORCH_RNG_SCALAR);
    torch_cpu_randn(&a, xa, 256);
    torch_cpu_randn(&b, xb, 256);
    int n_diff = 0;
    for (int i = 0; i < 256; i++) {
        n_diff += xa[i] != xb[i];
        cr_assert_float_eq(xa[i], xb[i], 1e-5);
    }
    cr_assert_gt(n_diff, 0);
    torch_cpu_gen_seed(&a, 5, TORCH_RNG_AVX2);
    torch_cpu_gen_seed(&b, 5 + (UINT64_C(1) << 32), TORCH_RNG_AVX2);
    for (int i = 0; i < 100; i++)
        cr_assert_eq(torch_cpu_gen_u32(&a), torch_cpu_gen_u32(&b));
}

/* MT19937 with seed 5489: the 10000th output is 4123659995 (the C++ standard's check). */
Test(torch_rng, mt19937_reference) {
    TorchCpuGen g;
    torch_cpu_gen_seed(&g, 5489, TORCH_RNG_AVX2);
    uint32_t v = 0;
    for (int i = 0; i < 10000; i++)
        v = torch_cpu_gen_u32(&g);
    cr_assert_eq(v, 4123659995u);
}

/* The AVX2 kernel's log and sincos stay close to libm over the range Box–Muller uses. */
Test(torch_rng, avx2_math_accuracy) {
    double worst_log = 0, worst_trig = 0;
    for (int i = 1; i <= 1 << 16; i++) {
        float u = (float)i / 65536.0f;
        double l = torch_rng_logf(u);
        worst_log = fmax(worst_log, fabs(l - log((double)u)));
        float th = 6.2831855f * (float)(i - 1) / 65536.0f, s, c;
        torch_rng_sincosf(th, &s, &c);
        worst_trig = fmax(worst_trig, fmax(fabs(s - sin((double)th)), fabs(c - cos((double)th))));
    }
    cr_assert_lt(worst_log, 1e-6, "log error %g", worst_log);
    cr_assert_lt(worst_trig, 1e-6, "sincos error %g", worst_trig);
    cr_assert(isnan(torch_rng_logf(0.0f)) && isnan(torch_rng_logf(-1.0f)));
}

/* Philox4x32-10 known answers (Random123's kat_vectors, as cuRAND's generator computes). */
Test(torch_rng, philox_known_answers) {
    static const struct { uint32_t ctr[4], key[2], out[4]; } kat[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff},
         {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0},
         {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (size_t k = 0; k < sizeof kat / sizeof kat[0]; k++) {
        uint32_t out[4];
        torch_philox4x32_10(kat[k].ctr, kat[k].key, out);
        for (int i = 0; i < 4; i++)
            cr_assert_eq(out[i], kat[k].out[i], "vector %zu word %d: %08x, want %08x", k, i,
                         out[i], kat[k].out[i]);
    }
}

/* cuRAND's host API (fixture from tests/gen/make_philox_fixture.c): value i of a fresh
 * generator is word i % 4 of the Philox block at counter 0, subsequence i / 4 (what
 * curand_init(seed, i / 4, 0) then curand4 gives thread i / 4 on a GPU), and its normals are
 * curand_normal4 of that block. torch_cuda_randn(n) on a fresh generator takes component 0 of
 * thread i's first curand_normal4 for value i (grid not capped), so it equals normal 4 i. */
Test(torch_rng, philox_matches_curand_host_api) {
    json_t *root = load(FIX "rng_philox.json");
    size_t ci;
    json_t *c;
    int n_exact = 0, n_normals = 0;
    json_array_foreach(json_object_get(root, "cases"), ci, c) {
        uint64_t seed = strtoull(json_string_value(json_object_get(c, "seed")), NULL, 10);
        const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
        json_t *words = json_object_get(c, "words"), *normals = json_object_get(c, "normals");
        size_t n = json_array_size(words);
        cr_assert_gt(n, 64u);
        for (size_t i = 0; i < n; i += 4) {
            uint32_t ctr[4] = {0, 0, (uint32_t)(i / 4), 0}, w[4];
            float v[4];
            torch_philox4x32_10(ctr, key, w);
            torch_curand_normal4(w, v);
            for (size_t j = 0; j < 4; j++) {
                uint32_t want = (uint32_t)json_integer_value(json_array_get(words, i + j));
                cr_assert_eq(w[j], want, "seed %llu word %zu: %08x, cuRAND %08x",
                             (unsigned long long)seed, i + j, w[j], want);
                double nw = json_number_value(json_array_get(normals, i + j));
                cr_assert(fabs(v[j] - nw) <= 1e-6 * fmax(1, fabs(nw)),
                          "seed %llu normal %zu: %.9g, cuRAND %.9g", (unsigned long long)seed,
                          i + j, (double)v[j], nw);
                n_exact += (float)nw == v[j];
                n_normals++;
            }
        }
        /* the torch layout on a fresh generator */
        size_t m = n / 4;
        float *x = xmalloc(m * sizeof *x);
        TorchCudaGen g;
        torch_cuda_gen_seed(&g, seed, 0, 0);
        torch_cuda_randn(&g, x, m);
        for (size_t i = 0; i < m; i++)
            cr_assert_float_eq(x[i], json_number_value(json_array_get(normals, 4 * i)), 1e-6);
        cr_assert_eq(g.offset, 4u);
        free(x);
    }
    cr_log_info("%d of %d normals bit-equal to cuRAND's host API", n_exact, n_normals);
    json_decref(root);
}

/* torch's CUDA layout: a capped grid takes the 4 components of each curand_normal4 for
 * values T apart and loops in rounds of 4 T, advancing the offset by 4 per round; the next
 * call starts at the new offset (curand_init's skipahead: counter + offset / 4). */
Test(torch_rng, cuda_layout) {
    enum { N = 2000 };
    TorchCudaGen g;
    torch_cuda_gen_seed(&g, 77, 1, 256); /* one block of 256 threads */
    static float x[N], y[N];
    torch_cuda_randn(&g, x, N);
    cr_assert_eq(g.offset, 8u); /* two rounds of 4 T = 1024 values */
    const uint32_t key[2] = {77, 0};
    for (uint32_t t = 0; t < 256; t++)
        for (uint32_t r = 0; r < 2; r++) {
            uint32_t ctr[4] = {r, 0, t, 0}, w[4];
            float v[4];
            torch_philox4x32_10(ctr, key, w);
            torch_curand_normal4(w, v);
            for (uint32_t i = 0; i < 4; i++) {
                size_t li = t + 256 * (4 * r + i);
                if (li < N)
                    cr_assert_eq(x[li], v[i], "value %zu", li);
            }
        }
    torch_cuda_randn(&g, y, 16); /* next call: counter 2 */
    uint32_t ctr[4] = {2, 0, 5, 0}, w[4];
    float v[4];
    torch_philox4x32_10(ctr, key, w);
    torch_curand_normal4(w, v);
    cr_assert_eq(y[5], v[0]);
    cr_assert_eq(g.offset, 12u);
}

/* diffusers' randn_tensor with a list of generators, twice: one generator per batch item. */
Test(torch_rng, batch_of_generators) {
    json_t *root = load(FIX "rng_cpu.json");
    json_t *b = json_object_get(root, "batch");
    cr_assert(b);
    size_t per = (size_t)json_integer_value(json_object_get(b, "per_item"));
    TorchCpuGen g[2];
    for (int i = 0; i < 2; i++)
        torch_cpu_gen_seed(&g[i], (uint64_t)json_integer_value(
                                      json_array_get(json_object_get(b, "seeds"), (size_t)i)),
                           TORCH_RNG_AVX2);
    size_t di;
    json_t *d;
    json_array_foreach(json_object_get(b, "draws"), di, d) {
        cr_assert_eq(json_array_size(d), 2 * per);
        float *x = xmalloc(2 * per * sizeof *x);
        torch_cpu_randn_batch(g, 2, x, per);
        for (size_t i = 0; i < 2 * per; i++)
            cr_assert_eq(f2u(x[i]), (uint32_t)json_integer_value(json_array_get(d, i)),
                         "draw %zu value %zu", di, i);
        free(x);
    }
    json_decref(root);
}
