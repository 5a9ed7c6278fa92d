/*
 * test_kernels.c - every optimised kernel against its scalar twin on
 * random inputs (practice 7): layer norm, activations, attention (causal
 * and not), the streaming and sgemm linear paths, and cdx_expf.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "engine/kernels.h"
#include "engine/linear.h"
#include "tap.h"

static uint64_t rng = 88172645463325252ull;
static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}
static float *rand_buf(size_t n, float scale)
{
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = frand() * scale;
    return p;
}

/* max |a-b| / (1 + |b|): relative for large values, absolute near 0. */
static double max_err(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]) / (1.0 + fabs((double)b[i]));
        if (!(e <= m)) m = e; /* NaN propagates as failure */
    }
    return m;
}

static void test_linear(int R, int K, int N)
{
    float *x = rand_buf((size_t)R * K, 1), *W = rand_buf((size_t)N * K, 0.1f);
    float *y1 = calloc((size_t)R * N, 4), *y2 = calloc((size_t)R * N, 4), *y3 = calloc((size_t)R * N, 4);
    cdx_linear_stream(y1, x, W, R, K, N);
    cdx_linear_sgemm(y2, x, W, R, K, N);
    cdx_ref_linear(y3, x, W, R, K, N);
    double e1 = max_err(y1, y3, (size_t)R * N), e2 = max_err(y2, y3, (size_t)R * N);
    ok(e1 < 1e-5, "stream linear R=%d K=%d N=%d matches reference (err %.2e)", R, K, N, e1);
    ok(e2 < 1e-5, "sgemm linear R=%d K=%d N=%d matches reference (err %.2e)", R, K, N, e2);
    free(x), free(W), free(y1), free(y2), free(y3);
}

static void test_attention(int B, int T, int H, int D, int causal)
{
    size_t n = (size_t)B * T * H * D;
    float *q = rand_buf(n, 2), *k = rand_buf(n, 2), *v = rand_buf(n, 1);
    float *o1 = calloc(n, 4), *o2 = calloc(n, 4);
    cdx_attention(o1, q, k, v, B, T, H, D, causal);
    cdx_ref_attention(o2, q, k, v, B, T, H, D, causal);
    double e = max_err(o1, o2, n);
    ok(e < 1e-5, "attention B=%d T=%d H=%d D=%d causal=%d (err %.2e)", B, T, H, D, causal, e);
    if (causal) {
        /* Row 0 attends only to itself: its output is exactly v's row 0. */
        ok(memcmp(o1, v, sizeof(float) * (size_t)D) == 0 || max_err(o1, v, (size_t)D) < 1e-6,
           "causal: the first token sees only itself");
    }
    free(q), free(k), free(v), free(o1), free(o2);
}

int main(void)
{
    cdx_threads_set(2);

    /* exp over the range the activations use */
    double worst = 0;
    for (float x = -87.0f; x < 88.0f; x += 0.0137f) {
        double e = fabs(cdx_expf(x) - exp((double)x)) / exp((double)x);
        if (e > worst) worst = e;
    }
    ok(worst < 3e-7, "cdx_expf relative error %.2e < 3e-7", worst);
    ok(cdx_expf(-200.0f) < 1e-37f && cdx_expf(-200.0f) >= 0.0f, "cdx_expf underflows to ~0");

    for (int C = 64; C <= 768; C += 704) {
        int R = 37;
        float *x = rand_buf((size_t)R * C, 3), *w = rand_buf((size_t)C, 1), *b = rand_buf((size_t)C, 1);
        float *o1 = malloc((size_t)R * C * 4), *o2 = malloc((size_t)R * C * 4);
        cdx_layernorm(o1, x, w, b, R, C, 1e-5f);
        cdx_ref_layernorm(o2, x, w, b, R, C, 1e-5f);
        double e = max_err(o1, o2, (size_t)R * C);
        ok(e < 2e-6, "layernorm C=%d matches reference (err %.2e)", C, e);
        memcpy(o1, x, (size_t)R * C * 4);
        cdx_layernorm(o1, o1, w, b, R, C, 1e-5f);
        ok(max_err(o1, o2, (size_t)R * C) < 2e-6, "layernorm in place C=%d", C);
        free(x), free(w), free(b), free(o1), free(o2);
    }

    for (int a = 0; a < 3; a++) {
        /* gelu_pytorch_tanh (SigLIP) is the third */
        static const cdx_act acts[3] = {CDX_ACT_QUICK_GELU, CDX_ACT_GELU, CDX_ACT_GELU_TANH};
        static const char *const names[3] = {"quick_gelu", "gelu", "gelu_pytorch_tanh"};
        int R = 19, N = 300;
        float *y1 = rand_buf((size_t)R * N, 6), *b = rand_buf((size_t)N, 1);
        float *y2 = malloc((size_t)R * N * 4);
        memcpy(y2, y1, (size_t)R * N * 4);
        cdx_bias_act(y1, b, R, N, acts[a]);
        cdx_ref_bias_act(y2, b, R, N, acts[a]);
        double e = max_err(y1, y2, (size_t)R * N);
        ok(e < 1e-6, "%s matches reference (err %.2e)", names[a], e);
        free(y1), free(b), free(y2);
    }

    test_attention(1, 7, 4, 16, 1);
    test_attention(3, 50, 12, 64, 0);
    test_attention(1, 77, 8, 64, 1);

    test_linear(1, 512, 512);
    test_linear(5, 64, 37);    /* N not a multiple of 4, K multiple of 16 */
    test_linear(10, 512, 2048);
    test_linear(7, 100, 9);    /* K not a multiple of 16 or 8 */
    test_linear(33, 768, 768);
    return done_testing();
}
