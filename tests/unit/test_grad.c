/*
 * test_grad.c - the backward kernels of core/train/ on their own:
 *   layer norm and activations against their double-precision twins;
 *   attention (causal and full, unequal sequence lengths) and the CLIP
 *   loss against central finite differences of a double forward written
 *   here; the learning-rate schedule at known points.
 * (tests/cli/80-train.t checks the whole backward pass against PyTorch.)
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "train/grad_kernels.h"
#include "train/train.h"
#include "tap.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double drand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}
static float *rand_buf(size_t n, double scale)
{
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = (float)(drand() * scale);
    return p;
}
static double maxrel(const float *a, const float *b, size_t n)
{
    double m = 0, s = 0;
    for (size_t i = 0; i < n; i++) s = fmax(s, fabs(b[i]));
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m / (s > 0 ? s : 1);
}

/* sum_i w_i * attention(q,k,v)_i in double, over sequences off/len. */
static double att_f(const double *q, const double *k, const double *v, const double *w, int n_seq,
                    const int64_t *off, const int *len, int H, int D, int causal)
{
    const int C = H * D;
    double f = 0, s[16];
    for (int sq = 0; sq < n_seq; sq++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < len[sq]; i++) {
                int nj = causal ? i + 1 : len[sq];
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j < nj; j++) {
                    double d = 0;
                    for (int e = 0; e < D; e++)
                        d += q[(off[sq] + i) * C + h * D + e] * k[(off[sq] + j) * C + h * D + e];
                    s[j] = d;
                    mx = fmax(mx, d);
                }
                for (int j = 0; j < nj; j++) sum += (s[j] = exp(s[j] - mx));
                for (int e = 0; e < D; e++) {
                    double o = 0;
                    for (int j = 0; j < nj; j++) o += s[j] / sum * v[(off[sq] + j) * C + h * D + e];
                    f += o * w[(off[sq] + i) * C + h * D + e];
                }
            }
    return f;
}

static void test_attention(int causal)
{
    enum { H = 2, D = 3, C = H * D, NS = 3, R = 11 };
    const int len[NS] = {4, 1, 6};
    const int64_t off[NS] = {0, 4, 5};
    float *q = rand_buf(R * C, 1), *k = rand_buf(R * C, 1), *v = rand_buf(R * C, 1), *w = rand_buf(R * C, 1);
    float dq[R * C], dk[R * C], dv[R * C], fq[R * C], fk[R * C], fv[R * C];
    double Q[R * C], K[R * C], V[R * C], Wd[R * C];
    for (int i = 0; i < R * C; i++) Q[i] = q[i], K[i] = k[i], V[i] = v[i], Wd[i] = w[i];
    cdx_grad_attention(dq, dk, dv, w, q, k, v, NS, off, len, H, D, causal);
    double *ins[3] = {Q, K, V};
    float *outs[3] = {fq, fk, fv};
    for (int t = 0; t < 3; t++)
        for (int i = 0; i < R * C; i++) {
            double keep = ins[t][i], h = 1e-5;
            ins[t][i] = keep + h;
            double fp = att_f(Q, K, V, Wd, NS, off, len, H, D, causal);
            ins[t][i] = keep - h;
            double fm = att_f(Q, K, V, Wd, NS, off, len, H, D, causal);
            ins[t][i] = keep;
            outs[t][i] = (float)((fp - fm) / (2 * h));
        }
    double e = fmax(maxrel(dq, fq, R * C), fmax(maxrel(dk, fk, R * C), maxrel(dv, fv, R * C)));
    ok(e < 1e-5, "attention backward (%s, lengths 4,1,6) = finite differences (max rel %.2g)",
       causal ? "causal" : "full", e);
    free(q);
    free(k);
    free(v);
    free(w);
}

static void test_loss(void)
{
    enum { N = 5, E = 7 };
    float *img = rand_buf(N * E, 1), *txt = rand_buf(N * E, 1);
    float di[N * E], dt[N * E], fi[N * E], ft[N * E], dtemp, scratch[2 * N * E], s2;
    const float t = 1.3f;
    double l = cdx_train_clip_loss(img, txt, N, E, t, di, dt, &dtemp);
    float *ins[2] = {img, txt}, *outs[2] = {fi, ft};
    for (int a = 0; a < 2; a++)
        for (int i = 0; i < N * E; i++) {
            float keep = ins[a][i], h = 1.0f / 256; /* exact in float */
            ins[a][i] = keep + h;
            double lp = cdx_train_clip_loss(img, txt, N, E, t, scratch, scratch + N * E, &s2);
            ins[a][i] = keep - h;
            double lm = cdx_train_clip_loss(img, txt, N, E, t, scratch, scratch + N * E, &s2);
            ins[a][i] = keep;
            outs[a][i] = (float)((lp - lm) / (2 * h));
        }
    double lp = cdx_train_clip_loss(img, txt, N, E, t + 1.0f / 256, scratch, scratch + N * E, &s2);
    double lm = cdx_train_clip_loss(img, txt, N, E, t - 1.0f / 256, scratch, scratch + N * E, &s2);
    double ft_ = (lp - lm) / (2.0 / 256);
    double e = fmax(maxrel(di, fi, N * E), maxrel(dt, ft, N * E));
    ok(e < 1e-3, "CLIP loss gradient w.r.t. both embeddings = finite differences (max rel %.2g)", e);
    ok(fabs(dtemp - ft_) < 1e-3 * fabs(ft_) + 1e-7, "and w.r.t. the log temperature (%.6g vs %.6g)", dtemp, ft_);
    /* matching pairs give a lower loss than a shuffled pairing */
    double l_same = cdx_train_clip_loss(img, img, N, E, 4.0f, scratch, scratch + N * E, &s2);
    ok(l_same < l && l > 0, "loss of identical pairs (%.4f) below random pairs (%.4f)", l_same, l);
    free(img);
    free(txt);
}

int main(void)
{
    cdx_threads_set(2);
    {
        const int R = 37, C = 48;
        float *x = rand_buf(R * C, 2), *dy = rand_buf(R * C, 1), *w = rand_buf(C, 1);
        float *dx = calloc(R * C, 4), *dxr = calloc(R * C, 4), dw[48] = {0}, db[48] = {0}, dwr[48] = {0},
              dbr[48] = {0};
        cdx_grad_layernorm(dx, dw, db, dy, x, w, R, C, 1e-5f);
        cdx_ref_grad_layernorm(dxr, dwr, dbr, dy, x, w, R, C, 1e-5f);
        double e = fmax(maxrel(dx, dxr, R * C), fmax(maxrel(dw, dwr, C), maxrel(db, dbr, C)));
        ok(e < 1e-5, "layer norm backward = double twin (max rel %.2g)", e);
        free(x);
        free(dy);
        free(w);
        free(dx);
        free(dxr);
    }
    for (int a = 0; a < 2; a++) {
        const int n = 10000;
        float *u = rand_buf(n, 6), *da = rand_buf(n, 1), *du = malloc(n * 4), *dur = malloc(n * 4);
        cdx_act act = a ? CDX_ACT_GELU : CDX_ACT_QUICK_GELU;
        cdx_grad_act(du, da, u, n, act);
        cdx_ref_grad_act(dur, da, u, n, act);
        double e = maxrel(du, dur, n);
        ok(e < 1e-6, "%s backward = double twin (max rel %.2g)", a ? "gelu" : "quick_gelu", e);
        free(u);
        free(da);
        free(du);
        free(dur);
    }
    {
        /* gelu_pytorch_tanh (SigLIP): the float kernel against its double
         * twin, and the twin against a central difference of the forward
         * formula 0.5 u (1 + tanh(sqrt(2/pi) (u + 0.044715 u^3))) */
        const int n = 10000;
        float *u = rand_buf(n, 6), *da = rand_buf(n, 1), *du = malloc(n * 4), *dur = malloc(n * 4);
        float *one = malloc(n * 4);
        for (int i = 0; i < n; i++) one[i] = 1.0f;
        cdx_grad_act(du, da, u, n, CDX_ACT_GELU_TANH);
        cdx_ref_grad_act(dur, da, u, n, CDX_ACT_GELU_TANH);
        double e = maxrel(du, dur, n), fd = 0;
        ok(e < 1e-6, "gelu_tanh backward = double twin (max rel %.2g)", e);
        cdx_ref_grad_act(dur, one, u, n, CDX_ACT_GELU_TANH);
        for (int i = 0; i < n; i++) {
            const double h = 1e-5, k = sqrt(2.0 / M_PI), x = u[i];
#define GT(v) (0.5 * (v) * (1.0 + tanh(k * ((v) + 0.044715 * (v) * (v) * (v)))))
            double num = (GT(x + h) - GT(x - h)) / (2 * h);
#undef GT
            fd = fmax(fd, fabs(num - dur[i]) / fmax(1e-3, fabs(num)));
        }
        ok(fd < 1e-6, "gelu_tanh derivative = finite difference of the forward (max rel %.2g)", fd);
        free(u);
        free(da);
        free(du);
        free(dur);
        free(one);
    }
    test_attention(1);
    test_attention(0);
    test_loss();
    {
        /* lr 1, warm-up 2 of 6 steps */
        double want[6] = {0.5, 1, 1, 0.5 * (1 + cos(M_PI / 4)), 0.5, 0.5 * (1 + cos(3 * M_PI / 4))};
        int good = 1;
        for (int s = 0; s < 6; s++) good &= fabs(cdx_train_lr(CDX_TRAIN_COSINE, 1, 2, 6, s) - want[s]) < 1e-15;
        ok(good, "cosine schedule with warm-up at every step");
        ok(cdx_train_lr(CDX_TRAIN_CONSTANT, 0.1, 4, 100, 1) == 0.1 * 2 / 4 &&
               cdx_train_lr(CDX_TRAIN_CONSTANT, 0.1, 4, 100, 50) == 0.1,
           "constant schedule with warm-up");
    }
    return done_testing();
}
