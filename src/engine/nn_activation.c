/* nn_activation — plain loops with the closed-form derivatives. See nn_activation.h. */
#include "nn_activation.h"

#include <math.h>
#include <stdint.h>

#include "backend_cpu.h"
#include "nn_clip.h"
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define GELU_K 0.7978845608028654f  /* √(2/π) */
#define INV_SQRT2 0.7071067811865476f
#define INV_SQRT_2PI 0.3989422804014327f

float nn_sigmoidf(float x) {
    if (x >= 0.0f)
        return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

float nn_logsigmoidf(float x) {
    /* log σ(x) = min(x, 0) − log1p(e^−|x|) */
    return fminf(x, 0.0f) - log1pf(expf(-fabsf(x)));
}

/* ReLU runs on every hidden activation of a training step, and a branch on the sign of
 * each element mispredicts half the time, so the two ReLU loops have SSE bodies (the same
 * results as the scalar tails: max and masking are exact). */
void nn_relu_forward(float *out, const float *inp, size_t n) {
    size_t i = 0;
#if defined(__SSE2__)
    __m128 zero = _mm_setzero_ps();
    for (; i + 4 <= n; i += 4) /* maxps(x, 0) gives 0 for NaN, as the scalar test does */
        _mm_storeu_ps(out + i, _mm_max_ps(_mm_loadu_ps(inp + i), zero));
#endif
    for (; i < n; i++)
        out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}

void nn_relu_backward(float *dinp, const float *dout, const float *out, size_t n) {
    size_t i = 0;
#if defined(__SSE2__)
    __m128 zero = _mm_setzero_ps();
    for (; i + 4 <= n; i += 4) {
        __m128 pos = _mm_cmpgt_ps(_mm_loadu_ps(out + i), zero);
        __m128 d = _mm_and_ps(pos, _mm_loadu_ps(dout + i));
        _mm_storeu_ps(dinp + i, _mm_add_ps(_mm_loadu_ps(dinp + i), d));
    }
#endif
    for (; i < n; i++)
        dinp[i] += out[i] > 0.0f ? dout[i] : 0.0f;
}

/* The forwards of GELU and QuickGELU are nn_clip's vectorised loops (erf by A&S 7.1.26 and an
 * exp of their own, AVX-512 or AVX2 where the CPU has it): libm's erff per element cost a
 * third of a ViT-L/14 block. Within 3e-7·|x| (GELU) and 1e-6 relative (QuickGELU) of the
 * libm forms, which the tests keep as the reference. */
void nn_gelu_forward(float *out, const float *inp, size_t n) { nn_clip_gelu_forward(out, inp, n); }

void nn_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float cdf = 0.5f * (1.0f + erff(x * INV_SQRT2));
        float pdf = INV_SQRT_2PI * expf(-0.5f * x * x);
        dinp[i] += dout[i] * (cdf + x * pdf);
    }
}

void nn_gelu_tanh_forward(float *out, const float *inp, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + tanhf(GELU_K * (x + 0.044715f * x * x * x)));
    }
}

void nn_gelu_tanh_backward(float *dinp, const float *dout, const float *inp, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float u = GELU_K * (x + 0.044715f * x * x * x);
        float t = tanhf(u);
        float sech2 = 1.0f - t * t;
        float du = GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
        dinp[i] += dout[i] * (0.5f * (1.0f + t) + 0.5f * x * sech2 * du);
    }
}

typedef struct QuickJob {
    float *out;
    const float *inp;
} QuickJob;

static void quick_range(void *ctx, int64_t b, int64_t e) {
    const QuickJob *j = ctx;
    nn_clip_quickgelu_forward(j->out + b, j->inp + b, (size_t)(e - b));
}

/* split over the caller's pool (a whole MLP's activations at once, as the backend's act op) */
void nn_quickgelu_forward(float *out, const float *inp, size_t n) {
    QuickJob j = {out, inp};
    backend_cpu_parallel_for((int64_t)n, 16384, quick_range, &j);
}

void nn_quickgelu_backward(float *dinp, const float *dout, const float *inp, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float s = nn_sigmoidf(1.702f * x);
        dinp[i] += dout[i] * (s + 1.702f * x * s * (1.0f - s));
    }
}

void nn_sigmoid_forward(float *out, const float *inp, size_t n) {
    for (size_t i = 0; i < n; i++)
        out[i] = nn_sigmoidf(inp[i]);
}

void nn_sigmoid_backward(float *dinp, const float *dout, const float *out, size_t n) {
    for (size_t i = 0; i < n; i++)
        dinp[i] += dout[i] * out[i] * (1.0f - out[i]);
}

void nn_logsigmoid_forward(float *out, const float *inp, size_t n) {
    for (size_t i = 0; i < n; i++)
        out[i] = nn_logsigmoidf(inp[i]);
}

void nn_logsigmoid_backward(float *dinp, const float *dout, const float *inp, size_t n) {
    for (size_t i = 0; i < n; i++)
        dinp[i] += dout[i] * nn_sigmoidf(-inp[i]);
}
