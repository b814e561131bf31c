/* base_is_file / base_is_dir: what the model loaders ask of a path. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "base.h"

Test(base_paths, files_folders_links_and_nothing) {
    char dir[] = "/tmp/easel-paths-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char *f = xasprintf("%s/f", dir), *l = xasprintf("%s/l", dir), *n = xasprintf("%s/n", dir);
    FILE *fp = fopen(f, "w");
    cr_assert_not_null(fp);
    fclose(fp);
    cr_assert_eq(symlink(f, l), 0);
    cr_assert(base_is_file(f) && !base_is_dir(f));
    cr_assert(base_is_dir(dir) && !base_is_file(dir));
    cr_assert(base_is_file(l), "a link to a file is a file");
    cr_assert(!base_is_file(n) && !base_is_dir(n) && !base_is_file(NULL) && !base_is_dir(NULL));
    unlink(l), unlink(f), rmdir(dir);
    free(f), free(l), free(n);
}
