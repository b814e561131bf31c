/* Fused attention (nn_flash): against the materialising attention (nn_attention) and against
 * PyTorch's scaled_dot_product_attention (fixtures from tests/torch/make_flash_fixtures.py),
 * masks included; the backward by finite differences, and a wrong backward the check must
 * catch; memory linear in the token count at 4096 tokens; the same bits for any thread count
 * and either backward schedule; strided (fused qkv) layouts; the gradient rule (+=, NULL
 * skipped). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cpu.h"
#include "base.h"
#include "nn_attention.h"
#include "nn_check.h"
#include "nn_flash.h"
#include "rng.h"

typedef struct Shape {
    int B, NH, Tq, Tk, hd, causal;
    const int *key_len;
} Shape;

static FlashAttn attn_of(const Shape *s) {
    FlashAttn a = {.B = s->B, .NH = s->NH, .Tq = s->Tq, .Tk = s->Tk, .hd = s->hd,
                   .causal = s->causal, .key_len = s->key_len};
    return a;
}

/* Largest |a − b| relative to max(1, |b|). */
static double rel_diff(const float *a, const float *b, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]) / fmax(1.0, fabs((double)b[i]));
        if (d > m || isnan(d))
            m = isnan(d) ? INFINITY : d;
    }
    return m;
}

/* lse in double by definition, −inf where the row sees no key. */
static void lse_by_definition(float *lse, const float *q, const float *k, const Shape *s) {
    int C = s->NH * s->hd;
    double scale = 1.0 / sqrt((double)s->hd);
    for (int b = 0; b < s->B; b++)
        for (int h = 0; h < s->NH; h++)
            for (int i = 0; i < s->Tq; i++) {
                double mx = -INFINITY, sum = 0.0;
                double sc[512]; /* Tk <= 512 here */
                for (int j = 0; j < s->Tk; j++) {
                    int ok = (!s->key_len || j < s->key_len[b]) &&
                             (!s->causal || j <= i + (s->Tk - s->Tq));
                    double d = 0.0;
                    for (int e = 0; e < s->hd; e++)
                        d += (double)q[((size_t)b * s->Tq + i) * C + h * s->hd + e] *
                             k[((size_t)b * s->Tk + j) * C + h * s->hd + e];
                    sc[j] = ok ? d * scale : -INFINITY;
                    mx = sc[j] > mx ? sc[j] : mx;
                }
                for (int j = 0; j < s->Tk; j++)
                    sum += mx == -INFINITY ? 0.0 : exp(sc[j] - mx);
                lse[((size_t)b * s->NH + h) * s->Tq + i] =
                    mx == -INFINITY ? -INFINITY : (float)(mx + log(sum));
            }
}

/* ---- against the materialising attention ---------------------------------------------- */

static void against_reference(const Shape *s) {
    Rng r;
    rng_init(&r, 101);
    int C = s->NH * s->hd;
    size_t nq = (size_t)s->B * s->Tq * C, nk = (size_t)s->B * s->Tk * C;
    size_t natt = (size_t)s->B * s->NH * s->Tq * s->Tk, nl = (size_t)s->B * s->NH * s->Tq;
    float *q = gc_randn(&r, nq, 1), *k = gc_randn(&r, nk, 1), *v = gc_randn(&r, nk, 1);
    float *dout = gc_randn(&r, nq, 1);
    float *att = gc_randn(&r, natt, 0), *datt = gc_randn(&r, natt, 0);
    float *o_ref = gc_randn(&r, nq, 0), *o = gc_randn(&r, nq, 0);
    float *lse = gc_randn(&r, nl, 0), *lse_ref = gc_randn(&r, nl, 0);
    /* gradients start from the same nonzero values: both must add */
    float *dq_ref = gc_randn(&r, nq, 1), *dk_ref = gc_randn(&r, nk, 1), *dv_ref = gc_randn(&r, nk, 1);
    float *dq = gc_randn(&r, nq, 0), *dk = gc_randn(&r, nk, 0), *dv = gc_randn(&r, nk, 0);
    memcpy(dq, dq_ref, nq * sizeof(float));
    memcpy(dk, dk_ref, nk * sizeof(float));
    memcpy(dv, dv_ref, nk * sizeof(float));
    uint8_t *pad = calloc((size_t)s->B * s->Tk, 1);
    for (int b = 0; s->key_len && b < s->B; b++)
        for (int j = s->key_len[b]; j < s->Tk; j++)
            pad[(size_t)b * s->Tk + j] = 1;
    AttnMask mask = {NULL, s->key_len ? pad : NULL, s->causal};
    nn_attention_forward(o_ref, att, q, k, v, &mask, s->B, s->Tq, s->Tk, C, s->NH);
    nn_attention_backward(dq_ref, dk_ref, dv_ref, datt, dout, att, q, k, v, s->B, s->Tq, s->Tk,
                          C, s->NH);
    FlashAttn a = attn_of(s);
    nn_flash_forward(o, lse, q, k, v, &a);
    nn_flash_backward(dq, dk, dv, dout, q, k, v, o, lse, &a);
    lse_by_definition(lse_ref, q, k, s);
    const char *tag = "shape";
    cr_expect(rel_diff(o, o_ref, nq) < 2e-5, "%s B%d NH%d Tq%d Tk%d hd%d: out %g", tag, s->B,
              s->NH, s->Tq, s->Tk, s->hd, rel_diff(o, o_ref, nq));
    for (size_t i = 0; i < nl; i++)
        if (isinf(lse_ref[i]))
            cr_expect(isinf(lse[i]) && lse[i] < 0, "lse[%zu] = %g, want -inf", i, lse[i]);
        else
            cr_expect(fabsf(lse[i] - lse_ref[i]) < 2e-5f * fmaxf(1.0f, fabsf(lse_ref[i])),
                      "lse[%zu] %g vs %g", i, lse[i], lse_ref[i]);
    cr_expect(rel_diff(dq, dq_ref, nq) < 5e-5, "dq %g", rel_diff(dq, dq_ref, nq));
    cr_expect(rel_diff(dk, dk_ref, nk) < 5e-5, "dk %g", rel_diff(dk, dk_ref, nk));
    cr_expect(rel_diff(dv, dv_ref, nk) < 5e-5, "dv %g", rel_diff(dv, dv_ref, nk));
    free(pad);
    gc_free_all();
}

Test(nn_flash, matches_materialising_attention) {
    int kl2[2] = {30, 7}, kl1[1] = {150}, kl3[3] = {9, 3, 0};
    Shape shapes[] = {
        {2, 3, 140, 140, 40, 0, NULL}, /* self, crosses a query and a key tile */
        {1, 2, 130, 77, 64, 1, NULL}, /* causal, Tq > Tk: some rows see no key */
        {2, 2, 100, 30, 16, 1, kl2},  /* causal and key lengths */
        {1, 1, 5, 200, 128, 0, kl1},  /* hd 128, cross, long keys */
        {3, 8, 1, 9, 4, 0, kl3},      /* one query (the reward model), a batch with no key */
        {1, 5, 77, 77, 3, 1, NULL},   /* CLIP text's causal mask, odd head size */
        {2, 1, 70, 20, 160, 0, NULL}, /* hd > 128: shorter query tiles */
        {1, 2, 3, 5, 1280, 1, NULL},  /* one head over a whole 1280-wide embedding */
    };
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
        against_reference(&shapes[i]);
}

/* ---- against PyTorch ------------------------------------------------------------------ */

static float *read_tensor(FILE *f, const char *want, size_t n) {
    char name[32];
    size_t got = 0;
    cr_assert_eq(fscanf(f, "%31s %zu", name, &got), 2);
    cr_assert_str_eq(name, want);
    cr_assert_eq(got, n, "%s: %zu values, want %zu", want, got, n);
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(fscanf(f, "%f", &x[i]), 1, "%s[%zu]", want, i);
    return x;
}

Test(nn_flash, matches_torch_sdpa) {
    FILE *f = fopen("tests/fixtures/flash/cases.txt", "r");
    cr_assert(f, "tests/fixtures/flash/cases.txt (python3 tests/torch/make_flash_fixtures.py)");
    char word[64], name[64];
    int cases = 0;
    while (fscanf(f, "%63s", word) == 1) {
        cr_assert_str_eq(word, "case");
        Shape s = {0};
        float scale;
        cr_assert_eq(fscanf(f, "%63s %d %d %d %d %d %d %f", name, &s.B, &s.NH, &s.Tq, &s.Tk,
                            &s.hd, &s.causal, &scale),
                     8);
        int key_len[16];
        long pos = ftell(f);
        cr_assert_eq(fscanf(f, "%63s", word), 1);
        if (strcmp(word, "key_len") == 0) {
            for (int b = 0; b < s.B; b++)
                cr_assert_eq(fscanf(f, "%d", &key_len[b]), 1);
            s.key_len = key_len;
        } else {
            fseek(f, pos, SEEK_SET);
        }
        int C = s.NH * s.hd;
        size_t nq = (size_t)s.B * s.Tq * C, nk = (size_t)s.B * s.Tk * C;
        size_t nl = (size_t)s.B * s.NH * s.Tq;
        float *q = read_tensor(f, "q", nq), *k = read_tensor(f, "k", nk);
        float *v = read_tensor(f, "v", nk), *dout = read_tensor(f, "dout", nq);
        float *o_t = read_tensor(f, "o", nq), *lse_t = read_tensor(f, "lse", nl);
        float *dq_t = read_tensor(f, "dq", nq), *dk_t = read_tensor(f, "dk", nk);
        float *dv_t = read_tensor(f, "dv", nk);
        cr_assert_eq(fscanf(f, "%63s", word), 1);
        cr_assert_str_eq(word, "end");
        FlashAttn a = attn_of(&s);
        a.scale = scale;
        float *o = calloc(nq, sizeof(float)), *lse = calloc(nl, sizeof(float));
        float *dq = calloc(nq, sizeof(float)), *dk = calloc(nk, sizeof(float)),
              *dv = calloc(nk, sizeof(float));
        nn_flash_forward(o, lse, q, k, v, &a);
        nn_flash_backward(dq, dk, dv, dout, q, k, v, o, lse, &a);
        cr_expect(rel_diff(o, o_t, nq) < 1e-5, "%s: out %g", name, rel_diff(o, o_t, nq));
        cr_expect(rel_diff(lse, lse_t, nl) < 1e-5, "%s: lse %g", name, rel_diff(lse, lse_t, nl));
        cr_expect(rel_diff(dq, dq_t, nq) < 2e-5, "%s: dq %g", name, rel_diff(dq, dq_t, nq));
        cr_expect(rel_diff(dk, dk_t, nk) < 2e-5, "%s: dk %g", name, rel_diff(dk, dk_t, nk));
        cr_expect(rel_diff(dv, dv_t, nk) < 2e-5, "%s: dv %g", name, rel_diff(dv, dv_t, nk));
        float *all[] = {q, k, v, dout, o_t, lse_t, dq_t, dk_t, dv_t, o, lse, dq, dk, dv};
        for (size_t i = 0; i < sizeof all / sizeof *all; i++)
            free(all[i]);
        cases++;
    }
    fclose(f);
    cr_expect_eq(cases, 6);
}

/* ---- finite differences ---------------------------------------------------------------- */

typedef struct FdCtx {
    FlashAttn a;
    float *lse;
    float lse_shift; /* the wrong variant: a stale log-sum-exp in the backward */
} FdCtx;

static void fd_f(GradCase *c, float *out) {
    FdCtx *x = c->ctx;
    nn_flash_forward(out, x->lse, c->in[0], c->in[1], c->in[2], &x->a);
}

static void fd_b(GradCase *c, float *out, const float *d, float **din) {
    FdCtx *x = c->ctx;
    size_t nl = (size_t)x->a.B * x->a.NH * x->a.Tq;
    for (size_t i = 0; i < nl; i++)
        x->lse[i] += x->lse_shift;
    nn_flash_backward(din[0], din[1], din[2], d, c->in[0], c->in[1], c->in[2], out, x->lse,
                      &x->a);
}

static int fd_case(const Shape *s, float lse_shift) {
    Rng r;
    rng_init(&r, 7);
    int C = s->NH * s->hd;
    size_t nq = (size_t)s->B * s->Tq * C, nk = (size_t)s->B * s->Tk * C;
    FdCtx x = {.a = attn_of(s), .lse_shift = lse_shift};
    x.lse = gc_randn(&r, (size_t)s->B * s->NH * s->Tq, 0);
    GradCase c = {.name = "flash", .n_in = 3, .n_out = nq, .fwd = fd_f, .bwd = fd_b, .ctx = &x};
    c.in[0] = gc_randn(&r, nq, 1), c.n[0] = nq;
    c.in[1] = gc_randn(&r, nk, 1), c.n[1] = nk;
    c.in[2] = gc_randn(&r, nk, 1), c.n[2] = nk;
    int bad = check_grad(&c, 1e-2f, 2e-3f, 2e-2f);
    gc_free_all();
    return bad;
}

Test(nn_flash, backward_matches_finite_differences) {
    int kl[2] = {130, 41};
    Shape shapes[] = {
        {2, 2, 3, 4, 8, 0, NULL},
        {1, 2, 5, 5, 4, 1, NULL},
        {2, 1, 3, 130, 2, 1, kl},  /* two key tiles, causal bottom-right, key lengths */
        {1, 1, 130, 2, 2, 0, NULL}, /* two query tiles */
    };
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
        cr_expect_eq(fd_case(&shapes[i], 0.0f), 0, "shape %zu", i);
}

/* The check must be able to fail: probabilities recomputed from a stale lse are caught. */
Test(nn_flash, finite_differences_catch_a_wrong_backward) {
    Shape s = {2, 2, 3, 4, 8, 0, NULL};
    gc_quiet = 1;
    int bad = fd_case(&s, 0.05f);
    gc_quiet = 0;
    cr_expect_gt(bad, 0);
}

/* ---- memory --------------------------------------------------------------------------- */

static float *touched(size_t n) {
    float *x = malloc(n * sizeof(float));
    cr_assert(x);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    return x;
}

Test(nn_flash, memory_is_linear_at_4096_tokens) {
    int T = 4096, hd = 64;
    size_t n = (size_t)T * hd;
    float *q = touched(n), *k = touched(n), *v = touched(n), *o = touched(n);
    float *dout = touched(n), *dq = touched(n), *dk = touched(n), *dv = touched(n);
    float *lse = touched((size_t)T);
    Err err = {0};
    CpuPool *pool = backend_cpu_pool_new(2, &err);
    cr_assert(pool, "%s", err.msg);
    CpuPool *prev = backend_cpu_use(pool);
    FlashAttn a = {.B = 1, .NH = 1, .Tq = T, .Tk = T, .hd = hd};
    nn_flash_forward(o, lse, q, k, v, &a); /* warm: thread stacks, BLAS buffers */
    if (base_peak_rss_reset() != 0 || base_proc_status_kb("VmHWM") < 0)
        cr_skip_test("cannot reset the peak resident set (/proc/self/clear_refs)");
    long base = base_proc_status_kb("VmRSS");
    nn_flash_forward(o, lse, q, k, v, &a);
    nn_flash_backward(dq, dk, dv, dout, q, k, v, o, lse, &a);
    long grew = base_proc_status_kb("VmHWM") - base;
    long quadratic = (long)((size_t)T * T * sizeof(float) / 1024); /* one (T,T) f32 matrix */
    cr_expect_lt(grew, quadratic / 8, "peak grew %ld kB; a (T,T) matrix is %ld kB", grew,
                 quadratic);
    /* the measure sees a (T,T) matrix when there is one */
    base_peak_rss_reset();
    base = base_proc_status_kb("VmRSS");
    float *big = touched((size_t)T * T);
    cr_expect_gt(base_proc_status_kb("VmHWM") - base, quadratic / 2);
    free(big);
    for (size_t i = 0; i < n; i += 4099)
        cr_expect(isfinite(o[i]) && isfinite(dq[i]) && isfinite(dk[i]) && isfinite(dv[i]));
    backend_cpu_use(prev);
    backend_cpu_pool_free(pool);
    float *all[] = {q, k, v, o, dout, dq, dk, dv, lse};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        free(all[i]);
}

/* ---- determinism, layouts, the gradient rule -------------------------------------------- */

typedef struct Run {
    float *o, *lse, *dq, *dk, *dv;
} Run;

static Run run_once(const FlashAttn *a, const float *q, const float *k, const float *v,
                    const float *dout, int threads, int schedule) {
    int C = a->NH * a->hd;
    size_t nq = (size_t)a->B * a->Tq * C, nk = (size_t)a->B * a->Tk * C;
    Run r = {calloc(nq, 4), calloc((size_t)a->B * a->NH * a->Tq, 4), calloc(nq, 4),
             calloc(nk, 4), calloc(nk, 4)};
    Err err = {0};
    /* a pool even for one thread: it also keeps OpenBLAS's own threads off (backend_cpu.h) */
    CpuPool *pool = backend_cpu_pool_new(threads, &err);
    cr_assert(pool, "%s", err.msg);
    CpuPool *prev = backend_cpu_use(pool);
    FlashAttn x = *a;
    x.schedule = schedule;
    nn_flash_forward(r.o, r.lse, q, k, v, &x);
    nn_flash_backward(r.dq, r.dk, r.dv, dout, q, k, v, r.o, r.lse, &x);
    backend_cpu_use(prev);
    backend_cpu_pool_free(pool);
    return r;
}

static void run_free(Run *r) {
    free(r->o), free(r->lse), free(r->dq), free(r->dk), free(r->dv);
}

Test(nn_flash, same_bits_for_any_thread_count_and_schedule) {
    Rng r;
    rng_init(&r, 3);
    int kl[2] = {150, 97};
    FlashAttn a = {.B = 2, .NH = 3, .Tq = 130, .Tk = 150, .hd = 24, .causal = 1, .key_len = kl};
    int C = a.NH * a.hd;
    size_t nq = (size_t)a.B * a.Tq * C, nk = (size_t)a.B * a.Tk * C;
    float *q = gc_randn(&r, nq, 1), *k = gc_randn(&r, nk, 1), *v = gc_randn(&r, nk, 1);
    float *dout = gc_randn(&r, nq, 1);
    Run base = run_once(&a, q, k, v, dout, 1, 1);
    int cfg[][2] = {{1, 2}, {2, 0}, {3, 0}, {3, 2}, {4, 1}, {7, 2}};
    for (size_t i = 0; i < sizeof cfg / sizeof *cfg; i++) {
        Run x = run_once(&a, q, k, v, dout, cfg[i][0], cfg[i][1]);
        size_t nl = (size_t)a.B * a.NH * a.Tq;
        cr_expect(memcmp(x.o, base.o, nq * 4) == 0, "o, threads %d", cfg[i][0]);
        cr_expect(memcmp(x.lse, base.lse, nl * 4) == 0, "lse, threads %d", cfg[i][0]);
        cr_expect(memcmp(x.dq, base.dq, nq * 4) == 0, "dq, threads %d sched %d", cfg[i][0],
                  cfg[i][1]);
        cr_expect(memcmp(x.dk, base.dk, nk * 4) == 0, "dk, threads %d sched %d", cfg[i][0],
                  cfg[i][1]);
        cr_expect(memcmp(x.dv, base.dv, nk * 4) == 0, "dv, threads %d sched %d", cfg[i][0],
                  cfg[i][1]);
        run_free(&x);
    }
    run_free(&base);
    gc_free_all();
}

/* Heads read straight out of a fused (B, T, 3C) qkv buffer equal the packed layout. */
Test(nn_flash, strided_fused_qkv_layout) {
    Rng r;
    rng_init(&r, 5);
    int B = 2, T = 70, NH = 2, hd = 32, C = NH * hd;
    size_t n = (size_t)B * T * C;
    float *qkv = gc_randn(&r, n * 3, 1), *dout = gc_randn(&r, n, 1);
    float *q = gc_randn(&r, n, 0), *k = gc_randn(&r, n, 0), *v = gc_randn(&r, n, 0);
    for (size_t t = 0; t < (size_t)B * T; t++) {
        memcpy(q + t * C, qkv + t * 3 * C, C * sizeof(float));
        memcpy(k + t * C, qkv + t * 3 * C + C, C * sizeof(float));
        memcpy(v + t * C, qkv + t * 3 * C + 2 * C, C * sizeof(float));
    }
    FlashAttn a = {.B = B, .NH = NH, .Tq = T, .Tk = T, .hd = hd, .causal = 1};
    Run p = run_once(&a, q, k, v, dout, 1, 0);
    FlashAttn s = a;
    s.ldq = s.ldk = s.ldv = 3 * C;
    float *o = gc_randn(&r, n, 0), *lse = gc_randn(&r, (size_t)B * NH * T, 0);
    float *dqkv = gc_randn(&r, n * 3, 0);
    nn_flash_forward(o, lse, qkv, qkv + C, qkv + 2 * C, &s);
    nn_flash_backward(dqkv, dqkv + C, dqkv + 2 * C, dout, qkv, qkv + C, qkv + 2 * C, o, lse, &s);
    cr_expect(rel_diff(o, p.o, n) < 1e-6);
    float *dq = gc_randn(&r, n, 0), *dk = gc_randn(&r, n, 0), *dv = gc_randn(&r, n, 0);
    for (size_t t = 0; t < (size_t)B * T; t++) {
        memcpy(dq + t * C, dqkv + t * 3 * C, C * sizeof(float));
        memcpy(dk + t * C, dqkv + t * 3 * C + C, C * sizeof(float));
        memcpy(dv + t * C, dqkv + t * 3 * C + 2 * C, C * sizeof(float));
    }
    cr_expect(rel_diff(dq, p.dq, n) < 1e-6);
    cr_expect(rel_diff(dk, p.dk, n) < 1e-6);
    cr_expect(rel_diff(dv, p.dv, n) < 1e-6);
    run_free(&p);
    gc_free_all();
}

/* Backward adds into the gradients and skips the NULL ones, doing the rest the same. */
Test(nn_flash, backward_adds_and_skips_null) {
    Rng r;
    rng_init(&r, 9);
    FlashAttn a = {.B = 1, .NH = 2, .Tq = 20, .Tk = 90, .hd = 8};
    size_t nq = 20 * 16, nk = 90 * 16;
    float *q = gc_randn(&r, nq, 1), *k = gc_randn(&r, nk, 1), *v = gc_randn(&r, nk, 1);
    float *dout = gc_randn(&r, nq, 1);
    Run full = run_once(&a, q, k, v, dout, 1, 0);
    float *dq = gc_randn(&r, nq, 0), *dv = gc_randn(&r, nk, 0);
    for (size_t i = 0; i < nq; i++)
        dq[i] = 1.0f;
    for (size_t i = 0; i < nk; i++)
        dv[i] = -2.0f;
    nn_flash_backward(dq, NULL, dv, dout, q, k, v, full.o, full.lse, &a);
    for (size_t i = 0; i < nq; i++)
        cr_expect_float_eq(dq[i], 1.0f + full.dq[i], 1e-5f, "dq[%zu]", i);
    for (size_t i = 0; i < nk; i++)
        cr_expect_float_eq(dv[i], -2.0f + full.dv[i], 1e-5f, "dv[%zu]", i);
    run_free(&full);
    gc_free_all();
}
