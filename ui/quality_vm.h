/* quality_vm — the Quality screen's formatting, pure C (no ncurses, no store),
 * tested by tests/ui/test_ui_quality.c. */
#ifndef EASEL_QUALITY_VM_H
#define EASEL_QUALITY_VM_H

#include <stddef.h>

/* A statistic with 2 decimals, or "n/a" when NAN. */
void quality_vm_stat(double v, char *buf, size_t size);

/* A signed offset "+0.42" / "-1.10", or "n/a". */
void quality_vm_offset(double v, char *buf, size_t size);

/* A word for an alpha or ICC value (Krippendorff's rule of thumb: >= 0.8 good, >= 0.667
 * tentative, else poor; "" for NAN). */
const char *quality_vm_grade(double v);

#endif
