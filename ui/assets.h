/* assets — the files the TUI reads at run time from the assets/ folder: colour themes
 * (themes/NAME.theme), the aspects' rubrics (rubrics/ASPECT.txt) and the help texts of the
 * screens (help/SCREEN.txt). See assets/README.md for their formats.
 *
 * The folder is found, in this order, at $EASEL_ASSETS; next to the binary as ../assets (a
 * build tree: bin/easel and assets/); next to the binary as ../share/easel (an installed
 * tree: PREFIX/bin/easel and PREFIX/share/easel, as `make install` lays it out); and at
 * EASEL_SHARE_DIR, the PREFIX the binary was built for. A folder counts when it exists.
 *
 * Plain C, no ncurses: tested in tests/ui/test_theme.c. Not thread-safe (UI thread, start-up).
 */
#ifndef EASEL_ASSETS_H
#define EASEL_ASSETS_H

#include <stddef.h>

#include "err.h"

/* The assets folder (see above) as a new string the caller frees, or NULL when none exists. */
char *assets_dir(void);

/* The path of REL (e.g. "themes/dark.theme") inside the assets folder as a new string, or
 * NULL when there is no folder or no such file. */
char *assets_path(const char *rel);

/* Read the asset REL (at most 1 MiB) into *TEXT (NUL-terminated; the caller frees). Returns
 * 0, or ERR_NOTFOUND with a message naming where it looked. */
int assets_read(const char *rel, char **text, Err *err);

#endif
