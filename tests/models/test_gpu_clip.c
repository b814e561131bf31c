/* CLIP on the CUDA backend's op code against CLIP on the CPU backend: images with patch
 * tokens, texts, the pooled and projected outputs and every vision layer's hidden states.
 *
 * "emu" (gpu/backend_emu.c: the CUDA backend's ops with its kernels on the host emulation
 * harness) runs everywhere, on the tiny OpenCLIP fixture (f32, GELU); "cuda:0" where a GPU is
 * (make test-gpu; skipped without one, failed without one when EASEL_TEST_GPU is set), on it
 * and the Hugging Face one (bf16 weights), with every text layer at all 77 positions too.
 * Tolerance: cosine >= 0.9999 per row and a max abs difference of 1e-4 (2e-3 on a device:
 * its expf, erff and FMA contraction).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend_impl.h"
#include "base.h"
#include "clip.h"
#include "cuda.h"
#include "fmt_safetensors.h"

#define FIX "tests/fixtures/clip/"

typedef struct Outs {
    int n_img, n_txt, E, NP, Cv, Ct, Lv, Lt;
    float *img, *tok, *txt, *hid_v, *pool_v, *proj_v, *hid_t, *pool_t, *proj_t;
} Outs;

static const char *texts[] = {"a red cube on a blue sphere, 35mm", ""};

/* What the model gives on BE for the fixture's first N_IMG images and the texts above:
 * embeddings and patch tokens; with LAYERS also every vision layer's states (after the
 * final LayerNorm), pooled and projected, and the text's (all 77 positions: on a device only,
 * the emulator is slow). */
static void run(const char *dir, Backend *be, Outs *o, int n_img, int layers, int text_layers) {
    Err err = {0};
    ClipModel *m = NULL;
    cr_assert_eq(clip_model_open(dir, CLIP_WEIGHTS_AUTO, be, &m, &err), 0, "%s: %s", dir,
                 err.msg);
    SafeTensors *ref = safetensors_open(FIX "tiny_ref.safetensors", &err);
    cr_assert(ref, "%s", err.msg);
    const StTensor *px = safetensors_find(ref, "pixels");
    cr_assert(px && px->shape[0] >= n_img);
    const float *pixels = safetensors_f32_view(px);
    const ClipConfig *c = clip_model_config(m);
    memset(o, 0, sizeof *o);
    o->n_img = n_img, o->n_txt = 2;
    o->E = c->embed_dim, o->NP = clip_model_n_patches(m);
    o->Cv = c->vision_width, o->Ct = c->text_width;
    o->Lv = c->vision_layers, o->Lt = c->text_layers;
    int T = 1 + o->NP;
    o->img = xcalloc((size_t)n_img * o->E, sizeof(float));
    o->tok = xcalloc((size_t)n_img * o->NP * o->E, sizeof(float));
    o->txt = xcalloc((size_t)o->n_txt * o->E, sizeof(float));
    o->hid_v = xcalloc((size_t)n_img * (o->Lv + 1) * T * o->Cv, sizeof(float));
    o->pool_v = xcalloc((size_t)n_img * o->Cv, sizeof(float));
    o->proj_v = xcalloc((size_t)n_img * o->E, sizeof(float));
    o->hid_t = xcalloc((size_t)(o->Lt + 1) * 77 * o->Ct, sizeof(float));
    o->pool_t = xcalloc((size_t)o->Ct, sizeof(float));
    o->proj_t = xcalloc((size_t)o->E, sizeof(float));
    cr_assert_eq(clip_model_encode_pixels(m, pixels, n_img, o->img, o->tok, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(clip_model_encode_texts(m, texts, o->n_txt, o->txt, &err), 0, "%s", err.msg);
    if (layers) {
        ClipOutputs ov = {CLIP_ALL_LAYERS, 1, o->hid_v, o->pool_v, o->proj_v};
        cr_assert_eq(clip_model_vision_forward(m, pixels, n_img, &ov, &err), 0, "%s", err.msg);
    }
    if (text_layers) {
        int32_t ids[77];
        cr_assert_eq(c->context_length, 77);
        clip_tokenizer_tokenize(clip_model_tokenizer(m), texts[0], ids, 77);
        ClipOutputs ot = {CLIP_ALL_LAYERS, 0, o->hid_t, o->pool_t, o->proj_t};
        cr_assert_eq(clip_model_text_forward(m, ids, 1, &ot, &err), 0, "%s", err.msg);
    }
    safetensors_close(ref);
    clip_model_free(m);
}

static void outs_free(Outs *o) {
    free(o->img), free(o->tok), free(o->txt), free(o->hid_v), free(o->pool_v), free(o->proj_v);
    free(o->hid_t), free(o->pool_t), free(o->proj_t);
}

/* Rows of D floats: cosine >= 0.9999 each (rows of norm > 0), max abs difference <= tol. */
static void same(const char *what, const float *got, const float *want, size_t rows, size_t d,
                 double tol) {
    double worst = 0;
    for (size_t r = 0; r < rows; r++) {
        double dot = 0, ng = 0, nw = 0;
        for (size_t i = 0; i < d; i++) {
            double g = got[r * d + i], w = want[r * d + i];
            dot += g * w, ng += g * g, nw += w * w;
            worst = fmax(worst, fabs(g - w));
        }
        if (nw > 1e-20)
            cr_expect(dot / sqrt(ng * nw) >= 0.9999, "%s row %zu: cosine %.7f", what, r,
                      dot / sqrt(ng * nw));
    }
    cr_expect(worst <= tol, "%s: max abs difference %g (tolerance %g)", what, worst, tol);
}

/* BE against the CPU backend on the first N_MODELS fixtures (the layers on the OpenCLIP
 * one). */
static void compare(Backend *be, int n_models, int n_img, int text_layers, double tol) {
    const char *dirs[2] = {FIX "tiny_openclip", FIX "tiny_hf"};
    for (int d = 0; d < n_models; d++) {
        Backend *cpu = NULL;
        Err err = {0};
        cr_assert_eq(backend_open("cpu", NULL, &cpu, NULL, 0, &err), 0, "%s", err.msg);
        Outs want, got;
        run(dirs[d], cpu, &want, n_img, d == 0, d == 0 && text_layers);
        run(dirs[d], be, &got, n_img, d == 0, d == 0 && text_layers);
        size_t ni = (size_t)n_img, T = 1 + (size_t)want.NP;
        same("image embeddings", got.img, want.img, ni, (size_t)want.E, tol);
        same("patch tokens", got.tok, want.tok, ni * want.NP, (size_t)want.E, tol);
        same("text embeddings", got.txt, want.txt, (size_t)want.n_txt, (size_t)want.E, tol);
        same("vision hidden states", got.hid_v, want.hid_v, ni * (want.Lv + 1) * T,
             (size_t)want.Cv, tol);
        same("vision pooled", got.pool_v, want.pool_v, ni, (size_t)want.Cv, tol);
        same("vision projected", got.proj_v, want.proj_v, ni, (size_t)want.E, tol);
        same("text hidden states", got.hid_t, want.hid_t, (size_t)(want.Lt + 1) * 77,
             (size_t)want.Ct, tol);
        same("text pooled", got.pool_t, want.pool_t, 1, (size_t)want.Ct, tol);
        same("text projected", got.proj_t, want.proj_t, 1, (size_t)want.E, tol);
        outs_free(&want);
        outs_free(&got);
        backend_close(cpu);
    }
}

Test(gpu_clip, emu_backend_matches_the_cpu) {
    Backend *be = NULL;
    Err err = {0};
    cr_assert_eq(backend_emu_open(NULL, &be, &err), 0, "%s", err.msg);
    /* the OpenCLIP model, one image, no 77-position text: the emulator starts a host thread per
     * GPU thread (the bf16 ops' marshalling is in test_nn_backend_ops) */
    compare(be, 1, 1, 0, 1e-4);
    backend_close(be);
}

Test(gpu_clip, cuda_matches_the_cpu) {
    CudaDevice devs[4];
    int n = 0;
    char why[256];
    cuda_probe(devs, 4, &n, why, sizeof why);
    if (n == 0) {
        if (getenv("EASEL_TEST_GPU"))
            cr_assert_fail("EASEL_TEST_GPU set but no CUDA device: %s", why);
        cr_skip_test("no CUDA backend here: %s", why);
    }
    Backend *be = NULL;
    Err err = {0};
    cr_assert_eq(backend_open("cuda:0", NULL, &be, NULL, 0, &err), 0, "%s", err.msg);
    compare(be, 2, 3, 1, 2e-3);
    backend_close(be);
}
