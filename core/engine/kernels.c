/*
 * kernels.c - layer norm, bias + activation, residual adds and attention.
 *
 * The fast versions are plain C loops written so that GCC vectorises them
 * (compiled -O3; target_clones builds AVX-512, AVX2 and baseline versions
 * and picks one at load time).  They split rows across the compute pool.
 * The activation needs exp() on millions of values per image; libm's expf
 * is scalar, so cdx_expf below is a branch-free version that vectorises.
 *
 * No -ffast-math here: reassociation would change results from run to run
 * of the pool split, and the reference comparison wants stable numbers.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "internal.h"
#include "kernels.h"
#include "pool.h"

/* ThreadSanitizer crashes in ifunc resolvers (they run before its
 * runtime is up), so a TSan build gets the baseline version only. */
#ifdef __SANITIZE_THREAD__
#define CLONES
#else
#define CLONES __attribute__((target_clones("avx512f", "avx2,fma", "default")))
#endif

int cdx_kernels_reference(void)
{
    static int cached = -1;
    if (cached < 0) {
        const char *e = getenv("CLIPDEX_REFERENCE");
        cached = e && *e == '1';
    }
    return cached;
}

/* exp(x) by Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, and a
 * degree-7 Taylor polynomial for e^r (truncation error < 2e-8 relative);
 * 2^n is built in the exponent bits.  Inputs are clamped so 2^n stays a
 * normal float; exp(-87.3) ~ 1e-38 is as good as 0 for the sigmoid. */
static inline float expf_inline(float x)
{
    x = x < -87.3f ? -87.3f : x;
    x = x > 88.3f ? 88.3f : x;
    const float magic = 12582912.0f; /* 1.5 * 2^23: round to integer */
    float n = (x * 1.44269504088896341f + magic) - magic;
    float r = x - n * 0.693145751953125f;  /* ln2 high part (exact in float) */
    r = r - n * 1.42860682030941723e-6f;   /* ln2 low part */
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

float cdx_expf(float x) { return expf_inline(x); }

/* erf(x) for GELU: Abramowitz & Stegun 7.1.26 is too coarse (1.5e-7 abs
 * near 0 is fine, but we want the same accuracy everywhere), so use the
 * odd-symmetric form erf(x) = 1 - t*exp(-x^2 + P(t)) with t = 1/(1+|x|/2)
 * (Numerical Recipes' erfc, fractional error < 1.2e-7). */
static inline float erf_inline(float x)
{
    float z = fabsf(x);
    float t = 1.0f / (1.0f + 0.5f * z);
    float p = 0.17087277f;
    p = p * t - 0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t - 1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t - 0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    p = p * t - 1.26551223f;
    float erfc = t * expf_inline(-z * z + p);
    float r = 1.0f - erfc;
    return x < 0 ? -r : r;
}

/* ---------------------------------------------------------------- layernorm */

struct ln_ctx {
    float *out;
    const float *x, *w, *b;
    int C;
    float eps;
};

CLONES static void ln_rows(void *vctx, int64_t r0, int64_t r1)
{
    const struct ln_ctx *c = vctx;
    const int C = c->C;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = c->x + r * C;
        float *o = c->out + r * C;
        float sum = 0.0f, sq = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int i = 0; i < C; i++) sum += x[i];
        float mean = sum / (float)C;
#pragma omp simd reduction(+ : sq)
        for (int i = 0; i < C; i++) {
            float d = x[i] - mean;
            sq += d * d;
        }
        float rstd = 1.0f / sqrtf(sq / (float)C + c->eps);
        for (int i = 0; i < C; i++) o[i] = (x[i] - mean) * rstd * c->w[i] + c->b[i];
    }
}

void cdx_layernorm(float *out, const float *x, const float *w, const float *b, int64_t R, int C,
                   float eps)
{
    struct ln_ctx c = {out, x, w, b, C, eps};
    if (cdx_kernels_reference()) {
        cdx_ref_layernorm(out, x, w, b, R, C, eps);
        return;
    }
    cdx_parallel_for(R, 16, ln_rows, &c);
}

void cdx_ref_layernorm(float *out, const float *x, const float *w, const float *b, int64_t R,
                       int C, float eps)
{
    for (int64_t r = 0; r < R; r++) {
        double sum = 0, sq = 0;
        for (int i = 0; i < C; i++) sum += x[r * C + i];
        double mean = sum / C;
        for (int i = 0; i < C; i++) sq += (x[r * C + i] - mean) * (x[r * C + i] - mean);
        double rstd = 1.0 / sqrt(sq / C + eps);
        for (int i = 0; i < C; i++)
            out[r * C + i] = (float)((x[r * C + i] - mean) * rstd * w[i] + b[i]);
    }
}

/* ---------------------------------------------------------------- bias + act */

struct act_ctx {
    float *y;
    const float *b;
    int N;
    cdx_act act;
};

CLONES static void act_rows(void *vctx, int64_t r0, int64_t r1)
{
    const struct act_ctx *c = vctx;
    const int N = c->N;
    for (int64_t r = r0; r < r1; r++) {
        float *y = c->y + r * N;
        if (c->b)
            for (int i = 0; i < N; i++) y[i] += c->b[i];
        if (c->act == CDX_ACT_QUICK_GELU) {
            for (int i = 0; i < N; i++) y[i] = y[i] / (1.0f + expf_inline(-1.702f * y[i]));
        } else if (c->act == CDX_ACT_GELU_TANH) {
            /* SigLIP: 0.5 x (1 + tanh(u)), tanh(u) = 1 - 2 / (1 + e^2u) */
            for (int i = 0; i < N; i++) {
                float x = y[i], u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
                y[i] = 0.5f * x * (2.0f - 2.0f / (1.0f + expf_inline(2.0f * u)));
            }
        } else {
            for (int i = 0; i < N; i++)
                y[i] = 0.5f * y[i] * (1.0f + erf_inline(y[i] * 0.70710678118654752f));
        }
    }
}

void cdx_bias_act(float *y, const float *b, int64_t R, int N, cdx_act act)
{
    struct act_ctx c = {y, b, N, act};
    if (cdx_kernels_reference()) {
        cdx_ref_bias_act(y, b, R, N, act);
        return;
    }
    cdx_parallel_for(R, 8, act_rows, &c);
}

void cdx_ref_bias_act(float *y, const float *b, int64_t R, int N, cdx_act act)
{
    for (int64_t r = 0; r < R; r++)
        for (int i = 0; i < N; i++) {
            double v = y[r * N + i] + (b ? b[i] : 0.0f);
            if (act == CDX_ACT_QUICK_GELU)
                v = v / (1.0 + exp(-1.702 * v));
            else if (act == CDX_ACT_GELU_TANH)
                v = 0.5 * v * (1.0 + tanh(sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
            else
                v = 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
            y[r * N + i] = (float)v;
        }
}

/* ---------------------------------------------------------------- adds */

CLONES void cdx_residual_bias(float *x, const float *y, const float *b, int64_t R, int C)
{
    for (int64_t r = 0; r < R; r++)
        for (int i = 0; i < C; i++) x[r * C + i] += y[r * C + i] + b[i];
}

CLONES void cdx_add_bias(float *y, const float *b, int64_t R, int N)
{
    for (int64_t r = 0; r < R; r++)
        for (int i = 0; i < N; i++) y[r * N + i] += b[i];
}

CLONES void cdx_scale(float *x, int64_t n, float s)
{
    for (int64_t i = 0; i < n; i++) x[i] *= s;
}

/* ---------------------------------------------------------------- attention */

struct att_ctx {
    float *out;
    const float *q, *k, *v;
    int T, H, D, causal;
};

/* One (batch, head) pair per item: S = Q K^T (T,T) and O = P V (T,D) are
 * two small sgemm calls on the strided head columns (lda = C), which
 * OpenBLAS runs with its unpacked small-matrix kernels; between them a
 * numerically stable softmax per row, masked to j <= i when causal. */
CLONES static void att_items(void *vctx, int64_t i0, int64_t i1)
{
    const struct att_ctx *c = vctx;
    const int T = c->T, H = c->H, D = c->D, C = H * D;
    float *s = malloc(sizeof(float) * (size_t)T * (size_t)T);
    if (!s) return; /* only for absurd T; config limits keep this small */
    for (int64_t it = i0; it < i1; it++) {
        int b = (int)(it / H), h = (int)(it % H);
        const int64_t off = (int64_t)b * T * C + h * D;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, D, 1.0f, c->q + off, C,
                    c->k + off, C, 0.0f, s, T);
        for (int i = 0; i < T; i++) {
            float *si = s + (int64_t)i * T;
            const int nj = c->causal ? i + 1 : T;
            float mx = -INFINITY, sum = 0.0f;
            for (int j = 0; j < nj; j++) mx = si[j] > mx ? si[j] : mx;
#pragma omp simd reduction(+ : sum)
            for (int j = 0; j < nj; j++) {
                si[j] = expf_inline(si[j] - mx);
                sum += si[j];
            }
            const float inv = 1.0f / sum;
            for (int j = 0; j < nj; j++) si[j] *= inv;
            for (int j = nj; j < T; j++) si[j] = 0.0f;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, D, T, 1.0f, s, T, c->v + off, C,
                    0.0f, c->out + off, C);
    }
    free(s);
}

void cdx_attention(float *out, const float *q, const float *k, const float *v, int B, int T,
                   int H, int D, int causal)
{
    struct att_ctx c = {out, q, k, v, T, H, D, causal};
    if (cdx_kernels_reference()) {
        cdx_ref_attention(out, q, k, v, B, T, H, D, causal);
        return;
    }
    cdx_parallel_for((int64_t)B * H, 1, att_items, &c);
}

void cdx_ref_attention(float *out, const float *q, const float *k, const float *v, int B, int T,
                       int H, int D, int causal)
{
    const int C = H * D;
    double *s = malloc(sizeof(double) * (size_t)T);
    if (!s) return;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < T; i++) {
                int nj = causal ? i + 1 : T;
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j < nj; j++) {
                    double d = 0;
                    for (int e = 0; e < D; e++)
                        d += (double)q[((int64_t)b * T + i) * C + h * D + e] *
                             k[((int64_t)b * T + j) * C + h * D + e];
                    s[j] = d;
                    if (d > mx) mx = d;
                }
                for (int j = 0; j < nj; j++) {
                    s[j] = exp(s[j] - mx);
                    sum += s[j];
                }
                for (int e = 0; e < D; e++) {
                    double acc = 0;
                    for (int j = 0; j < nj; j++) acc += s[j] / sum * v[((int64_t)b * T + j) * C + h * D + e];
                    out[((int64_t)b * T + i) * C + h * D + e] = (float)acc;
                }
            }
    free(s);
}
