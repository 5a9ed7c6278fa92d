/*
 * test_qsmall.c - the few-row int8 kernel (core/engine/qsmall.c).
 *
 * Oracles, none from the code under test:
 *   - the integer product computed here from the plain int8 values
 *     (x as int8, not shifted; W (N,K) row-major), dequantised with the
 *     same float operations in the same order: the kernel must match it
 *     to the bit (int32 sums are exact), at every row count 1..40 (the
 *     12-row passes and their remainders) and at odd K and N (padding);
 *   - the scalar twin must match it to the bit as well, so the twin is
 *     what CLIPDEX_ISA below avx512_vnni runs;
 *   - pack then unpack gives back W.
 * Full-range values (-127..127) are used, where a kernel that narrowed
 * pair sums to int16 (vpmaddubsw) would saturate.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "engine/cpu.h"
#include "engine/qsmall.h"
#include "tap.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static int irand(int lo, int hi)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return lo + (int)((rng >> 33) % (uint64_t)(hi - lo + 1));
}

static void check(int64_t R, int K, int N)
{
    const int KP = 4 * ((K + 3) / 4);
    int8_t *w = malloc((size_t)N * K), *w2 = malloc((size_t)N * K), *xq = malloc((size_t)R * K);
    uint8_t *u = malloc((size_t)R * KP);
    float *rs = malloc(sizeof(float) * (size_t)R), *ws = malloc(sizeof(float) * (size_t)N);
    float *y = malloc(sizeof(float) * (size_t)R * N), *yt = malloc(sizeof(float) * (size_t)R * N);
    float *ye = malloc(sizeof(float) * (size_t)R * N);
    int8_t *wp = aligned_alloc(64, (cdx_qsmall_wbytes(K, N) + 63) & ~(size_t)63);
    int32_t *comp = malloc(cdx_qsmall_cbytes(K, N));
    for (size_t i = 0; i < (size_t)N * K; i++) w[i] = (int8_t)irand(-127, 127);
    for (size_t i = 0; i < (size_t)R * K; i++) xq[i] = (int8_t)irand(-127, 127);
    for (int64_t r = 0; r < R; r++) {
        rs[r] = (float)irand(1, 1000) / 4096.0f;
        for (int k = 0; k < KP; k++) u[r * KP + k] = k < K ? (uint8_t)(xq[r * K + k] + 128) : (uint8_t)irand(0, 255);
    }
    for (int n = 0; n < N; n++) ws[n] = (float)irand(1, 1000) / 8192.0f;
    for (int64_t r = 0; r < R; r++)
        for (int n = 0; n < N; n++) {
            int64_t acc = 0;
            for (int k = 0; k < K; k++) acc += (int64_t)xq[r * K + k] * w[(size_t)n * K + k];
            ye[r * N + n] = (float)(int32_t)acc * rs[r] * ws[n];
        }
    cdx_qsmall s;
    cdx_qsmall_pack(&s, wp, comp, w, K, N);
    cdx_qsmall_unpack(&s, w2);
    ok(memcmp(w, w2, (size_t)N * K) == 0, "%dx%d: unpack(pack(W)) == W", N, K);
    memset(y, 0xff, sizeof(float) * (size_t)R * N);
    memset(yt, 0xff, sizeof(float) * (size_t)R * N);
    cdx_qsmall_run(&s, y, u, rs, ws, R);
    cdx_qsmall_run_scalar(&s, yt, u, rs, ws, R);
    ok(memcmp(y, ye, sizeof(float) * (size_t)R * N) == 0, "%lldx%dx%d: %s kernel == integer product, bit for bit",
       (long long)R, K, N, cdx_qsmall_native() ? "avx512_vnni" : "scalar");
    ok(memcmp(yt, ye, sizeof(float) * (size_t)R * N) == 0, "%lldx%dx%d: scalar twin == integer product, bit for bit",
       (long long)R, K, N);
    free(w);
    free(w2);
    free(xq);
    free(u);
    free(rs);
    free(ws);
    free(y);
    free(yt);
    free(ye);
    free(wp);
    free(comp);
}

static float bf16f(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* bf16: the kernel against the product of the same bf16 values summed in
 * double (its float32 accumulation error bound, 2^-22 relative to the
 * sum of |products| times K/2 steps, is far below the 1e-5 used), and
 * against the scalar twin (reported: equal to the bit where the CPU
 * rounds each step as the twin does). */
static void check_bf16(int64_t R, int K, int N)
{
    const int KP = 2 * ((K + 1) / 2);
    uint16_t *w = malloc(2 * (size_t)N * K), *w2 = malloc(2 * (size_t)N * K), *x = calloc((size_t)R * KP, 2);
    float *y = malloc(sizeof(float) * (size_t)R * N), *yt = malloc(sizeof(float) * (size_t)R * N);
    int8_t *wp = aligned_alloc(64, (cdx_qsmall_wbytes_bf16(K, N) + 63) & ~(size_t)63);
    for (size_t i = 0; i < (size_t)N * K; i++) w[i] = (uint16_t)(0x3c00 + irand(0, 0x1ff) + (irand(0, 1) << 15));
    for (int64_t r = 0; r < R; r++)
        for (int k = 0; k < K; k++) x[r * KP + k] = (uint16_t)(0x3e00 + irand(0, 0x1ff) + (irand(0, 1) << 15));
    cdx_qsmall s;
    cdx_qsmall_pack_bf16(&s, wp, w, K, N);
    cdx_qsmall_unpack_bf16(&s, w2);
    ok(memcmp(w, w2, 2 * (size_t)N * K) == 0, "bf16 %dx%d: unpack(pack(W)) == W", N, K);
    cdx_qsmall_run(&s, y, (const uint8_t *)x, NULL, NULL, R);
    cdx_qsmall_run_scalar(&s, yt, (const uint8_t *)x, NULL, NULL, R);
    double worst = 0, worst_t = 0;
    int same = 1;
    for (int64_t r = 0; r < R; r++)
        for (int n = 0; n < N; n++) {
            double e = 0, mag = 0;
            for (int k = 0; k < K; k++) {
                double p = (double)bf16f(x[r * KP + k]) * bf16f(w[(size_t)n * K + k]);
                e += p;
                mag += p < 0 ? -p : p;
            }
            double d = (y[r * N + n] - e) / mag, dt = (yt[r * N + n] - e) / mag;
            d = d < 0 ? -d : d;
            dt = dt < 0 ? -dt : dt;
            worst = d > worst ? d : worst;
            worst_t = dt > worst_t ? dt : worst_t;
            same &= y[r * N + n] == yt[r * N + n];
        }
    ok(worst < 1e-5, "bf16 %lldx%dx%d: %s kernel vs the double sum, worst %.1e of sum|p|", (long long)R, K, N,
       cdx_qsmall_native_bf16() ? "avx512_bf16" : "scalar", worst);
    ok(worst_t < 1e-5, "bf16 %lldx%dx%d: scalar twin vs the double sum, worst %.1e (kernel == twin bit for bit: %s)",
       (long long)R, K, N, worst_t, same ? "yes" : "no");
    free(w);
    free(w2);
    free(x);
    free(y);
    free(yt);
    free(wp);
}

int main(void)
{
    diag("CPU level %s (detected %s); qsmall kernel: %s", cdx_isa_name(cdx_cpu_isa()),
         cdx_isa_name(cdx_cpu_isa_detected()), cdx_qsmall_native() ? "avx512_vnni" : "scalar");
    for (int R = 1; R <= 40; R += R < 14 ? 1 : 13) check(R, 512, 96);
    check(10, 512, 1536);
    check(10, 2048, 512);
    check(7, 101, 37); /* K not a multiple of 4, N not of 32 */
    check(13, 3, 1);
    for (int R = 1; R <= 40; R += R < 14 ? 1 : 13) check_bf16(R, 512, 96);
    check_bf16(10, 2048, 512);
    check_bf16(7, 101, 37);
    return done_testing();
}
