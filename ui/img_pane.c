/* img_pane — one image in a box of a screen. See img_pane.h. */
#include "img_pane.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"

void img_pane_set(ImgPane *p, int64_t key, const char *path) {
    if (!key || !path) {
        img_pane_clear(p);
        return;
    }
    if (p->image == key && p->path && strcmp(p->path, path) == 0)
        return;
    free(p->path);
    p->path = xstrdup(path);
    p->image = key;
}

void img_pane_clear(ImgPane *p) {
    p->image = 0;
    free(p->path);
    p->path = NULL;
}

void img_pane_begin(ImgPane *p) { p->box = (UiRect){0}; }

void img_pane_draw(ImgPane *p, UiRect box) {
    p->box = (UiRect){0};
    if (!p->cache || !p->image || box.h < 1 || box.w < 1)
        return;
    p->box = box;
    const GfxFrame *f = NULL;
    p->state = gfx_cache_get(p->cache, p->image, p->path, box.w, box.h, &f, p->msg,
                             sizeof p->msg);
    gfx_cache_release(p->cache, f);
    if (p->state == GFX_READY)
        return; /* after_refresh writes it; the cells stay blank for ncurses */
    int y = box.y + box.h / 2 - 1;
    if (p->state == GFX_FAILED)
        ui_put(y, box.x, box.w, ui_attr(UI_C_WARN), p->msg);
    else
        ui_put(y, box.x, box.w, ui_attr(UI_C_DIM), "loading image\xe2\x80\xa6");
}

static int rect_eq(UiRect a, UiRect b) {
    return a.y == b.y && a.x == b.x && a.h == b.h && a.w == b.w;
}

int img_pane_after_refresh(ImgPane *p, App *app, int full) {
    if (full)
        p->term_image = 0; /* the terminal was cleared */
    int shown = p->box.h > 0;
    if (p->term_image && (!shown || !rect_eq(p->term_box, p->box))) {
        p->term_image = 0; /* its box is gone or moved: clear, draw again */
        app_clear_terminal(app);
        return SCREEN_TICK_CHANGED;
    }
    if (!shown || (p->term_image == p->image && rect_eq(p->term_box, p->box)))
        return SCREEN_TICK_SAME;
    const GfxFrame *f = NULL;
    GfxState st = gfx_cache_get(p->cache, p->image, p->path, p->box.w, p->box.h, &f, p->msg,
                                sizeof p->msg);
    if (st != GFX_READY)
        return st == p->state ? SCREEN_TICK_SAME : SCREEN_TICK_CHANGED;
    if (p->state != GFX_READY) { /* ready since draw: draw the blank box first */
        gfx_cache_release(p->cache, f);
        return SCREEN_TICK_CHANGED;
    }
    char head[48];
    int n = snprintf(head, sizeof head, "\0337\033[%d;%dH", p->box.y + 1, p->box.x + 1);
    app_term_write(app, head, (size_t)n);
    app_term_write(app, f->data, f->len);
    app_term_write(app, "\0338", 2);
    gfx_cache_release(p->cache, f);
    p->term_image = p->image;
    p->term_box = p->box;
    return SCREEN_TICK_SAME;
}

int img_pane_tick(ImgPane *p) {
    if (!p->cache || p->box.h <= 0 || !p->image || !p->path || p->term_image == p->image)
        return 0;
    const GfxFrame *f = NULL;
    char msg[sizeof p->msg];
    GfxState st = gfx_cache_get(p->cache, p->image, p->path, p->box.w, p->box.h, &f, msg,
                                sizeof msg);
    gfx_cache_release(p->cache, f);
    return st != p->state;
}

void img_pane_deinit(ImgPane *p) {
    if (p)
        img_pane_clear(p);
}
