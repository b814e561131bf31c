/* Tests for src/app/queue_order.c and the computed orders of src/store/store_annotate.c:
 *   - the uncertainty maths (closest partner within a prompt, never across prompts, rated
 *     partners weighing more) and the reason line;
 *   - `sequential`, `uncertain` and `disagree` parse; sequential is prompt by prompt;
 *   - uncertain without a checkpoint says so and serves the fewest order;
 *   - uncertain with a real checkpoint (classic encoder, trained here): a row per image with
 *     its reason and source, the queue in score order, no recomputation while current, a
 *     recomputation when a newer run appears, a checkpoint deleted from disk passed over;
 *   - disagree: the largest per-aspect spread first, no annotator's value in the reason, and
 *     images with a real disagreement stay in the queue past the overlap target;
 *   - the TUI (tmux): `--order uncertain` shows why the image was served, `o` cycles orders.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "annotate_vm.h"
#include "queue_order.h"
#include "store.h"
#include "store_annotate.h"
#include "store_catalog.h"
#include "store_ratings.h"
#include "store_runs.h"
#include "support.h"
#include "support_fixtures.h"
#include "train.h"

/* ---- pure --------------------------------------------------------------------------------- */

Test(queue_pure, closest_partner_within_the_prompt_only) {
    /* prompt 1: images 0,1,2; prompt 2: image 3 alone; image 4 has no prompt */
    int64_t group[5] = {1, 1, 1, 2, 0};
    float s[5 * 5] = {0};
    for (int a = 0; a < 5; a++) {
        s[0 * 5 + a] = 0.0f;
        s[1 * 5 + a] = 0.1f * (float)(a + 1);  /* close to image 0 */
        s[2 * 5 + a] = 3.0f;                   /* far from both */
        s[3 * 5 + a] = 0.05f;                  /* close in value, but another prompt */
        s[4 * 5 + a] = 0.0f;
    }
    QueueUncertainty u[5];
    queue_order_uncertainty(group, s, NULL, NULL, 0.5, 5, u);
    for (int a = 0; a < 5; a++) {
        cr_assert_eq(u[0].partner[a], 1);
        cr_assert_eq(u[1].partner[a], 0);
        cr_assert_eq(u[2].partner[a], 1, "the closer of the two");
        double p = 1.0 / (1.0 + exp(-(0.0 - 0.1 * (a + 1))));
        cr_assert_float_eq(u[0].p[a], p, 1e-6);
        cr_assert_float_eq(u[0].u[a], 1.0 - 2.0 * fabs(p - 0.5), 1e-6);
        cr_assert_eq(u[3].partner[a], -1, "alone in its prompt");
        cr_assert_eq(u[4].partner[a], -1, "no prompt: nothing to compare with");
    }
    cr_assert_gt(u[0].score, u[2].score);
    cr_assert_eq(u[3].score, 0.0);
    cr_assert_eq(u[4].score, 0.0);
}

Test(queue_pure, rated_partners_weigh_more_and_unscored_images_are_left_out) {
    int64_t group[3] = {7, 7, 7};
    float s[3 * 5];
    for (int a = 0; a < 5; a++) {
        s[0 * 5 + a] = 0.0f;
        s[1 * 5 + a] = 0.0f;  /* a tie with image 0, but nobody rated image 1 */
        s[2 * 5 + a] = 0.4f;  /* rated */
    }
    uint8_t rated[3] = {0, 0, 1};
    QueueUncertainty u[3];
    queue_order_uncertainty(group, s, NULL, rated, 0.5, 3, u);
    /* 0 vs 1: u = 1 x 0.5; 0 vs 2: u = 1 - 2|sigmoid(-0.4) - 0.5| = 0.80 x 1 */
    cr_assert_eq(u[0].partner[0], 2);
    cr_assert_float_eq(u[0].u[0], 1.0 - 2.0 * fabs(1.0 / (1.0 + exp(0.4)) - 0.5), 1e-6);
    uint8_t valid[3] = {1, 1, 0};
    queue_order_uncertainty(group, s, valid, rated, 0.5, 3, u);
    cr_assert_eq(u[0].partner[0], 1, "an unscored image is nobody's partner");
    cr_assert_float_eq(u[0].u[0], 0.5, 1e-9);
    cr_assert_eq(u[2].partner[0], -1);
}

Test(queue_pure, reason_names_two_aspects_partners_and_checkpoint) {
    QueueUncertainty u = {0};
    double p[5] = {0.9, 0.8, 0.52, 0.47, 0.99};
    for (int a = 0; a < 5; a++) {
        u.p[a] = p[a];
        u.u[a] = 1.0 - 2.0 * fabs(p[a] - 0.5);
        u.partner[a] = a == 3 ? 0 : 1;
    }
    int64_t ids[2] = {9, 14};
    const char *names[5] = {"spatial", "icono", "style", "fidelity", "material"};
    char buf[320];
    queue_order_uncertain_reason(&u, ids, names, "run-3/best", buf, sizeof buf);
    cr_assert_str_eq(buf, "uncertain: style 52 % vs image 14, fidelity 47 % vs image 9 "
                          "\xe2\x80\x94 checkpoint run-3/best");
    for (int a = 0; a < 5; a++)
        u.partner[a] = -1;
    queue_order_uncertain_reason(&u, ids, names, "r/best", buf, sizeof buf);
    cr_assert(strstr(buf, "no other image of its prompt"), "%s", buf);
}

Test(queue_pure, o_cycles_the_orders_and_the_why_line_says_what_served_the_image) {
    AnnotateVm vm;
    annotate_vm_load(&vm, NULL);
    annotate_vm_key(&vm, '7');
    cr_assert_eq(annotate_vm_key(&vm, 'o'), AVM_ORDER);
    cr_assert_eq(vm.values[0], 7.0, "o keeps the unsaved values");
    AnnotateOrder o = ANNOTATE_ORDER_FEWEST;
    const char *seen[5];
    for (int i = 0; i < 5; i++) {
        o = annotate_vm_next_order(o);
        seen[i] = store_annotate_order_name(o);
    }
    cr_assert_str_eq(seen[0], "sequential");
    cr_assert_str_eq(seen[1], "random");
    cr_assert_str_eq(seen[2], "uncertain");
    cr_assert_str_eq(seen[3], "disagree");
    cr_assert_str_eq(seen[4], "fewest");
    cr_assert_eq(annotate_vm_next_order(ANNOTATE_ORDER_ID), ANNOTATE_ORDER_RANDOM);

    char buf[128];
    annotate_vm_why(ANNOTATE_ORDER_UNCERTAIN, "uncertain: style 52 % vs image 14", "note", 0,
                    buf, sizeof buf);
    cr_assert_str_eq(buf, "uncertain: style 52 % vs image 14");
    annotate_vm_why(ANNOTATE_ORDER_UNCERTAIN, NULL, "uncertain: no reward checkpoint yet", 0,
                    buf, sizeof buf);
    cr_assert_str_eq(buf, "uncertain: no reward checkpoint yet");
    annotate_vm_why(ANNOTATE_ORDER_DISAGREE, "", NULL, 0, buf, sizeof buf);
    cr_assert(strstr(buf, "disagree: being computed"), "%s", buf);
    annotate_vm_why(ANNOTATE_ORDER_FEWEST, NULL, NULL, 2, buf, sizeof buf);
    cr_assert_str_eq(buf, "fewest raters first: 2 so far");
    annotate_vm_why(ANNOTATE_ORDER_SEQUENTIAL, NULL, NULL, 0, buf, 12);
    cr_assert_eq(strlen(buf), 11, "truncated to the buffer");
}

/* ---- a small store of real images --------------------------------------------------------- */

#define N_PROMPTS 6
#define PER_PROMPT 3
#define S 32

static char dir[128];
static char db[256];

static void make_image(const char *path, int level, int prompt) {
    unsigned char *p = malloc(S * S * 3);
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            unsigned char *q = p + (y * S + x) * 3;
            q[0] = (unsigned char)(40 + 50 * level + ((x * 7 + y * 3 + prompt * 11) % 30));
            q[1] = (unsigned char)(60 + 20 * prompt);
            q[2] = (unsigned char)((x < S / 2) ? 200 - 40 * level : 40);
        }
    support_png_write(path, S, S, p);
    free(p);
}

/* Image k of a prompt has level k; annotator "planter" rates the first two images of every
 * prompt (5 + 2 x level on every aspect), so there are pairs to train on and unrated images. */
static void leveled_image(const char *path, int p, int k, double rating[5], void *user) {
    (void)user;
    make_image(path, k, p);
    if (k < 2)
        for (int h = 0; h < 5; h++)
            rating[h] = 5 + 2 * k;
}

/* Prompts 1..N_PROMPTS ("p0".."p5"), PER_PROMPT images each (ids in prompt order). */
static void setup(void) {
    support_shm_tmpdir_make(dir, sizeof dir, "queue");
    snprintf(db, sizeof db, "%s/t.db", dir);
    SupportSynth synth = {N_PROMPTS, PER_PROMPT, "p", "a test scene number ", leveled_image, NULL};
    support_synth_store(dir, db, &synth);
}

static void teardown(void) {
    support_tmpdir_remove(dir);
}

static void train_tiny(Store *st, const char *name) {
    TrainConfig c;
    train_config_defaults(&c);
    c.epochs = 2;
    c.batch_size = 8;
    c.learning_rate = 1e-3;
    c.threads = 1;
    c.val_fraction = 0;
    c.save_every = 0;
    snprintf(c.output, sizeof c.output, "%s/runs/%s", dir, name);
    snprintf(c.run_name, sizeof c.run_name, "%s", name);
    Err err = {0};
    cr_assert_eq(train_run(st, &c, NULL, NULL, &err), 0, "%s", err.msg);
}

static int64_t annotator(Store *st, const char *name) {
    int64_t id;
    Err err = {0};
    cr_assert_eq(store_annotator_ensure(st, name, &id, &err), 0, "%s", err.msg);
    return id;
}

static int queue(Store *st, AnnotateQuery *q, int64_t *ids, int max) {
    int n = 0;
    Err err = {0};
    cr_assert_eq(store_annotate_queue(st, q, NULL, 0, ids, max, &n, &err), 0, "%s", err.msg);
    return n;
}

TestSuite(queue_store, .init = setup, .fini = teardown, .timeout = 120);

Test(queue_store, order_names_parse_and_sequential_is_prompt_by_prompt) {
    const char *names[] = {"fewest", "id", "prompt", "random", "sequential", "uncertain",
                           "disagree"};
    for (int i = 0; i < 7; i++) {
        AnnotateOrder o;
        cr_assert_eq(store_annotate_order_parse(names[i], &o, NULL), 0, "%s", names[i]);
        cr_assert_str_eq(store_annotate_order_name(o), names[i]);
    }
    AnnotateOrder o;
    Err err = {0};
    cr_assert_eq(store_annotate_order_parse("uncertian", &o, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "uncertain"), "%s", err.msg);

    Err e2 = {0};
    Store *st = store_open_existing(db, &e2);
    cr_assert_not_null(st, "%s", e2.msg);
    AnnotateQuery q = {.annotator_id = annotator(st, "newcomer"),
                       .order = ANNOTATE_ORDER_SEQUENTIAL};
    int64_t ids[64];
    int n = queue(st, &q, ids, 64);
    cr_assert_eq(n, N_PROMPTS * PER_PROMPT);
    for (int i = 0; i < n; i++)
        cr_assert_eq(ids[i], i + 1, "import order of prompts, then images");
    /* a retired image leaves every order's queue */
    support_sql_exec(db, "UPDATE images SET retired = 1 WHERE id = 2");
    for (int k = 0; k < ANNOTATE_N_ORDERS; k++) {
        q.order = (AnnotateOrder)k;
        n = queue(st, &q, ids, 64);
        cr_assert_eq(n, N_PROMPTS * PER_PROMPT - 1, "%s", store_annotate_order_name(q.order));
        for (int i = 0; i < n; i++)
            cr_assert_neq(ids[i], 2, "%s", store_annotate_order_name(q.order));
    }
    store_close(st);
}

Test(queue_store, uncertain_without_a_checkpoint_says_so_and_serves_fewest) {
    Err err = {0};
    Store *st = store_open_existing(db, &err);
    cr_assert_not_null(st, "%s", err.msg);
    QueueOrderResult res;
    cr_assert_eq(queue_order_refresh(st, ANNOTATE_ORDER_UNCERTAIN, NULL, &res, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(res.fallback, 1);
    cr_assert(strstr(res.note, "no reward checkpoint"), "%s", res.note);
    cr_assert(strstr(res.note, "fewest"), "%s", res.note);
    int64_t me = annotator(st, "newcomer");
    AnnotateQuery qu = {.annotator_id = me, .order = ANNOTATE_ORDER_UNCERTAIN};
    AnnotateQuery qf = {.annotator_id = me, .order = ANNOTATE_ORDER_FEWEST};
    int64_t a[64], b[64];
    int na = queue(st, &qu, a, 64), nb = queue(st, &qf, b, 64);
    cr_assert_eq(na, nb);
    for (int i = 0; i < na; i++)
        cr_assert_eq(a[i], b[i], "position %d", i);
    store_close(st);
}

static double row_score(int64_t image) {
    char sql[160];
    snprintf(sql, sizeof sql,
             "SELECT score FROM queue_order WHERE kind = 'uncertain' AND image_id = %lld",
             (long long)image);
    return support_sql_num(db, sql);
}

Test(queue_store, uncertain_from_a_real_checkpoint_then_refreshed_by_a_newer_one) {
    Err err = {0};
    Store *st = store_open_existing(db, &err);
    cr_assert_not_null(st, "%s", err.msg);
    train_tiny(st, "first");
    QueueOrderOptions o = {.threads = 1};
    QueueOrderResult res;
    cr_assert_eq(queue_order_refresh(st, ANNOTATE_ORDER_UNCERTAIN, &o, &res, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(res.computed, 1);
    cr_assert_eq(res.fallback, 0);
    cr_assert_eq(res.n_rows, N_PROMPTS * PER_PROMPT);
    cr_assert_str_eq(res.source, "first/best");
    cr_assert(strstr(res.note, "first/best"), "%s", res.note);
    cr_assert_eq(support_sql_num(db, "SELECT count(*) FROM queue_order WHERE kind = 'uncertain'"
                                     " AND source = 'first/best' AND reason LIKE 'uncertain: %"
                                     " vs image %checkpoint first/best'"),
                 N_PROMPTS * PER_PROMPT);

    /* the queue of a new annotator: highest score first */
    AnnotateQuery q = {.annotator_id = annotator(st, "newcomer"),
                       .order = ANNOTATE_ORDER_UNCERTAIN};
    int64_t ids[64];
    int n = queue(st, &q, ids, 64);
    cr_assert_eq(n, N_PROMPTS * PER_PROMPT);
    for (int i = 1; i < n; i++)
        cr_assert_geq(row_score(ids[i - 1]), row_score(ids[i]), "position %d", i);
    char *reason = NULL, *source = NULL;
    cr_assert_eq(store_annotate_order_reason(st, "uncertain", ids[0], &reason, &source, &err), 0);
    cr_assert_not_null(reason);
    cr_assert_str_eq(source, "first/best");
    free(reason);
    free(source);

    /* current: nothing recomputed */
    cr_assert_eq(queue_order_refresh(st, ANNOTATE_ORDER_UNCERTAIN, &o, &res, &err), 0);
    cr_assert_eq(res.computed, 0);
    cr_assert_eq(res.n_rows, N_PROMPTS * PER_PROMPT);

    /* a newer run: recomputed from it */
    usleep(20000);
    train_tiny(st, "second");
    cr_assert_eq(queue_order_refresh(st, ANNOTATE_ORDER_UNCERTAIN, &o, &res, &err), 0);
    cr_assert_eq(res.computed, 1);
    cr_assert_str_eq(res.source, "second/best");
    cr_assert_eq(support_sql_num(db, "SELECT count(*) FROM queue_order WHERE kind = 'uncertain'"
                                     " AND source = 'second/best'"),
                 N_PROMPTS * PER_PROMPT);

    /* a damaged checkpoint: an error naming it, and the rows stay as they were */
    cr_assert_eq(support_sh("echo garbage > %s/runs/second/best/config.json", dir), 0);
    o.force = 1;
    Err e3 = {0};
    cr_assert_neq(queue_order_refresh(st, ANNOTATE_ORDER_UNCERTAIN, &o, &res, &e3), 0);
    cr_assert(strstr(e3.msg, "second/best"), "%s", e3.msg);
    cr_assert_eq(support_sql_num(db, "SELECT count(*) FROM queue_order WHERE kind = 'uncertain'"
                                     " AND source = 'second/best'"),
                 N_PROMPTS * PER_PROMPT);
    o.force = 0;

    /* its folder deleted by hand: the older run's checkpoint is used */
    cr_assert_eq(support_sh("rm -rf %s/runs/second", dir), 0);
    cr_assert_eq(queue_order_refresh(st, ANNOTATE_ORDER_UNCERTAIN, &o, &res, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(res.computed, 1);
    cr_assert_str_eq(res.source, "first/best");
    store_close(st);
}

Test(queue_store, disagree_serves_the_largest_spread_first_even_past_the_overlap) {
    Err err = {0};
    Store *st = store_open_existing(db, &err);
    cr_assert_not_null(st, "%s", err.msg);
    StoreAspect *asp = NULL;
    size_t na = 0;
    cr_assert_eq(store_aspects_list(st, &asp, &na, &err), 0);
    int64_t b = annotator(st, "bob"), c = annotator(st, "chen");
    /* images 1 and 4 were rated by planter (5 + 2 x level = 5); bob and chen add theirs:
     * image 1: bob 9 on fidelity (sd of 5,9,6 = 1.7); image 4: a point apart on style */
    cr_assert_eq(store_rating_add(st, 1, b, asp[3].id, 9, NAN, "test", NULL, &err), 0);
    cr_assert_eq(store_rating_add(st, 1, c, asp[3].id, 6, NAN, "test", NULL, &err), 0);
    cr_assert_eq(store_rating_add(st, 4, b, asp[2].id, 6, NAN, "test", NULL, &err), 0);
    QueueOrderResult res;
    cr_assert_eq(queue_order_refresh(st, ANNOTATE_ORDER_DISAGREE, NULL, &res, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(res.computed, 1);
    cr_assert_eq(res.n_rows, 2);
    char *reason = NULL;
    cr_assert_eq(store_annotate_order_reason(st, "disagree", 1, &reason, NULL, &err), 0);
    cr_assert_not_null(reason);
    cr_assert(strstr(reason, "fidelity sd 1.7, range 4 (3 raters)"), "%s", reason);
    cr_assert_null(strstr(reason, "bob"), "%s", reason);
    free(reason);

    /* overlap 3: image 1 has 3 raters, but a real disagreement keeps it, first */
    AnnotateQuery q = {.annotator_id = annotator(st, "judge"), .order = ANNOTATE_ORDER_DISAGREE,
                       .overlap = 3};
    int64_t ids[64];
    int n = queue(st, &q, ids, 64);
    cr_assert_eq(ids[0], 1);
    cr_assert_eq(ids[1], 4);
    cr_assert_eq(n, N_PROMPTS * PER_PROMPT);
    int ok = 0;
    cr_assert_eq(store_annotate_eligible(st, &q, 1, &ok, &err), 0);
    cr_assert_eq(ok, 1);
    q.order = ANNOTATE_ORDER_FEWEST; /* any other order: image 1 has its three raters */
    cr_assert_eq(queue(st, &q, ids, 64), N_PROMPTS * PER_PROMPT - 1);
    cr_assert_eq(store_annotate_eligible(st, &q, 1, &ok, &err), 0);
    cr_assert_eq(ok, 0);

    /* current until a rating changes */
    cr_assert_eq(queue_order_refresh(st, ANNOTATE_ORDER_DISAGREE, NULL, &res, &err), 0);
    cr_assert_eq(res.computed, 0);
    usleep(20000);
    cr_assert_eq(store_rating_add(st, 4, c, asp[2].id, 1, NAN, "test", NULL, &err), 0);
    cr_assert_eq(queue_order_refresh(st, ANNOTATE_ORDER_DISAGREE, NULL, &res, &err), 0);
    cr_assert_eq(res.computed, 1);
    q.order = ANNOTATE_ORDER_DISAGREE;
    queue(st, &q, ids, 64);
    cr_assert_eq(ids[0], 4, "style 5, 6, 1 now spreads more than fidelity 5, 9, 6");
    store_aspects_free(asp, na);
    store_close(st);
}

/* ---- the TUI ------------------------------------------------------------------------------ */

static char sock[64];

static void tui_teardown(void) {
    if (sock[0])
        support_sh("tmux -L %s kill-server 2>/dev/null", sock);
    teardown();
}

TestSuite(queue_tui, .init = setup, .fini = tui_teardown, .timeout = 120);

Test(queue_tui, uncertain_shows_why_and_o_cycles_the_order) {
    char easel[512];
    support_easel_path(easel, sizeof easel);
    if (support_sh("command -v tmux >/dev/null") != 0)
        cr_skip_test("tmux is not installed (the Makefile's DEB_TEST installs it)");
    snprintf(sock, sizeof sock, "easel-queue-%d", (int)getpid());
    /* no checkpoint yet: the TUI says so and serves fewest */
    support_tmux_new("cd %s && tmux -L %s new-session -d -s e -x 120 -y 32 "
                            "'exec %s --db t.db annotate --annotator tester --graphics none "
                            "--order uncertain'", dir, sock, easel);
    support_tmux_wait_for(sock, "no reward checkpoint yet");
    support_tmux_wait_for(sock, "fewest order");
    support_sh("tmux -L %s send-keys -t e q", sock);
    support_sh("tmux -L %s kill-server 2>/dev/null", sock);

    Err err = {0};
    Store *st = store_open_existing(db, &err);
    cr_assert_not_null(st, "%s", err.msg);
    train_tiny(st, "run-1");
    store_close(st);
    support_tmux_new("cd %s && tmux -L %s new-session -d -s e -x 120 -y 32 "
                            "'exec %s --db t.db annotate --annotator tester --graphics none "
                            "--order uncertain'", dir, sock, easel);
    /* computed in the background, then the queue is read again and the reason shown */
    support_tmux_wait_for(sock, "why: uncertain: ");
    support_tmux_wait_for(sock, "checkpoint run-1/best");
    cr_assert_eq(support_sql_num(db, "SELECT count(*) FROM queue_order WHERE kind = 'uncertain'"
                                     " AND source = 'run-1/best'"),
                 N_PROMPTS * PER_PROMPT);
    support_sh("tmux -L %s send-keys -t e o", sock);
    support_tmux_wait_for(sock, "order: disagree");
    /* the image on screen came from the uncertain order, and still says so */
    cr_assert(strstr(support_tmux_capture(sock), "why: uncertain: "), "%s",
              support_tmux_capture(sock));
    support_sh("tmux -L %s send-keys -t e o", sock);
    support_tmux_wait_for(sock, "order: fewest");
    support_sh("tmux -L %s send-keys -t e 7 7 7 7 7 Enter", sock);
    support_tmux_wait_for(sock, "why: fewest raters first");
}
