/* test_clip_reference — a ViT-B/32-shaped random CLIP against open_clip, run by
 * `make test-reference`, which makes the model with tests/clip/make_fixtures.py --reference
 * (needs torch + open_clip from pip; nothing is committed) and sets EASEL_CLIP_REF to its
 * folder. Without EASEL_CLIP_REF (plain `make test`) every test is skipped.
 * Checks: OpenCLIP layout f32 with open_clip_config.json, Hugging Face layout f16 with
 * config.json, and the architecture inferred from tensor shapes alone; image embeddings,
 * patch tokens and text embeddings within 1e-4. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cpu.h"
#include "base.h"
#include "clip.h"
#include "fmt_safetensors.h"

static const char *dir(void) {
    const char *d = getenv("EASEL_CLIP_REF");
    if (!d || !*d)
        cr_skip_test("EASEL_CLIP_REF not set: run 'make test-reference'");
    return d;
}

static float max_err(const float *a, const float *b, int64_t n) {
    float w = 0;
    for (int64_t i = 0; i < n; i++)
        if (!(fabsf(a[i] - b[i]) <= w))
            w = fabsf(a[i] - b[i]);
    return w;
}

static void check(const char *sub, const char *config_source, float tol) {
    char *rp = xasprintf("%s/ref.safetensors", dir());
    char *mp = xasprintf("%s/%s", dir(), sub);
    Err err = {0};
    SafeTensors *ref = safetensors_open(rp, &err);
    cr_assert(ref, "%s", err.msg);
    double t0 = base_now();
    ClipModel *m = clip_model_load(mp, &err);
    cr_assert(m, "%s", err.msg);
    cr_log_info("%s: loaded in %.2f s", sub, base_now() - t0);
    cr_assert_str_eq(clip_model_config_source(m), config_source);
    const ClipConfig *c = clip_model_config(m);
    cr_assert_eq(c->embed_dim, 512);
    cr_assert_eq(c->vision_width, 768);
    cr_assert_eq(c->vision_heads, 12);
    cr_assert_eq(c->vision_layers, 12);
    cr_assert_eq(c->patch_size, 32);
    cr_assert_eq(c->image_size, 224);
    cr_assert_eq(c->text_width, 512);
    cr_assert_eq(c->text_heads, 8);
    cr_assert_eq(c->text_layers, 12);
    CpuPool *pool = backend_cpu_pool_new(0, &err);
    CpuPool *prev = backend_cpu_use(pool);
    const StTensor *px = safetensors_find(ref, "pixels");
    const StTensor *ie = safetensors_find(ref, "image_embeds");
    const StTensor *it = safetensors_find(ref, "image_tokens");
    const StTensor *ids = safetensors_find(ref, "ids");
    const StTensor *te = safetensors_find(ref, "text_embeds");
    int n_img = (int)(ie->n_elem / 512), n_txt = (int)(te->n_elem / 512);
    float *emb = xmalloc((size_t)ie->n_elem * sizeof(float));
    float *tok = xmalloc((size_t)it->n_elem * sizeof(float));
    float *txt = xmalloc((size_t)te->n_elem * sizeof(float));
    cr_assert_eq(clip_model_encode_pixels(m, safetensors_f32_view(px), n_img, emb, tok, &err), 0);
    cr_assert_eq(clip_model_encode_ids(m, ids->data, n_txt, txt, &err), 0, "%s", err.msg);
    float e1 = max_err(emb, safetensors_f32_view(ie), ie->n_elem);
    float e2 = max_err(tok, safetensors_f32_view(it), it->n_elem);
    float e3 = max_err(txt, safetensors_f32_view(te), te->n_elem);
    cr_log_info("%s: max abs error image %.2e tokens %.2e text %.2e", sub, e1, e2, e3);
    cr_assert(e1 <= tol, "%s image embeddings: %g", sub, e1);
    cr_assert(e2 <= tol * 10, "%s patch tokens: %g", sub, e2);
    cr_assert(e3 <= tol, "%s text embeddings: %g", sub, e3);
    backend_cpu_use(prev);
    backend_cpu_pool_free(pool);
    free(emb);
    free(tok);
    free(txt);
    clip_model_free(m);
    safetensors_close(ref);
    free(rp);
    free(mp);
}

Test(clip_reference, vit_b32_openclip_f32) { check("vit-b-32", "open_clip_config.json", 1e-4f); }
Test(clip_reference, vit_b32_hf_f16) { check("vit-b-32-hf", "config.json", 1e-4f); }
Test(clip_reference, vit_b32_shapes_only) { check("vit-b-32-shapes", "shapes", 1e-4f); }
