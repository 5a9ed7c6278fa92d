/*
 * store_join.c - every pair of stored vectors above a cosine threshold
 * (the similarity self-join behind `clipdex dupes --method semantic`).
 *
 * Why not one range search per vector: that reads all n vectors n times,
 * one matrix-vector product at a time, which is memory-bound (~7.5 ms per
 * query at 100k, so ~13 minutes for a 100k library).  Here the vectors
 * are loaded once and multiplied tile by tile: each 512 x 512 tile of the
 * Gram matrix X X^T is one sgemm whose operands stay in cache, so the
 * join runs at matrix-product speed, and only tiles on or above the
 * diagonal are computed (the matrix is symmetric).
 *
 * The vectors come from SQLite (the truth), read in one read transaction,
 * so the result is exact for every index type (an HNSW or PQ index would
 * only give approximate neighbours) and consistent while a writer runs.
 *
 * Precision: the products run at int8 or bf16 where the CPU has the
 * instructions (engine/qgram.h: 2-4x the float32 rate), or float32.  None
 * of them decides a pair: each comes with a proven bound on its error,
 * a pair whose approximate score is within the bound of the threshold is
 * re-checked with the dot product summed in double, and that value is
 * the pair's score.  So the pairs and scores are the same at every
 * precision, and a pair never hangs on a float32 rounding either.  The
 * re-checks are few: the int8 bound is about 0.03 for 512-d CLIP
 * vectors, bf16's 0.004, float32's 3e-5.
 *
 * Tiles are computed on the compute pool in batches; each task keeps its
 * own list of pairs and the lists are handed to the caller in tile order
 * after every batch, so the callback runs on the calling thread only and
 * the output order does not depend on the thread count.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "internal.h"
#include "engine/kernels.h"
#include "engine/linear.h"
#include "engine/qgram.h"
#include "pool.h"
#include "store_internal.h"

#define TILE 512
/* Tiles computed between two hand-overs to the callback: enough to keep
 * the threads busy, few enough that the pair lists stay small. */
#define BATCH 64

typedef struct {
    int64_t a, b;
    float score;
} pair;

typedef struct {
    pair *v;
    size_t n, cap;
    int nomem;
} pair_list;

struct join {
    const float *x;
    const float *norm;   /* |x_i|, for the float32 bound */
    const cdx_qgram *q;  /* reduced-precision products, or NULL: float32 */
    int64_t n;
    int dim;
    float min;
    int64_t nt;          /* tiles per side */
    int64_t first;       /* linear index of the batch's first tile */
    pair_list *out;      /* BATCH lists, one per tile of the batch */
    const unsigned char *gone; /* vectors removed since the caller listed them */
    int reference;
    int int8;            /* q holds int8 products (scanned raw) */
    /* One TILE x TILE buffer per part of a cdx_parallel_for (at most the
     * thread count), handed out by next, which is reset before each:
     * allocating 1 MB per call made every batch a fresh mmap, and its page
     * faults cost a tenth of the join. */
    void **bufs;
    int nbufs;
    atomic_int next;
};

/* The tile with linear index t of the upper triangle, row by row:
 * (0,0) (0,1) .. (0,nt-1) (1,1) .. */
static void tile_of(int64_t t, int64_t nt, int64_t *ti, int64_t *tj)
{
    int64_t i = 0;
    while (t >= nt - i) {
        t -= nt - i;
        i++;
    }
    *ti = i;
    *tj = i + t;
}

static void push(pair_list *l, int64_t a, int64_t b, float s)
{
    if (l->n == l->cap) {
        pair *v = cdx_grow(l->v, &l->cap, l->n + 1, sizeof *l->v, 64);
        if (!v) {
            l->nomem = 1;
            return;
        }
        l->v = v;
    }
    l->v[l->n].a = a;
    l->v[l->n].b = b;
    l->v[l->n].score = s;
    l->n++;
}

/* The score every precision reports: the dot product summed in double in
 * index order, rounded once. */
static double exact_dot(const float *a, const float *b, int d)
{
    double s = 0;
    for (int k = 0; k < d; k++) s += (double)a[k] * b[k];
    return s;
}

/* Whether any of row[0..16) reaches thr: a branch-free reduction the
 * compiler vectorises, so the scan costs a fraction of the product. */
static inline int any16(const float *row, float thr)
{
    int any = 0;
    for (int k = 0; k < 16; k++) any |= row[k] >= thr;
    return any;
}

/* Row r of a tile: every column k >= k0 whose approximate product could
 * reach the threshold is re-checked exactly.  Cloned per instruction set
 * (the library is built for baseline x86-64): any16 is 1 AVX-512 compare
 * or 2 AVX2 ones instead of 4 SSE2 ones. */
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__) /* TSan: see kernels.c */
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void scan_row(const struct join *c, pair_list *l, const float *row, int64_t i, int64_t j0,
                     int k0, int cols, float thr)
{
    const float *xi = c->x + i * c->dim;
    for (int k = k0; k < cols; k++) {
        if (((k - k0) & 15) == 0 && k + 16 <= cols && !any16(row + k, thr)) {
            k += 15;
            continue;
        }
        if (row[k] < thr || c->gone[j0 + k]) continue;
        double e = exact_dot(xi, c->x + (j0 + k) * c->dim, c->dim);
        if (e >= (double)c->min) push(l, i, j0 + k, (float)e);
    }
}

/* scan_row for int8 products: acc[k] * sj[k] >= thr / s_i is
 * approx >= thr (s_i > 0), tested on the raw sums without writing the
 * dequantised tile (the rounding of thr / s_i is inside the bound's
 * slack). */
static inline int any16_i8(const int32_t *acc, const float *sj, float t)
{
    int any = 0;
    for (int k = 0; k < 16; k++) any |= (float)acc[k] * sj[k] >= t;
    return any;
}

#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__) /* TSan: see kernels.c */
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void scan_row_i8(const struct join *c, pair_list *l, const int32_t *acc, const float *sj,
                        int64_t i, int64_t j0, int k0, int cols, float t)
{
    const float *xi = c->x + i * c->dim;
    for (int k = k0; k < cols; k++) {
        if (((k - k0) & 15) == 0 && k + 16 <= cols && !any16_i8(acc + k, sj + k, t)) {
            k += 15;
            continue;
        }
        if ((float)acc[k] * sj[k] < t || c->gone[j0 + k]) continue;
        double e = exact_dot(xi, c->x + (j0 + k) * c->dim, c->dim);
        if (e >= (double)c->min) push(l, i, j0 + k, (float)e);
    }
}

static void join_tiles(void *vctx, int64_t begin, int64_t end)
{
    struct join *c = vctx;
    int slot = atomic_fetch_add(&c->next, 1);
    float *g = slot < c->nbufs ? c->bufs[slot] : NULL;
    const int raw = c->q && c->int8;
    int64_t ti, tj;
    if (!g) {
        for (int64_t t = begin; t < end; t++) c->out[t].nomem = 1;
        return;
    }
    tile_of(c->first + begin, c->nt, &ti, &tj);
    for (int64_t t = begin; t < end; t++) {
        pair_list *l = &c->out[t];
        int64_t i0 = ti * TILE, j0 = tj * TILE;
        int rows = (int)(c->n - i0 < TILE ? c->n - i0 : TILE);
        int cols = (int)(c->n - j0 < TILE ? c->n - j0 : TILE);
        int ld = cols;
        float jmax = 0; /* the tile's largest column norm (float32 bound) */
        if (raw) {
            /* int8: the raw sums, (TILE, TILE), tested row by row below */
            if (cdx_qgram_tile_raw(c->q, ti, tj, (int32_t *)g) != CDX_OK) {
                l->nomem = 1;
                goto next;
            }
            const float *sc = cdx_qgram_scales(c->q);
            for (int r = 0; r < rows; r++) {
                if (c->gone[i0 + r]) continue;
                float b = cdx_qgram_row_bound(c->q, i0 + r, tj);
                scan_row_i8(c, l, (const int32_t *)g + (int64_t)r * TILE, sc + j0, i0 + r, j0,
                            ti == tj ? r + 1 : 0, cols, (c->min - b) / sc[i0 + r]);
            }
            goto next;
        }
        if (c->q) {
            /* g (TILE, TILE), approximate, with a bound per row */
            if (cdx_qgram_tile(c->q, ti, tj, g, NULL) != CDX_OK) {
                l->nomem = 1;
                goto next;
            }
            ld = TILE;
        } else {
            for (int k = 0; k < cols; k++) jmax = c->norm[j0 + k] > jmax ? c->norm[j0 + k] : jmax;
            /* g (rows, cols) = X[i0..] X[j0..]^T */
            if (c->reference)
                cdx_ref_linear(g, c->x + i0 * c->dim, c->x + j0 * c->dim, rows, c->dim, cols);
            else
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, cols, c->dim, 1.0f,
                            c->x + i0 * c->dim, c->dim, c->x + j0 * c->dim, c->dim, 0.0f, g, cols);
        }
        for (int r = 0; r < rows; r++) {
            if (c->gone[i0 + r]) continue;
            float b = c->q ? cdx_qgram_row_bound(c->q, i0 + r, tj)
                           : cdx_f32_dot_bound(c->dim, c->norm[i0 + r], jmax);
            /* on a diagonal tile only the part right of the diagonal */
            scan_row(c, l, g + (int64_t)r * ld, i0 + r, j0, ti == tj ? r + 1 : 0, cols, c->min - b);
        }
    next:
        if (++tj == c->nt) tj = ++ti; /* next tile of the upper triangle */
    }
}

cdx_status cdx_store_set_join_precision(cdx_store *s, cdx_precision p)
{
    if (!s || (unsigned)p > CDX_PRECISION_INT8)
        return cdx_fail(CDX_ERR_ARG, "cdx_store_set_join_precision: bad argument");
    s->join_precision = p;
    return CDX_OK;
}

cdx_status cdx_store_similar_pairs(cdx_store *s, const int64_t *ids, size_t n, float min_score,
                                   cdx_pair_fn fn, void *user)
{
    cdx_status st = CDX_OK;
    float *x = NULL, *norm = NULL;
    cdx_qgram *q = NULL;
    void **bufs = NULL;
    int nbufs = 0;
    unsigned char *gone = NULL;
    pair_list out[BATCH];
    int began = 0, stop = 0;

    memset(out, 0, sizeof out);
    if (!s || (n && !ids) || !fn) return cdx_fail(CDX_ERR_ARG, "cdx_store_similar_pairs: bad argument");
    if (!s->model_id) return cdx_fail(CDX_ERR_ARG, "cdx_store_similar_pairs: no model selected");
    if (n < 2) return CDX_OK;
    if (n > SIZE_MAX / sizeof *x / (size_t)s->dim || !(gone = calloc(n, 1)) ||
        !(x = malloc(n * (size_t)s->dim * sizeof *x))) {
        st = cdx_fail(CDX_ERR_NOMEM, "similar pairs: no memory for %zu vectors", n);
        goto cleanup;
    }
    /* A vector the writer removed after the caller listed it has no pairs
     * (the caller's list and this read are two snapshots). */
    if ((st = cdx_store_read_begin(s, &began)) != CDX_OK) goto cleanup;
    for (size_t i = 0; i < n && st == CDX_OK; i++) {
        int found;
        st = cdx_store_vector_read(s, ids[i], x + i * (size_t)s->dim, &found);
        if (st == CDX_OK && !found) {
            gone[i] = 1;
            memset(x + i * (size_t)s->dim, 0, (size_t)s->dim * sizeof *x);
        }
    }
    cdx_store_read_end(s, began);
    if (st != CDX_OK) goto cleanup;

    /* Norms for the float32 bound; reduced-precision operands when the
     * CPU runs them natively (a failure there only costs speed). */
    if (!(norm = malloc(n * sizeof *norm))) {
        st = cdx_fail(CDX_ERR_NOMEM, "similar pairs: no memory for %zu vectors", n);
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++)
        norm[i] = (float)(sqrt(exact_dot(x + i * (size_t)s->dim, x + i * (size_t)s->dim, s->dim)) *
                          (1 + 1e-6));
    cdx_precision p = s->join_precision == CDX_PRECISION_AUTO ? cdx_qgram_auto() : s->join_precision;
    if (p != CDX_PRECISION_F32 && !cdx_kernels_reference() &&
        cdx_qgram_new(x, (int64_t)n, s->dim, TILE, p, &q) != CDX_OK)
        q = NULL;

    nbufs = cdx_threads_internal(); /* OpenBLAS single-threaded inside the pool */
    nbufs = nbufs < 1 ? 1 : nbufs;
    if (!(bufs = calloc((size_t)nbufs, sizeof *bufs))) goto nomem;
    for (int b = 0; b < nbufs; b++)
        if (!(bufs[b] = malloc((size_t)TILE * TILE * sizeof(float)))) goto nomem;
    struct join c = {.bufs = bufs, .nbufs = nbufs, .int8 = p == CDX_PRECISION_INT8,
                     .x = x, .norm = norm, .q = q, .n = (int64_t)n, .dim = s->dim, .min = min_score,
                     .nt = ((int64_t)n + TILE - 1) / TILE, .out = out, .gone = gone,
                     .reference = cdx_kernels_reference()};
    int64_t total = c.nt * (c.nt + 1) / 2;
    for (c.first = 0; c.first < total && !stop; c.first += BATCH) {
        int64_t m = total - c.first < BATCH ? total - c.first : BATCH;
        atomic_store(&c.next, 0);
        cdx_parallel_for(m, 1, join_tiles, &c);
        for (int64_t t = 0; t < m; t++) {
            if (out[t].nomem) {
                st = cdx_fail(CDX_ERR_NOMEM, "similar pairs: out of memory");
                goto cleanup;
            }
            for (size_t p = 0; p < out[t].n && !stop; p++)
                stop = fn(user, (size_t)out[t].v[p].a, (size_t)out[t].v[p].b, out[t].v[p].score);
            out[t].n = 0;
        }
        /* progress for joins that take a while (more than a few batches) */
        if (s->progress && total > 4 * BATCH)
            s->progress("comparing images", c.first + m, total, s->progress_user);
    }
cleanup:
    for (int t = 0; t < BATCH; t++) free(out[t].v);
    for (int b = 0; bufs && b < nbufs; b++) free(bufs[b]);
    free(bufs);
    cdx_qgram_free(q);
    free(norm);
    free(x);
    free(gone);
    return st;
nomem:
    st = cdx_fail(CDX_ERR_NOMEM, "similar pairs: out of memory");
    goto cleanup;
}
