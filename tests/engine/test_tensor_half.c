/* Tests for the Tensor dtype and the f16/bf16 conversions (src/engine/tensor_half.c). Engine-only.
 *
 * The rounding is checked against its definition rather than another implementation: every
 * half value round-trips exactly; the midpoint of two neighbouring values rounds to the one
 * with an even last bit, and anything just above or below the midpoint to the nearer one. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "tensor.h"

static uint32_t bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

Test(tensor_half, constructors_are_f32_and_dtype_sizes) {
    float d[6] = {0};
    Tensor t = tensor_2d(d, 2, 3);
    cr_expect_eq(t.dtype, DTYPE_F32);
    cr_expect_eq(t.data, d);
    cr_expect_eq(t.ptr, (void *)d);
    cr_expect_eq(tensor_nbytes(&t), 24);
    Tensor z = {.data = d, .n_dims = 1, .shape = {6, 1, 1, 1}};
    cr_expect_eq(z.dtype, DTYPE_F32);
    uint16_t h[6];
    Tensor th = tensor_view_dtype(h, DTYPE_BF16, 2, (int64_t[]){2, 3});
    cr_expect_eq(th.dtype, DTYPE_BF16);
    cr_expect_eq(tensor_nbytes(&th), 12);
    cr_expect(tensor_is_contiguous(&th));
    cr_expect_str_eq(dtype_name(DTYPE_F16), "f16");
    cr_expect_eq(dtype_size(DTYPE_F16), 2);
}

Test(tensor_half, f16_round_trips_every_value) {
    for (uint32_t h = 0; h < 65536; h++) {
        float f = f16_to_f32((uint16_t)h);
        uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
        if (e == 31 && m) {
            cr_assert(isnan(f), "f16 %#x should be NaN", h);
            uint16_t back = f32_to_f16(f);
            cr_assert(((back >> 10) & 0x1f) == 31 && (back & 0x3ff), "NaN %#x lost", h);
            cr_assert_eq(back & 0x8000, h & 0x8000, "NaN sign of %#x lost", h);
            continue;
        }
        cr_assert_eq(f32_to_f16(f), h, "f16 %#x -> %g -> %#x", h, f, f32_to_f16(f));
    }
    cr_expect_eq(f16_to_f32(0x3c00), 1.0f);
    cr_expect_eq(f16_to_f32(0x0001), 0x1p-24f);
    cr_expect_eq(f16_to_f32(0x7bff), 65504.0f);
    cr_expect(isinf(f16_to_f32(0xfc00)) && f16_to_f32(0xfc00) < 0);
}

/* Midpoints between neighbours a < b (positive, finite) and their nudges. */
static void check_midpoints(uint16_t (*to)(float), float (*from)(uint16_t), uint16_t last) {
    for (uint32_t h = 0; h < last; h++) {
        float a = from((uint16_t)h), b = from((uint16_t)(h + 1));
        float mid = a + (b - a) / 2; /* exact: a and b are f32 with spare mantissa bits */
        uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        cr_assert_eq(to(mid), even, "mid of %#x,%#x gives %#x", h, h + 1, to(mid));
        cr_assert_eq(to(nextafterf(mid, INFINITY)), h + 1, "above mid of %#x", h);
        cr_assert_eq(to(nextafterf(mid, 0.0f)), h, "below mid of %#x", h);
        cr_assert_eq(to(-mid), (uint16_t)(even | 0x8000), "negative mid of %#x", h);
    }
}

Test(tensor_half, f16_rounds_to_nearest_even) {
    check_midpoints(f32_to_f16, f16_to_f32, 0x7bff - 1 + 1);
    /* the top: halfway between 65504 and the next step (65536) goes to inf */
    cr_expect_eq(f32_to_f16(65519.0f), 0x7bff);
    cr_expect_eq(f32_to_f16(65520.0f), 0x7c00);
    cr_expect_eq(f32_to_f16(1e10f), 0x7c00);
    cr_expect_eq(f32_to_f16(-1e10f), 0xfc00);
    cr_expect_eq(f32_to_f16(INFINITY), 0x7c00);
    /* below the smallest subnormal: 2^-25 is a tie that goes to zero, just above it to 1 */
    cr_expect_eq(f32_to_f16(0x1p-25f), 0);
    cr_expect_eq(f32_to_f16(nextafterf(0x1p-25f, 1.0f)), 1);
    cr_expect_eq(f32_to_f16(1e-30f), 0);
    cr_expect_eq(f32_to_f16(-1e-30f), 0x8000);
    cr_expect(isnan(f16_to_f32(f32_to_f16(NAN))));
}

Test(tensor_half, bf16_round_trips_and_rounds_to_nearest_even) {
    for (uint32_t h = 0; h < 65536; h++) {
        float f = bf16_to_f32((uint16_t)h);
        if (isnan(f)) {
            cr_assert(isnan(bf16_to_f32(f32_to_bf16(f))), "bf16 NaN %#x lost", h);
            continue;
        }
        cr_assert_eq(f32_to_bf16(f), h, "bf16 %#x round trip", h);
        cr_assert_eq(bits(f) & 0xffff, 0);
    }
    check_midpoints(f32_to_bf16, bf16_to_f32, 0x7f7f - 1 + 1);
    cr_expect_eq(f32_to_bf16(3.4028235e38f), 0x7f80); /* FLT_MAX rounds up to inf */
    cr_expect_eq(f32_to_bf16(-INFINITY), 0xff80);
    uint32_t snan = 0x7f800001u; /* a signalling NaN whose payload is all in the low half */
    float fs;
    memcpy(&fs, &snan, sizeof fs);
    cr_expect(isnan(bf16_to_f32(f32_to_bf16(fs))), "a NaN must not truncate to inf");
    cr_expect(isnan(f16_to_f32(f32_to_f16(fs))));
}

Test(tensor_half, array_conversions) {
    float src[5] = {1.0f, -2.5f, 0.1f, 65504.0f, 1e-8f}, back[5];
    uint16_t h[5];
    for (int dt = DTYPE_F16; dt <= DTYPE_BF16; dt++) {
        dtype_from_f32(h, (DType)dt, src, 5);
        dtype_to_f32(back, h, (DType)dt, 5);
        for (int i = 0; i < 5; i++) {
            uint16_t one = dt == DTYPE_F16 ? f32_to_f16(src[i]) : f32_to_bf16(src[i]);
            cr_expect_eq(h[i], one);
            cr_expect_eq(back[i], dt == DTYPE_F16 ? f16_to_f32(one) : bf16_to_f32(one));
        }
    }
    dtype_to_f32(back, src, DTYPE_F32, 5);
    cr_expect_eq(memcmp(back, src, sizeof src), 0);
}
