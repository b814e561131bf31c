/* sd_weights_single — single-file checkpoints (SGM / original Stable Diffusion names) seen
 * under diffusers names, the component configs a single file lacks, and the inverse: writing
 * a diffusers folder as one single file. See sd_weights.h.
 *
 * The whole name map is the tables below: a component's prefix in the file (PREFIXES), block
 * prefix pairs built from the model's structure (levels, layers per block; pairs_unet,
 * pairs_vae, pairs_openclip), and the renames inside a block (REN_*). The same pairs serve
 * both directions. Three tensors change shape on the way: the VAE's attention q/k/v/proj_out
 * are 1x1 convs in the file and linears in diffusers, OpenCLIP's attn.in_proj_{weight,bias}
 * is q, k and v stacked, and OpenCLIP's text_projection is the transpose of transformers'. */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base.h"
#include "sd_weights_int.h"

/* ---- the map ------------------------------------------------------------------------------- */

typedef struct Ren {
    const char *sgm, *dif;
} Ren;

enum { REN_NONE, REN_UNET_RES, REN_VAE_RES, REN_VAE_ATTN, REN_CLIP_LAYER, N_REN };

static const Ren ren_unet_res[] = {
    {"in_layers.0.", "norm1."},   {"in_layers.2.", "conv1."},
    {"emb_layers.1.", "time_emb_proj."}, {"out_layers.0.", "norm2."},
    {"out_layers.3.", "conv2."},  {"skip_connection.", "conv_shortcut."},
};
static const Ren ren_vae_res[] = {{"nin_shortcut.", "conv_shortcut."}};
static const Ren ren_vae_attn[] = {
    {"norm.", "group_norm."}, {"q.", "to_q."}, {"k.", "to_k."}, {"v.", "to_v."},
    {"proj_out.", "to_out.0."},
};
static const Ren ren_clip_layer[] = {
    {"ln_1.", "layer_norm1."}, {"ln_2.", "layer_norm2."}, {"mlp.c_fc.", "mlp.fc1."},
    {"mlp.c_proj.", "mlp.fc2."}, {"attn.out_proj.", "self_attn.out_proj."},
};
static const struct {
    const Ren *r;
    int n;
} REN[N_REN] = {
    {NULL, 0},
    {ren_unet_res, 6},
    {ren_vae_res, 1},
    {ren_vae_attn, 5},
    {ren_clip_layer, 5},
};

enum { K_UNET, K_VAE, K_HF, K_OPENCLIP };

/* Where a component sits in a single file; the first prefix with tensors wins. */
static const struct {
    const char *component, *prefix;
    int kind;
} PREFIXES[] = {
    {"unet", "model.diffusion_model.", K_UNET},
    {"vae", "first_stage_model.", K_VAE},
    {"text_encoder", "cond_stage_model.transformer.", K_HF},         /* SD 1.x */
    {"text_encoder", "conditioner.embedders.0.transformer.", K_HF},  /* SDXL ViT-L */
    {"text_encoder", "cond_stage_model.model.", K_OPENCLIP},         /* SD 2.x ViT-H */
    {"text_encoder_2", "conditioner.embedders.1.model.", K_OPENCLIP}, /* SDXL bigG */
};
#define N_PREFIXES (sizeof PREFIXES / sizeof *PREFIXES)

typedef struct Pair {
    char sgm[80], dif[80];
    int ren;
} Pair;

typedef struct Pairs {
    Pair *p;
    int n, cap;
} Pairs;

/* Takes SGM and DIF (allocated). */
static void pair(Pairs *ps, int ren, char *sgm, char *dif) {
    if (ps->n == ps->cap) {
        ps->cap = ps->cap ? 2 * ps->cap : 64;
        ps->p = xrealloc(ps->p, (size_t)ps->cap * sizeof *ps->p);
    }
    Pair *p = &ps->p[ps->n++];
    snprintf(p->sgm, sizeof p->sgm, "%s", sgm);
    snprintf(p->dif, sizeof p->dif, "%s", dif);
    p->ren = ren;
    free(sgm);
    free(dif);
}

/* The UNet: L levels of LPB resnets (+ attentions) and a downsampler, the middle block, and
 * LPB + 1 resnets per up level with the upsampler after the last one (index 2 after an
 * attention, else 1). UP_ATTN[i] says up level i has attentions. */
static void pairs_unet(Pairs *ps, int L, int lpb, const int *up_attn) {
    pair(ps, REN_NONE, xstrdup("time_embed.0."), xstrdup("time_embedding.linear_1."));
    pair(ps, REN_NONE, xstrdup("time_embed.2."), xstrdup("time_embedding.linear_2."));
    pair(ps, REN_NONE, xstrdup("label_emb.0.0."), xstrdup("add_embedding.linear_1."));
    pair(ps, REN_NONE, xstrdup("label_emb.0.2."), xstrdup("add_embedding.linear_2."));
    pair(ps, REN_NONE, xstrdup("input_blocks.0.0."), xstrdup("conv_in."));
    pair(ps, REN_NONE, xstrdup("out.0."), xstrdup("conv_norm_out."));
    pair(ps, REN_NONE, xstrdup("out.2."), xstrdup("conv_out."));
    for (int i = 0; i < L; i++) {
        for (int j = 0; j < lpb; j++) {
            int k = (lpb + 1) * i + j + 1;
            pair(ps, REN_UNET_RES, xasprintf("input_blocks.%d.0.", k),
                 xasprintf("down_blocks.%d.resnets.%d.", i, j));
            pair(ps, REN_NONE, xasprintf("input_blocks.%d.1.", k),
                 xasprintf("down_blocks.%d.attentions.%d.", i, j));
        }
        if (i < L - 1)
            pair(ps, REN_NONE, xasprintf("input_blocks.%d.0.op.", (lpb + 1) * (i + 1)),
                 xasprintf("down_blocks.%d.downsamplers.0.conv.", i));
        if (i < L - 1) /* before the attentions: output_blocks.K.1 is either */
            pair(ps, REN_NONE,
                 xasprintf("output_blocks.%d.%d.conv.", (lpb + 1) * i + lpb, up_attn[i] ? 2 : 1),
                 xasprintf("up_blocks.%d.upsamplers.0.conv.", i));
        for (int j = 0; j <= lpb; j++) {
            int k = (lpb + 1) * i + j;
            pair(ps, REN_UNET_RES, xasprintf("output_blocks.%d.0.", k),
                 xasprintf("up_blocks.%d.resnets.%d.", i, j));
            pair(ps, REN_NONE, xasprintf("output_blocks.%d.1.", k),
                 xasprintf("up_blocks.%d.attentions.%d.", i, j));
        }
    }
    pair(ps, REN_UNET_RES, xstrdup("middle_block.0."), xstrdup("mid_block.resnets.0."));
    pair(ps, REN_NONE, xstrdup("middle_block.1."), xstrdup("mid_block.attentions.0."));
    pair(ps, REN_UNET_RES, xstrdup("middle_block.2."), xstrdup("mid_block.resnets.1."));
}

/* The VAE: L levels; the decoder's up levels are numbered the other way round. */
static void pairs_vae(Pairs *ps, int L) {
    static const char *const side[2] = {"encoder", "decoder"};
    for (int s = 0; s < 2; s++) {
        char a[80], b[80];
        snprintf(a, sizeof a, "%s.mid.block_1.", side[s]);
        snprintf(b, sizeof b, "%s.mid_block.resnets.0.", side[s]);
        pair(ps, REN_VAE_RES, xstrdup(a), xstrdup(b));
        snprintf(a, sizeof a, "%s.mid.block_2.", side[s]);
        snprintf(b, sizeof b, "%s.mid_block.resnets.1.", side[s]);
        pair(ps, REN_VAE_RES, xstrdup(a), xstrdup(b));
        snprintf(a, sizeof a, "%s.mid.attn_1.", side[s]);
        snprintf(b, sizeof b, "%s.mid_block.attentions.0.", side[s]);
        pair(ps, REN_VAE_ATTN, xstrdup(a), xstrdup(b));
        snprintf(a, sizeof a, "%s.norm_out.", side[s]);
        snprintf(b, sizeof b, "%s.conv_norm_out.", side[s]);
        pair(ps, REN_NONE, xstrdup(a), xstrdup(b));
    }
    for (int i = 0; i < L; i++) {
        pair(ps, REN_VAE_RES, xasprintf("encoder.down.%d.block.", i),
             xasprintf("encoder.down_blocks.%d.resnets.", i));
        pair(ps, REN_NONE, xasprintf("encoder.down.%d.downsample.", i),
             xasprintf("encoder.down_blocks.%d.downsamplers.0.", i));
        pair(ps, REN_VAE_RES, xasprintf("decoder.up.%d.block.", L - 1 - i),
             xasprintf("decoder.up_blocks.%d.resnets.", i));
        pair(ps, REN_NONE, xasprintf("decoder.up.%d.upsample.", L - 1 - i),
             xasprintf("decoder.up_blocks.%d.upsamplers.0.", i));
    }
}

/* OpenCLIP's text tower (SD 2's ViT-H, SDXL's bigG) to transformers' CLIPTextModel. */
static void pairs_openclip(Pairs *ps) {
    pair(ps, REN_NONE, xstrdup("token_embedding.weight"),
         xstrdup("text_model.embeddings.token_embedding.weight"));
    pair(ps, REN_NONE, xstrdup("positional_embedding"),
         xstrdup("text_model.embeddings.position_embedding.weight"));
    pair(ps, REN_NONE, xstrdup("ln_final."), xstrdup("text_model.final_layer_norm."));
    pair(ps, REN_NONE, xstrdup("text_projection"), xstrdup("text_projection.weight"));
    pair(ps, REN_CLIP_LAYER, xstrdup("transformer.resblocks."),
         xstrdup("text_model.encoder.layers."));
}

/* NAME mapped through PS: TO_DIF from single-file to diffusers names, else back. Returns
 * an allocated name; names no pair claims are kept. */
static char *map_name(const Pairs *ps, const char *name, int to_dif) {
    for (int i = 0; i < ps->n; i++) {
        const Pair *p = &ps->p[i];
        const char *from = to_dif ? p->sgm : p->dif, *to = to_dif ? p->dif : p->sgm;
        size_t n = strlen(from);
        if (strncmp(name, from, n))
            continue;
        const char *rest = name + n;
        char num[24] = "";
        size_t d = strspn(rest, "0123456789"); /* "{j}." then the block's own names */
        if (p->ren != REN_NONE && d && rest[d] == '.' && d + 1 < sizeof num) {
            memcpy(num, rest, d + 1);
            num[d + 1] = 0;
            rest += d + 1;
        }
        for (int r = 0; r < REN[p->ren].n; r++) {
            const Ren *rn = &REN[p->ren].r[r];
            const char *rf = to_dif ? rn->sgm : rn->dif, *rt = to_dif ? rn->dif : rn->sgm;
            size_t m = strlen(rf);
            if (!strncmp(rest, rf, m))
                return xasprintf("%s%s%s%s", to, num, rt, rest + m);
        }
        return xasprintf("%s%s%s", to, num, rest);
    }
    return xstrdup(name);
}

/* ---- names in a list ------------------------------------------------------------------------ */

typedef struct Names {
    const char **v;
    size_t n;
} Names;

static int has_prefix(const Names *ns, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int has_prefix(const Names *ns, const char *fmt, ...) {
    char p[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p, sizeof p, fmt, ap);
    va_end(ap);
    size_t n = strlen(p);
    for (size_t i = 0; i < ns->n; i++)
        if (!strncmp(ns->v[i], p, n))
            return 1;
    return 0;
}

/* Levels and layers per block of a UNet, from its single-file names (SGM) or diffusers
 * names; UP_ATTN[i] (at most 16 levels) whether up level i has attentions. */
static int unet_shape(const Names *ns, int sgm, int *L, int *lpb, int up_attn[16], Err *err,
                      const char *where) {
    if (sgm) {
        int max = -1, n_down = 0;
        for (size_t i = 0; i < ns->n; i++) {
            int k;
            if (sscanf(ns->v[i], "input_blocks.%d.", &k) == 1 && k > max)
                max = k;
        }
        for (int k = 0; k <= max; k++)
            n_down += has_prefix(ns, "input_blocks.%d.0.op.", k);
        int n_in = max + 1;
        *L = n_down + 1;
        *lpb = *L ? (n_in - 1 - n_down) / *L : 0;
        if (n_in < 2 || *lpb < 1 || (n_in - 1 - n_down) % *L || *L > 16)
            return err_set(err, ERR_FORMAT, "%s: the UNet's input_blocks (%d of them, %d "
                           "downsamplers) do not form levels of equal depth: not an SD / SDXL "
                           "UNet", where, n_in, n_down);
        for (int i = 0; i < *L; i++)
            up_attn[i] = has_prefix(ns, "output_blocks.%d.1.", (*lpb + 1) * i) &&
                         !has_prefix(ns, "output_blocks.%d.1.conv.", (*lpb + 1) * i);
    } else {
        *L = *lpb = 0;
        while (*L < 17 && has_prefix(ns, "down_blocks.%d.", *L))
            (*L)++;
        while (*lpb < 64 && has_prefix(ns, "down_blocks.0.resnets.%d.", *lpb))
            (*lpb)++;
        if (*L < 1 || *lpb < 1 || *L > 16)
            return err_set(err, ERR_FORMAT, "%s: no down_blocks.N.resnets.M tensors: not a "
                           "diffusers UNet", where);
        for (int i = 0; i < *L; i++)
            up_attn[i] = has_prefix(ns, "up_blocks.%d.attentions.", i);
    }
    return 0;
}

static int vae_levels(const Names *ns, int sgm) {
    int L = 0;
    while (L < 16 && (sgm ? has_prefix(ns, "encoder.down.%d.", L)
                          : has_prefix(ns, "encoder.down_blocks.%d.", L)))
        L++;
    return L;
}

/* ---- reading a single file ------------------------------------------------------------------ */

enum { ARCH_SD1, ARCH_SD2, ARCH_SDXL };
static const char *const ARCH_NAME[] = {"SD 1.x", "SD 2.x", "SDXL"};

static int file_has(const SafeTensors *st, const char *prefix) {
    size_t n = strlen(prefix);
    for (size_t i = 0; i < safetensors_count(st); i++)
        if (!strncmp(safetensors_at(st, i)->name, prefix, n))
            return 1;
    return 0;
}

static int detect_arch(const SafeTensors *st) {
    if (file_has(st, "conditioner.embedders.") || file_has(st, "model.diffusion_model.label_emb."))
        return ARCH_SDXL;
    if (file_has(st, "cond_stage_model.model."))
        return ARCH_SD2;
    /* no text encoder to tell: SD 2's UNet projects with linears, SD 1's with 1x1 convs */
    for (size_t i = 0; i < safetensors_count(st); i++) {
        const StTensor *t = safetensors_at(st, i);
        const char *s = strstr(t->name, ".proj_in.weight");
        if (!strncmp(t->name, "model.diffusion_model.", 22) && s && !s[15])
            return t->n_dim == 2 ? ARCH_SD2 : ARCH_SD1;
    }
    return ARCH_SD1;
}

int sd_weights_single_info(const char *path, SdSingleInfo *out, Err *err) {
    memset(out, 0, sizeof *out);
    if (!base_is_file(path))
        return 0;
    SafeTensors *st = safetensors_open(path, err);
    if (!st)
        return err ? err->code : ERR_FORMAT;
    int rc = 0;
    if (!file_has(st, "model.diffusion_model.")) {
        rc = err_set(err, ERR_FORMAT, "%s: not a Stable Diffusion single-file checkpoint (no "
                     "model.diffusion_model.* tensors: %s)", path,
                     file_has(st, "down_blocks.") || file_has(st, "unet.") ||
                             file_has(st, "lora_unet_")
                         ? "a diffusers component or a LoRA? give the model's folder, or the "
                           "LoRA with --lora"
                         : "no UNet");
        goto out;
    }
    out->is_single = 1;
    int arch = detect_arch(st);
    out->family = arch == ARCH_SDXL ? "sdxl" : arch == ARCH_SD2 ? "sd2" : "sd1";
    const StTensor *ci = safetensors_find(st, "model.diffusion_model.input_blocks.0.0.weight");
    out->in_channels = ci && ci->n_dim == 4 ? (int)ci->shape[1] : 0;
    out->v_pred = safetensors_find(st, "v_pred") != NULL;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    for (const char *c = base; *c && !out->turbo; c++)
        out->turbo = !strncasecmp(c, "turbo", 5);
out:
    safetensors_close(st);
    return rc;
}

static int64_t dim_of(const SdWeights *w, const char *name, int d) {
    const StTensor *t = sd_weights_find(w, name);
    return t && d < t->n_dim ? t->shape[d] : -1;
}

static int64_t dimf(const SdWeights *w, int d, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int64_t dimf(const SdWeights *w, int d, const char *fmt, ...) {
    char n[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(n, sizeof n, fmt, ap);
    va_end(ap);
    return dim_of(w, n, d);
}

/* GroupNorm groups: the released models' 32 when every width takes it, else the largest
 * power of two at most 32 that divides them all (tiny test models). */
static int groups_for(const int64_t *c, int n) {
    int g = 32;
    for (int i = 0; i < n; i++)
        while (g > 1 && c[i] % g)
            g /= 2;
    return g;
}

static json_t *int_array(const int64_t *v, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_integer(v[i]));
    return a;
}

static json_t *str_array(const char *const *v, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

/* How many of PRE{0,1,...}SUF there are. */
static int count_names(const SdWeights *w, const char *pre, const char *suf) {
    int n = 0;
    for (;; n++) {
        char *name = xasprintf("%s%d%s", pre, n, suf);
        int there = sd_weights_find(w, name) != NULL;
        free(name);
        if (!there)
            return n;
    }
}

static json_t *config_unet(const SdWeights *w, int arch, const SafeTensors *st, Err *err) {
    Names ns = {0};
    ns.v = xmalloc((w->n_ents + 1) * sizeof *ns.v);
    for (size_t i = 0; i < w->n_ents; i++)
        ns.v[ns.n++] = w->ents[i].t.name;
    int L, lpb, up_attn[16];
    int rc = unet_shape(&ns, 0, &L, &lpb, up_attn, err, w->where);
    free(ns.v);
    if (rc)
        return NULL;
    int64_t boc[16], tl[16], heads[16];
    const char *down[16], *up[16];
    int64_t cross = -1;
    int linear = 0;
    for (int i = 0; i < L; i++) {
        boc[i] = dimf(w, 0, "down_blocks.%d.resnets.0.conv1.weight", i);
        int attn = dimf(w, 0, "down_blocks.%d.attentions.0.proj_in.weight", i) > 0;
        down[i] = attn ? "CrossAttnDownBlock2D" : "DownBlock2D";
        char *pre = xasprintf("down_blocks.%d.attentions.0.transformer_blocks.", i);
        tl[i] = attn ? count_names(w, pre, ".attn1.to_q.weight") : 1;
        free(pre);
        up[i] = up_attn[i] ? "CrossAttnUpBlock2D" : "UpBlock2D";
        heads[i] = boc[i] >= 64 ? boc[i] / 64 : 1;
        if (attn && cross < 0) {
            char n[160];
            snprintf(n, sizeof n, "down_blocks.%d.attentions.0.transformer_blocks.0.attn2."
                     "to_k.weight", i);
            cross = dim_of(w, n, 1);
            snprintf(n, sizeof n, "down_blocks.%d.attentions.0.proj_in.weight", i);
            linear = dim_of(w, n, 0) > 0 && sd_weights_find(w, n)->n_dim == 2;
        }
    }
    if (cross < 0)
        cross = dim_of(w, "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight", 1);
    /* what the config is read from: a missing one is named, not a config of -1 */
    static const char *const needed[][2] = {
        {"conv_in.weight", "input_blocks.0.0.weight"},
        {"conv_out.weight", "out.2.weight"},
        {"time_embedding.linear_1.weight", "time_embed.0.weight"},
    };
    for (size_t i = 0; i < sizeof needed / sizeof *needed; i++)
        if (dim_of(w, needed[i][0], 0) <= 0) {
            err_set(err, ERR_FORMAT, "%s: tensor model.diffusion_model.%s (the UNet's %s) is "
                    "missing: the file is incomplete", w->where, needed[i][1], needed[i][0]);
            return NULL;
        }
    for (int i = 0; i < L; i++)
        if (boc[i] <= 0) {
            err_set(err, ERR_FORMAT, "%s: the UNet's down_blocks.%d.resnets.0.conv1.weight is "
                    "missing: the file is incomplete", w->where, i);
            return NULL;
        }
    if (cross <= 0) {
        err_set(err, ERR_FORMAT, "%s: no cross-attention key weight (attn2.to_k) in the UNet: "
                "the file is incomplete or not a text-conditioned SD UNet", w->where);
        return NULL;
    }
    json_t *c = json_object();
    json_object_set_new(c, "_class_name", json_string("UNet2DConditionModel"));
    json_object_set_new(c, "act_fn", json_string("silu"));
    if (arch == ARCH_SDXL) {
        int64_t in = dim_of(w, "add_embedding.linear_1.weight", 1);
        const StTensor *p = safetensors_find(st, "conditioner.embedders.1.model.text_projection");
        int64_t pooled = p && p->n_dim == 2 ? p->shape[1] : 1280;
        int64_t td = in > pooled && (in - pooled) % 6 == 0 ? (in - pooled) / 6 : 256;
        json_object_set_new(c, "addition_embed_type", json_string("text_time"));
        json_object_set_new(c, "addition_time_embed_dim", json_integer(td));
        json_object_set_new(c, "projection_class_embeddings_input_dim", json_integer(in));
    }
    json_object_set_new(c, "attention_head_dim",
                        arch == ARCH_SD1 ? json_integer(8) : int_array(heads, L));
    json_object_set_new(c, "block_out_channels", int_array(boc, L));
    json_object_set_new(c, "center_input_sample", json_false());
    json_object_set_new(c, "cross_attention_dim", json_integer(cross));
    json_object_set_new(c, "down_block_types", str_array(down, L));
    json_object_set_new(c, "downsample_padding", json_integer(1));
    json_object_set_new(c, "flip_sin_to_cos", json_true());
    json_object_set_new(c, "freq_shift", json_integer(0));
    json_object_set_new(c, "in_channels", json_integer(dim_of(w, "conv_in.weight", 1)));
    json_object_set_new(c, "layers_per_block", json_integer(lpb));
    json_object_set_new(c, "mid_block_scale_factor", json_integer(1));
    json_object_set_new(c, "mid_block_type", json_string("UNetMidBlock2DCrossAttn"));
    json_object_set_new(c, "norm_eps", json_real(1e-5));
    json_object_set_new(c, "norm_num_groups", json_integer(groups_for(boc, L)));
    json_object_set_new(c, "out_channels", json_integer(dim_of(w, "conv_out.weight", 0)));
    json_object_set_new(c, "sample_size", json_integer(arch == ARCH_SDXL ? 128
                                                      : arch == ARCH_SD2 ? 96 : 64));
    json_object_set_new(c, "transformer_layers_per_block", int_array(tl, L));
    const char *rup[16];
    for (int i = 0; i < L; i++)
        rup[i] = up[i];
    json_object_set_new(c, "up_block_types", str_array(rup, L));
    json_object_set_new(c, "upcast_attention", arch == ARCH_SD2 ? json_true() : json_false());
    json_object_set_new(c, "use_linear_projection", linear ? json_true() : json_false());
    return c;
}

static json_t *config_vae(const SdWeights *w, int arch) {
    int L = 0;
    while (dimf(w, 0, "encoder.down_blocks.%d.resnets.0.conv1.weight", L) > 0 && L < 16)
        L++;
    int64_t boc[16];
    const char *down[16], *up[16];
    for (int i = 0; i < L; i++) {
        boc[i] = dimf(w, 0, "encoder.down_blocks.%d.resnets.0.conv1.weight", i);
        down[i] = "DownEncoderBlock2D";
        up[i] = "UpDecoderBlock2D";
    }
    json_t *c = json_object();
    json_object_set_new(c, "_class_name", json_string("AutoencoderKL"));
    json_object_set_new(c, "act_fn", json_string("silu"));
    json_object_set_new(c, "block_out_channels", int_array(boc, L));
    json_object_set_new(c, "down_block_types", str_array(down, L));
    json_object_set_new(c, "force_upcast", json_true());
    json_object_set_new(c, "in_channels", json_integer(dim_of(w, "encoder.conv_in.weight", 1)));
    json_object_set_new(c, "latent_channels", json_integer(dim_of(w, "quant_conv.weight", 0) / 2));
    json_object_set_new(c, "layers_per_block",
                        json_integer(count_names(w, "encoder.down_blocks.0.resnets.",
                                                 ".conv1.weight")));
    json_object_set_new(c, "norm_num_groups", json_integer(groups_for(boc, L)));
    json_object_set_new(c, "out_channels", json_integer(dim_of(w, "decoder.conv_out.weight", 0)));
    json_object_set_new(c, "sample_size", json_integer(arch == ARCH_SDXL ? 1024
                                                      : arch == ARCH_SD2 ? 768 : 512));
    json_object_set_new(c, "scaling_factor", json_real(arch == ARCH_SDXL ? 0.13025 : 0.18215));
    json_object_set_new(c, "up_block_types", str_array(up, L));
    return c;
}

static json_t *config_clip(const SdWeights *w, int kind, int arch) {
    int64_t hidden = dim_of(w, "text_model.embeddings.token_embedding.weight", 1);
    int layers = 0;
    while (dimf(w, 0, "text_model.encoder.layers.%d.layer_norm1.weight", layers) > 0)
        layers++;
    (void)arch; /* SD 2's unused last layer is not among the entries (sd_weights_single_load) */
    int proj = sd_weights_find(w, "text_projection.weight") && arch == ARCH_SDXL;
    json_t *c = json_object();
    const char *cls = proj ? "CLIPTextModelWithProjection" : "CLIPTextModel";
    json_object_set_new(c, "architectures", str_array(&cls, 1));
    json_object_set_new(c, "hidden_act", json_string(kind == K_OPENCLIP ? "gelu" : "quick_gelu"));
    json_object_set_new(c, "hidden_size", json_integer(hidden));
    json_object_set_new(c, "intermediate_size",
                        json_integer(dim_of(w, "text_model.encoder.layers.0.mlp.fc1.weight", 0)));
    json_object_set_new(c, "layer_norm_eps", json_real(1e-5));
    json_object_set_new(c, "max_position_embeddings",
                        json_integer(dim_of(w, "text_model.embeddings.position_embedding.weight",
                                            0)));
    json_object_set_new(c, "model_type", json_string("clip_text_model"));
    json_object_set_new(c, "num_attention_heads", json_integer(hidden >= 64 ? hidden / 64 : 1));
    json_object_set_new(c, "num_hidden_layers", json_integer(layers));
    if (proj)
        json_object_set_new(c, "projection_dim",
                            json_integer(dim_of(w, "text_projection.weight", 0)));
    json_object_set_new(c, "vocab_size",
                        json_integer(dim_of(w, "text_model.embeddings.token_embedding.weight", 0)));
    return c;
}

static int ends_with(const char *s, size_t n, const char *suf) {
    size_t m = strlen(suf);
    return n >= m && !strcmp(s + n - m, suf);
}

/* Add the file tensor T (single-file name without the prefix: REST) under diffusers names. */
static void add_mapped(SdWeights *w, const Pairs *ps, int kind, const StTensor *t,
                       const char *rest) {
    char *name = map_name(ps, rest, 1);
    size_t n = strlen(name);
    if (kind == K_HF && strncmp(name, "text_model.", 11) &&
        strcmp(name, "text_projection.weight")) {
        char *x = xasprintf("text_model.%s", name);
        free(name);
        name = x;
    } else if (kind == K_VAE && strstr(name, ".mid_block.attentions.0.to_") &&
               t->n_dim == 4 && t->shape[2] == 1 && t->shape[3] == 1) {
        SdEntry *e = sd_weights_push(w, 0, t, name, 1); /* 1x1 conv seen as a linear */
        e->t.n_dim = 2;
        free(name);
        return;
    } else if (kind == K_OPENCLIP && (ends_with(name, n, ".attn.in_proj_bias") ||
                                      ends_with(name, n, ".attn.in_proj_weight")) &&
               t->n_dim >= 1 && t->shape[0] % 3 == 0) {
        /* q, k, v stacked on rows: three row slices of the same bytes */
        char *attn = strstr(name, ".attn.in_proj_");
        int bias = name[n - 1] == 's';
        *attn = 0;
        int64_t rows = t->shape[0] / 3;
        size_t row_bytes = (size_t)(t->n_bytes / (uint64_t)t->shape[0]);
        for (int q = 0; q < 3; q++) {
            char *nm = xasprintf("%s.self_attn.%c_proj.%s", name, "qkv"[q],
                                 bias ? "bias" : "weight");
            SdEntry *e = sd_weights_push(w, 0, t, nm, 1);
            e->t.shape[0] = rows;
            e->t.n_elem = t->n_elem / 3;
            e->t.n_bytes = t->n_bytes / 3;
            e->t.data = (const char *)t->data + (size_t)q * (size_t)rows * row_bytes;
            free(nm);
        }
        free(name);
        return;
    } else if (kind == K_OPENCLIP && !strcmp(name, "text_projection.weight") && t->n_dim == 2) {
        SdEntry *e = sd_weights_push(w, 0, t, name, 1);
        e->t.shape[0] = t->shape[1];
        e->t.shape[1] = t->shape[0];
        e->transpose = 1;
        free(name);
        return;
    }
    sd_weights_push(w, 0, t, name, 1);
    free(name);
}

int sd_weights_single_load(SdWeights *w, Err *err) {
    const SafeTensors *st = w->files[0];
    int which = -1;
    for (size_t i = 0; i < N_PREFIXES && which < 0; i++)
        if (!strcmp(PREFIXES[i].component, w->component) && file_has(st, PREFIXES[i].prefix))
            which = (int)i;
    if (which < 0) {
        int known = 0;
        for (size_t i = 0; i < N_PREFIXES; i++)
            known |= !strcmp(PREFIXES[i].component, w->component);
        if (!known)
            return err_set(err, ERR_USAGE, "%s: unknown component \"%s\" (unet, vae, "
                           "text_encoder or text_encoder_2)", w->where, w->component);
        int any = 0;
        char want[200] = "";
        for (size_t i = 0; i < N_PREFIXES; i++) {
            any |= file_has(st, PREFIXES[i].prefix);
            if (!strcmp(PREFIXES[i].component, w->component))
                snprintf(want + strlen(want), sizeof want - strlen(want), "%s%s*",
                         want[0] ? ", " : "", PREFIXES[i].prefix);
        }
        if (any)
            return err_set(err, ERR_NOTFOUND, "%s: this single-file checkpoint holds no %s "
                           "(no tensor named %s)", w->where, w->component, want);
        if (file_has(st, "down_blocks.") || file_has(st, "encoder.down_blocks.") ||
            file_has(st, "text_model.") || file_has(st, "encoder.layers."))
            return err_set(err, ERR_FORMAT, "%s: this is one component of a diffusers model "
                           "(diffusers names, no config): give the model's folder (the one "
                           "holding model_index.json) or the component's folder instead",
                           w->where);
        return err_set(err, ERR_FORMAT, "%s: not a Stable Diffusion single-file checkpoint "
                       "(no model.diffusion_model.*, first_stage_model.*, cond_stage_model.* "
                       "or conditioner.embedders.* tensors)", w->where);
    }
    const char *prefix = PREFIXES[which].prefix;
    int kind = PREFIXES[which].kind;
    size_t plen = strlen(prefix);
    int arch = detect_arch(st);
    /* the component's names without the prefix */
    Names ns = {0};
    ns.v = xmalloc((safetensors_count(st) + 1) * sizeof *ns.v);
    for (size_t i = 0; i < safetensors_count(st); i++) {
        const char *nm = safetensors_at(st, i)->name;
        if (!strncmp(nm, prefix, plen))
            ns.v[ns.n++] = nm + plen;
    }
    Pairs ps = {0};
    int rc = 0;
    if (kind == K_UNET) {
        int L, lpb, up_attn[16];
        rc = unet_shape(&ns, 1, &L, &lpb, up_attn, err, w->where);
        if (!rc)
            pairs_unet(&ps, L, lpb, up_attn);
    } else if (kind == K_VAE) {
        pairs_vae(&ps, vae_levels(&ns, 1));
    } else if (kind == K_OPENCLIP) {
        pairs_openclip(&ps);
    }
    /* SD 2 conditions on OpenCLIP's penultimate layer: the file's last layer is not part of
     * the text encoder (diffusers' released config has one layer less and from_single_file
     * skips it), so it is left out here */
    int skip_layer = -1;
    if (kind == K_OPENCLIP && arch == ARCH_SD2)
        for (size_t i = 0; i < ns.n; i++) {
            int k;
            if (sscanf(ns.v[i], "transformer.resblocks.%d.", &k) == 1 && k > skip_layer)
                skip_layer = k;
        }
    char skip[64];
    snprintf(skip, sizeof skip, "transformer.resblocks.%d.", skip_layer);
    for (size_t i = 0; i < safetensors_count(st) && !rc; i++) {
        const StTensor *t = safetensors_at(st, i);
        if (!strncmp(t->name, prefix, plen) &&
            !(skip_layer > 0 && !strncmp(t->name + plen, skip, strlen(skip))))
            add_mapped(w, &ps, kind, t, t->name + plen);
    }
    free(ps.p);
    free(ns.v);
    if (!rc)
        rc = sd_weights_index(w, err);
    if (rc)
        return rc;
    json_t *c = kind == K_UNET ? config_unet(w, arch, st, err)
                : kind == K_VAE ? config_vae(w, arch) : config_clip(w, kind, arch);
    if (!c)
        return err ? err->code : ERR_FORMAT;
    json_object_set_new(c, "_easel_single_file_architecture", json_string(ARCH_NAME[arch]));
    w->config = json_dumps(c, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(c);
    return 0;
}

char **sd_weights_single_sgm_names(const SdWeights *w) {
    if (strcmp(w->component, "unet"))
        return NULL;
    Names ns = {0};
    ns.v = xmalloc((w->n_ents + 1) * sizeof *ns.v);
    for (size_t i = 0; i < w->n_ents; i++)
        ns.v[ns.n++] = w->ents[i].t.name;
    int L, lpb, up_attn[16];
    char **out = NULL;
    if (!unet_shape(&ns, 0, &L, &lpb, up_attn, NULL, w->where)) {
        Pairs ps = {0};
        pairs_unet(&ps, L, lpb, up_attn);
        out = xmalloc((w->n_ents + 1) * sizeof *out);
        for (size_t i = 0; i < w->n_ents; i++)
            out[i] = map_name(&ps, w->ents[i].t.name, 0);
        free(ps.p);
    }
    free(ns.v);
    return out;
}

/* ---- writing a single file ------------------------------------------------------------------ */

typedef struct Out {
    SafeTensorsWriter *wr;
    void **bufs; /* data made here, freed after the save */
    int n_bufs;
} Out;

static void *out_buf(Out *o, size_t n) {
    o->bufs = xrealloc(o->bufs, (size_t)(o->n_bufs + 1) * sizeof *o->bufs);
    return o->bufs[o->n_bufs++] = xmalloc(n ? n : 1);
}

/* The entry's diffusers name with transformers' `text_model.` prefix (folders saved by
 * transformers 5 drop it). */
static char *te_name(const char *name) {
    if (!strncmp(name, "text_model.", 11) || !strcmp(name, "text_projection.weight"))
        return xstrdup(name);
    return xasprintf("text_model.%s", name);
}

static int put(Out *o, const char *prefix, const char *name, const StTensor *t, int n_dim,
               const int64_t *shape, const void *data, Err *err) {
    char *full = xasprintf("%s%s", prefix, name);
    int rc = safetensors_writer_add(o->wr, full, t->dtype, n_dim, shape, data, err);
    free(full);
    return rc;
}

static int write_component(Out *o, SdWeights *w, int kind, const char *prefix, Err *err) {
    Names ns = {0};
    ns.v = xmalloc((w->n_ents + 1) * sizeof *ns.v);
    for (size_t i = 0; i < w->n_ents; i++)
        ns.v[ns.n++] = w->ents[i].t.name;
    Pairs ps = {0};
    int rc = 0;
    if (kind == K_UNET) {
        int L, lpb, up_attn[16];
        rc = unet_shape(&ns, 0, &L, &lpb, up_attn, err, w->where);
        if (!rc)
            pairs_unet(&ps, L, lpb, up_attn);
    } else if (kind == K_VAE) {
        pairs_vae(&ps, vae_levels(&ns, 0));
    } else if (kind == K_OPENCLIP) {
        pairs_openclip(&ps);
    }
    free(ns.v);
    for (size_t i = 0; i < w->n_ents && !rc; i++) {
        const StTensor *t = &w->ents[i].t;
        char *dif = kind == K_HF || kind == K_OPENCLIP ? te_name(t->name) : xstrdup(t->name);
        size_t n = strlen(dif);
        if (kind == K_OPENCLIP && ends_with(dif, n, "position_ids")) {
            free(dif);
            continue;
        }
        if (kind == K_OPENCLIP && (strstr(dif, ".self_attn.q_proj.") ||
                                   strstr(dif, ".self_attn.k_proj.") ||
                                   strstr(dif, ".self_attn.v_proj."))) {
            /* q, k, v stacked into attn.in_proj_{weight,bias}, written once at q */
            char *at = strstr(dif, ".self_attn.") + 11;
            int flat = strcmp(dif, t->name) != 0; /* the folder drops text_model. */
            if (*at == 'q') {
                int bias = ends_with(dif, n, ".bias");
                const StTensor *qkv[3];
                size_t bytes = 0;
                for (int q = 0; q < 3; q++) {
                    *at = "qkv"[q];
                    qkv[q] = sd_weights_find(w, flat ? dif + 11 : dif);
                    if (!qkv[q] || qkv[q]->dtype != t->dtype || qkv[q]->n_bytes != t->n_bytes) {
                        rc = err_set(err, ERR_FORMAT, "%s: %s has no matching %c_proj", w->where,
                                     t->name, "qkv"[q]);
                        break;
                    }
                    bytes += (size_t)qkv[q]->n_bytes;
                }
                *at = 'q';
                if (!rc) {
                    char *buf = out_buf(o, bytes);
                    for (int q = 0; q < 3; q++)
                        memcpy(buf + (size_t)q * t->n_bytes, qkv[q]->data, t->n_bytes);
                    int64_t shape[2] = {3 * t->shape[0], t->n_dim > 1 ? t->shape[1] : 0};
                    *(at - 11) = 0; /* "…layers.{i}" */
                    char *sgm = map_name(&ps, dif, 0);
                    char *nm = xasprintf("%s.attn.in_proj_%s", sgm, bias ? "bias" : "weight");
                    rc = put(o, prefix, nm, t, t->n_dim, shape, buf, err);
                    free(sgm);
                    free(nm);
                }
            }
            free(dif);
            continue;
        }
        char *sgm = map_name(&ps, dif, 0);
        if (kind == K_OPENCLIP && !strcmp(dif, "text_projection.weight") && t->n_dim == 2) {
            size_t es = safetensors_dtype_size(t->dtype);
            int64_t r = t->shape[0], c = t->shape[1];
            char *buf = out_buf(o, (size_t)t->n_bytes);
            const char *src = t->data;
            for (int64_t a = 0; a < r; a++)
                for (int64_t b = 0; b < c; b++)
                    memcpy(buf + ((size_t)b * (size_t)r + (size_t)a) * es,
                           src + ((size_t)a * (size_t)c + (size_t)b) * es, es);
            int64_t shape[2] = {c, r};
            rc = put(o, prefix, sgm, t, 2, shape, buf, err);
        } else if (kind == K_VAE && strstr(dif, ".mid_block.attentions.0.to_") && t->n_dim == 2) {
            int64_t shape[4] = {t->shape[0], t->shape[1], 1, 1}; /* linear as a 1x1 conv */
            rc = put(o, prefix, sgm, t, 4, shape, t->data, err);
        } else {
            rc = put(o, prefix, sgm, t, t->n_dim, t->shape, t->data, err);
        }
        free(sgm);
        free(dif);
    }
    free(ps.p);
    return rc;
}

/* SD 2.x: released files hold OpenCLIP's whole text tower, whose last layer SD 2 does not use
 * (its diffusers config has one layer less, and the reader drops the file's last). Written
 * from a folder, that layer is an identity: all zeros (LayerNorms to 0, so attention and MLP
 * add 0), so the file reads back to the folder's layers here and in diffusers alike. */
static int put_unused_sd2_layer(Out *o, SdWeights *w, const char *prefix, Err *err) {
    int n = count_names(w, "text_model.encoder.layers.", ".layer_norm1.weight");
    int bare = 0;
    if (n == 0) { /* folders saved by transformers 5 drop text_model. */
        n = count_names(w, "encoder.layers.", ".layer_norm1.weight");
        bare = 1;
    }
    if (n == 0)
        return 0;
    static const struct {
        const char *dif, *sgm;
        int rows3; /* q, k, v stacked */
    } parts[] = {
        {"layer_norm1.weight", "ln_1.weight", 0},     {"layer_norm1.bias", "ln_1.bias", 0},
        {"layer_norm2.weight", "ln_2.weight", 0},     {"layer_norm2.bias", "ln_2.bias", 0},
        {"self_attn.q_proj.weight", "attn.in_proj_weight", 1},
        {"self_attn.q_proj.bias", "attn.in_proj_bias", 1},
        {"self_attn.out_proj.weight", "attn.out_proj.weight", 0},
        {"self_attn.out_proj.bias", "attn.out_proj.bias", 0},
        {"mlp.fc1.weight", "mlp.c_fc.weight", 0},     {"mlp.fc1.bias", "mlp.c_fc.bias", 0},
        {"mlp.fc2.weight", "mlp.c_proj.weight", 0},   {"mlp.fc2.bias", "mlp.c_proj.bias", 0},
    };
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
        char *dn = xasprintf("%sencoder.layers.%d.%s", bare ? "" : "text_model.", n - 1,
                             parts[i].dif);
        const StTensor *t = sd_weights_find(w, dn);
        free(dn);
        if (!t)
            return err_set(err, ERR_FORMAT, "%s: text encoder layer %d has no %s", w->where,
                           n - 1, parts[i].dif);
        int64_t shape[2] = {t->shape[0] * (parts[i].rows3 ? 3 : 1), t->n_dim > 1 ? t->shape[1]
                                                                                : 0};
        size_t bytes = (size_t)t->n_bytes * (parts[i].rows3 ? 3 : 1);
        char *buf = out_buf(o, bytes);
        memset(buf, 0, bytes);
        char *nm = xasprintf("transformer.resblocks.%d.%s", n, parts[i].sgm);
        int rc = put(o, prefix, nm, t, t->n_dim, shape, buf, err);
        free(nm);
        if (rc)
            return rc;
    }
    return 0;
}

static int merge_adapters(Out *o, SdWeights *w, Err *err);

/* The folder's components as one single file at OUT_PATH, with the N_LORAS adapters LORAS
 * (SCALES) merged into the UNet (none: the folder as it is). */
static int write_single(const char *folder, const char *const *loras, const float *scales,
                        int n_loras, const char *out_path, Err *err) {
    static const char *const comps[] = {"unet", "vae", "text_encoder", "text_encoder_2"};
    SdWeights *w[4] = {0};
    int rc = 0;
    for (int i = 0; i < 4 && !rc; i++) {
        int optional = i >= 2; /* the text encoders */
        Err e2 = {0};
        int r = sd_weights_open(folder, comps[i], &w[i], optional ? &e2 : err);
        if (r && optional && r == ERR_NOTFOUND)
            continue;
        if (r) {
            if (optional && err)
                *err = e2;
            rc = r;
        }
    }
    for (int i = 0; i < n_loras && !rc; i++)
        rc = sd_weights_add_lora(w[0], loras[i], scales[i], err);
    /* the text encoders take no adapters here: one that holds some is refused, not dropped */
    for (int c = 2; c < 4 && !rc; c++) {
        for (int i = 0; w[c] && i < n_loras && !rc; i++)
            rc = sd_weights_add_lora(w[c], loras[i], 1.0f, err);
        if (!rc && w[c] && sd_weights_lora_any(w[c]))
            rc = err_set(err, ERR_USAGE, "%s: holds %s adapters; only the UNet's are merged "
                         "(use a UNet-only adapter)", loras[0], comps[c]);
    }
    int arch = ARCH_SD1;
    if (!rc) {
        if (w[3] || sd_weights_find(w[0], "add_embedding.linear_1.weight")) {
            arch = ARCH_SDXL;
        } else {
            for (size_t i = 0; i < w[0]->n_ents; i++) {
                const char *s = strstr(w[0]->ents[i].t.name, ".proj_in.weight");
                if (s && !s[15]) {
                    arch = w[0]->ents[i].t.n_dim == 2 ? ARCH_SD2 : ARCH_SD1;
                    break;
                }
            }
        }
    }
    Out o = {safetensors_writer_new(), NULL, 0};
    if (!rc && n_loras > 0)
        rc = merge_adapters(&o, w[0], err);
    if (!rc)
        rc = write_component(&o, w[0], K_UNET, "model.diffusion_model.", err);
    if (!rc)
        rc = write_component(&o, w[1], K_VAE, "first_stage_model.", err);
    if (!rc && w[2] && arch == ARCH_SD2)
        rc = put_unused_sd2_layer(&o, w[2], "cond_stage_model.model.", err);
    if (!rc && w[2])
        rc = arch == ARCH_SD2
                 ? write_component(&o, w[2], K_OPENCLIP, "cond_stage_model.model.", err)
                 : write_component(&o, w[2], K_HF,
                                   arch == ARCH_SDXL ? "conditioner.embedders.0.transformer."
                                                     : "cond_stage_model.transformer.",
                                   err);
    if (!rc && w[3])
        rc = write_component(&o, w[3], K_OPENCLIP, "conditioner.embedders.1.model.", err);
    if (!rc)
        rc = safetensors_writer_save(o.wr, out_path, err);
    safetensors_writer_free(o.wr);
    for (int i = 0; i < o.n_bufs; i++)
        free(o.bufs[i]);
    free(o.bufs);
    for (int i = 0; i < 4; i++)
        sd_weights_close(w[i]);
    return rc;
}

int sd_weights_write_single(const char *folder, const char *out_path, Err *err) {
    return write_single(folder, NULL, NULL, 0, out_path, err);
}

/* ---- a single file with adapters merged (adio16: `easel export merged`) ---------------------- */

/* Point each UNet weight that an adapter of W changes at its merged values in its own dtype
 * (buffers kept in O until the save). */
static int merge_adapters(Out *o, SdWeights *w, Err *err) {
    for (size_t i = 0; i < w->n_ents; i++) {
        StTensor *t = &w->ents[i].t;
        if (!sd_weights_lora_targets(w, t->name))
            continue;
        if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16)
            return err_set(err, ERR_FORMAT, "%s: %s is %s: adapters merge into f32, f16 or "
                           "bf16 weights only", w->where, t->name,
                           safetensors_dtype_name(t->dtype));
        float *v = malloc((size_t)t->n_elem * sizeof *v);
        if (!v)
            return err_set(err, ERR_NOMEM, "%s: out of memory merging %s", w->where, t->name);
        int rc = sd_weights_read_f32(w, t->name, t->n_dim, t->shape, v, err);
        if (rc) {
            free(v);
            return rc;
        }
        void *buf = out_buf(o, (size_t)t->n_elem * safetensors_dtype_size(t->dtype));
        if (t->dtype == ST_F32) {
            memcpy(buf, v, (size_t)t->n_elem * sizeof *v);
        } else {
            uint16_t *h = buf;
            for (int64_t k = 0; k < t->n_elem; k++)
                h[k] = t->dtype == ST_F16 ? safetensors_f32_to_f16(v[k])
                                          : safetensors_f32_to_bf16(v[k]);
        }
        free(v);
        t->data = buf;
    }
    return sd_weights_check_used(w, err);
}

int sd_weights_write_single_lora(const char *folder, const char *const *loras,
                                 const float *scales, int n_loras, const char *out_path,
                                 Err *err) {
    return write_single(folder, loras, scales, n_loras, out_path, err);
}
