/* atomic_file — write a file whole or not at all.
 *
 * atomic_file_open creates a temporary file in the same folder as the final path
 * ("PATH.tmp-PID-N", created with O_EXCL so two writers never share one); the caller writes
 * through atomic_file_stream. atomic_file_commit flushes, fsyncs, closes and renames it over
 * the final path, then fsyncs the folder so the rename survives a crash. atomic_file_abort
 * (or any failed commit) closes and removes the temporary file. Invariant: until a commit
 * succeeds the old file (or its absence) is untouched, and no temporary file is left behind
 * by a failure this process sees. Both commit and abort free the AtomicFile.
 */
#ifndef EASEL_ATOMIC_FILE_H
#define EASEL_ATOMIC_FILE_H

#include <stddef.h>
#include <stdio.h>

#include "err.h"

typedef struct AtomicFile AtomicFile;

/* Start writing PATH: 0 with *out the new AtomicFile, or ERR_IO with *out NULL and err set
 * ("PATH: cannot create a temporary file beside it (reason)") when its folder is missing or
 * not writable. */
int atomic_file_open(const char *path, AtomicFile **out, Err *err);

/* The stream to write to; do not fclose it. */
FILE *atomic_file_stream(const AtomicFile *af);

/* The temporary file's path (for messages and tests); NULL when PATH is a device or FIFO
 * (-o /dev/null, /dev/stdout), which is written into directly, never replaced. */
const char *atomic_file_tmp_path(const AtomicFile *af);

/* Flush, fsync, rename over the final path, fsync the folder. On failure the temporary file
 * is removed, the old file is left as it was, and err names the path and the reason. Frees
 * AF in every case. */
int atomic_file_commit(AtomicFile *af, Err *err);

/* Close and remove the temporary file, leaving the final path as it was. NULL is a no-op. */
void atomic_file_abort(AtomicFile *af);

/* Write N bytes of DATA to PATH atomically (open + fwrite + commit). */
int atomic_file_write(const char *path, const void *data, size_t n, Err *err);

/* fsync the folder holding PATH, so a rename or create inside it is durable. Best effort. */
void atomic_file_sync_dir(const char *path);

#endif
