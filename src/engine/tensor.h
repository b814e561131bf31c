/* tensor — f32 tensor views and the arena they point into.
 *
 * A Tensor is a view: a data pointer, up to four dimensions with element strides, and the
 * device the data lives on. It owns nothing; whoever owns the memory (an Arena, a model's
 * parameter block, a mmap'd safetensors file) outlives every view of it.
 *
 * An Arena is one block allocated up front and handed out by bumping an offset (64-byte
 * aligned, so BLAS and vector loops get aligned rows). Models size their arenas before a
 * training run — either by arithmetic or by a measuring pass with arena_init_measure(), which
 * counts bytes without memory — and never allocate inside a step. arena_mark/arena_reset free
 * everything allocated after a mark (scratch per step).
 *
 * Engine layer: libc only. Not thread-safe per object (one owner); views may be read from any
 * thread while nobody writes them.
 */
#ifndef EASEL_TENSOR_H
#define EASEL_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define TENSOR_MAX_DIMS 4
#define TENSOR_ALIGN 64 /* bytes: a cache line, an AVX-512 vector */

typedef enum TensorDevice {
    TENSOR_DEVICE_CPU = 0,
    TENSOR_DEVICE_CUDA = 1,
} TensorDevice;

/* Element types. F32 is 0 so a zeroed or designated-initialised Tensor is f32. F16 is IEEE
 * binary16, BF16 the top half of an f32; both are stored as uint16_t and always computed with
 * in f32 (see the conversion helpers below and doc/engine.md). */
typedef enum DType {
    DTYPE_F32 = 0,
    DTYPE_F16 = 1,
    DTYPE_BF16 = 2,
} DType;

typedef struct Tensor {
    union {
        float *data;                  /* first element when dtype is F32; borrowed */
        void *ptr;                    /* first element, any dtype */
    };
    int n_dims;                       /* 0 (scalar) .. TENSOR_MAX_DIMS */
    int64_t shape[TENSOR_MAX_DIMS];   /* unused dims are 1 */
    int64_t stride[TENSOR_MAX_DIMS];  /* in elements; unused dims are 0 */
    TensorDevice device;
    DType dtype;                      /* F32 from every constructor below */
} Tensor;

/* ---- views ---------------------------------------------------------------------------- */

/* A contiguous row-major view of data with the given shape (n_dims <= TENSOR_MAX_DIMS). */
Tensor tensor_view(float *data, int n_dims, const int64_t *shape);
/* Shorthands for contiguous views of 1 to 4 dimensions. */
Tensor tensor_1d(float *data, int64_t d0);
Tensor tensor_2d(float *data, int64_t d0, int64_t d1);
Tensor tensor_3d(float *data, int64_t d0, int64_t d1, int64_t d2);
Tensor tensor_4d(float *data, int64_t d0, int64_t d1, int64_t d2, int64_t d3);

/* A contiguous row-major view of `ptr` holding elements of `dtype` (any device; the pointer
 * is not dereferenced). */
Tensor tensor_view_dtype(void *ptr, DType dtype, int n_dims, const int64_t *shape);

/* Bytes per element of a dtype (4, 2, 2) and its name ("f32", "f16", "bf16"). */
size_t dtype_size(DType dtype);
const char *dtype_name(DType dtype);

/* Number of elements (product of the shape; 1 for a scalar). */
int64_t tensor_numel(const Tensor *t);
/* Bytes of a contiguous tensor's data (elements × dtype_size). */
size_t tensor_nbytes(const Tensor *t);
/* True when the strides are those of a row-major array of the shape (size-1 dims ignored). */
bool tensor_is_contiguous(const Tensor *t);
/* True when both tensors have the same number of dimensions and the same shape. */
bool tensor_same_shape(const Tensor *a, const Tensor *b);

/* Elements [start, start+len) of dimension dim; same data, strides unchanged. */
Tensor tensor_slice(Tensor t, int dim, int64_t start, int64_t len);
/* Index dimension 0 (drops it): the i-th row/matrix. */
Tensor tensor_index(Tensor t, int64_t i);
/* Same data, new shape; t must be contiguous and the element counts equal (ASSERT). */
Tensor tensor_reshape(Tensor t, int n_dims, const int64_t *shape);
/* Swap two dimensions (strides too): a non-contiguous view. */
Tensor tensor_transpose(Tensor t, int d0, int d1);

/* Pointer to element (i0, i1, i2, i3); trailing indices beyond n_dims are ignored. */
float *tensor_ptr(const Tensor *t, int64_t i0, int64_t i1, int64_t i2, int64_t i3);

/* Copy src into dst element by element (any strides, same shape; CPU only). */
void tensor_copy(Tensor *dst, const Tensor *src);
/* Set every element to value (any strides; CPU only). */
void tensor_fill(Tensor *t, float value);

/* ---- f16 / bf16 ---------------------------------------------------------------------- */

/* Scalar conversions. To half: round to nearest, ties to even; NaN stays NaN (quiet, sign
 * kept), ±inf stays ±inf; f16 overflows to ±inf and underflows through subnormals to ±0.
 * From half: exact (every f16 and bf16 value is an f32). */
uint16_t f32_to_f16(float x);
float f16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float x);
float bf16_to_f32(uint16_t h);

/* n elements of dtype at src (F32, F16 or BF16) to f32 at dst, and back. dst and src must not
 * overlap unless both are F32 and identical. */
void dtype_to_f32(float *dst, const void *src, DType dtype, size_t n);
void dtype_from_f32(void *dst, DType dtype, const float *src, size_t n);

/* ---- arena ---------------------------------------------------------------------------- */

typedef struct Arena {
    unsigned char *base; /* the one block; NULL in a measuring arena */
    size_t size;         /* bytes in the block (SIZE_MAX when measuring) */
    size_t used;         /* bytes handed out so far, alignment included */
    size_t peak;         /* high-water mark of used */
    int mapped;          /* base is an anonymous mapping (arena_deinit unmaps it) */
} Arena;

/* Allocate one block of `bytes` (64-byte aligned, zeroed). A large block (1 MiB or more) is
 * an anonymous mapping whose zero pages the kernel provides as they are first touched, so an
 * arena sized for the worst case costs the memory of its peak, not of its size. Returns 0 or
 * ERR_NOMEM. */
int arena_init(Arena *a, size_t bytes, Err *err);
/* A measuring arena: allocations return NULL but advance used/peak, so a planning pass with
 * the real allocation sequence yields the exact size to arena_init() with. */
void arena_init_measure(Arena *a);
/* An arena over a block someone else owns (a device block from a backend's allocator): no
 * allocation, nothing zeroed; arena_deinit must not be called on it (the owner frees). */
void arena_init_over(Arena *a, void *block, size_t bytes);
/* Free the block. Accepts a zeroed or measuring arena. */
void arena_deinit(Arena *a);

/* Bytes rounded up to TENSOR_ALIGN, as the arena counts them. */
size_t arena_round(size_t bytes);
/* Hand out `bytes` (aligned). Running out is a sizing bug: ASSERT. NULL when measuring. */
void *arena_alloc(Arena *a, size_t bytes);
/* n floats. Contents are whatever the block last held (zero right after arena_init). */
float *arena_alloc_f32(Arena *a, size_t n);
/* A contiguous tensor of the shape, allocated from the arena. */
Tensor arena_tensor(Arena *a, int n_dims, const int64_t *shape);

/* Scratch: everything allocated after arena_mark() is released by arena_reset(mark). */
size_t arena_mark(const Arena *a);
void arena_reset(Arena *a, size_t mark);

#endif
