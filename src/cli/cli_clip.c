/* cli_clip — `easel models add|list|remove` and `easel embed`.
 *
 * `models add clip PATH` loads the model once (so a broken folder is refused before it is
 * registered), then stores its absolute path and a JSON summary of the architecture.
 * `embed` prints embeddings for checking easel against other implementations: CLIP models
 * go through the clip module directly (decoding keeps alpha and palette as Pillow does),
 * other encoders through encoder.h. It never writes to the store (--clear excepted).
 */
#include "cli.h"

#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "base.h"
#include "clip.h"
#include "image.h"
#include "cli_device.h"
#include "cli_diffusion.h"
#include "clip_encoder.h"
#include "encoder.h"
#include "store.h"
#include "store_embed.h"
#include "store_models.h"

/* ---- models ---------------------------------------------------------------------------- */

static void models_usage(void) {
    printf("usage: easel models add clip PATH [--name NAME]\n"
           "       easel models add diffusion PATH [--name NAME] [--tokenizer DIR]\n"
           "                                       [--prediction epsilon|v]\n"
           "       easel models list\n"
           "       easel models remove NAME\n\n"
           "Register a CLIP model folder (or .safetensors file) under NAME (default: the\n"
           "folder's name), so '--encoder clip:NAME' finds it. The folder holds\n"
           "open_clip_model.safetensors (OpenCLIP names) or model.safetensors (Hugging Face\n"
           "names), the tokenizer files (vocab.json + merges.txt, or\n"
           "bpe_simple_vocab_16e6.txt.gz) and open_clip_config.json or config.json. The model\n"
           "is loaded once to check it before it is registered. See doc/models.md.\n\n"
           "A diffusion model is a diffusers folder (model_index.json of a Stable Diffusion\n"
           "or SDXL pipeline, unet/, vae/, text_encoder/[, text_encoder_2/], tokenizer/); its\n"
           "components' weights are opened to check them before it is registered. PATH may\n"
           "also be a single-file checkpoint (.safetensors of SD 1.x, SD 2.x or SDXL, base or\n"
           "Turbo): it holds no tokenizer, so give --tokenizer DIR (a folder with vocab.json\n"
           "and merges.txt, or a diffusers model folder) unless a CLIP model is registered;\n"
           "--prediction epsilon|v overrides the family's prediction type (SD 2.x: v).\n\n"
           "example:\n"
           "  easel models add clip ~/models/CLIP-ViT-L-14-laion2B-s32B-b82K --name vit-l-14\n");
}

static char *config_summary(const ClipModel *m, double load_s) {
    const ClipConfig *c = clip_model_config(m);
    json_t *o = json_pack("{s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:s, s:f}",
                          "layout", clip_model_layout(m) == CLIP_LAYOUT_HF ? "hf" : "openclip",
                          "config", clip_model_config_source(m), "embed_dim", c->embed_dim,
                          "image_size", c->image_size, "patch_size", c->patch_size,
                          "vision_width", c->vision_width, "vision_layers", c->vision_layers,
                          "text_width", c->text_width, "text_layers", c->text_layers,
                          "context_length", c->context_length, "n_patches",
                          clip_model_n_patches(m), "activation",
                          c->quick_gelu ? "quick_gelu" : "gelu", "load_seconds", load_s);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

static int models_add(const CliGlobal *g, int argc, char **argv) {
    const char *kind = NULL, *path = NULL, *name = NULL;
    const char *tokenizer = NULL, *prediction = NULL; /* diffusion single files (sf15) */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--name") == 0 && i + 1 < argc)
            name = argv[++i];
        else if (strcmp(argv[i], "--tokenizer") == 0 && i + 1 < argc)
            tokenizer = argv[++i];
        else if (strcmp(argv[i], "--prediction") == 0 && i + 1 < argc)
            prediction = argv[++i];
        else if (strncmp(argv[i], "--name=", 7) == 0)
            name = argv[i] + 7;
        else if (argv[i][0] == '-') {
            cli_error("models add: unknown option '%s' (see 'easel models --help')", argv[i]);
            return 2;
        } else if (!kind)
            kind = argv[i];
        else if (!path)
            path = argv[i];
        else {
            cli_error("models add: unexpected argument '%s'", argv[i]);
            return 2;
        }
    }
    if (!kind || !path) {
        cli_error("models add: need a kind and a path: easel models add clip PATH [--name NAME]");
        return 2;
    }
    if (strcmp(kind, "clip") != 0 && strcmp(kind, "diffusion") != 0) {
        cli_error("models add: unknown model kind '%s' (known: clip, diffusion)", kind);
        return 2;
    }
    char abs[PATH_MAX];
    if (!realpath(path, abs)) {
        cli_error("models add: %s: no such folder or file", path);
        return 1;
    }
    char *def_name = NULL;
    if (!name) {
        struct stat sb;
        char *copy = xstrdup(abs);
        def_name = xstrdup(stat(abs, &sb) == 0 && S_ISDIR(sb.st_mode) ? basename(copy)
                                                                     : basename(dirname(copy)));
        free(copy);
        if (strcmp(kind, "diffusion") == 0 && !(stat(abs, &sb) == 0 && S_ISDIR(sb.st_mode))) {
            free(def_name); /* a single-file checkpoint: its name without .safetensors */
            const char *b = strrchr(abs, '/') ? strrchr(abs, '/') + 1 : abs;
            const char *dot = strrchr(b, '.');
            def_name = xstrndup(b, dot && dot != b ? (size_t)(dot - b) : strlen(b));
        }
        name = def_name;
    }
    if ((tokenizer || prediction) && strcmp(kind, "diffusion") != 0) {
        cli_error("models add: --tokenizer and --prediction are for a diffusion model");
        free(def_name);
        return 2;
    }
    if (strcmp(kind, "diffusion") == 0) { /* cli_diffusion.c */
        int st = cli_models_add_diffusion(g, abs, name, tokenizer, prediction);
        free(def_name);
        return st;
    }
    Err err = {0};
    int status = 1;
    double t0 = base_now();
    ClipModel *m = clip_model_load(abs, &err);
    if (!m) {
        status = cli_fail(&err);
        goto out;
    }
    double load_s = base_now() - t0;
    char *cfg = config_summary(m, load_s);
    Store *st = store_open_existing(g->db_path, &err);
    if (!st) {
        free(cfg);
        clip_model_free(m);
        status = cli_fail(&err);
        goto out;
    }
    if (store_model_add(st, "clip", name, abs, cfg, &err) != 0) {
        status = cli_fail(&err);
    } else {
        const ClipConfig *c = clip_model_config(m);
        printf("registered clip model '%s': %s\n  ViT %d px, patch %d, %d+%d layers, "
               "embedding %d, %s weights, config from %s, loaded in %.2f s\n"
               "  use it with --encoder clip:%s\n",
               name, abs, c->image_size, c->patch_size, c->vision_layers, c->text_layers,
               c->embed_dim, clip_model_layout(m) == CLIP_LAYOUT_HF ? "Hugging Face" : "OpenCLIP",
               clip_model_config_source(m), load_s, name);
        status = 0;
    }
    store_close(st);
    free(cfg);
    clip_model_free(m);
out:
    free(def_name);
    return status;
}

static int models_list(const CliGlobal *g) {
    Err err = {0};
    Store *st = store_open_existing(g->db_path, &err);
    if (!st)
        return cli_fail(&err);
    StoreModel *v;
    int n;
    if (store_model_list(st, NULL, &v, &n, &err) != 0) {
        store_close(st);
        return cli_fail(&err);
    }
    if (n == 0)
        printf("no models registered (easel models add clip|diffusion PATH)\n");
    for (int i = 0; i < n; i++)
        printf("%-20s %-6s %s\n", v[i].name, v[i].kind, v[i].path);
    store_model_list_free(v, n);
    store_close(st);
    return 0;
}

int cli_models_main(const CliGlobal *g, int argc, char **argv) {
    if (argc < 2 || cli_wants_help(argc, argv)) {
        models_usage();
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "add") == 0)
        return models_add(g, argc - 1, argv + 1);
    if (strcmp(argv[1], "list") == 0)
        return models_list(g);
    if (strcmp(argv[1], "remove") == 0 && argc == 3) {
        Err err = {0};
        Store *st = store_open_existing(g->db_path, &err);
        if (!st)
            return cli_fail(&err);
        int rc = store_model_remove(st, argv[2], &err);
        store_close(st);
        if (rc != 0)
            return cli_fail(&err);
        printf("removed model '%s'\n", argv[2]);
        return 0;
    }
    cli_error("models: unknown action '%s' (add, list, remove)", argv[1]);
    return 2;
}

/* ---- embed ------------------------------------------------------------------------------ */

static void embed_usage(void) {
    printf("usage: easel embed --encoder ENCODER [--image FILE]... [--text STRING]...\n"
           "                   [--json] [--preprocess crop|squash] [--threads N]\n"
           "                   [--weights auto|f32|bf16] [--device auto|cpu|cuda[:N]]\n"
           "       easel embed --clear ENCODER\n\n"
           "Print embeddings of images and texts, in the order given, without touching the\n"
           "store. ENCODER is clip:NAME (registered with 'easel models add'), clip:PATH (a\n"
           "model folder), or classic. CLIP outputs are L2-normalised, as open_clip's\n"
           "encode_image / encode_text followed by F.normalize. --preprocess squash resizes\n"
           "straight to the model's size (the original system's preprocessing) instead of\n"
           "the short side + centre crop. --weights bf16 keeps the CLIP weights as bf16 in\n"
           "memory (half the memory; f32 sums; embeddings within cosine 0.999 of f32), f32 as\n"
           "f32; auto (default) keeps what the file holds (bf16 stays bf16, f16 widens to f32).\n"
           "As an encoder name, append ',bf16' or ',f32' (clip:vit-l-14,bf16). --device picks\n"
           "where CLIP computes: auto (default: the first GPU if there is one, else the CPU),\n"
           "cpu, cuda (GPU 0) or cuda:N; asked for CUDA on a machine without a GPU (or an\n"
           "easel built without CUDA) it says so in one line and runs on the CPU. --threads\n"
           "is the CPU's thread count (default: one per CPU). --json prints\n"
           "JSON Lines:\n"
           "  {\"kind\": \"image\"|\"text\", \"input\": ..., \"embedding\": [...]}\n"
           "--clear ENCODER deletes that encoder's cached embeddings from the store.\n\n"
           "example:\n"
           "  easel embed --encoder clip:vit-l-14 --image cat.png --text 'a photo of a cat' --json\n");
}

typedef struct Input {
    int is_image;
    const char *value;
} Input;

static void print_row(const Input *in, const float *v, int dim, int json) {
    if (json) {
        json_t *s = json_string(in->value);
        char *q = s ? json_dumps(s, JSON_ENCODE_ANY) : xstrdup("\"(invalid UTF-8)\"");
        printf("{\"kind\": \"%s\", \"input\": %s, \"embedding\": [", in->is_image ? "image" : "text",
               q);
        free(q);
        json_decref(s);
        for (int i = 0; i < dim; i++)
            printf("%s%.9g", i ? ", " : "", (double)v[i]);
        printf("]}\n");
    } else {
        printf("%s\t%s\t", in->is_image ? "image" : "text", in->value);
        for (int i = 0; i < dim; i++)
            printf("%s%.6f", i ? " " : "", (double)v[i]);
        printf("\n");
    }
}

static int embed_clip(const ClipModel *m, const Input *in, int n, ClipResizeMode mode, int json,
                      Err *err) {
    int E = clip_model_config(m)->embed_dim;
    float *v = malloc((size_t)E * sizeof(float) * (size_t)(n > 0 ? n : 1));
    const char **imgs = xcalloc((size_t)n + 1, sizeof(char *));
    const char **txts = xcalloc((size_t)n + 1, sizeof(char *));
    int n_img = 0, n_txt = 0, rc = 0;
    if (!v) {
        rc = err_set(err, ERR_NOMEM, "embed: no memory");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        if (in[i].is_image)
            imgs[n_img++] = in[i].value;
        else
            txts[n_txt++] = in[i].value;
    }
    /* images first into the front of v, texts after; printed in input order */
    if (n_img && (rc = clip_model_encode_image_files(m, imgs, n_img, mode, v, NULL, err)) != 0)
        goto out;
    if (n_txt && (rc = clip_model_encode_texts(m, txts, n_txt, v + (size_t)n_img * E, err)) != 0)
        goto out;
    for (int i = 0, a = 0, b = 0; i < n; i++)
        print_row(&in[i], in[i].is_image ? v + (size_t)(a++) * E : v + (size_t)(n_img + b++) * E,
                  E, json);
out:
    free(v);
    free(imgs);
    free(txts);
    return rc;
}

static int embed_generic(Encoder *enc, const Input *in, int n, int json, Err *err) {
    float *v = malloc((size_t)enc->n_image_tokens * (size_t)enc->dim_image * sizeof(float) +
                      (size_t)enc->dim_text * sizeof(float));
    if (!v)
        return err_set(err, ERR_NOMEM, "embed: no memory");
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        if (in[i].is_image) {
            Image im;
            if ((rc = image_load(in[i].value, 3, &im, err)))
                break;
            rc = enc->ops.encode_image(enc, im.px, im.w, im.h, v, err);
            image_deinit(&im);
            if (rc == 0)
                print_row(&in[i], v, enc->dim_image, json);
        } else {
            rc = enc->ops.encode_text(enc, in[i].value, v, err);
            if (rc == 0)
                print_row(&in[i], v, enc->dim_text, json);
        }
    }
    free(v);
    return rc;
}

int cli_embed_main(const CliGlobal *g, int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        embed_usage();
        return 0;
    }
    const char *encoder = NULL, *clear = NULL, *device = "auto";
    int json = 0, threads = 0, n = 0;
    ClipResizeMode mode = CLIP_RESIZE_SHORTEST;
    ClipWeights weights = CLIP_WEIGHTS_AUTO;
    int mode_set = 0, weights_set = 0, device_set = 0;
    Input *in = xcalloc((size_t)argc, sizeof(Input));
    int status = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if ((strcmp(a, "--image") == 0 || strcmp(a, "--text") == 0) && val) {
            in[n].is_image = a[2] == 'i';
            in[n++].value = val;
            i++;
        } else if (strcmp(a, "--encoder") == 0 && val) {
            encoder = val;
            i++;
        } else if (strcmp(a, "--clear") == 0 && val) {
            clear = val;
            i++;
        } else if (strcmp(a, "--threads") == 0 && val) {
            threads = atoi(val);
            if (threads < 1) {
                cli_error("embed: --threads needs a positive number, not '%s'", val);
                goto out;
            }
            i++;
        } else if (strcmp(a, "--device") == 0 && val) {
            if (cli_device_check("embed", val))
                goto out;
            device = val;
            device_set = 1;
            i++;
        } else if (strcmp(a, "--weights") == 0 && val) {
            if (clip_weights_parse(val, &weights) != 0) {
                cli_error("embed: --weights is auto, f32 or bf16, not '%s'", val);
                goto out;
            }
            weights_set = 1;
            i++;
        } else if (strcmp(a, "--preprocess") == 0 && val) {
            if (strcmp(val, "squash") == 0)
                mode = CLIP_RESIZE_SQUASH;
            else if (strcmp(val, "crop") == 0)
                mode = CLIP_RESIZE_SHORTEST;
            else {
                cli_error("embed: --preprocess is crop or squash, not '%s'", val);
                goto out;
            }
            mode_set = 1;
            i++;
        } else {
            cli_error("embed: unknown or incomplete option '%s' (see 'easel embed --help')", a);
            goto out;
        }
    }
    Err err = {0};
    if (clear) {
        Store *st = store_open_existing(g->db_path, &err);
        if (!st) {
            status = cli_fail(&err);
            goto out;
        }
        long k = store_embed_clear(st, clear, &err);
        store_close(st);
        if (k < 0) {
            status = cli_fail(&err);
            goto out;
        }
        printf("removed %ld cached embeddings of '%s'\n", k, clear);
        status = 0;
        goto out;
    }
    if (!encoder || n == 0) {
        cli_error("embed: need --encoder and at least one --image or --text (see 'easel embed "
                  "--help')");
        goto out;
    }
    if (weights_set && strncmp(encoder, "clip:", 5) != 0) {
        cli_error("embed: --weights applies to clip encoders only");
        goto out;
    }
    /* a store is only read, and only if there is one (for clip:NAME) */
    Store *st = NULL;
    if (access(g->db_path, F_OK) == 0) {
        Err e2 = {0};
        st = store_open_existing(g->db_path, &e2);
    }
    int rc;
    if (strncmp(encoder, "clip:", 5) == 0) {
        char *path = clip_encoder_resolve(encoder + 5, st, &err);
        ClipWeights w = weights;
        if (!weights_set && path) /* clip:NAME,bf16 */
            w = clip_encoder_weights(encoder + 5);
        Backend *be = NULL;
        BackendConfig cfg = {threads, 0};
        char note[256] = "";
        ClipModel *m = NULL;
        rc = path ? backend_open(device, &cfg, &be, note, sizeof note, &err) : err.code;
        if (rc == 0) {
            cli_device_note(note);
            rc = clip_model_open(path, w, be, &m, &err);
        }
        free(path);
        if (m && !mode_set)
            mode = clip_model_config(m)->resize;
        if (rc == 0)
            rc = embed_clip(m, in, n, mode, json, &err);
        clip_model_free(m);
        backend_close(be);
    } else {
        if (mode_set || weights_set || device_set) {
            const char *o = mode_set ? "--preprocess" : weights_set ? "--weights" : "--device";
            rc = ERR_USAGE; /* said once, by cli_fail below */
            err_set(&err, ERR_USAGE, "embed: %s applies to clip encoders only", o);
        } else {
            Encoder *enc;
            EncoderDevice dev = {device, threads};
            if ((rc = encoder_open_on(encoder, st, &dev, &enc, &err)) == 0) {
                cli_device_note(enc->note);
                rc = embed_generic(enc, in, n, json, &err);
            }
            encoder_free(enc);
        }
    }
    store_close(st);
    status = rc == 0 ? 0 : cli_fail(&err);
out:
    free(in);
    return status;
}
