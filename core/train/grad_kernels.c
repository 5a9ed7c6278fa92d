/*
 * grad_kernels.c - see grad_kernels.h.
 *
 * The derivatives, with y the forward output and d. the gradient of the
 * loss:
 *   linear     dW += dy^T x, db += sum_r dy, dx = dy W
 *   layernorm  xhat = (x - mean) r, r = 1/sqrt(var + eps):
 *              dw += sum_r dy xhat, db += sum_r dy,
 *              dx = r (g - mean(g) - xhat mean(g xhat)) with g = dy w
 *   quick_gelu u s(1.702u): s + 1.702 u s (1 - s)
 *   gelu       0.5 u (1 + erf(u/sqrt2)): Phi(u) + u phi(u)
 *   gelu_tanh  0.5 u (1 + tanh(w)), w = k (u + a u^3), k = sqrt(2/pi),
 *              a = 0.044715: 0.5 (1 + tanh w) + 0.5 u (1 - tanh^2 w) k (1 + 3 a u^2)
 *   attention  S = Q K^T, P = softmax(S) (masked), O = P V:
 *              dV = P^T dO, dP = dO V^T, dS = P (dP - rowsum(P dP)),
 *              dQ = dS K, dK = dS^T Q
 * The loops are plain C (no intrinsics): the GEMMs dominate and go to
 * OpenBLAS, so these need no SIMD twin beyond what GCC vectorises.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "grad_kernels.h"
#include "internal.h"
#include "engine/linear.h"
#include "pool.h"

/* ---------------------------------------------------------------- linear */

struct glin_ctx {
    float *dx, *dW;
    const float *dy, *x, *W;
    int64_t R;
    int K, N, bn, bk;
    float beta;
};

/* Both products are split into fixed-width blocks (cdx_fixed_blocks), one
 * sgemm call each, so the sums do not depend on the thread count. */

/* dW rows n0..n1 of each block: dW[n0:n1] += dy[:, n0:n1]^T x. */
static void glin_dw(void *vctx, int64_t b, int64_t e)
{
    const struct glin_ctx *c = vctx;
    for (int64_t i = b; i < e; i++) {
        int n0 = (int)i * c->bn, n1 = n0 + c->bn < c->N ? n0 + c->bn : c->N;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n1 - n0, c->K, (int)c->R, 1.0f,
                    c->dy + n0, c->N, c->x, c->K, 1.0f, c->dW + (int64_t)n0 * c->K, c->K);
    }
}

/* dx columns k0..k1 of each block: dx[:, k0:k1] (+)= dy W[:, k0:k1]. */
static void glin_dx(void *vctx, int64_t b, int64_t e)
{
    const struct glin_ctx *c = vctx;
    for (int64_t i = b; i < e; i++) {
        int k0 = (int)i * c->bk, k1 = k0 + c->bk < c->K ? k0 + c->bk : c->K;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)c->R, k1 - k0, c->N, 1.0f,
                    c->dy, c->N, c->W + k0, c->K, c->beta, c->dx + k0, c->K);
    }
}

void cdx_grad_linear(float *dx, float *dW, float *db, const float *dy, const float *x,
                     const float *W, int64_t R, int K, int N, int accumulate)
{
    struct glin_ctx c = {dx, dW, dy, x, W, R, K, N, 0, 0, accumulate ? 1.0f : 0.0f};
    if (R <= 0) return;
    int nbn = cdx_fixed_blocks(N, 32, &c.bn), nbk = cdx_fixed_blocks(K, 32, &c.bk);
    if (dW) cdx_parallel_for(nbn, 1, glin_dw, &c);
    if (db)
        for (int64_t r = 0; r < R; r++)
            for (int n = 0; n < N; n++) db[n] += dy[r * N + n];
    if (dx) cdx_parallel_for(nbk, 1, glin_dx, &c);
}

/* ---------------------------------------------------------------- layernorm */

struct gln_ctx {
    float *dx;
    const float *dy, *x, *w;
    int C;
    float eps;
};

static void row_stats(const float *x, int C, float eps, float *mean, float *rstd)
{
    double s = 0, sq = 0;
    for (int i = 0; i < C; i++) s += x[i];
    double mu = s / C;
    for (int i = 0; i < C; i++) sq += (x[i] - mu) * (x[i] - mu);
    *mean = (float)mu;
    *rstd = (float)(1.0 / sqrt(sq / C + eps));
}

static void gln_rows(void *vctx, int64_t r0, int64_t r1)
{
    const struct gln_ctx *c = vctx;
    const int C = c->C;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = c->x + r * C, *dy = c->dy + r * C;
        float *dx = c->dx + r * C;
        float mean, rstd, sg = 0.0f, sgx = 0.0f;
        row_stats(x, C, c->eps, &mean, &rstd);
        for (int i = 0; i < C; i++) {
            float g = dy[i] * c->w[i], xh = (x[i] - mean) * rstd;
            sg += g;
            sgx += g * xh;
        }
        sg /= (float)C;
        sgx /= (float)C;
        for (int i = 0; i < C; i++) {
            float g = dy[i] * c->w[i], xh = (x[i] - mean) * rstd;
            dx[i] += rstd * (g - sg - xh * sgx);
        }
    }
}

void cdx_grad_layernorm(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, int64_t R, int C, float eps)
{
    struct gln_ctx c = {dx, dy, x, w, C, eps};
    if (dx) cdx_parallel_for(R, 16, gln_rows, &c);
    if (dw || db)
        for (int64_t r = 0; r < R; r++) {
            float mean, rstd;
            row_stats(x + r * C, C, eps, &mean, &rstd);
            for (int i = 0; i < C; i++) {
                if (dw) dw[i] += dy[r * C + i] * (x[r * C + i] - mean) * rstd;
                if (db) db[i] += dy[r * C + i];
            }
        }
}

void cdx_ref_grad_layernorm(float *dx, float *dw, float *db, const float *dy, const float *x,
                            const float *w, int64_t R, int C, float eps)
{
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x + r * C, *dyr = dy + r * C;
        double s = 0, sq = 0, sg = 0, sgx = 0;
        for (int i = 0; i < C; i++) s += xr[i];
        double mu = s / C;
        for (int i = 0; i < C; i++) sq += (xr[i] - mu) * (xr[i] - mu);
        double rs = 1.0 / sqrt(sq / C + eps);
        for (int i = 0; i < C; i++) {
            double xh = (xr[i] - mu) * rs, g = (double)dyr[i] * w[i];
            sg += g;
            sgx += g * xh;
            if (dw) dw[i] += (float)(dyr[i] * xh);
            if (db) db[i] += dyr[i];
        }
        if (dx)
            for (int i = 0; i < C; i++) {
                double xh = (xr[i] - mu) * rs, g = (double)dyr[i] * w[i];
                dx[r * C + i] += (float)(rs * (g - sg / C - xh * sgx / C));
            }
    }
}

/* ---------------------------------------------------------------- activation */

struct gact_ctx {
    float *du;
    const float *da, *u;
    cdx_act act;
};

static void gact_range(void *vctx, int64_t i0, int64_t i1)
{
    const struct gact_ctx *c = vctx;
    if (c->act == CDX_ACT_QUICK_GELU) {
        for (int64_t i = i0; i < i1; i++) {
            float u = c->u[i], s = 1.0f / (1.0f + expf(-1.702f * u));
            c->du[i] = c->da[i] * (s + 1.702f * u * s * (1.0f - s));
        }
    } else if (c->act == CDX_ACT_GELU_TANH) {
        for (int64_t i = i0; i < i1; i++) {
            float u = c->u[i], th = tanhf(0.7978845608028654f * (u + 0.044715f * u * u * u));
            c->du[i] = c->da[i] * (0.5f * (1.0f + th) + 0.5f * u * (1.0f - th * th) * 0.7978845608028654f *
                                                            (1.0f + 3.0f * 0.044715f * u * u));
        }
    } else {
        for (int64_t i = i0; i < i1; i++) {
            float u = c->u[i];
            float cdf = 0.5f * (1.0f + erff(u * 0.70710678118654752f));
            float pdf = 0.39894228040143268f * expf(-0.5f * u * u);
            c->du[i] = c->da[i] * (cdf + u * pdf);
        }
    }
}

void cdx_grad_act(float *du, const float *da, const float *u, int64_t n, cdx_act act)
{
    struct gact_ctx c = {du, da, u, act};
    cdx_parallel_for(n, 4096, gact_range, &c);
}

void cdx_ref_grad_act(float *du, const float *da, const float *u, int64_t n, cdx_act act)
{
    for (int64_t i = 0; i < n; i++) {
        double x = u[i], d;
        if (act == CDX_ACT_QUICK_GELU) {
            double s = 1.0 / (1.0 + exp(-1.702 * x));
            d = s + 1.702 * x * s * (1.0 - s);
        } else if (act == CDX_ACT_GELU_TANH) {
            const double k = sqrt(2.0 / M_PI), a = 0.044715, th = tanh(k * (x + a * x * x * x));
            d = 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * k * (1.0 + 3.0 * a * x * x);
        } else {
            d = 0.5 * (1.0 + erf(x / sqrt(2.0))) + x * exp(-0.5 * x * x) / sqrt(2.0 * M_PI);
        }
        du[i] = (float)(da[i] * d);
    }
}

/* ---------------------------------------------------------------- attention */

struct gatt_ctx {
    float *dq, *dk, *dv;
    const float *dout, *q, *k, *v;
    const int64_t *off;
    const int *len;
    int H, D, causal, Tmax;
    const int *nk; /* NULL, or keys per sequence (cdx_grad_attention_prefix) */
};

/* One (sequence, head) per item; the heads' columns are disjoint, so the
 * items write disjoint parts of dq, dk, dv. */
static void gatt_items(void *vctx, int64_t i0, int64_t i1)
{
    const struct gatt_ctx *c = vctx;
    const int H = c->H, D = c->D, C = H * D;
    float *p = malloc(sizeof(float) * 2 * (size_t)c->Tmax * (size_t)c->Tmax);
    if (!p) return; /* absurd T only; the caller's sizes are bounded */
    float *dp = p + (size_t)c->Tmax * c->Tmax;
    for (int64_t it = i0; it < i1; it++) {
        const int s = (int)(it / H), h = (int)(it % H), T = c->len[s];
        const int64_t o = c->off[s] * C + h * D;
        /* P = softmax(Q K^T), as the forward computed it */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, D, 1.0f, c->q + o, C, c->k + o, C,
                    0.0f, p, T);
        for (int i = 0; i < T; i++) {
            float *pi = p + (int64_t)i * T;
            const int nj = c->causal ? i + 1 : c->nk ? c->nk[s] : T;
            float mx = -INFINITY, sum = 0.0f;
            for (int j = 0; j < nj; j++) mx = pi[j] > mx ? pi[j] : mx;
            for (int j = 0; j < nj; j++) {
                pi[j] = expf(pi[j] - mx);
                sum += pi[j];
            }
            for (int j = 0; j < nj; j++) pi[j] /= sum;
            for (int j = nj; j < T; j++) pi[j] = 0.0f;
        }
        /* dV = P^T dO */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, D, T, 1.0f, p, T, c->dout + o, C,
                    0.0f, c->dv + o, C);
        /* dP = dO V^T, then dS = P (dP - rowsum(P dP)) in place */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, D, 1.0f, c->dout + o, C, c->v + o,
                    C, 0.0f, dp, T);
        for (int i = 0; i < T; i++) {
            float *pi = p + (int64_t)i * T, *dpi = dp + (int64_t)i * T;
            float dot = 0.0f;
            for (int j = 0; j < T; j++) dot += pi[j] * dpi[j];
            for (int j = 0; j < T; j++) dpi[j] = pi[j] * (dpi[j] - dot);
        }
        /* dQ = dS K, dK = dS^T Q */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, D, T, 1.0f, dp, T, c->k + o, C,
                    0.0f, c->dq + o, C);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, D, T, 1.0f, dp, T, c->q + o, C, 0.0f,
                    c->dk + o, C);
    }
    free(p);
}

void cdx_grad_attention(float *dq, float *dk, float *dv, const float *dout, const float *q,
                        const float *k, const float *v, int n_seq, const int64_t *off,
                        const int *len, int H, int D, int causal)
{
    int Tmax = 1;
    for (int s = 0; s < n_seq; s++) Tmax = len[s] > Tmax ? len[s] : Tmax;
    struct gatt_ctx c = {dq, dk, dv, dout, q, k, v, off, len, H, D, causal, Tmax, NULL};
    cdx_parallel_for((int64_t)n_seq * H, 1, gatt_items, &c);
}

void cdx_grad_attention_prefix(float *dq, float *dk, float *dv, const float *dout, const float *q,
                               const float *k, const float *v, int n_seq, const int64_t *off,
                               const int *len, const int *nk, int H, int D)
{
    int Tmax = 1;
    for (int s = 0; s < n_seq; s++) Tmax = len[s] > Tmax ? len[s] : Tmax;
    struct gatt_ctx c = {dq, dk, dv, dout, q, k, v, off, len, H, D, 0, Tmax, nk};
    cdx_parallel_for((int64_t)n_seq * H, 1, gatt_items, &c);
}
