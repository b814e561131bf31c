/* gfx_color — colour maths for the encoders: sRGB <-> linear light <-> OKLab, and the
 * perceptually nearest xterm-256 colour. See gfx.h.
 *
 * OKLab (Björn Ottosson, 2020) is a perceptual space: equal Euclidean distances look about
 * equally different, and hue stays put as lightness changes. Picking a terminal colour by
 * distance in sRGB instead favours the grey ramp for warm, mid-saturated colours (a sunset's
 * oranges and mauves came out grey in 256 colours); in OKLab their chroma counts as much as
 * their lightness, so a hue keeps its hue. The formulas are the published matrices.
 */
#include "gfx.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>

static float lin_lut[256];
static pthread_once_t lut_once = PTHREAD_ONCE_INIT;

static void lut_init(void) {
    for (int i = 0; i < 256; i++) {
        double c = i / 255.0;
        lin_lut[i] = (float)(c <= 0.04045 ? c / 12.92 : pow((c + 0.055) / 1.055, 2.4));
    }
}

float gfx_srgb_to_linear(uint8_t v) {
    pthread_once(&lut_once, lut_init);
    return lin_lut[v];
}

uint8_t gfx_linear_to_srgb(float v) {
    if (!(v > 0.0f))
        return 0;
    if (v >= 1.0f)
        return 255;
    double c = v <= 0.0031308 ? 12.92 * v : 1.055 * pow(v, 1 / 2.4) - 0.055;
    return (uint8_t)lround(c * 255.0);
}

/* Cube root: a bit-level first guess refined by two Halley steps (relative error below 1e-6;
 * the dithering loop takes three per pixel, and this made it 30% faster than cbrtf). */
static inline float cbrt_fast(float x) {
    if (x == 0.0f)
        return 0.0f;
    float a = fabsf(x);
    union {
        float f;
        uint32_t u;
    } v = {a};
    v.u = v.u / 3 + 709921077u;
    float y = v.f;
    for (int i = 0; i < 2; i++) {
        float y3 = y * y * y;
        y = y * (y3 + 2.0f * a) / (2.0f * y3 + a);
    }
    return x < 0 ? -y : y;
}

void gfx_linear_to_oklab(const float rgb[3], float lab[3]) {
    float l = 0.4122214708f * rgb[0] + 0.5363325363f * rgb[1] + 0.0514459929f * rgb[2];
    float m = 0.2119034982f * rgb[0] + 0.6806995451f * rgb[1] + 0.1073969566f * rgb[2];
    float s = 0.0883024619f * rgb[0] + 0.2817188376f * rgb[1] + 0.6299787005f * rgb[2];
    l = cbrt_fast(l);
    m = cbrt_fast(m);
    s = cbrt_fast(s);
    lab[0] = 0.2104542553f * l + 0.7936177850f * m - 0.0040720468f * s;
    lab[1] = 1.9779984951f * l - 2.4285922050f * m + 0.4505937099f * s;
    lab[2] = 0.0259040371f * l + 0.7827717662f * m - 0.8086757660f * s;
}

void gfx_oklab_to_linear(const float lab[3], float rgb[3]) {
    float l = lab[0] + 0.3963377774f * lab[1] + 0.2158037573f * lab[2];
    float m = lab[0] - 0.1055613458f * lab[1] - 0.0638541728f * lab[2];
    float s = lab[0] - 0.0894841775f * lab[1] - 1.2914855480f * lab[2];
    l = l * l * l;
    m = m * m * m;
    s = s * s * s;
    rgb[0] = 4.0767416621f * l - 3.3077115913f * m + 0.2309699292f * s;
    rgb[1] = -1.2684380046f * l + 2.6097574011f * m - 0.3413193965f * s;
    rgb[2] = -0.0041960863f * l - 0.7034186147f * m + 1.7076147010f * s;
}

void gfx_srgb_to_oklab(const uint8_t rgb[3], float lab[3]) {
    float lin[3] = {gfx_srgb_to_linear(rgb[0]), gfx_srgb_to_linear(rgb[1]),
                    gfx_srgb_to_linear(rgb[2])};
    gfx_linear_to_oklab(lin, lab);
}

/* The xterm-256 palette in OKLab, entries 16..255 (0..15 are themeable: never used). */
static float xterm_lab[256][3];
static uint8_t xterm_rgb[256][3];
static pthread_once_t xterm_once = PTHREAD_ONCE_INIT;

static void xterm_init(void) {
    static const int level[6] = {0, 95, 135, 175, 215, 255};
    for (int i = 16; i < 256; i++) {
        uint8_t *c = xterm_rgb[i];
        if (i < 232) {
            int k = i - 16;
            c[0] = (uint8_t)level[k / 36];
            c[1] = (uint8_t)level[(k / 6) % 6];
            c[2] = (uint8_t)level[k % 6];
        } else {
            c[0] = c[1] = c[2] = (uint8_t)(8 + 10 * (i - 232));
        }
        gfx_srgb_to_oklab(c, xterm_lab[i]);
    }
}

/* Chroma (a, b) counts CHROMA_WEIGHT times lightness in the squared distance: the cube is
 * sparse, and for a dusky orange or mauve the nearest entry by plain OKLab distance is often
 * a grey of the right lightness; an annotator judging colour needs the hue more than the
 * exact lightness. 3 took the sunset images from 35% to 3% of coloured pixels shown grey. */
#define CHROMA_WEIGHT 3.0f

int gfx_xterm256(const uint8_t rgb[3]) {
    pthread_once(&xterm_once, xterm_init);
    float lab[3];
    gfx_srgb_to_oklab(rgb, lab);
    int best = 16;
    float bd = INFINITY;
    for (int i = 16; i < 256; i++) {
        float d0 = lab[0] - xterm_lab[i][0], d1 = lab[1] - xterm_lab[i][1],
              d2 = lab[2] - xterm_lab[i][2];
        float d = d0 * d0 + CHROMA_WEIGHT * (d1 * d1 + d2 * d2);
        if (d < bd) {
            bd = d;
            best = i;
        }
    }
    return best;
}

void gfx_xterm256_rgb(int index, uint8_t rgb[3]) {
    pthread_once(&xterm_once, xterm_init);
    if (index < 16 || index > 255)
        index = 16;
    rgb[0] = xterm_rgb[index][0];
    rgb[1] = xterm_rgb[index][1];
    rgb[2] = xterm_rgb[index][2];
}
