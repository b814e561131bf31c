/* screen_ab — the A/B screen (issue 16, ab16): blind judging of an A/B set (src/store/
 * store_ab.h), e.g. a tune-eval run's base model vs adapter images of one prompt and seed.
 *
 * One item at a time: the prompt, the two images side by side (img_pane: sixel, or the block
 * fallback), and the aspect list as the rating screen shows it plus one "overall" row, each
 * with this annotator's choice. 1 = left, 2 = right, 0 = tie on the selected row (saved at
 * once; the selection moves down), Up/Down choose the row, n / Right / Enter the next item,
 * p / Left the previous, u the next item not fully judged, s the next set. The header says
 * "item 12 / 40" and how many items this annotator has judged. Nothing on the screen says
 * which side is the adapter's: no paths, no image ids (an image that cannot be shown says
 * only that), and the store's view (StoreAbView) does not carry it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "base.h"
#include "gfx.h"
#include "img_pane.h"
#include "screen.h"
#include "store_ab.h"
#include "store_catalog.h"

typedef struct AbScreen {
    App *app;
    int64_t annotator;         /* -1: not in the store yet (added at the first judgement) */
    StoreAbSet set;            /* id 0: none loaded */
    StoreAbView *items;
    size_t n;
    char **rows;               /* the aspects' names, then "" (overall) */
    char **rubrics;
    size_t n_rows;
    StoreAbChoice *mine;       /* n * n_rows: this annotator's choices */
    size_t cur;                /* the item shown */
    size_t sel;                /* the selected row */
    double shown_at;           /* when the item was shown (seconds spent) */
    double next_reload;        /* when there is no set: look again */
    ImgPane left, right;
    GfxCache *cache;
} AbScreen;

static void wake_app(void *app) { app_wake(app); }

static void unload(AbScreen *s) {
    store_ab_views_free(s->items, s->n);
    s->items = NULL;
    s->n = 0;
    free(s->mine);
    s->mine = NULL;
    store_ab_set_deinit(&s->set);
    img_pane_clear(&s->left);
    img_pane_clear(&s->right);
}

static size_t judged_rows(const AbScreen *s, size_t item) {
    size_t k = 0;
    for (size_t r = 0; r < s->n_rows; r++)
        k += s->mine[item * s->n_rows + r] != STORE_AB_NONE;
    return k;
}

static void show_item(AbScreen *s, size_t i) {
    s->cur = i;
    s->sel = 0;
    s->shown_at = base_now();
    if (i < s->n) {
        img_pane_set(&s->left, s->items[i].left_image, s->items[i].left_path);
        img_pane_set(&s->right, s->items[i].right_image, s->items[i].right_path);
    }
}

/* Load set NAME (NULL: the newest) with this annotator's judgements; start at the first item
 * not fully judged. 0, or an error (the status line says it). */
static int load(AbScreen *s, const char *name, Err *err) {
    Store *st = app_store(s->app);
    unload(s);
    int rc;
    if (name) {
        rc = store_ab_set_find(st, name, &s->set, err);
    } else {
        StoreAbSet *v = NULL;
        size_t nv = 0;
        if ((rc = store_ab_sets_list(st, &v, &nv, err)))
            return rc;
        if (nv == 0) {
            store_ab_sets_free(v, nv);
            return 0;
        }
        s->set = v[0];
        memset(&v[0], 0, sizeof v[0]);
        store_ab_sets_free(v, nv);
    }
    if (rc)
        return rc;
    StoreAbJudgement *j = NULL;
    size_t nj = 0;
    if ((rc = store_ab_views(st, s->set.id, &s->items, &s->n, err)) ||
        (rc = store_ab_judgements(st, s->set.id, s->annotator, &j, &nj, err))) {
        unload(s);
        return rc;
    }
    s->mine = xcalloc(s->n * s->n_rows + 1, sizeof *s->mine);
    for (size_t k = 0; k < nj; k++) {
        size_t item = 0, row = 0;
        while (item < s->n && s->items[item].item_id != j[k].item_id)
            item++;
        while (row < s->n_rows && strcmp(s->rows[row], j[k].aspect) != 0)
            row++;
        if (item < s->n && row < s->n_rows)
            s->mine[item * s->n_rows + row] = j[k].choice;
    }
    store_ab_judgements_free(j, nj);
    size_t first = 0;
    while (first < s->n && judged_rows(s, first) == s->n_rows)
        first++;
    show_item(s, first < s->n ? first : 0);
    return 0;
}

static void *ab_init(App *app, Err *err) {
    AbScreen *s = xcalloc(1, sizeof *s);
    s->app = app;
    Store *st = app_store(app);
    StoreAspect *a = NULL;
    size_t na = 0;
    Err e0 = {0};
    int frc = store_annotator_find(st, app_annotator(app), &s->annotator, &e0);
    if (frc == ERR_NOTFOUND)
        s->annotator = -1;
    if ((frc && frc != ERR_NOTFOUND && err_pass(err, &e0, frc)) ||
        store_aspects_list(st, &a, &na, err)) {
        free(s);
        return NULL;
    }
    s->n_rows = na + 1;
    s->rows = xcalloc(s->n_rows, sizeof *s->rows);
    s->rubrics = xcalloc(s->n_rows, sizeof *s->rubrics);
    for (size_t i = 0; i < na; i++) {
        s->rows[i] = xstrdup(a[i].name);
        s->rubrics[i] = xstrdup(a[i].rubric);
    }
    s->rows[na] = xstrdup("");
    s->rubrics[na] = xstrdup("your one overall choice: which image is better as a whole");
    store_aspects_free(a, na);
    if (app_gfx_mode(app) != GFX_NONE) {
        s->cache = gfx_cache_new(app_gfx_mode(app), app_gfx_caps(app), 8, wake_app, app);
        s->left.cache = s->right.cache = s->cache;
    }
    Err e = {0};
    const char *want = app_config(app)->ab_set;
    if (load(s, want, &e))
        app_status_error(app, "A/B: %s", e.msg);
    return s;
}

static void ab_fini(void *p) {
    AbScreen *s = p;
    unload(s);
    for (size_t i = 0; i < s->n_rows; i++) {
        free(s->rows[i]);
        free(s->rubrics[i]);
    }
    free(s->rows);
    free(s->rubrics);
    img_pane_deinit(&s->left);
    img_pane_deinit(&s->right);
    gfx_cache_free(s->cache);
    free(s);
}

static void ab_enter(void *p, App *app) {
    AbScreen *s = p;
    (void)app;
    s->shown_at = base_now();
}

static size_t items_judged(const AbScreen *s) {
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++)
        k += judged_rows(s, i) > 0;
    return k;
}

static const char *choice_label(StoreAbChoice c) {
    switch (c) {
    case STORE_AB_LEFT:
        return "<< left";
    case STORE_AB_RIGHT:
        return "right >>";
    case STORE_AB_TIE:
        return "= tie";
    default:
        return "-";
    }
}

/* An image in BOX; a failure says only that it cannot be shown (its message names the path,
 * which would tell the sides apart). */
static void draw_image(ImgPane *pane, UiRect box) {
    img_pane_draw(pane, box);
    if (pane->box.h > 0 && pane->state == GFX_FAILED) {
        int y = box.y + box.h / 2 - 1;
        ui_fill((UiRect){y, box.x, 1, box.w}, ui_attr(UI_C_NORMAL));
        ui_put(y, box.x, box.w, ui_attr(UI_C_WARN), "this image cannot be shown");
    }
}

static void ab_draw(void *p, App *app, UiRect r) {
    AbScreen *s = p;
    img_pane_begin(&s->left);
    img_pane_begin(&s->right);
    if (r.h < 8 || r.w < 40) {
        ui_put(r.y, r.x, r.w, ui_attr(UI_C_WARN), "terminal too small for the A/B screen");
        return;
    }
    if (!s->set.id || s->n == 0) {
        ui_put(r.y + 1, r.x + 2, r.w - 4, ui_attr(UI_C_ACCENT), "A/B: no A/B set to judge");
        ui_put(r.y + 3, r.x + 2, r.w - 4, ui_attr(UI_C_DIM),
               "make one with 'easel ab add NAME --from-eval RUN', or 'easel tune-eval ... "
               "--ab NAME'");
        return;
    }
    const StoreAbView *it = &s->items[s->cur];
    ui_putf(r.y, r.x + 1, r.w - 2, ui_attr(UI_C_ACCENT),
            "A/B: %s   item %zu / %zu   judged %zu / %zu", s->set.name, s->cur + 1, s->n,
            items_judged(s), s->n);
    ui_putf(r.y + 1, r.x + 1, r.w - 2, ui_attr(UI_C_NORMAL), "prompt: %s", it->prompt);
    int list_h = (int)s->n_rows + 1;
    int img_h = r.h - 2 - list_h - 1;
    int half = (r.w - 1) / 2;
    if (img_h >= 4) {
        const GfxCaps *caps = app_gfx_caps(app);
        int rows = img_h - 2;
        int cols = caps && caps->cell_w > 0 ? rows * caps->cell_h / caps->cell_w : 2 * rows;
        if (cols > half - 2)
            cols = half - 2;
        UiRect lb = {r.y + 2, r.x, img_h, half};
        UiRect rb = {r.y + 2, r.x + half + 1, img_h, half};
        ui_box(lb, ui_attr(UI_C_DIM), "left (1)");
        ui_box(rb, ui_attr(UI_C_DIM), "right (2)");
        int off = (half - 2 - cols) / 2;
        draw_image(&s->left, (UiRect){lb.y + 1, lb.x + 1 + off, rows, cols});
        draw_image(&s->right, (UiRect){rb.y + 1, rb.x + 1 + off, rows, cols});
        if (s->cache && s->cur + 1 < s->n) { /* the next item's, rendered meanwhile */
            const StoreAbView *nx = &s->items[s->cur + 1];
            gfx_cache_prefetch(s->cache, nx->left_image, nx->left_path, cols, rows);
            gfx_cache_prefetch(s->cache, nx->right_image, nx->right_path, cols, rows);
        }
    }
    int y = r.y + 2 + (img_h >= 4 ? img_h : 0);
    for (size_t i = 0; i < s->n_rows && y < r.y + r.h - 1; i++, y++) {
        int selected = i == s->sel;
        attr_t a = selected ? ui_attr(UI_C_SELECT) : ui_attr(UI_C_NORMAL);
        if (selected)
            ui_fill((UiRect){y, r.x, 1, r.w}, a);
        StoreAbChoice c = s->mine[s->cur * s->n_rows + i];
        ui_putf(y, r.x + 1, r.w - 2, a, "%s %-10s %-9s %s", selected ? ">" : " ",
                s->rows[i][0] ? s->rows[i] : "overall", choice_label(c), s->rubrics[i]);
    }
    ui_put(r.y + r.h - 1, r.x + 1, r.w - 2, ui_attr(UI_C_DIM),
           "1 left  2 right  0 tie  Up/Down aspect  n/Enter next  p previous  u next unjudged  "
           "s next set  ? help");
}

static int ab_after_refresh(void *p, App *app, int full) {
    AbScreen *s = p;
    int a = img_pane_after_refresh(&s->left, app, full);
    int b = img_pane_after_refresh(&s->right, app, full);
    return a == SCREEN_TICK_CHANGED || b == SCREEN_TICK_CHANGED ? SCREEN_TICK_CHANGED
                                                                 : SCREEN_TICK_SAME;
}

static int ab_tick(void *p, App *app, double now) {
    AbScreen *s = p;
    if (!s->set.id && now >= s->next_reload) { /* a set may have been made since */
        s->next_reload = now + 2;
        Err e = {0};
        if (load(s, app_config(app)->ab_set, &e) == 0 && s->set.id)
            return SCREEN_TICK_CHANGED;
    }
    return img_pane_tick(&s->left) || img_pane_tick(&s->right) ? SCREEN_TICK_CHANGED
                                                                 : SCREEN_TICK_SAME;
}

static int judge(AbScreen *s, App *app, StoreAbChoice c) {
    Err e = {0};
    const StoreAbView *it = &s->items[s->cur];
    int rc = s->annotator > 0 ? 0 : store_annotator_ensure(app_store(app), app_annotator(app),
                                                          &s->annotator, &e);
    if (rc == 0)
        rc = store_ab_judge(app_store(app), it->item_id, s->annotator, s->rows[s->sel], c,
                            base_now() - s->shown_at, &e);
    if (rc == ERR_BUSY) {
        app_status_error(app, "not saved: another process is writing to the store; press the "
                              "key again");
        return SCREEN_KEY_HANDLED;
    }
    if (rc) {
        app_status_error(app, "not saved: %s", e.msg);
        return SCREEN_KEY_HANDLED;
    }
    s->mine[s->cur * s->n_rows + s->sel] = c;
    if (s->sel + 1 < s->n_rows)
        s->sel++;
    else if (judged_rows(s, s->cur) == s->n_rows)
        app_status(app, "item %zu judged: n for the next", s->cur + 1);
    return SCREEN_KEY_HANDLED;
}

static int ab_key(void *p, App *app, int ch) {
    AbScreen *s = p;
    if (ch == 's') { /* the next set (wraps) */
        StoreAbSet *v = NULL;
        size_t nv = 0;
        Err e = {0};
        if (store_ab_sets_list(app_store(app), &v, &nv, &e)) {
            app_status_error(app, "A/B: %s", e.msg);
            return SCREEN_KEY_HANDLED;
        }
        if (nv == 0) {
            store_ab_sets_free(v, nv);
            return SCREEN_KEY_SAME;
        }
        size_t k = 0;
        while (k < nv && v[k].id != s->set.id)
            k++;
        char *name = xstrdup(v[k < nv ? (k + 1) % nv : 0].name);
        store_ab_sets_free(v, nv);
        if (load(s, name, &e))
            app_status_error(app, "A/B: %s", e.msg);
        else
            app_status(app, "A/B set %s", name);
        free(name);
        return SCREEN_KEY_HANDLED;
    }
    if (!s->set.id || s->n == 0)
        return SCREEN_KEY_IGNORED;
    switch (ch) {
    case '1':
        return judge(s, app, STORE_AB_LEFT);
    case '2':
        return judge(s, app, STORE_AB_RIGHT);
    case '0':
        return judge(s, app, STORE_AB_TIE);
    case KEY_UP:
    case 'k':
        if (s->sel == 0)
            return SCREEN_KEY_SAME;
        s->sel--;
        return SCREEN_KEY_HANDLED;
    case KEY_DOWN:
    case 'j':
        if (s->sel + 1 >= s->n_rows)
            return SCREEN_KEY_SAME;
        s->sel++;
        return SCREEN_KEY_HANDLED;
    case 'n':
    case KEY_RIGHT:
    case '\n':
    case KEY_ENTER:
        if (s->cur + 1 >= s->n) {
            app_status(app, "the last item (%zu / %zu)", s->n, s->n);
            return SCREEN_KEY_HANDLED;
        }
        show_item(s, s->cur + 1);
        return SCREEN_KEY_HANDLED;
    case 'p':
    case KEY_LEFT:
        if (s->cur == 0)
            return SCREEN_KEY_SAME;
        show_item(s, s->cur - 1);
        return SCREEN_KEY_HANDLED;
    case 'u': {
        for (size_t k = 1; k <= s->n; k++) {
            size_t i = (s->cur + k) % s->n;
            if (judged_rows(s, i) < s->n_rows) {
                show_item(s, i);
                return SCREEN_KEY_HANDLED;
            }
        }
        app_status(app, "every item of %s is judged", s->set.name);
        return SCREEN_KEY_HANDLED;
    }
    default:
        return SCREEN_KEY_IGNORED;
    }
}

static const ScreenKey ab_keys[] = {
    {"1 / 2 / 0", "the selected aspect: left image better / right image better / tie (saved at "
                  "once; moves to the next aspect)"},
    {"Up / Down, k / j", "select an aspect, or the overall row"},
    {"n, Right, Enter", "the next item"},
    {"p, Left", "the previous item"},
    {"u", "the next item you have not fully judged"},
    {"s", "the next A/B set"},
    {NULL, NULL},
};

const ScreenClass screen_ab = {
    .name = "A/B",
    .fkey = 7,
    .keys = ab_keys,
    .init = ab_init,
    .fini = ab_fini,
    .enter = ab_enter,
    .draw = ab_draw,
    .after_refresh = ab_after_refresh,
    .key = ab_key,
    .tick = ab_tick,
};
