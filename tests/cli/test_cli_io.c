/* Tests for src/cli/cli_io.c through bin/easel as a user runs it: exit codes 0/1/2, "easel:"
 * errors on stderr, --help with an example, import/export/status on real files, and 8
 * `easel import ratings` processes at once on one store. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "support.h"
#include "support_fixtures.h"

static char easel[4096], dir[64], fix[4096], out[65536];

/* Run a shell command in DIR; stdout+stderr into out; returns the exit status. */
#define run(...) support_run_buf(dir, out, sizeof out, __VA_ARGS__)

static void setup(void) {
    support_easel_path(easel, sizeof easel);
    cr_assert_not_null(realpath("tests/fixtures/import", fix));
    support_tmpdir_make(dir, sizeof dir, "cliio");
    cr_assert_eq(run("%s --db w.db init", easel), 0, "%s", out);
}

static void teardown(void) {
    support_tmpdir_remove(dir);
}

TestSuite(cli_io, .init = setup, .fini = teardown, .timeout = 60);

Test(cli_io, help_has_an_example) {
    const char *cmds[] = {"import", "export", "status"};
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(run("%s %s --help", easel, cmds[i]), 0, "%s", out);
        cr_assert(strstr(out, "usage: easel") && strstr(out, "example"), "%s", out);
    }
}

Test(cli_io, usage_errors_exit_2) {
    cr_assert_eq(run("%s --db w.db import", easel), 2, "%s", out);
    cr_assert(strncmp(out, "easel: ", 7) == 0, "%s", out);
    cr_assert_eq(run("%s --db w.db import sideways x.csv", easel), 2, "%s", out);
    cr_assert_eq(run("%s --db w.db import ratings x.csv --bogus", easel), 2, "%s", out);
    cr_assert_eq(run("%s --db w.db import ratings x.csv --annotator", easel), 2, "%s", out);
    cr_assert_eq(run("%s --db w.db export", easel), 2, "%s", out);
    cr_assert_eq(run("%s --db w.db export pairs --min-rating-diff -1", easel), 2, "%s", out);
    cr_assert_eq(run("%s --db w.db export prompts --per-annotator", easel), 2, "%s", out);
    cr_assert_eq(run("%s --db w.db status extra", easel), 2, "%s", out);
}

Test(cli_io, bad_file_exits_1_and_names_the_line) {
    cr_assert_eq(run("%s --db w.db import prompts %s/prompts_good.csv", easel, fix), 0, "%s", out);
    cr_assert_eq(run("%s --db w.db import ratings %s/bad/ratings_out_of_range.csv", easel, fix), 1,
                 "%s", out);
    cr_assert(strstr(out, "easel: ") == out, "%s", out);
    cr_assert(strstr(out, "ratings_out_of_range.csv:3: style_rating \"11\" is outside 0..10"),
              "%s", out);
    cr_assert(strstr(out, "nothing was imported"), "%s", out);
    cr_assert_eq(run("%s --db w.db import ratings %s/nope.csv", easel, fix), 1, "%s", out);
    cr_assert_eq(run("%s --db missing.db status", easel), 1, "%s", out);
    cr_assert(strstr(out, "easel init"), "%s", out);
}

Test(cli_io, import_export_status_round_trip) {
    cr_assert_eq(run("%s --db w.db import prompts %s/prompts_good.csv", easel, fix), 0, "%s", out);
    cr_assert_eq(run("%s --db w.db import ratings %s/ratings_good.csv --allow-missing "
                     "2>/dev/null",
                     easel, fix),
                 0, "%s", out);
    cr_assert(strstr(out, "29 ratings added"), "%s", out);
    cr_assert_eq(run("%s --db w.db import ratings %s/ratings_good.csv --allow-missing "
                     "2>/dev/null",
                     easel, fix),
                 0, "%s", out);
    cr_assert(strstr(out, "0 ratings added, 29 already there"), "%s", out);
    cr_assert_eq(run("%s --db w.db export ratings --per-annotator -o r1.csv", easel), 0, "%s", out);
    cr_assert(strstr(out, "wrote 8 rows to r1.csv"), "%s", out);
    cr_assert_eq(run("%s --db v.db init && %s --db v.db import prompts %s/prompts_good.csv && "
                     "%s --db v.db import ratings r1.csv --allow-missing 2>/dev/null && "
                     "%s --db v.db export ratings --per-annotator -o r2.csv && cmp r1.csv r2.csv",
                     easel, easel, fix, easel, easel),
                 0, "%s", out);
    cr_assert_eq(run("%s --db w.db export pairs --min-rating-diff 1 | wc -l", easel), 0, "%s", out);
    cr_assert_eq(atoi(out), 7, "%s", out);
    cr_assert_eq(run("%s --db w.db status --json", easel), 0, "%s", out);
    cr_assert(strstr(out, "\"ratings\": 29") && strstr(out, "\"annotators\": 2"), "%s", out);
    cr_assert_eq(run("%s --db w.db status", easel), 0, "%s", out);
    cr_assert(strstr(out, "images      6 (6 rated, 1 missing on disk, 0 retired)"), "%s", out);
}

Test(cli_io, eight_easel_processes_import_at_once) {
    cr_assert_eq(run("%s --db w.db import prompts %s/prompts_good.csv", easel, fix), 0, "%s", out);
    for (int p = 0; p < 8; p++) {
        char path[200];
        snprintf(path, sizeof path, "%s/r%d.csv", dir, p);
        FILE *f = fopen(path, "w");
        fputs("prompt_id,image_path,spatial_rating,icono_rating,style_rating,fidelity_rating,"
              "material_rating\n", f);
        for (int i = 0; i < 40; i++)
            fprintf(f, "1,img/%d.png,%d,1,2,3,4\n", i, (p + i) % 11);
        fclose(f);
    }
    cr_assert_eq(run("for p in 0 1 2 3 4 5 6 7; do "
                     "(%s --db w.db import ratings r$p.csv --annotator u$p --allow-missing "
                     ">o$p 2>e$p; "
                     "echo $? >rc$p) & done; wait; cat rc* | sort -u; cat e* | grep -v warning; true",
                     easel),
                 0, "%s", out);
    cr_assert_str_eq(out, "0\n", "an import failed or printed an error: %s", out);
    cr_assert_eq(run("%s --db w.db status --json", easel), 0, "%s", out);
    cr_assert(strstr(out, "\"ratings\": 1600"), "%s", out);
    cr_assert(strstr(out, "\"images\": 40"), "%s", out);
}
