/* Tests for ui/list.c: the list widget's selection and scrolling model (no terminal). */
#include <criterion/criterion.h>

#include "list.h"

/* The invariant of list.h's DESIGN. */
static void check(const UiList *l) {
    if (l->n == 0) {
        cr_assert_eq(l->sel, 0);
        cr_assert_eq(l->top, 0);
        return;
    }
    int rows = l->rows > 0 ? l->rows : 1;
    cr_assert(l->sel >= 0 && l->sel < l->n, "sel %d of %d", l->sel, l->n);
    cr_assert(l->top <= l->sel && l->sel < l->top + rows, "sel %d, top %d, rows %d", l->sel,
              l->top, rows);
    cr_assert(l->top >= 0 && l->top <= (l->n > rows ? l->n - rows : 0), "top %d", l->top);
}

Test(ui_list, clamp_keeps_the_selection_visible) {
    UiList l = {.n = 100, .rows = 10};
    ui_list_clamp(&l);
    cr_assert_eq(l.top, 0);
    l.sel = 15;
    ui_list_clamp(&l);
    cr_assert_eq(l.top, 6, "selection on the last visible row");
    l.sel = 3;
    ui_list_clamp(&l);
    cr_assert_eq(l.top, 3);
    l.sel = 500;
    ui_list_clamp(&l);
    cr_assert_eq(l.sel, 99);
    cr_assert_eq(l.top, 90);
    l.sel = -4;
    ui_list_clamp(&l);
    cr_assert_eq(l.sel, 0);
    cr_assert_eq(l.top, 0);
    l = (UiList){.n = 3, .rows = 10, .sel = 5, .top = 7};
    ui_list_clamp(&l);
    cr_assert_eq(l.sel, 2);
    cr_assert_eq(l.top, 0, "a short list never scrolls");
    ui_list_set_count(&l, 0);
    cr_assert_eq(l.sel, 0);
    cr_assert_eq(l.top, 0);
}

Test(ui_list, moves_say_what_they_did) {
    UiList l = {.n = 25, .rows = 10};
    cr_assert_eq(ui_list_move(&l, UI_LIST_UP), UI_LIST_SAME, "already at the top");
    cr_assert_eq(ui_list_move(&l, UI_LIST_DOWN), UI_LIST_MOVED);
    cr_assert_eq(l.sel, 1);
    cr_assert_eq(ui_list_move(&l, UI_LIST_PAGE_DOWN), UI_LIST_MOVED);
    cr_assert_eq(l.sel, 10, "a page is the rows shown less one");
    check(&l);
    cr_assert_eq(ui_list_move(&l, UI_LIST_END), UI_LIST_MOVED);
    cr_assert_eq(l.sel, 24);
    cr_assert_eq(l.top, 15);
    cr_assert_eq(ui_list_move(&l, UI_LIST_DOWN), UI_LIST_SAME, "already at the end");
    cr_assert_eq(ui_list_move(&l, UI_LIST_PAGE_UP), UI_LIST_MOVED);
    cr_assert_eq(l.sel, 15);
    cr_assert_eq(ui_list_move(&l, UI_LIST_HOME), UI_LIST_MOVED);
    cr_assert_eq(l.sel, 0);
    cr_assert_eq(l.top, 0);
    UiList empty = {0};
    for (int m = UI_LIST_UP; m <= UI_LIST_END; m++) {
        cr_assert_eq(ui_list_move(&empty, (UiListMove)m), UI_LIST_SAME);
        check(&empty);
    }
}

Test(ui_list, keys_map_to_moves_and_others_are_not_the_lists) {
    UiList l = {.n = 5, .rows = 3};
    cr_assert_eq(ui_list_key(&l, KEY_DOWN), UI_LIST_MOVED);
    cr_assert_eq(ui_list_key(&l, 'j'), UI_LIST_MOVED);
    cr_assert_eq(l.sel, 2);
    cr_assert_eq(ui_list_key(&l, 'k'), UI_LIST_MOVED);
    cr_assert_eq(ui_list_key(&l, KEY_END), UI_LIST_MOVED);
    cr_assert_eq(l.sel, 4);
    cr_assert_eq(ui_list_key(&l, KEY_NPAGE), UI_LIST_SAME);
    cr_assert_eq(ui_list_key(&l, KEY_HOME), UI_LIST_MOVED);
    cr_assert_eq(ui_list_key(&l, KEY_PPAGE), UI_LIST_SAME);
    cr_assert_eq(ui_list_key(&l, 'a'), UI_LIST_NOT_MINE);
    cr_assert_eq(ui_list_key(&l, '\n'), UI_LIST_NOT_MINE);
    cr_assert_eq(l.sel, 0, "a key that is not the list's moves nothing");
}

Test(ui_list, every_move_from_every_state_keeps_the_invariant) {
    for (int n = 0; n <= 7; n++)
        for (int rows = 0; rows <= 4; rows++)
            for (int sel = -1; sel <= n + 1; sel++)
                for (int m = UI_LIST_UP; m <= UI_LIST_END; m++) {
                    UiList l = {.n = n, .rows = rows, .sel = sel, .top = sel / 2};
                    ui_list_move(&l, (UiListMove)m);
                    check(&l);
                }
}

Test(ui_list, a_wrapping_list_goes_round_on_up_and_down_only) {
    UiList l = {.n = 5, .rows = 5, .wrap = 1};
    cr_assert_eq(ui_list_move(&l, UI_LIST_UP), UI_LIST_MOVED, "Up on the first: the last");
    cr_assert_eq(l.sel, 4);
    cr_assert_eq(ui_list_move(&l, UI_LIST_DOWN), UI_LIST_MOVED, "Down on the last: the first");
    cr_assert_eq(l.sel, 0);
    cr_assert_eq(ui_list_move(&l, UI_LIST_PAGE_UP), UI_LIST_SAME, "paging never wraps");
    cr_assert_eq(ui_list_move(&l, UI_LIST_END), UI_LIST_MOVED);
    cr_assert_eq(ui_list_move(&l, UI_LIST_PAGE_DOWN), UI_LIST_SAME);
    cr_assert_eq(ui_list_move(&l, UI_LIST_END), UI_LIST_SAME);
    UiList one = {.n = 1, .wrap = 1};
    cr_assert_eq(ui_list_move(&one, UI_LIST_DOWN), UI_LIST_SAME, "one item: nowhere to go");
    UiList none = {.n = 0, .wrap = 1};
    ui_list_move(&none, UI_LIST_UP);
    check(&none);
}

Test(ui_list, items_of_several_lines_fit_fewer_rows_and_scroll) {
    UiList l = {.n = 5, .item_h = 3};
    ui_list_layout(&l, 10);
    cr_assert_eq(l.rows, 3, "three items of three lines fit in ten");
    cr_assert_not(ui_list_more_above(&l));
    cr_assert(ui_list_more_below(&l));
    cr_assert_eq(ui_list_move(&l, UI_LIST_END), UI_LIST_MOVED);
    cr_assert_eq(l.top, 2, "the last item shows");
    cr_assert(ui_list_more_above(&l));
    cr_assert_not(ui_list_more_below(&l));
    check(&l);
    ui_list_layout(&l, 15);
    cr_assert_eq(l.rows, 5);
    cr_assert_eq(l.top, 0, "everything fits: no blank tail, nothing hidden");
    cr_assert_not(ui_list_more_above(&l));
    ui_list_layout(&l, 2);
    cr_assert_eq(l.rows, 0, "not one item fits");
    cr_assert_eq(l.sel, 4, "the selection stays");
}

Test(ui_list, a_view_scrolls_its_rows_without_a_selection) {
    UiList l = {.n = 30, .rows = 10, .view = 1};
    cr_assert_eq(ui_list_move(&l, UI_LIST_UP), UI_LIST_SAME, "already at the top");
    cr_assert_eq(ui_list_move(&l, UI_LIST_DOWN), UI_LIST_MOVED);
    cr_assert_eq(l.top, 1, "Down scrolls one row at once (no selection to walk down first)");
    cr_assert_eq(ui_list_move(&l, UI_LIST_PAGE_DOWN), UI_LIST_MOVED);
    cr_assert_eq(l.top, 10);
    cr_assert_eq(ui_list_move(&l, UI_LIST_END), UI_LIST_MOVED);
    cr_assert_eq(l.top, 20, "the last row at the bottom");
    cr_assert_eq(ui_list_move(&l, UI_LIST_DOWN), UI_LIST_SAME, "nothing below");
    cr_assert_eq(l.top, 20);
    check(&l);
    cr_assert_eq(ui_list_move(&l, UI_LIST_HOME), UI_LIST_MOVED);
    cr_assert_eq(l.top, 0);
    cr_assert_eq(l.sel, l.top);
    UiList shorter = {.n = 4, .rows = 10, .view = 1};
    cr_assert_eq(ui_list_move(&shorter, UI_LIST_END), UI_LIST_SAME, "all of it shows");
}
