/* optim — see optim.h.
 *
 * The AdamW step is one fused pass (read p, g, m, v; write p, m, v and optionally g = 0):
 * it is memory-bound, so touching each array once matters more than anything else here.
 * The bias corrections are computed once per call in double and applied in float in
 * PyTorch's order, except that √v is multiplied by 1/√(1−β2ᵗ) instead of divided by its
 * inverse (one division per element instead of two), so one step matches PyTorch to float
 * rounding, not bit for bit.
 */
#include "optim.h"

#include <math.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "backend_cpu.h"

#define OPTIM_GRAIN 16384
#define NORM_CHUNK 4096

AdamWConfig optim_adamw_defaults(void) {
    AdamWConfig c = {1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f};
    return c;
}

typedef struct AdamJob {
    float *p, *g, *m, *v;
    float lr, b1, b2, eps, decay_mul, step_size, inv_bc2_sqrt;
    int zero_grad;
} AdamJob;

/* The update of one element, written out once for the scalar loop; the SSE loop below does
 * the same operations in the same order (IEEE add/mul/div/sqrt are exactly rounded in both,
 * and there is no FMA), so every element gets the same bits whichever loop it falls in, and
 * the result does not depend on how the range was split over threads. */
static void adam_range(void *ctx, int64_t i0, int64_t i1) {
    const AdamJob *j = ctx;
    float *p = j->p, *g = j->g, *m = j->m, *v = j->v;
    float b1 = j->b1, b2 = j->b2, omb1 = 1.0f - j->b1, omb2 = 1.0f - j->b2;
    int64_t i = i0;
#if defined(__SSE2__)
    __m128 vb1 = _mm_set1_ps(b1), vb2 = _mm_set1_ps(b2), vomb1 = _mm_set1_ps(omb1),
           vomb2 = _mm_set1_ps(omb2), vdecay = _mm_set1_ps(j->decay_mul),
           vibc2 = _mm_set1_ps(j->inv_bc2_sqrt), veps = _mm_set1_ps(j->eps),
           vstep = _mm_set1_ps(j->step_size), zero = _mm_setzero_ps();
    for (; i + 4 <= i1; i += 4) {
        __m128 gi = _mm_loadu_ps(g + i);
        __m128 pi = _mm_mul_ps(_mm_loadu_ps(p + i), vdecay);
        __m128 mi = _mm_add_ps(_mm_mul_ps(vb1, _mm_loadu_ps(m + i)), _mm_mul_ps(vomb1, gi));
        __m128 vi = _mm_add_ps(_mm_mul_ps(vb2, _mm_loadu_ps(v + i)),
                               _mm_mul_ps(_mm_mul_ps(vomb2, gi), gi));
        __m128 denom = _mm_add_ps(_mm_mul_ps(_mm_sqrt_ps(vi), vibc2), veps);
        _mm_storeu_ps(p + i, _mm_sub_ps(pi, _mm_mul_ps(vstep, _mm_div_ps(mi, denom))));
        _mm_storeu_ps(m + i, mi);
        _mm_storeu_ps(v + i, vi);
        if (j->zero_grad)
            _mm_storeu_ps(g + i, zero);
    }
#endif
    for (; i < i1; i++) {
        float gi = g[i];
        float pi = p[i] * j->decay_mul;
        float mi = b1 * m[i] + omb1 * gi;
        float vi = b2 * v[i] + omb2 * gi * gi;
        float denom = sqrtf(vi) * j->inv_bc2_sqrt + j->eps;
        p[i] = pi - j->step_size * (mi / denom);
        m[i] = mi;
        v[i] = vi;
        if (j->zero_grad)
            g[i] = 0.0f;
    }
}

void optim_adamw_step(float *params, float *grads, float *m, float *v, size_t n, int t,
                      float lr, const AdamWConfig *cfg, int zero_grad) {
    double bc1 = 1.0 - pow((double)cfg->beta1, t);
    double bc2 = 1.0 - pow((double)cfg->beta2, t);
    AdamJob j = {params, grads, m, v, lr, cfg->beta1, cfg->beta2, cfg->eps,
                 1.0f - lr * cfg->weight_decay, (float)(lr / bc1), (float)(1.0 / sqrt(bc2)),
                 zero_grad};
    backend_cpu_parallel_for((int64_t)n, OPTIM_GRAIN, adam_range, &j);
}

typedef struct NormJob {
    const float *g;
    size_t n;
    double *chunk_sums;
} NormJob;

static void norm_range(void *ctx, int64_t c0, int64_t c1) {
    const NormJob *j = ctx;
    for (int64_t c = c0; c < c1; c++) {
        size_t b = (size_t)c * NORM_CHUNK, e = b + NORM_CHUNK < j->n ? b + NORM_CHUNK : j->n;
        double s = 0.0;
        for (size_t i = b; i < e; i++)
            s += (double)j->g[i] * j->g[i];
        j->chunk_sums[c] = s;
    }
}

float optim_grad_norm(const float *grads, size_t n) {
    size_t n_chunks = (n + NORM_CHUNK - 1) / NORM_CHUNK;
    double total = 0.0;
    /* chunk sums in a fixed-size stack buffer, a batch of chunks at a time */
    double sums[256];
    for (size_t c0 = 0; c0 < n_chunks; c0 += 256) {
        size_t nc = n_chunks - c0 < 256 ? n_chunks - c0 : 256;
        NormJob j = {grads + c0 * NORM_CHUNK, n - c0 * NORM_CHUNK, sums};
        backend_cpu_parallel_for((int64_t)nc, 4, norm_range, &j);
        for (size_t c = 0; c < nc; c++)
            total += sums[c];
    }
    return (float)sqrt(total);
}

typedef struct ScaleJob {
    float *g;
    float s;
} ScaleJob;

static void scale_range(void *ctx, int64_t i0, int64_t i1) {
    const ScaleJob *j = ctx;
    for (int64_t i = i0; i < i1; i++)
        j->g[i] *= j->s;
}

float optim_clip_grad_norm(float *grads, size_t n, float max_norm) {
    float norm = optim_grad_norm(grads, n);
    float coef = max_norm / (norm + 1e-6f);
    if (coef < 1.0f) {
        ScaleJob j = {grads, coef};
        backend_cpu_parallel_for((int64_t)n, OPTIM_GRAIN, scale_range, &j);
    }
    return norm;
}

float optim_lr_at(const LrSchedule *s, int t) {
    if (s->kind == LR_SCHEDULE_CONSTANT)
        return s->lr;
    if (t <= s->warmup_steps && s->warmup_steps > 0)
        return s->lr * (float)t / (float)s->warmup_steps;
    if (t >= s->total_steps || s->total_steps <= s->warmup_steps)
        return s->lr_min;
    double frac = (double)(t - s->warmup_steps) / (double)(s->total_steps - s->warmup_steps);
    return (float)(s->lr_min + 0.5 * (s->lr - s->lr_min) * (1.0 + cos(M_PI * frac)));
}
