/* img_pane — one image in a box of a screen, written once: the Jobs screen's preview of a
 * generate job and the Monitor's sample of a tune run.
 *
 * While the screen draws, img_pane_draw asks gfx_cache for the frame of the image in the box
 * (never blocking) and leaves the cells blank when it is ready, else says "loading image…"
 * or why it failed; after ncurses' refresh, img_pane_after_refresh writes the frame there
 * (ESC 7, cursor move, frame, ESC 8: terminal-graphics.md pitfalls 1–3), again after a full
 * clear, and when the box went away or moved with no frame to cover the old one, asks that
 * the next frame clear the terminal. A frame covers its whole box, so a new image in the same
 * box needs no clear. img_pane_tick says when the frame got ready since the draw (a screen
 * whose tick otherwise says "same" returns changed then).
 *
 * Threads: the UI thread only (as gfx_cache_*).
 */
#ifndef EASEL_IMG_PANE_H
#define EASEL_IMG_PANE_H

#include <stdint.h>

#include "gfx.h"
#include "screen.h"

typedef struct ImgPane {
    GfxCache *cache;       /* NULL: --graphics none (nothing is ever shown) */
    int64_t image;         /* the image's key (a store id); 0 = nothing to show */
    char *path;            /* its file; owned */
    UiRect box;            /* its cells in the frame just drawn; h == 0: no box */
    GfxState state;        /* of image in box when drawn */
    char msg[256];         /* why it cannot be shown (GFX_FAILED) */
    int64_t term_image;    /* what the terminal shows (0 = nothing) and where */
    UiRect term_box;
} ImgPane;

/* Show image KEY from PATH (copied) from the next draw on; KEY 0 or PATH NULL: nothing. */
void img_pane_set(ImgPane *p, int64_t key, const char *path);
/* Nothing to show (the box goes at the next draw). */
void img_pane_clear(ImgPane *p);
/* At the start of every draw: no box unless img_pane_draw places one. */
void img_pane_begin(ImgPane *p);
/* Place the image in BOX (cells) of this frame and ask for its frame. */
void img_pane_draw(ImgPane *p, UiRect box);
/* ScreenClass.after_refresh's work for the pane: SCREEN_TICK_CHANGED / _SAME. */
int img_pane_after_refresh(ImgPane *p, App *app, int full);
/* 1 when the frame of the image placed at the last draw changed state since (got ready). */
int img_pane_tick(ImgPane *p);
/* Frees the path (not the cache, the screen's). */
void img_pane_deinit(ImgPane *p);

#endif
