/* cli_diffusion — `easel models add diffusion` (see cli_diffusion.c). */
#ifndef EASEL_CLI_DIFFUSION_H
#define EASEL_CLI_DIFFUSION_H

#include "cli.h"

/* Check the diffusers folder ABS (absolute) and register it as NAME. Returns the exit status. */
int cli_models_add_diffusion(const CliGlobal *g, const char *abs, const char *name);

#endif
