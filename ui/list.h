/* list — the one list widget of the screens (as htop's Panel): a selection, the first shown
 * row, a header line, and the keys that move the selection.
 *
 * DESIGN
 *   - The model (UiList: n items, sel, top, rows shown) is pure C: ui_list_clamp and
 *     ui_list_move need no terminal and are unit-tested (tests/ui/test_ui_list.c).
 *   - Invariant after every call: 0 <= sel < n (sel = 0 when n = 0), top <= sel < top + rows,
 *     and top is no further down than needed to fill the rows (no blank tail while items
 *     above are hidden).
 *   - ui_list_key maps a key to a move (Up/k, Down/j, PgUp, PgDn, Home, End; a page is the
 *     rows shown less one) and says what it did: UI_LIST_NOT_MINE (the screen handles the key),
 *     UI_LIST_SAME (a list key that moved nothing), UI_LIST_MOVED. It never draws: the screen
 *     returns ui_list_key_result() (SCREEN_KEY_HANDLED after a move, SCREEN_KEY_SAME when
 *     nothing moved) and the shell decides when to redraw.
 *   - An item takes item_h lines (0 or 1: one; the Annotate screen's aspects take two or
 *     three: name and bar, then the rubric). wrap = 1 makes Up on the first item select the
 *     last and Down on the last the first (a short fixed list, as the aspects); paging and
 *     Home/End never wrap. view = 1 makes a list without a selection (a text to scroll, as the
 *     help overlay): the moves scroll the rows shown, and sel is always top.
 *   - ui_list_draw draws the header (when not NULL) on the rect's first row, sets rows to
 *     the items that fit in the lines left (ui_list_layout), scrolls so that sel shows, and
 *     calls ROW for each visible item. Every list of every screen goes through it: the Jobs
 *     table, the job form's kind menu and fields, the Annotate aspects, the Quality table,
 *     the Monitor's run picker, and the app's help overlay (a view).
 */
#ifndef EASEL_UI_LIST_H
#define EASEL_UI_LIST_H

#include "screen.h"

typedef struct UiList {
    int n;    /* items */
    int sel;  /* selected item */
    int top;  /* first item shown */
    int rows; /* items shown at the last draw (0 before the first: paging moves 1) */
    int item_h; /* lines per item; 0 = 1 */
    int wrap;   /* Up/Down wrap around the ends (see DESIGN) */
    int view;   /* no selection: the moves scroll (see DESIGN) */
} UiList;

typedef enum UiListMove {
    UI_LIST_UP,
    UI_LIST_DOWN,
    UI_LIST_PAGE_UP,
    UI_LIST_PAGE_DOWN,
    UI_LIST_HOME,
    UI_LIST_END,
} UiListMove;

enum { UI_LIST_NOT_MINE = -1, UI_LIST_SAME = 0, UI_LIST_MOVED = 1 };

/* Set the item count (after a reload) and restore the invariant. */
void ui_list_set_count(UiList *l, int n);
/* Restore the invariant (after sel, n or rows changed). */
void ui_list_clamp(UiList *l);
/* Move the selection. Returns UI_LIST_MOVED or UI_LIST_SAME. */
int ui_list_move(UiList *l, UiListMove m);
/* The key CH as a list move (see DESIGN). */
int ui_list_key(UiList *l, int ch);
/* What a screen's key handler returns for a list key that did R (UI_LIST_MOVED or
 * UI_LIST_SAME): SCREEN_KEY_HANDLED or SCREEN_KEY_SAME. */
static inline int ui_list_key_result(int r) {
    return r == UI_LIST_MOVED ? SCREEN_KEY_HANDLED : SCREEN_KEY_SAME;
}
/* Set rows to the items that fit in LINES lines (item_h each) and restore the invariant. */
void ui_list_layout(UiList *l, int lines);
/* 1 when items are hidden above / below the visible ones (for "more" marks). */
int ui_list_more_above(const UiList *l);
int ui_list_more_below(const UiList *l);

/* Draw a row: item I in ROW (item_h lines); SELECTED when it is the selection. */
typedef void (*UiListRow)(void *user, int i, UiRect row, int selected);
/* Draw HEADER (NULL: none) in HEADER_ATTR, then the visible items through ROW. */
void ui_list_draw(UiList *l, UiRect r, const char *header, attr_t header_attr, UiListRow row,
                  void *user);

#endif
