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
 *     returns SCREEN_KEY_HANDLED and the shell decides when to redraw.
 *   - ui_list_draw draws the header (when not NULL) on the rect's first row, sets rows to
 *     the lines left, scrolls so that sel shows, and calls ROW for each visible item.
 */
#ifndef EASEL_UI_LIST_H
#define EASEL_UI_LIST_H

#include "screen.h"

typedef struct UiList {
    int n;    /* items */
    int sel;  /* selected item */
    int top;  /* first item shown */
    int rows; /* item rows shown at the last draw (0 before the first: paging moves 1) */
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

/* Draw a row: item I in ROW (one line); SELECTED when it is the selection. */
typedef void (*UiListRow)(void *user, int i, UiRect row, int selected);
/* Draw HEADER (NULL: none) in HEADER_ATTR, then the visible items through ROW. */
void ui_list_draw(UiList *l, UiRect r, const char *header, attr_t header_attr, UiListRow row,
                  void *user);

#endif
