/* Tests for ui/quality_vm.c: number formats and the disagreement list's scrolling. */
#include <criterion/criterion.h>
#include <math.h>

#include "quality_vm.h"

Test(ui_quality, formats) {
    char b[16];
    quality_vm_stat(0.8149, b, sizeof b);
    cr_assert_str_eq(b, "0.81");
    quality_vm_stat(NAN, b, sizeof b);
    cr_assert_str_eq(b, "n/a");
    quality_vm_offset(0.4249, b, sizeof b);
    cr_assert_str_eq(b, "+0.42");
    quality_vm_offset(-1.1, b, sizeof b);
    cr_assert_str_eq(b, "-1.10");
    quality_vm_offset(-0.001, b, sizeof b);
    cr_assert_str_eq(b, "+0.00", "no -0.00");
    quality_vm_offset(NAN, b, sizeof b);
    cr_assert_str_eq(b, "n/a");
}

Test(ui_quality, grades_follow_krippendorff) {
    cr_assert_str_eq(quality_vm_grade(0.85), "good");
    cr_assert_str_eq(quality_vm_grade(0.8), "good");
    cr_assert_str_eq(quality_vm_grade(0.7), "tentative");
    cr_assert_str_eq(quality_vm_grade(0.5), "poor");
    cr_assert_str_eq(quality_vm_grade(NAN), "");
}

