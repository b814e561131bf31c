/* fmt_safetensors — read and write the safetensors format (Hugging Face), on jansson.
 *
 * File layout: 8-byte little-endian header length N, N bytes of JSON (UTF-8, padded with
 * spaces), then the data buffer. The JSON maps each tensor name to {"dtype", "shape",
 * "data_offsets": [begin, end]} (offsets relative to the data buffer) and may hold
 * "__metadata__", a flat object of string values.
 *
 * Reading memory-maps the file read-only and validates the whole header before anything is
 * returned: JSON well formed, no duplicate names, every dtype known, shapes non-negative,
 * offsets inside the file, end - begin == product(shape) * element size, no two tensors
 * overlapping. Errors name the file and the tensor (truncated file, bad JSON, not a
 * safetensors file, ...). Tensors are then found by name and read as f32 (any float or
 * integer dtype converted), or borrowed zero-copy when they are f32 and aligned.
 *
 * Writing collects tensors (borrowed data) and metadata, then writes the file atomically:
 * a temporary file beside PATH, fsync, rename over PATH, fsync of the folder. The bytes are
 * those the Python `safetensors` package writes for the same tensors (metadata first, keys in
 * the order set, tensors by dtype rank descending then name, header padded to 8 bytes), which
 * tests/io/test_safetensors.c checks against files that package made.
 *
 * Thread safety: an open SafeTensors is read-only and may be shared by threads; a
 * SafeTensorsWriter belongs to one thread.
 */
#ifndef EASEL_FMT_SAFETENSORS_H
#define EASEL_FMT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Element types of the format. The order is the Python package's rank order (its writer
 * sorts tensors by it), so do not reorder. */
typedef enum StDtype {
    ST_BOOL,
    ST_U8,
    ST_I8,
    ST_F8_E5M2,
    ST_F8_E4M3,
    ST_I16,
    ST_U16,
    ST_F16,
    ST_BF16,
    ST_I32,
    ST_U32,
    ST_F32,
    ST_F64,
    ST_I64,
    ST_U64,
    ST_N_DTYPES
} StDtype;

#define ST_MAX_DIMS 8

typedef struct StTensor {
    const char *name;             /* borrowed from the SafeTensors */
    StDtype dtype;
    int n_dim;                    /* 0 for a scalar */
    int64_t shape[ST_MAX_DIMS];
    int64_t n_elem;               /* product of shape (1 for a scalar) */
    uint64_t offset;              /* begin, relative to the data buffer */
    uint64_t n_bytes;             /* end - begin */
    const void *data;             /* into the mapping; valid until safetensors_close */
} StTensor;

typedef struct SafeTensors SafeTensors;

/* ---- dtypes -------------------------------------------------------------------------------- */

/* "F32", "BF16", ...; and the reverse (-1 if unknown). */
const char *safetensors_dtype_name(StDtype dt);
int safetensors_dtype_parse(const char *name);
/* Bytes per element. */
size_t safetensors_dtype_size(StDtype dt);

/* IEEE half and bfloat16 <-> float. To-half rounds to nearest even, overflows to inf. */
float safetensors_f16_to_f32(uint16_t h);
float safetensors_bf16_to_f32(uint16_t b);
uint16_t safetensors_f32_to_f16(float f);
uint16_t safetensors_f32_to_bf16(float f);

/* ---- reading ------------------------------------------------------------------------------- */

/* Map and validate PATH. Returns NULL and sets err (ERR_IO: cannot open/map; ERR_FORMAT:
 * not safetensors, truncated, bad JSON, bad tensor entry — the message names PATH and the
 * tensor). The caller frees with safetensors_close. */
SafeTensors *safetensors_open(const char *path, Err *err);
void safetensors_close(SafeTensors *st); /* NULL allowed; unmaps all tensor data */

const char *safetensors_path(const SafeTensors *st);

/* Tensors in file order (ascending offset). Borrowed; valid until close. */
size_t safetensors_count(const SafeTensors *st);
const StTensor *safetensors_at(const SafeTensors *st, size_t i);

/* The tensor called NAME, or NULL. O(log n). */
const StTensor *safetensors_find(const SafeTensors *st, const char *name);

/* A "__metadata__" value, or NULL. Borrowed; valid until close. Keys are listed by
 * safetensors_metadata_key (NULL past the end), in file order. */
const char *safetensors_metadata(const SafeTensors *st, const char *key);
const char *safetensors_metadata_key(const SafeTensors *st, size_t i);

/* Copy T as f32 into OUT, which holds N floats; N must equal t->n_elem. Floats and
 * integers convert (f16, bf16, f8 exactly; f64/i64 rounded), BOOL gives 0/1. Returns 0, or
 * ERR_USAGE if N is wrong. */
int safetensors_read_f32(const SafeTensors *st, const StTensor *t, float *out, size_t n,
                         Err *err);

/* mem15: Elements [FIRST, FIRST + N) of T as f32 into OUT (N floats), converted as
 * safetensors_read_f32 converts them: a bounded piece of a large tensor. ERR_USAGE when the
 * range is not inside T. */
int safetensors_read_f32_range(const SafeTensors *st, const StTensor *t, size_t first,
                               size_t n, float *out, Err *err);
/* mem15: Say that T's elements [FIRST, FIRST + N) were read and are not needed again soon:
 * their mapped pages (rounded out to whole pages) leave this process's resident set
 * (madvise MADV_DONTNEED; the kernel's page cache may keep them, and a later read maps them
 * again, so nothing is lost). T must be a tensor of ST, or a view into its mapping (else
 * nothing is done). */
void safetensors_release(const SafeTensors *st, const StTensor *t, size_t first, size_t n);

/* T's data as const float * without copying when T is F32 and 4-byte aligned in the
 * mapping (the Python writer guarantees it); else NULL. Valid until close. */
const float *safetensors_f32_view(const StTensor *t);

/* ---- writing ------------------------------------------------------------------------------- */

typedef struct SafeTensorsWriter SafeTensorsWriter;

SafeTensorsWriter *safetensors_writer_new(void);
void safetensors_writer_free(SafeTensorsWriter *w); /* NULL allowed */

/* Add a tensor: NAME is copied; DATA (little-endian elements of DT, product(shape) of them)
 * is borrowed until safetensors_writer_save returns. Returns ERR_CONFLICT for a duplicate
 * name, ERR_USAGE for a bad name ("", "__metadata__") or shape. */
int safetensors_writer_add(SafeTensorsWriter *w, const char *name, StDtype dt, int n_dim,
                           const int64_t *shape, const void *data, Err *err);

/* Set a "__metadata__" entry (both strings copied; a repeated key replaces the value and
 * keeps its place). Keys are written in the order first set. */
void safetensors_writer_meta(SafeTensorsWriter *w, const char *key, const char *value);

/* Write everything to PATH atomically (temp file + fsync + rename). Returns 0 or ERR_IO
 * naming PATH; on failure PATH is untouched and no temp file is left. */
int safetensors_writer_save(SafeTensorsWriter *w, const char *path, Err *err);

#endif
