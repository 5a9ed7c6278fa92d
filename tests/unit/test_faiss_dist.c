/*
 * test_faiss_dist.c - core/store/faiss_dist.c: the distance functions that
 * replace Debian libfaiss's scalar ones.  Each is called under FAISS's
 * own C++ name (the cdx_fvec_* declarations of vindex.h) and
 * compared with a double-precision loop (odd sizes too); then FAISS's own search code (IndexFlatIP / IndexFlatL2 through the C
 * API, which call fvec_inner_product / fvec_L2sqr for a single query) is
 * checked to reach our functions: its scores must equal ours bit for bit,
 * and with the AVX2 kernels they must differ from a left-to-right float
 * sum (FAISS's scalar order) somewhere, which they could not if FAISS's
 * own functions had been linked.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <faiss/c_api/IndexFlat_c.h>
#include <faiss/c_api/Index_c.h>

#include "store/vindex.h"
#include "tap.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;
static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2 - 1);
}

static int close_to(double got, double want, double scale)
{
    return fabs(got - want) <= 1e-6 * (1 + scale);
}

static void test_values(void)
{
    static const size_t dims[] = {1, 3, 7, 8, 15, 16, 17, 31, 32, 33, 63, 100, 512, 515, 768};
    enum { NY = 5, MAXD = 768 };
    static float x[MAXD], y[NY * MAXD], dis[NY];
    for (size_t t = 0; t < sizeof dims / sizeof dims[0]; t++) {
        size_t d = dims[t];
        int ok_ip = 1, ok_l2 = 1, ok_norm = 1, ok_ny = 1;
        for (size_t i = 0; i < d; i++) x[i] = frand();
        for (size_t i = 0; i < NY * d; i++) y[i] = frand();
        for (size_t j = 0; j < NY; j++) {
            const float *yj = y + j * d;
            double ip = 0, l2 = 0, nx = 0, sip = 0, sl2 = 0;
            for (size_t i = 0; i < d; i++) {
                ip += (double)x[i] * yj[i];
                sip += fabs((double)x[i] * yj[i]);
                l2 += ((double)x[i] - yj[i]) * ((double)x[i] - yj[i]);
                nx += (double)x[i] * x[i];
            }
            sl2 = l2;
            ok_ip &= close_to(cdx_fvec_inner_product(x, yj, d), ip, sip);
            ok_l2 &= close_to(cdx_fvec_L2sqr(x, yj, d), l2, sl2);
            ok_norm &= close_to(cdx_fvec_norm_L2sqr(x, d), nx, nx);
            cdx_fvec_inner_products_ny(dis, x, y, d, NY);
            ok_ny &= close_to(dis[j], ip, sip);
            cdx_fvec_L2sqr_ny(dis, x, y, d, NY);
            ok_ny &= close_to(dis[j], l2, sl2);
        }
        ok(ok_ip && ok_l2 && ok_norm && ok_ny, "d=%zu: inner product %s, L2 %s, norm %s, _ny %s", d,
           ok_ip ? "ok" : "WRONG", ok_l2 ? "ok" : "WRONG", ok_norm ? "ok" : "WRONG", ok_ny ? "ok" : "WRONG");
    }
}

/* FAISS's search code must reach our functions. */
static void test_faiss_calls_us(int avx2)
{
    enum { D = 512, N = 64 };
    static float xb[N * D], q[D], dist[N];
    idx_t lab[N];
    FaissIndexFlatIP *ip = NULL;
    FaissIndexFlatL2 *l2 = NULL;
    int same_ip = 1, same_l2 = 1, seq_diff_ip = 0, seq_diff_l2 = 0;

    for (int i = 0; i < N * D; i++) xb[i] = frand();
    for (int i = 0; i < D; i++) q[i] = frand();
    if (faiss_IndexFlatIP_new_with(&ip, D) || faiss_Index_add((FaissIndex *)ip, N, xb) ||
        faiss_IndexFlatL2_new_with(&l2, D) || faiss_Index_add((FaissIndex *)l2, N, xb)) {
        ok(0, "FAISS flat indexes");
        return;
    }
    faiss_Index_search((FaissIndex *)ip, 1, q, N, dist, lab);
    for (int r = 0; r < N; r++) {
        const float *y = xb + lab[r] * D;
        float seq = 0;
        for (int i = 0; i < D; i++) seq += q[i] * y[i];
        same_ip &= dist[r] == cdx_fvec_inner_product(q, y, D);
        seq_diff_ip += dist[r] != seq;
    }
    faiss_Index_search((FaissIndex *)l2, 1, q, N, dist, lab);
    for (int r = 0; r < N; r++) {
        const float *y = xb + lab[r] * D;
        float seq = 0;
        for (int i = 0; i < D; i++) seq += (q[i] - y[i]) * (q[i] - y[i]);
        same_l2 &= dist[r] == cdx_fvec_L2sqr(q, y, D);
        seq_diff_l2 += dist[r] != seq;
    }
    ok(same_ip && same_l2, "FAISS IndexFlatIP/L2 scores are exactly ours");
    if (avx2)
        ok(seq_diff_ip > 0 && seq_diff_l2 > 0,
           "with AVX2 kernels FAISS's scores differ from the left-to-right sum (%d/%d IP, %d/%d L2): "
           "FAISS runs our functions, not its own",
           seq_diff_ip, N, seq_diff_l2, N);
    else
        ok(seq_diff_ip == 0 && seq_diff_l2 == 0,
           "scalar kernels sum left to right as FAISS's own (%d, %d differ)", seq_diff_ip, seq_diff_l2);
    faiss_Index_free((FaissIndex *)ip);
    faiss_Index_free((FaissIndex *)l2);
}

int main(void)
{
#if !defined(__x86_64__)
    puts("1..0 # SKIP FAISS's own distance functions are kept off x86-64");
    return 0;
#endif
    const char *e = getenv("CLIPDEX_REFERENCE");
    int avx2;
    __builtin_cpu_init();
    avx2 = !(e && *e == '1') && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    ok(strcmp(cdx_faiss_dist_impl(), avx2 ? "avx2" : "scalar") == 0, "kernels: %s (expected %s)",
       cdx_faiss_dist_impl(), avx2 ? "avx2" : "scalar");
    test_values();
    test_faiss_calls_us(avx2);
    return done_testing();
}
