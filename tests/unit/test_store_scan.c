/*
 * test_store_scan.c - the store's exact scan: the AVX2 kernel against the
 * scalar reference on random data (odd sizes and dimensions too), and
 * top-k selection against a full sort.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "store/vindex.h"
#include "tap.h"

static uint64_t rng = 0x853c49e6748fea9bull;
static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2 - 1);
}

typedef struct sp { float s; int64_t p; } sp;
static int cmp_sp(const void *a, const void *b)
{
    const sp *x = a, *y = b;
    if (x->s != y->s) return x->s < y->s ? 1 : -1;
    return (x->p > y->p) - (x->p < y->p);
}

int main(void)
{
    int dims[] = {512, 16, 37, 768, 1};
    for (size_t t = 0; t < sizeof dims / sizeof dims[0]; t++) {
        int d = dims[t];
        int64_t n = d == 512 ? 20011 : 1001;
        float *x = malloc((size_t)n * d * sizeof *x), *q = malloc((size_t)d * sizeof *q);
        float *a = malloc((size_t)n * sizeof *a), *b = malloc((size_t)n * sizeof *b);
        for (int64_t i = 0; i < n * d; i++) x[i] = frand();
        for (int j = 0; j < d; j++) q[j] = frand();
        cdx_scan_ip(x, n, d, q, a);
        cdx_scan_ip_ref(x, n, d, q, b);
        double worst = 0;
        for (int64_t i = 0; i < n; i++) {
            double e = fabs((double)a[i] - b[i]) / (1 + fabs((double)b[i]));
            if (e > worst) worst = e;
        }
        ok(worst < 1e-5, "d=%d n=%lld: fast scan matches the reference (max rel err %.2g)", d,
           (long long)n, worst);
        free(x);
        free(q);
        free(a);
        free(b);
    }

    /* top-k against a full sort, with ties. */
    int64_t n = 5000;
    float *s = malloc((size_t)n * sizeof *s), *os = malloc((size_t)n * sizeof *os);
    int64_t *op = malloc((size_t)n * sizeof *op);
    sp *all = malloc((size_t)n * sizeof *all);
    for (int64_t i = 0; i < n; i++) {
        s[i] = roundf(frand() * 100) / 100; /* many ties */
        all[i].s = s[i];
        all[i].p = i;
    }
    qsort(all, (size_t)n, sizeof *all, cmp_sp);
    int64_t ks[] = {1, 10, 100, 4999, 5000, 9999};
    for (size_t t = 0; t < sizeof ks / sizeof ks[0]; t++) {
        int64_t got = cdx_topk(s, n, ks[t], os, op), want = ks[t] < n ? ks[t] : n, same = got == want;
        for (int64_t i = 0; same && i < got; i++) same = os[i] == all[i].s && op[i] == all[i].p;
        ok(same, "top-%lld of %lld equals a full sort (ties by position)", (long long)ks[t], (long long)n);
    }
    ok(cdx_topk(s, 0, 5, os, op) == 0 && cdx_topk(s, n, 0, os, op) == 0, "empty cases");
    free(s);
    free(os);
    free(op);
    free(all);
    return done_testing();
}
