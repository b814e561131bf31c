/* screen_quality — inter-rater agreement per aspect, per annotator, and the images with the
 * most disagreement, from the shared agreement code (src/store/store_agreement.h, src/base/agreement.h).
 *
 * Read-only. The report is computed on a background thread (ui/loader.h: about 3 s for
 * 400 000 ratings) on enter, on `r`, and every RELOAD_SECONDS while visible (annotators keep
 * committing in other sessions); the last report stays on screen meanwhile. Enter on a listed image opens it in the
 * Annotate screen for review: the reviewer sees and edits only their own values there.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "identity.h"
#include "list.h"
#include "loader.h"
#include "quality_vm.h"
#include "screen.h"
#include "store_agreement.h"
#include "trust.h"

#define RELOAD_SECONDS 10.0

typedef struct Quality {
    UiLoader *loader;
    AgreeReport *rep;
    char err[ERR_MSG_LEN];
    double loaded_at;
    int aspect;      /* selected aspect */
    UiList list;     /* the disagreement list's selection and scrolling (ui/list.h) */
    char denied[ERR_MSG_LEN]; /* blind rating and no reviewer role: why nothing is shown */
} Quality;

static void *report_load(Store *st, void *arg, Err *err) {
    (void)arg;
    return store_agreement_report(st, NULL, NULL, err);
}

static void report_free(void *p) { store_agreement_report_free(p); }

static void wake_app(void *app) { app_wake(app); }

static void reload(Quality *q) {
    q->loaded_at = base_now();
    ui_loader_request(q->loader, NULL);
}

static void *quality_init(App *app, Err *err) {
    Quality *q = xcalloc(1, sizeof *q);
    q->loader = ui_loader_new(app_config(app)->db_path, wake_app, app, report_load, NULL,
                              report_free, err);
    if (!q->loader) {
        free(q);
        return NULL;
    }
    return q;
}

static void quality_fini(void *stp) {
    Quality *q = stp;
    ui_loader_free(q->loader);
    store_agreement_report_free(q->rep);
    free(q);
}

/* Blind rating: every annotator's numbers are the reviewers' (src/data/trust.h). Sets or clears
 * q->denied; returns 1 when the screen may show them. */
static int may_show(Quality *q, App *app) {
    Err err = {0};
    q->denied[0] = '\0';
    if (!trust_require_review(app_store(app), identity_login(), "the Quality screen", &err))
        return 1;
    snprintf(q->denied, sizeof q->denied, "%s", err.msg);
    store_agreement_report_free(q->rep);
    q->rep = NULL;
    return 0;
}

static void quality_enter(void *stp, App *app) {
    Quality *q = stp;
    if (may_show(q, app))
        reload(q);
    q->loaded_at = base_now(); /* the app redraws after enter */
}

static int quality_tick(void *stp, App *app, double now) {
    Quality *q = stp;
    if (q->denied[0]) { /* the owner may turn blind rating off or grant the role meanwhile */
        if (now - q->loaded_at < RELOAD_SECONDS)
            return SCREEN_TICK_SAME;
        q->loaded_at = now;
        if (may_show(q, app))
            reload(q);
        return SCREEN_TICK_CHANGED;
    }
    int changed = SCREEN_TICK_SAME, failed = 0;
    AgreeReport *rep = ui_loader_take(q->loader, &failed, q->err, sizeof q->err);
    if (rep) {
        q->err[0] = '\0';
        store_agreement_report_free(q->rep);
        q->rep = rep;
        if (q->aspect >= rep->n)
            q->aspect = 0;
        changed = SCREEN_TICK_CHANGED;
    } else if (failed) {
        changed = SCREEN_TICK_CHANGED;
    }
    if (now - q->loaded_at >= RELOAD_SECONDS && !ui_loader_busy(q->loader)) {
        if (may_show(q, app))
            reload(q);
        changed = SCREEN_TICK_CHANGED;
    }
    return changed;
}

static const char *rater_name(const AgreeTable *t, int r) {
    return t->rater_names && t->rater_names[r] ? t->rater_names[r] : "?";
}

static void draw_aspects(Quality *q, int y, int x, int w) {
    ui_put(y, x, w, ui_attr(UI_C_ACCENT) | A_BOLD,
           "  aspect      alpha            ICC(2,1) ICC(2,k) block     raters/img  ratings high");
    y++;
    for (int i = 0; i < q->rep->n; i++, y++) {
        const AgreeStats *s = q->rep->stats[i];
        const AgreeTable *t = q->rep->tables[i];
        char alpha[16], i1[16], ik[16], block[24], rpi[24];
        quality_vm_stat(s->alpha, alpha, sizeof alpha);
        quality_vm_stat(s->icc_2_1, i1, sizeof i1);
        quality_vm_stat(s->icc_2_k, ik, sizeof ik);
        if (s->icc_n_items > 0)
            snprintf(block, sizeof block, "%dx%d", s->icc_n_items, s->icc_k);
        else
            snprintf(block, sizeof block, "-");
        if (isnan(s->raters_mean))
            snprintf(rpi, sizeof rpi, "-");
        else
            snprintf(rpi, sizeof rpi, "%.1f (%d-%d)", s->raters_mean, s->raters_min,
                     s->raters_max);
        attr_t a = i == q->aspect ? ui_attr(UI_C_SELECT) : A_NORMAL;
        if (i == q->aspect)
            ui_fill((UiRect){y, x, 1, w}, a);
        ui_putf(y, x, w, a, "%s %-10s %5s %-10s %8s %8s %-9s %-11s %7d %4d",
                i == q->aspect ? "\xe2\x96\xb8" : " ", t->aspect ? t->aspect : "?", alpha,
                quality_vm_grade(s->alpha), i1, ik, block, rpi, s->n_ratings,
                s->n_high_disagree);
    }
}

typedef struct DisagreeRows {
    const AgreeTable *t;
    const AgreeStats *s;
} DisagreeRows;

static void disagree_row(void *user, int i, UiRect row, int selected) {
    const DisagreeRows *dr = user;
    const AgreeItem *it = &dr->s->ranked[i];
    const char *label = dr->t->item_labels && dr->t->item_labels[it->item]
                            ? dr->t->item_labels[it->item]
                            : "";
    attr_t a = selected ? ui_attr(UI_C_SELECT) : it->high ? ui_attr(UI_C_WARN) : A_NORMAL;
    if (selected)
        ui_fill(row, a);
    ui_putf(row.y, row.x, row.w, a, "%s %8lld %8d %6.2f %6.1f %6.2f  %s",
            selected ? "\xe2\x96\xb8" : " ", (long long)it->id, it->n_ratings, it->mean,
            it->range, it->sd, label);
}

static void quality_draw(void *stp, App *app, UiRect r) {
    (void)app;
    Quality *q = stp;
    int x = r.x + 1, w = r.w - 2, y = r.y, yend = r.y + r.h;
    if (q->denied[0]) { /* wrapped at spaces */
        const char *m = q->denied;
        for (y++; *m && y < yend && w > 8; y++) {
            int n = (int)strlen(m);
            if (n > w) {
                n = w;
                while (n > w / 2 && m[n] != ' ')
                    n--;
            }
            ui_putf(y, x, w, ui_attr(UI_C_BAD), "%.*s", n, m);
            m += n;
            while (*m == ' ')
                m++;
        }
        return;
    }
    if (!q->rep) {
        if (q->err[0])
            ui_put(y + 1, x, w, ui_attr(UI_C_BAD), q->err);
        else
            ui_put(y + 1, x, w, ui_attr(UI_C_DIM), "computing agreement\xe2\x80\xa6");
        return;
    }
    int any = 0;
    for (int i = 0; i < q->rep->n; i++)
        any |= q->rep->stats[i]->n_ratings > 0;
    if (!any) {
        ui_put(y + 1, x, w, A_NORMAL,
               "No ratings yet: agreement needs images rated by two or more annotators.");
        return;
    }
    ui_putf(y, x, w, ui_attr(UI_C_DIM),
            "Krippendorff's alpha (interval) and ICC over current ratings; high = range >= 3%s",
            ui_loader_busy(q->loader) ? "  (updating\xe2\x80\xa6)" : "");
    y++;
    draw_aspects(q, y, x, w);
    y += q->rep->n + 2;

    const AgreeTable *t = q->rep->tables[q->aspect];
    const AgreeStats *s = q->rep->stats[q->aspect];
    int n_ann = s->n_raters;
    int rows_left = yend - y;
    int ann_rows = n_ann < rows_left / 3 ? n_ann : rows_left / 3;
    if (ann_rows < 1)
        ann_rows = n_ann > 0 ? 1 : 0;
    ui_putf(y, x, w, ui_attr(UI_C_ACCENT) | A_BOLD,
            "annotators (%s)      ratings  shared  mean offset  mean |offset|",
            t->aspect ? t->aspect : "?");
    y++;
    for (int i = 0; i < ann_rows && y < yend; i++, y++) {
        const AgreeRater *ar = &s->raters[i];
        char off[16], aoff[16];
        quality_vm_offset(ar->mean_offset, off, sizeof off);
        quality_vm_stat(ar->mean_abs_offset, aoff, sizeof aoff);
        ui_putf(y, x, w, A_NORMAL, "  %-18.18s %8d %7d  %11s  %13s", rater_name(t, ar->rater),
                ar->n_rated, ar->n_shared, off, aoff);
    }
    if (ann_rows < n_ann && y < yend) {
        ui_putf(y, x, w, ui_attr(UI_C_DIM), "  \xe2\x80\xa6 %d more (easel agreement prints all)",
                n_ann - ann_rows);
        y++;
    }
    y++;
    if (y >= yend)
        return;
    ui_putf(y, x, w, ui_attr(UI_C_ACCENT) | A_BOLD,
            "most disagreement (%s): Up/Down select, Enter opens it in Annotate",
            t->aspect ? t->aspect : "?");
    y++;
    ui_list_set_count(&q->list, s->n_ranked);
    DisagreeRows dr = {t, s};
    ui_list_draw(&q->list, (UiRect){y, x, yend - y, w},
                 "     image  ratings   mean  range     sd  path", ui_attr(UI_C_DIM),
                 disagree_row, &dr);
    if (s->n_ranked == 0 && y + 1 < yend)
        ui_put(y + 1, x, w, A_NORMAL, "  no image has two ratings of this aspect yet");
}

static int quality_key(void *stp, App *app, int ch) {
    Quality *q = stp;
    if (ch == 'r') {
        if (may_show(q, app)) {
            reload(q);
            app_status(app, "recomputing agreement\xe2\x80\xa6");
        }
        return SCREEN_KEY_HANDLED;
    }
    if (!q->rep || q->rep->n == 0)
        return SCREEN_KEY_IGNORED;
    const AgreeStats *s = q->rep->stats[q->aspect];
    ui_list_set_count(&q->list, s->n_ranked);
    int moved = ui_list_key(&q->list, ch);
    if (moved != UI_LIST_NOT_MINE)
        return ui_list_key_result(moved);
    switch (ch) {
    case KEY_LEFT:
        q->aspect = (q->aspect + q->rep->n - 1) % q->rep->n;
        q->list.sel = q->list.top = 0;
        return SCREEN_KEY_HANDLED;
    case KEY_RIGHT:
        q->aspect = (q->aspect + 1) % q->rep->n;
        q->list.sel = q->list.top = 0;
        return SCREEN_KEY_HANDLED;
    case '\n':
    case '\r':
    case KEY_ENTER: {
        if (s->n_ranked == 0)
            return SCREEN_KEY_IGNORED;
        Err err = {0};
        int64_t id = s->ranked[q->list.sel].id;
        if (app_switch(app, "Annotate", id, &err))
            app_status_error(app, "cannot open image %lld: %s", (long long)id, err.msg);
        else
            app_status(app, "reviewing image %lld: your own values only; b returns to your "
                       "queue's images", (long long)id);
        return SCREEN_KEY_HANDLED;
    }
    default:
        if (ch >= '1' && ch <= '9' && ch - '1' < q->rep->n) {
            q->aspect = ch - '1';
            q->list.sel = q->list.top = 0;
            return SCREEN_KEY_HANDLED;
        }
        return SCREEN_KEY_IGNORED;
    }
}

static const ScreenKey quality_keys[] = {
    {"Left / Right, 1-5", "select the aspect the lower tables show"},
    {"Up / Down, j / k", "select an image in the disagreement list (PgUp/PgDn, Home/End)"},
    {"Enter", "open the selected image in Annotate to review your own rating"},
    {"r", "reload now (it reloads by itself every 10 s)"},
    {NULL, NULL},
};

const ScreenClass screen_quality = {
    .name = "Quality",
    .fkey = 3,
    .keys = quality_keys,
    .init = quality_init,
    .fini = quality_fini,
    .enter = quality_enter,
    .draw = quality_draw,
    .key = quality_key,
    .tick = quality_tick,
};
