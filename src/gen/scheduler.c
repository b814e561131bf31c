/* scheduler — diffusers' Euler, Euler ancestral, DDIM, DPM-Solver++ 2M and PNDM (scheduler.h).
 *
 * Variables named f32 or typed float hold what diffusers keeps in a float32 torch tensor (or
 * numpy float32); doubles hold numpy float64 values. Every float operation below is one IEEE
 * operation in the order diffusers writes it (the build does not contract into FMAs), except
 * where a comment says torch itself fuses. */
#include "scheduler.h"

/* Each float product and sum rounds on its own, as in torch: GCC does not contract in -std=c11,
 * clang does by default (into FMAs on arm64) unless told. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"

/* ---- the training schedule ------------------------------------------------------------------ */

/* torch.linspace(a, b, n, dtype=float32) on the CPU: the first half start + step * i, the
 * second end - step * (n - 1 - i), each one fused multiply-add (the kernel is compiled for
 * AVX2 with FMA contraction). */
static void linspace_f32(float a, float b, int n, float *out) {
    if (n == 1) {
        out[0] = a;
        return;
    }
    float step = (b - a) / (float)(n - 1);
    int half = n / 2;
    for (int i = 0; i < n; i++)
        out[i] = i < half ? fmaf(step, (float)i, a) : fmaf(-step, (float)(n - 1 - i), b);
}

static double alpha_bar_cos(double t) {
    double c = cos((t + 0.008) / 1.008 * 3.14159265358979323846 / 2);
    return c * c;
}

/* cumprod of 1 - beta; torch's CPU cumprod accumulates in double */
static void cumprod(const float *betas, int n, float *ac) {
    double acc = 1.0;
    for (int i = 0; i < n; i++) {
        float alpha = 1.0f - betas[i];
        acc *= (double)alpha;
        ac[i] = (float)acc;
    }
}

/* diffusers' rescale_zero_terminal_snr (Lin et al. 2023): shift and scale sqrt(alpha_bar) so
 * that it is 0 at the last timestep and unchanged at the first, then back to betas. TMP has
 * n floats. */
static void rescale_zero_terminal_snr(float *betas, int n, float *tmp) {
    float *s = tmp;
    cumprod(betas, n, s);
    for (int i = 0; i < n; i++)
        s[i] = sqrtf(s[i]);
    float s0 = s[0], sT = s[n - 1];
    for (int i = 0; i < n; i++)
        s[i] = s[i] - sT;
    float scale = s0 / (s0 - sT);
    for (int i = 0; i < n; i++) {
        s[i] = s[i] * scale;
        s[i] = s[i] * s[i];
    }
    for (int i = n - 1; i >= 1; i--)
        betas[i] = 1.0f - s[i] / s[i - 1];
    betas[0] = 1.0f - s[0];
}

static void train_alphas_cumprod(const SchedConfig *c, float *ac) {
    int n = c->num_train_timesteps;
    float *betas = xmalloc((size_t)n * sizeof *betas);
    switch (c->beta_schedule) {
    case SCHED_BETAS_LINEAR:
        linspace_f32((float)c->beta_start, (float)c->beta_end, n, betas);
        break;
    case SCHED_BETAS_SCALED_LINEAR:
        linspace_f32((float)pow(c->beta_start, 0.5), (float)pow(c->beta_end, 0.5), n, betas);
        for (int i = 0; i < n; i++)
            betas[i] = betas[i] * betas[i];
        break;
    case SCHED_BETAS_SQUAREDCOS_CAP_V2:
        for (int i = 0; i < n; i++) {
            double t1 = (double)i / n, t2 = (double)(i + 1) / n;
            double b = 1 - alpha_bar_cos(t2) / alpha_bar_cos(t1);
            betas[i] = (float)(b < 0.999 ? b : 0.999);
        }
        break;
    }
    if (c->rescale_zero_snr)
        rescale_zero_terminal_snr(betas, n, ac);
    cumprod(betas, n, ac);
    /* zero terminal SNR: the last alpha_bar is 0; Euler and DPM-Solver++ make it 2^-24 so that
     * the largest sigma stays finite (4096), DDIM keeps the 0 */
    if (c->rescale_zero_snr && c->kind != SCHED_DDIM)
        ac[n - 1] = 0x1p-24f;
    free(betas);
}

/* ---- numpy's pieces ------------------------------------------------------------------------- */

/* np.linspace(a, b, n) in float64: i * ((b - a) / (n - 1)) + a, the last one exactly b. */
static double np_linspace(double a, double b, int n, int i) {
    if (n == 1)
        return a + 0.0 * (b - a);
    if (i == n - 1)
        return b;
    double step = (b - a) / (n - 1);
    return (double)i * step + a;
}

/* np.arange(start, 0, -step) for step > 0, as numpy fills a float range: its length, and
 * value i = start + i * ((start - step) - start). */
static int np_arange_down_len(double start, double step) {
    return (int)ceil((0.0 - start) / -step);
}

static double np_arange_down(double start, double step, int i) {
    if (i == 0)
        return start;
    double delta = (start + -step) - start;
    return i == 1 ? start + -step : start + (double)i * delta;
}

/* np.interp(x, arange(n), fp) with fp float32. */
static double np_interp(double x, const float *fp, int n) {
    if (x <= 0)
        return fp[0];
    if (x >= n - 1)
        return fp[n - 1];
    int j = (int)floor(x);
    if ((double)j == x)
        return fp[j];
    double slope = ((double)fp[j + 1] - (double)fp[j]) / 1.0;
    return slope * (x - (double)j) + (double)fp[j];
}

/* diffusers' _sigma_to_t: the fractional training timestep of SIGMA by linear interpolation
 * in log sigma (LOG_SIGMAS float32, ascending with t). */
static double sigma_to_t(double sigma, const float *log_sigmas, int n) {
    double log_sigma = log(sigma > 1e-10 ? sigma : 1e-10);
    int low = -1; /* the last index with log_sigma - log_sigmas[i] >= 0 */
    for (int i = 0; i < n; i++)
        if (log_sigma - (double)log_sigmas[i] >= 0)
            low = i;
    if (low < 0)
        low = 0; /* numpy's argmax of an all-zero cumsum */
    if (low > n - 2)
        low = n - 2;
    float lo = log_sigmas[low], hi = log_sigmas[low + 1];
    double w = ((double)lo - log_sigma) / (double)(float)(lo - hi);
    w = w < 0 ? 0 : w > 1 ? 1 : w;
    return (1 - w) * low + w * (low + 1);
}

/* Karras et al.'s sigmas, rho = 7, in float64. */
static double karras(double smin, double smax, int n, int i) {
    double ramp = np_linspace(0, 1, n, i);
    double min_inv = pow(smin, 1 / 7.0), max_inv = pow(smax, 1 / 7.0);
    return pow(max_inv + ramp * (min_inv - max_inv), 7.0);
}

/* ---- set_timesteps -------------------------------------------------------------------------- */

static int is_euler(SchedKind k) { return k == SCHED_EULER || k == SCHED_EULER_A; }
static int is_dpm(SchedKind k) { return k == SCHED_DPMPP_2M || k == SCHED_DPMPP_2M_KARRAS; }

/* The timesteps of Euler, Euler ancestral and DDIM (float64 before their casts); returns
 * the count. */
static int plain_timesteps(const SchedConfig *c, int steps, double *ts) {
    int T = c->num_train_timesteps, n = 0;
    switch (c->spacing) {
    case SCHED_SPACING_LINSPACE:
        for (int i = 0; i < steps; i++) {
            double v = np_linspace(0, T - 1, steps, steps - 1 - i);
            ts[n++] = c->kind == SCHED_DDIM ? nearbyint(v) : (double)(float)v;
        }
        break;
    case SCHED_SPACING_LEADING: {
        int ratio = T / steps;
        for (int i = 0; i < steps; i++)
            ts[n++] = (double)(steps - 1 - i) * ratio + c->steps_offset;
        break;
    }
    case SCHED_SPACING_TRAILING: {
        double ratio = (double)T / steps;
        int len = np_arange_down_len(T, ratio);
        for (int i = 0; i < len && n < steps; i++)
            ts[n++] = nearbyint(np_arange_down(T, ratio, i)) - 1;
        break;
    }
    }
    return n;
}

static int dpm_timesteps(const SchedConfig *c, const float *ac, int steps, double *ts) {
    int T = c->num_train_timesteps, n = 0;
    /* lambda_min_clipped: the count of flipped lambda_t below it (torch.searchsorted) */
    int clipped = 0;
    for (int i = T - 1; i >= 0; i--) {
        float lam = logf(sqrtf(ac[i])) - logf(sqrtf(1.0f - ac[i]));
        if ((double)lam < c->lambda_min_clipped)
            clipped++;
        else
            break;
    }
    int last = T - clipped;
    switch (c->spacing) {
    case SCHED_SPACING_LINSPACE:
        for (int i = 0; i < steps; i++)
            ts[n++] = nearbyint(np_linspace(0, last - 1, steps + 1, steps - i));
        break;
    case SCHED_SPACING_LEADING: {
        int ratio = last / (steps + 1);
        for (int i = 0; i < steps; i++)
            ts[n++] = (double)(steps - i) * ratio + c->steps_offset;
        break;
    }
    case SCHED_SPACING_TRAILING: {
        double ratio = (double)T / steps;
        int len = np_arange_down_len(last, ratio);
        for (int i = 0; i < len && n < steps; i++)
            ts[n++] = nearbyint(np_arange_down(last, ratio, i)) - 1;
        break;
    }
    }
    return n;
}

void scheduler_deinit(Scheduler *s) {
    if (!s)
        return;
    free(s->alphas_cumprod);
    free(s->timesteps);
    free(s->sigmas);
    free(s->prev_x0);
    free(s->pndm_buf);
    memset(s, 0, sizeof *s);
}

/* diffusers' _init_step_index: the first timestep's index, the second one when it repeats. */
static int begin_index(const Scheduler *s) {
    if (s->cfg.kind == SCHED_DDIM || s->cfg.kind == SCHED_PNDM)
        return 0;
    for (int i = 1; i < s->n_steps; i++)
        if (s->timesteps[i] == s->timesteps[0])
            return i;
    return 0;
}

void scheduler_reset(Scheduler *s) {
    s->step_index = begin_index(s);
    s->lower_order_nums = 0;
    s->n_ets = 0;
    s->has_cur_sample = 0;
}

static int pndm_init(Scheduler *s, int steps, Err *err);

int scheduler_init(Scheduler *s, const SchedConfig *cfg, int steps, Err *err) {
    memset(s, 0, sizeof *s);
    int T = cfg->num_train_timesteps;
    if (steps < 1 || steps > T)
        return err_set(err, ERR_USAGE, "%d steps: use 1 to %d (the model's training timesteps)",
                       steps, T);
    s->cfg = *cfg;
    s->n_train = T;
    s->alphas_cumprod = xmalloc((size_t)T * sizeof *s->alphas_cumprod);
    train_alphas_cumprod(cfg, s->alphas_cumprod);
    s->timesteps = xmalloc((size_t)(steps + 1) * sizeof *s->timesteps);
    s->init_noise_sigma = 1.0f;

    const float *ac = s->alphas_cumprod;
    float *train_sigmas = xmalloc((size_t)T * sizeof *train_sigmas);
    float *log_sigmas = xmalloc((size_t)T * sizeof *log_sigmas);
    for (int i = 0; i < T; i++) {
        train_sigmas[i] = sqrtf((1.0f - ac[i]) / ac[i]);
        log_sigmas[i] = logf(train_sigmas[i]);
    }
    float sigma_last = cfg->final_sigma_min ? sqrtf((1.0f - ac[0]) / ac[0]) : 0.0f;

    if (cfg->kind == SCHED_PNDM) {
        int rc = pndm_init(s, steps, err);
        if (rc) {
            free(train_sigmas);
            free(log_sigmas);
            scheduler_deinit(s);
            return rc;
        }
    } else if (cfg->kind == SCHED_DDIM) {
        s->n_steps = plain_timesteps(cfg, steps, s->timesteps);
        /* DDIM indexes alphas_cumprod by timestep (diffusers fails there too) */
        if (s->timesteps[0] > T - 1) {
            int t0 = (int)s->timesteps[0];
            free(train_sigmas);
            free(log_sigmas);
            scheduler_deinit(s);
            return err_set(err, ERR_USAGE, "ddim: %d steps with steps_offset %d start at "
                           "timestep %d, past the model's last (%d); use fewer steps",
                           steps, cfg->steps_offset, t0, T - 1);
        }
    } else if (is_euler(cfg->kind)) {
        int n = plain_timesteps(cfg, steps, s->timesteps);
        double *sig = xmalloc((size_t)(n + 1) * sizeof *sig);
        for (int i = 0; i < n; i++)
            sig[i] = np_interp(s->timesteps[i], train_sigmas, T);
        if (cfg->kind == SCHED_EULER && cfg->use_karras_sigmas) {
            double smin = isnan(cfg->sigma_min) ? sig[n - 1] : cfg->sigma_min;
            double smax = isnan(cfg->sigma_max) ? sig[0] : cfg->sigma_max;
            for (int i = 0; i < n; i++) {
                sig[i] = karras(smin, smax, n, i);
                s->timesteps[i] = (double)(float)sigma_to_t(sig[i], log_sigmas, T);
            }
        }
        s->n_steps = n;
        s->sigmas = xmalloc((size_t)(n + 1) * sizeof *s->sigmas);
        for (int i = 0; i < n; i++)
            s->sigmas[i] = (float)sig[i];
        s->sigmas[n] = cfg->kind == SCHED_EULER ? sigma_last : 0.0f;
        free(sig);
        float mx = 0.0f;
        for (int i = 0; i <= n; i++)
            mx = s->sigmas[i] > mx ? s->sigmas[i] : mx;
        s->init_noise_sigma = (cfg->spacing == SCHED_SPACING_LEADING) ? sqrtf(mx * mx + 1.0f)
                                                                       : mx;
    } else {
        ASSERT(is_dpm(cfg->kind));
        int n;
        double *sig = xmalloc((size_t)(steps + 1) * sizeof *sig);
        if (cfg->use_karras_sigmas) {
            n = steps;
            double smin = isnan(cfg->sigma_min) ? train_sigmas[0] : cfg->sigma_min;
            double smax = isnan(cfg->sigma_max) ? train_sigmas[T - 1] : cfg->sigma_max;
            for (int i = 0; i < n; i++) {
                sig[i] = karras(smin, smax, n, i);
                double t = sigma_to_t(sig[i], log_sigmas, T);
                s->timesteps[i] = cfg->beta_schedule == SCHED_BETAS_SQUAREDCOS_CAP_V2
                                      ? (double)(long long)t : nearbyint(t);
            }
        } else {
            n = dpm_timesteps(cfg, ac, steps, s->timesteps);
            for (int i = 0; i < n; i++)
                sig[i] = np_interp(s->timesteps[i], train_sigmas, T);
        }
        s->n_steps = n;
        s->sigmas = xmalloc((size_t)(n + 1) * sizeof *s->sigmas);
        for (int i = 0; i < n; i++)
            s->sigmas[i] = (float)sig[i];
        s->sigmas[n] = sigma_last;
        free(sig);
    }
    free(train_sigmas);
    free(log_sigmas);
    scheduler_reset(s);
    return 0;
}

/* ---- steps ---------------------------------------------------------------------------------- */

int scheduler_step_needs_noise(const Scheduler *s) {
    return s->cfg.kind == SCHED_EULER_A || (s->cfg.kind == SCHED_DDIM && s->cfg.eta > 0);
}

void scheduler_scale_model_input(const Scheduler *s, const float *x, float *out, size_t n) {
    if (is_euler(s->cfg.kind) && s->step_index < s->n_steps) {
        float sigma = s->sigmas[s->step_index];
        float scale = sqrtf(sigma * sigma + 1.0f);
        for (size_t i = 0; i < n; i++)
            out[i] = x[i] / scale;
    } else if (out != x) {
        memmove(out, x, n * sizeof *out);
    }
}

/* Euler's and Euler ancestral's data prediction for one element. */
static inline float euler_x0(SchedPrediction p, float sigma, float c_out, float c_skip,
                             float mo, float x) {
    switch (p) {
    case SCHED_PRED_EPSILON:
        return x - sigma * mo;
    case SCHED_PRED_V:
        return mo * c_out + x / c_skip;
    case SCHED_PRED_SAMPLE:
        break;
    }
    return mo;
}

static void step_euler(Scheduler *s, const float *mo, const float *x, const float *noise,
                       float *out, size_t n) {
    int i = s->step_index;
    float sigma = s->sigmas[i], next = s->sigmas[i + 1];
    float s2p1 = sigma * sigma + 1.0f;
    float c_out = -sigma / sqrtf(s2p1);
    if (s->cfg.kind == SCHED_EULER) {
        float sigma_hat = sigma * 1.0f; /* gamma = 0: no churn in the pipelines */
        float dt = next - sigma_hat;
        for (size_t k = 0; k < n; k++) {
            float x0 = euler_x0(s->cfg.prediction, sigma_hat, c_out, s2p1, mo[k], x[k]);
            float d = (x[k] - x0) / sigma_hat;
            out[k] = x[k] + d * dt;
        }
        return;
    }
    float from2 = sigma * sigma, to2 = next * next;
    float up = sqrtf(to2 * (from2 - to2) / from2);
    float down = sqrtf(to2 - up * up);
    float dt = down - sigma;
    for (size_t k = 0; k < n; k++) {
        float x0 = euler_x0(s->cfg.prediction, sigma, c_out, s2p1, mo[k], x[k]);
        float d = (x[k] - x0) / sigma;
        float p = x[k] + d * dt;
        out[k] = p + noise[k] * up;
    }
}

static void step_ddim(Scheduler *s, const float *mo, const float *x, const float *noise,
                      float *out, size_t n) {
    const SchedConfig *c = &s->cfg;
    int t = (int)s->timesteps[s->step_index];
    int prev_t = t - c->num_train_timesteps / s->n_steps;
    float a_t = s->alphas_cumprod[t];
    float a_prev = prev_t >= 0 ? s->alphas_cumprod[prev_t]
                               : (c->set_alpha_to_one ? 1.0f : s->alphas_cumprod[0]);
    float b_t = 1.0f - a_t, b_prev = 1.0f - a_prev;
    float sa = sqrtf(a_t), sb = sqrtf(b_t), sa_prev = sqrtf(a_prev);
    float variance = (b_prev / b_t) * (1.0f - a_t / a_prev);
    float std = (float)c->eta * sqrtf(variance);
    float dir_scale = sqrtf(1.0f - a_prev - std * std);
    float clip = (float)c->clip_sample_range;
    for (size_t k = 0; k < n; k++) {
        float x0, eps;
        switch (c->prediction) {
        case SCHED_PRED_EPSILON:
            x0 = (x[k] - sb * mo[k]) / sa;
            eps = mo[k];
            break;
        case SCHED_PRED_V:
            x0 = sa * x[k] - sb * mo[k];
            eps = sa * mo[k] + sb * x[k];
            break;
        default:
            x0 = mo[k];
            eps = (x[k] - sa * x0) / sb;
            break;
        }
        if (c->clip_sample)
            x0 = x0 < -clip ? -clip : x0 > clip ? clip : x0;
        float p = sa_prev * x0 + dir_scale * eps;
        out[k] = c->eta > 0 ? p + std * noise[k] : p;
    }
}

/* alpha_t, sigma_t of a sigma (diffusers' _sigma_to_alpha_sigma_t) and lambda = log a - log s */
static void dpm_coef(float sigma, float *alpha, float *sig, float *lambda) {
    *alpha = 1.0f / sqrtf(sigma * sigma + 1.0f);
    *sig = sigma * *alpha;
    *lambda = logf(*alpha) - logf(*sig);
}

static void step_dpm(Scheduler *s, const float *x, float *out, size_t n) {
    const SchedConfig *c = &s->cfg;
    int i = s->step_index, N = s->n_steps;
    float a_s0, s_s0, l_s0, a_t, s_t, l_t;
    dpm_coef(s->sigmas[i], &a_s0, &s_s0, &l_s0);
    dpm_coef(s->sigmas[i + 1], &a_t, &s_t, &l_t);
    int lower_final = i == N - 1 && (c->euler_at_final || (c->lower_order_final && N < 15) ||
                                     !c->final_sigma_min);
    int first = c->solver_order == 1 || s->lower_order_nums < 1 || lower_final;
    float h = l_t - l_s0;
    float em1 = expf(-h) - 1.0f;
    float A = s_t / s_s0, B = a_t * em1;
    if (first) {
        for (size_t k = 0; k < n; k++) {
            float x0 = out[k]; /* the data prediction, written there by scheduler_step */
            out[k] = A * x[k] - B * x0;
        }
        return;
    }
    float a_s1, s_s1, l_s1;
    dpm_coef(s->sigmas[i - 1], &a_s1, &s_s1, &l_s1);
    float h0 = l_s0 - l_s1;
    float r0 = h0 / h;
    float inv_r0 = 1.0f / r0;
    float C = c->solver_heun ? a_t * (em1 / h + 1.0f) : 0.5f * B;
    for (size_t k = 0; k < n; k++) {
        float m0 = out[k], m1 = s->prev_x0[k];
        float d1 = inv_r0 * (m0 - m1);
        float a = A * x[k] - B * m0;
        out[k] = c->solver_heun ? a + C * d1 : a - C * d1;
    }
}

static int pndm_step(Scheduler *s, const float *mo, const float *x, float *prev, size_t n,
                     Err *err);

int scheduler_step(Scheduler *s, const float *model_output, const float *sample,
                   const float *noise, float *prev, size_t n, Err *err) {
    if (s->step_index >= s->n_steps)
        return err_set(err, ERR_USAGE, "scheduler step %d past the last of %d steps",
                       s->step_index + 1, s->n_steps);
    if (scheduler_step_needs_noise(s) && !noise)
        return err_set(err, ERR_USAGE, "%s needs fresh noise at every step",
                       sched_kind_name(s->cfg.kind));
    if (s->cfg.kind == SCHED_PNDM)
        return pndm_step(s, model_output, sample, prev, n, err);
    if (!is_dpm(s->cfg.kind)) {
        if (s->cfg.kind == SCHED_DDIM)
            step_ddim(s, model_output, sample, noise, prev, n);
        else
            step_euler(s, model_output, sample, noise, prev, n);
        s->step_index++;
        return 0;
    }
    /* DPM-Solver++: the data prediction x0 first; it becomes the history */
    float *x0 = malloc(n * sizeof *x0), *tmp = malloc(n * sizeof *tmp);
    if ((!x0 || !tmp) && n) {
        free(x0);
        free(tmp);
        return err_set(err, ERR_NOMEM, "out of memory for one sampler step (%zu values)", n);
    }
    if (s->n_prev != n) { /* a new size: no usable history */
        free(s->prev_x0);
        s->prev_x0 = NULL;
        s->n_prev = n;
        s->lower_order_nums = 0;
    }
    {
        float a, sg, l;
        dpm_coef(s->sigmas[s->step_index], &a, &sg, &l);
        for (size_t k = 0; k < n; k++) {
            switch (s->cfg.prediction) {
            case SCHED_PRED_EPSILON:
                x0[k] = (sample[k] - sg * model_output[k]) / a;
                break;
            case SCHED_PRED_V:
                x0[k] = a * sample[k] - sg * model_output[k];
                break;
            default:
                x0[k] = model_output[k];
                break;
            }
        }
    }
    /* step_dpm reads the data prediction from its output array, so that PREV may be SAMPLE */
    memcpy(tmp, x0, n * sizeof *tmp);
    step_dpm(s, sample, tmp, n);
    memcpy(prev, tmp, n * sizeof *prev);
    free(tmp);
    free(s->prev_x0);
    s->prev_x0 = x0;
    if (s->lower_order_nums < s->cfg.solver_order)
        s->lower_order_nums++;
    s->step_index++;
    return 0;
}

/* ---- PNDM (diffusers' PNDMScheduler) -------------------------------------------------------- */

/* set_timesteps: the N inference timesteps ascending (diffusers' _timesteps), then
 * prk_timesteps and plms_timesteps into s->timesteps. */
static int pndm_init(Scheduler *s, int steps, Err *err) {
    const SchedConfig *c = &s->cfg;
    int T = c->num_train_timesteps, L = 0;
    double *asc = xmalloc((size_t)(steps + 2) * sizeof *asc);
    switch (c->spacing) {
    case SCHED_SPACING_LINSPACE:
        for (int i = 0; i < steps; i++)
            asc[L++] = nearbyint(np_linspace(0, T - 1, steps, i));
        break;
    case SCHED_SPACING_LEADING:
        for (int i = 0; i < steps; i++)
            asc[L++] = (double)i * (T / steps) + c->steps_offset;
        break;
    case SCHED_SPACING_TRAILING: {
        double ratio = (double)T / steps;
        int len = np_arange_down_len(T, ratio);
        for (int i = len - 1; i >= 0 && L < steps + 2; i--)
            asc[L++] = nearbyint(np_arange_down(T, ratio, i)) - 1;
        break;
    }
    }
    s->pndm_ratio = T / steps;
    free(s->timesteps);
    s->timesteps = xmalloc((size_t)(L + 12) * sizeof *s->timesteps);
    int n = 0;
    if (c->skip_prk_steps) {
        /* concatenate(_timesteps[:-1], _timesteps[-2:-1], _timesteps[-1:])[::-1] */
        s->timesteps[n++] = asc[L - 1];
        if (L >= 2)
            s->timesteps[n++] = asc[L - 2];
        for (int i = L - 2; i >= 0; i--)
            s->timesteps[n++] = asc[i];
    } else {
        if (L < 4) {
            free(asc);
            return err_set(err, ERR_USAGE, "pndm: skip_prk_steps is not true, and its 12 "
                           "Runge-Kutta steps need at least 4 steps, not %d (diffusers fails "
                           "too); use more steps or set \"skip_prk_steps\": true", steps);
        }
        /* the last 4 timesteps and their midpoints, each twice but the first and the last */
        double pair[8], rep[12];
        int half = T / steps / 2;
        for (int j = 0; j < 4; j++) {
            pair[2 * j] = asc[L - 4 + j];
            pair[2 * j + 1] = asc[L - 4 + j] + half;
        }
        for (int k = 0; k < 12; k++)
            rep[k] = pair[(k + 1) / 2];
        for (int k = 11; k >= 0; k--)
            s->timesteps[n++] = rep[k];
        s->n_prk = 12;
        for (int i = L - 4; i >= 0; i--)
            s->timesteps[n++] = asc[i];
    }
    free(asc);
    s->n_steps = n;
    /* every timestep a step indexes alphas_cumprod at must exist (diffusers fails there) */
    for (int i = 0; i < n; i++) {
        double t = s->timesteps[i];
        if (i == 1 && i >= s->n_prk)
            t += s->pndm_ratio;
        if (t > T - 1 || t < 0)
            return err_set(err, ERR_USAGE, "pndm: %d steps with steps_offset %d reach "
                           "timestep %.0f, past the model's last (%d); use fewer steps",
                           steps, c->steps_offset, t, T - 1);
    }
    return 0;
}

/* diffusers' _get_prev_sample (the PNDM paper's formula 9) from SAMPLE at timestep T to
 * PREV_T with the (combined) model output MO, into OUT (may alias either). */
static void pndm_prev_sample(const Scheduler *s, const float *x, int t, int prev_t,
                             const float *mo, float *out, size_t n) {
    const float *ac = s->alphas_cumprod;
    float a_t = ac[t];
    float a_p = prev_t >= 0 ? ac[prev_t] : (s->cfg.set_alpha_to_one ? 1.0f : ac[0]);
    float b_t = 1.0f - a_t, b_p = 1.0f - a_p;
    float sa = sqrtf(a_t), sb = sqrtf(b_t);
    float coeff = sqrtf(a_p / a_t);
    float den = a_t * sqrtf(b_p) + sqrtf(a_t * b_t * a_p);
    float d = a_p - a_t;
    int v = s->cfg.prediction == SCHED_PRED_V;
    for (size_t k = 0; k < n; k++) {
        float e = mo[k];
        if (v)
            e = sa * e + sb * x[k];
        float a = coeff * x[k];
        float b = d * e;
        out[k] = a - b / den;
    }
}

/* One step: step_prk for the first n_prk, then step_plms. The model outputs are kept as
 * diffusers keeps them (its ets list), and combined in its order of operations. */
static int pndm_step(Scheduler *s, const float *mo, const float *x, float *prev, size_t n,
                     Err *err) {
    if (s->pndm_n != n) { /* a new size: no usable history */
        free(s->pndm_buf);
        s->pndm_buf = n ? malloc(6 * n * sizeof *s->pndm_buf) : NULL;
        if (!s->pndm_buf && n) {
            s->pndm_n = 0;
            return err_set(err, ERR_NOMEM, "out of memory for pndm's history (%zu values)",
                           6 * n);
        }
        s->pndm_n = n;
        s->n_ets = 0;
        s->has_cur_sample = 0;
    }
    float *tmp = malloc((n ? n : 1) * sizeof *tmp);
    if (!tmp)
        return err_set(err, ERR_NOMEM, "out of memory for one sampler step (%zu values)", n);
    float *cur = s->pndm_buf + 4 * n, *rk = s->pndm_buf + 5 * n;
    int c = s->step_index, ts = (int)s->timesteps[c];
    /* the oldest slot becomes the newest: ets = ets[-3:] + [mo] */
    float *slot = NULL;
    if (s->n_ets < 4 && !(c == 1 && c >= s->n_prk)) {
        int used[4] = {0};
        for (int i = 0; i < s->n_ets; i++)
            for (int j = 0; j < 4; j++)
                if (s->ets[i] == s->pndm_buf + (size_t)j * n)
                    used[j] = 1;
        for (int j = 0; j < 4 && !slot; j++)
            if (!used[j])
                slot = s->pndm_buf + (size_t)j * n;
    }
    if (c < s->n_prk) {
        int diff = c % 2 ? 0 : s->pndm_ratio / 2;
        int prev_t = ts - diff, t = (int)s->timesteps[c / 4 * 4];
        const float *use = mo;
        float sixth = (float)(1.0 / 6), third = (float)(1.0 / 3);
        switch (c % 4) {
        case 0:
            for (size_t k = 0; k < n; k++)
                rk[k] = sixth * mo[k];
            memcpy(slot, mo, n * sizeof *slot);
            s->ets[s->n_ets++] = slot;
            memmove(cur, x, n * sizeof *cur);
            s->has_cur_sample = 1;
            break;
        case 1:
        case 2:
            for (size_t k = 0; k < n; k++)
                rk[k] = rk[k] + third * mo[k];
            break;
        default:
            for (size_t k = 0; k < n; k++)
                tmp[k] = rk[k] + sixth * mo[k];
            use = tmp;
            break;
        }
        pndm_prev_sample(s, cur, t, prev_t, use, tmp, n);
        memcpy(prev, tmp, n * sizeof *prev);
        free(tmp);
        s->step_index++;
        return 0;
    }
    int prev_t = ts - s->pndm_ratio, t = ts;
    if (c != 1) {
        if (s->n_ets == 4) { /* drop the oldest, reuse its memory */
            slot = s->ets[0];
            memmove(s->ets, s->ets + 1, 3 * sizeof *s->ets);
            s->n_ets = 3;
        }
        memcpy(slot, mo, n * sizeof *slot);
        s->ets[s->n_ets++] = slot;
    } else {
        prev_t = ts;
        t = ts + s->pndm_ratio;
    }
    const float *e1 = s->ets[s->n_ets - 1], *e2 = s->n_ets > 1 ? s->ets[s->n_ets - 2] : NULL;
    const float *e3 = s->n_ets > 2 ? s->ets[s->n_ets - 3] : NULL, *e4 = s->ets[0];
    const float *xs = x;
    if (s->n_ets == 1 && c == 0) {
        memmove(cur, x, n * sizeof *cur);
        s->has_cur_sample = 1;
        memcpy(tmp, mo, n * sizeof *tmp);
    } else if (s->n_ets == 1 && c == 1) {
        for (size_t k = 0; k < n; k++)
            tmp[k] = (mo[k] + e1[k]) / 2.0f;
        xs = cur; /* cur_sample, then forgotten */
        s->has_cur_sample = 0;
    } else if (s->n_ets == 2) {
        for (size_t k = 0; k < n; k++) {
            float a = 3.0f * e1[k];
            tmp[k] = (a - e2[k]) / 2.0f;
        }
    } else if (s->n_ets == 3) {
        for (size_t k = 0; k < n; k++) {
            float a = 23.0f * e1[k], b = 16.0f * e2[k], d = 5.0f * e3[k];
            float u = a - b;
            u = u + d;
            tmp[k] = u / 12.0f;
        }
    } else {
        float inv24 = (float)(1.0 / 24);
        for (size_t k = 0; k < n; k++) {
            float a = 55.0f * e1[k], b = 59.0f * e2[k], d = 37.0f * e3[k], f = 9.0f * e4[k];
            float u = a - b;
            u = u + d;
            u = u - f;
            tmp[k] = inv24 * u;
        }
    }
    pndm_prev_sample(s, xs, t, prev_t, tmp, tmp, n);
    memcpy(prev, tmp, n * sizeof *prev);
    free(tmp);
    s->step_index++;
    return 0;
}
