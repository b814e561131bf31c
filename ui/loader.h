/* loader — run a screen's slow store reads on a background thread, so the UI never waits.
 *
 * A screen whose data takes long to compute on a big store (the Annotate queue over 50 000
 * images, the Quality screen's agreement over 400 000 ratings) creates a loader with a LOAD
 * function. ui_loader_request hands it an argument; the loader's thread, with its own Store
 * connection (STYLE.md §5), runs LOAD(store, arg) and keeps the result; app_wake() then makes
 * the screen's tick call ui_loader_take. A newer request replaces one not yet started; a result
 * not taken is replaced by the next one. The thread never touches ncurses.
 *
 * Ownership: ARG is handed over at request (freed with FREE_ARG after LOAD ran or when it is
 * replaced); a taken result is the caller's (free it with the FREE_RESULT given at creation).
 * All functions but LOAD run on the UI thread.
 */
#ifndef EASEL_LOADER_H
#define EASEL_LOADER_H

#include <stddef.h>

#include "err.h"
#include "store.h"

typedef struct UiLoader UiLoader;

/* Runs on the loader thread. Returns a new result, or NULL with err set. */
typedef void *(*UiLoadFn)(Store *st, void *arg, Err *err);

/* Start a loader thread on the store file DB_PATH (copied); WAKE(WAKE_DATA) is called from
 * the thread after each load (screens pass app_wake and the App). NULL with err set if the
 * thread cannot start. */
UiLoader *ui_loader_new(const char *db_path, void (*wake)(void *), void *wake_data,
                        UiLoadFn load, void (*free_arg)(void *), void (*free_result)(void *),
                        Err *err);
void ui_loader_free(UiLoader *l);   /* waits for a LOAD in progress; NULL-safe */

/* Ask for a load with ARG (handed over; may be NULL). */
void ui_loader_request(UiLoader *l, void *arg);

/* The newest finished result, or NULL (nothing new). If that load failed, NULL is returned
 * and its message copied to MSG (MSG may be NULL); *failed (may be NULL) is set to 1. */
void *ui_loader_take(UiLoader *l, int *failed, char *msg, size_t msg_size);

/* 1 while a request is queued or running. */
int ui_loader_busy(UiLoader *l);

#endif
