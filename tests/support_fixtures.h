/* support_fixtures — test pictures, small stores of real images and real-terminal (Xvfb + xterm)
 * helpers shared by the non-engine tests (linked with tests/support_*.c; see support.h).
 *
 * Every helper fails the calling test through Criterion when something the test cannot go on
 * without is missing, so callers need no error handling.
 */
#ifndef EASEL_TESTS_SUPPORT_FIXTURES_H
#define EASEL_TESTS_SUPPORT_FIXTURES_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "fmt_safetensors.h"
#include "store.h"

/* As support_vrun_buf, variadic: a test's one-line `run` is
 *   #define run(...) support_run_buf(dir, out, sizeof out, __VA_ARGS__)  */
int support_run_buf(const char *dir, char *buf, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A fresh folder (as support_tmpdir_make) holding a new, empty store NAME; the store's path
 * into DB (N_DB bytes). */
void support_tmpdir_store(char *dir, size_t n, const char *tag, const char *name, char *db,
                          size_t n_db);

/* 1 when a line of job ID's log (in store ST) contains NEEDLE. */
int support_job_log_has(Store *st, int64_t id, const char *needle);

/* Claim the next queued job of ST as worker WORKER of HOST, process PID (one GPU share), as a
 * worker process does; fails the test when none is claimed. Returns the job's id. */
int64_t support_job_claim(Store *st, const char *worker, const char *host, int pid);

/* Criterion's own main, for a test with a main of its own (one that is also the program a
 * tmux pane runs): run the tests ARGV selects; 0 when all passed. */
int support_criterion_main(int argc, char **argv);

/* Write the W x H RGB pixels RGB (rows packed) as the PNG file PATH. */
void support_png_write(const char *path, int w, int h, const unsigned char *rgb);

/* As support_tmpdir_make, in /dev/shm when it is writable (tmpfs: checkpoints fsync every
 * file, which a disk makes slow), with an empty folder "img" in it. */
void support_shm_tmpdir_make(char *dir, size_t n, const char *tag);

/* Skip the test unless every program of TOOLS (NULL-terminated) is on PATH; the reason names
 * the missing one, then WHY (what needs them and what installs them). */
void support_need_tools(const char *const *tools, const char *why);

/* DIR/t.db made by EASEL (`init`) with one prompt (id 1, ext_id 'p1', text PROMPT) and one
 * image (id 1): the W x H RGB pixels RGB written to DIR/NAME. Needs the sqlite3 CLI. */
void support_one_image_store(const char *easel, const char *dir, const char *prompt,
                             const char *name, int w, int h, const unsigned char *rgb);

/* A synthetic store at DB of N_PROMPTS prompts (ext_id EXT_PREFIX + index, text TEXT_PREFIX +
 * index), PER_PROMPT images each at DIR/img/P_K.png (ids in that order), drawn by IMAGE, which
 * also fills the five aspect ratings of annotator "planter" (NAN: not rated). One
 * transaction. */
typedef struct SupportSynth {
    int n_prompts, per_prompt;
    const char *ext_prefix, *text_prefix;
    void (*image)(const char *path, int prompt, int k, double rating[5], void *user);
    void *user;
} SupportSynth;
void support_synth_store(const char *dir, const char *db, const SupportSynth *synth);

/* A real-terminal test's state: its folder, bin/easel, the Xvfb display and the xterm on it. */
typedef struct SupportX {
    char dir[64];
    char easel[4096];
    int display;
    pid_t xvfb, xterm;
} SupportX;

/* Skip unless the programs of TOOLS are there (as support_need_tools, WHY); then bin/easel's
 * path, a fresh folder (support_tmpdir_make with TAG) and a started Xvfb into X. */
void support_x_setup(SupportX *x, const char *tag, const char *const *tools, const char *why);

/* Stop X's xterm and Xvfb, remove its folder (kept, and said so, when $EASEL_KEEP is set). */
void support_x_teardown(SupportX *x);

/* An xterm (vt340 sixel, 256 colour registers, no border or blinking cursor, synthetic key
 * events allowed) of COLS x ROWS at the top left of X display DISPLAY running the shell
 * command CMD; returns its pid (stop it with support_stop). */
pid_t support_xterm_start(int display, int cols, int rows, const char *cmd);

/* Screenshot X display DISPLAY into DIR/NAME.png, again every DELAY_US microseconds until two
 * in a row agree (a frame is logged before it is written), at most 50 times. */
void support_xwd_settled(int display, const char *dir, const char *name, unsigned delay_us);

/* Scan the log file PATH: on each line that holds ALSO (NULL: any line) and KEY, the vsscanf
 * of FMT from KEY on fills the N pointers that follow. 1 when some line filled all N (the
 * last such line's values stay), else 0. */
int support_log_scan(const char *path, const char *also, const char *key, const char *fmt,
                     int n, ...) __attribute__((format(scanf, 4, 6)));

/* The PSNR in dB of images A and B (paths relative to DIR, or absolute); 999 when they are
 * identical. Needs ImageMagick's compare. */
double support_psnr(const char *dir, const char *a, const char *b);

/* The reference tensors in the safetensors file PATH (safetensors_close them). */
SafeTensors *support_st_open(const char *path);

/* Tensor NAME of REF, which must be there and f32; its element count into *N. */
const float *support_st_f32(const SafeTensors *ref, const char *name, int64_t *n);

/* Fail unless GOT and WANT (N floats each) agree within TOL everywhere: in absolute error, or
 * with RELATIVE in error over max(1, |want|). The message names WHAT and the worst element. */
void support_assert_close(const float *got, const float *want, int64_t n, float tol,
                          int relative, const char *what);

/* dedup16: the generation CLI tests' shared setup and check. support_cli_store: a temporary
 * folder DIR (support_tmpdir_make with TAG) holding DIR/s.db made by `bin/easel --db DB init`
 * (DB: its path). support_psnr_rgb: the PSNR (dB; INFINITY when equal) of the 64x64 PNG PNG
 * against RGB_FILE, raw 64*64*3 bytes (diffusers' image). */
void support_cli_store(char *dir, size_t n, const char *tag, char *db, size_t n_db);
double support_psnr_rgb(const char *png, const char *rgb_file);

#endif
