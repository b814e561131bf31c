/* store_agreement — load one aspect's ratings from the store as an AgreeTable (agreement.h),
 * and a one-call report (tables + statistics for every aspect) for the CLI and the Quality
 * screen.
 *
 * The table holds the CURRENT value of every rating (history is not agreement data). Rows are
 * the images with at least one rating of the aspect, in image-id order; columns are the
 * annotators who rated the aspect, in name order; item_ids are store image ids, item_labels
 * the stored image paths (see store_path_resolve), rater_names the annotator names.
 *
 * Read-only: one read transaction per call, so the table is a consistent snapshot even while
 * annotators are writing. Thread safety: as Store (one connection per thread).
 */
#ifndef EASEL_STORE_AGREEMENT_H
#define EASEL_STORE_AGREEMENT_H

#include "agreement.h"
#include "err.h"
#include "store.h"

/* The aspects in their position order. *names is a new array of new strings; free with
 * store_agreement_names_free(names, n). Returns 0 or ERR_*. */
int store_agreement_aspects(Store *st, char ***names, int *n, Err *err);
void store_agreement_names_free(char **names, int n);

/* The ratings table of ASPECT. Returns a new table (free with agreement_table_free), or NULL
 * with err set: ERR_NOTFOUND when no aspect has that name (the message lists the aspects),
 * ERR_DB/ERR_BUSY from SQLite. A store without ratings gives a 0×0 table, not an error. */
AgreeTable *store_agreement_table(Store *st, const char *aspect, Err *err);

/* Tables and statistics of one aspect (ASPECT not NULL) or of every aspect in position order.
 * OPT may be NULL. */
typedef struct AgreeReport {
    int n;                 /* aspects */
    AgreeTable **tables;   /* n, owned */
    AgreeStats **stats;    /* n, owned; stats[i] refers to tables[i] by row/column */
} AgreeReport;

/* Returns a new report the caller frees with store_agreement_report_free, or NULL and err. */
AgreeReport *store_agreement_report(Store *st, const char *aspect, const AgreeOptions *opt,
                                    Err *err);
void store_agreement_report_free(AgreeReport *r);

#endif
