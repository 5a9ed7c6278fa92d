/*
 * test_qlinear.c - reduced-precision linear layers (core/engine/qlinear.c).
 *
 * Three oracles, none taken from the code under test's own output:
 *   - the scalar twin cdx_qlinear_ref (same rounding, products in double):
 *     the fast path must match it to float32 summation error, for row
 *     counts that exercise every primitive shape (1, 10 and 77 text rows,
 *     50 and 800 vision rows, odd sizes);
 *   - the exact float32 product computed here in double: bf16 and int8
 *     must stay within their quantisation error bounds;
 *   - an input with a few channels 40x larger than the rest, the weight
 *     columns shrunk to match: int8 with smoothing must keep its error
 *     bound there, and must be clearly better than without smoothing.
 * bf16 rounding is checked against hand-computed bit patterns.
 * Run under CLIPDEX_ISA=... by tests/cli/12-precision.t for each level.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "engine/cpu.h"
#include "engine/qlinear.h"
#include "tap.h"

static uint64_t rng = 88172645463325252ull;
static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* ||a - b|| / ||b|| over n values, in double. */
static double rel_err(const float *a, const double *b, size_t n)
{
    double e = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        if (d != d) return INFINITY;
        e += d * d;
        s += b[i] * b[i];
    }
    return sqrt(e / (s > 0 ? s : 1));
}

static double rel_errf(const float *a, const float *b, size_t n)
{
    double *bd = malloc(n * sizeof *bd);
    for (size_t i = 0; i < n; i++) bd[i] = b[i];
    double e = rel_err(a, bd, n);
    free(bd);
    return e;
}

static void exact(double *y, const float *x, const float *W, int64_t R, int K, int N)
{
    for (int64_t r = 0; r < R; r++)
        for (int n = 0; n < N; n++) {
            double acc = 0;
            for (int k = 0; k < K; k++) acc += (double)x[r * K + k] * W[(int64_t)n * K + k];
            y[r * N + n] = acc;
        }
}

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* cdx_qlinear_new_flags hints for check() (CDX_QL_FEW_ROWS: qsmall.c
 * up to 32 rows, oneDNN's layout made on the first call above). */
static unsigned qflags;

/* One shape at one precision: fast vs twin, and vs the exact product. */
static void check(cdx_precision p, int64_t R, int K, int N, int outliers, double bound)
{
    const char *pn = cdx_precision_name(p);
    float *W = malloc(sizeof(float) * (size_t)N * K), *x = malloc(sizeof(float) * (size_t)R * K);
    float *act = malloc(sizeof(float) * (size_t)K);
    float *y = malloc(sizeof(float) * (size_t)R * N), *yr = malloc(sizeof(float) * (size_t)R * N);
    double *ye = malloc(sizeof(double) * (size_t)R * N);
    for (size_t i = 0; i < (size_t)N * K; i++) W[i] = frand() / sqrtf((float)K);
    for (size_t i = 0; i < (size_t)R * K; i++) x[i] = frand();
    for (int k = 0; k < K; k++) act[k] = 1.0f;
    if (outliers)
        for (int k = 3; k < K; k += K / 5) { /* 5 channels, 40x, columns shrunk */
            act[k] = 40.0f;
            for (int64_t r = 0; r < R; r++) x[r * K + k] *= 40.0f;
            for (int n = 0; n < N; n++) W[(size_t)n * K + k] /= 40.0f;
        }
    exact(ye, x, W, R, K, N);
    cdx_qlinear *q = NULL;
    cdx_qscratch s = {0};
    if (!ok(cdx_qlinear_new_flags(W, K, N, p, act, qflags, &q) == CDX_OK, "%s %lldx%dx%d: prepared (%s)", pn,
            (long long)R, K, N, cdx_last_error()))
        goto out;
    memset(y, 0xff, sizeof(float) * (size_t)R * N); /* NaN: every output must be written */
    ok(cdx_qlinear_run(q, &s, y, x, R) == CDX_OK, "%s %lldx%dx%d: ran", pn, (long long)R, K, N);
    cdx_qlinear_ref(q, yr, x, R);
    double et = rel_errf(y, yr, (size_t)R * N), ee = rel_err(y, ye, (size_t)R * N);
    ok(et < 2e-5, "%s %lldx%dx%d%s (%s): fast vs scalar twin %.2e", pn, (long long)R, K, N,
       outliers ? " outliers" : "", cdx_qlinear_backend(q), et);
    ok(ee < bound, "%s %lldx%dx%d%s: vs exact float %.2e < %.0e", pn, (long long)R, K, N,
       outliers ? " outliers" : "", ee, bound);
    if (outliers && p == CDX_PRECISION_INT8) {
        /* The same layer without smoothing: the outliers set each row's
         * scale, and the other channels lose most of their bits. */
        cdx_qlinear *q0 = NULL;
        if (cdx_qlinear_new(W, K, N, p, NULL, &q0) == CDX_OK) {
            cdx_qlinear_run(q0, &s, y, x, R);
            double e0 = rel_err(y, ye, (size_t)R * N);
            ok(e0 > 2 * ee, "int8 outliers: unsmoothed error %.2e is worse than smoothed %.2e", e0, ee);
            cdx_qlinear_free(q0);
        }
    }
out:
    cdx_qlinear_free(q);
    cdx_qscratch_release(&s);
    free(W);
    free(x);
    free(act);
    free(y);
    free(yr);
    free(ye);
}

int main(void)
{
    diag("CPU level %s (detected %s)", cdx_isa_name(cdx_cpu_isa()), cdx_isa_name(cdx_cpu_isa_detected()));
    /* bf16 rounding: nearest, ties to even, on exact bit patterns. */
    ok(bits(cdx_bf16_round(1.0f)) == 0x3F800000u, "bf16(1) exact");
    ok(bits(cdx_bf16_round(1.00390625f)) == 0x3F800000u, "bf16: tie 1+2^-8 rounds to even (down)");
    ok(bits(cdx_bf16_round(1.01171875f)) == 0x3F820000u, "bf16: tie 1+3*2^-8 rounds to even (up)");
    ok(bits(cdx_bf16_round(1.0f + 0x1p-8f + 0x1p-20f)) == 0x3F810000u, "bf16: above the tie rounds up");
    ok(bits(cdx_bf16_round(-3.14159f)) == 0xC0490000u, "bf16(-pi)");

    /* bf16 relative error per product ~ 2^-9 * sqrt(2): bound 1e-2 loose,
     * 8e-3 tight enough to catch a wrong rounding mode or layout. */
    static const struct { int64_t R; int K, N; } shapes[] = {
        {1, 512, 512}, {10, 512, 2048}, {77, 2048, 512}, {50, 768, 768}, {400, 768, 768},
        {7, 100, 37}, {33, 64, 250},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        check(CDX_PRECISION_BF16, shapes[i].R, shapes[i].K, shapes[i].N, 0, 8e-3);
        check(CDX_PRECISION_INT8, shapes[i].R, shapes[i].K, shapes[i].N, 0, 2e-2);
    }
    check(CDX_PRECISION_BF16, 50, 768, 768, 1, 8e-3);
    check(CDX_PRECISION_INT8, 50, 768, 768, 1, 2e-2);
    check(CDX_PRECISION_INT8, 10, 512, 2048, 1, 2e-2);
    /* The few-rows layout: qsmall.c at 1, 10, 32 rows, oneDNN's copy made
     * from it at 33 and 77 (the same layer object runs both below) */
    qflags = CDX_QL_FEW_ROWS;
    static const struct { int64_t R; int K, N; } few[] = {
        {1, 512, 512}, {10, 512, 1536}, {10, 2048, 512}, {32, 512, 512}, {33, 512, 512},
        {77, 2048, 512}, {7, 100, 37},
    };
    for (size_t i = 0; i < sizeof few / sizeof few[0]; i++)
        check(CDX_PRECISION_INT8, few[i].R, few[i].K, few[i].N, 0, 2e-2);
    check(CDX_PRECISION_INT8, 10, 512, 2048, 1, 2e-2);
    for (size_t i = 0; i < sizeof few / sizeof few[0]; i++)
        check(CDX_PRECISION_BF16, few[i].R, few[i].K, few[i].N, 0, 8e-3);
    {
        /* one layer: few rows, then many (oneDNN's copy from the packed
         * weights), then few again: each against the twin */
        const int K = 512, N = 512;
        float *W = malloc(sizeof(float) * N * K), *x = malloc(sizeof(float) * 77 * K);
        float *y = malloc(sizeof(float) * 77 * N), *yr = malloc(sizeof(float) * 77 * N);
        for (int i = 0; i < N * K; i++) W[i] = frand() / sqrtf((float)K);
        for (int i = 0; i < 77 * K; i++) x[i] = frand();
        cdx_qlinear *q = NULL;
        cdx_qscratch s = {0};
        if (ok(cdx_qlinear_new_flags(W, K, N, CDX_PRECISION_INT8, NULL, CDX_QL_FEW_ROWS, &q) == CDX_OK,
               "few-rows layer prepared")) {
            const int64_t rows[] = {10, 77, 10, 1};
            for (int i = 0; i < 4; i++) {
                cdx_qlinear_run(q, &s, y, x, rows[i]);
                cdx_qlinear_ref(q, yr, x, rows[i]);
                double e = rel_errf(y, yr, (size_t)rows[i] * N);
                ok(e < 2e-5, "few-rows layer, call %d at %lld rows (%s): vs twin %.2e", i + 1,
                   (long long)rows[i], cdx_qlinear_backend(q), e);
            }
        }
        cdx_qlinear_free(q);
        cdx_qscratch_release(&s);
        free(W);
        free(x);
        free(y);
        free(yr);
    }
    qflags = 0;
    {
        /* Row counts 41..48 share one set of oneDNN primitives (rows
         * padded to a multiple of 8), and the padded rows change nothing:
         * each count against the twin. */
        const int K = 256, N = 384;
        float *W = malloc(sizeof(float) * N * K), *x = malloc(sizeof(float) * 48 * K);
        float *y = malloc(sizeof(float) * 48 * N), *yr = malloc(sizeof(float) * 48 * N);
        for (int i = 0; i < N * K; i++) W[i] = frand() / sqrtf((float)K);
        for (int i = 0; i < 48 * K; i++) x[i] = frand();
        for (int pi = 0; pi < 2; pi++) {
            const cdx_precision p = pi ? CDX_PRECISION_INT8 : CDX_PRECISION_BF16;
            cdx_qlinear *q = NULL;
            cdx_qscratch s = {0};
            if (cdx_qlinear_new(W, K, N, p, NULL, &q) != CDX_OK) continue;
            cdx_qlinear_run(q, &s, y, x, 41);
            const int before = cdx_qlinear_primitives();
            double worst = 0;
            for (int R = 41; R <= 48; R++) {
                memset(y, 0xff, sizeof(float) * 48 * N);
                cdx_qlinear_run(q, &s, y, x, R);
                cdx_qlinear_ref(q, yr, x, R);
                double e = rel_errf(y, yr, (size_t)R * N);
                worst = e > worst ? e : worst;
            }
            ok(worst < 2e-5, "%s rows 41..48: vs twin, worst %.2e", cdx_precision_name(p), worst);
            ok(cdx_qlinear_primitives() == before, "%s rows 41..48: no new oneDNN primitive (%d)",
               cdx_precision_name(p), cdx_qlinear_primitives());
            cdx_qlinear_free(q);
            cdx_qscratch_release(&s);
        }
        free(W);
        free(x);
        free(y);
        free(yr);
    }
    return done_testing();
}
