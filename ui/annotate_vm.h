/* annotate_vm — the Annotate screen's state machine and layout, pure C (no ncurses, no store),
 * tested directly by tests/ui/test_ui_annotate.c.
 *
 * Keys (the screen maps ncurses codes to these; printable keys are themselves):
 *   0-9      set the selected aspect to that value and select the next aspect
 *   t        set the selected aspect to 10
 *   Left/Right  -/+ 0.5 on the selected aspect (from 5 when it has no value)
 *   (Up/Down, PgUp/PgDn, Home/End and j/k select an aspect through the screen's list widget,
 *   ui/list.h, which then calls annotate_vm_select)
 *   Backspace/Delete/x  clear the selected aspect
 *   Enter    commit: every aspect set -> AVM_COMMIT; none set -> AVM_EMPTY; some set ->
 *            AVM_PARTIAL first, AVM_COMMIT when pressed again at once
 *   u b n s f g  AVM_UNDO, AVM_BACK, AVM_NEXT, AVM_SKIP, AVM_FLAG, AVM_GOTO; b, n, s, u and g
 *            with unsaved changes return AVM_UNSAVED first and act when pressed again at once
 *   o        AVM_ORDER: the next queue order (annotate_vm_next_order); the image on screen and
 *            its unsaved values stay
 * Contract: from a fresh image, 7 7 7 7 7 Enter yields values {7,7,7,7,7} and AVM_COMMIT.
 */
#ifndef EASEL_ANNOTATE_VM_H
#define EASEL_ANNOTATE_VM_H

#include "store_annotate.h"

enum {
    AVM_KEY_LEFT = 0x110000,
    AVM_KEY_RIGHT,
    AVM_KEY_ENTER,
    AVM_KEY_DELETE,
};

typedef enum AnnotateAction {
    AVM_IGNORED = 0,   /* not an Annotate key */
    AVM_CHANGED,       /* values or selection changed */
    AVM_COMMIT,
    AVM_EMPTY,         /* Enter with nothing set */
    AVM_PARTIAL,       /* Enter with some aspects unset: press again to save the rest */
    AVM_UNSAVED,       /* navigation with unsaved changes: press again to discard */
    AVM_UNDO,
    AVM_BACK,
    AVM_NEXT,
    AVM_SKIP,
    AVM_FLAG,
    AVM_GOTO,
    AVM_ORDER,
} AnnotateAction;

typedef struct AnnotateVm {
    double values[ANNOTATE_ASPECTS];  /* being edited; NAN = unset */
    double stored[ANNOTATE_ASPECTS];  /* what the store holds for me; NAN = none */
    int sel;                          /* selected aspect */
    int armed;                        /* the key that asked for confirmation, or 0 */
} AnnotateVm;

/* Start editing an image whose stored values are STORED (NULL: none). Selects the first
 * unset aspect (or the first). */
void annotate_vm_load(AnnotateVm *vm, const double *stored);

/* Apply one key; returns what the screen must do. */
AnnotateAction annotate_vm_key(AnnotateVm *vm, int key);

/* Select aspect K (0 <= K < ANNOTATE_ASPECTS; others are ignored), as a key does: a pending
 * confirmation (armed) is dropped. */
void annotate_vm_select(AnnotateVm *vm, int k);

int annotate_vm_n_set(const AnnotateVm *vm);
int annotate_vm_dirty(const AnnotateVm *vm);   /* values differ from stored */

/* Images per hour from this session's save times SAVE_T (N of them, any order) in the last
 * hour: the saves since max(START, NOW - 1 h) over the time up to the newest of them (up to
 * NOW once the session is an hour old). 0 before the first save. */
double annotate_vm_pace(const double *save_t, int n, double start, double now);

/* Where things go in the Annotate body (cells). The image box is left, as large as fits
 * while leaving SIDE_MIN columns for the text panel, no wider than a square image needs
 * for the cell shape, and one row short of the body so an image never reaches the status
 * line. A separator column sits right of the box: it is never blank, so ncurses never
 * clears a row through the image. */
typedef struct AnnotateLayout {
    int img_y;       /* image box */
    int img_x;
    int img_h;
    int img_w;
    int sep_x;       /* the separator column */
    int side_y;      /* text panel */
    int side_x;
    int side_h;
    int side_w;
} AnnotateLayout;

#define ANNOTATE_SIDE_MIN 40

AnnotateLayout annotate_layout(int y, int x, int h, int w, int cell_w, int cell_h);

/* The order `o` switches to after ORDER: fewest -> sequential -> random -> uncertain ->
 * disagree -> fewest (id and prompt, given on the command line, go on to random). */
AnnotateOrder annotate_vm_next_order(AnnotateOrder order);

/* The "why served" line of an image. REASON: its queue_order reason (NULL or "" if none);
 * NOTE: what the order's last computation said (NULL or ""); N_RATERS: its raters so far.
 * Computed orders show the reason, else the note (no checkpoint, not computed yet); the
 * others say what the order is. BUF gets at most SIZE bytes. */
void annotate_vm_why(AnnotateOrder order, const char *reason, const char *note, int n_raters,
                     char *buf, int size);

/* Format a value: "7", "7.5", "–" for unset. BUF gets at most 8 bytes. */
void annotate_vm_fmt(double v, char *buf, int size);

#endif
