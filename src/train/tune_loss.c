/* tune_loss — the preference objectives (see tune_loss.h). Scalars in double, each pair's
 * sums in a fixed order, so results do not depend on anything but the inputs. */
#include "tune_loss.h"

#include <math.h>
#include <string.h>

int tune_objective_parse(const char *name) {
    if (!name)
        return -1;
    if (!strcmp(name, "dpo"))
        return TUNE_DPO;
    if (!strcmp(name, "dspo"))
        return TUNE_DSPO;
    if (!strcmp(name, "adpo"))
        return TUNE_ADPO;
    return -1;
}

const char *tune_objective_name(TuneObjective o) {
    return o == TUNE_DSPO ? "dspo" : o == TUNE_ADPO ? "adpo" : "dpo";
}

static double sq_err(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t j = 0; j < n; j++) {
        double d = (double)a[j] - b[j];
        s += d * d;
    }
    return s / (double)n;
}

static double sigmoid(double x) { return x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x)); }

/* −log σ(x), stable */
static double neg_logsigmoid(double x) { return x >= 0 ? log1p(exp(-x)) : -x + log1p(exp(x)); }

/* d_e (·) += g · d e / d pred for e = mean((pred − tgt)²) */
static void add_mse_grad(float *d, const float *pred, const float *tgt, size_t n, double g) {
    double k = 2.0 * g / (double)n;
    for (size_t j = 0; j < n; j++)
        d[j] += (float)(k * ((double)pred[j] - tgt[j]));
}

void tune_loss_grad(TuneObjective obj, int xl, float beta, int B, size_t N, const float *pred_w,
                    const float *pred_l, const float *ref_w, const float *ref_l,
                    const float *tgt_w, const float *tgt_l, float scale, float *d_w, float *d_l,
                    TuneLossStats *st) {
    memset(st, 0, sizeof *st);
    st->n = B;
    if (d_w)
        memset(d_w, 0, (size_t)B * N * sizeof *d_w);
    if (d_l)
        memset(d_l, 0, (size_t)B * N * sizeof *d_l);
    /* DSPO's SDXL form picks its branch on the micro-batch's mean of (pred_w − ref_w)² */
    double p2_mean = 0;
    if (obj == TUNE_DSPO && xl) {
        for (int i = 0; i < B; i++)
            p2_mean += sq_err(pred_w + (size_t)i * N, ref_w + (size_t)i * N, N);
        p2_mean /= B;
    }
    double sum_loss = 0;
    for (int i = 0; i < B; i++) {
        size_t o = (size_t)i * N;
        const float *pw = pred_w + o, *pl = pred_l + o, *rw = ref_w + o, *rl = ref_l + o;
        const float *tw = tgt_w + o, *tl = tgt_l + o;
        double ew = sq_err(pw, tw, N), el = sq_err(pl, tl, N);
        double rew = sq_err(rw, tw, N), rel = sq_err(rl, tl, N);
        double inside = -0.5 * beta * ((ew - el) - (rew - rel));
        double s = sigmoid(inside), g = 1 - s;
        st->acc += inside > 0;
        st->margin += inside;
        st->kl += 0.5 * ((ew - rew) + (el - rel));
        double G = 0; /* d loss_i / d inside */
        if (obj != TUNE_DSPO) {
            sum_loss += neg_logsigmoid(inside);
            G = -g;
        } else if (!xl) {
            /* u = (pw − tw) − β·g·(pw − rw) */
            double L = 0, up = 0;
            double a = 1 - (double)beta * g;
            for (size_t j = 0; j < N; j++) {
                double p2 = (double)pw[j] - rw[j];
                double u = ((double)pw[j] - tw[j]) - beta * g * p2;
                L += u * u;
                up += u * p2;
                if (d_w)
                    d_w[o + j] = (float)(scale / B * 2.0 * u * a / (double)N);
            }
            sum_loss += L / (double)N;
            /* d/dg of mean(u²) = −2β/N Σ u·p2; dg/dinside = −s·g */
            G = (-2.0 * beta / (double)N * up) * (-s * g);
        } else if (p2_mean >= 0.1) {
            double m2 = sq_err(pw, rw, N);
            sum_loss += g * g * m2;
            if (d_w)
                for (size_t j = 0; j < N; j++)
                    d_w[o + j] = (float)(scale / B * g * g * 2.0 * ((double)pw[j] - rw[j]) /
                                         (double)N);
            G = 2 * g * m2 * (-s * g);
        } else {
            sum_loss += g * g;
            G = 2 * g * (-s * g);
        }
        /* through inside: d inside / d e_θ,w = −β/2, d inside / d e_θ,l = +β/2 */
        double k = scale / B * G * 0.5 * beta;
        if (d_w)
            add_mse_grad(d_w + o, pw, tw, N, -k);
        if (d_l)
            add_mse_grad(d_l + o, pl, tl, N, k);
    }
    st->loss = sum_loss / B;
}
