/* sd_weights' load memory (mem15): tensors read into the resident dtype in bounded pieces —
 * the pieces give exactly what a whole-tensor read gives (every dtype, scaled, a piece size
 * that divides nothing), the UNet and the VAE loaders stage no more than one piece, a damaged
 * value in a later piece is named by its element, and the mapped file's pages leave the
 * resident set as they are read (the peak resident set of reading a 64 MiB tensor into bf16
 * rises by the bf16 copy and a piece, not by the file). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "base.h"
#include "sd_weights.h"
#include "unet.h"
#include "vae.h"

#define FIX "tests/models/fixtures/"

static char root[64];

static void setup(void) {
    strcpy(root, "/tmp/easel-sdwm-XXXXXX");
    cr_assert(mkdtemp(root));
    sd_weights_set_chunk(0);
    sd_weights_staging_peak(1);
}

static void teardown(void) {
    sd_weights_set_chunk(0);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(sd_weights_mem, .init = setup, .fini = teardown);

/* A sink that copies the pieces into one buffer and checks they come in order. */
typedef struct Collect {
    unsigned char *buf;
    size_t es, next, pieces;
} Collect;

static int collect(void *user, size_t first, const void *data, size_t n, Err *err) {
    (void)err;
    Collect *c = user;
    cr_assert_eq(first, c->next, "piece at %zu, expected %zu", first, c->next);
    memcpy(c->buf + first * c->es, data, n * c->es);
    c->next = first + n;
    c->pieces++;
    return 0;
}

/* Every tensor of COMPONENT at PATH (with LORA added when not NULL) read in pieces of CHUNK
 * elements equals the whole read, converted, for each dtype and with a scale; at least
 * MIN_MULTI reads came in several pieces. */
static void pieces_equal_whole(const char *path, const char *component, const char *lora,
                               size_t chunk, size_t min_multi) {
    SdWeights *w = NULL;
    Err err = {0};
    cr_assert_eq(sd_weights_open(path, component, &w, &err), 0, "%s", err.msg);
    if (lora)
        cr_assert_eq(sd_weights_add_lora(w, lora, 0.7f, &err), 0, "%s", err.msg);
    sd_weights_set_chunk(chunk);
    size_t multi = 0;
    static const DType dts[] = {DTYPE_F32, DTYPE_F16, DTYPE_BF16};
    for (size_t i = 0; i < sd_weights_count(w); i++) {
        const char *name = sd_weights_name(w, i);
        const StTensor *t = sd_weights_find(w, name);
        size_t n = (size_t)t->n_elem;
        float *whole = xmalloc(n * sizeof *whole);
        cr_assert_eq(sd_weights_read_f32(w, name, t->n_dim, t->shape, whole, &err), 0, "%s",
                     err.msg);
        for (size_t d = 0; d < 3; d++) {
            float scale = d == 2 ? 0.125f : 1.0f;
            for (size_t k = 0; k < n; k++)
                whole[k] *= scale;
            size_t es = dtype_size(dts[d]);
            unsigned char *want = xmalloc(n * es);
            if (dts[d] == DTYPE_F32)
                memcpy(want, whole, n * es);
            else
                dtype_from_f32(want, dts[d], whole, n);
            for (size_t k = 0; k < n; k++)
                whole[k] /= scale;
            Collect c = {xcalloc(n, es), es, 0, 0};
            cr_assert_eq(sd_weights_read(w, name, t->n_dim, t->shape, dts[d], scale, collect,
                                         &c, &err), 0, "%s", err.msg);
            cr_assert_eq(c.next, n, "%s: %zu of %zu elements", name, c.next, n);
            cr_assert_eq(memcmp(c.buf, want, n * es), 0, "%s as %s differs", name,
                         dtype_name(dts[d]));
            multi += c.pieces > 1;
            free(c.buf);
            free(want);
        }
        free(whole);
    }
    cr_assert_geq(multi, min_multi, "%s %s: only %zu reads were split into pieces: a weak "
                  "test", path, component, multi);
    sd_weights_close(w);
}

Test(sd_weights_mem, pieces_equal_whole_reads) {
    pieces_equal_whole(FIX "unet_sd", "unet", NULL, 1000, 10);
    pieces_equal_whole(FIX "vae_sd", "vae", NULL, 1000, 10);
    /* single files: renamed; OpenCLIP's q/k/v rows sliced out of in_proj (3 pieces of a
     * 256-element slice), SDXL's bigG text_projection transposed (read whole) */
    pieces_equal_whole(FIX "sdfile/sd2.safetensors", "unet", NULL, 1000, 10);
    pieces_equal_whole(FIX "sdfile/sd2.safetensors", "text_encoder", NULL, 100, 10);
    pieces_equal_whole(FIX "sdfile/sdxl.safetensors", "text_encoder_2", NULL, 100, 10);
    SdWeights *w = NULL;
    Err err = {0};
    cr_assert_eq(sd_weights_open(FIX "sdfile/sdxl.safetensors", "text_encoder_2", &w, &err), 0,
                 "%s", err.msg);
    cr_assert_not_null(sd_weights_find(w, "text_projection.weight"), "no transposed tensor");
    sd_weights_close(w);
    /* with a LoRA every tensor is read whole (the delta needs all of it), one piece */
    pieces_equal_whole("tests/gen/fixtures/pipeline_sd", "unet",
                       "tests/gen/fixtures/pipeline_sd_lora.safetensors", 1000, 0);
}

static Backend *open_cpu(void) {
    Backend *be = NULL;
    Err err = {0};
    BackendConfig cfg = {0};
    cr_assert_eq(backend_open("cpu", &cfg, &be, NULL, 0, &err), 0, "%s", err.msg);
    return be;
}

/* The loaders hold one piece of host staging, not a whole tensor (the largest of the
 * fixture UNet is many pieces). */
Test(sd_weights_mem, loaders_stage_one_piece) {
    const size_t ch = 1000;
    Backend *be = open_cpu();
    Err err = {0};
    static const DType dts[] = {DTYPE_F32, DTYPE_BF16};
    for (size_t d = 0; d < 2; d++) {
        SdWeights *w = NULL;
        cr_assert_eq(sd_weights_open(FIX "unet_sd", "unet", &w, &err), 0, "%s", err.msg);
        size_t largest = 0;
        for (size_t i = 0; i < sd_weights_count(w); i++) {
            size_t n = (size_t)sd_weights_find(w, sd_weights_name(w, i))->n_elem;
            largest = n > largest ? n : largest;
        }
        cr_assert_gt(largest, 8 * ch, "the fixture's largest tensor (%zu) fits a piece",
                     largest);
        sd_weights_set_chunk(ch);
        sd_weights_staging_peak(1);
        UnetOptions uo = {dts[d]};
        Unet *u = NULL;
        cr_assert_eq(unet_load(w, be, &uo, &u, &err), 0, "%s", err.msg);
        size_t peak = sd_weights_staging_peak(1);
        cr_assert_leq(peak, ch * (sizeof(float) + dtype_size(dts[d])),
                      "UNet (%s): %zu bytes of staging for pieces of %zu elements (largest "
                      "tensor %zu)", dtype_name(dts[d]), peak, ch, largest);
        unet_free(u);
        sd_weights_close(w);
        VaeOptions vo = {0};
        vo.weight_dtype = dts[d];
        Vae *v = NULL;
        cr_assert_eq(vae_load(be, FIX "vae_sd", &vo, &v, &err), 0, "%s", err.msg);
        peak = sd_weights_staging_peak(1);
        cr_assert_leq(peak, ch * (sizeof(float) + dtype_size(dts[d])),
                      "VAE (%s): %zu bytes of staging for pieces of %zu elements",
                      dtype_name(dts[d]), peak, ch);
        vae_free(v);
        sd_weights_set_chunk(0);
    }
    backend_close(be);
}

/* ROOT/unet/diffusion_pytorch_model.safetensors with one f32 tensor "big.weight" of N
 * elements (i / N), POISON at element BAD when BAD < N. */
static void write_big(size_t n, size_t bad, float poison) {
    char *d = xasprintf("%s/unet", root);
    mkdir(d, 0700);
    char *p = xasprintf("%s/diffusion_pytorch_model.safetensors", d);
    float *v = xmalloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = (float)i / (float)n;
    if (bad < n)
        v[bad] = poison;
    SafeTensorsWriter *wr = safetensors_writer_new();
    Err err = {0};
    int64_t shape[1] = {(int64_t)n};
    cr_assert_eq(safetensors_writer_add(wr, "big.weight", ST_F32, 1, shape, v, &err), 0);
    cr_assert_eq(safetensors_writer_save(wr, p, &err), 0, "%s", err.msg);
    safetensors_writer_free(wr);
    free(v);
    free(p);
    free(d);
}

static int discard(void *user, size_t first, const void *data, size_t n, Err *err) {
    (void)user, (void)first, (void)data, (void)n, (void)err;
    return 0;
}

/* A NaN past the first piece: the error names the element, as a whole read does. */
Test(sd_weights_mem, damaged_value_in_a_later_piece_is_named) {
    write_big(5000, 3210, NAN);
    SdWeights *w = NULL;
    Err err = {0};
    cr_assert_eq(sd_weights_open(root, "unet", &w, &err), 0, "%s", err.msg);
    sd_weights_set_chunk(1000);
    int64_t shape[1] = {5000};
    cr_assert_eq(sd_weights_read(w, "big.weight", 1, shape, DTYPE_BF16, 1.0f, discard, NULL,
                                 &err), ERR_FORMAT);
    cr_assert(strstr(err.msg, "big.weight holds a non-finite value (nan at element 3210)"),
              "%s", err.msg);
    int64_t wrong[1] = {4999};
    cr_assert_eq(sd_weights_read(w, "big.weight", 1, wrong, DTYPE_F32, 1.0f, discard, NULL,
                                 &err), ERR_FORMAT);
    cr_assert(strstr(err.msg, "has shape (5000), the config asks for (4999)"), "%s", err.msg);
    sd_weights_close(w);
}

/* Reading a 64 MiB f32 tensor into a bf16 copy (32 MiB, touched beforehand) raises the peak
 * resident set by about one piece: the file's pages are released as they are read, and
 * nothing holds the whole tensor in f32. Before, the mapped file alone added 64 MiB. */
typedef struct Copy {
    uint16_t *dst;
} Copy;

static int copy_bf16(void *user, size_t first, const void *data, size_t n, Err *err) {
    (void)err;
    memcpy(((Copy *)user)->dst + first, data, n * sizeof(uint16_t));
    return 0;
}

Test(sd_weights_mem, mapped_file_leaves_the_resident_set) {
    const size_t n = (size_t)16 << 20; /* 64 MiB of f32 */
    write_big(n, n, 0);
    SdWeights *w = NULL;
    Err err = {0};
    cr_assert_eq(sd_weights_open(root, "unet", &w, &err), 0, "%s", err.msg);
    Copy c = {xmalloc(n * sizeof(uint16_t))};
    memset(c.dst, 0, n * sizeof(uint16_t));
    int64_t shape[1] = {(int64_t)n};
    if (base_peak_rss_reset() != 0 || base_proc_status_kb("VmHWM") < 0)
        cr_skip_test("cannot reset the peak resident set (/proc/self/clear_refs)");
    long before = base_proc_status_kb("VmRSS");
    cr_assert_eq(sd_weights_read(w, "big.weight", 1, shape, DTYPE_BF16, 1.0f, copy_bf16, &c,
                                 &err), 0, "%s", err.msg);
    long rise_kb = base_proc_status_kb("VmHWM") - before;
    cr_assert_eq(safetensors_bf16_to_f32(c.dst[n / 2]), 0.5f);
    /* a piece is 6 MiB (4 f32 + 2 bf16); the whole file would be 64 MiB */
    cr_assert_lt(rise_kb, 20 * 1024, "the peak resident set rose by %ld KiB reading 64 MiB",
                 rise_kb);
    /* the measure sees the mapped file when it is resident: a whole f32 read maps every page
     * of it (and into a 64 MiB buffer touched beforehand) */
    float *whole = xmalloc(n * sizeof *whole);
    memset(whole, 0, n * sizeof *whole);
    base_peak_rss_reset();
    before = base_proc_status_kb("VmRSS");
    cr_assert_eq(sd_weights_read_f32(w, "big.weight", 1, shape, whole, &err), 0, "%s", err.msg);
    long whole_kb = base_proc_status_kb("VmHWM") - before;
    cr_assert_gt(whole_kb, 48 * 1024, "a whole read raised the peak by %ld KiB only", whole_kb);
    free(whole);
    free(c.dst);
    sd_weights_close(w);
}
