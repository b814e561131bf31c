/* tune_latents — see tune_latents.h. */
#include "tune_latents.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "clip_image.h"
#include "image.h"
#include "infile.h"
#include "sd_weights.h"
#include "store_latents.h"

#define KEY_SAMPLE 4096 /* bytes of each encoder tensor hashed at its start, middle and end */

int tune_vae_key(const char *model_path, char key[SHA256_HEX_LEN + 1], Err *err) {
    SdWeights *w;
    int rc = sd_weights_open(model_path, "vae", &w, err);
    if (rc)
        return rc;
    const char *cj = sd_weights_config_json(w);
    VaeConfig cfg;
    if (!cj) {
        rc = err_set(err, ERR_FORMAT, "%s: the VAE has no config.json", sd_weights_where(w));
        goto out;
    }
    if ((rc = vae_config_parse(cj, sd_weights_where(w), &cfg, err)))
        goto out;
    Sha256 h;
    sha256_init(&h);
    char head[128];
    int k = snprintf(head, sizeof head, "easel-vae-encoder-1 scale=%.9g shift=%.9g latent=%d\n",
                     (double)cfg.scaling_factor, cfg.has_shift ? (double)cfg.shift_factor : 0.0,
                     cfg.latent_channels);
    sha256_update(&h, head, (size_t)k);
    size_t n = sd_weights_count(w);
    for (size_t i = 0; i < n; i++) {
        const char *name = sd_weights_name(w, i);
        if (strncmp(name, "encoder.", 8) != 0 && strncmp(name, "quant_conv.", 11) != 0)
            continue;
        const StTensor *t = sd_weights_find(w, name);
        if (!t)
            continue;
        char line[512];
        k = snprintf(line, sizeof line, "%s %d %d", name, (int)t->dtype, t->n_dim);
        for (int d = 0; d < t->n_dim && k < (int)sizeof line - 24; d++)
            k += snprintf(line + k, sizeof line - (size_t)k, " %lld", (long long)t->shape[d]);
        k += snprintf(line + k, sizeof line - (size_t)k, " %llu\n",
                      (unsigned long long)t->n_bytes);
        sha256_update(&h, line, (size_t)(k < (int)sizeof line ? k : (int)sizeof line - 1));
        const uint8_t *b = t->data;
        uint64_t nb = t->n_bytes;
        if (nb <= 3 * KEY_SAMPLE) {
            sha256_update(&h, b, nb);
        } else {
            sha256_update(&h, b, KEY_SAMPLE);
            sha256_update(&h, b + nb / 2 - KEY_SAMPLE / 2, KEY_SAMPLE);
            sha256_update(&h, b + nb - KEY_SAMPLE, KEY_SAMPLE);
        }
    }
    uint8_t dig[32];
    sha256_final(&h, dig);
    for (int i = 0; i < 32; i++)
        snprintf(key + 2 * i, 3, "%02x", dig[i]);
out:
    sd_weights_close(w);
    return rc;
}

void tune_image_pixels(const uint8_t *px, int sw, int sh, int W, int H, float *out) {
    int rw, rh;
    if ((double)W / sw >= (double)H / sh) { /* the width decides */
        rw = W;
        rh = (int)((double)W * sh / sw);
        if (rh < H)
            rh = H;
    } else {
        rh = H;
        rw = (int)((double)H * sw / sh);
        if (rw < W)
            rw = W;
    }
    uint8_t *rs = NULL;
    const uint8_t *src = px;
    if (rw != sw || rh != sh) {
        rs = xmalloc((size_t)rw * rh * 3);
        clip_image_resize_bicubic(rs, rw, rh, px, sw, sh, 3);
        src = rs;
    }
    int top = (int)nearbyint((rh - H) / 2.0), left = (int)nearbyint((rw - W) / 2.0);
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                float v = (float)src[((size_t)(y + top) * rw + (x + left)) * 3 + c] / 255.0f;
                out[((size_t)c * H + y) * W + x] = (v - 0.5f) / 0.5f;
            }
    free(rs);
}

int tune_latents_get_ex(Store *st, Vae *vae, const char *vae_key, const char *image_path,
                        int width, int height, float *latents, int *encoded, Err *err) {
    if (encoded)
        *encoded = 0;
    const VaeConfig *vc = vae_config(vae);
    int s = vae_scale(vc);
    if (width <= 0 || height <= 0 || width % s || height % s)
        return err_set(err, ERR_USAGE,
                       "the training size %dx%d must be positive multiples of %d (the VAE's "
                       "scale)",
                       width, height, s);
    StoreLatentShape shape = {vc->latent_channels, height / s, width / s};
    size_t nl = (size_t)shape.channels * shape.lh * shape.lw;
    unsigned char *buf;
    size_t n;
    int rc = infile_read_all(image_path, "PNG/JPEG image", INFILE_MAX_IMAGE, &buf, &n, err);
    if (rc)
        return rc;
    char sha[SHA256_HEX_LEN + 1];
    sha256_hex(buf, n, sha);
    Err e = {0};
    rc = store_latents_get(st, sha, vae_key, width, height, &shape, latents, &e);
    if (rc == 0 || (rc != ERR_NOTFOUND && rc != ERR_FORMAT)) { /* a hit, or the store failed */
        free(buf);
        return rc ? err_pass(err, &e, rc) : 0;
    }
    /* a miss (or a row of another shape, replaced below): encode */
    Image im;
    rc = image_decode(buf, n, image_path, 3, &im, err);
    free(buf);
    if (rc)
        return rc;
    float *pix = xmalloc((size_t)3 * width * height * sizeof *pix);
    float *logvar = xmalloc(nl * sizeof *logvar);
    tune_image_pixels(im.px, im.w, im.h, width, height, pix);
    image_deinit(&im);
    rc = vae_encode(vae, pix, 1, height, width, latents, logvar, err);
    free(pix);
    free(logvar);
    if (rc)
        return err_prefix(err, "encode %s", image_path);
    float shift = vc->has_shift ? vc->shift_factor : 0.0f;
    for (size_t i = 0; i < nl; i++)
        latents[i] = (latents[i] - shift) * vc->scaling_factor;
    if (encoded)
        *encoded = 1;
    return store_latents_put(st, sha, vae_key, width, height, &shape, latents, err);
}

int tune_latents_get(Store *st, Vae *vae, const char *vae_key, const char *image_path, int width,
                     int height, float *latents, Err *err) {
    return tune_latents_get_ex(st, vae, vae_key, image_path, width, height, latents, NULL, err);
}
