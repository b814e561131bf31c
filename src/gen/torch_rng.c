/* torch_rng — PyTorch's CPU (MT19937) and CUDA (Philox) normal draws (torch_rng.h). */
#include "torch_rng.h"

/* Each float product and sum rounds on its own, as in torch: GCC does not contract in -std=c11,
 * clang does by default (into FMAs on arm64) unless told. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include <math.h>
#include <string.h>

#include "base.h"

/* ---- MT19937 ------------------------------------------------------------------------------ */

enum { MT_N = 624, MT_M = 397 };

void torch_cpu_gen_seed(TorchCpuGen *g, uint64_t seed, TorchRngPath path) {
    g->mt[0] = (uint32_t)(seed & 0xffffffffu);
    for (int j = 1; j < MT_N; j++)
        g->mt[j] = 1812433253u * (g->mt[j - 1] ^ (g->mt[j - 1] >> 30)) + (uint32_t)j;
    g->left = 1;
    g->next = 0;
    g->next_double = 0.0;
    g->has_next_double = 0;
    g->path = path;
}

static inline uint32_t mix_bits(uint32_t u, uint32_t v) {
    return (u & 0x80000000u) | (v & 0x7fffffffu);
}

static inline uint32_t twist(uint32_t u, uint32_t v) {
    return (mix_bits(u, v) >> 1) ^ ((v & 1u) ? 0x9908b0dfu : 0u);
}

static void mt_regenerate(TorchCpuGen *g) {
    uint32_t *p = g->mt;
    int j;
    for (j = 0; j < MT_N - MT_M; j++)
        p[j] = p[j + MT_M] ^ twist(p[j], p[j + 1]);
    for (; j < MT_N - 1; j++)
        p[j] = p[j + MT_M - MT_N] ^ twist(p[j], p[j + 1]);
    p[MT_N - 1] = p[MT_M - 1] ^ twist(p[MT_N - 1], p[0]);
    g->left = MT_N;
    g->next = 0;
}

uint32_t torch_cpu_gen_u32(TorchCpuGen *g) {
    if (--g->left == 0)
        mt_regenerate(g);
    uint32_t y = g->mt[g->next++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

uint64_t torch_cpu_gen_u64(TorchCpuGen *g) {
    uint64_t hi = torch_cpu_gen_u32(g);
    uint64_t lo = torch_cpu_gen_u32(g);
    return (hi << 32) | lo;
}

/* torch's uniform_real_distribution<float>(0, 1): 24 low bits of one draw. */
static inline float uniform_f32(TorchCpuGen *g) {
    return (float)(torch_cpu_gen_u32(g) & 0xffffffu) * (1.0f / 16777216.0f);
}

/* uniform_real_distribution<double>(0, 1): 53 low bits of a 64-bit draw. */
static inline double uniform_f64(TorchCpuGen *g) {
    return (double)(torch_cpu_gen_u64(g) & ((UINT64_C(1) << 53) - 1)) * (1.0 / 9007199254740992.0);
}

/* ---- the AVX2 kernel's float log and sincos, one lane at a time ----------------------------
 * Cephes' single-precision polynomials (Moshier), in the operation order of the vector code
 * torch runs, so that every rounding is the same. torch's build compiles that code with
 * -mfma and GCC's default contraction, which fuses a product into the sum that consumes it
 * (Horner steps, the range reduction, the last corrections): those are fmaf here, found
 * by matching torch bit for bit. Every other product and sum is one IEEE float operation
 * (the build uses -std=c11, i.e. no contraction of its own). */

static inline uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float torch_rng_logf(float x) {
    /* x <= 0 (or NaN compared false) gives NaN, as the vector code ors in its mask */
    int invalid = x <= 0.0f;
    if (!(x >= u2f(0x00800000u)))  /* max(x, smallest normal); the vector max takes x's NaN */
        x = (x != x) ? x : u2f(0x00800000u);
    int32_t ex = (int32_t)(f2u(x) >> 23);
    x = u2f((f2u(x) & ~0x7f800000u) | f2u(0.5f));
    float e = (float)(ex - 0x7f);
    e = e + 1.0f;
    int lt = x < 0.707106781186547524f; /* then e -= 1 and x = x + x - 1, else x = x - 1 */
    float tmp = lt ? x : 0.0f;
    x = x - 1.0f;
    e = e - (lt ? 1.0f : 0.0f);
    x = x + tmp;
    float z = x * x;
    float y = 7.0376836292E-2f;
    y = fmaf(y, x, -1.1514610310E-1f);
    y = fmaf(y, x, 1.1676998740E-1f);
    y = fmaf(y, x, -1.2420140846E-1f);
    y = fmaf(y, x, 1.4249322787E-1f);
    y = fmaf(y, x, -1.6668057665E-1f);
    y = fmaf(y, x, 2.0000714765E-1f);
    y = fmaf(y, x, -2.4999993993E-1f);
    y = fmaf(y, x, 3.3333331174E-1f);
    y = y * x;
    y = fmaf(y, z, e * -2.12194440e-4f);
    y = fmaf(-z, 0.5f, y);
    x = x + y;
    x = fmaf(e, 0.693359375f, x);
    return invalid ? u2f(0xffffffffu) : x;
}

void torch_rng_sincosf(float x, float *s, float *c) {
    uint32_t sign_sin = f2u(x) & 0x80000000u;
    x = u2f(f2u(x) & 0x7fffffffu);
    float y = x * 1.27323954473516f; /* 4 / pi */
    int32_t j = (int32_t)y;          /* truncation, as cvttps */
    j = (j + 1) & ~1;
    y = (float)j;
    uint32_t swap_sin = ((uint32_t)j & 4u) << 29;
    int poly2 = (j & 2) == 0;        /* the sine polynomial gives sin (else cos) */
    x = fmaf(y, -0.78515625f, x);
    x = fmaf(y, -2.4187564849853515625e-4f, x);
    x = fmaf(y, -3.77489497744594108e-8f, x);
    uint32_t sign_cos = ((uint32_t)~(j - 2) & 4u) << 29;
    sign_sin ^= swap_sin;

    float z = x * x;
    float yc = 2.443315711809948E-005f;
    yc = fmaf(yc, z, -1.388731625493765E-003f);
    yc = fmaf(yc, z, 4.166664568298827E-002f);
    yc = yc * z;
    yc = fmaf(yc, z, -(z * 0.5f));
    yc = yc + 1.0f;

    float ys = -1.9515295891E-4f;
    ys = fmaf(ys, z, 8.3321608736E-3f);
    ys = fmaf(ys, z, -1.6666654611E-1f);
    ys = ys * z;
    ys = fmaf(ys, x, x);

    /* the vector code selects with masks and then adds a zero; keep its signs of zero */
    float sin_v, cos_v;
    if (poly2) {
        sin_v = 0.0f + ys;
        cos_v = yc + (ys - ys);
    } else {
        sin_v = yc + 0.0f;
        cos_v = (yc - yc) + ys;
    }
    *s = u2f(f2u(sin_v) ^ sign_sin);
    *c = u2f(f2u(cos_v) ^ sign_cos);
}

/* ---- normal fills ------------------------------------------------------------------------- */

static void box_muller16(float *d, TorchRngPath path) {
    const float two_pi = (float)(2.0f * 3.14159265358979323846);
    for (int j = 0; j < 8; j++) {
        float u1 = 1.0f - d[j];
        float u2 = d[j + 8];
        float sn, cs;
        if (path == TORCH_RNG_AVX2) {
            float radius = sqrtf(-2.0f * torch_rng_logf(u1));
            float theta = two_pi * u2;
            torch_rng_sincosf(theta, &sn, &cs);
            d[j] = radius * cs + 0.0f;      /* torch's "* std + mean": -0 becomes +0 */
            d[j + 8] = radius * sn + 0.0f;
        } else {
            float radius = sqrtf(-2.0f * logf(u1));
            float theta = (float)(2.0f * 3.14159265358979323846 * (double)u2);
            d[j] = radius * cosf(theta) + 0.0f;
            d[j + 8] = radius * sinf(theta) + 0.0f;
        }
    }
}

static double normal_f64(TorchCpuGen *g) {
    if (g->has_next_double) {
        g->has_next_double = 0;
        return g->next_double + 0.0;  /* torch's "* std + mean" */
    }
    double u1 = uniform_f64(g);
    double u2 = uniform_f64(g);
    double r = sqrt(-2.0 * log1p(-u2));
    double theta = 2.0 * 3.14159265358979323846 * u1;
    g->next_double = r * sin(theta);
    g->has_next_double = 1;
    return r * cos(theta) + 0.0;
}

void torch_cpu_randn(TorchCpuGen *g, float *x, size_t n) {
    if (n < 16) {
        for (size_t i = 0; i < n; i++)
            x[i] = (float)normal_f64(g);
        return;
    }
    for (size_t i = 0; i < n; i++)
        x[i] = uniform_f32(g);
    for (size_t i = 0; i + 16 <= n; i += 16)
        box_muller16(x + i, g->path);
    if (n % 16 != 0) {
        float *d = x + n - 16;
        for (int i = 0; i < 16; i++)
            d[i] = uniform_f32(g);
        box_muller16(d, g->path);
    }
}

void torch_cpu_randn_batch(TorchCpuGen *gens, int batch, float *x, size_t per_item) {
    for (int b = 0; b < batch; b++)
        torch_cpu_randn(&gens[b], x + (size_t)b * per_item, per_item);
}

/* ---- Philox4x32-10 (Salmon et al. 2011, as cuRAND counts) ---------------------------------- */

void torch_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0;
        uint64_t p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

/* cuRAND's Box–Muller on two words: u in (0, 1], v in (0, 2 pi); first sine, then cosine. */
static void box_muller2(uint32_t a, uint32_t b, float *r0, float *r1) {
    const float inv32 = 2.3283064e-10f;
    const float inv32_2pi = 2.3283064e-10f * 6.2831855f;
    float u = (float)a * inv32 + inv32 / 2.0f;
    float v = (float)b * inv32_2pi + inv32_2pi / 2.0f;
    float s = sqrtf(-2.0f * logf(u));
    *r0 = sinf(v) * s;
    *r1 = cosf(v) * s;
}

void torch_curand_normal4(const uint32_t w[4], float out[4]) {
    box_muller2(w[0], w[1], &out[0], &out[1]);
    box_muller2(w[2], w[3], &out[2], &out[3]);
}

void torch_cuda_gen_seed(TorchCudaGen *g, uint64_t seed, int sm_count, int threads_per_sm) {
    g->seed = seed;
    g->offset = 0;
    g->sm_count = sm_count;
    g->threads_per_sm = threads_per_sm;
}

void torch_cuda_randn(TorchCudaGen *g, float *x, size_t n) {
    if (n == 0)
        return;
    const uint64_t block = 256;
    uint64_t blocks = (n + block - 1) / block;
    if (g->sm_count > 0 && g->threads_per_sm > 0) {
        uint64_t cap = (uint64_t)g->sm_count * (uint64_t)(g->threads_per_sm / (int)block);
        if (cap > 0 && blocks > cap)
            blocks = cap;
    }
    uint64_t threads = blocks * block;
    uint64_t rounds = (n - 1) / (threads * 4) + 1;
    const uint32_t key[2] = {(uint32_t)g->seed, (uint32_t)(g->seed >> 32)};
    /* curand_init(seed, t, offset): counter = (offset / 4 + round) in the low 64 bits, the
     * subsequence t in the high 64 bits; torch's offsets are multiples of 4 */
    uint64_t base = g->offset / 4;
    for (uint64_t t = 0; t < threads && t < n; t++) {
        for (uint64_t r = 0; r < rounds; r++) {
            uint64_t first = t + threads * 4 * r;
            if (first >= n)
                break;
            uint64_t lo = base + r;
            uint32_t ctr[4] = {(uint32_t)lo, (uint32_t)(lo >> 32), (uint32_t)t,
                               (uint32_t)(t >> 32)};
            uint32_t w[4];
            float v[4];
            torch_philox4x32_10(ctr, key, w);
            torch_curand_normal4(w, v);
            for (int i = 0; i < 4; i++) {
                uint64_t li = first + threads * (uint64_t)i;
                if (li < n)
                    x[li] = v[i];
            }
        }
    }
    g->offset += rounds * 4;
}
