/* list — see list.h. */
#include "list.h"

void ui_list_clamp(UiList *l) {
    if (l->n <= 0) {
        l->n = 0;
        l->sel = l->top = 0;
        return;
    }
    if (l->sel < 0)
        l->sel = 0;
    if (l->sel > l->n - 1)
        l->sel = l->n - 1;
    int rows = l->rows > 0 ? l->rows : 1;
    if (l->top > l->sel)
        l->top = l->sel;
    if (l->sel >= l->top + rows)
        l->top = l->sel - rows + 1;
    if (l->top > l->n - rows)
        l->top = l->n - rows;
    if (l->top < 0)
        l->top = 0;
}

void ui_list_set_count(UiList *l, int n) {
    l->n = n;
    ui_list_clamp(l);
}

/* A view: the moves scroll top; sel follows it. */
static int view_move(UiList *l, UiListMove m, int page) {
    int before = l->top, rows = l->rows > 0 ? l->rows : 1;
    switch (m) {
    case UI_LIST_UP: l->top--; break;
    case UI_LIST_DOWN: l->top++; break;
    case UI_LIST_PAGE_UP: l->top -= page; break;
    case UI_LIST_PAGE_DOWN: l->top += page; break;
    case UI_LIST_HOME: l->top = 0; break;
    case UI_LIST_END: l->top = l->n - rows; break;
    }
    if (l->top > l->n - rows)
        l->top = l->n - rows;
    if (l->top < 0)
        l->top = 0;
    l->sel = l->top;
    ui_list_clamp(l);
    return l->top != before ? UI_LIST_MOVED : UI_LIST_SAME;
}

int ui_list_move(UiList *l, UiListMove m) {
    int before = l->sel, page = l->rows > 1 ? l->rows - 1 : 1;
    if (l->view)
        return view_move(l, m, page);
    switch (m) {
    case UI_LIST_UP: l->sel = l->wrap && l->sel == 0 ? l->n - 1 : l->sel - 1; break;
    case UI_LIST_DOWN: l->sel = l->wrap && l->sel == l->n - 1 ? 0 : l->sel + 1; break;
    case UI_LIST_PAGE_UP: l->sel -= page; break;
    case UI_LIST_PAGE_DOWN: l->sel += page; break;
    case UI_LIST_HOME: l->sel = 0; break;
    case UI_LIST_END: l->sel = l->n - 1; break;
    }
    ui_list_clamp(l);
    return l->sel != before ? UI_LIST_MOVED : UI_LIST_SAME;
}

int ui_list_key(UiList *l, int ch) {
    switch (ch) {
    case KEY_UP:
    case 'k': return ui_list_move(l, UI_LIST_UP);
    case KEY_DOWN:
    case 'j': return ui_list_move(l, UI_LIST_DOWN);
    case KEY_PPAGE: return ui_list_move(l, UI_LIST_PAGE_UP);
    case KEY_NPAGE: return ui_list_move(l, UI_LIST_PAGE_DOWN);
    case KEY_HOME: return ui_list_move(l, UI_LIST_HOME);
    case KEY_END: return ui_list_move(l, UI_LIST_END);
    default: return UI_LIST_NOT_MINE;
    }
}

void ui_list_layout(UiList *l, int lines) {
    int h = l->item_h > 1 ? l->item_h : 1;
    l->rows = lines > 0 ? lines / h : 0;
    ui_list_clamp(l);
}

int ui_list_more_above(const UiList *l) { return l->top > 0; }
int ui_list_more_below(const UiList *l) { return l->top + (l->rows > 0 ? l->rows : 1) < l->n; }

void ui_list_draw(UiList *l, UiRect r, const char *header, attr_t header_attr, UiListRow row,
                  void *user) {
    int y = r.y;
    if (header && r.h > 0) {
        ui_put(y, r.x, r.w, header_attr, header);
        y++;
    }
    int h = l->item_h > 1 ? l->item_h : 1;
    ui_list_layout(l, r.y + r.h - y);
    for (int i = 0; i < l->rows && l->top + i < l->n; i++)
        row(user, l->top + i, (UiRect){y + i * h, r.x, h, r.w}, l->top + i == l->sel);
}
