/*
 * store_bench.c - the index store with random unit vectors of dimension
 * 512: add rate, store open time (warm page cache), k=10 search latency
 * (median, p99), memory, file sizes; and recall@10 of another index type
 * against Flat over the same vectors.
 *
 *   store_bench build N DIR           a Flat store of N vectors in DIR
 *                                     (add rate, save time, file sizes)
 *   store_bench reindex DIR FACTORY   open DIR as writer with another index
 *                                     type: the store rebuilds its FAISS
 *                                     index from SQLite (build time)
 *   store_bench measure DIR [PARAMS [FLATDIR]]
 *                                     open time, search latency, memory of
 *                                     a reader; with FLATDIR, recall@10
 *                                     against FLATDIR's exact answers
 *
 * The vectors come from a fixed seed, so stores built by `build` and
 * copied for `reindex` hold the same vectors under the same ids.  Each
 * measurement is its own process (bench/run-store.sh runs them), so
 * memory figures are those of a reader such as `clipdex search`, and no
 * process forks after FAISS has started OpenMP threads (libgomp does not
 * survive that: the child hangs).  Output: "key value" lines.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clipdex.h"

#define DIM 512
#define BATCH 1000
#define QUERIES 300

static const cdx_store_model model = {"bench-model-512", "bench", NULL, DIM, NULL};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rng;
static double gauss(void)
{
    /* Box-Muller on xorshift: normal components give uniform directions. */
    double u1, u2;
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    u1 = ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    u2 = (double)(rng >> 11) / 9007199254740992.0;
    return sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
}

static void unit(float *v)
{
    double ss = 0;
    for (int i = 0; i < DIM; i++) {
        v[i] = (float)gauss();
        ss += (double)v[i] * v[i];
    }
    for (int i = 0; i < DIM; i++) v[i] = (float)(v[i] / sqrt(ss));
}

static long status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    size_t n = strlen(key);
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, n) == 0) kb = strtol(line + n + 1, NULL, 10);
    fclose(f);
    return kb;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int fail(const char *what)
{
    fprintf(stderr, "store_bench: %s: %s\n", what, cdx_last_error());
    return 1;
}

static int build(const char *dir, long n)
{
    cdx_store_opts o = {.writer = 1, .save_every = 1000000000};
    cdx_store *s = NULL;
    float v[DIM];
    double t0, t1;
    char path[64], c[32];

    rng = 0x2545f4914f6cdd1dull;
    if (cdx_store_open(dir, &o, &s) != CDX_OK || cdx_store_use_model(s, &model, NULL) != CDX_OK)
        return fail("open");
    t0 = now();
    for (long i = 0; i < n; i++) {
        cdx_file_meta m = {0};
        if (i % BATCH == 0 && cdx_store_begin(s) != CDX_OK) return fail("begin");
        snprintf(path, sizeof path, "/bench/%07ld.jpg", i);
        snprintf(c, sizeof c, "content-%ld", i);
        m.path = path;
        m.size = 100000 + i;
        m.mtime_ns = 1600000000000000000ll + i;
        m.taken_at = 1500000000 + i;
        cdx_hash_buf(c, strlen(c), m.hash);
        m.has_hash = 1;
        unit(v);
        if (cdx_store_put_file(s, &m, v, NULL) != CDX_OK) return fail("put");
        if ((i % BATCH == BATCH - 1 || i == n - 1) && cdx_store_commit(s) != CDX_OK) return fail("commit");
    }
    t1 = now();
    if (cdx_store_save(s) != CDX_OK) return fail("save");
    double t2 = now();
    cdx_store_close(s);
    printf("add_per_s %.0f\n", n / (t1 - t0));
    printf("add_seconds %.2f\n", t1 - t0);
    printf("save_seconds %.2f\n", t2 - t1);
    return 0;
}

/* The measuring child: open times, latencies, memory. */
static int measure(const char *dir, const char *params, const char *flatdir)
{
    cdx_store_opts o = {.search_params = params};
    cdx_store *s = NULL, *ref = NULL;
    double opens[5], lat[QUERIES];
    long rss0 = status_kb("VmRSS:");
    float q[DIM];
    double recall = 0;

    for (int r = 0; r < 5; r++) {
        double t0 = now();
        if (cdx_store_open(dir, &o, &s) != CDX_OK || cdx_store_use_model(s, &model, NULL) != CDX_OK)
            return fail("open");
        opens[r] = now() - t0;
        if (r < 4) cdx_store_close(s);
    }
    qsort(opens, 5, sizeof *opens, cmp_d);
    printf("open_ms_median %.1f\n", opens[2] * 1e3);
    printf("rss_mb_after_open %.1f\n", (status_kb("VmRSS:") - rss0) / 1024.0);
    if (flatdir && (cdx_store_open(flatdir, NULL, &ref) != CDX_OK ||
                    cdx_store_use_model(ref, &model, NULL) != CDX_OK))
        return fail("open flat");
    rng = 0x9e3779b97f4a7c15ull; /* queries: not the stored vectors */
    for (int i = 0; i < QUERIES; i++) {
        cdx_store_hit *h = NULL, *e = NULL;
        size_t n = 0, ne = 0;
        unit(q);
        double t0 = now();
        if (cdx_store_search(s, q, 10, NULL, -2, &h, &n) != CDX_OK) return fail("search");
        lat[i] = now() - t0;
        if (ref) {
            if (cdx_store_search(ref, q, 10, NULL, -2, &e, &ne) != CDX_OK) return fail("search flat");
            int hit = 0;
            for (size_t a = 0; a < ne; a++)
                for (size_t b = 0; b < n; b++)
                    if (strcmp(e[a].file.meta.path, h[b].file.meta.path) == 0) hit++;
            recall += ne ? (double)hit / ne : 0;
            cdx_store_hits_free(e, ne);
        }
        cdx_store_hits_free(h, n);
    }
    qsort(lat, QUERIES, sizeof *lat, cmp_d);
    printf("search_ms_median %.2f\n", lat[QUERIES / 2] * 1e3);
    printf("search_ms_p99 %.2f\n", lat[QUERIES * 99 / 100] * 1e3);
    if (ref) printf("recall_at_10 %.3f\n", recall / QUERIES);
    printf("rss_mb_peak %.1f\n", status_kb("VmHWM:") / 1024.0);
    cdx_store_close(s);
    cdx_store_close(ref);
    return 0;
}

/* Reopen with another index type: the writer rebuilds from SQLite. */
static int reindex(const char *dir, const char *factory)
{
    cdx_store_opts o = {.writer = 1, .index_factory = factory};
    cdx_store *s = NULL;
    double t0 = now();
    if (cdx_store_open(dir, &o, &s) != CDX_OK || cdx_store_use_model(s, &model, NULL) != CDX_OK)
        return fail("reindex");
    printf("reindex_seconds %.1f\n", now() - t0);
    cdx_store_close(s);
    return 0;
}

static void sizes(const char *dir)
{
    char p[1024];
    FILE *f;
    snprintf(p, sizeof p, "du -sm %s/clipdex.db %s/index-1.faiss 2>/dev/null", dir, dir);
    if ((f = popen(p, "r"))) {
        long mb;
        char name[1024];
        while (fscanf(f, "%ld %1023s", &mb, name) == 2)
            printf("%s_mb %ld\n", strstr(name, ".faiss") ? "faiss_file" : "db_file", mb);
        pclose(f);
    }
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "build") == 0) {
        if (build(argv[3], strtol(argv[2], NULL, 10))) return 1;
        sizes(argv[3]);
        return 0;
    }
    if (argc == 4 && strcmp(argv[1], "reindex") == 0) {
        if (reindex(argv[2], argv[3])) return 1;
        sizes(argv[2]);
        return 0;
    }
    if (argc >= 3 && argc <= 5 && strcmp(argv[1], "measure") == 0)
        return measure(argv[2], argc > 3 && *argv[3] ? argv[3] : NULL, argc > 4 ? argv[4] : NULL);
    fprintf(stderr, "usage: store_bench build N DIR | reindex DIR FACTORY | measure DIR [PARAMS [FLATDIR]]\n");
    return 2;
}
