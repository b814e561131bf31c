/* The blind A/B queue end to end (issue 16, ab16), in a tmux pane: a store with a finished
 * tune-eval run (its base and adapter PNGs in the store, its scores.csv), `easel ab add` makes
 * the set, `easel ab judge` opens the A/B screen: the prompt, both images (half blocks; tmux
 * shows no sixel), "item 1 / 4", the aspects; 1/2/0 judge, n/p move, q quits; reopened, the
 * judgements are there and the screen starts at the first item not fully judged; `easel ab
 * results --json` counts them as judged, with the adapter's side worked out from the store.
 * Nothing on the screen names the base or the adapter (no paths).
 *
 * Skipped (with the reason) when tmux or bin/easel is missing.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"
#include "store_ab.h"
#include "support.h"
#include "support_fixtures.h"

#define HALF_BLOCKS "\xe2\x96\x80\xe2\x96\x80\xe2\x96\x80\xe2\x96\x80"

static char dir[64], sock[64], easel[512], db[128];

static void keys(const char *k) {
    cr_assert_eq(support_sh("tmux -L %s send-keys -t e %s", sock, k), 0, "send-keys %s", k);
}

static void setup(void) {
    if (!support_have("tmux"))
        cr_skip_test("tmux is not installed (the Makefile's DEB_TEST installs it)");
    support_easel_path(easel, sizeof easel);
    support_tmpdir_make(dir, sizeof dir, "abtmux");
    snprintf(sock, sizeof sock, "easel-ab-%d", (int)getpid());
    Store *st = support_store_open(dir, "t.db", db, sizeof db);
    store_close(st);
}

static void teardown(void) {
    if (sock[0])
        support_sh("tmux -L %s kill-server 2>/dev/null", sock);
    support_tmpdir_remove(dir);
}

TestSuite(ab_tmux, .init = setup, .fini = teardown, .timeout = 90);

/* A finished tune-eval run "ev" of 2 prompts x 2 seeds: red base images, blue adapter ones,
 * in the store, and its scores.csv (the adapter scores higher on every head). */
static void make_eval(void) {
    char sql[512], path[256];
    support_sql_exec(db, "INSERT INTO prompts(id, ext_id, text, created_at) VALUES "
                         "(1, 'p1', 'a fox in the snow', 0), (2, 'p2', 'a teapot', 0);");
    char csv[4096];
    size_t k = (size_t)snprintf(csv, sizeof csv, "prompt_id,seed,side,path,spatial,icono,style,"
                                                 "fidelity,material,combined\n");
    int id = 0;
    for (int p = 1; p <= 2; p++) {
        for (int s = 0; s < 2; s++) {
            for (int side = 0; side < 2; side++) {
                const char *name = side ? "adapter" : "base";
                unsigned char px[16 * 16 * 3];
                for (int i = 0; i < 16 * 16; i++) {
                    px[3 * i] = side ? 0 : 255;
                    px[3 * i + 1] = 0;
                    px[3 * i + 2] = side ? 255 : 0;
                }
                support_sh("mkdir -p %s/ev/%s/p%d", dir, name, p);
                snprintf(path, sizeof path, "%s/ev/%s/p%d/%d.png", dir, name, p, s);
                support_png_write(path, 16, 16, px);
                snprintf(sql, sizeof sql, "INSERT INTO images(id, prompt_id, path, seed, "
                         "created_at) VALUES (%d, %d, 'ev/%s/p%d/%d.png', %d, 0)", ++id, p,
                         name, p, s, s);
                support_sql_exec(db, sql);
                double v = side ? 0.75 : 0.25;
                k += (size_t)snprintf(csv + k, sizeof csv - k,
                                      "p%d,%d,%s,%s,%g,%g,%g,%g,%g,%g\n", p, s, name, path, v, v,
                                      v, v, v, v);
            }
        }
    }
    char file[300];
    snprintf(path, sizeof path, "%s/ev", dir);
    support_write_file(path, "scores.csv", csv, file, sizeof file);
    snprintf(sql, sizeof sql, "INSERT INTO runs(name, kind, state, output, created_at, "
             "updated_at) VALUES ('ev', 'tune-eval', 'succeeded', '%s/ev', 0, 0)", dir);
    support_sql_exec(db, sql);
}

static void start(void) {
    support_sh("tmux -L %s kill-server 2>/dev/null", sock);
    support_tmux_new("cd %s && tmux -L %s new-session -d -s e -x 140 -y 40 "
                            "'env -u BXFI_MAP TERM=tmux-256color %s --db t.db --annotator alice "
                            "--graphics blocks ab judge heldout; echo EASEL-EXITED; sleep 60'", dir, sock, easel);
}

/* The pane never names a side. */
static void assert_blind(void) {
    char *pane = support_tmux_capture(sock);
    cr_assert_null(strstr(pane, "adapter"), "the pane names the adapter:\n%s", pane);
    cr_assert_null(strstr(pane, "base"), "the pane names the base:\n%s", pane);
    cr_assert_null(strstr(pane, ".png"), "the pane shows a path:\n%s", pane);
}

Test(ab_tmux, judge_quit_reopen_results) {
    make_eval();
    char *out = NULL;
    int rc = support_run(dir, &out, NULL, "%s --db t.db ab add heldout --from-eval ev", easel);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert(strstr(out, "A/B set heldout: 4 pairs"), "%s", out);
    free(out);

    start();
    support_tmux_wait_for(sock, "A/B: heldout   item 1 / 4   judged 0 / 4");
    support_tmux_wait_for(sock, "prompt: a fox in the snow");
    support_tmux_wait_for(sock, "left (1)");
    support_tmux_wait_for(sock, "right (2)");
    support_tmux_wait_for(sock, "> spatial");
    support_tmux_wait_for(sock, HALF_BLOCKS);
    assert_blind();
    /* item 1: spatial left, icono right, style tie, then the overall row: left */
    keys("1");
    keys("2");
    keys("0");
    support_tmux_wait_for(sock, "> fidelity");
    keys("Down");
    keys("Down");
    support_tmux_wait_for(sock, "> overall");
    keys("1");
    support_tmux_wait_for(sock, "judged 1 / 4");
    /* item 2: spatial right; back to item 1 and change spatial to right */
    keys("n");
    support_tmux_wait_for(sock, "item 2 / 4");
    keys("2");
    support_tmux_wait_for(sock, "judged 2 / 4");
    keys("p");
    support_tmux_wait_for(sock, "item 1 / 4");
    support_tmux_wait_for(sock, "icono      right >>");
    keys("2");
    support_tmux_wait_for(sock, "spatial    right >>");
    assert_blind();
    keys("q");
    support_tmux_wait_for(sock, "EASEL-EXITED"); /* its store closed */

    /* reopened: the judgements are there; it starts at item 1 (not fully judged) */
    start();
    support_tmux_wait_for(sock, "judged 2 / 4");
    support_tmux_wait_for(sock, "spatial    right >>");
    support_tmux_wait_for(sock, "style      = tie");
    support_tmux_wait_for(sock, "overall    << left");
    keys("u"); /* the next item not fully judged: 2 */
    support_tmux_wait_for(sock, "item 2 / 4");
    keys("q");
    support_tmux_wait_for(sock, "EASEL-EXITED"); /* its store closed */

    /* the results: what was judged, scored against where the adapter really was */
    out = NULL;
    rc = support_run(dir, &out, NULL, "%s --db t.db ab results heldout --json", easel);
    cr_assert_eq(rc, 0, "%s", out);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    cr_assert_not_null(j, "%s: %s", je.text, out);
    cr_assert_eq(json_integer_value(json_object_get(j, "judgements")), 5);
    /* recompute the spatial win rate from the store's own record of the sides */
    double spatial_wins = support_sql_num(db,
        "SELECT SUM(CASE WHEN (j.choice = 'left') = ((i.adapter = 'a') = (i.a_left = 1))"
        " THEN 1.0 ELSE 0.0 END) FROM ab_judgements j JOIN ab_items i ON i.id = j.item_id"
        " WHERE j.aspect = 'spatial'");
    json_t *sp = json_object_get(json_object_get(json_object_get(j, "aspects"), "spatial"),
                                 "pooled");
    cr_assert_eq(json_integer_value(json_object_get(sp, "n")), 2);
    cr_assert_float_eq(json_real_value(json_object_get(sp, "wins")), spatial_wins, 1e-9);
    json_t *st = json_object_get(json_object_get(json_object_get(j, "aspects"), "style"),
                                 "pooled");
    cr_assert_float_eq(json_real_value(json_object_get(st, "win_rate")), 0.5, 1e-9); /* a tie */
    json_t *al = json_object_get(json_object_get(json_object_get(json_object_get(j, "aspects"),
                                                                 "spatial"), "annotators"),
                                 "alice");
    cr_assert_eq(json_integer_value(json_object_get(al, "n")), 2);
    /* the reward model prefers the adapter on every head: agreement = the wins */
    json_t *ag = json_object_get(json_object_get(json_object_get(j, "aspects"), "spatial"),
                                 "reward_agreement");
    cr_assert_eq(json_integer_value(json_object_get(ag, "agree")), (json_int_t)spatial_wins);
    json_decref(j);
    free(out);
    cr_assert_eq(support_sql_num(db, "SELECT COUNT(*) FROM ab_judgement_history"), 1);
}
