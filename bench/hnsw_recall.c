/*
 * hnsw_recall.c - HNSW32 recall@10 against exact (Flat) search, straight
 * on the FAISS C API, for the store benchmark's largest size.
 *
 *   hnsw_recall N [QUERIES [uniform|clustered]]
 *
 * N unit vectors of dimension 512 are added to "HNSW32,Flat" (inner
 * product) in one call, so FAISS builds the graph with all its OpenMP
 * threads, unlike the store's incremental adds.  Ground truth is
 * IndexFlatIP.  Prints build time and, for efSearch 16 to 4096: recall@10
 * and the median query time.  A measurement, not a test.
 *
 * uniform (the default, the store benchmark's data): independent random
 * directions, HNSW's worst case: in 512 dimensions every vector is almost
 * equally far from every other, so a graph walk has no gradient to follow.
 * clustered: N / 100 random centres, each vector a centre plus Gaussian
 * noise (cosine to its centre about 0.8), queries drawn the same way: a
 * library made of many small groups of similar pictures.
 *
 * HNSW_VERBOSE=1 shows FAISS's build progress.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <faiss/c_api/AutoTune_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/index_factory_c.h>

#include "store/vindex.h" /* cdx_faiss_dist_impl: FAISS's distance kernels */

#define D 512
#define K 10

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double gauss(void)
{
    double u, v;
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    u = ((rng >> 11) + 0.5) / 9007199254740992.0;
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    v = ((rng >> 11) + 0.5) / 9007199254740992.0;
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

static void normalise(float *x)
{
    double s = 0;
    for (int d = 0; d < D; d++) s += (double)x[d] * x[d];
    for (int d = 0; d < D; d++) x[d] /= (float)sqrt(s);
}

/* Each row: a random one of the centres plus noise of norm ~0.75. */
static void clustered_vectors(float *x, int64_t n, const float *centres, int64_t nc)
{
    for (int64_t i = 0; i < n; i++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        const float *c = centres + (int64_t)(rng % (uint64_t)nc) * D;
        for (int d = 0; d < D; d++) x[i * D + d] = c[d] + (float)(0.75 / sqrt(D) * gauss());
        normalise(x + i * D);
    }
}

static void unit_vectors(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        double s = 0;
        for (int d = 0; d < D; d++) {
            x[i * D + d] = (float)gauss();
            s += (double)x[i * D + d] * x[i * D + d];
        }
        for (int d = 0; d < D; d++) x[i * D + d] /= (float)sqrt(s);
    }
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int64_t n = argc > 1 ? atoll(argv[1]) : 100000, nq = argc > 2 ? atoll(argv[2]) : 200;
    float *x = malloc(sizeof(float) * D * (size_t)n), *q = malloc(sizeof(float) * D * (size_t)nq);
    float *dist = malloc(sizeof(float) * K * (size_t)nq);
    idx_t *truth = malloc(sizeof(idx_t) * K * (size_t)nq), *got = malloc(sizeof(idx_t) * K * (size_t)nq);
    FaissIndex *flat = NULL, *hnsw = NULL;
    FaissParameterSpace *ps = NULL;
    double t;

    const char *kind = argc > 3 ? argv[3] : "uniform";
    printf("FAISS distance kernels: %s, data: %s\n", cdx_faiss_dist_impl(), kind);
    if (strcmp(kind, "clustered") == 0) {
        int64_t nc = n / 100 > 0 ? n / 100 : 1;
        float *centres = malloc(sizeof(float) * D * (size_t)nc);
        unit_vectors(centres, nc);
        clustered_vectors(x, n, centres, nc);
        clustered_vectors(q, nq, centres, nc);
        free(centres);
    } else {
        unit_vectors(x, n);
        unit_vectors(q, nq);
    }
    if (faiss_index_factory(&flat, D, "Flat", METRIC_INNER_PRODUCT) ||
        faiss_index_factory(&hnsw, D, "HNSW32,Flat", METRIC_INNER_PRODUCT) ||
        faiss_ParameterSpace_new(&ps)) {
        fprintf(stderr, "hnsw_recall: cannot create the indexes\n");
        return 1;
    }
    /* FAISS prints the graph build's progress per level when verbose:
     * at 1M vectors on two cores the build takes the better part of an
     * hour, so the log should show it moving. */
    if (getenv("HNSW_VERBOSE")) faiss_Index_set_verbose(hnsw, 1);
    faiss_Index_add(flat, n, x);
    faiss_Index_search(flat, nq, q, K, dist, truth);
    t = now();
    faiss_Index_add(hnsw, n, x);
    printf("n %lld build_s %.1f (%.3f ms per vector)\n", (long long)n, now() - t, (now() - t) * 1e3 / n);
    for (int ef = 16; ef <= 4096; ef *= 4) {
        char p[32];
        double *ms = malloc(sizeof(double) * (size_t)nq);
        int64_t hit = 0;
        snprintf(p, sizeof p, "efSearch=%d", ef);
        faiss_ParameterSpace_set_index_parameters(ps, hnsw, p);
        for (int64_t i = 0; i < nq; i++) {
            t = now();
            faiss_Index_search(hnsw, 1, q + i * D, K, dist + i * K, got + i * K);
            ms[i] = (now() - t) * 1e3;
        }
        for (int64_t i = 0; i < nq; i++)
            for (int a = 0; a < K; a++)
                for (int b = 0; b < K; b++)
                    if (got[i * K + a] == truth[i * K + b]) hit++;
        qsort(ms, (size_t)nq, sizeof *ms, cmp_d);
        printf("efSearch %d recall@10 %.3f median_ms %.2f\n", ef, (double)hit / (double)(nq * K), ms[nq / 2]);
        free(ms);
    }
    faiss_ParameterSpace_free(ps);
    faiss_Index_free(flat);
    faiss_Index_free(hnsw);
    free(x), free(q), free(dist), free(truth), free(got);
    return 0;
}
