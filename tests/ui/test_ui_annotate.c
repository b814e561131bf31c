/* Tests for ui/annotate_vm.c: the Annotate keys and layout, with no terminal. */
#include <criterion/criterion.h>
#include <math.h>

#include "annotate_vm.h"

static AnnotateAction type(AnnotateVm *vm, const int *keys, int n) {
    AnnotateAction last = AVM_IGNORED;
    for (int i = 0; i < n; i++)
        last = annotate_vm_key(vm, keys[i]);
    return last;
}

Test(ui_annotate, contract_77777_enter_commits_all_sevens) {
    AnnotateVm vm;
    annotate_vm_load(&vm, NULL);
    int keys[] = {'7', '7', '7', '7', '7', AVM_KEY_ENTER};
    cr_assert_eq(type(&vm, keys, 6), AVM_COMMIT);
    for (int k = 0; k < ANNOTATE_ASPECTS; k++)
        cr_assert_eq(vm.values[k], 7.0);
}

Test(ui_annotate, digits_advance_and_t_is_ten) {
    AnnotateVm vm;
    annotate_vm_load(&vm, NULL);
    int keys[] = {'1', 't', '0'};
    type(&vm, keys, 3);
    cr_assert_eq(vm.values[0], 1.0);
    cr_assert_eq(vm.values[1], 10.0);
    cr_assert_eq(vm.values[2], 0.0);
    cr_assert(isnan(vm.values[3]));
    cr_assert_eq(vm.sel, 3);
}

Test(ui_annotate, arrows_adjust_by_half_and_clamp) {
    AnnotateVm vm;
    annotate_vm_load(&vm, NULL);
    annotate_vm_key(&vm, AVM_KEY_RIGHT); /* unset starts at 5 */
    cr_assert_eq(vm.values[0], 5.0);
    annotate_vm_key(&vm, AVM_KEY_RIGHT);
    cr_assert_eq(vm.values[0], 5.5);
    annotate_vm_select(&vm, 1); /* Down (the screen's list widget) */
    cr_assert_eq(vm.sel, 1);
    annotate_vm_key(&vm, 't');
    annotate_vm_select(&vm, 1);
    cr_assert_eq(vm.sel, 1);
    annotate_vm_key(&vm, AVM_KEY_RIGHT);
    cr_assert_eq(vm.values[1], 10.0, "clamped at 10");
    annotate_vm_select(&vm, 0);
    cr_assert_eq(vm.sel, 0);
    annotate_vm_select(&vm, ANNOTATE_ASPECTS); /* out of range: ignored */
    cr_assert_eq(vm.sel, 0);
    for (int i = 0; i < 20; i++)
        annotate_vm_key(&vm, AVM_KEY_LEFT);
    cr_assert_eq(vm.values[0], 0.0, "clamped at 0");
    annotate_vm_key(&vm, AVM_KEY_DELETE);
    cr_assert(isnan(vm.values[0]));
}

Test(ui_annotate, enter_empty_and_partial_need_confirmation) {
    AnnotateVm vm;
    annotate_vm_load(&vm, NULL);
    cr_assert_eq(annotate_vm_key(&vm, AVM_KEY_ENTER), AVM_EMPTY);
    annotate_vm_key(&vm, '4');
    cr_assert_eq(annotate_vm_key(&vm, AVM_KEY_ENTER), AVM_PARTIAL);
    cr_assert_eq(annotate_vm_key(&vm, AVM_KEY_ENTER), AVM_COMMIT);
    /* a key in between disarms */
    annotate_vm_load(&vm, NULL);
    annotate_vm_key(&vm, '4');
    cr_assert_eq(annotate_vm_key(&vm, AVM_KEY_ENTER), AVM_PARTIAL);
    annotate_vm_key(&vm, '5');
    cr_assert_eq(annotate_vm_key(&vm, AVM_KEY_ENTER), AVM_PARTIAL);
}

Test(ui_annotate, navigation_with_unsaved_changes_asks_once) {
    AnnotateVm vm;
    double stored[5] = {1, 2, 3, 4, 5};
    annotate_vm_load(&vm, stored);
    cr_assert_not(annotate_vm_dirty(&vm));
    cr_assert_eq(annotate_vm_key(&vm, 'b'), AVM_BACK, "clean: acts at once");
    annotate_vm_key(&vm, '9');
    cr_assert(annotate_vm_dirty(&vm));
    cr_assert_eq(annotate_vm_key(&vm, 's'), AVM_UNSAVED);
    cr_assert_eq(annotate_vm_key(&vm, 'n'), AVM_UNSAVED, "another key asks again");
    cr_assert_eq(annotate_vm_key(&vm, 'n'), AVM_NEXT);
    cr_assert_eq(annotate_vm_key(&vm, 'f'), AVM_FLAG, "flag keeps the edits: no question");
    cr_assert_eq(annotate_vm_key(&vm, '?'), AVM_IGNORED);
}

Test(ui_annotate, load_selects_first_unset) {
    AnnotateVm vm;
    double stored[5] = {1, 2, NAN, 4, NAN};
    annotate_vm_load(&vm, stored);
    cr_assert_eq(vm.sel, 2);
    cr_assert_eq(annotate_vm_n_set(&vm), 3);
}

Test(ui_annotate, pace) {
    double t[8] = {0};
    cr_assert_eq(annotate_vm_pace(t, 0, 1000, 1010), 0.0, "no save yet: no pace");
    /* three saves 10 s apart from the start: 3 images in 30 s = 360/h, at once */
    t[0] = 1010, t[1] = 1020, t[2] = 1030;
    cr_assert_float_eq(annotate_vm_pace(t, 3, 1000, 1031), 360.0, 1e-9);
    cr_assert_float_eq(annotate_vm_pace(t, 3, 1000, 1100), 360.0, 1e-9,
                       "between saves the pace holds");
    /* an hour-old session: saves of the last hour over that hour */
    t[0] = 1000 + 100, t[1] = 1000 + 3700, t[2] = 1000 + 4000, t[3] = 1000 + 4500;
    cr_assert_float_eq(annotate_vm_pace(t, 4, 1000, 1000 + 4600), 3.0, 1e-9);
}

Test(ui_annotate, layout_80x24_leaves_panel_and_last_row) {
    /* body of an 80x24 terminal: rows 1..22 */
    AnnotateLayout l = annotate_layout(1, 0, 22, 80, 10, 20);
    cr_assert_eq(l.img_y, 1);
    cr_assert_eq(l.img_h, 21, "one row short of the body");
    cr_assert_leq(l.img_y + l.img_h, 22, "never reaches the status line (row 23)");
    cr_assert_geq(l.side_w, ANNOTATE_SIDE_MIN - 2);
    cr_assert_eq(l.sep_x, l.img_x + l.img_w);
    cr_assert_leq(l.side_x + l.side_w, 80);
    cr_assert_gt(l.side_x, l.sep_x);
}

Test(ui_annotate, layout_wide_terminal_is_square_for_the_cell_shape) {
    AnnotateLayout l = annotate_layout(1, 0, 58, 240, 8, 16);
    cr_assert_eq(l.img_h, 57);
    cr_assert_eq(l.img_w, 114, "57 rows of 16 px = 912 px = 114 columns of 8 px");
    cr_assert_eq(l.side_w, 240 - 116);
}

Test(ui_annotate, fmt) {
    char b[16];
    annotate_vm_fmt(7, b, sizeof b);
    cr_assert_str_eq(b, "7");
    annotate_vm_fmt(7.5, b, sizeof b);
    cr_assert_str_eq(b, "7.5");
    annotate_vm_fmt(NAN, b, sizeof b);
    cr_assert_str_eq(b, "\xe2\x80\x93");
}
