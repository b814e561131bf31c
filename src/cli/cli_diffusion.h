/* cli_diffusion — `easel models add diffusion` (see cli_diffusion.c). */
#ifndef EASEL_CLI_DIFFUSION_H
#define EASEL_CLI_DIFFUSION_H

#include "cli.h"

/* Check the diffusers folder or single-file checkpoint ABS (absolute) and register it as NAME
 * (NULL: the folder's name, or the file's without .safetensors), with TOKENIZER (a single
 * file's tokenizer folder; NULL: a registered CLIP model's) and PREDICTION ("epsilon", "v" or
 * NULL: the model's). Returns the exit status. */
int cli_models_add_diffusion(const CliGlobal *g, const char *abs, const char *name,
                             const char *tokenizer, const char *prediction);

#endif
