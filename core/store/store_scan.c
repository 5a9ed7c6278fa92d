/*
 * store_scan.c - exact inner-product scan and top-k selection, used for
 * the store's Flat indexes instead of FAISS's own search.
 *
 * Why not FAISS's: Debian's libfaiss.a is compiled for the baseline
 * x86-64 instruction set (SSE2), so IndexFlatIP::search on one query ran
 * its distances scalar: 50 ms for 100k x 512 on the development machine,
 * against a 10 ms target (core/store/faiss_dist.c has since replaced those
 * distance functions for FAISS's other index types; the scan stays ours
 * because it also covers the memory-mapped base and the in-memory delta
 * of vindex.c, and runs on our thread pool).  The vectors stay in
 * FAISS's IndexFlat (its file, ids, removal and reconstruct are still
 * FAISS's); only the scan over its float array is ours: an AVX2+FMA kernel (about 5 ms single-
 * threaded for the same 205 MB, i.e. memory speed) chosen once at run
 * time, with the scalar reference next to it (CLIPDEX_REFERENCE=1 selects
 * it everywhere, as for the engine's kernels) and a test comparing both.
 *
 * Shapes: xb is (n, d) row-major float32, q is (d), scores is (n).
 */
#include <stdlib.h>
#include <string.h>

#include <immintrin.h>

#include "pool.h"
#include "vindex.h"

/* Reference: a plain float sum per row, in index order. */
void cdx_scan_ip_ref(const float *xb, int64_t n, int d, const float *q, float *scores)
{
    for (int64_t i = 0; i < n; i++) {
        const float *x_i = xb + i * d;
        float s = 0;
        for (int j = 0; j < d; j++) s += x_i[j] * q[j];
        scores[i] = s;
    }
}

__attribute__((target("avx2,fma"))) static void scan_avx2(const float *xb, int64_t n, int d,
                                                         const float *q, float *scores)
{
    int d32 = d & ~31;
    for (int64_t i = 0; i < n; i++) {
        const float *x_i = xb + i * d;
        /* Four independent accumulators hide the FMA latency. */
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
        int j = 0;
        for (; j < d32; j += 32) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x_i + j), _mm256_loadu_ps(q + j), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x_i + j + 8), _mm256_loadu_ps(q + j + 8), a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x_i + j + 16), _mm256_loadu_ps(q + j + 16), a2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x_i + j + 24), _mm256_loadu_ps(q + j + 24), a3);
        }
        __m256 a = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
        __m128 h = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
        h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        h = _mm_add_ss(h, _mm_movehdup_ps(h));
        float s = _mm_cvtss_f32(h);
        for (; j < d; j++) s += x_i[j] * q[j];
        scores[i] = s;
    }
}

typedef void (*scan_fn)(const float *, int64_t, int, const float *, float *);

static scan_fn pick(void)
{
    static scan_fn fn;
    if (!fn) {
        const char *e = getenv("CLIPDEX_REFERENCE");
        __builtin_cpu_init();
        if (!(e && *e == '1') && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
            fn = scan_avx2;
        else
            fn = cdx_scan_ip_ref;
    }
    return fn;
}

typedef struct scan_job {
    scan_fn fn;
    const float *xb, *q;
    int d;
    float *scores;
} scan_job;

static void scan_range(void *ctx, int64_t b, int64_t e)
{
    scan_job *j = ctx;
    j->fn(j->xb + b * j->d, e - b, j->d, j->q, j->scores + b);
}

void cdx_scan_ip(const float *xb, int64_t n, int d, const float *q, float *scores)
{
    scan_job j = {pick(), xb, q, d, scores};
    /* Ranges of at least 8192 rows (4 MB at d = 512): below that a second
     * thread costs more to wake than it saves. */
    cdx_parallel_for(n, 8192, scan_range, &j);
}

/* ---- top-k ---- */

/* Better = higher score, then lower position (a stable order). */
static int better(float s1, int64_t p1, float s2, int64_t p2)
{
    return s1 > s2 || (s1 == s2 && p1 < p2);
}

/* Min-heap on "better": the root is the worst of the k kept. */
static void sift_down(float *hs, int64_t *hp, int64_t k, int64_t i)
{
    for (;;) {
        int64_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < k && better(hs[w], hp[w], hs[l], hp[l])) w = l;
        if (r < k && better(hs[w], hp[w], hs[r], hp[r])) w = r;
        if (w == i) return;
        float ts = hs[i];
        int64_t tp = hp[i];
        hs[i] = hs[w], hp[i] = hp[w];
        hs[w] = ts, hp[w] = tp;
        i = w;
    }
}

int64_t cdx_topk(const float *scores, int64_t n, int64_t k, float *out_s, int64_t *out_pos)
{
    if (k > n) k = n;
    if (k <= 0) return 0;
    /* The heap lives in the output arrays. */
    for (int64_t i = 0; i < k; i++) {
        out_s[i] = scores[i];
        out_pos[i] = i;
    }
    for (int64_t i = k / 2 - 1; i >= 0; i--) sift_down(out_s, out_pos, k, i);
    for (int64_t i = k; i < n; i++) {
        if (better(scores[i], i, out_s[0], out_pos[0])) {
            out_s[0] = scores[i];
            out_pos[0] = i;
            sift_down(out_s, out_pos, k, 0);
        }
    }
    /* Heap sort: repeatedly move the worst to the end. */
    for (int64_t end = k - 1; end > 0; end--) {
        float ts = out_s[0];
        int64_t tp = out_pos[0];
        out_s[0] = out_s[end], out_pos[0] = out_pos[end];
        out_s[end] = ts, out_pos[end] = tp;
        sift_down(out_s, out_pos, end, 0);
    }
    return k;
}
