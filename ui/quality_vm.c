/* quality_vm — formatting for the Quality screen. See quality_vm.h. */
#include "quality_vm.h"

#include <math.h>
#include <stdio.h>

void quality_vm_stat(double v, char *buf, size_t size) {
    if (isnan(v))
        snprintf(buf, size, "n/a");
    else
        snprintf(buf, size, "%.2f", v);
}

void quality_vm_offset(double v, char *buf, size_t size) {
    if (isnan(v))
        snprintf(buf, size, "n/a");
    else
        snprintf(buf, size, "%+.2f", fabs(v) < 0.005 ? 0.0 : v);
}

const char *quality_vm_grade(double v) {
    if (isnan(v))
        return "";
    if (v >= 0.8)
        return "good";
    if (v >= 0.667)
        return "tentative";
    return "poor";
}
