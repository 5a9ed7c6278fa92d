/*
 * test_store_overfetch.c - a filtered search over a candidate set too big
 * to score exactly (more than max(4096, a sixteenth of the index)) goes
 * to FAISS with an estimated k and must fetch more until it has k
 * matching files, however badly the estimate misses.
 *
 * The worst case for the estimate is built on purpose: the filter (path
 * under /o/match) keeps 5000 of 11000 files, but near the query almost
 * every vector belongs to the other 6000; only 3 matching files are near
 * it.  The first FAISS round (about 44 results) holds those 3 and no
 * other matching file, so a search that stopped once anything matched
 * would return 3 hits instead of 10.  The expected top 10 is computed
 * here by brute force over the vectors the test made (exact Flat index,
 * so the store must agree up to float16 storage).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clipdex.h"
#include "tap.h"

#define DIM 16
#define N_OTHER 6000
#define N_MATCH 5000
#define N_NEAR 3
#define K 10

static uint64_t rng = 88172645463325252ull;

static double uniform(void) /* [-1, 1) */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0 * 2 - 1;
}

/* axis * e0 plus noise of the given size in every component. */
static void make_vec(float *v, double axis, double noise)
{
    for (int i = 0; i < DIM; i++) v[i] = (float)(noise * uniform());
    v[0] += (float)axis;
}

static double cosine(const float *a, const float *b)
{
    double d = 0, na = 0, nb = 0;
    for (int i = 0; i < DIM; i++) {
        d += (double)a[i] * b[i];
        na += (double)a[i] * a[i];
        nb += (double)b[i] * b[i];
    }
    return d / sqrt(na * nb);
}

static int by_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

int main(void)
{
    char dir[] = "/tmp/cdx-test-overfetch-XXXXXX", path[128], hashsrc[64];
    cdx_store_model model = {"ofetch01", "overfetch", "/models/o", DIM, NULL};
    cdx_store_opts o = {0};
    cdx_store *s = NULL;
    static float vecs[N_OTHER + N_MATCH][DIM];
    int okk = 1;

    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    o.writer = 1;
    if (cdx_store_open(dir, &o, &s) != CDX_OK || cdx_store_use_model(s, &model, NULL) != CDX_OK) {
        ok(0, "open a store in %s: %s", dir, cdx_last_error());
        return done_testing();
    }
    /* Files 0..N_OTHER-1: /o/other, near the query (cosine ~0.9);
     * then /o/match: N_NEAR almost on it, the rest pointing away. */
    okk = cdx_store_begin(s) == CDX_OK;
    for (int i = 0; i < N_OTHER + N_MATCH && okk; i++) {
        cdx_file_meta m;
        int match = i >= N_OTHER, near = match && i < N_OTHER + N_NEAR;
        memset(&m, 0, sizeof m);
        snprintf(path, sizeof path, "/o/%s/%05d.jpg", match ? "match" : "other", i);
        snprintf(hashsrc, sizeof hashsrc, "overfetch-%d", i);
        m.path = path;
        m.size = 1000 + i;
        m.mtime_ns = 1600000000000000000ll + i;
        m.taken_at = CDX_TIME_UNKNOWN;
        cdx_hash_buf(hashsrc, strlen(hashsrc), m.hash);
        m.has_hash = 1;
        if (near) make_vec(vecs[i], 1.0, 0.01);
        else if (match) make_vec(vecs[i], -1.0, 0.3);
        else make_vec(vecs[i], 1.0, 0.15);
        okk = cdx_store_put_file(s, &m, vecs[i], NULL) == CDX_OK;
    }
    ok(okk && cdx_store_commit(s) == CDX_OK, "%d files stored: %s", N_OTHER + N_MATCH,
       okk ? "ok" : cdx_last_error());

    /* Brute force: the cosines of the matching files, best first. */
    float q[DIM] = {1};
    static double cos_match[N_MATCH];
    double worst_other = 2, best_far = -2;
    for (int i = 0; i < N_OTHER + N_MATCH; i++) {
        double c = cosine(q, vecs[i]);
        if (i < N_OTHER) {
            worst_other = c < worst_other ? c : worst_other;
            continue;
        }
        cos_match[i - N_OTHER] = c;
        if (i >= N_OTHER + N_NEAR) best_far = c > best_far ? c : best_far;
    }
    qsort(cos_match, N_MATCH, sizeof *cos_match, by_desc);
    const double *best = cos_match;
    /* The construction, checked: every non-matching file is nearer the
     * query than every far matching one, so FAISS's first rounds hold
     * only the near matching files. */
    ok(worst_other > best_far && best[N_NEAR - 1] > 0.99 && best[N_NEAR] < 0,
       "construction: the %d near matching files, then %d non-matching ones, then the rest "
       "(cosines %.3f > %.3f)", N_NEAR, N_OTHER, worst_other, best_far);

    cdx_store_filter f = {.under = "/o/match"};
    cdx_store_hit *h = NULL;
    size_t n = 0;
    cdx_status st = cdx_store_search(s, q, K, &f, -2, &h, &n);
    ok(st == CDX_OK, "filtered search: %s", st == CDX_OK ? "ok" : cdx_last_error());
    ok(n == K, "%d hits asked, %zu returned (5000 files match)", K, n);
    int same = n == K, under = 1;
    for (size_t t = 0; t < n; t++) {
        if (strncmp(h[t].file.meta.path, "/o/match/", 9) != 0) under = 0;
        if (same && fabs(h[t].score - best[t]) > 2e-3) same = 0;
    }
    ok(under, "every hit matches the filter");
    ok(same, "the hits are the brute-force top %d of the matching files", K);
    if (!same)
        for (size_t t = 0; t < n && t < K; t++)
            diag("  got %.4f %s, want %.4f", (double)h[t].score, h[t].file.meta.path, best[t]);
    cdx_store_hits_free(h, n);
    cdx_store_close(s);

    if (!tap_failed) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0) diag("could not remove %s", dir);
    } else {
        diag("left %s for inspection", dir);
    }
    return done_testing();
}
