/* annotate_vm — key handling and layout of the Annotate screen, pure. See annotate_vm.h. */
#include "annotate_vm.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void annotate_vm_load(AnnotateVm *vm, const double *stored) {
    memset(vm, 0, sizeof *vm);
    for (int k = 0; k < ANNOTATE_ASPECTS; k++) {
        vm->stored[k] = stored ? stored[k] : NAN;
        vm->values[k] = vm->stored[k];
    }
    vm->sel = 0;
    for (int k = 0; k < ANNOTATE_ASPECTS; k++) {
        if (isnan(vm->values[k])) {
            vm->sel = k;
            break;
        }
    }
}

int annotate_vm_n_set(const AnnotateVm *vm) {
    int n = 0;
    for (int k = 0; k < ANNOTATE_ASPECTS; k++)
        n += !isnan(vm->values[k]);
    return n;
}

int annotate_vm_dirty(const AnnotateVm *vm) {
    for (int k = 0; k < ANNOTATE_ASPECTS; k++) {
        double a = vm->values[k], b = vm->stored[k];
        if (isnan(a) != isnan(b) || (!isnan(a) && a != b))
            return 1;
    }
    return 0;
}

static void set_value(AnnotateVm *vm, double v) {
    vm->values[vm->sel] = v;
    if (vm->sel < ANNOTATE_ASPECTS - 1)
        vm->sel++;
}

static void adjust(AnnotateVm *vm, double d) {
    double v = vm->values[vm->sel];
    v = isnan(v) ? 5.0 : v + d;
    if (v < 0)
        v = 0;
    if (v > 10)
        v = 10;
    vm->values[vm->sel] = v;
}

/* Navigation keys ask once when there are unsaved changes. */
static AnnotateAction guarded(AnnotateVm *vm, int key, AnnotateAction act) {
    if (annotate_vm_dirty(vm) && vm->armed != key) {
        vm->armed = key;
        return AVM_UNSAVED;
    }
    vm->armed = 0;
    return act;
}

AnnotateAction annotate_vm_key(AnnotateVm *vm, int key) {
    int armed = vm->armed;
    vm->armed = 0;
    if (key >= '0' && key <= '9') {
        set_value(vm, key - '0');
        return AVM_CHANGED;
    }
    switch (key) {
    case 't':
        set_value(vm, 10);
        return AVM_CHANGED;
    case AVM_KEY_LEFT:
        adjust(vm, -0.5);
        return AVM_CHANGED;
    case AVM_KEY_RIGHT:
        adjust(vm, 0.5);
        return AVM_CHANGED;
    case AVM_KEY_DELETE:
    case 'x':
        vm->values[vm->sel] = NAN;
        return AVM_CHANGED;
    case AVM_KEY_ENTER: {
        int n = annotate_vm_n_set(vm);
        if (n == 0)
            return AVM_EMPTY;
        if (n < ANNOTATE_ASPECTS && armed != AVM_KEY_ENTER) {
            vm->armed = AVM_KEY_ENTER;
            return AVM_PARTIAL;
        }
        return AVM_COMMIT;
    }
    case 'f':
        return AVM_FLAG;
    case 'o':
        return AVM_ORDER;
    default:
        break;
    }
    vm->armed = armed;
    switch (key) {
    case 'u': return guarded(vm, key, AVM_UNDO);
    case 'b': return guarded(vm, key, AVM_BACK);
    case 'n': return guarded(vm, key, AVM_NEXT);
    case 's': return guarded(vm, key, AVM_SKIP);
    case 'g': return guarded(vm, key, AVM_GOTO);
    default:
        vm->armed = 0;
        return AVM_IGNORED;
    }
}

void annotate_vm_select(AnnotateVm *vm, int k) {
    vm->armed = 0;
    if (k >= 0 && k < ANNOTATE_ASPECTS)
        vm->sel = k;
}

double annotate_vm_pace(const double *save_t, int n, double start, double now) {
    double lo = now - 3600.0 > start ? now - 3600.0 : start;
    int k = 0;
    double newest = lo;
    for (int i = 0; i < n; i++) {
        if (save_t[i] <= lo)
            continue;
        k++;
        if (save_t[i] > newest)
            newest = save_t[i];
    }
    if (k == 0)
        return 0.0;
    double end = now - start >= 3600.0 ? now : newest;
    double span = end - lo > 1.0 ? end - lo : 1.0;
    return k * 3600.0 / span;
}

AnnotateLayout annotate_layout(int y, int x, int h, int w, int cell_w, int cell_h) {
    AnnotateLayout l = {0};
    if (cell_w <= 0 || cell_h <= 0) {
        cell_w = 10;
        cell_h = 20;
    }
    l.img_y = y;
    l.img_x = x;
    l.img_h = h - 1;
    if (l.img_h < 1)
        l.img_h = 1;
    int square = (int)((double)l.img_h * cell_h / cell_w + 0.5); /* columns for a square */
    int room = w - ANNOTATE_SIDE_MIN - 1;
    l.img_w = square < room ? square : room;
    if (l.img_w < 1)
        l.img_w = 1;
    l.sep_x = x + l.img_w;
    l.side_y = y;
    l.side_x = l.sep_x + 2;
    l.side_h = h;
    l.side_w = x + w - l.side_x;
    return l;
}

void annotate_vm_fmt(double v, char *buf, int size) {
    if (isnan(v))
        snprintf(buf, (size_t)size, "\xe2\x80\x93");
    else if (v == floor(v))
        snprintf(buf, (size_t)size, "%d", (int)v);
    else
        snprintf(buf, (size_t)size, "%.1f", v);
}

AnnotateOrder annotate_vm_next_order(AnnotateOrder order) {
    switch (order) {
    case ANNOTATE_ORDER_FEWEST: return ANNOTATE_ORDER_SEQUENTIAL;
    case ANNOTATE_ORDER_SEQUENTIAL: return ANNOTATE_ORDER_RANDOM;
    case ANNOTATE_ORDER_ID:
    case ANNOTATE_ORDER_PROMPT: return ANNOTATE_ORDER_RANDOM;
    case ANNOTATE_ORDER_RANDOM: return ANNOTATE_ORDER_UNCERTAIN;
    case ANNOTATE_ORDER_UNCERTAIN: return ANNOTATE_ORDER_DISAGREE;
    case ANNOTATE_ORDER_DISAGREE:
    default: return ANNOTATE_ORDER_FEWEST;
    }
}

void annotate_vm_why(AnnotateOrder order, const char *reason, const char *note, int n_raters,
                     char *buf, int size) {
    size_t n = (size_t)size;
    if (reason && *reason) {
        snprintf(buf, n, "%s", reason);
        return;
    }
    switch (order) {
    case ANNOTATE_ORDER_UNCERTAIN:
    case ANNOTATE_ORDER_DISAGREE:
        if (note && *note)
            snprintf(buf, n, "%s", note);
        else
            snprintf(buf, n, "%s: being computed; meanwhile fewest raters first",
                     store_annotate_order_name(order));
        return;
    case ANNOTATE_ORDER_FEWEST:
        snprintf(buf, n, "fewest raters first: %d so far", n_raters);
        return;
    case ANNOTATE_ORDER_ID: snprintf(buf, n, "id: import order"); return;
    case ANNOTATE_ORDER_PROMPT:
    case ANNOTATE_ORDER_SEQUENTIAL:
        snprintf(buf, n, "%s: prompt by prompt, in import order", store_annotate_order_name(order));
        return;
    case ANNOTATE_ORDER_RANDOM: snprintf(buf, n, "random: your own shuffled order"); return;
    }
    snprintf(buf, n, "%s", store_annotate_order_name(order));
}
