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

int main(void)
{
    diag("CPU level %s (detected %s); qsmall kernel: %s", cdx_isa_name(cdx_cpu_isa()),
         cdx_isa_name(cdx_cpu_isa_detected()), cdx_qsmall_native() ? "avx512_vnni" : "scalar");
    for (int R = 1; R <= 40; R += R < 14 ? 1 : 13) check(R, 512, 96);
    check(10, 512, 1536);
    check(10, 2048, 512);
    check(7, 101, 37); /* K not a multiple of 4, N not of 32 */
    check(13, 3, 1);
    return done_testing();
}
