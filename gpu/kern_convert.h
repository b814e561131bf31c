/* kern_convert — element type conversion between f32, f16 and bf16 (the Tensor dtypes of
 * src/engine/tensor.h: 0 = f32, 1 = f16, 2 = bf16). Bit arithmetic, the same as src/engine/tensor_half.c,
 * so the device rounds exactly as the CPU: round to nearest even, NaN stays NaN (quiet), inf
 * stays inf, f16 overflow goes to inf. One thread per element (see kern_common.h).
 */
#ifndef EASEL_KERN_CONVERT_H
#define EASEL_KERN_CONVERT_H

#include <string.h>

#include "kern_common.h"

#define KERN_DT_F32 0
#define KERN_DT_F16 1
#define KERN_DT_BF16 2

typedef struct ConvertArgs {
    void *dst;
    const void *src;
    long n;
    int dst_dtype, src_dtype; /* KERN_DT_* */
} ConvertArgs;

KERN_HD unsigned kern_f32_bits(float x) {
    unsigned u;
    memcpy(&u, &x, sizeof u);
    return u;
}

KERN_HD float kern_bits_f32(unsigned u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

KERN_HD unsigned short kern_to_f16(float x) {
    unsigned u = kern_f32_bits(x), a = u & 0x7fffffffu;
    unsigned short sign = (unsigned short)((u >> 16) & 0x8000u);
    if (a >= 0x7f800000u)
        return (unsigned short)(sign | 0x7c00u |
                                (a > 0x7f800000u ? 0x0200u | ((a >> 13) & 0x3ffu) : 0u));
    if (a >= 0x477ff000u)
        return (unsigned short)(sign | 0x7c00u);
    if (a >= 0x38800000u) {
        a += 0x0fffu + ((a >> 13) & 1u);
        return (unsigned short)(sign | ((a - 0x38000000u) >> 13));
    }
    unsigned e = a >> 23;
    if (e < 102)
        return sign;
    unsigned m = (a & 0x7fffffu) | 0x800000u, shift = 126 - e;
    unsigned q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u)))
        q++;
    return (unsigned short)(sign | q);
}

KERN_HD float kern_from_f16(unsigned short h) {
    unsigned sign = (unsigned)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) {
        float v = (float)m * 5.9604644775390625e-8f; /* 2^-24 */
        return sign ? -v : v;
    }
    if (e == 31)
        return kern_bits_f32(sign | 0x7f800000u | (m << 13));
    return kern_bits_f32(sign | ((e + 112) << 23) | (m << 13));
}

KERN_HD unsigned short kern_to_bf16(float x) {
    unsigned u = kern_f32_bits(x);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (unsigned short)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (unsigned short)(u >> 16);
}

/* Element i of an array of dtype dt (KERN_DT_*) as f32, and v stored there rounded to nearest
 * even: the loads and stores of kernels that take half activations (kern_pointwise.h). */
KERN_HD float kern_ld(const void *p, long i, int dt) {
    if (dt == KERN_DT_F16)
        return kern_from_f16(((const unsigned short *)p)[i]);
    if (dt == KERN_DT_BF16)
        return kern_bits_f32((unsigned)((const unsigned short *)p)[i] << 16);
    return ((const float *)p)[i];
}

KERN_HD void kern_st(void *p, long i, int dt, float v) {
    if (dt == KERN_DT_F16)
        ((unsigned short *)p)[i] = kern_to_f16(v);
    else if (dt == KERN_DT_BF16)
        ((unsigned short *)p)[i] = kern_to_bf16(v);
    else
        ((float *)p)[i] = v;
}

/* dst[i] = src[i] converted (through f32, which every f16 and bf16 value is exactly). */
KERN_ENTRY void convert_dtype(KernCtx *k, const ConvertArgs *a) {
    long i = kern_global(k);
    if (i >= a->n)
        return;
    float x;
    if (a->src_dtype == KERN_DT_F16)
        x = kern_from_f16(((const unsigned short *)a->src)[i]);
    else if (a->src_dtype == KERN_DT_BF16)
        x = kern_bits_f32((unsigned)((const unsigned short *)a->src)[i] << 16);
    else
        x = ((const float *)a->src)[i];
    if (a->dst_dtype == KERN_DT_F16)
        ((unsigned short *)a->dst)[i] = kern_to_f16(x);
    else if (a->dst_dtype == KERN_DT_BF16)
        ((unsigned short *)a->dst)[i] = kern_to_bf16(x);
    else
        ((float *)a->dst)[i] = x;
}
KERN_HD KernLaunch convert_dtype_launch(const ConvertArgs *a) {
    return kern_launch_1d(kern_blocks(a->n, 256), 256, 0);
}

#endif
