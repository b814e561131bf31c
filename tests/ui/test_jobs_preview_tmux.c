/* The Jobs screen's preview in a tmux pane: a generate job on the tiny random SD fixture
 * (64x64, 2 steps) is queued; the TUI (no workers of its own) shows no preview while the job
 * has written nothing; `easel worker` runs it and the latest image appears beside the details
 * in half blocks (tmux shows no sixel); selecting a job without images removes it.
 *
 * Skipped (with the reason) when tmux or bin/easel is missing.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support.h"

#define FIX_SD "tests/gen/fixtures/pipeline_sd"
#define HALF_BLOCKS "\xe2\x96\x80\xe2\x96\x80\xe2\x96\x80\xe2\x96\x80"

static char dir[256], sock[64], easel[512], model[4096];

static void keys(const char *k) {
    cr_assert_eq(support_sh("tmux -L %s send-keys -t e %s", sock, k), 0, "send-keys %s", k);
}

static void easel_ok(const char *args) {
    cr_assert_eq(support_sh("cd %s && EASEL_NO_GPU=1 %s --db t.db %s >/dev/null 2>&1", dir,
                            easel, args),
                 0, "easel %s", args);
}

/* Wait up to 15 s until TEXT is no longer in the pane. */
static void wait_gone(const char *text) {
    for (int i = 0; i < 150; i++) {
        if (!strstr(support_tmux_capture(sock), text))
            return;
        usleep(100000);
    }
    cr_assert_fail("'%s' still on screen:\n%s", text, support_tmux_capture(sock));
}

static void setup(void) {
    if (!support_have("tmux"))
        cr_skip_test("tmux is not installed (the Makefile's DEB_TEST installs it)");
    const char *bin = getenv("EASEL_BIN");
    if (!realpath(bin ? bin : "bin/easel", easel))
        cr_skip_test("bin/easel not found (run from the repository root after make)");
    cr_assert_not_null(realpath(FIX_SD, model), "%s missing", FIX_SD);
    support_tmpdir_make(dir, sizeof dir, "jobspreview");
    snprintf(sock, sizeof sock, "easel-jpv-%d", (int)getpid());
    easel_ok("init");
    /* a job reads its model only in the workspace (the trust rules; qa15: the one registered
     * model, used when none is named, is checked too): a copy there */
    cr_assert_eq(support_sh("cp -r %s %s/tiny", model, dir), 0);
    char args[4200];
    snprintf(args, sizeof args, "models add diffusion %s/tiny --name tiny", dir);
    easel_ok(args);
}

static void teardown(void) {
    if (sock[0])
        support_sh("tmux -L %s kill-server 2>/dev/null", sock);
    if (dir[0])
        support_tmpdir_remove(dir);
}

TestSuite(jobs_preview_tmux, .init = setup, .fini = teardown, .timeout = 120);

Test(jobs_preview_tmux, the_latest_image_of_a_generate_job_appears) {
    char args[600];
    snprintf(args, sizeof args, "jobs add generate --prompt 'a red fox' --seeds 0,1 --steps 2 "
             "--device cpu --out %s/gen", dir);
    easel_ok(args);
    /* --threads 0: the TUI runs no jobs, so the job waits for the worker below */
    support_tmux_new("cd %s && tmux -L %s new-session -d -s e -x 140 -y 40 "
                            "'env -u BXFI_MAP TERM=tmux-256color EASEL_NO_GPU=1 %s --db t.db "
                            "--graphics blocks --threads 0; sleep 60'", dir, sock, easel);
    support_tmux_wait_for(sock, "F4 Jobs");
    keys("F4");
    support_tmux_wait_for(sock, "queued jobs wait for a worker");
    cr_assert_null(strstr(support_tmux_capture(sock), "latest image"),
                   "no preview before the job wrote an image");
    easel_ok("worker --until-idle --threads 1");
    support_tmux_wait_for(sock, "2/2 images");
    support_tmux_wait_for(sock, "latest image");
    support_tmux_wait_for(sock, HALF_BLOCKS);
    /* a second job, queued: it has no image, so selecting it takes the preview away */
    snprintf(args, sizeof args, "jobs add generate --prompt 'a blue boat' --seeds 3 --steps 2 "
             "--device cpu --out %s/gen", dir);
    easel_ok(args);
    support_tmux_wait_for(sock, "1 queued");
    keys("Home");
    wait_gone("latest image");
    wait_gone(HALF_BLOCKS);
    keys("End");
    support_tmux_wait_for(sock, "latest image");
    support_tmux_wait_for(sock, HALF_BLOCKS);
}
