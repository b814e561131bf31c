/* cli_device — see cli_device.h. */
#include "cli_device.h"

#include <stdio.h>
#include <unistd.h>

#include "backend.h"
#include "cli.h"
#include "cli_escape.h"

int cli_device_check(const char *cmd, const char *value) {
    int kind, index;
    Err err = {0};
    if (backend_spec_parse(value, &kind, &index, &err) == 0)
        return 0;
    cli_error("%s: --device: %s", cmd, err.msg);
    return 2;
}

void cli_device_note(const char *note) {
    if (!note || !note[0])
        return;
    if (isatty(2))
        cli_escape_raw(stderr, "\r\033[K");
    cli_error("%s", note);
}
