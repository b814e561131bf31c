/* cli_export_adapter — `easel export merged`, `easel export kohya` and `easel export peft`: a
 * generator adapter (LoRA / DoRA, as `easel tune` saves it or any diffusers / kohya file)
 * merged into its base model as one single-file checkpoint, or re-written with kohya's names
 * or as a diffusers / PEFT folder for other tools.
 * Argument parsing and printing only; the work is in lora_file.c and sd_weights_single.c.
 * Reached from cli_export_main (cli_io.c) when KIND is merged, kohya or peft. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base.h"
#include "cli.h"
#include "lora_file.h"
#include "sd_weights.h"
#include "store.h"
#include "store_models.h"

static void usage(void) {
    printf("usage: easel [--db PATH] export merged --model NAME|PATH --adapter DIR|FILE\n"
           "                                    [--scale S] --out FILE.safetensors [--force]\n"
           "       easel export kohya --adapter DIR|FILE [--model NAME|PATH] --out FILE\n"
           "                                    [--force]\n"
           "       easel export peft --adapter DIR|FILE [--model NAME|PATH] --out DIR\n"
           "                                    [--force]\n\n"
           "merged  the base model with the adapter's UNet layers merged in (W + S * alpha/r *\n"
           "        B.A, DoRA's magnitude applied), written as one single-file checkpoint\n"
           "        (original / SGM names, each weight in its own dtype) that diffusers'\n"
           "        from_single_file and other tools load; it generates the image the base\n"
           "        model gives with --lora ADAPTER:S.\n"
           "kohya   the adapter with kohya's names (lora_unet_..., .lora_down / .lora_up /\n"
           "        .alpha, ss_network_* metadata); LoRA only (no kohya reader takes PEFT's\n"
           "        DoRA: export a DoRA as peft, or merged).\n"
           "peft    the adapter as diffusers' save_lora_weights writes it: DIR/pytorch_lora_\n"
           "        weights.safetensors (unet.<module>.lora_A/.lora_B, rank and alpha in its\n"
           "        metadata) and DIR/adapter_config.json; what load_lora_weights takes.\n\n"
           "options:\n"
           "  --model NAME|PATH  a registered diffusion model (easel models add diffusion), a\n"
           "                     diffusers folder or a single-file checkpoint; for kohya and\n"
           "                     peft only needed for adapters with SGM block names\n"
           "                     (input_blocks_...); checked against it when given\n"
           "  --adapter DIR|FILE an adapter folder (pytorch_lora_weights.safetensors, as easel\n"
           "                     tune and diffusers' save_lora_weights write it) or a LoRA\n"
           "                     .safetensors file (diffusers / PEFT or kohya names)\n"
           "  --scale S          merged: the adapter's weight (default 1)\n"
           "  --out FILE|DIR     the file (the folder for peft) to write; each file is written\n"
           "                     whole or not at all\n"
           "  --force            replace what is there\n\n"
           "examples:\n"
           "  easel export merged --model sdxl --adapter runs/tune1/adapter --out sdxl-dpo."
           "safetensors\n"
           "  easel export kohya --adapter runs/tune1/adapter --out tune1-kohya.safetensors\n"
           "See doc/models.md (Adapter files).\n");
}

/* The model --model names: a diffusers folder or a single-file checkpoint (sd_weights reads
 * both: the merge re-writes either as one file), or a registered diffusion model. */
static int model_folder(const CliGlobal *g, const char *kind, const char *m, char **out) {
    *out = NULL;
    if (base_is_dir(m) || base_is_file(m)) {
        *out = xstrdup(m);
        return 0;
    }
    Err err = {0};
    Store *st = store_open_existing(g->db_path, &err);
    StoreModel sm = {0};
    int rc = st ? store_model_get(st, "diffusion", m, &sm, &err) : err.code;
    if (st)
        store_close(st);
    if (rc) {
        cli_error("export %s: --model %s: neither a folder nor a registered diffusion model "
                  "(%s)", kind, m, err.msg);
        return 1;
    }
    *out = xstrdup(sm.path);
    store_model_deinit(&sm);
    return 0;
}

/* Merge S (read and checked against FOLDER's UNet) into FOLDER as the single file OUT: S is
 * saved as a PEFT file in a temporary folder first, so that what is merged is exactly what was
 * read (whatever the adapter's naming), by the loader `generate --lora` uses. */
static int write_merged(const LoraSet *s, const char *folder, float scale, const char *out,
                        Err *err) {
    const char *t = getenv("TMPDIR");
    char *dir = xasprintf("%s/easel-merge-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(dir)) {
        int rc = err_set(err, ERR_IO, "%s: cannot make a temporary folder", dir);
        free(dir);
        return rc;
    }
    int rc = lora_file_write_peft(s, dir, NULL, err);
    char *file = xasprintf("%s/%s", dir, LORA_FILE_PEFT_WEIGHTS);
    const char *files[1] = {file};
    if (!rc)
        rc = sd_weights_write_single_lora(folder, files, &scale, 1, out, err);
    char *cfg = xasprintf("%s/adapter_config.json", dir);
    remove(file);
    remove(cfg);
    remove(dir);
    free(cfg);
    free(file);
    free(dir);
    return rc;
}

int cli_export_adapter_main(const CliGlobal *g, int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage();
        return 0;
    }
    const char *kind = argv[0], *model = NULL, *adapter = NULL, *out = NULL, *scale_s = NULL;
    int force = 0, merged = !strcmp(kind, "merged"), peft = !strcmp(kind, "peft");
    const char *cmd = merged ? "export merged" : peft ? "export peft" : "export kohya";
    static const char *const known[] = {"--model", "--adapter", "--scale", "--out", "--force",
                                        NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], **slot = NULL;
        if (!strcmp(a, "--force")) {
            force = 1;
            continue;
        }
        static const char *const opts[] = {"--model", "--adapter", "--scale", "--out"};
        const char **slots[] = {&model, &adapter, &scale_s, &out};
        const char *v = NULL;
        for (int k = 0; k < 4 && !slot; k++) {
            size_t n = strlen(opts[k]);
            if (!strncmp(a, opts[k], n) && a[n] == '=') {
                slot = slots[k];
                v = a + n + 1;
            } else if (!strcmp(a, opts[k])) {
                if (i + 1 >= argc) {
                    cli_error("export %s: %s needs a value (see 'easel export %s --help')", kind,
                              a, kind);
                    return 2;
                }
                slot = slots[k];
                v = argv[++i];
            }
        }
        if (!slot) {
            if (a[0] == '-')
                return cli_unknown_option(cmd, a, known);
            return cli_unexpected(cmd, a, "export");
        }
        if (!*v) {
            cli_error("export %s: %s needs a value", kind, a);
            return 2;
        }
        *slot = v;
    }
    if (!adapter || !out || (merged && !model)) {
        cli_error("export %s: needs %s--adapter DIR|FILE and --out FILE (see 'easel export %s "
                  "--help')", kind, merged ? "--model NAME|PATH, " : "", kind);
        return 2;
    }
    float scale = 1.0f;
    if (scale_s) {
        char *end;
        double s = strtod(scale_s, &end);
        if (!merged) {
            cli_error("%s: --scale applies to 'export merged' only (the adapter is written as "
                      "it is)", cmd);
            return 2;
        }
        if (*end || end == scale_s || !isfinite(s) || fabs(s) > 100) {
            cli_error("export merged: --scale '%s' must be a number from -100 to 100", scale_s);
            return 2;
        }
        scale = (float)s;
    }
    if (!base_is_file(adapter) && !base_is_dir(adapter)) {
        cli_error("export %s: --adapter %s: no such file or folder", kind, adapter);
        return 1;
    }
    struct stat sb;
    char *peft_file = peft ? xasprintf("%s/%s", out, LORA_FILE_PEFT_WEIGHTS) : NULL;
    int there = peft ? stat(peft_file, &sb) == 0 : stat(out, &sb) == 0;
    free(peft_file);
    if (peft && base_is_file(out)) {
        cli_error("export peft: --out %s is a file: give the folder to write", out);
        return 2;
    }
    if (!peft && base_is_dir(out)) {
        cli_error("export %s: --out %s is a folder: give the file to write", kind, out);
        return 2;
    }
    if (!force && there) {
        cli_error("export %s: --out %s %s; add --force to replace it", kind, out,
                  peft ? "holds an adapter" : "exists");
        return 1;
    }
    char *folder = NULL;
    int rc = model ? model_folder(g, kind, model, &folder) : 0;
    if (rc)
        return rc;
    Err err = {0};
    int n_te = lora_file_text_encoder_tensors(adapter, &err);
    if (n_te > 0) {
        cli_error("export %s: %s holds text-encoder adapters (%d tensors), which easel does not "
                  "%s yet: use a UNet-only adapter", kind, adapter, n_te,
                  merged ? "merge" : "convert");
        free(folder);
        return 1;
    }
    if (n_te < 0) {
        err_prefix(&err, "export %s", kind);
        free(folder);
        return cli_fail(&err);
    }
    LoraSet s = {0};
    SdWeights *unet = NULL;
    if (folder && (rc = sd_weights_open(folder, "unet", &unet, &err)) == 0)
        rc = lora_file_read_unet(adapter, unet, &s, &err);
    else if (!folder)
        rc = lora_file_read(adapter, &s, &err);
    sd_weights_close(unet);
    if (!rc && merged) {
        rc = write_merged(&s, folder, scale, out, &err);
    } else if (!rc && peft) {
        rc = lora_file_write_peft(&s, out, NULL, &err);
    } else if (!rc) {
        rc = lora_file_write_kohya(&s, out, &err);
    }
    if (rc) {
        err_prefix(&err, "export %s", kind);
        rc = cli_fail(&err);
    } else if (merged) {
        printf("wrote %s: %s with %zu adapter layer%s merged at scale %g\n", out, folder, s.n,
               s.n == 1 ? "" : "s", (double)scale);
    } else if (peft) {
        printf("wrote %s/%s and adapter_config.json: %zu adapter layer%s%s\n", out,
               LORA_FILE_PEFT_WEIGHTS, s.n, s.n == 1 ? "" : "s",
               s.n && s.e[0].m ? " (DoRA)" : "");
    } else {
        printf("wrote %s: %zu adapter layer%s with kohya names\n", out, s.n,
               s.n == 1 ? "" : "s");
    }
    lora_set_free(&s);
    free(folder);
    return rc;
}
