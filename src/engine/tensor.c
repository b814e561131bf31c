/* tensor — views and the bump arena. See tensor.h.
 *
 * Views are plain structs passed by value; every function here is arithmetic on shapes and
 * strides except tensor_copy/tensor_fill, which walk four nested loops so any stride works.
 */
#include "tensor.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "base.h"

static void set_contiguous_strides(Tensor *t) {
    int64_t s = 1;
    for (int d = TENSOR_MAX_DIMS - 1; d >= 0; d--) {
        if (d >= t->n_dims) {
            t->shape[d] = 1;
            t->stride[d] = 0;
            continue;
        }
        t->stride[d] = s;
        s *= t->shape[d];
    }
}

Tensor tensor_view(float *data, int n_dims, const int64_t *shape) {
    ASSERT(n_dims >= 0 && n_dims <= TENSOR_MAX_DIMS);
    Tensor t;
    memset(&t, 0, sizeof t);
    t.data = data;
    t.n_dims = n_dims;
    for (int d = 0; d < n_dims; d++) {
        ASSERT(shape[d] >= 0);
        t.shape[d] = shape[d];
    }
    set_contiguous_strides(&t);
    t.device = TENSOR_DEVICE_CPU;
    return t;
}

Tensor tensor_view_dtype(void *ptr, DType dtype, int n_dims, const int64_t *shape) {
    Tensor t = tensor_view(NULL, n_dims, shape);
    t.ptr = ptr;
    t.dtype = dtype;
    return t;
}

size_t dtype_size(DType dtype) { return dtype == DTYPE_F32 ? 4 : 2; }

const char *dtype_name(DType dtype) {
    switch (dtype) {
    case DTYPE_F32: return "f32";
    case DTYPE_F16: return "f16";
    case DTYPE_BF16: return "bf16";
    }
    return "?";
}

Tensor tensor_1d(float *data, int64_t d0) { return tensor_view(data, 1, (int64_t[]){d0}); }
Tensor tensor_2d(float *data, int64_t d0, int64_t d1) {
    return tensor_view(data, 2, (int64_t[]){d0, d1});
}
Tensor tensor_3d(float *data, int64_t d0, int64_t d1, int64_t d2) {
    return tensor_view(data, 3, (int64_t[]){d0, d1, d2});
}
Tensor tensor_4d(float *data, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    return tensor_view(data, 4, (int64_t[]){d0, d1, d2, d3});
}

int64_t tensor_numel(const Tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->n_dims; d++)
        n *= t->shape[d];
    return n;
}

size_t tensor_nbytes(const Tensor *t) { return (size_t)tensor_numel(t) * dtype_size(t->dtype); }

bool tensor_is_contiguous(const Tensor *t) {
    int64_t s = 1;
    for (int d = t->n_dims - 1; d >= 0; d--) {
        if (t->shape[d] == 1)
            continue;
        if (t->stride[d] != s)
            return false;
        s *= t->shape[d];
    }
    return true;
}

bool tensor_same_shape(const Tensor *a, const Tensor *b) {
    if (a->n_dims != b->n_dims)
        return false;
    for (int d = 0; d < a->n_dims; d++)
        if (a->shape[d] != b->shape[d])
            return false;
    return true;
}

Tensor tensor_slice(Tensor t, int dim, int64_t start, int64_t len) {
    ASSERT(dim >= 0 && dim < t.n_dims);
    ASSERT(start >= 0 && len >= 0 && start + len <= t.shape[dim]);
    t.data += start * t.stride[dim];
    t.shape[dim] = len;
    return t;
}

Tensor tensor_index(Tensor t, int64_t i) {
    ASSERT(t.n_dims >= 1 && i >= 0 && i < t.shape[0]);
    Tensor r;
    memset(&r, 0, sizeof r);
    r.data = t.data + i * t.stride[0];
    r.n_dims = t.n_dims - 1;
    r.device = t.device;
    for (int d = 0; d < TENSOR_MAX_DIMS; d++) {
        r.shape[d] = 1;
        r.stride[d] = 0;
    }
    for (int d = 1; d < t.n_dims; d++) {
        r.shape[d - 1] = t.shape[d];
        r.stride[d - 1] = t.stride[d];
    }
    return r;
}

Tensor tensor_reshape(Tensor t, int n_dims, const int64_t *shape) {
    ASSERT(tensor_is_contiguous(&t));
    Tensor r = tensor_view(t.data, n_dims, shape);
    ASSERT(tensor_numel(&r) == tensor_numel(&t));
    r.device = t.device;
    return r;
}

Tensor tensor_transpose(Tensor t, int d0, int d1) {
    ASSERT(d0 >= 0 && d0 < t.n_dims && d1 >= 0 && d1 < t.n_dims);
    int64_t s = t.shape[d0], st = t.stride[d0];
    t.shape[d0] = t.shape[d1];
    t.stride[d0] = t.stride[d1];
    t.shape[d1] = s;
    t.stride[d1] = st;
    return t;
}

float *tensor_ptr(const Tensor *t, int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
    int64_t idx[TENSOR_MAX_DIMS] = {i0, i1, i2, i3};
    int64_t off = 0;
    for (int d = 0; d < t->n_dims; d++) {
        ASSERT(idx[d] >= 0 && idx[d] < t->shape[d]);
        off += idx[d] * t->stride[d];
    }
    return t->data + off;
}

void tensor_copy(Tensor *dst, const Tensor *src) {
    ASSERT(tensor_same_shape(dst, src));
    ASSERT(dst->device == TENSOR_DEVICE_CPU && src->device == TENSOR_DEVICE_CPU);
    for (int64_t a = 0; a < dst->shape[0]; a++)
        for (int64_t b = 0; b < dst->shape[1]; b++)
            for (int64_t c = 0; c < dst->shape[2]; c++)
                for (int64_t d = 0; d < dst->shape[3]; d++)
                    *tensor_ptr(dst, a, b, c, d) = *tensor_ptr(src, a, b, c, d);
}

void tensor_fill(Tensor *t, float value) {
    ASSERT(t->device == TENSOR_DEVICE_CPU);
    for (int64_t a = 0; a < t->shape[0]; a++)
        for (int64_t b = 0; b < t->shape[1]; b++)
            for (int64_t c = 0; c < t->shape[2]; c++)
                for (int64_t d = 0; d < t->shape[3]; d++)
                    *tensor_ptr(t, a, b, c, d) = value;
}

/* ---- arena ---------------------------------------------------------------------------- */

size_t arena_round(size_t bytes) {
    return (bytes + TENSOR_ALIGN - 1) / TENSOR_ALIGN * TENSOR_ALIGN;
}

int arena_init(Arena *a, size_t bytes, Err *err) {
    memset(a, 0, sizeof *a);
    size_t n = arena_round(bytes ? bytes : 1);
    void *p = NULL;
    if (n >= ((size_t)1 << 20)) {
        p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            p = NULL;
        a->mapped = p != NULL;
    } else if (posix_memalign(&p, TENSOR_ALIGN, n) != 0) {
        p = NULL;
    } else if (p) {
        memset(p, 0, n);
    }
    if (!p)
        return err_set(err, ERR_NOMEM, "tensor arena: cannot allocate %zu bytes (%.1f MiB); "
                       "reduce the batch size or model width", n, (double)n / 1048576.0);
    a->base = p;
    a->size = n;
    return 0;
}

void arena_init_measure(Arena *a) {
    memset(a, 0, sizeof *a);
    a->size = SIZE_MAX;
}

void arena_init_over(Arena *a, void *block, size_t bytes) {
    a->base = block;
    a->size = bytes;
    a->used = 0;
    a->peak = 0;
    a->mapped = 0; /* the caller's block */
}

void arena_deinit(Arena *a) {
    if (!a)
        return;
    if (a->mapped)
        munmap(a->base, a->size);
    else
        free(a->base);
    memset(a, 0, sizeof *a);
}

void *arena_alloc(Arena *a, size_t bytes) {
    size_t n = arena_round(bytes);
    ASSERT(a->size - a->used >= n); /* arenas are sized up front: running out is a bug */
    void *p = a->base ? a->base + a->used : NULL;
    a->used += n;
    if (a->used > a->peak)
        a->peak = a->used;
    return p;
}

float *arena_alloc_f32(Arena *a, size_t n) { return arena_alloc(a, n * sizeof(float)); }

Tensor arena_tensor(Arena *a, int n_dims, const int64_t *shape) {
    Tensor t = tensor_view(NULL, n_dims, shape);
    t.data = arena_alloc_f32(a, (size_t)tensor_numel(&t));
    return t;
}

size_t arena_mark(const Arena *a) { return a->used; }

void arena_reset(Arena *a, size_t mark) {
    ASSERT(mark <= a->used);
    a->used = mark;
}
