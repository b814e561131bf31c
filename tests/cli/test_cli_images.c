/* Tests for src/cli/cli_images.c through bin/easel: `easel images list|retire|unretire` on a real
 * store, what status and export say about retired images, and that no rating is ever lost. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"
#include "support_fixtures.h"

static char easel[4096], dir[64], fix[4096], out[65536];

/* Run a shell command in DIR; stdout+stderr into out; returns the exit status. */
#define run(...) support_run_buf(dir, out, sizeof out, __VA_ARGS__)

static void setup(void) {
    support_easel_path(easel, sizeof easel);
    cr_assert_not_null(realpath("tests/fixtures/import", fix));
    support_tmpdir_make(dir, sizeof dir, "cliimg");
    cr_assert_eq(run("%s --db w.db init && cp -r %s/images images && "
                     "%s --db w.db import prompts %s/prompts_good.csv && "
                     "%s --db w.db import images images && "
                     "printf 'prompt_id,image_path,spatial_rating,style_rating,annotator\\n"
                     "1,images/1/0.png,3,4,ann\\n1,images/1/1.png,8,9,ann\\n' > r.csv && "
                     "%s --db w.db import ratings r.csv",
                     easel, fix, easel, fix, easel, easel),
                 0, "%s", out);
}

static void teardown(void) { support_tmpdir_remove(dir); }

TestSuite(cli_images, .init = setup, .fini = teardown, .timeout = 60);

Test(cli_images, help_and_usage) {
    cr_assert_eq(run("%s images --help", easel), 0, "%s", out);
    cr_assert(strstr(out, "usage: easel") && strstr(out, "example") && strstr(out, "retire"), "%s",
              out);
    cr_assert_eq(run("%s --db w.db images", easel), 2, "%s", out);
    cr_assert_eq(run("%s --db w.db images retire", easel), 2, "%s", out);
    cr_assert_eq(run("%s --db w.db images retire 1 --resaon x", easel), 2, "%s", out);
    cr_assert(strstr(out, "did you mean '--reason'"), "%s", out);
    cr_assert_eq(run("%s --db w.db images retire 99999999999999999999", easel), 2, "%s", out);
    cr_assert_eq(run("%s --db w.db images list --retired --missing", easel), 2, "%s", out);
    cr_assert_eq(run("%s --help", easel), 0, "%s", out);
    cr_assert(strstr(out, "images"), "the command is not listed: %s", out);
}

Test(cli_images, retire_list_status_export_unretire) {
    cr_assert_eq(run("%s --db w.db export ratings | grep -c images/1/", easel), 0, "%s", out);
    cr_assert_eq(atoi(out), 2, "%s", out);
    cr_assert_eq(run("%s --db w.db images retire images/1/0.png --reason 'blurry copy'", easel), 0,
                 "%s", out);
    cr_assert(strstr(out, "retired image") && strstr(out, "2 ratings are kept"), "%s", out);
    cr_assert_eq(run("%s --db w.db images list --retired", easel), 0, "%s", out);
    cr_assert(strstr(out, "images/1/0.png") && strstr(out, "blurry copy") &&
                  !strstr(out, "images/1/1.png"),
              "%s", out);
    cr_assert_eq(run("%s --db w.db status", easel), 0, "%s", out);
    cr_assert(strstr(out, "1 retired"), "%s", out);
    cr_assert(strstr(out, "ratings     4 "), "every rating is still counted: %s", out);
    cr_assert_eq(run("%s --db w.db status --json", easel), 0, "%s", out);
    cr_assert(strstr(out, "\"images_retired\": 1"), "%s", out);
    /* training data (the exported ratings) leaves it out */
    cr_assert_eq(run("%s --db w.db export ratings | grep -c images/1/", easel), 0, "%s", out);
    cr_assert_eq(atoi(out), 1, "%s", out);
    /* back, by id */
    cr_assert_eq(run("%s --db w.db images list --retired --json", easel), 0, "%s", out);
    const char *idp = strstr(out, "\"id\": ");
    cr_assert_not_null(idp, "%s", out);
    int id = atoi(idp + 6);
    cr_assert_eq(run("%s --db w.db images unretire %d", easel, id), 0, "%s", out);
    cr_assert(strstr(out, "in use again, with its 2 ratings"), "%s", out);
    cr_assert_eq(run("%s --db w.db images list --retired", easel), 0, "%s", out);
    cr_assert(strstr(out, "no retired images"), "%s", out);
    cr_assert_eq(run("%s --db w.db export ratings | grep -c images/1/", easel), 0, "%s", out);
    cr_assert_eq(atoi(out), 2, "%s", out);
}

Test(cli_images, unknown_image_changes_nothing) {
    cr_assert_eq(run("%s --db w.db images retire 1 images/nope.png", easel), 1, "%s", out);
    cr_assert(strstr(out, "nope.png") && strstr(out, "nothing was changed"), "%s", out);
    cr_assert_eq(run("%s --db w.db images list --retired", easel), 0, "%s", out);
    cr_assert(strstr(out, "no retired images"), "image 1 was retired anyway: %s", out);
}

Test(cli_images, control_characters_in_a_reason_are_shown_escaped) {
    cr_assert_eq(run("%s --db w.db images retire images/1/1.png --reason \"$(printf "
                     "'x\\033]0;pwned\\007')\"",
                     easel),
                 0, "%s", out);
    cr_assert_eq(run("%s --db w.db images list --retired", easel), 0, "%s", out);
    cr_assert(strstr(out, "x\\x1b]0;pwned\\x07") != NULL, "%s", out);
    cr_assert(strchr(out, '\033') == NULL, "an escape reached the terminal");
    /* the JSON keeps the exact text */
    cr_assert_eq(run("%s --db w.db images list --retired --json", easel), 0, "%s", out);
    cr_assert(strstr(out, "x\\u001B]0;pwned\\u0007") != NULL, "%s", out);
}
