/* tensor_half — f16 and bf16 conversions. See tensor.h.
 *
 * Integer bit manipulation, so the result does not depend on the FPU's rounding mode or on
 * F16C being present: f32 → half adds the rounding bias (half an ulp of the target, minus one
 * unless the kept lowest bit is odd) before truncating, which is round-to-nearest-even; NaN
 * and inf are caught before it so they cannot round into each other.
 */
#include "tensor.h"

#include <string.h>

static uint32_t f32_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static float bits_f32(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

uint16_t f32_to_f16(float x) {
    uint32_t u = f32_bits(x);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) /* inf or NaN: NaN keeps its top payload bits and becomes quiet */
        return (uint16_t)(sign | 0x7c00u | (a > 0x7f800000u ? 0x0200u | ((a >> 13) & 0x3ffu) : 0));
    if (a >= 0x477ff000u) /* >= 65520 rounds past the largest finite f16 (65504) */
        return (uint16_t)(sign | 0x7c00u);
    if (a >= 0x38800000u) { /* normal in f16 (>= 2^-14) */
        a += 0x0fffu + ((a >> 13) & 1u);
        return (uint16_t)(sign | ((a - 0x38000000u) >> 13));
    }
    uint32_t e = a >> 23;
    if (e < 102) /* below 2^-25: rounds to zero (2^-25 itself is a tie to even 0) */
        return sign;
    uint32_t m = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e; /* f16 subnormal k·2^-24 = m·2^(e-150) */
    uint32_t k = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (k & 1u)))
        k++; /* may carry into the smallest normal: the bits are still right */
    return (uint16_t)(sign | k);
}

float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) {
        float v = (float)m * 0x1p-24f; /* zero or subnormal, exact */
        return sign ? -v : v;
    }
    if (e == 31)
        return bits_f32(sign | 0x7f800000u | (m << 13));
    return bits_f32(sign | ((e + 112) << 23) | (m << 13));
}

uint16_t f32_to_bf16(float x) {
    uint32_t u = f32_bits(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep sign and top payload, set quiet bit */
        return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u); /* overflow past the largest finite lands on inf */
    return (uint16_t)(u >> 16);
}

float bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

void dtype_to_f32(float *dst, const void *src, DType dtype, size_t n) {
    const uint16_t *s = src;
    switch (dtype) {
    case DTYPE_F32:
        if (dst != src)
            memcpy(dst, src, n * sizeof(float));
        return;
    case DTYPE_F16:
        for (size_t i = 0; i < n; i++)
            dst[i] = f16_to_f32(s[i]);
        return;
    case DTYPE_BF16:
        for (size_t i = 0; i < n; i++)
            dst[i] = bf16_to_f32(s[i]);
        return;
    }
}

void dtype_from_f32(void *dst, DType dtype, const float *src, size_t n) {
    uint16_t *d = dst;
    switch (dtype) {
    case DTYPE_F32:
        if (dst != src)
            memcpy(dst, src, n * sizeof(float));
        return;
    case DTYPE_F16:
        for (size_t i = 0; i < n; i++)
            d[i] = f32_to_f16(src[i]);
        return;
    case DTYPE_BF16:
        for (size_t i = 0; i < n; i++)
            d[i] = f32_to_bf16(src[i]);
        return;
    }
}
