/* cli_agreement — `easel agreement`: inter-annotator agreement per aspect, as a readable
 * report or as JSON for scripts.
 *
 * All numbers come from agreement_compute (src/base/agreement.c) over the tables that
 * store_agreement_report reads in one snapshot; this file only parses flags and formats.
 * Undefined statistics print as "n/a" (JSON null) with the reason underneath.
 */
#include "cli.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agreement.h"
#include "identity.h"
#include "store.h"
#include "store_agreement.h"
#include "trust.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: easel [--db PATH] agreement [--aspect NAME] [--json] [--top N]\n"
            "                                   [--disagree-range X]\n\n"
            "How far the annotators agree, per aspect, over the current ratings:\n"
            "  raters per image   mean, min and max over images with at least one rating\n"
            "  alpha              Krippendorff's alpha, interval metric, over every image\n"
            "                     with two or more ratings (missing ratings allowed)\n"
            "  ICC(2,1), ICC(2,k) two-way random effects, absolute agreement (Shrout &\n"
            "                     Fleiss); ANOVA needs complete data, so they are computed\n"
            "                     over the largest complete block: the k >= 2 annotators and\n"
            "                     the images all of them rated with the most ratings (n x k);\n"
            "                     the block is printed beside them\n"
            "  high disagreement  images with two or more ratings whose range (max - min)\n"
            "                     is at least X points (default 3)\n"
            "Then per annotator: ratings given, and the mean offset (and mean absolute\n"
            "offset) from the mean of the other annotators of the same images; and the N\n"
            "images with the most disagreement (range, then standard deviation).\n"
            "n/a means the statistic is undefined for these ratings; the reason is printed.\n"
            "Under blind rating ('easel config blind on') the per-annotator rows and the\n"
            "image list need the reviewer role; others see the per-aspect table and their\n"
            "own row (doc/annotators.md).\n\n"
            "options:\n"
            "  --aspect NAME        one aspect only (spatial, icono, style, fidelity, ...)\n"
            "  --json               one JSON object on stdout (NaN as null), every image\n"
            "                       ranked unless --top is given\n"
            "  --top N              images listed per aspect (default 5; 0 = none)\n"
            "  --disagree-range X   high-disagreement threshold in rating points (default 3)\n\n"
            "example:\n"
            "  easel --db data/demo.db agreement --aspect fidelity --top 10\n"
            "  easel agreement --json | jq '.aspects[] | {aspect, alpha}'\n");
}

/* V with DECIMALS digits (and a sign if SIGNED), or "n/a" for NAN. */
static const char *fmt_num(char *buf, size_t n, double v, int decimals, int sign) {
    if (isnan(v))
        snprintf(buf, n, "n/a");
    else if (sign)
        snprintf(buf, n, "%+.*f", decimals, v);
    else
        snprintf(buf, n, "%.*f", decimals, v);
    return buf;
}

/* ONLY: the login whose row alone is shown (blind rating, not a reviewer), NULL = all. */
static int shown(const char *name, const char *only) {
    return !only || (name && strcmp(name, only) == 0);
}

static void print_text(const AgreeReport *r, int top, const char *only) {
    const AgreeStats *s0 = r->n ? r->stats[0] : NULL;
    printf("Agreement over current ratings (0-10). alpha: Krippendorff, interval metric.\n"
           "ICC: two-way random, absolute agreement, over the largest complete block.\n"
           "high: images whose ratings span >= %g points (marked ! below).\n\n",
           s0 ? s0->disagree_range : AGREE_DISAGREE_RANGE);
    printf("%-10s %6s %7s %4s %4s %7s %9s %9s  %-16s %5s\n", "aspect", "images", "raters",
           "min", "max", "alpha", "ICC(2,1)", "ICC(2,k)", "ICC block", "high");
    for (int i = 0; i < r->n; i++) {
        const AgreeTable *t = r->tables[i];
        const AgreeStats *s = r->stats[i];
        char a[32], b[32], c[32], d[32], blk[32];
        if (s->icc_n_items)
            snprintf(blk, sizeof blk, "%d img x %d", s->icc_n_items, s->icc_k);
        else
            snprintf(blk, sizeof blk, "none");
        printf("%-10s %6d %7s %4d %4d %7s %9s %9s  %-16s %5d\n", t->aspect, s->n_items_rated,
               fmt_num(a, sizeof a, s->raters_mean, 2, 0), s->raters_min, s->raters_max,
               fmt_num(b, sizeof b, s->alpha, 3, 0), fmt_num(c, sizeof c, s->icc_2_1, 3, 0),
               fmt_num(d, sizeof d, s->icc_2_k, 3, 0), blk, s->n_high_disagree);
    }
    for (int i = 0; i < r->n; i++) {
        const AgreeTable *t = r->tables[i];
        const AgreeStats *s = r->stats[i];
        printf("\n== %s: %d ratings by %d annotators on %d images (%d with two or more)\n",
               t->aspect, s->n_ratings, s->n_raters_active, s->n_items_rated,
               s->n_items_pairable);
        if (s->alpha_note[0])
            printf("   alpha n/a: %s\n", s->alpha_note);
        if (s->icc_note[0])
            printf("   ICC n/a: %s\n", s->icc_note);
        if (s->icc_n_items && !only) {
            printf("   ICC block: %d images rated by all of", s->icc_n_items);
            for (int q = 0; q < s->icc_k; q++)
                printf("%s %s", q ? "," : "", t->rater_names[s->icc_raters[q]]);
            printf("\n");
        }
        if (s->n_raters_active == 0)
            continue;
        printf("   %-16s %7s %7s %8s %9s\n", "annotator", "ratings", "shared", "offset",
               "|offset|");
        for (int j = 0; j < s->n_raters; j++) {
            const AgreeRater *ra = &s->raters[j];
            char o[32], ao[32];
            if (!shown(t->rater_names[j], only))
                continue;
            printf("   %-16s %7d %7d %8s %9s\n", t->rater_names[j], ra->n_rated, ra->n_shared,
                   fmt_num(o, sizeof o, ra->mean_offset, 2, 1),
                   fmt_num(ao, sizeof ao, ra->mean_abs_offset, 2, 0));
        }
        int n_show = only ? 0 : top < s->n_ranked ? top : s->n_ranked;
        if (n_show <= 0)
            continue;
        printf("   most disagreement:\n   %6s %5s %5s %5s %3s  %s\n", "range", "sd", "mean",
               "n", "", "image (id)");
        for (int k = 0; k < n_show; k++) {
            const AgreeItem *it = &s->ranked[k];
            printf("   %6.1f %5.2f %5.2f %5d %3s  %s (%lld)\n", it->range, it->sd, it->mean,
                   it->n_ratings, it->high ? "!" : "",
                   t->item_labels ? t->item_labels[it->item] : "", (long long)it->id);
        }
    }
}

static json_t *jnum(double v) { return isnan(v) ? json_null() : json_real(v); }

static json_t *jnote(const char *note) { return note[0] ? json_string(note) : json_null(); }

static json_t *json_aspect(const AgreeTable *t, const AgreeStats *s, int top,
                           const char *only) {
    json_t *o = json_object();
    json_object_set_new(o, "aspect", json_string(t->aspect));
    json_object_set_new(o, "ratings", json_integer(s->n_ratings));
    json_object_set_new(o, "images_rated", json_integer(s->n_items_rated));
    json_object_set_new(o, "images_pairable", json_integer(s->n_items_pairable));
    json_object_set_new(o, "annotators_active", json_integer(s->n_raters_active));
    json_t *rpi = json_object();
    json_object_set_new(rpi, "mean", jnum(s->raters_mean));
    json_object_set_new(rpi, "min", json_integer(s->raters_min));
    json_object_set_new(rpi, "max", json_integer(s->raters_max));
    json_object_set_new(o, "raters_per_image", rpi);
    json_object_set_new(o, "alpha", jnum(s->alpha));
    json_object_set_new(o, "alpha_note", jnote(s->alpha_note));
    json_t *icc = json_object();
    json_object_set_new(icc, "icc_2_1", jnum(s->icc_2_1));
    json_object_set_new(icc, "icc_2_k", jnum(s->icc_2_k));
    json_object_set_new(icc, "block_images", json_integer(s->icc_n_items));
    json_object_set_new(icc, "block_k", json_integer(s->icc_k));
    json_t *br = json_array();
    for (int q = 0; q < s->icc_k && !only; q++)
        json_array_append_new(br, json_string(t->rater_names[s->icc_raters[q]]));
    json_object_set_new(icc, "block_annotators", br);
    json_object_set_new(icc, "note", jnote(s->icc_note));
    json_object_set_new(o, "icc", icc);
    json_object_set_new(o, "disagree_range", json_real(s->disagree_range));
    json_object_set_new(o, "high_disagreement", json_integer(s->n_high_disagree));
    json_t *an = json_array();
    for (int j = 0; j < s->n_raters; j++) {
        if (!shown(t->rater_names[j], only))
            continue;
        json_t *a = json_object();
        json_object_set_new(a, "name", json_string(t->rater_names[j]));
        json_object_set_new(a, "ratings", json_integer(s->raters[j].n_rated));
        json_object_set_new(a, "shared", json_integer(s->raters[j].n_shared));
        json_object_set_new(a, "mean_offset", jnum(s->raters[j].mean_offset));
        json_object_set_new(a, "mean_abs_offset", jnum(s->raters[j].mean_abs_offset));
        json_array_append_new(an, a);
    }
    json_object_set_new(o, "annotators", an);
    json_t *im = json_array();
    int n_show = only ? 0 : top < 0 || top > s->n_ranked ? s->n_ranked : top;
    for (int k = 0; k < n_show; k++) {
        const AgreeItem *it = &s->ranked[k];
        json_t *x = json_object();
        json_object_set_new(x, "image_id", json_integer(it->id));
        json_object_set_new(x, "path", json_string(t->item_labels ? t->item_labels[it->item] : ""));
        json_object_set_new(x, "ratings", json_integer(it->n_ratings));
        json_object_set_new(x, "mean", json_real(it->mean));
        json_object_set_new(x, "range", json_real(it->range));
        json_object_set_new(x, "sd", json_real(it->sd));
        json_object_set_new(x, "high", json_boolean(it->high));
        json_t *by = json_object();
        for (int j = 0; j < t->n_raters; j++) {
            double v = t->values[(size_t)it->item * (size_t)t->n_raters + (size_t)j];
            if (!isnan(v))
                json_object_set_new(by, t->rater_names[j], json_real(v));
        }
        json_object_set_new(x, "by_annotator", by);
        json_array_append_new(im, x);
    }
    json_object_set_new(o, "disagreement", im);
    return o;
}

static int parse_number(const char *flag, const char *v, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (!*v || *end || errno || !(x >= lo && x <= hi)) {
        cli_error("agreement: %s wants a number in %g..%g, not '%s'", flag, lo, hi, v);
        return 2;
    }
    *out = x;
    return 0;
}

int cli_agreement_main(const CliGlobal *g, int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    const char *aspect = NULL;
    int json = 0, top = -1;
    AgreeOptions opt = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        const char *eq = strchr(a, '=');
        char flag[32];
        if (strncmp(a, "--", 2) == 0 && eq && (size_t)(eq - a) < sizeof flag) {
            memcpy(flag, a, (size_t)(eq - a));
            flag[eq - a] = 0;
            val = eq + 1;
            a = flag;
        }
        int wants_value = strcmp(a, "--aspect") == 0 || strcmp(a, "--top") == 0 ||
                          strcmp(a, "--disagree-range") == 0;
        if (wants_value && !val) {
            if (i + 1 >= argc) {
                cli_error("agreement: %s needs a value (see 'easel agreement --help')", a);
                return 2;
            }
            val = argv[++i];
        }
        double x;
        if (strcmp(a, "--json") == 0 && !val) {
            json = 1;
        } else if (strcmp(a, "--aspect") == 0) {
            aspect = val;
        } else if (strcmp(a, "--top") == 0) {
            if (parse_number("--top", val, 0, 1e9, &x))
                return 2;
            top = (int)x;
        } else if (strcmp(a, "--disagree-range") == 0) {
            if (parse_number("--disagree-range", val, 0.01, 10, &x))
                return 2;
            opt.disagree_range = x;
        } else {
            cli_error("agreement: unknown argument '%s' (see 'easel agreement --help')",
                      argv[i]);
            return 2;
        }
    }
    Store *st = cli_open_store(g);
    if (!st)
        return 1;
    Err err = {0};
    /* blind rating: the per-annotator detail is the reviewers' (trust.h) */
    int only_self = 0;
    char denied[ERR_MSG_LEN] = "";
    if (trust_blind_view(st, identity_login(), &only_self, &err)) {
        store_close(st);
        return cli_fail(&err);
    }
    if (only_self) {
        Err e = {0};
        trust_require_review(st, identity_login(), "the per-annotator detail", &e);
        snprintf(denied, sizeof denied, "%s", e.msg);
    }
    const char *only = only_self ? identity_login() : NULL;
    AgreeReport *r = store_agreement_report(st, aspect, &opt, &err);
    store_close(st);
    if (!r)
        return cli_fail(&err);
    int rc = 0;
    if (json) {
        json_t *o = json_object();
        json_object_set_new(o, "store", json_string(g->db_path));
        json_t *arr = json_array();
        for (int i = 0; i < r->n; i++)
            json_array_append_new(arr, json_aspect(r->tables[i], r->stats[i], top, only));
        json_object_set_new(o, "aspects", arr);
        json_object_set_new(o, "blind_view", only ? json_string(denied) : json_null());
        if (json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10)))
            rc = 1;
        fputc('\n', stdout);
        json_decref(o);
    } else {
        print_text(r, top < 0 ? 5 : top, only);
        if (only)
            printf("\nOnly your own row is shown: %s\n", denied);
    }
    if (fflush(stdout) != 0) {
        cli_error("agreement: writing the report failed: %s", strerror(errno));
        rc = 1;
    }
    store_agreement_report_free(r);
    return rc;
}
