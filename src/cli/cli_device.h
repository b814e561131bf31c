/* cli_device — the --device flag of the commands that run a model (train, eval, score; embed),
 * parsed once: the accepted forms are backend_open's (src/engine/backend.h): auto (a GPU when
 * there is one, else the CPU), cpu, cuda (GPU 0), cuda:N. The default is auto. When a cuda
 * request runs on the CPU (no GPU, or easel built without CUDA), the open gives one line that
 * is printed as "easel: <note>" on stderr.
 */
#ifndef EASEL_CLI_DEVICE_H
#define EASEL_CLI_DEVICE_H

#define CLI_DEVICE_HELP "where the model runs: auto (a GPU when there is one), cpu, cuda or cuda:N"

/* 0 when VALUE is a device backend_open takes; else prints "easel: CMD: --device ..." naming
 * the accepted forms and returns 2 (the usage exit status). */
int cli_device_check(const char *cmd, const char *value);

/* Print NOTE as "easel: NOTE" on stderr (clearing a progress line on a terminal first);
 * nothing when NOTE is NULL or "". */
void cli_device_note(const char *note);

#endif
