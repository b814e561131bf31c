/* The list widget's keys (ui/list.h) where the Annotate screen and the job form use it, as a
 * user types them: bin/easel in a tmux pane, keys sent with `tmux send-keys`, the screen read
 * with `capture-pane`.
 *
 * - Annotate: the aspects are a list; Home/End and PgUp/PgDn select the first / last aspect,
 *   j/k move like Up/Down, and Up on the first goes round to the last (as before).
 * - Jobs, a (the kind menu): PgDn pages down; the form's fields: End / Home select the last /
 *   first field, j moves down (the hint line below the fields follows the selection).
 * - The help overlay (?) is a list without a selection: End / Home scroll it, other keys close.
 * The expected texts come from the store and the job-kind registry, not from copies here.
 * Skipped (with the reason) when tmux or bin/easel is missing. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jobform.h"
#include "jobkind.h"
#include "store_annotate.h"
#include "support.h"

static char dir[256], db[512], sock[64], easel[512];

static void keys(const char *k) {
    cr_assert_eq(support_sh("tmux -L %s send-keys -t e %s", sock, k), 0, "send-keys %s", k);
}

static void wait_for(const char *text) { support_tmux_wait_for(sock, text); }

static void setup(void) {
    if (!support_have("tmux"))
        cr_skip_test("tmux is not installed (the Makefile's DEB_TEST installs it)");
    const char *bin = getenv("EASEL_BIN");
    if (!realpath(bin ? bin : "bin/easel", easel))
        cr_skip_test("bin/easel not found (run from the repository root after make)");
    support_tmpdir_make(dir, sizeof dir, "listtmux");
    store_close(support_store_open(dir, "t.db", db, sizeof db));
    support_sql_exec(db, "INSERT INTO prompts(id, ext_id, text, created_at) VALUES "
                         "(1, 'p1', 'a red fox in the snow', 0);"
                         "INSERT INTO images(id, prompt_id, path, created_at) VALUES "
                         "(1, 1, 'a.png', 0);");
    snprintf(sock, sizeof sock, "easel-list-%d", (int)getpid());
    /* --threads 0: no pool, so q quits without asking */
    support_tmux_new("tmux -L %s new-session -d -s e -x 140 -y 40 "
                            "'env -u BXFI_MAP EASEL_NO_GPU=1 %s --db %s --graphics none "
                            "--threads 0; sleep 60'", sock, easel, db);
}

static void teardown(void) {
    if (sock[0])
        support_sh("tmux -L %s kill-server 2>/dev/null", sock);
    if (dir[0])
        support_tmpdir_remove(dir);
}

TestSuite(ui_list_tmux, .init = setup, .fini = teardown, .timeout = 90);

/* "▸K " : the mark of the selected aspect K (1-based) in the Annotate panel. */
static const char *aspect_mark(int k) {
    static char buf[16];
    snprintf(buf, sizeof buf, "\xe2\x96\xb8%d ", k);
    return buf;
}

Test(ui_list_tmux, annotate_aspects_take_home_end_pages_and_j_k) {
    wait_for("a red fox in the snow");
    wait_for(aspect_mark(1)); /* nothing rated: the first aspect */
    keys("End");
    wait_for(aspect_mark(ANNOTATE_ASPECTS));
    keys("Home");
    wait_for(aspect_mark(1));
    keys("k"); /* up from the first: round to the last, as Up */
    wait_for(aspect_mark(ANNOTATE_ASPECTS));
    keys("j");
    wait_for(aspect_mark(1));
    keys("j");
    wait_for(aspect_mark(2));
    keys("NPage");
    wait_for(aspect_mark(ANNOTATE_ASPECTS));
    keys("PPage");
    wait_for(aspect_mark(1));
    keys("Down");
    wait_for(aspect_mark(2));
    keys("7"); /* the keys still rate the selected aspect and move on */
    wait_for(aspect_mark(3));
    keys("q");
}

/* The first 40 bytes of the hint line of field I of a new form of kind K. */
static void field_hint(const JobKind *k, int i, char *out, size_t n) {
    JobForm *f = jobform_new(k);
    cr_assert(i >= 0 && i < f->n_fields);
    char hint[256];
    jobform_hint(f, i, hint, sizeof hint);
    snprintf(out, n < 41 ? n : 41, "%s", hint);
    jobform_free(f);
}

Test(ui_list_tmux, job_form_kind_menu_and_fields_take_pages_home_end_and_j) {
    int n_kinds = jobkind_count();
    cr_assert_gt(n_kinds, 1);
    const JobKind *last = jobkind_at(n_kinds - 1);
    JobForm *f = jobform_new(last);
    int n_fields = f->n_fields;
    jobform_free(f);
    cr_assert_gt(n_fields, 2);
    char first_hint[64], second_hint[64], last_hint[64];
    field_hint(last, 0, first_hint, sizeof first_hint);
    field_hint(last, 1, second_hint, sizeof second_hint);
    field_hint(last, n_fields - 1, last_hint, sizeof last_hint);
    cr_assert(strcmp(first_hint, last_hint) && strcmp(first_hint, second_hint),
              "the fields' hints tell them apart");

    wait_for("a red fox in the snow");
    keys("F4");
    wait_for("running");
    keys("a");
    wait_for("New job: pick a kind");
    keys("NPage"); /* a page down a short menu: its last kind */
    keys("Enter");
    char title[128];
    snprintf(title, sizeof title, "New job: %s", last->name);
    wait_for(title);
    wait_for(first_hint);
    keys("End");
    wait_for(last_hint);
    keys("Home");
    wait_for(first_hint);
    keys("j");
    wait_for(second_hint);
    keys("PPage");
    wait_for(first_hint);
    keys("NPage"); /* a page down; a form longer than the pane (tune's) needs a second */
    keys("NPage");
    wait_for(last_hint);
    keys("Escape");
    wait_for("New job: pick a kind");
    keys("Escape");
    keys("q");
}

/* Wait until the pane no longer shows TEXT (~10 s); fails the test with the screen else. */
static void wait_gone(const char *text) {
    for (int i = 0; i < 500; i++) {
        if (!strstr(support_tmux_capture(sock), text))
            return;
        usleep(20000);
    }
    cr_assert_fail("the screen still shows \"%s\":\n%s", text, support_tmux_capture(sock));
}

Test(ui_list_tmux, the_help_overlay_scrolls_with_end_and_home) {
    wait_for("a red fox in the snow");
    cr_assert_eq(support_sh("tmux -L %s resize-window -t e -x 80 -y 24", sock), 0);
    keys("'?'");
    wait_for("Annotate \xe2\x80\x94 keys");
    wait_for("0 .. 9"); /* the first line of the Annotate keys */
    keys("End");
    wait_gone("0 .. 9");
    wait_for("Annotate \xe2\x80\x94 keys"); /* still open: End scrolled it */
    keys("Home");
    wait_for("0 .. 9");
    keys("x"); /* any other key closes it */
    wait_gone("Annotate \xe2\x80\x94 keys");
    keys("q");
}

/* A help line longer than the overlay is wide wraps onto the next rows instead of being cut:
 * at 100 columns the end of the global q line ("... or values are not saved)") is on the
 * screen once End has scrolled to the bottom. */
Test(ui_list_tmux, the_help_overlay_wraps_long_lines) {
    wait_for("a red fox in the snow");
    cr_assert_eq(support_sh("tmux -L %s resize-window -t e -x 100 -y 30", sock), 0);
    keys("'?'");
    wait_for("Annotate \xe2\x80\x94 keys");
    keys("End");
    wait_for("quit (everything you committed");
    wait_for("saved)");
    wait_for("closes it)"); /* the end of the ? line */
    keys("x");
    wait_gone("Annotate \xe2\x80\x94 keys");
    keys("q");
}

/* The overlay hides the screen under it up to the terminal's edges: at 120 columns the box
 * leaves one column on each side, where the Annotate panel's rubric text showed through as
 * stray letters after the right border ("│f"). */
Test(ui_list_tmux, the_help_overlay_leaves_no_stray_text_beside_it) {
    wait_for("a red fox in the snow");
    cr_assert_eq(support_sh("tmux -L %s resize-window -t e -x 120 -y 36", sock), 0);
    usleep(300000);
    keys("'?'");
    wait_for("Annotate \xe2\x80\x94 keys");
    wait_for("0 .. 9");
    char *screen = strdup(support_tmux_capture(sock));
    int boxed = 0;
    for (char *line = strtok(screen, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, " \xe2\x94\x82 ", 5) != 0) /* " │ ": a row inside the box */
            continue;
        boxed++;
        const char *last = strrchr(line, '\xe2'); /* the right border, the row's last glyph */
        cr_assert(last && strncmp(last, "\xe2\x94\x82", 3) == 0, "text after the border: [%s]",
                  line);
        for (const char *p = last + 3; *p; p++)
            cr_assert_eq(*p, ' ', "text after the border: [%s]", line);
    }
    cr_assert_gt(boxed, 10, "%s", support_tmux_capture(sock));
    free(screen);
    keys("x");
    keys("q");
}
