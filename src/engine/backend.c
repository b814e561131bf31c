/* backend — the front end of the engine interface: opening by name, the sticky failure, and
 * the argument checks every op goes through before its backend's table entry. See backend.h
 * and the DESIGN notes in doc/engine.md.
 */
#include "backend_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cpu.h"
#include "base.h"

void backend_fail(Backend *be, int code, const char *fmt, ...) {
    if (be->fail_code)
        return; /* the first failure is the one reported */
    be->fail_code = code ? code : ERR_GPU;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(be->fail_msg, sizeof be->fail_msg, fmt, ap);
    va_end(ap);
}

#ifndef EASEL_CUDA
int backend_cuda_open(int index, const BackendConfig *cfg, Backend **be, Err *err) {
    (void)index;
    (void)cfg;
    *be = NULL;
    return err_set(err, ERR_GPU, "this easel was built without CUDA (no nvcc at build time)");
}
#endif

int backend_spec_parse(const char *spec, int *kind, int *index, Err *err) {
    *kind = BACKEND_SPEC_AUTO;
    *index = 0;
    if (!spec || !strcmp(spec, "auto"))
        return 0;
    if (!strcmp(spec, "cpu")) {
        *kind = BACKEND_SPEC_CPU;
        return 0;
    }
    if (!strcmp(spec, "cuda")) {
        *kind = BACKEND_SPEC_CUDA;
        return 0;
    }
    if (!strncmp(spec, "cuda:", 5)) {
        char *end = NULL;
        long v = strtol(spec + 5, &end, 10);
        if (!spec[5] || *end || v < 0 || v > 255 || spec[5] == '-' || spec[5] == '+' ||
            spec[5] == ' ')
            return err_set(err, ERR_USAGE, "device '%s': the index after 'cuda:' must be a "
                           "number 0..255; use auto, cpu, cuda or cuda:N", spec);
        *kind = BACKEND_SPEC_CUDA;
        *index = (int)v;
        return 0;
    }
    return err_set(err, ERR_USAGE, "unknown device '%s'; use auto, cpu, cuda or cuda:N", spec);
}

int backend_open(const char *spec, const BackendConfig *cfg, Backend **be, char *note,
                 size_t note_len, Err *err) {
    *be = NULL;
    if (note && note_len)
        note[0] = '\0';
    int kind, index;
    int rc = backend_spec_parse(spec, &kind, &index, err);
    if (rc)
        return rc;
    int want_cuda = kind == BACKEND_SPEC_AUTO ? 1 : kind == BACKEND_SPEC_CUDA ? 2 : 0;
    if (want_cuda) {
        Err ce = {0};
        rc = backend_cuda_open(index, cfg, be, &ce);
        if (rc == 0)
            return 0;
        if (rc != ERR_GPU) /* a GPU is there but not that one, or it failed to start */
            return err_set(err, rc, "%s", ce.msg);
        /* no GPU (or no CUDA in this build): the CPU it is. Said when a GPU was asked for by
         * name; "auto" means whatever this machine has, so it says nothing. */
        if (note && note_len && kind == BACKEND_SPEC_CUDA)
            snprintf(note, note_len, "%s: %s; running on the CPU", spec ? spec : "auto",
                     ce.msg);
    }
    return backend_cpu_open(cfg, be, err);
}

void backend_close(Backend *be) {
    if (!be)
        return;
    be->ops->close(be);
}

BackendKind backend_kind(const Backend *be) { return be->kind; }
TensorDevice backend_device(const Backend *be) { return be->device; }
const char *backend_name(const Backend *be) { return be->name; }
int backend_failed(const Backend *be) { return be->fail_code; }

int backend_sync(Backend *be, Err *err) {
    if (!be->fail_code && be->ops->sync)
        be->ops->sync(be);
    int rc = be->fail_code;
    if (rc) {
        err_set(err, rc, "%s backend: %s", be->ops->name, be->fail_msg);
        be->fail_code = 0;
        be->fail_msg[0] = '\0';
    }
    return rc;
}

/* ---- argument checks ------------------------------------------------------------------------ */

#define F32 (1u << DTYPE_F32)
#define ANYT ((1u << DTYPE_F32) | (1u << DTYPE_F16) | (1u << DTYPE_BF16))
#define ANY (-1) /* any size in this dimension */
/* Half activations (backend.h, DTYPES): the first activation an op checks may be any dtype
 * (ANYT); every other activation, output and activation gradient of the op has its dtype. */
#define SAME(t) (1u << (t)->dtype)

/* "f32 only", "f32, f16 or bf16", "bf16 (an op's activations share one dtype)". */
static const char *mask_words(unsigned mask, char *buf, size_t len) {
    if (mask == F32)
        return "f32 only";
    if (mask == ANYT)
        return "f32, f16 or bf16";
    for (int d = DTYPE_F32; d <= DTYPE_BF16; d++)
        if (mask == 1u << d) {
            snprintf(buf, len, "%s (an op's activations share one dtype)",
                     dtype_name((DType)d));
            return buf;
        }
    return "another dtype";
}

/* t must be present (unless optional and NULL), on the backend's device, of a dtype in mask,
 * contiguous, with nd dimensions of the given sizes (ANY matches any). */
static int chk(Backend *be, const char *op, const char *arg, CT *t, int optional, unsigned mask,
               int nd, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    if (be->fail_code)
        return 0;
    if (!t) {
        if (optional)
            return 1;
        backend_fail(be, ERR_USAGE, "%s: %s is required", op, arg);
        return 0;
    }
    int64_t want[4] = {d0, d1, d2, d3};
    if (t->n_dims != nd) {
        backend_fail(be, ERR_USAGE, "%s: %s has %d dimensions, expected %d", op, arg,
                     t->n_dims, nd);
        return 0;
    }
    for (int d = 0; d < nd; d++) {
        if (want[d] != ANY && t->shape[d] != want[d]) {
            backend_fail(be, ERR_USAGE, "%s: %s dimension %d is %lld, expected %lld", op, arg,
                         d, (long long)t->shape[d], (long long)want[d]);
            return 0;
        }
    }
    if (!(mask & (1u << t->dtype))) {
        char words[80];
        backend_fail(be, ERR_USAGE, "%s: %s is %s, this op takes %s there", op, arg,
                     dtype_name(t->dtype), mask_words(mask, words, sizeof words));
        return 0;
    }
    if (t->device != be->device) {
        backend_fail(be, ERR_USAGE, "%s: %s lives on the %s, the backend is %s", op, arg,
                     t->device == TENSOR_DEVICE_CUDA ? "GPU" : "CPU", be->name);
        return 0;
    }
    if (!tensor_is_contiguous(t)) {
        backend_fail(be, ERR_USAGE, "%s: %s is not contiguous", op, arg);
        return 0;
    }
    if (!t->ptr && tensor_numel(t) > 0) {
        backend_fail(be, ERR_USAGE, "%s: %s has no data", op, arg);
        return 0;
    }
    return 1;
}

/* The table entry, or a failure saying the backend lacks it. */
#define ENTRY(op)                                                                            \
    do {                                                                                     \
        if (be->fail_code)                                                                   \
            return;                                                                          \
        if (!be->ops->op) {                                                                  \
            backend_fail(be, ERR_USAGE, "%s: not implemented on the %s backend", #op,        \
                         be->ops->name);                                                     \
            return;                                                                          \
        }                                                                                    \
    } while (0)

static int64_t dim(CT *t, int d) { return t ? t->shape[d] : ANY; }

/* ---- memory --------------------------------------------------------------------------------- */

Tensor backend_alloc(Backend *be, DType dtype, int n_dims, const int64_t *shape) {
    Tensor t = tensor_view_dtype(NULL, dtype, n_dims, shape);
    t.device = be->device;
    size_t bytes = arena_round(tensor_nbytes(&t));
    if (be->fail_code)
        return t;
    if (be->arena.size - be->arena.used < bytes) {
        backend_fail(be, ERR_NOMEM, "scratch arena full: %zu bytes asked, %zu of %zu left; "
                     "open the backend with a larger arena_bytes", bytes,
                     be->arena.size - be->arena.used, be->arena.size);
        return t;
    }
    t.ptr = arena_alloc(&be->arena, bytes);
    return t;
}

size_t backend_mark(const Backend *be) { return arena_mark(&be->arena); }
size_t backend_arena_size(const Backend *be) { return be->arena.size; }
size_t backend_arena_peak(const Backend *be) { return be->arena.peak; }
void backend_reset(Backend *be, size_t mark) { arena_reset(&be->arena, mark); }

void *backend_malloc(Backend *be, size_t bytes) {
    if (be->fail_code)
        return NULL;
    return be->ops->malloc_(be, bytes);
}

void backend_free(Backend *be, void *p) {
    if (p)
        be->ops->free_(be, p);
}

Tensor backend_tensor_new(Backend *be, DType dtype, int n_dims, const int64_t *shape) {
    Tensor t = tensor_view_dtype(NULL, dtype, n_dims, shape);
    t.device = be->device;
    t.ptr = backend_malloc(be, tensor_nbytes(&t) ? tensor_nbytes(&t) : 1);
    return t;
}

void backend_tensor_free(Backend *be, Tensor *t) {
    backend_free(be, t->ptr);
    t->ptr = NULL;
}

static int host_same(Backend *be, const char *op, CT *dev, CT *host) {
    if (be->fail_code)
        return 0;
    if (!tensor_same_shape(dev, host) || dev->dtype != host->dtype ||
        !tensor_is_contiguous(dev) || !tensor_is_contiguous(host) ||
        host->device != TENSOR_DEVICE_CPU || dev->device != be->device) {
        backend_fail(be, ERR_USAGE, "%s: the host and device tensors must be contiguous, of "
                     "the same shape and dtype, on the CPU and on %s", op, be->name);
        return 0;
    }
    return 1;
}

void backend_upload(Backend *be, CT *dst, CT *src) {
    if (host_same(be, "upload", dst, src))
        be->ops->upload(be, dst, src);
}

void backend_download(Backend *be, CT *dst, CT *src) {
    if (host_same(be, "download", src, dst))
        be->ops->download(be, dst, src);
}

void backend_zero(Backend *be, CT *t) {
    if (chk(be, "zero", "t", t, 0, ANYT, t ? t->n_dims : 0, dim(t, 0), dim(t, 1), dim(t, 2),
            dim(t, 3)))
        be->ops->zero(be, t);
}

void backend_convert(Backend *be, CT *dst, CT *src) {
    if (chk(be, "convert", "src", src, 0, ANYT, src ? src->n_dims : 0, dim(src, 0),
            dim(src, 1), dim(src, 2), dim(src, 3)) &&
        chk(be, "convert", "dst", dst, 0, ANYT, src->n_dims, src->shape[0], src->shape[1],
            src->shape[2], src->shape[3]))
        be->ops->convert(be, dst, src);
}

/* ---- ops ------------------------------------------------------------------------------------ */

void backend_linear_forward(Backend *be, CT *out, CT *inp, CT *w, CT *b) {
    const char *op = "linear_forward";
    if (chk(be, op, "inp", inp, 0, ANYT, 2, ANY, ANY, 1, 1) &&
        chk(be, op, "weight", w, 0, ANYT, 2, ANY, inp->shape[1], 1, 1) &&
        chk(be, op, "bias", b, 1, ANYT, 1, w->shape[0], 1, 1, 1) &&
        chk(be, op, "out", out, 0, SAME(inp), 2, inp->shape[0], w->shape[0], 1, 1)) {
        ENTRY(linear_forward);
        be->ops->linear_forward(be, out, inp, w, b);
    }
}

void backend_linear_backward(Backend *be, CT *dinp, CT *dw, CT *db, CT *dout, CT *inp, CT *w) {
    const char *op = "linear_backward";
    if (chk(be, op, "inp", inp, 0, ANYT, 2, ANY, ANY, 1, 1) &&
        chk(be, op, "weight", w, 0, ANYT, 2, ANY, inp->shape[1], 1, 1) &&
        chk(be, op, "dout", dout, 0, SAME(inp), 2, inp->shape[0], w->shape[0], 1, 1) &&
        chk(be, op, "dinp", dinp, 1, SAME(inp), 2, inp->shape[0], inp->shape[1], 1, 1) &&
        chk(be, op, "dweight", dw, 1, F32, 2, w->shape[0], w->shape[1], 1, 1) &&
        chk(be, op, "dbias", db, 1, F32, 1, w->shape[0], 1, 1, 1)) {
        ENTRY(linear_backward);
        be->ops->linear_backward(be, dinp, dw, db, dout, inp, w);
    }
}

void backend_matmul_forward(Backend *be, CT *out, CT *a, CT *b) {
    const char *op = "matmul_forward";
    if (chk(be, op, "a", a, 0, ANYT, 2, ANY, ANY, 1, 1) &&
        chk(be, op, "b", b, 0, SAME(a), 2, a->shape[1], ANY, 1, 1) &&
        chk(be, op, "out", out, 0, SAME(a), 2, a->shape[0], b->shape[1], 1, 1)) {
        ENTRY(matmul_forward);
        be->ops->matmul_forward(be, out, a, b);
    }
}

void backend_matmul_backward(Backend *be, CT *da, CT *db, CT *dout, CT *a, CT *b) {
    const char *op = "matmul_backward";
    if (chk(be, op, "a", a, 0, ANYT, 2, ANY, ANY, 1, 1) &&
        chk(be, op, "b", b, 0, SAME(a), 2, a->shape[1], ANY, 1, 1) &&
        chk(be, op, "dout", dout, 0, SAME(a), 2, a->shape[0], b->shape[1], 1, 1) &&
        chk(be, op, "da", da, 1, SAME(a), 2, a->shape[0], a->shape[1], 1, 1) &&
        chk(be, op, "db", db, 1, SAME(a), 2, b->shape[0], b->shape[1], 1, 1)) {
        ENTRY(matmul_backward);
        be->ops->matmul_backward(be, da, db, dout, a, b);
    }
}

void backend_layernorm_forward(Backend *be, CT *out, CT *mean, CT *rstd, CT *inp, CT *w, CT *b,
                               float eps) {
    const char *op = "layernorm_forward";
    if (chk(be, op, "inp", inp, 0, ANYT, 2, ANY, ANY, 1, 1) &&
        chk(be, op, "out", out, 0, SAME(inp), 2, inp->shape[0], inp->shape[1], 1, 1) &&
        chk(be, op, "mean", mean, 0, F32, 1, inp->shape[0], 1, 1, 1) &&
        chk(be, op, "rstd", rstd, 0, F32, 1, inp->shape[0], 1, 1, 1) &&
        chk(be, op, "weight", w, 1, ANYT, 1, inp->shape[1], 1, 1, 1) &&
        chk(be, op, "bias", b, 1, ANYT, 1, inp->shape[1], 1, 1, 1)) {
        ENTRY(layernorm_forward);
        be->ops->layernorm_forward(be, out, mean, rstd, inp, w, b, eps);
    }
}

void backend_layernorm_backward(Backend *be, CT *dinp, CT *dw, CT *db, CT *dout, CT *inp, CT *w,
                                CT *mean, CT *rstd) {
    const char *op = "layernorm_backward";
    if (chk(be, op, "inp", inp, 0, ANYT, 2, ANY, ANY, 1, 1) &&
        chk(be, op, "dout", dout, 0, SAME(inp), 2, inp->shape[0], inp->shape[1], 1, 1) &&
        chk(be, op, "mean", mean, 0, F32, 1, inp->shape[0], 1, 1, 1) &&
        chk(be, op, "rstd", rstd, 0, F32, 1, inp->shape[0], 1, 1, 1) &&
        chk(be, op, "weight", w, 1, ANYT, 1, inp->shape[1], 1, 1, 1) &&
        chk(be, op, "dinp", dinp, 1, SAME(inp), 2, inp->shape[0], inp->shape[1], 1, 1) &&
        chk(be, op, "dweight", dw, 1, F32, 1, inp->shape[1], 1, 1, 1) &&
        chk(be, op, "dbias", db, 1, F32, 1, inp->shape[1], 1, 1, 1)) {
        ENTRY(layernorm_backward);
        be->ops->layernorm_backward(be, dinp, dw, db, dout, inp, w, mean, rstd);
    }
}

static int groups_ok(Backend *be, const char *op, CT *inp, int G) {
    if (be->fail_code)
        return 0;
    if (G < 1 || inp->shape[1] % G) {
        backend_fail(be, ERR_USAGE, "%s: %lld channels do not split into %d groups", op,
                     (long long)inp->shape[1], G);
        return 0;
    }
    return 1;
}

void backend_groupnorm_forward(Backend *be, CT *out, CT *mean, CT *rstd, CT *inp, CT *w, CT *b,
                               int G, float eps) {
    const char *op = "groupnorm_forward";
    if (chk(be, op, "inp", inp, 0, ANYT, 4, ANY, ANY, ANY, ANY) && groups_ok(be, op, inp, G) &&
        chk(be, op, "out", out, 0, SAME(inp), 4, inp->shape[0], inp->shape[1], inp->shape[2],
            inp->shape[3]) &&
        chk(be, op, "mean", mean, 0, F32, 2, inp->shape[0], G, 1, 1) &&
        chk(be, op, "rstd", rstd, 0, F32, 2, inp->shape[0], G, 1, 1) &&
        chk(be, op, "weight", w, 1, ANYT, 1, inp->shape[1], 1, 1, 1) &&
        chk(be, op, "bias", b, 1, ANYT, 1, inp->shape[1], 1, 1, 1)) {
        ENTRY(groupnorm_forward);
        be->ops->groupnorm_forward(be, out, mean, rstd, inp, w, b, G, eps);
    }
}

void backend_groupnorm_backward(Backend *be, CT *dinp, CT *dw, CT *db, CT *dout, CT *inp, CT *w,
                                CT *mean, CT *rstd, int G) {
    const char *op = "groupnorm_backward";
    if (chk(be, op, "inp", inp, 0, ANYT, 4, ANY, ANY, ANY, ANY) && groups_ok(be, op, inp, G) &&
        chk(be, op, "dout", dout, 0, SAME(inp), 4, inp->shape[0], inp->shape[1], inp->shape[2],
            inp->shape[3]) &&
        chk(be, op, "mean", mean, 0, F32, 2, inp->shape[0], G, 1, 1) &&
        chk(be, op, "rstd", rstd, 0, F32, 2, inp->shape[0], G, 1, 1) &&
        chk(be, op, "weight", w, 1, ANYT, 1, inp->shape[1], 1, 1, 1) &&
        chk(be, op, "dinp", dinp, 1, SAME(inp), 4, inp->shape[0], inp->shape[1], inp->shape[2],
            inp->shape[3]) &&
        chk(be, op, "dweight", dw, 1, F32, 1, inp->shape[1], 1, 1, 1) &&
        chk(be, op, "dbias", db, 1, F32, 1, inp->shape[1], 1, 1, 1)) {
        ENTRY(groupnorm_backward);
        be->ops->groupnorm_backward(be, dinp, dw, db, dout, inp, w, mean, rstd, G);
    }
}

void backend_softmax_forward(Backend *be, CT *out, CT *inp) {
    const char *op = "softmax_forward";
    if (chk(be, op, "inp", inp, 0, F32, 2, ANY, ANY, 1, 1) &&
        chk(be, op, "out", out, 0, F32, 2, inp->shape[0], inp->shape[1], 1, 1)) {
        ENTRY(softmax_forward);
        be->ops->softmax_forward(be, out, inp);
    }
}

void backend_softmax_backward(Backend *be, CT *dinp, CT *dout, CT *out) {
    const char *op = "softmax_backward";
    if (chk(be, op, "out", out, 0, F32, 2, ANY, ANY, 1, 1) &&
        chk(be, op, "dout", dout, 0, F32, 2, out->shape[0], out->shape[1], 1, 1) &&
        chk(be, op, "dinp", dinp, 1, F32, 2, out->shape[0], out->shape[1], 1, 1)) {
        ENTRY(softmax_backward);
        be->ops->softmax_backward(be, dinp, dout, out);
    }
}

/* Pointwise ops: any shape, the same on every tensor. */
static int like(Backend *be, const char *op, const char *arg, CT *t, int optional, CT *ref) {
    return chk(be, op, arg, t, optional, F32, ref->n_dims, ref->shape[0], ref->shape[1],
               ref->shape[2], ref->shape[3]);
}

/* As like, in ref's dtype: the other activations of an op that takes half activations. */
static int like_dt(Backend *be, const char *op, const char *arg, CT *t, int optional, CT *ref) {
    return chk(be, op, arg, t, optional, SAME(ref), ref->n_dims, ref->shape[0], ref->shape[1],
               ref->shape[2], ref->shape[3]);
}

static int act_ok(Backend *be, const char *op, BackendAct act, int gelu_only) {
    if (be->fail_code)
        return 0;
    if (act < BACKEND_ACT_GELU ||
        act > (gelu_only ? BACKEND_ACT_GELU_TANH : BACKEND_ACT_QUICKGELU)) {
        backend_fail(be, ERR_USAGE, "%s: activation %d is not one this op takes", op, (int)act);
        return 0;
    }
    return 1;
}

void backend_act_forward(Backend *be, BackendAct act, CT *out, CT *inp) {
    const char *op = "act_forward";
    if (act_ok(be, op, act, 0) &&
        chk(be, op, "inp", inp, 0, ANYT, inp ? inp->n_dims : 0, dim(inp, 0), dim(inp, 1),
            dim(inp, 2), dim(inp, 3)) &&
        like_dt(be, op, "out", out, 0, inp)) {
        ENTRY(act_forward);
        be->ops->act_forward(be, act, out, inp);
    }
}

void backend_act_backward(Backend *be, BackendAct act, CT *dinp, CT *dout, CT *inp) {
    const char *op = "act_backward";
    if (act_ok(be, op, act, 0) &&
        chk(be, op, "inp", inp, 0, ANYT, inp ? inp->n_dims : 0, dim(inp, 0), dim(inp, 1),
            dim(inp, 2), dim(inp, 3)) &&
        like_dt(be, op, "dout", dout, 0, inp) && like_dt(be, op, "dinp", dinp, 1, inp)) {
        ENTRY(act_backward);
        be->ops->act_backward(be, act, dinp, dout, inp);
    }
}

static int even_cols(Backend *be, const char *op, CT *inp) {
    if (be->fail_code)
        return 0;
    if (inp->shape[1] % 2) {
        backend_fail(be, ERR_USAGE, "%s: inp has %lld columns, GEGLU needs an even count", op,
                     (long long)inp->shape[1]);
        return 0;
    }
    return 1;
}

void backend_geglu_forward(Backend *be, BackendAct gelu, CT *out, CT *inp) {
    const char *op = "geglu_forward";
    if (act_ok(be, op, gelu, 1) && chk(be, op, "inp", inp, 0, ANYT, 2, ANY, ANY, 1, 1) &&
        even_cols(be, op, inp) &&
        chk(be, op, "out", out, 0, SAME(inp), 2, inp->shape[0], inp->shape[1] / 2, 1, 1)) {
        ENTRY(geglu_forward);
        be->ops->geglu_forward(be, gelu, out, inp);
    }
}

void backend_geglu_backward(Backend *be, BackendAct gelu, CT *dinp, CT *dout, CT *inp) {
    const char *op = "geglu_backward";
    if (act_ok(be, op, gelu, 1) && chk(be, op, "inp", inp, 0, ANYT, 2, ANY, ANY, 1, 1) &&
        even_cols(be, op, inp) &&
        chk(be, op, "dout", dout, 0, SAME(inp), 2, inp->shape[0], inp->shape[1] / 2, 1, 1) &&
        like_dt(be, op, "dinp", dinp, 1, inp)) {
        ENTRY(geglu_backward);
        be->ops->geglu_backward(be, gelu, dinp, dout, inp);
    }
}

/* The ConvShape of inp and weight, or a failure. */
static int conv_shape(Backend *be, const char *op, CT *inp, CT *w, int stride, int pad,
                      ConvShape *s) {
    if (!chk(be, op, "inp", inp, 0, ANYT, 4, ANY, ANY, ANY, ANY) ||
        !chk(be, op, "weight", w, 0, ANYT, 4, ANY, inp->shape[1], ANY, ANY))
        return 0;
    *s = (ConvShape){(int)inp->shape[0], (int)inp->shape[1], (int)inp->shape[2],
                     (int)inp->shape[3], (int)w->shape[0], (int)w->shape[2], stride, pad};
    if (w->shape[2] != w->shape[3] || stride < 1 || pad < 0 ||
        inp->shape[2] + 2 * pad < w->shape[2] || inp->shape[3] + 2 * pad < w->shape[2]) {
        backend_fail(be, ERR_USAGE, "%s: kernel %lldx%lld, stride %d, pad %d do not fit a "
                     "%lldx%lld input (square kernels, stride >= 1, pad >= 0)", op,
                     (long long)w->shape[2], (long long)w->shape[3], stride, pad,
                     (long long)inp->shape[2], (long long)inp->shape[3]);
        return 0;
    }
    return 1;
}

void backend_conv2d_forward(Backend *be, CT *out, CT *inp, CT *w, CT *b, int stride, int pad) {
    const char *op = "conv2d_forward";
    ConvShape s;
    if (conv_shape(be, op, inp, w, stride, pad, &s) &&
        chk(be, op, "bias", b, 1, ANYT, 1, s.OC, 1, 1, 1) &&
        chk(be, op, "out", out, 0, SAME(inp), 4, s.B, s.OC, nn_conv2d_out_h(&s),
            nn_conv2d_out_w(&s))) {
        ENTRY(conv2d_forward);
        be->ops->conv2d_forward(be, out, inp, w, b, &s);
    }
}

void backend_conv2d_backward(Backend *be, CT *dinp, CT *dw, CT *db, CT *dout, CT *inp, CT *w,
                             int stride, int pad) {
    const char *op = "conv2d_backward";
    ConvShape s;
    if (conv_shape(be, op, inp, w, stride, pad, &s) &&
        chk(be, op, "dout", dout, 0, SAME(inp), 4, s.B, s.OC, nn_conv2d_out_h(&s),
            nn_conv2d_out_w(&s)) &&
        like_dt(be, op, "dinp", dinp, 1, inp) &&
        chk(be, op, "dweight", dw, 1, F32, 4, w->shape[0], w->shape[1], w->shape[2],
            w->shape[3]) &&
        chk(be, op, "dbias", db, 1, F32, 1, s.OC, 1, 1, 1)) {
        ENTRY(conv2d_backward);
        be->ops->conv2d_backward(be, dinp, dw, db, dout, inp, w, &s);
    }
}

/* Attention's activations (q, k, v, o, dout, dq, dk, dv) share one dtype, f32, f16 or bf16;
 * lse is f32. */
static int attn_dtype(Backend *be, const char *op, const char *arg, CT *t, CT *q) {
    if (be->fail_code)
        return 0;
    if (t && t->dtype != q->dtype) {
        backend_fail(be, ERR_USAGE, "%s: %s is %s but q is %s; q, k, v, o, dout and the "
                     "gradients must share one dtype", op, arg, dtype_name(t->dtype),
                     dtype_name(q->dtype));
        return 0;
    }
    return 1;
}

static int attn_like(Backend *be, const char *op, const char *arg, CT *t, int optional, CT *ref,
                     CT *q) {
    return attn_dtype(be, op, arg, t, q) &&
           chk(be, op, arg, t, optional, ANYT, ref->n_dims, ref->shape[0], ref->shape[1],
               ref->shape[2], ref->shape[3]);
}

static int attn_ok(Backend *be, const char *op, CT *q, CT *k, CT *v, CT *o, CT *lse,
                   const BackendAttn *a) {
    if (!chk(be, op, "q", q, 0, ANYT, 3, ANY, ANY, ANY, 1))
        return 0;
    if (!a || a->NH < 1 || q->shape[2] % a->NH) {
        backend_fail(be, ERR_USAGE, "%s: %lld channels do not split into %d heads", op,
                     (long long)q->shape[2], a ? a->NH : 0);
        return 0;
    }
    return attn_dtype(be, op, "k", k, q) &&
           chk(be, op, "k", k, 0, ANYT, 3, q->shape[0], ANY, q->shape[2], 1) &&
           attn_dtype(be, op, "v", v, q) &&
           chk(be, op, "v", v, 0, ANYT, 3, q->shape[0], k->shape[1], q->shape[2], 1) &&
           attn_dtype(be, op, "o", o, q) &&
           chk(be, op, "o", o, 0, ANYT, 3, q->shape[0], q->shape[1], q->shape[2], 1) &&
           chk(be, op, "lse", lse, 0, F32, 3, q->shape[0], a->NH, q->shape[1], 1);
}

void backend_attention_forward(Backend *be, CT *o, CT *lse, CT *q, CT *k, CT *v,
                               const BackendAttn *a) {
    if (attn_ok(be, "attention_forward", q, k, v, o, lse, a)) {
        ENTRY(attention_forward);
        be->ops->attention_forward(be, o, lse, q, k, v, a);
    }
}

void backend_attention_backward(Backend *be, CT *dq, CT *dk, CT *dv, CT *dout, CT *q, CT *k,
                                CT *v, CT *o, CT *lse, const BackendAttn *a) {
    const char *op = "attention_backward";
    if (attn_ok(be, op, q, k, v, o, lse, a) && attn_like(be, op, "dout", dout, 0, q, q) &&
        attn_like(be, op, "dq", dq, 1, q, q) && attn_like(be, op, "dk", dk, 1, k, q) &&
        attn_like(be, op, "dv", dv, 1, v, q)) {
        ENTRY(attention_backward);
        be->ops->attention_backward(be, dq, dk, dv, dout, q, k, v, o, lse, a);
    }
}

void backend_upsample2x_forward(Backend *be, CT *out, CT *inp) {
    const char *op = "upsample2x_forward";
    if (chk(be, op, "inp", inp, 0, ANYT, 4, ANY, ANY, ANY, ANY) &&
        chk(be, op, "out", out, 0, SAME(inp), 4, inp->shape[0], inp->shape[1], 2 * inp->shape[2],
            2 * inp->shape[3])) {
        ENTRY(upsample2x_forward);
        be->ops->upsample2x_forward(be, out, inp);
    }
}

void backend_upsample2x_backward(Backend *be, CT *dinp, CT *dout) {
    const char *op = "upsample2x_backward";
    if (chk(be, op, "dinp", dinp, 0, ANYT, 4, ANY, ANY, ANY, ANY) &&
        chk(be, op, "dout", dout, 0, SAME(dinp), 4, dinp->shape[0], dinp->shape[1],
            2 * dinp->shape[2], 2 * dinp->shape[3])) {
        ENTRY(upsample2x_backward);
        be->ops->upsample2x_backward(be, dinp, dout);
    }
}

/* whole (B,Ca+Cb,H,W) against its parts (B,Ca,H,W) and (B,Cb,H,W); a part may be NULL when
 * parts_optional, but at least one is needed to know the split. */
static int cat_ok(Backend *be, const char *op, const char *wn, CT *whole, const char *an, CT *a,
                  const char *bn, CT *b, int parts_optional) {
    if (!chk(be, op, wn, whole, 0, ANYT, 4, ANY, ANY, ANY, ANY))
        return 0;
    if (!a && !b) {
        backend_fail(be, ERR_USAGE, "%s: give %s or %s", op, an, bn);
        return 0;
    }
    int64_t B = whole->shape[0], C = whole->shape[1], H = whole->shape[2], W = whole->shape[3];
    int64_t Ca = a ? a->shape[1] : C - b->shape[1];
    return chk(be, op, an, a, parts_optional, SAME(whole), 4, B, Ca, H, W) &&
           chk(be, op, bn, b, parts_optional, SAME(whole), 4, B, C - Ca, H, W);
}

void backend_concat_forward(Backend *be, CT *out, CT *a, CT *b) {
    if (a && b && cat_ok(be, "concat_forward", "out", out, "a", a, "b", b, 0)) {
        ENTRY(concat_forward);
        be->ops->concat_forward(be, out, a, b);
    } else if (!be->fail_code && (!a || !b)) {
        backend_fail(be, ERR_USAGE, "concat_forward: a and b are required");
    }
}

void backend_concat_backward(Backend *be, CT *da, CT *db, CT *dout) {
    if ((da || db) && cat_ok(be, "concat_backward", "dout", dout, "da", da, "db", db, 1)) {
        ENTRY(concat_backward);
        be->ops->concat_backward(be, da, db, dout);
    }
}

void backend_split_forward(Backend *be, CT *a, CT *b, CT *inp) {
    if (cat_ok(be, "split_forward", "inp", inp, "a", a, "b", b, 1)) {
        ENTRY(split_forward);
        be->ops->split_forward(be, a, b, inp);
    }
}

void backend_split_backward(Backend *be, CT *dinp, CT *da, CT *db) {
    if ((da || db) && cat_ok(be, "split_backward", "dinp", dinp, "da", da, "db", db, 1)) {
        ENTRY(split_backward);
        be->ops->split_backward(be, dinp, da, db);
    }
}

void backend_mse_forward(Backend *be, CT *loss, CT *pred, CT *target) {
    const char *op = "mse_forward";
    if (chk(be, op, "pred", pred, 0, F32, pred ? pred->n_dims : 0, dim(pred, 0), dim(pred, 1),
            dim(pred, 2), dim(pred, 3)) &&
        like(be, op, "target", target, 0, pred) &&
        chk(be, op, "loss", loss, 0, F32, 1, 1, 1, 1, 1)) {
        if (tensor_numel(pred) == 0) {
            backend_fail(be, ERR_USAGE, "%s: pred is empty", op);
            return;
        }
        ENTRY(mse_forward);
        be->ops->mse_forward(be, loss, pred, target);
    }
}

void backend_mse_backward(Backend *be, CT *dpred, CT *dtarget, float dloss, CT *pred,
                          CT *target) {
    const char *op = "mse_backward";
    if (chk(be, op, "pred", pred, 0, F32, pred ? pred->n_dims : 0, dim(pred, 0), dim(pred, 1),
            dim(pred, 2), dim(pred, 3)) &&
        like(be, op, "target", target, 0, pred) && like(be, op, "dpred", dpred, 1, pred) &&
        like(be, op, "dtarget", dtarget, 1, pred)) {
        ENTRY(mse_backward);
        be->ops->mse_backward(be, dpred, dtarget, dloss, pred, target);
    }
}

void backend_adamw(Backend *be, CT *param, CT *grad, CT *m, CT *v, int t, float lr,
                   const AdamWConfig *cfg) {
    const char *op = "adamw";
    if (chk(be, op, "param", param, 0, F32, param ? param->n_dims : 0, dim(param, 0),
            dim(param, 1), dim(param, 2), dim(param, 3)) &&
        like(be, op, "grad", grad, 0, param) && like(be, op, "m", m, 0, param) &&
        like(be, op, "v", v, 0, param)) {
        if (t < 1 || !cfg) {
            backend_fail(be, ERR_USAGE, "%s: step t must be >= 1 (got %d) and cfg given", op, t);
            return;
        }
        ENTRY(adamw);
        be->ops->adamw(be, param, grad, m, v, t, lr, cfg);
    }
}

/* ---- ops of the reward model ---------------------------------------------------------------- */

static int any_f32(Backend *be, const char *op, const char *arg, CT *t) {
    return chk(be, op, arg, t, 0, F32, t ? t->n_dims : 0, dim(t, 0), dim(t, 1), dim(t, 2),
               dim(t, 3));
}

/* The strided operand x (rows × cols as stored, leading dimension ld, from off) lies in t. */
static int gemm_fits(Backend *be, const char *arg, CT *t, size_t off, int rows, int cols,
                     int ld) {
    if (rows < 0 || cols < 0 || ld < (cols > 1 ? cols : 1)) {
        backend_fail(be, ERR_USAGE, "gemm: %s is %d x %d with leading dimension %d", arg, rows,
                     cols, ld);
        return 0;
    }
    size_t last = rows && cols ? off + (size_t)(rows - 1) * (size_t)ld + (size_t)cols : off;
    if (last > (size_t)tensor_numel(t)) {
        backend_fail(be, ERR_USAGE, "gemm: %s (%d x %d, ld %d, from element %zu) reaches "
                     "element %zu of a tensor of %lld", arg, rows, cols, ld, off, last,
                     (long long)tensor_numel(t));
        return 0;
    }
    return 1;
}

void backend_gemm(Backend *be, CT *c, CT *a, CT *b, const BackendGemm *g) {
    const char *op = "gemm";
    if (!any_f32(be, op, "c", c) || !any_f32(be, op, "a", a) || !any_f32(be, op, "b", b))
        return;
    if (!g || g->M < 0 || g->N < 0 || g->K < 0) {
        backend_fail(be, ERR_USAGE, "gemm: sizes M, N, K must be given and >= 0");
        return;
    }
    if (!gemm_fits(be, "a", a, g->a_off, g->trans_a ? g->K : g->M, g->trans_a ? g->M : g->K,
                   g->lda) ||
        !gemm_fits(be, "b", b, g->b_off, g->trans_b ? g->N : g->K, g->trans_b ? g->K : g->N,
                   g->ldb) ||
        !gemm_fits(be, "c", c, g->c_off, g->M, g->N, g->ldc))
        return;
    ENTRY(gemm);
    be->ops->gemm(be, c, a, b, g);
}

void backend_relu_forward(Backend *be, CT *out, CT *inp) {
    const char *op = "relu_forward";
    if (any_f32(be, op, "inp", inp) && like(be, op, "out", out, 0, inp)) {
        ENTRY(relu_forward);
        be->ops->relu_forward(be, out, inp);
    }
}

void backend_relu_backward(Backend *be, CT *dinp, CT *dout, CT *out) {
    const char *op = "relu_backward";
    if (any_f32(be, op, "out", out) && like(be, op, "dout", dout, 0, out) &&
        like(be, op, "dinp", dinp, 1, out)) {
        if (!dinp)
            return;
        ENTRY(relu_backward);
        be->ops->relu_backward(be, dinp, dout, out);
    }
}

static int p_ok(Backend *be, const char *op, float p) {
    if (be->fail_code)
        return 0;
    if (!(p >= 0.0f && p < 1.0f)) {
        backend_fail(be, ERR_USAGE, "%s: probability %g is outside [0, 1)", op, (double)p);
        return 0;
    }
    return 1;
}

void backend_dropout_forward(Backend *be, CT *out, CT *inp, float p, uint64_t seed) {
    const char *op = "dropout_forward";
    if (p_ok(be, op, p) && any_f32(be, op, "inp", inp) && like(be, op, "out", out, 0, inp)) {
        ENTRY(dropout_forward);
        be->ops->dropout_forward(be, out, inp, p, seed);
    }
}

void backend_dropout_backward(Backend *be, CT *dinp, CT *dout, float p, uint64_t seed) {
    const char *op = "dropout_backward";
    if (p_ok(be, op, p) && any_f32(be, op, "dout", dout) &&
        like(be, op, "dinp", dinp, 1, dout)) {
        if (!dinp)
            return;
        ENTRY(dropout_backward);
        be->ops->dropout_backward(be, dinp, dout, p, seed);
    }
}

void backend_scale(Backend *be, CT *out, CT *a, float s) {
    const char *op = "scale";
    if (any_f32(be, op, "a", a) && like(be, op, "out", out, 0, a)) {
        ENTRY(scale);
        be->ops->scale(be, out, a, s);
    }
}

void backend_add(Backend *be, CT *out, CT *a, CT *b) {
    const char *op = "add";
    if (any_f32(be, op, "a", a) && like(be, op, "b", b, 0, a) && like(be, op, "out", out, 0, a)) {
        ENTRY(add);
        be->ops->add(be, out, a, b);
    }
}

/* ---- ops of CLIP (add: above, with the reward model's) -------------------------------------- */

void backend_add_rows(Backend *be, CT *out, CT *inp, CT *rows) {
    const char *op = "add_rows";
    if (chk(be, op, "inp", inp, 0, F32, 2, ANY, ANY, 1, 1) &&
        chk(be, op, "rows", rows, 0, F32, 2, ANY, inp->shape[1], 1, 1) &&
        chk(be, op, "out", out, 0, F32, 2, inp->shape[0], inp->shape[1], 1, 1)) {
        if (rows->shape[0] < 1 || inp->shape[0] % rows->shape[0]) {
            backend_fail(be, ERR_USAGE, "add_rows: %lld rows of inp are not a whole number of "
                         "blocks of %lld rows", (long long)inp->shape[0],
                         (long long)rows->shape[0]);
            return;
        }
        ENTRY(add_rows);
        be->ops->add_rows(be, out, inp, rows);
    }
}

void backend_gather_rows(Backend *be, CT *out, CT *table, const int *idx) {
    const char *op = "gather_rows";
    if (chk(be, op, "table", table, 0, ANYT, 2, ANY, ANY, 1, 1) &&
        chk(be, op, "out", out, 0, F32, 2, ANY, table->shape[1], 1, 1)) {
        if (!idx && out->shape[0] > 0) {
            backend_fail(be, ERR_USAGE, "gather_rows: idx is required");
            return;
        }
        for (int64_t m = 0; m < out->shape[0]; m++)
            if (idx[m] < -1 || idx[m] >= table->shape[0]) {
                backend_fail(be, ERR_USAGE, "gather_rows: idx[%lld] is %d, outside -1..%lld",
                             (long long)m, idx[m], (long long)table->shape[0] - 1);
                return;
            }
        ENTRY(gather_rows);
        be->ops->gather_rows(be, out, table, idx);
    }
}

void backend_l2norm_forward(Backend *be, CT *out, CT *norm, CT *inp, float eps) {
    const char *op = "l2norm_forward";
    if (chk(be, op, "inp", inp, 0, F32, 2, ANY, ANY, 1, 1) &&
        chk(be, op, "out", out, 0, F32, 2, inp->shape[0], inp->shape[1], 1, 1) &&
        chk(be, op, "norm", norm, 1, F32, 1, inp->shape[0], 1, 1, 1)) {
        ENTRY(l2norm_forward);
        be->ops->l2norm_forward(be, out, norm, inp, eps);
    }
}

void backend_host_parallel_for(Backend *be, int64_t n, int64_t grain,
                               void (*fn)(void *ctx, int64_t begin, int64_t end), void *ctx) {
    if (be->kind != BACKEND_CPU) {
        backend_cpu_parallel_for(n, grain, fn, ctx);
        return;
    }
    CpuPool *prev = backend_cpu_bind((CpuPool *)be->impl);
    backend_cpu_parallel_for(n, grain, fn, ctx);
    backend_cpu_bind(prev);
}
/* ---- ops of the UNet ------------------------------------------------------------------------ */

void backend_unet_add(Backend *be, CT *out, CT *a, CT *b, CT *chan) {
    const char *op = "unet_add";
    if (chk(be, op, "a", a, 0, F32, 3, ANY, ANY, ANY, 0) &&
        chk(be, op, "out", out, 0, F32, 3, a->shape[0], a->shape[1], a->shape[2], 0) &&
        chk(be, op, "b", b, 1, F32, 3, a->shape[0], a->shape[1], a->shape[2], 0) &&
        chk(be, op, "chan", chan, 1, F32, 2, a->shape[0], a->shape[1], 0, 0)) {
        ENTRY(unet_add);
        be->ops->unet_add(be, out, a, b, chan);
    }
}

void backend_unet_transpose(Backend *be, CT *out, CT *inp) {
    const char *op = "unet_transpose";
    if (chk(be, op, "inp", inp, 0, F32, 3, ANY, ANY, ANY, 0) &&
        chk(be, op, "out", out, 0, F32, 3, inp->shape[0], inp->shape[2], inp->shape[1], 0)) {
        if (out->ptr == inp->ptr && tensor_numel(inp) > 0) {
            backend_fail(be, ERR_USAGE, "%s: out must not alias inp", op);
            return;
        }
        ENTRY(unet_transpose);
        be->ops->unet_transpose(be, out, inp);
    }
}

void backend_upsample_nearest_forward(Backend *be, CT *out, CT *inp) {
    const char *op = "upsample_nearest_forward";
    if (chk(be, op, "inp", inp, 0, F32, 4, ANY, ANY, ANY, ANY) &&
        chk(be, op, "out", out, 0, F32, 4, inp->shape[0], inp->shape[1], ANY, ANY)) {
        if (out->ptr == inp->ptr && tensor_numel(inp) > 0) {
            backend_fail(be, ERR_USAGE, "%s: out must not alias inp", op);
            return;
        }
        ENTRY(upsample_nearest_forward);
        be->ops->upsample_nearest_forward(be, out, inp);
    }
}

void backend_upsample_nearest_backward(Backend *be, CT *dinp, CT *dout) {
    const char *op = "upsample_nearest_backward";
    if (chk(be, op, "dout", dout, 0, F32, 4, ANY, ANY, ANY, ANY) &&
        chk(be, op, "dinp", dinp, 0, F32, 4, dout->shape[0], dout->shape[1], ANY, ANY)) {
        if (dout->ptr == dinp->ptr && tensor_numel(dout) > 0) {
            backend_fail(be, ERR_USAGE, "%s: dinp must not alias dout", op);
            return;
        }
        ENTRY(upsample_nearest_backward);
        be->ops->upsample_nearest_backward(be, dinp, dout);
    }
}

/* ---- ops of the VAE (add, unet_transpose: above) --------------------------------------------- */

void backend_pad2d_forward(Backend *be, CT *out, CT *inp, int top, int left) {
    const char *op = "pad2d_forward";
    if (chk(be, op, "inp", inp, 0, F32, 4, ANY, ANY, ANY, ANY) &&
        chk(be, op, "out", out, 0, F32, 4, inp->shape[0], inp->shape[1], ANY, ANY)) {
        ENTRY(pad2d_forward);
        be->ops->pad2d_forward(be, out, inp, top, left);
    }
}

/* ---- ops of DoRA (issue 16) ------------------------------------------------------------------ */

void backend_dora_norm(Backend *be, CT *norm, CT *weight, CT *B, CT *A, float s) {
    const char *op = "dora_norm";
    if (!chk(be, op, "norm", norm, 0, F32, 1, ANY, 0, 0, 0))
        return;
    if (!weight || (weight->n_dims != 2 && weight->n_dims != 4)) {
        backend_fail(be, ERR_USAGE, "%s: weight must be (OC,K) or (OC,C,kh,kw)", op);
        return;
    }
    int64_t OC = norm->shape[0], K = OC ? tensor_numel(weight) / OC : 0;
    if (weight->shape[0] != OC) {
        backend_fail(be, ERR_USAGE, "%s: weight dimension 0 is %lld, expected %lld (norm's)", op,
                     (long long)weight->shape[0], (long long)OC);
        return;
    }
    int nd = weight->n_dims;
    if (!chk(be, op, "weight", weight, 0, ANYT, nd, OC, ANY, ANY, ANY))
        return;
    if (!A != !B) {
        backend_fail(be, ERR_USAGE, "%s: A and B go together (both NULL: the weight's norm)",
                     op);
        return;
    }
    if (A) {
        if (!chk(be, op, "A", A, 0, F32, A->n_dims, ANY, ANY, ANY, ANY))
            return;
        int64_t r = A->shape[0];
        if (r < 1 || tensor_numel(A) != r * K) {
            backend_fail(be, ERR_USAGE, "%s: A has %lld elements per row, the weight %lld", op,
                         (long long)(r ? tensor_numel(A) / r : 0), (long long)K);
            return;
        }
        if (B->n_dims != 2 && B->n_dims != 4) {
            backend_fail(be, ERR_USAGE, "%s: B must be (OC,r) or (OC,r,1,1)", op);
            return;
        }
        if (!chk(be, op, "B", B, 0, F32, B->n_dims, OC, r, B->n_dims == 4 ? 1 : ANY,
                 B->n_dims == 4 ? 1 : ANY))
            return;
    }
    ENTRY(dora_norm);
    be->ops->dora_norm(be, norm, weight, B, A, s);
}

void backend_dora_scale(Backend *be, CT *out, CT *inp, CT *m, CT *norm, CT *bias) {
    const char *op = "dora_scale";
    if (chk(be, op, "inp", inp, 0, F32, 3, ANY, ANY, ANY, 0) &&
        chk(be, op, "out", out, 0, F32, 3, inp->shape[0], inp->shape[1], inp->shape[2], 0) &&
        chk(be, op, "m", m, 0, F32, 1, inp->shape[1], 0, 0, 0) &&
        chk(be, op, "norm", norm, 0, F32, 1, inp->shape[1], 0, 0, 0) &&
        chk(be, op, "bias", bias, 1, ANYT, 1, inp->shape[1], 0, 0, 0)) {
        ENTRY(dora_scale);
        be->ops->dora_scale(be, out, inp, m, norm, bias);
    }
}

void backend_dora_mag_backward(Backend *be, CT *dm, CT *dout, CT *y, CT *norm) {
    const char *op = "dora_mag_backward";
    if (chk(be, op, "dout", dout, 0, F32, 3, ANY, ANY, ANY, 0) &&
        chk(be, op, "y", y, 0, F32, 3, dout->shape[0], dout->shape[1], dout->shape[2], 0) &&
        chk(be, op, "dm", dm, 0, F32, 1, dout->shape[1], 0, 0, 0) &&
        chk(be, op, "norm", norm, 0, F32, 1, dout->shape[1], 0, 0, 0)) {
        ENTRY(dora_mag_backward);
        be->ops->dora_mag_backward(be, dm, dout, y, norm);
    }
}
