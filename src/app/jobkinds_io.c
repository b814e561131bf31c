/* jobkinds_io — the store's imports and exports (src/data/import.h, src/data/export.h) as job kinds,
 * so long imports run in a worker with progress and cancel, queued from the CLI or the TUI:
 *
 *   import   --what prompts|ratings|pairs|generated|images --path FILE_OR_FOLDER
 *            [--annotator NAME]
 *   export   --what ratings|pairs|prompts|template --out FILE [--per-annotator]
 *            [--min-diff 0.5]
 *
 * Both keep the contracts of their modules: an import validates everything and writes in
 * one transaction (cancel → ERR_CANCELLED with nothing written, via the progress hook); an
 * export writes a temporary file beside FILE and renames it (atomic_file.h), so a cancelled or failed job leaves the old file.
 * The job log gets the import report (counts, warnings, every error up to a limit).
 */
#include <stdio.h>
#include <string.h>

#include "export.h"
#include "import.h"
#include "jobkind.h"

#define LOG_LIMIT 50 /* warnings / errors copied into the job log */

/* ---- import ---------------------------------------------------------------------------------- */

static int import_validate(const JobParams *p, Err *err) {
    ImportKind kind;
    return import_kind_parse(job_param_str(p, "what"), &kind, err);
}

static void log_report(JobCtx *ctx, const ImportReport *r, int ok) {
    if (ok)
        job_log(ctx, "read %zu rows: %zu prompts, %zu images (+%zu updated, %zu missing), "
            "%zu annotators, %zu ratings (%zu unchanged), %zu pairs (%zu unchanged) added",
            r->rows, r->prompts_added, r->images_added, r->images_updated, r->images_missing,
            r->annotators_added, r->ratings_added, r->ratings_unchanged, r->pairs_added,
            r->pairs_unchanged);
    for (size_t i = 0; i < r->n_warnings && i < LOG_LIMIT; i++)
        job_log(ctx, "warning: %s", r->warnings[i]);
    if (r->n_warnings > LOG_LIMIT)
        job_log(ctx, "... and %zu more warnings", r->n_warnings - LOG_LIMIT);
    for (size_t i = 0; i < r->n_errors && i < LOG_LIMIT; i++)
        job_log(ctx, "error: %s", r->errors[i]);
    if (r->n_errors > LOG_LIMIT)
        job_log(ctx, "... and %zu more errors", r->n_errors - LOG_LIMIT);
}

static int import_run(JobCtx *ctx, const JobParams *p, Err *err) {
    ImportKind kind;
    int rc = import_kind_parse(job_param_str(p, "what"), &kind, err);
    if (rc)
        return rc;
    const char *annotator = job_param_str(p, "annotator");
    ImportOptions opts = {.annotator = annotator[0] ? annotator : NULL,
                          .progress = job_progress_hooks(ctx), /* checking, then writing */
                          .allow_missing = job_param_bool(p, "allow-missing"),
                          .job_paths = 1};
    const char *path = job_param_str(p, "path");
    job_log(ctx, "importing %s from %s", import_kind_name(kind), path);
    ImportReport report;
    rc = import_path(job_store(ctx), kind, path, &opts, &report, err);
    log_report(ctx, &report, rc == 0);
    if (rc == 0)
        job_progress(ctx, (double)report.rows, (double)report.rows, "rows");
    else if (rc != ERR_CANCELLED)
        job_log(ctx, "nothing was written: the store is as it was before the import");
    import_report_deinit(&report);
    return rc;
}

static const JobParamSpec import_params[] = {
    {"what", JOB_PARAM_CHOICE, "ratings", "what the file holds",
     "prompts|ratings|pairs|generated|images"},
    {"path", JOB_PARAM_PATH, NULL, "the file (or, for images, the folder) to import", NULL},
    {"annotator", JOB_PARAM_STRING, "", "annotator of rating rows without one ($USER if empty)",
     NULL},
    {"allow-missing", JOB_PARAM_BOOL, "false",
     "import image paths not on disk as missing instead of refusing the file", NULL},
    {NULL, 0, NULL, NULL, NULL},
};

const JobKind jobkind_import = {
    .name = "import",
    .summary = "import prompts, ratings, pairs, generation metadata or an image folder",
    .help = "Reads one file of the original system's formats (doc/formats.md) into the store:\n"
            "everything is validated first, then written in one transaction, so a bad file\n"
            "or a cancel leaves the store unchanged. Importing the same file again changes\n"
            "nothing. Ratings never overwrite different existing values.\n\n"
            "example:\n  easel jobs add import --what ratings --path multihead_ratings.csv",
    .params = import_params,
    .validate = import_validate,
    .run = import_run,
};

/* ---- export ---------------------------------------------------------------------------------- */

static int export_validate(const JobParams *p, Err *err) {
    ExportKind kind;
    int rc = export_kind_parse(job_param_str(p, "what"), &kind, err);
    if (rc)
        return rc;
    if (job_param_float(p, "min-diff") < 0)
        return err_set(err, ERR_USAGE, "export --min-diff must be >= 0, got %g",
                       job_param_float(p, "min-diff"));
    return 0;
}

static int export_run(JobCtx *ctx, const JobParams *p, Err *err) {
    ExportKind kind;
    int rc = export_kind_parse(job_param_str(p, "what"), &kind, err);
    if (rc)
        return rc;
    const char *out = job_param_str(p, "out");
    ExportOptions opts;
    export_options_init(&opts);
    opts.per_annotator = job_param_bool(p, "per-annotator");
    opts.min_rating_diff = job_param_float(p, "min-diff");
    /* image paths relative to the output's folder, as `easel export` writes them */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", out);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        opts.relative_to = dir;
    }
    if (job_cancelled(ctx))
        return err_set(err, ERR_CANCELLED, "cancelled before writing %s", out);
    job_log(ctx, "exporting %s to %s", job_param_str(p, "what"), out);
    job_progress(ctx, 0, 1, "files");
    size_t n = 0;
    if ((rc = export_to_file(job_store(ctx), kind, out, &opts, &n, err)))
        return rc;
    job_log(ctx, "wrote %zu rows to %s", n, out);
    job_progress(ctx, 1, 1, "files");
    return 0;
}

static const JobParamSpec export_params[] = {
    {"what", JOB_PARAM_CHOICE, "ratings", "what to write", "ratings|pairs|prompts|template"},
    {"out", JOB_PARAM_PATH, NULL, "output file (written atomically)", NULL},
    {"per-annotator", JOB_PARAM_BOOL, "false", "ratings/pairs per annotator, not the mean",
     NULL},
    {"min-diff", JOB_PARAM_FLOAT, "0.5", "pairs: smallest rating difference that makes a pair",
     NULL},
    {NULL, 0, NULL, NULL, NULL},
};

const JobKind jobkind_export = {
    .name = "export",
    .summary = "export ratings, pairs, prompts or a rating template",
    .help = "Writes the store in the original system's formats (doc/formats.md), atomically\n"
            "(a temporary file, then rename): a failed job leaves the previous file untouched.\n\n"
            "example:\n  easel jobs add export --what pairs --out pairs.jsonl --min-diff 1",
    .params = export_params,
    .validate = export_validate,
    .run = export_run,
};
