/* The embed job kind's --device: which jobs ask the scheduler for a GPU (jobs_add with
 * JOB_GPUS_OF_KIND), bad values refused when the job is added, and a clip embed job asked
 * for CUDA running (on a machine without a GPU: on the CPU, saying so in its log). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "cuda.h"
#include "encoder.h"
#include "jobkind.h"
#include "jobkinds_reward.h"
#include "jobs.h"
#include "store_embed.h"
#include "store_jobs.h"
#include "support.h"

#define FIX "tests/fixtures/clip/"

static JobParams *parse(const char *encoder, const char *device, Err *err) {
    const char *names[2] = {"encoder", "device"}, *values[2] = {encoder, device};
    JobParams *p = NULL;
    job_params_parse(jobkind_find("embed"), device ? 2 : 1, names, values, &p, err);
    return p;
}

Test(embed_device, a_clip_job_off_the_cpu_asks_for_a_gpu) {
    const JobKind *k = jobkind_find("embed");
    cr_assert(k && k->gpus_for);
    struct {
        const char *encoder, *device;
        int gpus;
    } cases[] = {
        {"clip:" FIX "tiny_openclip", "cuda", 1},   {"clip:" FIX "tiny_openclip", "cuda:1", 1},
        {"clip:" FIX "tiny_openclip", NULL, 1},     /* auto: a GPU if the scheduler has one */
        {"clip:" FIX "tiny_openclip", "cpu", 0},    {"classic", NULL, 0},
        {"classic", "cpu", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Err err = {0};
        JobParams *p = parse(cases[i].encoder, cases[i].device, &err);
        cr_assert(p, "%s %s: %s", cases[i].encoder, cases[i].device, err.msg);
        cr_expect_eq(k->gpus_for(p), cases[i].gpus, "%s --device %s", cases[i].encoder,
                     cases[i].device ? cases[i].device : "(auto)");
        job_params_free(p);
    }
    /* jobs_add: no --gpus means the kind's answer; an explicit count is kept */
    Err err = {0};
    Store *st = store_open(":memory:", &err);
    cr_assert(st, "%s", err.msg);
    JobParams *p = parse("classic", "cpu", &err);
    cr_assert(p, "%s", err.msg);
    JobNew jn = {.gpus_wanted = JOB_GPUS_OF_KIND};
    int64_t id;
    cr_assert_eq(jobs_add(st, p, &jn, &id, &err), 0, "%s", err.msg);
    JobRow r;
    cr_assert_eq(store_job_get(st, id, &r, &err), 0);
    cr_expect_eq(r.gpus_wanted, 0);
    store_job_row_deinit(&r);
    jn = (JobNew){.gpus_wanted = 2};
    cr_assert_eq(jobs_add(st, p, &jn, &id, &err), 0, "%s", err.msg);
    cr_assert_eq(store_job_get(st, id, &r, &err), 0);
    cr_expect_eq(r.gpus_wanted, 2);
    store_job_row_deinit(&r);
    job_params_free(p);
    store_close(st);
}

Test(embed_device, bad_devices_are_refused_when_the_job_is_added) {
    const char *bad[] = {"tpu", "cuda:", "cuda:x", "cuda:-1", "gpu"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        Err err = {0};
        JobParams *p = parse("clip:" FIX "tiny_openclip", bad[i], &err);
        cr_expect_null(p, "--device %s accepted", bad[i]);
        cr_expect_eq(err.code, ERR_USAGE);
        cr_expect(strstr(err.msg, "--device is auto, cpu, cuda or cuda:N"), "%s", err.msg);
        job_params_free(p);
    }
    Err err = {0};
    JobParams *p = parse("classic", "cuda", &err);
    cr_expect_null(p);
    cr_expect(strstr(err.msg, "only clip encoders run on a GPU"), "%s", err.msg);
    job_params_free(p);
}

Test(embed_device, a_cuda_job_runs_and_says_where) {
    Err err = {0};
    Store *st = store_open(":memory:", &err);
    cr_assert(st, "%s", err.msg);
    const char *names[2] = {"encoder", "device"};
    const char *values[2] = {"clip:" FIX "tiny_openclip", "cuda"};
    int64_t id;
    cr_assert_eq(support_run_job(st, "embed", 2, names, values, 0, &id, &err), 0, "%s", err.msg);
    JobLogLine *lines;
    int n;
    cr_assert_eq(store_job_log_read(st, id, 0, 0, &lines, &n, &err), 0);
    cr_assert_gt(n, 0);
    const char *last = lines[n - 1].line;
    /* no GPU given by the scheduler here: "cuda" is asked of the backend itself, which on a
     * machine without a GPU runs on the CPU, and the log says so first */
    CudaDevice devs[2];
    int n_dev = 0;
    char why[256];
    cuda_probe(devs, 2, &n_dev, why, sizeof why);
    if (n_dev == 0)
        cr_expect(n == 2 && strncmp(lines[0].line, "note: cuda: ", 12) == 0 &&
                      strstr(lines[0].line, "running on the CPU"), "%s", lines[0].line);
    cr_expect(strstr(last, "encoded 0 images and 0 prompts with clip:" FIX "tiny_openclip on "
                           "cuda"), "%s", last);
    store_job_log_free(lines, n);
    store_close(st);
}

Test(embed_device, auto_without_a_gpu_from_the_scheduler_is_the_cpu) {
    Err err = {0};
    Store *st = store_open(":memory:", &err);
    cr_assert(st, "%s", err.msg);
    const char *names[1] = {"encoder"};
    const char *values[1] = {"clip:" FIX "tiny_openclip"};
    int64_t id;
    cr_assert_eq(support_run_job(st, "embed", 1, names, values, 0, &id, &err), 0, "%s", err.msg);
    JobLogLine *lines;
    int n;
    cr_assert_eq(store_job_log_read(st, id, 0, 0, &lines, &n, &err), 0);
    cr_assert_eq(n, 1, "no note: the CPU was asked for");
    cr_expect(strstr(lines[0].line, "on cpu"), "%s", lines[0].line);
    store_job_log_free(lines, n);
    store_close(st);
}
